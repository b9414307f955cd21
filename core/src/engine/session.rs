//! Frames over a stream: the thin async driver around [`crate::proto::merkle`]'s codec.
//!
//! [`FrameSink`] is a cloneable handle that queues encoded frames for one writer task (so
//! concurrent file tasks never interleave inside a frame); [`FrameSource`] reads and decodes.
//! Both count the bytes that really crossed the stream into the run's [`Stats`].
//!
//! Timeouts (`--timeout`): a [`FrameSource`] given one fails with [`SyncError::Timeout`] when
//! the peer sends nothing for that long while it waits; the peer's hello then carries
//! `keepalive` with the number of seconds, and our writer sends [`Frame::KeepAlive`]
//! when it has been quiet for a third of that while this process works
//! ([`crate::liveness`]): a busy side is never timed out, a stuck one always is.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::stats::Stats;
use crate::error::SyncError;
use crate::liveness;
use crate::proto::merkle::{encode_compressed, Caps, Frame, FrameDecoder, PROTOCOL_VERSION};
use crate::transport::{Connection, RecvStream, SendStream};

/// How many bytes of file data from blocking threads may wait for the writer.
const DATA_CREDIT: usize = 16 << 20;
/// Coalesce queued frames into writes of about this size.
const COALESCE: usize = 256 * 1024;

/// A cloneable handle for sending frames.
#[derive(Debug, Clone)]
pub struct FrameSink {
    /// One queue, in order, for every frame: a role's own loop never waits to queue (it
    /// must keep reading, or two peers that both write could each wait for the other), and
    /// what it queues is bounded by what it read; file data from blocking threads waits for
    /// `credit` instead.
    tx: mpsc::UnboundedSender<(Vec<u8>, usize)>,
    credit: Arc<Credit>,
    /// zstd level for compressible frames, or [`NO_COMPRESSION`]; shared by every clone.
    level: Arc<AtomicI32>,
    /// Send a keepalive after this many quiet milliseconds while working (0: never); shared
    /// with the writer task.
    keepalive: Arc<KeepaliveEvery>,
    /// `--timeout` for writes, in seconds (0: none): a peer that takes nothing for this long
    /// ends the session.
    write_timeout: Arc<AtomicU64>,
    /// Why the writer task stopped, for every sender that finds the queue closed.
    failure: Arc<std::sync::OnceLock<WriterFailure>>,
    /// Watches the frames made on blocking threads ([`FrameOut`]); shared by clones and lanes.
    observer: Arc<ObserverSlot>,
}

/// Where a sink's [`FrameObserver`] goes, once set.
#[derive(Default)]
struct ObserverSlot(std::sync::OnceLock<FrameObserver>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "observed"
        } else {
            "unobserved"
        })
    }
}

/// Something that watches the frames a role sends as they are made (the sender's progress
/// for a pushing client); called on the thread that makes them.
pub type FrameObserver = Arc<dyn Fn(&Frame) + Send + Sync>;

/// Why a stream's writer task stopped writing.
#[derive(Debug, Clone)]
enum WriterFailure {
    /// `--timeout` seconds without the peer taking anything.
    Timeout(u64),
    /// The write failed.
    Io(std::io::ErrorKind, String),
}

impl WriterFailure {
    fn of(e: &SyncError) -> Self {
        match e {
            SyncError::Timeout(s) => WriterFailure::Timeout(*s),
            SyncError::StreamIo(io) => WriterFailure::Io(io.kind(), io.to_string()),
            other => WriterFailure::Io(std::io::ErrorKind::Other, other.to_string()),
        }
    }

    fn to_error(&self) -> SyncError {
        match self {
            WriterFailure::Timeout(s) => SyncError::Timeout(*s),
            WriterFailure::Io(kind, m) => {
                SyncError::StreamIo(std::io::Error::new(*kind, m.clone()))
            }
        }
    }
}

const NO_COMPRESSION: i32 = i32::MIN;

/// How long a failed session still tries to tell the peer why.
const ERROR_GRACE: Duration = Duration::from_secs(2);

