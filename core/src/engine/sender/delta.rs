//! The sender's side of the delta exchange: a file's chunk tree built and its root shown
//! ([`start_delta`]), expansions answered from it, the chunks asked for sent ([`send_chunks`]).
//! Issue 18, scattered deltas: a run of fetched chunks whose old bytes the receiver
//! described (`GapSums`) goes as one `GapData`, matched against those sums
//! ([`crate::merkle::gapsum`]). Does not choose which files go by delta (the receiver asks).

#[allow(unused_imports)]
use super::*;

/// The sender's side of one file's delta exchange: its chunk tree, where each chunk is, and
/// the chunks asked for so far.
pub(super) struct SenderDelta {
    pub(super) tree: ChunkTree,
    pub(super) leaves: crate::merkle::digest_map::DigestMap<(u64, u64)>,
    pub(super) file_hash: [u8; 32],
    pub(super) path: PathBuf,
    pub(super) fetch: Mutex<Vec<[u8; 32]>>,
    /// Issue 18, scattered deltas: the receiver's gaps, in fetch-list order.
    pub(super) gaps: Mutex<Vec<GapAsk>>,
}

/// Issue 18, scattered deltas: one `GapSums`: fetched chunks `first .. first + count` and
/// the sums of the old bytes they replace.
#[derive(Debug)]
pub(super) struct GapAsk {
    pub(super) first: u32,
    pub(super) count: u32,
    pub(super) block: u32,
    pub(super) sums: Vec<(u32, u32)>,
}

/// Issue 18, scattered deltas: take one `GapSums` for `d`: gaps come in fetch-list order and
/// do not overlap, and all of a file's sums together stay within a bound of its size (one
/// block sum per 64 bytes of it, and a little), so a peer cannot make the sender hold more.
pub(super) fn add_gap(d: &SenderDelta, gap: GapAsk) -> Result<(), SyncError> {
    let bad = |why: &str| -> SyncError { DecodeError::invalid("gap sums", why.to_owned()).into() };
    let mut gaps = d.gaps.lock().map_err(|_| bad("poisoned"))?;
    if let Some(last) = gaps.last() {
        if gap.first < last.first + last.count {
            return Err(bad("gaps out of order or overlapping"));
        }
    }
    let held: usize = gaps.iter().map(|g| g.sums.len()).sum::<usize>() + gap.sums.len();
    if held as u64 > d.tree.root().size / 64 + 16_384 {
        return Err(bad("more block sums than the file can have"));
    }
    gaps.push(gap);
    Ok(())
}

pub(super) fn delta_state(
    deltas: &Mutex<HashMap<u32, Arc<SenderDelta>>>,
    ndx: u32,
) -> Result<Arc<SenderDelta>, SyncError> {
    deltas
        .lock()
        .ok()
        .and_then(|m| m.get(&ndx).cloned())
        .ok_or_else(|| {
            DecodeError::invalid("delta", format!("no exchange open for index {ndx}")).into()
        })
}

/// Chunk and hash the file (or take its chunks from `cache`), keep its tree, and show the
/// receiver the root.
pub(super) fn start_delta(
    ndx: u32,
    path: PathBuf,
    params: ChunkParams,
    out: &mut FrameOut<'_>,
    deltas: &Mutex<HashMap<u32, Arc<SenderDelta>>>,
    // Issue 18, chunk cache:
    cache: Option<&ChunkCache>,
    stats: &Stats,
) -> Result<(), SyncError> {
    let built = (|| -> io::Result<SenderDelta> {
        let f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let chunks = index_file(&f, params, cache, stats)?;
        let tree = ChunkTree::build(&chunks, DEFAULT_FANOUT_BITS);
        // The tree's root is the file's identity: the receiver checks every node it is shown
        // against its parent and every chunk against its hash, so no second hash of the whole
        // file is needed.
        let file_hash = tree.root().hash;
        let mut leaves = crate::merkle::digest_map::digest_map(chunks.len());
        leaves.extend(chunks.iter().map(|c| (c.hash, (c.offset, c.len as u64))));
        Ok(SenderDelta {
            tree,
            leaves,
            file_hash,
            path,
            fetch: Mutex::new(Vec::new()),
            gaps: Mutex::new(Vec::new()),
        })
    })();
    let d = match built {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out.push(&Frame::Vanished { ndx }),
        Err(e) => {
            return out.push(&Frame::FileFailed {
                ndx,
                message: format!("send_files failed to read: {}", os_error(&e)),
            })
        }
    };
    let root = if d.tree.leaves().is_empty() {
        vec![]
    } else {
        vec![d.tree.root()]
    };
    if let Ok(mut m) = deltas.lock() {
        m.insert(ndx, Arc::new(d));
    }
    let nodes = Frame::Nodes {
        ndx,
        groups: vec![root],
    };
    stats.delta_tree.fetch_add(nodes.wire_len() as u64, Relaxed);
    out.push(&nodes)
}

