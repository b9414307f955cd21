//! rsync's command line → [`Command`].
//!
//! Accepts rsync's option spellings (clustered short flags like `-avz`, `--no-OPTION`
//! negations, `--info=progress2`, `-P`) and keeps `--exclude`/`--include`/`--filter` in their
//! command-line order, which decides how they match.
//!
//! The parts: [`cli`] is the option table (clap), [`values`] parses option values (sizes,
//! rates), [`location`] tells remote arguments from local ones and parses them, and
//! [`server_line`] builds the command line the remote side runs. This module owns the parsed
//! [`Command`] and the step from the option table to it; it does not run anything.

mod backup;
mod cli;
pub mod connection;
mod files_from;
pub mod info;
mod location;
mod own;
pub mod secluded;
mod server_line;
mod values;
mod write;

use std::ffi::OsString;
use std::path::PathBuf;

use arsync_core::engine::options::DeleteWhen;
use arsync_core::engine::{FilterRules, IoMode, SyncOptions};
use arsync_transports::registry::SshClient;
use clap::{CommandFactory, FromArgMatches};

use cli::Cli;
use location::{is_remote, parse_remote};
pub use values::{parse_chunk_size, parse_rate, parse_size};

/// How the run prints.
#[derive(Debug, Clone, Default)]
pub struct OutputOpts {
    /// `-v` count.
    pub verbose: u8,
    /// `-q`.
    pub quiet: bool,
    /// `-i` count.
    pub itemize: u8,
    /// `--stats`.
    pub stats: bool,
    /// `--progress`.
    pub progress: bool,
    /// `--info=progress2`.
    pub progress2: bool,
    /// `-n`.
    pub dry_run: bool,
    /// Issue 15, links: `-8`: print high-bit bytes of names as they are.
    pub eight_bit: bool,
    /// `--out-format`/`--log-format`.
    pub out_format: Option<String>,
    /// `--log-file` and its format (`--log-file-format`, default `%i %n%L`).
    pub log_file: Option<(PathBuf, String)>,
    /// `%o`: this side sends (a push or a local copy) or receives (a pull).
    pub sending: bool,
    /// `%f`: what a name is prefixed with for its long form (the single source's directory).
    pub source_prefix: String,
    /// rsync's `--info` levels: from `-v`, `-q`, `--stats`, `--progress` and `--info`.
    pub info: info::InfoLevels,
    /// A remote listing (`arsync HOST:PATH`, `--list-only`): every entry of the list as a
    /// listing line, and nothing of what a sync prints.
    pub list_entries: bool,
    /// In a listing, a symlink's target after its name (`-l`).
    pub list_targets: bool,
    // Issue 16, adapt during the run:
    /// `--explain`: the engine's decisions during the run are printed too.
    pub explain: bool,
}

impl OutputOpts {
    /// Whether an rsync client that started us as its server wants to hear what we do
    /// without data (`created directory …`): it passes `-v` or `--log-format=%i`.
    pub fn reports_to_rsync_client(&self) -> bool {
        self.verbose > 0 || self.out_format.as_deref().is_some_and(|f| f.contains("%i"))
    }
}

/// Write `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn print_all(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// `--version`: the version, the protocols both ways, and what this build has.
fn version_text() -> String {
    let transports = arsync_transports::default_registry().names().join(", ");
    format!(
        "arsync  version {}  protocol versions: merkle {}, rsync {}-{}\n\
         Capabilities:\n    64-bit files, 64-bit inums, 64-bit timestamps, symlinks, symtimes,\n    \
         hardlinks, hardlink-specials, IPv6, xattrs, inplace, io_uring\n\
         Transports:\n    {transports}\n\
         Checksum list:\n    blake3 (merkle); xxh128 xxh3 xxh64 md5 md4 (rsync's protocol)\n\
         Compress list:\n    zstd lz4 none\n\n\
         arsync comes with ABSOLUTELY NO WARRANTY. It speaks rsync's protocol; it is not rsync.\n",
        env!("CARGO_PKG_VERSION"),
        arsync_core::proto::merkle::PROTOCOL_VERSION,
        arsync_core::engine::rsync::RSYNC_PROTOCOL_MIN,
        arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX,
    )
}

/// A `[user@]host:path` argument (all remote sources share one host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub user: Option<String>,
    pub host: String,
    pub paths: Vec<String>,
    /// An rsync daemon (`rsync://host[:port]/module/path` or `host::module/path`): its port.
    pub daemon_port: Option<u16>,
    /// An arsync daemon (`arsync://host[:port]/module/path`): its UDP port.
    pub arsync_port: Option<u16>,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Both ends on this machine.
    Local {
        sources: Vec<PathBuf>,
        dest: PathBuf,
    },
    /// Local sources to a remote destination.
    Push {
        sources: Vec<PathBuf>,
        remote: Remote,
    },
    /// Remote sources to a local destination.
    Pull { remote: Remote, dest: PathBuf },
    /// `--server` (started by a remote shell) or `--pipe`: one role on stdin/stdout.
    Server { sender: bool, paths: Vec<PathBuf> },
    /// `--server --lane=ID`: relay stdin/stdout to the server of pooled session ID.
    Lane { id: String },
    /// `arsync rsync://host/`: list a daemon's modules.
    List { remote: Remote },
    /// `--list-only`, or one local argument and no destination: list the sources.
    ListLocal { sources: Vec<PathBuf> },
}

