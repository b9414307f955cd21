//! The sender role: scan the sources, send the file list, answer data requests.
//!
//! Owns the sender's side of the frame choreography (see `docs/MERKLE_PROTOCOL.md`):
//! hello → file list → for each `Request`, either `LocalPath` (both roles share the filesystem)
//! or `DataBegin`/`Data`…/`DataEnd` with the BLAKE3 of what was sent → `Done`. Reading files runs
//! on blocking threads, several files at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::event::{Event, EventSink, Itemize};
use super::io::RateLimit;
use super::lanes::{self, SenderLanes};
use super::options::SyncOptions;
use super::scan::{absolute, os_error, scan_sources, SourceList};
use super::session::{
    apply_compression, apply_timeouts, exchange_hello, keepalive_cap, run_framed, shared_fs_token,
    FrameOut, FrameSink, FrameSource,
};
use super::stats::Stats;
use super::treelist::{self, serve_tree, NdxMap, TreeParams};
use crate::error::SyncError;
use crate::flist::{FileEntry, FileKind};
use crate::merkle::chunk::{chunk_file, delta_params, ChunkParams};
use crate::merkle::tree::{ChunkTree, DEFAULT_FANOUT_BITS};
use crate::proto::merkle::caps::{Caps, Role};
use crate::proto::merkle::{Frame, MAX_DATA_CHUNK, MAX_FETCH};
use crate::proto::DecodeError;
use crate::transport::Connection;

/// What the sender is asked to send.
#[derive(Clone)]
pub struct SenderJob {
    /// Source arguments, as given (trailing slashes matter).
    pub sources: Vec<PathBuf>,
    /// Options.
    pub opts: SyncOptions,
    /// Counters of this role.
    pub stats: Arc<Stats>,
    /// Where events go.
    pub sink: Arc<dyn EventSink>,
    /// Report each requested file as an item (`<f…`): set when this sender is the client of a
    /// push, whose receiver prints nothing here.
    pub report_items: bool,
}

impl std::fmt::Debug for SenderJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderJob")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// Run the sender over `conn`; `open` says whether this side opens the stream.
pub async fn run_sender(
    conn: &dyn Connection,
    open: bool,
    job: SenderJob,
) -> Result<(), SyncError> {
    let stats = job.stats.clone();
    run_framed(conn, open, stats, |sink, mut source| async move {
        drive(conn, open, &sink, &mut source, job).await
    })
    .await
}

