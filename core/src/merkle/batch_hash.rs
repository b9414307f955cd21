//! BLAKE3 of many short pieces of one buffer at once (issue 18, cheap deltas): the same hash
//! `blake3::hash` gives each piece, computed with the pieces' 1 KiB BLAKE3 chunks side by side
//! in SIMD lanes.
//!
//! `blake3::hash` of a 4 KiB chunk fills 4 of the 16 lanes AVX-512 has (8 of AVX2), one per
//! 1 KiB BLAKE3 chunk, and so runs at about a fifth of its speed over one large buffer. Here a
//! group of pieces is hashed in passes: every piece's first full 1 KiB chunk together (one
//! `hash_many` call, chunk counter 0), then every piece's second (counter 1), and so on; each
//! piece's partial last chunk alone; then the parent nodes level by level, again across all
//! pieces of the group at once, pairs from the left with an odd last node carried up (BLAKE3's
//! left-balanced tree), a piece's last pair with the root flag. Pieces of at most 1 KiB are
//! one BLAKE3 chunk, which is its own root, and pieces over 8 KiB fill the lanes (at least
//! half of them) by themselves: `blake3::hash` hashes both kinds.
//!
//! `hash_many` is the `blake3` crate's own SIMD kernel, reached through its hidden `platform`
//! module (the version is pinned in the workspace manifest for that reason); the tests check
//! every result against `blake3::hash`, so a change in the crate cannot go unnoticed.

use blake3::hazmat::HasherExt;
use blake3::platform::Platform;
use blake3::IncrementCounter;

/// A BLAKE3 chunk: the unit one SIMD lane hashes.
const CHUNK_LEN: usize = 1024;
const OUT_LEN: usize = 32;
/// A parent node's input: two chaining values.
const PARENT_LEN: usize = 2 * OUT_LEN;

// BLAKE3's domain flags and initial vector (the BLAKE3 paper, section 2.1; the IV is SHA-256's).
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const PARENT: u8 = 1 << 2;
const ROOT: u8 = 1 << 3;
const IV: [u32; 8] = [
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
];

/// Pieces hashed as one group: enough to fill the lanes at the first few counters of 4 KiB
/// pieces, few enough (about 512 KiB of them) that their bytes stay in cache across the passes.
const GROUP: usize = 128;

/// Pieces longer than this fill at least half the lanes by themselves (all of AVX2's):
/// `blake3::hash` hashes them whole, with less work per piece than the passes here.
const WHOLE_ABOVE: usize = 8 * CHUNK_LEN;

/// The BLAKE3 of each piece `(offset, len)` of `data`, in order: `blake3::hash` of each, on
/// this thread. Every piece must lie within `data`.
pub fn hash_pieces(data: &[u8], pieces: &[(u64, u32)]) -> Vec<[u8; 32]> {
    hash_pieces_on(Platform::detect(), data, pieces)
}

fn hash_pieces_on(platform: Platform, data: &[u8], pieces: &[(u64, u32)]) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut scratch = Scratch::default();
    for group in pieces.chunks(GROUP) {
        hash_group(platform, data, group, &mut out, &mut scratch);
    }
    out
}

/// Buffers reused from group to group.
#[derive(Default)]
struct Scratch {
    /// Chaining values of the group's pieces hashed in lanes, piece after piece.
    cvs: Vec<[u8; OUT_LEN]>,
    /// Where each piece's chaining values start in `cvs`, and how many are left (0: the piece
    /// was hashed whole).
    spans: Vec<(usize, usize)>,
    /// Where each result of a `hash_many` call goes in `cvs`.
    slots: Vec<usize>,
    parents: Vec<[u8; PARENT_LEN]>,
    lane_out: Vec<u8>,
}

