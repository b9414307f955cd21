//! Any bytes into the frame decoder, fed in arbitrary splits, with or without compressed frames
//! accepted: an error or frames, never a panic, and every decoded frame re-encodes to bytes
//! that decode to the same frame.
#![no_main]

use arsync_core::proto::merkle::{Frame, FrameDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| (*b as usize % 64) + 1);
    let mut d = FrameDecoder::new();
    d.accept_compressed(data.first().is_some_and(|b| b & 0x80 != 0));
    for piece in data.chunks(split) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    let mut buf = Vec::new();
                    f.encode(&mut buf);
                    let mut again = FrameDecoder::new();
                    again.push(&buf);
                    let back: Frame = again
                        .next_frame()
                        .expect("re-encoded frame decodes")
                        .expect("re-encoded frame is whole");
                    assert_eq!(back, f);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
