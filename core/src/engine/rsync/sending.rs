//! Pushing to a host that has only rsync: an adapter between arsync's own sender and
//! `rsync --server` (the receiver and its generator, [`crate::proto::rsync`]).
//!
//! Our sender scans and reads files as it does for an arsync peer; the adapter hands rsync the
//! list in rsync's encoding (`send_file_entry`) — with incremental recursion a directory at a
//! time, ahead of the generator, as `super::flists` plans them — and serves the generator's
//! requests in the order they come (`send_files`): each transfer is fetched from our sender and
//! sent as a delta against the block sums of the receiver's old copy (`proto::rsync::matcher`:
//! matched blocks by index, the rest literal; whole when there are no sums), with the
//! negotiated whole-file checksum; every itemize record is echoed. It then walks the sender's end of the
//! run (`send_files` phases, `read_final_goodbye`).
//!
//! Does not own: which list holds an entry and what an index names (`super::flists`), `-c`,
//! xattrs, the ACL encoding (`proto::rsync::acl`; this hands over each entry's ACLs).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::runtime::Handle;

use super::flists::{Done, MIN_FILECNT_LOOKAHEAD};
use super::link::{bad, from_read, RsyncLink, CF_INC_RECURSE, CF_SAFE_FLIST};
use super::sent_lists::Listing;
use super::{
    RsyncSession, Wire, ITEM_BASIS_TYPE_FOLLOWS, ITEM_IS_NEW, ITEM_LOCAL_CHANGE, ITEM_TRANSFER,
    ITEM_XNAME_FOLLOWS,
};
use crate::engine::event::{Event, EventSink, Itemize};
use crate::engine::options::SyncOptions;
use crate::engine::segments;
use crate::engine::session::{frame_writer, FrameSource};
use crate::engine::stats::Stats;
use crate::error::SyncError;
use crate::flist::{FileEntry, FileKind};
use crate::proto::merkle::caps::{Caps, Role};
use crate::proto::merkle::{Frame, PROTOCOL_VERSION};
use crate::proto::rsync::codec::{
    put_i32, put_u16, put_vstring, read_i32, read_u16, read_u8, read_varint, read_vstring,
    NdxCodec, Source, NDX_DONE,
};
use crate::proto::rsync::flist::{put_id_list, FlistEncoder, IdList, RsyncEntry};
use crate::proto::rsync::matcher::{BlockSums, Matcher, Token as MatchToken, MAX_BLOCKS};
use crate::proto::rsync::ztoken::ZstdTokenWriter;
use crate::transport::StreamPair;

/// `NDX_DEL_STATS`: the receiver's deletion counts (five varints follow).
const NDX_DEL_STATS: i32 = -3;
/// Largest literal run sent (`CHUNK_SIZE`; rsync 3.4.3–3.4.4 refuse longer ones).
const CHUNK: usize = 32 * 1024;

/// Our entry in rsync's encoding (`top_level`: a top directory, `XMIT_TOP_DIR`).
pub(crate) fn to_rsync(e: &FileEntry, top_level: bool) -> RsyncEntry {
    let ft = match e.kind {
        FileKind::File => 0o100_000,
        FileKind::Dir => 0o040_000,
        FileKind::Symlink => 0o120_000,
        FileKind::CharDev => 0o020_000,
        FileKind::BlockDev => 0o060_000,
        FileKind::Fifo => 0o010_000,
        FileKind::Socket => 0o140_000,
    };
    RsyncEntry {
        name: e.path.to_vec(),
        mode: ft | u32::from(e.perms & 0o7777),
        size: match e.kind {
            FileKind::File => e.size,
            FileKind::Symlink => e.link_target().len() as u64,
            _ => 0,
        },
        mtime: e.mtime,
        nsec: e.mtime_nsec,
        uid: e.uid(),
        gid: e.gid(),
        rdev: (libc::major(e.rdev()), libc::minor(e.rdev())),
        link_target: e.link_target().to_vec(),
        hlink_first: None,
        // With `-c` our sender computed it in the rsync algorithm (see `Caps::rsync_sum`); the
        // encoder keeps the digest's length.
        checksum: e.checksum().map(|c| c.to_vec()).unwrap_or_default(),
        top_dir: e.kind == FileKind::Dir && top_level,
        no_content: e.kind == FileKind::Dir && e.no_content,
        // Issue 15, acls: the engine carries them as kernel attribute values.
        acls: (acl_value(e, 0), acl_value(e, 1)),
    }
}

