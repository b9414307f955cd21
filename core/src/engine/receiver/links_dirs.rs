//! After the transfers: hard-link followers linked to their group's leader, and directory
//! permissions and times set deepest first (only where they differ). Does not create files.

#[allow(unused_imports)]
use super::*;

/// Each hard-link group's leader: its last member in list order (the one rsync transfers).
pub(super) fn group_leaders(list: &FileList) -> HashMap<u32, usize> {
    let mut leader = HashMap::new();
    for (i, e) in list.entries.iter().enumerate() {
        if e.hardlink_group != 0 {
            leader.insert(e.hardlink_group, i);
        }
    }
    leader
}

/// Hard-link followers to their group's leader, once the leaders are in place.
pub(super) fn link_followers(ctx: &Ctx, plan: &Plan) {
    let leader = group_leaders(&ctx.list);
    for &f in &plan.followers {
        let e = &ctx.list.entries[f as usize];
        let Some(&li) = leader.get(&e.hardlink_group) else {
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
                continue;
            }
        }
        if !ctx.opts.dry_run {
            if let Err(err) = fsys::link_at(&*ld, ln, &*fd, fname) {
                ctx.fail("link", &e.path, &err);
                continue;
            }
        }
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
                (e.perms & 0o777 & !ctx.umask) | inherited
            });
        }
        // Touch nothing that already matches (times compared to the second, as rsync does).
        let differs = match st {
            Ok(st) => {
                let (_, perms, owner, group) = meta_diff(&st, &plan);
                perms || owner || group || plan.mtime.is_some_and(|(s, _)| st.st_mtime != s)
            }
            Err(_) => true,
        };
        if differs {
            if let Err(err) = fsys::apply_meta_fd(&*d, &plan) {
                ctx.fail("set attributes on", &e.path, &err);
            }
        }
        if ctx.opts.xattrs {
            if let Err(err) = xattr::apply_fd(&*d, &e.xattrs) {
                ctx.fail("set xattrs on", &e.path, &err);
            }
        }
    }
}
