//! Issue 17, h3: `--transport=h3` to a real `arsync serve` process on a loopback UDP port (the
//! same port as its raw QUIC, told apart by ALPN), as users run it: the rich fixture pulled
//! and pushed and compared, a wrong token refused with rsync's exit code 5 and nothing
//! written, `--explain` and the daemon's log saying HTTP/3 carried the session. Issue 17, web
//! ports: `--transport=auto` to a web port whose TCP side is closed goes on to HTTP/3. The transport
//! itself (streams, half-close, drain on close) is checked by the conformance suite's `h3`
//! backend in `tests/conformance.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use common::serve_daemon::*;
use common::*;

/// `arsync --transport=h3 ARGS…` with its own known-servers file and `token`.
fn h3_client(s: &Scratch, token: &str, args: &[&str]) -> Run {
    let mut all = vec!["--transport=h3"];
    all.extend(args);
    client(s, token, &all)
}

#[test]
fn h3_pulls_and_pushes_the_rich_fixture() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    assert!(d.log().contains("(UDP: QUIC and HTTP/3)"), "{}", d.log());
    let token = d.token("ci", &[]);
    let (err, log) = rich_fixture_pulled_and_pushed(&s, &d, &token, "h3");
    assert!(err.contains("pinned the certificate"), "{err}");
    assert!(
        err.contains("h3: HTTP/3 to arsync://127.0.0.1") && err.contains("request stream per lane"),
        "{err}"
    );
    assert!(
        log.contains("token ci: pull from") && log.contains("(over HTTP/3)"),
        "{log}"
    );
    assert!(log.contains("token ci: push to"), "{log}");
}

#[test]
fn h3_refuses_a_wrong_token_and_writes_nothing() {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    let _good = d.token("good", &[]);
    write(&s.join("data/f"), b"secret data");
    let bad = format!("arsync_{}", "0".repeat(64));
    let run = h3_client(&s, &bad, &["-a", &d.url("data/"), "out"]);
    assert_eq!(run.code(), Some(5), "{}", run.describe());
    assert!(
        run.stderr_str().contains("not recognised"),
        "{}",
        run.stderr_str()
    );
    assert!(!s.join("out").exists());
    write(&s.join("src/g"), b"never sent");
    let run = h3_client(&s, &bad, &["-a", "src/", &d.url("up/")]);
    assert_eq!(run.code(), Some(5), "{}", run.describe());
    assert!(!s.join("up/g").exists());
    assert!(
        d.log().contains("refused: ") && d.log().contains("(over HTTP/3)"),
        "{}",
        d.log()
    );
}

// Issue 17, web ports:
/// A web port (named by `ARSYNC_WEB_PORTS`: a test cannot count on 443) whose TCP side
/// cannot be reached (the daemon listens on UDP only, `listen_tcp = []`): `--transport=auto`
/// tries HTTP/2 on TCP, then HTTP/3 on the UDP port — not arsync's raw QUIC, which an HTTP
/// front would not forward — says why, and syncs.
#[test]
fn auto_goes_to_http3_where_a_web_ports_tcp_side_is_closed() {
    let s = Scratch::new();
    let (d, token) = serving_one_file(&s, "listen_tcp = []", b"over HTTP/3");
    let port = d.port.to_string();
    let env = [
        ("ARSYNC_WEB_PORTS", port.as_str()),
        ("HTTPS_PROXY", ""),
        ("https_proxy", ""),
    ];
    let run = client_with(
        &s,
        &token,
        &["-a", "--explain", &d.url("data/"), "got"],
        &env,
    );
    run.assert_ok();
    let err = run.stderr_str();
    for want in [
        "explain: H2 to arsync serve's TCP port: ",
        &format!(
            "explain: decision: h3 to arsync serve (port {port} is a web port (named in \
             ARSYNC_WEB_PORTS) and its TCP side could not be reached ("
        ),
        "): HTTP/3 on its UDP port)",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!err.contains("QUIC handshake"), "{err}");
    assert_eq!(std::fs::read(s.join("got/f")).unwrap(), b"over HTTP/3");
    assert!(d.log().contains("(over HTTP/3)"), "{}", d.log());
}
