//! Issue 18, scattered deltas: the receiver's side of the gap exchange. When a delta
//! exchange's walk ends, each run of chunks to fetch between two matched neighbours (a gap)
//! whose old bytes can be told is offered with block sums of those old bytes ([`plan_gaps`]:
//! the `GapSums` frames, sent before the last `Fetch`); the sender's `GapData` for a gap is
//! rebuilt from the same old bytes and checked chunk by chunk against the chunks' hashes
//! ([`GapFile::rebuild`]) before it goes on to the writer as those chunks' data. A gap that
//! does not check (a false match of the short sums, an old file changed since) marks the file
//! for a whole resend; nothing unchecked is written. Does not walk the tree (`delta`) or write
//! files (`writers`, `delta::rebuild`).

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;

#[allow(unused_imports)]
use super::*;
use crate::merkle::gapsum::{self, GapOp};
use crate::proto::merkle::{MAX_GAP_NEW, MAX_GAP_OLD};

/// Old bytes read per file to offer sums, at most (beyond it gaps are fetched as chunks): the
/// reads are made in the receiving loop.
const GAP_READ_MAX: u64 = 64 << 20;

/// One gap offered: the fetched chunks it covers and the old bytes its sums describe.
#[derive(Debug)]
struct GapPlan {
    /// Its first chunk's place in the fetch list.
    first: usize,
    pieces: Vec<NodeRef>,
    old_off: u64,
    block: u32,
    blocks: u32,
}

/// One file's gaps while its chunks arrive.
#[derive(Debug)]
pub(super) struct GapFile {
    plans: VecDeque<GapPlan>,
    /// The fetch-list place of the next chunk to arrive.
    next: usize,
    /// A gap did not check: the rest of the exchange is ignored and the file asked for whole.
    pub(super) failed: bool,
    /// The old file (opened again for each gap: an exchange waiting for its data holds no
    /// descriptor).
    pub(super) path: Vec<u8>,
    /// The exchange's count of bytes copied from the old file (see `ReceiverDelta`).
    copied: Arc<std::sync::atomic::AtomicU64>,
}

/// The gaps of `d`'s fetch list (its walk just ended) with the old file `old` (its bytes are
/// read here: they are only a hint — what is rebuilt from them is checked against the
/// chunks' hashes): the `GapSums` frames to send before the `Fetch` frames, and the state to
/// take the answers with (`None`: no gap could be offered).
pub(super) fn plan_gaps(d: &ReceiverDelta, ndx: u32, old: &File) -> (Vec<Frame>, Option<GapFile>) {
    let Some(old_size) = d.basis.stamp.map(|s| s.0[1].max(0) as u64) else {
        return (Vec::new(), None);
    };
    let (mut frames, mut plans) = (Vec::new(), VecDeque::new());
    let (mut at, mut fetched, mut read) = (0usize, 0usize, 0u64);
    let pieces = &d.pieces;
    while at < pieces.len() {
        if d.known(&pieces[at]) {
            at += 1;
            continue;
        }
        let (start, first) = (at, fetched);
        while at < pieces.len() && !d.known(&pieces[at]) {
            at += 1;
            fetched += 1;
        }
        let run = &pieces[start..at];
        let new_len: u64 = run.iter().map(|p| p.size).sum();
        let range = |n: &NodeRef| d.basis.ranges.get(&n.hash).copied();
        let lo = match start {
            0 => Some(0),
            _ => range(&pieces[start - 1]).map(|(o, l)| o + l),
        };
        let hi = match pieces.get(at) {
            None => Some(old_size),
            Some(n) => range(n).map(|(o, _)| o),
        };
        let (Some(lo), Some(hi)) = (lo, hi) else {
            continue;
        };
        if hi <= lo
            || hi - lo > MAX_GAP_OLD
            || new_len > MAX_GAP_NEW
            || run.len() > MAX_FETCH
            || read + (hi - lo) > GAP_READ_MAX
        {
            continue;
        }
        let block = gapsum::block_len(hi - lo);
        let blocks = ((hi - lo) / block as u64) as u32;
        if blocks == 0 {
            continue;
        }
        let mut bytes = vec![0u8; blocks as usize * block as usize];
        if old.read_exact_at(&mut bytes, lo).is_err() {
            continue;
        }
        read += bytes.len() as u64;
        frames.push(Frame::GapSums {
            ndx,
            first: first as u32,
            count: run.len() as u32,
            block,
            sums: gapsum::block_sums(&bytes, block),
        });
        plans.push_back(GapPlan {
            first,
            pieces: run.to_vec(),
            old_off: lo,
            block,
            blocks,
        });
    }
    let file = (!plans.is_empty()).then(|| GapFile {
        plans,
        next: 0,
        failed: false,
        path: d.basis.path.clone(),
        copied: d.gap_copied.clone(),
    });
    (frames, file)
}

fn bad(why: &str) -> SyncError {
    DecodeError::invalid("gap data", why.to_owned()).into()
}

