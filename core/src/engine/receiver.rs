//! The receiver role, with its generator: compare the sender's list with the destination,
//! create what needs no data, request what does, write it safely, then fix directory metadata.
//!
//! Owns: validating the file list from the peer (order, parents, hard-link groups), the
//! destination rules (a single file to a new name; otherwise a directory, created if missing),
//! `--delete`, the quick check (size + mtime seconds, or BLAKE3 with `-c`), itemized output,
//! and the per-file write: a temporary file in the destination directory, verified, renamed
//! into place. Does not own how bytes move ([`super::io`]) or path safety ([`super::fsys`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use rustix::fs::Stat;
use tokio::sync::mpsc;

use super::basis::{BasisCandidates, CANDIDATE_MIN};
use super::event::{Event, EventSink, Itemize};
use super::fsys::{self, meta_diff, DestRoot, MetaPlan, Staging};
use super::hashcache::FileKey;
use super::ids::IdNames;
use super::io::{FileIo, Prepared, ProgressFn, RateLimit};
use super::lanes::{self, LaneEvent, ReceiverLanes};
use super::options::SyncOptions;
use super::scan::{hash_open_file, os_error};
use super::session::{
    apply_compression, apply_timeouts, exchange_hello, keepalive_cap, run_framed, shared_fs_token,
    FrameSink, FrameSource,
};
use super::stats::Stats;
use super::treelist::{self, receive_tree, TreeParams};
use super::xattr;
use crate::error::SyncError;
use crate::flist::{split_parent, validate_list, FileEntry, FileKind, FileList};
use crate::merkle::chunk::{chunk_file, delta_params};
use crate::merkle::tree::{node_hash, ChunkTree, DEFAULT_FANOUT_BITS};
use crate::merkle::NodeRef;
use crate::proto::merkle::caps::{Caps, Role};
use crate::proto::merkle::{report_frames, Frame, MAX_EXPAND, MAX_FETCH, MAX_FILES};
use crate::proto::DecodeError;
use crate::transport::Connection;

/// What the receiver is asked to do.
#[derive(Clone)]
pub struct ReceiverJob {
    /// The destination argument, as given (a trailing slash matters).
    pub dest: PathBuf,
    /// Options.
    pub opts: SyncOptions,
    /// Counters of this role.
    pub stats: Arc<Stats>,
    /// Where events go.
    pub sink: Arc<dyn EventSink>,
}

impl std::fmt::Debug for ReceiverJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverJob")
            .field("dest", &self.dest)
            .finish_non_exhaustive()
    }
}

/// Run the receiver over `conn`; `open` says whether this side opens the stream.
pub async fn run_receiver(
    conn: &dyn Connection,
    open: bool,
    job: ReceiverJob,
) -> Result<(), SyncError> {
    let stats = job.stats.clone();
    run_framed(conn, open, stats, |sink, mut source| async move {
        drive(conn, open, &sink, &mut source, job).await
    })
    .await
}

async fn receive_list(source: &mut FrameSource, stats: &Stats) -> Result<FileList, SyncError> {
    let started = Instant::now();
    let before = stats.bytes_received.load(Relaxed);
    let mut list = FileList::default();
    loop {
        match source.expect("file list").await? {
            Frame::FileEntries(batch) => {
                if list.entries.len() + batch.len() > MAX_FILES as usize {
                    return Err(DecodeError::TooLarge {
                        what: "file list",
                        got: (list.entries.len() + batch.len()) as u64,
                        max: MAX_FILES as u64,
                    }
                    .into());
                }
                list.entries.extend(batch);
            }
            Frame::FileListEnd { count } => {
                if count as usize != list.entries.len() {
                    return Err(DecodeError::invalid(
                        "file list end",
                        format!("count {count} but {} entries received", list.entries.len()),
                    )
                    .into());
                }
                break;
            }
            other => {
                return Err(DecodeError::invalid(
                    "file list",
                    format!("unexpected frame {other:?}"),
                )
                .into())
            }
        }
    }
    validate_list(&list).map_err(|e| DecodeError::invalid("file list", e))?;
    for e in &list.entries {
        stats.files.add(e.kind);
        let counted = match e.kind {
            FileKind::File => e.size,
            FileKind::Symlink => e.link_target.len() as u64,
            _ => 0,
        };
        stats.total_size.fetch_add(counted, Relaxed);
    }
    stats
        .flist_size
        .fetch_add(stats.bytes_received.load(Relaxed) - before, Relaxed);
    stats
        .flist_xfer_us
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    Ok(list)
}

fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Collects what the receiver does without data (and its deletions) for a sending client,
/// passing every event on.
struct ReportSink {
    inner: Arc<dyn EventSink>,
    #[allow(clippy::type_complexity)]
    collected: std::sync::Mutex<(Vec<(Vec<u8>, u16, u8)>, Vec<(Vec<u8>, bool)>)>,
}

impl ReportSink {
    fn new(inner: Arc<dyn EventSink>) -> Self {
        ReportSink {
            inner,
            collected: std::sync::Mutex::new((Vec::new(), Vec::new())),
        }
    }

    /// Send what was collected so far; transfers only in a dry run (otherwise the sender
    /// reports them as it is asked for them).
    async fn send(
        &self,
        fsink: &FrameSink,
        list: &FileList,
        with_transfers: bool,
    ) -> Result<(), SyncError> {
        let (items, deleted) = match self.collected.lock() {
            Ok(mut c) => (std::mem::take(&mut c.0), std::mem::take(&mut c.1)),
            Err(_) => return Ok(()),
        };
        if items.is_empty() && deleted.is_empty() {
            return Ok(());
        }
        let ndx: HashMap<&[u8], u32> = list
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.as_slice(), i as u32))
            .collect();
        let items: Vec<(u32, u16, u8)> = items
            .into_iter()
            .filter(|(_, _, l)| with_transfers || *l != b'>')
            .filter_map(|(p, f, l)| ndx.get(p.as_slice()).map(|&n| (n, f, l)))
            .collect();
        // Deletions first, as rsync prints them.
        for f in report_frames(items, deleted) {
            fsink.send(&f).await?;
        }
        Ok(())
    }
}

impl EventSink for ReportSink {
    fn event(&self, event: Event<'_>) {
        if let Ok(mut c) = self.collected.lock() {
            match &event {
                Event::Item { entry, itemize, .. } => {
                    c.0.push((entry.path.clone(), itemize.to_flags(), itemize.update as u8))
                }
                Event::Deleted { path, is_dir } => c.1.push((path.clone(), *is_dir)),
                _ => {}
            }
        }
        self.inner.event(event);
    }
}

/// The receiver's fixed context, shared with its copy tasks.
struct Ctx {
    opts: SyncOptions,
    stats: Arc<Stats>,
    sink: Arc<dyn EventSink>,
    list: Arc<FileList>,
    root: Option<Arc<DestRoot>>,
    root_created: bool,
    ids: IdNames,
    /// With the directory-tree exchange: the directories whose whole contents were listed
    /// (`None`: the whole list was sent).
    complete: Option<HashSet<Vec<u8>>>,
    am_root: bool,
    euid: u32,
    egid: u32,
    umask: u32,
}

/// A file whose data must come from the sender.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    ndx: u32,
    itemize: Itemize,
    /// The permission bits of the file it replaces (`None` for a new file): without `-p` the
    /// new content keeps them, as rsync does.
    old_perms: Option<u32>,
}

/// What the generator decided.
#[derive(Debug, Default)]
struct Plan {
    transfers: Vec<Transfer>,
    /// Directories whose metadata is set last, with whether this run created them.
    dir_fixes: Vec<(u32, bool)>,
    followers: Vec<u32>,
}

impl Ctx {
    fn warn(&self, message: String) {
        self.sink.event(Event::Warning { message });
    }

    fn fail(&self, what: &str, rel: &[u8], e: &io::Error) {
        self.stats.errors.fetch_add(1, Relaxed);
        self.warn(format!(
            "{what} \"{}\" failed: {}",
            self.display(rel).display(),
            os_error(e)
        ));
    }

    fn display(&self, rel: &[u8]) -> PathBuf {
        let base = self
            .root
            .as_ref()
            .map_or_else(|| PathBuf::from("."), |r| r.path().to_path_buf());
        if rel == b"." {
            base
        } else {
            base.join(std::ffi::OsStr::from_bytes(rel))
        }
    }

    fn item(&self, e: &FileEntry, itemize: Itemize) {
        self.sink.event(Event::Item {
            entry: e,
            itemize,
            link_to: None,
        });
    }

    /// The metadata `e` should end up with; `new` says whether the item is being created.
    fn meta_plan(&self, e: &FileEntry, new: bool) -> MetaPlan {
        let o = &self.opts;
        MetaPlan {
            uid: (o.owner && self.am_root).then(|| self.ids.local_uid(&e.user, e.uid)),
            gid: o.group.then(|| self.ids.local_gid(&e.group, e.gid)),
            perms: if o.perms {
                Some(e.perms)
            } else if new {
                Some(e.perms & 0o777 & !self.umask)
            } else {
                None
            },
            mtime: o.times.then_some((e.mtime, e.mtime_nsec)),
        }
    }

    /// The metadata a transferred file ends up with: as [`Ctx::meta_plan`], except that
    /// without `-p` a file that replaces another keeps the old one's permissions.
    fn file_plan(&self, e: &FileEntry, t: &Transfer) -> MetaPlan {
        let mut plan = self.meta_plan(e, t.itemize.new);
        if !self.opts.perms {
            if let Some(old) = t.old_perms {
                plan.perms = Some(old);
            }
        }
        plan
    }

    /// Itemize columns for an existing item (rsync compares times to the second).
    fn attr_itemize(&self, st: &Stat, plan: &MetaPlan, mut it: Itemize) -> Itemize {
        let (_, perms, owner, group) = meta_diff(st, plan);
        it.time = plan.mtime.is_some_and(|(s, _)| st.st_mtime != s);
        it.perms = perms && self.opts.perms;
        it.owner = owner;
        it.group = group;
        it
    }

    fn dir(&self, rel: &[u8]) -> io::Result<Option<Arc<OwnedFd>>> {
        match &self.root {
            Some(r) => r.dir(rel).map(Some),
            None => Ok(None),
        }
    }
}