/// How often a quiet, working writer sends a keepalive (0: never), and a wake-up for a
/// writer already waiting when that changes.
#[derive(Debug, Default)]
struct KeepaliveEvery {
    ms: AtomicU64,
    changed: tokio::sync::Notify,
}

/// The writer task's handle; await it after dropping every [`FrameSink`].
#[derive(Debug)]
pub struct FrameWriterTask(JoinHandle<Result<(), SyncError>>);

impl FrameWriterTask {
    /// Wait until every queued frame is written and the stream is shut down.
    pub async fn finish(self) -> Result<(), SyncError> {
        match self.0.await {
            Ok(r) => r,
            Err(e) => Err(SyncError::Job(e)),
        }
    }

    /// Like [`FrameWriterTask::finish`], for at most `limit`; a writer still blocked on a
    /// peer that takes nothing is then stopped.
    pub async fn finish_within(mut self, limit: Duration) -> Result<(), SyncError> {
        match tokio::time::timeout(limit, &mut self.0).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(SyncError::Job(e)),
            Err(_) => {
                self.0.abort();
                Err(SyncError::StreamIo(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer took nothing more",
                )))
            }
        }
    }
}

/// Start the writer task for `send`.
pub fn frame_writer(mut send: SendStream, stats: Arc<Stats>) -> (FrameSink, FrameWriterTask) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Vec<u8>, usize)>();
    let credit = Arc::new(Credit::new(DATA_CREDIT));
    let returned = credit.clone();
    let keepalive = Arc::new(KeepaliveEvery::default());
    let every = keepalive.clone();
    let write_timeout = Arc::new(AtomicU64::new(0));
    let limit = write_timeout.clone();
    let failure: Arc<std::sync::OnceLock<WriterFailure>> = Arc::default();
    let failed = failure.clone();
    let task = tokio::spawn(async move {
        let result = write_frames(&mut send, &mut rx, &returned, &stats, &every, &limit).await;
        // Nothing more will be written: no data producer may wait for credit any longer.
        returned.close();
        if let Err(e) = &result {
            let _ = failed.set(WriterFailure::of(e));
        }
        result
    });
    (
        FrameSink {
            tx,
            credit,
            level: Arc::new(AtomicI32::new(NO_COMPRESSION)),
            keepalive,
            write_timeout,
            failure,
            observer: Arc::default(),
        },
        FrameWriterTask(task),
    )
}

/// The writer task's loop: coalesce queued frames into large writes, send keepalives while
/// quiet and working, bound each write by the write timeout.
async fn write_frames(
    send: &mut SendStream,
    rx: &mut mpsc::UnboundedReceiver<(Vec<u8>, usize)>,
    credit: &Credit,
    stats: &Stats,
    every: &KeepaliveEvery,
    limit: &AtomicU64,
) -> Result<(), SyncError> {
    let mut work_seen = liveness::work();
    loop {
        let quiet = Duration::from_millis(every.ms.load(Relaxed));
        let next = if quiet.is_zero() {
            // No keepalives yet; they may be switched on at any time (after the hello).
            tokio::select! {
                next = rx.recv() => next,
                () = every.changed.notified() => continue,
            }
        } else {
            match tokio::time::timeout(quiet, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    // Quiet for a while: say we are alive if we have been working.
                    let now = liveness::work();
                    if now != work_seen {
                        work_seen = now;
                        let mut ka = Vec::new();
                        Frame::KeepAlive.encode(&mut ka);
                        Some((ka, 0))
                    } else {
                        continue;
                    }
                }
            }
        };
        let Some((mut buf, mut held)) = next else {
            break;
        };
        while buf.len() < COALESCE {
            match rx.try_recv() {
                Ok((more, c)) => {
                    buf.extend_from_slice(&more);
                    held += c;
                }
                Err(_) => break,
            }
        }
        let _w = liveness::waiting(format!(
            "stream writer: waiting for the peer to take {} bytes",
            buf.len()
        ));
        let write = async {
            send.write_all(&buf).await?;
            // Pipes such as stdout buffer; the peer must see each batch now.
            send.flush().await
        };
        match limit.load(Relaxed) {
            0 => write.await.map_err(SyncError::StreamIo)?,
            secs => tokio::time::timeout(Duration::from_secs(secs), write)
                .await
                .map_err(|_| SyncError::Timeout(secs))?
                .map_err(SyncError::StreamIo)?,
        }
        stats.bytes_sent.fetch_add(buf.len() as u64, Relaxed);
        credit.give_back(held);
    }
    send.flush().await.map_err(SyncError::StreamIo)?;
    send.shutdown().await.map_err(SyncError::StreamIo)?;
    Ok(())
}

