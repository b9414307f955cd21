//! Issue 15, tempfiles: files staged in another directory than their destination's (`-T`),
//! and the copy into place when that directory is on another filesystem.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::*;

/// A directory files are staged in away from their destination (`-T`); two are equal when
/// they are the same open directory.
#[derive(Debug, Clone)]
pub struct StagingDir(pub Arc<OwnedFd>);

impl PartialEq for StagingDir {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StagingDir {}

/// Create the file that will become `name` under a temporary name in `away` (`-T`).
pub fn stage_away(away: &StagingDir, dir: impl AsFd, name: &[u8]) -> io::Result<(File, Staging)> {
    let t = create_temp(&*away.0, name)?;
    track_named(away.0.as_fd(), &t.name, dir.as_fd(), name);
    Ok((t.file, Staging::Away(away.clone(), t.name)))
}

/// Copy the complete `file` (from its start) to `name` in `dir` through a temporary there,
/// with its permissions, owner (as far as we may) and modification time.
pub(super) fn copy_into(file: &File, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let st = rustix::fs::fstat(file)?;
    let mut t = create_temp(dir, name)?;
    // Tracked too: a run stopped meanwhile removes (or keeps) it with the rest.
    track_named(dir, &t.name, dir, name);
    let copied = (|| {
        let mut from = file;
        from.seek(SeekFrom::Start(0))?;
        std::io::copy(&mut from, &mut t.file)?;
        // Not ours to give away unless we are root: keep what we may.
        let _ = rustix::fs::fchown(
            &t.file,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        );
        apply_meta_fd(
            &t.file,
            &MetaPlan {
                perms: Some(st.st_mode & 0o7777),
                mtime: Some((st.st_mtime, st.st_mtime_nsec as u32)),
                ..MetaPlan::default()
            },
        )?;
        rename_at(dir, &t.name, name)
    })();
    if copied.is_err() {
        let _ = unlink_at(dir, &t.name);
    }
    untrack_named(&t.name);
    copied
}
