//! Issue 18, streaming list: two arsyncs stream the file list a directory at a time (the
//! `segments` capability), locally and through a remote shell in both directions, on a tree
//! several levels deep made into many rounds; the results are compared with what the real
//! rsync makes of the same trees, and an arsync that does not offer segments (an older peer)
//! gets the whole list either way.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

/// Rounds of at most this many entries (beyond a round's first segment), on both sides.
const SMALL_ROUNDS: (&str, &str) = ("ARSYNC_SEGMENT_ROUND", "16");

/// A tree three levels deep: files, an empty directory, a symlink at each level.
fn tree(root: &Path) {
    deep_tree(root, 3, 3);
    for (i, d) in ["", "d0", "d1/d2", "d2/d0/d1"].iter().enumerate() {
        let dir = root.join(d);
        for f in 0..7 {
            write(
                &dir.join(format!("file{f}")),
                &pseudo_random(100 + f * 40, i as u64),
            );
        }
        mkdir(&dir.join("empty"));
        symlink("file0", &dir.join("link"));
    }
    stamp_tree(root, 11);
}

fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

/// The `-vv` line that says how the list came, if it came in segments.
fn rounds_line(run: &Run) -> Option<String> {
    run.line_starting("file list in segments:")
}

#[test]
fn a_fresh_copy_in_many_rounds_ends_as_rsync_ends_it_every_way() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    let rsh = fake_rsh(s.path());
    let want = s.join("want");
    let by_rsync = rsync(s.path(), &["-ai", &slash(&src), &slash(&want)]);
    by_rsync.assert_ok();
    let server = format!("--rsync-path=env ARSYNC_SEGMENT_ROUND=16 {ARSYNC}");
    let rsh = format!("--rsh={}", rsh.display());
    for (how, from, to) in [
        ("local", slash(&src), slash(&s.join("local"))),
        ("pull", format!("h:{}", slash(&src)), slash(&s.join("pull"))),
        ("push", slash(&src), format!("h:{}", slash(&s.join("push")))),
    ] {
        let run = arsync_env(
            s.path(),
            &["-aivv", "--stats", &rsh, &server, &from, &to],
            &[SMALL_ROUNDS],
        );
        run.assert_ok();
        let dest = s.join(how);
        assert_same_tree(how, "arsync", &snapshot(&dest), "rsync", &snapshot(&want));
        // The receiver said how the list came: in several rounds (a pushing client hears
        // nothing of it).
        if how != "push" {
            let line = rounds_line(&run).unwrap_or_else(|| panic!("{how}: {}", run.describe()));
            assert!(!line.ends_with(" 1 round"), "{how}: {line}");
        }
        // Items in rsync's order, the sender's letter for a push.
        let items = |r: &Run| -> Vec<String> {
            r.stdout_lines()
                .into_iter()
                .filter(|l| {
                    l.len() > 12
                        && l.as_bytes()[11] == b' '
                        && l.starts_with(['<', '>', 'c', '.', '*'])
                })
                .map(|l| l.replacen('<', ">", 1))
                .collect()
        };
        assert_eq!(items(&run), items(&by_rsync), "{how}");
        // The totals cover the whole list.
        assert_eq!(
            run.line_starting("Number of files:"),
            arsync_env(
                s.path(),
                &["-an", "--stats", &slash(&src), &slash(&s.join("n"))],
                &[("ARSYNC_SEGMENTS", "0")]
            )
            .line_starting("Number of files:"),
            "{how}"
        );
    }
}

