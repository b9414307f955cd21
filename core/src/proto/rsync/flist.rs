//! rsync's file list as a receiver reads it (`recv_file_entry`, `recv_file_list`,
//! `recv_id_list` in upstream's `flist.c` and `uidlist.c`), for protocols 30–32, and as a
//! sender writes it (`send_file_entry`), one list or (incremental recursion) the many lists
//! of a session, which share the encoder's state. The order both sides sort it in
//! (upstream's `f_name_cmp`), which gives each entry its index, is arsync's own list order,
//! [`crate::flist::path_order`].
//!
//! Owns: the per-entry field order and "same as previous" state, the end-of-list marker and
//! its I/O-error value, the uid/gid name lists (inline names with incremental recursion),
//! and the bounds on every length read. Does not
//! own what the entries mean to the destination (the engine's generator), the ACLs that follow
//! an entry with `-A` (their encoding is [`super::acl`]'s; this reads and writes them in place)
//! or xattrs (refused: the option that would send them is not offered).

use std::collections::HashSet;

use super::acl::{put_entry_acls, read_entry_acls, AclCache, KernelAcls};
use super::codec::{read_i32, read_u8, read_varint, read_varlong, ReadError, Source};
use crate::proto::DecodeError;

/// Longest path or symlink target accepted (Linux `PATH_MAX` - 1).
pub const MAX_PATH: usize = 4095;
/// Most entries accepted in one list.
pub const MAX_ENTRIES: usize = 50_000_000;

/// Flag bits of an entry (`XMIT_*`).
pub mod xmit {
    /// A top-level directory (or filler bit on non-directories).
    pub const TOP_DIR: u32 = 1 << 0;
    /// Mode as the previous entry.
    pub const SAME_MODE: u32 = 1 << 1;
    /// A second flag byte follows (byte-flag mode).
    pub const EXTENDED_FLAGS: u32 = 1 << 2;
    /// Uid as the previous entry.
    pub const SAME_UID: u32 = 1 << 3;
    /// Gid as the previous entry.
    pub const SAME_GID: u32 = 1 << 4;
    /// The name shares a prefix with the previous one.
    pub const SAME_NAME: u32 = 1 << 5;
    /// The name suffix length is a varint, not a byte.
    pub const LONG_NAME: u32 = 1 << 6;
    /// Mtime as the previous entry.
    pub const SAME_TIME: u32 = 1 << 7;
    /// Device major as the previous entry.
    pub const SAME_RDEV_MAJOR: u32 = 1 << 8;
    /// A hard-linked file.
    pub const HLINKED: u32 = 1 << 9;
    /// A directory whose contents are not sent (`-d`, an implied directory, a mount point
    /// with `-x`); shares its bit with `SAME_RDEV_MAJOR`, which only devices use.
    pub const NO_CONTENT_DIR: u32 = 1 << 8;
    /// A user name follows the uid.
    pub const USER_NAME_FOLLOWS: u32 = 1 << 10;
    /// A group name follows the gid.
    pub const GROUP_NAME_FOLLOWS: u32 = 1 << 11;
    /// The first of its hard-link group (with `HLINKED`); on the end marker, an I/O error
    /// value follows.
    pub const HLINK_FIRST: u32 = 1 << 12;
    /// Nanoseconds of the mtime follow.
    pub const MOD_NSEC: u32 = 1 << 13;
}

/// What decides which fields an entry carries: the session's options and negotiation.
#[derive(Debug, Clone, Copy)]
pub struct FlistFormat {
    /// Negotiated protocol (30–32).
    pub protocol: u8,
    /// Flags as varints (`CF_VARINT_FLIST_FLAGS`).
    pub varint_flags: bool,
    /// `-o`.
    pub uid: bool,
    /// `-g`.
    pub gid: bool,
    /// `-l`.
    pub links: bool,
    /// `--devices`.
    pub devices: bool,
    /// `--specials`.
    pub specials: bool,
    /// `-H`.
    pub hard_links: bool,
    /// `-c`: the length of the per-file checksum, if any.
    pub checksum_len: Option<usize>,
    /// The id lists carry the name of id 0 (`CF_ID0_NAMES`).
    pub id0_names: bool,
    /// `--numeric-ids`: no id lists.
    pub numeric_ids: bool,
    /// `-A`: ACLs follow every entry but a symlink, and the id lists are sent even without
    /// `-o`/`-g` (`recv_id_list`).
    pub acls: bool,
    /// `--delete-missing-args`: an entry may have mode 0, a missing source argument the
    /// receiver deletes (`IS_MISSING_FILE`); otherwise mode 0 is refused as any bad type.
    pub missing_args: bool,
}

impl FlistFormat {
    /// Whether the uid list follows the entries.
    fn uid_list(&self) -> bool {
        !self.numeric_ids && (self.uid || self.acls)
    }
    /// Whether the gid list follows the entries.
    fn gid_list(&self) -> bool {
        !self.numeric_ids && (self.gid || self.acls)
    }
}

