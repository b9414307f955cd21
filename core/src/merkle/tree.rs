//! A merkle tree over a chunk list whose interior boundaries are content-defined.
//!
//! A positional binary tree over chunks misaligns every node after an insertion that changes
//! the chunk count. Here, as in prolly trees and bup's hashsplit fan-out, a node at each level
//! ends after a child whose hash has its low `fanout_bits` bits zero (and that has at least two
//! children, so every level at least halves): node boundaries move with the content, and an
//! insertion changes only the nodes on the paths to the changed chunks — O(log n) nodes.
//!
//! The comparison is top-down and sans-IO: the receiver holds a set of every hash it has (its
//! nodes and chunks, from any file); the sender expands the nodes the receiver does not know,
//! one or several levels per round trip; unknown leaves are the chunks to send.

use std::collections::HashSet;

use super::chunk::Chunk;
use super::digest_map::{digest_map, DigestMap};

/// Default fan-out: boundaries where 2 low bits are zero, about 4 children per node — the
/// fewest hashes per change (fan-out × depth is least near e), at the price of more levels.
pub const DEFAULT_FANOUT_BITS: u32 = 2;

/// A node (or leaf, at level 0) as it travels: level, hash, and the bytes below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeRef {
    /// 0 for a chunk.
    pub level: u8,
    /// BLAKE3 of the chunk, or of the node's children.
    pub hash: [u8; 32],
    /// Bytes of file content under this node.
    pub size: u64,
}

impl NodeRef {
    /// The leaf of `chunk`: level 0, its hash and length.
    pub fn leaf(chunk: &Chunk) -> NodeRef {
        NodeRef {
            level: 0,
            hash: chunk.hash,
            size: u64::from(chunk.len),
        }
    }
}

/// The tree over one file's chunks.
#[derive(Debug, Clone)]
pub struct ChunkTree {
    /// `levels[0]` are the chunks; the last level has one node, the root.
    levels: Vec<Vec<NodeRef>>,
    /// For level `l ≥ 1`, node `i`'s children are `levels[l-1][start..end]`.
    spans: Vec<Vec<(u32, u32)>>,
    /// Where each hash is: (level, index).
    index: DigestMap<(u8, u32)>,
}

fn is_boundary(hash: &[u8; 32], bits: u32) -> bool {
    let tail = u32::from_le_bytes([hash[28], hash[29], hash[30], hash[31]]);
    tail & ((1u32 << bits) - 1) == 0
}

