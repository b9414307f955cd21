//! Option values: rates (`--bwlimit`), sizes and chunk sizes, with rsync's units.

/// Parse a `--bwlimit` value: a number of KiB/s, or with a K/M/G suffix (rsync's units).
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1024.0),
        Some('m' | 'M') => (&t[..t.len() - 1], 1024.0 * 1024.0),
        Some('g' | 'G') => (&t[..t.len() - 1], 1024.0 * 1024.0 * 1024.0),
        Some('b' | 'B') => (&t[..t.len() - 1], 1.0),
        _ => (t, 1024.0),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("--bwlimit={s}: not a rate"))?;
    if n < 0.0 {
        return Err(format!("--bwlimit={s}: negative rate"));
    }
    let rate = (n * mult) as u64;
    Ok((rate > 0).then_some(rate))
}

/// A size in bytes, or with a K/M/G suffix.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parse a `--chunk-size` value: bytes, or with a K/M suffix; 256 B to 256 KiB.
pub fn parse_chunk_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1024),
        Some('m' | 'M') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("--chunk-size={s}: not a size"))?;
    let v = n.saturating_mul(mult);
    if !(256..=256 << 10).contains(&v) {
        return Err(format!("--chunk-size={s}: must be between 256 and 256K"));
    }
    Ok(v as u32)
}
