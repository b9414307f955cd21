//! Tests of the chunk-index cache: its entry format (round trip, damage, version, foreign
//! parameters), its bound, and the lookup that reads a file only on a miss.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::merkle::chunk::{chunk_bytes, test_data};
use std::sync::atomic::Ordering::Relaxed;

fn key_of(size: u64, ino: u64) -> FileKey {
    // A real file's key, with its size and inode swapped for the test's.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, b"x").unwrap();
    let k = FileKey::of(&fs::metadata(&f).unwrap());
    let mut w = k.words();
    w[1] = ino;
    w[2] = size;
    FileKey::from_words(w)
}

fn sample(n: usize, seed: u64) -> (FileKey, ChunkParams, Vec<Chunk>) {
    let data = test_data(n, seed);
    let p = ChunkParams::cdc(1024);
    (key_of(n as u64, seed), p, chunk_bytes(&data, p))
}

#[test]
fn an_entry_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let c = ChunkCache::open(dir.path().join("chunks.v1"));
    let (k, p, chunks) = sample(100_000, 1);
    assert_eq!(c.get(&k, p), None);
    c.put(&k, p, &chunks).unwrap();
    assert_eq!(c.get(&k, p).unwrap(), chunks);
    // Another key or other parameters miss rather than misuse the entry.
    let (k2, _, _) = sample(100_000, 2);
    assert_eq!(c.get(&k2, p), None);
    assert_eq!(c.get(&k, ChunkParams::cdc(2048)), None);
    assert_eq!(c.get(&k, ChunkParams::Fixed { size: 1024 }), None);
    // Private, in a private directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("chunks.v1")), 0o700);
    assert_eq!(mode(&c.entry_path(&k, p)), 0o600);
}

#[test]
fn a_damaged_entry_is_ignored_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let c = ChunkCache::open(dir.path().to_path_buf());
    let (k, p, chunks) = sample(50_000, 3);
    c.put(&k, p, &chunks).unwrap();
    let path = c.entry_path(&k, p);
    let good = fs::read(&path).unwrap();
    // One flipped bit anywhere: the entry is ignored.
    for i in [0, 17, 30, 80, HEADER + 2, HEADER + 9, good.len() - 1] {
        let mut bad = good.clone();
        bad[i] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert_eq!(c.get(&k, p), None, "byte {i}");
    }
    // Truncated, foreign, empty, overlong.
    let mut long = good.clone();
    long.extend_from_slice(&[0; RECORD]);
    for bad in [
        &good[..good.len() - 5],
        &good[..HEADER],
        b"#!/bin/sh\necho hi\n".as_slice(),
        b"",
        &long,
    ] {
        fs::write(&path, bad).unwrap();
        assert_eq!(c.get(&k, p), None);
    }
    // A planted link is not followed.
    fs::remove_file(&path).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::write(&elsewhere, &good).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert_eq!(c.get(&k, p), None);
    // Rebuilt: the next write replaces the damaged entry.
    c.put(&k, p, &chunks).unwrap();
    assert_eq!(c.get(&k, p).unwrap(), chunks);
}

#[test]
fn another_version_or_a_wrong_size_is_refused() {
    let (k, p, chunks) = sample(40_000, 4);
    let good = encode(&k, p, &chunks).unwrap();
    assert_eq!(decode(&good, &k, p).unwrap(), chunks);
    // Version 2, checksum made right: still refused.
    let mut other = good[..good.len() - SUM].to_vec();
    other[16..20].copy_from_slice(&2u32.to_le_bytes());
    let sum = blake3::hash(&other);
    other.extend_from_slice(sum.as_bytes());
    assert_eq!(decode(&other, &k, p), None);
    // Chunks that do not add up to the key's size (one dropped, checksum made right).
    let short = encode(&k, p, &chunks[..chunks.len() - 1]).unwrap();
    assert_eq!(decode(&short, &k, p), None);
    // A chunk longer than the parameters allow.
    let mut big = chunks.clone();
    let last = big.len() - 1;
    big[last - 1].len += big[last].len;
    big.pop();
    let p_small = ChunkParams::Cdc {
        min: 256,
        avg: 1024,
        max: big.iter().map(|c| c.len).max().unwrap() - 1,
    };
    assert_eq!(
        decode(&encode(&k, p_small, &big).unwrap(), &k, p_small),
        None
    );
}

