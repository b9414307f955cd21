//! Issue 16, params: the negotiated session parameters (the `tune` capability) between two
//! real engine roles over the in-process `mem` transport, streaming their data, with real
//! files. One side chooses, as a client does; the other is left at its defaults, as a server
//! is — each test shows the other end followed (a structural count that differs when it
//! does not) and that the copy is exact.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use arsync::core::engine::{
    run_receiver, run_sender, EventSink, NullSink, ReceiverJob, SenderJob, Stats, SyncOptions,
};
use arsync::core::proto::merkle::caps::Tune;
use arsync::core::transport::{AuthConfig, Endpoint, ListenConfig, TransportFactory};
use arsync::transports::mem::Mem;
use common::{assert_same_tree, pseudo_random, snapshot, without_root};

fn opts(tune: Option<Tune>) -> SyncOptions {
    let mut o = SyncOptions::archive();
    o.stream_data = true;
    o.tune = tune;
    o
}

/// Counters of one run: the sender's and the receiver's.
struct Ran {
    sender: Arc<Stats>,
    receiver: Arc<Stats>,
}

/// Sync `src/` into `dst` with a sender and a receiver of their own options.
async fn pair(src: &Path, dst: &Path, sender: SyncOptions, receiver: SyncOptions) -> Ran {
    let mem = Mem::default();
    let listener = mem.listen(&ListenConfig::bind("params")).await.unwrap();
    let (s_stats, r_stats) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
    let mut arg = src.as_os_str().to_owned();
    arg.push("/");
    let job = SenderJob {
        sources: vec![PathBuf::from(arg)],
        opts: sender,
        stats: s_stats.clone(),
        sink: Arc::new(NullSink) as Arc<dyn EventSink>,
        report_items: false,
    };
    let sending = tokio::spawn(async move {
        let conn = listener.accept().await.unwrap();
        run_sender(&*conn, false, job).await
    });
    let conn = mem
        .connect(&Endpoint::host("params"), &AuthConfig::default())
        .await
        .unwrap();
    let job = ReceiverJob {
        dest: dst.to_path_buf(),
        opts: receiver,
        stats: r_stats.clone(),
        sink: Arc::new(NullSink) as Arc<dyn EventSink>,
    };
    run_receiver(&*conn, true, job).await.expect("receiver");
    sending.await.unwrap().expect("sender");
    // The roots are left out: a destination that existed keeps its time to the second.
    assert_same_tree(
        "params",
        "src",
        &without_root(snapshot(src)),
        "dst",
        &without_root(snapshot(dst)),
    );
    Ran {
        sender: s_stats,
        receiver: r_stats,
    }
}

/// `src` with a 3 MB file, and `dst` holding it with one byte changed and an older time.
fn edited_big_file(root: &Path) -> (PathBuf, PathBuf) {
    let (src, dst) = (root.join("src"), root.join("dst"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    let mut data = pseudo_random(3_000_000, 16);
    fs::write(dst.join("big"), &data).unwrap();
    data[1_500_000] ^= 0xff;
    fs::write(src.join("big"), &data).unwrap();
    fs::File::options()
        .write(true)
        .open(dst.join("big"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .unwrap();
    (src, dst)
}

/// Literal data, as the receiver counted it.
fn literal(ran: &Ran) -> u64 {
    ran.receiver.literal.load(Relaxed)
}

fn tune(bdp: u64, tree_levels: u8, whole_file: bool, compress: u8) -> Option<Tune> {
    Some(Tune {
        bdp,
        tree_levels,
        whole_file,
        compress,
    })
}

/// A huge BDP makes chunks of 256 KiB on average (64 KiB to 1 MiB): a one-byte edit costs
/// one of them in literal data (with 4 KiB chunks it costs a few KiB) — whichever side chose it, both
/// cut alike, or the delta would not match at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_cut_chunks_from_the_agreed_bdp() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = edited_big_file(&tmp.path().join("default"));
    let small = literal(&pair(&src, &dst, opts(None), opts(None)).await);
    assert!(small < 40_000, "default chunks: {small} literal bytes");
    for (name, s, r) in [
        ("sender", tune(1 << 40, 0, false, 0), None),
        ("receiver", None, tune(1 << 40, 0, false, 0)),
    ] {
        let (src, dst) = edited_big_file(&tmp.path().join(name));
        let big = literal(&pair(&src, &dst, opts(s), opts(r)).await);
        assert!(
            (64 << 10..=1 << 20).contains(&big),
            "{name} chose big chunks: {big} literal bytes"
        );
    }
}

/// Whole files, chosen by the sender (a pushing client): the receiver asks for no delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_follows_a_whole_file_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = edited_big_file(tmp.path());
    let ran = pair(&src, &dst, opts(tune(0, 0, true, 0)), opts(None)).await;
    assert_eq!(literal(&ran), 3_000_000);
    assert_eq!(ran.receiver.matched.load(Relaxed), 0);
}

/// Compression chosen by one side: both compress, though neither was given `-z`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_compression_is_used_by_both_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(&src).unwrap();
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog\n"
        .iter()
        .copied()
        .cycle()
        .take(2_000_000)
        .collect();
    fs::write(src.join("text"), &text).unwrap();
    let ran = pair(&src, &dst, opts(None), opts(tune(0, 0, false, 3))).await;
    let sent = ran.sender.bytes_sent.load(Relaxed);
    assert!(sent < 200_000, "{sent} bytes sent for 2 MB of text");
}

/// A tree five directories deep, unchanged: the sender's first flight carries as many
/// levels of directory hashes as were agreed, so 4 levels send more than the default 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agreed_tree_levels_shape_the_first_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    common::deep_tree(&src, 4, 3);
    pair(&src, &dst, opts(None), opts(None)).await;
    let sent = |ran: &Ran| ran.sender.bytes_sent.load(Relaxed);
    let two = sent(&pair(&src, &dst, opts(None), opts(None)).await);
    let four_by_receiver = sent(&pair(&src, &dst, opts(None), opts(tune(0, 4, false, 0))).await);
    let four_by_sender = sent(&pair(&src, &dst, opts(tune(0, 4, false, 0)), opts(None)).await);
    assert!(four_by_receiver > two, "{four_by_receiver} vs {two} bytes");
    assert_eq!(four_by_sender, four_by_receiver);
}
