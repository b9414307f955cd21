//! The directory-tree exchange between two arsyncs: a file list pruned by subtree hashes.
//!
//! Instead of the whole file list, the sender announces the subtree hashes ([`DirTree`]) of the
//! root and a few levels below it; the receiver compares them with the tree of its own
//! destination and asks only for the listings of directories that differ, or for whole
//! subtrees it does not have. An identical tree costs the sender's first flight alone; an
//! identical subtree is never listed. Both sides end with the same partial list in transfer
//! order, so the sender maps the receiver's indexes back to its own through [`NdxMap`].
//!
//! Owns: the `dirtree` capability, the receiver's choice of [`MetaMask`] (exactly the fields its
//! generator acts on), both sides of the `DirHashes`/`WantDirs` choreography and the checks on
//! what the peer sends. Does not own what the receiver does with the list (the generator), the
//! scan itself, or the hash encoding ([`crate::merkle::dirtree`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::event::NullSink;
use super::options::{SyncOptions, DEFAULT_TREE_LEVELS};
use super::scan::{scan_sources, SourceList};
use super::session::{FrameSink, FrameSource};
use super::stats::Stats;
use crate::error::SyncError;
use crate::flist::{split_parent, FileEntry, FileKind, FileList, OwnerTable};
use crate::merkle::dirtree::{DirTree, MetaMask};
use crate::proto::merkle::caps::DirTreeCap;
use crate::proto::merkle::{
    dir_hash_frames, file_entry_frames, want_dir_frames, Frame, MAX_BATCH, MAX_FILES,
};
use crate::proto::DecodeError;

/// What the exchange runs with: chosen by the receiver, honoured by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeParams {
    /// Directory levels of hashes announced per round trip (1–255).
    pub levels: u32,
    /// The metadata each entry digest covers.
    pub mask: MetaMask,
}

impl TreeParams {
    /// The receiver's parameters for `opts`, or `None` when the run needs the whole list:
    /// `-H` (hard-link groups span directories), `-I` (everything is sent anyway), or
    /// `--delete` with rules that treat the two sides differently (then an entry the sender
    /// leaves out may still have to be deleted, which no hash of the sender's tree shows).
    pub fn for_receiver(opts: &SyncOptions, am_root: bool) -> Option<TreeParams> {
        let levels = opts.tree_levels.unwrap_or(DEFAULT_TREE_LEVELS).min(255);
        // Issue 15, write: `--chmod` changes modes after the sender hashed them.
        if levels == 0 || opts.hard_links || opts.ignore_times || !opts.write.chmod.is_empty() {
            return None;
        }
        if opts.delete && (opts.delete_excluded || !opts.filters.sides_agree()) {
            return None;
        }
        // Issue 15, source: the sender learns of each file only from a whole list.
        if opts.source.remove_source_files {
            return None;
        }
        // `--link-dest`, `--compare-dest`, `--copy-dest`: rsync looks up every file in DIR,
        // one already here and up to date too (linked, or removed under --compare-dest), so
        // an identical directory must still be listed.
        if opts.dests.kind.is_some() {
            return None;
        }
        let mut m = 0;
        if opts.times || (!opts.size_only && !opts.checksum) {
            m |= MetaMask::FILE_MTIME;
        }
        if opts.times {
            m |= MetaMask::OTHER_MTIME;
        }
        if opts.perms {
            m |= MetaMask::PERMS;
        }
        if opts.owner && am_root {
            m |= MetaMask::OWNER;
        }
        if opts.group {
            m |= MetaMask::GROUP;
        }
        if opts.checksum {
            m |= MetaMask::CHECKSUM;
        }
        if opts.xattrs || opts.acls {
            m |= MetaMask::XATTRS;
        }
        if opts.numeric_ids {
            m |= MetaMask::NUMERIC_IDS;
        }
        Some(TreeParams {
            levels,
            mask: MetaMask(m),
        })
    }

    /// The receiver's `dirtree` capability value.
    pub fn cap(&self) -> DirTreeCap {
        DirTreeCap::Receiver {
            levels: self.levels.min(255) as u8,
            mask: self.mask.0,
        }
    }

