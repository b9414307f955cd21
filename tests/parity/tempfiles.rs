//! Issue 15, tempfiles: `-T/--temp-dir` and `--delay-updates`, each against rsync in every
//! role, over fixtures where the option changes the outcome (checked with `rsync_differs`).
//!
//! A temp directory that works leaves the same tree as none, so `-T` is also run into a
//! directory that cannot hold files (`/proc`: every file fails, exit 23) and into one that
//! does not exist (exit 1); the working one must be empty afterwards on both sides.
//! `--delay-updates` shows in the tree through rsync's handling of its `.~tmp~` waiting room:
//! a file of that name in the way is replaced by the directory, which is removed at the end.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, check_then, rsync_differs, Case, Lines, Role, ALL_ROLES};

/// `f` and `d/g` updated, `new` and `d/e/deep` new, `same` unchanged; `tmp` (beside the
/// destination) for `-T ../tmp`; `.~tmp~` a file in the way of `--delay-updates`' directory,
/// `d/.~tmp~/same` a partial file left for `d/same`, which is up to date.
fn fixture(src: &Path, dst: &Path) {
    write(&src.join("f"), b"new content\n");
    write(&src.join("d/g"), &pseudo_random(300 << 10, 7));
    write(&src.join("new"), b"new\n");
    write(&src.join("d/e/deep"), b"deep\n");
    write(&src.join("same"), b"same\n");
    write(&src.join("d/same"), b"same\n");
    stamp_tree(src, 0);
    write(&dst.join("f"), b"old\n");
    write(&dst.join("d/g"), &pseudo_random(200 << 10, 7));
    write(&dst.join("same"), b"same\n");
    write(&dst.join(".~tmp~"), b"in the way\n");
    write(&dst.join("d/same"), b"same\n");
    write(&dst.join("d/.~tmp~/same"), b"sa");
    stamp_tree(dst, 1);
    for root in [src, dst] {
        set_mtime(&root.join("same"), 1_600_000_000, 0);
        set_mtime(&root.join("d/same"), 1_600_000_000, 0);
    }
    if let Some(side) = dst.parent() {
        mkdir(&side.join("tmp"));
    }
}

/// Run `args` over [`fixture`] in every role, comparing trees and lines; then the temp
/// directory beside the destination must be empty on both sides.
fn check_all(name: &str, args: &[&str]) {
    check_then(
        &Case {
            name,
            args,
            build: fixture,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        },
        "dst/",
        |role, a, r| {
            for side in [a, r] {
                let left: Vec<_> = std::fs::read_dir(side.join("tmp")).expect("tmp").collect();
                assert!(left.is_empty(), "{name} ({role:?}): {side:?}/tmp: {left:?}");
            }
        },
    );
}

#[test]
fn temp_dir_stages_files_elsewhere() {
    check_all("-T ../tmp", &["-ai", "-T", "../tmp"]);
    check_all(
        "--temp-dir=../tmp",
        &["-ai", "--temp-dir=../tmp", "--delete"],
    );
}

#[test]
fn temp_dir_that_holds_nothing_fails_every_file() {
    // rsync's sending client itemizes the files it sends even when the receiver fails them:
    // the trees and the exit code (23) are compared.
    rsync_differs(&["-a", "-T", "/proc"], &["-a"], fixture);
    check(&Case {
        name: "-T /proc",
        args: &["-a", "-T", "/proc"],
        build: fixture,
        roles: &ALL_ROLES,
        lines: Lines::Ignore,
    });
}

#[test]
fn temp_dir_missing_is_a_usage_error() {
    check(&Case {
        name: "-T ../nope",
        args: &["-a", "-T", "../nope"],
        build: fixture,
        roles: &ALL_ROLES,
        lines: Lines::Ignore,
    });
}

#[test]
fn delay_updates_puts_files_in_place_at_the_end() {
    rsync_differs(&["-a", "--delay-updates"], &["-a"], fixture);
    check_all("--delay-updates", &["-ai", "--delay-updates"]);
    check_all(
        "--delay-updates -T",
        &["-ai", "--delay-updates", "-T", "../tmp", "--delete"],
    );
}

#[test]
fn delay_updates_with_backups() {
    check_all("--delay-updates -b", &["-rlpDi", "--delay-updates", "-b"]);
}

#[test]
fn delay_updates_refuses_inplace() {
    check(&Case {
        name: "--delay-updates --inplace",
        args: &["-a", "--delay-updates", "--inplace"],
        build: fixture,
        roles: &[Role::Local],
        lines: Lines::Ignore,
    });
}
