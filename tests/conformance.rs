//! The library-level transport conformance suite (`arsync_transports::conformance`) against
//! every transport this workspace has, as ripgrep runs its cases against every matcher: the
//! `backends!` macro below gives each backend a module with one `#[test]` per case (from
//! `conformance_tests!`, the macro a plugin's tests use too) and a sync of the rich fixture
//! both ways.
//!
//! The backends, each a real connected pair:
//! - `mem`: the in-process transport, listener and connection.
//! - `pipe`: `PipeConnection`s over two real OS pipes.
//! - `quic`: `QuicTransport` (through its `TransportFactory::connect`, as `arsync://` does) to a
//!   `QuicServer` on loopback UDP with a certificate generated per pair, pinned by the client.
//! - `tls`, `mptcp`: `TlsTcpTransport` to a `TlsTcpServer` on loopback TCP, pinned; `mptcp`
//!   asserts both ends really are MPTCP.
//! - `h2`: `H2Transport` to a `TlsTcpServer` that takes it by ALPN `h2`, pinned; a stream per
//!   lane.
//! - `h3` (issue 17): `H3Transport` to a `QuicServer` answering HTTP/3 on loopback UDP, through
//!   `handshake_any` (the daemon's dispatch on the negotiated ALPN), pinned; the server only
//!   accepts (HTTP/3 requests come from the client).
//! - `unix_plugin`: the example plugin (`examples/unix_socket/transport.rs`) on a socket path.
//! - `external_helper`: the example helper program (`examples/transport_helper/`) as
//!   `--transport=NAME` runs one from PATH, through its listener on a Unix socket, which runs
//!   the lane hand-off below (as the SSH backends' sshd does).
//! - `ssh_system`, `ssh_native`, `ssh_pool`: the SSH family through a real OpenSSH `sshd` on a
//!   loopback port (`common/sshd.rs`, one per test). The far end is not a whole
//!   `arsync --server` (that runs the engine itself; `tests/ssh.rs` covers it through the CLI)
//!   but `arsync --server --lane=ID` — the pool's real lane hand-off — which passes the SSH
//!   session's stdin and stdout to a `LaneServer` in this test process. So the client is the
//!   real transport, every byte crosses sshd, and the server end is the pool's real server
//!   code. For the pool, the backend connections run that hand-off instead of the commands the
//!   pool asks for (`HandOffToTest`), the first connection to one `LaneServer`, the lanes to
//!   another behind it, as `arsync --server --lane-session` arranges it.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "../examples/unix_socket/transport.rs"]
mod unix_socket;

use std::path::Path;
use std::sync::Arc;

use arsync_core::engine::SyncOptions;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Connection, Endpoint, ListenConfig, TransportError, TransportFactory,
};
use arsync_transports::conformance::{
    self, sync_over_pair, ConformanceError, ConnectedPair, Opener, PairMaker,
};
use arsync_transports::ssh_pool::{new_session_id, LaneServer, SshPool};
use common::sshd::Sshd;

/// The in-process transport.
async fn mem_pair() -> Result<ConnectedPair, TransportError> {
    let mem = arsync_transports::mem::Mem::default();
    let listener = mem.listen(&ListenConfig::bind("conformance")).await?;
    let (endpoint, auth) = (Endpoint::host("conformance"), AuthConfig::default());
    let (client, server) = tokio::try_join!(mem.connect(&endpoint, &auth), listener.accept())?;
    Ok(ConnectedPair::new(client, server).keep(listener))
}

/// Two pipe connections over two OS pipes, one each way.
async fn pipe_pair() -> Result<ConnectedPair, TransportError> {
    use arsync_transports::pipe::PipeConnection;
    let (to_server, from_client) = tokio::net::unix::pipe::pipe()?;
    let (to_client, from_server) = tokio::net::unix::pipe::pipe()?;
    Ok(ConnectedPair::new(
        Box::new(PipeConnection::new(from_server, to_server)),
        Box::new(PipeConnection::new(from_client, to_client)),
    ))
}

/// A QUIC server on loopback with a certificate of its own, answering HTTP/3 too if `h3`
/// (issue 17): the server, its fingerprint for the client to pin, and where and with which
/// token the client asks.
fn loopback_quic_server(
    h3: bool,
) -> Result<
    (
        arsync_transports::quic::QuicServer,
        arsync_auth::tls::Fingerprint,
        Endpoint,
        AuthConfig,
    ),
    TransportError,
