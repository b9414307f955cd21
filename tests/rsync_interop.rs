//! arsync against the real rsync: pulls from `rsync --server --sender` started through a
//! remote shell that runs the command on this machine (as rsync's own test suite does), at
//! protocols 30, 31 and 32, compared with what rsync alone makes of the same pull; a real rsync
//! client against `arsync --server` (also through remote shells that exec the command directly,
//! which leave the server a non-blocking stdout). Hostile peers are in tests/hostile.rs.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// The local "remote shell". Named `rsh`, for which rsync turns on `--blocking-io` (so its
/// servers get a blocking stdout); [`direct_exec_shells`] are the non-blocking case.
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

#[test]
fn pulls_from_rsync_match_rsyncs_own_pull_at_every_protocol() {
    let s = Scratch::new();
    let src = s.join("src");
    build_rich_fixture(&src);
    let rsh = fake_rsh(s.path());
    let rsh_arg = format!("--rsh={}", rsh.display());
    let from = format!("host:{}", slash(&src));
    // What rsync makes of the same pull (-H: the fixture has hard links).
    let reference = s.join("reference");
    rsync(s.path(), &["-aH", &rsh_arg, &from, &slash(&reference)]).assert_ok();
    let want = snapshot(&reference);
    assert_rich_fixture(&want);
    for protocol in ["30", "31", "32"] {
        let dest = s.join(format!("p{protocol}"));
        let run = arsync(
            s.path(),
            &[
                "-aH",
                &format!("--protocol={protocol}"),
                &rsh_arg,
                &from,
                &slash(&dest),
            ],
        );
        run.assert_ok();
        let got = snapshot(&dest);
        if protocol == "30" {
            // Protocol 30 carries no nanoseconds: times agree to the second.
            for (path, e) in &got {
                let w = want.get(path).unwrap_or_else(|| panic!("{path:?} missing"));
                assert_eq!(
                    (e.kind, e.mode, e.uid, e.gid, e.mtime.0, &e.content, &e.target, e.rdev),
                    (w.kind, w.mode, w.uid, w.gid, w.mtime.0, &w.content, &w.target, w.rdev),
                    "{path:?}"
                );
            }
            assert_eq!(got.len(), want.len());
        } else {
            assert_same_tree(
                &format!("protocol {protocol}"),
                "arsync",
                &got,
                "rsync",
                &want,
            );
        }
    }
}

#[test]
fn a_second_pull_changes_nothing_and_delete_and_exclude_act_as_rsync() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("keep.txt"), b"keep\n");
    write(&src.join("sub/data.bin"), &pseudo_random(100_000, 4));
    write(&src.join("skip.o"), b"object\n");
    stamp_tree(&src, 2);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let from = format!("host:{}", slash(&src));
    let dest = s.join("dest");
    arsync(
        s.path(),
        &["-a", "--protocol=rsync", &rsh_arg, &from, &slash(&dest)],
    )
    .assert_ok();
    let again = arsync(
        s.path(),
        &["-ai", "--protocol=rsync", &rsh_arg, &from, &slash(&dest)],
    );
    again.assert_ok();
    assert!(
        again.stdout_lines().is_empty(),
        "{:?}",
        again.stdout_lines()
    );
    // Extraneous files go with --delete; an excluded one is neither sent nor deleted.
    write(&dest.join("extra.txt"), b"extra\n");
    write(&dest.join("skip.o"), b"local object\n");
    fs::remove_file(src.join("keep.txt")).unwrap();
    // Not "now": both tools compare directory times to the second.
    set_mtime(&src, 1_500_000_000, 7);
    let refd = s.join("ref");
    rsync(s.path(), &["-a", &slash(&dest), &slash(&refd)]).assert_ok();
    let args = ["-ai", "--delete", "--exclude=*.o"];
    let mut a_args: Vec<&str> = args.to_vec();
    a_args.extend(["--protocol=rsync", &rsh_arg, &from]);
    let d = slash(&dest);
    a_args.push(&d);
    let a = arsync(s.path(), &a_args);
    a.assert_ok();
    let mut r_args: Vec<&str> = args.to_vec();
    r_args.extend([rsh_arg.as_str(), &from]);
    let r_dest = slash(&refd);
    r_args.push(&r_dest);
    let r = rsync(s.path(), &r_args);
    r.assert_ok();
    assert_same_tree(
        "delete",
        "arsync",
        &snapshot(&dest),
        "rsync",
        &snapshot(&refd),
    );
    assert_eq!(fs::read(dest.join("skip.o")).unwrap(), b"local object\n");
    assert_same_lines("itemized", &a, &r);
}

#[test]
fn auto_speaks_rsync_to_a_host_without_arsync() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("a.txt"), b"alpha\n");
    write(&src.join("sub/b.bin"), &pseudo_random(50_000, 9));
    stamp_tree(&src, 5);
    // A "host" whose PATH has rsync but no arsync.
    let rsh = s.join("rsh-no-arsync");
    fs::write(
        &rsh,
        "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\nshift\nPATH=/usr/bin:/bin exec sh -c \"$*\"\n",
    )
    .unwrap();
    fs::set_permissions(&rsh, fs::Permissions::from_mode(0o755)).unwrap();
    let dest = s.join("dest");
    let run = arsync(
        s.path(),
        &[
            "-av",
            &format!("--rsh={}", rsh.display()),
            &format!("host:{}", slash(&src)),
            &slash(&dest),
        ],
    );
    run.assert_ok();
    assert!(
        run.stdout_str().contains("speaking rsync's protocol"),
        "{}",
        run.stdout_str()
    );
    assert_same_tree("auto", "dest", &snapshot(&dest), "src", &snapshot(&src));
}

fn stat_num(run: &Run, label: &str) -> u64 {
    run.stdout_lines()
        .iter()
        .find_map(|l| l.strip_prefix(label).map(|n| n.trim().replace(',', "")))
        .and_then(|n| n.split_whitespace().next().map(str::to_owned))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {:?}", run.stdout_lines()))
}

#[test]
fn changed_files_are_pulled_by_delta_against_the_old_copy() {
    let s = Scratch::new();
    let src = s.join("src");
    let old = pseudo_random(2_000_000, 21);
    let mut new = old.clone();
    new[1_000_000..1_000_100].copy_from_slice(&[1; 100]);
    new.extend_from_slice(b"appended tail");
    write(&src.join("big.bin"), &new);
    stamp_tree(&src, 8);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let from = format!("host:{}", slash(&src));
    for protocol in ["30", "32"] {
        let (a_dest, r_dest) = (
            s.join(format!("a{protocol}")),
            s.join(format!("r{protocol}")),
        );
        for d in [&a_dest, &r_dest] {
            write(&d.join("big.bin"), &old);
            set_mtime(&d.join("big.bin"), 1_000_000_000, 0);
        }
        let a = arsync(
            s.path(),
            &[
                "-a",
                "--stats",
                &format!("--protocol={protocol}"),
                &rsh_arg,
                &from,
                &slash(&a_dest),
            ],
        );
        a.assert_ok();
        let r = rsync(
            s.path(),
            &[
                "-a",
                "--stats",
                &format!("--protocol={protocol}"),
                &rsh_arg,
                &from,
                &slash(&r_dest),
            ],
        );
        r.assert_ok();
        assert_eq!(fs::read(a_dest.join("big.bin")).unwrap(), new);
        assert_same_tree(
            "delta",
            "arsync",
            &snapshot(&a_dest),
            "rsync",
            &snapshot(&r_dest),
        );
        let literal = stat_num(&a, "Literal data:");
        let matched = stat_num(&a, "Matched data:");
        assert!(literal < 20_000, "{literal} literal bytes");
        assert_eq!(literal + matched, new.len() as u64);
        // The block sums cost more than rsync's (full-length strong sums), the data the same.
        let (a_wire, r_wire) = (
            stat_num(&a, "Total bytes sent:") + stat_num(&a, "Total bytes received:"),
            stat_num(&r, "Total bytes sent:") + stat_num(&r, "Total bytes received:"),
        );
        assert!(
            a_wire < 4 * r_wire && a_wire < 200_000,
            "arsync {a_wire} vs rsync {r_wire}"
        );
    }
}

