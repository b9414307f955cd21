//! A pushing client's progress (`--progress`, `--info=progress2`): the receiver is remote, so
//! the sender reports each file's bytes as its frames are made. Files are registered when
//! their request is accepted; a frame observer on the stream's sink turns `Data` and
//! `DataEnd` frames into [`Event::Progress`]. Does not print (the client's sink does).

#[allow(unused_imports)]
use super::*;

/// Files on their way, by the index their frames carry, with the bytes sent so far.
pub(super) struct SendProgress {
    files: std::sync::Mutex<HashMap<u32, (FileEntry, u64)>>,
    sink: Arc<dyn EventSink>,
}

impl SendProgress {
    /// Progress for `job` on `sink` (and the lanes that follow it), if it is a client that
    /// shows progress.
    pub(super) fn install(job: &SenderJob, sink: &FrameSink) -> Option<Arc<SendProgress>> {
        if !(job.report_items && job.opts.progress) {
            return None;
        }
        let p = Arc::new(SendProgress {
            files: std::sync::Mutex::new(HashMap::new()),
            sink: job.sink.clone(),
        });
        let watcher = p.clone();
        sink.observe(Arc::new(move |f: &Frame| watcher.watch(f)));
        Some(p)
    }

    /// Entry `e` will be sent under index `ndx`.
    pub(super) fn expect(&self, ndx: u32, e: &FileEntry) {
        if let Ok(mut m) = self.files.lock() {
            m.insert(ndx, (e.clone(), 0));
        }
    }

    fn watch(&self, frame: &Frame) {
        let (ndx, more, finished) = match frame {
            Frame::Data { ndx, bytes } => (*ndx, bytes.len() as u64, false),
            Frame::DataEnd { ndx, .. } => (*ndx, 0, true),
            Frame::Vanished { ndx } | Frame::FileFailed { ndx, .. } => {
                if let Ok(mut m) = self.files.lock() {
                    m.remove(ndx);
                }
                return;
            }
            _ => return,
        };
        let seen = self.files.lock().ok().and_then(|mut m| {
            if finished {
                // A delta sends less than the file: its end is the whole file.
                m.remove(&ndx).map(|(e, _)| {
                    let size = e.size;
                    (e, size)
                })
            } else {
                m.get_mut(&ndx).map(|(e, done)| {
                    *done += more;
                    (e.clone(), *done)
                })
            }
        });
        if let Some((entry, done)) = seen {
            self.sink.event(Event::Progress {
                entry: &entry,
                done,
                finished,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<(Vec<u8>, u64, bool)>>);

    impl EventSink for Seen {
        fn event(&self, event: Event<'_>) {
            if let Event::Progress {
                entry,
                done,
                finished,
            } = event
            {
                self.0
                    .lock()
                    .unwrap()
                    .push((entry.path.to_vec(), done, finished));
            }
        }
    }

    /// Data frames of an expected file become progress; its end reports the whole size; an
    /// unexpected index or another frame is ignored.
    #[test]
    fn frames_become_progress_events() {
        let seen = Arc::new(Seen::default());
        let p = SendProgress {
            files: std::sync::Mutex::new(HashMap::new()),
            sink: seen.clone(),
        };
        let e = crate::merkle::dirtree::tests::entry("big", FileKind::File, 10, 0);
        p.expect(7, &e);
        p.watch(&Frame::Data {
            ndx: 7,
            bytes: vec![0; 4],
        });
        p.watch(&Frame::Data {
            ndx: 8,
            bytes: vec![0; 4],
        });
        p.watch(&Frame::Done);
        p.watch(&Frame::DataEnd {
            ndx: 7,
            hash: [0; 32],
        });
        p.watch(&Frame::DataEnd {
            ndx: 7,
            hash: [0; 32],
        });
        let got = seen.0.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![(b"big".to_vec(), 4, false), (b"big".to_vec(), 10, true)]
        );
    }
}
