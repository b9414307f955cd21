//! The generator pass: everything that needs no file data — directories, symlinks, devices and
//! specials made or refreshed, the quick check, attributes fixed in place — and the list of
//! files whose data must come. Does not delete (see `deletes`) or write file data.

#[allow(unused_imports)]
use super::*;

/// The generator pass: everything that needs no file data, and the list of what does.
/// `times_before`: directories `--delete` changed, with the times they had before.
/// A directory the generator could not make, as rsync's generator has it: itemized as new
/// first, the error, and nothing below it tried (`not_created`).
fn failed_mkdir<'a>(
    ctx: &Ctx,
    e: &'a FileEntry,
    err: &io::Error,
    not_created: &mut HashSet<&'a [u8]>,
) {
    let mut it = Itemize::new('c', e.kind);
    it.new = true;
    ctx.item(e, it);
    ctx.fail("mkdir", &e.path, err);
    ctx.warn("*** Skipping any contents from this failed directory ***".into());
    not_created.insert(&e.path);
}

pub(super) fn generate(ctx: &Ctx, times_before: &TimesBefore) -> Plan {
    let mut plan = Plan::default();
    let dry = ctx.opts.dry_run;
    // Directories we created in this run (or that do not exist in a dry run): nothing below
    // them exists, so their children need no lstat.
    let mut new_dirs: HashSet<&[u8]> = HashSet::new();
    // `--existing`: directories not created, so nothing below them is made either.
    let mut not_created: HashSet<&[u8]> = HashSet::new();
    let leaders = ctx.list.hardlink_leaders();
    for (i, e) in ctx.list.entries.iter().enumerate() {
        crate::liveness::bump();
        let ndx = i as u32;
        if ignored_unsafe_symlink(ctx, e) {
            continue;
        }
        // A kind the options leave out (a symlink without -l…) is listed only so that
        // `--delete` spares its name; the sender said "skipping non-regular file".
        if !ctx.opts.wants_kind(e.kind) {
            continue;
        }
        let (parent, name) = split_parent(&e.path);
        if !e.is_root() && not_created.contains(parent) {
            if e.kind == FileKind::Dir {
                not_created.insert(&e.path);
            }
            continue;
        }
        let parent_is_new = ctx.root.is_none() || (!e.is_root() && new_dirs.contains(parent));
        let dir = if parent_is_new {
            None
        } else {
            match ctx.dir(parent) {
                Ok(d) => d,
                // What stands at the parent is not a directory (a file `--ignore-existing`
                // kept) or cannot be opened: rsync's generator fails to stat the entry, or,
                // for a directory, to make it.
                Err(err) if e.kind == FileKind::Dir => {
                    failed_mkdir(ctx, e, &err, &mut not_created);
                    continue;
                }
                Err(err) => {
                    ctx.fail("stat", &e.path, &err);
                    continue;
                }
            }
        };
        let existing: Option<Stat> = match (&dir, e.is_root()) {
            (None, _) => None,
            (Some(_), true) if ctx.root_created => None,
            (Some(d), true) => rustix::fs::fstat(d.as_fd()).ok(),
            (Some(d), false) => match fsys::lstat_at(d, name) {
                Ok(s) => s,
                Err(err) => {
                    ctx.fail("lstat", &e.path, &err);
                    continue;
                }
            },
        };
        let mut existing_kind = existing.as_ref().and_then(fsys::stat_kind);
        let existing = match kept_dirlink(ctx, e, dir.as_deref(), name, existing_kind) {
            Some(st) => {
                existing_kind = Some(FileKind::Dir);
                Some(st)
            }
            None => existing,
        };
        // `--existing` creates nothing, directories included (what was under a missing
        // directory is missing too).
        if ctx.opts.existing && existing.is_none() && !e.is_root() {
            if e.kind == FileKind::Dir {
                not_created.insert(&e.path);
            }
            continue;
        }
        match e.kind {
            FileKind::Dir => {
                if existing_kind == Some(FileKind::Dir) {
                    plan.dir_fixes.push((ndx, false));
                    if let Some(st) = &existing {
                        let mut st = *st;
                        if let Some(&(s, ns)) = times_before.get(e.path.as_slice()) {
                            (st.st_mtime, st.st_mtime_nsec) = (s, ns as _);
                        }
                        let it = ctx.attr_itemize(
                            &st,
                            &ctx.meta_plan(e, false),
                            Itemize::new('.', e.kind),
                        );
                        // Issue 15, acls: set with the directory's other attributes.
                        let it = acl_itemize(ctx, e, dir.as_deref(), name, it);
                        if it.any_change() {
                            ctx.item(e, it);
                        }
                    }
                    continue;
                }
                // `--ignore-existing` keeps a non-directory in the way too (rsync's
                // generator; what the directory would hold then fails to go there).
                if existing.is_some() && ctx.opts.ignore_existing {
                    continue;
                }
                plan.dir_fixes.push((ndx, true));
                let mut it = Itemize::new('c', e.kind);
                it.new = true;
                if e.is_root() {
                    // The destination directory itself was created before the generator ran.
                    ctx.stats.created.add(e.kind);
                    ctx.item(e, it);
                    continue;
                }
                if !dry {
                    if let Some(d) = &dir {
                        if existing.is_some() {
                            // Issue 15, backup: a file in the way is kept as a backup.
                            let rm = if ctx.opts.backup.make_backups {
                                backups::remove_file(ctx, d, name, &e.path)
                            } else {
                                fsys::unlink_at(d, name)
                            };
                            if let Err(err) = rm {
                                ctx.fail("delete", &e.path, &err);
                                continue;
                            }
                        }
                        if let Err(err) = fsys::mkdir_at(d, name, 0o700 | (ctx.perms(e) & 0o777)) {
                            failed_mkdir(ctx, e, &err, &mut not_created);
                            continue;
                        }
                    } else if let Err(err) = ctx.dir(parent).and_then(|d| {
                        d.map_or(Ok(()), |d| {
                            fsys::mkdir_at(d, name, 0o700 | (ctx.perms(e) & 0o777))
                        })
                    }) {
                        failed_mkdir(ctx, e, &err, &mut not_created);
                        continue;
                    }
                }
                new_dirs.insert(&e.path);
                ctx.stats.created.add(e.kind);
                // Issue 15, dests: a directory found in another tree is itemized against it.
                match alt_dests::new_dir_item(ctx, e) {
                    Some(Some(alt)) => ctx.item(e, alt),
                    Some(None) => {}
                    None => ctx.item(e, it),
                }
            }
            FileKind::File => {
                // Issue 15, select: `--max-size`, `--min-size`.
                if ctx.opts.select.size_skipped(e.size) {
                    continue;
                }
                if e.hardlink_group() != 0 && leaders.get(&e.hardlink_group()) != Some(&i) {
                    plan.followers.push(ndx);
                    continue;
                }
                if existing.is_some() && ctx.opts.ignore_existing {
                    continue;
                }
                // Issue 15, dests: another tree may have it.
                let mut against = None;
                if matches!(existing_kind, None | Some(FileKind::File)) {
                    match alt_dests::try_dests(ctx, e, dir.as_deref(), name, existing.as_ref()) {
                        alt_dests::DestsOutcome::Settled => {
                            ctx.synced(ndx);
                            continue;
                        }
                        alt_dests::DestsOutcome::NotFound => {}
                        alt_dests::DestsOutcome::Against(st) => against = Some(st),
                    }
                }
                let mut it = Itemize::new('>', e.kind);
                match (&existing, existing_kind) {
                    // Missing here, in another tree failing the quick check: itemized (and,
                    // without -p, given its mode) as an update of that file, as rsync does.
                    (None, _) if against.is_some() => {
                        if let Some(st) = &against {
                            it = ctx.attr_itemize(st, &ctx.meta_plan(e, false), it);
                            it.size = st.st_size as u64 != e.size;
                            it.checksum = ctx.opts.checksum;
                        }
                    }
                    (Some(st), Some(FileKind::File)) => {
                        if ctx.opts.dest.update
                            && newer_on_receiver(ctx.opts.dest.modify_window, e.mtime, st.st_mtime)
                        {
                            continue;
                        }
                        if up_to_date(ctx, e, st, dir.as_deref(), name) {
                            // Issue 15, tempfiles: a partial file left for it is not needed.
                            if let (Some(d), false) = (&dir, dry) {
                                staging::drop_stale_partial(ctx, d, name);
                            }
                            let mut plan_meta = ctx.meta_plan(e, false);
                            ctx.executability(e, st.st_mode, &mut plan_meta);
                            let it = ctx.attr_itemize(st, &plan_meta, Itemize::new('.', e.kind));
                            let mut it = acl_itemize(ctx, e, dir.as_deref(), name, it);
                            // rsync sets a file's attributes before itemizing it when the
                            // quick check passes, and setting its ACL records the new mode:
                            // `a` without `p` then (the mode is set all the same), both in a
                            // dry run.
                            it.perms &= !it.acls || dry;
                            if it.any_change() {
                                if !dry {
                                    if let Some(d) = &dir {
                                        if let Err(err) =
                                            fsys::apply_meta_at(d, name, &plan_meta, false)
                                        {
                                            ctx.fail("set attributes", &e.path, &err);
                                        }
                                        // Issue 15, acls: after the mode, as rsync's set_acl.
                                        if it.acls {
                                            if let Err(err) = acl::apply_at(d, name, e) {
                                                ctx.fail("set ACLs on", &e.path, &err);
                                            }
                                        }
                                    }
                                }
                                ctx.item(e, it);
                            }
                            ctx.synced(ndx);
                            continue;
                        }
                        // Issue 15, data: `--append` leaves files as long or longer here
                        // (after the quick check, as rsync's: an up-to-date one still gets
                        // its attributes).
                        if ctx.opts.write.append > 0 && st.st_size as u64 >= e.size {
                            continue;
                        }
                        let mut plan_meta = ctx.meta_plan(e, false);
                        ctx.executability(e, st.st_mode, &mut plan_meta);
                        it = ctx.attr_itemize(st, &plan_meta, it);
                        it = acl_itemize(ctx, e, dir.as_deref(), name, it);
                        it.size = st.st_size as u64 != e.size;
                        it.checksum = ctx.opts.checksum;
                    }
                    (Some(_), Some(FileKind::Dir)) => {
                        if !dry && !remove_dir_in_the_way(ctx, dir.as_deref(), name, &e.path) {
                            continue;
                        }
                        it.new = true;
                    }
                    _ => it.new = true,
                }
                plan.transfers.push(Queued::new(&Transfer {
                    ndx,
                    itemize: it,
                    old_perms: existing
                        .as_ref()
                        .or(against.as_ref())
                        .filter(|_| !it.new)
                        .map(|st| st.st_mode & 0o7777),
                }));
            }
            _ => {
                // `--ignore-existing`: whatever is there stays (a symlink, a device…).
                if existing.is_some() && ctx.opts.ignore_existing {
                    continue;
                }
                let same = node_matches(e, dir.as_deref(), name, existing.as_ref());
                if make_node(
                    ctx,
                    e,
                    dir.as_deref(),
                    name,
                    existing.as_ref(),
                    existing_kind,
                    same,
                ) {
                    ctx.synced(ndx);
                }
            }
        }
    }
    plan
}