/// The value of ACL attribute `ACL_NAMES[which]` in `e`'s list.
fn acl_value(e: &FileEntry, which: usize) -> Option<Vec<u8>> {
    e.xattrs()
        .iter()
        .find(|x| x.name == crate::engine::xattr::ACL_NAMES[which])
        .map(|x| x.value.clone())
}

/// rsync's item flags as arsync's [`Itemize`] bits (`Itemize::to_flags`).
fn our_iflags(f: u16, times: bool) -> u16 {
    let mut o = 0;
    if f & ITEM_IS_NEW != 0 {
        o |= 1;
    }
    // A reported time without -t is the time of the transfer (`T`, log.c).
    if f & 0x8 != 0 && !times {
        o |= 256;
    }
    // Issue 15, acls: `ITEM_REPORT_ACL` is our 512.
    if f & 0x80 != 0 {
        o |= 512;
    }
    o | (f & (0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40)) | if f & 0x100 != 0 { 128 } else { 0 }
}

/// Which end of the session the sending side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderEnd {
    /// The client pushing to `rsync --server`.
    Client,
    /// `arsync --server --sender` serving an rsync client's pull.
    Server,
}

/// Run the adapter for a push: `ours` is the stream our sender opened, `rsync` the stream to
/// `rsync --server`. `protocol` caps the version offered.
pub fn bridge_push(
    rsync: super::link::RsyncStart,
    ours: StreamPair,
    opts: &SyncOptions,
    protocol: u8,
    sink: Arc<dyn EventSink>,
) -> Result<Wire, SyncError> {
    let link = rsync.connect(protocol, opts, super::inc_recurse_ok(opts), sink.clone())?;
    serve_sender(RsyncSession(link), ours, opts, sink, SenderEnd::Client)
}

