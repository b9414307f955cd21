//! What the engine tells its caller while it runs: [`Event`]s into an [`EventSink`], and the
//! [`Itemize`] code rsync prints with `-i`.
//!
//! The engine never prints; the CLI implements [`EventSink`] and decides what a person sees.

use crate::flist::{FileEntry, FileKind};

/// rsync's `YXcstpoguax` change summary for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Itemize {
    /// `>` received, `c` created/changed locally, `h` hard link, `.` attributes only.
    pub update: char,
    /// `f`, `d`, `L`, `D`, `S`.
    pub kind: char,
    /// Whether the item is new (all attribute columns read `+`).
    pub new: bool,
    /// `c`: content differs (checksum).
    pub checksum: bool,
    /// `s`: size differs.
    pub size: bool,
    /// `t`: modification time differs.
    pub time: bool,
    /// `p`: permissions differ.
    pub perms: bool,
    /// `o`: owner differs.
    pub owner: bool,
    /// `g`: group differs.
    pub group: bool,
    /// `x`: extended attributes differ.
    pub xattrs: bool,
    /// `a`: ACLs differ (`-A`).
    pub acls: bool,
    /// With `time`: the time is not kept (no `-t`), so it becomes the time of the transfer
    /// (`T`, as rsync shows it).
    pub time_now: bool,
}

impl Itemize {
    /// A blank summary for `kind` with update letter `update`.
    pub fn new(update: char, kind: FileKind) -> Self {
        Itemize {
            update,
            kind: kind.itemize_letter(),
            new: false,
            checksum: false,
            size: false,
            time: false,
            perms: false,
            owner: false,
            group: false,
            xattrs: false,
            acls: false,
            time_now: false,
        }
    }

    /// Whether any attribute column is set (or the item is new).
    pub fn any_change(&self) -> bool {
        self.new
            || self.checksum
            || self.size
            || self.time
            || self.perms
            || self.owner
            || self.group
            || self.xattrs
            || self.acls
    }

    /// The attribute columns as bits (for the wire): new 1, checksum 2, size 4, time 8,
    /// perms 16, owner 32, group 64, xattrs 128, time-now 256, acls 512.
    pub fn to_flags(&self) -> u16 {
        [
            self.new,
            self.checksum,
            self.size,
            self.time,
            self.perms,
            self.owner,
            self.group,
            self.xattrs,
            self.time_now,
            self.acls,
        ]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, &on)| acc | (u16::from(on) << i))
    }

    /// A summary for `kind` with update letter `update` from [`Itemize::to_flags`] bits
    /// (unknown bits are ignored).
    pub fn from_flags(update: char, kind: FileKind, flags: u16) -> Self {
        let bit = |i: u16| flags & (1 << i) != 0;
        Itemize {
            new: bit(0),
            checksum: bit(1),
            size: bit(2),
            time: bit(3),
            perms: bit(4),
            owner: bit(5),
            group: bit(6),
            xattrs: bit(7),
            time_now: bit(8),
            acls: bit(9),
            ..Itemize::new(update, kind)
        }
    }

    /// The 11-character code, e.g. `>f+++++++++` or `.d..t......`.
    pub fn code(&self) -> String {
        let mut s = String::with_capacity(11);
        s.push(self.update);
        s.push(self.kind);
        if self.new {
            s.push_str("+++++++++");
            return s;
        }
        let col = |on: bool, c: char| if on { c } else { '.' };
        s.push(col(self.checksum, 'c'));
        s.push(col(self.size, 's'));
        s.push(col(self.time, if self.time_now { 'T' } else { 't' }));
        s.push(col(self.perms, 'p'));
        s.push(col(self.owner, 'o'));
        s.push(col(self.group, 'g'));
        s.push('.'); // u: access time, never preserved
        s.push(col(self.acls, 'a'));
        s.push(col(self.xattrs, 'x'));
        s
    }
}