/// Issue 15, acls: with `-A`, the `a` column for existing entry `name` of `dir` (an ACL that
/// cannot be read counts as different, so it is set).
fn acl_itemize(
    ctx: &Ctx,
    e: &FileEntry,
    dir: Option<&OwnedFd>,
    name: &[u8],
    mut it: Itemize,
) -> Itemize {
    if let (true, Some(d)) = (ctx.opts.acls, dir) {
        it.acls = acl::differ_at(d, name, e).unwrap_or(true);
    }
    it
}

/// Issue 15, acls: with `-A`, a device's or special file's ACLs after its mode (a symlink has
/// none).
fn set_node_acls(ctx: &Ctx, d: &OwnedFd, name: &[u8], e: &FileEntry) {
    if ctx.opts.acls {
        if let Err(err) = acl::apply_at(d, name, e) {
            ctx.fail("set ACLs on", &e.path, &err);
        }
    }
}

/// `-K`: where the destination has a symlink to a directory and the source a directory, the
/// directory it points to (then it stands for the directory, as in rsync's generator).
pub(super) fn kept_dirlink(
    ctx: &Ctx,
    e: &FileEntry,
    dir: Option<&OwnedFd>,
    name: &[u8],
    existing_kind: Option<FileKind>,
) -> Option<Stat> {
    if e.kind != FileKind::Dir
        || existing_kind != Some(FileKind::Symlink)
        || !ctx.opts.symlinks.keep_dirlinks
    {
        return None;
    }
    let st = rustix::fs::statat(
        dir?.as_fd(),
        std::ffi::OsStr::from_bytes(name),
        rustix::fs::AtFlags::empty(),
    )
    .ok()?;
    (fsys::stat_kind(&st) == Some(FileKind::Dir)).then_some(st)
}

