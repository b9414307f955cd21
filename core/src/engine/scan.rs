//! The sender's scan: from the command line's source arguments to a sorted [`FileList`].
//!
//! Owns rsync's source-argument rules (a trailing `/` sends a directory's contents, no slash
//! sends the directory itself), the parallel directory walk (one rayon task per directory),
//! filter application, owner/group naming, `-c` content hashes (BLAKE3, in parallel) and the
//! numbering of hard-link groups. Does not touch the destination or the wire.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use super::event::{Event, EventSink};
use super::filter::FilterRules;
use super::hashcache::{FileKey, HashCache};
use super::ids::IdNames;
use super::links::Follow;
use super::options::SyncOptions;
use super::select::{self, prune_empty_dirs};
use super::stats::Stats;
use super::xattr;
use crate::flist::{
    path_order, split_parent, FileEntry, FileKind, FileList, Name, Owner, OwnerTable, Rare, Xattr,
};
use crate::proto::merkle::{xattrs_len, MAX_ENTRY_XATTR_BYTES, MAX_XATTR_VALUE};

/// The scanned list plus, for each entry, where its content is on this machine.
///
/// Source paths are not stored per entry (that would double the list's memory): each entry
/// records which source argument's base directory its relative path hangs from.
#[derive(Debug, Default)]
pub struct SourceList {
    /// What is sent to the receiver (shared with it in a local copy, issue 18).
    pub list: Arc<FileList>,
    /// The directory each source argument's relative paths start from.
    pub bases: Vec<PathBuf>,
    /// For each entry, its index in `bases`; empty with one source argument (issue 18: 4
    /// bytes an entry saved in the common case). Read it through [`SourceList::base_index`].
    pub base_of: Vec<u32>,
    /// Files listed in place of a symlink the sender followed (`-L`, `--copy-unsafe-links`):
    /// where their content really is, so that it is read without following a link.
    pub resolved: HashMap<u32, PathBuf>,
    /// `--delete-missing-args`: the names of source arguments that do not exist, for the
    /// receiver to delete (rsync sends each as a mode-0 entry).
    pub missing: Vec<Vec<u8>>,
    /// The kinds listed only for the receiver to skip (`SyncOptions::list_unwanted`): left out
    /// of the directory-tree hashes, as the receiver's own scan leaves them out.
    pub skipped_by_receiver: crate::engine::options::NodeKinds,
}

impl SourceList {
    /// Where entry `ndx`'s content is on this machine.
    pub fn source_path(&self, ndx: usize) -> PathBuf {
        if let Some(p) = self.resolved.get(&(ndx as u32)) {
            return p.clone();
        }
        self.listed_path(ndx)
    }

    /// Where entry `ndx` is under the name it was listed by (a followed symlink itself, not
    /// its target).
    pub fn listed_path(&self, ndx: usize) -> PathBuf {
        let base = &self.bases[self.base_index(ndx)];
        join_base(base, &self.list.entries[ndx].path)
    }
}

impl SourceList {
    /// The source argument entry `ndx` came from (its index in `bases`).
    pub fn base_index(&self, ndx: usize) -> usize {
        base_at(&self.base_of, ndx)
    }
}

/// Entry `ndx`'s index in the bases, from `base_of` (empty: every entry's is 0).
fn base_at(base_of: &[u32], ndx: usize) -> usize {
    base_of.get(ndx).map_or(0, |&b| b as usize)
}

fn join_base(base: &Path, rel: &[u8]) -> PathBuf {
    if rel == b"." {
        base.to_path_buf()
    } else {
        base.join(OsStr::from_bytes(rel))
    }
}

/// One entry as a directory's walk makes it (kept per directory only: [`Found`] holds the
/// scan's whole result without the wrapper).
struct Scanned {
    entry: FileEntry,
    base: u32,
    /// For a file reached through a symlink the sender followed: the file's real path.
    resolved: Option<Box<PathBuf>>,
}

/// What the walk found, as it is found (issue 18: the entries themselves, not an entry in a
/// wrapper of 32 more bytes, so that the scan's peak is the list's size and little more).
#[derive(Default)]
struct Found {
    entries: Vec<FileEntry>,
    /// Each entry's source argument; none kept when there is one (`one_base`).
    bases: Vec<u32>,
    one_base: bool,
    /// The rare files reached through a followed symlink: (source argument, listed path, real
    /// path).
    resolved: Vec<(u32, Vec<u8>, PathBuf)>,
}

impl Found {
    fn push(&mut self, s: Scanned) {
        if let Some(r) = s.resolved {
            self.resolved.push((s.base, s.entry.path.to_vec(), *r));
        }
        self.entries.push(s.entry);
        if !self.one_base {
            self.bases.push(s.base);
        }
    }
}

/// Reorder `a` and `b` alike so that position `i` holds what was at `perm[i]` (in place:
/// each cycle of the permutation is followed once).
fn permute<A, B>(a: &mut [A], b: &mut [B], mut perm: Vec<u32>) {
    for i in 0..perm.len() {
        let mut j = i;
        loop {
            let k = perm[j] as usize;
            perm[j] = j as u32;
            if k == i || k == j {
                break;
            }
            a.swap(j, k);
            b.swap(j, k);
            j = k;
        }
    }
}

