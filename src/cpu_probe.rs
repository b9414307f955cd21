//! The CPU probe, thin: this machine's hashing, chunking and compression speed
//! ([`arsync_core::merkle::speed::measure`], about 20 ms), kept in the cache directory's
//! `cpu` file ([`arsync_core::negotiate::cpu::CpuRecord`]) so later runs only read it.
//!
//! The cache directory: `$ARSYNC_CACHE_DIR`, else `$XDG_CACHE_HOME/arsync`, else
//! `~/.cache/arsync`. A missing, damaged, stale or foreign record is measured again and
//! replaced; a cache that cannot be written only costs the next run another measurement.

use std::io::Read;
use std::time::Duration;

use arsync_core::negotiate::cpu::{CpuKey, CpuRecord, CPU_RECORD_MAX};
use arsync_core::negotiate::params::{per_sec, CpuSpeed};

/// How long the measurement may take.
const BUDGET: Duration = Duration::from_millis(20);
/// The record's file name in the cache directory.
const FILE: &str = "cpu";

/// This CPU: its model name, the cores this process may use, and this build.
fn this_cpu() -> CpuKey {
    let mut info = String::new();
    let _ = std::fs::File::open("/proc/cpuinfo")
        .and_then(|f| f.take(64 << 10).read_to_string(&mut info));
    let model = info
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = arsync_core::engine::options::cores().min(u32::MAX as usize) as u32;
    // A debug build chunks ten times slower than a release one; a new version may be faster.
    let build = format!(
        "{} {}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    CpuKey {
        model,
        cores,
        build,
    }
}

/// This machine's speed and how it was found (for `--explain`): from the cache, or
/// measured now (and cached).
pub fn cpu_speed() -> (CpuSpeed, String) {
    let key = this_cpu();
    let path = arsync_core::cachedir::dir().map(|d| d.join(FILE));
    let cached = path.as_ref().and_then(|p| {
        let mut text = String::new();
        std::fs::File::open(p)
            .and_then(|f| f.take(CPU_RECORD_MAX as u64).read_to_string(&mut text))
            .ok()?;
        CpuRecord::from_text(&text).filter(|r| r.holds_for(&key, arsync_core::cachedir::now_secs()))
    });
    if let Some(r) = cached {
        return (r.speed, describe(&r.speed, "remembered"));
    }
    let started = std::time::Instant::now();
    let speed = arsync_core::merkle::speed::measure(BUDGET);
    let took = arsync_core::negotiate::millis(started.elapsed());
    let record = CpuRecord {
        key,
        measured_at: arsync_core::cachedir::now_secs(),
        speed,
    };
    let kept = path.is_some_and(|p| {
        arsync_core::cachedir::write_private(&p, record.to_text().as_bytes()).is_ok()
    });
    let how = format!(
        "measured in {took}{}",
        if kept { "" } else { ", not cached" }
    );
    (speed, describe(&speed, &how))
}

/// Issue 16, remote CPU: this machine's chunking speed, bytes per second, as a server tells
/// its client in the hello's `cpu` capability.
pub fn chunk_speed() -> u64 {
    cpu_speed().0.chunk_bytes_per_sec
}

fn describe(s: &CpuSpeed, how: &str) -> String {
    format!(
        "cpu: BLAKE3 {}, chunking {}, zstd {} ({how})",
        per_sec(s.hash_bytes_per_sec),
        per_sec(s.chunk_bytes_per_sec),
        per_sec(s.compress_bytes_per_sec)
    )
}
