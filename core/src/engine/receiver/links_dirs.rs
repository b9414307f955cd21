//! After the transfers: hard-link followers linked to their group's leader, and directory
//! permissions and times set deepest first (only where they differ). Does not create files.

#[allow(unused_imports)]
use super::*;

/// Hard-link followers to their group's leader, once the leaders are in place: group by
/// group in their leaders' list order, each group's followers from the last to the first, as
/// rsync's `finish_hard_link` walks them back from the leader.
pub(super) fn link_followers(ctx: &Ctx, plan: &Plan) {
    let leader = ctx.list.hardlink_leaders();
    let mut followers = plan.followers.clone();
    followers.sort_by_key(|&f| {
        let group = ctx.list.entries[f as usize].hardlink_group();
        (leader.get(&group).copied(), std::cmp::Reverse(f))
    });
    for &f in &followers {
        let e = &ctx.list.entries[f as usize];
        let Some(&li) = leader.get(&e.hardlink_group()) else {
            continue;
        };
        let l = &ctx.list.entries[li];
        let (lp, ln) = split_parent(&l.path);
        let (fp, fname) = split_parent(&e.path);
        let dirs = ctx.dir(lp).and_then(|a| Ok((a, ctx.dir(fp)?)));
        let (ld, fd) = match dirs {
            Ok((Some(ld), Some(fd)))
                if !ctx.opts.dry_run || fsys::lstat_at(&*fd, fname).is_ok() =>
            {
                (ld, fd)
            }
            _ => {
                // Dry run into a destination that does not exist yet: report only.
                let mut it = Itemize::new('h', e.kind);
                it.new = true;
                ctx.sink.event(Event::Item {
                    entry: e,
                    itemize: it,
                    link_to: Some(&l.path),
                });
                continue;
            }
        };
        let have = fsys::lstat_at(&*fd, fname).ok().flatten();
        let lead = fsys::lstat_at(&*ld, ln).ok().flatten();
        if let (Some(h), Some(l2)) = (&have, &lead) {
            if h.st_ino == l2.st_ino && h.st_dev == l2.st_dev {
                ctx.synced(f);
                continue;
            }
        }
        if !ctx.opts.dry_run {
            if let Err(err) = fsys::link_at(&*ld, ln, &*fd, fname) {
                ctx.fail("link", &e.path, &err);
                continue;
            }
        }
        ctx.synced(f);
        let mut it = Itemize::new('h', e.kind);
        it.new = have.is_none();
        if have.is_none() {
            ctx.stats.created.add(FileKind::File);
        }
        ctx.sink.event(Event::Item {
            entry: e,
            itemize: it,
            link_to: Some(&l.path),
        });
    }
}

/// Directory permissions and times, deepest first, after their contents are written.
pub(super) fn fix_dirs(ctx: &Ctx, plan: &Plan) {
    if ctx.opts.dry_run {
        return;
    }
    for &(ndx, created) in plan.dir_fixes.iter().rev() {
        let e = &ctx.list.entries[ndx as usize];
        let d = match ctx.dir(&e.path) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(err) => {
                ctx.fail("opendir", &e.path, &err);
                continue;
            }
        };
        let mut plan = ctx.meta_plan(e, true);
        let st = rustix::fs::fstat(d.as_fd());
        if !ctx.opts.perms {
            // Without -p an existing directory keeps its mode; one made here gets the
            // source's masked by the umask (created writable for its contents), keeping a
            // set-group-id bit inherited from its parent, as rsync does.
            plan.perms = created.then(|| {
                let inherited = st.as_ref().map_or(0, |st| st.st_mode & 0o2000);
                (ctx.perms(e) & 0o777 & !ctx.umask) | inherited
            });
        }
        if fix_kept_dirlink(ctx, e, &d, &plan) {
            continue;
        }
        // Touch nothing that already matches (times compared to the second, as rsync does;
        // a directory made in this run gets the sender's time to the nanosecond, so a copy
        // made within the second its source changed is exact too).
        let differs = match st {
            Ok(st) => {
                let (_, perms, owner, group) = meta_diff(&st, &plan);
                let time = plan.mtime.is_some_and(|(s, ns)| {
                    st.st_mtime != s || (created && st.st_mtime_nsec as u32 != ns)
                });
                perms || owner || group || time
            }
            Err(_) => true,
        };
        if differs {
            if let Err(err) = fsys::apply_meta_fd(&*d, &plan) {
                ctx.fail("set attributes on", &e.path, &err);
            }
        }
        let copied = xattr::Copied::of(&ctx.opts);
        if copied.any() {
            if let Err(err) = xattr::apply_fd(&*d, e.xattrs(), copied) {
                ctx.fail("set xattrs on", &e.path, &err);
            }
        }
    }
}