    /// The sender's `dirtree` capability value: the mask bits it can hash.
    pub fn sender_cap() -> DirTreeCap {
        DirTreeCap::Sender {
            mask: MetaMask::KNOWN,
        }
    }

    /// What both sides run with, from the sender's and the receiver's capability values: the
    /// exchange happens only if both offered it and the sender can hash every field asked
    /// for. Both sides evaluate this same function, so they always agree.
    pub fn negotiate(
        sender: Option<DirTreeCap>,
        receiver: Option<DirTreeCap>,
    ) -> Option<TreeParams> {
        let Some(DirTreeCap::Sender { mask: can }) = sender else {
            return None;
        };
        let Some(DirTreeCap::Receiver { levels, mask }) = receiver else {
            return None;
        };
        (levels > 0 && mask & !can == 0).then_some(TreeParams {
            levels: u32::from(levels),
            mask: MetaMask(mask),
        })
    }
}

/// From the receiver's entry indexes to the sender's.
#[derive(Debug, Clone, Default)]
pub struct NdxMap(Option<Vec<u32>>);

impl NdxMap {
    /// The whole list was sent: indexes are the same on both sides.
    pub fn identity() -> Self {
        NdxMap(None)
    }

    /// The map of a tree exchange that sent the sender's entries `sent` (each once): the
    /// receiver's list is them in the sender's order. The identity when every one of the
    /// sender's `total` entries was sent (a fresh copy), so that no index per entry is kept
    /// for the run (issue 18).
    pub fn of_sent(mut sent: Vec<u32>, total: usize) -> Self {
        sent.sort_unstable();
        if sent.len() == total && sent.iter().enumerate().all(|(i, &s)| s as usize == i) {
            NdxMap::identity()
        } else {
            NdxMap(Some(sent))
        }
    }

    /// The sender's index of the receiver's `ndx`.
    pub fn full(&self, ndx: u32) -> Result<usize, DecodeError> {
        match &self.0 {
            None => Ok(ndx as usize),
            Some(v) => v.get(ndx as usize).map(|&i| i as usize).ok_or_else(|| {
                DecodeError::invalid("request", format!("index {ndx} is out of range"))
            }),
        }
    }
}

/// Encoded list frames are queued for the writer in bursts of about this many bytes, as they
/// are made, rather than a whole list's worth at once (issue 18).
pub const LIST_BURST: usize = 256 * 1024;

/// Encode `entries` as `FileEntries` frames of bounded size (see [`file_entry_frames`]).
pub fn encode_entries<'e>(
    sink: &FrameSink,
    entries: impl Iterator<Item = &'e FileEntry>,
    out: &mut Vec<u8>,
) {
    // Issue 18: a batch's worth cloned at a time, not a copy of every entry first.
    let mut entries = entries.peekable();
    while entries.peek().is_some() {
        let batch: Vec<FileEntry> = entries.by_ref().take(MAX_BATCH).cloned().collect();
        for f in file_entry_frames(batch) {
            sink.encode(&f, out);
        }
    }
}

/// Encoded list bursts wait for the writer up to this many bytes (issue 18): enough to keep
/// it busy, not the stream's whole credit.
pub const LIST_QUEUED: usize = 4 * LIST_BURST;

/// Encode `entries` after what `out` holds, a batch at a time, and queue `out` for the writer
/// each time it reaches [`LIST_BURST`] (on a blocking thread: it waits while more than
/// [`LIST_QUEUED`] bytes wait for the writer); what is left in `out` is the caller's to end and
/// queue. The bytes queued.
pub fn queue_entries<'e>(
    sink: &FrameSink,
    entries: impl Iterator<Item = &'e FileEntry>,
    out: &mut Vec<u8>,
) -> Result<u64, SyncError> {
    let mut entries = entries.peekable();
    let mut queued = 0u64;
    while entries.peek().is_some() {
        encode_entries(sink, entries.by_ref().take(MAX_BATCH), out);
        if out.len() >= LIST_BURST {
            queued += out.len() as u64;
            sink.blocking_send_encoded_within(std::mem::take(out), LIST_QUEUED)?;
        }
    }
    Ok(queued)
}

