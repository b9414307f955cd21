//! The client end of an rsync session, shared by pulls and pushes: the handshake
//! (`setup_protocol`, `negotiate_the_strings`) and the multiplexed streams (`io.c`), over the
//! blocking side of an async stream.
//!
//! Owns: protocol and checksum negotiation, demultiplexing (MSG_DATA as one byte stream, the
//! other messages reported or recorded), multiplexed writes, and wire byte counts. Does not own
//! what the transfer does with them.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;

use super::event::{Event, EventSink};
use crate::error::SyncError;
use crate::proto::rsync::checksum::SumKind;
use crate::proto::rsync::codec::{
    self, mplex_header, msg, parse_mplex_header, put_i32, put_vstring, read_i32, read_varint,
    read_vstring, ReadError, Source,
};
use crate::proto::DecodeError;
use crate::transport::{RecvStream, SendStream, StreamPair};

/// Newest rsync protocol spoken.
pub const RSYNC_PROTOCOL_MAX: u8 = 32;
/// Oldest rsync protocol spoken.
pub const RSYNC_PROTOCOL_MIN: u8 = 30;

pub(crate) fn bad(what: &'static str, detail: impl std::fmt::Display) -> SyncError {
    SyncError::Peer(DecodeError::invalid(what, detail))
}

pub(crate) fn from_read(e: ReadError) -> SyncError {
    match e {
        ReadError::Decode(d) => SyncError::Peer(d),
        ReadError::Io(e) => SyncError::StreamIo(e),
    }
}

/// Out-of-band messages the sender interleaves with its data.
#[derive(Debug, Default)]
pub(crate) struct Notices {
    /// Files the sender could not open (`MSG_NO_SEND`), by rsync index.
    pub(crate) no_send: Vec<i32>,
    pub(crate) io_error: i32,
}

/// The demultiplexing reader: MSG_DATA payloads as one byte stream; other messages reported.
pub(crate) struct Demux {
    rt: Handle,
    recv: RecvStream,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes left in the current MSG_DATA frame.
    left: usize,
    pub(crate) muxed: bool,
    pub(crate) notices: Arc<Mutex<Notices>>,
    sink: Arc<dyn EventSink>,
    wire_in: Arc<std::sync::atomic::AtomicU64>,
}

impl Demux {
    /// Whether bytes are already buffered (the next read may still need more).
    pub(crate) fn has_buffered(&self) -> bool {
        self.pos < self.buf.len()
    }