> {
    use arsync_auth::tls::{self, ClientAuth, Identity};
    use arsync_transports::quic::{QuicServer, QuicTuning};
    let id = Identity::generate(&["localhost".into()])
        .map_err(|e| TransportError::setup("a server identity", e))?;
    let config = tls::server_config(&id, &ClientAuth::None)
        .map_err(|e| TransportError::setup("the server's TLS configuration", e))?;
    let addr = "127.0.0.1:0".parse().unwrap();
    let server = if h3 {
        QuicServer::bind_with_h3(addr, config, QuicTuning::default())?
    } else {
        QuicServer::bind(addr, config, QuicTuning::default())?
    };
    let endpoint = Endpoint::host("127.0.0.1")
        .with_port(server.local_addr()?.port())
        .with_path("module/path");
    let auth = AuthConfig::default().with_token("conformance-token");
    Ok((server, id.fingerprint(), endpoint, auth))
}

/// A QUIC client admitted by a QUIC server on loopback, certificate pinned.
async fn quic_pair() -> Result<ConnectedPair, TransportError> {
    use arsync_transports::quic::{QuicTransport, QuicTrust, QuicTuning};
    let (server, fingerprint, endpoint, auth) = loopback_quic_server(false)?;
    let client = QuicTransport::new(QuicTrust::Pinned(fingerprint), None, QuicTuning::default());
    let admit = async {
        let incoming = server.incoming().await.ok_or(TransportError::Closed)?;
        let admission = server.handshake(incoming).await?;
        assert_eq!(admission.request.token, "conformance-token");
        assert_eq!(admission.request.target, "module/path");
        Ok(Box::new(admission.admit().await?) as Box<dyn Connection>)
    };
    let (client, server_end) = tokio::try_join!(client.connect(&endpoint, &auth), admit)?;
    Ok(ConnectedPair::new(client, server_end).keep(server))
}

/// Issue 17, mptcp: a `tls` or `mptcp` client (through `connect_to`, which its
/// `TransportFactory::connect` runs, to see whether the connection is MPTCP) admitted by a `TlsTcpServer` on loopback TCP (an MPTCP listening socket),
/// certificate pinned. For `mptcp` both ends must really be MPTCP (this kernel has it on).
async fn tls_tcp_pair(mptcp: bool) -> Result<ConnectedPair, TransportError> {
    use arsync_auth::tls::{self, ClientAuth, Identity};
    use arsync_transports::quic::QuicTrust;
    use arsync_transports::tls_tcp::{TlsTcpServer, TlsTcpTransport};
    let id = Identity::generate(&["localhost".into()])
        .map_err(|e| TransportError::setup("a server identity", e))?;
    let config = tls::server_config(&id, &ClientAuth::None)
        .map_err(|e| TransportError::setup("the server's TLS configuration", e))?;
    let server = TlsTcpServer::bind("127.0.0.1:0".parse().unwrap(), config)?;
    let port = server.local_addr()?.port();
    let client = TlsTcpTransport::new(QuicTrust::Pinned(id.fingerprint()), None, mptcp);
    assert_eq!(client.name(), if mptcp { "mptcp" } else { "tls" });
    let admit = async {
        let (tcp, peer) = server.accept().await?;
        let admission = server.handshake(tcp, peer).await?;
        assert_eq!(admission.request.token, "conformance-token");
        assert_eq!(admission.request.target, "module/path");
        assert_eq!(
            admission.mptcp_state().is_mptcp(),
            mptcp,
            "{:?}",
            admission.mptcp_state()
        );
        Ok::<_, TransportError>(Box::new(admission.admit().await?) as Box<dyn Connection>)
    };
    let endpoint_addr = format!("127.0.0.1:{port}").parse().unwrap();
    let request = arsync_core::proto::admit::AdmitRequest {
        token: "conformance-token".into(),
        target: "module/path".into(),
        args: Vec::new(),
    };
    let connect = async {
        let conn = client
            .connect_to(endpoint_addr, "127.0.0.1", &request)
            .await?;
        assert_eq!(conn.mptcp_state().is_mptcp(), mptcp, "{}", conn.describe());
        Ok::<_, TransportError>(Box::new(conn) as Box<dyn Connection>)
    };
    let (client, server_end) = tokio::try_join!(connect, admit)?;
    Ok(ConnectedPair::new(client, server_end).keep(server))
}

