//! What the receiver reports to a sending client that prints it (`Report` frames): items made
//! without data and deletions, collected as they happen and sent in batches. Does not decide
//! what is done.

#[allow(unused_imports)]
use super::*;

/// Collects what the receiver does without data (and its deletions) for a sending client,
/// passing every event on.
pub(super) struct ReportSink {
    pub(super) inner: Arc<dyn EventSink>,
    pub(super) collected: std::sync::Mutex<Collected>,
}

/// What was collected since the last send.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Items: path, itemize flags, update letter.
    pub(super) items: Vec<(Vec<u8>, u16, u8)>,
    /// Deleted paths, with whether each was a directory.
    pub(super) deleted: Vec<(Vec<u8>, bool)>,
    /// Messages printed at `-v`.
    pub(super) infos: Vec<String>,
}

impl ReportSink {
    pub(super) fn new(inner: Arc<dyn EventSink>) -> Self {
        ReportSink {
            inner,
            collected: std::sync::Mutex::new(Collected::default()),
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
        let Collected {
            items,
            deleted,
            infos,
        } = match self.collected.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return Ok(()),
        };
        for message in infos {
            fsink.send(&Frame::Info(message)).await?;
        }
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
                    c.items
                        .push((entry.path.clone(), itemize.to_flags(), itemize.update as u8))
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
        r.event(Event::Info {
            message: "created directory d".into(),
        });
        assert_eq!(inner.lines().len(), 3);
        let c = r.collected.lock().unwrap();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.deleted, vec![(b"old".to_vec(), false)]);
        assert_eq!(c.infos, vec!["created directory d".to_owned()]);
    }
}
