//! Directory-tree hashes: what lets two arsyncs agree that a whole tree (or subtree) is already
//! in sync without sending its file list.
//!
//! Every directory gets one BLAKE3 over its own entry and, in transfer order, its children: a
//! child directory by its subtree hash, anything else by its *entry digest* (name, kind, and
//! the metadata the receiver's [`MetaMask`] names). Two trees with equal root hashes need
//! nothing; a directory whose hash matches is never listed.
//!
//! Owns: the digest encoding (byte-exact in `docs/MERKLE_PROTOCOL.md`), building a [`DirTree`]
//! over a sorted entry list, and the walks the sender answers with (descendant directories a
//! few levels down, a whole subtree's entries). Does not own the exchange's frames or the
//! decision of which fields matter (the receiver picks the mask from its options). Pure: no
//! I/O.

use std::collections::HashMap;

use crate::flist::{split_parent, FileEntry, FileKind};

/// Which metadata enters an entry digest. The receiver chooses it: exactly the fields whose
/// difference would make its generator do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaMask(pub u16);

impl MetaMask {
    /// Regular files: the modification time (seconds).
    pub const FILE_MTIME: u16 = 1 << 0;
    /// Permission bits (not for symlinks).
    pub const PERMS: u16 = 1 << 1;
    /// Owner.
    pub const OWNER: u16 = 1 << 2;
    /// Group.
    pub const GROUP: u16 = 1 << 3;
    /// Regular files: the BLAKE3 of the content.
    pub const CHECKSUM: u16 = 1 << 4;
    /// Extended attributes.
    pub const XATTRS: u16 = 1 << 5;
    /// Directories, symlinks, devices and specials: the modification time (seconds).
    pub const OTHER_MTIME: u16 = 1 << 6;
    /// Owner and group as numbers, never by name.
    pub const NUMERIC_IDS: u16 = 1 << 7;
    /// Every bit this version defines; others are refused.
    pub const KNOWN: u16 = (1 << 8) - 1;

    /// Whether `bit` is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// The digest of one entry: name (last component), kind and the masked metadata.
pub fn entry_digest(e: &FileEntry, mask: MetaMask) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let (_, name) = split_parent(&e.path);
    h.update(&(name.len() as u16).to_le_bytes());
    h.update(name);
    h.update(&[e.kind.code()]);
    match e.kind {
        FileKind::File => {
            h.update(&e.size.to_le_bytes());
            if mask.has(MetaMask::FILE_MTIME) {
                h.update(&e.mtime.to_le_bytes());
            }
            if mask.has(MetaMask::CHECKSUM) {
                match e.checksum() {
                    Some(c) => h.update(&[1]).update(&c[..]),
                    None => h.update(&[0]),
                };
            }
        }
        FileKind::Symlink => {
            h.update(&(e.link_target().len() as u16).to_le_bytes());
            h.update(e.link_target());
        }
        FileKind::CharDev | FileKind::BlockDev => {
            h.update(&e.rdev().to_le_bytes());
        }
        FileKind::Dir | FileKind::Fifo | FileKind::Socket => {}
    }
    if e.kind != FileKind::File && mask.has(MetaMask::OTHER_MTIME) {
        h.update(&e.mtime.to_le_bytes());
    }
    if e.kind != FileKind::Symlink && mask.has(MetaMask::PERMS) {
        // Four bytes, as when the field was a u32: the hash is on the wire.
        h.update(&u32::from(e.perms & 0o7777).to_le_bytes());
    }
    let numeric = mask.has(MetaMask::NUMERIC_IDS);
    let mut id = |name: &[u8], num: u32| {
        if !numeric && !name.is_empty() {
            h.update(&[1, name.len() as u8]);
            h.update(name);
        } else {
            h.update(&[0]);
            h.update(&num.to_le_bytes());
        }
    };
    if mask.has(MetaMask::OWNER) {
        id(e.user(), e.uid());
    }
    if mask.has(MetaMask::GROUP) {
        id(e.group(), e.gid());
    }
    if mask.has(MetaMask::XATTRS) {
        let mut xs: Vec<_> = e.xattrs().iter().collect();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        h.update(&(xs.len() as u16).to_le_bytes());
        for x in xs {
            h.update(&(x.name.len() as u16).to_le_bytes());
            h.update(&x.name);
            h.update(&(x.value.len() as u32).to_le_bytes());
            h.update(&x.value);
        }
    }
    *h.finalize().as_bytes()
}

