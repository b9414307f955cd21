//! Per-host memory: what negotiation learned about a host (UDP blocked or not, arsync there
//! or only rsync, an `arsync serve` port, RTT samples, a delivery rate), each fact with the
//! time it was learned and its expiry, so the next run does not pay for the same probe again
//! (above all the 3 s QUIC handshake that UDP blocked makes wait).
//!
//! Owns the facts ([`HostFacts`], [`Learned`]), the memory of all hosts ([`HostMemory`]),
//! its text format (versioned, line-based; a damaged or foreign file is ignored and rebuilt,
//! never an error), its bounds ([`MAX_HOSTS`], [`MAX_FILE_BYTES`]), what a run's
//! [`Observations`] teach it ([`HostFacts::learn`]), and the decisions a fresh fact allows
//! ([`udp_blocked`], [`only_rsync`]) — all pure: the time comes in as a [`UnixTime`].
//! Issue 16, little moved: also what the last run of the same paths moved ([`RunMoved`],
//! told apart by a [`PathsTag`]), which lets a long link's session stay on the SSH login's
//! channel (`decide::little_moved_channel`).
//!
//! Not here: where the file lives and reading or writing it (the binary's `host_memory`),
//! and the parameter decisions that read [`HostFacts::rtt`] and [`HostFacts::rate`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{Decision, Observations, QuicSeen, RemoteArsync};

#[cfg(test)]
mod tests;

/// The first line of the memory file; another first line means the file is not ours (or
/// another version) and is ignored.
pub const HEADER: &str = "arsync host memory 1";
/// How many hosts are remembered; past it the one learned about longest ago is forgotten.
pub const MAX_HOSTS: usize = 256;
/// How much of the file is read; a longer file is damaged or not ours and is ignored.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// The longest host key remembered.
pub const MAX_KEY_LEN: usize = 255;
/// The longest duration remembered (an RTT or a login time beyond it is not a sample).
pub const MAX_SAMPLE: Duration = Duration::from_secs(600);

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// UDP blocked: a day. Firewalls change seldom, and being wrong costs a day on the SSH login
/// instead of QUIC (still a correct sync); a laptop that moves to another network may learn
/// it again, or `--forget-host`.
pub const UDP_BLOCKED_FOR: u64 = DAY;
/// UDP gets through: a day (it only records; a handshake is made anyway).
pub const UDP_OK_FOR: u64 = DAY;
/// Only rsync on the host: an hour. Installing arsync there is deliberate and should take
/// effect soon; being right saves only one login.
pub const ONLY_RSYNC_FOR: u64 = HOUR;
/// arsync on the host: a day (it only records; the bootstrap login runs anyway).
pub const HAS_ARSYNC_FOR: u64 = DAY;
/// An `arsync serve` port: a week (a daemon's configuration changes seldom; a wrong port
/// fails fast).
pub const SERVE_PORT_FOR: u64 = 7 * DAY;
/// The host's chunking speed: a week (a machine's CPU changes seldom; its build may).
pub const REMOTE_CPU_FOR: u64 = 7 * DAY;
/// RTT and delivery-rate samples: a day. Links drift; they are only a starting point for
/// parameters that this run's own measurements replace.
pub const LINK_FOR: u64 = DAY;
/// Issue 16, little moved: what the last run of the same paths moved: a week, so that a
/// daily or a weekly backup finds it. Being wrong costs one run on the SSH channel instead of
/// QUIC (still a correct sync), and that run's own record replaces it.
pub const LAST_RUN_FOR: u64 = 7 * DAY;
/// Issue 16, little moved: how many runs (of different paths) are remembered per host; past
/// it the one learned longest ago is forgotten.
pub const MAX_RUNS: usize = 16;

/// Seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// `secs` later.
    pub fn plus(self, secs: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }
}

impl fmt::Display for UnixTime {
    /// `2026-12-06 18:10 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d, hour, min, _) = crate::cachedir::utc_date(self.0);
        write!(f, "{y:04}-{m:02}-{d:02} {hour:02}:{min:02} UTC")
    }
}

