//! Public-key authentication of one connection, as `ssh` does it: what worked before first
//! (no search, no prompt), then ssh-agent keys (only those of the identity files with
//! `IdentitiesOnly`), then `-i` / `IdentityFile` keys (default `~/.ssh/id_ed25519`,
//! `id_ecdsa`, `id_rsa`). An encrypted key is decrypted only once the server has accepted its
//! public key, with the passphrase from the login's prompt hook or `/dev/tty` (never with
//! `BatchMode`), and is kept for the whole login.
//!
//! What it owns: [`authenticate`], reading key files (OpenSSH and legacy PEM), decrypting and
//! signing, remembering the identity that worked on the [`Hop`], and the "Permission denied"
//! message with why each key could not be used. What it does not own: which files and options
//! apply ([`crate::ssh_config`]), the connection it runs on (`session`); password,
//! keyboard-interactive, GSSAPI, host-based authentication and certificates are not done at
//! all.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arsync_core::transport::TransportError;
use russh::client::{AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_encoding::Encode as _;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::env::tty_prompt;
use super::hop::{Hop, Remembered};
use super::known_hosts::fingerprint;
use super::lock;
use super::login::Shared;
use super::session::ClientHandler;

/// `NumberOfPasswordPrompts`'s default: tries at one key's passphrase.
const PASSPHRASE_TRIES: usize = 3;

/// Why a signature could not be made by [`FileSigner`].
#[derive(Debug, thiserror::Error)]
enum SignError {
    #[error("sending to the SSH session failed")]
    Send(#[from] russh::SendError),
    #[error("{0}")]
    Key(String),
}

/// Signs with a key file's private key, decrypting it (asking for the passphrase) only when the
/// server has accepted its public key and asks for the signature.
struct FileSigner {
    path: PathBuf,
    encrypted: Box<PrivateKey>,
    shared: Arc<Shared>,
    batch: bool,
    home: PathBuf,
    decrypted: Option<Arc<PrivateKey>>,
}

impl russh::Signer for FileSigner {
    type Error = SignError;

    async fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        {
            let key = match &self.decrypted {
                Some(k) => k.clone(),
                None => {
                    let (shared, path, enc, batch, home) = (
                        self.shared.clone(),
                        self.path.clone(),
                        self.encrypted.clone(),
                        self.batch,
                        self.home.clone(),
                    );
                    let key = tokio::task::spawn_blocking(move || {
                        decrypt_key(&shared, &path, &home, batch, |pass| {
                            enc.decrypt(pass).map_err(|e| e.to_string())
                        })
                    })
                    .await
                    .map_err(|e| SignError::Key(e.to_string()))?
                    .map_err(SignError::Key)?;
                    let key = Arc::new(key);
                    self.decrypted = Some(key.clone());
                    key
                }
            };
            let mut data = to_sign;
            let sig = sign(&key, hash_alg, &data).map_err(SignError::Key)?;
            sig.encode(&mut data)
                .map_err(|e| SignError::Key(e.to_string()))?;
            Ok(data)
        }
    }
}

/// The SSH signature blob of `data` by `key`.
fn sign(key: &PrivateKey, hash_alg: Option<HashAlg>, data: &[u8]) -> Result<Vec<u8>, String> {
    use russh::keys::signature::Signer as _;
    use russh::keys::ssh_key::private::KeypairData;
    let signature = match key.key_data() {
        KeypairData::Rsa(rsa) => (rsa, hash_alg).try_sign(data),
        other => other.try_sign(data),
    }
    .map_err(|e| e.to_string())?;
    let mut blob = Vec::new();
    signature.encode(&mut blob).map_err(|e| e.to_string())?;
    Ok(blob)
}

/// `~/x` for paths under the home directory, for messages.
fn tilde(path: &Path, home: &Path) -> String {
    match path.strip_prefix(home) {
        Ok(rest) if home != Path::new("/") => format!("~/{}", rest.display()),
        _ => path.display().to_string(),
    }
}

/// Ask for `path`'s passphrase (the hook, else the terminal) and decrypt with `try_decrypt`,
/// up to [`PASSPHRASE_TRIES`] times; the decrypted key is cached for the whole login.
fn decrypt_key(
    shared: &Shared,
    path: &Path,
    home: &Path,
    batch: bool,
    try_decrypt: impl Fn(&str) -> Result<PrivateKey, String>,
) -> Result<PrivateKey, String> {
    if let Some(k) = lock(&shared.decrypted).get(path) {
        return Ok((**k).clone());
    }
    let shown = tilde(path, home);
    let no_terminal = || {
        format!(
            "key {shown} is encrypted and there is no terminal to ask for its passphrase; \
             add it to ssh-agent (ssh-add {shown})"
        )
    };
    if batch {
        return Err(format!(
            "key {shown} is encrypted and BatchMode forbids asking for its passphrase; add it \
             to ssh-agent (ssh-add {shown})"
        ));
    }
    let hook = lock(&shared.prompt).clone();
    let mut last_error = String::new();
    for attempt in 0..PASSPHRASE_TRIES {
        let passphrase = match &hook {
            Some(hook) => match hook(path) {
                Some(p) => p,
                None => {
                    return Err(format!(
                        "key {shown} is encrypted and no passphrase was given for it"
                    ))
                }
            },
            None => {
                let prompt = if attempt == 0 {
                    format!("Enter passphrase for key '{}': ", path.display())
                } else {
                    format!("Bad passphrase, try again for {}: ", path.display())
                };
                match tty_prompt(&prompt, false) {
                    Some(p) => p,
                    None if attempt == 0 => return Err(no_terminal()),
                    None => break,
                }
            }
        };
        if passphrase.is_empty() && hook.is_none() {
            // As ssh: an empty answer skips the key.
            return Err(format!("key {shown}: no passphrase given, key skipped"));
        }
        match try_decrypt(&passphrase) {
            Ok(key) => {
                lock(&shared.decrypted).insert(path.to_owned(), Arc::new(key.clone()));
                return Ok(key);
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!(
        "key {shown}: wrong passphrase ({PASSPHRASE_TRIES} tries){}",
        if last_error.is_empty() {
            String::new()
        } else {
            format!(": {last_error}")
        }
    ))
}

/// A key file as found on disk.
enum KeyFile {
    Plain(Arc<PrivateKey>),
    /// OpenSSH format, encrypted: the public key is readable, the private part needs the
    /// passphrase.
    Encrypted(Box<PrivateKey>),
    /// An encrypted key in a legacy (PEM) format: nothing is readable without the passphrase.
    LegacyEncrypted(String),
}

fn load_key_file(path: &Path) -> Result<KeyFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if let Ok(key) = PrivateKey::from_openssh(text.as_bytes()) {
        return Ok(if key.is_encrypted() {
            KeyFile::Encrypted(Box::new(key))
        } else {
            KeyFile::Plain(Arc::new(key))
        });
    }
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => Ok(KeyFile::Plain(Arc::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => Ok(KeyFile::LegacyEncrypted(text)),
        Err(e) => Err(format!("cannot read the key: {e}")),
    }
}

/// The public half of an identity file: from the key itself, else from `FILE.pub`.
fn identity_public_key(path: &Path) -> Option<PublicKey> {
    match load_key_file(path) {
        Ok(KeyFile::Plain(k)) => Some(k.public_key().clone()),
        Ok(KeyFile::Encrypted(k)) => Some(k.public_key().clone()),
        _ => {
            let mut pubpath = path.as_os_str().to_owned();
            pubpath.push(".pub");
            russh::keys::load_public_key(PathBuf::from(pubpath)).ok()
        }
    }
}

/// How one authentication attempt went.
enum Attempt {
    Success,
    Failure,
}

struct AuthRun<'a> {
    hop: &'a Hop,
    shared: &'a Arc<Shared>,
    /// Why keys could not be used, for the final message.
    notes: Vec<String>,
    /// The methods the server said can go on, from its last refusal.
    methods: Vec<&'static str>,
    rsa_hash: Option<Option<HashAlg>>,
}

impl AuthRun<'_> {
    async fn rsa_hash(
        &mut self,
        handle: &Handle<ClientHandler>,
        key: &PublicKey,
    ) -> Option<HashAlg> {
        if !key.algorithm().is_rsa() {
            return None;
        }
        if let Some(h) = self.rsa_hash {
            return h;
        }
        let h = match handle.best_supported_rsa_hash().await {
            Ok(Some(h)) => h,
            _ => Some(HashAlg::Sha512),
        };
        self.rsa_hash = Some(h);
        h
    }

    fn outcome(&mut self, r: AuthResult) -> Attempt {
        match r {
            AuthResult::Success => Attempt::Success,
            AuthResult::Failure {
                remaining_methods, ..
            } => {
                self.methods = remaining_methods.iter().map(<&str>::from).collect();
                Attempt::Failure
            }
        }
    }

    fn can_go_on(&self, handle: &Handle<ClientHandler>) -> bool {
        !handle.is_closed() && (self.methods.is_empty() || self.methods.contains(&"publickey"))
    }

    async fn try_agent_key(
        &mut self,
        handle: &mut Handle<ClientHandler>,
        agent: &mut AgentClient<tokio::net::UnixStream>,
        key: &PublicKey,
    ) -> Attempt {
        let hash = self.rsa_hash(handle, key).await;
        match handle
            .authenticate_publickey_with(self.hop.user.as_str(), key.clone(), hash, agent)
            .await
        {
            Ok(r) => self.outcome(r),
            Err(e) => {
                self.notes.push(format!(
                    "ssh-agent could not sign with {}: {e}",
                    fingerprint(key)
                ));
                Attempt::Failure
            }
        }
    }

    async fn try_key(
        &mut self,
        handle: &mut Handle<ClientHandler>,
        key: Arc<PrivateKey>,
    ) -> Attempt {
        let hash = self.rsa_hash(handle, key.public_key()).await;
        match handle
            .authenticate_publickey(
                self.hop.user.as_str(),
                PrivateKeyWithHashAlg::new(key, hash),
            )
            .await
        {
            Ok(r) => self.outcome(r),
            Err(e) => {
                self.notes.push(format!("signing failed: {e}"));
                Attempt::Failure
            }
        }
    }

    fn connect_agent_error(&mut self, sock: &Path, e: impl fmt::Display) {
        self.notes
            .push(format!("cannot use ssh-agent at {}: {e}", sock.display()));
    }

    async fn agent(&mut self) -> Option<AgentClient<tokio::net::UnixStream>> {
        let sock = self.shared.env.auth_sock.clone()?;
        match AgentClient::connect_uds(&sock).await {
            Ok(a) => Some(a),
            Err(e) => {
                self.connect_agent_error(&sock, e);
                None
            }
        }
    }
}

pub(super) async fn authenticate(
    hop: &Hop,
    shared: &Arc<Shared>,
    handle: &mut Handle<ClientHandler>,
) -> Result<(), TransportError> {
    let mut run = AuthRun {
        hop,
        shared,
        notes: Vec::new(),
        methods: Vec::new(),
        rsa_hash: None,
    };
    // What worked before: no search, no prompt.
    let remembered = lock(&hop.remembered).clone();
    if let Some(r) = &remembered {
        if let Attempt::Success = try_remembered(&mut run, handle, r).await {
            return Ok(());
        }
    }
    let _search = hop.search.lock().await;
    // Another connection may have found one while this one waited.
    let now = lock(&hop.remembered).clone();
    if let Some(r) = &now {
        let same = match (&remembered, r) {
            (Some(Remembered::Agent(a)), Remembered::Agent(b)) => a.key_data() == b.key_data(),
            (Some(Remembered::Key(a)), Remembered::Key(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same {
            if let Attempt::Success = try_remembered(&mut run, handle, r).await {
                return Ok(());
            }
        }
    }

    let home = shared.env.home.clone();
    let explicit = !hop.settings.identity_files.is_empty();
    let files: Vec<PathBuf> = if explicit {
        hop.settings.identity_files.clone()
    } else {
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| home.join(".ssh").join(n))
            .collect()
    };
    let file_keys: Vec<(PathBuf, Option<PublicKey>)> = files
        .iter()
        .map(|f| (f.clone(), identity_public_key(f)))
        .collect();
    let mut offered: Vec<PublicKey> = Vec::new();

    // 1. The agent's keys (only those of the identity files with IdentitiesOnly).
    if let Some(mut agent) = run.agent().await {
        match agent.request_identities().await {
            Ok(ids) => {
                for id in ids {
                    let AgentIdentity::PublicKey { key, .. } = id else {
                        continue;
                    };
                    if hop.settings.identities_only
                        && !file_keys.iter().any(|(_, k)| {
                            k.as_ref().is_some_and(|k| k.key_data() == key.key_data())
                        })
                    {
                        continue;
                    }
                    if !run.can_go_on(handle) {
                        break;
                    }
                    offered.push(key.clone());
                    if let Attempt::Success = run.try_agent_key(handle, &mut agent, &key).await {
                        *lock(&hop.remembered) = Some(Remembered::Agent(key));
                        return Ok(());
                    }
                }
            }
            Err(e) => {
                if let Some(sock) = shared.env.auth_sock.clone() {
                    run.connect_agent_error(&sock, e);
                }
            }
        }
    }

    // 2. The identity files.
    for (path, public) in &file_keys {
        if !run.can_go_on(handle) {
            break;
        }
        if let Some(p) = public {
            if offered.iter().any(|o| o.key_data() == p.key_data()) {
                continue;
            }
        }
        let shown = tilde(path, &home);
        let loaded = match load_key_file(path) {
            Ok(k) => k,
            Err(e) => {
                if explicit || path.exists() {
                    run.notes.push(format!("identity file {shown}: {e}"));
                }
                continue;
            }
        };
        let cached = lock(&shared.decrypted).get(path).cloned();
        let attempt = match (loaded, cached) {
            (KeyFile::Plain(key), _) | (_, Some(key)) => {
                let a = run.try_key(handle, key.clone()).await;
                if let Attempt::Success = a {
                    *lock(&hop.remembered) = Some(Remembered::Key(key));
                }
                a
            }
            (KeyFile::Encrypted(enc), None) => {
                let public = enc.public_key().clone();
                let hash = run.rsa_hash(handle, &public).await;
                let mut signer = FileSigner {
                    path: path.clone(),
                    encrypted: enc,
                    shared: shared.clone(),
                    batch: hop.settings.batch_mode,
                    home: home.clone(),
                    decrypted: None,
                };
                let r = handle
                    .authenticate_publickey_with(hop.user.as_str(), public, hash, &mut signer)
                    .await;
                match r {
                    Ok(r) => {
                        let a = run.outcome(r);
                        if let (Attempt::Success, Some(key)) = (&a, signer.decrypted) {
                            *lock(&hop.remembered) = Some(Remembered::Key(key));
                        }
                        a
                    }
                    Err(e) => {
                        run.notes.push(e.to_string());
                        Attempt::Failure
                    }
                }
            }
            (KeyFile::LegacyEncrypted(text), None) => {
                let (sh, p, h, batch) = (
                    shared.clone(),
                    path.clone(),
                    home.clone(),
                    hop.settings.batch_mode,
                );
                let decrypted = tokio::task::spawn_blocking(move || {
                    decrypt_key(&sh, &p, &h, batch, |pass| {
                        russh::keys::decode_secret_key(&text, Some(pass)).map_err(|e| e.to_string())
                    })
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match decrypted {
                    Ok(key) => {
                        let key = Arc::new(key);
                        let a = run.try_key(handle, key.clone()).await;
                        if let Attempt::Success = a {
                            *lock(&hop.remembered) = Some(Remembered::Key(key));
                        }
                        a
                    }
                    Err(e) => {
                        run.notes.push(e);
                        Attempt::Failure
                    }
                }
            }
        };
        if let Attempt::Success = attempt {
            return Ok(());
        }
    }

    let methods = if run.methods.is_empty() {
        "publickey".to_owned()
    } else {
        run.methods.join(",")
    };
    let mut message = format!(
        "{}@{}: Permission denied ({methods}).",
        hop.user, hop.settings.hostname
    );
    if offered.is_empty() && file_keys.iter().all(|(p, _)| !p.exists()) && run.notes.is_empty() {
        let tried: Vec<String> = files.iter().map(|f| tilde(f, &home)).collect();
        message.push_str(&format!(
            " No identity to offer: no ssh-agent key{}, and none of {} exists.",
            if shared.env.auth_sock.is_some() {
                " fit"
            } else {
                ""
            },
            tried.join(", ")
        ));
    }
    for note in &run.notes {
        message.push(' ');
        message.push_str(note);
        if !note.ends_with('.') {
            message.push('.');
        }
    }
    if handle.is_closed() {
        message.push_str(" (the server closed the connection: too many authentication failures?)");
    }
    Err(TransportError::Auth(message))
}

async fn try_remembered(
    run: &mut AuthRun<'_>,
    handle: &mut Handle<ClientHandler>,
    r: &Remembered,
) -> Attempt {
    match r {
        Remembered::Key(key) => run.try_key(handle, key.clone()).await,
        Remembered::Agent(key) => match run.agent().await {
            Some(mut agent) => run.try_agent_key(handle, &mut agent, key).await,
            None => Attempt::Failure,
        },
    }
}
