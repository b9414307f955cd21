//! The tools compared (arsync in its modes, rsync, cp): finding them, their versions, and how each
//! is invoked.

use super::*;
use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    ArsyncUring,
    ArsyncThreads,
    Rsync,
    Cp,
}

impl Tool {
    pub(crate) const ALL: [Tool; 4] = [
        Tool::ArsyncUring,
        Tool::ArsyncThreads,
        Tool::Rsync,
        Tool::Cp,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Tool::ArsyncUring => "arsync -a --io=uring",
            Tool::ArsyncThreads => "arsync -a --io=threads",
            Tool::Rsync => "rsync -a",
            Tool::Cp => "cp -a",
        }
    }

    pub(crate) fn slug(self) -> &'static str {
        match self {
            Tool::ArsyncUring => "arsync-uring",
            Tool::ArsyncThreads => "arsync-threads",
            Tool::Rsync => "rsync",
            Tool::Cp => "cp",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Tools {
    pub(crate) arsync: PathBuf,
    pub(crate) rsync: PathBuf,
    pub(crate) cp: PathBuf,
    pub(crate) arsync_version: String,
    pub(crate) rsync_version: String,
    pub(crate) cp_version: String,
    /// `Err(reason)` when `--io=uring` does not run on this machine.
    pub(crate) uring: Result<(), String>,
    /// What strace saw of io_uring_setup during the probe, if strace is installed.
    pub(crate) uring_note: Option<String>,
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> OsString {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    s
}

impl Tools {
    pub(crate) fn argv(&self, tool: Tool, src: &Path, dst: &Path) -> Vec<OsString> {
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

    pub(crate) fn available(&self, tool: Tool) -> Result<(), String> {
        match tool {
            Tool::ArsyncUring => self.uring.clone(),
            _ => Ok(()),
        }
    }
}

pub(crate) fn first_line_of(cmd: &Path, arg: &str) -> String {
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

pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
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
pub(crate) fn find_arsync(target_dir: &Path) -> PathBuf {
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
pub(crate) fn resolve_tools(
    target_dir: &Path,
    work: &Path,
    timeout: Duration,
    spawner: &Spawner,
) -> Tools {
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
pub(crate) fn strace_uring_probe(
    tools: &Tools,
    src: &Path,
    dst: &Path,
    dir: &Path,
) -> Option<String> {
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
