//! `arsync serve`: the daemon — exported modules over QUIC, bearer tokens or mutual TLS,
//! every path confined to its module — and `arsync serve token …` to manage its tokens.
//!
//! ```toml
//! listen = ["0.0.0.0:8730"]          # UDP; default [::]:8730
//! listen_tcp = ["0.0.0.0:8730"]      # TLS over TCP/MPTCP; default as `listen`, [] for none
//! state_dir = "/var/lib/arsync"      # identity.crt / identity.key (generated on first start)
//! tokens = "tokens.toml"             # relative to state_dir; default state_dir/tokens.toml
//!
//! [tls]                              # optional
//! cert = "server.crt"                # a CA-issued identity instead of the generated one
//! key = "server.key"
//! client_ca = "clients-ca.pem"       # mutual TLS: certified clients need no token
//!
//! [oidc]                             # optional (issue 19): bearer JWTs from an OIDC issuer
//! issuer = "https://id.example.com/realms/x"
//! audience = "urn:arsync"
//! modules_claim = "arsync_modules"   # default; a list of module names, or "*"
//! write_scope = "arsync:write"       # default; without it in `scope`/`scp`: read-only
//!
//! [module.data]
//! path = "/srv/data"
//! read_only = false
//! ```
//!
//! Each connection presents an admission request (token, `module/path`, server arguments);
//! the daemon checks the token (hash, expiry, scope, modules — or, for a JWT when `[oidc]` is
//! set, its signature and claims: `arsync_auth::oidc`), the module, the arguments
//! (a fixed allow-list: no option may make it read or write outside the module) and the path
//! (`openat2` with `RESOLVE_BENEATH`: no `..`, no absolute path, no symlink leading out), then
//! runs the server role of the merkle protocol on the connection. SIGTERM or SIGINT stops it:
//! connections are closed, sessions end, unfinished files are removed.
//!
//! Not here: the admission policy (`arsync_core::serve_policy`: the argument allow-list,
//! modules, read-only checks), the protocol (arsync_core), QUIC (arsync_transports::quic), TLS
//! over TCP and MPTCP (arsync_transports::tls_tcp), the admission exchange
//! (arsync_transports::admission), TLS and tokens (arsync_auth). This module loads the configuration, listens, and joins them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use arsync_auth::oidc::{self, Grant, OidcConfig, OidcVerifier};
use arsync_auth::tls::{self, ClientAuth, Identity};
use arsync_auth::token::{Scope, TokenStore};
use arsync_core::proto::admit::AdmitRequest;
use arsync_core::serve_policy::{self, Credential, Module, Modules, Refusal, Who};
use arsync_transports::admission::PendingAdmission;
use arsync_transports::quic::{QuicServer, QuicTuning, DEFAULT_PORT};
use arsync_transports::tls_tcp::TlsTcpServer;
use clap::Parser;
use serde::Deserialize;

use crate::{args, output};

/// Connections served at once (handshakes included); more are refused at the QUIC level.
const MAX_SESSIONS: usize = 512;

/// The daemon's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// UDP addresses to listen on.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Issue 17, mptcp: TCP addresses for TLS over TCP (MPTCP where the kernel allows);
    /// default the UDP addresses (the same port numbers), `[]` for none.
    pub listen_tcp: Option<Vec<String>>,
    /// Where the identity (and by default the tokens) live.
    pub state_dir: Option<PathBuf>,
    /// The token file.
    pub tokens: Option<PathBuf>,
    /// A given TLS identity and mutual TLS.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Issue 19: bearer JWTs from an OpenID Connect issuer, beside the token file.
    pub oidc: Option<OidcConfig>,
    /// Exported modules by name.
    #[serde(default)]
    pub module: BTreeMap<String, ModuleConfig>,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate (PEM) instead of the generated identity.
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are accepted instead of tokens.
    pub client_ca: Option<PathBuf>,
}

