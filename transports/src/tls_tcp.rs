//! Issue 17, mptcp: `tls` and `mptcp` — TLS 1.3 over one TCP connection to `arsync serve`,
//! the TCP connection Multipath TCP for `mptcp` (falling back to TCP when the kernel or the
//! peer refuses).
//!
//! One stream per connection (`max_streams` 1): the session's control and data share the TLS
//! stream. The engine runs well on one stream (as over `ssh`); the point of `mptcp` is one
//! connection spread by the kernel over several paths, which lanes of their own would not add
//! to, and joining several TCP connections into one session would need a session identifier in
//! the admission exchange that QUIC does not need.
//!
//! Client side: [`TlsTcpTransport`] connects (an MPTCP socket where asked and given, see
//! [`crate::mptcp`]), checks the server's certificate exactly as QUIC does (pins, the
//! known-servers file, a CA: `crate::pinning`) and presents the same admission request
//! (`crate::admission`). Server side: [`TlsTcpServer`] listens (MPTCP where the kernel allows,
//! which also accepts plain TCP clients) and yields [`TcpAdmission`]s, which the daemon decides
//! on through [`PendingAdmission`] like QUIC's.
//!
//! Closing: a send half dropped or shut down sends TLS `close_notify` and the TCP FIN; a
//! receive half dropped reads on (bounded) to the peer's end so that closing the socket never
//! resets data the peer has not read; [`Connection::close`] waits (bounded) for both.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arsync_auth::tls::Identity;
use arsync_core::proto::admit::{AdmitReply, AdmitRequest};
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, PathStats, StreamPair,
    TransportError, TransportFactory,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use arsync_core::negotiate::names;

use crate::admission::{self, PendingAdmission};
use crate::mptcp::{self, MptcpState};
use crate::pinning::Pinning;
use crate::quic::{QuicTrust, HANDSHAKE_TIMEOUT};

/// How long a closing side waits for its last bytes to go and the peer's end to come.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The listening socket's backlog.
const BACKLOG: i32 = 1024;

/// The `tls` or `mptcp` transport (client side).
#[derive(Debug, Clone)]
pub struct TlsTcpTransport {
    trust: QuicTrust,
    client_identity: Option<Identity>,
    mptcp: bool,
    handshake_timeout: Duration,
}

