//! Local-sync integration tests: arsync is run next to the real rsync on the
//! same source and the results (trees, itemize lines, stats, exit codes) must
//! match.
//!
//! Layout of each test's scratch directory: `src/` is the source; arsync runs
//! with its working directory in `a/` and rsync in `r/`, both with the same
//! relative arguments (`../src/ dst/`), so even messages that echo paths are
//! comparable.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const SRC: &str = "../src/";
const SRC_NOSLASH: &str = "../src";

fn assert_exists(p: &Path) {
    assert!(
        fs::symlink_metadata(p).is_ok(),
        "expected {} to exist",
        p.display()
    );
}

fn assert_missing(p: &Path) {
    assert!(
        fs::symlink_metadata(p).is_err(),
        "expected {} not to exist",
        p.display()
    );
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// 1. Rich fixture: arsync -aH must produce exactly what rsync -aH produces.
// ---------------------------------------------------------------------------

#[test]
fn rich_fixture_matches_rsync() {
    let s = Scratch::new();
    build_rich_fixture(&s.join("src"));
    let src_before = snapshot(&s.join("src"));
    assert_rich_fixture(&src_before);

    let (_a, _r) = s.both_ok(&["-aH", SRC, "dst/"]);
    let (a, r) = s.snap_both("dst");

    // Guard on the test itself: rsync reproduces the source exactly.
    assert_same_tree(
        "rsync -aH copy vs source",
        "rsync",
        &r,
        "source",
        &src_before,
    );
    // The real check: arsync == rsync, entry by entry (type, content, full mode,
    // mtime incl. nanoseconds and directory mtimes, owner, symlink target,
    // device numbers, hard-link groups).
    assert_same_tree("arsync -aH vs rsync -aH", "arsync", &a, "rsync", &r);
    // And the source was not touched.
    assert_same_tree(
        "source after the runs",
        "after",
        &snapshot(&s.join("src")),
        "before",
        &src_before,
    );
}

#[test]
fn rich_fixture_itemize_matches_rsync() {
    let s = Scratch::new();
    build_rich_fixture(&s.join("src"));
    // Destination does not exist: rsync also prints "created directory dst".
    let (a, r) = s.both_ok(&["-aHi", SRC, "dst/"]);
    assert!(
        r.stdout_lines().len() > 20,
        "rsync itemized the fixture: {}",
        r.describe()
    );
    assert_same_lines("-aHi first sync of the rich fixture", &a, &r);
}

// ---------------------------------------------------------------------------
// 2. --delete
// ---------------------------------------------------------------------------

fn build_delete_src(root: &Path) {
    write(&root.join("keep/a.txt"), b"a\n");
    write(&root.join("app.log"), b"source log\n");
    write(&root.join("sub/b.txt"), b"b\n");
    write(&root.join("sub/app.log"), b"source sub log\n");
    write(&root.join("conflict"), b"now a file\n");
    stamp_tree(root, 0);
}

fn build_delete_dest(root: &Path) {
    write(&root.join("stale.txt"), b"stale\n");
    write(&root.join("stale-dir/x/y.txt"), b"y\n");
    write(&root.join("stale-dir/z"), b"z\n");
    mkdir(&root.join("stale-dir/empty"));
    symlink("x", &root.join("stale-link"));
    write(&root.join("sub/stale.txt"), b"sub stale\n");
    write(&root.join("keep.log"), b"excluded, must survive\n");
    write(&root.join("sub/old.log"), b"excluded, must survive\n");
    write(&root.join("app.log"), b"dest version of the log\n");
    write(&root.join("conflict/inner"), b"dir to be replaced\n");
    write(&root.join("cache/data"), b"excluded dir, must survive\n");
    stamp_tree(root, 1);
}

#[test]
fn delete_matches_rsync_and_spares_excluded() {
    let s = Scratch::new();
    build_delete_src(&s.join("src"));
    build_delete_dest(&s.side(Tool::Arsync).join("dst"));
    build_delete_dest(&s.side(Tool::Rsync).join("dst"));

    let (a, r) = s.both_ok(&[
        "-ai",
        "--delete",
        "--exclude=*.log",
        "--exclude=cache/",
        SRC,
        "dst/",
    ]);
    s.assert_sides_equal("--delete --exclude", "dst", true);
    assert_same_lines("-ai --delete itemize (*deleting lines)", &a, &r);

    let d = s.side(Tool::Arsync).join("dst");
    assert_missing(&d.join("stale.txt"));
    assert_missing(&d.join("stale-dir"));
    assert_missing(&d.join("stale-link"));
    assert_missing(&d.join("sub/stale.txt"));
    assert_eq!(read(&d.join("keep.log")), b"excluded, must survive\n");
    assert_eq!(read(&d.join("sub/old.log")), b"excluded, must survive\n");
    assert_eq!(read(&d.join("cache/data")), b"excluded dir, must survive\n");
    assert_eq!(
        read(&d.join("app.log")),
        b"dest version of the log\n",
        "an excluded file is neither transferred nor deleted"
    );
    assert_eq!(read(&d.join("conflict")), b"now a file\n");
}

// ---------------------------------------------------------------------------
// 3. Filters
// ---------------------------------------------------------------------------

fn build_filter_src(root: &Path) {
    for f in [
        "a.log",
        "keep.log",
        "keep.txt",
        "notes.txt",
        "top-only",
        "d/top-only",
        "d/b.log",
        "d/keep.c",
        "d/build",
        "d/obj.o",
        "build/out.o",
        "build/readme",
        "d/build2/x",
        "x/deep/a.tmp",
        "x/deep/a.txt",
        "x/y/deep/b.tmp",
        "deep/c.tmp",
        "deep/c.txt",
        "code/main.c",
        "code/lib/util.c",
        "code/lib/util.h",
        "docs/readme.md",
        "docs/sub/deep.c",
    ] {
        write(&root.join(f), format!("content of {f}\n").as_bytes());
    }
    mkdir(&root.join("empty"));
    stamp_tree(root, 0);
}

fn filter_case(args: &[&str]) -> Scratch {
    let s = Scratch::new();
    build_filter_src(&s.join("src"));
    let mut full: Vec<&str> = vec!["-a"];
    full.extend_from_slice(args);
    full.extend_from_slice(&[SRC, "dst/"]);
    s.both_ok(&full);
    s.assert_sides_equal(&format!("filters {args:?}"), "dst", true);
    s
}

#[test]
fn exclude_patterns_match_rsync() {
    let s = filter_case(&[
        "--exclude=*.log",
        "--exclude=/top-only",
        "--exclude=build/",
        "--exclude=**/deep/*.tmp",
    ]);
    let d = s.side(Tool::Arsync).join("dst");
    assert_missing(&d.join("a.log"));
    assert_missing(&d.join("d/b.log"));
    assert_missing(&d.join("top-only"));
    assert_exists(&d.join("d/top-only")); // anchored pattern only matches at the root
    assert_missing(&d.join("build"));
    assert_exists(&d.join("d/build")); // "build/" only matches directories
    assert_missing(&d.join("x/deep/a.tmp"));
    assert_missing(&d.join("x/y/deep/b.tmp"));
    assert_exists(&d.join("x/deep/a.txt"));
}

#[test]
fn include_star_slash_then_exclude_all_matches_rsync() {
    let s = filter_case(&["--include=*/", "--include=*.c", "--exclude=*"]);
    let d = s.side(Tool::Arsync).join("dst");
    assert_exists(&d.join("code/lib/util.c"));
    assert_exists(&d.join("docs/sub/deep.c"));
    assert_exists(&d.join("empty"));
    assert_missing(&d.join("code/lib/util.h"));
    assert_missing(&d.join("notes.txt"));
}

#[test]
fn filter_rules_match_rsync() {
    let s = filter_case(&[
        "-f",
        "+ keep.log",
        "--filter=- *.log",
        "-f",
        "- *.o",
        "--filter=- /docs/",
    ]);
    let d = s.side(Tool::Arsync).join("dst");
    assert_exists(&d.join("keep.log"));
    assert_missing(&d.join("a.log"));
    assert_missing(&d.join("d/obj.o"));
    assert_missing(&d.join("docs"));
    assert_exists(&d.join("build/readme"));
}

// ---------------------------------------------------------------------------
// 4. Trailing slashes and single-file sources
// ---------------------------------------------------------------------------

fn build_small_src(root: &Path) {
    write(&root.join("file.txt"), b"hello\n");
    write(&root.join("empty"), b"");
    write(&root.join("sub/inner.txt"), b"inner\n");
    write(&root.join("sub/deeper/x.bin"), &pseudo_random(3000, 9));
    mkdir(&root.join("emptydir"));
    symlink("file.txt", &root.join("link"));
    stamp_tree(root, 0);
}

#[test]
fn trailing_slash_semantics_match_rsync() {
    let s = Scratch::new();
    build_small_src(&s.join("src"));

    // No slash: the directory itself is copied into dst.
    s.both_ok(&["-a", SRC_NOSLASH, "dst1"]);
    s.assert_sides_equal("`-a src dst` (dst created)", "dst1", false);
    let a = s.side(Tool::Arsync);
    assert_exists(&a.join("dst1/src/sub/inner.txt"));
    assert_missing(&a.join("dst1/file.txt"));

    // Trailing slash: the contents are copied into dst (dst gets src's attributes).
    s.both_ok(&["-a", SRC, "dst2"]);
    s.assert_sides_equal("`-a src/ dst`", "dst2", true);
    assert_exists(&a.join("dst2/file.txt"));
    assert_missing(&a.join("dst2/src"));

    // No slash, existing destination directory.
    mkdir(&a.join("dst3"));
    mkdir(&s.side(Tool::Rsync).join("dst3"));
    s.both_ok(&["-a", SRC_NOSLASH, "dst3/"]);
    s.assert_sides_equal("`-a src dst/` (dst existed)", "dst3", false);
    assert_exists(&a.join("dst3/src/file.txt"));

    // Several sources, mixed slash styles.
    s.both_ok(&[
        "-a",
        "../src/file.txt",
        "../src/sub",
        "../src/emptydir/",
        "dst4",
    ]);
    s.assert_sides_equal("several sources", "dst4", false);
    assert_exists(&a.join("dst4/file.txt"));
    assert_exists(&a.join("dst4/sub/deeper/x.bin"));
}

#[test]
fn single_file_source_matches_rsync() {
    let s = Scratch::new();
    build_small_src(&s.join("src"));
    let a = s.side(Tool::Arsync);
    let r = s.side(Tool::Rsync);
    let file_entry = |side: &Path, rel: &str| {
        snapshot(&side.join(rel))
            .remove(Path::new("."))
            .expect("root entry")
    };

    // Into an existing directory.
    mkdir(&a.join("dir"));
    mkdir(&r.join("dir"));
    s.both_ok(&["-a", "../src/file.txt", "dir/"]);
    assert_eq!(
        file_entry(&a, "dir/file.txt"),
        file_entry(&r, "dir/file.txt"),
        "file copied into an existing dir"
    );

    // To a new file name.
    s.both_ok(&["-a", "../src/file.txt", "renamed.txt"]);
    let got = file_entry(&a, "renamed.txt");
    assert_eq!(got.kind, Kind::File, "`-a file newname` creates a file");
    assert_eq!(
        got,
        file_entry(&r, "renamed.txt"),
        "file copied to new name"
    );

    // Over an existing, different file.
    write(&a.join("over.txt"), b"old old old\n");
    write(&r.join("over.txt"), b"old old old\n");
    s.both_ok(&["-a", "../src/file.txt", "over.txt"]);
    assert_eq!(file_entry(&a, "over.txt"), file_entry(&r, "over.txt"));
    assert_eq!(read(&a.join("over.txt")), b"hello\n");

    // Missing destination with a trailing slash: a directory is created.
    s.both_ok(&["-a", "../src/file.txt", "newdir/"]);
    assert_eq!(
        file_entry(&a, "newdir/file.txt"),
        file_entry(&r, "newdir/file.txt"),
        "`-a file newdir/` creates newdir/file"
    );
}

// ---------------------------------------------------------------------------
// 5. Dry run
// ---------------------------------------------------------------------------

fn build_dry_dest(root: &Path) {
    write(&root.join("file.txt"), b"different content\n");
    write(&root.join("sub/inner.txt"), b"inner\n");
    chmod(&root.join("sub/inner.txt"), 0o600);
    write(&root.join("extra.txt"), b"not in source\n");
    write(&root.join("extra-dir/x"), b"x\n");
    stamp_tree(root, 7);
}

#[test]
fn dry_run_leaves_destination_untouched() {
    let s = Scratch::new();
    build_small_src(&s.join("src"));
    let a_dst = s.side(Tool::Arsync).join("dst");
    let r_dst = s.side(Tool::Rsync).join("dst");
    build_dry_dest(&a_dst);
    build_dry_dest(&r_dst);
    let before = snapshot(&a_dst);
    let before_id = identity(&a_dst);

    let (a, r) = s.both_ok(&["-ani", "--delete", SRC, "dst/"]);

    assert_same_tree(
        "arsync -n modified the destination",
        "after",
        &snapshot(&a_dst),
        "before",
        &before,
    );
    assert_same_identity("arsync -n", &before_id, &identity(&a_dst));
    // rsync -n did not touch its copy either (guards the test).
    assert_same_tree("rsync -n", "after", &snapshot(&r_dst), "before", &before);

    // It still reports what it would do, exactly like rsync.
    assert!(
        a.stdout_lines().iter().any(|l| l.starts_with("*deleting")),
        "-n -i --delete should list deletions: {}",
        a.describe()
    );
    assert_same_lines("-ani --delete", &a, &r);

    // Into a destination that does not exist: it must not be created.
    let (a, r) = s.both_ok(&["-ani", SRC, "nodst/"]);
    assert_missing(&s.side(Tool::Arsync).join("nodst"));
    assert_missing(&s.side(Tool::Rsync).join("nodst"));
    assert_same_lines("-ani into a missing destination", &a, &r);
}

// ---------------------------------------------------------------------------
// 6. A second run transfers nothing
// ---------------------------------------------------------------------------

#[test]
fn second_run_transfers_nothing() {
    let s = Scratch::new();
    build_rich_fixture(&s.join("src"));
    s.both_ok(&["-aH", SRC, "dst/"]);
    let a_dst = s.side(Tool::Arsync).join("dst");
    let r_dst = s.side(Tool::Rsync).join("dst");
    let a_id = identity(&a_dst);
    let r_id = identity(&r_dst);

    let (a, r) = s.both_ok(&["-aHi", SRC, "dst/"]);
    assert_eq!(r.stdout_str(), "", "rsync's second -aHi run prints nothing");
    assert_eq!(
        a.stdout_str(),
        "",
        "arsync's second -aHi run must print nothing (like rsync)"
    );
    assert_same_identity("rsync second run", &r_id, &identity(&r_dst));
    assert_same_identity(
        "arsync second run rewrote or touched entries",
        &a_id,
        &identity(&a_dst),
    );

    let (a, r) = s.both_ok(&["-aH", "--stats", SRC, "dst/"]);
    let want = "Number of regular files transferred: 0";
    assert_eq!(
        r.line_starting("Number of regular files transferred:")
            .as_deref(),
        Some(want)
    );
    assert_eq!(
        a.line_starting("Number of regular files transferred:")
            .as_deref(),
        Some(want),
        "{}",
        a.describe()
    );
    assert_same_identity("arsync --stats third run", &a_id, &identity(&a_dst));
}

// ---------------------------------------------------------------------------
// 7. Itemize output
// ---------------------------------------------------------------------------

#[test]
fn itemize_first_sync_and_changes_match_rsync() {
    let s = Scratch::new();
    let src = s.join("src");
    build_small_src(&src);
    for f in [
        "same-size.txt",
        "mode-only.txt",
        "touch-only.txt",
        "owner.txt",
        "removed.txt",
    ] {
        write(&src.join(f), format!("{f}\n").as_bytes());
    }
    stamp_tree(&src, 0);
    // Pre-existing empty destination: rsync prints ".d..t...... ./" for the root.
    mkdir(&s.side(Tool::Arsync).join("dst"));
    mkdir(&s.side(Tool::Rsync).join("dst"));

    let (a, r) = s.both_ok(&["-ai", SRC, "dst/"]);
    assert!(r.stdout_lines().iter().any(|l| l == ">f+++++++++ file.txt"));
    assert_same_lines("-ai first sync", &a, &r);
    s.assert_sides_equal("after first sync", "dst", true);

    // Change things in the source, one kind of change per file.
    write(&src.join("file.txt"), b"hello, longer now\n"); // content + size
    set_mtime(&src.join("file.txt"), 1_600_000_000, 111);
    write(&src.join("same-size.txt"), b"SAME-SIZE.TXT\n"); // content, same size
    set_mtime(&src.join("same-size.txt"), 1_600_000_001, 222);
    chmod(&src.join("mode-only.txt"), 0o600); // mode only
    set_mtime(&src.join("touch-only.txt"), 1_600_000_002, 333); // mtime only
    lchown(&src.join("owner.txt"), 1234, 5678); // owner only
    write(&src.join("sub/new.txt"), b"new\n"); // new file
    set_mtime(&src.join("sub/new.txt"), 1_600_000_003, 444);
    set_mtime(&src.join("sub"), 1_600_000_004, 555);
    fs::remove_file(src.join("link")).expect("rm link");
    symlink("sub/inner.txt", &src.join("link")); // new symlink target
    set_mtime(&src.join("link"), 1_600_000_005, 666);
    fs::remove_file(src.join("removed.txt")).expect("rm removed.txt"); // no --delete: kept
    set_mtime(&src, 1_600_000_006, 777);

    let (a, r) = s.both_ok(&["-ai", SRC, "dst/"]);
    assert!(
        r.stdout_lines()
            .iter()
            .any(|l| l == ".f...p..... mode-only.txt"),
        "rsync: {}",
        r.describe()
    );
    s.assert_sides_equal("after second sync", "dst", true);
    assert_same_lines("-ai after changes", &a, &r);
}

// ---------------------------------------------------------------------------
// 8. A killed transfer leaves no truncated destination file
// ---------------------------------------------------------------------------

#[test]
fn killed_transfer_leaves_old_file_intact() {
    const SIZE: usize = 16 * 1024 * 1024;
    let s = Scratch::new();
    let src = s.join("src");
    let dst = s.join("dst");
    let new_big = pseudo_random(SIZE, 100);
    let old_big = pseudo_random(SIZE, 200);
    let brand_new = pseudo_random(SIZE / 4, 300);
    write(&src.join("big.bin"), &new_big);
    write(&src.join("brand-new.bin"), &brand_new);
    write(&dst.join("big.bin"), &old_big);
    set_mtime(&src.join("big.bin"), 1_700_000_000, 5);
    set_mtime(&dst.join("big.bin"), 1_600_000_000, 5);

    // 16 MiB at 2000 KiB/s takes about 8 s: kill it after about one.
    let mut running = spawn(
        Tool::Arsync,
        s.path(),
        &["-a", "--bwlimit=2000", "src/", "dst/"],
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        std::thread::sleep(Duration::from_millis(20));
        if !running.is_running() {
            let run = running.wait(Duration::from_secs(1));
            panic!(
                "arsync --bwlimit=2000 finished a 16 MiB copy in {:?}: the rate limit \
                 is not honoured, so the interruption cannot be tested\n{}",
                started.elapsed(),
                run.describe()
            );
        }
    }
    let killed = running.kill();

    let got = read(&dst.join("big.bin"));
    assert!(
        got == old_big,
        "after SIGKILL, dst/big.bin must still hold the old version; it has {} bytes \
         (old: {} bytes, fnv {:016x}; got fnv {:016x}; new fnv {:016x})\n{}",
        got.len(),
        old_big.len(),
        fnv64(&old_big),
        fnv64(&got),
        fnv64(&new_big),
        killed.describe()
    );
    if let Ok(partial) = fs::read(dst.join("brand-new.bin")) {
        assert!(
            partial == brand_new,
            "brand-new.bin exists under its final name after SIGKILL but is incomplete \
             ({} of {} bytes)",
            partial.len(),
            brand_new.len()
        );
    }

    // A normal run then completes the job.
    arsync(s.path(), &["-a", "src/", "dst/"]).assert_ok();
    let done = snapshot(&dst);
    let want = snapshot(&src);
    for name in ["big.bin", "brand-new.bin"] {
        let k = Path::new(name);
        assert_eq!(done.get(k), want.get(k), "{name} after the completing run");
    }
}

// ---------------------------------------------------------------------------
// 10. --checksum
// ---------------------------------------------------------------------------

fn build_checksum_tree(root: &Path, letter: u8) {
    write(&root.join("c.txt"), &[letter; 4096]);
    write(&root.join("other.txt"), b"unchanged\n");
    stamp_tree(root, 3); // same times for source and destination
}

#[test]
fn checksum_option_matches_rsync() {
    let s = Scratch::new();
    build_checksum_tree(&s.join("src"), b'A');
    build_checksum_tree(&s.side(Tool::Arsync).join("dst"), b'B');
    build_checksum_tree(&s.side(Tool::Rsync).join("dst"), b'B');
    let a_file = s.side(Tool::Arsync).join("dst/c.txt");

    // Same size and mtime: the quick check skips it.
    let (a, r) = s.both_ok(&["-ai", SRC, "dst/"]);
    assert_same_lines("-ai, same size+mtime, different content", &a, &r);
    assert_eq!(
        read(&a_file),
        vec![b'B'; 4096],
        "without -c the file is not updated"
    );
    s.assert_sides_equal("without -c", "dst", true);

    // With -c the content difference is found.
    let (a, r) = s.both_ok(&["-aci", SRC, "dst/"]);
    assert_same_lines("-aci", &a, &r);
    assert_eq!(
        read(&a_file),
        vec![b'A'; 4096],
        "with -c the file is updated"
    );
    s.assert_sides_equal("with -c", "dst", true);
}

// ---------------------------------------------------------------------------
// 11. --stats
// ---------------------------------------------------------------------------

/// Parses rsync's "1,234,567" number format.
fn parse_num(s: &str) -> Option<u64> {
    let digits: String = s.chars().filter(|c| *c != ',').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn stat_value(run: &Run, prefix: &str) -> u64 {
    let line = run
        .line_starting(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} line in {}", run.describe()));
    let rest = line[prefix.len()..].trim();
    let num = rest.split_whitespace().next().unwrap_or("");
    parse_num(num).unwrap_or_else(|| panic!("bad number in {line:?}"))
}

const EXACT_STATS: [&str; 6] = [
    "Number of files:",
    "Number of created files:",
    "Number of deleted files:",
    "Number of regular files transferred:",
    "Total file size:",
    "Total transferred file size:",
];

fn assert_stats_like_rsync(what: &str, a: &Run, r: &Run) {
    for prefix in EXACT_STATS {
        let want = r
            .line_starting(prefix)
            .unwrap_or_else(|| panic!("rsync printed no {prefix:?}: {}", r.describe()));
        assert_eq!(
            a.line_starting(prefix).as_deref(),
            Some(want.as_str()),
            "{what}: --stats line {prefix:?}\n{}",
            a.describe()
        );
    }
    for prefix in ["Total bytes sent:", "Total bytes received:"] {
        stat_value(a, prefix);
    }
}

#[test]
fn stats_lines_match_rsync() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("big"), &pseudo_random(1_234_567, 4));
    write(&src.join("small.txt"), b"small file\n");
    write(&src.join("sub/x.txt"), b"x\n");
    write(&src.join("gone.txt"), b"will be deleted from source\n");
    mkdir(&src.join("empty"));
    symlink("small.txt", &src.join("link"));
    stamp_tree(&src, 0);

    let (a, r) = s.both_ok(&["-a", "--stats", SRC, "dst/"]);
    assert_eq!(stat_value(&r, "Number of regular files transferred:"), 4);
    assert_stats_like_rsync("first sync", &a, &r);
    let first = a;

    // One change and one deletion.
    write(&src.join("small.txt"), b"small file, changed\n");
    fs::remove_file(src.join("gone.txt")).expect("rm gone.txt");
    let (a, r) = s.both_ok(&["-a", "--delete", "--stats", SRC, "dst/"]);
    assert_eq!(stat_value(&r, "Number of regular files transferred:"), 1);
    assert_eq!(stat_value(&r, "Number of deleted files:"), 1);
    assert_stats_like_rsync("second sync with --delete", &a, &r);

    // rsync counts the file data it moved in "Total bytes sent".
    let sent = stat_value(&first, "Total bytes sent:");
    assert!(
        sent >= 1_234_567,
        "Total bytes sent ({sent}) is smaller than the 1,234,567+ bytes of data copied \
         (rsync counts literal data in it)\n{}",
        first.describe()
    );
}