/// A push to a host that has only rsync sends a delta against the old copy there, as rsync's
/// own push does: its literal data, matched data and wire bytes equal rsync's to a few percent.
#[test]
fn changed_files_are_pushed_by_delta_against_the_old_copy() {
    let s = Scratch::new();
    let src = s.join("src");
    let old = pseudo_random(2_000_000, 22);
    let mut new = old.clone();
    new[700_000..700_100].copy_from_slice(&[2; 100]);
    new.splice(1_500_000..1_500_000, b"inserted".iter().copied());
    new.extend_from_slice(b"appended tail");
    write(&src.join("big.bin"), &new);
    stamp_tree(&src, 9);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    for protocol in ["30", "31", "32"] {
        let (a_dest, r_dest) = (
            s.join(format!("a{protocol}")),
            s.join(format!("r{protocol}")),
        );
        for d in [&a_dest, &r_dest] {
            write(&d.join("big.bin"), &old);
            set_mtime(&d.join("big.bin"), 1_000_000_000, 0);
        }
        let run = |tool: fn(&Path, &[&str]) -> Run, dest: &Path| {
            let to = format!("host:{}", slash(dest));
            let proto = format!("--protocol={protocol}");
            // Both talk to a real `rsync --server` over the same remote shell.
            let mut args = vec!["-a", "--stats", &proto, &rsh_arg, "--rsync-path=rsync"];
            let src_arg = slash(&src);
            args.extend([src_arg.as_str(), to.as_str()]);
            let r = tool(s.path(), &args);
            r.assert_ok();
            r
        };
        let a = run(arsync, &a_dest);
        let r = run(rsync, &r_dest);
        assert_eq!(fs::read(a_dest.join("big.bin")).unwrap(), new);
        assert_same_tree(
            "pushed delta",
            "arsync",
            &snapshot(&a_dest),
            "rsync",
            &snapshot(&r_dest),
        );
        let (a_lit, r_lit) = (stat_num(&a, "Literal data:"), stat_num(&r, "Literal data:"));
        assert!(a_lit < 20_000, "protocol {protocol}: {a_lit} literal bytes");
        assert_eq!(a_lit + stat_num(&a, "Matched data:"), new.len() as u64);
        assert_eq!(
            a_lit, r_lit,
            "protocol {protocol}: literal bytes as rsync's"
        );
        let (a_sent, r_sent) = (
            stat_num(&a, "Total bytes sent:"),
            stat_num(&r, "Total bytes sent:"),
        );
        assert!(
            a_sent < r_sent + r_sent / 10 + 512,
            "protocol {protocol}: arsync sent {a_sent}, rsync {r_sent}"
        );
    }
}

#[test]
fn pushes_to_rsync_match_rsyncs_own_push_at_every_protocol() {
    let s = Scratch::new();
    let src = s.join("src");
    build_rich_fixture(&src);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let reference = s.join("reference");
    rsync(
        s.path(),
        &[
            "-aH",
            &rsh_arg,
            &slash(&src),
            &format!("host:{}", slash(&reference)),
        ],
    )
    .assert_ok();
    let want = snapshot(&reference);
    assert_rich_fixture(&want);
    for protocol in ["30", "31", "32"] {
        let dest = s.join(format!("p{protocol}"));
        let run = arsync(
            s.path(),
            &[
                "-aH",
                &format!("--protocol={protocol}"),
                &rsh_arg,
                &slash(&src),
                &format!("host:{}", slash(&dest)),
            ],
        );
        run.assert_ok();
        let got = snapshot(&dest);
        if protocol == "30" {
            for (path, e) in &got {
                let w = want.get(path).unwrap_or_else(|| panic!("{path:?} missing"));
                assert_eq!(
                    (e.kind, e.mode, e.uid, e.gid, e.mtime.0, &e.content, &e.target, e.rdev),
                    (w.kind, w.mode, w.uid, w.gid, w.mtime.0, &w.content, &w.target, w.rdev),
                    "{path:?}"
                );
            }
            assert_eq!(got.len(), want.len());
        } else {
            assert_same_tree(
                &format!("push, protocol {protocol}"),
                "arsync",
                &got,
                "rsync",
                &want,
            );
        }
    }
}

#[test]
fn a_push_with_delete_and_exclude_acts_as_rsyncs() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("keep.txt"), b"keep\n");
    write(&src.join("sub/data.bin"), &pseudo_random(80_000, 6));
    stamp_tree(&src, 3);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let (a_dest, r_dest) = (s.join("a"), s.join("r"));
    for d in [&a_dest, &r_dest] {
        write(&d.join("extra.txt"), b"extra\n");
        write(&d.join("local.o"), b"protected by the exclude\n");
        write(&d.join("sub/old"), b"old\n");
        stamp_tree(d, 4);
    }
    let args = ["-ai", "--delete", "--exclude=*.o"];
    let a_to = format!("host:{}", slash(&a_dest));
    let mut a_args = args.to_vec();
    a_args.extend(["--protocol=rsync", rsh_arg.as_str(), "src/", &a_to]);
    let a = arsync(s.path(), &a_args);
    a.assert_ok();
    let r_to = format!("host:{}", slash(&r_dest));
    let mut r_args = args.to_vec();
    r_args.extend([rsh_arg.as_str(), "src/", &r_to]);
    rsync(s.path(), &r_args).assert_ok();
    assert_same_tree(
        "push --delete",
        "arsync",
        &snapshot(&a_dest),
        "rsync",
        &snapshot(&r_dest),
    );
    assert!(a_dest.join("local.o").exists() && !a_dest.join("extra.txt").exists());
    // A second push changes nothing.
    let again = arsync(s.path(), &a_args);
    again.assert_ok();
    assert!(
        again
            .stdout_lines()
            .iter()
            .all(|l| !l.starts_with(['<', 'c', '*'])),
        "{:?}",
        again.stdout_lines()
    );
}

