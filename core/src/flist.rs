//! The file list: what the sender has, one [`FileEntry`] per path, in transfer order.
//!
//! Paths are relative to the transfer root, as raw bytes (Unix names need not be UTF-8), with
//! `/` as separator and no `.`/`..` components; the entry for the root itself is `.`. The list
//! is sorted so that every directory comes before its contents. This module owns the model and
//! the path rules; it does not read the disk (see [`crate::engine::scan`]) or the wire
//! ([`crate::proto::merkle`]).
//!
//! A list holds an entry per file on each side, so an entry is kept small (56 bytes): a short
//! path is held inline and a long one behind a thin pointer ([`RelPath`]), the owner (ids and
//! names) is one shared pointer ([`Owner`], [`OwnerTable`]) and what few entries carry (device
//! number, link target, extended attributes, hard-link group, `--checksum` digest) is boxed
//! ([`Rare`]).

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

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

/// A user or group name as a list entry carries it, shared by every entry that names the same
/// owner: a list of a million files of one owner holds the name once, and an entry spends 8
/// bytes on it (a thin pointer: the bytes are behind the shared block; none on the heap when
/// empty). Reads as the name's bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Name(Option<Arc<Box<[u8]>>>);

impl Name {
    /// A name holding its own copy of `bytes` (see [`NameTable`] to share one).
    pub fn new(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            Name(None)
        } else {
            Name(Some(Arc::new(Box::from(bytes))))
        }
    }

    /// Whether two names share one allocation (both empty counts).
    pub fn shares_with(&self, other: &Name) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::ops::Deref for Name {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |b| b)
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

impl From<&[u8]> for Name {
    fn from(bytes: &[u8]) -> Self {
        Name::new(bytes)
    }
}

impl From<Vec<u8>> for Name {
    fn from(bytes: Vec<u8>) -> Self {
        Name::new(&bytes)
    }
}

/// Hands out one shared [`Name`] per distinct name: what a list's reader uses so that
/// entries decoded from the wire share their owners' names as a scan's do. Holds at most
/// [`NameTable::MAX`] names; past that (a peer sending a new name per entry) each name keeps
/// its own copy, so the table never outgrows the list.
#[derive(Debug, Default)]
pub struct NameTable(std::collections::HashMap<Box<[u8]>, Name>);

impl NameTable {
    /// Distinct names kept for sharing.
    pub const MAX: usize = 4096;

    /// The shared name equal to `bytes`.
    pub fn get(&mut self, bytes: &[u8]) -> Name {
        if bytes.is_empty() {
            return Name::default();
        }
        if let Some(n) = self.0.get(bytes) {
            return n.clone();
        }
        let n = Name::new(bytes);
        if self.0.len() < Self::MAX {
            self.0.insert(Box::from(bytes), n.clone());
        }
        n
    }
}

/// An entry's owner: its user and group ids and names on the sender, behind one shared thin
/// pointer (8 bytes in the entry; none on the heap for the all-zero owner). A tree has few
/// distinct owners, so a list's entries share a handful of blocks ([`OwnerTable`]). Equal
/// owners compare equal whether shared or not.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Owner(Option<Arc<OwnerIds>>);

#[derive(Default, PartialEq, Eq, Hash)]
struct OwnerIds {
    uid: u32,
    gid: u32,
    user: Name,
    group: Name,
}

impl Owner {
    /// An owner of its own (see [`OwnerTable`] to share one).
    pub fn new(uid: u32, gid: u32, user: Name, group: Name) -> Self {
        let ids = OwnerIds {
            uid,
            gid,
            user,
            group,
        };
        Owner((ids != OwnerIds::default()).then(|| Arc::new(ids)))
    }

    /// Owner id on the sender.
    pub fn uid(&self) -> u32 {
        self.0.as_ref().map_or(0, |o| o.uid)
    }

    /// Group id on the sender.
    pub fn gid(&self) -> u32 {
        self.0.as_ref().map_or(0, |o| o.gid)
    }

