//! OpenSSH client settings, resolved the way `ssh(1)` resolves them, for a native SSH backend.
//!
//! A user who moves from `rsync -e "ssh -p 2222 -i ~/.ssh/k"` with a `~/.ssh/config` to arsync's
//! built-in SSH client expects the same host, port, user, keys, proxy and host-key policy. This
//! module owns exactly that translation:
//!
//! * [`RshOptions`]: the `ssh` command line given with `-e`/`--rsh` — the flags `ssh(1)` takes,
//!   joined (`-p2222`, `-oKey=Value`), separate or grouped (`-qTx`); flags that have no meaning
//!   for us (`-C`, `-T`, `-c cipher`, …) are kept in [`RshOptions::ignored`].
//! * [`SshConfig`]: a subset of `ssh_config(5)` — `Host` and `Match` blocks, `Include` (with a `*`
//!   / `?` glob in the last path component), `Keyword value` / `Keyword=value`, quoting and
//!   comments — kept in file order.
//! * [`SshConfig::resolve`]: the [`HostSettings`] for one host with OpenSSH's precedence: the
//!   command line first, then the configuration blocks in order, the first obtained value of a
//!   single-valued keyword winning.
//!
//! What it does not do: no network and no environment — the home directory, local user and
//! local host name come in a [`LocalContext`]; the only I/O is reading configuration files in
//! [`SshConfig::load`] / [`SshConfig::load_system`]. `Match` criteria other than `all`, `host`,
//! `originalhost`, `user` and `localuser` (`exec`, `canonical`, `final`, `localnetwork`, …) are
//! not evaluated: such a block is treated as not matching and noted in
//! [`HostSettings::ignored`]. No hostname canonicalisation, no `${ENV}` expansion, no `%C` / `%i`
//! / `%k` tokens (left as written), no ownership or permission checks on the files. Keywords that
//! are understood syntactically but not acted on (`ForwardAgent`, `Ciphers`, …) are reported in
//! [`HostSettings::ignored`] rather than refused, so a configuration written for a newer `ssh`
//! still loads.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where OpenSSH keeps the system-wide client configuration, read after the user's own.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/ssh/ssh_config";

/// OpenSSH refuses `Include` nested deeper than this (it is almost always a loop).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The `ssh(1)` flags that take an argument (`getopt` string letters followed by `:`).
const FLAGS_WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// The label parse errors carry for text given to [`SshConfig::parse`].
const TEXT_LABEL: &str = "<ssh_config>";

/// Why an `ssh` command line or an `ssh_config` file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshConfigError {
    /// A configuration line `ssh` would refuse too.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file (or `<ssh_config>` for text given to [`SshConfig::parse`]).
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A configuration file (or a directory searched for an `Include`) exists but could not
    /// be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The remote-shell command line has no words.
    #[error("empty remote shell command")]
    EmptyCommand,
    /// An `ssh` flag that takes an argument ended the command line.
    #[error("ssh option -{flag} needs an argument")]
    MissingArgument {
        /// The flag letter.
        flag: char,
    },
    /// `-p` with something that is not a port number 1–65535.
    #[error("bad port '{value}'")]
    BadPort {
        /// The argument as given.
        value: String,
    },
    /// A `-o` option `ssh` would refuse.
    #[error("-o '{option}': {message}")]
    BadOption {
        /// The argument of `-o` as given.
        option: String,
        /// What is wrong with it.
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// The -e/--rsh command line
// ---------------------------------------------------------------------------------------------

/// Options found on an `ssh` command line given with `-e`/`--rsh`, e.g.
/// `ssh -p 2222 -l bob -i ~/.ssh/k -F /cfg -o StrictHostKeyChecking=no -o "UserKnownHostsFile /x"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RshOptions {
    /// The first word: the program (`ssh`, `/usr/bin/ssh`, …).
    pub program: String,
    /// `-p`: the first one given (as `ssh` does).
    pub port: Option<u16>,
    /// `-l`: the first one given (as `ssh` does).
    pub user: Option<String>,
    /// `-i`, in order, as written (expanded by [`SshConfig::resolve`]).
    pub identity_files: Vec<String>,
    /// `-F`: the configuration file to read instead of `~/.ssh/config` (`none`: no file).
    pub config_file: Option<PathBuf>,
    /// `-o` options in order as (keyword lowercased, value as written), plus `-J` as
    /// `("proxyjump", …)`. Validated by [`RshOptions::parse`].
    pub options: Vec<(String, String)>,
    /// Flags we do not act on, each as written with its argument if any: `-C`, `-T`, `-q`,
    /// `-c aes128-ctr`, …
    pub ignored: Vec<String>,
}

impl RshOptions {
    /// Parse `words` (the program, then its arguments), stopping at the first word that is not
    /// an option (a host name; it and everything after it are left alone) or after `--`.
    pub fn parse(words: &[String]) -> Result<RshOptions, SshConfigError> {
        let (program, args) = words.split_first().ok_or(SshConfigError::EmptyCommand)?;
        let mut out = RshOptions {
            program: program.clone(),
            ..RshOptions::default()
        };
        let mut i = 0;
        while i < args.len() {
            let word = &args[i];
            i += 1;
            if word == "--" {
                break;
            }
            let flags = match word.strip_prefix('-') {
                Some(flags) if !flags.is_empty() => flags,
                _ => break,
            };
            for (at, flag) in flags.char_indices() {
                if !FLAGS_WITH_ARGUMENT.contains(flag) {
                    out.ignored.push(format!("-{flag}"));
                    continue;
                }
                let joined = &flags[at + flag.len_utf8()..];
                let argument = if joined.is_empty() {
                    let next = args
                        .get(i)
                        .ok_or(SshConfigError::MissingArgument { flag })?;
                    i += 1;
                    next.clone()
                } else {
                    joined.to_owned()
                };
                out.take_flag(flag, argument)?;
                break;
            }
        }
        Ok(out)
    }

    /// Whether the program is OpenSSH's client by name (`ssh` or a path ending in `/ssh`), i.e.
    /// whether its flags mean what [`RshOptions::parse`] assumes.
    pub fn program_is_ssh(&self) -> bool {
        Path::new(&self.program)
            .file_name()
            .is_some_and(|name| name == "ssh")
    }

    fn take_flag(&mut self, flag: char, argument: String) -> Result<(), SshConfigError> {
        match flag {
            'p' => {
                let Some(port) = parse_port(&argument) else {
                    return Err(SshConfigError::BadPort { value: argument });
                };
                self.port.get_or_insert(port);
            }
            'l' => {
                self.user.get_or_insert(argument);
            }
            'i' => self.identity_files.push(argument),
            'F' => self.config_file = Some(PathBuf::from(argument)),
            'J' => self.options.push(("proxyjump".into(), argument)),
            'o' => {
                let (keyword, value) = split_keyword(&argument);
                let bad = |message: String| SshConfigError::BadOption {
                    option: argument.clone(),
                    message,
                };
                if keyword.is_empty() {
                    return Err(bad("missing keyword".into()));
                }
                let key = keyword.to_ascii_lowercase();
                if matches!(key.as_str(), "host" | "match" | "include") {
                    return Err(bad(format!(
                        "{keyword} is not supported as a command-line option"
                    )));
                }
                if value.is_empty() {
                    return Err(bad(format!("{keyword} needs a value")));
                }
                parse_setting(keyword, value).map_err(bad)?;
                self.options.push((key, value.to_owned()));
            }
            _ => self.ignored.push(format!("-{flag} {argument}")),
        }
        Ok(())
    }
}

/// The user configuration file `ssh` would read: `-F` (tilde-expanded) if given — `-F none`
/// meaning no file at all — else `~/.ssh/config`.
pub fn config_path(cli: &RshOptions, home: &Path) -> Option<PathBuf> {
    match &cli.config_file {
        Some(file) if file.as_os_str().eq_ignore_ascii_case("none") => None,
        Some(file) => Some(match file.to_str() {
            Some(text) => expand_tilde(text, home),
            None => file.clone(),
        }),
        None => Some(home.join(".ssh").join("config")),
    }
}

