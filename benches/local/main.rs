//! Local-sync benchmark: `arsync` against `rsync -a` and `cp -a` on one filesystem.
//!
//! Run with `cargo bench --bench local`; options go after `--` (or in env vars):
//!
//! | argument              | env var                       | meaning                                         |
//! |-----------------------|-------------------------------|-------------------------------------------------|
//! | `--quick`             | `ARSYNC_BENCH_QUICK=1`        | 1,000 small files, 64 MiB file, 10,000-file RSS tree |
//! | `--only=a,b`          | `ARSYNC_BENCH_ONLY=a,b`       | subset of `small,nochange,big,rss`              |
//! | `--runs=N`            | `ARSYNC_BENCH_RUNS=N`         | timed runs per tool (default 3, median reported)|
//! | `--drop-caches`       | `ARSYNC_BENCH_DROP_CACHES=1`  | cold cache: drop caches before each timed run   |
//! | `--keep`              | `ARSYNC_BENCH_KEEP=1`         | keep the generated data (for debugging)         |
//! | `--timeout=SECS`      | `ARSYNC_BENCH_TIMEOUT=SECS`   | kill and abort a run that takes longer (600)    |
//! |                       | `ARSYNC_BENCH_DIR=PATH`       | where the data goes (default `target/bench-data`)|
//! |                       | `ARSYNC_BIN=PATH`             | arsync binary to test (default: this build's)   |
//! |                       | `ARSYNC_BENCH_RSYNC=PATH`     | rsync binary (default `/usr/bin/rsync`)         |
//! |                       | `ARSYNC_BENCH_CP=PATH`        | cp binary (default `cp`)                        |
//!
//! The markdown report goes to stdout and to `target/bench/local.md`; progress goes to stderr.
//! Every run is checked against the source (tree shape, sizes, modes, mtimes, sampled
//! contents) and the bench aborts loudly if a tool produced a wrong copy.

mod data;
mod report;
mod run;
mod tools;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use data::*;
use report::*;
use run::*;
use tools::*;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

pub(crate) const USAGE: &str =
    "usage: cargo bench --bench local [-- --quick] [--only=small,nochange,big,rss] \
[--runs=N] [--drop-caches] [--keep] [--timeout=SECS]";

/// Targets of issue 2.
pub(crate) const TARGET_SMALL_VS_RSYNC: f64 = 0.5;
pub(crate) const TARGET_NOCHANGE_VS_RSYNC: f64 = 1.0;
pub(crate) const TARGET_BIG_VS_CP: f64 = 1.2;
pub(crate) const TARGET_RSS_ABOVE_BASELINE_MB: f64 = 100.0;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) quick: bool,
    pub(crate) small: bool,
    pub(crate) nochange: bool,
    pub(crate) big: bool,
    pub(crate) rss: bool,
    pub(crate) runs: usize,
    pub(crate) drop_caches: bool,
    pub(crate) keep: bool,
    pub(crate) timeout: Duration,
    /// Workload (a)/(b): `small_files` files of `small_size` bytes, 100 per directory.
    pub(crate) small_files: usize,
    pub(crate) small_size: usize,
    /// Workload (c): one file of `big_size` bytes.
    pub(crate) big_size: u64,
    /// Workload (d): `rss_dirs` × `rss_per_dir` files of `rss_size` bytes.
    pub(crate) rss_dirs: usize,
    pub(crate) rss_per_dir: usize,
    pub(crate) rss_size: usize,
}

pub(crate) fn env_flag(name: &str) -> bool {
    env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

pub(crate) fn parse_positive(what: &str, value: &str) -> u64 {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => panic!("{what}: expected a positive integer, got {value:?}\n{USAGE}"),
    }
}

