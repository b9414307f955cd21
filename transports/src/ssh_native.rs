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

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, StreamPair, TransportError,
    TransportFactory,
};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_encoding::base64::{Base64, Encoding as _};
use russh::keys::ssh_encoding::Encode as _;
use russh::keys::{
    Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{cipher, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};
use sha1::Sha1;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::ssh::{shell_quote, split_words};
use crate::ssh_config::{
    config_path, system_config_path, HostSettings, LocalContext, RshOptions, SshConfig,
    StrictHostKeyChecking,
};

/// Asks for the passphrase of the encrypted key at the given path; `None` when it cannot be
/// asked (or the user gave none). Replaces the terminal prompt (see
/// [`NativeLogin::with_passphrase_prompt`]).
pub type PassphrasePrompt = Arc<dyn Fn(&Path) -> Option<String> + Send + Sync>;

/// Channel window we grant the server: large, so one connection can fill a long fat pipe.
const WINDOW_SIZE: u32 = 32 * 1024 * 1024;
/// Largest channel packet we accept (russh's transport takes up to 256 KiB of payload).
const MAX_PACKET_SIZE: u32 = 256 * 1024;
/// `ServerAliveCountMax`'s default.
const KEEPALIVE_MAX: usize = 3;
/// `NumberOfPasswordPrompts`'s default: tries at one key's passphrase.
const PASSPHRASE_TRIES: usize = 3;
/// How many jump hosts deep a `ProxyJump` chain may go (a loop in the configuration otherwise).
const MAX_JUMPS: usize = 8;
/// How long [`Connection::close`] waits for the server to end the session after the disconnect.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// Data messages buffered between the SSH session and the stream's reader.
const RECV_QUEUE: usize = 64;

// ---------------------------------------------------------------------------------------------
// The local environment
// ---------------------------------------------------------------------------------------------

/// What a login takes from the local environment; [`LoginEnv::from_process`] reads it from this
/// process, tests build their own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginEnv {
    /// The home directory: `~` in paths, `~/.ssh/config`, the default keys and known hosts.
    pub home: PathBuf,
    /// The local user name: the login name when none is configured.
    pub user: String,
    /// The local host name (`%l` in the configuration).
    pub hostname: String,
    /// The ssh-agent socket (`SSH_AUTH_SOCK`), if any.
    pub auth_sock: Option<PathBuf>,
}

impl LoginEnv {
    /// This process's: `$HOME` (else the password database), `$USER`/`$LOGNAME` (else the
    /// password database), the host name, `$SSH_AUTH_SOCK`.
    pub fn from_process() -> LoginEnv {
        let pw = passwd_entry();
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| pw.as_ref().map(|(_, home)| home.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let user = pw
            .map(|(name, _)| name)
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "root".into());
        LoginEnv {
            home,
            user,
            hostname: local_hostname(),
            auth_sock: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }

    /// An environment with the given home directory and user, this machine's host name and no
    /// agent.
    pub fn new(home: impl Into<PathBuf>, user: impl Into<String>) -> LoginEnv {
        LoginEnv {
            home: home.into(),
            user: user.into(),
            hostname: local_hostname(),
            auth_sock: None,
        }
    }

    /// Builder: the ssh-agent socket.
    pub fn with_auth_sock(mut self, sock: Option<PathBuf>) -> LoginEnv {
        self.auth_sock = sock;
        self
    }
}

/// (user name, home directory) of the effective user, from the password database.
fn passwd_entry() -> Option<(String, PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data that getpwuid_r fills in; buf outlives the pointers into it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: both are NUL-terminated strings inside buf.
    let (name, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
    Some((
        name.to_string_lossy().into_owned(),
        PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())),
    ))
}

fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The login
// ---------------------------------------------------------------------------------------------

/// A resolved login to one host (configuration and `-e` options applied), shareable: every
/// [`exec`](NativeLogin::exec) opens a new TCP connection (its own congestion control) and
/// authenticates it; after the first success it remembers which identity worked (an agent key
/// or the decrypted key held in memory), so later connections never prompt again. Cloning is
/// cheap (an `Arc` inside); clones share what was learned.
#[derive(Clone)]
pub struct NativeLogin {
    hop: Arc<Hop>,
    shared: Arc<Shared>,
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
struct Shared {
    env: LoginEnv,
    prompt: Mutex<Option<PassphrasePrompt>>,
    /// Keys decrypted so far, by file, so that no passphrase is asked twice.
    decrypted: Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
}

/// One host to log in to: the target, or a jump host on the way.
struct Hop {
    settings: HostSettings,
    user: String,
    via: Via,
    remembered: Mutex<Option<Remembered>>,
    /// Held while searching for a working identity, so that concurrent first connections do not
    /// each prompt for the same passphrase.
    search: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
enum Via {
    Direct,
    Command(String),
    Jump(Arc<Hop>),
}

impl fmt::Debug for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, hop_target(&self.settings))
    }
}

