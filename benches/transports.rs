//! Every transport and `rsync -a` over OpenSSH on emulated links (issue 7): which transport,
//! how fast, how close to the link.
//!
//! ```sh
//! cargo bench --bench transports                       # the whole matrix (long: about an hour)
//! cargo bench --bench transports -- --quick            # small sizes, the LAN profile
//! cargo bench --bench transports -- --profiles=wan,fatwan --workloads=big,unchanged \
//!     --transports=rsync,quic --out=wan-bulk
//! cargo bench --bench transports -- --from-csv=target/bench/a.csv,target/bench/b.csv
//! cargo bench --bench transports -- --profiles=fatwan --workloads=big --big-mib=256
//! cargo bench --bench transports -- --profiles=loopback --repeat=3  # each cell's median of 3
//! ```
//!
//! Workloads: small (10,000 × 10 KiB fresh), big (1 GiB fresh), scattered (1 GiB, 0.1 %
//! changed), insert (1 GiB, a byte inserted at the front), unchanged (10,000 files). Profiles:
//! loopback (no emulator), lan (1 Gbit/s, 1 ms), wan (100 Mbit/s, 50 ms), fatwan (1 Gbit/s,
//! 50 ms), lossy (100 Mbit/s, 50 ms, 1 % loss; at most 64 MiB and 1,000 files). Transports:
//! rsync, ssh, ssh-system, ssh-pool, quic, serve, serve-mptcp, serve-h3, auto, login,
//! serve-tls, serve-h2 (issue 17). The link emulator (`tests/common/linkem.rs`) needs root
//! (two network namespaces, sshd and `arsync serve` in the far one); without root only
//! loopback is measured, and the bench says so.
//!
//! Output under `target/bench/`: `NAME.md` (the table, also on stdout), `NAME.csv` (both
//! rewritten after every row), `NAME-vs-rsync.{svg,png}` and `NAME-link-use.{svg,png}`;
//! NAME is `transports` unless `--out=NAME`. `--from-csv=A,B…` measures nothing: it merges
//! earlier runs' CSVs into one table and chart.

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
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("bench"))
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    std::fs::create_dir_all(&target).unwrap();
    let name = list(&args, "out")
        .and_then(|v| v.into_iter().next())
        .unwrap_or_else(|| "transports".into());
    let rows = match list(&args, "from-csv") {
        Some(files) => files
            .iter()
            .flat_map(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
                harness::parse_csv(&text).unwrap_or_else(|e| panic!("{f}: {e}"))
            })
            .collect(),
        None => measure(&args, &target, &name),
    };
    let md = harness::markdown(&rows);
    std::fs::write(target.join(format!("{name}.md")), &md).unwrap();
    std::fs::write(target.join(format!("{name}.csv")), harness::csv(&rows)).unwrap();
    print!("{md}");
    match common::chart::write(&target, &name, &rows) {
        Ok(files) => {
            for f in files {
                println!("chart: {}", f.display());
            }
        }
        Err(e) => println!("no chart: {e}"),
    }
}

fn measure(args: &[String], target: &std::path::Path, name: &str) -> Vec<harness::Row> {
    let quick = args.iter().any(|a| a == "--quick");
    let workloads = match list(args, "workloads") {
        Some(keys) => Workload::ALL
            .into_iter()
            .filter(|w| keys.iter().any(|k| k == w.key()))
            .collect(),
        None => Workload::ALL.to_vec(),
    };
    let all = harness::profiles();
    let mut profiles: Vec<_> = match list(args, "profiles") {
        Some(keys) => all
            .into_iter()
            .filter(|(k, _)| keys.iter().any(|x| x == k))
            .collect(),
        // The quick run's one profile: the emulated LAN.
        None if quick => all.into_iter().filter(|(k, _)| *k == "lan").collect(),
        None => all,
    };
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!(
            "not root: the link emulator needs network namespaces, so only loopback is measured \
             (sshd and arsync serve on 127.0.0.1; no link use, wire bytes are all of lo's)"
        );
        profiles.retain(|(_, p)| p.is_none());
        if profiles.is_empty() {
            profiles = vec![("loopback", None)];
        }
    }
    let dir = target.join("transports-run");
    let _ = std::fs::remove_dir_all(&dir);
    let plan = Plan {
        workloads,
        profiles,
        contenders: list(args, "transports").unwrap_or_default(),
        sizes: {
            let mut sizes = if quick { Sizes::QUICK } else { Sizes::FULL };
            if let Some(mib) = list(args, "big-mib").and_then(|v| v[0].parse::<usize>().ok()) {
                sizes.big = mib << 20;
            }
            sizes
        },
        dir: dir.clone(),
        out: target.to_path_buf(),
        name: name.to_owned(),
        arsync: std::env::var_os("ARSYNC_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_arsync"))),
        // Issue 16: `--repeat=N`: each cell N times, the median kept.
        repeat: list(args, "repeat")
            .and_then(|v| v[0].parse::<usize>().ok())
            .unwrap_or(1),
    };
    let rows = harness::run(&plan);
    let _ = std::fs::remove_dir_all(&dir);
    rows
}