struct ScanCtx<'a> {
    opts: &'a SyncOptions,
    names: IdNames,
    stats: &'a Stats,
    sink: &'a dyn EventSink,
    out: Mutex<Found>,
    /// Hard-link groups by (device, inode), numbered as first seen.
    links: Mutex<HashMap<(u64, u64), u32>>,
    /// One shared owner block per distinct owner of the tree (issue 18).
    owners: Mutex<OwnerTable>,
}

fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() || parent == b"." {
        name.to_vec()
    } else {
        let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
        v.extend_from_slice(parent);
        v.push(b'/');
        v.extend_from_slice(name);
        v
    }
}

impl ScanCtx<'_> {
    fn warn(&self, message: String) {
        self.sink.event(Event::Warning { message });
    }

    fn io_error(&self, what: &str, path: &Path, e: &io::Error) {
        if e.kind() == io::ErrorKind::NotFound {
            self.stats.vanished.fetch_add(1, Relaxed);
            self.warn(format!("file has vanished: \"{}\"", path.display()));
        } else {
            self.stats.errors.fetch_add(1, Relaxed);
            self.warn(format!(
                "{what} \"{}\" failed: {}",
                path.display(),
                os_error(e)
            ));
        }
    }

    /// What to list for `abs` (relative path `rel`), whose `lstat` is `meta`: the symlink
    /// itself, or what it points to when the symlink options say to follow it (then `true`).
    /// `None` when a followed symlink has no referent (reported, as rsync does).
    fn through_links(&self, rel: &[u8], abs: &Path, meta: Metadata) -> Option<(Metadata, bool)> {
        let links = &self.opts.symlinks;
        if !meta.file_type().is_symlink() || !links.sender_follows() {
            return Some((meta, false));
        }
        let target = fs::read_link(abs)
            .map(|t| t.into_os_string().into_vec())
            .unwrap_or_default();
        let follow = links.follow(&target, rel);
        if follow == Follow::Keep {
            return Some((meta, false));
        }
        match fs::metadata(abs) {
            Ok(m) if follow == Follow::Referent || m.is_dir() => Some((m, true)),
            Ok(_) => Some((meta, false)),
            // `-k` keeps a symlink whose referent is missing.
            Err(_) if follow == Follow::IfDir => Some((meta, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.stats.errors.fetch_add(1, Relaxed);
                self.warn(format!(
                    "symlink has no referent: \"{}\"",
                    absolute(abs).display()
                ));
                None
            }
            Err(e) => {
                self.io_error("readlink_stat", abs, &e);
                None
            }
        }
    }

    /// Build the entry for `rel` from `meta`; `None` when options skip this kind. `followed`:
    /// `meta` is what a symlink at `abs` points to.
    fn entry(
        &self,
        rel: Vec<u8>,
        abs: &Path,
        meta: &Metadata,
        base: u32,
        followed: bool,
    ) -> Option<Scanned> {
        crate::liveness::bump();
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            FileKind::File
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_char_device() {
            FileKind::CharDev
        } else if ft.is_block_device() {
            FileKind::BlockDev
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else {
            return None;
        };
        let o = self.opts;
        if !o.wants_kind(kind) {
            if !o.unwanted_said_by_receiver {
                self.sink.event(Event::Notice {
                    message: format!(
                        "skipping non-regular file \"{}\"",
                        String::from_utf8_lossy(&rel)
                    ),
                });
            }
            // Listed all the same for a receiver that skips it (its `--delete` then spares
            // what is there under this name, as rsync's).
            if !o.list_unwanted {
                return None;
            }
        }
        let link_target = if kind == FileKind::Symlink {
            match fs::read_link(abs) {
                Ok(t) => {
                    let mut t = t.into_os_string().into_vec();
                    if o.symlinks.munge_links {
                        crate::engine::links::unmunge(&mut t);
                    }
                    t
                }
                Err(e) => {
                    self.io_error("readlink", abs, &e);
                    return None;
                }
            }
        } else {
            Vec::new()
        };
        let (user, group) = if o.numeric_ids {
            Default::default()
        } else {
            (
                if o.owner {
                    self.names.user_name(meta.uid())
                } else {
                    Name::default()
                },
                if o.group {
                    self.names.group_name(meta.gid())
                } else {
                    Name::default()
                },
            )
        };
        let copied = xattr::Copied::of(o);
        let xattrs: Vec<Xattr> = if copied.any() {
            match xattr::read_all(abs, copied) {
                Ok(x)
                    if xattrs_len(&x) <= MAX_ENTRY_XATTR_BYTES
                        && x.iter().all(|a| a.value.len() <= MAX_XATTR_VALUE) =>
                {
                    x
                }
                Ok(_) => {
                    // More than one file entry may carry: reported, not cut short.
                    self.io_error(
                        "listxattr",
                        abs,
                        &io::Error::other("extended attributes too large to send"),
                    );
                    Vec::new()
                }
                Err(e) => {
                    self.io_error("listxattr", abs, &e);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let hardlink_group = if o.hard_links && kind == FileKind::File && meta.nlink() > 1 {
            self.links.lock().map_or(0, |mut g| {
                let next = g.len() as u32 + 1;
                *g.entry((meta.dev(), meta.ino())).or_insert(next)
            })
        } else {
            0
        };
        Some(Scanned {
            entry: {
                let mut e = FileEntry::new(rel, kind);
                e.perms = (meta.mode() & 0o7777) as u16;
                if kind == FileKind::File {
                    e.size = meta.size();
                }
                e.mtime = meta.mtime();
                e.mtime_nsec = meta.mtime_nsec().clamp(0, 999_999_999) as u32;
                let owner = Owner::new(meta.uid(), meta.gid(), user, group);
                e.set_owner(match self.owners.lock() {
                    Ok(mut owners) => owners.shared(owner),
                    Err(_) => owner,
                });
                let rdev = if matches!(kind, FileKind::CharDev | FileKind::BlockDev) {
                    meta.rdev()
                } else {
                    0
                };
                e.set_rare(Rare::of(rdev, link_target, xattrs));
                e.set_hardlink_group(hardlink_group);
                e
            },
            base,
            resolved: (followed && kind == FileKind::File)
                .then(|| fs::canonicalize(abs).ok().map(Box::new))
                .flatten(),
        })
    }

    /// Scan the contents of directory `abs` (relative path `rel`), recursing in parallel.
    /// `dev` is the filesystem of the source argument (`-x` stays on it). `filters` are the
    /// rules of the parent directory, `None` for a source argument's own (the command line's,
    /// after the parent scan of a `dir-merge /NAME`, from `base_dir`).
    #[allow(clippy::too_many_arguments)]
    fn walk<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        abs: PathBuf,
        rel: Vec<u8>,
        base: u32,
        dev: u64,
        filters: Option<Arc<FilterRules>>,
        base_dir: &'s Path,
    ) {
        let Some((local, filters)) = self.list_dir(&abs, &rel, base, dev, filters, base_dir) else {
            return;
        };
        for c in &local {
            if c.descend {
                let filters = Some(filters.clone());
                let rel = c.scanned.entry.path.to_vec();
                let abs = abs.join(OsStr::from_bytes(split_parent(&rel).1));
                scope.spawn(move |sc| self.walk(sc, abs, rel, base, dev, filters, base_dir));
            }
        }
        if let Ok(mut out) = self.out.lock() {
            for c in local {
                out.push(c.scanned);
            }
        }
    }

    /// The children of directory `abs` (relative path `rel`), unsorted, each saying whether
    /// to descend into it, and this directory's filter rules (its children's parent rules);
    /// `None` when the directory cannot be read (reported). Issue 18, streaming list: the walk
    /// of the whole tree and the segments' walk of one directory at a time share it.
    fn list_dir(
        &self,
        abs: &Path,
        rel: &[u8],
        base: u32,
        dev: u64,
        filters: Option<Arc<FilterRules>>,
        base_dir: &Path,
    ) -> Option<(Vec<Child>, Arc<FilterRules>)> {
        // Issue 15, filters: this directory's per-directory merge files.
        let entered = match &filters {
            Some(parent) => parent.enter_dir(rel, &mut |name| read_merge_file(&abs.join(name))),
            None => self.opts.filters.enter_first_dir(
                rel,
                &absolute(abs),
                &absolute(base_dir),
                &mut |path| read_merge_file(path),
            ),
        };
        let filters = match entered {
            Ok(Some(f)) => Arc::new(f),
            Ok(None) => filters.unwrap_or_else(|| Arc::new(self.opts.filters.clone())),
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                self.warn(format!("{e} in {}", abs.display()));
                filters.unwrap_or_else(|| Arc::new(self.opts.filters.clone()))
            }
        };
        let rd = match fs::read_dir(abs) {
            Ok(rd) => rd,
            Err(e) => {
                self.io_error("opendir", abs, &e);
                return None;
            }
        };
        let mut local = Vec::new();
        for de in rd {
            let de = match de {
                Ok(de) => de,
                Err(e) => {
                    self.io_error("readdir", abs, &e);
                    break;
                }
            };
            let name = de.file_name();
            let child_rel = join_rel(rel, name.as_bytes());
            let child_abs = abs.join(&name);
            let meta = match de.metadata() {
                Ok(m) => m,
                Err(e) => {
                    self.io_error("stat", &child_abs, &e);
                    continue;
                }
            };
            let Some((meta, followed)) = self.through_links(&child_rel, &child_abs, meta) else {
                continue;
            };
            let is_dir = meta.is_dir();
            if filters.excluded_for_sender(&child_rel, is_dir) {
                continue;
            }
            // `-x`: a mount point is sent as an empty directory; `-xx` leaves it out.
            let mount_point = is_dir && self.opts.select.one_file_system > 0 && meta.dev() != dev;
            if mount_point && self.opts.select.one_file_system > 1 {
                continue;
            }
            if let Some(mut s) = self.entry(child_rel, &child_abs, &meta, base, followed) {
                // Its contents are not listed: the receiver must not delete inside it.
                s.entry.no_content = mount_point;
                local.push(Child {
                    scanned: s,
                    descend: is_dir && !mount_point && self.opts.recursive,
                });
            }
        }
        Some((local, filters))
    }
}

/// One child of a directory as [`ScanCtx::list_dir`] finds it.
struct Child {
    scanned: Scanned,
    /// A directory whose contents are listed too.
    descend: bool,
}

/// A per-directory merge file's contents; `None` when there is none or it cannot be read
/// (upstream's `parse_filter_file` skips such a file silently).
pub fn read_merge_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    Ok(fs::read(path).ok())
}

/// Describe an OS error as rsync does: `No such file or directory (2)`.
pub fn os_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let s = e.to_string();
            let msg = s.split(" (os error").next().unwrap_or(&s).to_owned();
            format!("{msg} ({code})")
        }
        None => e.to_string(),
    }
}