async fn tls_pair() -> Result<ConnectedPair, TransportError> {
    tls_tcp_pair(false).await
}

async fn mptcp_pair() -> Result<ConnectedPair, TransportError> {
    tls_tcp_pair(true).await
}

/// Issue 17, h2: an `h2` client (its `TransportFactory::connect`, as `--transport=h2` runs
/// it) admitted by a `TlsTcpServer` on loopback TCP that took it by ALPN `h2`, certificate
/// pinned; every lane a stream of the one HTTP/2 connection.
async fn h2_pair() -> Result<ConnectedPair, TransportError> {
    use arsync_auth::tls::{self, ClientAuth, Identity};
    use arsync_transports::http2::H2Transport;
    use arsync_transports::quic::QuicTrust;
    use arsync_transports::tls_tcp::TlsTcpServer;
    let id = Identity::generate(&["localhost".into()])
        .map_err(|e| TransportError::setup("a server identity", e))?;
    let config = tls::server_config(&id, &ClientAuth::None)
        .map_err(|e| TransportError::setup("the server's TLS configuration", e))?;
    let server = Arc::new(TlsTcpServer::bind("127.0.0.1:0".parse().unwrap(), config)?);
    let port = server.local_addr()?.port();
    let client = H2Transport::new(QuicTrust::Pinned(id.fingerprint()), None, 4);
    assert_eq!(client.name(), "h2");
    assert_eq!(client.capabilities().max_streams, 4);
    let admit = async {
        let (tcp, peer) = server.accept().await?;
        let admission = server.handshake_any(tcp, peer).await?.unwrap();
        assert_eq!(admission.request().token, "conformance-token");
        assert_eq!(admission.request().target, "module/path");
        assert!(
            admission.carrier().starts_with("HTTP/2"),
            "{}",
            admission.carrier()
        );
        admission.admit().await
    };
    let mut endpoint = Endpoint::host("127.0.0.1");
    endpoint.port = Some(port);
    endpoint.path = "module/path".into();
    let mut auth = AuthConfig::default();
    auth.token = Some("conformance-token".into());
    let (client, server_end) = tokio::try_join!(client.connect(&endpoint, &auth), admit)?;
    // The TCP connection's statistics, at both ends.
    for end in [&client, &server_end] {
        let stats = end.path_stats().unwrap();
        assert!(
            stats.rtt.is_some() && stats.bytes_sent.unwrap() > 0,
            "{stats:?}"
        );
    }
    Ok(ConnectedPair::new(client, server_end).keep(server))
}

/// Issue 17, h3: an `h3` client (through its `TransportFactory::connect`, as `arsync://` does)
/// admitted by a `QuicServer` answering HTTP/3 on loopback UDP, through the dispatch on the
/// negotiated ALPN that `arsync serve` runs; certificate pinned. The server only accepts
/// (HTTP/3 requests come from the client).
async fn h3_pair() -> Result<ConnectedPair, TransportError> {
    use arsync_transports::h3::H3Transport;
    use arsync_transports::quic::{QuicTrust, QuicTuning};
    let (server, fingerprint, endpoint, auth) = loopback_quic_server(true)?;
    let client = H3Transport::new(QuicTrust::Pinned(fingerprint), None, QuicTuning::default());
    assert_eq!(client.name(), "h3");
    let admit = async {
        let incoming = server.incoming().await.ok_or(TransportError::Closed)?;
        let admission = server.handshake_any(incoming).await?;
        assert_eq!(admission.carrier(), "HTTP/3");
        assert_eq!(admission.request().token, "conformance-token");
        assert_eq!(admission.request().target, "module/path");
        admission.admit().await
    };
    let (client, server_end) = tokio::try_join!(client.connect(&endpoint, &auth), admit)?;
    Ok(ConnectedPair::new(client, server_end)
        .server_only_accepts()
        .keep(server))
}

