//! `--timeout` on the merkle stream (issue 13): a reader given a timeout ends with
//! `SyncError::Timeout` (exit 30) when the peer is silent, keepalives from a peer that works
//! hold it off, and a writer sends keepalives only while its process does work — so a stuck
//! process is timed out by its peer and a busy one never is.
//!
//! A test binary of its own: the work counter is process-wide, and no other test may move it
//! while these watch it. The streams are real in-memory duplex pipes (tokio's `duplex`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arsync_core::engine::session::{frame_writer, FrameSource};
use arsync_core::engine::Stats;
use arsync_core::proto::merkle::{Frame, FrameDecoder};
use arsync_core::{liveness, ExitCode, SyncError};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_flow_only_while_the_process_works() {
    let (ours, mut theirs) = tokio::io::duplex(1 << 16);
    let (_r, w) = tokio::io::split(ours);
    let (sink, _task) = frame_writer(Box::new(w), Arc::new(Stats::default()));
    // The peer's --timeout is 1 s: a keepalive after a third of it without frames.
    sink.set_keepalive(Some(1));
    let count_keepalives = |bytes: &[u8]| {
        let mut d = FrameDecoder::new();
        d.push(bytes);
        let mut n = 0;
        while let Some(f) = d.next_frame().unwrap() {
            assert_eq!(f, Frame::KeepAlive);
            n += 1;
        }
        n
    };
    // Working for 1.5 s: keepalives come.
    let worker = std::thread::spawn(|| {
        let end = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < end {
            liveness::bump();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut got = vec![0u8; 4096];
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), theirs.read(&mut got)).await
        {
            seen.extend_from_slice(&got[..n]);
        }
    }
    worker.join().unwrap();
    let while_working = count_keepalives(&seen);
    assert!(
        while_working >= 2,
        "{while_working} keepalives while working"
    );
    // Idle (stuck) for 1.5 s: none.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut idle = Vec::new();
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(100), theirs.read(&mut got)).await
    {
        idle.extend_from_slice(&got[..n]);
    }
    idle.clear();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), theirs.read(&mut got)).await
        {
            idle.extend_from_slice(&got[..n]);
        }
    }
    assert_eq!(
        count_keepalives(&idle),
        0,
        "keepalives from an idle process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_times_out_and_keepalives_hold_it_off() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (r, _w) = tokio::io::split(ours);
    let mut source = FrameSource::new(Box::new(r), Arc::new(Stats::default()));
    source.set_timeout(Some(1));
    let (_tr, tw) = tokio::io::split(theirs);
    let (peer, _task) = frame_writer(Box::new(tw), Arc::new(Stats::default()));
    // The peer sends only keepalives for 2.5 s (more than twice the timeout), then a frame.
    let sender = tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            peer.send(&Frame::KeepAlive).await.unwrap();
        }
        peer.send(&Frame::Done).await.unwrap();
        // Then silence, with the stream still open.
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(peer);
    });
    let started = Instant::now();
    assert_eq!(source.next().await.unwrap(), Some(Frame::Done));
    assert!(started.elapsed() >= Duration::from_secs(2));
    let started = Instant::now();
    let err = source.next().await.expect_err("silence must time out");
    assert!(matches!(err, SyncError::Timeout(1)), "{err}");
    assert_eq!(err.exit_code(), ExitCode::Timeout);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    sender.abort();
}