/// Scan `sources` (as given on the command line) into a sorted list.
///
/// Per-file problems are reported through `sink` and counted in `stats` (exit 23/24 later);
/// only a list that cannot be built at all is an error.
pub fn scan_sources(
    sources: &[PathBuf],
    opts: &SyncOptions,
    stats: &Stats,
    sink: &dyn EventSink,
) -> SourceList {
    let started = Instant::now();
    let ctx = ScanCtx {
        opts,
        names: IdNames::default(),
        stats,
        sink,
        out: Mutex::new(Found {
            one_base: sources.len() <= 1,
            ..Found::default()
        }),
        links: Mutex::new(HashMap::new()),
        owners: Mutex::new(OwnerTable::default()),
    };
    // Resolve the arguments first (in order: the first of two arguments naming the same
    // path wins), then walk them all in parallel.
    struct Root {
        arg: PathBuf,
        rel: Vec<u8>,
        meta: Metadata,
        followed: bool,
    }
    let mut roots = Vec::new();
    let mut bases = Vec::new();
    let mut missing = Vec::new();
    for arg in sources {
        let raw = arg.as_os_str().as_bytes();
        let trailing = raw.ends_with(b"/") || raw.ends_with(b"/.") || raw == b".";
        let name = arg.file_name().filter(|_| !trailing);
        let meta = if trailing {
            fs::metadata(arg)
        } else {
            fs::symlink_metadata(arg)
        };
        let meta = match meta {
            Ok(m) => m,
            // Issue 15, select: `--delete-missing-args` lists a source that is not there
            // for deletion (a name ending in `/` cannot be, as in rsync: an error).
            Err(e)
                if opts.select.delete_missing_args
                    && e.kind() == io::ErrorKind::NotFound
                    && !trailing
                    && (opts.select.relative || parent_is_dir(arg)) =>
            {
                if let Some(rel) = missing_name(raw, opts.select.relative) {
                    missing.push(rel);
                }
                continue;
            }
            // Issue 15, select: `--ignore-missing-args` skips a source that is not there.
            Err(e) if opts.select.ignore_missing_args && e.kind() == io::ErrorKind::NotFound => {
                continue;
            }
            Err(e) => {
                ctx.stats.errors.fetch_add(1, Relaxed);
                ctx.warn(format!(
                    "link_stat \"{}\" failed: {}",
                    absolute(arg).display(),
                    os_error(&e)
                ));
                continue;
            }
        };
        // Issue 15, select: `-R` names the source by its path (from a `/./`).
        let relative = opts
            .select
            .relative
            .then(|| select::relative_path(raw))
            .map(|(base, rel)| (absolute(Path::new(OsStr::from_bytes(&base))), rel));
        // A directory sent by its contents ("src/", ".", "/") is the root entry ".".
        let rel = match name {
            _ if relative.is_some() => relative.as_ref().map_or_else(Vec::new, |r| r.1.clone()),
            Some(n) if !(meta.is_dir() && n == OsStr::new(".")) => n.as_bytes().to_vec(),
            _ if meta.is_dir() => b".".to_vec(),
            _ => match arg.file_name() {
                Some(n) => n.as_bytes().to_vec(),
                None => b".".to_vec(),
            },
        };
        let Some((meta, followed)) = ctx.through_links(&rel, arg, meta) else {
            continue;
        };
        // Issue 15, filters: `-d` (and `--files-from`) lists a directory without recursing.
        if meta.is_dir() && !opts.recursive && !opts.listing.dirs {
            ctx.sink.event(Event::Notice {
                message: format!("skipping directory {}", String::from_utf8_lossy(&rel)),
            });
            continue;
        }
        if rel != b"." && opts.filters.excluded_for_sender(&rel, meta.is_dir()) {
            continue;
        }
        let base = bases.len() as u32;
        if let Some((dir, rel)) = &relative {
            for implied in select::implied_dirs(rel) {
                let abs = join_base(dir, implied);
                match fs::symlink_metadata(&abs) {
                    Ok(meta) => {
                        if let Some(s) = ctx.entry(implied.to_vec(), &abs, &meta, base, false) {
                            if let Ok(mut out) = ctx.out.lock() {
                                out.push(s);
                            }
                        }
                    }
                    Err(e) => ctx.io_error("stat", &abs, &e),
                }
            }
        }
        bases.push(if let Some((dir, _)) = &relative {
            dir.clone()
        } else if rel == b"." {
            arg.clone()
        } else {
            arg.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        });
        let arg = match &relative {
            Some((dir, rel)) => join_base(dir, rel),
            None => arg.clone(),
        };
        roots.push(Root {
            arg,
            rel,
            meta,
            followed,
        });
    }
    rayon::scope(|scope| {
        for (i, root) in roots.into_iter().enumerate() {
            let base = i as u32;
            if let Some(s) = ctx.entry(root.rel.clone(), &root.arg, &root.meta, base, root.followed)
            {
                let is_dir = s.entry.kind == FileKind::Dir;
                if let Ok(mut out) = ctx.out.lock() {
                    out.push(s);
                }
                // `-d`: a directory sent by its contents (`.` too, with -R) is listed one
                // level deep.
                if is_dir && (opts.recursive || root.rel == b".") {
                    let ctx = &ctx;
                    let (abs, rel, dev) = (root.arg, root.rel, root.meta.dev());
                    let base_dir = bases[i].as_path();
                    scope.spawn(move |sc| ctx.walk(sc, abs, rel, base, dev, None, base_dir));
                }
            }
        }
    });
    let Found {
        mut entries,
        bases: mut base_of,
        resolved: followed,
        ..
    } = ctx
        .out
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    let order = |a: &FileEntry, b: &FileEntry| {
        path_order(
            &a.path,
            a.kind == FileKind::Dir,
            &b.path,
            b.kind == FileKind::Dir,
        )
    };
    // In place (issue 18: a stable sort takes a scratch buffer of half the list). Two
    // arguments naming the same path: the first wins, as in rsync — the one with the lower
    // base, which the tie-break puts first for the dedup to keep. With one source argument
    // the entries are sorted themselves, else through a permutation (4 bytes an entry).
    if base_of.iter().all(|&b| b == base_of[0]) {
        entries.sort_unstable_by(order);
    } else {
        let mut perm: Vec<u32> = (0..entries.len() as u32).collect();
        perm.sort_unstable_by(|&x, &y| {
            let (x, y) = (x as usize, y as usize);
            order(&entries[x], &entries[y]).then(base_of[x].cmp(&base_of[y]))
        });
        permute(&mut entries, &mut base_of, perm);
    }
    let mut keep: Vec<bool> = Vec::new();
    if entries.windows(2).any(|w| w[0].path == w[1].path) {
        keep = (0..entries.len())
            .map(|i| i == 0 || entries[i - 1].path != entries[i].path)
            .collect();
    }
    retain_both(&mut entries, &mut base_of, &keep);
    if opts.select.prune_empty_dirs {
        // Pruned here for a receiver that does not (an arsync); rsync's receiver prunes too.
        let keep = prune_empty_dirs(entries.iter(), |e| {
            opts.filters.protected_for_receiver(&e.path, true)
        });
        retain_both(&mut entries, &mut base_of, &keep);
    }

    if opts.checksum {
        entries
            .par_iter_mut()
            .enumerate()
            .filter(|(_, e)| e.kind == FileKind::File)
            .for_each(|(i, e)| {
                let path = join_base(&bases[base_at(&base_of, i)], &e.path);
                match listed_checksum(&path, opts) {
                    Ok(h) => e.set_checksum(Some(h)),
                    Err(err) => ctx.io_error("read", &path, &err),
                }
            });
    }
    for e in &entries {
        stats.count_listed(e);
    }
    // A followed file's index: where its path is in the sorted list, if its argument's entry
    // is the one kept there.
    let resolved = followed
        .into_iter()
        .filter_map(|(base, rel, real)| {
            let i = entries
                .binary_search_by(|e| path_order(&e.path, e.kind == FileKind::Dir, &rel, false))
                .ok()?;
            (base_at(&base_of, i) == base as usize).then_some((i as u32, real))
        })
        .collect();
    // Grown by doubling: the unused rest goes back (a large buffer shrinks in place).
    entries.shrink_to_fit();
    base_of.shrink_to_fit();
    stats
        .flist_build_us
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    SourceList {
        list: Arc::new(FileList { entries }),
        bases,
        base_of,
        resolved,
        missing,
        skipped_by_receiver: match opts.list_unwanted {
            true => opts.unwanted_kinds(),
            false => Default::default(),
        },
    }
}