/// Encode the entries `rows` names and queue them a burst at a time, as the writer takes them
/// (on a blocking thread: it waits for the writer); the bytes queued.
pub fn send_entries(
    sink: &FrameSink,
    entries: &[FileEntry],
    rows: &[u32],
) -> Result<u64, SyncError> {
    let mut out = Vec::new();
    let queued = queue_entries(sink, rows.iter().map(|&i| &entries[i as usize]), &mut out)?;
    let rest = out.len() as u64;
    sink.blocking_send_encoded_within(out, LIST_QUEUED)?;
    Ok(queued + rest)
}

fn encode_hashes(dirs: Vec<(Vec<u8>, [u8; 32])>, out: &mut Vec<u8>) {
    for f in dir_hash_frames(dirs) {
        f.encode(out);
    }
}

/// The sender's side: announce, answer wants, and return the index map and the first frame
/// that is not a want (the receiver's first request, or `Done`).
pub async fn serve_tree(
    sink: &FrameSink,
    source: &mut FrameSource,
    list: &Arc<SourceList>,
    params: TreeParams,
    stats: &Stats,
) -> Result<(NdxMap, Frame), SyncError> {
    let l = list.clone();
    let tree = tokio::task::spawn_blocking(move || {
        let skipped = l.skipped_by_receiver;
        DirTree::build_without(&l.list.entries, params.mask, |e| skipped.has(e.kind))
    })
    .await
    .map_err(SyncError::Job)?;
    let entries = &list.list.entries;
    let mut announced: HashSet<&[u8]> = HashSet::new();
    let mut listed: HashSet<&[u8]> = HashSet::new();
    let mut sent: Vec<u32> = Vec::new();

    let mut out = Vec::new();
    Frame::Totals(stats.totals_counters()).encode(&mut out);
    let mut first = vec![(b".".to_vec(), tree.root_hash())];
    announced.insert(b".");
    for d in tree.dirs_below(entries, b".", params.levels) {
        announced.insert(d);
        first.push((d.to_vec(), tree.hash(d).unwrap_or_default()));
    }
    encode_hashes(first, &mut out);
    Frame::FileListEnd { count: 0 }.encode(&mut out);
    stats.flist_size.fetch_add(out.len() as u64, Relaxed);
    sink.send_encoded(out).await?;

    loop {
        let wants = match source.expect("directory wants").await? {
            Frame::WantDirs(w) => w,
            other => return Ok((NdxMap::of_sent(sent, entries.len()), other)),
        };
        let mut rows: Vec<u32> = Vec::new();
        let mut hashes = Vec::new();
        for (path, whole) in &wants {
            let Some(node) = tree.node(path) else {
                return Err(bad_want(path, "not a directory of this tree"));
            };
            let Some(&key) = announced.get(path.as_slice()) else {
                return Err(bad_want(path, "never announced"));
            };
            if !listed.insert(key) {
                return Err(bad_want(path, "asked for twice"));
            }
            if key == b"." {
                rows.extend(node.entry);
            }
            if *whole {
                let from = rows.len();
                tree.subtree(entries, key, &mut rows);
                for &i in &rows[from..] {
                    let e = &entries[i as usize];
                    if e.kind == FileKind::Dir {
                        announced.insert(&e.path);
                        listed.insert(&e.path);
                    }
                }
            } else {
                rows.extend(&node.children);
                for d in tree.dirs_below(entries, key, params.levels) {
                    if announced.insert(d) {
                        hashes.push((d.to_vec(), tree.hash(d).unwrap_or_default()));
                    }
                }
            }
        }
        // Issue 18: queued a burst at a time as the writer takes them, not the whole flight
        // (a fresh copy's is the whole list) encoded into one buffer first.
        let (l, s) = (list.clone(), sink.clone());
        let (queued, rows) = tokio::task::spawn_blocking(move || {
            send_entries(&s, &l.list.entries, &rows).map(|q| (q, rows))
        })
        .await
        .map_err(SyncError::Job)??;
        // The first flight's rows become the record of what was sent (not a copy of them
        // beside them: a fresh copy's first flight is the whole list).
        if sent.is_empty() {
            sent = rows;
        } else {
            sent.extend(&rows);
        }
        stats.flist_size.fetch_add(queued, Relaxed);
        let mut out = Vec::new();
        encode_hashes(hashes, &mut out);
        Frame::FileListEnd {
            count: sent.len() as u32,
        }
        .encode(&mut out);
        stats.flist_size.fetch_add(out.len() as u64, Relaxed);
        sink.send_encoded(out).await?;
    }
}