impl TlsTcpTransport {
    /// A client trusting servers as `trust` says, presenting `client_identity` (mutual TLS)
    /// if given, over MPTCP if `mptcp` (else plain TCP).
    pub fn new(trust: QuicTrust, client_identity: Option<Identity>, mptcp: bool) -> Self {
        TlsTcpTransport {
            trust,
            client_identity,
            mptcp,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Bound the TCP connect, the TLS handshake and the admission each by `t`.
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Connect to `addr` (the server name `name` for certificates and pins) and present
    /// `request`; the admitted connection.
    pub async fn connect_to(
        &self,
        addr: SocketAddr,
        name: &str,
        request: &AdmitRequest,
    ) -> Result<TlsTcpConnection, TransportError> {
        let server = addr.to_string();
        let t = self.handshake_timeout;
        let (sock, mptcp_refused) = mptcp::tcp_socket(addr, self.mptcp)?;
        sock.set_nonblocking(true)?;
        let sock = tokio::net::TcpSocket::from_std_stream(sock.into());
        let tcp = match tokio::time::timeout(t, sock.connect(addr)).await {
            Err(_) => {
                return Err(TransportError::Connect {
                    endpoint: server,
                    reason: format!(
                        "no TCP connection within {t:?} (is TCP port {} blocked?)",
                        addr.port()
                    ),
                })
            }
            Ok(r) => {
                r.map_err(|e| TransportError::unreachable(&server, "connecting over TCP", e))?
            }
        };
        tcp.set_nodelay(true)?;
        let state = mptcp::state_of(&tcp);
        let fd = dup(&tcp)?;
        let pin_key = format!("{name}:{}", addr.port());
        let pinning = Pinning::start(&self.trust, &pin_key)?;
        let config = pinning.client_config(self.client_identity.as_ref())?;
        // Issue 17, h2: the server name as `h2` takes it too.
        let sni = crate::pinning::server_name(name)?;
        let tls =
            match tokio::time::timeout(t, TlsConnector::from(Arc::new(config)).connect(sni, tcp))
                .await
            {
                Err(_) => {
                    return Err(TransportError::Connect {
                        endpoint: server,
                        reason: format!("no TLS handshake within {t:?}"),
                    })
                }
                Ok(Err(e)) => return Err(pinning.handshake_error("TLS handshake", e)),
                Ok(Ok(s)) => s,
            };
        pinning.pin_on_first_use()?;
        let (mut recv, mut send) = tokio::io::split(TlsStream::Client(tls));
        admission::present(&mut send, &mut recv, request, t, &server).await?;
        Ok(TlsTcpConnection::new(recv, send, fd, state, mptcp_refused))
    }
}

impl TransportFactory for TlsTcpTransport {
    fn name(&self) -> &str {
        if self.mptcp {
            names::MPTCP
        } else {
            names::TLS
        }
    }

    /// Encrypted (TLS 1.3), one stream.
    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream().with_encrypted(true)
    }

    /// As QUIC's: `endpoint.host`/`port` the server (its TCP port, by default the number of
    /// its UDP one); `path` the `module/path`; `remote_command` the words after `--server`;
    /// `auth.token` the bearer token.
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

/// A second descriptor of the socket, to ask the kernel about it while the streams own it.
fn dup(tcp: &TcpStream) -> io::Result<OwnedFd> {
    socket2::SockRef::from(tcp).try_clone().map(OwnedFd::from)
}

type Recv = tokio::io::ReadHalf<TlsStream<TcpStream>>;
type Send = tokio::io::WriteHalf<TlsStream<TcpStream>>;

/// The halves not yet finished with: [`Connection::close`] waits for them (issue 17, h2:
/// `crate::http2`'s too).
#[derive(Debug, Default)]
pub(crate) struct Drain {
    outstanding: AtomicUsize,
    drained: Notify,
}

impl Drain {
    pub(crate) fn start(self: &Arc<Self>) -> Arc<Self> {
        self.outstanding.fetch_add(1, SeqCst);
        self.clone()
    }

    pub(crate) fn done(&self) {
        if self.outstanding.fetch_sub(1, SeqCst) == 1 {
            self.drained.notify_waiters();
        }
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.drained.notified();
            if self.outstanding.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// How often, at most, the halves ask the kernel how many subflows the connection has.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// The socket as the kernel sees it, and the most MPTCP subflows seen at once while the
/// session's bytes moved (the path manager adds them after the handshake, and they close
/// before the connection does, so the count at the end says little).
#[derive(Debug)]
struct Probe {
    socket: OwnedFd,
    mptcp: bool,
    peak: std::sync::atomic::AtomicU32,
    epoch: std::time::Instant,
    next_ms: std::sync::atomic::AtomicU64,
}

impl Probe {
    fn new(socket: OwnedFd, state: &MptcpState) -> Self {
        let peak = match state {
            MptcpState::Mptcp(i) => i.subflows(),
            _ => 0,
        };
        Probe {
            socket,
            mptcp: state.is_mptcp(),
            peak: peak.into(),
            epoch: std::time::Instant::now(),
            next_ms: 0.into(),
        }
    }

    /// Count the subflows if [`SAMPLE_EVERY`] has passed since the last count (otherwise
    /// one atomic load).
    fn sample_if_due(&self) {
        if !self.mptcp {
            return;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.next_ms.load(SeqCst) {
            return;
        }
        self.next_ms
            .store(now + SAMPLE_EVERY.as_millis() as u64, SeqCst);
        if let MptcpState::Mptcp(i) = mptcp::state_of(&self.socket) {
            self.peak.fetch_max(i.subflows(), SeqCst);
        }
    }
}

/// The send half: dropped, it still sends what it holds, then `close_notify` and the FIN.
struct SendHalf {
    inner: Option<Send>,
    drain: Arc<Drain>,
    probe: Arc<Probe>,
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        finish_in_background(self.inner.take(), self.drain.clone(), |mut s| async move {
            let _ = s.shutdown().await;
        });
    }
}

/// Run `finish` on `half` (bounded by [`DRAIN_TIMEOUT`]) in the background, then drop it and
/// count it done; at once where there is no runtime to run it on.
fn finish_in_background<T, F>(half: Option<T>, drain: Arc<Drain>, finish: impl FnOnce(T) -> F)
where
    T: std::marker::Send + 'static,
    F: std::future::Future<Output = ()> + std::marker::Send + 'static,
{
    match (half, tokio::runtime::Handle::try_current()) {
        (Some(half), Ok(h)) => {
            let finishing = finish(half);
            h.spawn(async move {
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, finishing).await;
                drain.done();
            });
        }
        _ => drain.done(),
    }
}

impl SendHalf {
    fn stream(&mut self) -> io::Result<Pin<&mut Send>> {
        self.inner
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.probe.sample_if_due();
        match self.stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// The receive half: dropped, it reads on to the peer's end (bounded), so that closing the
/// socket does not reset what the peer still sends or has not read.
struct RecvHalf {
    inner: Option<Recv>,
    drain: Arc<Drain>,
    probe: Arc<Probe>,
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        finish_in_background(self.inner.take(), self.drain.clone(), |mut r| async move {
            let mut sink = vec![0u8; 16 << 10];
            while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.probe.sample_if_due();
        match self.inner.as_mut() {
            Some(r) => Pin::new(r).poll_read(cx, buf),
            None => Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe))),
        }
    }
}

/// What to tell about the connection as it closes: its MPTCP state when it was made, and the
/// most subflows seen at once while the session's bytes moved.
type CloseReport = Box<dyn FnOnce(&MptcpState, u32) + std::marker::Send>;

/// An admitted TLS-over-TCP connection: its one stream carries the session.
pub struct TlsTcpConnection {
    pair: Mutex<Option<StreamPair>>,
    probe: Arc<Probe>,
    state: MptcpState,
    mptcp_refused: Option<String>,
    drain: Arc<Drain>,
    on_close: Mutex<Option<CloseReport>>,
}

impl std::fmt::Debug for TlsTcpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTcpConnection")
            .field("state", &self.state)
            .field("mptcp_refused", &self.mptcp_refused)
            .finish_non_exhaustive()
    }
}

impl TlsTcpConnection {
    fn new(
        recv: Recv,
        send: Send,
        socket: OwnedFd,
        state: MptcpState,
        mptcp_refused: Option<String>,
    ) -> Self {
        let drain = Arc::new(Drain::default());
        let probe = Arc::new(Probe::new(socket, &state));
        let pair = StreamPair {
            send: Box::new(SendHalf {
                inner: Some(send),
                drain: drain.start(),
                probe: probe.clone(),
            }),
            recv: Box::new(RecvHalf {
                inner: Some(recv),
                drain: drain.start(),
                probe: probe.clone(),
            }),
        };
        TlsTcpConnection {
            pair: Mutex::new(Some(pair)),
            probe,
            state,
            mptcp_refused,
            drain,
            on_close: Mutex::new(None),
        }
    }

