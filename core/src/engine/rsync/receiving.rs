//! Pulling from a host that has only rsync: an adapter between `rsync --server --sender` (rsync's
//! wire protocol, [`crate::proto::rsync`]) and arsync's own receiver.
//!
//! The adapter speaks rsync's protocol on one side and arsync's frames on the other, so the
//! receiver — generator, `--delete`, itemizing, safe writes, metadata — is the same code that
//! serves an arsync peer. It negotiates the protocol (30–32), the checksum and the seed,
//! reads rsync's file list and numbers it in rsync's sorted order, hands the receiver the list,
//! turns each of the receiver's requests into an rsync request for the whole file, checks each
//! file's rsync checksum as the data arrives, and walks rsync's end-of-run choreography.
//!
//! Issue 18: with incremental recursion (`CF_INC_RECURSE`) rsync's lists come a directory at a
//! time among the replies; each becomes a segment of our receiver's streamed list, and the
//! receiver gets them a round at a time: the round's requests, one `NDX_DONE` per list of it
//! (the last once a later list or the end has come), and the round ends with the echo of its
//! last — index maps and lists held for one round (`super::inclists` checks and numbers them).
//!
//! A changed file is requested with the block sums of its old copy (full-length strong sums,
//! so no redo phase is needed); the sender's matched blocks are read back from it.
//!
//! Does not own: `-c`, xattrs (not offered), the ACL encoding (`proto::rsync::acl`; the ACLs
//! ride in each entry's attribute list); pushes and the server role.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use crate::engine::event::{Event, EventSink};
use crate::engine::fsys::DestRoot;
use crate::engine::options::SyncOptions;
use crate::engine::session::{frame_writer, FrameSource};
use crate::engine::stats::Stats;
use crate::error::SyncError;
use crate::flist::{
    path_order, validate_rel_path, FileEntry, FileKind, FileList, Name, Owner, OwnerTable, Rare,
};
use crate::proto::merkle::caps::{Caps, Role};
use crate::proto::merkle::{file_entry_frames, Frame, MAX_DATA_CHUNK, PROTOCOL_VERSION};
use crate::proto::rsync::checksum::{rolling, SumKind};
use crate::proto::rsync::codec::{
    put_i32, put_u16, read_i32, read_u16, read_u8, read_varlong, read_vstring, NdxCodec, ReadError,
    Source, NDX_DONE,
};
use crate::proto::rsync::flist::RsyncEntry;
use crate::proto::rsync::ztoken::{Token, ZstdTokenReader};
use crate::transport::StreamPair;

use super::inclists::{
    add_names, listed_in_place, segment_parent, ListMsg, ListReader, RsyncList, SegmentMaker,
};
use super::link::{bad, from_read, Demux, RsyncLink, RsyncStart, CF_INC_RECURSE};
use super::tap::{rsync_iflags, TapForward};
pub use super::tap::{ItemTap, Tapped};
use super::{Wire, ITEM_BASIS_TYPE_FOLLOWS, ITEM_TRANSFER, ITEM_XNAME_FOLLOWS};
use crate::engine::order::Held;

/// Convert rsync's entries (sorted in rsync's order, giving their indexes) into our list.
/// The top-level names a pull of `requested` remote paths may bring: `None` when any name may
/// come (a directory's contents — a trailing `/` or `.` — or a pattern the remote shell
/// expands); otherwise the last component of each path.
pub fn allowed_tops(requested: &[String], relative: bool) -> Option<Vec<Vec<u8>>> {
    let mut tops = Vec::new();
    for p in requested {
        // Issue 15, select: under `-R` a name starts with the first component of the path.
        if relative {
            let (_, rel) = crate::engine::select::relative_path(p.as_bytes());
            if rel == b"." || p.contains(['*', '?', '[']) {
                return None;
            }
            tops.push(rel.split(|&b| b == b'/').next().unwrap_or(&rel).to_vec());
            continue;
        }
        let contents = p.is_empty() || p.ends_with('/') || p == "." || p.ends_with("/.");
        if contents || p.contains(['*', '?', '[']) {
            return None;
        }
        tops.push(p.rsplit('/').next().unwrap_or(p).as_bytes().to_vec());
    }
    Some(tops)
}

