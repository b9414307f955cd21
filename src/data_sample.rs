//! A sample of the files a push sends, for the compression decision: the first
//! [`SAMPLE_BYTES`] of up to [`SAMPLE_FILES`] regular files among the sources, found breadth
//! first among at most [`VISIT_MAX`] entries, compressed by
//! [`arsync_core::merkle::speed::compressibility`]. Thin and bounded: a file or directory
//! that cannot be read is passed over.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;

use arsync_core::negotiate::params::{bytes, Compressibility};

/// Files sampled at most.
const SAMPLE_FILES: usize = 8;
/// Bytes read from each at most.
const SAMPLE_BYTES: u64 = 64 << 10;
/// Directory entries looked at, at most.
const VISIT_MAX: usize = 256;

/// How well the start of a few source files compresses, and the `--explain` line; `None`
/// when no regular file with data was found.
pub fn sample(sources: &[PathBuf]) -> Option<(Compressibility, String)> {
    let mut queue: VecDeque<PathBuf> = sources.iter().cloned().collect();
    let mut samples: Vec<Vec<u8>> = Vec::new();
    let mut visited = 0;
    while let Some(path) = queue.pop_front() {
        if samples.len() >= SAMPLE_FILES || visited >= VISIT_MAX {
            break;
        }
        visited += 1;
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            let room = VISIT_MAX.saturating_sub(visited + queue.len());
            queue.extend(entries.flatten().take(room).map(|e| e.path()));
        } else if meta.is_file() && meta.len() > 0 {
            let mut data = Vec::new();
            let read = std::fs::File::open(&path)
                .and_then(|f| f.take(SAMPLE_BYTES).read_to_end(&mut data));
            if read.is_ok() && !data.is_empty() {
                samples.push(data);
            }
        }
    }
    if samples.is_empty() {
        return None;
    }
    let c = arsync_core::merkle::speed::compressibility(samples.iter().map(Vec::as_slice));
    let line = format!(
        "data: a sample of {} from {} file{} compresses to {} %",
        bytes(c.sampled),
        samples.len(),
        if samples.len() == 1 { "" } else { "s" },
        c.percent()
    );
    Some((c, line))
}