/// The generator pass: everything that needs no file data, and the list of what does.
fn generate(ctx: &Ctx) -> Plan {
    let mut plan = Plan::default();
    let dry = ctx.opts.dry_run;
    // Directories we created in this run (or that do not exist in a dry run): nothing below
    // them exists, so their children need no lstat.
    let mut new_dirs: HashSet<&[u8]> = HashSet::new();
    let leaders = group_leaders(&ctx.list);
    for (i, e) in ctx.list.entries.iter().enumerate() {
        crate::liveness::bump();
        let ndx = i as u32;
        let (parent, name) = split_parent(&e.path);
        let parent_is_new = ctx.root.is_none() || (!e.is_root() && new_dirs.contains(parent));
        let dir = if parent_is_new {
            None
        } else {
            match ctx.dir(parent) {
                Ok(d) => d,
                Err(err) => {
                    ctx.fail("opendir", parent, &err);
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
        let existing_kind = existing.as_ref().and_then(fsys::stat_kind);
        if e.kind != FileKind::Dir && ctx.opts.existing && existing.is_none() {
            continue;
        }
        match e.kind {
            FileKind::Dir => {
                if existing_kind == Some(FileKind::Dir) {
                    plan.dir_fixes.push((ndx, false));
                    if let Some(st) = &existing {
                        let it = ctx.attr_itemize(
                            st,
                            &ctx.meta_plan(e, false),
                            Itemize::new('.', e.kind),
                        );
                        if it.any_change() {
                            ctx.item(e, it);
                        }
                    }
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
                            if let Err(err) = fsys::unlink_at(d, name) {
                                ctx.fail("delete", &e.path, &err);
                                continue;
                            }
                        }
                        if let Err(err) = fsys::mkdir_at(d, name, 0o700 | (e.perms & 0o777)) {
                            ctx.fail("mkdir", &e.path, &err);
                            continue;
                        }
                    } else if let Err(err) = ctx.dir(parent).and_then(|d| {
                        d.map_or(Ok(()), |d| {
                            fsys::mkdir_at(d, name, 0o700 | (e.perms & 0o777))
                        })
                    }) {
                        ctx.fail("mkdir", &e.path, &err);
                        continue;
                    }
                }
                new_dirs.insert(&e.path);
                ctx.stats.created.add(e.kind);
                ctx.item(e, it);
            }
            FileKind::File => {
                if e.hardlink_group != 0 && leaders.get(&e.hardlink_group) != Some(&i) {
                    plan.followers.push(ndx);
                    continue;
                }
                if existing.is_some() && ctx.opts.ignore_existing {
                    continue;
                }
                let mut it = Itemize::new('>', e.kind);
                match (&existing, existing_kind) {
                    (Some(st), Some(FileKind::File)) => {
                        if up_to_date(ctx, e, st, dir.as_deref(), name) {
                            let plan_meta = ctx.meta_plan(e, false);
                            let it = ctx.attr_itemize(st, &plan_meta, Itemize::new('.', e.kind));
                            if it.any_change() {
                                if !dry {
                                    if let Some(d) = &dir {
                                        if let Err(err) =
                                            fsys::apply_meta_at(d, name, &plan_meta, false)
                                        {
                                            ctx.fail("set attributes", &e.path, &err);
                                        }
                                    }
                                }
                                ctx.item(e, it);
                            }
                            continue;
                        }
                        it = ctx.attr_itemize(st, &ctx.meta_plan(e, false), it);
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
                plan.transfers.push(Transfer {
                    ndx,
                    itemize: it,
                    old_perms: existing
                        .as_ref()
                        .filter(|_| !it.new)
                        .map(|st| st.st_mode & 0o7777),
                });
            }
            _ => {
                let same = node_matches(e, dir.as_deref(), name, existing.as_ref());
                make_node(
                    ctx,
                    e,
                    dir.as_deref(),
                    name,
                    existing.as_ref(),
                    existing_kind,
                    same,
                );
            }
        }
    }
    plan
}

/// Whether the existing symlink, device, FIFO or socket already is what `e` describes.
fn node_matches(
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
                .is_ok_and(|t| t.as_bytes() == e.link_target.as_slice())
        }),
        FileKind::CharDev | FileKind::BlockDev => st.st_rdev == e.rdev,
        _ => true,
    }
}

fn remove_dir_in_the_way(ctx: &Ctx, dir: Option<&OwnedFd>, name: &[u8], rel: &[u8]) -> bool {
    let Some(d) = dir else { return true };
    let empty = fsys::open_beneath(d.as_fd(), name)
        .and_then(fsys::list_dir)
        .map(|v| v.is_empty())
        .unwrap_or(false);
    if !empty && !ctx.opts.delete {
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
    remove_reporting_inner(ctx, d, name, rel, Some(FileKind::Dir), false)
}

/// Create or refresh a symlink, device, FIFO or socket.
fn make_node(
    ctx: &Ctx,
    e: &FileEntry,
    dir: Option<&OwnedFd>,
    name: &[u8],
    existing: Option<&Stat>,
    existing_kind: Option<FileKind>,
    same: bool,
) {
    let is_link = e.kind == FileKind::Symlink;
    let mut plan = ctx.meta_plan(e, !same);
    if is_link {
        plan.perms = None;
    }
    if same {
        if let Some(st) = existing {
            let it = ctx.attr_itemize(st, &plan, Itemize::new('.', e.kind));
            if it.any_change() {
                if !ctx.opts.dry_run {
                    if let Some(d) = dir {
                        if let Err(err) = fsys::apply_meta_at(d, name, &plan, is_link) {
                            ctx.fail("set attributes", &e.path, &err);
                        }
                    }
                }
                ctx.item(e, it);
            }
        }
        return;
    }
    let mut it = Itemize::new('c', e.kind);
    match existing {
        None => it.new = true,
        Some(st) => {
            it = ctx.attr_itemize(st, &plan, it);
            it.checksum = true;
        }
    }
    if !ctx.opts.dry_run {
        if existing_kind == Some(FileKind::Dir) && !remove_dir_in_the_way(ctx, dir, name, &e.path) {
            return;
        }
        let made = match (dir, e.kind) {
            (Some(d), FileKind::Symlink) => fsys::symlink_at(d, name, &e.link_target),
            (Some(d), kind) => fsys::mknod_at(d, name, kind, e.perms, e.rdev),
            (None, _) => ctx.dir(split_parent(&e.path).0).and_then(|d| match d {
                Some(d) if e.kind == FileKind::Symlink => {
                    fsys::symlink_at(&d, name, &e.link_target)
                }
                Some(d) => fsys::mknod_at(&d, name, e.kind, e.perms, e.rdev),
                None => Ok(()),
            }),
        };
        let applied = made.and_then(|()| {
            let d = ctx.dir(split_parent(&e.path).0)?;
            match d {
                Some(d) => fsys::apply_meta_at(&d, name, &plan, is_link),
                None => Ok(()),
            }
        });
        if let Err(err) = applied {
            let what = if is_link { "symlink" } else { "mknod" };
            ctx.fail(what, &e.path, &err);
            return;
        }
    }
    if existing.is_none() {
        ctx.stats.created.add(e.kind);
    }
    ctx.item(e, it);
}

/// rsync's quick check: same size and same modification second, or the same BLAKE3 with `-c`.
fn up_to_date(ctx: &Ctx, e: &FileEntry, st: &Stat, dir: Option<&OwnedFd>, name: &[u8]) -> bool {
    let o = &ctx.opts;
    if o.ignore_times || st.st_size as u64 != e.size {
        return false;
    }
    if o.size_only {
        return true;
    }
    if o.checksum {
        let (Some(want), Some(d)) = (e.checksum.as_deref(), dir) else {
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
    st.st_mtime == e.mtime
}

/// `--delete`: remove what the destination has and the list does not, in every listed
/// directory that already existed.
fn delete_extraneous(ctx: &Ctx, deferred: &HashSet<Vec<u8>>) {
    let Some(root) = &ctx.root else { return };
    let listed: HashSet<&[u8]> = ctx.list.entries.iter().map(|e| e.path.as_slice()).collect();
    let complete = |p: &[u8]| ctx.complete.as_ref().is_none_or(|c| c.contains(p));
    for e in ctx
        .list
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::Dir && complete(&e.path))
    {
        let d = match root.dir(&e.path) {
            Ok(d) => d,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => continue, // not a directory in the destination yet
        };
        let mut names = match fsys::list_dir(&*d) {
            Ok(n) => n,
            Err(err) => {
                ctx.fail("opendir", &e.path, &err);
                continue;
            }
        };
        names.sort();
        for name in names {
            let rel = if e.is_root() {
                name.clone()
            } else {
                [e.path.as_slice(), b"/", &name].concat()
            };
            if listed.contains(rel.as_slice()) || deferred.contains(&rel) {
                continue;
            }
            let kind = fsys::lstat_at(&*d, &name)
                .ok()
                .flatten()
                .and_then(|st| fsys::stat_kind(&st));
            let is_dir = kind == Some(FileKind::Dir);
            if !ctx.opts.delete_excluded && ctx.opts.filters.protected_for_receiver(&rel, is_dir) {
                continue;
            }
            if is_dir {
                root.forget_dirs();
            }
            remove_reporting(ctx, &d, &name, &rel, kind);
        }
    }
}

/// `--delete` of the extraneous files kept as possible old versions of new files: now that the
/// transfers are done.
fn delete_deferred(ctx: &Ctx, deferred: &HashSet<Vec<u8>>) {
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

/// Delete `name` (at `rel`) from `dir`, contents first, reporting every entry as rsync does;
/// in a dry run only report.
fn remove_reporting(
    ctx: &Ctx,
    dir: &OwnedFd,
    name: &[u8],
    rel: &[u8],
    kind: Option<FileKind>,
) -> bool {
    remove_reporting_inner(ctx, dir, name, rel, kind, true)
}

/// As [`remove_reporting`]; `report_self` false reports only the contents (rsync does not
/// list a directory it replaces with a file, only what was in it).
fn remove_reporting_inner(
    ctx: &Ctx,
    dir: &OwnedFd,
    name: &[u8],
    rel: &[u8],
    kind: Option<FileKind>,
    report_self: bool,
) -> bool {
    let mut ok = true;
    if kind == Some(FileKind::Dir) {
        match fsys::open_subdir(dir, name) {
            Ok(sub) => {
                let mut children = fsys::list_dir(&sub).unwrap_or_default();
                children.sort();
                for child in children {
                    let ck = fsys::lstat_at(&sub, &child)
                        .ok()
                        .flatten()
                        .and_then(|st| fsys::stat_kind(&st));
                    let crel = [rel, b"/", &child].concat();
                    ok &= remove_reporting(ctx, &sub, &child, &crel, ck);
                }
            }
            Err(err) => {
                ctx.fail("opendir", rel, &err);
                return false;
            }
        }
    }
    if !ctx.opts.dry_run {
        let r = if kind == Some(FileKind::Dir) {
            fsys::rmdir_at(dir, name)
        } else {
            fsys::unlink_at(dir, name)
        };
        if let Err(err) = r {
            ctx.fail("delete", rel, &err);
            return false;
        }
    }
    if !report_self {
        return ok;
    }
    if let Some(k) = kind {
        ctx.stats.deleted.add(k);
    }
    ctx.sink.event(Event::Deleted {
        path: rel.to_vec(),
        is_dir: kind == Some(FileKind::Dir),
    });
    ok
}

/// Why one file could not be written.
#[derive(Debug)]
enum CopyError {
    Vanished,
    Failed(String),
    /// Given up on because its lane was lost; asked for again, nothing to report.
    Abandoned,
}

impl From<io::Error> for CopyError {
    fn from(e: io::Error) -> Self {
        CopyError::Failed(os_error(&e))
    }
}

fn failed(what: &str, path: &Path, e: &io::Error) -> CopyError {
    CopyError::Failed(format!(
        "{what} \"{}\" failed: {}",
        path.display(),
        os_error(e)
    ))
}

/// Set metadata on the finished temporary file and rename it into place.
fn finish_file(
    ctx: &Ctx,
    e: &FileEntry,
    t: &Transfer,
    dir: &OwnedFd,
    file: &File,
    staging: &Staging,
    name: &[u8],
) -> Result<(), CopyError> {
    let mut plan = ctx.file_plan(e, t);
    // An unnamed file was created with its final permission bits (see `open_dest`); chmod only
    // when the umask took some away or set-id/sticky bits are wanted (or chown will run, which
    // clears set-id bits anyway).
    if staging == &Staging::Anonymous
        && plan
            .perms
            .is_some_and(|p| p & 0o7000 == 0 && p & ctx.umask == 0)
    {
        plan.perms = None;
    }
    // An unnamed file is ours: owned by our uid, and by our gid unless its directory is
    // set-group-id. Skip a chown that would change nothing.
    if staging == &Staging::Anonymous
        && plan.uid.is_none_or(|u| u == ctx.euid)
        && plan.gid.is_none_or(|g| g == ctx.egid)
        && ctx
            .root
            .as_ref()
            .is_some_and(|r| !r.dir_is_setgid(split_parent(&e.path).0))
    {
        plan.uid = None;
        plan.gid = None;
    }
    fsys::apply_meta_fd(file, &plan)
        .map_err(|err| failed("set attributes on", &ctx.display(&e.path), &err))?;
    if ctx.opts.xattrs {
        xattr::apply_fd(file, &e.xattrs)
            .map_err(|err| failed("set xattrs on", &ctx.display(&e.path), &err))?;
    }
    fsys::commit(dir, file, staging, name)
        .map_err(|err| failed("rename", &ctx.display(&e.path), &err))
}

/// Open the destination for writing: a staged new file, or the file itself with `--inplace`.
fn open_dest(
    ctx: &Ctx,
    e: &FileEntry,
    t: &Transfer,
) -> Result<(Arc<OwnedFd>, File, Staging), CopyError> {
    let (parent, name) = split_parent(&e.path);
    let dir = ctx
        .dir(parent)
        .map_err(|err| failed("opendir", &ctx.display(parent), &err))?
        .ok_or_else(|| CopyError::Failed("no destination".into()))?;
    if ctx.opts.inplace {
        let f = fsys::open_inplace(&*dir, name)
            .map_err(|err| failed("open", &ctx.display(&e.path), &err))?;
        return Ok((dir, f, Staging::InPlace));
    }
    let mode = ctx.file_plan(e, t).perms.unwrap_or(0o600);
    let (f, staging) = fsys::stage(&*dir, name, t.itemize.new, mode)
        .map_err(|err| failed("mkstemp", &ctx.display(&e.path), &err))?;
    Ok((dir, f, staging))
}

/// Files in flight on the I/O workers: a count the workers bring down when they finish, and a
/// wake-up for the receiver loop waiting for room (or for the end).
#[derive(Debug, Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl InFlight {
    /// Count one more job in flight until the returned slot is dropped: when the job ends, but
    /// also when it panics or is dropped unrun, so a loop waiting for the end never waits for
    /// a job that is gone.
    fn start(self: &Arc<Self>) -> Slot {
        self.count.fetch_add(1, Relaxed);
        Slot(self.clone())
    }

    /// Wait until fewer than `max` are in flight.
    async fn below(&self, max: usize) {
        if self.count.load(Relaxed) < max {
            return;
        }
        let _w = crate::liveness::waiting(format!(
            "receiver: waiting for one of {max} writers to finish"
        ));
        while self.count.load(Relaxed) >= max {
            self.changed.notified().await;
        }
    }
}

/// One job's place in [`InFlight`], given back when dropped.
#[derive(Debug)]
struct Slot(Arc<InFlight>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Relaxed);
        self.0.changed.notify_one();
    }
}

