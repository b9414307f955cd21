//! What a sync run is asked to do: [`SyncOptions`], rsync's option set as plain data.
//!
//! The CLI fills this in; both roles read it. It carries no behaviour beyond defaults.

use super::filter::FilterRules;

/// Which file-I/O backend moves file data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// The backend measured fastest for the job: today the thread pool with
    /// `copy_file_range` (see [`crate::engine::io::FileIo::new`]).
    #[default]
    Auto,
    /// io_uring, or fail if the kernel forbids it.
    Uring,
    /// A thread pool with blocking system calls.
    Threads,
}

/// rsync's options, as the engine sees them.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SyncOptions {
    /// `-r`: recurse into directories.
    pub recursive: bool,
    /// `--no-inc-recursive` (`--no-i-r`): with rsync's protocol, one file list even where our
    /// sending side could send it a directory at a time (`engine::rsync::inc_recurse_ok`).
    pub no_inc_recursive: bool,
    /// `-l`: copy symlinks as symlinks.
    pub links: bool,
    // Issue 15, links:
    /// `-L`, `--copy-unsafe-links`, `--safe-links`, `-k`, `-K`.
    pub symlinks: super::links::SymlinkOptions,
    /// `-p`: preserve permissions.
    pub perms: bool,
    /// `-t`: preserve modification times.
    pub times: bool,
    /// `-g`: preserve group.
    pub group: bool,
    /// `-o`: preserve owner (root only).
    pub owner: bool,
    /// `--devices`: preserve device files (root only).
    pub devices: bool,
    /// `--specials`: preserve FIFOs and sockets.
    pub specials: bool,
    /// `-H`: preserve hard links.
    pub hard_links: bool,
    /// `-X`: preserve extended attributes.
    pub xattrs: bool,
    // Issue 15, acls:
    /// `-A`: preserve POSIX ACLs (see [`super::xattr`]).
    pub acls: bool,
    /// `--delete`: delete extraneous files in the destination.
    pub delete: bool,
    /// `--delete-excluded`: also delete excluded files in the destination.
    pub delete_excluded: bool,
    /// When `--delete` deletes: `--delete-before`, `-during`, `-delay` or `-after`.
    pub delete_when: DeleteWhen,
    /// `-c`: compare content, not size and time.
    pub checksum: bool,
    /// `-n`: change nothing.
    pub dry_run: bool,
    /// `-W`: whole files (the only mode the local path uses).
    pub whole_file: bool,
    /// `--inplace`: write into the destination file directly.
    pub inplace: bool,
    // Issue 15, write: how the receiver writes (see [`WriteOptions`]).
    pub write: WriteOptions,
    /// `--partial`: keep a partially received file.
    pub partial: bool,
    // Issue 15, tempfiles:
    /// `-T`, `--delay-updates`: where files wait while written and until put in place.
    pub temp: super::tempfiles::TempOptions,
    /// `--numeric-ids`: no user/group name mapping.
    pub numeric_ids: bool,
    // Issue 15, own:
    /// `--usermap`/`--groupmap`/`--chown`, and `-s`.
    pub own: super::own::OwnOptions,
    /// `-I`: ignore the quick check (transfer every file).
    pub ignore_times: bool,
    /// `--size-only`: quick check on size only.
    pub size_only: bool,
    /// `--existing`: skip creating new files.
    pub existing: bool,
    /// `--ignore-existing`: skip updating existing files.
    pub ignore_existing: bool,
    // Issue 15, dest: what the receiver does with each file (see [`DestOptions`]).
    pub dest: DestOptions,
    /// `--bwlimit`: bytes per second of file data, if limited.
    pub bwlimit: Option<u64>,
    /// Include/exclude rules.
    pub filters: FilterRules,
    // Issue 15, filters:
    /// `-C` forwarded, `-d`/`--files-from` directories (see [`super::listing`]).
    pub listing: super::listing::ListingOptions,
    // Issue 15, select:
    /// Which files take part beyond the filter rules (`-m`, `--max-size`, `-x`, …).
    pub select: super::select::SelectOptions,
    /// File-I/O backend.
    pub io: IoMode,
    /// Emit per-file progress events.
    pub progress: bool,
    /// Send file data over the stream even when both roles share the filesystem (tests the
    /// remote path locally).
    pub stream_data: bool,
    /// Issue 18: the receiver's sender is the rsync adapter in this process
    /// (`engine::rsync::receiving`), which hands on rsync's incremental lists as segments and
    /// never serves the directory-tree exchange: the receiver offers `segments` whenever the
    /// options allow it, whatever is at its destination.
    pub behind_rsync_adapter: bool,
    /// Content hashes remembered across runs (`-c`), if enabled.
    pub hash_cache: Option<std::sync::Arc<super::hashcache::HashCache>>,
    /// How many files are copied at once (0: chosen from the core count).
    pub parallel: usize,
    /// Directory-tree exchange between arsyncs: how many directory levels of hashes travel
    /// per round trip (`None`: [`DEFAULT_TREE_LEVELS`]; `Some(0)`: send the flat file list).
    pub tree_levels: Option<u32>,
    /// Delta exchange between arsyncs: the average chunk size the receiver asks for (`None`:
    /// chosen from each file's size).
    pub chunk_avg: Option<u32>,
    /// Issue 18, scattered deltas: do not offer the gap exchange (`gaps` capability): a
    /// delta's changed stretches are then fetched as whole chunks, as an older arsync does.
    pub no_gap_sums: bool,
    /// `-z`: compress file data and lists between arsyncs with zstd at this level.
    pub compress: Option<i32>,
    /// rsync's protocol: `--compress-choice` (no negotiation of the compression).
    pub compress_choice: Option<String>,
    /// rsync's protocol: `--checksum-choice` (no negotiation of the checksum).
    pub checksum_choice: Option<String>,
    /// `-c` towards an rsync peer: list checksums in this rsync algorithm instead of BLAKE3
    /// (set by the sender from the adapter's hello).
    pub rsync_sum: Option<crate::proto::rsync::checksum::SumKind>,
    /// List entries of the kinds these options leave out (symlinks without `-l`, devices
    /// without `-D`…) for a receiver that skips them itself, as rsync's generator does — so
    /// that `--delete` spares what is there under their names (set by the sender from the
    /// receiver's `unwanted` capability).
    pub list_unwanted: bool,
    /// With `list_unwanted`: the receiver says "skipping non-regular file" for them (an rsync
    /// receiver behind an adapter), so the sender's scan does not.
    pub unwanted_said_by_receiver: bool,
    /// `--timeout=SECONDS`: end the run (exit 30) when the peer sends nothing for this long
    /// while we wait for it (`None`: wait as long as it takes).
    pub io_timeout: Option<u64>,
    /// `--contimeout=SECONDS`: give up connecting after this long (exit 35).
    pub connect_timeout: Option<u64>,
    /// `--streams=N`: how many streams of the connection to use, where the transport offers
    /// several (`None`: all it offers). Streams beyond the first are data lanes.
    pub streams: Option<u32>,
    // Issue 15, backup:
    /// `-b`, `--suffix`, `--backup-dir`: what the receiver keeps of what it replaces or deletes.
    pub backup: super::backup::BackupOptions,
    // Issue 15, dests:
    /// `--link-dest`, `--compare-dest`, `--copy-dest`: other trees the receiver consults.
    pub dests: super::dests::DestsOptions,
    // Issue 15, source:
    /// `--remove-source-files`, `--ignore-errors`.
    pub source: SourceOptions,
    // Issue 16, params:
    /// Between arsyncs: what negotiation chose (the `tune` capability our hello carries);
    /// after the hellos, what both ends agreed ([`super::tune`]).
    pub tune: Option<crate::proto::merkle::caps::Tune>,
    // Issue 16, remote CPU:
    /// Between arsyncs: this machine's chunking speed (bytes per second), for our hello's
    /// `cpu` capability; `None`: not measured, not sent.
    pub cpu_chunk: Option<u64>,
    // Issue 18, chunk cache:
    /// Chunk lists of large files remembered across runs for the delta exchange, if enabled.
    pub chunk_cache: Option<std::sync::Arc<super::chunkcache::ChunkCache>>,
    // Issue 16, adapt during the run:
    /// The receiver's request window for delta files and the switch of the files not yet
    /// asked for between delta and whole (`ARSYNC_ADAPT=1`); `None`: off, every request at
    /// once as before.
    pub adapt: Option<crate::negotiate::adapt::AdaptOpts>,
}

