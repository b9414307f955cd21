//! The transport bench harness (issue 7): every transport and `rsync -a` over OpenSSH, on
//! workloads × links (loopback, or a link emulated by [`super::linkem`]), with the servers
//! (sshd — and through it the remote arsync or rsync — and `arsync serve`) in the far
//! namespace and the clients in the near one.
//!
//! Owns the workloads, the contenders, the measurement of one row and the table/CSV; the
//! chart is [`super::chart`]'s, the link is [`super::linkem`]'s. Used by
//! `benches/transports.rs` (the full matrix, options to pick rows) and by
//! `tests/bench_harness.rs` (the `--quick` run CI makes, proving the harness works). Rows are
//! written to the table and CSV as they are measured, so a long run that stops part-way keeps
//! what it measured.

#![allow(clippy::unwrap_used, dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::cpu::{busy, own_cpu};
use super::linkem::{Link, LinkProfile, Side, FAR_ADDR, FAT_WAN, LAN, LOSSY, WAN};
use super::sshd::Sshd;
use super::{pseudo_random, stamp_tree};

/// What is synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Many 10 KiB files into an empty destination.
    SmallFresh,
    /// One large file into an empty destination.
    BigFresh,
    /// One large file over an old copy with 0.1 % changed in scattered 4 KiB pieces.
    BigScattered,
    /// One large file over an old copy missing its first byte.
    BigInsert,
    /// Many files, all already there.
    Unchanged,
    /// A release upgrade: the generated corpus (`super::corpus`) version B over a destination
    /// holding version A, `--delete`: hash-suffixed names that change, shared content under
    /// new names, moves, growth, shrinkage, deletions, big binaries with local edits.
    Upgrade,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 6] = [
        Workload::SmallFresh,
        Workload::BigFresh,
        Workload::BigScattered,
        Workload::BigInsert,
        Workload::Unchanged,
        Workload::Upgrade,
    ];

    /// Its name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Workload::SmallFresh => "small",
            Workload::BigFresh => "big",
            Workload::BigScattered => "scattered",
            Workload::BigInsert => "insert",
            Workload::Unchanged => "unchanged",
            Workload::Upgrade => "upgrade",
        }
    }
}

/// How big the workloads are.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// The large file.
    pub big: usize,
    /// How many small files.
    pub files: usize,
    /// The generated release pair of the upgrade workload.
    pub upgrade: super::corpus::Scale,
}

impl Sizes {
    /// The sizes.
    pub const FULL: Sizes = Sizes {
        big: 1 << 30,
        files: 10_000,
        upgrade: super::corpus::Scale::Large,
    };
    /// Small enough for CI.
    pub const QUICK: Sizes = Sizes {
        big: 8 << 20,
        files: 300,
        upgrade: super::corpus::Scale::Tiny,
    };

    /// What a link can carry in reasonable time: TCP over 1 % loss × 50 ms runs at a few
    /// Mbit/s (Mathis), so a lossy link gets at most 64 MiB and 1,000 files.
    pub fn for_link(self, link: Option<&LinkProfile>) -> Sizes {
        match link {
            Some(p) if p.loss > 0.0 => Sizes {
                big: self.big.min(64 << 20),
                files: self.files.min(1000),
                upgrade: match self.upgrade {
                    super::corpus::Scale::Large => super::corpus::Scale::Small,
                    s => s,
                },
            },
            _ => self,
        }
    }

    fn label(&self, w: Workload) -> String {
        let big = if self.big >= 1 << 30 {
            format!("{} GiB", self.big >> 30)
        } else {
            format!("{} MiB", self.big >> 20)
        };
        match w {
            Workload::SmallFresh => format!("{} × 10 KiB fresh", self.files),
            Workload::BigFresh => format!("{big} fresh"),
            Workload::BigScattered => format!("{big}, 0.1 % scattered changes"),
            Workload::BigInsert => format!("{big}, one byte inserted at the front"),
            Workload::Unchanged => format!("{} files unchanged", self.files),
            Workload::Upgrade => format!("release upgrade ({} corpus)", self.upgrade.key()),
        }
    }
}