/// Send the chunks the receiver asked for, in its order, then the tree's root hash.
pub(super) fn send_chunks(
    ndx: u32,
    d: &SenderDelta,
    out: &mut FrameOut<'_>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    use std::os::unix::fs::FileExt;
    let wanted = d.fetch.lock().map(|f| f.clone()).unwrap_or_default();
    let f = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&d.path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out.push(&Frame::Vanished { ndx }),
        Err(e) => {
            return out.push(&Frame::FileFailed {
                ndx,
                message: format!("send_files failed to open: {}", os_error(&e)),
            })
        }
    };
    let gaps = d
        .gaps
        .lock()
        .map(|mut g| std::mem::take(&mut *g))
        .unwrap_or_default();
    let mut gaps = gaps.into_iter().peekable();
    // A chunk's bytes appended to `buf` (the inner error: the file could not be read).
    let read = |h: &[u8; 32], buf: &mut Vec<u8>| -> Result<io::Result<()>, SyncError> {
        let Some(&(off, len)) = d.leaves.get(h) else {
            return Err(DecodeError::invalid("fetch", "not a chunk of this file").into());
        };
        let at = buf.len();
        buf.resize(at + len as usize, 0);
        Ok(f.read_exact_at(&mut buf[at..], off))
    };
    let failed = |out: &mut FrameOut<'_>, e: io::Error| {
        out.push(&Frame::FileFailed {
            ndx,
            message: format!(
                "read errors mapping \"{}\": {}",
                d.path.display(),
                os_error(&e)
            ),
        })
    };
    let mut i = 0usize;
    while i < wanted.len() {
        // Issue 18, scattered deltas: a gap's chunks as one description.
        let (frame, literal, next) = match gaps.next_if(|g| g.first as usize == i) {
            Some(g) => {
                let end = i + g.count as usize;
                if end > wanted.len() {
                    return Err(
                        DecodeError::invalid("gap sums", "a gap past the chunks fetched").into(),
                    );
                }
                let mut bytes = Vec::new();
                for h in &wanted[i..end] {
                    if let Err(e) = read(h, &mut bytes)? {
                        return failed(out, e);
                    }
                    if bytes.len() as u64 > MAX_GAP_NEW {
                        return Err(DecodeError::invalid("gap sums", "a gap too long").into());
                    }
                }
                let ops = gapsum::match_gap(&bytes, g.block, &g.sums);
                let literal = gapsum::literal_len(&ops);
                (Frame::GapData { ndx, ops }, literal, end)
            }
            None => {
                let mut bytes = Vec::new();
                if let Err(e) = read(&wanted[i], &mut bytes)? {
                    return failed(out, e);
                }
                let len = bytes.len() as u64;
                (Frame::Data { ndx, bytes }, len, i + 1)
            }
        };
        stats.delta_data.fetch_add(frame.wire_len() as u64, Relaxed);
        out.push(&frame)?;
        stats.literal.fetch_add(literal, Relaxed);
        crate::liveness::bump();
        let wait = limit.account(literal);
        if !wait.is_zero() {
            out.flush()?;
            std::thread::sleep(wait);
        }
        i = next;
    }
    if gaps.next().is_some() {
        return Err(DecodeError::invalid("gap sums", "a gap past the chunks fetched").into());
    }
    out.push(&Frame::DataEnd {
        ndx,
        hash: d.file_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sender::small::tests::frames_of;
    use crate::merkle::chunk::ChunkParams;

    /// The root first; then the chunks asked for, in the order asked, and the root's hash.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_root_then_the_chunks_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let deltas: Arc<Mutex<HashMap<u32, Arc<SenderDelta>>>> = Arc::default();
        let d2 = deltas.clone();
        let frames = frames_of(move |sink| {
            let mut out = FrameOut::new(sink);
            let stats = Stats::default();
            start_delta(7, path, ChunkParams::cdc(1024), &mut out, &d2, None, &stats)?;
            out.finish()
        })
        .await;
        let Frame::Nodes { ndx: 7, groups } = &frames[0] else {
            panic!("{frames:?}")
        };
        let d = delta_state(&deltas, 7).unwrap();
        assert_eq!(groups[0], vec![d.tree.root()]);
        let leaves = d.tree.leaves().to_vec();
        // Ask for the last chunk, then the first.
        let want = [leaves[leaves.len() - 1].hash, leaves[0].hash];
        if let Ok(mut f) = d.fetch.lock() {
            f.extend(want.iter().copied());
        }
        let frames = frames_of(move |sink| {
            let mut out = FrameOut::new(sink);
            send_chunks(7, &d, &mut out, &Stats::default(), &RateLimit::new(None))?;
            out.finish()
        })
        .await;
        assert_eq!(frames.len(), 3);
        let Frame::Data { bytes, .. } = &frames[1] else {
            panic!()
        };
        assert_eq!(bytes[..], data[..bytes.len()]);
        assert!(
            matches!(frames[2], Frame::DataEnd { ndx: 7, hash } if hash == leaves_root(&leaves))
        );
        assert!(
            delta_state(&deltas, 8).is_err(),
            "no exchange open for another index"
        );
    }

    fn leaves_root(leaves: &[crate::merkle::NodeRef]) -> [u8; 32] {
        let chunks: Vec<crate::merkle::chunk::Chunk> = leaves
            .iter()
            .scan(0u64, |at, n| {
                let c = crate::merkle::chunk::Chunk {
                    offset: *at,
                    len: n.size as u32,
                    hash: n.hash,
                };
                *at += n.size;
                Some(c)
            })
            .collect();
        ChunkTree::build(&chunks, DEFAULT_FANOUT_BITS).root().hash
    }
}
