//! The frames two arsyncs exchange (protocol version 1), as a sans-IO codec.
//!
//! Every frame is `type: u8`, `len: u32 LE`, then `len` bytes of payload (at most
//! [`MAX_FRAME_PAYLOAD`]). [`Frame::encode`] appends one frame to a buffer; [`FrameDecoder`]
//! takes bytes as they arrive and yields whole frames. The byte layout of each frame is in
//! `docs/MERKLE_PROTOCOL.md`; this module is its only implementation.
//!
//! Version 1 carries the file list, whole-file data and the local-path shortcut. The chunk-tree
//! exchange of the merkle protocol is added as new frame types under a capability, so a peer
//! that does not know a capability ignores it (see [`Hello`]).

use crate::flist::{validate_rel_path, FileEntry, FileKind, Xattr, MAX_PATH};
use crate::merkle::NodeRef;
use crate::proto::wire::{bound, DecodeError, WireReader, WireWriter};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The magic that opens a [`Hello`].
pub const MAGIC: &[u8; 6] = b"ARSYNC";
/// Largest payload of one frame.
pub const MAX_FRAME_PAYLOAD: usize = (1 << 20) + 1024;
/// Largest data payload the sender puts in one [`Frame::Data`].
pub const MAX_DATA_CHUNK: usize = 1 << 20;
/// Largest number of entries in one [`Frame::FileEntries`] batch.
pub const MAX_BATCH: usize = 4096;
/// Largest number of entries in a file list.
pub const MAX_FILES: u32 = 50_000_000;
/// Largest number of extended attributes per entry.
pub const MAX_XATTRS: usize = 1024;
/// Largest extended attribute value.
pub const MAX_XATTR_VALUE: usize = 64 * 1024;
/// Largest error message.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest number of capabilities in a hello.
pub const MAX_CAPS: usize = 256;
/// Largest number of nodes asked to expand in one `Expand` (and groups in one `Nodes`).
pub const MAX_EXPAND: usize = 128;
/// Largest number of nodes in one `Nodes` frame (41 bytes each).
pub const MAX_NODES: usize = 24_000;
/// Largest number of chunk hashes in one `Fetch`.
pub const MAX_FETCH: usize = 8192;
/// Largest number of counters in a summary.
pub const MAX_COUNTERS: usize = 64;
/// Most directory hashes in one `DirHashes` frame.
pub const MAX_DIR_HASHES: usize = 16_384;
/// Most items (and most deleted paths) in one `Report` frame.
pub const MAX_REPORT: usize = 16_384;
/// Most directories in one `WantDirs` frame.
pub const MAX_WANT_DIRS: usize = 16_384;
/// Frame header size.
pub const HEADER_LEN: usize = 5;
/// Payload bytes a batch frame (`FileEntries`, `DirHashes`, `WantDirs`, `Report`) is filled
/// to before the next one starts: half a frame, so that any one item (at most
/// [`MAX_ITEM_LEN`]) still fits beside what is there.
pub const BATCH_BYTES: usize = 512 * 1024;
/// The largest one item of a batch frame may be encoded: a file entry with a path and a link
/// target of `MAX_PATH` bytes, two names and at most [`MAX_ENTRY_XATTR_BYTES`] of attributes.
pub const MAX_ITEM_LEN: usize = MAX_ENTRY_XATTR_BYTES + 4 * MAX_PATH + 1024;
/// The most bytes of extended attributes (names and values, with their lengths) one file entry
/// may carry; a scanner leaves out (and reports) a file's attributes beyond it.
pub const MAX_ENTRY_XATTR_BYTES: usize = 256 * 1024;
/// Most data lanes one session may use (see [`Frame::Lane`]).
pub const MAX_LANES: u8 = 64;

/// The opening frame each side sends: version and capabilities.
///
/// Capabilities are `(name, value)` pairs. A receiver ignores names it does not know; that is
/// how later versions add features without breaking older peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Highest protocol version the sender of this hello speaks.
    pub version: u16,
    /// Capabilities, in any order.
    pub caps: Vec<(String, Vec<u8>)>,
}

