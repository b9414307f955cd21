//! The machine's busy CPU time, for benches that count both ends of a transfer on one host.

#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

/// Busy (non-idle) CPU time of the whole machine so far, from `/proc/stat`.
pub fn busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal
    let ticks: u64 = cpu.iter().take(8).sum::<u64>() - cpu[3] - cpu[4];
    Duration::from_millis(ticks * 10)
}
