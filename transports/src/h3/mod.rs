//! Issue 17, h3: `h3` — arsync's session over HTTP/3 (the `h3` and `h3-quinn` crates on the
//! same quinn endpoint, TLS and tuning as [`crate::quic`]), for networks that let HTTP/3
//! through where they drop other UDP.
//!
//! Every stream is an HTTP/3 request stream with a body streaming each way (a `POST` whose
//! request and response bodies are open-ended): HTTP/3 gives each request its own QUIC
//! stream, so the lanes keep QUIC's independence. Extended CONNECT (RFC 9220) or WebTransport
//! would say "tunnel" more plainly, but h3 0.0.8 only has WebTransport behind its
//! breaking-changes feature (the separate `h3-webtransport` crate), and a streaming `POST`
//! needs nothing of the server's settings.
//!
//! - `POST /arsync/admit`: the first request. Its request body starts with the same
//!   [`AdmitRequest`] as raw QUIC, its response (status 200 admitted, 403 refused) with the
//!   [`AdmitReply`]. It then stays open, silent, to close the connection in order: a side's
//!   [`Connection::close`] ends its body of this request ("I have read all I want"), and the
//!   QUIC connection is closed only once the peer has said the same (or the client closed
//!   it) — QUIC's close would discard data still in flight, and h3 does not show whether a
//!   stream's data was acknowledged.
//! - `POST /arsync/lane`: every stream the session opens (the control stream first). Only the
//!   client opens them (HTTP/3 requests come from the client); the server accepts them in
//!   order.
//!
//! Each request's two bodies are the engine's reader and writer through `body` (a small task
//! per half).
//!
//! Not here: the handshake, pinning and tuning ([`crate::quic`]), the admission's bytes and
//! the daemon's decision ([`crate::admission`]), moving body bytes (`body`).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use arsync_core::proto::admit::{AdmitReply, AdmitRequest};
use arsync_core::proto::merkle::MAX_LANES;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, PathStats, StreamPair,
    TransportError, TransportFactory,
};
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::admission::PendingAdmission;

mod body;
use crate::quic::{QuicServer, QuicTransport, QuicTrust, QuicTuning, CLOSE_FLUSH, DRAIN_TIMEOUT};
use body::{io_err, H3Recv, H3Send, ServerSend};

/// The path of the admission request.
pub const ADMIT_PATH: &str = "/arsync/admit";
/// The path of every stream's request.
pub const LANE_PATH: &str = "/arsync/lane";
/// The largest header section either side takes (h3's default is unlimited); arsync's
/// requests and responses carry a few dozen bytes of headers.
const MAX_HEADERS: u64 = 16 << 10;
/// How long the server waits for the client to close after both said they are done.
const CLIENT_CLOSE_WAIT: Duration = Duration::from_secs(2);

type ServerConn = h3::server::Connection<h3_quinn::Connection, Bytes>;
type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// A request to `path` of the server `authority`.
fn http_request(authority: &str, path: &str) -> Result<http::Request<()>, TransportError> {
    http::Request::post(format!("https://{authority}{path}"))
        .body(())
        .map_err(|e| TransportError::setup("an HTTP/3 request", e))
}

/// The `h3` transport (client side): [`QuicTransport`]'s handshake with ALPN `h3`, then
/// HTTP/3 requests.
#[derive(Debug, Clone)]
pub struct H3Transport {
    quic: QuicTransport,
    tuning: QuicTuning,
}

impl H3Transport {
    /// A client trusting servers as `trust` says, presenting `client_identity` (mutual TLS)
    /// if given.
    pub fn new(
        trust: QuicTrust,
        client_identity: Option<arsync_auth::tls::Identity>,
        tuning: QuicTuning,
    ) -> Self {
        H3Transport {
            quic: QuicTransport::new(trust, client_identity, tuning),
            tuning,
        }
    }

