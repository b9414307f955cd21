//! arsync's cache directory and how its files are written: where (`$ARSYNC_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/arsync`, else `~/.cache/arsync`), the clock and calendar its records
//! use, and a
//! private, whole-file write (a temporary made exclusively with mode 0600 in a 0700
//! directory, synced, then renamed over the old file, so a reader sees the old or the new,
//! never half, and no planted link is followed).
//!
//! What is kept there — the `-c` hash cache ([`crate::engine::hashcache`], `hashes.v1`), the
//! delta exchange's chunk indexes ([`crate::engine::chunkcache`], `chunks.v1/`), the
//! binary's per-host memory (`hosts`) and CPU probe record (`cpu`) — and what a damaged file
//! means is theirs.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that names the cache directory outright (the tests give each run
/// its own).
pub const CACHE_DIR_ENV: &str = "ARSYNC_CACHE_DIR";

/// The cache directory, from the environment; `None` when nothing names a place (only
/// absolute paths count).
pub fn dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = var(CACHE_DIR_ENV) {
        return Some(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(dir.join("arsync"));
    }
    var("HOME").map(|h| h.join(".cache").join("arsync"))
}

/// Seconds since 1970 (UTC), as the cache's records count time.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The UTC calendar date and time of `secs` after 1970-01-01 00:00:
/// `(year, month, day, hour, minute, second)` (H. Hinnant's `civil_from_days`). How the
/// cache's records and the token store show their times.
pub fn utc_date(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// Write `bytes` as the whole of `path`, privately (see the module documentation).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a cache file needs a directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("a cache file needs a name"))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A stale temporary (or a link planted in a shared directory) goes; the new one is made
    // exclusively, so nothing is followed.
    let _ = fs::remove_file(&temp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_write_replaces_the_file_whole_and_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/arsync/f");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // A link planted where the temporary goes is removed, not written through.
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let temp = path
            .parent()
            .unwrap()
            .join(format!(".f.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temp).unwrap();
        write_private(&path, b"three").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