/// The hash of an interior node at `level` over `children`: what lets a receiver check that an
/// expansion really belongs under the node it asked about.
pub fn node_hash(level: u8, children: &[NodeRef]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"arsync tree node v1");
    h.update(&[level]);
    for c in children {
        h.update(&c.hash);
        h.update(&c.size.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

impl ChunkTree {
    /// Build the tree over `chunks` with boundaries on `fanout_bits` zero bits (1..=16).
    pub fn build(chunks: &[Chunk], fanout_bits: u32) -> ChunkTree {
        let mut tree = ChunkTree::levels_of(chunks, fanout_bits);
        let mut index = digest_map(tree.levels.iter().map(Vec::len).sum());
        for (l, nodes) in tree.levels.iter().enumerate() {
            for (i, n) in nodes.iter().enumerate() {
                index.entry(n.hash).or_insert((l as u8, i as u32));
            }
        }
        tree.index = index;
        tree
    }

    /// Issue 18, the last time targets: [`ChunkTree::ranges`] of the tree over `chunks`,
    /// without the tree's own index of its hashes (which only a sender needs).
    pub fn ranges_of(chunks: &[Chunk], fanout_bits: u32) -> DigestMap<(u64, u64)> {
        ChunkTree::levels_of(chunks, fanout_bits).ranges()
    }

    /// The levels and spans over `chunks`; the index left empty.
    fn levels_of(chunks: &[Chunk], fanout_bits: u32) -> ChunkTree {
        let bits = fanout_bits.clamp(1, 16);
        let max_children = (1usize << bits) * 8;
        let leaves: Vec<NodeRef> = chunks.iter().map(NodeRef::leaf).collect();
        let mut levels = vec![leaves];
        let mut spans = vec![Vec::new()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let level = levels.len() as u8;
            let mut nodes = Vec::new();
            let mut ranges = Vec::new();
            let mut start = 0usize;
            for (i, c) in below.iter().enumerate() {
                let count = i + 1 - start;
                let last = i + 1 == below.len();
                if last || (count >= 2 && is_boundary(&c.hash, bits)) || count >= max_children {
                    let kids = &below[start..=i];
                    nodes.push(NodeRef {
                        level,
                        hash: node_hash(level, kids),
                        size: kids.iter().map(|k| k.size).sum(),
                    });
                    ranges.push((start as u32, i as u32 + 1));
                    start = i + 1;
                }
            }
            levels.push(nodes);
            spans.push(ranges);
        }
        ChunkTree {
            levels,
            spans,
            index: DigestMap::default(),
        }
    }

    /// The root; for an empty file, a fixed "empty" leaf.
    pub fn root(&self) -> NodeRef {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(NodeRef {
                level: 0,
                hash: *blake3::hash(b"arsync tree empty v1").as_bytes(),
                size: 0,
            })
    }

    /// Number of levels (1 for a single chunk or an empty file).
    pub fn height(&self) -> usize {
        self.levels.len()
    }

    /// The chunks (leaves).
    pub fn leaves(&self) -> &[NodeRef] {
        &self.levels[0]
    }

    /// Every hash in the tree, nodes and leaves, for the receiver's "known" set.
    pub fn all_hashes(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.levels.iter().flatten().map(|n| n.hash)
    }

    /// Where every node's bytes are in the file: hash → (offset, length). A hash that occurs
    /// twice keeps its first place (the bytes are the same).
    pub fn ranges(&self) -> DigestMap<(u64, u64)> {
        let mut out = digest_map(self.levels.iter().map(Vec::len).sum());
        let mut offsets: Vec<u64> = Vec::with_capacity(self.levels[0].len());
        let mut at = 0u64;
        for n in &self.levels[0] {
            offsets.push(at);
            out.entry(n.hash).or_insert((at, n.size));
            at += n.size;
        }
        for l in 1..self.levels.len() {
            let mut next = Vec::with_capacity(self.levels[l].len());
            for (i, n) in self.levels[l].iter().enumerate() {
                let (s, _) = self.spans[l][i];
                let off = offsets[s as usize];
                next.push(off);
                out.entry(n.hash).or_insert((off, n.size));
            }
            offsets = next;
        }
        out
    }

    /// The children of `node`, or `None` for a leaf or a hash not in this tree.
    pub fn children(&self, node: &[u8; 32]) -> Option<&[NodeRef]> {
        let &(l, i) = self.index.get(node)?;
        if l == 0 {
            return None;
        }
        let (s, e) = self.spans[l as usize][i as usize];
        Some(&self.levels[l as usize - 1][s as usize..e as usize])
    }

    /// Sender side of one round trip: the descendants of `wanted`, `depth` levels down
    /// (`depth` ≥ 1), in order. Hashes not in this tree are ignored.
    pub fn expand(&self, wanted: &[NodeRef], depth: u32) -> Vec<NodeRef> {
        // Every level travels, not only the deepest: the receiver may know a whole subtree
        // and then needs none of what is below it.
        let mut frontier: Vec<NodeRef> = wanted.to_vec();
        let mut out = Vec::new();
        for _ in 0..depth.max(1) {
            let mut next = Vec::new();
            for n in &frontier {
                if let Some(kids) = self.children(&n.hash) {
                    next.extend_from_slice(kids);
                }
            }
            out.extend_from_slice(&next);
            frontier = next;
        }
        out
    }
}

/// Receiver side of one round trip: of the nodes the sender showed, which to expand (unknown
/// interior nodes whose parent is not already being expanded) and which chunks to fetch.
pub fn select_unknown(
    shown: &[NodeRef],
    known: &HashSet<[u8; 32]>,
) -> (Vec<NodeRef>, Vec<NodeRef>) {
    let mut expand = Vec::new();
    let mut fetch = Vec::new();
    for n in shown {
        if known.contains(&n.hash) {
            continue;
        }
        if n.level == 0 {
            fetch.push(*n);
        } else {
            expand.push(*n);
        }
    }
    (expand, fetch)
}

/// What a whole comparison cost and found (an in-memory run of the exchange).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOutcome {
    /// Chunks the receiver lacks, in file order, deduplicated.
    pub missing: Vec<NodeRef>,
    /// Node and chunk hashes the sender sent (the root included).
    pub hashes_sent: usize,
    /// Hashes the receiver sent back (the nodes it asked to expand).
    pub hashes_asked: usize,
    /// Round trips after the root's.
    pub round_trips: usize,
}

/// Run the top-down comparison between the sender's `tree` and a receiver that knows `known`,
/// expanding `depth` levels per round trip. The engine runs the same steps over frames.
pub fn compare(tree: &ChunkTree, known: &HashSet<[u8; 32]>, depth: u32) -> DiffOutcome {
    let mut out = DiffOutcome {
        hashes_sent: 1,
        ..DiffOutcome::default()
    };
    if tree.leaves().is_empty() {
        return out; // an empty file: nothing to fetch
    }
    let (mut expand, mut fetch) = select_unknown(&[tree.root()], known);
    let mut seen = HashSet::new();
    while !expand.is_empty() {
        out.hashes_asked += expand.len();
        out.round_trips += 1;
        let shown = tree.expand(&expand, depth);
        out.hashes_sent += shown.len();
        let (e, f) = select_unknown(&shown, known);
        // With depth > 1, keep only the deepest unknown interior nodes that were not shown
        // expanded already: a node whose children were shown needs no further request.
        let shown_set: HashSet<[u8; 32]> = shown.iter().map(|n| n.hash).collect();
        expand = e
            .into_iter()
            .filter(|n| {
                tree.children(&n.hash)
                    .is_none_or(|kids| !kids.iter().all(|k| shown_set.contains(&k.hash)))
            })
            .collect();
        fetch.extend(f);
    }
    out.missing = fetch.into_iter().filter(|n| seen.insert(n.hash)).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::chunk::{chunk_bytes, ChunkParams};

    use crate::merkle::chunk::test_data as data;

    fn tree_of(d: &[u8]) -> ChunkTree {
        ChunkTree::build(&chunk_bytes(d, ChunkParams::cdc(4096)), DEFAULT_FANOUT_BITS)
    }

    fn known(t: &ChunkTree) -> HashSet<[u8; 32]> {
        t.all_hashes().collect()
    }

    #[test]
    fn identical_trees_cost_the_root_only() {
        let d = data(4 << 20, 1);
        let t = tree_of(&d);
        let o = compare(&t, &known(&t), 1);
        assert_eq!(o.hashes_sent, 1);
        assert_eq!(o.round_trips, 0);
        assert!(o.missing.is_empty());
        assert!(t.height() >= 3, "height {}", t.height());
    }

    #[test]
    fn one_inserted_byte_costs_log_n_hashes_not_n() {
        let d = data(16 << 20, 2);
        let old = tree_of(&d);
        for at in [0usize, 8 << 20, (16 << 20) - 1] {
            let mut e = d.clone();
            e.insert(at, b'!');
            let new = tree_of(&e);
            let o = compare(&new, &known(&old), 1);
            let leaves = new.leaves().len();
            eprintln!(
                "insert at {at}: {leaves} leaves, height {}, {} hashes sent, {} asked, {} round trips, {} chunks missing",
                new.height(),
                o.hashes_sent,
                o.hashes_asked,
                o.round_trips,
                o.missing.len()
            );
            assert!(
                o.missing.len() <= 3,
                "at {at}: {} chunks missing",
                o.missing.len()
            );
            // About height × fan-out hashes, against ~4,000 leaves.
            assert!(
                o.hashes_sent < 400,
                "at {at}: {} hashes sent for {leaves} leaves",
                o.hashes_sent
            );
            // The fetched chunks plus what the receiver has rebuild the file exactly.
            let missing_bytes: u64 = o.missing.iter().map(|n| n.size).sum();
            assert!(missing_bytes < 3 * 16384 + 1);
        }
    }

    #[test]
    fn scattered_changes_fetch_exactly_the_changed_chunks() {
        let d = data(8 << 20, 3);
        let old = tree_of(&d);
        let mut e = d.clone();
        for k in 0..20 {
            let at = k * (400 << 10) + 777;
            for b in &mut e[at..at + 4096] {
                *b = b.wrapping_add(1);
            }
        }
        let new = tree_of(&e);
        let had: HashSet<[u8; 32]> = old.leaves().iter().map(|n| n.hash).collect();
        let want: HashSet<[u8; 32]> = new
            .leaves()
            .iter()
            .map(|n| n.hash)
            .filter(|h| !had.contains(h))
            .collect();
        for depth in [1, 2, 3] {
            let o = compare(&new, &known(&old), depth);
            let got: HashSet<[u8; 32]> = o.missing.iter().map(|n| n.hash).collect();
            assert_eq!(got, want, "depth {depth}");
            assert!(o.round_trips <= new.height(), "depth {depth}");
        }
        // More levels per round trip: fewer round trips.
        let o1 = compare(&new, &known(&old), 1);
        let o3 = compare(&new, &known(&old), 3);
        assert!(o3.round_trips < o1.round_trips, "{o3:?} vs {o1:?}");
    }

    #[test]
    fn ranges_point_at_the_bytes() {
        let d = data(1 << 20, 6);
        let t = tree_of(&d);
        let r = t.ranges();
        for n in t.leaves() {
            let (off, len) = r[&n.hash];
            let bytes = &d[off as usize..(off + len) as usize];
            assert_eq!(*blake3::hash(bytes).as_bytes(), n.hash);
        }
        assert_eq!(r[&t.root().hash], (0, d.len() as u64));
        // The receiver's shortcut (no index of the tree's hashes) gives the same ranges.
        let chunks = chunk_bytes(&d, ChunkParams::cdc(4096));
        assert_eq!(ChunkTree::ranges_of(&chunks, DEFAULT_FANOUT_BITS), r);
    }

    #[test]
    fn empty_and_single_chunk_files() {
        let empty = ChunkTree::build(&[], DEFAULT_FANOUT_BITS);
        assert_eq!(empty.root().size, 0);
        assert!(compare(&empty, &HashSet::new(), 1).missing.is_empty());
        let one = tree_of(b"tiny");
        assert_eq!(one.height(), 1);
        let o = compare(&one, &HashSet::new(), 1);
        assert_eq!(o.missing.len(), 1);
        assert_eq!(o.missing[0].size, 4);
    }

    #[test]
    fn duplicates_and_moved_data_are_found_in_any_known_file() {
        // The receiver has the content in another file: nothing needs to be sent.
        let d = data(2 << 20, 4);
        let other = tree_of(&d);
        let mut moved = d[1 << 20..].to_vec();
        moved.extend_from_slice(&d[..1 << 20]);
        let t = tree_of(&moved);
        let o = compare(&t, &known(&other), 2);
        // Only the chunks at the two seams are new: a few chunks of a 2 MiB file.
        let bytes: u64 = o.missing.iter().map(|n| n.size).sum();
        assert!(o.missing.len() <= 6, "{} chunks missing", o.missing.len());
        assert!(bytes < 100 << 10, "{bytes} bytes missing");
    }
}
