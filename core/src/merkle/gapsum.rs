//! Issue 18, scattered deltas: matching inside a changed stretch ("gap") of a file.
//!
//! The chunk-tree exchange finds the chunks the receiver lacks; a change of a few KiB spoils
//! its chunks whole (2–3 of them at a 4 KiB average). Between two matched neighbours the
//! receiver knows which of its old bytes the new gap replaces: it sends small block sums of
//! that old stretch ([`block_sums`]: a rolling weak sum and a short strong one per block),
//! and the sender describes the new gap as copies of those blocks and literal bytes
//! ([`match_gap`], rsync's matching in miniature); the receiver rebuilds the gap
//! ([`apply`]) and checks every chunk of it against its BLAKE3 as before, so a false match
//! can only make a chunk fail its check, never a wrong file. Pure computation: the engine
//! reads the old bytes and moves the frames.

use std::collections::HashMap;

/// Smallest and largest block a gap's sums may use.
pub const MIN_BLOCK: u32 = 64;
/// See [`MIN_BLOCK`].
pub const MAX_BLOCK: u32 = 64 * 1024;

/// One step of a gap's description: literal bytes, or `count` consecutive old blocks from
/// block `block` (block `i` is the old gap's bytes `i × len .. (i + 1) × len`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapOp {
    /// New bytes.
    Literal(Vec<u8>),
    /// Old blocks.
    Copy {
        /// First block.
        block: u32,
        /// Number of consecutive blocks (at least 1).
        count: u32,
    },
}

/// Why a gap's description cannot be applied to the old bytes it names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GapError {
    /// A copy names blocks past the old gap.
    #[error("a copy names old blocks {first}..{end} of {blocks}")]
    BlockOutOfRange {
        /// First block named.
        first: u64,
        /// One past the last.
        end: u64,
        /// Blocks the old gap has.
        blocks: u64,
    },
    /// The description makes more (or fewer) bytes than the gap has.
    #[error("the gap's description makes {got} bytes, the gap has {want}")]
    WrongLength {
        /// Bytes made (so far, when too many).
        got: u64,
        /// Bytes of the gap.
        want: u64,
    },
}

/// The block length for an old gap of `old_len` bytes: about `sqrt(8 × old_len)`, which
/// balances the sums' 8 bytes per block against the partial blocks around a change (each
/// about half a block of literal), within [`MIN_BLOCK`]..=4096.
pub fn block_len(old_len: u64) -> u32 {
    let target = (8 * old_len).isqrt();
    target.clamp(MIN_BLOCK as u64, 4096) as u32
}

/// The weak sum of a block: `s1 = Σ b`, `s2 = Σ (len − i) × b` over its bytes `b` (unsigned,
/// index `i` from 0), both modulo 2^16; the sum is `s1 | s2 << 16`. It rolls: see [`Rolling`].
pub fn weak(block: &[u8]) -> u32 {
    let mut r = Rolling::default();
    for &b in block {
        r.s1 = r.s1.wrapping_add(b as u32);
        r.s2 = r.s2.wrapping_add(r.s1);
    }
    r.value()
}

