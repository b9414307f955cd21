//! Issue 15, connection: what reaches the remote side and how — `-M/--remote-option` (words
//! for the server only), `--blocking-io`, `--outbuf`, `--trust-sender`, `--ipv4`/`--ipv6`
//! (through a remote shell that is not ssh they change nothing, as in rsync) — in every role
//! against rsync. The daemon side (`--port`, `--address`, `-4`/`-6`, `--no-motd`) is in
//! tests/rsync_interop.rs `daemon_connection_options_as_rsync`.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, Case, Lines, Role, ALL_ROLES};

/// A large and a small file: a receiving server told `--max-size` skips the large one.
fn sizes(src: &Path, _dst: &Path) {
    write(&src.join("big"), &pseudo_random(5_000, 1));
    write(&src.join("small"), b"small\n");
    stamp_tree(src, 0);
}

/// `-M` in every role with a remote side. Not locally: rsync 3.2.7 hands the words to its
/// local receiver as arguments and mangles the destination's name (`created directory \#001`).
#[test]
fn remote_option_reaches_the_server_only() {
    let remote_roles: Vec<Role> = ALL_ROLES
        .iter()
        .copied()
        .filter(|r| *r != Role::Local)
        .collect();
    // A receiving server skips the large file; a sending one ignores --max-size (as rsync).
    check(&Case {
        name: "-M--max-size",
        args: &["-ai", "-M--max-size=1000"],
        build: sizes,
        roles: &remote_roles,
        lines: Lines::Compare,
    });
    check(&Case {
        name: "--remote-option",
        args: &["-ai", "--remote-option=--min-size=100"],
        build: sizes,
        roles: &remote_roles,
        lines: Lines::Compare,
    });
}

#[test]
fn stdio_and_trust_options_change_nothing_but_are_accepted() {
    for args in [
        &["-ai", "--blocking-io"][..],
        &["-ai", "--outbuf=L"],
        &["-ai", "--outbuf=Block"],
        &["-ai", "--trust-sender"],
        &["-ai", "--ipv4"],
        &["-ai", "--ipv6"],
    ] {
        check(&Case {
            name: "stdio options",
            args,
            build: sizes,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        });
    }
    // A value rsync does not know is a usage error in both.
    let s = Scratch::new();
    mkdir(&s.join("src"));
    let ours = arsync(s.path(), &["-a", "--outbuf=X", "src/", "dst/"]);
    let theirs = rsync(s.path(), &["-a", "--outbuf=X", "src/", "dst/"]);
    assert_eq!(ours.code(), Some(1), "{}", ours.describe());
    assert_eq!(theirs.code(), Some(1), "{}", theirs.describe());
}

/// `--stderr=all` puts every line, info too, on stderr; `errors` and `client` (any prefix)
/// leave them on stdout, as rsync's client does; another word is a usage error.
#[test]
fn stderr_modes_as_rsync() {
    let s = Scratch::new();
    write(&s.join("src/f"), b"x\n");
    let comparable = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("sent ") && !l.starts_with("total size"))
            .map(str::to_owned)
            .collect()
    };
    for (i, mode) in [
        "--stderr=all",
        "--stderr=a",
        "--stderr=errors",
        "--stderr=c",
    ]
    .iter()
    .enumerate()
    {
        let (a, r) = (format!("a{i}/"), format!("r{i}/"));
        let ours = arsync(s.path(), &["-rv", mode, "src/", &a]);
        let theirs = rsync(s.path(), &["-rv", mode, "src/", &r]);
        ours.assert_ok();
        theirs.assert_ok();
        let norm = |t: String, d: &str| comparable(t.replace(d.trim_end_matches('/'), "DEST"));
        assert_eq!(
            norm(ours.stdout_str().to_string(), &a),
            norm(theirs.stdout_str().to_string(), &r),
            "{mode}: stdout"
        );
        assert_eq!(
            norm(ours.stderr_str().to_string(), &a),
            norm(theirs.stderr_str().to_string(), &r),
            "{mode}: stderr"
        );
        assert_eq!(
            ours.stdout_str().is_empty(),
            mode.starts_with("--stderr=a"),
            "{mode}"
        );
    }
    for tool_run in [
        arsync(s.path(), &["-r", "--stderr=x", "src/", "x/"]),
        rsync(s.path(), &["-r", "--stderr=x", "src/", "y/"]),
    ] {
        assert_eq!(tool_run.code(), Some(1), "{}", tool_run.describe());
    }
}