/// The system configuration file `ssh` would read after the user's: [`SYSTEM_CONFIG_PATH`],
/// unless `-F` was given (then `ssh` reads only that file).
pub fn system_config_path(cli: &RshOptions) -> Option<PathBuf> {
    match cli.config_file {
        Some(_) => None,
        None => Some(PathBuf::from(SYSTEM_CONFIG_PATH)),
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved settings
// ---------------------------------------------------------------------------------------------

/// `StrictHostKeyChecking`: what to do with a host key not in the known-hosts files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// `yes`/`true`: refuse unknown keys, never add to known hosts.
    Yes,
    /// `accept-new`: add unknown keys to known hosts, refuse changed ones.
    AcceptNew,
    /// `no`/`off`/`false`: accept unknown keys (and add them); changed keys still refused.
    No,
    /// `ask` (the default): ask the user about unknown keys.
    #[default]
    Ask,
}

/// Facts about the local side that token and tilde expansion need, passed in so resolution
/// stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContext {
    /// The local user's home directory (`~`, `%d`).
    pub home: PathBuf,
    /// The local user name (`%u`; `%r` when no remote user is configured).
    pub user: String,
    /// The local host name (`%l`; its first label is `%L`).
    pub hostname: String,
}

/// The settings for one host as `ssh` resolves them from its command line and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// The host as the user typed it (what `Host` patterns match).
    pub alias: String,
    /// `HostName` with `%h` replaced by the alias; the alias if none.
    pub hostname: String,
    /// `Port`; 22 if none.
    pub port: u16,
    /// `User`; `None` means the local user.
    pub user: Option<String>,
    /// `-i` then `IdentityFile`, in order, duplicates dropped, `~` and `%d %u %h %r %l %L %p %n
    /// %%` expanded. Empty if none was given: the caller then tries `~/.ssh/id_ed25519`,
    /// `id_ecdsa`, `id_rsa`.
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly`: offer only `identity_files`, not every key an agent holds.
    pub identities_only: bool,
    /// `ProxyJump` / `-J` (`none` → `None`), with `%h %p %r %n %%` expanded.
    pub proxy_jump: Option<String>,
    /// `ProxyCommand` (`none` → `None`), with `%h %p %r %n %%` expanded; a shell command line.
    pub proxy_command: Option<String>,
    /// `UserKnownHostsFile` (the first line obtained; it may list several files), expanded like
    /// identity files; default `~/.ssh/known_hosts`, `~/.ssh/known_hosts2`; `none` → empty.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`, likewise; default `/etc/ssh/ssh_known_hosts`,
    /// `/etc/ssh/ssh_known_hosts2`.
    pub global_known_hosts_files: Vec<PathBuf>,
    /// `StrictHostKeyChecking`; default [`StrictHostKeyChecking::Ask`].
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// `BatchMode`: never prompt.
    pub batch_mode: bool,
    /// `ConnectTimeout`; `None` (also for `0`) means the system's TCP timeout.
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval`; `None` (also for `0`) means no keep-alives.
    pub server_alive_interval: Option<Duration>,
    /// What applied to this host but is not acted on: keywords (as first written, e.g.
    /// `ForwardAgent`), `Match` blocks whose criteria are not evaluated, `Include`s of a
    /// configuration that was parsed rather than loaded. For a `--explain` / debug message.
    pub ignored: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The configuration file
// ---------------------------------------------------------------------------------------------

/// `ssh_config(5)` parsed: blocks (the lines before the first `Host`/`Match`, then one block per
/// `Host` or `Match` line with the directives under it) in file order, each `Include` holding
/// the files it expanded to (when loaded with [`SshConfig::load`]).
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
struct Block {
    condition: Condition,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
enum Condition {
    /// The start of a file: applies whenever the file itself applies.
    Always,
    /// `Host` patterns (lowercased; `!` negates).
    Host(Vec<String>),
    /// `Match` criteria, all of which must hold; `origin` is "file:line" for notes.
    Match {
        criteria: Vec<Criterion>,
        origin: String,
    },
}

#[derive(Debug, Clone)]
struct Criterion {
    negated: bool,
    test: MatchTest,
}

#[derive(Debug, Clone)]
enum MatchTest {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// A criterion we do not evaluate (`exec`, `canonical`, …), by name.
    Unsupported(String),
}

#[derive(Debug, Clone)]
enum Entry {
    Set(Setting),
    Include {
        /// The argument as written.
        spec: String,
        /// The files it expanded to, in glob order; `None` when the text was only parsed.
        files: Option<Vec<SshConfig>>,
    },
}

/// One validated directive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Setting {
    HostName(String),
    Port(u16),
    User(String),
    IdentityFile(String),
    IdentitiesOnly(bool),
    ProxyJump(String),
    ProxyCommand(String),
    UserKnownHostsFiles(Vec<String>),
    GlobalKnownHostsFiles(Vec<String>),
    StrictHostKeyChecking(StrictHostKeyChecking),
    BatchMode(bool),
    ConnectTimeout(Option<Duration>),
    ServerAliveInterval(Option<Duration>),
    /// A keyword we accept but do not act on, as written.
    Unhandled(String),
}

/// Where `Include` paths are resolved, for one file being loaded.
#[derive(Debug, Clone, Copy)]
struct IncludeContext<'a> {
    /// Relative `Include` paths are taken from here (`~/.ssh` or `/etc/ssh`).
    base_dir: &'a Path,
    /// `~` in `Include` paths; `None` for the system configuration, where `ssh` refuses `~`.
    home: Option<&'a Path>,
    /// How many `Include`s deep the file being parsed is.
    depth: usize,
}

impl SshConfig {
    /// Parse configuration text. `Include` lines are kept but not expanded (resolution notes
    /// them in [`HostSettings::ignored`]); errors are labelled `<ssh_config>:LINE`.
    pub fn parse(text: &str) -> Result<SshConfig, SshConfigError> {
        parse_text(text, TEXT_LABEL, None)
    }

    /// Read the user configuration file at `path` (see [`config_path`]), expanding `Include`:
    /// relative paths are under `home/.ssh`, `~` is `home`, and the last path component may
    /// hold `*` / `?` (matches sorted, dot files only by a pattern starting with `.`). A missing
    /// file — `path` or an included one — reads as empty, as with `ssh`.
    pub fn load(path: &Path, home: &Path) -> Result<SshConfig, SshConfigError> {
        let ssh_dir = home.join(".ssh");
        let context = IncludeContext {
            base_dir: &ssh_dir,
            home: Some(home),
            depth: 0,
        };
        Ok(load_file(path, context)?.unwrap_or_default())
    }

    /// Read a system configuration file (see [`system_config_path`]) like [`SshConfig::load`],
    /// except that relative `Include` paths are under the directory holding `path` (`/etc/ssh`)
    /// and `~` in them is refused, as `ssh` does.
    pub fn load_system(path: &Path) -> Result<SshConfig, SshConfigError> {
        let base_dir = path.parent().unwrap_or(Path::new("/"));
        let context = IncludeContext {
            base_dir,
            home: None,
            depth: 0,
        };
        Ok(load_file(path, context)?.unwrap_or_default())
    }

    /// Append a configuration read after this one (the system file after the user's): its
    /// values count only where this one set none.
    pub fn append(&mut self, later: SshConfig) {
        self.blocks.extend(later.blocks);
    }

    /// The settings for `host` (as typed, without `user@`) as `ssh` resolves them: the command
    /// line (`-p`, `-l`, `-i`, then `-o`/`-J` in order) first, then this configuration's blocks
    /// in order; for single-valued keywords the first obtained value wins, `IdentityFile`
    /// accumulates, and `UserKnownHostsFile` takes the first line obtained (which may list
    /// several files).
    pub fn resolve(&self, host: &str, cli: &RshOptions, local: &LocalContext) -> HostSettings {
        let mut acc = Accumulator::new(host, local);
        if let Some(port) = cli.port {
            acc.apply(&Setting::Port(port));
        }
        if let Some(user) = &cli.user {
            acc.apply(&Setting::User(user.clone()));
        }
        for file in &cli.identity_files {
            acc.apply(&Setting::IdentityFile(file.clone()));
        }
        for (key, value) in &cli.options {
            match parse_setting(key, value) {
                Ok(setting) => acc.apply(&setting),
                Err(message) => acc.note(format!("-o {key}={value} ({message})")),
            }
        }
        self.apply(&mut acc, true);
        acc.finish()
    }

    /// Apply this file's blocks to `acc`; `active_at_start` is whether the file applies at all
    /// (an `Include` under a block that does not match never applies, whatever its own `Host`
    /// lines say).
    fn apply(&self, acc: &mut Accumulator<'_>, active_at_start: bool) {
        for block in &self.blocks {
            let active = active_at_start
                && match &block.condition {
                    Condition::Always => true,
                    Condition::Host(patterns) => {
                        pattern_list_match(patterns.iter().map(String::as_str), &acc.alias, true)
                    }
                    Condition::Match { criteria, origin } => acc.match_holds(criteria, origin),
                };
            for entry in &block.entries {
                match entry {
                    Entry::Set(setting) if active => acc.apply(setting),
                    Entry::Set(_) => {}
                    Entry::Include {
                        files: Some(files), ..
                    } => {
                        for file in files {
                            file.apply(acc, active);
                        }
                    }
                    Entry::Include { spec, files: None } if active => {
                        acc.note(format!("Include {spec} (not expanded)"));
                    }
                    Entry::Include { .. } => {}
                }
            }
        }
    }
}

/// Read and parse one file; `Ok(None)` if it does not exist.
fn load_file(
    path: &Path,
    context: IncludeContext<'_>,
) -> Result<Option<SshConfig>, SshConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SshConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let label = path.display().to_string();
    parse_text(&text, &label, Some(context)).map(Some)
}

/// Parse `text` (from `label`); with a context, expand `Include`s by reading files.
fn parse_text(
    text: &str,
    label: &str,
    includes: Option<IncludeContext<'_>>,
) -> Result<SshConfig, SshConfigError> {
    let mut blocks = vec![Block {
        condition: Condition::Always,
        entries: Vec::new(),
    }];
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let error = |message: String| SshConfigError::Parse {
            path: label.to_owned(),
            line,
            message,
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (keyword, rest) = split_keyword(trimmed);
        if keyword.is_empty() {
            return Err(error("missing keyword".into()));
        }
        let args = split_args(rest).map_err(error)?;
        if args.iter().any(String::is_empty) {
            return Err(error(format!("{keyword}: empty argument")));
        }
        match keyword.to_ascii_lowercase().as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(error("Host needs at least one pattern".into()));
                }
                blocks.push(Block {
                    condition: Condition::Host(args.iter().map(|a| a.to_lowercase()).collect()),
                    entries: Vec::new(),
                });
            }
            "match" => {
                let criteria = parse_match(&args).map_err(error)?;
                blocks.push(Block {
                    condition: Condition::Match {
                        criteria,
                        origin: format!("{label}:{line}"),
                    },
                    entries: Vec::new(),
                });
            }
            "include" => {
                if args.is_empty() {
                    return Err(error("Include needs a file".into()));
                }
                for spec in args {
                    let files = match includes {
                        Some(context) => Some(expand_include(&spec, context, label, line)?),
                        None => None,
                    };
                    push_entry(&mut blocks, Entry::Include { spec, files });
                }
            }
            _ => {
                let setting = setting_from_args(keyword, rest, args).map_err(error)?;
                push_entry(&mut blocks, Entry::Set(setting));
            }
        }
    }
    Ok(SshConfig { blocks })
}

fn push_entry(blocks: &mut [Block], entry: Entry) {
    if let Some(block) = blocks.last_mut() {
        block.entries.push(entry);
    }
}

/// The configurations one `Include` argument names, read in glob order (missing ones skipped).
fn expand_include(
    spec: &str,
    context: IncludeContext<'_>,
    label: &str,
    line: usize,
) -> Result<Vec<SshConfig>, SshConfigError> {
    let error = |message: String| SshConfigError::Parse {
        path: label.to_owned(),
        line,
        message,
    };
    if context.depth >= MAX_INCLUDE_DEPTH {
        return Err(error(format!(
            "Include {spec}: nested more than {MAX_INCLUDE_DEPTH} deep"
        )));
    }
    let path = if spec.starts_with('/') {
        PathBuf::from(spec)
    } else if spec.starts_with('~') {
        match context.home {
            Some(home) => expand_tilde(spec, home),
            None => return Err(error(format!("bad include path {spec}"))),
        }
    } else {
        context.base_dir.join(spec)
    };
    let inner = IncludeContext {
        depth: context.depth + 1,
        ..context
    };
    let mut configs = Vec::new();
    for file in glob_last_component(&path)? {
        if let Some(config) = load_file(&file, inner)? {
            configs.push(config);
        }
    }
    Ok(configs)
}

/// `path` itself if its last component has no wildcard, else the non-directory entries of its
/// directory whose names match it, sorted. (Wildcards elsewhere in the path are literal.)
fn glob_last_component(path: &Path) -> Result<Vec<PathBuf>, SshConfigError> {
    let Some(pattern) = path.file_name().and_then(|name| name.to_str()) else {
        return Ok(vec![path.to_owned()]);
    };
    if !pattern.contains(['*', '?']) {
        return Ok(vec![path.to_owned()]);
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let read_error = |source| SshConfigError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') && !pattern.starts_with('.') {
            continue;
        }
        if !wildcard_match(pattern, name) {
            continue;
        }
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        found.push(entry.path());
    }
    found.sort();
    Ok(found)
}

/// `Match` arguments → criteria. Unknown attribute names are errors, as in `ssh`.
fn parse_match(args: &[String]) -> Result<Vec<Criterion>, String> {
    if args.is_empty() {
        return Err("Match needs criteria".into());
    }
    let mut criteria = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (negated, name) = match word.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, word.as_str()),
        };
        let lower = name.to_ascii_lowercase();
        let test = match lower.as_str() {
            "all" => MatchTest::All,
            "canonical" | "final" => MatchTest::Unsupported(lower),
            "host" | "originalhost" | "user" | "localuser" | "exec" | "localnetwork" | "tagged"
            | "command" | "version" | "sessiontype" => {
                let argument = words
                    .next()
                    .ok_or_else(|| format!("Match {name} needs an argument"))?
                    .clone();
                match lower.as_str() {
                    "host" => MatchTest::Host(argument),
                    "originalhost" => MatchTest::OriginalHost(argument),
                    "user" => MatchTest::User(argument),
                    "localuser" => MatchTest::LocalUser(argument),
                    _ => MatchTest::Unsupported(lower),
                }
            }
            _ => return Err(format!("unsupported Match attribute {name}")),
        };
        criteria.push(Criterion { negated, test });
    }
    Ok(criteria)
}

// ---------------------------------------------------------------------------------------------
// Lines, words and values
// ---------------------------------------------------------------------------------------------

/// Split `Keyword value`, `Keyword=value` or `Keyword = value` into the keyword and the rest
/// (trimmed).
fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim();
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (keyword, rest)
}

/// Split arguments as `ssh` does: whitespace separates; single and double quotes group; a
/// backslash escapes a quote, a backslash or (outside quotes) a space, and is otherwise kept;
/// an unquoted `#` starting a word begins a comment.
fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.peek() {
                    Some(&next @ ('\\' | '"' | '\'')) => {
                        word.push(next);
                        chars.next();
                    }
                    Some(&next) if quote.is_none() && next.is_whitespace() => {
                        word.push(next);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if quote == Some(c) => quote = None,
                c => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        words.push(word);
    }
    Ok(words)
}