/// `[module.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// The directory exported.
    pub path: PathBuf,
    /// Refuse writes.
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Parser, Debug)]
#[command(
    name = "arsync serve",
    about = "Serve modules to arsync clients over QUIC and TLS over TCP/MPTCP"
)]
struct ServeCli {
    /// the configuration file
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        default_value = "/etc/arsync/serve.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    what: Option<ServeWhat>,
}

#[derive(clap::Subcommand, Debug)]
enum ServeWhat {
    /// manage bearer tokens
    Token {
        #[command(subcommand)]
        what: TokenWhat,
    },
}

#[derive(clap::Subcommand, Debug)]
enum TokenWhat {
    /// create a token and print its secret (shown once; only its hash is stored)
    Add {
        /// a name for the token
        name: String,
        /// allow only reading (pulls)
        #[arg(long)]
        read_only: bool,
        /// how long it lives: 90d, 12h, 30m, 45s
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// restrict it to a module (repeatable; default: all)
        #[arg(long, value_name = "NAME")]
        module: Vec<String>,
    },
    /// list tokens (names, scopes, expiry; never secrets)
    List,
    /// delete a token
    Revoke {
        /// its name
        name: String,
    },
}

/// Everything a session check needs.
#[derive(Debug)]
struct Daemon {
    modules: Modules,
    tokens_path: PathBuf,
    mutual_tls: bool,
    /// Issue 19: the `[oidc]` issuer's verifier (and its cached keys).
    oidc: Option<Arc<OidcVerifier>>,
    /// Issue 16, remote CPU: how fast this machine chunks (measured once, at the start).
    cpu_chunk: u64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `90d`, `12h`, `30m`, `45s` (or plain seconds).
fn parse_duration(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last()? {
        'd' => (&t[..t.len() - 1], 86_400),
        'h' => (&t[..t.len() - 1], 3_600),
        'm' => (&t[..t.len() - 1], 60),
        's' => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl ServeConfig {
    fn load(path: &Path) -> anyhow::Result<ServeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    fn state_dir(&self, config_path: &Path) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            config_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        })
    }

    fn tokens_path(&self, config_path: &Path) -> PathBuf {
        let dir = self.state_dir(config_path);
        match &self.tokens {
            Some(p) => dir.join(p),
            None => dir.join("tokens.toml"),
        }
    }
}

/// `arsync serve …`: the process exit code.
pub fn main(argv: Vec<OsString>) -> u8 {
    let cli = match args::parse_subcommand::<ServeCli>(argv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            err_line!("arsync serve: {e:#}");
            1
        }
    }
}

fn run(cli: ServeCli) -> anyhow::Result<u8> {
    let config = ServeConfig::load(&cli.config)?;
    let tokens_path = config.tokens_path(&cli.config);
    match cli.what {
        Some(ServeWhat::Token { what }) => {
            token_command(&tokens_path, what)?;
            Ok(0)
        }
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("arsync-serve")
                .build()?;
            runtime.block_on(daemon(&cli.config, config))
        }
    }
}

fn token_command(path: &Path, what: TokenWhat) -> anyhow::Result<()> {
    let mut store = TokenStore::load(path)?;
    match what {
        TokenWhat::Add {
            name,
            read_only,
            expires,
            module,
        } => {
            let expires = match expires {
                Some(d) => Some(
                    now_unix()
                        + parse_duration(&d)
                            .ok_or_else(|| anyhow!("--expires={d}: e.g. 90d, 12h, 30m, 45s"))?,
                ),
                None => None,
            };
            let scope = if read_only {
                Scope::ReadOnly
            } else {
                Scope::ReadWrite
            };
            let secret = store.add(&name, scope, expires, module)?;
            store.save()?;
            println!("{secret}");
            err_line!(
                "arsync serve: token {name:?} ({scope}) added to {}; the secret above is shown only once",
                path.display()
            );
        }
        TokenWhat::List => {
            for r in store.records() {
                let modules = if r.modules.is_empty() {
                    "all modules".to_owned()
                } else {
                    r.modules.join(",")
                };
                let expires = match r.expires {
                    Some(t) if t <= now_unix() => format!("expired ({t})"),
                    Some(t) => format!("expires at {t} (unix)"),
                    None => "never expires".to_owned(),
                };
                println!("{}\t{}\t{modules}\t{expires}", r.name, r.scope);
            }
        }
        TokenWhat::Revoke { name } => {
            store.revoke(&name)?;
            store.save()?;
            err_line!("arsync serve: token {name:?} revoked");
        }
    }
    Ok(())
}