/// `--safe-links`: a symlink pointing outside the transferred tree is not made (rsync's
/// generator; it says so only at `-v`, which the receiver cannot tell from `-i`).
fn ignored_unsafe_symlink(ctx: &Ctx, e: &FileEntry) -> bool {
    e.kind == FileKind::Symlink
        && ctx.opts.symlinks.safe_links
        && crate::engine::links::unsafe_symlink(e.link_target(), &e.path)
}

/// Whether the existing symlink, device, FIFO or socket already is what `e` describes.
pub(super) fn node_matches(
    e: &FileEntry,
    dir: Option<&OwnedFd>,
    name: &[u8],
    existing: Option<&Stat>,
) -> bool {
    let Some(st) = existing else { return false };
    if fsys::stat_kind(st) != Some(e.kind) {
        return false;
    }
    match e.kind {
        FileKind::Symlink => dir.is_some_and(|d| {
            rustix::fs::readlinkat(d.as_fd(), std::ffi::OsStr::from_bytes(name), Vec::new())
                .is_ok_and(|t| t.as_bytes() == e.link_target())
        }),
        FileKind::CharDev | FileKind::BlockDev => st.st_rdev == e.rdev(),
        _ => true,
    }
}

pub(super) fn remove_dir_in_the_way(
    ctx: &Ctx,
    dir: Option<&OwnedFd>,
    name: &[u8],
    rel: &[u8],
) -> bool {
    let Some(d) = dir else { return true };
    let empty = fsys::open_beneath(d.as_fd(), name)
        .and_then(fsys::list_dir)
        .map(|v| v.is_empty())
        .unwrap_or(false);
    // Issue 15, write: `--force` deletes it even without --delete.
    if !empty && !ctx.opts.delete && !ctx.opts.write.force {
        ctx.stats.errors.fetch_add(1, Relaxed);
        ctx.warn(format!(
            "cannot delete non-empty directory: {}",
            String::from_utf8_lossy(rel)
        ));
        return false;
    }
    if let Some(root) = &ctx.root {
        root.forget_dirs();
    }
    remove_reporting_inner(
        ctx,
        d,
        name,
        rel,
        Some(FileKind::Dir),
        false,
        &ctx.opts.filters,
    )
}

