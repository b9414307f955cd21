//! Issue 15, tempfiles: what a stopped transfer keeps (`--partial`, `--partial-dir`): the
//! partial file put in place or in the partial directory, and found there next time as the
//! basis. Does not decide when (the receiver and the signal path do).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::*;

/// Keep the partial file `temp` in `at` (what arrived of `name` in `dir` before the
/// transfer stopped), as rsync's `--partial` does: in place of `name` with its time set to
/// 1970 (so that nothing takes it for complete), or with `partial_dir` under that name there
/// (relative to `dir` unless absolute; made if missing), to be the basis next time. An empty
/// one (no data arrived) is removed instead, and so is one shorter than the partial file
/// already in the partial directory (issue 19, resume: a resumed run stopped before it got past
/// what the last one kept — it copies that first — would otherwise lose it; rsync keeps a
/// partial file only once new data arrived, which comes to the same).
pub fn keep_partial(
    at: impl AsFd,
    temp: &[u8],
    dir: impl AsFd,
    name: &[u8],
    partial_dir: Option<&Path>,
) -> io::Result<()> {
    let (at, dir) = (at.as_fd(), dir.as_fd());
    untrack_named(temp);
    let Some(size) = lstat_at(at, temp)?.map(|st| st.st_size).filter(|&n| n > 0) else {
        return unlink_at(at, temp);
    };
    let kept = match partial_dir {
        Some(pd) if longer_kept(dir, pd, name, size) => unlink_at(at, temp),
        None => move_across(at, temp, dir, name).and_then(|()| {
            let st = lstat_at(dir, name)?;
            apply_meta_at(
                dir,
                name,
                &MetaPlan {
                    mtime: Some((0, 0)),
                    ..MetaPlan::default()
                },
                st.is_some_and(|st| stat_kind(&st) == Some(FileKind::Symlink)),
            )
        }),
        Some(pd) => open_partial_dir(dir, pd, true)
            .and_then(|pdir| move_across(at, temp, pdir.as_fd(), name)),
    };
    if kept.is_err() {
        let _ = unlink_at(at, temp);
    }
    kept
}

/// Whether the partial directory `pd` of `dir` already holds a regular file `name` longer
/// than `size` bytes.
fn longer_kept(dir: BorrowedFd<'_>, pd: &Path, name: &[u8], size: i64) -> bool {
    open_partial_dir(dir, pd, false)
        .ok()
        .and_then(|pdir| lstat_at(&pdir, name).ok().flatten())
        .is_some_and(|st| stat_kind(&st) == Some(FileKind::File) && st.st_size > size)
}

/// Rename `temp` in `at` to `name` in `dir`, or copy it there when they are on different
/// filesystems (`-T` elsewhere).
fn move_across(
    at: BorrowedFd<'_>,
    temp: &[u8],
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> io::Result<()> {
    match rename_into(at, temp, dir, name) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let from = rustix::fs::openat(
                at,
                OsStr::from_bytes(temp),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            super::copy_into(&std::fs::File::from(from), dir, name)?;
            unlink_at(at, temp)
        }
        other => other,
    }
}

