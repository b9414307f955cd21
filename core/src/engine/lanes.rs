//! Data lanes: the extra streams of one session that carry whole files from the sender to the
//! receiver, so that a transport with several streams or connections (`ssh-pool`: one TCP
//! connection and one server process per stream; QUIC: streams of one connection) is used in
//! parallel.
//!
//! Owns the `lanes` capability, setting lanes up (the side that opened the session opens them
//! and writes a [`Frame::Lane`] preamble on each; the other side accepts them), the sender's
//! lane sinks with their alive flags ([`SenderLanes`]), the receiver's lane readers merged into
//! one channel and its choice of lane per file ([`ReceiverLanes`]).
//!
//! Does not own which files are asked for or asked again: the receiver's loop decides that.
//! The control stream (lane 0) keeps the list, requests, the delta exchange and the end of the
//! session; losing it ends the session. Losing a lane loses only the files answered on it,
//! which the receiver asks for again on the lanes left (see `docs/MERKLE_PROTOCOL.md`, "Data
//! lanes").

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::session::{frame_writer, FrameSink, FrameSource, FrameWriterTask};
use super::stats::Stats;
use crate::proto::merkle::{Caps, Frame, HEADER_LEN, MAX_LANES};
use crate::transport::{Connection, RecvStream, StreamPair};

/// The window (the `window` capability: how many files the sender may have open, begun and
/// not yet ended, on each stream at once) when the receiver did not say. The receiver sizes
/// its writers by it and refuses a stream that goes over it.
pub const DEFAULT_WINDOW: usize = 4;

/// The most files one stream may have open at once, whatever the receiver says.
pub const MAX_WINDOW: usize = 256;

/// The receiver's `window` capability value for `n` open files per stream.
pub fn window_cap(n: usize) -> u16 {
    n.clamp(1, MAX_WINDOW) as u16
}

/// The window the receiver asked for in `peer` (its hello), within 1..=[`MAX_WINDOW`].
pub fn window(peer: &Caps) -> usize {
    peer.window
        .map_or(DEFAULT_WINDOW, |w| usize::from(w).clamp(1, MAX_WINDOW))
}

/// How long setting up the lanes may take before the missing ones count as lost.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The capability this side offers over `conn`: every stream beyond the first is a lane, up
/// to `wanted` streams in all (`--streams`). An in-process transport (shared filesystem) gains
/// nothing from lanes and is offered none unless `--streams` asks.
pub fn offer(conn: &dyn Connection, wanted: Option<u32>) -> Option<u8> {
    let caps = conn.capabilities();
    if caps.shared_filesystem && wanted.is_none() {
        return None;
    }
    let streams = wanted.unwrap_or(u32::MAX).min(caps.max_streams);
    let n = streams.saturating_sub(1).min(u32::from(MAX_LANES)) as u8;
    (n > 0).then_some(n)
}

/// The number of lanes both sides agreed on: the smaller offer, 0 unless both offered.
pub fn agreed(ours: Option<u8>, peer: &Caps) -> u8 {
    ours.unwrap_or(0)
        .min(peer.lanes.unwrap_or(0))
        .min(MAX_LANES)
}

/// Open (`open`) or accept `n` lanes; slot `i` holds lane `i + 1`, `None` where it could not be
/// set up in time.
pub async fn setup(conn: &dyn Connection, open: bool, n: u8) -> Vec<Option<StreamPair>> {
    if n == 0 {
        return Vec::new();
    }
    if open {
        join_all((1..=n).map(|lane| async move {
            let opened = async {
                let mut pair = conn.open_stream().await.ok()?;
                let mut pre = Vec::new();
                Frame::Lane { lane }.encode(&mut pre);
                pair.send.write_all(&pre).await.ok()?;
                pair.send.flush().await.ok()?;
                Some(pair)
            };
            tokio::time::timeout(SETUP_TIMEOUT, opened)
                .await
                .ok()
                .flatten()
        }))
        .await
    } else {
        let mut slots: Vec<Option<StreamPair>> = (0..n).map(|_| None).collect();
        let accepting = async {
            for _ in 0..n {
                let Ok(mut pair) = conn.accept_stream().await else {
                    return;
                };
                let mut pre = [0u8; HEADER_LEN + 1];
                if pair.recv.read_exact(&mut pre).await.is_err() {
                    continue;
                }
                let len = u32::from_le_bytes([pre[1], pre[2], pre[3], pre[4]]);
                if len != 1 {
                    continue;
                }
                if let Ok(Frame::Lane { lane }) = Frame::decode(pre[0], &pre[HEADER_LEN..]) {
                    if let Some(slot) = slots.get_mut(usize::from(lane) - 1) {
                        if slot.is_none() {
                            *slot = Some(pair);
                        }
                    }
                }
            }
        };
        let _ = tokio::time::timeout(SETUP_TIMEOUT, accepting).await;
        slots
    }
}

