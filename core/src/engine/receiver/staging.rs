//! Issue 15, tempfiles: where a received file waits — `-T/--temp-dir` (staged in another
//! directory, opened once when the receiver starts, and moved or copied into place) and
//! `--delay-updates` (each finished file waits in `.~tmp~` in its own directory; all are
//! renamed into place after the last transfer and the `.~tmp~` directories removed, as
//! upstream's `handle_delayed_updates`); and partial files (`--partial`, `--partial-dir`):
//! kept when the sender goes away, found as the basis next time, removed once the file is
//! complete. Does not write data or set attributes.

#[allow(unused_imports)]
use super::*;

use std::sync::Mutex;

use crate::engine::fsys::StagingDir;

/// The receiver's state for `-T` and `--delay-updates`.
#[derive(Debug, Default)]
pub(super) struct TempState {
    /// `-T`: the directory files are staged in.
    away: Option<StagingDir>,
    /// `--delay-updates`: the files waiting, each with its destination directory.
    delayed: Mutex<Vec<(u32, Arc<OwnedFd>)>>,
}

impl TempState {
    /// Open `-T`'s directory (relative to the destination directory unless absolute), with
    /// rsync's complaints when it is missing or not a directory (exit 1).
    pub(super) fn open(opts: &SyncOptions, root: Option<&DestRoot>) -> Result<Self, SyncError> {
        let away = match (&opts.temp.temp_dir, root) {
            (Some(d), Some(root)) if !opts.inplace && !opts.dry_run => {
                let path = if d.is_relative() {
                    root.path().join(d)
                } else {
                    d.clone()
                };
                let shown = d.display();
                let fd = match std::fs::metadata(&path) {
                    Ok(md) if !md.is_dir() => {
                        return Err(SyncError::Usage(format!(
                            "The temp-dir is not a directory: {shown}"
                        )))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(SyncError::Usage(format!(
                            "The temp-dir does not exist: {shown}"
                        )))
                    }
                    _ => rustix::fs::open(
                        &path,
                        rustix::fs::OFlags::RDONLY
                            | rustix::fs::OFlags::DIRECTORY
                            | rustix::fs::OFlags::CLOEXEC,
                        rustix::fs::Mode::empty(),
                    )
                    .map_err(|e| {
                        SyncError::Usage(format!("Failed to stat temp-dir {shown}: {e}"))
                    })?,
                };
                Some(StagingDir(Arc::new(fd)))
            }
            _ => None,
        };
        Ok(TempState {
            away,
            delayed: Mutex::default(),
        })
    }
}

/// Create the staged file that will become `name` in `dir`: in `-T`'s directory, or beside
/// it (see [`fsys::stage`]).
pub(super) fn stage(
    ctx: &Ctx,
    dir: &OwnedFd,
    name: &[u8],
    new: bool,
    mode: u32,
) -> io::Result<(File, Staging)> {
    match &ctx.temp.away {
        Some(away) => fsys::stage_away(away, dir, name),
        // --partial keeps what arrived if the run stops: a named file, tracked until done.
        None => fsys::stage(dir, name, new && !ctx.opts.partial, mode),
    }
}

/// Put the finished `file` in place as `name` in `dir` (keeping a backup of what it
/// replaces; a partial file kept for it by an earlier run is removed), or with
/// `--delay-updates` in the partial directory (`.~tmp~`) until the end.
pub(super) fn put_in_place(
    ctx: &Ctx,
    e: &FileEntry,
    ndx: u32,
    dir: &Arc<OwnedFd>,
    file: &File,
    staging: &Staging,
    name: &[u8],
) -> Result<(), CopyError> {
    let partial_dir = ctx.opts.temp.partial_dir();
    if let (Some(pd), true) = (partial_dir, ctx.opts.temp.delay_updates) {
        if staging != &Staging::InPlace {
            let waiting = fsys::open_partial_dir(&**dir, pd, true).map_err(|err| {
                failed(
                    "mkdir",
                    &ctx.display(&fsys::partial_path(pd, &e.path)),
                    &err,
                )
            })?;
            fsys::commit_into(&**dir, &waiting, file, staging, name)
                .map_err(|err| failed("rename", &ctx.display(&e.path), &err))?;
            if let Ok(mut d) = ctx.temp.delayed.lock() {
                d.push((ndx, dir.clone()));
            }
            return Ok(());
        }
    }
    // Issue 15, backup: keep what this replaces.
    if staging != &Staging::InPlace {
        backups::before_replace(ctx, dir, name, &e.path)
            .map_err(|err| failed("make_backup", &ctx.display(&e.path), &err))?;
    }
    fsys::commit(&**dir, file, staging, name)
        .map_err(|err| failed("rename", &ctx.display(&e.path), &err))?;
    drop_stale_partial(ctx, dir, name);
    Ok(())
}