/// Run a worker's job (write a file, record it) in its slot. A job that panics — an event
/// sink that can no longer print because its stderr went away with the peer, say — counts as
/// an error instead of vanishing, and its slot is given back either way: the receiver loop
/// waits for every slot before it returns.
fn run_job(ctx: &Ctx, slot: Slot, job: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
        ctx.stats.errors.fetch_add(1, Relaxed);
    }
    drop(slot);
}

/// Start copying one file by path (both roles share the filesystem); the worker records the
/// result and lowers `inflight`.
fn start_local_copy(
    ctx: Arc<Ctx>,
    io: &FileIo,
    limit: Arc<RateLimit>,
    t: Transfer,
    src: PathBuf,
    inflight: Arc<InFlight>,
) {
    let ndx = t.ndx as usize;
    let progress: Option<ProgressFn> = ctx.opts.progress.then(|| {
        let ctx = ctx.clone();
        let f: ProgressFn = Arc::new(move |done| {
            ctx.sink.event(Event::Progress {
                entry: &ctx.list.entries[ndx],
                done,
                finished: false,
            })
        });
        f
    });
    type Staged = (Arc<OwnedFd>, Staging);
    let staged: Arc<std::sync::Mutex<Option<Staged>>> = Arc::default();
    let (c1, s1) = (ctx.clone(), staged.clone());
    let prepare = move || -> Result<Prepared, CopyError> {
        let e = &c1.list.entries[ndx];
        let src = match File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&src)
        {
            Ok(f) => f,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(CopyError::Vanished),
            Err(err) => return Err(failed("send_files failed to open", &src, &err)),
        };
        // The size from the scan: one fstat fewer per file. A file that changed size since is
        // copied up to that size or its new end, whichever comes first.
        let len = e.size;
        let (dir, dst, staging) = open_dest(&c1, e, &t)?;
        if let Ok(mut s) = s1.lock() {
            *s = Some((dir, staging));
        }
        Ok(Prepared { src, dst, len })
    };
    let (c2, s2) = (ctx.clone(), staged);
    let finish = move |p: Prepared, moved: io::Result<u64>| -> Result<u64, CopyError> {
        let e = &c2.list.entries[ndx];
        let Some((dir, staging)) = s2.lock().ok().and_then(|mut s| s.take()) else {
            return Err(CopyError::Failed("internal: copy not staged".into()));
        };
        let n = match moved {
            Ok(n) => n,
            Err(err) => {
                fsys::discard(&*dir, &staging);
                return Err(failed("write", &c2.display(&e.path), &err));
            }
        };
        if c2.opts.inplace {
            p.dst.set_len(n)?;
        }
        let (_, name) = split_parent(&e.path);
        finish_file(&c2, e, &t, &dir, &p.dst, &staging, name)
            .inspect_err(|_| fsys::discard(&*dir, &staging))?;
        Ok(n)
    };
    let slot = inflight.start();
    io.spawn_copy(
        prepare,
        finish,
        limit,
        progress,
        move |r: Result<u64, CopyError>| {
            if let Ok(n) = &r {
                ctx.stats.local_copied.fetch_add(*n, Relaxed);
            }
            run_job(&ctx, slot, || record(&ctx, t, r));
        },
    );
}

/// The receiver's index of an old version of a file: where each of its tree's nodes is.
#[derive(Debug, Default)]
struct BasisIndex {
    ranges: HashMap<[u8; 32], (u64, u64)>,
    /// What the old file was when indexed: if it is not that any more when the new file is
    /// rebuilt from it, the ranges lie.
    stamp: Option<BasisStamp>,
    /// The old file: the entry's own path, or another destination file for a new entry.
    path: Vec<u8>,
}

/// Whether an indexed old file is still what was indexed.
enum Basis {
    Same,
    /// Only its change time moved.
    Touched,
    Changed,
}

/// Inode, size, modification and change times of an indexed old file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BasisStamp([i64; 6]);

impl BasisStamp {
    /// Inode, size and modification time: what changes when the content does (unless the
    /// modification time is set back, which also moves the change time).
    fn content(&self) -> [i64; 4] {
        [self.0[0], self.0[1], self.0[2], self.0[3]]
    }

    fn of(st: &Stat) -> Self {
        BasisStamp([
            st.st_ino as i64,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec as i64,
            st.st_ctime,
            st.st_ctime_nsec as i64,
        ])
    }
}

/// Files at least this large that replace an old version of themselves are updated by delta
/// (an unchanged one then costs its root alone).
const SMALL_DELTA_MIN: u64 = 1;

/// Chunk the old versions of the files to update by delta, in parallel: an index for every
/// job, in order (empty where the old file could not be read: then every chunk is fetched).
fn index_bases(ctx: &Ctx, jobs: &[(u32, Vec<u8>)]) -> Vec<(u32, Arc<BasisIndex>)> {
    use rayon::prelude::*;
    let index =
        |(ndx, basis): &(u32, Vec<u8>)| (*ndx, index_basis(ctx, *ndx, basis).unwrap_or_default());
    // Small files one after the other: waking the other cores costs more than they would
    // save (a large file is cut and hashed on all cores by itself).
    let bytes: u64 = jobs
        .iter()
        .map(|(n, _)| ctx.list.entries[*n as usize].size)
        .sum();
    if bytes < 16 << 20 {
        return jobs.iter().map(index).collect();
    }
    jobs.par_iter().map(index).collect()
}

