//! A login through a `ProxyCommand` that fails — the server refuses the key, the proxy command
//! exits at once, the proxy never connects — ends the run promptly with exit 255 (as `ssh`'s
//! failures do, and rsync's with them), with the built-in client (`--ssh=native`, alone and
//! as the ssh-pool's logins) and with the system `ssh`.
//!
//! Real parts: an OpenSSH `sshd` on a loopback port, a relay made of bash's `/dev/tcp` and two
//! `cat`s (one of them in the background, as `tsh proxy ssh`-style relays leave), arsync's
//! stderr read to its end as a script or a harness reads it. Each run must end within
//! [`LIVENESS`] — a bound on hanging (the runs take well under a second, except the
//! `ConnectTimeout=2` case), not a speed assertion.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::sshd::Sshd;
use common::*;

/// How long one run may take before the test calls it hung (the reported hang lasted until
/// sshd's `LoginGraceTime`, 120 s, or forever once logged in).
const LIVENESS: Duration = Duration::from_secs(20);

/// A relay to the sshd's port that leaves a background `cat` holding the connection.
const RELAY: &str = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/%p; cat <&3 & exec cat >&3'";

struct Fixture {
    s: Scratch,
    sshd: Sshd,
}

impl Fixture {
    fn new() -> Fixture {
        let s = Scratch::new();
        let dir = s.join("sshd");
        mkdir(&dir);
        let sshd = Sshd::start(&dir);
        write(&s.join("src/f"), &pseudo_random(3000, 1));
        // Reached only through the proxy command: the name resolves nowhere.
        fs::write(
            s.join("known_hosts"),
            format!("[viaproxy.invalid]:{} {}\n", sshd.port, sshd.host_pub()),
        )
        .unwrap();
        Fixture { s, sshd }
    }

    /// `ssh` options logging in with `key` through `proxy`.
    fn rsh(&self, key: &Path, proxy: &str, extra: &str) -> String {
        format!(
            "ssh -p {} -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -o \"ProxyCommand={proxy}\" {extra}",
            self.sshd.port,
            key.display(),
            self.s.join("known_hosts").display(),
        )
    }

    /// A key the sshd does not know.
    fn refused_key(&self) -> std::path::PathBuf {
        let path = self.s.join("refused_key");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        path
    }

    /// Push `src/` to the sshd with `client` (`--ssh=native` or `--ssh=system`) and `rsh`,
    /// reading stdout and stderr to their ends; fails the test if that takes longer than
    /// [`LIVENESS`].
    fn push(&self, client: &str, rsh: &str) -> Run {
        self.push_with(&[client], rsh)
    }

    /// [`Fixture::push`] with more options (`client` first).
    fn push_with(&self, options: &[&str], rsh: &str) -> Run {
        let client = options.join(" ");
        let mut args: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        // rsync's protocol talks to the real rsync there; ours to this arsync.
        if options.contains(&"--protocol=rsync") {
            args.push("--rsync-path=rsync".to_owned());
        } else {
            args.push(format!("--rsync-path={}", env!("CARGO_BIN_EXE_arsync")));
        }
        args.extend([
            format!("--rsh={rsh}"),
            "-a".to_owned(),
            format!("{}/", self.s.join("src").display()),
            format!("viaproxy.invalid:{}/", self.s.join("dest").display()),
        ]);
        let cwd = self.s.path().to_path_buf();
        let (tx, rx) = mpsc::channel();
        // The whole of it, reading the output to its end included, in a thread: what hung
        // was a process left holding arsync's stderr after arsync had exited.
        std::thread::spawn(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = tx.send(spawn(Tool::Arsync, &cwd, &refs).wait(LIVENESS));
        });
        rx.recv_timeout(LIVENESS + Duration::from_secs(5))
            .unwrap_or_else(|_| {
                panic!(
                    "`arsync {client} --rsh={rsh}` did not end (its output did not) within \
                     {LIVENESS:?}; processes now:\n{}",
                    processes(&["arsync", "ssh", "sleep"])
                )
            })
    }
}

