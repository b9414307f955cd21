//! Overlay detection end to end: the real `arsync` binary with `--transport=auto --explain`
//! against a real OpenSSH `sshd` on a loopback port (`tests/common/sshd.rs`).
//!
//! Real Tailscale and Teleport cannot run here (no tailnet, no Teleport cluster), so the
//! overlays are stood in for at their local interfaces, which are what arsync reads: a fake
//! LocalAPI — a real Unix socket served by the test, answering HTTP with a status JSON the
//! way tailscaled does — and a `~/.tsh` fixture (`TSH_HOME`) with a fake `tsh` on `PATH` that
//! records its arguments and relays the SSH connection to the real sshd, as `tsh proxy ssh`
//! relays it through the Teleport proxy.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::sshd::Sshd;
use common::*;

fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

/// Push a few files to `HOST:dest/` with `-a --explain` and `more`, the remote shell `rsh`,
/// under `env`: the run must succeed and copy them. Its stderr.
fn push_explained(
    s: &Scratch,
    rsh: &str,
    host: &str,
    env: &[(String, String)],
    more: &[&str],
) -> String {
    let src = s.join("src");
    for i in 0..3 {
        write(&src.join(format!("f{i}")), &pseudo_random(2000, i));
    }
    stamp_tree(&src, 2);
    let mut args = vec![
        format!("--rsh={rsh}"),
        format!("--rsync-path={ARSYNC}"),
        "-a".into(),
        "--explain".into(),
    ];
    args.extend(more.iter().map(|a| a.to_string()));
    args.extend([slash(&src), format!("{host}:{}", slash(&s.join("dest")))]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = arsync_env(s.path(), &refs, &env);
    r.assert_ok();
    r.stderr_str()
}

/// A fake tailscaled LocalAPI on `socket`: a request for a path starting with one of
/// `routes`' prefixes gets its body as a 200 answer, any other a 404; the request lines are
/// recorded.
fn fake_localapi(socket: &Path, routes: Vec<(&'static str, String)>) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(socket).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                match conn.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head);
            let line = text.lines().next().unwrap_or("").to_owned();
            let path = line.split(' ').nth(1).unwrap_or("");
            let answer = match routes.iter().find(|(prefix, _)| path.starts_with(prefix)) {
                Some((_, body)) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
            };
            record.lock().unwrap().push(line);
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    seen
}

/// A status in the LocalAPI's shape: this node, and the peer `backup` at `peer_ip`.
fn status_with_backup(peer_ip: &str) -> String {
    format!(
        r#"{{"Version":"1.76.6","BackendState":"Running","TailscaleIPs":["100.88.12.34"],
        "Self":{{"ID":"n1","HostName":"laptop","DNSName":"laptop.tail1234.ts.net.","OS":"linux",
        "UserID":11,"TailscaleIPs":["100.88.12.34"],"Online":true}},
        "MagicDNSSuffix":"tail1234.ts.net",
        "Peer":{{"nodekey:ab12":{{"ID":"n2","HostName":"backup","DNSName":"backup.tail1234.ts.net.",
        "OS":"linux","UserID":11,"TailscaleIPs":["{peer_ip}","fd7a:115c:a1e0::6501:6667"],
        "CurAddr":"198.51.100.7:41641","Relay":"fra","Online":true,"Active":true}}}},
        "User":{{"11":{{"ID":11,"LoginName":"alice@example.com","DisplayName":"Alice"}}}}}}"#
    )
}

/// Move this test's thread into a new network namespace whose loopback also holds the
/// tailnet address `ip` (as `tailscale0` would), so a QUIC handshake to it reaches this
/// machine's servers.
fn enter_netns_with_tailnet_address(ip: &str) {
    common::netns::enter_netns(&["ip link set lo up", &format!("ip addr add {ip}/32 dev lo")]);
}

/// The environment every run gets: no real tailscaled or `~/.tsh` can leak in.
fn env_for(s: &Scratch, socket: &Path) -> Vec<(String, String)> {
    mkdir(&s.join("tsh-empty"));
    vec![
        (
            "ARSYNC_TAILSCALE_SOCKET".into(),
            socket.display().to_string(),
        ),
        ("TSH_HOME".into(), s.join("tsh-empty").display().to_string()),
    ]
}

fn assert_explains(err: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(err.contains(want), "{want:?} in {err}");
    }
}

