//! arsync to arsync over a remote shell and over pipes, with real processes: the client starts
//! `arsync --server` through `-e`, a remote shell that runs the command on this machine (as
//! rsync's own test suite does: it drops the host name and `exec sh -c "$*"`), so the bytes
//! cross real pipes between two processes. `--pipe` roles are joined by a real socketpair, also
//! with `O_NONBLOCK` set (as an rsync client leaves its remote shell's stdio): the server, `--pipe`
//! and the QUIC bootstrap's stdio fallback must wait on it, and a full non-blocking stderr must
//! not lose a message.

mod common;

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Write the local "remote shell" into `dir`; `prefix` runs before the command (e.g. a
/// `timeout` that kills the server).
fn fake_rsh(dir: &Path, prefix: &str) -> PathBuf {
    let p = dir.join(format!("rsh{}", prefix.len()));
    let script = format!(
        "#!/bin/sh\n# Drop ssh's -l USER / -p PORT and the host name, run the command here.\n\
         while [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\nshift\nexec {prefix} sh -c \"$*\"\n"
    );
    fs::write(&p, script).expect("write rsh");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    p
}

fn tree(root: &Path) {
    write(&root.join("a.txt"), b"alpha\n");
    write(&root.join("sub/b.bin"), &pseudo_random(300_000, 5));
    write(&root.join("sub/deep/c"), b"");
    write(&root.join("skip.o"), b"object");
    symlink("a.txt", &root.join("link"));
    mkdir(&root.join("empty"));
    stamp_tree(root, 3);
}

fn rsh_args(rsh: &Path) -> Vec<String> {
    vec![
        format!("--rsh={}", rsh.display()),
        format!("--rsync-path={ARSYNC}"),
    ]
}

fn arsync_with(cwd: &Path, extra: &[String], args: &[&str]) -> Run {
    let mut all: Vec<&str> = extra.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    arsync(cwd, &all)
}

#[test]
fn push_and_pull_through_a_remote_shell_match_a_local_copy() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    let rsh = rsh_args(&fake_rsh(s.path(), ""));
    // The reference: the same tree copied locally by rsync.
    rsync(s.path(), &["-a", "src/", "reference/"]).assert_ok();
    let want = snapshot(&s.join("reference"));

    let pushed = s.join("pushed");
    arsync_with(
        s.path(),
        &rsh,
        &["-a", "src/", &format!("host:{}/", pushed.display())],
    )
    .assert_ok();
    assert_same_tree(
        "push",
        "arsync push",
        &snapshot(&pushed),
        "rsync local",
        &want,
    );

    let pull = arsync_with(
        s.path(),
        &rsh,
        &[
            "-a",
            "--stats",
            &format!("me@host:{}/", src.display()),
            "pulled/",
        ],
    );
    pull.assert_ok();
    assert_same_tree(
        "pull",
        "arsync pull",
        &snapshot(&s.join("pulled")),
        "rsync local",
        &want,
    );
    // The data crossed the pipes: a pull receives at least the file contents.
    let received = stats_number(&pull, "Total bytes received: ");
    assert!(received > 300_000, "received only {received} bytes");

    // Nothing changed: a second pull itemizes nothing and transfers nothing.
    let again = arsync_with(
        s.path(),
        &rsh,
        &[
            "-ai",
            "--stats",
            &format!("host:{}/", src.display()),
            "pulled/",
        ],
    );
    again.assert_ok();
    assert!(
        again
            .stdout_lines()
            .iter()
            .all(|l| !l.starts_with('>') && !l.starts_with("cd")),
        "{}",
        again.describe()
    );
    assert!(again
        .stdout_lines()
        .contains(&"Number of regular files transferred: 0".to_owned()));
}

