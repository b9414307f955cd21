//! The checksums rsync negotiates (`checksum.c`): the whole-file sum a sender appends to each
//! file and the strong block sums, by the names `negotiate_the_strings` exchanges.
//!
//! Owns the algorithms and their byte order (`sum_end`: xxh values little-endian, XXH3-128 as
//! low then high 64 bits). The seeded MD4 variants of protocols before 30 are not supported.

use md4::Digest as _;

/// A negotiated checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumKind {
    /// XXH3, 128 bits.
    Xxh128,
    /// XXH3, 64 bits.
    Xxh3,
    /// XXH64 (seed 0).
    Xxh64,
    /// MD5.
    Md5,
    /// MD4 (protocol 30+ form, unseeded).
    Md4,
}

impl SumKind {
    /// Our preference, strongest and fastest first: what we send in the negotiation.
    pub const PREFERENCE: [SumKind; 5] = [
        SumKind::Xxh128,
        SumKind::Xxh3,
        SumKind::Xxh64,
        SumKind::Md5,
        SumKind::Md4,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SumKind::Xxh128 => "xxh128",
            SumKind::Xxh3 => "xxh3",
            SumKind::Xxh64 => "xxh64",
            SumKind::Md5 => "md5",
            SumKind::Md4 => "md4",
        }
    }

    /// By wire name (upstream also calls xxh64 "xxhash").
    pub fn from_name(n: &[u8]) -> Option<SumKind> {
        Some(match n {
            b"xxh128" => SumKind::Xxh128,
            b"xxh3" => SumKind::Xxh3,
            b"xxh64" | b"xxhash" => SumKind::Xxh64,
            b"md5" => SumKind::Md5,
            b"md4" => SumKind::Md4,
            _ => return None,
        })
    }

    /// Digest length in bytes (`csum_len_for_type`).
    pub fn digest_len(self) -> usize {
        match self {
            SumKind::Xxh3 | SumKind::Xxh64 => 8,
            _ => 16,
        }
    }

    /// Our space-separated list for the negotiation.
    pub fn offer() -> String {
        SumKind::PREFERENCE.map(SumKind::name).join(" ")
    }

    /// Pick from the peer's space-separated list: our most preferred name it also has
    /// (`parse_negotiate_str`).
    pub fn choose(peer_list: &[u8]) -> Option<SumKind> {
        let theirs: Vec<SumKind> = peer_list
            .split(|&b| b == b' ')
            .filter_map(SumKind::from_name)
            .collect();
        SumKind::PREFERENCE.into_iter().find(|k| theirs.contains(k))
    }

    /// A running whole-file sum.
    pub fn hasher(self) -> FileSum {
        FileSum(match self {
            SumKind::Xxh128 => State::Xxh3(Box::default(), true),
            SumKind::Xxh3 => State::Xxh3(Box::default(), false),
            SumKind::Xxh64 => State::Xxh64(xxhash_rust::xxh64::Xxh64::new(0)),
            SumKind::Md5 => State::Md5(md5::Md5::new()),
            SumKind::Md4 => State::Md4(md4::Md4::new()),
        })
    }
}

enum State {
    Xxh3(Box<xxhash_rust::xxh3::Xxh3>, bool),
    Xxh64(xxhash_rust::xxh64::Xxh64),
    Md5(md5::Md5),
    Md4(md4::Md4),
}

/// `sum_init`/`sum_update`/`sum_end` for one file.
pub struct FileSum(State);

impl std::fmt::Debug for FileSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileSum")
    }
}

impl FileSum {
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Xxh3(h, _) => h.update(data),
            State::Xxh64(h) => h.update(data),
            State::Md5(h) => h.update(data),
            State::Md4(h) => h.update(data),
        }
    }

    /// The digest as it travels.
    pub fn finish(self) -> Vec<u8> {
        match self.0 {
            State::Xxh3(h, true) => {
                let v = h.digest128();
                let mut out = (v as u64).to_le_bytes().to_vec();
                out.extend_from_slice(&((v >> 64) as u64).to_le_bytes());
                out
            }
            State::Xxh3(h, false) => h.digest().to_le_bytes().to_vec(),
            State::Xxh64(h) => h.digest().to_le_bytes().to_vec(),
            State::Md5(h) => h.finalize().to_vec(),
            State::Md4(h) => h.finalize().to_vec(),
        }
    }
}

impl SumKind {
    /// `get_checksum2`: the strong sum of one block with the session's seed (the first
    /// `s2length` bytes travel). MD5 puts the seed before the block when the session has
    /// `CF_CHKSUM_SEED_FIX` (`proper_order`), after it otherwise, and not at all when it is 0;
    /// the xxh family takes it as their seed, sign-extended.
    pub fn block_sum(self, block: &[u8], seed: i32, proper_order: bool) -> Vec<u8> {
        let s = seed as i64 as u64;
        match self {
            SumKind::Xxh128 => {
                let v = xxhash_rust::xxh3::xxh3_128_with_seed(block, s);
                let mut out = (v as u64).to_le_bytes().to_vec();
                out.extend_from_slice(&((v >> 64) as u64).to_le_bytes());
                out
            }
            SumKind::Xxh3 => xxhash_rust::xxh3::xxh3_64_with_seed(block, s)
                .to_le_bytes()
                .to_vec(),
            SumKind::Xxh64 => xxhash_rust::xxh64::xxh64(block, s).to_le_bytes().to_vec(),
            SumKind::Md5 => {
                let mut h = md5::Md5::new();
                if seed != 0 && proper_order {
                    h.update(seed.to_le_bytes());
                }
                h.update(block);
                if seed != 0 && !proper_order {
                    h.update(seed.to_le_bytes());
                }
                h.finalize().to_vec()
            }
            SumKind::Md4 => {
                let mut h = md4::Md4::new();
                h.update(block);
                if seed != 0 {
                    h.update(seed.to_le_bytes());
                }
                h.finalize().to_vec()
            }
        }
    }
}

/// `get_checksum1`: the rolling weak sum of a block (signed bytes, `CHAR_OFFSET` 0).
pub fn rolling(buf: &[u8]) -> u32 {
    let (mut s1, mut s2) = (0u32, 0u32);
    for &b in buf {
        s1 = s1.wrapping_add(b as i8 as i32 as u32);
        s2 = s2.wrapping_add(s1);
    }
    (s1 & 0xffff).wrapping_add(s2 << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_our_strongest_shared_name() {
        assert_eq!(
            SumKind::choose(b"xxh128 xxh3 xxh64 md5 md4 none"),
            Some(SumKind::Xxh128)
        );
        assert_eq!(SumKind::choose(b"md5 md4"), Some(SumKind::Md5));
        assert_eq!(SumKind::choose(b"sha1 none"), None);
        assert_eq!(SumKind::offer(), "xxh128 xxh3 xxh64 md5 md4");
    }

    #[test]
    fn digests_have_upstream_lengths_and_known_values() {
        for k in SumKind::PREFERENCE {
            let mut h = k.hasher();
            h.update(b"abc");
            assert_eq!(h.finish().len(), k.digest_len(), "{k:?}");
        }
        let mut h = SumKind::Md5.hasher();
        h.update(b"abc");
        assert_eq!(
            h.finish(),
            [
                0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
                0x7f, 0x72
            ]
        );
        // The rolling sum of the 4-byte-unrolled loop equals the plain definition.
        assert_eq!(rolling(b""), 0);
        assert_eq!(rolling(&[1, 2, 3]), (6 & 0xffff) + ((1 + 3 + 6) << 16));
    }
}