/// The partial file kept for `rel` by an earlier run, as a path below the destination, if
/// there is one (see [`fsys::partial_basis`]).
pub(super) fn partial_basis(ctx: &Ctx, rel: &[u8]) -> Option<Vec<u8>> {
    fsys::partial_basis(ctx.root.as_deref()?, ctx.opts.temp.partial_dir(), rel)
}

/// A file that is up to date (or was just put in place) needs no partial file: one kept for
/// it in the partial directory is removed, and the directory with it if empty (as upstream's
/// generator and receiver do).
pub(super) fn drop_stale_partial(ctx: &Ctx, dir: &OwnedFd, name: &[u8]) {
    let Some(pd) = ctx.opts.temp.partial_dir() else {
        return;
    };
    let Ok(waiting) = fsys::open_partial_dir(dir, pd, false) else {
        return;
    };
    if let Ok(Some(st)) = fsys::lstat_at(&waiting, name) {
        if fsys::stat_kind(&st) == Some(FileKind::File) {
            let _ = fsys::unlink_at(&waiting, name);
            remove_partial_dir(dir, pd);
        }
    }
}

/// Remove the relative partial directory `pd` of `dir` if it is empty (an absolute one
/// stays, as upstream leaves it).
fn remove_partial_dir(dir: &OwnedFd, pd: &Path) {
    if pd.is_relative() {
        let _ = fsys::rmdir_at(dir, pd.as_os_str().as_bytes());
    }
}

/// The transfer of `name` in `dir` stopped (the sender went away): with `--partial` what
/// arrived is kept (see [`fsys::keep_partial`]), else thrown away.
pub(super) fn stopped(ctx: &Ctx, dir: &OwnedFd, staging: &Staging, name: &[u8]) {
    let staged_at = match staging {
        Staging::Named(t) => Some((dir, t)),
        Staging::Away(away, t) => Some((&*away.0, t)),
        Staging::Anonymous | Staging::InPlace => None,
    };
    match staged_at {
        Some((at, temp)) if ctx.opts.partial => {
            let _ = fsys::keep_partial(at, temp, dir, name, ctx.opts.temp.partial_dir());
        }
        _ => fsys::discard(dir, staging),
    }
}