/// One fact, when it was learned and until when it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned<T> {
    /// The fact.
    pub value: T,
    /// When.
    pub learned: UnixTime,
    /// From then on it is forgotten.
    pub expires: UnixTime,
}

impl<T> Learned<T> {
    /// `value`, learned at `now`, holding for `secs`.
    pub fn new(value: T, now: UnixTime, secs: u64) -> Self {
        Learned {
            value,
            learned: now,
            expires: now.plus(secs),
        }
    }

    /// Whether it still holds at `now`.
    pub fn fresh(&self, now: UnixTime) -> bool {
        now < self.expires
    }

    /// `learned …, expires …` for `--explain`.
    pub fn dates(&self) -> String {
        format!("learned {}, expires {}", self.learned, self.expires)
    }

    /// `(learned …, expires …)`.
    pub fn when(&self) -> String {
        format!("({})", self.dates())
    }
}

/// Whether UDP got through to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpReach {
    /// The QUIC handshake timed out or failed: UDP does not get through.
    Blocked,
    /// A QUIC handshake finished.
    GetsThrough,
}

/// What the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// arsync (its bootstrap offer was seen).
    Arsync,
    /// Only rsync (the remote arsync command exited 127).
    OnlyRsync,
}

/// A measurement of the link taken from a finished session (QUIC's path statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSample {
    /// The smoothed round-trip time.
    pub rtt: Duration,
    /// Bytes per second delivered, if the session moved enough to tell.
    pub rate: Option<u64>,
}

/// How many bytes a session must move before its rate is a sample (less is mostly latency,
/// listing and hashing: a delta that moves a few MiB in seconds says little of the link).
pub const MIN_RATE_BYTES: u64 = 32 << 20;

impl LinkSample {
    /// A finished session's sample: its transport's smoothed `rtt`, and the delivery rate
    /// when it moved at least [`MIN_RATE_BYTES`] in `elapsed` — a lower bound, as the time
    /// includes the file list, hashing and the disk.
    pub fn from_session(rtt: Duration, bytes: u64, elapsed: Duration) -> LinkSample {
        let secs = elapsed.as_secs_f64();
        let rate = (bytes >= MIN_RATE_BYTES && secs >= 0.001).then(|| (bytes as f64 / secs) as u64);
        LinkSample { rtt, rate }
    }
}

impl fmt::Display for LinkSample {
    /// `RTT 12 ms, 3.1 MiB/s delivered`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RTT {}", super::millis(self.rtt))?;
        match self.rate {
            Some(r) => write!(
                f,
                ", {:.1} MiB/s delivered",
                r as f64 / f64::from(1u32 << 20)
            ),
            None => f.write_str(", too little moved to tell a rate"),
        }
    }
}

// Issue 16, little moved:
/// Which paths a run synced, as one number: the direction and both sides' paths, hashed. What
/// a run moved is remembered with its tag and recalled only for a run with the same tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathsTag(pub u64);

impl PathsTag {
    /// The tag of a pull (`pull`) or push between `local` and `remote` paths, as written.
    pub fn of<L: AsRef<str>, R: AsRef<str>>(pull: bool, local: &[L], remote: &[R]) -> PathsTag {
        let mut h = blake3::Hasher::new();
        h.update(if pull { b"pull" } else { b"push" });
        for (side, paths) in [
            (b'L', local.iter().map(AsRef::as_ref).collect::<Vec<&str>>()),
            (b'R', remote.iter().map(AsRef::as_ref).collect()),
        ] {
            for p in paths {
                // Each path framed by its side and length: no two lists hash alike by
                // concatenation.
                h.update(&[side]);
                h.update(&(p.len() as u64).to_le_bytes());
                h.update(p.as_bytes());
            }
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.finalize().as_bytes()[..8]);
        PathsTag(u64::from_le_bytes(first))
    }
}

/// What a finished run moved (issue 16, little moved), from its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunMoved {
    /// The run's paths.
    pub paths: PathsTag,
    /// Bytes on the wire, both ways (the file list, the trees, the data).
    pub wire_bytes: u64,
    /// Regular files whose data was sent.
    pub files_sent: u64,
    /// Regular files in the file list.
    pub files: u64,
    /// Sum of the regular files' sizes in the list.
    pub bytes: u64,
}

