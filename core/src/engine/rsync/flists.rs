//! The file lists a sending side hands rsync's receiver, and what each wire index names.
//!
//! Without incremental recursion: one list, every entry, indexed 0… in rsync's sorted order.
//! With it (`CF_INC_RECURSE`; upstream's `send_file_list`, `send_extra_file_list`,
//! `add_dirs_to_tree`, `flist_new`): first the top level (the `.` of a `src/` and its
//! children, or the named sources), indexed from 1; then one list per directory, depth first
//! in sorted order, each announced as `NDX_FLIST_OFFSET - dir_ndx` (the directory's place in
//! the receiver's `dir_flist`: every directory of every list, list by list, in sorted order)
//! and indexed from the previous list's end + 1 — the index in between names the list's
//! directory itself, which rsync's generator visits again with it. At the end,
//! `NDX_FLIST_EOF`.
//!
//! Issue 18, streaming list: a plan may also be fed a directory's list at a time
//! ([`ListPlan::streamed`], [`ListPlan::open_dir`]) as the sender walks its tree; each list
//! must be the one upstream's order sends next (the directory on top of the plan's stack), and
//! a finished list is forgotten ([`ListPlan::take_retired`] hands its entries back to free).
//!
//! Owns: which entries go in which list and in what order, each list's first index, the
//! directory indices, how far ahead lists are sent (`MIN_FILECNT_LOOKAHEAD`), and the checks
//! on what the receiver sends back: an index must be in a list sent and not yet finished, a
//! list's `NDX_DONE` must leave a later list (or come after the last). Does not own the entry
//! encoding ([`crate::proto::rsync::flist`]) or the writing (`sending`).

use std::collections::{HashMap, VecDeque};

use super::link::bad;
use crate::error::SyncError;
use crate::flist::path_order;

/// rsync's index announcing a directory's list: `NDX_FLIST_OFFSET - dir_ndx`.
pub(crate) const NDX_FLIST_OFFSET: i32 = -101;
/// rsync's index: no more lists follow.
pub(crate) const NDX_FLIST_EOF: i32 = -2;
/// Entries the sender keeps in lists ahead of the one rsync's generator is in.
pub(crate) const MIN_FILECNT_LOOKAHEAD: usize = 1000;

/// A list sent: its first wire index, its entries (indices into the caller's entries) in
/// rsync's sorted order, the directory the index before the first names, and how many
/// entries the lists before it hold.
#[derive(Debug)]
struct SentList {
    start: i32,
    members: Vec<usize>,
    parent: Option<usize>,
    before: usize,
}

/// What an `NDX_DONE` from the receiver means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// A list is finished and later ones are not: echo it, the phase goes on.
    List,
    /// The end of a phase (the last list finished, or a later phase).
    Phase,
}

/// What a plan needs to know of an entry to register it: whether it is a directory, and
/// whether it is the top level's `.` (which gets no list of its own).
pub(crate) type Kinds<'k> = &'k dyn Fn(usize) -> (bool, bool);

/// The lists of a session, sent and still to send.
#[derive(Debug)]
pub(crate) struct ListPlan {
    inc: bool,
    /// The lists sent and kept (all of them, or the unfinished ones of a streamed plan).
    sent: VecDeque<SentList>,
    /// Lists forgotten from the front of `sent` (a streamed plan's finished ones).
    popped: usize,
    /// Issue 18, streaming list: finished lists are forgotten, their entries handed back.
    streamed: bool,
    /// Finished lists not yet taken: their entries and their directory.
    retired: Vec<(Vec<usize>, Option<usize>)>,
    /// Lists before this one are finished (`NDX_DONE`).
    first_live: usize,
    /// The list of the latest index read.
    current: usize,
    /// Each directory's entries, by the directory's index (incremental recursion only).
    children: HashMap<usize, Vec<usize>>,
    /// Directories whose lists are still to be sent, the next on top.
    stack: Vec<usize>,
    /// Each directory's place in the receiver's `dir_flist`.
    dir_ndx: HashMap<usize, i32>,
    dirs: i32,
    /// Entries in the lists sent.
    total: usize,
    /// `NDX_FLIST_EOF` was sent (always, without incremental recursion).
    eof: bool,
}