impl FrameSink {
    /// Compress file data and lists from now on (zstd `level`), or stop (`None`).
    pub fn set_compression(&self, level: Option<i32>) {
        self.level.store(level.unwrap_or(NO_COMPRESSION), Relaxed);
    }

    /// Compress exactly as `other` does, now and later, and share its frame observer (a lane
    /// follows its control stream).
    pub fn share_compression(&mut self, other: &FrameSink) {
        self.level = other.level.clone();
        self.observer = other.observer.clone();
    }

    /// Let `observer` watch every frame made through a [`FrameOut`] on this sink, its clones
    /// and the lanes that share its compression (set once).
    pub fn observe(&self, observer: FrameObserver) {
        let _ = self.observer.0.set(observer);
    }

    /// End the session when the peer takes nothing for `seconds` (`--timeout`; `None`: wait).
    pub fn set_write_timeout(&self, seconds: Option<u64>) {
        self.write_timeout.store(seconds.unwrap_or(0), Relaxed);
    }

    /// Keep a peer with a `--timeout` of `peer_timeout` seconds from timing out while this
    /// side works: a keepalive after a third of it without other frames.
    pub fn set_keepalive(&self, peer_timeout: Option<u64>) {
        let ms = peer_timeout.map_or(0, |s| (s.saturating_mul(1000) / 3).max(100));
        self.keepalive.ms.store(ms, Relaxed);
        self.keepalive.changed.notify_one();
    }

    /// Append `frame` to `out` as this sink sends it (compressed where that was negotiated).
    pub fn encode(&self, frame: &Frame, out: &mut Vec<u8>) {
        match self.level.load(Relaxed) {
            NO_COMPRESSION => frame.encode(out),
            level => encode_compressed(frame, out, level),
        }
    }

    /// Queue one frame.
    pub async fn send(&self, frame: &Frame) -> Result<(), SyncError> {
        let mut buf = Vec::new();
        self.encode(frame, &mut buf);
        self.send_encoded(buf).await
    }

    /// Queue already-encoded frames, never waiting: for a role's own loop, whose frames are
    /// bounded by what it reads.
    pub async fn send_encoded(&self, buf: Vec<u8>) -> Result<(), SyncError> {
        self.tx.send((buf, 0)).map_err(|_| self.closed())
    }

    /// Queue one frame from a blocking thread (file data): waits while too much data waits
    /// for the writer.
    pub fn blocking_send(&self, frame: &Frame) -> Result<(), SyncError> {
        let mut buf = Vec::new();
        self.encode(frame, &mut buf);
        self.blocking_send_encoded(buf)
    }

    /// Queue already-encoded frames from a blocking thread, as [`FrameSink::blocking_send`].
    pub fn blocking_send_encoded(&self, buf: Vec<u8>) -> Result<(), SyncError> {
        self.blocking_send_encoded_within(buf, usize::MAX)
    }

    /// Queue already-encoded frames from a blocking thread once at most `queued` bytes of
    /// earlier frames still wait for the writer: a file list sent in bursts (issue 18) is then
    /// encoded as fast as it is written, not held encoded in the queue up to the whole credit.
    pub fn blocking_send_encoded_within(
        &self,
        buf: Vec<u8>,
        queued: usize,
    ) -> Result<(), SyncError> {
        if buf.is_empty() {
            return Ok(());
        }
        let held = self
            .credit
            .take_within(buf.len(), queued)
            .ok_or_else(|| self.closed())?;
        self.tx.send((buf, held)).map_err(|_| self.closed())
    }

