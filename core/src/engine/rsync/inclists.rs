//! Issue 18: rsync's incremental file lists as our receiving side reads them, and the segments
//! of our receiver's streamed list they become (`docs/RSYNC_WIRE_PROTOCOL.md`, "Incremental
//! recursion"; `docs/MERKLE_PROTOCOL.md`, "Segments").
//!
//! With `CF_INC_RECURSE` rsync's sender sends the top level first (indexed from 1), then one
//! list per directory, each announced as `NDX_FLIST_OFFSET - dir_ndx` between its replies
//! (upstream's `read_ndx_and_attrs`, `recv_file_list`), indexed from one past the previous
//! list's end, and at last `NDX_FLIST_EOF`. `dir_ndx` is the directory's place in the receiver's
//! `dir_flist`: every directory of every list, list by list, in sorted order. The sender walks
//! its directories depth first in sorted order — the order of our segments — so each list
//! becomes one segment: its directory's children in transfer order.
//!
//! Owns: reading a list off the wire with the session's one decoder and bounding what it may
//! announce ([`ListReader`], on the thread that reads rsync's replies); checking each list
//! against the directories owed one and turning it into a segment with its index map
//! ([`SegmentMaker`], on the thread that feeds our receiver). Does not own the entry encoding
//! (`proto::rsync::flist`), the rounds and their `NDX_DONE`s (`receiving`), or what an entry
//! becomes in our list (`receiving::convert_entry`).

use std::collections::{HashMap, HashSet};

use super::flists::{NDX_FLIST_EOF, NDX_FLIST_OFFSET};
use super::link::{bad, from_read};
use crate::error::SyncError;
use crate::flist::{path_order, validate_rel_path, FileEntry, FileKind};
use crate::proto::merkle::{MAX_FILES, ROOT_SEGMENT};
use crate::proto::rsync::codec::Source;
use crate::proto::rsync::flist::{
    read_file_list, FlistDecoder, FlistFormat, IdList, RsyncEntry, MAX_ENTRIES,
};

/// One of rsync's lists as read.
#[derive(Debug)]
pub(crate) struct RsyncList {
    /// The directory it lists, by its place in `dir_flist` (`None`: the top list).
    pub(crate) dir_ndx: Option<i32>,
    /// Its first wire index.
    pub(crate) start: i32,
    /// Its entries, in wire order.
    pub(crate) entries: Vec<RsyncEntry>,
    /// The I/O error on its end marker.
    pub(crate) io_error: i32,
    /// User and group names: the id lists (whole list) or the names that came inline.
    pub(crate) names: (IdList, IdList),
}

/// What the reader hands on: a list, or the end of the lists.
#[derive(Debug)]
pub(crate) enum ListMsg {
    List(RsyncList),
    Eof,
}

/// Reads rsync's lists: the top one (before the transfers), then, with incremental
/// recursion, each one announced among the replies.
#[derive(Debug)]
pub(crate) struct ListReader {
    fmt: FlistFormat,
    inc: bool,
    /// The session's one decoder: "same as the previous entry" spans lists.
    decoder: FlistDecoder,
    /// The next list's first index.
    next_start: i64,
    /// Entries in every list so far.
    total: usize,
    /// Directories in every list so far (`dir_flist->used`), and which of them got a list.
    dirs: usize,
    listed: Vec<bool>,
    eof: bool,
}

impl ListReader {
    /// A reader for a session of format `fmt`, with incremental recursion or not.
    pub(crate) fn new(fmt: FlistFormat, inc: bool) -> ListReader {
        ListReader {
            fmt,
            inc,
            decoder: FlistDecoder::new(fmt),
            next_start: i64::from(inc),
            total: 0,
            dirs: 0,
            listed: Vec::new(),
            eof: !inc,
        }
    }

    /// The top list: without incremental recursion the whole list and its id lists, indexed
    /// from 0; with it, the top level, indexed from 1.
    pub(crate) fn read_top(&mut self, s: &mut impl Source) -> Result<RsyncList, SyncError> {
        if !self.inc {
            let got = read_file_list(s, self.fmt).map_err(from_read)?;
            self.total = got.decoder.entries.len();
            return Ok(RsyncList {
                dir_ndx: None,
                start: 0,
                entries: got.decoder.entries,
                io_error: got.decoder.io_error,
                names: (got.users, got.groups),
            });
        }
        self.read_list(s, None)
    }

