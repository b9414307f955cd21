//! Issue 15, backup: the receiver keeps what it replaces or deletes (`-b`, `--suffix`,
//! `--backup-dir`), as upstream's backup.c does: a file about to be replaced is hard-linked to
//! its backup name, a deleted one renamed there; with `--backup-dir` the backup goes to the
//! same relative place under that directory (made as needed, its new directories taking the
//! permissions of the destination's). Does not decide what is replaced or deleted.

#[allow(unused_imports)]
use super::*;

use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, Mode as FsMode};

/// The directory a backup of `rel` goes into and the backup's name there: `None` for the
/// entry's own directory (no `--backup-dir`).
fn place(ctx: &Ctx, rel: &[u8]) -> io::Result<(Option<OwnedFd>, Vec<u8>)> {
    let b = &ctx.opts.backup;
    let (parent, name) = split_parent(rel);
    let bname = b.backup_name(name);
    let Some(bdir) = &b.dir else {
        return Ok((None, bname));
    };
    let base = match &ctx.root {
        Some(root) if bdir.is_relative() => root.path().join(bdir),
        _ => bdir.clone(),
    };
    std::fs::create_dir_all(&base)?;
    let mut fd = rustix::fs::open(
        &base,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        FsMode::empty(),
    )?;
    if parent.is_empty() || parent == b"." {
        return Ok((Some(fd), bname));
    }
    let mut sofar: Vec<u8> = Vec::new();
    for comp in parent.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
        if !sofar.is_empty() {
            sofar.push(b'/');
        }
        sofar.extend_from_slice(comp);
        if fsys::ensure_dir_at(&fd, comp, 0o777)? {
            // rsync gives a new backup directory the mode of the destination's, which its
            // generator has already given the listed mode (`-p`); arsync sets directories'
            // modes at the end, so a listed one's is taken from the list.
            let mode = match ctx.opts.perms.then(|| listed_dir(ctx, &sofar)).flatten() {
                Some(e) => Some(ctx.perms(e) & 0o7777),
                None => ctx
                    .dir(&sofar)
                    .ok()
                    .flatten()
                    .and_then(|d| rustix::fs::fstat(d.as_fd()).ok())
                    .map(|st| st.st_mode & 0o7777),
            };
            if let Some(mode) = mode {
                let _ = rustix::fs::chmodat(
                    &fd,
                    std::ffi::OsStr::from_bytes(comp),
                    FsMode::from_raw_mode(mode),
                    AtFlags::empty(),
                );
            }
        }
        fd = fsys::open_subdir(&fd, comp)?;
    }
    Ok((Some(fd), bname))
}

/// The list's directory at `rel`, if the list (or this round of it, sorted as rsync sorts)
/// has one.
fn listed_dir<'a>(ctx: &'a Ctx, rel: &[u8]) -> Option<&'a FileEntry> {
    let entries = &ctx.list.entries;
    entries
        .binary_search_by(|e| crate::flist::path_order(&e.path, e.kind == FileKind::Dir, rel, true))
        .ok()
        .map(|i| &entries[i])
        .filter(|e| e.kind == FileKind::Dir)
}

/// Remove whatever is at `name` in `dir` (a directory with its contents).
fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let kind = fsys::lstat_at(dir, name)?
        .as_ref()
        .and_then(fsys::stat_kind);
    if kind == Some(FileKind::Dir) {
        let sub = fsys::open_subdir(dir, name)?;
        for child in fsys::list_dir(&sub)? {
            remove_all(sub.as_fd(), &child)?;
        }
        return fsys::rmdir_at(dir, name);
    }
    match fsys::unlink_at(dir, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Keep the item `name` of `dir` (at `rel`) as a backup: moved there when `rename` (it is
/// being deleted), else hard-linked (it is about to be replaced). Nothing there: nothing to
/// keep.
fn make_backup(ctx: &Ctx, dir: &OwnedFd, name: &[u8], rel: &[u8], rename: bool) -> io::Result<()> {
    if fsys::lstat_at(dir, name)?.is_none() {
        return Ok(());
    }
    let (bdir, bname) = place(ctx, rel)?;
    let bdir = bdir.as_ref().map_or(dir.as_fd(), |d| d.as_fd());
    let target = std::ffi::OsStr::from_bytes(&bname);
    let source = std::ffi::OsStr::from_bytes(name);
    let attempt = || -> io::Result<()> {
        if rename {
            rustix::fs::renameat(dir, source, bdir, target)?;
        } else {
            rustix::fs::linkat(dir, source, bdir, target, AtFlags::empty())?;
        }
        Ok(())
    };
    match attempt() {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EEXIST) | Some(libc::EISDIR) | Some(libc::ENOTEMPTY)
            ) =>
        {
            // An old backup in the way: it goes (rsync deletes it, recursively).
            remove_all(bdir, &bname)?;
            attempt()
        }
        r => r,
    }
}

/// Before `name` in `dir` (at `rel`) is replaced by a new item: keep the old one, unless it
/// is a directory (its contents are kept one by one as it is removed). Regular files are
/// hard-linked (the rename of the new one then replaces the name), others moved.
pub(super) fn before_replace(ctx: &Ctx, dir: &OwnedFd, name: &[u8], rel: &[u8]) -> io::Result<()> {
    if !ctx.opts.backup.make_backups || ctx.opts.dry_run {
        return Ok(());
    }
    let kind = fsys::lstat_at(dir, name)?
        .as_ref()
        .and_then(fsys::stat_kind);
    match kind {
        None | Some(FileKind::Dir) => Ok(()),
        Some(_) => make_backup(ctx, dir, name, rel, false),
    }
}

/// Delete the non-directory `name` in `dir` (at `rel`): moved to its backup when backups are
/// made (not an old backup itself, without `--backup-dir`), else unlinked.
pub(super) fn remove_file(ctx: &Ctx, dir: &OwnedFd, name: &[u8], rel: &[u8]) -> io::Result<()> {
    let b = &ctx.opts.backup;
    if b.make_backups && (b.dir.is_some() || !b.is_backup_name(name)) {
        return make_backup(ctx, dir, name, rel, true);
    }
    fsys::unlink_at(dir, name)
}