/// How a contender names its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `HOST:PATH` through the remote shell.
    Ssh,
    /// `arsync://HOST:PORT/bench/REL` of the `arsync serve` in the far namespace.
    Serve,
    /// No sync at all: `ssh HOST true`, the floor a remote-shell login sets.
    LoginOnly,
}

/// A contender: a name and how it is run (the program, then arguments before SRC DEST).
#[derive(Debug, Clone)]
pub struct Contender {
    /// For the table.
    pub name: String,
    /// Its key on the command line.
    pub key: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    target: Target,
}

/// The contender keys in table order: `rsync -a` over OpenSSH, arsync over every remote
/// transport in its registry (ssh native and system, ssh-pool, quic over the SSH bootstrap,
/// quic to `arsync serve`, TLS over MPTCP to it, HTTP/3 to it, auto), the login alone (only
/// for the unchanged workload), and TLS and HTTP/2 to `arsync serve`.
pub const CONTENDERS: [&str; 12] = [
    "rsync",
    "ssh",
    "ssh-system",
    "ssh-pool",
    "quic",
    "serve",
    // Issue 17, mptcp:
    "serve-mptcp",
    // Issue 17, h3:
    "serve-h3",
    "auto",
    "login",
    // Issue 17, h2: TLS over plain TCP, and HTTP/2 over it, to the same daemon.
    "serve-tls",
    "serve-h2",
];

