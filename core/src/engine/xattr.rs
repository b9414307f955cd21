//! Extended attributes (`-X`) and POSIX ACLs (`-A`): read a path's, and apply them to a file.
//!
//! As rsync does, an unprivileged run handles only the `user.` namespace with `-X`; root handles
//! every namespace except `system.`. ACLs travel as the kernel's own `system.posix_acl_access`
//! (every entry but symlinks) and `system.posix_acl_default` (directories) values, copied only
//! with `-A`. Setting the access ACL also sets the mode's permission bits (the group bits are the
//! ACL's mask), so the receiver applies these after the mode, as rsync's `set_acl` follows
//! `set_file_attrs`' chmod. Does not own: the wire (an entry's list of [`Xattr`]s).

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::XattrFlags;

use crate::flist::Xattr;

use super::options::SyncOptions;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The attribute names holding an entry's access ACL and a directory's default ACL.
pub const ACL_NAMES: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];

/// Which attributes a run copies: `-X`'s, `-A`'s, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Copied {
    /// `-X`: extended attributes outside `system.`.
    pub xattrs: bool,
    /// `-A`: the two ACL attributes.
    pub acls: bool,
}

impl Copied {
    /// What `opts` asks to copy.
    pub fn of(opts: &SyncOptions) -> Self {
        Copied {
            xattrs: opts.xattrs,
            acls: opts.acls,
        }
    }

    /// Whether anything is copied.
    pub fn any(self) -> bool {
        self.xattrs || self.acls
    }

    /// Whether this process copies attribute `name`.
    pub fn copies(self, name: &[u8]) -> bool {
        if name.starts_with(b"system.") {
            return self.acls && ACL_NAMES.contains(&name);
        }
        self.xattrs && (is_root() || name.starts_with(b"user."))
    }
}

fn names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|n| !n.is_empty())
}

fn grow(mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < (1 << 20) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The attributes of `path` (not following a final symlink) that this process copies, sorted.
pub fn read_all(path: &Path, copied: Copied) -> io::Result<Vec<Xattr>> {
    let list = match grow(|b| rustix::fs::llistxattr(path, b)) {
        Ok(l) => l,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names(&list).filter(|n| copied.copies(n)) {
        let value = grow(|b| rustix::fs::lgetxattr(path, name, b))?;
        out.push(Xattr {
            name: name.to_vec(),
            value,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Make the copied attributes of the open file `fd` equal `want`.
pub fn apply_fd(fd: impl AsFd, want: &[Xattr], copied: Copied) -> io::Result<()> {
    let fd = fd.as_fd();
    let list = grow(|b| rustix::fs::flistxattr(fd, b))?;
    for name in names(&list).filter(|n| copied.copies(n)) {
        if !want.iter().any(|x| x.name == name) {
            rustix::fs::fremovexattr(fd, name)?;
        }
    }
    for x in want.iter().filter(|x| copied.copies(&x.name)) {
        rustix::fs::fsetxattr(fd, x.name.as_slice(), &x.value, XattrFlags::empty())?;
    }
    Ok(())
}

/// Make the copied attributes of `path` (not following a final symlink) equal `want`.
pub fn apply_path(path: &Path, want: &[Xattr], copied: Copied) -> io::Result<()> {
    let have = read_all(path, copied)?;
    for h in &have {
        if !want.iter().any(|x| x.name == h.name) {
            rustix::fs::lremovexattr(path, h.name.as_slice())?;
        }
    }
    for x in want.iter().filter(|x| copied.copies(&x.name)) {
        rustix::fs::lsetxattr(path, x.name.as_slice(), &x.value, XattrFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_and_xattrs_are_chosen_apart() {
        let x = Copied {
            xattrs: true,
            acls: false,
        };
        let a = Copied {
            xattrs: false,
            acls: true,
        };
        for name in ACL_NAMES {
            assert!(!x.copies(name) && a.copies(name));
        }
        assert!(x.copies(b"user.k") && !a.copies(b"user.k"));
        assert!(!a.copies(b"system.other") && !x.copies(b"system.other"));
        assert!(!Copied::default().any() && a.any() && x.any());
    }
}
