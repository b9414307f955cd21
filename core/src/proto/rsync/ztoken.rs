//! rsync's compressed token streams (`token.c`): with **zstd** (`send_zstd_token`,
//! `recv_zstd_token`) file data is one zstd stream per session, flushed at the end of each file
//! and cut into `DEFLATED_DATA` blocks; with **lz4** (`send_compressed_token`,
//! `recv_compressed_token`) each `DEFLATED_DATA` block is an independent LZ4 block of at most
//! 16,383 input bytes. Both send block matches as relative or absolute token numbers with run
//! lengths (`recv_compressed_token_num`) and `END_FLAG` after each file.
//!
//! Owns the framing and the token arithmetic. The zstd contexts live for the whole session, as
//! upstream's do, so one [`ZstdTokenWriter`] and one [`ZstdTokenReader`] serve every file.

use std::io;

use zstd::stream::raw::{Decoder, Encoder, InBuffer, Operation, OutBuffer};

use super::codec::{read_i32, read_u8, ReadError, Source};
use crate::proto::DecodeError;

const END_FLAG: u8 = 0;
const TOKEN_LONG: u8 = 0x20;
const TOKENRUN_LONG: u8 = 0x21;
const DEFLATED_DATA: u8 = 0x40;
const TOKEN_REL: u8 = 0x80;
const TOKENRUN_REL: u8 = 0xc0;
/// Largest compressed block (14 bits of length).
const MAX_DATA_COUNT: usize = 16383;
const MAX_TOKEN_INDEX: i32 = 0x7fff_fffe;

/// A negotiated compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at this level.
    Zstd(i32),
    /// LZ4 blocks.
    Lz4,
}

impl Compression {
    /// By wire name, at `level` for zstd.
    pub fn from_name(n: &[u8], level: i32) -> Option<Compression> {
        match n {
            b"zstd" => Some(Compression::Zstd(level)),
            b"lz4" => Some(Compression::Lz4),
            _ => None,
        }
    }
}

/// Largest LZ4 block output accepted (upstream's `MAX(LZ4_compressBound(CHUNK_SIZE),
/// MAX_DATA_COUNT+2)`).
const LZ4_MAX_OUT: usize = 32 * 1024 + 32 * 1024 / 255 + 16;

fn zstd_err(e: io::Error) -> ReadError {
    DecodeError::invalid("zstd data", e).into()
}

/// The sending side: literal data and block matches in, `DEFLATED_DATA` blocks and token
/// runs out (`send_zstd_token`, `send_compressed_token`).
pub struct ZstdTokenWriter {
    enc: Option<Encoder<'static>>,
    buf: Vec<u8>,
    /// Literal data went into the encoder since it was last flushed.
    unflushed: bool,
    /// The run of consecutive block matches not yet written: first and last block.
    run: Option<(u32, u32)>,
    /// The last block of the last run written in this file (0 at its start).
    last_run_end: u32,
}

impl std::fmt::Debug for ZstdTokenWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZstdTokenWriter")
    }
}

impl ZstdTokenWriter {
    /// A writer for `c`.
    pub fn new(c: Compression) -> io::Result<Self> {
        Ok(ZstdTokenWriter {
            enc: match c {
                Compression::Zstd(level) => Some(Encoder::new(level)?),
                Compression::Lz4 => None,
            },
            buf: vec![0u8; MAX_DATA_COUNT.max(LZ4_MAX_OUT)],
            unflushed: false,
            run: None,
            last_run_end: 0,
        })
    }

    /// Write the pending run of block matches: relative to the last run's end when close
    /// enough, else the block's number; a run of more than one with its length.
    fn put_run(&mut self, out: &mut Vec<u8>) {
        let Some((start, last)) = self.run.take() else {
            return;
        };
        let n = last - start;
        match start.checked_sub(self.last_run_end).filter(|r| *r <= 63) {
            Some(r) => out.push(if n == 0 { TOKEN_REL } else { TOKENRUN_REL } + r as u8),
            None => {
                out.push(if n == 0 { TOKEN_LONG } else { TOKENRUN_LONG });
                out.extend_from_slice(&(start as i32).to_le_bytes());
            }
        }
        if n != 0 {
            out.push(n as u8);
            out.push((n >> 8) as u8);
        }
        self.last_run_end = last;
    }

