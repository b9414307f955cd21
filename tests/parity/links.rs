//! Issue 15, links: how symlinks are sent and kept (`-L`, `--copy-unsafe-links`,
//! `--safe-links`, `-k`, `-K`), each against rsync in every role.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, rsync_differs, Case, Lines, ALL_ROLES};

/// Symlinks of every sort: safe and unsafe (relative, climbing out of the tree), to files and
/// to a directory, and dangling ones (safe and unsafe).
fn links(src: &Path, dst: &Path) {
    // An empty destination that exists (so no "created directory" line, which arsync's
    // merkle push does not print yet: not this area's to fix).
    mkdir(dst);
    let side = src.parent().expect("side dir");
    write(&side.join("outside.txt"), b"outside the tree\n");
    set_mtime(&side.join("outside.txt"), 1_600_000_000, 0);
    write(&src.join("f"), b"a file\n");
    write(&src.join("d/g"), b"in d\n");
    symlink("f", &src.join("rel"));
    symlink("../f", &src.join("d/up"));
    symlink("../outside.txt", &src.join("out"));
    symlink("../../outside.txt", &src.join("d/out"));
    symlink("d", &src.join("dl"));
    symlink("nowhere", &src.join("dangle"));
    stamp_tree(src, 0);
}

/// As `links`, without the dangling ones (rsync reports those under -L as errors, exit 23;
/// a case without them shows the rest exits 0).
fn links_no_dangling(src: &Path, dst: &Path) {
    links(src, dst);
    std::fs::remove_file(src.join("dangle")).expect("rm dangle");
    stamp_tree(src, 0);
}

/// A destination whose `dl` is a symlink to a directory `real`, where the source has a
/// directory `dl`.
fn dirlink_in_dest(src: &Path, dst: &Path) {
    write(&src.join("dl/a.txt"), b"into the linked dir\n");
    write(&src.join("dl/sub/b.txt"), b"deeper\n");
    write(&src.join("top.txt"), b"top\n");
    // The directory the link points to is in the source too, so that its time is set after
    // the writes through the link (and both tools' trees can be compared).
    write(&src.join("real/old.txt"), b"was here\n");
    stamp_tree(src, 0);
    write(&dst.join("real/old.txt"), b"was here\n");
    stamp_tree(dst, 0);
    symlink("real", &dst.join("dl"));
}

/// rsync itself gives a different destination with and without `option` (so a case that
/// passes cannot be passing by ignoring it).
fn option_matters(option: &str, build: fn(&Path, &Path)) {
    rsync_differs(&["-a", option], &["-a"], build);
}

#[test]
fn copy_links() {
    option_matters("-L", links);
    for build in [links, links_no_dangling] {
        check(&Case {
            name: "-L",
            args: &["-ai", "-L"],
            build,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

#[test]
fn copy_unsafe_links() {
    option_matters("--copy-unsafe-links", links);
    check(&Case {
        name: "--copy-unsafe-links",
        args: &["-ai", "--copy-unsafe-links"],
        build: links,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn safe_links() {
    option_matters("--safe-links", links);
    check(&Case {
        name: "--safe-links",
        args: &["-ai", "--safe-links"],
        build: links,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn copy_dirlinks() {
    option_matters("-k", links);
    check(&Case {
        name: "-k",
        args: &["-ai", "-k"],
        build: links,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
    check(&Case {
        name: "-k --safe-links",
        args: &["-ai", "-k", "--safe-links"],
        build: links,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn keep_dirlinks() {
    option_matters("-K", dirlink_in_dest);
    check(&Case {
        name: "-K",
        args: &["-ai", "-K"],
        build: dirlink_in_dest,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Names with bytes above 0x7f: valid UTF-8, not UTF-8, and a control byte (still escaped).
fn high_bit_names(src: &Path, dst: &Path) {
    use std::os::unix::ffi::OsStrExt;
    mkdir(dst);
    for name in [&b"caf\xc3\xa9"[..], b"bad\xff", b"ctl\x01"] {
        write(&src.join(std::ffi::OsStr::from_bytes(name)), b"x");
    }
    stamp_tree(src, 0);
}

#[test]
fn eight_bit_output() {
    // Without -8 rsync prints `bad\#377`; with it the raw byte (the lines compared here are
    // read lossily, so the raw byte reads as U+FFFD on both sides).
    check(&Case {
        name: "-8",
        args: &["-ai", "-8"],
        build: high_bit_names,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Symlinks as `--munge-links` keeps them: one plain, one already stored munged in the source
/// (a sender gives it out unmunged), one in the destination already.
fn munged(src: &Path, dst: &Path) {
    write(&src.join("f"), b"f\n");
    symlink("f", &src.join("plain"));
    symlink("/rsyncd-munged/f", &src.join("stored"));
    symlink("/rsyncd-munged/f", &src.join("there"));
    stamp_tree(src, 0);
    std::fs::create_dir_all(dst).expect("dst");
    symlink("/rsyncd-munged//rsyncd-munged/f", &dst.join("there"));
}

/// `--munge-links` in every role: only the side given the option munges (a receiving client)
/// or unmunges (a sending client), as rsync does not tell its server.
#[test]
fn munge_links() {
    rsync_differs(&["-a", "--munge-links"], &["-a"], munged);
    check(&Case {
        name: "--munge-links",
        args: &["-ai", "--munge-links"],
        build: munged,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Without `-l` (or `-D`) the source's symlinks (and a FIFO) are skipped — "skipping
/// non-regular file" — but they are in rsync's list: `--delete` spares what the destination
/// has under their names (a file, a directory, a symlink) and deletes the rest.
fn skipped_kinds_in_dest(src: &Path, dst: &Path) {
    write(&src.join("f"), b"a file\n");
    symlink("f", &src.join("was_file"));
    symlink("f", &src.join("was_dir"));
    mkdir(&src.join("d"));
    symlink("f", &src.join("d/was_link"));
    mkfifo(&src.join("fifo"), 0o644);
    write(&dst.join("was_file"), b"kept: the source lists this name\n");
    write(&dst.join("was_dir/inside"), b"kept too\n");
    mkdir(&dst.join("d"));
    symlink("elsewhere", &dst.join("d/was_link"));
    write(&dst.join("fifo"), b"kept: the source has a FIFO here\n");
    write(&dst.join("gone"), b"extraneous\n");
    stamp_tree(src, 0);
    stamp_tree(dst, 1);
}

#[test]
fn delete_spares_names_listed_but_skipped() {
    for args in [&["-rti", "--delete"][..], &["-rlti", "--no-D", "--delete"]] {
        check(&Case {
            name: "--delete without -l/-D",
            args,
            build: skipped_kinds_in_dest,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}
