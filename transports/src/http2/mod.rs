//! Issue 17, h2: `h2` — the session over HTTP/2 to `arsync serve`'s TCP port, for networks
//! that let only HTTPS through (its proxies, its load balancers and reverse proxies).
//!
//! One TLS connection with ALPN `h2`, directly or through an HTTP `CONNECT` proxy
//! (`crate::http_proxy`); each lane one `POST` to [`PATH`] whose request body carries this
//! side's bytes and whose response body the server's — not extended `CONNECT` (RFC 8441),
//! which reverse proxies such as nginx do not forward, while a streaming `POST` is what gRPC
//! is, and nginx's `grpc_pass` forwards those both ways without buffering. The first stream
//! carries the admission request and reply as `tls` does (`crate::admission`); the reply's
//! headers hold a session identifier ([`SESSION_HEADER`]) that every further lane presents,
//! so lanes find their session even when a reverse proxy carries each stream on a
//! connection of its own (nginx does). The certificate is checked as QUIC's and `tls`'s are
//! (`crate::pinning`): through a TLS-terminating proxy it is the proxy's.
//!
//! Flow control sized for long fat paths: [`STREAM_WINDOW`] per lane and
//! [`CONNECTION_WINDOW`] for all, so one lane is not capped at window ÷ RTT below the
//! bandwidth-delay product of links up to ~1 Gbit/s × 100 ms; the windows are given back as
//! the engine reads (`lanes`).
//!
//! This uses the `h2` crate directly rather than hyper: a lane is a byte pipe, not a
//! request/response service, and h2's `SendStream`/`RecvStream` are one (with explicit flow
//! control); hyper's adaptive window would grow to 16 MiB, which [`STREAM_WINDOW`] starts at.
//!
//! Not here: the server's side (`server`), the pipes (`lanes`), the proxy (`crate::http_proxy`).

mod lanes;
pub mod server;

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arsync_auth::tls::Identity;
use arsync_core::negotiate::names;
use arsync_core::proto::admit::{AdmitReply, AdmitRequest};
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, PathStats, StreamPair,
    TransportError, TransportFactory,
};
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::http_proxy::{self, Proxy};
use crate::pinning::Pinning;
use crate::quic::{QuicTrust, HANDSHAKE_TIMEOUT};

use lanes::DRAIN_TIMEOUT;

/// The ALPN protocol.
pub const ALPN: &[u8] = b"h2";
/// The path every lane posts to.
pub const PATH: &str = "/arsync.v1/session";
/// The response header naming the admitted session, and the request header of its lanes.
pub const SESSION_HEADER: &str = "arsync-session";
/// Each stream's receive window (bytes).
pub const STREAM_WINDOW: u32 = 16 << 20;
/// The connection's receive window (bytes), shared by its streams.
pub const CONNECTION_WINDOW: u32 = 64 << 20;
/// The largest DATA frame this side accepts.
const MAX_FRAME: u32 = 256 << 10;
/// What HTTP/2 may hold per stream before the socket takes it.
const SEND_BUFFER: usize = 1 << 20;

/// The `h2` transport (client side).
#[derive(Debug, Clone)]
pub struct H2Transport {
    trust: QuicTrust,
    client_identity: Option<Identity>,
    streams: u32,
    proxy: Option<Proxy>,
    handshake_timeout: Duration,
}

