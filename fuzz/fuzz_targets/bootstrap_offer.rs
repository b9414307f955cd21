//! Any bytes as the SSH bootstrap's offer line, read as a client reads it (a byte at a time,
//! bounded): an offer, or an error — never a panic; an offer encodes to a line that parses
//! back to the same offer, and a line the reader accepts is never over its bound.
#![no_main]

use arsync_core::proto::bootstrap::{BootstrapOffer, LineReader, MAX_OFFER_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = BootstrapOffer::parse(data) {
        let line = offer.encode();
        assert!(line.ends_with('\n'));
        let again = BootstrapOffer::parse(&line.as_bytes()[..line.len() - 1]);
        assert_eq!(again.as_ref(), Ok(&offer));
    }
    let mut reader = LineReader::new(MAX_OFFER_LINE);
    for &b in data {
        match reader.push(b) {
            Ok(None) => {}
            Ok(Some(line)) => {
                assert!(line.len() <= MAX_OFFER_LINE && !line.contains(&b'\n'));
                let _ = BootstrapOffer::parse(&line);
            }
            Err(_) => break,
        }
    }
});
