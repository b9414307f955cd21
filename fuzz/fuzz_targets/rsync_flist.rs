//! Any bytes as an rsync file list (the format chosen by the first two bytes), then as file
//! indexes: an error or entries, never a panic, and every entry within the bounds the decoder
//! promises.
#![no_main]

use arsync_core::proto::rsync::codec::NdxCodec;
use arsync_core::proto::rsync::flist::{read_file_list, FlistFormat, MAX_PATH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // A second selector byte for the options added since (ACLs, missing arguments).
    let Some((&more, rest)) = rest.split_first() else {
        return;
    };
    let fmt = FlistFormat {
        protocol: 30 + sel % 3,
        varint_flags: sel & 0x04 != 0,
        uid: sel & 0x08 != 0,
        gid: sel & 0x10 != 0,
        links: sel & 0x20 != 0,
        devices: sel & 0x40 != 0,
        specials: sel & 0x40 != 0,
        hard_links: sel & 0x80 != 0,
        checksum_len: (sel & 0x03 == 3).then_some(16),
        id0_names: sel & 0x01 != 0,
        numeric_ids: sel & 0x02 != 0,
        acls: more & 0x01 != 0,
        missing_args: more & 0x02 != 0,
    };
    let mut src = rest;
    if let Ok(list) = read_file_list(&mut src, fmt) {
        for (i, e) in list.decoder.entries.iter().enumerate() {
            assert!(e.name.len() <= MAX_PATH && e.link_target.len() <= MAX_PATH);
            assert!(e.nsec < 1_000_000_000);
            if let Some(f) = e.hlink_first {
                assert!((f as usize) <= i);
            }
        }
    }
    let mut n = NdxCodec::new(30 + sel % 3);
    let mut src = rest;
    while let Ok(v) = n.read(&mut src) {
        assert!(v != i32::MIN);
    }
});
