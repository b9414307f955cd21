//! Issue 17, h2: `arsync serve`'s side of `h2` — a TLS connection whose ALPN is `h2`
//! (`crate::tls_tcp::TlsTcpServer` hands it here) served as HTTP/2: its first request
//! without a session is an admission ([`H2Admission`], decided by the daemon like any
//! other), a request naming an admitted session ([`super::SESSION_HEADER`]) is one more lane
//! of it, whichever connection brought it (a reverse proxy may use one per stream).
//!
//! Not here: TLS and the listening socket (`crate::tls_tcp`), the decision (the daemon's).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arsync_core::proto::admit::{AdmitReply, AdmitRequest};
use arsync_core::transport::{
    BoxFuture, Capabilities, Connection, PathStats, RecvStream as EngineRecv, StreamPair,
    TransportError,
};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::server::TlsStream;

use super::lanes::{self, Drain, DRAIN_TIMEOUT};
use super::{CONNECTION_WINDOW, MAX_FRAME, SEND_BUFFER, SESSION_HEADER, STREAM_WINDOW};
use crate::mptcp::MptcpState;

/// A request as HTTP/2 delivers it, with the means to answer it.
type Incoming = (Request<RecvStream>, SendResponse<Bytes>);

/// Lanes that may wait for their session to take them.
const LANE_QUEUE: usize = 80;
/// How long a closing server side gives the client to end the connection itself.
const CLIENT_CLOSE: Duration = Duration::from_secs(2);

/// The admitted sessions of one listener, by identifier: where their further lanes go.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, mpsc::Sender<Incoming>>>,
}

impl Sessions {
    /// Hand `incoming` to session `id`, or answer it 404 if there is no such session (or
    /// it has more lanes waiting than it may).
    fn route(&self, id: &str, incoming: Incoming) -> bool {
        let sender = self.by_id.lock().ok().and_then(|m| m.get(id).cloned());
        let refused = match sender {
            Some(s) => match s.try_send(incoming) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i)) => i,
            },
            None => incoming,
        };
        reject(refused.1, StatusCode::NOT_FOUND);
        false
    }

    fn add(self: &Arc<Self>, id: String) -> (SessionGuard, mpsc::Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        if let Ok(mut m) = self.by_id.lock() {
            m.insert(id.clone(), tx);
        }
        (
            SessionGuard {
                sessions: self.clone(),
                id,
            },
            rx,
        )
    }
}

/// A session's entry in [`Sessions`]: removed when dropped.
#[derive(Debug)]
struct SessionGuard {
    sessions: Arc<Sessions>,
    id: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.sessions.by_id.lock() {
            m.remove(&self.id);
        }
    }
}

/// A task aborted when its handle is dropped (the daemon dropping a session stops it).
#[derive(Debug)]
struct Task(Option<tokio::task::JoinHandle<()>>);

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

/// What an HTTP/2 connection turned out to carry.
#[derive(Debug)]
pub enum Served {
    /// A new session asking to be admitted.
    Admission(Box<H2Admission>),
    /// Lanes of sessions already admitted (handed to them); it has ended.
    Lanes,
}

/// What the connection's first request was.
enum First {
    Admission(Box<Incoming>),
    Lanes,
}

