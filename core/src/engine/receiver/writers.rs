//! Writing files whose data arrives whole: the writers (a thread per large file fed through a
//! channel; small files buffered in the loop and written in batches), the window of files open
//! per stream ([`OpenFiles`]), the bound on jobs in flight ([`InFlight`]), and local copies on a
//! shared filesystem. Does not decide what to ask for.

#[allow(unused_imports)]
use super::*;

/// Files in flight on the I/O workers: a count the workers bring down when they finish, and a
/// wake-up for the receiver loop waiting for room (or for the end).
#[derive(Debug, Default)]
pub(super) struct InFlight {
    pub(super) count: std::sync::atomic::AtomicUsize,
    pub(super) changed: tokio::sync::Notify,
}

impl InFlight {
    /// Count one more job in flight until the returned slot is dropped: when the job ends, but
    /// also when it panics or is dropped unrun, so a loop waiting for the end never waits for
    /// a job that is gone.
    pub(super) fn start(self: &Arc<Self>) -> Slot {
        self.count.fetch_add(1, Relaxed);
        Slot(self.clone())
    }

    /// Wait until fewer than `max` are in flight.
    pub(super) async fn below(&self, max: usize) {
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
pub(super) struct Slot(pub(super) Arc<InFlight>);

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
pub(super) fn run_job(ctx: &Ctx, slot: Slot, job: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
        ctx.stats.errors.fetch_add(1, Relaxed);
    }
    drop(slot);
}

/// Start copying one file by path (both roles share the filesystem); the worker records the
/// result and lowers `inflight`.
pub(super) fn start_local_copy(
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

pub(super) enum Chunk {
    Data(Vec<u8>),
    End([u8; 32]),
    /// The file's lane was lost: discard what was written, it is asked for again.
    Abandon,
}

/// Where an arriving file's data goes: a writer on its own thread (large files, delta
/// rebuilds), or a buffer in the receiver's loop (small whole files, written in batches when
/// complete: no thread, channel or wake-up per file).
pub(super) enum Receiving {
    Writer(mpsc::Sender<Chunk>),
    Buffer(Vec<u8>),
    /// A small delta-exchanged file: its fetched chunks so far (it is rebuilt when complete).
    Chunks(Box<ReceiverDelta>, Vec<Vec<u8>>, u64),
}

/// Whole files up to this size are buffered in the loop and written in batches.
pub(super) const SMALL_FILE: u64 = 128 << 10;

/// A buffered file that grows past this (it grew since it was listed) gets a writer instead.
pub(super) const SMALL_BUFFER_MAX: usize = 4 * SMALL_FILE as usize;

/// A batch of complete small files goes to a worker at about this many files or bytes.
pub(super) const BATCH_FILES: usize = 64;

pub(super) const BATCH_BYTES: usize = 4 << 20;

/// A complete small file, waiting in a batch to be written: its data, or (delta) the chunks
/// it is rebuilt from with its old version; and the sender's hash (of the data, or the root
/// of its chunk tree).
pub(super) enum SmallFile {
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
    pub(super) fn transfer(&self) -> Transfer {
        match self {
            SmallFile::Whole { t, .. } => *t,
            SmallFile::Delta { d, .. } => d.transfer,
        }
    }

    pub(super) fn len(&self) -> usize {
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
pub(super) struct OpenFiles {
    pub(super) files: HashMap<u32, (u8, Transfer, Receiving)>,
    pub(super) per_stream: Vec<usize>,
    pub(super) window: usize,
}

impl OpenFiles {
    pub(super) fn new(streams: usize, window: usize) -> Self {
        OpenFiles {
            files: HashMap::new(),
            per_stream: vec![0; streams],
            window,
        }
    }

    /// Count one more file (or part) open on `stream`; an error if the sender went over its
    /// window there.
    pub(super) fn reserve(&mut self, stream: u8) -> Result<(), SyncError> {
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
    pub(super) fn release(&mut self, stream: u8) {
        if let Some(n) = self.per_stream.get_mut(usize::from(stream)) {
            *n = n.saturating_sub(1);
        }
    }

    pub(super) fn insert(&mut self, stream: u8, t: Transfer, to: Receiving) {
        self.files.insert(t.ndx, (stream, t, to));
    }

    pub(super) fn get_mut(&mut self, ndx: u32) -> Option<(&Transfer, &mut Receiving)> {
        self.files.get_mut(&ndx).map(|(_, t, r)| (&*t, r))
    }

    pub(super) fn contains(&self, ndx: u32) -> bool {
        self.files.contains_key(&ndx)
    }

    /// `ndx` ended (or was given up): its transfer and where its data went, its stream's
    /// count lowered.
    pub(super) fn end(&mut self, ndx: u32) -> Option<(Transfer, Receiving)> {
        let (stream, t, to) = self.files.remove(&ndx)?;
        self.release(stream);
        Some((t, to))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Close every channel: each writer sees the end of its data and discards its file.
    pub(super) fn close_all(&mut self) {
        self.files.clear();
        self.per_stream.iter_mut().for_each(|n| *n = 0);
    }
}

/// Receive one file's streamed bytes on a blocking thread: temp file, BLAKE3 check, rename.
pub(super) fn receive_stream(
    ctx: &Ctx,
    t: Transfer,
    mut rx: mpsc::Receiver<Chunk>,
) -> Result<u64, CopyError> {
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
    // The stream ended inside the file: Issue 15, tempfiles: --partial keeps what came.
    let (_, name) = split_parent(&e.path);
    staging::stopped(ctx, &dir, &staging, name);
    Err(CopyError::Failed(format!(
        "connection closed while receiving \"{}\"",
        ctx.display(&e.path).display()
    )))
}

/// A writer's place on the wait board for as long as it has a file open.
pub(super) fn writer_board(e: &FileEntry) -> crate::liveness::Waiting {
    crate::liveness::waiting(format!(
        "receiver: writing \"{}\" as its data comes",
        String::from_utf8_lossy(&e.path)
    ))
}

/// Start a blocking writer for `t` once a worker slot is free; the file's `Data`/`DataEnd`
/// frames reach it through the returned channel. It records its own result.
pub(super) async fn spawn_writer(
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
pub(super) async fn spawn_small_batch(
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
pub(super) fn write_small(ctx: &Ctx, f: SmallFile) -> Result<u64, CopyError> {
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
pub(super) fn write_whole(
    ctx: &Ctx,
    t: &Transfer,
    data: &[u8],
    hash: &[u8; 32],
) -> Result<u64, CopyError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(ndx: u32) -> Transfer {
        Transfer {
            ndx,
            itemize: Itemize::new('>', FileKind::File),
            old_perms: None,
        }
    }

    /// At most `window` files open on one stream; a sender over it is refused, and ending a
    /// file frees its place on its own stream only.
    #[test]
    fn the_window_is_kept_per_stream() {
        let mut open = OpenFiles::new(2, 2);
        for ndx in 0..2 {
            open.reserve(0).unwrap();
            open.insert(0, transfer(ndx), Receiving::Buffer(Vec::new()));
        }
        let err = open.reserve(0).expect_err("a third file on stream 0");
        assert!(err.to_string().contains("more than 2 files"), "{err}");
        // Stream 1 is its own window.
        open.reserve(1).unwrap();
        open.insert(1, transfer(9), Receiving::Buffer(Vec::new()));
        let (t, _) = open.end(0).unwrap();
        assert_eq!(t.ndx, 0);
        open.reserve(0).unwrap();
        assert!(open.reserve(5).is_err(), "no such stream");
        assert!(open.end(0).is_none(), "ended twice");
        open.close_all();
        assert!(open.is_empty());
    }

    /// A job's slot is given back when it ends, panics or is dropped unrun, so a wait for room
    /// always ends.
    #[tokio::test]
    async fn slots_are_given_back_however_a_job_ends() {
        let inflight = Arc::new(InFlight::default());
        let a = inflight.start();
        let b = inflight.start();
        let waiter = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.below(2).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let panicked = std::thread::spawn(move || {
            let _slot = a;
            panic!("a job that panics");
        })
        .join();
        assert!(panicked.is_err());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait ended")
            .unwrap();
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), inflight.below(1))
            .await
            .expect("nothing in flight");
    }
}