/// `--delay-updates`, after the last transfer: rename every waiting file into place in list
/// order (a backup first, with `-b`), then remove the partial directories left empty.
pub(super) fn apply_delayed(ctx: &Ctx) {
    let mut waiting = match ctx.temp.delayed.lock() {
        Ok(mut d) => std::mem::take(&mut *d),
        Err(_) => return,
    };
    let Some(pd) = ctx.opts.temp.partial_dir() else {
        return;
    };
    waiting.sort_by_key(|(ndx, _)| *ndx);
    let mut dirs: Vec<Arc<OwnedFd>> = Vec::new();
    for (ndx, dir) in waiting {
        let e = &ctx.list.entries[ndx as usize];
        let (_, name) = split_parent(&e.path);
        if let Err(err) = backups::before_replace(ctx, &dir, name, &e.path) {
            ctx.fail("make_backup", &e.path, &err);
            continue;
        }
        let moved = fsys::open_partial_dir(&*dir, pd, false)
            .and_then(|waiting| fsys::rename_into(&waiting, name, &*dir, name));
        if let Err(err) = moved {
            ctx.stats.errors.fetch_add(1, Relaxed);
            ctx.warn(format!(
                "rename failed for \"{}\" (from {}): {}",
                ctx.display(&e.path).display(),
                String::from_utf8_lossy(&fsys::partial_path(pd, &e.path)),
                os_error(&err)
            ));
        }
        if !dirs.iter().any(|d| Arc::ptr_eq(d, &dir)) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        remove_partial_dir(&dir, pd);
    }
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;

    fn transfer(ndx: u32) -> Transfer {
        let mut itemize = Itemize::new('>', FileKind::File);
        itemize.new = true;
        Transfer {
            ndx,
            itemize,
            old_perms: None,
        }
    }

    /// With `-T` the file is written in the temp directory and ends in place, nothing left
    /// behind in either.
    #[test]
    fn a_file_staged_away_ends_in_place() {
        let dest = tempfile::tempdir().unwrap();
        let away = tempfile::tempdir().unwrap();
        let e = entry("f", FileKind::File, 3, 0o644);
        let mut opts = SyncOptions::default();
        opts.temp.temp_dir = Some(away.path().to_path_buf());
        let (mut c, _) = ctx(dest.path(), vec![e.clone()], opts);
        c.temp = TempState::open(&c.opts, c.root.as_deref()).unwrap();
        let t = transfer(0);
        let (d, mut file, staging) = open_dest(&c, &e, &t).map_err(|_| "open").unwrap();
        assert!(matches!(staging, Staging::Away(..)), "{staging:?}");
        assert_eq!(names(away.path()).len(), 1, "staged in the temp dir");
        file.write_all(b"new").unwrap();
        finish_file(&c, &e, &t, &d, &file, &staging, b"f")
            .map_err(|_| "finish")
            .unwrap();
        assert_eq!(std::fs::read(dest.path().join("f")).unwrap(), b"new");
        assert!(names(away.path()).is_empty());
        assert_eq!(names(dest.path()), ["f"]);
    }

    /// A missing temp directory stops the run as rsync does.
    #[test]
    fn a_missing_temp_dir_is_refused() {
        let dest = tempfile::tempdir().unwrap();
        let mut opts = SyncOptions::default();
        opts.temp.temp_dir = Some("nope".into());
        let root = DestRoot::open(dest.path()).unwrap();
        let err = TempState::open(&opts, Some(&root)).unwrap_err();
        assert!(
            err.to_string()
                .contains("The temp-dir does not exist: nope"),
            "{err}"
        );
    }

    /// With `--delay-updates` finished files wait in `.~tmp~` until the end, then all move.
    #[test]
    fn delayed_files_wait_then_move_together() {
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir(dest.path().join("d")).unwrap();
        std::fs::write(dest.path().join("d/g"), b"old").unwrap();
        let entries = vec![
            entry("f", FileKind::File, 1, 0o644),
            entry("d/g", FileKind::File, 1, 0o644),
        ];
        let mut opts = SyncOptions::default();
        opts.temp.delay_updates = true;
        let (c, _) = ctx(dest.path(), entries.clone(), opts);
        for (ndx, e) in entries.iter().enumerate() {
            let t = transfer(ndx as u32);
            let (d, mut file, staging) = open_dest(&c, e, &t).map_err(|_| "open").unwrap();
            file.write_all(b"n").unwrap();
            let (_, name) = split_parent(&e.path);
            finish_file(&c, e, &t, &d, &file, &staging, name)
                .map_err(|_| "finish")
                .unwrap();
        }
        assert_eq!(names(dest.path()), [".~tmp~", "d"]);
        assert_eq!(std::fs::read(dest.path().join("d/g")).unwrap(), b"old");
        apply_delayed(&c);
        assert_eq!(names(dest.path()), ["d", "f"]);
        assert_eq!(names(&dest.path().join("d")), ["g"]);
        assert_eq!(std::fs::read(dest.path().join("d/g")).unwrap(), b"n");
    }
}
