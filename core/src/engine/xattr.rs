//! Extended attributes (`-X`): read a path's, compare, and apply them to a file.
//!
//! As rsync does, an unprivileged run handles only the `user.` namespace; root handles every
//! namespace except `system.` (ACLs, which are `-A`'s business).

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::XattrFlags;

use crate::flist::Xattr;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether this process copies attribute `name`.
pub fn copies(name: &[u8]) -> bool {
    if name.starts_with(b"system.") {
        return false;
    }
    is_root() || name.starts_with(b"user.")
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
pub fn read_all(path: &Path) -> io::Result<Vec<Xattr>> {
    let list = match grow(|b| rustix::fs::llistxattr(path, b)) {
        Ok(l) => l,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names(&list).filter(|n| copies(n)) {
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
pub fn apply_fd(fd: impl AsFd, want: &[Xattr]) -> io::Result<()> {
    let fd = fd.as_fd();
    let list = grow(|b| rustix::fs::flistxattr(fd, b))?;
    for name in names(&list).filter(|n| copies(n)) {
        if !want.iter().any(|x| x.name == name) {
            rustix::fs::fremovexattr(fd, name)?;
        }
    }
    for x in want.iter().filter(|x| copies(&x.name)) {
        rustix::fs::fsetxattr(fd, x.name.as_slice(), &x.value, XattrFlags::empty())?;
    }
    Ok(())
}

/// Make the copied attributes of `path` (not following a final symlink) equal `want`.
pub fn apply_path(path: &Path, want: &[Xattr]) -> io::Result<()> {
    let have = read_all(path)?;
    for h in &have {
        if !want.iter().any(|x| x.name == h.name) {
            rustix::fs::lremovexattr(path, h.name.as_slice())?;
        }
    }
    for x in want.iter().filter(|x| copies(&x.name)) {
        rustix::fs::lsetxattr(path, x.name.as_slice(), &x.value, XattrFlags::empty())?;
    }
    Ok(())
}