/// tailscaled (faked) says the host `backup` is an online tailnet peer at 100.101.102.103:
/// `--explain` says so and that the path is already encrypted and authenticated; the QUIC
/// handshake gets the shorter limit and goes to the tailnet address rather than the
/// address the SSH login arrived at (127.0.0.1, through `HostName`), and the sync runs on it.
#[test]
fn a_tailnet_peer_is_explained_and_quic_goes_to_its_tailnet_address() {
    enter_netns_with_tailnet_address("100.101.102.103");
    let (s, sshd) = scratch_with_sshd();
    let socket = s.join("tailscaled.sock");
    let requests = fake_localapi(
        &socket,
        vec![("/localapi/v0/status", status_with_backup("100.101.102.103"))],
    );
    let env = env_for(&s, &socket);
    let err = push_explained(
        &s,
        &format!("{} -o HostName=127.0.0.1", sshd.rsh()),
        "backup",
        &env,
        // The system `ssh` tells no login RTT: QUIC's aim is under test, not skipped.
        &["--ssh=system"],
    );
    assert_explains(
        &err,
        &[
            "explain: overlay: tailnet peer backup.tail1234.ts.net (100.101.102.103), online, \
             direct 198.51.100.7:41641, owner alice@example.com, linux",
            "explain: decision: QUIC handshake limit 1500 ms (backup.tail1234.ts.net is an \
             online tailnet peer: UDP is expected to get through, and the path is WireGuard, \
             already encrypted and authenticated)",
            "explain: decision: QUIC to 100.101.102.103 (backup.tail1234.ts.net's tailnet \
             address carries UDP end to end (not the offered 127.0.0.1)",
            "explain: QUIC handshake to 100.101.102.103:",
            "explain: decision: quic (remote arsync present, UDP gets through)",
            "explain: overlay: no Teleport profile (",
        ],
    );
    assert!(
        requests
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("GET /localapi/v0/status ")),
        "{requests:?}"
    );
}

