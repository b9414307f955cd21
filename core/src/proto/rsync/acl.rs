//! rsync's ACLs in the file list (`-A`, protocols 30–32; upstream `acls.c`): after every entry
//! but a symlink, the access ACL, and after a directory its default ACL, each either an index
//! into the ACLs of its kind sent before (`varint ndx + 1`) or `varint 0` and a literal:
//! a flags byte (`XMIT_USER_OBJ` 1, `XMIT_GROUP_OBJ` 2, `XMIT_MASK_OBJ` 4, `XMIT_OTHER_OBJ` 8,
//! `XMIT_NAME_LIST` 16), the present objects' permission bits as varints, then the named
//! entries (`varint count`, each `varint id`, `varint perms << 2 | 2 if a user | 1 if a name
//! follows`).
//!
//! An access ACL travels without what the mode says (`rsync_acl_strip_perms`: the owner and
//! other entries, the owning group unless a mask hides it, the mask when it equals the mode's
//! group bits); the receiver puts them back from the entry's mode (`change_sacl_perms`).
//!
//! Owns: that encoding, the index caches both ways, and turning it into and from the kernel's
//! `system.posix_acl_*` attribute values (which is how the engine carries ACLs). Every count
//! and value read is bounded. Does not own: mapping named ids through the uid/gid lists (ids
//! travel as numbers here; see `docs/RSYNC_COMPATIBILITY.md`).

use super::codec::{put_varint, read_u8, read_varint, ReadError, Source};
use crate::proto::DecodeError;

const XMIT_USER_OBJ: u8 = 1 << 0;
const XMIT_GROUP_OBJ: u8 = 1 << 1;
const XMIT_MASK_OBJ: u8 = 1 << 2;
const XMIT_OTHER_OBJ: u8 = 1 << 3;
const XMIT_NAME_LIST: u8 = 1 << 4;
const XFLAG_NAME_FOLLOWS: u32 = 1 << 0;
const XFLAG_NAME_IS_USER: u32 = 1 << 1;

// The kernel's attribute format (linux/posix_acl_xattr.h).
const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;
const NO_ID: u32 = u32::MAX;
const XATTR_VERSION: u32 = 2;

/// Most named entries accepted in one ACL (ext4 and XFS hold far fewer).
pub const MAX_ACL_NAMES: usize = 8192;
/// Most distinct ACLs of one kind accepted in a list.
pub const MAX_ACLS: usize = 1 << 20;

/// One named entry: a user or group id and its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedEntry {
    /// The uid or gid.
    pub id: u32,
    /// `rwx` bits.
    pub perms: u8,
    /// A user (else a group).
    pub user: bool,
}

/// An ACL as rsync sends it (`rsync_acl`): each object entry may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RsyncAcl {
    /// Owner entry.
    pub user_obj: Option<u8>,
    /// Owning-group entry.
    pub group_obj: Option<u8>,
    /// Mask entry.
    pub mask_obj: Option<u8>,
    /// Other entry.
    pub other_obj: Option<u8>,
    /// Named users, then named groups.
    pub names: Vec<NamedEntry>,
}

/// The entries of a kernel ACL attribute value (`None`: not in that format).
fn kernel_entries(value: &[u8]) -> Option<Vec<(u16, u16, u32)>> {
    let (head, rest) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != XATTR_VERSION || rest.len() % 8 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect(),
    )
}

impl RsyncAcl {
    /// The ACL a kernel attribute value holds (`None` or a value not in the kernel's format:
    /// no entries).
    pub fn from_kernel(value: Option<&[u8]>) -> RsyncAcl {
        let mut acl = RsyncAcl::default();
        for (tag, perm, id) in value.and_then(kernel_entries).unwrap_or_default() {
            let p = (perm & 7) as u8;
            match tag {
                TAG_USER_OBJ => acl.user_obj = Some(p),
                TAG_GROUP_OBJ => acl.group_obj = Some(p),
                TAG_MASK => acl.mask_obj = Some(p),
                TAG_OTHER => acl.other_obj = Some(p),
                TAG_USER | TAG_GROUP => acl.names.push(NamedEntry {
                    id,
                    perms: p,
                    user: tag == TAG_USER,
                }),
                _ => {}
            }
        }
        acl
    }

    /// An access ACL as rsync sends it: without what `mode` says (`rsync_acl_strip_perms`).
    /// No attribute at all is the mode's ACL, which strips to nothing.
    pub fn strip_access(mut self, mode: u32) -> RsyncAcl {
        let group_perms = ((mode >> 3) & 7) as u8;
        self.user_obj = None;
        self.other_obj = None;
        match self.mask_obj {
            None => self.group_obj = None,
            Some(mask) => {
                if self.group_obj == Some(group_perms) {
                    self.group_obj = None;
                }
                if !self.names.is_empty() && mask == group_perms {
                    self.mask_obj = None;
                }
            }
        }
        self
    }

