//! The directory-tree exchange between two arsyncs, with real processes and real files: the
//! data goes through the protocol (`--stream-data`, the path a remote sync takes), and results
//! are compared with what the real rsync makes of the same trees.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every directory and every non-directory under `root`, sorted (relative paths).
fn walk(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut dirs, mut files) = (vec![PathBuf::new()], Vec::new());
    let mut i = 0;
    while i < dirs.len() {
        let mut names: Vec<_> = fs::read_dir(root.join(&dirs[i]))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let rel = dirs[i].join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                dirs.push(rel);
            } else {
                files.push(rel);
            }
        }
        i += 1;
    }
    (dirs, files)
}

fn random_tree(root: &Path, rng: &mut Rng, dirs: usize, files: usize) {
    mkdir(root);
    let mut all = vec![PathBuf::new()];
    for d in 0..dirs {
        let parent = all[rng.below(all.len())].clone();
        let p = parent.join(format!("d{d}"));
        mkdir(&root.join(&p));
        all.push(p);
    }
    for f in 0..files {
        let dir = &all[rng.below(all.len())];
        let len = rng.below(3000);
        write(
            &root.join(dir).join(format!("f{f}")),
            &pseudo_random(len, rng.next()),
        );
    }
    stamp_tree(root, 7);
}

/// Apply `ops` random edits of every kind the generator handles.
fn mutate(root: &Path, rng: &mut Rng, ops: usize) {
    for op in 0..ops {
        let (dirs, files) = walk(root);
        let dir = dirs[rng.below(dirs.len())].clone();
        let file = files.get(rng.below(files.len())).cloned();
        let t = 1_500_000_000 + rng.below(1_000_000) as i64;
        match (rng.below(10), file) {
            (0, Some(f)) => write(&root.join(f), &pseudo_random(rng.below(5000), rng.next())),
            (1, Some(f)) => set_mtime(&root.join(f), t, 0),
            (2, Some(f)) if !root.join(&f).is_symlink() => chmod(&root.join(f), 0o600),
            (3, _) => write(&root.join(&dir).join(format!("new{op}")), b"new"),
            (4, Some(f)) => fs::remove_file(root.join(f)).unwrap(),
            (5, _) => {
                let d = root.join(&dir).join(format!("nd{op}"));
                write(&d.join("inner/x"), &pseudo_random(100, rng.next()));
                write(&d.join("y"), b"y");
            }
            (6, _) if !dir.as_os_str().is_empty() => fs::remove_dir_all(root.join(&dir)).unwrap(),
            (7, Some(f)) => {
                fs::remove_file(root.join(&f)).unwrap();
                write(&root.join(&f).join("was-a-file"), b"now a dir");
            }
            (8, _) => {
                chmod(&root.join(&dir), 0o750);
                set_mtime(&root.join(&dir), t, 0);
            }
            (9, _) => {
                let l = root.join(&dir).join(format!("ln{}", op % 3));
                let _ = fs::remove_file(&l);
                if !l.exists() {
                    symlink(&format!("target{op}"), &l);
                }
            }
            _ => {}
        }
    }
}

/// Give every entry touched "now" (by [`mutate`]) a fixed past time, so the run is not a race
/// with the clock: rsync and arsync both compare times to the second.
fn restamp_recent(root: &Path, salt: u64) {
    use std::os::unix::fs::MetadataExt;
    let (dirs, files) = walk(root);
    for (i, rel) in files.iter().chain(dirs.iter()).enumerate() {
        let p = root.join(rel);
        if fs::symlink_metadata(&p).unwrap().mtime() > 1_700_000_000 {
            set_mtime(&p, 1_600_000_000 + (salt * 1000 + i as u64) as i64, 5);
        }
    }
}

fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

/// Bytes that crossed the stream (sent + received), from `--stats`.
fn wire_bytes(run: &Run) -> u64 {
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let num = |label: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{out}"));
        line[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap()
    };
    num("Total bytes sent:") + num("Total bytes received:")
}

fn stats_line<'a>(run: &'a Run, label: &str) -> &'a str {
    std::str::from_utf8(&run.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?}"))
}

