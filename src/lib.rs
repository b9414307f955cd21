//! # arsync
//!
//! The `arsync` command's library face: the default transport registry and the entry points
//! that join the engine's roles over a transport. The protocol logic is in [`arsync_core`];
//! the transports are in [`arsync_transports`].
//!
//! A local sync (`arsync -a SRC DEST`, both paths on this machine) runs the sender and the
//! receiver in this process, joined by the in-process `mem` transport: the same roles and the
//! same frames a remote sync uses.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub use arsync_core as core;
pub use arsync_transports as transports;

use arsync_core::engine::{
    run_receiver, run_sender, EventSink, ReceiverJob, SenderJob, Stats, SyncOptions,
};
use arsync_core::transport::{AuthConfig, Endpoint, ListenConfig, Registry};
use arsync_core::SyncError;

/// The outcome of a run: combined counters (errors end the run early instead).
#[derive(Debug)]
pub struct RunReport {
    /// The run's counters, as rsync reports them.
    pub stats: Stats,
}

static LOCAL_SEQ: AtomicU64 = AtomicU64::new(0);

/// Sync local `sources` into local `dest`: both roles in this process over the registry's
/// `mem` transport.
pub async fn sync_local(
    registry: &Registry,
    sources: Vec<PathBuf>,
    dest: PathBuf,
    opts: SyncOptions,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    let mem = registry.get("mem")?;
    let name = format!(
        "local-{}-{}",
        std::process::id(),
        LOCAL_SEQ.fetch_add(1, Relaxed)
    );
    let listener = mem.listen(&ListenConfig::bind(name.clone())).await?;
    let sender_stats = Arc::new(Stats::default());
    let receiver_stats = Arc::new(Stats::default());
    let sender_job = SenderJob {
        sources,
        opts: opts.clone(),
        stats: sender_stats.clone(),
        sink: sink.clone(),
    };
    let sender = tokio::spawn(async move {
        let conn = listener.accept().await?;
        run_sender(&*conn, false, sender_job).await
    });
    let conn = mem
        .connect(&Endpoint::host(name), &AuthConfig::default())
        .await?;
    let received = run_receiver(
        &*conn,
        true,
        ReceiverJob {
            dest,
            opts,
            stats: receiver_stats.clone(),
            sink,
        },
    )
    .await;
    let sent = match sender.await {
        Ok(r) => r,
        Err(e) => Err(SyncError::StreamIo(std::io::Error::other(e.to_string()))),
    };
    let _ = conn.close().await;
    // The receiver's error is the more precise one when both failed (the sender then only
    // saw the stream close).
    received?;
    sent?;
    Ok(RunReport {
        stats: Stats::combine(&sender_stats, &receiver_stats),
    })
}