/// Serve HTTP/2 on `tls` (its ALPN `h2`) from `peer`, which came `over` MPTCP or TCP on
/// `socket` (a second descriptor, for `path_stats`): the admission its first request asks for, or — for a connection bringing lanes of
/// sessions of `sessions` — nothing once it ends. Each step with the client bounded by `t`.
pub async fn serve(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    over: &MptcpState,
    socket: OwnedFd,
    sessions: Arc<Sessions>,
    t: Duration,
) -> Result<Served, TransportError> {
    let client_certified = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    let fail = |reason: &str| TransportError::Connect {
        endpoint: peer.to_string(),
        reason: reason.into(),
    };
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(SEND_BUFFER)
        .max_concurrent_streams(u32::from(arsync_core::proto::merkle::MAX_LANES) + 1)
        .handshake::<_, Bytes>(tls);
    let mut conn = match tokio::time::timeout(t, handshake).await {
        Err(_) => return Err(fail("no HTTP/2 preface in time")),
        Ok(r) => r.map_err(|e| TransportError::unreachable(peer.to_string(), "HTTP/2", e))?,
    };
    let (first_tx, first_rx) = oneshot::channel();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let routes = sessions.clone();
    let driver = tokio::spawn(async move {
        let mut first = Some(first_tx);
        // Whether it brought no admission: then only live sessions' lanes keep it open.
        let mut lanes_only = false;
        loop {
            let next = tokio::select! {
                n = conn.accept() => n,
                _ = &mut stop_rx => None,
            };
            let Some(next) = next else {
                conn.graceful_shutdown();
                let _ = tokio::time::timeout(CLIENT_CLOSE, async {
                    while conn.accept().await.is_some() {}
                })
                .await;
                return;
            };
            let Ok(incoming) = next else { return };
            let named = incoming
                .0
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match (named, first.take()) {
                (None, Some(tx)) => {
                    let _ = tx.send(First::Admission(Box::new(incoming)));
                }
                (Some(id), first_tx) => {
                    if let Some(tx) = first_tx {
                        lanes_only = true;
                        let _ = tx.send(First::Lanes);
                    }
                    // A guessed or stale session does not hold a connection open.
                    if !routes.route(&id, incoming) && lanes_only {
                        conn.graceful_shutdown();
                        let _ = tokio::time::timeout(CLIENT_CLOSE, async {
                            while conn.accept().await.is_some() {}
                        })
                        .await;
                        return;
                    }
                }
                (None, None) => reject(incoming.1, StatusCode::BAD_REQUEST),
            }
        }
    });
    let driver = Task(Some(driver));
    let first = match tokio::time::timeout(t, first_rx).await {
        Err(_) => return Err(fail("no HTTP/2 request in time")),
        Ok(Err(_)) => return Err(TransportError::Closed),
        Ok(Ok(f)) => f,
    };
    let (request, respond) = match first {
        First::Lanes => {
            // Its lanes belong to their sessions now; it lives as long as they do.
            let mut driver = driver;
            if let Some(d) = driver.0.as_mut() {
                let _ = d.await;
            }
            return Ok(Served::Lanes);
        }
        First::Admission(incoming) => *incoming,
    };
    let drain = Arc::new(Drain::default());
    let mut recv = lanes::receiver(request.into_body(), &drain);
    let admit = crate::admission::read_message(&mut recv, AdmitRequest::decode);
    let admit_request = match tokio::time::timeout(t, admit).await {
        Err(_) => return Err(fail("admission request too slow")),
        Ok(r) => r?,
    };
    Ok(Served::Admission(Box::new(H2Admission {
        request: admit_request,
        client_certified,
        peer,
        over: over.to_string(),
        mptcp: over.is_mptcp(),
        socket,
        respond,
        recv,
        sessions,
        drain,
        driver,
        stop: stop_tx,
    })))
}

/// Answer a request that is not for us with `status` and nothing more.
fn reject(mut respond: SendResponse<Bytes>, status: StatusCode) {
    let mut r = Response::new(());
    *r.status_mut() = status;
    let _ = respond.send_response(r, true);
}

