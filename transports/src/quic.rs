//! `quic`: one QUIC connection (quinn over rustls, TLS 1.3) whose streams are the session's
//! control stream and its data lanes — a stream per lane, no head-of-line blocking between
//! them, one congestion controller for the connection.
//!
//! Client side: [`QuicTransport`] connects to a listening arsync (`arsync serve`, or a server
//! started by `--bootstrap=quic` over SSH), checks the server's certificate the way
//! [`QuicTrust`] says (a pinned fingerprint, the known-servers file, or a CA), then opens the
//! first stream and sends the [`AdmitRequest`] (token, `module/path`, server arguments); the
//! session starts on that stream once the server says [`AdmitReply::Admitted`].
//!
//! Server side: [`QuicServer`] binds a UDP socket and yields [`Admission`]s — a handshaken
//! connection with its decoded request — which the caller (the daemon or the bootstrap server)
//! admits or refuses. Checking tokens, modules and paths is the caller's business.
//!
//! Tuning ([`QuicTuning`]): quinn's default windows cap a stream near 1.25 MB per round trip,
//! far too little for a fat link, so the stream and connection windows, the send window and
//! the UDP socket buffers are sized for a bandwidth-delay product of `window` bytes; the
//! congestion controller is Cubic (quinn's default) or BBR. UDP GSO/GRO are used by quinn-udp
//! wherever the kernel offers them.
//!
//! Closing: QUIC's close discards data not yet delivered, so every send stream this module
//! hands out is finished when dropped and [`Connection::close`] first waits (bounded) until
//! the peer has read or acknowledged everything written.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arsync_auth::tls::{Fingerprint, Identity};
use arsync_core::proto::admit::{AdmitReply, AdmitRequest};
use arsync_core::proto::merkle::MAX_LANES;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, PathStats, StreamPair,
    TransportError, TransportFactory,
};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The UDP port `arsync serve` listens on when none is given.
pub const DEFAULT_PORT: u16 = 8730;
/// How many streams (control + lanes) a client uses when nothing says otherwise.
pub const DEFAULT_STREAMS: u32 = 4;
/// The bandwidth-delay product the windows are sized for by default: 1 Gbit/s × 100 ms.
pub const DEFAULT_WINDOW: u64 = 16 << 20;
/// How long a handshake may take by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing side waits for its last bytes to be taken.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a silent connection lives (keep-alives are sent well within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long closing waits for the endpoint to send the close (not to drain).
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_millis(50);

/// Issue 17, h3: the unidirectional streams HTTP/3 needs from each side (its control stream
/// and QPACK's encoder and decoder streams).
pub(crate) const H3_UNI_STREAMS: u32 = 3;
/// Issue 17, h3: the ALPN protocol of HTTP/3.
pub const H3_ALPN: &[u8] = b"h3";

/// The congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default.
    Cubic,
    /// BBR: paces at the measured bottleneck rate; better on lossy long links.
    Bbr,
    /// NewReno.
    NewReno,
}

impl Congestion {
    /// The controller matching the host's TCP one (`net.ipv4.tcp_congestion_control`), so a
    /// QUIC transfer copes with loss as the host's TCP connections do: a host tuned to BBR
    /// gets BBR (CUBIC over a 1 %-loss, 50 ms path moves a few Mbit/s where BBR fills it);
    /// CUBIC for anything else, or when the setting cannot be read.
    pub fn like_tcp(tcp_name: Option<&str>) -> Congestion {
        match tcp_name.map(str::trim) {
            Some("bbr") | Some("bbr2") | Some("bbr3") => Congestion::Bbr,
            Some("reno") => Congestion::NewReno,
            _ => Congestion::Cubic,
        }
    }
}

impl Default for Congestion {
    /// [`Congestion::like_tcp`] of this host's setting.
    fn default() -> Self {
        let tcp = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").ok();
        Congestion::like_tcp(tcp.as_deref())
    }
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(Congestion::Cubic),
            "bbr" => Ok(Congestion::Bbr),
            "newreno" => Ok(Congestion::NewReno),
            _ => Err(format!(
                "unknown congestion controller {s:?} (cubic, bbr, newreno)"
            )),
        }
    }
}

