//! The destination filesystem layer: every write the receiver makes goes through here.
//!
//! Owns safe path resolution under the destination root (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, or a component walk with `O_NOFOLLOW` on kernels without it), so that
//! no symlink inside the destination is ever followed while writing; temporary files and the
//! rename into place; creation of directories, symlinks and special files; and metadata
//! (owner, group, permissions, times) applied through file descriptors or `*at` calls with
//! `AT_SYMLINK_NOFOLLOW`. Does not decide *what* to write (that is the receiver's job).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::flist::{FileEntry, FileKind};

// Issue 15, tempfiles: files staged in `-T`'s directory, and what a stopped transfer keeps.
mod away;
mod partial;
use away::copy_into;
pub use away::{stage_away, StagingDir};
pub use partial::{keep_partial, open_basis, open_partial_dir, partial_basis, partial_path};

/// The largest number of directory handles kept open.
const DIR_CACHE: usize = 512;

/// The destination directory, opened once; paths below it are resolved without following
/// symlinks.
#[derive(Debug)]
pub struct DestRoot {
    root: Arc<OwnedFd>,
    path: PathBuf,
    dirs: Mutex<HashMap<Vec<u8>, Arc<OwnedFd>>>,
    /// Whether a directory has the set-group-id bit (new files then take its group).
    setgid: Mutex<HashMap<Vec<u8>, bool>>,
    /// `-K`: directories are reached through symlinks in the destination (rsync follows a
    /// symlinked directory wherever it points).
    follow_dirlinks: bool,
}

impl DestRoot {
    /// Open the destination directory `path` (a symlink naming the root itself is followed, as
    /// rsync does).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DestRoot {
            root: Arc::new(fd),
            path: path.to_path_buf(),
            dirs: Mutex::new(HashMap::new()),
            setgid: Mutex::new(HashMap::new()),
            follow_dirlinks: false,
        })
    }

    /// `-K` (`on`): reach directories through symlinks in the destination, as rsync's
    /// `--keep-dirlinks` does; otherwise no symlink below the root is followed.
    pub fn following_dirlinks(mut self, on: bool) -> Self {
        self.follow_dirlinks = on;
        self
    }

    /// The root's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `rel` below the root (`.` or empty: the root), never through a symlink.
    pub fn dir(&self, rel: &[u8]) -> io::Result<Arc<OwnedFd>> {
        if rel.is_empty() || rel == b"." {
            return Ok(self.root.clone());
        }
        if let Ok(d) = self.dirs.lock() {
            if let Some(fd) = d.get(rel) {
                return Ok(fd.clone());
            }
        }
        let fd = Arc::new(if self.follow_dirlinks {
            rustix::fs::openat(
                self.root.as_fd(),
                OsStr::from_bytes(rel),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        } else {
            open_beneath(self.root.as_fd(), rel)?
        });
        if let Ok(mut d) = self.dirs.lock() {
            if d.len() >= DIR_CACHE {
                d.clear();
            }
            d.insert(rel.to_vec(), fd.clone());
        }
        Ok(fd)
    }

    /// Whether directory `rel` has the set-group-id bit, so that files created in it take its
    /// group rather than ours (one `fstat` per directory, remembered).
    pub fn dir_is_setgid(&self, rel: &[u8]) -> bool {
        if let Some(&b) = self
            .setgid
            .lock()
            .ok()
            .and_then(|m| m.get(rel).copied())
            .as_ref()
        {
            return b;
        }
        let b = self
            .dir(rel)
            .and_then(|fd| Ok(rustix::fs::fstat(&*fd)?))
            // Unknown: assume set-group-id, which only costs an explicit chown.
            .map_or(true, |st| st.st_mode & libc::S_ISGID != 0);
        if let Ok(mut m) = self.setgid.lock() {
            m.insert(rel.to_vec(), b);
        }
        b
    }

    /// Forget cached directory handles (after a directory was removed or replaced).
    pub fn forget_dirs(&self) {
        if let Ok(mut d) = self.dirs.lock() {
            d.clear();
        }
        if let Ok(mut m) = self.setgid.lock() {
            m.clear();
        }
    }
}

