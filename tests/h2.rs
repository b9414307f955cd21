//! Issue 17, h2: `--transport=h2` as users run it — a real `arsync serve` (its TCP port takes
//! ALPN `h2` beside the raw TLS one), real `arsync arsync://…` clients, each with its own
//! known-servers file, and the real intermediaries of networks that allow only HTTPS:
//!
//! - the rich fixture pulled and pushed over HTTP/2 straight to the daemon;
//! - the same behind Debian's nginx (started by the test) terminating TLS and forwarding
//!   each lane with `grpc_pass` to the daemon — one upstream connection per stream, so the
//!   lanes find their session by its identifier;
//! - the same through Debian's tinyproxy (started by the test) as the HTTPS proxy
//!   (`HTTPS_PROXY`, and `--proxy` overriding it);
//! - a proxy that refuses (403 for the port, 407 for credentials) or that does not answer:
//!   a clear error, exit code 5, no hang, nothing written.
//!
//! - Issue 17, web ports: `--transport=auto` to port 443 (in the test's own network
//!   namespace) speaks HTTP/2, saying why.
//!
//! nginx and tinyproxy must be installed (`scripts/test` installs them); a test whose proxy
//! is missing fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve_daemon;
use common::*;

/// A TCP port free right now.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where Debian installs `program` (`/usr/sbin` may not be on a test's PATH).
fn installed(program: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// A child process killed (and reaped) when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `arsync serve` (`common::serve_daemon`) and a read-write token for it.
struct Daemon {
    served: serve_daemon::Daemon,
    port: u16,
    token: String,
}

impl Daemon {
    fn start(s: &Scratch) -> Daemon {
        let served = serve_daemon::Daemon::start(s, "");
        let token = served.token("ci", &[]);
        Daemon {
            port: served.port,
            token,
            served,
        }
    }

    fn log(&self) -> String {
        self.served.log()
    }
}

/// `arsync ARGS` with its own known-servers file, the daemon's token and `env`.
fn client(s: &Scratch, d: &Daemon, args: &[&str], env: &[(&str, &str)]) -> Run {
    let config = s.join("client-config");
    // No proxy from the test's own environment unless the case sets one (empty means none).
    let mut all = vec![
        ("XDG_CONFIG_HOME", config.to_str().unwrap()),
        ("ARSYNC_TOKEN", d.token.as_str()),
        ("HTTPS_PROXY", ""),
        ("https_proxy", ""),
    ];
    all.extend_from_slice(env);
    arsync_env(s.path(), args, &all)
}

/// Pull the rich fixture from `data/tree/` through `port` into `pulled`, push it back into
/// `up/pushed/`, and compare both trees with the original.
fn pull_and_push(s: &Scratch, d: &Daemon, port: u16, extra: &[&str], env: &[(&str, &str)]) {
    build_rich_fixture(&s.join("data/tree"));
    let want = snapshot(&s.join("data/tree"));
    let url = |t: &str| format!("arsync://127.0.0.1:{port}/{t}");
    let mut args = vec!["-aH", "--transport=h2", "--explain"];
    args.extend_from_slice(extra);
    let (from, to) = (url("data/tree/"), url("up/pushed/"));
    let pull = [&args[..], &[from.as_str(), "pulled"]].concat();
    let run = client(s, d, &pull, env);
    run.assert_ok();
    let err = run.stderr_str();
    assert!(err.contains("pinned the certificate"), "{err}");
    assert!(
        err.contains(&format!(
            "h2 to arsync://127.0.0.1:{port}/data/tree/: HTTP/2 over TLS"
        )),
        "{err}"
    );
    assert_same_tree("pull", "pulled", &snapshot(&s.join("pulled")), "src", &want);
    let push = [&args[..], &["pulled/", to.as_str()]].concat();
    client(s, d, &push, env).assert_ok();
    assert_same_tree(
        "push",
        "pushed",
        &snapshot(&s.join("up/pushed")),
        "src",
        &want,
    );
    let log = d.log();
    assert!(
        ["pull from", "push to"].iter().all(|what| log
            .lines()
            .any(|l| l.contains(what) && l.contains("(over HTTP/2, TLS over "))),
        "{log}"
    );
}

/// `--transport=h2` straight to the daemon's TCP port: the rich fixture both ways.
#[test]
fn h2_pulls_and_pushes_the_rich_fixture() {
    let s = Scratch::new();
    let d = Daemon::start(&s);
    pull_and_push(&s, &d, d.port, &[], &[]);
    // A token the daemon does not know: refused as over QUIC, exit 5, nothing written.
    let bad = format!("arsync_{}", "0".repeat(64));
    let url = format!("arsync://127.0.0.1:{}/data/tree/", d.port);
    let run = client(
        &s,
        &d,
        &["-a", "--transport=h2", &url, "refused"],
        &[("ARSYNC_TOKEN", &bad)],
    );
    assert_eq!(run.code(), Some(5), "{}", run.describe());
    assert!(
        run.stderr_str().contains("not recognised"),
        "{}",
        run.describe()
    );
    assert!(!s.join("refused").exists());
    assert!(d.log().contains("refused: "), "{}", d.log());
}

/// A self-signed certificate and key for a proxy, in `dir`.
fn proxy_identity(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, k) = (dir.join("proxy.crt"), dir.join("proxy.key"));
    fs::write(&crt, cert.pem()).unwrap();
    fs::write(&k, key.serialize_pem()).unwrap();
    (crt, k)
}