fn assert_login_failed(r: &Run, wanted: &str) {
    assert_eq!(r.code(), Some(255), "{}", r.describe());
    let err = r.stderr_str();
    assert!(err.contains(wanted), "wanted {wanted:?}: {}", r.describe());
}

fn a_refused_key_through_a_relay_ends_the_run(client: &str) {
    let f = Fixture::new();
    let rsh = f.rsh(&f.refused_key(), RELAY, "");
    let r = f.push(client, &rsh);
    assert_login_failed(&r, "Permission denied");
}

#[test]
fn a_refused_key_through_a_relay_ends_the_run_native() {
    a_refused_key_through_a_relay_ends_the_run("--ssh=native");
}

#[test]
fn a_refused_key_through_a_relay_ends_the_run_system() {
    a_refused_key_through_a_relay_ends_the_run("--ssh=system");
}

/// The ssh-pool on native logins: the first lane's refused login ends the run.
#[test]
fn a_refused_key_through_a_relay_ends_the_pool_run_native() {
    let f = Fixture::new();
    let rsh = f.rsh(&f.refused_key(), RELAY, "");
    let r = f.push_with(&["--ssh=native", "--transport=ssh-pool"], &rsh);
    assert_login_failed(&r, "Permission denied");
}

/// rsync's protocol over the system `ssh`: ssh's exit 255 is the run's exit status, as
/// rsync's (not 12, a broken protocol stream).
#[test]
fn a_refused_key_ends_rsyncs_protocol_with_255() {
    let f = Fixture::new();
    let rsh = f.rsh(&f.refused_key(), RELAY, "");
    let r = f.push_with(&["--ssh=system", "--protocol=rsync"], &rsh);
    assert_login_failed(&r, "Permission denied");
}

fn a_proxy_command_that_exits_ends_the_run(client: &str) {
    let f = Fixture::new();
    let rsh = f.rsh(&f.sshd.client_key(), "false", "");
    let r = f.push(client, &rsh);
    assert_eq!(r.code(), Some(255), "{}", r.describe());
}

#[test]
fn a_proxy_command_that_exits_ends_the_run_native() {
    a_proxy_command_that_exits_ends_the_run("--ssh=native");
}

#[test]
fn a_proxy_command_that_exits_ends_the_run_system() {
    a_proxy_command_that_exits_ends_the_run("--ssh=system");
}

/// A proxy that never connects: `ConnectTimeout` ends the wait, and the proxy command is
/// stopped (its pid, written to a file, is gone).
fn a_proxy_that_never_connects_times_out(client: &str) {
    let f = Fixture::new();
    let pidfile = f.s.join("proxy.pid");
    let proxy = format!("sh -c 'echo $$ > {}; exec sleep 1000'", pidfile.display());
    let rsh = f.rsh(&f.sshd.client_key(), &proxy, "-o ConnectTimeout=2");
    let r = f.push(client, &rsh);
    assert_eq!(r.code(), Some(255), "{}", r.describe());
    assert!(r.stderr_str().contains("timed out"), "{}", r.describe());
    let pid = fs::read_to_string(&pidfile).unwrap();
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    // Gone, or a zombie nobody has reaped yet (an orphan's reaper in a container may be slow
    // or absent): either way it runs no more. Bounded at 5 s on a loaded runner.
    let running = || {
        fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    };
    for _ in 0..250 {
        if !running() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "the proxy command (pid {}) is still running; processes now:\n{}\n{}",
        pid.trim(),
        processes(&["arsync", "ssh", "sleep"]),
        r.describe()
    );
}

/// The processes whose command line holds one of `words`: pid, state, parent, group and
/// command line, to say who was left running when a test above fails.
fn processes(words: &[&str]) -> String {
    let mut out = String::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(cmdline) = fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !words.iter().any(|w| cmdline.contains(w)) {
            continue;
        }
        let stat = fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp …
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().take(3).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {fields:?} {cmdline}\n",
            entry.file_name().to_string_lossy()
        ));
    }
    out
}

#[test]
fn a_proxy_that_never_connects_times_out_native() {
    a_proxy_that_never_connects_times_out("--ssh=native");
}

#[test]
fn a_proxy_that_never_connects_times_out_system() {
    a_proxy_that_never_connects_times_out("--ssh=system");
}