/// Every contender, for a remote shell `rsh` and a serve token.
fn contenders(arsync: &Path, rsh: &str, serve: &ServeInfo) -> Vec<Contender> {
    let arsync_over = |target: Target, key: &str, name: &str, extra: &[&str]| {
        let mut args = vec!["-a".to_owned()];
        if target == Target::Ssh {
            args.push(format!("--rsh={rsh}"));
            args.push(format!("--rsync-path={}", arsync.display()));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        // Options to try on every arsync contender (tuning: `ARSYNC_BENCH_ARGS="--tree-levels=0"`).
        if let Ok(more) = std::env::var("ARSYNC_BENCH_ARGS") {
            args.extend(more.split_whitespace().map(str::to_owned));
        }
        Contender {
            name: name.into(),
            key: key.into(),
            program: arsync.to_path_buf(),
            args,
            env: Vec::new(),
            target,
        }
    };
    let a = |key: &str, name: &str, extra: &[&str]| arsync_over(Target::Ssh, key, name, extra);
    let mut serve_client = arsync_over(
        Target::Serve,
        "serve",
        "arsync:// to arsync serve, quic × 4",
        &["--streams=4"],
    );
    serve_client.env = vec![
        ("ARSYNC_TOKEN".into(), serve.token.clone()),
        (
            "XDG_CONFIG_HOME".into(),
            serve.client_config.display().to_string(),
        ),
    ];
    // Issue 17, mptcp: the same daemon over TLS on its TCP port, an MPTCP connection.
    let mut serve_mptcp = arsync_over(
        Target::Serve,
        "serve-mptcp",
        "arsync:// to arsync serve, TLS over MPTCP",
        &["--transport=mptcp"],
    );
    serve_mptcp.env = serve_client.env.clone();
    // Issue 17, h2: the same daemon over TLS on plain TCP, and over HTTP/2 (a stream a lane).
    let over_tcp = |key: &str, name: &str, extra: &[&str]| {
        let mut c = arsync_over(Target::Serve, key, name, extra);
        c.env = serve_client.env.clone();
        c
    };
    let serve_tls = over_tcp(
        "serve-tls",
        "arsync:// to arsync serve, TLS",
        &["--transport=tls"],
    );
    let serve_h2 = over_tcp(
        "serve-h2",
        "arsync:// to arsync serve, HTTP/2 × 4",
        &["--transport=h2", "--streams=4"],
    );
    // Issue 17, h3: the same daemon over HTTP/3 on its UDP port.
    let mut serve_h3 = arsync_over(
        Target::Serve,
        "serve-h3",
        "arsync:// to arsync serve, HTTP/3 × 4",
        &["--transport=h3", "--streams=4"],
    );
    serve_h3.env = serve_client.env.clone();
    let mut words = rsh.split_whitespace();
    let login = Contender {
        name: "(ssh login alone: `ssh host true`)".into(),
        key: "login".into(),
        program: words.next().unwrap_or("ssh").into(),
        args: words.map(str::to_owned).collect(),
        env: Vec::new(),
        target: Target::LoginOnly,
    };
    vec![
        Contender {
            name: "rsync -a over OpenSSH".into(),
            key: "rsync".into(),
            program: "rsync".into(),
            args: vec!["-a".into(), "-e".into(), rsh.into()],
            env: Vec::new(),
            target: Target::Ssh,
        },
        a(
            "ssh",
            "arsync ssh (native)",
            &["--transport=ssh", "--ssh=native"],
        ),
        a(
            "ssh-system",
            "arsync ssh (OpenSSH client)",
            &["--transport=ssh", "--ssh=system"],
        ),
        a(
            "ssh-pool",
            "arsync ssh-pool × 4",
            &["--transport=ssh-pool", "--streams=4", "--ssh=native"],
        ),
        a(
            "quic",
            "arsync quic × 4 (ssh bootstrap)",
            &["--transport=quic", "--streams=4", "--ssh=native"],
        ),
        serve_client,
        serve_mptcp,
        serve_h3,
        // Issue 16, native login: the defaults, as a user types them (`--ssh=auto`).
        a("auto", "arsync --transport=auto", &["--transport=auto"]),
        login,
        serve_tls,
        serve_h2,
    ]
}

/// The link profiles of the suite, by key; `None` is loopback (no emulator, no namespaces).
pub fn profiles() -> Vec<(&'static str, Option<LinkProfile>)> {
    vec![
        ("loopback", None),
        ("lan", Some(LAN)),
        ("wan", Some(WAN)),
        ("fatwan", Some(FAT_WAN)),
        ("lossy", Some(LOSSY)),
    ]
}

/// One measured row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Link profile name.
    pub profile: String,
    /// Workload label.
    pub workload: String,
    /// Workload key (`small`, `big`, `scattered`, `insert`, `unchanged`).
    pub workload_key: String,
    /// Contender name.
    pub contender: String,
    /// Wall time.
    pub time: Duration,
    /// The size of what is synced (all files; the table's throughput is this over the time).
    pub payload: u64,
    /// Bytes on the wire, both directions (loopback: what `lo` carried, other traffic too).
    pub wire: u64,
    /// Bytes on the emulated wire in the busier direction (loopback: unknown).
    pub wire_peak: Option<u64>,
    /// Busy CPU seconds of the whole machine, less the emulator's.
    pub cpu: f64,
    /// CPU seconds the link emulator (this process's forwarder threads) spent.
    pub emulator_cpu: f64,
    /// The link's rate, bits per second (loopback: none).
    pub rate_bps: Option<u64>,
    /// The link's round-trip time (loopback: none).
    pub rtt: Option<Duration>,
    /// Time ÷ rsync's time on the same link and workload (1 when rsync was not run).
    pub vs_rsync: f64,
}

impl Row {
    /// Whether the destination started empty (all of `payload` had to cross).
    pub fn fresh(&self) -> bool {
        matches!(self.workload_key.as_str(), "small" | "big")
    }

    /// Payload over time, bits per second.
    pub fn goodput_bps(&self) -> f64 {
        self.payload as f64 * 8.0 / self.time.as_secs_f64()
    }

    /// The busier direction's share of the link rate over the whole run.
    pub fn link_use(&self) -> Option<f64> {
        Some(self.wire_peak? as f64 * 8.0 / self.time.as_secs_f64() / self.rate_bps? as f64)
    }

    /// The time in round trips of the link.
    pub fn round_trips(&self) -> Option<f64> {
        Some(self.time.as_secs_f64() / self.rtt?.as_secs_f64())
    }
}