fn hash_group(
    platform: Platform,
    data: &[u8],
    group: &[(u64, u32)],
    out: &mut Vec<[u8; 32]>,
    s: &mut Scratch,
) {
    let base = out.len();
    let piece = |(off, len): (u64, u32)| &data[off as usize..off as usize + len as usize];
    s.spans.clear();
    let mut total = 0;
    let mut most_full = 0;
    for &p in group {
        let len = p.1 as usize;
        if len <= CHUNK_LEN || len > WHOLE_ABOVE {
            out.push(*blake3::hash(piece(p)).as_bytes());
            s.spans.push((total, 0));
        } else {
            out.push([0; 32]);
            let n = len.div_ceil(CHUNK_LEN);
            s.spans.push((total, n));
            total += n;
            most_full = most_full.max(len / CHUNK_LEN);
        }
    }
    s.cvs.clear();
    s.cvs.resize(total, [0; OUT_LEN]);

    // The full chunks, counter by counter across the pieces.
    let mut inputs: Vec<&[u8; CHUNK_LEN]> = Vec::with_capacity(group.len());
    for k in 0..most_full {
        inputs.clear();
        s.slots.clear();
        for (&p, &(start, n)) in group.iter().zip(&s.spans) {
            if n == 0 {
                continue;
            }
            let kth = piece(p).get(k * CHUNK_LEN..);
            let Some(full) = kth.and_then(|rest| rest.first_chunk::<CHUNK_LEN>()) else {
                continue; // no k-th full chunk in this piece
            };
            inputs.push(full);
            s.slots.push(start + k);
        }
        s.lane_out.resize(inputs.len() * OUT_LEN, 0);
        platform.hash_many(
            &inputs,
            &IV,
            k as u64,
            IncrementCounter::No,
            0,
            CHUNK_START,
            CHUNK_END,
            &mut s.lane_out,
        );
        for (&slot, cv) in s.slots.iter().zip(s.lane_out.chunks_exact(OUT_LEN)) {
            s.cvs[slot].copy_from_slice(cv);
        }
    }

    // The partial last chunks, one by one.
    for (&p, &(start, n)) in group.iter().zip(&s.spans) {
        let full = p.1 as usize / CHUNK_LEN;
        if n > full {
            let tail = &piece(p)[full * CHUNK_LEN..];
            s.cvs[start + full] = blake3::Hasher::new()
                .set_input_offset((full * CHUNK_LEN) as u64)
                .update(tail)
                .finalize_non_root();
        }
    }

    // The parents below the roots, level by level across the pieces: a piece with `m` ≥ 3
    // nodes pairs them from the left and carries an odd last one up, leaving ⌈m/2⌉ ≥ 2.
    loop {
        s.parents.clear();
        s.slots.clear();
        for &(start, m) in &s.spans {
            if m >= 3 {
                for j in 0..m / 2 {
                    s.parents.push(parent_block(
                        &s.cvs[start + 2 * j],
                        &s.cvs[start + 2 * j + 1],
                    ));
                    s.slots.push(start + j);
                }
            }
        }
        if s.parents.is_empty() {
            break;
        }
        compress_parents(platform, &s.parents, 0, &mut s.lane_out);
        // Each parent lands at or before the first of its own children, after every node
        // of the level was read into `parents`.
        for (&slot, cv) in s.slots.iter().zip(s.lane_out.chunks_exact(OUT_LEN)) {
            s.cvs[slot].copy_from_slice(cv);
        }
        for (start, m) in s.spans.iter_mut() {
            if *m >= 3 {
                if *m % 2 == 1 {
                    s.cvs[*start + *m / 2] = s.cvs[*start + *m - 1];
                }
                *m = m.div_ceil(2);
            }
        }
    }

    // The roots: every piece hashed in lanes has two nodes left.
    s.parents.clear();
    s.slots.clear();
    for (i, &(start, m)) in s.spans.iter().enumerate() {
        if m == 2 {
            s.parents
                .push(parent_block(&s.cvs[start], &s.cvs[start + 1]));
            s.slots.push(base + i);
        }
    }
    compress_parents(platform, &s.parents, ROOT, &mut s.lane_out);
    for (&slot, hash) in s.slots.iter().zip(s.lane_out.chunks_exact(OUT_LEN)) {
        out[slot].copy_from_slice(hash);
    }
}

fn parent_block(left: &[u8; OUT_LEN], right: &[u8; OUT_LEN]) -> [u8; PARENT_LEN] {
    let mut b = [0u8; PARENT_LEN];
    b[..OUT_LEN].copy_from_slice(left);
    b[OUT_LEN..].copy_from_slice(right);
    b
}

/// Parent nodes side by side (each one 64-byte block), with `extra` flags (`ROOT` or none).
fn compress_parents(
    platform: Platform,
    parents: &[[u8; PARENT_LEN]],
    extra: u8,
    out: &mut Vec<u8>,
) {
    let inputs: Vec<&[u8; PARENT_LEN]> = parents.iter().collect();
    out.resize(inputs.len() * OUT_LEN, 0);
    platform.hash_many(
        &inputs,
        &IV,
        0,
        IncrementCounter::No,
        PARENT | extra,
        0,
        0,
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::chunk::{test_data, TestRng};

    fn check(platform: Platform, data: &[u8], pieces: &[(u64, u32)]) {
        let got = hash_pieces_on(platform, data, pieces);
        assert_eq!(got.len(), pieces.len());
        for (&(off, len), h) in pieces.iter().zip(&got) {
            let want = blake3::hash(&data[off as usize..off as usize + len as usize]);
            assert_eq!(
                h,
                want.as_bytes(),
                "piece at {off}, {len} bytes, {platform:?}"
            );
        }
    }

    /// Every length around the chunk and tree edges (1 to 17 BLAKE3 chunks, full and partial
    /// last chunks), side by side in one group and at odd offsets, on the SIMD kernel this
    /// CPU has and on the portable one.
    #[test]
    fn every_length_hashes_as_blake3_does() {
        let data = test_data(1 << 20, 11);
        let mut lens: Vec<u32> = vec![0, 1, 63, 64, 65, 1023, 1024, 1025];
        for n in 2..=17u32 {
            lens.extend([n * 1024 - 1, n * 1024, n * 1024 + 1, n * 1024 + 513]);
        }
        for platform in [Platform::detect(), Platform::portable()] {
            // One group, mixed lengths, consecutive pieces at odd offsets.
            let mut at = 3u64;
            let pieces: Vec<(u64, u32)> = lens
                .iter()
                .map(|&l| {
                    let p = (at, l);
                    at += l as u64 + 7;
                    p
                })
                .collect();
            check(platform, &data, &pieces);
            // Each length alone, and many of one length together (full lanes).
            for &l in &lens {
                check(platform, &data, &[(5, l)]);
                let same: Vec<(u64, u32)> = (0..40).map(|i| (i * l as u64 + 1, l)).collect();
                check(platform, &data, &same);
            }
        }
    }

    /// Content-defined pieces as the chunker cuts them, several groups long, in random sizes.
    #[test]
    fn random_pieces_across_groups_hash_as_blake3_does() {
        let data = test_data(4 << 20, 12);
        let mut rng = TestRng(5);
        let mut pieces = Vec::new();
        let mut at = 0u64;
        while at < data.len() as u64 - 20_000 {
            let len = rng.range(0, 18_000) as u32;
            pieces.push((at, len));
            at += len as u64;
        }
        assert!(pieces.len() > 2 * GROUP, "{}", pieces.len());
        check(Platform::detect(), &data, &pieces);
        assert!(hash_pieces(&data, &[]).is_empty());
    }
}