/// Our list made from rsync's: the list, rsync's index of each entry, the names left out
/// for want of `-l`/`-D`, and the missing arguments to delete (mode-0 entries).
type Converted = (FileList, Vec<i32>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// A sender may only list what was asked for (rsync 3.4's "unrequested file-list name"
/// check): with named sources (`allowed`), every name lies under one of them.
fn check_requested(name: &[u8], allowed: Option<&[Vec<u8>]>) -> Result<(), SyncError> {
    let Some(tops) = allowed else {
        return Ok(());
    };
    let name = name.strip_suffix(b"/").unwrap_or(name);
    let top = name.split(|&c| c == b'/').next().unwrap_or(&[]);
    if tops.iter().any(|t| t.as_slice() == top) {
        return Ok(());
    }
    Err(bad(
        "file list",
        format!(
            "rejecting unrequested file-list name {:?}",
            String::from_utf8_lossy(name)
        ),
    ))
}

/// One of rsync's entries as an entry of our list; `None` for a missing argument (a mode-0
/// entry under `--delete-missing-args`), whose name goes to `missing`. The names of kinds the
/// options leave out go to `skipped` (the entry is kept: our receiver skips it).
fn convert_entry(
    e: &RsyncEntry,
    (users, groups): (&HashMap<u32, Name>, &HashMap<u32, Name>),
    owners: &mut OwnerTable,
    opts: &SyncOptions,
    skipped: &mut Vec<Vec<u8>>,
    missing: &mut Vec<Vec<u8>>,
) -> Result<Option<FileEntry>, SyncError> {
    let name = e.name.strip_suffix(b"/").unwrap_or(&e.name).to_vec();
    validate_rel_path(&name).map_err(|why| {
        bad(
            "file-list name",
            format!("{why}: {:?}", String::from_utf8_lossy(&name)),
        )
    })?;
    // Issue 15, select: `--delete-missing-args` (the decoder admits mode 0 only then).
    if e.mode == 0 && opts.select.delete_missing_args {
        if name == b"." {
            return Err(bad("file list", "the root listed as a missing argument"));
        }
        missing.push(name);
        return Ok(None);
    }
    let kind = FileKind::from_mode(e.mode)
        .ok_or_else(|| bad("file-list mode", format!("{:o}", e.mode)))?;
    // rsync's sender lists symlinks, devices and specials whatever the options; our
    // receiver skips those it was not asked to keep, and its --delete spares them, as
    // rsync's generator (the `unwanted` capability). They come without their data: a
    // symlink's target is its own name here, never used.
    let wanted = opts.wants_kind(kind);
    if !wanted {
        skipped.push(name.clone());
    }
    let (major, minor) = e.rdev;
    let mut entry = FileEntry::new(name, kind);
    entry.perms = (e.mode & 0o7777) as u16;
    if kind == FileKind::File {
        entry.size = e.size;
    }
    entry.mtime = e.mtime;
    entry.mtime_nsec = e.nsec;
    let (user, group) = if opts.numeric_ids {
        (Name::default(), Name::default())
    } else {
        (
            users.get(&e.uid).cloned().unwrap_or_default(),
            groups.get(&e.gid).cloned().unwrap_or_default(),
        )
    };
    entry.set_owner(owners.shared(Owner::new(e.uid, e.gid, user, group)));
    // Issue 15, acls: ACLs as the engine carries them (extended attributes).
    let target = match (wanted, kind) {
        (false, FileKind::Symlink) if e.link_target.is_empty() => entry.path.to_vec(),
        _ => e.link_target.clone(),
    };
    entry.set_rare(Rare::of(
        libc::makedev(major, minor),
        target,
        acl_xattrs(&e.acls),
    ));
    entry.set_hardlink_group(
        e.hlink_first
            .filter(|_| kind == FileKind::File && opts.hard_links)
            .map_or(0, |f| f + 1),
    );
    entry.no_content = kind == FileKind::Dir && e.no_content;
    Ok(Some(entry))
}

fn convert(
    sorted: &[RsyncEntry],
    users: &HashMap<u32, Name>,
    groups: &HashMap<u32, Name>,
    opts: &SyncOptions,
    allowed: Option<&[Vec<u8>]>,
) -> Result<Converted, SyncError> {
    let mut ours: Vec<(FileEntry, i32)> = Vec::with_capacity(sorted.len());
    let mut owners = OwnerTable::default();
    let mut skipped = Vec::new();
    let mut missing = Vec::new();
    for (rndx, e) in sorted.iter().enumerate() {
        check_requested(&e.name, allowed)?;
        if let Some(entry) = convert_entry(
            e,
            (users, groups),
            &mut owners,
            opts,
            &mut skipped,
            &mut missing,
        )? {
            ours.push((entry, rndx as i32));
        }
    }
    ours.sort_by(|a, b| {
        path_order(
            &a.0.path,
            a.0.kind == FileKind::Dir,
            &b.0.path,
            b.0.kind == FileKind::Dir,
        )
    });
    ours.dedup_by(|b, a| a.0.path == b.0.path);
    // Issue 15, select: `-m` is the receiver's to do (rsync's `clean_flist`).
    if opts.select.prune_empty_dirs {
        let keep = crate::engine::select::prune_empty_dirs(ours.iter().map(|(e, _)| e), |e| {
            opts.filters.protected_for_receiver(&e.path, true)
        });
        let mut keep = keep.into_iter();
        ours.retain(|_| keep.next().unwrap_or(true));
    }
    let map = ours.iter().map(|(_, r)| *r).collect();
    Ok((
        FileList {
            entries: ours.into_iter().map(|(e, _)| e).collect(),
        },
        map,
        skipped,
        missing,
    ))
}

/// Run the adapter: `rsync` is the stream to `rsync --server --sender`, `ours` the stream our
/// receiver opened. `protocol` caps the version we offer.
pub fn bridge_pull(
    rsync: RsyncStart,
    ours: StreamPair,
    dest: &Path,
    opts: &SyncOptions,
    requested: &[String],
    protocol: u8,
    sink: Arc<dyn EventSink>,
) -> Result<Wire, SyncError> {
    // Issue 18: we offered `i` (`-e.i…`, `sender_args`) when our side can take rsync's lists
    // a directory at a time.
    let mut link = rsync.connect(
        protocol,
        opts,
        super::receiver_inc_recurse_ok(opts),
        sink.clone(),
    )?;
    link.allowed_tops = allowed_tops(requested, opts.select.relative)
        // Issue 15, filters: a list read on the sender names what it likes (rsync trusts
        // the sender's names then too).
        .filter(|_| opts.listing.remote_files_from.is_none());
    // The filter list: the rules the sender applies (receiver-side rules stay here).
    let mut f = Vec::new();
    for rule in opts.filters.sender_rules_for_rsync() {
        put_i32(&mut f, rule.len() as i32);
        f.extend_from_slice(rule.as_bytes());
    }
    put_i32(&mut f, 0);
    link.output.write(&f)?;
    receive(link, ours, dest, opts, sink, ReceiverEnd::Client, None)
}

/// Which end of the session the receiving side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverEnd {
    /// The client pulling from `rsync --server --sender`.
    Client,
    /// `arsync --server` receiving an rsync client's push.
    Server,
}

/// `arsync --server` receiving an rsync client's push into `dest` through our receiver on
/// `ours`; `session` has done the handshake (and read the filter list when deleting).
pub fn serve_receiver(
    session: super::RsyncSession,
    ours: StreamPair,
    dest: &Path,
    opts: &SyncOptions,
    sink: Arc<dyn EventSink>,
    items: std_mpsc::Receiver<Tapped>,
) -> Result<Wire, SyncError> {
    receive(
        session.into_link(),
        ours,
        dest,
        opts,
        sink,
        ReceiverEnd::Server,
        Some(items),
    )
}

/// What our receiver's frames name in one round, and what rsync calls it: each entry of the
/// round's list (the whole list without segments) with its path, its rsync index and size.
#[derive(Debug, Default)]
struct RoundMaps {
    names: Vec<Vec<u8>>,
    to_rsync: Vec<i32>,
    sizes: Vec<u64>,
    to_ours: HashMap<i32, u32>,
}

impl RoundMaps {
    fn push(&mut self, name: Vec<u8>, rndx: i32, size: u64) {
        self.to_ours.insert(rndx, self.names.len() as u32);
        self.names.push(name);
        self.to_rsync.push(rndx);
        self.sizes.push(size);
    }

    /// Each path's place in the round, for the item tap ([`RoundMaps::tap`]).
    fn by_path(&self) -> HashMap<&[u8], usize> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_slice(), i))
            .collect()
    }

    /// The item tap of this round: our receiver's records as rsync's, by `by_path`.
    fn tap<'a>(
        &'a self,
        by_path: &'a HashMap<&'a [u8], usize>,
        dry_run: bool,
        items: Option<&'a std_mpsc::Receiver<Tapped>>,
    ) -> TapForward<'a> {
        TapForward {
            dry_run,
            items,
            by_path,
            to_rsync: &self.to_rsync,
            held: Held::default(),
        }
    }

    fn ours(&self, rndx: i32, what: &'static str) -> Result<u32, SyncError> {
        self.to_ours
            .get(&rndx)
            .copied()
            .ok_or_else(|| bad(what, rndx))
    }
}

/// The round whose replies are being read: its maps, swapped in before its requests go out.
type SharedMaps = Arc<Mutex<Arc<RoundMaps>>>;