/// One lane at the sender.
#[derive(Debug)]
struct SenderLane {
    sink: FrameSink,
    alive: Arc<AtomicBool>,
    writer: FrameWriterTask,
}

/// The sender's lanes: a frame sink per lane that was set up, and whether it still works.
#[derive(Debug, Default)]
pub struct SenderLanes {
    lanes: Vec<Option<SenderLane>>,
}

impl SenderLanes {
    /// Start a writer on each lane (the receive halves are not used by the sender); frames are
    /// compressed as on the control stream.
    pub fn new(pairs: Vec<Option<StreamPair>>, stats: &Arc<Stats>, control: &FrameSink) -> Self {
        let lanes = pairs
            .into_iter()
            .map(|p| {
                p.map(|pair| {
                    let (mut sink, writer) = frame_writer(pair.send, stats.clone());
                    sink.share_compression(control);
                    SenderLane {
                        sink,
                        alive: Arc::new(AtomicBool::new(true)),
                        writer,
                    }
                })
            })
            .collect();
        SenderLanes { lanes }
    }

    /// How many lanes were agreed (whether or not they work).
    pub fn count(&self) -> usize {
        self.lanes.len()
    }

    /// The sink of `lane` and its alive flag, if it was set up and has not failed.
    pub fn sink(&self, lane: u8) -> Option<(FrameSink, Arc<AtomicBool>)> {
        let l = self
            .lanes
            .get(usize::from(lane).checked_sub(1)?)?
            .as_ref()?;
        l.alive
            .load(Relaxed)
            .then(|| (l.sink.clone(), l.alive.clone()))
    }

    /// End every working lane with `Done` and wait (briefly) until its bytes are written; a
    /// lane that fails now loses nothing, every file on it was answered.
    pub async fn finish(self) {
        let mut writers = Vec::new();
        for l in self.lanes.into_iter().flatten() {
            if l.alive.load(Relaxed) {
                let _ = l.sink.send(&Frame::Done).await;
            }
            drop(l.sink);
            writers.push(l.writer);
        }
        for w in writers {
            let _ = tokio::time::timeout(SETUP_TIMEOUT, w.finish()).await;
        }
    }
}

/// What a lane reader reports to the receiver's loop.
#[derive(Debug)]
pub enum LaneEvent {
    /// A frame from `lane`.
    Frame(u8, Frame),
    /// `lane` ended: `clean` after the sender's `Done`, otherwise lost.
    End {
        /// Lane number.
        lane: u8,
        /// Whether the sender ended it.
        clean: bool,
    },
}

/// The receiver's lanes: one reader task per lane that was set up, all feeding one channel,
/// and the bytes asked for on each lane so far (to balance them).
#[derive(Debug)]
pub struct ReceiverLanes {
    rx: mpsc::Receiver<LaneEvent>,
    live: Vec<bool>,
    load: Vec<u64>,
    readers: Vec<JoinHandle<()>>,
    /// Bytes that arrived on each lane (index 0 = lane 1), for the report.
    pub bytes: Arc<Vec<AtomicU64>>,
}