    /// The writer is gone: why (its own error, such as a timeout), else "closed".
    fn closed(&self) -> SyncError {
        self.failure
            .get()
            .map_or_else(closed, WriterFailure::to_error)
    }
}

fn closed() -> SyncError {
    SyncError::StreamIo(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "connection closed",
    ))
}

/// Bytes of data that may wait for a stream's writer: blocking producers take some before
/// queuing, the writer gives them back once written.
#[derive(Debug)]
struct Credit {
    left: std::sync::Mutex<(usize, bool)>,
    freed: std::sync::Condvar,
    cap: usize,
}

impl Credit {
    fn new(cap: usize) -> Self {
        Credit {
            left: std::sync::Mutex::new((cap, false)),
            freed: std::sync::Condvar::new(),
            cap,
        }
    }

    /// Wait for `n` bytes of credit (a frame larger than the whole credit waits for all of
    /// it), and until at most `queued` bytes are taken and not given back (`usize::MAX`: the
    /// whole credit may be); how much was taken, or `None` once the writer is gone.
    fn take_within(&self, n: usize, queued: usize) -> Option<usize> {
        let n = n.min(self.cap);
        let need = (self.cap - queued.min(self.cap)).max(n);
        let mut g = self.left.lock().ok()?;
        let _w =
            (g.0 < need).then(|| liveness::waiting("stream: waiting for the writer to catch up"));
        while g.0 < need && !g.1 {
            g = self.freed.wait(g).ok()?;
        }
        if g.1 {
            return None;
        }
        g.0 -= n;
        Some(n)
    }

    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        if let Ok(mut g) = self.left.lock() {
            g.0 = (g.0 + n).min(self.cap);
        }
        self.freed.notify_all();
    }

    /// The writer stopped: wake and refuse every waiting producer.
    fn close(&self) {
        if let Ok(mut g) = self.left.lock() {
            g.1 = true;
        }
        self.freed.notify_all();
    }
}

/// Frames made on a blocking thread, handed to the stream's writer in large writes (one queue
/// operation and one wake-up per megabyte, not per frame). [`FrameOut::finish`] hands over
/// the rest.
#[derive(Debug)]
pub struct FrameOut<'s> {
    sink: &'s FrameSink,
    buf: Vec<u8>,
}

/// A [`FrameOut`] hands its frames over once this many bytes are waiting.
const OUT_FLUSH: usize = 1 << 20;

impl<'s> FrameOut<'s> {
    /// Frames for `sink`.
    pub fn new(sink: &'s FrameSink) -> Self {
        FrameOut {
            sink,
            buf: Vec::new(),
        }
    }

    /// Add one frame (encoded as the sink sends it).
    pub fn push(&mut self, frame: &Frame) -> Result<(), SyncError> {
        if let Some(watch) = self.sink.observer.0.get() {
            watch(frame);
        }
        self.sink.encode(frame, &mut self.buf);
        if self.buf.len() >= OUT_FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    /// Hand over what is waiting (before a pause, such as a rate limit's).
    pub fn flush(&mut self) -> Result<(), SyncError> {
        self.sink
            .blocking_send_encoded(std::mem::take(&mut self.buf))
    }

    /// Hand over the rest.
    pub fn finish(mut self) -> Result<(), SyncError> {
        self.flush()
    }
}

/// Reads and decodes frames from a stream.
pub struct FrameSource {
    recv: RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    stats: Arc<Stats>,
    /// `--timeout`: the longest wait for the peer's next bytes.
    timeout: Option<Duration>,
    /// Who reads, for the wait board ("receiver", "sender").
    role: &'static str,
    /// Issue 15: where the peer's `Info` frames go instead of to the reader (a receiving
    /// client printing a sending server's notices).
    notices: Option<Arc<dyn crate::engine::event::EventSink>>,
}

impl std::fmt::Debug for FrameSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSource").finish_non_exhaustive()
    }
}