    /// Everything the encoder holds, out (the receiver must have a match's preceding
    /// literal data before the match).
    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if !std::mem::take(&mut self.unflushed) {
            return Ok(());
        }
        while let Some(enc) = self.enc.as_mut() {
            let mut o = OutBuffer::around(&mut self.buf[..MAX_DATA_COUNT]);
            let left = enc.flush(&mut o)?;
            let n = o.pos();
            Self::emit(&self.buf[..n], out);
            if left == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Block `token` of the receiver's old file comes next: consecutive blocks travel as one
    /// run (of at most 65,536).
    pub fn block(&mut self, token: u32, out: &mut Vec<u8>) -> io::Result<()> {
        self.flush(out)?;
        match self.run {
            Some((start, last)) if token == last.wrapping_add(1) && token - start < 65536 => {
                self.run = Some((start, token));
            }
            _ => {
                self.put_run(out);
                self.run = Some((token, token));
            }
        }
        Ok(())
    }

    fn emit(buf: &[u8], out: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        out.push(DEFLATED_DATA + (buf.len() >> 8) as u8);
        out.push(buf.len() as u8);
        out.extend_from_slice(buf);
    }

    /// Compress `data` (part of the current file) into `out`.
    pub fn literal(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.put_run(out);
        let Some(enc) = self.enc.as_mut() else {
            // LZ4: independent blocks of at most 16,383 input bytes, halved until the output
            // fits a block.
            let mut rest = data;
            while !rest.is_empty() {
                let mut take = rest.len().min(MAX_DATA_COUNT);
                loop {
                    let n = lz4_flex::block::compress_into(&rest[..take], &mut self.buf)
                        .map_err(io::Error::other)?;
                    if n <= MAX_DATA_COUNT {
                        Self::emit(&self.buf[..n], out);
                        break;
                    }
                    take /= 2;
                }
                rest = &rest[take..];
            }
            return Ok(());
        };
        let mut input = InBuffer::around(data);
        while input.pos < data.len() {
            let mut o = OutBuffer::around(&mut self.buf[..MAX_DATA_COUNT]);
            enc.run(&mut input, &mut o)?;
            let n = o.pos();
            Self::emit(&self.buf[..n], out);
        }
        self.unflushed = true;
        Ok(())
    }

    /// End the current file: the last run, the stream flushed, `END_FLAG`.
    pub fn end_file(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.put_run(out);
        self.unflushed = true;
        self.flush(out)?;
        out.push(END_FLAG);
        self.last_run_end = 0;
        Ok(())
    }
}

/// What the next token of a file is.
#[derive(Debug, PartialEq, Eq)]
pub enum Token {
    /// Literal bytes (appended to the caller's buffer).
    Literal,
    /// Copy block `n` of the old file.
    Block(u32),
    /// The file's data is complete.
    End,
}

/// The receiving side: tokens and decompressed literal data.
pub struct ZstdTokenReader {
    /// `None`: LZ4 blocks.
    dec: Option<Decoder<'static>>,
    cbuf: Vec<u8>,
    cpos: usize,
    inflating: bool,
    rx_token: i32,
    rx_run: i32,
    out: Vec<u8>,
}

impl std::fmt::Debug for ZstdTokenReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZstdTokenReader")
    }
}

impl ZstdTokenReader {
    /// A reader for a session compressed with `c`.
    pub fn new(c: Compression) -> io::Result<Self> {
        Ok(ZstdTokenReader {
            dec: match c {
                Compression::Zstd(_) => Some(Decoder::new()?),
                Compression::Lz4 => None,
            },
            cbuf: Vec::new(),
            cpos: 0,
            inflating: false,
            rx_token: 0,
            rx_run: 0,
            out: vec![0u8; 256 * 1024],
        })
    }

