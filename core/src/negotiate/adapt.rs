//! Issue 16, adapt during the run: whether the files not yet asked for go by merkle delta or
//! whole, decided again and again from what the receiver observes while the transfer runs —
//! pure, fed one [`Snapshot`] at a time.
//!
//! Owns the observation a receiver takes ([`Snapshot`]), what two of them say
//! ([`Interval`]: the delivery rate, how fast this side chunked) and the decision with its hysteresis ([`Adapter`]). The rule mirrors the session's
//! first choice ([`super::params::variant`]): whole files where the link carries more than
//! chunking and hashing can keep up with, the delta where the link is the slower one.
//!
//! - **Delta → whole:** while the delta runs, the wire says little of the link (the delta
//!   sends only changed chunks), so the link's rate is the larger of the delivery rate seen and
//!   what the negotiation knew ([`Adapter::new`]'s `link`). When it is more than
//!   [`MARGIN`] × the chunking rate (the slower of this side's, measured, and the peer's, from
//!   its hello) in [`STREAK`] intervals in a row, the rest goes whole.
//! - **Whole → delta:** while whole files move, the delivery rate is the link's. When it falls
//!   below the chunking rate / [`MARGIN`] in [`STREAK`] intervals in a row, the rest goes by
//!   delta again.
//!
//! An interval too short or that moved too little says nothing ([`MIN_INTERVAL`],
//! [`MIN_BYTES`]); without a chunking rate nothing changes.
//!
//! Not here: taking the snapshots, the request window, or asking for a file in one form or
//! the other (the receiver's transfer loop).

use std::time::Duration;

use super::params::per_sec;
use super::Decision;

/// The switch that turns adapting on, and its test hook (read by the binary; the engine
/// sees only [`AdaptOpts`]).
pub const ADAPT_VAR: &str = "ARSYNC_ADAPT";
/// Test hook: `LINK,CHUNK` (bytes per second) replaces every measured snapshot by one that
/// shows the link delivering `LINK` and this side chunking at `CHUNK`, a [`MIN_INTERVAL`]
/// after the one before — so that a test sees a switch happen after a known number of
/// observations, without timing. Only with [`ADAPT_VAR`].
pub const INJECT_VAR: &str = "ARSYNC_ADAPT_INJECT";

/// Adapting during the run, as asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdaptOpts {
    /// The test hook's rates ([`INJECT_VAR`]): the link's and the chunking's, bytes per
    /// second.
    pub inject: Option<(u64, u64)>,
    /// The test hook's window ([`INJECT_VAR`]'s third number): so many delta exchanges at
    /// once, whatever the cores and the link.
    pub window: Option<usize>,
}

impl AdaptOpts {
    /// From the environment's values of [`ADAPT_VAR`] and [`INJECT_VAR`] (`LINK,CHUNK` or
    /// `LINK,CHUNK,WINDOW`): on for `1`; an injection that does not read as two or three
    /// positive numbers is ignored.
    pub fn from_env(adapt: Option<&str>, inject: Option<&str>) -> Option<AdaptOpts> {
        if adapt? != "1" {
            return None;
        }
        let numbers: Option<Vec<u64>> = inject.map(|v| {
            v.split(',')
                .map(|n| n.trim().parse::<u64>().ok().filter(|&n| n > 0))
                .collect::<Option<Vec<u64>>>()
                .unwrap_or_default()
        });
        Some(match numbers.as_deref() {
            Some(&[l, c]) => AdaptOpts {
                inject: Some((l, c)),
                window: None,
            },
            Some(&[l, c, w]) => AdaptOpts {
                inject: Some((l, c)),
                window: usize::try_from(w).ok().map(|w| w.min(MAX_WINDOW)),
            },
            _ => AdaptOpts::default(),
        })
    }

    /// The `n`th snapshot (from 1) the test hook makes up.
    pub fn injected(&self, n: u32) -> Option<Snapshot> {
        let (link, chunk) = self.inject?;
        let at = MIN_INTERVAL * n;
        let secs = at.as_secs_f64();
        Some(Snapshot {
            at,
            received: (link as f64 * secs) as u64,
            chunked: (chunk as f64 * secs).max(MIN_CHUNKED as f64) as u64,
            chunking: at,
        })
    }
}

/// The fewest delta exchanges a receiver keeps asked for at once.
pub const MIN_WINDOW: usize = 8;
/// The most.
pub const MAX_WINDOW: usize = 4096;