// Issue 18, streaming list:
/// One directory's children as the segments' walk sends them: `parent` is the directory's
/// index ([`crate::proto::merkle::ROOT_SEGMENT`] for the top level), `base` the first child's;
/// `head` is the directory's own entry (none for the top level), put before its children in
/// the round's list. `entries` are in transfer order (the top level's `.` first).
#[derive(Debug)]
pub struct Segment {
    /// The directory's index, or `ROOT_SEGMENT`.
    pub parent: u32,
    /// The index of the first entry.
    pub base: u32,
    /// The directory's own entry (not for the top level).
    pub head: Option<FileEntry>,
    /// The children, in transfer order.
    pub entries: Vec<FileEntry>,
    /// Children listed in place of a followed symlink: (position in `entries`, real path).
    pub resolved: Vec<(usize, PathBuf)>,
    /// The sender's read errors so far, once this directory was listed.
    pub errors: u64,
}

/// A directory listed, whose own segment is still to come.
struct PendingDir {
    ndx: u32,
    entry: FileEntry,
    abs: PathBuf,
    /// The rules of its parent (`None`: the top directory, which starts its argument's).
    filters: Option<Arc<FilterRules>>,
    descend: bool,
}

/// Issue 18, streaming list: the sender's walk one directory at a time, depth first (a stack
/// of directories still to list, not a scan of the whole tree first): each call of
/// [`SegmentWalker::next_segment`] lists one directory. For one source argument that is a
/// directory (the rule is [`crate::engine::segments::sender_can_stream`]); no hard-link groups,
/// no `-R`, no pruning.
pub struct SegmentWalker<'a> {
    ctx: ScanCtx<'a>,
    base_dir: PathBuf,
    dev: u64,
    /// The top level, before its segment is sent: the argument and its entry's name.
    root: Option<(PathBuf, Vec<u8>, Metadata, bool)>,
    stack: Vec<PendingDir>,
    /// Entries numbered so far.
    sent: u32,
}

