//! Opening one authenticated SSH connection to a [`Hop`]: what carries it (a TCP connection
//! with `TCP_NODELAY` and `ConnectTimeout`, a `ProxyCommand` child's stdio, or a
//! `direct-tcpip` channel through the jump host's own session), the russh client configuration
//! (ciphers, window, keep-alives, host key types known for the host first) and the client
//! callbacks (host key check, banner).
//!
//! What it owns: [`open_session`] and the [`Session`] it returns, which keeps its carrier alive
//! (and stops a proxy command when dropped, see `proxy`), and the bound on reaching the server:
//! the TCP connection (or the proxy command's first bytes) and the SSH handshake end within
//! `ConnectTimeout`, or within [`HANDSHAKE_WAIT`] when it is not set (`ssh` would wait forever
//! for a proxy command that never answers). What it does not own: whether a host
//! key is acceptable (`known_hosts`), which identity to offer (`auth`) and what runs on the
//! connection (`channel`).

use std::io::{self, Write as _};
use std::sync::{Arc, Mutex};

use arsync_core::transport::{BoxFuture, TransportError};
use russh::cipher;
use russh::client::{self, Handle};
use russh::keys::{Algorithm, PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::authenticate;
use super::hop::{hop_target, Hop, Via};
use super::known_hosts::{algorithm_type, HostKeyCheck};
use super::login::Shared;
use super::proxy::ProxyChild;
use super::{connect_error, lock};
use crate::ssh_config::HostSettings;

/// Channel window we grant the server: large, so one connection can fill a long fat pipe.
const WINDOW_SIZE: u32 = 32 * 1024 * 1024;
/// Largest channel packet we accept (russh's transport takes up to 256 KiB of payload).
const MAX_PACKET_SIZE: u32 = 256 * 1024;
/// `ServerAliveCountMax`'s default.
const KEEPALIVE_MAX: usize = 3;
/// How long reaching the server (TCP connect or the proxy command, then the SSH handshake) may
/// take when `ConnectTimeout` is not set.
pub(super) const HANDSHAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// An authenticated SSH connection, with whatever carries it (a jump host's connection, a
/// proxy command) kept alive beside it.
pub(super) struct Session {
    pub(super) handle: Handle<ClientHandler>,
    pub(super) _carrier: Carrier,
}

impl Session {
    /// Issue 16, native login: the path as the kernel sees it (`TCP_INFO`), for a direct
    /// connection.
    pub(super) fn path_stats(&self) -> Option<arsync_core::transport::PathStats> {
        match &self._carrier {
            Carrier::Tcp {
                socket: Some(socket),
            } => {
                let info = crate::tcp_info::tcp_info(std::os::fd::AsFd::as_fd(socket))?;
                Some(crate::tcp_info::path_stats(&info))
            }
            _ => None,
        }
    }
}

/// Held only to be dropped with the session: the proxy command is killed, the jump host's
/// connection closed.
pub(super) enum Carrier {
    /// A direct connection: a second descriptor of its socket, to ask the kernel about the
    /// path (`TCP_INFO`) while russh owns the stream.
    Tcp {
        socket: Option<std::os::fd::OwnedFd>,
    },
    Command {
        _child: ProxyChild,
    },
    Jump {
        _via: Box<Session>,
    },
}

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub(super) fn open_session<'a>(
    hop: &'a Arc<Hop>,
    shared: &'a Arc<Shared>,
) -> BoxFuture<'a, Result<Session, TransportError>> {
    Box::pin(async move {
        let target = hop_target(&hop.settings);
        let host = hop.settings.hostname.clone();
        let port = hop.settings.port;
        let check = Arc::new(HostKeyCheck::new(&hop.settings));
        let config = Arc::new(client_config(&hop.settings, &check.known_types()));
        let refusal = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            check,
            refusal: refusal.clone(),
        };
        let timeout = hop.settings.connect_timeout;

        let (stream, carrier): (Box<dyn Duplex>, Carrier) = match &hop.via {
            Via::Direct => {
                let tcp = with_timeout(timeout, &target, tcp_connect(&host, port)).await?;
                let socket = std::os::fd::AsFd::as_fd(&tcp).try_clone_to_owned().ok();
                (Box::new(tcp), Carrier::Tcp { socket })
            }
            Via::Command(cmd) => {
                let (child, stdout, stdin) = ProxyChild::spawn(cmd, &target)?;
                (
                    Box::new(tokio::io::join(stdout, stdin)),
                    Carrier::Command { _child: child },
                )
            }
            Via::Jump(jump) => {
                let jsession = open_session(jump, shared).await?;
                let channel = jsession
                    .handle
                    .channel_open_direct_tcpip(host.clone(), u32::from(port), "127.0.0.1", 0)
                    .await
                    .map_err(|e| {
                        TransportError::unreachable(
                            &target,
                            format!(
                                "jump host {} could not open a connection to it",
                                hop_target(&jump.settings)
                            ),
                            e,
                        )
                    })?;
                (
                    Box::new(channel.into_stream()),
                    Carrier::Jump {
                        _via: Box::new(jsession),
                    },
                )
            }
        };

        let handshake = async {
            client::connect_stream(config, stream, handler)
                .await
                .map_err(|e| match lock(&refusal).take() {
                    Some(message) => TransportError::Auth(message),
                    None => TransportError::unreachable(&target, ssh_handshake_step(&e), e),
                })
        };
        let mut handle = with_timeout(timeout, &target, handshake).await?;
        authenticate(hop, shared, &mut handle).await?;
        Ok(Session {
            handle,
            _carrier: carrier,
        })
    })
}