/// How a QUIC connection is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicTuning {
    /// Streams a client uses (control + lanes); a server accepts up to the engine's limit.
    pub streams: u32,
    /// The bandwidth-delay product to cover, in bytes: each stream's receive window; the
    /// connection's windows are a multiple of it.
    pub window: u64,
    /// The congestion controller.
    pub congestion: Congestion,
    /// How long the handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for QuicTuning {
    fn default() -> Self {
        QuicTuning {
            streams: DEFAULT_STREAMS,
            window: DEFAULT_WINDOW,
            congestion: Congestion::default(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

impl QuicTuning {
    /// Issue 17, h3: the configuration allowing the peer `uni` unidirectional streams (HTTP/3
    /// needs 3: its control stream and QPACK's two; raw arsync uses none).
    pub(crate) fn transport_config_uni(&self, uni: u32) -> quinn::TransportConfig {
        let stream = self.window.clamp(1 << 20, 1 << 30);
        let conn = stream.saturating_mul(4).min((1 << 62) - 1);
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(quinn::VarInt::from_u64(stream).unwrap_or(quinn::VarInt::MAX))
            .receive_window(quinn::VarInt::from_u64(conn).unwrap_or(quinn::VarInt::MAX))
            .send_window(conn)
            // Issue 17, h3: one more for HTTP/3's admission (and close) request.
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(u32::from(MAX_LANES) + 3))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(uni))
            .keep_alive_interval(Some(Duration::from_secs(5)))
            .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
        match self.congestion {
            Congestion::Cubic => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
            }
            Congestion::Bbr => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
            }
            Congestion::NewReno => t.congestion_controller_factory(Arc::new(
                quinn::congestion::NewRenoConfig::default(),
            )),
        };
        t
    }

    /// A UDP socket bound to `addr` with buffers for the window (as root the system's
    /// limit is lifted; otherwise the kernel caps what it grants).
    fn socket(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        let sock = UdpSocket::bind(addr)?;
        let want = self.window.clamp(1 << 20, 64 << 20) as libc::c_int;
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            use std::os::fd::AsRawFd;
            let fd = sock.as_raw_fd();
            let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let v = &want as *const libc::c_int as *const libc::c_void;
            // SAFETY: setsockopt on a socket we own with a pointer to a live c_int and its size.
            let r = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, force, v, len) };
            if r != 0 {
                // SAFETY: as above.
                unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, plain, v, len) };
            }
        }
        Ok(sock)
    }
}

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum QuicTrust {
    /// Exactly this certificate (the bootstrap printed its fingerprint over SSH).
    Pinned(Fingerprint),
    /// The known-servers file: the first certificate seen for `host:port` is pinned there,
    /// a different one later is refused.
    KnownServers(std::path::PathBuf),
    /// Certificates issued by these CAs for the host name.
    Ca(Vec<CertificateDer<'static>>),
}

/// The `quic` transport (client side).
#[derive(Debug, Clone)]
pub struct QuicTransport {
    trust: QuicTrust,
    client_identity: Option<Identity>,
    tuning: QuicTuning,
}

impl QuicTransport {
    /// A client trusting servers as `trust` says, presenting `client_identity` (mutual TLS)
    /// if given.
    pub fn new(trust: QuicTrust, client_identity: Option<Identity>, tuning: QuicTuning) -> Self {
        QuicTransport {
            trust,
            client_identity,
            tuning,
        }
    }

    /// Connect to `addr` (the server name `name` for certificates and pins) and present
    /// `request`; the admitted connection, whose first stream carries the session.
    pub async fn connect_to(
        &self,
        addr: SocketAddr,
        name: &str,
        request: &AdmitRequest,
    ) -> Result<QuicConnection, TransportError> {
        let (conn, endpoint, server) = self.handshake_to(addr, name, None).await?;
        let shared = Arc::new(Shared::new(conn, endpoint, self.tuning.streams.max(1)));
        let (send, mut recv) = shared.conn.open_bi().await.map_err(closed)?;
        let mut send = TrackedSend::new(send, shared.clone());
        let presented = crate::admission::present(
            &mut send,
            &mut recv,
            request,
            self.tuning.handshake_timeout,
            &server,
        )
        .await;
        if let Err(TransportError::Refused { .. }) = &presented {
            shared.conn.close(quinn::VarInt::from_u32(0), b"refused");
        }
        presented?;
        Ok(QuicConnection {
            first: Mutex::new(Some(StreamPair {
                send: Box::new(send),
                recv: Box::new(recv),
            })),
            shared,
            server_side: false,
        })
    }

    /// Issue 17, h3: the handshake to `addr` (the server name `name` for certificates and
    /// pins) offering `alpn` instead of arsync's own when given; the connection, its endpoint
    /// and the server's `host:port` for messages.
    pub(crate) async fn handshake_to(
        &self,
        addr: SocketAddr,
        name: &str,
        alpn: Option<&[u8]>,
    ) -> Result<(quinn::Connection, quinn::Endpoint, String), TransportError> {
        let server = match addr {
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            SocketAddr::V4(a) => a.to_string(),
        };
        let pin_key = format!("{name}:{}", addr.port());
        // Issue 17, mptcp: the trust steps shared with TLS over TCP (`crate::tls_tcp`).
        let pinning = crate::pinning::Pinning::start(&self.trust, &pin_key)?;
        let mut rustls_config = pinning.client_config(self.client_identity.as_ref())?;
        let uni = match alpn {
            Some(a) => {
                rustls_config.alpn_protocols = vec![a.to_vec()];
                H3_UNI_STREAMS
            }
            None => 0,
        };
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls_config)
            .map_err(|e| TransportError::setup("the QUIC client's TLS configuration", e))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(self.tuning.transport_config_uni(uni)));
        let bind: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            self.tuning.socket(bind)?,
            Arc::new(quinn::TokioRuntime),
        )?;
        let connect_err = |reason: String| TransportError::Connect {
            endpoint: server.clone(),
            reason,
        };
        let unreachable =
            |step: &str, e: quinn::ConnectError| TransportError::unreachable(&server, step, e);
        // Certificates name hosts, not addresses; a pinned certificate ignores names anyway.
        let sni = if name.parse::<std::net::IpAddr>().is_ok() || name.is_empty() {
            "arsync"
        } else {
            name
        };
        let connecting = endpoint
            .connect_with(config, addr, sni)
            .map_err(|e| unreachable("starting the QUIC handshake", e))?;
        let conn = match tokio::time::timeout(self.tuning.handshake_timeout, connecting).await {
            Err(_) => {
                return Err(connect_err(format!(
                    "no QUIC handshake within {:?} (is UDP port {} blocked?)",
                    self.tuning.handshake_timeout,
                    addr.port()
                )))
            }
            Ok(Err(e)) => return Err(pinning.handshake_error("QUIC handshake", e)),
            Ok(Ok(c)) => c,
        };
        pinning.pin_on_first_use()?;
        Ok((conn, endpoint, server))
    }
}

