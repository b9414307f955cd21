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

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const USAGE: &str =
    "usage: cargo bench --bench local [-- --quick] [--only=small,nochange,big,rss] \
[--runs=N] [--drop-caches] [--keep] [--timeout=SECS]";

/// Targets of issue 2.
const TARGET_SMALL_VS_RSYNC: f64 = 0.5;
const TARGET_NOCHANGE_VS_RSYNC: f64 = 1.0;
const TARGET_BIG_VS_CP: f64 = 1.2;
const TARGET_RSS_ABOVE_BASELINE_MB: f64 = 100.0;

#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    small: bool,
    nochange: bool,
    big: bool,
    rss: bool,
    runs: usize,
    drop_caches: bool,
    keep: bool,
    timeout: Duration,
    /// Workload (a)/(b): `small_files` files of `small_size` bytes, 100 per directory.
    small_files: usize,
    small_size: usize,
    /// Workload (c): one file of `big_size` bytes.
    big_size: u64,
    /// Workload (d): `rss_dirs` × `rss_per_dir` files of `rss_size` bytes.
    rss_dirs: usize,
    rss_per_dir: usize,
    rss_size: usize,
}

fn env_flag(name: &str) -> bool {
    env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn parse_positive(what: &str, value: &str) -> u64 {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => panic!("{what}: expected a positive integer, got {value:?}\n{USAGE}"),
    }
}

impl Config {
    fn from_env_and_args() -> Config {
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

    fn rss_files(&self) -> usize {
        self.rss_dirs * self.rss_per_dir
    }
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    ArsyncUring,
    ArsyncThreads,
    Rsync,
    Cp,
}

impl Tool {
    const ALL: [Tool; 4] = [
        Tool::ArsyncUring,
        Tool::ArsyncThreads,
        Tool::Rsync,
        Tool::Cp,
    ];

    fn label(self) -> &'static str {
        match self {
            Tool::ArsyncUring => "arsync -a --io=uring",
            Tool::ArsyncThreads => "arsync -a --io=threads",
            Tool::Rsync => "rsync -a",
            Tool::Cp => "cp -a",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Tool::ArsyncUring => "arsync-uring",
            Tool::ArsyncThreads => "arsync-threads",
            Tool::Rsync => "rsync",
            Tool::Cp => "cp",
        }
    }
}

#[derive(Debug)]
struct Tools {
    arsync: PathBuf,
    rsync: PathBuf,
    cp: PathBuf,
    arsync_version: String,
    rsync_version: String,
    cp_version: String,
    /// `Err(reason)` when `--io=uring` does not run on this machine.
    uring: Result<(), String>,
    /// What strace saw of io_uring_setup during the probe, if strace is installed.
    uring_note: Option<String>,
}

fn with_suffix(path: &Path, suffix: &str) -> OsString {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    s
}

impl Tools {
    fn argv(&self, tool: Tool, src: &Path, dst: &Path) -> Vec<OsString> {
        match tool {
            Tool::ArsyncUring | Tool::ArsyncThreads => vec![
                self.arsync.clone().into(),
                "-a".into(),
                if tool == Tool::ArsyncUring {
                    "--io=uring".into()
                } else {
                    "--io=threads".into()
                },
                with_suffix(src, "/"),
                with_suffix(dst, "/"),
            ],
            Tool::Rsync => vec![
                self.rsync.clone().into(),
                "-a".into(),
                with_suffix(src, "/"),
                with_suffix(dst, "/"),
            ],
            // The destination exists and is empty: copy the *contents* of src into it.
            Tool::Cp => vec![
                self.cp.clone().into(),
                "-a".into(),
                with_suffix(src, "/."),
                dst.as_os_str().to_os_string(),
            ],
        }
    }

    fn available(&self, tool: Tool) -> Result<(), String> {
        match tool {
            Tool::ArsyncUring => self.uring.clone(),
            _ => Ok(()),
        }
    }
}