#[test]
fn trimming_keeps_the_cache_within_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, p, chunks) = sample(40_000, 5);
    let one = encode(&key_of(40_000, 0), p, &chunks).unwrap().len() as u64;
    // Room for three entries by size, five by count.
    let c = ChunkCache::with_bounds(dir.path().to_path_buf(), 3 * one, 5);
    assert!(c.trim().is_ok(), "nothing written: nothing to do");
    let keys: Vec<FileKey> = (0..6).map(|i| key_of(40_000, 100 + i)).collect();
    let t0 = SystemTime::now() - Duration::from_secs(100);
    for (i, k) in keys.iter().enumerate() {
        c.put(k, p, &chunks).unwrap();
        // Used in order, oldest first.
        let f = File::options()
            .write(true)
            .open(c.entry_path(k, p))
            .unwrap();
        f.set_modified(t0 + Duration::from_secs(i as u64)).unwrap();
    }
    // The first entry was used again since: it stays.
    assert!(c.get(&keys[0], p).is_some());
    c.trim().unwrap();
    let kept: Vec<bool> = keys.iter().map(|k| c.get(k, p).is_some()).collect();
    assert_eq!(kept, [true, false, false, false, true, true]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    // A killed writer's old temporary goes; a fresh one (a writer at work) stays.
    let (old_tmp, new_tmp) = (dir.path().join(".a.1.tmp"), dir.path().join(".b.2.tmp"));
    for t in [&old_tmp, &new_tmp] {
        fs::write(t, b"half").unwrap();
    }
    File::options()
        .write(true)
        .open(&old_tmp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * STALE_TEMP_SECS))
        .unwrap();
    c.put(&keys[0], p, &chunks).unwrap();
    c.trim().unwrap();
    assert!(!old_tmp.exists() && new_tmp.exists());
    fs::remove_file(&new_tmp).unwrap();
    // The count bound alone.
    let c = ChunkCache::with_bounds(dir.path().to_path_buf(), u64::MAX, 1);
    c.put(&keys[1], p, &chunks).unwrap();
    c.trim().unwrap();
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_settled_file_is_read_once_then_indexed_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(dir.path().join("cache"));
    let path = dir.path().join("f");
    let data = test_data(MIN_FILE as usize + 12_345, 6);
    fs::write(&path, &data).unwrap();
    let p = ChunkParams::cdc(4096);
    let want = chunk_bytes(&data, p);
    let stats = Stats::default();
    let index = |stats: &Stats| index_file(&File::open(&path).unwrap(), p, Some(&cache), stats);
    // Just written: read, and not cached (its times are not settled).
    assert_eq!(index(&stats).unwrap(), want);
    assert_eq!(stats.index_read.load(Relaxed), data.len() as u64);
    assert!(!dir.path().join("cache").exists());
    std::thread::sleep(Duration::from_millis(SETTLE_SECS * 1000 + 100));
    let stats = Stats::default();
    assert_eq!(index(&stats).unwrap(), want);
    assert_eq!(stats.index_read.load(Relaxed), data.len() as u64);
    let stats = Stats::default();
    assert_eq!(index(&stats).unwrap(), want);
    assert_eq!(stats.index_read.load(Relaxed), 0, "read again");
    assert_eq!(stats.index_cached.load(Relaxed), data.len() as u64);
    // Changed: its key changes, the file is read again.
    let mut changed = data.clone();
    changed[5] ^= 1;
    fs::write(&path, &changed).unwrap();
    let stats = Stats::default();
    assert_eq!(index(&stats).unwrap(), chunk_bytes(&changed, p));
    assert_eq!(stats.index_read.load(Relaxed), data.len() as u64);
    // Without a cache, or below the size worth caching: always read.
    let stats = Stats::default();
    index_file(&File::open(&path).unwrap(), p, None, &stats).unwrap();
    assert_eq!(stats.index_read.load(Relaxed), data.len() as u64);
}

#[test]
fn a_rebuilt_files_chunks_come_from_old_subtrees_and_fetched_chunks() {
    use crate::merkle::tree::{ChunkTree, DEFAULT_FANOUT_BITS};
    let p = ChunkParams::cdc(1024);
    let old = test_data(300_000, 7);
    let mut new = old.clone();
    new[150_000] ^= 1;
    let (old_chunks, new_chunks) = (chunk_bytes(&old, p), chunk_bytes(&new, p));
    let (old_tree, new_tree) = (
        ChunkTree::build(&old_chunks, DEFAULT_FANOUT_BITS),
        ChunkTree::build(&new_chunks, DEFAULT_FANOUT_BITS),
    );
    let ranges = old_tree.ranges();
    // The new tree's top children: most found whole in the old version, one expanded to its
    // leaves (fetched, or found).
    let mut w = WrittenChunks::new(&old_chunks);
    let mut found_whole = 0;
    for n in new_tree.children(&new_tree.root().hash).unwrap() {
        match ranges.get(&n.hash) {
            Some(&r) => {
                found_whole += 1;
                w.piece(n, Some(r));
            }
            None => {
                let first = new_chunks.partition_point(|c| c.offset < w.at);
                let mut end = w.at;
                for c in &new_chunks[first..] {
                    if end >= w.at + n.size {
                        break;
                    }
                    end += u64::from(c.len);
                    w.piece(
                        &crate::merkle::NodeRef::leaf(c),
                        ranges.get(&c.hash).copied(),
                    );
                }
            }
        }
    }
    assert!(found_whole > 0);
    assert!(w.whole);
    assert_eq!(w.chunks, new_chunks);
    // A range that is not on the old version's chunk boundaries spoils the list.
    let mut w = WrittenChunks::new(&old_chunks);
    w.piece(&new_tree.root(), Some((1, new_tree.root().size)));
    assert!(!w.whole);
}

#[test]
fn concurrent_writers_leave_a_whole_entry_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let c = ChunkCache::open(dir.path().to_path_buf());
    let (k, p, chunks) = sample(200_000, 8);
    // Another list for the same key (the same chunks in reverse): a torn mix of the two must
    // never read back.
    let other: Vec<Chunk> = chunks.iter().rev().copied().collect();
    std::thread::scope(|s| {
        for list in [&chunks, &other] {
            let c = &c;
            s.spawn(move || {
                for _ in 0..20 {
                    let _ = c.put(&k, p, list);
                }
            });
        }
        s.spawn(|| {
            for _ in 0..200 {
                if let Some(got) = c.get(&k, p) {
                    assert!(
                        got.iter().map(|c| c.hash).eq(chunks.iter().map(|c| c.hash))
                            || got.iter().map(|c| c.hash).eq(other.iter().map(|c| c.hash))
                    );
                }
            }
        });
    });
    c.put(&k, p, &chunks).unwrap();
    assert_eq!(c.get(&k, p).unwrap(), chunks);
}