/// Something that happened during a run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// An item was created, updated or checked (`itemize` says how).
    Item {
        /// The entry.
        entry: &'a FileEntry,
        /// What changed.
        itemize: Itemize,
        /// For a hard link, the path it links to.
        link_to: Option<&'a [u8]>,
    },
    /// A destination path was deleted (`--delete`).
    Deleted {
        /// Relative path.
        path: Vec<u8>,
        /// Whether it was a directory.
        is_dir: bool,
    },
    /// Bytes of a file's data moved.
    Progress {
        /// The entry.
        entry: &'a FileEntry,
        /// Bytes of this file done so far.
        done: u64,
        /// Whether the file is complete.
        finished: bool,
    },
    /// The whole file list is known: how many entries and their total size (what progress
    /// counts `to-chk` and the overall percentage against).
    ListTotals {
        /// Entries in the list.
        files: u64,
        /// Sum of the regular files' sizes.
        bytes: u64,
    },
    /// Something rsync prints at `-v` (e.g. `created directory DEST`).
    Info {
        /// The message.
        message: String,
    },
    /// A line a remote rsync printed for this side (`MSG_INFO`): it chose to say it at the
    /// verbosity it was given, so it is shown unless `-q`.
    PeerInfo {
        /// The message.
        message: String,
    },
    /// A detail for someone watching closely (`-vv`), never forwarded to a peer: how the
    /// bytes were spread over the streams, and the like.
    Debug {
        /// The message.
        message: String,
    },
    /// What rsync tells on stdout at its default verbosity about an entry it leaves out
    /// (`skipping non-regular file "x"`, `skipping directory x`): shown unless `-q` (or
    /// `--info=nonreg0`). Not an error.
    Notice {
        /// The message.
        message: String,
    },
    /// A non-fatal problem with one file (rsync's `rsync: … (code)` lines).
    Warning {
        /// The message.
        message: String,
    },
    // Issue 16, adapt during the run:
    /// A decision taken during the run and its reason, for `--explain` (never forwarded to
    /// a peer).
    Explain {
        /// The message.
        message: String,
    },
}

/// Receives the engine's events. Called from several threads at once.
pub trait EventSink: Send + Sync {
    /// One event.
    fn event(&self, event: Event<'_>);

    /// Whether the sending side prints the transfers (an rsync client pushing to this
    /// receiver): the receiver's own items then need not wait for transfers to finish to be
    /// in order ([`crate::engine::order`]).
    fn transfers_shown_by_sender(&self) -> bool {
        false
    }

    /// Whether this sink belongs to a server whose stdout is the protocol: the sender's
    /// notices (`Event::Notice`) then go to the peer to print, where the peer asks for them
    /// (the `notices` capability).
    fn notices_to_peer(&self) -> bool {
        false
    }
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn event(&self, _event: Event<'_>) {}
}

/// A sink that keeps the notices (`Event::Notice`) it is given, to be sent to the peer, and
/// passes every other event on to `inner`: a sending server's scan, whose notices the
/// receiving client prints.
#[allow(missing_debug_implementations)] // it holds a `dyn EventSink`, which has no `Debug`
pub struct NoticeTap {
    inner: std::sync::Arc<dyn EventSink>,
    kept: std::sync::Mutex<Vec<String>>,
}

impl NoticeTap {
    /// Keep the notices, pass the rest to `inner`.
    pub fn new(inner: std::sync::Arc<dyn EventSink>) -> Self {
        NoticeTap {
            inner,
            kept: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The notices kept so far, in order (and forgotten here).
    pub fn take(&self) -> Vec<String> {
        self.kept
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default()
    }
}

impl EventSink for NoticeTap {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Notice { message } => {
                if let Ok(mut k) = self.kept.lock() {
                    k.push(message);
                }
            }
            other => self.inner.event(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rsync() {
        let mut i = Itemize::new('>', FileKind::File);
        i.new = true;
        assert_eq!(i.code(), ">f+++++++++");
        let mut d = Itemize::new('.', FileKind::Dir);
        d.time = true;
        assert_eq!(d.code(), ".d..t......");
        let mut f = Itemize::new('>', FileKind::File);
        f.size = true;
        f.time = true;
        assert_eq!(f.code(), ">f.st......");
        let back = Itemize::from_flags('<', FileKind::File, f.to_flags());
        assert_eq!(back.code(), "<f.st......");
    }
}