impl ListPlan {
    /// The plan for `entries` (name and whether a directory), every one `inc`remental or not.
    /// With incremental recursion each entry below the top level must be in a directory of
    /// the list: otherwise an error, as rsync's receiver would refuse the list.
    pub(crate) fn new(entries: &[(&[u8], bool)], inc: bool) -> Result<ListPlan, SyncError> {
        let sorted = |mut v: Vec<usize>| {
            v.sort_by(|&a, &b| path_order(entries[a].0, entries[a].1, entries[b].0, entries[b].1));
            v
        };
        let mut plan = ListPlan {
            inc,
            streamed: false,
            total: entries.len(),
            eof: !inc,
            ..ListPlan::streamed()
        };
        if !inc {
            plan.sent.push_back(SentList {
                start: 0,
                members: sorted((0..entries.len()).collect()),
                parent: None,
                before: 0,
            });
            return Ok(plan);
        }
        let dirs: HashMap<&[u8], usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.1)
            .map(|(i, e)| (e.0, i))
            .collect();
        let mut top = Vec::new();
        for (i, (name, _)) in entries.iter().enumerate() {
            match name.iter().rposition(|&b| b == b'/') {
                None => top.push(i),
                Some(at) => {
                    let parent = dirs.get(&name[..at]).copied().ok_or_else(|| {
                        SyncError::Usage(format!(
                            "{}: its directory is not in the file list, which rsync's \
                             incremental recursion needs",
                            String::from_utf8_lossy(name)
                        ))
                    })?;
                    plan.children.entry(parent).or_default().push(i);
                }
            }
        }
        for v in plan.children.values_mut() {
            *v = sorted(std::mem::take(v));
        }
        let top = sorted(top);
        // The generator visits `.` again with index 0 (`parent_ndx` 0: the first directory).
        let parent = top
            .first()
            .copied()
            .filter(|&i| entries[i].0 == b"." && entries[i].1);
        plan.total = 0;
        plan.register(top, parent, &|m| kinds(entries, m));
        Ok(plan)
    }

    // Issue 18, streaming list:
    /// A plan with incremental recursion whose lists come as the sender walks: the top
    /// level's with [`ListPlan::open_top`], then each directory's with
    /// [`ListPlan::open_dir`], then [`ListPlan::end`].
    pub(crate) fn streamed() -> ListPlan {
        ListPlan {
            inc: true,
            sent: VecDeque::new(),
            popped: 0,
            streamed: true,
            retired: Vec::new(),
            first_live: 0,
            current: 0,
            children: HashMap::new(),
            stack: Vec::new(),
            dir_ndx: HashMap::new(),
            dirs: 0,
            total: 0,
            eof: false,
        }
    }

    /// The top level's list (`members` in rsync's sorted order); `parent` is its `.`.
    pub(crate) fn open_top(&mut self, members: Vec<usize>, parent: Option<usize>, kinds: Kinds) {
        self.register(members, parent, kinds);
    }

    /// Directory `dir`'s list (`members` in rsync's sorted order), which must be the one sent
    /// next: the index announcing it (`NDX_FLIST_OFFSET - dir_ndx`).
    pub(crate) fn open_dir(
        &mut self,
        dir: usize,
        members: Vec<usize>,
        kinds: Kinds,
    ) -> Result<i32, SyncError> {
        if self.stack.last() != Some(&dir) {
            return Err(bad(
                "file list",
                "a directory's list out of rsync's order (depth first, sorted)",
            ));
        }
        self.stack.pop();
        let ndx = NDX_FLIST_OFFSET - self.dir_ndx.remove(&dir).unwrap_or(0);
        self.register(members, Some(dir), kinds);
        Ok(ndx)
    }

    /// The end of the lists (`NDX_FLIST_EOF`): every directory must have had its list.
    pub(crate) fn end(&mut self) -> Result<i32, SyncError> {
        if !self.stack.is_empty() {
            return Err(bad("file list", "it ended before every directory's list"));
        }
        self.eof = true;
        Ok(NDX_FLIST_EOF)
    }

    /// The next directory whose list is due (on top of the stack).
    pub(crate) fn next_dir(&self) -> Option<usize> {
        self.stack.last().copied()
    }

    /// Whether fewer than `at_least` entries are in lists ahead of the generator's (and the
    /// lists have not ended): then more are to be sent.
    pub(crate) fn wants(&self, at_least: usize) -> bool {
        !self.eof && self.ahead() < at_least
    }

    /// Lists the receiver finished since the last call (a streamed plan's only): each one's
    /// entries and directory, for the caller to forget.
    pub(crate) fn take_retired(&mut self) -> Vec<(Vec<usize>, Option<usize>)> {
        std::mem::take(&mut self.retired)
    }

    /// Record a list as sent: its indices, and its directories in `dir_flist` (and, except
    /// `.`, to be sent, first in sorted order first).
    fn register(&mut self, members: Vec<usize>, parent: Option<usize>, kinds: Kinds) {
        let start = match self.sent.back() {
            Some(l) => l.start + l.members.len() as i32 + 1,
            None => 1,
        };
        let mut sub = Vec::new();
        for &m in &members {
            let (dir, dot) = kinds(m);
            if dir {
                self.dir_ndx.insert(m, self.dirs);
                self.dirs += 1;
                if !dot {
                    sub.push(m);
                }
            }
        }
        self.stack.extend(sub.into_iter().rev());
        let before = self.total;
        self.total += members.len();
        self.sent.push_back(SentList {
            start,
            members,
            parent,
            before,
        });
    }

    /// The lists sent so far, forgotten ones included.
    fn lists(&self) -> usize {
        self.popped + self.sent.len()
    }

    /// The first list's entries in rsync's sorted order (wire index `start + position`).
    pub(crate) fn first(&self) -> &[usize] {
        self.sent.front().map_or(&[], |l| &l.members)
    }

    /// Whether every list was sent.
    pub(crate) fn eof(&self) -> bool {
        self.eof
    }

    /// Entries sent in lists after the one the generator is in.
    pub(crate) fn ahead(&self) -> usize {
        let from = self.current.max(self.first_live) + 1;
        from.checked_sub(self.popped)
            .and_then(|k| self.sent.get(k))
            .map_or(0, |l| self.total - l.before)
    }

    /// The next lists to send so that at least `at_least` entries are ahead of the
    /// generator (or all, then the end): for each, its announcing index and its entries in
    /// sorted order; `None` for the end (`NDX_FLIST_EOF`), after which nothing more.
    pub(crate) fn next_lists(
        &mut self,
        at_least: usize,
        kinds: Kinds,
    ) -> Vec<(i32, Option<Vec<usize>>)> {
        let mut out = Vec::new();
        while self.wants(at_least) {
            let Some(dir) = self.next_dir() else {
                self.eof = true;
                out.push((NDX_FLIST_EOF, None));
                break;
            };
            let members = self.children.remove(&dir).unwrap_or_default();
            let Ok(ndx) = self.open_dir(dir, members.clone(), kinds) else {
                break;
            };
            out.push((ndx, Some(members)));
        }
        out
    }

    /// One more list than now, if any: for when the sender would wait on the receiver.
    pub(crate) fn one_more(&mut self, kinds: Kinds) -> Vec<(i32, Option<Vec<usize>>)> {
        let n = self.ahead() + 1;
        self.next_lists(n, kinds)
    }

    /// The entry wire index `ndx` names, in a list sent and not finished.
    pub(crate) fn entry(&mut self, ndx: i32) -> Result<usize, SyncError> {
        let k = self.list_of(ndx)?;
        if k < self.first_live {
            return Err(bad(
                "file index",
                format!("{ndx} is in a list the receiver finished"),
            ));
        }
        self.current = k;
        self.member(k, ndx)
    }

    /// The entry wire index `ndx` names, in any list sent (for the receiver's reports after
    /// the transfer).
    pub(crate) fn any_entry(&self, ndx: i32) -> Result<usize, SyncError> {
        self.member(self.list_of(ndx)?, ndx)
    }

    fn list_of(&self, ndx: i32) -> Result<usize, SyncError> {
        // The last list starting at or before `ndx + 1` (its directory's index is one before).
        let k = self
            .sent
            .partition_point(|l| l.start <= ndx.saturating_add(1));
        let k = k.checked_sub(1).ok_or_else(|| {
            // A streamed plan's finished lists are forgotten: below the first kept.
            if self.popped > 0 && ndx >= 0 {
                bad(
                    "file index",
                    format!("{ndx} is in a list the receiver finished"),
                )
            } else {
                bad("file index", ndx)
            }
        })?;
        let l = &self.sent[k];
        if i64::from(ndx) >= i64::from(l.start) + l.members.len() as i64 {
            return Err(bad("file index", ndx));
        }
        Ok(self.popped + k)
    }

    fn member(&self, k: usize, ndx: i32) -> Result<usize, SyncError> {
        let l = &self.sent[k - self.popped];
        if ndx == l.start - 1 {
            return l.parent.ok_or_else(|| bad("file index", ndx));
        }
        usize::try_from(ndx - l.start)
            .ok()
            .and_then(|i| l.members.get(i).copied())
            .ok_or_else(|| bad("file index", ndx))
    }

    /// The receiver sent `NDX_DONE`.
    pub(crate) fn done(&mut self) -> Result<Done, SyncError> {
        if !self.inc || self.first_live >= self.lists() {
            return Ok(Done::Phase);
        }
        self.first_live += 1;
        // Issue 18, streaming list: a finished list is forgotten.
        while self.streamed && self.popped < self.first_live {
            let Some(l) = self.sent.pop_front() else {
                break;
            };
            self.popped += 1;
            self.retired.push((l.members, l.parent));
        }
        if self.first_live < self.lists() {
            return Ok(Done::List);
        }
        if !self.eof {
            return Err(bad(
                "NDX_DONE",
                "the receiver finished the last list sent before the end of the lists",
            ));
        }
        Ok(Done::Phase)
    }
}

