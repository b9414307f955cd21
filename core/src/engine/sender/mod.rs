//! The sender role: scan the sources, send the file list, answer data requests.
//!
//! Owns the sender's side of the frame choreography (see `docs/MERKLE_PROTOCOL.md`):
//! hello → file list → for each `Request`, either `LocalPath` (both roles share the filesystem)
//! or `DataBegin`/`Data`…/`DataEnd` with the BLAKE3 of what was sent → `Done`. Reading files runs
//! on blocking threads, several files at once.

mod delta;
mod files;
mod gates;
mod progress;
// Issue 18, streaming list:
mod rounds;
mod small;

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

use crate::engine::event::{Event, EventSink, Itemize, NoticeTap};
use crate::engine::io::RateLimit;
use crate::engine::lanes::{self, SenderLanes};
use crate::engine::options::SyncOptions;
use crate::engine::order::Held;
use crate::engine::scan::{absolute, os_error, scan_sources, SourceList};
use crate::engine::segments;
use crate::engine::session::{
    apply_compression, apply_timeouts, exchange_hello, keepalive_cap, run_framed, shared_fs_token,
    FrameOut, FrameSink, FrameSource,
};
use crate::engine::stats::Stats;
use crate::engine::treelist::{self, serve_tree, NdxMap, TreeParams};
use crate::engine::tune;
use crate::error::SyncError;
use crate::flist::{FileEntry, FileKind};
use crate::merkle::chunk::{delta_params, ChunkParams};
// Issue 18, chunk cache:
use crate::engine::chunkcache::{index_file, ChunkCache};
use crate::merkle::gapsum;
use crate::merkle::tree::{ChunkTree, DEFAULT_FANOUT_BITS};
use crate::proto::merkle::caps::{Caps, Role};
use crate::proto::merkle::{Frame, MAX_DATA_CHUNK, MAX_FETCH, MAX_GAP_NEW, MAX_MISSING_ARGS};
use crate::proto::DecodeError;
use crate::transport::Connection;