impl RunMoved {
    /// What a run of `paths` with these counters moved.
    pub fn from_stats(paths: PathsTag, stats: &crate::engine::stats::Stats) -> RunMoved {
        use std::sync::atomic::Ordering::Relaxed;
        RunMoved {
            paths,
            wire_bytes: stats
                .bytes_sent
                .load(Relaxed)
                .saturating_add(stats.bytes_received.load(Relaxed)),
            files_sent: stats.transferred.load(Relaxed),
            files: stats.files.regular(),
            bytes: stats.total_size.load(Relaxed),
        }
    }

    /// The value of its line in the file: `TAG/WIRE/SENT/FILES/BYTES` (the tag in hex).
    fn to_word(self) -> String {
        format!(
            "{:016x}/{}/{}/{}/{}",
            self.paths.0, self.wire_bytes, self.files_sent, self.files, self.bytes
        )
    }

    /// [`RunMoved::to_word`] read back; `None` for anything else.
    fn from_word(word: &str) -> Option<RunMoved> {
        let mut parts = word.split('/');
        let tag = parts.next().filter(|t| t.len() == 16)?;
        let paths = PathsTag(u64::from_str_radix(tag, 16).ok()?);
        let mut next = || parts.next()?.parse::<u64>().ok();
        let moved = RunMoved {
            paths,
            wire_bytes: next()?,
            files_sent: next()?,
            files: next()?,
            bytes: next()?,
        };
        (parts.next().is_none() && moved.files_sent <= moved.files).then_some(moved)
    }
}

impl fmt::Display for RunMoved {
    /// `12.0 KiB on the wire, 0 of 10000 files sent (97.7 MiB listed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on the wire, {} of {} files sent ({} listed)",
            super::params::bytes(self.wire_bytes),
            self.files_sent,
            self.files,
            super::params::bytes(self.bytes)
        )
    }
}

/// What is remembered of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Whether UDP gets through.
    pub udp: Option<Learned<UdpReach>>,
    /// arsync there, or only rsync.
    pub remote: Option<Learned<RemoteKind>>,
    /// The UDP port an `arsync serve` there listens on.
    pub serve_port: Option<Learned<u16>>,
    /// How long the SSH login took until the bootstrap offer (several round trips and the
    /// remote program's start).
    pub ssh_login: Option<Learned<Duration>>,
    /// How long the QUIC handshake took (about one round trip).
    pub quic_handshake: Option<Learned<Duration>>,
    /// The smoothed RTT a session measured (QUIC, or TLS over TCP/MPTCP from `TCP_INFO`).
    pub session_rtt: Option<Learned<Duration>>,
    /// Bytes per second a session delivered: the best of the sessions since it was learned
    /// ([`HostFacts::learn_link`]).
    pub rate: Option<Learned<u64>>,
    // Issue 16, remote CPU:
    /// How fast the host chunks, bytes per second (its hello's `cpu`).
    pub remote_chunking: Option<Learned<u64>>,
    // Issue 16, little moved:
    /// What the last runs to the host moved, one for each set of paths (at most
    /// [`MAX_RUNS`], oldest first).
    pub runs: Vec<Learned<RunMoved>>,
}

fn keep_fresh<T: Copy>(fact: &Option<Learned<T>>, now: UnixTime) -> Option<Learned<T>> {
    fact.filter(|l| l.fresh(now))
}

impl HostFacts {
    /// Only the facts that still hold at `now`.
    pub fn fresh(&self, now: UnixTime) -> HostFacts {
        HostFacts {
            udp: keep_fresh(&self.udp, now),
            remote: keep_fresh(&self.remote, now),
            serve_port: keep_fresh(&self.serve_port, now),
            ssh_login: keep_fresh(&self.ssh_login, now),
            quic_handshake: keep_fresh(&self.quic_handshake, now),
            session_rtt: keep_fresh(&self.session_rtt, now),
            rate: keep_fresh(&self.rate, now),
            remote_chunking: keep_fresh(&self.remote_chunking, now),
            runs: self.runs.iter().filter(|l| l.fresh(now)).copied().collect(),
        }
    }

