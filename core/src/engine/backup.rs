//! Issue 15, backup: rsync's `-b`/`--backup`, `--suffix`, `--backup-dir` as plain data, and the
//! names backups take (`get_backup_name` in upstream's backup.c). Does not touch the
//! filesystem: the receiver makes the backups (`receiver::backups`).

use std::path::PathBuf;

/// rsync's default backup suffix without `--backup-dir`.
pub const DEFAULT_SUFFIX: &str = "~";

/// `-b`, `--suffix`, `--backup-dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupOptions {
    /// `-b`/`--backup` (implied by `--backup-dir`): keep what is replaced or deleted.
    pub make_backups: bool,
    /// `--suffix=SUFFIX` as given (`None`: the default, see [`BackupOptions::suffix`]).
    pub suffix: Option<String>,
    /// `--backup-dir=DIR`: relative to the destination directory unless absolute.
    pub dir: Option<PathBuf>,
}

impl BackupOptions {
    /// The suffix backups get: as given, else `~`, or nothing with `--backup-dir`.
    pub fn suffix(&self) -> &str {
        match (&self.suffix, &self.dir) {
            (Some(s), _) => s,
            (None, Some(_)) => "",
            (None, None) => DEFAULT_SUFFIX,
        }
    }

    /// Whether `name` already looks like a backup (rsync's `is_backup_file`: a name longer
    /// than the suffix that ends with it). Only meaningful without `--backup-dir`.
    pub fn is_backup_name(&self, name: &[u8]) -> bool {
        let s = self.suffix().as_bytes();
        name.len() > s.len() && name.ends_with(s)
    }

    /// The backup's name for the entry called `name` (in its directory, or under the backup
    /// directory at the same relative place).
    pub fn backup_name(&self, name: &[u8]) -> Vec<u8> {
        [name, self.suffix().as_bytes()].concat()
    }

    /// rsync's checks of the combination (options.c), as its error text.
    pub fn check(&self) -> Result<(), String> {
        let s = self.suffix();
        if s.contains('/') {
            return Err(format!("--suffix cannot contain slashes: {s}"));
        }
        if self.make_backups && self.dir.is_none() && s.is_empty() {
            return Err("--suffix cannot be empty without a --backup-dir".into());
        }
        Ok(())
    }

    /// The protect rule rsync's client adds when backups sit beside the files and `--delete`
    /// would remove them (`P *SUFFIX`), if any.
    pub fn protect_rule(&self, delete: bool, delete_excluded: bool) -> Option<String> {
        (self.make_backups && self.dir.is_none() && delete && !delete_excluded)
            .then(|| format!("P *{}", self.suffix()))
    }

    /// The long options a server gets (upstream's `server_options`: `--backup-dir DIR` as two
    /// words, `--suffix=S` only when not the default); `-b` goes in the letter cluster.
    pub fn server_long_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = &self.dir {
            v.push("--backup-dir".into());
            v.push(d.to_string_lossy().into_owned());
        }
        if let Some(s) = &self.suffix {
            let default = if self.dir.is_some() {
                ""
            } else {
                DEFAULT_SUFFIX
            };
            if s != default {
                v.push(format!("--suffix={s}"));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_defaults_follow_rsync() {
        let mut b = BackupOptions {
            make_backups: true,
            ..Default::default()
        };
        assert_eq!(b.suffix(), "~");
        assert!(b.is_backup_name(b"f~"));
        assert!(!b.is_backup_name(b"~"));
        assert_eq!(b.protect_rule(true, false).as_deref(), Some("P *~"));
        assert_eq!(b.protect_rule(true, true), None);
        b.dir = Some("../bak".into());
        assert_eq!(b.suffix(), "");
        assert_eq!(b.protect_rule(true, false), None);
        assert_eq!(b.server_long_args(), ["--backup-dir", "../bak"]);
        b.suffix = Some(".old".into());
        assert_eq!(b.backup_name(b"f"), b"f.old");
        assert_eq!(
            b.server_long_args(),
            ["--backup-dir", "../bak", "--suffix=.old"]
        );
    }

    #[test]
    fn bad_suffixes_are_refused() {
        let b = BackupOptions {
            make_backups: true,
            suffix: Some(String::new()),
            dir: None,
        };
        assert!(b.check().is_err());
        let b = BackupOptions {
            suffix: Some("a/b".into()),
            ..Default::default()
        };
        assert!(b.check().is_err());
    }
}
