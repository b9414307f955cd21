//! The configuration file as `ssh_config(5)` lays it out: [`SshConfig`] parsed from text or
//! loaded from files — the lines before the first `Host` / `Match`, then one block per `Host`
//! or `Match` line with the directives under it, in file order; `Include` (a `*` / `?` glob in
//! the last path component, relative to `~/.ssh` or `/etc/ssh`) expanded when loading.
//!
//! What it owns: the block structure, `Match` criteria parsed (not evaluated), reading files (a
//! missing one reads as empty), the `Include` depth limit, and parse errors with their file and
//! line. What it does not own: a directive's value (`values`), evaluating blocks for a host
//! (`resolve`), glob matching (`patterns`).

use std::io;
use std::path::{Path, PathBuf};

use super::patterns::{expand_tilde, wildcard_match};
use super::values::{setting_from_args, split_args, split_keyword, Setting};
use super::SshConfigError;

/// OpenSSH refuses `Include` nested deeper than this (it is almost always a loop).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The label parse errors carry for text given to [`SshConfig::parse`].
const TEXT_LABEL: &str = "<ssh_config>";

/// `ssh_config(5)` parsed: blocks (the lines before the first `Host`/`Match`, then one block per
/// `Host` or `Match` line with the directives under it) in file order, each `Include` holding
/// the files it expanded to (when loaded with [`SshConfig::load`]).
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    pub(super) blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) condition: Condition,
    pub(super) entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub(super) enum Condition {
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
pub(super) struct Criterion {
    pub(super) negated: bool,
    pub(super) test: MatchTest,
}

#[derive(Debug, Clone)]
pub(super) enum MatchTest {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// A criterion we do not evaluate (`exec`, `canonical`, …), by name.
    Unsupported(String),
}

#[derive(Debug, Clone)]
pub(super) enum Entry {
    Set(Setting),
    Include {
        /// The argument as written.
        spec: String,
        /// The files it expanded to, in glob order; `None` when the text was only parsed.
        files: Option<Vec<SshConfig>>,
    },
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
    ///
    /// [`HostSettings::ignored`]: super::HostSettings::ignored
    pub fn parse(text: &str) -> Result<SshConfig, SshConfigError> {
        parse_text(text, TEXT_LABEL, None)
    }

    /// Read the user configuration file at `path` (see [`config_path`]), expanding `Include`:
    /// relative paths are under `home/.ssh`, `~` is `home`, and the last path component may
    /// hold `*` / `?` (matches sorted, dot files only by a pattern starting with `.`). A missing
    /// file — `path` or an included one — reads as empty, as with `ssh`.
    ///
    /// [`config_path`]: super::config_path
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
    ///
    /// [`system_config_path`]: super::system_config_path
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh_config::test_support::*;
    use crate::ssh_config::{LocalContext, StrictHostKeyChecking};

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
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
}
