//! Issue 15, tempfiles: `-T/--temp-dir`, `--delay-updates`, `--partial` and `--partial-dir`,
//! each against rsync in every role, over fixtures where the option changes the outcome
//! (checked with `rsync_differs`), and transfers stopped by SIGINT then resumed.
//!
//! A temp directory that works leaves the same tree as none, so `-T` is also run into a
//! directory that cannot hold files (`/proc`: every file fails, exit 23) and into one that
//! does not exist (exit 1); the working one must be empty afterwards on both sides.
//! `--delay-updates` shows in the tree through rsync's handling of its `.~tmp~` waiting room:
//! a file of that name in the way is replaced by the directory, which is removed at the end.

use std::path::Path;

use crate::common::*;
use crate::harness::{
    check, check_then, comparable_lines, rsync_differs, Case, Lines, Role, ALL_ROLES,
};

/// `f` and `d/g` updated, `new` and `d/e/deep` new, `same` unchanged; `tmp` (beside the
/// destination) for `-T @SIDE@/tmp` (rsync 3.5 refuses `-T ../tmp`; arsync's own tests take
/// the relative form); `.~tmp~` a file in the way of `--delay-updates`' directory,
/// `d/.~tmp~/same` a partial file left for `d/same`, which is up to date.
fn fixture(src: &Path, dst: &Path) {
    write(&src.join("f"), b"new content\n");
    write(&src.join("d/g"), &pseudo_random(300 << 10, 7));
    write(&src.join("new"), b"new\n");
    write(&src.join("d/e/deep"), b"deep\n");
    write(&src.join("same"), b"same\n");
    write(&src.join("d/same"), b"same\n");
    stamp_tree(src, 0);
    write(&dst.join("f"), b"old\n");
    write(&dst.join("d/g"), &pseudo_random(200 << 10, 7));
    write(&dst.join("same"), b"same\n");
    write(&dst.join(".~tmp~"), b"in the way\n");
    write(&dst.join("d/same"), b"same\n");
    write(&dst.join("d/.~tmp~/same"), b"sa");
    stamp_tree(dst, 1);
    for root in [src, dst] {
        set_mtime(&root.join("same"), 1_600_000_000, 0);
        set_mtime(&root.join("d/same"), 1_600_000_000, 0);
    }
    if let Some(side) = dst.parent() {
        mkdir(&side.join("tmp"));
    }
}

/// Run `args` over [`fixture`] in every role, comparing trees and lines; then the temp
/// directory beside the destination must be empty on both sides.
fn check_all(name: &str, args: &[&str]) {
    check_then(
        &Case {
            name,
            args,
            build: fixture,
            roles: &ALL_ROLES,
            lines: Lines::Compare,
        },
        "dst/",
        |role, a, r| {
            for side in [a, r] {
                let left: Vec<_> = std::fs::read_dir(side.join("tmp")).expect("tmp").collect();
                assert!(left.is_empty(), "{name} ({role:?}): {side:?}/tmp: {left:?}");
            }
        },
    );
}

#[test]
fn temp_dir_stages_files_elsewhere() {
    check_all("-T SIDE/tmp", &["-ai", "-T", "@SIDE@/tmp"]);
    check_all(
        "--temp-dir=SIDE/tmp",
        &["-ai", "--temp-dir=@SIDE@/tmp", "--delete"],
    );
}

#[test]
fn temp_dir_on_another_filesystem() {
    // /dev/shm is a tmpfs here (the scratch directories are not): files are copied into
    // place, as rsync's robust_rename does. Skipped where it is the same filesystem.
    let dev = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
    if dev("/dev/shm").is_err()
        || dev("/dev/shm").ok() == dev(&std::env::temp_dir().display().to_string()).ok()
    {
        return;
    }
    check_all("-T /dev/shm", &["-ai", "-T", "/dev/shm"]);
    check_all(
        "-T /dev/shm --delay-updates",
        &["-ai", "-T", "/dev/shm", "--delay-updates"],
    );
}