async fn drive(
    conn: &dyn Connection,
    open: bool,
    sink: &FrameSink,
    source: &mut FrameSource,
    job: SenderJob,
) -> Result<(), SyncError> {
    let token = shared_fs_token();
    let shared_capable = conn.capabilities().shared_filesystem && !job.opts.stream_data;
    let lane_offer = (!shared_capable)
        .then(|| lanes::offer(conn, job.opts.streams))
        .flatten();
    let ours = Caps {
        role: Some(Role::Sender),
        delta: true,
        dirtree: Some(TreeParams::sender_cap()),
        report: job.report_items,
        shared_fs: shared_capable.then(|| token.clone()),
        compress: job.opts.compress.is_some(),
        lanes: lane_offer,
        keepalive: keepalive_cap(job.opts.io_timeout),
        ..Caps::default()
    };
    source.set_role("sender");
    // The hello is waited for with the timeout too.
    source.set_timeout(job.opts.io_timeout);
    let peer = exchange_hello(sink, source, &ours).await?;
    apply_timeouts(sink, source, job.opts.io_timeout, &peer);
    let shared = shared_capable && peer.shared_fs.as_ref() == Some(&token);
    apply_compression(sink, source, job.opts.compress.filter(|_| !shared), &peer);
    let lane_count = lanes::agreed(lane_offer, &peer);
    let chunk_avg = peer.chunk_avg;
    let tree = if shared {
        None
    } else {
        TreeParams::negotiate(ours.dirtree, peer.dirtree)
    };

    // Scan on the blocking pool: it fans out over rayon. An rsync adapter asks for `-c`
    // checksums in rsync's algorithm.
    let mut opts = job.opts.clone();
    opts.rsync_sum = peer
        .rsync_sum
        .as_deref()
        .and_then(|n| crate::proto::rsync::checksum::SumKind::from_name(n.as_bytes()));
    let (sources, stats, ev) = (job.sources.clone(), job.stats.clone(), job.sink.clone());
    let scan = tokio::task::spawn_blocking(move || {
        let abs: Vec<PathBuf> = sources.iter().map(|s| absolute(s.as_path())).collect();
        scan_sources(&abs, &opts, &stats, &*ev)
    });
    // The lanes are set up while the sources are scanned.
    let (list, lane_pairs) = tokio::join!(scan, lanes::setup(conn, open, lane_count));
    let list: SourceList =
        list.map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))?;
    let lanes = SenderLanes::new(lane_pairs, &job.stats, sink);
    // Each entry may be asked for once, and again after each lost lane.
    let mut asked: HashMap<(u32, u64), u8> = HashMap::new();
    let mut parts_of: HashMap<u32, usize> = HashMap::new();
    let mut accepted: std::collections::HashSet<u32> = std::collections::HashSet::new();

    let list = Arc::new(list);
    let started = Instant::now();
    let (ndx_map, mut first) = match tree {
        Some(params) => {
            let (map, frame) = serve_tree(sink, source, &list, params, &job.stats).await?;
            (map, Some(frame))
        }
        None => {
            let mut encoded = Vec::new();
            treelist::encode_entries(sink, list.list.entries.iter(), &mut encoded);
            Frame::FileListEnd {
                count: list.list.len() as u32,
            }
            .encode(&mut encoded);
            job.stats
                .flist_size
                .fetch_add(encoded.len() as u64, Relaxed);
            sink.send_encoded(encoded).await?;
            (NdxMap::identity(), None)
        }
    };
    job.stats
        .flist_xfer_us
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);

    let limit = Arc::new(RateLimit::new(if shared { None } else { job.opts.bwlimit }));
    // How many files may be open (begun, not ended) on each stream at once: the receiver's
    // window, which sizes its writers. A sender over it would make the receiver wait for a
    // writer that waits for data queued behind the wait.
    let window = lanes::window(&peer);
    let gates = SendGates::new(
        1 + lanes.count(),
        window,
        job.opts.parallelism(),
        super::options::cores(),
    );
    let mut tasks: JoinSet<Result<(), SyncError>> = JoinSet::new();
    let mut replies = Vec::new();
    let deltas: Arc<Mutex<HashMap<u32, Arc<SenderDelta>>>> = Arc::default();
    // Small whole files asked for, per stream, not yet handed to a reader: one job reads a
    // batch of them and sends their frames in one write.
    let mut small: HashMap<u8, SmallBatch> = HashMap::new();
    // The receiver said `Done`: the batches go out, then the loop ends.
    let mut finished = false;
    loop {
        if finished || !source.has_buffered_frame() || small.values().any(SmallBatch::full) {
            // About to wait for the receiver (or a batch is full): send what was asked.
            for (stream, batch) in small.drain() {
                let (out, alive) = if stream == 0 {
                    (sink.clone(), None)
                } else {
                    match lanes.sink(stream) {
                        Some((s, a)) => (s, Some(a)),
                        None => {
                            sink.send(&Frame::LaneLost { lane: stream }).await?;
                            continue;
                        }
                    }
                };
                let (control, stats, limit) = (sink.clone(), job.stats.clone(), limit.clone());
                let deltas = deltas.clone();
                let label = format!("{} small files", batch.jobs.len()).into_bytes();
                gates.spawn_file(&mut tasks, stream, &label, move || {
                    let sent = run_small_jobs(batch.jobs, &out, &deltas, &stats, &limit);
                    lane_result(sent, alive, stream, &control)
                });
            }
        }
        if finished {
            break;
        }
        let frame = match first.take() {
            Some(f) => f,
            None => source.expect("requests").await?,
        };
        match frame {
            Frame::Request { ndx, iflags } => {
                let full = ndx_map.full(ndx)?;
                accept_request(&list, full, iflags, &job)?;
                let path = list.source_path(full);
                if shared {
                    Frame::LocalPath {
                        ndx,
                        path: path.as_os_str().as_bytes().to_vec(),
                    }
                    .encode(&mut replies);
                    // Answer a burst of requests with one write.
                    if replies.len() >= 64 * 1024 || !source.has_buffered_frame() {
                        sink.send_encoded(std::mem::take(&mut replies)).await?;
                    }
                    continue;
                }
                if list.list.entries[full].size <= SMALL_FILE {
                    small.entry(0).or_default().push(SmallJob::Whole(ndx, path));
                    continue;
                }
                let (sink, stats, limit) = (sink.clone(), job.stats.clone(), limit.clone());
                gates.spawn_file(&mut tasks, 0, &list.list.entries[full].path, move || {
                    let mut out = FrameOut::new(&sink);
                    send_file(ndx, &path, None, &mut out, &stats, &limit)?;
                    out.finish()
                });
            }
            f @ (Frame::LaneRequest { .. } | Frame::RangeRequest { .. }) => {
                let (ndx, iflags, lane, range) = match f {
                    Frame::RangeRequest {
                        ndx,
                        iflags,
                        lane,
                        offset,
                        len,
                    } => (ndx, iflags, lane, Some((offset, len))),
                    Frame::LaneRequest { ndx, iflags, lane } => (ndx, iflags, lane, None),
                    _ => continue,
                };
                if shared || usize::from(lane) > lanes.count() {
                    return Err(DecodeError::invalid("lane request", "no such lane").into());
                }
                // Each file or part may be asked again once per lost lane; a file comes in at
                // most a few parts per stream.
                let times = {
                    let t = asked
                        .entry((ndx, range.map_or(u64::MAX, |r| r.0)))
                        .or_default();
                    *t = t.saturating_add(1);
                    *t
                };
                let parts = parts_of.entry(ndx).or_default();
                if times == 1 {
                    *parts += 1;
                }
                let parts = *parts;
                if usize::from(times) > lanes.count() + 1 || parts > 4 * (lanes.count() + 1) {
                    return Err(DecodeError::invalid(
                        "lane request",
                        format!("index {ndx} asked for more often than lanes were lost"),
                    )
                    .into());
                }
                let full = ndx_map.full(ndx)?;
                let entry = if accepted.insert(ndx) {
                    accept_request(&list, full, iflags, &job)?
                } else {
                    list.list
                        .entries
                        .get(full)
                        .ok_or_else(|| DecodeError::invalid("request", "index out of range"))?
                };
                if range.is_some_and(|(offset, len)| offset + len > entry.size) {
                    return Err(
                        DecodeError::invalid("range request", "past the end of the file").into(),
                    );
                }
                let (lane_sink, alive) = if lane == 0 {
                    (sink.clone(), None)
                } else {
                    match lanes.sink(lane) {
                        Some((s, a)) => (s, Some(a)),
                        None => {
                            // Never set up, or already failed: the receiver asks again
                            // elsewhere.
                            sink.send(&Frame::LaneLost { lane }).await?;
                            continue;
                        }
                    }
                };
                let path = list.source_path(full);
                if range.is_none() && entry.size <= SMALL_FILE {
                    small
                        .entry(lane)
                        .or_default()
                        .push(SmallJob::Whole(ndx, path));
                    continue;
                }
                let (control, stats, limit) = (sink.clone(), job.stats.clone(), limit.clone());
                gates.spawn_file(&mut tasks, lane, &entry.path, move || {
                    let mut out = FrameOut::new(&lane_sink);
                    let sent = send_file(ndx, &path, range, &mut out, &stats, &limit)
                        .and_then(|()| out.finish());
                    lane_result(sent, alive, lane, &control)
                });
            }
            Frame::DeltaRequest { ndx, iflags } => {
                if shared {
                    return Err(DecodeError::invalid(
                        "delta request",
                        "data goes by path on a shared filesystem",
                    )
                    .into());
                }
                let full = ndx_map.full(ndx)?;
                let entry = accept_request(&list, full, iflags, &job)?;
                let path = list.source_path(full);
                let (sink, deltas, size) = (sink.clone(), deltas.clone(), entry.size);
                let params = delta_params(size, chunk_avg);
                if size <= SMALL_FILE {
                    small
                        .entry(0)
                        .or_default()
                        .push(SmallJob::DeltaStart(ndx, path, params));
                    continue;
                }
                gates.spawn_hashing(&mut tasks, move || {
                    let mut out = FrameOut::new(&sink);
                    start_delta(ndx, path, params, &mut out, &deltas)?;
                    out.finish()
                });
            }
            Frame::Expand { ndx, hashes } => {
                let d = delta_state(&deltas, ndx)?;
                let mut groups = Vec::with_capacity(hashes.len());
                for h in &hashes {
                    let kids = d.tree.children(h).ok_or_else(|| {
                        DecodeError::invalid("expand", "not an interior node of this file")
                    })?;
                    groups.push(kids.to_vec());
                }
                sink.send(&Frame::Nodes { ndx, groups }).await?;
            }
            Frame::Fetch { ndx, hashes, last } => {
                let d = delta_state(&deltas, ndx)?;
                if let Ok(mut f) = d.fetch.lock() {
                    if f.len() + hashes.len() > d.leaves.len() * 4 + MAX_FETCH {
                        return Err(
                            DecodeError::invalid("fetch", "more chunks than the file has").into(),
                        );
                    }
                    f.extend(hashes);
                }
                if last {
                    if let Ok(mut m) = deltas.lock() {
                        m.remove(&ndx);
                    }
                    if d.tree.root().size <= SMALL_FILE {
                        small
                            .entry(0)
                            .or_default()
                            .push(SmallJob::DeltaChunks(ndx, d));
                        continue;
                    }
                    let (sink, stats, limit) = (sink.clone(), job.stats.clone(), limit.clone());
                    // A delta's chunks are one open file on the control stream.
                    let name = d.path.as_os_str().as_bytes().to_vec();
                    gates.spawn_file(&mut tasks, 0, &name, move || {
                        let mut out = FrameOut::new(&sink);
                        send_chunks(ndx, &d, &mut out, &stats, &limit)?;
                        out.finish()
                    });
                }
            }
            Frame::Report { items, deleted } => {
                report(&list, &ndx_map, &items, &deleted, &job)?;
            }
            Frame::Done => {
                if !replies.is_empty() {
                    sink.send_encoded(std::mem::take(&mut replies)).await?;
                }
                finished = true;
            }
            other => {
                return Err(DecodeError::invalid(
                    "frame",
                    format!("unexpected from receiver: {other:?}"),
                )
                .into())
            }
        }
        while let Some(done) = tasks.try_join_next() {
            done.map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))??;
    }
    lanes.finish().await;
    sink.send(&Frame::Done).await?;
    // The receiver's final counters, for the sending side's report (after its last
    // deletions, if it reports them).
    loop {
        match source.expect("summary").await? {
            Frame::Summary(counters) => {
                job.stats.apply_summary(&counters);
                return Ok(());
            }
            Frame::Report { items, deleted } => report(&list, &ndx_map, &items, &deleted, &job)?,
            other => {
                return Err(DecodeError::invalid(
                    "frame",
                    format!("expected the receiver's summary, got {other:?}"),
                )
                .into())
            }
        }
    }
}

