//! QUIC in the command: the SSH bootstrap (both ends), `--transport=auto`'s choice, and
//! `arsync://` clients.
//!
//! The bootstrap, like mosh: the client logs in over SSH and runs `arsync --server
//! --bootstrap=quic …`; that server binds an ephemeral UDP port with a fresh self-signed
//! certificate and a one-time token and prints one line on stdout
//! (`ARSYNC-BOOTSTRAP 1 quic ADDR PORT FINGERPRINT TOKEN`); the client connects by QUIC pinned
//! to that certificate and presents the token. The SSH session holds the server's lifetime:
//! when it ends (stdin closes), the server stops and discards what it had not finished. If
//! the QUIC handshake fails, the client may instead write `stdio` on the SSH channel and the
//! same server speaks the session there (what `--transport=auto` does when UDP is blocked).
//!
//! The protocol logic is in `arsync_core`, QUIC in `arsync_transports::quic`, TLS and tokens
//! in `arsync_auth`; this module only joins them.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arsync_auth::tls::{self, ClientAuth, Fingerprint, Identity};
use arsync_core::engine::EventSink;
use arsync_core::proto::admit::AdmitRequest;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, StreamPair, TransportError,
    TransportFactory,
};
use arsync_core::SyncError;
use arsync_transports::quic::{QuicServer, QuicTransport, QuicTrust};
use arsync_transports::stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args;

/// The first word of the bootstrap line.
const BOOTSTRAP_TAG: &str = "ARSYNC-BOOTSTRAP";
/// The longest bootstrap line a client reads.
const MAX_LINE: usize = 512;
/// How long a bootstrap server waits for its client.
const CLIENT_WAIT: Duration = Duration::from_secs(60);
/// How long `--transport=auto` gives the QUIC handshake before it falls back to SSH.
const AUTO_HANDSHAKE: Duration = Duration::from_secs(3);

fn io_err(e: impl std::fmt::Display) -> SyncError {
    SyncError::StreamIo(std::io::Error::other(e.to_string()))
}

fn auth_err(e: impl std::fmt::Display) -> SyncError {
    SyncError::Transport(TransportError::Auth(e.to_string()))
}

/// Read one line from fd 0 a byte at a time (nothing beyond it is consumed, so the session
/// can follow on the same stdin); `None` at end of input. A non-blocking stdin is waited on
/// (`stdio::read_waiting`), not taken for the end.
async fn read_control_line() -> Option<String> {
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        let mut line = Vec::new();
        loop {
            let mut b = [0u8; 1];
            match stdio::read_waiting(stdin.as_fd(), &mut b) {
                Ok(1) => {}
                _ => return None,
            }
            if b[0] == b'\n' {
                return String::from_utf8(line).ok();
            }
            if line.len() >= 64 {
                return None;
            }
            line.push(b[0]);
        }
    })
    .await
    .ok()
    .flatten()
}

/// Wait until stdin reaches its end (the SSH session is gone); blocking or not.
async fn stdin_closed() {
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        let mut b = [0u8; 256];
        while let Ok(1..) = stdio::read_waiting(stdin.as_fd(), &mut b) {}
    })
    .await
    .ok();
}