// ---------------------------------------------------------------------------
// 12. Exit codes
// ---------------------------------------------------------------------------

#[test]
fn exit_code_for_missing_source_matches_rsync() {
    let s = Scratch::new();
    let missing = "/nonexistent-arsync-test-source";
    let (a, r) = s.both(&["-a", missing, "dst/"]);
    assert_eq!(r.code(), Some(23), "rsync: {}", r.describe());
    assert_eq!(a.code(), r.code(), "{}", a.describe());
    assert!(
        a.stderr_str().contains(missing),
        "arsync's stderr should name the missing source: {}",
        a.describe()
    );
}

#[test]
fn exit_code_for_partly_missing_sources_matches_rsync() {
    let s = Scratch::new();
    build_small_src(&s.join("src"));
    let (a, r) = s.both(&["-a", "../src/file.txt", "../src/no-such-file", "dst/"]);
    assert_eq!(r.code(), Some(23), "rsync: {}", r.describe());
    assert_eq!(a.code(), r.code(), "{}", a.describe());
    // The existing source was still copied.
    assert_eq!(read(&s.side(Tool::Arsync).join("dst/file.txt")), b"hello\n");
}

#[test]
fn exit_code_for_bad_option_is_1_like_rsync() {
    let s = Scratch::new();
    build_small_src(&s.join("src"));
    let (a, r) = s.both(&["-a", "--no-such-option-xyz", SRC, "dst/"]);
    assert_eq!(r.code(), Some(1), "rsync: {}", r.describe());
    assert_eq!(a.code(), Some(1), "{}", a.describe());
    assert!(!a.stderr.is_empty(), "a usage error is explained on stderr");
    assert_missing(&s.side(Tool::Arsync).join("dst"));

    // No arguments at all is a usage error too.
    let (a, r) = s.both(&[]);
    assert_eq!(r.code(), Some(1), "rsync: {}", r.describe());
    assert_eq!(a.code(), Some(1), "{}", a.describe());
}

