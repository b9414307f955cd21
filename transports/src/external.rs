//! External transport helpers, in the manner of git's remote helpers: `--transport=NAME`, where
//! nothing built in has that name, runs the program `arsync-transport-NAME` found on `PATH`. The
//! helper reaches the host its own way (a Unix socket, a proxy, a message bus, a serial line),
//! starts the remote command there, and joins its own stdin and stdout to that command's. arsync
//! then speaks to the remote command through the helper's stdio, as it does through `ssh`'s.
//!
//! The contract (also in `docs/TRANSPORT_PLUGINS.md`):
//!
//! - arsync runs `arsync-transport-NAME --host HOST [--user USER] [--port PORT] -- WORD…`: the
//!   words are the remote command (`arsync --server …`, or `rsync --server …` for rsync's
//!   protocol), one argument each, unquoted.
//! - Once it has reached the host and started the command, the helper writes one line on its
//!   stdout: `arsync-transport 1`, then optionally capability words separated by single
//!   spaces, then `\n` ([`HelperHello`]). After that line its stdout carries the remote
//!   command's output and its stdin the remote command's input, byte for byte. Unknown
//!   capability words are ignored, so later versions can offer more; version 1 knows
//!   `encrypted` (the helper's path keeps the bytes secret and unaltered, as SSH does).
//! - The line is at most [`MAX_HELLO_LINE`] bytes and must come within [`HELLO_WAIT`]. A helper
//!   that exits first fails the connection with its exit status and what it said on stderr
//!   (exit 127 reads as "no such command at the far end", as a remote shell's).
//! - What the helper writes on stderr is shown as the remote side's messages.
//!
//! Not here: finding the helper for a name is [`find_on_path`]; registering it when asked is
//! `crate::registry`; the example helper is `examples/transport_helper/`.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use arsync_core::proto::bootstrap::LineReader;
use arsync_core::proto::DecodeError;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, TransportError, TransportFactory,
};
use tokio::process::Command;

use crate::pipe::{read_line, OneStream, PipeConnection};

/// The program name's prefix: `--transport=NAME` runs `arsync-transport-NAME`.
pub const PROGRAM_PREFIX: &str = "arsync-transport-";
/// The hello line's first word.
pub const HELLO_TAG: &str = "arsync-transport";
/// The helper protocol's version (the hello line's second word).
pub const HELLO_VERSION: &str = "1";
/// The longest hello line read, without its newline.
pub const MAX_HELLO_LINE: usize = 256;
/// How long a helper has to reach its host and say it is ready.
pub const HELLO_WAIT: Duration = Duration::from_secs(60);

/// What a helper's hello line says it can do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HelperHello {
    /// `encrypted`: the helper's path keeps the bytes secret and unaltered.
    pub encrypted: bool,
}

impl HelperHello {
    /// Parse a hello line (without its newline): `arsync-transport 1[ WORD]…`. Strict about
    /// the tag, the version and single spaces; lenient about capability words it does not
    /// know.
    pub fn parse(line: &[u8]) -> Result<HelperHello, DecodeError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| DecodeError::invalid("helper hello", "not UTF-8"))?;
        let mut words = text.split(' ');
        if words.next() != Some(HELLO_TAG) {
            return Err(DecodeError::invalid(
                "helper hello",
                format!("expected {HELLO_TAG:?} first, got {text:?}"),
            ));
        }
        match words.next() {
            Some(HELLO_VERSION) => {}
            other => {
                return Err(DecodeError::invalid(
                    "helper hello",
                    format!("unsupported version {other:?} (this arsync speaks {HELLO_VERSION})"),
                ))
            }
        }
        let mut hello = HelperHello::default();
        for word in words {
            match word {
                "" => return Err(DecodeError::invalid("helper hello", "an empty word")),
                "encrypted" => hello.encrypted = true,
                _ => {}
            }
        }
        Ok(hello)
    }

    /// The line a helper writes, with its newline.
    pub fn encode(&self) -> String {
        let mut line = format!("{HELLO_TAG} {HELLO_VERSION}");
        if self.encrypted {
            line.push_str(" encrypted");
        }
        line.push('\n');
        line
    }
}

/// The transport name a helper program serves (`arsync-transport-NAME` → `NAME`).
pub fn program_name(name: &str) -> String {
    format!("{PROGRAM_PREFIX}{name}")
}