impl H2Transport {
    /// A client trusting servers as `trust` says, presenting `client_identity` (mutual TLS)
    /// if given, opening up to `streams` lanes.
    pub fn new(trust: QuicTrust, client_identity: Option<Identity>, streams: u32) -> Self {
        H2Transport {
            trust,
            client_identity,
            streams: streams.max(1),
            proxy: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Go through `proxy` (HTTP `CONNECT`), or straight to the server with `None`.
    pub fn with_proxy(mut self, proxy: Option<Proxy>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Bound the TCP connect, the proxy's answer, the TLS handshake, the admission and each
    /// lane's opening by `t`.
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// The proxy it goes through, if any.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    /// Connect to `host:port` (`host` also the name for certificates and pins) and present
    /// `request`; the admitted connection.
    pub async fn connect_to(
        &self,
        host: &str,
        port: u16,
        request: &AdmitRequest,
    ) -> Result<H2Connection, TransportError> {
        let t = self.handshake_timeout;
        let pin_key = format!("{host}:{port}");
        let server = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = match &self.proxy {
            Some(p) => http_proxy::connect_via(p, host, port, t).await?,
            None => {
                let addr = crate::quic::resolve(host, port).await?;
                direct(addr, t).await?
            }
        };
        let peer = tcp.peer_addr()?;
        // A second descriptor, to ask the kernel about the connection (`path_stats`).
        let socket = socket2::SockRef::from(&tcp)
            .try_clone()
            .map(OwnedFd::from)?;
        let pinning = Pinning::start(&self.trust, &pin_key)?;
        let mut config = pinning.client_config(self.client_identity.as_ref())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        let sni = crate::pinning::server_name(host)?;
        let connecting = TlsConnector::from(Arc::new(config)).connect(sni, tcp);
        let tls = match tokio::time::timeout(t, connecting).await {
            Err(_) => {
                return Err(connect_error(
                    &server,
                    format!("no TLS handshake within {t:?}"),
                ))
            }
            Ok(Err(e)) => return Err(pinning.handshake_error("TLS handshake", e)),
            Ok(Ok(s)) => s,
        };
        if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
            return Err(connect_error(
                &server,
                "the server did not agree to HTTP/2 (ALPN h2): not arsync serve, or too old".into(),
            ));
        }
        pinning.pin_on_first_use()?;
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(tls);
        let (send_request, connection) = match tokio::time::timeout(t, handshake).await {
            Err(_) => return Err(connect_error(&server, "no HTTP/2 settings in time".into())),
            Ok(r) => r.map_err(|e| TransportError::unreachable(&server, "HTTP/2", e))?,
        };
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let conn = H2Connection {
            shared: Arc::new(ClientShared {
                authority: server.clone(),
                send_request: Mutex::new(Some(send_request)),
                session: Mutex::new(None),
                limit: t,
            }),
            first: Mutex::new(None),
            drain: Arc::default(),
            driver: Mutex::new(Some(driver)),
            streams: self.streams,
            peer,
            socket,
        };
        let mut asked = Vec::new();
        request.encode(&mut asked);
        let (mut lane, session) = conn.shared.post(None, &asked, &conn.drain).await?;
        let reply = crate::admission::read_message(&mut lane.recv, AdmitReply::decode);
        match tokio::time::timeout(t, reply).await {
            Err(_) => {
                return Err(connect_error(
                    &server,
                    "the server did not answer the admission request".into(),
                ))
            }
            Ok(r) => match r? {
                AdmitReply::Admitted => {}
                AdmitReply::Refused { code, message } => {
                    return Err(TransportError::Refused { code, message })
                }
            },
        }
        let session = session.ok_or_else(|| {
            connect_error(
                &server,
                format!("the server's answer has no {SESSION_HEADER}"),
            )
        })?;
        if let Ok(mut s) = conn.shared.session.lock() {
            *s = Some(session);
        }
        if let Ok(mut f) = conn.first.lock() {
            *f = Some(lane);
        }
        Ok(conn)
    }
}

fn connect_error(server: &str, reason: String) -> TransportError {
    TransportError::Connect {
        endpoint: server.to_owned(),
        reason,
    }
}

/// A TCP connection to `addr` within `t`.
async fn direct(addr: SocketAddr, t: Duration) -> Result<TcpStream, TransportError> {
    let server = addr.to_string();
    let tcp = match tokio::time::timeout(t, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(connect_error(
                &server,
                format!(
                    "no TCP connection within {t:?} (is TCP port {} blocked?)",
                    addr.port()
                ),
            ))
        }
        Ok(r) => r.map_err(|e| TransportError::unreachable(&server, "connecting over TCP", e))?,
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

impl TransportFactory for H2Transport {
    fn name(&self) -> &str {
        names::H2
    }

    /// Encrypted (TLS 1.3), a stream per lane; one congestion controller (one TCP
    /// connection), so not independent.
    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_max_streams(self.streams)
            .with_encrypted(true)
    }

    /// As `tls`'s: `endpoint.host`/`port` the server (default [`crate::quic::DEFAULT_PORT`]),
    /// `path` the `module/path`, `remote_command` the words after `--server`, `auth.token`
    /// the bearer token.
    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let request = crate::admission::request_of(endpoint, auth);
            let port = endpoint.port.unwrap_or(crate::quic::DEFAULT_PORT);
            let conn = self.connect_to(&endpoint.host, port, &request).await?;
            Ok(Box::new(conn) as Box<dyn Connection>)
        })
    }
}

/// What a client connection's lanes share: how to open one.
#[derive(Debug)]
struct ClientShared {
    authority: String,
    send_request: Mutex<Option<h2::client::SendRequest<Bytes>>>,
    session: Mutex<Option<String>>,
    limit: Duration,
}

