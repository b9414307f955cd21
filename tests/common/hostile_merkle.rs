//! A scripted hostile arsync peer (merkle protocol) against a real receiver or sender over the
//! in-process `mem` transport: the test speaks raw frames on one end. A real arsync will not
//! misbehave on purpose; the roles, the transport and the filesystem here are real.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arsync::core::engine::{
    run_receiver, run_sender, EventSink, NullSink, ReceiverJob, SenderJob, Stats, SyncOptions,
};
use arsync::core::proto::merkle::{Frame, FrameDecoder, Hello, PROTOCOL_VERSION};
use arsync::core::transport::TransportFactory;
use arsync::core::transport::{AuthConfig, Endpoint, ListenConfig, RecvStream, SendStream};
use arsync::core::SyncError;
use arsync::transports::mem::Mem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A real receiver or sender on one end of a mem connection; the test speaks raw frames on the
/// other.
pub struct MerklePeer {
    pub send: SendStream,
    pub recv: RecvStream,
    pub role: tokio::task::JoinHandle<Result<(), SyncError>>,
    pub stats: Arc<Stats>,
}

/// Which real role the hostile peer talks to.
pub enum Victim {
    /// A receiver writing into this destination.
    Receiver(PathBuf),
    /// A sender sending these sources.
    Sender(Vec<PathBuf>),
}

impl MerklePeer {
    /// Start the real role with `opts` and send it our hello with `caps`.
    pub async fn start(victim: Victim, opts: SyncOptions, caps: Vec<(String, Vec<u8>)>) -> Self {
        let mem = Mem::default();
        let listener = mem.listen(&ListenConfig::bind("hostile")).await.unwrap();
        let conn = mem
            .connect(&Endpoint::host("hostile"), &AuthConfig::default())
            .await
            .unwrap();
        let stats = Arc::new(Stats::default());
        let sink = Arc::new(NullSink) as Arc<dyn EventSink>;
        let role = match victim {
            Victim::Receiver(dest) => {
                let job = ReceiverJob {
                    dest,
                    opts,
                    stats: stats.clone(),
                    sink,
                };
                tokio::spawn(async move { run_receiver(&*conn, true, job).await })
            }
            Victim::Sender(sources) => {
                let job = SenderJob {
                    sources,
                    opts,
                    stats: stats.clone(),
                    sink,
                    report_items: false,
                };
                tokio::spawn(async move { run_sender(&*conn, true, job).await })
            }
        };
        let server = listener.accept().await.unwrap();
        let pair = server.accept_stream().await.unwrap();
        let mut h = MerklePeer {
            send: pair.send,
            recv: pair.recv,
            role,
            stats,
        };
        h.frame(&Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            caps,
        }))
        .await;
        h
    }

    /// A receiver into `dest` with `opts`, and our hello.
    pub async fn to_receiver(dest: &Path, opts: SyncOptions, caps: Vec<(String, Vec<u8>)>) -> Self {
        Self::start(Victim::Receiver(dest.to_path_buf()), opts, caps).await
    }

    pub async fn frame(&mut self, f: &Frame) {
        let mut b = Vec::new();
        f.encode(&mut b);
        // The role may already have hung up on an earlier bad frame.
        let _ = self.send.write_all(&b).await;
    }

    /// Read the role's frames until its first request; return the requested index.
    pub async fn expect_request(&mut self) -> u32 {
        match self
            .expect_frame(|f| matches!(f, Frame::Request { .. }))
            .await
        {
            Frame::Request { ndx, .. } => ndx,
            _ => unreachable!(),
        }
    }

    /// Read the role's frames until it sends one `pred` accepts.
    pub async fn expect_frame(&mut self, pred: impl Fn(&Frame) -> bool) -> Frame {
        self.next_such(pred).await.expect("the role closed early")
    }

    /// Read the role's frames until it sends one `pred` accepts, or hangs up (`None`).
    pub async fn next_such(&mut self, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let mut dec = FrameDecoder::new();
        let mut buf = [0u8; 4096];
        loop {
            while let Some(f) = dec.next_frame().expect("the role sent a bad frame") {
                if pred(&f) {
                    return Some(f);
                }
            }
            let n = self.recv.read(&mut buf).await.expect("read");
            if n == 0 {
                return None;
            }
            dec.push(&buf[..n]);
        }
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.send.write_all(bytes).await;
    }

    /// Hang up and wait for the role's result.
    pub async fn finish(mut self) -> (Result<(), SyncError>, Arc<Stats>) {
        let _ = self.send.shutdown().await;
        // Drain what the role says so it is never blocked on a full pipe.
        let mut sink = Vec::new();
        let drain = async { while self.recv.read_buf(&mut sink).await.unwrap_or(0) > 0 {} };
        let (r, _) = tokio::join!(self.role, drain);
        (r.expect("role task"), self.stats)
    }

    /// Stay connected and silent: wait for the role's result (it must end by itself).
    pub async fn wait_quiet(mut self) -> Result<(), SyncError> {
        let mut sink = Vec::new();
        let drain = async { while self.recv.read_buf(&mut sink).await.unwrap_or(0) > 0 {} };
        let (r, _) = tokio::join!(self.role, drain);
        drop(self.send);
        r.expect("role task")
    }
}