/// Where the sources live, built once per size.
struct Sources {
    big: PathBuf,
    big_scattered_old: PathBuf,
    big_insert_old: PathBuf,
    small: PathBuf,
    /// The upgrade's old release (the destination starts as a copy) and new one (the source).
    upgrade_old: PathBuf,
    upgrade_new: PathBuf,
}

/// The sources of the chosen workloads only (a 1 GiB file and its old copies are not written
/// for a run that syncs small files).
fn build_sources(dir: &Path, sizes: Sizes, workloads: &[Workload]) -> Sources {
    let wants = |w: Workload| workloads.contains(&w);
    let sources = Sources {
        big: dir.join("big"),
        big_scattered_old: dir.join("big-scattered-old"),
        big_insert_old: dir.join("big-insert-old"),
        small: dir.join("small"),
        upgrade_old: dir.join("upgrade/a"),
        upgrade_new: dir.join("upgrade/b"),
    };
    let _ = fs::remove_dir_all(dir);
    if wants(Workload::Upgrade) {
        let pair = super::corpus::generate_pair(
            &dir.join("upgrade"),
            &super::corpus::CorpusSpec {
                seed: 13,
                scale: sizes.upgrade,
            },
        );
        println!("upgrade corpus:\n{}", pair.summary);
    }
    if wants(Workload::BigFresh) || wants(Workload::BigScattered) || wants(Workload::BigInsert) {
        fs::create_dir_all(&sources.big).unwrap();
        let data = pseudo_random(sizes.big, 11);
        fs::write(sources.big.join("f"), &data).unwrap();
        stamp_tree(&sources.big, 1);
        // The old copies the update workloads start from.
        if wants(Workload::BigScattered) {
            let mut scattered = data.clone();
            let pieces = (sizes.big / 1000 / 4096).max(1);
            for i in 0..pieces {
                let at = (i * 7919 * 4096 + 12_345) % (sizes.big - 4096);
                for b in &mut scattered[at..at + 4096] {
                    *b ^= 0x5a;
                }
            }
            fs::create_dir_all(&sources.big_scattered_old).unwrap();
            fs::write(sources.big_scattered_old.join("f"), &scattered).unwrap();
        }
        if wants(Workload::BigInsert) {
            fs::create_dir_all(&sources.big_insert_old).unwrap();
            fs::write(sources.big_insert_old.join("f"), &data[1..]).unwrap();
        }
    }
    if wants(Workload::SmallFresh) || wants(Workload::Unchanged) {
        for i in 0..sizes.files {
            let d = sources.small.join(format!("d{}", i % 100));
            if i < 100 {
                fs::create_dir_all(&d).unwrap();
            }
            fs::write(d.join(format!("f{i}")), pseudo_random(10 << 10, i as u64)).unwrap();
        }
        stamp_tree(&sources.small, 2);
    }
    sources
}

/// The size of every regular file under `root`.
fn tree_bytes(root: &Path) -> u64 {
    super::snapshot(root)
        .values()
        .filter_map(|e| e.content.as_ref().map(|c| c.0.len() as u64))
        .sum()
}

/// A new ext4 filesystem in an image file, mounted on a row's destination for the row and
/// removed after it (root only; elsewhere the row runs where the scratch directory is).
struct FreshFs {
    mount: PathBuf,
    image: PathBuf,
}

impl FreshFs {
    fn mount(scratch: &Path, at: &Path, scale: super::corpus::Scale) -> Option<FreshFs> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let image = scratch.join("fresh-fs.img");
        let _ = fs::remove_file(&image);
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        let size = match scale {
            super::corpus::Scale::Tiny => "256M",
            super::corpus::Scale::Small => "1G",
            super::corpus::Scale::Large => "8G",
        };
        let made = ok(Command::new("truncate").arg("-s").arg(size).arg(&image))
            && ok(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
                .arg(&image))
            && ok(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(at));
        if !made {
            let _ = fs::remove_file(&image);
            return None;
        }
        Some(FreshFs {
            mount: at.to_path_buf(),
            image,
        })
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = fs::remove_file(&self.image);
    }
}

