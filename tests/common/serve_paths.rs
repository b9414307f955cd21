//! Issue 17, mptcp: a real `arsync serve` in the far namespace of the link emulator's two
//! paths (`Link::start_two_paths`, the far side announcing its second address to MPTCP
//! clients), and pushes to it from the near namespace, each with its duration and the bytes
//! each path carried near → far. For `tests/mptcp_paths.rs` and `benches/mptcp_paths.rs`.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::linkem::{Link, LinkProfile, Side, FAR_ADDR};

/// The daemon's port in the far namespace (fresh: nothing else listens there).
pub const PORT: u16 = 8730;

/// Two 50 Mbit/s, 10 ms paths (the two-path case).
pub const PATH_50M: LinkProfile = LinkProfile {
    name: "path 50 Mbit/s 10 ms",
    rate_bps: 50_000_000,
    rtt: Duration::from_millis(10),
    loss: 0.0,
};

/// The link, the daemon serving module `m` (a directory under `dir`), and a client's token.
pub struct ServeOverTwoPaths {
    /// The emulated link (dropped last).
    pub link: Link,
    daemon: Child,
    log: Arc<Mutex<Vec<String>>>,
    token: String,
    /// The module's directory.
    pub module: PathBuf,
    client_config: PathBuf,
}

/// One push: the client's output, how long it took, bytes each path carried near → far.
pub struct Push {
    /// The client's exit status and output.
    pub output: Output,
    /// From start to exit of the client.
    pub took: Duration,
    /// Bytes (IP packets) on path 1 and path 2, near → far.
    pub carried: [u64; 2],
}

impl ServeOverTwoPaths {
    /// Start both paths with `path`, announce the second, and `arsync serve` in the far
    /// namespace with its state and module under `dir`.
    pub fn start(path: LinkProfile, dir: &Path) -> ServeOverTwoPaths {
        let link = Link::start_two_paths(path, path).unwrap();
        link.announce_second_path().unwrap();
        let (state, module) = (dir.join("state"), dir.join("module"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&module).unwrap();
        let config = state.join("serve.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"0.0.0.0:{PORT}\"]\nstate_dir = {state:?}\n\n[module.m]\npath = {module:?}\n"
            ),
        )
        .unwrap();
        let out = super::arsync_command()
            .args(["serve", "--config"])
            .arg(&config)
            .args(["token", "add", "t"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        // Started from a thread inside the far namespace (its sockets live there).
        let mut daemon = link
            .run_in(Side::Far, move || {
                super::arsync_command()
                    .args(["serve", "--config"])
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .join()
            .unwrap();
        let (log, started) = super::follow_serve_log(daemon.stderr.take().unwrap());
        let serve = ServeOverTwoPaths {
            link,
            daemon,
            log,
            token,
            module,
            client_config: dir.join("client-config"),
        };
        assert!(started, "arsync serve did not start: {}", serve.log());
        serve
    }

    /// What the daemon said so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `arsync -a --transport=TRANSPORT --explain SRC/ arsync://FAR/m/` from the near
    /// namespace, in `cwd`.
    pub fn push(&self, transport: &str, cwd: &Path, src: &str) -> Push {
        let before = [
            self.link.path_wire_bytes(0).0,
            self.link.path_wire_bytes(1).0,
        ];
        let url = format!("arsync://{FAR_ADDR}:{PORT}/m/");
        let args = [
            "-a".to_owned(),
            format!("--transport={transport}"),
            "--explain".to_owned(),
            format!("{src}/"),
            url,
        ];
        let (cwd, config, token) = (
            cwd.to_path_buf(),
            self.client_config.clone(),
            self.token.clone(),
        );
        let t0 = Instant::now();
        let output = self
            .link
            .run_in(Side::Near, move || {
                super::arsync_command()
                    .args(args)
                    .current_dir(cwd)
                    .env("XDG_CONFIG_HOME", config)
                    .env("ARSYNC_TOKEN", token)
                    .output()
                    .unwrap()
            })
            .join()
            .unwrap();
        let took = t0.elapsed();
        let carried = [
            self.link.path_wire_bytes(0).0 - before[0],
            self.link.path_wire_bytes(1).0 - before[1],
        ];
        Push {
            output,
            took,
            carried,
        }
    }
}

impl Drop for ServeOverTwoPaths {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
