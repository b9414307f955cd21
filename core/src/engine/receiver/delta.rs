//! The delta exchange on the receiving side: the index of each file's old version (its chunk
//! tree's ranges, stamped so a change is noticed), the top-down walk of the sender's tree
//! ([`ReceiverDelta`]), and the rebuild from old ranges and fetched chunks, verified to the
//! root. Issue 18, cheap deltas: a large old version is written into its new file's staged
//! temp as it is indexed ([`Prewritten`]), so the rebuild only writes the fetched chunks and
//! copies the runs that moved. Does not choose the old version (`engine::basis`) or read
//! frames.

#[allow(unused_imports)]
use super::*;
// Issue 18, chunk cache:
use crate::engine::chunkcache;

/// The receiver's index of an old version of a file: where each of its tree's nodes is.
#[derive(Debug, Default)]
pub(super) struct BasisIndex {
    pub(super) ranges: crate::merkle::digest_map::DigestMap<(u64, u64)>,
    /// What the old file was when indexed: if it is not that any more when the new file is
    /// rebuilt from it, the ranges lie.
    pub(super) stamp: Option<BasisStamp>,
    /// The old file: the entry's own path, or another destination file for a new entry.
    pub(super) path: Vec<u8>,
    // Issue 18, chunk cache:
    /// The old file's chunks in order (kept only with a chunk-index cache): with the fetched
    /// ones they make the rebuilt file's chunk list, recorded for the next run.
    pub(super) chunks: Vec<crate::merkle::Chunk>,
    /// Issue 18, cheap deltas: the new file's staged temp, holding the old version's bytes
    /// exactly as they were indexed (taken by the rebuild).
    pub(super) prewritten: std::sync::Mutex<Option<Prewritten>>,
}

#[cfg(test)]
impl BasisIndex {
    /// The index of the old file `name` in `dir` as `tree` describes it, stamped as it is now
    /// (no chunk list, nothing written ahead).
    pub(super) fn of_file(tree: &ChunkTree, dir: &std::path::Path, name: &str) -> Arc<Self> {
        let st = rustix::fs::stat(dir.join(name)).unwrap();
        Arc::new(BasisIndex {
            ranges: tree.ranges(),
            stamp: Some(BasisStamp::of(&st)),
            path: name.as_bytes().to_vec(),
            ..Default::default()
        })
    }
}

/// Issue 18, cheap deltas: old versions at least this large are written into their new
/// file's staged temp while they are indexed (below it the rebuild's copy is short, and
/// many files are rebuilt side by side anyway).
pub(super) const PREWRITE_MIN: u64 = 4 << 20;

/// Prewritten temps waiting for their exchange, at most (beyond one): bytes and files. The
/// indexer may run far ahead of the exchange; this bounds the disk and descriptors it holds.
const PREWRITE_AHEAD_BYTES: u64 = 2 << 30;
const PREWRITE_AHEAD_FILES: usize = 16;

/// Issue 18, cheap deltas: the files whose old version may be written into their staged
/// temp as it is indexed, and what those temps may hold in all.
#[derive(Debug, Default)]
pub(super) struct PrewritePlan {
    transfers: HashMap<u32, Queued>,
    budget: Arc<std::sync::Mutex<(u64, usize)>>,
}

impl PrewritePlan {
    /// Every delta file of at least [`PREWRITE_MIN`] bytes rebuilt into a staged temp (none
    /// with `--dry-run`, `--inplace` or `--append`, nor when the old version may be
    /// reflinked instead: see [`fsys::copies_by_reference`]; nor with `--partial`, whose
    /// promise is that what a stopped run keeps is a prefix of the new file — a temp written
    /// ahead holds the old version past what has arrived).
    pub(super) fn new(ctx: &Ctx, transfers: &[Queued], delta: &HashSet<u32>) -> Self {
        let o = &ctx.opts;
        let reflinks = ctx.root.as_deref().is_none_or(|r| match r.dir(b"") {
            Ok(d) => fsys::copies_by_reference(d),
            Err(_) => true,
        });
        if o.dry_run || o.inplace || o.partial || o.write.append > 0 || reflinks || delta.is_empty()
        {
            return PrewritePlan::default();
        }
        PrewritePlan {
            transfers: transfers
                .iter()
                .filter(|q| {
                    delta.contains(&q.ndx) && ctx.list.entries[q.ndx as usize].size >= PREWRITE_MIN
                })
                .map(|q| (q.ndx, *q))
                .collect(),
            budget: Arc::default(),
        }
    }

    /// Room for an old version of `bytes` to wait in a staged temp, if there is.
    fn grant(&self, bytes: u64) -> Option<PrewriteGrant> {
        let mut b = self.budget.lock().ok()?;
        let (held, files) = *b;
        if files > 0 && (held + bytes > PREWRITE_AHEAD_BYTES || files >= PREWRITE_AHEAD_FILES) {
            return None;
        }
        *b = (held + bytes, files + 1);
        Some(PrewriteGrant {
            budget: self.budget.clone(),
            bytes,
        })
    }
}

