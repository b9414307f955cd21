//! Negotiation: how to reach a remote side and what to speak there, decided from what the
//! user asked ([`Request`]) and what the probes found ([`Observations`]) — pure and sans-IO.
//!
//! A driver (the `arsync` binary) asks [`next_step`] what to do: run a [`Probe`] and record
//! what it found in the observations, then ask again; connect as the [`Plan`] says; or give
//! up ([`GiveUp`]). Every decision in a plan is a [`Decision`]: the choice and the reason
//! `--explain` prints. Each concern has its own decision function in [`decide`] (which
//! transport path, how long the QUIC handshake may take, what a failed handshake leads to,
//! what a host without arsync leads to, which remote shell carries rsync's protocol, how many
//! streams), so a richer negotiator (RTT, rate, CPU speed, a per-host cache) grows one
//! concern at a time.
//!
//! A merkle plan also carries the session's parameters ([`params`]: chunk sizing, directory
//! levels per round trip, streams, compression, whole files), decided from the link the
//! probes saw and this machine's speed ([`cpu`] is the speed probe's cache record).
//!
//! `--transport=auto` with `host:path` today: log in over SSH and start the remote arsync with
//! `--bootstrap=quic`; it offers QUIC → QUIC if the handshake finishes within 3 s, else the
//! same SSH login carries the session (`stdio`); exit 127 (no arsync there) → rsync's protocol
//! over ssh, when `--protocol=auto` allows it.
//!
//! Not here: running probes (the SSH login and reading the offer are
//! `arsync_transports::bootstrap`, joined by the binary's driver), the offer's bytes
//! ([`crate::proto::bootstrap`]), the transports themselves, or printing.

// Issue 17: auto's transport to `arsync serve` (MPTCP set-up, web ports).
pub mod daemon_paths;
pub mod decide;
// Issue 16, per-host memory:
pub mod memory;
// Issue 16, overlay: Tailscale and Teleport observations and decisions.
pub mod overlay;
// Issue 16, adapt during the run:
pub mod adapt;
// Issue 16, params:
pub mod cpu;
pub mod params;
#[cfg(test)]
mod params_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use decide::next_step;

/// `--transport=auto`: let negotiation choose.
pub const AUTO: &str = "auto";
/// How many streams a transport that has several uses when nothing says otherwise.
pub const DEFAULT_STREAMS: u32 = 4;
/// How long `--transport=auto` gives the QUIC handshake before the SSH login carries the
/// session instead.
pub const AUTO_HANDSHAKE_LIMIT: Duration = Duration::from_secs(3);

/// The transport names negotiation gives a meaning to (a registry may hold others).
pub mod names {
    /// A remote shell (the system `ssh`, or the built-in client with `--ssh=native`).
    pub const SSH: &str = "ssh";
    /// The built-in SSH client, whatever `--ssh` says.
    pub const SSH_NATIVE: &str = "ssh-native";
    /// Several SSH connections joined into one session.
    pub const SSH_POOL: &str = "ssh-pool";
    /// QUIC: to `arsync serve`, or bootstrapped over an SSH login.
    pub const QUIC: &str = "quic";
    /// In-process streams (a local sync).
    pub const MEM: &str = "mem";
    // Issue 17, mptcp:
    /// TLS over one TCP connection to `arsync serve`.
    pub const TLS: &str = "tls";
    /// TLS over one Multipath TCP connection to `arsync serve`.
    pub const MPTCP: &str = "mptcp";
    // Issue 17, h2:
    /// HTTP/2 over TLS to `arsync serve`, a stream per lane.
    pub const H2: &str = "h2";
    // Issue 17, h3:
    /// HTTP/3 to `arsync serve`, on its UDP port.
    pub const H3: &str = "h3";
}

/// What `--transport` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportAsk {
    /// `auto` (the default): negotiation chooses.
    Auto,
    /// A registered transport's name.
    Named(String),
}

impl TransportAsk {
    /// `--transport=ARG`.
    pub fn from_arg(arg: &str) -> TransportAsk {
        if arg == AUTO {
            TransportAsk::Auto
        } else {
            TransportAsk::Named(arg.to_owned())
        }
    }
}

impl fmt::Display for TransportAsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportAsk::Auto => f.write_str(AUTO),
            TransportAsk::Named(n) => f.write_str(n),
        }
    }
}

/// What `--protocol` (and `--rsync-path`) asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolAsk {
    /// `--protocol=auto` without `--rsync-path`: arsync's merkle protocol, rsync's where the
    /// remote host has only rsync.
    Auto,
    /// `--protocol=merkle`, or `auto` with `--rsync-path` (the user named the remote program:
    /// it is not replaced by rsync).
    Merkle,
    /// `--protocol=rsync` or `--protocol=NUM`: rsync's protocol, offering at most this version.
    Rsync {
        /// The newest version to offer.
        max_version: u8,
    },
}