    fn raw(&mut self, out: &mut [u8]) -> Result<(), ReadError> {
        let mut done = 0;
        while done < out.len() {
            if self.pos < self.buf.len() {
                let n = (self.buf.len() - self.pos).min(out.len() - done);
                out[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                done += n;
                continue;
            }
            self.buf.resize(256 * 1024, 0);
            let n = self
                .rt
                .block_on(self.recv.read(&mut self.buf))
                .map_err(ReadError::Io)?;
            if n == 0 {
                self.buf.clear();
                self.pos = 0;
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "rsync closed the connection",
                )));
            }
            self.wire_in.fetch_add(n as u64, Relaxed);
            self.buf.truncate(n);
            self.pos = 0;
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
                    self.sink.event(Event::Info { message: text() })
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
                msg::IO_TIMEOUT | msg::SUCCESS => {}
                msg::DELETED => {
                    let mut path = payload.clone();
                    let is_dir = path.last() == Some(&b'/');
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
                    return Err(ReadError::Io(io::Error::other(format!(
                        "rsync on the remote side exited with code {code}"
                    ))));
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
    rt: Handle,
    send: SendStream,
    muxed: bool,
    wire_out: Arc<std::sync::atomic::AtomicU64>,
    /// Queued by [`Mux::queue`], written by [`Mux::flush`] (or the next [`Mux::write`]).
    pending: Vec<u8>,
}

impl Mux {
    /// Send one non-data message (`send_msg`).
    pub(crate) fn write_msg(&mut self, tag: u8, payload: &[u8]) -> Result<(), SyncError> {
        self.flush()?;
        let mut out = Vec::with_capacity(payload.len() + 4);
        out.extend_from_slice(&mplex_header(tag, payload.len()));
        out.extend_from_slice(payload);
        self.rt
            .block_on(async {
                self.send.write_all(&out).await?;
                self.send.flush().await
            })
            .map_err(SyncError::StreamIo)?;
        self.wire_out.fetch_add(out.len() as u64, Relaxed);
        Ok(())
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

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), SyncError> {
        self.flush()?;
        let mut out = Vec::with_capacity(bytes.len() + 4);
        if self.muxed {
            for piece in bytes.chunks(codec::MAX_MPLEX) {
                out.extend_from_slice(&mplex_header(msg::DATA, piece.len()));
                out.extend_from_slice(piece);
            }
        } else {
            out.extend_from_slice(bytes);
        }
        self.rt
            .block_on(async {
                self.send.write_all(&out).await?;
                self.send.flush().await
            })
            .map_err(SyncError::StreamIo)?;
        self.wire_out.fetch_add(out.len() as u64, Relaxed);
        Ok(())
    }
}

/// A negotiated session.
pub(crate) struct RsyncLink {
    pub(crate) input: Demux,
    pub(crate) output: Mux,
    pub(crate) proto: u8,
    pub(crate) compat: i32,
    pub(crate) sum: SumKind,
    pub(crate) seed: i32,
    pub(crate) proper_seed_order: bool,
    pub(crate) notices: Arc<Mutex<Notices>>,
    pub(crate) wire_in: Arc<AtomicU64>,
    pub(crate) wire_out: Arc<AtomicU64>,
}

impl RsyncLink {
    /// Run the server's half of the handshake for a client whose `-e.` letters are
    /// `client_info` (`setup_protocol` as a server): never incremental recursion.
    pub(crate) fn server(
        stream: StreamPair,
        client_info: &str,
        sink: Arc<dyn EventSink>,
    ) -> Result<RsyncLink, SyncError> {
        let (mut input, mut output, notices, wire_in, wire_out) = Self::streams(stream, sink);
        let mut hs = Vec::new();
        put_i32(&mut hs, i32::from(RSYNC_PROTOCOL_MAX));
        output.write(&hs)?;
        let remote = read_i32(&mut input).map_err(from_read)?;
        let proto = remote.min(i32::from(RSYNC_PROTOCOL_MAX));
        if proto < i32::from(RSYNC_PROTOCOL_MIN) {
            return Err(SyncError::Incompatible(format!(
                "the rsync client speaks protocol {remote}; arsync speaks {RSYNC_PROTOCOL_MIN} to {RSYNC_PROTOCOL_MAX}"
            )));
        }
        let has = |c: char| client_info.contains(c);
        let mut compat = 1 << 1; // symlink times
        for (c, bit) in [('f', 3), ('x', 4), ('C', 5), ('I', 6), ('v', 7), ('u', 8)] {
            if has(c) {
                compat |= 1 << bit;
            }
        }
        let mut c = Vec::new();
        codec::put_varint(&mut c, compat);
        output.write(&c)?;
        let sum = if has('v') {
            // Both sides send their list before reading the other's.
            let mut v = Vec::new();
            put_vstring(&mut v, SumKind::offer().as_bytes());
            output.write(&v)?;
            let theirs = read_vstring(&mut input, 255).map_err(from_read)?;
            // The first of the client's names we know: what a 3.2–3.4 server picks, and what a
            // 3.5 client picks when it lists in the canonical order.
            theirs
                .split(|&b| b == b' ')
                .find_map(SumKind::from_name)
                .ok_or_else(|| {
                    SyncError::Incompatible(format!(
                        "no checksum in common with the rsync client (it offers {:?})",
                        String::from_utf8_lossy(&theirs)
                    ))
                })?
        } else {
            SumKind::Md5
        };
        let seed = (std::process::id() as i32) << 6
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i32));
        let mut sd = Vec::new();
        put_i32(&mut sd, seed);
        output.write(&sd)?;
        input.muxed = true;
        output.muxed = true;
        Ok(RsyncLink {
            input,
            output,
            proto: proto as u8,
            compat,
            sum,
            seed,
            proper_seed_order: compat & (1 << 5) != 0,
            notices,
            wire_in,
            wire_out,
        })
    }

    #[allow(clippy::type_complexity)]
    fn streams(
        stream: StreamPair,
        sink: Arc<dyn EventSink>,
    ) -> (
        Demux,
        Mux,
        Arc<Mutex<Notices>>,
        Arc<AtomicU64>,
        Arc<AtomicU64>,
    ) {
        let rt = Handle::current();
        let wire_in = Arc::new(AtomicU64::new(0));
        let wire_out = Arc::new(AtomicU64::new(0));
        let notices = Arc::new(Mutex::new(Notices::default()));
        let input = Demux {
            rt: rt.clone(),
            recv: stream.recv,
            buf: Vec::new(),
            pos: 0,
            left: 0,
            muxed: false,
            notices: notices.clone(),
            sink,
            wire_in: wire_in.clone(),
        };
        let output = Mux {
            rt,
            send: stream.send,
            muxed: false,
            wire_out: wire_out.clone(),
            pending: Vec::new(),
        };
        (input, output, notices, wire_in, wire_out)
    }

    /// `recv_filter_list`: the client's rules (an int length and the rule text each, 0 at the
    /// end), parsed as filter rules.
    pub(crate) fn read_filter_list(&mut self) -> Result<super::filter::FilterRules, SyncError> {
        let mut rules = super::filter::FilterRules::new();
        for _ in 0..=100_000 {
            let len = read_i32(&mut self.input).map_err(from_read)?;
            if len == 0 {
                return Ok(rules);
            }
            if !(1..=8192).contains(&len) {
                return Err(bad("filter rule length", len));
            }
            let mut text = vec![0u8; len as usize];
            self.input.read_exact(&mut text).map_err(from_read)?;
            let text = String::from_utf8_lossy(&text).into_owned();
            rules
                .add_filter(&text)
                .map_err(|e| SyncError::Usage(format!("filter rule from the rsync client: {e}")))?;
        }
        Err(bad("filter list", "more than 100,000 rules"))
    }

    /// Run the client's half of the handshake on `rsync`, offering at most `protocol`; both
    /// directions are multiplexed afterwards.
    pub(crate) fn client(
        rsync: StreamPair,
        protocol: u8,
        sink: Arc<dyn EventSink>,
    ) -> Result<RsyncLink, SyncError> {
        let (mut input, mut output, notices, wire_in, wire_out) = Self::streams(rsync, sink);
        let mut hs = Vec::new();
        put_i32(&mut hs, i32::from(protocol));
        output.write(&hs)?;
        let remote = read_i32(&mut input).map_err(from_read)?;
        let proto = remote.min(i32::from(protocol));
        if proto < i32::from(RSYNC_PROTOCOL_MIN) {
            return Err(SyncError::Incompatible(format!(
                "the remote rsync speaks protocol {remote}; arsync speaks {RSYNC_PROTOCOL_MIN} to {RSYNC_PROTOCOL_MAX}"
            )));
        }
        let compat = read_varint(&mut input).map_err(from_read)?;
        if compat & 1 != 0 {
            return Err(bad(
                "compat flags",
                "incremental recursion was not asked for",
            ));
        }
        let sum = if compat & (1 << 7) != 0 {
            let mut v = Vec::new();
            put_vstring(&mut v, SumKind::offer().as_bytes());
            output.write(&v)?;
            let theirs = read_vstring(&mut input, 255).map_err(from_read)?;
            SumKind::choose(&theirs).ok_or_else(|| {
                SyncError::Incompatible(format!(
                    "no checksum in common with the remote rsync (it offers {:?})",
                    String::from_utf8_lossy(&theirs)
                ))
            })?
        } else {
            SumKind::Md5
        };
        let seed = read_i32(&mut input).map_err(from_read)?;
        input.muxed = true;
        output.muxed = true;
        Ok(RsyncLink {
            input,
            output,
            proto: proto as u8,
            compat,
            sum,
            seed,
            proper_seed_order: compat & (1 << 5) != 0,
            notices,
            wire_in,
            wire_out,
        })
    }
}
