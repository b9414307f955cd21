//! Issue 15, filters: merge files and per-directory merge files (`merge`, `dir-merge` and
//! their modifiers), `-F`/`-FF` and `-C`, each against rsync in every role, with fixtures
//! where the rules change the result (`rsync_differs` proves each is not vacuous).

use std::path::Path;

use crate::common::*;
use crate::harness::{check, check_all, rsync_differs, Case, Lines, Role, ALL_ROLES};

/// `.rsync-filter` files at two levels: the deeper one's rules come first, anchored rules
/// are anchored in their own directory, and the destination holds the top one plus
/// extraneous files some of which it protects from `--delete`.
fn sprinkled(src: &Path, dst: &Path) {
    let top = b"- *.tmp\n+ keep.log\n- *.log\n# a comment\n- /top-only\n";
    let sub = b"+ wanted.tmp\n- /deeper/x\n- top-only.txt\n";
    // The destination lacks sub/'s file: -FF leaves it out, -F sends it (after the
    // deletions in sub/, which do not see it, as rsync's --delete-during).
    write(&src.join(".rsync-filter"), top);
    write(&dst.join(".rsync-filter"), top);
    write(&src.join("sub/.rsync-filter"), sub);
    for name in [
        "a.txt",
        "b.tmp",
        "keep.log",
        "drop.log",
        "top-only",
        "sub/top-only",
        "sub/wanted.tmp",
        "sub/other.tmp",
        "sub/top-only.txt",
        "sub/deeper/x",
        "sub/deeper/y",
        "other/deeper/x",
        "other/top-only.txt",
    ] {
        write(&src.join(name), name.as_bytes());
    }
    // Extraneous in the destination: protected (excluded) ones stay under --delete.
    for name in [
        "old.tmp",
        "old.txt",
        "sub/old.log",
        "sub/deeper/x",
        "sub/gone",
    ] {
        write(&dst.join(name), b"old");
    }
    stamp_tree(src, 0);
    stamp_tree(dst, 0);
}

#[test]
fn dir_merge_rsync_filter() {
    for args in [
        &["-ai", "-F"][..],
        &["-ai", "-FF"],
        &["-ai", "-F", "--delete"],
        &["-ai", "-FF", "--delete"],
        &["-ai", "--filter=dir-merge .rsync-filter", "--delete"],
        // `n`: the top file's rules are not inherited by sub/.
        &["-ai", "--filter=:n .rsync-filter"],
        // `e`: the merge file itself is left out.
        &["-ai", "--filter=dir-merge,e .rsync-filter", "--delete"],
    ] {
        check_all("dir-merge", args, sprinkled);
    }
    rsync_differs(&["-a", "-F"], &["-a"], sprinkled);
    rsync_differs(&["-a", "-FF"], &["-a", "-F"], sprinkled);
    rsync_differs(
        &["-a", "--filter=:n .rsync-filter"],
        &["-a", "-F"],
        sprinkled,
    );
}

/// Rule files beside the trees, for `merge`: one with prefixes, one of bare patterns, one
/// split on whitespace.
fn merge_files(src: &Path, dst: &Path) {
    let side = src.parent().expect("side");
    write(
        &side.join("rules"),
        b"+ keep.o\n- *.o\n; comment\n- /sub/b.txt\n",
    );
    write(&side.join("bare"), b"*.log\nsub/\n");
    write(&side.join("words"), b"a.txt c.txt\n");
    for name in [
        "a.txt",
        "b.txt",
        "c.txt",
        "x.o",
        "keep.o",
        "y.log",
        "sub/b.txt",
        "sub/z",
    ] {
        write(&src.join(name), name.as_bytes());
    }
    mkdir(dst);
    stamp_tree(src, 0);
}

#[test]
fn merge_rules() {
    for args in [
        &["-ai", "--filter=merge rules"][..],
        &["-ai", "--filter=. rules", "--filter=merge,- bare"],
        &["-ai", "--filter=.+ words", "--filter=- *"],
        &["-ai", "--filter=merge,w- words"],
        // `!`: everything that does not match is excluded.
        &["-ai", "--filter=-! *.txt"],
        // `/`: matched against the absolute path (the source directory's name is in it).
        &["-ai", "--filter=-/ src/b.txt"],
    ] {
        check_all("merge", args, merge_files);
    }
    rsync_differs(&["-a", "--filter=merge rules"], &["-a"], merge_files);
    rsync_differs(&["-a", "--filter=merge,- bare"], &["-a"], merge_files);
    rsync_differs(&["-a", "--filter=-/ src/b.txt"], &["-a"], merge_files);
}

/// Files CVS ignores by default, a `.cvsignore` with its own names (for its directory only),
/// and extraneous ignored and plain files in the destination.
fn cvs_tree(src: &Path, dst: &Path) {
    for name in [
        "main.c",
        "main.o",
        "core",
        "notes.bak",
        "CVS/Entries",
        ".git/HEAD",
        "sub/.cvsignore",
        "sub/data.dat",
        "sub/keep.c",
        "sub/deep/data.dat",
        "other/data.dat",
    ] {
        write(&src.join(name), name.as_bytes());
    }
    write(&src.join("sub/.cvsignore"), b"*.dat  extra\n\tcore.*\n");
    write(&dst.join("sub/.cvsignore"), b"*.dat  extra\n\tcore.*\n");
    for name in ["stale.o", "stale.txt", "sub/extra", "sub/old.dat"] {
        write(&dst.join(name), b"old");
    }
    stamp_tree(src, 0);
    stamp_tree(dst, 0);
}

