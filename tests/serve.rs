//! `arsync serve` as users run it: a real daemon process on a loopback UDP port with a TOML
//! config, its generated identity and token file, and real `arsync arsync://…` clients — each
//! with its own known-servers file (XDG_CONFIG_HOME in the test's scratch directory).
//!
//! Cases: pull and push of the rich fixture with a token; a bad, a missing, an expired, a
//! revoked and a module-scoped token refused; a read-only token and a read-only module refuse
//! writes; a changed server certificate refused; path escapes (`..`, absolute, a symlink
//! inside the module leading out) refused with nothing written outside; 30 clients at once (pulling and pushing);
//! SIGTERM mid-transfer leaves no partial file; mutual TLS with a CA instead of a token.
//! Issue 17, mptcp: the daemon's TCP listener (TLS over MPTCP, `--transport=mptcp`/`tls`):
//! the rich fixture both ways, refusals, a changed certificate, mutual TLS, SIGTERM, and the
//! fallback to plain TCP where the kernel refuses MPTCP.
//! Issue 17, h2: a changed certificate, SIGTERM and mutual TLS over `--transport=h2`.
//! Issue 19: a client whose daemon is stopped (SIGTERM) or killed (SIGKILL) mid-transfer ends
//! with exit 12 or 30, and the old file stays.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::serve_daemon::*;
use common::*;

#[test]
fn pull_and_push_with_a_token_and_the_certificate_pinned() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    let token = d.token("ci", &[]);
    build_rich_fixture(&s.join("data/tree"));
    let want = snapshot(&s.join("data/tree"));
    // Pull.
    let run = client(&s, &token, &["-aH", &d.url("data/tree/"), "pulled"]);
    run.assert_ok();
    assert!(
        run.stderr_str().contains("pinned the certificate"),
        "{}",
        run.stderr_str()
    );
    assert_same_tree("pull", "pulled", &snapshot(&s.join("pulled")), "src", &want);
    let pins = fs::read_to_string(s.join("client-config/arsync/known_servers")).unwrap();
    assert!(
        pins.contains(&format!("127.0.0.1:{} SHA256:", d.port)),
        "{pins}"
    );
    // Push into a new directory of another module; the second connection uses the pin.
    let run = client(&s, &token, &["-aH", "pulled/", &d.url("up/pushed/")]);
    run.assert_ok();
    assert!(!run.stderr_str().contains("pinned"), "{}", run.stderr_str());
    assert_same_tree(
        "push",
        "pushed",
        &snapshot(&s.join("up/pushed")),
        "src",
        &want,
    );
    assert!(d.log().contains("token ci: push to"), "{}", d.log());
}

#[test]
fn tokens_that_must_be_refused() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    write(&s.join("data/f"), b"secret data");
    let good = d.token("good", &[]);
    let short = d.token("short", &["--expires=1s"]);
    let other = d.token("other-module", &["--module=up"]);
    let gone = d.token("gone", &[]);
    let out = common::arsync_command()
        .args(["serve", "--config"])
        .arg(&d.config)
        .args(["token", "revoke", "gone"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(2100));
    let bad = format!("arsync_{}", "0".repeat(64));
    for (token, expect) in [
        (bad.as_str(), "not recognised"),
        ("", "token is required"),
        (short.as_str(), "expired"),
        (other.as_str(), "data"),
        (gone.as_str(), "not recognised"),
    ] {
        let run = client(&s, token, &["-a", &d.url("data/"), "out"]);
        assert_eq!(run.code(), Some(5), "{token}: {}", run.describe());
        assert!(
            run.stderr_str().contains(expect),
            "{token}: {}",
            run.stderr_str()
        );
        assert!(!s.join("out").exists());
    }
    client(&s, &good, &["-a", &d.url("data/"), "out"]).assert_ok();
    assert_eq!(fs::read(s.join("out/f")).unwrap(), b"secret data");
}

