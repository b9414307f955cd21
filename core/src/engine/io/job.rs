//! What a data mover works on: the opened files of one copy, its progress callback and the
//! shared bandwidth limit. Shared by the thread-pool and io_uring movers; moves no bytes itself.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An opened source and destination, ready for their data to move.
#[derive(Debug)]
pub struct Prepared {
    /// Source, positioned at 0.
    pub src: File,
    /// Destination, positioned at 0.
    pub dst: File,
    /// The expected length.
    pub len: u64,
}

/// Called with the bytes of the file moved so far.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A shared rate limit (`--bwlimit`), in bytes per second.
#[derive(Debug)]
pub struct RateLimit {
    rate: Option<u64>,
    start: Instant,
    moved: AtomicU64,
}

impl RateLimit {
    /// A limit of `rate` bytes per second, or none.
    pub fn new(rate: Option<u64>) -> Self {
        RateLimit {
            rate: rate.filter(|r| *r > 0),
            start: Instant::now(),
            moved: AtomicU64::new(0),
        }
    }

    /// Whether a limit is set.
    pub fn is_limited(&self) -> bool {
        self.rate.is_some()
    }

    /// Account `n` bytes; how long to wait before moving more.
    pub fn account(&self, n: u64) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let total = self.moved.fetch_add(n, Relaxed) + n;
        let due = Duration::from_secs_f64(total as f64 / rate as f64);
        due.saturating_sub(self.start.elapsed())
    }

    /// How many bytes to move per step so the limit is smooth.
    pub fn step(&self, default: u64) -> u64 {
        match self.rate {
            Some(r) => (r / 10).clamp(4096, default),
            None => default,
        }
    }
}