/// One directory of a [`DirTree`].
#[derive(Debug, Clone)]
pub struct DirNode {
    /// Subtree hash.
    pub hash: [u8; 32],
    /// Index of the directory's own entry (`None` for a root `.` the list does not carry).
    pub entry: Option<u32>,
    /// Indexes of the direct children, in transfer order.
    pub children: Vec<u32>,
    /// Path components below the root (the root is 0).
    pub depth: u32,
}

/// Subtree hashes of every directory of a sorted entry list, keyed by path (the root is `.`).
#[derive(Debug, Clone, Default)]
pub struct DirTree {
    nodes: HashMap<Vec<u8>, DirNode>,
    bare_root: [u8; 32],
}

const DIR_TAG: &[u8] = b"arsync dir v1";

impl DirTree {
    /// Build over `entries` (transfer order: every directory before its contents). An entry
    /// whose parent directory is not in the list hangs from the root.
    pub fn build(entries: &[FileEntry], mask: MetaMask) -> DirTree {
        Self::build_without(entries, mask, |_| false)
    }

    /// [`Self::build`], with the entries `unhashed` names listed among their directory's
    /// children (sent when it is wanted) but left out of its hash: what the receiver's scan
    /// of its destination never has (a symlink without `-l`, which it skips).
    pub fn build_without(
        entries: &[FileEntry],
        mask: MetaMask,
        unhashed: impl Fn(&FileEntry) -> bool,
    ) -> DirTree {
        let mut nodes: HashMap<Vec<u8>, DirNode> = HashMap::new();
        nodes.insert(
            b".".to_vec(),
            DirNode {
                hash: [0; 32],
                entry: None,
                children: Vec::new(),
                depth: 0,
            },
        );
        // Dirs by index, so the bottom-up pass can find them without hashing paths again.
        let mut dir_paths: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if e.is_root() {
                if let Some(root) = nodes.get_mut(b".".as_slice()) {
                    root.entry = Some(i as u32);
                }
                continue;
            }
            let (parent, _) = split_parent(&e.path);
            let key: &[u8] = if nodes.contains_key(parent) {
                parent
            } else {
                b"."
            };
            let depth = match nodes.get_mut(key) {
                Some(p) => {
                    p.children.push(i as u32);
                    p.depth + 1
                }
                None => 1,
            };
            if e.kind == FileKind::Dir {
                nodes.insert(
                    e.path.to_vec(),
                    DirNode {
                        hash: [0; 32],
                        entry: Some(i as u32),
                        children: Vec::new(),
                        depth,
                    },
                );
                dir_paths.push((i, e.path.to_vec()));
            }
        }
        // Bottom up: every directory's descendants come after it in transfer order. An
        // entry's digest is taken where it is hashed in (once each, the root's entry twice),
        // not kept for the whole list first (issue 18: 32 bytes a file).
        let digest = |i: u32| entry_digest(&entries[i as usize], mask);
        let mut sub: HashMap<u32, [u8; 32]> = HashMap::with_capacity(dir_paths.len());
        let hash_node = |node: &DirNode, sub: &HashMap<u32, [u8; 32]>| -> [u8; 32] {
            let mut h = blake3::Hasher::new();
            h.update(DIR_TAG);
            match node.entry {
                Some(i) => h.update(&digest(i)),
                None => h.update(&[0; 32]),
            };
            for &c in &node.children {
                if unhashed(&entries[c as usize]) {
                    continue;
                }
                match sub.get(&c) {
                    Some(s) => h.update(s),
                    None => h.update(&digest(c)),
                };
            }
            *h.finalize().as_bytes()
        };
        for (i, path) in dir_paths.iter().rev() {
            if let Some(node) = nodes.get(path) {
                let hash = hash_node(node, &sub);
                sub.insert(*i as u32, hash);
            }
        }
        for (i, path) in &dir_paths {
            if let (Some(node), Some(h)) = (nodes.get_mut(path), sub.get(&(*i as u32))) {
                node.hash = *h;
            }
        }
        let mut bare_root = [0; 32];
        if let Some(root) = nodes.get(b".".as_slice()) {
            let hash = hash_node(root, &sub);
            bare_root = hash_node(
                &DirNode {
                    entry: None,
                    ..root.clone()
                },
                &sub,
            );
            if let Some(root) = nodes.get_mut(b".".as_slice()) {
                root.hash = hash;
            }
        }
        DirTree { nodes, bare_root }
    }

    /// The directory at `path` (`.` is the root).
    pub fn node(&self, path: &[u8]) -> Option<&DirNode> {
        self.nodes.get(path)
    }

    /// The subtree hash of the directory at `path`.
    pub fn hash(&self, path: &[u8]) -> Option<[u8; 32]> {
        self.nodes.get(path).map(|n| n.hash)
    }

    /// The root's hash.
    pub fn root_hash(&self) -> [u8; 32] {
        self.hash(b".").unwrap_or([0; 32])
    }

    /// The root's hash as if the list had no `.` entry: what a sender whose source had no
    /// trailing slash announces when the rest matches.
    pub fn bare_root_hash(&self) -> [u8; 32] {
        self.bare_root
    }

    /// Number of directories, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree holds only an empty root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1 && self.nodes.values().all(|n| n.children.is_empty())
    }

    /// The directories below `path`, at most `levels` levels down, breadth first, as paths
    /// into `entries` (the list the tree was built from).
    pub fn dirs_below<'e>(
        &self,
        entries: &'e [FileEntry],
        path: &[u8],
        levels: u32,
    ) -> Vec<&'e [u8]> {
        let mut out: Vec<&'e [u8]> = Vec::new();
        let Some(start) = self.nodes.get(path) else {
            return out;
        };
        let mut frontier: Vec<&DirNode> = vec![start];
        for _ in 0..levels {
            let mut next = Vec::new();
            for node in frontier {
                for &c in &node.children {
                    let e = &entries[c as usize];
                    if e.kind == FileKind::Dir {
                        if let Some(n) = self.nodes.get(e.path.as_slice()) {
                            out.push(&e.path);
                            next.push(n);
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        out
    }

    /// Every entry below `path` (not `path` itself), in transfer order.
    pub fn subtree(&self, entries: &[FileEntry], path: &[u8], out: &mut Vec<u32>) {
        let Some(node) = self.nodes.get(path) else {
            return;
        };
        for &c in &node.children {
            out.push(c);
            let e = &entries[c as usize];
            if e.kind == FileKind::Dir {
                self.subtree(entries, &e.path, out);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flist::FileList;

    /// A list entry for tests (also used by `engine::select`'s).
    pub(crate) fn entry(path: &str, kind: FileKind, size: u64, mtime: i64) -> FileEntry {
        let mut e = FileEntry::new(path.as_bytes(), kind);
        e.perms = 0o644;
        e.size = size;
        e.mtime = mtime;
        e
    }

    fn list(paths: &[(&str, bool)]) -> Vec<FileEntry> {
        let mut l = FileList {
            entries: paths
                .iter()
                .map(|&(p, dir)| {
                    if dir {
                        entry(p, FileKind::Dir, 0, 1)
                    } else {
                        entry(p, FileKind::File, 10, 1)
                    }
                })
                .collect(),
        };
        l.sort();
        l.entries
    }

    fn sample() -> Vec<FileEntry> {
        list(&[
            (".", true),
            ("a", true),
            ("a/x", false),
            ("a/b", true),
            ("a/b/y", false),
            ("c", true),
            ("c/z", false),
            ("top", false),
        ])
    }

    const MASK: MetaMask = MetaMask(MetaMask::FILE_MTIME | MetaMask::PERMS);

    #[test]
    fn a_change_moves_exactly_its_ancestors() {
        let base = DirTree::build(&sample(), MASK);
        let mut changed = sample();
        let i = changed.iter().position(|e| e.path == b"a/b/y").unwrap();
        changed[i].mtime = 2;
        let other = DirTree::build(&changed, MASK);
        for (path, same) in [(".", false), ("a", false), ("a/b", false), ("c", true)] {
            assert_eq!(
                base.hash(path.as_bytes()) == other.hash(path.as_bytes()),
                same,
                "{path}"
            );
        }
    }

    #[test]
    fn masked_fields_do_not_count_and_unmasked_do() {
        let mut changed = sample();
        let i = changed.iter().position(|e| e.path == b"c/z").unwrap();
        changed[i].perms = 0o600;
        let base = DirTree::build(&sample(), MetaMask(MetaMask::FILE_MTIME));
        let other = DirTree::build(&changed, MetaMask(MetaMask::FILE_MTIME));
        assert_eq!(base.root_hash(), other.root_hash());
        let base = DirTree::build(&sample(), MASK);
        let other = DirTree::build(&changed, MASK);
        assert_ne!(base.root_hash(), other.root_hash());
    }

    #[test]
    fn renames_extra_and_missing_entries_change_the_parent() {
        let base = DirTree::build(&sample(), MASK);
        let renamed = list(&[
            (".", true),
            ("a", true),
            ("a/x2", false),
            ("a/b", true),
            ("a/b/y", false),
            ("c", true),
            ("c/z", false),
            ("top", false),
        ]);
        let t = DirTree::build(&renamed, MASK);
        assert_ne!(base.hash(b"a"), t.hash(b"a"));
        assert_eq!(base.hash(b"a/b"), t.hash(b"a/b"));
        let mut fewer = sample();
        fewer.retain(|e| e.path != b"top");
        assert_ne!(DirTree::build(&fewer, MASK).root_hash(), base.root_hash());
        // A file turned into an empty directory of the same name differs too.
        let mut kind = sample();
        let i = kind.iter().position(|e| e.path == b"top").unwrap();
        kind[i] = entry("top", FileKind::Dir, 0, 1);
        let mut l = FileList { entries: kind };
        l.sort();
        assert_ne!(
            DirTree::build(&l.entries, MASK).root_hash(),
            base.root_hash()
        );
    }

    #[test]
    fn walks_follow_levels_and_subtrees() {
        let entries = sample();
        let t = DirTree::build(&entries, MASK);
        let one: Vec<&[u8]> = t.dirs_below(&entries, b".", 1);
        assert_eq!(one, vec![b"a".as_slice(), b"c"]);
        let two: Vec<&[u8]> = t.dirs_below(&entries, b".", 2);
        assert_eq!(two, vec![b"a".as_slice(), b"c", b"a/b"]);
        let mut all = Vec::new();
        t.subtree(&entries, b"a", &mut all);
        let paths: Vec<&[u8]> = all
            .iter()
            .map(|&i| entries[i as usize].path.as_slice())
            .collect();
        assert_eq!(paths, vec![b"a/x".as_slice(), b"a/b", b"a/b/y"]);
        assert_eq!(t.node(b"a/b").map(|n| n.depth), Some(2));
    }

    #[test]
    fn without_a_root_entry_the_root_still_hashes_its_children() {
        let l = list(&[("src", true), ("src/f", false)]);
        let t = DirTree::build(&l, MASK);
        let mut l2 = l.clone();
        l2[1].size = 11;
        assert_ne!(t.root_hash(), DirTree::build(&l2, MASK).root_hash());
        assert_eq!(t.node(b".").and_then(|n| n.entry), None);
    }
}