impl std::fmt::Debug for SegmentWalker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWalker")
            .field("base_dir", &self.base_dir)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<'a> SegmentWalker<'a> {
    /// A walk of `source` (one argument, as given). A source that cannot be listed at all is
    /// reported, as the whole scan does, and the walk then has one empty top level.
    pub fn new(
        source: &Path,
        opts: &'a SyncOptions,
        stats: &'a Stats,
        sink: &'a dyn EventSink,
    ) -> Self {
        let ctx = ScanCtx {
            opts,
            names: IdNames::default(),
            stats,
            sink,
            out: Mutex::new(Found::default()),
            links: Mutex::new(HashMap::new()),
            owners: Mutex::new(OwnerTable::default()),
        };
        let raw = source.as_os_str().as_bytes();
        let trailing = raw.ends_with(b"/") || raw.ends_with(b"/.") || raw == b".";
        let name = source.file_name().filter(|_| !trailing);
        let meta = if trailing {
            fs::metadata(source)
        } else {
            fs::symlink_metadata(source)
        };
        let mut walker = SegmentWalker {
            base_dir: PathBuf::new(),
            dev: 0,
            root: None,
            stack: Vec::new(),
            sent: 0,
            ctx,
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                walker.ctx.stats.errors.fetch_add(1, Relaxed);
                walker.ctx.warn(format!(
                    "link_stat \"{}\" failed: {}",
                    absolute(source).display(),
                    os_error(&e)
                ));
                return walker;
            }
        };
        let rel = match name {
            Some(n) if !(meta.is_dir() && n == OsStr::new(".")) => n.as_bytes().to_vec(),
            _ => b".".to_vec(),
        };
        let Some((meta, followed)) = walker.ctx.through_links(&rel, source, meta) else {
            return walker;
        };
        if rel != b"." && opts.filters.excluded_for_sender(&rel, meta.is_dir()) {
            return walker;
        }
        walker.base_dir = if rel == b"." {
            source.to_path_buf()
        } else {
            source
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        walker.dev = meta.dev();
        walker.root = Some((source.to_path_buf(), rel, meta, followed));
        walker
    }

    /// The next directory's segment (the top level's first); `None` once every directory
    /// was listed.
    pub fn next_segment(&mut self) -> Option<Segment> {
        if let Some((arg, rel, meta, followed)) = self.root.take() {
            let mut entries = Vec::new();
            let mut children = Vec::new();
            if let Some(s) = self.ctx.entry(rel.clone(), &arg, &meta, 0, followed) {
                let is_dir = s.entry.kind == FileKind::Dir;
                if rel == b"." {
                    entries.push(s.entry);
                    let listed = self
                        .ctx
                        .list_dir(&arg, &rel, 0, self.dev, None, &self.base_dir);
                    if let Some((local, filters)) = listed {
                        return Some(self.segment(
                            crate::proto::merkle::ROOT_SEGMENT,
                            None,
                            entries,
                            local,
                            &arg,
                            Some(filters),
                        ));
                    }
                } else {
                    // A directory named without a slash: the top level is the directory
                    // itself, its contents the next segment.
                    children.push(Child {
                        descend: is_dir && self.ctx.opts.recursive,
                        scanned: s,
                    });
                    let parent = self.base_dir.clone();
                    return Some(self.segment(
                        crate::proto::merkle::ROOT_SEGMENT,
                        None,
                        entries,
                        children,
                        &parent,
                        None,
                    ));
                }
            }
            return Some(self.finish(
                crate::proto::merkle::ROOT_SEGMENT,
                None,
                entries,
                Vec::new(),
            ));
        }
        let dir = self.stack.pop()?;
        let rel = dir.entry.path.to_vec();
        let listed = if dir.descend {
            let base_dir = self.base_dir.clone();
            self.ctx
                .list_dir(&dir.abs, &rel, 0, self.dev, dir.filters, &base_dir)
        } else {
            None
        };
        let (children, filters) = match listed {
            Some((c, f)) => (c, Some(f)),
            None => (Vec::new(), None),
        };
        Some(self.segment(
            dir.ndx,
            Some(dir.entry),
            Vec::new(),
            children,
            &dir.abs,
            filters,
        ))
    }

    /// Sort `children` into transfer order after `entries`, number them, and put the
    /// directories to descend into on the stack (the first on top). `abs` is where the
    /// children are; `filters` the rules they are listed with (their parent's).
    fn segment(
        &mut self,
        parent: u32,
        head: Option<FileEntry>,
        mut entries: Vec<FileEntry>,
        mut children: Vec<Child>,
        abs: &Path,
        filters: Option<Arc<FilterRules>>,
    ) -> Segment {
        children.sort_unstable_by(|a, b| {
            let (a, b) = (&a.scanned.entry, &b.scanned.entry);
            path_order(
                &a.path,
                a.kind == FileKind::Dir,
                &b.path,
                b.kind == FileKind::Dir,
            )
        });
        let mut resolved = Vec::new();
        let mut dirs = Vec::new();
        let first = self.sent + entries.len() as u32;
        for (i, c) in children.into_iter().enumerate() {
            let at = entries.len();
            if let Some(r) = c.scanned.resolved {
                resolved.push((at, *r));
            }
            let e = c.scanned.entry;
            if e.kind == FileKind::Dir {
                let name = split_parent(&e.path).1;
                dirs.push(PendingDir {
                    ndx: first + i as u32,
                    entry: e.clone(),
                    abs: abs.join(OsStr::from_bytes(name)),
                    filters: filters.clone(),
                    descend: c.descend,
                });
            }
            entries.push(e);
        }
        self.stack.extend(dirs.into_iter().rev());
        self.finish(parent, head, entries, resolved)
    }

    /// Number the segment, hash its files for `-c`, count it.
    fn finish(
        &mut self,
        parent: u32,
        head: Option<FileEntry>,
        mut entries: Vec<FileEntry>,
        resolved: Vec<(usize, PathBuf)>,
    ) -> Segment {
        let opts = self.ctx.opts;
        if opts.checksum {
            let base_dir = &self.base_dir;
            let ctx = &self.ctx;
            entries
                .par_iter_mut()
                .filter(|e| e.kind == FileKind::File)
                .for_each(|e| {
                    let path = join_base(base_dir, &e.path);
                    match listed_checksum(&path, opts) {
                        Ok(h) => e.set_checksum(Some(h)),
                        Err(err) => ctx.io_error("read", &path, &err),
                    }
                });
        }
        for e in &entries {
            self.ctx.stats.count_listed(e);
        }
        let base = self.sent;
        self.sent += entries.len() as u32;
        Segment {
            parent,
            base,
            head,
            entries,
            resolved,
            errors: self.ctx.stats.errors.load(Relaxed),
        }
    }

    /// The directory each entry's relative path hangs from.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }
}

