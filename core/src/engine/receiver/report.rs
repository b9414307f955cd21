//! What the receiver reports to a sending client that prints it (`Report` frames): items made
//! without data and deletions, collected as they happen and sent in batches. Does not decide
//! what is done.

#[allow(unused_imports)]
use super::*;

/// Collects what the receiver does without data (and its deletions) for a sending client,
/// passing every event on.
pub(super) struct ReportSink {
    pub(super) inner: Arc<dyn EventSink>,
    #[allow(clippy::type_complexity)]
    pub(super) collected: std::sync::Mutex<(Vec<(Vec<u8>, u16, u8)>, Vec<(Vec<u8>, bool)>)>,
}

impl ReportSink {
    pub(super) fn new(inner: Arc<dyn EventSink>) -> Self {
        ReportSink {
            inner,
            collected: std::sync::Mutex::new((Vec::new(), Vec::new())),
        }
    }

    /// Send what was collected so far; transfers only in a dry run (otherwise the sender
    /// reports them as it is asked for them).
    pub(super) async fn send(
        &self,
        fsink: &FrameSink,
        list: &FileList,
        with_transfers: bool,
    ) -> Result<(), SyncError> {
        let (items, deleted) = match self.collected.lock() {
            Ok(mut c) => (std::mem::take(&mut c.0), std::mem::take(&mut c.1)),
            Err(_) => return Ok(()),
        };
        if items.is_empty() && deleted.is_empty() {
            return Ok(());
        }
        let ndx: HashMap<&[u8], u32> = list
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.as_slice(), i as u32))
            .collect();
        let items: Vec<(u32, u16, u8)> = items
            .into_iter()
            .filter(|(_, _, l)| with_transfers || *l != b'>')
            .filter_map(|(p, f, l)| ndx.get(p.as_slice()).map(|&n| (n, f, l)))
            .collect();
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
                Event::Item { entry, itemize, .. } => {
                    c.0.push((entry.path.clone(), itemize.to_flags(), itemize.update as u8))
                }
                Event::Deleted { path, is_dir } => c.1.push((path.clone(), *is_dir)),
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
        let r = ReportSink::new(inner.clone());
        let e = entry("d", FileKind::Dir, 0, 0o755);
        r.event(Event::Item {
            entry: &e,
            itemize: Itemize::new('c', FileKind::Dir),
            link_to: None,
        });
        r.event(Event::Deleted {
            path: b"old".to_vec(),
            is_dir: false,
        });
        assert_eq!(inner.lines().len(), 2);
        let c = r.collected.lock().unwrap();
        assert_eq!(c.0.len(), 1);
        assert_eq!(c.1, vec![(b"old".to_vec(), false)]);
    }
}
