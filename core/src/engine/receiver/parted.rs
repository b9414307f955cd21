//! Large files asked for in parts, one per stream, written at their offsets into one staged
//! file ([`PartedFile`]); and a lost lane's files asked for again on the streams left
//! ([`relaunch`]). Does not pick lanes (`engine::lanes`).

#[allow(unused_imports)]
use super::*;

/// A destination file being written: its directory, the open file, how it is staged.
pub(super) type StagedFile = (Arc<OwnedFd>, File, Staging);

/// With lanes, a whole file at least this large is asked for in parts, one per stream.
pub(super) const PART_MIN: u64 = 32 << 20;

/// A file received in parts over several streams: one staged file, each part written at its
/// offset by its own writer; the writer that completes the last part commits it. Dropped
/// uncommitted (a failure, an abandoned session), it removes what was staged.
pub(super) struct PartedFile {
    pub(super) t: Transfer,
    pub(super) staged: std::sync::OnceLock<Result<StagedFile, String>>,
    pub(super) remaining: std::sync::atomic::AtomicUsize,
    pub(super) failed: std::sync::atomic::AtomicBool,
    pub(super) committed: std::sync::atomic::AtomicBool,
}

impl PartedFile {
    pub(super) fn new(t: Transfer, parts: usize) -> Self {
        PartedFile {
            t,
            staged: std::sync::OnceLock::new(),
            remaining: std::sync::atomic::AtomicUsize::new(parts),
            failed: std::sync::atomic::AtomicBool::new(false),
            committed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Report the file failed (once).
    pub(super) fn fail(&self, ctx: &Ctx, message: String) {
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
pub(super) struct PartSlot {
    pub(super) offset: u64,
    pub(super) len: u64,
    pub(super) lane: u8,
    pub(super) answered: bool,
    pub(super) tx: Option<mpsc::Sender<Chunk>>,
}

/// A part whose stream was lost and that waits for a free one.
pub(super) const WAITING: u8 = u8::MAX;

impl PartSlot {
    pub(super) fn request(&self, ndx: u32, iflags: u16) -> Frame {
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
pub(super) struct Parted {
    pub(super) file: Arc<PartedFile>,
    pub(super) parts: Vec<PartSlot>,
}

impl Parted {
    /// The streams carrying an unanswered part of this file.
    pub(super) fn busy(&self) -> Vec<u8> {
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
    pub(super) async fn take(
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
    pub(super) fn close_all(&mut self) {
        for s in &mut self.parts {
            s.tx = None;
        }
    }
}

/// Write one part at its offset; the writer that completes the last part of a sound file
/// commits it and records it.
pub(super) fn receive_part(
    ctx: &Ctx,
    pf: &PartedFile,
    offset: u64,
    len: u64,
    mut rx: mpsc::Receiver<Chunk>,
) {
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

/// `lane` is lost: abandon the files that were arriving on it and ask for everything it still
/// owed on the least loaded stream left.
#[allow(clippy::too_many_arguments)]
pub(super) async fn relaunch(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A part's request names its stream, offset and length; the streams busy with a file are
    /// those carrying an unanswered part of it (not the ones waiting for a stream).
    #[test]
    fn parts_know_their_streams() {
        let t = Transfer {
            ndx: 3,
            itemize: Itemize::new('>', FileKind::File),
            old_perms: None,
        };
        let slot = |offset, lane, answered| PartSlot {
            offset,
            len: 16,
            lane,
            answered,
            tx: None,
        };
        let p = Parted {
            file: Arc::new(PartedFile::new(t, 3)),
            parts: vec![
                slot(0, 0, true),
                slot(16, 2, false),
                slot(32, WAITING, false),
            ],
        };
        assert_eq!(p.busy(), vec![2]);
        assert!(matches!(
            p.parts[1].request(3, 1),
            Frame::RangeRequest {
                ndx: 3,
                lane: 2,
                offset: 16,
                len: 16,
                ..
            }
        ));
    }
}