    /// The kernel attribute value of access ACL `self` (as received) on an entry of `mode`
    /// (`change_sacl_perms`), or `None` when it says no more than the mode.
    pub fn access_to_kernel(&self, mode: u32) -> Option<Vec<u8>> {
        if self.names.is_empty() {
            return None;
        }
        let group = ((mode >> 3) & 7) as u16;
        Some(kernel_value(
            ((mode >> 6) & 7) as u16,
            self.group_obj.map_or(group, u16::from),
            Some(group),
            (mode & 7) as u16,
            &self.names,
        ))
    }

    /// The kernel attribute value of default ACL `self`, or `None` for no default ACL (rsync
    /// deletes it when the owner entry is missing).
    pub fn default_to_kernel(&self) -> Option<Vec<u8>> {
        let user = self.user_obj?;
        let group = self.group_obj.unwrap_or(0);
        let mask = match self.mask_obj {
            Some(m) => Some(u16::from(m)),
            None if !self.names.is_empty() => Some(
                self.names
                    .iter()
                    .fold(u16::from(group), |m, n| m | u16::from(n.perms)),
            ),
            None => None,
        };
        Some(kernel_value(
            u16::from(user),
            u16::from(group),
            mask,
            u16::from(self.other_obj.unwrap_or(0)),
            &self.names,
        ))
    }

    /// Append `self` as a literal (`send_rsync_acl` after its `varint 0`).
    fn put_literal(&self, out: &mut Vec<u8>) {
        let mut flags = 0u8;
        for (present, bit) in [
            (self.user_obj.is_some(), XMIT_USER_OBJ),
            (self.group_obj.is_some(), XMIT_GROUP_OBJ),
            (self.mask_obj.is_some(), XMIT_MASK_OBJ),
            (self.other_obj.is_some(), XMIT_OTHER_OBJ),
            (!self.names.is_empty(), XMIT_NAME_LIST),
        ] {
            if present {
                flags |= bit;
            }
        }
        out.push(flags);
        for p in [self.user_obj, self.group_obj, self.mask_obj, self.other_obj]
            .into_iter()
            .flatten()
        {
            put_varint(out, i32::from(p));
        }
        if !self.names.is_empty() {
            put_varint(out, self.names.len() as i32);
            for n in &self.names {
                put_varint(out, n.id as i32);
                let user = if n.user { XFLAG_NAME_IS_USER } else { 0 };
                put_varint(out, ((u32::from(n.perms) << 2) | user) as i32);
            }
        }
    }

    /// Read a literal (`recv_rsync_acl` after its `varint 0`).
    fn read_literal(s: &mut impl Source) -> Result<RsyncAcl, ReadError> {
        let flags = read_u8(s)?;
        if flags & !0x1f != 0 {
            return Err(bad("ACL flags", flags));
        }
        let mut obj = |bit: u8| -> Result<Option<u8>, ReadError> {
            if flags & bit == 0 {
                return Ok(None);
            }
            let v = read_varint(s)?;
            if !(0..=7).contains(&v) {
                return Err(bad("ACL permission bits", v));
            }
            Ok(Some(v as u8))
        };
        let mut acl = RsyncAcl {
            user_obj: obj(XMIT_USER_OBJ)?,
            group_obj: obj(XMIT_GROUP_OBJ)?,
            mask_obj: obj(XMIT_MASK_OBJ)?,
            other_obj: obj(XMIT_OTHER_OBJ)?,
            names: Vec::new(),
        };
        if flags & XMIT_NAME_LIST != 0 {
            let count = read_varint(s)?;
            if count < 0 || count as usize > MAX_ACL_NAMES {
                return Err(DecodeError::TooLarge {
                    what: "ACL entry count",
                    got: count as u32 as u64,
                    max: MAX_ACL_NAMES as u64,
                }
                .into());
            }
            for _ in 0..count {
                let id = read_varint(s)? as u32;
                let x = read_varint(s)? as u32;
                if x >> 2 > 7 {
                    return Err(bad("ACL entry permission bits", x));
                }
                if x & XFLAG_NAME_FOLLOWS != 0 {
                    // Only sent with incremental recursion, which arsync declines.
                    return Err(bad("ACL entry", "a name follows (incremental recursion)"));
                }
                acl.names.push(NamedEntry {
                    id,
                    perms: (x >> 2) as u8,
                    user: x & XFLAG_NAME_IS_USER != 0,
                });
            }
        }
        Ok(acl)
    }
}

