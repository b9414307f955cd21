//! What a listening arsync (`arsync serve`) admits, decided from an admission request and
//! the daemon's modules — pure.
//!
//! Owns the policy: the split of a target into module and path ([`split_target`]), which
//! credential a request must show ([`credential`]), the allow-list of server arguments
//! ([`check_args`]: none of them may make the server read or write outside the module), and
//! the module and write checks ([`admit`]); a refusal carries the rsync exit code the client
//! ends with. Not here: the admission's bytes ([`crate::proto::admit`]), reading the token
//! store and verifying a token (`arsync_auth::token`), resolving the path beneath the
//! module's root (`engine::fsys::resolve_beneath`, which opens directories), turning the
//! arguments into options (the binary), or the QUIC handshake.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// An exported module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its directory, canonical.
    pub root: PathBuf,
    /// Writes refused.
    pub read_only: bool,
}

/// The exported modules by name.
pub type Modules = BTreeMap<String, Module>;

/// A refused admission: the rsync exit code for the client and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// rsync exit code: 5 for who and what may be reached, 1 for options, 3 for paths.
    pub code: u8,
    /// For the client's user and the daemon's log.
    pub message: String,
}

impl Refusal {
    /// Refused with `code`, because `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// The credential a request is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate of the daemon's CA (mutual TLS), and no token.
    ClientCertificate,
    /// A bearer token, verified against the token store.
    Token,
}

/// Which credential counts: a certified client (when the daemon asks for mutual TLS) that
/// presents no token is judged by its certificate; anything else by its token.
pub fn credential(mutual_tls: bool, client_certified: bool, token: &str) -> Credential {
    if mutual_tls && client_certified && token.is_empty() {
        Credential::ClientCertificate
    } else {
        Credential::Token
    }
}

/// A token is needed and none came.
pub fn require_token(token: &str) -> Result<(), Refusal> {
    if token.is_empty() {
        Err(Refusal::new(
            5,
            "a token is required (--token-file or ARSYNC_TOKEN)",
        ))
    } else {
        Ok(())
    }
}

/// Who is asking, once the credential was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// For the log: `client certificate`, `token NAME`.
    pub label: String,
    /// Whether it may write (push).
    pub may_write: bool,
}

/// `module/path` → (`module`, `path`); a bare `module` has an empty path.
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or((target, ""))
}

/// Options a client may pass to a serving arsync: none of them names a file on the server.
/// Whether the server is to send (`--sender`), or the first word refused.
pub fn check_args(args: &[String]) -> Result<bool, Refusal> {
    let mut sender = false;
    let mut words = args.iter();
    while let Some(a) = words.next() {
        let ok = match a.as_str() {
            // Issue 19, resume: a partial directory named by one component stays beside each
            // file, inside the module (opened beneath the file's directory, never through a
            // symlink); a path could name a directory elsewhere on the server.
            "--partial-dir" => words.next().is_some_and(|d| is_one_component(d)),
            s if s.starts_with("--partial-dir=") => is_one_component(&s["--partial-dir=".len()..]),
            "--sender" => {
                sender = true;
                true
            }
            "--devices" | "--specials" | "--no-hash-cache" | "--size-only" | "--existing"
            | "--ignore-existing" | "--delete" | "--delete-excluded" | "--numeric-ids"
            | "--inplace" | "--partial" | "--delay-updates" => true,
            s if s.starts_with("--bwlimit=")
                || s.starts_with("--tree-levels=")
                || s.starts_with("--chunk-size=")
                || s.starts_with("--compress-level=")
                || s.starts_with("--timeout=") =>
            {
                true
            }
            // Filter rules, but no merge files (they would be read on this side).
            s if s.starts_with("--filter=") => {
                let rule = &s["--filter=".len()..];
                !(rule.starts_with('.')
                    || rule.starts_with(':')
                    || rule.starts_with("merge")
                    || rule.starts_with("dir-merge"))
            }
            s => {
                s.len() > 1
                    && s.starts_with('-')
                    && !s.starts_with("--")
                    && s[1..].bytes().all(|b| b"rlptgoDHXcnIW".contains(&b))
            }
        };
        if !ok {
            return Err(Refusal::new(
                1,
                format!("option {a:?} is not accepted by arsync serve"),
            ));
        }
    }
    Ok(sender)
}

/// A single path component: not empty, no `/`, not `.` or `..`.
fn is_one_component(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// An admitted request, before its path is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted<'a> {
    /// The module.
    pub module: &'a Module,
    /// The path within it, as asked.
    pub rel: &'a str,
    /// Whether the server sends (a pull).
    pub sender: bool,
}

/// The module `target` names, the arguments, and whether `who` may write there — in that
/// order, the first failure refusing.
pub fn admit<'a>(
    modules: &'a Modules,
    target: &'a str,
    args: &[String],
    who: &Who,
) -> Result<Admitted<'a>, Refusal> {
    let (module_name, rel) = split_target(target);
    let module = modules
        .get(module_name)
        .ok_or_else(|| Refusal::new(5, format!("unknown module {module_name:?}")))?;
    let sender = check_args(args)?;
    if !sender {
        if module.read_only {
            return Err(Refusal::new(
                5,
                format!("module {module_name:?} is read-only"),
            ));
        }
        if !who.may_write {
            return Err(Refusal::new(
                5,
                format!("{} is read-only: it cannot write", who.label),
            ));
        }
    }
    Ok(Admitted {
        module,
        rel,
        sender,
    })
}

