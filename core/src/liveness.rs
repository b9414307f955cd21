//! Liveness: whether this process is getting work done, and what each of its jobs waits for.
//!
//! Owns two process-wide boards, both cheap enough to touch from any job:
//! - the **work counter** ([`bump`]): scanning, hashing, reading and writing files move it. A
//!   stream writer sends the peer a keepalive only while it moves (see `session`), so a peer
//!   that waits on us times out (`--timeout`) when we are stuck, never while we are busy;
//! - the **wait board** ([`waiting`]): a job that may wait on the peer or on another job names
//!   the wait for as long as it lasts; [`report`] lists them, longest first (printed on
//!   SIGQUIT, or when a `-vvv` run stalls).
//!
//! Does not own the timeouts themselves (the frame and rsync readers) or printing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static WORK: AtomicU64 = AtomicU64::new(0);
static NEXT_WAIT: AtomicU64 = AtomicU64::new(0);
static BOARD: Mutex<BTreeMap<u64, (String, Instant)>> = Mutex::new(BTreeMap::new());

/// Count a piece of work done (an entry scanned, a block hashed, read or written).
pub fn bump() {
    WORK.fetch_add(1, Relaxed);
}

/// The work counter: it moved if this process did anything since it was last read.
pub fn work() -> u64 {
    WORK.load(Relaxed)
}

/// A named wait on the board, removed when dropped.
#[derive(Debug)]
#[must_use = "the wait is on the board only while the guard lives"]
pub struct Waiting(u64);

/// Put `what` on the wait board until the returned guard is dropped.
pub fn waiting(what: impl Into<String>) -> Waiting {
    let id = NEXT_WAIT.fetch_add(1, Relaxed);
    if let Ok(mut b) = BOARD.lock() {
        b.insert(id, (what.into(), Instant::now()));
    }
    Waiting(id)
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut b) = BOARD.lock() {
            b.remove(&self.0);
        }
    }
}

/// Every wait on the board with how long it has lasted, longest first.
pub fn report() -> Vec<(Duration, String)> {
    let mut v: Vec<(Duration, String)> = BOARD
        .lock()
        .map(|b| b.values().map(|(w, t)| (t.elapsed(), w.clone())).collect())
        .unwrap_or_default();
    v.sort_by_key(|w| std::cmp::Reverse(w.0));
    v
}

/// The board as lines for a person: `  12.3 s  receiver: waiting for …`.
pub fn report_lines() -> Vec<String> {
    let waits = report();
    if waits.is_empty() {
        return vec!["nothing is waiting".to_owned()];
    }
    waits
        .into_iter()
        .map(|(d, w)| format!("{:>8.1} s  {w}", d.as_secs_f64()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_listed_while_their_guard_lives() {
        let before = work();
        bump();
        assert!(work() > before);
        let a = waiting("test: waiting for the first thing");
        std::thread::sleep(Duration::from_millis(5));
        let b = waiting("test: waiting for the second thing");
        let lines = report_lines();
        let first = lines.iter().position(|l| l.contains("first thing"));
        let second = lines.iter().position(|l| l.contains("second thing"));
        assert!(first.is_some() && second.is_some(), "{lines:?}");
        // Longest first.
        assert!(first < second, "{lines:?}");
        drop(a);
        assert!(!report_lines().iter().any(|l| l.contains("first thing")));
        drop(b);
        assert!(!report_lines().iter().any(|l| l.contains("second thing")));
    }
}