/// The identity that worked last.
#[derive(Clone)]
enum Remembered {
    Agent(PublicKey),
    Key(Arc<PrivateKey>),
}

fn hop_target(s: &HostSettings) -> String {
    if s.hostname.contains(':') {
        format!("[{}]:{}", s.hostname, s.port)
    } else {
        format!("{}:{}", s.hostname, s.port)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connect_error(endpoint: impl Into<String>, reason: impl Into<String>) -> TransportError {
    TransportError::Connect {
        endpoint: endpoint.into(),
        reason: reason.into(),
    }
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

    /// Open a new connection, authenticate, and run `command` (one remote shell command line,
    /// already quoted) in an `exec` channel.
    pub async fn exec(&self, command: &str) -> Result<NativeConnection, TransportError> {
        let session = open_session(&self.hop, &self.shared).await?;
        let target = self.target();
        let lost = |e: russh::Error| TransportError::unreachable(&target, "SSH session", e);
        let channel = session.handle.channel_open_session().await.map_err(lost)?;
        let (read_half, write_half) = channel.split();
        let (data_tx, data_rx) = mpsc::channel(RECV_QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let discard = Arc::new(Notify::new());
        let pump = tokio::spawn(pump(
            read_half,
            data_tx,
            reply_tx,
            discard.clone(),
            target.clone(),
        ));
        write_half
            .exec(true, command.as_bytes().to_vec())
            .await
            .map_err(lost)?;
        match reply_rx.await {
            Ok(true) => {}
            Ok(false) => {
                return Err(connect_error(
                    target,
                    format!("the server refused to run {command:?}"),
                ))
            }
            Err(_) => {
                pump.abort();
                return Err(connect_error(
                    target,
                    "the connection closed before the command started",
                ));
            }
        }
        let eof_sent = Arc::new(AtomicBool::new(false));
        let stream = StreamPair {
            send: Box::new(ChannelWriter {
                inner: write_half.make_writer(),
                eof_sent: eof_sent.clone(),
            }),
            recv: Box::new(ChannelReader {
                rx: data_rx,
                cur: Bytes::new(),
                done: false,
            }),
        };
        Ok(NativeConnection {
            stream: Mutex::new(Some(stream)),
            running: tokio::sync::Mutex::new(Some(Running {
                session,
                write_half,
                pump,
                discard,
                eof_sent,
            })),
            command: command.to_owned(),
            target,
        })
    }
}

fn parse_rsh(rsh: &str) -> Result<RshOptions, TransportError> {
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

fn build_hop(
    settings: HostSettings,
    config: &SshConfig,
    cli: &RshOptions,
    local: &LocalContext,
    depth: usize,
) -> Result<Hop, TransportError> {
    let user = settings.user.clone().unwrap_or_else(|| local.user.clone());
    let via = if let Some(jumps) = settings.proxy_jump.as_deref() {
        let mut list: Vec<&str> = jumps
            .split(',')
            .map(str::trim)
            .filter(|j| !j.is_empty())
            .collect();
        match list.pop() {
            None => Via::Direct,
            Some(last) => {
                if depth >= MAX_JUMPS {
                    return Err(connect_error(
                        hop_target(&settings),
                        format!(
                            "more than {MAX_JUMPS} ProxyJump hops (a loop in the configuration?)"
                        ),
                    ));
                }
                let (juser, jhost, jport) = parse_jump(last).ok_or_else(|| {
                    connect_error(
                        hop_target(&settings),
                        format!("bad ProxyJump host {last:?}"),
                    )
                })?;
                // As ssh does for a jump host: only the configuration file, the jump spec's
                // user and port, and the jump hosts before it.
                let mut jcli = RshOptions {
                    program: cli.program.clone(),
                    port: jport,
                    user: juser,
                    config_file: cli.config_file.clone(),
                    ..RshOptions::default()
                };
                if !list.is_empty() {
                    jcli.options.push(("proxyjump".into(), list.join(",")));
                }
                let jsettings = config.resolve(&jhost, &jcli, local);
                Via::Jump(Arc::new(build_hop(
                    jsettings,
                    config,
                    cli,
                    local,
                    depth + 1,
                )?))
            }
        }
    } else if let Some(cmd) = &settings.proxy_command {
        Via::Command(cmd.clone())
    } else {
        Via::Direct
    };
    Ok(Hop {
        settings,
        user,
        via,
        remembered: Mutex::new(None),
        search: tokio::sync::Mutex::new(()),
    })
}

/// `[user@]host[:port]` or `ssh://[user@]host[:port]`; IPv6 addresses in brackets.
fn parse_jump(spec: &str) -> Option<(Option<String>, String, Option<u16>)> {
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, hostport) = match spec.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
        Some(_) => return None,
        None => (None, spec),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p.parse().ok()?)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p.parse().ok()?)),
            _ => (hostport, None),
        }
    };
    if host.is_empty() || port == Some(0) {
        return None;
    }
    Some((user, host.to_owned(), port))
}