/// The server's command line for an admitted request: `arsync --server ARGS . PATH`, where
/// `path` is the resolved path; `module` and `module/` name the module's contents (a trailing
/// slash, as rsync's daemon does).
pub fn server_argv(args: &[String], rel: &str, path: &Path) -> Vec<OsString> {
    let mut path = path.as_os_str().to_owned();
    if rel.trim_matches('/').is_empty() {
        path.push("/");
    }
    let mut argv: Vec<OsString> = vec!["arsync".into(), "--server".into()];
    argv.extend(args.iter().map(OsString::from));
    argv.push(".".into());
    argv.push(path);
    argv
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn words(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_harmless_options_pass() {
        let ok = |a: &[&str]| check_args(&words(a));
        assert_eq!(
            ok(&["--sender", "-r", "-l", "-logDtp", "--delete"]),
            Ok(true)
        );
        assert_eq!(
            ok(&["-rlpt", "--filter=- *.o", "--bwlimit=100b"]),
            Ok(false)
        );
        // Issue 19, resume: a partial directory of one component, in either form.
        assert_eq!(ok(&["-rlpt", "--partial-dir", ".part"]), Ok(false));
        assert_eq!(ok(&["--partial-dir=.part", "--sender"]), Ok(true));
        assert_eq!(ok(&["--partial-dir", "../x"]).unwrap_err().code, 1);
        assert_eq!(ok(&["--partial-dir"]).unwrap_err().code, 1);
        for bad in [
            "--rsync-path=x",
            "-e",
            "--exclude-from=/etc/shadow",
            "--filter=. /etc/rules",
            "--filter=: .rules",
            "--filter=merge /x",
            "--partial-dir=/tmp",
            "--partial-dir=../up",
            "--partial-dir=a/b",
            "--partial-dir=..",
            "--partial-dir=",
            "--lane-session=00",
            "--bootstrap=quic",
            "-rv",
            "--password-file=/x",
            "/etc",
        ] {
            let e = ok(&[bad]).unwrap_err();
            assert_eq!(e.code, 1, "{bad}");
        }
    }

    fn modules() -> Modules {
        let mut m = Modules::new();
        for (name, read_only) in [("data", false), ("pub", true)] {
            m.insert(
                name.into(),
                Module {
                    root: PathBuf::from(format!("/srv/{name}")),
                    read_only,
                },
            );
        }
        m
    }

    fn writer() -> Who {
        Who {
            label: "token w".into(),
            may_write: true,
        }
    }

    #[test]
    fn the_credential_a_request_is_judged_by() {
        assert_eq!(credential(true, true, ""), Credential::ClientCertificate);
        assert_eq!(credential(true, true, "t"), Credential::Token);
        assert_eq!(credential(true, false, ""), Credential::Token);
        assert_eq!(credential(false, true, ""), Credential::Token);
        assert_eq!(require_token("").unwrap_err().code, 5);
        assert!(require_token("t").is_ok());
    }

    #[test]
    fn module_arguments_and_writes_are_checked_in_order() {
        let m = modules();
        let a = admit(&m, "data/sub/dir", &words(&["-r"]), &writer()).unwrap();
        assert_eq!(
            (a.module.root.as_path(), a.rel, a.sender),
            (Path::new("/srv/data"), "sub/dir", false)
        );
        let e = admit(&m, "nope/x", &words(&["-r"]), &writer()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (5, "unknown module \"nope\""));
        // The module is checked before the arguments.
        assert_eq!(
            admit(&m, "nope", &words(&["-e"]), &writer())
                .unwrap_err()
                .code,
            5
        );
        assert_eq!(
            admit(&m, "data", &words(&["-e"]), &writer())
                .unwrap_err()
                .code,
            1
        );
        // A read-only module or credential may be pulled from, not pushed to.
        let e = admit(&m, "pub", &words(&["-r"]), &writer()).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (5, "module \"pub\" is read-only")
        );
        assert!(
            admit(&m, "pub", &words(&["--sender", "-r"]), &writer())
                .unwrap()
                .sender
        );
        let reader = Who {
            label: "token r".into(),
            may_write: false,
        };
        let e = admit(&m, "data", &words(&["-r"]), &reader).unwrap_err();
        assert_eq!(e.message, "token r is read-only: it cannot write");
        assert!(admit(&m, "data", &words(&["--sender"]), &reader).is_ok());
    }

    #[test]
    fn targets_and_the_server_command() {
        assert_eq!(split_target("data"), ("data", ""));
        assert_eq!(split_target("data/a/b"), ("data", "a/b"));
        assert_eq!(split_target(""), ("", ""));
        let args = words(&["--sender", "-r"]);
        assert_eq!(
            server_argv(&args, "", Path::new("/srv/data")),
            ["arsync", "--server", "--sender", "-r", ".", "/srv/data/"].map(OsString::from)
        );
        assert_eq!(
            server_argv(&args, "/", Path::new("/srv/data"))[5],
            OsString::from("/srv/data/")
        );
        assert_eq!(
            server_argv(&args, "a/b", Path::new("/srv/data/a/b"))[5],
            OsString::from("/srv/data/a/b")
        );
    }
}
