//! Which destination file a new file is rebuilt from: the receiver's choice of an **old
//! version** for a file the destination does not have under its name (a rename, a copy, or a
//! rebuilt file whose name carries a content hash, like `libcore-69c47ad7561ac02b.rlib` →
//! `libcore-5f1e0c4d2a9b8e77.rlib`).
//!
//! Owns the candidate table and the rules (pure: paths and sizes in, a path out) and which
//! extraneous files must outlive the transfers to serve. Does not read files (the receiver
//! indexes the chosen one) or delete anything.

use std::collections::{HashMap, HashSet};

use crate::flist::{split_parent, FileEntry, FileKind, FileList};

/// Destination files at least this large are candidates (smaller ones cost more to index than
/// they save).
pub const CANDIDATE_MIN: u64 = 4 << 10;

/// A candidate of only the same size (no name in common) must be at least this large: below,
/// equal sizes are too often a coincidence.
pub const SAME_SIZE_MIN: u64 = 64 << 10;

/// The name without its content hashes: every run of at least 8 hexadecimal digits that
/// holds a digit and stands between separators (`-`, `.`, `_`, `+`, or the ends) is dropped,
/// with the separator before it. `None` when the name has no such run (then the name itself
/// is what matches).
pub fn hash_free_stem(name: &[u8]) -> Option<Vec<u8>> {
    let is_sep = |b: u8| matches!(b, b'-' | b'.' | b'_' | b'+');
    let mut out = Vec::with_capacity(name.len());
    let mut dropped = false;
    let mut i = 0;
    while i < name.len() {
        let start = i;
        while i < name.len() && !is_sep(name[i]) {
            i += 1;
        }
        let token = &name[start..i];
        let hashlike = token.len() >= 8
            && token.iter().all(u8::is_ascii_hexdigit)
            && token.iter().any(u8::is_ascii_digit);
        if hashlike {
            dropped = true;
            // Drop the separator written before it, keep one placeholder.
            if out.last().is_some_and(|&b| is_sep(b)) {
                out.pop();
            }
            out.push(b'#');
        } else {
            out.extend_from_slice(token);
        }
        if i < name.len() {
            out.push(name[i]);
            i += 1;
        }
    }
    dropped.then_some(out)
}

/// Destination files that may serve a new file as its old version.
#[derive(Debug, Default)]
pub struct BasisCandidates {
    by_size: HashMap<u64, Vec<Vec<u8>>>,
    by_name: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// (directory, hash-free stem) → (path, size).
    by_stem: HashMap<StemKey, Vec<(Vec<u8>, u64)>>,
    /// Extraneous candidates whose deletion waits until the transfers are done.
    pub deferred: HashSet<Vec<u8>>,
}

/// A directory and a hash-free name.
type StemKey = (Vec<u8>, Vec<u8>);

/// Where a new file's stem is looked up: its directory and its hash-free name.
fn stem_key(path: &[u8]) -> Option<StemKey> {
    let (dir, name) = split_parent(path);
    hash_free_stem(name).map(|s| (dir.to_vec(), s))
}