// ---------------------------------------------------------------------------
// 13. I/O backends
// ---------------------------------------------------------------------------

#[test]
fn io_backends_produce_rsync_result() {
    let s = Scratch::new();
    build_rich_fixture(&s.join("src"));
    rsync(s.path(), &["-aH", "src/", "want/"]).assert_ok();
    let want = snapshot(&s.join("want"));

    let threads = arsync(s.path(), &["-aH", "--io=threads", "src/", "threads/"]);
    threads.assert_ok();
    assert_same_tree(
        "--io=threads",
        "arsync",
        &snapshot(&s.join("threads")),
        "rsync",
        &want,
    );

    let uring = arsync(s.path(), &["-aH", "--io=uring", "src/", "uring/"]);
    if uring.status.success() {
        assert_same_tree(
            "--io=uring",
            "arsync",
            &snapshot(&s.join("uring")),
            "rsync",
            &want,
        );
    } else {
        // Only acceptable failure: io_uring is unavailable, said clearly.
        let err = uring.stderr_str().to_lowercase();
        assert!(
            err.contains("uring"),
            "--io=uring failed without a clear io_uring error: {}",
            uring.describe()
        );
        eprintln!(
            "note: io_uring unavailable here: {}",
            uring.stderr_str().trim()
        );
    }

    // An unknown backend is a usage error.
    let bad = arsync(s.path(), &["-a", "--io=carrier-pigeon", "src/", "bad/"]);
    assert_eq!(bad.code(), Some(1), "{}", bad.describe());
}

