//! The `arsync` command: parse rsync's command line, run the sync, print what rsync prints.
//!
//! No protocol logic lives here: [`args`] turns the command line into
//! [`arsync_core::engine::SyncOptions`], [`output`] turns engine events into rsync's output,
//! and the run itself is [`arsync::sync_local`].

/// `eprintln!` that cannot panic: a server's stderr may have gone away with its peer (sshd
/// exits with the connection), and a failed diagnostic must not turn a clean error exit into
/// a panic or a hang. The line goes out in one write, and waits for room on a full
/// non-blocking stderr rather than being lost.
macro_rules! err_line {
    ($($arg:tt)*) => {
        arsync_transports::stdio::write_stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod args;
// Issue 16, per-host memory:
mod host_memory;
// Issue 16, params:
mod cpu_probe;
mod data_sample;
mod listing;
mod out_format;
mod output;
// Issue 16, overlay: the Tailscale/Teleport probe's driver.
mod overlay_run;
mod progress;
mod quic_run;
mod remote;
mod serve;
// Issue 19: `arsync login ISSUER` (OIDC device authorization grant).
mod login;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use arsync_core::engine::EventSink;

/// Issue 18: at most two glibc malloc arenas (unless `MALLOC_ARENA_MAX` says otherwise).
/// glibc gives each thread that allocates its own arena, up to eight per core; the scan's
/// threads and the roles' workers then leave a file list's entries spread over many arenas,
/// each with its own free holes, and a 100,000-file local copy peaked at 130 MB where two
/// arenas hold it in 95 MB (docs/BENCHMARKS.md, issue 18) at no cost in time.
///
/// And a fixed mmap threshold of [`MMAP_THRESHOLD`] (unless `MALLOC_MMAP_THRESHOLD_` or
/// `GLIBC_TUNABLES` sets one): glibc's own threshold rises to the size of the largest mapped
/// block freed, up to 32 MiB, after which a list's buffer growing to tens of MB is copied
/// within the heap at each doubling and leaves the old copy as a hole the heap keeps. Mapped,
/// a large buffer grows by `mremap` (no copy, only the pages written are resident) and goes
/// back to the system when freed: a 300,000-file local copy peaked at 120 MB instead of 135,
/// and a pulling sender at 88 MB instead of 114 (docs/BENCHMARKS.md, "Memory with the tree's
/// size, the lists' own bytes").
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        let tuned = std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|t| t.to_string_lossy().contains("mmap_threshold"));
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() && !tuned {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// Blocks from this size up are mapped on their own (see [`tune_malloc`]): above the I/O
/// buffers (1 MiB) that are made and dropped per file, so those stay in the heap and cost no
/// system call each; below a large tree's lists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

fn main() -> ExitCode {
    tune_malloc();
    // `arsync serve …`: the daemon and its tokens; issue 19, `arsync login …` (a file named
    // "serve" or "login" is `./serve`, `./login`).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "serve") {
        let mut rest = vec![std::ffi::OsString::from("arsync serve")];
        rest.extend(argv.into_iter().skip(2));
        return ExitCode::from(serve::main(rest));
    }
    if argv.get(1).is_some_and(|a| a == "login") {
        let mut rest = vec![std::ffi::OsString::from("arsync login")];
        rest.extend(argv.into_iter().skip(2));
        return ExitCode::from(login::main(rest));
    }
    // Issue 15, own: an rsync client's `-s` sends our arguments on stdin.
    let argv = match args::secluded::server_argv(argv) {
        Ok(a) => a,
        Err(msg) => {
            err_line!("arsync: {msg}");
            return ExitCode::from(12);
        }
    };
    let mut cmd = match args::parse(argv) {
        Ok(c) => c,
        Err(args::ParseOutcome::Exit(code)) => return ExitCode::from(code),
        Err(args::ParseOutcome::Usage(msg)) => {
            err_line!("arsync: {msg}");
            err_line!("arsync error: syntax or usage error (code 1)");
            return ExitCode::from(1);
        }
    };
    // A --transport name nothing registered is a usage error, whatever the mode.
    let serves = matches!(
        cmd.mode,
        args::Mode::Server { .. } | args::Mode::Lane { .. }
    );
    if let (false, Err(e)) = (serves, remote::check_transport_name(&cmd)) {
        err_line!("arsync: {e}");
        err_line!("arsync error: syntax or usage error (code 1)");
        return ExitCode::from(1);
    }
    // Issue 16, remote CPU: a server tells its client how fast it chunks (cached after the
    // first measurement), for the client's next decisions.
    if matches!(cmd.mode, args::Mode::Server { .. }) {
        cmd.opts.cpu_chunk = Some(cpu_probe::chunk_speed());
    }
    // Issue 16, adapt during the run: default off; `ARSYNC_ADAPT=1` on whichever side
    // receives.
    {
        use arsync_core::negotiate::adapt::{AdaptOpts, ADAPT_VAR, INJECT_VAR};
        let var = |name| std::env::var(name).ok();
        cmd.opts.adapt = AdaptOpts::from_env(var(ADAPT_VAR).as_deref(), var(INJECT_VAR).as_deref());
    }
    // Issue 18, scattered deltas: `ARSYNC_GAP_SUMS=0` keeps this side from offering the gap
    // exchange (a peer then sees an arsync without it: for tests and before/after benches).
    cmd.opts.no_gap_sums = std::env::var("ARSYNC_GAP_SUMS").is_ok_and(|v| v == "0");
    // --stderr=all: what would go to stdout goes to stderr (not a server's stdout: it carries
    // the protocol).
    if cmd.net.all_to_stderr && !serves {
        // SAFETY: dup2 on the process's own standard descriptors, before any thread runs.
        unsafe {
            libc::dup2(2, 1);
        }
    }
    let code = run(cmd);
    ExitCode::from(code as u8)
}

fn run(cmd: args::Command) -> i32 {
    let started = Instant::now();
    let server = matches!(
        cmd.mode,
        args::Mode::Server { .. } | args::Mode::Lane { .. }
    );
    let out = Arc::new(output::Output::new(&cmd.output, server));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arsync")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            err_line!("arsync: cannot start the runtime: {e}");
            return 1;
        }
    };
    if !server && cmd.output.info.flist >= 1 {
        out.line(match cmd.mode {
            // A listing without -r has no incremental recursion in rsync.
            args::Mode::Pull { .. } if cmd.output.list_entries && !cmd.opts.recursive => {
                "receiving file list ... done"
            }
            args::Mode::Pull { .. } => "receiving incremental file list",
            _ => "sending incremental file list",
        });
    }
    let sink: Arc<dyn EventSink> = out.clone();
    runtime.spawn(report_waits(cmd.output.verbose >= 3));
    let result = runtime.block_on(async {
        tokio::select! {
            r = execute(&cmd, sink) => Some(r),
            _ = shutdown_signal() => None,
        }
    });
    // Whatever still waits (a thread reading a peer that waits for our exit) must not keep
    // the process alive: our exit is what ends the peer's wait.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    out.finish_progress();
    if let Some(cache) = &cmd.opts.hash_cache {
        if let Err(e) = cache.save() {
            err_line!("arsync: could not save the hash cache: {e}");
        }
    }
    // Issue 18, chunk cache: keep it within its bounds (a failure costs re-reads, no more).
    if let Some(cache) = &cmd.opts.chunk_cache {
        let _ = cache.trim();
    }
    let code = match result {
        None => {
            // Leave no half-written temporaries behind (unnamed ones vanish by themselves);
            // Issue 15, tempfiles: --partial keeps what they hold.
            if cmd.opts.partial {
                arsync_core::engine::fsys::keep_staged(cmd.opts.temp.partial_dir());
            } else {
                arsync_core::engine::fsys::remove_staged();
            }
            err_line!("arsync error: received SIGINT, SIGTERM, or SIGHUP (code 20)");
            return arsync_core::ExitCode::Signal.code();
        }
        Some(Err(e)) => {
            let code = e.exit_code().code();
            err_line!("arsync: {e}");
            err_line!(
                "arsync error: {} (code {code})",
                output::describe_exit(code)
            );
            return code;
        }
        Some(Ok(report)) => {
            if !server {
                out.summary(&report.stats, started.elapsed());
            }
            report.stats.exit_code().code()
        }
    };
    if code != 0 && !server {
        err_line!(
            "arsync error: {} (code {code})",
            output::describe_exit(code)
        );
    }
    code
}

