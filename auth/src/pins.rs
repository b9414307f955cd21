//! The known-servers file: certificate fingerprints pinned per `host:port`, trust on first
//! use, like OpenSSH's `known_hosts`.
//!
//! Owns the file format (`host:port SHA256:…` per line, `#` comments), its location
//! (`$XDG_CONFIG_HOME/arsync/known_servers`, else `~/.config/arsync/known_servers`) and the
//! comparison. Does not own the TLS handshake: [`crate::tls`] reports what the server showed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::tls::Fingerprint;
use crate::{io_err, AuthError};

/// What the file says of a fingerprint seen for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// The pinned one.
    Known,
    /// Nothing pinned for this server yet.
    New,
    /// A different one is pinned.
    Changed {
        /// The pinned fingerprint.
        expected: Fingerprint,
    },
}

/// The parsed file.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    entries: Vec<(String, Fingerprint)>,
}

impl KnownServers {
    /// Where the file lives by default.
    pub fn default_path() -> Option<PathBuf> {
        crate::config_dir().map(|d| d.join("known_servers"))
    }

    /// Read the file (missing: empty); a malformed line is an error naming it.
    pub fn load(path: &Path) -> Result<KnownServers, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let bad = |why: String| AuthError::BadFile {
                path: path.to_path_buf(),
                message: format!("line {}: {why}", i + 1),
            };
            let mut w = l.split_whitespace();
            let (Some(server), Some(fp), None) = (w.next(), w.next(), w.next()) else {
                return Err(bad(format!("expected `host:port SHA256:…`, found {l:?}")));
            };
            let fp: Fingerprint = fp.parse().map_err(|_| {
                bad(format!(
                    "{fp:?} is not a certificate fingerprint (SHA256:<base64> or 64 hex digits)"
                ))
            })?;
            entries.push((server.to_owned(), fp));
        }
        Ok(KnownServers {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint pinned for `server` (`host:port`).
    pub fn lookup(&self, server: &str) -> Option<Fingerprint> {
        self.entries
            .iter()
            .find(|(s, _)| s == server)
            .map(|(_, f)| *f)
    }

    /// Compare `fp` with what is pinned for `server`.
    pub fn check(&self, server: &str, fp: &Fingerprint) -> PinCheck {
        match self.lookup(server) {
            None => PinCheck::New,
            Some(e) if e == *fp => PinCheck::Known,
            Some(expected) => PinCheck::Changed { expected },
        }
    }

    /// Pin `fp` for `server`: appended to the file (created 0600, its directory 0700).
    pub fn add(&mut self, server: &str, fp: Fingerprint) -> Result<(), AuthError> {
        if server.is_empty() || server.contains(char::is_whitespace) {
            return Err(AuthError::BadFile {
                path: self.path.clone(),
                message: format!("cannot pin a server named {server:?}"),
            });
        }
        if let Some(dir) = self.path.parent() {
            crate::create_private_dir(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        // A hand-edited file may lack its final newline: do not glue our line onto it.
        let len = f.metadata().map_err(io_err(&self.path))?.len();
        let mut last = [b'\n'];
        if len > 0 {
            use std::os::unix::fs::FileExt;
            f.read_exact_at(&mut last, len - 1)
                .map_err(io_err(&self.path))?;
        }
        let separator = if last[0] == b'\n' { "" } else { "\n" };
        // One write, so concurrent appenders do not interleave within a line.
        f.write_all(format!("{separator}{server} {fp}\n").as_bytes())
            .map_err(io_err(&self.path))?;
        self.entries.push((server.to_owned(), fp));
        Ok(())
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pin_lookup_change_and_malformed_lines() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("cfg/arsync/known_servers");
        let mut k = KnownServers::load(&path).unwrap();
        let (a, b) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
        assert_eq!(k.check("h:1", &a), PinCheck::New);
        k.add("h:1", a).unwrap();
        let k = KnownServers::load(&path).unwrap();
        assert_eq!(k.lookup("h:1"), Some(a));
        assert_eq!(k.check("h:1", &a), PinCheck::Known);
        assert_eq!(k.check("h:1", &b), PinCheck::Changed { expected: a });
        assert_eq!(k.check("h:2", &b), PinCheck::New);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# pins\n\n{text}h:3 nonsense\n")).unwrap();
        let e = KnownServers::load(&path).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("nonsense"), "{e}");
        std::fs::write(&path, "# pins\nh:1\n").unwrap();
        let e = KnownServers::load(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn add_after_a_last_line_without_newline() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("known_servers");
        let (a, b) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
        std::fs::write(&path, format!("h:1 {a}")).unwrap();
        let mut k = KnownServers::load(&path).unwrap();
        k.add("h:2", b).unwrap();
        let k = KnownServers::load(&path).unwrap();
        assert_eq!(k.lookup("h:1"), Some(a));
        assert_eq!(k.lookup("h:2"), Some(b));
        assert_eq!(k.path(), path.as_path());
    }
}
