//! The `ssh` command line given with `-e`/`--rsh` ([`RshOptions`]), and which configuration
//! files that `ssh` would read ([`config_path`], [`system_config_path`]).
//!
//! What it owns: `ssh(1)`'s flags — joined (`-p2222`, `-oKey=Value`), separate or grouped
//! (`-qTx`) — up to the host name or `--`; the first `-p` / `-l` winning; `-o` options checked
//! as a configuration line would be; flags with no meaning for us kept as ignored. What it does
//! not own: what the options mean for a host ([`SshConfig::resolve`](super::SshConfig::resolve)
//! applies them first) or the value syntax (`values`).

use std::path::{Path, PathBuf};

use super::patterns::expand_tilde;
use super::values::{parse_port, parse_setting, split_keyword};
use super::{SshConfigError, SYSTEM_CONFIG_PATH};

/// The `ssh(1)` flags that take an argument (`getopt` string letters followed by `:`).
const FLAGS_WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOoPpQRSWw";

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
    ///
    /// [`SshConfig::resolve`]: super::SshConfig::resolve
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh_config::test_support::*;

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
}
