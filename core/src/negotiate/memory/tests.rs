//! The memory's format (round trip, a damaged or foreign file, expiry, eviction), what a
//! run's observations teach it, and the decisions a remembered fact leads to.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::super::*;
use super::*;
use crate::negotiate::tests::{established, offered, timed_out};

/// 2026-12-06 18:10 UTC.
const NOW: UnixTime = UnixTime(1_796_580_600);

fn request(transport: &str, protocol: ProtocolAsk) -> Request {
    Request {
        protocol,
        ..crate::negotiate::tests::request(transport)
    }
}

/// What a run that saw `seen` leaves remembered, read back `later` seconds after.
fn remembered_after(seen: &Observations, later: u64) -> HostFacts {
    let mut m = HostMemory::default();
    m.entry("backup").unwrap().learn(seen, NOW);
    HostMemory::parse(&m.to_text())
        .memory
        .fresh("backup", NOW.plus(later))
}

fn learned_blocked() -> HostFacts {
    remembered_after(
        &Observations {
            quic: Some(timed_out()),
            ..offered()
        },
        60,
    )
}

#[test]
fn dates_read_as_utc() {
    assert_eq!(NOW.to_string(), "2026-12-06 18:10 UTC");
    assert_eq!(UnixTime(0).to_string(), "1970-01-01 00:00 UTC");
    assert_eq!(UnixTime(951_782_400).to_string(), "2000-02-29 00:00 UTC");
}

#[test]
fn every_fact_survives_the_round_trip() {
    let mut m = HostMemory::default();
    let f = m.entry("alice@backup:2222").unwrap();
    f.learn(
        &Observations {
            quic: Some(established()),
            // Issue 16, remote CPU:
            remote_cpu: Some(700_000_000),
            ..offered()
        },
        NOW,
    );
    f.learn_link(
        LinkSample {
            rtt: Duration::from_micros(12_345),
            rate: Some(50 << 20),
        },
        NOW,
    );
    f.learn_serve_port(4433, NOW);
    m.entry("other").unwrap().learn(
        &Observations {
            remote: Some(RemoteArsync::NotFound),
            ..Default::default()
        },
        NOW,
    );
    let text = m.to_text();
    assert!(text.starts_with(HEADER), "{text}");
    let back = HostMemory::parse(&text);
    assert!(!back.foreign);
    assert_eq!(back.skipped, 0);
    assert_eq!(back.memory, m);
    let f = back.memory.fresh("alice@backup:2222", NOW);
    assert_eq!(f.rtt(), Some(Duration::from_micros(12_345)));
    assert_eq!(f.rate(), Some(50 << 20));
    assert_eq!(f.ssh_login(), Some(Duration::from_millis(95)));
    assert_eq!(f.serve_port(), Some(4433));
    assert_eq!(f.remote_chunking(), Some(700_000_000));
    assert!(text.contains("chunking-bytes-per-s 700000000 "), "{text}");
    assert_eq!(f.udp.unwrap().value, UdpReach::GetsThrough);
    assert_eq!(
        back.memory.fresh("other", NOW).remote.unwrap().value,
        RemoteKind::OnlyRsync
    );
}

#[test]
fn without_a_session_sample_the_handshake_is_the_rtt() {
    let f = remembered_after(
        &Observations {
            quic: Some(established()),
            ..offered()
        },
        0,
    );
    assert_eq!(f.rtt(), Some(Duration::from_millis(2)));
    assert_eq!(f.rate(), None);
}

