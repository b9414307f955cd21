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

mod batch;
pub mod caps;
mod codec;
mod decoder;

pub use batch::{
    batches, dir_hash_frames, entry_len, file_entry_frames, report_frames, want_dir_frames,
    xattrs_len,
};
pub use caps::Caps;
pub use decoder::{decode_compressed, encode_compressed, FrameDecoder};

use crate::flist::{FileEntry, MAX_PATH};
use crate::merkle::NodeRef;

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
// Issue 18, scattered deltas:
/// Largest gap (its new bytes) whose sums the receiver may send (`GapSums`): its `GapData`
/// then fits one frame.
pub const MAX_GAP_NEW: u64 = 256 * 1024;
/// Largest old stretch one `GapSums` may describe (its blocks × block length).
pub const MAX_GAP_OLD: u64 = 1 << 20;
/// Most operations in one `GapData`.
pub const MAX_GAP_OPS: usize = 65_536;
/// Largest number of counters in a summary.
pub const MAX_COUNTERS: usize = 64;
/// Most directory hashes in one `DirHashes` frame.
pub const MAX_DIR_HASHES: usize = 16_384;
/// Most items (and most deleted paths) in one `Report` frame.
pub const MAX_REPORT: usize = 16_384;
/// Most directories in one `WantDirs` frame.
pub const MAX_WANT_DIRS: usize = 16_384;
/// Most names in one `MissingArgs` frame: of at most `MAX_PATH` bytes each, they fit in one.
pub const MAX_MISSING_ARGS: usize = 128;
/// Most entries in one `Synced` frame (20 bytes each).
pub const MAX_SYNCED: usize = 32_768;
// Issue 18, streaming list:
/// The parent of the top level's segment (no directory).
pub const ROOT_SEGMENT: u32 = u32::MAX;
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
    // Issue 18, streaming list:
    /// The children of one directory follow (sender, only when both hellos carried
    /// `segments`): `count` entries in `FileEntries` frames, numbered from `base`; `parent` is
    /// the directory's index ([`ROOT_SEGMENT`] for the top level). See `docs/MERKLE_PROTOCOL.md`.
    Segment {
        /// Index of the directory whose children these are, or [`ROOT_SEGMENT`].
        parent: u32,
        /// Index of the first entry (the entries sent before it).
        base: u32,
        /// How many entries follow.
        count: u32,
    },
    /// The end of one round of segments (sender): more rounds follow, with the total count
    /// sent so far. The last round ends with [`Frame::FileListEnd`] instead.
    RoundEnd {
        /// Number of entries sent so far.
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
    /// Source arguments that do not exist (sender, in the whole-list exchange, before
    /// `FileListEnd`; only with `--delete-missing-args`): the receiver deletes its file of
    /// each name, as rsync's mode-0 list entries ask. Never the root `.`.
    MissingArgs(Vec<Vec<u8>>),
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
    // Issue 18, scattered deltas:
    /// Block sums of the old bytes a run of fetched chunks replaces (receiver, `gaps`
    /// capability, before the exchange's last `Fetch`): the sender answers those chunks with
    /// one `GapData` instead of their `Data` frames.
    GapSums {
        /// Entry index.
        ndx: u32,
        /// The gap's first chunk: its place in the exchange's fetch list (0-based, all
        /// `Fetch` frames of `ndx` in order).
        first: u32,
        /// Chunks in the gap (consecutive in the fetch list, at least 1).
        count: u32,
        /// Block length ([`crate::merkle::gapsum::MIN_BLOCK`]..=`MAX_BLOCK`).
        block: u32,
        /// `(weak, strong)` per whole block of the old stretch, in order.
        sums: Vec<(u32, u32)>,
    },
    /// A gap's chunks, described as copies of the old blocks its `GapSums` named and
    /// literal bytes (sender, in place of those chunks' `Data` frames).
    GapData {
        /// Entry index.
        ndx: u32,
        /// The description, in order.
        ops: Vec<crate::merkle::gapsum::GapOp>,
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
    /// A message the receiver printed at `-v` (`created directory DEST`), for a sending client
    /// that prints it (only when the sender's hello asked with `report`).
    Info(String),
    /// Issue 15, source: these entries are synchronized at the destination (receiver, before
    /// its `Summary`, only with `--remove-source-files`): the sender may remove them. Each is
    /// `(ndx, dev, ino)`: the destination file's device and inode (0, 0 if unknown), so that
    /// a sender never removes the very file the destination holds.
    Synced(Vec<(u32, u64, u64)>),
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

#[cfg(test)]
mod tests;