    /// An index below `NDX_DONE` from rsync's sender: a list announced (read now), or the
    /// end of the lists (`None`). Anything else — no incremental recursion, a list after the
    /// end, an index between the two, a directory not yet listed or listed already — is a
    /// protocol error, as upstream's "Invalid dir index" and "refusing malicious duplicate
    /// flist".
    pub(crate) fn read_extra(
        &mut self,
        ndx: i32,
        s: &mut impl Source,
    ) -> Result<Option<RsyncList>, SyncError> {
        if !self.inc {
            return Err(bad("reply index", ndx));
        }
        if self.eof {
            return Err(bad(
                "file list",
                format!("index {ndx} after the end of the lists"),
            ));
        }
        if ndx == NDX_FLIST_EOF {
            self.eof = true;
            return Ok(None);
        }
        let dir_ndx = i64::from(NDX_FLIST_OFFSET) - i64::from(ndx);
        if ndx > NDX_FLIST_OFFSET || dir_ndx >= self.dirs as i64 {
            return Err(bad(
                "file list",
                format!("invalid dir index {dir_ndx} (of {} directories)", self.dirs),
            ));
        }
        let at = dir_ndx as usize;
        if self.listed.get(at).copied().unwrap_or(true) {
            return Err(bad(
                "file list",
                format!("a second list for directory {dir_ndx}"),
            ));
        }
        self.listed[at] = true;
        self.read_list(s, Some(dir_ndx as i32)).map(Some)
    }

    /// Whether `NDX_FLIST_EOF` came (always, without incremental recursion).
    pub(crate) fn eof(&self) -> bool {
        self.eof
    }

    fn read_list(
        &mut self,
        s: &mut impl Source,
        dir_ndx: Option<i32>,
    ) -> Result<RsyncList, SyncError> {
        self.decoder.io_error = 0;
        while self.decoder.next(s).map_err(from_read)?.is_some() {
            if self.total + self.decoder.entries.len() > MAX_ENTRIES {
                return Err(bad(
                    "file list",
                    format!("more than {MAX_ENTRIES} entries in all"),
                ));
            }
        }
        let entries = std::mem::take(&mut self.decoder.entries);
        self.total += entries.len();
        let start = self.next_start;
        // The index before a list names its directory; the lists end at most 50,000,000
        // entries and as many lists (one per directory) on: inside an i32.
        self.next_start = start + entries.len() as i64 + 1;
        let start = i32::try_from(start).map_err(|_| bad("file list", "index past 2^31"))?;
        let dirs = entries.iter().filter(|e| e.is_dir()).count();
        self.dirs += dirs;
        self.listed.resize(self.dirs, false);
        Ok(RsyncList {
            dir_ndx,
            start,
            entries,
            io_error: std::mem::take(&mut self.decoder.io_error),
            names: std::mem::take(&mut self.decoder.inline_names),
        })
    }
}

/// A directory listed whose own list is still to come.
#[derive(Debug)]
struct OwedDir {
    /// Its place in `dir_flist`.
    dir_ndx: i32,
    /// Its number in our list.
    ours: u32,
    path: Vec<u8>,
}

/// One list, checked and sorted: the entries kept, each with its wire index.
#[derive(Debug)]
pub(crate) struct SortedList {
    /// The directory's path (`None`: the top list).
    pub(crate) dir: Option<Vec<u8>>,
    /// The segment's parent and the head of its part of the round's list: our number of
    /// the directory and the index naming it (`start - 1`).
    pub(crate) parent: Option<(u32, i32)>,
    /// The entries kept, in transfer order, with their wire indexes.
    pub(crate) entries: Vec<(RsyncEntry, i32)>,
}

