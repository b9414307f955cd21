//! Running a command: [`NativeLogin::exec`] opens a session and one `exec` channel on it, and
//! [`NativeConnection`] is that channel as a one-stream [`Connection`] — the channel's data is
//! the stream, the remote's stderr is copied to ours, and the exit status comes back from
//! [`Connection::close`].
//!
//! What it owns: the exec request and its reply, moving the channel's messages (`pump`), the
//! stream's reading and writing halves (EOF sent once, on shutdown or close), and closing: EOF,
//! the exit status or signal, the disconnect. What it does not own: opening and authenticating
//! the connection (`session`, `auth`) or quoting the command (the caller).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use arsync_core::transport::{BoxFuture, Capabilities, Connection, StreamPair, TransportError};
use bytes::Bytes;
use russh::client;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::login::NativeLogin;
use super::session::{open_session, Session};
use super::{connect_error, lock};
use crate::held_stderr::HeldStderr;

/// How long [`Connection::close`] waits for the server to end the session after the disconnect.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// Data messages buffered between the SSH session and the stream's reader.
const RECV_QUEUE: usize = 64;

impl NativeLogin {
    /// Open a new connection, authenticate, and run `command` (one remote shell command line,
    /// already quoted) in an `exec` channel.
    pub async fn exec(&self, command: &str) -> Result<NativeConnection, TransportError> {
        self.exec_running(command, "").await
    }

    /// [`NativeLogin::exec`] of a command that runs `program`: a shell's "command not found"
    /// for it is held back from our stderr and given in the error of an exit 127 (see
    /// [`crate::held_stderr`]).
    pub async fn exec_running(
        &self,
        command: &str,
        program: &str,
    ) -> Result<NativeConnection, TransportError> {
        let session = open_session(&self.hop, &self.shared).await?;
        let target = self.target();
        let lost = |e: russh::Error| TransportError::unreachable(&target, "SSH session", e);
        let channel = session.handle.channel_open_session().await.map_err(lost)?;
        let (read_half, write_half) = channel.split();
        let (data_tx, data_rx) = mpsc::channel(RECV_QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let discard = Arc::new(Notify::new());
        let pump = tokio::spawn(pump(
            read_half,
            data_tx,
            reply_tx,
            discard.clone(),
            target.clone(),
            HeldStderr::new(program),
        ));
        write_half
            .exec(true, command.as_bytes().to_vec())
            .await
            .map_err(lost)?;
        match reply_rx.await {
            Ok(true) => {}
            Ok(false) => {
                return Err(connect_error(
                    target,
                    format!("the server refused to run {command:?}"),
                ))
            }
            Err(_) => {
                pump.abort();
                return Err(connect_error(
                    target,
                    "the connection closed before the command started",
                ));
            }
        }
        let eof_sent = Arc::new(AtomicBool::new(false));
        let stream = StreamPair {
            send: Box::new(ChannelWriter {
                inner: write_half.make_writer(),
                eof_sent: eof_sent.clone(),
            }),
            recv: Box::new(ChannelReader {
                rx: data_rx,
                cur: Bytes::new(),
                done: false,
            }),
        };
        Ok(NativeConnection {
            stream: Mutex::new(Some(stream)),
            running: tokio::sync::Mutex::new(Some(Running {
                session,
                write_half,
                pump,
                discard,
                eof_sent,
            })),
            command: command.to_owned(),
            target,
        })
    }
}

/// One SSH connection with one exec channel: a [`Connection`] yielding exactly one stream (the
/// channel's stdin/stdout; the remote's stderr is copied to ours). [`Connection::close`] sends
/// EOF, waits for the exit status and reports a non-zero one as
/// [`TransportError::PeerExited`] (`code: Some(n)`; a signal gives `code: None`); a lost
/// connection is [`TransportError::Closed`].
pub struct NativeConnection {
    stream: Mutex<Option<StreamPair>>,
    running: tokio::sync::Mutex<Option<Running>>,
    command: String,
    target: String,
}

struct Running {
    session: Session,
    write_half: ChannelWriteHalf<client::Msg>,
    pump: JoinHandle<ExitInfo>,
    discard: Arc<Notify>,
    eof_sent: Arc<AtomicBool>,
}

impl fmt::Debug for NativeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeConnection")
            .field("target", &self.target)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl NativeConnection {
    /// `host:port` connected to.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn take(&self) -> Result<StreamPair, TransportError> {
        lock(&self.stream)
            .take()
            .ok_or(TransportError::Unsupported {
                transport: "ssh".into(),
                what: "a second stream on one SSH connection",
            })
    }
}

