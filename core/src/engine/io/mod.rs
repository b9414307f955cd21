//! File-data movers: the thread-pool path and, where the kernel allows, io_uring.
//!
//! Owns *how* bytes move from an open source file to an open destination file, and the
//! bandwidth limit. A copy is three steps: `prepare` (open the source, create the temporary
//! destination — plain system calls), the data movement (`copy_file_range` on a blocking thread,
//! or `read`/`write` submitted through io_uring on a per-core ring thread), and `finish`
//! (metadata, rename — plain system calls). [`FileIo::copy`] runs all three on the backend's
//! thread so a small file costs one hand-off. Does not decide what to copy.

mod job;
mod kernel;
#[cfg(feature = "uring")]
pub mod uring;

use std::io;
use std::sync::Arc;

pub use job::{Prepared, ProgressFn, RateLimit};
pub use kernel::{copy_blocking, copy_range_at, start_writeback};

use super::options::IoMode;
use crate::error::SyncError;

/// The chosen backend.
#[derive(Debug)]
enum Backend {
    Threads(rayon::ThreadPool),
    #[cfg(feature = "uring")]
    Uring(uring::RingPool),
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
                    uring::RingPool::start(threads)
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
