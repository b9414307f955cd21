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

/// The number of cores, asked once (`available_parallelism` reads cgroup files each call).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Files at least this large are copied as several ranges at once.
const PARALLEL_COPY_MIN: u64 = 256 << 20;

fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP
    )
}

/// Copy the `len` bytes `src` had when it was opened to `dst`, in the kernel where possible
/// (`copy_file_range`), with plain read/write where not. A large file without a rate limit or
/// progress display is split into ranges copied on parallel threads.
pub fn copy_blocking(
    src: &File,
    dst: &File,
    len: u64,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<u64> {
    let chunked = limit.is_limited() || progress.is_some();
    let parts = cores().min(4) as u64;
    if !chunked && len >= PARALLEL_COPY_MIN && parts > 1 {
        match copy_ranges(src, dst, len, parts) {
            Ok(n) if n == len => return Ok(n),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "source changed size while being copied ({n} of {len} bytes)"
                )))
            }
            Err(e)
                if e.raw_os_error()
                    .is_some_and(|c| unsupported(Errno::from_raw_os_error(c))) => {}
            Err(e) => return Err(e),
        }
    }
    let step = if chunked {
        limit.step(8 << 20)
    } else {
        1 << 30
    };
    // Stop at the size seen when the file was opened (one call fewer per file than reading to
    // end-of-file); an empty file costs one call that returns 0.
    let goal = len.max(1);
    let mut done = 0u64;
    while done < goal {
        let want = (goal - done).min(step) as usize;
        match rustix::fs::copy_file_range(src, None, dst, None, want) {
            Ok(0) => break,
            Ok(n) => {
                done += n as u64;
                crate::liveness::bump();
                after_step(n as u64, done, limit, progress);
            }
            // Not supported between these files (or at all): plain read/write.
            Err(e) if done == 0 && unsupported(e) => {
                return copy_read_write(src, dst, limit, progress);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Copy `[start, end)` of `src` to the same range of `dst`.
fn copy_range(src: &File, dst: &File, start: u64, end: u64) -> io::Result<u64> {
    copy_range_at(src, start, dst, start, end - start)
}

/// Copy `len` bytes at `src_off` of `src` to `dst_off` of `dst`, in the kernel where possible,
/// with positioned reads and writes where not; returns the bytes copied (fewer only at the
/// source's end of file). Neither file's position moves.
pub fn copy_range_at(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out) = (src_off, dst_off);
    let end = src_off + len;
    while off_in < end {
        let want = (end - off_in).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(_) => crate::liveness::bump(),
            Err(Errno::INTR) => continue,
            Err(e) if unsupported(e) => {
                let mut buf = vec![0u8; (end - off_in).min(1 << 20) as usize];
                while off_in < end {
                    let n = ((end - off_in) as usize).min(buf.len());
                    let got = src.read_at(&mut buf[..n], off_in)?;
                    if got == 0 {
                        return Ok(off_in - src_off);
                    }
                    dst.write_all_at(&buf[..got], off_out)?;
                    off_in += got as u64;
                    off_out += got as u64;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(off_in - src_off)
}

/// Copy `len` bytes as `parts` ranges on scoped threads.
fn copy_ranges(src: &File, dst: &File, len: u64, parts: u64) -> io::Result<u64> {
    let chunk = len.div_ceil(parts);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..parts)
            .map(|i| {
                let (start, end) = (i * chunk, ((i + 1) * chunk).min(len));
                s.spawn(move || copy_range(src, dst, start, end))
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h
                .join()
                .map_err(|_| io::Error::other("copy thread panicked"))??;
        }
        Ok(total)
    })
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
    fn parallel_ranges_copy_every_byte() {
        let mut src = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 12345u32).map(|i| (i % 253) as u8).collect();
        src.write_all(&data).unwrap();
        let mut dst = tempfile::tempfile().unwrap();
        let n = copy_ranges(&src, &dst, data.len() as u64, 3).unwrap();
        assert_eq!(n, data.len() as u64);
        let mut back = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut back).unwrap();
        assert!(back == data, "ranges copied wrong bytes");
    }

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
