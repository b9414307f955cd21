//! Issue 15, data: how the receiver writes file data — `-S`/`--sparse`, `--append`,
//! `--append-verify`, `-T`/`--temp-dir`, `--delay-updates`, `--ignore-errors` — each with a
//! fixture where the option changes the outcome.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::*;
use crate::harness::{check_then, Case, Lines, Role, ALL_ROLES};

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
    let _ = Role::Local;
}