// ---------------------------------------------------------------------------------------------
// Connecting: transport, host key, authentication
// ---------------------------------------------------------------------------------------------

/// An authenticated SSH connection, with whatever carries it (a jump host's connection, a
/// proxy command) kept alive beside it.
struct Session {
    handle: Handle<ClientHandler>,
    _carrier: Carrier,
}

/// Held only to be dropped with the session: the proxy command is killed, the jump host's
/// connection closed.
enum Carrier {
    Tcp,
    Command { _child: ProxyChild },
    Jump { _via: Box<Session> },
}

/// A running `ProxyCommand`: sent SIGHUP when dropped, as ssh does.
struct ProxyChild(tokio::process::Child);

impl Drop for ProxyChild {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: plain kill(2) on the child we started and have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGHUP);
            }
        }
    }
}

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

fn open_session<'a>(
    hop: &'a Arc<Hop>,
    shared: &'a Arc<Shared>,
) -> BoxFuture<'a, Result<Session, TransportError>> {
    Box::pin(async move {
        let target = hop_target(&hop.settings);
        let host = hop.settings.hostname.clone();
        let port = hop.settings.port;
        let check = Arc::new(HostKeyCheck::new(&hop.settings));
        let config = Arc::new(client_config(&hop.settings, &check.known_types()));
        let refusal = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            check,
            refusal: refusal.clone(),
        };
        let timeout = hop.settings.connect_timeout;

        let (stream, carrier): (Box<dyn Duplex>, Carrier) = match &hop.via {
            Via::Direct => {
                let tcp = with_timeout(timeout, &target, tcp_connect(&host, port)).await?;
                (Box::new(tcp), Carrier::Tcp)
            }
            Via::Command(cmd) => {
                let mut child = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(format!("exec {cmd}"))
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|e| {
                        TransportError::unreachable(&target, format!("ProxyCommand {cmd:?}"), e)
                    })?;
                let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                    return Err(connect_error(&target, "ProxyCommand has no stdio"));
                };
                (
                    Box::new(tokio::io::join(stdout, stdin)),
                    Carrier::Command {
                        _child: ProxyChild(child),
                    },
                )
            }
            Via::Jump(jump) => {
                let jsession = open_session(jump, shared).await?;
                let channel = jsession
                    .handle
                    .channel_open_direct_tcpip(host.clone(), u32::from(port), "127.0.0.1", 0)
                    .await
                    .map_err(|e| {
                        TransportError::unreachable(
                            &target,
                            format!(
                                "jump host {} could not open a connection to it",
                                hop_target(&jump.settings)
                            ),
                            e,
                        )
                    })?;
                (
                    Box::new(channel.into_stream()),
                    Carrier::Jump {
                        _via: Box::new(jsession),
                    },
                )
            }
        };

        let handshake = async {
            client::connect_stream(config, stream, handler)
                .await
                .map_err(|e| match lock(&refusal).take() {
                    Some(message) => TransportError::Auth(message),
                    None => TransportError::unreachable(&target, ssh_handshake_step(&e), e),
                })
        };
        let mut handle = with_timeout(timeout, &target, handshake).await?;
        authenticate(hop, shared, &mut handle).await?;
        Ok(Session {
            handle,
            _carrier: carrier,
        })
    })
}

async fn with_timeout<T>(
    timeout: Option<std::time::Duration>,
    target: &str,
    fut: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
            Err(connect_error(
                target,
                format!(
                    "connection timed out after {}s (ConnectTimeout)",
                    t.as_secs()
                ),
            ))
        }),
        None => fut.await,
    }
}

async fn tcp_connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, TransportError> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TransportError::unreachable(&target, format!("cannot resolve {host}"), e))?;
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => {
                // Best effort: a failure only costs latency.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => TransportError::unreachable(target, "TCP connect", e),
        None => connect_error(target, format!("{host} has no address")),
    })
}

