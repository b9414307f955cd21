//! The CPU probe's cache record: what [`crate::merkle::speed::measure`] found on this
//! machine, for which CPU, and since when — its text form and whether it still holds. Pure:
//! reading and writing the file (`cpu` in the cache directory) is the binary's `cpu_probe`.
//!
//! The record holds while the CPU model, the core count and the build that measured it (its
//! version and whether it was optimised: a debug build chunks ten times slower, a newer one
//! may chunk faster) are the same and it is younger than [`CPU_RECORD_LIFETIME`]; otherwise
//! the probe runs again.

use std::time::Duration;

use super::params::CpuSpeed;

/// How long a measurement is trusted.
pub const CPU_RECORD_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most bytes of a record that are read.
pub const CPU_RECORD_MAX: usize = 4096;
const MAGIC: &str = "arsync cpu 2";

/// Which CPU a measurement is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuKey {
    /// `model name` from `/proc/cpuinfo` (empty if unknown).
    pub model: String,
    /// Cores available to this process.
    pub cores: u32,
    /// The build that measures: its version and profile (`0.1.0 release`), one line.
    pub build: String,
}

/// One measurement, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuRecord {
    /// For which CPU.
    pub key: CpuKey,
    /// When, in seconds since the Unix epoch.
    pub measured_at: u64,
    /// What was found.
    pub speed: CpuSpeed,
}

impl CpuRecord {
    /// The record's text.
    pub fn to_text(&self) -> String {
        let s = &self.speed;
        format!(
            "{MAGIC}\nmodel {}\ncores {}\nbuild {}\nmeasured {}\nhash {}\nchunk {}\ncompress {}\n",
            self.key.model.replace('\n', " "),
            self.key.cores,
            self.key.build.replace('\n', " "),
            self.measured_at,
            s.hash_bytes_per_sec,
            s.chunk_bytes_per_sec,
            s.compress_bytes_per_sec
        )
    }

    /// A record read back; `None` if anything is missing, malformed or zero.
    pub fn from_text(text: &str) -> Option<CpuRecord> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut field = |name: &str| {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix(' ')
                .map(str::to_owned)
        };
        let model = field("model")?;
        let num = |v: Option<String>| v?.parse::<u64>().ok();
        let cores = u32::try_from(num(field("cores"))?).ok()?;
        let build = field("build")?;
        let measured_at = num(field("measured"))?;
        let speed = CpuSpeed {
            hash_bytes_per_sec: num(field("hash"))?,
            chunk_bytes_per_sec: num(field("chunk"))?,
            compress_bytes_per_sec: num(field("compress"))?,
        };
        let positive = speed.hash_bytes_per_sec > 0
            && speed.chunk_bytes_per_sec > 0
            && speed.compress_bytes_per_sec > 0;
        positive.then_some(CpuRecord {
            key: CpuKey {
                model,
                cores,
                build,
            },
            measured_at,
            speed,
        })
    }

    /// Whether the record is for `key` and not older than [`CPU_RECORD_LIFETIME`] at `now`
    /// (seconds since the epoch); one from the future does not hold either.
    pub fn holds_for(&self, key: &CpuKey, now: u64) -> bool {
        self.key == *key
            && self.measured_at <= now
            && now - self.measured_at <= CPU_RECORD_LIFETIME.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CpuRecord {
        CpuRecord {
            key: CpuKey {
                model: "AMD EPYC 7B13".into(),
                cores: 2,
                build: "0.1.0 release".into(),
            },
            measured_at: 1_800_000_000,
            speed: CpuSpeed {
                hash_bytes_per_sec: 1_500_000_000,
                chunk_bytes_per_sec: 400_000_000,
                compress_bytes_per_sec: 300_000_000,
            },
        }
    }

    #[test]
    fn a_record_reads_back_and_holds_for_its_cpu_within_its_lifetime() {
        let r = record();
        let back = CpuRecord::from_text(&r.to_text());
        assert_eq!(back.as_ref(), Some(&r));
        let now = r.measured_at + 3600;
        assert!(r.holds_for(&r.key, now));
        let other = CpuKey {
            cores: 8,
            ..r.key.clone()
        };
        assert!(!r.holds_for(&other, now), "another core count");
        let debug = CpuKey {
            build: "0.1.0 debug".into(),
            ..r.key.clone()
        };
        assert!(!r.holds_for(&debug, now), "another build");
        assert!(!r.holds_for(&r.key, r.measured_at + CPU_RECORD_LIFETIME.as_secs() + 1));
        assert!(!r.holds_for(&r.key, r.measured_at - 1), "from the future");
    }

    #[test]
    fn damaged_records_are_none() {
        let text = record().to_text();
        assert_eq!(CpuRecord::from_text(""), None);
        assert_eq!(
            CpuRecord::from_text(&text.replace("arsync cpu 2", "arsync cpu 9")),
            None
        );
        assert_eq!(
            CpuRecord::from_text(&text.replace("chunk 400000000", "chunk x")),
            None
        );
        assert_eq!(
            CpuRecord::from_text(&text.replace("hash 1500000000", "hash 0")),
            None
        );
        let cut: String = text.lines().take(5).collect::<Vec<_>>().join("\n");
        assert_eq!(CpuRecord::from_text(&cut), None);
    }
}