/// Whole files up to this size are read in batches, their frames sent in one write.
const SMALL_FILE: u64 = 128 << 10;

/// Work on one small file: send it whole, show its chunk tree's root, or send the chunks
/// asked for.
enum SmallJob {
    Whole(u32, PathBuf),
    DeltaStart(u32, PathBuf, ChunkParams),
    DeltaChunks(u32, Arc<SenderDelta>),
}

/// Small files' work asked for on one stream, waiting to be done together by one job whose
/// frames go out in large writes.
#[derive(Default)]
struct SmallBatch {
    jobs: Vec<SmallJob>,
}

impl SmallBatch {
    fn push(&mut self, job: SmallJob) {
        self.jobs.push(job);
    }

    fn full(&self) -> bool {
        self.jobs.len() >= 64
    }
}

/// Do a batch of small files' work in order, every frame into one [`FrameOut`].
fn run_small_jobs(
    jobs: Vec<SmallJob>,
    sink: &FrameSink,
    deltas: &Mutex<HashMap<u32, Arc<SenderDelta>>>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    let mut out = FrameOut::new(sink);
    let mut wholes = Vec::new();
    for job in jobs {
        match job {
            SmallJob::Whole(ndx, path) => wholes.push((ndx, path)),
            SmallJob::DeltaStart(ndx, path, params) => {
                start_delta(ndx, path, params, &mut out, deltas)?
            }
            SmallJob::DeltaChunks(ndx, d) => send_chunks(ndx, &d, &mut out, stats, limit)?,
        }
    }
    send_small_files(wholes, &mut out, stats, limit)?;
    out.finish()
}