/// Checks each list against the directories owed one (depth first, the next on top, as
/// rsync's sender walks them and our segments go) and numbers what it keeps.
#[derive(Debug, Default)]
pub(crate) struct SegmentMaker {
    owed: Vec<OwedDir>,
    /// Directories in the lists so far (the next one's `dir_ndx`).
    dirs: i64,
    /// Entries given our numbers so far.
    sent: u32,
    top_done: bool,
}

impl SegmentMaker {
    /// Entries numbered so far (the next segment's base).
    pub(crate) fn sent(&self) -> u32 {
        self.sent
    }

    /// Whether a list is owed to some directory.
    pub(crate) fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Check `list` and sort it: the top list first, then each directory's in turn; every
    /// name a child of its directory (the top list's: one component, or `.`) and a valid
    /// path. Duplicates are dropped as rsync's receiver drops them (the first kept, a
    /// directory before a non-directory of its name), keeping their places in the numbering.
    pub(crate) fn sort(&mut self, list: RsyncList) -> Result<SortedList, SyncError> {
        let (dir, parent) = match list.dir_ndx {
            None if !self.top_done => (None, None),
            None => return Err(bad("file list", "a second top-level list")),
            Some(d) => {
                if self.owed.last().is_none_or(|o| o.dir_ndx != d) {
                    return Err(bad(
                        "file list",
                        format!("the list of directory {d} out of turn (not the next one owed)"),
                    ));
                }
                let next = self.owed.pop().ok_or_else(|| bad("file list", d))?;
                (Some(next.path), Some((next.ours, list.start - 1)))
            }
        };
        self.top_done = true;
        for e in &list.entries {
            let name = e.name.strip_suffix(b"/").unwrap_or(&e.name);
            let ok = match &dir {
                None => name == b"." || !name.contains(&b'/'),
                Some(d) => name
                    .strip_prefix(d.as_slice())
                    .and_then(|rest| rest.strip_prefix(b"/"))
                    .is_some_and(|leaf| !leaf.contains(&b'/')),
            };
            let valid = validate_rel_path(name);
            if !ok || valid.is_err() {
                return Err(bad(
                    "file-list name",
                    format!(
                        "{:?} {}",
                        String::from_utf8_lossy(name),
                        valid
                            .err()
                            .unwrap_or("is not a child of its list's directory")
                    ),
                ));
            }
            if name == b"." && (!e.is_dir() || dir.is_some()) {
                return Err(bad("file list", "`.` other than as the top directory"));
            }
        }
        let mut order: Vec<usize> = (0..list.entries.len()).collect();
        let keys: Vec<Vec<u8>> = list
            .entries
            .iter()
            .map(|e| e.name.strip_suffix(b"/").unwrap_or(&e.name).to_vec())
            .collect();
        order.sort_by(|&a, &b| {
            path_order(
                &keys[a],
                list.entries[a].is_dir(),
                &keys[b],
                list.entries[b].is_dir(),
            )
        });
        let dir_names: HashSet<&[u8]> = order
            .iter()
            .filter(|&&i| list.entries[i].is_dir())
            .map(|&i| keys[i].as_slice())
            .collect();
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let mut kept = vec![false; list.entries.len()];
        for &i in &order {
            let k = keys[i].as_slice();
            let shadowed = !list.entries[i].is_dir() && dir_names.contains(k);
            kept[i] = !shadowed && seen.insert(k);
        }
        // The directories' places in `dir_flist` (dropped ones too), and ours for those
        // kept: owed a list each but `.`, the first in sorted order on top.
        let mut subdirs = Vec::new();
        let mut out = Vec::with_capacity(list.entries.len());
        let mut entries: Vec<Option<RsyncEntry>> = list.entries.into_iter().map(Some).collect();
        for (pos, &i) in order.iter().enumerate() {
            let is_dir = entries[i].as_ref().is_some_and(RsyncEntry::is_dir);
            let dir_ndx = self.dirs;
            if is_dir {
                self.dirs += 1;
            }
            if !kept[i] {
                continue;
            }
            let Some(e) = entries[i].take() else { continue };
            let ndx = list.start + pos as i32;
            if is_dir && keys[i] != b"." {
                subdirs.push(OwedDir {
                    dir_ndx: i32::try_from(dir_ndx).map_err(|_| bad("file list", "too many"))?,
                    ours: self.sent + out.len() as u32,
                    path: keys[i].clone(),
                });
            }
            out.push((e, ndx));
        }
        if u64::from(self.sent) + out.len() as u64 > u64::from(MAX_FILES) {
            return Err(bad(
                "file list",
                format!("more than {MAX_FILES} entries in all"),
            ));
        }
        self.sent += out.len() as u32;
        self.owed.extend(subdirs.into_iter().rev());
        Ok(SortedList {
            dir,
            parent,
            entries: out,
        })
    }
}