/// Copy a tree preserving times (`cp -a`).
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Profiles (key, link; `None` = loopback).
    pub profiles: Vec<(&'static str, Option<LinkProfile>)>,
    /// Contender keys (empty: all).
    pub contenders: Vec<String>,
    /// Sizes (capped per link by [`Sizes::for_link`]).
    pub sizes: Sizes,
    /// Scratch directory (sources, destinations, keys), removed by the caller.
    pub dir: PathBuf,
    /// Where `NAME.md`, `NAME.csv` (rewritten after every row) and the charts go.
    pub out: PathBuf,
    /// The file stem of the outputs.
    pub name: String,
    /// The arsync binary.
    pub arsync: PathBuf,
    /// Issue 16: runs of each cell; the row is the one of median time (1: one run).
    pub repeat: usize,
}

/// Loopback, or the emulated link's two namespaces.
struct Place {
    link: Option<Link>,
}

impl Place {
    fn far_addr(&self) -> &'static str {
        if self.link.is_some() {
            FAR_ADDR
        } else {
            "127.0.0.1"
        }
    }

    fn command(&self, side: Side, program: &Path) -> Command {
        match &self.link {
            Some(l) => l.command(side, program.to_str().unwrap()),
            None => Command::new(program),
        }
    }

    fn run_far<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match &self.link {
            Some(l) => l.run_in(Side::Far, f).join().unwrap(),
            None => f(),
        }
    }

    /// Bytes carried: (near → far, far → near) on an emulated link; (everything `lo`
    /// carried, 0) on loopback.
    fn wire(&self) -> (u64, u64) {
        match &self.link {
            Some(l) => l.wire_bytes(),
            None => {
                let n = fs::read_to_string("/sys/class/net/lo/statistics/tx_bytes")
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                (n, 0)
            }
        }
    }
}

/// The `arsync serve` in the far namespace: its daemon, the token and the client's pins.
struct ServeInfo {
    child: std::process::Child,
    port: u16,
    token: String,
    client_config: PathBuf,
}

impl Drop for ServeInfo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The order of `n` contenders in repeat `round`: round 0 as listed, then each round a
/// different step through the list from a different start (steps 1, n−1, 2, n−2, … that are
/// coprime with `n`, so every contender runs once), so that each one has other neighbours
/// from round to round, not only another place: a cyclic turn alone keeps every contender
/// right after the same one.
pub fn round_order(n: usize, round: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let steps: Vec<usize> = (1..n.max(2))
        .flat_map(|k| [k, n - k])
        .filter(|&s| s > 0 && gcd(s, n) == 1)
        .fold(Vec::new(), |mut v, s| {
            if !v.contains(&s) {
                v.push(s);
            }
            v
        });
    let step = steps.get(round % steps.len().max(1)).copied().unwrap_or(1);
    let start = round % n;
    (0..n).map(|i| (start + i * step) % n).collect()
}

