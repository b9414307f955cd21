//! Every parameter decision from recorded links: a LAN, a 100 ms / 100 Mbit/s WAN, loopback,
//! and nothing measured.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::params::*;
use super::*;
use crate::engine::options::DEFAULT_TREE_LEVELS;

/// A gigabit LAN: 0.3 ms, 125 MB/s.
fn lan() -> LinkEstimate {
    LinkEstimate {
        rtt: Some(Duration::from_micros(300)),
        rate: Some(125_000_000),
        local: false,
    }
}

/// A WAN: 100 ms, 100 Mbit/s.
fn wan() -> LinkEstimate {
    LinkEstimate {
        rtt: Some(Duration::from_millis(100)),
        rate: Some(12_500_000),
        local: false,
    }
}

/// What the per-host memory holds after a session on `link`.
fn remembered(link: LinkEstimate) -> memory::HostFacts {
    let mut facts = memory::HostFacts::default();
    facts.learn_link(
        memory::LinkSample {
            rtt: link.rtt.unwrap_or_default(),
            rate: link.rate,
        },
        memory::UnixTime(1_796_580_600),
    );
    facts
}

/// A fat long link: 100 ms, 10 Gbit/s.
fn fat() -> LinkEstimate {
    LinkEstimate {
        rtt: Some(Duration::from_millis(100)),
        rate: Some(1_250_000_000),
        local: false,
    }
}

fn loopback() -> LinkEstimate {
    LinkEstimate {
        rtt: Some(Duration::from_micros(50)),
        rate: None,
        local: true,
    }
}

fn unknown() -> LinkEstimate {
    LinkEstimate::default()
}

/// A core that chunks and hashes 400 MB/s and compresses 300 MB/s.
fn cpu() -> CpuSpeed {
    CpuSpeed {
        hash_bytes_per_sec: 1_500_000_000,
        chunk_bytes_per_sec: 400_000_000,
        compress_bytes_per_sec: 300_000_000,
    }
}

fn none() -> ParamsAsk {
    ParamsAsk::default()
}

#[test]
fn the_bdp_is_rtt_times_rate_and_needs_both() {
    assert_eq!(wan().bdp(), Some(1_250_000));
    assert_eq!(lan().bdp(), Some(37_500));
    assert_eq!(loopback().bdp(), None);
    assert_eq!(unknown().bdp(), None);
}

#[test]
fn chunks_follow_the_bdp_unless_fixed() {
    assert_eq!(
        chunk_sizing(&none(), &wan()).choice,
        ChunkSizing::ByFile { bdp: 1_250_000 }
    );
    let fat = chunk_sizing(&none(), &fat());
    assert_eq!(fat.choice, ChunkSizing::ByFile { bdp: 125_000_000 });
    // 125 MB of BDP: one round trip's hashes stay under 1/64 of it with 64 KiB chunks.
    assert!(
        fat.reason.contains("a 1 GiB file gets 66 KB chunks"),
        "{}",
        fat.reason
    );
    for link in [loopback(), unknown()] {
        let d = chunk_sizing(&none(), &link);
        assert_eq!(d.choice, ChunkSizing::ByFile { bdp: 0 });
    }
    assert!(chunk_sizing(&none(), &unknown())
        .reason
        .contains("not measured"));
    let asked = ParamsAsk {
        chunk_avg: Some(8192),
        ..none()
    };
    let d = chunk_sizing(&asked, &wan());
    assert_eq!(
        (d.choice, d.reason.as_str()),
        (ChunkSizing::Fixed(8192), "--chunk-size")
    );
}

