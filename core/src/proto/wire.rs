//! Bounded little-endian primitives: [`WireWriter`] appends, [`WireReader`] consumes a slice.
//!
//! Every variable-length read takes its bound from the caller, so a hostile length can never
//! make us allocate or index past what the protocol allows.

use std::fmt;

/// A malformed or hostile input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length or count exceeds what the protocol allows.
    #[error("{what} too large: {got} > {max}")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// The value read.
        got: u64,
        /// The allowed maximum.
        max: u64,
    },
    /// A value that is not allowed where it appeared.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was being read.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Bytes left over after a complete value.
    #[error("{0} trailing bytes after frame")]
    Trailing(usize),
}

impl DecodeError {
    /// An [`DecodeError::Invalid`] with a message.
    pub fn invalid(what: &'static str, detail: impl fmt::Display) -> Self {
        DecodeError::Invalid {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Appends little-endian values to a buffer.
#[derive(Debug)]
pub struct WireWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> WireWriter<'a> {
    /// Write into `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        WireWriter { buf }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.out().push(v);
    }
    /// Two bytes.
    pub fn u16(&mut self, v: u16) {
        self.out().extend_from_slice(&v.to_le_bytes());
    }
    /// Four bytes.
    pub fn u32(&mut self, v: u32) {
        self.out().extend_from_slice(&v.to_le_bytes());
    }
    /// Eight bytes.
    pub fn u64(&mut self, v: u64) {
        self.out().extend_from_slice(&v.to_le_bytes());
    }
    /// Eight bytes, signed.
    pub fn i64(&mut self, v: i64) {
        self.out().extend_from_slice(&v.to_le_bytes());
    }
    /// Raw bytes, no length.
    pub fn raw(&mut self, v: &[u8]) {
        self.out().extend_from_slice(v);
    }
    /// A byte string with a one-byte length (caller guarantees `v.len() <= 255`; longer is cut).
    pub fn bytes8(&mut self, v: &[u8]) {
        let n = v.len().min(255);
        self.u8(n as u8);
        self.raw(&v[..n]);
    }
    /// A byte string with a two-byte length (longer than 65535 is cut; callers bound first).
    pub fn bytes16(&mut self, v: &[u8]) {
        let n = v.len().min(u16::MAX as usize);
        self.u16(n as u16);
        self.raw(&v[..n]);
    }
    /// A byte string with a four-byte length.
    pub fn bytes32(&mut self, v: &[u8]) {
        let n = v.len().min(u32::MAX as usize);
        self.u32(n as u32);
        self.raw(&v[..n]);
    }
}

/// Consumes little-endian values from a slice, checking every length.
#[derive(Debug, Clone)]
pub struct WireReader<'a> {
    data: &'a [u8],
}

impl<'a> WireReader<'a> {
    /// Read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        WireReader { data }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    /// Fail unless everything was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.data.len()))
        }
    }

    /// `n` raw bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.data.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// Two bytes.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    /// Four bytes.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// Eight bytes.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// Eight bytes, signed.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    /// A fixed-size array.
    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.array(what)
    }
    /// A one-byte-length byte string.
    pub fn bytes8(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u8(what)? as usize;
        self.take(n, what)
    }
    /// A two-byte-length byte string of at most `max` bytes.
    pub fn bytes16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u16(what)? as usize;
        bound(n as u64, max as u64, what)?;
        self.take(n, what)
    }
    /// A four-byte-length byte string of at most `max` bytes.
    pub fn bytes32(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        bound(n as u64, max as u64, what)?;
        self.take(n, what)
    }
}

/// Check `got <= max`.
pub fn bound(got: u64, max: u64, what: &'static str) -> Result<(), DecodeError> {
    if got > max {
        Err(DecodeError::TooLarge { what, got, max })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut buf = Vec::new();
        let mut w = WireWriter::new(&mut buf);
        w.u8(7);
        w.u32(0xdead_beef);
        w.i64(-5);
        w.bytes16(b"hello");
        let mut r = WireReader::new(&buf);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u32("b").unwrap(), 0xdead_beef);
        assert_eq!(r.i64("c").unwrap(), -5);
        assert!(matches!(
            r.clone().bytes16(4, "d"),
            Err(DecodeError::TooLarge { got: 5, max: 4, .. })
        ));
        assert_eq!(r.bytes16(5, "d").unwrap(), b"hello");
        r.finish().unwrap();
        assert_eq!(
            WireReader::new(&[1, 0]).u32("x"),
            Err(DecodeError::Truncated("x"))
        );
    }
}