/// A session's HTTP/2 connection whose admission request waits for an answer.
pub struct H2Admission {
    /// What the client asked for.
    pub request: AdmitRequest,
    /// Whether the client presented a certificate the TLS layer verified (mutual TLS).
    pub client_certified: bool,
    peer: SocketAddr,
    over: String,
    mptcp: bool,
    socket: OwnedFd,
    respond: SendResponse<Bytes>,
    recv: EngineRecv,
    sessions: Arc<Sessions>,
    drain: Arc<Drain>,
    driver: Task,
    stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for H2Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Admission")
            .field("request", &self.request)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// 128 random bits, in hex.
fn session_id() -> Result<String, TransportError> {
    let mut b = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| TransportError::setup("a session identifier", "no random numbers"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl H2Admission {
    /// Answer 200 (naming `session` if given) and write `reply` on the response body.
    fn answer(
        &mut self,
        session: Option<&str>,
    ) -> Result<arsync_core::transport::SendStream, TransportError> {
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/octet-stream");
        if let Some(id) = session {
            response = response.header(SESSION_HEADER, id);
        }
        let response = response
            .body(())
            .map_err(|e| TransportError::setup("an HTTP/2 response", e))?;
        let send = self
            .respond
            .send_response(response, false)
            .map_err(|e| TransportError::Io(lanes::io_error(e)))?;
        Ok(lanes::sender(send, &self.drain))
    }

    /// Admit: the session runs on the returned connection.
    pub async fn admit(mut self) -> Result<H2ServerConnection, TransportError> {
        let id = session_id()?;
        let (guard, lanes_rx) = self.sessions.add(id.clone());
        let mut send = self.answer(Some(&id))?;
        crate::admission::answer(&mut send, &AdmitReply::Admitted).await?;
        Ok(H2ServerConnection {
            first: Mutex::new(Some(StreamPair {
                send,
                recv: self.recv,
            })),
            lanes: tokio::sync::Mutex::new(lanes_rx),
            drain: self.drain,
            _guard: guard,
            driver: Mutex::new(self.driver),
            stop: Mutex::new(Some(self.stop)),
            peer: self.peer,
            mptcp: self.mptcp,
            socket: self.socket,
        })
    }

    /// Refuse with an rsync exit code and a message for the client's user.
    pub async fn refuse(mut self, code: u8, message: &str) {
        let refused = AdmitReply::Refused {
            code,
            message: message.to_owned(),
        };
        if let Ok(mut send) = self.answer(None) {
            let _ = crate::admission::answer(&mut send, &refused).await;
            let _ = send.shutdown().await;
        }
        drop(self.recv);
        // Let the client read it and close; then close regardless.
        let _ = tokio::time::timeout(CLIENT_CLOSE, self.drain.wait()).await;
        let _ = self.stop.send(());
        if let Some(d) = self.driver.0.as_mut() {
            let _ = tokio::time::timeout(CLIENT_CLOSE, d).await;
        }
    }
}

crate::admission::pending_admission!(
    H2Admission,
    |a| address: a.peer,
    carrier: format!("HTTP/2, TLS over {}", a.over)
);

/// An admitted session's side of HTTP/2 in the daemon: the admission's stream first, then
/// each request naming the session, from whichever connection.
#[derive(Debug)]
pub struct H2ServerConnection {
    first: Mutex<Option<StreamPair>>,
    lanes: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
    drain: Arc<Drain>,
    _guard: SessionGuard,
    driver: Mutex<Task>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    peer: SocketAddr,
    mptcp: bool,
    socket: OwnedFd,
}

impl H2ServerConnection {
    fn take_first(&self) -> Option<StreamPair> {
        self.first.lock().ok().and_then(|mut f| f.take())
    }

    /// The client's address (or its reverse proxy's).
    pub fn remote_address(&self) -> SocketAddr {
        self.peer
    }
}

impl Connection for H2ServerConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            self.take_first().ok_or(TransportError::Unsupported {
                transport: "an HTTP/2 connection's server side".into(),
                what: "opening a stream (the client opens them)",
            })
        })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            if let Some(first) = self.take_first() {
                return Ok(first);
            }
            let (request, mut respond) = self
                .lanes
                .lock()
                .await
                .recv()
                .await
                .ok_or(TransportError::Closed)?;
            let ok = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/octet-stream")
                .body(())
                .map_err(|e| TransportError::setup("an HTTP/2 response", e))?;
            let send = respond
                .send_response(ok, false)
                .map_err(|e| TransportError::Io(lanes::io_error(e)))?;
            Ok(lanes::lane(send, request.into_body(), &self.drain))
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_max_streams(u32::from(arsync_core::proto::merkle::MAX_LANES) + 1)
            .with_encrypted(true)
    }

    /// From `TCP_INFO` (and `MPTCP_INFO`) of the admission's connection.
    fn path_stats(&self) -> Option<PathStats> {
        crate::mptcp::path_stats(self.socket.as_fd(), self.mptcp)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            drop(self.take_first());
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.drain.wait()).await;
            // The client ends the connection once it has what it needs; give it the chance.
            let driver = self.driver.lock().ok().and_then(|mut d| d.0.take());
            if let Some(mut d) = driver {
                if tokio::time::timeout(CLIENT_CLOSE, &mut d).await.is_err() {
                    if let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) {
                        let _ = stop.send(());
                    }
                    if tokio::time::timeout(CLIENT_CLOSE, &mut d).await.is_err() {
                        d.abort();
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::quic::QuicTrust;
    use crate::tls_tcp::TlsTcpServer;
    use arsync_auth::tls::{self, ClientAuth, Identity};

    /// A request naming a session nobody admitted (a guessed or stale identifier) is
    /// answered 404 and reaches no session; the daemon ends the connection that brought it
    /// (the client holding it open does not hold a slot), a lanes-only one, not an admission.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lane_naming_no_admitted_session_is_refused() {
        let id = Identity::generate(&["localhost".into()]).unwrap();
        let config = tls::server_config(&id, &ClientAuth::None).unwrap();
        let server = TlsTcpServer::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = async {
            let (tcp, peer) = server.accept().await.unwrap();
            server.handshake_any(tcp, peer).await
        };
        let client = async {
            let trust = QuicTrust::Pinned(id.fingerprint());
            let pinning = crate::pinning::Pinning::start(&trust, "test").unwrap();
            let mut config = pinning.client_config(None).unwrap();
            config.alpn_protocols = vec![super::super::ALPN.to_vec()];
            let tcp = TcpStream::connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(crate::pinning::server_name("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let (send, conn) = h2::client::handshake(tls).await.unwrap();
            let driver = tokio::spawn(conn);
            let mut send = send.ready().await.unwrap();
            let request = Request::post(format!("https://localhost{}", super::super::PATH))
                .header(SESSION_HEADER, "0".repeat(32))
                .body(())
                .unwrap();
            let (response, body) = send.send_request(request, true).unwrap();
            let status = response.await.unwrap().status();
            // Still holding the connection open: the daemon ends it.
            let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
            assert!(ended.is_ok(), "the daemon kept the connection open");
            drop((send, body));
            status
        };
        let (served, status) = tokio::join!(accept, client);
        assert_eq!(status, StatusCode::NOT_FOUND);
        match served {
            Ok(None) => {}
            Ok(Some(a)) => panic!("an admission: {:?}", a.request()),
            Err(e) => panic!("{e}"),
        }
    }
}
