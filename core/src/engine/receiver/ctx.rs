//! The receiver's shared context and per-file vocabulary: [`Ctx`] (options, list, destination,
//! ids) with the metadata each item should end with, a [`Transfer`] and the generator's [`Plan`],
//! why a file failed ([`CopyError`]), and the last steps every written file takes (staging
//! with the right mode, attributes, rename into place, recording the result). Does not move
//! data or decide what to transfer.

#[allow(unused_imports)]
use super::*;

/// The receiver's fixed context, shared with its copy tasks.
pub(super) struct Ctx {
    pub(super) opts: SyncOptions,
    pub(super) stats: Arc<Stats>,
    pub(super) sink: Arc<dyn EventSink>,
    pub(super) list: Arc<FileList>,
    pub(super) root: Option<Arc<DestRoot>>,
    pub(super) root_created: bool,
    pub(super) ids: IdNames,
    /// With the directory-tree exchange: the directories whose whole contents were listed
    /// (`None`: the whole list was sent).
    pub(super) complete: Option<HashSet<Vec<u8>>>,
    pub(super) am_root: bool,
    pub(super) euid: u32,
    pub(super) egid: u32,
    pub(super) umask: u32,
    /// Issue 18: `--chmod`, applied to each entry as it is read ([`Ctx::perms`]), not to the
    /// list, which a local copy shares with its sender.
    pub(super) chmod: Option<crate::engine::chmod::ChmodRules>,
    /// Puts items in list order (`sink` is it, or what it sends to); `None` in unit tests.
    pub(super) order: Option<Arc<InOrder>>,
    // Issue 15, source:
    /// `--remove-source-files`: the entries now synchronized here, for the sender.
    pub(super) synced: std::sync::Mutex<Vec<u32>>,
    // Issue 15, tempfiles:
    /// `-T`'s directory and the files `--delay-updates` holds back.
    pub(super) temp: staging::TempState,
}

/// What a [`Ctx`] is made of besides the job: the list it works on and the destination.
pub(super) struct CtxParts {
    pub(super) list: Arc<FileList>,
    pub(super) root: Option<Arc<DestRoot>>,
    pub(super) root_created: bool,
    pub(super) ids: IdNames,
    pub(super) complete: Option<HashSet<Vec<u8>>>,
    pub(super) chmod: Option<crate::engine::chmod::ChmodRules>,
    pub(super) temp: staging::TempState,
}

impl Ctx {
    /// The context of one generator pass over `parts.list` (the whole list, or a round's),
    /// with its items put in list order: sent to a pushing client as reports (`report`, which
    /// shows its own list's modes), else to the job's sink after `--chmod`. Returns the
    /// context and the order its items wait in.
    pub(super) fn in_order(
        job: &ReceiverJob,
        report: Option<&Arc<ReportSink>>,
        parts: CtxParts,
    ) -> (Arc<Ctx>, Arc<InOrder>) {
        if let Some(r) = report {
            r.set_list(parts.list.clone());
        }
        let order = Arc::new(match report {
            Some(r) => InOrder::new(r.clone(), parts.list.clone()),
            None => {
                InOrder::new(job.sink.clone(), parts.list.clone()).with_chmod(parts.chmod.clone())
            }
        });
        let ctx = Arc::new(Ctx {
            opts: job.opts.clone(),
            stats: job.stats.clone(),
            sink: order.clone(),
            order: Some(order.clone()),
            list: parts.list,
            root: parts.root,
            root_created: parts.root_created,
            ids: parts.ids,
            complete: parts.complete,
            am_root: rustix::process::geteuid().is_root(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: umask(),
            chmod: parts.chmod,
            synced: Default::default(),
            temp: parts.temp,
        });
        (ctx, order)
    }
}

/// A file whose data must come from the sender.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transfer {
    pub(super) ndx: u32,
    pub(super) itemize: Itemize,
    /// The permission bits of the file it replaces (`None` for a new file): without `-p` the
    /// new content keeps them, as rsync does.
    pub(super) old_perms: Option<u32>,
}

/// A transfer as the plan holds it until it is asked for, in 8 bytes instead of 32: the plan
/// of a fresh copy has one per file and waits in these for most of the run (issue 18). The generator's summaries are all `>` and the entry's kind,
/// so the wire bits say the rest; the old permission bits are at most `0o7777`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Queued {
    pub(super) ndx: u32,
    iflags: u16,
    /// [`Queued::NO_PERMS`] for none.
    old_perms: u16,
}

