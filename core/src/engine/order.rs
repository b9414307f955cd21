//! `-v`/`-i` lines in the file list's order, as rsync prints them, while files move in
//! parallel and finish in any order.
//!
//! The list is sorted in rsync's order ([`crate::flist::path_order`]), so an entry's index is
//! its place in the output. Two tools hold lines back until it is their turn:
//!
//! - [`InOrder`], the receiver's: an item waits until every entry before it in the list is
//!   *settled* (done, or known to print nothing), then goes on to the real sink;
//! - [`Held`], for a side that hears of items from two places — a pushing client prints the
//!   receiver's reports and, as it is asked for data, the transfers: reports wait in a [`Held`]
//!   until a request for a later entry (or the end) lets them out.
//!
//! Owns only the holding rules; not the order (the list's), not what a line says (the sinks),
//! but for one thing: the receiver's `--chmod`, which its items show (issue 18: the list, a
//! local sender's own, keeps the sender's modes).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::engine::chmod::{shown_entry, ChmodRules};
use crate::engine::event::{Event, EventSink, Itemize};
use crate::flist::{FileEntry, FileList};

/// Values held by their entry's index, let out in index order.
#[derive(Debug)]
pub struct Held<T> {
    by_index: BTreeMap<u32, Vec<T>>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            by_index: BTreeMap::new(),
        }
    }
}

impl<T> Held<T> {
    /// Hold `value` for entry `index`.
    pub fn hold(&mut self, index: u32, value: T) {
        self.by_index.entry(index).or_default().push(value);
    }

    /// Everything held for entries before `index`, in order (several for one entry in the
    /// order they came).
    pub fn take_before(&mut self, index: u32) -> Vec<T> {
        let later = self.by_index.split_off(&index);
        let earlier = std::mem::replace(&mut self.by_index, later);
        earlier.into_values().flatten().collect()
    }

    /// Everything held, in order.
    pub fn take_all(&mut self) -> Vec<T> {
        std::mem::take(&mut self.by_index)
            .into_values()
            .flatten()
            .collect()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}

/// An item waiting for its turn: the entry's index, its summary, a hard link's target.
type HeldItem = (u32, Itemize, Option<Vec<u8>>);

/// The receiver's sink for items in list order: an item goes on once every entry before it
/// is settled; every other event goes on at once. [`InOrder::finish`] lets out whatever is
/// left (a settlement missed only delays lines, never loses them).
pub struct InOrder {
    inner: Arc<dyn EventSink>,
    list: Arc<FileList>,
    state: Mutex<State>,
    /// `--chmod`: the items' entries show their modes after it.
    chmod: Option<ChmodRules>,
}

struct State {
    settled: Vec<bool>,
    /// Every entry before this one is settled and its items are out.
    next: usize,
    held: Held<HeldItem>,
}

impl std::fmt::Debug for InOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InOrder").finish_non_exhaustive()
    }
}

impl InOrder {
    /// Items of entries of `list` go to `inner` in list order.
    pub fn new(inner: Arc<dyn EventSink>, list: Arc<FileList>) -> Self {
        let n = list.entries.len();
        InOrder {
            inner,
            list,
            chmod: None,
            state: Mutex::new(State {
                settled: vec![false; n],
                next: 0,
                held: Held::default(),
            }),
        }
    }

    /// Items show their entries' modes after `--chmod`'s `rules` (the receiver's, issue 18).
    pub fn with_chmod(mut self, rules: Option<ChmodRules>) -> Self {
        self.chmod = rules;
        self
    }

    /// Pass an item on, its entry's mode after `--chmod` (a copy of the entry when that
    /// changes it).
    fn emit(&self, entry: &FileEntry, itemize: Itemize, link_to: Option<&[u8]>) {
        self.inner.event(Event::Item {
            entry: &shown_entry(self.chmod.as_ref(), entry),
            itemize,
            link_to,
        });
    }

    /// Entry `ndx` is done: nothing more will be said of it.
    pub fn settle(&self, ndx: u32) {
        self.settle_all((ndx..=ndx).map(|n| n as usize));
    }

    /// Every entry but those marked in `pending` (by index; past its end: none) is done
    /// (after the generator: what needs no data).
    pub fn settle_all_but(&self, pending: &[bool]) {
        let n = self.list.entries.len();
        self.settle_all((0..n).filter(|&i| !pending.get(i).copied().unwrap_or(false)));
    }

    /// Let out everything still held, in order.
    pub fn finish(&self) {
        let n = self.list.entries.len();
        self.settle_all(0..n);
    }

    fn settle_all(&self, which: impl Iterator<Item = usize>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        for i in which {
            if let Some(slot) = s.settled.get_mut(i) {
                *slot = true;
            }
        }
        let start = s.next;
        while s.next < s.settled.len() && s.settled[s.next] {
            s.next += 1;
        }
        if s.next > start {
            let next = s.next as u32;
            let out = s.held.take_before(next);
            // Sent while the lock is held, so that no later item can pass them.
            for (ndx, itemize, link_to) in out {
                self.send(ndx, itemize, link_to.as_deref());
            }
        }
    }