#[test]
fn cvs_exclude() {
    for args in [
        &["-ai", "-C"][..],
        &["-ai", "-C", "--delete"],
        &["-ai", "--cvs-exclude", "--filter=+ core"],
    ] {
        check_all("-C", args, cvs_tree);
    }
    rsync_differs(&["-a", "-C"], &["-a"], cvs_tree);
}

/// A tree and lists of some of its names (`.`, so the destination's time is the source's; a
/// file, a deep file, a directory, a missing parent chain): `list` by lines, `list0`
/// NUL-separated, `commented` with comments and blanks, `norel` a directory for
/// `--no-relative` (which the destination holds with another time).
fn listed(src: &Path, dst: &Path) {
    for name in [
        "a.txt",
        "b.txt",
        "sub/deep/f",
        "sub/deep/g",
        "dir2/x",
        "dir2/y/z",
    ] {
        write(&src.join(name), name.as_bytes());
    }
    let side = src.parent().expect("side");
    write(&side.join("list"), b".\na.txt\nsub/deep/f\ndir2\n/b.txt\n");
    write(&side.join("list0"), b".\0sub/deep/g\0dir2/y\0");
    write(
        &side.join("commented"),
        b"# one\n\n.\na.txt\n; two\ndir2/y\n",
    );
    write(&side.join("norel"), b"sub/deep\n");
    mkdir(&dst.join("deep"));
    stamp_tree(src, 0);
    stamp_tree(dst, 1);
}

#[test]
fn files_from() {
    for args in [
        &["-ai", "--files-from=list"][..],
        &["-ai", "-r", "--files-from=list"],
        &["-ai", "--no-relative", "--files-from=norel"],
        &["-ai", "-0", "--files-from=list0"],
    ] {
        check(&Case {
            name: "--files-from",
            args,
            build: listed,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
    // Comments are skipped in a list read on this side (a remote sender reads a forwarded
    // list without skipping them, as rsync's).
    check(&Case {
        name: "--files-from comments",
        args: &["-ai", "--files-from=commented"],
        build: listed,
        roles: &[
            Role::Local,
            Role::MerklePush,
            Role::RsyncPush,
            Role::RsyncClientPush,
        ],
        lines: Lines::Compare,
    });
    // A list on the remote sender, read there.
    check(&Case {
        name: "--files-from=host:",
        args: &["-ai", "--files-from=host:list"],
        build: listed,
        roles: &[Role::MerklePull, Role::RsyncPull, Role::RsyncClientPull],
        lines: Lines::Compare,
    });
    rsync_differs(&["-a", "--files-from=list"], &["-a"], listed);
    rsync_differs(
        &["-a", "--files-from=list"],
        &["-a", "-r", "--files-from=list"],
        listed,
    );
}

/// Extraneous directories in the destination: one holding only files the rules exclude (so
/// protect), one without.
fn protected_in_extraneous(src: &Path, dst: &Path) {
    write(&src.join("k"), b"k");
    // Nothing in gone/ goes when *.o is protected (its time stays as stamped).
    for name in ["gone/foo.o", "gone/deep/x.o", "gone2/y.txt"] {
        write(&dst.join(name), name.as_bytes());
    }
    stamp_tree(src, 0);
    stamp_tree(dst, 0);
}

#[test]
fn deleting_a_directory_keeps_what_rules_protect() {
    for args in [
        &["-ai", "--delete", "--exclude=*.o"][..],
        // Perishable rules (and -C's list) do not keep a directory that goes.
        &["-ai", "--delete", "--filter=-p *.o"],
        &["-ai", "--delete", "-C"],
        &["-ai", "--delete", "--filter=P *.o"],
    ] {
        check_all(
            "--delete with protected contents",
            args,
            protected_in_extraneous,
        );
    }
    rsync_differs(
        &["-a", "--delete", "--exclude=*.o"],
        &["-a", "--delete", "--filter=-p *.o"],
        protected_in_extraneous,
    );
}

/// `--delete-excluded` in every role: the receiver deletes what the rules exclude, so a
/// sending client keeps its plain rules (and a dir-merge file of bare patterns) to itself, as
/// rsync's `send_rules` does; a receiver-side rule (`P`) still goes and still protects.
#[test]
fn delete_excluded_deletes_what_the_sender_excludes() {
    for args in [
        &["-ai", "--delete-excluded", "--exclude=*.o"][..],
        &[
            "-ai",
            "--delete-excluded",
            "--exclude=*.o",
            "--filter=P gone/",
        ],
        &["-ai", "--delete-excluded", "--filter=:- .skip"],
    ] {
        check_all("--delete-excluded", args, excluded_at_both_ends);
    }
    rsync_differs(
        &["-a", "--delete-excluded", "--exclude=*.o"],
        &["-a", "--delete", "--exclude=*.o"],
        excluded_at_both_ends,
    );
}

/// Excluded files at both ends (`*.o`, and names a `.skip` file lists), an extraneous
/// directory of them, and one of plain files.
fn excluded_at_both_ends(src: &Path, dst: &Path) {
    for name in [
        "k.txt",
        "a.o",
        "sub/b.o",
        "sub/c.txt",
        "sub/.skip",
        "sub/listed",
    ] {
        write(&src.join(name), name.as_bytes());
    }
    write(&src.join("sub/.skip"), b"listed\n");
    for name in ["a.o", "sub/b.o", "sub/listed", "gone/x.o", "gone2/y.txt"] {
        write(&dst.join(name), b"old");
    }
    stamp_tree(src, 0);
    stamp_tree(dst, 0);
}