/// Wait (bounded) until something accepts TCP connections on `port`.
fn wait_listening(port: u16, what: &str, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not start listening on {port}: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's nginx, TLS on `port` with its own certificate, forwarding every request under
/// `/arsync.v1/` to the daemon with `grpc_pass` (HTTP/2 both ways, bodies streamed).
fn start_nginx(s: &Scratch, port: u16, upstream: u16) -> (Killed, PathBuf) {
    let dir = s.join("nginx");
    mkdir(&dir.join("tmp"));
    let (crt, key) = proxy_identity(&dir);
    let access = dir.join("access.log");
    let error = dir.join("error.log");
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid:?};\n\
             error_log {error:?} info;\nevents {{ worker_connections 128; }}\n\
             http {{\n  access_log {access:?};\n  client_body_temp_path {tmp:?};\n\
               proxy_temp_path {tmp:?};\n  fastcgi_temp_path {tmp:?};\n  uwsgi_temp_path {tmp:?};\n\
               scgi_temp_path {tmp:?};\n\
               server {{\n    listen 127.0.0.1:{port} ssl http2;\n\
                 ssl_certificate {crt:?};\n    ssl_certificate_key {key:?};\n\
                 ssl_protocols TLSv1.2 TLSv1.3;\n\
                 client_max_body_size 0;\n    client_body_timeout 1h;\n\
                 location /arsync.v1/ {{\n      grpc_pass grpcs://127.0.0.1:{upstream};\n\
                   grpc_ssl_protocols TLSv1.3;\n\
                   grpc_read_timeout 1h;\n      grpc_send_timeout 1h;\n    }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid"),
            tmp = dir.join("tmp"),
        ),
    )
    .unwrap();
    let child = Command::new(installed("nginx"))
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("nginx (Debian's nginx-light, scripts/test installs it): {e}"));
    let child = Killed(child);
    wait_listening(port, "nginx", &error);
    (child, access)
}

/// Behind nginx (TLS terminated there, each lane forwarded with `grpc_pass` on a connection
/// of its own): the rich fixture both ways, the client pinning nginx's certificate, and the
/// session's lanes each a request of its own through nginx.
#[test]
fn h2_through_nginx_grpc_pass() {
    let s = Scratch::new();
    let d = Daemon::start(&s);
    let port = free_tcp_port();
    let (_nginx, access) = start_nginx(&s, port, d.port);
    pull_and_push(&s, &d, port, &["--streams=3"], &[]);
    let access = fs::read_to_string(&access).unwrap();
    let posts = access
        .lines()
        .filter(|l| l.contains("\"POST /arsync.v1/session HTTP/2.0\" 200"))
        .count();
    // Two sessions, each its admission stream and its further lanes.
    assert!(posts > 2, "{access}");
    let lane_connections = d.log().matches("(over HTTP/2").count();
    assert_eq!(lane_connections, 2, "{}", d.log());
}

/// tinyproxy on `port` allowing `CONNECT` to `allowed` only, asking for `auth` if given.
fn start_tinyproxy(s: &Scratch, name: &str, port: u16, allowed: u16, auth: &str) -> Killed {
    let dir = s.join(name);
    mkdir(&dir);
    let conf = dir.join("tinyproxy.conf");
    let log = dir.join("tinyproxy.log");
    fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\nAllow 127.0.0.1\n\
             ConnectPort {allowed}\nLogLevel Info\nLogFile {log:?}\nUser root\nGroup root\n{auth}\n"
        ),
    )
    .unwrap();
    let child = Command::new(installed("tinyproxy"))
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("tinyproxy (Debian's, scripts/test installs it): {e}"));
    let child = Killed(child);
    wait_listening(port, "tinyproxy", &log);
    child
}