/// `fut` within `ConnectTimeout` (`timeout`), else within [`HANDSHAKE_WAIT`].
async fn with_timeout<T>(
    timeout: Option<std::time::Duration>,
    target: &str,
    fut: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let (limit, why) = match timeout {
        Some(t) => (t, "ConnectTimeout"),
        None => (HANDSHAKE_WAIT, "set ConnectTimeout to wait longer"),
    };
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(connect_error(
            target,
            format!("connection timed out after {}s ({why})", limit.as_secs()),
        ))
    })
}

async fn tcp_connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, TransportError> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TransportError::unreachable(&target, format!("cannot resolve {host}"), e))?;
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => {
                // Best effort: a failure only costs latency.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => TransportError::unreachable(target, "TCP connect", e),
        None => connect_error(target, format!("{host} has no address")),
    })
}

/// What went wrong in the SSH handshake, in words; the error itself is kept as the source.
fn ssh_handshake_step(e: &russh::Error) -> &'static str {
    match e {
        russh::Error::Disconnect | russh::Error::HUP => {
            "the server closed the connection during the SSH handshake"
        }
        _ => SSH_HANDSHAKE,
    }
}

/// The step an SSH handshake failure names (algorithms not agreed, a protocol error): one the
/// system `ssh` may still get through (`crate::ssh_auto` falls back on it).
pub const SSH_HANDSHAKE: &str = "SSH handshake";

fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

const CIPHERS_AES_FIRST: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];
const CIPHERS_CHACHA_FIRST: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

fn client_config(settings: &HostSettings, known_types: &[String]) -> client::Config {
    let mut preferred = russh::Preferred {
        // AES-GCM where the CPU does AES, else ChaCha20-Poly1305: both AEAD, as OpenSSH
        // prefers.
        cipher: std::borrow::Cow::Borrowed(if aes_in_hardware() {
            CIPHERS_AES_FIRST
        } else {
            CIPHERS_CHACHA_FIRST
        }),
        ..russh::Preferred::default()
    };
    // As OpenSSH does: ask first for the host key types already recorded for this host, so a
    // host known by its RSA key is not reported unknown because it also has an Ed25519 key.
    if !known_types.is_empty() {
        let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = preferred
            .key
            .iter()
            .cloned()
            .partition(|a| known_types.contains(&algorithm_type(a)));
        first.extend(rest);
        preferred.key = std::borrow::Cow::Owned(first);
    }
    client::Config {
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET_SIZE,
        preferred,
        nodelay: true,
        keepalive_interval: settings.server_alive_interval,
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        ..client::Config::default()
    }
}

/// The russh client callbacks: host key verification and the banner.
pub(super) struct ClientHandler {
    check: Arc<HostKeyCheck>,
    /// Why the host key was refused, for the error the caller sees.
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let check = self.check.clone();
        // Reads files and may ask on the terminal: off the async threads.
        let verdict = tokio::task::spawn_blocking(move || check.verify(&key))
            .await
            .unwrap_or_else(|e| Err(format!("host key verification failed: {e}")));
        match verdict {
            Ok(()) => Ok(true),
            Err(message) => {
                *lock(&self.refusal) = Some(message);
                Ok(false)
            }
        }
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let _ = io::stderr().write_all(banner.as_bytes());
        Ok(())
    }
}