/// Open directory `rel` below `root` without following any symlink or leaving `root`.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::openat2(
        root,
        OsStr::from_bytes(rel),
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(Errno::NOSYS) | Err(Errno::PERM) => {}
        Err(Errno::LOOP) | Err(Errno::XDEV) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to follow a symlink in destination path {:?}",
                    String::from_utf8_lossy(rel)
                ),
            ))
        }
        other => return other.map_err(Into::into),
    }
    // Kernels before 5.6: walk one component at a time with O_NOFOLLOW.
    let mut cur = rustix::io::dup(root)?;
    for comp in rel.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." || comp == b".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad path component",
            ));
        }
        cur = rustix::fs::openat(&cur, OsStr::from_bytes(comp), flags, Mode::empty())?;
    }
    Ok(cur)
}

/// Why [`resolve_beneath`] refused a path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BeneathError {
    /// An absolute path, a `..` component, or a NUL byte.
    #[error("{0:?}: absolute paths and \"..\" are not allowed")]
    Malformed(String),
    /// Resolving it would leave the root (through a symlink, usually).
    #[error("{0:?} leads outside the module")]
    Escapes(String),
    /// It does not exist (and had to).
    #[error("{0:?}: no such file or directory")]
    Missing(String),
    /// Anything else.
    #[error("{path:?}: {source}")]
    Io {
        /// The path asked for.
        path: String,
        /// What failed.
        source: io::Error,
    },
}

/// The real path of `rel` below the directory `root` (itself already canonical), for a
/// server confining a client to `root` (a module of `arsync serve`): `rel` may not be
/// absolute or contain `..`; symlinks inside are followed only while they stay below `root`
/// (`openat2` with `RESOLVE_BENEATH`). With `must_exist` false, trailing components that do
/// not exist yet are appended to the real path of the longest prefix that does (what a
/// receiver will create). A trailing `/` is kept.
pub fn resolve_beneath(root: &Path, rel: &str, must_exist: bool) -> Result<PathBuf, BeneathError> {
    let shown = rel.to_owned();
    let trimmed = rel.trim_end_matches('/');
    let comps: Vec<&str> = trimmed
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if rel.starts_with('/') || rel.contains('\0') || comps.contains(&"..") {
        return Err(BeneathError::Malformed(shown));
    }
    let io_err = |source: io::Error| BeneathError::Io {
        path: rel.to_owned(),
        source,
    };
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(e.into()))?;
    // The longest prefix that exists, resolved beneath the root.
    let mut have = comps.len();
    let fd = loop {
        let prefix = comps[..have].join("/");
        let prefix = if prefix.is_empty() {
            ".".to_owned()
        } else {
            prefix
        };
        match rustix::fs::openat2(
            &root_fd,
            prefix.as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => break fd,
            Err(Errno::XDEV) | Err(Errno::LOOP) => return Err(BeneathError::Escapes(shown)),
            Err(Errno::NOENT) if !must_exist && have > 0 => have -= 1,
            Err(Errno::NOENT) => return Err(BeneathError::Missing(shown)),
            Err(e) => return Err(io_err(e.into())),
        }
    };
    let real = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    }))
    .map_err(io_err)?;
    if !real.starts_with(root) {
        return Err(BeneathError::Escapes(shown));
    }
    // A missing component's parent must be a directory that a receiver can create under.
    let mut out = real;
    for c in &comps[have..] {
        out.push(c);
    }
    if rel.ends_with('/') && !comps.is_empty() {
        let mut s = out.into_os_string();
        s.push("/");
        out = PathBuf::from(s);
    }
    Ok(out)
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The kind of a stat result.
pub fn stat_kind(st: &Stat) -> Option<FileKind> {
    FileKind::from_mode(st.st_mode)
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn pid() -> u64 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    u64::from(*PID.get_or_init(std::process::id))
}

