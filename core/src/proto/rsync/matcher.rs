//! rsync's delta search on the sending side (upstream's `match.c`), sans-IO: the receiver's
//! block sums for its old copy ([`BlockSums`]) and a [`Matcher`] that is fed the new file's
//! bytes in any pieces and says, in file order, which runs are literal and which are blocks
//! of the old copy. The rolling weak sum moves one byte at a time; a weak hit is confirmed by
//! the strong block sum (the session's kind and seed, its first `s2length` bytes).
//!
//! Owns the search only: reading the sums off the wire and writing tokens are the adapter's
//! (`engine::rsync::sending`).

use std::collections::HashMap;

use super::checksum::SumKind;

/// Most blocks a receiver's sums may describe (rsync's own limit is far lower in practice:
/// its block size grows with the file).
pub const MAX_BLOCKS: usize = 1 << 21;

/// The receiver's sums for its old copy: block length, strong-sum length, the last block's
/// length, and per block the weak and strong sums.
#[derive(Debug, Clone)]
pub struct BlockSums {
    blength: usize,
    s2length: usize,
    remainder: usize,
    weak: Vec<u32>,
    strong: Vec<u8>,
    by_weak: HashMap<u32, Vec<u32>>,
    /// One bit per 16-bit tag of the weak sums present (rsync's `tag_table` idea): most
    /// positions are ruled out without a hash lookup.
    tags: Vec<u64>,
}

/// The 16-bit tag of a weak sum.
fn tag(weak: u32) -> usize {
    ((weak ^ (weak >> 16)) & 0xffff) as usize
}

impl BlockSums {
    /// Sums as the receiver sent them: `blocks` in order, each `(weak, strong)` with `strong`
    /// of `s2length` bytes. `remainder` is the last block's length (0: all are `blength`).
    pub fn new(
        blength: usize,
        s2length: usize,
        remainder: usize,
        blocks: Vec<(u32, Vec<u8>)>,
    ) -> Option<BlockSums> {
        if blocks.len() > MAX_BLOCKS
            || (blength == 0 && !blocks.is_empty())
            || remainder > blength
            || blocks.iter().any(|(_, s)| s.len() != s2length)
        {
            return None;
        }
        let mut weak = Vec::with_capacity(blocks.len());
        let mut strong = Vec::with_capacity(blocks.len() * s2length);
        let mut by_weak: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut tags = vec![0u64; (1 << 16) / 64];
        for (i, (w, s)) in blocks.into_iter().enumerate() {
            tags[tag(w) / 64] |= 1 << (tag(w) % 64);
            by_weak.entry(w).or_default().push(i as u32);
            weak.push(w);
            strong.extend_from_slice(&s);
        }
        Some(BlockSums {
            blength,
            s2length,
            remainder,
            weak,
            strong,
            by_weak,
            tags,
        })
    }

    /// How many blocks.
    pub fn count(&self) -> usize {
        self.weak.len()
    }

    /// The length of block `i`.
    fn len_of(&self, i: usize) -> usize {
        if i + 1 == self.count() && self.remainder > 0 {
            self.remainder
        } else {
            self.blength
        }
    }

    fn strong_of(&self, i: usize) -> &[u8] {
        &self.strong[i * self.s2length..(i + 1) * self.s2length]
    }
}

/// One step of the delta, in file order.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// New bytes.
    Literal(&'a [u8]),
    /// Block `n` of the receiver's old copy.
    Block(u32),
}

/// Literal bytes held back at most before they are given out (the search goes on behind).
const LITERAL_FLUSH: usize = 256 * 1024;

/// The sender's delta search over one file.
#[derive(Debug)]
pub struct Matcher {
    sums: BlockSums,
    kind: SumKind,
    seed: i32,
    proper_order: bool,
    /// Bytes held: `buf[..start]` are given out already (dropped at the next push, so a match
    /// costs no copy of what follows it), `buf[start..w]` are literal, the window starts at
    /// `w`.
    buf: Vec<u8>,
    start: usize,
    w: usize,
    /// The weak sum's halves for `buf[w..w + blength]`, when computed.
    rolling: Option<(u32, u32)>,
}

impl Matcher {
    /// A search against `sums`, confirming hits with `kind`'s block sum under `seed`.
    pub fn new(sums: BlockSums, kind: SumKind, seed: i32, proper_order: bool) -> Matcher {
        Matcher {
            sums,
            kind,
            seed,
            proper_order,
            buf: Vec::new(),
            start: 0,
            w: 0,
            rolling: None,
        }
    }

