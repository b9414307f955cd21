//! Issue 17, h2: one HTTP/2 stream as one of the engine's byte pipes — the request body one
//! way, the response body the other — with HTTP/2's flow control: a writer takes only the
//! capacity the peer's window grants, a reader gives back the window of what it has taken.
//!
//! Closing as `tls` does: a send half dropped or shut down ends its body (`END_STREAM`); a
//! receive half dropped reads on (bounded) to the peer's end, so that the stream is never
//! reset while the peer's last bytes are on their way; [`Drain`] counts the halves not yet
//! finished, for the connection's `close`.
//!
//! Not here: opening or accepting the streams (`super`, `super::server`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use arsync_core::transport::{RecvStream as EngineRecv, SendStream as EngineSend, StreamPair};
use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a closing half waits for its last bytes to go and the peer's end to come.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most one write hands HTTP/2 at once (it frames it by the peer's frame size).
const MAX_WRITE: usize = 1 << 20;

pub(crate) use crate::tls_tcp::Drain;

/// One lane: `send` the body this side writes, `recv` the body the peer writes.
pub(crate) fn lane(send: SendStream<Bytes>, recv: RecvStream, drain: &Arc<Drain>) -> StreamPair {
    StreamPair {
        send: sender(send, drain),
        recv: receiver(recv, drain),
    }
}

/// A lane whose response has not come yet: `send` the request body, the response's body
/// read once its headers come (and refused unless 200), so that opening a lane takes no
/// round trip.
pub(crate) fn lane_answered_later(
    send: SendStream<Bytes>,
    response: h2::client::ResponseFuture,
    drain: &Arc<Drain>,
) -> StreamPair {
    StreamPair {
        send: sender(send, drain),
        recv: Box::new(RecvHalf {
            inner: None,
            response: Some(response),
            pending: Bytes::new(),
            drain: drain.start(),
        }),
    }
}

/// The body this side writes, as the engine's writer.
pub(crate) fn sender(send: SendStream<Bytes>, drain: &Arc<Drain>) -> EngineSend {
    Box::new(SendHalf {
        inner: Some(send),
        ended: false,
        drain: drain.start(),
    })
}

/// The body the peer writes, as the engine's reader.
pub(crate) fn receiver(recv: RecvStream, drain: &Arc<Drain>) -> EngineRecv {
    Box::new(RecvHalf {
        inner: Some(recv),
        response: None,
        pending: Bytes::new(),
        drain: drain.start(),
    })
}

/// An HTTP/2 error as an I/O error of the matching kind (h2's error inside).
pub(crate) fn io_error(e: h2::Error) -> io::Error {
    let kind = if e.is_io() {
        e.get_io().map_or(io::ErrorKind::Other, io::Error::kind)
    } else if e.is_reset() || e.is_go_away() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    let said = e.to_string();
    match e.into_io() {
        Some(io) => io,
        None => io::Error::new(kind, format!("HTTP/2: {said}")),
    }
}

/// Whether `e`, ending a body, says only that the stream is over: reset with `NO_ERROR`, or
/// closed already (h2's user error for an inactive stream).
fn finished_by_peer(e: &h2::Error) -> bool {
    !e.is_io() && !e.is_go_away() && e.reason().is_none_or(|r| r == h2::Reason::NO_ERROR)
}

/// The send half: a request or response body this side writes.
struct SendHalf {
    inner: Option<SendStream<Bytes>>,
    ended: bool,
    drain: Arc<Drain>,
}

impl SendHalf {
    fn stream(&mut self) -> io::Result<&mut SendStream<Bytes>> {
        match (&mut self.inner, self.ended) {
            (Some(s), false) => Ok(s),
            _ => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let s = self.stream()?;
        // Capacity assigned earlier and not used yet (poll_capacity reports increases only).
        let have = s.capacity();
        if have > 0 {
            let n = have.min(buf.len());
            s.send_data(Bytes::copy_from_slice(&buf[..n]), false)
                .map_err(io_error)?;
            return Poll::Ready(Ok(n));
        }
        s.reserve_capacity(buf.len().min(MAX_WRITE));
        loop {
            match ready!(s.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe))),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                // Capacity given back to zero: wait for the window to open.
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    s.send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(io_error)?;
                    return Poll::Ready(Ok(n));
                }
            }
        }
    }

    /// The connection's task writes what the streams hold; nothing to do here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        let s = self.stream()?;
        let sent = s.send_data(Bytes::new(), true);
        self.ended = true;
        match sent {
            Ok(()) => Poll::Ready(Ok(())),
            // The peer already ended the exchange without error (a reverse proxy resets the
            // request with NO_ERROR once the response is complete): nothing is left to end.
            Err(e) if finished_by_peer(&e) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if let (Some(s), false) = (&mut self.inner, self.ended) {
            let _ = s.send_data(Bytes::new(), true);
        }
        self.drain.done();
    }
}

/// The receive half: the body the peer writes (once its response's headers come, on a
/// client's lane).
struct RecvHalf {
    inner: Option<RecvStream>,
    response: Option<h2::client::ResponseFuture>,
    pending: Bytes,
    drain: Arc<Drain>,
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(response) = self.response.as_mut() {
            let response = ready!(Pin::new(response).poll(cx)).map_err(io_error)?;
            self.response = None;
            if response.status() != http::StatusCode::OK {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the server answered a lane with HTTP {}", response.status()),
                )));
            }
            self.inner = Some(response.into_body());
        }
        while self.pending.is_empty() {
            let Some(r) = self.inner.as_mut() else {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            };
            match ready!(r.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(data)) => {
                    // Taken from HTTP/2's buffer: the peer may send as much again.
                    let _ = r.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        let drain = self.drain.clone();
        let (inner, response) = (self.inner.take(), self.response.take());
        let Ok(h) = tokio::runtime::Handle::try_current() else {
            drain.done();
            return;
        };
        if inner.is_none() && response.is_none() {
            drain.done();
            return;
        }
        h.spawn(async move {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
                let mut r = match (inner, response) {
                    (Some(r), _) => r,
                    (None, Some(response)) => match response.await {
                        Ok(response) => response.into_body(),
                        Err(_) => return,
                    },
                    (None, None) => return,
                };
                while let Some(Ok(d)) = r.data().await {
                    let _ = r.flow_control().release_capacity(d.len());
                }
            })
            .await;
            drain.done();
        });
    }
}