fn bad_want(path: &[u8], why: &str) -> SyncError {
    DecodeError::invalid(
        "directory want",
        format!("{:?}: {why}", String::from_utf8_lossy(path)),
    )
    .into()
}

/// What the receiver learns from scanning its destination.
#[derive(Debug, Default)]
pub struct DestScan {
    /// The destination's directory tree.
    pub tree: DirTree,
    /// Regular files of at least `min_basis` bytes, `(path, size)`: where a new file may find
    /// its chunks (renames, copies).
    pub big_files: Vec<(Vec<u8>, u64)>,
}

/// The receiver's tree of its destination, scanned with the options the sender scans with
/// (so filters leave out the same entries); `None` when the destination is not a directory.
/// With `--delete` every kind is scanned, so an entry the sender skips by kind still shows.
pub fn scan_destination(
    dest: &Path,
    opts: &SyncOptions,
    params: TreeParams,
    min_basis: u64,
) -> Option<DestScan> {
    if !std::fs::metadata(dest).ok()?.is_dir() {
        return None;
    }
    let mut o = opts.clone();
    o.recursive = true;
    o.hard_links = false;
    o.progress = false;
    if o.delete {
        o.links = true;
        o.devices = true;
        o.specials = true;
    }
    let mut arg = dest.as_os_str().as_bytes().to_vec();
    if !arg.ends_with(b"/") {
        arg.push(b'/');
    }
    let stats = Stats::default();
    let list = scan_sources(
        &[PathBuf::from(OsString::from_vec(arg))],
        &o,
        &stats,
        &NullSink,
    );
    let big_files = list
        .list
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::File && e.size >= min_basis)
        .map(|e| (e.path.to_vec(), e.size))
        .collect();
    Some(DestScan {
        tree: DirTree::build(&list.list.entries, params.mask),
        big_files,
    })
}

/// What the receiver ends the exchange with.
#[derive(Debug, Default)]
pub struct PrunedList {
    /// Every entry that was listed, in transfer order.
    pub list: FileList,
    /// Directories in `list` whose every entry was listed: the only ones `--delete` may look
    /// inside (the others' subtrees match, or were never compared).
    pub complete: HashSet<Vec<u8>>,
    /// Large regular files the destination had (see [`DestScan::big_files`]).
    pub dest_files: Vec<(Vec<u8>, u64)>,
}