/// Keep the entries (and their bases) that `keep` marks; an empty `keep` keeps all, a short one
/// keeps those past its end.
fn retain_both(entries: &mut Vec<FileEntry>, bases: &mut Vec<u32>, keep: &[bool]) {
    if keep.is_empty() {
        return;
    }
    let mut k = keep.iter();
    entries.retain(|_| k.next().copied().unwrap_or(true));
    let mut k = keep.iter();
    bases.retain(|_| k.next().copied().unwrap_or(true));
}

/// Whether the directory `arg` names a file in exists (rsync changes into it before it looks
/// for the file: a missing one is an error even with `--delete-missing-args`).
fn parent_is_dir(arg: &Path) -> bool {
    match arg.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.is_dir(),
        _ => true,
    }
}

/// Issue 15, select: the name a missing source argument has in the list: its last component,
/// or under `-R` its path from the `/./` (or whole); `None` for a name that cannot be one.
fn missing_name(raw: &[u8], relative: bool) -> Option<Vec<u8>> {
    let rel = if relative {
        select::relative_path(raw).1
    } else {
        raw.rsplit(|&b| b == b'/').next().unwrap_or(raw).to_vec()
    };
    (crate::flist::validate_rel_path(&rel).is_ok() && rel != b".").then_some(rel)
}

