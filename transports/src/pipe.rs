//! `pipe`: a connection over one pair of byte pipes — this process's stdin/stdout (what
//! `arsync --pipe` and `arsync --server` speak on) or a child process's stdio (what a remote
//! shell gives). One stream, no shared filesystem; the child, if any, is reaped on close and a
//! failed exit is reported. Shutting the send half down closes its descriptor ([`EndOnShutdown`]):
//! a pipe has no half-close of its own, so that is how the peer reads the end.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use arsync_core::proto::bootstrap::LineReader;
use arsync_core::proto::DecodeError;
use arsync_core::transport::{
    BoxFuture, Capabilities, Connection, RecvStream, StreamPair, TransportError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::process::Child;

use crate::held_stderr::HeldStderr;

/// Read one line from `recv` into `reader`, a byte at a time so that nothing after it is
/// consumed (the session follows on the same stream): `None` at the end of the stream or on a
/// read error, the reader's error for a line past its bound.
pub async fn read_line(
    recv: &mut RecvStream,
    reader: &mut LineReader,
) -> Option<Result<Vec<u8>, DecodeError>> {
    let mut b = [0u8; 1];
    loop {
        match recv.read(&mut b).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => match reader.push(b[0]) {
                Ok(None) => {}
                Ok(Some(line)) => return Some(Ok(line)),
                Err(e) => return Some(Err(e)),
            },
        }
    }
}

/// One already-open stream as a connection (read from before the session began: a
/// bootstrap offer, a transport helper's hello); closing it closes the connection it came
/// from.
#[derive(Debug)]
pub struct OneStream {
    pair: Mutex<Option<StreamPair>>,
    inner: Box<dyn Connection>,
    caps: Option<Capabilities>,
}

impl OneStream {
    /// `pair`, opened on `inner`.
    pub fn new(pair: StreamPair, inner: Box<dyn Connection>) -> Self {
        OneStream {
            pair: Mutex::new(Some(pair)),
            inner,
            caps: None,
        }
    }

    /// Claim `caps` instead of `inner`'s (what was learned on the stream itself).
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = Some(caps);
        self
    }

    /// Take the stream (to read or write on it before the session), if it is still here.
    pub fn take(&self) -> Option<StreamPair> {
        self.pair.lock().ok().and_then(|mut p| p.take())
    }

    /// Give back a stream [`OneStream::take`] took.
    pub fn put_back(&self, pair: StreamPair) {
        if let Ok(mut slot) = self.pair.lock() {
            *slot = Some(pair);
        }
    }
}

impl Connection for OneStream {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            self.take().ok_or(TransportError::Unsupported {
                transport: "a one-stream connection".into(),
                what: "a second stream",
            })
        })
    }
    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.open_stream()
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
            .clone()
            .unwrap_or_else(|| self.inner.capabilities())
    }
    fn path_stats(&self) -> Option<arsync_core::transport::PathStats> {
        self.inner.path_stats()
    }
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            self.take();
            self.inner.close().await
        })
    }
}

/// How long closing waits for the process at the other end to exit.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// One stream over a pair of pipes, optionally owning the process at the other end.
#[derive(Debug)]
pub struct PipeConnection {
    stream: Mutex<Option<StreamPair>>,
    child: tokio::sync::Mutex<Option<(Child, String)>>,
    stderr: tokio::sync::Mutex<Option<StderrRelay>>,
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
            stderr: tokio::sync::Mutex::new(None),
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

    /// Like [`PipeConnection::child`], with the child's stderr (piped) relayed to ours line by
    /// line — except a remote shell's "command not found" for `program`, which is held back
    /// and given in the error if the child exits 127 (so a caller that falls back to rsync's
    /// protocol does so quietly), or shown at the end otherwise.
    pub fn child_relaying_stderr(
        mut child: Child,
        command: String,
        program: &str,
    ) -> Result<Self, TransportError> {
        let relay = child
            .stderr
            .take()
            .map(|e| StderrRelay::start(e, program.to_owned()));
        let c = PipeConnection::child(child, command)?;
        *c.stderr.try_lock().map_err(|_| TransportError::Closed)? = relay;
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
                        said: Vec::new(),
                    });
                }
            };
            let held = match self.stderr.lock().await.take() {
                Some(relay) => relay.finish().await,
                None => Vec::new(),
            };
            if status.code() == Some(127) {
                return Err(TransportError::PeerExited {
                    command,
                    status: status.to_string(),
                    code: status.code(),
                    said: held,
                });
            }
            crate::held_stderr::show(&held);
            if status.success() {
                Ok(())
            } else {
                Err(TransportError::PeerExited {
                    command,
                    status: status.to_string(),
                    code: status.code(),
                    said: Vec::new(),
                })
            }
        })
    }
}

/// A child's stderr relayed to ours, "command not found" lines held back
/// ([`crate::held_stderr`]).
#[derive(Debug)]
struct StderrRelay(tokio::task::JoinHandle<Vec<String>>);

/// How long closing waits for the rest of a child's stderr once it exited.
const STDERR_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl StderrRelay {
    fn start(mut stderr: tokio::process::ChildStderr, program: String) -> Self {
        StderrRelay(tokio::spawn(async move {
            use std::io::Write;
            let mut lines = HeldStderr::new(&program);
            let mut buf = vec![0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buf).await {
                let _ = std::io::stderr().write_all(&lines.feed(&buf[..n]));
            }
            let (rest, held) = lines.finish();
            let _ = std::io::stderr().write_all(&rest);
            held
        }))
    }

    /// What was held back, once the child's stderr ended (or after a grace period).
    async fn finish(self) -> Vec<String> {
        match tokio::time::timeout(STDERR_GRACE, self.0).await {
            Ok(Ok(held)) => held,
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a child prints on stderr reaches the caller held or shown; a 127 carries the
    /// "not found" line (a real child process: `sh`).
    #[tokio::test]
    async fn a_missing_program_is_reported_in_the_error_not_printed() {
        let child = tokio::process::Command::new("sh")
            .args(["-c", "echo 'sh: 1: arsync: not found' >&2; exit 127"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let c = PipeConnection::child_relaying_stderr(child, "sh".into(), "arsync")
            .expect("connection");
        match c.close().await {
            Err(TransportError::PeerExited {
                code: Some(127),
                said,
                ..
            }) => assert_eq!(said, vec!["sh: 1: arsync: not found".to_owned()]),
            other => panic!("{other:?}"),
        }
    }
}
