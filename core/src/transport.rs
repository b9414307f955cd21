//! The transport boundary: what a transport gives the engine, and the registry of transports.
//!
//! A transport is anything that yields reliable, ordered, bidirectional byte streams to a peer
//! running arsync's (or rsync's) other role. This module owns the traits
//! ([`TransportFactory`], [`Connection`], [`Listener`]), the data they exchange
//! ([`Capabilities`], [`PathStats`], [`Endpoint`], [`ListenConfig`], [`AuthConfig`] — each
//! with builders, so a plugin crate can make them) and the boundary error
//! ([`TransportError`], with [`PeerMisbehaved`] and typed sources). It implements no transport:
//! those live in `arsync-transports`, or in a user's crate; nor does it check one (the
//! conformance suite is `arsync_transports::conformance`).
//!
//! A single-stream transport (one SSH channel, a pipe) is still a [`Connection`]: it yields one
//! stream and the engine multiplexes over it.
//!
//! The [`Registry`] is plain data built by the caller — no global constructors:
//! `Registry::new().with(Mem::default())`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::exit::ExitCode;
use crate::proto::DecodeError;

/// `: LINE; LINE` for what a peer said, or nothing.
fn said_suffix(said: &[String]) -> String {
    if said.is_empty() {
        String::new()
    } else {
        format!(": {}", said.join("; "))
    }
}

/// A boxed, sendable future: the trait methods return these so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The sending half of a stream.
pub type SendStream = Box<dyn AsyncWrite + Send + Unpin>;
/// The receiving half of a stream.
pub type RecvStream = Box<dyn AsyncRead + Send + Unpin>;

/// One reliable, ordered, bidirectional byte stream, as its two halves.
pub struct StreamPair {
    /// Bytes to the peer.
    pub send: SendStream,
    /// Bytes from the peer.
    pub recv: RecvStream,
}

impl fmt::Debug for StreamPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamPair")
    }
}

/// What a transport (or one connection of it) can do. The engine and the negotiator act on
/// these claims, so each must be true of every connection that makes it; the conformance suite
/// (`arsync-transports`, feature `conformance`) checks the ones a test can observe.
///
/// A plugin builds one with [`Capabilities::single_stream`] and the `with_*` methods (the
/// struct is `#[non_exhaustive]`, so other crates cannot write it as a literal):
/// `Capabilities::single_stream().with_max_streams(8).with_encrypted(true)`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// How many streams may be open at once on one connection: every one of them can be
    /// opened by the side that connected, and accepted by the other. 1 for a single SSH
    /// channel or a pipe, whose one stream is what both `open_stream` and `accept_stream`
    /// return; a further `open_stream` fails instead of waiting. Never 0.
    pub max_streams: u32,
    /// Whether the bytes are encrypted and integrity-protected between the two ends (SSH,
    /// TLS/QUIC), so that nothing on the path can read or alter them unnoticed.
    pub encrypted: bool,
    /// Whether every stream runs its own congestion controller — separate TCP connections, as
    /// `ssh-pool`'s lanes are — so that N streams take about N fair shares of a shared
    /// bottleneck and a loss on one slows only that one. False when the streams share one
    /// controller (the streams of one QUIC connection), when there is only one stream, and
    /// when no network is involved (`mem`).
    pub independent_congestion: bool,
    /// Whether the connection can also carry unreliable, unordered datagrams beside its
    /// streams (QUIC DATAGRAM frames, RFC 9221, when both ends enabled them). The boundary has
    /// no datagram API yet: this tells the negotiator what the path could do.
    pub datagrams: bool,
    /// Whether both ends see the same filesystem (the in-process transport): the receiver may
    /// then copy a file by path instead of receiving its bytes. A claim that is not true makes
    /// the receiver read whatever lies at the sender's paths on its own side.
    pub shared_filesystem: bool,
}

impl Capabilities {
    /// A single reliable stream, nothing else: not encrypted, no datagrams, no shared
    /// filesystem. The `with_*` builders add to it.
    pub fn single_stream() -> Self {
        Capabilities {
            max_streams: 1,
            encrypted: false,
            independent_congestion: false,
            datagrams: false,
            shared_filesystem: false,
        }
    }