#[test]
fn a_foreign_or_damaged_file_is_ignored_not_an_error() {
    for foreign in [
        "",
        "arsync host memory 2\nhost backup\nudp blocked 1 99999999999\n",
        "\u{0}\u{1}binary garbage",
        "{\"json\": true}",
    ] {
        let p = HostMemory::parse(foreign);
        assert!(p.foreign, "{foreign:?}");
        assert!(p.memory.is_empty());
    }
    let huge = format!("{HEADER}\n{}", "# x\n".repeat(70_000));
    assert!(HostMemory::parse(&huge).foreign);

    let good = learned_blocked();
    let mut m = HostMemory::default();
    *m.entry("backup").unwrap() = good.clone();
    let text = m.to_text();
    let damaged = format!(
        "{text}udp sideways 1 2\nssh-login-us many 1 2\nsession-rtt-us 99999999999999 1 2\n\
         rate-bytes-per-s 0 1 2\nserve-port 70000 1 2\nwhat is this\nhost two words\n\
         host\nfuture-fact 1 2 3\nudp blocked\n"
    );
    let p = HostMemory::parse(&damaged);
    assert!(!p.foreign);
    assert_eq!(p.skipped, 10);
    assert_eq!(p.memory.fresh("backup", NOW.plus(60)), good);
    // A fact before any host line is skipped; the hosts after it are read.
    let p = HostMemory::parse(&format!(
        "{HEADER}\nudp blocked 1 2\n{}",
        &text[HEADER.len() + 1..]
    ));
    assert_eq!(p.skipped, 1);
    assert_eq!(p.memory.len(), 1);
}

#[test]
fn a_key_that_cannot_be_a_line_is_not_remembered() {
    assert_eq!(
        host_key(Some("me"), "backup", Some(2222)).as_deref(),
        Some("me@backup:2222")
    );
    assert_eq!(host_key(None, "backup", None).as_deref(), Some("backup"));
    assert_eq!(host_key(None, "two words", None), None);
    assert_eq!(host_key(None, "new\nline", None), None);
    assert_eq!(host_key(None, &"x".repeat(300), None), None);
    assert!(HostMemory::default().entry("a b").is_none());
}

#[test]
fn facts_expire_each_after_its_own_time() {
    let f = learned_blocked();
    assert_eq!(f.udp.unwrap().expires, NOW.plus(UDP_BLOCKED_FOR));
    assert!(udp_blocked(&f).is_some());
    let later = remembered_after(
        &Observations {
            quic: Some(timed_out()),
            ..offered()
        },
        UDP_BLOCKED_FOR,
    );
    assert!(later.udp.is_none(), "a day later UDP is tried again");
    assert!(later.ssh_login.is_none());

    let only = Observations {
        remote: Some(RemoteArsync::NotFound),
        ..Default::default()
    };
    assert!(only_rsync(&remembered_after(&only, ONLY_RSYNC_FOR - 1)).is_some());
    assert!(only_rsync(&remembered_after(&only, ONLY_RSYNC_FOR)).is_none());
}

#[test]
fn pruning_drops_expired_facts_and_evicts_the_oldest_hosts() {
    let mut m = HostMemory::default();
    for i in 0..(MAX_HOSTS + 10) as u64 {
        m.entry(&format!("h{i}")).unwrap().learn(
            &Observations {
                quic: Some(timed_out()),
                ..offered()
            },
            NOW.plus(i),
        );
    }
    m.prune(NOW.plus(100));
    assert_eq!(m.len(), MAX_HOSTS);
    for i in 0..10 {
        assert!(m.get(&format!("h{i}")).is_none(), "h{i}, the oldest, went");
    }
    assert!(m.get("h10").is_some());
    m.prune(NOW.plus(2 * DAY));
    assert!(m.is_empty(), "everything expired");
}

#[test]
fn a_fact_that_proves_wrong_is_replaced() {
    let mut f = learned_blocked();
    f.learn(
        &Observations {
            quic: Some(established()),
            ..offered()
        },
        NOW.plus(100),
    );
    assert_eq!(f.udp.unwrap().value, UdpReach::GetsThrough);
    assert!(udp_blocked(&f).is_none());
    let mut f = remembered_after(
        &Observations {
            remote: Some(RemoteArsync::NotFound),
            ..Default::default()
        },
        10,
    );
    f.learn(&offered(), NOW.plus(20));
    assert_eq!(f.remote.unwrap().value, RemoteKind::Arsync);
    assert!(only_rsync(&f).is_none());
}

#[test]
fn forgetting_a_host() {
    let mut m = HostMemory::default();
    *m.entry("backup").unwrap() = learned_blocked();
    assert!(m.forget("backup"));
    assert!(!m.forget("backup"));
    assert!(m.fresh("backup", NOW).is_empty());
}