/// One entry as the sender described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncEntry {
    /// Path relative to the transfer root, as sent.
    pub name: Vec<u8>,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Length (regular files; symlink target length; directory size).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub nsec: u32,
    /// Owner id (0 unless `-o`).
    pub uid: u32,
    /// Group id (0 unless `-g`).
    pub gid: u32,
    /// Device major and minor (devices only).
    pub rdev: (u32, u32),
    /// Symlink target.
    pub link_target: Vec<u8>,
    /// `-H`: the wire index of the first entry of this entry's link group.
    pub hlink_first: Option<u32>,
    /// `-c`: the sender's checksum of the content.
    pub checksum: Vec<u8>,
    /// `XMIT_TOP_DIR` on a directory.
    pub top_dir: bool,
    /// `XMIT_NO_CONTENT_DIR` on a directory: its contents are not listed (a mount point
    /// under `-x`, an implied directory); the receiver deletes nothing inside it.
    pub no_content: bool,
    /// `-A`: the access and (directories) default ACL, as kernel attribute values.
    pub acls: KernelAcls,
}

impl RsyncEntry {
    /// `--delete-missing-args`: the entry rsync's sender lists for a source argument that does
    /// not exist — `name` with its zeroed `stat` (mode 0, time 0, ids 0).
    pub fn missing(name: Vec<u8>) -> RsyncEntry {
        RsyncEntry {
            name,
            mode: 0,
            size: 0,
            mtime: 0,
            nsec: 0,
            uid: 0,
            gid: 0,
            rdev: (0, 0),
            link_target: Vec::new(),
            hlink_first: None,
            checksum: Vec::new(),
            top_dir: false,
            no_content: false,
            acls: Default::default(),
        }
    }

    /// The file type bits.
    pub fn file_type(&self) -> u32 {
        self.mode & 0o170_000
    }
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == 0o040_000
    }
}

/// The receiver's reading state: the previous entry's values that later ones may repeat.
#[derive(Debug)]
pub struct FlistDecoder {
    fmt: FlistFormat,
    prev_name: Vec<u8>,
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    rdev_major: u32,
    acl_cache: AclCache,
    /// Entries read so far, in wire order.
    pub entries: Vec<RsyncEntry>,
    /// The sender's I/O error flags from the end marker.
    pub io_error: i32,
    /// With incremental recursion: the user and group names that came inline with their
    /// ids (`XMIT_USER_NAME_FOLLOWS`, `XMIT_GROUP_NAME_FOLLOWS`) since these were last taken.
    pub inline_names: (IdList, IdList),
}

fn bad(what: &'static str, detail: impl std::fmt::Display) -> ReadError {
    DecodeError::invalid(what, detail).into()
}

impl FlistDecoder {
    /// A decoder for a session of this format.
    pub fn new(fmt: FlistFormat) -> Self {
        FlistDecoder {
            fmt,
            prev_name: Vec::new(),
            mode: 0,
            mtime: 0,
            uid: 0,
            gid: 0,
            rdev_major: 0,
            acl_cache: AclCache::default(),
            entries: Vec::new(),
            io_error: 0,
            inline_names: (Vec::new(), Vec::new()),
        }
    }

    fn read_flags(&mut self, s: &mut impl Source) -> Result<Option<u32>, ReadError> {
        if self.fmt.varint_flags {
            let f = read_varint(s)? as u32;
            if f == 0 {
                self.io_error = read_varint(s)?;
                return Ok(None);
            }
            return Ok(Some(f));
        }
        let mut f = u32::from(read_u8(s)?);
        if f == 0 {
            return Ok(None);
        }
        if f & xmit::EXTENDED_FLAGS != 0 {
            f |= u32::from(read_u8(s)?) << 8;
            if f == xmit::EXTENDED_FLAGS | xmit::HLINK_FIRST {
                self.io_error = read_varint(s)?;
                return Ok(None);
            }
        }
        Ok(Some(f))
    }

    /// `-A`: the ACLs that follow an entry of `mode` (none after a symlink).
    fn read_acls(&mut self, s: &mut impl Source, mode: u32) -> Result<KernelAcls, ReadError> {
        if self.fmt.acls && mode & 0o170_000 != 0o120_000 {
            read_entry_acls(s, &mut self.acl_cache, mode)
        } else {
            Ok((None, None))
        }
    }

