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
//!
//! Where the parts are: `rsh` (the `-e` command line and which files `ssh` would read), `file`
//! (the file format: lines into `Host` / `Match` blocks, `Include` expanded on load), `values`
//! (splitting a line into a keyword and arguments, and each keyword's value checked), `resolve`
//! (walking the command line and the blocks for one host: `Host` / `Match` evaluation, first
//! value wins, `%` tokens) and `patterns` (the `*` / `?` patterns, pattern lists, `%` token and
//! `~` expansion). This file holds the error and the public result types.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

mod file;
mod patterns;
mod resolve;
mod rsh;
#[cfg(test)]
mod test_support;
mod values;

pub use file::SshConfig;
pub use rsh::{config_path, system_config_path, RshOptions};

/// Where OpenSSH keeps the system-wide client configuration, read after the user's own.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/ssh/ssh_config";

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
