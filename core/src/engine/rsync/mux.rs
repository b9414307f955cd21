//! rsync's multiplexed streams over the blocking side of an async stream (`io.c`): the
//! demultiplexing reader (MSG_DATA payloads as one byte stream; the other messages reported to
//! the event sink or recorded as notices), the multiplexing writer, wire byte counts, and the
//! errors a read can end with (`--timeout`, a remote rsync's exit). Does not own the handshake
//! (`link`) or what the transfer does with the bytes.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;

use crate::engine::event::{Event, EventSink};
use crate::error::SyncError;
use crate::proto::merkle::MAX_FILES;
use crate::proto::rsync::codec::{
    self, mplex_header, msg, parse_mplex_header, read_i32, ReadError, Source,
};
use crate::proto::wire::bound;
use crate::proto::DecodeError;
use crate::transport::{RecvStream, SendStream};

/// Bytes read from the peer at a time.
pub(crate) const READ_BUF: usize = 256 * 1024;

pub(crate) fn bad(what: &'static str, detail: impl std::fmt::Display) -> SyncError {
    SyncError::Peer(DecodeError::invalid(what, detail))
}

pub(crate) fn from_read(e: ReadError) -> SyncError {
    match e {
        ReadError::Decode(d) => SyncError::Peer(d),
        ReadError::Io(e) => match e.get_ref().and_then(|i| i.downcast_ref::<LinkEnd>()) {
            Some(LinkEnd::TimedOut(secs)) => SyncError::Timeout(*secs),
            // The remote rsync's own exit code becomes ours, as rsync's client does.
            Some(end @ LinkEnd::RemoteExit(code)) => SyncError::Remote {
                code: u8::try_from(*code).unwrap_or(12),
                message: end.to_string(),
            },
            None => SyncError::StreamIo(e),
        },
    }
}

/// Why reading the link ended, other than a broken stream (carried inside an `io::Error`
/// through the codecs' [`Source`], turned back by [`from_read`]).
#[derive(Debug, thiserror::Error)]
enum LinkEnd {
    /// The peer sent nothing for `--timeout` seconds.
    #[error("io timeout after {0} seconds")]
    TimedOut(u64),
    /// The remote rsync ended the session with this exit code (`MSG_ERROR_EXIT`).
    #[error("rsync on the remote side exited with code {0}")]
    RemoteExit(i32),
}

/// Out-of-band messages the sender interleaves with its data.
#[derive(Debug, Default)]
pub(crate) struct Notices {
    /// Files the sender could not open (`MSG_NO_SEND`), by rsync index.
    pub(crate) no_send: Vec<i32>,
    pub(crate) io_error: i32,
    // Issue 15, source:
    /// Files rsync's receiver reports synchronized (`MSG_SUCCESS`), by rsync index.
    pub(crate) success: Vec<i32>,
}

/// The demultiplexing reader: MSG_DATA payloads as one byte stream; other messages reported.
pub(crate) struct Demux {
    pub(super) rt: Handle,
    pub(super) recv: RecvStream,
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// Bytes of `buf` holding data.
    pub(super) filled: usize,
    /// Bytes left in the current MSG_DATA frame.
    pub(super) left: usize,
    pub(crate) muxed: bool,
    pub(crate) notices: Arc<Mutex<Notices>>,
    pub(super) sink: Arc<dyn EventSink>,
    pub(super) wire_in: Arc<std::sync::atomic::AtomicU64>,
    /// `--timeout`: the longest wait for the peer's next bytes.
    pub(super) timeout: Option<std::time::Duration>,
}

impl Demux {
    /// Whether data bytes are already buffered: the peer has begun its next record (the
    /// read may still need more of it). Bytes of other messages (`MSG_DELETED`, `MSG_INFO`…)
    /// do not count: a reader that took them for data would wait for a record the peer may
    /// send only after what the reader has yet to flush.
    pub(crate) fn has_buffered(&self) -> bool {
        self.pos < self.filled && (!self.muxed || self.left > 0)
    }

