//! Any bytes as an admission request or reply: a value, a request for more bytes, or an
//! error — never a panic; a decoded value encodes back to the bytes it came from.
#![no_main]

use arsync_core::proto::admit::{AdmitReply, AdmitRequest, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Done(req, used)) = AdmitRequest::decode(data) {
        let mut again = Vec::new();
        req.encode(&mut again);
        assert_eq!(&again[..], &data[..used]);
    }
    if let Ok(Decoded::Done(reply, used)) = AdmitReply::decode(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        reply.encode(&mut again);
        assert!(AdmitReply::decode(&again).is_ok());
    }
    if let Ok(Decoded::NeedAtLeast(n)) = AdmitRequest::decode(data) {
        assert!(n > data.len() && n <= 8 + arsync_core::proto::admit::MAX_REQUEST);
    }
});