impl ReceiverLanes {
    /// Start a reader on each lane (the send halves are dropped: the receiver writes nothing
    /// on lanes). `compressed` says whether compressed frames are accepted.
    pub fn new(pairs: Vec<Option<StreamPair>>, stats: &Arc<Stats>, compressed: bool) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let n = pairs.len();
        let bytes: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let mut live = vec![false; n];
        let mut readers = Vec::new();
        for (i, pair) in pairs.into_iter().enumerate() {
            let Some(pair) = pair else { continue };
            live[i] = true;
            let lane = (i + 1) as u8;
            let (tx, stats, bytes) = (tx.clone(), stats.clone(), bytes.clone());
            let recv: RecvStream = pair.recv;
            drop(pair.send);
            readers.push(tokio::spawn(async move {
                let counted = Arc::new(Stats::default());
                let mut source = FrameSource::new(recv, counted.clone());
                source.accept_compressed(compressed);
                let mut seen = 0;
                let clean = loop {
                    let next = source.next().await;
                    let now = counted.bytes_received.load(Relaxed);
                    stats.bytes_received.fetch_add(now - seen, Relaxed);
                    if let Some(b) = bytes.get(i) {
                        b.fetch_add(now - seen, Relaxed);
                    }
                    seen = now;
                    match next {
                        Ok(Some(Frame::Done)) => break true,
                        Ok(Some(f)) => {
                            if tx.send(LaneEvent::Frame(lane, f)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => break false,
                    }
                };
                let _ = tx.send(LaneEvent::End { lane, clean }).await;
            }));
        }
        ReceiverLanes {
            rx,
            live,
            load: vec![0; n],
            readers,
            bytes,
        }
    }

    /// How many lanes were agreed (whether or not they work).
    pub fn count(&self) -> usize {
        self.live.len()
    }

    /// How many lanes are still usable.
    pub fn live_count(&self) -> usize {
        self.live.iter().filter(|l| **l).count()
    }

    /// Whether any lane is still usable.
    pub fn any_live(&self) -> bool {
        self.live.iter().any(|l| *l)
    }

    /// Whether `lane` (0 = control) is usable.
    pub fn is_live(&self, lane: u8) -> bool {
        lane == 0 || self.live.get(usize::from(lane) - 1) == Some(&true)
    }

    /// Mark `lane` lost (or finished): nothing more is asked or taken from it.
    pub fn lose(&mut self, lane: u8) {
        if let Some(l) = usize::from(lane)
            .checked_sub(1)
            .and_then(|i| self.live.get_mut(i))
        {
            *l = false;
        }
    }

    /// The stream to ask for a file of `size` bytes on: the least loaded of the control stream
    /// (0, which also carries the requests and the delta exchange, so it counts double) and the
    /// live lanes.
    pub fn pick(&mut self, size: u64, control_load: &mut u64) -> u8 {
        self.pick_excluding(size, control_load, &[]).unwrap_or(0)
    }

    /// Like [`ReceiverLanes::pick`], never one of `busy` (the streams already carrying another
    /// part of the same file: a stream carries one part of a file at a time, since frames name
    /// only the file). `None` when every stream is busy.
    pub fn pick_excluding(&mut self, size: u64, control_load: &mut u64, busy: &[u8]) -> Option<u8> {
        let mut best: Option<(u64, u8)> =
            (!busy.contains(&0)).then(|| (control_load.saturating_mul(2), 0));
        for (i, live) in self.live.iter().enumerate() {
            let lane = (i + 1) as u8;
            if *live && !busy.contains(&lane) && best.is_none_or(|b| self.load[i] < b.0) {
                best = Some((self.load[i], lane));
            }
        }
        let (_, lane) = best?;
        match lane {
            0 => *control_load += size.max(1),
            lane => self.load[usize::from(lane) - 1] += size.max(1),
        }
        Some(lane)
    }

    /// Whether no lane event is waiting (the next [`ReceiverLanes::next`] may wait).
    pub fn is_idle(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next event from any lane; `None` once every reader has ended.
    pub async fn next(&mut self) -> Option<LaneEvent> {
        self.rx.recv().await
    }
}

impl Drop for ReceiverLanes {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// The entry index a data frame is about, if it is one.
pub fn frame_ndx(f: &Frame) -> Option<u32> {
    match f {
        Frame::DataBegin { ndx, .. }
        | Frame::Data { ndx, .. }
        | Frame::DataEnd { ndx, .. }
        | Frame::Vanished { ndx }
        | Frame::FileFailed { ndx, .. } => Some(*ndx),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(lanes: Option<u8>) -> Caps {
        Caps {
            lanes,
            ..Caps::default()
        }
    }

    #[test]
    fn both_sides_must_offer_and_the_smaller_wins() {
        assert_eq!(agreed(Some(3), &peer(Some(5))), 3);
        assert_eq!(agreed(Some(3), &peer(Some(1))), 1);
        assert_eq!(agreed(Some(3), &peer(None)), 0);
        assert_eq!(agreed(None, &peer(Some(4))), 0);
        assert_eq!(agreed(Some(3), &peer(Some(255))), 3);
        assert_eq!(agreed(Some(200), &peer(Some(255))), MAX_LANES);
    }

    #[test]
    fn picking_balances_bytes_and_skips_lost_lanes() {
        let (tx, rx) = mpsc::channel(1);
        drop(tx);
        let mut l = ReceiverLanes {
            rx,
            live: vec![true, true],
            load: vec![0, 0],
            readers: Vec::new(),
            bytes: Arc::new(Vec::new()),
        };
        let mut control = 0;
        let picks: Vec<u8> = (0..6).map(|_| l.pick(100, &mut control)).collect();
        // Every stream gets files; the control stream fewer (it counts double).
        for lane in 0..=2 {
            assert!(picks.contains(&lane), "{picks:?}");
        }
        l.lose(1);
        assert!(!l.is_live(1) && l.is_live(2) && l.is_live(0));
        for _ in 0..10 {
            assert_ne!(l.pick(100, &mut control), 1);
        }
        l.lose(2);
        assert!(!l.any_live());
        assert_eq!(l.pick(1, &mut control), 0);
        // A busy stream is never chosen; none left is `None`.
        assert_eq!(l.pick_excluding(1, &mut control, &[0]), None);
        l.live[1] = true;
        assert_eq!(l.pick_excluding(1, &mut control, &[0]), Some(2));
    }
}