async fn daemon(config_path: &Path, config: ServeConfig) -> anyhow::Result<u8> {
    let state = config.state_dir(config_path);
    let mut modules = Modules::new();
    for (name, m) in &config.module {
        if name.is_empty() || name.contains('/') {
            bail!("module name {name:?}: no slashes");
        }
        let root = m
            .path
            .canonicalize()
            .with_context(|| format!("module {name}: {}", m.path.display()))?;
        if !root.is_dir() {
            bail!("module {name}: {} is not a directory", root.display());
        }
        modules.insert(
            name.clone(),
            Module {
                root,
                read_only: m.read_only,
            },
        );
    }
    let identity = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => Identity::from_pem_files(c, k)?,
        (None, None) => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            let (id, new) = Identity::load_or_generate(&state, &[host])?;
            if new {
                err_line!(
                    "arsync serve: generated a new identity in {}",
                    state.display()
                );
            }
            id
        }
        _ => bail!("[tls] cert and key go together"),
    };
    let client_auth = match &config.tls.client_ca {
        Some(ca) => ClientAuth::RequireCa(tls::load_ca_certs(ca)?),
        None => ClientAuth::None,
    };
    let mutual_tls = matches!(client_auth, ClientAuth::RequireCa(_));
    let rustls = tls::server_config(&identity, &client_auth)?;
    let listen = if config.listen.is_empty() {
        vec![format!("[::]:{DEFAULT_PORT}")]
    } else {
        config.listen.clone()
    };
    let mut servers = Vec::new();
    for l in &listen {
        let addr = listen_addr("listen", l)?;
        // Issue 17, h3: HTTP/3 (ALPN `h3`) on the same UDP port.
        let server = QuicServer::bind_with_h3(addr, rustls.clone(), QuicTuning::default())
            .with_context(|| format!("cannot listen on {addr}"))?;
        err_line!(
            "arsync serve: listening on {} (UDP: QUIC and HTTP/3), certificate {}",
            server.local_addr()?,
            identity.fingerprint()
        );
        servers.push(Arc::new(server));
    }
    // Issue 17, mptcp: TLS over TCP (MPTCP where the kernel allows), same TLS and admission.
    let mut tcp_servers = Vec::new();
    for l in config.listen_tcp.as_ref().unwrap_or(&listen) {
        let addr = listen_addr("listen_tcp", l)?;
        let server = TlsTcpServer::bind(addr, rustls.clone())
            .with_context(|| format!("cannot listen on TCP {addr}"))?;
        err_line!(
            "arsync serve: listening on {} ({})",
            server.local_addr()?,
            server.describe()
        );
        tcp_servers.push(Arc::new(server));
    }
    let daemon = Arc::new(Daemon {
        modules,
        tokens_path: config.tokens_path(config_path),
        mutual_tls,
        oidc: match config.oidc.clone() {
            Some(c) => Some(Arc::new(OidcVerifier::new(c).context("[oidc]")?)),
            None => None,
        },
        cpu_chunk: crate::cpu_probe::chunk_speed(),
    });
    let sessions = Sessions::default();
    let mut accepters = Vec::new();
    for server in &servers {
        let (server, daemon, sessions) = (server.clone(), daemon.clone(), sessions.clone());
        accepters.push(tokio::spawn(async move {
            while let Some(incoming) = server.incoming().await {
                if busy(&sessions) >= MAX_SESSIONS {
                    err_line!(
                        "arsync serve: {}: refused, {MAX_SESSIONS} sessions running",
                        incoming.remote_address()
                    );
                    incoming.refuse();
                    continue;
                }
                let (server, daemon) = (server.clone(), daemon.clone());
                let task = tokio::spawn(async move {
                    // Issue 17, h3: arsync's own ALPN or HTTP/3, as negotiated.
                    match server.handshake_any(incoming).await {
                        Ok(admission) => session(&daemon, admission).await,
                        Err(e) => err_line!("arsync serve: {e}"),
                    }
                });
                if let Ok(mut s) = sessions.lock() {
                    s.push(task);
                }
            }
        }));
    }
    // Issue 17, mptcp: closing a QUIC endpoint ends its connections; TCP sessions end when
    // this says stop (their connections dropped: close_notify and FIN, staged files removed).
    let (stop_tcp, stopping) = tokio::sync::watch::channel(false);
    for server in &tcp_servers {
        let (server, daemon, sessions) = (server.clone(), daemon.clone(), sessions.clone());
        let stopping = stopping.clone();
        accepters.push(tokio::spawn(async move {
            loop {
                let (tcp, peer) = match server.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: say so, and do not spin.
                        err_line!("arsync serve: accepting a TCP connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if busy(&sessions) >= MAX_SESSIONS {
                    err_line!("arsync serve: {peer}: refused, {MAX_SESSIONS} sessions running");
                    continue;
                }
                let (server, daemon) = (server.clone(), daemon.clone());
                let mut stopping = stopping.clone();
                let task = tokio::spawn(async move {
                    let served = async {
                        // Issue 17, h2: raw TLS or HTTP/2 by ALPN; an HTTP/2 connection
                        // may bring only lanes of sessions already admitted.
                        match server.handshake_any(tcp, peer).await {
                            Ok(Some(admission)) => session(&daemon, admission).await,
                            Ok(None) => {}
                            Err(e) => err_line!("arsync serve: {e}"),
                        }
                    };
                    tokio::select! {
                        _ = served => {}
                        _ = stopping.wait_for(|stop| *stop) => {
                            err_line!("arsync serve: {peer}: closed, the server is stopping");
                        }
                    }
                });
                if let Ok(mut s) = sessions.lock() {
                    s.push(task);
                }
            }
        }));
    }
    stop_signal().await;
    err_line!("arsync serve: stopping");
    for s in &servers {
        s.close();
    }
    let _ = stop_tcp.send(true);
    let running: Vec<_> = sessions
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for t in running {
            let _ = t.await;
        }
    })
    .await;
    // Nothing half-written stays behind.
    arsync_core::engine::fsys::remove_staged();
    for a in accepters {
        a.abort();
    }
    Ok(0)
}