/// The example plugin on a socket path in a fresh directory.
async fn unix_plugin_pair() -> Result<ConnectedPair, TransportError> {
    let plugin = unix_socket::UnixSocketTransport;
    let dir = tempfile::tempdir()?;
    let path = dir
        .path()
        .join("plugin.sock")
        .to_string_lossy()
        .into_owned();
    let listener = plugin.listen(&ListenConfig::bind(path.clone())).await?;
    let (endpoint, auth) = (Endpoint::host(path), AuthConfig::default());
    let (client, server) = tokio::try_join!(plugin.connect(&endpoint, &auth), listener.accept())?;
    Ok(ConnectedPair::new(client, server).keep((listener, dir)))
}

/// Which SSH client connects.
#[derive(Debug, Clone, Copy)]
enum SshClient {
    /// The system `ssh` binary (`SystemSsh`).
    System,
    /// The built-in client (`NativeSsh`).
    Native,
    /// `ssh-pool` of three connections with one native login shared.
    PoolOfThree,
}

/// An sshd of its own and the client to reach it with.
struct SshBackend {
    sshd: Sshd,
    client: SshClient,
    _dir: tempfile::TempDir,
}

impl SshBackend {
    fn start(client: SshClient) -> SshBackend {
        let dir = tempfile::tempdir().unwrap();
        let sshd = Sshd::start(dir.path());
        SshBackend {
            sshd,
            client,
            _dir: dir,
        }
    }

    async fn pair(&self) -> Result<ConnectedPair, TransportError> {
        let rsh = self.sshd.rsh();
        let endpoint = Endpoint::host(self.sshd.addr.clone());
        match self.client {
            SshClient::System | SshClient::Native => {
                let id = new_session_id()?;
                let server = LaneServer::bind_with_first(&id, None)?;
                let endpoint = endpoint.with_remote_command(hand_off(&id));
                let client = match self.client {
                    SshClient::System => {
                        let ssh = arsync_transports::ssh::SystemSsh::with_rsh(&rsh)?;
                        ssh.connect(&endpoint, &AuthConfig::default()).await?
                    }
                    _ => {
                        let ssh = arsync_transports::ssh_native::NativeSsh::with_rsh(&rsh)?;
                        ssh.connect(&endpoint, &AuthConfig::default()).await?
                    }
                };
                // Its one stream arrives once the remote hand-off ran.
                Ok(ConnectedPair::new(client, Box::new(server)).server_only_accepts())
            }
            SshClient::PoolOfThree => {
                let (main_id, lane_id) = (new_session_id()?, new_session_id()?);
                let main = LaneServer::bind_with_first(&main_id, None)?;
                let server = LaneServer::bind_with_first(&lane_id, Some(Box::new(main)))?;
                let backend = HandOffToTest {
                    inner: arsync_transports::ssh_pool::SharedNativeLogin::with_rsh(&rsh)?,
                    main_id,
                    lane_id,
                };
                let pool = SshPool::new(Arc::new(backend), 3);
                let endpoint = endpoint.with_remote_command([common::ARSYNC, "--server"]);
                let client = pool.connect(&endpoint, &AuthConfig::default()).await?;
                Ok(ConnectedPair::new(client, Box::new(server)).server_only_accepts())
            }
        }
    }
}

impl PairMaker for SshBackend {
    fn make_pair(&self) -> BoxFuture<'_, Result<ConnectedPair, TransportError>> {
        Box::pin(self.pair())
    }
}

/// The remote command that hands the SSH session's stdin and stdout to session `id`'s
/// `LaneServer` here (the lane socket directory depends on `XDG_RUNTIME_DIR`: the same as
/// this process's).
fn hand_off(id: &str) -> Vec<String> {
    let runtime_dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_default();
    vec![
        "env".into(),
        format!("XDG_RUNTIME_DIR={runtime_dir}"),
        common::ARSYNC.into(),
        "--server".into(),
        format!("--lane={id}"),
    ]
}

/// An SSH backend for the pool that runs the hand-off to this test's lane servers instead of
/// the command the pool asks for: its first connection (`--lane-session=…`) to `main_id`,
/// every lane (`--lane=…`) to `lane_id`. Each is still its own SSH connection through sshd.
#[derive(Debug)]
struct HandOffToTest {
    inner: arsync_transports::ssh_pool::SharedNativeLogin,
    main_id: String,
    lane_id: String,
}

