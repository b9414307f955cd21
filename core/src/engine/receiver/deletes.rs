//! `--delete`: what the destination has and the list does not, in every directory whose whole
//! contents were listed; and the extraneous files kept as old versions, deleted after the
//! transfers. Reports every deletion as rsync does. Does not decide which directories are
//! complete (the list exchange does).

#[allow(unused_imports)]
use super::*;
use crate::engine::filter::FilterRules;

/// The times directories had before `--delete` emptied them (rsync itemizes a directory
/// before deleting in it, and sets its time back afterwards).
pub(super) type TimesBefore = HashMap<Vec<u8>, (i64, u32)>;

/// `--delete`: remove what the destination has and the list does not, in every listed
/// directory that already existed. Returns the times of the directories it changed.
pub(super) fn delete_extraneous(ctx: &Ctx, deferred: &HashSet<Vec<u8>>) -> TimesBefore {
    delete_extraneous_in_round(ctx, deferred, &mut DirRules::new())
}

/// Issue 18: each directory's filter rules (with its per-directory merge files), kept from
/// round to round of a streamed list: a round's directories hang from directories listed in
/// it or in an earlier round.
pub(super) type DirRules = HashMap<Vec<u8>, Arc<FilterRules>>;

/// [`delete_extraneous`] for a round of a streamed list: the rules of the directories of
/// earlier rounds are in `known`, and this round's join them.
pub(super) fn delete_extraneous_in_round(
    ctx: &Ctx,
    deferred: &HashSet<Vec<u8>>,
    known: &mut DirRules,
) -> TimesBefore {
    let mut before = TimesBefore::new();
    let Some(root) = &ctx.root else {
        return before;
    };
    let listed: HashSet<&[u8]> = ctx.list.entries.iter().map(|e| e.path.as_slice()).collect();
    let complete = |p: &[u8]| ctx.complete.as_ref().is_none_or(|c| c.contains(p));
    // Issue 15, filters: the receiver reads per-directory merge files too (rsync's
    // `delete_in_dir` calls `change_local_filter_dir`).
    let dir_filters = dir_filters(ctx, root.path(), known);
    // `-x`: as rsync's `delete_in_dir`, nothing is deleted in a directory on another file
    // system than the destination's top, and no mount point is deleted.
    let top_dev = (ctx.opts.select.one_file_system > 0)
        .then(|| root.dir(b".").ok())
        .flatten()
        .and_then(|d| rustix::fs::fstat(d.as_fd()).ok())
        .map(|st| st.st_dev);
    // A directory whose contents were not listed (a mount point the sender left out with
    // `-x`) keeps what the destination has inside it.
    for e in ctx
        .list
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::Dir && !e.no_content && complete(&e.path))
    {
        let d = match root.dir(&e.path) {
            Ok(d) => d,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => continue, // not a directory in the destination yet
        };
        if let Some(top) = top_dev {
            if rustix::fs::fstat(d.as_fd()).map_or(true, |st| st.st_dev != top) {
                continue;
            }
        }
        let mut names = match fsys::list_dir(&*d) {
            Ok(n) => n,
            Err(err) => {
                ctx.fail("opendir", &e.path, &err);
                continue;
            }
        };
        // rsync goes through a directory last name first (`delete_in_dir`).
        names.sort();
        for name in names.into_iter().rev() {
            let rel = if e.is_root() {
                name.clone()
            } else {
                [e.path.as_slice(), b"/", &name].concat()
            };
            if listed.contains(rel.as_slice()) || deferred.contains(&rel) {
                continue;
            }
            let st = fsys::lstat_at(&*d, &name).ok().flatten();
            let kind = st.as_ref().and_then(fsys::stat_kind);
            let is_dir = kind == Some(FileKind::Dir);
            if is_dir && top_dev.is_some_and(|top| st.as_ref().is_some_and(|s| s.st_dev != top)) {
                // rsync: "cannot delete mount point".
                continue;
            }
            let filters = dir_filters
                .get(e.path.as_slice())
                .map_or(&ctx.opts.filters, |f| &**f);
            if filters.protected_from_delete(&rel, is_dir, ctx.opts.delete_excluded) {
                continue;
            }
            if is_dir {
                root.forget_dirs();
            }
            if !before.contains_key(e.path.as_slice()) {
                if let Ok(st) = rustix::fs::fstat(d.as_fd()) {
                    before.insert(e.path.to_vec(), (st.st_mtime, st.st_mtime_nsec as u32));
                }
            }
            remove_reporting_in(ctx, &d, &name, &rel, kind, filters);
        }
    }
    before
}