/// Where the command line points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `[user@]host:path`: a login through a remote shell starts the remote side.
    Shell {
        /// The host as written.
        host: String,
    },
    /// `arsync://host[:port]/module/path`: a listening `arsync serve`.
    ArsyncDaemon {
        /// The host as written.
        host: String,
        /// Its UDP port.
        port: u16,
    },
    /// `rsync://host[:port]/…` or `host::…`: an rsync daemon.
    RsyncDaemon {
        /// The host as written.
        host: String,
        /// Its TCP port.
        port: u16,
    },
}

/// What negotiation knows of one registered transport (from its factory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportInfo {
    /// The name it is registered under.
    pub name: String,
    /// Both ends are on this machine (the factory says they share the filesystem): it cannot
    /// reach a remote host.
    pub local_only: bool,
    /// How many streams its connections carry at most.
    pub max_streams: u32,
}

/// What the user asked, and what this build has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where to.
    pub target: Target,
    /// `--transport`.
    pub transport: TransportAsk,
    /// `--protocol` (with `--rsync-path`).
    pub protocol: ProtocolAsk,
    /// `--streams`, if given.
    pub streams: Option<u32>,
    /// The registry's transports, in registration order.
    pub registered: Vec<TransportInfo>,
    /// How long `--transport=quic` gives the handshake (the QUIC tuning's limit).
    pub quic_handshake_limit: Duration,
    // Issue 16, params:
    /// The session parameters the command line fixed.
    pub params: params::ParamsAsk,
    /// QUIC's receive window per stream (the QUIC tuning's), for the streams decision.
    pub quic_window: u64,
    // Issue 17, h2:
    /// An HTTP proxy applies to the host (`--proxy`, or `HTTPS_PROXY` not excluded by
    /// `NO_PROXY`): only `h2` goes through one.
    pub http_proxy: bool,
    // Issue 17, web ports:
    /// Ports besides 443 whose TCP side is an HTTP front (`ARSYNC_WEB_PORTS`), where `auto`
    /// speaks HTTP to `arsync serve` ([`daemon_paths::web_port`]).
    pub web_ports: Vec<u16>,
}

/// What the probes found so far; each probe fills its field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    /// Whether the remote host runs arsync: its bootstrap offer, or exit 127 — from the
    /// bootstrap login, or from a session's remote command.
    pub remote: Option<RemoteArsync>,
    /// How the QUIC handshake to the offer went.
    pub quic: Option<QuicSeen>,
    // Issue 16, per-host memory:
    /// What is remembered of the host and still holds (loaded by the driver before the
    /// first step): a fresh "UDP blocked" skips the QUIC handshake, a fresh "only rsync"
    /// the bootstrap login.
    pub remembered: memory::HostFacts,
    // Issue 16, overlay: filled before the first step for `host:path` under `auto`.
    /// Whether the host is a tailnet peer or a Teleport node (local probes only).
    pub overlay: Option<overlay::OverlaySeen>,
    // Issue 16, params:
    /// This machine's hashing, chunking and compression speed.
    pub cpu: Option<params::CpuSpeed>,
    /// How well a sample of the files to send compresses (a push).
    pub sample: Option<params::Compressibility>,
    // Issue 16, remote CPU:
    /// How fast the remote end chunks, bytes per second, as its hello said (after a session).
    pub remote_cpu: Option<u64>,
    // Issue 16/17, TCP first:
    /// `arsync://` under `auto`: why TLS to the daemon's TCP port could not connect, if it
    /// was tried and could not.
    pub daemon_tcp_failed: Option<String>,
    // Issue 17, auto → mptcp:
    /// `arsync://` under `auto`: whether this host is set up for Multipath TCP over more than
    /// one path (asked for by [`Probe::LocalMptcp`]).
    pub mptcp: Option<daemon_paths::MptcpSetup>,
    // Issue 16, little moved:
    /// What the session moved (after a session that finished), to remember.
    pub moved: Option<memory::RunMoved>,
}

/// What the remote host's arsync (or its absence) showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteArsync {
    /// `arsync --server --bootstrap=quic` printed its offer.
    OffersQuic(QuicOffered),
    /// The remote command exited 127 (command not found): no arsync on the remote host.
    NotFound,
}