/// A prewritten temp's share of [`PrewritePlan`]'s bound, given back when dropped.
#[derive(Debug)]
struct PrewriteGrant {
    budget: Arc<std::sync::Mutex<(u64, usize)>>,
    bytes: u64,
}

impl Drop for PrewriteGrant {
    fn drop(&mut self) {
        if let Ok(mut b) = self.budget.lock() {
            *b = (b.0.saturating_sub(self.bytes), b.1.saturating_sub(1));
        }
    }
}

/// Issue 18, cheap deltas: a new file's staged temp that holds its old version, copied as
/// that was read to be indexed (each stretch from the page cache the read just filled, at
/// its offset), so the rebuild leaves in place what did not move. What it holds is what was
/// hashed as long as the old file did not change — the rebuild's stamp check, which every
/// copy from the old file relies on. Removed when dropped unless the rebuild took it.
#[derive(Debug)]
pub(super) struct Prewritten {
    staged: Option<(Arc<OwnedFd>, File, Staging)>,
    _grant: PrewriteGrant,
}

impl Prewritten {
    /// The staged temp, for the rebuild to finish (or discard) from here on.
    fn take(mut self) -> Option<(Arc<OwnedFd>, File, Staging)> {
        self.staged.take()
    }
}

impl Drop for Prewritten {
    fn drop(&mut self) {
        if let Some((dir, _, staging)) = self.staged.take() {
            fsys::discard(&*dir, &staging);
        }
    }
}

/// Whether an indexed old file is still what was indexed.
pub(super) enum Basis {
    Same,
    /// Only its change time moved.
    Touched,
    Changed,
}

/// Inode, size, modification and change times of an indexed old file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BasisStamp(pub(super) [i64; 6]);

impl BasisStamp {
    /// Inode, size and modification time: what changes when the content does (unless the
    /// modification time is set back, which also moves the change time).
    pub(super) fn content(&self) -> [i64; 4] {
        [self.0[0], self.0[1], self.0[2], self.0[3]]
    }

    pub(super) fn of(st: &Stat) -> Self {
        BasisStamp([
            st.st_ino as i64,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec as i64,
            st.st_ctime,
            st.st_ctime_nsec as i64,
        ])
    }
}

/// Files at least this large that replace an old version of themselves are updated by delta
/// (an unchanged one then costs its root alone).
pub(super) const SMALL_DELTA_MIN: u64 = 1;

/// Chunk the old versions of the files to update by delta, in parallel: an index for every
/// job, in order (empty where the old file could not be read: then every chunk is fetched).
pub(super) fn index_bases(
    ctx: &Ctx,
    jobs: &[(u32, Vec<u8>)],
    prewrite: &PrewritePlan,
) -> Vec<(u32, Arc<BasisIndex>)> {
    use rayon::prelude::*;
    let index = |(ndx, basis): &(u32, Vec<u8>)| {
        (
            *ndx,
            index_basis(ctx, *ndx, basis, prewrite).unwrap_or_default(),
        )
    };
    // Small files one after the other: waking the other cores costs more than they would
    // save (a large file is cut and hashed on all cores by itself).
    let bytes: u64 = jobs
        .iter()
        .map(|(n, _)| ctx.list.entries[*n as usize].size)
        .sum();
    if bytes < 16 << 20 {
        return jobs.iter().map(index).collect();
    }
    jobs.par_iter().map(index).collect()
}

/// Chunk one old version (or take its chunks from the chunk-index cache); if `prewrite`
/// names the file and has room, its bytes are written into the new file's staged temp as
/// they are read.
pub(super) fn index_basis(
    ctx: &Ctx,
    ndx: u32,
    basis: &[u8],
    prewrite: &PrewritePlan,
) -> Option<Arc<BasisIndex>> {
    let e = &ctx.list.entries[ndx as usize];
    let fd = fsys::open_basis(ctx.root.as_deref()?, basis).ok()?;
    let st = rustix::fs::fstat(&fd).ok();
    let stamp = st.as_ref().map(BasisStamp::of);
    let old_size = st.map_or(0, |st| st.st_size as u64);
    // Issue 18, cheap deltas: the staged temp is made only if the file is read (not taken
    // from the cache), and kept only if every byte read was written to it.
    let mut staged: Option<Prewritten> = None;
    let stage = || {
        let t = prewrite
            .transfers
            .get(&ndx)
            .filter(|_| old_size >= PREWRITE_MIN)?;
        let grant = prewrite.grant(old_size)?;
        let (dir, file, staging) = open_dest(ctx, e, &t.transfer(ctx)).ok()?;
        let copy = file.try_clone();
        let p = Prewritten {
            staged: Some((dir, file, staging)),
            _grant: grant,
        };
        let copy = copy.ok()?;
        staged = Some(p);
        Some(copy)
    };
    // Issue 18, chunk cache: an unchanged old file is indexed from the cache, unread.
    let (chunks, copied) = crate::engine::chunkcache::index_file_copying(
        &File::from(fd),
        delta_params(
            e.size,
            ctx.opts.chunk_avg,
            tune::chunk_bdp(&ctx.opts),
            !ctx.opts.no_gap_sums,
        ),
        ctx.opts.chunk_cache.as_deref(),
        &ctx.stats,
        stage,
    )
    .ok()?;
    // A temp that was not written whole is removed (dropped) here.
    let prewritten = staged.filter(|_| copied.is_some());
    let keep = ctx.opts.chunk_cache.is_some() && e.size >= crate::engine::chunkcache::MIN_FILE;
    Some(Arc::new(BasisIndex {
        // Issue 18, the last time targets: the ranges alone (not the tree's index of them).
        ranges: ChunkTree::ranges_of(&chunks, DEFAULT_FANOUT_BITS),
        stamp,
        path: basis.to_vec(),
        chunks: if keep { chunks } else { Vec::new() },
        prewritten: std::sync::Mutex::new(prewritten),
    }))
}

