//! Running a child and measuring it: wall time and peak RSS (wait4), and the spawn helper that
//! execs tools from a small process so their RSS is their own.

use super::*;
use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Running a child: wall time + peak RSS via wait4
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct RunResult {
    pub(crate) wall: Duration,
    /// `ru_maxrss` from wait4, in KiB: the largest RSS of the child or of any of its
    /// descendants it waited for (not a sum).
    pub(crate) maxrss_kib: u64,
    /// Raw wait status.
    pub(crate) status: i32,
    pub(crate) timed_out: bool,
    pub(crate) stderr: String,
}

impl RunResult {
    pub(crate) fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    pub(crate) fn status_text(&self) -> String {
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

    pub(crate) fn stderr_tail(&self, lines: usize) -> String {
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
pub(crate) fn run_measured(argv: &[OsString], stderr_path: &Path, timeout: Duration) -> RunResult {
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

pub(crate) const HELPER_ARG: &str = "--arsync-bench-spawn-helper";

pub(crate) fn write_u64(w: &mut impl io::Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub(crate) fn read_u64(r: &mut impl io::Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub(crate) fn write_bytes(w: &mut impl io::Write, b: &[u8]) -> io::Result<()> {
    write_u64(w, b.len() as u64)?;
    w.write_all(b)
}

pub(crate) fn read_bytes(r: &mut impl io::Read) -> io::Result<Vec<u8>> {
    let n = usize::try_from(read_u64(r)?).map_err(|_| io::ErrorKind::InvalidData)?;
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// The helper process: serve run requests until stdin closes.
pub(crate) fn helper_main() -> ! {
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
pub(crate) struct SpawnerPipes {
    pub(crate) child: Child,
    /// `None` once closed (on drop).
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: ChildStdout,
}

/// Client side of the spawn helper.
#[derive(Debug)]
pub(crate) struct Spawner(Mutex<SpawnerPipes>);

impl Spawner {
    pub(crate) fn start() -> Spawner {
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
    pub(crate) fn run(
        &self,
        argv: &[OsString],
        stderr_path: &Path,
        timeout: Duration,
    ) -> RunResult {
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

pub(crate) fn fail_run(tool: Tool, what: &str, run: &RunResult) -> ! {
    panic!(
        "\n\n*** BENCH ABORTED: {} failed on {what}: {}\n*** stderr: {}\n",
        tool.label(),
        run.status_text(),
        run.stderr_tail(20)
    );
}

pub(crate) fn fail_verify(tool: Tool, what: &str, err: &str) -> ! {
    panic!(
        "\n\n*** BENCH ABORTED: WRONG RESULT from {} on {what}:\n*** {err}\n\
         *** (a fast wrong tool must not win; fix the copy before benchmarking)\n",
        tool.label()
    );
}

/// Flushes dirty pages (and drops the page cache if asked) before a timed run.
pub(crate) fn settle(cfg: &Config) {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
    if cfg.drop_caches {
        fs::write("/proc/sys/vm/drop_caches", "3\n").unwrap_or_else(|e| {
            panic!("--drop-caches: cannot write /proc/sys/vm/drop_caches ({e}); run as root or without it")
        });
    }
}

pub(crate) fn reset_dir(dir: &Path) {
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
pub(crate) const DELETE_NOW_MAX_ENTRIES: usize = 16;

/// Mean cost of creating an empty file in a new directory under `work` (left in place).
pub(crate) fn create_cost(work: &Path) -> Duration {
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
pub(crate) const SLOW_CREATE: Duration = Duration::from_micros(200);

pub(crate) fn remove_if_exists(dir: &Path) {
    if dir.exists() {
        fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
}