    /// Read the next entry; `None` at the end of the list (its I/O error in `io_error`).
    pub fn next(&mut self, s: &mut impl Source) -> Result<Option<&RsyncEntry>, ReadError> {
        let Some(flags) = self.read_flags(s)? else {
            return Ok(None);
        };
        if self.entries.len() >= MAX_ENTRIES {
            return Err(DecodeError::TooLarge {
                what: "file list",
                got: self.entries.len() as u64 + 1,
                max: MAX_ENTRIES as u64,
            }
            .into());
        }
        let l1 = if flags & xmit::SAME_NAME != 0 {
            usize::from(read_u8(s)?)
        } else {
            0
        };
        let l2 = if flags & xmit::LONG_NAME != 0 {
            read_varint(s)? as u32 as usize
        } else {
            usize::from(read_u8(s)?)
        };
        if l1 > self.prev_name.len() || l1 + l2 > MAX_PATH {
            return Err(bad("file name", format!("prefix {l1} + suffix {l2} bytes")));
        }
        let mut name = self.prev_name[..l1].to_vec();
        let start = name.len();
        name.resize(l1 + l2, 0);
        s.read_exact(&mut name[start..])?;
        self.prev_name.clone_from(&name);

        if flags & xmit::HLINKED != 0 && flags & xmit::HLINK_FIRST == 0 {
            let first = read_varint(s)?;
            if first < 0 || first as usize >= self.entries.len() {
                return Err(bad("hard-link index", first));
            }
            let f = &self.entries[first as usize];
            let mut e = f.clone();
            e.name = name;
            e.hlink_first = Some(first as u32);
            e.top_dir = false;
            self.mode = f.mode;
            self.mtime = f.mtime;
            self.uid = f.uid;
            self.gid = f.gid;
            self.rdev_major = f.rdev.0;
            // Its own ACLs follow all the same (`recv_file_entry` reaches `receive_acl`).
            e.acls = self.read_acls(s, e.mode)?;
            self.entries.push(e);
            return Ok(self.entries.last());
        }

        let size = read_varlong(s, 3)?;
        if size < 0 {
            return Err(bad("file length", size));
        }
        if flags & xmit::SAME_TIME == 0 {
            self.mtime = read_varlong(s, 4)?;
        }
        let nsec = if flags & xmit::MOD_NSEC != 0 {
            let n = read_varint(s)?;
            if !(0..1_000_000_000).contains(&n) {
                return Err(bad("mtime nsec", n));
            }
            n as u32
        } else {
            0
        };
        if flags & xmit::SAME_MODE == 0 {
            self.mode = read_i32(s)? as u32;
        }
        let mode = self.mode;
        let ft = mode & 0o170_000;
        let missing = mode == 0 && self.fmt.missing_args;
        if !missing
            && !matches!(
                ft,
                0o100_000 | 0o040_000 | 0o120_000 | 0o020_000 | 0o060_000 | 0o010_000 | 0o140_000
            )
        {
            return Err(bad("mode", format!("{mode:o}")));
        }
        if self.fmt.uid && flags & xmit::SAME_UID == 0 {
            self.uid = read_varint(s)? as u32;
            if flags & xmit::USER_NAME_FOLLOWS != 0 {
                let name = read_name(s)?;
                self.inline_names.0.push((self.uid, name));
            }
        }
        if self.fmt.gid && flags & xmit::SAME_GID == 0 {
            self.gid = read_varint(s)? as u32;
            if flags & xmit::GROUP_NAME_FOLLOWS != 0 {
                let name = read_name(s)?;
                self.inline_names.1.push((self.gid, name));
            }
        }
        let is_dev = ft == 0o020_000 || ft == 0o060_000;
        let is_special = ft == 0o010_000 || ft == 0o140_000;
        let mut rdev = (0, 0);
        if (self.fmt.devices && is_dev)
            || (self.fmt.specials && is_special && self.fmt.protocol < 31)
        {
            if flags & xmit::SAME_RDEV_MAJOR == 0 {
                self.rdev_major = read_varint(s)? as u32;
            }
            let minor = read_varint(s)? as u32;
            rdev = (self.rdev_major, minor);
        }
        let mut link_target = Vec::new();
        if self.fmt.links && ft == 0o120_000 {
            let n = read_varint(s)?;
            if n < 0 || n as usize > MAX_PATH {
                return Err(bad("symlink target length", n));
            }
            link_target = vec![0u8; n as usize];
            s.read_exact(&mut link_target)?;
        }
        let mut checksum = Vec::new();
        if let Some(n) = self.fmt.checksum_len {
            if ft == 0o100_000 {
                checksum = vec![0u8; n];
                s.read_exact(&mut checksum)?;
            }
        }
        let own = self.entries.len() as u32;
        let acls = self.read_acls(s, mode)?;
        self.entries.push(RsyncEntry {
            name,
            mode,
            size: size as u64,
            mtime: self.mtime,
            nsec,
            uid: self.uid,
            gid: self.gid,
            rdev,
            link_target,
            hlink_first: (flags & xmit::HLINKED != 0).then_some(own),
            checksum,
            top_dir: ft == 0o040_000 && flags & xmit::TOP_DIR != 0,
            no_content: ft == 0o040_000 && flags & xmit::NO_CONTENT_DIR != 0,
            acls,
        });
        Ok(self.entries.last())
    }
}