/// Start `arsync serve` with one writable module `bench` at `root`, listening in the far
/// namespace; wait until it says it listens.
fn start_serve(place: &Place, arsync: &Path, root: &Path, state: &Path) -> ServeInfo {
    let _ = fs::remove_dir_all(state);
    fs::create_dir_all(state).unwrap();
    let port = place.run_far(|| {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let config = state.join("serve.toml");
    fs::write(
        &config,
        format!(
            "listen = [\"{}:{port}\"]\nstate_dir = {state:?}\n\n[module.bench]\npath = {root:?}\n",
            place.far_addr()
        ),
    )
    .unwrap();
    let out = Command::new(arsync)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["token", "add", "bench"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // Started from a thread inside the far network namespace (as sshd is), not through `ip
    // netns exec`, which would also give it a mount namespace of its own: it must see the
    // filesystems mounted later for the rows (see `FreshFs`).
    let (program, config_path) = (arsync.to_path_buf(), config.clone());
    let mut child = place.run_far(move || {
        Command::new(program)
            .args(["serve", "--config"])
            .arg(&config_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    });
    // Issue 17, mptcp: ready once the TCP listener (bound after UDP) is.
    let (_, ready) = super::follow_serve_log(child.stderr.take().unwrap());
    assert!(ready, "arsync serve did not start");
    ServeInfo {
        child,
        port,
        token,
        client_config: state.join("client-config"),
    }
}

/// Run the plan; every row, also written (after each row) to `NAME.md` and `NAME.csv` in
/// `plan.out`.
pub fn run(plan: &Plan) -> Vec<Row> {
    fs::create_dir_all(&plan.out).unwrap();
    let mut rows = Vec::new();
    let mut built: Option<(usize, usize, &str)> = None;
    // What each source looks like, taken once per build (each row's result is compared with it).
    let mut source_trees: std::collections::HashMap<PathBuf, super::Tree> = Default::default();
    let mut sources = None;
    for (key, profile) in &plan.profiles {
        let sizes = plan.sizes.for_link(profile.as_ref());
        if built != Some((sizes.big, sizes.files, sizes.upgrade.key())) {
            sources = Some(build_sources(&plan.dir.join("src"), sizes, &plan.workloads));
            built = Some((sizes.big, sizes.files, sizes.upgrade.key()));
            source_trees.clear();
        }
        let sources = sources.as_ref().unwrap();
        let place = Place {
            link: profile.map(|p| Link::start(p).expect("start the emulated link (needs root)")),
        };
        let profile_name = profile.map_or("loopback", |p| p.name);
        let keys = plan.dir.join(format!("keys-{key}"));
        let _ = fs::remove_dir_all(&keys);
        fs::create_dir_all(&keys).unwrap();
        // Issue 16, per-host memory: each link its own, kept across its rows (as a user's
        // repeated syncs to one host), never the user's ~/.cache.
        let host_memory = plan.dir.join(format!("host-memory-{key}"));
        let _ = fs::remove_dir_all(&host_memory);
        let far = place.far_addr();
        let sshd = {
            let keys = keys.clone();
            place.run_far(move || Sshd::start_on(&keys, far))
        };
        let serve = start_serve(
            &place,
            &plan.arsync,
            &plan.dir,
            &plan.dir.join(format!("serve-{key}")),
        );
        let all = contenders(&plan.arsync, &sshd.rsh(), &serve);
        let chosen: Vec<&Contender> = all
            .iter()
            .filter(|c| plan.contenders.is_empty() || plan.contenders.contains(&c.key))
            .collect();
        for &w in &plan.workloads {
            let mut rsync_time = None;
            let cells: Vec<&Contender> = chosen
                .iter()
                .copied()
                .filter(|c| c.target != Target::LoginOnly || w == Workload::Unchanged)
                .collect();
            // Issue 16: each cell `plan.repeat` times, the median time kept. The order changes
            // with each repeat (`round_order`), so no contender always runs first or right
            // after the same one (the disk's write-back of the previous row, the page cache
            // and a previous contender's server still closing favour some places).
            let mut samples: Vec<Vec<Row>> = cells.iter().map(|_| Vec::new()).collect();
            for round in 0..plan.repeat.max(1) {
                for at in round_order(cells.len(), round) {
                    let c = cells[at];
                    let rel = format!("dest-{key}-{}-{}", w.key(), c.key);
                    let dest = plan.dir.join(&rel);
                    let _ = fs::remove_dir_all(&dest);
                    fs::create_dir_all(&dest).unwrap();
                    // The upgrade writes tens of thousands of files: on a filesystem of its own,
                    // made for the row, so that no row pays for what an earlier one deleted (ext4
                    // slows down allocating inodes next to recently deleted ones).
                    let fresh_fs = (w == Workload::Upgrade)
                        .then(|| FreshFs::mount(&plan.dir, &dest, sizes.upgrade))
                        .flatten();
                    let small_bytes = (sizes.files * 10_240) as u64;
                    let big_bytes = sizes.big as u64;
                    let (src, payload) = match w {
                        Workload::SmallFresh => (&sources.small, small_bytes),
                        Workload::BigFresh => (&sources.big, big_bytes),
                        Workload::BigScattered => {
                            copy_tree(&sources.big_scattered_old, &dest);
                            (&sources.big, big_bytes)
                        }
                        Workload::BigInsert => {
                            copy_tree(&sources.big_insert_old, &dest);
                            (&sources.big, big_bytes)
                        }
                        Workload::Unchanged => {
                            copy_tree(&sources.small, &dest);
                            (&sources.small, small_bytes)
                        }
                        Workload::Upgrade => {
                            copy_tree(&sources.upgrade_old, &dest);
                            let bytes = tree_bytes(&sources.upgrade_new);
                            (&sources.upgrade_new, bytes)
                        }
                    };
                    // Settle the copy before the clock starts.
                    let _ = Command::new("sync").status();
                    let mut cmd = place.command(Side::Near, &c.program);
                    cmd.args(&c.args).envs(c.env.iter().cloned());
                    cmd.env("ARSYNC_CACHE_DIR", &host_memory); // Issue 16, per-host memory.
                    if w == Workload::Upgrade && c.target != Target::LoginOnly {
                        cmd.arg("--delete");
                    }
                    match c.target {
                        Target::Ssh => cmd
                            .arg(format!("{}/", src.display()))
                            .arg(format!("{far}:{}/", dest.display())),
                        Target::Serve => cmd
                            .arg(format!("{}/", src.display()))
                            .arg(format!("arsync://{far}:{}/bench/{rel}/", serve.port)),
                        Target::LoginOnly => cmd.args([far, "true"]),
                    };
                    let (w0, c0, e0) = (place.wire(), busy(), own_cpu());
                    let t0 = Instant::now();
                    let o = cmd.output().unwrap();
                    let time = t0.elapsed();
                    let (w1, c1, e1) = (place.wire(), busy(), own_cpu());
                    assert!(
                        o.status.success(),
                        "{} on {profile_name}: {}",
                        c.name,
                        String::from_utf8_lossy(&o.stderr)
                    );
                    // The result must be the source, whoever made it (`-a` without `-H` makes hard
                    // links copies).
                    let unlinked = |mut t: super::Tree| {
                        t.values_mut().for_each(|e| e.link_group = None);
                        t
                    };
                    super::assert_same_tree(
                        &format!("{} on {profile_name}", c.name),
                        "dest",
                        &unlinked(super::snapshot(&dest)),
                        "src",
                        source_trees
                            .entry(src.clone())
                            .or_insert_with(|| unlinked(super::snapshot(src))),
                    );
                    let emulator = e1.saturating_sub(e0).as_secs_f64();
                    let (out, back) = (w1.0 - w0.0, w1.1 - w0.1);
                    samples[at].push(Row {
                        profile: profile_name.into(),
                        workload: sizes.label(w),
                        workload_key: w.key().into(),
                        contender: c.name.clone(),
                        time,
                        payload: if c.target == Target::LoginOnly {
                            0
                        } else {
                            payload
                        },
                        wire: out + back,
                        wire_peak: place.link.as_ref().map(|_| out.max(back)),
                        cpu: (c1.saturating_sub(c0).as_secs_f64() - emulator).max(0.0),
                        emulator_cpu: emulator,
                        rate_bps: profile.map(|p| p.rate_bps),
                        rtt: profile.map(|p| p.rtt),
                        vs_rsync: f64::NAN,
                    });
                    // A row's own filesystem goes whole; a directory is emptied.
                    drop(fresh_fs);
                    let _ = fs::remove_dir_all(&dest);
                }
            }
            for (c, mut samples) in cells.iter().zip(samples) {
                samples.sort_by_key(|r| r.time);
                let mut row = samples.swap_remove(samples.len() / 2);
                let t = row.time.as_secs_f64();
                let base = if c.key == "rsync" {
                    *rsync_time.get_or_insert(t)
                } else {
                    rsync_time.unwrap_or(f64::NAN)
                };
                row.vs_rsync = t / base;
                rows.push(row);
                write_outputs(plan, &rows);
            }
        }
        drop(serve);
        drop(sshd);
        drop(place);
    }
    write_outputs(plan, &rows);
    rows
}

/// `NAME.md` and `NAME.csv` in `plan.out`.
fn write_outputs(plan: &Plan, rows: &[Row]) {
    fs::write(plan.out.join(format!("{}.md", plan.name)), markdown(rows)).unwrap();
    fs::write(plan.out.join(format!("{}.csv", plan.name)), csv(rows)).unwrap();
}

/// The table: time, throughput, link utilisation, wire bytes, CPU seconds, ratio to rsync,
/// and for nothing-changed rows the time in round trips of the link.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| link | workload | contender | time | throughput | link use | wire MB | CPU s | × rsync |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let t = r.time.as_secs_f64();
        let time = match r.round_trips() {
            Some(n) if r.workload_key == "unchanged" => format!("{t:.2} s ({n:.0} RTT)"),
            _ => format!("{t:.2} s"),
        };
        let dash = || "—".to_owned();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {time} | {} | {} | {:.1} | {:.2} | {} |",
            r.profile,
            r.workload,
            r.contender,
            if r.payload == 0 {
                dash()
            } else {
                format!("{:.1} Mbit/s", r.goodput_bps() / 1e6)
            },
            r.link_use()
                .map_or_else(dash, |u| format!("{:.0} %", 100.0 * u)),
            r.wire as f64 / 1e6,
            r.cpu,
            if r.vs_rsync.is_finite() {
                format!("{:.2}", r.vs_rsync)
            } else {
                dash()
            }
        );
    }
    s
}

const CSV_HEADER: &str =
    "link,workload,workload_key,contender,seconds,payload_bytes,fresh,wire_bytes,\
wire_bytes_busier_direction,cpu_seconds,emulator_cpu_seconds,link_bps,rtt_ms,vs_rsync";

/// The same rows as CSV (empty fields where a number does not apply).
pub fn csv(rows: &[Row]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        let _ = writeln!(
            s,
            "{:?},{:?},{},{:?},{:.4},{},{},{},{},{:.3},{:.3},{},{},{}",
            r.profile,
            r.workload,
            r.workload_key,
            r.contender,
            r.time.as_secs_f64(),
            r.payload,
            r.fresh(),
            r.wire,
            opt(r.wire_peak.map(|v| v.to_string())),
            r.cpu,
            r.emulator_cpu,
            opt(r.rate_bps.map(|v| v.to_string())),
            opt(r.rtt.map(|v| format!("{:.3}", v.as_secs_f64() * 1e3))),
            if r.vs_rsync.is_finite() {
                format!("{:.4}", r.vs_rsync)
            } else {
                String::new()
            }
        );
    }
    s
}