/// The parts of a bootstrap offer negotiation looks at (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicOffered {
    /// How long the login took until the offer arrived.
    pub login_took: Duration,
    /// The address the server saw our SSH connection arrive at, if it could tell.
    pub addr: Option<IpAddr>,
    /// Its UDP port.
    pub port: u16,
    /// Its certificate's fingerprint, as text.
    pub certificate: String,
    // Issue 16, native login:
    /// The login's TCP round-trip time as the kernel measured it (the built-in SSH client's
    /// direct connections; `None` through the system `ssh` or a proxy).
    pub login_rtt: Option<Duration>,
}

/// How the QUIC handshake to an offer went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuicSeen {
    /// Handshake done and admitted.
    Established {
        /// Where.
        to: SocketAddr,
        /// How long it took.
        took: Duration,
    },
    /// No handshake within the limit: UDP does not get through (blocked or dropped).
    TimedOut {
        /// Where.
        to: SocketAddr,
        /// When it was given up.
        after: Duration,
        /// What the transport said.
        reason: String,
    },
    /// The handshake failed before the limit (unreachable, refused, a certificate not the
    /// offered one).
    Failed {
        /// Where.
        to: SocketAddr,
        /// When.
        after: Duration,
        /// What the transport said.
        reason: String,
    },
    /// The offer named no address and the host name does not resolve.
    NoAddress {
        /// The name that did not resolve.
        host: String,
        /// What the resolver said.
        reason: String,
    },
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run this probe, record what it found, and ask again.
    Probe(Probe),
    /// Connect and run the session as planned.
    Connect(Plan),
    /// Nothing that was allowed works: fail, with the error the probe met.
    GiveUp(GiveUp),
}

/// A probe the driver runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Log in with the registered transport `via` and run the server command with
    /// `--bootstrap=quic`; record [`RemoteArsync`] (the offer, or exit 127 before it).
    BootstrapLogin {
        /// The remote shell's registered name.
        via: String,
    },
    /// Connect by QUIC to a listening `arsync serve` (`arsync://` under `auto`), giving the
    /// handshake at most `limit`; record [`QuicSeen`] and keep the connection if admitted. A
    /// refusal (token, module, certificate) is not an observation but the run's error.
    DaemonQuic {
        /// How long the handshake may take.
        limit: Duration,
    },
    /// Connect by QUIC to the offer, giving the handshake at most `limit`; record
    /// [`QuicSeen`].
    QuicHandshake {
        /// How long the handshake may take.
        limit: Duration,
    },
    // Issue 17, auto → mptcp:
    /// Read this host's Multipath TCP set-up (`net.mptcp.enabled`, the path manager's
    /// endpoints); record [`daemon_paths::MptcpSetup`]. Local, cheap, never fails.
    LocalMptcp,
}

/// Why negotiation gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveUp {
    /// What failed.
    pub kind: GiveUpKind,
    /// For `--explain`.
    pub reason: String,
    /// What the user can do, added to the error.
    pub advice: Option<&'static str>,
}

/// What failed, when negotiation gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpKind {
    /// No arsync on the remote host, and rsync's protocol was not allowed in its place.
    RemoteArsyncMissing,
    /// QUIC was asked for and did not get through.
    QuicUnavailable,
    /// Issue 16/17: `arsync serve` answered neither on its TCP nor on its UDP port.
    DaemonUnreachable,
}

/// One choice and why it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    /// What was chosen.
    pub choice: T,
    /// Why, for `--explain`.
    pub reason: String,
}

impl<T> Decision<T> {
    /// `choice`, because `reason`.
    pub fn new(choice: T, reason: impl Into<String>) -> Self {
        Decision {
            choice,
            reason: reason.into(),
        }
    }
}

/// How the session's streams are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionPath {
    /// The QUIC connection the handshake probe made (the bootstrap's SSH login stays open
    /// beside it, holding the remote server's lifetime).
    BootstrapQuic,
    /// The bootstrap's own SSH login: `stdio` is written on it and the session follows there.
    BootstrapChannel,
    /// A new connection through the registered transport of this name.
    Registered(String),
    /// QUIC to a listening `arsync serve` (named `quic`, or under `auto` where its TCP port
    /// cannot be reached).
    ArsyncDaemon,
    /// TCP to an rsync daemon.
    RsyncDaemon,
    // Issue 16/17: named; under `auto`, `tls` first, `mptcp` where this host has more than
    // one path, `h2` where an HTTP proxy is set or the port is a web port, `h3` on a web
    // port whose TCP side cannot be reached.
    /// A listening `arsync serve` through this transport: `tls`, `mptcp`, `h2` or `h3`.
    ArsyncDaemonVia(String),
}

