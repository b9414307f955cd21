//! This process's standard descriptors (stdin, stdout, stderr) in whichever mode they arrive.
//!
//! A server does not choose its stdio: a remote shell hands it over. rsync's client sets
//! `O_NONBLOCK` on both ends of the socketpairs it gives its remote shell and clears it again
//! only on the child's stdin (and on stdout with `--blocking-io`, its default for a shell
//! named `rsh` or `remsh`), so a shell that execs the command directly leaves the server a
//! non-blocking stdout; `docker exec`-style shells and inetd-style sockets can make any of the
//! three non-blocking. There read(2) and write(2) fail with `EAGAIN` where a blocking call
//! would wait. This module owns treating that as "wait", for every read and write of the
//! standard descriptors:
//!
//! - [`stdin`] and [`stdout`]: the session's async streams. A non-blocking descriptor is
//!   driven by the reactor ([`AsyncFd`]: wait for readiness, try again on `EAGAIN`); a
//!   blocking one by blocking threads (tokio's own stdin/stdout), as before.
//! - [`read_waiting`] and [`write_all_waiting`]: the same for code that reads or writes on a
//!   thread of its own (the QUIC bootstrap's line and its watch on stdin): `EAGAIN` waits in
//!   poll(2).
//! - [`write_stderr`]: diagnostics that wait for room on a full non-blocking stderr instead
//!   of being lost, and never panic.
//!
//! The mode itself is never changed: the open file description may be shared with other
//! processes (the remote shell, a terminal), whose I/O would change with it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// This process's stdin as an async stream, in the mode it came in.
pub fn stdin() -> StdStream<tokio::io::Stdin> {
    match NonBlocking::new(io::stdin().as_fd(), Interest::READABLE) {
        Some(fd) => StdStream::Reactor(fd),
        None => StdStream::Threads(tokio::io::stdin()),
    }
}

/// This process's stdout as an async stream, in the mode it came in. Nothing is buffered:
/// what a write accepted has been handed to the descriptor (reactor) or to its thread.
pub fn stdout() -> StdStream<tokio::io::Stdout> {
    match NonBlocking::new(io::stdout().as_fd(), Interest::WRITABLE) {
        Some(fd) => StdStream::Reactor(fd),
        None => StdStream::Threads(tokio::io::stdout()),
    }
}

/// One of this process's standard descriptors as an async stream.
#[derive(Debug)]
pub enum StdStream<B> {
    /// Non-blocking: driven by the reactor.
    Reactor(NonBlocking),
    /// Blocking (or not one the reactor can watch, such as a regular file, which never
    /// returns `EAGAIN`): tokio's stream on blocking threads.
    Threads(B),
}

impl<B: AsyncRead + Unpin> AsyncRead for StdStream<B> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StdStream::Reactor(fd) => Pin::new(fd).poll_read(cx, buf),
            StdStream::Threads(b) => Pin::new(b).poll_read(cx, buf),
        }
    }
}

impl<B: AsyncWrite + Unpin> AsyncWrite for StdStream<B> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StdStream::Reactor(fd) => Pin::new(fd).poll_write(cx, buf),
            StdStream::Threads(b) => Pin::new(b).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StdStream::Reactor(fd) => Pin::new(fd).poll_flush(cx),
            StdStream::Threads(b) => Pin::new(b).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StdStream::Reactor(fd) => Pin::new(fd).poll_shutdown(cx),
            StdStream::Threads(b) => Pin::new(b).poll_shutdown(cx),
        }
    }
}

/// A non-blocking descriptor driven by the reactor. It holds a duplicate: dropping it closes
/// only the duplicate, so the original (e.g. fd 1) stays open until the process exits, as
/// tokio's stdin and stdout leave it.
#[derive(Debug)]
pub struct NonBlocking(AsyncFd<File>);

