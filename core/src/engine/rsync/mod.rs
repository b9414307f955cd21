//! rsync's own wire protocol, with arsync's roles behind it: adapters that let the sender and
//! the receiver (the same code that serves an arsync peer) talk to rsync in every role.
//!
//! - [`link`]: the handshake for either end, daemon logins; `mux`: the multiplexed streams
//!   (`io.c`);
//! - `flists`: the lists a sending side sends (incremental recursion) and what each index names;
//! - `inclists`: the lists a receiving side reads (incremental recursion) as segments of our
//!   receiver's streamed list;
//! - `tap`: what our receiver did without data, as records for an rsync client;
//! - [`receiving`]: our receiver behind rsync's sending side — a client pulling from
//!   `rsync --server --sender`, or `arsync --server` receiving an rsync client's push;
//! - [`sending`]: our sender behind rsync's receiving side — a client pushing to
//!   `rsync --server`, or `arsync --server --sender` serving an rsync client's pull;
//!   `sent_lists`: the entries behind its lists, whole or streamed from our sender;
//! - here: what both share — the server's handshake ([`RsyncSession`]), the arguments a remote
//!   rsync server is started with, rsync's item flags, the wire counts of a run.
//!
//! Does not own the codecs ([`crate::proto::rsync`]) or what the roles do with the files.

mod flists;
mod inclists;
pub mod link;
mod mux;
pub mod receiving;
pub mod sending;
// Issue 18, streaming list:
mod sent_lists;
mod tap;

use std::sync::Arc;

use super::event::EventSink;
use super::options::SyncOptions;
use crate::error::SyncError;
use crate::transport::StreamPair;
use link::RsyncLink;
pub use link::{RSYNC_PROTOCOL_MAX, RSYNC_PROTOCOL_MIN};

/// rsync's item flags (`ITEM_*` in rsync.h) that the adapters read or write.
pub(crate) const ITEM_TRANSFER: u16 = 0x8000;
pub(crate) const ITEM_LOCAL_CHANGE: u16 = 0x4000;
pub(crate) const ITEM_IS_NEW: u16 = 0x2000;
pub(crate) const ITEM_XNAME_FOLLOWS: u16 = 0x1000;
pub(crate) const ITEM_BASIS_TYPE_FOLLOWS: u16 = 0x0800;

/// The compat letters we send after `-e.` (see `docs/RSYNC_WIRE_PROTOCOL.md`) when our side
/// may not use incremental recursion: no `i`.
pub const CLIENT_INFO: &str = "LsfxCIvu";
/// The compat letters when our side may use it ([`inc_recurse_ok`] when we send,
/// [`receiver_inc_recurse_ok`] when we receive): `i` offers incremental recursion.
pub const CLIENT_INFO_INC: &str = "iLsfxCIvu";

/// Whether our sending side may use incremental recursion for `opts` (as client, it offers
/// `i`; as server, it sets `CF_INC_RECURSE` when the client offered it). Upstream's rule
/// (`set_allow_inc_recurse` for a sender: only with `-r`), narrowed to what [`sending`]
/// implements: not with `-H` (hard links across lists), `-A` (names inside the ACLs),
/// `-R` or a files-from list (implied directories), or `--delete-missing-args` (mode-0
/// entries). The receiving side's own rules (`--delete-before/after`, `--delay-updates`,
/// `-m`) are the receiver's to apply: a remote rsync receiver declines, and arsync's
/// receiving side checks them in [`receiver_inc_recurse_ok`]. `--no-inc-recursive` turns it
/// off, as rsync's client does.
pub fn inc_recurse_ok(opts: &SyncOptions) -> bool {
    opts.recursive
        && !opts.no_inc_recursive
        && !opts.hard_links
        && !opts.acls
        && !opts.xattrs
        && !opts.select.relative
        && !opts.select.delete_missing_args
        && opts.listing.remote_files_from.is_none()
        && !opts.listing.files_from_wire
}

/// Issue 18: whether our receiving side may use incremental recursion for `opts` (as client
/// pulling, it offers `i`; as server receiving a push, it sets `CF_INC_RECURSE` when the
/// client offered it). Upstream's receiver rule (`set_allow_inc_recurse`: `-r`, and not
/// `--delete-before/--delete-after/--delay-updates/-m`), narrowed to what [`receiving`]
/// implements: each of rsync's lists becomes a segment of our receiver's streamed list, so
/// the options of [`crate::engine::segments::receiver_options_allow`] (which exclude those of
/// upstream and more: `-n`, `--delete-delay`, `--remove-source-files`, …), and those of
/// [`inc_recurse_ok`] (`-H`, `-A`/`-X`, `-R`, files-from, `--delete-missing-args`). The
/// filter rules do not count: a receiving server learns them after this choice.
pub fn receiver_inc_recurse_ok(opts: &SyncOptions) -> bool {
    inc_recurse_ok(opts) && super::segments::receiver_options_allow(opts)
}