    /// Connect to `addr` (the server name `name` for certificates and pins) and present
    /// `request` in the admission request; the admitted connection.
    pub async fn connect_to(
        &self,
        addr: SocketAddr,
        name: &str,
        request: &AdmitRequest,
    ) -> Result<H3Connection, TransportError> {
        let (conn, endpoint, server) = self
            .quic
            .handshake_to(addr, name, Some(crate::quic::H3_ALPN))
            .await?;
        let t = self.tuning.handshake_timeout;
        let slow = |what: &str| TransportError::Connect {
            endpoint: server.clone(),
            reason: format!("no HTTP/3 {what} within {t:?}"),
        };
        let h3_conn = h3_quinn::Connection::new(conn.clone());
        let (mut driver, mut send_request) = tokio::time::timeout(
            t,
            h3::client::builder()
                .max_field_section_size(MAX_HEADERS)
                .build(h3_conn),
        )
        .await
        .map_err(|_| slow("connection"))?
        .map_err(|e| TransportError::unreachable(&server, "starting HTTP/3", e))?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let authority = server.clone();
        let stream = tokio::time::timeout(
            t,
            send_request.send_request(http_request(&authority, ADMIT_PATH)?),
        )
        .await
        .map_err(|_| slow("admission request"))?
        .map_err(|e| TransportError::unreachable(&server, "sending the admission request", e))?;
        let (send, recv) = stream.split();
        let (mut send, mut recv) = (H3Send::spawn(send), H3Recv::spawn(recv));
        let presented = crate::admission::present(&mut send, &mut recv, request, t, &server).await;
        if let Err(e) = presented {
            conn.close(quinn::VarInt::from_u32(0), b"refused");
            return Err(e);
        }
        Ok(H3Connection {
            conn,
            endpoint,
            side: Side::Client {
                send_request: Mutex::new(send_request),
                authority,
            },
            streams: self.tuning.streams.max(1),
            goodbye: Mutex::new(Some(send)),
            peer_goodbye: tokio::sync::Mutex::new(Some(recv)),
        })
    }
}

impl TransportFactory for H3Transport {
    fn name(&self) -> &str {
        "h3"
    }

    /// Encrypted (TLS 1.3); `tuning.streams` request streams on one QUIC connection.
    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_max_streams(self.tuning.streams.max(1))
            .with_encrypted(true)
    }

    /// As [`QuicTransport`]'s: `endpoint.host`/`port` the server, `path` the `module/path`,
    /// `remote_command` the words after `--server`, `auth.token` the bearer token.
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

/// Which end of the connection this is.
enum Side {
    /// Opens requests.
    Client {
        send_request: Mutex<SendRequest>,
        authority: String,
    },
    /// Accepts them: the accepted lanes, in order, from the task accepting requests.
    Server {
        lanes: tokio::sync::Mutex<mpsc::Receiver<StreamPair>>,
    },
}

/// An admitted HTTP/3 connection: every stream a `POST /arsync/lane` request.
pub struct H3Connection {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    side: Side,
    streams: u32,
    /// This side's body of the admission request, ended by `close`.
    goodbye: Mutex<Option<H3Send>>,
    /// The peer's, whose end says the peer closed.
    peer_goodbye: tokio::sync::Mutex<Option<H3Recv>>,
}

impl std::fmt::Debug for H3Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Connection")
            .field("peer", &self.conn.remote_address())
            .field("server", &matches!(self.side, Side::Server { .. }))
            .finish()
    }
}

impl H3Connection {
    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    async fn open(&self) -> Result<StreamPair, TransportError> {
        let Side::Client {
            send_request,
            authority,
        } = &self.side
        else {
            return Err(TransportError::Unsupported {
                transport: "h3".into(),
                what: "opening streams on the server side (HTTP/3 requests come from the client)",
            });
        };
        let mut sr = send_request
            .lock()
            .map_err(|_| TransportError::Closed)?
            .clone();
        let stream = sr
            .send_request(http_request(authority, LANE_PATH)?)
            .await
            .map_err(|e| TransportError::Io(io_err(e)))?;
        let (send, recv) = stream.split();
        Ok(StreamPair {
            send: Box::new(H3Send::spawn(send)),
            recv: Box::new(H3Recv::spawn(recv)),
        })
    }

    async fn accept(&self) -> Result<StreamPair, TransportError> {
        let Side::Server { lanes } = &self.side else {
            return Err(TransportError::Unsupported {
                transport: "h3".into(),
                what: "accepting streams on the client side (HTTP/3 requests come from the client)",
            });
        };
        lanes
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)
    }

    /// Say this side is done (end its admission body), hear the peer say so (or close).
    async fn say_goodbye(&self) {
        drop(self.goodbye.lock().ok().and_then(|mut g| g.take()));
        let mut peer = self.peer_goodbye.lock().await;
        if let Some(recv) = peer.as_mut() {
            let to_end = async {
                let mut sink = [0u8; 256];
                while matches!(recv.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            tokio::select! {
                _ = to_end => {}
                _ = self.conn.closed() => {}
            }
        }
        *peer = None;
    }
}

impl Connection for H3Connection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(self.open())
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(self.accept())
    }

    /// One congestion controller for all request streams; no datagrams (h3's are not enabled).
    fn capabilities(&self) -> Capabilities {
        let streams = match self.side {
            Side::Client { .. } => self.streams,
            Side::Server { .. } => u32::from(MAX_LANES) + 1,
        };
        Capabilities::single_stream()
            .with_max_streams(streams)
            .with_encrypted(true)
    }

    fn path_stats(&self) -> Option<PathStats> {
        Some(crate::quic::path_stats_of(&self.conn))
    }

    /// The client closes the QUIC connection once both sides said they are done; the server
    /// waits for that (bounded), then closes too.
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.say_goodbye()).await;
            if let Side::Server { .. } = self.side {
                let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, self.conn.closed()).await;
            }
            self.conn.close(quinn::VarInt::from_u32(0), b"done");
            let _ = tokio::time::timeout(CLOSE_FLUSH, self.endpoint.wait_idle()).await;
            Ok(())
        })
    }
}