/// What went wrong in the SSH handshake, in words; the error itself is kept as the source.
fn ssh_handshake_step(e: &russh::Error) -> &'static str {
    match e {
        russh::Error::Disconnect | russh::Error::HUP => {
            "the server closed the connection during the SSH handshake"
        }
        _ => "SSH handshake",
    }
}

fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

const CIPHERS_AES_FIRST: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];
const CIPHERS_CHACHA_FIRST: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

fn client_config(settings: &HostSettings, known_types: &[String]) -> client::Config {
    let mut preferred = russh::Preferred {
        // AES-GCM where the CPU does AES, else ChaCha20-Poly1305: both AEAD, as OpenSSH
        // prefers.
        cipher: std::borrow::Cow::Borrowed(if aes_in_hardware() {
            CIPHERS_AES_FIRST
        } else {
            CIPHERS_CHACHA_FIRST
        }),
        ..russh::Preferred::default()
    };
    // As OpenSSH does: ask first for the host key types already recorded for this host, so a
    // host known by its RSA key is not reported unknown because it also has an Ed25519 key.
    if !known_types.is_empty() {
        let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = preferred
            .key
            .iter()
            .cloned()
            .partition(|a| known_types.contains(&algorithm_type(a)));
        first.extend(rest);
        preferred.key = std::borrow::Cow::Owned(first);
    }
    client::Config {
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET_SIZE,
        preferred,
        nodelay: true,
        keepalive_interval: settings.server_alive_interval,
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        ..client::Config::default()
    }
}

/// The russh client callbacks: host key verification and the banner.
struct ClientHandler {
    check: Arc<HostKeyCheck>,
    /// Why the host key was refused, for the error the caller sees.
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let check = self.check.clone();
        // Reads files and may ask on the terminal: off the async threads.
        let verdict = tokio::task::spawn_blocking(move || check.verify(&key))
            .await
            .unwrap_or_else(|e| Err(format!("host key verification failed: {e}")));
        match verdict {
            Ok(()) => Ok(true),
            Err(message) => {
                *lock(&self.refusal) = Some(message);
                Ok(false)
            }
        }
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let _ = io::stderr().write_all(banner.as_bytes());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Known hosts
// ---------------------------------------------------------------------------------------------

/// How one host's key is checked.
struct HostKeyCheck {
    /// The name as known_hosts records it: `host`, or `[host]:port` off port 22.
    entry_name: String,
    host: String,
    port: u16,
    user_files: Vec<PathBuf>,
    global_files: Vec<PathBuf>,
    strict: StrictHostKeyChecking,
    batch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One usable known_hosts line.
struct KnownLine {
    file: PathBuf,
    line: usize,
    marker: Marker,
    patterns: String,
    key: PublicKey,
}

enum Lookup {
    Known,
    Revoked { file: PathBuf, line: usize },
    Changed { file: PathBuf, line: usize },
    Unknown { other_types: Vec<String> },
}

/// `ssh-rsa` for every RSA signature variant, else the algorithm's name.
fn algorithm_type(a: &Algorithm) -> String {
    match a {
        Algorithm::Rsa { .. } => "ssh-rsa".into(),
        other => other.as_str().to_owned(),
    }
}

fn key_type(k: &PublicKey) -> String {
    algorithm_type(&k.algorithm())
}

/// The key type as OpenSSH names it in messages.
fn key_type_label(k: &PublicKey) -> &'static str {
    match k.algorithm() {
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Ecdsa { .. } => "ECDSA",
        Algorithm::Rsa { .. } => "RSA",
        Algorithm::Dsa => "DSA",
        Algorithm::SkEd25519 => "ED25519-SK",
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK",
        _ => "host",
    }
}

fn fingerprint(k: &PublicKey) -> String {
    k.fingerprint(HashAlg::Sha256).to_string()
}

impl HostKeyCheck {
    fn new(settings: &HostSettings) -> HostKeyCheck {
        let host = settings.hostname.to_lowercase();
        let entry_name = if settings.port == 22 {
            host.clone()
        } else {
            format!("[{host}]:{}", settings.port)
        };
        HostKeyCheck {
            entry_name,
            host,
            port: settings.port,
            user_files: settings.user_known_hosts_files.clone(),
            global_files: settings.global_known_hosts_files.clone(),
            strict: settings.strict_host_key_checking,
            batch: settings.batch_mode,
        }
    }

    fn lines(&self) -> Vec<KnownLine> {
        let mut out = Vec::new();
        for file in self.user_files.iter().chain(&self.global_files) {
            if let Ok(text) = std::fs::read_to_string(file) {
                out.extend(
                    parse_known_hosts(&text, file)
                        .into_iter()
                        .filter(|l| host_matches(&l.patterns, &self.entry_name)),
                );
            }
        }
        out
    }

