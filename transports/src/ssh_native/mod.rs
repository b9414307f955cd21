//! `ssh` on a built-in SSH client (russh) instead of the system `ssh` binary.
//!
//! What it owns: turning the `-e`/`--rsh` string and an [`Endpoint`] into a login the way
//! OpenSSH would (through [`crate::ssh_config`]: `-p -l -i -F -o -J`, `~/.ssh/config`,
//! `/etc/ssh/ssh_config`), and carrying it out natively —
//!
//! * the TCP connection (`TCP_NODELAY`, `ConnectTimeout`), or a `ProxyCommand` child's stdio, or
//!   a `direct-tcpip` channel through one or more `ProxyJump` hosts (each resolved from the same
//!   configuration and authenticated like the target);
//! * the server's host key against `known_hosts` (user then global files; plain, `[host]:port`,
//!   wildcard, negated and hashed `|1|salt|hash` entries, `@revoked`), with
//!   `StrictHostKeyChecking` `yes` / `accept-new` / `no` / `ask` (a yes/no question on the
//!   terminal); a changed key is always refused;
//! * public-key authentication: ssh-agent keys first (only those of the identity files when
//!   `IdentitiesOnly` is set), then `-i` / `IdentityFile` keys (default `~/.ssh/id_ed25519`,
//!   `id_ecdsa`, `id_rsa`); an encrypted key is decrypted only once the server has accepted its
//!   public key, with the passphrase asked on `/dev/tty` (never with `BatchMode`);
//! * one `exec` channel per connection, as a one-stream [`Connection`] ([`NativeConnection`]):
//!   the channel's data is the stream, the remote's stderr goes to ours, and the exit status
//!   comes back from [`Connection::close`].
//!
//! A [`NativeLogin`] opens a new TCP connection per [`NativeLogin::exec`] (each with its own
//! congestion control) and remembers which identity worked, so that later connections neither
//! search nor prompt again.
//!
//! What it does not own: choosing between this backend and the system `ssh` (the caller does;
//! [`NativeLogin::new`] refuses a remote shell that is not `ssh` with
//! [`TransportError::Unsupported`]), the configuration grammar (that is [`crate::ssh_config`]),
//! password / keyboard-interactive / GSSAPI / host-based authentication, certificates (user or
//! host), agent forwarding, `HashKnownHosts` (learned keys are written in plain form),
//! `CheckHostIP`, `HostKeyAlias` and `ControlMaster`.
//!
//! Where the parts are: `login` (the [`NativeLogin`] and the `-e` string it is resolved from),
//! `hop` (one host to log in to and the `ProxyJump` chain in front of it), `session` (opening
//! one authenticated SSH connection: TCP, `ProxyCommand` or a jump host's channel, the russh
//! client configuration and callbacks, the bound on the handshake), `proxy` (a running
//! `ProxyCommand`, stopped with everything it started), `known_hosts` (checking and learning the server's host
//! key), `auth` (public-key authentication: agent, key files, passphrases), `channel` (the
//! `exec` channel as a [`NativeConnection`]), `transport` (the [`NativeSsh`]
//! [`TransportFactory`](arsync_core::transport::TransportFactory)) and `env` (the local
//! environment, [`LoginEnv`], and the terminal).
//!
//! [`Endpoint`]: arsync_core::transport::Endpoint
//! [`Connection`]: arsync_core::transport::Connection
//! [`Connection::close`]: arsync_core::transport::Connection::close

use std::sync::Mutex;

use arsync_core::transport::TransportError;

mod auth;
mod channel;
mod env;
pub mod fit;
mod hop;
mod known_hosts;
mod login;
mod proxy;
mod session;
mod transport;

pub use channel::NativeConnection;
pub use env::LoginEnv;
pub use login::{NativeLogin, PassphrasePrompt};
pub use session::SSH_HANDSHAKE;
pub(crate) use transport::exec_endpoint;
pub use transport::NativeSsh;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connect_error(endpoint: impl Into<String>, reason: impl Into<String>) -> TransportError {
    TransportError::Connect {
        endpoint: endpoint.into(),
        reason: reason.into(),
    }
}