/// The helper for `--transport=name` in the directories of `path` (a `PATH` value): the first
/// executable regular file named `arsync-transport-NAME`. `None` for a name that could not be
/// a file name (empty, or with a `/`).
pub fn find_on_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    let program = program_name(name);
    std::env::split_paths(path?)
        .map(|dir| dir.join(&program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A transport that is a helper program (see the module documentation).
#[derive(Debug, Clone)]
pub struct ExternalHelper {
    name: String,
    program: PathBuf,
}

impl ExternalHelper {
    /// The helper `program`, registered as `name`.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        ExternalHelper {
            name: name.into(),
            program: program.into(),
        }
    }

    /// The helper for `name` on this process's `PATH`, if there is one.
    pub fn on_path(name: &str) -> Option<Self> {
        find_on_path(name, std::env::var_os("PATH").as_deref()).map(|p| Self::new(name, p))
    }

    /// The program it runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The helper's arguments for `endpoint`.
    fn args(endpoint: &Endpoint) -> Vec<String> {
        let mut v = vec!["--host".to_owned(), endpoint.host.clone()];
        if let Some(user) = &endpoint.user {
            v.extend(["--user".to_owned(), user.clone()]);
        }
        if let Some(port) = endpoint.port {
            v.extend(["--port".to_owned(), port.to_string()]);
        }
        v.push("--".to_owned());
        v.extend(endpoint.remote_command.iter().cloned());
        v
    }
}

impl TransportFactory for ExternalHelper {
    fn name(&self) -> &str {
        &self.name
    }

    /// One stream; whether it is encrypted is known only from the hello, so not claimed here.
    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let args = Self::args(endpoint);
            let shown = format!("{} {}", self.program.display(), args.join(" "));
            let mut cmd = Command::new(&self.program);
            cmd.args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let child = cmd.spawn().map_err(|e| {
                TransportError::unreachable(&shown, "starting the transport helper", e)
            })?;
            let program = endpoint.remote_command.first().map_or("", String::as_str);
            let conn = PipeConnection::child_relaying_stderr(child, shown.clone(), program)?;
            let mut pair = conn.open_stream().await?;
            let mut reader = LineReader::new(MAX_HELLO_LINE);
            let read_hello = read_line(&mut pair.recv, &mut reader);
            let hello = match tokio::time::timeout(HELLO_WAIT, read_hello).await {
                Ok(Some(Ok(line))) => HelperHello::parse(&line),
                Ok(Some(Err(e))) => Err(e),
                // The helper ended first: how it ended says why.
                Ok(None) => {
                    drop(pair);
                    conn.close().await?;
                    return Err(TransportError::Connect {
                        endpoint: shown,
                        reason: "the transport helper ended before it was ready".into(),
                    });
                }
                Err(_) => {
                    return Err(TransportError::Connect {
                        endpoint: shown,
                        reason: format!(
                            "the transport helper did not say it was ready within {} s",
                            HELLO_WAIT.as_secs()
                        ),
                    })
                }
            };
            let hello = hello.map_err(|e| TransportError::Connect {
                endpoint: shown.clone(),
                reason: format!("the transport helper's first line: {e}"),
            })?;
            let caps = Capabilities::single_stream().with_encrypted(hello.encrypted);
            Ok(
                Box::new(OneStream::new(pair, Box::new(conn)).with_capabilities(caps))
                    as Box<dyn Connection>,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hello_lines() {
        assert_eq!(
            HelperHello::parse(b"arsync-transport 1").unwrap(),
            HelperHello::default()
        );
        let enc = HelperHello::parse(b"arsync-transport 1 encrypted streams=4").unwrap();
        assert!(enc.encrypted, "unknown words are ignored, known ones read");
        assert_eq!(
            HelperHello::parse(enc.encode().trim_end().as_bytes()).unwrap(),
            enc
        );
        for bad in [
            &b"arsync-transport 2"[..],
            b"arsync-transport",
            b"ssh-transport 1",
            b"arsync-transport 1  encrypted",
            b"arsync-transport 1 \xff",
            b"",
        ] {
            assert!(HelperHello::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn helpers_are_found_by_name_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let helper = dir.path().join("arsync-transport-box");
        std::fs::write(&helper, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Not executable: not a helper.
        let plain = other.path().join("arsync-transport-plain");
        std::fs::write(&plain, "").unwrap();
        let path = std::env::join_paths([other.path(), dir.path()]).unwrap();
        assert_eq!(find_on_path("box", Some(&path)), Some(helper));
        assert_eq!(find_on_path("plain", Some(&path)), None);
        assert_eq!(find_on_path("none", Some(&path)), None);
        for bad in ["", "../box", "a/b", ".", ".."] {
            assert_eq!(find_on_path(bad, Some(&path)), None, "{bad:?}");
        }
        assert_eq!(find_on_path("box", None), None);
    }

    #[test]
    fn the_arguments_name_the_host_and_pass_the_command_unquoted() {
        let mut e = Endpoint::host("box")
            .with_user("me")
            .with_port(2200)
            .with_remote_command(["arsync", "--server", "a b", "it's"]);
        assert_eq!(
            ExternalHelper::args(&e),
            [
                "--host", "box", "--user", "me", "--port", "2200", "--", "arsync", "--server",
                "a b", "it's"
            ]
        );
        e.user = None;
        e.port = None;
        assert_eq!(ExternalHelper::args(&e)[..3], ["--host", "box", "--"]);
    }
}