/// The sending side of an rsync session, fed by our sender over `ours`: the file list, the
/// answers to the generator's requests, and the end of the run for `end`.
pub fn serve_sender(
    session: RsyncSession,
    ours: StreamPair,
    opts: &SyncOptions,
    sink: Arc<dyn EventSink>,
    end: SenderEnd,
) -> Result<Wire, SyncError> {
    let rt = Handle::current();
    let RsyncLink {
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
        ..
    } = session.0;

    // Our sender: hello, then its list. Issue 18, streaming list: with incremental recursion
    // it may stream it, a directory at a time, in rounds it keeps live while lists are
    // ahead of rsync's generator (`live_rounds`).
    let inc = compat & CF_INC_RECURSE != 0;
    let stream_offer = inc && segments::options_allow(opts);
    let stats = Arc::new(Stats::default());
    let (fsink, writer) = rt.block_on(async { frame_writer(ours.send, stats.clone()) });
    let mut fsource = FrameSource::new(ours.recv, stats);
    let caps = Caps {
        role: Some(Role::Receiver),
        rsync_sum: opts.checksum.then(|| sum.name().to_owned()),
        // Issue 15: serving an rsync client, our sender's notices go to it (MSG_INFO).
        notices: end == SenderEnd::Server,
        // rsync's receiver takes every kind and says "skipping non-regular file" itself.
        unwanted: Some(crate::proto::merkle::caps::Unwanted::ReceiverSays),
        segments: stream_offer.then(segments::round_offer),
        live_rounds: stream_offer,
        ..Caps::default()
    };
    fsink.blocking_send(&Frame::Hello(caps.hello(PROTOCOL_VERSION)))?;
    let peer = match rt.block_on(fsource.expect("hello"))? {
        Frame::Hello(h) => Caps::from_hello(&h),
        other => return Err(bad("first frame", format!("{other:?}"))),
    };
    let streamed = stream_offer && peer.segments.is_some();
    let mut list: Vec<FileEntry> = Vec::new();
    // Entries our sender could not read: rsync's receiver is told (io_error), so it deletes
    // nothing.
    let mut io_error = 0;
    // Issue 15, select: missing arguments, sent as rsync's mode-0 entries.
    let mut missing: Vec<Vec<u8>> = Vec::new();
    let mut listing = None;
    if streamed {
        listing = Some(Listing::streamed(&rt, &mut fsource, &mut output)?);
    }
    while listing.is_none() {
        match rt.block_on(fsource.expect("file list"))? {
            Frame::MissingArgs(names) => missing.extend(names),
            Frame::Info(message) => output.write_msg(
                crate::proto::rsync::codec::msg::INFO,
                format!("{message}\n").as_bytes(),
            )?,
            Frame::Totals(c) if list.is_empty() => {
                if c.get(6).is_some_and(|&n| n > 0) {
                    io_error = 1;
                }
            }
            Frame::FileEntries(b) => list.extend(b),
            Frame::FileListEnd { count } if count as usize == list.len() => break,
            other => return Err(bad("file list", format!("{other:?}"))),
        }
    }
    let mut listing = match listing {
        Some(l) => l,
        None => {
            // The whole list: the top level now, sorted, and each directory's list later
            // with incremental recursion; without it, one list in our order (the receiver
            // sorts it; indexes follow that sorted order).
            let has_root = list.iter().any(FileEntry::is_root);
            let mut rentries: Vec<RsyncEntry> = list
                .iter()
                .map(|e| to_rsync(e, e.is_root() || (!has_root && !e.path.contains(&b'/'))))
                .collect();
            // After our entries, so that our indexes stay theirs; the receiver sorts them
            // in. rsync sends a missing argument's zeroed `stat`: mode 0, time 0, ids 0.
            rentries.extend(missing.into_iter().map(RsyncEntry::missing));
            Listing::whole(list, rentries, inc)?
        }
    };

    // From a client, the filter list comes first when the receiver deletes or prunes (`-m`)
    // (`send_filter_list`).
    if end == SenderEnd::Client && (opts.delete || opts.select.prune_empty_dirs) {
        let mut f = Vec::new();
        for rule in opts.filters.receiver_rules_for_rsync(opts.delete_excluded) {
            put_i32(&mut f, rule.len() as i32);
            f.extend_from_slice(rule.as_bytes());
        }
        put_i32(&mut f, 0);
        output.write(&f)?;
    }

    // The lists in rsync's encoding ([`Listing`]).
    let fmt = super::flist_format(proto, compat, opts, sum);
    let mut enc = if inc {
        FlistEncoder::new_incremental(fmt)
    } else {
        FlistEncoder::new(fmt)
    };
    let mut wndx = NdxCodec::new(proto);
    let mut out = Vec::new();
    if inc {
        for &i in listing.plan.first() {
            listing.put(&mut enc, &mut out, i);
            if out.len() > 256 * 1024 {
                output.write(&std::mem::take(&mut out))?;
            }
        }
    } else {
        let (list, rentries) = (listing.whole_list(), listing.rentries());
        let mut firsts: HashMap<u32, u32> = HashMap::new();
        for (i, e) in list.iter().enumerate() {
            let hlink = (e.hardlink_group() != 0 && e.kind == FileKind::File).then(|| {
                let first = *firsts.entry(e.hardlink_group()).or_insert(i as u32);
                (first, first == i as u32)
            });
            enc.put(&mut out, &rentries[i], hlink);
            if out.len() > 256 * 1024 {
                output.write(&std::mem::take(&mut out))?;
            }
        }
        for r in &rentries[list.len()..] {
            enc.put(&mut out, r, None);
        }
    }
    // rsync's `use_safe_inc_flist`: the I/O error rides on the end marker.
    let safe_flist = proto >= 31 || compat & CF_SAFE_FLIST != 0;
    let io_error = listing.first_io_error(io_error);
    enc.end(&mut out, io_error, safe_flist);
    // With incremental recursion the names went with the entries (no id lists).
    if !opts.numeric_ids && !inc {
        let (users, groups) = id_names(listing.whole_list());
        let id0 = |ids: &[(u32, Vec<u8>)]| {
            ids.iter()
                .find(|(i, _)| *i == 0)
                .map_or_else(|| b"root".to_vec(), |(_, n)| n.clone())
        };
        // Issue 15, acls: with -A the lists go even without -o/-g (`send_id_lists`).
        if opts.owner || opts.acls {
            let n = id0(&users);
            put_id_list(&mut out, &users, fmt.id0_names.then_some(n.as_slice()));
        }
        if opts.group || opts.acls {
            let n = id0(&groups);
            put_id_list(&mut out, &groups, fmt.id0_names.then_some(n.as_slice()));
        }
    }
    output.write(&out)?;
    // An rsync 3.0 peer (protocol 30, no safe list) hears of an unreadable source by
    // message, after the list (`send_file_list`): its receiver then deletes nothing.
    if io_error != 0 && !safe_flist {
        output.write_msg(
            crate::proto::rsync::codec::msg::IO_ERROR,
            &io_error.to_le_bytes(),
        )?;
    }
    // The next lists, or at once the end when there are none (a one-entry top list must be
    // followed by one of them: the receiver reads it at once, `recv_additional_file_list`).
    let more = listing.next_lists(MIN_FILECNT_LOOKAHEAD, false)?;
    listing.write(&more, &mut enc, &mut wndx, &mut output, safe_flist)?;

    if listing.is_empty() && end == SenderEnd::Server {
        // An empty list ends a sending server's run at once (`do_server_sender`); a sending
        // client goes on through the phases with rsync's receiver.
        return finish(
            &rt,
            fsink,
            fsource,
            writer,
            &wire_in,
            &wire_out,
            &Stats::default(),
            (0, 0),
            Vec::new(),
        );
    }

    let mut rndx = NdxCodec::new(proto);
    let mut phase = 0;
    // What the remote side created, from its item flags, and what went (for --stats).
    let done = Stats::default();
    let mut xfer = Forwarder {
        sum,
        seed,
        proper_seed_order,
        matched: 0,
        literal: 0,
        transferred: 0,
        buffered: HashMap::new(),
        zstd: match compress {
            Some(c) => Some(ZstdTokenWriter::new(c).map_err(SyncError::StreamIo)?),
            None => None,
        },
    };
    // Requests already passed to our sender, answered in the generator's order; small files
    // are asked for ahead, so our sender reads several at once.
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // The indexes whose data was asked for (`FLAG_FILE_SENT`), with `--append`.
    let mut requested: HashSet<i32> = HashSet::new();
    loop {
        let would_block = !input.has_buffered();
        if !pending.is_empty() && (would_block || pending.len() >= AHEAD) {
            let p = pending
                .pop_front()
                .ok_or_else(|| bad("pipeline", "empty"))?;
            xfer.answer(p, &rt, &mut fsource, &mut output, &done, &notices)?;
            continue;
        }
        if !listing.plan.eof() {
            // Lists ahead of the generator; and one more before we wait, as it may be
            // waiting for one (upstream's `extra_flist_sending_enabled`).
            let mut more = listing.next_lists(MIN_FILECNT_LOOKAHEAD, false)?;
            if more.is_empty() && would_block {
                more = listing.one_more_list()?;
            }
            // Issue 18, streaming list: every segment received went as a list; our
            // sender's next round follows what was asked of it.
            if more.is_empty() && listing.round_due(would_block) {
                while let Some(p) = pending.pop_front() {
                    xfer.answer(p, &rt, &mut fsource, &mut output, &done, &notices)?;
                }
                listing.fetch_round(&rt, &fsink, &mut fsource, &mut output)?;
                continue;
            }
            listing.write(&more, &mut enc, &mut wndx, &mut output, safe_flist)?;
        }
        if would_block {
            output.flush()?;
        }
        let r = rndx.read(&mut input).map_err(from_read)?;
        if r == NDX_DEL_STATS {
            for _ in 0..5 {
                read_varint(&mut input).map_err(from_read)?;
            }
            continue;
        }
        if r == NDX_DONE {
            while let Some(p) = pending.pop_front() {
                xfer.answer(p, &rt, &mut fsource, &mut output, &done, &notices)?;
            }
            // With incremental recursion, each list's end but the last is echoed within
            // the phase (`send_files`).
            if listing.done()? == Done::Phase {
                phase += 1;
                if phase > 2 {
                    break;
                }
            }
            let mut d = Vec::new();
            wndx.put(&mut d, NDX_DONE);
            output.write(&d)?;
            continue;
        }
        let our = listing.plan.entry(r)?;
        let iflags = read_u16(&mut input).map_err(from_read)?;
        let basis_type = if iflags & ITEM_BASIS_TYPE_FOLLOWS != 0 {
            Some(read_u8(&mut input).map_err(from_read)?)
        } else {
            None
        };
        let xname = if iflags & ITEM_XNAME_FOLLOWS != 0 {
            Some(read_vstring(&mut input, 4096).map_err(from_read)?)
        } else {
            None
        };
        let mut echo = Vec::new();
        wndx.put(&mut echo, r);
        put_u16(&mut echo, iflags);
        echo.extend(basis_type);
        if let Some(x) = &xname {
            put_vstring(&mut echo, x);
        }
        // A missing argument's entry (after ours) is never asked about.
        let entry = listing.entry(our).ok_or_else(|| bad("file index", r))?;
        if iflags & ITEM_IS_NEW != 0 {
            done.created.add(entry.kind);
        }
        if iflags & ITEM_TRANSFER == 0 {
            if iflags & !(ITEM_BASIS_TYPE_FOLLOWS | ITEM_XNAME_FOLLOWS) != 0 {
                // rsync's log.c: a local change with a name is a hard link to that name.
                let letter = match (iflags & ITEM_LOCAL_CHANGE != 0, &xname) {
                    (true, Some(_)) if entry.kind == FileKind::File => 'h',
                    (true, _) => 'c',
                    (false, _) => '.',
                };
                sink.event(Event::Item {
                    entry,
                    itemize: Itemize::from_flags(
                        letter,
                        entry.kind,
                        our_iflags(iflags, opts.times),
                    ),
                    link_to: xname.as_deref().filter(|_| letter == 'h'),
                });
            }
            pending.push_back(Pending::Echo(echo));
            continue;
        }
        // In a dry run rsync's generator sends no block sums: the transfer is shown and echoed
        // (`send_files` without `do_xfers`).
        if opts.dry_run && phase < 2 && entry.kind == FileKind::File {
            sink.event(Event::Item {
                entry,
                itemize: Itemize::from_flags('<', entry.kind, our_iflags(iflags, opts.times)),
                link_to: None,
            });
            xfer.transferred += 1;
            pending.push_back(Pending::Echo(echo));
            continue;
        }
        if phase >= 2 || entry.kind != FileKind::File {
            return Err(bad(
                "request",
                format!("a transfer of index {r} in phase {phase}"),
            ));
        }
        // The block sums of the receiver's old copy: the data goes as a delta against them.
        let mut head = [0i32; 4];
        for h in &mut head {
            *h = read_i32(&mut input).map_err(from_read)?;
        }
        let [count, blength, s2length, remainder] = head;
        if count < 0
            || !(0..=128 << 10).contains(&blength)
            || (count > 0 && blength == 0)
            || !(0..=sum.digest_len() as i32).contains(&s2length)
            || !(0..=blength).contains(&remainder)
        {
            return Err(bad("sum head", format!("{head:?}")));
        }
        // `--append` (until a failed verification's redo: the file's second request, in
        // phase 1 or, with incremental recursion, in phase 0): the head gives the length of
        // the receiver's old copy, and no block sums follow (`receive_sums`).
        // (Issue 18: only then is each index kept, not for every file of the run.)
        let redo = opts.write.append > 0 && !requested.insert(r);
        let append = (opts.write.append > 0 && !redo).then(|| {
            let full = i64::from(count) * i64::from(blength);
            let len = match remainder {
                0 => full,
                r => full - i64::from(blength - r),
            };
            AppendTo {
                old_len: len.max(0) as u64,
                verify: opts.write.append > 1,
            }
        });
        if count as usize > MAX_BLOCKS && append.is_none() {
            return Err(bad("sum head", format!("{count} blocks")));
        }
        let count = if append.is_some() { 0 } else { count };
        let mut blocks = Vec::with_capacity((count as usize).min(1 << 16));
        for _ in 0..count {
            let weak = read_i32(&mut input).map_err(from_read)? as u32;
            let mut strong = vec![0u8; s2length as usize];
            input.read_exact(&mut strong).map_err(from_read)?;
            blocks.push((weak, strong));
        }
        let sums = (count > 0)
            .then(|| {
                BlockSums::new(
                    blength as usize,
                    s2length as usize,
                    remainder as usize,
                    blocks,
                )
            })
            .flatten();
        // The transfer is shown now, in the generator's order among the records without
        // data above (as rsync's sender logs each record as it reads it); our sender does
        // not show it again.
        sink.event(Event::Item {
            entry,
            itemize: Itemize::from_flags('<', entry.kind, our_iflags(iflags, opts.times)),
            link_to: None,
        });
        // A large file is not asked for ahead: its data would wait in memory.
        if entry.size > AHEAD_MAX_SIZE {
            while let Some(p) = pending.pop_front() {
                xfer.answer(p, &rt, &mut fsource, &mut output, &done, &notices)?;
            }
        }
        let size = entry.size;
        let our = listing.request_ndx(our)? as usize;
        fsink.blocking_send(&Frame::Request {
            ndx: our as u32,
            iflags: our_iflags(iflags, opts.times),
        })?;
        pending.push_back(Pending::Transfer {
            r,
            our,
            size,
            echo,
            head,
            sums,
            append,
        });
    }
    done.transferred.store(xfer.transferred, Relaxed);
    done.literal.store(xfer.literal, Relaxed);
    done.matched.store(xfer.matched, Relaxed);
    let (literal, matched) = (xfer.literal, xfer.matched);
    // The end of the sender's loop; a server then reports its totals (`handle_stats`:
    // read, written, size, list build and transfer times); then `read_final_goodbye`.
    let mut d = Vec::new();
    wndx.put(&mut d, NDX_DONE);
    if end == SenderEnd::Server {
        let total_size = listing.total_size();
        for v in [
            wire_in.load(Relaxed),
            wire_out.load(Relaxed) + d.len() as u64 + 4,
            total_size,
            0,
            0,
        ] {
            crate::proto::rsync::codec::put_varlong(&mut d, v as i64, 3);
        }
    }
    output.write(&d)?;
    let mut goodbye = || -> Result<i32, SyncError> {
        loop {
            let r = rndx.read(&mut input).map_err(from_read)?;
            if r == NDX_DEL_STATS {
                for _ in 0..5 {
                    read_varint(&mut input).map_err(from_read)?;
                }
                continue;
            }
            return Ok(r);
        }
    };
    let r = goodbye()?;
    if r != NDX_DONE {
        return Err(bad("end of run", format!("index {r}")));
    }
    if proto >= 31 {
        let mut d = Vec::new();
        wndx.put(&mut d, NDX_DONE);
        output.write(&d)?;
        let r = goodbye()?;
        if r != NDX_DONE {
            return Err(bad("end of run", format!("index {r}")));
        }
    }
    // Issue 15, source: what rsync's receiver synchronized, for our sender to remove.
    let success = notices
        .lock()
        .map(|mut n| std::mem::take(&mut n.success))
        .unwrap_or_default();
    let mut synced = Vec::with_capacity(success.len());
    for r in success {
        let our = listing
            .plan
            .any_entry(r)
            .ok()
            .filter(|&o| o < listing.whole_list().len())
            .ok_or_else(|| bad("success index", r))?;
        // rsync's receiver on another host says nothing of its file (no `local_server`).
        synced.push((our as u32, 0, 0));
    }
    finish(
        &rt,
        fsink,
        fsource,
        writer,
        &wire_in,
        &wire_out,
        &done,
        (literal, matched),
        synced,
    )
}

