//! The entries behind the lists a sending side hands rsync's receiver: our sender's whole
//! list, or (issue 18, streaming list) its list as it walks the tree — its `segments`, a round
//! at a time, under `live-rounds` (see `docs/MERKLE_PROTOCOL.md`, "Live rounds").
//!
//! Streamed, each segment is one directory's children: exactly the list rsync's incremental
//! recursion sends for that directory, in the same order (depth first, sorted), so each goes as
//! its list when the generator needs it ([`Listing::next_lists`], `MIN_FILECNT_LOOKAHEAD`
//! entries ahead). Our sender's next round is asked for ([`Listing::fetch_round`]) only when
//! the segments received are all sent; a list's entries are forgotten after the receiver's
//! `NDX_DONE` for it, and our sender is told which of its rounds no request will name again.
//! Memory is then bounded by a round (the widest directory, or `round` entries) and the lists
//! ahead, not by the tree.
//!
//! Owns: where each entry of a list is (rsync index ↔ entry ↔ the index our sender's requests
//! name), the read errors each list's end carries, the size of everything listed. Does not own
//! which list holds an entry or what an index names (`super::flists`), the entry encoding
//! (`crate::proto::rsync::flist`), or serving the generator (`super::sending`).

use std::collections::{HashMap, VecDeque};

use tokio::runtime::Handle;

use super::flists::{Done, ListPlan};
use super::link::bad;
use super::mux::Mux;
use crate::engine::session::{FrameSink, FrameSource};
use crate::error::SyncError;
use crate::flist::{path_order, FileEntry, FileKind};
use crate::proto::merkle::{Frame, ROOT_SEGMENT};
use crate::proto::rsync::codec::{msg, NdxCodec};
use crate::proto::rsync::flist::{FlistEncoder, RsyncEntry};

/// A list to send: the index announcing it (or `NDX_FLIST_EOF`, without members), its entries
/// in rsync's sorted order, and the read error its end carries.
pub(crate) struct NextList {
    pub(crate) ndx: i32,
    pub(crate) members: Option<Vec<usize>>,
    pub(crate) io_error: i32,
}

/// The entries of the session's lists, whole or streamed, and the plan of its lists.
pub(crate) struct Listing {
    pub(crate) plan: ListPlan,
    /// The whole list: our sender's entries (an entry's id is its index)…
    list: Vec<FileEntry>,
    /// … and in rsync's encoding, missing arguments after them.
    rentries: Vec<RsyncEntry>,
    /// Issue 18, streaming list: our sender's segments.
    stream: Option<Stream>,
    /// A read error was told (on a list's end, or by `MSG_IO_ERROR`).
    io_error_told: bool,
    /// Streamed: our sender had read errors when it listed the top level.
    top_io_error: bool,
}

/// An entry received from our sender, while a list sent or to send needs it.
struct Held {
    entry: FileEntry,
    /// Its place in our sender's rounds put end to end (`u32::MAX` for a directory, which is
    /// never asked for).
    pos: u32,
    /// Sent as a top-level directory (`XMIT_TOP_DIR`).
    top: bool,
}

/// A segment received and not yet sent as its directory's list.
struct Queued {
    /// The directory (its session number), `None` for the top level.
    parent: Option<usize>,
    members: Vec<usize>,
    /// Where the next segment starts in our sender's rounds.
    end: u32,
    /// Our sender had read errors when it listed this directory.
    io_error: bool,
}

/// A segment being received.
struct Open {
    parent: Option<usize>,
    left: u32,
    members: Vec<usize>,
    io_error: bool,
}

/// Our sender's segments, as they come a round at a time.
#[derive(Default)]
struct Stream {
    /// Entries by session number (the segments' numbering).
    held: HashMap<usize, Held>,
    queue: VecDeque<Queued>,
    open: Option<Open>,
    /// Entries numbered so far.
    seen: usize,
    /// The next place in our sender's rounds put end to end.
    next_pos: u32,
    /// The rounds our sender keeps (`start`, `end`), and where the latest began.
    rounds: VecDeque<(u32, u32)>,
    round_start: u32,
    /// Where the oldest round our sender keeps starts: requests name `pos - window_base`.
    window_base: u32,
    /// For each list sent and not finished, in order: where its segment ends.
    list_ends: VecDeque<u32>,
    /// Places before this no request will name again (told with each round asked for).
    released: u32,
    /// Our sender's list is complete (`FileListEnd`).
    complete: bool,
    /// Our sender reported read errors.
    io_error: bool,
    /// Everything listed: sizes and symlink targets (a sending server's `total_size`).
    total_size: u64,
}