// ---------------------------------------------------------------------------
// Extras: rsync details the engine must also match.
// ---------------------------------------------------------------------------

/// rsync's quick check compares mtimes at whole-second granularity (nanoseconds
/// only with --modify-window=-1): same size and same second means "up to date",
/// even if the content differs, and nothing (not even the time) is updated.
#[test]
fn quick_check_ignores_subsecond_mtime_difference_like_rsync() {
    let s = Scratch::new();
    let build = |root: &Path, content: &[u8], nsec: i64| {
        write(&root.join("f"), content);
        stamp_tree(root, 5);
        set_mtime(&root.join("f"), 1_500_000_000, nsec);
    };
    build(&s.join("src"), b"AAAA\n", 100_000_000);
    build(&s.side(Tool::Arsync).join("dst"), b"BBBB\n", 900_000_000);
    build(&s.side(Tool::Rsync).join("dst"), b"BBBB\n", 900_000_000);

    let (a, r) = s.both_ok(&["-ai", SRC, "dst/"]);
    assert_same_lines("-ai with sub-second mtime difference", &a, &r);
    s.assert_sides_equal("sub-second mtime difference", "dst", true);
    assert_eq!(read(&s.side(Tool::Rsync).join("dst/f")), b"BBBB\n");
}

fn list_xattrs(p: &Path) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let c = cpath(p);
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        n >= 0,
        "llistxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    names.truncate(n as usize);
    let mut out = std::collections::BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).expect("xattr name");
        let mut val = vec![0u8; 65536];
        // SAFETY: valid path, name and buffer.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        assert!(
            len >= 0,
            "lgetxattr {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        val.truncate(len as usize);
        out.insert(name.to_vec(), val);
    }
    out
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let c = cpath(p);
    let n = std::ffi::CString::new(name).expect("xattr name");
    // SAFETY: valid path, name and value buffer.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "lsetxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn xattrs_preserved_with_capital_x_like_rsync() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("f.txt"), b"with xattrs\n");
    write(&src.join("plain.txt"), b"none\n");
    mkdir(&src.join("d"));
    set_xattr(&src.join("f.txt"), "user.arsync.one", b"first value");
    set_xattr(&src.join("f.txt"), "user.arsync.bin", &[0, 1, 2, 255]);
    set_xattr(&src.join("d"), "user.arsync.dir", b"on a directory");
    stamp_tree(&src, 0);

    s.both_ok(&["-aX", SRC, "dst/"]);
    s.assert_sides_equal("-aX tree", "dst", true);
    for rel in ["f.txt", "plain.txt", "d"] {
        let want = list_xattrs(&s.side(Tool::Rsync).join("dst").join(rel));
        let got = list_xattrs(&s.side(Tool::Arsync).join("dst").join(rel));
        assert_eq!(got, want, "xattrs of {rel} (arsync vs rsync)");
    }
    assert!(!list_xattrs(&s.side(Tool::Arsync).join("dst/f.txt")).is_empty());
}

