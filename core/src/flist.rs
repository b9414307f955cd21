//! The file list: what the sender has, one [`FileEntry`] per path, in transfer order.
//!
//! Paths are relative to the transfer root, as raw bytes (Unix names need not be UTF-8), with
//! `/` as separator and no `.`/`..` components; the entry for the root itself is `.`. The list
//! is sorted so that every directory comes before its contents. This module owns the model and
//! the path rules; it does not read the disk (see [`crate::engine::scan`]) or the wire
//! ([`crate::proto::merkle`]).

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl FileKind {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            FileKind::File => 1,
            FileKind::Dir => 2,
            FileKind::Symlink => 3,
            FileKind::CharDev => 4,
            FileKind::BlockDev => 5,
            FileKind::Fifo => 6,
            FileKind::Socket => 7,
        }
    }

    /// From a wire code.
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::Symlink,
            4 => FileKind::CharDev,
            5 => FileKind::BlockDev,
            6 => FileKind::Fifo,
            7 => FileKind::Socket,
            _ => return None,
        })
    }

    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }

    /// rsync's one-letter type in itemized output.
    pub fn itemize_letter(self) -> char {
        match self {
            FileKind::File => 'f',
            FileKind::Dir => 'd',
            FileKind::Symlink => 'L',
            FileKind::CharDev | FileKind::BlockDev => 'D',
            FileKind::Fifo | FileKind::Socket => 'S',
        }
    }

    /// Whether `-D` (devices and specials) governs this kind.
    pub fn is_device_or_special(self) -> bool {
        matches!(
            self,
            FileKind::CharDev | FileKind::BlockDev | FileKind::Fifo | FileKind::Socket
        )
    }
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full name, with namespace (`user.foo`).
    pub name: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
}

/// One path of the sender's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the transfer root (`.` for the root).
    pub path: Vec<u8>,
    /// Kind.
    pub kind: FileKind,
    /// Permission bits (`0o7777` part of the mode).
    pub perms: u32,
    /// Size in bytes (regular files; 0 otherwise).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Owner id on the sender.
    pub uid: u32,
    /// Group id on the sender.
    pub gid: u32,
    /// Owner name on the sender (empty when unknown or with `--numeric-ids`).
    pub user: Vec<u8>,
    /// Group name on the sender (empty when unknown or with `--numeric-ids`).
    pub group: Vec<u8>,
    /// Device number (devices only).
    pub rdev: u64,
    /// Symlink target (symlinks only).
    pub link_target: Vec<u8>,
    /// Hard-link group (0: none). Entries with the same non-zero group are one inode; the first
    /// in list order is the group's leader.
    pub hardlink_group: u32,
    /// BLAKE3 of the content (regular files, only with `--checksum`).
    pub checksum: Option<Box<[u8; 32]>>,
    /// Extended attributes (only with `-X`).
    pub xattrs: Vec<Xattr>,
    /// A directory whose contents are not listed — a mount point under `-x`, sent as an
    /// empty directory (rsync's `XMIT_NO_CONTENT_DIR`): `--delete` leaves what the
    /// destination has inside it, as rsync does.
    pub no_content: bool,
}

impl FileEntry {
    /// An entry of `kind` at `path` with every other field empty (mode bits 0, size 0, time
    /// 0, no owner names, no hard-link group): a start for callers that fill in what they know.
    pub fn new(path: Vec<u8>, kind: FileKind) -> Self {
        FileEntry {
            path,
            kind,
            perms: 0,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            uid: 0,
            gid: 0,
            user: vec![],
            group: vec![],
            rdev: 0,
            link_target: vec![],
            hardlink_group: 0,
            checksum: None,
            xattrs: vec![],
            no_content: false,
        }
    }

    /// The relative path as a `Path`.
    pub fn rel_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// Whether this is the transfer root entry `.`.
    pub fn is_root(&self) -> bool {
        self.path == b"."
    }

    /// The path as rsync prints it: directories get a trailing `/`, the root is `./`.
    pub fn display_name(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.path).into_owned();
        if self.kind == FileKind::Dir {
            s.push('/');
        }
        s
    }
}

