//! Any bytes as a hash-cache file: loaded or ignored, never a panic.
#![no_main]

use arsync_core::engine::hashcache::HashCache;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = HashCache::from_bytes(data);
});
