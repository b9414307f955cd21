//! The option table: every option arsync accepts, as clap parses it, with rsync's spellings
//! and help texts. Owns nothing but the table; turning it into a [`super::Command`] is the
//! parent's job.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

#[derive(Parser, Debug)]
#[command(
    name = "arsync",
    version,
    about = "Fast file synchronisation with rsync's command line",
    override_usage = "arsync [OPTIONS] SRC... DEST",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub(super) struct Cli {
    /// archive mode: -rlptgoD (no -A, -X, -H)
    #[arg(short = 'a', long)]
    pub(super) archive: bool,
    /// recurse into directories
    #[arg(short = 'r', long)]
    pub(super) recursive: bool,
    /// copy symlinks as symlinks
    #[arg(short = 'l', long)]
    pub(super) links: bool,
    // Issue 15, links:
    /// transform symlink into referent file/dir
    #[arg(short = 'L', long)]
    pub(super) copy_links: bool,
    /// only "unsafe" symlinks are transformed
    #[arg(long)]
    pub(super) copy_unsafe_links: bool,
    /// ignore symlinks that point outside the tree
    #[arg(long)]
    pub(super) safe_links: bool,
    /// transform symlink to dir into referent dir
    #[arg(short = 'k', long)]
    pub(super) copy_dirlinks: bool,
    /// treat symlinked dir on receiver as dir
    #[arg(short = 'K', long)]
    pub(super) keep_dirlinks: bool,
    /// leave high-bit chars unescaped in output
    #[arg(short = '8', long)]
    pub(super) eight_bit_output: bool,
    /// preserve permissions
    #[arg(short = 'p', long)]
    pub(super) perms: bool,
    /// preserve modification times
    #[arg(short = 't', long)]
    pub(super) times: bool,
    /// preserve group
    #[arg(short = 'g', long)]
    pub(super) group: bool,
    /// preserve owner (super-user only)
    #[arg(short = 'o', long)]
    pub(super) owner: bool,
    /// same as --devices --specials
    #[arg(short = 'D')]
    pub(super) devices_specials: bool,
    /// preserve device files (super-user only)
    #[arg(long)]
    pub(super) devices: bool,
    /// preserve special files
    #[arg(long)]
    pub(super) specials: bool,
    /// preserve hard links
    #[arg(short = 'H', long)]
    pub(super) hard_links: bool,
    /// preserve extended attributes
    #[arg(short = 'X', long)]
    pub(super) xattrs: bool,
    // Issue 15, acls:
    /// preserve ACLs (implies --perms)
    #[arg(short = 'A', long)]
    pub(super) acls: bool,
    /// increase verbosity
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub(super) verbose: u8,
    /// suppress non-error messages
    #[arg(short = 'q', long)]
    pub(super) quiet: bool,
    /// perform a trial run with no changes made
    #[arg(short = 'n', long)]
    pub(super) dry_run: bool,
    /// output a change-summary for all updates
    #[arg(short = 'i', long, action = ArgAction::Count)]
    pub(super) itemize_changes: u8,
    /// skip based on checksum, not mod-time & size
    #[arg(short = 'c', long)]
    pub(super) checksum: bool,
    /// copy files whole (w/o delta-xfer algorithm)
    #[arg(short = 'W', long)]
    pub(super) whole_file: bool,
    /// compress file data during the transfer (no effect on a local sync)
    #[arg(short = 'z', long)]
    pub(super) compress: bool,
    /// explicitly set the compression level (zstd, 1-19; implies -z)
    #[arg(long, value_name = "NUM")]
    pub(super) compress_level: Option<i32>,
    /// choose the compression algorithm (rsync's protocol: zstd or lz4; implies -z)
    #[arg(long, alias = "zc", value_name = "NAME")]
    pub(super) compress_choice: Option<String>,
    /// choose the checksum algorithm (rsync's protocol: xxh128, xxh3, xxh64, md5, md4)
    #[arg(long, alias = "cc", value_name = "NAME")]
    pub(super) checksum_choice: Option<String>,
    /// don't skip files that match size and time
    #[arg(short = 'I', long)]
    pub(super) ignore_times: bool,
    /// skip files that match in size
    #[arg(long)]
    pub(super) size_only: bool,
    /// skip creating new files on receiver
    #[arg(long, visible_alias = "ignore-non-existing")]
    pub(super) existing: bool,
    /// skip updating files that exist on receiver
    #[arg(long)]
    pub(super) ignore_existing: bool,
    // Issue 15, dest: what the receiver does with each file.
    /// skip files that are newer on the receiver
    #[arg(short = 'u', long)]
    pub(super) update: bool,
    /// set the accuracy for mod-time comparisons
    #[arg(short = '@', long, value_name = "NUM", allow_negative_numbers = true)]
    pub(super) modify_window: Option<i32>,
    /// omit directories from --times
    #[arg(short = 'O', long)]
    pub(super) omit_dir_times: bool,
    /// omit symlinks from --times
    #[arg(short = 'J', long)]
    pub(super) omit_link_times: bool,
    /// don't delete more than NUM files
    #[arg(long, value_name = "NUM", allow_negative_numbers = true)]
    pub(super) max_delete: Option<i64>,
    /// delete extraneous files from dest dirs
    #[arg(long)]
    pub(super) delete: bool,
    /// also delete excluded files from dest dirs
    #[arg(long)]
    pub(super) delete_excluded: bool,
    /// receiver deletes before transfer (same as --delete here)
    #[arg(long)]
    pub(super) delete_before: bool,
    /// receiver deletes during the transfer (same as --delete here; also --del)
    #[arg(long, alias = "del")]
    pub(super) delete_during: bool,
    /// find deletions during, delete after (same as --delete here)
    #[arg(long)]
    pub(super) delete_delay: bool,
    /// receiver deletes after transfer (same as --delete here)
    #[arg(long)]
    pub(super) delete_after: bool,
    // Issue 15, backup:
    /// make backups (see --suffix & --backup-dir)
    #[arg(short = 'b', long)]
    pub(super) backup: bool,
    #[arg(long, hide = true)]
    pub(super) no_backup: bool,
    /// make backups into hierarchy based in DIR
    #[arg(long, value_name = "DIR")]
    pub(super) backup_dir: Option<PathBuf>,
    /// backup suffix (default ~ w/o --backup-dir)
    #[arg(long, value_name = "SUFFIX", allow_hyphen_values = true)]
    pub(super) suffix: Option<String>,
    // Issue 15, dests:
    /// also compare destination files relative to DIR
    #[arg(long, value_name = "DIR")]
    pub(super) compare_dest: Vec<PathBuf>,
    /// ... and include copies of unchanged files
    #[arg(long, value_name = "DIR")]
    pub(super) copy_dest: Vec<PathBuf>,
    /// hardlink to files in DIR when unchanged
    #[arg(long, value_name = "DIR")]
    pub(super) link_dest: Vec<PathBuf>,
    /// exclude files matching PATTERN
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub(super) exclude: Vec<String>,
    /// don't exclude files matching PATTERN
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub(super) include: Vec<String>,
    /// add a file-filtering RULE
    #[arg(short = 'f', long, value_name = "RULE", allow_hyphen_values = true)]
    pub(super) filter: Vec<String>,
    // Issue 15, filters:
    /// same as --filter='dir-merge /.rsync-filter'; repeated: --filter='- .rsync-filter'
    #[arg(short = 'F', action = ArgAction::Count)]
    pub(super) filter_shorthand: u8,
    /// auto-ignore files in the same way CVS does
    #[arg(short = 'C', long)]
    pub(super) cvs_exclude: bool,
    /// read list of source-file names from FILE
    #[arg(long, value_name = "FILE")]
    pub(super) files_from: Option<String>,
    /// all *-from/filter files are delimited by 0s
    #[arg(short = '0', long)]
    pub(super) from0: bool,
    #[arg(long = "no-from0", hide = true)]
    pub(super) no_from0: bool,
    /// don't send implied dirs with --relative (refused with -R for now)
    #[arg(long)]
    pub(super) no_implied_dirs: bool,
    #[arg(long = "implied-dirs", hide = true)]
    pub(super) implied_dirs: bool,
    /// transfer directories without recursing
    #[arg(short = 'd', long)]
    pub(super) dirs: bool,
    /// read exclude patterns from FILE
    #[arg(long, value_name = "FILE")]
    pub(super) exclude_from: Vec<PathBuf>,
    /// read include patterns from FILE
    #[arg(long, value_name = "FILE")]
    pub(super) include_from: Vec<PathBuf>,
    // Issue 15, select:
    /// prune empty directory chains from file-list
    #[arg(short = 'm', long)]
    pub(super) prune_empty_dirs: bool,
    /// don't transfer any file larger than SIZE
    #[arg(long, value_name = "SIZE")]
    pub(super) max_size: Option<String>,
    /// don't transfer any file smaller than SIZE
    #[arg(long, value_name = "SIZE")]
    pub(super) min_size: Option<String>,
    /// send the file list all at once (rsync's protocol), not a directory at a time
    #[arg(
        long = "no-inc-recursive",
        visible_alias = "no-i-r",
        overrides_with = "inc_recursive"
    )]
    pub(super) no_inc_recursive: bool,
    /// send the file list a directory at a time where the peer can (the default)
    #[arg(
        long = "inc-recursive",
        visible_alias = "i-r",
        overrides_with = "no_inc_recursive"
    )]
    pub(super) inc_recursive: bool,
    /// follow symlinks in the paths given on the command line whoever owns them (what arsync
    /// always does; rsync 3.5 asks for this option)
    #[arg(long)]
    pub(super) insecure_links: bool,
    /// don't cross filesystem boundaries
    #[arg(short = 'x', long, action = ArgAction::Count)]
    pub(super) one_file_system: u8,
    /// ignore missing source args without error
    #[arg(long)]
    pub(super) ignore_missing_args: bool,
    /// delete missing source args from destination
    #[arg(long)]
    pub(super) delete_missing_args: bool,
    // Issue 15, source:
    /// sender removes synchronized files (non-dir)
    #[arg(long)]
    pub(super) remove_source_files: bool,
    /// delete even if there are I/O errors
    #[arg(long)]
    pub(super) ignore_errors: bool,
    #[arg(long, hide = true, overrides_with = "ignore_errors")]
    pub(super) no_ignore_errors: bool,
    /// use relative path names
    #[arg(short = 'R', long)]
    pub(super) relative: bool,
    #[arg(long = "no-relative", visible_alias = "no-R", hide = true)]
    pub(super) no_relative: bool,
    /// give some file-transfer stats
    #[arg(long)]
    pub(super) stats: bool,
    /// show progress during transfer
    #[arg(long)]
    pub(super) progress: bool,
    /// same as --partial --progress
    #[arg(short = 'P')]
    pub(super) partial_progress: bool,
    /// fine-grained informational verbosity
    #[arg(long, value_name = "FLAGS")]
    pub(super) info: Vec<String>,
    /// fine-grained debug verbosity (rsync's names are accepted; arsync's own diagnostics
    /// are -vv and --explain)
    #[arg(long, value_name = "FLAGS")]
    pub(super) debug: Vec<String>,
    /// don't map uid/gid values by user/group name
    #[arg(long)]
    pub(super) numeric_ids: bool,
    // Issue 15, own:
    /// simple username/groupname mapping
    #[arg(long, value_name = "USER:GROUP")]
    pub(super) chown: Option<String>,
    /// custom username mapping
    #[arg(long, value_name = "STRING")]
    pub(super) usermap: Option<String>,
    /// custom groupname mapping
    #[arg(long, value_name = "STRING")]
    pub(super) groupmap: Option<String>,
    /// no space-splitting; wildcard chars only
    #[arg(short = 's', long, visible_alias = "protect-args")]
    pub(super) secluded_args: bool,
    #[arg(long = "no-secluded-args", visible_aliases = ["no-protect-args", "no-s"], hide = true)]
    pub(super) no_secluded_args: bool,
    /// keep partially transferred files
    #[arg(long)]
    pub(super) partial: bool,
    // Issue 15, tempfiles:
    /// put a partially transferred file into DIR
    #[arg(long, value_name = "DIR")]
    pub(super) partial_dir: Option<PathBuf>,
    /// create temporary files in directory DIR
    #[arg(short = 'T', long, value_name = "DIR")]
    pub(super) temp_dir: Option<PathBuf>,
    /// put all updated files into place at end
    #[arg(long)]
    pub(super) delay_updates: bool,
    #[arg(long, hide = true)]
    pub(super) no_delay_updates: bool,
    /// update destination files in-place
    #[arg(long)]
    pub(super) inplace: bool,
    // Issue 15, data:
    /// turn sequences of nulls into sparse blocks
    #[arg(short = 'S', long)]
    pub(super) sparse: bool,
    /// append data onto shorter files
    // Counted: an rsync client passes `--append` twice for --append-verify.
    #[arg(long, action = clap::ArgAction::Count)]
    pub(super) append: u8,
    /// --append w/old data in file checksum
    #[arg(long)]
    pub(super) append_verify: bool,
    // Issue 15, write:
    /// affect file and/or directory permissions
    #[arg(long, value_name = "CHMOD")]
    pub(super) chmod: Vec<String>,
    /// create destination's missing path components
    #[arg(long)]
    pub(super) mkpath: bool,
    /// force deletion of dirs even if not empty
    #[arg(long)]
    pub(super) force: bool,
    /// limit socket I/O bandwidth (KiB/s, or with a K/M/G suffix)
    #[arg(long, value_name = "RATE")]
    pub(super) bwlimit: Option<String>,
    /// output numbers in a human-readable format (alone: this help)
    #[arg(short = 'h', long, action = ArgAction::Count)]
    pub(super) human_readable: u8,
    /// file I/O backend: auto, uring or threads
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub(super) io: String,
    /// stream file data through the protocol even for a local copy (tests the remote path)
    #[arg(long, hide = true)]
    pub(super) stream_data: bool,
    /// set I/O timeout in seconds: end the run (exit 30) when the peer sends nothing for
    /// this long (0: no timeout)
    #[arg(long, value_name = "SECONDS")]
    pub(super) timeout: Option<u64>,
    /// set the connect timeout in seconds (exit 35)
    #[arg(long, value_name = "SECONDS")]
    pub(super) contimeout: Option<u64>,
    /// how many files move at once (0: from the core count)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) parallel: usize,
    /// specify the remote shell to use
    #[arg(short = 'e', long, value_name = "COMMAND")]
    pub(super) rsh: Option<String>,
    /// specify the rsync to run on the remote machine
    #[arg(long, value_name = "PROGRAM")]
    pub(super) rsync_path: Option<String>,
    #[arg(long, value_name = "NAME", default_value = "auto", help = transport_help())]
    pub(super) transport: String,
    /// protocol: auto, rsync or merkle
    #[arg(long, value_name = "NAME", default_value = "auto")]
    pub(super) protocol: String,
    /// parallel streams or connections
    #[arg(long, value_name = "N")]
    pub(super) streams: Option<u32>,
    /// SSH client: system (the -e program), native (built in: ~/.ssh/config, agent, keys,
    /// known_hosts; one login shared by an ssh-pool), or auto (native where it follows the
    /// login as ssh would, retried with the system ssh if refused; native for ssh-pool)
    #[arg(long, value_name = "CLIENT", default_value = "auto")]
    pub(super) ssh: String,
    /// between arsyncs: directory levels of tree hashes per round trip (0: send the whole
    /// file list)
    #[arg(long, value_name = "N")]
    pub(super) tree_levels: Option<u32>,
    /// between arsyncs: average chunk size of the delta exchange (e.g. 4K; default: from
    /// each file's size)
    #[arg(long, value_name = "SIZE")]
    pub(super) chunk_size: Option<String>,
    /// print each negotiation decision and why
    #[arg(long)]
    pub(super) explain: bool,
    // Issue 16, per-host memory:
    /// neither use nor store what earlier runs learned about the remote host (UDP blocked,
    /// arsync there or only rsync, RTT; kept in ~/.cache/arsync/hosts or $ARSYNC_CACHE_DIR)
    #[arg(long)]
    pub(super) no_host_memory: bool,
    /// forget what earlier runs learned about the remote host, then learn it anew
    #[arg(long)]
    pub(super) forget_host: bool,
    /// output updates using the specified FORMAT (rsync's %n %i %L %l %o %b %f %B %M %t %p …)
    #[arg(long, value_name = "FORMAT", alias = "log-format")]
    pub(super) out_format: Option<String>,
    /// log what we're doing to the specified FILE
    #[arg(long, value_name = "FILE")]
    pub(super) log_file: Option<PathBuf>,
    /// log updates using the specified FMT (default "%i %n%L")
    #[arg(long, value_name = "FMT")]
    pub(super) log_file_format: Option<String>,
    /// read the rsync daemon password from FILE
    #[arg(long, value_name = "FILE")]
    pub(super) password_file: Option<PathBuf>,
    /// do not use or update the caches of content hashes (-c) and of chunk indexes (deltas)
    #[arg(long)]
    pub(super) no_hash_cache: bool,
    /// run as the remote side of a sync (started by a client over a remote shell)
    #[arg(long, hide = true)]
    pub(super) server: bool,
    /// with --server or --pipe: be the sender
    #[arg(long)]
    pub(super) sender: bool,
    /// with --server: accept the data lanes of this pooled session (ssh-pool)
    #[arg(long, hide = true, value_name = "ID")]
    pub(super) lane_session: Option<String>,
    /// with --server: relay stdin/stdout to the server of this pooled session (an ssh-pool lane)
    #[arg(long, hide = true, value_name = "ID")]
    pub(super) lane: Option<String>,
    /// with --server: serve over QUIC, printing port, certificate and token (an SSH bootstrap)
    #[arg(long, hide = true, value_name = "PROTO")]
    pub(super) bootstrap: Option<String>,
    /// arsync://: read the bearer token from FILE (default: $ARSYNC_TOKEN)
    #[arg(long, value_name = "FILE")]
    pub(super) token_file: Option<PathBuf>,
    /// arsync://: without a token, send the access token of `arsync login ISSUER` (refreshed as
    /// needed; default: $ARSYNC_OIDC)
    #[arg(long, value_name = "ISSUER")]
    pub(super) oidc: Option<String>,
    /// arsync://: trust servers certified by this CA (PEM) instead of pinning their certificate
    #[arg(long, value_name = "FILE")]
    pub(super) tls_ca: Option<PathBuf>,
    /// arsync://: client certificate (PEM) for mutual TLS, with --tls-key
    #[arg(long, value_name = "FILE")]
    pub(super) tls_cert: Option<PathBuf>,
    /// arsync://: the key of --tls-cert
    #[arg(long, value_name = "FILE")]
    pub(super) tls_key: Option<PathBuf>,
    /// QUIC: congestion controller (cubic, bbr, newreno); default: like this host's TCP
    #[arg(long, value_name = "NAME")]
    pub(super) congestion: Option<String>,
    /// QUIC: flow-control window per stream, the bandwidth-delay product to cover (e.g. 16M)
    #[arg(long, value_name = "SIZE")]
    pub(super) quic_window: Option<String>,
    // Issue 17, h2:
    /// --transport=h2: reach arsync:// through this HTTP proxy (CONNECT), e.g.
    /// http://proxy:3128 (default: $HTTPS_PROXY, less $NO_PROXY)
    #[arg(long, value_name = "URL")]
    pub(super) proxy: Option<String>,
    /// with --pipe: be the receiver
    #[arg(long)]
    pub(super) receiver: bool,
    /// speak the protocol on stdin/stdout (with --sender SRC... or --receiver DEST)
    #[arg(long)]
    pub(super) pipe: bool,
    // Negations, as rsync's --no-OPTION.
    #[arg(long = "no-recursive", visible_alias = "no-r", hide = true)]
    pub(super) no_recursive: bool,
    #[arg(long = "no-links", visible_alias = "no-l", hide = true)]
    pub(super) no_links: bool,
    #[arg(long = "no-perms", visible_alias = "no-p", hide = true)]
    pub(super) no_perms: bool,
    #[arg(long = "no-times", visible_alias = "no-t", hide = true)]
    pub(super) no_times: bool,
    #[arg(long = "no-group", visible_alias = "no-g", hide = true)]
    pub(super) no_group: bool,
    #[arg(long = "no-owner", visible_alias = "no-o", hide = true)]
    pub(super) no_owner: bool,
    #[arg(long = "no-D", hide = true)]
    pub(super) no_devices_specials: bool,
    /// use the delta-xfer algorithm
    #[arg(long = "no-whole-file", visible_alias = "no-W")]
    pub(super) no_whole_file: bool,
    /// munge symlinks to make them safe & unusable
    #[arg(long)]
    pub(super) munge_links: bool,
    // Issue 15, executability:
    /// preserve executability
    #[arg(short = 'E', long)]
    pub(super) executability: bool,
    /// change stderr output mode (default: errors)
    #[arg(long, value_name = "e|a|c")]
    pub(super) stderr: Option<String>,
    // Issue 15, connection:
    /// send OPTION to the remote side only
    #[arg(
        short = 'M',
        long = "remote-option",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    pub(super) remote_option: Vec<String>,
    /// specify double-colon alternate port number
    #[arg(long, value_name = "PORT")]
    pub(super) port: Option<u16>,
    /// prefer IPv4
    #[arg(short = '4', long = "ipv4")]
    pub(super) ipv4: bool,
    /// prefer IPv6
    #[arg(short = '6', long = "ipv6", conflicts_with = "ipv4")]
    pub(super) ipv6: bool,
    /// bind address for outgoing socket to daemon
    #[arg(long, value_name = "ADDRESS")]
    pub(super) address: Option<std::net::IpAddr>,
    /// suppress daemon-mode MOTD
    #[arg(long)]
    pub(super) no_motd: bool,
    /// use blocking I/O for the remote shell
    #[arg(long)]
    pub(super) blocking_io: bool,
    /// set out buffering to None, Line, or Block
    #[arg(long, value_name = "N|L|B")]
    pub(super) outbuf: Option<String>,
    /// trust the remote sender's file list
    #[arg(long)]
    pub(super) trust_sender: bool,
    /// print help
    #[arg(long, action = ArgAction::Help)]
    pub(super) help: Option<bool>,
    /// list the files instead of copying them
    #[arg(long)]
    pub(super) list_only: bool,
    /// print a shell completion script (bash, zsh, fish, elvish or powershell) and exit
    #[arg(long, value_name = "SHELL")]
    pub(super) completions: Option<clap_complete::Shell>,
    /// print the manual page (roff) and exit
    #[arg(long)]
    pub(super) man: bool,
    /// print the version and what this build has
    #[arg(short = 'V', long)]
    pub(super) version: bool,
    /// SRC... DEST
    #[arg(value_name = "PATH", num_args = 0..)]
    pub(super) paths: Vec<OsString>,
}

/// `--transport`'s help: `auto` and every registered name, and the helper programs
/// (`arsync-transport-NAME` on `PATH`).
pub(super) fn transport_help() -> String {
    format!(
        "transport: auto (QUIC bootstrapped over ssh, else ssh, else rsync's protocol), one of {}, \
         or NAME for a helper program arsync-transport-NAME on PATH",
        arsync_transports::default_registry().names().join(", ")
    )
}