fn current(maps: &SharedMaps) -> Arc<RoundMaps> {
    maps.lock().map(|m| m.clone()).unwrap_or_default()
}

/// `NDX_DONE`s the requests thread wrote, for the replies thread to count their echoes: the
/// last batch of a round ends it (our sender's `Done`), and the one that ends the phase.
#[derive(Debug, Clone, Copy)]
struct Dones {
    count: u32,
    ends_round: bool,
    ends_phase: bool,
}

/// Lists the replies thread read and the requests thread has not taken yet.
struct Incoming {
    rx: std_mpsc::Receiver<ListMsg>,
    pending: VecDeque<RsyncList>,
    eof: bool,
}

impl Incoming {
    /// Take what the reader sent: without `block`, only what is there; `false` when nothing
    /// was. The reader gone means it failed (its error is the run's) — when waited for: what
    /// it sent before is taken first (a bad list is the cause, its end the consequence).
    fn pull(&mut self, block: bool) -> Result<bool, SyncError> {
        let got = if block {
            self.rx.recv().map_err(|_| None)
        } else {
            self.rx.try_recv().map_err(|_| Some(()))
        };
        match got {
            Ok(ListMsg::List(l)) => self.pending.push_back(l),
            Ok(ListMsg::Eof) => self.eof = true,
            Err(Some(())) => return Ok(false),
            Err(None) => return Err(reader_gone()),
        }
        Ok(true)
    }

    /// Wait until a list after the ones taken, or the end, has come; whether the end did
    /// (no list follows).
    fn next_or_end(&mut self) -> Result<bool, SyncError> {
        loop {
            if !self.pending.is_empty() {
                return Ok(false);
            }
            if self.eof {
                return Ok(true);
            }
            self.pull(true)?;
        }
    }
}

fn reader_gone() -> SyncError {
    SyncError::StreamIo(io::Error::other("the reader of rsync's replies stopped"))
}

/// Turns rsync's lists into segments for our receiver (incremental recursion): their
/// entries in our form, the names of their owners, and what the round's list holds.
struct Feeder<'a> {
    maker: SegmentMaker,
    users: HashMap<u32, Name>,
    groups: HashMap<u32, Name>,
    owners: OwnerTable,
    opts: &'a SyncOptions,
    allowed: Option<&'a [Vec<u8>]>,
    /// `-c`: where same content is looked for (opened with the first list).
    roots: Option<Vec<DestRoot>>,
    dest: &'a Path,
    sum: SumKind,
    /// Lists whose end marker carried a read error (the receiver deletes nothing after).
    read_errors: u64,
}

impl Feeder<'_> {
    /// `list` as one segment for our receiver, in `frames` (after `Totals` when it carries a
    /// read error), its part of the round's list added to `maps`. Returns the entries it
    /// held and the names left out for want of `-l`/`-D`.
    fn feed(
        &mut self,
        list: RsyncList,
        frames: &mut Vec<Frame>,
        maps: &mut RoundMaps,
    ) -> Result<(u32, Vec<Vec<u8>>), SyncError> {
        add_names(&mut self.users, list.names.0.clone());
        add_names(&mut self.groups, list.names.1.clone());
        if list.io_error & 1 != 0 {
            self.read_errors += 1;
            frames.push(Frame::Totals(vec![0, 0, 0, 0, 0, 0, self.read_errors]));
        }
        let top = list.dir_ndx.is_none();
        let sorted = self.maker.sort(list)?;
        let base = self.maker.sent() - sorted.entries.len() as u32;
        if let (Some((_, head)), Some(dir)) = (sorted.parent, &sorted.dir) {
            maps.push(dir.clone(), head, 0);
        }
        let mut skipped = Vec::new();
        let mut missing = Vec::new();
        let mut entries = Vec::with_capacity(sorted.entries.len());
        for (e, rndx) in &sorted.entries {
            if top {
                check_requested(&e.name, self.allowed)?;
            }
            let mut entry = convert_entry(
                e,
                (&self.users, &self.groups),
                &mut self.owners,
                self.opts,
                &mut skipped,
                &mut missing,
            )?
            .ok_or_else(|| bad("file list", "a missing argument in an incremental list"))?;
            if self.opts.checksum && entry.kind == FileKind::File && !e.checksum.is_empty() {
                let roots = self
                    .roots
                    .get_or_insert_with(|| content_roots(self.dest, self.opts));
                if let Some(h) = roots
                    .iter()
                    .find_map(|root| same_content(root, &entry, &e.checksum, self.sum))
                {
                    entry.set_checksum(Some(h));
                }
            }
            if listed_in_place(&entry) {
                maps.push(entry.path.to_vec(), *rndx, entry.size);
            }
            entries.push(entry);
        }
        let count = entries.len() as u32;
        frames.push(Frame::Segment {
            parent: segment_parent(&sorted),
            base,
            count,
        });
        frames.extend(file_entry_frames(entries));
        Ok((count, skipped))
    }
}

/// The destination and the `--link-dest`/`--compare-dest`/`--copy-dest` directories, where
/// `-c` looks for the same content.
fn content_roots(dest: &Path, opts: &SyncOptions) -> Vec<DestRoot> {
    let others = opts.dests.dirs.iter().map(|d| dest.join(d));
    std::iter::once(dest.to_path_buf())
        .chain(others)
        .filter_map(|p| DestRoot::open(&p).ok())
        .collect()
}

/// Say what this side leaves out for want of -l/-D, as rsync's generator says it: on our
/// client's stdout, or to the rsync client that started us (MSG_INFO).
fn say_skipped(
    skipped: Vec<Vec<u8>>,
    end: ReceiverEnd,
    sink: &dyn EventSink,
    output: &mut super::link::Mux,
) -> Result<(), SyncError> {
    for name in skipped {
        let message = format!(
            "skipping non-regular file \"{}\"",
            String::from_utf8_lossy(&name)
        );
        match end {
            ReceiverEnd::Client => sink.event(Event::Notice { message }),
            ReceiverEnd::Server => output.write_msg(
                crate::proto::rsync::codec::msg::INFO,
                format!("{message}\n").as_bytes(),
            )?,
        }
    }
    Ok(())
}