/// The `(id, name)` pairs of the owners and groups in `list` that have names, each id once.
fn id_names(list: &[FileEntry]) -> (IdList, IdList) {
    let mut users = IdList::new();
    let mut groups = IdList::new();
    let (mut seen_u, mut seen_g) = (HashSet::new(), HashSet::new());
    for e in list {
        if !e.user().is_empty() && seen_u.insert(e.uid()) {
            users.push((e.uid(), e.user().to_vec()));
        }
        if !e.group().is_empty() && seen_g.insert(e.gid()) {
            groups.push((e.gid(), e.group().to_vec()));
        }
    }
    (users, groups)
}

/// How many records may wait for answers, and the largest file asked for ahead.
const AHEAD: usize = 64;
const AHEAD_MAX_SIZE: u64 = 256 * 1024;

/// A record of the generator waiting for its answer, in the generator's order.
enum Pending {
    /// An itemize record to echo.
    Echo(Vec<u8>),
    /// A transfer already asked of our sender, with the receiver's sums of its old copy.
    Transfer {
        r: i32,
        our: usize,
        /// The file's size (for the totals).
        size: u64,
        echo: Vec<u8>,
        head: [i32; 4],
        sums: Option<BlockSums>,
        append: Option<AppendTo>,
    },
}

/// `--append`: the receiver keeps the first `old_len` bytes; only what follows is sent, and
/// the file's checksum covers them too with `--append-verify` (`match_sums`).
#[derive(Debug, Clone, Copy)]
struct AppendTo {
    old_len: u64,
    verify: bool,
}

