//! Small files' work done in batches: read whole, their frames made on one blocking thread and
//! handed to the stream's writer in large writes (no thread or wake-up per file). Does not
//! decide what is asked for.

#[allow(unused_imports)]
use super::*;

/// Whole files up to this size are read in batches, their frames sent in one write.
pub(super) const SMALL_FILE: u64 = 128 << 10;

/// Work on one small file: send it whole, show its chunk tree's root, or send the chunks
/// asked for.
pub(super) enum SmallJob {
    /// The file's index, path and listed size.
    Whole(u32, PathBuf, u64),
    DeltaStart(u32, PathBuf, ChunkParams),
    DeltaChunks(u32, Arc<SenderDelta>),
}

/// Small files' work asked for on one stream, waiting to be done together by one job whose
/// frames go out in large writes.
#[derive(Default)]
pub(super) struct SmallBatch {
    pub(super) jobs: Vec<SmallJob>,
}

impl SmallBatch {
    pub(super) fn push(&mut self, job: SmallJob) {
        self.jobs.push(job);
    }

    pub(super) fn full(&self) -> bool {
        self.jobs.len() >= 64
    }
}

/// Do a batch of small files' work in order, every frame into one [`FrameOut`].
pub(super) fn run_small_jobs(
    jobs: Vec<SmallJob>,
    sink: &FrameSink,
    deltas: &Mutex<HashMap<u32, Arc<SenderDelta>>>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    let mut out = FrameOut::new(sink);
    let mut wholes = Vec::new();
    for job in jobs {
        match job {
            SmallJob::Whole(ndx, path, size) => wholes.push((ndx, path, size)),
            SmallJob::DeltaStart(ndx, path, params) => {
                // Issue 18, chunk cache: a small file is read (cached only from 1 MiB).
                start_delta(ndx, path, params, &mut out, deltas, None, stats)?
            }
            SmallJob::DeltaChunks(ndx, d) => send_chunks(ndx, &d, &mut out, stats, limit)?,
        }
    }
    send_small_files(wholes, &mut out, stats, limit)?;
    out.finish()
}

/// What a job sending on `lane` ends with: on the control stream (`alive` is `None`) its
/// failure ends the session; a lane's failure loses the lane (once), and what it carried is
/// asked for again on the others.
pub(super) fn lane_result(
    sent: Result<(), SyncError>,
    alive: Option<Arc<std::sync::atomic::AtomicBool>>,
    lane: u8,
    control: &FrameSink,
) -> Result<(), SyncError> {
    match alive {
        None => sent,
        Some(alive) => {
            if sent.is_err() && alive.swap(false, Relaxed) {
                control.blocking_send(&Frame::LaneLost { lane })?;
            }
            Ok(())
        }
    }
}