/// A lost connection: [`TransportError::Closed`] when either side closed it in order, else an
/// I/O error of the matching kind holding quinn's error.
pub(crate) fn closed(e: quinn::ConnectionError) -> TransportError {
    use quinn::ConnectionError as C;
    let kind = match &e {
        C::ApplicationClosed(_) | C::LocallyClosed => return TransportError::Closed,
        C::TimedOut => io::ErrorKind::TimedOut,
        C::Reset => io::ErrorKind::ConnectionReset,
        C::ConnectionClosed(_) => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::Other,
    };
    TransportError::Io(io::Error::new(kind, e))
}

impl TransportFactory for QuicTransport {
    fn name(&self) -> &str {
        "quic"
    }

    /// Encrypted (TLS 1.3); `tuning.streams` streams sharing one congestion controller;
    /// datagrams, which this side's configuration enables (a connection says whether the
    /// peer's did too).
    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_max_streams(self.tuning.streams.max(1))
            .with_encrypted(true)
            .with_datagrams(true)
    }

    /// `endpoint.host`/`port` is the server; `path` the `module/path`; `remote_command` the
    /// words after `--server`; `auth.token` the bearer token.
    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let (addr, request) = crate::admission::target_of(endpoint, auth).await?;
            let conn = self.connect_to(addr, &endpoint.host, &request).await?;
            Ok(Box::new(conn) as Box<dyn Connection>)
        })
    }
}

