//! The transfer phase: asking for every file the generator found, a window at a time (issue
//! 18: what is in flight, not the whole plan, is held per request), and taking the sender's
//! answers as they come — whole files (small ones buffered, large ones to a writer), parts of
//! large files over several streams, delta exchanges (tree walk, fetch — with the gaps' sums,
//! issue 18 — rebuild), failures —
//! until the sender says it is done; and leaving nothing half-written when it ends early.
//!
//! Owns the state of what was asked and what is arriving where ([`Transfers`]) and the rules
//! that keep the loop from ever waiting on itself (see `writers`). Does not decide what needs
//! data (the generator's [`Plan`]), how a file is written (`writers`, `delta`, `parted`) or
//! which old version a file is rebuilt from (`engine::basis`).

#[allow(unused_imports)]
use super::*;

use super::adapting::{self, Adapting, Next};

/// Which files go by delta, and the old version each is rebuilt from: its own for a file that
/// replaces one (from the smallest up: a changed page shares most of its chunks, an unchanged
/// one costs its root alone), a candidate `engine::basis` picks for a new one.
pub(super) fn choose_bases(
    ctx: &Ctx,
    plan: &Plan,
    candidates: &BasisCandidates,
    delta_ok: bool,
) -> Vec<(u32, Vec<u8>)> {
    if !delta_ok || ctx.opts.whole_file || ctx.opts.inplace {
        return Vec::new();
    }
    // Issue 18: only built when a new file could use it (a path per transfer).
    let rewritten: HashSet<&[u8]> = match candidates.is_empty() {
        true => HashSet::new(),
        false => plan
            .transfers
            .iter()
            .map(|t| ctx.list.entries[t.ndx as usize].path.as_slice())
            .collect(),
    };
    plan.transfers
        .iter()
        .map(|q| q.transfer(ctx))
        .filter_map(|t| {
            let e = &ctx.list.entries[t.ndx as usize];
            // Issue 15, tempfiles: a partial file kept by an earlier run comes first.
            if let Some(p) = staging::partial_basis(ctx, &e.path) {
                return Some((t.ndx, p));
            }
            if !t.itemize.new {
                (e.size >= SMALL_DELTA_MIN).then(|| (t.ndx, e.path.to_vec()))
            } else {
                candidates
                    .choose(e, &rewritten)
                    .map(|p| (t.ndx, p.to_vec()))
            }
        })
        .collect()
}

/// Requests in flight at most: asked for and not yet begun (whole files, delta exchanges,
/// files in parts). Issue 18: the rest of the plan is asked for as answers come, so what the
/// receiver holds per request does not grow with the tree; this many keep the sender busy
/// across a round trip of small files (16,384 × 100 B is 1.6 MB on the wire).
const REQUEST_WINDOW: usize = 16_384;

/// The window is refilled once this many of its requests were answered: requests go out in
/// bursts, not one per answer.
const REFILL: usize = REQUEST_WINDOW / 4;

/// How many more requests to send with `in_flight` of them unanswered: none until a burst's
/// worth of room is free, then up to the window.
fn room(in_flight: usize) -> usize {
    if in_flight + REFILL > REQUEST_WINDOW {
        0
    } else {
        REQUEST_WINDOW - in_flight
    }
}

/// The requests sent and not yet answered (at most about [`REQUEST_WINDOW`]), and how the
/// next one is made.
#[derive(Default)]
pub(super) struct Asked {
    /// Files asked for whole or by delta, not yet begun.
    pub(super) pending: HashMap<u32, Transfer>,
    /// Files asked for on a lane, and which.
    pub(super) on_lane: HashMap<u32, (u8, Transfer)>,
    /// Large files asked for in parts.
    pub(super) parted: HashMap<u32, Parted>,
    /// Bytes asked for on the control stream (to balance the lanes).
    pub(super) control_load: u64,
}

impl Asked {
    /// Requests not yet answered.
    fn in_flight(&self) -> usize {
        self.pending.len() + self.parted.len()
    }

