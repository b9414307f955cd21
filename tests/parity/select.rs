//! Issue 15, select: the options that choose which files are in the transfer — `-m`,
//! `--max-size`/`--min-size`, `-x`, `--ignore-missing-args` — each against rsync in every role
//! it can take, with a fixture where the option changes the result. Destinations exist before
//! the run (rsync's "created directory" line for a fresh one is another area's).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::common::*;
use crate::harness::{check, check_sources, Case, Lines, Role, ALL_ROLES};

/// Empty directory chains, a directory whose only file is excluded, and ones with files.
fn empty_dir_chains(src: &Path, dst: &Path) {
    // An old copy of a chain that -m prunes (--delete removes it).
    mkdir(&dst.join("a/b"));
    stamp_tree(dst, 1);
    mkdir(&src.join("a/b/c"));
    mkdir(&src.join("empty"));
    write(&src.join("d/e/f.txt"), b"kept\n");
    write(&src.join("g/h.o"), b"excluded\n");
    write(&src.join("g/i/j.o"), b"excluded\n");
    write(&src.join("top.txt"), b"top\n");
    mkdir(&src.join("d/empty-beside-a-file"));
    stamp_tree(src, 0);
}

#[test]
fn prune_empty_dirs() {
    for args in [
        &["-ai", "-m", "--exclude=*.o"][..],
        // A receiver-side rule keeps a directory from being pruned (rsync(1) on -m).
        &["-ai", "-m", "--exclude=*.o", "--filter=protect empty/"],
        &["-ai", "-m", "--delete"],
    ] {
        check(&Case {
            name: "-m",
            args,
            build: empty_dir_chains,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
    // Without -m the empty chains travel: the case above is not vacuous.
    let s = Scratch::new();
    empty_dir_chains(&s.join("src"), &s.join("dst"));
    arsync(s.path(), &["-a", "--exclude=*.o", "src/", "plain/"]).assert_ok();
    arsync(s.path(), &["-a", "-m", "--exclude=*.o", "src/", "pruned/"]).assert_ok();
    assert!(s.join("plain/a/b/c").is_dir() && s.join("plain/g").is_dir());
    assert!(!s.join("pruned/a").exists() && !s.join("pruned/g").exists());
    assert!(s.join("pruned/d/e/f.txt").is_file());
}

/// Files around the size limits, and a destination holding an older big file (skipped, so
/// neither updated nor deleted).
fn sized_files(src: &Path, dst: &Path) {
    for (name, len) in [
        ("zero", 0),
        ("s99", 99),
        ("s100", 100),
        ("s1000", 1000),
        ("s1023", 1023),
        ("s1024", 1024),
        ("s1025", 1025),
        ("s1536", 1536),
        ("sub/s5000", 5000),
        ("sub/s10", 10),
    ] {
        write(&src.join(name), &pseudo_random(len, len as u64));
    }
    stamp_tree(src, 0);
    write(&dst.join("sub/s5000"), &pseudo_random(4000, 9));
    write(&dst.join("s99"), b"old");
    stamp_tree(dst, 1);
}

#[test]
fn max_size() {
    for args in [
        &["-ai", "--max-size=1k"][..],
        &["-ai", "--max-size=1KB"],
        &["-ai", "--max-size=1k-1", "--delete"],
        &["-ai", "--max-size=1.5K"],
    ] {
        check(&Case {
            name: "--max-size",
            args,
            build: sized_files,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

#[test]
fn min_size() {
    for args in [
        &["-ai", "--min-size=100"][..],
        &["-ai", "--min-size=1k+1", "--delete"],
        &["-ai", "--min-size=1kb", "--max-size=1536"],
    ] {
        check(&Case {
            name: "--min-size",
            args,
            build: sized_files,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// A bad size is a usage error (exit 1), as in rsync.
#[test]
fn bad_size_is_a_usage_error() {
    let s = Scratch::new();
    mkdir(&s.join("src"));
    for arg in ["--max-size=1x", "--min-size=1k+2", "--max-size=-5"] {
        let (a, r) = s.both(&["-a", arg, "../src/", "../dst/"]);
        assert_eq!(
            a.code(),
            r.code(),
            "{arg}\n{}\n{}",
            a.describe(),
            r.describe()
        );
        assert_eq!(a.code(), Some(1), "{arg}: {}", a.describe());
    }
}

/// The roles whose sources are local paths: a case's extra source arguments (before `src/`)
/// can only be named there.
const LOCAL_SOURCES: [Role; 4] = [
    Role::Local,
    Role::MerklePush,
    Role::RsyncPush,
    Role::RsyncClientPush,
];

/// The tmpfs mounts made under the scratch directories, unmounted by [`Unmount`].
static MOUNTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Unmounts every mount in [`MOUNTS`] when dropped (also when the test panics) and removes
/// the scratch directory each sat in (its own drop could not while the mount was there).
/// Tests that mount hold it for their whole run, one at a time: one test's end must not
/// unmount what another is still using.
struct Unmount(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// Held by the test that mounts (see [`Unmount`]).
static MOUNTING: Mutex<()> = Mutex::new(());

impl Unmount {
    fn hold() -> Unmount {
        Unmount(MOUNTING.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Unmount {
    fn drop(&mut self) {
        let mounts = std::mem::take(&mut *MOUNTS.lock().unwrap_or_else(|e| e.into_inner()));
        for m in mounts {
            let _ = Command::new("umount").arg(&m).status();
            // <scratch>/<side>/src/mnt
            if let Some(scratch) = m.ancestors().nth(3) {
                let _ = std::fs::remove_dir_all(scratch);
            }
        }
    }
}

/// A source with a tmpfs mounted at `src/mnt` (holding files and a directory).
fn with_mount(src: &Path, dst: &Path) {
    mkdir(dst);
    write(&src.join("here.txt"), b"same filesystem\n");
    write(&src.join("dir/x"), b"x\n");
    let mnt = src.join("mnt");
    mount_tmpfs(&mnt);
    write(&mnt.join("other.txt"), b"another filesystem\n");
    write(&mnt.join("deep/y"), b"y\n");
    stamp_tree(src, 0);
}

#[test]
fn one_file_system() {
    let _unmount = Unmount::hold();
    for args in [
        &["-ai", "-x"][..],
        &["-ai", "-xx"],
        &["-ai", "--one-file-system"],
    ] {
        check(&Case {
            name: "-x",
            args,
            build: with_mount,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// Mounts a small tmpfs at `at` (unmounted by [`Unmount`]).
fn mount_tmpfs(at: &Path) {
    mkdir(at);
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mount tmpfs on {}", at.display());
    MOUNTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(at.to_path_buf());
}

/// [`with_mount`], and a destination that had a copy with more in it: extra files at the
/// top, files inside its `mnt` (the sender does not list the mount point's contents, so
/// `--delete` must leave them) and a file system of its own mounted at `disk` that the
/// source does not have (a mount point is never deleted with `-x`).
fn with_mount_over_an_old_copy(src: &Path, dst: &Path) {
    with_mount(src, dst);
    write(&dst.join("gone.txt"), b"deleted\n");
    write(&dst.join("mnt/kept.txt"), b"kept\n");
    write(&dst.join("mnt/deep/old"), b"kept too\n");
    mount_tmpfs(&dst.join("disk"));
    write(&dst.join("disk/backup"), b"on another file system\n");
    stamp_tree(dst, 1);
}

/// Issue 15 (found in wave 2): `-x --delete` deleted what the destination had inside a
/// mount point the sender left out, in every role; rsync keeps it.
#[test]
fn one_file_system_with_delete_keeps_what_is_inside_a_mount_point() {
    let _unmount = Unmount::hold();
    for args in [&["-ai", "-x", "--delete"][..], &["-ai", "-xx", "--delete"]] {
        check(&Case {
            name: "-x --delete",
            args,
            build: with_mount_over_an_old_copy,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// A source that exists beside one named in the case's arguments that does not.
fn one_source(src: &Path, dst: &Path) {
    mkdir(dst);
    write(&src.join("f"), b"f\n");
    stamp_tree(src, 0);
}

#[test]
fn ignore_missing_args() {
    // The missing argument is a local path before `src/`, so only the roles whose sources are
    // local can name it: the harness's pull roles have the single source `host:src/`.
    for args in [
        &["-ai", "--ignore-missing-args", "not-there"][..],
        // Without the option it is an error (exit 23): the option is what makes the difference.
        &["-ai", "not-there"],
    ] {
        check(&Case {
            name: "--ignore-missing-args",
            args,
            build: one_source,
            roles: &LOCAL_SOURCES,
            lines: Lines::Compare,
        });
    }
}

/// A source directory without the names the case gives, and a destination that has each of
/// them: a file, a symlink, an empty directory, a directory with contents.
fn missing_sources(src: &Path, dst: &Path) {
    write(&src.join("here"), b"here\n");
    write(&dst.join("gone"), b"gone\n");
    symlink("nowhere", &dst.join("gone-link"));
    mkdir(&dst.join("empty-dir"));
    write(&dst.join("full-dir/sub/f"), b"f\n");
    stamp_tree(src, 0);
    stamp_tree(dst, 1);
}

/// The missing arguments of [`missing_sources`], in no particular order.
const MISSING: [&str; 4] = ["src/gone", "src/full-dir", "src/gone-link", "src/empty-dir"];

#[test]
fn delete_missing_args() {
    // Every source argument is missing, then the same names after one that exists (a list
    // mixing mode-0 entries with others: rsync before 3.5 refused it, "invalid file mode 00").
    let mut mixed = vec!["src/here"];
    mixed.extend(MISSING);
    for sources in [&MISSING[..], &mixed] {
        delete_missing_args_with(sources);
    }
}

fn delete_missing_args_with(sources: &[&str]) {
    for args in [
        // A directory with contents stays ("cannot delete non-empty directory"). (No
        // filters: rsync's receiving server has none without --delete, and rsync 3.2.7's
        // receiving client refuses a list naming an excluded file.)
        &["-ai", "--delete-missing-args"][..],
        // --force (or --delete) deletes it with its contents.
        &["-ai", "--delete-missing-args", "--force"],
        &["-ain", "--delete-missing-args", "--delete"],
        &["-av", "--delete-missing-args", "--force"],
        // Without the option the missing arguments are errors (exit 23), nothing is deleted.
        &["-ai"],
    ] {
        check_sources(
            &Case {
                name: "--delete-missing-args",
                args,
                build: missing_sources,
                roles: &ALL_ROLES,
                lines: Lines::Compare,
            },
            sources,
        );
    }
}

/// A tree a few levels deep, and a destination that holds the top-level directories the runs
/// make (so its own time stays as stamped).
fn nested(src: &Path, dst: &Path) {
    write(&src.join("d/e/f.txt"), b"f\n");
    write(&src.join("d/e/g/h.txt"), b"h\n");
    write(&src.join("top.txt"), b"top\n");
    chmod(&src.join("d"), 0o750);
    stamp_tree(src, 0);
    for top in ["src", "d", "e"] {
        mkdir(&dst.join(top));
    }
    stamp_tree(dst, 1);
}

#[test]
fn relative() {
    for args in [&["-ai", "-R"][..], &["-ai", "--relative", "--exclude=g"]] {
        check(&Case {
            name: "-R",
            args,
            build: nested,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
    // A `/./` anchor, and a deeper path whose directories are implied: extra local sources
    // before `src/`, so only the roles whose sources are local (as for --ignore-missing-args).
    for args in [
        &["-ai", "-R", "src/./d/e"][..],
        &["-ai", "-R", "src/d/e/g/"],
        &["-ai", "-R", "--no-R", "src/d/e"],
    ] {
        check(&Case {
            name: "-R with anchors",
            args,
            build: nested,
            roles: &LOCAL_SOURCES,
            lines: Lines::Compare,
        });
    }
}