/// Answers transfers from our sender's frames, keeping frames of later files until their turn.
struct Forwarder {
    sum: crate::proto::rsync::checksum::SumKind,
    /// The session's checksum seed and its order (for the block sums).
    seed: i32,
    proper_seed_order: bool,
    literal: u64,
    /// File data sent as references to blocks of the receiver's old copies.
    matched: u64,
    transferred: u64,
    buffered: HashMap<usize, VecDeque<Frame>>,
    /// With `-z`: the session's compressed token stream.
    zstd: Option<ZstdTokenWriter>,
}

impl Forwarder {
    /// File data as tokens: literal runs of at most 32 KiB, or zstd blocks.
    fn put_literal(&mut self, bytes: &[u8], o: &mut Vec<u8>) -> Result<(), SyncError> {
        match self.zstd.as_mut() {
            Some(z) => z.literal(bytes, o).map_err(SyncError::StreamIo)?,
            None => {
                for piece in bytes.chunks(CHUNK) {
                    put_i32(o, piece.len() as i32);
                    o.extend_from_slice(piece);
                }
            }
        }
        Ok(())
    }

    /// Feed `bytes` (or, with `None`, the file's end) to the delta search and write its
    /// tokens: literal runs of at most 32 KiB, and `-(n + 1)` for block `n` (`simple_send_token`).
    fn put_delta(
        &mut self,
        m: &mut Matcher,
        bytes: Option<&[u8]>,
        o: &mut Vec<u8>,
    ) -> Result<(), SyncError> {
        let (mut literal, mut blocks) = (0u64, Vec::new());
        let mut zstd = self.zstd.as_mut();
        let mut failed = None;
        let mut emit = |t: MatchToken<'_>| {
            let written = match (t, zstd.as_deref_mut()) {
                (MatchToken::Literal(b), Some(z)) => {
                    literal += b.len() as u64;
                    z.literal(b, o)
                }
                (MatchToken::Literal(b), None) => {
                    for piece in b.chunks(CHUNK) {
                        put_i32(o, piece.len() as i32);
                        o.extend_from_slice(piece);
                    }
                    literal += b.len() as u64;
                    Ok(())
                }
                (MatchToken::Block(n), Some(z)) => {
                    blocks.push(n);
                    z.block(n, o)
                }
                (MatchToken::Block(n), None) => {
                    put_i32(o, -(n as i32) - 1);
                    blocks.push(n);
                    Ok(())
                }
            };
            if let Err(e) = written {
                failed.get_or_insert(e);
            }
        };
        match bytes {
            Some(b) => m.push(b, &mut emit),
            None => m.finish(&mut emit),
        }
        self.literal += literal;
        self.matched += blocks.iter().map(|&n| m.block_len(n) as u64).sum::<u64>();
        failed.map_or(Ok(()), |e| Err(SyncError::StreamIo(e)))
    }

    /// The end of a file's tokens.
    fn put_end(&mut self, o: &mut Vec<u8>) -> Result<(), SyncError> {
        match self.zstd.as_mut() {
            Some(z) => z.end_file(o).map_err(SyncError::StreamIo)?,
            None => put_i32(o, 0),
        }
        Ok(())
    }
}