#[test]
fn tree_levels_grow_with_the_rtt() {
    assert_eq!(tree_levels(&none(), &lan()).choice, DEFAULT_TREE_LEVELS);
    let mid = LinkEstimate {
        rtt: Some(Duration::from_millis(20)),
        ..unknown()
    };
    assert_eq!(tree_levels(&none(), &mid).choice, DEFAULT_TREE_LEVELS + 1);
    let far = tree_levels(&none(), &wan());
    assert_eq!(
        (far.choice, far.reason.as_str()),
        (MAX_AUTO_TREE_LEVELS, "RTT 100 ms")
    );
    assert_eq!(
        tree_levels(&none(), &loopback()).choice,
        DEFAULT_TREE_LEVELS
    );
    let d = tree_levels(&none(), &unknown());
    assert_eq!(d.choice, DEFAULT_TREE_LEVELS);
    assert!(d.reason.contains("not measured"));
    let asked = ParamsAsk {
        tree_levels: Some(1),
        ..none()
    };
    assert_eq!(tree_levels(&asked, &wan()).choice, 1);
}

#[test]
fn streams_cover_the_bdp_with_the_window_within_bounds() {
    let room = |window: u64, max: u32| Some(StreamRoom { window, max });
    // 1.25 MB over 1 MiB windows needs 2: the default 4 stays.
    assert_eq!(
        streams(None, &wan(), room(1 << 20, 64)).choice,
        Some(DEFAULT_STREAMS)
    );
    // 125 MB over 1 MiB windows would need 120: bounded.
    assert_eq!(
        streams(None, &fat(), room(1 << 20, 64)).choice,
        Some(MAX_AUTO_STREAMS)
    );
    let ten = streams(None, &fat(), room(12 << 20, 64));
    assert_eq!(ten.choice, Some(10), "{}", ten.reason);
    // A connection made for 4 streams carries no more, whatever the BDP needs.
    let capped = streams(None, &fat(), room(12 << 20, 4));
    assert_eq!(capped.choice, Some(4));
    assert!(
        capped
            .reason
            .ends_with("needs 10; the connection carries 4"),
        "{}",
        capped.reason
    );
    assert_eq!(streams(None, &wan(), None).choice, None, "no window");
    assert_eq!(streams(None, &loopback(), room(1 << 20, 64)).choice, None);
    assert_eq!(streams(None, &unknown(), room(1 << 20, 64)).choice, None);
    assert_eq!(streams(Some(2), &fat(), room(1 << 20, 64)).choice, Some(2));
}

#[test]
fn compression_pays_only_on_a_link_slower_than_zstd() {
    let c = cpu();
    let slow = compression(&none(), &wan(), Some(&c), None);
    assert_eq!(slow.choice, Some(AUTO_COMPRESS_LEVEL), "{}", slow.reason);
    assert_eq!(compression(&none(), &lan(), Some(&c), None).choice, None);
    assert_eq!(
        compression(&none(), &loopback(), Some(&c), None).choice,
        None
    );
    assert_eq!(
        compression(&none(), &unknown(), Some(&c), None).choice,
        None
    );
    assert_eq!(
        compression(&none(), &wan(), None, None).choice,
        None,
        "CPU unknown"
    );
    let asked = ParamsAsk {
        compress: Some(7),
        ..none()
    };
    assert_eq!(compression(&asked, &lan(), Some(&c), None).choice, Some(7));
}

#[test]
fn data_that_does_not_compress_is_sent_as_it_is() {
    let c = cpu();
    let random = Compressibility {
        sampled: 512_000,
        packed: 512_100,
    };
    let d = compression(&none(), &wan(), Some(&c), Some(&random));
    assert_eq!(d.choice, None);
    assert!(
        d.reason
            .ends_with("a sample of the data compresses only to 100 %"),
        "{}",
        d.reason
    );
    let text = Compressibility {
        sampled: 512_000,
        packed: 128_000,
    };
    assert_eq!(
        compression(&none(), &wan(), Some(&c), Some(&text)).choice,
        Some(AUTO_COMPRESS_LEVEL)
    );
    let asked = ParamsAsk {
        compress: Some(3),
        ..none()
    };
    assert_eq!(
        compression(&asked, &wan(), Some(&c), Some(&random)).choice,
        Some(3),
        "-z wins"
    );
}

