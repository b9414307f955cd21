//! Frames out of a byte stream that arrives in pieces ([`FrameDecoder`]), and the `Compressed`
//! wrapper (zstd, bounded by its declared size). Not any one frame's layout (`codec`).

use super::codec::ty;
use super::{Frame, HEADER_LEN, MAX_FRAME_PAYLOAD};
use crate::proto::wire::{bound, DecodeError, WireReader};

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
    matches!(t, ty::FILE_ENTRIES | ty::DATA | ty::GAP_DATA)
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
