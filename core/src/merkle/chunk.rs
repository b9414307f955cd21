//! Content-defined chunks of a file, each with its BLAKE3.
//!
//! Boundaries come from FastCDC (min/avg/max are parameters; the `fastcdc` crate's cut
//! points, found by the faster pass in `gear.rs`), so inserting bytes shifts only the chunks
//! around the insertion; [`ChunkParams::Fixed`] cuts fixed-size blocks instead (the
//! fallback for peers or files where content-defined cutting does not pay). Hashing runs on all
//! cores: boundaries are found in one pass, then the chunks are hashed in parallel, many
//! chunks side by side in SIMD lanes (`batch_hash`).
//!
//! [`ChunkParams::for_file`] picks the average chunk size from the file size and the link's
//! bandwidth-delay product: small chunks send fewer delta bytes on sparse changes, large ones
//! send fewer hashes (seed phase 4); with the hierarchical exchange of [`super::tree`] only
//! O(log n) hashes cross the link per change, so small chunks win until the hash bytes per
//! round trip approach what the link carries in one.

use std::io::{self, Read};

use rayon::prelude::*;

/// A chunk: where it is and what it hashes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// BLAKE3 of the bytes.
    pub hash: [u8; 32],
}

/// How a file is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkParams {
    /// FastCDC with these sizes.
    Cdc {
        /// Smallest chunk.
        min: u32,
        /// Target average.
        avg: u32,
        /// Largest chunk.
        max: u32,
    },
    /// Fixed-size blocks.
    Fixed {
        /// Block size.
        size: u32,
    },
}

