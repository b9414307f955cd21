//! Any bytes as a hash-cache file: loaded or ignored, never a panic. The bytes are tried as
//! they are and sealed with the trailing BLAKE3 sum a cache file ends with (without it the
//! fuzzer never gets past the sum to the header and records); a loaded cache holds no more
//! records than the file has room for.
#![no_main]

use arsync_core::engine::hashcache::HashCache;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = HashCache::from_bytes(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(blake3::hash(data).as_bytes());
    if let Some(cache) = HashCache::from_bytes(&sealed) {
        // A record is 88 bytes (seven u64 and a 32-byte hash).
        assert!(cache.len() <= data.len() / 88);
    }
});
