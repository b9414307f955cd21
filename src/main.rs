//! The `arsync` command: parse rsync's command line, run the sync, print what rsync prints.
//!
//! No protocol logic lives here: [`args`] turns the command line into
//! [`arsync_core::engine::SyncOptions`], [`output`] turns engine events into rsync's output,
//! and the run itself is [`arsync::sync_local`].

mod args;
mod output;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use arsync_core::engine::EventSink;

fn main() -> ExitCode {
    let cmd = match args::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(args::ParseOutcome::Exit(code)) => return ExitCode::from(code),
        Err(args::ParseOutcome::Usage(msg)) => {
            eprintln!("arsync: {msg}");
            eprintln!("arsync error: syntax or usage error (code 1)");
            return ExitCode::from(1);
        }
    };
    let code = run(cmd);
    ExitCode::from(code as u8)
}

fn run(cmd: args::Command) -> i32 {
    let started = Instant::now();
    let out = Arc::new(output::Output::new(&cmd.output));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arsync")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("arsync: cannot start the runtime: {e}");
            return 1;
        }
    };
    if cmd.output.verbose > 0 && cmd.output.itemize == 0 {
        out.line("sending incremental file list");
    }
    let registry = arsync_transports::default_registry();
    let sink: Arc<dyn EventSink> = out.clone();
    let result = runtime.block_on(async {
        tokio::select! {
            r = arsync::sync_local(&registry, cmd.sources.clone(), cmd.dest.clone(), cmd.opts.clone(), sink) => Some(r),
            _ = shutdown_signal() => None,
        }
    });
    out.finish_progress();
    let code = match result {
        None => {
            // Leave no half-written temporaries behind (unnamed ones vanish by themselves).
            arsync_core::engine::fsys::remove_staged();
            eprintln!("arsync error: received SIGINT, SIGTERM, or SIGHUP (code 20)");
            return arsync_core::ExitCode::Signal.code();
        }
        Some(Err(e)) => {
            let code = e.exit_code().code();
            eprintln!("arsync: {e}");
            eprintln!(
                "arsync error: {} (code {code})",
                output::describe_exit(code)
            );
            return code;
        }
        Some(Ok(report)) => {
            out.summary(&report.stats, started.elapsed());
            report.stats.exit_code().code()
        }
    };
    if code != 0 {
        eprintln!(
            "arsync error: {} (code {code})",
            output::describe_exit(code)
        );
    }
    code
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
