//! Batch frames split by bytes: lists that grow with the tree (`FileEntries`, `DirHashes`,
//! `WantDirs`, `Report`) cut into frames that always fit. Owns the splitting rule and the
//! encoded sizes it counts; not the frames' byte layout (`codec`).

use super::{Frame, BATCH_BYTES, MAX_BATCH, MAX_DIR_HASHES, MAX_REPORT, MAX_WANT_DIRS};
use crate::flist::{FileEntry, Xattr};

/// Split `items` into the batches of one frame each: at most `max_count` items, and items are
/// added while the batch's encoded size (by `len`) is below [`BATCH_BYTES`]. With every item at
/// most [`MAX_ITEM_LEN`], no batch frame exceeds [`MAX_FRAME_PAYLOAD`] however long the
/// paths: a frame is split, never refused.
pub fn batches<T>(
    items: impl IntoIterator<Item = T>,
    max_count: usize,
    len: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for item in items {
        if !batch.is_empty() && (batch.len() >= max_count || bytes >= BATCH_BYTES) {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += len(&item);
        batch.push(item);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// The encoded size of one file entry in a [`Frame::FileEntries`].
pub fn entry_len(e: &FileEntry) -> usize {
    58 + e.path.len()
        + e.user().len()
        + e.group().len()
        + e.link_target().len()
        + e.checksum().map_or(0, |_| 32)
        + xattrs_len(e.xattrs())
}

/// The encoded size of a list of extended attributes (after the count).
pub fn xattrs_len(xattrs: &[Xattr]) -> usize {
    xattrs
        .iter()
        .map(|x| 5 + x.name.len() + x.value.len())
        .sum()
}

/// `FileEntries` frames for `entries`, split by [`batches`].
pub fn file_entry_frames(entries: impl IntoIterator<Item = FileEntry>) -> Vec<Frame> {
    batches(entries, MAX_BATCH, entry_len)
        .into_iter()
        .map(Frame::FileEntries)
        .collect()
}

/// `DirHashes` frames for `dirs`, split by [`batches`].
pub fn dir_hash_frames(dirs: impl IntoIterator<Item = (Vec<u8>, [u8; 32])>) -> Vec<Frame> {
    batches(dirs, MAX_DIR_HASHES, |d| 34 + d.0.len())
        .into_iter()
        .map(Frame::DirHashes)
        .collect()
}

/// `WantDirs` frames for `wants`, split by [`batches`].
pub fn want_dir_frames(wants: impl IntoIterator<Item = (Vec<u8>, bool)>) -> Vec<Frame> {
    batches(wants, MAX_WANT_DIRS, |w| 3 + w.0.len())
        .into_iter()
        .map(Frame::WantDirs)
        .collect()
}

/// `Report` frames: the deletions first (as rsync prints them), then the items, split by
/// [`batches`].
pub fn report_frames(items: Vec<(u32, u16, u8)>, deleted: Vec<(Vec<u8>, bool)>) -> Vec<Frame> {
    let deleted = batches(deleted, MAX_REPORT, |d| 3 + d.0.len())
        .into_iter()
        .map(|d| Frame::Report {
            items: Vec::new(),
            deleted: d,
        });
    let items = batches(items, MAX_REPORT, |_| 7)
        .into_iter()
        .map(|i| Frame::Report {
            items: i,
            deleted: Vec::new(),
        });
    deleted.chain(items).collect()
}