impl Queued {
    const NO_PERMS: u16 = u16::MAX;

    pub(super) fn new(t: &Transfer) -> Queued {
        Queued {
            ndx: t.ndx,
            iflags: t.itemize.to_flags(),
            old_perms: t.old_perms.map_or(Self::NO_PERMS, |p| (p & 0o7777) as u16),
        }
    }

    pub(super) fn transfer(self, ctx: &Ctx) -> Transfer {
        let kind = ctx.list.entries[self.ndx as usize].kind;
        Transfer {
            ndx: self.ndx,
            itemize: Itemize::from_flags('>', kind, self.iflags),
            old_perms: (self.old_perms != Self::NO_PERMS).then_some(u32::from(self.old_perms)),
        }
    }
}

/// What the generator decided.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) transfers: Vec<Queued>,
    /// Directories whose metadata is set last, with whether this run created them.
    pub(super) dir_fixes: Vec<(u32, bool)>,
    pub(super) followers: Vec<u32>,
}

impl Ctx {
    // Issue 15, source:
    /// `--remove-source-files`: entry `ndx` is synchronized here (transferred or found
    /// identical), so the sender may remove it (rsync's `MSG_SUCCESS`). Nothing in a dry run.
    pub(super) fn synced(&self, ndx: u32) {
        if self.opts.source.remove_source_files && !self.opts.dry_run {
            if let Ok(mut v) = self.synced.lock() {
                v.push(ndx);
            }
        }
    }

    /// The permission bits entry `e` is to have here: the sender's, after `--chmod`.
    pub(super) fn perms(&self, e: &FileEntry) -> u32 {
        crate::engine::chmod::perms_of(self.chmod.as_ref(), e)
    }

    pub(super) fn warn(&self, message: String) {
        self.sink.event(Event::Warning { message });
    }

    pub(super) fn fail(&self, what: &str, rel: &[u8], e: &io::Error) {
        self.stats.errors.fetch_add(1, Relaxed);
        self.warn(format!(
            "{what} \"{}\" failed: {}",
            self.display(rel).display(),
            os_error(e)
        ));
    }