/// What a job sending on `lane` ends with: on the control stream (`alive` is `None`) its
/// failure ends the session; a lane's failure loses the lane (once), and what it carried is
/// asked for again on the others.
fn lane_result(
    sent: Result<(), SyncError>,
    alive: Option<Arc<std::sync::atomic::AtomicBool>>,
    lane: u8,
    control: &FrameSink,
) -> Result<(), SyncError> {
    match alive {
        None => sent,
        Some(alive) => {
            if sent.is_err() && alive.swap(false, Relaxed) {
                control.blocking_send(&Frame::LaneLost { lane })?;
            }
            Ok(())
        }
    }
}

/// Read each small file whole and send its `DataBegin`, `Data` and `DataEnd` frames, many
/// files to one write. A file that turns out larger than a small one (it grew since it was
/// listed) is streamed as usual.
fn send_small_files(
    files: Vec<(u32, PathBuf)>,
    out: &mut FrameOut<'_>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    for (ndx, path) in files {
        let read = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|f| {
                let mut data = Vec::new();
                f.take(4 * SMALL_FILE + 1).read_to_end(&mut data)?;
                Ok(data)
            });
        let data = match read {
            Ok(d) if d.len() as u64 <= 4 * SMALL_FILE => d,
            Ok(_) => {
                send_file(ndx, &path, None, out, stats, limit)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.push(&Frame::Vanished { ndx })?;
                continue;
            }
            Err(e) => {
                let message = format!(
                    "send_files failed to open \"{}\": {}",
                    path.display(),
                    os_error(&e)
                );
                out.push(&Frame::FileFailed { ndx, message })?;
                continue;
            }
        };
        crate::liveness::bump();
        let len = data.len() as u64;
        let hash = *blake3::hash(&data).as_bytes();
        out.push(&Frame::DataBegin { ndx, size: len })?;
        if !data.is_empty() {
            out.push(&Frame::Data { ndx, bytes: data })?;
        }
        out.push(&Frame::DataEnd { ndx, hash })?;
        stats.literal.fetch_add(len, Relaxed);
        let wait = limit.account(len);
        if !wait.is_zero() {
            out.flush()?;
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

/// The sender's limits on work in flight, so that its main loop never waits for a permit (it
/// keeps answering the delta exchange while files are sent): each job is a task that takes
/// its permits, then runs on a blocking thread.
///
/// - per stream, at most the receiver's window of files open at once (the receiver's writers
///   are sized by it; see `Caps::window`);
/// - at most `readers` files being read at once over all streams;
/// - at most `hashers` files being chunked and hashed at once (CPU).
struct SendGates {
    streams: Vec<Arc<Semaphore>>,
    readers: Arc<Semaphore>,
    hashers: Arc<Semaphore>,
}

impl SendGates {
    fn new(streams: usize, window: usize, readers: usize, hashers: usize) -> Self {
        SendGates {
            streams: (0..streams)
                .map(|_| Arc::new(Semaphore::new(window.max(1))))
                .collect(),
            readers: Arc::new(Semaphore::new(readers.max(1))),
            hashers: Arc::new(Semaphore::new(hashers.max(1))),
        }
    }

    /// Run `job`, which opens and ends one file on `stream`, once the stream's window and a
    /// reader allow it.
    fn spawn_file(
        &self,
        tasks: &mut JoinSet<Result<(), SyncError>>,
        stream: u8,
        what: &[u8],
        job: impl FnOnce() -> Result<(), SyncError> + Send + 'static,
    ) {
        let window = self.streams.get(usize::from(stream)).cloned();
        let readers = self.readers.clone();
        let what = String::from_utf8_lossy(what).into_owned();
        tasks.spawn(async move {
            let _w = crate::liveness::waiting(format!(
                "sender: \"{what}\" on stream {stream} (waits for room in the receiver's window, then is read and sent)"
            ));
            // The stream's window first: a reader permit is then never held while waiting.
            let _open = match window {
                Some(w) => Some(
                    w.acquire_owned()
                        .await
                        .map_err(|_| SyncError::Interrupted)?,
                ),
                None => None,
            };
            let _read = readers
                .acquire_owned()
                .await
                .map_err(|_| SyncError::Interrupted)?;
            run_blocking(job).await
        });
    }

    /// Run `job` (chunking and hashing a file) once a hasher is free.
    fn spawn_hashing(
        &self,
        tasks: &mut JoinSet<Result<(), SyncError>>,
        job: impl FnOnce() -> Result<(), SyncError> + Send + 'static,
    ) {
        let hashers = self.hashers.clone();
        tasks.spawn(async move {
            let _cpu = hashers
                .acquire_owned()
                .await
                .map_err(|_| SyncError::Interrupted)?;
            run_blocking(job).await
        });
    }
}

async fn run_blocking(
    job: impl FnOnce() -> Result<(), SyncError> + Send + 'static,
) -> Result<(), SyncError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))?
}