/// `rel`'s place in the partial directory `pd` (relative to `rel`'s directory unless
/// absolute).
pub fn partial_path(pd: &Path, rel: &[u8]) -> Vec<u8> {
    let (parent, name) = crate::flist::split_parent(rel);
    let mut p = Vec::new();
    if !pd.is_absolute() && !parent.is_empty() && parent != b"." {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(pd.as_os_str().as_bytes());
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// The partial file an earlier run kept for `rel` in the partial directory `pd`, as a path
/// below `root` (or an absolute one), if there is one (a regular file, not empty): the basis
/// the next transfer of `rel` is built from, as upstream's generator takes it.
pub fn partial_basis(root: &DestRoot, pd: Option<&Path>, rel: &[u8]) -> Option<Vec<u8>> {
    let path = partial_path(pd?, rel);
    let st = rustix::fs::fstat(open_basis(root, &path).ok()?).ok()?;
    (stat_kind(&st) == Some(FileKind::File) && st.st_size > 0).then_some(path)
}

/// Open the old file a new one is built from, read-only and never through a symlink: `path`
/// below `root`, or an absolute one (a partial file in an absolute `--partial-dir`).
pub fn open_basis(root: &DestRoot, path: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if path.starts_with(b"/") {
        return Ok(rustix::fs::open(
            OsStr::from_bytes(path),
            flags,
            Mode::empty(),
        )?);
    }
    let (parent, name) = crate::flist::split_parent(path);
    let dir = root.dir(parent)?;
    Ok(rustix::fs::openat(
        &*dir,
        OsStr::from_bytes(name),
        flags,
        Mode::empty(),
    )?)
}

/// The partial directory `pd` for files in `dir` (relative to it unless absolute), made if
/// missing and `create` (a non-directory in its place removed first, as upstream's
/// `handle_partial_dir` does).
pub fn open_partial_dir(dir: impl AsFd, pd: &Path, create: bool) -> io::Result<OwnedFd> {
    let dir = dir.as_fd();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if pd.is_absolute() {
        if create {
            std::fs::create_dir_all(pd)?;
        }
        return Ok(rustix::fs::open(pd, flags, Mode::empty())?);
    }
    let rel = pd.as_os_str().as_bytes();
    if create {
        ensure_dir_at(dir, rel, 0o700)?;
    }
    open_beneath(dir, rel)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What arrived is kept in place (dated 1970) or in the partial directory, where it is
    /// found as the basis; an empty one is removed.
    #[test]
    fn a_stopped_file_is_kept_where_asked_and_found_again() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        let root = DestRoot::open(t.path()).unwrap();
        let dir = root.dir(b"d").unwrap();
        let stage = |data: &[u8]| {
            let (mut f, staging) = stage(&*dir, b"f", false, 0o600).unwrap();
            std::io::Write::write_all(&mut f, data).unwrap();
            match staging {
                Staging::Named(n) => n,
                other => panic!("{other:?}"),
            }
        };
        let temp = stage(b"abc");
        keep_partial(&*dir, &temp, &*dir, b"f", None).unwrap();
        let md = std::fs::metadata(t.path().join("d/f")).unwrap();
        assert_eq!(std::fs::read(t.path().join("d/f")).unwrap(), b"abc");
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&md), 0);

        let pd = Path::new(".part");
        assert_eq!(partial_basis(&root, Some(pd), b"d/f"), None);
        let temp = stage(b"ab");
        keep_partial(&*dir, &temp, &*dir, b"f", Some(pd)).unwrap();
        assert_eq!(std::fs::read(t.path().join("d/.part/f")).unwrap(), b"ab");
        assert_eq!(
            partial_basis(&root, Some(pd), b"d/f").as_deref(),
            Some(&b"d/.part/f"[..])
        );
        // Issue 19, resume: a shorter one leaves the longer one kept before; a longer one
        // replaces it.
        let temp = stage(b"a");
        keep_partial(&*dir, &temp, &*dir, b"f", Some(pd)).unwrap();
        assert_eq!(std::fs::read(t.path().join("d/.part/f")).unwrap(), b"ab");
        let temp = stage(b"abcd");
        keep_partial(&*dir, &temp, &*dir, b"f", Some(pd)).unwrap();
        assert_eq!(std::fs::read(t.path().join("d/.part/f")).unwrap(), b"abcd");

        let temp = stage(b"");
        keep_partial(&*dir, &temp, &*dir, b"g", None).unwrap();
        assert!(!t.path().join("d/g").exists());
        let names: Vec<_> = std::fs::read_dir(t.path().join("d")).unwrap().collect();
        assert_eq!(names.len(), 2, "f and .part, no temporary left");
    }

    /// Files of one directory are put in place by parallel workers: each may find the
    /// file in the partial directory's place and replace it, and every one must succeed.
    #[test]
    fn workers_racing_to_replace_a_file_in_the_partial_dirs_place_all_succeed() {
        let t = tempfile::tempdir().unwrap();
        for _ in 0..2000 {
            let pd = t.path().join(".~tmp~");
            let _ = std::fs::remove_dir(&pd);
            std::fs::write(&pd, b"in the way").unwrap();
            let start = std::sync::Barrier::new(4);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        let dir = std::fs::File::open(t.path()).unwrap();
                        start.wait();
                        open_partial_dir(&dir, Path::new(".~tmp~"), true).unwrap();
                    });
                }
            });
            assert!(pd.is_dir());
        }
    }
}