    /// The key types recorded for this host.
    fn known_types(&self) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for l in self.lines() {
            let t = key_type(&l.key);
            if l.marker == Marker::None && !types.contains(&t) {
                types.push(t);
            }
        }
        types
    }

    fn lookup(&self, key: &PublicKey) -> Lookup {
        let lines = self.lines();
        let ktype = key_type(key);
        if let Some(l) = lines
            .iter()
            .find(|l| l.marker == Marker::Revoked && l.key.key_data() == key.key_data())
        {
            return Lookup::Revoked {
                file: l.file.clone(),
                line: l.line,
            };
        }
        let plain = || lines.iter().filter(|l| l.marker == Marker::None);
        if plain().any(|l| l.key.key_data() == key.key_data()) {
            return Lookup::Known;
        }
        if let Some(l) = plain().find(|l| key_type(&l.key) == ktype) {
            return Lookup::Changed {
                file: l.file.clone(),
                line: l.line,
            };
        }
        let mut other_types: Vec<String> = Vec::new();
        for l in plain() {
            let label = key_type_label(&l.key).to_owned();
            if !other_types.contains(&label) {
                other_types.push(label);
            }
        }
        Lookup::Unknown { other_types }
    }

    /// `Ok` to go on, `Err(message)` to refuse. May append to the first user known_hosts file,
    /// and may ask on the terminal.
    fn verify(&self, key: &PublicKey) -> Result<(), String> {
        let label = key_type_label(key);
        let fp = fingerprint(key);
        match self.lookup(key) {
            Lookup::Known => Ok(()),
            Lookup::Revoked { file, line } => Err(format!(
                "Host key verification failed: the {label} host key for {} ({fp}) is marked as \
                 revoked in {}:{line}.",
                self.entry_name,
                file.display()
            )),
            Lookup::Changed { file, line } => Err(format!(
                "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
                 @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
                 @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
                 IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
                 Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
                 It is also possible that a host key has just been changed.\n\
                 The fingerprint for the {label} key sent by the remote host is\n{fp}.\n\
                 Offending {label} key in {file}:{line}\n  \
                 remove with: ssh-keygen -f '{file}' -R '{name}'\n\
                 Host key for {name} has changed{strict}.\n\
                 Host key verification failed.",
                file = file.display(),
                name = self.entry_name,
                strict = if self.strict == StrictHostKeyChecking::Yes {
                    " and you have requested strict checking"
                } else {
                    " (a changed key is refused whatever StrictHostKeyChecking says)"
                },
            )),
            Lookup::Unknown { other_types } => {
                let also = if other_types.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (keys of other types are known for it: {})",
                        other_types.join(", ")
                    )
                };
                let accept = match self.strict {
                    StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No => true,
                    StrictHostKeyChecking::Ask if !self.batch => {
                        self.ask_accept(label, &fp, &also).unwrap_or_default()
                    }
                    _ => false,
                };
                if !accept {
                    return Err(self.unknown_message(label, &fp, &also));
                }
                self.learn(key, label)
            }
        }
    }

    fn unknown_message(&self, label: &str, fp: &str, also: &str) -> String {
        let files: Vec<String> = self
            .user_files
            .iter()
            .chain(&self.global_files)
            .map(|f| f.display().to_string())
            .collect();
        let files = if files.is_empty() {
            "(no known_hosts files)".to_owned()
        } else {
            files.join(", ")
        };
        let target_file = self
            .user_files
            .first()
            .map(|f| shell_quote(&f.display().to_string()))
            .unwrap_or_else(|| "~/.ssh/known_hosts".into());
        let port = if self.port == 22 {
            String::new()
        } else {
            format!("-p {} ", self.port)
        };
        format!(
            "Host key verification failed: the authenticity of host '{name}' can't be \
             established{also}.\n{label} key fingerprint is {fp}.\nIt is in none of {files}. \
             After checking the fingerprint with the host's administrator, add it with\n  \
             ssh-keyscan {port}{host} >> {target_file}\nor connect once with \
             -o StrictHostKeyChecking=accept-new.",
            name = self.entry_name,
            host = shell_quote(&self.host),
        )
    }

    /// The yes/no question on the terminal; `None` without one.
    fn ask_accept(&self, label: &str, fp: &str, also: &str) -> Option<bool> {
        let question = format!(
            "The authenticity of host '{}' can't be established{also}.\n{label} key fingerprint \
             is {fp}.\nAre you sure you want to continue connecting (yes/no/[fingerprint])? ",
            self.entry_name
        );
        let mut answer = tty_prompt(&question, true)?;
        loop {
            let a = answer.trim();
            if a.eq_ignore_ascii_case("yes") || a == fp {
                return Some(true);
            }
            if a.eq_ignore_ascii_case("no") {
                return Some(false);
            }
            answer = tty_prompt("Please type 'yes', 'no' or the fingerprint: ", true)?;
        }
    }

    fn learn(&self, key: &PublicKey, label: &str) -> Result<(), String> {
        let Some(file) = self.user_files.first() else {
            eprintln!(
                "Warning: no UserKnownHostsFile to record the {label} key of '{}' in.",
                self.entry_name
            );
            return Ok(());
        };
        match append_known_host(file, &self.entry_name, key) {
            Ok(()) => {
                eprintln!(
                    "Warning: Permanently added '{}' ({label}) to the list of known hosts.",
                    self.entry_name
                );
            }
            Err(e) => {
                // As ssh: the connection goes on; the key is simply not remembered.
                eprintln!(
                    "Failed to add the host to the list of known hosts ({}): {e}",
                    file.display()
                );
            }
        }
        Ok(())
    }
}