use delta::*;
use files::*;
use gates::*;
use rounds::*;
use small::*;

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
        // Issue 15, source: a file to remove must be in the list the receiver answers.
        // Issue 15, select: missing arguments travel in the whole-list exchange.
        dirtree: (!job.opts.source.remove_source_files && !job.opts.select.delete_missing_args)
            .then(TreeParams::sender_cap),
        report: job.report_items,
        shared_fs: shared_capable.then(|| token.clone()),
        compress: job.opts.compress.is_some(),
        lanes: lane_offer,
        keepalive: keepalive_cap(job.opts.io_timeout),
        // Issue 16, params:
        tune: tune::ours(&job.opts),
        // Issue 16, remote CPU:
        cpu: job.opts.cpu_chunk,
        // Issue 18, scattered deltas:
        gaps: !job.opts.no_gap_sums,
        // Issue 18, streaming list:
        segments: segments::sender_can_stream(&job.sources, &job.opts).then(segments::round_offer),
        ..Caps::default()
    };
    source.set_role("sender");
    // The hello is waited for with the timeout too.
    source.set_timeout(job.opts.io_timeout);
    let peer = exchange_hello(sink, source, &ours).await?;
    // Issue 16, remote CPU: what the peer said of its speed, for the client to remember.
    if let Some(c) = peer.cpu {
        job.stats.peer_cpu.store(c, Relaxed);
    }
    // Issue 16, params: the parameters both ends agreed in their `tune` capabilities.
    let tuned = tune::agreed(ours.tune, peer.tune);
    let mut job = job;
    tune::apply(&mut job.opts, tuned);
    let peer = tune::peer_view(peer, tuned);
    apply_timeouts(sink, source, job.opts.io_timeout, &peer);
    let shared = shared_capable && peer.shared_fs.as_ref() == Some(&token);
    apply_compression(sink, source, job.opts.compress.filter(|_| !shared), &peer);
    let lane_count = lanes::agreed(lane_offer, &peer);
    let chunk_avg = peer.chunk_avg;
    // Issue 18, scattered deltas: the receiver may send `GapSums` only when both offered.
    let gaps = ours.gaps && peer.gaps;
    // Issue 18, streaming list: a directory at a time, when both offered it.
    let round = segments::agreed_round(ours.segments, peer.segments);
    let tree = if shared || round.is_some() {
        None
    } else {
        // Issue 16, params: with the agreed levels per round trip.
        tune::tree(TreeParams::negotiate(ours.dirtree, peer.dirtree), tuned)
    };

    // Scan on the blocking pool: it fans out over rayon. An rsync adapter asks for `-c`
    // checksums in rsync's algorithm.
    let mut opts = job.opts.clone();
    opts.rsync_sum = peer
        .rsync_sum
        .as_deref()
        .and_then(|n| crate::proto::rsync::checksum::SumKind::from_name(n.as_bytes()));
    // A receiver that skips the kinds left out is told of them (its --delete spares them).
    opts.list_unwanted = peer.unwanted.is_some();
    opts.unwanted_said_by_receiver =
        peer.unwanted == Some(crate::proto::merkle::caps::Unwanted::ReceiverSays);
    // Issue 15: a sending server's notices (`skipping non-regular file`) go to the receiving
    // client that asked for them, to print on its stdout as rsync's client does.
    let notices = (peer.notices && job.sink.notices_to_peer())
        .then(|| Arc::new(NoticeTap::new(job.sink.clone())));
    let ev: Arc<dyn EventSink> = match &notices {
        Some(tap) => tap.clone(),
        None => job.sink.clone(),
    };
    if let Some(round) = round {
        // Issue 18, streaming list: the rounds are listed ahead while they are served.
        let mut rounds = walk_rounds(&job, opts, ev, sink, round);
        let (first, lane_pairs) = tokio::join!(rounds.recv(), lanes::setup(conn, open, lane_count));
        let lanes = SenderLanes::new(lane_pairs, &job.stats, sink);
        let progress = progress::SendProgress::install(&job, sink);
        let limit = Arc::new(RateLimit::new(if shared { None } else { job.opts.bwlimit }));
        let gates = SendGates::new(
            1 + lanes.count(),
            lanes::window(&peer),
            job.opts.parallelism(),
            super::options::cores(),
        );
        let serving = Serving {
            sink,
            job: &job,
            lanes: &lanes,
            gates: &gates,
            limit: &limit,
            progress: progress.as_deref(),
            shared,
            gaps,
            chunk_avg,
            bdp: tuned.bdp,
        };
        let ndx_map = NdxMap::identity();
        let mut next = first;
        // Issue 18: an rsync adapter's receiver keeps earlier rounds askable (`live-rounds`):
        // the rounds kept, each with where it starts in the rounds put end to end, and the
        // places the receiver said it will not name again.
        let mut live = peer.live_rounds.then(LiveRounds::default);
        let list = loop {
            let Some(r) = next.take() else {
                return Err(SyncError::StreamIo(io::Error::other(
                    "the list's walk stopped",
                )));
            };
            let r = r?;
            for message in notices.iter().flat_map(|tap| tap.take()) {
                sink.send(&Frame::Info(message)).await?;
            }
            let started = Instant::now();
            job.stats
                .flist_size
                .fetch_add(r.encoded.len() as u64, Relaxed);
            sink.send_encoded(r.encoded).await?;
            job.stats
                .flist_xfer_us
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            if job.report_items {
                job.sink.event(Event::ListTotals {
                    files: job.stats.files.total(),
                    bytes: job.stats.total_size.load(Relaxed),
                });
            }
            let list = match live.as_mut() {
                Some(live) => Arc::new(live.add(r.list)),
                None => Arc::new(r.list),
            };
            let released = live.as_mut().map(|l| &mut l.released);
            serve(&serving, source, &list, &ndx_map, None, released).await?;
            if r.last {
                break list;
            }
            // The round is over: the next one follows.
            sink.send(&Frame::Done).await?;
            next = rounds.recv().await;
        };
        return finish(sink, source, &job, lanes, &list, &ndx_map).await;
    }
    let (sources, stats) = (job.sources.clone(), job.stats.clone());
    let scan = tokio::task::spawn_blocking(move || {
        // Under `-R` the path as given names the files: the scan makes its base absolute.
        let abs: Vec<PathBuf> = if opts.select.relative {
            sources
        } else {
            sources.iter().map(|s| absolute(s.as_path())).collect()
        };
        scan_sources(&abs, &opts, &stats, &*ev)
    });
    // The lanes are set up while the sources are scanned.
    let (list, lane_pairs) = tokio::join!(scan, lanes::setup(conn, open, lane_count));
    let list: SourceList = list.map_err(SyncError::Job)?;
    for message in notices.iter().flat_map(|tap| tap.take()) {
        sink.send(&Frame::Info(message)).await?;
    }
    if job.report_items {
        job.sink.event(Event::ListTotals {
            files: job.stats.files.total(),
            bytes: job.stats.total_size.load(Relaxed),
        });
    }
    let lanes = SenderLanes::new(lane_pairs, &job.stats, sink);
    let progress = progress::SendProgress::install(&job, sink);

    let list = Arc::new(list);
    let started = Instant::now();
    let (ndx_map, mut first) = match tree {
        Some(params) => {
            let (map, frame) = serve_tree(sink, source, &list, params, &job.stats).await?;
            (map, Some(frame))
        }
        None => {
            // Issue 18: a receiver in this process takes the list itself, not a decoded copy
            // (put before the first frame of the list, which tells it to look).
            if let Some(shelf) = shared.then(|| conn.local_shelf()).flatten() {
                shelf.put(list.list.clone());
            }
            let (l, s, stats) = (list.clone(), sink.clone(), job.stats.clone());
            tokio::task::spawn_blocking(move || send_list(&s, &l, &stats))
                .await
                .map_err(SyncError::Job)??;
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
    let serving = Serving {
        sink,
        job: &job,
        lanes: &lanes,
        gates: &gates,
        limit: &limit,
        progress: progress.as_deref(),
        shared,
        gaps,
        chunk_avg,
        bdp: tuned.bdp,
    };
    serve(&serving, source, &list, &ndx_map, first.take(), None).await?;
    finish(sink, source, &job, lanes, &list, &ndx_map).await
}

/// The end of the session, once the receiver asked for nothing more: the lanes closed,
/// `Done`, then the receiver's last reports and its summary.
async fn finish(
    sink: &FrameSink,
    source: &mut FrameSource,
    job: &SenderJob,
    lanes: SenderLanes,
    list: &Arc<SourceList>,
    ndx_map: &NdxMap,
) -> Result<(), SyncError> {
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
            Frame::Report { items, deleted } => {
                // After the transfers: shown as they come (hard links, in their own order).
                let items = report(list, ndx_map, &items, &deleted, job)?;
                show(list, items, job);
            }
            Frame::Info(message) => info(message, job)?,
            Frame::Synced(files) => remove_synced(list, ndx_map, files, job).await?,
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

/// What serving the requests of one list (or round) needs of the session.
struct Serving<'a> {
    sink: &'a FrameSink,
    job: &'a SenderJob,
    lanes: &'a SenderLanes,
    gates: &'a SendGates,
    limit: &'a Arc<RateLimit>,
    progress: Option<&'a progress::SendProgress>,
    shared: bool,
    gaps: bool,
    chunk_avg: Option<u32>,
    bdp: u64,
}

/// Answer the receiver's requests about `list` until its `Done`, and wait for every file
/// begun (issue 18, streaming list: once per round; with live rounds, `released` takes what
/// the receiver's `RoundEnd` says it will not name again).
async fn serve(
    serving: &Serving<'_>,
    source: &mut FrameSource,
    list: &Arc<SourceList>,
    ndx_map: &NdxMap,
    mut first: Option<Frame>,
    mut released: Option<&mut u32>,
) -> Result<(), SyncError> {
    let Serving {
        sink,
        job,
        lanes,
        gates,
        limit,
        progress,
        shared,
        gaps,
        chunk_avg,
        bdp,
    } = *serving;
    // Each entry may be asked for once, and again after each lost lane.
    let mut asked: HashMap<(u32, u64), u8> = HashMap::new();
    let mut parts_of: HashMap<u32, usize> = HashMap::new();
    let mut accepted: std::collections::HashSet<u32> = std::collections::HashSet::new();
    // Reported items waiting for the transfers before them (a pushing client prints both).
    let mut reported: Held<Reported> = Held::default();
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
                accept_request(list, full, ndx, iflags, job, progress, &mut reported)?;
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
                let size = list.list.entries[full].size;
                if size <= SMALL_FILE {
                    small
                        .entry(0)
                        .or_default()
                        .push(SmallJob::Whole(ndx, path, size));
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
                    accept_request(list, full, ndx, iflags, job, progress, &mut reported)?
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
                        .push(SmallJob::Whole(ndx, path, entry.size));
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
                let entry = accept_request(list, full, ndx, iflags, job, progress, &mut reported)?;
                let path = list.source_path(full);
                let (sink, deltas, size) = (sink.clone(), deltas.clone(), entry.size);
                let params = delta_params(size, chunk_avg, bdp, gaps);
                if size <= SMALL_FILE {
                    small
                        .entry(0)
                        .or_default()
                        .push(SmallJob::DeltaStart(ndx, path, params));
                    continue;
                }
                // Issue 18, chunk cache:
                let (cache, stats) = (job.opts.chunk_cache.clone(), job.stats.clone());
                gates.spawn_hashing(&mut tasks, move || {
                    let mut out = FrameOut::new(&sink);
                    let cache = cache.as_deref();
                    start_delta(ndx, path, params, &mut out, &deltas, cache, &stats)?;
                    out.finish()
                });
            }
            Frame::Expand { ndx, hashes } => {
                job.stats
                    .delta_asks
                    .fetch_add(32 * hashes.len() as u64 + 13, Relaxed);
                let d = delta_state(&deltas, ndx)?;
                let mut groups = Vec::with_capacity(hashes.len());
                for h in &hashes {
                    let kids = d.tree.children(h).ok_or_else(|| {
                        DecodeError::invalid("expand", "not an interior node of this file")
                    })?;
                    groups.push(kids.to_vec());
                }
                let nodes = Frame::Nodes { ndx, groups };
                job.stats
                    .delta_tree
                    .fetch_add(nodes.wire_len() as u64, Relaxed);
                sink.send(&nodes).await?;
            }
            // Issue 18, scattered deltas:
            Frame::GapSums {
                ndx,
                first,
                count,
                block,
                sums,
            } => {
                if !gaps {
                    return Err(DecodeError::invalid("gap sums", "not agreed").into());
                }
                job.stats
                    .delta_asks
                    .fetch_add(8 * sums.len() as u64 + 25, Relaxed);
                let d = delta_state(&deltas, ndx)?;
                let gap = GapAsk {
                    first,
                    count,
                    block,
                    sums,
                };
                add_gap(&d, gap)?;
            }
            Frame::Fetch { ndx, hashes, last } => {
                job.stats
                    .delta_asks
                    .fetch_add(32 * hashes.len() as u64 + 14, Relaxed);
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
                for r in report(list, ndx_map, &items, &deleted, job)? {
                    reported.hold(r.0 as u32, r);
                }
            }
            Frame::Info(message) => info(message, job)?,
            Frame::Synced(files) => remove_synced(list, ndx_map, files, job).await?,
            // Issue 18, live rounds:
            Frame::RoundEnd { count } => match released.as_deref_mut() {
                Some(r) if count >= *r => *r = count,
                _ => return Err(DecodeError::invalid("round end", "not from this receiver").into()),
            },
            Frame::Done => {
                // Nothing more is asked for: what waited is shown, later reports at once.
                show(list, reported.take_all(), job);
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
            done.map_err(SyncError::Job)??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(SyncError::Job)??;
    }
    Ok(())
}

/// The list (without `-t`'s tree exchange), then `FileListEnd`. Issue 18: entries are encoded
/// a batch at a time (no copy of the whole list) and queued in bursts as the writer takes
/// them (the encoded list does not wait in the queue all at once). On a blocking thread: it
/// waits for the writer's credit, while the receiver reads the list.
fn send_list(sink: &FrameSink, list: &SourceList, stats: &Stats) -> Result<(), SyncError> {
    let mut encoded = Vec::new();
    let mut sent = 0u64;
    // Entries this side could not read: the receiver must not delete (rsync's io_error at
    // the end of its list). Only then is a `Totals` sent with the list.
    if stats.errors.load(Relaxed) > 0 {
        Frame::Totals(stats.totals_counters()).encode(&mut encoded);
    }
    sent += treelist::queue_entries(sink, list.list.entries.iter(), &mut encoded)?;
    // Issue 15, select: `--delete-missing-args`.
    for names in list.missing.chunks(MAX_MISSING_ARGS) {
        Frame::MissingArgs(names.to_vec()).encode(&mut encoded);
    }
    Frame::FileListEnd {
        count: list.list.len() as u32,
    }
    .encode(&mut encoded);
    sent += encoded.len() as u64;
    stats.flist_size.fetch_add(sent, Relaxed);
    sink.blocking_send_encoded(encoded)
}

// Issue 15, source:
/// `--remove-source-files`: remove what the receiver says is synchronized (`Synced`).
async fn remove_synced(
    list: &Arc<SourceList>,
    ndx_map: &NdxMap,
    files: Vec<(u32, u64, u64)>,
    job: &SenderJob,
) -> Result<(), SyncError> {
    if !job.opts.source.remove_source_files {
        return Err(DecodeError::invalid("synced", "not asked for").into());
    }
    let full = files
        .iter()
        .map(|&(n, dev, ino)| Ok((ndx_map.full(n)?, dev, ino)))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let (list, stats, sink) = (list.clone(), job.stats.clone(), job.sink.clone());
    let follow = job.opts.symlinks.copy_links;
    tokio::task::spawn_blocking(move || {
        crate::engine::source_removal::remove_synced(&list, &full, follow, &stats, &*sink)
    })
    .await
    .map_err(SyncError::Job)??;
    Ok(())
}

/// Print a message the receiver reported (only a sending client that asked for reports gets
/// them).
fn info(message: String, job: &SenderJob) -> Result<(), SyncError> {
    if !job.report_items {
        return Err(DecodeError::invalid("info", "not asked for").into());
    }
    job.sink.event(Event::Info { message });
    Ok(())
}

/// An item the receiver reported, waiting for its turn: the entry's index in the whole list,
/// its summary, and a hard link's leader.
type Reported = (usize, Itemize, Option<usize>);

/// What the receiver reported (a pushing client shows what the remote side did): deletions
/// are shown at once, the items returned in the order they came (during the transfers they
/// wait until the transfers before them in the list are shown, see [`crate::engine::order`]).
fn report(
    list: &SourceList,
    ndx_map: &NdxMap,
    items: &[(u32, u16, u8)],
    deleted: &[(Vec<u8>, bool)],
    job: &SenderJob,
) -> Result<Vec<Reported>, SyncError> {
    if !job.report_items {
        return Err(DecodeError::invalid("report", "not asked for").into());
    }
    for (path, is_dir) in deleted {
        job.sink.event(Event::Deleted {
            path: path.clone(),
            is_dir: *is_dir,
        });
    }
    let mut leaders = None;
    let mut out = Vec::with_capacity(items.len());
    for &(ndx, iflags, letter) in items {
        let full = ndx_map.full(ndx)?;
        let entry = list
            .list
            .entries
            .get(full)
            .ok_or_else(|| DecodeError::invalid("report", format!("index {ndx}")))?;
        // A transfer the receiver reports (dry run) is printed as sent.
        let letter = if letter == b'>' { '<' } else { letter as char };
        // A hard link names its group's leader, as the receiver linked it.
        if letter == 'h' && leaders.is_none() {
            leaders = Some(list.list.hardlink_leaders());
        }
        let link_to = leaders
            .as_ref()
            .filter(|_| letter == 'h')
            .and_then(|l| l.get(&entry.hardlink_group()))
            .copied();
        out.push((
            full,
            Itemize::from_flags(letter, entry.kind, iflags),
            link_to,
        ));
    }
    Ok(out)
}

/// Print reported items (in the order given).
fn show(list: &SourceList, items: Vec<Reported>, job: &SenderJob) {
    for (full, itemize, link_to) in items {
        let Some(entry) = list.list.entries.get(full) else {
            continue;
        };
        job.sink.event(Event::Item {
            entry,
            itemize,
            link_to: link_to
                .and_then(|i| list.list.entries.get(i))
                .map(|l| l.path.as_slice()),
        });
    }
}

/// Check a request for entry `ndx` (in range, a regular file), print it on a sending client,
/// count it (the sender's own count of what it was asked for: what a push reports), and let
/// `progress` expect its data under the index `wire` its frames carry.
fn accept_request<'l>(
    list: &'l SourceList,
    ndx: usize,
    wire: u32,
    iflags: u16,
    job: &SenderJob,
    progress: Option<&progress::SendProgress>,
    reported: &mut Held<Reported>,
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
        // What the receiver did for the entries before this one comes first.
        show(list, reported.take_before(ndx as u32), job);
        job.sink.event(Event::Item {
            entry,
            itemize: Itemize::from_flags('<', entry.kind, iflags),
            link_to: None,
        });
    }
    if let Some(p) = progress {
        p.expect(wire, entry);
    }
    job.stats.transferred.fetch_add(1, Relaxed);
    job.stats.transferred_size.fetch_add(entry.size, Relaxed);
    Ok(entry)
}