#[test]
fn an_rsync_client_pulls_from_arsync_server_at_every_protocol() {
    let s = Scratch::new();
    let src = s.join("src");
    build_rich_fixture(&src);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let from = format!("host:{}", slash(&src));
    let reference = s.join("reference");
    rsync(s.path(), &["-aH", &rsh_arg, &from, &slash(&reference)]).assert_ok();
    let want = snapshot(&reference);
    for protocol in ["30", "31", "32"] {
        let dest = s.join(format!("p{protocol}"));
        let run = rsync(
            s.path(),
            &[
                "-aH",
                "--stats",
                &format!("--protocol={protocol}"),
                &format!("--rsync-path={ARSYNC}"),
                "--exclude=zero.bin",
                &rsh_arg,
                &from,
                &slash(&dest),
            ],
        );
        run.assert_ok();
        let mut expect = want.clone();
        expect.retain(|p, _| p != Path::new("zero.bin"));
        let got = snapshot(&dest);
        if protocol == "30" {
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expect.keys().collect::<Vec<_>>()
            );
            for (path, e) in &got {
                let w = &expect[path];
                assert_eq!(
                    (e.kind, e.mode, e.uid, e.gid, e.mtime.0, &e.content, &e.target, e.rdev),
                    (w.kind, w.mode, w.uid, w.gid, w.mtime.0, &w.content, &w.target, w.rdev),
                    "{path:?}"
                );
            }
        } else {
            assert_same_tree(
                &format!("server, protocol {protocol}"),
                "from arsync",
                &got,
                "from rsync",
                &expect,
            );
        }
    }
}

#[test]
fn an_rsync_client_pushes_to_arsync_server_at_every_protocol() {
    let s = Scratch::new();
    let src = s.join("src");
    build_rich_fixture(&src);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let reference = s.join("reference");
    rsync(
        s.path(),
        &[
            "-aH",
            &rsh_arg,
            &slash(&src),
            &format!("host:{}", slash(&reference)),
        ],
    )
    .assert_ok();
    let want = snapshot(&reference);
    for protocol in ["30", "31", "32"] {
        let dest = s.join(format!("p{protocol}"));
        // Something to delete, and something the exclude protects.
        write(&dest.join("extra/old.txt"), b"old\n");
        write(&dest.join("keep.o"), b"kept\n");
        let run = rsync(
            s.path(),
            &[
                "-aH",
                "--delete",
                "--exclude=*.o",
                &format!("--protocol={protocol}"),
                &format!("--rsync-path={ARSYNC}"),
                &rsh_arg,
                &slash(&src),
                &format!("host:{}", slash(&dest)),
            ],
        );
        run.assert_ok();
        assert_eq!(fs::read(dest.join("keep.o")).unwrap(), b"kept\n");
        fs::remove_file(dest.join("keep.o")).unwrap();
        {
            // Removing it touched the directory: give it back the time the sync set.
            use std::os::unix::fs::MetadataExt;
            let m = fs::metadata(&src).unwrap();
            set_mtime(
                &dest,
                m.mtime(),
                if protocol == "30" { 0 } else { m.mtime_nsec() },
            );
        }
        let got = snapshot(&dest);
        if protocol == "30" {
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>()
            );
            for (path, e) in &got {
                let w = &want[path];
                assert_eq!(
                    (e.kind, e.mode, e.uid, e.gid, e.mtime.0, &e.content, &e.target, e.rdev),
                    (w.kind, w.mode, w.uid, w.gid, w.mtime.0, &w.content, &w.target, w.rdev),
                    "{path:?}"
                );
            }
        } else {
            assert_same_tree(
                &format!("server push, protocol {protocol}"),
                "into arsync",
                &got,
                "into rsync",
                &want,
            );
        }
    }
}

/// An `rsync --daemon` on a free loopback port, killed on drop.
struct Daemon {
    child: std::process::Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test daemon's message of the day.
const DAEMON_MOTD: &str = "Welcome to the test daemon\nsecond line of the motd\n";

fn start_daemon(s: &Scratch, public: &Path, secret: &Path) -> Daemon {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secrets = s.join("secrets");
    fs::write(&secrets, "alice:sekrit\n").unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
    let motd = s.join("motd");
    fs::write(&motd, DAEMON_MOTD).unwrap();
    let conf = s.join("rsyncd.conf");
    fs::write(
        &conf,
        format!(
            "motd file = {}\nuse chroot = no\nuid = root\ngid = root\n[data]\n  path = {}\n  comment = public data\n  read only = no\n[secret]\n  path = {}\n  auth users = alice\n  secrets file = {}\n  read only = no\n",
            motd.display(),
            public.display(),
            secret.display(),
            secrets.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(rsync_path())
        .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--port={port}"))
        .spawn()
        .expect("start rsync --daemon");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Daemon { child, port };
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("rsync --daemon did not start on port {port}");
}

#[test]
fn rsync_daemon_listing_pull_push_and_auth() {
    let s = Scratch::new();
    let (public, secret) = (s.join("public"), s.join("secret"));
    write(&public.join("a.txt"), b"alpha\n");
    write(&public.join("sub/b.bin"), &pseudo_random(120_000, 31));
    write(&secret.join("key.txt"), b"secret\n");
    stamp_tree(&public, 6);
    stamp_tree(&secret, 7);
    let d = start_daemon(&s, &public, &secret);
    let url = |rest: &str| format!("rsync://127.0.0.1:{}/{rest}", d.port);

    // The module listing.
    let list = arsync(s.path(), &[&url("")]);
    list.assert_ok();
    let out = list.stdout_str();
    assert!(
        out.contains("data") && out.contains("public data") && out.contains("secret"),
        "{out}"
    );

    // Pull, compared with rsync's own pull from the same daemon.
    let (a, r) = (s.join("a"), s.join("r"));
    arsync(s.path(), &["-a", &url("data/"), &slash(&a)]).assert_ok();
    rsync(s.path(), &["-a", &url("data/"), &slash(&r)]).assert_ok();
    assert_same_tree(
        "daemon pull",
        "arsync",
        &snapshot(&a),
        "rsync",
        &snapshot(&r),
    );

    // Push into the module.
    let up = s.join("up");
    write(&up.join("pushed.txt"), b"pushed\n");
    stamp_tree(&up, 8);
    arsync(s.path(), &["-a", &slash(&up), &url("data/incoming/")]).assert_ok();
    assert_eq!(
        fs::read(public.join("incoming/pushed.txt")).unwrap(),
        b"pushed\n"
    );

    // Authentication: the right password from a file, then a wrong one from the environment.
    let pw = s.join("pw");
    fs::write(&pw, "sekrit\n").unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    let k = s.join("k");
    let secret_url = format!("rsync://alice@127.0.0.1:{}/secret/", d.port);
    arsync(
        s.path(),
        &[
            "-a",
            &format!("--password-file={}", pw.display()),
            &secret_url,
            &slash(&k),
        ],
    )
    .assert_ok();
    assert_eq!(fs::read(k.join("key.txt")).unwrap(), b"secret\n");
    let bad = spawn_with_env(
        s.path(),
        &["-a", &secret_url, &slash(&s.join("k2"))],
        &[("RSYNC_PASSWORD", "wrong")],
    );
    assert_eq!(bad.0, Some(5), "{}", bad.1);
    assert!(bad.1.contains("auth failed"), "{}", bad.1);
    assert!(!s.join("k2").exists());
}

/// Run arsync with extra environment variables; (exit code, stderr).
fn spawn_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = common::arsync_command()
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn checksum_pulls_compare_content_as_rsync_does() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("same-content.txt"), b"identical\n");
    write(&src.join("same-size.txt"), b"AAAA\n");
    write(&src.join("empty"), b"");
    stamp_tree(&src, 9);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let from = format!("host:{}", slash(&src));
    let (a, r) = (s.join("a"), s.join("r"));
    for d in [&a, &r] {
        // Same content, other time; same size and time, other content; an empty file.
        write(&d.join("same-content.txt"), b"identical\n");
        write(&d.join("same-size.txt"), b"BBBB\n");
        write(&d.join("empty"), b"");
        stamp_tree(d, 9);
        set_mtime(&d.join("same-content.txt"), 1_000_000_000, 0);
    }
    let ar = arsync(
        s.path(),
        &["-aic", "--protocol=rsync", &rsh_arg, &from, &slash(&a)],
    );
    ar.assert_ok();
    let rr = rsync(s.path(), &["-aic", &rsh_arg, &from, &slash(&r)]);
    rr.assert_ok();
    assert_same_tree("-c", "arsync", &snapshot(&a), "rsync", &snapshot(&r));
    assert_eq!(fs::read(a.join("same-size.txt")).unwrap(), b"AAAA\n");
    assert_same_lines("-c itemized", &ar, &rr);
}

#[test]
fn numeric_ids_pulls_and_pushes_keep_the_ids() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("owned.txt"), b"owned\n");
    lchown(&src.join("owned.txt"), 4242, 4343);
    stamp_tree(&src, 2);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let pulled = s.join("pulled");
    arsync(
        s.path(),
        &[
            "-a",
            "--numeric-ids",
            "--protocol=rsync",
            &rsh_arg,
            &format!("host:{}", slash(&src)),
            &slash(&pulled),
        ],
    )
    .assert_ok();
    let pushed = s.join("pushed");
    arsync(
        s.path(),
        &[
            "-a",
            "--numeric-ids",
            "--protocol=rsync",
            &rsh_arg,
            &slash(&src),
            &format!("host:{}", slash(&pushed)),
        ],
    )
    .assert_ok();
    for d in [&pulled, &pushed] {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(d.join("owned.txt")).unwrap();
        assert_eq!((m.uid(), m.gid()), (4242, 4343), "{}", d.display());
    }
}