    fn bad(detail: &str) -> ReadError {
        DecodeError::invalid("compressed token", detail).into()
    }

    /// The next token of the current file; literal bytes are appended to `data`.
    pub fn next(&mut self, s: &mut impl Source, data: &mut Vec<u8>) -> Result<Token, ReadError> {
        loop {
            if self.rx_run > 0 {
                if self.rx_token >= MAX_TOKEN_INDEX {
                    return Err(Self::bad("run past the largest token"));
                }
                self.rx_token += 1;
                self.rx_run -= 1;
                return Ok(Token::Block(self.rx_token as u32));
            }
            if self.inflating && self.dec.is_none() {
                self.inflating = false;
                let n = lz4_flex::block::decompress_into(&self.cbuf, &mut self.out[..LZ4_MAX_OUT])
                    .map_err(|e| ReadError::from(DecodeError::invalid("lz4 data", e)))?;
                data.extend_from_slice(&self.out[..n]);
                return Ok(Token::Literal);
            }
            if let (true, Some(dec)) = (self.inflating, self.dec.as_mut()) {
                let mut input = InBuffer::around(&self.cbuf[self.cpos..]);
                let mut o = OutBuffer::around(&mut self.out[..]);
                dec.run(&mut input, &mut o).map_err(zstd_err)?;
                let n = o.pos();
                if n == 0 && input.pos == 0 && self.cpos < self.cbuf.len() {
                    return Err(Self::bad("zstd data makes no progress"));
                }
                self.cpos += input.pos;
                if self.cpos == self.cbuf.len() && n < self.out.len() {
                    self.inflating = false;
                }
                if n > 0 {
                    data.extend_from_slice(&self.out[..n]);
                    return Ok(Token::Literal);
                }
                continue;
            }
            let flag = read_u8(s)?;
            if flag & 0xc0 == DEFLATED_DATA {
                let n = (usize::from(flag & 0x3f) << 8) + usize::from(read_u8(s)?);
                self.cbuf.resize(n, 0);
                s.read_exact(&mut self.cbuf)?;
                self.cpos = 0;
                self.inflating = true;
                continue;
            }
            if flag == END_FLAG {
                self.rx_token = 0;
                return Ok(Token::End);
            }
            let run = if flag & TOKEN_REL != 0 {
                let incr = i32::from(flag & 0x3f);
                if self.rx_token > MAX_TOKEN_INDEX - incr {
                    return Err(Self::bad("relative token past the largest"));
                }
                self.rx_token += incr;
                (flag >> 6) & 1 != 0
            } else if flag == TOKEN_LONG || flag == TOKENRUN_LONG {
                let t = read_i32(s)?;
                if !(0..=MAX_TOKEN_INDEX).contains(&t) {
                    return Err(Self::bad("token out of range"));
                }
                self.rx_token = t;
                flag & 1 != 0
            } else {
                return Err(Self::bad("unknown flag"));
            };
            if run {
                let r = i32::from(read_u8(s)?) + (i32::from(read_u8(s)?) << 8);
                if r <= 0 || self.rx_token > MAX_TOKEN_INDEX - r {
                    return Err(Self::bad("bad run length"));
                }
                self.rx_run = r;
            }
            return Ok(Token::Block(self.rx_token as u32));
        }
    }
}

/// The compression names we offer in the negotiation, most preferred first.
pub const COMPRESS_NAMES: &str = "zstd lz4";

#[cfg(test)]
mod tests {
    use super::*;

