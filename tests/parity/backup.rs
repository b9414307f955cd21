//! Issue 15, backup: `-b`/`--backup`, `--suffix`, `--backup-dir` (inside the destination, and
//! outside it as `../bak`), alone and with `--delete` (rsync's implied `P *~`), over a fixture
//! where files are updated, replaced by another kind, in the way of a directory, and deleted.
//!
//! Most cases leave out `-t`: without `--backup-dir` rsync implies `--omit-dir-times`, and a
//! backup made in a directory gives it the time of the run, so directory times say nothing
//! comparable; the contents, kinds, modes and links do. Their itemized lines are not compared:
//! without `-t` rsync reports a transferred file's time as `T` (`>f.sT......`), which arsync
//! does not print yet whatever the options (outside this area). With `--backup-dir` outside
//! the destination the whole of `-a` and the lines are compared.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, rsync_differs, Case, Lines, ALL_ROLES};

/// Run `args` (without `-t`) over [`fixture`] in every role, comparing the trees.
fn check_all(name: &str, args: &[&str]) {
    check(&Case {
        name,
        args,
        build: fixture,
        roles: &ALL_ROLES,
        lines: Lines::Ignore,
    });
}

/// `f` and `d/g` updated (other size), `l` a file replaced by a symlink, `e` a file in the
/// way of a new directory, `extra` and `d/x` extraneous, `old~` an old backup, `same`
/// unchanged.
fn fixture(src: &Path, dst: &Path) {
    write(&src.join("f"), b"new content\n");
    write(&src.join("d/g"), b"new g content\n");
    write(&src.join("same"), b"same\n");
    write(&src.join("e/inner"), b"inner\n");
    symlink("f", &src.join("l"));
    stamp_tree(src, 0);
    write(&dst.join("f"), b"old\n");
    write(&dst.join("d/g"), b"old g\n");
    write(&dst.join("d/x"), b"extraneous in d\n");
    write(&dst.join("same"), b"same\n");
    write(&dst.join("e"), b"a file where a dir goes\n");
    write(&dst.join("l"), b"a file where a link goes\n");
    write(&dst.join("extra"), b"extraneous\n");
    write(&dst.join("old~"), b"an old backup\n");
    stamp_tree(dst, 0);
    // `same` matches in size and time: not transferred, not backed up.
    for root in [src, dst] {
        set_mtime(&root.join("same"), 1_600_000_000, 0);
    }
}

#[test]
fn backup_keeps_replaced_files_with_a_tilde() {
    check_all("-b", &["-rlpDi", "-b"]);
    check_all("--backup", &["-rlpDi", "--backup"]);
}

#[test]
fn backup_with_delete_protects_old_backups() {
    check_all("-b --delete", &["-rlpDi", "-b", "--delete"]);
    // --delete-excluded drops rsync's implied protect rule: old backups go too.
    check_all(
        "-b --delete-excluded",
        &["-rlpDi", "-b", "--delete", "--delete-excluded"],
    );
}

#[test]
fn suffix_names_the_backups() {
    check_all("--suffix", &["-rlpDi", "-b", "--suffix=.bak", "--delete"]);
}

#[test]
fn backup_dir_inside_the_destination() {
    check_all("--backup-dir", &["-rlpDi", "--backup-dir=bak"]);
    check_all(
        "--backup-dir --suffix",
        &["-rlpDi", "--backup-dir=bak", "--suffix=.old"],
    );
}