#[test]
fn an_rsync_client_pushing_to_arsync_server_reports_what_rsync_reports() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("a.txt"), b"a\n");
    write(&src.join("sub/deep/b.txt"), b"b\n");
    symlink("a.txt", &src.join("link"));
    stamp_tree(&src, 4);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let mut runs = Vec::new();
    for (name, path) in [("arsync", Some(ARSYNC)), ("rsync", None)] {
        let dest = s.join(name);
        write(&dest.join("old/gone.txt"), b"x\n");
        let mut args = vec!["-ai", "--delete", rsh_arg.as_str()];
        let rp = path.map(|p| format!("--rsync-path={p}"));
        if let Some(rp) = &rp {
            args.push(rp);
        }
        let to = format!("host:{}", slash(&dest));
        let from = slash(&src);
        args.push(&from);
        args.push(&to);
        let run = rsync(s.path(), &args);
        run.assert_ok();
        runs.push(run);
    }
    // Item lines and deletions, order aside.
    assert_eq!(runs[0].sorted_lines(), runs[1].sorted_lines());
    assert_same_tree(
        "itemized push",
        "arsync",
        &snapshot(&s.join("arsync")),
        "rsync",
        &snapshot(&s.join("rsync")),
    );
}

#[test]
fn zstd_compression_in_every_role_and_with_delta() {
    let s = Scratch::new();
    let src = s.join("src");
    let text: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("{i:08} the quick brown fox jumps over the lazy dog\n").into_bytes())
        .collect();
    write(&src.join("log.txt"), &text);
    write(&src.join("noise.bin"), &pseudo_random(50_000, 3));
    stamp_tree(&src, 5);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let want = snapshot(&src);
    let total =
        |run: &Run| stat_num(run, "Total bytes sent:") + stat_num(run, "Total bytes received:");
    // arsync client, pull and push.
    let pulled = s.join("pulled");
    let pull = arsync(
        s.path(),
        &[
            "-az",
            "--stats",
            "--protocol=rsync",
            &rsh_arg,
            &format!("host:{}", slash(&src)),
            &slash(&pulled),
        ],
    );
    pull.assert_ok();
    assert_same_tree("-z pull", "dest", &snapshot(&pulled), "src", &want);
    assert!(
        total(&pull) < text.len() as u64 / 4,
        "{} bytes",
        total(&pull)
    );
    let pushed = s.join("pushed");
    let push = arsync(
        s.path(),
        &[
            "-az",
            "--stats",
            "--protocol=rsync",
            &rsh_arg,
            &slash(&src),
            &format!("host:{}", slash(&pushed)),
        ],
    );
    push.assert_ok();
    assert_same_tree("-z push", "dest", &snapshot(&pushed), "src", &want);
    assert!(
        total(&push) < text.len() as u64 / 4,
        "{} bytes",
        total(&push)
    );
    // rsync client against arsync --server, both ways.
    for (name, from, to) in [
        (
            "server send",
            format!("host:{}", slash(&src)),
            slash(&s.join("s1")),
        ),
        (
            "server receive",
            slash(&src),
            format!("host:{}", slash(&s.join("s2"))),
        ),
    ] {
        rsync(
            s.path(),
            &[
                "-az",
                &format!("--rsync-path={ARSYNC}"),
                &rsh_arg,
                &from,
                &to,
            ],
        )
        .assert_ok();
        let d = if name == "server send" {
            s.join("s1")
        } else {
            s.join("s2")
        };
        assert_same_tree(name, "dest", &snapshot(&d), "src", &want);
    }
    // A delta pull with -z: matched blocks arrive as compressed tokens.
    let mut changed = text.clone();
    changed[1_000_000..1_000_010].copy_from_slice(b"CHANGED!!!");
    write(&src.join("log.txt"), &changed);
    stamp_tree(&src, 6);
    let again = arsync(
        s.path(),
        &[
            "-az",
            "--stats",
            "--protocol=rsync",
            &rsh_arg,
            &format!("host:{}", slash(&src)),
            &slash(&pulled),
        ],
    );
    again.assert_ok();
    assert_eq!(fs::read(pulled.join("log.txt")).unwrap(), changed);
    assert!(stat_num(&again, "Matched data:") > changed.len() as u64 / 2);
}

#[test]
fn every_checksum_and_compression_rsync_negotiates() {
    let s = Scratch::new();
    let src = s.join("src");
    let text: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("{i:08} lorem ipsum dolor sit amet\n").into_bytes())
        .collect();
    write(&src.join("t.txt"), &text);
    write(&src.join("r.bin"), &pseudo_random(40_000, 8));
    stamp_tree(&src, 3);
    let want = snapshot(&src);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let from = format!("host:{}", slash(&src));
    for sum in ["xxh128", "xxh3", "xxh64", "md5", "md4"] {
        let d = s.join(format!("c-{sum}"));
        arsync(
            s.path(),
            &[
                "-a",
                &format!("--checksum-choice={sum}"),
                "--protocol=rsync",
                &rsh_arg,
                &from,
                &slash(&d),
            ],
        )
        .assert_ok();
        assert_same_tree(sum, "dest", &snapshot(&d), "src", &want);
        // And an rsync client choosing it against arsync --server.
        let d2 = s.join(format!("s-{sum}"));
        rsync(
            s.path(),
            &[
                "-a",
                &format!("--checksum-choice={sum}"),
                &format!("--rsync-path={ARSYNC}"),
                &rsh_arg,
                &from,
                &slash(&d2),
            ],
        )
        .assert_ok();
        assert_same_tree(sum, "dest", &snapshot(&d2), "src", &want);
    }
    for z in ["zstd", "lz4"] {
        let d = s.join(format!("z-{z}"));
        let run = arsync(
            s.path(),
            &[
                "-a",
                "--stats",
                &format!("--compress-choice={z}"),
                "--protocol=rsync",
                &rsh_arg,
                &from,
                &slash(&d),
            ],
        );
        run.assert_ok();
        assert_same_tree(z, "dest", &snapshot(&d), "src", &want);
        assert!(stat_num(&run, "Total bytes received:") < (text.len() as u64) / 2 + 45_000);
        let d2 = s.join(format!("zs-{z}"));
        rsync(
            s.path(),
            &[
                "-a",
                &format!("--compress-choice={z}"),
                &format!("--rsync-path={ARSYNC}"),
                &rsh_arg,
                &slash(&src),
                &format!("host:{}", slash(&d2)),
            ],
        )
        .assert_ok();
        assert_same_tree(z, "dest", &snapshot(&d2), "src", &want);
    }
}