#[test]
fn remembered_udp_blocked_skips_the_handshake() {
    let r = request("auto", ProtocolAsk::Auto);
    // No bootstrap login either: the plain server command on an ssh login.
    let mut seen = Observations {
        remembered: learned_blocked(),
        ..Default::default()
    };
    let Step::Connect(plan) = next_step(&r, &seen).unwrap() else {
        panic!("no bootstrap login, no handshake probe: connect at once")
    };
    assert_eq!(
        plan.connection.choice,
        ConnectionPath::Registered("ssh".into())
    );
    assert_eq!(
        plan.explain()[0],
        "decision: ssh (UDP blocked, remembered: learned 2026-12-06 18:10 UTC, expires \
         2026-12-07 18:10 UTC; the QUIC handshake is not tried; no bootstrap either)"
    );
    assert_eq!(plan.protocol.choice, ProtocolVariant::Merkle);
    assert_eq!(plan.streams.choice, 1);
    // That login's exit 127 leads to rsync's protocol, as without the memory.
    seen.remote = Some(RemoteArsync::NotFound);
    let Step::Connect(plan) = next_step(&r, &seen).unwrap() else {
        panic!("rsync's protocol")
    };
    assert!(matches!(
        plan.protocol.choice,
        ProtocolVariant::Rsync { .. }
    ));
    // A bootstrap login already made (the remote offered QUIC) carries the session.
    seen.remote = offered().remote;
    let Step::Connect(plan) = next_step(&r, &seen).unwrap() else {
        panic!("no handshake probe: connect at once")
    };
    assert_eq!(plan.connection.choice, ConnectionPath::BootstrapChannel);
}

#[test]
fn quic_asked_for_is_tried_despite_the_memory() {
    let r = request("quic", ProtocolAsk::Auto);
    let seen = Observations {
        remembered: learned_blocked(),
        ..offered()
    };
    assert!(matches!(
        next_step(&r, &seen).unwrap(),
        Step::Probe(Probe::QuicHandshake { .. })
    ));
}

#[test]
fn remembered_udp_ok_changes_nothing() {
    let r = request("auto", ProtocolAsk::Auto);
    let ok = remembered_after(
        &Observations {
            quic: Some(established()),
            ..offered()
        },
        60,
    );
    let seen = Observations {
        remembered: ok,
        ..offered()
    };
    assert!(matches!(
        next_step(&r, &seen).unwrap(),
        Step::Probe(Probe::QuicHandshake { .. })
    ));
}

#[test]
fn remembered_only_rsync_skips_the_bootstrap_login() {
    let only = remembered_after(
        &Observations {
            remote: Some(RemoteArsync::NotFound),
            ..Default::default()
        },
        60,
    );
    let seen = Observations {
        remembered: only.clone(),
        ..Default::default()
    };
    let Step::Connect(plan) = next_step(&request("auto", ProtocolAsk::Auto), &seen).unwrap() else {
        panic!("rsync's protocol at once")
    };
    assert_eq!(
        plan.protocol.choice,
        ProtocolVariant::Rsync {
            max_version: None,
            remote_program: RemoteProgram::Rsync,
        }
    );
    assert_eq!(
        plan.explain()[0],
        "decision: rsync's protocol over ssh (the remote host has only rsync, remembered: \
         learned 2026-12-06 18:10 UTC, expires 2026-12-06 19:10 UTC; no bootstrap login)"
    );
    // --protocol=merkle (or --rsync-path): arsync is tried all the same.
    let seen = Observations {
        remembered: only,
        ..Default::default()
    };
    assert!(matches!(
        next_step(&request("auto", ProtocolAsk::Merkle), &seen).unwrap(),
        Step::Probe(Probe::BootstrapLogin { .. })
    ));
}