    fn send(&self, ndx: u32, itemize: Itemize, link_to: Option<&[u8]>) {
        if let Some(entry) = self.list.entries.get(ndx as usize) {
            self.emit(entry, itemize, link_to);
        }
    }
}

impl EventSink for InOrder {
    fn event(&self, event: Event<'_>) {
        let Event::Item {
            entry,
            itemize,
            link_to,
        } = event
        else {
            return self.inner.event(event);
        };
        let Some(i) = self.list.index_of(entry) else {
            return self.emit(entry, itemize, link_to);
        };
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if i < s.next {
            self.emit(entry, itemize, link_to);
        } else {
            s.held
                .hold(i as u32, (i as u32, itemize, link_to.map(<[u8]>::to_vec)));
        }
    }

    fn transfers_shown_by_sender(&self) -> bool {
        self.inner.transfers_shown_by_sender()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flist::{FileEntry, FileKind};

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl EventSink for Lines {
        fn event(&self, event: Event<'_>) {
            if let Event::Item { entry, .. } = event {
                self.0
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&entry.path).into_owned());
            }
        }
    }

    fn list(names: &[&str]) -> Arc<FileList> {
        Arc::new(FileList {
            entries: names
                .iter()
                .map(|n| FileEntry::new(n.as_bytes().to_vec(), FileKind::File))
                .collect(),
        })
    }

    #[test]
    fn items_wait_for_every_earlier_entry() {
        let lines = Arc::new(Lines::default());
        let l = list(&["a", "b", "c", "d"]);
        let o = InOrder::new(lines.clone(), l.clone());
        let item = |i: usize| Event::Item {
            entry: &l.entries[i],
            itemize: Itemize::new('>', FileKind::File),
            link_to: None,
        };
        // c and d finish first; b needs nothing; a is still moving.
        o.event(item(3));
        o.settle(3);
        o.event(item(2));
        o.settle(2);
        o.settle(1);
        assert!(lines.0.lock().unwrap().is_empty());
        o.event(item(0));
        assert!(lines.0.lock().unwrap().is_empty());
        o.settle(0);
        assert_eq!(*lines.0.lock().unwrap(), ["a", "c", "d"]);
        // An entry's later item (a hard link made at the end) goes at once.
        o.event(item(1));
        assert_eq!(*lines.0.lock().unwrap(), ["a", "c", "d", "b"]);
    }

    #[test]
    fn what_is_never_settled_comes_out_at_the_end_in_order() {
        let lines = Arc::new(Lines::default());
        let l = list(&["a", "b", "c"]);
        let o = InOrder::new(lines.clone(), l.clone());
        for i in [2, 0, 1] {
            o.event(Event::Item {
                entry: &l.entries[i],
                itemize: Itemize::new('>', FileKind::File),
                link_to: None,
            });
        }
        o.settle_all_but(&[true]);
        assert!(lines.0.lock().unwrap().is_empty());
        o.finish();
        assert_eq!(*lines.0.lock().unwrap(), ["a", "b", "c"]);
        // An entry from elsewhere (a copy) is not held.
        let other = l.entries[0].clone();
        o.event(Event::Item {
            entry: &other,
            itemize: Itemize::new('>', FileKind::File),
            link_to: None,
        });
        assert_eq!(lines.0.lock().unwrap().len(), 4);
    }

    /// Issue 18: under the receiver's `--chmod`, items show the modes after it, held or not,
    /// while the list (a local sender's own) keeps the sender's.
    #[test]
    fn items_show_their_modes_after_chmod() {
        #[derive(Default)]
        struct Modes(Mutex<Vec<u32>>);
        impl EventSink for Modes {
            fn event(&self, event: Event<'_>) {
                if let Event::Item { entry, .. } = event {
                    self.0.lock().unwrap().push(u32::from(entry.perms));
                }
            }
        }
        let modes = Arc::new(Modes::default());
        let l = list(&["a", "b"]);
        let rules = ChmodRules::parse_all(&["F640".to_string()], 0o022).unwrap();
        let o = InOrder::new(modes.clone(), l.clone()).with_chmod(rules);
        let item = |i: usize| Event::Item {
            entry: &l.entries[i],
            itemize: Itemize::new('>', FileKind::File),
            link_to: None,
        };
        o.event(item(1));
        o.settle(1);
        o.event(item(0));
        o.settle(0);
        o.event(item(1));
        assert_eq!(*modes.0.lock().unwrap(), [0o640, 0o640, 0o640]);
        assert_eq!(l.entries[1].perms, 0);
    }

    #[test]
    fn held_values_come_out_below_a_bound_in_order() {
        let mut h = Held::default();
        h.hold(5, "e");
        h.hold(1, "a");
        h.hold(3, "c");
        h.hold(1, "a2");
        assert_eq!(h.take_before(3), ["a", "a2"]);
        assert_eq!(h.take_before(3), Vec::<&str>::new());
        assert_eq!(h.take_all(), ["c", "e"]);
        assert!(h.is_empty());
    }
}