impl FrameSource {
    /// Read from `recv`.
    pub fn new(recv: RecvStream, stats: Arc<Stats>) -> Self {
        FrameSource {
            recv,
            decoder: FrameDecoder::new(),
            buf: vec![0; 256 * 1024],
            stats,
            timeout: None,
            role: "peer",
            notices: None,
        }
    }

    /// Issue 15: give the peer's `Info` frames to `sink` as notices (`Event::Notice`) from now
    /// on, wherever they come, instead of returning them.
    pub fn print_notices(&mut self, sink: Arc<dyn crate::engine::event::EventSink>) {
        self.notices = Some(sink);
    }

    /// Fail with [`SyncError::Timeout`] when the peer sends nothing for `seconds` while a
    /// frame is awaited (`None`: wait for ever).
    pub fn set_timeout(&mut self, seconds: Option<u64>) {
        self.timeout = seconds.filter(|s| *s > 0).map(Duration::from_secs);
    }

    /// Name the reading role on the wait board.
    pub fn set_role(&mut self, role: &'static str) {
        self.role = role;
    }

    /// The next frame; `None` at a clean end of stream. A peer's [`Frame::Error`] becomes
    /// [`SyncError::Remote`]; keepalives are taken and skipped.
    pub async fn next(&mut self) -> Result<Option<Frame>, SyncError> {
        self.next_waiting("the next frame").await
    }

    async fn next_waiting(&mut self, what: &str) -> Result<Option<Frame>, SyncError> {
        let mut board: Option<liveness::Waiting> = None;
        loop {
            match self.decoder.next_frame()? {
                Some(Frame::Error { code, message }) => {
                    return Err(SyncError::Remote { code, message })
                }
                Some(Frame::KeepAlive) => continue,
                Some(Frame::Info(message)) if self.notices.is_some() => {
                    if let Some(sink) = &self.notices {
                        sink.event(crate::engine::event::Event::Notice { message });
                    }
                    continue;
                }
                Some(f) => return Ok(Some(f)),
                None => {}
            }
            if board.is_none() {
                board = Some(liveness::waiting(format!(
                    "{}: waiting for {what} from the peer",
                    self.role
                )));
            }
            let read = self.recv.read(&mut self.buf);
            let n = match self.timeout {
                None => read.await,
                Some(t) => tokio::time::timeout(t, read)
                    .await
                    .map_err(|_| SyncError::Timeout(t.as_secs()))?,
            }
            .map_err(SyncError::StreamIo)?;
            if n == 0 {
                if self.decoder.pending() > 0 {
                    return Err(SyncError::StreamIo(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a frame",
                    )));
                }
                return Ok(None);
            }
            self.stats.bytes_received.fetch_add(n as u64, Relaxed);
            self.decoder.push(&self.buf[..n]);
        }
    }

    /// Accept compressed frames (this side advertised `compress`).
    pub fn accept_compressed(&mut self, on: bool) {
        self.decoder.accept_compressed(on);
    }

    /// Whether a whole frame is already buffered (the next [`FrameSource::next`] will not
    /// wait for the peer).
    pub fn has_buffered_frame(&self) -> bool {
        self.decoder.has_frame()
    }

    /// The next frame, where the protocol requires one.
    pub async fn expect(&mut self, what: &'static str) -> Result<Frame, SyncError> {
        self.next_waiting(what).await?.ok_or_else(|| {
            SyncError::StreamIo(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed while waiting for {what}"),
            ))
        })
    }
}