    /// Issue 16, little moved: these facts for a run of `paths` — the last run's record only
    /// where it was a run of the same paths.
    pub fn for_paths(mut self, paths: PathsTag) -> HostFacts {
        self.runs.retain(|l| l.value.paths == paths);
        self
    }

    /// What the last run (of the paths [`HostFacts::for_paths`] kept) moved, and when it was
    /// learned.
    pub fn last_run(&self) -> Option<Learned<RunMoved>> {
        self.runs.last().copied()
    }

    /// A run that moved `moved`, learned at `now`: it replaces the one of the same paths; the
    /// oldest beyond [`MAX_RUNS`] is forgotten.
    fn learn_run(&mut self, moved: RunMoved, now: UnixTime) {
        self.runs.retain(|l| l.value.paths != moved.paths);
        self.runs.push(Learned::new(moved, now, LAST_RUN_FOR));
        self.runs.sort_by_key(|l| l.learned);
        let excess = self.runs.len().saturating_sub(MAX_RUNS);
        self.runs.drain(..excess);
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        *self == HostFacts::default()
    }

    /// The best remembered round-trip time: a session's smoothed RTT, else the QUIC
    /// handshake's time (about one round trip). The SSH login is not one: it takes several
    /// round trips and a program's start.
    pub fn rtt(&self) -> Option<Duration> {
        self.session_rtt.or(self.quic_handshake).map(|l| l.value)
    }

    /// The remembered delivery rate, bytes per second.
    pub fn rate(&self) -> Option<u64> {
        self.rate.map(|l| l.value)
    }

    /// How long the SSH login took.
    pub fn ssh_login(&self) -> Option<Duration> {
        self.ssh_login.map(|l| l.value)
    }

    /// Issue 16, remote CPU: how fast the host chunks, bytes per second.
    pub fn remote_chunking(&self) -> Option<u64> {
        self.remote_chunking.map(|l| l.value)
    }

    /// The remembered `arsync serve` port.
    pub fn serve_port(&self) -> Option<u16> {
        self.serve_port.map(|l| l.value)
    }

