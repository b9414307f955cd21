//! The chunk-index cache: each large file's chunk list (what the delta exchange's tree is built
//! from) remembered across runs, keyed by the file's identity (device, inode, size,
//! modification and change times: [`FileKey`]) and the [`ChunkParams`] it was cut with, so an
//! unchanged file — the receiver's old copy, the sender's unchanged source — is indexed
//! without being read. Owns the entry format, the lookup ([`index_file`]) and the size bound;
//! not where the cache directory is ([`crate::cachedir`]) nor the tree built from the list
//! ([`crate::merkle::tree`]).
//!
//! One file per entry in `chunks.v1/` of the cache directory, named by a hash of key and
//! parameters. An entry is: a magic, a version, the key, the parameters, a count, one record
//! (length `u32`, BLAKE3 32 bytes) per chunk, and the BLAKE3 of everything before it. An
//! entry that is short, long, foreign, of another version, of another key or other parameters
//! (a different parameter choice misses rather than misuses), whose lengths do not add up to
//! the file's size or whose checksum does not match is ignored and rewritten: the cache is
//! never trusted beyond what it can prove about itself. Entries are written whole and
//! privately ([`crate::cachedir::write_private`]: temporary, then rename), so concurrent runs
//! see an old entry or a new one, never half.
//!
//! Two ways in: a file read to be indexed ([`index_file`]) is kept only once its times are
//! [`SETTLE_SECS`] in the past (one changed again within its file system's timestamp
//! granularity could otherwise keep its key with new content); a file the receiver has just
//! rebuilt by delta ([`WrittenChunks`]) is kept at once, keyed by what it is once in place, its
//! chunks known without a read (the old version's under each matched subtree, the fetched
//! ones). Only files of at least [`MIN_FILE`] bytes are kept (a smaller one is cheaper to read
//! than its entry is to manage). A hit refreshes the entry's modification time;
//! [`ChunkCache::trim`] removes the least recently used entries beyond the bounds (bytes and
//! count), once per run that wrote one.
//!
//! Trust: as with the content-hash cache, a matching key is taken to mean the same content
//! (an entry is private to its user and proves its own integrity, not the file's). A peer
//! cannot make an entry lie: a rebuilt file's chunks are the old version's chunks (hashed
//! here) and fetched chunks (checked against their hashes before they were written).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use super::hashcache::FileKey;
use super::stats::Stats;
use crate::merkle::chunk::{chunk_file, chunk_file_beside, Chunk, ChunkParams};
use crate::merkle::NodeRef;

const MAGIC: &[u8; 16] = b"arsync chunkidx\n";
const VERSION: u32 = 1;
/// Magic, version, key (7 words), parameters (4 words of 4 bytes), count.
const HEADER: usize = 16 + 4 + 7 * 8 + 4 * 4 + 8;
const RECORD: usize = 4 + 32;
const SUM: usize = 32;
/// The largest entry read or written (about 1.8 million chunks).
pub const MAX_ENTRY_BYTES: usize = 64 << 20;
/// Files smaller than this are indexed by reading them, and not cached.
pub const MIN_FILE: u64 = 1 << 20;
/// A file is cached only once its modification and change times are this far in the past.
pub const SETTLE_SECS: u64 = 2;
/// Default bound on the entries' total size.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;
/// Default bound on the number of entries.
pub const DEFAULT_MAX_ENTRIES: usize = 16_384;
/// A temporary left this long by a writer (killed mid-write) is removed by [`ChunkCache::trim`].
const STALE_TEMP_SECS: u64 = 3600;

/// The cache: a directory of entries, consulted and filled by both roles.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    max_bytes: u64,
    max_entries: usize,
    wrote: AtomicBool,
}

impl ChunkCache {
    /// The default location, if a home or cache directory is known.
    pub fn default_dir() -> Option<PathBuf> {
        crate::cachedir::dir().map(|d| d.join("chunks.v1"))
    }