/// The segment header's parent for `sorted` ([`ROOT_SEGMENT`] for the top list).
pub(crate) fn segment_parent(sorted: &SortedList) -> u32 {
    sorted.parent.map_or(ROOT_SEGMENT, |(ours, _)| ours)
}

/// Whether our receiver lists `e` in place in its round (not a directory, which heads its own
/// segment, unless it is the top `.`), as `engine::segments` decides.
pub(crate) fn listed_in_place(e: &FileEntry) -> bool {
    e.kind != FileKind::Dir || e.is_root()
}

/// One name per id, whichever list carried it.
pub(crate) fn add_names(map: &mut HashMap<u32, crate::flist::Name>, names: IdList) {
    for (id, n) in names {
        map.entry(id).or_insert_with(|| n.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rsync::flist::FlistEncoder;

    fn fmt() -> FlistFormat {
        FlistFormat {
            protocol: 31,
            varint_flags: true,
            uid: false,
            gid: false,
            links: true,
            devices: false,
            specials: false,
            hard_links: false,
            checksum_len: None,
            id0_names: true,
            numeric_ids: true,
            acls: false,
            missing_args: false,
        }
    }

    fn entry(name: &str, dir: bool) -> RsyncEntry {
        RsyncEntry {
            mode: if dir { 0o040_755 } else { 0o100_644 },
            mtime: 1_700_000_000,
            ..RsyncEntry::missing(name.as_bytes().to_vec())
        }
    }

    fn list(dir_ndx: Option<i32>, start: i32, names: &[(&str, bool)]) -> RsyncList {
        RsyncList {
            dir_ndx,
            start,
            entries: names.iter().map(|(n, d)| entry(n, *d)).collect(),
            io_error: 0,
            names: Default::default(),
        }
    }

    fn names(s: &SortedList) -> Vec<(String, i32)> {
        s.entries
            .iter()
            .map(|(e, n)| (String::from_utf8_lossy(&e.name).into_owned(), *n))
            .collect()
    }

    /// The top list sorted (files before directories), numbered from its start; the
    /// directories' lists then come depth first, each a child list of the one owed next.
    #[test]
    fn lists_become_segments_depth_first() {
        let mut m = SegmentMaker::default();
        let top = m
            .sort(list(
                None,
                1,
                &[("b", true), ("z", false), (".", true), ("a", true)],
            ))
            .unwrap();
        assert_eq!(
            names(&top),
            [
                (".".into(), 1),
                ("z".into(), 2),
                ("a".into(), 3),
                ("b".into(), 4)
            ]
        );
        assert_eq!(segment_parent(&top), ROOT_SEGMENT);
        // dir_flist: . a b → 0 1 2; `a` (ours 2) is owed first.
        assert!(m.sort(list(Some(2), 6, &[])).is_err(), "b before a");
        let mut m2 = SegmentMaker::default();
        m2.sort(list(None, 1, &[(".", true), ("a", true), ("b", true)]))
            .unwrap();
        let a = m2
            .sort(list(Some(1), 5, &[("a/y", true), ("a/x", false)]))
            .unwrap();
        assert_eq!(a.parent, Some((1, 4)));
        assert_eq!(names(&a), [("a/x".into(), 5), ("a/y".into(), 6)]);
        // a/y is dir 3, owed before b (dir 2).
        assert!(m2.sort(list(Some(2), 8, &[])).is_err());
        let y = m2.sort(list(Some(3), 8, &[("a/y/f", false)])).unwrap();
        assert_eq!(y.parent, Some((4, 7)));
        let b = m2.sort(list(Some(2), 10, &[])).unwrap();
        assert_eq!(b.parent, Some((2, 9)));
        assert!(!m2.owes());
        assert_eq!(m2.sent(), 6);
    }

    /// A hostile sender: a name outside its list's directory, a path escape, a second top
    /// list, a list for a file or a dropped duplicate — each refused.
    #[test]
    fn lists_out_of_place_are_refused() {
        let start = || {
            let mut m = SegmentMaker::default();
            m.sort(list(None, 1, &[(".", true), ("d", true), ("f", false)]))
                .unwrap();
            m
        };
        assert!(start().sort(list(Some(1), 5, &[("e/x", false)])).is_err());
        assert!(start().sort(list(Some(1), 5, &[("d/x/y", false)])).is_err());
        assert!(start().sort(list(Some(1), 5, &[("d/..", false)])).is_err());
        assert!(start().sort(list(None, 5, &[("x", false)])).is_err());
        assert!(start().sort(list(Some(0), 5, &[])).is_err(), "`.` listed");
        assert!(start().sort(list(Some(1), 5, &[(".", true)])).is_err());
        assert!(SegmentMaker::default()
            .sort(list(None, 1, &[("a/b", false)]))
            .is_err());
        assert!(SegmentMaker::default()
            .sort(list(None, 1, &[("..", true)]))
            .is_err());
        // Duplicates: the first kept (a directory over a file of its name); the dropped
        // directory keeps its place in dir_flist but is owed nothing.
        let mut m = SegmentMaker::default();
        let top = m
            .sort(list(
                None,
                1,
                &[("d", true), ("d", true), ("x", false), ("x", true)],
            ))
            .unwrap();
        assert_eq!(names(&top), [("d".into(), 2), ("x".into(), 4)]);
        assert!(m.sort(list(Some(1), 6, &[])).is_err(), "the dropped d");
        m.sort(list(Some(0), 6, &[])).unwrap();
        m.sort(list(Some(2), 7, &[])).unwrap();
        assert!(!m.owes());
    }

    /// The reader numbers the lists (1, then each after the previous one's end + 1), takes
    /// the names that came inline, and refuses a list for a directory it has not seen, a
    /// second list for one, or anything after the end.
    #[test]
    fn the_reader_bounds_what_a_list_may_announce() {
        let mut enc = FlistEncoder::new_incremental(fmt());
        let mut top = Vec::new();
        for e in [entry(".", true), entry("d", true), entry("f", false)] {
            enc.put(&mut top, &e, None);
        }
        enc.end(&mut top, 0, true);
        let mut sub = Vec::new();
        enc.put(&mut sub, &entry("d/x", false), None);
        enc.end(&mut sub, 1, true);
        let mut r = ListReader::new(fmt(), true);
        let t = r.read_top(&mut top.as_slice()).unwrap();
        assert_eq!((t.start, t.entries.len()), (1, 3));
        // Two directories (`.` and `d`): dir 2 does not exist; -50 is no list index.
        assert!(r
            .read_extra(NDX_FLIST_OFFSET - 2, &mut sub.as_slice())
            .is_err());
        assert!(r.read_extra(-50, &mut sub.as_slice()).is_err());
        let l = r
            .read_extra(NDX_FLIST_OFFSET - 1, &mut sub.as_slice())
            .unwrap()
            .unwrap();
        assert_eq!((l.dir_ndx, l.start, l.io_error), (Some(1), 5, 1));
        assert!(r
            .read_extra(NDX_FLIST_OFFSET - 1, &mut sub.as_slice())
            .is_err());
        assert!(r
            .read_extra(NDX_FLIST_EOF, &mut [].as_slice())
            .unwrap()
            .is_none());
        assert!(r.eof());
        assert!(r.read_extra(NDX_FLIST_EOF, &mut [].as_slice()).is_err());
        // Without incremental recursion no index below NDX_DONE is a list.
        let mut r = ListReader::new(fmt(), false);
        assert!(r.read_extra(NDX_FLIST_EOF, &mut [].as_slice()).is_err());
    }
}
