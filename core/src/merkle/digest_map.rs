//! Hash maps keyed by BLAKE3 digests, with a cheap keyed hasher ([`DigestHasher`]) in place of
//! SipHash: the chunk trees' indexes, the receiver's ranges of its old version, the sender's
//! leaves. Owns the hasher and its per-process key; not what the maps hold.
//!
//! A BLAKE3 digest is already uniform, so SipHash's rounds over all 32 bytes buy nothing for
//! spread — but an unkeyed shortcut (the digest's first 8 bytes as the hash) would let whoever
//! chooses the digests choose the buckets. The peer chooses them: the sender's tree is the
//! peer's, and the receiver's old file may hold content a peer wrote in an earlier run. Finding
//! chunks whose digests agree in the 20 low bits a bucket index takes costs about 2^20 BLAKE3
//! calls each, cheap enough to fill one bucket with thousands of entries and make every
//! lookup a linear scan (quadratic work in all). XOR with a secret key alone would not help:
//! digests equal in those bits stay equal after the XOR. So the hasher mixes two 64-bit words
//! of the digest, each XORed with its own secret random key, through a full 64 × 64 → 128-bit
//! multiply whose halves are folded (foldhash's and wyhash's step), then folds that through a
//! second multiply: every output bit depends on every bit of both words and of both keys. Without the keys (random per process, never sent)
//! a peer cannot tell which digests share a bucket; to collide regardless of the keys it would
//! need digests equal in all 128 bits taken, about 2^64 BLAKE3 calls for a single pair.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A map keyed by BLAKE3 digests.
pub type DigestMap<V> = HashMap<[u8; 32], V, DigestHasher>;
/// A set of BLAKE3 digests.
pub type DigestSet = HashSet<[u8; 32], DigestHasher>;

/// An empty [`DigestMap`] with room for `n` entries.
pub fn digest_map<V>(n: usize) -> DigestMap<V> {
    HashMap::with_capacity_and_hasher(n, DigestHasher::new())
}

/// An empty [`DigestSet`] with room for `n` digests.
pub fn digest_set(n: usize) -> DigestSet {
    HashSet::with_capacity_and_hasher(n, DigestHasher::new())
}

/// The keyed hasher of [`DigestMap`] (see the module docs); also its `BuildHasher`. Meant for
/// 32-byte digests; any other key is still hashed with every byte, only less cheaply.
#[derive(Debug, Clone, Copy)]
pub struct DigestHasher {
    keys: [u64; 2],
    state: u64,
}

impl DigestHasher {
    /// A hasher with this process's keys.
    pub fn new() -> Self {
        DigestHasher::with_keys(process_keys())
    }

    fn with_keys(keys: [u64; 2]) -> Self {
        DigestHasher { keys, state: 0 }
    }
}

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher::new()
    }
}

/// Random keys, drawn once per process from the standard library's randomly seeded SipHash
/// keys (the operating system's randomness), hashed so that the two words are unrelated.
fn process_keys() -> [u64; 2] {
    static KEYS: OnceLock<[u64; 2]> = OnceLock::new();
    *KEYS.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new();
        [random.hash_one(0x6172_7379_6e63_u64), random.hash_one(1u64)]
    })
}

/// The 128-bit product of `a` and `b`, its halves XORed.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        if let Ok(d) = <&[u8; 32]>::try_from(bytes) {
            // A digest: two of its words (bytes 0..16; the other 16 add no spread).
            let (a, b) = (word(&d[..8]), word(&d[8..16]));
            self.state = folded_multiply(a ^ self.keys[0] ^ self.state, b ^ self.keys[1]);
            return;
        }
        for piece in bytes.chunks(16) {
            let (a, b) = piece.split_at(piece.len().min(8));
            self.state = folded_multiply(
                word(a) ^ self.keys[0] ^ self.state,
                word(b) ^ self.keys[1] ^ piece.len() as u64,
            );
        }
    }

    fn write_usize(&mut self, n: usize) {
        // The slice length `[u8; 32]`'s `Hash` writes first: the same for every digest.
        self.state ^= n as u64;
    }

    fn finish(&self) -> u64 {
        // One multiply lets a word's high bits reach only the product's high half: a second
        // folds every bit of the state into the low bits the buckets are taken from.
        folded_multiply(self.state, 0x243f_6a88_85a3_08d3)
    }
}

impl BuildHasher for DigestHasher {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher::with_keys(self.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digests a peer chose to be equal in the low bits an unkeyed shortcut would take the
    /// bucket from (they differ only in their first word's high bits), or equal in the whole
    /// first word, still spread over the buckets, under any secret keys. (A key equal to a
    /// word of the digests would zero that product: the keys are 128 random bits the peer
    /// never sees, so it can hit that only by guessing them.)
    #[test]
    fn digests_a_peer_chose_to_share_low_bits_still_spread() {
        let buckets = 1usize << 12;
        let keys = [
            [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210],
            [0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9],
            [0x94d0_49bb_1331_11eb, 0x2545_f491_4f6c_dd1d],
            process_keys(),
        ];
        for (vary, keys) in [6usize, 8, 14]
            .into_iter()
            .flat_map(|v| keys.map(|k| (v, k)))
        {
            let h = DigestHasher::with_keys(keys);
            let mut count = vec![0u32; buckets];
            for i in 0..(buckets as u64 * 4) {
                let mut d = [0u8; 32];
                // Everything the same but bytes `vary..vary + 2`, which count up.
                d[vary..vary + 2].copy_from_slice(&(i as u16).to_le_bytes());
                count[(h.hash_one(d) as usize) & (buckets - 1)] += 1;
            }
            let max = count.iter().copied().max().unwrap_or(0);
            let empty = count.iter().filter(|&&c| c == 0).count();
            // Four per bucket on average: a fair hash puts at most ~15 in one, and leaves
            // about e^-4 (2 %) empty.
            assert!(
                max <= 16,
                "vary at {vary}, {keys:x?}: {max} keys in one bucket"
            );
            assert!(
                empty < buckets / 20,
                "vary at {vary}, {keys:x?}: {empty} empty buckets"
            );
        }
    }

    /// Digests equal in the first 16 bytes collide whatever the keys (the hasher takes no
    /// more); digests differing anywhere in them do not, and the keys change the hash.
    #[test]
    fn the_hash_depends_on_the_first_16_bytes_and_the_keys() {
        let h = DigestHasher::with_keys([1, 2]);
        let mut a = [7u8; 32];
        let b = a;
        a[31] ^= 1;
        assert_eq!(h.hash_one(a), h.hash_one(b));
        for i in 0..16 {
            let mut c = b;
            c[i] ^= 0x80;
            assert_ne!(h.hash_one(c), h.hash_one(b), "byte {i}");
        }
        let other = DigestHasher::with_keys([3, 2]);
        assert_ne!(other.hash_one(b), h.hash_one(b));
    }

    #[test]
    fn maps_find_what_they_hold() {
        let mut m = digest_map(100);
        for i in 0..1000u32 {
            m.insert(*blake3::hash(&i.to_le_bytes()).as_bytes(), i);
        }
        for i in 0..1000u32 {
            assert_eq!(m.get(blake3::hash(&i.to_le_bytes()).as_bytes()), Some(&i));
        }
        assert!(!m.contains_key(blake3::hash(b"absent").as_bytes()));
        let mut s = digest_set(0);
        s.insert([1u8; 32]);
        assert!(s.contains(&[1u8; 32]) && !s.contains(&[2u8; 32]));
    }
}
