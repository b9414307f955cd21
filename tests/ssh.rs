//! The transport conformance suite over a real OpenSSH: an `sshd` on a loopback port
//! (`tests/common/sshd.rs`, host and client keys generated per test, host-key checking on).
//! Every case runs for every SSH backend through the `conformance!` macro, as ripgrep runs its
//! cases against every matcher. The backends: the system `ssh` binary (`-e`), the built-in
//! client (`--ssh=native`), and `ssh-pool` with three connections of each.
//!
//! The cases: the rich fixture both ways, one large file, many small files, the chosen number
//! of connections really made (sshd's log of logins), a connection killed mid-transfer
//! (nothing truncated left), an unknown and a changed host key refused, a key the server does
//! not accept refused; and the rsync protocol both ways over the same sshd. Pool-only cases
//! follow: a large file spread in parts, and one lane killed mid-transfer in each direction.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::sshd::Sshd;
use common::*;

fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

fn remote(p: &Path) -> String {
    format!("127.0.0.1:{}", slash(p))
}

/// One way of reaching the sshd: the arguments that select it.
trait Backend {
    /// How many SSH connections one arsync-to-arsync run makes.
    const CONNECTIONS: usize;
    /// How many streams carry a pull's data (shown by `-v`); checked when above 1.
    const STREAMS: usize = 1;
    /// What it says when the host key is not known.
    const UNKNOWN_HOST: &'static str = "Host key verification failed";
    fn args(sshd: &Sshd) -> Vec<String>;
}

/// The system `ssh` binary as the remote shell.
struct SystemSsh;

impl Backend for SystemSsh {
    const CONNECTIONS: usize = 1;
    fn args(sshd: &Sshd) -> Vec<String> {
        let mut v = shell(sshd);
        v.extend(["--transport=ssh".into(), "--ssh=system".into()]);
        v
    }
}

/// The remote shell and the arsync it runs, whatever the transport.
fn shell(sshd: &Sshd) -> Vec<String> {
    vec![
        format!("--rsh={}", sshd.rsh()),
        format!("--rsync-path={ARSYNC}"),
    ]
}

/// `ssh-pool` with three connections made by the system `ssh`.
struct PoolOfThree;

impl Backend for PoolOfThree {
    const CONNECTIONS: usize = 3;
    fn args(sshd: &Sshd) -> Vec<String> {
        let mut v = shell(sshd);
        v.extend([
            "--transport=ssh-pool".into(),
            "--streams=3".into(),
            "--ssh=system".into(),
        ]);
        v
    }
}

/// The built-in SSH client (russh), reading the same `-e` options.
struct NativeSsh;

impl Backend for NativeSsh {
    const CONNECTIONS: usize = 1;
    const UNKNOWN_HOST: &'static str = "SHA256:";
    fn args(sshd: &Sshd) -> Vec<String> {
        let mut v = shell(sshd);
        v.extend(["--transport=ssh".into(), "--ssh=native".into()]);
        v
    }
}

/// `ssh-pool` with three connections of the built-in client, one login shared.
struct NativePoolOfThree;

impl Backend for NativePoolOfThree {
    const CONNECTIONS: usize = 3;
    const UNKNOWN_HOST: &'static str = "SHA256:";
    fn args(sshd: &Sshd) -> Vec<String> {
        // The pool's default client is the native one.
        let mut v = shell(sshd);
        v.extend(["--transport=ssh-pool".into(), "--streams=3".into()]);
        v
    }
}

/// QUIC bootstrapped over the system `ssh` (`--transport=quic`): one login, three streams.
struct QuicOverSsh;

impl Backend for QuicOverSsh {
    const CONNECTIONS: usize = 1;
    const STREAMS: usize = 3;
    fn args(sshd: &Sshd) -> Vec<String> {
        let mut v = shell(sshd);
        v.extend([
            "--transport=quic".into(),
            "--streams=3".into(),
            "--ssh=system".into(),
        ]);
        v
    }
}

/// The defaults, `--transport=auto --ssh=auto`: the built-in client, which follows this
/// login, and on this short link the session on its channel (issue 16); a refused login is
/// tried again with the system `ssh`, whose message the user sees.
struct AutoDefault;

impl Backend for AutoDefault {
    const CONNECTIONS: usize = 1;
    fn args(sshd: &Sshd) -> Vec<String> {
        shell(sshd)
    }
}