impl Listing {
    /// The whole list: `list` in our order, `rentries` rsync's encoding of it (and missing
    /// arguments after it), planned for `inc`remental recursion or not.
    pub(crate) fn whole(
        list: Vec<FileEntry>,
        rentries: Vec<RsyncEntry>,
        inc: bool,
    ) -> Result<Listing, SyncError> {
        let names: Vec<(&[u8], bool)> = rentries
            .iter()
            .map(|r| (r.name.as_slice(), r.is_dir()))
            .collect();
        let plan = ListPlan::new(&names, inc)?;
        drop(names);
        Ok(Listing {
            plan,
            list,
            rentries,
            stream: None,
            io_error_told: false,
            top_io_error: false,
        })
    }

    // Issue 18, streaming list:
    /// A streamed listing: our sender's first round read (its `Info` notices passed to
    /// `output`), its top level planned as the first list.
    pub(crate) fn streamed(
        rt: &Handle,
        fsource: &mut FrameSource,
        output: &mut Mux,
    ) -> Result<Listing, SyncError> {
        let mut s = Stream::default();
        s.read_round(rt, fsource, output)?;
        let top = s
            .queue
            .pop_front()
            .filter(|q| q.parent.is_none())
            .ok_or_else(|| bad("segments", "the first is not the top level"))?;
        let mut plan = ListPlan::streamed();
        let dot = top
            .members
            .first()
            .copied()
            .filter(|m| s.held.get(m).is_some_and(|h| h.entry.is_root()));
        let held = &s.held;
        plan.open_top(top.members.clone(), dot, &|m| kinds(held, m));
        s.list_ends.push_back(top.end);
        s.window_base = s.rounds.front().map_or(0, |r| r.0);
        Ok(Listing {
            plan,
            list: Vec::new(),
            rentries: Vec::new(),
            stream: Some(s),
            io_error_told: false,
            top_io_error: top.io_error,
        })
    }

    /// Whether there is no entry at all.
    pub(crate) fn is_empty(&self) -> bool {
        match &self.stream {
            Some(s) => s.held.is_empty(),
            None => self.rentries.is_empty(),
        }
    }

    /// Our sender's entry `id` (`None` for a missing argument).
    pub(crate) fn entry(&self, id: usize) -> Option<&FileEntry> {
        match &self.stream {
            Some(s) => s.held.get(&id).map(|h| &h.entry),
            None => self.list.get(id),
        }
    }

    /// The index our sender's requests name entry `id` by.
    pub(crate) fn request_ndx(&self, id: usize) -> Result<u32, SyncError> {
        match &self.stream {
            Some(s) => s
                .held
                .get(&id)
                .and_then(|h| {
                    h.pos
                        .checked_sub(s.window_base)
                        .filter(|_| h.pos != u32::MAX)
                })
                .ok_or_else(|| bad("file index", format!("entry {id} is not in a live round"))),
            None => Ok(id as u32),
        }
    }

    /// The whole list (empty when streamed).
    pub(crate) fn whole_list(&self) -> &[FileEntry] {
        &self.list
    }

    /// The whole list in rsync's encoding (empty when streamed).
    pub(crate) fn rentries(&self) -> &[RsyncEntry] {
        &self.rentries
    }

    /// Every entry's size and symlink target's length, summed (`total_size`).
    pub(crate) fn total_size(&self) -> u64 {
        match &self.stream {
            Some(s) => s.total_size,
            None => self
                .list
                .iter()
                .map(|e| e.size + e.link_target().len() as u64)
                .sum(),
        }
    }

    /// Encode entry `id` (with its owner's names, which an incremental encoder sends inline).
    pub(crate) fn put(&self, enc: &mut FlistEncoder, out: &mut Vec<u8>, id: usize) {
        match &self.stream {
            Some(s) => {
                if let Some(h) = s.held.get(&id) {
                    let r = super::sending::to_rsync(&h.entry, h.top);
                    enc.put_named(out, &r, None, (h.entry.user(), h.entry.group()));
                }
            }
            None => {
                let names = self
                    .list
                    .get(id)
                    .map_or((&[][..], &[][..]), |e| (&e.user()[..], &e.group()[..]));
                enc.put_named(out, &self.rentries[id], None, names);
            }
        }
    }

