//! The one place this crate's transports are registered, each under its own name: `mem`,
//! `ssh` (the system client, or the built-in one when asked), `ssh-native`, `ssh-pool`,
//! `quic`, `tls`, `mptcp`, `h2` and `h3`, as this build's features allow.
//!
//! [`build`] builds them from a [`RegistryConfig`] (the command line's `-e`, `--ssh`,
//! `--streams`); [`default_registry`] is the same with the defaults. [`Alias`] registers a
//! transport under another name (the built-in client as `ssh` with `--ssh=native`), and
//! [`negotiable`] tells `arsync_core::negotiate` what each registered transport can do.
//!
//! Not here: choosing among them (`arsync_core::negotiate`) or what each does (its module).

use std::sync::Arc;

use arsync_core::negotiate::TransportInfo;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, ListenConfig, Listener, Registry,
    TransportError, TransportFactory,
};

/// Which SSH client makes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshClient {
    /// The `-e` program (default `ssh`).
    System,
    /// The built-in client (feature `ssh-native`), reading the same `-e` options.
    Native,
    /// Issue 16, native login: the built-in client where it follows the login as `ssh`
    /// would, else (or after a refusal the system client may get past) the system one
    /// (`crate::ssh_auto`); the system one in a build without the built-in client.
    Auto,
}

/// What the registered transports are built with.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The remote shell's command line (`-e`/`--rsh`), default `ssh`.
    pub rsh: String,
    /// The client behind `ssh`.
    pub ssh: SshClient,
    /// The client behind `ssh-pool`'s connections (the built-in one shares one login).
    pub pool: SshClient,
    /// How many connections `ssh-pool` makes.
    pub pool_streams: u32,
    /// The tuning of the registered `quic`.
    #[cfg(feature = "quic")]
    pub quic: crate::quic::QuicTuning,
    /// Issue 16, native login: where [`SshClient::Auto`] logs which client it took and why.
    #[cfg(feature = "ssh")]
    pub ssh_log: crate::ssh_auto::SshChoiceLog,
}

impl Default for RegistryConfig {
    /// `ssh` the system client; the pool the built-in one where this build has it.
    fn default() -> Self {
        RegistryConfig {
            rsh: "ssh".into(),
            ssh: SshClient::System,
            pool: if cfg!(feature = "ssh-native") {
                SshClient::Native
            } else {
                SshClient::System
            },
            pool_streams: arsync_core::negotiate::DEFAULT_STREAMS,
            #[cfg(feature = "quic")]
            quic: crate::quic::QuicTuning::default(),
            #[cfg(feature = "ssh")]
            ssh_log: Default::default(),
        }
    }
}

/// A transport registered under another name.
#[derive(Debug, Clone)]
pub struct Alias {
    name: String,
    inner: Arc<dyn TransportFactory>,
}

impl Alias {
    /// `inner`, registered as `name`.
    pub fn new(name: impl Into<String>, inner: Arc<dyn TransportFactory>) -> Self {
        Alias {
            name: name.into(),
            inner,
        }
    }
}

impl TransportFactory for Alias {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        self.inner.connect(endpoint, auth)
    }

    fn listen<'a>(
        &'a self,
        config: &'a ListenConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, TransportError>> {
        self.inner.listen(config)
    }
}

/// The SSH client `which` for `config.rsh`; `checked` refuses a `-e` it cannot follow now,
/// otherwise the built-in client says so when it connects.
#[cfg(feature = "ssh")]
fn ssh_client(
    config: &RegistryConfig,
    which: SshClient,
    checked: bool,
) -> Result<Arc<dyn TransportFactory>, TransportError> {
    match which {
        SshClient::System => Ok(Arc::new(crate::ssh::SystemSsh::with_rsh(&config.rsh)?)),
        #[cfg(feature = "ssh-native")]
        SshClient::Native if checked => Ok(Arc::new(crate::ssh_native::NativeSsh::with_rsh(
            &config.rsh,
        )?)),
        #[cfg(feature = "ssh-native")]
        SshClient::Native => Ok(Arc::new(crate::ssh_native::NativeSsh::unchecked(
            &config.rsh,
        ))),
        #[cfg(feature = "ssh-native")]
        SshClient::Auto => Ok(Arc::new(crate::ssh_auto::NativeFirst::new(
            &config.rsh,
            config.ssh_log.clone(),
        )?)),
        #[cfg(not(feature = "ssh-native"))]
        SshClient::Auto => Ok(Arc::new(crate::ssh::SystemSsh::with_rsh(&config.rsh)?)),
        #[cfg(not(feature = "ssh-native"))]
        SshClient::Native => {
            let _ = checked;
            Err(TransportError::Unsupported {
                transport: arsync_core::negotiate::names::SSH_NATIVE.into(),
                what: "this build (no built-in SSH client)",
            })
        }
    }
}