    /// When the newest fact was learned (what eviction keeps).
    fn newest(&self) -> UnixTime {
        [
            self.udp.map(|l| l.learned),
            self.remote.map(|l| l.learned),
            self.serve_port.map(|l| l.learned),
            self.ssh_login.map(|l| l.learned),
            self.quic_handshake.map(|l| l.learned),
            self.session_rtt.map(|l| l.learned),
            self.rate.map(|l| l.learned),
            self.remote_chunking.map(|l| l.learned),
            self.runs.iter().map(|l| l.learned).max(),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default()
    }

    /// What a run's probes showed replaces what was remembered (a remembered fact that
    /// proves wrong is corrected here).
    pub fn learn(&mut self, seen: &Observations, now: UnixTime) {
        match &seen.remote {
            Some(RemoteArsync::OffersQuic(offer)) => {
                self.remote = Some(Learned::new(RemoteKind::Arsync, now, HAS_ARSYNC_FOR));
                if offer.login_took <= MAX_SAMPLE {
                    self.ssh_login = Some(Learned::new(offer.login_took, now, LINK_FOR));
                }
            }
            Some(RemoteArsync::NotFound) => {
                self.remote = Some(Learned::new(RemoteKind::OnlyRsync, now, ONLY_RSYNC_FOR));
            }
            None => {}
        }
        match &seen.quic {
            Some(QuicSeen::Established { took, .. }) => {
                self.udp = Some(Learned::new(UdpReach::GetsThrough, now, UDP_OK_FOR));
                if *took <= MAX_SAMPLE {
                    self.quic_handshake = Some(Learned::new(*took, now, LINK_FOR));
                }
            }
            // As `decide::after_handshake` reads both: UDP does not get through.
            Some(QuicSeen::TimedOut { .. } | QuicSeen::Failed { .. }) => {
                self.udp = Some(Learned::new(UdpReach::Blocked, now, UDP_BLOCKED_FOR));
            }
            Some(QuicSeen::NoAddress { .. }) | None => {}
        }
        // Issue 16, remote CPU:
        if let Some(c) = seen.remote_cpu.filter(|&c| c > 0) {
            self.remote_chunking = Some(Learned::new(c, now, REMOTE_CPU_FOR));
        }
        // Issue 16, little moved:
        if let Some(moved) = seen.moved {
            self.learn_run(moved, now);
        }
    }

    /// A finished session's link measurement.
    pub fn learn_link(&mut self, sample: LinkSample, now: UnixTime) {
        if sample.rtt <= MAX_SAMPLE && !sample.rtt.is_zero() {
            self.session_rtt = Some(Learned::new(sample.rtt, now, LINK_FOR));
        }
        // The best a session delivered in the last day, not the last: a session's rate is a
        // lower bound (a delta or small files that keep the CPU busy deliver far less than
        // the link carries), and a slow one must not make the link look thin to the rules
        // that read it (`decide::window_fits_link` would send a big transfer to one SSH
        // window). A better sample replaces it at once; an expired one gives way to any.
        if let Some(rate) = sample.rate.filter(|r| *r > 0) {
            let better_kept = self.rate.filter(|old| old.fresh(now) && old.value >= rate);
            if better_kept.is_none() {
                self.rate = Some(Learned::new(rate, now, LINK_FOR));
            }
        }
    }

    /// An `arsync serve` answered on `port`.
    pub fn learn_serve_port(&mut self, port: u16, now: UnixTime) {
        self.serve_port = Some(Learned::new(port, now, SERVE_PORT_FOR));
    }

    /// The `--explain` lines (without `explain: `): `remembered: UDP to HOST blocked
    /// (learned …, expires …)`, one a fact.
    pub fn explain(&self, host: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line =
            |what: String, when: String| lines.push(format!("remembered: {what} {when}"));
        if let Some(l) = self.udp {
            let how = match l.value {
                UdpReach::Blocked => "blocked",
                UdpReach::GetsThrough => "gets through",
            };
            line(format!("UDP to {host} {how}"), l.when());
        }
        if let Some(l) = self.remote {
            let what = match l.value {
                RemoteKind::Arsync => "arsync",
                RemoteKind::OnlyRsync => "only rsync",
            };
            line(format!("{host} has {what}"), l.when());
        }
        if let Some(l) = self.serve_port {
            line(
                format!("arsync serve on {host}: UDP port {}", l.value),
                l.when(),
            );
        }
        for (what, fact) in [
            ("ssh login", self.ssh_login),
            ("QUIC handshake", self.quic_handshake),
            ("session RTT", self.session_rtt),
        ] {
            if let Some(l) = fact {
                line(
                    format!("{what} to {host} {}", super::millis(l.value)),
                    l.when(),
                );
            }
        }
        if let Some(l) = self.rate {
            let mib = l.value as f64 / f64::from(1u32 << 20);
            line(
                format!("delivery rate from {host} {mib:.1} MiB/s"),
                l.when(),
            );
        }
        if let Some(l) = self.remote_chunking {
            line(
                format!("{host} chunks {}", super::params::per_sec(l.value)),
                l.when(),
            );
        }
        // Issue 16, little moved:
        for l in &self.runs {
            line(
                format!("the last run to {host} of these paths moved {}", l.value),
                l.when(),
            );
        }
        lines
    }
}

/// `remembered: UDP blocked` (fresh facts only, as the driver loads them): an SSH login with
/// the plain server command carries the session at once, without the bootstrap and the QUIC
/// handshake.
pub fn udp_blocked(remembered: &HostFacts) -> Option<Decision<()>> {
    let l = remembered.udp.filter(|l| l.value == UdpReach::Blocked)?;
    Some(Decision::new(
        (),
        format!(
            "UDP blocked, remembered: {}; the QUIC handshake is not tried",
            l.dates()
        ),
    ))
}

/// `remembered: only rsync`: rsync's protocol at once, without the bootstrap login. Should
/// arsync have been installed since, this run still speaks rsync's protocol (a correct sync);
/// the fact expires within [`ONLY_RSYNC_FOR`].
pub fn only_rsync(remembered: &HostFacts) -> Option<Decision<()>> {
    let l = remembered
        .remote
        .filter(|l| l.value == RemoteKind::OnlyRsync)?;
    Some(Decision::new(
        (),
        format!(
            "the remote host has only rsync, remembered: {}; no bootstrap login",
            l.dates()
        ),
    ))
}

/// `[user@]host[:port]`: what a host is remembered under — the names as written (the remote
/// shell resolves them, perhaps through its own aliases), with the SSH port when the
/// command line names one. `None` when it cannot be a line of the file.
pub fn host_key(user: Option<&str>, host: &str, port: Option<u16>) -> Option<String> {
    let mut key = String::new();
    if let Some(u) = user {
        key.push_str(u);
        key.push('@');
    }
    key.push_str(host);
    if let Some(p) = port {
        key.push_str(&format!(":{p}"));
    }
    valid_key(&key).then_some(key)
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What was remembered of every host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMemory {
    hosts: BTreeMap<String, HostFacts>,
}

/// A memory read from text, and what of it was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// What could be read.
    pub memory: HostMemory,
    /// The file was not ours (another first line, or too long): all of it was ignored.
    pub foreign: bool,
    /// Lines that could not be read and were skipped.
    pub skipped: usize,
}

impl HostMemory {
    /// What is remembered of `key`, fresh or not.
    pub fn get(&self, key: &str) -> Option<&HostFacts> {
        self.hosts.get(key)
    }