fn first_line_of(cmd: &Path, arg: &str) -> String {
    match Command::new(cmd).arg(arg).stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Ok(out) => format!(
            "unknown ({} {arg} exited with {})",
            cmd.display(),
            out.status
        ),
        Err(e) => format!("unknown ({}: {e})", cmd.display()),
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The arsync binary: `$ARSYNC_BIN`, else the one cargo built for this bench, else
/// `target/release/arsync` (built with `cargo build --release --bin arsync` if missing).
fn find_arsync(target_dir: &Path) -> PathBuf {
    if let Some(p) = env::var_os("ARSYNC_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "ARSYNC_BIN={} is not a file", p.display());
        return p;
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_arsync") {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    let release = target_dir.join("release").join("arsync");
    if !release.is_file() {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        eprintln!(
            "[bench] {} missing: running cargo build --release --bin arsync",
            release.display()
        );
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "arsync", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("failed to run cargo build --release --bin arsync");
        assert!(
            status.success(),
            "cargo build --release --bin arsync failed: {status}"
        );
    }
    assert!(
        release.is_file(),
        "arsync binary not found at {} (set ARSYNC_BIN)",
        release.display()
    );
    release
}

/// Finds the binaries, prints their versions and checks whether `--io=uring` runs here.
fn resolve_tools(target_dir: &Path, work: &Path, timeout: Duration, spawner: &Spawner) -> Tools {
    let arsync = find_arsync(target_dir);
    let rsync = env::var_os("ARSYNC_BENCH_RSYNC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/rsync"));
    assert!(
        rsync.is_file(),
        "rsync not found at {} (apt-get install -y rsync, or set ARSYNC_BENCH_RSYNC)",
        rsync.display()
    );
    let cp_name = env::var("ARSYNC_BENCH_CP").unwrap_or_else(|_| "cp".to_string());
    let cp = find_in_path(&cp_name).unwrap_or_else(|| panic!("{cp_name} not found in PATH"));

    let mut tools = Tools {
        arsync_version: first_line_of(&arsync, "--version"),
        rsync_version: first_line_of(&rsync, "--version"),
        cp_version: first_line_of(&cp, "--version"),
        arsync,
        rsync,
        cp,
        uring: Ok(()),
        uring_note: None,
    };

    // Probe both I/O back ends on a one-file tree.
    let probe = work.join("probe");
    let src = probe.join("src");
    gen_tree(&src, 1, 1, 1, 100, 1);
    let manifest = scan_tree(&src);
    for tool in [Tool::ArsyncThreads, Tool::ArsyncUring] {
        let dst = probe.join(tool.slug());
        reset_dir(&dst);
        let run = spawner.run(
            &tools.argv(tool, &src, &dst),
            &probe.join("stderr"),
            timeout,
        );
        if !run.success() {
            if tool == Tool::ArsyncUring {
                let reason = format!("{}: {}", run.status_text(), run.stderr_tail(3));
                eprintln!("[bench] {} is unavailable here: {reason}", tool.label());
                tools.uring = Err(reason);
                continue;
            }
            fail_run(tool, "probe (1 file)", &run);
        }
        if let Err(e) = verify_copy(&src, &manifest, &dst) {
            fail_verify(tool, "probe (1 file)", &e);
        }
    }
    if tools.uring.is_ok() {
        tools.uring_note = strace_uring_probe(&tools, &src, &probe.join("strace-dst"), &probe);
    }
    fs::remove_dir_all(&probe).expect("remove probe dir");
    tools
}

/// Runs the uring probe under `strace -f -e trace=io_uring_setup` to tell whether
/// `--io=uring` really sets up a ring (rather than silently falling back to threads).
fn strace_uring_probe(tools: &Tools, src: &Path, dst: &Path, dir: &Path) -> Option<String> {
    let strace = find_in_path("strace")?;
    reset_dir(dst);
    let log = dir.join("strace.log");
    let status = Command::new(strace)
        .args(["-f", "-qq", "-e", "trace=io_uring_setup", "-o"])
        .arg(&log)
        .args(tools.argv(Tool::ArsyncUring, src, dst))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return Some(format!("strace run exited with {status}; not checked"));
    }
    let text = fs::read_to_string(&log).ok()?;
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("io_uring_setup("))
        .collect();
    let ok = calls.iter().filter(|l| !l.contains("= -1")).count();
    Some(if ok > 0 {
        format!("io_uring_setup succeeded {ok}× in the probe (strace)")
    } else if calls.is_empty() {
        "WARNING: the probe made no io_uring_setup call (strace): --io=uring may be falling back"
            .to_string()
    } else {
        format!(
            "WARNING: io_uring_setup failed in the probe (strace: {}): --io=uring may be falling back",
            calls[0].trim()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Running a child: wall time + peak RSS via wait4
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct RunResult {
    wall: Duration,
    /// `ru_maxrss` from wait4, in KiB: the largest RSS of the child or of any of its
    /// descendants it waited for (not a sum).
    maxrss_kib: u64,
    /// Raw wait status.
    status: i32,
    timed_out: bool,
    stderr: String,
}

impl RunResult {
    fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    fn status_text(&self) -> String {
        if self.timed_out {
            "killed after the timeout".to_string()
        } else if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }

    fn stderr_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = all[all.len().saturating_sub(lines)..].join(" / ");
        if tail.is_empty() {
            "(no stderr)".to_string()
        } else {
            tail
        }
    }
}

/// Spawns `argv`, waits for it and returns its wall time and peak RSS. stdout goes to
/// /dev/null, stderr to `stderr_path` (read back afterwards). A run longer than `timeout`
/// is killed.
fn run_measured(argv: &[OsString], stderr_path: &Path, timeout: Duration) -> RunResult {
    let stderr_file = fs::File::create(stderr_path).expect("create stderr capture file");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file);

    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn {:?}: {e}", argv[0]));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");

    // Watchdog: kills the child after `timeout`. It only kills while `done` is false, and
    // `done` is set before the child is reaped, so it can never hit a recycled pid.
    let done = Arc::new(Mutex::new(false));
    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = {
        let done = Arc::clone(&done);
        thread::spawn(move || match rx.recv_timeout(timeout) {
            Err(RecvTimeoutError::Timeout) => {
                let guard = done.lock().expect("watchdog mutex poisoned");
                if !*guard {
                    // SAFETY: plain syscall; the child is not reaped yet (see above).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return true;
                }
                false
            }
            _ => false,
        })
    };

    // Wait for the exit without reaping (WNOWAIT), so the pid stays ours.
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a siginfo_t; pid is our unreaped child.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                libc::id_t::try_from(pid).expect("pid is positive"),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        assert!(
            err.kind() == io::ErrorKind::Interrupted,
            "waitid({pid}) failed: {err}"
        );
    }
    let wall = start.elapsed();
    *done.lock().expect("watchdog mutex poisoned") = true;
    // The watchdog may already have given up on the channel; a failed send is fine.
    let _ = tx.send(());
    let timed_out = watchdog.join().expect("watchdog thread panicked");

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers; pid is our child, exited and not yet reaped.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        assert!(
            err.kind() == io::ErrorKind::Interrupted,
            "wait4({pid}) failed: {err}"
        );
    }
    // Already reaped: dropping the Child handle does not wait again.
    drop(child);

    RunResult {
        wall,
        maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        status,
        timed_out,
        stderr: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Spawn helper
//
// ru_maxrss of a child is not only its own peak: at execve the kernel folds in the high-water
// RSS of the address space being replaced, and std's spawn (posix_spawn/vfork) execs from the
// *parent's* address space. Children spawned directly by this bench would therefore report at
// least the bench's own peak RSS (tens of MB once it has scanned a 100,000-file tree). So all
// measured runs are spawned by a helper: this same executable re-run with HELPER_ARG first
// thing in main, whose RSS stays at a couple of MB. It takes requests on stdin and answers on
// stdout.
// ---------------------------------------------------------------------------------------------

const HELPER_ARG: &str = "--arsync-bench-spawn-helper";

fn write_u64(w: &mut impl io::Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn read_u64(r: &mut impl io::Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn write_bytes(w: &mut impl io::Write, b: &[u8]) -> io::Result<()> {
    write_u64(w, b.len() as u64)?;
    w.write_all(b)
}

fn read_bytes(r: &mut impl io::Read) -> io::Result<Vec<u8>> {
    let n = usize::try_from(read_u64(r)?).map_err(|_| io::ErrorKind::InvalidData)?;
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// The helper process: serve run requests until stdin closes.
fn helper_main() -> ! {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    loop {
        let argc = match read_u64(&mut input) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => std::process::exit(0),
            Err(e) => panic!("spawn helper: bad request: {e}"),
        };
        let argv: Vec<OsString> = (0..argc)
            .map(|_| read_bytes(&mut input).map(OsString::from_vec))
            .collect::<io::Result<_>>()
            .expect("spawn helper: bad argv");
        let stderr_path = PathBuf::from(OsString::from_vec(
            read_bytes(&mut input).expect("spawn helper: bad stderr path"),
        ));
        let timeout =
            Duration::from_millis(read_u64(&mut input).expect("spawn helper: bad timeout"));
        // Reset this process's RSS high-water mark to its current (small) RSS, so it does not
        // leak into the child's ru_maxrss either. Best effort (Linux >= 4.0).
        let _ = fs::write("/proc/self/clear_refs", "5");
        let run = run_measured(&argv, &stderr_path, timeout);
        let reply = (|| -> io::Result<()> {
            write_u64(
                &mut output,
                u64::try_from(run.wall.as_nanos()).unwrap_or(u64::MAX),
            )?;
            write_u64(&mut output, run.maxrss_kib)?;
            write_u64(&mut output, u64::from(run.status as u32))?;
            write_u64(&mut output, u64::from(run.timed_out))?;
            output.flush()
        })();
        reply.expect("spawn helper: cannot reply");
    }
}

#[derive(Debug)]
struct SpawnerPipes {
    child: Child,
    /// `None` once closed (on drop).
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

/// Client side of the spawn helper.
#[derive(Debug)]
struct Spawner(Mutex<SpawnerPipes>);

impl Spawner {
    fn start() -> Spawner {
        let exe = env::current_exe().expect("cannot find the bench executable");
        let mut child = Command::new(exe)
            .arg(HELPER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the spawn helper");
        let stdin = Some(child.stdin.take().expect("helper stdin"));
        let stdout = child.stdout.take().expect("helper stdout");
        Spawner(Mutex::new(SpawnerPipes {
            child,
            stdin,
            stdout,
        }))
    }

    /// Like `run_measured`, in the helper; also reads back the captured stderr.
    fn run(&self, argv: &[OsString], stderr_path: &Path, timeout: Duration) -> RunResult {
        let mut guard = self.0.lock().expect("spawner mutex poisoned");
        let p = &mut *guard;
        let stdin = p.stdin.as_mut().expect("spawn helper already closed");
        let request = (|| -> io::Result<()> {
            write_u64(stdin, argv.len() as u64)?;
            for a in argv {
                write_bytes(stdin, a.as_bytes())?;
            }
            write_bytes(stdin, stderr_path.as_os_str().as_bytes())?;
            write_u64(
                stdin,
                u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            )?;
            stdin.flush()
        })();
        request.expect("spawn helper died (request)");
        let stdout = &mut p.stdout;
        let mut read = || read_u64(stdout).expect("spawn helper died (reply)");
        let wall = Duration::from_nanos(read());
        let maxrss_kib = read();
        let status = read() as u32 as i32;
        let timed_out = read() != 0;
        let stderr = fs::read(stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        RunResult {
            wall,
            maxrss_kib,
            status,
            timed_out,
            stderr,
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        if let Ok(p) = self.0.get_mut() {
            // Closing stdin makes the helper exit.
            drop(p.stdin.take());
            let _ = p.child.wait();
        }
    }
}

fn fail_run(tool: Tool, what: &str, run: &RunResult) -> ! {
    panic!(
        "\n\n*** BENCH ABORTED: {} failed on {what}: {}\n*** stderr: {}\n",
        tool.label(),
        run.status_text(),
        run.stderr_tail(20)
    );
}

fn fail_verify(tool: Tool, what: &str, err: &str) -> ! {
    panic!(
        "\n\n*** BENCH ABORTED: WRONG RESULT from {} on {what}:\n*** {err}\n\
         *** (a fast wrong tool must not win; fix the copy before benchmarking)\n",
        tool.label()
    );
}

/// Flushes dirty pages (and drops the page cache if asked) before a timed run.
fn settle(cfg: &Config) {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
    if cfg.drop_caches {
        fs::write("/proc/sys/vm/drop_caches", "3\n").unwrap_or_else(|e| {
            panic!("--drop-caches: cannot write /proc/sys/vm/drop_caches ({e}); run as root or without it")
        });
    }
}

fn reset_dir(dir: &Path) {
    if dir.exists() {
        fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
}

/// Trees with more entries than this are only deleted at the end of the bench.
///
/// On ext4 without a journal (as on the development VM), creating a file skips every inode
/// freed in the last 60 s (360 s while its inode table block is dirty), checking each one: after
/// deleting a 10,000-file tree, each create in that block group costs ~0.8 ms instead of ~20 µs
/// (`cp -a` of 10,000 files: 0.44 s → 7 s), and how much a run suffers depends on what was
/// deleted before it. So no timed run follows a mass delete: every run copies into a fresh
/// destination and the trees are removed once all runs are done.
const DELETE_NOW_MAX_ENTRIES: usize = 16;

/// Mean cost of creating an empty file in a new directory under `work` (left in place).
fn create_cost(work: &Path) -> Duration {
    const N: u32 = 500;
    let dir = work.join("create-probe");
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let start = Instant::now();
    for i in 0..N {
        let p = dir.join(format!("f{i}"));
        fs::File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    }
    start.elapsed() / N
}

/// Above this, file creation is being slowed down by something (see DELETE_NOW_MAX_ENTRIES).
const SLOW_CREATE: Duration = Duration::from_micros(200);

fn remove_if_exists(dir: &Path) {
    if dir.exists() {
        fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
}

// ---------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------

/// splitmix64: fast, deterministic, incompressible enough that no tool can cheat.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Varied modes and old, distinct, nanosecond mtimes, so that `-a` preservation is checked.
fn file_mode(i: usize) -> u32 {
    match i % 13 {
        0 => 0o600,
        5 => 0o755,
        9 => 0o640,
        _ => 0o644,
    }
}

fn file_mtime(i: usize) -> SystemTime {
    let i = i as u64;
    UNIX_EPOCH + Duration::new(1_600_000_000 + i * 37, ((i * 7_919) % 1_000_000_000) as u32)
}

fn write_file(path: &Path, i: usize, size: u64, rng: &mut Rng, buf: &mut [u8]) {
    let mode = file_mode(i);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).expect("chunk fits in usize");
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    f.set_permissions(fs::Permissions::from_mode(mode))
        .expect("chmod source file");
    f.set_modified(file_mtime(i)).expect("set source mtime");
}

/// `dirs` directories `dNNNN` holding `files` files `fNNNNNNN.bin` in all (`per_dir` each)
/// of `size` random bytes.
fn gen_tree(root: &Path, dirs: usize, per_dir: usize, files: usize, size: usize, seed: u64) {
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let mut rng = Rng(seed);
    let mut buf = vec![0u8; size.clamp(1, 1 << 20)];
    let mut i = 0;
    'dirs: for d in 0..dirs {
        let dir = root.join(format!("d{d:04}"));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        for _ in 0..per_dir {
            if i == files {
                break 'dirs;
            }
            write_file(
                &dir.join(format!("f{i:07}.bin")),
                i,
                size as u64,
                &mut rng,
                &mut buf,
            );
            i += 1;
        }
    }
    assert_eq!(
        i, files,
        "gen_tree: {dirs} dirs × {per_dir} < {files} files"
    );
}

fn gen_big(root: &Path, size: u64, seed: u64) {
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let mut buf = vec![0u8; 8 << 20];
    write_file(&root.join("big.bin"), 1, size, &mut Rng(seed), &mut buf);
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    size: u64,
    mode: u32,
    mtime: i64,
    mtime_nsec: i64,
}

type Manifest = BTreeMap<PathBuf, Entry>;

/// Everything below `root` (not `root` itself), by relative path.
fn scan_tree(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for ent in rd {
            let ent = ent.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
            let md = ent
                .metadata()
                .unwrap_or_else(|e| panic!("stat {}: {e}", ent.path().display()));
            let ft = md.file_type();
            let kind = if ft.is_file() {
                Kind::File
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else {
                Kind::Other
            };
            let rel_child = rel.join(ent.file_name());
            if kind == Kind::Dir {
                stack.push(rel_child.clone());
            }
            out.insert(
                rel_child,
                Entry {
                    kind,
                    size: if kind == Kind::File { md.len() } else { 0 },
                    mode: md.mode() & 0o7777,
                    mtime: md.mtime(),
                    mtime_nsec: md.mtime_nsec(),
                },
            );
        }
    }
    out
}

#[derive(Debug, Default)]
struct TreeStats {
    files: usize,
    dirs: usize,
    bytes: u64,
}

fn stats(m: &Manifest) -> TreeStats {
    let mut s = TreeStats::default();
    for e in m.values() {
        match e.kind {
            Kind::File => {
                s.files += 1;
                s.bytes += e.size;
            }
            Kind::Dir => s.dirs += 1,
            _ => {}
        }
    }
    s
}

/// Compares `dst` with the source: same entries and kinds, same file sizes, modes and mtime
/// seconds (mtime nanoseconds too, as `cp -a` and `rsync -a` keep them), and the same bytes
/// in a sample of files (whole small files; 33 spread 64 KiB windows of big ones).
fn verify_copy(src: &Path, src_manifest: &Manifest, dst: &Path) -> Result<TreeStats, String> {
    let dst_manifest = scan_tree(dst);
    let (s, d) = (stats(src_manifest), stats(&dst_manifest));
    if s.files != d.files || s.dirs != d.dirs || s.bytes != d.bytes {
        let missing: Vec<_> = src_manifest
            .keys()
            .filter(|k| !dst_manifest.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = dst_manifest
            .keys()
            .filter(|k| !src_manifest.contains_key(*k))
            .take(3)
            .collect();
        return Err(format!(
            "destination has {} files / {} dirs / {} bytes, source has {} / {} / {} \
             (missing e.g. {missing:?}, extra e.g. {extra:?})",
            d.files, d.dirs, d.bytes, s.files, s.dirs, s.bytes
        ));
    }
    for (rel, se) in src_manifest {
        let Some(de) = dst_manifest.get(rel) else {
            return Err(format!("{} is missing in the destination", rel.display()));
        };
        if se.kind != de.kind {
            return Err(format!(
                "{}: source is {:?}, destination is {:?}",
                rel.display(),
                se.kind,
                de.kind
            ));
        }
        if se.mode != de.mode {
            return Err(format!(
                "{}: mode {:o} in the source, {:o} in the destination",
                rel.display(),
                se.mode,
                de.mode
            ));
        }
        if se.kind == Kind::File {
            if se.size != de.size {
                return Err(format!(
                    "{}: {} bytes in the source, {} in the destination",
                    rel.display(),
                    se.size,
                    de.size
                ));
            }
            if (se.mtime, se.mtime_nsec) != (de.mtime, de.mtime_nsec) {
                return Err(format!(
                    "{}: mtime {}.{:09} in the source, {}.{:09} in the destination",
                    rel.display(),
                    se.mtime,
                    se.mtime_nsec,
                    de.mtime,
                    de.mtime_nsec
                ));
            }
        }
    }
    let files: Vec<(&PathBuf, &Entry)> = src_manifest
        .iter()
        .filter(|(_, e)| e.kind == Kind::File)
        .collect();
    let stride = (files.len() / 256).max(1);
    let sample = files.iter().step_by(stride).chain(files.last());
    for (rel, e) in sample {
        compare_contents(&src.join(rel), &dst.join(rel), e.size)?;
    }
    Ok(d)
}

fn compare_contents(a: &Path, b: &Path, size: u64) -> Result<(), String> {
    const WINDOW: u64 = 64 << 10;
    let open = |p: &Path| fs::File::open(p).map_err(|e| format!("open {}: {e}", p.display()));
    let (fa, fb) = (open(a)?, open(b)?);
    let offsets: Vec<u64> = if size <= 16 * WINDOW {
        (0..size.div_ceil(WINDOW)).map(|k| k * WINDOW).collect()
    } else {
        (0..=32).map(|k| k * (size - WINDOW) / 32).collect()
    };
    let mut ba = vec![0u8; WINDOW as usize];
    let mut bb = vec![0u8; WINDOW as usize];
    for off in offsets {
        let n = usize::try_from(WINDOW.min(size - off)).expect("window fits in usize");
        fa.read_exact_at(&mut ba[..n], off)
            .map_err(|e| format!("read {} at {off}: {e}", a.display()))?;
        fb.read_exact_at(&mut bb[..n], off)
            .map_err(|e| format!("read {} at {off}: {e}", b.display()))?;
        if ba[..n] != bb[..n] {
            return Err(format!(
                "{}: contents differ from the source in bytes {off}..{}",
                b.display(),
                off + n as u64
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Small,
    NoChange,
    Big,
    Rss,
    /// Workload (d)'s 1-file baseline (RSS only).
    RssBaseline,
}

impl Workload {
    fn slug(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::NoChange => "nochange",
            Workload::Big => "big",
            Workload::Rss => "rss",
            Workload::RssBaseline => "rss-baseline",
        }
    }

    fn label(self, cfg: &Config) -> String {
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
struct Samples {
    times: Vec<Duration>,
    rss_kib: Vec<u64>,
}

impl Samples {
    fn push(&mut self, run: &RunResult) {
        self.times.push(run.wall);
        self.rss_kib.push(run.maxrss_kib);
    }

    fn median_time(&self) -> Duration {
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

    fn median_rss_kib(&self) -> u64 {
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
enum Outcome {
    Measured(Samples),
    Unavailable(String),
    NotApplicable,
}

#[derive(Debug, Clone)]
struct Row {
    workload: Workload,
    tool: Tool,
    outcome: Outcome,
}

#[derive(Debug)]
struct Ctx<'a> {
    cfg: &'a Config,
    tools: &'a Tools,
    work: &'a Path,
    spawner: &'a Spawner,
}

impl Ctx<'_> {
    /// One timed run: settle, run, check exit status and the copy.
    fn timed_run(
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
    fn rounds(&self, tools: &[Tool]) -> Vec<(usize, Tool)> {
        let mut order = Vec::new();
        for rep in 0..self.cfg.runs {
            for k in 0..tools.len() {
                order.push((rep, tools[(rep + k) % tools.len()]));
            }
        }
        order
    }

    /// Fresh copies into an empty destination (recreated, untimed, before every run).
    fn fresh(&self, wl: Workload, src: &Path, tools: &[Tool]) -> Vec<Row> {
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
    fn nochange(&self, src: &Path, tools: &[Tool]) -> Vec<Row> {
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

    fn rows(&self, wl: Workload, tools: &[Tool], samples: Vec<Samples>) -> Vec<Row> {
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
struct RssResult {
    baseline: Vec<Row>,
    tree: Vec<Row>,
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn fmt_count(n: usize) -> String {
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

fn fmt_size(bytes: u64) -> String {
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

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

/// KiB (ru_maxrss) → MB (10^6 bytes).
fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn fmt_mb(kib: u64) -> String {
    format!("{:.1} MB", kib_to_mb(kib))
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_string(), |r| format!("{r:.2}×"))
}

fn median_of(rows: &[Row], wl: Workload, tool: Tool) -> Option<Duration> {
    rows.iter()
        .find(|r| r.workload == wl && r.tool == tool)
        .and_then(|r| match &r.outcome {
            Outcome::Measured(s) => Some(s.median_time()),
            _ => None,
        })
}

fn ratio(a: Duration, b: Option<Duration>) -> Option<f64> {
    b.filter(|b| !b.is_zero())
        .map(|b| a.as_secs_f64() / b.as_secs_f64())
}

#[derive(Debug)]
struct Machine {
    cores: String,
    cpu: String,
    mem: String,
    kernel: String,
    fs: String,
    date: String,
    load_start: String,
    create_cost: Duration,
}

/// The 1/5/15-minute load averages: other work on the machine skews the timings.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

fn command_stdout(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine_info(data_dir: &Path) -> Machine {
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

fn render(
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

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// The bench's scratch directory, removed on drop (also when a panic unwinds).
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(base: &Path, keep: bool) -> WorkDir {
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
fn target_dir() -> PathBuf {
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

fn main() {
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
