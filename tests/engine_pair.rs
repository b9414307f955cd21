//! The two engine roles over the real in-process `mem` transport, driven through the library:
//! the streamed-data path (what a remote sync uses), and a hostile or broken sender speaking raw
//! frames at a real receiver (more hostile peers, in both roles, are in tests/hostile.rs). The
//! peer here is hand-written frames because the point is bytes no honest arsync would send; the
//! receiver, the transport and the filesystem are real.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use arsync::core::engine::{EventSink, NullSink, Stats, SyncOptions};
use arsync::core::proto::merkle::{Frame, FrameDecoder, Hello, PROTOCOL_VERSION};
use arsync::core::transport::{AuthConfig, Endpoint, ListenConfig, TransportFactory};
use arsync::core::{ExitCode, SyncError};
use arsync::transports::mem::Mem;
use common::hostile_merkle::MerklePeer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tree(root: &Path) {
    fs::create_dir_all(root.join("d/e")).unwrap();
    fs::write(root.join("a.txt"), b"hello").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(root.join("d/big.bin"), &big).unwrap();
    fs::write(root.join("d/e/empty"), b"").unwrap();
    fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("../a.txt", root.join("d/link")).unwrap();
}

fn opts() -> SyncOptions {
    let mut o = SyncOptions::archive();
    o.stream_data = true;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_data_path_reproduces_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    tree(&src);
    let registry = arsync::transports::default_registry();
    let mut src_arg = src.clone().into_os_string();
    src_arg.push("/");
    let report = arsync::sync_local(
        &registry,
        vec![src_arg.into()],
        dst.clone(),
        opts(),
        Arc::new(NullSink),
    )
    .await
    .expect("sync");
    for rel in ["a.txt", "d/big.bin", "d/e/empty"] {
        assert_eq!(
            fs::read(src.join(rel)).unwrap(),
            fs::read(dst.join(rel)).unwrap(),
            "{rel}"
        );
        let (s, d) = (
            fs::metadata(src.join(rel)).unwrap(),
            fs::metadata(dst.join(rel)).unwrap(),
        );
        assert_eq!(s.mode(), d.mode(), "{rel} mode");
        assert_eq!(
            (s.mtime(), s.mtime_nsec()),
            (d.mtime(), d.mtime_nsec()),
            "{rel} mtime"
        );
    }
    assert_eq!(
        fs::read_link(dst.join("d/link")).unwrap(),
        Path::new("../a.txt")
    );
    // The data really crossed the stream: more bytes sent than the file contents.
    let sent = report.stats.bytes_sent.load(Relaxed);
    assert!(sent > 3_000_005, "only {sent} bytes crossed the stream");
    assert_eq!(report.stats.transferred.load(Relaxed), 3);
    assert_eq!(report.stats.local_copied.load(Relaxed), 0);
}

// Issue 19, hostile peers: the scripted peer lives in tests/common/hostile_merkle.rs.
type HostileSender = MerklePeer;

async fn hostile_sender(dest: &Path) -> HostileSender {
    hostile_sender_with(dest, vec![]).await
}

async fn hostile_sender_with(dest: &Path, caps: Vec<(String, Vec<u8>)>) -> HostileSender {
    MerklePeer::to_receiver(dest, opts(), caps).await
}