/// Print what the receiver reported (a pushing client shows what the remote side did).
fn report(
    list: &SourceList,
    ndx_map: &NdxMap,
    items: &[(u32, u16, u8)],
    deleted: &[(Vec<u8>, bool)],
    job: &SenderJob,
) -> Result<(), SyncError> {
    if !job.report_items {
        return Err(DecodeError::invalid("report", "not asked for").into());
    }
    for (path, is_dir) in deleted {
        job.sink.event(Event::Deleted {
            path: path.clone(),
            is_dir: *is_dir,
        });
    }
    for &(ndx, iflags, letter) in items {
        let entry = list
            .list
            .entries
            .get(ndx_map.full(ndx)?)
            .ok_or_else(|| DecodeError::invalid("report", format!("index {ndx}")))?;
        // A transfer the receiver reports (dry run) is printed as sent.
        let letter = if letter == b'>' { '<' } else { letter as char };
        job.sink.event(Event::Item {
            entry,
            itemize: Itemize::from_flags(letter, entry.kind, iflags),
            link_to: None,
        });
    }
    Ok(())
}

/// Check a request for `ndx` (in range, a regular file), print it on a sending client, and
/// count it (the sender's own count of what it was asked for: what a push reports).
fn accept_request<'l>(
    list: &'l SourceList,
    ndx: usize,
    iflags: u16,
    job: &SenderJob,
) -> Result<&'l FileEntry, SyncError> {
    let entry = list
        .list
        .entries
        .get(ndx)
        .filter(|e| e.kind == FileKind::File)
        .ok_or_else(|| {
            DecodeError::invalid(
                "request",
                format!("index {ndx} is out of range or not a regular file"),
            )
        })?;
    if job.report_items {
        job.sink.event(Event::Item {
            entry,
            itemize: Itemize::from_flags('<', entry.kind, iflags),
            link_to: None,
        });
    }
    job.stats.transferred.fetch_add(1, Relaxed);
    job.stats.transferred_size.fetch_add(entry.size, Relaxed);
    Ok(entry)
}