impl ClientShared {
    /// Open a lane: a `POST` to [`PATH`] (presenting `session` if given) whose body starts
    /// with `preface`, its response's headers awaited (bounded); the lane and the session
    /// the response names.
    async fn post(
        &self,
        session: Option<&str>,
        preface: &[u8],
        drain: &Arc<Drain>,
    ) -> Result<(StreamPair, Option<String>), TransportError> {
        let server = self.authority.as_str();
        let h2_err = |e: h2::Error| TransportError::Io(lanes::io_error(e));
        let Some(sender) = self.send_request.lock().ok().and_then(|s| s.clone()) else {
            return Err(TransportError::Closed);
        };
        let request = self.request(session)?;
        let opened = async {
            let mut sender = sender.ready().await.map_err(h2_err)?;
            let (response, mut send) = sender.send_request(request, false).map_err(h2_err)?;
            if !preface.is_empty() {
                // Buffered by HTTP/2 until the window lets it go.
                send.send_data(Bytes::copy_from_slice(preface), false)
                    .map_err(h2_err)?;
            }
            let response = response.await.map_err(h2_err)?;
            Ok::<_, TransportError>((response, send))
        };
        let (response, send) = match tokio::time::timeout(self.limit, opened).await {
            Err(_) => {
                return Err(connect_error(
                    server,
                    format!("no answer to an HTTP/2 request within {:?}", self.limit),
                ))
            }
            Ok(r) => r?,
        };
        if response.status() != http::StatusCode::OK {
            return Err(connect_error(
                server,
                format!("HTTP/2 answer {} (not arsync serve?)", response.status()),
            ));
        }
        let named = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((lanes::lane(send, response.into_body(), drain), named))
    }
}

impl ClientShared {
    /// A further lane of `session`: a `POST` naming it, returned at once — its response is
    /// awaited by the first read, so opening lanes costs no round trip (and a reverse proxy
    /// that forwards a request once its body starts is not kept waiting).
    async fn open_lane(
        &self,
        session: Option<&str>,
        drain: &Arc<Drain>,
    ) -> Result<StreamPair, TransportError> {
        let h2_err = |e: h2::Error| TransportError::Io(lanes::io_error(e));
        let Some(sender) = self.send_request.lock().ok().and_then(|s| s.clone()) else {
            return Err(TransportError::Closed);
        };
        let request = self.request(session)?;
        let ready = tokio::time::timeout(self.limit, sender.ready());
        let mut sender = match ready.await {
            Err(_) => {
                return Err(connect_error(
                    &self.authority,
                    format!("no room for another HTTP/2 stream within {:?}", self.limit),
                ))
            }
            Ok(r) => r.map_err(h2_err)?,
        };
        let (response, send) = sender.send_request(request, false).map_err(h2_err)?;
        Ok(lanes::lane_answered_later(send, response, drain))
    }

    /// A lane's request (naming `session` if given).
    fn request(&self, session: Option<&str>) -> Result<http::Request<()>, TransportError> {
        let mut request = http::Request::post(format!("https://{}{PATH}", self.authority))
            .header("content-type", "application/octet-stream");
        if let Some(id) = session {
            request = request.header(SESSION_HEADER, id);
        }
        request
            .body(())
            .map_err(|e| TransportError::setup("an HTTP/2 request", e))
    }
}

use lanes::Drain;

/// An admitted HTTP/2 connection: the first stream the session's, every further one a lane.
pub struct H2Connection {
    shared: Arc<ClientShared>,
    first: Mutex<Option<StreamPair>>,
    drain: Arc<Drain>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    streams: u32,
    peer: SocketAddr,
    socket: OwnedFd,
}

impl std::fmt::Debug for H2Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl H2Connection {
    fn take_first(&self) -> Option<StreamPair> {
        self.first.lock().ok().and_then(|mut f| f.take())
    }

    /// The address of the TCP peer (the server, or the proxy that carries the tunnel).
    pub fn remote_address(&self) -> SocketAddr {
        self.peer
    }
}

impl Connection for H2Connection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            if let Some(first) = self.take_first() {
                return Ok(first);
            }
            let session = self.shared.session.lock().ok().and_then(|s| s.clone());
            self.shared.open_lane(session.as_deref(), &self.drain).await
        })
    }

    /// A client's lanes are all its own: accepting one opens it.
    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.open_stream()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_max_streams(self.streams)
            .with_encrypted(true)
    }

    /// From `TCP_INFO` of the connection (to the proxy, through one).
    fn path_stats(&self) -> Option<PathStats> {
        crate::mptcp::path_stats(self.socket.as_fd(), false)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            drop(self.take_first());
            let started = Instant::now();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.drain.wait()).await;
            let left = DRAIN_TIMEOUT.saturating_sub(started.elapsed());
            // No more requests: HTTP/2 ends the connection once its streams are done.
            drop(
                self.shared
                    .send_request
                    .lock()
                    .ok()
                    .and_then(|mut s| s.take()),
            );
            let driver = self.driver.lock().ok().and_then(|mut d| d.take());
            if let Some(mut driver) = driver {
                if tokio::time::timeout(left, &mut driver).await.is_err() {
                    driver.abort();
                }
            }
            Ok(())
        })
    }
}
