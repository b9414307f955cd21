//! The per-host memory with the real binary and a real OpenSSH `sshd` on a loopback port: a
//! run that finds UDP blocked (a network namespace that drops UDP) stores it, and the next
//! run remembers it and makes no QUIC handshake; a remembered fact that proves wrong is
//! replaced; `--no-host-memory` and `--forget-host`; a damaged file is rebuilt.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::sshd::Sshd;
use common::*;

fn setup() -> (Scratch, Sshd) {
    let s = Scratch::new();
    let keys = s.join("keys");
    mkdir(&keys);
    let sshd = Sshd::start(&keys);
    for i in 0..3u64 {
        write(&s.join(format!("src/f{i}")), &pseudo_random(20_000, i));
    }
    stamp_tree(&s.join("src"), 2);
    (s, sshd)
}

/// `arsync -a --explain [extra] src/ 127.0.0.1:DEST/` through the sshd (the system `ssh`,
/// `--transport=auto`, the arsync under test on the remote side), remembering in `s/cache`.
fn push(s: &Scratch, sshd: &Sshd, dest: &str, extra: &[&str]) -> String {
    let rsync_path = format!("--rsync-path={ARSYNC}");
    let mut args = vec![rsync_path.as_str()];
    args.extend(extra);
    push_to(s, sshd, dest, &args)
}

/// [`push`] with exactly `extra` (without `--rsync-path`, the remote host has only rsync).
fn push_to(s: &Scratch, sshd: &Sshd, dest: &str, extra: &[&str]) -> String {
    let rsh = format!("--rsh={}", sshd.rsh());
    let (src, to) = (
        format!("{}/", s.join("src").display()),
        format!("127.0.0.1:{}/", s.join(dest).display()),
    );
    // The system `ssh` tells no login RTT: the QUIC handshake is the probe under test.
    let mut args = vec![rsh.as_str(), "--ssh=system", "-a", "--explain"];
    args.extend(extra);
    args.extend([src.as_str(), to.as_str()]);
    let cache = s.join("cache");
    let run = arsync_env(
        s.path(),
        &args,
        &[("ARSYNC_CACHE_DIR", cache.to_str().unwrap())],
    );
    run.assert_ok();
    assert_same_tree(
        "memory",
        dest,
        &snapshot(&s.join(dest)),
        "src",
        &snapshot(&s.join("src")),
    );
    run.stderr_str().to_owned()
}

/// How many logins the sshd accepted so far (its log, at LogLevel VERBOSE).
fn logins(s: &Scratch) -> usize {
    fs::read_to_string(s.join("keys/sshd.log"))
        .unwrap_or_default()
        .matches("Accepted publickey for ")
        .count()
}

fn memory_file(s: &Scratch) -> String {
    fs::read_to_string(s.join("cache/hosts")).unwrap()
}

fn key(sshd: &Sshd) -> String {
    format!("127.0.0.1:{}", sshd.port)
}

/// Write a memory that says UDP to the sshd's host is blocked, learned a minute ago.
fn remember_blocked(s: &Scratch, sshd: &Sshd) {
    remember_blocked_and(s, sshd, &[]);
}

/// [`remember_blocked`] with more facts, `(name, value)` lines with the same dates.
fn remember_blocked_and(s: &Scratch, sshd: &Sshd, more: &[(&str, &str)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    mkdir(&s.join("cache"));
    let mut text = format!(
        "arsync host memory 1\nhost {}\nudp blocked {} {}\n",
        key(sshd),
        now - 60,
        now + 3600
    );
    for (name, value) in more {
        text.push_str(&format!("{name} {value} {} {}\n", now - 60, now + 3600));
    }
    write(&s.join("cache/hosts"), text.as_bytes());
}

const HANDSHAKE: &str = "explain: QUIC handshake to ";

#[test]
fn the_second_run_remembers_udp_blocked_and_skips_the_handshake() {
    common::netns::enter_without_udp();
    let (s, sshd) = setup();
    let first = push(&s, &sshd, "d1", &[]);
    assert!(
        first.contains(HANDSHAKE) && first.contains("failed after"),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "explain: host memory: what was learned of {} stored in ",
            key(&sshd)
        )),
        "{first}"
    );
    let text = memory_file(&s);
    assert!(text.contains(&format!("host {}\n", key(&sshd))), "{text}");
    assert!(text.contains("\nudp blocked "), "{text}");
    assert!(text.contains("\nremote arsync "), "{text}");
    // Issue 16, remote CPU: the server's hello said how fast it chunks.
    assert!(text.contains("\nchunking-bytes-per-s "), "{text}");
    let mode = fs::metadata(s.join("cache/hosts"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "private");

    let second = push(&s, &sshd, "d2", &[]);
    assert!(!second.contains(HANDSHAKE), "no handshake probe: {second}");
    for want in [
        format!(
            "explain: remembered: UDP to {} blocked (learned ",
            key(&sshd)
        ),
        "explain: decision: ssh (UDP blocked, remembered: learned ".into(),
        "; the QUIC handshake is not tried; no bootstrap either)".into(),
        format!("explain: remembered: {} chunks ", key(&sshd)),
    ] {
        assert!(second.contains(&want), "{want:?} in {second}");
    }
}