impl Config {
    pub(crate) fn from_env_and_args() -> Config {
        let mut quick = env_flag("ARSYNC_BENCH_QUICK");
        let mut only = env::var("ARSYNC_BENCH_ONLY").ok();
        let mut runs = env::var("ARSYNC_BENCH_RUNS")
            .ok()
            .map(|v| parse_positive("ARSYNC_BENCH_RUNS", &v));
        let mut drop_caches = env_flag("ARSYNC_BENCH_DROP_CACHES");
        let mut keep = env_flag("ARSYNC_BENCH_KEEP");
        let mut timeout = env::var("ARSYNC_BENCH_TIMEOUT")
            .ok()
            .map(|v| parse_positive("ARSYNC_BENCH_TIMEOUT", &v));

        for arg in env::args().skip(1) {
            match arg.as_str() {
                // cargo passes `--bench` to `harness = false` benches.
                "--bench" => {}
                "--quick" => quick = true,
                "--drop-caches" => drop_caches = true,
                "--keep" => keep = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                s if s.starts_with("--only=") => only = Some(s["--only=".len()..].to_string()),
                s if s.starts_with("--runs=") => {
                    runs = Some(parse_positive("--runs", &s["--runs=".len()..]))
                }
                s if s.starts_with("--timeout=") => {
                    timeout = Some(parse_positive("--timeout", &s["--timeout=".len()..]))
                }
                other => eprintln!("[bench] warning: ignoring unknown argument {other:?}"),
            }
        }

        let (mut small, mut nochange, mut big, mut rss) = (true, true, true, true);
        if let Some(list) = only.filter(|l| !l.trim().is_empty()) {
            (small, nochange, big, rss) = (false, false, false, false);
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match name {
                    "small" => small = true,
                    "nochange" => nochange = true,
                    "big" => big = true,
                    "rss" => rss = true,
                    other => panic!(
                        "--only: unknown workload {other:?} (expected small,nochange,big,rss)\n{USAGE}"
                    ),
                }
            }
        }

        let runs = usize::try_from(runs.unwrap_or(3)).expect("--runs fits in usize");
        Config {
            quick,
            small,
            nochange,
            big,
            rss,
            runs,
            drop_caches,
            keep,
            timeout: Duration::from_secs(timeout.unwrap_or(600)),
            small_files: if quick { 1_000 } else { 10_000 },
            small_size: 10 * 1024,
            big_size: if quick { 64 << 20 } else { 1 << 30 },
            rss_dirs: 100,
            rss_per_dir: if quick { 100 } else { 1_000 },
            rss_size: 100,
        }
    }

    pub(crate) fn rss_files(&self) -> usize {
        self.rss_dirs * self.rss_per_dir
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    Small,
    NoChange,
    Big,
    Rss,
    /// Workload (d)'s 1-file baseline (RSS only).
    RssBaseline,
}

impl Workload {
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::NoChange => "nochange",
            Workload::Big => "big",
            Workload::Rss => "rss",
            Workload::RssBaseline => "rss-baseline",
        }
    }

    pub(crate) fn label(self, cfg: &Config) -> String {
        match self {
            Workload::Small => format!(
                "(a) fresh, {} × {}",
                fmt_count(cfg.small_files),
                fmt_size(cfg.small_size as u64)
            ),
            Workload::NoChange => format!(
                "(b) no change, {} × {}",
                fmt_count(cfg.small_files),
                fmt_size(cfg.small_size as u64)
            ),
            Workload::Big => format!("(c) fresh, 1 × {}", fmt_size(cfg.big_size)),
            Workload::Rss => format!(
                "(d) fresh, {} × {}",
                fmt_count(cfg.rss_files()),
                fmt_size(cfg.rss_size as u64)
            ),
            Workload::RssBaseline => format!("(d) baseline, 1 × {}", fmt_size(cfg.rss_size as u64)),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    pub(crate) times: Vec<Duration>,
    pub(crate) rss_kib: Vec<u64>,
}

impl Samples {
    pub(crate) fn push(&mut self, run: &RunResult) {
        self.times.push(run.wall);
        self.rss_kib.push(run.maxrss_kib);
    }

    pub(crate) fn median_time(&self) -> Duration {
        let mut v = self.times.clone();
        v.sort();
        let n = v.len();
        assert!(n > 0, "no samples");
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        }
    }

    pub(crate) fn median_rss_kib(&self) -> u64 {
        let mut v = self.rss_kib.clone();
        v.sort_unstable();
        let n = v.len();
        assert!(n > 0, "no samples");
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Measured(Samples),
    Unavailable(String),
    NotApplicable,
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) workload: Workload,
    pub(crate) tool: Tool,
    pub(crate) outcome: Outcome,
}

#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) tools: &'a Tools,
    pub(crate) work: &'a Path,
    pub(crate) spawner: &'a Spawner,
}