    /// Builder: how many streams may be open at once (at least 1; 0 is taken as 1).
    pub fn with_max_streams(mut self, n: u32) -> Self {
        self.max_streams = n.max(1);
        self
    }

    /// Builder: whether both ends share the filesystem.
    pub fn with_shared_filesystem(mut self, shared: bool) -> Self {
        self.shared_filesystem = shared;
        self
    }

    /// Builder: whether the transport encrypts.
    pub fn with_encrypted(mut self, encrypted: bool) -> Self {
        self.encrypted = encrypted;
        self
    }

    /// Builder: whether each stream has its own congestion controller.
    pub fn with_independent_congestion(mut self, independent: bool) -> Self {
        self.independent_congestion = independent;
        self
    }

    /// Builder: whether unreliable datagrams are available beside the streams.
    pub fn with_datagrams(mut self, datagrams: bool) -> Self {
        self.datagrams = datagrams;
        self
    }
}

/// What a connection can tell about its network path, where it can. Every field is optional;
/// a plugin starts from [`PathStats::default`] (nothing known) and adds what it measures with
/// the `with_*` builders.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PathStats {
    /// Smoothed round-trip time.
    pub rtt: Option<Duration>,
    /// Congestion window in bytes.
    pub cwnd: Option<u64>,
    /// Bytes sent so far, counted on the wire (headers and retransmissions included where the
    /// transport can tell).
    pub bytes_sent: Option<u64>,
    /// Bytes received so far, counted as `bytes_sent` is.
    pub bytes_received: Option<u64>,
    /// Of `bytes_sent`, those the transport found lost (and sent again), where it can tell:
    /// what was sent less these is what the path delivered.
    pub bytes_lost: Option<u64>,
}

impl PathStats {
    /// Builder: the smoothed round-trip time.
    pub fn with_rtt(mut self, rtt: Duration) -> Self {
        self.rtt = Some(rtt);
        self
    }

    /// Builder: the congestion window in bytes.
    pub fn with_cwnd(mut self, cwnd: u64) -> Self {
        self.cwnd = Some(cwnd);
        self
    }

    /// Builder: the bytes of `bytes_sent` found lost.
    pub fn with_lost(mut self, lost: u64) -> Self {
        self.bytes_lost = Some(lost);
        self
    }

    /// What the path delivered of what was sent: `bytes_sent` less `bytes_lost`.
    pub fn bytes_delivered(&self) -> Option<u64> {
        self.bytes_sent
            .map(|s| s.saturating_sub(self.bytes_lost.unwrap_or(0)))
    }

    /// Builder: the bytes sent and received so far.
    pub fn with_bytes(mut self, sent: u64, received: u64) -> Self {
        self.bytes_sent = Some(sent);
        self.bytes_received = Some(received);
        self
    }
}

/// Where to connect: the remote part of `[user@]host[:port]:path` or a URL. Built with
/// [`Endpoint::host`] and the `with_*` builders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint {
    /// Host name or address (for the in-process transport, the listener's name).
    pub host: String,
    /// Login name, if given.
    pub user: Option<String>,
    /// Port, if given.
    pub port: Option<u16>,
    /// The path or module path on the peer.
    pub path: String,
    /// For transports that start the peer themselves (remote shells): the command line to run
    /// there, e.g. `["arsync", "--server", "-rlpt", ".", "/dest"]`.
    pub remote_command: Vec<String>,
}

impl Endpoint {
    /// An endpoint naming only a host.
    pub fn host(host: impl Into<String>) -> Self {
        Endpoint {
            host: host.into(),
            ..Endpoint::default()
        }
    }

    /// Builder: the login name.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Builder: the port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Builder: the path or module path on the peer.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Builder: the command a remote-shell transport runs on the peer.
    pub fn with_remote_command(
        mut self,
        words: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.remote_command = words.into_iter().map(Into::into).collect();
        self
    }
}

/// What a listening transport is told. Built with [`ListenConfig::bind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenConfig {
    /// Address or name to listen on.
    pub bind: String,
}