impl Forwarder {
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        p: Pending,
        rt: &Handle,
        fsource: &mut FrameSource,
        output: &mut super::link::Mux,
        done: &Stats,
        notices: &std::sync::Mutex<super::link::Notices>,
    ) -> Result<(), SyncError> {
        let (r, our, size, echo, head, sums, append) = match p {
            Pending::Echo(e) => return output.queue(&e),
            Pending::Transfer {
                r,
                our,
                size,
                echo,
                head,
                sums,
                append,
            } => (r, our, size, echo, head, sums, append),
        };
        // Bytes of the file seen so far (for `--append`'s skipped prefix).
        let mut at = 0u64;
        let mut check = self.sum.hasher();
        // A delta against the receiver's old copy (with -z too: matches travel as token runs
        // between the compressed literal data).
        let mut matcher =
            sums.map(|s| Matcher::new(s, self.sum, self.seed, self.proper_seed_order));
        let mut started = false;
        loop {
            let frame = match self.buffered.get_mut(&our).and_then(VecDeque::pop_front) {
                Some(f) => f,
                None => rt.block_on(fsource.expect("file data"))?,
            };
            let ndx = match &frame {
                Frame::DataBegin { ndx, .. }
                | Frame::Data { ndx, .. }
                | Frame::DataEnd { ndx, .. }
                | Frame::Vanished { ndx }
                | Frame::FileFailed { ndx, .. } => *ndx as usize,
                other => return Err(bad("sender reply", format!("{other:?}"))),
            };
            if ndx != our {
                let q = self.buffered.entry(ndx).or_default();
                if q.len() > 4096 {
                    return Err(bad("sender reply", "too many frames ahead"));
                }
                q.push_back(frame);
                continue;
            }
            match frame {
                Frame::DataBegin { .. } if !started => {
                    started = true;
                    let mut o = echo.clone();
                    for v in head {
                        put_i32(&mut o, v);
                    }
                    output.queue(&o)?;
                }
                Frame::Data { bytes, .. } if started => {
                    let skip = append.map_or(0, |a| {
                        a.old_len.saturating_sub(at).min(bytes.len() as u64) as usize
                    });
                    at += bytes.len() as u64;
                    if append.is_some_and(|a| a.verify) {
                        check.update(&bytes[..skip]);
                    }
                    let bytes = &bytes[skip..];
                    if bytes.is_empty() {
                        continue;
                    }
                    let mut o = Vec::with_capacity(bytes.len() + 16);
                    check.update(bytes);
                    match matcher.as_mut() {
                        Some(m) => self.put_delta(m, Some(bytes), &mut o)?,
                        None => {
                            self.put_literal(bytes, &mut o)?;
                            self.literal += bytes.len() as u64;
                        }
                    }
                    output.queue(&o)?;
                }
                Frame::DataEnd { .. } if started => {
                    let mut o = Vec::new();
                    if let Some(m) = matcher.as_mut() {
                        self.put_delta(m, None, &mut o)?;
                    }
                    self.put_end(&mut o)?;
                    o.extend_from_slice(&check.finish());
                    output.queue(&o)?;
                    self.transferred += 1;
                    done.transferred_size.fetch_add(size, Relaxed);
                    break;
                }
                Frame::Vanished { .. } | Frame::FileFailed { .. } => {
                    if started {
                        // A deliberately wrong checksum makes the receiver discard the file.
                        let mut o = Vec::new();
                        self.put_end(&mut o)?;
                        let mut wrong = check.finish();
                        wrong.iter_mut().for_each(|b| *b = !*b);
                        o.extend_from_slice(&wrong);
                        output.write(&o)?;
                    } else {
                        let mut o = Vec::new();
                        put_i32(&mut o, r);
                        output.write_msg(crate::proto::rsync::codec::msg::NO_SEND, &o)?;
                    }
                    if let Ok(mut n) = notices.lock() {
                        n.io_error |= 2;
                    }
                    break;
                }
                other => return Err(bad("sender reply", format!("{other:?}"))),
            }
        }
        self.buffered.remove(&our);
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    rt: &Handle,
    fsink: crate::engine::session::FrameSink,
    mut fsource: FrameSource,
    writer: crate::engine::session::FrameWriterTask,
    wire_in: &std::sync::atomic::AtomicU64,
    wire_out: &std::sync::atomic::AtomicU64,
    done: &Stats,
    (literal, matched): (u64, u64),
    synced: Vec<(u32, u64, u64)>,
) -> Result<Wire, SyncError> {
    fsink.blocking_send(&Frame::Done)?;
    match rt.block_on(fsource.expect("done"))? {
        Frame::Done => {}
        other => return Err(bad("frame", format!("{other:?}"))),
    }
    for f in crate::engine::source_removal::synced_frames(synced) {
        fsink.blocking_send(&f)?;
    }
    // What the sending side reports: rsync's receiver tells us nothing more.
    fsink.blocking_send(&Frame::Summary(done.summary_counters()))?;
    drop(fsink);
    rt.block_on(writer.finish())?;
    Ok(Wire {
        sent: wire_out.load(Relaxed),
        received: wire_in.load(Relaxed),
        literal,
        matched,
    })
}