impl Ctx<'_> {
    /// One timed run: settle, run, check exit status and the copy.
    pub(crate) fn timed_run(
        &self,
        wl: Workload,
        tool: Tool,
        src: &Path,
        manifest: &Manifest,
        dst: &Path,
        what: &str,
    ) -> RunResult {
        settle(self.cfg);
        let run = self.spawner.run(
            &self.tools.argv(tool, src, dst),
            &self.work.join("stderr.txt"),
            self.cfg.timeout,
        );
        let label = format!("{} {what}", wl.label(self.cfg));
        if !run.success() {
            fail_run(tool, &label, &run);
        }
        match verify_copy(src, manifest, dst) {
            Ok(_) => {}
            Err(e) => fail_verify(tool, &label, &e),
        }
        eprintln!(
            "[bench] {label}: {:<24} {:>10}  peak RSS {}",
            tool.label(),
            fmt_duration(run.wall),
            fmt_mb(run.maxrss_kib)
        );
        run
    }

    /// Tools in a rotating order per round, so no tool always runs first.
    pub(crate) fn rounds(&self, tools: &[Tool]) -> Vec<(usize, Tool)> {
        let mut order = Vec::new();
        for rep in 0..self.cfg.runs {
            for k in 0..tools.len() {
                order.push((rep, tools[(rep + k) % tools.len()]));
            }
        }
        order
    }

    /// Fresh copies into an empty destination (recreated, untimed, before every run).
    pub(crate) fn fresh(&self, wl: Workload, src: &Path, tools: &[Tool]) -> Vec<Row> {
        let manifest = scan_tree(src);
        // See DELETE_NOW_MAX_ENTRIES: a tree with many files is not deleted until the end.
        let delete_now = manifest.len() <= DELETE_NOW_MAX_ENTRIES;
        let mut samples: Vec<Samples> = vec![Samples::default(); tools.len()];
        let available: Vec<Tool> = tools
            .iter()
            .copied()
            .filter(|t| self.tools.available(*t).is_ok())
            .collect();
        for (rep, tool) in self.rounds(&available) {
            let dst = self
                .work
                .join(format!("dst-{}-{}-{}", wl.slug(), tool.slug(), rep + 1));
            reset_dir(&dst);
            let what = format!("run {}/{}", rep + 1, self.cfg.runs);
            let run = self.timed_run(wl, tool, src, &manifest, &dst, &what);
            let idx = tools.iter().position(|t| *t == tool).expect("tool listed");
            samples[idx].push(&run);
            if delete_now {
                remove_if_exists(&dst);
            }
        }
        self.rows(wl, tools, samples)
    }

    /// Re-syncing an unchanged tree: each tool first fills its own destination (untimed),
    /// then is timed syncing again with nothing to do.
    pub(crate) fn nochange(&self, src: &Path, tools: &[Tool]) -> Vec<Row> {
        let wl = Workload::NoChange;
        let manifest = scan_tree(src);
        let mut samples: Vec<Samples> = vec![Samples::default(); tools.len()];
        let available: Vec<Tool> = tools
            .iter()
            .copied()
            .filter(|t| self.tools.available(*t).is_ok())
            .collect();
        for tool in &available {
            let dst = self.work.join(format!("dst-{}-{}", wl.slug(), tool.slug()));
            reset_dir(&dst);
            self.timed_run(wl, *tool, src, &manifest, &dst, "initial sync (untimed)");
        }
        for (rep, tool) in self.rounds(&available) {
            let dst = self.work.join(format!("dst-{}-{}", wl.slug(), tool.slug()));
            let what = format!("run {}/{}", rep + 1, self.cfg.runs);
            let run = self.timed_run(wl, tool, src, &manifest, &dst, &what);
            let idx = tools.iter().position(|t| *t == tool).expect("tool listed");
            samples[idx].push(&run);
        }
        let mut rows = self.rows(wl, tools, samples);
        rows.push(Row {
            workload: wl,
            tool: Tool::Cp,
            outcome: Outcome::NotApplicable,
        });
        rows
    }

    pub(crate) fn rows(&self, wl: Workload, tools: &[Tool], samples: Vec<Samples>) -> Vec<Row> {
        tools
            .iter()
            .zip(samples)
            .map(|(tool, s)| Row {
                workload: wl,
                tool: *tool,
                outcome: match self.tools.available(*tool) {
                    Ok(()) => Outcome::Measured(s),
                    Err(reason) => Outcome::Unavailable(reason),
                },
            })
            .collect()
    }
}