#[test]
fn checksum_runs_in_every_role_keep_equal_files_and_fix_changed_ones() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("same.txt"), b"same\n");
    write(&src.join("changed.txt"), b"AAAA\n");
    stamp_tree(&src, 2);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    let prepare = |d: &Path| {
        write(&d.join("same.txt"), b"same\n");
        write(&d.join("changed.txt"), b"BBBB\n");
        stamp_tree(d, 2);
    };
    let (a_push, r_push, srv_send, srv_recv) =
        (s.join("a"), s.join("r"), s.join("ss"), s.join("sr"));
    for d in [&a_push, &r_push, &srv_send, &srv_recv] {
        prepare(d);
    }
    let a = arsync(
        s.path(),
        &[
            "-aic",
            "--protocol=rsync",
            &rsh_arg,
            &slash(&src),
            &format!("host:{}", slash(&a_push)),
        ],
    );
    a.assert_ok();
    let r = rsync(
        s.path(),
        &[
            "-aic",
            &rsh_arg,
            &slash(&src),
            &format!("host:{}", slash(&r_push)),
        ],
    );
    r.assert_ok();
    assert_same_lines("push -c", &a, &r);
    let rp = format!("--rsync-path={ARSYNC}");
    let sent = rsync(
        s.path(),
        &[
            "-aic",
            &rp,
            &rsh_arg,
            &format!("host:{}", slash(&src)),
            &slash(&srv_send),
        ],
    );
    sent.assert_ok();
    let received = rsync(
        s.path(),
        &[
            "-aic",
            &rp,
            &rsh_arg,
            &slash(&src),
            &format!("host:{}", slash(&srv_recv)),
        ],
    );
    received.assert_ok();
    assert_same_lines("rsync client push -c to arsync --server", &received, &r);
    for d in [&a_push, &r_push, &srv_send, &srv_recv] {
        assert_same_tree("-c", "dest", &snapshot(d), "src", &snapshot(&src));
    }
}

/// The remote shells that run the command directly, as rsync's own test suite and
/// `docker exec`-style shells do: one execs the words as given (`exec "$@"`), the other
/// through `exec sh -c "$*"`. Neither is named `rsh` or `remsh`: for those names rsync turns
/// on `--blocking-io`, and only then makes its child's stdout blocking; otherwise the server's
/// stdout is rsync's end of a socketpair with `O_NONBLOCK` set (rsync resets only stdin).
fn direct_exec_shells(dir: &Path) -> Vec<PathBuf> {
    [("lsh-exec", "exec \"$@\""), ("lsh-sh", "exec sh -c \"$*\"")]
        .into_iter()
        .map(|(name, run)| {
            let p = dir.join(name);
            fs::write(
                &p,
                format!(
                    "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\nshift\n{run}\n"
                ),
            )
            .expect("write remote shell");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod shell");
            p
        })
        .collect()
}

/// A small tree with one file several times larger than a socketpair's buffer (about
/// 200 KiB), so a server writing it to a non-blocking stdout meets `EAGAIN`.
fn direct_exec_fixture(root: &Path) {
    write(&root.join("small.txt"), b"small\n");
    write(&root.join("sub/big.bin"), &pseudo_random(2 << 20, 13));
    write(&root.join("sub/deep/c.txt"), b"c\n");
    symlink("small.txt", &root.join("link"));
    mkdir(&root.join("empty"));
    stamp_tree(root, 13);
}

/// `got` equals `want`, times to the second at protocol 30 (which carries no nanoseconds).
fn assert_same_at_protocol(what: &str, protocol: &str, got: &Tree, want: &Tree) {
    let seconds = |t: &Tree| -> Tree {
        t.iter()
            .map(|(p, e)| {
                let mut e = e.clone();
                if protocol == "30" {
                    e.mtime.1 = 0;
                }
                (p.clone(), e)
            })
            .collect()
    };
    assert_same_tree(what, "arsync", &seconds(got), "rsync", &seconds(want));
}