    /// What still holds of `key` at `now`.
    pub fn fresh(&self, key: &str, now: UnixTime) -> HostFacts {
        self.hosts
            .get(key)
            .map(|f| f.fresh(now))
            .unwrap_or_default()
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// No host.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The facts of `key`, to learn into; `None` for a key that cannot be stored.
    pub fn entry(&mut self, key: &str) -> Option<&mut HostFacts> {
        valid_key(key).then(|| self.hosts.entry(key.to_owned()).or_default())
    }

    /// Forget `key`; whether anything was remembered.
    pub fn forget(&mut self, key: &str) -> bool {
        self.hosts.remove(key).is_some()
    }

    /// Drop what expired by `now`, then the hosts learned about longest ago beyond
    /// [`MAX_HOSTS`].
    pub fn prune(&mut self, now: UnixTime) {
        for facts in self.hosts.values_mut() {
            *facts = facts.fresh(now);
        }
        self.hosts.retain(|_, f| !f.is_empty());
        if self.hosts.len() > MAX_HOSTS {
            let mut by_age: Vec<(UnixTime, String)> = self
                .hosts
                .iter()
                .map(|(k, f)| (f.newest(), k.clone()))
                .collect();
            by_age.sort();
            let excess = self.hosts.len() - MAX_HOSTS;
            for (_, key) in by_age.into_iter().take(excess) {
                self.hosts.remove(&key);
            }
        }
    }

    /// Read the file's text. Never fails: a foreign file is ignored whole, a line that
    /// cannot be read is skipped; the caller rebuilds the file on its next store.
    pub fn parse(text: &str) -> Parsed {
        let mut parsed = Parsed {
            memory: HostMemory::default(),
            foreign: false,
            skipped: 0,
        };
        let mut lines = text.lines();
        if text.len() as u64 > MAX_FILE_BYTES || lines.next().map(str::trim_end) != Some(HEADER) {
            parsed.foreign = true;
            return parsed;
        }
        let mut current: Option<String> = None;
        for line in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split(' ').collect();
            let ok = match (words.as_slice(), &current) {
                (["host", key], _) if valid_key(key) => {
                    current = Some((*key).to_owned());
                    true
                }
                ([name, value, learned, expires], Some(key)) => {
                    let facts = parsed.memory.hosts.entry(key.clone()).or_default();
                    read_fact(facts, name, value, learned, expires)
                }
                _ => false,
            };
            if !ok {
                parsed.skipped += 1;
            }
        }
        parsed.memory.hosts.retain(|_, f| !f.is_empty());
        parsed
    }