#[test]
fn an_identical_tree_costs_one_flight_however_many_files() {
    let s = Scratch::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    let mut rng = Rng(42);
    random_tree(&src, &mut rng, 60, 1500);
    arsync(
        s.path(),
        &["-a", "--stream-data", &slash(&src), &slash(&dst)],
    )
    .assert_ok();
    let tree = arsync(
        s.path(),
        &[
            "-ai",
            "--stats",
            "--stream-data",
            &slash(&src),
            &slash(&dst),
        ],
    );
    tree.assert_ok();
    let flat = arsync(
        s.path(),
        &[
            "-ai",
            "--stats",
            "--stream-data",
            "--tree-levels=0",
            &slash(&src),
            &slash(&dst),
        ],
    );
    flat.assert_ok();
    let (t, f) = (wire_bytes(&tree), wire_bytes(&flat));
    assert!(t * 10 < f, "tree exchange {t} bytes vs whole list {f}");
    // The root and two levels of directory hashes, whatever the number of files.
    assert!(t < 61 * 64 + 1024, "{t} bytes for an identical tree");
    // Nothing itemized, and the counts still cover the whole tree.
    assert!(
        !String::from_utf8_lossy(&tree.stdout)
            .lines()
            .any(|l| l.starts_with(['>', '<', 'c', '.', '*'])),
        "{}",
        String::from_utf8_lossy(&tree.stdout)
    );
    assert_eq!(
        stats_line(&tree, "Number of files:"),
        stats_line(&flat, "Number of files:")
    );
    assert_eq!(
        stats_line(&tree, "Total file size:"),
        stats_line(&flat, "Total file size:")
    );
}