impl Hello {
    /// The value of capability `name`, if present.
    pub fn cap(&self, name: &str) -> Option<&[u8]> {
        self.caps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Version and capabilities (both sides, first).
    Hello(Hello),
    /// A batch of file-list entries (sender), numbered on from the previous batch.
    FileEntries(Vec<FileEntry>),
    /// End of the file list, with the total count (sender).
    FileListEnd {
        /// Number of entries sent.
        count: u32,
    },
    /// Subtree hashes of directories (sender, directory-tree mode): the root and the levels
    /// below it first, then below each wanted directory. `.` is the root.
    DirHashes(Vec<(Vec<u8>, [u8; 32])>),
    /// The directories whose listing the receiver wants (receiver, directory-tree mode):
    /// `(path, whole subtree)`. Only announced directories may be named, each once.
    WantDirs(Vec<(Vec<u8>, bool)>),
    /// The whole list's counters (sender, directory-tree mode, first): what `--stats` reports
    /// as the number of files and total size although most entries are never sent.
    Totals(Vec<u64>),
    /// Ask for the content of entry `ndx` (receiver), saying what changed about it (rsync's
    /// itemize bits, so a sending client can print `<f.st......`).
    Request {
        /// Entry index.
        ndx: u32,
        /// [`crate::engine::Itemize::to_flags`] bits.
        iflags: u16,
    },
    /// First frame on each data lane (lane opener → acceptor, `lanes` capability): which lane
    /// this stream is, 1 ..= the agreed count.
    Lane {
        /// Lane number.
        lane: u8,
    },
    /// Like [`Frame::Request`], with the lane the sender must answer on (receiver, `lanes`
    /// capability). The same `ndx` may be asked again after its lane was lost.
    LaneRequest {
        /// Entry index.
        ndx: u32,
        /// [`crate::engine::Itemize::to_flags`] bits.
        iflags: u16,
        /// Lane to answer on (1 ..= the agreed count).
        lane: u8,
    },
    /// Ask for `len` bytes of `ndx` from `offset` (receiver, `lanes` capability): a part of a
    /// large file spread over several streams, answered on stream `lane` (0 = the control
    /// stream) with `DataBegin { size: len }`, `Data`…, `DataEnd` (BLAKE3 of the part).
    RangeRequest {
        /// Entry index.
        ndx: u32,
        /// [`crate::engine::Itemize::to_flags`] bits.
        iflags: u16,
        /// Stream to answer on: 0 (control) ..= the agreed lane count.
        lane: u8,
        /// First byte.
        offset: u64,
        /// Number of bytes (at least 1).
        len: u64,
    },
    /// The sender can no longer write to `lane` (sender, on the control stream): what it was
    /// answering there is lost and must be asked again on another lane.
    LaneLost {
        /// Lane number.
        lane: u8,
    },
    /// The content of `ndx` is at this absolute path on the shared filesystem (sender).
    LocalPath {
        /// Entry index.
        ndx: u32,
        /// Absolute source path.
        path: Vec<u8>,
    },
    /// The content of `ndx` follows in `Data` frames (sender).
    DataBegin {
        /// Entry index.
        ndx: u32,
        /// The size being sent.
        size: u64,
    },
    /// A piece of the content of `ndx`, in order (sender).
    Data {
        /// Entry index.
        ndx: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// End of the content of `ndx`, with the BLAKE3 of what was sent (sender).
    DataEnd {
        /// Entry index.
        ndx: u32,
        /// BLAKE3 of the bytes sent.
        hash: [u8; 32],
    },
    /// `ndx` vanished from the source before it could be sent (sender).
    Vanished {
        /// Entry index.
        ndx: u32,
    },
    /// `ndx` could not be read (sender).
    FileFailed {
        /// Entry index.
        ndx: u32,
        /// Why.
        message: String,
    },
    /// The receiver has an old version of `ndx`: send its chunk tree instead of its bytes.
    DeltaRequest {
        /// Entry index.
        ndx: u32,
        /// Itemize bits, as in [`Frame::Request`].
        iflags: u16,
    },
    /// Tree nodes of `ndx` (sender): the root first, then one group of children per hash the
    /// receiver asked to expand, in the order asked.
    Nodes {
        /// Entry index.
        ndx: u32,
        /// The groups.
        groups: Vec<Vec<NodeRef>>,
    },
    /// Expand these nodes of `ndx` (receiver).
    Expand {
        /// Entry index.
        ndx: u32,
        /// Node hashes, in file order.
        hashes: Vec<[u8; 32]>,
    },
    /// Send these chunks of `ndx`, in this order, as `Data` frames, then `DataEnd` (receiver).
    Fetch {
        /// Entry index.
        ndx: u32,
        /// Chunk hashes, in file order (repeats allowed).
        hashes: Vec<[u8; 32]>,
        /// Whether this is the last `Fetch` for `ndx`.
        last: bool,
    },
    /// What the receiver did without data, for a sending client that prints it (receiver,
    /// before its requests, when the sender's hello asked with `report`): items as
    /// `(ndx, iflags, update letter)` and deleted paths (with whether each was a directory).
    Report {
        /// Created or changed entries.
        items: Vec<(u32, u16, u8)>,
        /// Deleted paths.
        deleted: Vec<(Vec<u8>, bool)>,
    },
    /// Nothing to say, but alive and working (only to a peer whose hello carried
    /// `keepalive`): keeps its `--timeout` from firing while this side is busy.
    KeepAlive,
    /// No more frames of this phase from this side.
    Done,
    /// The receiver's counters once everything is written (receiver, last): what a sending
    /// client reports with `--stats`. Counters a peer does not know are ignored; missing ones
    /// are zero (see [`crate::engine::Stats::summary_counters`]).
    Summary(Vec<u64>),
    /// A fatal error; the sender of this frame stops.
    Error {
        /// rsync exit code.
        code: u8,
        /// Why.
        message: String,
    },
}

/// Split `items` into the batches of one frame each: at most `max_count` items, and items are
/// added while the batch's encoded size (by `len`) is below [`BATCH_BYTES`]. With every item at
/// most [`MAX_ITEM_LEN`], no batch frame exceeds [`MAX_FRAME_PAYLOAD`] however long the
/// paths: a frame is split, never refused.
pub fn batches<T>(
    items: impl IntoIterator<Item = T>,
    max_count: usize,
    len: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for item in items {
        if !batch.is_empty() && (batch.len() >= max_count || bytes >= BATCH_BYTES) {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += len(&item);
        batch.push(item);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// The encoded size of one file entry in a [`Frame::FileEntries`].
pub fn entry_len(e: &FileEntry) -> usize {
    58 + e.path.len()
        + e.user.len()
        + e.group.len()
        + e.link_target.len()
        + e.checksum.as_ref().map_or(0, |_| 32)
        + xattrs_len(&e.xattrs)
}

/// The encoded size of a list of extended attributes (after the count).
pub fn xattrs_len(xattrs: &[Xattr]) -> usize {
    xattrs
        .iter()
        .map(|x| 5 + x.name.len() + x.value.len())
        .sum()
}

/// `FileEntries` frames for `entries`, split by [`batches`].
pub fn file_entry_frames(entries: impl IntoIterator<Item = FileEntry>) -> Vec<Frame> {
    batches(entries, MAX_BATCH, entry_len)
        .into_iter()
        .map(Frame::FileEntries)
        .collect()
}

/// `DirHashes` frames for `dirs`, split by [`batches`].
pub fn dir_hash_frames(dirs: impl IntoIterator<Item = (Vec<u8>, [u8; 32])>) -> Vec<Frame> {
    batches(dirs, MAX_DIR_HASHES, |d| 34 + d.0.len())
        .into_iter()
        .map(Frame::DirHashes)
        .collect()
}

/// `WantDirs` frames for `wants`, split by [`batches`].
pub fn want_dir_frames(wants: impl IntoIterator<Item = (Vec<u8>, bool)>) -> Vec<Frame> {
    batches(wants, MAX_WANT_DIRS, |w| 3 + w.0.len())
        .into_iter()
        .map(Frame::WantDirs)
        .collect()
}

/// `Report` frames: the deletions first (as rsync prints them), then the items, split by
/// [`batches`].
pub fn report_frames(items: Vec<(u32, u16, u8)>, deleted: Vec<(Vec<u8>, bool)>) -> Vec<Frame> {
    let deleted = batches(deleted, MAX_REPORT, |d| 3 + d.0.len())
        .into_iter()
        .map(|d| Frame::Report {
            items: Vec::new(),
            deleted: d,
        });
    let items = batches(items, MAX_REPORT, |_| 7)
        .into_iter()
        .map(|i| Frame::Report {
            items: i,
            deleted: Vec::new(),
        });
    deleted.chain(items).collect()
}

mod ty {
    pub const HELLO: u8 = 0x01;
    pub const FILE_ENTRIES: u8 = 0x02;
    pub const FILE_LIST_END: u8 = 0x03;
    pub const DIR_HASHES: u8 = 0x04;
    pub const WANT_DIRS: u8 = 0x05;
    pub const TOTALS: u8 = 0x06;
    pub const COMPRESSED: u8 = 0x08;
    pub const LANE: u8 = 0x09;
    pub const REQUEST: u8 = 0x10;
    pub const LOCAL_PATH: u8 = 0x11;
    pub const DATA_BEGIN: u8 = 0x12;
    pub const DATA: u8 = 0x13;
    pub const DATA_END: u8 = 0x14;
    pub const VANISHED: u8 = 0x15;
    pub const FILE_FAILED: u8 = 0x16;
    pub const DELTA_REQUEST: u8 = 0x17;
    pub const NODES: u8 = 0x18;
    pub const EXPAND: u8 = 0x19;
    pub const FETCH: u8 = 0x1a;
    pub const LANE_REQUEST: u8 = 0x1b;
    pub const LANE_LOST: u8 = 0x1c;
    pub const RANGE_REQUEST: u8 = 0x1d;
    pub const DONE: u8 = 0x20;
    pub const KEEP_ALIVE: u8 = 0x23;
    pub const REPORT: u8 = 0x22;
    pub const SUMMARY: u8 = 0x21;
    pub const ERROR: u8 = 0x7f;
}

impl Frame {
    /// Append this frame (header and payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        let t = {
            let mut w = WireWriter::new(out);
            match self {
                Frame::Hello(h) => {
                    w.raw(MAGIC);
                    w.u16(h.version);
                    w.u16(h.caps.len().min(MAX_CAPS) as u16);
                    for (name, value) in h.caps.iter().take(MAX_CAPS) {
                        w.bytes8(name.as_bytes());
                        w.bytes16(value);
                    }
                    ty::HELLO
                }
                Frame::FileEntries(entries) => {
                    w.u32(entries.len() as u32);
                    for e in entries {
                        encode_entry(&mut w, e);
                    }
                    ty::FILE_ENTRIES
                }
                Frame::FileListEnd { count } => {
                    w.u32(*count);
                    ty::FILE_LIST_END
                }
                Frame::DirHashes(dirs) => {
                    w.u32(dirs.len() as u32);
                    for (path, hash) in dirs {
                        w.bytes16(path);
                        w.raw(hash);
                    }
                    ty::DIR_HASHES
                }
                Frame::WantDirs(dirs) => {
                    w.u32(dirs.len() as u32);
                    for (path, whole) in dirs {
                        w.u8(u8::from(*whole));
                        w.bytes16(path);
                    }
                    ty::WANT_DIRS
                }
                Frame::Totals(counters) => {
                    put_counters(&mut w, counters);
                    ty::TOTALS
                }
                Frame::Request { ndx, iflags } => {
                    w.u32(*ndx);
                    w.u16(*iflags);
                    ty::REQUEST
                }
                Frame::Lane { lane } => {
                    w.u8(*lane);
                    ty::LANE
                }
                Frame::LaneRequest { ndx, iflags, lane } => {
                    w.u32(*ndx);
                    w.u16(*iflags);
                    w.u8(*lane);
                    ty::LANE_REQUEST
                }
                Frame::LaneLost { lane } => {
                    w.u8(*lane);
                    ty::LANE_LOST
                }
                Frame::RangeRequest {
                    ndx,
                    iflags,
                    lane,
                    offset,
                    len,
                } => {
                    w.u32(*ndx);
                    w.u16(*iflags);
                    w.u8(*lane);
                    w.u64(*offset);
                    w.u64(*len);
                    ty::RANGE_REQUEST
                }
                Frame::LocalPath { ndx, path } => {
                    w.u32(*ndx);
                    w.bytes32(path);
                    ty::LOCAL_PATH
                }
                Frame::DataBegin { ndx, size } => {
                    w.u32(*ndx);
                    w.u64(*size);
                    ty::DATA_BEGIN
                }
                Frame::Data { ndx, bytes } => {
                    w.u32(*ndx);
                    w.raw(bytes);
                    ty::DATA
                }
                Frame::DataEnd { ndx, hash } => {
                    w.u32(*ndx);
                    w.raw(hash);
                    ty::DATA_END
                }
                Frame::Vanished { ndx } => {
                    w.u32(*ndx);
                    ty::VANISHED
                }
                Frame::FileFailed { ndx, message } => {
                    w.u32(*ndx);
                    w.bytes32(&message.as_bytes()[..message.len().min(MAX_MESSAGE)]);
                    ty::FILE_FAILED
                }
                Frame::DeltaRequest { ndx, iflags } => {
                    w.u32(*ndx);
                    w.u16(*iflags);
                    ty::DELTA_REQUEST
                }
                Frame::Nodes { ndx, groups } => {
                    w.u32(*ndx);
                    w.u32(groups.len() as u32);
                    for g in groups {
                        w.u32(g.len() as u32);
                        for n in g {
                            w.u8(n.level);
                            w.raw(&n.hash);
                            w.u64(n.size);
                        }
                    }
                    ty::NODES
                }
                Frame::Expand { ndx, hashes } => {
                    w.u32(*ndx);
                    w.u32(hashes.len() as u32);
                    for h in hashes {
                        w.raw(h);
                    }
                    ty::EXPAND
                }
                Frame::Fetch { ndx, hashes, last } => {
                    w.u32(*ndx);
                    w.u8(u8::from(*last));
                    w.u32(hashes.len() as u32);
                    for h in hashes {
                        w.raw(h);
                    }
                    ty::FETCH
                }
                Frame::Report { items, deleted } => {
                    w.u32(items.len() as u32);
                    for (ndx, iflags, letter) in items {
                        w.u32(*ndx);
                        w.u16(*iflags);
                        w.u8(*letter);
                    }
                    w.u32(deleted.len() as u32);
                    for (path, dir) in deleted {
                        w.u8(u8::from(*dir));
                        w.bytes16(path);
                    }
                    ty::REPORT
                }
                Frame::Done => ty::DONE,
                Frame::KeepAlive => ty::KEEP_ALIVE,
                Frame::Summary(counters) => {
                    put_counters(&mut w, counters);
                    ty::SUMMARY
                }
                Frame::Error { code, message } => {
                    w.u8(*code);
                    w.bytes32(&message.as_bytes()[..message.len().min(MAX_MESSAGE)]);
                    ty::ERROR
                }
            }
        };
        let len = (out.len() - start - HEADER_LEN) as u32;
        out[start] = t;
        out[start + 1..start + HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    }

    /// Decode one frame from its type and payload.
    pub fn decode(t: u8, payload: &[u8]) -> Result<Frame, DecodeError> {
        let mut r = WireReader::new(payload);
        let f = match t {
            ty::HELLO => {
                if r.take(MAGIC.len(), "magic")? != MAGIC {
                    return Err(DecodeError::invalid(
                        "hello",
                        "bad magic (not an arsync peer)",
                    ));
                }
                let version = r.u16("version")?;
                let n = r.u16("capability count")? as usize;
                bound(n as u64, MAX_CAPS as u64, "capability count")?;
                let mut caps = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = r.bytes8("capability name")?;
                    let name = String::from_utf8(name.to_vec())
                        .map_err(|_| DecodeError::invalid("capability name", "not UTF-8"))?;
                    let value = r.bytes16(u16::MAX as usize, "capability value")?.to_vec();
                    caps.push((name, value));
                }
                Frame::Hello(Hello { version, caps })
            }
            ty::FILE_ENTRIES => {
                let n = r.u32("entry count")? as usize;
                bound(n as u64, MAX_BATCH as u64, "entry count")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(decode_entry(&mut r)?);
                }
                Frame::FileEntries(v)
            }
            ty::FILE_LIST_END => {
                let count = r.u32("count")?;
                bound(count as u64, MAX_FILES as u64, "file count")?;
                Frame::FileListEnd { count }
            }
            ty::DIR_HASHES => {
                let n = r.u32("directory count")? as usize;
                bound(n as u64, MAX_DIR_HASHES as u64, "directory count")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let path = dir_path(&mut r)?;
                    v.push((path, r.fixed::<32>("directory hash")?));
                }
                Frame::DirHashes(v)
            }
            ty::WANT_DIRS => {
                let n = r.u32("directory count")? as usize;
                bound(n as u64, MAX_WANT_DIRS as u64, "directory count")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let whole = match r.u8("subtree flag")? {
                        0 => false,
                        1 => true,
                        b => return Err(DecodeError::invalid("subtree flag", b)),
                    };
                    v.push((dir_path(&mut r)?, whole));
                }
                Frame::WantDirs(v)
            }
            ty::TOTALS => Frame::Totals(counters(&mut r)?),
            ty::COMPRESSED => {
                return Err(DecodeError::invalid(
                    "frame type",
                    "a compressed frame inside a compressed frame, or without `compress`",
                ))
            }
            ty::REQUEST => Frame::Request {
                ndx: r.u32("ndx")?,
                iflags: r.u16("iflags")?,
            },
            ty::LANE => Frame::Lane {
                lane: lane_number(&mut r)?,
            },
            ty::LANE_REQUEST => Frame::LaneRequest {
                ndx: r.u32("ndx")?,
                iflags: r.u16("iflags")?,
                lane: lane_number(&mut r)?,
            },
            ty::LANE_LOST => Frame::LaneLost {
                lane: lane_number(&mut r)?,
            },
            ty::RANGE_REQUEST => {
                let ndx = r.u32("ndx")?;
                let iflags = r.u16("iflags")?;
                let lane = r.u8("lane")?;
                if lane > MAX_LANES {
                    return Err(DecodeError::invalid(
                        "lane",
                        format!("{lane} is over {MAX_LANES}"),
                    ));
                }
                let offset = r.u64("offset")?;
                let len = r.u64("length")?;
                if len == 0 || offset.checked_add(len).is_none() {
                    return Err(DecodeError::invalid("range", "empty or past 2^64"));
                }
                Frame::RangeRequest {
                    ndx,
                    iflags,
                    lane,
                    offset,
                    len,
                }
            }
            ty::LOCAL_PATH => {
                let ndx = r.u32("ndx")?;
                let path = r.bytes32(MAX_PATH * 2, "local path")?.to_vec();
                if path.first() != Some(&b'/') || path.contains(&0) {
                    return Err(DecodeError::invalid("local path", "not an absolute path"));
                }
                Frame::LocalPath { ndx, path }
            }
            ty::DATA_BEGIN => Frame::DataBegin {
                ndx: r.u32("ndx")?,
                size: r.u64("size")?,
            },
            ty::DATA => {
                let ndx = r.u32("ndx")?;
                let n = r.remaining();
                bound(n as u64, MAX_DATA_CHUNK as u64, "data chunk")?;
                Frame::Data {
                    ndx,
                    bytes: r.take(n, "data")?.to_vec(),
                }
            }
            ty::DATA_END => Frame::DataEnd {
                ndx: r.u32("ndx")?,
                hash: r.fixed::<32>("hash")?,
            },
            ty::VANISHED => Frame::Vanished { ndx: r.u32("ndx")? },
            ty::FILE_FAILED => Frame::FileFailed {
                ndx: r.u32("ndx")?,
                message: lossy(r.bytes32(MAX_MESSAGE, "message")?),
            },
            ty::DELTA_REQUEST => Frame::DeltaRequest {
                ndx: r.u32("ndx")?,
                iflags: r.u16("iflags")?,
            },
            ty::NODES => {
                let ndx = r.u32("ndx")?;
                let ng = r.u32("group count")? as usize;
                bound(ng as u64, MAX_EXPAND as u64 + 1, "group count")?;
                let mut groups = Vec::with_capacity(ng);
                let mut total = 0usize;
                for _ in 0..ng {
                    let n = r.u32("node count")? as usize;
                    total += n;
                    bound(total as u64, MAX_NODES as u64, "node count")?;
                    let mut g = Vec::with_capacity(n);
                    for _ in 0..n {
                        g.push(NodeRef {
                            level: r.u8("level")?,
                            hash: r.fixed::<32>("node hash")?,
                            size: r.u64("node size")?,
                        });
                    }
                    groups.push(g);
                }
                Frame::Nodes { ndx, groups }
            }
            ty::EXPAND => {
                let ndx = r.u32("ndx")?;
                let n = r.u32("hash count")? as usize;
                bound(n as u64, MAX_EXPAND as u64, "expand count")?;
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.fixed::<32>("hash")?);
                }
                Frame::Expand { ndx, hashes }
            }
            ty::FETCH => {
                let ndx = r.u32("ndx")?;
                let last = match r.u8("last")? {
                    0 => false,
                    1 => true,
                    b => return Err(DecodeError::invalid("fetch", format!("last flag {b}"))),
                };
                let n = r.u32("hash count")? as usize;
                bound(n as u64, MAX_FETCH as u64, "fetch count")?;
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.fixed::<32>("hash")?);
                }
                Frame::Fetch { ndx, hashes, last }
            }
            ty::REPORT => {
                let n = r.u32("item count")? as usize;
                bound(n as u64, MAX_REPORT as u64, "item count")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let ndx = r.u32("ndx")?;
                    let iflags = r.u16("iflags")?;
                    let letter = r.u8("update letter")?;
                    if !matches!(letter, b'c' | b'.' | b'h' | b'>' | b'<') {
                        return Err(DecodeError::invalid("update letter", letter));
                    }
                    items.push((ndx, iflags, letter));
                }
                let n = r.u32("deleted count")? as usize;
                bound(n as u64, MAX_REPORT as u64, "deleted count")?;
                let mut deleted = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let dir = match r.u8("directory flag")? {
                        0 => false,
                        1 => true,
                        b => return Err(DecodeError::invalid("directory flag", b)),
                    };
                    let path = r.bytes16(MAX_PATH, "deleted path")?.to_vec();
                    validate_rel_path(&path)
                        .map_err(|why| DecodeError::invalid("deleted path", why))?;
                    deleted.push((path, dir));
                }
                Frame::Report { items, deleted }
            }
            ty::DONE => Frame::Done,
            ty::KEEP_ALIVE => Frame::KeepAlive,
            ty::SUMMARY => Frame::Summary(counters(&mut r)?),
            ty::ERROR => Frame::Error {
                code: r.u8("code")?,
                message: lossy(r.bytes32(MAX_MESSAGE, "message")?),
            },
            other => {
                return Err(DecodeError::invalid(
                    "frame type",
                    format!("unknown type 0x{other:02x}"),
                ))
            }
        };
        r.finish()?;
        Ok(f)
    }
}

