//! Issue 15, own: the options of ownership mapping, as plain data: `--usermap`/`--groupmap`
//! (and `--chown`, turned into maps), and `-s` (how arguments reach an rsync server). The
//! maps' syntax and rules are in [`super::idmap`]; the receiver applies them.

/// How the receiver maps owners, and how arguments reach an rsync server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnOptions {
    /// `--usermap=STRING` (`--chown=USER` gives `*:USER`), resolved on the receiver.
    pub usermap: Option<String>,
    /// `--groupmap=STRING` (`--chown=:GROUP` gives `*:GROUP`), resolved on the receiver.
    pub groupmap: Option<String>,
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