impl NonBlocking {
    /// `fd` (duplicated) as a reactor-driven stream, if it is non-blocking and the reactor
    /// can watch it (a pipe, socket or terminal); `None` if it is blocking, if epoll refuses
    /// it, or outside a tokio runtime.
    pub fn new(fd: BorrowedFd<'_>, interest: Interest) -> Option<NonBlocking> {
        if !is_non_blocking(fd) {
            return None;
        }
        tokio::runtime::Handle::try_current().ok()?;
        let file = File::from(fd.try_clone_to_owned().ok()?);
        // SAFETY: the AsyncFd owns `file`, so its descriptor stays open, on the same file
        // description, and is what `as_raw_fd` returns for as long as the AsyncFd lives.
        let registered = unsafe { AsyncFd::register_with_interest(file, interest) };
        registered.ok().map(NonBlocking)
    }
}

impl AsyncRead for NonBlocking {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            // `try_io` clears the readiness on EAGAIN; the loop then waits for the next.
            match ready.try_io(|fd| again_on_eintr(|| fd.get_ref().read(unfilled))) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for NonBlocking {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut ready = ready!(self.0.poll_write_ready(cx))?;
            match ready.try_io(|fd| again_on_eintr(|| fd.get_ref().write(buf))) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Nothing to do: like tokio's stdout, shutting down leaves the descriptor open.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Whether `fd`'s file description has `O_NONBLOCK` set (false if it cannot be told, e.g. a
/// closed descriptor).
pub fn is_non_blocking(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)
        .is_ok_and(|flags| OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK))
}

fn again_on_eintr<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Wait in poll(2) until `fd` has one of `events` (or an error or hang-up, which the next
/// read or write reports).
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags) -> io::Result<()> {
    loop {
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// read(2) from `fd` as a blocking read behaves, whatever the descriptor's mode: `EINTR` is
/// retried and `EAGAIN` waited out. `Ok(0)` is the end of input. For threads of their own,
/// not the runtime's.
pub fn read_waiting(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    loop {
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => wait_for(fd, PollFlags::POLLIN)?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Write all of `buf` to `fd` as a blocking write behaves, whatever the descriptor's mode:
/// `EINTR` is retried and `EAGAIN` waited out. For threads of their own, not the runtime's.
pub fn write_all_waiting(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => wait_for(fd, PollFlags::POLLOUT)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Write `text` to stderr in one go, waiting for room if stderr is non-blocking and full.
/// Errors are dropped (a server's stderr may have gone with its peer): a diagnostic must not
/// turn an exit into a panic.
pub fn write_stderr(text: &str) {
    let _ = write_all_waiting(io::stderr().as_fd(), text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn the_mode_is_read_not_changed() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        assert!(!is_non_blocking(a.as_fd()));
        a.set_nonblocking(true).expect("O_NONBLOCK");
        assert!(is_non_blocking(a.as_fd()));
    }

    #[test]
    fn blocking_style_calls_wait_out_eagain() {
        // Far more than a socket buffer, read slowly: the writer meets EAGAIN many times.
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("O_NONBLOCK");
        b.set_nonblocking(true).expect("O_NONBLOCK");
        let data = pattern(4 << 20);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 50_000];
            loop {
                std::thread::sleep(std::time::Duration::from_micros(200));
                match read_waiting(b.as_fd(), &mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read: {e}"),
                }
            }
        });
        write_all_waiting(a.as_fd(), &data).expect("write");
        drop(a);
        assert!(reader.join().expect("reader") == data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn non_blocking_descriptors_stream_through_the_reactor() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("O_NONBLOCK");
        b.set_nonblocking(true).expect("O_NONBLOCK");
        let mut w = NonBlocking::new(a.as_fd(), Interest::WRITABLE).expect("writer");
        let mut r = NonBlocking::new(b.as_fd(), Interest::READABLE).expect("reader");
        // The streams hold duplicates: closing these ends is up to the streams.
        drop((a, b));
        let data = pattern(4 << 20);
        let writer = tokio::spawn({
            let data = data.clone();
            async move {
                w.write_all(&data).await.expect("write");
                w.flush().await.expect("flush");
            }
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while got.len() < data.len() {
            // A slow reader: the writer's buffer fills, it waits for room.
            tokio::time::sleep(std::time::Duration::from_micros(100)).await;
            let n = r.read(&mut buf).await.expect("read");
            assert!(n > 0, "early end after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.expect("writer task");
        assert!(got == data);
    }

    #[tokio::test]
    async fn blocking_descriptors_stay_on_threads() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        assert!(NonBlocking::new(a.as_fd(), Interest::READABLE).is_none());
    }
}
