//! FastCDC's cut points, found faster: the same boundaries as the `fastcdc` crate's 2020
//! variant (normalization level 1) for every input and every valid parameter set, which the
//! merkle protocol requires (both ends must cut at the same places).
//!
//! Owns the cutting of one run of chunks ([`cuts_from`]) and the scalar reference it must
//! agree with ([`cuts_from_scalar`], the crate itself). Not here: choosing parameters, cutting
//! in parallel segments, or hashing chunks ([`super::chunk`]).
//!
//! **Why it is faster.** FastCDC's gear hash `h = (h << 1) + GEAR[byte]` is one long
//! dependency chain: each byte waits for the previous one. But the hash at position `k`
//! depends only on bytes `k-63..=k` (older bytes are shifted out of the 64 bits), so once a
//! chunk's scan is 63 bytes past its start, its hash at `k` is the same whatever the chunk's
//! start: a property of the data alone. So the positions whose hash may be a cut (passing
//! `mask_s & mask_l`, or either mask when the two share few bits: a superset of the cuts) are
//! found by a separate candidate pass that runs eight independent chains over eight stripes
//! of a block at once, two bytes a step (the crate's own trick), which the CPU overlaps
//! (instruction-level parallelism: plain safe Rust, every architecture). Its inner loop
//! leaves at the first hit, so it holds nothing but the eight hashes, the block, the tables
//! and the masks in registers: seven instructions per lane and pair of bytes. The chunk walk
//! computes the first hashes of each chunk itself (until the chunk's own bytes alone decide
//! the bits the masks look at: 47 of them, the masks going up to bit 47), then takes the first
//! candidate that passes the exact mask for its position. Blocks are scanned as the walk reaches them, from
//! where it is (a skip over the minimum size that passes the scanned frontier is not hashed).
//!
//! **Why no SIMD.** The gear hash needs a 256-entry, 64-bit table lookup per byte: a gather
//! in vector form. An AVX-512 version (eight lanes, `vpgatherqq`) ran at a quarter of the
//! scalar speed on this machine's AMD EPYC, so it was not kept.

use std::sync::OnceLock;

use fastcdc::v2020 as f;

/// Chains run side by side in the candidate pass.
const LANES: usize = 8;
/// Bytes each chain covers in one block.
const STRIPE: usize = 4096;
/// Bytes one block of the candidate pass covers.
const BLOCK: usize = LANES * STRIPE;
/// Bytes before which a hash still depends on where the chain started: the gear hash at `k`
/// is a function of bytes `k-63..=k` only.
const WARM: usize = 63;

/// The crate's gear table (its own, so both implementations use the same numbers).
fn gear() -> &'static [u64; 256] {
    static GEAR: OnceLock<[u64; 256]> = OnceLock::new();
    GEAR.get_or_init(|| {
        let (table, _) = f::get_gear_with_seed(0);
        let mut g = [0u64; 256];
        for (d, s) in g.iter_mut().zip(table.iter()) {
            *d = *s;
        }
        g
    })
}

/// The gear table, then the gear table shifted left by one bit (the candidate pass's steps of
/// two bytes use both; one table keeps them at one base address).
fn pair_tables() -> &'static [u64; 512] {
    static TABLES: OnceLock<[u64; 512]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = [0u64; 512];
        for (k, g) in gear().iter().enumerate() {
            t[k] = *g;
            t[256 + k] = g << 1;
        }
        t
    })
}

/// The parameters of one cut, as the crate derives them.
#[derive(Clone, Copy)]
struct Cut {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    /// One past the highest bit either mask looks at (48 for the crate's masks).
    reach: usize,
}

impl Cut {
    fn new((min, avg, max): (u32, u32, u32)) -> Cut {
        let (mask_s, mask_l) = f::select_masks(avg as usize, f::Normalization::Level1);
        Cut {
            min: min as usize,
            avg: avg as usize,
            max: max as usize,
            mask_s,
            mask_l,
            reach: (u64::BITS - (mask_s | mask_l).leading_zeros()).max(1) as usize,
        }
    }
}

/// FastCDC's chunks of `data` starting at `start`, until one ends at or past `stop`: the
/// crate's own iterator, the reference [`cuts_from`] must equal.
pub(crate) fn cuts_from_scalar(
    data: &[u8],
    start: usize,
    (min, avg, max): (u32, u32, u32),
    stop: usize,
) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for c in f::FastCDC::new(&data[start..], min as usize, avg as usize, max as usize) {
        out.push(((start + c.offset) as u64, c.length as u32));
        if start + c.offset + c.length >= stop {
            break;
        }
    }
    out
}