/// The first address of `host:port`.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, TransportError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            TransportError::unreachable(format!("{host}:{port}"), "resolving the name", e)
        })?
        .collect();
    // IPv4 first: a name with both (localhost) is more often served on IPv4.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| TransportError::Connect {
            endpoint: format!("{host}:{port}"),
            reason: "no address".into(),
        })
}

/// What both halves of a connection share: the connection, its endpoint (kept alive with
/// it), and the count of send streams not yet drained.
#[derive(Debug)]
struct Shared {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    streams: u32,
    outstanding: AtomicUsize,
    drained: Notify,
}

impl Shared {
    fn new(conn: quinn::Connection, endpoint: quinn::Endpoint, streams: u32) -> Self {
        Shared {
            conn,
            endpoint,
            streams,
            outstanding: AtomicUsize::new(0),
            drained: Notify::new(),
        }
    }
}

/// A send stream that, when dropped, finishes itself and counts as outstanding until the
/// peer has taken everything written (or the connection ends).
struct TrackedSend {
    inner: Option<quinn::SendStream>,
    shared: Arc<Shared>,
}

impl TrackedSend {
    fn new(inner: quinn::SendStream, shared: Arc<Shared>) -> Self {
        shared.outstanding.fetch_add(1, SeqCst);
        TrackedSend {
            inner: Some(inner),
            shared,
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut quinn::SendStream>> {
        self.inner
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Drop for TrackedSend {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        let done = move || {
            if shared.outstanding.fetch_sub(1, SeqCst) == 1 {
                shared.drained.notify_waiters();
            }
        };
        let Some(mut s) = self.inner.take() else {
            done();
            return;
        };
        let _ = s.finish();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, s.stopped()).await;
                    done();
                });
            }
            Err(_) => done(),
        }
    }
}

impl AsyncWrite for TrackedSend {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(s) => AsyncWrite::poll_write(s, cx, buf).map_err(io::Error::from),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => AsyncWrite::poll_flush(s, cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => AsyncWrite::poll_shutdown(s, cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// A receive stream as the engine's reader.
struct Recv(quinn::RecvStream);

impl AsyncRead for Recv {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(&mut self.0), cx, buf)
    }
}

/// An admitted QUIC connection: the first stream the session's, every further stream a lane.
#[derive(Debug)]
pub struct QuicConnection {
    first: Mutex<Option<StreamPair>>,
    shared: Arc<Shared>,
    server_side: bool,
}

impl QuicConnection {
    fn take_first(&self) -> Option<StreamPair> {
        self.first.lock().ok().and_then(|mut f| f.take())
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.shared.conn.remote_address()
    }

    /// Wait until the connection ends (the peer closed it, or it timed out).
    pub async fn closed(&self) {
        self.shared.conn.closed().await;
    }

