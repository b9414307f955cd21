//! Everyday options that earlier waves accepted without a case against rsync: the
//! `--delete-WHEN` spellings, filter rules read from files, `--compress-level`.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, Case, Lines, ALL_ROLES};

/// An older destination with extraneous files, and filter files beside `src/`.
fn with_rule_files(src: &Path, dst: &Path) {
    write(&src.join("keep.c"), b"int main;\n");
    write(&src.join("skip.o"), b"object\n");
    write(&src.join("sub/also.c"), b"more\n");
    write(&src.join("sub/also.o"), b"object\n");
    stamp_tree(src, 0);
    write(&dst.join("stale.txt"), b"extraneous\n");
    write(&dst.join("sub/stale.o"), b"extraneous object\n");
    stamp_tree(dst, 1);
    let side = src.parent().expect("a side directory");
    write(&side.join("exclude.txt"), b"# objects\n*.o\n\n");
    write(&side.join("include.txt"), b"*.c\n*/\n");
}

#[test]
fn delete_when_spellings() {
    for when in [
        "--delete-before",
        "--delete-during",
        "--delete-after",
        "--delete-delay",
        "--del",
    ] {
        check(&Case {
            name: when,
            args: &["-ai", when],
            build: with_rule_files,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// A destination equal to the source (its directories' times too) but for extraneous files:
/// only the deletions change a directory's time.
fn extraneous_in_equal_dirs(src: &Path, dst: &Path) {
    for root in [src, dst] {
        write(&root.join("keep.c"), b"int main;\n");
        write(&root.join("sub/also.c"), b"more\n");
    }
    write(&dst.join("stale.txt"), b"extraneous\n");
    write(&dst.join("sub/stale.o"), b"extraneous object\n");
    stamp_tree(src, 0);
    stamp_tree(dst, 0);
}

/// rsync's `--delete-before` deletes in a pass of its own, and its generator then itemizes the
/// directories whose times the deletions changed (`.d..t`); during the transfer it itemizes a
/// directory before deleting in it. Combining two WHENs is a usage error.
#[test]
fn delete_before_itemizes_what_its_pass_changed() {
    for when in ["--delete-before", "--delete-during", "--delete-after"] {
        check(&Case {
            name: when,
            args: &["-ai", when],
            build: extraneous_in_equal_dirs,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
    for both in [
        &["-a", "--delete-before", "--delete-after"][..],
        &["-a", "--delete-delay", "--delete-after"][..],
        &["-a", "--delete-delay", "--delete-during"][..],
    ] {
        check(&Case {
            name: "two --delete-WHENs",
            args: both,
            build: extraneous_in_equal_dirs,
            roles: &[crate::harness::Role::Local],
            lines: Lines::Compare,
        });
    }
}

#[test]
fn rules_from_files() {
    for args in [
        &["-ai", "--exclude-from=exclude.txt"][..],
        &["-ai", "--include-from=include.txt", "--exclude=*"][..],
        &["-ai", "--delete", "--exclude-from=exclude.txt"][..],
    ] {
        check(&Case {
            name: "rules from files",
            args,
            build: with_rule_files,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

#[test]
fn compress_level() {
    check(&Case {
        name: "--compress-level",
        args: &["-ai", "--compress-level=5"],
        build: with_rule_files,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// `-d`: directories without their contents.
#[test]
fn dirs_without_recursion() {
    check(&Case {
        name: "-d",
        args: &["-dlti"],
        build: with_rule_files,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}
