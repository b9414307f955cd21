//! Every transport and `rsync -a` over OpenSSH on emulated links (issue 7): which transport,
//! how fast, how close to the link.
//!
//! ```sh
//! cargo bench --bench transports                       # the whole matrix (long)
//! cargo bench --bench transports -- --quick            # small sizes, the LAN profile
//! cargo bench --bench transports -- --profiles=wan,fatwan --workloads=big,unchanged \
//!     --transports=rsync,quic
//! ```
//!
//! Workloads: small (10,000 × 10 KiB fresh), big (1 GiB fresh), scattered (1 GiB, 0.1 %
//! changed), insert (1 GiB, a byte inserted at the front), unchanged (10,000 files). Profiles:
//! lan (1 Gbit/s, 1 ms), wan (100 Mbit/s, 50 ms), fatwan (1 Gbit/s, 50 ms), lossy (100 Mbit/s,
//! 50 ms, 1 % loss). Transports: rsync, ssh, ssh-pool, quic, auto. The link emulator
//! (`tests/common/linkem.rs`) needs root: two network namespaces, sshd in the far one. Output:
//! the markdown table on stdout and `target/bench/transports.{md,csv}`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use common::harness::{self, Plan, Sizes, Workload};

fn list(args: &[String], name: &str) -> Option<Vec<String>> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
        .map(|v| v.split(',').map(str::to_owned).collect())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!(
            "the link emulator needs root (network namespaces); without it only loopback can be \
             measured: `cargo bench --bench ssh`"
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let workloads = match list(&args, "workloads") {
        Some(keys) => Workload::ALL
            .into_iter()
            .filter(|w| keys.iter().any(|k| k == w.key()))
            .collect(),
        None => Workload::ALL.to_vec(),
    };
    let all = harness::profiles();
    let profiles = match list(&args, "profiles") {
        Some(keys) => all
            .into_iter()
            .filter(|(k, _)| keys.iter().any(|x| x == k))
            .collect(),
        None if quick => all.into_iter().take(1).collect(),
        None => all,
    };
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("bench"))
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    let dir = target.join("transports-run");
    let _ = std::fs::remove_dir_all(&dir);
    let plan = Plan {
        workloads,
        profiles,
        contenders: list(&args, "transports").unwrap_or_default(),
        sizes: if quick { Sizes::QUICK } else { Sizes::FULL },
        dir: dir.clone(),
        arsync: std::env::var_os("ARSYNC_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_arsync"))),
    };
    let rows = harness::run(&plan);
    let md = harness::markdown(&rows);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("transports.md"), &md).unwrap();
    std::fs::write(target.join("transports.csv"), harness::csv(&rows)).unwrap();
    print!("{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