/// `-a --backup-dir=../bak`: the destination and the itemized lines as rsync's in every role.
#[test]
fn backup_dir_outside_keeps_everything_else_as_rsync() {
    for args in [
        &["-ai", "--backup-dir=../bak"][..],
        &["-ai", "--delete", "--backup-dir=../bak", "--suffix=.old"],
    ] {
        check(&Case {
            name: "--backup-dir=../bak",
            args,
            build: fixture,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// `--backup-dir=../bak`: outside the destination (the harness compares only `dst` and
/// `src`, so the backup trees are compared here, locally and over both protocols' push).
#[test]
fn backup_dir_outside_the_destination() {
    let args = ["-rlpDi", "--delete", "--backup-dir=../bak"];
    for remote in [None, Some("merkle"), Some("rsync")] {
        let s = Scratch::new();
        let rsh = crate::harness::fake_rsh(s.path());
        let mut trees = Vec::new();
        for tool in [Tool::Arsync, Tool::Rsync] {
            let side = s.side(tool);
            fixture(&side.join("src"), &side.join("dst"));
            let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let dst = match remote {
                None => "dst/".to_string(),
                Some(proto) => {
                    v.push(format!("--rsh={}", rsh.display()));
                    if tool == Tool::Arsync {
                        v.push(format!("--protocol={proto}"));
                        let path = if proto == "merkle" {
                            ARSYNC.to_string()
                        } else {
                            rsync_path().display().to_string()
                        };
                        v.push(format!("--rsync-path={path}"));
                    }
                    "host:dst/".to_string()
                }
            };
            v.extend(["src/".to_string(), dst]);
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            let run = match tool {
                Tool::Arsync => arsync(&side, &refs),
                Tool::Rsync => rsync(&side, &refs),
            };
            assert_eq!(run.code(), Some(0), "{remote:?}: {}", run.describe());
            trees.push((snapshot(&side.join("bak")), snapshot(&side.join("dst"))));
        }
        for (what, i) in [("bak", 0), ("dst", 1)] {
            let pick = |t: &(Tree, Tree)| {
                let mut t = if i == 0 { t.0.clone() } else { t.1.clone() };
                for e in t.values_mut() {
                    e.mtime = (0, 0);
                }
                t
            };
            assert_same_tree(
                &format!("--backup-dir=../bak {remote:?}: {what}"),
                "arsync",
                &pick(&trees[0]),
                "rsync",
                &pick(&trees[1]),
            );
        }
    }
}

/// The fixture makes the options matter for rsync itself.
#[test]
fn fixture_makes_the_options_matter() {
    rsync_differs(&["-rlpD", "-b"], &["-rlpD"], fixture);
    rsync_differs(
        &["-rlpD", "-b", "--delete"],
        &["-rlpD", "--delete"],
        fixture,
    );
    rsync_differs(&["-rlpD", "-b", "--suffix=.bak"], &["-rlpD", "-b"], fixture);
    rsync_differs(&["-rlpD", "--backup-dir=bak"], &["-rlpD", "-b"], fixture);
}

/// Extraneous directories under `-b --delete`: their files become backups (`x~`) beside
/// them, so the directories cannot go — rsync says "cannot delete non-empty directory" for
/// each, which is no error (exit 0). (Compared here rather than by `check`: the directories'
/// times are the run's own.)
#[test]
fn backup_keeps_extraneous_directories_without_an_error() {
    let s = Scratch::new();
    let mut outs = Vec::new();
    for (tool, run) in [
        ("rsync", rsync as fn(&Path, &[&str]) -> Run),
        ("arsync", arsync),
    ] {
        let (src, dst) = (s.join(format!("{tool}/src")), s.join(format!("{tool}/dst")));
        write(&src.join("f"), b"f\n");
        write(&dst.join("gone/a/b"), b"deep\n");
        write(&dst.join("bk/keep"), b"top\n");
        let r = run(
            s.path(),
            &[
                "-ai",
                "-b",
                "--delete",
                &format!("{}/", src.display()),
                &format!("{}/", dst.display()),
            ],
        );
        r.assert_ok();
        assert!(dst.join("gone/a/b~").is_file() && dst.join("bk/keep~").is_file());
        outs.push(r.sorted_lines());
    }
    assert!(
        outs[1].contains(&"cannot delete non-empty directory: bk".to_owned()),
        "{:?}",
        outs[1]
    );
    assert_eq!(outs[0], outs[1]);
}

/// [`fixture`], the source's `d` with another mode than the destination's.
fn fixture_dir_mode(src: &Path, dst: &Path) {
    fixture(src, dst);
    chmod(&src.join("d"), 0o750);
    chmod(&dst.join("d"), 0o755);
}

/// A directory made in the backup tree takes the destination directory's mode as rsync's
/// generator has already set it (`-p`: the listed one), not the one it had before the run.
#[test]
fn backup_dir_made_with_the_listed_mode() {
    for args in [
        &["-rlpDi", "--backup-dir=bak"][..],
        &["-rlDi", "--backup-dir=bak"][..],
    ] {
        check(&Case {
            name: "--backup-dir, a directory's new mode",
            args,
            build: fixture_dir_mode,
            roles: &ALL_ROLES,
            lines: Lines::Ignore,
        });
    }
}