#[test]
fn temp_dir_that_holds_nothing_fails_every_file() {
    // rsync's sending client itemizes the files it sends even when the receiver fails them:
    // the trees and the exit code (23) are compared.
    rsync_differs(&["-a", "-T", "/proc"], &["-a"], fixture);
    check(&Case {
        name: "-T /proc",
        args: &["-a", "-T", "/proc"],
        build: fixture,
        roles: &ALL_ROLES,
        lines: Lines::Ignore,
    });
}

#[test]
fn temp_dir_missing_is_a_usage_error() {
    check(&Case {
        name: "-T ../nope",
        args: &["-a", "-T", "../nope"],
        build: fixture,
        roles: &ALL_ROLES,
        lines: Lines::Ignore,
    });
}

/// `-T ../tmp`, a temp directory named relative to the destination and beside it: rsync 3.5
/// refuses it (every file "mkstemp … failed: Invalid argument", exit 23), arsync takes it as
/// rsync did before. Compared with rsync's tree for the same run without `-T`.
#[test]
fn relative_temp_dir_beside_the_destination() {
    let s = Scratch::new();
    let (a, r) = (s.side(Tool::Arsync), s.side(Tool::Rsync));
    for side in [&a, &r] {
        fixture(&side.join("src"), &side.join("dst"));
    }
    let ours = arsync(&a, &["-ai", "-T", "../tmp", "--delete", "src/", "dst/"]);
    let theirs = rsync(&r, &["-ai", "--delete", "src/", "dst/"]);
    assert_eq!(ours.code(), Some(0), "{}", ours.describe());
    assert_eq!(theirs.code(), Some(0), "{}", theirs.describe());
    assert_same_tree(
        "-T ../tmp",
        "arsync",
        &snapshot(&a.join("dst")),
        "rsync",
        &snapshot(&r.join("dst")),
    );
    assert_eq!(comparable_lines(&ours), comparable_lines(&theirs));
    let left: Vec<_> = std::fs::read_dir(a.join("tmp")).expect("tmp").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn delay_updates_puts_files_in_place_at_the_end() {
    rsync_differs(&["-a", "--delay-updates"], &["-a"], fixture);
    check_all("--delay-updates", &["-ai", "--delay-updates"]);
    check_all(
        "--delay-updates -T",
        &["-ai", "--delay-updates", "-T", "@SIDE@/tmp", "--delete"],
    );
}

#[test]
fn delay_updates_with_backups() {
    check_all("--delay-updates -b", &["-rlpDi", "--delay-updates", "-b"]);
}

#[test]
fn delay_updates_refuses_inplace() {
    check(&Case {
        name: "--delay-updates --inplace",
        args: &["-a", "--delay-updates", "--inplace"],
        build: fixture,
        roles: &[Role::Local],
        lines: Lines::Ignore,
    });
}

// --partial and --partial-dir: a transfer stopped by SIGINT to the client keeps what arrived
// (a prefix of the file, in place or in the partial directory), and the next run builds the
// file from it: the result is exact and, where rsync's delta runs (every role but the local
// one, which copies whole files as rsync does), less than the whole file travels as literal
// data. rsync in the same shape is held to the same (so the fixture cannot pass by luck).

/// The big file's size: a few seconds at the rate below.
const BIG: usize = 24 << 20;

/// Bytes per second (KiB) while the first run is stopped.
const RATE: &str = "4000";

/// The arguments for `role` (`reference`: rsync's run in the same shape), with `opts` and,
/// when `slow`, the rate limit (which a client forwards to a sending server, as rsync's does).
fn shaped(role: Role, reference: bool, rsh: &Path, opts: &[&str], slow: bool) -> Vec<String> {
    let rsync = rsync_path().display().to_string();
    let server = match (role, reference) {
        (Role::Local, _) => None,
        (_, true) | (Role::RsyncPush | Role::RsyncPull, false) => Some(rsync),
        _ => Some(ARSYNC.to_string()),
    };
    let mut v: Vec<String> = Vec::new();
    if !reference {
        match role {
            Role::MerklePush | Role::MerklePull => v.push("--protocol=merkle".into()),
            Role::RsyncPush | Role::RsyncPull => v.push("--protocol=rsync".into()),
            _ => {}
        }
    }
    if let Some(server) = server {
        v.push(format!("--rsh={}", rsh.display()));
        v.push(format!("--rsync-path={server}"));
    }
    v.extend(opts.iter().map(|s| s.to_string()));
    if slow {
        v.push(format!("--bwlimit={RATE}"));
    }
    let pull = matches!(
        role,
        Role::MerklePull | Role::RsyncPull | Role::RsyncClientPull
    );
    let push = matches!(
        role,
        Role::MerklePush | Role::RsyncPush | Role::RsyncClientPush
    );
    v.push(if pull { "host:src/" } else { "src/" }.into());
    v.push(if push { "host:dst/" } else { "dst/" }.into());
    v
}

/// Stop a slow transfer of a big file in `role` with SIGINT to the client, check what is
/// kept at `kept` (below the side), then run again and check the result.
fn stopped_then_resumed(role: Role, opts: &[&str], kept: &str) {
    stopped_then_resumed_over(role, opts, kept, false, &[false, true]);
}

/// [`stopped_then_resumed`], over an old version of the file (of other content) when `old`:
/// the first run is then an update built against it; `runs` says whose (`true`: rsync's).
fn stopped_then_resumed_over(role: Role, opts: &[&str], kept: &str, old: bool, runs: &[bool]) {
    for &reference in runs {
        let who = if reference { "rsync" } else { "arsync" };
        let what = format!("{opts:?} ({role:?}, {who})");
        let s = Scratch::new();
        let rsh = crate::harness::fake_rsh(s.path());
        let side = s.side(if reference { Tool::Rsync } else { Tool::Arsync });
        let big = pseudo_random(BIG, 15);
        write(&side.join("src/big"), &big);
        mkdir(&side.join("dst"));
        if old {
            write(&side.join("dst/big"), &pseudo_random(BIG, 16));
            set_mtime(&side.join("dst/big"), 1_500_000_000, 0);
        }
        let client = match (role, reference) {
            (Role::RsyncClientPush | Role::RsyncClientPull, _) | (_, true) => Tool::Rsync,
            _ => Tool::Arsync,
        };
        // `@` in an option stands for this side's directory (an absolute partial directory).
        let here = side.display().to_string();
        let owned: Vec<String> = opts.iter().map(|o| o.replace('@', &here)).collect();
        let opts: Vec<&str> = owned.iter().map(String::as_str).collect();
        let args = shaped(role, reference, &rsh, &opts, true);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut running = spawn(client, &side, &refs);
        // Wait until some data is there (a staged file in the destination or in its partial
        // directory), then a little more.
        let started = std::time::Instant::now();
        // A temp directory elsewhere is where the data goes first.
        let watched = |p: &str| match opts.iter().position(|o| *o == "-T") {
            Some(i) => walk_sizes(Path::new(opts[i + 1])),
            None => walk_sizes(&side.join(p)),
        };
        let before = watched("dst");
        while started.elapsed() < std::time::Duration::from_secs(20) && running.is_running() {
            let written = watched("dst").saturating_sub(before);
            if written >= 2 << 20 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !running.is_running() {
            panic!(
                "{what}: ended before it was stopped\n{}",
                running.wait(RUN_TIMEOUT).describe()
            );
        }
        // SAFETY: plain kill(2) on the child we started.
        let rc = unsafe { libc::kill(running.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "kill(SIGINT)");
        let first = running.wait(RUN_TIMEOUT);
        assert_ne!(
            first.code(),
            Some(0),
            "{what}: not stopped\n{}",
            first.describe()
        );
        // The server may still be finishing what it keeps.
        let path = side.join(kept);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline && !path.is_file() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let part = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{what}: nothing kept at {kept}: {e}\n{}", first.describe())
        });
        // rsync itself, stopped while its receiver still writes, has once been seen keeping
        // a file that is not a prefix (its receiver process outlives the client's SIGINT):
        // the promise is checked of arsync, and of rsync only that it kept something.
        assert!(
            !part.is_empty() && (reference || (part.len() < BIG && big.starts_with(&part))),
            "{what}: {kept} is not a proper prefix of the source ({} bytes)",
            part.len()
        );
        // Again, at full speed: exact, and (but locally) built from what was kept.
        let mut again = opts.to_vec();
        again.push("--stats");
        let args = shaped(role, reference, &rsh, &again, false);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let second = run(client, &side, &refs);
        assert_eq!(second.code(), Some(0), "{what}: {}", second.describe());
        assert!(
            std::fs::read(side.join("dst/big")).expect("dst/big") == big,
            "{what}: the resumed file differs from the source"
        );
        if role != Role::Local {
            assert!(
                second.stat("Literal data:") < BIG as u64 - part.len() as u64 / 2,
                "{what}: the kept {} bytes were not used\n{}",
                part.len(),
                second.describe()
            );
        }
        let left: Vec<String> = std::fs::read_dir(side.join("dst"))
            .expect("dst")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["big"], "{what}: left in dst");
    }
}