impl GapFile {
    /// A chunk's `Data` arrived: whether to pass it on (not once the file failed). A chunk a
    /// gap covers must come in its `GapData`.
    pub(super) fn take_data(&mut self) -> Result<bool, SyncError> {
        if self.plans.front().is_some_and(|p| p.first == self.next) {
            return Err(bad("chunk data where a gap's description was due"));
        }
        self.next += 1;
        Ok(!self.failed)
    }

    /// A gap's description arrived: the gap's chunks, rebuilt from the old bytes (of `old`,
    /// the file at [`GapFile::path`]; `None`: it could not be opened) and each checked against
    /// its hash (`None`: the file failed — now or before — and is to be asked for whole). A
    /// description that names blocks the gap lacks or makes the wrong length is a protocol
    /// error.
    pub(super) fn rebuild(
        &mut self,
        ops: &[GapOp],
        old: Option<&File>,
    ) -> Result<Option<Vec<Vec<u8>>>, SyncError> {
        let plan = self
            .plans
            .pop_front()
            .ok_or_else(|| bad("a gap nobody offered"))?;
        if plan.first != self.next {
            return Err(bad("a gap out of order"));
        }
        self.next += plan.pieces.len();
        if self.failed {
            return Ok(None);
        }
        let want: u64 = plan.pieces.iter().map(|p| p.size).sum();
        let mut stretch = vec![0u8; plan.blocks as usize * plan.block as usize];
        if old.is_none_or(|f| f.read_exact_at(&mut stretch, plan.old_off).is_err()) {
            self.failed = true;
            return Ok(None);
        }
        let bytes =
            gapsum::apply(ops, &stretch, plan.block, want).map_err(|e| bad(&e.to_string()))?;
        let mut chunks = Vec::with_capacity(plan.pieces.len());
        let mut at = 0usize;
        for p in &plan.pieces {
            let c = &bytes[at..at + p.size as usize];
            if p.level != 0 || *blake3::hash(c).as_bytes() != p.hash {
                self.failed = true;
                return Ok(None);
            }
            chunks.push(c.to_vec());
            at += p.size as usize;
        }
        self.copied
            .fetch_add(want - gapsum::literal_len(ops), Relaxed);
        Ok(Some(chunks))
    }