/// How many delta exchanges to keep asked for at once: enough for every core (`cores`) to
/// chunk, and for the files in flight to fill the link's bandwidth-delay product twice over
/// (`bdp`, from the `tune` capability, 0 if unknown; `mean_size`, the delta files' mean
/// size), within [`MIN_WINDOW`]..=[`MAX_WINDOW`].
pub fn request_window(bdp: u64, mean_size: u64, cores: usize) -> usize {
    let for_link = (bdp.saturating_mul(2) / mean_size.max(1)).min(MAX_WINDOW as u64) as usize;
    (cores.saturating_mul(4))
        .max(for_link)
        .clamp(MIN_WINDOW, MAX_WINDOW)
}

/// How the files not yet asked for are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Merkle CDC delta against the old version.
    Delta,
    /// The whole file.
    Whole,
}

/// One look at the transfer in progress, counted from its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Since the transfer began.
    pub at: Duration,
    /// Bytes read from the peer.
    pub received: u64,
    /// Bytes of old versions this side chunked and hashed.
    pub chunked: u64,
    /// The wall time this side spent chunking and hashing them.
    pub chunking: Duration,
}

/// The shortest interval whose rates count.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// The fewest bytes read in an interval for its delivery rate to count (less is latency).
pub const MIN_BYTES: u64 = 1 << 20;
/// The fewest bytes chunked for this side's chunking rate to count.
pub const MIN_CHUNKED: u64 = 4 << 20;
/// How much faster one side must be before the variant changes (hysteresis).
pub const MARGIN: f64 = 1.5;
/// How many intervals in a row must agree before the variant changes.
pub const STREAK: u32 = 2;

/// What two snapshots say, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Bytes read from the peer per second (`None`: too short, or too little moved).
    pub delivery: Option<u64>,
    /// This side's chunking rate so far (`None`: too little chunked yet).
    pub chunking: Option<u64>,
}

fn rate(bytes: u64, time: Duration) -> u64 {
    (bytes as f64 / time.as_secs_f64().max(1e-6)) as u64
}

impl Interval {
    /// From `before` to `now` (this side's chunking rate over the whole run so far: it is
    /// taken in bursts, file by file).
    pub fn between(before: &Snapshot, now: &Snapshot) -> Interval {
        let span = now.at.saturating_sub(before.at);
        let read = now.received.saturating_sub(before.received);
        Interval {
            delivery: (span >= MIN_INTERVAL && read >= MIN_BYTES).then(|| rate(read, span)),
            chunking: (now.chunked >= MIN_CHUNKED && !now.chunking.is_zero())
                .then(|| rate(now.chunked, now.chunking)),
        }
    }
}

/// The decision over a run: the variant now, and how many intervals in a row argued for the
/// other one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    current: Variant,
    /// What negotiation knew of the link's rate (memory, a handshake), bytes per second.
    link: Option<u64>,
    /// The peer's chunking rate from its hello.
    peer_chunking: Option<u64>,
    last: Snapshot,
    streak: u32,
}

impl Adapter {
    /// Starting with `current`, the link's rate as negotiation knew it and the peer's
    /// chunking rate (its hello's `cpu`), each if known.
    pub fn new(current: Variant, link: Option<u64>, peer_chunking: Option<u64>) -> Adapter {
        Adapter {
            current,
            link: link.filter(|&r| r > 0),
            peer_chunking: peer_chunking.filter(|&r| r > 0),
            last: Snapshot::default(),
            streak: 0,
        }
    }

    /// The variant now.
    pub fn current(&self) -> Variant {
        self.current
    }