/// How many logins the sshd accepted so far (its log, at LogLevel VERBOSE).
fn logins(s: &Scratch) -> usize {
    fs::read_to_string(s.join("keys/sshd.log"))
        .unwrap_or_default()
        .matches("Accepted publickey for ")
        .count()
}

/// Files of `n` × `size` pseudo-random bytes under `dir`, their times set.
fn data_files(dir: &Path, n: usize, size: usize) {
    for i in 0..n {
        write(
            &dir.join(format!("f{i:03}")),
            &pseudo_random(size, i as u64),
        );
    }
    stamp_tree(dir, 2);
}

fn run_with<B: Backend>(s: &Scratch, sshd: &Sshd, args: &[&str]) -> Run {
    let mut all: Vec<String> = B::args(sshd);
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    arsync(s.path(), &refs)
}

fn setup() -> (Scratch, Sshd) {
    // Issue 16, overlay: shared with tests/overlay.rs (tests/common).
    scratch_with_sshd()
}

fn rich_fixture_both_ways<B: Backend>() {
    let (s, sshd) = setup();
    let src = s.join("src");
    build_rich_fixture(&src);
    let want = snapshot(&src);
    let pushed = s.join("pushed");
    run_with::<B>(&s, &sshd, &["-aH", &slash(&src), &remote(&pushed)]).assert_ok();
    assert_same_tree("push", "dest", &snapshot(&pushed), "src", &want);
    let pulled = s.join("pulled");
    run_with::<B>(&s, &sshd, &["-aH", &remote(&src), &slash(&pulled)]).assert_ok();
    assert_same_tree("pull", "dest", &snapshot(&pulled), "src", &want);
}

fn one_large_file<B: Backend>() {
    let (s, sshd) = setup();
    let src = s.join("src");
    let data = pseudo_random(24 << 20, 3);
    write(&src.join("big.bin"), &data);
    let dest = s.join("dest");
    run_with::<B>(&s, &sshd, &["-a", &slash(&src), &remote(&dest)]).assert_ok();
    assert!(fs::read(dest.join("big.bin")).unwrap() == data);
}

fn many_small_files<B: Backend>() {
    let (s, sshd) = setup();
    let src = s.join("src");
    for i in 0..3000 {
        write(
            &src.join(format!("d{}/f{i}", i % 30)),
            format!("file {i}\n").as_bytes(),
        );
    }
    stamp_tree(&src, 4);
    let dest = s.join("dest");
    let run = run_with::<B>(&s, &sshd, &["-a", "--stats", &slash(&src), &remote(&dest)]);
    run.assert_ok();
    assert_same_tree(
        "small files",
        "dest",
        &snapshot(&dest),
        "src",
        &snapshot(&src),
    );
    // Nothing changed: the second run transfers nothing.
    let again = run_with::<B>(&s, &sshd, &["-ai", &slash(&src), &remote(&dest)]);
    again.assert_ok();
    assert!(
        again.stdout_lines().is_empty(),
        "{:?}",
        again.stdout_lines()
    );
}