/// The arguments a sending rsync server gets for `opts` (`server_options`): the option
/// cluster, then the long options that change what it sends (`--numeric-ids`: no id lists).
pub fn sender_args(opts: &SyncOptions, out: ClientOutput) -> Vec<String> {
    let mut v = vec![server_flags(opts, out, false)];
    if opts.numeric_ids {
        v.push("--numeric-ids".into());
    }
    if let Some(t) = opts.io_timeout.filter(|t| *t > 0) {
        v.push(format!("--timeout={t}"));
    }
    v.extend(bwlimit_arg(opts.bwlimit));
    // Issue 15, links:
    v.extend(links_args(opts, true));
    // Issue 15, filters: `-d` and a list on the server's side.
    v.extend(opts.listing.server_args(opts.recursive, true, opts.delete));
    // Issue 15, select: a sending server skips (or lists for deletion) missing arguments.
    v.extend(missing_args_arg(&opts.select, false));
    // Issue 15, backup: upstream tells either role.
    v.extend(opts.backup.server_long_args());
    // Issue 15, data: a sending server in append mode reads sum heads without sums.
    v.extend(append_args(opts.write.append));
    // Issue 15, source:
    v.extend(source_args(&opts.source));
    v
}

/// `--bwlimit` as upstream's `server_options` tells either role: in KiB per second.
/// What a server is told of missing source arguments (`server_options`): rsync's
/// `--delete-missing-args` needs both sides; `--ignore-missing-args` only a sending server
/// (`client_sends` false).
fn missing_args_arg(sel: &super::select::SelectOptions, client_sends: bool) -> Option<String> {
    if sel.delete_missing_args {
        Some("--delete-missing-args".into())
    } else if sel.ignore_missing_args && !client_sends {
        Some("--ignore-missing-args".into())
    } else {
        None
    }
}

fn bwlimit_arg(bytes_per_sec: Option<u64>) -> Option<String> {
    bytes_per_sec.map(|b| format!("--bwlimit={}", b.div_ceil(1024).max(1)))
}

/// `--append` as upstream's `server_options` tells either role: twice for `--append-verify`.
fn append_args(append: u8) -> impl Iterator<Item = String> {
    std::iter::repeat_n("--append".to_owned(), usize::from(append.min(2)))
}

// Issue 15, source:
/// The options of `source` a server gets, arsync's or rsync's, in either role (upstream's
/// `server_options` sends each to both).
pub fn source_args(source: &super::options::SourceOptions) -> Vec<String> {
    [
        (source.ignore_errors, "--ignore-errors"),
        (source.remove_source_files, "--remove-source-files"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| flag.to_owned())
    .collect()
}

/// What the client prints, as far as an rsync server must know it: its `-v` count (sent as
/// `v` letters) and its `-i` count (a receiving server is told with `--log-format=%i`, so it
/// reports what it does, `created directory` included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOutput {
    /// `-v` count.
    pub verbose: u8,
    /// `-i` count.
    pub itemize: u8,
}