    /// Close at once, without waiting for anything to drain (the caller is giving up).
    pub fn abort(&self, reason: &str) {
        self.shared
            .conn
            .close(quinn::VarInt::from_u32(1), reason.as_bytes());
    }
}

impl QuicConnection {
    /// The admitted first stream if still unclaimed, else a new one from `next`.
    async fn stream<F>(
        &self,
        next: impl FnOnce(quinn::Connection) -> F,
    ) -> Result<StreamPair, TransportError>
    where
        F: std::future::Future<
            Output = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>,
        >,
    {
        if let Some(first) = self.take_first() {
            return Ok(first);
        }
        let (send, recv) = next(self.shared.conn.clone()).await.map_err(closed)?;
        Ok(StreamPair {
            send: Box::new(TrackedSend::new(send, self.shared.clone())),
            recv: Box::new(Recv(recv)),
        })
    }
}

impl Connection for QuicConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(self.stream(|c| async move { c.open_bi().await }))
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(self.stream(|c| async move { c.accept_bi().await }))
    }

    fn capabilities(&self) -> Capabilities {
        let streams = if self.server_side {
            u32::from(MAX_LANES) + 1
        } else {
            self.shared.streams
        };
        // One congestion controller for all streams: not independent. Datagrams where both
        // ends' transport parameters allowed them (quinn enables them by default).
        Capabilities::single_stream()
            .with_max_streams(streams)
            .with_encrypted(true)
            .with_datagrams(self.shared.conn.max_datagram_size().is_some())
    }

    fn path_stats(&self) -> Option<PathStats> {
        Some(path_stats_of(&self.shared.conn))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            // Anything still unclaimed goes away finished, like the rest.
            drop(self.take_first());
            let wait_drained = async {
                loop {
                    let notified = self.shared.drained.notified();
                    if self.shared.outstanding.load(SeqCst) == 0 {
                        break;
                    }
                    notified.await;
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, wait_drained).await;
            if self.server_side {
                // The client closes once it has what it needs; give it the chance.
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), self.shared.conn.closed()).await;
            }
            self.shared.conn.close(quinn::VarInt::from_u32(0), b"done");
            // Give the endpoint the moment it needs to send CONNECTION_CLOSE, not the whole
            // draining period (three probe timeouts: after a bulk transfer over 50 ms that was
            // most of a second before the command could exit). Everything the session sent was
            // acknowledged above; a lost close costs the peer only its own short wait.
            let _ = tokio::time::timeout(CLOSE_FLUSH, self.shared.endpoint.wait_idle()).await;
            Ok(())
        })
    }
}

/// A listening QUIC endpoint.
#[derive(Debug)]
pub struct QuicServer {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) tuning: QuicTuning,
}

impl QuicServer {
    /// Listen on `addr` with `rustls_config` (from `arsync_auth::tls::server_config`).
    pub fn bind(
        addr: SocketAddr,
        rustls_config: rustls::ServerConfig,
        tuning: QuicTuning,
    ) -> Result<QuicServer, TransportError> {
        Self::bind_offering(addr, rustls_config, tuning, 0)
    }

    pub(crate) fn bind_offering(
        addr: SocketAddr,
        rustls_config: rustls::ServerConfig,
        tuning: QuicTuning,
        uni: u32,
    ) -> Result<QuicServer, TransportError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(rustls_config)
            .map_err(|e| TransportError::setup("the QUIC server's TLS configuration", e))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(tuning.transport_config_uni(uni)));
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            tuning.socket(addr)?,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(QuicServer { endpoint, tuning })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The next connection attempt; `None` once the endpoint is closed.
    pub async fn incoming(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// Stop accepting and close every connection.
    pub fn close(&self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(2), b"server shutting down");
    }

    /// Complete the handshake of `incoming` and read its admission request (bounded in size
    /// and time).
    pub async fn handshake(&self, incoming: quinn::Incoming) -> Result<Admission, TransportError> {
        let conn = self.establish(incoming).await?;
        self.admission(conn).await
    }

    /// The handshake of `incoming`, bounded.
    pub(crate) async fn establish(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<quinn::Connection, TransportError> {
        let peer = incoming.remote_address().to_string();
        match tokio::time::timeout(self.tuning.handshake_timeout, incoming).await {
            Err(_) => Err(TransportError::Connect {
                endpoint: peer,
                reason: "handshake timed out".into(),
            }),
            Ok(Err(e)) => Err(TransportError::unreachable(&peer, "QUIC handshake", e)),
            Ok(Ok(c)) => Ok(c),
        }
    }

    /// Read the admission request of arsync's own protocol on `conn`'s first stream.
    pub(crate) async fn admission(
        &self,
        conn: quinn::Connection,
    ) -> Result<Admission, TransportError> {
        let peer = conn.remote_address().to_string();
        let t = self.tuning.handshake_timeout;
        let fail = |reason: String| TransportError::Connect {
            endpoint: peer.clone(),
            reason,
        };
        let (send, mut recv) = match tokio::time::timeout(t, conn.accept_bi()).await {
            Err(_) => return Err(fail("no admission request".into())),
            Ok(r) => r.map_err(closed)?,
        };
        let request = match tokio::time::timeout(
            t,
            crate::admission::read_message(&mut recv, AdmitRequest::decode),
        )
        .await
        {
            Err(_) => return Err(fail("admission request too slow".into())),
            Ok(r) => r?,
        };
        let client_certified = client_certified(&conn);
        let shared = Arc::new(Shared::new(conn, self.endpoint.clone(), 1));
        Ok(Admission {
            request,
            client_certified,
            send: TrackedSend::new(send, shared.clone()),
            recv,
            shared,
        })
    }
}