/// A handshaken HTTP/3 connection whose admission request waits for the daemon's answer.
pub struct H3Admission {
    request: AdmitRequest,
    client_certified: bool,
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    h3: ServerConn,
    send: ServerSend,
    recv: H3Recv,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for H3Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Admission")
            .field("request", &self.request)
            .field("peer", &self.conn.remote_address())
            .finish()
    }
}

impl H3Admission {
    /// Start HTTP/3 on `conn` and read its first request, which must be the admission
    /// request (bounded in size and time).
    pub(crate) async fn read(
        conn: quinn::Connection,
        endpoint: quinn::Endpoint,
        tuning: &QuicTuning,
    ) -> Result<H3Admission, TransportError> {
        let peer = conn.remote_address().to_string();
        let t = tuning.handshake_timeout;
        let fail = |reason: String| TransportError::Connect {
            endpoint: peer.clone(),
            reason,
        };
        let first = async {
            let mut h3: ServerConn = h3::server::builder()
                .max_field_section_size(MAX_HEADERS)
                .build(h3_quinn::Connection::new(conn.clone()))
                .await
                .map_err(|e| TransportError::unreachable(&peer, "starting HTTP/3", e))?;
            let resolver = h3
                .accept()
                .await
                .map_err(|e| TransportError::unreachable(&peer, "HTTP/3 request", e))?
                .ok_or(TransportError::Closed)?;
            let (req, mut stream) = resolver
                .resolve_request()
                .await
                .map_err(|e| TransportError::unreachable(&peer, "HTTP/3 request", e))?;
            if req.method() != http::Method::POST || req.uri().path() != ADMIT_PATH {
                let _ = stream.send_response(status(404)).await;
                let _ = stream.finish().await;
                // Closing now would discard the answer: let the client read it and close.
                let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, conn.closed()).await;
                return Err(fail(format!(
                    "an HTTP/3 request for {} {}, not arsync's admission",
                    req.method(),
                    req.uri().path()
                )));
            }
            Ok((h3, stream))
        };
        let (h3, stream) = tokio::time::timeout(t, first)
            .await
            .map_err(|_| fail("no HTTP/3 admission request".into()))??;
        let (send, recv) = stream.split();
        let mut recv = H3Recv::spawn(recv);
        let request = tokio::time::timeout(
            t,
            crate::admission::read_message(&mut recv, AdmitRequest::decode),
        )
        .await
        .map_err(|_| fail("admission request too slow".into()))??;
        Ok(H3Admission {
            request,
            client_certified: crate::quic::client_certified(&conn),
            conn,
            endpoint,
            h3,
            send,
            recv,
            handshake_timeout: t,
        })
    }

    /// Admit: answer 200 and [`AdmitReply::Admitted`], and accept the lanes from now on.
    pub async fn admit(mut self) -> Result<H3Connection, TransportError> {
        self.send
            .send_response(status(200))
            .await
            .map_err(|e| TransportError::Io(io_err(e)))?;
        let mut send = H3Send::spawn(self.send);
        crate::admission::answer(&mut send, &AdmitReply::Admitted).await?;
        let (tx, rx) = mpsc::channel(usize::from(MAX_LANES) + 1);
        tokio::spawn(accept_lanes(self.h3, tx, self.handshake_timeout));
        Ok(H3Connection {
            conn: self.conn,
            endpoint: self.endpoint,
            side: Side::Server {
                lanes: tokio::sync::Mutex::new(rx),
            },
            streams: u32::from(MAX_LANES) + 1,
            goodbye: Mutex::new(Some(send)),
            peer_goodbye: tokio::sync::Mutex::new(Some(self.recv)),
        })
    }

    /// Refuse: answer 403 and [`AdmitReply::Refused`] with an rsync exit code and a message
    /// for the client's user.
    pub async fn refuse(mut self, code: u8, message: &str) {
        if self.send.send_response(status(403)).await.is_ok() {
            let mut send = H3Send::spawn(self.send);
            let refused = AdmitReply::Refused {
                code,
                message: message.to_owned(),
            };
            let _ = crate::admission::answer(&mut send, &refused).await;
        }
        // Let the client read it and close; then close regardless.
        let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, self.conn.closed()).await;
        self.conn.close(quinn::VarInt::from_u32(0), b"refused");
        drop(self.h3);
    }
}

