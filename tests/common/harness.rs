//! The transport bench harness (issue 7): every transport and `rsync -a` over OpenSSH, on
//! workloads × emulated links, with the servers (sshd, and through it the remote arsync or
//! rsync) in the far namespace and the clients in the near one.
//!
//! Used by `benches/transports.rs` (the full matrix, options to pick rows) and by
//! `tests/bench_harness.rs` (the `--quick` run CI makes, proving the harness works). Writes a
//! markdown table and a CSV under the output directory; prints the table.

#![allow(clippy::unwrap_used, dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::cpu::busy;
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
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 5] = [
        Workload::SmallFresh,
        Workload::BigFresh,
        Workload::BigScattered,
        Workload::BigInsert,
        Workload::Unchanged,
    ];

    /// Its name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Workload::SmallFresh => "small",
            Workload::BigFresh => "big",
            Workload::BigScattered => "scattered",
            Workload::BigInsert => "insert",
            Workload::Unchanged => "unchanged",
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
}

impl Sizes {
    /// The sizes.
    pub const FULL: Sizes = Sizes {
        big: 1 << 30,
        files: 10_000,
    };
    /// Small enough for CI.
    pub const QUICK: Sizes = Sizes {
        big: 8 << 20,
        files: 300,
    };

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
        }
    }
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
}

