//! rsync's wire primitives, byte for byte as upstream's `io.c` defines them: 32-bit
//! little-endian ints, rsync's own variable-length ints (`write_varint`/`write_varlong`, not
//! LEB128), `vstring`s, file-list indexes (`write_ndx`: differences from the previous index),
//! and the multiplexing header (`MPLEX_BASE` + tag in the top byte, 24-bit length).
//!
//! Owns the encodings only. Readers pull from a [`Source`] — a slice in tests and fuzzers, the
//! demultiplexed stream in the driver — and every value is bounded before it is used.

use std::io;

use crate::proto::DecodeError;

/// A decoding failure: bytes that break the protocol, or the stream's own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer sent something the protocol does not allow.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Where the codecs read from.
pub trait Source {
    /// Fill `buf` completely, or fail.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ReadError>;
}

impl Source for &[u8] {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        if self.len() < buf.len() {
            return Err(DecodeError::Truncated("rsync stream").into());
        }
        let (head, tail) = self.split_at(buf.len());
        buf.copy_from_slice(head);
        *self = tail;
        Ok(())
    }
}

/// Read one byte.
pub fn read_u8(s: &mut impl Source) -> Result<u8, ReadError> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}

/// `read_int`: 4 bytes, little-endian, signed.
pub fn read_i32(s: &mut impl Source) -> Result<i32, ReadError> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

/// `read_shortint`: 2 bytes, little-endian, unsigned.
pub fn read_u16(s: &mut impl Source) -> Result<u16, ReadError> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b)?;
    Ok(u16::from_le_bytes(b))
}

/// `read_longint`: an int, or -1 followed by 8 bytes for values outside 0..=i32::MAX.
pub fn read_longint(s: &mut impl Source) -> Result<i64, ReadError> {
    let v = read_i32(s)?;
    if v != -1 {
        return Ok(i64::from(v));
    }
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(i64::from_le_bytes(b))
}

/// Extra bytes after the first of a varint, by the first byte's top bits (`int_byte_extra`).
fn extra_bytes(first: u8) -> usize {
    match first {
        0x00..=0x7f => 0,
        0x80..=0xbf => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        0xf8..=0xfb => 5,
        0xfc..=0xff => 6,
    }
}

/// `read_varint`.
pub fn read_varint(s: &mut impl Source) -> Result<i32, ReadError> {
    let first = read_u8(s)?;
    let extra = extra_bytes(first);
    let mut b = [0u8; 5];
    if extra == 0 {
        b[0] = first;
    } else {
        if extra >= 5 {
            return Err(DecodeError::invalid("varint", "overflow").into());
        }
        s.read_exact(&mut b[..extra])?;
        let bit = 1u16 << (8 - extra);
        b[extra] = first & (bit - 1) as u8;
    }
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// `read_varlong` with `min_bytes` (upstream uses 3 and 4).
pub fn read_varlong(s: &mut impl Source, min_bytes: usize) -> Result<i64, ReadError> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head[..min_bytes])?;
    let mut b = [0u8; 9];
    b[..min_bytes - 1].copy_from_slice(&head[1..min_bytes]);
    let extra = extra_bytes(head[0]);
    if extra == 0 {
        b[min_bytes - 1] = head[0];
    } else {
        if min_bytes + extra > 9 {
            return Err(DecodeError::invalid("varlong", "overflow").into());
        }
        s.read_exact(&mut b[min_bytes - 1..min_bytes - 1 + extra])?;
        let bit = 1u16 << (8 - extra);
        b[min_bytes + extra - 1] = head[0] & (bit - 1) as u8;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    Ok(i64::from_le_bytes(v))
}