    /// Take `now` into account; a change of variant, with its reason, when it happens.
    /// Snapshots whose interval says nothing are skipped (the next one is measured from the
    /// last that counted).
    pub fn observe(&mut self, now: Snapshot) -> Option<Decision<Variant>> {
        if now.at.saturating_sub(self.last.at) < MIN_INTERVAL {
            return None;
        }
        let iv = Interval::between(&self.last, &now);
        self.last = now;
        // The chunking rate: the slower end's (both ends cut chunks for a delta).
        let chunking = match (iv.chunking, self.peer_chunking) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let (argues, link) = match self.current {
            Variant::Delta => {
                let link = iv.delivery.max(self.link);
                (
                    link.is_some_and(|l| l as f64 > chunking as f64 * MARGIN),
                    link,
                )
            }
            Variant::Whole => (
                iv.delivery
                    .is_some_and(|d| (d as f64) * MARGIN < chunking as f64),
                iv.delivery,
            ),
        };
        if !argues {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < STREAK {
            return None;
        }
        self.streak = 0;
        let link = per_sec(link.unwrap_or_default());
        let chunking = per_sec(chunking);
        let (to, reason) = match self.current {
            Variant::Delta => (
                Variant::Whole,
                format!(
                    "the link carries {link}, more than chunking and hashing ({chunking}): \
                     the files not yet asked for go whole"
                ),
            ),
            Variant::Whole => (
                Variant::Delta,
                format!(
                    "the link's rate fell to {link}, below chunking and hashing ({chunking}): \
                     the files not yet asked for go by delta"
                ),
            ),
        };
        self.current = to;
        Some(Decision::new(to, reason))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MB: u64 = 1_000_000;

    /// A snapshot at `ms`, `received` and `chunked` MB read and chunked, chunking having taken
    /// `chunking_ms`.
    fn snap(ms: u64, received: u64, chunked: u64, chunking_ms: u64) -> Snapshot {
        Snapshot {
            at: Duration::from_millis(ms),
            received: received * MB,
            chunked: chunked * MB,
            chunking: Duration::from_millis(chunking_ms),
        }
    }

    /// Every decision `a` makes on `snaps`, with the index of the snapshot that made it.
    fn run(a: &mut Adapter, snaps: &[Snapshot]) -> Vec<(usize, Variant)> {
        snaps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| a.observe(*s).map(|d| (i, d.choice)))
            .collect()
    }

    #[test]
    fn the_switch_and_its_hook_from_the_environment() {
        assert_eq!(AdaptOpts::from_env(None, Some("1,2")), None);
        assert_eq!(AdaptOpts::from_env(Some("0"), None), None);
        assert_eq!(
            AdaptOpts::from_env(Some("1"), None),
            Some(AdaptOpts::default())
        );
        assert_eq!(
            AdaptOpts::from_env(Some("1"), Some("1000000000, 100000000")),
            Some(AdaptOpts {
                inject: Some((1_000_000_000, 100_000_000)),
                window: None,
            })
        );
        assert_eq!(
            AdaptOpts::from_env(Some("1"), Some("10,5,99999")),
            Some(AdaptOpts {
                inject: Some((10, 5)),
                window: Some(MAX_WINDOW),
            })
        );
        for bad in ["", "1", "a,b", "0,5", "5,0", "-1,5", "1,2,3,4", "1,2,0"] {
            assert_eq!(
                AdaptOpts::from_env(Some("1"), Some(bad)).unwrap().inject,
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_hook_switches_after_a_streak_of_injected_snapshots() {
        let hook = AdaptOpts {
            inject: Some((1_000 * MB, 100 * MB)),
            window: None,
        };
        let mut a = Adapter::new(Variant::Delta, None, None);
        let got: Vec<Option<Variant>> = (1..=3)
            .map(|n| a.observe(hook.injected(n).unwrap()).map(|d| d.choice))
            .collect();
        assert_eq!(got, [None, Some(Variant::Whole), None]);
        assert_eq!(AdaptOpts::default().injected(1), None);
    }

    #[test]
    fn the_window_fills_the_cores_and_the_link() {
        // Two cores, nothing known of the link: the floor.
        assert_eq!(request_window(0, 10_000, 2), MIN_WINDOW);
        assert_eq!(request_window(0, 10_000, 16), 64);
        // A 6.25 MB BDP (1 Gbit/s, 50 ms) of 10 KB files: 1,250 of them.
        assert_eq!(request_window(6_250_000, 10_000, 2), 1_250);
        // Large files: the cores decide.
        assert_eq!(request_window(6_250_000, 1 << 30, 2), MIN_WINDOW);
        assert_eq!(request_window(u64::MAX, 0, 2), MAX_WINDOW);
    }

    #[test]
    fn intervals_too_short_or_too_light_say_nothing() {
        let a = snap(0, 0, 0, 0);
        assert_eq!(Interval::between(&a, &snap(100, 50, 0, 0)).delivery, None);
        assert_eq!(Interval::between(&a, &snap(500, 0, 0, 0)).delivery, None);
        assert_eq!(
            Interval::between(&a, &snap(500, 50, 0, 0)).delivery,
            Some(100 * MB)
        );
        assert_eq!(Interval::between(&a, &snap(500, 50, 3, 10)).chunking, None);
        assert_eq!(
            Interval::between(&a, &snap(500, 50, 40, 100)).chunking,
            Some(400 * MB)
        );
    }

    #[test]
    fn a_link_faster_than_chunking_turns_the_rest_whole_after_a_streak() {
        // Recorded on the loopback (a link of 1.2 GB/s known from the memory; the receiver
        // chunking at 400 MB/s): the delta moves little, the link stays fast.
        let mut a = Adapter::new(Variant::Delta, Some(1_200 * MB), None);
        let snaps = [
            snap(250, 2, 100, 250),
            snap(500, 4, 200, 500),
            snap(750, 6, 300, 750),
        ];
        assert_eq!(run(&mut a, &snaps), [(1, Variant::Whole)]);
        assert_eq!(a.current(), Variant::Whole);
    }

    #[test]
    fn the_reason_names_both_rates() {
        let mut a = Adapter::new(Variant::Delta, Some(1_200 * MB), Some(300 * MB));
        assert_eq!(a.observe(snap(250, 2, 100, 250)), None);
        let d = a.observe(snap(500, 4, 200, 500)).unwrap();
        assert_eq!(d.choice, Variant::Whole);
        assert_eq!(
            d.reason,
            "the link carries 1.2 GB/s, more than chunking and hashing (300.0 MB/s): the \
             files not yet asked for go whole"
        );
    }

    #[test]
    fn a_slow_link_keeps_the_delta() {
        // The WAN: 12.5 MB/s, chunking at 400 MB/s.
        let mut a = Adapter::new(Variant::Delta, Some(12_500_000), Some(500 * MB));
        let snaps: Vec<Snapshot> = (1..20)
            .map(|i| snap(i * 250, i * 3, i * 100, i * 250))
            .collect();
        assert_eq!(run(&mut a, &snaps), []);
        assert_eq!(a.current(), Variant::Delta);
    }

    #[test]
    fn one_fast_interval_is_not_a_streak() {
        // Unknown link; one burst delivered at 800 MB/s between slow ones.
        let mut a = Adapter::new(Variant::Delta, None, Some(300 * MB));
        let snaps = [
            snap(250, 5, 0, 0),
            snap(500, 205, 0, 0),
            snap(750, 210, 0, 0),
            snap(1000, 215, 0, 0),
        ];
        assert_eq!(run(&mut a, &snaps), []);
        // Two bursts in a row are.
        let snaps = [snap(1250, 415, 0, 0), snap(1500, 615, 0, 0)];
        assert_eq!(run(&mut a, &snaps), [(1, Variant::Whole)]);
    }

    #[test]
    fn a_collapsing_rate_turns_whole_files_back_to_the_delta() {
        // Whole files at 250 MB/s, chunking at 300 MB/s (within the margin: stays), then the
        // link falls to 10 MB/s.
        let mut a = Adapter::new(Variant::Whole, None, Some(300 * MB));
        let snaps = [
            snap(500, 125, 0, 0),
            snap(1000, 250, 0, 0),
            snap(1500, 375, 0, 0),
            snap(2000, 380, 0, 0),
            snap(2500, 385, 0, 0),
            snap(3000, 390, 0, 0),
        ];
        assert_eq!(run(&mut a, &snaps), [(4, Variant::Delta)]);
        assert_eq!(
            a.current(),
            Variant::Delta,
            "and the prior does not pull it back: no link rate known"
        );
    }

    #[test]
    fn whole_with_a_stalled_interval_stays_whole() {
        // An interval that moved almost nothing (a pause, a large file being written) is
        // not a collapse: it says nothing.
        let mut a = Adapter::new(Variant::Whole, None, Some(300 * MB));
        let snaps = [snap(500, 0, 0, 0), snap(1000, 0, 0, 0), snap(1500, 0, 0, 0)];
        assert_eq!(run(&mut a, &snaps), []);
    }

    #[test]
    fn without_a_chunking_rate_nothing_changes() {
        let mut a = Adapter::new(Variant::Delta, Some(10_000 * MB), None);
        let snaps: Vec<Snapshot> = (1..10).map(|i| snap(i * 250, i * 100, 1, 1)).collect();
        assert_eq!(run(&mut a, &snaps), []);
    }

    #[test]
    fn the_slower_ends_chunking_counts() {
        // This side chunks at 2 GB/s, the peer at 200 MB/s; a 1 GB/s link outruns the peer.
        let mut a = Adapter::new(Variant::Delta, Some(1_000 * MB), Some(200 * MB));
        let snaps = [snap(250, 2, 500, 250), snap(500, 4, 1000, 500)];
        assert_eq!(run(&mut a, &snaps), [(1, Variant::Whole)]);
    }

    #[test]
    fn snapshots_closer_than_the_interval_are_skipped() {
        let mut a = Adapter::new(Variant::Delta, Some(1_200 * MB), Some(300 * MB));
        assert_eq!(a.observe(snap(250, 2, 0, 0)), None);
        // 50 ms later: neither counts nor resets.
        assert_eq!(a.observe(snap(300, 2, 0, 0)), None);
        assert_eq!(
            a.observe(snap(500, 4, 0, 0)).map(|d| d.choice),
            Some(Variant::Whole)
        );
    }
}
