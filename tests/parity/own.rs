//! Issue 15, own: ownership mapping (`--chown`, `--usermap`, `--groupmap`, with and without
//! `--numeric-ids`) and how file data is written (`-s`), each against rsync in every role.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, rsync_differs, Case, Lines, ALL_ROLES};

/// Entries owned by users and groups that exist here (root, daemon, bin) and by ids that
/// have no name (4321, 4500), so that name rules, id rules and ranges each have something to
/// match. Tests run as root, so the chowns work.
fn owners(src: &Path, dst: &Path) {
    mkdir(dst);
    for (name, uid, gid) in [
        ("by-root", 0, 0),
        ("by-daemon", 1, 1),
        ("by-bin", 2, 2),
        ("d/by-4321", 4321, 4321),
        ("d/by-4500", 4500, 4600),
    ] {
        let p = src.join(name);
        write(&p, name.as_bytes());
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).expect("chown");
    }
    symlink("by-root", &src.join("d/link"));
    std::os::unix::fs::lchown(src.join("d/link"), Some(2), Some(1)).expect("lchown");
    stamp_tree(src, 0);
}

fn owner_case(name: &str, args: &[&str]) {
    rsync_differs(args, &["-a"], owners);
    let mut with_i = vec!["-i"];
    with_i.extend(args);
    check(&Case {
        name,
        args: &with_i,
        build: owners,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn chown_user_and_group() {
    owner_case("--chown", &["-a", "--chown=daemon:bin"]);
}

#[test]
fn chown_user_only_and_group_only() {
    owner_case("--chown=USER", &["-a", "--chown=bin"]);
    owner_case("--chown=:GROUP", &["-a", "--chown=:daemon"]);
}

#[test]
fn chown_numeric() {
    owner_case(
        "--chown numeric",
        &["-a", "--numeric-ids", "--chown=7001:7002"],
    );
}

#[test]
fn chown_implies_owner_and_group() {
    // No -o or -g: --chown turns them on (rsync's preserve_uid/preserve_gid).
    owner_case("--chown without -og", &["-rlt", "--chown=daemon:bin"]);
}

#[test]
fn usermap_names_ids_ranges_wildcards() {
    owner_case(
        "--usermap",
        &[
            "-a",
            "--usermap=daemon:bin,4321:5555,4400-4999:daemon,b?n:7007,*:nobody",
        ],
    );
}

#[test]
fn groupmap_names_ids_ranges_wildcards() {
    owner_case(
        "--groupmap",
        &["-a", "--groupmap=4321:bin,4600-4700:6000,r*t:daemon"],
    );
}

#[test]
fn maps_with_numeric_ids() {
    // Without names from the sender only id rules and a lone `*` match.
    owner_case(
        "--usermap --numeric-ids",
        &[
            "-a",
            "--numeric-ids",
            "--usermap=daemon:bin,4321:5555,*:7000",
            "--groupmap=1-2:8000",
        ],
    );
}

#[test]
fn map_syntax_errors_exit_as_rsyncs() {
    for args in [["-a", "--usermap=nocolon"], ["-a", "--groupmap=1x:root"]] {
        let s = Scratch::new();
        let (a, r) = (s.side(Tool::Arsync), s.side(Tool::Rsync));
        for side in [&a, &r] {
            owners(&side.join("src"), &side.join("dst"));
        }
        let mut v = args.to_vec();
        v.extend(["src/", "dst/"]);
        let (ours, theirs) = (arsync(&a, &v), rsync(&r, &v));
        assert_eq!(ours.code(), theirs.code(), "{args:?}\n{}", ours.describe());
    }
}
