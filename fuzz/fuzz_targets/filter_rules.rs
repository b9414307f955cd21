//! Any rule text and path: parsing and matching never panic.
#![no_main]

use arsync_core::engine::FilterRules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (rule, path) = text.split_once('\n').unwrap_or((&text, "a/b"));
    let mut f = FilterRules::new();
    let _ = f.add_filter(rule);
    f.exclude(rule);
    let p = path.as_bytes();
    let _ = f.excluded_for_sender(p, p.len() % 2 == 0);
    let _ = f.protected_for_receiver(p, false);
});
