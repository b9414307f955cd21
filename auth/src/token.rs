//! Bearer tokens: a secret the client presents in the admission request, of which the server
//! keeps only the SHA-256, with a name, a scope, an expiry and the modules it covers.
//!
//! Owns the secret format (`arsync_` + 64 hex digits, 256 random bits), the token file
//! (TOML, `[[token]]` entries, written 0600 through a rename), and verification (constant-time
//! comparison of hashes). Does not own transport or modules: the daemon passes the module
//! name and acts on the scope.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{io_err, random_bytes, write_atomically, AuthError};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Pulls only.
    ReadOnly,
    /// Pulls and pushes.
    ReadWrite,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::ReadOnly => "read-only",
            Scope::ReadWrite => "read-write",
        })
    }
}

/// One stored token (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Its name.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// What it allows.
    pub scope: Scope,
    /// Unix seconds after which it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// The modules it covers; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenRecord>,
}

/// The token file.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    records: Vec<TokenRecord>,
}

/// A fresh secret: `arsync_` and 64 lowercase hex digits of OS randomness.
pub fn generate_secret() -> Result<String, AuthError> {
    let b: [u8; 32] = random_bytes()?;
    Ok(format!("arsync_{}", hex(&b)))
}

/// Hex SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether two secrets are equal, looking at every byte whatever the first difference (the
/// time taken does not tell how much of a guess was right).
pub fn same_secret(a: &str, b: &str) -> bool {
    same(a.as_bytes(), b.as_bytes())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_text(secs: u64) -> String {
    let (y, m, d, hour, min, sec) = arsync_core::cachedir::utc_date(secs);
    format!("{y:04}-{m:02}-{d:02}T{hour:02}:{min:02}:{sec:02}Z")
}

impl TokenStore {
    /// Read the token file; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<TokenStore, AuthError> {
        let records = match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str::<TokenFile>(&text)
                    .map_err(|e| AuthError::Unparsable {
                        path: path.to_path_buf(),
                        format: "a TOML token file",
                        source: e.into(),
                    })?
                    .token
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(path)(e)),
        };
        Ok(TokenStore {
            path: path.to_path_buf(),
            records,
        })
    }

    /// Write the file (mode 0600, through a rename).
    pub fn save(&self) -> Result<(), AuthError> {
        let text = toml::to_string(&TokenFile {
            token: self.records.clone(),
        })
        .map_err(|e| AuthError::Encode {
            path: self.path.clone(),
            source: e.into(),
        })?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        write_atomically(&self.path, text.as_bytes(), 0o600)
    }

    /// Add a token; the secret is returned once and not kept.
    pub fn add(
        &mut self,
        name: &str,
        scope: Scope,
        expires: Option<u64>,
        modules: Vec<String>,
    ) -> Result<String, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::TokenAdmin(format!(
                "token name {name:?}: 1 to 64 of A-Z a-z 0-9 . _ -"
            )));
        }
        if self.records.iter().any(|r| r.name == name) {
            return Err(AuthError::TokenAdmin(format!(
                "a token named {name:?} exists already"
            )));
        }
        let secret = generate_secret()?;
        self.records.push(TokenRecord {
            name: name.to_owned(),
            hash: secret_hash(&secret),
            scope,
            expires,
            modules,
        });
        Ok(secret)
    }

    /// Remove a token.
    pub fn revoke(&mut self, name: &str) -> Result<(), AuthError> {
        let before = self.records.len();
        self.records.retain(|r| r.name != name);
        if self.records.len() == before {
            return Err(AuthError::TokenAdmin(format!("no token named {name:?}")));
        }
        Ok(())
    }

    /// The stored tokens.
    pub fn records(&self) -> &[TokenRecord] {
        &self.records
    }

    /// The record of `secret`, if it is known, unexpired at `now_unix` and covers `module`.
    pub fn verify(
        &self,
        secret: &str,
        module: &str,
        now_unix: u64,
    ) -> Result<&TokenRecord, AuthError> {
        let hash = secret_hash(secret);
        // Look at every record, so the time taken does not tell which one matched.
        let mut found = None;
        for r in &self.records {
            if same(r.hash.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(r);
            }
        }
        let r = found.ok_or(AuthError::TokenUnknown)?;
        if let Some(t) = r.expires {
            if now_unix >= t {
                return Err(AuthError::TokenExpired {
                    name: r.name.clone(),
                    expired_at: utc_text(t),
                });
            }
        }
        if !r.modules.is_empty() && !r.modules.iter().any(|m| m == module) {
            return Err(AuthError::TokenNotForModule {
                name: r.name.clone(),
                module: module.to_owned(),
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn add_verify_expire_scope_revoke_and_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("tokens.toml");
        let mut s = TokenStore::load(&path).unwrap();
        assert!(s.records().is_empty());
        let a = s.add("ci", Scope::ReadWrite, None, vec![]).unwrap();
        let b = s
            .add("old", Scope::ReadOnly, Some(1_000), vec!["data".into()])
            .unwrap();
        let c = s
            .add("photos", Scope::ReadOnly, None, vec!["photos".into()])
            .unwrap();
        assert!(a.starts_with("arsync_") && a.len() == 71 && a != b);
        assert!(s.add("ci", Scope::ReadOnly, None, vec![]).is_err());
        assert!(s.add("bad name", Scope::ReadOnly, None, vec![]).is_err());
        s.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a[7..]), "secrets are not stored");
        let s = TokenStore::load(&path).unwrap();
        assert_eq!(s.verify(&a, "any", 5).unwrap().name, "ci");
        assert!(matches!(
            s.verify(&b, "data", 1_000),
            Err(AuthError::TokenExpired { .. })
        ));
        assert_eq!(s.verify(&b, "data", 999).unwrap().scope, Scope::ReadOnly);
        assert!(matches!(
            s.verify(&c, "data", 0),
            Err(AuthError::TokenNotForModule { .. })
        ));
        assert!(matches!(
            s.verify("arsync_nope", "data", 0),
            Err(AuthError::TokenUnknown)
        ));
        let mut s = s;
        s.revoke("ci").unwrap();
        assert!(s.revoke("ci").is_err());
        assert!(matches!(s.verify(&a, "x", 0), Err(AuthError::TokenUnknown)));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }

    #[test]
    fn expiry_text_is_utc() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_broken_file_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("tokens.toml");
        std::fs::write(&path, "[[token]]\nname = 3\n").unwrap();
        assert!(matches!(
            TokenStore::load(&path),
            Err(AuthError::Unparsable { .. })
        ));
        // A misspelt key must not silently widen a token (here: to every module).
        std::fs::write(
            &path,
            "[[token]]\nname = \"a\"\nhash = \"00\"\nscope = \"read-only\"\nmodule = [\"x\"]\n",
        )
        .unwrap();
        assert!(matches!(
            TokenStore::load(&path),
            Err(AuthError::Unparsable { .. })
        ));
    }
}