#[test]
fn a_remembered_block_is_trusted_forgotten_or_ignored_as_asked() {
    // UDP gets through here: only the memory says otherwise.
    let (s, sshd) = setup();
    remember_blocked(&s, &sshd);
    let trusted = push(&s, &sshd, "d1", &[]);
    assert!(!trusted.contains(HANDSHAKE), "{trusted}");
    assert!(trusted.contains("decision: ssh (UDP blocked, remembered"));

    let ignored = push(&s, &sshd, "d2", &["--no-host-memory"]);
    assert!(ignored.contains(HANDSHAKE), "{ignored}");
    assert!(!ignored.contains("explain: remembered:"), "{ignored}");
    assert!(
        !ignored.contains("host memory"),
        "nothing stored: {ignored}"
    );
    assert!(memory_file(&s).contains("\nudp blocked "));

    let forgot = push(&s, &sshd, "d3", &["--forget-host"]);
    assert!(
        forgot.contains(&format!("explain: host memory: forgot {}", key(&sshd))),
        "{forgot}"
    );
    assert!(
        forgot.contains(HANDSHAKE) && forgot.contains(": ok in "),
        "{forgot}"
    );
    assert!(forgot.contains("decision: quic (remote arsync present, UDP gets through)"));
    let text = memory_file(&s);
    assert!(
        text.contains("\nudp ok "),
        "the handshake replaced it: {text}"
    );
    assert!(!text.contains("udp blocked"), "{text}");
    // The QUIC session's path statistics are kept for the next run's parameters.
    assert!(
        forgot.contains(&format!("explain: session to {}: RTT ", key(&sshd))),
        "{forgot}"
    );
    assert!(text.contains("\nsession-rtt-us "), "{text}");
}

#[test]
fn a_fact_proved_wrong_is_replaced_and_a_damaged_file_rebuilt() {
    let (s, sshd) = setup();
    remember_blocked(&s, &sshd);
    // --transport=quic tries whatever is remembered; its handshake corrects the memory.
    let quic = push(&s, &sshd, "d1", &["--transport=quic"]);
    assert!(
        quic.contains(HANDSHAKE) && quic.contains(": ok in "),
        "{quic}"
    );
    assert!(memory_file(&s).contains("\nudp ok "));

    write(&s.join("cache/hosts"), b"\x00\x01 not a memory file {}\n");
    let damaged = push(&s, &sshd, "d2", &[]);
    assert!(
        damaged.contains("is not arsync's (or is damaged): ignored, rebuilt on the next store"),
        "{damaged}"
    );
    let text = memory_file(&s);
    assert!(text.starts_with("arsync host memory 1\n"), "{text}");
    assert!(text.contains("\nudp ok "), "{text}");
    assert!(!Path::new(&s.join("cache/.hosts.tmp")).exists());
}

#[test]
fn the_second_run_remembers_only_rsync_and_skips_the_bootstrap_login() {
    // No arsync on the sshd's PATH: only rsync.
    let (s, sshd) = setup();
    let first = push_to(&s, &sshd, "d1", &[]);
    assert!(
        first.contains("explain: remote arsync: not found on 127.0.0.1"),
        "{first}"
    );
    assert!(memory_file(&s).contains("\nremote rsync "));
    let before = logins(&s);
    let second = push_to(&s, &sshd, "d2", &[]);
    for want in [
        format!(
            "explain: remembered: {} has only rsync (learned ",
            key(&sshd)
        ),
        "explain: decision: rsync's protocol over ssh (the remote host has only rsync, \
         remembered: learned "
            .into(),
        "; no bootstrap login)".into(),
    ] {
        assert!(second.contains(&want), "{want:?} in {second}");
    }
    assert!(!second.contains("explain: ssh login to"), "{second}");
    assert_eq!(logins(&s) - before, 1, "one login: rsync's, no bootstrap");
}

