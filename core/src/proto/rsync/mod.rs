//! rsync's own wire protocol (protocols 30–32), sans-IO: what arsync speaks to a host that
//! has only rsync. Byte formats follow upstream's C source (`io.c`, `flist.c`, `compat.c`,
//! `sender.c`, `receiver.c`, `generator.c`, `token.c`, `checksum.c`); `docs/RSYNC_WIRE_PROTOCOL.md`
//! describes them part by part with the upstream function each follows.
//!
//! - [`acl`] — ACLs in the file list (`-A`).
//! - [`checksum`] — the negotiated whole-file and block checksums.
//! - [`flist`] — the file list a receiver reads, and the order that numbers it.
//! - [`ztoken`] — the zstd-compressed token stream (`-z`).
//! - [`matcher`] — the sender's delta search against the receiver's block sums.
//! - [`codec`] — ints, rsync's varints and varlongs, vstrings, file indexes, multiplex headers.
//!
//! Not here: the drivers that run a transfer over a stream (in [`crate::engine`]).

pub mod acl;
pub mod checksum;
pub mod codec;
pub mod flist;
pub mod matcher;
pub mod ztoken;
