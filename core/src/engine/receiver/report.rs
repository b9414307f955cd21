//! What the receiver reports to a sending client that prints it (`Report` frames): items made
//! without data and deletions, collected as they happen and sent in batches. Does not decide
//! what is done.

#[allow(unused_imports)]
use super::*;

/// Collects what the receiver does without data (and its deletions) for a sending client,
/// passing every event on.
pub(super) struct ReportSink {
    pub(super) inner: Arc<dyn EventSink>,
    /// The list the items' entries are in, once it is final ([`ReportSink::set_list`]): an
    /// item is then kept as its entry's index (issue 18: 8 bytes, not a copy of its path).
    list: std::sync::OnceLock<Arc<FileList>>,
    /// Whether transfers are kept too: only in a dry run (otherwise the sender reports them
    /// as it is asked for them, and a fresh copy's every file is one).
    with_transfers: bool,
    pub(super) collected: std::sync::Mutex<Collected>,
}

/// What was collected since the last send.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Items of the list's entries: index, itemize flags, update letter.
    pub(super) items: Vec<(u32, u16, u8)>,
    /// Items of an entry not (yet) found in the list, by path: looked up when sent.
    pub(super) unlisted: Vec<(Vec<u8>, u16, u8)>,
    /// Deleted paths, with whether each was a directory.
    pub(super) deleted: Vec<(Vec<u8>, bool)>,
    /// Messages printed at `-v`.
    pub(super) infos: Vec<String>,
}

impl ReportSink {
    /// `with_transfers`: a dry run, whose transfers the receiver reports.
    pub(super) fn new(inner: Arc<dyn EventSink>, with_transfers: bool) -> Self {
        ReportSink {
            inner,
            list: std::sync::OnceLock::new(),
            with_transfers,
            collected: std::sync::Mutex::new(Collected::default()),
        }
    }

    /// The list items will come from, once it no longer changes.
    pub(super) fn set_list(&self, list: Arc<FileList>) {
        let _ = self.list.set(list);
    }

    /// Send what was collected so far.
    pub(super) async fn send(&self, fsink: &FrameSink) -> Result<(), SyncError> {
        let Collected {
            mut items,
            unlisted,
            deleted,
            infos,
        } = match self.collected.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return Ok(()),
        };
        for message in infos {
            fsink.send(&Frame::Info(message)).await?;
        }
        if !unlisted.is_empty() {
            if let Some(list) = self.list.get() {
                let ndx: HashMap<&[u8], u32> = list
                    .entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.path.as_slice(), i as u32))
                    .collect();
                items.extend(
                    unlisted
                        .into_iter()
                        .filter_map(|(p, f, l)| ndx.get(p.as_slice()).map(|&n| (n, f, l))),
                );
            }
        }
        if items.is_empty() && deleted.is_empty() {
            return Ok(());
        }
        // Deletions first, as rsync prints them.
        for f in report_frames(items, deleted) {
            fsink.send(&f).await?;
        }
        Ok(())
    }
}

impl EventSink for ReportSink {
    fn event(&self, event: Event<'_>) {
        if let Ok(mut c) = self.collected.lock() {
            match &event {
                Event::Item { entry, itemize, .. }
                    if self.with_transfers || itemize.update != '>' =>
                {
                    let (flags, letter) = (itemize.to_flags(), itemize.update as u8);
                    match self.list.get().and_then(|l| l.index_of(entry)) {
                        Some(i) => c.items.push((i as u32, flags, letter)),
                        None => c.unlisted.push((entry.path.to_vec(), flags, letter)),
                    }
                }
                Event::Deleted { path, is_dir } => c.deleted.push((path.clone(), *is_dir)),
                Event::Info { message } => c.infos.push(message.clone()),
                _ => {}
            }
        }
        self.inner.event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;

    /// What the receiver does is passed on and also kept for the sending client.
    #[test]
    fn events_pass_through_and_are_kept() {
        let inner = Arc::new(Kept::default());
        let r = ReportSink::new(inner.clone(), false);
        let e = entry("d", FileKind::Dir, 0, 0o755);
        r.event(Event::Item {
            entry: &e,
            itemize: Itemize::new('c', FileKind::Dir),
            link_to: None,
        });
        // Once the list is known, its entries' items are kept by index; transfers (the
        // sender reports them) are not kept, only passed on.
        let list = Arc::new(FileList {
            entries: vec![entry("f", FileKind::File, 1, 0o644)],
        });
        r.set_list(list.clone());
        r.event(Event::Item {
            entry: &list.entries[0],
            itemize: Itemize::new('c', FileKind::File),
            link_to: None,
        });
        r.event(Event::Item {
            entry: &list.entries[0],
            itemize: Itemize::new('>', FileKind::File),
            link_to: None,
        });
        r.event(Event::Deleted {
            path: b"old".to_vec(),
            is_dir: false,
        });
        r.event(Event::Info {
            message: "created directory d".into(),
        });
        assert_eq!(inner.lines().len(), 5);
        let c = r.collected.lock().unwrap();
        assert_eq!(c.unlisted.len(), 1);
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].0, 0);
        assert_eq!(c.deleted, vec![(b"old".to_vec(), false)]);
        assert_eq!(c.infos, vec!["created directory d".to_owned()]);
    }
}