#[test]
fn the_remembered_explain_lines() {
    let mut f = learned_blocked();
    f.learn_link(
        LinkSample {
            rtt: Duration::from_millis(40),
            rate: Some(3 << 20),
        },
        NOW,
    );
    let when = "(learned 2026-12-06 18:10 UTC, expires 2026-12-07 18:10 UTC)";
    assert_eq!(
        f.explain("backup"),
        [
            format!("remembered: UDP to backup blocked {when}"),
            format!("remembered: backup has arsync {when}"),
            format!("remembered: ssh login to backup 95 ms {when}"),
            format!("remembered: session RTT to backup 40 ms {when}"),
            format!("remembered: delivery rate from backup 3.0 MiB/s {when}"),
        ]
    );
}

#[test]
fn a_session_sample_has_a_rate_only_when_it_moved_enough() {
    let rtt = Duration::from_millis(40);
    let small = LinkSample::from_session(rtt, MIN_RATE_BYTES - 1, Duration::from_secs(1));
    assert_eq!(small.rate, None);
    assert_eq!(
        small.to_string(),
        "RTT 40 ms, too little moved to tell a rate"
    );
    let big = LinkSample::from_session(rtt, 64 << 20, Duration::from_secs(2));
    assert_eq!(big.rate, Some(32 << 20));
    assert_eq!(big.to_string(), "RTT 40 ms, 32.0 MiB/s delivered");
    assert_eq!(
        LinkSample::from_session(rtt, 64 << 20, Duration::ZERO).rate,
        None
    );
}

#[test]
fn a_remembered_fact_does_not_hide_a_usage_error() {
    let mut r = request("mem", ProtocolAsk::Auto);
    r.registered.push(TransportInfo {
        name: "mem".into(),
        local_only: true,
        max_streams: 64,
    });
    let seen = Observations {
        remembered: remembered_after(
            &Observations {
                remote: Some(RemoteArsync::NotFound),
                ..Default::default()
            },
            60,
        ),
        ..Default::default()
    };
    assert!(matches!(
        next_step(&r, &seen),
        Err(NegotiateError::LocalOnly { .. })
    ));
}

/// Issue 16/17: `arsync://` under `auto` goes to `arsync serve`'s TCP port first, whatever is
/// remembered of UDP; named `quic`, it still goes by QUIC.
#[test]
fn arsync_urls_go_to_the_tcp_port_first_whatever_udp_is_remembered() {
    let mut r = request("auto", ProtocolAsk::Auto);
    r.target = Target::ArsyncDaemon {
        host: "backup".into(),
        port: 8730,
    };
    let seen = Observations {
        remembered: learned_blocked(),
        ..Observations::default()
    };
    let Ok(Step::Connect(plan)) = next_step(&r, &seen) else {
        panic!("expected a plan");
    };
    assert_eq!(
        plan.connection.choice,
        ConnectionPath::ArsyncDaemonVia("tls".into())
    );
    assert!(
        plan.connection.reason.starts_with("TCP first"),
        "{}",
        plan.connection.reason
    );
    r.transport = TransportAsk::from_arg("quic");
    let Ok(Step::Connect(plan)) = next_step(&r, &seen) else {
        panic!("expected a plan");
    };
    assert_eq!(plan.connection.choice, ConnectionPath::ArsyncDaemon);
}

// Issue 16, pool:
/// UDP remembered blocked on a link whose remembered bandwidth-delay product is more than one
/// SSH channel's window: the pool (its registered width); a thinner link keeps one login.
#[test]
fn remembered_blocked_on_a_fat_link_takes_the_pool() {
    let r = request("auto", ProtocolAsk::Auto);
    let with_link = |rtt_ms: u64, rate: u64| {
        let mut facts = learned_blocked();
        facts.learn_link(
            LinkSample {
                rtt: Duration::from_millis(rtt_ms),
                rate: Some(rate),
            },
            NOW,
        );
        Observations {
            remembered: facts,
            ..Default::default()
        }
    };
    // 1 Gbit/s × 50 ms: 6.2 MB in flight, three SSH windows.
    let Step::Connect(plan) = next_step(&r, &with_link(50, 125_000_000)).unwrap() else {
        panic!("connect at once")
    };
    assert_eq!(
        plan.connection.choice,
        ConnectionPath::Registered("ssh-pool".into())
    );
    assert!(
        plan.connection
            .reason
            .contains("bandwidth-delay product (6.2 MB)")
            && plan.connection.reason.contains("window (2.1 MB)"),
        "{}",
        plan.connection.reason
    );
    assert_eq!(plan.streams.choice, 4);
    // 100 Mbit/s × 50 ms: 625 KB, within one window.
    let Step::Connect(plan) = next_step(&r, &with_link(50, 12_500_000)).unwrap() else {
        panic!("connect at once")
    };
    assert_eq!(
        plan.connection.choice,
        ConnectionPath::Registered("ssh".into())
    );
}