/// Validate one directive given its keyword and the raw rest of the line.
fn parse_setting(keyword: &str, rest: &str) -> Result<Setting, String> {
    let args = split_args(rest)?;
    if args.iter().any(String::is_empty) {
        return Err(format!("{keyword}: empty argument"));
    }
    setting_from_args(keyword, rest, args)
}

/// Validate one directive given its keyword, the raw rest of the line (for `ProxyCommand`,
/// which takes it verbatim) and the rest split into arguments.
fn setting_from_args(keyword: &str, rest: &str, args: Vec<String>) -> Result<Setting, String> {
    let key = keyword.to_ascii_lowercase();
    let single = |args: Vec<String>| -> Result<String, String> {
        let mut args = args.into_iter();
        let first = args
            .next()
            .ok_or_else(|| format!("{keyword}: missing argument"))?;
        if args.next().is_some() {
            return Err(format!("{keyword}: extra arguments at end of line"));
        }
        Ok(first)
    };
    let flag = |args: Vec<String>| -> Result<bool, String> {
        let value = single(args)?;
        parse_flag(&value).ok_or_else(|| format!("{keyword}: expected yes or no, got '{value}'"))
    };
    let time = |args: Vec<String>| -> Result<Option<Duration>, String> {
        let value = single(args)?;
        let seconds =
            parse_time(&value).ok_or_else(|| format!("{keyword}: bad time value '{value}'"))?;
        Ok((seconds > 0).then(|| Duration::from_secs(seconds)))
    };
    let files = |args: Vec<String>| -> Result<Vec<String>, String> {
        if args.is_empty() {
            return Err(format!("{keyword}: missing argument"));
        }
        if args.len() > 1 && args.iter().any(|a| a.eq_ignore_ascii_case("none")) {
            return Err(format!("{keyword}: \"none\" must appear alone"));
        }
        Ok(args)
    };
    Ok(match key.as_str() {
        "hostname" => Setting::HostName(single(args)?),
        "port" => {
            let value = single(args)?;
            Setting::Port(parse_port(&value).ok_or_else(|| format!("bad port '{value}'"))?)
        }
        "user" => Setting::User(single(args)?),
        "identityfile" => Setting::IdentityFile(single(args)?),
        "identitiesonly" => Setting::IdentitiesOnly(flag(args)?),
        "proxyjump" => Setting::ProxyJump(single(args)?),
        "proxycommand" => {
            if args.is_empty() {
                return Err(format!("{keyword}: missing argument"));
            }
            Setting::ProxyCommand(rest.trim().to_owned())
        }
        "userknownhostsfile" => Setting::UserKnownHostsFiles(files(args)?),
        "globalknownhostsfile" => Setting::GlobalKnownHostsFiles(files(args)?),
        "stricthostkeychecking" => {
            let value = single(args)?;
            Setting::StrictHostKeyChecking(parse_strict(&value).ok_or_else(|| {
                format!("{keyword}: expected yes, accept-new, no or ask, got '{value}'")
            })?)
        }
        "batchmode" => Setting::BatchMode(flag(args)?),
        "connecttimeout" => Setting::ConnectTimeout(time(args)?),
        "serveraliveinterval" => Setting::ServerAliveInterval(time(args)?),
        _ => Setting::Unhandled(keyword.to_owned()),
    })
}

