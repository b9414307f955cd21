//! The transport boundary: what a transport gives the engine, and the registry of transports.
//!
//! A transport is anything that yields reliable, ordered, bidirectional byte streams to a peer
//! running arsync's (or rsync's) other role. This module owns the traits
//! ([`TransportFactory`], [`Connection`], [`Listener`]), the data they exchange
//! ([`Capabilities`], [`PathStats`], [`Endpoint`]) and the boundary error ([`TransportError`]).
//! It implements no transport: those live in `arsync-transports`, or in a user's crate.
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

/// What a transport (or one connection of it) can do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// How many streams may be open at once (1 for a single SSH channel or a pipe).
    pub max_streams: u32,
    /// Whether the bytes are encrypted on the way.
    pub encrypted: bool,
    /// Whether each stream has its own congestion control (several TCP connections do, QUIC
    /// streams of one connection do not).
    pub independent_congestion: bool,
    /// Whether unreliable datagrams are available.
    pub datagrams: bool,
    /// Whether both ends see the same filesystem (the in-process transport): the receiver may
    /// then copy a file by path instead of receiving its bytes.
    pub shared_filesystem: bool,
}

impl Capabilities {
    /// A single reliable stream, nothing else.
    pub fn single_stream() -> Self {
        Capabilities {
            max_streams: 1,
            encrypted: false,
            independent_congestion: false,
            datagrams: false,
            shared_filesystem: false,
        }
    }

    /// Builder: the number of streams.
    pub fn with_max_streams(mut self, n: u32) -> Self {
        self.max_streams = n;
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
}

/// What a connection can tell about its network path, where it can.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PathStats {
    /// Smoothed round-trip time.
    pub rtt: Option<Duration>,
    /// Congestion window in bytes.
    pub cwnd: Option<u64>,
    /// Bytes sent so far.
    pub bytes_sent: Option<u64>,
    /// Bytes received so far.
    pub bytes_received: Option<u64>,
}

/// Where to connect: the remote part of `[user@]host[:port]:path` or a URL.
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
}

/// What a listening transport is told.
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
/// this in; transports that need nothing ignore it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// A bearer token to present, if any.
    pub token: Option<String>,
}

/// The transport boundary error.
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
    /// The peer could not be reached.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// Why it failed.
        reason: String,
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
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The peer's process (started by the transport) ended badly.
    #[error("remote command {command:?} {status}")]
    PeerExited {
        /// The command.
        command: String,
        /// How it ended ("exit status: 127", …).
        status: String,
        /// Its exit code, if it exited (rather than being killed).
        code: Option<i32>,
    },
    /// An I/O error on the transport.
    #[error("transport I/O: {0}")]
    Io(#[from] io::Error),
}

impl TransportError {
    /// The rsync exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            TransportError::Unknown { .. } | TransportError::Unsupported { .. } => ExitCode::Syntax,
            TransportError::Connect { .. } | TransportError::Auth(_) => ExitCode::StartClient,
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