/// The plan of `step`, which must connect at once (no bootstrap login) with one SSH login
/// carrying arsync's merkle protocol on one stream.
fn one_ssh_login(step: Step) -> Plan {
    let plan = match step {
        Step::Connect(plan) => plan,
        other => panic!("no bootstrap login: connect at once, not {other:?}"),
    };
    assert_eq!(
        plan.connection.choice,
        ConnectionPath::Registered("ssh".into())
    );
    assert_eq!(plan.protocol.choice, ProtocolVariant::Merkle);
    assert_eq!(plan.streams.choice, 1);
    plan
}

// Issue 16, the window fits:
/// A remembered link whose bandwidth-delay product is at most half of one SSH channel's window
/// takes one SSH login before any probe; a fatter one, a short one, one without a remembered
/// rate, and `--streams=N` keep the bootstrap login (then QUIC).
#[test]
fn a_link_one_ssh_window_fills_takes_one_ssh_login() {
    let r = request("auto", ProtocolAsk::Auto);
    let login = Step::Probe(Probe::BootstrapLogin { via: "ssh".into() });
    let with_link = |rtt_ms: u64, rate: Option<u64>| {
        let mut facts = remembered_after(&offered(), 60);
        facts.learn_link(
            LinkSample {
                rtt: Duration::from_millis(rtt_ms),
                rate,
            },
            NOW,
        );
        before_login(facts)
    };
    // The WAN bench's QUIC session: 100 Mbit/s less overheads, 50 ms: 520 KB in flight.
    let plan = one_ssh_login(next_step(&r, &with_link(50, Some(10_400_000))).unwrap());
    assert_eq!(
        plan.explain()[0],
        "decision: ssh (the remembered link (RTT 50 ms, 10.4 MB/s delivered) holds 520 KB \
         in flight, at most half of one SSH channel's window (2.1 MB): one SSH login fills \
         it, no bootstrap, no QUIC handshake)"
    );
    // Half the window, and one byte a second past it (1 s RTT: the BDP is the rate).
    let half = crate::negotiate::decide::SSH_CHANNEL_WINDOW / 2;
    assert!(matches!(
        next_step(&r, &with_link(1000, Some(half))).unwrap(),
        Step::Connect(_)
    ));
    assert_eq!(
        next_step(&r, &with_link(1000, Some(half + 1))).unwrap(),
        login
    );
    // The fat WAN's small-file session (31 MB/s × 50 ms = 1.55 MB): QUIC's streams.
    assert_eq!(
        next_step(&r, &with_link(50, Some(31_000_000))).unwrap(),
        login
    );
    // A short link (and a loaded loopback's few ms) keeps the bootstrap login's word.
    assert_eq!(
        next_step(&r, &with_link(6, Some(1_000_000))).unwrap(),
        login
    );
    // No rate remembered: nothing to go by.
    assert_eq!(next_step(&r, &with_link(50, None)).unwrap(), login);
    // `--streams=N` and `--transport=quic` ask for QUIC.
    let mut streams = request("auto", ProtocolAsk::Auto);
    streams.streams = Some(4);
    assert_eq!(
        next_step(&streams, &with_link(50, Some(10_400_000))).unwrap(),
        login
    );
    assert_eq!(
        next_step(
            &request("quic", ProtocolAsk::Auto),
            &with_link(50, Some(10_400_000))
        )
        .unwrap(),
        login
    );
}

