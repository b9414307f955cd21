//! Issue 19, OIDC: `arsync serve` with an `[oidc]` section and `arsync login`, against a real
//! OpenID Provider started by the test: the npm `oidc-provider` (pinned in
//! `tests/oidc/package.json`, installed once into the target directory) running
//! `tests/oidc/provider.mjs` on a loopback port, in memory, with the device flow, refresh
//! tokens and JWT access tokens. The user's part of the device flow is played on the
//! provider's own verification pages by `tests/oidc/browser.mjs`.
//!
//! Cases: a device login, then pulls (QUIC, h2, h3) and a push with the stored token; a login
//! whose access token lives two seconds: the stale token refused as expired, the next run
//! refreshes it silently and syncs; tokens for another audience, with a tampered signature or
//! for a module they do not name refused; a key rotation (the provider restarts with a new
//! key: the daemon fetches the key set again for the unknown `kid`, accepts the new token and
//! refuses the old one).
//!
//! Needs node and npm (scripts/test installs them); fails loudly without them.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::serve_daemon::*;
use common::*;

/// The provider's directory with its node_modules, installed on first use.
fn provider_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let version = |tool: &str| match Command::new(tool).arg("--version").output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            _ => panic!(
                "{tool} is missing: the OIDC tests run a real provider on node (apt-get install nodejs npm)"
            ),
        };
        version("npm");
        // oidc-provider 9 and its jose want node 20 or later (Debian 12's own nodejs is 18).
        let node = version("node");
        let major: u32 = node
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert!(
            major >= 20,
            "node {}: the OIDC tests need node 20 or later (oidc-provider 9)",
            node.trim()
        );
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oidc-provider");
        mkdir(&dir);
        for f in ["package.json", "package-lock.json", "provider.mjs", "browser.mjs"] {
            fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let want = fs::read_to_string(src.join("package-lock.json")).unwrap();
        let stamp = dir.join("node_modules/.arsync-installed");
        if fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
            output_ok(
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(&dir),
            );
            fs::write(&stamp, want).unwrap();
        }
        dir
    })
}

/// A running provider (`node provider.mjs`) on `port`, signing with key `kid`.
struct Provider {
    child: Child,
    port: u16,
}