    /// What a delta sends: literal data and block matches, in order; consecutive blocks as
    /// runs (relative, long, and a run broken by literal data), for two files in a row.
    #[test]
    fn literal_and_block_tokens_round_trip() {
        #[derive(Debug, PartialEq)]
        enum Piece {
            Lit(Vec<u8>),
            Block(u32),
        }
        use Piece::{Block, Lit};
        let file = || {
            vec![
                Lit(b"head ".repeat(300)),
                Block(0),
                Block(1),
                Block(2),
                Lit(b"middle".to_vec()),
                Block(3),
                Block(70),
                Block(5),
                Block(6),
                Lit(b"tail".repeat(5000)),
            ]
        };
        for c in [Compression::Zstd(3), Compression::Lz4] {
            let mut w = ZstdTokenWriter::new(c).unwrap();
            let mut wire = Vec::new();
            for _ in 0..2 {
                for p in file() {
                    match p {
                        Lit(d) => w.literal(&d, &mut wire).unwrap(),
                        Block(b) => w.block(b, &mut wire).unwrap(),
                    }
                }
                w.end_file(&mut wire).unwrap();
            }
            let mut r = ZstdTokenReader::new(c).unwrap();
            let mut src = wire.as_slice();
            for _ in 0..2 {
                let mut got: Vec<Piece> = Vec::new();
                loop {
                    let mut data = Vec::new();
                    match r.next(&mut src, &mut data).unwrap() {
                        Token::Literal => match got.last_mut() {
                            Some(Lit(d)) => d.extend_from_slice(&data),
                            _ => got.push(Lit(data)),
                        },
                        Token::Block(b) => got.push(Block(b)),
                        Token::End => break,
                    }
                }
                assert_eq!(got, file(), "{c:?}");
            }
            assert!(src.is_empty());
        }
    }

    #[test]
    fn files_round_trip_through_one_session() {
        for c in [Compression::Zstd(3), Compression::Lz4] {
            let mut w = ZstdTokenWriter::new(c).unwrap();
            let files: Vec<Vec<u8>> = vec![
                b"hello hello hello hello".repeat(1000),
                Vec::new(),
                (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect(),
            ];
            let mut wire = Vec::new();
            for f in &files {
                for part in f.chunks(7000) {
                    w.literal(part, &mut wire).unwrap();
                }
                w.end_file(&mut wire).unwrap();
            }
            assert!(wire.len() < files.iter().map(Vec::len).sum::<usize>() / 2);
            let mut r = ZstdTokenReader::new(c).unwrap();
            let mut src = wire.as_slice();
            for f in &files {
                let mut got = Vec::new();
                loop {
                    match r.next(&mut src, &mut got).unwrap() {
                        Token::Literal => {}
                        Token::End => break,
                        Token::Block(b) => panic!("block {b}"),
                    }
                }
                assert_eq!(&got, f);
            }
            assert!(src.is_empty());
        }
    }

    #[test]
    fn token_runs_follow_upstream_arithmetic() {
        // REL +3 (block 3); RUN_REL +2 with a run of 2 (blocks 5, 6, 7); LONG 1000; END.
        let bytes = [
            TOKEN_REL | 3,
            TOKENRUN_REL | 2,
            2,
            0,
            TOKEN_LONG,
            0xe8,
            0x03,
            0,
            0,
            END_FLAG,
        ];
        let mut r = ZstdTokenReader::new(Compression::Zstd(3)).unwrap();
        let mut src = bytes.as_slice();
        let mut d = Vec::new();
        let mut got = Vec::new();
        loop {
            match r.next(&mut src, &mut d).unwrap() {
                Token::End => break,
                t => got.push(t),
            }
        }
        assert_eq!(
            got,
            vec![
                Token::Block(3),
                Token::Block(5),
                Token::Block(6),
                Token::Block(7),
                Token::Block(1000)
            ]
        );
        // Hostile: a negative long token, a zero run, garbage compressed data.
        for bad in [
            &[TOKEN_LONG, 0xff, 0xff, 0xff, 0xff][..],
            &[TOKENRUN_REL, 0, 0],
            &[DEFLATED_DATA, 4, 1, 2, 3, 4],
        ] {
            let mut r = ZstdTokenReader::new(Compression::Zstd(3)).unwrap();
            let mut src = bad;
            let mut d = Vec::new();
            let mut failed = false;
            for _ in 0..4 {
                if r.next(&mut src, &mut d).is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(failed, "{bad:?}");
        }
    }
}