/// The remembered rate is the best a session delivered in the last day: a slower session
/// (CPU-bound) leaves it, a faster one replaces it, and once it expires any sample does.
#[test]
fn the_remembered_rate_is_the_best_of_the_last_day() {
    let mut f = HostFacts::default();
    let sample = |rate| LinkSample {
        rtt: Duration::from_millis(50),
        rate: Some(rate),
    };
    f.learn_link(sample(100_000_000), NOW);
    // The fat WAN's upgrade: 91 MB in 4.9 s, the CPU the limit.
    f.learn_link(sample(18_500_000), NOW.plus(3600));
    assert_eq!(f.rate(), Some(100_000_000));
    f.learn_link(sample(120_000_000), NOW.plus(7200));
    assert_eq!(f.rate(), Some(120_000_000));
    // A day after the best was learned, the next sample is taken as it is.
    f.learn_link(sample(18_500_000), NOW.plus(7200 + DAY + 1));
    assert_eq!(f.rate(), Some(18_500_000));
}

// Issue 16, little moved: what the last run of the same paths moved.

/// The tag of a push of `/data/` to `backup:/bak/`.
fn data_to_bak() -> PathsTag {
    PathsTag::of(false, &["/data/"], &["/bak/"])
}

/// A run of [`data_to_bak`] that moved `wire_bytes` and sent `files_sent` of 10,000 files.
fn moved(wire_bytes: u64, files_sent: u64) -> RunMoved {
    RunMoved {
        paths: data_to_bak(),
        wire_bytes,
        files_sent,
        files: 10_000,
        bytes: 102_400_000,
    }
}

/// What is recalled, `later` seconds after a run over a 50 ms link that moved `run`, for a
/// run of `paths`.
fn recalled_after(run: RunMoved, later: u64, paths: PathsTag) -> HostFacts {
    remembered_after(
        &Observations {
            quic: Some(QuicSeen::Established {
                to: "10.0.0.7:40321".parse().unwrap(),
                took: Duration::from_millis(50),
            }),
            moved: Some(run),
            ..offered()
        },
        later,
    )
    .for_paths(paths)
}

/// Before any probe, with `remembered`.
fn before_login(remembered: HostFacts) -> Observations {
    Observations {
        remembered,
        ..Default::default()
    }
}

#[test]
fn paths_tags_tell_direction_and_paths_apart() {
    let tag = data_to_bak();
    assert_eq!(tag, PathsTag::of(false, &["/data/".to_owned()], &["/bak/"]));
    for other in [
        PathsTag::of(true, &["/data/"], &["/bak/"]),
        PathsTag::of(false, &["/data"], &["/bak/"]),
        PathsTag::of(false, &["/data/", "/bak/"], &[] as &[&str]),
        PathsTag::of(false, &["/da"], &["ta//bak/"]),
        PathsTag::of(false, &["/bak/"], &["/data/"]),
    ] {
        assert_ne!(tag, other);
    }
}

#[test]
fn the_last_run_survives_the_round_trip_and_expires_after_a_week() {
    let run = moved(12_345, 3);
    let mut m = HostMemory::default();
    m.entry("backup").unwrap().learn(
        &Observations {
            moved: Some(run),
            ..Default::default()
        },
        NOW,
    );
    let text = m.to_text();
    let tag = format!("{:016x}", data_to_bak().0);
    assert!(
        text.contains(&format!("last-run {tag}/12345/3/10000/102400000 ")),
        "{text}"
    );
    let back = HostMemory::parse(&text);
    assert_eq!((back.foreign, back.skipped), (false, 0));
    assert_eq!(back.memory, m);
    assert_eq!(
        recalled_after(run, LAST_RUN_FOR - 1, data_to_bak())
            .last_run()
            .map(|l| l.value),
        Some(run)
    );
    assert_eq!(
        recalled_after(run, LAST_RUN_FOR, data_to_bak())
            .last_run()
            .map(|l| l.value),
        None
    );
    // Another run's paths: nothing recalled.
    let other = PathsTag::of(true, &["/data/"], &["/bak/"]);
    assert_eq!(recalled_after(run, 60, other).last_run(), None);
    // The other facts stay whatever the paths.
    assert!(recalled_after(run, 60, other).udp.is_some());
}