impl Connection for NativeConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move { self.take() })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move { self.take() })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream().with_encrypted(true)
    }

    /// Issue 16, native login: the TCP connection's `TCP_INFO` (a direct connection only; not
    /// while closing).
    fn path_stats(&self) -> Option<arsync_core::transport::PathStats> {
        self.running.try_lock().ok()?.as_ref()?.session.path_stats()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            lock(&self.stream).take();
            let Some(running) = self.running.lock().await.take() else {
                return Ok(());
            };
            if !running.eof_sent.swap(true, Ordering::SeqCst) {
                // Fails only if the channel is already gone; the exit status says the rest.
                let _ = running.write_half.eof().await;
            }
            // Whatever the reader has not taken is dropped, so the pump never blocks on it.
            running.discard.notify_one();
            let info = running.pump.await.unwrap_or_default();
            let Session { handle, _carrier } = running.session;
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            // Let the disconnect reach the server before a proxy command is hung up on, so
            // that nothing is left waiting on the far side.
            let _ = tokio::time::timeout(CLOSE_GRACE, handle).await;
            drop(_carrier);
            if info.status == Some(127) {
                return Err(TransportError::PeerExited {
                    command: self.command.clone(),
                    status: "exit status: 127".to_owned(),
                    code: Some(127),
                    said: info.held,
                });
            }
            crate::held_stderr::show(&info.held);
            if let Some(status) = info.status {
                if status == 0 {
                    return Ok(());
                }
                return Err(TransportError::PeerExited {
                    command: self.command.clone(),
                    status: format!("exit status: {status}"),
                    code: Some(i32::try_from(status).unwrap_or(i32::MAX)),
                    said: Vec::new(),
                });
            }
            if let Some(signal) = info.signal {
                return Err(TransportError::PeerExited {
                    command: self.command.clone(),
                    status: signal,
                    code: None,
                    said: Vec::new(),
                });
            }
            if info.closed {
                // Closed without a status (some servers do): nothing says it failed.
                return Ok(());
            }
            Err(TransportError::Closed)
        })
    }
}

/// How the remote command ended, as the channel told.
#[derive(Debug, Default)]
struct ExitInfo {
    status: Option<u32>,
    signal: Option<String>,
    /// Lines held back from our stderr ("command not found" for the program).
    held: Vec<String>,
    /// The channel was closed properly (not cut with the connection).
    closed: bool,
}

/// Move the channel's messages where they belong: data to the stream's reader, extended data
/// to our stderr, the exec reply and the exit status to the connection.
async fn pump(
    mut rx: ChannelReadHalf,
    data: mpsc::Sender<io::Result<Bytes>>,
    reply: oneshot::Sender<bool>,
    discard: Arc<Notify>,
    target: String,
    mut held: HeldStderr,
) -> ExitInfo {
    let mut info = ExitInfo::default();
    let mut reply = Some(reply);
    let mut data = Some(data);
    let mut stderr = tokio::io::stderr();
    let mut eof = false;
    loop {
        let Some(msg) = rx.wait().await else {
            if !eof {
                if let Some(d) = data.take() {
                    let lost = io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("SSH connection to {target} lost"),
                    );
                    let _ = d.try_send(Err(lost));
                }
            }
            break;
        };
        match msg {
            ChannelMsg::Success => {
                if let Some(r) = reply.take() {
                    let _ = r.send(true);
                }
            }
            ChannelMsg::Failure => {
                if let Some(r) = reply.take() {
                    let _ = r.send(false);
                }
            }
            ChannelMsg::Data { data: bytes } => {
                if let Some(d) = &data {
                    let delivered = tokio::select! {
                        r = d.send(Ok(bytes)) => r.is_ok(),
                        () = discard.notified() => false,
                    };
                    if !delivered {
                        data = None;
                    }
                }
            }
            ChannelMsg::ExtendedData { data: bytes, .. } => {
                let _ = stderr.write_all(&held.feed(&bytes)).await;
                let _ = stderr.flush().await;
            }
            ChannelMsg::Eof => {
                eof = true;
                data = None;
            }
            ChannelMsg::ExitStatus { exit_status } => info.status = Some(exit_status),
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                ..
            } => {
                let mut s = format!("killed by signal {signal_name:?}");
                if core_dumped {
                    s.push_str(" (core dumped)");
                }
                if !error_message.is_empty() {
                    s.push_str(&format!(": {error_message}"));
                }
                info.signal = Some(s);
            }
            ChannelMsg::Close => {
                info.closed = true;
                break;
            }
            _ => {}
        }
    }
    let (rest, lines) = held.finish();
    let _ = stderr.write_all(&rest).await;
    info.held = lines;
    info
}

/// The stream's receiving half: the channel's data, in order.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    done: bool,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.cur.is_empty() {
                let n = buf.remaining().min(this.cur.len());
                buf.put_slice(&this.cur.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok(bytes)) => this.cur = bytes,
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Err(e));
                }
                None => {
                    this.done = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// The stream's sending half: the channel's data; shutting it down sends EOF (once).
struct ChannelWriter<W> {
    inner: W,
    eof_sent: Arc<AtomicBool>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ChannelWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.eof_sent.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        self.eof_sent.store(true, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}