/// One file's top-down exchange on the receiving side: the sender's tree as far as it has
/// been shown, in file order, each node marked while its expansion is outstanding.
pub(super) struct ReceiverDelta {
    pub(super) transfer: Transfer,
    pub(super) basis: Arc<BasisIndex>,
    pub(super) size: u64,
    pub(super) pieces: Vec<NodeRef>,
    pub(super) pending: Vec<bool>,
    /// The sender's root (`None`: an empty file); every expansion is checked against it.
    pub(super) root: Option<NodeRef>,
    pub(super) started: bool,
    pub(super) outstanding: usize,
    pub(super) fetching: bool,
    /// Issue 18, scattered deltas: bytes of the fetched chunks that their gaps' descriptions
    /// copied from the old file (counted as matched, not literal, once the file is in).
    pub(super) gap_copied: Arc<std::sync::atomic::AtomicU64>,
}

impl ReceiverDelta {
    pub(super) fn new(transfer: Transfer, basis: Arc<BasisIndex>, size: u64) -> Self {
        ReceiverDelta {
            transfer,
            basis,
            size,
            pieces: Vec::new(),
            pending: Vec::new(),
            root: None,
            started: false,
            outstanding: 0,
            fetching: false,
            gap_copied: Arc::default(),
        }
    }

    pub(super) fn known(&self, n: &NodeRef) -> bool {
        self.basis
            .ranges
            .get(&n.hash)
            .is_some_and(|&(_, len)| len == n.size)
    }

    /// Take one `Nodes` answer; true when no expansion is outstanding any more.
    pub(super) fn answer(&mut self, groups: Vec<Vec<NodeRef>>) -> Result<bool, SyncError> {
        let bad = |why: &str| -> SyncError { DecodeError::invalid("nodes", why.to_owned()).into() };
        if !self.started {
            self.started = true;
            let [root] = <[Vec<NodeRef>; 1]>::try_from(groups)
                .map_err(|_| bad("expected the root alone"))?;
            if root.len() > 1 {
                return Err(bad("more than one root"));
            }
            self.root = root.first().copied();
            self.pending = vec![false; root.len()];
            self.pieces = root;
        } else {
            if self.outstanding == 0 {
                return Err(bad("nodes nobody asked for"));
            }
            self.outstanding -= 1;
            let mut groups = groups.into_iter();
            let mut pieces = Vec::with_capacity(self.pieces.len());
            let mut pending = Vec::with_capacity(self.pieces.len());
            let mut answered = 0usize;
            let want = groups.len();
            for (n, p) in self.pieces.iter().zip(&self.pending) {
                if *p && answered < want {
                    let kids = groups.next().ok_or_else(|| bad("too few groups"))?;
                    let sum: u64 = kids.iter().map(|k| k.size).sum();
                    if kids.is_empty()
                        || sum != n.size
                        || kids.iter().any(|k| k.size == 0 || k.level + 1 != n.level)
                    {
                        return Err(bad("children do not add up to their parent"));
                    }
                    // The children must hash to the parent: the root then vouches for every
                    // node and chunk the rebuilt file is made of.
                    if node_hash(n.level, &kids) != n.hash {
                        return Err(bad("children do not hash to their parent"));
                    }
                    pending.extend(std::iter::repeat_n(false, kids.len()));
                    pieces.extend(kids);
                    answered += 1;
                } else {
                    pieces.push(*n);
                    pending.push(*p);
                }
            }
            if answered != want {
                return Err(bad("more groups than nodes asked"));
            }
            // At most one piece per 64 bytes (FastCDC's smallest chunk): a peer cannot make
            // us hold more than the file justifies.
            if pieces.len() as u64 > self.size / 64 + 16 {
                return Err(bad("more nodes than the file can have"));
            }
            self.pieces = pieces;
            self.pending = pending;
        }
        Ok(self.outstanding == 0)
    }

