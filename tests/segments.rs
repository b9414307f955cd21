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
