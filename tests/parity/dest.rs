//! Issue 15, dest: the options that decide what the receiver does with each file (`-u`,
//! `--modify-window`, `-O`, `-J`, `--existing`, `--max-delete`), each with a fixture where the
//! option changes the outcome (checked against a run without it where that is cheap).

use std::path::Path;

use crate::common::*;
use crate::harness::{check, check_all, Case, Lines};

const T: i64 = 1_600_000_000;

/// `-u`: `newer` is newer on the receiver (kept), `older` older (replaced), `same_time` has
/// equal times and another size (the quick check replaces it), `new` is missing.
fn update_fixture(src: &Path, dst: &Path) {
    for (name, body, src_t, dst_body, dst_t) in [
        (
            "newer",
            &b"source\n"[..],
            T,
            &b"receiver's newer\n"[..],
            T + 100,
        ),
        ("older", b"source\n", T, b"receiver's older\n", T - 100),
        ("same_time", b"source\n", T, b"other size\n", T),
    ] {
        write(&src.join(name), body);
        set_mtime(&src.join(name), src_t, 0);
        write(&dst.join(name), dst_body);
        set_mtime(&dst.join(name), dst_t, 0);
    }
    write(&src.join("new"), b"new\n");
    set_mtime(&src.join("new"), T, 0);
    set_mtime(src, T, 0);
    set_mtime(dst, T, 0);
}

#[test]
fn update_skips_files_newer_on_the_receiver() {
    check_all("-u", &["-ai", "-u"], update_fixture);
    check(&Case {
        name: "--update",
        args: &["-ai", "--update"],
        build: update_fixture,
        // The long spelling, locally; its lines were compared above.
        roles: &[crate::harness::Role::Local],
        lines: Lines::Ignore,
    });
}

/// `--modify-window`: same size, times two seconds apart, other content: equal within the
/// window (kept), transferred without it.
fn window_fixture(src: &Path, dst: &Path) {
    write(&src.join("f"), b"source content\n");
    set_mtime(&src.join("f"), T, 0);
    write(&dst.join("f"), b"receiver text!\n");
    set_mtime(&dst.join("f"), T + 2, 0);
    write(&src.join("far"), b"source content\n");
    set_mtime(&src.join("far"), T, 0);
    write(&dst.join("far"), b"receiver text!\n");
    set_mtime(&dst.join("far"), T + 5, 0);
    set_mtime(src, T, 0);
    set_mtime(dst, T, 0);
}

#[test]
fn modify_window_treats_close_times_as_equal() {
    check_all(
        "--modify-window=2",
        &["-ai", "--modify-window=2"],
        window_fixture,
    );
    check_all("-@2 -u", &["-ai", "-@2", "-u"], window_fixture);
}

/// `-O`/`-J`: directories and a symlink that match except for their times.
fn omit_fixture(src: &Path, dst: &Path) {
    for root in [src, dst] {
        write(&root.join("d/f"), b"same\n");
        set_mtime(&root.join("d/f"), T, 0);
        mkdir(&root.join("d/e"));
        symlink("d/f", &root.join("l"));
    }
    for (root, t) in [(src, T), (dst, T - 1000)] {
        set_mtime(&root.join("d/e"), t, 0);
        set_mtime(&root.join("d"), t + 1, 0);
        set_mtime(&root.join("l"), t + 2, 0);
        set_mtime(root, T, 0);
    }
}

#[test]
fn omit_dir_times_leaves_directory_times() {
    for args in [&["-ai", "-O"][..], &["-ai", "--omit-dir-times"]] {
        check_all("-O", args, omit_fixture);
    }
}

#[test]
fn omit_link_times_leaves_symlink_times() {
    for args in [&["-ai", "-J"][..], &["-ai", "--omit-link-times", "-O"]] {
        check_all("-J", args, omit_fixture);
    }
}