    /// The cache in `dir` (made when the first entry is written), with the default bounds.
    pub fn open(dir: PathBuf) -> ChunkCache {
        ChunkCache::with_bounds(dir, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES)
    }

    /// The cache in `dir`, trimmed to `max_bytes` and `max_entries`.
    pub fn with_bounds(dir: PathBuf, max_bytes: u64, max_entries: usize) -> ChunkCache {
        ChunkCache {
            dir,
            max_bytes,
            max_entries,
            wrote: AtomicBool::new(false),
        }
    }

    fn entry_path(&self, key: &FileKey, params: ChunkParams) -> PathBuf {
        let mut h = blake3::Hasher::new();
        for w in key.words() {
            h.update(&w.to_le_bytes());
        }
        for w in param_words(params) {
            h.update(&w.to_le_bytes());
        }
        let name: String = h.finalize().as_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(name)
    }

    /// The chunk list recorded for this version of a file cut with `params`, if an entry
    /// proves it.
    pub fn get(&self, key: &FileKey, params: ChunkParams) -> Option<Vec<Chunk>> {
        let path = self.entry_path(key, params);
        let f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .ok()?;
        let mut bytes = Vec::new();
        (&f).take(MAX_ENTRY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        let chunks = decode(&bytes, key, params)?;
        // Recently used: kept longest by `trim`.
        let _ = f.set_modified(SystemTime::now());
        Some(chunks)
    }

    /// Record a file's chunk list (nothing if the entry would be too large).
    pub fn put(&self, key: &FileKey, params: ChunkParams, chunks: &[Chunk]) -> io::Result<()> {
        let Some(bytes) = encode(key, params, chunks) else {
            return Ok(());
        };
        crate::cachedir::write_private(&self.entry_path(key, params), &bytes)?;
        self.wrote.store(true, Relaxed);
        Ok(())
    }

    /// If this run wrote an entry, remove the least recently used entries until the rest fit
    /// the bounds (entries that vanish meanwhile, trimmed by a concurrent run, are skipped).
    pub fn trim(&self) -> io::Result<()> {
        if !self.wrote.load(Relaxed) {
            return Ok(());
        }
        trim_dir(&self.dir, self.max_bytes, self.max_entries)
    }
}

fn trim_dir(dir: &Path, max_bytes: u64, max_entries: usize) -> io::Result<()> {
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    let stale = SystemTime::now() - Duration::from_secs(STALE_TEMP_SECS);
    for e in fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let Ok(meta) = e.metadata() else { continue };
        // Temporaries (`.name.pid.tmp`) belong to writers still at work, unless a writer was
        // killed long ago.
        if e.file_name().as_encoded_bytes().starts_with(b".") {
            if meta.is_file() && meta.modified().is_ok_and(|t| t < stale) {
                let _ = fs::remove_file(e.path());
            }
            continue;
        }
        if meta.is_file() {
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push((used, meta.len(), e.path()));
        }
    }
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    let mut count = entries.len();
    if total <= max_bytes && count <= max_entries {
        return Ok(());
    }
    entries.sort_by_key(|e| e.0);
    for (_, len, path) in entries {
        if total <= max_bytes && count <= max_entries {
            break;
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        total -= len;
        count -= 1;
    }
    Ok(())
}

/// A file's chunk list: from `cache` when an entry for its current version and `params`
/// exists, else by reading it (then recorded, if the file is large and settled). The bytes
/// read are counted in [`Stats::index_read`], those taken from the cache in
/// [`Stats::index_cached`]. `params` must have passed [`ChunkParams::validate`].
pub fn index_file(
    f: &File,
    params: ChunkParams,
    cache: Option<&ChunkCache>,
    stats: &Stats,
) -> io::Result<Vec<Chunk>> {
    index_file_copying(f, params, cache, stats, || None).map(|(chunks, _)| chunks)
}

/// Issue 18, cheap deltas: [`index_file`], and if the file is read (not taken from the
/// cache), every stretch read is also copied to the same offset of the file `copy_to` gives
/// (asked for only then), in the kernel (`copy_file_range`: from the page cache the read
/// just filled), beside the cutting and hashing of it. That file is handed back if it was
/// written whole. It then holds what was hashed unless `f` changed during the read — which a
/// caller must rule out as it does for any copy it makes from `f` later (its stamp).
pub fn index_file_copying(
    f: &File,
    params: ChunkParams,
    cache: Option<&ChunkCache>,
    stats: &Stats,
    copy_to: impl FnOnce() -> Option<File>,
) -> io::Result<(Vec<Chunk>, Option<File>)> {
    let before = f.metadata()?;
    let key = FileKey::of(&before);
    let cache = cache.filter(|_| before.len() >= MIN_FILE);
    if let Some(chunks) = cache.and_then(|c| c.get(&key, params)) {
        stats.index_cached.fetch_add(before.len(), Relaxed);
        return Ok((chunks, None));
    }
    let started = SystemTime::now();
    let (chunks, copy) = match copy_to() {
        Some(copy) => {
            let beside = |at: u64, bytes: &[u8]| {
                let len = bytes.len() as u64;
                match crate::engine::io::copy_range_at(f, at, &copy, at, len)? {
                    n if n == len => {}
                    _ => return Err(io::Error::other("the file shrank while it was read")),
                }
                // Its writeback started now, while the indexing goes on (see
                // `start_writeback`: else the rename over the old version would write it
                // all out at the end).
                crate::engine::io::start_writeback(&copy, at, len);
                Ok(())
            };
            let (chunks, whole) = chunk_file_beside(f, params, &beside)?;
            (chunks, whole.then_some(copy))
        }
        None => (chunk_file(f, params)?, None),
    };
    stats.index_read.fetch_add(before.len(), Relaxed);
    if let Some(c) = cache {
        // Only what the file was throughout the read, and settled (see the module docs).
        let same = f.metadata().is_ok_and(|m| FileKey::of(&m) == key);
        if same && settled(&before, started) {
            // A cache that cannot be written costs a re-read next time, nothing more.
            let _ = c.put(&key, params, &chunks);
        }
    }
    Ok((chunks, copy))
}

/// The chunk list of a file rebuilt from an old version's chunks and fetched ones, taken piece
/// by piece in file order: a piece found in the old version stands for the old chunks under it
/// (the same subtree hash, so the same leaves); any other piece is one fetched chunk. Recorded
/// once the file is in place, keyed by what it then is, so the next run indexes it unread.
#[derive(Debug)]
pub struct WrittenChunks<'a> {
    old: &'a [Chunk],
    chunks: Vec<Chunk>,
    at: u64,
    whole: bool,
}