impl TransportFactory for HandOffToTest {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> arsync_core::transport::Capabilities {
        self.inner.capabilities()
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let is_main = endpoint
                .remote_command
                .iter()
                .any(|w| w.starts_with("--lane-session="));
            let id = if is_main {
                &self.main_id
            } else {
                &self.lane_id
            };
            let endpoint = endpoint.clone().with_remote_command(hand_off(id));
            self.inner.connect(&endpoint, auth).await
        })
    }
}

/// Issue 17, plugins: the example transport helper (`examples/transport_helper/
/// arsync-transport-unix`) as `ExternalHelper` runs it, to its own listener on a Unix socket;
/// the listener runs the lane hand-off, so the server end is a `LaneServer` here, as for SSH.
struct HelperBackend {
    listener: std::process::Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HelperBackend {
    fn program() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/transport_helper/arsync-transport-unix")
    }

    fn start() -> HelperBackend {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("helper.sock");
        let listener = std::process::Command::new(Self::program())
            .arg("--listen")
            .arg(&socket)
            .spawn()
            .expect("the example helper runs (it needs python3)");
        let t = std::time::Instant::now();
        while !socket.exists() {
            assert!(
                t.elapsed().as_secs() < 10,
                "the helper's socket never appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        HelperBackend {
            listener,
            socket,
            _dir: dir,
        }
    }

    async fn pair(&self) -> Result<ConnectedPair, TransportError> {
        let id = new_session_id()?;
        let server = LaneServer::bind_with_first(&id, None)?;
        let helper = arsync_transports::external::ExternalHelper::new("unix", Self::program());
        let endpoint =
            Endpoint::host(self.socket.display().to_string()).with_remote_command(hand_off(&id));
        let client = helper.connect(&endpoint, &AuthConfig::default()).await?;
        Ok(ConnectedPair::new(client, Box::new(server)).server_only_accepts())
    }
}

impl PairMaker for HelperBackend {
    fn make_pair(&self) -> BoxFuture<'_, Result<ConnectedPair, TransportError>> {
        Box::pin(self.pair())
    }
}

impl Drop for HelperBackend {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
    }
}

/// The rich fixture of `tests/common` (every file type, foreign owners, hard links, awkward
/// names) through the engine over a pair, each way, compared entry by entry.
async fn rich_fixture_both_ways(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    for opener in [Opener::Receiver, Opener::Sender] {
        let scratch = common::Scratch::new();
        let (src, dest) = (scratch.join("src"), scratch.join("dest"));
        common::build_rich_fixture(&src);
        let pair = maker
            .make_pair()
            .await
            .map_err(|source| ConformanceError::Transport {
                step: "making a pair".into(),
                source,
            })?;
        let mut opts = SyncOptions::archive();
        opts.hard_links = true;
        opts.io_timeout = Some(60);
        let out = sync_over_pair(&pair, opener, slash(&src), dest.clone(), opts).await?;
        conformance::streams::close_both(&pair).await?;
        let what = format!("rich fixture, client as {opener:?}");
        let want = common::snapshot(&src);
        common::assert_rich_fixture(&want);
        common::assert_same_tree(&what, "copy", &common::snapshot(&dest), "source", &want);
        let errors = out
            .receiver
            .errors
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(errors, 0, "{what}: per-file errors");
    }
    Ok(())
}

fn slash(p: &Path) -> std::path::PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push("/");
    s.into()
}

/// A module per backend: every conformance case, and the rich fixture both ways.
macro_rules! backends {
    ($($name:ident => $maker:expr,)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                arsync_transports::conformance_tests!($maker);

                #[test]
                fn rich_fixture_syncs_both_ways() {
                    if let Err(e) = conformance::block_on(rich_fixture_both_ways(&$maker)) {
                        panic!("{}", conformance::chain(&e));
                    }
                }
            }
        )*
    };
}

backends! {
    mem => mem_pair,
    pipe => pipe_pair,
    quic => quic_pair,
    // Issue 17, mptcp:
    tls => tls_pair,
    mptcp => mptcp_pair,
    unix_plugin => unix_plugin_pair,
    ssh_system => SshBackend::start(SshClient::System),
    ssh_native => SshBackend::start(SshClient::Native),
    ssh_pool => SshBackend::start(SshClient::PoolOfThree),
    external_helper => HelperBackend::start(),
    // Issue 17, h2:
    h2 => h2_pair,
    // Issue 17, h3:
    h3 => h3_pair,
}