fn shell_name(shell: &Path) -> String {
    shell
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn an_rsync_client_pulls_from_arsync_server_through_a_direct_exec_shell() {
    let s = Scratch::new();
    let src = s.join("src");
    direct_exec_fixture(&src);
    let from = format!("host:{}", slash(&src));
    for shell in direct_exec_shells(s.path()) {
        let name = shell_name(&shell);
        let rsh_arg = format!("--rsh={}", shell.display());
        let reference = s.join(format!("{name}-reference"));
        rsync(s.path(), &["-a", &rsh_arg, &from, &slash(&reference)]).assert_ok();
        let want = snapshot(&reference);
        for protocol in ["30", "31", "32"] {
            let dest = s.join(format!("{name}-p{protocol}"));
            rsync(
                s.path(),
                &[
                    "-a",
                    &format!("--protocol={protocol}"),
                    &format!("--rsync-path={ARSYNC}"),
                    &rsh_arg,
                    &from,
                    &slash(&dest),
                ],
            )
            .assert_ok();
            assert_same_at_protocol(
                &format!("pull through {name}, protocol {protocol}"),
                protocol,
                &snapshot(&dest),
                &want,
            );
        }
    }
}

#[test]
fn an_rsync_client_pushes_to_arsync_server_through_a_direct_exec_shell() {
    let s = Scratch::new();
    let src = s.join("src");
    direct_exec_fixture(&src);
    // An old version of the big file: the server sends its block checksums back.
    let old = |dest: &Path| write(&dest.join("sub/big.bin"), &pseudo_random(2 << 20, 14));
    for shell in direct_exec_shells(s.path()) {
        let name = shell_name(&shell);
        let rsh_arg = format!("--rsh={}", shell.display());
        let reference = s.join(format!("{name}-reference"));
        old(&reference);
        rsync(
            s.path(),
            &[
                "-a",
                &rsh_arg,
                &slash(&src),
                &format!("host:{}", slash(&reference)),
            ],
        )
        .assert_ok();
        let want = snapshot(&reference);
        for protocol in ["30", "31", "32"] {
            let dest = s.join(format!("{name}-p{protocol}"));
            old(&dest);
            rsync(
                s.path(),
                &[
                    "-a",
                    &format!("--protocol={protocol}"),
                    &format!("--rsync-path={ARSYNC}"),
                    &rsh_arg,
                    &slash(&src),
                    &format!("host:{}", slash(&dest)),
                ],
            )
            .assert_ok();
            assert_same_at_protocol(
                &format!("push through {name}, protocol {protocol}"),
                protocol,
                &snapshot(&dest),
                &want,
            );
        }
    }
}

#[test]
fn arsync_client_and_server_sync_through_a_direct_exec_shell() {
    let s = Scratch::new();
    let src = s.join("src");
    direct_exec_fixture(&src);
    rsync(
        s.path(),
        &["-a", &slash(&src), &slash(&s.join("reference"))],
    )
    .assert_ok();
    let want = snapshot(&s.join("reference"));
    for shell in direct_exec_shells(s.path()) {
        let name = shell_name(&shell);
        let rsh_arg = format!("--rsh={}", shell.display());
        let path_arg = format!("--rsync-path={ARSYNC}");
        // ssh: the session on the server's stdio; auto: the QUIC bootstrap's line first, and
        // (the host name "host" does not resolve) the session on the same stdio after it.
        for transport in ["ssh", "auto"] {
            let t_arg = format!("--transport={transport}");
            let pulled = s.join(format!("{name}-{transport}-pulled"));
            arsync(
                s.path(),
                &[
                    "-a",
                    &t_arg,
                    &rsh_arg,
                    &path_arg,
                    &format!("host:{}", slash(&src)),
                    &slash(&pulled),
                ],
            )
            .assert_ok();
            let what = format!("merkle pull through {name}, --transport={transport}");
            assert_same_tree(&what, "arsync", &snapshot(&pulled), "rsync", &want);
            let pushed = s.join(format!("{name}-{transport}-pushed"));
            arsync(
                s.path(),
                &[
                    "-a",
                    &t_arg,
                    &rsh_arg,
                    &path_arg,
                    &slash(&src),
                    &format!("host:{}", slash(&pushed)),
                ],
            )
            .assert_ok();
            let what = format!("merkle push through {name}, --transport={transport}");
            assert_same_tree(&what, "arsync", &snapshot(&pushed), "rsync", &want);
        }
    }
}

/// `run` left `dest/log.txt` as `new`, most of it matched against the old copy, and its
/// `counter` (the bytes the sender's side put on the wire) small.
fn exact_delta(run: &Run, dest: &Path, new: &[u8], counter: &str, z: &str) {
    run.assert_ok();
    assert_eq!(fs::read(dest.join("log.txt")).unwrap(), new, "{z}");
    assert!(
        stat_num(run, "Matched data:") > new.len() as u64 * 9 / 10,
        "{z}: {}",
        run.describe()
    );
    assert!(stat_num(run, counter) < 20_000, "{z}: {}", run.describe());
}

/// A delta with -z from arsync's sending adapter, in both of its roles (arsync pushing to
/// `rsync --server`, a real rsync client pulling from `arsync --server --sender`), with each
/// compression rsync negotiates: block matches travel as token runs between the compressed
/// literal data, so little more than the change is sent, and the result is exact.
#[test]
fn compressed_delta_from_arsync_sends_matches_as_tokens() {
    let s = Scratch::new();
    let src = s.join("src");
    let old: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("{i:08} the quick brown fox jumps over the lazy dog\n").into_bytes())
        .collect();
    let mut new = old.clone();
    new[1_000_000..1_000_010].copy_from_slice(b"CHANGED!!!");
    new[10..14].copy_from_slice(b"HEAD");
    write(&src.join("log.txt"), &new);
    stamp_tree(&src, 7);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    for z in ["zstd", "lz4"] {
        let choice = format!("--compress-choice={z}");
        // arsync pushing to rsync.
        let pushed = s.join(format!("push-{z}"));
        write(&pushed.join("log.txt"), &old);
        stamp_tree(&pushed, 1);
        let run = arsync(
            s.path(),
            &[
                "-az",
                &choice,
                "--stats",
                "--protocol=rsync",
                &rsh_arg,
                &slash(&src),
                &format!("host:{}", slash(&pushed)),
            ],
        );
        exact_delta(&run, &pushed, &new, "Total bytes sent:", z);
        // rsync pulling from arsync.
        let pulled = s.join(format!("pull-{z}"));
        write(&pulled.join("log.txt"), &old);
        stamp_tree(&pulled, 1);
        let run = rsync(
            s.path(),
            &[
                "-az",
                &choice,
                "--stats",
                &format!("--rsync-path={ARSYNC}"),
                &rsh_arg,
                &format!("host:{}", slash(&src)),
                &slash(&pulled),
            ],
        );
        exact_delta(&run, &pulled, &new, "Total bytes received:", z);
    }
}

/// rsync's connection options against a real rsync daemon, side by side with rsync: the
/// message of the day before a transfer and in the module list (`--no-motd` hides both, as
/// rsync cannot tell them apart), `--port` for `host::module`, `-4`, `--address`, and `-6`
/// failing to reach an IPv4-only name; `-M` words reach the server only.
#[test]
fn daemon_connection_options_as_rsync() {
    let s = Scratch::new();
    let (public, secret) = (s.join("public"), s.join("secret"));
    write(&public.join("a.txt"), b"alpha\n");
    write(&public.join("big.bin"), &pseudo_random(5_000, 3));
    stamp_tree(&public, 6);
    fs::create_dir_all(&secret).unwrap();
    let d = start_daemon(&s, &public, &secret);
    let port = format!("--port={}", d.port);
    let url = format!("rsync://127.0.0.1:{}/", d.port);
    let stdout = |r: &Run| r.stdout_str().to_string();
    // The module list, with and without the MOTD.
    for extra in [&[][..], &["--no-motd"][..]] {
        let mut args = extra.to_vec();
        args.push(&url);
        let (a, r) = (arsync(s.path(), &args), rsync(s.path(), &args));
        a.assert_ok();
        r.assert_ok();
        assert_eq!(stdout(&a), stdout(&r), "{extra:?}");
    }
    assert!(arsync(s.path(), &[&url])
        .stdout_str()
        .contains("second line of the motd"));
    // A pull through host::module with --port, each connection option, as rsync prints it.
    let cases: [&[&str]; 5] = [
        &[],
        &["--no-motd"],
        &["-4"],
        &["--address=127.0.0.1"],
        &["-M--max-size=1000", "--remote-option=--min-size=1"],
    ];
    for (i, extra) in cases.iter().enumerate() {
        let (a, r) = (s.join(format!("a{i}")), s.join(format!("r{i}")));
        let mut args = vec!["-a", &port];
        args.extend(*extra);
        args.push("127.0.0.1::data/");
        let (ra, rr) = (slash(&a), slash(&r));
        let mut ours = args.clone();
        ours.push(&ra);
        let mut theirs = args.clone();
        theirs.push(&rr);
        let (runa, runr) = (arsync(s.path(), &ours), rsync(s.path(), &theirs));
        runa.assert_ok();
        runr.assert_ok();
        assert_eq!(stdout(&runa), stdout(&runr), "{extra:?}");
        assert_same_tree(
            "daemon pull",
            "arsync",
            &snapshot(&a),
            "rsync",
            &snapshot(&r),
        );
        assert_eq!(
            stdout(&runa).contains("Welcome to the test daemon"),
            !extra.contains(&"--no-motd"),
            "{extra:?}"
        );
    }
    // -6 cannot reach an IPv4 address: both fail with a socket error.
    let ours = arsync(s.path(), &["-a", "-6", &port, "127.0.0.1::data/", "x6/"]);
    let theirs = rsync(s.path(), &["-a", "-6", &port, "127.0.0.1::data/", "y6/"]);
    assert_eq!(
        ours.code(),
        theirs.code(),
        "{} / {}",
        ours.describe(),
        theirs.describe()
    );
    assert!(!s.join("x6").exists());
}

