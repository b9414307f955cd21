//! Every branch of the negotiation, driven by scripted observations.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

fn info(name: &str, local_only: bool, max_streams: u32) -> TransportInfo {
    TransportInfo {
        name: name.into(),
        local_only,
        max_streams,
    }
}

/// What the `arsync` binary registers.
fn registered() -> Vec<TransportInfo> {
    vec![
        info("mem", true, 64),
        info("ssh", false, 1),
        info("ssh-native", false, 1),
        info("ssh-pool", false, 4),
        info("quic", false, 4),
        info("unix", false, 1),
    ]
}

/// A `host:path` request for `backup` with `--transport=transport` (the other test modules'
/// too).
pub(super) fn request(transport: &str) -> Request {
    Request {
        target: Target::Shell {
            host: "backup".into(),
        },
        transport: TransportAsk::from_arg(transport),
        protocol: ProtocolAsk::Auto,
        streams: None,
        registered: registered(),
        quic_handshake_limit: Duration::from_secs(10),
        // Issue 16, params:
        params: params::ParamsAsk::default(),
        quic_window: 12_500_000,
        http_proxy: false,
        web_ports: Vec::new(),
    }
}

pub(super) fn offered() -> Observations {
    Observations {
        remote: Some(RemoteArsync::OffersQuic(QuicOffered {
            login_took: Duration::from_millis(95),
            addr: Some("10.0.0.7".parse().unwrap()),
            port: 40321,
            certificate: "SHA256:abc".into(),
            login_rtt: None,
        })),
        quic: None,
        ..Default::default()
    }
}

fn with_quic(seen: QuicSeen) -> Observations {
    Observations {
        quic: Some(seen),
        ..offered()
    }
}

pub(super) fn established() -> QuicSeen {
    QuicSeen::Established {
        to: "10.0.0.7:40321".parse().unwrap(),
        took: Duration::from_millis(2),
    }
}

pub(super) fn timed_out() -> QuicSeen {
    QuicSeen::TimedOut {
        to: "10.0.0.7:40321".parse().unwrap(),
        after: Duration::from_secs(3),
        reason: "no QUIC handshake within 3s".into(),
    }
}

pub(super) fn failed() -> QuicSeen {
    QuicSeen::Failed {
        to: "10.0.0.7:40321".parse().unwrap(),
        after: Duration::from_millis(1),
        reason: "network unreachable".into(),
    }
}

fn no_address() -> QuicSeen {
    QuicSeen::NoAddress {
        host: "backup".into(),
        reason: "failed to lookup address".into(),
    }
}

fn not_found() -> Observations {
    Observations {
        remote: Some(RemoteArsync::NotFound),
        quic: None,
        ..Default::default()
    }
}

fn step(r: &Request, seen: &Observations) -> Step {
    next_step(r, seen).unwrap()
}

