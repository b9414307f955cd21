//! `pipe`: a connection over one pair of byte pipes — this process's stdin/stdout (what
//! `arsync --pipe` and `arsync --server` speak on) or a child process's stdio (what a remote
//! shell gives). One stream, no shared filesystem; the child, if any, is reaped on close and a
//! failed exit is reported. Shutting the send half down closes its descriptor ([`EndOnShutdown`]):
//! a pipe has no half-close of its own, so that is how the peer reads the end.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use arsync_core::transport::{BoxFuture, Capabilities, Connection, StreamPair, TransportError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::Child;

/// How long closing waits for the process at the other end to exit.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// One stream over a pair of pipes, optionally owning the process at the other end.
#[derive(Debug)]
pub struct PipeConnection {
    stream: Mutex<Option<StreamPair>>,
    child: tokio::sync::Mutex<Option<(Child, String)>>,
}

impl PipeConnection {
    /// A connection reading `recv` and writing `send`.
    pub fn new(
        recv: impl AsyncRead + Send + Unpin + 'static,
        send: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Self {
        PipeConnection {
            stream: Mutex::new(Some(StreamPair {
                send: Box::new(EndOnShutdown::new(send)),
                recv: Box::new(recv),
            })),
            child: tokio::sync::Mutex::new(None),
        }
    }

    /// This process's stdin and stdout, blocking or not ([`crate::stdio`]).
    pub fn stdio() -> Self {
        PipeConnection::new(crate::stdio::stdin(), crate::stdio::stdout())
    }

    /// The stdio of `child` (started with piped stdin and stdout); `command` names it in
    /// errors.
    pub fn child(mut child: Child, command: String) -> Result<Self, TransportError> {
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(TransportError::Connect {
                endpoint: command,
                reason: "child has no piped stdin/stdout".into(),
            });
        };
        let c = PipeConnection::new(stdout, stdin);
        c.child
            .try_lock()
            .map_err(|_| TransportError::Closed)?
            .replace((child, command));
        Ok(c)
    }

    fn take(&self) -> Result<StreamPair, TransportError> {
        self.stream
            .lock()
            .map_err(|_| TransportError::Closed)?
            .take()
            .ok_or(TransportError::Unsupported {
                transport: "pipe".into(),
                what: "a second stream",
            })
    }
}

/// A send half whose `shutdown` also drops (closes) the writer, so that the reader sees the end
/// at once: tokio's pipe and child-stdin writers shut down as a no-op, and the peer of a pipe
/// reads its end only when the descriptor is closed. Writing after the shutdown is an error.
#[derive(Debug)]
pub struct EndOnShutdown<W> {
    inner: Option<W>,
}

impl<W> EndOnShutdown<W> {
    /// `inner`, ended by `shutdown`.
    pub fn new(inner: W) -> Self {
        EndOnShutdown { inner: Some(inner) }
    }

    fn inner(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stream already shut down"))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for EndOnShutdown<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(w) => Pin::new(w).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(w) => Pin::new(w).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(w) = self.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let done = Pin::new(w).poll_shutdown(cx);
        if done.is_ready() {
            self.inner = None;
        }
        done
    }
}

impl Connection for PipeConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move { self.take() })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move { self.take() })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if let Ok(mut s) = self.stream.lock() {
                s.take();
            }
            let Some((mut child, command)) = self.child.lock().await.take() else {
                return Ok(());
            };
            // Its stdin is closed: a remote shell whose command is done exits now. One that
            // does not is not waited for past the grace period.
            let status = match tokio::time::timeout(CLOSE_GRACE, child.wait()).await {
                Ok(status) => status?,
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(TransportError::PeerExited {
                        command,
                        status: format!(
                            "still running {} s after the session ended: killed",
                            CLOSE_GRACE.as_secs()
                        ),
                        code: None,
                    });
                }
            };
            if status.success() {
                Ok(())
            } else {
                Err(TransportError::PeerExited {
                    command,
                    status: status.to_string(),
                    code: status.code(),
                })
            }
        })
    }
}
