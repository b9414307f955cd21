//! [`NativeSsh`]: the built-in client as a [`TransportFactory`] (`ssh-native`; registered as
//! `ssh` too with `--ssh=native`): each `connect` is a new [`NativeLogin`] running the
//! endpoint's remote command.
//!
//! What it owns: checking the `-e` string up front ([`NativeSsh::with_rsh`]) or not
//! ([`NativeSsh::unchecked`]), and quoting the remote command's words. What it does not own:
//! the login and the connection (`login`, `channel`), choosing between this client and the
//! system `ssh` (the registry).

use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, TransportError, TransportFactory,
};

use super::login::{parse_rsh, NativeLogin};
use crate::ssh::shell_quote;

/// The `ssh` transport on the built-in client: `connect(endpoint)` is
/// `NativeLogin::new(rsh, endpoint)?.exec(the endpoint's remote command, each word shell-quoted)`.
#[derive(Debug, Clone)]
pub struct NativeSsh {
    rsh: String,
}

impl Default for NativeSsh {
    fn default() -> Self {
        NativeSsh { rsh: "ssh".into() }
    }
}

impl NativeSsh {
    /// The transport for the `-e`/`--rsh` string `rsh` (checked now: quotes, `ssh` options, the
    /// program being `ssh`).
    pub fn with_rsh(rsh: &str) -> Result<Self, TransportError> {
        parse_rsh(rsh)?;
        Ok(NativeSsh::unchecked(rsh))
    }

    /// The transport for `rsh`, checked only when it connects (registered beside the system
    /// client, it must not refuse a `-e` only the system client follows).
    pub fn unchecked(rsh: &str) -> Self {
        NativeSsh {
            rsh: rsh.to_owned(),
        }
    }
}

impl TransportFactory for NativeSsh {
    /// `ssh-native`; registered as `ssh` too with `--ssh=native`.
    fn name(&self) -> &str {
        "ssh-native"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream().with_encrypted(true)
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(
            async move { exec_endpoint(&NativeLogin::new(&self.rsh, endpoint)?, endpoint).await },
        )
    }
}

/// Run `endpoint`'s remote command (each word shell-quoted) on a new connection of `login`.
pub(crate) async fn exec_endpoint(
    login: &NativeLogin,
    endpoint: &Endpoint,
) -> Result<Box<dyn Connection>, TransportError> {
    if endpoint.remote_command.is_empty() {
        return Err(TransportError::Unsupported {
            transport: "ssh".into(),
            what: "a login without a remote command",
        });
    }
    let command: Vec<String> = endpoint
        .remote_command
        .iter()
        .map(|w| shell_quote(w))
        .collect();
    // A failed login exits 255, as the ssh program's does (and rsync's with it).
    // A host without the program says so on stderr: held back, in case the caller
    // falls back quietly (to rsync's protocol).
    let program = endpoint.remote_command.first().map_or("", String::as_str);
    let conn = login
        .exec_running(&command.join(" "), program)
        .await
        .map_err(TransportError::ssh_login)?;
    Ok(Box::new(conn) as Box<dyn Connection>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ssh_is_unsupported() {
        assert!(matches!(
            NativeSsh::with_rsh("rsh -l x"),
            Err(TransportError::Unsupported { .. })
        ));
        assert!(NativeSsh::with_rsh("ssh -p 2222 -o StrictHostKeyChecking=no").is_ok());
        assert!(NativeSsh::with_rsh("ssh 'unbalanced").is_err());
    }
}