    /// Call `report` when the connection closes with its MPTCP state when made and the most
    /// subflows seen at once while the session's bytes moved (the client's `--explain` line).
    pub fn on_close(
        self,
        report: impl FnOnce(&MptcpState, u32) + std::marker::Send + 'static,
    ) -> Self {
        if let Ok(mut slot) = self.on_close.lock() {
            *slot = Some(Box::new(report));
        }
        self
    }

    /// Whether the connection was MPTCP when it was made.
    pub fn mptcp_state(&self) -> &MptcpState {
        &self.state
    }

    /// Whether it is MPTCP now, with its subflows as they are now (the path manager adds
    /// subflows after the handshake).
    pub fn mptcp_now(&self) -> MptcpState {
        mptcp::state_of(&self.probe.socket)
    }

    /// Why the kernel gave a plain TCP socket where MPTCP was asked for, if it did.
    pub fn mptcp_refused(&self) -> Option<&str> {
        self.mptcp_refused.as_deref()
    }

    /// The `--explain` line: how the connection is carried, and why not MPTCP if asked.
    pub fn describe(&self) -> String {
        match (&self.mptcp_refused, &self.state) {
            (Some(why), _) => format!("TLS over plain TCP: {why}"),
            (None, s) => format!("TLS over {s}"),
        }
    }

    fn take(&self) -> Option<StreamPair> {
        self.pair.lock().ok().and_then(|mut p| p.take())
    }
}

impl Connection for TlsTcpConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            self.take().ok_or(TransportError::Unsupported {
                transport: "a TLS-over-TCP connection".into(),
                what: "a second stream",
            })
        })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.open_stream()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream().with_encrypted(true)
    }

    /// RTT and congestion window from `TCP_INFO` (with MPTCP, the kernel's answer for the
    /// connection); bytes from `MPTCP_INFO` over MPTCP (all subflows), else `TCP_INFO`.
    fn path_stats(&self) -> Option<PathStats> {
        mptcp::path_stats(self.probe.socket.as_fd(), self.state.is_mptcp())
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if let Some(report) = self.on_close.lock().ok().and_then(|mut r| r.take()) {
                self.probe.sample_if_due();
                report(&self.state, self.probe.peak.load(SeqCst));
            }
            drop(self.take());
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.drain.wait()).await;
            Ok(())
        })
    }
}