#[test]
fn whole_files_when_the_link_outruns_chunking() {
    let c = cpu();
    // Loopback between two arsyncs is as fast as the transport's CPU: not assumed faster.
    assert_eq!(
        variant(&none(), &loopback(), Some(&c)).choice,
        DataVariant::MerkleCdc
    );
    let fast_loopback = LinkEstimate {
        rate: Some(2_000_000_000),
        ..loopback()
    };
    assert_eq!(
        variant(&none(), &fast_loopback, Some(&c)).choice,
        DataVariant::WholeFile
    );
    let fat = variant(&none(), &fat(), Some(&c));
    assert_eq!(fat.choice, DataVariant::WholeFile, "{}", fat.reason);
    assert_eq!(
        variant(&none(), &lan(), Some(&c)).choice,
        DataVariant::MerkleCdc
    );
    assert_eq!(
        variant(&none(), &wan(), Some(&c)).choice,
        DataVariant::MerkleCdc
    );
    let d = variant(&none(), &unknown(), Some(&c));
    assert_eq!(d.choice, DataVariant::MerkleCdc);
    assert!(d.reason.contains("not measured"));
    let no_w = ParamsAsk {
        whole_file: Some(false),
        ..none()
    };
    assert_eq!(
        variant(&no_w, &fast_loopback, Some(&c)).choice,
        DataVariant::MerkleCdc
    );
    let w = ParamsAsk {
        whole_file: Some(true),
        ..none()
    };
    assert_eq!(variant(&w, &wan(), Some(&c)).choice, DataVariant::WholeFile);
}

fn offer(login_ms: u64, addr: &str) -> Observations {
    Observations {
        remote: Some(RemoteArsync::OffersQuic(QuicOffered {
            login_took: Duration::from_millis(login_ms),
            addr: Some(addr.parse().unwrap()),
            port: 40321,
            certificate: "SHA256:abc".into(),
            login_rtt: None,
        })),
        ..Observations::default()
    }
}

#[test]
fn the_link_comes_from_the_handshake_the_login_or_memory() {
    let seen = offer(400, "10.0.0.7");
    let link = link_estimate(&seen);
    assert_eq!(link.rtt, Some(Duration::from_millis(100)));
    assert!(!link.local);
    let seen = Observations {
        quic: Some(QuicSeen::Established {
            to: "127.0.0.1:40321".parse().unwrap(),
            took: Duration::from_millis(2),
        }),
        ..offer(40, "127.0.0.1")
    };
    let link = link_estimate(&seen);
    assert_eq!(
        (link.rtt, link.local),
        (Some(Duration::from_millis(2)), true)
    );
    // The lossy bench link: the handshake took two round trips (103 ms), the kernel read the
    // login's RTT as 54 ms; the kernel's reading is the RTT.
    let mut measured = offer(717, "10.99.0.2");
    if let Some(RemoteArsync::OffersQuic(o)) = &mut measured.remote {
        o.login_rtt = Some(Duration::from_millis(54));
    }
    let link = link_estimate(&Observations {
        quic: Some(QuicSeen::Established {
            to: "10.99.0.2:42114".parse().unwrap(),
            took: Duration::from_millis(103),
        }),
        ..measured
    });
    assert_eq!(link.rtt, Some(Duration::from_millis(54)));
    let link = link_estimate(&Observations {
        remembered: remembered(wan()),
        ..offer(400, "10.0.0.7")
    });
    assert_eq!(link, wan(), "what is remembered wins");
    assert_eq!(link_estimate(&Observations::default()), unknown());
}