/// An address of the `listen` (or `listen_tcp`) list.
fn listen_addr(list: &str, l: &str) -> anyhow::Result<SocketAddr> {
    l.parse()
        .with_context(|| format!("{list} address {l:?} (e.g. 0.0.0.0:{DEFAULT_PORT})"))
}

/// The running session tasks (finished ones are dropped as new ones arrive).
type Sessions = Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// How many sessions run (forgetting the finished ones).
fn busy(sessions: &Sessions) -> usize {
    sessions.lock().map_or(0, |mut s| {
        s.retain(|t| !t.is_finished());
        s.len()
    })
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Decide on one admission (QUIC or TLS over TCP alike) and run its session.
async fn session(daemon: &Daemon, admission: Box<dyn PendingAdmission>) {
    let peer = admission.remote_address();
    let jwt = jwt_grant(daemon, admission.request()).await;
    match check(
        daemon,
        admission.request(),
        admission.client_certified(),
        jwt,
    ) {
        Err((code, message)) => {
            err_line!(
                "arsync serve: {peer}: refused: {message} (over {})",
                admission.carrier()
            );
            admission.refuse(code, message).await;
        }
        Ok((cmd, role, paths, who)) => {
            err_line!(
                "arsync serve: {peer}: {who}: {} {} (over {})",
                if role == arsync::ServerRole::Sender {
                    "pull from"
                } else {
                    "push to"
                },
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                admission.carrier()
            );
            let Ok(conn) = admission.admit().await else {
                return;
            };
            let sink = Arc::new(output::Output::new(&cmd.output, true));
            // Issue 18, chunk cache: each session keeps it within its bounds, as a run does.
            let chunk_cache = cmd.opts.chunk_cache.clone();
            // Issue 16, remote CPU: the client learns how fast this side chunks.
            let mut opts = cmd.opts;
            opts.cpu_chunk = Some(daemon.cpu_chunk);
            if let Err(e) = arsync::serve(conn, role, paths, opts, sink).await {
                err_line!("arsync serve: {peer}: {e}");
            }
            if let Some(cache) = chunk_cache {
                let _ = tokio::task::spawn_blocking(move || cache.trim()).await;
            }
        }
    }
}

type Checked = (args::Command, arsync::ServerRole, Vec<PathBuf>, String);

/// Issue 19: when `[oidc]` is set and the presented token has a JWT's shape, its verification
/// (which may fetch the issuer's keys: off the async threads); otherwise `None` (the token
/// file decides).
async fn jwt_grant(daemon: &Daemon, req: &AdmitRequest) -> Option<Result<Grant, String>> {
    let verifier = daemon.oidc.clone()?;
    if !oidc::looks_like_jwt(&req.token) {
        return None;
    }
    let token = req.token.clone();
    let module = serve_policy::split_target(&req.target).0.to_owned();
    let verified =
        tokio::task::spawn_blocking(move || verifier.verify(&token, &module, now_unix())).await;
    Some(match verified {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("verifying the token failed: {e}")),
    })
}