/// Chunking parameters outside what FastCDC accepts (or zero-sized blocks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunk parameters: {0}")]
pub struct ChunkParamsError(&'static str);

impl ChunkParams {
    /// FastCDC around `avg` (min = avg/4, max = avg*4, FastCDC's usual ratios).
    pub fn cdc(avg: u32) -> ChunkParams {
        ChunkParams::Cdc {
            min: (avg / 4).max(64),
            avg,
            max: avg.saturating_mul(4).min(16 << 20),
        }
    }

    /// Check the parameters against FastCDC's bounds (64 B ≤ min ≤ 1 MiB, 256 B ≤ avg ≤ 4 MiB,
    /// 1 KiB ≤ max ≤ 16 MiB, min ≤ avg ≤ max) or a fixed size of 1 B..16 MiB. Parameters
    /// from a peer must pass this before use.
    pub fn validate(&self) -> Result<(), ChunkParamsError> {
        match *self {
            ChunkParams::Cdc { min, avg, max } => {
                let (min, avg, max) = (min as usize, avg as usize, max as usize);
                use fastcdc::v2020 as f;
                if !(f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min) {
                    return Err(ChunkParamsError("min out of range"));
                }
                if !(f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg) {
                    return Err(ChunkParamsError("avg out of range"));
                }
                if !(f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&max) {
                    return Err(ChunkParamsError("max out of range"));
                }
                if !(min <= avg && avg <= max) {
                    return Err(ChunkParamsError("need min <= avg <= max"));
                }
                Ok(())
            }
            ChunkParams::Fixed { size } => {
                if size == 0 || size > 16 << 20 {
                    Err(ChunkParamsError("fixed size out of range"))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The average chunk size for a file of `file_size` bytes over a link whose
    /// bandwidth-delay product is `bdp` bytes (0 when unknown or local).
    ///
    /// 1 KiB for files under 1 MiB (documents and small binaries change in many small places:
    /// an edit then costs about 1 KiB, as rsync's ~700-byte blocks do), at least 256 B and an
    /// eighth of the file for the smallest; 4 KiB for larger files, growing with the square
    /// root of the file size (keeping the chunk count near sqrt(n)·64); raised so one round
    /// trip's worth of hashes (33 bytes each) stays under 1/64 of the BDP; at most 1 MiB and
    /// rounded to a power of two.
    pub fn for_file(file_size: u64, bdp: u64) -> ChunkParams {
        Self::sized(file_size, bdp, 8.0)
    }

    /// [`ChunkParams::for_file`] when both ends speak the gap exchange (`gaps`): a changed
    /// stretch then costs about its change whatever the chunks' size, so large files take
    /// chunks 4 × larger (the square root of the size over 2, not over 8: 16 KiB at 1 GiB,
    /// the same 4 KiB up to 64 MiB) — a quarter of the chunks to hash, index and walk.
    pub fn for_file_with_gaps(file_size: u64, bdp: u64) -> ChunkParams {
        Self::sized(file_size, bdp, 2.0)
    }

    fn sized(file_size: u64, bdp: u64, root_over: f64) -> ChunkParams {
        let by_size = ((file_size as f64).sqrt() / root_over) as u64;
        let by_link = if bdp == 0 { 0 } else { bdp / 64 / 33 };
        let floor = if file_size < 1 << 20 {
            (file_size / 8).clamp(256, 1024)
        } else {
            4096
        };
        let avg = by_size.max(by_link).clamp(floor, 1 << 20);
        ChunkParams::cdc(avg.next_power_of_two().min(1 << 20) as u32)
    }
}

/// The parameters both sides derive, independently, for the delta exchange of a file of
/// `file_size` bytes (the sender's size from the file list): the receiver's chosen average if
/// it sent one (clamped to 256 B..256 KiB), otherwise [`ChunkParams::for_file`] on a link
/// whose bandwidth-delay product is `bdp` (0: unknown; both ends use the one they agreed in
/// the `tune` capability); the average is capped at 256 KiB so that a chunk (≤ 4 × avg) fits
/// one `Data` frame. `gaps`: both ends agreed the gap exchange
/// ([`ChunkParams::for_file_with_gaps`]).
pub fn delta_params(file_size: u64, avg: Option<u32>, bdp: u64, gaps: bool) -> ChunkParams {
    const CAP: u32 = 256 << 10;
    let by_file = if gaps {
        ChunkParams::for_file_with_gaps
    } else {
        ChunkParams::for_file
    };
    match avg {
        Some(a) => ChunkParams::cdc(a.clamp(256, CAP)),
        None => match by_file(file_size, bdp) {
            ChunkParams::Cdc { avg, .. } if avg > CAP => ChunkParams::cdc(CAP),
            p => p,
        },
    }
}

/// Chunk boundaries (offset, len) of `data`.
fn boundaries(data: &[u8], params: ChunkParams) -> Vec<(u64, u32)> {
    match params {
        ChunkParams::Cdc { min, avg, max } => {
            let threads = rayon::current_num_threads();
            if threads > 1 && data.len() >= 2 * PARALLEL_CUT_MIN {
                cdc_parallel(data, (min, avg, max), threads)
            } else {
                cdc_from(data, 0, (min, avg, max), data.len())
            }
        }
        ChunkParams::Fixed { size } => (0..data.len())
            .step_by(size as usize)
            .map(|o| (o as u64, (data.len() - o).min(size as usize) as u32))
            .collect(),
    }
}

/// Inputs at least twice this long are cut in parallel segments.
const PARALLEL_CUT_MIN: usize = 4 << 20;

/// FastCDC's chunks of `data` starting at `start`, until one ends at or past `stop`: the
/// crate's cut points, found by [`super::gear`]'s faster pass.
fn cdc_from(data: &[u8], start: usize, p: (u32, u32, u32), stop: usize) -> Vec<(u64, u32)> {
    super::gear::cuts_from(data, start, p, stop)
}

/// The chunk boundaries (offset, len) of `data` on this thread alone, as every cut of a
/// file is made (segments in parallel give the same boundaries). For benches and probes;
/// `params` must have passed [`ChunkParams::validate`].
pub fn cut_points(data: &[u8], params: ChunkParams) -> Vec<(u64, u32)> {
    match params {
        ChunkParams::Cdc { min, avg, max } => cdc_from(data, 0, (min, avg, max), data.len()),
        fixed => boundaries(data, fixed),
    }
}

/// [`cut_points`] as the `fastcdc` crate's own scalar loop finds them: the reference the
/// faster pass is tested against, and the baseline benches compare it with.
pub fn cut_points_reference(data: &[u8], params: ChunkParams) -> Vec<(u64, u32)> {
    match params {
        ChunkParams::Cdc { min, avg, max } => {
            super::gear::cuts_from_scalar(data, 0, (min, avg, max), data.len())
        }
        fixed => boundaries(data, fixed),
    }
}

/// The same boundaries as one sequential pass, found on several threads: each segment is cut
/// from its own start; a segment's chunks are taken once the sequential chain lands on one of
/// their starts (after that both chains are the same, FastCDC being a function of where a
/// chunk starts). Until it lands, the chain is continued one chunk at a time.
fn cdc_parallel(data: &[u8], p: (u32, u32, u32), threads: usize) -> Vec<(u64, u32)> {
    let parts = threads.min(data.len() / PARALLEL_CUT_MIN).max(1);
    let seg = data.len().div_ceil(parts);
    let starts: Vec<usize> = (0..parts).map(|i| i * seg).collect();
    let chains: Vec<Vec<(u64, u32)>> = starts
        .par_iter()
        .enumerate()
        .map(|(i, &s)| {
            let stop = starts.get(i + 1).copied().unwrap_or(data.len());
            cdc_from(data, s, p, stop)
        })
        .collect();
    let mut out: Vec<(u64, u32)> = Vec::with_capacity(data.len() / p.1.max(1) as usize + 16);
    for chain in chains {
        let end = |out: &Vec<(u64, u32)>| out.last().map_or(0, |&(o, l)| o as usize + l as usize);
        if out.is_empty() {
            out.extend(chain);
            continue;
        }
        loop {
            let at = end(&out) as u64;
            if at as usize >= data.len() {
                break;
            }
            // `chain` is sorted by offset: look for a chunk starting where we are.
            match chain.binary_search_by_key(&at, |&(o, _)| o) {
                Ok(i) => {
                    out.extend_from_slice(&chain[i..]);
                    break;
                }
                Err(i) if i >= chain.len() => {
                    // Past this segment's chain: the next one (or the end) takes over.
                    if chain.last().is_some_and(|&(o, l)| o + l as u64 > at) {
                        out.extend(
                            cdc_from(data, at as usize, p, at as usize + 1)
                                .into_iter()
                                .take(1),
                        );
                        continue;
                    }
                    break;
                }
                Err(_) => {
                    out.extend(
                        cdc_from(data, at as usize, p, at as usize + 1)
                            .into_iter()
                            .take(1),
                    );
                }
            }
        }
    }
    // The last chain may stop short of the end only if a chain ended early; finish the tail.
    let covered = out.last().map_or(0, |&(o, l)| o as usize + l as usize);
    if covered < data.len() {
        let rest = cdc_from(data, covered, p, data.len());
        out.extend(rest);
    }
    out
}

/// Cut `data` and hash every chunk (in parallel). `params` must have passed
/// [`ChunkParams::validate`].
pub fn chunk_bytes(data: &[u8], params: ChunkParams) -> Vec<Chunk> {
    // Issue 18, the last time targets: each stretch hashed as soon as it is cut, while its
    // bytes are still in this core's cache (the cut pass brings them in from memory; hashing
    // the whole input after cutting all of it read them from memory again).
    if let ChunkParams::Cdc { min, avg, max } = params {
        let threads = rayon::current_num_threads();
        if threads > 1 && data.len() >= 2 * PARALLEL_CUT_MIN {
            return chunk_parallel(data, (min, avg, max), threads);
        }
        return cut_and_hash(data, 0, (min, avg, max), data.len());
    }
    let cuts = boundaries(data, params);
    // Issue 18, cheap deltas: the chunks of a run are hashed side by side in SIMD lanes
    // (`batch_hash`), a run per task.
    let hash_run = |run: &[(u64, u32)]| {
        let hashes = super::batch_hash::hash_pieces(data, run);
        run.iter()
            .zip(hashes)
            .map(|(&(offset, len), hash)| Chunk { offset, len, hash })
            .collect::<Vec<Chunk>>()
    };
    // Hashing a small input on other threads costs more than it saves.
    if data.len() < PARALLEL_HASH_MIN {
        return hash_run(&cuts);
    }
    cuts.par_chunks(HASH_RUN).flat_map_iter(hash_run).collect()
}

/// Chunks hashed as one task when hashing runs on all cores (about 2 MiB at 4 KiB).
const HASH_RUN: usize = 512;

/// Issue 18, the last time targets: bytes cut before the chunks cut so far are hashed (well
/// within a core's cache).
const CUT_THEN_HASH: usize = 512 << 10;

/// FastCDC's chunks of `data` from `start` until one ends at or past `stop` (as
/// [`cdc_from`]), each hashed: cut a stretch of [`CUT_THEN_HASH`], hash its chunks, go on.
fn cut_and_hash(data: &[u8], start: usize, p: (u32, u32, u32), stop: usize) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(stop.saturating_sub(start) / p.1.max(1) as usize + 4);
    let mut at = start;
    while at < stop.min(data.len()) {
        let cuts = cdc_from(data, at, p, (at + CUT_THEN_HASH).min(stop));
        let Some(&(last, len)) = cuts.last() else {
            break;
        };
        let hashes = super::batch_hash::hash_pieces(data, &cuts);
        out.extend(cuts.iter().zip(hashes).map(|(&(offset, len), hash)| Chunk {
            offset,
            len,
            hash,
        }));
        at = last as usize + len as usize;
    }
    out
}

/// [`cdc_parallel`] with every chunk hashed ([`cut_and_hash`] per segment; the few chunks cut
/// again where a segment's chain joins the one before are hashed there). Segments of
/// [`PARALLEL_CUT_MIN`] (at least one per thread), so that a core the other side of a
/// transfer holds up for a while delays its segment only.
fn chunk_parallel(data: &[u8], p: (u32, u32, u32), threads: usize) -> Vec<Chunk> {
    let parts = (data.len() / PARALLEL_CUT_MIN).max(threads).max(1);
    let seg = data.len().div_ceil(parts);
    let starts: Vec<usize> = (0..parts).map(|i| i * seg).collect();
    let chains: Vec<Vec<Chunk>> = starts
        .par_iter()
        .enumerate()
        .map(|(i, &s)| {
            let stop = starts.get(i + 1).copied().unwrap_or(data.len());
            cut_and_hash(data, s, p, stop)
        })
        .collect();
    let one = |at: usize| -> Vec<Chunk> {
        let mut cut = cdc_from(data, at, p, at + 1);
        cut.truncate(1);
        let hashes = super::batch_hash::hash_pieces(data, &cut);
        cut.iter()
            .zip(hashes)
            .map(|(&(offset, len), hash)| Chunk { offset, len, hash })
            .collect()
    };
    let mut out: Vec<Chunk> = Vec::with_capacity(data.len() / p.1.max(1) as usize + 16);
    for chain in chains {
        let end = |out: &Vec<Chunk>| out.last().map_or(0, |c| c.offset as usize + c.len as usize);
        if out.is_empty() {
            out.extend(chain);
            continue;
        }
        loop {
            let at = end(&out) as u64;
            if at as usize >= data.len() {
                break;
            }
            match chain.binary_search_by_key(&at, |c| c.offset) {
                Ok(i) => {
                    out.extend_from_slice(&chain[i..]);
                    break;
                }
                Err(i) if i >= chain.len() => {
                    if chain.last().is_some_and(|c| c.offset + c.len as u64 > at) {
                        out.extend(one(at as usize));
                        continue;
                    }
                    break;
                }
                Err(_) => out.extend(one(at as usize)),
            }
        }
    }
    let covered = out.last().map_or(0, |c| c.offset as usize + c.len as usize);
    if covered < data.len() {
        out.extend(cut_and_hash(data, covered, p, data.len()));
    }
    out
}

/// Inputs at least this long are hashed on all cores.
const PARALLEL_HASH_MIN: usize = 1 << 20;

/// Cut and hash a stream, reading it in windows so memory stays bounded (a window is cut
/// only up to its last boundary; the tail is carried into the next window).
pub fn chunk_reader(r: impl Read, params: ChunkParams) -> io::Result<Vec<Chunk>> {
    chunk_reader_windowed(r, params, 64 << 20, None).map(|(chunks, _)| chunks)
}

/// Cut and hash an open file, with a window no larger than the file needs.
pub fn chunk_file(f: &std::fs::File, params: ChunkParams) -> io::Result<Vec<Chunk>> {
    chunk_file_inner(f, params, None).map(|(chunks, _)| chunks)
}

/// Issue 18, cheap deltas: what is done with each stretch of a file read to be chunked,
/// beside the cutting and hashing of it (on a thread of its own): given the stretch's offset
/// in the file and its bytes, each byte once, in file order.
pub type Beside<'a> = &'a (dyn Fn(u64, &[u8]) -> io::Result<()> + Sync);

/// Issue 18, cheap deltas: [`chunk_file`], with `beside` called on every stretch read (see
/// [`Beside`]). The flag is false if `beside` failed (it is not called again; the chunks are
/// good all the same).
pub fn chunk_file_beside(
    f: &std::fs::File,
    params: ChunkParams,
    beside: Beside<'_>,
) -> io::Result<(Vec<Chunk>, bool)> {
    chunk_file_inner(f, params, Some(beside))
}

fn chunk_file_inner(
    f: &std::fs::File,
    params: ChunkParams,
    beside: Option<Beside<'_>>,
) -> io::Result<(Vec<Chunk>, bool)> {
    let len = f.metadata()?.len();
    if len <= SMALL_FILE_WHOLE {
        // Read whole: no window to allocate and fill for a small file.
        let mut data = Vec::with_capacity(len as usize + 1);
        let mut r = f;
        r.read_to_end(&mut data)?;
        crate::liveness::bump();
        return Ok(chunk_and_beside(&data, 0, 0, params, beside));
    }
    // Issue 18, no work twice: every page of a fresh window is zeroed by the kernel when the
    // read first touches it, so the window is as large as the cores need for cutting in
    // parallel (a segment per core of at least 2 × PARALLEL_CUT_MIN), no larger.
    let per_cores = (rayon::current_num_threads() * 2 * PARALLEL_CUT_MIN).clamp(16 << 20, 64 << 20);
    let window = (len as usize).clamp(1 << 20, per_cores);
    // Issue 18, the last time targets: cut and hashed where the page cache holds it, not
    // copied into the window first (`mapped`); read when it cannot be mapped.
    if let Some(done) = chunk_mapped(f, len, params, window, beside)? {
        return Ok(done);
    }
    chunk_reader_windowed(f, params, window, beside)
}

/// Issue 18, the last time targets: [`chunk_reader_windowed`] over mapped windows of the
/// file's first `len` bytes (each window mapped afresh from the last boundary, so nothing is
/// carried). `None` if the first window cannot be mapped (then nothing was done: the caller
/// reads instead). A file that shrank under a window is an error, as it changed while it
/// was read.
fn chunk_mapped(
    f: &std::fs::File,
    len: u64,
    params: ChunkParams,
    window: usize,
    mut beside: Option<Beside<'_>>,
) -> io::Result<Option<(Vec<Chunk>, bool)>> {
    let (avg, max) = match params {
        ChunkParams::Cdc { avg, max, .. } => (avg as usize, max as usize),
        ChunkParams::Fixed { size } => (size as usize, size as usize),
    };
    let mut out = Vec::with_capacity(len as usize / avg.max(1) + 16);
    let mut base = 0u64;
    // Up to where `beside` has been handed the bytes.
    let mut handed_to = 0u64;
    let mut handed = true;
    loop {
        let end = (base + (window + max) as u64).min(len);
        let eof = end == len;
        let map = match super::mapped::Mapped::map(f, base, (end - base) as usize) {
            Ok(Some(map)) => map,
            // Not mappable at all (no guard slot, or a file the kernel will not map): read.
            Ok(None) | Err(_) if base == 0 => return Ok(None),
            Ok(None) => return Err(io::Error::other("no room to map the file's next window")),
            Err(err) => return Err(err),
        };
        if !eof {
            // The next window's pages read ahead from disk (if they are not cached) while
            // this one is cut and hashed.
            let next = (end + (window as u64)).min(len);
            let _ = rustix::fs::fadvise(
                f,
                end,
                std::num::NonZeroU64::new(next - end),
                rustix::fs::Advice::WillNeed,
            );
        }
        let data = map.bytes();
        let fresh = (handed_to - base) as usize;
        let (mut chunks, ok) = chunk_and_beside(data, fresh, handed_to, params, beside);
        if map.torn() {
            return Err(io::Error::other("the file shrank while it was read"));
        }
        drop(map);
        handed_to = end;
        if !ok {
            beside = None;
            handed = false;
        }
        crate::liveness::bump();
        if !eof {
            chunks.pop();
        }
        let consumed = chunks.last().map_or(0, |c| c.offset + c.len as u64);
        out.extend(chunks.into_iter().map(|c| Chunk {
            offset: c.offset + base,
            ..c
        }));
        if eof {
            return Ok(Some((out, handed)));
        }
        base += consumed;
    }
}

/// Chunk `data`; with `beside`, hand it `data[fresh..]` (the part not handed over before)
/// meanwhile, at file offset `at`. The flag: whether `beside`, if any, succeeded.
fn chunk_and_beside(
    data: &[u8],
    fresh: usize,
    at: u64,
    params: ChunkParams,
    beside: Option<Beside<'_>>,
) -> (Vec<Chunk>, bool) {
    let Some(beside) = beside.filter(|_| fresh < data.len()) else {
        return (chunk_bytes(data, params), true);
    };
    std::thread::scope(|s| {
        let side = s.spawn(|| beside(at, &data[fresh..]));
        let chunks = chunk_bytes(data, params);
        let ok = side.join().is_ok_and(|r| r.is_ok());
        (chunks, ok)
    })
}

/// Files up to this size are read whole to be chunked.
const SMALL_FILE_WHOLE: u64 = 4 << 20;

fn chunk_reader_windowed(
    mut r: impl Read,
    params: ChunkParams,
    window: usize,
    mut beside: Option<Beside<'_>>,
) -> io::Result<(Vec<Chunk>, bool)> {
    let max = match params {
        ChunkParams::Cdc { max, .. } => max as usize,
        ChunkParams::Fixed { size } => size as usize,
    };
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(window + max);
    let mut base = 0u64;
    let mut eof = false;
    let mut handed = true;
    while !eof || !buf.is_empty() {
        // What the buffer holds that was not in it last time (the carried tail was).
        let carried = buf.len();
        // Issue 18, no work twice: read into the buffer's spare room, not over zeros written
        // first (a file's `read_buf` fills uninitialized memory); `read_to_end` retries an
        // interrupted read and stops at the window's end or the file's.
        if !eof && buf.len() < window + max {
            let want = (window + max - buf.len()) as u64;
            let n = (&mut r).take(want).read_to_end(&mut buf)?;
            eof = (n as u64) < want;
            crate::liveness::bump();
        }
        let (mut chunks, ok) =
            chunk_and_beside(&buf, carried, base + carried as u64, params, beside);
        if !ok {
            // A stretch missed: what `beside` makes is of no use any more.
            beside = None;
            handed = false;
        }
        crate::liveness::bump();
        // Unless at the end, the last chunk may have been cut by the window edge: redo it.
        if !eof {
            chunks.pop();
        }
        let consumed = chunks
            .last()
            .map_or(0, |c| (c.offset + c.len as u64) as usize);
        out.extend(chunks.into_iter().map(|c| Chunk {
            offset: c.offset + base,
            ..c
        }));
        if eof {
            break;
        }
        buf.drain(..consumed);
        base += consumed as u64;
    }
    Ok((out, handed))
}

/// Deterministic pseudo-random numbers (xorshift64) for the tests of this module tree.
#[cfg(test)]
pub(crate) struct TestRng(pub(crate) u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next `n` numbers' low bytes.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A number in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Deterministic pseudo-random bytes for the tests of this module tree.
#[cfg(test)]
pub(crate) fn test_data(n: usize, seed: u64) -> Vec<u8> {
    TestRng(seed | 1).bytes(n)
}

/// [`test_data`] with the seed mixed first, so that every seed is its own sequence (in
/// `test_data` 2 and 3 both start at 3): for the tests that use neighbouring seeds for an old
/// version and its change (the gap exchange's, rsync's matcher's).
#[cfg(test)]
pub(crate) fn test_bytes(n: usize, seed: u64) -> Vec<u8> {
    TestRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).bytes(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_data as data;

    #[test]
    fn chunks_cover_the_input_and_hash_it() {
        let d = data(1 << 20, 1);
        for p in [ChunkParams::cdc(4096), ChunkParams::Fixed { size: 5000 }] {
            p.validate().unwrap();
            let c = chunk_bytes(&d, p);
            let mut at = 0u64;
            for ch in &c {
                assert_eq!(ch.offset, at);
                let s = &d[at as usize..at as usize + ch.len as usize];
                assert_eq!(ch.hash, *blake3::hash(s).as_bytes());
                at += ch.len as u64;
            }
            assert_eq!(at, d.len() as u64);
        }
    }

    #[test]
    fn an_insertion_shifts_only_nearby_chunks() {
        let d = data(2 << 20, 2);
        let mut e = d.clone();
        e.insert(1000, b'x');
        let a: std::collections::HashSet<_> = chunk_bytes(&d, ChunkParams::cdc(4096))
            .iter()
            .map(|c| c.hash)
            .collect();
        let b = chunk_bytes(&e, ChunkParams::cdc(4096));
        let new = b.iter().filter(|c| !a.contains(&c.hash)).count();
        assert!(new <= 3, "{new} chunks changed for one inserted byte");
        // Fixed blocks, by contrast, all shift.
        let fa: std::collections::HashSet<_> = chunk_bytes(&d, ChunkParams::Fixed { size: 4096 })
            .iter()
            .map(|c| c.hash)
            .collect();
        let fb = chunk_bytes(&e, ChunkParams::Fixed { size: 4096 });
        assert!(fb.iter().filter(|c| !fa.contains(&c.hash)).count() > fb.len() / 2);
    }

    #[test]
    fn parallel_cutting_matches_the_sequential_pass() {
        let d = data(23 << 20, 9);
        for avg in [1024u32, 4096, 65536] {
            let p = ChunkParams::cdc(avg);
            let ChunkParams::Cdc { min, avg, max } = p else {
                unreachable!()
            };
            let seq = cdc_from(&d, 0, (min, avg, max), d.len());
            // Issue 18, chunker: the faster pass is the crate's.
            assert_eq!(seq, cut_points_reference(&d, p), "avg {avg}");
            for threads in [2, 3, 5] {
                assert_eq!(
                    cdc_parallel(&d, (min, avg, max), threads),
                    seq,
                    "avg {avg}, {threads} threads"
                );
            }
        }
        // Repetitive data, where chains may take long to meet.
        let mut r = vec![0u8; 12 << 20];
        for (i, b) in r.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let ChunkParams::Cdc { min, avg, max } = ChunkParams::cdc(4096) else {
            unreachable!()
        };
        let seq = cdc_from(&r, 0, (min, avg, max), r.len());
        assert_eq!(cdc_parallel(&r, (min, avg, max), 2), seq);
    }

    #[test]
    fn the_reader_matches_the_slice() {
        let d = data(3 << 20, 3);
        let p = ChunkParams::cdc(8192);
        assert_eq!(chunk_reader(&d[..], p).unwrap(), chunk_bytes(&d, p));
        // Windows much smaller than the input: boundaries must not depend on them.
        for w in [100_000, 1 << 20] {
            assert_eq!(
                chunk_reader_windowed(&d[..], p, w, None).unwrap().0,
                chunk_bytes(&d, p)
            );
        }
        assert_eq!(chunk_reader(&b""[..], p).unwrap(), vec![]);
    }

    // Issue 18, no work twice: a file larger than its window is read into the window's spare
    // room, window after window, and cut where the whole would be.
    #[test]
    fn a_file_read_in_windows_matches_the_slice() {
        let d = data(37 << 20, 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &d).unwrap();
        let p = ChunkParams::cdc(4096);
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(chunk_file(&f, p).unwrap(), chunk_bytes(&d, p));
    }

    // Issue 18, cheap deltas: `beside` is handed every byte of the file once, in order, at
    // its offset, window after window (the tail carried from one window to the next handed
    // over once), and the chunks are those of the file alone; a small file read whole too.
    #[test]
    fn beside_the_chunking_every_byte_is_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        for (len, seed) in [(37usize << 20, 6u64), (300_000, 7)] {
            let d = data(len, seed);
            let path = dir.path().join("f");
            std::fs::write(&path, &d).unwrap();
            let copy = std::sync::Mutex::new(Vec::new());
            let beside = |at: u64, bytes: &[u8]| {
                let mut c = copy.lock().unwrap();
                assert_eq!(at, c.len() as u64, "in order, each byte once");
                c.extend_from_slice(bytes);
                Ok(())
            };
            let p = ChunkParams::cdc(4096);
            let f = std::fs::File::open(&path).unwrap();
            let (chunks, ok) = chunk_file_beside(&f, p, &beside).unwrap();
            assert!(ok);
            assert_eq!(chunks, chunk_bytes(&d, p));
            assert_eq!(copy.into_inner().unwrap(), d);
        }
    }

    // Issue 18, the last time targets: a large file is cut from mapped windows; the chunks
    // are those the read windows give, and one that shrinks while it is cut is an error (its
    // later windows past the new end are torn), not a crash.
    #[test]
    fn mapped_windows_match_read_windows_and_a_shrinking_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = data(37 << 20, 10);
        let path = dir.path().join("f");
        std::fs::write(&path, &d).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let p = ChunkParams::cdc(16384);
        let window = 16 << 20;
        let read = chunk_reader_windowed(&f, p, window, None).unwrap();
        let mapped = chunk_mapped(&f, d.len() as u64, p, window, None).unwrap();
        assert_eq!(mapped, Some(read));
        let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let cut = |_: u64, _: &[u8]| w.set_len(1 << 20);
        let shrunk = chunk_mapped(&f, d.len() as u64, p, window, Some(&cut));
        assert!(
            shrunk.is_err(),
            "{:?}",
            shrunk.map(|c| c.map(|c| c.0.len()))
        );
    }

    // Issue 18, the last time targets: cut and hashed stretch by stretch, in segments on
    // several threads, the chunks are the sequential pass's with each one's BLAKE3.
    #[test]
    fn cutting_and_hashing_together_gives_the_sequential_chunks() {
        let d = data(23 << 20, 11);
        for avg in [1024u32, 4096, 16384, 65536] {
            let p = ChunkParams::cdc(avg);
            let ChunkParams::Cdc { min, avg, max } = p else {
                unreachable!()
            };
            let want: Vec<Chunk> = cut_points_reference(&d, p)
                .into_iter()
                .map(|(offset, len)| Chunk {
                    offset,
                    len,
                    hash: *blake3::hash(&d[offset as usize..offset as usize + len as usize])
                        .as_bytes(),
                })
                .collect();
            assert_eq!(
                cut_and_hash(&d, 0, (min, avg, max), d.len()),
                want,
                "avg {avg}"
            );
            for threads in [2, 3, 5, 8] {
                assert_eq!(
                    chunk_parallel(&d, (min, avg, max), threads),
                    want,
                    "avg {avg}, {threads} threads"
                );
            }
        }
    }

    // A `beside` that fails is reported and not called again; the chunks are not hurt.
    #[test]
    fn a_failure_beside_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = data(37 << 20, 8);
        let path = dir.path().join("f");
        std::fs::write(&path, &d).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let beside = |_: u64, _: &[u8]| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(io::Error::other("full"))
        };
        let p = ChunkParams::cdc(4096);
        let (chunks, ok) = chunk_file_beside(&f, p, &beside).unwrap();
        assert!(!ok);
        assert_eq!(calls.into_inner(), 1);
        assert_eq!(chunks, chunk_bytes(&d, p));
    }

    // Issue 18, chunker: a peer may ask for any average in range (`chunk-avg`); odd sizes
    // used to trip the fastcdc crate's debug assertions in a debug build.
    #[test]
    fn odd_sizes_from_a_peer_are_cut() {
        let d = data(300_000, 4);
        let p = delta_params(d.len() as u64, Some(1001), 0, false);
        assert_eq!(
            p,
            ChunkParams::Cdc {
                min: 250,
                avg: 1001,
                max: 4004
            }
        );
        p.validate().unwrap();
        let c = chunk_bytes(&d, p);
        assert!(c.len() > 100, "{}", c.len());
        assert_eq!(c.iter().map(|c| c.len as usize).sum::<usize>(), d.len());
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(ChunkParams::Cdc {
            min: 1,
            avg: 2,
            max: 3
        }
        .validate()
        .is_err());
        assert!(ChunkParams::Cdc {
            min: 8192,
            avg: 4096,
            max: 65536
        }
        .validate()
        .is_err());
        assert!(ChunkParams::Fixed { size: 0 }.validate().is_err());
        for (size, bdp) in [(0, 0), (1 << 30, 0), (1 << 40, 125 << 20), (10, 1)] {
            ChunkParams::for_file(size, bdp).validate().unwrap();
        }
        assert_eq!(ChunkParams::for_file(1 << 20, 0), ChunkParams::cdc(4096));
    }

    #[test]
    fn with_gaps_only_files_over_64_mib_take_larger_chunks() {
        for size in [0u64, 100, 1 << 20, 16 << 20, 64 << 20] {
            assert_eq!(
                ChunkParams::for_file_with_gaps(size, 0),
                ChunkParams::for_file(size, 0),
                "{size}"
            );
        }
        assert_eq!(ChunkParams::for_file(1 << 30, 0), ChunkParams::cdc(4096));
        assert_eq!(
            ChunkParams::for_file_with_gaps(65 << 20, 0),
            ChunkParams::cdc(8192)
        );
        assert_eq!(
            ChunkParams::for_file_with_gaps(1 << 30, 0),
            ChunkParams::cdc(16384)
        );
        assert_eq!(
            delta_params(1 << 30, None, 0, true),
            ChunkParams::cdc(16384)
        );
        assert_eq!(
            delta_params(1 << 30, None, 0, false),
            ChunkParams::cdc(4096)
        );
        // A size the receiver asked for wins either way.
        assert_eq!(
            delta_params(1 << 30, Some(2048), 0, true),
            ChunkParams::cdc(2048)
        );
    }
}