/// A user or group name: a length byte, then the bytes (at most 255).
fn read_name(s: &mut impl Source) -> Result<Vec<u8>, ReadError> {
    let n = usize::from(read_u8(s)?);
    let mut name = vec![0u8; n];
    s.read_exact(&mut name)?;
    Ok(name)
}

/// `recv_id_list`: `(id, name)` pairs, ending with id 0 (followed by id 0's name when the
/// session has `CF_ID0_NAMES`).
pub fn read_id_list(
    s: &mut impl Source,
    id0_names: bool,
) -> Result<Vec<(u32, Vec<u8>)>, ReadError> {
    let mut out = Vec::new();
    loop {
        let id = read_varint(s)? as u32;
        if id == 0 && !id0_names {
            return Ok(out);
        }
        let n = usize::from(read_u8(s)?);
        let mut name = vec![0u8; n];
        s.read_exact(&mut name)?;
        out.push((id, name));
        if id == 0 {
            return Ok(out);
        }
        if out.len() > 1 << 20 {
            return Err(bad("id list", "more than 1,048,576 names"));
        }
    }
}

/// `(id, name)` pairs of a uid or gid list.
pub type IdList = Vec<(u32, Vec<u8>)>;

/// A whole list as received.
#[derive(Debug)]
pub struct ReceivedList {
    /// The entries (in wire order) and the end marker's I/O error.
    pub decoder: FlistDecoder,
    /// Owner names by uid.
    pub users: IdList,
    /// Group names by gid.
    pub groups: IdList,
}

/// Read a whole list: entries to the end marker, then (without `--numeric-ids`) the uid and
/// gid name lists.
pub fn read_file_list(s: &mut impl Source, fmt: FlistFormat) -> Result<ReceivedList, ReadError> {
    let mut d = FlistDecoder::new(fmt);
    while d.next(s)?.is_some() {}
    let (mut users, mut groups) = (Vec::new(), Vec::new());
    if fmt.uid_list() {
        users = read_id_list(s, fmt.id0_names)?;
    }
    if fmt.gid_list() {
        groups = read_id_list(s, fmt.id0_names)?;
    }
    Ok(ReceivedList {
        decoder: d,
        users,
        groups,
    })
}

/// The sender's writing state (`send_file_entry`): the previous entry's values.
#[derive(Debug)]
pub struct FlistEncoder {
    fmt: FlistFormat,
    prev_name: Vec<u8>,
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    rdev_major: u32,
    acl_cache: AclCache,
    /// With incremental recursion: the ids whose names went already (each name goes with the
    /// first entry of its id, `XMIT_USER_NAME_FOLLOWS`, instead of in the id lists).
    inline_names: Option<(HashSet<u32>, HashSet<u32>)>,
}

/// Names sent inline are cut to this length (one length byte).
const MAX_NAME: usize = 255;

impl FlistEncoder {
    /// An encoder for a session of this format.
    pub fn new(fmt: FlistFormat) -> Self {
        FlistEncoder {
            fmt,
            prev_name: Vec::new(),
            mode: 0,
            mtime: 0,
            uid: 0,
            gid: 0,
            rdev_major: 0,
            acl_cache: AclCache::default(),
            inline_names: None,
        }
    }

    /// An encoder for a session with incremental recursion (`CF_INC_RECURSE`): user and group
    /// names go with the first entry of each id (`send_file_entry` with `inc_recurse`), as no
    /// id lists follow the lists; the same encoder writes every list of the session, as the
    /// "same as the previous entry" state carries over from one list to the next.
    pub fn new_incremental(fmt: FlistFormat) -> Self {
        FlistEncoder {
            inline_names: Some(Default::default()),
            ..FlistEncoder::new(fmt)
        }
    }

    /// Append `e`; `hlink` is `Some((first wire index, is_first))` for a hard-linked file.
    pub fn put(&mut self, out: &mut Vec<u8>, e: &RsyncEntry, hlink: Option<(u32, bool)>) {
        self.put_named(out, e, hlink, (b"", b""));
    }

    /// [`FlistEncoder::put`] with the entry's user and group names (empty: unknown), sent
    /// inline by an encoder from [`FlistEncoder::new_incremental`].
    pub fn put_named(
        &mut self,
        out: &mut Vec<u8>,
        e: &RsyncEntry,
        hlink: Option<(u32, bool)>,
        names: (&[u8], &[u8]),
    ) {
        self.put_fields(out, e, hlink, names);
        // `-A`: after every entry but a symlink, a hard link's too (`send_file_name`).
        if self.fmt.acls && e.file_type() != 0o120_000 {
            put_entry_acls(out, &mut self.acl_cache, e.mode, &e.acls);
        }
    }