    /// The length of block `n` of the receiver's old copy (the last may be short).
    pub fn block_len(&self, n: u32) -> usize {
        self.sums.len_of(n as usize)
    }

    /// Feed the next bytes of the file; tokens settled so far go to `emit`.
    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(Token<'_>)) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.w -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        let blen = self.sums.blength;
        if self.sums.count() == 0 || blen == 0 {
            self.flush_literal(self.buf.len(), emit);
            return;
        }
        while self.w + blen <= self.buf.len() {
            let (s1, s2) = match self.rolling {
                Some(r) => r,
                None => {
                    let r = halves(&self.buf[self.w..self.w + blen]);
                    self.rolling = Some(r);
                    r
                }
            };
            if let Some(i) = self.hit(s1, s2, self.w, blen) {
                self.flush_literal(self.w, emit);
                emit(Token::Block(i));
                self.start += blen;
                self.w = self.start;
                self.rolling = None;
                continue;
            }
            // No block starts here: roll one byte, if the next one is here yet.
            if self.w + blen >= self.buf.len() {
                break;
            }
            let out = self.buf[self.w] as i8 as i32 as u32;
            let inb = self.buf[self.w + blen] as i8 as i32 as u32;
            let s1 = s1.wrapping_sub(out).wrapping_add(inb);
            let s2 = s2
                .wrapping_sub((blen as u32).wrapping_mul(out))
                .wrapping_add(s1);
            self.rolling = Some((s1, s2));
            self.w += 1;
            if self.w - self.start >= LITERAL_FLUSH {
                self.flush_literal(self.w, emit);
            }
        }
    }

    /// The file is complete: the short last block may match at the very end; the rest is
    /// literal.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Token<'_>)) {
        let rem = self.sums.remainder;
        let last = self.sums.count();
        if rem > 0 && last > 0 && self.buf.len() >= self.w.max(self.start) + rem {
            let at = self.buf.len() - rem;
            let (s1, s2) = halves(&self.buf[at..]);
            if let Some(i) = self
                .hit(s1, s2, at, rem)
                .filter(|&i| i as usize + 1 == last)
            {
                self.flush_literal(at, emit);
                emit(Token::Block(i));
                self.buf.clear();
                (self.start, self.w) = (0, 0);
                return;
            }
        }
        self.flush_literal(self.buf.len(), emit);
        self.buf.clear();
        (self.start, self.w) = (0, 0);
        self.rolling = None;
    }

    /// The block (of length `len`) whose sums match `buf[at..at + len]`, if any.
    fn hit(&self, s1: u32, s2: u32, at: usize, len: usize) -> Option<u32> {
        let weak = combine(s1, s2);
        let t = tag(weak);
        if self.sums.tags[t / 64] & (1 << (t % 64)) == 0 {
            return None;
        }
        let candidates = self.sums.by_weak.get(&weak)?;
        let mut strong: Option<Vec<u8>> = None;
        for &i in candidates {
            if self.sums.len_of(i as usize) != len {
                continue;
            }
            let s = strong.get_or_insert_with(|| {
                self.kind
                    .block_sum(&self.buf[at..at + len], self.seed, self.proper_order)
            });
            if s.len() >= self.sums.s2length
                && s[..self.sums.s2length] == *self.sums.strong_of(i as usize)
            {
                return Some(i);
            }
        }
        None
    }

    /// Give out `buf[start..upto]` as literal.
    fn flush_literal(&mut self, upto: usize, emit: &mut dyn FnMut(Token<'_>)) {
        if upto <= self.start {
            return;
        }
        emit(Token::Literal(&self.buf[self.start..upto]));
        self.start = upto;
        self.w = self.w.max(upto);
    }
}

/// The two halves of the weak sum of `buf` (as [`super::checksum::rolling`] sums them).
fn halves(buf: &[u8]) -> (u32, u32) {
    let (mut s1, mut s2) = (0u32, 0u32);
    for &b in buf {
        s1 = s1.wrapping_add(b as i8 as i32 as u32);
        s2 = s2.wrapping_add(s1);
    }
    (s1, s2)
}

fn combine(s1: u32, s2: u32) -> u32 {
    (s1 & 0xffff).wrapping_add(s2 << 16)
}

#[cfg(test)]
mod tests {
    use super::super::checksum::rolling;
    use super::*;

    use crate::merkle::chunk::test_bytes as data;

