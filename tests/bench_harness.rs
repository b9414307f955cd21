//! The transport bench harness in its `--quick` form, as CI runs it: small workloads, the LAN
//! profile, every contender (rsync over OpenSSH; arsync's ssh native and system, ssh-pool,
//! quic over the SSH bootstrap, quic, TLS over MPTCP and HTTP/3 to `arsync serve`, auto; the
//! bare ssh login; TLS and HTTP/2 to `arsync serve`) through the
//! link emulator with sshd and `arsync serve` in the far namespace. Proves the harness works:
//! every row measured (the release upgrade on a fresh ext4 of its own), every destination
//! equal to its source, the table, the CSV (read back)
//! and both charts (SVG and PNG) written, and the wire bytes the emulator counted at least the
//! payload. Needs root.

#![allow(clippy::unwrap_used)]

mod common;

use common::harness::{self, Plan, Sizes, Workload};
use common::linkem::LAN;

#[test]
fn quick_matrix_on_the_emulated_lan() {
    let s = common::Scratch::new();
    let plan = Plan {
        workloads: Workload::ALL.to_vec(),
        profiles: vec![("lan", Some(LAN))],
        contenders: Vec::new(),
        sizes: Sizes::QUICK,
        dir: s.join("run"),
        out: s.join("out"),
        name: "transports".into(),
        arsync: common::ARSYNC.into(),
        repeat: 1,
    };
    let rows = harness::run(&plan);
    // 11 syncing contenders × 6 workloads (issue 17: serve-h3, serve-tls and serve-h2 among
    // them), and the login alone beside "unchanged".
    let n = 11 * 6 + 1;
    assert_eq!(rows.len(), n, "{rows:#?}");
    for r in &rows {
        if r.payload == 0 {
            assert!(r.contender.contains("login"), "{r:?}");
            continue;
        }
        assert!(r.vs_rsync.is_finite() && r.vs_rsync > 0.0, "{r:?}");
        // Fresh data crosses the wire at least once (the emulator counts IP packets); an
        // unchanged tree or a small change costs far less than the data.
        if r.fresh() {
            assert!(r.wire >= r.payload, "{r:?}");
        } else if r.workload_key == "upgrade" {
            // A release upgrade reuses what the old release has.
            assert!(r.wire < r.payload, "{r:?}");
        } else {
            assert!(r.wire < r.payload / 2, "{r:?}");
        }
        let use_ = r.link_use().unwrap();
        assert!(use_ <= 1.05, "more than the link can carry: {r:?}");
        assert!(r.emulator_cpu > 0.0, "{r:?}");
    }
    let md = std::fs::read_to_string(s.join("out/transports.md")).unwrap();
    assert_eq!(md.lines().count(), 2 + n, "{md}");
    assert!(md.contains("arsync quic × 4") && md.contains("rsync -a over OpenSSH"));
    assert!(md.contains("arsync:// to arsync serve") && md.contains(" RTT)"));
    // Issue 17, mptcp:
    assert!(md.contains("arsync serve, TLS over MPTCP"), "{md}");
    // Issue 17, h2:
    assert!(md.contains("arsync serve, HTTP/2 × 4"), "{md}");
    // Issue 17, h3:
    assert!(md.contains("arsync serve, HTTP/3"), "{md}");
    let csv = std::fs::read_to_string(s.join("out/transports.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + n);
    // The CSV reads back as the same rows (to the precision written).
    let back = harness::parse_csv(&csv).unwrap();
    assert_eq!(harness::csv(&back), csv);
    let files = common::chart::write(&s.join("out"), "transports", &rows).unwrap();
    assert_eq!(files.len(), 4, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        if f.extension().unwrap() == "png" {
            assert!(
                bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
                "{f:?}"
            );
        } else {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(
                svg.contains("<svg") && svg.contains("rsync -a over OpenSSH"),
                "{f:?}"
            );
        }
    }
    println!("{md}");
}

/// Issue 16: each repeat runs every contender once, and over the first repeats each one runs
/// after other neighbours (a cyclic turn kept `auto` right after `quic` in every round).
#[test]
fn each_round_runs_everyone_once_with_other_neighbours() {
    for n in 1..=8 {
        for round in 0..6 {
            let mut order = harness::round_order(n, round);
            order.sort_unstable();
            assert_eq!(order, (0..n).collect::<Vec<_>>(), "n {n} round {round}");
        }
    }
    // Five contenders over three rounds: the one listed last follows three different ones.
    let before_last: std::collections::BTreeSet<usize> = (0..3)
        .map(|round| {
            let order = harness::round_order(5, round);
            let at = order.iter().position(|&c| c == 4).unwrap();
            order[(at + 4) % 5]
        })
        .collect();
    assert_eq!(before_last.len(), 3, "{before_last:?}");
}
