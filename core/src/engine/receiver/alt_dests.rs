//! Issue 15, dests: the receiver's other trees (`--link-dest`, `--compare-dest`,
//! `--copy-dest`), as upstream's generator (`try_dests_reg`) uses them: for a file missing in
//! the destination (or, except with `--copy-dest`, present but not the same) the directories
//! are tried in order for a regular file passing the quick check; one whose attributes match
//! too is hard-linked (link), left out (compare) or copied (copy), one whose attributes differ
//! is copied and its attributes fixed. Each directory is opened once per file and the file
//! reached beneath it without following a symlink. Does not decide anything else about the
//! file (the generator does).

#[allow(unused_imports)]
use super::*;

use crate::engine::dests::AltDestKind;

/// How well a file in another tree matches (rsync's `match_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// A regular file, but the quick check fails.
    Exists,
    /// The quick check passes, attributes differ.
    Content,
    /// The quick check passes and the attributes are the same.
    Exact,
}

/// The best match found: the directory holding it, its status, how well it matches.
struct Found {
    dir: OwnedFd,
    st: Stat,
    level: Level,
}

/// The directory of `e` in the other tree `base`, reached beneath it.
fn open_in(ctx: &Ctx, base: &Path, parent: &[u8]) -> io::Result<OwnedFd> {
    let base = match &ctx.root {
        Some(root) if base.is_relative() => root.path().join(base),
        _ => base.to_path_buf(),
    };
    let top = rustix::fs::open(
        &base,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    if parent.is_empty() || parent == b"." {
        return Ok(top);
    }
    fsys::open_beneath(top.as_fd(), parent)
}

/// The best match for `e` among the directories, the first exact one winning.
/// `e`'s name in each of the other trees that has an item of `e`'s kind there, in order:
/// the directory holding it and its status.
fn candidates<'a>(ctx: &'a Ctx, e: &'a FileEntry) -> impl Iterator<Item = (OwnedFd, Stat)> + 'a {
    let (parent, name) = split_parent(&e.path);
    ctx.opts.dests.dirs.iter().filter_map(move |base| {
        let dir = open_in(ctx, base, parent).ok()?;
        let st = fsys::lstat_at(&dir, name).ok()??;
        (fsys::stat_kind(&st) == Some(e.kind)).then_some((dir, st))
    })
}

fn find(ctx: &Ctx, e: &FileEntry) -> Option<Found> {
    let name = split_parent(&e.path).1;
    let mut best: Option<Found> = None;
    for (dir, st) in candidates(ctx, e) {
        let level = if !generate::up_to_date(ctx, e, &st, Some(&dir), name) {
            Level::Exists
        } else if ctx
            .attr_itemize(&st, &ctx.meta_plan(e, false), Itemize::new('.', e.kind))
            .any_change()
        {
            Level::Content
        } else {
            Level::Exact
        };
        if best.as_ref().is_none_or(|b| level > b.level) {
            best = Some(Found { dir, st, level });
        }
        if level == Level::Exact {
            break;
        }
    }
    best
}

/// Copy the matching file into place as `name` in `dir`, with `e`'s attributes.
fn copy_local(
    ctx: &Ctx,
    e: &FileEntry,
    found: &Found,
    dir: &OwnedFd,
    name: &[u8],
) -> io::Result<()> {
    let from = rustix::fs::openat(
        &found.dir,
        std::ffi::OsStr::from_bytes(name),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let (mut file, staging) = fsys::stage(dir, name, true, 0o600)?;
    let copied = io::copy(&mut File::from(from), &mut file)
        .map(|_| ())
        .and_then(|()| fsys::apply_meta_fd(&file, &ctx.meta_plan(e, true)))
        .and_then(|()| fsys::commit(dir, &file, &staging, name));
    if copied.is_err() {
        fsys::discard(dir, &staging);
    }
    copied
}

/// What the other trees did for a regular file.
pub(super) enum DestsOutcome {
    /// Settled: linked, copied, or nothing to do.
    Settled,
    /// Nothing found: the generator goes on as usual.
    NotFound,
    /// A file missing here is in another tree but fails the quick check there: it is sent,
    /// itemized against that file (rsync's `FNAMECMP_BASIS_DIR_LOW`), whose status this is.
    Against(Stat),
}

/// Try the other trees for the regular file `e` (at `name` in `dir`, `existing` there if
/// anything).
pub(super) fn try_dests(
    ctx: &Ctx,
    e: &FileEntry,
    dir: Option<&OwnedFd>,
    name: &[u8],
    existing: Option<&Stat>,
) -> DestsOutcome {
    use DestsOutcome::{Against, NotFound, Settled};
    let Some(kind) = ctx.opts.dests.kind else {
        return NotFound;
    };
    if existing.is_some() && kind == AltDestKind::Copy {
        return NotFound;
    }
    if let Some(st) = existing {
        // `--update` keeps a newer destination file before the trees are looked at.
        if ctx.opts.dest.update
            && newer_on_receiver(ctx.opts.dest.modify_window, e.mtime, st.st_mtime)
        {
            return NotFound;
        }
    }
    let Some(found) = find(ctx, e) else {
        return NotFound;
    };
    // A file already there is replaced only by an exact match.
    if existing.is_some() && found.level != Level::Exact {
        return NotFound;
    }
    let dry = ctx.opts.dry_run;
    let held;
    let dir = match dir {
        Some(d) => Some(d),
        None if dry => None,
        None => match ctx.dir(split_parent(&e.path).0) {
            Ok(d) => {
                held = d;
                held.as_deref()
            }
            Err(err) => {
                ctx.fail("opendir", &e.path, &err);
                return Settled;
            }
        },
    };
    if found.level == Level::Exact && kind != AltDestKind::Copy {
        if let Some(st) = existing {
            if kind == AltDestKind::Link
                && st.st_dev == found.st.st_dev
                && st.st_ino == found.st.st_ino
            {
                return NotFound;
            }
        }
        // Shown only at -ii by rsync (`hf`, `.f`): nothing at -i.
        let Some(d) = dir.filter(|_| !dry) else {
            return Settled;
        };
        match kind {
            AltDestKind::Link => match fsys::link_at(&found.dir, name, d, name) {
                Ok(()) => return Settled,
                // Not linkable (another filesystem): copied instead, as rsync does.
                Err(_) if existing.is_none() => {}
                Err(_) => return NotFound,
            },
            _ => {
                if existing.is_some() {
                    if let Err(err) = fsys::unlink_at(d, name) {
                        ctx.fail("delete", &e.path, &err);
                    }
                }
                return Settled;
            }
        }
    }
    if found.level == Level::Exists {
        return Against(found.st);
    }
    if let Some(d) = dir.filter(|_| !dry) {
        if let Err(err) = copy_local(ctx, e, &found, d, name) {
            ctx.fail("copy", &e.path, &err);
            return NotFound;
        }
    }
    // A local copy: `c`, shown at -i when attributes differ from the copied file.
    let it = ctx.attr_itemize(
        &found.st,
        &ctx.meta_plan(e, false),
        Itemize::new('c', e.kind),
    );
    if it.any_change() {
        ctx.item(e, it);
    }
    Settled
}

/// A directory `e` missing in the destination, found in one of the other trees: how rsync
/// itemizes its creation then (`None`: in none of them, itemized as new). Compared with the
/// first one whose attributes match, else the first one found: `cd` with what differs, nothing
/// when nothing does (rsync's `try_dests_non`).
pub(super) fn new_dir_item(ctx: &Ctx, e: &FileEntry) -> Option<Option<Itemize>> {
    ctx.opts.dests.kind?;
    let plan = ctx.meta_plan(e, false);
    let mut first: Option<Itemize> = None;
    for (_, st) in candidates(ctx, e) {
        let it = ctx.attr_itemize(&st, &plan, Itemize::new('c', e.kind));
        if !it.any_change() {
            return Some(None);
        }
        first.get_or_insert(it);
    }
    first.map(Some)
}