fn a_connection_killed_mid_transfer<B: Backend>() {
    let (s, sshd) = setup();
    let src = s.join("src");
    write(&src.join("big.bin"), &pseudo_random(4 << 20, 8));
    stamp_tree(&src, 1);
    let dest = s.join("dest");
    write(&dest.join("big.bin"), b"the old version");
    // Rate-limited, and the client is killed after a second: the remote side sees its
    // connection drop mid-file.
    let mut args = B::args(&sshd);
    args.extend([
        "-a".into(),
        "--bwlimit=1000".into(),
        slash(&src),
        remote(&dest),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = spawn(Tool::Arsync, s.path(), &refs);
    std::thread::sleep(std::time::Duration::from_secs(1));
    running.kill();
    // Give the remote side a moment to notice and clean up.
    for _ in 0..50 {
        let names: Vec<_> = fs::read_dir(&dest).unwrap().collect();
        if names.len() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(fs::read(dest.join("big.bin")).unwrap(), b"the old version");
    let names: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporaries left: {names:?}");
}

fn the_chosen_number_of_connections_is_used<B: Backend>() {
    let (s, sshd) = setup();
    let src = s.join("src");
    data_files(&src, 24, 256 << 10);
    for (what, args) in [
        ("pull", [remote(&src), slash(&s.join("pulled"))]),
        ("push", [slash(&src), remote(&s.join("pushed"))]),
    ] {
        let before = logins(&s);
        let run = run_with::<B>(&s, &sshd, &["-avv", &args[0], &args[1]]);
        run.assert_ok();
        if B::STREAMS > 1 && what == "pull" {
            assert_eq!(
                streams_carrying(&run.stdout_str(), 256 << 10),
                B::STREAMS,
                "{what}: streams that carried data"
            );
        }
        // sshd logs a login when it happens; give the log a moment.
        let mut made = logins(&s) - before;
        for _ in 0..20 {
            if made >= B::CONNECTIONS {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            made = logins(&s) - before;
        }
        assert_eq!(made, B::CONNECTIONS, "{what}: SSH logins");
    }
    let want = snapshot(&src);
    assert_same_tree("pull", "dest", &snapshot(&s.join("pulled")), "src", &want);
    assert_same_tree("push", "dest", &snapshot(&s.join("pushed")), "src", &want);
}

fn refused<B: Backend>(change: impl Fn(&Path), expect: &str) {
    let (s, sshd) = setup();
    change(&s.join("keys"));
    let src = s.join("src");
    write(&src.join("f"), b"data\n");
    let dest = s.join("dest");
    let run = run_with::<B>(&s, &sshd, &["-a", &slash(&src), &remote(&dest)]);
    // rsync exits with its ssh's code, 255, for a refused login: so does every backend.
    assert_eq!(run.code(), Some(255), "{}", run.describe());
    assert!(run.stderr_str().contains(expect), "{}", run.stderr_str());
    assert!(!dest.exists());
}

fn an_unknown_host_key<B: Backend>() {
    refused::<B>(
        |keys| fs::write(keys.join("known_hosts"), "").unwrap(),
        B::UNKNOWN_HOST,
    );
}

fn a_changed_host_key<B: Backend>() {
    refused::<B>(
        |keys| {
            // Another key recorded for this host and port.
            let other = keys.join("other_host_key");
            let st = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&other)
                .status()
                .unwrap();
            assert!(st.success());
            let known = fs::read_to_string(keys.join("known_hosts")).unwrap();
            let host = known.split(' ').next().unwrap().to_owned();
            let key = fs::read_to_string(keys.join("other_host_key.pub")).unwrap();
            fs::write(keys.join("known_hosts"), format!("{host} {}", key.trim())).unwrap();
        },
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
    );
}

fn a_key_the_server_does_not_accept<B: Backend>() {
    refused::<B>(
        |keys| fs::write(keys.join("authorized_keys"), "").unwrap(),
        "Permission denied",
    );
}

fn the_rsync_protocol_both_ways<B: Backend>() {
    let (s, sshd) = setup();
    let src = s.join("src");
    build_rich_fixture(&src);
    let want = snapshot(&src);
    // arsync speaking rsync's protocol to the rsync on the far side.
    let pulled = s.join("pulled");
    let mut args = B::args(&sshd);
    args.retain(|a| !a.starts_with("--rsync-path"));
    args.extend([
        "-aH".into(),
        "--protocol=rsync".into(),
        remote(&src),
        slash(&pulled),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    arsync(s.path(), &refs).assert_ok();
    assert_same_tree(
        "rsync-protocol pull",
        "dest",
        &snapshot(&pulled),
        "src",
        &want,
    );
    // rsync's client with arsync on the far side.
    let served = s.join("served");
    rsync(
        s.path(),
        &[
            "-aH",
            &format!("--rsh={}", sshd.rsh()),
            &format!("--rsync-path={ARSYNC}"),
            &slash(&src),
            &remote(&served),
        ],
    )
    .assert_ok();
    assert_same_tree(
        "rsync client push",
        "dest",
        &snapshot(&served),
        "src",
        &want,
    );
}

/// A release upgrade (the generated corpus: renamed hash-suffixed files, moves, edits, links)
/// pushed over the old release and pulled back over the new one: each result is the release
/// sent (`-a`: hard links become copies, as with rsync).
fn a_release_upgrade_both_ways<B: Backend>() {
    let (s, sshd) = setup();
    let pair = common::corpus::generate_pair(
        &s.join("corpus"),
        &common::corpus::CorpusSpec {
            seed: 21,
            scale: common::corpus::Scale::Tiny,
        },
    );
    let unlinked = |mut t: Tree| {
        t.values_mut().for_each(|e| e.link_group = None);
        t
    };
    let copy = |from: &Path, to: &Path| {
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success());
    };
    let pushed = s.join("pushed");
    copy(&pair.a, &pushed);
    run_with::<B>(
        &s,
        &sshd,
        &["-a", "--delete", &slash(&pair.b), &remote(&pushed)],
    )
    .assert_ok();
    assert_same_tree(
        "upgrade pushed",
        "dest",
        &unlinked(snapshot(&pushed)),
        "b",
        &unlinked(snapshot(&pair.b)),
    );
    let pulled = s.join("pulled");
    copy(&pair.b, &pulled);
    run_with::<B>(
        &s,
        &sshd,
        &["-a", "--delete", &remote(&pair.a), &slash(&pulled)],
    )
    .assert_ok();
    assert_same_tree(
        "downgrade pulled",
        "dest",
        &unlinked(snapshot(&pulled)),
        "a",
        &unlinked(snapshot(&pair.a)),
    );
}

/// Every case, for one backend.
macro_rules! conformance {
    ($backend:ident, $module:ident) => {
        mod $module {
            use super::*;

            #[test]
            fn rich_fixture_both_ways() {
                super::rich_fixture_both_ways::<$backend>();
            }
            #[test]
            fn a_release_upgrade_both_ways() {
                super::a_release_upgrade_both_ways::<$backend>();
            }
            #[test]
            fn one_large_file() {
                super::one_large_file::<$backend>();
            }
            #[test]
            fn many_small_files() {
                super::many_small_files::<$backend>();
            }
            #[test]
            fn a_connection_killed_mid_transfer() {
                super::a_connection_killed_mid_transfer::<$backend>();
            }
            #[test]
            fn the_chosen_number_of_connections_is_used() {
                super::the_chosen_number_of_connections_is_used::<$backend>();
            }
            #[test]
            fn an_unknown_host_key_is_refused() {
                super::an_unknown_host_key::<$backend>();
            }
            #[test]
            fn a_changed_host_key_is_refused() {
                super::a_changed_host_key::<$backend>();
            }
            #[test]
            fn a_key_the_server_does_not_accept_is_refused() {
                super::a_key_the_server_does_not_accept::<$backend>();
            }
            #[test]
            fn the_rsync_protocol_both_ways() {
                super::the_rsync_protocol_both_ways::<$backend>();
            }
        }
    };
}

conformance!(SystemSsh, system_ssh);
conformance!(PoolOfThree, pool_of_three);
conformance!(NativeSsh, native_ssh);
conformance!(NativePoolOfThree, native_pool_of_three);
conformance!(QuicOverSsh, quic_over_ssh);
conformance!(AutoDefault, auto_default);

/// `--explain` shows the probes and the decision; with UDP open, auto picks QUIC (the system
/// `ssh` logs in: it tells no RTT, so the link is not known to be short).
#[test]
fn auto_explains_and_picks_quic_when_udp_gets_through() {
    let (s, sshd) = setup();
    let run = explained_push(&s, &sshd, None, &["--ssh=system"], "dest");
    let err = run.stderr_str();
    for want in [
        "explain: ssh login to 127.0.0.1",
        "explain: QUIC handshake to ",
        ": ok in ",
        "explain: decision: quic (remote arsync present, UDP gets through)",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
}

/// UDP blocked: `--transport=auto` falls back to SSH on the same login; `--transport=quic`
/// fails with a message that says what to do.
#[test]
fn auto_falls_back_to_ssh_when_udp_is_blocked() {
    common::netns::enter_without_udp();
    let (s, sshd) = setup();
    let src = s.join("src");
    data_files(&src, 5, 50_000);
    let before = logins(&s);
    let run = explained_push(&s, &sshd, None, &["--ssh=system"], "dest");
    let err = run.stderr_str();
    assert!(
        err.contains("QUIC handshake to ") && err.contains("failed after"),
        "{err}"
    );
    assert!(
        err.contains("decision: ssh, on the same login (UDP does not get through)"),
        "{err}"
    );
    assert_eq!(logins(&s) - before, 1, "one login, reused");
    let mut args = shell(&sshd);
    args.extend([
        "-a".into(),
        "--transport=quic".into(),
        slash(&src),
        remote(&s.join("q")),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = arsync(s.path(), &refs);
    assert_eq!(run.code(), Some(5), "{}", run.describe());
    assert!(
        run.stderr_str()
            .contains("--transport=ssh works without UDP"),
        "{}",
        run.stderr_str()
    );
    assert!(!s.join("q").exists());
}

/// The ssh processes `parent` runs for its lanes (`--lane=` on their command line).
fn lane_processes(parent: u32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid …
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && cmd.starts_with("ssh\0") && cmd.contains("--lane=") {
            v.push(pid);
        }
    }
    v
}

/// The streams that carried data, from `-vv`'s "bytes received per stream" line: how many
/// carried at least `min` bytes.
fn streams_carrying(stdout: &str, min: u64) -> usize {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("bytes received per stream"))
        .unwrap_or_else(|| panic!("no per-stream line in {stdout}"));
    line.rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .filter(|b| b.parse::<u64>().unwrap() >= min)
        .count()
}

/// A large file travels in parts, one per stream, written at their offsets into one staged
/// file; files of any size spread over the streams.
#[test]
fn pool_spreads_a_large_file_in_parts() {
    let (s, sshd) = setup();
    let src = s.join("src");
    write(&src.join("big.bin"), &pseudo_random(48 << 20, 11));
    data_files(&src.join("small"), 30, 64 << 10);
    let pulled = s.join("pulled");
    let mut args = PoolOfThree::args(&sshd);
    args.extend(["-avv".into(), remote(&src), slash(&pulled)]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = arsync(s.path(), &refs);
    run.assert_ok();
    // Three streams each carried at least a third of the big file.
    assert_eq!(
        streams_carrying(&run.stdout_str(), 15 << 20),
        3,
        "{}",
        run.stdout_str()
    );
    let want = snapshot(&src);
    assert_same_tree("pull", "dest", &snapshot(&pulled), "src", &want);
    let pushed = s.join("pushed");
    run_with::<PoolOfThree>(&s, &sshd, &["-a", &slash(&src), &remote(&pushed)]).assert_ok();
    assert_same_tree("push", "dest", &snapshot(&pushed), "src", &want);
}

/// A pool connection that dies mid-transfer costs only its own files (or parts): they are
/// asked for again on the others, the run ends well, and nothing truncated is left.
fn a_lane_killed_mid_transfer(push: bool) {
    let (s, sshd) = setup();
    let src = s.join("src");
    data_files(&src, 40, 256 << 10);
    // And one file that travels in parts.
    write(&src.join("parts.bin"), &pseudo_random(36 << 20, 5));
    let dest = s.join("dest");
    let (from, to) = if push {
        (slash(&src), remote(&dest))
    } else {
        (remote(&src), slash(&dest))
    };
    let mut args = PoolOfThree::args(&sshd);
    // 46 MB at 8 MB/s: the kill lands early in a run of about six seconds, while every lane
    // still owes whole files (the parts are asked for after them).
    args.extend(["-av".into(), "--bwlimit=8000".into(), from, to]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = spawn(Tool::Arsync, s.path(), &refs);
    let mut lanes = Vec::new();
    for _ in 0..100 {
        lanes = lane_processes(running.child.id());
        if lanes.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(lanes.len(), 2, "two lane connections");
    // Kill only once the lanes carry data: a few files have landed (on a loaded machine the
    // lane logins can take longer than any fixed delay).
    for _ in 0..400 {
        let landed = fs::read_dir(&dest)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0);
        if landed >= 6 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: kill(2) on a process this test's child started.
    unsafe {
        libc::kill(lanes[0], libc::SIGKILL);
    }
    let run = running.wait(std::time::Duration::from_secs(60));
    run.assert_ok();
    if !push {
        // The receiver (here) noticed, and asked again.
        assert!(
            run.stdout_str().contains("was lost: asked again"),
            "{}",
            run.stdout_str()
        );
    }
    assert_same_tree(
        "after a lost lane",
        "dest",
        &snapshot(&dest),
        "src",
        &snapshot(&src),
    );
}

#[test]
fn pool_a_lane_killed_mid_pull() {
    a_lane_killed_mid_transfer(false);
}

#[test]
fn pool_a_lane_killed_mid_push() {
    a_lane_killed_mid_transfer(true);
}

// Issue 16, native login:
/// `-a --explain SRC/ 127.0.0.1:DEST/` with the sshd's `-e` line (`-o OPTION` added to it)
/// and `extra` arguments first.
fn explained_push(
    s: &Scratch,
    sshd: &Sshd,
    option: Option<&str>,
    extra: &[&str],
    dest: &str,
) -> Run {
    let src = s.join("src");
    if !src.exists() {
        data_files(&src, 4, 20_000);
    }
    let mut args = shell(sshd);
    if let Some(o) = option {
        args[0] = format!("--rsh={} -o {o}", sshd.rsh());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend([
        "-a".into(),
        "--explain".into(),
        slash(&src),
        remote(&s.join(dest)),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = arsync(s.path(), &refs);
    run.assert_ok();
    assert_same_tree(dest, dest, &snapshot(&s.join(dest)), "src", &snapshot(&src));
    run
}

/// The defaults log in with the built-in client (it follows this `-e` line), measure the
/// login's TCP RTT, and keep this short link's session on the login's channel: no QUIC.
#[test]
fn auto_logs_in_with_the_built_in_client_and_keeps_a_short_links_channel() {
    let (s, sshd) = setup();
    let before = logins(&s);
    let run = explained_push(&s, &sshd, None, &[], "dest");
    let err = run.stderr_str();
    for want in [
        "explain: ssh client: built in (it follows this login's ssh settings)",
        ", TCP RTT ",
        "explain: decision: ssh, on the same login (TCP RTT ",
        "a short link, where the built-in SSH client's channel costs less CPU than QUIC)",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!err.contains("QUIC handshake"), "{err}");
    assert_eq!(logins(&s) - before, 1, "one login");
    // `--streams=N` asks for QUIC's streams.
    let run = explained_push(&s, &sshd, None, &["--streams=2"], "dest2");
    assert!(
        run.stderr_str().contains("explain: QUIC handshake to "),
        "{}",
        run.stderr_str()
    );
}

/// What the built-in client does not do (here connection sharing, `ControlPath`) sends the
/// login to the system `ssh` at once.
#[test]
fn auto_takes_the_system_ssh_for_a_setting_the_built_in_client_does_not_follow() {
    let (s, sshd) = setup();
    let run = explained_push(&s, &sshd, Some("ControlPath=none"), &[], "dest");
    // `-o` keywords are kept lowercased.
    let err = run.stderr_str().to_lowercase();
    assert!(
        err.contains(
            "explain: ssh client: the system ssh (the built-in client does not follow `controlpath`)"
        ),
        "{err}"
    );
}

/// A login the built-in client is refused (a user certificate, which it does not present)
/// is tried again with the system `ssh`, which logs in: the run succeeds, and says why.
#[test]
fn auto_retries_a_refused_built_in_login_with_the_system_ssh() {
    let s = Scratch::new();
    let keys = s.join("keys");
    mkdir(&keys);
    // A user CA the server trusts; the client's key signed by it; no authorized_keys.
    let sshd = Sshd::start_with(&keys, "127.0.0.1", "TrustedUserCAKeys {dir}/user_ca.pub\n");
    let keygen = |args: &[&str]| {
        let st = std::process::Command::new("ssh-keygen")
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ssh-keygen {args:?}");
    };
    let ca = keys.join("user_ca");
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca.to_str().unwrap()]);
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let client_pub = keys.join("client_key.pub");
    keygen(&[
        "-q",
        "-s",
        ca.to_str().unwrap(),
        "-I",
        "arsync-test",
        "-n",
        &user,
        client_pub.to_str().unwrap(),
    ]);
    fs::write(keys.join("authorized_keys"), "").unwrap();
    let run = explained_push(&s, &sshd, None, &[], "dest");
    let err = run.stderr_str();
    assert!(
        err.contains("explain: ssh client: the built-in login was refused (")
            && err.contains("); the system ssh tries"),
        "{err}"
    );
    // The system ssh tells no RTT: QUIC is tried, as before.
    assert!(err.contains("explain: QUIC handshake to "), "{err}");
}