/// Maximum bytes in a relative path on the wire (Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// The list rules a peer's list must keep: transfer order with no duplicates, every entry's
/// parent the root or a directory listed before it, the root (if present) a directory, and
/// hard-link groups only on files. The error says which entry broke which rule.
pub fn validate_list(list: &FileList) -> Result<(), String> {
    let mut dirs: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for (i, e) in list.entries.iter().enumerate() {
        if i > 0 {
            let p = &list.entries[i - 1];
            if path_order(
                &p.path,
                p.kind == FileKind::Dir,
                &e.path,
                e.kind == FileKind::Dir,
            ) != Ordering::Less
            {
                return Err(format!(
                    "entry {:?} out of order or duplicated",
                    String::from_utf8_lossy(&e.path)
                ));
            }
        }
        if e.is_root() && e.kind != FileKind::Dir {
            return Err("root entry is not a directory".into());
        }
        let (parent, _) = split_parent(&e.path);
        if !e.is_root() && parent != b"." && !dirs.contains(parent) {
            return Err(format!(
                "entry {:?} has no directory entry for its parent",
                String::from_utf8_lossy(&e.path)
            ));
        }
        if e.hardlink_group != 0 && e.kind != FileKind::File {
            return Err("hard-link group on a non-file".into());
        }
        if e.kind == FileKind::Dir {
            dirs.insert(&e.path);
        }
    }
    Ok(())
}

/// Check a relative path from the peer: non-empty, not absolute, no `.`/`..`/empty components
/// (except the root entry `.` itself), no NUL, at most [`MAX_PATH`] bytes.
pub fn validate_rel_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.len() > MAX_PATH {
        return Err("path too long");
    }
    if path == b"." {
        return Ok(());
    }
    if path[0] == b'/' {
        return Err("absolute path");
    }
    if path.contains(&0) {
        return Err("NUL in path");
    }
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" => return Err("empty path component"),
            b"." | b".." => return Err("'.' or '..' path component"),
            _ => {}
        }
    }
    Ok(())
}

/// The parent of a relative path (`.` for top-level names), and the last component.
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

/// Transfer order, as rsync's incremental recursion shows it: depth first; within a directory
/// its files (and other non-directories) by name, then its subdirectories by name, each followed
/// by its contents. The root `.` comes first. `a_dir`/`b_dir` say whether each path is itself a
/// directory.
pub fn path_order(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool) -> Ordering {
    match (a == b".", b == b".") {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    // One pass: the first differing byte decides which components are compared.
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() && common == b.len() {
        return Ordering::Equal;
    }
    // A path is before everything below it.
    if common == a.len() && b[common] == b'/' {
        return Ordering::Less;
    }
    if common == b.len() && a[common] == b'/' {
        return Ordering::Greater;
    }
    let start = a[..common]
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(0, |i| i + 1);
    let component = |p: &'_ [u8], is_dir: bool| -> (bool, usize) {
        match p[start..].iter().position(|&c| c == b'/') {
            Some(n) => (true, start + n),
            None => (is_dir, p.len()),
        }
    };
    let (x_dir, x_end) = component(a, a_dir);
    let (y_dir, y_end) = component(b, b_dir);
    // A component is a directory if more follow it, or if it is the last one of a directory
    // entry: non-directories first, then by name.
    x_dir
        .cmp(&y_dir)
        .then_with(|| component_order(&a[start..x_end], &b[start..y_end], x_dir))
}

/// Two names in one directory, both directories (`dirs`) or both not: rsync compares a
/// directory's name with its `/` (so `a.d/` comes before `a/`, as `.` sorts before `/`).
fn component_order(x: &[u8], y: &[u8], dirs: bool) -> Ordering {
    if dirs {
        x.iter().chain(b"/").cmp(y.iter().chain(b"/"))
    } else {
        x.cmp(y)
    }
}

/// The sender's file list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileList {
    /// Entries in transfer order; an entry's index is its `ndx` on the wire.
    pub entries: Vec<FileEntry>,
}