    pub(super) fn display(&self, rel: &[u8]) -> PathBuf {
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

    /// Entry `ndx` is done: items after it in the list need not wait for it.
    pub(super) fn settle(&self, ndx: u32) {
        if let Some(o) = &self.order {
            o.settle(ndx);
        }
    }

    pub(super) fn item(&self, e: &FileEntry, itemize: Itemize) {
        self.sink.event(Event::Item {
            entry: e,
            itemize,
            link_to: None,
        });
    }

    /// The metadata `e` should end up with; `new` says whether the item is being created.
    pub(super) fn meta_plan(&self, e: &FileEntry, new: bool) -> MetaPlan {
        let o = &self.opts;
        MetaPlan {
            uid: (o.owner && self.am_root).then(|| self.ids.local_uid(e.user(), e.uid())),
            gid: o.group.then(|| self.ids.local_gid(e.group(), e.gid())),
            perms: if o.perms {
                Some(self.perms(e))
            } else if new {
                Some(self.perms(e) & 0o777 & !self.umask)
            } else {
                None
            },
            mtime: (o.times && !self.omits_time(e.kind)).then_some((e.mtime, e.mtime_nsec)),
        }
    }

    /// `-O`/`-J`: directories or symlinks whose times are left alone.
    pub(super) fn omits_time(&self, kind: FileKind) -> bool {
        match kind {
            FileKind::Dir => self.opts.dest.omit_dir_times,
            FileKind::Symlink => self.opts.dest.omit_link_times,
            _ => false,
        }
    }

    /// The metadata a transferred file ends up with: as [`Ctx::meta_plan`], except that
    /// without `-p` a file that replaces another keeps the old one's permissions (`-E`: with
    /// the sender's executability).
    pub(super) fn file_plan(&self, e: &FileEntry, t: &Transfer) -> MetaPlan {
        let mut plan = self.meta_plan(e, t.itemize.new);
        if !self.opts.perms {
            if let Some(old) = t.old_perms {
                plan.perms = Some(old);
                self.executability(e, old, &mut plan);
            }
        }
        plan
    }

    /// `-E` without `-p`: an existing regular file of mode `cur` gets the sender's
    /// executability in `plan`.
    pub(super) fn executability(&self, e: &FileEntry, cur: u32, plan: &mut MetaPlan) {
        if self.opts.write.executability && !self.opts.perms && e.kind == FileKind::File {
            plan.perms = Some(crate::engine::options::executable_mode(self.perms(e), cur));
        }
    }

    /// Itemize columns for an existing item (rsync compares times to the second).
    pub(super) fn attr_itemize(&self, st: &Stat, plan: &MetaPlan, mut it: Itemize) -> Itemize {
        let (_, perms, owner, group) = meta_diff(st, plan);
        it.time = plan.mtime.is_some_and(|m| {
            let have = (st.st_mtime, st.st_mtime_nsec as u32);
            !same_time(self.opts.dest.modify_window, have, m)
        });
        // Without -t, what is sent or changed here gets the time of the run: rsync reports
        // it as `T` (generator.c `itemize`).
        if !self.opts.times && matches!(it.update, '>' | 'c') {
            it.time = true;
            it.time_now = true;
        }
        it.perms = perms && (self.opts.perms || self.opts.write.executability);
        it.owner = owner;
        it.group = group;
        it
    }

    pub(super) fn dir(&self, rel: &[u8]) -> io::Result<Option<Arc<OwnedFd>>> {
        match &self.root {
            Some(r) => r.dir(rel).map(Some),
            None => Ok(None),
        }
    }
}

/// Why one file could not be written.
#[derive(Debug)]
pub(super) enum CopyError {
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

pub(super) fn failed(what: &str, path: &Path, e: &io::Error) -> CopyError {
    CopyError::Failed(format!(
        "{what} \"{}\" failed: {}",
        path.display(),
        os_error(e)
    ))
}

/// Set metadata on the finished temporary file and rename it into place.
pub(super) fn finish_file(
    ctx: &Ctx,
    e: &FileEntry,
    t: &Transfer,
    dir: &Arc<OwnedFd>,
    file: &File,
    staging: &Staging,
    name: &[u8],
) -> Result<(), CopyError> {
    // Issue 15, data: zeros become holes before its times are set (not in place: rsync
    // refuses -S with --inplace).
    if ctx.opts.write.sparse && staging != &Staging::InPlace {
        crate::engine::sparse::punch_zero_blocks(file)
            .map_err(|err| failed("write", &ctx.display(&e.path), &err))?;
    }
    // Issue 15, data: `--append` keeps the receiver's prefix.
    if ctx.opts.write.append > 0 && !t.itemize.new {
        append::keep_prefix(ctx, dir, name, file, &e.path)?;
    }
    let mut plan = ctx.file_plan(e, t);
    // An unnamed file was created with its final permission bits (see `open_dest`); chmod only
    // when the umask took some away or set-id/sticky bits are wanted (or chown will run, which
    // clears set-id bits anyway).
    // With -A the access ACL is set after the mode and a file without one keeps the mode set
    // here, whatever a default ACL of its directory made it.
    if staging == &Staging::Anonymous
        && !ctx.opts.acls
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
    let copied = xattr::Copied::of(&ctx.opts);
    if copied.any() {
        xattr::apply_fd(file, e.xattrs(), copied)
            .map_err(|err| failed("set xattrs on", &ctx.display(&e.path), &err))?;
    }
    // Issue 15, backup and tempfiles: a backup, then in place (or waiting, --delay-updates).
    staging::put_in_place(ctx, e, t.ndx, dir, file, staging, name)
}

/// Open the destination for writing: a staged new file, or the file itself with `--inplace`.
pub(super) fn open_dest(
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
    // Issue 15, tempfiles: in -T's directory, if any.
    let (f, staging) = staging::stage(ctx, &dir, name, t.itemize.new, mode)
        .map_err(|err| failed("mkstemp", &ctx.display(&e.path), &err))?;
    Ok((dir, f, staging))
}

pub(super) fn record(ctx: &Ctx, t: Transfer, r: Result<u64, CopyError>) {
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
            ctx.synced(t.ndx);
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
    ctx.settle(t.ndx);
}

pub(super) fn umask() -> u32 {
    crate::engine::chmod::process_umask()
}

/// What the receiver's unit tests share: a context over a real destination directory, and
/// entries to list.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// The names in `dir`, sorted: what a run left there.
    pub(crate) fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// An event sink that keeps what it is told.
    #[derive(Debug, Default)]
    pub(crate) struct Kept(pub(crate) std::sync::Mutex<Vec<String>>);