/// A lane number: 1 ..= [`MAX_LANES`] (0 is the control stream, never named).
fn lane_number(r: &mut WireReader<'_>) -> Result<u8, DecodeError> {
    match r.u8("lane")? {
        n @ 1..=MAX_LANES => Ok(n),
        n => Err(DecodeError::invalid(
            "lane",
            format!("{n} is not 1..={MAX_LANES}"),
        )),
    }
}

fn put_counters(w: &mut WireWriter<'_>, counters: &[u64]) {
    w.u16(counters.len().min(MAX_COUNTERS) as u16);
    for c in counters.iter().take(MAX_COUNTERS) {
        w.u64(*c);
    }
}

fn counters(r: &mut WireReader<'_>) -> Result<Vec<u64>, DecodeError> {
    let n = r.u16("counter count")? as usize;
    bound(n as u64, MAX_COUNTERS as u64, "counter count")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.u64("counter")?);
    }
    Ok(v)
}

/// A directory path in the tree exchange: `.` (the root) or a valid relative path.
fn dir_path(r: &mut WireReader<'_>) -> Result<Vec<u8>, DecodeError> {
    let path = r.bytes16(MAX_PATH, "directory path")?.to_vec();
    validate_rel_path(&path).map_err(|why| {
        DecodeError::invalid(
            "directory path",
            format!("{why}: {:?}", String::from_utf8_lossy(&path)),
        )
    })?;
    Ok(path)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const HAS_CHECKSUM: u8 = 1;

fn encode_entry(w: &mut WireWriter<'_>, e: &FileEntry) {
    w.bytes16(&e.path);
    w.u8(e.kind.code());
    w.u32(e.perms);
    w.u64(e.size);
    w.i64(e.mtime);
    w.u32(e.mtime_nsec);
    w.u32(e.uid);
    w.u32(e.gid);
    w.bytes8(&e.user);
    w.bytes8(&e.group);
    w.u64(e.rdev);
    w.bytes16(&e.link_target);
    w.u32(e.hardlink_group);
    match &e.checksum {
        Some(h) => {
            w.u8(HAS_CHECKSUM);
            w.raw(&h[..]);
        }
        None => w.u8(0),
    }
    w.u16(e.xattrs.len().min(MAX_XATTRS) as u16);
    for x in e.xattrs.iter().take(MAX_XATTRS) {
        w.bytes8(&x.name);
        w.bytes32(&x.value[..x.value.len().min(MAX_XATTR_VALUE)]);
    }
}

fn decode_entry(r: &mut WireReader<'_>) -> Result<FileEntry, DecodeError> {
    let path = r.bytes16(MAX_PATH, "path")?.to_vec();
    validate_rel_path(&path).map_err(|why| {
        DecodeError::invalid(
            "path",
            format!("{why}: {:?}", String::from_utf8_lossy(&path)),
        )
    })?;
    let kind = FileKind::from_code(r.u8("kind")?)
        .ok_or_else(|| DecodeError::invalid("kind", "unknown file kind"))?;
    let perms = r.u32("mode")?;
    if perms & !0o7777 != 0 {
        return Err(DecodeError::invalid("mode", format!("{perms:o}")));
    }
    let size = r.u64("size")?;
    let mtime = r.i64("mtime")?;
    let mtime_nsec = r.u32("mtime nsec")?;
    if mtime_nsec >= 1_000_000_000 {
        return Err(DecodeError::invalid("mtime nsec", mtime_nsec));
    }
    let uid = r.u32("uid")?;
    let gid = r.u32("gid")?;
    let user = r.bytes8("user")?.to_vec();
    let group = r.bytes8("group")?.to_vec();
    let rdev = r.u64("rdev")?;
    let link_target = r.bytes16(MAX_PATH, "link target")?.to_vec();
    if kind == FileKind::Symlink && (link_target.is_empty() || link_target.contains(&0)) {
        return Err(DecodeError::invalid("link target", "empty or contains NUL"));
    }
    let hardlink_group = r.u32("hardlink group")?;
    let checksum = match r.u8("checksum flag")? {
        0 => None,
        HAS_CHECKSUM => Some(Box::new(r.fixed::<32>("checksum")?)),
        f => return Err(DecodeError::invalid("checksum flag", f)),
    };
    let nx = r.u16("xattr count")? as usize;
    bound(nx as u64, MAX_XATTRS as u64, "xattr count")?;
    let mut xattrs = Vec::with_capacity(nx);
    for _ in 0..nx {
        let name = r.bytes8("xattr name")?.to_vec();
        if name.is_empty() || name.contains(&0) {
            return Err(DecodeError::invalid("xattr name", "empty or contains NUL"));
        }
        let value = r.bytes32(MAX_XATTR_VALUE, "xattr value")?.to_vec();
        xattrs.push(Xattr { name, value });
    }
    Ok(FileEntry {
        path,
        kind,
        perms,
        size,
        mtime,
        mtime_nsec,
        uid,
        gid,
        user,
        group,
        rdev,
        link_target,
        hardlink_group,
        checksum,
        xattrs,
    })
}

/// Decode a `Compressed` payload: `type: u8`, `raw_len: u32` (≤ [`MAX_FRAME_PAYLOAD`]), zstd
/// bytes that must inflate to exactly `raw_len` bytes, which decode as a frame of `type`.
pub fn decode_compressed(payload: &[u8]) -> Result<Frame, DecodeError> {
    let mut r = WireReader::new(payload);
    let t = r.u8("inner type")?;
    let raw_len = r.u32("inflated length")? as usize;
    bound(raw_len as u64, MAX_FRAME_PAYLOAD as u64, "inflated length")?;
    let packed = r.take(r.remaining(), "compressed data")?;
    let raw = zstd::bulk::decompress(packed, raw_len)
        .map_err(|e| DecodeError::invalid("compressed frame", e.to_string()))?;
    if raw.len() != raw_len {
        return Err(DecodeError::invalid(
            "compressed frame",
            format!("inflated to {} bytes, not {raw_len}", raw.len()),
        ));
    }
    Frame::decode(t, &raw)
}

/// Frame types worth compressing (the others carry hashes or a few numbers).
fn compressible(t: u8) -> bool {
    matches!(t, ty::FILE_ENTRIES | ty::DATA)
}

/// Append `frame` to `out`, as a `Compressed` frame (zstd at `level`) when that is smaller.
pub fn encode_compressed(frame: &Frame, out: &mut Vec<u8>, level: i32) {
    let start = out.len();
    frame.encode(out);
    let t = out[start];
    let payload_len = out.len() - start - HEADER_LEN;
    if !compressible(t) || payload_len < 128 {
        return;
    }
    let Ok(packed) = zstd::bulk::compress(&out[start + HEADER_LEN..], level) else {
        return;
    };
    if packed.len() + 5 >= payload_len {
        return;
    }
    out.truncate(start);
    out.push(ty::COMPRESSED);
    out.extend_from_slice(&((packed.len() + 5) as u32).to_le_bytes());
    out.push(t);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&packed);
}

