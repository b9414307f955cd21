//! A custom transport plugin, end to end: arsync's engine over a Unix-domain socket.
//!
//! A transport is anything that implements `TransportFactory`: here (`unix_socket/transport.rs`)
//! `connect` dials a socket path and `listen` binds one. Each connection carries one stream
//! (like a single SSH channel; the crate's `PipeConnection` turns the socket's halves into a
//! `Connection`), and it does not claim a shared filesystem, so the engine sends file data as
//! frames and the receiver verifies each file's BLAKE3 before renaming it into place — the
//! remote code path. `tests/conformance.rs` runs the conformance suite against the same
//! transport, as a plugin's own tests would.
//!
//! Run it: `cargo run --example unix_socket_transport -- SRC/ DEST/`
//! (without arguments it syncs a small generated tree in a temporary directory).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use arsync::core::engine::{
    run_receiver, run_sender, NullSink, ReceiverJob, SenderJob, Stats, SyncOptions,
};
use arsync::core::transport::{AuthConfig, Endpoint, ListenConfig, Registry};

#[path = "unix_socket/transport.rs"]
mod transport;

pub use transport::UnixSocketTransport;

/// Sync `src` into `dest` with the sender behind a Unix socket at `socket`; returns the
/// receiver's counters.
pub async fn sync_over_unix_socket(
    src: PathBuf,
    dest: PathBuf,
    socket: &Path,
    opts: SyncOptions,
) -> Result<Arc<Stats>, arsync::core::SyncError> {
    // The registry a program would build: the defaults plus the plugin.
    let registry: Registry = arsync::transports::default_registry().with(UnixSocketTransport);
    let unix = registry.get("unix")?;
    let bind = socket.to_string_lossy().into_owned();
    let listener = unix.listen(&ListenConfig::bind(bind.clone())).await?;
    let sender_opts = opts.clone();
    let server = tokio::spawn(async move {
        let conn = listener.accept().await?;
        let job = SenderJob {
            sources: vec![src],
            opts: sender_opts,
            stats: Arc::new(Stats::default()),
            sink: Arc::new(NullSink),
            report_items: false,
        };
        run_sender(&*conn, false, job).await
    });
    let conn = unix
        .connect(&Endpoint::host(bind), &AuthConfig::default())
        .await?;
    let stats = Arc::new(Stats::default());
    let job = ReceiverJob {
        dest,
        opts,
        stats: stats.clone(),
        sink: Arc::new(NullSink),
    };
    run_receiver(&*conn, true, job).await?;
    server
        .await
        .map_err(|e| arsync::core::SyncError::StreamIo(io::Error::other(e)))??;
    Ok(stats)
}

#[allow(dead_code)] // used when built as an example, not when included by a test
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tmp = tempfile::tempdir()?;
    let (src, dest) = match args.as_slice() {
        [s, d] => (PathBuf::from(s), PathBuf::from(d)),
        _ => {
            let src = tmp.path().join("src");
            std::fs::create_dir_all(src.join("sub"))?;
            std::fs::write(src.join("hello.txt"), b"hello over a unix socket\n")?;
            std::fs::write(src.join("sub/data.bin"), vec![42u8; 1 << 20])?;
            let mut s = src.into_os_string();
            s.push("/");
            (PathBuf::from(s), tmp.path().join("dest"))
        }
    };
    let socket = tmp.path().join("arsync.sock");
    let stats = sync_over_unix_socket(src, dest.clone(), &socket, SyncOptions::archive()).await?;
    println!(
        "synced into {}: {} files transferred, {} bytes of data received over the socket",
        dest.display(),
        stats.transferred.load(Relaxed),
        stats.bytes_received.load(Relaxed)
    );
    Ok(())
}