/// A listening TCP socket (MPTCP where the kernel allows) answering TLS.
#[derive(Debug)]
pub struct TlsTcpServer {
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    mptcp_refused: Option<String>,
    handshake_timeout: Duration,
    // Issue 17, h2: the sessions admitted over HTTP/2, where their further lanes go.
    #[cfg(feature = "h2")]
    h2_sessions: Arc<crate::http2::server::Sessions>,
}

impl TlsTcpServer {
    /// Listen on `addr` with `rustls_config` (from `arsync_auth::tls::server_config`, the
    /// same as QUIC's), on an MPTCP socket unless the kernel refuses one.
    pub fn bind(
        addr: SocketAddr,
        rustls_config: rustls::ServerConfig,
    ) -> Result<TlsTcpServer, TransportError> {
        let (sock, mptcp_refused) = mptcp::tcp_socket(addr, true)?;
        sock.set_reuse_address(true)?;
        if addr.is_ipv6() {
            // `[::]` takes IPv4 clients too, as the UDP socket does.
            let _ = sock.set_only_v6(false);
        }
        sock.bind(&addr.into())?;
        sock.listen(BACKLOG)?;
        sock.set_nonblocking(true)?;
        let listener = TcpListener::from_std(sock.into())?;
        // Issue 17, h2: HTTP/2 clients (`--transport=h2`, or a reverse proxy's `grpc_pass`)
        // on the same port, told apart by ALPN.
        #[cfg(feature = "h2")]
        let rustls_config = {
            let mut c = rustls_config;
            c.alpn_protocols.push(crate::http2::ALPN.to_vec());
            c
        };
        Ok(TlsTcpServer {
            listener,
            tls_config: Arc::new(rustls_config),
            mptcp_refused,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            #[cfg(feature = "h2")]
            h2_sessions: Arc::default(),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `MPTCP` or `TCP (why not MPTCP)`, for the daemon's log.
    pub fn describe(&self) -> String {
        match &self.mptcp_refused {
            None => "TCP, MPTCP".into(),
            Some(why) => format!("TCP; not MPTCP: {why}"),
        }
    }

    /// The next TCP connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.listener.accept().await
    }

    /// The TLS handshake on `tcp` and its admission request (bounded in size and time).
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<TcpAdmission, TransportError> {
        let (tls, state, socket) = self.tls_handshake(tcp, peer).await?;
        self.admission(tls, peer, state, socket).await
    }

    /// The TLS handshake on `tcp` (bounded in time); the stream, its MPTCP state, and a
    /// second descriptor of its socket.
    async fn tls_handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(ServerTls, MptcpState, OwnedFd), TransportError> {
        let t = self.handshake_timeout;
        tcp.set_nodelay(true)?;
        let state = mptcp::state_of(&tcp);
        let socket = dup(&tcp)?;
        let tls =
            match tokio::time::timeout(t, TlsAcceptor::from(self.tls_config.clone()).accept(tcp))
                .await
            {
                Err(_) => {
                    return Err(TransportError::Connect {
                        endpoint: peer.to_string(),
                        reason: "TLS handshake timed out".into(),
                    })
                }
                Ok(r) => r.map_err(|e| {
                    TransportError::unreachable(peer.to_string(), "TLS handshake", e)
                })?,
            };
        Ok((tls, state, socket))
    }

    /// The admission request on the raw TLS stream `tls` (bounded in size and time).
    async fn admission(
        &self,
        mut tls: ServerTls,
        peer: SocketAddr,
        state: MptcpState,
        socket: OwnedFd,
    ) -> Result<TcpAdmission, TransportError> {
        let t = self.handshake_timeout;
        let fail = |reason: &str| TransportError::Connect {
            endpoint: peer.to_string(),
            reason: reason.into(),
        };
        let request =
            match tokio::time::timeout(t, admission::read_message(&mut tls, AdmitRequest::decode))
                .await
            {
                Err(_) => return Err(fail("admission request too slow")),
                Ok(r) => r?,
            };
        let client_certified = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        Ok(TcpAdmission {
            request,
            client_certified,
            peer,
            state,
            socket,
            tls: TlsStream::Server(tls),
        })
    }

    /// Issue 17, h2: the TLS handshake on `tcp` and then, by its ALPN, the admission request
    /// of `tls`/`mptcp` or HTTP/2's (`crate::http2::server`); `None` for an HTTP/2
    /// connection that brought lanes of sessions already admitted and has ended.
    pub async fn handshake_any(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<Option<Box<dyn PendingAdmission>>, TransportError> {
        let (tls, state, socket) = self.tls_handshake(tcp, peer).await?;
        #[cfg(feature = "h2")]
        if tls.get_ref().1.alpn_protocol() == Some(crate::http2::ALPN) {
            use crate::http2::server::{self, Served};
            let served = server::serve(
                tls,
                peer,
                &state,
                socket,
                self.h2_sessions.clone(),
                self.handshake_timeout,
            )
            .await?;
            return Ok(match served {
                Served::Admission(a) => Some(a),
                Served::Lanes => None,
            });
        }
        let admission = self.admission(tls, peer, state, socket).await?;
        Ok(Some(Box::new(admission)))
    }
}

/// A TLS stream as the server holds it.
type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// A handshaken TLS-over-TCP connection whose request waits for an answer.
#[derive(Debug)]
pub struct TcpAdmission {
    /// What the client asked for.
    pub request: AdmitRequest,
    /// Whether the client presented a certificate the TLS layer verified (mutual TLS).
    pub client_certified: bool,
    peer: SocketAddr,
    state: MptcpState,
    socket: OwnedFd,
    tls: TlsStream<TcpStream>,
}

impl TcpAdmission {
    /// Whether the client came over MPTCP.
    pub fn mptcp_state(&self) -> &MptcpState {
        &self.state
    }

    /// Admit: the session runs on the returned connection.
    pub async fn admit(mut self) -> Result<TlsTcpConnection, TransportError> {
        admission::answer(&mut self.tls, &AdmitReply::Admitted).await?;
        let (recv, send) = tokio::io::split(self.tls);
        Ok(TlsTcpConnection::new(
            recv,
            send,
            self.socket,
            self.state,
            None,
        ))
    }

    /// Refuse with an rsync exit code and a message for the client's user.
    pub async fn refuse(mut self, code: u8, message: &str) {
        let refused = AdmitReply::Refused {
            code,
            message: message.to_owned(),
        };
        // Tell it, let the client read it and close; then close regardless (a client that
        // reads nothing cannot hold the daemon's task).
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = admission::answer(&mut self.tls, &refused).await;
            let _ = self.tls.shutdown().await;
            let mut sink = [0u8; 1024];
            while matches!(self.tls.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

crate::admission::pending_admission!(
    TcpAdmission,
    |a| address: a.peer,
    carrier: format!("TLS over {}", a.state)
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use arsync_auth::tls::{self, ClientAuth};

    /// A connected, admitted pair on loopback.
    async fn pair(mptcp: bool) -> (TlsTcpConnection, TlsTcpConnection) {
        let id = Identity::generate(&["localhost".into()]).unwrap();
        let config = tls::server_config(&id, &ClientAuth::None).unwrap();
        let server = TlsTcpServer::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let addr = server.local_addr().unwrap();
        let client = TlsTcpTransport::new(QuicTrust::Pinned(id.fingerprint()), None, mptcp);
        let request = AdmitRequest::default();
        let admit = async {
            let (tcp, peer) = server.accept().await.unwrap();
            server
                .handshake(tcp, peer)
                .await
                .unwrap()
                .admit()
                .await
                .unwrap()
        };
        let (c, s) = tokio::join!(client.connect_to(addr, "localhost", &request), admit);
        (c.unwrap(), s)
    }

    /// The path statistics count the session's bytes (over MPTCP from `MPTCP_INFO`, else
    /// `TCP_INFO`) and give an RTT.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn path_statistics_count_the_bytes() {
        for mptcp in [false, true] {
            let (client, server) = pair(mptcp).await;
            assert_eq!(client.mptcp_state().is_mptcp(), mptcp);
            let (mut c, mut s) = (
                client.open_stream().await.unwrap(),
                server.accept_stream().await.unwrap(),
            );
            let data = vec![7u8; 1 << 20];
            let (w, r) = tokio::join!(c.send.write_all(&data), async {
                let mut got = vec![0u8; data.len()];
                s.recv.read_exact(&mut got).await.map(|_| got)
            });
            w.unwrap();
            assert_eq!(r.unwrap(), data);
            // The last ACKs may still be on their way to the sender's kernel: a bounded wait.
            let mut stats = client.path_stats().unwrap();
            for _ in 0..100 {
                if stats.bytes_sent.unwrap_or(0) >= 1 << 20 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                stats = client.path_stats().unwrap();
            }
            assert!(
                stats.bytes_sent.unwrap() >= 1 << 20,
                "mptcp {mptcp}: {stats:?}"
            );
            assert!(stats.rtt.is_some(), "mptcp {mptcp}: {stats:?}");
            let stats = server.path_stats().unwrap();
            assert!(
                stats.bytes_received.unwrap() >= 1 << 20,
                "mptcp {mptcp}: {stats:?}"
            );
        }
    }
}
