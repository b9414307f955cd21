//! The overlay readers and decisions, from recorded samples written after Tailscale's and
//! Teleport's documentation (`samples/`): real Tailscale and Teleport cannot run here.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use super::json::{self, Json};
use super::tailscale::*;
use super::teleport::*;
use super::*;
use crate::negotiate::{
    next_step, Observations, Probe, QuicOffered, RemoteArsync, Request, Step, Target, TransportAsk,
    AUTO_HANDSHAKE_LIMIT,
};

const STATUS: &[u8] = include_bytes!("samples/status.json");
const WHOIS: &[u8] = include_bytes!("samples/whois.json");
const PROFILE: &str = include_str!("samples/tsh_profile.yaml");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn shell(host: &str, proxy: Option<&str>, program_is_ssh: bool) -> Option<ShellSeen> {
    Some(ShellSeen {
        program_is_ssh,
        hostname: host.into(),
        proxy: proxy.map(str::to_owned),
    })
}

fn no_profile() -> TeleportSeen {
    TeleportSeen::NoProfile {
        reason: "/home/alice/.tsh/current-profile: No such file or directory".into(),
    }
}

/// tailscaled answered the sample status; the host is `host`.
fn tailnet_seen(host: &str, proxy: Option<&str>) -> OverlaySeen {
    OverlaySeen {
        host: host.into(),
        tailscale: TailscaleSeen::Status(Box::new(parse_status(STATUS, &[host]).unwrap())),
        teleport: no_profile(),
        shell: shell(host, proxy, true),
    }
}

fn no_tailscaled(host: &str) -> OverlaySeen {
    OverlaySeen {
        host: host.into(),
        tailscale: TailscaleSeen::NoDaemon {
            socket: "/var/run/tailscale/tailscaled.sock".into(),
            reason: "No such file or directory (os error 2)".into(),
        },
        teleport: no_profile(),
        shell: shell(host, None, true),
    }
}

/// The sample tsh profile is current; the host is `host`.
fn teleport_seen(
    host: &str,
    proxy: Option<&str>,
    program_is_ssh: bool,
    tsh: Option<&str>,
) -> OverlaySeen {
    OverlaySeen {
        teleport: TeleportSeen::Profile(Box::new(TshLogin {
            profile: parse_profile("teleport.example.com", PROFILE).unwrap(),
            tsh: tsh.map(str::to_owned),
            files: TshKeyFiles::default(),
        })),
        shell: shell(host, proxy, program_is_ssh),
        ..no_tailscaled(host)
    }
}

fn auto_request(host: &str) -> Request {
    Request {
        target: Target::Shell { host: host.into() },
        ..crate::negotiate::tests::request("auto")
    }
}

fn offered_with(overlay: OverlaySeen) -> Observations {
    Observations {
        remote: Some(RemoteArsync::OffersQuic(QuicOffered {
            login_took: std::time::Duration::from_millis(40),
            addr: Some(ip("192.168.1.20")),
            port: 40321,
            certificate: "SHA256:abc".into(),
            login_rtt: None,
        })),
        overlay: Some(overlay),
        ..Observations::default()
    }
}

#[test]
fn json_reads_every_kind_and_escape() {
    let v = json::parse(
        br#" {"a": [1, -2.5e3, true, false, null], "s": "q\"\\\/\n\u00e9\ud83d\ude00", "o": {}} "#,
    )
    .unwrap();
    assert_eq!(
        v.get("a").unwrap().items(),
        &[
            Json::Num(1.0),
            Json::Num(-2500.0),
            Json::Bool(true),
            Json::Bool(false),
            Json::Null
        ]
    );
    assert_eq!(v.get("s").unwrap().as_str(), Some("q\"\\/\né😀"));
    assert_eq!(v.get("o"), Some(&Json::Obj(vec![])));
}