/// An entry's kinds for [`ListPlan::register`] from `(name, is_dir)` pairs.
fn kinds(entries: &[(&[u8], bool)], m: usize) -> (bool, bool) {
    (entries[m].1, entries[m].0 == b".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[(&'static str, bool)]) -> Vec<(&'static [u8], bool)> {
        v.iter().map(|(n, d)| (n.as_bytes(), *d)).collect()
    }

    /// The tree `. a/ a/x a/y/ a/y/z b/ c`, in a scan's order.
    fn tree() -> Vec<(&'static [u8], bool)> {
        names(&[
            (".", true),
            ("c", false),
            ("b", true),
            ("a", true),
            ("a/y", true),
            ("a/x", false),
            ("a/y/z", false),
        ])
    }

    #[test]
    fn lists_go_depth_first_with_gaps_and_dir_indices() {
        let e = tree();
        let mut p = ListPlan::new(&e, true).unwrap();
        // Top: . c a b at 1..=4 (`.` first, then a level's files before its directories).
        assert_eq!(p.first(), &[0, 1, 3, 2]);
        // dir_flist: . a b → 0 1 2. One list at a time while nothing is ahead.
        let l = p.next_lists(1, &|m| kinds(&e, m));
        assert_eq!(l, vec![(NDX_FLIST_OFFSET - 1, Some(vec![5, 4]))]);
        // a's list: 6..=7 (5 is a); a/y is dir 3, sent before b.
        assert_eq!(p.entry(5).unwrap(), 3);
        assert_eq!(p.entry(6).unwrap(), 5);
        assert_eq!(p.entry(7).unwrap(), 4);
        let l = p.next_lists(100, &|m| kinds(&e, m));
        assert_eq!(
            l,
            vec![
                (NDX_FLIST_OFFSET - 3, Some(vec![6])),
                (NDX_FLIST_OFFSET - 2, Some(vec![])),
                (NDX_FLIST_EOF, None),
            ]
        );
        // a/y's list: 9; b's: empty, starting at 11.
        assert_eq!(p.entry(9).unwrap(), 6);
        assert_eq!(p.entry(10).unwrap(), 2, "b itself");
        assert!(p.entry(11).is_err());
        assert_eq!(p.entry(0).unwrap(), 0, "`.` before the top list");
        assert!(p.entry(-5).is_err());
        assert!(p.entry(i32::MAX).is_err());
        // Four lists: three NDX_DONEs leave a later one, the fourth ends the phase.
        for _ in 0..3 {
            assert_eq!(p.done().unwrap(), Done::List);
        }
        assert!(p.entry(4).is_err(), "a finished list");
        assert_eq!(p.done().unwrap(), Done::Phase);
        assert_eq!(p.done().unwrap(), Done::Phase);
        assert_eq!(p.any_entry(9).unwrap(), 6);
    }

    #[test]
    fn a_list_finished_before_the_end_is_refused() {
        let e = tree();
        let mut p = ListPlan::new(&e, true).unwrap();
        assert!(p.done().is_err(), "the only list, more to come");
    }

    #[test]
    fn an_entry_outside_any_listed_directory_is_refused() {
        let e = names(&[(".", true), ("a/x", false)]);
        assert!(ListPlan::new(&e, true).is_err());
        assert!(ListPlan::new(&e, false).is_ok());
    }

    #[test]
    fn one_list_without_incremental_recursion() {
        let e = tree();
        let mut p = ListPlan::new(&e, false).unwrap();
        assert!(p.eof());
        assert!(p.next_lists(1000, &|m| kinds(&e, m)).is_empty());
        // . c a a/x a/y a/y/z b
        assert_eq!(p.entry(0).unwrap(), 0);
        assert_eq!(p.entry(5).unwrap(), 6, "a/y/z");
        assert_eq!(p.entry(6).unwrap(), 2, "b last");
        assert!(p.entry(7).is_err());
        assert_eq!(p.done().unwrap(), Done::Phase);
    }

    #[test]
    fn a_streamed_plan_takes_lists_in_rsyncs_order_and_forgets_finished_ones() {
        let e = tree();
        let k = |m: usize| kinds(&e, m);
        let mut p = ListPlan::streamed();
        p.open_top(vec![0, 1, 3, 2], Some(0), &k);
        assert_eq!(p.next_dir(), Some(3));
        assert!(p.open_dir(2, vec![], &k).is_err(), "b before a");
        assert_eq!(p.open_dir(3, vec![5, 4], &k).unwrap(), NDX_FLIST_OFFSET - 1);
        assert!(p.end().is_err(), "a/y and b are still owed a list");
        assert_eq!(p.entry(6).unwrap(), 5);
        assert_eq!(p.open_dir(4, vec![6], &k).unwrap(), NDX_FLIST_OFFSET - 3);
        assert_eq!(p.open_dir(2, vec![], &k).unwrap(), NDX_FLIST_OFFSET - 2);
        assert_eq!(p.end().unwrap(), NDX_FLIST_EOF);
        assert!(!p.wants(usize::MAX), "the lists ended");
        assert_eq!(p.done().unwrap(), Done::List);
        assert_eq!(p.take_retired(), vec![(vec![0, 1, 3, 2], Some(0))]);
        let finished = p.entry(2).unwrap_err().to_string();
        assert!(
            finished.contains("2 is in a list the receiver finished"),
            "{finished}"
        );
        assert_eq!(p.entry(9).unwrap(), 6);
        assert_eq!(p.entry(10).unwrap(), 2, "b itself");
        assert_eq!(p.done().unwrap(), Done::List);
        assert_eq!(p.done().unwrap(), Done::List);
        assert_eq!(p.done().unwrap(), Done::Phase);
        assert_eq!(p.take_retired().len(), 3);
        assert_eq!(p.done().unwrap(), Done::Phase);
    }
}