fn receive(
    link: RsyncLink,
    ours: StreamPair,
    dest: &Path,
    opts: &SyncOptions,
    sink: Arc<dyn EventSink>,
    end: ReceiverEnd,
    items: Option<std_mpsc::Receiver<Tapped>>,
) -> Result<Wire, SyncError> {
    let rt = Handle::current();
    let RsyncLink {
        allowed_tops: allowed,
        compress,
        mut input,
        mut output,
        proto,
        compat,
        sum,
        seed,
        proper_seed_order,
        notices,
        wire_in,
        wire_out,
    } = link;

    // The top list (without incremental recursion, the whole list).
    let inc = compat & CF_INC_RECURSE != 0;
    let fmt = super::flist_format(proto, compat, opts, sum);
    let mut reader = ListReader::new(fmt, inc);
    let mut top = reader.read_top(&mut input)?;
    if top.io_error != 0 {
        if let Ok(mut n) = notices.lock() {
            n.io_error |= top.io_error & 7;
        }
    }
    // Issue 18: rsync's lists become our receiver's segments when a directory is listed
    // (a single file, or files alone, keep the whole list).
    let streaming = inc && top.entries.iter().any(RsyncEntry::is_dir);

    // Our receiver's side: the hellos.
    let stats = Arc::new(Stats::default());
    let (fsink, writer) = rt.block_on(async { frame_writer(ours.send, stats.clone()) });
    let mut fsource = FrameSource::new(ours.recv, stats);
    let caps = Caps {
        role: Some(Role::Sender),
        segments: streaming.then(crate::engine::segments::round_offer),
        ..Caps::default()
    };
    fsink.blocking_send(&Frame::Hello(caps.hello(PROTOCOL_VERSION)))?;
    let peer = match rt.block_on(fsource.expect("hello"))? {
        Frame::Hello(h) => Caps::from_hello(&h),
        other => return Err(bad("first frame", format!("{other:?}"))),
    };
    let window = crate::engine::segments::agreed_round(caps.segments, peer.segments);
    if streaming && window.is_none() {
        return Err(SyncError::Incompatible(
            "the receiver takes no streamed list, which rsync's incremental recursion needs".into(),
        ));
    }
    let window = window.unwrap_or(u32::MAX);

    let mut feeder = Feeder {
        maker: SegmentMaker::default(),
        users: HashMap::new(),
        groups: HashMap::new(),
        owners: OwnerTable::default(),
        opts,
        allowed: allowed.as_deref(),
        roots: None,
        dest,
        sum,
        read_errors: 0,
    };
    let mut single_place = None;
    // Without segments: the whole list now, as one round.
    let mut whole: Option<RoundMaps> = None;
    let mut empty_list = false;
    if !streaming {
        let mut sorted = std::mem::take(&mut top.entries);
        sorted.sort_by(|a, b| path_order(&a.name, a.is_dir(), &b.name, b.is_dir()));
        let users: HashMap<u32, Name> = std::mem::take(&mut top.names.0)
            .into_iter()
            .map(|(i, n)| (i, n.into()))
            .collect();
        let groups: HashMap<u32, Name> = std::mem::take(&mut top.names.1)
            .into_iter()
            .map(|(i, n)| (i, n.into()))
            .collect();
        let (mut list, to_rsync, skipped, missing) =
            convert(&sorted, &users, &groups, opts, allowed.as_deref())?;
        say_skipped(skipped, end, &*sink, &mut output)?;
        if opts.checksum {
            vouch_for_same_content(&mut list, &sorted, &to_rsync, dest, opts, sum);
        }
        let mut maps = RoundMaps::default();
        for (e, r) in list.entries.iter().zip(&to_rsync) {
            // With incremental recursion the top list starts at 1.
            maps.push(e.path.to_vec(), r + top.start, e.size);
        }
        // Issue 19, resume: a single file may land under another name; its basis (the old
        // version or the partial file) is looked up where it lands.
        single_place = match list.entries.as_slice() {
            [e] if e.kind != FileKind::Dir => {
                crate::engine::receiver::single_file_place(dest, &e.path)
            }
            _ => None,
        };
        // A sending server with an empty list exits at once (`do_server_sender`); a sending
        // client goes on through the phases.
        empty_list = sorted.is_empty() && end == ReceiverEnd::Client;
        // rsync's sender could not read some entries (IOERR_GENERAL): our receiver deletes
        // nothing, as rsync's would.
        if top.io_error & 1 != 0 {
            fsink.blocking_send(&Frame::Totals(vec![0, 0, 0, 0, 0, 0, 1]))?;
        }
        for f in file_entry_frames(list.entries) {
            fsink.blocking_send(&f)?;
        }
        for names in missing.chunks(crate::proto::merkle::MAX_MISSING_ARGS) {
            fsink.blocking_send(&Frame::MissingArgs(names.to_vec()))?;
        }
        fsink.blocking_send(&Frame::FileListEnd {
            count: maps.names.len() as u32,
        })?;
        whole = Some(maps);
    }
    let (basis_dir, single_name) = match &single_place {
        Some((dir, name)) => (dir.as_path(), Some(name.as_slice())),
        None => (dest, None),
    };

    if empty_list {
        // The sender exits straight away: nothing to request, nothing to read.
        fsink.blocking_send(&Frame::Done)?;
        let _ = rt.block_on(fsource.expect("done"));
        let _ = rt.block_on(fsource.expect("summary"));
        drop(fsink);
        rt.block_on(writer.finish())?;
        return Ok(Wire {
            sent: wire_out.load(Relaxed),
            received: wire_in.load(Relaxed),
            ..Wire::default()
        });
    }

    let delta_ok = !(opts.whole_file || opts.dry_run);
    let append = opts.write.append;
    let bases: Arc<Mutex<HashMap<i32, Basis>>> = Arc::default();
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let maps: SharedMaps = Arc::new(Mutex::new(Arc::new(whole.take().unwrap_or_default())));
    let incoming_eof = reader.eof();

    // Requests go out on this thread; replies (and rsync's further lists) come back on
    // another (rsync answers while we still ask: reading and writing at once avoids a
    // deadlock on full pipes).
    let (phase_tx, phase_rx) = std_mpsc::channel::<()>();
    let (stats_tx, stats_rx) = std_mpsc::channel::<()>();
    let (lists_tx, lists_rx) = std_mpsc::channel::<ListMsg>();
    let (dones_tx, dones_rx) = std_mpsc::channel::<Dones>();
    let (round_tx, round_rx) = std_mpsc::channel::<()>();
    let dry_run = opts.dry_run;
    let reply_sink = fsink.clone();
    let (reply_bases, reply_counts) = (bases.clone(), counts.clone());
    let reply_maps = maps.clone();
    let replies = std::thread::Builder::new()
        .name("rsync-replies".into())
        .spawn(move || -> Result<(), SyncError> {
            let mut ndx = NdxCodec::new(proto);
            let mut ztokens = match compress {
                Some(c) => Some(ZstdTokenReader::new(c).map_err(SyncError::StreamIo)?),
                None => None,
            };
            let mut answered_no_send = 0usize;
            let forward_no_send = |input: &Demux, done: &mut usize| -> Result<(), SyncError> {
                let pending: Vec<i32> = input
                    .notices
                    .lock()
                    .map(|n| n.no_send[*done..].to_vec())
                    .unwrap_or_default();
                let maps = current(&reply_maps);
                for r in pending {
                    *done += 1;
                    let our = maps.ours(r, "no-send index")?;
                    reply_sink.blocking_send(&Frame::Vanished { ndx: our })?;
                }
                Ok(())
            };
            // Phase 0: one reply per request, the lists rsync sends meanwhile, and an echo
            // of each NDX_DONE we sent: a round ends with the echo of its last.
            let mut echoes = 0u32;
            let mut batch = Dones {
                count: 0,
                ends_round: false,
                ends_phase: false,
            };
            loop {
                let r = ndx.read(&mut input).map_err(from_read)?;
                forward_no_send(&input, &mut answered_no_send)?;
                if r == NDX_DONE {
                    if echoes == batch.count {
                        // The batch was announced before its NDX_DONEs were written. With one
                        // whole list, an NDX_DONE that comes first ends the phase all the same
                        // (rsync's sender ends it as it likes; our receiver then sees what is
                        // missing).
                        batch = match dones_rx.try_recv() {
                            Ok(b) => b,
                            Err(_) if !streaming => Dones {
                                count: 1,
                                ends_round: true,
                                ends_phase: true,
                            },
                            Err(_) => {
                                return Err(bad(
                                    "file index",
                                    "NDX_DONE before the end of the round",
                                ))
                            }
                        };
                        echoes = 0;
                    }
                    echoes += 1;
                    if echoes < batch.count || !batch.ends_round {
                        continue;
                    }
                    // No more file data comes for this round: our receiver may finish it.
                    reply_sink.blocking_send(&Frame::Done)?;
                    let _ = round_tx.send(());
                    if batch.ends_phase {
                        break;
                    }
                    continue;
                }
                if r < 0 {
                    // Issue 18: a list announced, or the end of the lists.
                    let msg = match reader.read_extra(r, &mut input)? {
                        Some(l) => ListMsg::List(l),
                        None => ListMsg::Eof,
                    };
                    if let ListMsg::List(l) = &msg {
                        if l.io_error != 0 {
                            if let Ok(mut n) = input.notices.lock() {
                                n.io_error |= l.io_error & 7;
                            }
                        }
                    }
                    // The requests thread may be gone with its own error.
                    let _ = lists_tx.send(msg);
                    continue;
                }
                let maps = current(&reply_maps);
                let our = maps.ours(r, "reply index")?;
                let iflags = read_u16(&mut input).map_err(from_read)?;
                skip_item_extras(&mut input, iflags)?;
                if iflags & ITEM_TRANSFER == 0 || dry_run {
                    // The echo of an itemize record we sent (a dry run's transfers too).
                    continue;
                }
                let name = &maps.names[our as usize];
                let mut head = [0i32; 4];
                for h in &mut head {
                    *h = read_i32(&mut input).map_err(from_read)?;
                }
                let basis = reply_bases.lock().ok().and_then(|mut b| b.remove(&r));
                let asked = basis.as_ref().map_or([0; 4], Basis::head);
                if head != asked {
                    return Err(bad("sum head", format!("{head:?}, asked {asked:?}")));
                }
                let (mut literal, mut matched) = (0u64, 0u64);
                reply_sink.blocking_send(&Frame::DataBegin {
                    ndx: our,
                    size: maps.sizes[our as usize],
                })?;
                let mut check = sum.hasher();
                let mut blake = blake3::Hasher::new();
                let basis_error = |e: io::Error| SyncError::FileIo {
                    what: "read basis",
                    path: Path::new(std::ffi::OsStr::from_bytes(name)).to_path_buf(),
                    source: e,
                };
                // `--append`: the old file's bytes first (the sender sends what follows, and
                // its checksum covers only that), from the basis the head described.
                if let (1, Some(b)) = (append, basis.as_ref()) {
                    let mut at = 0u64;
                    let end = b.head_length();
                    while at < end {
                        let n = (end - at).min(MAX_DATA_CHUNK as u64) as usize;
                        let piece = b.read_at(at, n).map_err(basis_error)?;
                        blake.update(&piece);
                        matched += n as u64;
                        at += n as u64;
                        reply_sink.blocking_send(&Frame::Data {
                            ndx: our,
                            bytes: piece,
                        })?;
                    }
                }
                loop {
                    // The next token: literal bytes, a block of the old file, or the end
                    // (`simple_recv_token`, or the zstd stream with -z).
                    let mut data = Vec::new();
                    let block = match ztokens.as_mut() {
                        Some(z) => match z.next(&mut input, &mut data).map_err(from_read)? {
                            Token::End => break,
                            Token::Literal => None,
                            Token::Block(k) => Some(u64::from(k)),
                        },
                        None => {
                            let t = read_i32(&mut input).map_err(from_read)?;
                            if t == 0 {
                                break;
                            }
                            if t < 0 {
                                Some((-(i64::from(t) + 1)) as u64)
                            } else {
                                let mut left = t as usize;
                                while left > 0 {
                                    let n = left.min(MAX_DATA_CHUNK);
                                    let mut piece = vec![0u8; n];
                                    input.read_exact(&mut piece).map_err(from_read)?;
                                    check.update(&piece);
                                    blake.update(&piece);
                                    literal += n as u64;
                                    reply_sink.blocking_send(&Frame::Data {
                                        ndx: our,
                                        bytes: piece,
                                    })?;
                                    left -= n;
                                }
                                continue;
                            }
                        }
                    };
                    if let Some(k) = block {
                        let b = basis
                            .as_ref()
                            .ok_or_else(|| bad("token", "a block match without a basis"))?;
                        data = b.block(k).map_err(|e| match e {
                            Some(e) => basis_error(e),
                            None => bad("token", format!("block {k} of {}", b.count)),
                        })?;
                        matched += data.len() as u64;
                    } else {
                        literal += data.len() as u64;
                    }
                    check.update(&data);
                    blake.update(&data);
                    for piece in data.chunks(MAX_DATA_CHUNK) {
                        reply_sink.blocking_send(&Frame::Data {
                            ndx: our,
                            bytes: piece.to_vec(),
                        })?;
                    }
                }
                let mut theirs = vec![0u8; sum.digest_len()];
                input.read_exact(&mut theirs).map_err(from_read)?;
                if let Ok(mut c) = reply_counts.lock() {
                    c.0 += literal;
                    c.1 += matched;
                }
                if check.finish() == theirs {
                    reply_sink.blocking_send(&Frame::DataEnd {
                        ndx: our,
                        hash: *blake.finalize().as_bytes(),
                    })?;
                } else {
                    // Whatever arrived is discarded; the receiver counts a per-file error.
                    reply_sink.blocking_send(&Frame::FileFailed {
                        ndx: our,
                        message: format!(
                            "{:?} failed verification ({} mismatch) -- update discarded",
                            String::from_utf8_lossy(name),
                            sum.name()
                        ),
                    })?;
                }
            }
            // No more file data comes (we never ask for a redo): our receiver may finish —
            // write the last files, link hard links — while the phases end, so that what it
            // does reaches a client before the end, as from rsync's generator.
            let _ = phase_tx.send(());
            // Phase 1 (no redo requests from us) and the sender's final NDX_DONE; echoes of
            // what we itemized meanwhile (hard links) may come before either.
            for _ in 0..2 {
                loop {
                    let r = ndx.read(&mut input).map_err(from_read)?;
                    if r == NDX_DONE {
                        break;
                    }
                    if r < 0 {
                        return Err(bad("echo index", r));
                    }
                    let iflags = read_u16(&mut input).map_err(from_read)?;
                    if iflags & ITEM_TRANSFER != 0 {
                        return Err(bad(
                            "end of transfer",
                            format!("a transfer of index {r}, expected the end"),
                        ));
                    }
                    skip_item_extras(&mut input, iflags)?;
                }
            }
            // A sending server reports its totals; a sending client does not.
            if end == ReceiverEnd::Client {
                for _ in 0..5 {
                    read_varlong(&mut input, 3).map_err(from_read)?;
                }
            }
            if proto >= 31 {
                let r = ndx.read(&mut input).map_err(from_read)?;
                if r != NDX_DONE {
                    return Err(bad("end of run", format!("index {r}")));
                }
            }
            let _ = stats_tx.send(());
            // A server is done now: the client waits for it to exit, not the other way round.
            if end == ReceiverEnd::Server {
                return Ok(());
            }
            // Until the sender closes: only messages may come.
            let mut rest = [0u8; 1];
            match input.read_exact(&mut rest) {
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
                Err(e) => Err(from_read(e)),
                Ok(()) => Err(bad("end of run", "data after the end")),
            }
        })
        .map_err(SyncError::StreamIo)?;

    let mut incoming = Incoming {
        rx: lists_rx,
        pending: VecDeque::new(),
        eof: incoming_eof,
    };
    let mut wndx = NdxCodec::new(proto);
    let mut root: Option<DestRoot> = None;
    let mut summary_read = false;
    let mut top = Some(top);
    let mut rounds = 0u64;
    let result = (|| -> Result<(), SyncError> {
        loop {
            rounds += 1;
            // The round's list: with segments, rsync's lists as they come (see `build`);
            // without, the whole list, sent already.
            let (round_lists, last) = if streaming {
                let mut m = RoundMaps::default();
                let mut frames = Vec::new();
                let mut taken = 0u32;
                let mut held = 0u32;
                // What rsync has sent: it lists ahead of the list we are in as it reads our
                // indexes and NDX_DONEs (upstream's MIN_FILECNT_LOOKAHEAD), not while it
                // waits for us, so a round takes what has come and waits for nothing (the
                // round before made sure its first list had come).
                while taken == 0 || held < window {
                    while incoming.pull(false)? {}
                    let Some(list) = top.take().or_else(|| incoming.pending.pop_front()) else {
                        break;
                    };
                    let (n, skipped) = feeder.feed(list, &mut frames, &mut m)?;
                    say_skipped(skipped, end, &*sink, &mut output)?;
                    held += n;
                    taken += 1;
                }
                while incoming.pull(false)? {}
                // The last round when the lists have ended; when that is not known yet, the
                // end comes as an empty round.
                let last = incoming.eof && incoming.pending.is_empty();
                if last && feeder.maker.owes() {
                    return Err(bad(
                        "file list",
                        "the lists ended while directories were owed theirs",
                    ));
                }
                if rounds > 1 {
                    // The replies of the round before are all read (and our receiver has its
                    // `Done`): its maps may go, the round's frames follow.
                    round_rx.recv().map_err(|_| reader_gone())?;
                }
                if let Ok(mut cell) = maps.lock() {
                    *cell = Arc::new(m);
                }
                for f in frames {
                    fsink.blocking_send(&f)?;
                }
                let count = feeder.maker.sent();
                fsink.blocking_send(&if last {
                    Frame::FileListEnd { count }
                } else {
                    Frame::RoundEnd { count }
                })?;
                (taken, last)
            } else {
                (1, true)
            };
            let round = current(&maps);
            let by_path = round.by_path();
            let mut tap = round.tap(&by_path, opts.dry_run, items.as_ref());
            // Requests: our receiver's Request frames become rsync requests, with the block
            // sums of the old file where there is one.
            loop {
                let frame = rt.block_on(fsource.expect("requests"))?;
                // What the generator did without data for entries before this one goes
                // first: the client prints both in list order, as from rsync's generator.
                let before = match &frame {
                    Frame::Request { ndx, .. } => Some(*ndx),
                    _ => None,
                };
                tap.forward(before, &mut wndx, &mut output)?;
                match frame {
                    Frame::Request { ndx, iflags } => {
                        let r = *round
                            .to_rsync
                            .get(ndx as usize)
                            .ok_or_else(|| bad("request", ndx))?;
                        let name = &round.names[ndx as usize];
                        let mut out = Vec::with_capacity(24);
                        wndx.put(&mut out, r);
                        let new = iflags & 1 != 0;
                        // What changed travels too: a client printing the transfer shows it.
                        put_u16(&mut out, ITEM_TRANSFER | rsync_iflags(iflags, '>'));
                        let basis = if !delta_ok {
                            None
                        } else {
                            if root.is_none() {
                                root = DestRoot::open(basis_dir).ok();
                            }
                            // Issue 15, tempfiles: a partial file kept by an earlier run first.
                            let rel = single_name.unwrap_or(name);
                            let partial = root.as_ref().and_then(|root| {
                                crate::engine::fsys::partial_basis(
                                    root,
                                    opts.temp.partial_dir(),
                                    rel,
                                )
                            });
                            match (partial, new) {
                                (Some(p), _) => {
                                    root.as_ref().and_then(|root| Basis::open(root, &p))
                                }
                                (None, true) => None,
                                (None, false) => {
                                    root.as_ref().and_then(|root| Basis::open(root, rel))
                                }
                            }
                        };
                        match basis {
                            // `--append`: the sender takes the old file's length from the
                            // head and sends only what follows (no block sums,
                            // `receive_sums`).
                            Some(mut b) if opts.write.append == 1 => {
                                b.put_head(&mut out, sum);
                                if let Ok(mut m) = bases.lock() {
                                    m.insert(r, b);
                                }
                            }
                            // `--append-verify` asks for the whole file: our receiver checks
                            // the old bytes against it (rsync's redo of a failed
                            // verification).
                            Some(_) if opts.write.append > 1 => {
                                for _ in 0..4 {
                                    put_i32(&mut out, 0);
                                }
                            }
                            Some(mut b) => {
                                b.put_sums(&mut out, sum, seed, proper_seed_order).map_err(
                                    |e| SyncError::FileIo {
                                        what: "read basis",
                                        path: dest.join(std::ffi::OsStr::from_bytes(name)),
                                        source: e,
                                    },
                                )?;
                                if let Ok(mut m) = bases.lock() {
                                    m.insert(r, b);
                                }
                            }
                            None => {
                                for _ in 0..4 {
                                    put_i32(&mut out, 0);
                                }
                            }
                        }
                        output.write(&out)?;
                    }
                    Frame::Done => break,
                    other => return Err(bad("frame", format!("{other:?}"))),
                }
            }
            if round_lists == 0 {
                // An empty last round (the end came after the round before was closed):
                // rsync's phase ended with that round; our receiver hears it from us.
                fsink.blocking_send(&Frame::Done)?;
                break;
            }
            // Each list of the round is finished (`NDX_DONE`, as rsync's generator finishes
            // a list): all but the last at once; the last once a later list (or the end)
            // has come, as rsync's sender takes the finish of its last list sent as the end
            // of the phase. Finishing the others first lets it send more.
            let mut d = Vec::new();
            if round_lists > 1 {
                // (A reply thread gone has its own error, which the end reports.)
                let _ = dones_tx.send(Dones {
                    count: round_lists - 1,
                    ends_round: false,
                    ends_phase: false,
                });
                for _ in 1..round_lists {
                    wndx.put(&mut d, NDX_DONE);
                }
                output.write(&std::mem::take(&mut d))?;
            }
            let ends_phase = last || incoming.next_or_end()?;
            let _ = dones_tx.send(Dones {
                count: 1,
                ends_round: true,
                ends_phase,
            });
            wndx.put(&mut d, NDX_DONE);
            output.write(&d)?;
            if ends_phase && !last {
                if feeder.maker.owes() {
                    return Err(bad(
                        "file list",
                        "the lists ended while directories were owed theirs",
                    ));
                }
                // Our receiver was told more would come: an empty round ends its list.
                round_rx.recv().map_err(|_| reader_gone())?;
                if let Ok(mut cell) = maps.lock() {
                    *cell = Arc::new(RoundMaps::default());
                }
                fsink.blocking_send(&Frame::FileListEnd {
                    count: feeder.maker.sent(),
                })?;
                match rt.block_on(fsource.expect("requests"))? {
                    Frame::Done => {}
                    other => return Err(bad("frame", format!("{other:?}"))),
                }
                fsink.blocking_send(&Frame::Done)?;
                break;
            }
            if ends_phase {
                break;
            }
        }
        // After the sender's phase-0 end: phase 1 (no redo), the delay-done, and (31+) the
        // delete-stats slot.
        if phase_rx.recv().is_err() {
            return Ok(());
        }
        let round = current(&maps);
        let by_path = round.by_path();
        let mut tap = round.tap(&by_path, opts.dry_run, items.as_ref());
        // All data is on its way to our receiver: its hard links come next, then its summary.
        // A client that prints what we do hears of the links before the phase ends, as from
        // rsync's generator.
        // Issue 15, source: what it synchronized goes to rsync's sender before the end too.
        if items.is_some() || opts.source.remove_source_files {
            read_summary(&rt, &mut fsource, &round.to_rsync, &mut output)?;
            summary_read = true;
            tap.forward(None, &mut wndx, &mut output)?;
        }
        let mut more = Vec::new();
        for _ in 0..if proto >= 31 { 3 } else { 2 } {
            wndx.put(&mut more, NDX_DONE);
        }
        output.write(&more)?;
        if stats_rx.recv().is_err() {
            return Ok(());
        }
        let mut bye = Vec::new();
        wndx.put(&mut bye, NDX_DONE);
        output.write(&bye)?;
        Ok(())
    })();
    let wait_for = |replies: &std::thread::JoinHandle<_>, secs: u64| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !replies.is_finished() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    if let Err(e) = result {
        // The reply thread gone first: its own error (a bad list, a bad reply) is the run's.
        let (e, replies) = match e {
            SyncError::StreamIo(_) => {
                wait_for(&replies, 2);
                if replies.is_finished() {
                    match replies.join() {
                        Ok(Err(re)) => (re, None),
                        _ => (e, None),
                    }
                } else {
                    (e, Some(replies))
                }
            }
            e => (e, Some(replies)),
        };
        // An rsync client hears why and with which code, as from rsync's own server.
        if end == ReceiverEnd::Server && proto >= 31 {
            use crate::proto::rsync::codec::msg;
            let code = e.exit_code().code();
            let _ = output.write_msg(msg::ERROR, format!("arsync: {e}\n").as_bytes());
            let _ = output.write_msg(msg::ERROR_EXIT, &code.to_le_bytes());
        }
        // The reply thread reads from rsync, which waits for us: end rsync's input, so it
        // stops and the thread sees the end. A server's stdout may stay open elsewhere in
        // this process: the thread is not waited for past a grace period (it ends with the
        // process).
        output.close();
        if let Some(replies) = replies {
            wait_for(&replies, if end == ReceiverEnd::Client { 5 } else { 0 });
        }
        return Err(e);
    }
    let replied = replies
        .join()
        .map_err(|_| SyncError::StreamIo(io::Error::other("reply thread panicked")))?;
    replied?;
    if streaming {
        sink.event(Event::Debug {
            message: format!(
                "rsync's incremental file lists: {} entries in {rounds} round{}",
                feeder.maker.sent(),
                if rounds == 1 { "" } else { "s" }
            ),
        });
    }
    // The receiver's summary ends our side.
    if !summary_read {
        match rt.block_on(fsource.expect("summary"))? {
            Frame::Summary(_) => {}
            other => return Err(bad("frame", format!("{other:?}"))),
        }
    }
    drop(fsink);
    rt.block_on(writer.finish())?;
    let io_error = notices.lock().map(|n| n.io_error).unwrap_or(0);
    if io_error & 1 != 0 {
        sink.event(Event::Warning {
            message: "rsync: some files/attrs were not transferred (see previous errors) (code 23) on the remote side".into(),
        });
    }
    let (literal, matched) = counts.lock().map(|c| *c).unwrap_or_default();
    Ok(Wire {
        sent: wire_out.load(Relaxed),
        received: wire_in.load(Relaxed),
        literal,
        matched,
    })
}