    /// The file's text: [`HEADER`], then a `host KEY` line and one line a fact for each host.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{HEADER}\n# What arsync learned about each host (--explain shows it; \
             --forget-host or deleting this file forgets it).\n# FACT VALUE LEARNED EXPIRES \
             (seconds since 1970, UTC)\n"
        );
        for (key, f) in &self.hosts {
            out.push_str(&format!("host {key}\n"));
            let mut put = |name: &str, value: String, learned: UnixTime, expires: UnixTime| {
                out.push_str(&format!("{name} {value} {} {}\n", learned.0, expires.0));
            };
            if let Some(l) = f.udp {
                let v = match l.value {
                    UdpReach::Blocked => "blocked",
                    UdpReach::GetsThrough => "ok",
                };
                put("udp", v.into(), l.learned, l.expires);
            }
            if let Some(l) = f.remote {
                let v = match l.value {
                    RemoteKind::Arsync => "arsync",
                    RemoteKind::OnlyRsync => "rsync",
                };
                put("remote", v.into(), l.learned, l.expires);
            }
            if let Some(l) = f.serve_port {
                put("serve-port", l.value.to_string(), l.learned, l.expires);
            }
            for (name, fact) in [
                ("ssh-login-us", f.ssh_login),
                ("quic-handshake-us", f.quic_handshake),
                ("session-rtt-us", f.session_rtt),
            ] {
                if let Some(l) = fact {
                    put(name, l.value.as_micros().to_string(), l.learned, l.expires);
                }
            }
            for (name, fact) in [
                ("rate-bytes-per-s", f.rate),
                // Issue 16, remote CPU:
                ("chunking-bytes-per-s", f.remote_chunking),
            ] {
                if let Some(l) = fact {
                    put(name, l.value.to_string(), l.learned, l.expires);
                }
            }
            // Issue 16, little moved:
            for l in &f.runs {
                put("last-run", l.value.to_word(), l.learned, l.expires);
            }
        }
        out
    }
}

/// One fact line into `facts`; whether it could be read (an unknown name is skipped).
fn read_fact(facts: &mut HostFacts, name: &str, value: &str, learned: &str, expires: &str) -> bool {
    let (Ok(learned), Ok(expires)) = (learned.parse::<u64>(), expires.parse::<u64>()) else {
        return false;
    };
    let (learned, expires) = (UnixTime(learned), UnixTime(expires));
    fn stamped<T>(value: T, learned: UnixTime, expires: UnixTime) -> Option<Learned<T>> {
        Some(Learned {
            value,
            learned,
            expires,
        })
    }
    let micros = |v: &str| {
        v.parse::<u64>()
            .ok()
            .map(Duration::from_micros)
            .filter(|d| *d <= MAX_SAMPLE)
    };
    match name {
        "udp" => match value {
            "blocked" => facts.udp = stamped(UdpReach::Blocked, learned, expires),
            "ok" => facts.udp = stamped(UdpReach::GetsThrough, learned, expires),
            _ => return false,
        },
        "remote" => match value {
            "arsync" => facts.remote = stamped(RemoteKind::Arsync, learned, expires),
            "rsync" => facts.remote = stamped(RemoteKind::OnlyRsync, learned, expires),
            _ => return false,
        },
        "serve-port" => match value.parse::<u16>() {
            Ok(p) if p != 0 => facts.serve_port = stamped(p, learned, expires),
            _ => return false,
        },
        "ssh-login-us" | "quic-handshake-us" | "session-rtt-us" => {
            let Some(d) = micros(value) else {
                return false;
            };
            let slot = match name {
                "ssh-login-us" => &mut facts.ssh_login,
                "quic-handshake-us" => &mut facts.quic_handshake,
                _ => &mut facts.session_rtt,
            };
            *slot = stamped(d, learned, expires);
        }
        "rate-bytes-per-s" | "chunking-bytes-per-s" => match value.parse::<u64>() {
            Ok(r) if r > 0 => {
                let slot = match name {
                    "rate-bytes-per-s" => &mut facts.rate,
                    _ => &mut facts.remote_chunking,
                };
                *slot = stamped(r, learned, expires);
            }
            _ => return false,
        },
        // Issue 16, little moved:
        "last-run" => match RunMoved::from_word(value) {
            Some(moved) if facts.runs.len() < MAX_RUNS => {
                facts.runs.extend(stamped(moved, learned, expires))
            }
            Some(_) => return false,
            None => return false,
        },
        _ => return false,
    }
    true
}
