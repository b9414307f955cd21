//! Issue 15, data: how the receiver writes file data — `-S`/`--sparse`, `--append`,
//! `--append-verify`, `-T`/`--temp-dir`, `--delay-updates`, `--ignore-errors` — each with a
//! fixture where the option changes the outcome.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::*;
use crate::harness::{check_then, rsync_differs, Case, Lines, Role, ALL_ROLES};

const T: i64 = 1_600_000_000;

/// The size of the mostly-zero file of the `-S` fixture.
const SPARSE_LEN: usize = 4 << 20;

/// `-S`: a file of 4 MiB with a little data at the start, the middle and the end, zeros
/// between; a small file with no zeros.
fn sparse_fixture(src: &Path, _dst: &Path) {
    let mut body = vec![0u8; SPARSE_LEN];
    body[..5].copy_from_slice(b"start");
    body[SPARSE_LEN / 2..SPARSE_LEN / 2 + 6].copy_from_slice(b"middle");
    body[SPARSE_LEN - 3..].copy_from_slice(b"end");
    write(&src.join("holes"), &body);
    write(&src.join("dense"), b"no zeros here\n");
    for p in ["holes", "dense", ""] {
        set_mtime(&src.join(p), T, 0);
    }
}

/// The 512-byte blocks a file takes.
fn blocks(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .blocks()
}

#[test]
fn sparse_turns_zeros_into_holes() {
    let full = (SPARSE_LEN / 512) as u64;
    for args in [&["-ai", "-S"][..], &["-ai", "--sparse"]] {
        check_then(
            &Case {
                name: "-S",
                args,
                build: sparse_fixture,
                roles: &ALL_ROLES,
                lines: Lines::Compare,
            },
            "dst/",
            |role, a, r| {
                let (ours, theirs) = (blocks(&a.join("dst/holes")), blocks(&r.join("dst/holes")));
                // rsync's copy is small (the option matters), and so is ours.
                assert!(
                    theirs < full / 8,
                    "{role:?}: rsync's copy takes {theirs} blocks"
                );
                assert!(
                    ours <= theirs.max(64) * 2,
                    "{role:?}: arsync's copy takes {ours} blocks, rsync's {theirs}"
                );
            },
        );
    }
    // Without -S the copy takes all its blocks (so the case above cannot pass by ignoring -S).
    let s = Scratch::new();
    let side = s.side(Tool::Arsync);
    sparse_fixture(&side.join("src"), &side.join("dst"));
    arsync(&side, &["-a", "src/", "dst/"]).assert_ok();
    assert!(blocks(&side.join("dst/holes")) >= full / 2);
}

/// `--append`/`--append-verify`: `grow` is shorter on the receiver with another prefix
/// (`--append` keeps it, `--append-verify` finds the mismatch and sends the file whole),
/// `tail` shorter with the same prefix, `shrink` longer on the receiver and `eq` as long
/// with other content (both left alone), `new` missing; `modes` up to date but for its mode
/// (the quick check passes first: its mode is set).
fn append_fixture(src: &Path, dst: &Path) {
    for (name, body, old) in [
        (
            "grow",
            &b"hello world, the source\n"[..],
            Some(&b"HELLO"[..]),
        ),
        ("tail", b"hello world, the source\n", Some(b"hello")),
        ("shrink", b"short\n", Some(b"longer on receiver\n")),
        ("eq", b"same len\n", Some(b"SAME LEN\n")),
        ("new", b"new\n", None),
    ] {
        write(&src.join(name), body);
        set_mtime(&src.join(name), T, 0);
        if let Some(old) = old {
            write(&dst.join(name), old);
            set_mtime(&dst.join(name), T, 0);
        }
    }
    for side in [src, dst] {
        write(&side.join("modes"), b"same bytes\n");
        set_mtime(&side.join("modes"), T, 0);
    }
    chmod(&src.join("modes"), 0o600);
    set_mtime(src, T, 0);
    set_mtime(dst, T, 0);
}

/// The same without the mismatching prefix: what `--append-verify` itemizes like rsync.
fn append_verify_fixture(src: &Path, dst: &Path) {
    append_fixture(src, dst);
    std::fs::remove_file(dst.join("grow")).expect("rm grow");
}

/// --append works in every role: arsync sending with rsync's protocol to an rsync receiver
/// (RsyncPush, RsyncClientPull) reads its sum heads without sums and sends only what follows
/// the old length; `arsync --server` receiving from an rsync client (RsyncClientPush) asks for
/// the tail and puts the old bytes first.
const APPEND_ROLES: [Role; 7] = ALL_ROLES;

fn check_roles(name: &str, args: &[&str], build: fn(&Path, &Path), roles: &[Role], lines: Lines) {
    check_then(
        &Case {
            name,
            args,
            build,
            roles,
            lines,
        },
        "dst/",
        |_, _, _| {},
    );
}

#[test]
fn append_appends_to_shorter_files_only() {
    rsync_differs(&["-a", "--append"], &["-a"], append_fixture);
    check_roles(
        "--append",
        &["-ai", "--append"],
        append_fixture,
        &APPEND_ROLES,
        Lines::Compare,
    );
}

#[test]
fn append_verify_resends_a_file_whose_prefix_differs() {
    rsync_differs(
        &["-a", "--append-verify"],
        &["-a", "--append"],
        append_fixture,
    );
    // rsync itemizes `grow` twice (the failed verification and its redo) and warns on
    // stderr; arsync has the sender's whole file at hand and itemizes it once: the trees are
    // compared here, the lines below.
    check_roles(
        "--append-verify",
        &["-ai", "--append-verify"],
        append_fixture,
        &APPEND_ROLES,
        Lines::Ignore,
    );
    check_roles(
        "--append-verify",
        &["-ai", "--append-verify"],
        append_verify_fixture,
        &APPEND_ROLES,
        Lines::Compare,
    );
}