/// Run what the command line asks for.
async fn execute(
    cmd: &args::Command,
    sink: Arc<dyn EventSink>,
) -> Result<arsync::RunReport, arsync_core::SyncError> {
    use arsync_transports::pipe::PipeConnection;

    let opts = cmd.opts.clone();
    match &cmd.mode {
        args::Mode::Local { sources, dest } => {
            let registry = arsync_transports::default_registry();
            arsync::sync_local(&registry, sources.clone(), dest.clone(), opts, sink).await
        }
        args::Mode::Server { sender, paths } if cmd.rsync_client_info.is_some() => {
            let role = if *sender {
                arsync::ServerRole::Sender
            } else {
                arsync::ServerRole::Receiver
            };
            arsync::serve_rsync(
                Box::new(PipeConnection::stdio()),
                role,
                paths.clone(),
                opts,
                cmd.rsync_client_info.clone().unwrap_or_default(),
                cmd.output.reports_to_rsync_client(),
                sink,
            )
            .await
        }
        args::Mode::Lane { id } => {
            tokio::task::spawn_blocking({
                let id = id.clone();
                move || arsync_transports::ssh_pool::run_lane_handoff(&id)
            })
            .await
            .map_err(arsync_core::SyncError::Job)??;
            Ok(arsync::RunReport {
                stats: Arc::new(arsync_core::engine::Stats::default()),
            })
        }
        args::Mode::Server { sender, paths } if cmd.bootstrap => {
            let role = if *sender {
                arsync::ServerRole::Sender
            } else {
                arsync::ServerRole::Receiver
            };
            quic_run::serve_bootstrap(cmd, role, paths.clone(), sink).await
        }
        args::Mode::Server { sender, paths } => {
            let role = if *sender {
                arsync::ServerRole::Sender
            } else {
                arsync::ServerRole::Receiver
            };
            // A pooled session's server also accepts the lanes that join it.
            let conn: Box<dyn arsync_core::transport::Connection> = match &cmd.lane_session {
                Some(id) => Box::new(arsync_transports::ssh_pool::LaneServer::bind(id)?),
                None => Box::new(PipeConnection::stdio()),
            };
            arsync::serve(conn, role, paths.clone(), opts, sink).await
        }
        args::Mode::ListLocal { sources } => {
            let (lines, failed) = listing::list_local(sources, &cmd.opts);
            {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                for l in lines {
                    let _ = writeln!(out, "{l}");
                }
            }
            let stats = arsync_core::engine::Stats::default();
            if failed {
                stats
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(arsync::RunReport {
                stats: Arc::new(stats),
            })
        }
        args::Mode::List { remote } => {
            let port = remote.daemon_port.unwrap_or(873);
            let socket = cmd.net.daemon_socket();
            for line in arsync::rsync_daemon_list(&remote.host, port, socket, sink).await? {
                // rsync cannot tell the message of the day from the module lines: with
                // --no-motd it prints neither.
                if !cmd.net.no_motd {
                    println!("{line}");
                }
            }
            Ok(arsync::RunReport {
                stats: Arc::new(arsync_core::engine::Stats::default()),
            })
        }
        args::Mode::Push { sources, remote } => {
            let direction = arsync::Direction::Push;
            remote::remote_sync(cmd, remote, direction, sources.clone(), sink).await
        }
        args::Mode::Pull { remote, dest } if cmd.output.list_entries => {
            // A remote listing: a dry-run pull to a destination that does not exist (in an
            // empty directory made for it), so every entry is new and reported.
            let _ = dest;
            let empty = EmptyDir::new().map_err(|source| arsync_core::SyncError::FileIo {
                what: "make a directory for the listing",
                path: std::env::temp_dir(),
                source,
            })?;
            let mut missing = empty.0.join("listing").into_os_string();
            missing.push("/");
            remote::remote_sync(
                cmd,
                remote,
                arsync::Direction::Pull,
                vec![missing.into()],
                sink,
            )
            .await
        }
        args::Mode::Pull { remote, dest } => {
            remote::remote_sync(
                cmd,
                remote,
                arsync::Direction::Pull,
                vec![dest.clone()],
                sink,
            )
            .await
        }
    }
}

/// An empty directory of this run's own under the temporary directory, removed when dropped.
struct EmptyDir(std::path::PathBuf);

impl EmptyDir {
    fn new() -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut n = 0u32;
        loop {
            let p = base.join(format!("arsync-list-{}-{nanos}-{n}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(EmptyDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// What each job waits for, on stderr: on every SIGQUIT, and with `-vvv` whenever ten seconds
/// pass without any work done (a stalled run says what it is stuck on).
async fn report_waits(on_stall: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let print = |why: &str| {
        err_line!("arsync: {why}; what each job is waiting for:");
        for line in arsync_core::liveness::report_lines() {
            err_line!("arsync:   {line}");
        }
    };
    let Ok(mut quit) = signal(SignalKind::quit()) else {
        return;
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.tick().await;
    let mut seen = arsync_core::liveness::work();
    loop {
        tokio::select! {
            got = quit.recv() => {
                if got.is_none() {
                    return;
                }
                print("SIGQUIT");
            }
            _ = tick.tick(), if on_stall => {
                let now = arsync_core::liveness::work();
                if now == seen {
                    print("no progress for 10 s");
                }
                seen = now;
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}