/// The sender's side of one file's delta exchange: its chunk tree, where each chunk is, and
/// the chunks asked for so far.
struct SenderDelta {
    tree: ChunkTree,
    leaves: HashMap<[u8; 32], (u64, u64)>,
    file_hash: [u8; 32],
    path: PathBuf,
    fetch: Mutex<Vec<[u8; 32]>>,
}

fn delta_state(
    deltas: &Mutex<HashMap<u32, Arc<SenderDelta>>>,
    ndx: u32,
) -> Result<Arc<SenderDelta>, SyncError> {
    deltas
        .lock()
        .ok()
        .and_then(|m| m.get(&ndx).cloned())
        .ok_or_else(|| {
            DecodeError::invalid("delta", format!("no exchange open for index {ndx}")).into()
        })
}

/// Chunk and hash the file, keep its tree, and show the receiver the root.
fn start_delta(
    ndx: u32,
    path: PathBuf,
    params: ChunkParams,
    out: &mut FrameOut<'_>,
    deltas: &Mutex<HashMap<u32, Arc<SenderDelta>>>,
) -> Result<(), SyncError> {
    let built = (|| -> io::Result<SenderDelta> {
        let f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let chunks = chunk_file(&f, params)?;
        let tree = ChunkTree::build(&chunks, DEFAULT_FANOUT_BITS);
        // The tree's root is the file's identity: the receiver checks every node it is shown
        // against its parent and every chunk against its hash, so no second hash of the whole
        // file is needed.
        let file_hash = tree.root().hash;
        let leaves = chunks
            .iter()
            .map(|c| (c.hash, (c.offset, c.len as u64)))
            .collect();
        Ok(SenderDelta {
            tree,
            leaves,
            file_hash,
            path,
            fetch: Mutex::new(Vec::new()),
        })
    })();
    let d = match built {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out.push(&Frame::Vanished { ndx }),
        Err(e) => {
            return out.push(&Frame::FileFailed {
                ndx,
                message: format!("send_files failed to read: {}", os_error(&e)),
            })
        }
    };
    let root = if d.tree.leaves().is_empty() {
        vec![]
    } else {
        vec![d.tree.root()]
    };
    if let Ok(mut m) = deltas.lock() {
        m.insert(ndx, Arc::new(d));
    }
    out.push(&Frame::Nodes {
        ndx,
        groups: vec![root],
    })
}