/// Read our receiver's last frames up to its `Summary`; what it synchronized (`Synced`, Issue
/// 15, source) goes to rsync's sender as `MSG_SUCCESS`, by rsync index.
fn read_summary(
    rt: &Handle,
    fsource: &mut FrameSource,
    to_rsync: &[i32],
    output: &mut super::link::Mux,
) -> Result<(), SyncError> {
    loop {
        match rt.block_on(fsource.expect("summary"))? {
            Frame::Summary(_) => return Ok(()),
            Frame::Synced(files) => {
                for (ndx, _, _) in files {
                    let r = to_rsync
                        .get(ndx as usize)
                        .ok_or_else(|| bad("synced", ndx))?;
                    output.write_msg(crate::proto::rsync::codec::msg::SUCCESS, &r.to_le_bytes())?;
                }
            }
            other => return Err(bad("frame", format!("{other:?}"))),
        }
    }
}

/// `-c`: the sender's list carries rsync checksums, our receiver compares BLAKE3. For each
/// regular file whose local copy has the size and rsync checksum the sender lists, give the
/// entry the local copy's BLAKE3 (computed in the same read), so the receiver sees it as up to
/// date; anything else keeps no checksum and is transferred. Issue 15, dests: the copies in
/// `--link-dest`/`--compare-dest`/`--copy-dest` directories are tried after the destination's
/// (same content, same BLAKE3).
fn vouch_for_same_content(
    list: &mut FileList,
    sorted: &[RsyncEntry],
    to_rsync: &[i32],
    dest: &Path,
    opts: &SyncOptions,
    sum: SumKind,
) {
    let roots = content_roots(dest, opts);
    for (e, &r) in list.entries.iter_mut().zip(to_rsync) {
        let theirs = &sorted[r as usize].checksum;
        if e.kind != FileKind::File || theirs.is_empty() {
            continue;
        }
        if let Some(h) = roots
            .iter()
            .find_map(|root| same_content(root, e, theirs, sum))
        {
            e.set_checksum(Some(h));
        }
    }
}

