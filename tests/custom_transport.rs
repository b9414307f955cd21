//! The custom-transport example, run as a test: a user-written transport (a real Unix socket)
//! registered next to the built-in ones carries a whole sync, data frames and all.

#[path = "../examples/unix_socket_transport.rs"]
mod example;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering::Relaxed;

use arsync::core::engine::SyncOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_transport_carries_a_full_sync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).expect("mkdir");
    fs::write(src.join("a"), b"alpha").expect("write");
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("d/big"), &big).expect("write");
    let dest = tmp.path().join("dest");
    let mut arg = src.clone().into_os_string();
    arg.push("/");
    let stats = example::sync_over_unix_socket(
        arg.into(),
        dest.clone(),
        &tmp.path().join("t.sock"),
        SyncOptions::archive(),
    )
    .await
    .expect("sync over the unix socket");
    assert_eq!(fs::read(dest.join("a")).expect("a"), b"alpha");
    assert!(fs::read(dest.join("d/big")).expect("big") == big);
    let (s, d) = (
        fs::metadata(src.join("d/big")).expect("src meta"),
        fs::metadata(dest.join("d/big")).expect("dest meta"),
    );
    assert_eq!((s.mtime(), s.mtime_nsec()), (d.mtime(), d.mtime_nsec()));
    assert_eq!(stats.transferred.load(Relaxed), 2);
    // The data crossed the socket (no shared-filesystem shortcut for a plugin transport).
    assert!(stats.bytes_received.load(Relaxed) > 2_500_005);
    assert_eq!(stats.local_copied.load(Relaxed), 0);
}