/// `rsync -a` over OpenSSH, and arsync over every remote transport in its registry.
pub fn contenders(arsync: &Path, rsh: &str) -> Vec<Contender> {
    let a = |key: &str, name: &str, extra: &[&str]| {
        let mut args = vec![
            "-a".to_owned(),
            format!("--rsh={rsh}"),
            format!("--rsync-path={}", arsync.display()),
            "--ssh=native".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Contender {
            name: name.into(),
            key: key.into(),
            program: arsync.to_path_buf(),
            args,
        }
    };
    vec![
        Contender {
            name: "rsync -a over OpenSSH".into(),
            key: "rsync".into(),
            program: "rsync".into(),
            args: vec!["-a".into(), "-e".into(), rsh.into()],
        },
        a("ssh", "arsync ssh (native)", &["--transport=ssh"]),
        a(
            "ssh-pool",
            "arsync ssh-pool × 4",
            &["--transport=ssh-pool", "--streams=4"],
        ),
        a(
            "quic",
            "arsync quic × 4",
            &["--transport=quic", "--streams=4"],
        ),
        a("auto", "arsync --transport=auto", &["--transport=auto"]),
    ]
}

/// The link profiles of the suite, by key.
pub fn profiles() -> Vec<(&'static str, LinkProfile)> {
    vec![
        ("lan", LAN),
        ("wan", WAN),
        ("fatwan", FAT_WAN),
        ("lossy", LOSSY),
    ]
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Link profile name.
    pub profile: String,
    /// Workload label.
    pub workload: String,
    /// Contender name.
    pub contender: String,
    /// Wall time.
    pub time: Duration,
    /// The size of what is synced (all files; the table's throughput is this over the time).
    pub payload: u64,
    /// Whether the destination started empty (all of `payload` had to cross).
    pub fresh: bool,
    /// Bytes on the emulated wire, both directions.
    pub wire: u64,
    /// Bytes on the emulated wire in the busier direction.
    pub wire_peak: u64,
    /// Busy CPU seconds of the whole machine.
    pub cpu: f64,
    /// The link's rate, bits per second.
    pub rate_bps: u64,
    /// Time ÷ rsync's time on the same link and workload.
    pub vs_rsync: f64,
}

/// Where the sources live, built once per size.
struct Sources {
    big: PathBuf,
    big_scattered_old: PathBuf,
    big_insert_old: PathBuf,
    small: PathBuf,
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
    };
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

/// Copy a tree preserving times (`cp -a`).
fn copy_tree(from: &Path, to: &Path) {
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
    /// Profiles (key, profile).
    pub profiles: Vec<(&'static str, LinkProfile)>,
    /// Contender keys (empty: all).
    pub contenders: Vec<String>,
    /// Sizes.
    pub sizes: Sizes,
    /// Scratch and output directory.
    pub dir: PathBuf,
    /// The arsync binary.
    pub arsync: PathBuf,
}

/// Run the plan; every row, also written as `transports.md` and `transports.csv` in
/// `plan.dir/out`.
pub fn run(plan: &Plan) -> Vec<Row> {
    let out = plan.dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let sources = build_sources(&plan.dir.join("src"), plan.sizes, &plan.workloads);
    let mut rows = Vec::new();
    for (key, profile) in &plan.profiles {
        let link = Link::start(*profile).expect("start the emulated link (needs root)");
        let keys = plan.dir.join(format!("keys-{key}"));
        let _ = fs::remove_dir_all(&keys);
        fs::create_dir_all(&keys).unwrap();
        let sshd = {
            let keys = keys.clone();
            link.run_in(Side::Far, move || Sshd::start_on(&keys, FAR_ADDR))
                .join()
                .unwrap()
        };
        let all = contenders(&plan.arsync, &sshd.rsh());
        let chosen: Vec<&Contender> = all
            .iter()
            .filter(|c| plan.contenders.is_empty() || plan.contenders.contains(&c.key))
            .collect();
        for &w in &plan.workloads {
            let mut rsync_time = None;
            for (i, c) in chosen.iter().enumerate() {
                let dest = plan
                    .dir
                    .join(format!("dest-{}-{}-{i}", profile.rate_bps, w.key()));
                let _ = fs::remove_dir_all(&dest);
                fs::create_dir_all(&dest).unwrap();
                let small_bytes = (plan.sizes.files * 10_240) as u64;
                let big_bytes = plan.sizes.big as u64;
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
                };
                let mut cmd = link.command(Side::Near, c.program.to_str().unwrap());
                cmd.args(&c.args)
                    .arg(format!("{}/", src.display()))
                    .arg(format!("{FAR_ADDR}:{}/", dest.display()));
                let (w0, t0, c0) = (link.wire_bytes(), Instant::now(), busy());
                let o = cmd.output().unwrap();
                let (time, cpu) = (t0.elapsed(), busy().saturating_sub(c0));
                let w1 = link.wire_bytes();
                assert!(
                    o.status.success(),
                    "{} on {}: {}",
                    c.name,
                    profile.name,
                    String::from_utf8_lossy(&o.stderr)
                );
                // The result must be the source, whoever made it.
                super::assert_same_tree(
                    &format!("{} on {}", c.name, profile.name),
                    "dest",
                    &super::snapshot(&dest),
                    "src",
                    &super::snapshot(src),
                );
                let t = time.as_secs_f64();
                let base = *rsync_time.get_or_insert(t);
                rows.push(Row {
                    profile: profile.name.into(),
                    workload: plan.sizes.label(w),
                    contender: c.name.clone(),
                    time,
                    payload,
                    fresh: matches!(w, Workload::SmallFresh | Workload::BigFresh),
                    wire: (w1.0 - w0.0) + (w1.1 - w0.1),
                    wire_peak: (w1.0 - w0.0).max(w1.1 - w0.1),
                    cpu: cpu.as_secs_f64(),
                    rate_bps: profile.rate_bps,
                    vs_rsync: t / base,
                });
                let _ = fs::remove_dir_all(&dest);
            }
        }
        drop(sshd);
        drop(link);
    }
    fs::write(out.join("transports.md"), markdown(&rows)).unwrap();
    fs::write(out.join("transports.csv"), csv(&rows)).unwrap();
    rows
}

/// The table: time, throughput, link utilisation, wire bytes, CPU seconds, ratio to rsync.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| link | workload | contender | time | throughput | link use | wire MB | CPU s | × rsync |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let t = r.time.as_secs_f64();
        let goodput = r.payload as f64 * 8.0 / t;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} s | {:.1} Mbit/s | {:.0} % | {:.1} | {:.2} | {:.2} |",
            r.profile,
            r.workload,
            r.contender,
            t,
            goodput / 1e6,
            100.0 * r.wire_peak as f64 * 8.0 / t / r.rate_bps as f64,
            r.wire as f64 / 1e6,
            r.cpu,
            r.vs_rsync
        );
    }
    s
}

/// The same rows as CSV.
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "link,workload,contender,seconds,payload_bytes,wire_bytes,wire_bytes_busier_direction,cpu_seconds,link_bps,vs_rsync\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:?},{:?},{:?},{:.4},{},{},{},{:.3},{},{:.4}",
            r.profile,
            r.workload,
            r.contender,
            r.time.as_secs_f64(),
            r.payload,
            r.wire,
            r.wire_peak,
            r.cpu,
            r.rate_bps,
            r.vs_rsync
        );
    }
    s
}