impl BasisCandidates {
    /// From the destination's files (`files`: path and size, at least [`CANDIDATE_MIN`]) and
    /// the sender's list: an extraneous destination file that a new file could be rebuilt
    /// from — same size, same name or same stem — is kept for the transfers. Extraneous means
    /// in a directory whose whole contents were listed (`complete`; `None`: the whole list
    /// was sent) and not named by the list: a file in a directory that was never listed (its
    /// subtree matched) is not extraneous, and never deleted.
    pub fn new(
        files: Vec<(Vec<u8>, u64)>,
        list: &FileList,
        complete: Option<&HashSet<Vec<u8>>>,
    ) -> Self {
        let mut c = BasisCandidates::default();
        if files.is_empty() {
            return c;
        }
        let present: HashSet<&[u8]> = files.iter().map(|(p, _)| p.as_slice()).collect();
        let listed: HashSet<&[u8]> = list.entries.iter().map(|e| e.path.as_slice()).collect();
        let (mut new_sizes, mut new_names, mut new_stems) =
            (HashSet::new(), HashSet::new(), HashSet::new());
        for e in &list.entries {
            if e.kind == FileKind::File
                && e.size >= CANDIDATE_MIN
                && !present.contains(e.path.as_slice())
            {
                if e.size >= SAME_SIZE_MIN {
                    new_sizes.insert(e.size);
                }
                new_names.insert(split_parent(&e.path).1);
                new_stems.extend(stem_key(&e.path));
            }
        }
        for (path, size) in &files {
            let (dir, name) = split_parent(path);
            let extraneous =
                !listed.contains(path.as_slice()) && complete.is_none_or(|c| c.contains(dir));
            if extraneous
                && (new_sizes.contains(size)
                    || new_names.contains(name)
                    || stem_key(path).is_some_and(|k| new_stems.contains(&k)))
            {
                c.deferred.insert(path.clone());
            }
        }
        for (path, size) in files {
            if let Some(k) = stem_key(&path) {
                c.by_stem.entry(k).or_default().push((path.clone(), size));
            }
            c.by_name
                .entry(split_parent(&path).1.to_vec())
                .or_default()
                .push(path.clone());
            c.by_size.entry(size).or_default().push(path);
        }
        c
    }

    /// Whether no destination file may serve a new file.
    pub fn is_empty(&self) -> bool {
        self.by_size.is_empty() && self.by_name.is_empty() && self.by_stem.is_empty()
    }