    /// The frames for the next round: expansions of unknown interior nodes, or (when every
    /// piece is known or a chunk) the fetch of the unknown chunks, after which data flows.
    pub(super) fn next_frames(&mut self, ndx: u32) -> Vec<Frame> {
        let mut expand = Vec::new();
        for (i, n) in self.pieces.iter().enumerate() {
            if n.level > 0 && !self.known(n) {
                self.pending[i] = true;
                expand.push(n.hash);
            }
        }
        if !expand.is_empty() {
            let frames: Vec<Frame> = expand
                .chunks(MAX_EXPAND)
                .map(|c| Frame::Expand {
                    ndx,
                    hashes: c.to_vec(),
                })
                .collect();
            self.outstanding = frames.len();
            return frames;
        }
        let fetch: Vec<[u8; 32]> = self
            .pieces
            .iter()
            .filter(|n| !self.known(n))
            .map(|n| n.hash)
            .collect();
        self.fetching = true;
        let mut frames: Vec<Frame> = fetch
            .chunks(MAX_FETCH)
            .map(|c| Frame::Fetch {
                ndx,
                hashes: c.to_vec(),
                last: false,
            })
            .collect();
        match frames.last_mut() {
            Some(Frame::Fetch { last, .. }) => *last = true,
            _ => frames.push(Frame::Fetch {
                ndx,
                hashes: vec![],
                last: true,
            }),
        }
        frames
    }
}

/// Issue 18, cheap deltas: a run of old data is copied in pieces of at most this much, and
/// the writeback of a piece of at least [`WRITEBACK_RUN_MIN`] started once it is copied, so
/// the disk takes the file while the rebuild goes on (one byte inserted at the front makes
/// the whole file one run).
const RUN_MAX: u64 = 16 << 20;
const WRITEBACK_RUN_MIN: u64 = 1 << 20;

/// Rebuild a file from its old version and the fetched chunks (in piece order), then put it in
/// place. What is copied from the old file was indexed from it (and the old file must still be
/// what was indexed); every fetched chunk must match its hash; every node was checked against
/// its parent up to the root the sender ends with. Runs of old data are copied in the kernel.
pub(super) fn receive_delta(
    ctx: &Ctx,
    t: Transfer,
    d: &ReceiverDelta,
    mut rx: mpsc::Receiver<Chunk>,
) -> Result<u64, CopyError> {
    let e = &ctx.list.entries[t.ndx as usize];
    let _w = writer_board(e);
    rebuild(ctx, t, d, || rx.blocking_recv())
}

