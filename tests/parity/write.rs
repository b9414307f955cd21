//! Issue 15, write: how the receiver writes and a few receiver switches (`--chmod`, …), each
//! against rsync in every role, with a fixture where the option changes the outcome (checked
//! with `rsync_differs`).

use std::path::Path;

use crate::common::*;
use crate::harness::{check, check_into, rsync_differs, Case, Lines, Role, ALL_ROLES};

/// Run `args` (with `-i` first) over `build` in every role, comparing the itemized lines, after
/// checking that rsync itself gives another tree without the option (`without`).
fn case(name: &str, args: &[&str], without: &[&str], build: fn(&Path, &Path)) {
    rsync_differs(args, without, build);
    let mut with_i = vec!["-i"];
    with_i.extend(args);
    check(&Case {
        name,
        args: &with_i,
        build,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Files and directories of assorted modes (an executable, a private file, a setgid
/// directory), a symlink (which `--chmod` leaves alone), and an existing file whose mode
/// differs from the source's.
fn modes(src: &Path, dst: &Path) {
    for (name, mode) in [
        ("plain", 0o644),
        ("exec", 0o755),
        ("private", 0o600),
        ("d/inner", 0o640),
        ("d/e/deep", 0o700),
        ("existing", 0o664),
    ] {
        write(&src.join(name), name.as_bytes());
        chmod(&src.join(name), mode);
    }
    chmod(&src.join("d"), 0o750);
    chmod(&src.join("d/e"), 0o2775);
    symlink("plain", &src.join("link"));
    write(&dst.join("existing"), b"existing");
    chmod(&dst.join("existing"), 0o600);
    stamp_tree(src, 0);
    stamp_tree(dst, 1);
}

#[test]
fn chmod_octal_by_kind() {
    case(
        "--chmod=D755,F644",
        &["-a", "--chmod=D755,F644"],
        &["-a"],
        modes,
    );
}

#[test]
fn chmod_symbolic() {
    case(
        "--chmod symbolic",
        &["-a", "--chmod=Fgo-rwx,Dg+s,u+w,a+X", "--chmod=o+t"],
        &["-a"],
        modes,
    );
    // No `ugoa`: the umask's bits stay as they were.
    case("--chmod=+w", &["-a", "--chmod=+w,-x"], &["-a"], modes);
}

/// Issue 18: the lines show the modes after `--chmod` in every role: where this side
/// receives, the receiver changes them as it reads each entry (a local copy's list is the
/// sender's own, with the sender's modes); a pushing client shows its list's modes after the
/// rules, as rsync's sending client does.
#[test]
fn chmod_shown_by_out_format() {
    check(&Case {
        name: "--chmod with %B",
        args: &["-a", "--chmod=D755,F644", "--out-format=%i %B %n%L"],
        build: modes,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn chmod_without_perms() {
    // Without -p new files take the changed mode through the umask; existing ones keep theirs.
    case(
        "--chmod without -p",
        &["-rlt", "--chmod=F600,D700"],
        &["-rlt"],
        modes,
    );
}

#[test]
fn chmod_bad_syntax_exits_1() {
    check(&Case {
        name: "--chmod=bad",
        args: &["-a", "--chmod=u+q"],
        build: modes,
        roles: &[Role::Local],
        lines: Lines::Ignore,
    });
}

/// A small tree and a destination whose first component exists, for `dst/a/b/`.
fn nested(src: &Path, dst: &Path) {
    write(&src.join("f"), b"f");
    write(&src.join("d/g"), b"g");
    stamp_tree(src, 0);
    mkdir(dst);
    set_mtime(dst, 1_600_000_000, 0);
}

#[test]
fn mkpath_creates_the_missing_path() {
    // Without -t: the directories made above the destination get the time they were made.
    // Without --mkpath rsync stops with exit 11 (mkdir failed) in every role; so must arsync
    // (once it hung where it received in rsync's protocol: a failed side now ends rsync's
    // input and tells an rsync client the code).
    for (name, args, roles) in [
        ("--mkpath", &["-rlpi", "--mkpath"][..], &ALL_ROLES[..]),
        ("no --mkpath", &["-rlpi"][..], &ALL_ROLES[..]),
    ] {
        check_into(
            &Case {
                name,
                args,
                build: nested,
                roles,
                lines: Lines::Compare,
            },
            "dst/a/b/",
        );
    }
    // The destination exists: nothing to create, nothing said.
    check(&Case {
        name: "--mkpath existing",
        args: &["-ai", "--mkpath"],
        build: nested,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Non-empty directories where the source has a file and a symlink.
fn dirs_in_the_way(src: &Path, dst: &Path) {
    write(&src.join("x"), b"file now");
    symlink("x", &src.join("l"));
    write(&src.join("keep"), b"keep");
    write(&dst.join("x/y/z"), b"old");
    write(&dst.join("l/w"), b"old");
    stamp_tree(src, 0);
    stamp_tree(dst, 1);
}

#[test]
fn force_deletes_non_empty_directories_in_the_way() {
    // Without --force (and without --delete) rsync refuses: exit 23, the directories stay.
    case("--force", &["-a", "--force"], &["-a"], dirs_in_the_way);
    // The lines are not compared here: rsync says "cannot delete non-empty directory" on
    // stdout and "could not make way for new …" on stderr; arsync says the first on stderr
    // (the refusal predates --force; left as found).
    check(&Case {
        name: "no --force",
        args: &["-ai"],
        build: dirs_in_the_way,
        roles: &ALL_ROLES,
        lines: Lines::Ignore,
    });
}
