//! Issue 15, tempfiles: where the receiver keeps a file while it is being written and until it
//! is put in place — rsync's `-T/--temp-dir`, `--delay-updates`, `--partial-dir` — as plain
//! data, with the names rsync gives them. Does not touch the filesystem: the receiver stages
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
}

impl TempOptions {
    /// The partial directory a delayed file waits in, relative to the file's directory.
    pub fn delay_dir(&self) -> &'static [u8] {
        DELAY_DIR.as_bytes()
    }

    /// The rule rsync's client adds so the partial directory is neither sent nor deleted
    /// (`- .~tmp~/`, perishable), if any.
    pub fn client_rule(&self) -> Option<String> {
        self.delay_updates.then(|| format!("-p {DELAY_DIR}/"))
    }

    /// rsync's checks of the combination (options.c), as its error text.
    pub fn check(&self, inplace: bool, append: bool) -> Result<(), String> {
        if self.delay_updates && (inplace || append) {
            let what = if append { "append" } else { "inplace" };
            return Err(format!("--{what} cannot be used with --delay-updates"));
        }
        Ok(())
    }

    /// The options a receiving server gets (arsync's or rsync's: the same spellings, as
    /// upstream's `server_options` sends them when the client sends).
    pub fn server_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.delay_updates {
            v.push("--delay-updates".into());
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
        };
        assert_eq!(t.server_args(), ["--delay-updates", "--temp-dir", "../tmp"]);
        assert!(TempOptions::default().server_args().is_empty());
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
    }
}