/// A kernel ACL attribute value from its parts (entries in the kernel's order: by tag, then id).
fn kernel_value(
    user: u16,
    group: u16,
    mask: Option<u16>,
    other: u16,
    names: &[NamedEntry],
) -> Vec<u8> {
    let mut es: Vec<(u16, u16, u32)> =
        vec![(TAG_USER_OBJ, user, NO_ID), (TAG_GROUP_OBJ, group, NO_ID)];
    for n in names {
        let tag = if n.user { TAG_USER } else { TAG_GROUP };
        es.push((tag, u16::from(n.perms), n.id));
    }
    if let Some(m) = mask {
        es.push((TAG_MASK, m, NO_ID));
    }
    es.push((TAG_OTHER, other, NO_ID));
    es.sort_by_key(|&(tag, _, id)| (tag, id));
    let mut v = XATTR_VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in es {
        v.extend(tag.to_le_bytes());
        v.extend((perm & 7).to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

fn bad(what: &'static str, detail: impl std::fmt::Display) -> ReadError {
    DecodeError::invalid(what, detail.to_string()).into()
}

/// One direction's ACLs sent so far, by kind (`access_acl_list`, `default_acl_list`).
#[derive(Debug, Default)]
pub struct AclCache {
    access: Vec<RsyncAcl>,
    default: Vec<RsyncAcl>,
}

impl AclCache {
    fn list(&mut self, default: bool) -> &mut Vec<RsyncAcl> {
        if default {
            &mut self.default
        } else {
            &mut self.access
        }
    }

    /// Append `acl` (`send_rsync_acl`): the index of an equal one sent before, or a literal.
    pub fn put(&mut self, out: &mut Vec<u8>, acl: RsyncAcl, default: bool) {
        let list = self.list(default);
        match list.iter().position(|a| *a == acl) {
            Some(i) => put_varint(out, i as i32 + 1),
            None => {
                put_varint(out, 0);
                acl.put_literal(out);
                list.push(acl);
            }
        }
    }

    /// Read one ACL (`recv_rsync_acl`): a literal, or one received before.
    pub fn read(&mut self, s: &mut impl Source, default: bool) -> Result<RsyncAcl, ReadError> {
        let ndx = read_varint(s)?;
        let list = self.list(default);
        if ndx < 0 || ndx as usize > list.len() {
            return Err(bad("ACL index", ndx));
        }
        if ndx > 0 {
            return Ok(list[ndx as usize - 1].clone());
        }
        if list.len() >= MAX_ACLS {
            return Err(DecodeError::TooLarge {
                what: "ACL list",
                got: list.len() as u64 + 1,
                max: MAX_ACLS as u64,
            }
            .into());
        }
        let acl = RsyncAcl::read_literal(s)?;
        list.push(acl.clone());
        Ok(acl)
    }
}

/// An entry's ACLs as kernel attribute values: (access, default).
pub type KernelAcls = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Append the ACLs of an entry of `mode` (`send_acl`): its access ACL, and a directory's
/// default ACL. Not called for symlinks.
pub fn put_entry_acls(out: &mut Vec<u8>, cache: &mut AclCache, mode: u32, acls: &KernelAcls) {
    let access = RsyncAcl::from_kernel(acls.0.as_deref()).strip_access(mode);
    cache.put(out, access, false);
    if mode & 0o170_000 == 0o040_000 {
        cache.put(out, RsyncAcl::from_kernel(acls.1.as_deref()), true);
    }
}

/// Read the ACLs of an entry of `mode` (`receive_acl`) as kernel attribute values.
pub fn read_entry_acls(
    s: &mut impl Source,
    cache: &mut AclCache,
    mode: u32,
) -> Result<KernelAcls, ReadError> {
    let access = cache.read(s, false)?.access_to_kernel(mode);
    let default = if mode & 0o170_000 == 0o040_000 {
        cache.read(s, true)?.default_to_kernel()
    } else {
        None
    };
    Ok((access, default))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes<'a>(&'a [u8]);

    impl Source for Bytes<'_> {
        fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
            if self.0.len() < buf.len() {
                return Err(DecodeError::invalid("test", "short").into());
            }
            let (a, b) = self.0.split_at(buf.len());
            buf.copy_from_slice(a);
            self.0 = b;
            Ok(())
        }
    }

    fn named(id: u32, perms: u8, user: bool) -> NamedEntry {
        NamedEntry { id, perms, user }
    }

    #[test]
    fn access_acls_travel_without_the_mode_and_come_back_whole() {
        // u::rw-, u:1:r--, g::r--, g:2:rw-, m::rw-, o::--- on a 0660 file.
        let have = kernel_value(6, 4, Some(6), 0, &[named(1, 4, true), named(2, 6, false)]);
        let mode = 0o100_660;
        let sent = RsyncAcl::from_kernel(Some(&have)).strip_access(mode);
        assert_eq!(sent.user_obj, None);
        assert_eq!(sent.other_obj, None);
        assert_eq!(sent.group_obj, Some(4), "hidden by the mask: kept");
        assert_eq!(
            sent.mask_obj, None,
            "equal to the mode's group bits: dropped"
        );
        let mut out = Vec::new();
        let mut cache = AclCache::default();
        put_entry_acls(&mut out, &mut cache, mode, &(Some(have.clone()), None));
        // The same ACL again: an index.
        put_entry_acls(&mut out, &mut cache, mode, &(Some(have.clone()), None));
        // A file without one.
        put_entry_acls(&mut out, &mut cache, 0o100_644, &(None, None));
        let mut s = Bytes(&out);
        let mut rcache = AclCache::default();
        for _ in 0..2 {
            let got = read_entry_acls(&mut s, &mut rcache, mode).expect("read");
            assert_eq!(got, (Some(have.clone()), None));
        }
        let got = read_entry_acls(&mut s, &mut rcache, 0o100_644).expect("read");
        assert_eq!(got, (None, None));
        assert!(s.0.is_empty());
    }

    #[test]
    fn directories_carry_default_acls_whole() {
        let def = kernel_value(7, 5, Some(5), 0, &[named(1, 5, true), named(4, 1, false)]);
        let mut out = Vec::new();
        put_entry_acls(
            &mut out,
            &mut AclCache::default(),
            0o040_755,
            &(None, Some(def.clone())),
        );
        // Access: index 0, literal with no flags; default: literal with every object.
        assert_eq!(&out[..3], &[0, 0, 0]);
        let got =
            read_entry_acls(&mut Bytes(&out), &mut AclCache::default(), 0o040_755).expect("read");
        assert_eq!(got, (None, Some(def)));
    }

    #[test]
    fn acls_follow_entries_in_the_list_hard_links_included() {
        use super::super::flist::{FlistDecoder, FlistEncoder, FlistFormat, RsyncEntry};
        let fmt = FlistFormat {
            protocol: 31,
            varint_flags: true,
            uid: false,
            gid: false,
            links: true,
            devices: false,
            specials: false,
            hard_links: true,
            checksum_len: None,
            id0_names: true,
            numeric_ids: false,
            acls: true,
            missing_args: false,
        };
        let access = kernel_value(6, 4, Some(6), 0, &[named(1, 4, true)]);
        let default = kernel_value(7, 5, None, 0, &[]);
        let entry = |name: &str, mode: u32, acls: KernelAcls| RsyncEntry {
            name: name.as_bytes().to_vec(),
            mode,
            size: 0,
            mtime: 1,
            nsec: 0,
            uid: 0,
            gid: 0,
            rdev: (0, 0),
            link_target: if mode & 0o170_000 == 0o120_000 {
                b"f".to_vec()
            } else {
                Vec::new()
            },
            hlink_first: None,
            checksum: Vec::new(),
            top_dir: false,
            no_content: false,
            acls,
        };
        let mut entries = vec![
            entry("d", 0o040_755, (None, Some(default))),
            entry("f", 0o100_660, (Some(access.clone()), None)),
            entry("g", 0o100_644, (None, None)),
            entry("l", 0o120_777, (None, None)),
        ];
        entries[1].hlink_first = Some(1);
        // A second name of `f` with its own (here: no) ACL after the abbreviated entry.
        let mut link = entry("f2", 0o100_660, (None, None));
        link.hlink_first = Some(1);
        entries.push(link);
        let mut enc = FlistEncoder::new(fmt);
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            enc.put(&mut out, e, e.hlink_first.map(|h| (h, h as usize == i)));
        }
        enc.end(&mut out, 0, true);
        let mut d = FlistDecoder::new(fmt);
        let mut src = Bytes(&out);
        for e in &entries {
            let got = d.next(&mut src).expect("entry").expect("not the end");
            assert_eq!((&got.name, &got.acls), (&e.name, &e.acls));
        }
        assert!(d.next(&mut src).expect("end").is_none());
        assert!(src.0.is_empty());
    }

    #[test]
    fn hostile_acls_are_refused() {
        let mut c = AclCache::default();
        // An index past the list.
        assert!(c.read(&mut Bytes(&[2]), false).is_err());
        // Unknown flag bits; permission bits over 7; too many names.
        assert!(c.read(&mut Bytes(&[0, 0x20]), false).is_err());
        assert!(c.read(&mut Bytes(&[0, XMIT_USER_OBJ, 8]), false).is_err());
        let mut many = vec![0, XMIT_NAME_LIST];
        put_varint(&mut many, MAX_ACL_NAMES as i32 + 1);
        assert!(c.read(&mut Bytes(&many), false).is_err());
        let mut perms = vec![0, XMIT_NAME_LIST, 1, 5];
        put_varint(&mut perms, 8 << 2);
        assert!(c.read(&mut Bytes(&perms), false).is_err());
    }
}
