//! The report: number formats, the machine description, and the markdown tables with their ratios
//! and targets.

use super::*;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

pub(crate) fn fmt_count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn fmt_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

/// KiB (ru_maxrss) → MB (10^6 bytes).
pub(crate) fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

pub(crate) fn fmt_mb(kib: u64) -> String {
    format!("{:.1} MB", kib_to_mb(kib))
}

pub(crate) fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_string(), |r| format!("{r:.2}×"))
}

pub(crate) fn median_of(rows: &[Row], wl: Workload, tool: Tool) -> Option<Duration> {
    rows.iter()
        .find(|r| r.workload == wl && r.tool == tool)
        .and_then(|r| match &r.outcome {
            Outcome::Measured(s) => Some(s.median_time()),
            _ => None,
        })
}

pub(crate) fn ratio(a: Duration, b: Option<Duration>) -> Option<f64> {
    b.filter(|b| !b.is_zero())
        .map(|b| a.as_secs_f64() / b.as_secs_f64())
}

#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) cores: String,
    pub(crate) cpu: String,
    pub(crate) mem: String,
    pub(crate) kernel: String,
    pub(crate) fs: String,
    pub(crate) date: String,
    pub(crate) load_start: String,
    pub(crate) create_cost: Duration,
}

/// The 1/5/15-minute load averages: other work on the machine skews the timings.
pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

pub(crate) fn command_stdout(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn machine_info(data_dir: &Path) -> Machine {
    let cores = command_stdout("nproc", &[]).unwrap_or_else(|| {
        thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_string())
    });
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".to_string(), |s| s.trim().to_string());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or_else(
            || "? RAM".to_string(),
            |kb| format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0),
        );
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string());
    let fs = data_dir
        .to_str()
        .and_then(|p| command_stdout("df", &["-PT", p]))
        .and_then(|out| {
            let line = out.lines().nth(1)?.to_string();
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.len() >= 7)
                .then(|| format!("{} on {} (mounted at {})", cols[1], cols[0], cols[6]))
        })
        .unwrap_or_else(|| "unknown filesystem".to_string());
    let date = command_stdout("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("unix time {secs}")
    });
    Machine {
        cores,
        cpu,
        mem,
        kernel,
        fs,
        date,
        load_start: loadavg(),
        create_cost: create_cost(data_dir),
    }
}