/// Through tinyproxy as `HTTPS_PROXY`: the rich fixture both ways, the tunnel in the proxy's
/// log; `--proxy` names the proxy over a wrong `HTTPS_PROXY`.
#[test]
fn h2_through_a_forward_proxy() {
    let s = Scratch::new();
    let d = Daemon::start(&s);
    let port = free_tcp_port();
    let _proxy = start_tinyproxy(&s, "tinyproxy", port, d.port, "");
    let url = format!("http://127.0.0.1:{port}");
    pull_and_push(&s, &d, d.port, &[], &[("HTTPS_PROXY", &url)]);
    let log = fs::read_to_string(s.join("tinyproxy/tinyproxy.log")).unwrap();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{}", d.port)) || log.contains("CONNECT"),
        "{log}"
    );
    // `--proxy` beats the environment (which names a port nothing listens on).
    let proxy_arg = format!("--proxy={url}");
    let dead = format!("http://127.0.0.1:{}", free_tcp_port());
    let run = client(
        &s,
        &d,
        &[
            "-a",
            "--transport=h2",
            "--explain",
            &proxy_arg,
            &format!("arsync://127.0.0.1:{}/data/tree/", d.port),
            "again",
        ],
        &[("HTTPS_PROXY", &dead)],
    );
    run.assert_ok();
    assert!(
        run.stderr_str()
            .contains(&format!("HTTP/2 over TLS through the proxy {url}")),
        "{}",
        run.stderr_str()
    );
    // `--transport=auto` (the default) sees the proxy and goes by HTTP/2 through it.
    let run = client(
        &s,
        &d,
        &[
            "-aH",
            "--explain",
            &format!("arsync://127.0.0.1:{}/data/tree/", d.port),
            "auto",
        ],
        &[("HTTPS_PROXY", &url)],
    );
    run.assert_ok();
    let err = run.stderr_str();
    assert!(
        err.contains("explain: decision: h2 to arsync serve (an HTTP proxy is set")
            && err.contains(&format!("HTTP/2 over TLS through the proxy {url}"))
            && !err.contains("QUIC handshake"),
        "{err}"
    );
    assert_same_tree(
        "auto",
        "auto",
        &snapshot(&s.join("auto")),
        "src",
        &snapshot(&s.join("data/tree")),
    );
}

/// A proxy that refuses the tunnel (403: the port is not allowed; 407: it wants
/// credentials) or does not answer: a clear error, exit code 5, quickly, nothing written.
#[test]
fn a_refusing_proxy_is_a_clear_error() {
    let s = Scratch::new();
    let d = Daemon::start(&s);
    write(&s.join("data/f"), b"data");
    let (p403, p407) = (free_tcp_port(), free_tcp_port());
    let _forbid = start_tinyproxy(&s, "forbids", p403, d.port + 1, "");
    let _auth = start_tinyproxy(&s, "wants-auth", p407, d.port, "BasicAuth user secret");
    // A "proxy" that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let src = format!("arsync://127.0.0.1:{}/data/", d.port);
    for (proxy, expect) in [
        (p403, "403"),
        (p407, "407"),
        (silent_port, "no answer to CONNECT"),
    ] {
        let url = format!("--proxy=http://127.0.0.1:{proxy}");
        let started = Instant::now();
        let run = client(&s, &d, &["-a", "--transport=h2", &url, &src, "out"], &[]);
        assert_eq!(run.code(), Some(5), "{url}: {}", run.describe());
        let err = run.stderr_str();
        assert!(
            err.contains("proxy") && err.contains(expect),
            "{url}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{url}: took {:?}",
            started.elapsed()
        );
    }
    assert!(!s.join("out").exists());
    // With the credentials it asks for, the same proxy lets the session through.
    let url = format!("--proxy=http://user:secret@127.0.0.1:{p407}");
    client(&s, &d, &["-a", "--transport=h2", &url, &src, "out"], &[]).assert_ok();
    assert_eq!(fs::read(s.join("out/f")).unwrap(), b"data");
}

// Issue 17, web ports:
/// `--transport=auto` to `arsync://…:443` (a web port: what listens there is most likely an
/// HTTP front that forwards only HTTP) goes by HTTP/2 to the TCP port at once — no MPTCP probe,
/// no QUIC — says why in `--explain`, and syncs. The daemon listens on 443 in a network
/// namespace of this test's own (root, as the other namespace tests).
#[test]
fn auto_speaks_http2_to_a_web_port() {
    common::netns::enter_netns(&["ip link set lo up"]);
    let s = Scratch::new();
    let served = serve_daemon::Daemon::start_on(&s, 443, "");
    let d = Daemon {
        token: served.token("ci", &[]),
        port: served.port,
        served,
    };
    write(&s.join("data/f"), b"over HTTP/2");
    let url = format!("arsync://127.0.0.1:{}/data/", d.port);
    let run = client(&s, &d, &["-a", "--explain", &url, "got"], &[]);
    run.assert_ok();
    let err = run.stderr_str();
    assert!(
        err.contains(
            "explain: decision: h2 to arsync serve (port 443 is a web port (HTTPS's port): what \
             listens there is most likely an HTTP front (a load balancer or reverse proxy) that \
             forwards only HTTP; HTTP/2 over TCP first)"
        ),
        "{err}"
    );
    assert!(
        !err.contains("local MPTCP") && !err.contains("QUIC handshake"),
        "{err}"
    );
    assert_eq!(fs::read(s.join("got/f")).unwrap(), b"over HTTP/2");
    assert!(d.log().contains("(over HTTP/2, TLS over "), "{}", d.log());
}
