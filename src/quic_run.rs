//! QUIC in the command: the bootstrap server's session (`arsync --server --bootstrap=quic`)
//! and `arsync://` clients.
//!
//! The bootstrap, like mosh: the client logs in over SSH and runs `arsync --server
//! --bootstrap=quic …`; that server offers a QUIC port, certificate and one-time token on its
//! stdout and serves whichever comes first — the QUIC client with the token, or `stdio` on
//! the SSH channel. The SSH session holds the server's lifetime: when it ends (stdin closes),
//! the server stops and discards what it had not finished.
//!
//! The offer's bytes are `arsync_core::proto::bootstrap`, the I/O of both ends
//! `arsync_transports::bootstrap`, the client's choice `arsync_core::negotiate` (driven by
//! [`crate::remote`]), TLS and tokens `arsync_auth`; this module only runs the server's role
//! on what the bootstrap yields, and connects to `arsync serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arsync_auth::device::LoginStore;
use arsync_auth::tls::{self, Identity};
use arsync_core::engine::EventSink;
use arsync_core::negotiate::{millis, names, QuicSeen};
use arsync_core::transport::{AuthConfig, Connection, Endpoint, TransportError, TransportFactory};
use arsync_core::SyncError;
use arsync_transports::bootstrap::{self, BootstrapServer, Chosen};
use arsync_transports::quic::{QuicTransport, QuicTrust};
use arsync_transports::tls_tcp::TlsTcpTransport;

use crate::args;
use crate::output::explain;

/// This side's TLS material could not be set up (`--tls-ca`, `--tls-cert`, the pins file).
fn setup_err(what: &'static str) -> impl FnOnce(arsync_auth::AuthError) -> SyncError {
    move |e| SyncError::Transport(TransportError::setup(what, e))
}

/// `arsync --server --bootstrap=quic …`: serve `role` over QUIC (or over stdio if the client
/// asks), for as long as stdin is open.
pub async fn serve_bootstrap(
    cmd: &args::Command,
    role: arsync::ServerRole,
    paths: Vec<PathBuf>,
    sink: Arc<dyn EventSink>,
) -> Result<arsync::RunReport, SyncError> {
    let server = BootstrapServer::bind(cmd.quic)?;
    server.announce()?;
    let chosen = server.wait_for_client(bootstrap::CLIENT_WAIT).await;
    let opts = cmd.opts.clone();
    match chosen {
        Chosen::Gone => {
            server.close();
            Err(SyncError::Usage(
                "bootstrap: the client neither connected nor asked for stdio".into(),
            ))
        }
        Chosen::Stdio => {
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
                _ = bootstrap::stdin_closed() => Err(SyncError::StreamIo(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the SSH session ended",
                ))),
            };
            if r.is_ok() {
                // The session is complete; the client closes QUIC, then SSH.
                let _ = conn.close().await;
            }
            server.close();
            r
        }
    }
}

/// The bearer token for `arsync://`: `--token-file`, else `$ARSYNC_TOKEN`, else (issue 19) the
/// access token of the stored login for `--oidc ISSUER` or `$ARSYNC_OIDC`, refreshed first when
/// near its expiry (a blocking exchange with the issuer, bounded by its timeout).
pub fn client_token(cmd: &args::Command) -> Result<Option<String>, SyncError> {
    if let Some(path) = &cmd.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| SyncError::Select {
            what: "read token file",
            path: path.clone(),
            source: e,
        })?;
        return Ok(Some(text.trim().to_owned()));
    }
    if let Some(t) = std::env::var("ARSYNC_TOKEN").ok().filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    let issuer = match &cmd.oidc {
        Some(i) => i.clone(),
        None => match std::env::var("ARSYNC_OIDC").ok().filter(|i| !i.is_empty()) {
            Some(i) => i,
            None => return Ok(None),
        },
    };
    let store = LoginStore::default_dir()
        .map(|d| LoginStore::new(&d))
        .ok_or_else(|| {
            SyncError::Transport(TransportError::setup(
                "the OIDC login",
                "no home directory (set XDG_CONFIG_HOME)",
            ))
        })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = store
        .access_token(&mut arsync_auth::http::Client::new(None), &issuer, now)
        .map_err(setup_err("--oidc"))?;
    Ok(Some(token))
}