fn append_known_host(file: &Path, name: &str, key: &PublicKey) -> io::Result<()> {
    if let Some(dir) = file.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode_0700()
                .create(dir)?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    let needs_newline = match std::fs::read(file) {
        Ok(existing) => existing.last().is_some_and(|&b| b != b'\n'),
        Err(_) => false,
    };
    let key_text = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut line = String::new();
    if needs_newline {
        line.push('\n');
    }
    line.push_str(name);
    line.push(' ');
    line.push_str(key_text.trim_end());
    line.push('\n');
    f.write_all(line.as_bytes())
}

trait DirBuilderExt0700 {
    fn mode_0700(&mut self) -> &mut Self;
}

impl DirBuilderExt0700 for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

/// The usable lines of a known_hosts file (bad lines are skipped, as ssh does).
fn parse_known_hosts(text: &str, file: &Path) -> Vec<KnownLine> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let mut first = words.next();
        let marker = match first {
            Some("@revoked") => Marker::Revoked,
            Some("@cert-authority") => Marker::CertAuthority,
            Some(m) if m.starts_with('@') => continue,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = words.next();
        }
        let (Some(patterns), Some(ktype), Some(blob)) = (first, words.next(), words.next()) else {
            continue;
        };
        let Ok(key) = PublicKey::from_openssh(&format!("{ktype} {blob}")) else {
            continue;
        };
        out.push(KnownLine {
            file: file.to_owned(),
            line: index + 1,
            marker,
            patterns: patterns.to_owned(),
            key,
        });
    }
    out
}

/// Whether a known_hosts host field (`a,b,!c,*.d,|1|salt|hash`) names `name`.
fn host_matches(patterns: &str, name: &str) -> bool {
    let mut found = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            if hashed_matches(hashed, name) {
                found = true;
            }
        } else if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(&negated.to_lowercase(), name) {
                return false;
            }
        } else if wildcard_match(&pattern.to_lowercase(), name) {
            found = true;
        }
    }
    found
}

