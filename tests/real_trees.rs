//! Trust on real trees (issue 13): arsync syncs one release of a software-distribution-like
//! tree over the other (the generated corpus of `tests/common/corpus.rs`: deep and wide
//! directories, hash-suffixed names that change, shared content under new names, moves,
//! growth, shrinkage, links) in every role and both protocols, and each result must be what
//! the real rsync makes of the same job. Then: modes without `-p` as rsync keeps them, twenty
//! random version pairs over the merkle protocol checked byte for byte, and a transfer killed
//! at ten random moments that never leaves a torn or mixed file.
//!
//! The remote side runs through a local "remote shell" that drops the host name and runs the
//! command here (as rsync's own test suite does), so both ends are real processes on real
//! pipes; the rsync side is the real rsync.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::corpus::{generate_pair, CorpusPair, CorpusSpec, Scale};
use common::*;

/// The local remote shell: drops ssh's options and the host, runs the command here.
fn fake_rsh(dir: &Path) -> PathBuf {
    let p = dir.join("rsh");
    fs::write(
        &p,
        "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\nshift\nexec sh -c \"$*\"\n",
    )
    .expect("write rsh");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    p
}

fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

fn remote(p: &Path) -> String {
    format!("host:{}/", p.display())
}

/// `cp -a from to`: a destination that already holds the old release.
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

fn corpus(s: &Scratch, seed: u64, scale: Scale) -> CorpusPair {
    generate_pair(
        &s.join(format!("corpus{seed}")),
        &CorpusSpec { seed, scale },
    )
}

/// A snapshot without what `-a` (no `-H`) does not keep: hard-link groups.
fn without_links(mut t: Tree) -> Tree {
    for e in t.values_mut() {
        e.link_group = None;
    }
    t
}

/// A snapshot without modification times (for runs without `-t`).
fn without_times(mut t: Tree) -> Tree {
    for e in t.values_mut() {
        e.mtime = (0, 0);
    }
    t
}