/// The bytes of every file below `dir`.
fn walk_sizes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_sizes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

#[test]
fn partial_keeps_a_stopped_file_and_resumes_from_it() {
    for role in ALL_ROLES {
        stopped_then_resumed(role, &["-a", "--partial"], "dst/big");
    }
}

#[test]
fn partial_dir_keeps_a_stopped_file_there_and_resumes_from_it() {
    for role in ALL_ROLES {
        stopped_then_resumed(role, &["-a", "--partial-dir=.part"], "dst/.part/big");
    }
}

/// A destination where an earlier run was stopped with `--partial-dir=.part`: `d/.part/g` is
/// what arrived of `d/g` (a prefix), `.part/same` of `same`, which is now up to date.
fn leftovers(src: &Path, dst: &Path) {
    fixture(src, dst);
    let g = std::fs::read(src.join("d/g")).expect("d/g");
    write(&dst.join("d/.part/g"), &g[..100 << 10]);
    write(&dst.join(".part/same"), b"sa");
    stamp_tree(dst, 1);
    set_mtime(&dst.join("same"), 1_600_000_000, 0);
    set_mtime(&dst.join("d/same"), 1_600_000_000, 0);
}

#[test]
fn partial_dir_files_are_the_basis_then_go() {
    // rsync builds d/g from its partial file and removes it (and the emptied directories);
    // the partial file of the up-to-date `same` goes too.
    rsync_differs(&["-a", "--partial-dir=.part"], &["-a"], leftovers);
    check(&Case {
        name: "--partial-dir leftovers",
        args: &["-ai", "--partial-dir=.part"],
        build: leftovers,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
    check(&Case {
        name: "--partial leftovers",
        args: &["-ai", "--partial"],
        build: leftovers,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

#[test]
fn absolute_partial_dir_keeps_a_stopped_file_there_and_resumes_from_it() {
    // rsync 3.2.7 itself resumes from an absolute partial directory only locally: over a
    // remote shell its receiving server reports "big failed verification -- update put into
    // partial-dir" (exit 23), and so does its receiving client; so it is the reference in the
    // local role only, and the roles where rsync receives are left out.
    let rsync_receives = [Role::RsyncPush, Role::RsyncClientPull];
    for role in ALL_ROLES
        .into_iter()
        .filter(|r| !rsync_receives.contains(r))
    {
        let runs: &[bool] = if role == Role::Local {
            &[false, true]
        } else {
            &[false]
        };
        stopped_then_resumed_over(
            role,
            &["-a", "--partial-dir=@/part"],
            "part/big",
            false,
            runs,
        );
    }
}

#[test]
fn partial_keeps_a_stopped_update_and_resumes_from_it() {
    for role in ALL_ROLES {
        stopped_then_resumed_over(role, &["-a", "--partial"], "dst/big", true, &[false, true]);
    }
}

#[test]
fn partial_with_temp_dir_on_another_filesystem() {
    // What arrived is copied from /dev/shm (a tmpfs here) into place when the run stops:
    // through the signal (local, pull) and through the sender going away (push).
    for role in [Role::Local, Role::MerklePull, Role::MerklePush] {
        let opts = ["-a", "--partial", "-T", "/dev/shm"];
        stopped_then_resumed_over(role, &opts, "dst/big", false, &[false, true]);
    }
}