#[test]
fn inplace_updates_the_existing_inode_like_rsync() {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("f.bin"), &pseudo_random(200_000, 11));
    stamp_tree(&src, 0);
    let mut inodes = Vec::new();
    for tool in [Tool::Arsync, Tool::Rsync] {
        let f = s.side(tool).join("dst/f.bin");
        write(&f, &pseudo_random(150_000, 12));
        inodes.push(fs::metadata(&f).expect("stat").ino());
    }
    s.both_ok(&["-a", "--inplace", SRC, "dst/"]);
    s.assert_sides_equal("--inplace", "dst", true);
    for (tool, ino) in [Tool::Arsync, Tool::Rsync].into_iter().zip(inodes) {
        let f = s.side(tool).join("dst/f.bin");
        assert_eq!(
            fs::metadata(&f).expect("stat").ino(),
            ino,
            "{}: --inplace must rewrite the file in place (same inode)",
            tool.name()
        );
    }
}

#[test]
fn progress_options_keep_the_result() {
    let s = Scratch::new();
    build_small_src(&s.join("src"));
    let (a, _) = s.both_ok(&["-a", "--progress", SRC, "dst1/"]);
    s.assert_sides_equal("--progress", "dst1", true);
    assert!(
        a.stdout_str().contains("file.txt"),
        "--progress names the files it transfers: {}",
        a.describe()
    );
    s.both_ok(&["-a", "--info=progress2", SRC, "dst2/"]);
    s.assert_sides_equal("--info=progress2", "dst2", true);
    let (a, r) = s.both_ok(&["-aq", SRC, "dst3/"]);
    assert_eq!(r.stdout_str(), "");
    assert_eq!(a.stdout_str(), "", "-q prints nothing");
    s.assert_sides_equal("-q", "dst3", true);
}

