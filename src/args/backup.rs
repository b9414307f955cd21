//! Issue 15, backup: `-b`, `--suffix`, `--backup-dir` from the command line into
//! [`BackupOptions`], with rsync's checks and the protect rule its client adds.

use arsync_core::engine::{BackupOptions, SyncOptions};

use super::cli::Cli;

/// The backup options `cli` asks for (rsync's checks in options.c).
pub(super) fn options(cli: &Cli) -> Result<BackupOptions, String> {
    let mut b = BackupOptions::default();
    // rsync strips leading "./" and an empty or "." directory means none.
    b.dir = cli
        .backup_dir
        .as_ref()
        .map(|d| {
            let s = d.to_string_lossy();
            let mut s: &str = &s;
            while let Some(rest) = s.strip_prefix("./") {
                s = rest;
            }
            if s == "." {
                s = "";
            }
            s.to_owned()
        })
        .filter(|s| !s.is_empty())
        .map(Into::into);
    b.make_backups = (cli.backup || cli.backup_dir.is_some()) && !cli.no_backup;
    b.suffix = cli.suffix.clone();
    // A sending server does not care about the suffix (rsync skips the check there).
    if !(cli.server && cli.sender) {
        b.check()?;
    }
    if b.make_backups && cli.inplace {
        return Err("--backup with --inplace is not supported by arsync yet".into());
    }
    Ok(b)
}

/// The protect rule a client adds so `--delete` keeps old backups (`P *~`), if any.
pub(super) fn client_rule(cli: &Cli, opts: &SyncOptions) -> Option<String> {
    if cli.server {
        return None;
    }
    opts.backup.protect_rule(opts.delete, opts.delete_excluded)
}