/// Workload (d)'s baseline: the same tools on a one-file tree.
#[derive(Debug)]
pub(crate) struct RssResult {
    pub(crate) baseline: Vec<Row>,
    pub(crate) tree: Vec<Row>,
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// The bench's scratch directory, removed on drop (also when a panic unwinds).
#[derive(Debug)]
pub(crate) struct WorkDir {
    pub(crate) path: PathBuf,
    pub(crate) keep: bool,
}

impl WorkDir {
    pub(crate) fn create(base: &Path, keep: bool) -> WorkDir {
        fs::create_dir_all(base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = base.join(format!("local-{}-{nanos:09}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        WorkDir { path, keep }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("[bench] keeping {}", self.path.display());
            return;
        }
        eprintln!("[bench] removing {}", self.path.display());
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!(
                "[bench] warning: could not remove {}: {e}",
                self.path.display()
            );
        }
    }
}

/// `target/`: `$CARGO_TARGET_DIR`, else three levels above this bench executable
/// (`target/release/deps/local-…`), else `<manifest dir>/target`.
pub(crate) fn target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
        };
    }
    if let Ok(exe) = env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name().is_some_and(|n| n == "deps") {
                if let Some(target) = deps.parent().and_then(Path::parent) {
                    return target.to_path_buf();
                }
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

pub(crate) fn main() {
    if env::args().nth(1).as_deref() == Some(HELPER_ARG) {
        helper_main();
    }
    // Before this process grows: see "Spawn helper".
    let spawner = Spawner::start();
    let cfg = Config::from_env_and_args();
    let target = target_dir();
    let base = env::var_os("ARSYNC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("bench-data"));
    let work = WorkDir::create(&base, cfg.keep);
    eprintln!("[bench] data under {}", work.path.display());

    let tools = resolve_tools(&target, &work.path, cfg.timeout, &spawner);
    eprintln!(
        "[bench] arsync: {} ({})",
        tools.arsync.display(),
        tools.arsync_version
    );
    let machine = machine_info(&work.path);
    eprintln!(
        "[bench] file creation: {:.0} µs per empty file{}",
        machine.create_cost.as_secs_f64() * 1e6,
        if machine.create_cost > SLOW_CREATE {
            " (SLOW: a recent mass delete on this filesystem? fresh timings will be skewed)"
        } else {
            ""
        }
    );
    let ctx = Ctx {
        cfg: &cfg,
        tools: &tools,
        work: &work.path,
        spawner: &spawner,
    };
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();

    if cfg.small || cfg.nochange {
        let src = work.path.join("src-small");
        eprintln!(
            "[bench] generating {} × {}",
            fmt_count(cfg.small_files),
            fmt_size(cfg.small_size as u64)
        );
        let per_dir = 100;
        gen_tree(
            &src,
            cfg.small_files.div_ceil(per_dir),
            per_dir,
            cfg.small_files,
            cfg.small_size,
            0x5a11,
        );
        if cfg.small {
            rows.extend(ctx.fresh(Workload::Small, &src, &Tool::ALL));
        }
        if cfg.nochange {
            rows.extend(ctx.nochange(&src, &Tool::ALL[..3]));
        }
        // Not deleted before the end: see DELETE_NOW_MAX_ENTRIES.
    }

    if cfg.big {
        let src = work.path.join("src-big");
        eprintln!("[bench] generating 1 × {}", fmt_size(cfg.big_size));
        gen_big(&src, cfg.big_size, 0xb16);
        rows.extend(ctx.fresh(Workload::Big, &src, &Tool::ALL));
        remove_if_exists(&src);
    }

    let mut rss = None;
    if cfg.rss {
        let rss_tools = &Tool::ALL[..3];
        let one = work.path.join("src-one");
        gen_tree(&one, 1, 1, 1, cfg.rss_size, 0x1);
        // Fresh runs on a 1-file tree (only the RSS matters).
        let baseline = ctx.fresh(Workload::RssBaseline, &one, rss_tools);
        remove_if_exists(&one);

        let src = work.path.join("src-rss");
        eprintln!(
            "[bench] generating {} dirs × {} × {}",
            fmt_count(cfg.rss_dirs),
            fmt_count(cfg.rss_per_dir),
            fmt_size(cfg.rss_size as u64)
        );
        gen_tree(
            &src,
            cfg.rss_dirs,
            cfg.rss_per_dir,
            cfg.rss_files(),
            cfg.rss_size,
            0x255,
        );
        let tree = ctx.fresh(Workload::Rss, &src, rss_tools);
        rows.extend(tree.iter().cloned());
        rss = Some(RssResult { baseline, tree });
    }

    let report = render(&cfg, &machine, &tools, &base, &rows, rss.as_ref());
    println!("{report}");
    let out_dir = target.join("bench");
    fs::create_dir_all(&out_dir).unwrap_or_else(|e| panic!("create {}: {e}", out_dir.display()));
    let out = out_dir.join("local.md");
    fs::write(&out, &report).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    eprintln!(
        "[bench] done in {}; report written to {}",
        fmt_duration(started.elapsed()),
        out.display()
    );
    drop(work);
}
