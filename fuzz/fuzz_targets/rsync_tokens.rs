//! Any bytes as rsync's compressed token stream (zstd or lz4 by the first byte): tokens,
//! literal data or an error, never a panic or an unbounded output.
#![no_main]

use arsync_core::proto::rsync::ztoken::{Compression, Token, ZstdTokenReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let c = if sel & 1 == 0 {
        Compression::Zstd(3)
    } else {
        Compression::Lz4
    };
    let Ok(mut r) = ZstdTokenReader::new(c) else {
        return;
    };
    let mut src = rest;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match r.next(&mut src, &mut out) {
            Ok(Token::End) | Err(_) => return,
            Ok(_) => assert!(out.len() <= 64 << 20),
        }
    }
});
