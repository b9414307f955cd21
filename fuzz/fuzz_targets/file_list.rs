//! A file list from a hostile peer: whatever decodes must pass or fail validation cleanly.
#![no_main]

use arsync_core::flist::validate_list;
use arsync_core::engine::FileList;
use arsync_core::proto::merkle::{Frame, FrameDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = FrameDecoder::new();
    d.push(data);
    let mut list = FileList::default();
    while let Ok(Some(f)) = d.next_frame() {
        if let Frame::FileEntries(v) = f {
            list.entries.extend(v);
        }
    }
    let _ = validate_list(&list);
});