/// `read_vstring`: a length of one byte (or two, high bit set) and the bytes; at most `max`.
pub fn read_vstring(s: &mut impl Source, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut len = usize::from(read_u8(s)?);
    if len & 0x80 != 0 {
        len = (len & 0x7f) * 0x100 + usize::from(read_u8(s)?);
    }
    if len > max {
        return Err(DecodeError::TooLarge {
            what: "vstring",
            got: len as u64,
            max: max as u64,
        }
        .into());
    }
    let mut v = vec![0u8; len];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// `write_int`.
pub fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// `write_shortint`.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// `write_varint`.
pub fn put_varint(out: &mut Vec<u8>, x: i32) {
    let b = x.to_le_bytes();
    let mut cnt = 4;
    while cnt > 1 && b[cnt - 1] == 0 {
        cnt -= 1;
    }
    let bit: u16 = 1 << (8 - cnt);
    if u16::from(b[cnt - 1]) >= bit {
        out.push(!((bit - 1) as u8));
        out.extend_from_slice(&b[..cnt]);
    } else if cnt > 1 {
        out.push(b[cnt - 1] | !((bit * 2 - 1) as u8));
        out.extend_from_slice(&b[..cnt - 1]);
    } else {
        out.push(b[0]);
    }
}

/// `write_varlong` with `min_bytes` (upstream uses 3 and 4).
pub fn put_varlong(out: &mut Vec<u8>, x: i64, min_bytes: usize) {
    let b = x.to_le_bytes();
    let mut cnt = 8;
    while cnt > min_bytes && b[cnt - 1] == 0 {
        cnt -= 1;
    }
    let bit: u16 = 1 << (7 + min_bytes - cnt);
    if u16::from(b[cnt - 1]) >= bit {
        out.push(!((bit - 1) as u8));
        out.extend_from_slice(&b[..cnt]);
    } else if cnt > min_bytes {
        out.push(b[cnt - 1] | !((bit * 2 - 1) as u8));
        out.extend_from_slice(&b[..cnt - 1]);
    } else {
        out.push(b[cnt - 1]);
        out.extend_from_slice(&b[..cnt - 1]);
    }
}

/// `write_vstring` (at most 0x7fff bytes; longer is cut, which callers never need).
pub fn put_vstring(out: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(0x7fff)];
    if s.len() > 0x7f {
        out.push((s.len() / 0x100 + 0x80) as u8);
    }
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// `NDX_DONE`: the end of a phase (or of the file list).
pub const NDX_DONE: i32 = -1;

/// The state `write_ndx`/`read_ndx` keep per direction: indexes travel as differences from the
/// previous one (positive and negative kept apart) from protocol 30 on; plain ints before.
#[derive(Debug, Clone, Copy)]
pub struct NdxCodec {
    protocol: u8,
    prev_positive: i32,
    prev_negative: i32,
}

impl NdxCodec {
    /// A fresh codec for `protocol`.
    pub fn new(protocol: u8) -> Self {
        NdxCodec {
            protocol,
            prev_positive: -1,
            prev_negative: 1,
        }
    }

    /// `write_ndx`.
    pub fn put(&mut self, out: &mut Vec<u8>, ndx: i32) {
        if self.protocol < 30 {
            put_i32(out, ndx);
            return;
        }
        let (num, diff) = if ndx >= 0 {
            let diff = ndx.wrapping_sub(self.prev_positive);
            self.prev_positive = ndx;
            (ndx, diff)
        } else if ndx == NDX_DONE {
            out.push(0);
            return;
        } else {
            out.push(0xff);
            let num = ndx.wrapping_neg();
            let diff = num.wrapping_sub(self.prev_negative);
            self.prev_negative = num;
            (num, diff)
        };
        if diff > 0 && diff < 0xfe {
            out.push(diff as u8);
        } else if !(0..=0x7fff).contains(&diff) {
            out.extend_from_slice(&[
                0xfe,
                ((num >> 24) as u8) | 0x80,
                num as u8,
                (num >> 8) as u8,
                (num >> 16) as u8,
            ]);
        } else {
            out.extend_from_slice(&[0xfe, (diff >> 8) as u8, diff as u8]);
        }
    }

    /// `read_ndx`.
    pub fn read(&mut self, s: &mut impl Source) -> Result<i32, ReadError> {
        if self.protocol < 30 {
            return read_i32(s);
        }
        let mut b = read_u8(s)?;
        let negative = match b {
            0xff => {
                b = read_u8(s)?;
                true
            }
            0 => return Ok(NDX_DONE),
            _ => false,
        };
        let prev = if negative {
            self.prev_negative
        } else {
            self.prev_positive
        };
        let num: u32 = if b == 0xfe {
            let mut two = [0u8; 2];
            s.read_exact(&mut two)?;
            if two[0] & 0x80 != 0 {
                let mut rest = [0u8; 2];
                s.read_exact(&mut rest)?;
                u32::from_le_bytes([two[1], rest[0], rest[1], two[0] & 0x7f])
            } else {
                (u32::from(two[0]) << 8)
                    .wrapping_add(u32::from(two[1]))
                    .wrapping_add(prev as u32)
            }
        } else {
            u32::from(b).wrapping_add(prev as u32)
        };
        if num > i32::MAX as u32 {
            return Err(DecodeError::invalid("file index", num).into());
        }
        let num = num as i32;
        if negative {
            self.prev_negative = num;
            Ok(-num)
        } else {
            self.prev_positive = num;
            Ok(num)
        }
    }
}

/// Multiplexed message tags (`MSG_*` in upstream's `rsync.h`).
pub mod msg {
    /// File-list and file data.
    pub const DATA: u8 = 0;
    /// A fatal transfer error (sent by the receiver).
    pub const ERROR_XFER: u8 = 1;
    /// Information for the log.
    pub const INFO: u8 = 2;
    /// A non-fatal error.
    pub const ERROR: u8 = 3;
    /// A warning.
    pub const WARNING: u8 = 4;
    /// A socket error.
    pub const ERROR_SOCKET: u8 = 5;
    /// For the log file only.
    pub const LOG: u8 = 6;
    /// For the client only.
    pub const CLIENT: u8 = 7;
    /// A UTF-8 error.
    pub const ERROR_UTF8: u8 = 8;
    /// Redo a file (receiver to generator).
    pub const REDO: u8 = 9;
    /// Statistics (receiver to generator).
    pub const STATS: u8 = 10;
    /// The sender's I/O error flags.
    pub const IO_ERROR: u8 = 22;
    /// I/O timeout change.
    pub const IO_TIMEOUT: u8 = 33;
    /// A keep-alive.
    pub const NOOP: u8 = 42;
    /// The remote side is exiting with an error.
    pub const ERROR_EXIT: u8 = 86;
    /// A file was transferred successfully.
    pub const SUCCESS: u8 = 100;
    /// A file was deleted.
    pub const DELETED: u8 = 101;
    /// A file could not be sent.
    pub const NO_SEND: u8 = 102;
}

/// `MPLEX_BASE`: added to the tag in a multiplexed header's top byte.
pub const MPLEX_BASE: u8 = 7;
/// The largest multiplexed payload (24-bit length).
pub const MAX_MPLEX: usize = 0x00ff_ffff;

/// The 4-byte header of a multiplexed message.
pub fn mplex_header(tag: u8, len: usize) -> [u8; 4] {
    let v = ((u32::from(MPLEX_BASE) + u32::from(tag)) << 24) | (len.min(MAX_MPLEX) as u32);
    v.to_le_bytes()
}

/// Split a multiplexed header into (tag, length); a top byte below `MPLEX_BASE` is an error.
pub fn parse_mplex_header(h: [u8; 4]) -> Result<(u8, usize), DecodeError> {
    let v = u32::from_le_bytes(h);
    let top = (v >> 24) as u8;
    if top < MPLEX_BASE {
        return Err(DecodeError::invalid(
            "multiplexed header",
            format!("tag byte {top:#x} (not a multiplexed stream?)"),
        ));
    }
    Ok((top - MPLEX_BASE, (v & 0x00ff_ffff) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(x: i32) -> Vec<u8> {
        let mut v = Vec::new();
        put_varint(&mut v, x);
        v
    }

    #[test]
    fn varints_match_upstream_bytes_and_round_trip() {
        // Worked through upstream's write_varint by hand.
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(0x7f), [0x7f]);
        assert_eq!(varint(0x80), [0x80, 0x80]);
        assert_eq!(varint(0x3fff), [0xbf, 0xff]);
        assert_eq!(varint(0x4000), [0xc0, 0x00, 0x40]);
        assert_eq!(varint(-1), [0xf0, 0xff, 0xff, 0xff, 0xff]);
        let mut x: u64 = 88172645463325252;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x as i32) >> (x % 31);
            let enc = varint(v);
            assert_eq!(read_varint(&mut enc.as_slice()).unwrap(), v, "{v}");
            // Upstream uses 3 (sizes) and 4 (times).
            for min in [3usize, 4] {
                let l = (x as i64) >> (x % 63);
                let mut e = Vec::new();
                put_varlong(&mut e, l, min);
                assert_eq!(
                    read_varlong(&mut e.as_slice(), min).unwrap(),
                    l,
                    "{l} min {min}"
                );
            }
        }
    }

    #[test]
    fn varlongs_keep_min_bytes() {
        let mut e = Vec::new();
        put_varlong(&mut e, 5, 3);
        assert_eq!(e, [0x00, 0x05, 0x00]);
        let mut e = Vec::new();
        put_varlong(&mut e, 1_700_000_000, 4);
        assert_eq!(read_varlong(&mut e.as_slice(), 4).unwrap(), 1_700_000_000);
        assert_eq!(e.len(), 4);
    }

    #[test]
    fn ndx_differences_round_trip_across_every_form() {
        for protocol in [29u8, 30, 31, 32] {
            let seq = [
                0,
                1,
                2,
                300,
                301,
                40_000,
                5,
                NDX_DONE,
                -2,
                -101,
                -102,
                7,
                1 << 30,
            ];
            let mut w = NdxCodec::new(protocol);
            let mut out = Vec::new();
            for &n in &seq {
                w.put(&mut out, n);
            }
            let mut r = NdxCodec::new(protocol);
            let mut src = out.as_slice();
            for &n in &seq {
                assert_eq!(r.read(&mut src).unwrap(), n, "protocol {protocol}");
            }
            assert!(src.is_empty());
        }
        // The first index, 0, is one byte (diff 1 from -1); NDX_DONE a single zero.
        let mut out = Vec::new();
        let mut w = NdxCodec::new(31);
        w.put(&mut out, 0);
        w.put(&mut out, NDX_DONE);
        assert_eq!(out, [0x01, 0x00]);
    }

    #[test]
    fn hostile_values_are_errors() {
        // A varint announcing 6 extra bytes.
        assert!(read_varint(&mut [0xfcu8, 1, 2, 3, 4, 5, 6].as_slice()).is_err());
        // An index over i32::MAX.
        let mut r = NdxCodec::new(31);
        let mut src = [0xfeu8, 0xff, 0xff, 0xff, 0xff, 0x05].as_slice();
        assert_eq!(r.read(&mut src).unwrap(), i32::MAX);
        assert!(r.read(&mut src).is_err());
        // A vstring longer than allowed, and a truncated one.
        assert!(read_vstring(&mut [0x85u8, 0x00].as_slice(), 100).is_err());
        assert!(read_vstring(&mut [0x05u8, b'a'].as_slice(), 100).is_err());
        assert!(parse_mplex_header([0, 0, 0, 6]).is_err());
        assert_eq!(
            parse_mplex_header(mplex_header(msg::INFO, 12)).unwrap(),
            (msg::INFO, 12)
        );
    }
}
