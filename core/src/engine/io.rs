//! File-data movers: the thread-pool path and, where the kernel allows, io_uring.
//!
//! Owns *how* bytes move from an open source file to an open destination file, and the
//! bandwidth limit. A copy is three steps: `prepare` (open the source, create the temporary
//! destination — plain system calls), the data movement (`copy_file_range` on a blocking thread,
//! or `read`/`write` submitted through io_uring on a per-core ring thread), and `finish`
//! (metadata, rename — plain system calls). [`FileIo::copy`] runs all three on the backend's
//! thread so a small file costs one hand-off. Does not decide what to copy.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::options::IoMode;
use crate::error::SyncError;

/// An opened source and destination, ready for their data to move.
#[derive(Debug)]
pub struct Prepared {
    /// Source, positioned at 0.
    pub src: File,
    /// Destination, positioned at 0.
    pub dst: File,
    /// The expected length.
    pub len: u64,
}

/// Called with the bytes of the file moved so far.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A shared rate limit (`--bwlimit`), in bytes per second.
#[derive(Debug)]
pub struct RateLimit {
    rate: Option<u64>,
    start: Instant,
    moved: AtomicU64,
}

impl RateLimit {
    /// A limit of `rate` bytes per second, or none.
    pub fn new(rate: Option<u64>) -> Self {
        RateLimit {
            rate: rate.filter(|r| *r > 0),
            start: Instant::now(),
            moved: AtomicU64::new(0),
        }
    }

    /// Whether a limit is set.
    pub fn is_limited(&self) -> bool {
        self.rate.is_some()
    }

    /// Account `n` bytes; how long to wait before moving more.
    pub fn account(&self, n: u64) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let total = self.moved.fetch_add(n, Relaxed) + n;
        let due = Duration::from_secs_f64(total as f64 / rate as f64);
        due.saturating_sub(self.start.elapsed())
    }

    /// How many bytes to move per step so the limit is smooth.
    pub fn step(&self, default: u64) -> u64 {
        match self.rate {
            Some(r) => (r / 10).clamp(4096, default),
            None => default,
        }
    }
}

/// The chosen backend.
#[derive(Debug)]
enum Backend {
    Threads(rayon::ThreadPool),
    #[cfg(feature = "uring")]
    Uring(super::uring::RingPool),
}

/// Moves file data with the backend chosen at start.
#[derive(Debug)]
pub struct FileIo {
    backend: Backend,
}

impl FileIo {
    /// Choose a backend. `Threads` (and `Auto`) use a pool of `threads` workers with
    /// `copy_file_range`: the copy stays in the kernel and is reflink-capable, and measured
    /// faster than io_uring for same-filesystem copies (io_uring has no copy-range operation, so
    /// its data must pass through user buffers; see docs/BENCHMARKS.md). `Uring` uses `threads`
    /// ring threads, or fails when the kernel (or the build) does not allow io_uring.
    pub fn new(mode: IoMode, threads: usize) -> Result<FileIo, SyncError> {
        match mode {
            IoMode::Threads | IoMode::Auto => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads.max(1))
                    .thread_name(|i| format!("arsync-io-{i}"))
                    .build()
                    .map_err(|e| SyncError::Usage(format!("cannot start I/O threads: {e}")))?;
                Ok(FileIo {
                    backend: Backend::Threads(pool),
                })
            }
            IoMode::Uring => {
                #[cfg(feature = "uring")]
                {
                    super::uring::RingPool::start(threads)
                        .map(|pool| FileIo {
                            backend: Backend::Uring(pool),
                        })
                        .map_err(|e| {
                            SyncError::Usage(format!(
                                "--io=uring: io_uring is not available here: {e}"
                            ))
                        })
                }
                #[cfg(not(feature = "uring"))]
                {
                    let _ = threads;
                    Err(SyncError::Usage(
                        "--io=uring: this build has no io_uring support (feature \"uring\")".into(),
                    ))
                }
            }
        }
    }

    /// `uring` or `threads`.
    pub fn name(&self) -> &'static str {
        match self.backend {
            Backend::Threads(_) => "threads",
            #[cfg(feature = "uring")]
            Backend::Uring(_) => "uring",
        }
    }

    /// Prepare, move the data, finish — all on one of the backend's threads — then hand the
    /// result to `done` (on that thread). Returns at once: jobs queue on long-lived workers, so
    /// a small file costs no thread wake-up while the queue is busy.
    pub fn spawn_copy<R, E>(
        &self,
        prepare: impl FnOnce() -> Result<Prepared, E> + Send + 'static,
        finish: impl FnOnce(Prepared, io::Result<u64>) -> Result<R, E> + Send + 'static,
        limit: Arc<RateLimit>,
        progress: Option<ProgressFn>,
        done: impl FnOnce(Result<R, E>) + Send + 'static,
    ) where
        R: Send + 'static,
        E: Send + 'static + From<io::Error>,
    {
        match &self.backend {
            Backend::Threads(pool) => pool.spawn(move || {
                let run = || {
                    let p = prepare()?;
                    let moved = copy_blocking(&p.src, &p.dst, p.len, &limit, progress.as_deref());
                    finish(p, moved)
                };
                done(run());
            }),
            #[cfg(feature = "uring")]
            Backend::Uring(pool) => pool.spawn_copy(prepare, finish, limit, progress, done),
        }
    }
}

/// Copy `len` bytes (to end of file) from `src` to `dst` in the kernel where possible.
pub fn copy_blocking(
    src: &File,
    dst: &File,
    len: u64,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<u64> {
    let chunked = limit.is_limited() || progress.is_some();
    let step = if chunked {
        limit.step(8 << 20)
    } else {
        len.max(1 << 20)
    };
    let mut done = 0u64;
    // Stop at the size seen when the file was opened (one call fewer per file than reading
    // to end-of-file); a file that grew meanwhile is copied as it was.
    while done < len || len == 0 {
        let want = step
            .min(
                len.saturating_sub(done)
                    .max(if len == 0 { 1 << 20 } else { 0 }),
            )
            .min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, None, dst, None, want) {
            Ok(0) => break,
            Ok(n) => {
                done += n as u64;
                after_step(n as u64, done, limit, progress);
            }
            // Not supported between these files (or at all): plain read/write.
            Err(Errno::XDEV) | Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::OPNOTSUPP)
                if done == 0 =>
            {
                return copy_read_write(src, dst, limit, progress);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

fn after_step(
    n: u64,
    done: u64,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) {
    if let Some(p) = progress {
        p(done);
    }
    let wait = limit.account(n);
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

fn copy_read_write(
    mut src: &File,
    mut dst: &File,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; limit.step(1 << 20) as usize];
    let mut done = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        done += n as u64;
        after_step(n as u64, done, limit, progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    #[test]
    fn copies_and_limits() {
        let mut src = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        src.write_all(&data).unwrap();
        src.seek(SeekFrom::Start(0)).unwrap();
        let mut dst = tempfile::tempfile().unwrap();
        let limit = RateLimit::new(Some(1_000_000));
        let started = Instant::now();
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let progress: ProgressFn = Arc::new(move |d| s2.store(d, Relaxed));
        let n = copy_blocking(&src, &dst, data.len() as u64, &limit, Some(&*progress)).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(seen.load(Relaxed), data.len() as u64);
        // 300 kB at 1 MB/s: at least ~0.2 s.
        assert!(started.elapsed() >= Duration::from_millis(200));
        let mut back = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