/// Connect to `arsync serve` at `arsync://host:port/target` with the command line's trust
/// settings and token, as `--transport` names it: QUIC (`quic`, `auto`), TLS over TCP
/// (`tls`) or MPTCP (`mptcp`), HTTP/2 (`h2`) or HTTP/3 (`h3`).
pub async fn connect_daemon(
    cmd: &args::Command,
    host: &str,
    port: u16,
    target: &str,
    args: Vec<String>,
) -> Result<Box<dyn Connection>, SyncError> {
    let (trust, identity) = daemon_trust(cmd)?;
    // Issue 17, mptcp: `--transport=tls` or `mptcp`: TLS over (MP)TCP, same trust and token.
    let tcp = match cmd.transport.as_str() {
        names::TLS => Some(false),
        names::MPTCP => Some(true),
        _ => None,
    };
    // Issue 17, h2: HTTP/2 over TLS on the TCP port, through a proxy if one is set.
    if tcp.is_none() && cmd.transport == names::H2 {
        return connect_daemon_h2(cmd, trust, identity, host, port, target, args).await;
    }
    if let Some(mptcp) = tcp {
        return connect_daemon_tcp(
            cmd,
            TlsTcpTransport::new(trust, identity, mptcp),
            host,
            port,
            target,
            args,
        )
        .await;
    }
    // Issue 17, h3: `--transport=h3`: HTTP/3 on the same UDP port, same trust and token.
    if cmd.transport == names::H3 {
        return connect_daemon_h3(cmd, trust, identity, host, port, target, args).await;
    }
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
            millis(t.elapsed())
        ),
    );
    Ok(conn)
}

/// Issue 17, h3: what a client asks `arsync serve` for: the command line's token, `target`
/// (`module/path`) and the words after `--server`.
fn admit_request(
    cmd: &args::Command,
    target: &str,
    args: Vec<String>,
) -> Result<arsync_core::proto::admit::AdmitRequest, SyncError> {
    Ok(arsync_core::proto::admit::AdmitRequest {
        token: client_token(cmd)?.unwrap_or_default(),
        target: target.to_owned(),
        args,
    })
}

/// Issue 17, h3: `connect` to the address of `host:port`, within `--contimeout`.
async fn connect_within<C, F>(
    cmd: &args::Command,
    host: &str,
    port: u16,
    connect: impl FnOnce(std::net::SocketAddr) -> F,
) -> Result<C, SyncError>
where
    F: std::future::Future<Output = Result<C, TransportError>>,
{
    arsync::within_connect_timeout(cmd.opts.connect_timeout, async {
        let addr = arsync_transports::quic::resolve(host, port).await?;
        Ok(connect(addr).await?)
    })
    .await
}

/// Issue 17, h3: [`connect_daemon`] over HTTP/3 (ALPN `h3`) to the server's UDP port.
async fn connect_daemon_h3(
    cmd: &args::Command,
    trust: QuicTrust,
    identity: Option<Identity>,
    host: &str,
    port: u16,
    target: &str,
    args: Vec<String>,
) -> Result<Box<dyn Connection>, SyncError> {
    let request = admit_request(cmd, target, args)?;
    let h3 = arsync_transports::h3::H3Transport::new(trust, identity, cmd.quic);
    let t = Instant::now();
    let conn = connect_within(cmd, host, port, |addr| h3.connect_to(addr, host, &request)).await?;
    explain(
        cmd.explain,
        format!(
            "h3: HTTP/3 to arsync://{host}:{port}/{target} ({}): a POST request stream per lane; admitted in {}",
            conn.remote_address(),
            millis(t.elapsed())
        ),
    );
    Ok(Box::new(conn))
}

/// How a client trusts `arsync serve` (`--tls-ca`, else the known-servers file) and the
/// identity it presents (`--tls-cert`/`--tls-key`), whatever carries the session.
fn daemon_trust(cmd: &args::Command) -> Result<(QuicTrust, Option<Identity>), SyncError> {
    let trust = match &cmd.tls_ca {
        Some(ca) => QuicTrust::Ca(tls::load_ca_certs(ca).map_err(setup_err("--tls-ca"))?),
        None => QuicTrust::KnownServers(
            arsync_auth::pins::KnownServers::default_path().ok_or_else(|| {
                SyncError::Transport(TransportError::setup(
                    "the known-servers file",
                    "no home directory (set XDG_CONFIG_HOME)",
                ))
            })?,
        ),
    };
    let identity = match &cmd.tls_client {
        Some((c, k)) => {
            Some(Identity::from_pem_files(c, k).map_err(setup_err("--tls-cert/--tls-key"))?)
        }
        None => None,
    };
    Ok((trust, identity))
}