    /// The old version to rebuild new entry `e` from, never one this run rewrites (nor `e`
    /// itself): a file of the same name and size (moved); else one in the same directory
    /// whose name differs only in its content hashes (rebuilt), the closest in size; else one
    /// of the same name (moved and edited); else, for a large file, one of the same size
    /// (copied or renamed).
    pub fn choose(&self, e: &FileEntry, rewritten: &HashSet<&[u8]>) -> Option<&[u8]> {
        if e.size < CANDIDATE_MIN {
            return None;
        }
        let name = split_parent(&e.path).1;
        let ok = |p: &[u8]| !rewritten.contains(p) && p != e.path.as_slice();
        let same_size = || {
            self.by_size
                .get(&e.size)
                .into_iter()
                .flatten()
                .filter(|p| ok(p))
        };
        if let Some(p) = same_size().find(|p| split_parent(p).1 == name) {
            return Some(p);
        }
        let by_stem = stem_key(&e.path)
            .and_then(|k| self.by_stem.get(&k))
            .into_iter()
            .flatten()
            .filter(|(p, _)| ok(p))
            .min_by_key(|(_, size)| size.abs_diff(e.size));
        if let Some((p, _)) = by_stem {
            return Some(p);
        }
        if let Some(p) = self.by_name.get(name).into_iter().flatten().find(|p| ok(p)) {
            return Some(p);
        }
        if e.size >= SAME_SIZE_MIN {
            return same_size().next().map(Vec::as_slice);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> FileEntry {
        let mut e = FileEntry::new(path.as_bytes(), FileKind::File);
        e.perms = 0o644;
        e.size = size;
        e
    }

    #[test]
    fn stems_drop_content_hashes_only() {
        let stem = |s: &str| hash_free_stem(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            stem("libcore-69c47ad7561ac02b.rlib").as_deref(),
            Some("libcore#.rlib")
        );
        assert_eq!(
            stem("libcore-5f1e0c4d2a9b8e77.rlib"),
            stem("libcore-69c47ad7561ac02b.rlib")
        );
        assert_eq!(stem("main.3f2a9c1b.js").as_deref(), Some("main#.js"));
        assert_eq!(
            stem("search-index-1a2b3c4d5e.js").as_deref(),
            Some("search-index#.js")
        );
        // Words that happen to be hexadecimal, short runs and version numbers stay.
        assert_eq!(stem("deadbeefcafe.txt"), None, "no digit: a word");
        assert_eq!(stem("libfoo-1a2b.so"), None, "too short");
        assert_eq!(stem("libLLVM.so.22.1-rust-1.95.0-stable"), None);
        assert_eq!(stem("README"), None);
        assert_eq!(stem(""), None);
    }

    fn list(paths: &[(&str, u64)]) -> FileList {
        FileList {
            entries: paths.iter().map(|(p, s)| file(p, *s)).collect(),
        }
    }

    #[test]
    fn a_rebuilt_file_is_rebuilt_from_its_old_hash_name_in_its_directory() {
        let dest = vec![
            (b"lib/libcore-69c47ad7561ac02b.rlib".to_vec(), 900_000),
            (b"lib/libstd-0011223344556677.rlib".to_vec(), 2_000_000),
            (b"other/libcore-1111111111111111.rlib".to_vec(), 950_000),
            (b"big.iso".to_vec(), 5_000_000),
        ];
        let new = list(&[
            ("lib/libcore-5f1e0c4d2a9b8e77.rlib", 950_000),
            ("lib/libstd-8899aabbccddeeff.rlib", 2_100_000),
            ("copy.iso", 5_000_000),
            ("small.iso", 5_000),
        ]);
        let c = BasisCandidates::new(dest, &new, None);
        let none = HashSet::new();
        let pick = |i: usize| c.choose(&new.entries[i], &none).map(|p| p.to_vec());
        // Same directory and stem, though another directory has one closer in size.
        assert_eq!(
            pick(0).as_deref(),
            Some(&b"lib/libcore-69c47ad7561ac02b.rlib"[..])
        );
        assert_eq!(
            pick(1).as_deref(),
            Some(&b"lib/libstd-0011223344556677.rlib"[..])
        );
        // Same size, large: a copy.
        assert_eq!(pick(2).as_deref(), Some(&b"big.iso"[..]));
        // Too small to be worth it.
        assert_eq!(pick(3), None);
        // The old hash names are extraneous and serve: their deletion waits.
        assert!(c
            .deferred
            .contains(&b"lib/libcore-69c47ad7561ac02b.rlib"[..]));
        assert!(c
            .deferred
            .contains(&b"lib/libstd-0011223344556677.rlib"[..]));
        // A file this run rewrites never serves.
        let busy: HashSet<&[u8]> = [&b"lib/libcore-69c47ad7561ac02b.rlib"[..]].into();
        assert_ne!(
            c.choose(&new.entries[0], &busy),
            Some(&b"lib/libcore-69c47ad7561ac02b.rlib"[..])
        );
    }

    /// With the directory-tree exchange the list is partial: a file in a directory that was
    /// never listed is unchanged, not extraneous — it may serve, but is never deleted.
    #[test]
    fn files_in_unlisted_directories_are_never_deferred_for_deletion() {
        let dest = vec![
            (b"same/mod.rs".to_vec(), 9_000),
            (b"changed/old-1234567890abcdef.bin".to_vec(), 80_000),
        ];
        let new = list(&[
            ("changed/mod.rs", 9_000),
            ("changed/old-fedcba0987654321.bin", 80_000),
        ]);
        let complete: HashSet<Vec<u8>> = [b"changed".to_vec(), b".".to_vec()].into();
        let c = BasisCandidates::new(dest, &new, Some(&complete));
        assert!(
            !c.deferred.contains(&b"same/mod.rs"[..]),
            "{:?}",
            c.deferred
        );
        assert!(c
            .deferred
            .contains(&b"changed/old-1234567890abcdef.bin"[..]));
        // It still serves as an old version.
        assert_eq!(
            c.choose(&new.entries[0], &HashSet::new()),
            Some(&b"same/mod.rs"[..])
        );
    }

    #[test]
    fn a_moved_file_is_found_by_name_and_size_first() {
        let dest = vec![
            (b"old/data.bin".to_vec(), 100_000),
            (b"x/other.bin".to_vec(), 100_000),
        ];
        let new = list(&[("new/data.bin", 100_000)]);
        let c = BasisCandidates::new(dest, &new, None);
        assert_eq!(
            c.choose(&new.entries[0], &HashSet::new()),
            Some(&b"old/data.bin"[..])
        );
    }
}
