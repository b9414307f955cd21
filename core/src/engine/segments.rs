//! Issue 18, streaming list: the file list a directory at a time ("segments", see
//! `docs/MERKLE_PROTOCOL.md`, "Segments").
//!
//! Owns when a session streams its list ([`sender_can_stream`], [`receiver_can_stream`]), the
//! round's list both sides build from its segments ([`round_list`]: each directory's own entry,
//! then its children that are not directories), and the receiver's checks of what arrives
//! ([`SegmentReader`], sans-IO: every index and count against what was sent before). Does not
//! walk directories (`scan::SegmentWalker`) or run the phases on a round (the roles do).

use std::collections::HashSet;
use std::path::Path;

use crate::engine::options::SyncOptions;
use crate::engine::scan::Segment;
use crate::flist::{path_order, split_parent, FileEntry, FileKind, FileList};
use crate::proto::merkle::{MAX_FILES, ROOT_SEGMENT};
use crate::proto::DecodeError;

/// The most entries a side asks for in one round (beyond a round's first segment, which may
/// be a directory of any width): the receiver holds a round's entries, the sender a round
/// and the next one being listed.
pub const ROUND_ENTRIES: u32 = 16_384;

/// The fewest entries a round may be asked to hold (a smaller offer is taken as this).
pub const MIN_ROUND_ENTRIES: u32 = 16;