/// Issue 15, links: the symlink options a remote rsync server gets (`server_options`): `-L`
/// and `-k` for either role, `-K` only for a receiving server, the long options always.
fn links_args(opts: &SyncOptions, server_sends: bool) -> Vec<String> {
    let l = &opts.symlinks;
    [
        (l.copy_links, "-L"),
        (l.copy_dirlinks, "-k"),
        (l.keep_dirlinks && !server_sends, "-K"),
        (l.copy_unsafe_links, "--copy-unsafe-links"),
        (l.safe_links, "--safe-links"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| flag.to_owned())
    .collect()
}

/// The rsync options cluster for `opts`, as upstream's `server_options` orders it; `we_send`:
/// the client sends (it offers incremental recursion when [`inc_recurse_ok`]) or receives
/// (when [`receiver_inc_recurse_ok`]).
pub fn server_flags(opts: &SyncOptions, out: ClientOutput, we_send: bool) -> String {
    let mut s = String::from("-");
    for _ in 0..out.verbose.min(9) {
        s.push('v');
    }
    // Issue 15, backup: `b` follows the `v`s, for either role (`server_options`).
    if opts.backup.make_backups {
        s.push('b');
    }
    for (on, c) in [
        (opts.dry_run, 'n'),
        (opts.links, 'l'),
        (opts.select.prune_empty_dirs, 'm'),
        (opts.hard_links, 'H'),
        (opts.owner, 'o'),
        (opts.group, 'g'),
        (opts.devices && opts.specials, 'D'),
        (opts.times, 't'),
        (opts.perms, 'p'),
        // Issue 15: -E, where -p does not make it moot (`server_options`).
        (opts.write.executability && !opts.perms, 'E'),
        // Issue 15, acls:
        (opts.acls, 'A'),
        (opts.recursive, 'r'),
        (opts.checksum, 'c'),
        // Issue 15, filters:
        (opts.listing.cvs_exclude, 'C'),
        (opts.ignore_times, 'I'),
        (opts.select.relative, 'R'),
        (opts.select.one_file_system > 0, 'x'),
        (opts.select.one_file_system > 1, 'x'),
        (opts.compress.is_some(), 'z'),
    ] {
        if on {
            s.push(c);
        }
    }
    s.push_str("e.");
    let inc = if we_send {
        inc_recurse_ok(opts)
    } else {
        receiver_inc_recurse_ok(opts)
    };
    s.push_str(if inc { CLIENT_INFO_INC } else { CLIENT_INFO });
    s
}

/// The rsync argument list for a push: `rsync --server -FLAGSe.INFO [--delete…] . DEST`.
pub fn server_args(opts: &SyncOptions, out: ClientOutput) -> Vec<String> {
    let mut v = vec![server_flags(opts, out, true)];
    match out.itemize {
        0 => {}
        1 => v.push("--log-format=%i".into()),
        _ => v.push("--log-format=%i%I".into()),
    }
    if opts.delete {
        // `--delete-before` changes what rsync's receiver itemizes; `-delay`/`-after` when.
        v.push(opts.delete_when.flag().into());
    }
    if opts.delete_excluded {
        v.push("--delete-excluded".into());
    }
    if opts.numeric_ids {
        v.push("--numeric-ids".into());
    }
    if let Some(t) = opts.io_timeout.filter(|t| *t > 0) {
        v.push(format!("--timeout={t}"));
    }
    v.extend(bwlimit_arg(opts.bwlimit));
    // Issue 15, links:
    v.extend(links_args(opts, false));
    // Issue 15, select: a receiving server deletes what a mode-0 entry names.
    v.extend(missing_args_arg(&opts.select, true));
    // Issue 15, select: receiver-side size limits, in bytes as rsync forwards them.
    if let Some(n) = opts.select.min_size {
        v.push(format!("--min-size={n}"));
    }
    if let Some(n) = opts.select.max_size {
        v.push(format!("--max-size={n}"));
    }
    // Issue 15, filters:
    v.extend(opts.listing.server_args(opts.recursive, false, opts.delete));
    // Issue 15, own:
    v.extend(opts.own.receiver_args());
    // Issue 15, dest: what the receiving rsync does with each file.
    let letters = dest_letters(&opts.dest);
    if let Some(at) = v[0].find("e.") {
        v[0].insert_str(at, &letters);
    }
    v.extend(dest_args(&opts.dest, false));
    // Issue 15, backup:
    v.extend(opts.backup.server_long_args());
    // Issue 15, dests: the receiving rsync is told each directory (`server_options`).
    v.extend(opts.dests.server_args());
    for (on, flag) in [
        (opts.ignore_existing, "--ignore-existing"),
        (opts.existing, "--existing"),
    ] {
        if on {
            v.push(flag.into());
        }
    }
    // Issue 15, write:
    v.extend(write_args(&opts.write));
    // Issue 15, source:
    v.extend(source_args(&opts.source));
    // Issue 15, tempfiles:
    v.extend(opts.temp.server_args(opts.partial));
    v
}

// Issue 15, write: how the receiver writes, on a receiving server's command line.
/// The options of `write` a receiving server gets, arsync's or rsync's (the same spellings).
/// `--chmod` too: upstream applies it on the client's side, which for a push we hand to the
/// receiving server (one side applies it, never both).
pub fn write_args(write: &super::options::WriteOptions) -> Vec<String> {
    let mut v = Vec::new();
    for c in &write.chmod {
        v.push(format!("--chmod={c}"));
    }
    if write.mkpath {
        v.push("--mkpath".into());
    }
    if write.force {
        v.push("--force".into());
    }
    // Issue 15, data:
    if write.sparse {
        v.push("--sparse".into());
    }
    v.extend(append_args(write.append));
    v
}

// Issue 15, dest: the receiver's per-file options on a server's command line.
/// The single letters of `dest` for a receiving server's option cluster (`server_options`:
/// `u`, and `O`/`J` when the client sends).
fn dest_letters(dest: &super::options::DestOptions) -> String {
    [
        (dest.update, 'u'),
        (dest.omit_dir_times, 'O'),
        (dest.omit_link_times, 'J'),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, c)| *c)
    .collect()
}

