//! The remote transports side by side over a real OpenSSH `sshd` on a loopback port (issues 5
//! and 6): `rsync -a` over ssh, arsync over one SSH connection (the system `ssh` and the
//! native client), QUIC bootstrapped over SSH with 1 and 4 streams, and `ssh-pool` with 2 and
//! 4 connections.
//!
//! ```sh
//! cargo bench --bench ssh             # 1 GiB fresh, 10,000 × 10 KiB fresh
//! cargo bench --bench ssh -- --quick  # 128 MiB, 2,000 files
//! ```
//!
//! Each run is pushed into an empty destination; the table gives wall time, throughput, the
//! ratio to rsync's time, and the machine's busy CPU seconds during the run (all processes:
//! both ends, ssh and sshd — the only fair way to count both sides on one machine) per GB.
//! Needs root (sshd logs in as the current user with a generated key).

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../tests/common/cpu.rs"]
mod cpu;
#[allow(dead_code)]
#[path = "../tests/common/sshd.rs"]
mod sshd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use cpu::busy;

struct Measured {
    time: Duration,
    cpu: Duration,
}

fn measure(cmd: &mut Command) -> Measured {
    let (t0, c0) = (Instant::now(), busy());
    let out = cmd.output().expect("run tool");
    let m = Measured {
        time: t0.elapsed(),
        cpu: busy().saturating_sub(c0),
    };
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("ARSYNC_BENCH_QUICK").is_some();
    let (big, small) = if quick {
        (128u64 << 20, 2_000)
    } else {
        (1u64 << 30, 10_000)
    };
    let dir = std::env::var_os("ARSYNC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-ssh"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("keys")).unwrap();
    let sshd = sshd::Sshd::start(&dir.join("keys"));
    let arsync = std::env::var_os("ARSYNC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_arsync")));
    let rsh = sshd.rsh();

    // The contenders: a name and the command line that pushes SRC to DEST over ssh.
    let arsync_args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "-a".to_owned(),
            format!("--rsh={rsh}"),
            format!("--rsync-path={}", arsync.display()),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let contenders: Vec<(&str, PathBuf, Vec<String>)> = vec![
        (
            "rsync -a over OpenSSH",
            PathBuf::from("rsync"),
            vec!["-a".into(), "-e".into(), rsh.clone()],
        ),
        (
            "arsync, one ssh (system)",
            arsync.clone(),
            arsync_args(&["--transport=ssh"]),
        ),
        (
            "arsync, one ssh (native)",
            arsync.clone(),
            arsync_args(&["--transport=ssh", "--ssh=native"]),
        ),
        (
            "arsync, quic × 1 stream",
            arsync.clone(),
            arsync_args(&["--transport=quic", "--streams=1", "--ssh=native"]),
        ),
        (
            "arsync, quic × 4 streams",
            arsync.clone(),
            arsync_args(&["--transport=quic", "--streams=4", "--ssh=native"]),
        ),
        (
            "arsync, ssh-pool × 2 (system)",
            arsync.clone(),
            arsync_args(&["--transport=ssh-pool", "--streams=2", "--ssh=system"]),
        ),
        (
            "arsync, ssh-pool × 4 (system)",
            arsync.clone(),
            arsync_args(&["--transport=ssh-pool", "--streams=4", "--ssh=system"]),
        ),
        (
            "arsync, ssh-pool × 2 (native)",
            arsync.clone(),
            arsync_args(&["--transport=ssh-pool", "--streams=2", "--ssh=native"]),
        ),
        (
            "arsync, ssh-pool × 4 (native)",
            arsync.clone(),
            arsync_args(&["--transport=ssh-pool", "--streams=4", "--ssh=native"]),
        ),
    ];

    // The workloads.
    let big_src = dir.join("big");
    fs::create_dir_all(&big_src).unwrap();
    write_random(&big_src.join("f"), big, 1);
    let small_src = dir.join("small");
    let mut rng = Rng(3);
    let mut buf = vec![0u8; 10 * 1024];
    for i in 0..small {
        let d = small_src.join(format!("d{}", i % 100));
        if i < 100 {
            fs::create_dir_all(&d).unwrap();
        }
        rng.fill(&mut buf);
        fs::write(d.join(format!("f{i}")), &buf).unwrap();
    }
    sync();
    let workloads: [(&str, &Path, u64); 2] = [
        (
            if quick {
                "128 MiB fresh"
            } else {
                "1 GiB fresh"
            },
            &big_src,
            big,
        ),
        (
            if quick {
                "2,000 × 10 KiB fresh"
            } else {
                "10,000 × 10 KiB fresh"
            },
            &small_src,
            small as u64 * 10 * 1024,
        ),
    ];

    println!(
        "| workload | contender | time | MB/s | × rsync's time | CPU s per GB (whole machine) |"
    );
    println!("|---|---|---|---|---|---|");
    for (wname, src, bytes) in workloads {
        let mut rsync_time = None;
        for (i, (cname, program, args)) in contenders.iter().enumerate() {
            // A new directory each run: on this machine's ext4, creating many files right after
            // deleting many is far slower (the kernel's `recently_deleted` scan), so deleting
            // happens only at the end.
            let dest = dir.join(format!("dest-{}-{i}", bytes));
            sync();
            let mut cmd = Command::new(program);
            cmd.args(args)
                .arg(format!("{}/", src.display()))
                .arg(format!("127.0.0.1:{}/", dest.display()));
            let m = measure(&mut cmd);
            let t = m.time.as_secs_f64();
            let base = *rsync_time.get_or_insert(t);
            println!(
                "| {wname} | {cname} | {} | {:.0} | {:.2} × | {:.2} |",
                secs(m.time),
                bytes as f64 / t / 1e6,
                t / base,
                m.cpu.as_secs_f64() / (bytes as f64 / 1e9)
            );
            if bytes == big {
                same(&src.join("f"), &dest.join("f"));
                // One big file: deleting it costs nothing later runs notice.
                let _ = fs::remove_dir_all(&dest);
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
}
