//! `ssh`: the single-SSH transport through the system's remote shell (`-e`/`--rsh`, default
//! `ssh`), as rsync uses it: run `RSH [-l USER] HOST REMOTE-COMMAND` and speak over its
//! stdin/stdout. The remote command (`arsync --server …`) comes in the endpoint; each argument is
//! quoted for the remote shell and passed as a word of its own, as rsync passes them: ssh joins
//! the words into one command line and the remote shell re-splits it, while a shell that execs
//! its words directly (`exec "$@"`, as `docker exec` does) gets the program and its arguments.

use std::process::Stdio;

use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, TransportError, TransportFactory,
};
use tokio::process::Command;

use crate::pipe::PipeConnection;

/// The remote-shell transport; `rsh` is the command line of the shell (e.g. `ssh -p 2222`).
#[derive(Debug, Clone)]
pub struct SystemSsh {
    rsh: Vec<String>,
}

impl Default for SystemSsh {
    fn default() -> Self {
        SystemSsh {
            rsh: vec!["ssh".into()],
        }
    }
}

impl SystemSsh {
    /// A transport running `rsh` (split into words as a shell would, honouring quotes).
    pub fn with_rsh(rsh: &str) -> Result<Self, TransportError> {
        let words = split_words(rsh).ok_or_else(|| TransportError::Connect {
            endpoint: rsh.into(),
            reason: "unbalanced quotes in the remote shell command".into(),
        })?;
        if words.is_empty() {
            return Err(TransportError::Connect {
                endpoint: rsh.into(),
                reason: "empty remote shell command".into(),
            });
        }
        Ok(SystemSsh { rsh: words })
    }
}

/// Split a command line into words: whitespace separates, single and double quotes group,
/// backslash escapes outside single quotes. `None` for unbalanced quotes.
pub fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => cur.push(x),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        x => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// Quote `arg` for a POSIX shell: left alone when it is plainly safe, else single-quoted.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

impl TransportFactory for SystemSsh {
    fn name(&self) -> &str {
        "ssh"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream().with_encrypted(true)
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let mut cmd = Command::new(&self.rsh[0]);
            cmd.args(&self.rsh[1..]);
            if let Some(user) = &endpoint.user {
                cmd.arg("-l").arg(user);
            }
            if let Some(port) = endpoint.port {
                cmd.arg("-p").arg(port.to_string());
            }
            let remote: Vec<String> = endpoint
                .remote_command
                .iter()
                .map(|a| shell_quote(a))
                .collect();
            cmd.arg(&endpoint.host).args(&remote);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let shown = format!(
                "{} {} {}",
                self.rsh.join(" "),
                endpoint.host,
                remote.join(" ")
            );
            let child = cmd.spawn().map_err(|e| {
                TransportError::unreachable(&shown, format!("cannot run {}", self.rsh[0]), e)
            })?;
            // A remote host without the program says so on stderr: held back, in case the
            // caller falls back quietly (to rsync's protocol).
            let program = endpoint.remote_command.first().map_or("", String::as_str);
            Ok(Box::new(PipeConnection::child_relaying_stderr(
                child, shown, program,
            )?) as Box<dyn Connection>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"ssh -p 2222 -o "ProxyCommand=nc %h %p" 'a b'"#).unwrap(),
            vec!["ssh", "-p", "2222", "-o", "ProxyCommand=nc %h %p", "a b"]
        );
        assert!(split_words("ssh 'unbalanced").is_none());
        assert_eq!(shell_quote("/plain/path"), "/plain/path");
        assert_eq!(shell_quote("it's"), r#"'it'\''s'"#);
        assert_eq!(shell_quote("- *.o"), "'- *.o'");
        assert_eq!(shell_quote(""), "''");
        // Quoting then splitting gives the words back.
        for w in ["a b", "it's", "$HOME", "x\ny", "- *.o"] {
            assert_eq!(split_words(&shell_quote(w)).unwrap(), vec![w.to_owned()]);
        }
    }
}