/// The same chunks as [`cuts_from_scalar`], found with the candidate pass.
pub(crate) fn cuts_from(
    data: &[u8],
    start: usize,
    params: (u32, u32, u32),
    stop: usize,
) -> Vec<(u64, u32)> {
    let p = Cut::new(params);
    let gear = gear();
    let mut cands = Candidates::new(data, Sieve::new(p.mask_s, p.mask_l));
    let mut out = Vec::with_capacity((stop.saturating_sub(start)) / p.avg.max(1) + 4);
    let mut at = start;
    while at < data.len() {
        let len = cut_at(data, at, &p, gear, &mut cands);
        if len == 0 {
            break; // not reachable with a valid min (≥ 64); the crate stops here too
        }
        out.push((at as u64, len as u32));
        at += len;
        if at >= stop {
            break;
        }
    }
    out
}

/// The length of the chunk starting at `s`, as the crate's `cut_gear` computes it over
/// `data[s..]`: it tests bytes in pairs from `min` rounded down to even, with the strict mask
/// below `avg` (rounded down to even, or the rest's length if shorter) and the loose one
/// after, up to `max` (or the end) rounded down to even; a hit at byte `k` ends the chunk
/// before `k`. (The crate's pairwise form tests `h << 1` against `mask << 1` at even
/// positions, the same as `h & mask` as no mask has bit 63.)
fn cut_at(data: &[u8], s: usize, p: &Cut, gear: &[u64; 256], cands: &mut Candidates) -> usize {
    let mut remaining = data.len() - s;
    if remaining <= p.min {
        return remaining;
    }
    let mut center = p.avg;
    if remaining > p.max {
        remaining = p.max;
    } else if remaining < center {
        center = remaining;
    }
    let lo = s + p.min / 2 * 2;
    let mid = s + center / 2 * 2;
    let end = s + remaining / 2 * 2;
    // The first hashes depend on where this chunk starts: compute them here. Only the bits
    // the masks look at count: once the chunk has `reach` bytes, they are the candidate
    // pass's (older bytes only touch bits at or above `reach`).
    let exact_end = end.min(lo + p.reach - 1);
    let mut h: u64 = 0;
    for (k, &b) in data[lo..exact_end].iter().enumerate() {
        let k = lo + k;
        h = (h << 1).wrapping_add(gear[b as usize]);
        let mask = if k < mid { p.mask_s } else { p.mask_l };
        if h & mask == 0 {
            return k - s;
        }
    }
    // From here on the candidate pass's hashes are this chunk's.
    let mut from = exact_end;
    while let Some((k, h)) = cands.next(from, end) {
        let mask = if k < mid { p.mask_s } else { p.mask_l };
        if h & mask == 0 {
            return k - s;
        }
        from = k + 1;
    }
    remaining
}

/// Which hashes may be cuts: those passing either mask. When one mask's bits contain the
/// other's (most sizes), passing the smaller one is the test, one comparison a byte.
#[derive(Clone, Copy)]
struct Sieve {
    m1: u64,
    m2: u64,
}

impl Sieve {
    fn new(mask_s: u64, mask_l: u64) -> Sieve {
        // The two-byte steps test twice the hash: a mask may not use bit 63 (none of the
        // crate's go above bit 47).
        debug_assert_eq!((mask_s | mask_l) >> 63, 0);
        let both = mask_s & mask_l;
        // A common part of 8 bits or more lets through one byte in 256 at most: test it
        // alone and let the walk sort out the rest.
        if both.count_ones() >= 8 {
            Sieve { m1: both, m2: both }
        } else {
            Sieve {
                m1: mask_s,
                m2: mask_l,
            }
        }
    }

    fn nested(&self) -> bool {
        self.m1 == self.m2
    }

    #[inline(always)]
    fn passes<const TWO: bool>(&self, h: u64) -> bool {
        h & self.m1 == 0 || (TWO && h & self.m2 == 0)
    }
}

/// Positions of `data` whose gear hash passes the sieve (with the hash), found a block at a
/// time as the walk asks for them; asks must come in increasing `from` order.
struct Candidates<'a> {
    data: &'a [u8],
    sieve: Sieve,
    /// Positions below this were scanned (or skipped, never to be asked for).
    frontier: usize,
    found: Vec<(usize, u64)>,
    /// Entries of `found` before this are behind the walk.
    cursor: usize,
}