/// Send the chunks the receiver asked for, in its order, then the tree's root hash.
fn send_chunks(
    ndx: u32,
    d: &SenderDelta,
    out: &mut FrameOut<'_>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    use std::os::unix::fs::FileExt;
    let wanted = d.fetch.lock().map(|f| f.clone()).unwrap_or_default();
    let f = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&d.path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out.push(&Frame::Vanished { ndx }),
        Err(e) => {
            return out.push(&Frame::FileFailed {
                ndx,
                message: format!("send_files failed to open: {}", os_error(&e)),
            })
        }
    };
    for h in wanted {
        let Some(&(off, len)) = d.leaves.get(&h) else {
            return Err(DecodeError::invalid("fetch", "not a chunk of this file").into());
        };
        let mut buf = vec![0u8; len as usize];
        if let Err(e) = f.read_exact_at(&mut buf, off) {
            return out.push(&Frame::FileFailed {
                ndx,
                message: format!(
                    "read errors mapping \"{}\": {}",
                    d.path.display(),
                    os_error(&e)
                ),
            });
        }
        out.push(&Frame::Data { ndx, bytes: buf })?;
        stats.literal.fetch_add(len, Relaxed);
        crate::liveness::bump();
        let wait = limit.account(len);
        if !wait.is_zero() {
            out.flush()?;
            std::thread::sleep(wait);
        }
    }
    out.push(&Frame::DataEnd {
        ndx,
        hash: d.file_hash,
    })
}

/// Stream one file's bytes; a read failure is reported to the receiver, not fatal.
fn send_file(
    ndx: u32,
    path: &std::path::Path,
    range: Option<(u64, u64)>,
    out: &mut FrameOut<'_>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    let mut f = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out.push(&Frame::Vanished { ndx }),
        Err(e) => {
            return out.push(&Frame::FileFailed {
                ndx,
                message: format!(
                    "send_files failed to open \"{}\": {}",
                    path.display(),
                    os_error(&e)
                ),
            })
        }
    };
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    // A part of the file: from its offset, at most its length.
    let (size, mut left) = match range {
        Some((offset, len)) => {
            if offset + len > size {
                return out.push(&Frame::FileFailed {
                    ndx,
                    message: format!("\"{}\" shrank while it was being sent", path.display()),
                });
            }
            io::Seek::seek(&mut f, io::SeekFrom::Start(offset)).map_err(SyncError::StreamIo)?;
            (len, len)
        }
        None => (size, u64::MAX),
    };
    out.push(&Frame::DataBegin { ndx, size })?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; MAX_DATA_CHUNK.min(limit.step(MAX_DATA_CHUNK as u64) as usize)];
    loop {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            break;
        }
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return out.push(&Frame::FileFailed {
                    ndx,
                    message: format!(
                        "read errors mapping \"{}\": {}",
                        path.display(),
                        os_error(&e)
                    ),
                })
            }
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
        crate::liveness::bump();
        out.push(&Frame::Data {
            ndx,
            bytes: buf[..n].to_vec(),
        })?;
        stats.literal.fetch_add(n as u64, Relaxed);
        let wait = limit.account(n as u64);
        if !wait.is_zero() {
            out.flush()?;
            std::thread::sleep(wait);
        }
    }
    out.push(&Frame::DataEnd {
        ndx,
        hash: *hasher.finalize().as_bytes(),
    })
}
