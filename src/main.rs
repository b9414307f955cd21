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
mod output;
mod quic_run;
mod serve;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use arsync_core::engine::EventSink;

fn main() -> ExitCode {
    // `arsync serve …`: the daemon and its tokens (a file named "serve" is `./serve`).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "serve") {
        let mut rest = vec![std::ffi::OsString::from("arsync serve")];
        rest.extend(argv.into_iter().skip(2));
        return ExitCode::from(serve::main(rest));
    }
    let cmd = match args::parse(argv) {
        Ok(c) => c,
        Err(args::ParseOutcome::Exit(code)) => return ExitCode::from(code),
        Err(args::ParseOutcome::Usage(msg)) => {
            err_line!("arsync: {msg}");
            err_line!("arsync error: syntax or usage error (code 1)");
            return ExitCode::from(1);
        }
    };
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
    if !server && cmd.output.verbose > 0 && cmd.output.itemize == 0 {
        out.line(match cmd.mode {
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
    out.finish_progress();
    if let Some(cache) = &cmd.opts.hash_cache {
        if let Err(e) = cache.save() {
            err_line!("arsync: could not save the hash cache: {e}");
        }
    }
    let code = match result {
        None => {
            // Leave no half-written temporaries behind (unnamed ones vanish by themselves).
            arsync_core::engine::fsys::remove_staged();
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
            .map_err(|e| {
                arsync_core::SyncError::StreamIo(std::io::Error::other(e.to_string()))
            })??;
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
        args::Mode::List { remote } => {
            let port = remote.daemon_port.unwrap_or(873);
            for line in arsync::rsync_daemon_list(&remote.host, port, sink).await? {
                println!("{line}");
            }
            Ok(arsync::RunReport {
                stats: Arc::new(arsync_core::engine::Stats::default()),
            })
        }
        args::Mode::Push { sources, remote } => {
            remote_sync(cmd, remote, arsync::Direction::Push, sources.clone(), sink).await
        }
        args::Mode::Pull { remote, dest } => {
            remote_sync(
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

/// Start `arsync --server` on the remote host through the remote shell and sync with it.
async fn remote_sync(
    cmd: &args::Command,
    remote: &args::Remote,
    direction: arsync::Direction,
    local: Vec<std::path::PathBuf>,
    sink: Arc<dyn EventSink>,
) -> Result<arsync::RunReport, arsync_core::SyncError> {
    use arsync_core::transport::{AuthConfig, Endpoint, TransportFactory};

    let registry = ssh_registry(cmd)?;
    let ssh = registry.get("ssh")?;
    let mut endpoint = Endpoint::host(remote.host.clone());
    endpoint.user = remote.user.clone();
    endpoint.path = remote.paths.join(" ");
    if let Some(port) = remote.daemon_port {
        let protocol = cmd
            .rsync_protocol
            .unwrap_or(arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX);
        return daemon_sync(cmd, remote, port, direction, local, protocol, sink).await;
    }
    if let Some(protocol) = cmd.rsync_protocol {
        return rsync_sync(cmd, remote, direction, local, protocol, sink).await;
    }
    endpoint.remote_command = cmd.server_command(remote, direction == arsync::Direction::Pull);
    if let Some(port) = remote.arsync_port {
        // arsync://host:port/module/path: the words after `--server`, without "." and paths.
        let words = &endpoint.remote_command;
        let after = words
            .iter()
            .position(|w| w == "--server")
            .map_or(0, |i| i + 1);
        let end = words
            .len()
            .saturating_sub(remote.paths.len() + 1)
            .max(after);
        let args = words[after..end].to_vec();
        let target = remote.paths.join(" ");
        let conn = quic_run::connect_daemon(cmd, &remote.host, port, &target, args).await?;
        return arsync::sync_remote(conn, direction, local, cmd.opts.clone(), sink).await;
    }
    let conn = match cmd.transport.as_str() {
        "ssh-pool" => {
            quic_run::explain(cmd.explain, "decision: ssh-pool (asked for)");
            let pool = arsync_transports::ssh_pool::SshPool::new(
                pool_backend(cmd, &ssh)?,
                cmd.opts
                    .streams
                    .unwrap_or(arsync_transports::ssh_pool::DEFAULT_STREAMS),
            );
            pool.connect(&endpoint, &AuthConfig::default()).await?
        }
        t @ ("quic" | "auto") => {
            match quic_run::connect_bootstrapped(
                cmd,
                &*ssh,
                endpoint.clone(),
                &remote.host,
                t == "auto",
            )
            .await?
            {
                quic_run::Bootstrapped::Ready(conn) => conn,
                quic_run::Bootstrapped::NoArsync(e) => {
                    return no_arsync(cmd, remote, direction, local, sink, e).await
                }
            }
        }
        _ => {
            quic_run::explain(cmd.explain, "decision: ssh (asked for)");
            ssh.connect(&endpoint, &AuthConfig::default()).await?
        }
    };
    let tried = arsync::sync_remote(
        conn,
        direction,
        local.clone(),
        cmd.opts.clone(),
        sink.clone(),
    )
    .await;
    match tried {
        Err(arsync_core::SyncError::Transport(
            e @ arsync_core::transport::TransportError::PeerExited {
                code: Some(127), ..
            },
        )) => no_arsync(cmd, remote, direction, local, sink, e).await,
        other => other,
    }
}

/// The remote host has no arsync: with `--protocol=auto`, speak rsync's protocol to its
/// rsync; otherwise report why.
async fn no_arsync(
    cmd: &args::Command,
    remote: &args::Remote,
    direction: arsync::Direction,
    local: Vec<std::path::PathBuf>,
    sink: Arc<dyn EventSink>,
    error: arsync_core::transport::TransportError,
) -> Result<arsync::RunReport, arsync_core::SyncError> {
    match error {
        // No arsync on the remote host, and nothing said which protocol to speak: it has
        // rsync, then.
        arsync_core::transport::TransportError::PeerExited {
            code: Some(127), ..
        } if cmd.protocol_auto => {
            quic_run::explain(
                cmd.explain,
                "decision: rsync's protocol over ssh (the remote host has only rsync)",
            );
            sink.event(arsync_core::engine::Event::Info {
                message: format!(
                    "{} not found on {}: speaking rsync's protocol with rsync there",
                    cmd.rsync_path, remote.host
                ),
            });
            let mut rsync_cmd = cmd.clone();
            rsync_cmd.rsync_path = "rsync".into();
            rsync_sync(
                &rsync_cmd,
                remote,
                direction,
                local,
                arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX,
                sink,
            )
            .await
        }
        other => Err(other.into()),
    }
}

/// The transports with `ssh` as the command line asks: the `-e` program, or the native
/// client reading the same `-e` options.
fn ssh_registry(
    cmd: &args::Command,
) -> Result<arsync_core::transport::Registry, arsync_core::transport::TransportError> {
    let registry = arsync_transports::default_registry();
    #[cfg(feature = "ssh-native")]
    if cmd.ssh_native {
        return Ok(
            registry.with(arsync_transports::ssh_native::NativeSsh::with_rsh(
                &cmd.rsh,
            )?),
        );
    }
    Ok(registry.with(arsync_transports::ssh::SystemSsh::with_rsh(&cmd.rsh)?))
}

/// What an ssh-pool opens its connections with: the native client with one login for all, or
/// the `ssh` transport itself.
fn pool_backend(
    cmd: &args::Command,
    ssh: &Arc<dyn arsync_core::transport::TransportFactory>,
) -> Result<Arc<dyn arsync_core::transport::TransportFactory>, arsync_core::transport::TransportError>
{
    #[cfg(feature = "ssh-native")]
    if cmd.ssh_native {
        return Ok(Arc::new(
            arsync_transports::ssh_pool::SharedNativeLogin::with_rsh(&cmd.rsh)?,
        ));
    }
    let _ = cmd;
    Ok(ssh.clone())
}

/// Sync with a remote host's rsync in rsync's own protocol.
async fn rsync_sync(
    cmd: &args::Command,
    remote: &args::Remote,
    direction: arsync::Direction,
    local: Vec<std::path::PathBuf>,
    protocol: u8,
    sink: Arc<dyn EventSink>,
) -> Result<arsync::RunReport, arsync_core::SyncError> {
    use arsync_core::transport::{AuthConfig, Endpoint};

    let registry = ssh_registry(cmd)?;
    let ssh = registry.get("ssh")?;
    let mut endpoint = Endpoint::host(remote.host.clone());
    endpoint.user = remote.user.clone();
    endpoint.path = remote.paths.join(" ");
    let opts = cmd.opts.clone();
    if direction == arsync::Direction::Pull {
        endpoint.remote_command = cmd.rsync_sender_command(remote);
        let conn = ssh.connect(&endpoint, &AuthConfig::default()).await?;
        let dest = local.into_iter().next().unwrap_or_default();
        arsync::sync_rsync_pull(
            arsync::RsyncPeer::Shell(conn),
            remote.paths.clone(),
            dest,
            opts,
            protocol,
            sink,
        )
        .await
    } else {
        endpoint.remote_command = cmd.rsync_receiver_command(remote);
        let conn = ssh.connect(&endpoint, &AuthConfig::default()).await?;
        arsync::sync_rsync_push(arsync::RsyncPeer::Shell(conn), local, opts, protocol, sink).await
    }
}

/// Sync with an rsync daemon (`rsync://host[:port]/module/path`, `host::module/path`).
async fn daemon_sync(
    cmd: &args::Command,
    remote: &args::Remote,
    port: u16,
    direction: arsync::Direction,
    local: Vec<std::path::PathBuf>,
    protocol: u8,
    sink: Arc<dyn EventSink>,
) -> Result<arsync::RunReport, arsync_core::SyncError> {
    let password = match &cmd.password_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| arsync_core::SyncError::FileIo {
                    what: "read password file",
                    path: p.clone(),
                    source: e,
                })?
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        ),
        None => std::env::var("RSYNC_PASSWORD").ok(),
    };
    let user = remote
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "nobody".into());
    let pull = direction == arsync::Direction::Pull;
    let mut server_args = vec!["--server".to_owned()];
    if pull {
        server_args.push("--sender".into());
        server_args.extend(arsync_core::engine::rsync::sender_args(&cmd.opts));
    } else {
        server_args.extend(arsync_core::engine::rsync::server_args(&cmd.opts));
    }
    let login = arsync_core::engine::rsync::link::DaemonLogin {
        paths: remote.paths.clone(),
        server_args,
        user,
        password,
    };
    let peer = arsync::RsyncPeer::Daemon {
        host: remote.host.clone(),
        port,
        login,
    };
    if pull {
        let dest = local.into_iter().next().unwrap_or_default();
        // Within the module: what follows the module name.
        let requested = remote
            .paths
            .iter()
            .map(|p| p.split_once('/').map_or("", |x| x.1).to_owned())
            .collect();
        arsync::sync_rsync_pull(peer, requested, dest, cmd.opts.clone(), protocol, sink).await
    } else {
        arsync::sync_rsync_push(peer, local, cmd.opts.clone(), protocol, sink).await
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