impl FileList {
    /// Each hard-link group's leader: its last member in list order (the one rsync transfers
    /// and the others link to).
    pub fn hardlink_leaders(&self) -> std::collections::HashMap<u32, usize> {
        let mut leader = std::collections::HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.hardlink_group != 0 {
                leader.insert(e.hardlink_group, i);
            }
        }
        leader
    }

    /// Sort into transfer order.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| {
            path_order(
                &a.path,
                a.kind == FileKind::Dir,
                &b.path,
                b.kind == FileKind::Dir,
            )
        });
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escaping_paths() {
        for bad in [
            &b""[..],
            b"/etc",
            b"a/../b",
            b"..",
            b"a//b",
            b"a/",
            b"./a",
            b"a\0b",
        ] {
            assert!(validate_rel_path(bad).is_err(), "{:?}", bad);
        }
        for good in [
            &b"."[..],
            b"a",
            b"a/b c",
            b"-x",
            b"a\nb",
            b"...",
            b".hidden",
        ] {
            assert!(validate_rel_path(good).is_ok(), "{:?}", good);
        }
    }

    #[test]
    fn directories_precede_contents() {
        // (path, is_dir)
        let mut v = [
            (&b"a.b"[..], false),
            (b"a/z", false),
            (b"a", true),
            (b".", true),
            (b"a/b/c", false),
            (b"a/b", true),
            (b"z", false),
        ];
        v.sort_by(|x, y| path_order(x.0, x.1, y.0, y.1));
        let names: Vec<&[u8]> = v.iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            vec![&b"."[..], b"a.b", b"z", b"a", b"a/z", b"a/b", b"a/b/c"]
        );
    }

    /// As rsync 3.2.7 lists them (`rsync -ai` of this tree): a directory's name is compared
    /// with its `/`, so names that extend it with a byte below `/` come first.
    #[test]
    fn prefix_named_directories_sort_as_rsync_does() {
        let mut v: Vec<(&[u8], bool)> = vec![
            (b"a", true),
            (b"a/f", false),
            (b"a.d", true),
            (b"a-b", true),
            (b"a b", true),
            (b"a0", true),
            (b"a_", true),
            (b"a!", true),
            (b"ab", true),
            (b"a.d.txt", false),
            (b"zfile", false),
        ];
        v.sort_by(|x, y| path_order(x.0, x.1, y.0, y.1));
        let names: Vec<&[u8]> = v.iter().map(|e| e.0).collect();
        let want: Vec<&[u8]> = vec![
            b"a.d.txt", b"zfile", b"a b", b"a!", b"a-b", b"a.d", b"a", b"a/f", b"a0", b"a_", b"ab",
        ];
        assert_eq!(names, want);
    }

    /// The component-splitting definition the one-pass comparison must agree with.
    fn reference_order(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool) -> Ordering {
        match (a == b".", b == b".") {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let mut ai = a.split(|&c| c == b'/').peekable();
        let mut bi = b.split(|&c| c == b'/').peekable();
        loop {
            match (ai.next(), bi.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) if x == y => continue,
                (Some(x), Some(y)) => {
                    let x_dir = ai.peek().is_some() || a_dir;
                    let y_dir = bi.peek().is_some() || b_dir;
                    let named = |n: &[u8], dir: bool| {
                        let mut n = n.to_vec();
                        if dir {
                            n.push(b'/');
                        }
                        n
                    };
                    return x_dir
                        .cmp(&y_dir)
                        .then_with(|| named(x, x_dir).cmp(&named(y, y_dir)));
                }
            }
        }
    }

    #[test]
    fn one_pass_order_agrees_with_the_component_definition() {
        let names: [&[u8]; 9] = [b"a", b"ab", b"a b", b"b", b"a.", b"z", b"-", b"a0", b"\xff"];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut path = || {
            let depth = 1 + next() % 4;
            let parts: Vec<&[u8]> = (0..depth).map(|_| names[(next() % 9) as usize]).collect();
            parts.join(&b'/')
        };
        for _ in 0..20_000 {
            let (a, b) = (path(), path());
            for (ad, bd) in [(false, false), (true, false), (false, true), (true, true)] {
                assert_eq!(
                    path_order(&a, ad, &b, bd),
                    reference_order(&a, ad, &b, bd),
                    "{:?} {ad} vs {:?} {bd}",
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&b)
                );
            }
        }
    }

    #[test]
    fn parent_split() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b"."[..], &b"c"[..]));
    }
}
