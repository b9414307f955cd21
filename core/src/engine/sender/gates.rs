//! The sender's limits on work in flight ([`SendGates`]), so that its loop never waits for a
//! permit: per stream at most the receiver's window of open files, a bound on files read at
//! once, and on files chunked at once. Does not read or send anything itself.

#[allow(unused_imports)]
use super::*;

/// The sender's limits on work in flight, so that its main loop never waits for a permit (it
/// keeps answering the delta exchange while files are sent): each job is a task that takes
/// its permits, then runs on a blocking thread.
///
/// - per stream, at most the receiver's window of files open at once (the receiver's writers
///   are sized by it; see `Caps::window`);
/// - at most `readers` files being read at once over all streams;
/// - at most `hashers` files being chunked and hashed at once (CPU).
pub(super) struct SendGates {
    pub(super) streams: Vec<Arc<Semaphore>>,
    pub(super) readers: Arc<Semaphore>,
    pub(super) hashers: Arc<Semaphore>,
}

impl SendGates {
    pub(super) fn new(streams: usize, window: usize, readers: usize, hashers: usize) -> Self {
        SendGates {
            streams: (0..streams)
                .map(|_| Arc::new(Semaphore::new(window.max(1))))
                .collect(),
            readers: Arc::new(Semaphore::new(readers.max(1))),
            hashers: Arc::new(Semaphore::new(hashers.max(1))),
        }
    }

    /// Run `job`, which opens and ends one file on `stream`, once the stream's window and a
    /// reader allow it.
    pub(super) fn spawn_file(
        &self,
        tasks: &mut JoinSet<Result<(), SyncError>>,
        stream: u8,
        what: &[u8],
        job: impl FnOnce() -> Result<(), SyncError> + Send + 'static,
    ) {
        let window = self.streams.get(usize::from(stream)).cloned();
        let readers = self.readers.clone();
        let what = String::from_utf8_lossy(what).into_owned();
        // Boxed (issue 18): a finished task waits in the set until the request loop next
        // wakes, and a fresh copy's last requests can leave every batch's task there, so the
        // task keeps a pointer to its future (freed when it ends) rather than the future.
        tasks.spawn(Box::pin(async move {
            let _w = crate::liveness::waiting(format!(
                "sender: \"{what}\" on stream {stream} (waits for room in the receiver's window, then is read and sent)"
            ));
            // The stream's window first: a reader permit is then never held while waiting.
            let _open = match window {
                Some(w) => Some(
                    w.acquire_owned()
                        .await
                        .map_err(|_| SyncError::Interrupted)?,
                ),
                None => None,
            };
            let _read = readers
                .acquire_owned()
                .await
                .map_err(|_| SyncError::Interrupted)?;
            run_blocking(job).await
        }));
    }

    /// Run `job` (chunking and hashing a file) once a hasher is free.
    pub(super) fn spawn_hashing(
        &self,
        tasks: &mut JoinSet<Result<(), SyncError>>,
        job: impl FnOnce() -> Result<(), SyncError> + Send + 'static,
    ) {
        let hashers = self.hashers.clone();
        tasks.spawn(async move {
            let _cpu = hashers
                .acquire_owned()
                .await
                .map_err(|_| SyncError::Interrupted)?;
            run_blocking(job).await
        });
    }
}

pub(super) async fn run_blocking(
    job: impl FnOnce() -> Result<(), SyncError> + Send + 'static,
) -> Result<(), SyncError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(SyncError::Job)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// No more than the window's files run at once on one stream, while another stream's go
    /// on beside them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_never_has_more_files_open_than_its_window() {
        let gates = SendGates::new(2, 2, 8, 2);
        let mut tasks = JoinSet::new();
        let now = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let most = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        for i in 0..12u8 {
            let stream = i % 2;
            let (now, most) = (now.clone(), most.clone());
            gates.spawn_file(&mut tasks, stream, b"f", move || {
                let s = usize::from(stream);
                let n = now[s].fetch_add(1, Ordering::SeqCst) + 1;
                most[s].fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                now[s].fetch_sub(1, Ordering::SeqCst);
                Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(most[0].load(Ordering::SeqCst), 2);
        assert_eq!(most[1].load(Ordering::SeqCst), 2);
    }
}