    /// Ask for `t`: a `DeltaRequest` if it goes by `delta`; with lanes, a whole file on the
    /// least loaded stream and a large one in parts, one per stream; else a plain `Request`.
    /// The frames go to `out`; what they leave expected is noted here.
    pub(super) fn ask(
        &mut self,
        ctx: &Ctx,
        t: Transfer,
        lanes: Option<&mut ReceiverLanes>,
        delta: bool,
        out: &mut Vec<Frame>,
    ) {
        let (ndx, iflags) = (t.ndx, t.itemize.to_flags());
        let size = ctx.list.entries[ndx as usize].size;
        match lanes {
            _ if delta => out.push(Frame::DeltaRequest { ndx, iflags }),
            // Not with --partial: what is kept of a stopped transfer must be a prefix.
            Some(l) if size >= PART_MIN && !ctx.opts.inplace && !ctx.opts.partial => {
                let ways = (1 + l.live_count() as u64)
                    .min(size / (PART_MIN / 2))
                    .max(1);
                let step = size.div_ceil(ways).next_multiple_of(1 << 20);
                let mut parts = Vec::new();
                let mut offset = 0;
                let mut used = Vec::new();
                while offset < size {
                    let len = step.min(size - offset);
                    let lane = l
                        .pick_excluding(len, &mut self.control_load, &used)
                        .unwrap_or(0);
                    used.push(lane);
                    out.push(Frame::RangeRequest {
                        ndx,
                        iflags,
                        lane,
                        offset,
                        len,
                    });
                    parts.push(PartSlot {
                        offset,
                        len,
                        lane,
                        answered: false,
                        tx: None,
                    });
                    offset += len;
                }
                self.parted.insert(
                    ndx,
                    Parted {
                        file: Arc::new(PartedFile::new(t, parts.len())),
                        parts,
                    },
                );
                return;
            }
            Some(l) => match l.pick(size, &mut self.control_load) {
                0 => out.push(Frame::Request { ndx, iflags }),
                lane => {
                    self.on_lane.insert(ndx, (lane, t));
                    out.push(Frame::LaneRequest { ndx, iflags, lane });
                }
            },
            None => out.push(Frame::Request { ndx, iflags }),
        }
        self.pending.insert(ndx, t);
    }
}

/// Issue 16, adapt during the run: the delta files past the window's first fill leave
/// `transfers` for `a`'s held files (in plan order), and are not asked for until the adapting
/// window has room. They still count in `delta_open`: "Done" waits for them.
pub(super) fn hold_past_window(
    ctx: &Ctx,
    transfers: &mut Vec<Queued>,
    delta_files: &HashSet<u32>,
    a: &mut Adapting,
) {
    let mut deltas = 0usize;
    transfers.retain(|t| {
        if !delta_files.contains(&t.ndx) {
            return true;
        }
        deltas += 1;
        if deltas <= a.first_fill() {
            return true;
        }
        a.held.push_back(t.transfer(ctx));
        false
    });
}

/// The transfer phase's state.
pub(super) struct Transfers<'f> {
    ctx: Arc<Ctx>,
    fsink: &'f FrameSink,
    lanes: Option<ReceiverLanes>,
    shared: bool,
    /// The I/O workers, one pool for the session's rounds.
    io: Arc<FileIo>,
    limit: Arc<RateLimit>,
    inflight: Arc<InFlight>,
    /// Local copies (shared filesystem) in flight at most.
    max_inflight: usize,
    /// Writers: a set per stream, sized to the sender's window (see `OpenFiles`).
    writers: usize,
    /// Bound for batches of small files: above the writers, so a batch never waits behind a
    /// writer that waits for frames.
    batch_limit: usize,
    open: OpenFiles,
    /// The requests in flight.
    asked: Asked,
    /// The plan's transfers not yet asked for, in plan order (issue 18: asked for as the
    /// window opens, see [`REQUEST_WINDOW`]).
    unasked: std::vec::IntoIter<Queued>,
    /// Delta exchanges walking the sender's tree.
    deltas: HashMap<u32, ReceiverDelta>,
    /// Delta exchanges whose last `Fetch` was sent: their writer starts with their first data
    /// (the sender opens them then, within its window).
    fetched: HashMap<u32, ReceiverDelta>,
    /// Delta exchanges that have not sent their last `Fetch`.
    delta_open: usize,
    delta_files: HashSet<u32>,
    bases: HashMap<u32, Arc<BasisIndex>>,
    index_rx: mpsc::Receiver<(u32, Arc<BasisIndex>)>,
    /// Complete small files not yet handed to a worker.
    batch: Vec<SmallFile>,
    batch_bytes: usize,
    // Issue 16, adapt during the run:
    /// The window of delta requests and the switch between delta and whole (`None`: off,
    /// every request at once).
    adapting: Option<Adapting>,
    /// "Done" was sent.
    done_sent: bool,
    // Issue 18, scattered deltas:
    /// Both sides speak the gap exchange.
    gaps: bool,
    /// Delta files whose gaps were offered, until their `DataEnd` (a file whose gap did not
    /// check is then asked for whole): "Done" waits for them.
    gap_files: HashMap<u32, GapFile>,
}

/// Why a reply names a file it may not.
fn unrequested(ndx: u32) -> SyncError {
    DecodeError::invalid(
        "reply",
        format!("index {ndx} was not requested or was answered twice"),
    )
    .into()
}