// ---------------------------------------------------------------------------
// Other rsync options the CLI accepts: same tree and itemize output as rsync.
// ---------------------------------------------------------------------------

fn build_options_src(root: &Path) {
    write(&root.join("changed.txt"), b"source\n"); // same size as dest's, other mtime
    write(&root.join("bigger.txt"), b"source, and longer\n");
    write(&root.join("same.txt"), b"identical\n");
    write(&root.join("new.txt"), b"only in source\n");
    write(&root.join("app.log"), b"source log\n");
    stamp_tree(root, 0);
    set_mtime(&root.join("same.txt"), 1_500_000_000, 0);
}

fn build_options_dest(root: &Path) {
    write(&root.join("changed.txt"), b"DEST!!\n");
    write(&root.join("bigger.txt"), b"dest\n");
    write(&root.join("same.txt"), b"identical\n");
    write(&root.join("extra.log"), b"only in dest, excluded\n");
    write(&root.join("extra.txt"), b"only in dest\n");
    stamp_tree(root, 1);
    set_mtime(&root.join("same.txt"), 1_500_000_000, 0);
}

fn option_case(args: &[&str]) {
    let s = Scratch::new();
    build_options_src(&s.join("src"));
    build_options_dest(&s.side(Tool::Arsync).join("dst"));
    build_options_dest(&s.side(Tool::Rsync).join("dst"));
    let mut full = vec!["-ai"];
    full.extend_from_slice(args);
    full.extend_from_slice(&[SRC, "dst/"]);
    let (a, r) = s.both_ok(&full);
    assert_same_lines(&format!("{args:?}"), &a, &r);
    s.assert_sides_equal(&format!("{args:?}"), "dst", true);
}

