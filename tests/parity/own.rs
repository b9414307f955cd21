//! Issue 15, own: ownership mapping (`--chown`, `--usermap`, `--groupmap`, with and without
//! `--numeric-ids`) and how file data is written (`-s`), each against rsync in every role.

use std::path::Path;

use crate::common::*;
use crate::harness::{check, rsync_differs, Case, Lines, ALL_ROLES};

/// Entries owned by users and groups that exist here (root, daemon, bin) and by ids that
/// have no name (4321, 4500), so that name rules, id rules and ranges each have something to
/// match. Tests run as root, so the chowns work.
fn owners(src: &Path, dst: &Path) {
    mkdir(dst);
    for (name, uid, gid) in [
        ("by-root", 0, 0),
        ("by-daemon", 1, 1),
        ("by-bin", 2, 2),
        ("d/by-4321", 4321, 4321),
        ("d/by-4500", 4500, 4600),
    ] {
        let p = src.join(name);
        write(&p, name.as_bytes());
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).expect("chown");
    }
    symlink("by-root", &src.join("d/link"));
    std::os::unix::fs::lchown(src.join("d/link"), Some(2), Some(1)).expect("lchown");
    stamp_tree(src, 0);
}

fn owner_case(name: &str, args: &[&str]) {
    rsync_differs(args, &["-a"], owners);
    let mut with_i = vec!["-i"];
    with_i.extend(args);
    check(&Case {
        name,
        args: &with_i,
        build: owners,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn chown_user_and_group() {
    owner_case("--chown", &["-a", "--chown=daemon:bin"]);
}

#[test]
fn chown_user_only_and_group_only() {
    owner_case("--chown=USER", &["-a", "--chown=bin"]);
    owner_case("--chown=:GROUP", &["-a", "--chown=:daemon"]);
}

#[test]
fn chown_numeric() {
    owner_case(
        "--chown numeric",
        &["-a", "--numeric-ids", "--chown=7001:7002"],
    );
}

#[test]
fn chown_implies_owner_and_group() {
    // No -o or -g: --chown turns them on (rsync's preserve_uid/preserve_gid).
    owner_case("--chown without -og", &["-rlt", "--chown=daemon:bin"]);
}

#[test]
fn usermap_names_ids_ranges_wildcards() {
    owner_case(
        "--usermap",
        &[
            "-a",
            "--usermap=daemon:bin,4321:5555,4400-4999:daemon,b?n:7007,*:nobody",
        ],
    );
}

#[test]
fn groupmap_names_ids_ranges_wildcards() {
    owner_case(
        "--groupmap",
        &["-a", "--groupmap=4321:bin,4600-4700:6000,r*t:daemon"],
    );
}

#[test]
fn maps_with_numeric_ids() {
    // Without names from the sender only id rules and a lone `*` match.
    owner_case(
        "--usermap --numeric-ids",
        &[
            "-a",
            "--numeric-ids",
            "--usermap=daemon:bin,4321:5555,*:7000",
            "--groupmap=1-2:8000",
        ],
    );
}

#[test]
fn map_syntax_errors_exit_as_rsyncs() {
    for args in [["-a", "--usermap=nocolon"], ["-a", "--groupmap=1x:root"]] {
        let s = Scratch::new();
        let (a, r) = (s.side(Tool::Arsync), s.side(Tool::Rsync));
        for side in [&a, &r] {
            owners(&side.join("src"), &side.join("dst"));
        }
        let mut v = args.to_vec();
        v.extend(["src/", "dst/"]);
        let (ours, theirs) = (arsync(&a, &v), rsync(&r, &v));
        assert_eq!(ours.code(), theirs.code(), "{args:?}\n{}", ours.describe());
    }
}

/// A plain tree (for `-s`, whose effect is on the remote shell's command line).
fn plain(src: &Path, _dst: &Path) {
    write(&src.join("a b.txt"), b"spaced\n");
    write(&src.join("d/$x;&.txt"), b"specials\n");
    stamp_tree(src, 0);
}

#[test]
fn secluded_args_in_every_role() {
    check(&Case {
        name: "-s",
        args: &["-ai", "-s"],
        build: plain,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// A remote shell that logs its command line to `rsh.log`, then runs it here.
fn logging_rsh(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("rsh");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\n\
         shift\nexec sh -c \"$*\"\n",
        dir.join("rsh.log").display()
    );
    std::fs::write(&p, script).expect("write rsh");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    p
}

/// Names with spaces and shell specials as remote paths: with `-s` they reach the server
/// intact in every role (and, over rsync's protocol, not on the remote shell's command line,
/// as rsync's own `-s` does), giving rsync's tree.
#[test]
fn secluded_args_keep_odd_names_off_the_command_line() {
    const SRC: &str = "my src $x;&'q'/";
    const DST: &str = "the dst (1)/";
    let rsync_path = rsync_path().display().to_string();
    // (label, tool, protocol, remote program, push)
    let runs: [(&str, Tool, Option<&str>, &str, bool); 7] = [
        ("rsync push", Tool::Rsync, None, &rsync_path, true),
        ("rsync pull", Tool::Rsync, None, &rsync_path, false),
        ("merkle push", Tool::Arsync, Some("merkle"), ARSYNC, true),
        ("merkle pull", Tool::Arsync, Some("merkle"), ARSYNC, false),
        (
            "arsync to rsync push",
            Tool::Arsync,
            Some("rsync"),
            &rsync_path,
            true,
        ),
        (
            "arsync to rsync pull",
            Tool::Arsync,
            Some("rsync"),
            &rsync_path,
            false,
        ),
        ("rsync to arsync push", Tool::Rsync, None, ARSYNC, true),
    ];
    let mut reference: Option<Tree> = None;
    for secluded in [true, false] {
        for (label, tool, protocol, program, push) in runs {
            let s = Scratch::new();
            let side = s.side(tool);
            plain(&side.join(SRC.trim_end_matches('/')), &side.join("x"));
            let rsh = logging_rsh(&side);
            let mut v: Vec<String> = vec![
                "-a".into(),
                format!("--rsh={}", rsh.display()),
                format!("--rsync-path={program}"),
            ];
            if secluded {
                v.push("-s".into());
            }
            if let Some(p) = protocol {
                v.push(format!("--protocol={p}"));
            }
            if push {
                v.extend([SRC.to_owned(), format!("host:{DST}")]);
            } else {
                v.extend([format!("host:{SRC}"), DST.to_owned()]);
            }
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            let out = run(tool, &side, &refs);
            assert_eq!(
                out.code(),
                Some(0),
                "{label} -s={secluded}: {}",
                out.describe()
            );
            let tree = snapshot(&side.join(DST.trim_end_matches('/')));
            match &reference {
                None => reference = Some(tree),
                Some(r) => assert_same_tree(label, "this run", &tree, "rsync", r),
            }
            let log = std::fs::read_to_string(side.join("rsh.log")).expect("rsh log");
            let on_line = log.contains("src") || log.contains("dst");
            let over_rsync = protocol != Some("merkle");
            if over_rsync {
                assert_eq!(
                    on_line, !secluded,
                    "{label} -s={secluded}: the remote shell saw {log:?}"
                );
            }
        }
    }
}
