//! Issue 16, adapt during the run, end to end with real processes: a pull (the receiver is
//! this side) through a remote shell that runs `arsync --server` on this machine, with
//! `ARSYNC_ADAPT=1`. The receiver asks for its delta files a window at a time; the test hook
//! (`ARSYNC_ADAPT_INJECT=LINK,CHUNK,WINDOW`, documented in `negotiate::adapt`) makes every
//! observation show a link faster than chunking, so after the decision's streak the files not
//! yet asked for go whole: `--explain` says so, more literal data travels than by delta, and
//! the tree is byte for byte the source's — over QUIC with its lanes (`auto`) and over one
//! SSH channel (`--transport=ssh`), where "Done" waits for the held files in two different
//! ways.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// How many changed files, and how large.
const FILES: u64 = 40;
const SIZE: usize = 24_000;

/// `src` with [`FILES`] files; `dst` with each of them one byte different and older.
fn edited(s: &Scratch, name: &str) -> (PathBuf, PathBuf) {
    let (src, dst) = (s.join(format!("{name}-src")), s.join(format!("{name}-dst")));
    for i in 0..FILES {
        let mut data = pseudo_random(SIZE, i);
        let f = format!("f{i:02}");
        write(&dst.join(&f), &data);
        set_mtime(&dst.join(&f), 1_000_000_000, 0);
        data[SIZE / 2] ^= 0xff;
        write(&src.join(&f), &data);
    }
    (src, dst)
}

/// Pull `src/` into `dst` through the local remote shell, with `extra` options and
/// `ARSYNC_ADAPT_INJECT=inject` (none: no hook).
fn pull(s: &Scratch, src: &Path, dst: &Path, extra: &[&str], inject: Option<&str>) -> Run {
    let rsh = format!("--rsh={}", fake_rsh(s.path()).display());
    let rsync_path = format!("--rsync-path={ARSYNC}");
    let (from, to) = (
        format!("localhost:{}/", src.display()),
        format!("{}/", dst.display()),
    );
    let cache = s.join("cache");
    // No host memory: each `auto` run makes its QUIC session (with lanes), whatever the one
    // before moved.
    let mut args = vec![
        "-a",
        "--stats",
        "--explain",
        "--no-host-memory",
        &rsh,
        &rsync_path,
    ];
    args.extend_from_slice(extra);
    args.extend([from.as_str(), to.as_str()]);
    let mut env = vec![
        ("ARSYNC_CACHE_DIR", cache.to_str().expect("utf-8 path")),
        ("ARSYNC_ADAPT", "1"),
    ];
    if let Some(v) = inject {
        env.push(("ARSYNC_ADAPT_INJECT", v));
    }
    let run = arsync_env(s.path(), &args, &env);
    run.assert_ok();
    // Every file byte for byte and with its metadata; the top directory's own time is left
    // out: when files in it are replaced, it is often left at the last rename's time (seen
    // on main as well, for local syncs and pushes alike — not this test's subject).
    assert_same_tree(
        "adapt",
        "dst",
        &without_root(snapshot(dst)),
        "src",
        &without_root(snapshot(src)),
    );
    run
}

const SWITCH: &str = "explain: adapt: the link carries 1.0 GB/s, more than chunking and \
                      hashing (100.0 MB/s): the files not yet asked for go whole (35 files not \
                      yet asked for)";

fn switches(run: &Run) -> usize {
    run.stderr_str()
        .lines()
        .filter(|l| l.starts_with("explain: adapt: "))
        .count()
}

#[test]
fn the_files_not_yet_asked_for_go_whole_after_the_switch() {
    for (name, transport) in [("auto", None), ("ssh", Some("--transport=ssh"))] {
        let s = Scratch::new();
        let extra: Vec<&str> = transport.into_iter().collect();
        // Without the hook: the window alone, every file by delta, no switch.
        let (src, dst) = edited(&s, &format!("{name}-delta"));
        let by_delta = pull(&s, &src, &dst, &extra, None);
        assert_eq!(switches(&by_delta), 0, "{}", by_delta.describe());
        // With it: after two observations (the window of 4 asked at once, one more asked on
        // the first close) the 35 left go whole.
        let (src, dst) = edited(&s, &format!("{name}-switch"));
        let switched = pull(&s, &src, &dst, &extra, Some("1000000000,100000000,4"));
        let err = switched.stderr_str();
        let over = if transport.is_none() { "quic" } else { "ssh" };
        assert!(
            err.contains(&format!("explain: decision: {over} (")),
            "{name}: {err}"
        );
        assert!(
            err.lines().any(|l| l == SWITCH),
            "{name}: no `{SWITCH}` in {}",
            switched.describe()
        );
        assert_eq!(switches(&switched), 1, "{name}: one switch: {err}");
        // The 35 whole files carry all their bytes; by delta each carried a chunk or so.
        let (d, w) = (
            by_delta.stat("Literal data: "),
            switched.stat("Literal data: "),
        );
        assert!(
            w >= 35 * SIZE as u64 && w > d + 20 * SIZE as u64,
            "{name}: literal by delta {d}, after the switch {w}"
        );
    }
}