impl fmt::Display for ConnectionPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionPath::BootstrapQuic => f.write_str(names::QUIC),
            ConnectionPath::BootstrapChannel => write!(f, "{}, on the same login", names::SSH),
            ConnectionPath::Registered(name) => f.write_str(name),
            ConnectionPath::ArsyncDaemon => f.write_str("quic to arsync serve"),
            ConnectionPath::RsyncDaemon => f.write_str("the rsync daemon's TCP port"),
            ConnectionPath::ArsyncDaemonVia(name) => write!(f, "{name} to arsync serve"),
        }
    }
}

/// Which protocol the session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVariant {
    /// arsync's merkle protocol (both ends arsync).
    Merkle,
    /// rsync's protocol.
    Rsync {
        /// The newest version to offer; `None`: the newest this build speaks.
        max_version: Option<u8>,
        /// What to run on the remote host.
        remote_program: RemoteProgram,
    },
}

/// The program a remote shell runs for rsync's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteProgram {
    /// `--rsync-path` (or its default).
    AsConfigured,
    /// `rsync`: the remote host has no arsync.
    Rsync,
}

/// How to connect and what to speak, each with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How the streams are reached.
    pub connection: Decision<ConnectionPath>,
    /// What is spoken on them.
    pub protocol: Decision<ProtocolVariant>,
    /// How many streams the session may use.
    pub streams: Decision<u32>,
    // Issue 16, params:
    /// The merkle session's parameters (`None` for rsync's protocol).
    pub params: Option<Box<params::Params>>,
}

impl Plan {
    /// The `--explain` lines (without the `explain: ` prefix).
    pub fn explain(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match self.protocol.choice {
            ProtocolVariant::Rsync { .. } => lines.push(format!(
                "decision: rsync's protocol over {} ({})",
                self.connection.choice, self.protocol.reason
            )),
            ProtocolVariant::Merkle => {
                lines.push(format!(
                    "decision: {} ({})",
                    self.connection.choice, self.connection.reason
                ));
                lines.push(format!(
                    "decision: arsync's merkle protocol ({})",
                    self.protocol.reason
                ));
            }
        }
        let n = self.streams.choice;
        lines.push(format!(
            "decision: {n} stream{} ({})",
            if n == 1 { "" } else { "s" },
            self.streams.reason
        ));
        lines
    }
}

/// A request negotiation cannot serve: the command line is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiateError {
    /// No transport of that name.
    #[error("--transport={name}: no such transport (this build has {}, {})", AUTO, .registered.join(", "))]
    UnknownTransport {
        /// The name asked for.
        name: String,
        /// What is registered.
        registered: Vec<String>,
    },
    /// A transport whose ends share one machine, asked to reach a remote host.
    #[error("--transport={name} cannot reach a remote host (both its ends are in this process); for HOST:PATH use {}", .remote.join(", "))]
    LocalOnly {
        /// The name asked for.
        name: String,
        /// The choices that can reach one.
        remote: Vec<String>,
    },
    /// Issue 17, mptcp: a transport that reaches only a listening `arsync serve`, asked to
    /// reach `HOST:PATH`.
    #[error("--transport={name} reaches a listening arsync serve: name it as arsync://HOST[:PORT]/MODULE/PATH")]
    DaemonOnly {
        /// The name asked for.
        name: String,
    },
}

impl From<NegotiateError> for crate::SyncError {
    fn from(e: NegotiateError) -> Self {
        crate::SyncError::Usage(e.to_string())
    }
}

/// Whether `e` says the remote command was not found (a remote shell's exit 127): no arsync
/// on the remote host — an observation for [`RemoteArsync::NotFound`].
pub fn is_command_not_found(e: &crate::transport::TransportError) -> bool {
    matches!(
        e,
        crate::transport::TransportError::PeerExited {
            code: Some(127),
            ..
        }
    )
}

/// `12 ms`: a duration as `--explain` shows it.
pub fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for QuicOffered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok in {}", millis(self.login_took))?;
        // Issue 16, native login:
        if let Some(rtt) = self.login_rtt {
            write!(f, ", TCP RTT {:.1} ms", rtt.as_secs_f64() * 1e3)?;
        }
        write!(
            f,
            " (QUIC offered on UDP port {}, certificate {})",
            self.port, self.certificate
        )
    }
}

impl fmt::Display for QuicSeen {
    /// `QUIC handshake to ADDR: ok in 2 ms` or `…: failed after 3000 ms: why`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuicSeen::Established { to, took } => {
                write!(f, "QUIC handshake to {to}: ok in {}", millis(*took))
            }
            QuicSeen::TimedOut { to, after, reason } | QuicSeen::Failed { to, after, reason } => {
                write!(
                    f,
                    "QUIC handshake to {to}: failed after {}: {reason}",
                    millis(*after)
                )
            }
            QuicSeen::NoAddress { host, reason } => {
                write!(f, "QUIC handshake to {host}: no address: {reason}")
            }
        }
    }
}