impl<'a> WrittenChunks<'a> {
    /// Start with the old version's chunks, in order.
    pub fn new(old: &'a [Chunk]) -> WrittenChunks<'a> {
        WrittenChunks {
            old,
            chunks: Vec::new(),
            at: 0,
            whole: true,
        }
    }

    /// The next piece of the new file; `old_range` is where the old version has it, if it
    /// does.
    pub fn piece(&mut self, n: &NodeRef, old_range: Option<(u64, u64)>) {
        if !self.whole {
            return;
        }
        match old_range {
            Some((off, len)) if len == n.size => {
                let first = self.old.partition_point(|c| c.offset < off);
                let mut end = off;
                let mut last = first;
                while last < self.old.len() && end < off + len {
                    end += u64::from(self.old[last].len);
                    last += 1;
                }
                if self.old.get(first).is_none_or(|c| c.offset != off) || end != off + len {
                    self.whole = false;
                    return;
                }
                for c in &self.old[first..last] {
                    self.push(c.len, c.hash);
                }
            }
            _ => match u32::try_from(n.size) {
                Ok(len) if n.level == 0 => self.push(len, n.hash),
                _ => self.whole = false,
            },
        }
    }

    fn push(&mut self, len: u32, hash: [u8; 32]) {
        self.chunks.push(Chunk {
            offset: self.at,
            len,
            hash,
        });
        self.at += u64::from(len);
    }

    /// Record the list for `file` as it now is (nothing if a piece could not be placed or the
    /// file is not as long as the pieces).
    pub fn record(self, cache: &ChunkCache, file: &File, params: ChunkParams) {
        let Ok(meta) = file.metadata() else { return };
        if self.whole && meta.len() == self.at && self.at >= MIN_FILE {
            // A cache that cannot be written costs a read next time, nothing more.
            let _ = cache.put(&FileKey::of(&meta), params, &self.chunks);
        }
    }
}

fn settled(meta: &fs::Metadata, now: SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    let limit = now
        .checked_sub(Duration::from_secs(SETTLE_SECS))
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(i128::MIN, |d| d.as_nanos() as i128);
    ns(meta.mtime(), meta.mtime_nsec()) < limit && ns(meta.ctime(), meta.ctime_nsec()) < limit
}

/// The parameters as four words: kind (1 FastCDC, 2 fixed) and sizes.
fn param_words(p: ChunkParams) -> [u32; 4] {
    match p {
        ChunkParams::Cdc { min, avg, max } => [1, min, avg, max],
        ChunkParams::Fixed { size } => [2, size, 0, 0],
    }
}

/// An entry's bytes; `None` if it would exceed [`MAX_ENTRY_BYTES`].
fn encode(key: &FileKey, params: ChunkParams, chunks: &[Chunk]) -> Option<Vec<u8>> {
    let len = HEADER + chunks.len() * RECORD + SUM;
    if len > MAX_ENTRY_BYTES {
        return None;
    }
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    for w in key.words() {
        b.extend_from_slice(&w.to_le_bytes());
    }
    for w in param_words(params) {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
    for c in chunks {
        b.extend_from_slice(&c.len.to_le_bytes());
        b.extend_from_slice(&c.hash);
    }
    let sum = blake3::hash(&b);
    b.extend_from_slice(sum.as_bytes());
    Some(b)
}

/// Parse an entry for `key` and `params`; `None` unless every byte checks out and the chunks
/// cover exactly the file's size.
fn decode(b: &[u8], key: &FileKey, params: ChunkParams) -> Option<Vec<Chunk>> {
    if b.len() < HEADER + SUM || b.len() > MAX_ENTRY_BYTES || &b[..16] != MAGIC {
        return None;
    }
    let (body, sum) = b.split_at(b.len() - SUM);
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(body.get(o..o + 4)?.try_into().ok()?))
    };
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(o..o + 8)?.try_into().ok()?))
    };
    if u32_at(16)? != VERSION {
        return None;
    }
    let words = key.words();
    for (i, w) in words.iter().enumerate() {
        if u64_at(20 + i * 8)? != *w {
            return None;
        }
    }
    for (i, w) in param_words(params).iter().enumerate() {
        if u32_at(76 + i * 4)? != *w {
            return None;
        }
    }
    let count = u64_at(92)?;
    let records = (body.len() - HEADER) / RECORD;
    if count != records as u64 || body.len() != HEADER + records * RECORD {
        return None;
    }
    let max_len = match params {
        ChunkParams::Cdc { max, .. } => max,
        ChunkParams::Fixed { size } => size,
    };
    let mut chunks = Vec::with_capacity(records);
    let mut offset = 0u64;
    for i in 0..records {
        let o = HEADER + i * RECORD;
        let len = u32_at(o)?;
        if len == 0 || len > max_len {
            return None;
        }
        let hash: [u8; 32] = body.get(o + 4..o + RECORD)?.try_into().ok()?;
        chunks.push(Chunk { offset, len, hash });
        offset += u64::from(len);
    }
    // words[2] is the file's size.
    (offset == words[2]).then_some(chunks)
}

#[cfg(test)]
#[path = "chunkcache_tests.rs"]
mod tests;