/// The BLAKE3 of `e`'s copy below `root` if it has the size and rsync checksum `theirs`.
fn same_content(root: &DestRoot, e: &FileEntry, theirs: &[u8], sum: SumKind) -> Option<[u8; 32]> {
    if e.size == 0 {
        let local = root.path().join(std::ffi::OsStr::from_bytes(&e.path));
        return (std::fs::symlink_metadata(local).is_ok_and(|m| m.is_file() && m.len() == 0)
            && sum.hasher().finish() == theirs)
            .then(|| *blake3::hash(b"").as_bytes());
    }
    let basis = Basis::open(root, &e.path)?;
    let meta = basis.file.metadata().ok()?;
    if meta.len() != e.size {
        return None;
    }
    let mut check = sum.hasher();
    let mut blake = blake3::Hasher::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &basis.file);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                check.update(&buf[..n]);
                blake.update(&buf[..n]);
            }
            Err(_) => return None,
        }
    }
    (check.finish() == theirs).then(|| *blake.finalize().as_bytes())
}

/// An old file the sender matches blocks against, and how it was cut.
struct Basis {
    file: File,
    blength: u32,
    count: u32,
    remainder: u32,
    s2length: u32,
}

impl Basis {
    /// Open the destination's old file at `rel` (never through a symlink).
    fn open(root: &DestRoot, rel: &[u8]) -> Option<Basis> {
        let fd = crate::engine::fsys::open_basis(root, rel).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size <= 0 {
            return None;
        }
        let len = st.st_size as u64;
        // About √len, a multiple of 8, between upstream's 700 and 128 KiB (`sum_sizes_sqroot`).
        let blength = if len <= 700 * 700 {
            700
        } else {
            ((len as f64).sqrt() as u64 & !7).clamp(700, 128 << 10)
        };
        let count = len.div_ceil(blength);
        if count > i32::MAX as u64 {
            return None;
        }
        Some(Basis {
            file: File::from(fd),
            blength: blength as u32,
            count: count as u32,
            remainder: (len % blength) as u32,
            s2length: 0,
        })
    }

