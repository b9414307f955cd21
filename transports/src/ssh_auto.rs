//! Issue 16, native login: `ssh` under `--ssh=auto` — the built-in client where it follows
//! the login exactly as `ssh` would, else the system `ssh` (the `-e` program).
//!
//! The built-in client logs in 0.1–0.2 s sooner and moves a gigabyte for about half the CPU
//! (docs/BENCHMARKS.md), so `auto` prefers it — but a user's `ssh` setup must keep working
//! unchanged. [`NativeFirst`] takes the system `ssh` at once when the `-e` program is not
//! `ssh` or the login asks for something the built-in client does not do
//! ([`crate::ssh_native::fit`]), and again when the built-in login is refused by something the
//! system `ssh` may get past ([`retry_with_system`]: authentication — a password, a
//! certificate, Kerberos —, the host key, a configuration it cannot read, an SSH handshake it
//! cannot agree). A host that cannot be reached is not tried twice: that would double the wait.
//! Each choice goes to an [`SshChoiceLog`] as an `--explain` line.
//!
//! Not here: the clients themselves (`crate::ssh`, `crate::ssh_native`), where `auto` is
//! chosen (the registry and the command line).

use std::sync::Arc;

#[cfg(feature = "ssh-native")]
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, TransportError, TransportFactory,
};

#[cfg(feature = "ssh-native")]
use crate::ssh::SystemSsh;
#[cfg(feature = "ssh-native")]
use crate::ssh_native::{exec_endpoint, NativeLogin, SSH_HANDSHAKE};

/// Where the choices made go, as `--explain` lines (nowhere by default).
#[derive(Clone, Default)]
pub struct SshChoiceLog(Option<Arc<dyn Fn(String) + Send + Sync>>);

impl SshChoiceLog {
    /// Each choice handed to `line` as it is made.
    pub fn new(line: impl Fn(String) + Send + Sync + 'static) -> Self {
        SshChoiceLog(Some(Arc::new(line)))
    }

    #[cfg_attr(not(feature = "ssh-native"), allow(dead_code))]
    fn push(&self, line: String) {
        if let Some(f) = &self.0 {
            f(line);
        }
    }
}

impl std::fmt::Debug for SshChoiceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SshChoiceLog")
    }
}

#[cfg(feature = "ssh-native")]
/// Whether a refused built-in login `e` is worth a try with the system `ssh`: refusals of
/// authentication or the host key, a configuration or option it cannot follow, an SSH
/// handshake it cannot complete — not a host that cannot be reached.
pub fn retry_with_system(e: &TransportError) -> bool {
    let inner = match e {
        TransportError::SshLogin(inner) => &**inner,
        other => other,
    };
    match inner {
        TransportError::Auth(_)
        | TransportError::Setup { .. }
        | TransportError::Unsupported { .. } => true,
        TransportError::Unreachable { step, .. } => step == SSH_HANDSHAKE,
        _ => false,
    }
}

#[cfg(feature = "ssh-native")]
/// `ssh` under `--ssh=auto`: the built-in client first where it follows the login, the
/// system `ssh` otherwise or after a refusal it may get past.
#[derive(Debug, Clone)]
pub struct NativeFirst {
    rsh: String,
    system: SystemSsh,
    log: SshChoiceLog,
}

#[cfg(feature = "ssh-native")]
impl NativeFirst {
    /// Both clients for the `-e` line `rsh` (the system one checked now, as `ssh` alone is).
    pub fn new(rsh: &str, log: SshChoiceLog) -> Result<Self, TransportError> {
        Ok(NativeFirst {
            rsh: rsh.to_owned(),
            system: SystemSsh::with_rsh(rsh)?,
            log,
        })
    }

    /// The built-in client's login to `endpoint` (configuration read once), or why the system
    /// `ssh` logs in without a try of it.
    fn native_login(&self, endpoint: &Endpoint) -> Result<NativeLogin, String> {
        // A program named by its path (`-e /opt/bin/ssh`, a wrapper) is the one asked for.
        let words = crate::ssh::split_words(&self.rsh).unwrap_or_default();
        match words.first().map(String::as_str) {
            Some("ssh") => {}
            Some(other) => return Err(format!("`-e` names {other}, not plain ssh")),
            None => return Err("the remote shell is empty".to_owned()),
        }
        let login = NativeLogin::new(&self.rsh, endpoint)
            .map_err(|e| format!("the built-in client cannot read the login: {e}"))?;
        match login.unfollowed() {
            Some(what) => Err(format!("the built-in client does not follow `{what}`")),
            None => Ok(login),
        }
    }
}

#[cfg(feature = "ssh-native")]
impl TransportFactory for NativeFirst {
    fn name(&self) -> &str {
        arsync_core::negotiate::names::SSH
    }

    fn capabilities(&self) -> Capabilities {
        self.system.capabilities()
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let login = match self.native_login(endpoint) {
                Ok(login) => login,
                Err(why) => {
                    self.log.push(format!("ssh client: the system ssh ({why})"));
                    return self.system.connect(endpoint, auth).await;
                }
            };
            match exec_endpoint(&login, endpoint).await {
                Ok(conn) => {
                    self.log.push(
                        "ssh client: built in (it follows this login's ssh settings)".to_owned(),
                    );
                    Ok(conn)
                }
                Err(e) if retry_with_system(&e) => {
                    self.log.push(format!(
                        "ssh client: the built-in login was refused ({e}); the system ssh tries"
                    ));
                    self.system.connect(endpoint, auth).await
                }
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(feature = "ssh-native")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_the_system_ssh_may_pass_are_retried_and_unreachable_hosts_are_not() {
        let login = |e| TransportError::ssh_login(e);
        assert!(retry_with_system(&login(TransportError::Auth(
            "no key accepted".into()
        ))));
        assert!(retry_with_system(&login(TransportError::unreachable(
            "h:22",
            SSH_HANDSHAKE,
            std::io::Error::other("no common kex")
        ))));
        assert!(!retry_with_system(&login(TransportError::unreachable(
            "h:22",
            "TCP connect",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        ))));
        assert!(!retry_with_system(&login(TransportError::Connect {
            endpoint: "h:22".into(),
            reason: "connection timed out after 75s".into(),
        })));
    }

    #[test]
    fn a_remote_shell_that_is_not_ssh_goes_to_it_at_once() {
        let f = NativeFirst::new("rsh -l bob", SshChoiceLog::default()).expect("rsh");
        let why = f.native_login(&Endpoint::host("h")).expect_err("system");
        assert!(why.contains("`-e` names rsh, not plain ssh"), "{why}");
        let f = NativeFirst::new("/opt/bin/ssh -p 2", SshChoiceLog::default()).expect("path");
        let why = f.native_login(&Endpoint::host("h")).expect_err("system");
        assert!(why.contains("/opt/bin/ssh"), "{why}");
    }
}