/// `arsync --server --bootstrap=quic …`: serve `role` over QUIC (or over stdio if the client
/// asks), for as long as stdin is open.
pub async fn serve_bootstrap(
    cmd: &args::Command,
    role: arsync::ServerRole,
    paths: Vec<PathBuf>,
    sink: Arc<dyn EventSink>,
) -> Result<arsync::RunReport, SyncError> {
    let identity = Identity::generate(&["arsync-bootstrap".to_owned()]).map_err(auth_err)?;
    let fingerprint = identity.fingerprint();
    let token = arsync_auth::token::generate_secret().map_err(auth_err)?;
    let config = tls::server_config(&identity, &ClientAuth::None).map_err(auth_err)?;
    let server = match QuicServer::bind(
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        config.clone(),
        cmd.quic,
    ) {
        Ok(s) => s,
        // No IPv6 here: IPv4 only.
        Err(_) => QuicServer::bind(
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            config,
            cmd.quic,
        )?,
    };
    let port = server.local_addr().map_err(io_err)?.port();
    // SSH_CONNECTION = "client_ip client_port server_ip server_port": the address the client
    // reached us at.
    let addr = std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|v| v.split_whitespace().nth(2).map(str::to_owned))
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or_else(|| "-".into());
    // Straight to fd 1 (nothing else is written on a server's stdout), waiting for room if
    // it is non-blocking and full.
    let line = format!("{BOOTSTRAP_TAG} 1 quic {addr} {port} {fingerprint} {token}\n");
    stdio::write_all_waiting(std::io::stdout().as_fd(), line.as_bytes()).map_err(io_err)?;
    enum Chosen {
        Quic(arsync_transports::quic::QuicConnection),
        Stdio,
        Gone,
    }
    let server = Arc::new(server);
    // Handshakes run side by side: a stranger probing the port cannot hold up the client.
    let (admitted_tx, mut admitted_rx) = tokio::sync::mpsc::channel(1);
    let accepter = tokio::spawn({
        let (server, token) = (server.clone(), token.clone());
        async move {
            while let Some(incoming) = server.incoming().await {
                let (server, token, tx) = (server.clone(), token.clone(), admitted_tx.clone());
                tokio::spawn(async move {
                    let Ok(admission) = server.handshake(incoming).await else {
                        return;
                    };
                    if arsync_auth::token::same_secret(&admission.request.token, &token) {
                        if let Ok(conn) = admission.admit().await {
                            let _ = tx.send(conn).await;
                        }
                    } else {
                        admission.refuse(5, "bootstrap token not recognised").await;
                    }
                });
            }
        }
    });
    let admitted = admitted_rx.recv();
    let chosen = tokio::select! {
        c = admitted => c.map_or(Chosen::Gone, Chosen::Quic),
        line = read_control_line() => match line.as_deref() {
            Some("stdio") => Chosen::Stdio,
            _ => Chosen::Gone,
        },
        _ = tokio::time::sleep(CLIENT_WAIT) => Chosen::Gone,
    };
    let opts = cmd.opts.clone();
    match chosen {
        Chosen::Gone => {
            accepter.abort();
            Err(SyncError::Usage(
                "bootstrap: the client neither connected nor asked for stdio".into(),
            ))
        }
        Chosen::Stdio => {
            accepter.abort();
            server.close();
            arsync::serve(
                Box::new(arsync_transports::pipe::PipeConnection::stdio()),
                role,
                paths,
                opts,
                sink,
            )
            .await
        }
        Chosen::Quic(conn) => {
            // The SSH session holds our lifetime: when it ends, so does the session.
            let r = tokio::select! {
                r = arsync::serve_session(&conn, role, paths, opts, sink) => r,
                _ = stdin_closed() => Err(SyncError::StreamIo(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the SSH session ended",
                ))),
            };
            if r.is_ok() {
                // The session is complete; the client closes QUIC, then SSH.
                let _ = conn.close().await;
            }
            accepter.abort();
            server.close();
            r
        }
    }
}

/// The bootstrap line's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapOffer {
    /// The server's address as it saw the SSH connection, if it could tell.
    pub addr: Option<std::net::IpAddr>,
    /// Its UDP port.
    pub port: u16,
    /// Its certificate.
    pub fingerprint: Fingerprint,
    /// The one-time token.
    pub token: String,
}

/// Parse `ARSYNC-BOOTSTRAP 1 quic ADDR PORT FINGERPRINT TOKEN`.
pub fn parse_offer(line: &str) -> Option<BootstrapOffer> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        [BOOTSTRAP_TAG, "1", "quic", addr, port, fp, token] => Some(BootstrapOffer {
            addr: addr.parse().ok(),
            port: port.parse().ok().filter(|&p| p != 0)?,
            fingerprint: fp.parse().ok()?,
            token: (*token).to_owned(),
        }),
        _ => None,
    }
}

/// One already-open stream as a connection, closing the connection it came from.
#[derive(Debug)]
struct OneStream {
    pair: Mutex<Option<StreamPair>>,
    inner: Box<dyn Connection>,
}

impl Connection for OneStream {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            self.pair
                .lock()
                .ok()
                .and_then(|mut p| p.take())
                .ok_or(TransportError::Unsupported {
                    transport: "ssh".into(),
                    what: "a second stream",
                })
        })
    }
    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.open_stream()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if let Ok(mut p) = self.pair.lock() {
                p.take();
            }
            self.inner.close().await
        })
    }
}