    /// The receiver's sums of `old` in blocks of `blen`, as it sends them.
    fn sums_of(old: &[u8], blen: usize, kind: SumKind, seed: i32) -> BlockSums {
        let s2 = kind.digest_len().min(16);
        let blocks = old
            .chunks(blen)
            .map(|b| (rolling(b), kind.block_sum(b, seed, true)[..s2].to_vec()))
            .collect();
        BlockSums::new(blen, s2, old.len() % blen, blocks).unwrap()
    }

    /// Rebuild the new file from the tokens and the old copy, and count literal bytes.
    fn run(old: &[u8], new: &[u8], blen: usize, piece: usize) -> (Vec<u8>, usize) {
        let kind = SumKind::Xxh128;
        let mut m = Matcher::new(sums_of(old, blen, kind, 7), kind, 7, true);
        let (mut out, mut literal) = (Vec::new(), 0);
        let mut emit = |t: Token<'_>| match t {
            Token::Literal(b) => {
                literal += b.len();
                out.extend_from_slice(b);
            }
            Token::Block(i) => {
                let start = i as usize * blen;
                out.extend_from_slice(&old[start..(start + blen).min(old.len())]);
            }
        };
        for p in new.chunks(piece.max(1)) {
            m.push(p, &mut emit);
        }
        m.finish(&mut emit);
        (out, literal)
    }

    #[test]
    fn the_rolled_sum_equals_the_sum_at_every_offset() {
        let d = data(5000, 1);
        let blen = 700;
        let (mut s1, mut s2) = halves(&d[..blen]);
        for w in 1..d.len() - blen {
            let (out, inb) = (
                d[w - 1] as i8 as i32 as u32,
                d[w - 1 + blen] as i8 as i32 as u32,
            );
            s1 = s1.wrapping_sub(out).wrapping_add(inb);
            s2 = s2
                .wrapping_sub((blen as u32).wrapping_mul(out))
                .wrapping_add(s1);
            assert_eq!(combine(s1, s2), rolling(&d[w..w + blen]), "offset {w}");
        }
    }

    #[test]
    fn unchanged_edited_shifted_and_new_files_rebuild_exactly() {
        let old = data(100_000, 2);
        let mut edited = old.clone();
        edited[50_000..50_010].copy_from_slice(b"0123456789");
        let mut shifted = b"inserted at the front".to_vec();
        shifted.extend_from_slice(&old);
        let mut truncated = old[..77_777].to_vec();
        truncated.extend_from_slice(b"tail");
        let fresh = data(30_000, 3);
        for (what, new, most_literal) in [
            ("unchanged", &old, 0),
            ("edited", &edited, 2 * 700),
            ("shifted", &shifted, 700),
            ("truncated", &truncated, 2 * 700),
            ("fresh", &fresh, 30_000),
        ] {
            for piece in [1, 999, 65_536, 1 << 20] {
                let (got, literal) = run(&old, new, 700, piece);
                assert!(got == *new, "{what}, pieces of {piece}: rebuilt wrong");
                assert!(
                    literal <= most_literal,
                    "{what}, pieces of {piece}: {literal} literal bytes"
                );
            }
        }
    }

    #[test]
    fn the_short_last_block_matches_at_the_end_only() {
        let old = data(10_350, 4); // 14 blocks of 700 and one of 550
        let (got, literal) = run(&old, &old, 700, 4096);
        assert_eq!(got, old);
        assert_eq!(literal, 0);
        let mut longer = old.clone();
        longer.extend_from_slice(b"more");
        let (got, literal) = run(&old, &longer, 700, 4096);
        assert_eq!(got, longer);
        assert!(literal <= 550 + 4, "{literal}");
    }

    #[test]
    fn bad_sums_are_refused() {
        assert!(BlockSums::new(0, 16, 0, vec![(1, vec![0; 16])]).is_none());
        assert!(BlockSums::new(700, 16, 701, vec![]).is_none());
        assert!(BlockSums::new(700, 16, 0, vec![(1, vec![0; 15])]).is_none());
        let none = BlockSums::new(700, 16, 0, vec![]).unwrap();
        let mut m = Matcher::new(none, SumKind::Md5, 0, true);
        let mut n = 0;
        m.push(b"abc", &mut |t| {
            assert_eq!(t, Token::Literal(b"abc"));
            n += 1;
        });
        m.finish(&mut |_| panic!("nothing left"));
        assert_eq!(n, 1);
    }
}