impl ListenConfig {
    /// Listen on `bind`.
    pub fn bind(bind: impl Into<String>) -> Self {
        ListenConfig { bind: bind.into() }
    }
}

/// Credentials and trust settings handed to [`TransportFactory::connect`]. The auth crate fills
/// this in; transports that need nothing ignore it. Built with [`AuthConfig::default`] (no
/// credentials) and the `with_*` builders.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// A bearer token to present, if any.
    pub token: Option<String>,
}

impl AuthConfig {
    /// Builder: the bearer token to present.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// An error of the layer below a transport (an `io::Error`, a QUIC or SSH library's error, an
/// `arsync_auth::AuthError`), kept as the typed source of a [`TransportError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The transport boundary error: one type for everything a transport can report, `#[non_exhaustive]`,
/// whose variants say whose doing the failure was (as rustls's `Error` does):
///
/// - the caller's: [`Unknown`](Self::Unknown), [`Unsupported`](Self::Unsupported);
/// - reaching the peer: [`Connect`](Self::Connect) (in our own words),
///   [`Unreachable`](Self::Unreachable) (a step failed with the typed error of the layer
///   below), [`Setup`](Self::Setup) (this side's TLS configuration, known-servers file, …);
/// - the peer's decision: [`Auth`](Self::Auth), [`Refused`](Self::Refused),
///   [`PeerExited`](Self::PeerExited);
/// - the peer broke the transport's own protocol: [`PeerMisbehaved`](Self::PeerMisbehaved);
/// - the connection itself: [`Closed`](Self::Closed), [`Io`](Self::Io).
///
/// Where a lower layer's error caused the failure it is kept as the [`source`]
/// (`std::error::Error::source`), not flattened to text; the message still shows it.
///
/// [`source`]: std::error::Error::source
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No transport of that name is registered.
    #[error("unknown transport {name:?} (registered: {registered})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// What is registered, comma-separated.
        registered: String,
    },
    /// The transport cannot do what was asked (e.g. listen, or open a second stream).
    #[error("transport {transport} does not support {what}")]
    Unsupported {
        /// The transport.
        transport: String,
        /// What it cannot do.
        what: &'static str,
    },
    /// The peer could not be reached, for a reason this side states (no listener of that name,
    /// no offer from the remote, a bad remote-shell command line): nothing below failed.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
    /// A step of reaching the peer failed with an error of the layer below: resolving its
    /// name, the TCP, SSH or QUIC handshake, starting a helper process.
    #[error("cannot connect to {endpoint}: {step}: {source}")]
    Unreachable {
        /// Where we tried.
        endpoint: String,
        /// The step that failed ("resolving the name", "QUIC handshake", …).
        step: String,
        /// The lower layer's error.
        source: BoxError,
    },
    /// This side could not set the transport up: its TLS configuration, the known-servers
    /// file, a key — before or apart from anything the peer did.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: String,
        /// The error that stopped it.
        source: BoxError,
    },
    /// The peer refused our credentials or we refused its identity.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// A listening peer refused the session (bad token, unknown module, read-only, …).
    #[error("{message}")]
    Refused {
        /// The rsync exit code the peer chose.
        code: u8,
        /// The peer's reason.
        message: String,
    },
    /// The peer broke the transport's own protocol (its admission exchange, a lane hand-off).
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(#[from] PeerMisbehaved),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The peer's process (started by the transport) ended badly.
    #[error("remote command {command:?} {status}{}", said_suffix(.said))]
    PeerExited {
        /// The command.
        command: String,
        /// How it ended ("exit status: 127", …).
        status: String,
        /// Its exit code, if it exited (rather than being killed).
        code: Option<i32>,
        /// What it said on stderr that the transport held back instead of showing (a remote
        /// shell's "command not found": the caller may fall back to rsync's protocol quietly,
        /// or show it).
        said: Vec<String>,
    },
    /// An I/O error on the transport (a lower layer's own error, where it has one, is inside
    /// the `io::Error`: `get_ref()` and downcast).
    #[error("transport I/O: {0}")]
    Io(#[from] io::Error),
    /// Logging in over SSH failed (the host unreachable, its key unknown or changed, our keys
    /// refused): what the `ssh` program exits 255 for, and rsync with it. Built-in SSH clients
    /// say so with [`TransportError::ssh_login`].
    #[error("{0}")]
    SshLogin(Box<TransportError>),
}

/// How a peer broke a transport's own protocol — the typed sub-kind of
/// [`TransportError::PeerMisbehaved`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// A message of the transport's exchange did not decode.
    #[error("undecodable {what}: {source}")]
    Undecodable {
        /// Which message ("admission request", …).
        what: &'static str,
        /// What the decoder found.
        source: DecodeError,
    },
    /// Bytes followed a message after which the peer must wait for an answer.
    #[error("{extra} unexpected bytes after the {what}")]
    TrailingBytes {
        /// Which message.
        what: &'static str,
        /// How many bytes followed it.
        extra: usize,
    },
}