impl Provider {
    fn start(port: u16, kid: &str) -> Provider {
        let dir = provider_dir();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir)
            .env("PORT", port.to_string())
            .env("KID", kid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines
            .next()
            .and_then(Result::ok)
            .is_some_and(|l| l.starts_with("listening"));
        if !ready {
            let _ = child.kill();
            panic!("the OIDC provider did not start on port {port}");
        }
        // Keep reading what it prints (a closed pipe would end it at its next line).
        std::thread::spawn(move || lines.for_each(drop));
        Provider { child, port }
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client-credentials access token of `client` for `resource` (its audience).
    fn service_token(&self, client: &str, resource: &str) -> String {
        let mut http = arsync_auth::http::Client::new(None);
        let form = arsync_auth::http::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", "test-secret"),
            ("scope", "arsync:write"),
            ("resource", resource),
        ]);
        let r = http
            .post_form(&format!("{}/token", self.issuer()), &form)
            .unwrap();
        let body = String::from_utf8(r.body).unwrap();
        assert_eq!(r.status, 200, "{body}");
        json_string(&body, "access_token")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The string value of `key` in a flat JSON object (tokens hold no escapes).
fn json_string(json: &str, key: &str) -> String {
    let start = json
        .find(&format!("\"{key}\":\""))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 4;
    json[start..].split('"').next().unwrap().to_owned()
}

/// A free loopback TCP port.
fn tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `arsync serve` trusting `issuer` for audience `urn:arsync` (no leeway, key set fetched
/// again for any unknown kid).
fn daemon(s: &Scratch, issuer: &str) -> Daemon {
    Daemon::start(
        s,
        &format!(
            "[oidc]\nissuer = \"{issuer}\"\naudience = \"urn:arsync\"\nleeway = 0\njwks_refetch_interval = 0\n"
        ),
    )
}

/// A provider (key `k1`) and a daemon trusting it, with `data/f` to pull.
fn provider_and_daemon(s: &Scratch) -> (Provider, Daemon) {
    let p = Provider::start(tcp_port(), "k1");
    let d = daemon(s, &p.issuer());
    write(&s.join("data/f"), b"x");
    (p, d)
}

/// `arsync login ISSUER --client-id CLIENT` with the user's part done by browser.mjs: the
/// stored login file.
fn login(s: &Scratch, issuer: &str, client_id: &str) -> PathBuf {
    let config = s.join("client-config");
    let mut child = arsync_command()
        .args(["login", issuer, "--client-id", client_id])
        .env("XDG_CONFIG_HOME", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with(&format!(
            "To sign in, open {issuer}/device and enter the code "
        )),
        "{first}"
    );
    let second = lines.next().unwrap().unwrap();
    let url = second
        .strip_prefix("(or open ")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{second}"));
    let user_code = first.rsplit(' ').next().unwrap();
    assert!(url.ends_with(&format!("user_code={user_code}")), "{url}");
    output_ok(
        Command::new("node")
            .arg("browser.mjs")
            .arg(url)
            .current_dir(provider_dir()),
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "arsync login: {err}");
    assert!(err.contains("(refreshed when needed)"), "{err}");
    let files: Vec<_> = fs::read_dir(config.join("arsync/oidc"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    files[0].clone()
}

/// Whether the daemon's log gets a line containing `needle` within two seconds (it is read in
/// the background).
fn logged(d: &Daemon, needle: &str) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        if d.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The access token in a login file.
fn stored_token(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("access_token = \""))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap()
        .to_owned()
}

#[test]
fn device_login_then_pulls_and_a_push_with_the_stored_token() {
    let t = Instant::now();
    let s = Scratch::new();
    let (p, d) = provider_and_daemon(&s);
    write(&s.join("mine/g"), b"from the client");
    let file = login(&s, &p.issuer(), "arsync");
    let token = stored_token(&file);
    for transport in ["quic", "h2", "h3"] {
        let dest = format!("pulled-{transport}");
        let tr = format!("--transport={transport}");
        let run = client(
            &s,
            "",
            &["-a", &tr, "--oidc", &p.issuer(), &d.url("data/"), &dest],
        );
        run.assert_ok();
        assert_eq!(fs::read(s.join(dest).join("f")).unwrap(), b"x");
    }
    client(
        &s,
        "",
        &["-a", "--oidc", &p.issuer(), "mine/", &d.url("up/")],
    )
    .assert_ok();
    assert_eq!(fs::read(s.join("up/g")).unwrap(), b"from the client");
    assert!(logged(&d, "OIDC subject alice: push to"), "{}", d.log());
    // A long-lived token is used as it is (not refreshed).
    assert_eq!(stored_token(&file), token);
    // Without --oidc and without a token, nothing is sent: refused.
    let run = client(&s, "", &["-a", &d.url("data/"), "nothing"]);
    assert_refused(&s, &run, 5, "a token is required", "nothing");
    eprintln!("device login case: {:?}", t.elapsed());
}

#[test]
fn an_expired_access_token_is_refused_and_the_next_run_refreshes_it() {
    let t = Instant::now();
    let s = Scratch::new();
    let (p, d) = provider_and_daemon(&s);
    // arsync-short's access tokens live 2 s.
    let file = login(&s, &p.issuer(), "arsync-short");
    let stale = stored_token(&file);
    std::thread::sleep(Duration::from_millis(3100));
    let run = client(&s, &stale, &["-a", &d.url("data/"), "out"]);
    assert_refused(&s, &run, 5, "expired at", "out");
    client(
        &s,
        "",
        &["-a", "--oidc", &p.issuer(), &d.url("data/"), "out"],
    )
    .assert_ok();
    assert_eq!(fs::read(s.join("out/f")).unwrap(), b"x");
    let fresh = stored_token(&file);
    assert_ne!(fresh, stale, "the login was refreshed and stored");
    assert!(logged(&d, "OIDC subject alice: pull from"), "{}", d.log());
    eprintln!("refresh case: {:?}", t.elapsed());
}

#[test]
fn tokens_for_another_audience_tampered_or_for_another_module_are_refused() {
    let s = Scratch::new();
    let (p, d) = provider_and_daemon(&s);
    write(&s.join("ro/f"), b"x");
    let good = p.service_token("arsync-test", "urn:arsync");
    let other = p.service_token("arsync-test", "urn:other");
    // One character of the signature changed (not the last: its low bits may be padding).
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (token, target, expect) in [
        (other.as_str(), "data/", "not for audience \"urn:arsync\""),
        (tampered.as_str(), "data/", "bad signature"),
        (good.as_str(), "ro/", "not valid for module \"ro\""),
    ] {
        let run = client(&s, token, &["-a", &d.url(target), "out"]);
        assert_refused(&s, &run, 5, expect, "out");
    }
    client(&s, &good, &["-a", &d.url("data/"), "out"]).assert_ok();
    assert!(logged(&d, "OIDC subject arsync-test"), "{}", d.log());
}

#[test]
fn a_key_rotation_is_followed_and_the_old_key_stops_working() {
    let s = Scratch::new();
    let (p, d) = provider_and_daemon(&s);
    let port = p.port;
    let old = p.service_token("arsync-test", "urn:arsync");
    client(&s, &old, &["-a", &d.url("data/"), "one"]).assert_ok();
    // The provider restarts with a new key (k1 is no longer published).
    drop(p);
    let p = Provider::start(port, "k2");
    let new = p.service_token("arsync-test", "urn:arsync");
    client(&s, &new, &["-a", &d.url("data/"), "two"]).assert_ok();
    let run = client(&s, &old, &["-a", &d.url("data/"), "three"]);
    let expect = "a key the issuer does not publish (kid \"k1\")";
    assert_refused(&s, &run, 5, expect, "three");
}