/// Issue 16: `arsync://` under `auto`: QUIC to `arsync serve`, the handshake given `limit`.
/// What was seen, and the admitted connection — or, for an answer that refuses (token,
/// module, certificate), the run's error, as no other path would be admitted either.
pub async fn probe_daemon_quic(
    cmd: &args::Command,
    host: &str,
    port: u16,
    target: &str,
    args: Vec<String>,
    limit: std::time::Duration,
) -> Result<(QuicSeen, Option<Box<dyn Connection>>), SyncError> {
    let (trust, identity) = daemon_trust(cmd)?;
    let to = match arsync_transports::quic::resolve(host, port).await {
        Ok(a) => a,
        Err(e) => {
            let seen = QuicSeen::NoAddress {
                host: host.to_owned(),
                reason: e.to_string(),
            };
            return Ok((seen, None));
        }
    };
    let mut tuning = cmd.quic;
    tuning.handshake_timeout = limit;
    let quic = QuicTransport::new(trust, identity, tuning);
    let request = arsync_core::proto::admit::AdmitRequest {
        token: client_token(cmd)?.unwrap_or_default(),
        target: target.to_owned(),
        args,
    };
    let t = Instant::now();
    let result = quic.connect_to(to, host, &request).await;
    let after = t.elapsed();
    Ok(match result {
        Ok(conn) => (
            QuicSeen::Established { to, took: after },
            Some(Box::new(conn) as Box<dyn Connection>),
        ),
        Err(
            e @ (TransportError::Refused { .. }
            | TransportError::Auth(_)
            | TransportError::Setup { .. }
            | TransportError::PeerMisbehaved(_)),
        ) => return Err(e.into()),
        Err(e) if after >= limit => (
            QuicSeen::TimedOut {
                to,
                after,
                reason: e.to_string(),
            },
            None,
        ),
        Err(e) => (
            QuicSeen::Failed {
                to,
                after,
                reason: e.to_string(),
            },
            None,
        ),
    })
}

/// Issue 17, mptcp: [`connect_daemon`] over TLS on the server's TCP port (the same number as
/// its UDP one unless the URL says otherwise), saying in `--explain` whether the connection
/// really is MPTCP and why not.
async fn connect_daemon_tcp(
    cmd: &args::Command,
    transport: TlsTcpTransport,
    host: &str,
    port: u16,
    target: &str,
    args: Vec<String>,
) -> Result<Box<dyn Connection>, SyncError> {
    let request = admit_request(cmd, target, args)?;
    let transport = transport.with_handshake_timeout(cmd.quic.handshake_timeout);
    let t = Instant::now();
    let conn = connect_within(cmd, host, port, |addr| {
        transport.connect_to(addr, host, &request)
    })
    .await?;
    explain(
        cmd.explain,
        format!(
            "{} to arsync://{host}:{port}/{target}: {}; admitted in {}",
            transport.name(),
            conn.describe(),
            millis(t.elapsed())
        ),
    );
    let (on, name) = (cmd.explain, transport.name().to_owned());
    let conn = conn.on_close(move |state, peak| {
        if state.is_mptcp() {
            let s = if peak == 1 { "" } else { "s" };
            explain(
                on,
                format!("{name}: the session used up to {peak} subflow{s} at once"),
            );
        }
    });
    Ok(Box::new(conn))
}

/// Issue 17, h2: [`connect_daemon`] over HTTP/2 (`--transport=h2`): TLS with ALPN `h2` on the
/// server's TCP port, through `--proxy` or `$HTTPS_PROXY` (less `$NO_PROXY`) when set; each
/// lane a stream of the one connection.
async fn connect_daemon_h2(
    cmd: &args::Command,
    trust: QuicTrust,
    identity: Option<Identity>,
    host: &str,
    port: u16,
    target: &str,
    args: Vec<String>,
) -> Result<Box<dyn Connection>, SyncError> {
    use arsync_transports::http2::H2Transport;
    use arsync_transports::http_proxy::Proxy;
    let proxy = Proxy::from_process(cmd.proxy.as_deref(), host)
        .map_err(|e| SyncError::Transport(TransportError::setup("--proxy/HTTPS_PROXY", e)))?;
    let streams = cmd
        .opts
        .streams
        .unwrap_or(arsync_core::negotiate::DEFAULT_STREAMS);
    let transport = H2Transport::new(trust, identity, streams)
        .with_proxy(proxy)
        .with_handshake_timeout(cmd.quic.handshake_timeout);
    let request = arsync_core::proto::admit::AdmitRequest {
        token: client_token(cmd)?.unwrap_or_default(),
        target: target.to_owned(),
        args,
    };
    let t = Instant::now();
    let conn = arsync::within_connect_timeout(cmd.opts.connect_timeout, async {
        Ok(transport.connect_to(host, port, &request).await?)
    })
    .await?;
    let via = match transport.proxy() {
        Some(p) => format!(" through the proxy {}", p.describe()),
        None => String::new(),
    };
    explain(
        cmd.explain,
        format!(
            "h2 to arsync://{host}:{port}/{target}: HTTP/2 over TLS{via}, up to {streams} \
             streams; admitted in {}",
            millis(t.elapsed())
        ),
    );
    Ok(Box::new(conn))
}