    /// The next lists, so that at least `at_least` entries are ahead of the generator (or,
    /// with `one_more`, one list more than now); streamed, as far as the segments received
    /// go.
    pub(crate) fn next_lists(
        &mut self,
        at_least: usize,
        one_more: bool,
    ) -> Result<Vec<NextList>, SyncError> {
        let Some(s) = self.stream.as_mut() else {
            let rentries = &self.rentries;
            let kinds = |m: usize| (rentries[m].is_dir(), rentries[m].name == b".");
            let lists = if one_more {
                self.plan.one_more(&kinds)
            } else {
                self.plan.next_lists(at_least, &kinds)
            };
            return Ok(lists
                .into_iter()
                .map(|(ndx, members)| NextList {
                    ndx,
                    members,
                    io_error: 0,
                })
                .collect());
        };
        let mut out = Vec::new();
        let at_least = if one_more {
            self.plan.ahead() + 1
        } else {
            at_least
        };
        while self.plan.wants(at_least) {
            let Some(q) = s.queue.pop_front() else {
                if s.complete {
                    out.push(NextList {
                        ndx: self.plan.end()?,
                        members: None,
                        io_error: 0,
                    });
                }
                break;
            };
            let dir = q
                .parent
                .ok_or_else(|| bad("segments", "a second top level"))?;
            let held = &s.held;
            let ndx = self
                .plan
                .open_dir(dir, q.members.clone(), &|m| kinds(held, m))?;
            s.list_ends.push_back(q.end);
            // Upstream's `send_extra_file_list`: a list's end carries a read error found
            // while it was listed.
            let io_error = i32::from(q.io_error && !self.io_error_told);
            self.io_error_told |= q.io_error;
            out.push(NextList {
                ndx,
                members: Some(q.members),
                io_error,
            });
        }
        Ok(out)
    }

    /// One list more than now, if any: for when the sender would wait on the receiver.
    pub(crate) fn one_more_list(&mut self) -> Result<Vec<NextList>, SyncError> {
        self.next_lists(0, true)
    }

    /// The first list's read error, told on its end (or after it by message).
    pub(crate) fn first_io_error(&mut self, whole: i32) -> i32 {
        let e = match &self.stream {
            Some(_) => i32::from(self.top_io_error),
            None => whole,
        };
        self.io_error_told |= e != 0;
        e
    }

    /// Whether our sender's next round is due: every segment received was sent and the
    /// generator wants more lists (or the sender would wait on it).
    pub(crate) fn round_due(&self, would_block: bool) -> bool {
        self.stream.as_ref().is_some_and(|s| {
            s.queue.is_empty()
                && !s.complete
                && !self.plan.eof()
                && (would_block || self.plan.wants(super::flists::MIN_FILECNT_LOOKAHEAD))
        })
    }

    /// Ask our sender for its next round and read it: the places no request names again,
    /// `Done`; then its `Done` (after the last file asked for, which the caller answered
    /// first) and the round.
    pub(crate) fn fetch_round(
        &mut self,
        rt: &Handle,
        fsink: &FrameSink,
        fsource: &mut FrameSource,
        output: &mut Mux,
    ) -> Result<(), SyncError> {
        let Some(s) = self.stream.as_mut() else {
            return Ok(());
        };
        fsink.blocking_send(&Frame::RoundEnd { count: s.released })?;
        fsink.blocking_send(&Frame::Done)?;
        match rt.block_on(fsource.expect("the end of a round"))? {
            Frame::Done => {}
            other => return Err(bad("the end of a round", format!("{other:?}"))),
        }
        // The rounds our sender forgets now.
        while s.rounds.front().is_some_and(|&(_, end)| end <= s.released) {
            s.rounds.pop_front();
        }
        s.read_round(rt, fsource, output)?;
        s.window_base = s.rounds.front().map_or(0, |r| r.0);
        Ok(())
    }

    /// The receiver sent `NDX_DONE`: a streamed list it finished is forgotten.
    pub(crate) fn done(&mut self) -> Result<Done, SyncError> {
        let done = self.plan.done()?;
        if let Some(s) = self.stream.as_mut() {
            for (members, parent) in self.plan.take_retired() {
                if let Some(end) = s.list_ends.pop_front() {
                    s.released = s.released.max(end);
                }
                // A directory stays until its own list is finished (its index names it).
                for m in members {
                    if s.held.get(&m).is_some_and(|h| !is_dir(&h.entry)) {
                        s.held.remove(&m);
                    }
                }
                if let Some(p) = parent {
                    s.held.remove(&p);
                }
            }
        }
        Ok(done)
    }

    /// Write `lists` from [`Listing::next_lists`]: each announcing index, then the list and
    /// its end (`send_extra_file_list`); or the end of the lists. A read error goes on the
    /// list's end, or after the lists by `MSG_IO_ERROR` to a peer without safe lists.
    pub(crate) fn write(
        &self,
        lists: &[NextList],
        enc: &mut FlistEncoder,
        wndx: &mut NdxCodec,
        output: &mut Mux,
        safe_flist: bool,
    ) -> Result<(), SyncError> {
        if lists.is_empty() {
            return Ok(());
        }
        let mut o = Vec::new();
        let mut io_error = 0;
        for l in lists {
            wndx.put(&mut o, l.ndx);
            if let Some(members) = &l.members {
                for &i in members {
                    self.put(enc, &mut o, i);
                }
                enc.end(&mut o, if safe_flist { l.io_error } else { 0 }, true);
                io_error |= l.io_error;
            }
            if o.len() > 256 * 1024 {
                output.queue(&std::mem::take(&mut o))?;
            }
        }
        output.write(&o)?;
        if io_error != 0 && !safe_flist {
            output.write_msg(msg::IO_ERROR, &io_error.to_le_bytes())?;
        }
        Ok(())
    }
}