/// `-K`: a directory that is a symlink in the destination gets its times and owner on the
/// symlink and its permissions on the directory, as rsync's `set_file_attrs` does (`lutimes`,
/// `lchown`, `chmod`). Whether `e` was such a directory.
fn fix_kept_dirlink(ctx: &Ctx, e: &FileEntry, d: &OwnedFd, plan: &fsys::MetaPlan) -> bool {
    if !ctx.opts.symlinks.keep_dirlinks || e.is_root() {
        return false;
    }
    let (parent, name) = split_parent(&e.path);
    let Ok(Some(pd)) = ctx.dir(parent) else {
        return false;
    };
    let is_link = fsys::lstat_at(&pd, name)
        .ok()
        .flatten()
        .is_some_and(|st| fsys::stat_kind(&st) == Some(FileKind::Symlink));
    if !is_link {
        return false;
    }
    let on_link = fsys::MetaPlan {
        perms: None,
        ..*plan
    };
    let on_dir = fsys::MetaPlan {
        uid: None,
        gid: None,
        mtime: None,
        ..*plan
    };
    let applied = fsys::apply_meta_at(&pd, name, &on_link, true)
        .and_then(|()| fsys::apply_meta_fd(d, &on_dir));
    if let Err(err) = applied {
        ctx.fail("set attributes on", &e.path, &err);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A hard-link group's leader is its last member; followers are linked to it.
    #[test]
    fn followers_are_linked_to_their_leader() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b"), b"data").unwrap();
        let mut a = entry("a", FileKind::File, 4, 0o644);
        let mut b = entry("b", FileKind::File, 4, 0o644);
        a.set_hardlink_group(1);
        b.set_hardlink_group(1);
        let (c, _) = ctx(dir.path(), vec![a, b], SyncOptions::archive());
        assert_eq!(c.list.hardlink_leaders().get(&1), Some(&1));
        let plan = Plan {
            followers: vec![0],
            ..Plan::default()
        };
        link_followers(&c, &plan);
        let (ma, mb) = (
            std::fs::metadata(dir.path().join("a")).unwrap(),
            std::fs::metadata(dir.path().join("b")).unwrap(),
        );
        assert_eq!(ma.ino(), mb.ino());
    }

    /// Without `-p` an existing directory keeps its mode and one made by this run gets the
    /// source's masked by the umask; with `-p` both get the source's.
    #[test]
    fn directory_modes_follow_rsync() {
        let dir = tempfile::tempdir().unwrap();
        for (name, mode) in [("old", 0o700), ("made", 0o777)] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        let entries = vec![
            entry("made", FileKind::Dir, 0, 0o775),
            entry("old", FileKind::Dir, 0, 0o755),
        ];
        let mode = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().mode() & 0o7777;
        let plan = Plan {
            dir_fixes: vec![(0, true), (1, false)],
            ..Plan::default()
        };
        let (c, _) = ctx(dir.path(), entries.clone(), SyncOptions::default());
        fix_dirs(&c, &plan);
        assert_eq!((mode("made"), mode("old")), (0o755, 0o700));
        let opts = SyncOptions {
            perms: true,
            ..SyncOptions::default()
        };
        let (c, _) = ctx(dir.path(), entries, opts);
        fix_dirs(&c, &plan);
        assert_eq!((mode("made"), mode("old")), (0o775, 0o755));
    }
}