/// The long options of `dest` for a receiving server, as upstream's `server_options` writes
/// them (`--max-delete=-1` for "none", `-@N` for a negative window); `letters` adds the
/// single-letter ones as separate flags (for an arsync server).
pub fn dest_args(dest: &super::options::DestOptions, letters: bool) -> Vec<String> {
    let mut v = Vec::new();
    if letters {
        let l = dest_letters(dest);
        if !l.is_empty() {
            v.push(format!("-{l}"));
        }
    }
    match dest.max_delete {
        Some(0) => v.push("--max-delete=-1".into()),
        Some(n) => v.push(format!("--max-delete={n}")),
        None => {}
    }
    match dest.modify_window {
        0 => {}
        w if w < 0 => v.push(format!("-@{w}")),
        w => v.push(format!("--modify-window={w}")),
    }
    v
}

/// How rsync's file list is encoded in this session: the protocol and compat flags it agreed,
/// and what `opts` preserves (the same for both adapters).
pub(crate) fn flist_format(
    proto: u8,
    compat: i32,
    opts: &SyncOptions,
    sum: crate::proto::rsync::checksum::SumKind,
) -> crate::proto::rsync::flist::FlistFormat {
    crate::proto::rsync::flist::FlistFormat {
        protocol: proto,
        varint_flags: compat & (1 << 7) != 0,
        uid: opts.owner,
        gid: opts.group,
        links: opts.links,
        devices: opts.devices,
        specials: opts.specials,
        hard_links: opts.hard_links,
        checksum_len: opts.checksum.then_some(sum.digest_len()),
        id0_names: compat & (1 << 8) != 0,
        numeric_ids: opts.numeric_ids,
        // Issue 15, acls:
        acls: opts.acls,
        // Issue 15, select:
        missing_args: opts.select.delete_missing_args,
    }
}

/// What the adapter learned, for the run's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wire {
    /// Bytes written to rsync.
    pub sent: u64,
    /// Bytes read from rsync.
    pub received: u64,
    /// File data that came as literal bytes.
    pub literal: u64,
    /// File data copied from old files (matched blocks).
    pub matched: u64,
}

/// A negotiated rsync session, between the handshake and the transfer.
pub struct RsyncSession(RsyncLink);

impl std::fmt::Debug for RsyncSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsyncSession")
            .field("protocol", &self.0.proto)
            .finish_non_exhaustive()
    }
}

impl RsyncSession {
    /// The server's handshake with an rsync client whose `-e.` letters are `client_info`;
    /// `sender`: we are its sending server (`--sender`). Either role sets incremental
    /// recursion when the client offered `i` and the role's rule allows it
    /// ([`inc_recurse_ok`], [`receiver_inc_recurse_ok`]).
    pub fn serve(
        stream: StreamPair,
        client_info: &str,
        opts: &SyncOptions,
        sender: bool,
        sink: Arc<dyn EventSink>,
    ) -> Result<RsyncSession, SyncError> {
        let choices = (opts.compress_choice.clone(), opts.checksum_choice.clone());
        RsyncLink::server(
            stream,
            client_info,
            if sender {
                inc_recurse_ok(opts)
            } else {
                receiver_inc_recurse_ok(opts)
            },
            opts.compress,
            choices,
            opts.io_timeout,
            sink,
        )
        .map(RsyncSession)
    }

    pub(crate) fn into_link(self) -> RsyncLink {
        self.0
    }

    /// The filter rules the client sends a sending server (`recv_filter_list`).
    pub fn read_filters(&mut self) -> Result<crate::engine::filter::FilterRules, SyncError> {
        self.0.read_filter_list()
    }

    /// Issue 15, filters: the `--files-from=-` names the client forwards after its filters.
    pub fn read_files_from(&mut self) -> Result<Vec<Vec<u8>>, SyncError> {
        self.0.read_files_from()
    }
}