/// `p` made absolute against the current directory, keeping a trailing `/` (which carries
/// rsync's "contents of" meaning).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => {
            let mut s = cwd.into_os_string();
            s.push("/");
            s.push(p.as_os_str());
            PathBuf::from(s)
        }
        Err(_) => p.to_path_buf(),
    }
}

/// A listed file's `-c` checksum: in the rsync peer's algorithm (`rsync_sum`), else BLAKE3
/// through the content-hash cache.
fn listed_checksum(path: &Path, opts: &SyncOptions) -> io::Result<[u8; 32]> {
    match opts.rsync_sum {
        Some(kind) => rsync_sum(path, kind),
        None => cached_hash(path, opts.hash_cache.as_deref()),
    }
}

/// BLAKE3 of the file at `path`, from `cache` when it has this version of the file.
pub fn cached_hash(path: &Path, cache: Option<&HashCache>) -> io::Result<[u8; 32]> {
    let Some(cache) = cache else {
        return hash_file(path);
    };
    // The key is taken before reading: if the file changes meanwhile its ctime moves on and
    // the record made here never matches it.
    // Followed: a file listed in place of a symlink (`-L`) is keyed by the file itself.
    let key = FileKey::of(&fs::metadata(path)?);
    if let Some(h) = cache.get(&key) {
        return Ok(h);
    }
    let h = hash_file(path)?;
    cache.put(key, h);
    Ok(h)
}