impl TransportError {
    /// A step of reaching `endpoint` failed with `source` ([`TransportError::Unreachable`]).
    pub fn unreachable(
        endpoint: impl Into<String>,
        step: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        TransportError::Unreachable {
            endpoint: endpoint.into(),
            step: step.into(),
            source: source.into(),
        }
    }

    /// Setting up `what` failed with `source` ([`TransportError::Setup`]).
    pub fn setup(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        TransportError::Setup {
            what: what.into(),
            source: source.into(),
        }
    }

    /// `e` as a failed SSH login, if it is a failure to reach or authenticate.
    pub fn ssh_login(e: TransportError) -> TransportError {
        match e {
            TransportError::Connect { .. }
            | TransportError::Unreachable { .. }
            | TransportError::Setup { .. }
            | TransportError::Auth(_) => TransportError::SshLogin(Box::new(e)),
            other => other,
        }
    }

    /// The rsync exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            TransportError::SshLogin(_) => ExitCode::Unexplained,
            TransportError::Unknown { .. } | TransportError::Unsupported { .. } => ExitCode::Syntax,
            TransportError::Connect { .. }
            | TransportError::Unreachable { .. }
            | TransportError::Setup { .. }
            | TransportError::Auth(_) => ExitCode::StartClient,
            TransportError::PeerMisbehaved(_) => ExitCode::StreamIo,
            TransportError::Closed | TransportError::Io(_) => ExitCode::SocketIo,
            TransportError::Refused { code, .. } => {
                ExitCode::from_code(*code).unwrap_or(ExitCode::StartClient)
            }
            TransportError::PeerExited { code, .. } => code
                .and_then(|c| u8::try_from(c).ok())
                .and_then(ExitCode::from_code)
                .unwrap_or(ExitCode::StreamIo),
        }
    }
}

/// A kind of transport, registered by name (`mem`, `ssh`, `quic`, …).
pub trait TransportFactory: Send + Sync + fmt::Debug {
    /// The name users pass to `--transport`.
    fn name(&self) -> &str;
    /// What connections of this kind can do, before connecting.
    fn capabilities(&self) -> Capabilities;
    /// Connect to a peer.
    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>>;
    /// Listen for peers; transports that cannot serve keep this default.
    fn listen<'a>(
        &'a self,
        _config: &'a ListenConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, TransportError>> {
        let name = self.name().to_owned();
        Box::pin(async move {
            Err(TransportError::Unsupported {
                transport: name,
                what: "listening",
            })
        })
    }
}

/// An established connection to one peer.
pub trait Connection: Send + Sync + fmt::Debug {
    /// Open a new stream to the peer.
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>>;
    /// Wait for the peer to open a stream.
    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>>;
    /// What this connection can do.
    fn capabilities(&self) -> Capabilities;
    /// What the connection knows of its path, where it can tell.
    fn path_stats(&self) -> Option<PathStats> {
        None
    }
    /// Close the connection; streams still open see end-of-stream.
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>>;
    /// Issue 18: where the two ends of an in-process connection hand each other the sender's
    /// file list beside its frames ([`LocalShelf`]); `None` for any connection to another
    /// process (the default).
    fn local_shelf(&self) -> Option<Arc<LocalShelf>> {
        None
    }
}