/// Run arsync with `args` in `cwd`, through the local remote shell.
fn arsync_rsh(cwd: &Path, rsh: &Path, args: &[&str]) -> Run {
    let mut all = vec![
        format!("--rsh={}", rsh.display()),
        format!("--rsync-path={ARSYNC}"),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    arsync(cwd, &refs)
}

/// The real rsync's result of syncing `new` over a copy of `old` with `opts`: the reference.
fn rsync_reference(s: &Scratch, tag: &str, old: &Path, new: &Path, opts: &[&str]) -> Tree {
    let dest = s.join(format!("ref-{tag}"));
    copy_tree(old, &dest);
    let mut args = opts.to_vec();
    let (src, dst) = (slash(new), slash(&dest));
    args.extend([src.as_str(), dst.as_str()]);
    rsync(s.path(), &args).assert_ok();
    snapshot(&dest)
}

/// One role of arsync: how it is asked to sync `new` over a destination holding `old`.
#[derive(Debug, Clone, Copy)]
enum Role {
    Local,
    /// arsync to `arsync --server` (merkle protocol), pushing.
    MerklePush,
    /// arsync from `arsync --server --sender`, pulling.
    MerklePull,
    /// arsync speaking rsync's protocol to `rsync --server`.
    RsyncPush,
    RsyncPull,
    /// The real rsync client with arsync as its server.
    RsyncClientPush,
    RsyncClientPull,
}

const ALL_ROLES: [Role; 7] = [
    Role::Local,
    Role::MerklePush,
    Role::MerklePull,
    Role::RsyncPush,
    Role::RsyncPull,
    Role::RsyncClientPush,
    Role::RsyncClientPull,
];

/// Sync `new` over `dest` in `role` with `opts`; returns the run.
fn sync_as(s: &Scratch, rsh: &Path, role: Role, opts: &[&str], new: &Path, dest: &Path) -> Run {
    let mut args: Vec<String> = opts.iter().map(|o| o.to_string()).collect();
    let with_shell = |args: &mut Vec<String>, path: &str| {
        args.insert(0, format!("--rsh={}", rsh.display()));
        args.insert(1, format!("--rsync-path={path}"));
    };
    match role {
        Role::Local => {
            args.extend([slash(new), slash(dest)]);
        }
        Role::MerklePush | Role::RsyncPush | Role::RsyncClientPush => {
            args.extend([slash(new), remote(dest)]);
        }
        Role::MerklePull | Role::RsyncPull | Role::RsyncClientPull => {
            args.extend([remote(new), slash(dest)]);
        }
    }
    match role {
        Role::Local => {}
        Role::MerklePush | Role::MerklePull => {
            with_shell(&mut args, ARSYNC);
            args.insert(0, "--protocol=merkle".into());
        }
        Role::RsyncPush | Role::RsyncPull => {
            with_shell(&mut args, &rsync_path().display().to_string());
            args.insert(0, "--protocol=rsync".into());
        }
        Role::RsyncClientPush | Role::RsyncClientPull => {
            with_shell(&mut args, ARSYNC);
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match role {
        Role::RsyncClientPush | Role::RsyncClientPull => rsync(s.path(), &refs),
        _ => arsync(s.path(), &refs),
    }
}

/// Sync one release over the other, both ways, in every role; each result must equal rsync's.
fn upgrade_in_every_role(seed: u64, scale: Scale, opts: &[&str], roles: &[Role]) {
    let s = Scratch::new();
    let rsh = fake_rsh(s.path());
    let pair = corpus(&s, seed, scale);
    let keep_links = opts.iter().any(|o| o.contains('H'));
    let norm = |t: Tree| if keep_links { t } else { without_links(t) };
    for (dir, old, new) in [("ab", &pair.a, &pair.b), ("ba", &pair.b, &pair.a)] {
        let want = norm(rsync_reference(&s, dir, old, new, opts));
        for role in roles {
            let dest = s.join(format!("{dir}-{role:?}"));
            copy_tree(old, &dest);
            let started = Instant::now();
            let run = sync_as(&s, &rsh, *role, opts, new, &dest);
            run.assert_ok();
            assert!(
                !run.stderr_str().contains("does not match"),
                "{dir} {role:?}: {}",
                run.stderr_str()
            );
            assert_same_tree(
                &format!(
                    "{dir} {role:?} {opts:?} ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ),
                "arsync",
                &norm(snapshot(&dest)),
                "rsync",
                &want,
            );
            let _ = fs::remove_dir_all(&dest);
        }
    }
}

#[test]
fn a_release_upgrade_matches_rsync_in_every_role() {
    upgrade_in_every_role(11, Scale::Small, &["-a", "--delete"], &ALL_ROLES);
}

#[test]
fn a_release_upgrade_with_hard_links_matches_rsync() {
    // -H: the whole list is sent (no directory-tree exchange), hard links kept.
    upgrade_in_every_role(
        12,
        Scale::Tiny,
        &["-aH", "--delete"],
        &[
            Role::Local,
            Role::MerklePush,
            Role::MerklePull,
            Role::RsyncPull,
        ],
    );
}

/// Issue 13 (5): without `-p`, an updated file keeps the destination's mode and a new file
/// or directory gets the source's masked by the umask — in every role, as rsync does.
#[test]
fn modes_without_p_match_rsync_in_every_role() {
    let s = Scratch::new();
    let rsh = fake_rsh(s.path());
    let (src, old) = (s.join("src"), s.join("old"));
    for (name, mode) in [
        ("exec", 0o755),
        ("private", 0o600),
        ("setuid", 0o4755),
        ("group-w", 0o664),
    ] {
        write(&src.join(name), format!("new {name}\n").as_bytes());
        chmod(&src.join(name), mode);
    }
    write(&src.join("d-ro/f"), b"in a read-only dir\n");
    chmod(&src.join("d-ro/f"), 0o644);
    chmod(&src.join("d-ro"), 0o555);
    write(&src.join("d-751/g"), b"g\n");
    chmod(&src.join("d-751"), 0o751);
    write(&src.join("kept-dir/h"), b"h\n");
    chmod(&src.join("kept-dir"), 0o755);
    write(&src.join("big"), &pseudo_random(200_000, 3));
    chmod(&src.join("big"), 0o644);
    // The destination already has some of them, with other modes and older content.
    write(&old.join("exec"), b"old exec, longer than the new one\n");
    chmod(&old.join("exec"), 0o640);
    write(&old.join("private"), b"old\n");
    chmod(&old.join("private"), 0o644);
    write(&old.join("big"), &pseudo_random(190_000, 3));
    chmod(&old.join("big"), 0o604);
    mkdir(&old.join("kept-dir"));
    chmod(&old.join("kept-dir"), 0o700);
    stamp_tree(&src, 5);
    for opts in [&["-r"][..], &["-rt"], &["-rlt"]] {
        let want = without_times(rsync_reference(&s, &opts.join(""), &old, &src, opts));
        for role in ALL_ROLES {
            let dest = s.join(format!("{}-{role:?}", opts.join("")));
            copy_tree(&old, &dest);
            sync_as(&s, &rsh, role, opts, &src, &dest).assert_ok();
            assert_same_tree(
                &format!("{opts:?} {role:?}"),
                "arsync",
                &without_times(snapshot(&dest)),
                "rsync",
                &want,
            );
        }
    }
}

/// Twenty random version pairs over the merkle protocol (push and pull, with and without the
/// directory-tree exchange), each checked byte for byte against the version sent.
#[test]
fn twenty_random_release_pairs_sync_exactly() {
    let s = Scratch::new();
    let rsh = fake_rsh(s.path());
    let started = Instant::now();
    for seed in 100..120u64 {
        let pair = corpus(&s, seed, Scale::Tiny);
        let (old, new) = if seed % 3 == 0 {
            (&pair.b, &pair.a)
        } else {
            (&pair.a, &pair.b)
        };
        let dest = s.join(format!("soak{seed}"));
        copy_tree(old, &dest);
        // Even seeds: -a (tree exchange, hard links become copies); odd: -aH (whole list).
        let opts = if seed % 2 == 0 { "-a" } else { "-aH" };
        let (from, to) = if seed % 4 < 2 {
            (slash(new), remote(&dest))
        } else {
            (remote(new), slash(&dest))
        };
        let run = arsync_rsh(s.path(), &rsh, &[opts, "--delete", &from, &to]);
        run.assert_ok();
        let (got, want) = if opts == "-a" {
            (without_links(snapshot(&dest)), without_links(snapshot(new)))
        } else {
            (snapshot(&dest), snapshot(new))
        };
        assert_same_tree(&format!("seed {seed} {opts}"), "dest", &got, "sent", &want);
        let _ = fs::remove_dir_all(&dest);
        let _ = fs::remove_dir_all(s.join(format!("corpus{seed}")));
    }
    eprintln!("20 pairs in {:.1} s", started.elapsed().as_secs_f64());
}

/// Whether `name` is one of the receiver's staged files (`.NAME.XXXXXX`).
fn is_staged(name: &str) -> bool {
    name.starts_with('.') && name.rsplit_once('.').is_some_and(|(_, x)| x.len() == 6)
}

/// A transfer killed at ten random moments: after each kill every destination file is whole —
/// the old release's version or the new one's, never a mix or a prefix — and nothing staged
/// is left behind; a last run completes the upgrade exactly.
#[test]
fn a_transfer_killed_at_random_moments_never_leaves_a_torn_file() {
    let s = Scratch::new();
    let rsh = fake_rsh(s.path());
    let pair = corpus(&s, 7, Scale::Small);
    let (old_tree, new_tree) = (snapshot(&pair.a), snapshot(&pair.b));
    let dest = s.join("dest");
    copy_tree(&pair.a, &dest);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let args: Vec<String> = vec![
        format!("--rsh={}", rsh.display()),
        format!("--rsync-path={ARSYNC}"),
        "-a".into(),
        "--delete".into(),
        // Slow enough that a kill lands mid-transfer.
        "--bwlimit=4000".into(),
        slash(&pair.b),
        remote(&dest),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    for kill in 0..10 {
        let wait = Duration::from_millis(150 + next() % 1200);
        // Only the client is killed (its remote shell and the server live on, as over ssh
        // when the client's machine dies): the server must notice and clean up.
        let mut client = common::arsync_command()
            .args(&refs)
            .current_dir(s.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start arsync");
        std::thread::sleep(wait);
        let signal = if kill % 2 == 0 {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        // SAFETY: signalling the child we started.
        unsafe { libc::kill(client.id() as i32, signal) };
        let _ = client.wait();
        // The server sees its client gone: it removes what it staged and exits (waited for:
        // with --delete it may still be removing names while the tree is read).
        let deadline = Instant::now() + Duration::from_secs(20);
        while servers_into(&dest) > 0 {
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the server did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            let staged: Vec<PathBuf> = walk_files(&dest)
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_staged)
                })
                .collect();
            if staged.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: staged files left behind: {staged:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for (rel, entry) in snapshot(&dest) {
            let Some(content) = &entry.content else {
                continue;
            };
            let old = old_tree.get(&rel).and_then(|e| e.content.as_ref());
            let new = new_tree.get(&rel).and_then(|e| e.content.as_ref());
            assert!(
                Some(content) == old || Some(content) == new,
                "kill {kill} after {wait:?}: {rel:?} is neither version ({content:?}; old {old:?}, new {new:?})"
            );
        }
    }
    arsync_rsh(
        s.path(),
        &rsh,
        &["-a", "--delete", &slash(&pair.b), &remote(&dest)],
    )
    .assert_ok();
    assert_same_tree(
        "after the kills",
        "dest",
        &without_links(snapshot(&dest)),
        "new",
        &without_links(new_tree),
    );
}

/// Every regular file under `root`.
fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

/// `--timeout`: a peer that says nothing (here a remote shell that never starts arsync) ends
/// the run with rsync's exit code 30 and its message, soon after the timeout.
#[test]
fn a_silent_peer_times_out_with_code_30() {
    let s = Scratch::new();
    let hang = s.join("hang");
    fs::write(&hang, "#!/bin/sh\nexec sleep 60\n").expect("write");
    fs::set_permissions(&hang, fs::Permissions::from_mode(0o755)).expect("chmod");
    write(&s.join("src/f"), b"x");
    let started = Instant::now();
    let run = arsync(
        s.path(),
        &[
            "-a",
            "--timeout=2",
            "--transport=ssh",
            &format!("--rsh={}", hang.display()),
            "src/",
            "host:dest/",
        ],
    );
    assert_eq!(run.code(), Some(30), "{}", run.stderr_str());
    assert!(run.stderr_str().contains("timeout"), "{}", run.stderr_str());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// `--timeout` with a server that stops mid-transfer (SIGSTOP): the client ends with code 30,
/// and the destination holds only whole files.
#[test]
fn a_peer_that_stops_mid_transfer_times_out() {
    let s = Scratch::new();
    let rsh = fake_rsh(s.path());
    write(&s.join("src/big"), &pseudo_random(6 << 20, 9));
    let dest = s.join("dest");
    write(&dest.join("big"), b"old");
    let args = [
        format!("--rsh={}", rsh.display()),
        format!("--rsync-path={ARSYNC}"),
        "-a".into(),
        "--timeout=2".into(),
        "--bwlimit=1000".into(),
        slash(&s.join("src")),
        remote(&dest),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = spawn(Tool::Arsync, s.path(), &refs);
    std::thread::sleep(Duration::from_millis(800));
    // Stop the server (the arsync whose parent is our client's remote shell).
    let server = server_pid(&dest).expect("the server is running");
    // SAFETY: sending a signal to a process id we just found.
    unsafe { libc::kill(server, libc::SIGSTOP) };
    let started = Instant::now();
    let run = running.wait(Duration::from_secs(30));
    // SAFETY: as above; let it go so that it can clean up and exit.
    unsafe { libc::kill(server, libc::SIGCONT) };
    assert_eq!(run.code(), Some(30), "{}", run.stderr_str());
    assert!(started.elapsed() < Duration::from_secs(15));
    let content = fs::read(dest.join("big")).expect("read");
    assert!(content == b"old" || content == pseudo_random(6 << 20, 9));
}

/// The pid of the `arsync --server` whose command line names `dest`.
fn server_pid(dest: &Path) -> Option<i32> {
    let want = dest.display().to_string();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if words.first().is_some_and(|w| w.ends_with("arsync"))
            && words.iter().any(|w| w == "--server")
            && words.iter().any(|w| w.contains(&want))
        {
            return Some(pid);
        }
    }
    None
}

/// A destination file in a directory whose subtree matched (so the directory-tree exchange
/// never lists it) is not extraneous, whatever name it shares with a new file: `--delete`
/// must leave it. (Found by the upgrade bench: a file kept as a possible old version was
/// deleted after the transfers as if extraneous.)
#[test]
fn delete_keeps_unlisted_files_that_share_a_new_files_name() {
    let s = Scratch::new();
    let rsh = fake_rsh(s.path());
    let (src, dest) = (s.join("src"), s.join("dest"));
    let kept = pseudo_random(9000, 1);
    write(&src.join("same/mod.rs"), &kept);
    write(
        &src.join("same/deep/lib-0123456789abcdef.rlib"),
        &pseudo_random(70_000, 2),
    );
    write(&src.join("changed/mod.rs"), &pseudo_random(9500, 3));
    write(
        &src.join("changed/lib-fedcba9876543210.rlib"),
        &pseudo_random(70_000, 4),
    );
    stamp_tree(&src, 6);
    mkdir(&dest);
    copy_tree(&src.join("same"), &dest.join("same"));
    write(&dest.join("changed/old"), b"extraneous");
    for (from, to) in [(slash(&src), remote(&dest)), (remote(&src), slash(&dest))] {
        arsync_rsh(s.path(), &rsh, &["-a", "--delete", &from, &to]).assert_ok();
        assert_same_tree(
            "after --delete",
            "dest",
            &snapshot(&dest),
            "src",
            &snapshot(&src),
        );
    }
}

/// How many live (not zombie) `arsync --server` processes name `dest` on their command line.
fn servers_into(dest: &Path) -> usize {
    let want = dest.display().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| {
                    let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd);
                    let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                    let zombie = stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'));
                    !zombie && cmd.contains("--server") && cmd.contains(&want)
                })
                .count()
        })
        .unwrap_or(0)
}