    /// `send_file_entry`'s part of [`FlistEncoder::put`].
    fn put_fields(
        &mut self,
        out: &mut Vec<u8>,
        e: &RsyncEntry,
        hlink: Option<(u32, bool)>,
        (user, group): (&[u8], &[u8]),
    ) {
        use super::codec::{put_i32, put_u16, put_varint, put_varlong};
        let ft = e.file_type();
        let first = self.prev_name.is_empty();
        let mut x: u32 = if ft == 0o040_000 && e.top_dir {
            xmit::TOP_DIR
        } else {
            0
        };
        if ft == 0o040_000 && e.no_content {
            x |= xmit::NO_CONTENT_DIR;
        }
        if e.mode == self.mode {
            x |= xmit::SAME_MODE;
        } else {
            self.mode = e.mode;
        }
        let is_dev = ft == 0o020_000 || ft == 0o060_000;
        let is_special = ft == 0o010_000 || ft == 0o140_000;
        let mut rdev = None;
        if self.fmt.devices && is_dev {
            if e.rdev.0 == self.rdev_major {
                x |= xmit::SAME_RDEV_MAJOR;
            } else {
                self.rdev_major = e.rdev.0;
            }
            rdev = Some(e.rdev.1);
        } else if self.fmt.specials && is_special && self.fmt.protocol < 31 {
            x |= xmit::SAME_RDEV_MAJOR;
            rdev = Some(0);
        }
        // With incremental recursion, the name of an id goes with its first entry
        // (`add_uid` answers a name only the first time it sees an id).
        let numeric = self.fmt.numeric_ids;
        let mut user_name = None;
        let mut group_name = None;
        if !self.fmt.uid || (e.uid == self.uid && !first) {
            x |= xmit::SAME_UID;
        } else {
            self.uid = e.uid;
            if let Some((uids, _)) = self.inline_names.as_mut().filter(|_| !numeric) {
                if uids.insert(e.uid) && !user.is_empty() {
                    x |= xmit::USER_NAME_FOLLOWS;
                    user_name = Some(&user[..user.len().min(MAX_NAME)]);
                }
            }
        }
        if !self.fmt.gid || (e.gid == self.gid && !first) {
            x |= xmit::SAME_GID;
        } else {
            self.gid = e.gid;
            if let Some((_, gids)) = self.inline_names.as_mut().filter(|_| !numeric) {
                if gids.insert(e.gid) && !group.is_empty() {
                    x |= xmit::GROUP_NAME_FOLLOWS;
                    group_name = Some(&group[..group.len().min(MAX_NAME)]);
                }
            }
        }
        if e.mtime == self.mtime {
            x |= xmit::SAME_TIME;
        } else {
            self.mtime = e.mtime;
        }
        if e.nsec != 0 && self.fmt.protocol >= 31 {
            x |= xmit::MOD_NSEC;
        }
        let mut abbreviated = false;
        if let Some((first_ndx, is_first)) = hlink.filter(|_| self.fmt.hard_links) {
            x |= xmit::HLINKED;
            if is_first {
                x |= xmit::HLINK_FIRST;
            } else {
                abbreviated = true;
                let _ = first_ndx;
            }
        }
        let l1 = self
            .prev_name
            .iter()
            .zip(&e.name)
            .take(255)
            .take_while(|(a, b)| a == b)
            .count();
        let l2 = e.name.len() - l1;
        if l1 > 0 {
            x |= xmit::SAME_NAME;
        }
        if l2 > 255 {
            x |= xmit::LONG_NAME;
        }
        if self.fmt.varint_flags {
            put_varint(out, if x == 0 { xmit::EXTENDED_FLAGS } else { x } as i32);
        } else {
            if x == 0 && ft != 0o040_000 {
                x |= xmit::TOP_DIR;
            }
            if x & 0xff00 != 0 || x == 0 {
                x |= xmit::EXTENDED_FLAGS;
                put_u16(out, x as u16);
            } else {
                out.push(x as u8);
            }
        }
        if x & xmit::SAME_NAME != 0 {
            out.push(l1 as u8);
        }
        if x & xmit::LONG_NAME != 0 {
            put_varint(out, l2 as i32);
        } else {
            out.push(l2 as u8);
        }
        out.extend_from_slice(&e.name[l1..]);
        self.prev_name.clone_from(&e.name);
        if let Some((first_ndx, _)) = hlink.filter(|_| abbreviated) {
            put_varint(out, first_ndx as i32);
            return;
        }
        put_varlong(out, e.size as i64, 3);
        if x & xmit::SAME_TIME == 0 {
            put_varlong(out, e.mtime, 4);
        }
        if x & xmit::MOD_NSEC != 0 {
            put_varint(out, e.nsec as i32);
        }
        if x & xmit::SAME_MODE == 0 {
            put_i32(out, e.mode as i32);
        }
        if self.fmt.uid && x & xmit::SAME_UID == 0 {
            put_varint(out, e.uid as i32);
            if let Some(n) = user_name {
                out.push(n.len() as u8);
                out.extend_from_slice(n);
            }
        }
        if self.fmt.gid && x & xmit::SAME_GID == 0 {
            put_varint(out, e.gid as i32);
            if let Some(n) = group_name {
                out.push(n.len() as u8);
                out.extend_from_slice(n);
            }
        }
        if let Some(minor) = rdev {
            if x & xmit::SAME_RDEV_MAJOR == 0 {
                put_varint(out, e.rdev.0 as i32);
            }
            put_varint(out, minor as i32);
        }
        if self.fmt.links && ft == 0o120_000 {
            put_varint(out, e.link_target.len() as i32);
            out.extend_from_slice(&e.link_target);
        }
        if let Some(n) = self.fmt.checksum_len {
            if ft == 0o100_000 {
                let mut c = e.checksum.clone();
                c.resize(n, 0);
                out.extend_from_slice(&c);
            }
        }
    }