#[test]
fn an_older_peer_gets_the_whole_list_both_ways() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    let rsh = format!("--rsh={}", fake_rsh(s.path()).display());
    // The server (or the client) does not offer segments, as an arsync before them.
    let old_server = format!("--rsync-path=env ARSYNC_SEGMENTS=0 {ARSYNC}");
    let new_server = format!("--rsync-path={ARSYNC}");
    for (how, server, client_env) in [
        (
            "pull from an old server",
            &old_server,
            ("ARSYNC_SEGMENT_ROUND", "16"),
        ),
        (
            "push to an old server",
            &old_server,
            ("ARSYNC_SEGMENT_ROUND", "16"),
        ),
        (
            "pull by an old client",
            &new_server,
            ("ARSYNC_SEGMENTS", "0"),
        ),
        (
            "push by an old client",
            &new_server,
            ("ARSYNC_SEGMENTS", "0"),
        ),
    ] {
        let dest = s.join(how.replace(' ', "-"));
        let (from, to) = if how.starts_with("pull") {
            (format!("h:{}", slash(&src)), slash(&dest))
        } else {
            (slash(&src), format!("h:{}", slash(&dest)))
        };
        let run = arsync_env(s.path(), &["-avv", &rsh, server, &from, &to], &[client_env]);
        run.assert_ok();
        assert_same_tree(how, "copy", &snapshot(&dest), "source", &snapshot(&src));
        assert_eq!(rounds_line(&run), None, "{how}");
    }
}

#[test]
fn an_update_with_delete_in_many_rounds_ends_as_rsync_ends_it() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    let (mine, theirs) = (s.join("mine"), s.join("theirs"));
    for d in [&mine, &theirs] {
        rsync(s.path(), &["-a", &slash(&src), &slash(d)]).assert_ok();
        // Extraneous files and directories at every depth, a changed file, a file where a
        // directory is.
        write(&d.join("d1/d2/extra/x"), b"x");
        write(&d.join("d0/old"), b"old");
        write(&d.join("d0/file3"), b"changed");
        std::fs::remove_dir_all(d.join("d2/d0/d1")).unwrap();
        write(&d.join("d2/d0/d1"), b"a file in the way");
    }
    // A local copy streams into an existing destination too (no tree exchange there).
    let run = arsync_env(
        s.path(),
        &["-aivv", "--delete", &slash(&src), &slash(&mine)],
        &[SMALL_ROUNDS],
    );
    run.assert_ok();
    assert!(rounds_line(&run).is_some(), "{}", run.describe());
    rsync(s.path(), &["-a", "--delete", &slash(&src), &slash(&theirs)]).assert_ok();
    assert_same_tree(
        "delete",
        "arsync",
        &snapshot(&mine),
        "rsync",
        &snapshot(&theirs),
    );
}

// Issue 18, streaming list, rsync's protocol: arsync's sender behind rsync's incremental
// recursion walks a directory at a time too.

/// A tree of `tops` directories of 5 subdirectories of `files` tiny files (and one file and
/// a symlink in each top directory): more directories than one lookahead holds.
fn wide_tree(root: &Path, tops: usize, files: usize) {
    for t in 0..tops {
        let top = root.join(format!("t{t:02}"));
        write(&top.join("readme"), format!("top {t}\n").as_bytes());
        symlink("readme", &top.join("link"));
        for d in 0..5 {
            for f in 0..files {
                write(
                    &top.join(format!("d{d}/f{f:03}")),
                    format!("{t} {d} {f}\n").as_bytes(),
                );
            }
        }
    }
    mkdir(&root.join("t00/d0/empty"));
    stamp_tree(root, 5);
}

/// The item lines of a run (`-i`), sorted, a sender's `<` read as a receiver's `>`: the two
/// processes of rsync's receiving side interleave them in an order of their own.
fn sorted_items(r: &Run) -> Vec<String> {
    let mut v: Vec<String> = r
        .stdout_lines()
        .into_iter()
        .filter(|l| {
            l.len() > 12 && l.as_bytes()[11] == b' ' && l.starts_with(['<', '>', 'c', '.', '*'])
        })
        .map(|l| l.replacen('<', ">", 1))
        .collect();
    v.sort();
    v
}