/// Issue 15, select: `--delete-missing-args`: delete the destination's entry of each missing
/// source argument the sender named, as rsync's generator does for a mode-0 entry
/// (`delete_item`): a directory with its contents only under `--delete` or `--force`, else
/// only when empty ("cannot delete non-empty directory" otherwise). Names the filters exclude
/// stay.
pub(super) fn delete_missing(ctx: &Ctx, missing: &[Vec<u8>]) {
    let Some(root) = &ctx.root else {
        return;
    };
    // In list order, as the generator meets them (each a non-directory entry).
    let mut missing: Vec<&Vec<u8>> = missing.iter().collect();
    missing.sort_by(|a, b| crate::flist::path_order(a, false, b, false));
    missing.dedup();
    for rel in missing {
        if ctx.opts.filters.protected_for_receiver(rel, false) {
            continue;
        }
        let (parent, name) = crate::flist::split_parent(rel);
        let Ok(d) = root.dir(parent) else {
            continue;
        };
        let Some(kind) = fsys::lstat_at(&*d, name)
            .ok()
            .flatten()
            .and_then(|st| fsys::stat_kind(&st))
        else {
            continue;
        };
        if kind == FileKind::Dir {
            root.forget_dirs();
        }
        if kind != FileKind::Dir || ctx.opts.delete || ctx.opts.write.force {
            remove_reporting(ctx, &d, name, rel, Some(kind));
            continue;
        }
        // rsync's `delete_item` without DEL_RECURSE: only an empty directory goes.
        if at_delete_limit(ctx) {
            continue;
        }
        if !ctx.opts.dry_run {
            match fsys::rmdir_at(&*d, name) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                    not_empty(ctx, rel);
                    continue;
                }
                Err(e) => {
                    ctx.fail("delete", rel, &e);
                    continue;
                }
            }
        }
        deleted(ctx, rel, Some(kind));
    }
}

/// Count and report one deletion, as rsync's `log_delete` does.
fn deleted(ctx: &Ctx, rel: &[u8], kind: Option<FileKind>) {
    if let Some(k) = kind {
        ctx.stats.deleted.add(k);
    }
    ctx.sink.event(Event::Deleted {
        path: rel.to_vec(),
        is_dir: kind == Some(FileKind::Dir),
    });
}