    impl EventSink for Kept {
        fn event(&self, event: Event<'_>) {
            let line = match event {
                Event::Item { entry, itemize, .. } => format!(
                    "{} {}",
                    itemize.code(),
                    String::from_utf8_lossy(&entry.path)
                ),
                Event::Deleted { path, .. } => {
                    format!("*deleting {}", String::from_utf8_lossy(&path))
                }
                Event::Warning { message } => format!("warning: {message}"),
                other => format!("{other:?}"),
            };
            if let Ok(mut v) = self.0.lock() {
                v.push(line);
            }
        }
    }

    impl Kept {
        pub(crate) fn lines(&self) -> Vec<String> {
            self.0.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    /// A file entry of the sender's list.
    pub(crate) fn entry(path: &str, kind: FileKind, size: u64, perms: u32) -> FileEntry {
        let mut e = FileEntry::new(path.as_bytes(), kind);
        e.perms = perms as u16;
        e.size = size;
        e.mtime = 1_600_000_000;
        if kind == FileKind::Symlink {
            e.set_link_target(b"target".to_vec());
        }
        e
    }

    /// A context for `entries` landing in `dest` (which must exist), with `opts`.
    pub(crate) fn ctx(dest: &Path, entries: Vec<FileEntry>, opts: SyncOptions) -> (Ctx, Arc<Kept>) {
        let kept = Arc::new(Kept::default());
        let ctx = Ctx {
            opts,
            stats: Arc::new(Stats::default()),
            sink: kept.clone(),
            list: Arc::new(FileList { entries }),
            root: Some(Arc::new(
                DestRoot::open(dest).expect("open the destination"),
            )),
            root_created: false,
            ids: IdNames::default(),
            complete: None,
            am_root: rustix::process::geteuid().is_root(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: 0o022,
            chmod: None,
            order: None,
            synced: Default::default(),
            temp: staging::TempState::default(),
        };
        (ctx, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn transfer(new: bool, old_perms: Option<u32>) -> Transfer {
        let mut itemize = Itemize::new('>', FileKind::File);
        itemize.new = new;
        Transfer {
            ndx: 0,
            itemize,
            old_perms,
        }
    }

    /// Without `-p` a file that replaces another keeps the old one's permission bits, and a
    /// new one gets the source's masked by the umask, set-id bits dropped (rsync's rules).
    #[test]
    fn file_modes_follow_rsync_with_and_without_p() {
        let dir = tempfile::tempdir().unwrap();
        let e = entry("f", FileKind::File, 3, 0o4775);
        let mut opts = SyncOptions::default();
        let (c, _) = ctx(dir.path(), vec![e.clone()], opts.clone());
        assert_eq!(
            c.file_plan(&e, &transfer(false, Some(0o640))).perms,
            Some(0o640)
        );
        assert_eq!(c.file_plan(&e, &transfer(true, None)).perms, Some(0o755));
        opts.perms = true;
        let (c, _) = ctx(dir.path(), vec![e.clone()], opts);
        assert_eq!(
            c.file_plan(&e, &transfer(false, Some(0o640))).perms,
            Some(0o4775)
        );
        assert_eq!(c.file_plan(&e, &transfer(true, None)).perms, Some(0o4775));
    }

    /// A staged file gets its final mode before it is renamed into place, and the rename
    /// replaces the old file whole.
    #[test]
    fn a_finished_file_has_its_mode_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"old").unwrap();
        let e = entry("f", FileKind::File, 3, 0o644);
        let (c, _) = ctx(dir.path(), vec![e.clone()], SyncOptions::default());
        let t = transfer(false, Some(0o600));
        let (d, mut file, staging) = open_dest(&c, &e, &t).map_err(|_| "open").unwrap();
        file.write_all(b"new").unwrap();
        finish_file(&c, &e, &t, &d, &file, &staging, b"f")
            .map_err(|_| "finish")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let md = std::fs::metadata(dir.path().join("f")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a staged file was left behind");
    }
}
