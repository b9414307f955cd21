//! The byte layout of every frame: [`Frame::encode`] and [`Frame::decode`], each length and
//! count bounded before use. Not the framing of a byte stream (`decoder`) or batch splitting.

use super::*;
use crate::flist::{validate_rel_path, FileKind, Name, Owner, Rare, Xattr};
use crate::proto::wire::{bound, DecodeError, WireReader, WireWriter};

pub(super) mod ty {
    pub const HELLO: u8 = 0x01;
    pub const FILE_ENTRIES: u8 = 0x02;
    pub const FILE_LIST_END: u8 = 0x03;
    pub const DIR_HASHES: u8 = 0x04;
    pub const WANT_DIRS: u8 = 0x05;
    pub const TOTALS: u8 = 0x06;
    pub const MISSING_ARGS: u8 = 0x07;
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
    // Issue 18, scattered deltas:
    pub const GAP_SUMS: u8 = 0x1e;
    pub const GAP_DATA: u8 = 0x1f;
    pub const DONE: u8 = 0x20;
    pub const KEEP_ALIVE: u8 = 0x23;
    pub const REPORT: u8 = 0x22;
    pub const INFO: u8 = 0x24;
    pub const SUMMARY: u8 = 0x21;
    pub const SYNCED: u8 = 0x25;
    // Issue 18, streaming list:
    pub const SEGMENT: u8 = 0x26;
    pub const ROUND_END: u8 = 0x27;
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
                // Issue 18, streaming list:
                Frame::Segment {
                    parent,
                    base,
                    count,
                } => {
                    w.u32(*parent);
                    w.u32(*base);
                    w.u32(*count);
                    ty::SEGMENT
                }
                Frame::RoundEnd { count } => {
                    w.u32(*count);
                    ty::ROUND_END
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
                Frame::MissingArgs(paths) => {
                    w.u32(paths.len() as u32);
                    for path in paths {
                        w.bytes16(path);
                    }
                    ty::MISSING_ARGS
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
                // Issue 18, scattered deltas:
                Frame::GapSums {
                    ndx,
                    first,
                    count,
                    block,
                    sums,
                } => {
                    w.u32(*ndx);
                    w.u32(*first);
                    w.u32(*count);
                    w.u32(*block);
                    w.u32(sums.len() as u32);
                    for (weak, strong) in sums {
                        w.u32(*weak);
                        w.u32(*strong);
                    }
                    ty::GAP_SUMS
                }
                Frame::GapData { ndx, ops } => {
                    use crate::merkle::gapsum::GapOp;
                    w.u32(*ndx);
                    w.u32(ops.len() as u32);
                    for op in ops {
                        match op {
                            GapOp::Literal(bytes) => {
                                w.u8(0);
                                w.bytes32(bytes);
                            }
                            GapOp::Copy { block, count } => {
                                w.u8(1);
                                w.u32(*block);
                                w.u32(*count);
                            }
                        }
                    }
                    ty::GAP_DATA
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
                Frame::Synced(files) => {
                    w.u32(files.len() as u32);
                    for &(ndx, dev, ino) in files {
                        w.u32(ndx);
                        w.u64(dev);
                        w.u64(ino);
                    }
                    ty::SYNCED
                }
                Frame::Info(message) => {
                    w.bytes32(message.as_bytes());
                    ty::INFO
                }
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

    // Issue 18, scattered deltas:
    /// Bytes this frame takes on the wire, header included (before any compression).
    pub fn wire_len(&self) -> usize {
        match self {
            Frame::Data { bytes, .. } => HEADER_LEN + 4 + bytes.len(),
            _ => {
                let mut v = Vec::new();
                self.encode(&mut v);
                v.len()
            }
        }
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
            // Issue 18, streaming list:
            ty::SEGMENT => {
                let parent = r.u32("segment parent")?;
                let base = r.u32("segment base")?;
                let count = r.u32("segment count")?;
                bound(base as u64, MAX_FILES as u64, "segment base")?;
                bound(count as u64, MAX_FILES as u64, "segment count")?;
                if parent != ROOT_SEGMENT && parent >= base {
                    return Err(DecodeError::invalid(
                        "segment parent",
                        "not an entry sent before the segment",
                    ));
                }
                Frame::Segment {
                    parent,
                    base,
                    count,
                }
            }
            ty::ROUND_END => {
                let count = r.u32("count")?;
                bound(count as u64, MAX_FILES as u64, "file count")?;
                Frame::RoundEnd { count }
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
            ty::MISSING_ARGS => {
                let n = r.u32("missing count")? as usize;
                bound(n as u64, MAX_MISSING_ARGS as u64, "missing count")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let path = rel_path(&mut r, "missing argument")?;
                    if path == b"." {
                        return Err(DecodeError::invalid("missing argument", "the root"));
                    }
                    v.push(path);
                }
                Frame::MissingArgs(v)
            }
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
            // Issue 18, scattered deltas:
            ty::GAP_SUMS => {
                use crate::merkle::gapsum::{MAX_BLOCK, MIN_BLOCK};
                let ndx = r.u32("ndx")?;
                let first = r.u32("gap first")?;
                let count = r.u32("gap count")?;
                if count == 0 {
                    return Err(DecodeError::invalid("gap sums", "a gap of no chunks"));
                }
                bound(count as u64, MAX_FETCH as u64, "gap count")?;
                let block = r.u32("gap block")?;
                if !(MIN_BLOCK..=MAX_BLOCK).contains(&block) {
                    return Err(DecodeError::invalid(
                        "gap sums",
                        format!("block length {block}"),
                    ));
                }
                let n = r.u32("gap block count")? as u64;
                bound(n * block as u64, MAX_GAP_OLD, "gap old bytes")?;
                let mut sums = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    sums.push((r.u32("weak sum")?, r.u32("strong sum")?));
                }
                Frame::GapSums {
                    ndx,
                    first,
                    count,
                    block,
                    sums,
                }
            }
            ty::GAP_DATA => {
                use crate::merkle::gapsum::GapOp;
                let ndx = r.u32("ndx")?;
                let n = r.u32("gap op count")? as usize;
                bound(n as u64, MAX_GAP_OPS as u64, "gap op count")?;
                let mut ops = Vec::with_capacity(n);
                for _ in 0..n {
                    ops.push(match r.u8("gap op")? {
                        0 => {
                            GapOp::Literal(r.bytes32(MAX_GAP_NEW as usize, "gap literal")?.to_vec())
                        }
                        1 => GapOp::Copy {
                            block: r.u32("gap copy block")?,
                            count: r.u32("gap copy count")?,
                        },
                        k => return Err(DecodeError::invalid("gap data", format!("op {k}"))),
                    });
                }
                Frame::GapData { ndx, ops }
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
            ty::SYNCED => {
                let n = r.u32("synced count")? as usize;
                bound(n as u64, MAX_SYNCED as u64, "synced count")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push((r.u32("ndx")?, r.u64("dev")?, r.u64("ino")?));
                }
                Frame::Synced(v)
            }
            ty::INFO => Frame::Info(lossy(r.bytes32(MAX_MESSAGE, "message")?)),
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
    rel_path(r, "directory path")
}

/// A relative path in the destination (checked: no `..`, not absolute), named `what` in errors.
fn rel_path(r: &mut WireReader<'_>, what: &'static str) -> Result<Vec<u8>, DecodeError> {
    let path = r.bytes16(MAX_PATH, what)?.to_vec();
    validate_rel_path(&path).map_err(|why| {
        DecodeError::invalid(what, format!("{why}: {:?}", String::from_utf8_lossy(&path)))
    })?;
    Ok(path)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const HAS_CHECKSUM: u8 = 1;
/// In the same byte: a directory whose contents are not listed (a mount point under `-x`).
const NO_CONTENT: u8 = 2;

fn encode_entry(w: &mut WireWriter<'_>, e: &FileEntry) {
    w.bytes16(&e.path);
    w.u8(e.kind.code());
    w.u32(u32::from(e.perms));
    w.u64(e.size);
    w.i64(e.mtime);
    w.u32(e.mtime_nsec);
    w.u32(e.uid());
    w.u32(e.gid());
    w.bytes8(e.user());
    w.bytes8(e.group());
    w.u64(e.rdev());
    w.bytes16(e.link_target());
    w.u32(e.hardlink_group());
    let no_content = if e.no_content && e.kind == FileKind::Dir {
        NO_CONTENT
    } else {
        0
    };
    match e.checksum() {
        Some(h) => {
            w.u8(HAS_CHECKSUM | no_content);
            w.raw(&h[..]);
        }
        None => w.u8(no_content),
    }
    w.u16(e.xattrs().len().min(MAX_XATTRS) as u16);
    for x in e.xattrs().iter().take(MAX_XATTRS) {
        w.bytes8(&x.name);
        w.bytes32(&x.value[..x.value.len().min(MAX_XATTR_VALUE)]);
    }
}

fn decode_entry(r: &mut WireReader<'_>) -> Result<FileEntry, DecodeError> {
    let path = r.bytes16(MAX_PATH, "path")?;
    validate_rel_path(path).map_err(|why| {
        DecodeError::invalid(
            "path",
            format!("{why}: {:?}", String::from_utf8_lossy(path)),
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
    let user = Name::new(r.bytes8("user")?);
    let group = Name::new(r.bytes8("group")?);
    let rdev = r.u64("rdev")?;
    let link_target = r.bytes16(MAX_PATH, "link target")?.to_vec();
    if kind == FileKind::Symlink && (link_target.is_empty() || link_target.contains(&0)) {
        return Err(DecodeError::invalid("link target", "empty or contains NUL"));
    }
    let hardlink_group = r.u32("hardlink group")?;
    let flags = r.u8("entry flags")?;
    if flags & !(HAS_CHECKSUM | NO_CONTENT) != 0
        || (flags & NO_CONTENT != 0 && kind != FileKind::Dir)
    {
        return Err(DecodeError::invalid("entry flags", flags));
    }
    let checksum = if flags & HAS_CHECKSUM != 0 {
        Some(r.fixed::<32>("checksum")?)
    } else {
        None
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
    let mut e = FileEntry::new(path, kind);
    e.perms = perms as u16; // checked above: at most 0o7777
    e.size = size;
    e.mtime = mtime;
    e.mtime_nsec = mtime_nsec;
    e.set_owner(Owner::new(uid, gid, user, group));
    e.set_rare(Some(Box::new(Rare {
        rdev,
        link_target,
        xattrs,
        hardlink_group,
        checksum,
    })));
    e.no_content = flags & NO_CONTENT != 0;
    Ok(e)
}
