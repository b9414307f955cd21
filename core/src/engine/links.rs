//! rsync's symlink options (`-L`, `--copy-unsafe-links`, `--safe-links`, `-k`, `-K`): which
//! symlinks the sender follows, and which symlink targets count as "unsafe" (pointing outside
//! the transferred tree).
//!
//! Owns the decisions only: the sender's walk (`scan`) asks [`SymlinkOptions::follow`] what
//! to do with a symlink it meets, the receiver's generator asks [`unsafe_symlink`] under
//! `--safe-links`. Does not read the filesystem.

/// The symlink options, as plain data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SymlinkOptions {
    /// `-L/--copy-links`: transform every symlink into its referent (sender).
    pub copy_links: bool,
    /// `--copy-unsafe-links`: transform only unsafe symlinks into their referent (sender).
    pub copy_unsafe_links: bool,
    /// `--safe-links`: ignore symlinks that point outside the tree (receiver).
    pub safe_links: bool,
    /// `-k/--copy-dirlinks`: transform a symlink to a directory into that directory (sender).
    pub copy_dirlinks: bool,
    /// `-K/--keep-dirlinks`: treat a symlinked directory in the destination as a directory
    /// (receiver).
    pub keep_dirlinks: bool,
    /// `--munge-links`: a receiver stores every symlink's target behind [`MUNGE_PREFIX`] (safe
    /// and unusable), a sender gives out a stored one without it. Only the side given the
    /// option does it (rsync does not tell its server).
    pub munge_links: bool,
}

/// What `--munge-links` puts before a symlink's target (rsync's `SYMLINK_PREFIX`).
pub const MUNGE_PREFIX: &[u8] = b"/rsyncd-munged/";

/// A sender's `--munge-links`: a stored target without its prefix.
pub fn unmunge(target: &mut Vec<u8>) {
    if target.len() > MUNGE_PREFIX.len() && target.starts_with(MUNGE_PREFIX) {
        target.drain(..MUNGE_PREFIX.len());
    }
}

/// A receiver's `--munge-links`: every symlink of `list` gets its target behind the prefix.
pub fn munge_list(list: &mut crate::flist::FileList) {
    for e in &mut list.entries {
        if e.kind == crate::flist::FileKind::Symlink {
            let mut t = MUNGE_PREFIX.to_vec();
            t.extend_from_slice(e.link_target());
            e.set_link_target(t);
        }
    }
}

/// What the sender does with one symlink it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Send it as a symlink (or skip it without `-l`).
    Keep,
    /// Send what it points to; a missing referent is an error ("symlink has no referent").
    Referent,
    /// Send what it points to if that is a directory, else keep it (`-k`).
    IfDir,
}

impl SymlinkOptions {
    /// Whether the sender may follow any symlink (so the data it reads may come through one).
    pub fn sender_follows(&self) -> bool {
        self.copy_links || self.copy_unsafe_links || self.copy_dirlinks
    }

    /// What the sender does with the symlink at `path` (relative to the transfer root, as
    /// listed) pointing to `target` (rsync's `link_stat` and `readlink_stat`).
    pub fn follow(&self, target: &[u8], path: &[u8]) -> Follow {
        if self.copy_links || (self.copy_unsafe_links && unsafe_symlink(target, path)) {
            Follow::Referent
        } else if self.copy_dirlinks {
            Follow::IfDir
        } else {
            Follow::Keep
        }
    }
}

/// Whether a symlink at `path` (its name relative to the transfer root, as in the file list)
/// pointing to `target` leads outside the transferred tree: absolute and empty targets always
/// do; otherwise the `..` components of the target must never climb above the root, counted
/// from the link's directory depth (upstream's `unsafe_symlink` in util1.c, same rules: a
/// `..` in `path` restarts the count, `.` components count nothing).
pub fn unsafe_symlink(target: &[u8], path: &[u8]) -> bool {
    if target.is_empty() || target[0] == b'/' {
        return true;
    }
    // The directory depth of the link: every component of `path` but its last.
    let mut depth: i64 = 0;
    let mut comps = path.split(|&b| b == b'/').filter(|c| !c.is_empty());
    let mut last = comps.next();
    for next in comps {
        match last {
            Some(b"..") => depth = 0,
            Some(b".") => {}
            _ => depth += 1,
        }
        last = Some(next);
    }
    if last == Some(b"..") {
        depth = 0;
    }
    // Walk the target's directories; its last component only counts when it is "..".
    let parts: Vec<&[u8]> = target.split(|&b| b == b'/').collect();
    let Some((tail, dirs)) = parts.split_last() else {
        return false;
    };
    for comp in dirs.iter().filter(|c| !c.is_empty()) {
        match *comp {
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            b"." => {}
            _ => depth += 1,
        }
    }
    if *tail == b".." {
        depth -= 1;
    }
    depth < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_as_rsync_judges() {
        // Absolute and empty targets.
        assert!(unsafe_symlink(b"/etc/passwd", b"a"));
        assert!(unsafe_symlink(b"", b"a"));
        // At the root: no room to climb.
        assert!(unsafe_symlink(b"../x", b"link"));
        assert!(unsafe_symlink(b"..", b"link"));
        assert!(!unsafe_symlink(b"x", b"link"));
        assert!(!unsafe_symlink(b"./x", b"link"));
        // One directory down: one level of room.
        assert!(!unsafe_symlink(b"../f", b"d/up"));
        assert!(!unsafe_symlink(b"..", b"d/up"));
        assert!(unsafe_symlink(b"../../x", b"d/out"));
        // Going down first buys room, but climbing out at any point is unsafe.
        assert!(!unsafe_symlink(b"a/../../f", b"d/l"));
        assert!(unsafe_symlink(b"../../d/f", b"d/l"));
        // Doubled slashes and "." components count nothing.
        assert!(!unsafe_symlink(b"a//..//f", b"l"));
        assert!(unsafe_symlink(b"./../f", b"l"));
        // A source directory named ".." restarts the count.
        assert!(unsafe_symlink(b"../f", b"a/../l"));
    }

    #[test]
    fn follow_decisions() {
        let l = SymlinkOptions {
            copy_links: true,
            ..Default::default()
        };
        assert_eq!(l.follow(b"x", b"a"), Follow::Referent);
        let u = SymlinkOptions {
            copy_unsafe_links: true,
            copy_dirlinks: true,
            ..Default::default()
        };
        assert_eq!(u.follow(b"../x", b"a"), Follow::Referent);
        assert_eq!(u.follow(b"x", b"a"), Follow::IfDir);
        assert_eq!(SymlinkOptions::default().follow(b"/x", b"a"), Follow::Keep);
        assert!(!SymlinkOptions::default().sender_follows());
    }
}