#[test]
fn size_only_matches_rsync() {
    option_case(&["--size-only"]);
}

#[test]
fn ignore_times_matches_rsync() {
    option_case(&["-I"]);
}

#[test]
fn existing_matches_rsync() {
    option_case(&["--existing"]);
}

#[test]
fn ignore_existing_matches_rsync() {
    option_case(&["--ignore-existing"]);
}

#[test]
fn delete_excluded_matches_rsync() {
    option_case(&["--delete", "--delete-excluded", "--exclude=*.log"]);
}

#[test]
fn whole_file_and_numeric_ids_match_rsync() {
    option_case(&["-W", "--numeric-ids"]);
}

// ---------------------------------------------------------------------------
// Interrupted by a signal: exit 20, old file intact, no temporaries left
// ---------------------------------------------------------------------------

#[test]
fn sigint_mid_update_exits_20_and_leaves_no_temporaries() {
    const SIZE: usize = 8 * 1024 * 1024;
    let s = Scratch::new();
    let src = s.join("src");
    let dst = s.join("dst");
    let new_big = pseudo_random(SIZE, 11);
    let old = pseudo_random(4096, 12);
    write(&src.join("big.bin"), &new_big);
    write(&dst.join("big.bin"), &old);
    set_mtime(&src.join("big.bin"), 1_700_000_000, 0);
    set_mtime(&dst.join("big.bin"), 1_600_000_000, 0);

    // 8 MiB at 1000 KiB/s takes about 8 s: interrupt it after about one.
    let mut running = spawn(
        Tool::Arsync,
        s.path(),
        &["-a", "--bwlimit=1000", "src/", "dst/"],
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        running.is_running(),
        "the rate-limited copy finished too early"
    );
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(running.child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill(SIGINT)");
    let run = running.wait(Duration::from_secs(20));
    assert_eq!(
        run.code(),
        Some(20),
        "exit code after SIGINT\n{}",
        run.describe()
    );
    assert_eq!(
        read(&dst.join("big.bin")),
        old,
        "the old file must be untouched"
    );
    let names: Vec<String> = fs::read_dir(&dst)
        .expect("read dst")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["big.bin".to_owned()], "temporaries left behind");
}

// ---------------------------------------------------------------------------
// Symlinks inside the destination are replaced, never written through
// ---------------------------------------------------------------------------

