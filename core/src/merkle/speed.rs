//! How fast this machine runs the project's own data paths: BLAKE3, the chunker
//! ([`super::chunk::chunk_bytes`]: FastCDC boundaries and a BLAKE3 per chunk) and zstd, each
//! timed for a share of a short budget over an in-memory buffer; and how well a sample of
//! real data compresses. The negotiator weighs these against the link's rate
//! ([`crate::negotiate::params::CpuSpeed`], [`Compressibility`]).
//!
//! Not here: caching the result or reading the sample (the binary's `cpu_probe` and
//! `data_sample`) or what they lead to.

use std::time::{Duration, Instant};

use super::chunk::{chunk_bytes, ChunkParams};
use crate::negotiate::params::{Compressibility, CpuSpeed, AUTO_COMPRESS_LEVEL};

/// The buffer each measurement runs over.
const SAMPLE: usize = 1 << 20;

/// Bytes per second of `work` over `data`, run until `budget` has passed (at least once).
fn rate(budget: Duration, data: &[u8], mut work: impl FnMut(&[u8])) -> u64 {
    let started = Instant::now();
    let mut done: u64 = 0;
    loop {
        work(data);
        done += data.len() as u64;
        let took = started.elapsed();
        if took >= budget {
            let us = took.as_micros().max(1);
            return (u128::from(done) * 1_000_000 / us).min(u128::from(u64::MAX)) as u64;
        }
    }
}

/// Data about as compressible as source code or logs: bytes from a 32-symbol alphabet with
/// runs, from a fixed pseudo-random sequence.
fn sample() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(SAMPLE);
    while out.len() < SAMPLE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let byte = b'a' + (x % 32) as u8;
        let run = 1 + (x >> 60) as usize;
        out.extend(std::iter::repeat_n(byte, run.min(SAMPLE - out.len())));
    }
    out
}

/// Measure, spending about `budget` in all (a third each).
pub fn measure(budget: Duration) -> CpuSpeed {
    let data = sample();
    let part = budget / 3;
    let params = ChunkParams::for_file(1 << 30, 0);
    CpuSpeed {
        hash_bytes_per_sec: rate(part, &data, |d| {
            std::hint::black_box(blake3::hash(d));
        }),
        chunk_bytes_per_sec: rate(part, &data, |d| {
            std::hint::black_box(chunk_bytes(d, params));
        }),
        compress_bytes_per_sec: rate(part, &data, |d| {
            let _ = std::hint::black_box(zstd::bulk::compress(d, AUTO_COMPRESS_LEVEL));
        }),
    }
}

/// How well `samples` compress, each on its own, at [`AUTO_COMPRESS_LEVEL`].
pub fn compressibility<'a>(samples: impl IntoIterator<Item = &'a [u8]>) -> Compressibility {
    let mut c = Compressibility {
        sampled: 0,
        packed: 0,
    };
    for s in samples {
        c.sampled += s.len() as u64;
        // A sample zstd cannot take is counted as not compressing.
        c.packed +=
            zstd::bulk::compress(s, AUTO_COMPRESS_LEVEL).map_or(s.len(), |p| p.len()) as u64;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_measurement_gives_a_rate_for_each() {
        let s = measure(Duration::from_millis(15));
        // Any machine this runs on does each faster than 1 MB/s.
        assert!(s.hash_bytes_per_sec > 1_000_000, "{s:?}");
        assert!(s.chunk_bytes_per_sec > 1_000_000, "{s:?}");
        assert!(s.compress_bytes_per_sec > 1_000_000, "{s:?}");
    }

    #[test]
    fn text_compresses_and_random_bytes_do_not() {
        let text = sample();
        let random = crate::merkle::chunk::test_data(256 << 10, 3);
        let t = compressibility([text.as_slice()]);
        assert!(t.pays(), "{t:?}");
        let r = compressibility([random.as_slice(), &random[..1000]]);
        assert_eq!(r.sampled, (256 << 10) + 1000);
        assert!(!r.pays(), "{r:?}");
    }
}