/// Issue 18: the sender's file list, handed to a receiver in the same process so that a
/// local copy holds one list, not the sender's and a decoded copy. Both ends of an in-process
/// connection hold the same shelf; the sender puts its list here before it sends the list's
/// frames, the receiver takes it when those frames begin (and reads them without keeping
/// their entries). Nothing crosses the wire for it: the frames are those of any session.
#[derive(Debug, Default)]
pub struct LocalShelf {
    list: std::sync::Mutex<Option<Arc<crate::flist::FileList>>>,
    handed_over: std::sync::atomic::AtomicBool,
}

impl LocalShelf {
    /// The sender's list, from now until a receiver takes it.
    pub fn put(&self, list: Arc<crate::flist::FileList>) {
        if let Ok(mut slot) = self.list.lock() {
            *slot = Some(list);
        }
    }

    /// The list put here, once (`None` if none was put or it was taken).
    pub fn take(&self) -> Option<Arc<crate::flist::FileList>> {
        let list = self.list.lock().ok()?.take();
        if list.is_some() {
            self.handed_over
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        list
    }

    /// Whether a receiver took a list from here.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A listening transport.
pub trait Listener: Send + Sync + fmt::Debug {
    /// Wait for the next peer.
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>>;
    /// Where it listens, for display.
    fn local_addr(&self) -> String;
}

/// The transports a program knows, by name. Plain data: the caller builds it.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    factories: Vec<Arc<dyn TransportFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Add a transport; a later one of the same name replaces the earlier.
    pub fn with(mut self, factory: impl TransportFactory + 'static) -> Self {
        self.register(Arc::new(factory));
        self
    }

    /// Add a shared transport; a later one of the same name replaces the earlier.
    pub fn register(&mut self, factory: Arc<dyn TransportFactory>) {
        self.factories.retain(|f| f.name() != factory.name());
        self.factories.push(factory);
    }

    /// The transport registered under `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn TransportFactory>, TransportError> {
        self.factories
            .iter()
            .find(|f| f.name() == name)
            .cloned()
            .ok_or_else(|| TransportError::Unknown {
                name: name.to_owned(),
                registered: self.names().join(", "),
            })
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.factories.iter().map(|f| f.name().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn builders_set_every_field() {
        let caps = Capabilities::single_stream()
            .with_max_streams(0)
            .with_encrypted(true)
            .with_independent_congestion(true)
            .with_datagrams(true)
            .with_shared_filesystem(true);
        assert_eq!(caps.max_streams, 1, "0 streams is no connection");
        assert!(caps.encrypted && caps.independent_congestion && caps.datagrams);
        assert!(caps.shared_filesystem);
        let stats = PathStats::default()
            .with_rtt(Duration::from_millis(5))
            .with_cwnd(10)
            .with_bytes(1, 2);
        assert_eq!(
            (
                stats.rtt,
                stats.cwnd,
                stats.bytes_sent,
                stats.bytes_received
            ),
            (Some(Duration::from_millis(5)), Some(10), Some(1), Some(2))
        );
        let ep = Endpoint::host("h")
            .with_user("u")
            .with_port(22)
            .with_path("/p")
            .with_remote_command(["arsync", "--server"]);
        assert_eq!(
            (ep.user.as_deref(), ep.port, ep.path.as_str()),
            (Some("u"), Some(22), "/p")
        );
        assert_eq!(ep.remote_command, ["arsync", "--server"]);
        assert_eq!(
            AuthConfig::default().with_token("t").token.as_deref(),
            Some("t")
        );
    }

    #[test]
    fn lower_layer_errors_stay_typed() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = TransportError::unreachable("h:1", "TCP connect", refused);
        assert!(e
            .to_string()
            .starts_with("cannot connect to h:1: TCP connect: "));
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            source.map(io::Error::kind),
            Some(io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(e.exit_code(), ExitCode::StartClient);
        let bad = TransportError::from(PeerMisbehaved::TrailingBytes {
            what: "admission request",
            extra: 3,
        });
        assert_eq!(bad.exit_code(), ExitCode::StreamIo);
        assert_eq!(
            bad.to_string(),
            "peer misbehaved: 3 unexpected bytes after the admission request"
        );
    }
}
