//! [`NativeLogin`]: a login to one host, resolved from the `-e`/`--rsh` string, the endpoint and
//! the configuration files the way `ssh` would resolve it, and the state its clones and jump
//! hosts share (the environment, the passphrase prompt, the keys decrypted so far).
//!
//! What it owns: reading the configuration (user file, then system file) for a login, the
//! endpoint's user and port overriding it as `-l` and `-p` do, and refusing a remote shell that
//! is not `ssh`. What it does not own: the configuration grammar ([`crate::ssh_config`]), the
//! `ProxyJump` chain (`hop`), connecting (`session`) and running a command (`channel`, where
//! [`NativeLogin::exec`] lives).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arsync_core::transport::{Endpoint, TransportError};
use russh::keys::PrivateKey;

use super::env::LoginEnv;
use super::hop::{build_hop, hop_target, Hop};
use super::{connect_error, lock};
use crate::ssh::split_words;
use crate::ssh_config::{config_path, system_config_path, LocalContext, RshOptions, SshConfig};

/// Asks for the passphrase of the encrypted key at the given path; `None` when it cannot be
/// asked (or the user gave none). Replaces the terminal prompt (see
/// [`NativeLogin::with_passphrase_prompt`]).
pub type PassphrasePrompt = Arc<dyn Fn(&Path) -> Option<String> + Send + Sync>;

/// A resolved login to one host (configuration and `-e` options applied), shareable: every
/// [`exec`](NativeLogin::exec) opens a new TCP connection (its own congestion control) and
/// authenticates it; after the first success it remembers which identity worked (an agent key
/// or the decrypted key held in memory), so later connections never prompt again. Cloning is
/// cheap (an `Arc` inside); clones share what was learned.
#[derive(Clone)]
pub struct NativeLogin {
    pub(super) hop: Arc<Hop>,
    pub(super) shared: Arc<Shared>,
    // Issue 16, native login:
    /// The `-e` line's flags not acted on (`-C`, `-S path`, …).
    flags_ignored: Arc<[String]>,
}

impl fmt::Debug for NativeLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeLogin")
            .field("user", &self.hop.user)
            .field("target", &self.target())
            .field("via", &self.hop.via)
            .finish_non_exhaustive()
    }
}

/// State shared by the target and its jump hosts.
pub(super) struct Shared {
    pub(super) env: LoginEnv,
    pub(super) prompt: Mutex<Option<PassphrasePrompt>>,
    /// Keys decrypted so far, by file, so that no passphrase is asked twice.
    pub(super) decrypted: Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
}

impl NativeLogin {
    /// The login `rsh` (the `-e`/`--rsh` string, e.g. `ssh -p 2222 -i key -o
    /// UserKnownHostsFile=/x`) describes for `endpoint`'s host, in this process's environment
    /// ([`LoginEnv::from_process`]). `endpoint.user` and `endpoint.port`, when given, override
    /// the configuration as `-l` and `-p` do. Reads the configuration files; connects nowhere.
    pub fn new(rsh: &str, endpoint: &Endpoint) -> Result<NativeLogin, TransportError> {
        NativeLogin::with_env(rsh, endpoint, LoginEnv::from_process())
    }

    /// [`NativeLogin::new`] in the given environment (home directory, user, agent socket).
    pub fn with_env(
        rsh: &str,
        endpoint: &Endpoint,
        env: LoginEnv,
    ) -> Result<NativeLogin, TransportError> {
        let mut cli = parse_rsh(rsh)?;
        if let Some(user) = &endpoint.user {
            cli.user = Some(user.clone());
        }
        if let Some(port) = endpoint.port {
            cli.port = Some(port);
        }
        let mut config = match config_path(&cli, &env.home) {
            Some(path) => SshConfig::load(&path, &env.home),
            None => Ok(SshConfig::default()),
        }
        .map_err(|e| TransportError::setup("the ssh configuration", e))?;
        if let Some(path) = system_config_path(&cli) {
            let system = SshConfig::load_system(&path)
                .map_err(|e| TransportError::setup("the system's ssh configuration", e))?;
            config.append(system);
        }
        let local = LocalContext {
            home: env.home.clone(),
            user: env.user.clone(),
            hostname: env.hostname.clone(),
        };
        let host = endpoint
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&endpoint.host);
        if host.is_empty() {
            return Err(connect_error(rsh, "no host name"));
        }
        let settings = config.resolve(host, &cli, &local);
        let hop = build_hop(settings, &config, &cli, &local, 0)?;
        Ok(NativeLogin {
            flags_ignored: cli.ignored.clone().into(),
            hop: Arc::new(hop),
            shared: Arc::new(Shared {
                env,
                prompt: Mutex::new(None),
                decrypted: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Builder: ask passphrases of encrypted keys with `prompt` instead of on the terminal
    /// (for this login, its clones and its jump hosts). `BatchMode` still forbids asking.
    pub fn with_passphrase_prompt(self, prompt: PassphrasePrompt) -> NativeLogin {
        *lock(&self.shared.prompt) = Some(prompt);
        self
    }

    /// `host:port` actually connected to (after `HostName` / `Port`), for messages.
    pub fn target(&self) -> String {
        hop_target(&self.hop.settings)
    }

    /// The login name used on the target.
    pub fn user(&self) -> &str {
        &self.hop.user
    }

    /// What the configuration said that this backend does not act on (for `--explain`).
    pub fn ignored(&self) -> &[String] {
        &self.hop.settings.ignored
    }

    /// Issue 16, native login: the first thing asked of this login that this client would
    /// not do as `ssh` does (see [`super::fit::unfollowed`]), `None` when it follows it all.
    pub fn unfollowed(&self) -> Option<String> {
        super::fit::unfollowed(&self.hop.settings.ignored, &self.flags_ignored)
    }
}

pub(super) fn parse_rsh(rsh: &str) -> Result<RshOptions, TransportError> {
    let words = split_words(rsh)
        .ok_or_else(|| connect_error(rsh, "unbalanced quotes in the remote shell command"))?;
    let cli = RshOptions::parse(&words)
        .map_err(|e| TransportError::setup(format!("the remote shell options {rsh:?}"), e))?;
    if !cli.program_is_ssh() {
        return Err(TransportError::Unsupported {
            transport: "ssh".into(),
            what: "a remote shell other than ssh in the built-in SSH client",
        });
    }
    Ok(cli)
}
