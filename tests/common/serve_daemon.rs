//! Issue 17, h3: a real `arsync serve` process on loopback ports with a TOML config (modules
//! `data`, `ro` read-only, `up`), its generated identity and tokens, and the client's
//! environment (its own known-servers file, the token): for `tests/serve.rs`, `tests/h2.rs`
//! and `tests/h3.rs`.

#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use super::*;

/// A running `arsync serve` and what a client needs to reach it.
pub struct Daemon {
    /// The daemon process.
    pub child: Child,
    /// Its UDP port (and TCP, the same number).
    pub port: u16,
    /// Its configuration file.
    pub config: PathBuf,
    /// stderr lines, collected in the background.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now for both UDP and TCP (the daemon listens on both).
pub fn free_port() -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `state/serve.toml` listening on `port` (UDP and TCP), with `extra` lines before the modules.
pub fn write_config(s: &Scratch, port: u16, extra: &str) -> PathBuf {
    let state = s.join("state");
    mkdir(&state);
    for m in ["data", "ro", "up"] {
        mkdir(&s.join(m));
    }
    let config = state.join("serve.toml");
    fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\nstate_dir = {state:?}\n{extra}\n\
             [module.data]\npath = {data:?}\n\n\
             [module.ro]\npath = {ro:?}\nread_only = true\n\n\
             [module.up]\npath = {up:?}\n",
            data = s.join("data"),
            ro = s.join("ro"),
            up = s.join("up"),
        ),
    )
    .unwrap();
    config
}

impl Daemon {
    pub fn start(s: &Scratch, extra: &str) -> Daemon {
        Daemon::start_on(s, free_port(), extra)
    }

    /// Issue 17, web ports: on `port` (443 in a test's own network namespace).
    pub fn start_on(s: &Scratch, port: u16, extra: &str) -> Daemon {
        let config = write_config(s, port, extra);
        if extra.contains("listen_tcp = []") {
            // Issue 16/17: no TCP listener, so its UDP one is the last to say it listens.
            return Daemon::start_until(config, port, |line| line.contains("(UDP"));
        }
        Daemon::start_with(config, port)
    }

    pub fn start_with(config: PathBuf, port: u16) -> Daemon {
        Daemon::start_until(config, port, |line| line.contains("(TCP"))
    }

    fn start_until(config: PathBuf, port: u16, ready: fn(&str) -> bool) -> Daemon {
        let mut child = super::arsync_command()
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (log, ready) = super::follow_serve_log_until(child.stderr.take().unwrap(), ready);
        assert!(
            ready,
            "arsync serve did not start: {:?}",
            log.lock().unwrap()
        );
        Daemon {
            child,
            port,
            config,
            log,
        }
    }

    pub fn url(&self, target: &str) -> String {
        format!("arsync://127.0.0.1:{}/{target}", self.port)
    }

    /// `arsync serve token add NAME ARGS…`: the secret.
    pub fn token(&self, name: &str, args: &[&str]) -> String {
        let out = output_ok(
            super::arsync_command()
                .args(["serve", "--config"])
                .arg(&self.config)
                .args(["token", "add", name])
                .args(args),
        );
        let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(
            secret.starts_with("arsync_") && secret.len() == 71,
            "{secret}"
        );
        secret
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The log once it holds `needle`, or after `within`: a thread reads the daemon's stderr,
    /// so the last lines of a daemon that just exited may not be in [`Daemon::log`] yet.
    pub fn log_with(&self, needle: &str, within: Duration) -> String {
        let until = std::time::Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) || std::time::Instant::now() >= until {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A daemon started with `extra`, a read-write token `ci` for it, and `data/f` holding
/// `contents`: what a test of one small sync needs.
pub fn serving_one_file(s: &Scratch, extra: &str, contents: &[u8]) -> (Daemon, String) {
    let d = Daemon::start(s, extra);
    let token = d.token("ci", &[]);
    write(&s.join("data/f"), contents);
    (d, token)
}

/// A client run refused with exit `code` and `expect` in its stderr, having written nothing to
/// `out` in the scratch directory.
pub fn assert_refused(s: &Scratch, run: &Run, code: i32, expect: &str, out: &str) {
    assert_eq!(run.code(), Some(code), "{expect}: {}", run.describe());
    assert!(
        run.stderr_str().contains(expect),
        "{expect}: {}",
        run.stderr_str()
    );
    assert!(!s.join(out).exists(), "{expect}: {out} was written");
}

/// The client's environment: its own known-servers file, and the token.
pub fn client(s: &Scratch, token: &str, args: &[&str]) -> Run {
    client_with(s, token, args, &[])
}

/// [`client`] with `env` besides.
pub fn client_with(s: &Scratch, token: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let config = s.join("client-config");
    let mut all = vec![
        ("XDG_CONFIG_HOME", config.to_str().unwrap()),
        ("ARSYNC_TOKEN", token),
    ];
    all.extend_from_slice(env);
    arsync_env(s.path(), args, &all)
}

/// The rich fixture pulled from `data/tree/` into `pulled` (with `--explain`), then pushed
/// from there into `up/pushed/`, by clients with `--transport=TRANSPORT`; both copies compared
/// with the source. The pull's stderr and the daemon's log.
pub fn rich_fixture_pulled_and_pushed(
    s: &Scratch,
    d: &Daemon,
    token: &str,
    transport: &str,
) -> (String, String) {
    let transport = format!("--transport={transport}");
    build_rich_fixture(&s.join("data/tree"));
    let want = snapshot(&s.join("data/tree"));
    assert_rich_fixture(&want);
    let pull = [
        "-aH",
        &transport,
        "--explain",
        &d.url("data/tree/"),
        "pulled",
    ];
    let run = client(s, token, &pull);
    run.assert_ok();
    assert_same_tree("pull", "pulled", &snapshot(&s.join("pulled")), "src", &want);
    let push = ["-aH", &transport, "pulled/", &d.url("up/pushed/")];
    client(s, token, &push).assert_ok();
    let pushed = snapshot(&s.join("up/pushed"));
    assert_same_tree("push", "pushed", &pushed, "src", &want);
    // The daemon ends each session after its client has gone: give that a moment, then
    // nothing of it may have panicked (h3-quinn once did, stopping a stream mid-read).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");
    (run.stderr_str(), log)
}
