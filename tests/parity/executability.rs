//! Issue 15: `-E`/`--executability` without `-p`, in every role against rsync: a file whose
//! data is the same but whose executability differs gets it (`.f...p.....`), a changed file
//! keeps the receiver's mode with the sender's executability, a new file gets the sender's
//! mode masked by the umask.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, rsync_differs, Case, Lines, ALL_ROLES};

const T: i64 = 1_500_000_000;

fn file(p: &Path, content: &[u8], mode: u32, t: i64) {
    write(p, content);
    chmod(p, mode);
    set_mtime(p, t, 0);
}

fn fixture(src: &Path, dst: &Path) {
    // Same data, the source executable, the copy not: made executable where readable.
    file(&src.join("tool"), b"#!/bin/sh\n", 0o755, T);
    file(&dst.join("tool"), b"#!/bin/sh\n", 0o640, T);
    // Same data, the copy executable, the source not.
    file(&src.join("data"), b"data\n", 0o644, T);
    file(&dst.join("data"), b"data\n", 0o750, T);
    // New data: the receiver's mode, with the sender's executability.
    file(&src.join("script"), b"echo new version\n", 0o700, T);
    file(&dst.join("script"), b"echo old\n", 0o604, T - 100);
    // New file.
    file(&src.join("fresh"), b"fresh\n", 0o751, T);
    set_mtime(src, T, 0);
    set_mtime(dst, T, 0);
}

#[test]
fn executability_follows_the_sender_without_perms() {
    rsync_differs(&["-rt", "-E"], &["-rt"], fixture);
    for args in [&["-rtiE"][..], &["-rti", "--executability"][..]] {
        check(&Case {
            name: "-E",
            args,
            build: fixture,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

#[test]
fn executable_mode_as_rsync_computes_it() {
    use arsync::core::engine::options::executable_mode;
    assert_eq!(executable_mode(0o755, 0o640), 0o750);
    assert_eq!(executable_mode(0o644, 0o750), 0o640);
    assert_eq!(executable_mode(0o700, 0o604), 0o705);
    assert_eq!(executable_mode(0o700, 0o711), 0o711);
}