/// [`receive_delta`]'s work, with the fetched chunks (then the sender's `End`) from `next`:
/// a writer's channel, or the chunks of a small file buffered whole.
pub(super) fn rebuild(
    ctx: &Ctx,
    t: Transfer,
    d: &ReceiverDelta,
    mut next: impl FnMut() -> Option<Chunk>,
) -> Result<u64, CopyError> {
    use std::os::unix::fs::FileExt;
    let e = &ctx.list.entries[t.ndx as usize];
    let (_, name) = split_parent(&e.path);
    // Issue 18, cheap deltas: a temp that already holds the old version as indexed.
    let prewritten = d
        .basis
        .prewritten
        .lock()
        .ok()
        .and_then(|mut p| p.take())
        .and_then(Prewritten::take);
    let old_in_temp = prewritten.is_some();
    let (dir, file, staging) = match prewritten {
        Some(p) => p,
        None => open_dest(ctx, e, &t)?,
    };
    let fail = |msg: String| {
        fsys::discard(&*dir, &staging);
        CopyError::Failed(msg)
    };
    let shown = ctx.display(&e.path);
    let old = ctx
        .root
        .as_deref()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        .and_then(|root| fsys::open_basis(root, &d.basis.path))
        .map(File::from);
    let old = match old {
        Ok(f) => Some(f),
        Err(_) if d.basis.ranges.is_empty() => None,
        Err(err) => return Err(fail(format!("open basis \"{}\": {err}", shown.display()))),
    };
    // Whether the old file is still what was indexed: its content surely (`Same`), or
    // perhaps (`Touched`: only its change time moved — a hard link to it was replaced, its
    // mode set — and the rebuilt file is then checked whole against the root).
    let still = |old: &File| {
        let now = rustix::fs::fstat(old).ok().map(|st| BasisStamp::of(&st));
        match (now, d.basis.stamp) {
            (Some(a), Some(b)) if a == b => Basis::Same,
            (Some(a), Some(b)) if a.content() == b.content() => Basis::Touched,
            _ => Basis::Changed,
        }
    };
    let mut touched = false;
    let changed = || {
        fail(format!(
            "\"{}\": the old file changed during the update (file left unchanged)",
            shown.display()
        ))
    };
    if let Some(o) = &old {
        if !d.basis.ranges.is_empty() {
            match still(o) {
                Basis::Same => {}
                Basis::Touched => touched = true,
                Basis::Changed => return Err(changed()),
            }
        }
    }
    let (mut literal, mut matched) = (0u64, 0u64);
    // A pending run of old data: (old offset, new offset, length).
    let mut run: Option<(u64, u64, u64)> = None;
    let flush = |run: &mut Option<(u64, u64, u64)>| -> Result<(), String> {
        if let (Some((from, to, len)), Some(o)) = (run.take(), &old) {
            let n = crate::engine::io::copy_range_at(o, from, &file, to, len)
                .map_err(|err| format!("copy from basis: {err}"))?;
            if n != len {
                return Err("the old file shrank during the update".into());
            }
            // Issue 18, cheap deltas: a long run's writeback starts now, while the rebuild
            // goes on (see `start_writeback`).
            if len >= WRITEBACK_RUN_MIN {
                crate::engine::io::start_writeback(&file, to, len);
            }
        }
        Ok(())
    };
    let mut at = 0u64;
    // Issue 18, chunk cache: the rebuilt file's chunks, if they are to be recorded.
    let mut written = (ctx.opts.chunk_cache.is_some() && e.size >= chunkcache::MIN_FILE)
        .then(|| chunkcache::WrittenChunks::new(&d.basis.chunks));
    for n in &d.pieces {
        if let Some(w) = &mut written {
            w.piece(n, d.basis.ranges.get(&n.hash).copied());
        }
        match d.basis.ranges.get(&n.hash) {
            // Issue 18, cheap deltas: already there, copied as the old version was indexed
            // (vouched for by the same stamp checks as a copied run).
            Some(&(off, len)) if len == n.size && old_in_temp && off == at => {
                flush(&mut run).map_err(&fail)?;
                matched += len;
            }
            Some(&(off, len)) if len == n.size && old.is_some() => {
                run = match run {
                    Some((from, to, l)) if from + l == off && l + len <= RUN_MAX => {
                        Some((from, to, l + len))
                    }
                    other => {
                        let mut other = other;
                        flush(&mut other).map_err(&fail)?;
                        Some((off, at, len))
                    }
                };
                matched += len;
            }
            _ => {
                flush(&mut run).map_err(&fail)?;
                let bytes = match next() {
                    Some(Chunk::Data(bytes)) => bytes,
                    Some(Chunk::Abandon) => {
                        fsys::discard(&*dir, &staging);
                        return Err(CopyError::Abandoned);
                    }
                    None => {
                        // Issue 15, tempfiles: --partial keeps the checked prefix (never
                        // prewritten: see `PrewritePlan::new`).
                        staging::stopped(ctx, &dir, &staging, name);
                        return Err(CopyError::Failed(format!(
                            "connection closed while receiving \"{}\"",
                            shown.display()
                        )));
                    }
                    Some(Chunk::End(_)) => {
                        return Err(fail(format!(
                            "sender ended \"{}\" before its chunks (file left unchanged)",
                            shown.display()
                        )))
                    }
                };
                if n.level != 0
                    || bytes.len() as u64 != n.size
                    || *blake3::hash(&bytes).as_bytes() != n.hash
                {
                    return Err(fail(format!(
                        "\"{}\": a received chunk does not match its hash (file left unchanged)",
                        shown.display()
                    )));
                }
                file.write_all_at(&bytes, at)
                    .map_err(|err| fail(format!("write: {err}")))?;
                literal += bytes.len() as u64;
                crate::liveness::bump();
            }
        }
        at += n.size;
    }
    flush(&mut run).map_err(&fail)?;
    if old_in_temp {
        // The old version may have been longer.
        file.set_len(at)
            .map_err(|err| fail(format!("truncate: {err}")))?;
    }
    if let Some(o) = &old {
        if !d.basis.ranges.is_empty() {
            match still(o) {
                Basis::Same => {}
                Basis::Touched => touched = true,
                Basis::Changed => return Err(changed()),
            }
        }
    }
    let root = d
        .root
        .unwrap_or_else(|| ChunkTree::build(&[], DEFAULT_FANOUT_BITS).root());
    if touched && matched > 0 {
        // What was copied from the old file is not vouched for by its index any more: the
        // rebuilt file must itself hash to the root.
        let params = delta_params(
            e.size,
            ctx.opts.chunk_avg,
            tune::chunk_bdp(&ctx.opts),
            !ctx.opts.no_gap_sums,
        );
        let rebuilt = chunk_file(&file, params)
            .map(|c| ChunkTree::build(&c, DEFAULT_FANOUT_BITS).root())
            .map_err(|err| fail(format!("read back: {err}")))?;
        if rebuilt != root {
            return Err(changed());
        }
    }
    match next() {
        Some(Chunk::End(hash)) if hash == root.hash && at == root.size => {}
        Some(Chunk::Abandon) => {
            fsys::discard(&*dir, &staging);
            return Err(CopyError::Abandoned);
        }
        None => {
            staging::stopped(ctx, &dir, &staging, name);
            return Err(CopyError::Failed(format!(
                "connection closed while receiving \"{}\"",
                shown.display()
            )));
        }
        Some(Chunk::Data(_)) => {
            return Err(fail(format!(
                "\"{}\": the sender sent more chunks than were asked for (file left unchanged)",
                shown.display()
            )))
        }
        Some(Chunk::End(_)) => {
            return Err(fail(format!(
            "\"{}\": the rebuilt file does not match the sender's tree root (file left unchanged)",
            shown.display()
        )))
        }
    }
    finish_file(ctx, e, &t, &dir, &file, &staging, name)
        .inspect_err(|_| fsys::discard(&*dir, &staging))?;
    // Issue 18, scattered deltas: what the gaps copied arrived as chunks, but was not sent.
    let copied = d.gap_copied.load(Relaxed).min(literal);
    ctx.stats.matched.fetch_add(matched + copied, Relaxed);
    // Issue 18, chunk cache: the file as it now is, for the next run's index.
    if let (Some(w), Some(cache)) = (written, ctx.opts.chunk_cache.as_deref()) {
        let params = delta_params(
            e.size,
            ctx.opts.chunk_avg,
            tune::chunk_bdp(&ctx.opts),
            !ctx.opts.no_gap_sums,
        );
        w.record(cache, &file, params);
    }
    Ok(literal - copied)
}