// Issue 15, source: what happens to the sources, and deletions despite errors.
/// rsync's options about the source side's files and about deleting in spite of errors.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SourceOptions {
    /// `--remove-source-files`: the sender removes each non-directory the receiver
    /// synchronized (transferred, or found identical).
    pub remove_source_files: bool,
    /// `--ignore-errors`: `--delete` deletes even when the sender had I/O errors.
    pub ignore_errors: bool,
}

// Issue 15, dest: the receiver's per-file choices.
/// rsync's options that decide what the receiver does with each file.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DestOptions {
    /// `-u`/`--update`: skip files that are newer on the receiver.
    pub update: bool,
    /// `--modify-window=NUM` (`-@`): modification times this many seconds apart count as
    /// equal; negative: compare nanoseconds too.
    pub modify_window: i32,
    /// `-O`/`--omit-dir-times`: directories keep their modification times.
    pub omit_dir_times: bool,
    /// `-J`/`--omit-link-times`: symlinks keep their modification times.
    pub omit_link_times: bool,
    /// `--max-delete=NUM`: delete at most this many items (`Some(0)`: none).
    pub max_delete: Option<u64>,
}

// Issue 15, write: how the receiver writes, and a few receiver switches.
/// rsync's options that decide how the receiver writes what it gets.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WriteOptions {
    /// `--chmod=CHMOD` (each value, in order): applied to the modes the sender lists, on the
    /// client's side as upstream does (a receiving client, or the receiving server it starts).
    pub chmod: Vec<String>,
    /// `--mkpath`: create the destination's missing path components.
    pub mkpath: bool,
    /// `--force`: delete a non-empty directory in the way of a non-directory.
    pub force: bool,
    // Issue 15, data:
    /// `-S`/`--sparse`: runs of zeros in written files become holes.
    pub sparse: bool,
    /// `--append` (1) / `--append-verify` (2): files longer on the sender get the extra bytes
    /// appended; files as long or longer on the receiver are left alone.
    pub append: u8,
    /// `-E`/`--executability`: without `-p`, a regular file's execute bits follow the
    /// sender's (rsync's `dest_mode`).
    pub executability: bool,
}