/// Every transport this build has, built as `config` says. Fails when the `-e` command line
/// cannot be followed by the client that `ssh` or `ssh-pool` would use.
pub fn build(config: &RegistryConfig) -> Result<Registry, TransportError> {
    // Filled by the transports this build has (a build without any leaves it empty).
    #[allow(unused_mut)]
    let mut r = Registry::new();
    #[cfg(feature = "mem")]
    {
        r = r.with(crate::mem::Mem::default());
    }
    #[cfg(feature = "ssh")]
    {
        use arsync_core::negotiate::names;
        r.register(Arc::new(Alias::new(
            names::SSH,
            ssh_client(config, config.ssh, true)?,
        )));
        #[cfg(feature = "ssh-native")]
        r.register(ssh_client(config, SshClient::Native, false)?);
        #[cfg(feature = "ssh-pool")]
        {
            let backend: Arc<dyn TransportFactory> = match config.pool {
                #[cfg(feature = "ssh-native")]
                SshClient::Native => {
                    Arc::new(crate::ssh_pool::SharedNativeLogin::with_rsh(&config.rsh)?)
                }
                other => ssh_client(config, other, true)?,
            };
            r = r.with(crate::ssh_pool::SshPool::new(backend, config.pool_streams));
        }
    }
    #[cfg(feature = "quic")]
    {
        use crate::quic::{QuicTransport, QuicTrust};
        // Without a home directory there is no known-servers file: trusting no CA refuses
        // every certificate (the SSH bootstrap pins its own and still works).
        let trust = match arsync_auth::pins::KnownServers::default_path() {
            Some(path) => QuicTrust::KnownServers(path),
            None => QuicTrust::Ca(Vec::new()),
        };
        r = r.with(QuicTransport::new(trust.clone(), None, config.quic));
        // Issue 17, mptcp: TLS over TCP and over MPTCP, to `arsync serve`.
        #[cfg(feature = "tls-tcp")]
        {
            use crate::tls_tcp::TlsTcpTransport;
            r = r.with(TlsTcpTransport::new(trust.clone(), None, false));
            r = r.with(TlsTcpTransport::new(trust.clone(), None, true));
        }
        // Issue 17, h2: HTTP/2 over TLS to `arsync serve` (through HTTPS_PROXY if set).
        #[cfg(feature = "h2")]
        {
            let proxy = crate::http_proxy::Proxy::from_process(None, "")
                .ok()
                .flatten();
            r = r.with(
                crate::http2::H2Transport::new(trust.clone(), None, config.pool_streams)
                    .with_proxy(proxy),
            );
        }
        // Issue 17, h3: HTTP/3 to `arsync serve`, on the same QUIC endpoint as `quic`.
        #[cfg(feature = "h3")]
        {
            r = r.with(crate::h3::H3Transport::new(trust, None, config.quic));
        }
    }
    let _ = config;
    Ok(r)
}

/// Issue 17, plugins: `--transport=name` where nothing registered has that name: the helper
/// program `arsync-transport-NAME` from `PATH`, registered under `name` (see
/// [`crate::external`]). Returns whether one was added.
#[cfg(feature = "external")]
pub fn add_helper(registry: &mut Registry, name: &str) -> bool {
    if name == arsync_core::negotiate::AUTO || registry.get(name).is_ok() {
        return false;
    }
    match crate::external::ExternalHelper::on_path(name) {
        Some(helper) => {
            registry.register(Arc::new(helper));
            true
        }
        None => false,
    }
}

/// Without the `external` feature there are no helpers to find.
#[cfg(not(feature = "external"))]
pub fn add_helper(_registry: &mut Registry, _name: &str) -> bool {
    false
}

/// Every transport this build has, with the defaults (`-e ssh`).
pub fn default_registry() -> Registry {
    build(&RegistryConfig::default()).unwrap_or_default()
}

/// What negotiation needs to know of each registered transport.
pub fn negotiable(registry: &Registry) -> Vec<TransportInfo> {
    registry
        .names()
        .into_iter()
        .filter_map(|name| {
            let caps = registry.get(&name).ok()?.capabilities();
            Some(TransportInfo {
                name,
                local_only: caps.shared_filesystem,
                max_streams: caps.max_streams,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_transport_has_its_own_name() {
        let names = default_registry().names();
        let mut want = vec!["mem", "ssh"];
        if cfg!(feature = "ssh-native") {
            want.push("ssh-native");
        }
        want.extend(["ssh-pool", "quic"]);
        if cfg!(feature = "tls-tcp") {
            want.extend(["tls", "mptcp"]);
        }
        if cfg!(feature = "h2") {
            want.push("h2");
        }
        // Issue 17, h3:
        if cfg!(feature = "h3") {
            want.push("h3");
        }
        assert_eq!(names, want);
    }

    #[test]
    fn the_command_line_changes_backends_not_names() {
        let native = RegistryConfig {
            ssh: if cfg!(feature = "ssh-native") {
                SshClient::Native
            } else {
                SshClient::System
            },
            pool_streams: 3,
            ..RegistryConfig::default()
        };
        let r = build(&native).unwrap();
        assert_eq!(r.names(), default_registry().names());
        assert_eq!(r.get("ssh-pool").unwrap().capabilities().max_streams, 3);
        let infos = negotiable(&r);
        let mem = infos.iter().find(|t| t.name == "mem").unwrap();
        assert!(mem.local_only);
        assert!(infos
            .iter()
            .filter(|t| t.name != "mem")
            .all(|t| !t.local_only));
    }

    #[test]
    fn a_remote_shell_the_chosen_client_cannot_follow_is_refused() {
        let bad = RegistryConfig {
            rsh: "ssh 'unbalanced".into(),
            ..RegistryConfig::default()
        };
        assert!(build(&bad).is_err());
    }

    #[cfg(feature = "ssh-native")]
    #[test]
    fn the_unchosen_native_client_does_not_refuse_a_system_only_shell() {
        // `-e` naming another program: the system client runs it, the native one cannot.
        let system = RegistryConfig {
            rsh: "/usr/local/bin/myssh -p 2222".into(),
            ssh: SshClient::System,
            pool: SshClient::System,
            ..RegistryConfig::default()
        };
        let r = build(&system).unwrap();
        assert_eq!(r.names(), default_registry().names());
        let native = RegistryConfig {
            ssh: SshClient::Native,
            ..system
        };
        assert!(build(&native).is_err());
    }
}