#[test]
fn json_refuses_bad_text_and_deep_nesting() {
    for bad in [
        &b"{"[..],
        b"[1,]",
        b"{\"a\" 1}",
        b"\"\x01\"",
        b"tru",
        b"1 2",
        b"",
    ] {
        assert!(
            json::parse(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    assert_eq!(
        json::parse(deep.as_bytes()).unwrap_err().what,
        "nested too deep"
    );
    let ok = format!("{}{}", "[".repeat(30), "]".repeat(30));
    assert!(json::parse(ok.as_bytes()).is_ok());
}

#[test]
fn tailnet_addresses_and_names_by_form() {
    for a in [
        "100.64.0.1",
        "100.101.102.103",
        "100.127.255.255",
        "fd7a:115c:a1e0::1",
    ] {
        assert!(is_tailnet_addr(ip(a)), "{a}");
    }
    for a in [
        "100.63.255.255",
        "100.128.0.1",
        "10.0.0.1",
        "fd7a:115c:a1e1::1",
        "::1",
    ] {
        assert!(!is_tailnet_addr(ip(a)), "{a}");
    }
    assert!(is_magicdns_name("backup.tail1234.ts.net."));
    assert!(is_magicdns_name("Backup.Tail1234.TS.NET"));
    assert!(!is_magicdns_name("ts.net.example.com"));
}

#[test]
fn status_finds_the_peer_by_short_name_magicdns_name_address_or_host_name() {
    for name in [
        "backup",
        "BACKUP.tail1234.ts.net",
        "backup.tail1234.ts.net.",
        "100.101.102.103",
        "fd7a:115c:a1e0::6501:6667",
        "[fd7a:115c:a1e0::6501:6667]",
    ] {
        let t = parse_status(STATUS, &[name]).unwrap();
        let peer = t.peer.unwrap_or_else(|| panic!("{name}"));
        assert_eq!(peer.name, "backup.tail1234.ts.net");
        assert_eq!(
            peer.addrs,
            [ip("100.101.102.103"), ip("fd7a:115c:a1e0::6501:6667")]
        );
        assert!(peer.online);
        assert_eq!(peer.login.as_deref(), Some("alice@example.com"));
        assert_eq!(peer.direct.as_deref(), Some("198.51.100.7:41641"));
        assert_eq!(peer.os.as_deref(), Some("linux"));
    }
    let t = parse_status(STATUS, &["nas", "100.101.102.104"]).unwrap();
    assert_eq!(t.state, "Running");
    assert_eq!(t.self_node.name, "laptop.tail1234.ts.net");
    assert_eq!(t.peer, None);
    // The second name (ssh's HostName for an alias) counts too.
    let t = parse_status(STATUS, &["phone", "bobs-iphone"]).unwrap();
    let bob = t.peer.unwrap();
    assert!(!bob.online);
    assert_eq!(bob.login.as_deref(), Some("bob@example.net"));
    assert_eq!(bob.relay.as_deref(), Some("nyc"));
    assert_eq!(bob.direct, None);
}

#[test]
fn status_without_self_is_refused() {
    assert!(matches!(
        parse_status(br#"{"BackendState":"NeedsLogin"}"#, &["x"]),
        Err(LocalApiError::Missing("Self"))
    ));
    assert!(matches!(
        parse_status(b"<html>", &["x"]),
        Err(LocalApiError::Json(_))
    ));
}

#[test]
fn whois_names_the_node_and_its_owner() {
    let n = parse_whois(WHOIS).unwrap();
    assert_eq!(n.name, "backup.tail1234.ts.net");
    assert_eq!(n.host_name, "backup");
    assert_eq!(n.addrs[0], ip("100.101.102.103"));
    assert!(n.online);
    assert_eq!(n.login.as_deref(), Some("alice@example.com"));
}

#[test]
fn http_body_by_length_chunked_or_to_the_end_and_bounded() {
    let plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(http_body(plain, 100).unwrap(), b"{}");
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
    assert_eq!(http_body(chunked, 100).unwrap(), b"{\"a\":1}");
    let to_end = b"HTTP/1.0 200 OK\r\n\r\n[1]";
    assert_eq!(http_body(to_end, 100).unwrap(), b"[1]");
    assert!(http_body(to_end, 2).is_err());
    assert!(http_body(chunked, 5).is_err());
    let big = b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n{}";
    assert!(http_body(big, 100).is_err());
    let denied = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    assert!(matches!(http_body(denied, 100), Err(LocalApiError::Http(s)) if s.contains("403")));
    assert!(http_body(b"HTTP/1.1 200 OK\r\n", 100).is_err());
    assert!(http_body(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        100
    )
    .is_err());
}

#[test]
fn tsh_profile_and_current_profile() {
    assert_eq!(
        parse_current_profile("teleport.example.com\n").as_deref(),
        Some("teleport.example.com")
    );
    assert_eq!(parse_current_profile("  \n"), None);
    assert_eq!(parse_current_profile("../../etc/passwd"), None);
    let p = parse_profile("teleport.example.com", PROFILE).unwrap();
    assert_eq!(p.web_proxy_addr, "teleport.example.com:443");
    assert_eq!(
        p.ssh_proxy_addr.as_deref(),
        Some("teleport.example.com:3023")
    );
    assert_eq!(p.user.as_deref(), Some("alice@example.com"));
    assert_eq!(p.cluster, "prod.example.com");
    assert_eq!(p.proxy_host(), "teleport.example.com");
    // Without `cluster`, the proxy's host is the cluster; without a proxy, no profile.
    let p = parse_profile("t", "web_proxy_addr: 'tp.example.org:3080' # the proxy\n").unwrap();
    assert_eq!(p.cluster, "tp.example.org");
    assert_eq!(p.web_proxy_addr, "tp.example.org:3080");
    assert_eq!(
        parse_profile("t", "user: alice\n  web_proxy_addr: x:1\n"),
        None
    );
}

#[test]
fn teleport_nodes_are_under_the_cluster_or_the_proxy() {
    let p = parse_profile("teleport.example.com", PROFILE).unwrap();
    assert!(serves_host(&p, "db1.prod.example.com"));
    assert!(serves_host(&p, "DB1.Prod.Example.Com."));
    assert!(serves_host(&p, "db1.teleport.example.com"));
    assert!(!serves_host(&p, "teleport.example.com"));
    assert!(!serves_host(&p, "prod.example.com"));
    assert!(!serves_host(&p, "db1.notprod.example.com"));
    assert!(!serves_host(&p, "backup"));
}

#[test]
fn an_online_tailnet_peer_gets_a_shorter_handshake_and_its_tailnet_address() {
    let seen = tailnet_seen("backup", None);
    let limit = tailnet_handshake(&seen).unwrap();
    assert_eq!(limit.choice, TAILNET_HANDSHAKE_LIMIT);
    assert!(limit.reason.contains("already encrypted and authenticated"));
    // The offer came from the LAN address: QUIC goes to the tailnet one, same family.
    let to = quic_address(&seen, Some(ip("192.168.1.20"))).unwrap();
    assert_eq!(to.choice, ip("100.101.102.103"));
    assert!(
        to.reason.contains("not the offered 192.168.1.20"),
        "{}",
        to.reason
    );
    let to = quic_address(&seen, Some(ip("2001:db8::20"))).unwrap();
    assert_eq!(to.choice, ip("fd7a:115c:a1e0::6501:6667"));
    // The offer's address is the peer's: it stands.
    let to = quic_address(&seen, Some(ip("fd7a:115c:a1e0::6501:6667"))).unwrap();
    assert_eq!(to.choice, ip("fd7a:115c:a1e0::6501:6667"));
    assert_eq!(
        quic_address(&seen, None).unwrap().choice,
        ip("100.101.102.103")
    );
    let lines = seen.explain();
    assert!(
        lines[0].starts_with(
            "overlay: tailnet peer backup.tail1234.ts.net (100.101.102.103), online, direct \
             198.51.100.7:41641, owner alice@example.com"
        ),
        "{lines:?}"
    );
    assert_eq!(
        explain_decisions(&seen),
        [
            "decision: QUIC handshake limit 1500 ms (backup.tail1234.ts.net is an online tailnet \
          peer: UDP is expected to get through, and the path is WireGuard, already encrypted \
          and authenticated)"
        ]
    );
}

#[test]
fn an_offline_peer_a_stranger_or_no_tailscaled_changes_nothing() {
    for seen in [
        tailnet_seen("bobs-iphone", None),
        tailnet_seen("nas", None),
        no_tailscaled("100.101.102.103"),
    ] {
        assert_eq!(tailnet_handshake(&seen), None);
        assert_eq!(quic_address(&seen, Some(ip("10.0.0.1"))), None);
        assert!(explain_decisions(&seen).is_empty());
    }
    assert_eq!(
        tailnet_seen("nas", None).explain()[0],
        "overlay: nas is not a peer of this tailnet (this node laptop.tail1234.ts.net)"
    );
    assert!(no_tailscaled("100.101.102.103").explain()[0].starts_with(
        "overlay: 100.101.102.103 looks like a tailnet name or address, but no tailscaled"
    ));
    assert!(no_tailscaled("backup").explain()[0].starts_with("overlay: no tailscaled ("));
    let mut stopped = tailnet_seen("backup", None);
    if let TailscaleSeen::Status(t) = &mut stopped.tailscale {
        t.state = "Stopped".into();
    }
    assert_eq!(tailnet_handshake(&stopped), None);
    assert_eq!(
        stopped.explain()[0],
        "overlay: tailscaled is Stopped: not on a tailnet"
    );
}

#[test]
fn a_teleport_node_is_reached_through_tsh_proxy_ssh() {
    let seen = teleport_seen(
        "db1.prod.example.com",
        None,
        true,
        Some("/usr/local/bin/tsh"),
    );
    let via = ssh_via(&seen).unwrap();
    let SshVia::Teleport { proxy_command, .. } = &via.choice else {
        panic!("{via:?}");
    };
    assert_eq!(
        proxy_command,
        "/usr/local/bin/tsh proxy ssh --cluster=prod.example.com \
         --proxy=teleport.example.com:443 %r@%h:%p"
    );
    assert!(via
        .reason
        .contains("node of Teleport cluster prod.example.com"));
    assert_eq!(
        rsh_with("ssh -p 2222", &via.choice),
        "ssh -p 2222 -o 'ProxyCommand=/usr/local/bin/tsh proxy ssh --cluster=prod.example.com \
         --proxy=teleport.example.com:443 %r@%h:%p'"
    );
    assert!(explain_decisions(&seen)[0]
        .starts_with("decision: ssh through Teleport, ProxyCommand /usr/local/bin/tsh proxy ssh"));
    assert!(seen.explain()[1].starts_with(
        "overlay: Teleport profile teleport.example.com (cluster prod.example.com, proxy \
         teleport.example.com:443, user alice@example.com), tsh at /usr/local/bin/tsh"
    ));
    // An alias whose HostName is a node counts too.
    let mut alias = teleport_seen("db", None, true, Some("/usr/bin/tsh"));
    if let Some(shell) = &mut alias.shell {
        shell.hostname = "db1.prod.example.com".into();
    }
    assert!(matches!(
        ssh_via(&alias).unwrap().choice,
        SshVia::Teleport { .. }
    ));
}

#[test]
fn teleport_is_left_alone_where_something_else_decides() {
    let cases = [
        (
            teleport_seen(
                "db1.prod.example.com",
                Some("/usr/bin/tsh proxy ssh --cluster=prod.example.com %r@%h:%p"),
                true,
                Some("/usr/bin/tsh"),
            ),
            "already reaches db1.prod.example.com through tsh proxy ssh",
        ),
        (
            teleport_seen(
                "db1.prod.example.com",
                Some("jump.example.com"),
                true,
                Some("/usr/bin/tsh"),
            ),
            "already sets a proxy for db1.prod.example.com (jump.example.com)",
        ),
        (
            teleport_seen("db1.prod.example.com", None, false, Some("/usr/bin/tsh")),
            "-e is not ssh",
        ),
        (
            teleport_seen("db1.prod.example.com", None, true, None),
            "tsh is not on PATH",
        ),
        (
            teleport_seen(
                "db1.prod.example.com",
                None,
                true,
                Some("/opt/my tools/tsh"),
            ),
            "left unquoted",
        ),
    ];
    for (seen, why) in cases {
        let via = ssh_via(&seen).unwrap();
        assert_eq!(via.choice, SshVia::AsConfigured);
        assert!(via.reason.contains(why), "{why:?} in {}", via.reason);
        assert_eq!(rsh_with("ssh", &via.choice), "ssh");
        assert!(explain_decisions(&seen)[0]
            .starts_with("decision: ssh as configured, not through Teleport ("));
    }
    // Not a node of the cluster, or no profile: no decision at all.
    assert_eq!(
        ssh_via(&teleport_seen("backup", None, true, Some("/usr/bin/tsh"))),
        None
    );
    assert_eq!(ssh_via(&tailnet_seen("backup", None)), None);
}

#[test]
fn next_step_gives_an_online_tailnet_peer_the_shorter_handshake_limit() {
    let limit = |overlay: OverlaySeen, transport: &str| {
        let mut request = auto_request(&overlay.host);
        request.transport = TransportAsk::from_arg(transport);
        match next_step(&request, &offered_with(overlay)).unwrap() {
            Step::Probe(Probe::QuicHandshake { limit }) => limit,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        limit(tailnet_seen("backup", None), "auto"),
        TAILNET_HANDSHAKE_LIMIT
    );
    assert_eq!(
        limit(tailnet_seen("nas", None), "auto"),
        AUTO_HANDSHAKE_LIMIT
    );
    assert_eq!(limit(no_tailscaled("backup"), "auto"), AUTO_HANDSHAKE_LIMIT);
    // `--transport=quic` has no fallback to hurry to: its own limit stands.
    let asked = std::time::Duration::from_secs(10);
    assert_eq!(limit(tailnet_seen("backup", None), "quic"), asked);
}

#[test]
fn a_host_reached_through_teleport_gets_a_short_quic_try() {
    let added = teleport_seen("db1.prod.example.com", None, true, Some("/usr/bin/tsh"));
    let limit = handshake_limit(&added).unwrap();
    assert_eq!(limit.choice, TELEPORT_HANDSHAKE_LIMIT);
    assert!(
        limit.reason.contains("reached through a Teleport proxy"),
        "{}",
        limit.reason
    );
    assert_eq!(
        explain_decisions(&added)[1],
        format!("decision: QUIC handshake limit 1000 ms ({})", limit.reason)
    );
    // The user's ssh configuration already goes through tsh: the same, profile or not.
    let mut configured = no_tailscaled("db");
    configured.shell = shell("db", Some("tsh proxy ssh --cluster=c %r@%h:%p"), true);
    assert_eq!(
        handshake_limit(&configured).unwrap().choice,
        TELEPORT_HANDSHAKE_LIMIT
    );
    // Another proxy, or a Teleport node left as configured without tsh: the usual limit.
    for seen in [
        teleport_seen(
            "db1.prod.example.com",
            Some("jump.example.com"),
            true,
            Some("/usr/bin/tsh"),
        ),
        teleport_seen("db1.prod.example.com", None, true, None),
        teleport_seen("backup", None, true, Some("/usr/bin/tsh")),
    ] {
        assert_eq!(handshake_limit(&seen), None, "{seen:?}");
    }
    // A tailnet peer that is also reached through Teleport: UDP is expected, the tailnet wins.
    let mut both = tailnet_seen("backup", Some("tsh proxy ssh %r@%h:%p"));
    both.shell = shell("backup", Some("tsh proxy ssh %r@%h:%p"), true);
    assert_eq!(
        handshake_limit(&both).unwrap().choice,
        TAILNET_HANDSHAKE_LIMIT
    );
    // And next_step asks for the short try.
    let request = auto_request("db1.prod.example.com");
    assert_eq!(
        next_step(&request, &offered_with(added)).unwrap(),
        Step::Probe(Probe::QuicHandshake {
            limit: TELEPORT_HANDSHAKE_LIMIT
        })
    );
}

#[test]
fn tsh_credentials_on_disk_go_with_the_proxy_command() {
    let profile = parse_profile("teleport.example.com", PROFILE).unwrap();
    let files = profile.key_files(std::path::Path::new("/home/alice/.tsh"));
    let text = |p: Option<std::path::PathBuf>| p.map(|p| p.display().to_string());
    let files = TshKeyFiles {
        key: text(files.key),
        cert: text(files.cert),
        known_hosts: text(files.known_hosts),
    };
    assert_eq!(
        files,
        TshKeyFiles {
            key: Some("/home/alice/.tsh/keys/teleport.example.com/alice@example.com".into()),
            cert: Some(
                "/home/alice/.tsh/keys/teleport.example.com/alice@example.com-ssh/\
                 prod.example.com-cert.pub"
                    .into()
            ),
            known_hosts: Some("/home/alice/.tsh/known_hosts".into()),
        }
    );
    let mut seen = teleport_seen("db1.prod.example.com", None, true, Some("/usr/bin/tsh"));
    if let TeleportSeen::Profile(login) = &mut seen.teleport {
        let f = &mut login.files;
        *f = files;
    }
    let via = ssh_via(&seen).unwrap().choice;
    assert_eq!(
        rsh_with("ssh", &via),
        "ssh -o 'ProxyCommand=/usr/bin/tsh proxy ssh --cluster=prod.example.com \
         --proxy=teleport.example.com:443 %r@%h:%p' \
         -o 'IdentityFile=/home/alice/.tsh/keys/teleport.example.com/alice@example.com' \
         -o 'CertificateFile=/home/alice/.tsh/keys/teleport.example.com/alice@example.com-ssh/\
         prod.example.com-cert.pub' \
         -o 'GlobalKnownHostsFile=/home/alice/.tsh/known_hosts /etc/ssh/ssh_known_hosts \
         /etc/ssh/ssh_known_hosts2'"
    );
    assert!(
        explain_decisions(&seen)[0].contains(
            "%r@%h:%p, with tsh's key, certificate and host authorities (db1.prod.example.com"
        ),
        "{:?}",
        explain_decisions(&seen)
    );
    // Only the known hosts on disk.
    if let TeleportSeen::Profile(login) = &mut seen.teleport {
        let f = &mut login.files;
        f.key = None;
        f.cert = None;
    }
    assert!(explain_decisions(&seen)[0].contains("%r@%h:%p, with tsh's host authorities ("));
    // A path that would need quoting: left alone.
    if let TeleportSeen::Profile(login) = &mut seen.teleport {
        let f = &mut login.files;
        f.known_hosts = Some("/home/al ice/.tsh/known_hosts".into());
    }
    assert_eq!(ssh_via(&seen).unwrap().choice, SshVia::AsConfigured);
}