/// `-E` on an existing file without `-p`: its mode `cur` (permission bits) with execute bits
/// as the sender's `src` says — none if the source is not executable, else (when it has
/// none) one for every read bit, as rsync's `dest_mode` does.
pub fn executable_mode(src: u32, cur: u32) -> u32 {
    let m = cur & 0o7777;
    if src & 0o111 == 0 {
        m & !0o111
    } else if m & 0o111 == 0 {
        m | (m & 0o444) >> 2
    } else {
        m
    }
}

/// Directory levels of hashes per round trip when nothing says otherwise.
pub const DEFAULT_TREE_LEVELS: u32 = 2;

impl SyncOptions {
    /// `-a`: `-rlptgoD`.
    pub fn archive() -> Self {
        SyncOptions {
            recursive: true,
            links: true,
            perms: true,
            times: true,
            group: true,
            owner: true,
            devices: true,
            specials: true,
            ..SyncOptions::default()
        }
    }

    /// Whether these options transfer entries of `kind`: symlinks with `-l`, devices with
    /// `--devices`, FIFOs and sockets with `--specials`; files and directories always.
    pub fn wants_kind(&self, kind: crate::flist::FileKind) -> bool {
        !self.unwanted_kinds().has(kind)
    }

    /// The kinds these options leave out (see [`Self::wants_kind`]).
    pub fn unwanted_kinds(&self) -> NodeKinds {
        NodeKinds {
            symlinks: !self.links,
            devices: !self.devices,
            specials: !self.specials,
        }
    }

    /// How many files move at once.
    pub fn parallelism(&self) -> usize {
        if self.parallel > 0 {
            return self.parallel;
        }
        (cores() * 4).clamp(4, 64)
    }
}

/// The number of cores, asked once (`available_parallelism` reads cgroup files each call).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// A set of the kinds of entries that are neither files nor directories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeKinds {
    /// Symlinks.
    pub symlinks: bool,
    /// Character and block devices.
    pub devices: bool,
    /// FIFOs and sockets.
    pub specials: bool,
}

impl NodeKinds {
    /// Whether `kind` is in the set (files and directories never are).
    pub fn has(self, kind: crate::flist::FileKind) -> bool {
        use crate::flist::FileKind;
        match kind {
            FileKind::Symlink => self.symlinks,
            FileKind::CharDev | FileKind::BlockDev => self.devices,
            FileKind::Fifo | FileKind::Socket => self.specials,
            FileKind::File | FileKind::Dir => false,
        }
    }
}

/// When `--delete` deletes (rsync's `--delete-before`, `--delete-during`, `--delete-delay`,
/// `--delete-after`). arsync's receiver deletes in the same place for all four (before each
/// directory's files, only in completely listed directories), so the trees agree; what differs
/// is what is itemized — after `--delete-before`'s pass of its own, a directory whose time the
/// deletions changed is itemized `.d..t`, as rsync's generator, which runs after them, sees it —
/// and whether the list may stream (not with a pass of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteWhen {
    /// `--delete`, `--delete-during`, `--del`.
    #[default]
    During,
    /// `--delete-before`.
    Before,
    /// `--delete-delay`.
    Delay,
    /// `--delete-after`.
    After,
}

impl DeleteWhen {
    /// The option that names it on a server's command line (rsync's `server_options`).
    pub fn flag(self) -> &'static str {
        match self {
            DeleteWhen::During => "--delete",
            DeleteWhen::Before => "--delete-before",
            DeleteWhen::Delay => "--delete-delay",
            DeleteWhen::After => "--delete-after",
        }
    }

    /// Issue 18, streaming list: deletions in a pass of their own, not directory by directory
    /// as the list comes.
    pub fn outside_dirs(self) -> bool {
        self != DeleteWhen::During
    }
}