/// Create or refresh a symlink, device, FIFO or socket; whether it is now as listed.
pub(super) fn make_node(
    ctx: &Ctx,
    e: &FileEntry,
    dir: Option<&OwnedFd>,
    name: &[u8],
    existing: Option<&Stat>,
    existing_kind: Option<FileKind>,
    same: bool,
) -> bool {
    let is_link = e.kind == FileKind::Symlink;
    let mut plan = ctx.meta_plan(e, !same);
    if is_link {
        plan.perms = None;
    }
    if same {
        if let Some(st) = existing {
            let it = ctx.attr_itemize(st, &plan, Itemize::new('.', e.kind));
            let it = acl_itemize(ctx, e, dir, name, it);
            if it.any_change() {
                if !ctx.opts.dry_run {
                    if let Some(d) = dir {
                        if let Err(err) = fsys::apply_meta_at(d, name, &plan, is_link) {
                            ctx.fail("set attributes", &e.path, &err);
                        }
                        set_node_acls(ctx, d, name, e);
                    }
                }
                ctx.item(e, it);
            }
        }
        return true;
    }
    let mut it = Itemize::new('c', e.kind);
    match existing {
        // The same kind, different content (another target, another device number).
        Some(st) if existing_kind == Some(e.kind) => {
            it = ctx.attr_itemize(st, &plan, it);
            it.checksum = true;
        }
        // Nothing there, or something of another kind that this replaces: new, as rsync
        // itemizes it (`cL+++++++++` for a file replaced by a symlink).
        _ => it.new = true,
    }
    if !ctx.opts.dry_run {
        if existing_kind == Some(FileKind::Dir) && !remove_dir_in_the_way(ctx, dir, name, &e.path) {
            return false;
        }
        // Issue 15, backup: keep what this replaces.
        if let Some(d) = dir.filter(|_| existing_kind.is_some_and(|k| k != FileKind::Dir)) {
            if let Err(err) = backups::before_replace(ctx, d, name, &e.path) {
                ctx.fail("make_backup", &e.path, &err);
                return false;
            }
        }
        let made = match (dir, e.kind) {
            (Some(d), FileKind::Symlink) => fsys::symlink_at(d, name, e.link_target()),
            (Some(d), kind) => fsys::mknod_at(d, name, kind, ctx.perms(e), e.rdev()),
            (None, _) => ctx.dir(split_parent(&e.path).0).and_then(|d| match d {
                Some(d) if e.kind == FileKind::Symlink => {
                    fsys::symlink_at(&d, name, e.link_target())
                }
                Some(d) => fsys::mknod_at(&d, name, e.kind, ctx.perms(e), e.rdev()),
                None => Ok(()),
            }),
        };
        let applied = made.and_then(|()| {
            let d = ctx.dir(split_parent(&e.path).0)?;
            match d {
                Some(d) => fsys::apply_meta_at(&d, name, &plan, is_link).map(|()| {
                    set_node_acls(ctx, &d, name, e);
                }),
                None => Ok(()),
            }
        });
        if let Err(err) = applied {
            let what = if is_link { "symlink" } else { "mknod" };
            ctx.fail(what, &e.path, &err);
            return false;
        }
    }
    if it.new {
        ctx.stats.created.add(e.kind);
    }
    ctx.item(e, it);
    true
}