    /// Owner name on the sender (empty when unknown or with `--numeric-ids`).
    pub fn user(&self) -> &Name {
        static NONE: Name = Name(None);
        self.0.as_ref().map_or(&NONE, |o| &o.user)
    }

    /// Group name on the sender (empty when unknown or with `--numeric-ids`).
    pub fn group(&self) -> &Name {
        static NONE: Name = Name(None);
        self.0.as_ref().map_or(&NONE, |o| &o.group)
    }

    /// Whether two owners share one allocation (both the all-zero owner counts).
    pub fn shares_with(&self, other: &Owner) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}({:?}:{:?})",
            self.uid(),
            self.gid(),
            self.user(),
            self.group()
        )
    }
}

/// Hands out one shared [`Owner`] per distinct owner (and one shared [`Name`] per name): what
/// a list's builder uses so that its entries share a few owner blocks. Holds at most
/// [`OwnerTable::MAX`] owners; past that (a peer sending a new owner per entry) each keeps its
/// own block, so the table never outgrows the list.
#[derive(Debug, Default)]
pub struct OwnerTable {
    owners: std::collections::HashSet<Owner>,
    names: NameTable,
}

impl OwnerTable {
    /// Distinct owners kept for sharing.
    pub const MAX: usize = 4096;

    /// Make `e`'s owner the shared one.
    pub fn share(&mut self, e: &mut FileEntry) {
        let owner = std::mem::take(&mut e.owner);
        e.owner = self.shared(owner);
    }

    /// The shared owner equal to `owner`.
    pub fn shared(&mut self, owner: Owner) -> Owner {
        if owner.0.is_none() {
            return owner;
        }
        if let Some(shared) = self.owners.get(&owner) {
            return shared.clone();
        }
        let owner = Owner::new(
            owner.uid(),
            owner.gid(),
            self.names.get(owner.user()),
            self.names.get(owner.group()),
        );
        if self.owners.len() < Self::MAX {
            self.owners.insert(owner.clone());
        }
        owner
    }
}

/// An entry's relative path: its bytes inline when they fit in [`RelPath::INLINE`] (most
/// names below a few directories), else one heap block holding their length and them behind a
/// thin pointer. 16 bytes either way (issue 18: a list holds one per file; a `Vec<u8>` is 24
/// bytes and a heap block besides). Reads as the path's bytes; compares and hashes as them.
#[derive(Clone)]
pub struct RelPath(PathRepr);

#[derive(Clone)]
enum PathRepr {
    Inline(u8, [u8; RelPath::INLINE]),
    Heap(HeapPath),
}

/// A path's bytes on the heap behind a thin pointer: one block of a 4-byte length and the
/// bytes (a `Box<[u8]>` would spend 16 bytes in the entry on a fat pointer).
struct HeapPath(std::ptr::NonNull<u8>);

// SAFETY: a `HeapPath` owns its block outright and never mutates it after creation, as a
// `Box<[u8]>` would.
unsafe impl Send for HeapPath {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for HeapPath {}

impl HeapPath {
    const HEADER: usize = std::mem::size_of::<u32>();

    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(Self::HEADER + len, std::mem::align_of::<u32>())
            .expect("a path's length fits a layout")
    }

    fn new(bytes: &[u8]) -> Self {
        let len = u32::try_from(bytes.len()).expect("a path shorter than 4 GiB");
        let layout = Self::layout(bytes.len());
        // SAFETY: the layout is never zero-sized (it has the header).
        let block = unsafe { std::alloc::alloc(layout) };
        let Some(block) = std::ptr::NonNull::new(block) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: the block is `HEADER + len` bytes, aligned for a u32; the bytes go after the
        // header and do not overlap the caller's slice.
        unsafe {
            block.as_ptr().cast::<u32>().write(len);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                block.as_ptr().add(Self::HEADER),
                bytes.len(),
            );
        }
        HeapPath(block)
    }

    fn len(&self) -> usize {
        // SAFETY: the block starts with the aligned length written by `new`.
        unsafe { self.0.as_ptr().cast::<u32>().read() as usize }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `new` wrote `len` bytes after the header; the block lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(Self::HEADER), self.len()) }
    }
}