impl<'f> Transfers<'f> {
    /// Take over the transfers of `plan` (left empty): start indexing the old versions (in
    /// request order, on all cores, each index handed over when ready); the requests go out
    /// from [`Transfers::run`], a window at a time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        ctx: Arc<Ctx>,
        fsink: &'f FrameSink,
        plan: &mut Plan,
        lanes: Option<ReceiverLanes>,
        shared: bool,
        window: usize,
        candidates: &BasisCandidates,
        delta_ok: bool,
        gaps: bool,
        io: Arc<FileIo>,
    ) -> Result<Self, SyncError> {
        let basis_of = choose_bases(&ctx, plan, candidates, delta_ok);
        let delta_files: HashSet<u32> = basis_of.iter().map(|(n, _)| *n).collect();
        // Issue 16, adapt during the run: the delta files asked for a window at a time.
        let mut adapting = match ctx.opts.adapt {
            Some(a) if !shared && !basis_of.is_empty() => {
                let bytes: u64 = basis_of
                    .iter()
                    .map(|(n, _)| ctx.list.entries[*n as usize].size)
                    .sum();
                let window = adapting::window(&ctx, &a, bytes / basis_of.len() as u64);
                let asked = window.min(basis_of.len());
                Some(Adapting::new(&ctx, a, window, asked))
            }
            _ => None,
        };
        let gate = adapting.as_ref().map(|a| (a.clock.clone(), a.skip.clone()));
        let (index_tx, index_rx) = mpsc::channel::<(u32, Arc<BasisIndex>)>(256);
        if !basis_of.is_empty() {
            // Issue 18, cheap deltas: large old versions are written into their staged
            // temps as they are indexed.
            let prewrite = PrewritePlan::new(&ctx, &plan.transfers, &delta_files);
            let c = ctx.clone();
            tokio::task::spawn_blocking(move || {
                for jobs in basis_of.chunks(64) {
                    // Issue 16, adapt during the run: files asked for whole are not indexed;
                    // the time the rest takes is the chunking rate's evidence.
                    let kept: Vec<_>;
                    let jobs = match &gate {
                        Some((_, skip)) => {
                            // Filtered under the lock: the set grows with the files turned
                            // whole, and is not copied per batch.
                            let skip = skip.lock().ok();
                            kept = jobs
                                .iter()
                                .filter(|(n, _)| !skip.as_ref().is_some_and(|s| s.contains(n)))
                                .cloned()
                                .collect();
                            kept.as_slice()
                        }
                        None => jobs,
                    };
                    let t0 = Instant::now();
                    let done = index_bases(&c, jobs, &prewrite);
                    if let Some((clock, _)) = &gate {
                        let bytes = jobs
                            .iter()
                            .map(|(n, _)| c.list.entries[*n as usize].size)
                            .sum();
                        clock.add(bytes, t0.elapsed());
                    }
                    for done in done {
                        if index_tx.blocking_send(done).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        // The plan's own entries are the queue: nothing is copied (issue 18).
        let mut unasked = std::mem::take(&mut plan.transfers);
        if let Some(a) = adapting.as_mut() {
            hold_past_window(&ctx, &mut unasked, &delta_files, a);
        }
        // Every delta exchange, held ones included: "Done" waits for them.
        let delta_open = delta_files.len();
        let streams = 1 + lanes.as_ref().map_or(0, ReceiverLanes::count);
        let writers = window * streams;
        Ok(Transfers {
            io,
            limit: Arc::new(RateLimit::new(if shared { ctx.opts.bwlimit } else { None })),
            inflight: Arc::new(InFlight::default()),
            max_inflight: ctx.opts.parallelism() * 8,
            writers,
            batch_limit: writers + ctx.opts.parallelism(),
            open: OpenFiles::new(streams, window),
            asked: Asked::default(),
            unasked: unasked.into_iter(),
            deltas: HashMap::new(),
            fetched: HashMap::new(),
            delta_open,
            delta_files,
            bases: HashMap::new(),
            index_rx,
            batch: Vec::new(),
            batch_bytes: 0,
            ctx,
            fsink,
            lanes,
            shared,
            adapting,
            done_sent: false,
            gaps,
            gap_files: HashMap::new(),
        })
    }

    /// Take the sender's answers until it is done. The loop only ever waits to read, for a
    /// writer that has all its data, or for an old version to be indexed — never for anything
    /// that needs a frame still unread.
    pub(super) async fn run(&mut self, source: &mut FrameSource) -> Result<(), SyncError> {
        loop {
            self.ask_more().await?;
            // About to wait for the peer: first hand what is complete to a worker.
            let waiting = !source.has_buffered_frame()
                && self.lanes.as_ref().is_none_or(ReceiverLanes::is_idle);
            if waiting {
                self.flush_batch().await;
            }
            let Some((lane, frame)) = self.next_frame(source).await? else {
                continue;
            };
            if matches!(frame, Frame::Done) {
                break;
            }
            self.on_frame(lane, frame).await?;
        }
        if !self.open.is_empty() || !self.fetched.is_empty() {
            return Err(
                DecodeError::invalid("reply", "sender finished with a file still open").into(),
            );
        }
        Ok(())
    }

    fn nothing_owed(&self) -> bool {
        self.delta_open == 0
            && self.asked.pending.is_empty()
            && self.open.is_empty()
            && self.deltas.is_empty()
            && self.fetched.is_empty()
            && self.asked.parted.is_empty()
            && self.gap_files.is_empty()
    }

    /// Ask for more of the plan while the window has room (in bursts), then say "Done" once
    /// every transfer was asked for and no more can be needed: without lanes once no delta
    /// exchange is left to send a `Fetch` (held ones included); with lanes once everything
    /// has arrived (a lost lane's files are asked for again).
    async fn ask_more(&mut self) -> Result<(), SyncError> {
        let mut frames = Vec::new();
        for _ in 0..room(self.asked.in_flight()).min(self.unasked.len()) {
            let Some(q) = self.unasked.next() else { break };
            let t = q.transfer(&self.ctx);
            let delta = self.delta_files.contains(&t.ndx);
            self.asked
                .ask(&self.ctx, t, self.lanes.as_mut(), delta, &mut frames);
        }
        let done = !self.done_sent
            && self.unasked.len() == 0
            && match self.lanes {
                None => self.delta_open == 0 && self.gap_files.is_empty(),
                Some(_) => self.nothing_owed(),
            };
        if done {
            self.done_sent = true;
            frames.push(Frame::Done);
        }
        if frames.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for f in &frames {
            f.encode(&mut buf);
        }
        self.fsink.send_encoded(buf).await
    }

    /// The next frame from the control stream or a lane; `None` after handling a lane's end.
    async fn next_frame(
        &mut self,
        source: &mut FrameSource,
    ) -> Result<Option<(u8, Frame)>, SyncError> {
        let Some(l) = self.lanes.as_mut() else {
            return Ok(Some((0, source.expect("file data").await?)));
        };
        let ev = tokio::select! {
            f = source.expect("file data") => return Ok(Some((0, f?))),
            Some(ev) = l.next() => ev,
        };
        match ev {
            LaneEvent::Frame(n, f) => Ok(Some((n, f))),
            LaneEvent::End { lane, clean } => {
                if !clean || self.asked.on_lane.values().any(|(n, _)| *n == lane) {
                    self.relaunch(lane).await?;
                }
                if let Some(l) = self.lanes.as_mut() {
                    l.lose(lane);
                }
                Ok(None)
            }
        }
    }

    /// `lane` is lost: what it owed is asked for again on the streams left.
    async fn relaunch(&mut self, lane: u8) -> Result<(), SyncError> {
        let Some(l) = self.lanes.as_mut() else {
            return Ok(());
        };
        relaunch(
            &self.ctx,
            l,
            lane,
            &mut self.asked.on_lane,
            &mut self.asked.pending,
            &mut self.open,
            &mut self.asked.parted,
            &mut self.asked.control_load,
            self.fsink,
        )
        .await
    }

    async fn on_frame(&mut self, lane: u8, frame: Frame) -> Result<(), SyncError> {
        // The parts of a large file: each goes to the writer of the part asked on this
        // stream; anything else about it is stale.
        if let Some(ndx) = lanes::frame_ndx(&frame).filter(|n| self.asked.parted.contains_key(n)) {
            let live = self.lanes.as_ref().is_none_or(|l| l.is_live(lane));
            if let (true, Some(p)) = (live, self.asked.parted.get_mut(&ndx)) {
                let mut again = None;
                let (ctx, inflight, writers) = (&self.ctx, &self.inflight, self.writers);
                if p.take(
                    ctx,
                    inflight,
                    writers,
                    &mut self.open,
                    lane,
                    frame,
                    &mut again,
                )
                .await?
                {
                    self.asked.parted.remove(&ndx);
                }
                if let Some(f) = again {
                    self.fsink.send(&f).await?;
                }
            }
            return Ok(());
        }
        // A lane's frames count only while their file is still expected there; after a lane
        // is lost, what is left of it is stale.
        if let Some(ndx) = lanes::frame_ndx(&frame) {
            let expected = self.asked.on_lane.get(&ndx).map_or(0, |(n, _)| *n);
            if lane != expected || self.lanes.as_ref().is_some_and(|l| !l.is_live(lane)) {
                return Ok(());
            }
            if matches!(
                frame,
                Frame::DataEnd { .. } | Frame::Vanished { .. } | Frame::FileFailed { .. }
            ) {
                self.asked.on_lane.remove(&ndx);
            }
        }
        match frame {
            Frame::LaneLost { lane } => {
                let Some(l) = self.lanes.as_mut() else {
                    return Err(DecodeError::invalid("frame", "lane lost without lanes").into());
                };
                if l.is_live(lane) {
                    l.lose(lane);
                    self.relaunch(lane).await?;
                }
                Ok(())
            }
            Frame::LocalPath { ndx, path } => self.on_local_path(ndx, path).await,
            Frame::DataBegin { ndx, size } => self.on_data_begin(lane, ndx, size).await,
            Frame::Nodes { ndx, groups } => self.on_nodes(ndx, groups).await,
            Frame::Data { ndx, bytes } => {
                // Issue 18, scattered deltas: a file whose gap failed drops the rest.
                if let Some(g) = self.gap_files.get_mut(&ndx) {
                    if !g.take_data()? {
                        return Ok(());
                    }
                }
                self.on_data(lane, ndx, bytes).await
            }
            Frame::GapData { ndx, ops } => self.on_gap_data(lane, ndx, ops).await,
            Frame::DataEnd { ndx, hash } => self.on_data_end(lane, ndx, hash).await,
            Frame::Vanished { ndx } => self.on_failed(ndx, CopyError::Vanished).await,
            Frame::FileFailed { ndx, message } => {
                self.on_failed(ndx, CopyError::Failed(message)).await
            }
            other => Err(DecodeError::invalid(
                "frame",
                format!("unexpected from sender: {other:?}"),
            )
            .into()),
        }
    }

    async fn on_local_path(&mut self, ndx: u32, path: Vec<u8>) -> Result<(), SyncError> {
        if !self.shared {
            return Err(DecodeError::invalid(
                "reply",
                "local path from a peer that does not share our filesystem",
            )
            .into());
        }
        let t = self
            .asked
            .pending
            .remove(&ndx)
            .ok_or_else(|| unrequested(ndx))?;
        self.inflight.below(self.max_inflight).await;
        let src = PathBuf::from(std::ffi::OsStr::from_bytes(&path));
        start_local_copy(
            self.ctx.clone(),
            &self.io,
            self.limit.clone(),
            t,
            src,
            self.inflight.clone(),
        );
        Ok(())
    }

    async fn on_data_begin(&mut self, lane: u8, ndx: u32, size: u64) -> Result<(), SyncError> {
        let t = self
            .asked
            .pending
            .remove(&ndx)
            .ok_or_else(|| unrequested(ndx))?;
        self.open.reserve(lane)?;
        let small = size <= SMALL_FILE
            && self.ctx.list.entries[ndx as usize].size <= SMALL_FILE
            && !self.ctx.opts.inplace
            && !self.ctx.opts.partial;
        let to = if small {
            Receiving::Buffer(Vec::with_capacity(size as usize))
        } else {
            Receiving::Writer(
                spawn_writer(&self.ctx, &self.inflight, self.writers, t, receive_stream).await,
            )
        };
        self.open.insert(lane, t, to);
        Ok(())
    }

    async fn on_nodes(&mut self, ndx: u32, groups: Vec<Vec<NodeRef>>) -> Result<(), SyncError> {
        // Issue 18, scattered deltas: the frame's bytes, as `Frame::wire_len` counts them.
        let nodes: usize = groups.iter().map(|g| 4 + 41 * g.len()).sum();
        self.ctx
            .stats
            .delta_tree
            .fetch_add((HEADER_LEN + 8 + nodes) as u64, Relaxed);
        let ready = match self.deltas.get_mut(&ndx) {
            Some(d) => d.answer(groups)?,
            None => {
                let t = self
                    .asked
                    .pending
                    .remove(&ndx)
                    .ok_or_else(|| unrequested(ndx))?;
                if !self.delta_files.contains(&ndx) {
                    return Err(unrequested(ndx));
                }
                let basis = self.basis(ndx).await;
                let size = self.ctx.list.entries[ndx as usize].size;
                let mut d = ReceiverDelta::new(t, basis, size);
                let ready = d.answer(groups)?;
                self.deltas.insert(ndx, d);
                ready
            }
        };
        if !ready {
            return Ok(());
        }
        if let Some(d) = self.deltas.get_mut(&ndx) {
            let mut frames = d.next_frames(ndx);
            // Issue 18, scattered deltas: the gaps' sums go before the last `Fetch`.
            if d.fetching && self.gaps {
                let old = self
                    .ctx
                    .root
                    .as_deref()
                    .and_then(|root| fsys::open_basis(root, &d.basis.path).ok());
                if let Some(old) = old {
                    let (sums, file) = plan_gaps(d, ndx, &File::from(old));
                    if let Some(file) = file {
                        self.gap_files.insert(ndx, file);
                    }
                    frames.splice(0..0, sums);
                }
            }
            for f in &frames {
                self.ctx
                    .stats
                    .delta_asks
                    .fetch_add(f.wire_len() as u64, Relaxed);
                self.fsink.send(f).await?;
            }
        }
        if self.deltas.get(&ndx).is_some_and(|d| d.fetching) {
            let d = self.deltas.remove(&ndx).ok_or_else(|| unrequested(ndx))?;
            self.delta_closed().await?;
            self.fetched.insert(ndx, d);
        }
        Ok(())
    }

    /// The index of `ndx`'s old version, waiting for the indexer if it is not there yet (an
    /// old file that could not be indexed has an empty index: every chunk is fetched).
    async fn basis(&mut self, ndx: u32) -> Arc<BasisIndex> {
        loop {
            if let Some(b) = self.bases.remove(&ndx) {
                return b;
            }
            let _w = crate::liveness::waiting("receiver: waiting for an old version to be indexed");
            match self.index_rx.recv().await {
                Some((n, b)) => {
                    self.bases.insert(n, b);
                }
                None => return Arc::default(),
            }
        }
    }

    /// One more delta exchange sent its last `Fetch` (or ended): without lanes, "Done" goes
    /// once none is left.
    async fn delta_closed(&mut self) -> Result<(), SyncError> {
        self.delta_open -= 1;
        // Issue 16, adapt during the run: room in the window for the next file.
        if let Some(a) = self.adapting.as_mut() {
            a.closed();
        }
        // "Done", once due, goes from the loop (`ask_more`).
        self.adapt_step().await
    }

    /// Issue 16, adapt during the run: take a look at the run (an `--explain` line when the
    /// variant changes), then ask for held files while the window has room — by delta, or
    /// whole once the decision says so (no longer a delta file then).
    async fn adapt_step(&mut self) -> Result<(), SyncError> {
        let Some(a) = self.adapting.as_mut() else {
            return Ok(());
        };
        if let Some(message) = a.observe(&self.ctx) {
            self.ctx.sink.event(Event::Explain { message });
        }
        let mut frames = Vec::new();
        while let Some(next) = a.next() {
            let t = match next {
                Next::Delta(t) => {
                    frames.push(Frame::DeltaRequest {
                        ndx: t.ndx,
                        iflags: t.itemize.to_flags(),
                    });
                    t
                }
                Next::Whole(t) => {
                    self.delta_files.remove(&t.ndx);
                    self.delta_open -= 1;
                    frames.push(Frame::Request {
                        ndx: t.ndx,
                        iflags: t.itemize.to_flags(),
                    });
                    t
                }
            };
            self.asked.pending.insert(t.ndx, t);
        }
        for f in &frames {
            self.fsink.send(f).await?;
        }
        Ok(())
    }

    /// Issue 16, adapt during the run: `ndx` (answered or failed) was a file turned whole:
    /// room in the window.
    async fn turned_answered(&mut self, ndx: u32) -> Result<(), SyncError> {
        if self
            .adapting
            .as_mut()
            .is_some_and(|a| a.answered_turned(ndx))
        {
            self.adapt_step().await?;
        }
        Ok(())
    }

    /// A fetched delta exchange's data begins: its writer (or buffer) is set up now.
    async fn open_fetched(&mut self, lane: u8, ndx: u32) -> Result<(), SyncError> {
        if let Some(d) = self.fetched.remove(&ndx) {
            self.open.reserve(lane)?;
            let t = d.transfer;
            let to = delta_receiving(&self.ctx, &self.inflight, self.writers, d).await;
            self.open.insert(lane, t, to);
        }
        Ok(())
    }

    async fn on_data(&mut self, lane: u8, ndx: u32, bytes: Vec<u8>) -> Result<(), SyncError> {
        self.open_fetched(lane, ndx).await?;
        let (t, to) = self.open.get_mut(ndx).ok_or_else(|| unrequested(ndx))?;
        let t = *t;
        match to {
            // A writer that failed has dropped its receiver; its job reports the error.
            Receiving::Writer(tx) => {
                let _ = tx.send(Chunk::Data(bytes)).await;
            }
            Receiving::Buffer(b) if b.len() + bytes.len() <= SMALL_BUFFER_MAX => {
                b.extend_from_slice(&bytes);
            }
            Receiving::Chunks(d, chunks, got) => {
                *got += bytes.len() as u64;
                if *got > d.size {
                    return Err(DecodeError::invalid(
                        "data",
                        format!("more chunk data than file {ndx} has"),
                    )
                    .into());
                }
                chunks.push(bytes);
            }
            Receiving::Buffer(b) => {
                // Grew since it was listed: a writer takes it from here.
                let so_far = std::mem::take(b);
                let tx =
                    spawn_writer(&self.ctx, &self.inflight, self.writers, t, receive_stream).await;
                let _ = tx.send(Chunk::Data(so_far)).await;
                let _ = tx.send(Chunk::Data(bytes)).await;
                if let Some((_, to)) = self.open.get_mut(ndx) {
                    *to = Receiving::Writer(tx);
                }
            }
        }
        Ok(())
    }

    async fn on_data_end(&mut self, lane: u8, ndx: u32, hash: [u8; 32]) -> Result<(), SyncError> {
        self.open_fetched(lane, ndx).await?;
        // Issue 18, scattered deltas:
        if let Some(g) = self.gap_files.remove(&ndx) {
            g.check_ended()?;
            if g.failed {
                return self.resend_whole(ndx).await;
            }
        }
        let complete = match self.open.end(ndx).ok_or_else(|| unrequested(ndx))? {
            (_, Receiving::Writer(tx)) => {
                let _ = tx.send(Chunk::End(hash)).await;
                None
            }
            (t, Receiving::Buffer(data)) => Some(SmallFile::Whole { t, data, hash }),
            (_, Receiving::Chunks(d, chunks, _)) => Some(SmallFile::Delta { d, chunks, hash }),
        };
        if let Some(f) = complete {
            self.batch_bytes += f.len();
            self.batch.push(f);
            if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
                self.flush_batch().await;
            }
        }
        self.turned_answered(ndx).await
    }

    // Issue 18, scattered deltas:
    /// A gap's description: its chunks rebuilt and checked go on as their data; a gap that
    /// does not check fails the file (asked for whole at its end).
    async fn on_gap_data(
        &mut self,
        lane: u8,
        ndx: u32,
        ops: Vec<crate::merkle::gapsum::GapOp>,
    ) -> Result<(), SyncError> {
        self.open_fetched(lane, ndx).await?;
        let g = self
            .gap_files
            .get_mut(&ndx)
            .ok_or_else(|| unrequested(ndx))?;
        let old = self
            .ctx
            .root
            .as_deref()
            .and_then(|root| fsys::open_basis(root, &g.path).ok())
            .map(File::from);
        if let Some(chunks) = g.rebuild(&ops, old.as_ref())? {
            for bytes in chunks {
                self.on_data(lane, ndx, bytes).await?;
            }
        }
        Ok(())
    }

    /// Issue 18, scattered deltas: `ndx`'s exchange ended with a gap that did not check:
    /// what was written of it is discarded and the file is asked for whole (never a wrong
    /// file: a false match of the gap's short sums costs a resend).
    async fn resend_whole(&mut self, ndx: u32) -> Result<(), SyncError> {
        let (t, to) = self.open.end(ndx).ok_or_else(|| unrequested(ndx))?;
        if let Receiving::Writer(tx) = to {
            let _ = tx.send(Chunk::Abandon).await;
        }
        self.delta_files.remove(&ndx);
        let mut frames = Vec::new();
        self.asked
            .ask(&self.ctx, t, self.lanes.as_mut(), false, &mut frames);
        for f in &frames {
            self.fsink.send(f).await?;
        }
        Ok(())
    }

    /// The sender could not send `ndx`: whichever stage the file was at, it ends here (a
    /// writer discards what it wrote) and the sender's reason is what is reported. A frame
    /// about a file nobody waits for (a stale lane's) is ignored.
    async fn on_failed(&mut self, ndx: u32, err: CopyError) -> Result<(), SyncError> {
        let waited = self.asked.pending.contains_key(&ndx)
            || self.open.contains(ndx)
            || self.deltas.contains_key(&ndx)
            || self.fetched.contains_key(&ndx);
        if !waited {
            return Err(DecodeError::invalid(
                "frame",
                format!("unexpected from sender: a failure for index {ndx}"),
            )
            .into());
        }
        // Issue 18, scattered deltas:
        self.gap_files.remove(&ndx);
        let (t, open_delta) = if let Some((t, to)) = self.open.end(ndx) {
            if let Receiving::Writer(tx) = to {
                let _ = tx.send(Chunk::Abandon).await;
            }
            (t, false)
        } else if let Some(d) = self.fetched.remove(&ndx) {
            (d.transfer, false)
        } else if let Some(d) = self.deltas.remove(&ndx) {
            self.asked.pending.remove(&ndx);
            (d.transfer, true)
        } else {
            let t = self
                .asked
                .pending
                .remove(&ndx)
                .ok_or_else(|| unrequested(ndx))?;
            (t, self.delta_files.contains(&ndx))
        };
        if open_delta {
            self.delta_closed().await?;
        }
        record(&self.ctx, t, Err(err));
        self.turned_answered(ndx).await
    }

    /// Hand the complete small files to a worker.
    async fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_bytes = 0;
        let files = std::mem::take(&mut self.batch);
        spawn_small_batch(&self.ctx, &self.inflight, self.batch_limit, files).await;
    }

    /// End the phase after `result`: what arrived whole is written, unfinished files and parts
    /// are discarded, every started job is waited for (nothing half-written stays), and on
    /// success what the sender never answered is reported. The lanes are given back for their
    /// report.
    pub(super) async fn finish(
        mut self,
        result: Result<(), SyncError>,
    ) -> Result<Option<ReceiverLanes>, SyncError> {
        // Files that arrived whole are written even if the session then failed.
        self.flush_batch().await;
        // Close the channels of unfinished files and parts (their writers discard them).
        self.open.close_all();
        for p in self.asked.parted.values_mut() {
            p.close_all();
        }
        self.inflight.below(1).await;
        result?;
        let never = |ndx: u32| {
            format!(
                "sender never answered for \"{}\"",
                String::from_utf8_lossy(&self.ctx.list.entries[ndx as usize].path)
            )
        };
        for p in self.asked.parted.values() {
            p.file.fail(&self.ctx, never(p.file.t.ndx));
        }
        self.asked.parted.clear();
        for t in self.asked.pending.values() {
            record(&self.ctx, *t, Err(CopyError::Failed(never(t.ndx))));
        }
        // Issue 16, adapt during the run: "Done" waits for every held file (and every file
        // not yet asked for), so none is left here; should one be, it is reported, not lost
        // silently.
        let held = self.adapting.iter().flat_map(|a| a.held.iter().copied());
        let unasked = self
            .unasked
            .as_slice()
            .iter()
            .map(|q| q.transfer(&self.ctx));
        for t in held.chain(unasked) {
            record(&self.ctx, t, Err(CopyError::Failed(never(t.ndx))));
        }
        Ok(self.lanes.take())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;

    fn plan(ndxs: &[(u32, bool)]) -> Plan {
        Plan {
            transfers: ndxs
                .iter()
                .map(|&(ndx, new)| {
                    let mut itemize = Itemize::new('>', FileKind::File);
                    itemize.new = new;
                    Queued::new(&Transfer {
                        ndx,
                        itemize,
                        old_perms: None,
                    })
                })
                .collect(),
            ..Plan::default()
        }
    }

    /// Files that replace themselves go by delta; a new file only when a candidate fits; and
    /// none with `-W` or `--inplace`.
    #[test]
    fn delta_files_are_those_with_an_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            entry("changed", FileKind::File, 5_000, 0o644),
            entry("lib-0123456789abcdef.so", FileKind::File, 90_000, 0o644),
            entry("brand-new", FileKind::File, 90_000, 0o644),
            entry("empty", FileKind::File, 0, 0o644),
        ];
        let list = FileList {
            entries: entries.clone(),
        };
        let cands = BasisCandidates::new(
            vec![(b"lib-fedcba9876543210.so".to_vec(), 80_000)],
            &list,
            None,
        );
        let p = plan(&[(0, false), (1, true), (2, true), (3, false)]);
        let (c, _) = ctx(dir.path(), entries.clone(), SyncOptions::archive());
        let chosen = choose_bases(&c, &p, &cands, true);
        assert_eq!(
            chosen,
            vec![
                (0, b"changed".to_vec()),
                (1, b"lib-fedcba9876543210.so".to_vec())
            ]
        );
        assert!(
            choose_bases(&c, &p, &cands, false).is_empty(),
            "peer without delta"
        );
        let mut opts = SyncOptions::archive();
        opts.whole_file = true;
        let (c, _) = ctx(dir.path(), entries, opts);
        assert!(choose_bases(&c, &p, &cands, true).is_empty(), "-W");
    }

    /// Without lanes every file is one request, delta files as `DeltaRequest`, and every one
    /// of them is expected.
    #[test]
    fn requests_follow_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            entry("a", FileKind::File, 10, 0o644),
            entry("b", FileKind::File, 100 << 20, 0o644),
            entry("c", FileKind::File, 10, 0o644),
        ];
        let (c, _) = ctx(dir.path(), entries, SyncOptions::archive());
        let mut asked = Asked::default();
        let mut frames = Vec::new();
        for q in plan(&[(0, true), (1, true), (2, false)]).transfers {
            let t = q.transfer(&c);
            asked.ask(&c, t, None, t.ndx == 2, &mut frames);
        }
        assert!(matches!(frames[0], Frame::Request { ndx: 0, .. }));
        // A large file without lanes is one whole request, not parts.
        assert!(matches!(frames[1], Frame::Request { ndx: 1, .. }));
        assert!(matches!(frames[2], Frame::DeltaRequest { ndx: 2, .. }));
        assert_eq!(asked.pending.len(), 3);
        assert_eq!(asked.in_flight(), 3);
        assert!(asked.parted.is_empty() && asked.on_lane.is_empty());
    }

    /// A transfer waiting to be asked for keeps everything a request and its file need.
    #[test]
    fn a_queued_transfer_comes_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            entry("a", FileKind::File, 10, 0o644),
            entry("b", FileKind::File, 10, 0o4755),
        ];
        let (c, _) = ctx(dir.path(), entries, SyncOptions::archive());
        let mut changed = Itemize::new('>', FileKind::File);
        (changed.size, changed.time, changed.perms, changed.acls) = (true, true, true, true);
        let mut new = Itemize::new('>', FileKind::File);
        new.new = true;
        for t in [
            Transfer {
                ndx: 1,
                itemize: changed,
                old_perms: Some(0o4755),
            },
            Transfer {
                ndx: 0,
                itemize: new,
                old_perms: None,
            },
            Transfer {
                ndx: 0,
                itemize: changed,
                old_perms: Some(0),
            },
        ] {
            let back = Queued::new(&t).transfer(&c);
            assert_eq!(
                (back.ndx, back.itemize, back.old_perms),
                (t.ndx, t.itemize, t.old_perms)
            );
        }
        assert_eq!(std::mem::size_of::<Queued>(), 8);
    }

    /// The window fills at once, then waits for a burst's worth of answers before asking for
    /// more, and never holds more than its size.
    #[test]
    fn the_window_refills_in_bursts() {
        assert_eq!(room(0), REQUEST_WINDOW);
        assert_eq!(room(REQUEST_WINDOW), 0);
        assert_eq!(
            room(REQUEST_WINDOW - REFILL + 1),
            0,
            "less than a burst free"
        );
        assert_eq!(room(REQUEST_WINDOW - REFILL), REFILL);
        assert!((0..=REQUEST_WINDOW).all(|n| n + room(n) <= REQUEST_WINDOW));
    }
}