/// The round size this side offers: [`ROUND_ENTRIES`], or `ARSYNC_SEGMENT_ROUND` from the
/// environment (tests make many rounds of a small tree with it).
pub fn round_offer() -> u32 {
    std::env::var("ARSYNC_SEGMENT_ROUND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUND_ENTRIES)
        .max(MIN_ROUND_ENTRIES)
}

/// The options that keep the list whole: what looks across directories (hard-link groups,
/// `-R`'s implied directories, pruning, missing arguments, a deletion pass before or after
/// the transfers, files held back until the end, sources removed as they are named), or
/// rules that differ per directory (the receiver's deletions read the destination's merge
/// files directory by directory from the top). Both roles check them.
pub fn options_allow(opts: &SyncOptions) -> bool {
    receiver_options_allow(opts) && !opts.filters.varies_by_dir()
}

/// [`options_allow`] for a receiver behind the rsync adapter (and the adapter's choice of
/// rsync's incremental recursion, `engine::rsync::receiver_inc_recurse_ok`): rules that differ
/// per directory too, which the receiver follows from round to round (each directory's rules
/// from its parent's, listed before it). An arsync sender keeps its list whole with them.
pub fn receiver_options_allow(opts: &SyncOptions) -> bool {
    opts.recursive
        && !opts.no_inc_recursive
        && !opts.hard_links
        && !opts.dry_run
        && !opts.select.relative
        && !opts.select.prune_empty_dirs
        && !opts.select.delete_missing_args
        && !opts.source.remove_source_files
        && !opts.temp.delay_updates
        && !opts.delete_when.outside_dirs()
        && opts.listing.remote_files_from.is_none()
        && !opts.listing.files_from_wire
        && std::env::var_os("ARSYNC_SEGMENTS").is_none_or(|v| v != "0")
}

/// Whether a sender of `sources` offers `segments`: the options allow it and there is one
/// source argument, a directory (a single file or several arguments keep the whole list).
pub fn sender_can_stream(sources: &[std::path::PathBuf], opts: &SyncOptions) -> bool {
    let [source] = sources else {
        return false;
    };
    let raw = std::os::unix::ffi::OsStrExt::as_bytes(source.as_os_str());
    let trailing = raw.ends_with(b"/") || raw.ends_with(b"/.") || raw == b".";
    let meta = if trailing {
        std::fs::metadata(source)
    } else {
        std::fs::symlink_metadata(source)
    };
    options_allow(opts) && meta.is_ok_and(|m| m.is_dir())
}

/// Whether a receiver into `dest` offers `segments`: the options allow it and either the
/// destination is new (absent, or an empty directory: the directory-tree exchange would find
/// nothing to skip), or the tree exchange is not on offer anyway, or the sender may be in this
/// process (`local`: the tree exchange is never used there).
pub fn receiver_can_stream(
    dest: &Path,
    opts: &SyncOptions,
    tree_offered: bool,
    local: bool,
) -> bool {
    let allowed = if opts.behind_rsync_adapter {
        receiver_options_allow(opts)
    } else {
        options_allow(opts)
    };
    if !allowed {
        return false;
    }
    let fresh = match std::fs::read_dir(dest) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    fresh || !tree_offered || local
}

/// The round size both sides use: the smaller offer, at least [`MIN_ROUND_ENTRIES`].
pub fn agreed_round(ours: Option<u32>, peer: Option<u32>) -> Option<u32> {
    Some(ours?.min(peer?).max(MIN_ROUND_ENTRIES))
}

/// Whether `e` goes in a round's list where its segment has it: every entry but a
/// directory (which comes at the head of its own segment), and the top level's `.`.
fn listed_in_place(e: &FileEntry) -> bool {
    e.kind != FileKind::Dir || e.is_root()
}

/// The round's list a sender builds from its segments, and where each entry's segment put
/// it: for each segment its directory's entry, then its children that are not directories.
/// The receiver builds the same from the wire ([`SegmentReader`]). Returns the list and, for
/// each entry listed in place of a followed symlink, its index and real path.
pub fn round_list(segments: Vec<Segment>) -> (FileList, Vec<(u32, std::path::PathBuf)>) {
    let mut list = FileList::default();
    let mut resolved = Vec::new();
    for s in segments {
        list.entries.extend(s.head);
        let mut moved: Vec<Option<std::path::PathBuf>> = vec![None; s.entries.len()];
        for (at, p) in s.resolved {
            if let Some(slot) = moved.get_mut(at) {
                *slot = Some(p);
            }
        }
        for (e, r) in s.entries.into_iter().zip(moved) {
            if listed_in_place(&e) {
                if let Some(r) = r {
                    resolved.push((list.entries.len() as u32, r));
                }
                list.entries.push(e);
            }
        }
    }
    (list, resolved)
}

/// One round as the receiver has it: its list, and the directories its segments named whose
/// own segments are still to come (`--delete` keeps them).
#[derive(Debug, Default)]
pub struct Round {
    /// The round's list (indexes in this round's frames are into it).
    pub list: FileList,
    /// Paths of directories listed in this round but not at its heads.
    pub later_dirs: HashSet<Vec<u8>>,
    /// Whether the list is complete after this round.
    pub last: bool,
}

/// The segment being filled.
#[derive(Debug)]
struct OpenSegment {
    /// The directory's path (`None`: the top level).
    parent: Option<Vec<u8>>,
    remaining: u32,
    /// The last child taken (transfer order is checked against it).
    last: Option<(Vec<u8>, bool)>,
    /// Its subdirectories, in order: (index, entry).
    dirs: Vec<(u32, FileEntry)>,
}

/// The receiver's checks of a streamed list, sans-IO: [`SegmentReader::segment`] for each
/// `Segment` header, [`SegmentReader::entries`] for its `FileEntries`, then
/// [`SegmentReader::end_round`] at `RoundEnd` / `FileListEnd`. Every directory but `.` gets
/// exactly one segment, depth first: a segment's parent must be the next directory still
/// owed one (a stack), its base the entries received so far, its entries the directory's
/// children in transfer order; a round may not start a segment once it holds `window`
/// entries.
#[derive(Debug)]
pub struct SegmentReader {
    window: u32,
    received: u32,
    root_seen: bool,
    /// Directories owed a segment, the next on top.
    owed: Vec<(u32, FileEntry)>,
    open: Option<OpenSegment>,
    round: Round,
    round_entries: u32,
}

fn bad(what: &'static str, why: impl std::fmt::Display) -> DecodeError {
    DecodeError::invalid(what, why)
}

impl SegmentReader {
    /// A reader for rounds of at most `window` entries (beyond a round's first segment).
    pub fn new(window: u32) -> Self {
        SegmentReader {
            window,
            received: 0,
            root_seen: false,
            owed: Vec::new(),
            open: None,
            round: Round::default(),
            round_entries: 0,
        }
    }

    /// Entries received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Whether a segment is being filled (a `Totals` may only come between segments).
    pub fn in_segment(&self) -> bool {
        self.open.is_some()
    }

    /// A `Segment` header.
    pub fn segment(&mut self, parent: u32, base: u32, count: u32) -> Result<(), DecodeError> {
        if self.open.is_some() {
            return Err(bad("segment", "the previous segment is not complete"));
        }
        if base != self.received {
            return Err(bad(
                "segment",
                format!("base {base}, but {} entries were sent", self.received),
            ));
        }
        if u64::from(self.received) + u64::from(count) > u64::from(MAX_FILES) {
            return Err(DecodeError::TooLarge {
                what: "file list",
                got: u64::from(self.received) + u64::from(count),
                max: u64::from(MAX_FILES),
            });
        }
        if self.round_entries >= self.window {
            return Err(bad("segment", "the round is past its window"));
        }
        let parent = if !self.root_seen {
            if parent != ROOT_SEGMENT {
                return Err(bad("segment", "the first segment must be the top level"));
            }
            self.root_seen = true;
            None
        } else {
            match self.owed.last() {
                Some((ndx, _)) if *ndx == parent => {}
                _ => {
                    return Err(bad(
                        "segment",
                        format!("parent {parent} is not the next directory owed a segment"),
                    ))
                }
            }
            let (_, dir) = self.owed.pop().ok_or_else(|| bad("segment", "no parent"))?;
            let path = dir.path.to_vec();
            self.round.later_dirs.remove(&path);
            self.round.list.entries.push(dir);
            Some(path)
        };
        self.open = Some(OpenSegment {
            parent,
            remaining: count,
            last: None,
            dirs: Vec::new(),
        });
        self.close_if_complete();
        Ok(())
    }

    /// A `FileEntries` frame: children of the open segment.
    pub fn entries(&mut self, batch: Vec<FileEntry>) -> Result<(), DecodeError> {
        let Some(seg) = self.open.as_mut() else {
            return Err(bad("file entries", "outside a segment"));
        };
        if batch.len() as u64 > u64::from(seg.remaining) {
            return Err(bad(
                "file entries",
                "more entries than the segment announced",
            ));
        }
        for e in batch {
            let path = e.path.as_slice();
            let is_dir = e.kind == FileKind::Dir;
            if e.is_root() {
                if seg.parent.is_some() || seg.last.is_some() || self.received != 0 || !is_dir {
                    return Err(bad("file entries", "`.` other than first, as a directory"));
                }
            } else {
                let (parent, name) = split_parent(path);
                let ok = match &seg.parent {
                    None => parent == b"." && !path.contains(&b'/'),
                    Some(p) => parent == p.as_slice() && !name.contains(&b'/'),
                };
                if !ok {
                    return Err(bad(
                        "file entries",
                        format!(
                            "\"{}\" is not a child of the segment's directory",
                            String::from_utf8_lossy(path)
                        ),
                    ));
                }
                if let Some((lp, ld)) = &seg.last {
                    if lp.as_slice() != b"."
                        && path_order(lp, *ld, path, is_dir) != std::cmp::Ordering::Less
                    {
                        return Err(bad("file entries", "not in transfer order"));
                    }
                }
            }
            if e.hardlink_group() != 0 {
                return Err(bad("file entries", "a hard-link group in a streamed list"));
            }
            seg.last = Some((path.to_vec(), is_dir));
            seg.remaining -= 1;
            if listed_in_place(&e) {
                self.round.list.entries.push(e);
            } else {
                self.round.later_dirs.insert(path.to_vec());
                seg.dirs.push((self.received, e));
            }
            self.received += 1;
            self.round_entries += 1;
        }
        self.close_if_complete();
        Ok(())
    }

    fn close_if_complete(&mut self) {
        if self.open.as_ref().is_some_and(|s| s.remaining == 0) {
            if let Some(seg) = self.open.take() {
                self.owed.extend(seg.dirs.into_iter().rev());
            }
        }
    }

    /// `RoundEnd { count }` (`last` false) or `FileListEnd { count }` (`last` true): the
    /// round, handed over.
    pub fn end_round(&mut self, count: u32, last: bool) -> Result<Round, DecodeError> {
        if self.open.is_some() {
            return Err(bad("round end", "inside a segment"));
        }
        if count != self.received {
            return Err(bad(
                "round end",
                format!("count {count} but {} entries received", self.received),
            ));
        }
        if last && !self.owed.is_empty() {
            return Err(bad(
                "file list end",
                format!("{} directories were never listed", self.owed.len()),
            ));
        }
        if !last && !self.root_seen {
            return Err(bad("round end", "before the top level"));
        }
        self.round_entries = 0;
        let mut round = std::mem::take(&mut self.round);
        round.last = last;
        Ok(round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: FileKind) -> FileEntry {
        FileEntry::new(path.as_bytes().to_vec(), kind)
    }

    fn paths(l: &FileList) -> Vec<String> {
        l.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    /// A tree in segments, depth first, makes rounds whose lists put together are the whole
    /// list in transfer order.
    #[test]
    fn rounds_put_together_are_the_list_in_transfer_order() {
        let mut r = SegmentReader::new(MIN_ROUND_ENTRIES);
        r.segment(ROOT_SEGMENT, 0, 4).unwrap();
        r.entries(vec![
            e(".", FileKind::Dir),
            e("a", FileKind::File),
            e("d1", FileKind::Dir),
            e("d2", FileKind::Dir),
        ])
        .unwrap();
        r.segment(2, 4, 2).unwrap();
        r.entries(vec![e("d1/x", FileKind::File), e("d1/s", FileKind::Dir)])
            .unwrap();
        let first = r.end_round(6, false).unwrap();
        assert_eq!(paths(&first.list), [".", "a", "d1", "d1/x"]);
        assert!(first.later_dirs.contains(b"d1/s".as_slice()));
        assert!(first.later_dirs.contains(b"d2".as_slice()));
        r.segment(5, 6, 1).unwrap();
        r.entries(vec![e("d1/s/y", FileKind::File)]).unwrap();
        r.segment(3, 7, 0).unwrap();
        let last = r.end_round(7, true).unwrap();
        assert_eq!(paths(&last.list), ["d1/s", "d1/s/y", "d2"]);
        assert!(last.last);
    }

    /// A hostile sender: a parent out of turn, a duplicate, a wrong base, an entry outside
    /// its directory or out of order, too many entries, a list that ends with directories
    /// owed — each refused.
    #[test]
    fn segments_out_of_turn_or_out_of_place_are_refused() {
        let start = || {
            let mut r = SegmentReader::new(MIN_ROUND_ENTRIES);
            r.segment(ROOT_SEGMENT, 0, 3).unwrap();
            r.entries(vec![
                e(".", FileKind::Dir),
                e("d1", FileKind::Dir),
                e("d2", FileKind::Dir),
            ])
            .unwrap();
            r
        };
        // d2 before d1; a parent that is not a directory owed; a wrong base.
        assert!(start().segment(2, 3, 0).is_err());
        assert!(start().segment(0, 3, 0).is_err());
        assert!(start().segment(1, 2, 0).is_err());
        // A duplicate segment for d1.
        let mut r = start();
        r.segment(1, 3, 0).unwrap();
        assert!(r.segment(1, 3, 0).is_err());
        // An entry outside d1, or out of order, or more than announced.
        let mut r = start();
        r.segment(1, 3, 2).unwrap();
        assert!(r.entries(vec![e("d2/x", FileKind::File)]).is_err());
        let mut r = start();
        r.segment(1, 3, 2).unwrap();
        assert!(r
            .entries(vec![e("d1/b", FileKind::File), e("d1/a", FileKind::File)])
            .is_err());
        let mut r = start();
        r.segment(1, 3, 1).unwrap();
        assert!(r
            .entries(vec![e("d1/a", FileKind::File), e("d1/b", FileKind::File)])
            .is_err());
        // The end while d2 is owed, or with a wrong count, or inside a segment.
        let mut r = start();
        r.segment(1, 3, 0).unwrap();
        assert!(r.end_round(3, true).is_err());
        assert!(start().end_round(2, false).is_err());
        let mut r = start();
        r.segment(1, 3, 1).unwrap();
        assert!(r.end_round(3, false).is_err());
        // Entries with no segment open; a first segment that is not the top level.
        let mut r = start();
        assert!(r.entries(vec![e("x", FileKind::File)]).is_err());
        assert!(SegmentReader::new(MIN_ROUND_ENTRIES)
            .segment(0, 0, 1)
            .is_err());
    }

    /// A round may not start a segment past its window (one wide directory may pass it).
    #[test]
    fn a_round_past_its_window_starts_no_segment() {
        let mut r = SegmentReader::new(2);
        r.segment(ROOT_SEGMENT, 0, 3).unwrap();
        r.entries(vec![
            e(".", FileKind::Dir),
            e("a", FileKind::File),
            e("d", FileKind::Dir),
        ])
        .unwrap();
        assert!(r.segment(2, 3, 0).is_err());
        r.end_round(3, false).unwrap();
        r.segment(2, 3, 0).unwrap();
    }
}
