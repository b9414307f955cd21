//! POSIX ACLs (`-A`) at the destination: whether an existing entry's ACLs differ from the
//! sender's as rsync judges it (the itemize `a` column), and setting them on an entry that is
//! not being rewritten.
//!
//! ACLs travel as the kernel's `system.posix_acl_access`/`system.posix_acl_default` attribute
//! values in an entry's [`Xattr`] list; which names `-A` copies, reading them at the sender and
//! applying them to a written file are [`super::xattr`]'s. Does not own: the mode (the access
//! ACL's owner, other and mask entries are the mode's bits, which `-p` compares and sets).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{Mode, OFlags, XattrFlags};

use super::xattr::ACL_NAMES;
use crate::flist::{FileEntry, FileKind, Xattr};
use crate::proto::rsync::acl::{NamedEntry, RsyncAcl};

/// What of an access ACL the mode does not say, as rsync compares two (`rsync_acl_equal_enough`
/// in acls.c): whether there is a mask, the owning group's entry when there is (then it is no
/// longer the mode's group bits), and the named users and groups.
fn beyond_mode(value: Option<&[u8]>) -> (bool, Option<u8>, Vec<NamedEntry>) {
    let acl = RsyncAcl::from_kernel(value);
    let has_mask = acl.mask_obj.is_some();
    (has_mask, acl.group_obj.filter(|_| has_mask), acl.names)
}

/// Whether access ACL values `have` and `want` (`None`: no ACL beyond the mode) differ in more
/// than the mode's bits.
pub fn access_differs(have: Option<&[u8]>, want: Option<&[u8]>) -> bool {
    beyond_mode(have) != beyond_mode(want)
}

/// The value of ACL attribute `name` in `want`.
fn wanted<'a>(want: &'a [Xattr], name: &[u8]) -> Option<&'a [u8]> {
    want.iter()
        .find(|x| x.name == name)
        .map(|x| x.value.as_slice())
}

/// Run `f` on a path naming entry `name` of `dir` itself (never a symlink's target).
fn at<T>(dir: impl AsFd, name: &[u8], f: impl FnOnce(&str) -> io::Result<T>) -> io::Result<T> {
    let fd = rustix::fs::openat(
        dir,
        std::ffi::OsStr::from_bytes(name),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    f(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn get(path: &str, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    loop {
        match rustix::fs::getxattr(path, name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(rustix::io::Errno::RANGE) if buf.len() < (1 << 20) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The ACL names that apply to an entry of `kind`: none for a symlink, the default ACL only for
/// a directory.
fn names_for(kind: FileKind) -> &'static [&'static [u8]] {
    match kind {
        FileKind::Symlink => &[],
        FileKind::Dir => &ACL_NAMES,
        _ => &ACL_NAMES[..1],
    }
}

/// Whether the ACLs of existing entry `name` in `dir` differ from `e`'s as rsync itemizes it
/// (the access ACL beyond the mode; a directory's default ACL exactly).
pub fn differ_at(dir: impl AsFd, name: &[u8], e: &FileEntry) -> io::Result<bool> {
    let names = names_for(e.kind);
    if names.is_empty() {
        return Ok(false);
    }
    at(dir, name, |path| {
        let access = get(path, ACL_NAMES[0])?;
        if access_differs(access.as_deref(), wanted(e.xattrs(), ACL_NAMES[0])) {
            return Ok(true);
        }
        match names.get(1) {
            Some(def) => Ok(get(path, def)?.as_deref() != wanted(e.xattrs(), def)),
            None => Ok(false),
        }
    })
}

/// Make the ACLs of existing entry `name` in `dir` equal `e`'s (after its mode is set).
pub fn apply_at(dir: impl AsFd, name: &[u8], e: &FileEntry) -> io::Result<()> {
    let names = names_for(e.kind);
    if names.is_empty() {
        return Ok(());
    }
    at(dir, name, |path| {
        for &n in names {
            match wanted(e.xattrs(), n) {
                Some(v) => rustix::fs::setxattr(path, n, v, XattrFlags::empty())?,
                None => match rustix::fs::removexattr(path, n) {
                    Ok(()) | Err(rustix::io::Errno::NODATA) => {}
                    Err(err) => return Err(err.into()),
                },
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // (tag, perms, id) of the kernel's format: owner 1, user 2, group 4, named group 8,
    // mask 0x10, other 0x20.
    fn acl(es: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for &(t, p, id) in es {
            v.extend(t.to_le_bytes());
            v.extend(p.to_le_bytes());
            v.extend(id.to_le_bytes());
        }
        v
    }

    const NO_ID: u32 = u32::MAX;

    #[test]
    fn the_modes_bits_are_not_an_acl_difference() {
        let a = acl(&[
            (1, 6, NO_ID),
            (2, 4, 7),
            (4, 4, NO_ID),
            (0x10, 6, NO_ID),
            (0x20, 0, NO_ID),
        ]);
        // Other owner/other/mask bits: a mode change (`p`), not an ACL one.
        let b = acl(&[
            (1, 7, NO_ID),
            (2, 4, 7),
            (4, 4, NO_ID),
            (0x10, 4, NO_ID),
            (0x20, 5, NO_ID),
        ]);
        assert!(!access_differs(Some(&a), Some(&b)));
        // Another named user, another owning-group entry behind a mask, or none at all.
        let c = acl(&[
            (1, 6, NO_ID),
            (2, 4, 8),
            (4, 4, NO_ID),
            (0x10, 6, NO_ID),
            (0x20, 0, NO_ID),
        ]);
        let d = acl(&[
            (1, 6, NO_ID),
            (2, 4, 7),
            (4, 0, NO_ID),
            (0x10, 6, NO_ID),
            (0x20, 0, NO_ID),
        ]);
        assert!(access_differs(Some(&a), Some(&c)));
        assert!(access_differs(Some(&a), Some(&d)));
        assert!(access_differs(Some(&a), None));
        assert!(!access_differs(None, None));
    }
}