/// Read each small file whole and send its `DataBegin`, `Data` and `DataEnd` frames, many
/// files to one write. A file that turns out larger than a small one (it grew since it was
/// listed) is streamed as usual. `files`: index, path and listed size of each.
pub(super) fn send_small_files(
    files: Vec<(u32, PathBuf, u64)>,
    out: &mut FrameOut<'_>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    for (ndx, path, listed) in files {
        let read = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|f| read_small(f, listed));
        let data = match read {
            Ok(d) if d.len() as u64 <= 4 * SMALL_FILE => d,
            Ok(_) => {
                send_file(ndx, &path, None, out, stats, limit)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.push(&Frame::Vanished { ndx })?;
                continue;
            }
            Err(e) => {
                let message = format!(
                    "send_files failed to open \"{}\": {}",
                    path.display(),
                    os_error(&e)
                );
                out.push(&Frame::FileFailed { ndx, message })?;
                continue;
            }
        };
        crate::liveness::bump();
        let len = data.len() as u64;
        let hash = *blake3::hash(&data).as_bytes();
        out.push(&Frame::DataBegin { ndx, size: len })?;
        if !data.is_empty() {
            out.push(&Frame::Data { ndx, bytes: data })?;
        }
        out.push(&Frame::DataEnd { ndx, hash })?;
        stats.literal.fetch_add(len, Relaxed);
        let wait = limit.account(len);
        if !wait.is_zero() {
            out.flush()?;
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

/// Read a small file whole, up to 4 × [`SMALL_FILE`] + 1 bytes (more says it is no longer
/// small). The buffer is sized for the `listed` size and one byte more, so a file that is as
/// listed costs two reads (its data, then the end), not the probing reads of a growing buffer;
/// a file that grew or shrank since it was listed is still read to its end.
fn read_small(f: File, listed: u64) -> io::Result<Vec<u8>> {
    let bound = 4 * SMALL_FILE + 1;
    let mut data = Vec::with_capacity(listed.saturating_add(1).min(bound) as usize);
    f.take(bound).read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::session::frame_writer;
    use crate::proto::merkle::FrameDecoder;
    use tokio::io::AsyncReadExt;

    /// Frames a blocking job sends through a real stream writer, read back.
    pub(crate) async fn frames_of(
        job: impl FnOnce(&FrameSink) -> Result<(), SyncError> + Send + 'static,
    ) -> Vec<Frame> {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let (_r, w) = tokio::io::split(ours);
        let (sink, writer) = frame_writer(Box::new(w), Arc::new(Stats::default()));
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            theirs.read_to_end(&mut all).await.unwrap();
            all
        });
        tokio::task::spawn_blocking(move || job(&sink))
            .await
            .unwrap()
            .unwrap();
        writer.finish().await.unwrap();
        let bytes = reading.await.unwrap();
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        let mut v = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            v.push(f);
        }
        v
    }

    /// Each small file goes as `DataBegin`, one `Data`, `DataEnd` with its BLAKE3; a missing
    /// one as `Vanished`; all in one batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_files_go_whole_with_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"alpha").unwrap();
        std::fs::write(dir.path().join("e"), b"").unwrap();
        let files = vec![
            (0, dir.path().join("a"), 5),
            (1, dir.path().join("gone"), 3),
            (2, dir.path().join("e"), 0),
        ];
        let frames = frames_of(move |sink| {
            let mut out = FrameOut::new(sink);
            send_small_files(files, &mut out, &Stats::default(), &RateLimit::new(None))?;
            out.finish()
        })
        .await;
        assert_eq!(
            frames,
            vec![
                Frame::DataBegin { ndx: 0, size: 5 },
                Frame::Data {
                    ndx: 0,
                    bytes: b"alpha".to_vec()
                },
                Frame::DataEnd {
                    ndx: 0,
                    hash: *blake3::hash(b"alpha").as_bytes()
                },
                Frame::Vanished { ndx: 1 },
                Frame::DataBegin { ndx: 2, size: 0 },
                Frame::DataEnd {
                    ndx: 2,
                    hash: *blake3::hash(b"").as_bytes()
                },
            ]
        );
    }

    /// A file read for its listed size is read whole whatever its size now: as listed, grown
    /// or shrunk since (also past the listed size's buffer), empty; one past the small-file
    /// bound says it is no longer small.
    #[test]
    fn a_small_file_is_read_whole_whatever_was_listed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        for (len, listed) in [
            (100, 100),
            (100, 0),
            (100, 40),
            (7, 100),
            (0, 0),
            (70_000, 100),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&p, &data).unwrap();
            let got = read_small(File::open(&p).unwrap(), listed).unwrap();
            assert_eq!(got, data, "{len} bytes, listed {listed}");
        }
        let big = 4 * SMALL_FILE as usize + 10;
        std::fs::write(&p, vec![1u8; big]).unwrap();
        let got = read_small(File::open(&p).unwrap(), 100).unwrap();
        assert_eq!(got.len() as u64, 4 * SMALL_FILE + 1, "read up to the bound");
    }
}