/// The strong sum of a block: the first 4 bytes of its BLAKE3, little-endian. Short on
/// purpose: every rebuilt chunk is checked against its full hash anyway.
pub fn strong(block: &[u8]) -> u32 {
    let h = blake3::hash(block);
    let b = h.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The weak sum of a window as it slides one byte at a time.
#[derive(Debug, Default, Clone, Copy)]
struct Rolling {
    s1: u32,
    s2: u32,
}

impl Rolling {
    fn of(block: &[u8]) -> Self {
        let mut r = Rolling::default();
        for &b in block {
            r.s1 = r.s1.wrapping_add(b as u32);
            r.s2 = r.s2.wrapping_add(r.s1);
        }
        r
    }

    /// Slide a window of `len` bytes: `out` leaves at the front, `inn` enters at the back.
    fn roll(&mut self, out: u8, inn: u8, len: u32) {
        self.s1 = self.s1.wrapping_sub(out as u32).wrapping_add(inn as u32);
        self.s2 = self
            .s2
            .wrapping_sub(len.wrapping_mul(out as u32))
            .wrapping_add(self.s1);
    }

    fn value(self) -> u32 {
        (self.s1 & 0xffff) | (self.s2 << 16)
    }
}

/// The sums of an old gap's whole blocks of `block` bytes (a short tail is not offered):
/// `(weak, strong)` per block.
pub fn block_sums(old: &[u8], block: u32) -> Vec<(u32, u32)> {
    old.chunks_exact(block as usize)
        .map(|b| (weak(b), strong(b)))
        .collect()
}

/// Describe `new` as copies of the old gap's blocks (their `sums`, of `block` bytes) and
/// literal bytes: at each offset the window's weak sum is looked up, a hit confirmed by the
/// strong sum (the block after the last one copied first), a match skips a block ahead,
/// anything else moves one byte. Adjacent copies of consecutive blocks are merged.
pub fn match_gap(new: &[u8], block: u32, sums: &[(u32, u32)]) -> Vec<GapOp> {
    let len = block as usize;
    let mut ops = Vec::new();
    if sums.is_empty() || len == 0 || new.len() < len {
        if !new.is_empty() {
            ops.push(GapOp::Literal(new.to_vec()));
        }
        return ops;
    }
    let mut by_weak: HashMap<u32, Vec<u32>> = HashMap::with_capacity(sums.len());
    for (i, &(w, _)) in sums.iter().enumerate() {
        by_weak.entry(w).or_default().push(i as u32);
    }
    let (mut at, mut literal_from) = (0usize, 0usize);
    let mut next_block: Option<u32> = None;
    let mut r = Rolling::of(&new[..len]);
    while at + len <= new.len() {
        let hit = by_weak.get(&r.value()).and_then(|cands| {
            let s = strong(&new[at..at + len]);
            let ok = |&b: &u32| sums[b as usize].1 == s;
            next_block
                .filter(|b| cands.contains(b) && ok(b))
                .or_else(|| cands.iter().copied().find(|b| ok(b)))
        });
        if let Some(b) = hit {
            if literal_from < at {
                ops.push(GapOp::Literal(new[literal_from..at].to_vec()));
            }
            match ops.last_mut() {
                Some(GapOp::Copy { block, count }) if *block + *count == b => *count += 1,
                _ => ops.push(GapOp::Copy { block: b, count: 1 }),
            }
            next_block = Some(b + 1);
            at += len;
            literal_from = at;
            if at + len <= new.len() {
                r = Rolling::of(&new[at..at + len]);
            }
            continue;
        }
        if at + len < new.len() {
            r.roll(new[at], new[at + len], block);
        }
        at += 1;
    }
    if literal_from < new.len() {
        ops.push(GapOp::Literal(new[literal_from..].to_vec()));
    }
    ops
}

/// Rebuild a gap of `want` bytes from its description and the old gap's bytes `old` (whole
/// blocks of `block` bytes, a short tail ignored).
pub fn apply(ops: &[GapOp], old: &[u8], block: u32, want: u64) -> Result<Vec<u8>, GapError> {
    let blocks = (old.len() / block.max(1) as usize) as u64;
    let mut out = Vec::with_capacity(want.min(1 << 20) as usize);
    for op in ops {
        match op {
            GapOp::Literal(bytes) => {
                if out.len() as u64 + bytes.len() as u64 > want {
                    return Err(GapError::WrongLength {
                        got: out.len() as u64 + bytes.len() as u64,
                        want,
                    });
                }
                out.extend_from_slice(bytes)
            }
            GapOp::Copy {
                block: first,
                count,
            } => {
                let (first, end) = (*first as u64, *first as u64 + *count as u64);
                if *count == 0 || end > blocks {
                    return Err(GapError::BlockOutOfRange { first, end, blocks });
                }
                let (from, to) = (first * block as u64, end * block as u64);
                if out.len() as u64 + (to - from) > want {
                    return Err(GapError::WrongLength {
                        got: out.len() as u64 + (to - from),
                        want,
                    });
                }
                out.extend_from_slice(&old[from as usize..to as usize]);
            }
        }
    }
    if out.len() as u64 != want {
        return Err(GapError::WrongLength {
            got: out.len() as u64,
            want,
        });
    }
    Ok(out)
}

/// Literal bytes in a description.
pub fn literal_len(ops: &[GapOp]) -> u64 {
    ops.iter()
        .map(|op| match op {
            GapOp::Literal(b) => b.len() as u64,
            GapOp::Copy { .. } => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::merkle::chunk::test_bytes as random;

    /// The rolled weak sum is the weak sum of the window, at every offset.
    #[test]
    fn the_rolling_sum_equals_the_sum_of_the_window() {
        let data = random(3000, 1);
        let len = 100u32;
        let mut r = Rolling::of(&data[..100]);
        for at in 0..data.len() - 100 {
            assert_eq!(r.value(), weak(&data[at..at + 100]), "offset {at}");
            r.roll(data[at], data[at + 100], len);
        }
    }

    /// A 4 KiB change inside a 12 KiB gap costs about the change: the rest is copied, and
    /// the description rebuilds the new gap exactly.
    #[test]
    fn a_changed_stretch_costs_about_its_change() {
        let old = random(12_288, 2);
        let mut new = old.clone();
        new[5_000..9_096].copy_from_slice(&random(4096, 3));
        let block = block_len(old.len() as u64);
        let sums = block_sums(&old, block);
        let ops = match_gap(&new, block, &sums);
        let lit = literal_len(&ops);
        // The change, the partial blocks around it and the gap's short tail.
        assert!(
            (4096..4096 + 3 * block as u64).contains(&lit),
            "{lit} literal bytes, block {block}"
        );
        assert_eq!(apply(&ops, &old, block, new.len() as u64).unwrap(), new);
    }

    /// An insertion shifts what follows: the blocks after it are still found.
    #[test]
    fn an_insertion_is_found_at_any_offset() {
        let old = random(20_000, 4);
        let mut new = old.clone();
        new.splice(7_001..7_001, b"inserted bytes".iter().copied());
        let block = 256;
        let ops = match_gap(&new, block, &block_sums(&old, block));
        assert!(literal_len(&ops) < 2 * block as u64 + 14);
        assert_eq!(apply(&ops, &old, block, new.len() as u64).unwrap(), new);
    }

    /// A description that names blocks the old gap lacks, or makes the wrong length, is
    /// refused; a wrong old gap (what a false match would copy) rebuilds other bytes, which
    /// the chunk's own hash then refuses.
    #[test]
    fn bad_descriptions_are_refused() {
        let old = random(4096, 5);
        let ops = vec![GapOp::Copy { block: 3, count: 2 }];
        assert!(matches!(
            apply(&ops, &old, 1024, 2048),
            Err(GapError::BlockOutOfRange { .. })
        ));
        let ops = vec![GapOp::Copy { block: 0, count: 2 }];
        assert!(matches!(
            apply(&ops, &old, 1024, 1024),
            Err(GapError::WrongLength { .. })
        ));
        assert!(matches!(
            apply(&[GapOp::Literal(vec![1; 10])], &old, 1024, 11),
            Err(GapError::WrongLength { .. })
        ));
        let other = random(4096, 6);
        let rebuilt = apply(&ops, &other, 1024, 2048).unwrap();
        assert_ne!(rebuilt[..], old[..2048]);
    }

    /// Nothing to match against, or a gap shorter than a block: all literal.
    #[test]
    fn without_sums_everything_is_literal() {
        let new = random(500, 7);
        assert_eq!(
            match_gap(&new, 1024, &[]),
            vec![GapOp::Literal(new.clone())]
        );
        assert_eq!(
            match_gap(&new, 1024, &[(1, 2)]),
            vec![GapOp::Literal(new.clone())]
        );
        assert!(match_gap(&[], 64, &[(1, 2)]).is_empty());
    }
}