    fn raw(&mut self, out: &mut [u8]) -> Result<(), ReadError> {
        let mut done = 0;
        while done < out.len() {
            if self.pos < self.filled {
                let n = (self.filled - self.pos).min(out.len() - done);
                out[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                done += n;
                continue;
            }
            // The buffer is zeroed once, then reused: reads only overwrite it.
            if self.buf.len() < READ_BUF {
                self.buf.resize(READ_BUF, 0);
            }
            let _w = crate::liveness::waiting("rsync link: waiting for the rsync peer");
            let read = self.recv.read(&mut self.buf);
            let n = match self.timeout {
                None => self.rt.block_on(read),
                Some(t) => self
                    .rt
                    .block_on(tokio::time::timeout(t, read))
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            LinkEnd::TimedOut(t.as_secs()),
                        ))
                    }),
            }
            .map_err(ReadError::Io)?;
            self.pos = 0;
            self.filled = n;
            if n == 0 {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "rsync closed the connection",
                )));
            }
            self.wire_in.fetch_add(n as u64, Relaxed);
        }
        Ok(())
    }

    /// Read headers until a MSG_DATA frame with bytes left; handle the others.
    fn next_data(&mut self) -> Result<(), ReadError> {
        while self.left == 0 {
            let mut h = [0u8; 4];
            self.raw(&mut h)?;
            let (tag, len) = parse_mplex_header(h)?;
            if tag == msg::DATA {
                self.left = len;
                continue;
            }
            if len > 1 << 20 {
                return Err(DecodeError::TooLarge {
                    what: "rsync message",
                    got: len as u64,
                    max: 1 << 20,
                }
                .into());
            }
            let mut payload = vec![0u8; len];
            self.raw(&mut payload)?;
            let int = |p: &[u8]| -> Result<i32, ReadError> {
                let mut s = p;
                read_i32(&mut s)
            };
            let text = || String::from_utf8_lossy(&payload).trim_end().to_owned();
            match tag {
                msg::INFO | msg::LOG | msg::CLIENT => {
                    self.sink.event(Event::PeerInfo { message: text() })
                }
                msg::ERROR | msg::ERROR_XFER | msg::WARNING | msg::ERROR_UTF8 => {
                    self.sink.event(Event::Warning { message: text() })
                }
                msg::NOOP => {}
                msg::IO_ERROR => {
                    let v = int(&payload)?;
                    if let Ok(mut n) = self.notices.lock() {
                        n.io_error |= v & 7;
                    }
                }
                msg::NO_SEND => {
                    let v = int(&payload)?;
                    if let Ok(mut n) = self.notices.lock() {
                        n.no_send.push(v);
                    }
                }
                msg::IO_TIMEOUT => {}
                // Issue 15, source: one per file at most (bounded like a list).
                msg::SUCCESS => {
                    let v = int(&payload)?;
                    if let Ok(mut n) = self.notices.lock() {
                        bound(
                            n.success.len() as u64,
                            u64::from(MAX_FILES),
                            "success count",
                        )?;
                        n.success.push(v);
                    }
                }
                msg::DELETED => {
                    // A directory's name comes with a trailing NUL (`log_delete`); older
                    // arsync servers sent a trailing `/`.
                    let mut path = payload.clone();
                    let is_dir = matches!(path.last(), Some(&0 | &b'/'));
                    if is_dir {
                        path.pop();
                    }
                    self.sink.event(Event::Deleted { path, is_dir });
                }
                msg::ERROR_EXIT => {
                    let code = if payload.len() >= 4 {
                        int(&payload)?
                    } else {
                        12
                    };
                    return Err(ReadError::Io(io::Error::other(LinkEnd::RemoteExit(code))));
                }
                other => {
                    return Err(DecodeError::invalid("rsync message tag", other).into());
                }
            }
        }
        Ok(())
    }
}

impl Source for Demux {
    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ReadError> {
        if !self.muxed {
            return self.raw(out);
        }
        let mut done = 0;
        while done < out.len() {
            self.next_data()?;
            let n = self.left.min(out.len() - done);
            self.raw(&mut out[done..done + n])?;
            self.left -= n;
            done += n;
        }
        Ok(())
    }
}

/// The multiplexing writer: everything after the handshake goes out as MSG_DATA.
pub(crate) struct Mux {
    pub(super) rt: Handle,
    pub(super) send: SendStream,
    pub(super) muxed: bool,
    pub(super) wire_out: Arc<std::sync::atomic::AtomicU64>,
    /// Queued by [`Mux::queue`], written by [`Mux::flush`] (or the next [`Mux::write`]).
    pub(super) pending: Vec<u8>,
}

impl Mux {
    /// Close the stream to rsync: it stops when its input ends, so whatever of ours still
    /// reads from it sees the end too (a failed side must not wait for a peer that waits
    /// for it).
    pub(crate) fn close(&mut self) {
        let send = &mut self.send;
        let _ = self.rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), send.shutdown()).await
        });
    }

    /// Send one non-data message (`send_msg`).
    pub(crate) fn write_msg(&mut self, tag: u8, payload: &[u8]) -> Result<(), SyncError> {
        self.flush()?;
        self.pending
            .extend_from_slice(&mplex_header(tag, payload.len()));
        self.pending.extend_from_slice(payload);
        self.flush()
    }

    /// Queue data; it goes out at the next [`Mux::flush`] or once 256 KiB are waiting. The
    /// caller must flush before it waits for the peer.
    pub(crate) fn queue(&mut self, bytes: &[u8]) -> Result<(), SyncError> {
        self.frame_into_pending(bytes);
        if self.pending.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    /// Write whatever is queued.
    pub(crate) fn flush(&mut self) -> Result<(), SyncError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.pending);
        self.rt
            .block_on(async {
                self.send.write_all(&out).await?;
                self.send.flush().await
            })
            .map_err(SyncError::StreamIo)?;
        self.wire_out.fetch_add(out.len() as u64, Relaxed);
        Ok(())
    }

    fn frame_into_pending(&mut self, bytes: &[u8]) {
        if self.muxed {
            for piece in bytes.chunks(codec::MAX_MPLEX) {
                self.pending
                    .extend_from_slice(&mplex_header(msg::DATA, piece.len()));
                self.pending.extend_from_slice(piece);
            }
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Write `bytes` now (after whatever is queued).
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), SyncError> {
        self.frame_into_pending(bytes);
        self.flush()
    }
}