impl Clone for HeapPath {
    fn clone(&self) -> Self {
        HeapPath::new(self.as_slice())
    }
}

impl Drop for HeapPath {
    fn drop(&mut self) {
        // SAFETY: the block was allocated by `new` with this very layout.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), Self::layout(self.len())) }
    }
}

impl RelPath {
    /// The longest path kept inline.
    pub const INLINE: usize = 14;

    /// The path's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            PathRepr::Inline(len, buf) => &buf[..usize::from(*len)],
            PathRepr::Heap(b) => b.as_slice(),
        }
    }

    /// Whether the bytes are inline (no heap block).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, PathRepr::Inline(..))
    }
}

impl Default for RelPath {
    fn default() -> Self {
        RelPath(PathRepr::Inline(0, [0; RelPath::INLINE]))
    }
}

impl From<&[u8]> for RelPath {
    fn from(bytes: &[u8]) -> Self {
        if bytes.len() <= RelPath::INLINE {
            let mut buf = [0; RelPath::INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            RelPath(PathRepr::Inline(bytes.len() as u8, buf))
        } else {
            RelPath(PathRepr::Heap(HeapPath::new(bytes)))
        }
    }
}

impl From<Vec<u8>> for RelPath {
    fn from(bytes: Vec<u8>) -> Self {
        RelPath::from(bytes.as_slice())
    }
}

impl<const N: usize> From<&[u8; N]> for RelPath {
    fn from(bytes: &[u8; N]) -> Self {
        RelPath::from(&bytes[..])
    }
}

impl From<RelPath> for Vec<u8> {
    fn from(p: RelPath) -> Self {
        p.as_slice().to_vec()
    }
}

impl std::ops::Deref for RelPath {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for RelPath {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::borrow::Borrow<[u8]> for RelPath {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for RelPath {
    fn eq(&self, other: &RelPath) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for RelPath {}

impl std::hash::Hash for RelPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &RelPath) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RelPath {
    fn cmp(&self, other: &RelPath) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl PartialEq<[u8]> for RelPath {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for RelPath {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for RelPath {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for RelPath {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == *other
    }
}

impl PartialEq<Vec<u8>> for RelPath {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<RelPath> for Vec<u8> {
    fn eq(&self, other: &RelPath) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<RelPath> for [u8] {
    fn eq(&self, other: &RelPath) -> bool {
        self == other.as_slice()
    }
}

impl PartialEq<RelPath> for &[u8] {
    fn eq(&self, other: &RelPath) -> bool {
        *self == other.as_slice()
    }
}

impl std::fmt::Debug for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// What few entries carry, kept apart from [`FileEntry`] so that an entry without any of it
/// (most files and directories) spends 8 bytes on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rare {
    /// Device number (devices only).
    pub rdev: u64,
    /// Symlink target (symlinks only).
    pub link_target: Vec<u8>,
    /// Extended attributes (only with `-X`, or `-A` as ACL attributes).
    pub xattrs: Vec<Xattr>,
    /// Hard-link group (0: none; only with `-H`, on files of more than one link).
    pub hardlink_group: u32,
    /// BLAKE3 of the content (regular files, only with `--checksum`).
    pub checksum: Option<[u8; 32]>,
}

impl Rare {
    /// A [`FileEntry`]'s rare part of these: `None` when all are empty, so that equal entries
    /// compare equal however they were built.
    pub fn of(rdev: u64, link_target: Vec<u8>, xattrs: Vec<Xattr>) -> Option<Box<Rare>> {
        Rare {
            rdev,
            link_target,
            xattrs,
            ..Rare::default()
        }
        .boxed()
    }

    fn boxed(self) -> Option<Box<Rare>> {
        (self != Rare::default()).then(|| Box::new(self))
    }
}

/// One path of the sender's tree. 56 bytes (issue 18: a list holds one per file on each
/// side): the owner and the rare fields are behind pointers, read through accessors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the transfer root (`.` for the root).
    pub path: RelPath,
    /// Kind.
    pub kind: FileKind,
    /// Permission bits (the `0o7777` part of the mode).
    pub perms: u16,
    /// Size in bytes (regular files; 0 otherwise).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Owner and group, ids and names (read through [`FileEntry::uid`], [`FileEntry::user`]…).
    owner: Owner,
    /// Device number, symlink target, extended attributes, hard-link group and checksum:
    /// `None` when all are empty (read them through [`FileEntry::rdev`] and the others).
    rare: Option<Box<Rare>>,
    /// A directory whose contents are not listed — a mount point under `-x`, sent as an
    /// empty directory (rsync's `XMIT_NO_CONTENT_DIR`): `--delete` leaves what the
    /// destination has inside it, as rsync does.
    pub no_content: bool,
}

impl FileEntry {
    /// An entry of `kind` at `path` with every other field empty (mode bits 0, size 0, time
    /// 0, no owner names, no hard-link group): a start for callers that fill in what they know.
    pub fn new(path: impl Into<RelPath>, kind: FileKind) -> Self {
        FileEntry {
            path: path.into(),
            kind,
            perms: 0,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            owner: Owner::default(),
            rare: None,
            no_content: false,
        }
    }

    /// Owner id on the sender.
    pub fn uid(&self) -> u32 {
        self.owner.uid()
    }

    /// Group id on the sender.
    pub fn gid(&self) -> u32 {
        self.owner.gid()
    }

    /// Owner name on the sender (empty when unknown or with `--numeric-ids`).
    pub fn user(&self) -> &Name {
        self.owner.user()
    }

    /// Group name on the sender (empty when unknown or with `--numeric-ids`).
    pub fn group(&self) -> &Name {
        self.owner.group()
    }

    /// The owner (ids and names).
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Set the owner (see [`OwnerTable`] to share it with other entries).
    pub fn set_owner(&mut self, owner: Owner) {
        self.owner = owner;
    }

    /// The rare part (`None` when the entry has none of it).
    pub fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    /// Set the rare part (as [`Rare::of`] makes it: `None` when all of it is empty).
    pub fn set_rare(&mut self, rare: Option<Box<Rare>>) {
        self.rare = rare.and_then(|r| r.boxed());
    }

    /// Device number (devices only; 0 otherwise).
    pub fn rdev(&self) -> u64 {
        self.rare.as_ref().map_or(0, |r| r.rdev)
    }

    /// Symlink target (symlinks only; empty otherwise).
    pub fn link_target(&self) -> &[u8] {
        self.rare.as_ref().map_or(&[], |r| &r.link_target)
    }

    /// Extended attributes (only with `-X` or `-A`).
    pub fn xattrs(&self) -> &[Xattr] {
        self.rare.as_ref().map_or(&[], |r| &r.xattrs)
    }

    /// Hard-link group (0: none). Entries with the same non-zero group are one inode; the
    /// first in list order is the group's leader.
    pub fn hardlink_group(&self) -> u32 {
        self.rare.as_ref().map_or(0, |r| r.hardlink_group)
    }

    /// BLAKE3 of the content (regular files, only with `--checksum`).
    pub fn checksum(&self) -> Option<&[u8; 32]> {
        self.rare.as_ref().and_then(|r| r.checksum.as_ref())
    }

    /// Set the device number.
    pub fn set_rdev(&mut self, rdev: u64) {
        self.with_rare(|r| r.rdev = rdev);
    }

    /// Set the symlink target.
    pub fn set_link_target(&mut self, target: Vec<u8>) {
        self.with_rare(|r| r.link_target = target);
    }

    /// Set the extended attributes.
    pub fn set_xattrs(&mut self, xattrs: Vec<Xattr>) {
        self.with_rare(|r| r.xattrs = xattrs);
    }

    /// Set the hard-link group (0: none).
    pub fn set_hardlink_group(&mut self, group: u32) {
        self.with_rare(|r| r.hardlink_group = group);
    }

    /// Set the content's checksum.
    pub fn set_checksum(&mut self, checksum: Option<[u8; 32]>) {
        self.with_rare(|r| r.checksum = checksum);
    }

    fn with_rare(&mut self, f: impl FnOnce(&mut Rare)) {
        let mut r = self.rare.take().map_or_else(Rare::default, |b| *b);
        f(&mut r);
        self.rare = r.boxed();
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
        if e.hardlink_group() != 0 && e.kind != FileKind::File {
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
            if e.hardlink_group() != 0 {
                leader.insert(e.hardlink_group(), i);
            }
        }
        leader
    }

    /// Sort into transfer order. In place (issue 18: a stable sort takes a scratch buffer of
    /// up to 8 MB); equal paths are a duplicate that `validate_list` refuses either way.
    pub fn sort(&mut self) {
        self.entries.sort_unstable_by(|a, b| {
            path_order(
                &a.path,
                a.kind == FileKind::Dir,
                &b.path,
                b.kind == FileKind::Dir,
            )
        });
    }

    /// The index of `entry` if it is one of this list's own entries (not an equal copy).
    pub fn index_of(&self, entry: &FileEntry) -> Option<usize> {
        let size = std::mem::size_of::<FileEntry>();
        let base = self.entries.as_ptr() as usize;
        let at = (entry as *const FileEntry as usize).checked_sub(base)?;
        let i = at / size;
        (at % size == 0)
            .then_some(i)
            .filter(|&i| self.entries.get(i).is_some_and(|e| std::ptr::eq(e, entry)))
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

    /// Issue 18: the list is held per entry, so every byte of an entry is paid per file.
    #[test]
    fn an_entry_is_56_bytes() {
        assert!(
            std::mem::size_of::<FileEntry>() <= 56,
            "{} bytes",
            std::mem::size_of::<FileEntry>()
        );
        assert_eq!(std::mem::size_of::<Owner>(), 8);
        // What a `-c` list pays a file on top of the entry (docs/BENCHMARKS.md).
        assert!(std::mem::size_of::<Rare>() <= 96);
        let mut e = FileEntry::new(b"l".to_vec(), FileKind::Symlink);
        e.set_link_target(b"t".to_vec());
        e.set_rdev(0);
        assert_eq!(e.link_target(), b"t");
        assert_eq!((e.rdev(), e.xattrs()), (0, &[][..]));
        // Emptied again, it is the entry that never had any.
        e.set_link_target(Vec::new());
        assert!(e.rare().is_none());
        assert_eq!(e, FileEntry::new(b"l".to_vec(), FileKind::Symlink));
    }

    /// The hard-link group and the checksum live in the rare part: set, they read back and
    /// leave the other rare fields alone; cleared, the entry has no rare part again.
    #[test]
    fn hard_link_group_and_checksum_are_rare_fields() {
        let mut e = FileEntry::new(b"f".to_vec(), FileKind::File);
        assert_eq!((e.hardlink_group(), e.checksum()), (0, None));
        e.set_hardlink_group(7);
        e.set_checksum(Some([9; 32]));
        e.set_xattrs(vec![Xattr {
            name: b"user.a".to_vec(),
            value: b"b".to_vec(),
        }]);
        assert_eq!(e.hardlink_group(), 7);
        assert_eq!(e.checksum(), Some(&[9; 32]));
        assert_eq!(e.xattrs().len(), 1);
        e.set_xattrs(Vec::new());
        e.set_hardlink_group(0);
        assert_eq!(e.checksum(), Some(&[9; 32]));
        e.set_checksum(None);
        assert!(e.rare().is_none());
        // A rare part of nothing set from outside is no rare part either.
        e.set_rare(Some(Box::default()));
        assert!(e.rare().is_none());
    }

    /// Issue 18: a short path is held in the entry, a long one in one block of its length
    /// behind a thin pointer; either reads, compares and hashes as its bytes (so a
    /// `HashSet<RelPath>` is looked up by `&[u8]`).
    #[test]
    fn a_path_is_inline_when_short_and_reads_as_its_bytes() {
        use std::collections::HashSet;
        assert_eq!(std::mem::size_of::<RelPath>(), 16);
        let short = RelPath::from(&b"d0001/f0001"[..]);
        let edge = RelPath::from(vec![b'a'; RelPath::INLINE]);
        let long = RelPath::from(vec![b'a'; RelPath::INLINE + 1]);
        assert!(short.is_inline() && edge.is_inline() && !long.is_inline());
        assert_eq!(short, b"d0001/f0001");
        assert_eq!(edge.len(), RelPath::INLINE);
        assert_eq!(long.as_slice(), &[b'a'; RelPath::INLINE + 1][..]);
        assert_eq!(Vec::from(long.clone()), vec![b'a'; RelPath::INLINE + 1]);
        assert_eq!(RelPath::default(), b"");
        let next = RelPath::from(b"d0001/f0002");
        assert!(short < next && next > edge);
        let set: HashSet<RelPath> = [short.clone(), long.clone()].into_iter().collect();
        assert!(set.contains(&b"d0001/f0001"[..]));
        assert!(set.contains(long.as_slice()));
        assert!(!set.contains(&b"d0001"[..]));
        // Long paths of every length up to the wire's bound survive a clone and a drop.
        for n in [15, 16, 17, 31, 255, MAX_PATH] {
            let bytes: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let p = RelPath::from(bytes.as_slice());
            let q = p.clone();
            drop(p);
            assert_eq!(q.as_slice(), bytes.as_slice());
        }
    }

    #[test]
    fn a_name_table_shares_each_name_and_stays_bounded() {
        let mut t = NameTable::default();
        let (a, b) = (t.get(b"alice"), t.get(b"alice"));
        assert!(a.shares_with(&b));
        assert_eq!(&*a, b"alice");
        assert!(!t.get(b"bob").shares_with(&a));
        assert!(t.get(b"").is_empty());
        for i in 0..NameTable::MAX + 10 {
            t.get(format!("u{i}").as_bytes());
        }
        assert_eq!(t.0.len(), NameTable::MAX);
        // Past the bound a name is still right, only not shared.
        let late = t.get(b"late");
        assert_eq!(&*late, b"late");
        assert!(!late.shares_with(&t.get(b"late")));
    }

    /// Issue 18: entries of one owner share one owner block (ids and names), equal owners
    /// compare equal shared or not, and the table stays bounded.
    #[test]
    fn an_owner_table_shares_each_owner_and_stays_bounded() {
        let mut t = OwnerTable::default();
        let alice = || Owner::new(1000, 100, Name::new(b"alice"), Name::new(b"staff"));
        let mut e = FileEntry::new(b"f".to_vec(), FileKind::File);
        e.set_owner(alice());
        let mut f = e.clone();
        f.set_owner(alice());
        assert!(!e.owner().shares_with(f.owner()));
        assert_eq!(e, f);
        t.share(&mut e);
        t.share(&mut f);
        assert!(e.owner().shares_with(f.owner()));
        assert_eq!((e.uid(), e.gid()), (1000, 100));
        assert_eq!(
            (&e.user()[..], &e.group()[..]),
            (&b"alice"[..], &b"staff"[..])
        );
        // Another gid is another owner; the names are still shared between them.
        let other = t.shared(Owner::new(1000, 101, Name::new(b"alice"), Name::new(b"x")));
        assert_ne!(&other, e.owner());
        assert!(other.user().shares_with(e.user()));
        // The all-zero owner costs no block.
        assert_eq!(
            Owner::new(0, 0, Name::default(), Name::default()),
            Owner::default()
        );
        for i in 0..OwnerTable::MAX as u32 + 10 {
            t.shared(Owner::new(i + 5000, 0, Name::default(), Name::default()));
        }
        assert_eq!(t.owners.len(), OwnerTable::MAX);
        let late = t.shared(Owner::new(1, 2, Name::default(), Name::default()));
        assert_eq!((late.uid(), late.gid()), (1, 2));
    }

    #[test]
    fn parent_split() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b"."[..], &b"c"[..]));
    }
}