#[test]
fn each_set_of_paths_keeps_its_own_last_run_up_to_a_bound() {
    // Two contenders syncing to one host, turn by turn (the bench does): each finds its own.
    let mut f = HostFacts::default();
    let other = PathsTag::of(false, &["/data/"], &["/elsewhere/"]);
    let elsewhere = RunMoved {
        paths: other,
        ..moved(90_000_000, 10_000)
    };
    f.learn_run(moved(40_000, 0), NOW);
    f.learn_run(elsewhere, NOW.plus(1));
    assert_eq!(
        f.clone()
            .for_paths(data_to_bak())
            .last_run()
            .map(|l| l.value),
        Some(moved(40_000, 0))
    );
    assert_eq!(
        f.clone().for_paths(other).last_run().map(|l| l.value),
        Some(elsewhere)
    );
    // A newer run of the same paths replaces the older.
    f.learn_run(moved(50_000, 1), NOW.plus(2));
    assert_eq!(f.runs.len(), 2);
    let mut m = HostMemory::default();
    *m.entry("backup").unwrap() = f.clone();
    let back = HostMemory::parse(&m.to_text());
    assert_eq!(back.memory.get("backup"), Some(&f));
    // Past the bound, the oldest is forgotten.
    for i in 0..MAX_RUNS as u64 {
        let tag = PathsTag::of(true, &[format!("/d{i}")], &["/x"]);
        f.learn_run(
            RunMoved {
                paths: tag,
                ..moved(1, 0)
            },
            NOW.plus(10 + i),
        );
    }
    assert_eq!(f.runs.len(), MAX_RUNS);
    assert_eq!(f.clone().for_paths(data_to_bak()).last_run(), None);
    // A file with more lines than the bound reads only the bound.
    let mut text = format!("{HEADER}\nhost backup\n");
    for i in 0..=MAX_RUNS as u64 {
        let tag = PathsTag::of(true, &[format!("/d{i}")], &["/x"]).0;
        text.push_str(&format!("last-run {tag:016x}/1/0/10/10 1 2000000000\n"));
    }
    let back = HostMemory::parse(&text);
    assert_eq!(back.skipped, 1);
    assert_eq!(back.memory.get("backup").unwrap().runs.len(), MAX_RUNS);
}

#[test]
fn a_damaged_last_run_line_is_skipped() {
    let tag = format!("{:016x}", data_to_bak().0);
    for bad in [
        format!("{tag}/1/2/3"),
        format!("{tag}/1/2/3/4/5"),
        format!("{tag}/x/2/3/4"),
        format!("{tag}/1/-2/3/4"),
        // More files sent than listed.
        format!("{tag}/1/4/3/4"),
        "abc/1/2/3/4".to_owned(),
        format!("{tag}0/1/2/3/4"),
        format!("{tag}/1/2/3/184467440737095516160"),
    ] {
        let text = format!("{HEADER}\nhost backup\nlast-run {bad} 1 2000000000\n");
        let back = HostMemory::parse(&text);
        assert_eq!(back.skipped, 1, "{bad}");
        assert!(back.memory.is_empty(), "{bad}");
    }
}