#[test]
fn options_reach_the_server_delete_and_exclude() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    let dst = s.join("dst");
    write(&dst.join("stale.txt"), b"old");
    write(&dst.join("keep.o"), b"excluded, so protected");
    let rsh = rsh_args(&fake_rsh(s.path(), ""));
    // Push: the exclude acts on this side (the sender), --delete on the remote receiver.
    arsync_with(
        s.path(),
        &rsh,
        &[
            "-a",
            "--delete",
            "--exclude=*.o",
            "src/",
            &format!("host:{}/", dst.display()),
        ],
    )
    .assert_ok();
    assert!(
        !dst.join("stale.txt").exists(),
        "--delete did not reach the server"
    );
    assert!(!dst.join("skip.o").exists(), "excluded file was sent");
    assert_eq!(
        fs::read(dst.join("keep.o")).expect("keep.o"),
        b"excluded, so protected"
    );
    // Pull: the exclude must travel to the remote sender.
    arsync_with(
        s.path(),
        &rsh,
        &[
            "-a",
            "--exclude=sub/",
            &format!("host:{}/", src.display()),
            "pulled/",
        ],
    )
    .assert_ok();
    assert!(s.join("pulled/a.txt").exists());
    assert!(
        !s.join("pulled/sub").exists(),
        "the server did not get the exclude"
    );
}

#[test]
fn remote_failures_give_rsync_exit_codes() {
    let s = Scratch::new();
    mkdir(&s.join("src"));
    let rsh = rsh_args(&fake_rsh(s.path(), ""));
    // A missing remote source: the remote reports it, the run ends with 23 like rsync.
    let missing = arsync_with(
        s.path(),
        &rsh,
        &[
            "-a",
            &format!("host:{}", s.join("nonexistent").display()),
            "out/",
        ],
    );
    assert_eq!(missing.code(), Some(23), "{}", missing.describe());
    // No arsync on the remote side: the remote command is not found (127, as rsync), with
    // the shell's reason.
    let mut bad = rsh.clone();
    bad[1] = "--rsync-path=/nonexistent/arsync".into();
    let none = arsync_with(s.path(), &bad, &["-a", "src/", "host:/tmp/never/"]);
    assert_eq!(none.code(), Some(127), "{}", none.describe());
    assert!(
        none.stderr_str().contains("/nonexistent/arsync"),
        "{}",
        none.describe()
    );
    // (rsync says 127 here too when it reaps its remote shell in time; it sometimes sees the
    // closed connection first and says 12, so it is not compared.)
    // The remote shell itself cannot be run: 5, like rsync.
    let shell = arsync(
        s.path(),
        &["-a", "-e", "/nonexistent/ssh", "src/", "host:/tmp/never/"],
    );
    assert_eq!(shell.code(), Some(5), "{}", shell.describe());
}

/// A 4 MiB source file and an older, short version of it in the destination.
fn big_file_over_an_old_one() -> (Scratch, std::path::PathBuf, std::path::PathBuf) {
    let s = Scratch::new();
    let src = s.join("src");
    write(&src.join("big.bin"), &pseudo_random(4 << 20, 8));
    stamp_tree(&src, 1);
    let dst = s.join("dst");
    write(&dst.join("big.bin"), b"the old version");
    (s, src, dst)
}

#[test]
fn a_server_killed_mid_transfer_leaves_the_old_file() {
    let (s, _src, dst) = big_file_over_an_old_one();
    // The remote side gets SIGTERM after one second, mid-file (the push is rate-limited): it
    // removes its temporary and exits 20; the client sees the stream end early.
    let rsh = rsh_args(&fake_rsh(s.path(), "timeout 1"));
    let run = arsync_with(
        s.path(),
        &rsh,
        &[
            "-a",
            "--bwlimit=1000",
            "src/",
            &format!("host:{}/", dst.display()),
        ],
    );
    assert_eq!(run.code(), Some(12), "{}", run.describe());
    assert_eq!(
        fs::read(dst.join("big.bin")).expect("big.bin"),
        b"the old version"
    );
    let names: Vec<_> = fs::read_dir(&dst)
        .expect("dst")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporaries left: {names:?}");
}