/// rsync's quick check: same size and same modification second, or the same BLAKE3 with `-c`.
pub(super) fn up_to_date(
    ctx: &Ctx,
    e: &FileEntry,
    st: &Stat,
    dir: Option<&OwnedFd>,
    name: &[u8],
) -> bool {
    let o = &ctx.opts;
    if o.ignore_times || st.st_size as u64 != e.size {
        return false;
    }
    if o.size_only {
        return true;
    }
    if o.checksum {
        let (Some(want), Some(d)) = (e.checksum(), dir) else {
            return false;
        };
        // Hash through the directory handle, never following a symlink swapped in.
        let opened = rustix::fs::openat(
            d,
            std::ffi::OsStr::from_bytes(name),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        );
        let Ok(fd) = opened else { return false };
        let cache = o.hash_cache.as_deref();
        let key = cache
            .and_then(|_| rustix::fs::fstat(&fd).ok())
            .map(|st| FileKey::of_stat(&st));
        if let (Some(c), Some(k)) = (cache, &key) {
            if let Some(h) = c.get(k) {
                return &h == want;
            }
        }
        return match hash_open_file(File::from(fd)) {
            Ok(h) => {
                if let (Some(c), Some(k)) = (cache, key) {
                    c.put(k, h);
                }
                &h == want
            }
            Err(_) => false,
        };
    }
    same_time(
        o.dest.modify_window,
        (st.st_mtime, st.st_mtime_nsec as u32),
        (e.mtime, e.mtime_nsec),
    )
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;

    fn stamp(p: &Path, secs: i64) {
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &t,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    /// The generator makes what needs no data (directories, symlinks), leaves an up-to-date
    /// file alone, and asks for new and changed files only — with what changed itemized.
    #[test]
    fn only_new_and_changed_files_need_data() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("same"), b"12345").unwrap();
        stamp(&d.join("same"), 1_600_000_000);
        std::fs::write(d.join("changed"), b"1234").unwrap();
        stamp(&d.join("changed"), 1_500_000_000);
        let entries = vec![
            entry(".", FileKind::Dir, 0, 0o755),
            entry("changed", FileKind::File, 4, 0o644),
            entry("link", FileKind::Symlink, 0, 0o777),
            entry("new", FileKind::File, 9, 0o644),
            entry("same", FileKind::File, 5, 0o644),
            entry("sub", FileKind::Dir, 0, 0o750),
        ];
        let mut opts = SyncOptions::archive();
        opts.owner = false;
        opts.group = false;
        let (c, kept) = ctx(d, entries, opts);
        let plan = generate(&c, &TimesBefore::new());
        let asked: Vec<&[u8]> = plan
            .transfers
            .iter()
            .map(|t| c.list.entries[t.ndx as usize].path.as_slice())
            .collect();
        assert_eq!(asked, [&b"changed"[..], &b"new"[..]]);
        let changed = plan.transfers[0].transfer(&c);
        assert!(!changed.itemize.new && changed.itemize.time);
        assert!(plan.transfers[1].transfer(&c).itemize.new);
        assert_eq!(
            std::fs::read_link(d.join("link")).unwrap(),
            Path::new("target")
        );
        assert!(d.join("sub").is_dir());
        // Directories are fixed last, deepest first; "sub" was created by this run.
        assert!(plan.dir_fixes.contains(&(5, true)), "{:?}", plan.dir_fixes);
        let lines = kept.lines();
        assert!(lines.iter().any(|l| l.ends_with(" link")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.ends_with(" same")), "{lines:?}");
    }

    /// A dry run changes nothing on disk but reports what it would make.
    #[test]
    fn a_dry_run_makes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            entry("link", FileKind::Symlink, 0, 0o777),
            entry("sub", FileKind::Dir, 0, 0o700),
        ];
        let mut opts = SyncOptions::archive();
        opts.dry_run = true;
        let (c, kept) = ctx(dir.path(), entries, opts);
        generate(&c, &TimesBefore::new());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(kept.lines().len(), 2, "{:?}", kept.lines());
    }
}