/// The receiver's side: read each flight, compare the announced hashes with `mine` (the
/// destination's tree; `None` if there is none yet), ask for what differs, until nothing does.
/// The caller sends its first request (or `Done`) next.
pub async fn receive_tree(
    sink: &FrameSink,
    source: &mut FrameSource,
    mine: impl std::future::Future<Output = Option<DestScan>>,
    stats: &Stats,
) -> Result<PrunedList, SyncError> {
    let before = stats.bytes_received.load(Relaxed);
    let mut mine = Some(mine);
    let mut tree: Option<DirTree> = None;
    let mut out = PrunedList::default();
    // Directories listed (not as a whole subtree): their child directories are compared.
    let mut listed: HashSet<Vec<u8>> = HashSet::new();
    let mut decided: HashSet<Vec<u8>> = HashSet::new();
    // Directories whose children may arrive in the current flight, and which of them were
    // asked for whole.
    let mut open: HashSet<Vec<u8>> = HashSet::new();
    let mut whole: HashSet<Vec<u8>> = HashSet::new();
    let mut announced_total = 0usize;
    let mut first_flight = true;
    let mut owners = OwnerTable::default();
    loop {
        let mut round: Vec<(Vec<u8>, [u8; 32])> = Vec::new();
        loop {
            match source.expect("directory tree").await? {
                Frame::Totals(c) if first_flight => stats.apply_totals(&c),
                Frame::DirHashes(d) => {
                    announced_total += d.len();
                    if announced_total > MAX_FILES as usize {
                        return Err(DecodeError::TooLarge {
                            what: "directory hashes",
                            got: announced_total as u64,
                            max: MAX_FILES as u64,
                        }
                        .into());
                    }
                    round.extend(d);
                }
                Frame::FileEntries(batch) => {
                    if out.list.entries.len() + batch.len() > MAX_FILES as usize {
                        return Err(DecodeError::TooLarge {
                            what: "file list",
                            got: (out.list.entries.len() + batch.len()) as u64,
                            max: MAX_FILES as u64,
                        }
                        .into());
                    }
                    for mut e in batch {
                        owners.share(&mut e);
                        let parent: &[u8] = if e.is_root() {
                            b"."
                        } else {
                            split_parent(&e.path).0
                        };
                        if !open.contains(parent) {
                            return Err(DecodeError::invalid(
                                "file list",
                                format!(
                                    "entry {:?} is not in a directory that was asked for",
                                    String::from_utf8_lossy(&e.path)
                                ),
                            )
                            .into());
                        }
                        if e.kind == FileKind::Dir && !e.is_root() && whole.contains(parent) {
                            open.insert(e.path.to_vec());
                            whole.insert(e.path.to_vec());
                            out.complete.insert(e.path.to_vec());
                        }
                        out.list.entries.push(e);
                    }
                }
                Frame::FileListEnd { count } => {
                    if count as usize != out.list.entries.len() {
                        return Err(DecodeError::invalid(
                            "file list end",
                            format!(
                                "count {count} but {} entries received",
                                out.list.entries.len()
                            ),
                        )
                        .into());
                    }
                    break;
                }
                other => {
                    return Err(DecodeError::invalid(
                        "directory tree",
                        format!("unexpected frame {other:?}"),
                    )
                    .into())
                }
            }
        }
        first_flight = false;
        if let Some(m) = mine.take() {
            if let Some(scan) = m.await {
                tree = Some(scan.tree);
                out.dest_files = scan.big_files;
            }
        }
        open.clear();
        whole.clear();
        let mut wants: Vec<(Vec<u8>, bool)> = Vec::new();
        for (path, hash) in round {
            let eligible = path == b"." || listed.contains(split_parent(&path).0);
            if !eligible || !decided.insert(path.clone()) {
                continue;
            }
            let have = tree.as_ref().and_then(|t| t.node(&path).map(|n| n.hash));
            let same = have == Some(hash)
                || (path == b"." && tree.as_ref().is_some_and(|t| t.bare_root_hash() == hash));
            if same {
                continue;
            }
            out.complete.insert(path.clone());
            open.insert(path.clone());
            if have.is_some() {
                listed.insert(path.clone());
                wants.push((path, false));
            } else {
                whole.insert(path.clone());
                wants.push((path, true));
            }
        }
        if wants.is_empty() {
            break;
        }
        let mut buf = Vec::new();
        for f in want_dir_frames(wants) {
            f.encode(&mut buf);
        }
        sink.send_encoded(buf).await?;
    }
    out.list.sort();
    crate::flist::validate_list(&out.list).map_err(|e| DecodeError::invalid("file list", e))?;
    stats
        .flist_size
        .fetch_add(stats.bytes_received.load(Relaxed) - before, Relaxed);
    Ok(out)
}

#[cfg(test)]
mod ndx_map_tests {
    use super::NdxMap;

    /// Issue 18: a flight of the whole list keeps no index per entry; a part keeps its map,
    /// and an index past what was sent is refused either way.
    #[test]
    fn a_whole_list_sent_is_the_identity_map() {
        let whole = NdxMap::of_sent(vec![2, 0, 1], 3);
        assert!(whole.0.is_none());
        assert_eq!(whole.full(2).ok(), Some(2));
        let part = NdxMap::of_sent(vec![4, 1], 5);
        assert_eq!((part.full(0).ok(), part.full(1).ok()), (Some(1), Some(4)));
        assert!(part.full(2).is_err());
        // The first entries only are not the whole list.
        let head = NdxMap::of_sent(vec![1, 0], 3);
        assert!(head.full(2).is_err());
    }
}
