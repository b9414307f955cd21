//! Issue 19, fuzz: the wildcard matcher of the filter rules (`engine::filter::glob`) on any
//! pattern and path (split at the first NUL): never a panic, and what holds whatever they
//! are — a pattern escaping every byte of the path matches it, `**` matches every path, `*`
//! exactly those without `/`, and a pattern that matches a path still matches it, with any
//! tail, once `**` is appended.
#![no_main]

use arsync_core::engine::filter::glob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pat, path) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"a/b"[..]),
    };
    let matched = glob(pat, path);
    let literal: Vec<u8> = path.iter().flat_map(|&b| [b'\\', b]).collect();
    assert!(glob(&literal, path), "the escaped path does not match it");
    assert!(glob(b"**", path));
    assert_eq!(glob(b"*", path), !path.contains(&b'/'));
    // A trailing lone `\` would escape the first appended star.
    if matched && !pat.ends_with(b"\\") {
        let mut longer = pat.to_vec();
        longer.extend_from_slice(b"**");
        let mut tail = path.to_vec();
        tail.extend_from_slice(b"/x/y");
        assert!(glob(&longer, path) && glob(&longer, &tail));
    }
});