/// Issue 15, filters: each listed directory's rules with the per-directory merge files of
/// the destination read in (empty when the rules have none); a directory whose parent is not
/// listed takes the parent's from `known` (an earlier round's, issue 18), which gets these.
fn dir_filters(ctx: &Ctx, root: &Path, known: &mut DirRules) -> DirRules {
    let mut out = DirRules::new();
    if !ctx.opts.filters.varies_by_dir() {
        return out;
    }
    for e in ctx.list.entries.iter().filter(|e| e.kind == FileKind::Dir) {
        let abs = if e.is_root() {
            root.to_path_buf()
        } else {
            root.join(std::ffi::OsStr::from_bytes(&e.path))
        };
        let parent: &[u8] = match e.path.iter().rposition(|&b| b == b'/') {
            Some(i) => &e.path[..i],
            None if e.is_root() => b"",
            None => b".",
        };
        let entered = match out.get(parent).or_else(|| known.get(parent)) {
            Some(p) => p.enter_dir(&e.path, &mut |name| {
                crate::engine::scan::read_merge_file(&abs.join(name))
            }),
            None => ctx.opts.filters.enter_first_dir(
                &e.path,
                &crate::engine::scan::absolute(&abs),
                &crate::engine::scan::absolute(root),
                &mut |p| crate::engine::scan::read_merge_file(p),
            ),
        };
        match entered {
            Ok(Some(f)) => {
                out.insert(e.path.to_vec(), Arc::new(f));
            }
            Ok(None) => {}
            Err(err) => ctx.warn(format!("{err} in {}", abs.display())),
        }
    }
    known.extend(out.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// `--delete` of the extraneous files kept as possible old versions of new files: now that the
/// transfers are done.
pub(super) fn delete_deferred(ctx: &Ctx, deferred: &HashSet<Vec<u8>>) {
    let mut paths: Vec<&Vec<u8>> = deferred.iter().collect();
    paths.sort();
    for rel in paths {
        let (parent, name) = split_parent(rel);
        let Ok(Some(d)) = ctx.dir(parent) else {
            continue;
        };
        let kind = fsys::lstat_at(&*d, name)
            .ok()
            .flatten()
            .and_then(|st| fsys::stat_kind(&st));
        if kind == Some(FileKind::File) {
            remove_reporting(ctx, &d, name, rel, kind);
        }
    }
}

/// `--max-delete`: whether the limit is reached (the skipped deletion is counted).
fn at_delete_limit(ctx: &Ctx) -> bool {
    let Some(max) = ctx.opts.dest.max_delete else {
        return false;
    };
    if ctx.stats.deleted.total() < max {
        return false;
    }
    ctx.stats.skipped_deletes.fetch_add(1, Relaxed);
    true
}

/// `--max-delete`: rsync's warning once the deletions are over, if the limit stopped some.
pub(super) fn warn_skipped_deletes(ctx: &Ctx) {
    let skipped = ctx.stats.skipped_deletes.load(Relaxed);
    if ctx.opts.dest.max_delete.is_some() && skipped > 0 {
        ctx.warn(format!(
            "Deletions stopped due to --max-delete limit ({skipped} skipped)"
        ));
    }
}

/// Delete `name` (at `rel`) from `dir`, contents first, reporting every entry as rsync does;
/// in a dry run only report.
pub(super) fn remove_reporting(
    ctx: &Ctx,
    dir: &OwnedFd,
    name: &[u8],
    rel: &[u8],
    kind: Option<FileKind>,
) -> bool {
    remove_reporting_in(ctx, dir, name, rel, kind, &ctx.opts.filters)
}

/// [`remove_reporting`] under `filters`, the rules of the directory holding `name`.
fn remove_reporting_in(
    ctx: &Ctx,
    dir: &OwnedFd,
    name: &[u8],
    rel: &[u8],
    kind: Option<FileKind>,
    filters: &FilterRules,
) -> bool {
    remove_reporting_inner(ctx, dir, name, rel, kind, true, filters)
}

/// rsync's report of a directory it keeps because something in it stays.
fn not_empty(ctx: &Ctx, rel: &[u8]) {
    ctx.sink.event(Event::Info {
        message: format!(
            "cannot delete non-empty directory: {}",
            String::from_utf8_lossy(rel)
        ),
    });
}

/// Issue 15, filters: the rules for the contents of `rel`, a directory being deleted, with its
/// per-directory merge files read (upstream's `delete_dir_contents` pushes them too).
fn contents_filters(ctx: &Ctx, rel: &[u8], filters: &FilterRules) -> Option<FilterRules> {
    let root = ctx.root.as_ref()?;
    let abs = root.path().join(std::ffi::OsStr::from_bytes(rel));
    filters
        .enter_dir(rel, &mut |name| {
            crate::engine::scan::read_merge_file(&abs.join(name))
        })
        .ok()
        .flatten()
}

/// As [`remove_reporting`]; `report_self` false reports only the contents (rsync does not
/// list a directory it replaces with a file, only what was in it).
pub(super) fn remove_reporting_inner(
    ctx: &Ctx,
    dir: &OwnedFd,
    name: &[u8],
    rel: &[u8],
    kind: Option<FileKind>,
    report_self: bool,
    filters: &FilterRules,
) -> bool {
    let mut ok = true;
    // Issue 15, filters: what the rules protect (perishable ones aside) keeps its directory.
    let mut protected = false;
    if kind == Some(FileKind::Dir) {
        match fsys::open_subdir(dir, name) {
            Ok(sub) => {
                let inner = contents_filters(ctx, rel, filters);
                let inner = inner.as_ref().unwrap_or(filters);
                let mut children = fsys::list_dir(&sub).unwrap_or_default();
                children.sort();
                for child in children.into_iter().rev() {
                    let ck = fsys::lstat_at(&sub, &child)
                        .ok()
                        .flatten()
                        .and_then(|st| fsys::stat_kind(&st));
                    let crel = [rel, b"/", &child].concat();
                    let is_dir = ck == Some(FileKind::Dir);
                    if inner.protected_in_deleted_dir(&crel, is_dir, ctx.opts.delete_excluded) {
                        protected = true;
                        continue;
                    }
                    let removed = remove_reporting_in(ctx, &sub, &child, &crel, ck, inner);
                    if !removed && ck == Some(FileKind::Dir) && !at_delete_limit(ctx) {
                        // rsync then tries the rmdir anyway (`delete_item`), which says so
                        // again; at the --max-delete limit it counts a skipped deletion.
                        not_empty(ctx, &crel);
                    }
                    ok &= removed;
                }
            }
            Err(err) => {
                ctx.fail("opendir", rel, &err);
                return false;
            }
        }
    }
    if kind == Some(FileKind::Dir) && (protected || !ok) {
        // Some contents stayed (protected, the --max-delete limit, a failure): the directory
        // stays too, as rsync's `delete_dir_contents` reports.
        not_empty(ctx, rel);
        return false;
    }
    if report_self && at_delete_limit(ctx) {
        return false;
    }
    if !ctx.opts.dry_run {
        let r = if kind == Some(FileKind::Dir) {
            fsys::rmdir_at(dir, name)
        } else {
            backups::remove_file(ctx, dir, name, rel)
        };
        if let Err(err) = r {
            let full = matches!(
                err.raw_os_error(),
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
            );
            if kind == Some(FileKind::Dir) && full {
                // What `-b` made of its contents (`name~`), or what came meanwhile, keeps it:
                // said, not an error (rsync's DR_NOT_EMPTY), and not said again above.
                not_empty(ctx, rel);
                return true;
            }
            ctx.fail("delete", rel, &err);
            return false;
        }
    }
    if !report_self {
        return ok;
    }
    deleted(ctx, rel, kind);
    ok
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;

    /// `--delete` removes what the list does not name, contents first, only in directories
    /// whose whole contents were listed, and never a protected or deferred path.
    #[test]
    fn only_extraneous_entries_of_complete_directories_go() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for p in [
            "keep",
            "gone",
            "sub/keep",
            "sub/gone",
            "unlisted/x",
            "old/a/b",
        ] {
            let f = d.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::write(d.join("basis"), b"kept for a new file").unwrap();
        let entries = vec![
            entry(".", FileKind::Dir, 0, 0o755),
            entry("keep", FileKind::File, 1, 0o644),
            entry("sub", FileKind::Dir, 0, 0o755),
            entry("sub/keep", FileKind::File, 1, 0o644),
            entry("unlisted", FileKind::Dir, 0, 0o755),
        ];
        let mut opts = SyncOptions::archive();
        opts.delete = true;
        let (mut c, kept) = ctx(d, entries, opts);
        // "unlisted" was not listed whole (its subtree matched in a tree exchange).
        c.complete = Some([b".".to_vec(), b"sub".to_vec()].into());
        let deferred: HashSet<Vec<u8>> = [b"basis".to_vec()].into();
        let _ = delete_extraneous(&c, &deferred);
        assert!(d.join("keep").exists() && d.join("sub/keep").exists());
        assert!(!d.join("gone").exists() && !d.join("sub/gone").exists());
        assert!(!d.join("old").exists(), "a whole extraneous directory");
        assert!(
            d.join("unlisted/x").exists(),
            "inside a directory never listed whole"
        );
        assert!(
            d.join("basis").exists(),
            "deferred until after the transfers"
        );
        let lines = kept.lines();
        assert!(lines.contains(&"*deleting old/a/b".to_owned()), "{lines:?}");
        // Contents are reported before their directory.
        let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
        assert!(pos("*deleting old/a/b") < pos("*deleting old/a"));
        delete_deferred(&c, &deferred);
        assert!(!d.join("basis").exists());
    }
}