    fn head(&self) -> [i32; 4] {
        [
            self.count as i32,
            self.blength as i32,
            self.s2length as i32,
            self.remainder as i32,
        ]
    }

    /// Write the sum head alone (what an `--append` sender reads).
    fn put_head(&mut self, out: &mut Vec<u8>, sum: SumKind) {
        self.s2length = sum.digest_len().min(16) as u32;
        for v in self.head() {
            put_i32(out, v);
        }
    }

    /// The old file's length as the head gives it: what an `--append` sender skips.
    fn head_length(&self) -> u64 {
        let full = u64::from(self.count) * u64::from(self.blength);
        match self.remainder {
            0 => full,
            r => full - u64::from(self.blength - r),
        }
    }

    /// Write the sum head and every block's weak and strong sums (`generate_and_send_sums`).
    /// The strong sums are full length, so a false match cannot slip through.
    fn put_sums(
        &mut self,
        out: &mut Vec<u8>,
        sum: SumKind,
        seed: i32,
        proper_order: bool,
    ) -> io::Result<()> {
        self.put_head(out, sum);
        let mut buf = vec![0u8; self.blength as usize];
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &self.file);
        for k in 0..self.count {
            let n = if k + 1 == self.count && self.remainder != 0 {
                self.remainder as usize
            } else {
                self.blength as usize
            };
            reader.read_exact(&mut buf[..n])?;
            put_i32(out, rolling(&buf[..n]) as i32);
            out.extend_from_slice(
                &sum.block_sum(&buf[..n], seed, proper_order)[..self.s2length as usize],
            );
        }
        Ok(())
    }

    /// Block `k` of the old file; `Err(None)` when `k` is out of range.
    /// `n` bytes of the old file from `at`.
    fn read_at(&self, at: u64, n: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut data = vec![0u8; n];
        self.file.read_exact_at(&mut data, at)?;
        Ok(data)
    }

    fn block(&self, k: u64) -> Result<Vec<u8>, Option<io::Error>> {
        if k >= u64::from(self.count) {
            return Err(None);
        }
        let n = if k + 1 == u64::from(self.count) && self.remainder != 0 {
            self.remainder
        } else {
            self.blength
        };
        self.read_at(k * u64::from(self.blength), n as usize)
            .map_err(Some)
    }
}

/// Skip what follows an item's flags: the basis type and the extra name.
fn skip_item_extras(input: &mut Demux, iflags: u16) -> Result<(), SyncError> {
    if iflags & ITEM_BASIS_TYPE_FOLLOWS != 0 {
        read_u8(input).map_err(from_read)?;
    }
    if iflags & ITEM_XNAME_FOLLOWS != 0 {
        read_vstring(input, 4096).map_err(from_read)?;
    }
    Ok(())
}

/// Issue 15, acls: an entry's ACLs from rsync's list as the engine's attribute list.
fn acl_xattrs(acls: &crate::proto::rsync::acl::KernelAcls) -> Vec<crate::flist::Xattr> {
    let (access, default) = acls;
    [access, default]
        .into_iter()
        .zip(crate::engine::xattr::ACL_NAMES)
        .filter_map(|(v, name)| {
            v.as_ref().map(|v| crate::flist::Xattr {
                name: name.to_vec(),
                value: v.clone(),
            })
        })
        .collect()
}