/// A parsed command line.
#[derive(Debug, Clone)]
pub struct Command {
    pub mode: Mode,
    pub opts: SyncOptions,
    pub output: OutputOpts,
    /// `-e`/`--rsh`.
    pub rsh: String,
    /// `--rsync-path`.
    pub rsync_path: String,
    /// The filter rules in order, as `--filter` strings (forwarded to a server).
    pub filter_rules: Vec<String>,
    /// `--protocol=rsync` or `--protocol=NUM`: speak rsync's wire protocol, offering at most
    /// this version.
    pub rsync_protocol: Option<u8>,
    /// `--protocol=auto` (the default), and no `--rsync-path` chosen: a remote side without
    /// arsync is spoken to in rsync's protocol.
    pub protocol_auto: bool,
    /// `--server` started by an rsync client: its `-e.` capability letters.
    pub rsync_client_info: Option<String>,
    /// `--password-file`.
    pub password_file: Option<PathBuf>,
    /// `--transport`: `auto` or a registered name (checked against the registry in main.rs).
    pub transport: String,
    /// `--server --lane-session=ID`: accept the data lanes of pooled session ID.
    pub lane_session: Option<String>,
    /// `--ssh`: which SSH client logs in (issue 16: `auto` is the built-in one where it
    /// follows the login as `ssh` would, else the `-e` program).
    pub ssh_client: SshClient,
    /// `--server --bootstrap=quic`: serve this role over QUIC (port, certificate and token
    /// printed on stdout) instead of stdin/stdout.
    pub bootstrap: bool,
    /// QUIC settings (`--streams`, `--quic-window`, `--congestion`).
    pub quic: arsync_transports::quic::QuicTuning,
    /// `--token-file` (else `$ARSYNC_TOKEN`): the bearer token for `arsync://`.
    pub token_file: Option<PathBuf>,
    /// Issue 19: `--oidc` (else `$ARSYNC_OIDC`): the issuer whose stored login supplies the
    /// bearer token when no token is given.
    pub oidc: Option<String>,
    /// `--tls-ca`: trust `arsync://` servers this CA certified instead of pinning.
    pub tls_ca: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`: the client certificate for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// `--explain`: print each probe and decision.
    pub explain: bool,
    // Issue 16, per-host memory:
    /// `--no-host-memory`: neither recall nor store what was learned about the host.
    pub no_host_memory: bool,
    /// `--forget-host`: forget what was learned about the host before negotiating.
    pub forget_host: bool,
    /// Issue 15, connection: `-M`, `-4`/`-6`, `--address`, `--no-motd`.
    pub net: connection::NetOptions,
    // Issue 16, params:
    /// `--no-whole-file`: the merkle delta even where negotiation would send whole files.
    pub no_whole_file: bool,
    // Issue 18, chunk cache:
    /// `--no-hash-cache`: neither the content-hash cache nor the chunk-index cache (forwarded
    /// to a peer arsync).
    pub no_hash_cache: bool,
    /// Issue 17, h2: `--proxy URL`: the HTTP proxy `--transport=h2` goes through.
    pub proxy: Option<String>,
}

/// Why parsing stopped.
#[derive(Debug)]
pub enum ParseOutcome {
    /// `--help` or `--version` was printed: exit with this code.
    Exit(u8),
    /// A usage error.
    Usage(String),
}

/// Parse the process arguments.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, ParseOutcome> {
    let args: Vec<OsString> = args.into_iter().collect();
    // `-h` alone is help, as rsync's.
    if args.len() == 2 && args[1] == "-h" {
        let _ = Cli::command().print_help();
        return Err(ParseOutcome::Exit(0));
    }
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    Err(ParseOutcome::Exit(0))
                }
                _ => Err(ParseOutcome::Usage(
                    e.render()
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                )),
            };
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| ParseOutcome::Usage(e.to_string()))?;
    // Issue 15, connection:
    let net = connection::apply(&cli)?;
    // Issue 16, params:
    let no_whole_file = cli.no_whole_file;
    let daemon_port = cli.port.unwrap_or(873);
    if cli.version {
        print!("{}", version_text());
        return Err(ParseOutcome::Exit(0));
    }
    if let Some(shell) = cli.completions {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "arsync", &mut script);
        print_all(&script);
        return Err(ParseOutcome::Exit(0));
    }
    if cli.man {
        let mut page = Vec::new();
        return Err(
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => {
                    print_all(&page);
                    ParseOutcome::Exit(0)
                }
                Err(e) => ParseOutcome::Usage(format!("--man: {e}")),
            },
        );
    }

    // Filter rules in command-line order.
    let mut ordered: Vec<(usize, &'static str, String)> = Vec::new();
    for (id, kind) in [("exclude", "-"), ("include", "+"), ("filter", "f")] {
        if let (Some(idx), Some(vals)) = (matches.indices_of(id), matches.get_many::<String>(id)) {
            for (i, v) in idx.zip(vals) {
                ordered.push((i, kind, v.clone()));
            }
        }
    }
    for (id, kind) in [("exclude_from", "-"), ("include_from", "+")] {
        if let (Some(idx), Some(vals)) = (matches.indices_of(id), matches.get_many::<PathBuf>(id)) {
            for (i, path) in idx.zip(vals) {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ParseOutcome::Usage(format!(
                        "failed to open {} file {}: {e}",
                        id.replace('_', "-"),
                        path.display()
                    ))
                })?;
                // Issue 15, filters: `-0` separates the names with NULs.
                let from0 = cli.from0 && !cli.no_from0;
                let lines: Vec<&str> = if from0 {
                    text.split('\0').collect()
                } else {
                    text.lines().collect()
                };
                for line in lines {
                    let l = if from0 { line } else { line.trim_end() };
                    if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                        continue;
                    }
                    ordered.push((i, kind, l.to_owned()));
                }
            }
        }
    }
    // Issue 15, filters: `-F` is `dir-merge /.rsync-filter`, `-FF` adds `- .rsync-filter`
    // (rsync's options.c), in command-line order with the other rules.
    // A cluster (`-FF`) has one index for both: the rules go at its place, in order.
    let f_given =
        matches.value_source("filter_shorthand") == Some(clap::parser::ValueSource::CommandLine);
    if let Some(idx) = matches.indices_of("filter_shorthand").filter(|_| f_given) {
        let mut at: Vec<usize> = idx.collect();
        if let Some(&last) = at.last() {
            at.resize(usize::from(cli.filter_shorthand).max(at.len()), last);
        }
        for (i, rule) in at.into_iter().zip([": /.rsync-filter", "- .rsync-filter"]) {
            ordered.push((i, "f", rule.to_owned()));
        }
    }
    ordered.sort_by_key(|(i, _, _)| *i);
    let mut filters = FilterRules::new();
    for (_, kind, v) in ordered {
        match kind {
            "-" => filters.exclude(&v),
            "+" => filters.include(&v),
            _ => filters
                .add_filter(&v)
                .map_err(|e| ParseOutcome::Usage(e.to_string()))?,
        }
    }
    // Merge files are read here: a peer gets their rules (`send_filter_list`).
    let mut filter_rules = filters.forward_rules();
    // Issue 15, filters: `-C` puts rsync's CVS rules after all the others (`:C`, then `-C`).
    if cli.cvs_exclude {
        for rule in [":C", "-C"] {
            filters
                .add_filter(rule)
                .map_err(|e| ParseOutcome::Usage(e.to_string()))?;
        }
    }

    let mut opts = if cli.archive {
        SyncOptions::archive()
    } else {
        SyncOptions::default()
    };
    opts.recursive |= cli.recursive;
    opts.links |= cli.links;
    opts.perms |= cli.perms;
    opts.times |= cli.times;
    opts.group |= cli.group;
    opts.owner |= cli.owner;
    opts.devices |= cli.devices || cli.devices_specials;
    opts.specials |= cli.specials || cli.devices_specials;
    opts.hard_links = cli.hard_links;
    // Issue 15, links:
    opts.symlinks = arsync_core::engine::links::SymlinkOptions {
        copy_links: cli.copy_links,
        copy_unsafe_links: cli.copy_unsafe_links,
        safe_links: cli.safe_links,
        copy_dirlinks: cli.copy_dirlinks,
        keep_dirlinks: cli.keep_dirlinks,
        munge_links: cli.munge_links,
    };
    opts.xattrs = cli.xattrs;
    // Issue 15, acls: -A implies -p (as rsync sets preserve_perms with it).
    opts.acls = cli.acls;
    opts.perms |= cli.acls;
    if cli.no_recursive {
        opts.recursive = false;
    }
    // The later of `--inc-recursive` and `--no-inc-recursive` wins (clap's overrides_with).
    opts.no_inc_recursive = cli.no_inc_recursive && !cli.inc_recursive;
    // `--insecure-links` (rsync 3.5): arsync follows the paths a command line names whoever
    // owns their symlinks, which is what the option asks rsync 3.5 to do; nothing to change.
    let _ = cli.insecure_links;
    if cli.no_links {
        opts.links = false;
    }
    if cli.no_perms {
        opts.perms = false;
    }
    if cli.no_times {
        opts.times = false;
    }
    if cli.no_group {
        opts.group = false;
    }
    if cli.no_owner {
        opts.owner = false;
    }
    if cli.no_devices_specials {
        opts.devices = false;
        opts.specials = false;
    }
    opts.delete = cli.delete
        || cli.delete_before
        || cli.delete_during
        || cli.delete_delay
        || cli.delete_after
        || cli.delete_excluded;
    opts.delete_excluded = cli.delete_excluded;
    // As rsync's `options.c`: one WHEN (`--delete-delay` beside `--delete-during` is `-delay`).
    let whens = [
        cli.delete_before,
        cli.delete_during || cli.delete_delay,
        cli.delete_after,
    ];
    if whens.iter().filter(|w| **w).count() > 1 {
        return Err(ParseOutcome::Usage(
            "You may not combine multiple --delete-WHEN options.".into(),
        ));
    }
    opts.delete_when = if cli.delete_before {
        DeleteWhen::Before
    } else if cli.delete_delay {
        DeleteWhen::Delay
    } else if cli.delete_after {
        DeleteWhen::After
    } else {
        DeleteWhen::During
    };
    opts.checksum = cli.checksum;
    if cli.checksum && !cli.no_hash_cache {
        opts.hash_cache = arsync_core::engine::hashcache::HashCache::default_path()
            .map(|p| std::sync::Arc::new(arsync_core::engine::hashcache::HashCache::open(p)));
    }
    // Issue 18, chunk cache: large files' chunk lists for the delta exchange, same opt-out.
    if !cli.no_hash_cache {
        use arsync_core::engine::chunkcache::ChunkCache;
        opts.chunk_cache =
            ChunkCache::default_dir().map(|d| std::sync::Arc::new(ChunkCache::open(d)));
    }
    opts.dry_run = cli.dry_run;
    opts.whole_file = cli.whole_file && !cli.no_whole_file;
    opts.inplace = cli.inplace;
    // Issue 15, write:
    write::apply(&cli, &mut opts)?;
    opts.partial = cli.partial || cli.partial_progress;
    opts.numeric_ids = cli.numeric_ids;
    // Issue 15, own:
    own::apply(&cli, &mut opts)?;
    opts.ignore_times = cli.ignore_times;
    opts.size_only = cli.size_only;
    opts.existing = cli.existing;
    opts.ignore_existing = cli.ignore_existing;
    // Issue 15, dest.
    opts.dest.update = cli.update;
    opts.dest.modify_window = cli.modify_window.unwrap_or(0);
    opts.dest.omit_dir_times = cli.omit_dir_times;
    opts.dest.omit_link_times = cli.omit_link_times;
    // rsync: a negative limit means no deletions at all.
    opts.dest.max_delete = cli.max_delete.map(|n| n.max(0) as u64);
    // Issue 15, backup:
    opts.backup = backup::options(&cli).map_err(ParseOutcome::Usage)?;
    if let Some(rule) = backup::client_rule(&cli, &opts) {
        filters
            .add_filter(&rule)
            .map_err(|e| ParseOutcome::Usage(e.to_string()))?;
        filter_rules.push(rule);
    }
    // rsync: backups beside the files imply --omit-dir-times.
    opts.dest.omit_dir_times |= opts.backup.make_backups && opts.backup.dir.is_none();
    // Issue 15, tempfiles: rsync ignores an empty -T; its client hides the partial directory
    // from both sides (a perishable exclude).
    opts.temp.temp_dir = cli.temp_dir.clone().filter(|d| !d.as_os_str().is_empty());
    opts.temp.delay_updates = cli.delay_updates && !cli.no_delay_updates;
    // --partial-dir (or a client's RSYNC_PARTIAL_DIR with --partial); "." means none.
    let env_dir = (opts.partial && !cli.server)
        .then(|| std::env::var_os("RSYNC_PARTIAL_DIR"))
        .flatten()
        .map(PathBuf::from);
    opts.temp.partial_dir = cli
        .partial_dir
        .clone()
        .or(env_dir)
        .filter(|d| !d.as_os_str().is_empty() && d.as_os_str() != ".");
    opts.partial |= opts.temp.partial_dir.is_some() || opts.temp.delay_updates;
    opts.temp
        .check(opts.inplace, opts.write.append > 0)
        .map_err(ParseOutcome::Usage)?;
    if let Some(rule) = opts.temp.client_rule().filter(|_| !cli.server) {
        filters
            .add_filter(&rule)
            .map_err(|e| ParseOutcome::Usage(e.to_string()))?;
        filter_rules.push(rule);
    }
    // Issue 15, dests: rsync takes one kind only, at most 20 directories.
    for (kind, dirs) in [
        (arsync_core::engine::AltDestKind::Compare, &cli.compare_dest),
        (arsync_core::engine::AltDestKind::Copy, &cli.copy_dest),
        (arsync_core::engine::AltDestKind::Link, &cli.link_dest),
    ] {
        for d in dirs {
            opts.dests
                .add(kind, d.clone())
                .map_err(ParseOutcome::Usage)?;
        }
    }
    opts.filters = filters;
    // Issue 15, filters:
    opts.listing.cvs_exclude = cli.cvs_exclude;
    // Issue 15, select:
    let size = |v: &Option<String>, opt| {
        v.as_deref()
            .map(|v| arsync_core::engine::select::parse_size_arg(v, opt))
            .transpose()
            .map_err(ParseOutcome::Usage)
    };
    opts.select = arsync_core::engine::SelectOptions {
        prune_empty_dirs: cli.prune_empty_dirs,
        max_size: size(&cli.max_size, "max-size")?,
        min_size: size(&cli.min_size, "min-size")?,
        one_file_system: cli.one_file_system,
        ignore_missing_args: cli.ignore_missing_args,
        delete_missing_args: cli.delete_missing_args,
        relative: cli.relative && !cli.no_relative,
    };
    // Issue 15, source:
    opts.source.remove_source_files = cli.remove_source_files;
    opts.source.ignore_errors = cli.ignore_errors && !cli.no_ignore_errors;
    // Issue 15, filters: what --files-from implies (after -R and -r are known).
    files_from::adjust_opts(&cli, &mut opts)?;
    let files_from_req = files_from::Request::new(&cli);
    opts.stream_data = cli.stream_data;
    opts.parallel = cli.parallel;
    opts.io_timeout = cli.timeout.filter(|t| *t > 0);
    opts.connect_timeout = cli.contimeout.filter(|t| *t > 0);
    opts.tree_levels = cli.tree_levels;
    opts.chunk_avg = match &cli.chunk_size {
        Some(v) => Some(parse_chunk_size(v).map_err(ParseOutcome::Usage)?),
        None => None,
    };
    opts.bwlimit = match &cli.bwlimit {
        Some(r) => parse_rate(r).map_err(ParseOutcome::Usage)?,
        None => None,
    };
    opts.io = match cli.io.as_str() {
        "auto" => IoMode::Auto,
        "uring" | "io_uring" => IoMode::Uring,
        "threads" => IoMode::Threads,
        other => {
            return Err(ParseOutcome::Usage(format!(
                "--io={other}: expected auto, uring or threads"
            )))
        }
    };
    let mut levels = info::InfoLevels::for_verbosity(cli.verbose, cli.quiet);
    if cli.stats {
        levels.stats = levels.stats.max(2);
    }
    // An output format prints names and deletions, as rsync's does.
    if cli.out_format.is_some() && !cli.quiet {
        levels.name = levels.name.max(1);
        levels.del = levels.del.max(1);
    }
    // `--progress` is `--info=flist2,name,progress`.
    if (cli.progress || cli.partial_progress) && !cli.quiet {
        levels.progress = levels.progress.max(1);
        levels.name = levels.name.max(1);
        levels.flist = levels.flist.max(2);
    }
    for flags in &cli.info {
        if levels.apply(flags).map_err(ParseOutcome::Usage)? {
            print!("{}", info::INFO_HELP);
            return Err(ParseOutcome::Exit(0));
        }
    }
    for flags in &cli.debug {
        if info::check_debug(flags).map_err(ParseOutcome::Usage)? {
            print!("{}", info::debug_help());
            return Err(ParseOutcome::Exit(0));
        }
    }
    let output = OutputOpts {
        verbose: if cli.quiet { 0 } else { cli.verbose },
        quiet: cli.quiet,
        itemize: cli.itemize_changes,
        stats: levels.stats >= 2,
        progress: levels.progress == 1,
        progress2: levels.progress >= 2,
        dry_run: cli.dry_run,
        out_format: cli.out_format.clone(),
        log_file: cli.log_file.clone().map(|f| {
            let fmt = cli
                .log_file_format
                .clone()
                .unwrap_or_else(|| "%i %n%L".to_owned());
            (f, fmt)
        }),
        sending: true,
        source_prefix: String::new(),
        eight_bit: cli.eight_bit_output,
        info: levels,
        list_entries: false,
        list_targets: false,
        explain: cli.explain,
    };
    opts.progress = output.progress || output.progress2;
    let _ = cli.human_readable;
    let mut quic = arsync_transports::quic::QuicTuning::default();
    if let Some(c) = &cli.congestion {
        quic.congestion = c
            .parse()
            .map_err(|e| ParseOutcome::Usage(format!("--congestion: {e}")))?;
    }
    if let Some(w) = &cli.quic_window {
        quic.window = parse_size(w)
            .filter(|&v| (64 << 10..=1 << 30).contains(&v))
            .ok_or_else(|| {
                ParseOutcome::Usage(format!("--quic-window={w}: a size from 64K to 1G"))
            })?;
    }
    if let Some(n) = cli.streams {
        quic.streams = n;
    }
    let tls_client = match (cli.tls_cert, cli.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(ParseOutcome::Usage(
                "--tls-cert and --tls-key go together".into(),
            ))
        }
    };
    let bootstrap = match cli.bootstrap.as_deref() {
        None => false,
        Some("quic") if cli.server => true,
        Some(other) => {
            return Err(ParseOutcome::Usage(format!(
                "--bootstrap={other}: only --server --bootstrap=quic"
            )))
        }
    };
    let (token_file, tls_ca, explain) = (cli.token_file, cli.tls_ca, cli.explain);
    // Issue 17, h2:
    let proxy = cli.proxy;
    if cli.streams == Some(0) {
        return Err(ParseOutcome::Usage(
            "--streams=0: expected at least 1".into(),
        ));
    }
    opts.streams = cli.streams;
    opts.compress = match (cli.compress, cli.compress_level) {
        (_, Some(l)) if !(1..=19).contains(&l) => {
            return Err(ParseOutcome::Usage(format!(
                "--compress-level={l}: expected 1 to 19"
            )))
        }
        (_, Some(l)) => Some(l),
        (true, None) => Some(3),
        (false, None) => cli.compress_choice.as_ref().map(|_| 3),
    };
    if let Some(c) = &cli.compress_choice {
        if !matches!(c.as_str(), "zstd" | "lz4" | "none") {
            return Err(ParseOutcome::Usage(format!(
                "--compress-choice={c}: arsync has zstd and lz4"
            )));
        }
        if c == "none" {
            opts.compress = None;
        }
    }
    if let Some(c) = &cli.checksum_choice {
        let first = c.split(',').next().unwrap_or("");
        if arsync_core::proto::rsync::checksum::SumKind::from_name(first.as_bytes()).is_none() {
            return Err(ParseOutcome::Usage(format!(
                "--checksum-choice={c}: arsync has xxh128, xxh3, xxh64, md5 and md4"
            )));
        }
    }
    opts.compress_choice = cli.compress_choice.clone().filter(|c| c != "none");
    opts.checksum_choice = cli.checksum_choice.clone();
    let rsync_protocol = match cli.protocol.as_str() {
        "auto" | "merkle" => None,
        "rsync" => Some(arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX),
        n => match n.parse::<u8>() {
            Ok(v)
                if (arsync_core::engine::rsync::RSYNC_PROTOCOL_MIN
                    ..=arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX)
                    .contains(&v) =>
            {
                Some(v)
            }
            _ => {
                return Err(ParseOutcome::Usage(format!(
                    "--protocol={n}: expected auto, merkle, rsync, or an rsync protocol version from 30 to 32"
                )))
            }
        },
    };
    // `--rsync-path="sudo rsync"`: the program started there is rsync itself, so its protocol
    // is spoken (with `--protocol=auto`), as a daily rsync user's scripts expect.
    let rsync_protocol = rsync_protocol.or_else(|| {
        (cli.protocol == "auto" && cli.rsync_path.as_deref().is_some_and(starts_rsync))
            .then_some(arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX)
    });
    if rsync_protocol.is_some() && cli.xattrs {
        return Err(ParseOutcome::Usage(
            "-X is not supported with the rsync wire protocol yet".into(),
        ));
    }
    // The name is checked against the registry before anything runs (main.rs).
    // An rsync client starting us as its server passes its capability letters as `-e.LETTERS`
    // (inside a short-option cluster such as `-logDtpre.iLsfxCIvu`).
    let rsync_client_info = cli
        .rsh
        .as_deref()
        .filter(|r| cli.server && r.starts_with('.'))
        .map(|r| r[1..].to_owned());
    let mut rsh = cli
        .rsh
        .clone()
        .or_else(|| std::env::var("RSYNC_RSH").ok())
        .unwrap_or_else(|| "ssh".into());
    net.shell_with_family(&mut rsh);
    let protocol_auto = cli.protocol == "auto" && cli.rsync_path.is_none();
    let rsync_path = cli.rsync_path.unwrap_or_else(|| {
        if rsync_protocol.is_some() {
            "rsync"
        } else {
            "arsync"
        }
        .into()
    });
    let mut paths = cli.paths;
    let (password_file, transport, lane_session) =
        (cli.password_file, cli.transport, cli.lane_session);
    let ssh_client = match cli.ssh.as_str() {
        "system" => SshClient::System,
        // Issue 16, native login: the built-in client where it follows the login, each
        // connection of a pool sharing one login.
        "auto" if transport == arsync_core::negotiate::names::SSH_POOL => {
            if cfg!(feature = "ssh-native") {
                SshClient::Native
            } else {
                SshClient::System
            }
        }
        "auto" => SshClient::Auto,
        "native" if cfg!(feature = "ssh-native") => SshClient::Native,
        other => {
            return Err(ParseOutcome::Usage(format!(
                "--ssh={other}: expected auto, system or native{}",
                if cfg!(feature = "ssh-native") {
                    ""
                } else {
                    " (this build has no native client)"
                }
            )))
        }
    };
    let lane_id = cli.lane.filter(|_| cli.server);
    if let Some(id) = &lane_session {
        if !cli.server || !arsync_transports::ssh_pool::valid_session_id(id) {
            return Err(ParseOutcome::Usage(format!(
                "--lane-session={id}: only with --server, and a session id"
            )));
        }
    }
    let relative = opts.select.relative;
    // Every mode carries the same settings.
    let command = move |mode: Mode| Command {
        mode,
        opts,
        output,
        rsh,
        rsync_path,
        filter_rules,
        rsync_protocol,
        protocol_auto,
        rsync_client_info,
        password_file,
        transport,
        lane_session,
        ssh_client,
        bootstrap,
        quic,
        token_file,
        oidc: cli.oidc,
        tls_ca,
        tls_client,
        explain,
        // Issue 16, per-host memory:
        no_host_memory: cli.no_host_memory,
        forget_host: cli.forget_host,
        net,
        // Issue 16, params:
        no_whole_file,
        // Issue 18, chunk cache:
        no_hash_cache: cli.no_hash_cache,
        // Issue 17, h2:
        proxy: proxy.clone(),
    };

    if let Some(id) = lane_id {
        if !arsync_transports::ssh_pool::valid_session_id(&id) {
            return Err(ParseOutcome::Usage(format!(
                "--lane={id}: not a session id"
            )));
        }
        return Ok(command(Mode::Lane { id }));
    }
    if cli.server || cli.pipe {
        let sender = match (cli.sender, cli.receiver) {
            (true, false) => true,
            (false, _) => false,
            (true, true) => {
                return Err(ParseOutcome::Usage(
                    "--sender and --receiver exclude each other".into(),
                ))
            }
        };
        if cli.pipe && !cli.sender && !cli.receiver {
            return Err(ParseOutcome::Usage(
                "--pipe needs --sender SRC... or --receiver DEST".into(),
            ));
        }
        // rsync's server command lines put "." before the paths.
        if cli.server && paths.first().is_some_and(|p| p == ".") && paths.len() > 1 {
            paths.remove(0);
        }
        if paths.is_empty() || (!sender && paths.len() != 1) {
            return Err(ParseOutcome::Usage(if sender {
                "the sender needs at least one source".into()
            } else {
                "the receiver needs exactly one destination".into()
            }));
        }
        let mut mode = Mode::Server {
            sender,
            paths: paths.into_iter().map(PathBuf::from).collect(),
        };
        // Issue 15, filters:
        files_from::expand(&files_from_req, relative, &mut mode)?;
        return Ok(command(mode));
    }

    if paths.len() == 1 && paths[0].to_string_lossy().starts_with("rsync://") {
        let remote = parse_remote(&paths[0], daemon_port)?;
        return Ok(command(Mode::List { remote }));
    }
    // `--list-only`, or a source and no destination: list, as rsync does.
    let mut list_remote = false;
    if (cli.list_only && !paths.is_empty()) || paths.len() == 1 {
        // With more than one argument the last is the destination, which a listing ignores.
        if paths.len() > 1 {
            paths.pop();
        }
        if !paths.iter().any(is_remote) {
            return Ok(command(Mode::ListLocal {
                sources: paths.into_iter().map(PathBuf::from).collect(),
            }));
        }
        // A remote listing is a pull that only lists: the file list comes as for a pull
        // (either protocol) and nothing is written (the destination is an empty directory
        // made for the run, see `main`).
        list_remote = true;
        paths.push(OsString::new());
    }
    if paths.len() < 2 {
        return Err(ParseOutcome::Usage(
            "need at least one source and a destination (arsync [OPTIONS] SRC... DEST)".into(),
        ));
    }
    let dest = paths.pop().unwrap_or_default();
    let remote_sources: Vec<bool> = paths.iter().map(is_remote).collect();
    let mode = match (remote_sources.iter().any(|&r| r), is_remote(&dest)) {
        (true, true) => {
            return Err(ParseOutcome::Usage(
                "The source and destination cannot both be remote.".into(),
            ))
        }
        (true, false) => {
            if remote_sources.iter().any(|&r| !r) {
                return Err(ParseOutcome::Usage(
                    "sources must be all local or all on one remote host".into(),
                ));
            }
            let mut remote: Option<Remote> = None;
            for p in &paths {
                let r = parse_remote(p, daemon_port)?;
                match &mut remote {
                    None => remote = Some(r),
                    Some(have) if have.host == r.host && have.user == r.user => {
                        have.paths.extend(r.paths)
                    }
                    Some(_) => {
                        return Err(ParseOutcome::Usage(
                            "all remote sources must be on the same host".into(),
                        ))
                    }
                }
            }
            let remote = remote.ok_or_else(|| ParseOutcome::Usage("no source".into()))?;
            Mode::Pull {
                remote,
                dest: PathBuf::from(dest),
            }
        }
        (false, true) => Mode::Push {
            sources: paths.into_iter().map(PathBuf::from).collect(),
            remote: parse_remote(&dest, daemon_port)?,
        },
        (false, false) => Mode::Local {
            sources: paths.into_iter().map(PathBuf::from).collect(),
            dest: PathBuf::from(dest),
        },
    };
    // Issue 15, filters:
    let mut mode = mode;
    files_from::expand(&files_from_req, relative, &mut mode)?;
    let mut cmd = command(mode);
    cmd.output.sending = !matches!(cmd.mode, Mode::Pull { .. });
    if list_remote {
        cmd.output.list_entries = true;
        cmd.output.list_targets = cmd.opts.links;
        cmd.opts.dry_run = true;
        // Every kind of entry is listed, each in its place (hard links as files), as rsync
        // lists them.
        (cmd.opts.links, cmd.opts.devices, cmd.opts.specials) = (true, true, true);
        (cmd.opts.hard_links, cmd.opts.delete) = (false, false);
        // rsync's listing without -r lists one level (its implied --dirs).
        cmd.opts.listing.dirs |= !cmd.opts.recursive;
    }
    if let Mode::Local { sources, .. } | Mode::Push { sources, .. } = &cmd.mode {
        if let [one] = sources.as_slice() {
            let raw = one.as_os_str().to_string_lossy();
            cmd.output.source_prefix = if raw.ends_with('/') {
                raw.into_owned()
            } else {
                one.parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .filter(|p| !p.is_empty())
                    .map_or_else(String::new, |p| format!("{p}/"))
            };
        }
    }
    Ok(cmd)
}

/// The command line of a subcommand with its own parser (`arsync serve`, `arsync login`): the
/// parsed command, or the exit code after clap printed help (0) or a usage error (1).
pub fn parse_subcommand<C: clap::Parser>(argv: Vec<std::ffi::OsString>) -> Result<C, u8> {
    C::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            1
        } else {
            0
        }
    })
}
/// Whether a `--rsync-path` command starts rsync rather than arsync: one of its words (after
/// a `sudo`, an `env`…) is a program named `rsync`.
fn starts_rsync(path: &str) -> bool {
    arsync_transports::ssh::split_words(path)
        .unwrap_or_else(|| vec![path.to_owned()])
        .iter()
        .any(|w| w.rsplit('/').next() == Some("rsync"))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::args) fn p(args: &[&str]) -> Command {
        let mut v: Vec<OsString> = vec!["arsync".into()];
        v.extend(args.iter().map(OsString::from));
        match parse(v) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn archive_and_negations() {
        let c = p(&["-avz", "--no-o", "a", "b"]);
        assert!(c.opts.recursive && c.opts.links && c.opts.perms && c.opts.times);
        assert!(!c.opts.owner && c.opts.group && c.opts.devices && c.opts.specials);
        assert_eq!(c.output.verbose, 1);
    }

    #[test]
    fn filter_order_is_kept() {
        let c = p(&["-r", "--include=*.c", "--exclude=*", "a", "b"]);
        assert!(!c.opts.filters.excluded_for_sender(b"x.c", false));
        assert!(c.opts.filters.excluded_for_sender(b"x.h", false));
        let c = p(&["-r", "--exclude=*", "--include=*.c", "a", "b"]);
        assert!(c.opts.filters.excluded_for_sender(b"x.c", false));
    }

    #[test]
    fn filter_values_may_start_with_a_dash() {
        let c = p(&["-r", "-f", "- *.o", "--exclude", "-x", "a", "b"]);
        assert!(c.opts.filters.excluded_for_sender(b"a.o", false));
        assert!(c.opts.filters.excluded_for_sender(b"-x", false));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1000").unwrap(), Some(1_024_000));
        assert_eq!(parse_rate("2M").unwrap(), Some(2 << 20));
        assert_eq!(parse_rate("0").unwrap(), None);
        assert!(parse_rate("x").is_err());
    }

    #[test]
    fn remote_paths_and_server_lines() {
        let c = p(&["-a", "--exclude=*.o", "me@host:/x/", "/tmp/y"]);
        let Mode::Pull { remote, dest } = &c.mode else {
            panic!("{:?}", c.mode)
        };
        assert_eq!(remote.user.as_deref(), Some("me"));
        assert_eq!(remote.host, "host");
        assert_eq!(dest, &PathBuf::from("/tmp/y"));
        let cmd = c.server_command(remote, true);
        assert_eq!(&cmd[..3], &["arsync", "--server", "--sender"]);
        assert!(cmd.contains(&"--filter=- *.o".to_owned()));
        assert_eq!(&cmd[cmd.len() - 2..], &[".", "/x/"]);
        // The server parses what the client sends.
        let back = p(&cmd[1..].iter().map(String::as_str).collect::<Vec<_>>());
        let Mode::Server { sender, paths } = &back.mode else {
            panic!("{:?}", back.mode)
        };
        assert!(*sender);
        assert_eq!(paths, &vec![PathBuf::from("/x/")]);
        assert!(back.opts.filters.excluded_for_sender(b"a.o", false));
        assert!(back.opts.recursive && back.opts.times && back.opts.perms);
        let v: Vec<OsString> = ["arsync", "a:/x", "b:/y"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(matches!(parse(v), Err(ParseOutcome::Usage(m)) if m.contains("both be remote")));
    }

    // Issue 18, chunk cache: `--no-hash-cache` turns off this side's chunk-index cache and
    // reaches the peer.
    #[test]
    fn no_hash_cache_reaches_the_server() {
        for (args, off) in [(&["-a"][..], false), (&["-a", "--no-hash-cache"][..], true)] {
            let mut all = args.to_vec();
            all.extend(["host:/x/", "/tmp/y"]);
            let c = p(&all);
            let Mode::Pull { remote, .. } = &c.mode else {
                panic!("{:?}", c.mode)
            };
            let cmd = c.server_command(remote, true);
            assert_eq!(cmd.contains(&"--no-hash-cache".to_owned()), off, "{args:?}");
            let back = p(&cmd[1..].iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(back.opts.chunk_cache.is_none(), off, "{args:?}");
        }
    }

    // `--rsync-path="sudo rsync"` starts rsync there: its protocol is spoken, not arsync's
    // (which rsync would refuse as "protocol version mismatch").
    #[test]
    fn an_rsync_path_naming_rsync_speaks_rsyncs_protocol() {
        let max = Some(arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX);
        for (path, protocol, want) in [
            ("sudo rsync", "auto", max),
            ("/usr/local/bin/rsync", "auto", max),
            ("rsync", "auto", max),
            ("sudo arsync", "auto", None),
            ("/opt/rsync-tools/arsync", "auto", None),
            ("rsync", "merkle", None),
            ("rsync", "31", Some(31)),
        ] {
            let c = p(&[
                "-a",
                &format!("--rsync-path={path}"),
                &format!("--protocol={protocol}"),
                "host:/x/",
                "/tmp/y",
            ]);
            assert_eq!(c.rsync_protocol, want, "{path} {protocol}");
            assert_eq!(c.rsync_path, path);
        }
    }
}
