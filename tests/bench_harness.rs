//! The transport bench harness in its `--quick` form, as CI runs it: small workloads, the LAN
//! profile, every contender (rsync over OpenSSH and arsync's ssh, ssh-pool, quic and auto)
//! through the link emulator with sshd in the far namespace. Proves the harness works: every
//! row measured, every destination equal to its source, the table and the CSV written, and
//! the wire bytes the emulator counted at least the payload. Needs root.

#![allow(clippy::unwrap_used)]

mod common;

use common::harness::{self, Plan, Sizes, Workload};
use common::linkem::LAN;

#[test]
fn quick_matrix_on_the_emulated_lan() {
    let s = common::Scratch::new();
    let plan = Plan {
        workloads: Workload::ALL.to_vec(),
        profiles: vec![("lan", LAN)],
        contenders: Vec::new(),
        sizes: Sizes::QUICK,
        dir: s.path().to_path_buf(),
        arsync: common::ARSYNC.into(),
    };
    let rows = harness::run(&plan);
    assert_eq!(rows.len(), 5 * 5, "5 workloads × 5 contenders");
    for r in &rows {
        assert!(r.vs_rsync.is_finite() && r.vs_rsync > 0.0, "{r:?}");
        // Fresh data crosses the wire at least once (the emulator counts IP packets); an
        // unchanged tree or a small change costs far less than the data.
        if r.fresh {
            assert!(r.wire >= r.payload, "{r:?}");
        } else {
            assert!(r.wire < r.payload / 2, "{r:?}");
        }
        let use_ = r.wire_peak as f64 * 8.0 / r.time.as_secs_f64() / r.rate_bps as f64;
        assert!(use_ <= 1.05, "more than the link can carry: {r:?}");
    }
    let md = std::fs::read_to_string(s.join("out/transports.md")).unwrap();
    assert_eq!(md.lines().count(), 2 + 25, "{md}");
    assert!(md.contains("arsync quic × 4") && md.contains("rsync -a over OpenSSH"));
    let csv = std::fs::read_to_string(s.join("out/transports.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 25);
    println!("{md}");
}
