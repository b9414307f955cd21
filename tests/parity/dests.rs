//! Issue 15, dests: `--link-dest`, `--compare-dest`, `--copy-dest` with the other tree inside
//! the destination (`dst/prev`, given relative to it: the harness compares `dst`, and a hard
//! link into `prev` shows there as a shared inode). The fixture has a file the same in `prev`
//! (`a`, `sub/g`), one passing the quick check with other content (`b`), one failing it
//! (`c`), one differing in permissions only (`d`, copied and its mode fixed: `cf...p.....`),
//! and destination files `e` (different, but exact in `prev`) and `f` (the same as the
//! source and in `prev`). `-i` lines are compared: rsync shows a linked or skipped file only
//! at `-ii`; a file failing the check in `prev` (`c`, and `b` with `-c`) is itemized against
//! the copy there (`>f.st......`).

use std::path::Path;

use crate::common::*;
use crate::harness::{check, rsync_differs, Case, Lines, ALL_ROLES};

const T: i64 = 1_500_000_000;

/// `content` at `p` with mode `mode` and time `T`.
fn file(p: &Path, content: &[u8], mode: u32) {
    write(p, content);
    chmod(p, mode);
    set_mtime(p, T, 0);
}

/// The fixture: every file either settled by `prev` or not in it, and `c` (failing the quick
/// check in `prev`).
fn fixture(src: &Path, dst: &Path) {
    settled_by_prev(src, dst);
    file(&src.join("c"), b"source c\n", 0o644);
    file(&dst.join("prev/c"), b"older\n", 0o644);
    for d in [src.to_path_buf(), dst.join("prev"), dst.to_path_buf()] {
        set_mtime(&d, T, 0);
    }
}

/// The fixture without `c`.
fn settled_by_prev(src: &Path, dst: &Path) {
    let prev = dst.join("prev");
    for (name, s, p, mode) in [
        ("a", &b"same a\n"[..], &b"same a\n"[..], 0o644),
        ("b", b"source\n", b"SOURCE\n", 0o644),
        ("d", b"same d\n", b"same d\n", 0o600),
        ("e", b"same e\n", b"same e\n", 0o644),
        ("f", b"same f\n", b"same f\n", 0o644),
        ("sub/g", b"same g\n", b"same g\n", 0o644),
    ] {
        file(&src.join(name), s, 0o644);
        file(&prev.join(name), p, mode);
    }
    file(&dst.join("e"), b"other e\n", 0o644);
    file(&dst.join("f"), b"same f\n", 0o644);
    for d in [
        src.to_path_buf(),
        src.join("sub"),
        prev.join("sub"),
        prev,
        dst.to_path_buf(),
    ] {
        set_mtime(&d, T, 0);
    }
}

/// `args` in every role over [`fixture`], also with `-c` added.
fn check_all(name: &str, args: &[&str]) {
    let mut with_c = args.to_vec();
    with_c.push("-c");
    for args in [args, &with_c[..]] {
        check(&Case {
            name,
            args,
            build: fixture,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

#[test]
fn link_dest_hard_links_unchanged_files() {
    rsync_differs(&["-a", "--link-dest=prev"], &["-a"], fixture);
    check_all("--link-dest", &["-ai", "--link-dest=prev"]);
    // Tried in order: a directory that does not exist is passed over.
    check_all(
        "--link-dest twice",
        &["-ai", "--link-dest=none", "--link-dest=prev"],
    );
}

#[test]
fn compare_dest_skips_unchanged_files() {
    rsync_differs(&["-a", "--compare-dest=prev"], &["-a"], fixture);
    check_all("--compare-dest", &["-ai", "--compare-dest=prev"]);
}

#[test]
fn copy_dest_copies_unchanged_files() {
    rsync_differs(&["-a", "--copy-dest=prev"], &["-a"], fixture);
    check_all("--copy-dest", &["-ai", "--copy-dest=prev"]);
}

#[test]
fn mixed_dest_kinds_are_refused() {
    check_all(
        "--link-dest --copy-dest",
        &["-ai", "--link-dest=prev", "--copy-dest=prev"],
    );
}

/// The fixture, with `sub/` already here and identical to the source's: rsync still looks
/// each of its files up in DIR (linking it, or removing it under `--compare-dest`), so the
/// directory-tree exchange, which would skip an identical directory, is not used.
fn up_to_date_here(src: &Path, dst: &Path) {
    fixture(src, dst);
    file(&dst.join("sub/g"), b"same g\n", 0o644);
    for d in [dst.join("sub"), dst.to_path_buf()] {
        set_mtime(&d, T, 0);
    }
}

#[test]
fn dests_look_up_files_already_up_to_date() {
    for (name, args) in [
        (
            "--link-dest, up to date here",
            &["-ai", "--link-dest=prev"][..],
        ),
        (
            "--compare-dest, up to date here",
            &["-ai", "--compare-dest=prev"],
        ),
    ] {
        check(&Case {
            name,
            args,
            build: up_to_date_here,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}