// Incremental recursion in arsync's sending role (`CF_INC_RECURSE`): arsync pushing to
// `rsync --server` offers `i`; `arsync --server --sender` sets it for an rsync client that
// offered it. The lists go a directory at a time, ahead of rsync's generator.

/// [`fake_rsh`] that first appends the command it runs to `cmds.log` in `dir`.
fn logging_rsh(dir: &Path) -> PathBuf {
    let p = dir.join("rsh-log");
    let log = dir.join("cmds.log");
    fs::write(
        &p,
        format!(
            "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\nshift\n\
             echo \"$*\" >> {}\nexec sh -c \"$*\"\n",
            log.display()
        ),
    )
    .expect("write rsh");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    p
}

/// A messy source and the destination it goes over. The source: the corpus's newer release
/// (deep and wide, symlinks, odd modes) plus empty directories, a directory the filters
/// leave out whole, a symlink to a directory, and 1,200 files in 40 directories (more than
/// rsync's look-ahead of 1,000, so lists go while the generator works). The destination: the
/// older release, with a directory where the source has a file, a file where it has a
/// directory, a directory the source lacks, and content in the excluded directory.
fn messy_pair(root: &Path) -> (PathBuf, PathBuf) {
    use common::corpus::{generate_pair, CorpusSpec, Scale};
    let pair = generate_pair(
        &root.join("corpus"),
        &CorpusSpec {
            seed: 11,
            scale: Scale::Tiny,
        },
    );
    let (src, old) = (pair.b, pair.a);
    mkdir(&src.join("empty"));
    mkdir(&src.join("deep/er/empty/still"));
    write(
        &src.join("skipme/never.txt"),
        b"excluded with its directory\n",
    );
    for d in 0..40 {
        for f in 0..30 {
            write(
                &src.join(format!("wide/d{d:02}/f{f:02}")),
                &[d as u8, f as u8],
            );
        }
    }
    symlink("wide/d07", &src.join("to_dir"));
    for (root, path) in [
        (&src, "was_dir"),
        (&src, "was_file/inside.txt"),
        (&old, "was_dir/inner/f"),
        (&old, "was_file"),
        (&old, "gone/deeper/junk"),
        (&old, "skipme/kept.txt"),
        (&old, "wide/d03/stale"),
    ] {
        write(&root.join(path), path.as_bytes());
    }
    stamp_tree(&src, 21);
    stamp_tree(&old, 22);
    (src, old)
}

#[test]
fn incremental_recursion_in_both_sending_roles_matches_rsync_on_a_messy_tree() {
    let s = Scratch::new();
    let (src, old) = messy_pair(s.path());
    let rsh = format!("--rsh={}", logging_rsh(s.path()).display());
    let args = ["-a", "--delete", "-x", "--exclude=/skipme/"];
    // The reference: rsync pushing (with incremental recursion, its default).
    let want_dir = s.join("want");
    common::harness::copy_tree(&old, &want_dir);
    let to = |d: &Path| format!("host:{}", slash(d));
    let mut r = args.to_vec();
    let (from, want_to) = (slash(&src), to(&want_dir));
    r.extend([rsh.as_str(), &from, &want_to]);
    rsync(s.path(), &r).assert_ok();
    let want = snapshot(&want_dir);
    assert!(want_dir.join("skipme/kept.txt").exists() && !want_dir.join("gone").exists());

    // arsync pushing to `rsync --server`: it offers `i`, and rsync's receiver takes the
    // lists a directory at a time (its debug output, forwarded, says so).
    let push_dir = s.join("push");
    common::harness::copy_tree(&old, &push_dir);
    let push_to = to(&push_dir);
    let mut a = vec!["--protocol=rsync", "-M--debug=flist2"];
    a.extend(args);
    a.extend([rsh.as_str(), &from, &push_to]);
    let run = arsync(s.path(), &a);
    run.assert_ok();
    let log = fs::read_to_string(s.join("cmds.log")).unwrap();
    assert!(
        log.contains("rsync --server -") && log.contains("e.iLsfxCIvu"),
        "{log}"
    );
    let said = format!("{}{}", run.stdout_str(), run.stderr_str());
    assert!(said.contains("receiving flist for dir"), "{said}");
    assert_same_tree("push", "arsync", &snapshot(&push_dir), "rsync", &want);
    // A second push finds nothing to do.
    let mut again = a.clone();
    again.retain(|x| *x != "-M--debug=flist2");
    again.insert(0, "-i");
    let run = arsync(s.path(), &again);
    run.assert_ok();
    let items: Vec<String> = run.stdout_lines();
    assert!(
        items.iter().all(|l| !l.starts_with(['<', 'c', '*', '.'])),
        "{items:?}"
    );

    // The rsync client pulling from `arsync --server --sender`: the server sets the flag,
    // the client's receiver reads a list per directory.
    let pull_dir = s.join("pull");
    common::harness::copy_tree(&old, &pull_dir);
    let mut p = vec!["--debug=flist2"];
    p.extend(args);
    let arsync_path = format!("--rsync-path={ARSYNC}");
    let (pull_from, pull_to) = (format!("host:{}", slash(&src)), slash(&pull_dir));
    p.extend([rsh.as_str(), arsync_path.as_str(), &pull_from, &pull_to]);
    let run = rsync(s.path(), &p);
    run.assert_ok();
    let said = format!("{}{}", run.stdout_str(), run.stderr_str());
    assert!(said.contains("receiving flist for dir"), "{said}");
    let got = snapshot(&pull_dir);
    assert_same_tree("pull", "arsync server", &got, "rsync", &want);
}

/// What to compare of an itemized run: the items in order, then the deletions as a set
/// (rsync deletes from another process than the one that itemizes).
fn items_then_deletions(run: &Run) -> Vec<String> {
    let (mut deleted, mut items): (Vec<String>, Vec<String>) = run
        .stdout_lines()
        .into_iter()
        .filter(|l| !l.is_empty() && !l.starts_with("sent ") && !l.starts_with("total size"))
        // A pulling rsync client says what its generator could not do on stdout, arsync on
        // stderr (the same cases: the exit code is compared).
        .filter(|l| !l.starts_with("cannot ") && !l.starts_with("could not "))
        .partition(|l| l.starts_with("*deleting"));
    deleted.sort();
    items.push("(deletions)".into());
    items.extend(deleted);
    items
}