/// Takes bytes as they arrive and yields whole frames. Sans-IO: the driver reads from its
/// stream into [`FrameDecoder::buffer`], then calls [`FrameDecoder::next_frame`] until `None`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Whether `Compressed` frames are accepted (this side advertised `compress`).
    compressed: bool,
    buf: Vec<u8>,
    pos: usize,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Accept `Compressed` frames from now on (after both hellos advertised `compress`).
    pub fn accept_compressed(&mut self, on: bool) {
        self.compressed = on;
    }

    /// Bytes received but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether a whole frame (header and payload) is buffered.
    pub fn has_frame(&self) -> bool {
        let avail = &self.buf[self.pos..];
        avail.len() >= HEADER_LEN
            && avail.len()
                >= HEADER_LEN
                    + u32::from_le_bytes([avail[1], avail[2], avail[3], avail[4]]) as usize
    }

    /// The next whole frame, if one has arrived. A header announcing more than
    /// [`MAX_FRAME_PAYLOAD`] is an error before any payload is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let avail = &self.buf[self.pos..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let t = avail[0];
        let len = u32::from_le_bytes([avail[1], avail[2], avail[3], avail[4]]) as usize;
        bound(len as u64, MAX_FRAME_PAYLOAD as u64, "frame length")?;
        if avail.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = &avail[HEADER_LEN..HEADER_LEN + len];
        let frame = if t == ty::COMPRESSED && self.compressed {
            decode_compressed(payload)?
        } else {
            Frame::decode(t, payload)?
        };
        self.pos += HEADER_LEN + len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8]) -> FileEntry {
        FileEntry {
            path: path.to_vec(),
            kind: FileKind::File,
            perms: 0o4755,
            size: 12,
            mtime: 1_700_000_000,
            mtime_nsec: 123_456_789,
            uid: 1000,
            gid: 1000,
            user: b"alice".to_vec(),
            group: b"staff".to_vec(),
            rdev: 0,
            link_target: vec![],
            hardlink_group: 3,
            checksum: Some(Box::new([7; 32])),
            xattrs: vec![Xattr {
                name: b"user.k".to_vec(),
                value: b"v".to_vec(),
            }],
        }
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                caps: vec![("shared-fs".into(), b"1".to_vec())],
            }),
            Frame::FileEntries(vec![entry(b"a"), entry(b"dir/b c")]),
            Frame::FileListEnd { count: 2 },
            Frame::DirHashes(vec![(b".".to_vec(), [1; 32]), (b"a/b".to_vec(), [2; 32])]),
            Frame::WantDirs(vec![(b".".to_vec(), false), (b"a".to_vec(), true)]),
            Frame::Totals(vec![1, 2, 3]),
            Frame::Report {
                items: vec![(3, 0x9, b'.'), (4, 1, b'c')],
                deleted: vec![(b"gone/x".to_vec(), false), (b"gone".to_vec(), true)],
            },
            Frame::Request { ndx: 1, iflags: 5 },
            Frame::Lane { lane: 3 },
            Frame::LaneRequest {
                ndx: 7,
                iflags: 2,
                lane: 64,
            },
            Frame::LaneLost { lane: 1 },
            Frame::RangeRequest {
                ndx: 9,
                iflags: 1,
                lane: 0,
                offset: 1 << 33,
                len: 1 << 20,
            },
            Frame::LocalPath {
                ndx: 1,
                path: b"/tmp/x".to_vec(),
            },
            Frame::DataBegin { ndx: 1, size: 3 },
            Frame::Data {
                ndx: 1,
                bytes: b"abc".to_vec(),
            },
            Frame::DataEnd {
                ndx: 1,
                hash: [9; 32],
            },
            Frame::Vanished { ndx: 4 },
            Frame::FileFailed {
                ndx: 4,
                message: "nope".into(),
            },
            Frame::DeltaRequest { ndx: 3, iflags: 4 },
            Frame::Nodes {
                ndx: 3,
                groups: vec![
                    vec![NodeRef {
                        level: 2,
                        hash: [1; 32],
                        size: 99,
                    }],
                    vec![],
                ],
            },
            Frame::Expand {
                ndx: 3,
                hashes: vec![[2; 32], [3; 32]],
            },
            Frame::Fetch {
                ndx: 3,
                hashes: vec![[4; 32]],
                last: true,
            },
            Frame::Done,
            Frame::KeepAlive,
            Frame::Summary(vec![1, 2, 3]),
            Frame::Error {
                code: 12,
                message: "bad".into(),
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_byte_by_byte() {
        let frames = all_frames();
        let mut bytes = Vec::new();
        for f in &frames {
            f.encode(&mut bytes);
        }
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for b in bytes {
            d.push(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn lane_numbers_outside_the_range_are_refused() {
        for bad in [0u8, MAX_LANES + 1, 255] {
            assert!(Frame::decode(ty::LANE, &[bad]).is_err(), "lane {bad}");
            assert!(Frame::decode(ty::LANE_LOST, &[bad]).is_err(), "lane {bad}");
            let mut p = 5u32.to_le_bytes().to_vec();
            p.extend_from_slice(&[0, 0, bad]);
            assert!(Frame::decode(ty::LANE_REQUEST, &p).is_err(), "lane {bad}");
        }
        let range = |lane: u8, offset: u64, len: u64| {
            let mut p = 5u32.to_le_bytes().to_vec();
            p.extend_from_slice(&[0, 0, lane]);
            p.extend_from_slice(&offset.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
            Frame::decode(ty::RANGE_REQUEST, &p)
        };
        assert!(range(0, 0, 1).is_ok());
        assert!(range(MAX_LANES + 1, 0, 1).is_err());
        assert!(range(1, 0, 0).is_err(), "empty range");
        assert!(range(1, u64::MAX, 2).is_err(), "range past 2^64");
        assert_eq!(
            Frame::decode(ty::LANE, &[MAX_LANES]).unwrap(),
            Frame::Lane { lane: MAX_LANES }
        );
    }

    #[test]
    fn oversize_header_is_refused_before_buffering() {
        let mut d = FrameDecoder::new();
        d.push(&[ty::DATA, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            d.next_frame(),
            Err(DecodeError::TooLarge {
                what: "frame length",
                ..
            })
        ));
    }

    #[test]
    fn compressed_frames_round_trip_and_are_bounded() {
        let data = Frame::Data {
            ndx: 3,
            bytes: b"abcabcabc".repeat(1000),
        };
        let entries = Frame::FileEntries(
            (0..50)
                .map(|i| entry(format!("dir/f{i}").as_bytes()))
                .collect(),
        );
        let incompressible = Frame::Data {
            ndx: 1,
            bytes: (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                .collect(),
        };
        let mut buf = Vec::new();
        for f in [&data, &entries, &incompressible, &Frame::Done] {
            encode_compressed(f, &mut buf, 3);
        }
        let mut plain = Vec::new();
        for f in [&data, &entries, &incompressible, &Frame::Done] {
            f.encode(&mut plain);
        }
        assert!(
            buf.len() < plain.len() / 2,
            "{} vs {}",
            buf.len(),
            plain.len()
        );
        let mut d = FrameDecoder::new();
        d.accept_compressed(true);
        d.push(&buf);
        for want in [&data, &entries, &incompressible, &Frame::Done] {
            assert_eq!(d.next_frame().unwrap().as_ref(), Some(want));
        }
        // Not negotiated: refused.
        let mut d = FrameDecoder::new();
        d.push(&buf);
        assert!(d.next_frame().is_err());
        // A bomb: more inflated bytes than announced, or an announced length over the bound.
        let big = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        for (announced, packed) in [(1000u32, &big), ((MAX_FRAME_PAYLOAD + 1) as u32, &big)] {
            let mut payload = vec![ty::DATA];
            payload.extend_from_slice(&announced.to_le_bytes());
            payload.extend_from_slice(packed);
            assert!(decode_compressed(&payload).is_err());
        }
        // Nested compression.
        let mut payload = vec![ty::COMPRESSED];
        payload.extend_from_slice(&4u32.to_le_bytes());
        payload.extend_from_slice(&zstd::bulk::compress(&[0, 0, 0, 0], 3).unwrap());
        assert!(decode_compressed(&payload).is_err());
    }

    #[test]
    fn hostile_entries_are_refused() {
        for bad in [&b"../etc/passwd"[..], b"/etc/passwd", b"a/../../b", b""] {
            let mut buf = Vec::new();
            Frame::FileEntries(vec![entry(bad)]).encode(&mut buf);
            let mut d = FrameDecoder::new();
            d.push(&buf);
            assert!(d.next_frame().is_err(), "{:?} accepted", bad);
            for frame in [
                Frame::DirHashes(vec![(bad.to_vec(), [0; 32])]),
                Frame::WantDirs(vec![(bad.to_vec(), false)]),
            ] {
                let mut buf = Vec::new();
                frame.encode(&mut buf);
                let mut d = FrameDecoder::new();
                d.push(&buf);
                assert!(d.next_frame().is_err(), "{:?} accepted in {frame:?}", bad);
            }
        }
        // A count larger than the batch bound.
        let mut d = FrameDecoder::new();
        d.push(&[ty::FILE_ENTRIES, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        // xorshift: deterministic, no dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut valid = Vec::new();
        for f in all_frames() {
            f.encode(&mut valid);
        }
        for round in 0..2000 {
            let mut bytes = if round % 2 == 0 {
                valid.clone()
            } else {
                (0..(next() % 512)).map(|_| next() as u8).collect()
            };
            for _ in 0..(next() % 8) {
                if !bytes.is_empty() {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            // Decode until an error or the input runs out; either is fine, a panic is not.
            while let Ok(Some(_)) = d.next_frame() {}
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for f in all_frames() {
            let mut buf = Vec::new();
            f.encode(&mut buf);
            let payload = &buf[HEADER_LEN..];
            // A data frame's payload after its index is all data: any cut past it is valid.
            let must_fail = match f {
                Frame::Data { .. } => 4,
                _ => payload.len(),
            };
            for cut in 0..must_fail {
                assert!(
                    Frame::decode(buf[0], &payload[..cut]).is_err(),
                    "{f:?} cut at {cut} decoded"
                );
            }
        }
    }

    /// Every frame a batch constructor makes fits in one frame and decodes back to its items,
    /// for items as long as the protocol allows (issue 13: a tree level of long paths once
    /// made a 1.5 MB `WantDirs` that the peer refused).
    #[test]
    fn batch_frames_of_long_items_are_split_never_oversized() {
        fn check(frames: &[Frame]) -> usize {
            let mut items = 0;
            for f in frames {
                let mut buf = Vec::new();
                f.encode(&mut buf);
                let len = buf.len() - HEADER_LEN;
                assert!(len <= MAX_FRAME_PAYLOAD, "{len} bytes in one frame");
                let mut d = FrameDecoder::new();
                d.push(&buf);
                let back = d.next_frame().expect("decodes").expect("whole frame");
                assert_eq!(&back, f);
                items += match f {
                    Frame::FileEntries(v) => v.len(),
                    Frame::DirHashes(v) => v.len(),
                    Frame::WantDirs(v) => v.len(),
                    Frame::Report { items, deleted } => items.len() + deleted.len(),
                    _ => 0,
                };
            }
            items
        }
        let long = |i: usize| {
            let mut p = format!("d{i}/").into_bytes();
            p.resize(MAX_PATH - 1, b'x');
            p
        };
        let n = 20_000;
        let wants: Vec<_> = (0..n).map(|i| (long(i), i % 2 == 0)).collect();
        let frames = want_dir_frames(wants);
        assert!(frames.len() > 70, "{} frames", frames.len());
        assert_eq!(check(&frames), n);
        let hashes: Vec<_> = (0..n).map(|i| (long(i), [i as u8; 32])).collect();
        assert_eq!(check(&dir_hash_frames(hashes)), n);
        let deleted: Vec<_> = (0..n).map(|i| (long(i), false)).collect();
        let items: Vec<_> = (0..n as u32).map(|i| (i, 1, b'>')).collect();
        assert_eq!(check(&report_frames(items, deleted)), 2 * n);
        // Entries at the largest size the scanner lets through: long path, long link, names
        // and attributes up to MAX_ENTRY_XATTR_BYTES.
        let big = |i: usize| {
            let mut e = entry(&long(i));
            e.kind = FileKind::Symlink;
            e.hardlink_group = 0;
            e.link_target = vec![b'l'; MAX_PATH];
            e.user = vec![b'u'; 255];
            e.group = vec![b'g'; 255];
            e.xattrs = (0..4)
                .map(|k| Xattr {
                    name: format!("user.{k}").into_bytes(),
                    value: vec![b'v'; MAX_XATTR_VALUE - 16],
                })
                .collect();
            assert!(xattrs_len(&e.xattrs) <= MAX_ENTRY_XATTR_BYTES);
            e
        };
        let entries: Vec<_> = (0..40).map(big).collect();
        assert_eq!(check(&file_entry_frames(entries)), 40);
        let small: Vec<_> = (0..10_000)
            .map(|i| entry(format!("f{i}").as_bytes()))
            .collect();
        let frames = file_entry_frames(small);
        assert_eq!(frames.len(), 3, "4096 entries a frame at most");
        assert_eq!(check(&frames), 10_000);
    }
}