impl Stream {
    /// Read our sender's next round: its segments queued as lists to send, its read errors,
    /// its notices passed to `output` (`MSG_INFO`).
    fn read_round(
        &mut self,
        rt: &Handle,
        fsource: &mut FrameSource,
        output: &mut Mux,
    ) -> Result<(), SyncError> {
        loop {
            match rt.block_on(fsource.expect("file list"))? {
                Frame::Info(message) => {
                    output.write_msg(msg::INFO, format!("{message}\n").as_bytes())?
                }
                Frame::Totals(c) => {
                    if c.get(6).is_some_and(|&n| n > 0) {
                        self.io_error = true;
                    }
                }
                Frame::Segment {
                    parent,
                    base,
                    count,
                } => {
                    if self.open.is_some() || base as usize != self.seen {
                        return Err(bad("segment", format!("{parent} at {base}")));
                    }
                    let parent = (parent != ROOT_SEGMENT).then_some(parent as usize);
                    if parent.is_some() {
                        // The directory heads its segment in our sender's round.
                        self.next_pos += 1;
                    }
                    self.open = Some(Open {
                        parent,
                        left: count,
                        members: Vec::with_capacity(count.min(1 << 16) as usize),
                        io_error: self.io_error,
                    });
                    self.close_if_full();
                }
                Frame::FileEntries(batch) => {
                    let open = self
                        .open
                        .as_mut()
                        .ok_or_else(|| bad("file list", "entries outside a segment"))?;
                    for entry in batch {
                        if open.left == 0 {
                            return Err(bad("segment", "more entries than its count"));
                        }
                        open.left -= 1;
                        let id = self.seen;
                        self.seen += 1;
                        let pos = if is_dir(&entry) {
                            u32::MAX
                        } else {
                            self.next_pos += 1;
                            self.next_pos - 1
                        };
                        self.total_size += entry.size + entry.link_target().len() as u64;
                        open.members.push(id);
                        self.held.insert(
                            id,
                            Held {
                                entry,
                                pos,
                                top: false,
                            },
                        );
                    }
                    self.close_if_full();
                }
                f @ (Frame::RoundEnd { count } | Frame::FileListEnd { count }) => {
                    if self.open.is_some() || count as usize != self.seen {
                        return Err(bad("round end", count));
                    }
                    self.rounds.push_back((self.round_start, self.next_pos));
                    self.round_start = self.next_pos;
                    self.complete = matches!(f, Frame::FileListEnd { .. });
                    return Ok(());
                }
                other => return Err(bad("file list", format!("{other:?}"))),
            }
        }
    }

    /// Queue the segment being received once it has all its entries, in rsync's sorted
    /// order (the top level's entries marked as such).
    fn close_if_full(&mut self) {
        if self.open.as_ref().is_none_or(|o| o.left > 0) {
            return;
        }
        let Some(mut open) = self.open.take() else {
            return;
        };
        let held = &mut self.held;
        open.members.sort_by(|a, b| {
            let (a, b) = (&held[a].entry, &held[b].entry);
            path_order(
                &a.path,
                a.kind == FileKind::Dir,
                &b.path,
                b.kind == FileKind::Dir,
            )
        });
        if open.parent.is_none() {
            let has_root = open.members.iter().any(|m| held[m].entry.is_root());
            for m in &open.members {
                if let Some(h) = held.get_mut(m) {
                    h.top = h.entry.is_root() || (!has_root && !h.entry.path.contains(&b'/'));
                }
            }
        }
        self.queue.push_back(Queued {
            parent: open.parent,
            members: open.members,
            end: self.next_pos,
            io_error: open.io_error,
        });
    }
}

/// A directory other than the top level's `.`: it heads its own segment.
fn is_dir(e: &FileEntry) -> bool {
    e.kind == FileKind::Dir && !e.is_root()
}

/// An entry's kinds for the plan: a directory, the top level's `.`.
fn kinds(held: &HashMap<usize, Held>, m: usize) -> (bool, bool) {
    held.get(&m).map_or((false, false), |h| {
        (h.entry.kind == FileKind::Dir, h.entry.is_root())
    })
}