#[test]
fn read_only_tokens_and_modules_refuse_writes() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    let reader = d.token("reader", &["--read-only"]);
    let writer = d.token("writer", &[]);
    write(&s.join("src/f"), b"new");
    write(&s.join("data/keep"), b"old");
    let run = client(&s, &reader, &["-a", "src/", &d.url("data/")]);
    assert_eq!(run.code(), Some(5), "{}", run.describe());
    assert!(
        run.stderr_str().contains("read-only"),
        "{}",
        run.stderr_str()
    );
    let run = client(&s, &writer, &["-a", "src/", &d.url("ro/")]);
    assert_eq!(run.code(), Some(5), "{}", run.describe());
    assert!(
        run.stderr_str().contains("module \"ro\" is read-only"),
        "{}",
        run.stderr_str()
    );
    assert!(!s.join("data/f").exists() && !s.join("ro/f").exists());
    // Reading with the read-only token works.
    client(&s, &reader, &["-a", &d.url("data/"), "got"]).assert_ok();
    assert_eq!(fs::read(s.join("got/keep")).unwrap(), b"old");
}

#[test]
fn a_changed_server_certificate_is_refused() {
    changed_certificate(&[]);
}

// Issue 17, mptcp:
#[test]
fn a_changed_server_certificate_is_refused_over_mptcp() {
    changed_certificate(&["--transport=mptcp"]);
}

// Issue 17, h2:
#[test]
fn a_changed_server_certificate_is_refused_over_h2() {
    changed_certificate(&["--transport=h2"]);
}

/// A pinned server whose identity is replaced is refused loudly (client options `extra`).
fn changed_certificate(extra: &[&str]) {
    let s = Scratch::new();
    let mut d = Daemon::start(&s, "");
    let token = d.token("t", &[]);
    write(&s.join("data/f"), b"x");
    let url = d.url("data/");
    let with = |dest: &'static str| [&["-a"][..], extra, &[url.as_str(), dest]].concat();
    client(&s, &token, &with("one")).assert_ok();
    // The server gets a new identity (same address and port).
    let (config, port) = (d.config.clone(), d.port);
    let _ = d.child.kill();
    let _ = d.child.wait();
    fs::remove_file(s.join("state/identity.key")).unwrap();
    fs::remove_file(s.join("state/identity.crt")).unwrap();
    let d2 = Daemon::start_with(config, port);
    assert!(
        d2.log().contains("generated a new identity"),
        "{}",
        d2.log()
    );
    let run = client(&s, &token, &with("two"));
    assert_eq!(run.code(), Some(5), "{}", run.describe());
    assert!(
        run.stderr_str().contains("HAS CHANGED"),
        "{}",
        run.stderr_str()
    );
    assert!(
        run.stderr_str().contains("known_servers"),
        "{}",
        run.stderr_str()
    );
    assert!(!s.join("two").exists());
}

#[test]
fn paths_that_leave_the_module_are_refused() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    let token = d.token("t", &[]);
    let outside = s.join("outside");
    write(&outside.join("secret"), b"do not read");
    write(&s.join("src/evil"), b"do not write");
    symlink(outside.to_str().unwrap(), &s.join("up/out"));
    symlink("../../outside", &s.join("up/rel"));
    for target in [
        "up/../outside/",
        "up//etc/",
        "up/out/",
        "up/rel/",
        "up/out/deeper/",
    ] {
        // Reading through it…
        let run = client(&s, &token, &["-a", &d.url(target), "got"]);
        assert_ne!(run.code(), Some(0), "pull {target}: {}", run.describe());
        assert!(!s.join("got/secret").exists(), "pull {target}");
        // … and writing through it.
        let run = client(&s, &token, &["-a", "src/", &d.url(target)]);
        assert_ne!(run.code(), Some(0), "push {target}: {}", run.describe());
        let err = run.stderr_str();
        assert!(
            err.contains("outside the module") || err.contains("not allowed"),
            "push {target}: {err}"
        );
    }
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
    assert!(!Path::new("/etc/evil").exists());
    // A symlink that stays inside the module is fine to read through.
    write(&s.join("up/inside/f"), b"ok");
    symlink("inside", &s.join("up/alias"));
    client(&s, &token, &["-a", &d.url("up/alias/"), "aliased"]).assert_ok();
    assert_eq!(fs::read(s.join("aliased/f")).unwrap(), b"ok");
}

