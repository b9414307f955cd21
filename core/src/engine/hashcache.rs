//! A cache of whole-file BLAKE3 hashes keyed by (device, inode, size, mtime, ctime), so that
//! a re-run with `-c` does not re-read unchanged files.
//!
//! Stored as one file (by default `hashes.v1` in [`crate::cachedir::dir`]): a magic, a version, a count, fixed-size records, and the
//! BLAKE3 of everything before it. A file that is short, long, foreign, of another version or
//! whose checksum does not match is ignored (and replaced on the next save): the cache is never
//! trusted beyond what it can prove about itself. Saving writes it whole and privately
//! ([`crate::cachedir::write_private`]), so concurrent runs never see a torn file (the last
//! writer wins; a lost entry only costs a re-read).
//!
//! Any change to a file's content changes its ctime (and usually size or mtime), so a record
//! whose key matches describes the file's current content.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

const MAGIC: &[u8; 16] = b"arsync hashcache";
const VERSION: u32 = 1;
const RECORD: usize = 7 * 8 + 32;
const HEADER: usize = 16 + 4 + 8;
/// Largest number of records read from a cache file.
const MAX_RECORDS: u64 = 20_000_000;

/// What identifies one version of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileKey {
    /// The key of a file as `meta` describes it.
    pub fn of(meta: &fs::Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }

    /// The key from a raw `stat`.
    pub fn of_stat(st: &rustix::fs::Stat) -> FileKey {
        FileKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as i64,
            ctime: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec as i64,
        }
    }

    // Issue 18, chunk cache: the key as words, for the chunk-index cache's entries.
    /// Device, inode, size, modification and change times (seconds, nanoseconds), in order.
    pub(crate) fn words(&self) -> [u64; 7] {
        [
            self.dev,
            self.ino,
            self.size,
            self.mtime as u64,
            self.mtime_nsec as u64,
            self.ctime as u64,
            self.ctime_nsec as u64,
        ]
    }

    /// The key from [`FileKey::words`].
    #[cfg(test)]
    pub(crate) fn from_words(w: [u64; 7]) -> FileKey {
        FileKey {
            dev: w[0],
            ino: w[1],
            size: w[2],
            mtime: w[3] as i64,
            mtime_nsec: w[4] as i64,
            ctime: w[5] as i64,
            ctime_nsec: w[6] as i64,
        }
    }
}

/// The cache: loaded once, consulted and filled by both roles, saved at the end.
#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    map: Mutex<HashMap<FileKey, [u8; 32]>>,
    dirty: AtomicBool,
}

impl HashCache {
    /// The default location, if a home or cache directory is known.
    pub fn default_path() -> Option<PathBuf> {
        crate::cachedir::dir().map(|d| d.join("hashes.v1"))
    }

    /// Load the cache at `path`; an absent, unreadable or untrustworthy file gives an empty
    /// cache that will replace it on [`HashCache::save`].
    pub fn open(path: PathBuf) -> HashCache {
        let map = fs::read(&path)
            .ok()
            .and_then(|b| decode(&b))
            .unwrap_or_default();
        HashCache {
            path: Some(path),
            map: Mutex::new(map),
            dirty: AtomicBool::new(false),
        }
    }

    /// A cache (not tied to a file) from the bytes of a cache file; `None` unless every byte
    /// checks out.
    pub fn from_bytes(bytes: &[u8]) -> Option<HashCache> {
        Some(HashCache {
            path: None,
            map: Mutex::new(decode(bytes)?),
            dirty: AtomicBool::new(false),
        })
    }

    /// The hash recorded for this version of the file.
    pub fn get(&self, key: &FileKey) -> Option<[u8; 32]> {
        self.map.lock().ok()?.get(key).copied()
    }