/// A file's whole-file checksum in an rsync algorithm, zero-padded to 32 bytes (for an rsync
/// peer's `-c`).
pub fn rsync_sum(
    path: &Path,
    kind: crate::proto::rsync::checksum::SumKind,
) -> io::Result<[u8; 32]> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = kind.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let mut out = [0u8; 32];
    let d = h.finish();
    out[..d.len()].copy_from_slice(&d);
    Ok(out)
}

/// BLAKE3 of an open file's content.
pub fn hash_open_file(mut file: File) -> io::Result<[u8; 32]> {
    use std::io::Read;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        crate::liveness::bump();
    }
    Ok(*h.finalize().as_bytes())
}

/// BLAKE3 of a file's content (memory-mapped and hashed on all cores when large).
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan's two arrays are sorted through a permutation applied in place: each position
    /// ends with what the permutation names, in both.
    #[test]
    fn a_permutation_reorders_both_arrays_alike() {
        let mut a = vec!['a', 'b', 'c', 'd', 'e', 'f'];
        let mut b = vec![0, 1, 2, 3, 4, 5];
        // Two cycles (0 2 4) (1 5) and a fixed point 3.
        permute(&mut a, &mut b, vec![2, 5, 4, 3, 0, 1]);
        assert_eq!(a, ['c', 'f', 'e', 'd', 'a', 'b']);
        assert_eq!(b, [2, 5, 4, 3, 0, 1]);
    }

    /// Two source arguments naming one path: the first argument's entry is kept, whatever
    /// order the walk found them in (the sort is not stable: the tie-break decides).
    #[test]
    fn the_first_of_two_arguments_naming_one_path_wins() {
        let t = tempfile::tempdir().unwrap();
        for (dir, size) in [("one", 1), ("two", 22)] {
            std::fs::create_dir_all(t.path().join(dir).join("d")).unwrap();
            std::fs::write(t.path().join(dir).join("d/f"), vec![b'x'; size]).unwrap();
            std::fs::write(t.path().join(dir).join(format!("only-{dir}")), b"y").unwrap();
        }
        let opts = SyncOptions::archive();
        let stats = Stats::default();
        for (first, second, want) in [("one", "two", 1), ("two", "one", 22)] {
            let list = scan_sources(
                &[
                    t.path().join(format!("{first}/")),
                    t.path().join(format!("{second}/")),
                ],
                &opts,
                &stats,
                &crate::engine::NullSink,
            );
            let names: Vec<&[u8]> = list.list.entries.iter().map(|e| &e.path[..]).collect();
            assert_eq!(
                names,
                [&b"."[..], b"only-one", b"only-two", b"d", b"d/f"],
                "{first} then {second}"
            );
            let f = list
                .list
                .entries
                .iter()
                .position(|e| e.path == b"d/f")
                .unwrap();
            assert_eq!(list.list.entries[f].size, want);
            assert_eq!(
                list.list.len(),
                list.base_of.len(),
                "two arguments, a base each"
            );
            assert!(list.source_path(f).starts_with(t.path().join(first)));
            let only_two = list.list.entries.iter().position(|e| e.path == b"only-two");
            assert!(list
                .source_path(only_two.unwrap())
                .starts_with(t.path().join("two")));
        }
    }

    /// Issue 18: one source argument keeps no per-entry base (every entry's is the one);
    /// paths and `-c`'s checksums still come from it.
    #[test]
    fn one_source_argument_keeps_no_base_per_entry() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("src/d")).unwrap();
        std::fs::write(t.path().join("src/d/f"), b"data").unwrap();
        let mut opts = SyncOptions::archive();
        opts.checksum = true;
        let stats = Stats::default();
        let list = scan_sources(
            &[t.path().join("src/")],
            &opts,
            &stats,
            &crate::engine::NullSink,
        );
        assert!(list.base_of.is_empty());
        let f = list
            .list
            .entries
            .iter()
            .position(|e| e.path == b"d/f")
            .unwrap();
        assert_eq!(list.base_index(f), 0);
        assert_eq!(list.source_path(f), t.path().join("src/d/f"));
        assert!(
            list.list.entries[f].checksum().is_some(),
            "-c hashed the file"
        );
    }
}