/// A receiving server whose client dies mid-file exits, as it does when the client of an
/// `ssh` session is killed: stdin ends, stdout has no reader, and stderr is gone with sshd
/// (printing the "connection closed" warning fails). It used to hang for ever: the writer of
/// the open file panicked on that warning, its slot was never given back, and the receiver
/// waited for it before returning.
#[test]
fn a_receiver_whose_client_dies_mid_file_exits() {
    let (s, _src, dst) = big_file_over_an_old_one();
    let (a, b) = UnixStream::pair().expect("socketpair");
    let (a2, b2) = (a.try_clone().expect("dup"), b.try_clone().expect("dup"));
    // Rate-limited: 4 MiB take about four seconds, so the cut comes mid-file.
    let mut client = common::arsync_command()
        .args(["-a", "--bwlimit=1000", "--pipe", "--sender", "src/"])
        .current_dir(s.path())
        .stdin(Stdio::from(OwnedFd::from(a)))
        .stdout(Stdio::from(OwnedFd::from(a2)))
        .stderr(Stdio::null())
        .spawn()
        .expect("start client");
    // The server as the client's remote shell starts it.
    let mut server = common::arsync_command()
        .args([
            "--server",
            "-r",
            "-l",
            "-p",
            "-t",
            "--bwlimit=1024000b",
            ".",
            "dst/",
        ])
        .current_dir(s.path())
        .stdin(Stdio::from(OwnedFd::from(b)))
        .stdout(Stdio::from(OwnedFd::from(b2)))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let temporaries = || {
        fs::read_dir(&dst)
            .expect("dst")
            .filter(|e| e.as_ref().expect("entry").file_name() != "big.bin")
            .count()
    };
    for _ in 0..300 {
        if temporaries() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(temporaries() > 0, "the server never started the file");
    // sshd goes with the connection: the server's stderr has no reader any more.
    drop(server.stderr.take());
    client.kill().expect("kill client");
    client.wait().expect("reap client");
    let mut status = None;
    for _ in 0..300 {
        status = server.try_wait().expect("wait server");
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some(status) = status else {
        let _ = server.kill();
        let _ = server.wait();
        panic!("the server hung after its client died mid-file");
    };
    // rsync's "error in rsync protocol data stream", not a panic's 101.
    assert_eq!(status.code(), Some(12), "server: {status}");
    assert_eq!(
        fs::read(dst.join("big.bin")).expect("big.bin"),
        b"the old version"
    );
    assert_eq!(temporaries(), 0, "temporaries left");
}

#[test]
fn pipe_mode_sender_and_receiver_joined_by_a_socketpair() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    let (a, b) = UnixStream::pair().expect("socketpair");
    let (a2, b2) = (a.try_clone().expect("dup"), b.try_clone().expect("dup"));
    let mut sender = common::arsync_command()
        .args(["-a", "--pipe", "--sender", "src/"])
        .current_dir(s.path())
        .stdin(Stdio::from(OwnedFd::from(a)))
        .stdout(Stdio::from(OwnedFd::from(a2)))
        .spawn()
        .expect("start sender");
    let mut receiver = common::arsync_command()
        .args(["-a", "--pipe", "--receiver", "dst"])
        .current_dir(s.path())
        .stdin(Stdio::from(OwnedFd::from(b)))
        .stdout(Stdio::from(OwnedFd::from(b2)))
        .spawn()
        .expect("start receiver");
    let wait = |c: &mut std::process::Child, who: &str| {
        for _ in 0..600 {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        panic!("{who} hung");
    };
    assert!(wait(&mut receiver, "receiver").success());
    assert!(wait(&mut sender, "sender").success());
    rsync(s.path(), &["-a", "src/", "reference/"]).assert_ok();
    assert_same_tree(
        "pipe",
        "arsync --pipe",
        &snapshot(&s.join("dst")),
        "rsync local",
        &snapshot(&s.join("reference")),
    );
}

fn total(run: &Run, label: &str) -> u64 {
    run.stdout_lines()
        .iter()
        .find_map(|l| l.strip_prefix(label).map(|n| n.trim().replace(',', "")))
        .and_then(|n| n.split_whitespace().next().map(str::to_owned))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {label:?} line"))
}

#[test]
fn compression_shrinks_the_wire_and_changes_nothing_else() {
    let s = Scratch::new();
    let src = s.join("src");
    let text: Vec<u8> = (0..60_000)
        .flat_map(|i| format!("line {i}: the quick brown fox\n").into_bytes())
        .collect();
    write(&src.join("log.txt"), &text);
    write(&src.join("noise.bin"), &pseudo_random(200_000, 3));
    for i in 0..300 {
        write(&src.join(format!("many/file{i}")), b"x");
    }
    stamp_tree(&src, 4);
    let rsh = rsh_args(&fake_rsh(s.path(), ""));
    let want = snapshot(&src);
    let mut sent = Vec::new();
    for (name, z) in [("plain", &[][..]), ("zstd", &["-z"][..])] {
        let dest = s.join(name);
        let mut args = vec!["-a", "--stats"];
        args.extend_from_slice(z);
        let target = format!("host:{}/", dest.display());
        args.extend_from_slice(&["src/", &target]);
        let push = arsync_with(s.path(), &rsh, &args);
        push.assert_ok();
        assert_same_tree(name, "pushed", &snapshot(&dest), "source", &want);
        sent.push(total(&push, "Total bytes sent:"));
        // A pull with -z: the receiver is the client.
        let pulled = s.join(format!("{name}-pulled"));
        let mut args = vec!["-a"];
        args.extend_from_slice(z);
        let from = format!("host:{}/", src.display());
        let to = format!("{}/", pulled.display());
        args.extend_from_slice(&[&from, &to]);
        arsync_with(s.path(), &rsh, &args).assert_ok();
        assert_same_tree(name, "pulled", &snapshot(&pulled), "source", &want);
    }
    // 1.9 MB of text shrinks to little; the 200 KB of noise does not grow.
    assert!(sent[0] > 2_000_000, "plain sent {}", sent[0]);
    assert!(
        sent[1] < 450_000,
        "zstd sent {} (plain {})",
        sent[1],
        sent[0]
    );
}

#[test]
fn a_push_reports_what_the_remote_side_did_as_rsync_does() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    let rsh = fake_rsh(s.path(), "");
    let mut outs = Vec::new();
    for (name, arsync_side) in [("a", true), ("r", false)] {
        let dest = s.join(name);
        write(&dest.join("old/gone.txt"), b"x\n");
        write(&dest.join("a.txt"), b"other\n");
        let to = format!("host:{}/", dest.display());
        let run = if arsync_side {
            let extra = rsh_args(&rsh);
            arsync_with(s.path(), &extra, &["-ai", "--delete", "src/", &to])
        } else {
            rsync(
                s.path(),
                &[
                    "-ai",
                    "--delete",
                    &format!("--rsh={}", rsh.display()),
                    "src/",
                    &to,
                ],
            )
        };
        run.assert_ok();
        outs.push(run);
    }
    // Deletions, created directories and links, changed files: the same lines, order aside.
    assert_eq!(outs[0].sorted_lines(), outs[1].sorted_lines());
    assert!(outs[0]
        .stdout_lines()
        .iter()
        .any(|l| l.starts_with("*deleting")));
    assert!(outs[0]
        .stdout_lines()
        .iter()
        .any(|l| l.starts_with("cd+++++++++")));
}

/// The flags an arsync client gives the server for `-a`.
const SERVER_FLAGS: [&str; 8] = [
    "-r",
    "-l",
    "-p",
    "-t",
    "-g",
    "-o",
    "--devices",
    "--specials",
];

/// One end of a socketpair as a process's stdin and stdout (one open file description, as a
/// remote shell that hands one socket to both gives it), `O_NONBLOCK` if `non_blocking`.
fn stdio_end(end: UnixStream, non_blocking: bool) -> (Stdio, Stdio) {
    end.set_nonblocking(non_blocking).expect("O_NONBLOCK");
    let out = end.try_clone().expect("dup");
    (
        Stdio::from(OwnedFd::from(end)),
        Stdio::from(OwnedFd::from(out)),
    )
}

/// Start arsync in `cwd` on `stdio`, its stderr collected by a thread.
fn start_on(
    (stdin, stdout): (Stdio, Stdio),
    cwd: &Path,
    args: &[&str],
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = common::arsync_command()
        .args(args)
        .current_dir(cwd)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start arsync");
    let mut err = child.stderr.take().expect("stderr");
    let collect = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    (child, collect)
}

/// Wait (at most a minute) for a process started by [`start_on`]; it must succeed.
fn succeeds(who: &str, (mut child, err): (std::process::Child, std::thread::JoinHandle<String>)) {
    for _ in 0..1200 {
        if let Some(status) = child.try_wait().expect("wait") {
            let err = err.join().expect("stderr reader");
            assert!(status.success(), "{who}: {status}\n{err}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{who} hung");
}

/// `arsync --server` and `arsync --pipe` on non-blocking stdin and stdout, as an rsync client
/// leaves them (it sets `O_NONBLOCK` on its socketpairs) or a `docker exec`-style shell: a
/// read or write that would block must wait, not fail with EAGAIN. The file is several times
/// a socket buffer, so both sides meet a full buffer and an empty one.
#[test]
fn server_and_pipe_roles_work_on_non_blocking_stdio() {
    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    write(&src.join("sub/big.bin"), &pseudo_random(3 << 20, 6));
    stamp_tree(&src, 3);
    rsync(s.path(), &["-a", "src/", "reference/"]).assert_ok();
    let want = snapshot(&s.join("reference"));

    // A push: --pipe sends, the server receives.
    let (a, b) = UnixStream::pair().expect("socketpair");
    let sender = start_on(
        stdio_end(a, true),
        s.path(),
        &["-a", "--pipe", "--sender", "src/"],
    );
    let mut args = vec!["--server"];
    args.extend(SERVER_FLAGS);
    args.extend([".", "pushed/"]);
    let receiver = start_on(stdio_end(b, true), s.path(), &args);
    succeeds("receiving server", receiver);
    succeeds("--pipe sender", sender);
    let got = snapshot(&s.join("pushed"));
    assert_same_tree("push", "server", &got, "rsync", &want);

    // A pull: the server sends, --pipe receives.
    let (a, b) = UnixStream::pair().expect("socketpair");
    let mut args = vec!["--server", "--sender"];
    args.extend(SERVER_FLAGS);
    args.extend([".", "src/"]);
    let sender = start_on(stdio_end(a, true), s.path(), &args);
    let receiver = start_on(
        stdio_end(b, true),
        s.path(),
        &["-a", "--pipe", "--receiver", "pulled"],
    );
    succeeds("--pipe receiver", receiver);
    succeeds("sending server", sender);
    let got = snapshot(&s.join("pulled"));
    assert_same_tree("pull", "--pipe", &got, "rsync", &want);
}

/// `--bootstrap=quic` on non-blocking stdio: the server prints its line, reads the client's
/// `stdio` answer (waiting for it, not taking EAGAIN for the end of input), and serves the
/// session on the same descriptors.
#[test]
fn a_bootstrap_server_on_non_blocking_stdio_serves_the_session_there() {
    use std::io::{Read, Write};

    let s = Scratch::new();
    let src = s.join("src");
    tree(&src);
    write(&src.join("sub/big.bin"), &pseudo_random(3 << 20, 7));
    stamp_tree(&src, 3);
    rsync(s.path(), &["-a", "src/", "reference/"]).assert_ok();

    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let mut args = vec!["--server", "--bootstrap=quic", "--sender"];
    args.extend(SERVER_FLAGS);
    args.extend([".", "src/"]);
    let server = start_on(stdio_end(theirs, true), s.path(), &args);
    // The client's side of the SSH channel: the line, then a pause (the server is waiting on
    // an empty non-blocking stdin meanwhile), then the answer.
    ours.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.last() != Some(&b'\n') {
        let n = ours.read(&mut b).expect("read the bootstrap line");
        assert_eq!(n, 1, "the server closed stdout before its line");
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    assert!(line.starts_with("ARSYNC-BOOTSTRAP 1 quic "), "{line:?}");
    std::thread::sleep(Duration::from_millis(300));
    ours.write_all(b"stdio\n").expect("answer stdio");
    ours.set_read_timeout(None).expect("timeout");
    let receiver = start_on(
        stdio_end(ours, true),
        s.path(),
        &["-a", "--pipe", "--receiver", "pulled"],
    );
    succeeds("--pipe receiver", receiver);
    succeeds("bootstrap server", server);
    assert_same_tree(
        "bootstrap fallback",
        "--pipe",
        &snapshot(&s.join("pulled")),
        "rsync",
        &snapshot(&s.join("reference")),
    );
}

/// A server's error message on a non-blocking stderr that is full at the moment: it waits
/// for room instead of dropping the message (or panicking).
#[test]
fn an_error_on_a_full_non_blocking_stderr_waits_for_room() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    let s = Scratch::new();
    let (mut reader, mut writer) = std::io::pipe().expect("pipe");
    // SAFETY: fcntl on a descriptor this test owns.
    let flags = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0, "F_GETFL");
    // SAFETY: as above.
    let set = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    assert_eq!(set, 0, "F_SETFL");
    let mut filled = 0usize;
    loop {
        match writer.write(&[b'.'; 4096]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    // A receiving server whose client is gone at once: it fails and says why on stderr.
    let mut args = vec!["--server"];
    args.extend(SERVER_FLAGS);
    args.extend([".", "dst/"]);
    let mut server = common::arsync_command()
        .args(&args)
        .current_dir(s.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer))
        .spawn()
        .expect("start server");
    // Let it meet the full pipe before anyone reads.
    std::thread::sleep(Duration::from_millis(500));
    let mut all = Vec::new();
    reader.read_to_end(&mut all).expect("read stderr");
    let status = server.wait().expect("wait server");
    let said = String::from_utf8_lossy(&all[filled.min(all.len())..]).into_owned();
    assert_eq!(status.code(), Some(12), "server: {status}: {said}");
    assert!(
        said.contains("arsync error: error in rsync protocol data stream (code 12)"),
        "the server's message was lost: {said:?}"
    );
}

// Issue 18, chunk cache:
/// `--info=stats3`'s "Delta index" line: (bytes read, bytes taken from the cache).
fn delta_index(run: &Run) -> (u64, u64) {
    let out = run.stdout_str();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("Delta index: "))
        .unwrap_or_else(|| panic!("no delta index line in:\n{out}"));
    // "8,388,608 bytes read, 0 bytes from the chunk-index cache"
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.replace(',', "").parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// Issue 18, chunk cache: a delta run reads each side's file once; a re-run indexes the
/// receiver's copy it wrote last time (pull: the client receives) and an unchanged source
/// (push: the client sends) from the chunk-index cache without reading them; without the
/// cache they are read again.
#[test]
fn a_rerun_indexes_unchanged_files_from_the_chunk_cache() {
    let s = Scratch::new();
    let rsh = rsh_args(&fake_rsh(s.path(), ""));
    let cache = s.join("cache");
    let env = [("ARSYNC_CACHE_DIR", cache.to_str().unwrap())];
    const SIZE: usize = 8 << 20;
    let old = pseudo_random(SIZE, 18);
    let scatter = |data: &mut Vec<u8>, seed: u64| {
        for i in 0..8u64 {
            let at = ((i * 1_000_003 + seed * 7919) % (SIZE as u64 - 4096)) as usize;
            data[at..at + 4096].copy_from_slice(&pseudo_random(4096, seed + i));
        }
    };
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = rsh.iter().map(String::as_str).collect();
        all.extend_from_slice(&["-a", "--info=stats3"]);
        all.extend_from_slice(args);
        let r = arsync_env(s.path(), &all, &env);
        r.assert_ok();
        delta_index(&r)
    };
    let n = SIZE as u64;
    // Pull: the receiver is this side.
    write(&s.join("src/f"), &old);
    write(&s.join("dst/f"), &old);
    set_mtime(&s.join("src/f"), 1_600_000_000, 0);
    let from = format!("host:{}/", s.join("src").display());
    assert_eq!(run(&[&from, "dst/"]), (n, 0), "the old copy read once");
    let mut new = old.clone();
    scatter(&mut new, 1);
    write(&s.join("src/f"), &new);
    assert_eq!(
        run(&[&from, "dst/"]),
        (0, n),
        "the copy written last run, unread"
    );
    assert_eq!(fs::read(s.join("dst/f")).unwrap(), new);
    scatter(&mut new, 2);
    write(&s.join("src/f"), &new);
    set_mtime(&s.join("src/f"), 1_600_000_100, 0);
    fs::remove_dir_all(cache.join("chunks.v1")).unwrap();
    assert_eq!(run(&[&from, "dst/"]), (n, 0), "no cache: read again");
    assert_eq!(fs::read(s.join("dst/f")).unwrap(), new);

    // Push: the sender is this side; a source is kept once its times are settled.
    write(&s.join("up/f"), &new);
    std::thread::sleep(Duration::from_millis(2_100));
    for (i, (extra, want)) in [
        (None, (n, 0)),
        (None, (0, n)),
        (Some("--no-hash-cache"), (n, 0)),
    ]
    .into_iter()
    .enumerate()
    {
        let to = s.join(format!("down{i}"));
        write(&to.join("f"), &old);
        let dest = format!("host:{}/", to.display());
        let mut args = vec!["up/", dest.as_str()];
        args.extend(extra);
        assert_eq!(run(&args), want, "push {i} {extra:?}");
        assert_eq!(fs::read(to.join("f")).unwrap(), new);
    }
}

/// Issue 18, scattered deltas: a scattered update costs about its changes with the gap
/// exchange; with an arsync that does not offer it on either side (`ARSYNC_GAP_SUMS=0`, as an
/// older one) the file is still rebuilt exactly, from whole chunks, and costs more.
#[test]
fn a_scattered_update_sends_about_its_changes_and_an_older_peer_still_works() {
    let s = Scratch::new();
    let (old, new, from) = scattered_source(&s, 4 << 20, 16, 262_139, 21);
    let (mut received, mut literals) = (Vec::new(), Vec::new());
    // The server inherits the client's environment through the local remote shell, unless
    // the shell changes it.
    for (i, (what, prefix, env)) in [
        ("both offer it", "env -u ARSYNC_GAP_SUMS", None),
        ("the server does not", "env ARSYNC_GAP_SUMS=0", None),
        (
            "the client does not",
            "env -u ARSYNC_GAP_SUMS",
            Some(("ARSYNC_GAP_SUMS", "0")),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let rsh = rsh_args(&fake_rsh(s.path(), prefix));
        let dst = s.join(format!("dst{i}"));
        write(&dst.join("f"), &old);
        let dest = format!("{}/", dst.display());
        let mut all: Vec<&str> = rsh.iter().map(String::as_str).collect();
        all.extend(["-a", "--stats", &from, &dest]);
        let r = arsync_env(s.path(), &all, &env.into_iter().collect::<Vec<_>>());
        r.assert_ok();
        assert!(fs::read(dst.join("f")).unwrap() == new, "{what}: differs");
        received.push(stats_number(&r, "Total bytes received: "));
        // What the receiver reports as literal: the gaps' copies count as matched.
        literals.push(stats_number(&r, "Literal data: "));
    }
    let changed = 16 * 4096;
    assert!(
        literals[0] < changed * 3 / 2 && literals[1] > changed * 2,
        "literal with and without gaps: {literals:?}"
    );
    assert!(
        received[0] < changed * 2,
        "{} bytes for {changed} changed",
        received[0]
    );
    for (i, &n) in received.iter().enumerate().skip(1) {
        assert!(
            n > received[0] * 5 / 4,
            "run {i}: {n} against {}",
            received[0]
        );
    }
}

/// Issue 18: when both ends speak the gap exchange, a file over 64 MiB is cut into larger
/// chunks (`ChunkParams::for_file_with_gaps`) — both ends must agree on that, or nothing
/// would match. A 65 MiB scattered update comes out exact whether both offer gaps or the
/// server does not, and with both the chunk-index cache records about half the chunks
/// (8 KiB on average against 4 KiB; the cache holds 36 bytes a chunk).
#[test]
fn a_large_files_chunks_grow_only_when_both_ends_speak_gaps() {
    let s = Scratch::new();
    let (old, new, from) = scattered_source(&s, 65 << 20, 8, 7_999_993, 31);
    let mut cached = Vec::new();
    for (i, prefix) in ["env -u ARSYNC_GAP_SUMS", "env ARSYNC_GAP_SUMS=0"]
        .into_iter()
        .enumerate()
    {
        let rsh = rsh_args(&fake_rsh(s.path(), prefix));
        let dst = s.join(format!("dst{i}"));
        write(&dst.join("f"), &old);
        let cache = s.join(format!("cache{i}"));
        fs::create_dir_all(&cache).unwrap();
        let dest = format!("{}/", dst.display());
        let mut all: Vec<&str> = rsh.iter().map(String::as_str).collect();
        all.extend(["-a", &from, &dest]);
        let r = arsync_env(
            s.path(),
            &all,
            &[("ARSYNC_CACHE_DIR", cache.to_str().unwrap())],
        );
        r.assert_ok();
        assert!(fs::read(dst.join("f")).unwrap() == new, "{prefix}: differs");
        let bytes: u64 = walk(&cache)
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        cached.push(bytes);
    }
    assert!(
        cached[1] > 0 && cached[0] * 10 < cached[1] * 7,
        "chunk-index cache bytes with gaps and without: {cached:?}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)
        .expect("read the cache directory")
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A scattered update's source: `size` pseudo-random bytes (from `seed`) with `changes`
/// pieces of 4 KiB rewritten `stride` bytes apart (wrapping), written to `src/f` with an old
/// mtime. Returns the old bytes, the new ones and the remote source argument.
fn scattered_source(
    s: &Scratch,
    size: usize,
    changes: u64,
    stride: u64,
    seed: u64,
) -> (Vec<u8>, Vec<u8>, String) {
    let old = pseudo_random(size, seed);
    let mut new = old.clone();
    for i in 0..changes {
        let at = ((i * stride + 4_099) % (size as u64 - 4096)) as usize;
        new[at..at + 4096].copy_from_slice(&pseudo_random(4096, 100 + i));
    }
    write(&s.join("src/f"), &new);
    set_mtime(&s.join("src/f"), 1_600_000_000, 0);
    (old, new, format!("host:{}/", s.join("src").display()))
}

/// The number on the `--stats` line that starts with `label` (its digits: "1,234 bytes" is
/// 1234).
fn stats_number(r: &Run, label: &str) -> u64 {
    r.stdout_lines()
        .iter()
        .find_map(|l| l.strip_prefix(label))
        .map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {label:?} line"))
}