/// rsync-style temporary name for `name`: `.NAME.XXXXXX`, shortened to fit `NAME_MAX`.
fn temp_name(name: &[u8], attempt: u64) -> Vec<u8> {
    let seq = TEMP_SEQ.fetch_add(1, Relaxed);
    let mut x = seq
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(pid() << 20)
        .wrapping_add(attempt.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let keep = name.len().min(255 - 9);
    let mut t = Vec::with_capacity(keep + 9);
    t.push(b'.');
    t.extend_from_slice(&name[..keep]);
    t.push(b'.');
    for _ in 0..6 {
        t.push(ALPHA[(x % ALPHA.len() as u64) as usize]);
        x /= ALPHA.len() as u64;
    }
    t
}

/// A file being written under a temporary name in its destination directory.
#[derive(Debug)]
pub struct TempFile {
    /// The open file.
    pub file: File,
    /// Its temporary name in `dir`.
    pub name: Vec<u8>,
}

/// Create a new temporary file for `name` in `dir` (mode 0600, never through a symlink).
pub fn create_temp(dir: impl AsFd, name: &[u8]) -> io::Result<TempFile> {
    let dir = dir.as_fd();
    for attempt in 0..100 {
        let t = temp_name(name, attempt);
        match rustix::fs::openat(
            dir,
            OsStr::from_bytes(&t),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                return Ok(TempFile {
                    file: File::from(fd),
                    name: t,
                })
            }
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not find a free temporary name",
    ))
}

/// Issue 18, cheap deltas: whether the file system of `dir` may copy a file's data without
/// copying its bytes (`copy_file_range` as a reflink or a server-side copy: btrfs, XFS, ZFS,
/// bcachefs, OCFS2, NFS, SMB) — or cannot be asked, which is taken as yes. There a rebuild
/// copies the old version's runs for (almost) nothing, and writing it out beforehand would
/// cost more than it saves.
pub fn copies_by_reference(dir: impl AsFd) -> bool {
    const BY_REFERENCE: [i64; 8] = [
        0x9123_683e, // btrfs
        0x5846_5342, // XFS
        0x2fc1_2fc1, // ZFS
        0xca45_1a4e, // bcachefs
        0x7461_636f, // OCFS2
        0x6969,      // NFS
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
    ];
    match rustix::fs::fstatfs(dir) {
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => BY_REFERENCE.contains(&(st.f_type as i64)),
        Err(_) => true,
    }
}

/// How a file being written is staged until it is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staging {
    /// An unnamed file (`O_TMPFILE`): invisible until linked, gone if we die.
    Anonymous,
    /// A temporary name in the destination directory.
    Named(Vec<u8>),
    /// The destination file itself (`--inplace`).
    InPlace,
    /// A temporary name in another directory (`-T`), moved (or copied across filesystems)
    /// into place.
    Away(StagingDir, Vec<u8>),
}