/// A port as `ssh` takes it: decimal 1–65535.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&port| port != 0)
}

fn parse_flag(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

fn parse_strict(s: &str) -> Option<StrictHostKeyChecking> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(StrictHostKeyChecking::Yes),
        "accept-new" => Some(StrictHostKeyChecking::AcceptNew),
        "no" | "false" | "off" => Some(StrictHostKeyChecking::No),
        "ask" => Some(StrictHostKeyChecking::Ask),
        _ => None,
    }
}

/// `ssh`'s time format, in seconds: numbers each optionally followed by a unit (`s`, `m`, `h`,
/// `d`, `w`, either case), summed: `90`, `1m30s`, `1h`.
fn parse_time(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in s.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(digit))?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 60 * 60,
            'd' => 24 * 60 * 60,
            'w' => 7 * 24 * 60 * 60,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    if let Some(n) = number {
        total = total.checked_add(n)?;
    }
    (total <= i32::MAX as u64).then_some(total)
}

// ---------------------------------------------------------------------------------------------
// Patterns and expansion
// ---------------------------------------------------------------------------------------------

/// `*` (any run) and `?` (any one character) glob match of the whole of `text`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A pattern list as `ssh` matches it: some non-negated pattern matches and no negated one
/// (`!pattern`) does.
fn pattern_list_match<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
    text: &str,
    fold_case: bool,
) -> bool {
    let text = if fold_case {
        text.to_lowercase()
    } else {
        text.to_owned()
    };
    let mut matched = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let hit = if fold_case {
            wildcard_match(&pattern.to_lowercase(), &text)
        } else {
            wildcard_match(pattern, &text)
        };
        if hit {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Replace `%x` tokens from `tokens`, `%%` with `%`; unknown tokens stay as written.
fn expand_tokens(s: &str, tokens: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match tokens.iter().find(|(name, _)| *name == t) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// `~` and `~/…` → under `home`; `~user/…` and everything else unchanged.
fn expand_tilde(s: &str, home: &Path) -> PathBuf {
    if s == "~" {
        home.to_owned()
    } else if let Some(rest) = s.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

/// A proxy setting as obtained; `ProxyJump` and `ProxyCommand` compete, the first one winning.
#[derive(Debug)]
enum Proxy {
    Jump(String),
    Command(String),
}

/// Values obtained so far while walking the command line and the configuration.
#[derive(Debug)]
struct Accumulator<'a> {
    local: &'a LocalContext,
    alias: String,
    hostname: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity_files: Vec<String>,
    identities_only: Option<bool>,
    proxy: Option<Proxy>,
    user_known_hosts_files: Option<Vec<String>>,
    global_known_hosts_files: Option<Vec<String>>,
    strict_host_key_checking: Option<StrictHostKeyChecking>,
    batch_mode: Option<bool>,
    connect_timeout: Option<Option<Duration>>,
    server_alive_interval: Option<Option<Duration>>,
    ignored: Vec<String>,
}

impl<'a> Accumulator<'a> {
    fn new(alias: &str, local: &'a LocalContext) -> Self {
        Accumulator {
            local,
            alias: alias.to_owned(),
            hostname: None,
            port: None,
            user: None,
            identity_files: Vec::new(),
            identities_only: None,
            proxy: None,
            user_known_hosts_files: None,
            global_known_hosts_files: None,
            strict_host_key_checking: None,
            batch_mode: None,
            connect_timeout: None,
            server_alive_interval: None,
            ignored: Vec::new(),
        }
    }

    fn apply(&mut self, setting: &Setting) {
        fn first<T: Clone>(slot: &mut Option<T>, value: &T) {
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        match setting {
            Setting::HostName(v) => first(&mut self.hostname, v),
            Setting::Port(v) => first(&mut self.port, v),
            Setting::User(v) => first(&mut self.user, v),
            Setting::IdentityFile(v) => {
                if !self.identity_files.contains(v) {
                    self.identity_files.push(v.clone());
                }
            }
            Setting::IdentitiesOnly(v) => first(&mut self.identities_only, v),
            Setting::ProxyJump(v) => {
                if self.proxy.is_none() {
                    self.proxy = Some(Proxy::Jump(v.clone()));
                }
            }
            Setting::ProxyCommand(v) => {
                if self.proxy.is_none() {
                    self.proxy = Some(Proxy::Command(v.clone()));
                }
            }
            Setting::UserKnownHostsFiles(v) => first(&mut self.user_known_hosts_files, v),
            Setting::GlobalKnownHostsFiles(v) => first(&mut self.global_known_hosts_files, v),
            Setting::StrictHostKeyChecking(v) => first(&mut self.strict_host_key_checking, v),
            Setting::BatchMode(v) => first(&mut self.batch_mode, v),
            Setting::ConnectTimeout(v) => first(&mut self.connect_timeout, v),
            Setting::ServerAliveInterval(v) => first(&mut self.server_alive_interval, v),
            Setting::Unhandled(keyword) => self.note(keyword.clone()),
        }
    }

    /// Record something not acted on, once (case-insensitively).
    fn note(&mut self, what: String) {
        if !self.ignored.iter().any(|w| w.eq_ignore_ascii_case(&what)) {
            self.ignored.push(what);
        }
    }

    /// The host name as known so far: `HostName` (with `%h`) if obtained, else the alias.
    fn current_hostname(&self) -> String {
        match &self.hostname {
            Some(hostname) => expand_tokens(hostname, &[('h', &self.alias)]),
            None => self.alias.clone(),
        }
    }

    /// Whether a `Match` line holds now. Criteria we do not evaluate make it not hold, noted
    /// unless a criterion we do evaluate already rules the block out.
    fn match_holds(&mut self, criteria: &[Criterion], origin: &str) -> bool {
        let mut unsupported = Vec::new();
        for criterion in criteria {
            let hit = match &criterion.test {
                MatchTest::All => true,
                MatchTest::Host(patterns) => {
                    pattern_list_match(patterns.split(','), &self.current_hostname(), true)
                }
                MatchTest::OriginalHost(patterns) => {
                    pattern_list_match(patterns.split(','), &self.alias, true)
                }
                MatchTest::User(patterns) => {
                    let user = self.user.as_deref().unwrap_or(&self.local.user);
                    pattern_list_match(patterns.split(','), user, false)
                }
                MatchTest::LocalUser(patterns) => {
                    pattern_list_match(patterns.split(','), &self.local.user, false)
                }
                MatchTest::Unsupported(name) => {
                    unsupported.push(name.as_str());
                    continue;
                }
            };
            if hit == criterion.negated {
                return false;
            }
        }
        if unsupported.is_empty() {
            return true;
        }
        let note = format!(
            "Match {} ({origin}): not evaluated, block skipped",
            unsupported.join(" ")
        );
        self.note(note);
        false
    }

    fn finish(self) -> HostSettings {
        let local = self.local;
        let hostname = self.current_hostname();
        let port = self.port.unwrap_or(22);
        let port_text = port.to_string();
        let remote_user = self.user.as_deref().unwrap_or(&local.user);
        let home_text = local.home.to_string_lossy();
        let short_local = local.hostname.split('.').next().unwrap_or(&local.hostname);
        let file_tokens = [
            ('d', &*home_text),
            ('u', local.user.as_str()),
            ('h', hostname.as_str()),
            ('r', remote_user),
            ('l', local.hostname.as_str()),
            ('L', short_local),
            ('p', port_text.as_str()),
            ('n', self.alias.as_str()),
        ];
        let expand_file = |s: &str| -> PathBuf {
            if s == "~" {
                local.home.clone()
            } else if let Some(rest) = s.strip_prefix("~/") {
                local.home.join(expand_tokens(rest, &file_tokens))
            } else {
                PathBuf::from(expand_tokens(s, &file_tokens))
            }
        };
        let file_list = |files: Option<Vec<String>>, defaults: &[&str]| -> Vec<PathBuf> {
            match files {
                Some(files) if files.len() == 1 && files[0].eq_ignore_ascii_case("none") => {
                    Vec::new()
                }
                Some(files) => files.iter().map(|f| expand_file(f)).collect(),
                None => defaults.iter().map(|f| expand_file(f)).collect(),
            }
        };
        let proxy_tokens = [
            ('h', hostname.as_str()),
            ('p', port_text.as_str()),
            ('r', remote_user),
            ('n', self.alias.as_str()),
        ];
        let proxy_value = |v: &str| -> Option<String> {
            (!v.eq_ignore_ascii_case("none")).then(|| expand_tokens(v, &proxy_tokens))
        };
        let (proxy_jump, proxy_command) = match &self.proxy {
            Some(Proxy::Jump(jump)) => (proxy_value(jump), None),
            Some(Proxy::Command(command)) => (None, proxy_value(command)),
            None => (None, None),
        };
        let identity_files = self.identity_files.iter().map(|f| expand_file(f)).collect();
        HostSettings {
            identity_files,
            identities_only: self.identities_only.unwrap_or(false),
            proxy_jump,
            proxy_command,
            user_known_hosts_files: file_list(
                self.user_known_hosts_files,
                &["~/.ssh/known_hosts", "~/.ssh/known_hosts2"],
            ),
            global_known_hosts_files: file_list(
                self.global_known_hosts_files,
                &["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"],
            ),
            strict_host_key_checking: self.strict_host_key_checking.unwrap_or_default(),
            batch_mode: self.batch_mode.unwrap_or(false),
            connect_timeout: self.connect_timeout.flatten(),
            server_alive_interval: self.server_alive_interval.flatten(),
            port,
            user: self.user,
            hostname,
            alias: self.alias,
            ignored: self.ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    fn rsh(s: &[&str]) -> RshOptions {
        RshOptions::parse(&words(s)).unwrap()
    }

    fn local() -> LocalContext {
        LocalContext {
            home: PathBuf::from("/home/me"),
            user: "me".into(),
            hostname: "laptop.lan".into(),
        }
    }

    fn resolve(config: &str, host: &str) -> HostSettings {
        resolve_with(config, host, &rsh(&["ssh"]))
    }

    fn resolve_with(config: &str, host: &str, cli: &RshOptions) -> HostSettings {
        SshConfig::parse(config)
            .unwrap()
            .resolve(host, cli, &local())
    }

    fn paths(p: &[&str]) -> Vec<PathBuf> {
        p.iter().map(PathBuf::from).collect()
    }

    // --- the -e command line ---

    #[test]
    fn rsh_separate_arguments() {
        let o = rsh(&[
            "ssh",
            "-p",
            "2222",
            "-l",
            "bob",
            "-i",
            "~/.ssh/k",
            "-F",
            "/cfg",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile /x /y",
        ]);
        assert_eq!(o.program, "ssh");
        assert_eq!(o.port, Some(2222));
        assert_eq!(o.user.as_deref(), Some("bob"));
        assert_eq!(o.identity_files, words(&["~/.ssh/k"]));
        assert_eq!(o.config_file, Some(PathBuf::from("/cfg")));
        assert_eq!(
            o.options,
            vec![
                ("stricthostkeychecking".to_string(), "no".to_string()),
                ("userknownhostsfile".to_string(), "/x /y".to_string()),
            ]
        );
        assert!(o.ignored.is_empty());
        assert!(o.program_is_ssh());
    }

    #[test]
    fn rsh_joined_arguments() {
        let o = rsh(&[
            "/usr/bin/ssh",
            "-p2222",
            "-lbob",
            "-i~/k",
            "-oBatchMode=yes",
            "-o",
            "ConnectTimeout = 5",
            "-F/c",
        ]);
        assert_eq!(o.port, Some(2222));
        assert_eq!(o.user.as_deref(), Some("bob"));
        assert_eq!(o.identity_files, words(&["~/k"]));
        assert_eq!(o.config_file, Some(PathBuf::from("/c")));
        assert_eq!(
            o.options,
            vec![
                ("batchmode".to_string(), "yes".to_string()),
                ("connecttimeout".to_string(), "5".to_string()),
            ]
        );
        assert!(o.program_is_ssh());
        assert!(!rsh(&["rsh"]).program_is_ssh());
    }

    #[test]
    fn rsh_grouped_flags_and_ignored() {
        let o = rsh(&["ssh", "-qTx", "-C", "-c", "aes128-ctr", "-4", "-qp2222"]);
        assert_eq!(
            o.ignored,
            words(&["-q", "-T", "-x", "-C", "-c aes128-ctr", "-4", "-q"])
        );
        assert_eq!(o.port, Some(2222));
        let o = rsh(&["ssh", "-Cp", "22", "-vl", "u"]);
        assert_eq!(o.port, Some(22));
        assert_eq!(o.user.as_deref(), Some("u"));
        assert_eq!(o.ignored, words(&["-C", "-v"]));
    }

    #[test]
    fn rsh_first_port_and_user_win() {
        let o = rsh(&[
            "ssh", "-p", "1", "-p", "2", "-l", "a", "-l", "b", "-i", "x", "-i", "y",
        ]);
        assert_eq!(o.port, Some(1));
        assert_eq!(o.user.as_deref(), Some("a"));
        assert_eq!(o.identity_files, words(&["x", "y"]));
    }

    #[test]
    fn rsh_jump_host() {
        let o = rsh(&["ssh", "-J", "jump@bastion:2200"]);
        assert_eq!(
            o.options,
            vec![("proxyjump".to_string(), "jump@bastion:2200".to_string())]
        );
        let o = rsh(&["ssh", "-Jbastion"]);
        assert_eq!(
            o.options,
            vec![("proxyjump".to_string(), "bastion".to_string())]
        );
    }

    #[test]
    fn rsh_stops_at_host_and_double_dash() {
        let o = rsh(&["ssh", "-C", "host.example", "-p", "99"]);
        assert_eq!(o.port, None);
        assert_eq!(o.ignored, words(&["-C"]));
        let o = rsh(&["ssh", "--", "-p", "99"]);
        assert_eq!(o.port, None);
        let o = rsh(&["ssh", "-", "-p", "99"]);
        assert_eq!(o.port, None);
    }

    #[test]
    fn rsh_errors() {
        let parse = |s: &[&str]| RshOptions::parse(&words(s));
        for bad in ["x", "0", "70000", "-1", "22a", ""] {
            assert!(
                matches!(
                    parse(&["ssh", "-p", bad]),
                    Err(SshConfigError::BadPort { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(&["ssh", "-p0x16"]),
            Err(SshConfigError::BadPort { .. })
        ));
        assert!(matches!(
            parse(&["ssh", "-p"]),
            Err(SshConfigError::MissingArgument { flag: 'p' })
        ));
        assert!(matches!(
            parse(&["ssh", "-qo"]),
            Err(SshConfigError::MissingArgument { flag: 'o' })
        ));
        assert!(matches!(parse(&[]), Err(SshConfigError::EmptyCommand)));
        for bad in [
            "Port=abc",
            "Host=x",
            "Match all",
            "Include x",
            "BatchMode",
            "BatchMode=maybe",
            "StrictHostKeyChecking sometimes",
            "=yes",
            "User \"unterminated",
        ] {
            assert!(
                matches!(
                    parse(&["ssh", "-o", bad]),
                    Err(SshConfigError::BadOption { .. })
                ),
                "{bad}"
            );
        }
        let e = parse(&["ssh", "-o", "Port=abc"]).unwrap_err();
        assert_eq!(e.to_string(), "-o 'Port=abc': bad port 'abc'");
        // Keywords we do not act on are fine on the command line.
        assert_eq!(
            rsh(&["ssh", "-o", "ForwardAgent=yes"]).options,
            vec![("forwardagent".to_string(), "yes".to_string())]
        );
    }

    #[test]
    fn config_paths() {
        let home = Path::new("/home/me");
        assert_eq!(
            config_path(&rsh(&["ssh"]), home),
            Some(PathBuf::from("/home/me/.ssh/config"))
        );
        assert_eq!(
            config_path(&rsh(&["ssh", "-F", "/etc/alt"]), home),
            Some(PathBuf::from("/etc/alt"))
        );
        assert_eq!(
            config_path(&rsh(&["ssh", "-F", "~/alt"]), home),
            Some(PathBuf::from("/home/me/alt"))
        );
        assert_eq!(config_path(&rsh(&["ssh", "-F", "none"]), home), None);
        assert_eq!(config_path(&rsh(&["ssh", "-Fnone"]), home), None);
        assert_eq!(
            system_config_path(&rsh(&["ssh"])),
            Some(PathBuf::from(SYSTEM_CONFIG_PATH))
        );
        assert_eq!(system_config_path(&rsh(&["ssh", "-F", "/x"])), None);
    }

    // --- the configuration file ---

    #[test]
    fn defaults_without_config() {
        let s = resolve("", "example.com");
        assert_eq!(
            s,
            HostSettings {
                alias: "example.com".into(),
                hostname: "example.com".into(),
                port: 22,
                user: None,
                identity_files: vec![],
                identities_only: false,
                proxy_jump: None,
                proxy_command: None,
                user_known_hosts_files: paths(&[
                    "/home/me/.ssh/known_hosts",
                    "/home/me/.ssh/known_hosts2"
                ]),
                global_known_hosts_files: paths(&[
                    "/etc/ssh/ssh_known_hosts",
                    "/etc/ssh/ssh_known_hosts2"
                ]),
                strict_host_key_checking: StrictHostKeyChecking::Ask,
                batch_mode: false,
                connect_timeout: None,
                server_alive_interval: None,
                ignored: vec![],
            }
        );
    }

    #[test]
    fn keyword_syntax_variants() {
        for line in [
            "Port 2000",
            "Port=2000",
            "Port = 2000",
            "  PORT\t2000  ",
            "port 2000 # a comment",
            "Port \"2000\"",
            "Port\t=\t2000",
        ] {
            assert_eq!(resolve(line, "h").port, 2000, "{line}");
        }
        let s = resolve(
            "# comment\n\n   # indented comment\nUser bob\r\nIdentityFile \"~/my keys/id\"\n",
            "h",
        );
        assert_eq!(s.user.as_deref(), Some("bob"));
        assert_eq!(s.identity_files, paths(&["/home/me/my keys/id"]));
        let e = SshConfig::parse("User a\nIdentityFile ~/my\\ key 'x'").unwrap_err();
        assert_eq!(
            e.to_string(),
            "<ssh_config>:2: IdentityFile: extra arguments at end of line"
        );
    }

    #[test]
    fn parse_errors_carry_line_numbers() {
        let cases = [
            ("Host a\n  Port abc\n", 2, "bad port 'abc'"),
            ("\n\nUser \"bob\n", 3, "unterminated quote"),
            ("Host\n", 1, "Host needs at least one pattern"),
            ("Match\n", 1, "Match needs criteria"),
            ("Match host\n", 1, "Match host needs an argument"),
            ("Match color blue\n", 1, "unsupported Match attribute color"),
            (
                "BatchMode maybe\n",
                1,
                "BatchMode: expected yes or no, got 'maybe'",
            ),
            ("User\n", 1, "User: missing argument"),
            (
                "ConnectTimeout 5x\n",
                1,
                "ConnectTimeout: bad time value '5x'",
            ),
            (
                "UserKnownHostsFile none /x\n",
                1,
                "UserKnownHostsFile: \"none\" must appear alone",
            ),
            ("=x\n", 1, "missing keyword"),
            ("ProxyCommand\n", 1, "ProxyCommand: missing argument"),
        ];
        for (text, line, message) in cases {
            match SshConfig::parse(text) {
                Err(SshConfigError::Parse {
                    path,
                    line: l,
                    message: m,
                }) => {
                    assert_eq!(path, "<ssh_config>");
                    assert_eq!((l, m.as_str()), (line, message), "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn host_patterns() {
        let config = "
Host *.example.com !bad.example.com
  User wild
Host a?c
  User question
Host FOO other
  User upper
Host !never
  User negated-only
Host *
  Port 2022
";
        assert_eq!(
            resolve(config, "www.example.com").user.as_deref(),
            Some("wild")
        );
        assert_eq!(
            resolve(config, "WWW.Example.COM").user.as_deref(),
            Some("wild")
        );
        assert_eq!(resolve(config, "bad.example.com").user, None);
        assert_eq!(resolve(config, "example.com").user, None);
        assert_eq!(resolve(config, "abc").user.as_deref(), Some("question"));
        assert_eq!(resolve(config, "abbc").user, None);
        assert_eq!(resolve(config, "foo").user.as_deref(), Some("upper"));
        assert_eq!(resolve(config, "other").user.as_deref(), Some("upper"));
        assert_eq!(resolve(config, "anything").user, None);
        assert_eq!(resolve(config, "bad.example.com").port, 2022);
        // Negation wins regardless of order.
        let config = "Host !bad.* *\n  User x\n";
        assert_eq!(resolve(config, "bad.host").user, None);
        assert_eq!(resolve(config, "good.host").user.as_deref(), Some("x"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "abc"));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("??", "ab"));
        assert!(!wildcard_match("??", "abc"));
        assert!(wildcard_match("*.conf", "x.conf"));
        assert!(!wildcard_match("*.conf", "x.conf.bak"));
        assert!(wildcard_match("10.0.*.?", "10.0.12.3"));
    }

    #[test]
    fn first_obtained_value_wins() {
        let config = "
User global
Host web
  User web-user
  Port 2200
  HostName web.internal
  StrictHostKeyChecking yes
Host *
  User star
  Port 22
  HostName nope
  StrictHostKeyChecking no
  BatchMode yes
";
        let s = resolve(config, "web");
        assert_eq!(s.user.as_deref(), Some("global"));
        assert_eq!(s.port, 2200);
        assert_eq!(s.hostname, "web.internal");
        assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::Yes);
        assert!(s.batch_mode);
        let s = resolve(config, "db");
        assert_eq!(s.port, 22);
        assert_eq!(s.hostname, "nope");
        assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::No);
    }

    #[test]
    fn command_line_comes_first() {
        let config = "
Host h
  Port 2200
  User config-user
  IdentityFile ~/.ssh/config_key
  StrictHostKeyChecking yes
  ProxyCommand nc %h %p
";
        let cli = rsh(&[
            "ssh",
            "-p",
            "3300",
            "-l",
            "cli-user",
            "-i",
            "~/.ssh/cli_key",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-J",
            "bastion",
            "-o",
            "HostName=real.example",
        ]);
        let s = resolve_with(config, "h", &cli);
        assert_eq!(s.port, 3300);
        assert_eq!(s.user.as_deref(), Some("cli-user"));
        assert_eq!(
            s.identity_files,
            paths(&["/home/me/.ssh/cli_key", "/home/me/.ssh/config_key"])
        );
        assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert_eq!(s.proxy_jump.as_deref(), Some("bastion"));
        assert_eq!(s.proxy_command, None);
        assert_eq!(s.hostname, "real.example");
        // -o Port / -o User count as command line too.
        let cli = rsh(&["ssh", "-o", "Port 4400", "-oUser=o-user"]);
        let s = resolve_with(config, "h", &cli);
        assert_eq!((s.port, s.user.as_deref()), (4400, Some("o-user")));
    }

    #[test]
    fn identity_files_accumulate_and_expand() {
        let config = "
Host h
  IdentityFile ~/.ssh/id_%h_%r
  IdentityFile %d/keys/%u@%l-%L
  IdentityFile /k/%p-%n-100%%-%C
  IdentityFile ~
  IdentityFile ~other/key
Host *
  IdentityFile ~/.ssh/id_%h_%r
  IdentityFile ~/.ssh/shared
  HostName h.example.org
  User remote
  Port 2022
  IdentitiesOnly yes
";
        let s = resolve(config, "h");
        assert_eq!(
            s.identity_files,
            paths(&[
                "/home/me/.ssh/id_h.example.org_remote",
                "/home/me/keys/me@laptop.lan-laptop",
                "/k/2022-h-100%-%C",
                "/home/me",
                "~other/key",
                "/home/me/.ssh/shared",
            ])
        );
        assert!(s.identities_only);
        // Without a remote user, %r is the local user.
        let s = resolve("IdentityFile ~/.ssh/%r", "x");
        assert_eq!(s.identity_files, paths(&["/home/me/.ssh/me"]));
        // -i duplicates of config entries are dropped.
        let s = resolve_with(
            "IdentityFile ~/k\nIdentityFile ~/j",
            "x",
            &rsh(&["ssh", "-i", "~/j"]),
        );
        assert_eq!(s.identity_files, paths(&["/home/me/j", "/home/me/k"]));
    }

    #[test]
    fn hostname_token() {
        let s = resolve("Host *\n  HostName %h.internal.example\n", "db1");
        assert_eq!(s.hostname, "db1.internal.example");
        assert_eq!(s.alias, "db1");
        let s = resolve("HostName 100%%.%h", "x");
        assert_eq!(s.hostname, "100%.x");
    }

    #[test]
    fn proxy_command_tokens() {
        let config = "
Host inner
  HostName inner.lan
  User alice
  Port 2222
  ProxyCommand ssh -W %h:%p %r@jump -o \"Tag %n\" 100%% # comment goes to the shell
";
        let s = resolve(config, "inner");
        assert_eq!(
            s.proxy_command.as_deref(),
            Some("ssh -W inner.lan:2222 alice@jump -o \"Tag inner\" 100% # comment goes to the shell")
        );
        assert_eq!(s.proxy_jump, None);
        let s = resolve("ProxyCommand=nc %h %p %x", "h");
        assert_eq!(s.proxy_command.as_deref(), Some("nc h 22 %x"));
        let s = resolve("ProxyJump %r@gw-%h", "h");
        assert_eq!(s.proxy_jump.as_deref(), Some("me@gw-h"));
    }

    #[test]
    fn none_values() {
        // `none` is obtained like any value: later blocks cannot set it again.
        let s = resolve(
            "Host h\n  ProxyCommand none\n  UserKnownHostsFile none\nHost *\n  ProxyCommand nc %h %p\n  ProxyJump gw\n  UserKnownHostsFile ~/kh\n",
            "h",
        );
        assert_eq!(s.proxy_command, None);
        assert_eq!(s.proxy_jump, None);
        assert!(s.user_known_hosts_files.is_empty());
        let s = resolve(
            "Host h\n  ProxyJump NONE\nHost *\n  ProxyJump gw\n  ProxyCommand nc\n",
            "h",
        );
        assert_eq!((s.proxy_jump, s.proxy_command), (None, None));
        let s = resolve(
            "Host h\n  ProxyJump none\nHost *\n  ProxyJump gw\n",
            "other",
        );
        assert_eq!(s.proxy_jump.as_deref(), Some("gw"));
        // -J none on the command line turns off a configured jump host.
        let s = resolve_with("ProxyJump gw", "h", &rsh(&["ssh", "-J", "none"]));
        assert_eq!(s.proxy_jump, None);
    }

    #[test]
    fn proxy_jump_and_command_compete() {
        let s = resolve("ProxyJump gw\nProxyCommand nc %h %p\n", "h");
        assert_eq!(
            (s.proxy_jump.as_deref(), s.proxy_command),
            (Some("gw"), None)
        );
        let s = resolve("ProxyCommand nc %h %p\nProxyJump gw\n", "h");
        assert_eq!(
            (s.proxy_jump, s.proxy_command.as_deref()),
            (None, Some("nc h 22"))
        );
    }

    #[test]
    fn strict_host_key_checking_values() {
        for (value, want) in [
            ("yes", StrictHostKeyChecking::Yes),
            ("true", StrictHostKeyChecking::Yes),
            ("YES", StrictHostKeyChecking::Yes),
            ("accept-new", StrictHostKeyChecking::AcceptNew),
            ("no", StrictHostKeyChecking::No),
            ("off", StrictHostKeyChecking::No),
            ("false", StrictHostKeyChecking::No),
            ("ask", StrictHostKeyChecking::Ask),
        ] {
            let s = resolve(&format!("StrictHostKeyChecking {value}"), "h");
            assert_eq!(s.strict_host_key_checking, want, "{value}");
        }
        assert_eq!(
            resolve("", "h").strict_host_key_checking,
            StrictHostKeyChecking::Ask
        );
        assert!(SshConfig::parse("StrictHostKeyChecking maybe").is_err());
    }

    #[test]
    fn known_hosts_files() {
        let config = "
Host h
  UserKnownHostsFile ~/.ssh/kh_%h /shared/%u_hosts
  GlobalKnownHostsFile /etc/ssh/extra
Host *
  UserKnownHostsFile ~/.ssh/other
";
        let s = resolve(config, "h");
        assert_eq!(
            s.user_known_hosts_files,
            paths(&["/home/me/.ssh/kh_h", "/shared/me_hosts"])
        );
        assert_eq!(s.global_known_hosts_files, paths(&["/etc/ssh/extra"]));
        let s = resolve(config, "x");
        assert_eq!(s.user_known_hosts_files, paths(&["/home/me/.ssh/other"]));
        let cli = rsh(&["ssh", "-o", "UserKnownHostsFile=/dev/null"]);
        let s = resolve_with(config, "h", &cli);
        assert_eq!(s.user_known_hosts_files, paths(&["/dev/null"]));
    }

    #[test]
    fn timeouts_and_flags() {
        let s = resolve(
            "ConnectTimeout 1m30s\nServerAliveInterval 15\nBatchMode yes\nIdentitiesOnly no\n",
            "h",
        );
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.server_alive_interval, Some(Duration::from_secs(15)));
        assert!(s.batch_mode);
        assert!(!s.identities_only);
        // 0 is "none", and obtained first it still wins.
        let s = resolve(
            "Host h\n ServerAliveInterval 0\nHost *\n ServerAliveInterval 5\n",
            "h",
        );
        assert_eq!(s.server_alive_interval, None);
        assert_eq!(parse_time("1h"), Some(3600));
        assert_eq!(parse_time("2W"), Some(2 * 7 * 24 * 3600));
        assert_eq!(parse_time("m"), None);
        assert_eq!(parse_time("1x"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn ignored_keywords_for_this_host_only() {
        let config = "
Compression yes
Host h
  ForwardAgent yes
  forwardagent no
Host other
  Ciphers aes128-ctr
";
        let s = resolve(config, "h");
        assert_eq!(s.ignored, words(&["Compression", "ForwardAgent"]));
        let cli = rsh(&["ssh", "-o", "ControlMaster=auto"]);
        let s = resolve_with(config, "other", &cli);
        assert_eq!(
            s.ignored,
            words(&["controlmaster", "Compression", "Ciphers"])
        );
    }

    #[test]
    fn match_blocks() {
        let config = "
Host db
  HostName db.internal
Match host *.internal
  User admin
Match originalhost web !host *.internal
  Port 8022
Match all
  IdentitiesOnly yes
";
        let s = resolve(config, "db");
        assert_eq!(s.user.as_deref(), Some("admin"));
        assert_eq!(s.port, 22);
        assert!(s.identities_only);
        let s = resolve(config, "web");
        assert_eq!(s.user, None);
        assert_eq!(s.port, 8022);
        let s = resolve(config, "cache.INTERNAL");
        assert_eq!(s.user.as_deref(), Some("admin"));

        let config = "
Match user deploy localuser me
  Port 1
Match host a,b,!bad*
  Port 2
Match !localuser me
  Port 3
";
        let cli = rsh(&["ssh", "-l", "deploy"]);
        assert_eq!(resolve_with(config, "x", &cli).port, 1);
        assert_eq!(resolve(config, "b").port, 2);
        assert_eq!(resolve(config, "bad").port, 22);
        assert_eq!(resolve(config, "z").port, 22);
    }

    #[test]
    fn unsupported_match_criteria_skip_the_block() {
        let config = "
Match exec \"test -e /x\" host h
  Port 1
Match host other exec true
  Port 2
Match canonical all
  Port 3
";
        let s = resolve(config, "h");
        assert_eq!(s.port, 22);
        assert_eq!(
            s.ignored,
            words(&[
                "Match exec (<ssh_config>:2): not evaluated, block skipped",
                "Match canonical (<ssh_config>:6): not evaluated, block skipped",
            ])
        );
    }

    #[test]
    fn parsed_include_is_noted() {
        let s = resolve("Include conf.d/*\nHost nope\n  Include x\n", "h");
        assert_eq!(s.ignored, words(&["Include conf.d/* (not expanded)"]));
    }

    // --- files ---

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn load_expands_includes() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let ssh = home.join(".ssh");
        write(
            &ssh.join("config"),
            "Include conf.d/*.conf\nInclude ~/.ssh/missing ~/.ssh/nodir/*\nHost web\n  Include web_only\nHost *\n  User fallback\n",
        );
        write(
            &ssh.join("conf.d/b.conf"),
            "Host db\n  Port 2\n  User b-user\n",
        );
        write(
            &ssh.join("conf.d/a.conf"),
            "User a-global\nHost db\n  Port 1\n",
        );
        write(&ssh.join("conf.d/.hidden.conf"), "Port 9\n");
        write(&ssh.join("conf.d/c.conf.bak"), "Port 9\n");
        std::fs::create_dir_all(ssh.join("conf.d/dir.conf")).unwrap();
        write(
            &ssh.join("web_only"),
            "IdentityFile ~/.ssh/web\nHost db\n  StrictHostKeyChecking no\nHost web\n  BatchMode yes\n",
        );
        let config = SshConfig::load(&ssh.join("config"), home).unwrap();
        let local = LocalContext {
            home: home.to_owned(),
            ..local()
        };
        let cli = rsh(&["ssh"]);

        let db = config.resolve("db", &cli, &local);
        assert_eq!(db.port, 1, "a.conf is read before b.conf");
        assert_eq!(db.user.as_deref(), Some("a-global"));
        assert_eq!(db.identity_files, Vec::<PathBuf>::new());
        assert_eq!(db.strict_host_key_checking, StrictHostKeyChecking::Ask);

        let web = config.resolve("web", &cli, &local);
        assert_eq!(web.port, 22);
        assert_eq!(web.identity_files, vec![ssh.join("web")]);
        assert!(web.batch_mode);
        assert_eq!(web.user.as_deref(), Some("a-global"));
    }

    #[test]
    fn include_after_host_block_applies_only_there() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let ssh = home.join(".ssh");
        write(
            &ssh.join("config"),
            "Host a\n  Include inc\nHost *\n  Port 7\n",
        );
        write(&ssh.join("inc"), "Port 5\nHost *\n  User included\n");
        let config = SshConfig::load(&ssh.join("config"), home).unwrap();
        let local = LocalContext {
            home: home.to_owned(),
            ..local()
        };
        let a = config.resolve("a", &rsh(&["ssh"]), &local);
        assert_eq!((a.port, a.user.as_deref()), (5, Some("included")));
        let b = config.resolve("b", &rsh(&["ssh"]), &local);
        assert_eq!((b.port, b.user), (7, None));
    }

    #[test]
    fn load_missing_file_is_empty_and_errors_name_the_file() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let config = SshConfig::load(&home.join("nope"), home).unwrap();
        let s = config.resolve("h", &rsh(&["ssh"]), &local());
        assert_eq!(s.port, 22);

        let ssh = home.join(".ssh");
        write(&ssh.join("config"), "Include bad\n");
        write(&ssh.join("bad"), "\nPort none\n");
        let e = SshConfig::load(&ssh.join("config"), home).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}:2: bad port 'none'", ssh.join("bad").display())
        );
    }

    #[test]
    fn include_loops_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let ssh = home.join(".ssh");
        write(&ssh.join("config"), "Include config\n");
        let e = SshConfig::load(&ssh.join("config"), home).unwrap_err();
        assert!(e.to_string().contains("nested more than 16 deep"), "{e}");
    }

    #[test]
    fn system_config_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        write(
            &etc.join("ssh_config"),
            "Include ssh_config.d/*.conf\nHost *\n  Port 99\n",
        );
        write(&etc.join("ssh_config.d/x.conf"), "User sys\n");
        let mut config = SshConfig::parse("Host h\n  Port 1\n").unwrap();
        config.append(SshConfig::load_system(&etc.join("ssh_config")).unwrap());
        let s = config.resolve("h", &rsh(&["ssh"]), &local());
        assert_eq!((s.port, s.user.as_deref()), (1, Some("sys")));
        let s = config.resolve("g", &rsh(&["ssh"]), &local());
        assert_eq!(s.port, 99);

        write(&etc.join("tilde"), "Include ~/x\n");
        let e = SshConfig::load_system(&etc.join("tilde")).unwrap_err();
        assert!(e.to_string().ends_with(":1: bad include path ~/x"), "{e}");
    }

    #[test]
    fn split_args_quoting() {
        assert_eq!(
            split_args(r#"a "b c" 'd "e"' f\ g h\"i j\k # rest"#).unwrap(),
            words(&["a", "b c", "d \"e\"", "f g", "h\"i", "j\\k"])
        );
        assert_eq!(split_args("x#y").unwrap(), words(&["x#y"]));
        assert_eq!(
            split_args(r#"pre"quoted part"post"#).unwrap(),
            words(&["prequoted partpost"])
        );
        assert!(split_args("'open").is_err());
    }
}