    /// Record a hash.
    pub fn put(&self, key: FileKey, hash: [u8; 32]) {
        if let Ok(mut m) = self.map.lock() {
            if m.insert(key, hash) != Some(hash) {
                self.dirty.store(true, Relaxed);
            }
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the cache back if anything was added (temporary file, then rename).
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.load(Relaxed) {
            return Ok(());
        }
        let bytes = match self.map.lock() {
            Ok(m) => encode(&m),
            Err(_) => return Ok(()),
        };
        crate::cachedir::write_private(path, &bytes)?;
        self.dirty.store(false, Relaxed);
        Ok(())
    }
}

fn encode(map: &HashMap<FileKey, [u8; 32]>) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + map.len() * RECORD + 32);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (k, h) in map {
        for v in [k.dev, k.ino, k.size] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [k.mtime, k.mtime_nsec, k.ctime, k.ctime_nsec] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(h);
    }
    let sum = blake3::hash(&b);
    b.extend_from_slice(sum.as_bytes());
    b
}

/// Parse a cache file; `None` unless every byte checks out.
fn decode(b: &[u8]) -> Option<HashMap<FileKey, [u8; 32]>> {
    if b.len() < HEADER + 32 || &b[..16] != MAGIC {
        return None;
    }
    let (body, sum) = b.split_at(b.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(o..o + 8)?.try_into().ok()?))
    };
    let version = u32::from_le_bytes(body.get(16..20)?.try_into().ok()?);
    if version != VERSION {
        return None;
    }
    let count = u64_at(20)?;
    if count > MAX_RECORDS || body.len() != HEADER + count as usize * RECORD {
        return None;
    }
    let mut map = HashMap::with_capacity(count as usize);
    for i in 0..count as usize {
        let o = HEADER + i * RECORD;
        let key = FileKey {
            dev: u64_at(o)?,
            ino: u64_at(o + 8)?,
            size: u64_at(o + 16)?,
            mtime: u64_at(o + 24)? as i64,
            mtime_nsec: u64_at(o + 32)? as i64,
            ctime: u64_at(o + 40)? as i64,
            ctime_nsec: u64_at(o + 48)? as i64,
        };
        let hash: [u8; 32] = body.get(o + 56..o + 88)?.try_into().ok()?;
        map.insert(key, hash);
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino: n,
            size: 10,
            mtime: 5,
            mtime_nsec: 6,
            ctime: 7,
            ctime_nsec: 8,
        }
    }

    #[test]
    fn saves_loads_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/hashes.v1");
        let c = HashCache::open(path.clone());
        assert!(c.is_empty());
        c.put(key(1), [1; 32]);
        c.put(key(2), [2; 32]);
        c.save().unwrap();
        let back = HashCache::open(path.clone());
        assert_eq!(back.get(&key(1)), Some([1; 32]));
        assert_eq!(back.get(&key(2)), Some([2; 32]));
        assert_eq!(back.get(&key(3)), None);
        // One flipped bit anywhere: the whole file is ignored.
        let good = fs::read(&path).unwrap();
        for i in [0, 17, 25, HEADER + 3, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 1;
            fs::write(&path, &bad).unwrap();
            assert!(HashCache::open(path.clone()).is_empty(), "byte {i}");
        }
        // Truncated, foreign, empty.
        for bad in [
            &good[..good.len() - 5],
            b"#!/bin/sh\necho hi\n".as_slice(),
            b"",
        ] {
            fs::write(&path, bad).unwrap();
            assert!(HashCache::open(path.clone()).is_empty());
        }
        // A rebuilt cache replaces the damaged file.
        let c = HashCache::open(path.clone());
        c.put(key(9), [9; 32]);
        c.save().unwrap();
        assert_eq!(HashCache::open(path).get(&key(9)), Some([9; 32]));
    }

    #[test]
    fn a_changed_file_misses() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"one").unwrap();
        let k1 = FileKey::of(&fs::metadata(&f).unwrap());
        let c = HashCache::default();
        c.put(k1, [1; 32]);
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(&f, b"two").unwrap(); // same size, new content
        let k2 = FileKey::of(&fs::metadata(&f).unwrap());
        assert_ne!(k1, k2);
        assert_eq!(c.get(&k2), None);
    }
}
