//! What arsync prints: `-v`, `--info=FLAGS` (levels and unknown items), `--debug=FLAGS`, `-h`
//! alone, in every role, against rsync.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, Case, Lines, ALL_ROLES};

/// A destination with changed, unchanged and extraneous files.
fn changes(src: &Path, dst: &Path) {
    write(&src.join("same.txt"), b"same\n");
    write(&src.join("new.txt"), b"new\n");
    write(&src.join("sub/changed.txt"), b"changed, longer now\n");
    stamp_tree(src, 0);
    write(&dst.join("same.txt"), b"same\n");
    write(&dst.join("sub/changed.txt"), b"old\n");
    write(&dst.join("gone.txt"), b"extraneous\n");
    stamp_tree(dst, 1);
    set_mtime(&src.join("same.txt"), 1_600_000_000, 0);
    set_mtime(&dst.join("same.txt"), 1_600_000_000, 0);
}

#[test]
fn verbose_names_and_deletions() {
    check(&Case {
        name: "-v --delete",
        args: &["-rtv", "--delete"],
        build: changes,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn info_name_and_del_without_verbose() {
    check(&Case {
        name: "--info=name,del",
        args: &["-rt", "--delete", "--info=name,del"],
        build: changes,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn info_name0_silences_verbose_names() {
    check(&Case {
        name: "-v --info=name0",
        args: &["-rtv", "--info=name0"],
        build: changes,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn unknown_info_and_debug_items_are_usage_errors() {
    for args in [
        &["-r", "--info=bogus"][..],
        &["-r", "--debug=bogus"][..],
        &["-r", "--info=name,nosuch2"][..],
    ] {
        check(&Case {
            name: "unknown item",
            args,
            build: changes,
            roles: &[crate::harness::Role::Local],
            lines: Lines::Compare,
        });
    }
}

/// rsync's debug names are accepted; arsync prints no debug lines of rsync's (its own are
/// `-vv` and `--explain`), so only silenced ones compare equal.
#[test]
fn known_debug_items_are_accepted() {
    check(&Case {
        name: "--debug=filter0,del0",
        args: &["-rt", "--debug=filter0,del0,none"],
        build: changes,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// `-h` alone prints help and exits 0, as rsync's; with other options it is `--human-readable`.
#[test]
fn h_alone_is_help() {
    let s = Scratch::new();
    let (a, r) = (arsync(s.path(), &["-h"]), rsync(s.path(), &["-h"]));
    assert_eq!(a.code(), Some(0), "{}", a.describe());
    assert_eq!(arsync(s.path(), &["--help"]).stdout_str(), a.stdout_str());
    assert_eq!(r.code(), Some(0));
    assert!(a.stdout_str().contains("Usage: arsync"), "{}", a.describe());
    assert!(a.stdout_str().contains("--info"), "{}", a.describe());
    for (flag, text) in [("--info=help", "PROGRESS"), ("--debug=help", "DELTASUM")] {
        let a = arsync(s.path(), &[flag]);
        assert_eq!(a.code(), Some(0), "{}", a.describe());
        assert!(a.stdout_str().contains(text), "{}", a.describe());
    }
    let v = arsync(s.path(), &["--version"]);
    assert_eq!(v.code(), Some(0));
    assert!(
        v.stdout_str()
            .contains("protocol versions: merkle 1, rsync 30-32"),
        "{}",
        v.describe()
    );
}

/// Shell completions and the manual page come from the same option table.
#[test]
fn completions_and_man_page() {
    let s = Scratch::new();
    for (args, want) in [
        (&["--completions", "bash"][..], "_arsync()"),
        (&["--completions", "zsh"][..], "#compdef arsync"),
        (&["--completions", "fish"][..], "complete -c arsync"),
        (&["--man"][..], ".TH arsync 1"),
    ] {
        let run = arsync(s.path(), args);
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert!(
            run.stdout_str().contains(want),
            "{args:?}: {}",
            run.describe()
        );
        assert!(
            run.stdout_str().contains("delete"),
            "{args:?}: options are listed"
        );
    }
    assert_eq!(arsync(s.path(), &["--completions", "tcsh"]).code(), Some(1));
}

/// Files, a symlink and a change: what `--out-format` escapes say about them.
fn formats(src: &Path, dst: &Path) {
    write(&src.join("a"), b"hello\n");
    write(&src.join("sub/big"), &pseudo_random(12_345, 3));
    symlink("a", &src.join("l"));
    stamp_tree(src, 0);
    mkdir(dst);
    write(&dst.join("stale"), b"extraneous\n");
    stamp_tree(dst, 1);
}

#[test]
fn out_format_escapes() {
    for args in [
        &["-rlt", "--out-format=%o %n%L"][..],
        &["-rlt", "--out-format=[%i] %-8n|%B|%o"][..],
        &["-rlt", "--delete", "--out-format=%o %i %n"][..],
    ] {
        check(&Case {
            name: "--out-format",
            args,
            build: formats,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// Only files, into a destination whose directory matches: `%l` (and `%'l`) of each file.
/// (A directory's `%l` is rsync's `st_size` of it; arsync's file list does not carry it and
/// prints 0 — docs/RSYNC_COMPATIBILITY.md.)
fn files_only(src: &Path, dst: &Path) {
    write(&src.join("a"), b"hello\n");
    write(&src.join("big"), &pseudo_random(1_234_567, 4));
    symlink("a", &src.join("l"));
    mkdir(dst);
    set_mtime(src, 1_700_000_000, 0);
    set_mtime(dst, 1_700_000_000, 0);
}

#[test]
fn out_format_lengths() {
    check(&Case {
        name: "--out-format lengths",
        args: &["-rl", "--out-format=%n|%l|%'l|%8l|%-9l|"],
        build: files_only,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// `--log-file`: the same lines as rsync's log, after the date and process id.
#[test]
fn log_file_lines() {
    let s = Scratch::new();
    let mut logs = Vec::new();
    for (tool, side) in [(Tool::Arsync, "a"), (Tool::Rsync, "r")] {
        let dir = s.join(side);
        formats(&dir.join("src"), &dir.join("dst"));
        let log = dir.join("log");
        let log_arg = format!("--log-file={}", log.display());
        let run = match tool {
            Tool::Arsync => arsync(&dir, &["-rlt", "--delete", &log_arg, "src/", "dst/"]),
            Tool::Rsync => rsync(&dir, &["-rlt", "--delete", &log_arg, "src/", "dst/"]),
        };
        run.assert_ok();
        let text = std::fs::read_to_string(&log).expect("log written");
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| {
                // `YYYY/MM/DD HH:MM:SS [PID] ` then the line.
                assert!(
                    l.len() > 21 && &l[4..5] == "/" && &l[20..21] == "[",
                    "{l:?}"
                );
                l.split_once("] ")
                    .map_or(String::new(), |(_, rest)| rest.to_owned())
            })
            .filter(|l| !l.starts_with("sent "))
            .collect();
        lines.sort();
        logs.push(lines);
    }
    assert_eq!(logs[0], logs[1], "arsync's log vs rsync's");
    assert!(
        logs[0].iter().any(|l| l == ">f+++++++++ a"),
        "{:?}",
        logs[0]
    );
}

/// `--list-only`, and a source without a destination, list as rsync's: type and permissions,
/// size, time, name (and the target of a symlink with `-l`), in rsync's order.
#[test]
fn list_only_matches_rsync() {
    let s = Scratch::new();
    build_rich_fixture(&s.join("src"));
    for args in [
        &["-r", "--list-only", "src/"][..],
        &["-a", "src"][..],
        &["src/"][..],
        &["-rl", "--exclude=*.bin", "--list-only", "src/"][..],
        &[
            "--list-only",
            "src/nested/a/sibling.txt",
            "src/links",
            "dest/",
        ][..],
        &["src/links"][..],
        &["-r", "src/links"][..],
    ] {
        let (a, r) = (arsync(s.path(), args), rsync(s.path(), args));
        assert_eq!(a.code(), r.code(), "{args:?}: {}", a.describe());
        assert_eq!(a.code(), Some(0), "{args:?}: {}", a.describe());
        assert_eq!(a.stdout_lines(), r.stdout_lines(), "{args:?}");
    }
    let (a, r) = (arsync(s.path(), &["gone"]), rsync(s.path(), &["gone"]));
    assert_eq!((a.code(), r.code()), (Some(23), Some(23)));
}

/// What a progress line says apart from the rate and the time: bytes and percent, and (as a
/// line of its own, since arsync finishes files in parallel and numbers them as they finish,
/// not in list order yet) the `(xfr#N, to-chk=R/T)` tail.
fn progress_facts(segment: &str) -> Vec<String> {
    let words: Vec<&str> = segment.split_whitespace().collect();
    match words.as_slice() {
        [bytes, pct, _rate, _time, tail @ ..] => {
            vec![format!("{bytes} {pct}"), tail.join(" ")]
        }
        _ => vec![segment.to_owned()],
    }
}

/// `--progress` and `--info=progress2` as rsync prints them when not on a terminal: the name
/// first, `\r` updates, each file's final line with `(xfr#N, to-chk=R/T)`; the overall line
/// left in place at the end.
#[test]
fn progress_lines_look_like_rsyncs() {
    let s = Scratch::new();
    write(&s.join("src/big"), &pseudo_random(3_000_000, 7));
    write(&s.join("src/small"), b"hi\n");
    stamp_tree(&s.join("src"), 0);
    // Each flag into fresh destinations, then again with nothing left to do.
    for flag in ["--progress", "--info=progress2", "--info=progress2"] {
        let mut seen = Vec::new();
        for (tool, dest) in [(Tool::Arsync, "a2"), (Tool::Rsync, "r2")] {
            let dest = if flag == "--progress" {
                &dest[..1]
            } else {
                dest
            };
            let args = ["-a", flag, "src/", dest];
            let run = match tool {
                Tool::Arsync => arsync(s.path(), &args),
                Tool::Rsync => rsync(s.path(), &args),
            };
            run.assert_ok();
            let out = run.stdout_str();
            // Final segments of each line: what is left on screen.
            let mut shown: Vec<String> = out
                .lines()
                .map(|l| l.rsplit('\r').next().unwrap_or("").to_owned())
                .filter(|l| !l.trim().is_empty())
                .flat_map(|l| {
                    if l.contains("xfr#") {
                        progress_facts(&l)
                    } else if l.starts_with("created directory") {
                        vec!["created directory".to_owned()]
                    } else {
                        vec![l]
                    }
                })
                .collect();
            if flag == "--progress" {
                // Updates during a file are `\r` segments before the final one.
                assert!(out.contains('\r'), "{flag}: {out:?}");
            }
            shown.sort();
            seen.push(shown);
        }
        assert_eq!(
            seen[0], seen[1],
            "{flag}: arsync vs rsync (what stays on screen)"
        );
    }
}

/// A tree where files finish out of list order (a large file first, many small ones after it,
/// a changed file deep down) with names that sort differently as directories (`a`, `a.d`,
/// `a-b`, `a b`): the lines must still come in rsync's order.
fn finishing_out_of_order(src: &Path, dst: &Path) {
    write(&src.join("0-large.bin"), &pseudo_random(6 << 20, 3));
    for d in ["a", "a.d", "a-b", "a b", "a0"] {
        for i in 0..4 {
            write(
                &src.join(format!("{d}/f{i}")),
                format!("{d} {i}\n").as_bytes(),
            );
        }
        write(&src.join(format!("{d}/sub/deep")), d.as_bytes());
    }
    write(&src.join("a.d.txt"), b"a file named like a directory\n");
    write(&src.join("zz"), b"last at the top\n");
    write(&src.join("a/sub/changed"), b"new content, longer\n");
    stamp_tree(src, 0);
    write(&dst.join("a/sub/changed"), b"old\n");
    write(&dst.join("a-b/f1"), b"a-b 1\n");
    stamp_tree(dst, 0);
}

#[test]
fn lines_in_list_order_while_files_move_in_parallel() {
    for args in [&["-ai"][..], &["-rtv"][..]] {
        check(&Case {
            name: "lines in list order",
            args,
            build: finishing_out_of_order,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// `arsync HOST:PATH` (and `--list-only`) lists a remote source as rsync does, over both
/// protocols: the same lines in the same order, every kind of entry, `-l` showing targets,
/// `-r` or one level. A directory's size column is left out of the comparison: rsync shows its
/// `st_size`, arsync's list carries none (0).
#[test]
fn remote_listing_as_rsync() {
    let s = Scratch::new();
    let rsh = crate::harness::fake_rsh(s.path());
    build_rich_fixture(&s.join("src"));
    let src = format!("host:{}/", s.join("src").display());
    let src_dir = format!("host:{}", s.join("src").display());
    let cases: [&[&str]; 5] = [
        &[&src],
        &["-a", &src],
        &["-r", &src_dir],
        &["--list-only", "-rl", &src, "ignored-dest/"],
        &["-av", &src],
    ];
    let normal = |run: &Run| -> Vec<String> {
        run.stdout_lines()
            .into_iter()
            .filter(|l| !l.starts_with("sent ") && !l.starts_with("total size"))
            .filter(|l| !l.is_empty())
            .map(|l| match l.strip_prefix('d') {
                Some(rest) if l.len() > 25 => format!("d{} <size>{}", &rest[..9], &rest[25..]),
                _ => l,
            })
            .collect()
    };
    for args in cases {
        let rsh_arg = format!("--rsh={}", rsh.display());
        let mut theirs = vec![rsh_arg.as_str()];
        theirs.extend(args);
        let want = rsync(s.path(), &theirs);
        want.assert_ok();
        let want_lines = normal(&want);
        assert!(want_lines.len() > 10, "{args:?}: {}", want.describe());
        for (proto, path) in [
            ("merkle", ARSYNC.to_string()),
            ("rsync", rsync_path().display().to_string()),
        ] {
            let proto_arg = format!("--protocol={proto}");
            let path_arg = format!("--rsync-path={path}");
            let mut ours = vec![rsh_arg.as_str(), proto_arg.as_str(), path_arg.as_str()];
            ours.extend(args);
            let got = arsync(s.path(), &ours);
            assert_eq!(got.code(), Some(0), "{args:?} {proto}: {}", got.describe());
            assert_eq!(
                normal(&got),
                want_lines,
                "{args:?} over {proto}: {}",
                got.describe()
            );
        }
        assert!(!s.join("ignored-dest").exists());
    }
}

/// Entries left out for want of `-l`/`-D`: rsync says `skipping non-regular file "x"` on
/// stdout (unless `-q`), in every role: a remote arsync sender gives its notices to the
/// receiving client (an `Info` frame, the `notices` capability; to an rsync client MSG_INFO).
fn non_regular(src: &Path, _dst: &Path) {
    write(&src.join("file"), b"file\n");
    std::os::unix::fs::symlink("file", src.join("link")).expect("symlink");
    let fifo =
        std::ffi::CString::new(src.join("fifo").as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    stamp_tree(src, 0);
}

#[test]
fn skipped_non_regular_files_are_told_on_stdout() {
    use crate::harness::ALL_ROLES;
    for args in [&["-ri"][..], &["-r"][..]] {
        check(&Case {
            name: "skipping non-regular file",
            args,
            build: non_regular,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}

/// Attribute-only changes: a file and a directory whose modes differ, and a file whose time
/// alone differs.
fn attributes_only(src: &Path, dst: &Path) {
    for side in [src, dst] {
        write(&side.join("modes.txt"), b"same bytes\n");
        write(&side.join("times.txt"), b"same bytes\n");
        write(&side.join("sub/x"), b"x\n");
    }
    chmod(&src.join("modes.txt"), 0o600);
    chmod(&src.join("sub"), 0o750);
    stamp_tree(src, 0);
    stamp_tree(dst, 0);
    set_mtime(&src.join("times.txt"), 1_600_000_000, 0);
}

/// `-v` and an `--out-format` without `%i` name a file only when it is transferred or
/// changed locally, a directory for any change; the attribute-only file changes are shown
/// by `%i` lines alone (rsync's `maybe_log_item`).
#[test]
fn names_without_itemize_skip_attribute_only_file_changes() {
    for args in [
        &["-av"][..],
        &["-a", "--out-format=%n"],
        &["-a", "--out-format=%i %n"],
    ] {
        check(&Case {
            name: "attribute-only changes",
            args,
            build: attributes_only,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
}