/// Issue 19: thirty clients at once, half pulling from the daemon and half pushing to it,
/// each with its own tree in the end, all correct.
#[test]
fn thirty_clients_at_once_pulling_and_pushing() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    let token = d.token("many", &[]);
    for i in 0..30 {
        write(
            &s.join(format!("data/d{}/f{i}", i % 3)),
            &pseudo_random(20_000 + i * 997, i as u64),
        );
    }
    stamp_tree(&s.join("data"), 3);
    let want = snapshot(&s.join("data"));
    let config = s.join("client-config");
    let running: Vec<_> = (0..30)
        .map(|i| {
            let args = if i % 2 == 0 {
                ["-a".to_owned(), d.url("data/"), format!("c{i:02}")]
            } else {
                [
                    "-a".to_owned(),
                    "data/".to_owned(),
                    d.url(&format!("up/c{i:02}/")),
                ]
            };
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn_env(
                Tool::Arsync,
                s.path(),
                &refs,
                &[
                    ("XDG_CONFIG_HOME", config.to_str().unwrap()),
                    ("ARSYNC_TOKEN", &token),
                ],
            )
        })
        .collect();
    for (i, r) in running.into_iter().enumerate() {
        r.wait(RUN_TIMEOUT).assert_ok();
        let got = if i % 2 == 0 {
            format!("c{i:02}")
        } else {
            format!("up/c{i:02}")
        };
        assert_same_tree("concurrent", &got, &snapshot(&s.join(&got)), "data", &want);
    }
    let log = d.log();
    assert_eq!(log.matches("pull from").count(), 15, "{log}");
    assert_eq!(log.matches("push to").count(), 15, "{log}");
}

#[test]
fn sigterm_mid_transfer_leaves_no_partial_file() {
    sigterm_mid_transfer(&[]);
}

// Issue 17, mptcp:
#[test]
fn sigterm_mid_transfer_over_mptcp_leaves_no_partial_file() {
    sigterm_mid_transfer(&["--transport=mptcp"]);
}

// Issue 17, h2:
#[test]
fn sigterm_mid_transfer_over_h2_leaves_no_partial_file() {
    sigterm_mid_transfer(&["--transport=h2"]);
}

// Issue 19, hostile peers: the daemon killed outright cannot say goodbye; over QUIC the client
// learns it from its `--timeout` (exit 30), over TLS from the closed connection (exit 12).
#[test]
fn sigkill_mid_transfer_leaves_the_old_file() {
    server_stopped_mid_transfer(&["--timeout=3"], libc::SIGKILL);
}

#[test]
fn sigkill_mid_transfer_over_tls_leaves_the_old_file() {
    server_stopped_mid_transfer(&["--transport=tls"], libc::SIGKILL);
}

/// SIGTERM while a client pushes (with `extra` options): the daemon stops at once, the old
/// file stays, no temporary is left.
fn sigterm_mid_transfer(extra: &[&str]) {
    server_stopped_mid_transfer(extra, libc::SIGTERM);
}