/// Open (or accept) the role's stream, run `body` with a frame sink and source over it, tell
/// the peer if `body` failed, and wait until everything queued is written.
pub async fn run_framed<Fut>(
    conn: &dyn Connection,
    open: bool,
    stats: Arc<Stats>,
    body: impl FnOnce(FrameSink, FrameSource) -> Fut,
) -> Result<(), SyncError>
where
    Fut: std::future::Future<Output = Result<(), SyncError>>,
{
    let pair = if open {
        conn.open_stream().await?
    } else {
        conn.accept_stream().await?
    };
    let (sink, writer) = frame_writer(pair.send, stats.clone());
    let source = FrameSource::new(pair.recv, stats);
    let result = body(sink.clone(), source).await;
    if let Err(e) = &result {
        // Tell the peer why, if it still takes anything: a peer that stopped reading is not
        // waited for.
        let error = Frame::Error {
            code: e.exit_code().code() as u8,
            message: e.to_string(),
        };
        let _ = tokio::time::timeout(ERROR_GRACE, sink.send(&error)).await;
        drop(sink);
        let _ = writer.finish_within(ERROR_GRACE).await;
        return result;
    }
    drop(sink);
    let written = writer.finish().await;
    result.and(written)
}

/// A token naming this process on this boot: two roles that present the same token share the
/// filesystem view.
pub fn shared_fs_token() -> Vec<u8> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{}:{}", boot.trim(), std::process::id()).into_bytes()
}

/// After the hellos: compress what this side sends if both asked for it, and accept compressed
/// frames if this side asked.
pub fn apply_compression(
    sink: &FrameSink,
    source: &mut FrameSource,
    level: Option<i32>,
    peer: &Caps,
) {
    sink.set_compression(level.filter(|_| peer.compress));
    source.accept_compressed(level.is_some());
}

/// The `keepalive` capability value for `--timeout=seconds`, if any.
pub fn keepalive_cap(timeout: Option<u64>) -> Option<u32> {
    timeout
        .filter(|s| *s > 0)
        .map(|s| s.min(u64::from(u32::MAX)) as u32)
}

/// Set up `--timeout` on both directions of a session after the hellos: our reads time out
/// after `ours` seconds of silence, and we keep a peer that asked for keepalives from timing
/// out while we work.
pub fn apply_timeouts(sink: &FrameSink, source: &mut FrameSource, ours: Option<u64>, peer: &Caps) {
    source.set_timeout(ours);
    sink.set_write_timeout(ours);
    sink.set_keepalive(peer.keepalive.map(u64::from).filter(|s| *s > 0));
}

/// Exchange hellos: send ours, read theirs (its capabilities typed), check the version.
pub async fn exchange_hello(
    sink: &FrameSink,
    source: &mut FrameSource,
    ours: &Caps,
) -> Result<Caps, SyncError> {
    sink.send(&Frame::Hello(ours.hello(PROTOCOL_VERSION)))
        .await?;
    match source.expect("hello").await? {
        Frame::Hello(h) if h.version >= 1 => Ok(Caps::from_hello(&h)),
        Frame::Hello(h) => Err(SyncError::Incompatible(format!(
            "peer speaks protocol version {}, we need at least 1",
            h.version
        ))),
        other => Err(SyncError::Peer(crate::proto::DecodeError::invalid(
            "first frame",
            format!("expected hello, got {other:?}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// Issue 18: a list burst waits while more than `queued` bytes wait for the writer, and
    /// goes once the writer has given enough back; a closed credit refuses it.
    #[test]
    fn a_bounded_take_waits_for_the_queue_to_drain() {
        let c = Arc::new(Credit::new(100));
        assert_eq!(c.take_within(30, 50), Some(30));
        assert_eq!(c.take_within(30, 50), Some(30), "30 queued, at most 50");
        // 60 queued: the next burst waits (a plain take would not: 40 of 100 are left).
        let given = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (c, given) = (c.clone(), given.clone());
            std::thread::spawn(move || {
                let took = c.take_within(30, 50);
                (took, given.load(SeqCst))
            })
        };
        given.store(true, SeqCst);
        c.give_back(30);
        assert_eq!(waiter.join().unwrap(), (Some(30), true));
        c.close();
        assert_eq!(c.take_within(1, 50), None);
    }
}
