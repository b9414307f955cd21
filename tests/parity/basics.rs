//! The rich fixture and the everyday archive options: the harness's own guard cases.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, Case, Lines, ALL_ROLES};

fn rich(src: &Path, _dst: &Path) {
    build_rich_fixture(src);
}

/// A destination that holds an older version: changed, missing and extraneous files.
fn older(src: &Path, dst: &Path) {
    write(&src.join("same.txt"), b"unchanged\n");
    write(&src.join("changed.txt"), b"new content\n");
    write(&src.join("dir/new.txt"), b"new file\n");
    write(&src.join("dir/deep/x"), &pseudo_random(70_000, 1));
    stamp_tree(src, 0);
    write(&dst.join("same.txt"), b"unchanged\n");
    write(&dst.join("changed.txt"), b"old\n");
    write(&dst.join("dir/extra.txt"), b"extraneous\n");
    write(&dst.join("dir/deep/x"), &pseudo_random(70_000, 2));
    stamp_tree(dst, 1);
    set_mtime(&dst.join("same.txt"), 1_600_000_000, 0);
    set_mtime(&src.join("same.txt"), 1_600_000_000, 0);
}

#[test]
fn rich_fixture_archive() {
    check(&Case {
        name: "rich fixture -aHi",
        args: &["-aHi"],
        build: rich,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// `--inc-recursive` (`--i-r`) and `--no-inc-recursive` (`--no-i-r`): the later one wins; the
/// tree and the lines are rsync's either way.
#[test]
fn incremental_recursion_on_and_off() {
    for args in [
        &["-ai", "--delete", "--no-inc-recursive", "--inc-recursive"][..],
        &["-ai", "--delete", "--i-r", "--no-i-r"],
    ] {
        check(&Case {
            name: "older copy, incremental recursion on or off",
            args,
            build: older,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

#[test]
fn update_an_older_copy_with_delete() {
    check(&Case {
        name: "older copy -ai --delete",
        args: &["-ai", "--delete"],
        build: older,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Entries whose kind changes: a file becomes a symlink, a directory becomes a symlink, a
/// symlink becomes a file (rsync itemizes each as new: `cL+++++++++`).
fn kinds_change(src: &Path, dst: &Path) {
    write(&src.join("target"), b"t\n");
    symlink("target", &src.join("was-file"));
    mkdir(&src.join("d"));
    symlink("d", &src.join("was-dir"));
    write(&src.join("was-link"), b"now a file\n");
    stamp_tree(src, 0);
    write(&dst.join("was-file"), b"old file\n");
    mkdir(&dst.join("was-dir"));
    symlink("elsewhere", &dst.join("was-link"));
    stamp_tree(dst, 1);
}

#[test]
fn kind_changes_itemize_as_new() {
    check(&Case {
        name: "kinds change -ai",
        args: &["-ai"],
        build: kinds_change,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Without `-t` a file sent over an existing one gets the time of the transfer: rsync
/// itemizes it `>f.sT......` (capital `T`).
#[test]
fn without_times_a_transfer_reports_capital_t() {
    check(&Case {
        name: "-rli without -t",
        args: &["-rli"],
        build: older,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// `-I` (`--ignore-times`): every file is sent, the unchanged one too (`same.txt`), in every
/// role — a pushing client tells a receiving rsync with `I` in its option letters.
#[test]
fn ignore_times_sends_unchanged_files() {
    check(&Case {
        name: "older copy -ai -I",
        args: &["-ai", "-I"],
        build: older,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}