pub(crate) fn render(
    cfg: &Config,
    machine: &Machine,
    tools: &Tools,
    data_dir: &Path,
    rows: &[Row],
    rss: Option<&RssResult>,
) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "### Local sync: arsync vs rsync vs cp\n");
    if cfg.quick {
        let _ = writeln!(
            w,
            "> **Quick mode** (`--quick`): reduced sizes; the targets are defined for the full \
             sizes, so PASS/MISS below is only indicative.\n"
        );
    }
    let _ = writeln!(w, "- date: {}", machine.date);
    let _ = writeln!(
        w,
        "- machine: {} cores (`nproc`), {}, {}, Linux {}",
        machine.cores, machine.cpu, machine.mem, machine.kernel
    );
    let _ = writeln!(
        w,
        "- filesystem: {}; source and destination side by side under `{}`",
        machine.fs,
        data_dir.display()
    );
    let _ = writeln!(
        w,
        "- load average (1/5/15 min): {} at the start, {} at the end (anything else running \
         on the machine skews the timings)",
        machine.load_start,
        loadavg()
    );
    let _ = writeln!(
        w,
        "- file creation at the start: {:.0} µs per empty file{}",
        machine.create_cost.as_secs_f64() * 1e6,
        if machine.create_cost > SLOW_CREATE {
            " — **slow**: fresh-copy timings are skewed (on journal-less ext4 this follows a \
             mass delete, e.g. a previous bench's cleanup, for 1 to 6 minutes)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        w,
        "- page cache: {}",
        if cfg.drop_caches {
            "**cold**: `sync` and `echo 3 > /proc/sys/vm/drop_caches` before every timed run"
        } else {
            "**warm**: `sync` before every timed run, caches not dropped (sources are cached; \
             writes land in the page cache, writeback is not timed unless a tool fsyncs)"
        }
    );
    let _ = writeln!(
        w,
        "- runs: {} per tool and workload, interleaved, median reported; every fresh run copies \
         into a new empty directory, and no tree is deleted until all runs are done (deleting \
         many files slows file creation for a minute on journal-less ext4); every run's copy is \
         verified against the source",
        cfg.runs
    );
    let _ = writeln!(
        w,
        "- arsync: `{}` ({}); rsync: `{}` ({}); cp: `{}` ({})",
        tools.arsync.display(),
        tools.arsync_version,
        tools.rsync.display(),
        tools.rsync_version,
        tools.cp.display(),
        tools.cp_version
    );
    let _ = writeln!(
        w,
        "- io_uring: {}",
        match (&tools.uring, &tools.uring_note) {
            (Err(reason), _) => format!("**unavailable** (`--io=uring` failed: {reason})"),
            (Ok(()), Some(note)) => format!("available; {note}"),
            (Ok(()), None) => "available".to_string(),
        }
    );

    let _ = writeln!(
        w,
        "\n| workload | tool | median time | ratio to rsync | ratio to cp | peak RSS | runs |"
    );
    let _ = writeln!(w, "|---|---|--:|--:|--:|--:|---|");
    for row in rows {
        let wl = row.workload.label(cfg);
        let tool = row.tool.label();
        match &row.outcome {
            Outcome::Measured(s) => {
                let med = s.median_time();
                let runs: Vec<String> = s.times.iter().map(|d| fmt_duration(*d)).collect();
                let _ = writeln!(
                    w,
                    "| {wl} | {tool} | {} | {} | {} | {} | {} |",
                    fmt_duration(med),
                    fmt_ratio(ratio(med, median_of(rows, row.workload, Tool::Rsync))),
                    fmt_ratio(ratio(med, median_of(rows, row.workload, Tool::Cp))),
                    fmt_mb(s.median_rss_kib()),
                    runs.join(", ")
                );
            }
            Outcome::Unavailable(reason) => {
                let short: String = reason.replace('|', "/").chars().take(80).collect();
                let _ = writeln!(w, "| {wl} | {tool} | unavailable | — | — | — | {short} |");
            }
            Outcome::NotApplicable => {
                let _ = writeln!(w, "| {wl} | {tool} | n/a | — | — | — | no equivalent |");
            }
        }
    }

    if let Some(rss) = rss {
        let _ = writeln!(
            w,
            "\n**Peak RSS** (wait4 `ru_maxrss`, median of {} runs; for rsync the largest of its \
             processes, not their sum):\n",
            cfg.runs
        );
        let _ = writeln!(
            w,
            "| tool | 1-file tree | {}-file tree | above baseline |",
            fmt_count(cfg.rss_files())
        );
        let _ = writeln!(w, "|---|--:|--:|--:|");
        for (b, t) in rss.baseline.iter().zip(&rss.tree) {
            match (&b.outcome, &t.outcome) {
                (Outcome::Measured(bs), Outcome::Measured(ts)) => {
                    let (bk, tk) = (bs.median_rss_kib(), ts.median_rss_kib());
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {:.2} MB |",
                        t.tool.label(),
                        fmt_mb(bk),
                        fmt_mb(tk),
                        kib_to_mb(tk) - kib_to_mb(bk)
                    );
                }
                _ => {
                    let _ = writeln!(w, "| {} | unavailable | unavailable | — |", t.tool.label());
                }
            }
        }
    }

    // Targets.
    let mut targets: Vec<[String; 4]> = Vec::new();
    let verdict = |ok: bool| if ok { "PASS" } else { "**MISS**" }.to_string();
    for tool in [Tool::ArsyncUring, Tool::ArsyncThreads] {
        let na = || "n/a (io_uring unavailable)".to_string();
        if cfg.small {
            let r = median_of(rows, Workload::Small, tool)
                .and_then(|t| ratio(t, median_of(rows, Workload::Small, Tool::Rsync)));
            targets.push([
                format!("(a) fresh small files ≤ {TARGET_SMALL_VS_RSYNC} × rsync"),
                tool.label().to_string(),
                r.map_or_else(na, |r| format!("{r:.2} × rsync")),
                r.map_or_else(|| "—".to_string(), |r| verdict(r <= TARGET_SMALL_VS_RSYNC)),
            ]);
        }
        if cfg.nochange {
            let r = median_of(rows, Workload::NoChange, tool)
                .and_then(|t| ratio(t, median_of(rows, Workload::NoChange, Tool::Rsync)));
            targets.push([
                format!("(b) no change ≤ {TARGET_NOCHANGE_VS_RSYNC} × rsync"),
                tool.label().to_string(),
                r.map_or_else(na, |r| format!("{r:.2} × rsync")),
                r.map_or_else(
                    || "—".to_string(),
                    |r| verdict(r <= TARGET_NOCHANGE_VS_RSYNC),
                ),
            ]);
        }
        if cfg.big {
            let r = median_of(rows, Workload::Big, tool)
                .and_then(|t| ratio(t, median_of(rows, Workload::Big, Tool::Cp)));
            targets.push([
                format!(
                    "(c) {} fresh ≤ {TARGET_BIG_VS_CP} × cp -a",
                    fmt_size(cfg.big_size)
                ),
                tool.label().to_string(),
                r.map_or_else(na, |r| format!("{r:.2} × cp -a")),
                r.map_or_else(|| "—".to_string(), |r| verdict(r <= TARGET_BIG_VS_CP)),
            ]);
        }
        if let Some(rss) = rss {
            let pick = |v: &[Row]| {
                v.iter()
                    .find(|r| r.tool == tool)
                    .and_then(|r| match &r.outcome {
                        Outcome::Measured(s) => Some(s.median_rss_kib()),
                        _ => None,
                    })
            };
            let above = pick(&rss.baseline)
                .zip(pick(&rss.tree))
                .map(|(b, t)| kib_to_mb(t) - kib_to_mb(b));
            targets.push([
                format!(
                    "(d) peak RSS on {}-file tree < {TARGET_RSS_ABOVE_BASELINE_MB} MB above 1-file baseline",
                    fmt_count(cfg.rss_files())
                ),
                tool.label().to_string(),
                above.map_or_else(na, |mb| format!("{mb:.2} MB")),
                above.map_or_else(
                    || "—".to_string(),
                    |mb| verdict(mb < TARGET_RSS_ABOVE_BASELINE_MB),
                ),
            ]);
        }
    }
    if !targets.is_empty() {
        let _ = writeln!(w, "\n**Targets:**\n");
        let _ = writeln!(w, "| target | tool | measured | result |");
        let _ = writeln!(w, "|---|---|--:|---|");
        for [a, b, c, d] in &targets {
            let _ = writeln!(w, "| {a} | {b} | {c} | {d} |");
        }
    }
    o
}