/// Issue 18: arsync receiving with incremental recursion — pulling from `rsync --server
/// --sender`, and as `arsync --server` for an rsync client's push — on the messy pair (a file
/// replaced by a directory and the other way round, symlinks, deep and wide directories, a
/// directory of more than rsync's look-ahead), in rounds of a few entries: the tree, the
/// itemized lines and the exit code as rsync to rsync, with and without `--delete`. And the
/// lists did come a directory at a time: arsync's `-vv` counts the rounds, the rsync client
/// says "sending incremental file list".
#[test]
fn incremental_recursion_in_both_receiving_roles_matches_rsync_on_a_messy_tree() {
    let s = Scratch::new();
    let (src, old) = messy_pair(s.path());
    let rsh = format!("--rsh={}", logging_rsh(s.path()).display());
    let to_rsync = format!("--rsync-path={}", rsync_path().display());
    // The server in small rounds, so that its list comes in many.
    let to_arsync = format!("--rsync-path=env ARSYNC_SEGMENT_ROUND=16 {ARSYNC}");
    let rounds = [("ARSYNC_SEGMENT_ROUND", "16")];
    let from_remote = format!("host:{}", slash(&src));
    let from_here = slash(&src);
    let cases: [&[&str]; 2] = [&["-ai"], &["-ai", "--delete", "--exclude=/skipme/"]];
    for (k, opts) in cases.into_iter().enumerate() {
        for pull in [true, false] {
            let role = if pull { "pull" } else { "push" };
            let what = format!("{role} {opts:?}");
            let (want_dir, got_dir) = (
                s.join(format!("want{k}{role}")),
                s.join(format!("got{k}{role}")),
            );
            common::harness::copy_tree(&old, &want_dir);
            common::harness::copy_tree(&old, &got_dir);
            let (want_to, got_to) = if pull {
                (slash(&want_dir), slash(&got_dir))
            } else {
                (
                    format!("host:{}", slash(&want_dir)),
                    format!("host:{}", slash(&got_dir)),
                )
            };
            let from = if pull { &from_remote } else { &from_here };
            let mut w = opts.to_vec();
            w.extend([
                rsh.as_str(),
                to_rsync.as_str(),
                from.as_str(),
                want_to.as_str(),
            ]);
            let want = rsync(s.path(), &w);
            let got = if pull {
                let mut a = vec!["--protocol=rsync"];
                a.extend(opts);
                a.extend([
                    rsh.as_str(),
                    to_rsync.as_str(),
                    from.as_str(),
                    got_to.as_str(),
                ]);
                arsync_env(s.path(), &a, &rounds)
            } else {
                let mut a = opts.to_vec();
                a.extend([
                    rsh.as_str(),
                    to_arsync.as_str(),
                    from.as_str(),
                    got_to.as_str(),
                ]);
                rsync(s.path(), &a)
            };
            assert_eq!(got.code(), want.code(), "{what}: {}", got.describe());
            assert_same_tree(
                &what,
                "arsync",
                &snapshot(&got_dir),
                "rsync",
                &snapshot(&want_dir),
            );
            let (g, w) = (items_then_deletions(&got), items_then_deletions(&want));
            if let Some(at) = (0..g.len().max(w.len())).find(|&i| g.get(i) != w.get(i)) {
                let around = |v: &[String]| {
                    v[at.saturating_sub(3).min(v.len())..(at + 4).min(v.len())].to_vec()
                };
                panic!(
                    "{what}: lines differ at {at}: arsync {:?} rsync {:?}",
                    around(&g),
                    around(&w)
                );
            }
        }
    }
    // Pulling: `i` offered, and rsync's lists came in many rounds.
    let fresh = s.join("fresh-pull");
    let fresh_to = slash(&fresh);
    let run = arsync_env(
        s.path(),
        &[
            "--protocol=rsync",
            "-avv",
            &rsh,
            &to_rsync,
            &from_remote,
            &fresh_to,
        ],
        &rounds,
    );
    run.assert_ok();
    let log = fs::read_to_string(s.join("cmds.log")).unwrap();
    let last = log.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.contains("--sender") && last.contains("e.iLsfxCIvu"),
        "{last}"
    );
    let line = run
        .line_starting("rsync's incremental file lists:")
        .unwrap_or_else(|| panic!("no rounds line: {}", run.describe()));
    let many: u32 = line
        .split(" in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(many > 10, "{line}");
    // Pushed to `arsync --server`: the rsync client sends its list incrementally.
    let fresh = s.join("fresh-push");
    let fresh_to = format!("host:{}", slash(&fresh));
    let run = rsync(s.path(), &["-av", &rsh, &to_arsync, &from_here, &fresh_to]);
    run.assert_ok();
    let out = run.stdout_str();
    assert!(
        out.contains("sending incremental file list") && !out.contains("building file list"),
        "{out}"
    );
}

#[test]
fn hard_links_relative_paths_and_no_i_r_go_without_incremental_recursion() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("a/one"), b"linked\n");
    mkdir(&src.join("b"));
    hard_link(&src.join("a/one"), &src.join("b/two"));
    write(&src.join("c/d/three"), b"three\n");
    stamp_tree(&src, 5);
    let rsh = format!("--rsh={}", logging_rsh(s.path()).display());
    let arsync_path = format!("--rsync-path={ARSYNC}");
    for (i, opt) in ["-H", "-R", "--no-i-r"].into_iter().enumerate() {
        // Pushing: no `i` offered.
        let dest = s.join(format!("push{i}"));
        let to = format!("host:{}", slash(&dest));
        let from = if opt == "-R" { "src/./a" } else { "src/" };
        arsync(s.path(), &["--protocol=rsync", "-a", opt, &rsh, from, &to]).assert_ok();
        let log = fs::read_to_string(s.join("cmds.log")).unwrap();
        let last = log.lines().last().unwrap_or_default().to_owned();
        assert!(last.contains("e.LsfxCIvu"), "{opt}: {last}");
        // Pulled by rsync (which offers `i`): one list.
        let dest = s.join(format!("pull{i}"));
        let remote = format!("host:{}/{}", s.path().display(), from);
        let run = rsync(
            s.path(),
            &[
                "-a",
                opt,
                "--debug=flist2",
                &rsh,
                &arsync_path,
                &remote,
                &slash(&dest),
            ],
        );
        run.assert_ok();
        assert!(
            !run.stdout_str().contains("receiving flist for dir"),
            "{opt}"
        );
        let reference = s.join(format!("ref{i}"));
        rsync(s.path(), &["-a", opt, from, &slash(&reference)]).assert_ok();
        // With -R the destination's root is not in the transfer (its mtime is its own).
        let (got, want) = (
            without_root(snapshot(&dest)),
            without_root(snapshot(&reference)),
        );
        assert_same_tree(opt, "pulled", &got, "rsync", &want);
    }
    let linked = |d: &str| {
        use std::os::unix::fs::MetadataExt;
        let a = fs::metadata(s.join(d).join("a/one")).unwrap().ino();
        a == fs::metadata(s.join(d).join("b/two")).unwrap().ino()
    };
    assert!(linked("push0") && linked("pull0"));
}

/// `--rsync-path=rsync` (or `"env rsync"`, as `sudo rsync` would be): the program started
/// there is rsync, so arsync speaks rsync's protocol with it, pushing and pulling — where it
/// used to send arsync's hello and rsync refused it ("protocol version mismatch").
#[test]
fn an_rsync_path_naming_rsync_is_spoken_to_in_rsyncs_protocol() {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("a.txt"), b"a\n");
    write(&src.join("sub/b.txt"), b"b\n");
    stamp_tree(&src, 4);
    let rsh_arg = format!("--rsh={}", fake_rsh(s.path()).display());
    for rsync_path in ["rsync", "env rsync"] {
        let rp = format!("--rsync-path={rsync_path}");
        let tag = rsync_path.replace(' ', "-");
        let pushed = s.join(format!("push-{tag}"));
        let to = format!("host:{}", slash(&pushed));
        arsync(s.path(), &["-a", &rsh_arg, &rp, &slash(&src), &to]).assert_ok();
        let pulled = s.join(format!("pull-{tag}"));
        let from = format!("host:{}", slash(&src));
        arsync(s.path(), &["-a", &rsh_arg, &rp, &from, &slash(&pulled)]).assert_ok();
        for got in [&pushed, &pulled] {
            assert_same_tree(
                rsync_path,
                "source",
                &snapshot(&src),
                "copy",
                &snapshot(got),
            );
        }
    }
}