/// Token, module, arguments, path (the policy is `arsync_core::serve_policy`): the session
/// to run, or (exit code, reason).
fn check(
    daemon: &Daemon,
    req: &AdmitRequest,
    client_certified: bool,
    jwt: Option<Result<Grant, String>>,
) -> Result<Checked, (u8, String)> {
    let refused = |r: Refusal| (r.code, r.message);
    let (module_name, _) = serve_policy::split_target(&req.target);
    let credential = serve_policy::credential(daemon.mutual_tls, client_certified, &req.token);
    let who = match (credential, jwt) {
        (Credential::ClientCertificate, _) => Who {
            label: "client certificate".into(),
            may_write: true,
        },
        (Credential::Token, Some(grant)) => {
            let g = grant.map_err(|e| (5, e))?;
            Who {
                label: format!("OIDC subject {}", g.subject),
                may_write: g.scope == Scope::ReadWrite,
            }
        }
        (Credential::Token, None) => {
            let store = TokenStore::load(&daemon.tokens_path)
                .map_err(|e| (5, format!("server cannot read its tokens: {e}")))?;
            serve_policy::require_token(&req.token).map_err(refused)?;
            let rec = store
                .verify(&req.token, module_name, now_unix())
                .map_err(|e| (5, e.to_string()))?;
            Who {
                label: format!("token {}", rec.name),
                may_write: rec.scope == Scope::ReadWrite,
            }
        }
    };
    let admitted =
        serve_policy::admit(&daemon.modules, &req.target, &req.args, &who).map_err(refused)?;
    let path = arsync_core::engine::fsys::resolve_beneath(
        &admitted.module.root,
        admitted.rel,
        admitted.sender,
    )
    .map_err(|e| (3, e.to_string()))?;
    let argv = serve_policy::server_argv(&req.args, admitted.rel, &path);
    let cmd = match args::parse(argv) {
        Ok(c) => c,
        Err(args::ParseOutcome::Usage(m)) => return Err((1, m)),
        Err(args::ParseOutcome::Exit(_)) => return Err((1, "bad arguments".into())),
    };
    let args::Mode::Server { sender, paths } = &cmd.mode else {
        return Err((1, "not a server command".into()));
    };
    let role = if *sender {
        arsync::ServerRole::Sender
    } else {
        arsync::ServerRole::Receiver
    };
    let paths = paths.clone();
    Ok((cmd, role, paths, who.label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert_eq!(parse_duration("2h"), Some(7_200));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("x"), None);
    }
}