/// Issue 16, hangs: with "UDP blocked" remembered the login runs the plain server command:
/// the remote arsync (a wrapper that logs its arguments) is not asked to bootstrap QUIC (bind
/// UDP, make a certificate) for nothing. Without the memory it is.
#[test]
fn a_remembered_block_logs_in_with_the_plain_server_command() {
    let (s, sshd) = setup();
    let log = s.join("remote-args");
    let wrapper = s.join("arsync-logged");
    write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {ARSYNC} \"$@\"\n",
            log.display()
        )
        .as_bytes(),
    );
    chmod(&wrapper, 0o755);
    let rsync_path = format!("--rsync-path={}", wrapper.display());
    remember_blocked(&s, &sshd);
    let err = push_to(&s, &sshd, "d1", &[&rsync_path]);
    assert!(
        err.contains("explain: decision: ssh (UDP blocked, remembered: learned ")
            && err.contains("; no bootstrap either)"),
        "{err}"
    );
    let ran = fs::read_to_string(&log).unwrap();
    assert!(ran.contains("--server"), "{ran}");
    assert!(!ran.contains("--bootstrap"), "{ran}");

    fs::remove_file(&log).unwrap();
    push_to(&s, &sshd, "d2", &[&rsync_path, "--no-host-memory"]);
    let ran = fs::read_to_string(&log).unwrap();
    assert!(ran.contains("--bootstrap=quic"), "{ran}");
}

// Issue 16, pool:
/// UDP remembered blocked and a remembered fat link (1 Gbit/s × 50 ms: three SSH windows in
/// flight): the pool's four connections carry the session (four logins), no handshake.
#[test]
fn a_remembered_block_on_a_fat_link_takes_the_pool() {
    common::netns::enter_without_udp();
    let (s, sshd) = setup();
    remember_blocked_and(
        &s,
        &sshd,
        &[
            ("session-rtt-us", "50000"),
            ("rate-bytes-per-s", "125000000"),
        ],
    );
    let before = logins(&s);
    let err = push(&s, &sshd, "d1", &[]);
    assert!(!err.contains(HANDSHAKE), "{err}");
    assert!(
        err.contains("explain: decision: ssh-pool (UDP blocked, remembered; the link's bandwidth-delay product (6.2 MB)"),
        "{err}"
    );
    assert!(err.contains("explain: decision: 4 streams"), "{err}");
    assert_eq!(
        logins(&s) - before,
        4,
        "one login per connection of the pool"
    );
}

// Issue 16, little moved.
#[test]
fn a_second_run_of_the_same_paths_that_moved_little_takes_one_ssh_login() {
    let (s, sshd) = setup();
    let first = push(&s, &sshd, "d1", &[]);
    assert!(
        first.contains(HANDSHAKE) && first.contains(": ok in "),
        "fresh memory: QUIC as before: {first}"
    );
    let text = memory_file(&s);
    assert!(text.contains("\nlast-run "), "{text}");
    // The loopback is a short link, where the bootstrap login stays: the memory is made to
    // say the link is 50 ms long, as a WAN's would.
    let long: String = text
        .lines()
        .map(|l| match l.split(' ').collect::<Vec<_>>().as_slice() {
            [name @ ("quic-handshake-us" | "session-rtt-us"), _, learned, expires] => {
                format!("{name} 50000 {learned} {expires}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    write(&s.join("cache/hosts"), long.as_bytes());
    // The same paths again (nothing changed): the last run moved little.
    let second = push(&s, &sshd, "d1", &[]);
    assert!(!second.contains(HANDSHAKE), "no handshake probe: {second}");
    assert!(
        !second.contains("--bootstrap=quic"),
        "no bootstrap login: {second}"
    );
    for want in [
        format!(
            "explain: remembered: the last run to {} of these paths moved ",
            key(&sshd)
        ),
        "explain: decision: ssh (not a short link (RTT 50 ms, remembered); the last run of \
         these paths moved "
            .into(),
        " of 3 files sent (".into(),
        "one SSH login carries it, no bootstrap, no QUIC handshake)".into(),
    ] {
        assert!(second.contains(&want), "{want:?} in {second}");
    }
    // Other paths: nothing remembered for them, QUIC as before.
    let other = push(&s, &sshd, "d2", &[]);
    assert!(
        other.contains(HANDSHAKE) && !other.contains("of these paths"),
        "{other}"
    );
}