    /// The sender ended the file: every gap offered must have been answered (unless the file
    /// failed and is asked for whole).
    pub(super) fn check_ended(&self) -> Result<(), SyncError> {
        match self.plans.is_empty() || self.failed {
            true => Ok(()),
            false => Err(bad("the file ended before a gap's description")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::chunk::{chunk_bytes, ChunkParams};

    use crate::merkle::chunk::test_bytes as random;

    /// An old file on disk, its index, and the receiver's walk of a new version's tree
    /// (every piece resolved to known nodes or chunks, as when the walk ends).
    fn walked(old: &[u8], new: &[u8]) -> (tempfile::TempDir, ReceiverDelta) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, old).unwrap();
        let params = ChunkParams::cdc(1024);
        let old_tree = ChunkTree::build(&chunk_bytes(old, params), DEFAULT_FANOUT_BITS);
        let new_chunks = chunk_bytes(new, params);
        let basis = BasisIndex::of_file(&old_tree, dir.path(), "f");
        let t = Transfer {
            ndx: 0,
            itemize: Itemize::new('>', FileKind::File),
            old_perms: None,
        };
        let mut d = ReceiverDelta::new(t, basis, new.len() as u64);
        // The chunk list itself, in order: known chunks and the ones to fetch.
        d.pieces = new_chunks.iter().map(NodeRef::leaf).collect();
        (dir, d)
    }

    fn changed(old: &[u8]) -> Vec<u8> {
        let mut new = old.to_vec();
        new[20_000..21_000].copy_from_slice(&random(1000, 9));
        new[50_000..50_500].copy_from_slice(&random(500, 10));
        new
    }

    /// Where the gap of fetched chunks `first .. first + count` lies in the new file.
    fn span(d: &ReceiverDelta, first: u32, count: u32) -> (usize, usize) {
        let (mut at, mut k, mut start, mut len) = (0u64, 0u32, 0u64, 0u64);
        for p in &d.pieces {
            if !d.known(p) {
                if k == first {
                    start = at;
                }
                if (first..first + count).contains(&k) {
                    len += p.size;
                }
                k += 1;
            }
            at += p.size;
        }
        (start as usize, len as usize)
    }

    /// Each changed stretch is one gap whose sums describe the old bytes between its matched
    /// neighbours; the sender's answers rebuild exactly the chunks to fetch, and cost about
    /// the change.
    #[test]
    fn gaps_rebuild_the_chunks_to_fetch() {
        let old = random(100_000, 1);
        let new = changed(&old);
        let (dir, d) = walked(&old, &new);
        let old_file = File::open(dir.path().join("f")).unwrap();
        let (frames, gaps) = plan_gaps(&d, 0, &old_file);
        let mut gaps = gaps.expect("gaps offered");
        assert_eq!(gaps.path, b"f");
        assert_eq!(frames.len(), 2, "one gap per changed stretch");
        let fetch: Vec<NodeRef> = d.pieces.iter().filter(|p| !d.known(p)).copied().collect();
        let mut literal = 0;
        for f in &frames {
            let Frame::GapSums { first, count, .. } = *f else {
                panic!()
            };
            // The chunks before this gap arrive as plain data.
            while gaps.next < first as usize {
                assert!(gaps.take_data().unwrap());
            }
            let (start, len) = span(&d, first, count);
            let Frame::GapSums { block, sums, .. } = f else {
                panic!()
            };
            let ops = gapsum::match_gap(&new[start..][..len], *block, sums);
            literal += gapsum::literal_len(&ops);
            let chunks = gaps
                .rebuild(&ops, Some(&old_file))
                .unwrap()
                .expect("the gap checks");
            let want: Vec<Vec<u8>> = fetch[first as usize..][..count as usize]
                .iter()
                .scan(start, |at, p| {
                    let c = new[*at..*at + p.size as usize].to_vec();
                    *at += p.size as usize;
                    Some(c)
                })
                .collect();
            assert_eq!(chunks, want);
        }
        assert!(
            literal < 1500 + 4 * 512,
            "{literal} literal bytes for 1,500 changed"
        );
        gaps.check_ended().unwrap();
    }

    /// A false match (the sums point a copy at the wrong old block) or an old file changed
    /// since the sums were taken: the gap does not check, nothing of it is passed on, the
    /// file is marked for a whole resend and its other chunks are dropped.
    #[test]
    fn a_gap_that_does_not_check_fails_the_file() {
        let old = random(100_000, 2);
        let new = changed(&old);
        for corrupt in ["wrong block", "old file changed"] {
            let (dir, d) = walked(&old, &new);
            let old_file = File::open(dir.path().join("f")).unwrap();
            let (frames, gaps) = plan_gaps(&d, 0, &old_file);
            let mut gaps = gaps.unwrap();
            let Frame::GapSums {
                first,
                count,
                block,
                sums,
                ..
            } = &frames[0]
            else {
                panic!()
            };
            let (start, len) = span(&d, *first, *count);
            let mut ops = gapsum::match_gap(&new[start..][..len], *block, sums);
            match corrupt {
                "wrong block" => {
                    let copy = ops.iter_mut().find_map(|op| match op {
                        GapOp::Copy { block, .. } => Some(block),
                        _ => None,
                    });
                    let b = copy.expect("a copy to corrupt");
                    *b = if *b == 0 { 1 } else { *b - 1 };
                }
                _ => {
                    use std::os::unix::fs::FileExt;
                    let f = std::fs::File::options()
                        .write(true)
                        .open(dir.path().join("f"))
                        .unwrap();
                    f.write_all_at(&[0xee; 64], start as u64).unwrap();
                }
            }
            while gaps.next < *first as usize {
                gaps.take_data().unwrap();
            }
            assert_eq!(
                gaps.rebuild(&ops, Some(&old_file)).unwrap(),
                None,
                "{corrupt}"
            );
            assert!(gaps.failed, "{corrupt}");
            // What follows is dropped, and the end is accepted (the file goes whole).
            while let Some(first) = gaps.plans.front().map(|p| p.first) {
                while gaps.next < first {
                    assert!(!gaps.take_data().unwrap(), "{corrupt}");
                }
                assert_eq!(gaps.rebuild(&[], None).unwrap(), None, "{corrupt}");
            }
            gaps.check_ended().unwrap();
        }
    }

    /// A description out of place: a chunk's data where a gap was offered, a gap nobody
    /// offered, a copy past the old blocks: the peer is refused.
    #[test]
    fn gap_answers_out_of_place_are_refused() {
        let old = random(100_000, 3);
        let new = changed(&old);
        let (dir, d) = walked(&old, &new);
        let old_file = File::open(dir.path().join("f")).unwrap();
        let (frames, gaps) = plan_gaps(&d, 0, &old_file);
        let mut gaps = gaps.unwrap();
        let Frame::GapSums { first, .. } = frames[0] else {
            panic!()
        };
        while gaps.next < first as usize {
            gaps.take_data().unwrap();
        }
        assert!(gaps.take_data().is_err(), "data where a gap was due");
        assert!(gaps.check_ended().is_err(), "ended before the gap");
        let far = [GapOp::Copy {
            block: u32::MAX - 1,
            count: 1,
        }];
        assert!(
            gaps.rebuild(&far, Some(&old_file)).is_err(),
            "a copy past the old blocks"
        );
        let mut none = GapFile {
            plans: VecDeque::new(),
            next: 0,
            failed: false,
            path: b"f".to_vec(),
            copied: Arc::default(),
        };
        assert!(none.rebuild(&[], None).is_err(), "a gap nobody offered");
    }
}