fn plan(r: &Request, seen: &Observations) -> Plan {
    match step(r, seen) {
        Step::Connect(p) => p,
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn give_up(r: &Request, seen: &Observations) -> GiveUp {
    match step(r, seen) {
        Step::GiveUp(g) => g,
        other => panic!("expected to give up, got {other:?}"),
    }
}

#[test]
fn auto_first_logs_in_over_ssh() {
    assert_eq!(
        step(&request("auto"), &Observations::default()),
        Step::Probe(Probe::BootstrapLogin { via: "ssh".into() })
    );
}

#[test]
fn auto_gives_the_offered_quic_three_seconds() {
    assert_eq!(
        step(&request("auto"), &offered()),
        Step::Probe(Probe::QuicHandshake {
            limit: Duration::from_secs(3)
        })
    );
}

#[test]
fn auto_takes_quic_when_it_answers() {
    let p = plan(&request("auto"), &with_quic(established()));
    assert_eq!(p.connection.choice, ConnectionPath::BootstrapQuic);
    assert_eq!(
        p.connection.reason,
        "remote arsync present, UDP gets through"
    );
    assert_eq!(p.protocol.choice, ProtocolVariant::Merkle);
    assert_eq!(p.streams.choice, DEFAULT_STREAMS);
    assert_eq!(
        p.explain()[0],
        "decision: quic (remote arsync present, UDP gets through)"
    );
    let mut r = request("auto");
    r.streams = Some(3);
    let p = plan(&r, &with_quic(established()));
    assert_eq!(
        (p.streams.choice, p.streams.reason.as_str()),
        (3, "--streams")
    );
}

#[test]
fn auto_keeps_the_ssh_login_when_udp_is_blocked() {
    for seen in [timed_out(), failed()] {
        let p = plan(&request("auto"), &with_quic(seen));
        assert_eq!(p.connection.choice, ConnectionPath::BootstrapChannel);
        assert_eq!(p.streams.choice, 1);
        assert_eq!(p.protocol.choice, ProtocolVariant::Merkle);
        assert_eq!(
            p.explain()[0],
            "decision: ssh, on the same login (UDP does not get through)"
        );
    }
}

#[test]
fn auto_keeps_the_ssh_login_when_the_name_does_not_resolve() {
    let p = plan(&request("auto"), &with_quic(no_address()));
    assert_eq!(p.connection.choice, ConnectionPath::BootstrapChannel);
    assert_eq!(
        p.connection.reason,
        "backup has no address to reach by QUIC"
    );
}

#[test]
fn a_host_with_only_rsync_gets_rsyncs_protocol_over_ssh() {
    // Found by the bootstrap login (auto) or by a plain ssh session.
    for t in ["auto", "quic", "ssh"] {
        let p = plan(&request(t), &not_found());
        assert_eq!(
            p.connection.choice,
            ConnectionPath::Registered("ssh".into()),
            "{t}"
        );
        assert_eq!(
            p.protocol.choice,
            ProtocolVariant::Rsync {
                max_version: None,
                remote_program: RemoteProgram::Rsync
            }
        );
        assert_eq!(p.streams.choice, 1);
        assert_eq!(
            p.explain(),
            [
                "decision: rsync's protocol over ssh (the remote host has only rsync)",
                "decision: 1 stream (rsync's protocol runs on one stream)"
            ]
        );
    }
    // The pool cannot carry it; another single shell can.
    let p = plan(&request("ssh-pool"), &not_found());
    assert_eq!(
        p.connection.choice,
        ConnectionPath::Registered("ssh".into())
    );
    let p = plan(&request("ssh-native"), &not_found());
    assert_eq!(
        p.connection.choice,
        ConnectionPath::Registered("ssh-native".into())
    );
}

#[test]
fn a_host_without_arsync_is_an_error_when_rsync_is_not_allowed() {
    let mut r = request("auto");
    r.protocol = ProtocolAsk::Merkle;
    let g = give_up(&r, &not_found());
    assert_eq!(g.kind, GiveUpKind::RemoteArsyncMissing);
    assert_eq!(g.advice, None);
}

#[test]
fn forced_quic_waits_its_own_limit_and_has_no_fallback() {
    assert_eq!(
        step(&request("quic"), &Observations::default()),
        Step::Probe(Probe::BootstrapLogin { via: "ssh".into() })
    );
    assert_eq!(
        step(&request("quic"), &offered()),
        Step::Probe(Probe::QuicHandshake {
            limit: Duration::from_secs(10)
        })
    );
    let p = plan(&request("quic"), &with_quic(established()));
    assert_eq!(p.connection.choice, ConnectionPath::BootstrapQuic);
    for seen in [timed_out(), failed(), no_address()] {
        let g = give_up(&request("quic"), &with_quic(seen));
        assert_eq!(g.kind, GiveUpKind::QuicUnavailable);
        assert_eq!(g.advice, Some("--transport=ssh works without UDP"));
    }
}

#[test]
fn a_named_transport_is_used_as_asked() {
    for (name, streams) in [("ssh", 1), ("ssh-native", 1), ("ssh-pool", 4), ("unix", 1)] {
        let p = plan(&request(name), &Observations::default());
        assert_eq!(p.connection.choice, ConnectionPath::Registered(name.into()));
        assert_eq!(p.connection.reason, "asked for");
        assert_eq!(p.protocol.choice, ProtocolVariant::Merkle);
        assert_eq!(p.streams.choice, streams, "{name}");
        assert_eq!(p.explain()[0], format!("decision: {name} (asked for)"));
    }
    let mut r = request("ssh-pool");
    r.streams = Some(3);
    assert_eq!(plan(&r, &Observations::default()).streams.choice, 3);
    r.streams = Some(9);
    assert_eq!(plan(&r, &Observations::default()).streams.choice, 4);
}

#[test]
fn forced_rsync_protocol_goes_over_a_remote_shell() {
    for (t, shell) in [
        ("auto", "ssh"),
        ("ssh", "ssh"),
        ("quic", "ssh"),
        ("ssh-pool", "ssh"),
        ("ssh-native", "ssh-native"),
    ] {
        let mut r = request(t);
        r.protocol = ProtocolAsk::Rsync { max_version: 31 };
        let p = plan(&r, &Observations::default());
        assert_eq!(
            p.connection.choice,
            ConnectionPath::Registered(shell.into()),
            "{t}"
        );
        assert_eq!(
            p.protocol.choice,
            ProtocolVariant::Rsync {
                max_version: Some(31),
                remote_program: RemoteProgram::AsConfigured
            }
        );
        assert_eq!(p.streams.choice, 1);
    }
}

#[test]
fn an_unknown_transport_is_refused_with_the_names() {
    for target in [
        Target::Shell { host: "h".into() },
        Target::ArsyncDaemon {
            host: "h".into(),
            port: 8730,
        },
        Target::RsyncDaemon {
            host: "h".into(),
            port: 873,
        },
    ] {
        let mut r = request("h3");
        r.target = target;
        let e = next_step(&r, &Observations::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--transport=h3: no such transport (this build has auto, mem, ssh, ssh-native, \
             ssh-pool, quic, unix)"
        );
    }
}

#[test]
fn a_local_transport_cannot_reach_a_remote_host() {
    let e = next_step(&request("mem"), &Observations::default()).unwrap_err();
    assert_eq!(
        e,
        NegotiateError::LocalOnly {
            name: "mem".into(),
            remote: ["auto", "ssh", "ssh-native", "ssh-pool", "quic", "unix"]
                .map(String::from)
                .to_vec(),
        }
    );
    assert!(e
        .to_string()
        .starts_with("--transport=mem cannot reach a remote host"));
    assert!(matches!(
        crate::SyncError::from(e).exit_code(),
        crate::ExitCode::Syntax
    ));
}

#[test]
fn daemons() {
    let mut r = request("auto");
    r.target = Target::RsyncDaemon {
        host: "h".into(),
        port: 873,
    };
    let p = plan(&r, &Observations::default());
    assert_eq!(p.connection.choice, ConnectionPath::RsyncDaemon);
    assert_eq!(
        p.protocol.choice,
        ProtocolVariant::Rsync {
            max_version: None,
            remote_program: RemoteProgram::AsConfigured
        }
    );
    r.protocol = ProtocolAsk::Rsync { max_version: 30 };
    let p = plan(&r, &Observations::default());
    assert!(matches!(
        p.protocol.choice,
        ProtocolVariant::Rsync {
            max_version: Some(30),
            ..
        }
    ));
    let mut r = request("auto");
    r.target = Target::ArsyncDaemon {
        host: "h".into(),
        port: 8730,
    };
    // Issue 16/17: under `auto`, TLS to the TCP port first.
    let p = plan(&r, &Observations::default());
    assert_eq!(
        p.connection.choice,
        ConnectionPath::ArsyncDaemonVia("tls".into())
    );
    assert_eq!(p.protocol.choice, ProtocolVariant::Merkle);
    assert_eq!(p.streams.choice, 1);
    // Its TCP port unreachable: QUIC, within the auto limit.
    let tcp_failed = Observations {
        daemon_tcp_failed: Some("connection refused".into()),
        ..Observations::default()
    };
    assert_eq!(
        step(&r, &tcp_failed),
        Step::Probe(Probe::DaemonQuic {
            limit: AUTO_HANDSHAKE_LIMIT
        })
    );
    let quic_ok = Observations {
        quic: Some(established()),
        ..tcp_failed.clone()
    };
    let p = plan(&r, &quic_ok);
    assert_eq!(p.connection.choice, ConnectionPath::ArsyncDaemon);
    assert!(p.connection.reason.contains("connection refused"));
    assert_eq!(p.streams.choice, DEFAULT_STREAMS);
    // Neither port: give up, saying both.
    for seen in [timed_out(), failed()] {
        let Step::GiveUp(g) = step(
            &r,
            &Observations {
                quic: Some(seen),
                ..tcp_failed.clone()
            },
        ) else {
            panic!("give up");
        };
        assert_eq!(g.kind, GiveUpKind::DaemonUnreachable);
        assert!(g.reason.contains("TCP connection refused"), "{}", g.reason);
    }
    // Named, QUIC is used as asked: no probe.
    r.transport = TransportAsk::from_arg("quic");
    assert_eq!(
        plan(&r, &Observations::default()).connection.choice,
        ConnectionPath::ArsyncDaemon
    );
    // A transport that cannot reach a remote host does not matter to a daemon.
    r.transport = TransportAsk::from_arg("mem");
    assert_eq!(
        plan(&r, &Observations::default()).connection.choice,
        ConnectionPath::ArsyncDaemon
    );
}

#[test]
fn the_explain_lines() {
    let p = plan(&request("auto"), &with_quic(established()));
    assert_eq!(
        p.explain(),
        [
            "decision: quic (remote arsync present, UDP gets through)",
            "decision: arsync's merkle protocol (arsync at both ends)",
            "decision: 4 streams (the default; --streams=N to choose)",
        ]
    );
    assert_eq!(
        established().to_string(),
        "QUIC handshake to 10.0.0.7:40321: ok in 2 ms"
    );
    assert_eq!(
        timed_out().to_string(),
        "QUIC handshake to 10.0.0.7:40321: failed after 3000 ms: no QUIC handshake within 3s"
    );
    let Some(RemoteArsync::OffersQuic(o)) = offered().remote else {
        unreachable!()
    };
    assert_eq!(
        o.to_string(),
        "ok in 95 ms (QUIC offered on UDP port 40321, certificate SHA256:abc)"
    );
}

// Issue 17, mptcp:
#[test]
fn tls_and_mptcp_reach_only_a_listening_arsync() {
    // Issue 17, h2 and h3: and `h2`, `h3`.
    for name in [names::TLS, names::MPTCP, names::H2, names::H3] {
        let mut r = request(name);
        r.registered.push(info(name, false, 1));
        let e = next_step(&r, &Observations::default()).unwrap_err();
        assert_eq!(e, NegotiateError::DaemonOnly { name: name.into() });
        assert!(e.to_string().contains("arsync://HOST"), "{e}");
        // To `arsync serve` it is the daemon's connection, whatever the transport.
        r.target = Target::ArsyncDaemon {
            host: "backup".into(),
            port: 8730,
        };
        let Ok(Step::Connect(plan)) = next_step(&r, &Observations::default()) else {
            panic!("{name}: no plan");
        };
        assert_eq!(
            plan.connection.choice,
            ConnectionPath::ArsyncDaemonVia(name.into())
        );
        assert_eq!(
            plan.explain()[0],
            format!("decision: {name} to arsync serve (arsync:// names a listening arsync serve)")
        );
    }
}

// Issue 17, h2:
#[test]
fn auto_goes_to_arsync_serve_by_http2_where_an_http_proxy_is_set() {
    let mut r = request("auto");
    r.registered.push(info(names::H2, false, 4));
    r.target = Target::ArsyncDaemon {
        host: "backup".into(),
        port: 8730,
    };
    r.http_proxy = true;
    // No QUIC probe: UDP and raw TLS do not go through an HTTP proxy.
    let p = plan(&r, &Observations::default());
    assert_eq!(
        p.connection.choice,
        ConnectionPath::ArsyncDaemonVia("h2".into())
    );
    assert!(p.connection.reason.contains("only HTTP/2 goes through it"));
    assert_eq!(p.streams.choice, DEFAULT_STREAMS);
    // `host:path` has no proxy path: the SSH login as ever.
    let mut shell = request("auto");
    shell.http_proxy = true;
    assert_eq!(
        step(&shell, &Observations::default()),
        Step::Probe(Probe::BootstrapLogin { via: "ssh".into() })
    );
}

// Issue 16, native login:
/// An offer from a login whose TCP RTT the built-in client measured as `rtt`.
fn offered_over(rtt: Option<Duration>) -> Observations {
    let mut seen = offered();
    if let Some(RemoteArsync::OffersQuic(o)) = &mut seen.remote {
        o.login_rtt = rtt;
    }
    seen
}

#[test]
fn auto_keeps_a_short_links_native_login_and_tries_quic_on_a_long_one() {
    let short = offered_over(Some(Duration::from_micros(900)));
    let p = plan(&request("auto"), &short);
    assert_eq!(p.connection.choice, ConnectionPath::BootstrapChannel);
    assert!(
        p.connection
            .reason
            .starts_with("TCP RTT 0.9 ms: a short link"),
        "{}",
        p.connection.reason
    );
    assert_eq!(p.streams.choice, 1);
    let handshake = Step::Probe(Probe::QuicHandshake {
        limit: Duration::from_secs(3),
    });
    // A loopback address whose RTT read long (a loaded machine) is still this machine.
    let mut busy_here = offered_over(Some(Duration::from_millis(6)));
    if let Some(RemoteArsync::OffersQuic(o)) = &mut busy_here.remote {
        o.addr = Some(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let p = plan(&request("auto"), &busy_here);
    assert_eq!(p.connection.choice, ConnectionPath::BootstrapChannel);
    assert!(
        p.connection.reason.contains("a loopback address"),
        "{}",
        p.connection.reason
    );
    // A long link, a login through the system ssh (no RTT), `--streams`, `--transport=quic`:
    // QUIC is tried.
    let long = offered_over(Some(Duration::from_millis(40)));
    assert_eq!(step(&request("auto"), &long), handshake);
    assert_eq!(step(&request("auto"), &offered_over(None)), handshake);
    let mut streams = request("auto");
    streams.streams = Some(4);
    assert_eq!(step(&streams, &short), handshake);
    assert!(matches!(
        step(&request("quic"), &short),
        Step::Probe(Probe::QuicHandshake { .. })
    ));
}

// Issue 17: auto's transport to `arsync serve`: MPTCP where this host has more than one path,
// HTTP on a web port.

/// `arsync://h:port/` under `auto`, with the TCP transports registered as the binary does.
fn daemon_request(port: u16) -> Request {
    let mut r = request("auto");
    r.target = Target::ArsyncDaemon {
        host: "h".into(),
        port,
    };
    for (name, streams) in [("tls", 1), ("mptcp", 1), ("h2", 64), ("h3", 64)] {
        r.registered.push(info(name, false, streams));
    }
    r
}

/// What `ip mptcp endpoint show` printed in a namespace with three endpoints (iproute2 6.1).
const ENDPOINTS: &str = "10.77.0.1 id 1 subflow \n\
                         10.77.0.2 id 2 subflow fullmesh dev lo \n\
                         10.77.0.3 id 3 signal \n";

fn with_mptcp(setup: daemon_paths::MptcpSetup) -> Observations {
    Observations {
        mptcp: Some(setup),
        ..Observations::default()
    }
}

fn via(name: &str) -> ConnectionPath {
    ConnectionPath::ArsyncDaemonVia(name.into())
}

#[test]
fn the_mptcp_setup_is_read_from_the_kernels_answers() {
    use daemon_paths::MptcpSetup;
    let s = MptcpSetup::from_kernel(Ok("1\n"), Some(Ok(ENDPOINTS)));
    assert!(s.enabled && s.multipath());
    assert_eq!(
        s.subflow_endpoints,
        [
            "10.77.0.1 id 1 subflow",
            "10.77.0.2 id 2 subflow fullmesh dev lo"
        ]
    );
    assert_eq!(
        s.to_string(),
        "local MPTCP: enabled, subflows from 10.77.0.1 id 1 subflow; \
         10.77.0.2 id 2 subflow fullmesh dev lo"
    );
    // Only a `signal` endpoint (it announces, it opens no subflow): one path.
    let s = MptcpSetup::from_kernel(Ok("1"), Some(Ok("10.77.0.3 id 3 signal\n")));
    assert!(!s.multipath());
    assert_eq!(
        s.to_string(),
        "local MPTCP: no MPTCP endpoint with the subflow or fullmesh flag, so no second path"
    );
    // Off in the kernel: its endpoints do not matter.
    let s = MptcpSetup::from_kernel(Ok("0\n"), Some(Ok(ENDPOINTS)));
    assert!(!s.multipath() && s.subflow_endpoints.is_empty());
    // No sysctl (no MPTCP in the kernel), no `ip`: no.
    let s = MptcpSetup::from_kernel(Err("No such file or directory".into()), None);
    assert!(!s.multipath());
    assert!(s
        .to_string()
        .ends_with("is not 1): No such file or directory"));
    let s = MptcpSetup::from_kernel(Ok("1"), Some(Err("ip: not found".into())));
    assert!(!s.multipath());
    assert!(s.to_string().ends_with("no second path: ip: not found"));
}

#[test]
fn auto_takes_mptcp_where_this_host_has_more_than_one_path() {
    use daemon_paths::MptcpSetup;
    let r = daemon_request(8730);
    // Not known yet: the local probe first.
    assert_eq!(
        step(&r, &Observations::default()),
        Step::Probe(Probe::LocalMptcp)
    );
    let multipath = with_mptcp(MptcpSetup::from_kernel(Ok("1"), Some(Ok(ENDPOINTS))));
    let p = plan(&r, &multipath);
    assert_eq!(p.connection.choice, via("mptcp"));
    assert!(
        p.connection
            .reason
            .contains("more than one path (MPTCP enabled, 2 endpoints opening subflows)"),
        "{}",
        p.connection.reason
    );
    assert_eq!(p.streams.choice, 1);
    // Its TCP port unreachable: the UDP port next, as after TLS.
    let failed = Observations {
        daemon_tcp_failed: Some("connection refused".into()),
        ..multipath.clone()
    };
    assert!(daemon_paths::tcp_failure_observed(
        &r,
        &multipath,
        &p.connection.choice
    ));
    assert_eq!(
        step(&r, &failed),
        Step::Probe(Probe::DaemonQuic {
            limit: AUTO_HANDSHAKE_LIMIT
        })
    );
}

#[test]
fn auto_stays_with_tls_where_mptcp_has_one_path() {
    use daemon_paths::MptcpSetup;
    let r = daemon_request(8730);
    for (setup, why) in [
        (
            MptcpSetup::from_kernel(Ok("1"), Some(Ok(""))),
            "; not MPTCP: no MPTCP endpoint with the subflow or fullmesh flag",
        ),
        (
            MptcpSetup::from_kernel(Ok("0"), Some(Ok(ENDPOINTS))),
            "; not MPTCP: MPTCP is off (net.mptcp.enabled is not 1)",
        ),
        (
            MptcpSetup::from_kernel(Ok("1"), Some(Err("ip: not found".into()))),
            "no second path: ip: not found",
        ),
    ] {
        let p = plan(&r, &with_mptcp(setup));
        assert_eq!(p.connection.choice, via("tls"));
        assert!(
            p.connection.reason.starts_with("TCP first: in the bench")
                && p.connection.reason.contains(why),
            "{}",
            p.connection.reason
        );
    }
    // A build without `mptcp` does not probe.
    let mut r = r;
    r.registered.retain(|t| t.name != "mptcp");
    assert_eq!(
        plan(&r, &Observations::default()).connection.choice,
        via("tls")
    );
}

#[test]
fn auto_speaks_http_on_a_web_port() {
    let r = daemon_request(443);
    // h2 over TCP first, without asking about MPTCP (an HTTP front forwards only HTTP).
    let p = plan(&r, &Observations::default());
    assert_eq!(p.connection.choice, via("h2"));
    assert!(
        p.connection.reason.starts_with(
            "port 443 is a web port (HTTPS's port): what listens there is most likely an HTTP \
             front"
        ),
        "{}",
        p.connection.reason
    );
    assert_eq!(p.streams.choice, DEFAULT_STREAMS);
    assert!(daemon_paths::tcp_failure_observed(
        &r,
        &Observations::default(),
        &p.connection.choice
    ));
    // Its TCP side unreachable: h3 on the UDP port, not raw QUIC (no QUIC probe).
    let failed = Observations {
        daemon_tcp_failed: Some("connection refused".into()),
        ..Observations::default()
    };
    let p = plan(&r, &failed);
    assert_eq!(p.connection.choice, via("h3"));
    assert!(
        p.connection.reason.ends_with(
            "its TCP side could not be reached (connection refused): HTTP/3 on its UDP port"
        ),
        "{}",
        p.connection.reason
    );
    // Where h3 fails too, that is the run's error: no second round.
    assert!(!daemon_paths::tcp_failure_observed(
        &r,
        &failed,
        &p.connection.choice
    ));
    // Another port made a web port by ARSYNC_WEB_PORTS; the others keep their order.
    let mut r = daemon_request(8443);
    r.web_ports = daemon_paths::parse_web_ports("8443, 9443 x 0 70000");
    assert_eq!(r.web_ports, [8443, 9443]);
    let p = plan(&r, &Observations::default());
    assert_eq!(p.connection.choice, via("h2"));
    assert!(p.connection.reason.contains("(named in ARSYNC_WEB_PORTS)"));
    r.target = Target::ArsyncDaemon {
        host: "h".into(),
        port: 8730,
    };
    assert_eq!(
        step(&r, &failed),
        Step::Probe(Probe::DaemonQuic {
            limit: AUTO_HANDSHAKE_LIMIT
        })
    );
    // Named, as asked; an HTTP proxy still means h2 and no second round.
    let mut r = daemon_request(443);
    r.transport = TransportAsk::from_arg("tls");
    assert_eq!(
        plan(&r, &Observations::default()).connection.choice,
        via("tls")
    );
    assert!(!daemon_paths::tcp_failure_observed(
        &r,
        &Observations::default(),
        &via("tls")
    ));
    let mut r = daemon_request(8730);
    r.http_proxy = true;
    let p = plan(&r, &Observations::default());
    assert_eq!(p.connection.choice, via("h2"));
    assert!(!daemon_paths::tcp_failure_observed(
        &r,
        &Observations::default(),
        &via("h2")
    ));
}
