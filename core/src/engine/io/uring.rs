//! The io_uring backend: ring threads, each a tokio-uring runtime.
//!
//! Owns the ring threads and the read/write loop that moves a file's bytes through io_uring.
//! Jobs arrive as `Send` closures and build their (non-`Send`) futures on the ring thread, so a
//! file's open, data and rename all run there. Where `io_uring_setup` is refused (seccomp,
//! `kernel.io_uring_disabled`, old kernels) [`RingPool::start`] fails and the caller uses the
//! thread backend.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::job::{Prepared, ProgressFn, RateLimit};

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Ring threads, fed round-robin.
#[derive(Debug)]
pub struct RingPool {
    rings: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl RingPool {
    /// Start `n` ring threads; fails if the kernel refuses io_uring.
    pub fn start(n: usize) -> io::Result<RingPool> {
        let n = n.max(1);
        let mut rings = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
            std::thread::Builder::new()
                .name(format!("arsync-ring-{i}"))
                .spawn(move || {
                    let rt = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    rt.block_on(async move {
                        let mut running = Vec::new();
                        while let Some(job) = rx.recv().await {
                            running.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
                            running.push(tokio_uring::spawn(job()));
                        }
                        for h in running {
                            let _ = h.await;
                        }
                    });
                })?;
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("io_uring thread exited"))??;
            rings.push(tx);
        }
        Ok(RingPool {
            rings,
            next: AtomicUsize::new(0),
        })
    }

    /// Run prepare → io_uring copy → finish on a ring thread, then `done` with the result.
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
        // `done` must run exactly once: either inside the job, or here if the ring is gone.
        let done = Arc::new(std::sync::Mutex::new(Some(done)));
        let d2 = done.clone();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let r = match prepare() {
                    Ok(p) => {
                        let moved = copy_uring(&p, &limit, progress.as_deref()).await;
                        finish(p, moved)
                    }
                    Err(e) => Err(e),
                };
                if let Some(f) = d2.lock().ok().and_then(|mut d| d.take()) {
                    f(r);
                }
            })
        });
        let i = self.next.fetch_add(1, Relaxed) % self.rings.len();
        if self.rings[i].send(job).is_err() {
            if let Some(f) = done.lock().ok().and_then(|mut d| d.take()) {
                f(Err(E::from(io::Error::other("io_uring thread stopped"))));
            }
        }
    }
}

/// Read and write through the ring with two buffers: the next read is in flight while the
/// current chunk is written.
async fn copy_uring(
    p: &Prepared,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<u64> {
    let src = tokio_uring::fs::File::from_std(p.src.try_clone()?);
    let dst = tokio_uring::fs::File::from_std(p.dst.try_clone()?);
    let step = limit.step(1 << 20).min(p.len.max(4096)) as usize;
    let result = async {
        let (r, mut cur) = src.read_at(Vec::with_capacity(step), 0).await;
        let mut n = r?;
        let mut next: Vec<u8> = Vec::with_capacity(step);
        let mut pos = 0u64;
        while n > 0 {
            let (written, read) = tokio::join!(
                dst.write_all_at(cur, pos),
                src.read_at(next, pos + n as u64)
            );
            let (w, b) = written;
            cur = b;
            w?;
            let (r, b) = read;
            next = b;
            let m = r?;
            pos += n as u64;
            if let Some(p) = progress {
                p(pos);
            }
            let wait = limit.account(n as u64);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            cur.clear();
            std::mem::swap(&mut cur, &mut next);
            n = m;
        }
        Ok(pos)
    }
    .await;
    let _ = src.close().await;
    let _ = dst.close().await;
    result
}
