//! Issue 15, own: the options of ownership mapping and of how file data is written, as plain
//! data: `--usermap`/`--groupmap` (and `--chown`, turned into maps), `-T/--temp-dir`,
//! `-S/--sparse`, `--append`/`--append-verify`. The maps' syntax and rules are in
//! [`super::idmap`]; the receiver applies all of them.

use std::path::PathBuf;

/// How the receiver maps owners and writes file data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnOptions {
    /// `--usermap=STRING` (`--chown=USER` gives `*:USER`), resolved on the receiver.
    pub usermap: Option<String>,
    /// `--groupmap=STRING` (`--chown=:GROUP` gives `*:GROUP`), resolved on the receiver.
    pub groupmap: Option<String>,
    /// `-T DIR`: stage new files in DIR, then move them into place.
    pub temp_dir: Option<PathBuf>,
    /// `-S`: turn runs of zeros into holes in written files.
    pub sparse: bool,
    /// `--append` (1) or `--append-verify` (2): only files longer on the sender get data,
    /// appended to what the receiver has.
    pub append: u8,
    /// `-s`: towards an rsync server, the arguments go on the stream, not the command line.
    pub secluded_args: bool,
}

impl OwnOptions {
    /// The options a receiving server gets, arsync's or rsync's (the same spellings; upstream's
    /// `server_options` sends the maps only to a receiving server).
    pub fn receiver_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(m) = &self.usermap {
            v.push(format!("--usermap={m}"));
        }
        if let Some(m) = &self.groupmap {
            v.push(format!("--groupmap={m}"));
        }
        v
    }
}