    /// The end marker with the sender's I/O-error flags (`write_end_of_flist`). Without
    /// varint flags the error rides on the marker only in a safe file list (`safe`: protocol
    /// 31, or 30 with `CF_SAFE_FLIST`); otherwise the caller sends it as `MSG_IO_ERROR`.
    pub fn end(&self, out: &mut Vec<u8>, io_error: i32, safe: bool) {
        use super::codec::{put_u16, put_varint};
        if self.fmt.varint_flags {
            put_varint(out, 0);
            put_varint(out, io_error);
        } else if io_error != 0 && (safe || self.fmt.protocol >= 31) {
            put_u16(out, (xmit::EXTENDED_FLAGS | xmit::HLINK_FIRST) as u16);
            put_varint(out, io_error);
        } else {
            out.push(0);
        }
    }
}

/// `send_id_list`'s records: `(id, name)` for every non-zero id with a name, then 0 (and the
/// name of id 0 when `id0_names`).
pub fn put_id_list(out: &mut Vec<u8>, ids: &[(u32, Vec<u8>)], id0_name: Option<&[u8]>) {
    use super::codec::put_varint;
    for (id, name) in ids.iter().filter(|(id, n)| *id != 0 && !n.is_empty()) {
        put_varint(out, *id as i32);
        let n = &name[..name.len().min(255)];
        out.push(n.len() as u8);
        out.extend_from_slice(n);
    }
    put_varint(out, 0);
    if let Some(n) = id0_name {
        let n = &n[..n.len().min(255)];
        out.push(n.len() as u8);
        out.extend_from_slice(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(varint: bool) -> FlistFormat {
        FlistFormat {
            protocol: 32,
            varint_flags: varint,
            uid: true,
            gid: true,
            links: true,
            devices: true,
            specials: true,
            hard_links: true,
            checksum_len: None,
            id0_names: true,
            numeric_ids: false,
            acls: false,
            missing_args: false,
        }
    }

    /// `write_end_of_flist`: the I/O error rides on the end marker with varint flags, or in a
    /// safe list (protocol 31, or 30 with `CF_SAFE_FLIST`); an unsafe protocol-30 list ends
    /// with a plain 0 (the caller then sends `MSG_IO_ERROR`). A decoder reads it back.
    #[test]
    fn the_end_marker_carries_the_io_error_only_where_rsync_reads_it() {
        let end = |fmt: FlistFormat, io_error: i32, safe: bool| {
            let mut out = Vec::new();
            FlistEncoder::new(fmt).end(&mut out, io_error, safe);
            out
        };
        let p30 = FlistFormat {
            protocol: 30,
            ..fmt(false)
        };
        assert_eq!(end(p30, 1, false), vec![0]);
        assert_eq!(end(p30, 0, true), vec![0]);
        let safe = end(p30, 1, true);
        assert_eq!(safe, vec![0x04, 0x10, 0x01]);
        assert_eq!(
            end(fmt(false), 1, false),
            safe,
            "protocol 31+ is always safe"
        );
        assert_eq!(end(fmt(true), 1, false), vec![0x00, 0x01]);
        let mut d = FlistDecoder::new(p30);
        let mut src: &[u8] = &safe;
        assert!(d.next(&mut src).expect("end").is_none());
        assert_eq!(d.io_error, 1);
    }

    #[test]
    fn decodes_a_captured_protocol_32_list_start() {
        // "." (the helper-captured bytes of upstream 3.5.0, -aHD), then the end marker.
        let mut bytes = vec![0xa0, 0x01, 0x01, b'.', 0x00, 0x00, 0x10];
        bytes.extend_from_slice(&[0x6b, 0xf5, 0xae, 0x01]);
        bytes.extend_from_slice(&[0xf0, 0xbc, 0x84, 0x5c, 0x25]);
        bytes.extend_from_slice(&[0xed, 0x41, 0x00, 0x00, 0x00, 0x00]);
        // "cdev": same time, uid, gid; mode 020644; major 4, minor 64.
        bytes.extend_from_slice(&[0xa0, 0x98, 0x04]);
        bytes.extend_from_slice(b"cdev");
        bytes.extend_from_slice(&[0x00, 0x00, 0x00, 0xf0, 0xbc, 0x84, 0x5c, 0x25]);
        bytes.extend_from_slice(&[0xa4, 0x21, 0x00, 0x00, 0x04, 0x40]);
        bytes.extend_from_slice(&[0x00, 0x00]); // end, io_error 0
        let mut src = bytes.as_slice();
        let mut d = FlistDecoder::new(fmt(true));
        let dot = d.next(&mut src).unwrap().unwrap().clone();
        assert_eq!(dot.name, b".");
        assert!(dot.is_dir() && dot.top_dir);
        assert_eq!(dot.size, 4096);
        assert_eq!(dot.mode, 0o40755);
        assert_eq!(dot.mtime, 0x6b01_aef5);
        let dev = d.next(&mut src).unwrap().unwrap().clone();
        assert_eq!(dev.name, b"cdev");
        assert_eq!(dev.mode, 0o20644);
        assert_eq!(dev.rdev, (4, 64));
        assert_eq!(dev.mtime, dot.mtime);
        assert!(d.next(&mut src).unwrap().is_none());
        assert_eq!(d.io_error, 0);
        assert!(src.is_empty());
    }

    #[test]
    fn encoded_lists_decode_to_the_same_entries_in_every_format() {
        let entries = vec![
            RsyncEntry {
                name: b".".to_vec(),
                mode: 0o40755,
                size: 4096,
                mtime: 1_700_000_000,
                nsec: 5,
                uid: 0,
                gid: 0,
                rdev: (0, 0),
                link_target: vec![],
                hlink_first: None,
                checksum: vec![],
                top_dir: true,
                no_content: false,
                acls: (None, None),
            },
            RsyncEntry {
                name: b"dev".to_vec(),
                mode: 0o20600,
                size: 0,
                mtime: 1_700_000_000,
                nsec: 0,
                uid: 1000,
                gid: 1000,
                rdev: (4, 64),
                link_target: vec![],
                hlink_first: None,
                checksum: vec![],
                top_dir: false,
                no_content: false,
                acls: (None, None),
            },
            RsyncEntry {
                name: b"link".to_vec(),
                mode: 0o120777,
                size: 3,
                mtime: 1_600_000_000,
                nsec: 999_999_999,
                uid: 1000,
                gid: 5,
                rdev: (0, 0),
                link_target: b"dev".to_vec(),
                hlink_first: None,
                checksum: vec![],
                top_dir: false,
                no_content: false,
                acls: (None, None),
            },
            RsyncEntry {
                name: [b"x".repeat(300), b"/file".to_vec()].concat(),
                mode: 0o100644,
                size: 1 << 40,
                mtime: -5,
                nsec: 0,
                uid: 1000,
                gid: 5,
                rdev: (0, 0),
                link_target: vec![],
                hlink_first: Some(3),
                checksum: vec![],
                top_dir: false,
                no_content: false,
                acls: (None, None),
            },
        ];
        for protocol in [30u8, 31, 32] {
            for varint_flags in [false, true] {
                let mut f = fmt(varint_flags);
                f.protocol = protocol;
                let mut enc = FlistEncoder::new(f);
                let mut out = Vec::new();
                for (i, e) in entries.iter().enumerate() {
                    enc.put(&mut out, e, e.hlink_first.map(|h| (h, h as usize == i)));
                }
                enc.end(&mut out, 0, true);
                let mut src = out.as_slice();
                let mut d = FlistDecoder::new(f);
                for e in &entries {
                    let mut want = e.clone();
                    if protocol < 31 {
                        want.nsec = 0;
                    }
                    assert_eq!(
                        d.next(&mut src).unwrap(),
                        Some(&want),
                        "p{protocol} v{varint_flags}"
                    );
                }
                assert!(d.next(&mut src).unwrap().is_none());
                assert!(src.is_empty());
            }
        }
    }

    /// Incremental recursion: each id's name goes once, with its first entry (after the id),
    /// across lists; a decoder reads the entries back.
    #[test]
    fn an_incremental_encoder_sends_each_name_once_inline() {
        let entry = |name: &str, uid: u32| RsyncEntry {
            uid,
            gid: uid,
            mode: 0o100_644,
            mtime: 1_700_000_000,
            ..RsyncEntry::missing(name.as_bytes().to_vec())
        };
        let mut enc = FlistEncoder::new_incremental(fmt(true));
        let mut out = Vec::new();
        let names = [
            (b"alice".as_slice(), b"staff".as_slice()),
            (b"root", b"wheel"),
        ];
        for (n, uid, who) in [("a", 1000, 0), ("b", 0, 1), ("c", 1000, 0)] {
            enc.put_named(&mut out, &entry(n, uid), None, names[who]);
        }
        enc.end(&mut out, 0, true);
        // A second list: the same ids, no names again.
        let mut second = Vec::new();
        enc.put_named(&mut second, &entry("d", 0), None, names[1]);
        enc.end(&mut second, 0, true);
        let count =
            |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).filter(|w| *w == needle).count();
        for (name, n) in [
            (&b"alice"[..], 1),
            (b"staff", 1),
            (b"root", 1),
            (b"wheel", 1),
        ] {
            assert_eq!(count(&out, name), n, "{}", String::from_utf8_lossy(name));
        }
        assert_eq!(count(&second, b"root") + count(&second, b"wheel"), 0);
        // The uid (varint 1000: 83 e8), then the length-prefixed name (`XMIT_USER_NAME_FOLLOWS`).
        assert!(out
            .windows(7)
            .any(|w| w == [0x83, 0xe8, 5, b'a', b'l', b'i', b'c']));
        let mut d = FlistDecoder::new(fmt(true));
        let mut src = out.as_slice();
        for (n, uid) in [("a", 1000), ("b", 0), ("c", 1000)] {
            assert_eq!(d.next(&mut src).unwrap(), Some(&entry(n, uid)));
        }
        assert!(d.next(&mut src).unwrap().is_none());
        assert!(src.is_empty());
        // The decoder keeps the names that came inline, each id once.
        let (users, groups) = std::mem::take(&mut d.inline_names);
        assert_eq!(
            users,
            vec![(1000, b"alice".to_vec()), (0, b"root".to_vec())]
        );
        assert_eq!(
            groups,
            vec![(1000, b"staff".to_vec()), (0, b"wheel".to_vec())]
        );
    }

    #[test]
    fn id_lists_end_with_id0_name() {
        let bytes = [
            0xc0, 0xfe, 0xff, 6, b'n', b'o', b'b', b'o', b'd', b'y', 0, 4, b'r', b'o', b'o', b't',
        ];
        let l = read_id_list(&mut bytes.as_slice(), true).unwrap();
        assert_eq!(l, vec![(65534, b"nobody".to_vec()), (0, b"root".to_vec())]);
    }

    #[test]
    fn hostile_entries_are_refused() {
        // A shared prefix longer than the previous name.
        let mut d = FlistDecoder::new(fmt(true));
        assert!(d
            .next(&mut [0x20u8 | 0x80, 0x20, 5, 1, b'x'].as_slice())
            .is_err());
        // A hard link to an entry not yet sent.
        let mut d = FlistDecoder::new(fmt(true));
        assert!(d.next(&mut [0x82u8, 0x00, 1, b'a', 7].as_slice()).is_err());
        // A mode with no valid type.
        let mut d = FlistDecoder::new(fmt(true));
        let mut b = vec![0x04u8, 1, b'a', 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&0o7777u32.to_le_bytes());
        assert!(d.next(&mut b.as_slice()).is_err());
    }

    /// `--delete-missing-args`: a mode-0 entry after a file (so its mode is on the wire, not
    /// repeated) is read only when the option is on; otherwise it is a bad mode.
    #[test]
    fn mode_zero_entries_only_with_delete_missing_args() {
        let file = RsyncEntry {
            mode: 0o100_644,
            size: 3,
            mtime: 1_700_000_000,
            ..RsyncEntry::missing(b"here".to_vec())
        };
        let missing = RsyncEntry::missing(b"gone".to_vec());
        let mut f = fmt(true);
        f.missing_args = true;
        let mut enc = FlistEncoder::new(f);
        let mut out = Vec::new();
        enc.put(&mut out, &file, None);
        enc.put(&mut out, &missing, None);
        enc.end(&mut out, 0, true);
        let mut d = FlistDecoder::new(f);
        let mut src = out.as_slice();
        assert_eq!(d.next(&mut src).unwrap(), Some(&file));
        assert_eq!(d.next(&mut src).unwrap(), Some(&missing));
        let mut d = FlistDecoder::new(fmt(true));
        let mut src = out.as_slice();
        assert!(d.next(&mut src).is_ok());
        assert!(d.next(&mut src).is_err(), "mode 0 without the option");
    }

    #[test]
    fn rsync_order_puts_dir_names_with_a_slash() {
        let mut v: Vec<(&[u8], bool)> = vec![
            (b"a/x", false),
            (b"a", true),
            (b"a.b/y", false),
            (b"a.b", true),
            (b"a-b", true),
            (b"a-b/z", false),
            (b"a0", false),
            (b"A", false),
            (b".", true),
        ];
        v.sort_by(|x, y| crate::flist::path_order(x.0, x.1, y.0, y.1));
        let names: Vec<&[u8]> = v.iter().map(|x| x.0).collect();
        assert_eq!(
            names,
            vec![
                b".".as_slice(),
                b"A",
                b"a0",
                b"a-b",
                b"a-b/z",
                b"a.b",
                b"a.b/y",
                b"a",
                b"a/x"
            ]
        );
    }
}
