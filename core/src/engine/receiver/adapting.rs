//! Issue 16, adapt during the run (on with `SyncOptions::adapt`): the receiver's window of
//! delta requests and the switch of the files not yet asked for between delta and whole.
//!
//! Owns the files held back ([`Adapting::held`], in plan order), what is in flight (delta
//! exchanges not yet closed, and files turned whole not yet answered), the snapshots of the
//! run it feeds to [`crate::negotiate::adapt::Adapter`], the clock of the indexer's chunking
//! ([`ChunkClock`]), and the set of files the indexer may skip (turned whole: their old
//! version is not read). Asking for a file, and what the answers mean, stay in `transfer`.
//!
//! Both ends agree without a capability: the sender answers each file as the request that
//! names it asks (`Request` whole, `DeltaRequest` by delta), in any mix within one session.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ctx::{Ctx, Transfer};
use crate::negotiate::adapt::{self, AdaptOpts, Adapter, Snapshot, Variant};

/// How long the indexer spent chunking and hashing old versions, and how many bytes.
#[derive(Debug, Default)]
pub(super) struct ChunkClock {
    bytes: AtomicU64,
    micros: AtomicU64,
}

impl ChunkClock {
    /// `bytes` took `took`.
    pub(super) fn add(&self, bytes: u64, took: Duration) {
        self.bytes.fetch_add(bytes, Relaxed);
        self.micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    fn read(&self) -> (u64, Duration) {
        (
            self.bytes.load(Relaxed),
            Duration::from_micros(self.micros.load(Relaxed)),
        )
    }
}

/// The files the indexer need not index (they were asked for whole).
pub(super) type Skip = Arc<Mutex<HashSet<u32>>>;

/// What to ask for next.
pub(super) enum Next {
    /// A delta exchange for this file.
    Delta(Transfer),
    /// This file whole (it was a delta candidate).
    Whole(Transfer),
}

/// The window and the decision over one transfer phase.
pub(super) struct Adapting {
    opts: AdaptOpts,
    /// Delta candidates not yet asked for, in plan order.
    pub(super) held: VecDeque<Transfer>,
    window: usize,
    /// Delta exchanges asked for and not closed, and files turned whole not yet answered.
    in_flight: usize,
    /// Files turned whole, until answered.
    turned: HashSet<u32>,
    adapter: Adapter,
    started: Instant,
    /// Snapshots taken (the test hook's count).
    taken: u32,
    pub(super) clock: Arc<ChunkClock>,
    pub(super) skip: Skip,
}

impl Adapting {
    /// Over `window` delta exchanges at once, starting by delta; the first `asked` already
    /// asked for.
    pub(super) fn new(ctx: &Ctx, opts: AdaptOpts, window: usize, asked: usize) -> Adapting {
        // The test hook's snapshots stand alone: the peer's rate is left out too.
        let peer = match opts.inject {
            Some(_) => 0,
            None => ctx.stats.peer_cpu.load(Relaxed),
        };
        Adapting {
            opts,
            held: VecDeque::new(),
            window,
            in_flight: asked,
            turned: HashSet::new(),
            // The link's rate is not known here (the tune capability carries its BDP only):
            // while the delta runs, the rate the wire shows is the evidence.
            adapter: Adapter::new(Variant::Delta, None, (peer > 0).then_some(peer)),
            started: Instant::now(),
            taken: 0,
            clock: Arc::default(),
            skip: Arc::default(),
        }
    }

    /// How many delta requests go in the first fill of the window.
    pub(super) fn first_fill(&self) -> usize {
        self.window
    }

    /// A look at the run now (or the test hook's made-up one); the switch it leads to, as an
    /// `--explain` line.
    pub(super) fn observe(&mut self, ctx: &Ctx) -> Option<String> {
        self.taken += 1;
        let snap = self.opts.injected(self.taken).unwrap_or_else(|| {
            let (chunked, chunking) = self.clock.read();
            Snapshot {
                at: self.started.elapsed(),
                received: ctx.stats.bytes_received.load(Relaxed),
                chunked,
                chunking,
            }
        });
        let d = self.adapter.observe(snap)?;
        Some(format!(
            "adapt: {} ({} file{} not yet asked for)",
            d.reason,
            self.held.len(),
            if self.held.len() == 1 { "" } else { "s" }
        ))
    }

    /// A delta exchange closed, or a file turned whole was answered (`ndx`).
    pub(super) fn closed(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Whether `ndx` was turned whole and not yet answered; it is answered now.
    pub(super) fn answered_turned(&mut self, ndx: u32) -> bool {
        let was = self.turned.remove(&ndx);
        if was {
            self.closed();
        }
        was
    }

    /// The next file to ask for, while the window has room.
    pub(super) fn next(&mut self) -> Option<Next> {
        if self.in_flight >= self.window {
            return None;
        }
        let t = self.held.pop_front()?;
        self.in_flight += 1;
        Some(match self.adapter.current() {
            Variant::Delta => Next::Delta(t),
            Variant::Whole => {
                self.turned.insert(t.ndx);
                if let Ok(mut s) = self.skip.lock() {
                    s.insert(t.ndx);
                }
                Next::Whole(t)
            }
        })
    }
}

/// The window for `ctx`'s delta files of `mean_size` bytes on average (or the test hook's).
pub(super) fn window(ctx: &Ctx, opts: &AdaptOpts, mean_size: u64) -> usize {
    if let Some(w) = opts.window {
        return w;
    }
    adapt::request_window(
        crate::engine::tune::chunk_bdp(&ctx.opts),
        mean_size,
        crate::engine::options::cores(),
    )
}
