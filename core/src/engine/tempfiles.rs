//! Issue 15, tempfiles: where the receiver keeps a file while it is being written, until it
//! is put in place, and what is left of it when a transfer stops — rsync's `-T/--temp-dir`,
//! `--delay-updates`, `--partial-dir` — as plain data, with the names rsync gives them. Does not touch the filesystem: the receiver stages
//! and commits (`receiver::staging`, `fsys`).

use std::path::PathBuf;

/// The partial directory `--delay-updates` uses when none is given (rsync's `tmp_partialdir`).
pub const DELAY_DIR: &str = ".~tmp~";

/// `-T`, `--delay-updates`, `--partial-dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TempOptions {
    /// `-T/--temp-dir=DIR`: files being written are staged in DIR (relative to the
    /// destination directory unless absolute) and moved into place when complete.
    pub temp_dir: Option<PathBuf>,
    /// `--delay-updates`: every updated file waits in its directory's partial directory
    /// until all are received, then all are renamed into place.
    pub delay_updates: bool,
    /// `--partial-dir=DIR`: a partial file is kept in DIR (relative to its directory unless
    /// absolute) and is the basis of the next transfer of the file.
    pub partial_dir: Option<PathBuf>,
}

impl TempOptions {
    /// Where a partial file is kept (relative to its directory unless absolute): the
    /// `--partial-dir`, or `--delay-updates`' `.~tmp~`; `None`: in place of the file.
    pub fn partial_dir(&self) -> Option<&std::path::Path> {
        self.partial_dir
            .as_deref()
            .or_else(|| self.delay_updates.then(|| std::path::Path::new(DELAY_DIR)))
    }

    /// The rule rsync's client adds so the partial directory is neither sent nor deleted
    /// (`- .~tmp~/`, perishable), if any.
    pub fn client_rule(&self) -> Option<String> {
        let pd = self.partial_dir().filter(|pd| pd.is_relative())?;
        Some(format!("-p {}/", pd.display()))
    }

    /// rsync's checks of the combination (options.c), as its error text.
    pub fn check(&self, inplace: bool, append: bool) -> Result<(), String> {
        if (self.delay_updates || self.partial_dir.is_some()) && (inplace || append) {
            let what = if append { "append" } else { "inplace" };
            let with = if self.delay_updates {
                "delay-updates"
            } else {
                "partial-dir"
            };
            return Err(format!("--{what} cannot be used with --{with}"));
        }
        Ok(())
    }

    /// The options a receiving server gets (arsync's or rsync's: the same spellings, as
    /// upstream's `server_options` sends them when the client sends); `partial` adds
    /// `--partial` where no partial directory says it.
    pub fn server_args(&self, partial: bool) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = &self.partial_dir {
            v.push("--partial-dir".into());
            v.push(d.to_string_lossy().into_owned());
        }
        if self.delay_updates {
            v.push("--delay-updates".into());
        } else if partial && self.partial_dir.is_none() {
            v.push("--partial".into());
        }
        if let Some(d) = &self.temp_dir {
            v.push("--temp-dir".into());
            v.push(d.to_string_lossy().into_owned());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiving_server_is_told_as_rsync_tells_it() {
        let t = TempOptions {
            temp_dir: Some("../tmp".into()),
            delay_updates: true,
            partial_dir: None,
        };
        assert_eq!(
            t.server_args(true),
            ["--delay-updates", "--temp-dir", "../tmp"]
        );
        assert_eq!(t.client_rule().as_deref(), Some("-p .~tmp~/"));
        let t = TempOptions {
            partial_dir: Some(".part".into()),
            ..TempOptions::default()
        };
        assert_eq!(t.server_args(true), ["--partial-dir", ".part"]);
        assert_eq!(t.client_rule().as_deref(), Some("-p .part/"));
        assert!(TempOptions::default().server_args(false).is_empty());
        assert_eq!(TempOptions::default().server_args(true), ["--partial"]);
        assert_eq!(TempOptions::default().client_rule(), None);
    }

    #[test]
    fn delay_updates_refuses_writing_in_place() {
        let t = TempOptions {
            delay_updates: true,
            ..TempOptions::default()
        };
        assert!(t.check(true, false).unwrap_err().contains("--inplace"));
        assert!(t.check(false, true).unwrap_err().contains("--append"));
        assert!(t.check(false, false).is_ok());
        assert!(TempOptions::default().check(true, true).is_ok());
        let t = TempOptions {
            partial_dir: Some("p".into()),
            ..TempOptions::default()
        };
        assert_eq!(
            t.check(true, false).unwrap_err(),
            "--inplace cannot be used with --partial-dir"
        );
    }
}