/// Where a delta-exchanged file's fetched chunks go: buffered in the loop for a small file
/// (rebuilt in a batch when complete), else a writer of its own.
pub(super) async fn delta_receiving(
    ctx: &Arc<Ctx>,
    inflight: &Arc<InFlight>,
    writers: usize,
    d: ReceiverDelta,
) -> Receiving {
    if d.size <= SMALL_FILE {
        return Receiving::Chunks(Box::new(d), Vec::new(), 0);
    }
    Receiving::Writer(spawn_delta_writer(ctx, inflight, writers, d).await)
}

/// Start the writer that rebuilds a delta-exchanged file from its old version and the
/// fetched chunks.
pub(super) async fn spawn_delta_writer(
    ctx: &Arc<Ctx>,
    inflight: &Arc<InFlight>,
    limit: usize,
    d: ReceiverDelta,
) -> mpsc::Sender<Chunk> {
    let t = d.transfer;
    spawn_writer(ctx, inflight, limit, t, move |c, t, rx| {
        receive_delta(c, t, &d, rx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;
    use crate::merkle::chunk::{chunk_bytes, ChunkParams};

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    }

    fn tree(bytes: &[u8]) -> (ChunkTree, Vec<crate::merkle::chunk::Chunk>) {
        let chunks = chunk_bytes(bytes, ChunkParams::cdc(1024));
        (ChunkTree::build(&chunks, DEFAULT_FANOUT_BITS), chunks)
    }

    /// The receiver's walk of the sender's tree against the index of its old version: it
    /// expands only what it does not know and fetches exactly the chunks its old version
    /// lacks; the rebuilt file is the new one.
    #[test]
    fn the_walk_fetches_only_what_the_old_version_lacks_and_rebuilds_exactly() {
        let old = data(200_000, 1);
        let mut new = old.clone();
        new[100_000..100_050].fill(7);
        new.splice(5_000..5_000, b"inserted".iter().copied());
        let (old_tree, _) = tree(&old);
        let (new_tree, new_chunks) = tree(&new);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), &old).unwrap();
        let basis = BasisIndex::of_file(&old_tree, dir.path(), "f");
        let e = entry("f", FileKind::File, new.len() as u64, 0o644);
        let t = Transfer {
            ndx: 0,
            itemize: Itemize::new('>', FileKind::File),
            old_perms: Some(0o644),
        };
        let mut d = ReceiverDelta::new(t, basis, new.len() as u64);
        // The sender shows the root, then answers each expansion.
        let mut ready = d.answer(vec![vec![new_tree.root()]]).unwrap();
        let mut fetch = Vec::new();
        let mut rounds = 0;
        while ready {
            let frames = d.next_frames(0);
            rounds += 1;
            let mut answers = Vec::new();
            for f in frames {
                match f {
                    Frame::Expand { hashes, .. } => {
                        let groups = hashes
                            .iter()
                            .map(|h| new_tree.children(h).unwrap().to_vec())
                            .collect();
                        answers.push(groups);
                    }
                    Frame::Fetch { hashes, .. } => fetch.extend(hashes),
                    other => panic!("{other:?}"),
                }
            }
            if d.fetching {
                break;
            }
            ready = false;
            for g in answers {
                ready = d.answer(g).unwrap();
            }
        }
        assert!(rounds >= 2, "the root alone cannot be enough");
        // Only a few chunks are fetched: the edits' and the insertion's.
        assert!(
            (1..=8).contains(&fetch.len()),
            "{} chunks fetched of {}",
            fetch.len(),
            new_chunks.len()
        );
        // Rebuild with the fetched chunks, as the sender would send them.
        let by_hash: HashMap<[u8; 32], &[u8]> = new_chunks
            .iter()
            .map(|c| {
                (
                    c.hash,
                    &new[c.offset as usize..c.offset as usize + c.len as usize],
                )
            })
            .collect();
        let mut next = fetch
            .iter()
            .map(|h| Chunk::Data(by_hash[h].to_vec()))
            .chain(std::iter::once(Chunk::End(new_tree.root().hash)));
        let (c, _) = ctx(dir.path(), vec![e], SyncOptions::default());
        let literal = rebuild(&c, t, &d, || next.next())
            .map_err(|_| "rebuild")
            .unwrap();
        assert!(literal < 20_000, "{literal} literal bytes");
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), new);
    }

    /// The receiver's side of the exchange against `new_tree`, as the sender would answer:
    /// the hashes it fetches.
    fn walk(d: &mut ReceiverDelta, new_tree: &ChunkTree) -> Vec<[u8; 32]> {
        let mut ready = d.answer(vec![vec![new_tree.root()]]).unwrap();
        let mut fetch = Vec::new();
        while ready {
            let mut answers = Vec::new();
            for f in d.next_frames(0) {
                match f {
                    Frame::Expand { hashes, .. } => answers.push(
                        hashes
                            .iter()
                            .map(|h| new_tree.children(h).unwrap().to_vec())
                            .collect(),
                    ),
                    Frame::Fetch { hashes, .. } => fetch.extend(hashes),
                    other => panic!("{other:?}"),
                }
            }
            if d.fetching {
                break;
            }
            ready = false;
            for g in answers {
                ready = d.answer(g).unwrap();
            }
        }
        fetch
    }

    /// Issue 18, cheap deltas: a large old version indexed with a prewrite plan, and the new
    /// version's tree and fetched chunks, as the sender would send them (`Data` per fetched
    /// chunk, then `End` with the root).
    struct Prewrite {
        dir: tempfile::TempDir,
        ctx: Ctx,
        t: Transfer,
        d: ReceiverDelta,
        sent: Vec<Chunk>,
    }

    fn prewrite(old: &[u8], new: &[u8], opts: SyncOptions) -> Prewrite {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), old).unwrap();
        let e = entry("f", FileKind::File, new.len() as u64, 0o644);
        let t = Transfer {
            ndx: 0,
            itemize: Itemize::new('>', FileKind::File),
            old_perms: Some(0o644),
        };
        let (ctx, _) = ctx(dir.path(), vec![e], opts);
        let plan = PrewritePlan::new(&ctx, &[Queued::new(&t)], &HashSet::from([0]));
        let basis = index_basis(&ctx, 0, b"f", &plan).unwrap();
        let params = delta_params(new.len() as u64, None, 0, false);
        let chunks = chunk_bytes(new, params);
        let new_tree = ChunkTree::build(&chunks, DEFAULT_FANOUT_BITS);
        let mut d = ReceiverDelta::new(t, basis, new.len() as u64);
        let fetch = walk(&mut d, &new_tree);
        let by_hash: HashMap<[u8; 32], &[u8]> = chunks
            .iter()
            .map(|c| (c.hash, &new[c.offset as usize..][..c.len as usize]))
            .collect();
        let mut sent: Vec<Chunk> = fetch
            .iter()
            .map(|h| Chunk::Data(by_hash[h].to_vec()))
            .collect();
        sent.push(Chunk::End(new_tree.root().hash));
        Prewrite {
            dir,
            ctx,
            t,
            d,
            sent,
        }
    }

    /// A new version with scattered changes, shorter or longer than the old one.
    fn edited(old: &[u8], len: usize) -> Vec<u8> {
        let mut new = old.to_vec();
        new.resize(len, 9);
        for at in [10_000, 1_000_000, 3_000_000, 4_200_000] {
            new[at..at + 4096].fill(at as u8);
        }
        new
    }

    /// A large old version is written into the staged temp as it is indexed; the rebuild
    /// then writes only what was fetched (and cuts or extends the old length) and the file
    /// in place is the new one, the temp gone.
    #[test]
    fn a_prewritten_rebuild_is_exact() {
        let old = data(5 << 20, 11);
        for len in [old.len(), old.len() - 100_000, old.len() + 300_000] {
            let new = edited(&old, len);
            let p = prewrite(&old, &new, SyncOptions::default());
            assert!(
                p.d.basis.prewritten.lock().unwrap().is_some(),
                "the old version was written ahead"
            );
            let mut next = p.sent.into_iter();
            let literal = rebuild(&p.ctx, p.t, &p.d, || next.next())
                .map_err(|_| "rebuild")
                .unwrap();
            assert!(
                literal < 200_000 + len.saturating_sub(old.len()) as u64,
                "{literal}"
            );
            assert_eq!(std::fs::read(p.dir.path().join("f")).unwrap(), new);
            assert_eq!(names(p.dir.path()), ["f"]);
        }
    }

    /// The sender dies in the middle of the file: the old file is left as it was, and the
    /// temp written ahead is gone.
    #[test]
    fn a_sender_that_dies_mid_file_leaves_the_old_file() {
        let old = data(5 << 20, 12);
        let new = edited(&old, old.len());
        let p = prewrite(&old, &new, SyncOptions::default());
        assert!(p.d.basis.prewritten.lock().unwrap().is_some());
        let mut next = p.sent.into_iter().take(1);
        let r = rebuild(&p.ctx, p.t, &p.d, || next.next());
        assert!(matches!(r, Err(CopyError::Failed(_))));
        assert_eq!(std::fs::read(p.dir.path().join("f")).unwrap(), old);
        assert_eq!(names(p.dir.path()), ["f"]);
    }

    /// With --partial nothing is written ahead (what a stopped run keeps must be a prefix
    /// of the new file), and what is kept of a stopped rebuild is the checked prefix.
    #[test]
    fn a_partial_run_keeps_only_the_prefix() {
        let old = data(5 << 20, 13);
        let new = edited(&old, old.len());
        let opts = SyncOptions {
            partial: true,
            ..SyncOptions::default()
        };
        let p = prewrite(&old, &new, opts);
        assert!(p.d.basis.prewritten.lock().unwrap().is_none());
        let mut next = p.sent.into_iter().take(2);
        let r = rebuild(&p.ctx, p.t, &p.d, || next.next());
        assert!(matches!(r, Err(CopyError::Failed(_))));
        let kept = std::fs::read(p.dir.path().join("f")).unwrap();
        assert!(kept.len() < new.len(), "{} bytes kept", kept.len());
        assert_eq!(kept[..], new[..kept.len()]);
    }

    /// The old file changes after it was indexed (and written ahead): the rebuild refuses,
    /// the file as it now is stays, the temp is gone.
    #[test]
    fn an_old_file_that_changes_under_a_prewritten_rebuild_is_left_alone() {
        use std::os::unix::fs::FileExt;
        let old = data(5 << 20, 14);
        // An insertion, so that runs move and are copied from the old file.
        let mut new = old.clone();
        new.splice(2_000_000..2_000_000, b"moved".iter().copied());
        let p = prewrite(&old, &new, SyncOptions::default());
        assert!(p.d.basis.prewritten.lock().unwrap().is_some());
        let f = std::fs::File::options()
            .write(true)
            .open(p.dir.path().join("f"))
            .unwrap();
        f.write_all_at(b"changed", 3_000_000).unwrap();
        let mut changed = old.clone();
        changed[3_000_000..3_000_007].copy_from_slice(b"changed");
        let mut next = p.sent.into_iter();
        let r = rebuild(&p.ctx, p.t, &p.d, || next.next());
        assert!(
            matches!(&r, Err(CopyError::Failed(m)) if m.contains("changed during the update")),
            "{:?}",
            r.err().map(|e| format!("{e:?}"))
        );
        assert_eq!(std::fs::read(p.dir.path().join("f")).unwrap(), changed);
        assert_eq!(names(p.dir.path()), ["f"]);
    }

    /// An index whose exchange never comes (the file turned whole, vanished on the sender,
    /// the run ended) takes its temp with it; and the temps written ahead are bounded.
    #[test]
    fn a_prewritten_temp_not_used_is_removed() {
        let old = data(5 << 20, 15);
        let p = prewrite(&old, &old, SyncOptions::default());
        assert_eq!(names(p.dir.path()).len(), 2, "the old file and its temp");
        drop(p.d);
        assert_eq!(names(p.dir.path()), ["f"]);
        let plan = PrewritePlan::default();
        let a = plan.grant(PREWRITE_AHEAD_BYTES * 2);
        assert!(a.is_some(), "one file is always let through");
        assert!(plan.grant(1).is_none());
        drop(a);
        assert!(plan.grant(1).is_some());
    }

    /// A node group that does not hash to its parent, a second root, or more nodes than the
    /// file can have: the walk refuses the peer.
    #[test]
    fn hostile_nodes_are_refused() {
        let (new_tree, _) = tree(&data(50_000, 3));
        let t = Transfer {
            ndx: 0,
            itemize: Itemize::new('>', FileKind::File),
            old_perms: None,
        };
        let root = new_tree.root();
        let mut d = ReceiverDelta::new(t, Arc::default(), 50_000);
        assert!(d.answer(vec![vec![root, root]]).is_err(), "two roots");
        let mut d = ReceiverDelta::new(t, Arc::default(), 50_000);
        assert!(d.answer(vec![vec![root]]).unwrap());
        let frames = d.next_frames(0);
        assert!(matches!(frames[0], Frame::Expand { .. }));
        let mut kids = new_tree.children(&root.hash).unwrap().to_vec();
        kids[0].hash[0] ^= 1;
        assert!(
            d.answer(vec![kids]).is_err(),
            "children that do not hash to their parent"
        );
        // Nodes nobody asked for.
        let mut d = ReceiverDelta::new(t, Arc::default(), 50_000);
        d.answer(vec![vec![root]]).unwrap();
        assert!(d.answer(vec![vec![root]]).is_err());
    }

    /// An old file whose change time alone moved (a hard link to it replaced) may still serve;
    /// its content stamp is what must not move.
    #[test]
    fn a_stamp_tells_content_changes_from_touches() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let a = BasisStamp::of(&rustix::fs::stat(&p).unwrap());
        std::fs::hard_link(&p, dir.path().join("g")).unwrap();
        let b = BasisStamp::of(&rustix::fs::stat(&p).unwrap());
        assert_eq!(a.content(), b.content());
        std::fs::write(&p, b"two, longer").unwrap();
        let c = BasisStamp::of(&rustix::fs::stat(&p).unwrap());
        assert_ne!(a.content(), c.content());
    }
}