#[test]
fn symlinks_in_the_destination_are_replaced_not_followed() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("f"), b"new file content");
    write(&src.join("sub/inner"), b"inner content");
    stamp_tree(&src, 7);
    let outside = s.join("outside");
    write(&outside.join("f"), b"outside file");
    write(&outside.join("inner"), b"outside inner");
    for tool in [Tool::Arsync, Tool::Rsync] {
        let dst = s.side(tool).join("dst");
        mkdir(&dst);
        // dst/f points at a file outside; dst/sub points at a directory outside.
        symlink(&outside.join("f").to_string_lossy(), &dst.join("f"));
        symlink(&outside.to_string_lossy(), &dst.join("sub"));
    }
    let (a, r) = s.both(&["-a", "../src/", "dst/"]);
    a.assert_ok();
    r.assert_ok();
    assert_eq!(
        read(&outside.join("f")),
        b"outside file",
        "wrote through dst/f"
    );
    assert_eq!(
        read(&outside.join("inner")),
        b"outside inner",
        "wrote through dst/sub"
    );
    let a_tree = snapshot(&s.side(Tool::Arsync).join("dst"));
    let r_tree = snapshot(&s.side(Tool::Rsync).join("dst"));
    assert_same_tree("symlinks replaced", "arsync", &a_tree, "rsync", &r_tree);
    let dst = s.side(Tool::Arsync).join("dst");
    assert!(fs::symlink_metadata(dst.join("sub")).expect("sub").is_dir());
    assert_eq!(read(&dst.join("sub/inner")), b"inner content");
}

// ---------------------------------------------------------------------------
// -c remembers content hashes across runs
// ---------------------------------------------------------------------------

#[test]
fn checksum_runs_use_and_fill_the_hash_cache() {
    use arsync::core::engine::hashcache::{FileKey, HashCache};
    let s = Scratch::new();
    let src = s.join("src");
    let dst = s.join("dst");
    write(&src.join("f"), b"same content");
    write(&dst.join("f"), b"same content");
    stamp_tree(&src, 4);
    stamp_tree(&dst, 5);
    let cache_home = s.join("cache");
    let run = |extra: &[&str]| {
        // The cache under XDG_CACHE_HOME is what this test looks at (no ARSYNC_CACHE_DIR).
        let out = std::process::Command::new(ARSYNC)
            .env_remove("ARSYNC_CACHE_DIR")
            .args(["-ai", "-c"])
            .args(extra)
            .args(["src/", "dst/"])
            .current_dir(s.path())
            .env("XDG_CACHE_HOME", &cache_home)
            .output()
            .expect("run arsync");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // First run: same content, so no transfer; both files' hashes are now cached.
    let first = run(&[]);
    assert!(!first.contains(">f"), "{first}");
    let cache_file = cache_home.join("arsync/hashes.v1");
    let cache = HashCache::open(cache_file.clone());
    let src_key = FileKey::of(&fs::metadata(src.join("f")).expect("stat"));
    assert_eq!(
        cache.get(&src_key),
        Some(*blake3::hash(b"same content").as_bytes()),
        "the source's hash was not cached"
    );
    // Plant a wrong hash for the source: a run that consults the cache now believes the
    // content differs and transfers the file; one with --no-hash-cache reads the file.
    cache.put(src_key, [0xAA; 32]);
    cache.save().expect("save cache");
    let without = run(&["--no-hash-cache"]);
    assert!(!without.contains(">f"), "{without}");
    let with = run(&[]);
    assert!(
        with.contains(">fc"),
        "the cache was not consulted: {with:?}"
    );
}

/// `--delete-missing-args` with existing and missing arguments in one run: the existing ones
/// are copied and the missing ones deleted (rsync 3.4 does this; 3.2.7's receiver refuses the
/// mixed list, so there is no rsync run to compare with here — the parity suite compares the
/// all-missing case in every role). A single missing argument to a name that is not a
/// directory deletes that name, as rsync's single-file destination rule says.
#[test]
fn delete_missing_args_copies_and_deletes_in_one_run() {
    let s = Scratch::new();
    let side = s.side(Tool::Arsync);
    let (src, dst) = (side.join("src"), side.join("dst"));
    write(&src.join("here"), b"new\n");
    write(&dst.join("gone"), b"old\n");
    write(&dst.join("dir/kept"), b"kept\n");
    let run = arsync(
        &side,
        &[
            "-ai",
            "--delete-missing-args",
            "src/here",
            "src/gone",
            "src/dir",
            "dst/",
        ],
    );
    assert!(run.status.success(), "{}", run.describe());
    assert_eq!(read(&dst.join("here")), b"new\n");
    assert_missing(&dst.join("gone"));
    // Not recursive without --force or --delete: the directory with contents stays.
    assert_exists(&dst.join("dir/kept"));
    let out = run.stdout_lines();
    assert!(out.contains(&"*deleting   gone".to_string()), "{out:?}");
    assert!(
        out.contains(&"cannot delete non-empty directory: dir".to_string()),
        "{out:?}"
    );
    // Without the option the same run is an error and deletes nothing.
    write(&dst.join("gone"), b"old\n");
    let run = arsync(&side, &["-a", "src/here", "src/gone", "dst/"]);
    assert_eq!(run.code(), Some(23), "{}", run.describe());
    assert_exists(&dst.join("gone"));
    // One missing argument to a file name: that file goes.
    let run = arsync(
        &side,
        &["-a", "--delete-missing-args", "src/gone", "dst/gone"],
    );
    assert!(run.status.success(), "{}", run.describe());
    assert_missing(&dst.join("gone"));
}