fn file_entry(path: &str, size: u64) -> arsync::core::engine::FileEntry {
    use arsync::core::engine::{FileEntry, FileKind};
    let mut e = FileEntry::new(path.as_bytes(), FileKind::File);
    e.perms = 0o644;
    e.size = size;
    e.mtime = 1_600_000_000;
    e
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_out_of_order_or_without_parents_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    // "x/y" without a directory entry "x".
    let mut h = hostile_sender(&dest).await;
    h.frame(&Frame::FileEntries(vec![file_entry("x/y", 1)]))
        .await;
    h.frame(&Frame::FileListEnd { count: 1 }).await;
    assert!(h.finish().await.0.is_err());
    // Duplicates.
    let mut h = hostile_sender(&dest).await;
    h.frame(&Frame::FileEntries(vec![
        file_entry("a", 1),
        file_entry("a", 1),
    ]))
    .await;
    h.frame(&Frame::FileListEnd { count: 2 }).await;
    assert!(h.finish().await.0.is_err());
    // A count that does not match.
    let mut h = hostile_sender(&dest).await;
    h.frame(&Frame::FileEntries(vec![file_entry("a", 1)])).await;
    h.frame(&Frame::FileListEnd { count: 5 }).await;
    assert!(h.finish().await.0.is_err());
    assert!(leftovers(&dest).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_data_leaves_the_old_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("f"), b"old content").unwrap();
    let mut h = hostile_sender(&dest).await;
    h.frame(&Frame::FileEntries(vec![file_entry("f", 3)])).await;
    h.frame(&Frame::FileListEnd { count: 1 }).await;
    // Wait for the request, then send bytes whose hash does not match.
    assert_eq!(h.expect_request().await, 0);
    h.frame(&Frame::DataBegin { ndx: 0, size: 3 }).await;
    h.frame(&Frame::Data {
        ndx: 0,
        bytes: b"new".to_vec(),
    })
    .await;
    h.frame(&Frame::DataEnd {
        ndx: 0,
        hash: [0; 32],
    })
    .await;
    h.frame(&Frame::Done).await;
    let (r, stats) = h.finish().await;
    r.expect("a bad file is a per-file error, not a protocol failure");
    assert_eq!(stats.errors.load(Relaxed), 1);
    assert_eq!(stats.exit_code(), ExitCode::Partial);
    assert_eq!(fs::read(dest.join("f")).unwrap(), b"old content");
    assert_eq!(leftovers(&dest), vec!["f".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrequested_data_and_foreign_local_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    // Data for an index nobody asked for.
    let mut h = hostile_sender(&dest).await;
    h.frame(&Frame::FileEntries(vec![file_entry("f", 1)])).await;
    h.frame(&Frame::FileListEnd { count: 1 }).await;
    h.frame(&Frame::DataBegin { ndx: 7, size: 1 }).await;
    assert!(h.finish().await.0.is_err());
    // A "copy it yourself from /etc/shadow" answer from a peer that does not share our disk.
    let mut h = hostile_sender(&dest).await;
    h.frame(&Frame::FileEntries(vec![file_entry("f", 1)])).await;
    h.frame(&Frame::FileListEnd { count: 1 }).await;
    assert_eq!(h.expect_request().await, 0);
    h.frame(&Frame::LocalPath {
        ndx: 0,
        path: b"/etc/shadow".to_vec(),
    })
    .await;
    assert!(h.finish().await.0.is_err());
    assert!(!dest.join("f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_file_gives_exit_code_24() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let mut h = hostile_sender(&dest).await;
    h.frame(&Frame::FileEntries(vec![file_entry("gone", 1)]))
        .await;
    h.frame(&Frame::FileListEnd { count: 1 }).await;
    assert_eq!(h.expect_request().await, 0);
    h.frame(&Frame::Vanished { ndx: 0 }).await;
    h.frame(&Frame::Done).await;
    let (r, stats) = h.finish().await;
    r.expect("vanished files do not fail the run");
    assert_eq!(stats.exit_code(), ExitCode::Vanished);
    assert!(!dest.join("gone").exists());
}

/// A deterministic edit of `data`, by kind: insert, delete, overwrite, truncate, extend,
/// duplicate a region, move a region.
fn edit(data: &[u8], kind: usize, seed: usize) -> Vec<u8> {
    let n = data.len();
    let at = (seed.wrapping_mul(2_654_435_761)) % n;
    let mut d = data.to_vec();
    match kind {
        0 => d
            .splice(at..at, b"inserted bytes".iter().copied())
            .for_each(drop),
        1 => d.drain(at..(at + 5000).min(n)).for_each(drop),
        2 => d[at..(at + 4096).min(n)].iter_mut().for_each(|b| *b = !*b),
        3 => d.truncate(at.max(1)),
        4 => d.extend_from_slice(&data[..100_000.min(n)]),
        5 => {
            let piece = data[at..(at + 50_000).min(n)].to_vec();
            d.splice(n / 3..n / 3, piece).for_each(drop);
        }
        _ => {
            let piece: Vec<u8> = d.drain(at..(at + 70_000).min(n)).collect();
            d.extend(piece);
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_updates_rebuild_every_edit_exactly_and_send_little() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = arsync::transports::default_registry();
    let base: Vec<u8> = (0..1_500_000u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as u8)
        .collect();
    for kind in 0..7 {
        for seed in [1usize, 1234] {
            let dir = tmp.path().join(format!("k{kind}-s{seed}"));
            let (src, dst) = (dir.join("src"), dir.join("dst"));
            fs::create_dir_all(&src).unwrap();
            fs::create_dir_all(&dst).unwrap();
            let new = edit(&base, kind, seed);
            fs::write(src.join("f"), &new).unwrap();
            fs::write(dst.join("f"), &base).unwrap();
            // An older mtime, so that a same-size edit is not skipped by the quick check.
            fs::File::options()
                .write(true)
                .open(dst.join("f"))
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
                .unwrap();
            let mut arg = src.clone().into_os_string();
            arg.push("/");
            let report = arsync::sync_local(
                &registry,
                vec![arg.into()],
                dst.clone(),
                opts(),
                Arc::new(NullSink),
            )
            .await
            .unwrap_or_else(|e| panic!("edit {kind}/{seed}: {e}"));
            assert!(
                fs::read(dst.join("f")).unwrap() == new,
                "edit {kind}/{seed}: rebuilt file differs"
            );
            let literal = report.stats.literal.load(Relaxed);
            let matched = report.stats.matched.load(Relaxed);
            assert_eq!(literal + matched, new.len() as u64, "edit {kind}/{seed}");
            // Every edit here touches at most ~170 KB; the rest comes from the old file.
            assert!(
                literal < 400_000,
                "edit {kind}/{seed}: {literal} literal bytes for a {} byte file",
                new.len()
            );
            let sent = report.stats.bytes_sent.load(Relaxed);
            assert!(
                sent < literal + 60_000,
                "edit {kind}/{seed}: {sent} bytes sent"
            );
        }
    }
}

fn dirtree_sender_cap() -> (String, Vec<u8>) {
    ("dirtree".to_owned(), vec![0xff, 0x00])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_listings_outside_the_wanted_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir_all(dest.join("kept")).unwrap();
    fs::write(dest.join("kept/file"), b"old").unwrap();
    let mut h = hostile_sender_with(&dest, vec![dirtree_sender_cap()]).await;
    h.frame(&Frame::Totals(vec![1, 1, 0, 0, 0, 3])).await;
    h.frame(&Frame::DirHashes(vec![(b".".to_vec(), [9; 32])]))
        .await;
    h.frame(&Frame::FileListEnd { count: 0 }).await;
    // The root differs, so the receiver asks for its listing, and only that.
    let want = h.expect_frame(|f| matches!(f, Frame::WantDirs(_))).await;
    assert_eq!(want, Frame::WantDirs(vec![(b".".to_vec(), false)]));
    // A name inside "kept", which nobody asked to list.
    h.frame(&Frame::FileEntries(vec![file_entry("kept/file", 5)]))
        .await;
    h.frame(&Frame::FileListEnd { count: 1 }).await;
    let (r, _) = h.finish().await;
    let err = r.expect_err("accepted an entry of a directory that was not asked for");
    assert_eq!(err.exit_code(), ExitCode::StreamIo, "{err}");
    assert!(
        err.to_string()
            .contains("not in a directory that was asked for"),
        "{err}"
    );
    assert_eq!(fs::read(dest.join("kept/file")).unwrap(), b"old");
}

/// A sender on one end of a mem connection; the test speaks raw frames as its receiver.
async fn hostile_receiver(
    src: &Path,
) -> (
    arsync::core::transport::SendStream,
    FrameReader,
    tokio::task::JoinHandle<Result<(), SyncError>>,
) {
    let mem = Mem::default();
    let listener = mem.listen(&ListenConfig::bind("hr")).await.unwrap();
    let conn = mem
        .connect(&Endpoint::host("hr"), &AuthConfig::default())
        .await
        .unwrap();
    let mut arg = src.to_path_buf().into_os_string();
    arg.push("/");
    let job = arsync::core::engine::SenderJob {
        sources: vec![arg.into()],
        opts: opts(),
        stats: Arc::new(Stats::default()),
        sink: Arc::new(NullSink) as Arc<dyn EventSink>,
        report_items: false,
    };
    let sender =
        tokio::spawn(async move { arsync::core::engine::run_sender(&*conn, true, job).await });
    let server = listener.accept().await.unwrap();
    let mut pair = server.accept_stream().await.unwrap();
    let mut hello = Vec::new();
    Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        caps: vec![("dirtree".to_owned(), vec![1, 0x01, 0x00])],
    })
    .encode(&mut hello);
    pair.send.write_all(&hello).await.unwrap();
    (
        pair.send,
        FrameReader {
            recv: pair.recv,
            dec: FrameDecoder::new(),
        },
        sender,
    )
}

struct FrameReader {
    recv: arsync::core::transport::RecvStream,
    dec: FrameDecoder,
}

impl FrameReader {
    async fn next(&mut self) -> Option<Frame> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.dec.next_frame().expect("sender sent a bad frame") {
                return Some(f);
            }
            let n = self.recv.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.dec.push(&buf[..n]);
        }
    }

    /// The frames up to and including the next `FileListEnd`.
    async fn flight(&mut self) -> Vec<Frame> {
        let mut v = Vec::new();
        while let Some(f) = self.next().await {
            let end = matches!(f, Frame::FileListEnd { .. });
            v.push(f);
            if end {
                break;
            }
        }
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_refuses_wants_it_never_announced_or_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::write(src.join("a/b/c/deep"), b"x").unwrap();
    type Case = (&'static str, Vec<Vec<(Vec<u8>, bool)>>);
    let cases: Vec<Case> = vec![
        ("never announced", vec![vec![(b"a/b/c".to_vec(), false)]]),
        (
            "not a directory of this tree",
            vec![vec![(b"nope".to_vec(), false)]],
        ),
        (
            "asked for twice",
            vec![vec![(b".".to_vec(), false)], vec![(b".".to_vec(), false)]],
        ),
    ];
    for (why, rounds) in cases {
        let (mut send, mut reader, sender) = hostile_receiver(&src).await;
        let first = reader.flight().await;
        // One level: the root and "a" are announced, nothing deeper.
        let announced: Vec<Vec<u8>> = first
            .iter()
            .filter_map(|f| match f {
                Frame::DirHashes(d) => Some(d.iter().map(|(p, _)| p.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(announced, vec![b".".to_vec(), b"a".to_vec()]);
        for want in rounds {
            let mut b = Vec::new();
            Frame::WantDirs(want).encode(&mut b);
            let _ = send.write_all(&b).await;
            let _ = reader.flight().await;
        }
        let _ = send.shutdown().await;
        while reader.next().await.is_some() {}
        let err = sender
            .await
            .unwrap()
            .expect_err("the sender answered a bad want");
        assert_eq!(err.exit_code(), ExitCode::StreamIo, "{why}: {err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
}

/// Issue 13: a real tree update hung with every writer waiting for chunks that sat, unread,
/// behind the receiver's wait for a free writer. Many files updated by delta at once with few
/// writers must finish, each rebuilt exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_delta_updates_with_few_writers_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("d")).unwrap();
    fs::create_dir_all(dst.join("d")).unwrap();
    for i in 0..48u32 {
        let old: Vec<u8> = (0..150_000u32)
            .map(|k| (k.wrapping_mul(2_654_435_761).wrapping_add(i) >> 11) as u8)
            .collect();
        let mut new = old.clone();
        // A local edit and an insertion: most chunks are reused, some are fetched.
        new[70_000..70_100].fill(i as u8);
        new.splice(1000..1000, b"inserted".iter().copied());
        fs::write(dst.join(format!("d/f{i:02}.bin")), &old).unwrap();
        fs::write(src.join(format!("d/f{i:02}.bin")), &new).unwrap();
    }
    let mut o = opts();
    o.parallel = 2;
    let registry = arsync::transports::default_registry();
    let mut src_arg = src.clone().into_os_string();
    src_arg.push("/");
    let run = arsync::sync_local(
        &registry,
        vec![src_arg.into()],
        dst.clone(),
        o,
        Arc::new(NullSink),
    );
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the update hung")
        .expect("sync");
    for i in 0..48u32 {
        let rel = format!("d/f{i:02}.bin");
        assert_eq!(
            fs::read(src.join(&rel)).unwrap(),
            fs::read(dst.join(&rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(report.stats.transferred.load(Relaxed), 48);
    let matched = report.stats.matched.load(Relaxed);
    assert!(matched > 48 * 100_000, "deltas reused only {matched} bytes");
}

/// A sender that opens more files on one stream than the receiver's window is refused with a
/// protocol error, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_over_the_receivers_window_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let mut h = hostile_sender(&dest).await;
    let hello = h.expect_frame(|f| matches!(f, Frame::Hello(_))).await;
    let Frame::Hello(hello) = hello else {
        unreachable!()
    };
    let window = hello
        .cap("window")
        .map(|v| u16::from_le_bytes([v[0], v[1]]) as u32)
        .expect("the receiver's hello carries its window");
    let n = window + 1;
    let entries: Vec<_> = (0..n)
        .map(|i| file_entry(&format!("f{i:03}"), 10))
        .collect();
    h.frame(&Frame::FileEntries(entries)).await;
    h.frame(&Frame::FileListEnd { count: n }).await;
    for ndx in 0..n {
        h.frame(&Frame::DataBegin { ndx, size: 10 }).await;
        h.frame(&Frame::Data {
            ndx,
            bytes: vec![1; 5],
        })
        .await;
    }
    let (r, _) = tokio::time::timeout(std::time::Duration::from_secs(30), h.finish())
        .await
        .expect("the receiver waited instead of refusing");
    let err = r.expect_err("accepted more open files than its window");
    assert_eq!(err.exit_code(), ExitCode::StreamIo, "{err}");
    assert!(err.to_string().contains("at once"), "{err}");
    assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
}
