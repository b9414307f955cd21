//! Issue 18, streaming list: the sender's rounds — its sources walked a directory at a time
//! on a blocking thread ([`SegmentWalker`]), each round's segments encoded (`Totals` when
//! the read errors grew, `Segment` headers, `FileEntries`, then `RoundEnd` or `FileListEnd`)
//! together with the round's list the requests name, a round ahead of the one being served.
//! With `live-rounds` (an rsync adapter's receiver), the rounds still askable are kept
//! ([`LiveRounds`]) and served as one list.
//! Does not serve requests (`serve`, once per round).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::engine::event::EventSink;
use crate::engine::options::SyncOptions;
use crate::engine::scan::{absolute, SegmentWalker, SourceList};
use crate::engine::segments::round_list;
use crate::engine::session::FrameSink;
use crate::engine::treelist::encode_entries;
use crate::error::SyncError;
use crate::flist::FileList;
use crate::proto::merkle::Frame;

use super::SenderJob;

/// One round, ready to go: its frames and its list.
pub(super) struct SentRound {
    /// The round's frames, encoded.
    pub(super) encoded: Vec<u8>,
    /// The round's list (the indexes of its requests), with where each entry is here.
    pub(super) list: SourceList,
    /// The list is complete with this round.
    pub(super) last: bool,
}

/// Walk the job's one source on a blocking thread, a round (segments of at least `round`
/// entries, or the rest) at a time; the next round is listed while this one is served.
pub(super) fn walk_rounds(
    job: &SenderJob,
    opts: SyncOptions,
    ev: Arc<dyn EventSink>,
    sink: &FrameSink,
    round: u32,
) -> mpsc::Receiver<Result<SentRound, SyncError>> {
    let (tx, rx) = mpsc::channel(1);
    let source = job.sources.first().map(|s| absolute(s)).unwrap_or_default();
    let (stats, sink) = (job.stats.clone(), sink.clone());
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut walker = SegmentWalker::new(&source, &opts, &stats, &*ev);
        let mut next = walker.next_segment();
        let mut errors_sent = 0u64;
        loop {
            let mut encoded = Vec::new();
            let mut segments = Vec::new();
            let mut held = 0u32;
            let mut count = 0u32;
            while let Some(s) = next.take() {
                if s.errors > errors_sent {
                    errors_sent = s.errors;
                    sink.encode(&Frame::Totals(stats.totals_counters()), &mut encoded);
                }
                sink.encode(
                    &Frame::Segment {
                        parent: s.parent,
                        base: s.base,
                        count: s.entries.len() as u32,
                    },
                    &mut encoded,
                );
                encode_entries(&sink, s.entries.iter(), &mut encoded);
                held += s.entries.len() as u32;
                count = s.base + s.entries.len() as u32;
                segments.push(s);
                next = walker.next_segment();
                if held >= round {
                    break;
                }
            }
            let last = next.is_none();
            sink.encode(
                &if last {
                    Frame::FileListEnd { count }
                } else {
                    Frame::RoundEnd { count }
                },
                &mut encoded,
            );
            let (list, resolved) = round_list(segments);
            let list = SourceList {
                list: Arc::new(FileList {
                    entries: list.entries,
                }),
                bases: vec![walker.base_dir().to_path_buf()],
                base_of: Vec::new(),
                resolved: resolved.into_iter().collect(),
                missing: Vec::new(),
                // Rounds have no directory-tree exchange to leave them out of.
                skipped_by_receiver: Default::default(),
            };
            stats
                .flist_build_us
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            let sent = SentRound {
                encoded,
                list,
                last,
            };
            if tx.blocking_send(Ok(sent)).is_err() || last {
                return;
            }
        }
    });
    rx
}

// Issue 18, live rounds:
/// The rounds an rsync adapter's receiver may still ask about (`live-rounds`): each with where
/// it starts in the rounds put end to end. Requests name a place counted from the first kept.
#[derive(Default)]
pub(super) struct LiveRounds {
    kept: VecDeque<(u32, Arc<SourceList>)>,
    /// Where the next round starts.
    next: u32,
    /// Places before this the receiver will not name again (its `RoundEnd`).
    pub(super) released: u32,
}

impl LiveRounds {
    /// Forget the rounds wholly before `released`, keep `round`, and return the list the
    /// requests now name: the kept rounds put end to end.
    pub(super) fn add(&mut self, round: SourceList) -> SourceList {
        while self
            .kept
            .front()
            .is_some_and(|(start, l)| start + l.list.len() as u32 <= self.released)
        {
            self.kept.pop_front();
        }
        let len = round.list.len() as u32;
        self.kept.push_back((self.next, Arc::new(round)));
        self.next += len;
        let Some((_, first)) = self.kept.front() else {
            return SourceList::default();
        };
        if self.kept.len() == 1 {
            return SourceList {
                list: first.list.clone(),
                bases: first.bases.clone(),
                base_of: Vec::new(),
                resolved: first.resolved.clone(),
                missing: Vec::new(),
                skipped_by_receiver: Default::default(),
            };
        }
        let mut entries = Vec::new();
        let mut resolved = std::collections::HashMap::new();
        for (_, l) in &self.kept {
            let at = entries.len() as u32;
            resolved.extend(l.resolved.iter().map(|(i, p)| (at + i, p.clone())));
            entries.extend(l.list.entries.iter().cloned());
        }
        SourceList {
            list: Arc::new(FileList { entries }),
            bases: first.bases.clone(),
            base_of: Vec::new(),
            resolved,
            missing: Vec::new(),
            skipped_by_receiver: Default::default(),
        }
    }
}