/// Rows back from [`csv`]'s text (to merge runs into one table and chart).
pub fn parse_csv(text: &str) -> Result<Vec<Row>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err("not a transports CSV (header differs)".into());
    }
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f = split_csv(line);
            if f.len() != 14 {
                return Err(format!("{} fields: {line}", f.len()));
            }
            let num = |i: usize| -> Result<f64, String> {
                f[i].parse().map_err(|e| format!("{e}: {line}"))
            };
            let opt = |i: usize| -> Result<Option<f64>, String> {
                if f[i].is_empty() {
                    Ok(None)
                } else {
                    num(i).map(Some)
                }
            };
            Ok(Row {
                profile: f[0].clone(),
                workload: f[1].clone(),
                workload_key: f[2].clone(),
                contender: f[3].clone(),
                time: Duration::from_secs_f64(num(4)?),
                payload: num(5)? as u64,
                wire: num(7)? as u64,
                wire_peak: opt(8)?.map(|v| v as u64),
                cpu: num(9)?,
                emulator_cpu: num(10)?,
                rate_bps: opt(11)?.map(|v| v as u64),
                rtt: opt(12)?.map(|v| Duration::from_secs_f64(v / 1e3)),
                vs_rsync: opt(13)?.unwrap_or(f64::NAN),
            })
        })
        .collect()
}

/// Fields of one CSV line whose text fields are Rust-quoted (`{:?}`).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for ch in line.chars() {
        let cur = fields.last_mut().unwrap();
        match ch {
            _ if escaped => {
                cur.push(ch);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => cur.push(ch),
        }
    }
    fields
}