/// `--existing`: a new directory (with files) and a new file are not created; an existing
/// file is updated.
fn existing_fixture(src: &Path, dst: &Path) {
    for name in ["old", "newdir/f", "newdir/sub/g", "newfile", "keep/h"] {
        write(&src.join(name), name.as_bytes());
    }
    stamp_tree(src, 0);
    write(&dst.join("old"), b"old\n");
    mkdir(&dst.join("keep"));
    stamp_tree(dst, 1);
}

#[test]
fn existing_creates_no_directories() {
    check_all("--existing", &["-ai", "--existing"], existing_fixture);
    // rsync 3.5's other name for it.
    check_all(
        "--ignore-non-existing",
        &["-ai", "--ignore-non-existing"],
        existing_fixture,
    );
}

/// `--max-delete`: three extraneous files, a limit of one (exit 25, two left) and of none.
fn extraneous_fixture(src: &Path, dst: &Path) {
    write(&src.join("kept"), b"kept\n");
    stamp_tree(src, 0);
    write(&dst.join("kept"), b"kept\n");
    for name in ["x1", "x2", "x3"] {
        write(&dst.join(name), b"extra\n");
    }
    stamp_tree(dst, 0);
}

#[test]
fn max_delete_stops_deletions_with_exit_25() {
    for args in [
        &["-ai", "--delete", "--max-delete=1"][..],
        &["-ai", "--delete", "--max-delete=0"],
    ] {
        check_all("--max-delete", args, extraneous_fixture);
    }
}

/// The fixtures make the options matter: without them, arsync does something else.
#[test]
fn fixtures_make_the_options_matter() {
    let differs = |args: &[&str], without: &[&str], build: fn(&Path, &Path)| {
        let run = |a: &[&str]| {
            let s = Scratch::new();
            let side = s.side(Tool::Arsync);
            build(&side.join("src"), &side.join("dst"));
            let mut v = a.to_vec();
            v.extend(["src/", "dst/"]);
            let r = arsync(&side, &v);
            (r.code(), r.sorted_lines(), snapshot(&side.join("dst")))
        };
        assert_ne!(run(args), run(without), "{args:?} changes nothing");
    };
    differs(&["-ai", "-u"], &["-ai"], update_fixture);
    differs(&["-ai", "--modify-window=2"], &["-ai"], window_fixture);
    differs(&["-ai", "-O"], &["-ai"], omit_fixture);
    differs(&["-ai", "-J"], &["-ai"], omit_fixture);
    differs(&["-ai", "--existing"], &["-ai"], existing_fixture);
    differs(
        &["-ai", "--delete", "--max-delete=1"],
        &["-ai", "--delete"],
        extraneous_fixture,
    );
}

/// `--ignore-existing` with other kinds in the way: a file where the source has a directory
/// (kept: what the directory holds cannot go there, exit 23 as rsync's; its subdirectory is
/// itemized as new before it fails to be made, and nothing below it is tried), a file where
/// it has a symlink (kept), and a new file beside them.
fn kinds_in_the_way(src: &Path, dst: &Path) {
    write(&src.join("d/f"), b"in a directory\n");
    write(
        &src.join("d/sub/deeper/g"),
        b"below a directory that cannot be made\n",
    );
    std::os::unix::fs::symlink("new", src.join("l")).expect("symlink");
    write(&src.join("new"), b"new\n");
    write(&dst.join("d"), b"a file in the way\n");
    write(&dst.join("l"), b"a file in the way\n");
    stamp_tree(src, 0);
    stamp_tree(dst, 1);
    // rsync then gives the file in the way the directory's mtime (its directory pass sets
    // times by name); arsync leaves it as it was. Equal times keep that quirk out of the case.
    set_mtime(&src.join("d"), T, 0);
    set_mtime(&dst.join("d"), T, 0);
}

#[test]
fn ignore_existing_keeps_whatever_is_in_the_way() {
    check_all(
        "--ignore-existing, kinds in the way",
        &["-ai", "--ignore-existing"],
        kinds_in_the_way,
    );
}