/// A `~/.tsh` fixture: the current profile `teleport.example.test` for cluster
/// `lab.example.test`, and a fake `tsh` on `PATH` that logs its arguments to `log` and, as
/// `tsh proxy ssh USER@NODE:PORT` would through the proxy, relays to the sshd on
/// 127.0.0.1:PORT.
fn tsh_fixture(s: &Scratch) -> (Vec<(String, String)>, PathBuf) {
    let tsh_home = s.join("tsh");
    mkdir(&tsh_home);
    fs::write(tsh_home.join("current-profile"), "teleport.example.test\n").unwrap();
    fs::write(
        tsh_home.join("teleport.example.test.yaml"),
        "web_proxy_addr: teleport.example.test:443\nssh_proxy_addr: teleport.example.test:3023\n\
         user: alice\ncluster: lab.example.test\ntls_routing_enabled: true\n",
    )
    .unwrap();
    let bin = s.join("bin");
    mkdir(&bin);
    let log = s.join("tsh.log");
    let tsh = bin.join("tsh");
    fs::write(
        &tsh,
        format!(
            "#!/bin/bash\necho \"$*\" >> {log}\nport=\"${{@: -1}}\"\nport=\"${{port##*:}}\"\n\
             exec 3<>/dev/tcp/127.0.0.1/\"$port\" || exit 1\ncat <&3 &\ncat >&3\n",
            log = log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&tsh, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = vec![
        ("TSH_HOME".into(), tsh_home.display().to_string()),
        ("PATH".into(), path),
        (
            "ARSYNC_TAILSCALE_SOCKET".into(),
            s.join("no-tailscaled.sock").display().to_string(),
        ),
    ];
    (env, log)
}

/// The host is a node of the logged-in Teleport cluster: the remote shell runs with
/// `ProxyCommand tsh proxy ssh --cluster=… --proxy=… %r@%h:%p` and tsh's key and host
/// authorities (`-e` names neither a key nor the node's host key: the login works only with
/// them), the (fake) tsh carries the login, the QUIC try is short, and the sync succeeds; no
/// tailscaled is an observation, not an error. With `more`, as the system ssh (none) or the
/// built-in client (`--ssh=native`).
fn teleport_node_through_tsh(more: &[&str]) {
    let (s, sshd) = scratch_with_sshd();
    let (env, log) = tsh_fixture(&s);
    let node = "db1.lab.example.test";
    // What `tsh login` leaves: the key the sshd accepts, and the node's host key (tsh keeps
    // the cluster's host authority there; a plain host line serves the same check).
    let keys = s.join("tsh/keys/teleport.example.test");
    mkdir(&keys);
    fs::copy(sshd.client_key(), keys.join("alice")).unwrap();
    fs::set_permissions(keys.join("alice"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        s.join("tsh/known_hosts"),
        format!("[{node}]:{} {}\n", sshd.port, sshd.host_pub()),
    )
    .unwrap();
    let rsh = format!(
        "ssh -p {} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
         -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR",
        sshd.port
    );
    let err = push_explained(&s, &rsh, node, &env, more);
    assert_explains(
        &err,
        &[
            "explain: overlay: no tailscaled (",
            "explain: overlay: Teleport profile teleport.example.test (cluster \
             lab.example.test, proxy teleport.example.test:443, user alice), tsh at ",
            "explain: decision: ssh through Teleport, ProxyCommand ",
            "/tsh proxy ssh --cluster=lab.example.test --proxy=teleport.example.test:443 \
             %r@%h:%p, with tsh's key and host authorities (db1.lab.example.test is a node of \
             Teleport cluster lab.example.test (profile teleport.example.test, user alice))",
            "explain: decision: QUIC handshake limit 1000 ms (db1.lab.example.test is reached \
             through a Teleport proxy",
        ],
    );
    let ran = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        ran.contains("proxy ssh --cluster=lab.example.test --proxy=teleport.example.test:443 ")
            && ran.contains(&format!("@{node}:{}", sshd.port)),
        "tsh ran with {ran:?}"
    );
}

#[test]
fn a_teleport_node_is_reached_through_tsh_proxy_ssh() {
    teleport_node_through_tsh(&[]);
}

#[test]
fn a_teleport_node_is_reached_through_tsh_proxy_ssh_by_the_native_client() {
    teleport_node_through_tsh(&["--ssh=native"]);
}

/// A host outside the cluster goes as configured: tsh is not run.
#[test]
fn a_host_outside_the_teleport_cluster_does_not_use_tsh() {
    let (s, sshd) = scratch_with_sshd();
    let (env, log) = tsh_fixture(&s);
    let err = push_explained(&s, &sshd.rsh(), "127.0.0.1", &env, &[]);
    assert_explains(
        &err,
        &["explain: overlay: Teleport profile teleport.example.test"],
    );
    assert!(!err.contains("through Teleport"), "{err}");
    assert!(!log.exists(), "tsh ran: {:?}", fs::read_to_string(&log));
}

/// The host is written as a tailnet address that the status does not list (a node shared
/// in from another tailnet shows only to `whois`): the probe asks `whois`, and the answer
/// makes it a tailnet peer; the offered address already is its tailnet address.
#[test]
fn a_tailnet_address_missing_from_the_status_is_asked_of_whois() {
    let peer = "100.101.102.103";
    enter_netns_with_tailnet_address(peer);
    let s = Scratch::new();
    let keys = s.join("keys");
    mkdir(&keys);
    let sshd = Sshd::start_on(&keys, peer);
    let socket = s.join("tailscaled.sock");
    let whois = format!(
        r#"{{"Node":{{"ID":7,"StableID":"n2","Name":"backup.tail1234.ts.net.",
        "Addresses":["{peer}/32"],"Hostinfo":{{"OS":"linux","Hostname":"backup"}},"Online":true}},
        "UserProfile":{{"ID":11,"LoginName":"carol@example.org","DisplayName":"Carol"}},"CapMap":null}}"#
    );
    let requests = fake_localapi(
        &socket,
        vec![
            ("/localapi/v0/status", status_with_backup("100.99.0.1")),
            ("/localapi/v0/whois", whois),
        ],
    );
    let env = env_for(&s, &socket);
    // The system `ssh` tells no login RTT: QUIC's aim is under test, not skipped.
    let err = push_explained(&s, &sshd.rsh(), peer, &env, &["--ssh=system"]);
    assert_explains(
        &err,
        &[
            "explain: overlay: tailnet peer backup.tail1234.ts.net (100.101.102.103), online, \
             owner carol@example.org, linux",
            "explain: decision: QUIC to 100.101.102.103 (the offer's address is \
             backup.tail1234.ts.net's tailnet address)",
            "explain: decision: quic (remote arsync present, UDP gets through)",
        ],
    );
    let requests = requests.lock().unwrap();
    assert!(
        requests
            .iter()
            .any(|l| l.starts_with("GET /localapi/v0/whois?addr=100.101.102.103:0 ")),
        "{requests:?}"
    );
}