#[test]
fn a_wide_tree_streams_to_and_from_rsync_with_delete_as_rsync_sends_it() {
    let s = Scratch::new();
    let src = s.join("src");
    wide_tree(&src, 12, 40);
    let rsh = format!("--rsh={}", fake_rsh(s.path()).display());
    // The destinations: extraneous files at every depth, a changed file.
    let dest = |name: &str| {
        let d = s.join(name);
        write(&d.join("gone"), b"x");
        write(&d.join("t03/d2/old"), b"old");
        write(&d.join("t11/d4/f000"), b"changed");
        write(&d.join("t07/extra/x"), b"x");
        d
    };
    let stats = [
        "Number of files:",
        "Number of created files:",
        "Number of regular files transferred:",
        "Total file size:",
    ];
    let arsync_server = format!("--rsync-path=env ARSYNC_SEGMENT_ROUND=16 {ARSYNC}");
    for how in ["push", "pull"] {
        let (mine, theirs) = (
            dest(&format!("{how}-arsync")),
            dest(&format!("{how}-rsync")),
        );
        let (ours, reference) = if how == "push" {
            let ours = arsync_env(
                s.path(),
                &[
                    "-ai",
                    "--delete",
                    "--stats",
                    &rsh,
                    "--rsync-path=rsync",
                    &slash(&src),
                    &format!("h:{}", slash(&mine)),
                ],
                &[SMALL_ROUNDS],
            );
            let reference = rsync(
                s.path(),
                &[
                    "-ai",
                    "--delete",
                    "--stats",
                    &rsh,
                    &slash(&src),
                    &format!("h:{}", slash(&theirs)),
                ],
            );
            (ours, reference)
        } else {
            let pull = |server: &str, to: &Path| {
                rsync(
                    s.path(),
                    &[
                        "-ai",
                        "--delete",
                        "--stats",
                        &rsh,
                        server,
                        &format!("h:{}", slash(&src)),
                        &slash(to),
                    ],
                )
            };
            (
                pull(&arsync_server, &mine),
                pull("--rsync-path=rsync", &theirs),
            )
        };
        ours.assert_ok();
        reference.assert_ok();
        assert_same_tree(how, "arsync", &snapshot(&mine), "rsync", &snapshot(&theirs));
        assert_eq!(sorted_items(&ours), sorted_items(&reference), "{how}");
        for label in stats {
            assert_eq!(
                ours.line_starting(label),
                reference.line_starting(label),
                "{how}: {}",
                ours.describe()
            );
        }
    }
}

/// A directory renamed away while an rsync client pulls from `arsync --server --sender`, after
/// the transfer began: streamed, the sender lists it only when the generator nears it, and
/// says it vanished; a sender that listed the whole tree first never looks at it again.
#[test]
fn a_pulled_directory_is_listed_when_the_generator_nears_it_not_before() {
    let s = Scratch::new();
    let rsh = format!("--rsh={}", fake_rsh(s.path()).display());
    for (how, env) in [
        ("streamed", "ARSYNC_SEGMENT_ROUND=16"),
        ("whole", "ARSYNC_SEGMENTS=0"),
    ] {
        let src = s.join(format!("{how}-src"));
        // 2,400 files of 2 KB before `zz` (sorted last), at 1.5 MB/s: `zz` is walked about a
        // second after the first directory is made.
        for d in 0..60 {
            for f in 0..40 {
                write(&src.join(format!("a{d:03}/f{f:02}")), &[b'y'; 2000]);
            }
        }
        write(&src.join("zz/f0"), b"z");
        let dst = s.join(format!("{how}-dst"));
        let server = format!("--rsync-path=env {env} {ARSYNC}");
        let from = format!("h:{}", slash(&src));
        let running = spawn(
            Tool::Rsync,
            s.path(),
            &["-r", "--bwlimit=1500", &rsh, &server, &from, &slash(&dst)],
        );
        let start = std::time::Instant::now();
        while !dst.join("a000").exists() {
            assert!(
                start.elapsed().as_secs() < 30,
                "{how}: the pull never began"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::fs::rename(src.join("zz"), src.join("zz.moved")).unwrap();
        let run = running.wait(RUN_TIMEOUT);
        let out = run.stdout_str() + &run.stderr_str();
        let vanished = format!("vanished: \"{}\"", src.join("zz").display());
        if how == "streamed" {
            assert!(out.contains(&vanished), "{how}: {}", run.describe());
            assert_eq!(run.code(), Some(24), "{how}: {}", run.describe());
        } else {
            assert!(!out.contains(&vanished), "{how}: {}", run.describe());
        }
        assert!(dst.join("a059/f39").exists(), "{how}: {}", run.describe());
    }
}
