//! Issue 16, params: the negotiated parameters end to end, with real processes: the client
//! starts `arsync --server --bootstrap=quic` through a remote shell that runs the command on
//! this machine (as `tests/remote_shell.rs` does), and the session runs over QUIC on the
//! loopback address: `--explain` shows the link as local and each parameter decided from it,
//! and the session runs as decided. Also: the CPU probe is measured once, then read from the
//! cache. (That the far end follows a choice it was not told on its command line is
//! `tests/params_pair.rs`: a loopback link leads to no such choice without a measured rate.)

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// The local "remote shell": drops ssh's `-l USER` / `-p PORT` and the host, runs the rest.
fn fake_rsh(dir: &Path) -> PathBuf {
    let p = dir.join("rsh");
    let script = "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\n\
                  shift\nexec sh -c \"$*\"\n";
    fs::write(&p, script).expect("write rsh");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    p
}

fn stat_num(run: &Run, label: &str) -> u64 {
    let line = run
        .line_starting(label)
        .unwrap_or_else(|| panic!("no {label} in {}", run.describe()));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

fn explained(run: &Run, line: &str) -> bool {
    run.stderr_str()
        .lines()
        .any(|l| l.strip_prefix("explain: ") == Some(line))
}

/// `src` holds a 2 MB file; `dst` the same with one byte changed and an older time.
fn edited(s: &Scratch) -> (PathBuf, PathBuf) {
    let (src, dst) = (s.join("src"), s.join("dst"));
    let mut data = pseudo_random(2_000_000, 7);
    write(&dst.join("big"), &data);
    set_mtime(&dst.join("big"), 1_000_000_000, 0);
    data[1_000_000] ^= 0xff;
    write(&src.join("big"), &data);
    (src, dst)
}

/// Push `src/` to `dst` through the fake remote shell with `extra` options.
fn push(s: &Scratch, src: &Path, dst: &Path, extra: &[&str]) -> Run {
    let rsh = format!("--rsh={}", fake_rsh(s.path()).display());
    let rsync_path = format!("--rsync-path={ARSYNC}");
    let (from, to) = (
        format!("{}/", src.display()),
        format!("localhost:{}/", dst.display()),
    );
    let cache = s.join("cache");
    let mut args = vec!["-a", "--stats", "--explain", &rsh, &rsync_path];
    args.extend_from_slice(extra);
    args.extend([from.as_str(), to.as_str()]);
    let run = arsync_env(
        s.path(),
        &args,
        &[("ARSYNC_CACHE_DIR", cache.to_str().expect("utf-8 path"))],
    );
    run.assert_ok();
    run
}

#[test]
fn explain_shows_the_link_and_each_parameter_and_the_session_follows() {
    let s = Scratch::new();
    let (src, dst) = edited(&s);
    let run = push(&s, &src, &dst, &[]);
    let err = run.stderr_str();
    assert!(
        err.lines()
            .any(|l| l.starts_with("explain: link: RTT ")
                && l.ends_with(", rate not measured, local")),
        "{}",
        run.describe()
    );
    for line in [
        "decision: chunks sized per file (file size alone: a local link has no round trip to fill)",
        "decision: 2 directory levels per round trip (the default: a local link)",
        "decision: no compression (a local link is faster than zstd)",
        "decision: merkle CDC deltas (the link's rate not measured yet)",
    ] {
        assert!(explained(&run, line), "no `{line}` in {}", run.describe());
    }
    assert_eq!(
        fs::read(dst.join("big")).ok(),
        fs::read(src.join("big")).ok()
    );
    // The file to send was sampled: random bytes do not compress.
    assert!(
        explained(
            &run,
            "data: a sample of 66 KB from 1 file compresses to 100 %"
        ),
        "{}",
        run.describe()
    );
    // The delta: only the changed chunk travelled.
    assert!(
        stat_num(&run, "Literal data: ") < 100_000,
        "{}",
        run.describe()
    );

    // -W: whole files, every byte travels.
    let (src, dst) = edited(&s);
    let run = push(&s, &src, &dst, &["-W"]);
    assert!(
        explained(&run, "decision: whole files (-W)"),
        "{}",
        run.describe()
    );
    assert_eq!(
        fs::read(dst.join("big")).ok(),
        fs::read(src.join("big")).ok()
    );
    assert_eq!(stat_num(&run, "Literal data: "), 2_000_000);
    assert_eq!(stat_num(&run, "Matched data: "), 0);
}

#[test]
fn the_cpu_probe_runs_once_then_is_remembered() {
    let s = Scratch::new();
    let (src, dst) = edited(&s);
    let cpu_line = |run: &Run| {
        run.stderr_str()
            .lines()
            .find(|l| l.starts_with("explain: cpu: "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no cpu line in {}", run.describe()))
    };
    let first = push(&s, &src, &dst, &[]);
    assert!(
        cpu_line(&first).contains("(measured in "),
        "{}",
        cpu_line(&first)
    );
    let kept = fs::read_to_string(s.join("cache/cpu")).expect("the cache file");
    assert!(kept.starts_with("arsync cpu 2\n"), "{kept}");
    assert!(kept.contains("\nbuild 0.1.0 debug\n"), "{kept}");
    let second = push(&s, &src, &dst, &[]);
    assert!(
        cpu_line(&second).ends_with("(remembered)"),
        "{}",
        cpu_line(&second)
    );
}