/// A QUIC session whose server lives as long as an SSH session: closing it closes the QUIC
/// connection, then the SSH channel, and reaps the remote server.
#[derive(Debug)]
struct BootstrappedQuic {
    quic: arsync_transports::quic::QuicConnection,
    ssh: OneStream,
}

impl Connection for BootstrappedQuic {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.quic.open_stream()
    }
    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.quic.accept_stream()
    }
    fn capabilities(&self) -> Capabilities {
        self.quic.capabilities()
    }
    fn path_stats(&self) -> Option<arsync_core::transport::PathStats> {
        self.quic.path_stats()
    }
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let q = self.quic.close().await;
            let s = self.ssh.close().await;
            s.and(q)
        })
    }
}

/// Print one `--explain` line.
pub fn explain(on: bool, what: impl AsRef<str>) {
    if on {
        err_line!("explain: {}", what.as_ref());
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// What the client's bootstrap attempt ended in.
pub enum Bootstrapped {
    /// A connection to run the session on (QUIC, or the SSH channel after a fallback).
    Ready(Box<dyn Connection>),
    /// The remote side has no arsync (exit 127): the caller may speak rsync's protocol.
    NoArsync(TransportError),
}

/// Log in with `ssh`, start the bootstrap server, and connect by QUIC; with `fallback`, use
/// the SSH channel itself when QUIC does not get through.
pub async fn connect_bootstrapped(
    cmd: &args::Command,
    ssh: &dyn arsync_core::transport::TransportFactory,
    mut endpoint: Endpoint,
    host: &str,
    fallback: bool,
) -> Result<Bootstrapped, SyncError> {
    let on = cmd.explain;
    // `arsync --server` → `arsync --server --bootstrap=quic`.
    if let Some(at) = endpoint.remote_command.iter().position(|w| w == "--server") {
        endpoint
            .remote_command
            .insert(at + 1, "--bootstrap=quic".into());
    }
    let started = Instant::now();
    let conn = ssh.connect(&endpoint, &AuthConfig::default()).await?;
    let mut pair = conn.open_stream().await?;
    // The offer line, bounded in length and time.
    let mut line = Vec::new();
    let read_line = async {
        let mut b = [0u8; 1];
        loop {
            match pair.recv.read(&mut b).await {
                Ok(0) | Err(_) => return false,
                Ok(_) if b[0] == b'\n' => return true,
                Ok(_) if line.len() >= MAX_LINE => return false,
                Ok(_) => line.push(b[0]),
            }
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(60), read_line)
        .await
        .unwrap_or(false);
    let text = String::from_utf8_lossy(&line).into_owned();
    let offer = if got { parse_offer(&text) } else { None };
    let Some(offer) = offer else {
        drop(pair);
        // No offer: the remote command failed; its exit status says why.
        let status = conn.close().await;
        explain(
            on,
            format!(
                "ssh {host}: `{}` gave no QUIC offer ({})",
                endpoint.remote_command.join(" "),
                match &status {
                    Ok(()) => "it exited".to_owned(),
                    Err(e) => e.to_string(),
                }
            ),
        );
        return match status {
            Err(
                e @ TransportError::PeerExited {
                    code: Some(127), ..
                },
            ) => {
                explain(on, format!("remote arsync: not found on {host}"));
                Ok(Bootstrapped::NoArsync(e))
            }
            Err(e) => Err(e.into()),
            Ok(()) => Err(SyncError::Transport(TransportError::Connect {
                endpoint: host.to_owned(),
                reason: format!("the remote arsync did not offer QUIC (said {text:?})"),
            })),
        };
    };
    explain(
        on,
        format!(
            "ssh login to {host} and `arsync --server --bootstrap=quic`: ok in {} (QUIC offered on UDP port {}, certificate {})",
            ms(started.elapsed()),
            offer.port,
            offer.fingerprint
        ),
    );
    // Where to reach it: the address the remote saw our SSH connection arrive at, else the
    // host name.
    let addr: Result<SocketAddr, TransportError> = match offer.addr {
        Some(ip) => Ok((ip, offer.port).into()),
        None => arsync_transports::quic::resolve(host, offer.port).await,
    };
    let mut tuning = cmd.quic;
    if fallback {
        tuning.handshake_timeout = AUTO_HANDSHAKE;
    }
    let quic = QuicTransport::new(QuicTrust::Pinned(offer.fingerprint), None, tuning);
    let request = AdmitRequest {
        token: offer.token.clone(),
        ..AdmitRequest::default()
    };
    let t = Instant::now();
    let ssh_conn = OneStream {
        pair: Mutex::new(Some(pair)),
        inner: conn,
    };
    let shown = match &addr {
        Ok(a) => a.to_string(),
        Err(_) => format!("{host}:{}", offer.port),
    };
    let tried = match addr {
        Ok(addr) => quic.connect_to(addr, host, &request).await,
        Err(e) => Err(e),
    };
    match tried {
        Ok(q) => {
            explain(
                on,
                format!("QUIC handshake to {shown}: ok in {}", ms(t.elapsed())),
            );
            explain(
                on,
                format!(
                    "decision: quic (remote arsync present, UDP gets through): {} streams, window {} KiB per stream, {:?} congestion control",
                    tuning.streams,
                    tuning.window >> 10,
                    tuning.congestion
                ),
            );
            // The SSH channel stays open (unused) for the session's lifetime.
            Ok(Bootstrapped::Ready(Box::new(BootstrappedQuic {
                quic: q,
                ssh: ssh_conn,
            })))
        }
        Err(e) if fallback => {
            explain(
                on,
                format!(
                    "QUIC handshake to {shown}: failed after {}: {e}",
                    ms(t.elapsed())
                ),
            );
            explain(
                on,
                "decision: ssh, on the same login (UDP does not get through)",
            );
            let mut p = ssh_conn
                .pair
                .lock()
                .ok()
                .and_then(|mut p| p.take())
                .ok_or_else(|| io_err("the SSH channel is gone"))?;
            p.send.write_all(b"stdio\n").await.map_err(io_err)?;
            p.send.flush().await.map_err(io_err)?;
            if let Ok(mut slot) = ssh_conn.pair.lock() {
                *slot = Some(p);
            }
            Ok(Bootstrapped::Ready(Box::new(ssh_conn)))
        }
        Err(e) => {
            let _ = ssh_conn.close().await;
            Err(SyncError::Transport(match e {
                TransportError::Connect { endpoint, reason } => TransportError::Connect {
                    endpoint,
                    reason: format!("{reason}; --transport=ssh works without UDP"),
                },
                other => other,
            }))
        }
    }
}

/// The bearer token for `arsync://`: `--token-file`, else `$ARSYNC_TOKEN`.
pub fn client_token(cmd: &args::Command) -> Result<Option<String>, SyncError> {
    if let Some(path) = &cmd.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| SyncError::Select {
            what: "read token file",
            path: path.clone(),
            source: e,
        })?;
        return Ok(Some(text.trim().to_owned()));
    }
    Ok(std::env::var("ARSYNC_TOKEN").ok().filter(|t| !t.is_empty()))
}

/// Connect to `arsync serve` at `arsync://host:port/target` with the command line's trust
/// settings and token.
pub async fn connect_daemon(
    cmd: &args::Command,
    host: &str,
    port: u16,
    target: &str,
    args: Vec<String>,
) -> Result<Box<dyn Connection>, SyncError> {
    let trust = match &cmd.tls_ca {
        Some(ca) => QuicTrust::Ca(tls::load_ca_certs(ca).map_err(auth_err)?),
        None => {
            QuicTrust::KnownServers(arsync_auth::pins::KnownServers::default_path().ok_or_else(
                || auth_err("no home directory for the known-servers file (set XDG_CONFIG_HOME)"),
            )?)
        }
    };
    let identity = match &cmd.tls_client {
        Some((c, k)) => Some(Identity::from_pem_files(c, k).map_err(auth_err)?),
        None => None,
    };
    let quic = QuicTransport::new(trust, identity, cmd.quic);
    let mut endpoint = Endpoint::host(host);
    endpoint.port = Some(port);
    endpoint.path = target.to_owned();
    endpoint.remote_command = args;
    let mut auth = AuthConfig::default();
    auth.token = client_token(cmd)?;
    let t = Instant::now();
    let conn = arsync::within_connect_timeout(cmd.opts.connect_timeout, async {
        Ok(quic.connect(&endpoint, &auth).await?)
    })
    .await?;
    explain(
        cmd.explain,
        format!(
            "QUIC to arsync://{host}:{port}/{target}: admitted in {}",
            ms(t.elapsed())
        ),
    );
    Ok(conn)
}
