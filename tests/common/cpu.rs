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

/// CPU time (user + system) of this process, all its threads, so far.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage(2) fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF has no preconditions.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}