#[test]
fn the_plan_carries_the_parameters_and_the_tune_capability() {
    let request = Request {
        target: Target::Shell {
            host: "backup".into(),
        },
        transport: TransportAsk::Auto,
        protocol: ProtocolAsk::Auto,
        streams: None,
        registered: vec![TransportInfo {
            name: names::QUIC.into(),
            local_only: false,
            max_streams: 16,
        }],
        quic_handshake_limit: Duration::from_secs(10),
        params: none(),
        quic_window: 12 << 20,
        http_proxy: false,
        web_ports: Vec::new(),
    };
    let seen = Observations {
        quic: Some(QuicSeen::Established {
            to: "10.0.0.7:40321".parse().unwrap(),
            took: Duration::from_millis(100),
        }),
        remembered: remembered(fat()),
        cpu: Some(cpu()),
        ..offer(400, "10.0.0.7")
    };
    let Step::Connect(plan) = next_step(&request, &seen).unwrap() else {
        panic!("expected a plan");
    };
    let p = plan.params.clone().unwrap();
    assert_eq!(p.variant.choice, DataVariant::WholeFile);
    assert_eq!(p.tree_levels.choice, MAX_AUTO_TREE_LEVELS);
    assert_eq!(plan.streams.choice, 10, "{}", plan.streams.reason);
    let tune = p.tune();
    assert_eq!(
        (tune.bdp, tune.tree_levels, tune.whole_file, tune.compress),
        (125_000_000, 4, true, 0)
    );
    let lines = p.explain();
    assert_eq!(lines[0], "link: RTT 100 ms, rate 1.2 GB/s");
    assert!(lines.contains(&"decision: 4 directory levels per round trip (RTT 100 ms)".into()));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("decision: whole files (the link carries")));
    // rsync's protocol has no such parameters.
    let Step::Connect(rsync) = next_step(
        &request,
        &Observations {
            remote: Some(RemoteArsync::NotFound),
            ..Observations::default()
        },
    )
    .unwrap() else {
        panic!("expected a plan");
    };
    assert_eq!(rsync.params, None);
}

#[test]
fn nothing_measured_keeps_todays_defaults() {
    let room = StreamRoom {
        window: 12 << 20,
        max: 4,
    };
    let p = decide(&none(), None, unknown(), (None, None), Some(room));
    assert_eq!(p.chunks.choice, ChunkSizing::ByFile { bdp: 0 });
    assert_eq!(p.tree_levels.choice, DEFAULT_TREE_LEVELS);
    assert_eq!(p.streams.choice, None);
    assert_eq!(p.compress.choice, None);
    assert_eq!(p.variant.choice, DataVariant::MerkleCdc);
    // Nothing chosen: the capability says so, and the session runs as it always did.
    assert_eq!(p.tune(), crate::proto::merkle::caps::Tune::default());
}

// Issue 16, remote CPU:
/// Both ends chunk a file sent by delta: a remembered remote end slower than this one bounds
/// the variant decision, and the reason says so.
#[test]
fn the_slower_ends_chunking_decides_the_variant() {
    let request = super::tests::request("auto");
    let plan_with = |remote_cpu: Option<u64>| {
        let mut facts = remembered(lan());
        if let Some(c) = remote_cpu {
            facts.learn(
                &Observations {
                    remote_cpu: Some(c),
                    ..Observations::default()
                },
                memory::UnixTime(1_796_580_600),
            );
        }
        let seen = Observations {
            quic: Some(QuicSeen::Established {
                to: "10.0.0.7:40321".parse().unwrap(),
                took: Duration::from_micros(300),
            }),
            remembered: facts,
            cpu: Some(cpu()),
            ..offer(4, "10.0.0.7")
        };
        for_plan(&request, &seen, &ConnectionPath::BootstrapQuic).variant
    };
    // This end chunks 400 MB/s, the LAN carries 125 MB/s: the delta.
    assert_eq!(plan_with(None).choice, DataVariant::MerkleCdc);
    assert_eq!(plan_with(Some(900_000_000)).choice, DataVariant::MerkleCdc);
    // A remote end that chunks 60 MB/s: whole files, and why.
    let slow = plan_with(Some(60_000_000));
    assert_eq!(slow.choice, DataVariant::WholeFile);
    assert!(
        slow.reason
            .contains("more than chunking and hashing (60.0 MB/s)")
            && slow
                .reason
                .contains("the remote end's chunking, remembered, is the slower"),
        "{}",
        slow.reason
    );
}