/// `signal` to the daemon while a client pushes (with `extra` options): the client ends with
/// exit 12 (the session broke) or 30 (it timed out), and the old file stays. After SIGTERM the
/// daemon has stopped cleanly and left no temporary; after SIGKILL its temporary may be left
/// (no process is left to remove it), under a dot-name of its own, never the file's.
fn server_stopped_mid_transfer(extra: &[&str], signal: libc::c_int) {
    let s = Scratch::new();
    let mut d = Daemon::start(&s, "");
    let token = d.token("t", &[]);
    write(&s.join("src/big.bin"), &pseudo_random(8 << 20, 4));
    write(&s.join("up/big.bin"), b"the old version");
    let config = s.join("client-config");
    let url = d.url("up/");
    let mut args = vec!["-a", "--bwlimit=2000", "src/", &url];
    args.extend(extra);
    let running = spawn_env(
        Tool::Arsync,
        s.path(),
        &args,
        &[
            ("XDG_CONFIG_HOME", config.to_str().unwrap()),
            ("ARSYNC_TOKEN", &token),
        ],
    );
    // Wait until the session is under way.
    for _ in 0..100 {
        if d.log().contains("push to") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on the daemon this test started.
    unsafe {
        libc::kill(d.child.id() as i32, signal);
    }
    let status = d.child.wait().unwrap();
    if signal == libc::SIGTERM {
        let log = d.log_with("stopping", Duration::from_secs(5));
        assert!(status.success(), "{status}: {log}");
        assert!(log.contains("stopping"), "{log}");
    }
    let run = running.wait(RUN_TIMEOUT);
    assert!(
        matches!(run.code(), Some(12 | 30)),
        "the client must end with 12 or 30\n{}",
        run.describe()
    );
    assert_eq!(fs::read(s.join("up/big.bin")).unwrap(), b"the old version");
    let others: Vec<String> = fs::read_dir(s.join("up"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "big.bin")
        .collect();
    if signal == libc::SIGTERM {
        assert!(others.is_empty(), "temporaries left: {others:?}");
    } else {
        assert!(
            others.iter().all(|n| n.starts_with(".big.bin.")),
            "left: {others:?}"
        );
    }
}

/// A CA, and a certificate it issued for `name` (PEM files in `dir`).
fn issue(dir: &Path, ca_name: &str, names: &[&str], leaf: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca_pem, crt, k) = (
        dir.join(format!("{ca_name}.pem")),
        dir.join(format!("{leaf}.crt")),
        dir.join(format!("{leaf}.key")),
    );
    fs::write(&ca_pem, ca.pem()).unwrap();
    fs::write(&crt, cert.pem()).unwrap();
    fs::write(&k, key.serialize_pem()).unwrap();
    chmod(&k, 0o600);
    (ca_pem, crt, k)
}

#[test]
fn mutual_tls_with_a_ca_instead_of_a_token() {
    mutual_tls(&[]);
}

// Issue 17, mptcp:
#[test]
fn mutual_tls_over_mptcp() {
    mutual_tls(&["--transport=mptcp"]);
}

// Issue 17, h2:
#[test]
fn mutual_tls_over_h2() {
    mutual_tls(&["--transport=h2"]);
}

/// Certified clients admitted without a token, others refused (client options `extra`).
fn mutual_tls(extra: &[&str]) {
    let s = Scratch::new();
    let pki = s.join("pki");
    mkdir(&pki);
    let (server_ca, server_crt, server_key) = issue(&pki, "server-ca", &["localhost"], "server");
    let (client_ca, client_crt, client_key) = issue(&pki, "client-ca", &[], "client");
    let (_, stranger_crt, stranger_key) = issue(&pki, "other-ca", &[], "stranger");
    let d = Daemon::start(
        &s,
        &format!("[tls]\ncert = {server_crt:?}\nkey = {server_key:?}\nclient_ca = {client_ca:?}\n"),
    );
    write(&s.join("data/f"), b"by certificate");
    let url = format!("arsync://localhost:{}/data/", d.port);
    let ca = format!("--tls-ca={}", server_ca.display());
    let tls = |crt: &Path, key: &Path, dest: &str| {
        let (crt, key) = (
            format!("--tls-cert={}", crt.display()),
            format!("--tls-key={}", key.display()),
        );
        let mut argv = vec!["-a", &ca, &crt, &key, &url, dest];
        argv.extend(extra);
        client(&s, "", &argv)
    };
    tls(&client_crt, &client_key, "ok").assert_ok();
    assert_eq!(fs::read(s.join("ok/f")).unwrap(), b"by certificate");
    let run = tls(&stranger_crt, &stranger_key, "no");
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    assert!(!s.join("no").exists());
    // Without a client certificate, and without a token: refused.
    let mut argv = vec!["-a", &ca, &url, "none"];
    argv.extend(extra);
    let run = client(&s, "", &argv);
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    assert!(!s.join("none").exists());
}

/// The client's environment with a per-host memory that lasts across its runs (`cache`).
fn remembering_env<'a>(
    config: &'a Path,
    token: &'a str,
    cache: &'a Path,
) -> [(&'static str, &'a str); 3] {
    [
        ("XDG_CONFIG_HOME", config.to_str().unwrap()),
        ("ARSYNC_TOKEN", token),
        ("ARSYNC_CACHE_DIR", cache.to_str().unwrap()),
    ]
}

