//! Issue 15, source: `--remove-source-files` — the receiver's word that entries are
//! synchronized ([`synced_frames`]: `Synced` frames, rsync's `MSG_SUCCESS`) and the sender's
//! removal of each ([`remove_synced`]: only a non-directory that did not change since it was
//! listed, as upstream's `successful_send`).
//!
//! Does not own which entries count as synchronized (the receiver's generator and writers
//! decide) or how the word travels over rsync's protocol (the adapters).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering::Relaxed;

use super::event::{Event, EventSink};
use super::scan::{os_error, SourceList};
use super::stats::Stats;
use crate::flist::{FileEntry, FileKind};
use crate::proto::merkle::{Frame, MAX_SYNCED};
use crate::proto::DecodeError;

/// The `Synced` frames for `files` (`(ndx, dev, ino)`, in list order, each frame within
/// [`MAX_SYNCED`]).
pub fn synced_frames(mut files: Vec<(u32, u64, u64)>) -> Vec<Frame> {
    files.sort_unstable();
    files.dedup_by_key(|f| f.0);
    files
        .chunks(MAX_SYNCED)
        .map(|c| Frame::Synced(c.to_vec()))
        .collect()
}

/// Why a synchronized entry is not removed.
#[derive(Debug, PartialEq, Eq)]
enum Keep {
    /// It changed since it was listed (size or modification time).
    Changed,
    /// It is the destination's file itself (a sync onto itself).
    Destination,
}

/// Whether the file now at the entry's name may go: not the destination's file itself (its
/// device and inode `dest`, when known), and still what was listed: the same size (a
/// symlink: its target's length) and modification time.
fn removable(e: &FileEntry, meta: &std::fs::Metadata, dest: (u64, u64)) -> Result<(), Keep> {
    if dest != (0, 0) && (meta.dev(), meta.ino()) == dest {
        return Err(Keep::Destination);
    }
    let size = match e.kind {
        FileKind::File => e.size,
        FileKind::Symlink => e.link_target().len() as u64,
        _ => meta.size(),
    };
    let same = meta.size() == size
        && meta.mtime() == e.mtime
        && (e.kind != FileKind::File || meta.mtime_nsec() as u32 == e.mtime_nsec);
    if same {
        Ok(())
    } else {
        Err(Keep::Changed)
    }
}

/// Remove the entries `full` (`(index into list, dev, ino)` of the destination's file) the
/// receiver reported synchronized, each only if it is not that file and is unchanged since it
/// was listed; a directory named is a protocol error. Problems are
/// reported as rsync words them and counted as errors (exit 23). `follow`: `-L` (the check
/// looks through a symlink; the symlink itself is removed, as upstream does).
pub fn remove_synced(
    list: &SourceList,
    full: &[(usize, u64, u64)],
    follow: bool,
    stats: &Stats,
    sink: &dyn EventSink,
) -> Result<(), DecodeError> {
    for &(ndx, dev, ino) in full {
        let e = list
            .list
            .entries
            .get(ndx)
            .filter(|e| e.kind != FileKind::Dir)
            .ok_or_else(|| {
                DecodeError::invalid(
                    "synced",
                    format!("index {ndx} is out of range or a directory"),
                )
            })?;
        let name = String::from_utf8_lossy(&e.path);
        let path = list.listed_path(ndx);
        let meta = if follow {
            std::fs::metadata(&path)
        } else {
            std::fs::symlink_metadata(&path)
        };
        let removed = meta.and_then(|m| match removable(e, &m, (dev, ino)) {
            Ok(()) => std::fs::remove_file(&path).map(|()| None),
            Err(keep) => Ok(Some(keep)),
        });
        match removed {
            Ok(None) => sink.event(Event::Debug {
                message: format!("sender removed {name}"),
            }),
            Ok(Some(keep)) => {
                stats.errors.fetch_add(1, Relaxed);
                let why = match keep {
                    Keep::Changed => "for changed file",
                    Keep::Destination => "of destination file",
                };
                sink.event(Event::Warning {
                    message: format!("ERROR: Skipping sender remove {why}: {name}"),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => sink.event(Event::Info {
                message: format!("sender file already removed: {name}"),
            }),
            Err(err) => {
                stats.errors.fetch_add(1, Relaxed);
                sink.event(Event::Warning {
                    message: format!("sender failed to remove {name}: {}", os_error(&err)),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_sorted_deduplicated_and_bounded() {
        let n = MAX_SYNCED as u32;
        let mut v: Vec<(u32, u64, u64)> = (0..n + 3).rev().map(|i| (i, 1, 2)).collect();
        v.push((5, 1, 2));
        let frames = synced_frames(v);
        assert_eq!(frames.len(), 2);
        match (&frames[0], &frames[1]) {
            (Frame::Synced(a), Frame::Synced(b)) => {
                assert_eq!(a.len(), MAX_SYNCED);
                assert_eq!(a[..2], [(0, 1, 2), (1, 1, 2)]);
                assert_eq!(b, &[(n, 1, 2), (n + 1, 1, 2), (n + 2, 1, 2)]);
            }
            other => panic!("{other:?}"),
        }
        assert!(synced_frames(Vec::new()).is_empty());
    }

    #[test]
    fn a_changed_file_and_the_destination_itself_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mut e = FileEntry::new(b"f", FileKind::File);
        e.size = 3;
        e.mtime = m.mtime();
        e.mtime_nsec = m.mtime_nsec() as u32;
        e.perms = 0o644;
        assert_eq!(removable(&e, &m, (0, 0)), Ok(()));
        assert_eq!(
            removable(&e, &m, (m.dev(), m.ino())),
            Err(Keep::Destination)
        );
        assert_eq!(removable(&e, &m, (m.dev(), m.ino() + 1)), Ok(()));
        e.size = 4;
        assert_eq!(removable(&e, &m, (0, 0)), Err(Keep::Changed));
        e.size = 3;
        e.mtime -= 1;
        assert_eq!(removable(&e, &m, (0, 0)), Err(Keep::Changed));
    }
}