/// Chunk one old version.
fn index_basis(ctx: &Ctx, ndx: u32, basis: &[u8]) -> Option<Arc<BasisIndex>> {
    let e = &ctx.list.entries[ndx as usize];
    let (parent, name) = split_parent(basis);
    let dir = ctx.dir(parent).ok()??;
    let fd = rustix::fs::openat(
        &*dir,
        std::ffi::OsStr::from_bytes(name),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let stamp = rustix::fs::fstat(&fd).ok().map(|st| BasisStamp::of(&st));
    let chunks = chunk_file(&File::from(fd), delta_params(e.size, ctx.opts.chunk_avg)).ok()?;
    let tree = ChunkTree::build(&chunks, DEFAULT_FANOUT_BITS);
    Some(Arc::new(BasisIndex {
        ranges: tree.ranges(),
        stamp,
        path: basis.to_vec(),
    }))
}

/// One file's top-down exchange on the receiving side: the sender's tree as far as it has
/// been shown, in file order, each node marked while its expansion is outstanding.
struct ReceiverDelta {
    transfer: Transfer,
    basis: Arc<BasisIndex>,
    size: u64,
    pieces: Vec<NodeRef>,
    pending: Vec<bool>,
    /// The sender's root (`None`: an empty file); every expansion is checked against it.
    root: Option<NodeRef>,
    started: bool,
    outstanding: usize,
    fetching: bool,
}

impl ReceiverDelta {
    fn new(transfer: Transfer, basis: Arc<BasisIndex>, size: u64) -> Self {
        ReceiverDelta {
            transfer,
            basis,
            size,
            pieces: Vec::new(),
            pending: Vec::new(),
            root: None,
            started: false,
            outstanding: 0,
            fetching: false,
        }
    }

    fn known(&self, n: &NodeRef) -> bool {
        self.basis
            .ranges
            .get(&n.hash)
            .is_some_and(|&(_, len)| len == n.size)
    }

    /// Take one `Nodes` answer; true when no expansion is outstanding any more.
    fn answer(&mut self, groups: Vec<Vec<NodeRef>>) -> Result<bool, SyncError> {
        let bad = |why: &str| -> SyncError { DecodeError::invalid("nodes", why.to_owned()).into() };
        if !self.started {
            self.started = true;
            let [root] = <[Vec<NodeRef>; 1]>::try_from(groups)
                .map_err(|_| bad("expected the root alone"))?;
            if root.len() > 1 {
                return Err(bad("more than one root"));
            }
            self.root = root.first().copied();
            self.pending = vec![false; root.len()];
            self.pieces = root;
        } else {
            if self.outstanding == 0 {
                return Err(bad("nodes nobody asked for"));
            }
            self.outstanding -= 1;
            let mut groups = groups.into_iter();
            let mut pieces = Vec::with_capacity(self.pieces.len());
            let mut pending = Vec::with_capacity(self.pieces.len());
            let mut answered = 0usize;
            let want = groups.len();
            for (n, p) in self.pieces.iter().zip(&self.pending) {
                if *p && answered < want {
                    let kids = groups.next().ok_or_else(|| bad("too few groups"))?;
                    let sum: u64 = kids.iter().map(|k| k.size).sum();
                    if kids.is_empty()
                        || sum != n.size
                        || kids.iter().any(|k| k.size == 0 || k.level + 1 != n.level)
                    {
                        return Err(bad("children do not add up to their parent"));
                    }
                    // The children must hash to the parent: the root then vouches for every
                    // node and chunk the rebuilt file is made of.
                    if node_hash(n.level, &kids) != n.hash {
                        return Err(bad("children do not hash to their parent"));
                    }
                    pending.extend(std::iter::repeat_n(false, kids.len()));
                    pieces.extend(kids);
                    answered += 1;
                } else {
                    pieces.push(*n);
                    pending.push(*p);
                }
            }
            if answered != want {
                return Err(bad("more groups than nodes asked"));
            }
            // At most one piece per 64 bytes (FastCDC's smallest chunk): a peer cannot make
            // us hold more than the file justifies.
            if pieces.len() as u64 > self.size / 64 + 16 {
                return Err(bad("more nodes than the file can have"));
            }
            self.pieces = pieces;
            self.pending = pending;
        }
        Ok(self.outstanding == 0)
    }

    /// The frames for the next round: expansions of unknown interior nodes, or (when every
    /// piece is known or a chunk) the fetch of the unknown chunks, after which data flows.
    fn next_frames(&mut self, ndx: u32) -> Vec<Frame> {
        let mut expand = Vec::new();
        for (i, n) in self.pieces.iter().enumerate() {
            if n.level > 0 && !self.known(n) {
                self.pending[i] = true;
                expand.push(n.hash);
            }
        }
        if !expand.is_empty() {
            let frames: Vec<Frame> = expand
                .chunks(MAX_EXPAND)
                .map(|c| Frame::Expand {
                    ndx,
                    hashes: c.to_vec(),
                })
                .collect();
            self.outstanding = frames.len();
            return frames;
        }
        let fetch: Vec<[u8; 32]> = self
            .pieces
            .iter()
            .filter(|n| !self.known(n))
            .map(|n| n.hash)
            .collect();
        self.fetching = true;
        let mut frames: Vec<Frame> = fetch
            .chunks(MAX_FETCH)
            .map(|c| Frame::Fetch {
                ndx,
                hashes: c.to_vec(),
                last: false,
            })
            .collect();
        match frames.last_mut() {
            Some(Frame::Fetch { last, .. }) => *last = true,
            _ => frames.push(Frame::Fetch {
                ndx,
                hashes: vec![],
                last: true,
            }),
        }
        frames
    }
}

/// Rebuild a file from its old version and the fetched chunks (in piece order), then put it in
/// place. What is copied from the old file was indexed from it (and the old file must still be
/// what was indexed); every fetched chunk must match its hash; every node was checked against
/// its parent up to the root the sender ends with. Runs of old data are copied in the kernel.
fn receive_delta(
    ctx: &Ctx,
    t: Transfer,
    d: &ReceiverDelta,
    mut rx: mpsc::Receiver<Chunk>,
) -> Result<u64, CopyError> {
    let e = &ctx.list.entries[t.ndx as usize];
    let _w = writer_board(e);
    rebuild(ctx, t, d, || rx.blocking_recv())
}

/// [`receive_delta`]'s work, with the fetched chunks (then the sender's `End`) from `next`:
/// a writer's channel, or the chunks of a small file buffered whole.
fn rebuild(
    ctx: &Ctx,
    t: Transfer,
    d: &ReceiverDelta,
    mut next: impl FnMut() -> Option<Chunk>,
) -> Result<u64, CopyError> {
    use std::os::unix::fs::FileExt;
    let e = &ctx.list.entries[t.ndx as usize];
    let (_, name) = split_parent(&e.path);
    let (dir, file, staging) = open_dest(ctx, e, &t)?;
    let fail = |msg: String| {
        fsys::discard(&*dir, &staging);
        CopyError::Failed(msg)
    };
    let shown = ctx.display(&e.path);
    let (basis_parent, basis_name) = split_parent(&d.basis.path);
    let old = ctx
        .dir(basis_parent)
        .and_then(|bd| {
            let bd = bd.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            rustix::fs::openat(
                &*bd,
                std::ffi::OsStr::from_bytes(basis_name),
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(io::Error::from)
        })
        .map(File::from);
    let old = match old {
        Ok(f) => Some(f),
        Err(_) if d.basis.ranges.is_empty() => None,
        Err(err) => return Err(fail(format!("open basis \"{}\": {err}", shown.display()))),
    };
    // Whether the old file is still what was indexed: its content surely (`Same`), or
    // perhaps (`Touched`: only its change time moved — a hard link to it was replaced, its
    // mode set — and the rebuilt file is then checked whole against the root).
    let still = |old: &File| {
        let now = rustix::fs::fstat(old).ok().map(|st| BasisStamp::of(&st));
        match (now, d.basis.stamp) {
            (Some(a), Some(b)) if a == b => Basis::Same,
            (Some(a), Some(b)) if a.content() == b.content() => Basis::Touched,
            _ => Basis::Changed,
        }
    };
    let mut touched = false;
    let changed = || {
        fail(format!(
            "\"{}\": the old file changed during the update (file left unchanged)",
            shown.display()
        ))
    };
    if let Some(o) = &old {
        if !d.basis.ranges.is_empty() {
            match still(o) {
                Basis::Same => {}
                Basis::Touched => touched = true,
                Basis::Changed => return Err(changed()),
            }
        }
    }
    let (mut literal, mut matched) = (0u64, 0u64);
    // A pending run of old data: (old offset, new offset, length).
    let mut run: Option<(u64, u64, u64)> = None;
    let flush = |run: &mut Option<(u64, u64, u64)>| -> Result<(), String> {
        if let (Some((from, to, len)), Some(o)) = (run.take(), &old) {
            let n = super::io::copy_range_at(o, from, &file, to, len)
                .map_err(|err| format!("copy from basis: {err}"))?;
            if n != len {
                return Err("the old file shrank during the update".into());
            }
        }
        Ok(())
    };
    let mut at = 0u64;
    for n in &d.pieces {
        match d.basis.ranges.get(&n.hash) {
            Some(&(off, len)) if len == n.size && old.is_some() => {
                run = match run {
                    Some((from, to, l)) if from + l == off => Some((from, to, l + len)),
                    other => {
                        let mut other = other;
                        flush(&mut other).map_err(&fail)?;
                        Some((off, at, len))
                    }
                };
                matched += len;
            }
            _ => {
                flush(&mut run).map_err(&fail)?;
                let bytes = match next() {
                    Some(Chunk::Data(bytes)) => bytes,
                    Some(Chunk::Abandon) => {
                        fsys::discard(&*dir, &staging);
                        return Err(CopyError::Abandoned);
                    }
                    None => {
                        return Err(fail(format!(
                            "connection closed while receiving \"{}\"",
                            shown.display()
                        )))
                    }
                    Some(Chunk::End(_)) => {
                        return Err(fail(format!(
                            "sender ended \"{}\" before its chunks (file left unchanged)",
                            shown.display()
                        )))
                    }
                };
                if n.level != 0
                    || bytes.len() as u64 != n.size
                    || *blake3::hash(&bytes).as_bytes() != n.hash
                {
                    return Err(fail(format!(
                        "\"{}\": a received chunk does not match its hash (file left unchanged)",
                        shown.display()
                    )));
                }
                file.write_all_at(&bytes, at)
                    .map_err(|err| fail(format!("write: {err}")))?;
                literal += bytes.len() as u64;
                crate::liveness::bump();
            }
        }
        at += n.size;
    }
    flush(&mut run).map_err(&fail)?;
    if let Some(o) = &old {
        if !d.basis.ranges.is_empty() {
            match still(o) {
                Basis::Same => {}
                Basis::Touched => touched = true,
                Basis::Changed => return Err(changed()),
            }
        }
    }
    let root = d
        .root
        .unwrap_or_else(|| ChunkTree::build(&[], DEFAULT_FANOUT_BITS).root());
    if touched && matched > 0 {
        // What was copied from the old file is not vouched for by its index any more: the
        // rebuilt file must itself hash to the root.
        let params = delta_params(e.size, ctx.opts.chunk_avg);
        let rebuilt = chunk_file(&file, params)
            .map(|c| ChunkTree::build(&c, DEFAULT_FANOUT_BITS).root())
            .map_err(|err| fail(format!("read back: {err}")))?;
        if rebuilt != root {
            return Err(changed());
        }
    }
    match next() {
        Some(Chunk::End(hash)) if hash == root.hash && at == root.size => {}
        Some(Chunk::Abandon) => {
            fsys::discard(&*dir, &staging);
            return Err(CopyError::Abandoned);
        }
        None => {
            return Err(fail(format!(
                "connection closed while receiving \"{}\"",
                shown.display()
            )))
        }
        Some(Chunk::Data(_)) => {
            return Err(fail(format!(
                "\"{}\": the sender sent more chunks than were asked for (file left unchanged)",
                shown.display()
            )))
        }
        Some(Chunk::End(_)) => {
            return Err(fail(format!(
            "\"{}\": the rebuilt file does not match the sender's tree root (file left unchanged)",
            shown.display()
        )))
        }
    }
    finish_file(ctx, e, &t, &dir, &file, &staging, name)
        .inspect_err(|_| fsys::discard(&*dir, &staging))?;
    ctx.stats.matched.fetch_add(matched, Relaxed);
    Ok(literal)
}

enum Chunk {
    Data(Vec<u8>),
    End([u8; 32]),
    /// The file's lane was lost: discard what was written, it is asked for again.
    Abandon,
}

/// Where an arriving file's data goes: a writer on its own thread (large files, delta
/// rebuilds), or a buffer in the receiver's loop (small whole files, written in batches when
/// complete: no thread, channel or wake-up per file).
enum Receiving {
    Writer(mpsc::Sender<Chunk>),
    Buffer(Vec<u8>),
    /// A small delta-exchanged file: its fetched chunks so far (it is rebuilt when complete).
    Chunks(Box<ReceiverDelta>, Vec<Vec<u8>>, u64),
}

/// Whole files up to this size are buffered in the loop and written in batches.
const SMALL_FILE: u64 = 128 << 10;
/// A buffered file that grows past this (it grew since it was listed) gets a writer instead.
const SMALL_BUFFER_MAX: usize = 4 * SMALL_FILE as usize;
/// A batch of complete small files goes to a worker at about this many files or bytes.
const BATCH_FILES: usize = 64;
const BATCH_BYTES: usize = 4 << 20;

/// A complete small file, waiting in a batch to be written: its data, or (delta) the chunks
/// it is rebuilt from with its old version; and the sender's hash (of the data, or the root
/// of its chunk tree).
enum SmallFile {
    Whole {
        t: Transfer,
        data: Vec<u8>,
        hash: [u8; 32],
    },
    Delta {
        d: Box<ReceiverDelta>,
        chunks: Vec<Vec<u8>>,
        hash: [u8; 32],
    },
}

impl SmallFile {
    fn transfer(&self) -> Transfer {
        match self {
            SmallFile::Whole { t, .. } => *t,
            SmallFile::Delta { d, .. } => d.transfer,
        }
    }

    fn len(&self) -> usize {
        match self {
            SmallFile::Whole { data, .. } => data.len(),
            SmallFile::Delta { d, .. } => d.size as usize,
        }
    }
}

/// The files whose data is arriving: each one's stream and where its data goes, and how many
/// are open on each stream.
///
/// The receiver's hello gives the sender a window (`Caps::window`): at most that many
/// files open at once on one stream. Writers are sized to the window on every stream, so a
/// file that begins always finds a writer free or about to be (one that has all its data and
/// is finishing); waiting for it never waits on frames queued behind the wait. A sender over
/// its window is refused rather than waited for.
struct OpenFiles {
    files: HashMap<u32, (u8, Transfer, Receiving)>,
    per_stream: Vec<usize>,
    window: usize,
}

impl OpenFiles {
    fn new(streams: usize, window: usize) -> Self {
        OpenFiles {
            files: HashMap::new(),
            per_stream: vec![0; streams],
            window,
        }
    }

    /// Count one more file (or part) open on `stream`; an error if the sender went over its
    /// window there.
    fn reserve(&mut self, stream: u8) -> Result<(), SyncError> {
        let n = self
            .per_stream
            .get_mut(usize::from(stream))
            .ok_or_else(|| DecodeError::invalid("data", format!("no stream {stream}")))?;
        if *n >= self.window {
            return Err(DecodeError::invalid(
                "data",
                format!(
                    "the sender began more than {} files at once on stream {stream}",
                    self.window
                ),
            )
            .into());
        }
        *n += 1;
        Ok(())
    }

    /// One file (or part) on `stream` ended.
    fn release(&mut self, stream: u8) {
        if let Some(n) = self.per_stream.get_mut(usize::from(stream)) {
            *n = n.saturating_sub(1);
        }
    }

    fn insert(&mut self, stream: u8, t: Transfer, to: Receiving) {
        self.files.insert(t.ndx, (stream, t, to));
    }

    fn get_mut(&mut self, ndx: u32) -> Option<(&Transfer, &mut Receiving)> {
        self.files.get_mut(&ndx).map(|(_, t, r)| (&*t, r))
    }

    fn contains(&self, ndx: u32) -> bool {
        self.files.contains_key(&ndx)
    }

    /// `ndx` ended (or was given up): its transfer and where its data went, its stream's
    /// count lowered.
    fn end(&mut self, ndx: u32) -> Option<(Transfer, Receiving)> {
        let (stream, t, to) = self.files.remove(&ndx)?;
        self.release(stream);
        Some((t, to))
    }

    fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Close every channel: each writer sees the end of its data and discards its file.
    fn close_all(&mut self) {
        self.files.clear();
        self.per_stream.iter_mut().for_each(|n| *n = 0);
    }
}

/// Receive one file's streamed bytes on a blocking thread: temp file, BLAKE3 check, rename.
fn receive_stream(ctx: &Ctx, t: Transfer, mut rx: mpsc::Receiver<Chunk>) -> Result<u64, CopyError> {
    let e = &ctx.list.entries[t.ndx as usize];
    let _w = writer_board(e);
    let (dir, mut file, staging) = open_dest(ctx, e, &t)?;
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        match chunk {
            Chunk::Data(b) => {
                if let Err(err) = file.write_all(&b) {
                    fsys::discard(&*dir, &staging);
                    return Err(failed("write", &ctx.display(&e.path), &err));
                }
                hasher.update(&b);
                written += b.len() as u64;
                crate::liveness::bump();
                if ctx.opts.progress {
                    ctx.sink.event(Event::Progress {
                        entry: e,
                        done: written,
                        finished: false,
                    });
                }
            }
            Chunk::Abandon => {
                fsys::discard(&*dir, &staging);
                return Err(CopyError::Abandoned);
            }
            Chunk::End(hash) => {
                if hash != *hasher.finalize().as_bytes() {
                    fsys::discard(&*dir, &staging);
                    return Err(CopyError::Failed(format!(
                        "\"{}\": BLAKE3 of received data does not match the sender's (file left unchanged)",
                        ctx.display(&e.path).display()
                    )));
                }
                if ctx.opts.inplace {
                    file.set_len(written)?;
                }
                let (_, name) = split_parent(&e.path);
                finish_file(ctx, e, &t, &dir, &file, &staging, name)
                    .inspect_err(|_| fsys::discard(&*dir, &staging))?;
                return Ok(written);
            }
        }
    }
    // The stream ended inside the file.
    if ctx.opts.partial {
        let (_, name) = split_parent(&e.path);
        let _ = fsys::commit(&*dir, &file, &staging, name);
    } else {
        fsys::discard(&*dir, &staging);
    }
    Err(CopyError::Failed(format!(
        "connection closed while receiving \"{}\"",
        ctx.display(&e.path).display()
    )))
}

/// A writer's place on the wait board for as long as it has a file open.
fn writer_board(e: &FileEntry) -> crate::liveness::Waiting {
    crate::liveness::waiting(format!(
        "receiver: writing \"{}\" as its data comes",
        String::from_utf8_lossy(&e.path)
    ))
}

/// A destination file being written: its directory, the open file, how it is staged.
type StagedFile = (Arc<OwnedFd>, File, Staging);

/// With lanes, a whole file at least this large is asked for in parts, one per stream.
const PART_MIN: u64 = 32 << 20;

/// A file received in parts over several streams: one staged file, each part written at its
/// offset by its own writer; the writer that completes the last part commits it. Dropped
/// uncommitted (a failure, an abandoned session), it removes what was staged.
struct PartedFile {
    t: Transfer,
    staged: std::sync::OnceLock<Result<StagedFile, String>>,
    remaining: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicBool,
    committed: std::sync::atomic::AtomicBool,
}

impl PartedFile {
    fn new(t: Transfer, parts: usize) -> Self {
        PartedFile {
            t,
            staged: std::sync::OnceLock::new(),
            remaining: std::sync::atomic::AtomicUsize::new(parts),
            failed: std::sync::atomic::AtomicBool::new(false),
            committed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Report the file failed (once).
    fn fail(&self, ctx: &Ctx, message: String) {
        if !self.failed.swap(true, Relaxed) {
            record(ctx, self.t, Err(CopyError::Failed(message)));
        }
    }
}

impl Drop for PartedFile {
    fn drop(&mut self) {
        if !self.committed.load(Relaxed) {
            if let Some(Ok((dir, _, staging))) = self.staged.get() {
                fsys::discard(&**dir, staging);
            }
        }
    }
}

/// One part of a [`PartedFile`]: where it is, which stream it was asked on, whether that
/// stream has sent all of it, and its writer's channel while it arrives.
struct PartSlot {
    offset: u64,
    len: u64,
    lane: u8,
    answered: bool,
    tx: Option<mpsc::Sender<Chunk>>,
}

/// A part whose stream was lost and that waits for a free one.
const WAITING: u8 = u8::MAX;

impl PartSlot {
    fn request(&self, ndx: u32, iflags: u16) -> Frame {
        Frame::RangeRequest {
            ndx,
            iflags,
            lane: self.lane,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// A file arriving in parts: the shared staged file and its parts.
struct Parted {
    file: Arc<PartedFile>,
    parts: Vec<PartSlot>,
}

impl Parted {
    /// The streams carrying an unanswered part of this file.
    fn busy(&self) -> Vec<u8> {
        self.parts
            .iter()
            .filter(|s| !s.answered && s.lane != WAITING)
            .map(|s| s.lane)
            .collect()
    }

    /// Take one frame about this file that arrived on `lane`; `true` once every part has been
    /// answered (or the file failed) and the entry can go. A part being received counts as
    /// an open file on its stream.
    #[allow(clippy::too_many_arguments)]
    async fn take(
        &mut self,
        ctx: &Arc<Ctx>,
        inflight: &Arc<InFlight>,
        writers: usize,
        open: &mut OpenFiles,
        lane: u8,
        frame: Frame,
        again: &mut Option<Frame>,
    ) -> Result<bool, SyncError> {
        let Some(slot) = self
            .parts
            .iter_mut()
            .find(|s| s.lane == lane && !s.answered)
        else {
            return Ok(false);
        };
        match frame {
            Frame::DataBegin { size, .. } if size == slot.len && slot.tx.is_none() => {
                open.reserve(lane)?;
                inflight.below(writers).await;
                let (tx, rx) = mpsc::channel(16);
                slot.tx = Some(tx);
                let (c, pf, offset, len) = (ctx.clone(), self.file.clone(), slot.offset, slot.len);
                let job = inflight.start();
                tokio::task::spawn_blocking(move || {
                    run_job(&c, job, || receive_part(&c, &pf, offset, len, rx));
                });
                Ok(false)
            }
            Frame::Data { bytes, .. } => {
                if let Some(tx) = &slot.tx {
                    let _ = tx.send(Chunk::Data(bytes)).await;
                }
                Ok(false)
            }
            Frame::DataEnd { hash, .. } if slot.tx.is_some() => {
                if let Some(tx) = slot.tx.take() {
                    open.release(lane);
                    let _ = tx.send(Chunk::End(hash)).await;
                }
                slot.answered = true;
                // A part waiting for a stream takes this one.
                if let Some(w) = self.parts.iter_mut().find(|s| s.lane == WAITING) {
                    w.lane = lane;
                    *again = Some(w.request(self.file.t.ndx, self.file.t.itemize.to_flags()));
                }
                Ok(self.parts.iter().all(|s| s.answered))
            }
            other => {
                let message = match other {
                    Frame::FileFailed { message, .. } => message,
                    Frame::Vanished { .. } => {
                        // Reported like a whole file's vanishing.
                        if !self.file.failed.swap(true, Relaxed) {
                            record(ctx, self.file.t, Err(CopyError::Vanished));
                        }
                        String::new()
                    }
                    f => format!("unexpected answer for a part: {f:?}"),
                };
                if !message.is_empty() {
                    self.file.fail(ctx, message);
                }
                for s in &mut self.parts {
                    if let Some(tx) = s.tx.take() {
                        open.release(s.lane);
                        let _ = tx.send(Chunk::Abandon).await;
                    }
                }
                Ok(true)
            }
        }
    }

    /// Close every part's channel (the session is over): its writer stops.
    fn close_all(&mut self) {
        for s in &mut self.parts {
            s.tx = None;
        }
    }
}

/// Write one part at its offset; the writer that completes the last part of a sound file
/// commits it and records it.
fn receive_part(ctx: &Ctx, pf: &PartedFile, offset: u64, len: u64, mut rx: mpsc::Receiver<Chunk>) {
    use std::os::unix::fs::FileExt;
    let e = &ctx.list.entries[pf.t.ndx as usize];
    let _w = writer_board(e);
    let staged = pf.staged.get_or_init(|| {
        open_dest(ctx, e, &pf.t).map_err(|err| match err {
            CopyError::Failed(m) => m,
            _ => format!("cannot open \"{}\"", ctx.display(&e.path).display()),
        })
    });
    let (dir, file, staging) = match staged {
        Ok(s) => s,
        Err(m) => return pf.fail(ctx, m.clone()),
    };
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        match chunk {
            Chunk::Data(b) => {
                if written + b.len() as u64 > len {
                    return pf.fail(
                        ctx,
                        format!(
                            "\"{}\": the sender sent more than the part asked for",
                            ctx.display(&e.path).display()
                        ),
                    );
                }
                if let Err(err) = file.write_all_at(&b, offset + written) {
                    let msg = match failed("write", &ctx.display(&e.path), &err) {
                        CopyError::Failed(m) => m,
                        _ => String::new(),
                    };
                    return pf.fail(ctx, msg);
                }
                hasher.update(&b);
                written += b.len() as u64;
                crate::liveness::bump();
            }
            Chunk::Abandon => return,
            Chunk::End(hash) => {
                if hash != *hasher.finalize().as_bytes() || written != len {
                    return pf.fail(ctx, format!(
                        "\"{}\": BLAKE3 of a received part does not match the sender's (file left unchanged)",
                        ctx.display(&e.path).display()
                    ));
                }
                if pf.remaining.fetch_sub(1, Relaxed) == 1 && !pf.failed.load(Relaxed) {
                    let (_, name) = split_parent(&e.path);
                    match finish_file(ctx, e, &pf.t, dir, file, staging, name) {
                        Ok(()) => {
                            pf.committed.store(true, Relaxed);
                            record(ctx, pf.t, Ok(e.size));
                        }
                        Err(CopyError::Failed(m)) => pf.fail(ctx, m),
                        Err(_) => {}
                    }
                }
                return;
            }
        }
    }
}

fn record(ctx: &Ctx, t: Transfer, r: Result<u64, CopyError>) {
    let e = &ctx.list.entries[t.ndx as usize];
    match r {
        Ok(n) => {
            ctx.stats.transferred.fetch_add(1, Relaxed);
            ctx.stats.transferred_size.fetch_add(e.size, Relaxed);
            ctx.stats.literal.fetch_add(n, Relaxed);
            if t.itemize.new {
                ctx.stats.created.add(FileKind::File);
            }
            if ctx.opts.progress {
                ctx.sink.event(Event::Progress {
                    entry: e,
                    done: n,
                    finished: true,
                });
            }
            ctx.item(e, t.itemize);
        }
        Err(CopyError::Vanished) => {
            ctx.stats.vanished.fetch_add(1, Relaxed);
            ctx.warn(format!(
                "file has vanished: \"{}\"",
                String::from_utf8_lossy(&e.path)
            ));
        }
        Err(CopyError::Failed(msg)) => {
            ctx.stats.errors.fetch_add(1, Relaxed);
            ctx.warn(msg);
        }
        Err(CopyError::Abandoned) => {}
    }
}

/// `lane` is lost: abandon the files that were arriving on it and ask for everything it still
/// owed on the least loaded stream left.
#[allow(clippy::too_many_arguments)]
async fn relaunch(
    ctx: &Ctx,
    lanes: &mut ReceiverLanes,
    lane: u8,
    on_lane: &mut HashMap<u32, (u8, Transfer)>,
    pending: &mut HashMap<u32, Transfer>,
    open: &mut OpenFiles,
    parted: &mut HashMap<u32, Parted>,
    control_load: &mut u64,
    fsink: &FrameSink,
) -> Result<(), SyncError> {
    lanes.lose(lane);
    let mut buf = Vec::new();
    // Whether the lost stream owed anything (parts may only wait for a free stream, so the
    // requests sent now do not say it).
    let mut owed_any = false;
    for (ndx, p) in parted.iter_mut() {
        for slot in p.parts.iter_mut().filter(|s| s.lane == lane && !s.answered) {
            if let Some(tx) = slot.tx.take() {
                open.release(lane);
                let _ = tx.send(Chunk::Abandon).await;
            }
            slot.lane = WAITING;
            owed_any = true;
        }
        // Ask again on streams that carry no other part of this file; the rest wait for a
        // part to finish and take its stream.
        let iflags = p.file.t.itemize.to_flags();
        for i in 0..p.parts.len() {
            if p.parts[i].lane != WAITING {
                continue;
            }
            let busy: Vec<u8> = p.busy();
            if let Some(to) = lanes.pick_excluding(p.parts[i].len, control_load, &busy) {
                p.parts[i].lane = to;
                p.parts[i].request(*ndx, iflags).encode(&mut buf);
            }
        }
    }
    let owed: Vec<(u32, Transfer)> = on_lane
        .iter()
        .filter(|(_, (n, _))| *n == lane)
        .map(|(ndx, (_, t))| (*ndx, *t))
        .collect();
    for (ndx, t) in owed {
        if let Some((_, Receiving::Writer(tx))) = open.end(ndx) {
            let _ = tx.send(Chunk::Abandon).await;
        }
        pending.insert(ndx, t);
        let size = ctx.list.entries[ndx as usize].size;
        let to = lanes.pick(size, control_load);
        let iflags = t.itemize.to_flags();
        if to > 0 {
            on_lane.insert(ndx, (to, t));
            Frame::LaneRequest {
                ndx,
                iflags,
                lane: to,
            }
            .encode(&mut buf);
        } else {
            on_lane.remove(&ndx);
            Frame::Request { ndx, iflags }.encode(&mut buf);
        }
    }
    owed_any |= !buf.is_empty();
    if owed_any {
        ctx.sink.event(Event::Info {
            message: format!(
                "stream {lane} of {} was lost: asked again on the others for what it still owed",
                lanes.count() + 1
            ),
        });
    }
    if !buf.is_empty() {
        fsink.send_encoded(buf).await?;
    }
    Ok(())
}

/// Each hard-link group's leader: its last member in list order (the one rsync transfers).
fn group_leaders(list: &FileList) -> HashMap<u32, usize> {
    let mut leader = HashMap::new();
    for (i, e) in list.entries.iter().enumerate() {
        if e.hardlink_group != 0 {
            leader.insert(e.hardlink_group, i);
        }
    }
    leader
}

/// Hard-link followers to their group's leader, once the leaders are in place.
fn link_followers(ctx: &Ctx, plan: &Plan) {
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
fn fix_dirs(ctx: &Ctx, plan: &Plan) {
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

/// Decide where the list lands: a directory (created if missing), or — for a single file to
/// a path that is not a directory — that file name.
fn open_destination(
    job: &ReceiverJob,
    list: &mut FileList,
) -> Result<(Option<Arc<DestRoot>>, bool), SyncError> {
    let dest = &job.dest;
    let slash = dest.as_os_str().as_bytes().ends_with(b"/");
    let single_file = list.entries.len() == 1
        && list.entries[0].kind != FileKind::Dir
        && !list.entries[0].path.contains(&b'/');
    if single_file && !slash && !dest.is_dir() {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .ok_or_else(|| SyncError::Usage(format!("bad destination {}", dest.display())))?;
        list.entries[0].path = name.as_bytes().to_vec();
        let root = DestRoot::open(&parent).map_err(|e| SyncError::Select {
            what: "change_dir#3",
            path: parent.clone(),
            source: e,
        })?;
        return Ok((Some(Arc::new(root)), false));
    }
    if list.entries.is_empty() {
        return Ok((None, false));
    }
    let mut created = false;
    match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(SyncError::Select {
                what: "destination is not a directory:",
                path: dest.clone(),
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if job.opts.dry_run {
                job.sink.event(Event::Info {
                    message: format!(
                        "created directory {}",
                        dest.display().to_string().trim_end_matches('/')
                    ),
                });
                return Ok((None, true));
            }
            std::fs::create_dir(dest).map_err(|e| SyncError::FileIo {
                what: "mkdir",
                path: dest.clone(),
                source: e,
            })?;
            created = true;
            job.sink.event(Event::Info {
                message: format!(
                    "created directory {}",
                    dest.display().to_string().trim_end_matches('/')
                ),
            });
        }
        Err(e) => {
            return Err(SyncError::Select {
                what: "change_dir#3",
                path: dest.clone(),
                source: e,
            })
        }
    }
    let root = DestRoot::open(dest).map_err(|e| SyncError::Select {
        what: "change_dir#3",
        path: dest.clone(),
        source: e,
    })?;
    Ok((Some(Arc::new(root)), created))
}

async fn drive(
    conn: &dyn Connection,
    open: bool,
    fsink: &FrameSink,
    source: &mut FrameSource,
    job: ReceiverJob,
) -> Result<(), SyncError> {
    let token = shared_fs_token();
    let am_root = rustix::process::geteuid().is_root();
    let shared_capable = conn.capabilities().shared_filesystem && !job.opts.stream_data;
    let offer = TreeParams::for_receiver(&job.opts, am_root);
    let lane_offer = (!shared_capable)
        .then(|| lanes::offer(conn, job.opts.streams))
        .flatten();
    // Files the sender may have open at once on each stream: one writer each.
    let window = job.opts.parallelism().clamp(1, lanes::MAX_WINDOW);
    let ours = Caps {
        role: Some(Role::Receiver),
        delta: true,
        shared_fs: shared_capable.then(|| token.clone()),
        chunk_avg: job.opts.chunk_avg,
        dirtree: offer.map(|p| p.cap()),
        compress: job.opts.compress.is_some(),
        lanes: lane_offer,
        window: Some(lanes::window_cap(window)),
        keepalive: keepalive_cap(job.opts.io_timeout),
        ..Caps::default()
    };
    source.set_role("receiver");
    // The hello is waited for with the timeout too.
    source.set_timeout(job.opts.io_timeout);
    let peer = exchange_hello(fsink, source, &ours).await?;
    apply_timeouts(fsink, source, job.opts.io_timeout, &peer);
    let shared = shared_capable && peer.shared_fs.as_ref() == Some(&token);
    apply_compression(fsink, source, job.opts.compress, &peer);
    let lane_count = lanes::agreed(lane_offer, &peer);
    let delta_ok = !shared && peer.delta;
    let tree = match shared {
        false => TreeParams::negotiate(peer.dirtree, ours.dirtree),
        true => None,
    };

    let lane_pairs;
    let (mut list, complete, dest_files) = match tree {
        Some(params) => {
            // Scan the destination while the sender scans its sources.
            let (dest, opts) = (job.dest.clone(), job.opts.clone());
            let mine = tokio::task::spawn_blocking(move || {
                treelist::scan_destination(&dest, &opts, params, CANDIDATE_MIN)
            });
            let mine = async move { mine.await.ok().flatten() };
            let started = Instant::now();
            let (got, pairs) = tokio::join!(
                receive_tree(fsink, source, mine, &job.stats),
                lanes::setup(conn, open, lane_count)
            );
            let got = got?;
            lane_pairs = pairs;
            job.stats
                .flist_xfer_us
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            (got.list, Some(got.complete), got.dest_files)
        }
        None => {
            let (got, pairs) = tokio::join!(
                receive_list(source, &job.stats),
                lanes::setup(conn, open, lane_count)
            );
            lane_pairs = pairs;
            (got?, None, Vec::new())
        }
    };
    let mut lanes = (lane_count > 0)
        .then(|| ReceiverLanes::new(lane_pairs, &job.stats, job.opts.compress.is_some()));
    let (root, root_created) = open_destination(&job, &mut list)?;
    let io = FileIo::new(job.opts.io, job.opts.parallelism())?;
    // A sending client that prints what happens here asks for reports.
    let report = peer
        .report
        .then(|| Arc::new(ReportSink::new(job.sink.clone())));
    let ctx = Arc::new(Ctx {
        opts: job.opts.clone(),
        stats: job.stats.clone(),
        sink: match &report {
            Some(r) => r.clone(),
            None => job.sink.clone(),
        },
        list: Arc::new(list),
        root,
        root_created,
        ids: IdNames::default(),
        complete,
        am_root,
        euid: rustix::process::geteuid().as_raw(),
        egid: rustix::process::getegid().as_raw(),
        umask: umask(),
    });

    // Large files the destination already has may hold a new file's chunks (a rename, a
    // copy): extraneous ones that could serve so are deleted after the transfers, not before.
    let candidates = Arc::new(if ctx.opts.dry_run {
        BasisCandidates::default()
    } else {
        BasisCandidates::new(dest_files, &ctx.list, ctx.complete.as_ref())
    });
    let c = ctx.clone();
    let cands = candidates.clone();
    let plan = tokio::task::spawn_blocking(move || {
        if c.opts.delete {
            delete_extraneous(&c, &cands.deferred);
        }
        generate(&c)
    })
    .await
    .map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))?;

    if ctx.opts.dry_run {
        for t in &plan.transfers {
            let e = &ctx.list.entries[t.ndx as usize];
            ctx.stats.transferred.fetch_add(1, Relaxed);
            ctx.stats.transferred_size.fetch_add(e.size, Relaxed);
            if t.itemize.new {
                ctx.stats.created.add(FileKind::File);
            }
            ctx.item(e, t.itemize);
        }
        link_followers(&ctx, &plan);
        if let Some(r) = &report {
            r.send(fsink, &ctx.list, true).await?;
        }
        fsink.send(&Frame::Done).await?;
        expect_done(source).await?;
        return fsink
            .send(&Frame::Summary(ctx.stats.summary_counters()))
            .await;
    }

    if let Some(r) = &report {
        r.send(fsink, &ctx.list, false).await?;
    }
    // Files worth a delta exchange: ask for their trees at once, and index their old versions
    // (all cores) while the sender builds its trees; the index is awaited at the first answer.
    // A new file's basis is another destination file (see `BasisCandidates::choose`).
    let basis_of: Vec<(u32, Vec<u8>)> = if delta_ok && !ctx.opts.whole_file && !ctx.opts.inplace {
        let rewritten: HashSet<&[u8]> = plan
            .transfers
            .iter()
            .map(|t| ctx.list.entries[t.ndx as usize].path.as_slice())
            .collect();
        plan.transfers
            .iter()
            .filter_map(|t| {
                let e = &ctx.list.entries[t.ndx as usize];
                if !t.itemize.new {
                    // Its own old version: worth a delta from the smallest files up (a changed
                    // page shares most of its chunks; an unchanged one costs its root alone).
                    (e.size >= SMALL_DELTA_MIN).then(|| (t.ndx, e.path.clone()))
                } else {
                    candidates
                        .choose(e, &rewritten)
                        .map(|p| (t.ndx, p.to_vec()))
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let delta_files: HashSet<u32> = basis_of.iter().map(|(n, _)| *n).collect();
    // The old versions are indexed in request order on all cores, each index handed over as
    // it is ready: a `Nodes` answer waits only for its own file's.
    let (index_tx, mut index_rx) = mpsc::channel::<(u32, Arc<BasisIndex>)>(256);
    if !basis_of.is_empty() {
        let c = ctx.clone();
        tokio::task::spawn_blocking(move || {
            for jobs in basis_of.chunks(64) {
                for done in index_bases(&c, jobs) {
                    if index_tx.blocking_send(done).is_err() {
                        return;
                    }
                }
            }
        });
    } else {
        drop(index_tx);
    }
    let mut bases: HashMap<u32, Arc<BasisIndex>> = HashMap::new();
    // Ask for everything at once; the sender answers as it goes. With lanes, each whole file
    // goes to the least loaded stream, and which one is remembered until it has arrived (a
    // lost lane's files are asked for again).
    let mut control_load = 0u64;
    let mut on_lane: HashMap<u32, (u8, Transfer)> = HashMap::new();
    // Large files go in parts, one per stream, each written at its offset.
    let mut parted: HashMap<u32, Parted> = HashMap::new();
    let mut requests: Vec<Frame> = Vec::with_capacity(plan.transfers.len());
    let mut delta_open = 0usize;
    for t in &plan.transfers {
        let (ndx, iflags) = (t.ndx, t.itemize.to_flags());
        let size = ctx.list.entries[ndx as usize].size;
        match lanes.as_mut() {
            _ if delta_files.contains(&ndx) => {
                delta_open += 1;
                requests.push(Frame::DeltaRequest { ndx, iflags });
            }
            Some(l) if size >= PART_MIN && !ctx.opts.inplace => {
                let ways = (1 + l.live_count() as u64)
                    .min(size / (PART_MIN / 2))
                    .max(1);
                let step = size.div_ceil(ways).next_multiple_of(1 << 20);
                let mut parts = Vec::new();
                let mut offset = 0;
                let mut used = Vec::new();
                while offset < size {
                    let len = step.min(size - offset);
                    let lane = l.pick_excluding(len, &mut control_load, &used).unwrap_or(0);
                    used.push(lane);
                    requests.push(Frame::RangeRequest {
                        ndx,
                        iflags,
                        lane,
                        offset,
                        len,
                    });
                    parts.push(PartSlot {
                        offset,
                        len,
                        lane,
                        answered: false,
                        tx: None,
                    });
                    offset += len;
                }
                parted.insert(
                    ndx,
                    Parted {
                        file: Arc::new(PartedFile::new(*t, parts.len())),
                        parts,
                    },
                );
            }
            Some(l) => match l.pick(size, &mut control_load) {
                0 => requests.push(Frame::Request { ndx, iflags }),
                lane => {
                    on_lane.insert(ndx, (lane, *t));
                    requests.push(Frame::LaneRequest { ndx, iflags, lane });
                }
            },
            None => requests.push(Frame::Request { ndx, iflags }),
        }
    }
    let mut pending: HashMap<u32, Transfer> = plan
        .transfers
        .iter()
        .filter(|t| !parted.contains_key(&t.ndx))
        .map(|t| (t.ndx, *t))
        .collect();
    // With delta exchanges open, "Done" (no more requests of any kind) waits until each has
    // sent its last Fetch; with lanes, until every file has arrived (a lost lane's files are
    // asked for again). The main loop sends it then.
    let done_by_requester = delta_open == 0 && lanes.is_none();
    let req_sink = fsink.clone();
    let requester = tokio::spawn(async move {
        let mut buf = Vec::new();
        for f in requests {
            f.encode(&mut buf);
            if buf.len() >= 64 * 1024 {
                req_sink.send_encoded(std::mem::take(&mut buf)).await?;
            }
        }
        if done_by_requester {
            Frame::Done.encode(&mut buf);
        }
        req_sink.send_encoded(buf).await
    });
    let mut requester = Some(requester);

    let limit = Arc::new(RateLimit::new(if shared { ctx.opts.bwlimit } else { None }));
    // Keep the workers' queue full but bounded.
    let max_inflight = ctx.opts.parallelism() * 8;
    let inflight = Arc::new(InFlight::default());
    // Files being received at once: the sender keeps at most `window` files open on each
    // stream, so with a writer set per stream a file that begins never waits for a writer
    // that waits for data (see `OpenFiles`).
    let writers = window * (1 + usize::from(lane_count));
    let mut open = OpenFiles::new(1 + usize::from(lane_count), window);
    let mut deltas: HashMap<u32, ReceiverDelta> = HashMap::new();
    // Delta exchanges whose last Fetch was sent: their writer starts with their first data
    // (the sender opens them then, within its window).
    let mut fetched: HashMap<u32, ReceiverDelta> = HashMap::new();
    // Complete small files not yet handed to a worker, and the bound on workers for them
    // (above the stream writers: a batch never waits behind a writer that waits for frames).
    let mut batch: Vec<SmallFile> = Vec::new();
    let mut batch_bytes = 0usize;
    let batch_limit = writers + ctx.opts.parallelism();
    let unrequested = |ndx: u32| -> SyncError {
        DecodeError::invalid(
            "reply",
            format!("index {ndx} was not requested or was answered twice"),
        )
        .into()
    };
    let result = async {
        loop {
            // With lanes, everything has arrived once nothing is pending, streaming or in a
            // delta exchange: then the receiver says it wants nothing more.
            if lanes.is_some()
                && requester.is_some()
                && delta_open == 0
                && pending.is_empty()
                && open.is_empty()
                && deltas.is_empty()
                && fetched.is_empty()
                && parted.is_empty()
            {
                finish_requests(&mut requester, fsink).await?;
            }
            // About to wait for the peer: first hand what is complete to a worker.
            let waiting = !source.has_buffered_frame()
                && lanes.as_ref().is_none_or(|l| l.is_idle());
            if waiting && !batch.is_empty() {
                batch_bytes = 0;
                let files = std::mem::take(&mut batch);
                spawn_small_batch(&ctx, &inflight, batch_limit, files).await;
            }
            let (lane, frame) = match lanes.as_mut() {
                None => (0, source.expect("file data").await?),
                Some(l) => tokio::select! {
                    f = source.expect("file data") => (0, f?),
                    Some(ev) = l.next() => match ev {
                        LaneEvent::Frame(n, f) => (n, f),
                        LaneEvent::End { lane, clean } => {
                            if !clean || on_lane.values().any(|(n, _)| *n == lane) {
                                relaunch(&ctx, l, lane, &mut on_lane, &mut pending, &mut open, &mut parted, &mut control_load, fsink).await?;
                            }
                            l.lose(lane);
                            continue;
                        }
                    },
                },
            };
            // The parts of a large file: each goes to the writer of the part asked on this
            // stream; anything else about it is stale.
            if let Some(ndx) = lanes::frame_ndx(&frame).filter(|n| parted.contains_key(n)) {
                let live = lanes.as_ref().is_none_or(|l| l.is_live(lane));
                if let (true, Some(p)) = (live, parted.get_mut(&ndx)) {
                    let mut again = None;
                    if p.take(&ctx, &inflight, writers, &mut open, lane, frame, &mut again).await? {
                        parted.remove(&ndx);
                    }
                    if let Some(f) = again {
                        fsink.send(&f).await?;
                    }
                }
                continue;
            }
            // A lane's frames count only while their file is still expected there; after a
            // lane is lost, what is left of it is stale.
            if let Some(ndx) = lanes::frame_ndx(&frame) {
                let expected = on_lane.get(&ndx).map_or(0, |(n, _)| *n);
                if lane != expected || lanes.as_ref().is_some_and(|l| !l.is_live(lane)) {
                    continue;
                }
                if matches!(
                    frame,
                    Frame::DataEnd { .. } | Frame::Vanished { .. } | Frame::FileFailed { .. }
                ) {
                    on_lane.remove(&ndx);
                }
            }
            match frame {
                Frame::LaneLost { lane } => {
                    let Some(l) = lanes.as_mut() else {
                        return Err(DecodeError::invalid("frame", "lane lost without lanes").into());
                    };
                    if l.is_live(lane) {
                        l.lose(lane);
                        relaunch(&ctx, l, lane, &mut on_lane, &mut pending, &mut open, &mut parted, &mut control_load, fsink).await?;
                    }
                }
                Frame::LocalPath { ndx, path } => {
                    if !shared {
                        return Err(DecodeError::invalid(
                            "reply",
                            "local path from a peer that does not share our filesystem",
                        )
                        .into());
                    }
                    let t = pending.remove(&ndx).ok_or_else(|| unrequested(ndx))?;
                    inflight.below(max_inflight).await;
                    let src = PathBuf::from(std::ffi::OsStr::from_bytes(&path));
                    start_local_copy(ctx.clone(), &io, limit.clone(), t, src, inflight.clone());
                }
                Frame::DataBegin { ndx, size } => {
                    let t = pending.remove(&ndx).ok_or_else(|| unrequested(ndx))?;
                    open.reserve(lane)?;
                    let small = size <= SMALL_FILE
                        && ctx.list.entries[ndx as usize].size <= SMALL_FILE
                        && !ctx.opts.inplace
                        && !ctx.opts.partial;
                    let to = if small {
                        Receiving::Buffer(Vec::with_capacity(size as usize))
                    } else {
                        Receiving::Writer(
                            spawn_writer(&ctx, &inflight, writers, t, receive_stream).await,
                        )
                    };
                    open.insert(lane, t, to);
                }
                Frame::Nodes { ndx, groups } => {
                    let ready = match deltas.get_mut(&ndx) {
                        Some(d) => d.answer(groups)?,
                        None => {
                            let t = pending.remove(&ndx).ok_or_else(|| unrequested(ndx))?;
                            if !delta_files.contains(&ndx) {
                                return Err(unrequested(ndx));
                            }
                            // An old file that could not be indexed: every chunk is fetched.
                            let basis = loop {
                                if let Some(b) = bases.remove(&ndx) {
                                    break b;
                                }
                                let _w = crate::liveness::waiting(
                                    "receiver: waiting for an old version to be indexed",
                                );
                                match index_rx.recv().await {
                                    Some((n, b)) => {
                                        bases.insert(n, b);
                                    }
                                    None => break Arc::default(),
                                }
                            };
                            let size = ctx.list.entries[ndx as usize].size;
                            let mut d = ReceiverDelta::new(t, basis, size);
                            let ready = d.answer(groups)?;
                            deltas.insert(ndx, d);
                            ready
                        }
                    };
                    if ready {
                        if let Some(d) = deltas.get_mut(&ndx) {
                            for f in d.next_frames(ndx) {
                                fsink.send(&f).await?;
                            }
                        }
                        if deltas.get(&ndx).is_some_and(|d| d.fetching) {
                            let d = deltas.remove(&ndx).ok_or_else(|| unrequested(ndx))?;
                            delta_open -= 1;
                            if delta_open == 0 && lanes.is_none() {
                                finish_requests(&mut requester, fsink).await?;
                            }
                            fetched.insert(ndx, d);
                        }
                    }
                }
                Frame::Data { ndx, bytes } => {
                    if let Some(d) = fetched.remove(&ndx) {
                        open.reserve(lane)?;
                        let t = d.transfer;
                        let to = delta_receiving(&ctx, &inflight, writers, d).await;
                        open.insert(lane, t, to);
                    }
                    let (t, to) = open.get_mut(ndx).ok_or_else(|| unrequested(ndx))?;
                    let t = *t;
                    match to {
                        // A writer that failed has dropped its receiver; its job reports
                        // the error.
                        Receiving::Writer(tx) => {
                            let _ = tx.send(Chunk::Data(bytes)).await;
                        }
                        Receiving::Buffer(b) if b.len() + bytes.len() <= SMALL_BUFFER_MAX => {
                            b.extend_from_slice(&bytes);
                        }
                        Receiving::Chunks(d, chunks, got) => {
                            *got += bytes.len() as u64;
                            if *got > d.size {
                                return Err(DecodeError::invalid(
                                    "data",
                                    format!("more chunk data than file {ndx} has"),
                                )
                                .into());
                            }
                            chunks.push(bytes);
                        }
                        Receiving::Buffer(b) => {
                            // Grew since it was listed: a writer takes it from here.
                            let so_far = std::mem::take(b);
                            let tx = spawn_writer(&ctx, &inflight, writers, t, receive_stream).await;
                            let _ = tx.send(Chunk::Data(so_far)).await;
                            let _ = tx.send(Chunk::Data(bytes)).await;
                            if let Some((_, to)) = open.get_mut(ndx) {
                                *to = Receiving::Writer(tx);
                            }
                        }
                    }
                }
                Frame::DataEnd { ndx, hash } => {
                    if let Some(d) = fetched.remove(&ndx) {
                        open.reserve(lane)?;
                        let t = d.transfer;
                        let to = delta_receiving(&ctx, &inflight, writers, d).await;
                        open.insert(lane, t, to);
                    }
                    let complete = match open.end(ndx).ok_or_else(|| unrequested(ndx))? {
                        (_, Receiving::Writer(tx)) => {
                            let _ = tx.send(Chunk::End(hash)).await;
                            None
                        }
                        (t, Receiving::Buffer(data)) => Some(SmallFile::Whole { t, data, hash }),
                        (_, Receiving::Chunks(d, chunks, _)) => {
                            Some(SmallFile::Delta { d, chunks, hash })
                        }
                    };
                    if let Some(f) = complete {
                        batch_bytes += f.len();
                        batch.push(f);
                        if batch.len() >= BATCH_FILES || batch_bytes >= BATCH_BYTES {
                            batch_bytes = 0;
                            let files = std::mem::take(&mut batch);
                            spawn_small_batch(&ctx, &inflight, batch_limit, files).await;
                        }
                    }
                }
                Frame::Vanished { ndx } | Frame::FileFailed { ndx, .. }
                    if pending.contains_key(&ndx)
                        || open.contains(ndx)
                        || deltas.contains_key(&ndx)
                        || fetched.contains_key(&ndx) =>
                {
                    // Whichever stage the file was at, it ends here: a writer discards what it
                    // wrote, and the sender's reason is what is reported.
                    let (t, open_delta) = if let Some((t, to)) = open.end(ndx) {
                        if let Receiving::Writer(tx) = to {
                            let _ = tx.send(Chunk::Abandon).await;
                        }
                        (t, false)
                    } else if let Some(d) = fetched.remove(&ndx) {
                        (d.transfer, false)
                    } else if let Some(d) = deltas.remove(&ndx) {
                        pending.remove(&ndx);
                        (d.transfer, true)
                    } else {
                        let t = pending.remove(&ndx).ok_or_else(|| unrequested(ndx))?;
                        (t, delta_files.contains(&ndx))
                    };
                    if open_delta {
                        delta_open -= 1;
                        if delta_open == 0 && lanes.is_none() {
                            finish_requests(&mut requester, fsink).await?;
                        }
                    }
                    let err = match frame {
                        Frame::FileFailed { message, .. } => CopyError::Failed(message),
                        _ => CopyError::Vanished,
                    };
                    record(&ctx, t, Err(err));
                }
                Frame::Done => break,
                other => {
                    return Err(DecodeError::invalid(
                        "frame",
                        format!("unexpected from sender: {other:?}"),
                    )
                    .into());
                }
            }
        }
        if !open.is_empty() || !fetched.is_empty() {
            return Err(
                DecodeError::invalid("reply", "sender finished with a file still open").into(),
            );
        }
        Ok::<(), SyncError>(())
    }
    .await;
    // Files that arrived whole are written even if the session then failed.
    if !batch.is_empty() {
        spawn_small_batch(&ctx, &inflight, batch_limit, std::mem::take(&mut batch)).await;
    }
    // Close the channels of unfinished files and parts (their writers discard them) and let
    // every started job finish before returning, so nothing half-written is left behind.
    open.close_all();
    for p in parted.values_mut() {
        p.close_all();
    }
    inflight.below(1).await;
    result?;
    if let Some(r) = requester {
        r.await
            .map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))??;
    }
    for p in parted.values() {
        p.file.fail(
            &ctx,
            format!(
                "sender never answered for \"{}\"",
                String::from_utf8_lossy(&ctx.list.entries[p.file.t.ndx as usize].path)
            ),
        );
    }
    drop(parted);
    for t in pending.values() {
        record(
            &ctx,
            *t,
            Err(CopyError::Failed(format!(
                "sender never answered for \"{}\"",
                String::from_utf8_lossy(&ctx.list.entries[t.ndx as usize].path)
            ))),
        );
    }
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || {
        if c.opts.delete {
            delete_deferred(&c, &candidates.deferred);
        }
        link_followers(&c, &plan);
        fix_dirs(&c, &plan);
    })
    .await
    .map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))?;
    if let Some(l) = &lanes {
        let per_lane: Vec<u64> = l.bytes.iter().map(|b| b.load(Relaxed)).collect();
        let control = ctx
            .stats
            .bytes_received
            .load(Relaxed)
            .saturating_sub(per_lane.iter().sum());
        let shown: Vec<String> = std::iter::once(control)
            .chain(per_lane)
            .map(|b| b.to_string())
            .collect();
        ctx.sink.event(Event::Info {
            message: format!(
                "bytes received per stream (control first): {}",
                shown.join(" ")
            ),
        });
    }
    // Deletions made after the transfers.
    if let Some(r) = &report {
        r.send(fsink, &ctx.list, false).await?;
    }
    fsink
        .send(&Frame::Summary(ctx.stats.summary_counters()))
        .await
}

/// Start a blocking writer for `t` once a worker slot is free; the file's `Data`/`DataEnd`
/// frames reach it through the returned channel. It records its own result.
async fn spawn_writer(
    ctx: &Arc<Ctx>,
    inflight: &Arc<InFlight>,
    limit: usize,
    t: Transfer,
    write: impl FnOnce(&Ctx, Transfer, mpsc::Receiver<Chunk>) -> Result<u64, CopyError> + Send + 'static,
) -> mpsc::Sender<Chunk> {
    inflight.below(limit).await;
    let (tx, rx) = mpsc::channel(16);
    let (c, slot) = (ctx.clone(), inflight.start());
    tokio::task::spawn_blocking(move || {
        run_job(&c, slot, || {
            let r = write(&c, t, rx);
            record(&c, t, r);
        });
    });
    tx
}

/// Write a batch of complete small files on one worker: each is checked against the sender's
/// BLAKE3, staged, given its attributes and renamed into place.
async fn spawn_small_batch(
    ctx: &Arc<Ctx>,
    inflight: &Arc<InFlight>,
    limit: usize,
    files: Vec<SmallFile>,
) {
    inflight.below(limit).await;
    let (c, slot) = (ctx.clone(), inflight.start());
    tokio::task::spawn_blocking(move || {
        run_job(&c, slot, || {
            for f in files {
                let t = f.transfer();
                let r = write_small(&c, f);
                record(&c, t, r);
            }
        });
    });
}

/// Write one complete small file.
fn write_small(ctx: &Ctx, f: SmallFile) -> Result<u64, CopyError> {
    match f {
        SmallFile::Whole { t, data, hash } => write_whole(ctx, &t, &data, &hash),
        SmallFile::Delta { d, chunks, hash } => {
            let mut next = chunks
                .into_iter()
                .map(Chunk::Data)
                .chain(std::iter::once(Chunk::End(hash)));
            rebuild(ctx, d.transfer, &d, || next.next())
        }
    }
}

/// Write a whole file received into memory, checked against the sender's BLAKE3.
fn write_whole(ctx: &Ctx, t: &Transfer, data: &[u8], hash: &[u8; 32]) -> Result<u64, CopyError> {
    let e = &ctx.list.entries[t.ndx as usize];
    if *blake3::hash(data).as_bytes() != *hash {
        return Err(CopyError::Failed(format!(
            "\"{}\": BLAKE3 of received data does not match the sender's (file left unchanged)",
            ctx.display(&e.path).display()
        )));
    }
    let (dir, mut file, staging) = open_dest(ctx, e, t)?;
    if let Err(err) = file.write_all(data) {
        fsys::discard(&*dir, &staging);
        return Err(failed("write", &ctx.display(&e.path), &err));
    }
    crate::liveness::bump();
    let (_, name) = split_parent(&e.path);
    finish_file(ctx, e, t, &dir, &file, &staging, name)
        .inspect_err(|_| fsys::discard(&*dir, &staging))?;
    Ok(data.len() as u64)
}

/// Where a delta-exchanged file's fetched chunks go: buffered in the loop for a small file
/// (rebuilt in a batch when complete), else a writer of its own.
async fn delta_receiving(
    ctx: &Arc<Ctx>,
    inflight: &Arc<InFlight>,
    writers: usize,
    d: ReceiverDelta,
) -> Receiving {
    if d.size <= SMALL_FILE {
        return Receiving::Chunks(Box::new(d), Vec::new(), 0);
    }
    Receiving::Writer(spawn_delta_writer(ctx, inflight, writers, d).await)
}

/// Start the writer that rebuilds a delta-exchanged file from its old version and the
/// fetched chunks.
async fn spawn_delta_writer(
    ctx: &Arc<Ctx>,
    inflight: &Arc<InFlight>,
    limit: usize,
    d: ReceiverDelta,
) -> mpsc::Sender<Chunk> {
    let t = d.transfer;
    spawn_writer(ctx, inflight, limit, t, move |c, t, rx| {
        receive_delta(c, t, &d, rx)
    })
    .await
}

/// Wait for the requester to have queued every request, then say "Done".
async fn finish_requests(
    requester: &mut Option<tokio::task::JoinHandle<Result<(), SyncError>>>,
    fsink: &FrameSink,
) -> Result<(), SyncError> {
    if let Some(r) = requester.take() {
        r.await
            .map_err(|e| SyncError::StreamIo(io::Error::other(e.to_string())))??;
    }
    fsink.send(&Frame::Done).await
}

async fn expect_done(source: &mut FrameSource) -> Result<(), SyncError> {
    match source.expect("done").await? {
        Frame::Done => Ok(()),
        other => Err(DecodeError::invalid("frame", format!("expected done, got {other:?}")).into()),
    }
}
