//! Issue 15, source: `--remove-source-files`, `--ignore-errors` — each against rsync in every
//! role it can take, with a fixture where the option changes the result (the harness compares
//! the source tree too, so a sender that removes nothing fails).

use std::path::Path;

use crate::common::*;
use crate::harness::{check_into, check_then, Case, Lines, Role, ALL_ROLES};

/// New, identical and changed files, a symlink, a file in a subdirectory and an empty
/// directory; the destination holds the identical and an older changed file.
fn sources_to_remove(src: &Path, dst: &Path) {
    write(&src.join("new.txt"), b"new\n");
    write(&src.join("same.txt"), b"same\n");
    write(&src.join("changed.txt"), b"changed, longer\n");
    write(&src.join("sub/deep.txt"), b"deep\n");
    std::fs::hard_link(src.join("sub/deep.txt"), src.join("hard.txt")).expect("hard link");
    write(&src.join("kept.o"), b"excluded\n");
    symlink("new.txt", &src.join("link"));
    mkdir(&src.join("empty"));
    stamp_tree(src, 0);
    write(&dst.join("same.txt"), b"same\n");
    write(&dst.join("changed.txt"), b"old\n");
    stamp_tree(dst, 0);
}

#[test]
fn remove_source_files() {
    for args in [
        &["-ai", "--remove-source-files", "--exclude=*.o"][..],
        // Without -t: the changed file's time is not kept; the identical one is still removed.
        &["-rli", "--remove-source-files"],
        // Hard links: the one linked to the file sent is synchronized too.
        &["-aiH", "--remove-source-files"],
        // A dry run removes nothing.
        &["-ai", "--remove-source-files", "-n"],
    ] {
        check_then(
            &Case {
                name: "--remove-source-files",
                args,
                build: sources_to_remove,
                roles: &ALL_ROLES,
                lines: Lines::Compare,
            },
            "dst/",
            |role: Role, _ours: &Path, theirs: &Path| {
                // rsync removed files (not directories): the case is not vacuous.
                let src = theirs.join("src");
                let dry = args.contains(&"-n");
                assert_eq!(src.join("new.txt").exists(), dry, "{role:?} {args:?}");
                assert!(src.join("sub").is_dir() && src.join("empty").is_dir());
            },
        );
    }
}

/// `--remove-source-files` onto the source itself keeps every file (rsync's "Skipping sender
/// remove of destination file", exit 23). Locally only: rsync checks it only when both ends are
/// one process tree (`local_server`); over a remote shell rsync removes them (arsync keeps them
/// in every role: the receiver names its file's device and inode).
#[test]
fn remove_source_files_onto_itself_keeps_them() {
    check_into(
        &Case {
            name: "--remove-source-files onto itself",
            args: &["-ai", "--remove-source-files"],
            build: sources_to_remove,
            roles: &[Role::Local],
            lines: Lines::Compare,
        },
        "src/",
    );
}

/// `--ignore-errors`: a source directory the sender cannot read (the tools run as `nobody`,
/// see `read_errors`) no longer keeps `--delete` from deleting: what it held at the destination
/// goes, as do extraneous files; the run still ends with 23. Each role against rsync in the same
/// role, both as `nobody`.
#[test]
fn ignore_errors() {
    use crate::read_errors::{as_nobody, chown_tree, nobody_scratch};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    let (s, bin, rsh) = nobody_scratch();
    let rsync_bin = rsync_path();
    for (i, role) in ALL_ROLES.into_iter().enumerate() {
        let mut results = Vec::new();
        for ours in [true, false] {
            let dir = s.join(format!("r{i}-{ours}"));
            write(&dir.join("src/a"), b"a\n");
            write(&dir.join("src/sub/s"), b"s\n");
            write(&dir.join("dst/sub/old"), b"deleted all the same\n");
            write(&dir.join("dst/extra"), b"extraneous\n");
            chown_tree(&dir);
            fs::set_permissions(dir.join("src/sub"), fs::Permissions::from_mode(0o000)).unwrap();
            let (push, client_is_rsync, server, protocol) = match role {
                Role::Local => (true, !ours, None, None),
                Role::MerklePush | Role::MerklePull => (
                    role == Role::MerklePush,
                    !ours,
                    Some(if ours { &bin } else { &rsync_bin }),
                    ours.then_some("--protocol=merkle"),
                ),
                Role::RsyncPush | Role::RsyncPull => (
                    role == Role::RsyncPush,
                    !ours,
                    Some(&rsync_bin),
                    ours.then_some("--protocol=rsync"),
                ),
                Role::RsyncClientPush | Role::RsyncClientPull => (
                    role == Role::RsyncClientPush,
                    true,
                    Some(if ours { &bin } else { &rsync_bin }),
                    None,
                ),
            };
            let mut args: Vec<String> = protocol.into_iter().map(String::from).collect();
            let (src, dst) = match (server, push) {
                (None, _) => ("src/".to_owned(), "dst/".to_owned()),
                (Some(_), true) => ("src/".to_owned(), format!("host:{}/dst/", dir.display())),
                (Some(_), false) => (format!("host:{}/src/", dir.display()), "dst/".to_owned()),
            };
            if let Some(server) = server {
                args.push(format!("--rsh={}", rsh.display()));
                args.push(format!("--rsync-path={}", server.display()));
            }
            args.extend(["-r", "--delete", "--ignore-errors"].map(String::from));
            args.extend([src, dst]);
            let program = if client_is_rsync { &rsync_bin } else { &bin };
            let out = as_nobody(&dir, program, &args);
            let left = ["dst/sub/old", "dst/extra", "dst/a"].map(|p| dir.join(p).exists());
            results.push((out.code, left, out.stderr));
        }
        let (a, r) = (&results[0], &results[1]);
        assert_eq!(
            (a.0, a.1),
            (r.0, r.1),
            "{role:?}: arsync vs rsync\n--- arsync ---\n{}\n--- rsync ---\n{}",
            a.2,
            r.2
        );
        // Without the option rsync keeps them (`read_errors`): here they went.
        assert_eq!(r.1, [false, false, true], "{role:?}: {}", r.2);
    }
    for d in fs::read_dir(s.path()).unwrap().flatten() {
        let _ = fs::set_permissions(d.path().join("src/sub"), fs::Permissions::from_mode(0o755));
    }
}
