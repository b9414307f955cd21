//! # arsync-auth
//!
//! Who may talk to whom, for arsync's network transports:
//!
//! - [`tls`] — TLS identities (generated with rcgen, stored with safe permissions), their
//!   SHA-256 fingerprints, and the rustls configurations for servers (optionally requiring
//!   client certificates from a CA) and clients (trusting a pinned fingerprint or a CA).
//! - [`pins`] — the known-servers file: a client pins a server's certificate on first use and
//!   refuses a different one later, as OpenSSH does with `known_hosts`.
//! - [`token`] — bearer tokens: 256-bit random secrets of which a server stores only the
//!   hashes, with names, scopes, expiry and modules.
//! - [`oidc`] — issue 19: bearer JWTs from an OpenID Connect issuer (discovery, key set cached
//!   and refetched on rotation, RS256/ES256 signatures, `iss`/`aud`/`exp`/`nbf`), mapped to
//!   modules and a scope as a token's are.
//! - [`device`] — issue 19: `arsync login`: the OAuth2 device authorization grant, the stored
//!   login per issuer (0600) and its silent refresh.
//! - [`http`] — the small blocking HTTP/1.1 client those two need (bounded, with a timeout).
//!
//! Non-goals: SSH authentication (the SSH clients in `arsync-transports` do that); deciding
//! what a session may do beyond a token's scope (the daemon checks modules and paths).

pub mod device;
pub mod http;
pub mod oidc;
pub mod pins;
pub mod tls;
pub mod token;

use std::path::PathBuf;

/// A lower layer's error (rcgen, rustls, a PEM or TOML parser) kept as an [`AuthError`]'s typed
/// source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The auth boundary's error, `#[non_exhaustive]`: a file that cannot be used (`Io`,
/// `BadFile`, `Unparsable`, `KeyPermissions`), the caller's input (`BadFingerprint`,
/// `TokenAdmin`), a presented credential that is refused (`TokenUnknown`, `TokenExpired`,
/// `TokenNotForModule`, `Jwt`), an OIDC issuer's failure (`Fetch`, `BadDocument`, `OAuth`,
/// `NotLoggedIn`), or the machinery below (`Tls`, `Encode`, `Random`). A lower layer's
/// error is kept as the typed [`source`](std::error::Error::source), not flattened to text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file's contents are not what they should be, in our words.
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (with a line number where there is one).
        message: String,
    },
    /// A file's parser refused it.
    #[error("{}: not valid {format}: {source}", path.display())]
    Unparsable {
        /// The file.
        path: PathBuf,
        /// What it should have been ("PEM certificates", "TOML", …).
        format: &'static str,
        /// The parser's error.
        source: BoxError,
    },
    /// A private key others can read.
    #[error(
        "UNPROTECTED PRIVATE KEY FILE {}: mode {mode:04o} lets others read it; chmod 600 it",
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Certificate or TLS setup failed.
    #[error("TLS: {context}: {source}")]
    Tls {
        /// What was being done ("generating a key pair", "building the server configuration", …).
        context: &'static str,
        /// The TLS or certificate library's error.
        source: BoxError,
    },
    /// Text given as a certificate fingerprint is not one.
    #[error("{text:?} is not a SHA256 fingerprint")]
    BadFingerprint {
        /// The text.
        text: String,
    },
    /// The presented token matches none.
    #[error("token not recognised")]
    TokenUnknown,
    /// The token is past its expiry.
    #[error("token {name} expired at {expired_at}")]
    TokenExpired {
        /// Its name.
        name: String,
        /// When, as UTC text.
        expired_at: String,
    },
    /// The token does not cover this module.
    #[error("token {name} is not valid for module {module:?}")]
    TokenNotForModule {
        /// Its name.
        name: String,
        /// The module asked for.
        module: String,
    },
    /// Managing tokens: a bad name, a duplicate, a missing one.
    #[error("{0}")]
    TokenAdmin(String),
    /// A file's new contents could not be written out as text.
    #[error("{}: cannot encode: {source}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        source: BoxError,
    },
    /// Issue 19: an HTTP exchange with an OIDC issuer failed (connection, timeout, a response
    /// too large or malformed, a refused URL).
    #[error("{url}: {reason}")]
    Fetch {
        /// What was asked for.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Issue 19: an issuer's document (discovery, key set, token response) is not what it
    /// must be.
    #[error("{url}: {reason}")]
    BadDocument {
        /// Where it came from.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Issue 19: a presented JWT is refused.
    #[error("OIDC token refused: {0}")]
    Jwt(#[from] oidc::JwtRefusal),
    /// Issue 19: the authorization server answered an OAuth2 request with an error.
    #[error("{endpoint}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    OAuth {
        /// Which request ("device authorization", "token", "refresh").
        endpoint: &'static str,
        /// The OAuth2 error code (`access_denied`, `expired_token`, `invalid_grant`, …).
        error: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// Issue 19: no stored login for an issuer (run `arsync login ISSUER`).
    #[error("no login for {issuer} in {}: run `arsync login {issuer}`", path.display())]
    NotLoggedIn {
        /// The issuer.
        issuer: String,
        /// Where the login would be.
        path: PathBuf,
    },
    /// The system's random source failed (the crypto provider says no more than that).
    #[error("no randomness: the system's random source failed")]
    Random,
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// arsync's configuration directory: `$XDG_CONFIG_HOME/arsync`, else `~/.config/arsync`.
pub fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("arsync"))
}

/// Create `dir` (and its parents) with mode 0700 if it does not exist.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> Result<(), AuthError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// `n` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut b = [0u8; N];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| AuthError::Random)?;
    Ok(b)
}

/// Write `data` to `path` through a temporary file in the same directory created with `mode`,
/// then rename it into place (never a moment with a partial or more readable file).
pub(crate) fn write_atomically(
    path: &std::path::Path,
    data: &[u8],
    mode: u32,
) -> Result<(), AuthError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}
