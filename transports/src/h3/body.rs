//! Issue 17, h3: an HTTP/3 request's two bodies as the engine's `AsyncWrite`/`AsyncRead`,
//! the client's and the server's alike. h3's send is an `async fn`, not a poll, so each half is
//! moved by a small task of its own; writes reach the sending task and reads come from the
//! receiving one through bounded channels (the back-pressure).
//!
//! Not here: which requests carry what, and closing the connection (the parent module).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h3::error::{Code, StreamError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// The largest piece one write hands to the sending task.
const MAX_CHUNK: usize = 256 << 10;
/// Pieces buffered between a stream and its task, each way.
const CHANNEL_DEPTH: usize = 8;

pub(super) type ClientSend = h3::client::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
pub(super) type ClientRecv = h3::client::RequestStream<h3_quinn::RecvStream, Bytes>;
pub(super) type ServerSend = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
pub(super) type ServerRecv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// An h3 error as the engine's I/O error.
pub(super) fn io_err(e: StreamError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, e)
}

/// A sending half of a request stream, client's or server's.
pub(super) trait SendHalf: Send + 'static {
    fn send(
        &mut self,
        b: Bytes,
    ) -> impl std::future::Future<Output = Result<(), StreamError>> + Send;
    fn finish(&mut self) -> impl std::future::Future<Output = Result<(), StreamError>> + Send;
}

/// A receiving half of a request stream, client's or server's.
pub(super) trait RecvHalf: Send + 'static {
    /// Before the body: the client reads the response's head.
    fn start(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    fn recv(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, StreamError>> + Send;
    fn stop(&mut self);
}

impl SendHalf for ClientSend {
    async fn send(&mut self, b: Bytes) -> Result<(), StreamError> {
        self.send_data(b).await
    }
    async fn finish(&mut self) -> Result<(), StreamError> {
        h3::client::RequestStream::finish(self).await
    }
}

impl SendHalf for ServerSend {
    async fn send(&mut self, b: Bytes) -> Result<(), StreamError> {
        self.send_data(b).await
    }
    async fn finish(&mut self) -> Result<(), StreamError> {
        h3::server::RequestStream::finish(self).await
    }
}

/// `RecvHalf::recv` and `stop`, the same for the client's and the server's half (each an
/// inherent method of its own type).
macro_rules! recv_and_stop {
    () => {
        async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
            Ok(self
                .recv_data()
                .await?
                .map(|mut b| b.copy_to_bytes(b.remaining())))
        }
        fn stop(&mut self) {
            self.stop_sending(Code::H3_NO_ERROR);
        }
    };
}

impl RecvHalf for ClientRecv {
    /// 200 for a lane or an admission, 403 for a refusal (its body says why); anything else
    /// is not an `arsync serve`.
    async fn start(&mut self) -> io::Result<()> {
        let response = self.recv_response().await.map_err(io_err)?;
        match response.status().as_u16() {
            200 | 403 => Ok(()),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the HTTP/3 server answered status {other} (is it an arsync serve?)"),
            )),
        }
    }
    recv_and_stop!();
}

impl RecvHalf for ServerRecv {
    async fn start(&mut self) -> io::Result<()> {
        Ok(())
    }
    recv_and_stop!();
}

/// The writing end of a request body: each write goes to the task sending it; dropping or
/// shutting it down ends the body once everything before has been sent.
pub(super) struct H3Send(PollSender<Bytes>);

impl H3Send {
    pub(super) fn spawn<S: SendHalf>(mut half: S) -> H3Send {
        let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                if half.send(coalesce(first, &mut rx)).await.is_err() {
                    // The peer stopped reading or the connection ended: writes fail from now.
                    return;
                }
            }
            let _ = half.finish().await;
        });
        H3Send(PollSender::new(tx))
    }
}

/// `first` and whatever else is already queued behind it, up to about [`MAX_CHUNK`], as one
/// DATA frame: h3-quinn writes each frame's header apart from its payload, and each write may
/// leave in a packet of its own, so fewer, larger frames cost fewer packets.
fn coalesce(first: Bytes, rx: &mut mpsc::Receiver<Bytes>) -> Bytes {
    if first.len() >= MAX_CHUNK {
        return first;
    }
    let Ok(next) = rx.try_recv() else {
        return first;
    };
    let mut joined = bytes::BytesMut::with_capacity(MAX_CHUNK + next.len());
    joined.extend_from_slice(&first);
    joined.extend_from_slice(&next);
    while joined.len() < MAX_CHUNK {
        match rx.try_recv() {
            Ok(more) => joined.extend_from_slice(&more),
            Err(_) => break,
        }
    }
    joined.freeze()
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP/3 stream was closed")
}

impl AsyncWrite for H3Send {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.0.poll_reserve(cx)).map_err(|_| broken())?;
        let n = buf.len().min(MAX_CHUNK);
        self.0
            .send_item(Bytes::copy_from_slice(&buf[..n]))
            .map_err(|_| broken())?;
        Poll::Ready(Ok(n))
    }

    /// The sending task moves what was written on its own; nothing waits here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.close();
        Poll::Ready(Ok(()))
    }
}

/// The reading end of a body: what the receiving task got, in order; the end of the body is
/// the end of the stream. Dropping it asks the peer to stop sending.
pub(super) struct H3Recv {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    piece: Bytes,
}

impl H3Recv {
    pub(super) fn spawn<R: RecvHalf>(mut half: R) -> H3Recv {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        tokio::spawn(async move {
            if let Err(e) = half.start().await {
                let _ = tx.send(Err(e)).await;
                return;
            }
            loop {
                let got = tokio::select! {
                    got = half.recv() => Some(got),
                    _ = tx.closed() => None,
                };
                match got {
                    // The reader went away while a read was in flight. h3-quinn keeps the
                    // stream inside that read, so `stop_sending` now would find none (it
                    // unwraps: a panic); dropping the half drops quinn's stream, which tells
                    // the peer to stop sending all the same.
                    None => return,
                    Some(Ok(Some(b))) if b.is_empty() => {}
                    Some(Ok(Some(b))) => {
                        if tx.send(Ok(b)).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(None)) => return,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(io_err(e))).await;
                        return;
                    }
                }
            }
            // Nobody reads any more (and no read is in flight).
            half.stop();
        });
        H3Recv {
            rx,
            piece: Bytes::new(),
        }
    }
}

impl AsyncRead for H3Recv {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.piece.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(b)) => self.piece = b,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.piece.len().min(buf.remaining());
        buf.put_slice(&self.piece[..n]);
        self.piece.advance(n);
        Poll::Ready(Ok(()))
    }
}