/// A response head of `code`.
fn status(code: u16) -> http::Response<()> {
    let mut r = http::Response::new(());
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    r
}

/// The server's task: accept requests in order; each `POST /arsync/lane` is answered 200 and
/// handed to `accept_stream`; anything else gets 404. Ends with the connection.
async fn accept_lanes(mut h3: ServerConn, lanes: mpsc::Sender<StreamPair>, limit: Duration) {
    while let Ok(Some(resolver)) = h3.accept().await {
        let Ok(Ok((req, mut stream))) =
            tokio::time::timeout(limit, resolver.resolve_request()).await
        else {
            continue;
        };
        if req.method() != http::Method::POST || req.uri().path() != LANE_PATH {
            let _ = stream.send_response(status(404)).await;
            let _ = stream.finish().await;
            continue;
        }
        if stream.send_response(status(200)).await.is_err() {
            continue;
        }
        let (send, recv) = stream.split();
        let pair = StreamPair {
            send: Box::new(H3Send::spawn(send)),
            recv: Box::new(H3Recv::spawn(recv)),
        };
        if lanes.send(pair).await.is_err() {
            break;
        }
    }
}

crate::admission::pending_admission!(
    H3Admission,
    |a| address: a.conn.remote_address(),
    carrier: "HTTP/3".into()
);

impl QuicServer {
    /// [`QuicServer::bind`] answering HTTP/3 (ALPN `h3`) too, besides arsync's own ALPN;
    /// [`QuicServer::handshake_any`] tells them apart.
    pub fn bind_with_h3(
        addr: SocketAddr,
        mut rustls_config: rustls::ServerConfig,
        tuning: QuicTuning,
    ) -> Result<QuicServer, TransportError> {
        rustls_config
            .alpn_protocols
            .push(crate::quic::H3_ALPN.to_vec());
        Self::bind_offering(addr, rustls_config, tuning, crate::quic::H3_UNI_STREAMS)
    }

    /// Complete the handshake of `incoming` and read its admission request, by arsync's own
    /// protocol or by HTTP/3, as the negotiated ALPN says.
    pub async fn handshake_any(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<Box<dyn PendingAdmission>, TransportError> {
        let conn = self.establish(incoming).await?;
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol);
        if alpn.as_deref() == Some(crate::quic::H3_ALPN) {
            let admission = H3Admission::read(conn, self.endpoint.clone(), &self.tuning).await?;
            return Ok(Box::new(admission));
        }
        Ok(Box::new(self.admission(conn).await?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use arsync_auth::tls::{self, ClientAuth, Identity};

    /// A plain HTTP/3 client that does not ask for arsync's admission gets 404, and the
    /// daemon's dispatch says what came instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_other_than_the_admission_gets_404() {
        let id = Identity::generate(&["localhost".into()]).unwrap();
        let config = tls::server_config(&id, &ClientAuth::None).unwrap();
        let tuning = QuicTuning::default();
        let server =
            QuicServer::bind_with_h3("127.0.0.1:0".parse().unwrap(), config, tuning).unwrap();
        let addr = server.local_addr().unwrap();
        let quic = QuicTransport::new(QuicTrust::Pinned(id.fingerprint()), None, tuning);
        let client = async {
            let (conn, _endpoint, _) = quic
                .handshake_to(addr, "127.0.0.1", Some(crate::quic::H3_ALPN))
                .await
                .unwrap();
            let h3_conn = h3_quinn::Connection::new(conn.clone());
            let (mut driver, mut send_request) = h3::client::new(h3_conn).await.unwrap();
            tokio::spawn(async move {
                let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            });
            let get = http::Request::get(format!("https://{addr}/"))
                .body(())
                .unwrap();
            let mut stream = send_request.send_request(get).await.unwrap();
            stream.finish().await.unwrap();
            let status = stream.recv_response().await.unwrap().status();
            conn.close(quinn::VarInt::from_u32(0), b"done");
            status
        };
        let dispatch = async {
            let incoming = server.incoming().await.unwrap();
            server.handshake_any(incoming).await.map(|a| a.carrier())
        };
        let client = tokio::time::timeout(Duration::from_secs(10), client);
        let (status, dispatched) = tokio::join!(client, dispatch);
        let status = status.expect("the client had its answer within 10 s");
        assert_eq!(status.as_u16(), 404);
        let err = dispatched.unwrap_err().to_string();
        assert!(err.contains("for GET /, not arsync's admission"), "{err}");
    }
}