// Issue 16, per-host memory:
/// A session served by `arsync serve` leaves its port (and the QUIC path's RTT) in the
/// per-host memory, under the host alone; the next run recalls it.
#[test]
fn a_served_session_is_remembered() {
    let s = Scratch::new();
    let (d, token) = serving_one_file(&s, "", b"remembered");
    let (config, cache) = (s.join("client-config"), s.join("cache"));
    let env = remembering_env(&config, &token, &cache);
    let url = d.url("data/");
    arsync_env(s.path(), &["-a", &url, "p1"], &env).assert_ok();
    let text = fs::read_to_string(cache.join("hosts")).unwrap();
    assert!(text.contains("\nhost 127.0.0.1\n"), "{text}");
    assert!(
        text.contains(&format!("\nserve-port {} ", d.port)),
        "{text}"
    );
    assert!(text.contains("\nsession-rtt-us "), "{text}");
    let run = arsync_env(s.path(), &["-a", "--explain", &url, "p2"], &env);
    run.assert_ok();
    let err = run.stderr_str();
    let want = format!(
        "explain: remembered: arsync serve on 127.0.0.1: UDP port {}",
        d.port
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(fs::read(s.join("p2/f")).unwrap(), b"remembered");
}

// Issue 17, mptcp:
/// `--transport=mptcp` to `arsync serve`'s TCP port (the number of its UDP one): the rich
/// fixture pulled and pushed, the certificate pinned as over QUIC, the connection really
/// MPTCP at both ends (this kernel has `net.mptcp.enabled=1`), and `--explain` says so.
#[test]
fn mptcp_pulls_and_pushes_the_rich_fixture() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    assert!(d.log().contains("(TCP, MPTCP)"), "{}", d.log());
    let token = d.token("ci", &[]);
    // Issue 17, h3: the pull and the push shared with tests/h3.rs.
    let (err, log) = rich_fixture_pulled_and_pushed(&s, &d, &token, "mptcp");
    assert!(err.contains("pinned the certificate"), "{err}");
    assert!(
        err.contains("mptcp to arsync://127.0.0.1") && err.contains("TLS over MPTCP, "),
        "{err}"
    );
    assert!(
        err.contains("mptcp: the session used up to 1 subflow at once"),
        "{err}"
    );
    assert!(
        ["pull from", "push to"].iter().all(|what| log
            .lines()
            .any(|l| l.contains(what) && l.contains("(over TLS over MPTCP, 1 subflow)"))),
        "{log}"
    );
    // Plain `tls` reaches the same listener over TCP, and says so.
    let run = client(
        &s,
        &token,
        &[
            "-a",
            "--transport=tls",
            "--explain",
            &d.url("data/tree/"),
            "again",
        ],
    );
    run.assert_ok();
    assert!(
        run.stderr_str().contains("TLS over plain TCP"),
        "{}",
        run.stderr_str()
    );
    assert!(d.log().contains("(over TLS over plain TCP)"), "{}", d.log());
}

/// Over TCP the daemon decides as over QUIC: bad and missing tokens, a read-only token and
/// a read-only module are refused with exit code 5 and nothing written; a `HOST:PATH`
/// target cannot use `mptcp`.
#[test]
fn tcp_refuses_as_quic_does() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    let reader = d.token("reader", &["--read-only"]);
    let writer = d.token("writer", &[]);
    write(&s.join("src/f"), b"new");
    write(&s.join("data/keep"), b"old");
    let bad = format!("arsync_{}", "0".repeat(64));
    for transport in ["--transport=mptcp", "--transport=tls"] {
        for (token, args, expect) in [
            (
                bad.as_str(),
                ["-a", &d.url("data/"), "out"],
                "not recognised",
            ),
            ("", ["-a", &d.url("data/"), "out"], "token is required"),
            (
                reader.as_str(),
                ["-a", "src/", &d.url("data/")],
                "read-only",
            ),
            (
                writer.as_str(),
                ["-a", "src/", &d.url("ro/")],
                "module \"ro\" is read-only",
            ),
        ] {
            let mut argv = vec![transport];
            argv.extend(args);
            let run = client(&s, token, &argv);
            assert_eq!(run.code(), Some(5), "{argv:?}: {}", run.describe());
            assert!(
                run.stderr_str().contains(expect),
                "{argv:?}: {}",
                run.stderr_str()
            );
        }
    }
    assert!(!s.join("out").exists() && !s.join("data/f").exists() && !s.join("ro/f").exists());
    assert!(
        d.log()
            .contains("refused: module \"ro\" is read-only (over TLS over MPTCP"),
        "{}",
        d.log()
    );
    let run = client(
        &s,
        &writer,
        &["-a", "--transport=mptcp", "src/", "somehost:dest/"],
    );
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.stderr_str().contains("arsync://HOST"),
        "{}",
        run.stderr_str()
    );
}