#[test]
fn random_edits_on_both_sides_end_as_rsync_ends_them() {
    let s = Scratch::new();
    for seed in 1..=4u64 {
        for levels in [1, 2, 5] {
            let case = s.join(format!("s{seed}-l{levels}"));
            let (src, dst, refd) = (case.join("src"), case.join("dst"), case.join("ref"));
            let mut rng = Rng(seed * 7919 + levels);
            random_tree(&src, &mut rng, 25, 120);
            rsync(s.path(), &["-a", &slash(&src), &slash(&dst)]).assert_ok();
            mutate(&src, &mut rng, 12);
            mutate(&dst, &mut rng, 3);
            restamp_recent(&src, 1);
            restamp_recent(&dst, 2);
            rsync(s.path(), &["-a", &slash(&dst), &slash(&refd)]).assert_ok();
            let a = arsync(
                s.path(),
                &[
                    "-ai",
                    "--delete",
                    "--stream-data",
                    &format!("--tree-levels={levels}"),
                    &slash(&src),
                    &slash(&dst),
                ],
            );
            a.assert_ok();
            let r = rsync(s.path(), &["-ai", "--delete", &slash(&src), &slash(&refd)]);
            r.assert_ok();
            assert_same_tree(
                &format!("seed {seed}, {levels} levels"),
                "arsync",
                &snapshot(&dst),
                "rsync",
                &snapshot(&refd),
            );
            // The same changes reported (order aside: rsync lists deletions first).
            let lines = |run: &Run| {
                let mut v: Vec<String> = String::from_utf8_lossy(&run.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect();
                v.sort();
                v
            };
            assert_eq!(lines(&a), lines(&r), "seed {seed}, {levels} levels");
        }
    }
}

#[test]
fn excluded_files_under_identical_subtrees_survive_delete() {
    let s = Scratch::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    write(&src.join("keep/a/file"), b"a");
    write(&src.join("other/b"), b"b");
    stamp_tree(&src, 3);
    arsync(
        s.path(),
        &["-a", "--stream-data", &slash(&src), &slash(&dst)],
    )
    .assert_ok();
    write(&dst.join("keep/a/build.o"), b"object");
    // Leave the directory's time as the source has it: only the excluded file differs.
    {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(src.join("keep/a")).unwrap();
        set_mtime(&dst.join("keep/a"), m.mtime(), m.mtime_nsec());
    }
    let run = arsync(
        s.path(),
        &[
            "-a",
            "--stats",
            "--delete",
            "--exclude=*.o",
            "--stream-data",
            &slash(&src),
            &slash(&dst),
        ],
    );
    run.assert_ok();
    assert!(dst.join("keep/a/build.o").exists(), "excluded file deleted");
    // The excluded file does not count, so the tree is identical: one flight.
    assert!(wire_bytes(&run) < 600, "{} bytes", wire_bytes(&run));
    // --delete-excluded needs the whole list, and deletes it.
    arsync(
        s.path(),
        &[
            "-a",
            "--delete-excluded",
            "--exclude=*.o",
            "--stream-data",
            &slash(&src),
            &slash(&dst),
        ],
    )
    .assert_ok();
    assert!(!dst.join("keep/a/build.o").exists());
    assert_same_tree(
        "after --delete-excluded",
        "src",
        &snapshot(&src),
        "dst",
        &snapshot(&dst),
    );
}

#[test]
fn a_source_without_trailing_slash_and_a_missing_destination() {
    let s = Scratch::new();
    let src = s.join("data");
    let mut rng = Rng(5);
    random_tree(&src, &mut rng, 10, 40);
    let bak = s.join("bak");
    // Missing destination: the whole tree in one want.
    arsync(
        s.path(),
        &[
            "-a",
            "--stream-data",
            &src.display().to_string(),
            &slash(&bak),
        ],
    )
    .assert_ok();
    assert_same_tree(
        "copy",
        "src",
        &snapshot(&src),
        "bak",
        &snapshot(&bak.join("data")),
    );
    // Nothing changed: the root matches although the source list has no "." entry.
    let run = arsync(
        s.path(),
        &[
            "-a",
            "--stats",
            "--stream-data",
            &src.display().to_string(),
            &slash(&bak),
        ],
    );
    run.assert_ok();
    assert!(wire_bytes(&run) < 2048, "{} bytes", wire_bytes(&run));
}

fn stat_num(run: &Run, label: &str) -> u64 {
    stats_line(run, label)[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

#[test]
fn renamed_and_copied_files_are_rebuilt_from_the_destination() {
    let s = Scratch::new();
    let (src, dst, refd) = (s.join("src"), s.join("dst"), s.join("ref"));
    let big = pseudo_random(600_000, 11);
    write(&src.join("a/data.bin"), &big);
    write(&src.join("b/other.bin"), &pseudo_random(300_000, 12));
    stamp_tree(&src, 1);
    arsync(
        s.path(),
        &["-a", "--stream-data", &slash(&src), &slash(&dst)],
    )
    .assert_ok();
    // A rename (with a small edit), and a copy under a new name.
    fs::remove_file(src.join("a/data.bin")).unwrap();
    let mut edited = big.clone();
    edited[1000..1100].copy_from_slice(&[7; 100]);
    write(&src.join("moved/data.bin"), &edited);
    write(&src.join("b/copy.bin"), &pseudo_random(300_000, 12));
    restamp_recent(&src, 3);
    rsync(s.path(), &["-a", &slash(&dst), &slash(&refd)]).assert_ok();
    let run = arsync(
        s.path(),
        &[
            "-a",
            "--delete",
            "--stats",
            "--stream-data",
            &slash(&src),
            &slash(&dst),
        ],
    );
    run.assert_ok();
    rsync(s.path(), &["-a", "--delete", &slash(&src), &slash(&refd)]).assert_ok();
    assert_same_tree(
        "renames",
        "arsync",
        &snapshot(&dst),
        "rsync",
        &snapshot(&refd),
    );
    // 900 KB of new files; only the edited chunks travel, the rest comes from the old copies
    // (the renamed file's old path is deleted only after it served).
    let literal = stat_num(&run, "Literal data:");
    let matched = stat_num(&run, "Matched data:");
    assert!(literal < 40_000, "{literal} literal bytes");
    assert!(matched > 850_000, "{matched} matched bytes");
    assert!(!dst.join("a/data.bin").exists());
}

/// Without `-l` the sender lists its symlinks for the receiver to skip (its `--delete`
/// spares their names) but leaves them out of the directory hashes, as the receiver's own
/// scan does: an unchanged tree still costs one flight, and a file of a symlink's name stays.
#[test]
fn symlinks_skipped_without_l_leave_the_hashes_alone() {
    let s = Scratch::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    let mut rng = Rng(7);
    random_tree(&src, &mut rng, 30, 300);
    for i in 0..20 {
        std::os::unix::fs::symlink("target", src.join(format!("link{i}"))).unwrap();
    }
    // And one in every directory: were they hashed on one side only, every directory would
    // be listed again on each run.
    let (dirs, _) = walk(&src);
    for d in &dirs {
        std::os::unix::fs::symlink("target", src.join(d).join("deep-link")).unwrap();
    }
    assert!(dirs.len() > 20, "{} directories", dirs.len());
    let (from, to) = (slash(&src), slash(&dst));
    let base = ["-rt", "--delete", "--stats", "--stream-data"];
    let run = |extra: Option<&str>| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend(extra);
        v.extend([from.as_str(), to.as_str()]);
        let r = arsync(s.path(), &v);
        r.assert_ok();
        r
    };
    run(None);
    fs::write(
        dst.join("link3"),
        b"a file where the source has a symlink\n",
    )
    .unwrap();
    let again = run(None);
    let flat = run(Some("--tree-levels=0"));
    let (t, f) = (wire_bytes(&again), wire_bytes(&flat));
    assert!(t * 5 < f, "tree exchange {t} bytes vs whole list {f}");
    assert_eq!(
        fs::read(dst.join("link3")).unwrap(),
        b"a file where the source has a symlink\n"
    );
    assert!(!dst.join("link4").exists());
    // rsync counts the symlinks it lists: so does arsync.
    assert!(
        stats_line(&again, "Number of files:").contains(&format!("link: {}", 20 + dirs.len())),
        "{}",
        stats_line(&again, "Number of files:")
    );
}