/// `salt|hash` (both base64): HMAC-SHA1 keyed by the salt over the name, as `ssh-keygen -H`.
fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (Base64::decode_vec(salt), Base64::decode_vec(hash)) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` and `?` glob over the whole of `text`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

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

/// Read a line on the controlling terminal, echoing it or not; `None` without a terminal.
fn tty_prompt(prompt: &str, echo: bool) -> Option<String> {
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsRawFd;
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it in for a valid descriptor.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for as long as `tty` lives; `saved` is a valid termios.
    let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if !echo && have_termios {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) };
    }
    let _ = tty.write_all(prompt.as_bytes());
    let _ = tty.flush();
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    if !echo && have_termios {
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &saved) };
    }
    match read {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
    }
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

async fn authenticate(
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

// ---------------------------------------------------------------------------------------------
// The connection and its stream
// ---------------------------------------------------------------------------------------------

/// One SSH connection with one exec channel: a [`Connection`] yielding exactly one stream (the
/// channel's stdin/stdout; the remote's stderr is copied to ours). [`Connection::close`] sends
/// EOF, waits for the exit status and reports a non-zero one as
/// [`TransportError::PeerExited`] (`code: Some(n)`; a signal gives `code: None`); a lost
/// connection is [`TransportError::Closed`].
pub struct NativeConnection {
    stream: Mutex<Option<StreamPair>>,
    running: tokio::sync::Mutex<Option<Running>>,
    command: String,
    target: String,
}

struct Running {
    session: Session,
    write_half: ChannelWriteHalf<client::Msg>,
    pump: JoinHandle<ExitInfo>,
    discard: Arc<Notify>,
    eof_sent: Arc<AtomicBool>,
}

impl fmt::Debug for NativeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeConnection")
            .field("target", &self.target)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl NativeConnection {
    /// `host:port` connected to.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn take(&self) -> Result<StreamPair, TransportError> {
        lock(&self.stream)
            .take()
            .ok_or(TransportError::Unsupported {
                transport: "ssh".into(),
                what: "a second stream on one SSH connection",
            })
    }
}

impl Connection for NativeConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move { self.take() })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move { self.take() })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream().with_encrypted(true)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            lock(&self.stream).take();
            let Some(running) = self.running.lock().await.take() else {
                return Ok(());
            };
            if !running.eof_sent.swap(true, Ordering::SeqCst) {
                // Fails only if the channel is already gone; the exit status says the rest.
                let _ = running.write_half.eof().await;
            }
            // Whatever the reader has not taken is dropped, so the pump never blocks on it.
            running.discard.notify_one();
            let info = running.pump.await.unwrap_or_default();
            let Session { handle, _carrier } = running.session;
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            // Let the disconnect reach the server before a proxy command is hung up on, so
            // that nothing is left waiting on the far side.
            let _ = tokio::time::timeout(CLOSE_GRACE, handle).await;
            drop(_carrier);
            if let Some(status) = info.status {
                if status == 0 {
                    return Ok(());
                }
                return Err(TransportError::PeerExited {
                    command: self.command.clone(),
                    status: format!("exit status: {status}"),
                    code: Some(i32::try_from(status).unwrap_or(i32::MAX)),
                });
            }
            if let Some(signal) = info.signal {
                return Err(TransportError::PeerExited {
                    command: self.command.clone(),
                    status: signal,
                    code: None,
                });
            }
            if info.closed {
                // Closed without a status (some servers do): nothing says it failed.
                return Ok(());
            }
            Err(TransportError::Closed)
        })
    }
}

/// How the remote command ended, as the channel told.
#[derive(Debug, Default)]
struct ExitInfo {
    status: Option<u32>,
    signal: Option<String>,
    /// The channel was closed properly (not cut with the connection).
    closed: bool,
}

/// Move the channel's messages where they belong: data to the stream's reader, extended data
/// to our stderr, the exec reply and the exit status to the connection.
async fn pump(
    mut rx: ChannelReadHalf,
    data: mpsc::Sender<io::Result<Bytes>>,
    reply: oneshot::Sender<bool>,
    discard: Arc<Notify>,
    target: String,
) -> ExitInfo {
    let mut info = ExitInfo::default();
    let mut reply = Some(reply);
    let mut data = Some(data);
    let mut stderr = tokio::io::stderr();
    let mut eof = false;
    loop {
        let Some(msg) = rx.wait().await else {
            if !eof {
                if let Some(d) = data.take() {
                    let lost = io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("SSH connection to {target} lost"),
                    );
                    let _ = d.try_send(Err(lost));
                }
            }
            break;
        };
        match msg {
            ChannelMsg::Success => {
                if let Some(r) = reply.take() {
                    let _ = r.send(true);
                }
            }
            ChannelMsg::Failure => {
                if let Some(r) = reply.take() {
                    let _ = r.send(false);
                }
            }
            ChannelMsg::Data { data: bytes } => {
                if let Some(d) = &data {
                    let delivered = tokio::select! {
                        r = d.send(Ok(bytes)) => r.is_ok(),
                        () = discard.notified() => false,
                    };
                    if !delivered {
                        data = None;
                    }
                }
            }
            ChannelMsg::ExtendedData { data: bytes, .. } => {
                let _ = stderr.write_all(&bytes).await;
                let _ = stderr.flush().await;
            }
            ChannelMsg::Eof => {
                eof = true;
                data = None;
            }
            ChannelMsg::ExitStatus { exit_status } => info.status = Some(exit_status),
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                ..
            } => {
                let mut s = format!("killed by signal {signal_name:?}");
                if core_dumped {
                    s.push_str(" (core dumped)");
                }
                if !error_message.is_empty() {
                    s.push_str(&format!(": {error_message}"));
                }
                info.signal = Some(s);
            }
            ChannelMsg::Close => {
                info.closed = true;
                break;
            }
            _ => {}
        }
    }
    info
}

/// The stream's receiving half: the channel's data, in order.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    done: bool,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.cur.is_empty() {
                let n = buf.remaining().min(this.cur.len());
                buf.put_slice(&this.cur.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok(bytes)) => this.cur = bytes,
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Err(e));
                }
                None => {
                    this.done = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// The stream's sending half: the channel's data; shutting it down sends EOF (once).
struct ChannelWriter<W> {
    inner: W,
    eof_sent: Arc<AtomicBool>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ChannelWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.eof_sent.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        self.eof_sent.store(true, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

// ---------------------------------------------------------------------------------------------
// The transport
// ---------------------------------------------------------------------------------------------

/// The `ssh` transport on the built-in client: `connect(endpoint)` is
/// `NativeLogin::new(rsh, endpoint)?.exec(the endpoint's remote command, each word shell-quoted)`.
#[derive(Debug, Clone)]
pub struct NativeSsh {
    rsh: String,
}

impl Default for NativeSsh {
    fn default() -> Self {
        NativeSsh { rsh: "ssh".into() }
    }
}

impl NativeSsh {
    /// The transport for the `-e`/`--rsh` string `rsh` (checked now: quotes, `ssh` options, the
    /// program being `ssh`).
    pub fn with_rsh(rsh: &str) -> Result<Self, TransportError> {
        parse_rsh(rsh)?;
        Ok(NativeSsh::unchecked(rsh))
    }

    /// The transport for `rsh`, checked only when it connects (registered beside the system
    /// client, it must not refuse a `-e` only the system client follows).
    pub fn unchecked(rsh: &str) -> Self {
        NativeSsh {
            rsh: rsh.to_owned(),
        }
    }
}

impl TransportFactory for NativeSsh {
    /// `ssh-native`; registered as `ssh` too with `--ssh=native`.
    fn name(&self) -> &str {
        "ssh-native"
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
            if endpoint.remote_command.is_empty() {
                return Err(TransportError::Unsupported {
                    transport: "ssh".into(),
                    what: "a login without a remote command",
                });
            }
            let login = NativeLogin::new(&self.rsh, endpoint)?;
            let command: Vec<String> = endpoint
                .remote_command
                .iter()
                .map(|w| shell_quote(w))
                .collect();
            let conn = login.exec(&command.join(" ")).await?;
            Ok(Box::new(conn) as Box<dyn Connection>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("10.0.0.?", "10.0.0.7"));
        assert!(!wildcard_match("10.0.0.?", "10.0.0.17"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("a,b,c", "b"));
        assert!(host_matches("*.lan,!bad.lan", "good.lan"));
        assert!(!host_matches("*.lan,!bad.lan", "bad.lan"));
        assert!(!host_matches("[h]:22", "h"));
        assert!(host_matches("Host.Example", "host.example"));
    }

    #[test]
    fn hashed_entry() {
        // From OpenSSH's regression data: `ssh-keygen -H` of "example.com".
        let line = "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=";
        assert!(host_matches(line, "example.com"));
        assert!(!host_matches(line, "example.org"));
        assert!(!host_matches("|1|bad|base64!", "example.com"));
    }

    #[test]
    fn known_hosts_parsing() {
        let text = "# comment\n\n\
            [localhost]:13265 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n\
            garbage line\n\
            @revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X\n";
        let lines = parse_known_hosts(text, Path::new("/kh"));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 3);
        assert_eq!(lines[0].marker, Marker::None);
        assert_eq!(lines[1].line, 5);
        assert_eq!(lines[1].marker, Marker::Revoked);
        assert!(host_matches(&lines[0].patterns, "[localhost]:13265"));
    }

    #[test]
    fn jump_specs() {
        assert_eq!(
            parse_jump("bob@jump:2222"),
            Some((Some("bob".into()), "jump".into(), Some(2222)))
        );
        assert_eq!(parse_jump("jump"), Some((None, "jump".into(), None)));
        assert_eq!(
            parse_jump("ssh://[::1]:22"),
            Some((None, "::1".into(), Some(22)))
        );
        assert_eq!(parse_jump("::1"), Some((None, "::1".into(), None)));
        assert_eq!(parse_jump("@h"), None);
        assert_eq!(parse_jump("h:0"), None);
    }

    #[test]
    fn not_ssh_is_unsupported() {
        assert!(matches!(
            NativeSsh::with_rsh("rsh -l x"),
            Err(TransportError::Unsupported { .. })
        ));
        assert!(NativeSsh::with_rsh("ssh -p 2222 -o StrictHostKeyChecking=no").is_ok());
        assert!(NativeSsh::with_rsh("ssh 'unbalanced").is_err());
    }
}