/// Issue 17, h3: what quinn measured of `conn`'s path (also for HTTP/3's connections).
pub(crate) fn path_stats_of(conn: &quinn::Connection) -> PathStats {
    let s = conn.stats();
    PathStats::default()
        .with_rtt(s.path.rtt)
        .with_cwnd(s.path.cwnd)
        .with_bytes(s.udp_tx.bytes, s.udp_rx.bytes)
        .with_lost(s.path.lost_bytes)
}

/// Whether the client of `conn` presented a certificate the TLS layer verified.
pub(crate) fn client_certified(conn: &quinn::Connection) -> bool {
    conn.peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .is_some_and(|certs| !certs.is_empty())
}

/// A handshaken connection whose request waits for an answer.
#[derive(Debug)]
pub struct Admission {
    /// What the client asked for.
    pub request: AdmitRequest,
    /// Whether the client presented a certificate the TLS layer verified (mutual TLS).
    pub client_certified: bool,
    send: TrackedSend,
    recv: quinn::RecvStream,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TrackedSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackedSend")
    }
}

impl Admission {
    /// The client's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.shared.conn.remote_address()
    }

    /// Admit: the session runs on the returned connection.
    pub async fn admit(mut self) -> Result<QuicConnection, TransportError> {
        crate::admission::answer(&mut self.send, &AdmitReply::Admitted).await?;
        Ok(QuicConnection {
            first: Mutex::new(Some(StreamPair {
                send: Box::new(self.send),
                recv: Box::new(Recv(self.recv)),
            })),
            shared: self.shared,
            server_side: true,
        })
    }

    /// Refuse with an rsync exit code and a message for the client's user.
    pub async fn refuse(mut self, code: u8, message: &str) {
        let refused = AdmitReply::Refused {
            code,
            message: message.to_owned(),
        };
        let _ = crate::admission::answer(&mut self.send, &refused).await;
        let conn = self.shared.conn.clone();
        drop(self.send);
        // Let the client read it and close; then close regardless.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        conn.close(quinn::VarInt::from_u32(0), b"refused");
    }
}

// Issue 17, mptcp: the daemon decides on QUIC admissions the way it does on TLS-over-TCP ones.
crate::admission::pending_admission!(
    Admission,
    |a| address: Admission::remote_address(a),
    carrier: "QUIC".into()
);

#[cfg(test)]
mod tests {
    use super::Congestion;

    #[test]
    fn congestion_follows_the_hosts_tcp_choice() {
        assert_eq!(Congestion::like_tcp(Some("bbr\n")), Congestion::Bbr);
        assert_eq!(Congestion::like_tcp(Some("reno")), Congestion::NewReno);
        assert_eq!(Congestion::like_tcp(Some("cubic\n")), Congestion::Cubic);
        assert_eq!(Congestion::like_tcp(Some("dctcp")), Congestion::Cubic);
        assert_eq!(Congestion::like_tcp(None), Congestion::Cubic);
    }
}