impl<'a> Candidates<'a> {
    fn new(data: &'a [u8], sieve: Sieve) -> Candidates<'a> {
        Candidates {
            data,
            sieve,
            frontier: 0,
            found: Vec::new(),
            cursor: 0,
        }
    }

    /// The first candidate `k` with `from <= k < end`, if any.
    fn next(&mut self, from: usize, end: usize) -> Option<(usize, u64)> {
        loop {
            while let Some(&(k, h)) = self.found.get(self.cursor) {
                if k >= from {
                    return (k < end).then_some((k, h));
                }
                self.cursor += 1;
            }
            if self.frontier >= end {
                return None;
            }
            // Everything found is behind the walk: scan the next block from where it is.
            self.frontier = self.frontier.max(from);
            self.found.clear();
            self.cursor = 0;
            let upto = (self.frontier + BLOCK).min(self.data.len());
            if self.sieve.nested() {
                scan::<false>(self.data, self.frontier, upto, self.sieve, &mut self.found);
            } else {
                scan::<true>(self.data, self.frontier, upto, self.sieve, &mut self.found);
            }
            self.frontier = upto;
        }
    }
}

/// The hash at `at - 1` of a chain that started `WARM` bytes before `at` (or at 0): what
/// every chain would have there, as far as positions from `at` on are concerned.
fn warm(data: &[u8], at: usize, gear: &[u64; 256]) -> u64 {
    data[at.saturating_sub(WARM)..at]
        .iter()
        .fold(0u64, |h, &b| (h << 1).wrapping_add(gear[b as usize]))
}

/// [`warm`] for each lane of the block at `a`, the lanes side by side (each is a dependency
/// chain of `WARM` steps).
fn warm_lanes(data: &[u8], a: usize, gear: &[u64; 256]) -> [u64; LANES] {
    let mut h = [0u64; LANES];
    match a.checked_sub(WARM) {
        Some(first) if a + (LANES - 1) * STRIPE <= data.len() => {
            for t in 0..WARM {
                for (j, h) in h.iter_mut().enumerate() {
                    *h = (*h << 1).wrapping_add(gear[data[first + j * STRIPE + t] as usize]);
                }
            }
        }
        _ => {
            for (j, h) in h.iter_mut().enumerate() {
                *h = warm(data, a + j * STRIPE, gear);
            }
        }
    }
    h
}

/// Append to `out`, in order, every `k` in `a..b` whose gear hash passes `sieve`.
fn scan<const TWO: bool>(
    data: &[u8],
    a: usize,
    b: usize,
    sieve: Sieve,
    out: &mut Vec<(usize, u64)>,
) {
    let gear = gear();
    if let Some(block) = data
        .get(a..b)
        .and_then(|s| <&[u8; BLOCK]>::try_from(s).ok())
    {
        let h = &mut warm_lanes(data, a, gear);
        let before = out.len();
        let tables = pair_tables();
        let at = |lane: usize, k: usize| lane * STRIPE + k;
        let mut i = 0;
        while let Some((stop, j, second)) = run_pairs::<TWO>(block, i, h, sieve, tables) {
            i = stop;
            // Lanes before `j` finished the pair without a hit; lane `j` hit at `i` (holding
            // twice its hash there: bit 63 lost, which no mask has) or at `i + 1`; lanes after
            // `j` have yet to take the pair.
            if second {
                out.push((a + at(j, i + 1), h[j]));
            } else {
                out.push((a + at(j, i), h[j] >> 1));
                h[j] = h[j].wrapping_add(gear[block[at(j, i + 1)] as usize]);
                if sieve.passes::<TWO>(h[j]) {
                    out.push((a + at(j, i + 1), h[j]));
                }
            }
            for (lane, h) in h.iter_mut().enumerate().skip(j + 1) {
                for k in [i, i + 1] {
                    *h = (*h << 1).wrapping_add(gear[block[at(lane, k)] as usize]);
                    if sieve.passes::<TWO>(*h) {
                        out.push((a + at(lane, k), *h));
                    }
                }
            }
            i += 2;
        }
        // Lanes report interleaved: put the block's hits in position order.
        out[before..].sort_unstable_by_key(|&(k, _)| k);
        return;
    }
    let mut h = warm(data, a, gear);
    for (k, &byte) in data[a..b].iter().enumerate() {
        h = (h << 1).wrapping_add(gear[byte as usize]);
        if sieve.passes::<TWO>(h) {
            out.push((a + k, h));
        }
    }
}

/// The candidate pass's inner loop: `LANES` independent gear chains, one per stripe of the
/// block, stepped together so their latencies overlap, two bytes a step as the crate does
/// (`(h << 2) + (GEAR[a] << 1)` is twice the hash after `a`, tested against the masks shifted
/// left by one; adding `GEAR[b]` gives the hash after `b`). From byte `i` (even) until a hit:
/// then it returns where (`i`, the lane, and whether at `i + 1`), the lanes as they are at
/// that moment; `None` at the end of the stripes. Hits are rare (one per 2^popcount(mask)
/// bytes), and leaving at once keeps this loop's registers free of anything else.
#[inline(never)]
fn run_pairs<const TWO: bool>(
    block: &[u8; BLOCK],
    mut i: usize,
    h: &mut [u64; LANES],
    sieve: Sieve,
    tables: &[u64; 512],
) -> Option<(usize, usize, bool)> {
    let shifted = Sieve {
        m1: sieve.m1 << 1,
        m2: sieve.m2 << 1,
    };
    let mut x = *h;
    while i + 1 < STRIPE {
        for (j, x_j) in x.iter_mut().enumerate() {
            let at = j * STRIPE + i;
            *x_j = (*x_j << 2).wrapping_add(tables[256 + block[at] as usize]);
            if shifted.passes::<TWO>(*x_j) {
                *h = x;
                return Some((i, j, false));
            }
            *x_j = x_j.wrapping_add(tables[block[at + 1] as usize]);
            if sieve.passes::<TWO>(*x_j) {
                *h = x;
                return Some((i, j, true));
            }
        }
        i += 2;
    }
    *h = x;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::chunk::TestRng as Rng;

    /// The crate's cut loop (`cut_gear_arr`), transcribed byte pair by byte pair, for the
    /// odd parameters the crate's own debug assertions refuse in a test build (a release
    /// build takes them, and a peer may ask for them: `chunk-avg` is any value in range).
    fn crate_loop(src: &[u8], (min, avg, max): (usize, usize, usize)) -> usize {
        let (mask_s, mask_l) = f::select_masks(avg, f::Normalization::Level1);
        let gear = gear();
        let mut remaining = src.len();
        if remaining <= min {
            return remaining;
        }
        let mut center = avg;
        if remaining > max {
            remaining = max;
        } else if remaining < center {
            center = remaining;
        }
        let mut index = min / 2;
        let mut hash: u64 = 0;
        let mut masks = [(center / 2, mask_s), (remaining / 2, mask_l)].into_iter();
        for (limit, mask) in masks.by_ref() {
            while index < limit {
                let a = index * 2;
                hash = (hash << 2).wrapping_add(gear[src[a] as usize] << 1);
                if hash & (mask << 1) == 0 {
                    return a;
                }
                hash = hash.wrapping_add(gear[src[a + 1] as usize]);
                if hash & mask == 0 {
                    return a + 1;
                }
                index += 1;
            }
        }
        remaining
    }

    /// Cut points by [`crate_loop`].
    fn loop_cuts(data: &[u8], p: (u32, u32, u32)) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let len = crate_loop(&data[at..], (p.0 as usize, p.1 as usize, p.2 as usize));
            out.push((at as u64, len as u32));
            at += len;
        }
        out
    }

    /// The crate's cut points, through the transcription for odd parameters.
    fn reference(data: &[u8], p: (u32, u32, u32)) -> Vec<(u64, u32)> {
        if [p.0, p.1, p.2].iter().all(|v| v.is_multiple_of(2)) {
            cuts_from_scalar(data, 0, p, data.len())
        } else {
            loop_cuts(data, p)
        }
    }

    /// Valid parameters (`ChunkParams::validate`), odd ones included, sizes kept small
    /// enough for many chunks per input.
    fn params(rng: &mut Rng) -> (u32, u32, u32) {
        let avg = match rng.range(0, 2) {
            0 => 1u64 << rng.range(8, 17),
            1 => rng.range(256, 1 << 17),
            _ => rng.range(256, 4096),
        };
        let min = rng.range(64, avg.min(1 << 20));
        let max = rng.range(avg.max(1024), (avg * 8).clamp(1024, 16 << 20));
        (min as u32, avg as u32, max as u32)
    }

    fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
        let kind = rng.range(0, 3);
        let mut v = vec![0u8; n];
        match kind {
            // Random bytes.
            0 | 1 => v.iter_mut().for_each(|b| *b = rng.next() as u8),
            // Few distinct bytes, in runs (text-like, and long hash-less stretches).
            2 => {
                let mut i = 0;
                while i < n {
                    let run = rng.range(1, 300) as usize;
                    let b = b'a' + rng.range(0, 2) as u8;
                    v[i..(i + run).min(n)].fill(b);
                    i += run;
                }
            }
            // A repeating period.
            _ => {
                let period = rng.range(1, 5000) as usize;
                let pat: Vec<u8> = (0..period).map(|_| rng.next() as u8).collect();
                v.iter_mut()
                    .zip(pat.iter().cycle())
                    .for_each(|(b, p)| *b = *p);
            }
        }
        v
    }

    #[test]
    fn the_transcribed_loop_is_the_crate() {
        let mut rng = Rng(0x5eed);
        for _ in 0..40 {
            let (min, avg, max) = params(&mut rng);
            let p = (min & !1, avg & !1, max & !1);
            let n = rng.range(0, 200_000) as usize;
            let d = bytes(&mut rng, n);
            assert_eq!(
                loop_cuts(&d, p),
                cuts_from_scalar(&d, 0, p, d.len()),
                "{p:?}"
            );
        }
    }

    #[test]
    fn same_cut_points_as_the_crate_for_random_inputs_and_parameters() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut total = 0;
        for case in 0..300 {
            let p = params(&mut rng);
            let n = match case % 10 {
                0 => rng.range(0, 3 << 20),
                1..=3 => rng.range(0, 300_000),
                _ => rng.range(0, 40_000),
            } as usize;
            let d = bytes(&mut rng, n);
            total += n;
            assert_eq!(
                cuts_from(&d, 0, p, d.len()),
                reference(&d, p),
                "case {case}: {n} bytes, params {p:?}"
            );
        }
        assert!(total > 10 << 20, "{total}");
    }

    #[test]
    fn same_cut_points_at_the_edges() {
        let mut rng = Rng(77);
        let random = crate::merkle::chunk::test_data(3 * BLOCK + 5, 3);
        let cases: &[(u32, u32, u32)] = &[
            (64, 256, 1024),
            (65, 257, 1025),
            (1024, 4096, 16384),
            (1023, 4095, 16383),
            (4096, 16384, 65536),
            (8192, 32768, 131072),
            (16384, 65536, 262144),
            (64, 64 << 10, 16 << 20),
            (256, 1024, 1024),
            (1 << 20, 1 << 20, 16 << 20),
        ];
        for &p in cases {
            let (min, _, max) = (p.0 as usize, p.1 as usize, p.2 as usize);
            let lens = [
                0,
                1,
                min - 1,
                min,
                min + 1,
                min + WARM,
                min + WARM + 1,
                max - 1,
                max,
                max + 1,
                2 * max,
                BLOCK - 1,
                BLOCK,
                BLOCK + 1,
                2 * BLOCK,
                3 * BLOCK + 5,
            ];
            for n in lens {
                for fill in [Some(0u8), Some(0xff), Some(b'x'), None] {
                    let d = match fill {
                        Some(b) => vec![b; n],
                        None => random[..n.min(random.len())].to_vec(),
                    };
                    assert_eq!(
                        cuts_from(&d, 0, p, d.len()),
                        reference(&d, p),
                        "{n} bytes of {fill:?}, params {p:?}"
                    );
                }
            }
        }
        // A cut at the very end: a last chunk that ends on a hit.
        for _ in 0..50 {
            let p = params(&mut rng);
            let n = rng.range(0, 100_000) as usize;
            let d = bytes(&mut rng, n);
            let cuts = reference(&d, p);
            if let Some(&(o, _)) = cuts.last() {
                let upto = &d[..o as usize];
                assert_eq!(cuts_from(upto, 0, p, upto.len()), reference(upto, p));
            }
        }
    }

    #[test]
    fn every_default_parameter_set_cuts_the_same() {
        let d = crate::merkle::chunk::test_data(4 << 20, 11);
        let mut avg = 256u32;
        while avg <= 1 << 20 {
            let crate::merkle::ChunkParams::Cdc { min, avg: a, max } =
                crate::merkle::ChunkParams::cdc(avg)
            else {
                unreachable!()
            };
            let p = (min, a, max);
            assert_eq!(
                cuts_from(&d, 0, p, d.len()),
                cuts_from_scalar(&d, 0, p, d.len()),
                "avg {avg}"
            );
            avg *= 2;
        }
    }

    #[test]
    fn a_run_from_an_offset_stops_where_asked() {
        let d = bytes(&mut Rng(5), 1 << 20);
        let p = (1024, 4096, 16384);
        for (start, stop) in [(0, 1), (1000, 1001), (12345, 200_000), (500_000, 1 << 20)] {
            assert_eq!(
                cuts_from(&d, start, p, stop),
                cuts_from_scalar(&d, start, p, stop)
            );
        }
    }
}