#[test]
fn one_ssh_login_carries_the_session_when_the_last_run_moved_little() {
    let r = request("auto", ProtocolAsk::Auto);
    let login = Step::Probe(Probe::BootstrapLogin { via: "ssh".into() });
    // Fresh memory: the bootstrap login, then QUIC, as before.
    assert_eq!(
        next_step(&r, &before_login(HostFacts::default())).unwrap(),
        login
    );
    // An unchanged tree's run (the WAN bench: 4 KB on the wire): one SSH login at once.
    let little = recalled_after(moved(40_000, 0), 3600, data_to_bak());
    let plan = one_ssh_login(next_step(&r, &before_login(little.clone())).unwrap());
    assert_eq!(
        plan.explain()[0],
        "decision: ssh (not a short link (RTT 50 ms, remembered); the last run of these paths \
         moved 40 KB on the wire, 0 of 10000 files sent (102.4 MB listed), remembered: \
         learned 2026-12-06 18:10 UTC, expires 2026-12-13 18:10 UTC; at most 8.4 MB (one SSH \
         channel's window over the 4 round trips the move to QUIC costs): one SSH login \
         carries it, no bootstrap, no QUIC handshake)"
    );
    // A link remembered short keeps the bootstrap login; one whose RTT is no longer
    // remembered (a day of runs without QUIC) does not.
    let mut short = little.clone();
    short.quic_handshake = short.quic_handshake.map(|l| Learned {
        value: Duration::from_millis(2),
        ..l
    });
    assert_eq!(next_step(&r, &before_login(short.clone())).unwrap(), login);
    short.quic_handshake = None;
    assert_eq!(short.rtt(), None);
    let Step::Connect(plan) = next_step(&r, &before_login(short)).unwrap() else {
        panic!("one SSH login")
    };
    assert!(
        plan.connection
            .reason
            .starts_with("not a short link (RTT not remembered); "),
        "{}",
        plan.connection.reason
    );
    // That login's exit 127 leads to rsync's protocol, as without the memory.
    let mut gone = before_login(little.clone());
    gone.remote = Some(RemoteArsync::NotFound);
    let Step::Connect(plan) = next_step(&r, &gone).unwrap() else {
        panic!("rsync's protocol")
    };
    assert!(matches!(
        plan.protocol.choice,
        ProtocolVariant::Rsync { .. }
    ));
    // The bound itself, and one byte past it.
    let at_bound = recalled_after(
        moved(crate::negotiate::decide::LITTLE_MOVED, 40),
        60,
        data_to_bak(),
    );
    assert!(matches!(
        next_step(&r, &before_login(at_bound)).unwrap(),
        Step::Connect(_)
    ));
    let past = recalled_after(
        moved(crate::negotiate::decide::LITTLE_MOVED + 1, 40),
        60,
        data_to_bak(),
    );
    assert_eq!(next_step(&r, &before_login(past)).unwrap(), login);
    // `--streams=N` and `--transport=quic` ask for QUIC: the bootstrap login.
    let mut streams = request("auto", ProtocolAsk::Auto);
    streams.streams = Some(4);
    assert_eq!(
        next_step(&streams, &before_login(little.clone())).unwrap(),
        login
    );
    assert_eq!(
        next_step(
            &request("quic", ProtocolAsk::Auto),
            &before_login(little.clone())
        )
        .unwrap(),
        login
    );
    // After a bootstrap login (made for another reason), QUIC is tried as before.
    let offered = Observations {
        remembered: little,
        ..offered()
    };
    assert!(matches!(
        next_step(&r, &offered).unwrap(),
        Step::Probe(Probe::QuicHandshake { .. })
    ));
}

#[test]
fn a_recorded_run_sequence_moves_between_quic_and_the_channel() {
    // Recorded from the WAN bench's runs to one host (bytes on the wire, files sent): the
    // first backup, a day with nothing changed, a day with a few documents, a large import.
    let r = request("auto", ProtocolAsk::Auto);
    // What each moved, and whether it stayed on the channel (decided by the run before).
    let runs = [
        (104_400_000, 10_000, false),
        (41_000, 0, false),
        (2_300_000, 120, true),
        (1_073_000_000, 1, true),
    ];
    let mut m = HostMemory::default();
    let mut at = NOW;
    for (wire, sent, stays) in runs {
        let facts = m.fresh("backup", at).for_paths(data_to_bak());
        // Each run decides by the one before it; the first by nothing (QUIC).
        assert_eq!(
            matches!(
                next_step(&r, &before_login(facts)).unwrap(),
                Step::Connect(_)
            ),
            stays,
            "the run that then moved {wire} bytes"
        );
        let seen = Observations {
            quic: Some(QuicSeen::Established {
                to: "10.0.0.7:40321".parse().unwrap(),
                took: Duration::from_millis(50),
            }),
            moved: Some(moved(wire, sent)),
            ..offered()
        };
        m.entry("backup").unwrap().learn(&seen, at);
        at = at.plus(DAY);
    }
    let next = m.fresh("backup", at).for_paths(data_to_bak());
    assert_eq!(
        next_step(&r, &before_login(next)).unwrap(),
        Step::Probe(Probe::BootstrapLogin { via: "ssh".into() }),
        "after the large import, the bootstrap and QUIC again"
    );
}