/// Create the file that will become `name` in `dir`. For a name that does not exist yet an
/// unnamed `O_TMPFILE` is used where the filesystem has it (one directory operation instead of
/// create + rename, and nothing left behind if the process is killed); otherwise a
/// `.NAME.XXXXXX` temporary.
///
/// An unnamed file is created with `mode` (the caller's final permission bits, less the
/// umask): nobody can open it by name before it is linked, and a final `fchmod` is often not
/// needed.
pub fn stage(dir: impl AsFd, name: &[u8], new: bool, mode: u32) -> io::Result<(File, Staging)> {
    let dir = dir.as_fd();
    if new {
        match rustix::fs::openat(
            dir,
            ".",
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        ) {
            Ok(fd) => return Ok((File::from(fd), Staging::Anonymous)),
            // Not supported here (filesystem or kernel): fall back to a named temporary.
            Err(Errno::OPNOTSUPP) | Err(Errno::ISDIR) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let t = create_temp(dir, name)?;
    track_named(dir, &t.name, dir, name);
    Ok((t.file, Staging::Named(t.name)))
}

/// A named temporary in progress: the directory it is in and its name there, and the file
/// it is to become.
struct Tracked {
    at: OwnedFd,
    temp: Vec<u8>,
    dir: OwnedFd,
    name: Vec<u8>,
}

/// Named temporaries in progress, so that an interrupted run can remove them
/// ([`remove_staged`]) or keep what they hold ([`keep_staged`]). Unnamed ones need no
/// tracking: the kernel frees them.
static STAGED: Mutex<Vec<Tracked>> = Mutex::new(Vec::new());

pub(crate) fn track_named(at: BorrowedFd<'_>, temp: &[u8], dir: BorrowedFd<'_>, name: &[u8]) {
    if let (Ok(at), Ok(dir), Ok(mut v)) = (rustix::io::dup(at), rustix::io::dup(dir), STAGED.lock())
    {
        v.push(Tracked {
            at,
            temp: temp.to_vec(),
            dir,
            name: name.to_vec(),
        });
    }
}

pub(crate) fn untrack_named(temp: &[u8]) {
    if let Ok(mut v) = STAGED.lock() {
        if let Some(i) = v.iter().position(|t| t.temp == temp) {
            v.swap_remove(i);
        }
    }
}

/// Remove every named temporary still in progress (called when a signal stops the run).
pub fn remove_staged() {
    if let Ok(mut v) = STAGED.lock() {
        for t in v.drain(..) {
            let _ = unlink_at(&t.at, &t.temp);
        }
    }
}

/// Keep what every named temporary in progress holds (called when a signal stops a run with
/// `--partial`): see [`keep_partial`].
pub fn keep_staged(partial_dir: Option<&Path>) {
    let staged = match STAGED.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return,
    };
    for t in staged {
        let _ = keep_partial(&t.at, &t.temp, &t.dir, &t.name, partial_dir);
    }
}

/// Put a complete staged file in place as `name`.
pub fn commit(dir: impl AsFd, file: &File, staging: &Staging, name: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    commit_into(dir, dir, file, staging, name)
}

/// Put a complete file staged for directory `staged_for` in place as `name` in `dir` (another
/// directory on the same filesystem, e.g. `--delay-updates`' waiting room).
pub fn commit_into(
    staged_for: impl AsFd,
    dir: impl AsFd,
    file: &File,
    staging: &Staging,
    name: &[u8],
) -> io::Result<()> {
    let dir = dir.as_fd();
    match staging {
        Staging::InPlace => Ok(()),
        Staging::Named(t) => {
            let r = rename_into(staged_for.as_fd(), t, dir, name);
            untrack_named(t);
            r
        }
        Staging::Away(away, t) => {
            let r = match rustix::fs::renameat(
                &*away.0,
                OsStr::from_bytes(t),
                dir,
                OsStr::from_bytes(name),
            ) {
                Ok(()) => Ok(()),
                // Another filesystem: copy it over, as rsync's robust_rename does.
                Err(Errno::XDEV) => {
                    copy_into(file, dir, name).and_then(|()| unlink_at(&*away.0, t))
                }
                Err(e) => Err(e.into()),
            };
            if r.is_err() {
                let _ = unlink_at(&*away.0, t);
            }
            untrack_named(t);
            r
        }
        Staging::Anonymous => {
            let link = |to: &OsStr| link_unnamed(file, dir, to);
            match link(OsStr::from_bytes(name)) {
                Ok(()) => Ok(()),
                // Something appeared under the name meanwhile: link under a temporary name,
                // then rename over it.
                Err(Errno::EXIST) => create_then_rename(dir, name, link),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Whether `linkat(fd, "", …, AT_EMPTY_PATH)` was refused once (it needs
/// `CAP_DAC_READ_SEARCH`): every later unnamed file is linked through `/proc/self/fd` at once.
static NO_FLINK: AtomicBool = AtomicBool::new(false);

/// Give the unnamed (`O_TMPFILE`) `file` the name `to` in `dir`: by its descriptor where the
/// kernel allows it (one path lookup fewer per file), else through its `/proc/self/fd` link.
fn link_unnamed(file: &File, dir: BorrowedFd<'_>, to: &OsStr) -> rustix::io::Result<()> {
    if !NO_FLINK.load(Relaxed) {
        match link_by_fd(file, dir, to) {
            // Without the capability the kernel answers ENOENT (EPERM on some versions).
            Err(Errno::NOENT) | Err(Errno::PERM) => NO_FLINK.store(true, Relaxed),
            r => return r,
        }
    }
    link_by_proc(file, dir, to)
}

fn link_by_fd(file: &File, dir: BorrowedFd<'_>, to: &OsStr) -> rustix::io::Result<()> {
    rustix::fs::linkat(file, "", dir, to, AtFlags::EMPTY_PATH)
}

fn link_by_proc(file: &File, dir: BorrowedFd<'_>, to: &OsStr) -> rustix::io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file));
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        dir,
        to,
        AtFlags::SYMLINK_FOLLOW,
    )
}

/// Throw away a staged file that will not be completed.
pub fn discard(dir: impl AsFd, staging: &Staging) {
    match staging {
        Staging::Named(t) => {
            let _ = unlink_at(dir, t);
            untrack_named(t);
        }
        Staging::Away(away, t) => {
            let _ = unlink_at(&*away.0, t);
            untrack_named(t);
        }
        Staging::Anonymous | Staging::InPlace => {}
    }
}

/// Open an existing regular file for `--inplace` writing, never through a symlink.
pub fn open_inplace(dir: impl AsFd, name: &[u8]) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Rename `from` to `to` within `dir`, replacing `to`.
pub fn rename_at(dir: impl AsFd, from: &[u8], to: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    rename_into(dir, from, dir, to)
}

/// Rename `from` in `from_dir` to `to` in `to_dir`, replacing `to`.
pub fn rename_into(
    from_dir: impl AsFd,
    from: &[u8],
    to_dir: impl AsFd,
    to: &[u8],
) -> io::Result<()> {
    rustix::fs::renameat(
        from_dir,
        OsStr::from_bytes(from),
        to_dir,
        OsStr::from_bytes(to),
    )?;
    Ok(())
}

/// Remove the non-directory `name` from `dir`; a missing one is not an error.
pub fn unlink_at(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove the empty directory `name` from `dir`.
pub fn rmdir_at(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Open subdirectory `name` of `dir`, never through a symlink.
pub fn open_subdir(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in directory `dir` (without `.` and `..`).
pub fn list_dir(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    let d = rustix::fs::Dir::read_from(&fd)?;
    for e in d {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Create directory `name` in `dir`; anything already there is an error (`EEXIST`).
pub fn mkdir_at(dir: impl AsFd, name: &[u8], mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(
        dir,
        OsStr::from_bytes(name),
        Mode::from_raw_mode(mode),
    )?)
}

/// Make sure `name` in `dir` is a directory: a non-directory in its place is removed and the
/// directory made. Workers of one directory may race to do this (the partial and backup
/// directories are shared): losing the race to another worker is fine. `Ok(true)` when this
/// call made it.
pub fn ensure_dir_at(dir: impl AsFd, name: &[u8], mode: u32) -> io::Result<bool> {
    let dir = dir.as_fd();
    let is_dir = |st: Option<Stat>| st.as_ref().and_then(stat_kind) == Some(FileKind::Dir);
    let st = lstat_at(dir, name)?;
    if is_dir(st) {
        return Ok(false);
    }
    if st.is_some() {
        if let Err(e) = unlink_at(dir, name) {
            if !is_dir(lstat_at(dir, name)?) {
                return Err(e);
            }
            return Ok(false);
        }
    }
    match mkdir_at(dir, name, mode) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_dir(lstat_at(dir, name)?) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Make a new object under a fresh temporary name with `create`, then rename it over `name`:
/// whatever was at `name` is replaced atomically.
fn create_then_rename(
    dir: BorrowedFd<'_>,
    name: &[u8],
    create: impl Fn(&OsStr) -> rustix::io::Result<()>,
) -> io::Result<()> {
    for attempt in 0..100 {
        let t = temp_name(name, attempt);
        match create(OsStr::from_bytes(&t)) {
            Ok(()) => {
                return rename_at(dir, &t, name).inspect_err(|_| {
                    let _ = unlink_at(dir, &t);
                })
            }
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name",
    ))
}

/// Create (or atomically replace) symlink `name` → `target` in `dir`.
pub fn symlink_at(dir: impl AsFd, name: &[u8], target: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    create_then_rename(dir, name, |t| {
        rustix::fs::symlinkat(OsStr::from_bytes(target), dir, t)
    })
}

/// Create (or atomically replace) a device, FIFO or socket node `name` in `dir`.
pub fn mknod_at(
    dir: impl AsFd,
    name: &[u8],
    kind: FileKind,
    perms: u32,
    rdev: u64,
) -> io::Result<()> {
    let dir = dir.as_fd();
    let ft = match kind {
        FileKind::CharDev => FileType::CharacterDevice,
        FileKind::BlockDev => FileType::BlockDevice,
        FileKind::Fifo => FileType::Fifo,
        FileKind::Socket => FileType::Socket,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a special file",
            ))
        }
    };
    create_then_rename(dir, name, |t| {
        rustix::fs::mknodat(dir, t, ft, Mode::from_raw_mode(perms & 0o777), rdev)
    })
}

/// Create hard link `name` in `dir` to `target_name` in `target_dir`, replacing `name`.
pub fn link_at(
    target_dir: impl AsFd,
    target_name: &[u8],
    dir: impl AsFd,
    name: &[u8],
) -> io::Result<()> {
    let (target_dir, dir) = (target_dir.as_fd(), dir.as_fd());
    create_then_rename(dir, name, |t| {
        rustix::fs::linkat(
            target_dir,
            OsStr::from_bytes(target_name),
            dir,
            t,
            AtFlags::empty(),
        )
    })
}

/// The metadata a receiver wants on one item; `None` fields are left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaPlan {
    /// Owner to set.
    pub uid: Option<u32>,
    /// Group to set.
    pub gid: Option<u32>,
    /// Permission bits to set.
    pub perms: Option<u32>,
    /// Modification time to set (seconds, nanoseconds).
    pub mtime: Option<(i64, u32)>,
}

fn times(mtime: (i64, u32)) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1 as _,
        },
    }
}

fn ignore_perm_for_group(r: rustix::io::Result<()>, only_group: bool) -> io::Result<()> {
    match r {
        // A non-root user may set only the groups it is in; rsync ignores the rest silently.
        Err(Errno::PERM) if only_group => Ok(()),
        other => other.map_err(Into::into),
    }
}

/// Apply `plan` through an open file (owner and group first: chown clears set-id bits).
pub fn apply_meta_fd(fd: impl AsFd, plan: &MetaPlan) -> io::Result<()> {
    let fd = fd.as_fd();
    if plan.uid.is_some() || plan.gid.is_some() {
        let r = rustix::fs::fchown(
            fd,
            plan.uid.map(rustix::fs::Uid::from_raw),
            plan.gid.map(rustix::fs::Gid::from_raw),
        );
        ignore_perm_for_group(r, plan.uid.is_none())?;
    }
    if let Some(p) = plan.perms {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(p))?;
    }
    if let Some(t) = plan.mtime {
        rustix::fs::futimens(fd, &times(t))?;
    }
    Ok(())
}

/// Apply `plan` to `name` in `dir` without following it if it is a symlink (symlinks have no
/// permissions of their own, so `perms` is skipped for them).
pub fn apply_meta_at(
    dir: impl AsFd,
    name: &[u8],
    plan: &MetaPlan,
    is_symlink: bool,
) -> io::Result<()> {
    let dir = dir.as_fd();
    let n = OsStr::from_bytes(name);
    if plan.uid.is_some() || plan.gid.is_some() {
        let r = rustix::fs::chownat(
            dir,
            n,
            plan.uid.map(rustix::fs::Uid::from_raw),
            plan.gid.map(rustix::fs::Gid::from_raw),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        ignore_perm_for_group(r, plan.uid.is_none())?;
    }
    if let (Some(p), false) = (plan.perms, is_symlink) {
        // The name was just created or checked by us and is not a symlink; chmodat has no
        // NOFOLLOW on older kernels, so re-check the type through an O_PATH handle.
        let fd = rustix::fs::openat(
            dir,
            n,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        match rustix::fs::chmod(path.as_str(), Mode::from_raw_mode(p)) {
            Ok(()) => {}
            Err(Errno::NOENT) => {
                rustix::fs::chmodat(dir, n, Mode::from_raw_mode(p), AtFlags::empty())?
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(t) = plan.mtime {
        match rustix::fs::utimensat(dir, n, &times(t), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(()) => {}
            // Some filesystems cannot time a symlink; rsync ignores that too.
            Err(Errno::OPNOTSUPP) if is_symlink => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether `st` already carries the metadata `plan` would set, item by item, as rsync's
/// itemize columns: (time differs, perms differ, owner differs, group differs).
pub fn meta_diff(st: &Stat, plan: &MetaPlan) -> (bool, bool, bool, bool) {
    let time = plan
        .mtime
        .is_some_and(|(s, ns)| st.st_mtime != s || st.st_mtime_nsec as u32 != ns);
    let perms = plan.perms.is_some_and(|p| st.st_mode & 0o7777 != p);
    let owner = plan.uid.is_some_and(|u| st.st_uid != u);
    let group = plan.gid.is_some_and(|g| st.st_gid != g);
    (time, perms, owner, group)
}

/// The path of `entry` under `root`, for messages.
pub fn display_path(root: &Path, entry: &FileEntry) -> PathBuf {
    if entry.is_root() {
        root.to_path_buf()
    } else {
        root.join(entry.rel_path())
    }
}

#[cfg(test)]
mod beneath_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_stay_beneath_the_root() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().canonicalize().unwrap();
        let root = base.join("mod");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink("../../a", root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("a/rel_out")).unwrap();
        assert_eq!(resolve_beneath(&root, "", true).unwrap(), root);
        assert_eq!(
            resolve_beneath(&root, "a/b/", true).unwrap(),
            PathBuf::from(format!("{}/a/b/", root.display()))
        );
        // A symlink that stays inside is followed.
        assert_eq!(
            resolve_beneath(&root, "a/b/up", true).unwrap(),
            root.join("a")
        );
        for bad in ["/etc", "../x", "a/../../x", "a/b/../../.."] {
            assert!(
                matches!(
                    resolve_beneath(&root, bad, false),
                    Err(BeneathError::Malformed(_))
                ),
                "{bad}"
            );
        }
        for esc in ["out", "out/", "out/new/file", "a/rel_out", "a/rel_out/x"] {
            assert!(
                matches!(
                    resolve_beneath(&root, esc, false),
                    Err(BeneathError::Escapes(_))
                ),
                "{esc}"
            );
        }
        assert!(matches!(
            resolve_beneath(&root, "nope", true),
            Err(BeneathError::Missing(_))
        ));
        assert_eq!(
            resolve_beneath(&root, "a/new/dir/", false).unwrap(),
            PathBuf::from(format!("{}/a/new/dir/", root.display()))
        );
    }
}

#[cfg(test)]
mod unnamed_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn unnamed(dir: &OwnedFd, data: &[u8]) -> File {
        let (mut f, staging) = stage(dir, b"x", true, 0o644).unwrap();
        assert_eq!(staging, Staging::Anonymous, "tmpfs/ext4 have O_TMPFILE");
        f.write_all(data).unwrap();
        f
    }

    /// An unnamed file gets its name through `/proc/self/fd`, by its descriptor where the
    /// kernel lets this process (refused only as ENOENT/EPERM, which the commit falls back
    /// from), and by `commit` whichever way works, also over a name that appeared meanwhile.
    #[test]
    fn unnamed_files_are_linked_by_descriptor_or_through_proc() {
        let t = tempfile::tempdir().unwrap();
        let dir: OwnedFd = File::open(t.path()).unwrap().into();
        let f = unnamed(&dir, b"by proc");
        link_by_proc(&f, dir.as_fd(), OsStr::new("p")).unwrap();
        assert_eq!(std::fs::read(t.path().join("p")).unwrap(), b"by proc");
        let f = unnamed(&dir, b"by fd");
        match link_by_fd(&f, dir.as_fd(), OsStr::new("d")) {
            Ok(()) => assert_eq!(std::fs::read(t.path().join("d")).unwrap(), b"by fd"),
            Err(e) => assert!(matches!(e, Errno::NOENT | Errno::PERM), "{e}"),
        }
        let f = unnamed(&dir, b"committed");
        commit(&dir, &f, &Staging::Anonymous, b"c").unwrap();
        assert_eq!(std::fs::read(t.path().join("c")).unwrap(), b"committed");
        let f = unnamed(&dir, b"replaced");
        commit(&dir, &f, &Staging::Anonymous, b"p").unwrap();
        assert_eq!(std::fs::read(t.path().join("p")).unwrap(), b"replaced");
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.len() <= 3, "no temporary left: {names:?}");
    }
}