// Issue 17, mptcp:
/// Where the kernel refuses MPTCP sockets (`net.mptcp.enabled=0` in a network namespace of
/// this test's own), the daemon listens on plain TCP and says why, and `--transport=mptcp`
/// falls back to TLS over plain TCP, says why in `--explain`, and syncs.
#[test]
fn mptcp_falls_back_to_tcp_where_the_kernel_refuses_it() {
    common::netns::enter_netns(&["ip link set lo up"]);
    // Per namespace; written from this thread, which is in the new one.
    fs::write("/proc/sys/net/mptcp/enabled", "0").unwrap();
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    assert!(
        d.log()
            .contains("(TCP; not MPTCP: the kernel refused an MPTCP socket"),
        "{}",
        d.log()
    );
    let token = d.token("t", &[]);
    write(&s.join("data/f"), b"over plain TCP");
    let run = client(
        &s,
        &token,
        &[
            "-a",
            "--transport=mptcp",
            "--explain",
            &d.url("data/"),
            "got",
        ],
    );
    run.assert_ok();
    assert!(
        run.stderr_str()
            .contains("TLS over plain TCP: the kernel refused an MPTCP socket"),
        "{}",
        run.stderr_str()
    );
    assert_eq!(fs::read(s.join("got/f")).unwrap(), b"over plain TCP");
}

// Issue 16/17: `arsync://` under `auto` goes to the TCP port first.
/// In a network namespace whose loopback drops every UDP packet, `--transport=auto` to
/// `arsync serve` goes by TLS to its TCP port at once (no QUIC handshake, no wait) and syncs.
#[test]
fn auto_reaches_serve_over_tcp_first() {
    common::netns::enter_without_udp();
    let s = Scratch::new();
    let (d, token) = serving_one_file(&s, "", b"over TCP");
    let (config, cache) = (s.join("client-config"), s.join("cache"));
    let env = remembering_env(&config, &token, &cache);
    let url = d.url("data/");
    let first = arsync_env(s.path(), &["-a", "--explain", &url, "p1"], &env);
    first.assert_ok();
    let err = first.stderr_str();
    for want in [
        "explain: local MPTCP: no MPTCP endpoint with the subflow or fullmesh flag",
        "explain: decision: tls to arsync serve (TCP first: in the bench one TLS connection was \
         about as fast as QUIC or faster, for less CPU; not MPTCP: no MPTCP endpoint with the \
         subflow or fullmesh flag, so no second path)",
        "explain: decision: 1 stream (tls carries one stream)",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!err.contains("QUIC handshake"), "{err}");
    assert_eq!(fs::read(s.join("p1/f")).unwrap(), b"over TCP");
}

/// A daemon that listens on UDP only (`listen_tcp = []`): the TCP port refuses, and `auto`
/// goes on to QUIC on the UDP port, saying why.
#[test]
fn auto_reaches_serve_over_quic_where_its_tcp_port_is_closed() {
    let s = Scratch::new();
    let (d, token) = serving_one_file(&s, "listen_tcp = []", b"over QUIC");
    let (config, cache) = (s.join("client-config"), s.join("cache"));
    let env = remembering_env(&config, &token, &cache);
    let run = arsync_env(s.path(), &["-a", "--explain", &d.url("data/"), "q"], &env);
    run.assert_ok();
    let err = run.stderr_str();
    for want in [
        "explain: TLS to arsync serve's TCP port: ",
        "explain: QUIC handshake to 127.0.0.1:",
        "explain: decision: quic to arsync serve (its TCP port could not be reached (",
        "; UDP gets through)",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert_eq!(fs::read(s.join("q/f")).unwrap(), b"over QUIC");
}
