//! # arsync
//!
//! The `arsync` command's library face: the default transport registry and the entry points
//! that join the engine's roles over a transport. The protocol logic is in [`arsync_core`];
//! the transports are in [`arsync_transports`].
//!
//! A local sync (`arsync -a SRC DEST`, both paths on this machine) runs the sender and the
//! receiver in this process, joined by the in-process `mem` transport: the same roles and the
//! same frames a remote sync uses.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub use arsync_core as core;
pub use arsync_transports as transports;

use arsync_core::engine::chmod::ChmodItems;
use arsync_core::engine::{
    run_receiver, run_sender, EventSink, ReceiverJob, SenderJob, Stats, SyncOptions,
};
use arsync_core::transport::{AuthConfig, Endpoint, ListenConfig, Registry};
use arsync_core::SyncError;

/// The outcome of a run: combined counters (errors end the run early instead).
#[derive(Debug)]
pub struct RunReport {
    /// The run's counters, as rsync reports them.
    pub stats: Arc<Stats>,
}

static LOCAL_SEQ: AtomicU64 = AtomicU64::new(0);

/// Sync local `sources` into local `dest`: both roles in this process over the registry's
/// `mem` transport.
pub async fn sync_local(
    registry: &Registry,
    sources: Vec<PathBuf>,
    dest: PathBuf,
    opts: SyncOptions,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    let mem = registry.get("mem")?;
    let name = format!(
        "local-{}-{}",
        std::process::id(),
        LOCAL_SEQ.fetch_add(1, Relaxed)
    );
    let listener = mem.listen(&ListenConfig::bind(name.clone())).await?;
    let sender_stats = Arc::new(Stats::default());
    let receiver_stats = Arc::new(Stats::default());
    let sender_job = SenderJob {
        sources,
        opts: opts.clone(),
        stats: sender_stats.clone(),
        sink: sink.clone(),
        report_items: false,
    };
    let sender = tokio::spawn(async move {
        let conn = listener.accept().await?;
        run_sender(&*conn, false, sender_job).await
    });
    let conn = mem
        .connect(&Endpoint::host(name), &AuthConfig::default())
        .await?;
    // The receiving half of a local copy is rsync's server, which rsync does not tell of
    // --munge-links: only the sending half un-munges.
    let mut opts = opts;
    opts.symlinks.munge_links = false;
    let received = run_receiver(
        &*conn,
        true,
        ReceiverJob {
            dest,
            opts,
            stats: receiver_stats.clone(),
            sink,
        },
    )
    .await;
    let sent = match sender.await {
        Ok(r) => r,
        Err(e) => Err(SyncError::Job(e)),
    };
    let _ = conn.close().await;
    // The receiver's error is the more precise one when both failed (the sender then only
    // saw the stream close).
    received?;
    sent?;
    Ok(RunReport {
        stats: Arc::new(Stats::combine(&sender_stats, &receiver_stats)),
    })
}

/// Which way a remote sync goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local sources to a remote destination: this side sends.
    Push,
    /// A remote source to a local destination: this side receives.
    Pull,
}

/// Run one role over `conn`: send `paths` (sources), or receive into `paths`' last entry.
async fn run_one_role(
    conn: &dyn arsync_core::transport::Connection,
    send: bool,
    open: bool,
    mut paths: Vec<PathBuf>,
    opts: SyncOptions,
    sink: Arc<dyn EventSink>,
) -> (Arc<Stats>, Result<(), SyncError>) {
    let stats = Arc::new(Stats::default());
    let result = if send {
        let job = SenderJob {
            sources: paths,
            opts,
            stats: stats.clone(),
            sink,
            // A sending client prints what the remote receiver asked for.
            report_items: open,
        };
        run_sender(conn, open, job).await
    } else {
        match paths.pop() {
            Some(dest) => {
                let job = ReceiverJob {
                    dest,
                    opts,
                    stats: stats.clone(),
                    sink,
                };
                run_receiver(conn, open, job).await
            }
            None => Err(SyncError::Usage("no destination".into())),
        }
    };
    (stats, result)
}

/// Sync over an established connection to a peer running the other role (`arsync --server`
/// started by a remote shell): push `local` sources, or pull into the `local[0]` destination.
/// The peer's process, if the transport started one, is reaped and its failure reported.
pub async fn sync_remote(
    conn: Box<dyn arsync_core::transport::Connection>,
    direction: Direction,
    local: Vec<PathBuf>,
    opts: SyncOptions,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    let push = direction == Direction::Push;
    // A pushing client shows the modes the receiver gives (`--chmod`), as rsync's does.
    let sink = match push {
        true => ChmodItems::wrap(sink, &opts.write.chmod).map_err(SyncError::Usage)?,
        false => sink,
    };
    let (stats, result) = run_one_role(&*conn, push, true, local, opts, sink).await;
    // After a failed session the peer is not waited for long (its process, if any, is
    // killed when the connection is dropped).
    let closed = match &result {
        Ok(()) => conn.close().await,
        Err(_) => tokio::time::timeout(std::time::Duration::from_secs(1), conn.close())
            .await
            .unwrap_or(Err(arsync_core::transport::TransportError::Closed)),
    };
    // A remote shell that could not find the command (exit 127) explains the failed session
    // best: the caller may then try rsync's protocol instead. One that failed itself (ssh
    // exits 255 when it cannot log in) too: rsync exits with that code.
    let closed = match (&result, closed) {
        (
            Err(_),
            Err(
                e @ arsync_core::transport::TransportError::PeerExited {
                    code: Some(127 | 255),
                    ..
                },
            ),
        ) => return Err(SyncError::Transport(e)),
        (_, c) => c,
    };
    // The session's error says more than the peer's exit status; report that only when the
    // session itself went well.
    result?;
    // The peer finished the session but may have had per-file problems (reported on its
    // stderr).
    peer_status(closed, &stats)?;
    Ok(RunReport { stats })
}

/// The other end of an rsync-protocol session.
pub enum RsyncPeer {
    /// `rsync --server` started through a remote shell.
    Shell(Box<dyn arsync_core::transport::Connection>),
    /// An rsync daemon at `host:port`, and how to log in.
    Daemon {
        /// Host name or address.
        host: String,
        /// TCP port (873 by default).
        port: u16,
        /// Module, arguments, user and password.
        login: arsync_core::engine::rsync::link::DaemonLogin,
        /// How to connect.
        socket: DaemonSocket,
    },
}

impl std::fmt::Debug for RsyncPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RsyncPeer::Shell(_) => f.write_str("RsyncPeer::Shell"),
            RsyncPeer::Daemon { host, port, .. } => write!(f, "RsyncPeer::Daemon({host}:{port})"),
        }
    }
}

/// Run `connect` for at most `seconds` (`--contimeout`), else fail with exit code 35.
pub async fn within_connect_timeout<T>(
    seconds: Option<u64>,
    connect: impl std::future::Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    match seconds.filter(|s| *s > 0) {
        None => connect.await,
        Some(s) => tokio::time::timeout(std::time::Duration::from_secs(s), connect)
            .await
            .map_err(|_| SyncError::ConnectTimeout(s))?,
    }
}

/// How daemon connections are made (`-4`/`-6`, `--address`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonSocket {
    /// Only addresses of this family: `Some(false)` IPv4, `Some(true)` IPv6.
    pub ipv6: Option<bool>,
    /// The local address to leave from.
    pub bind: Option<std::net::IpAddr>,
}

/// A TCP connection as a stream pair: the first of `host`'s addresses (of the family asked
/// for) that answers, from the bind address if one is given.
async fn tcp(
    host: &str,
    port: u16,
    how: DaemonSocket,
) -> Result<arsync_core::transport::StreamPair, SyncError> {
    // A daemon that cannot be reached is a socket error (exit 10), as in rsync.
    let failed = |reason: String| {
        SyncError::Transport(arsync_core::transport::TransportError::Io(
            std::io::Error::other(format!("failed to connect to {host}:{port}: {reason}")),
        ))
    };
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .filter(|a| how.ipv6.is_none_or(|v6| a.is_ipv6() == v6));
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        let attempt = async {
            let sock = match addr {
                std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            if let Some(ip) = how.bind {
                sock.bind(std::net::SocketAddr::new(ip, 0))?;
            }
            sock.connect(addr).await
        };
        match attempt.await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    let s = stream.ok_or_else(|| {
        failed(last.unwrap_or_else(|| "no address of the family asked for".into()))
    })?;
    let _ = s.set_nodelay(true);
    let (r, w) = s.into_split();
    Ok(arsync_core::transport::StreamPair {
        send: Box::new(w),
        recv: Box::new(r),
    })
}

impl RsyncPeer {
    async fn start(
        self,
        connect_timeout: Option<u64>,
    ) -> Result<
        (
            arsync_core::engine::rsync::link::RsyncStart,
            Option<Box<dyn arsync_core::transport::Connection>>,
        ),
        SyncError,
    > {
        use arsync_core::engine::rsync::link::RsyncStart;
        match self {
            RsyncPeer::Shell(conn) => {
                Ok((RsyncStart::Shell(conn.open_stream().await?), Some(conn)))
            }
            RsyncPeer::Daemon {
                host,
                port,
                login,
                socket,
            } => {
                let stream =
                    within_connect_timeout(connect_timeout, tcp(&host, port, socket)).await?;
                Ok((RsyncStart::Daemon(stream, login), None))
            }
        }
    }
}

/// List an rsync daemon's modules.
pub async fn rsync_daemon_list(
    host: &str,
    port: u16,
    socket: DaemonSocket,
    sink: Arc<dyn EventSink>,
) -> Result<Vec<String>, SyncError> {
    let stream = tcp(host, port, socket).await?;
    tokio::task::spawn_blocking(move || {
        arsync_core::engine::rsync::link::daemon_list(
            stream,
            arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX,
            sink,
        )
    })
    .await
    .map_err(SyncError::Job)?
}

/// One of our roles, run behind an rsync adapter.
enum OurRole {
    Sender(SenderJob),
    Receiver(ReceiverJob),
}

fn joined(e: tokio::task::JoinError) -> SyncError {
    SyncError::Job(e)
}

/// Run `role` over an in-process connection and `adapt` (on a blocking thread) on the other
/// end's stream. When one side fails the other mostly sees the stream close: the precise error
/// wins.
async fn behind_adapter<T: Send + 'static>(
    role: OurRole,
    adapt: impl FnOnce(arsync_core::transport::StreamPair) -> Result<T, SyncError> + Send + 'static,
) -> Result<T, SyncError> {
    let registry = arsync_transports::default_registry();
    let mem = registry.get("mem")?;
    let name = format!(
        "rsync-adapter-{}-{}",
        std::process::id(),
        LOCAL_SEQ.fetch_add(1, Relaxed)
    );
    let listener = mem.listen(&ListenConfig::bind(name.clone())).await?;
    let ours = mem
        .connect(&Endpoint::host(name), &AuthConfig::default())
        .await?;
    let role = tokio::spawn(async move {
        match role {
            OurRole::Sender(job) => run_sender(&*ours, true, job).await,
            OurRole::Receiver(job) => run_receiver(&*ours, true, job).await,
        }
    });
    let server = listener.accept().await?;
    let pair = server.accept_stream().await?;
    let adapted = tokio::task::spawn_blocking(move || adapt(pair))
        .await
        .map_err(joined)?;
    let ran = role.await.map_err(joined)?;
    match (ran, adapted) {
        (Ok(()), Ok(t)) => Ok(t),
        (Err(r), Err(a)) => Err(if matches!(r, SyncError::StreamIo(_)) {
            a
        } else {
            r
        }),
        (Err(r), Ok(_)) => Err(r),
        (Ok(()), Err(a)) => Err(a),
    }
}

/// The remote process's exit: 23 and 24 are per-file problems it reported (the run ends with
/// the same code, as rsync's does); anything else bad is an error.
fn peer_status(
    closed: Result<(), arsync_core::transport::TransportError>,
    stats: &Stats,
) -> Result<(), SyncError> {
    match closed {
        Err(arsync_core::transport::TransportError::PeerExited { code: Some(23), .. }) => {
            stats.errors.fetch_add(1, Relaxed);
            Ok(())
        }
        Err(arsync_core::transport::TransportError::PeerExited { code: Some(24), .. }) => {
            stats.vanished.fetch_add(1, Relaxed);
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Pull from a host that has only rsync (through a remote shell or from a daemon); our
/// receiver writes into `dest` through the adapter in [`arsync_core::engine::rsync::receiving`].
/// `requested` are the remote paths asked for (the sender may list nothing else); `protocol`
/// caps the rsync protocol offered.
pub async fn sync_rsync_pull(
    peer: RsyncPeer,
    requested: Vec<String>,
    dest: PathBuf,
    opts: SyncOptions,
    protocol: u8,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    let (rsync, conn) = peer.start(opts.connect_timeout).await?;
    let stats = Arc::new(Stats::default());
    let mut ropts = opts.clone();
    ropts.stream_data = true;
    ropts.behind_rsync_adapter = true;
    // The hop to the adapter is in-process: only the rsync link times out.
    ropts.io_timeout = None;
    let job = ReceiverJob {
        dest: dest.clone(),
        opts: ropts,
        stats: stats.clone(),
        sink: sink.clone(),
    };
    let wire = behind_adapter(OurRole::Receiver(job), move |pair| {
        arsync_core::engine::rsync::receiving::bridge_pull(
            rsync, pair, &dest, &opts, &requested, protocol, sink,
        )
    })
    .await;
    let closed = match conn {
        Some(c) => c.close().await,
        None => Ok(()),
    };
    let closed = login_failure_first(&wire, closed)?;
    let wire = wire?;
    // --stats reports rsync's wire, not the adapter's frames.
    stats.bytes_sent.store(wire.sent, Relaxed);
    stats.bytes_received.store(wire.received, Relaxed);
    stats.literal.store(wire.literal, Relaxed);
    stats.matched.store(wire.matched, Relaxed);
    peer_status(closed, &stats)?;
    Ok(RunReport { stats })
}

/// Push to a host that has only rsync: our sender reads `sources` through the adapter in
/// [`arsync_core::engine::rsync::sending`].
pub async fn sync_rsync_push(
    peer: RsyncPeer,
    sources: Vec<PathBuf>,
    opts: SyncOptions,
    protocol: u8,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    // The items show the modes the receiver gives (`--chmod`), as rsync's client does.
    let sink = ChmodItems::wrap(sink, &opts.write.chmod).map_err(SyncError::Usage)?;
    let (rsync, conn) = peer.start(opts.connect_timeout).await?;
    let stats = Arc::new(Stats::default());
    let mut sopts = opts.clone();
    sopts.stream_data = true;
    // The hop to the adapter is in-process: only the rsync link times out.
    sopts.io_timeout = None;
    let job = SenderJob {
        sources,
        opts: sopts,
        stats: stats.clone(),
        sink: sink.clone(),
        // The adapter shows each record of rsync's generator as it reads it.
        report_items: false,
    };
    let wire = behind_adapter(OurRole::Sender(job), move |pair| {
        arsync_core::engine::rsync::sending::bridge_push(rsync, pair, &opts, protocol, sink)
    })
    .await;
    let closed = match conn {
        Some(c) => c.close().await,
        None => Ok(()),
    };
    let closed = login_failure_first(&wire, closed)?;
    let wire = wire?;
    stats.bytes_sent.store(wire.sent, Relaxed);
    stats.bytes_received.store(wire.received, Relaxed);
    peer_status(closed, &stats)?;
    Ok(RunReport { stats })
}

// Issue 16, hangs: a remote shell that exited 255 (ssh could not log in: a refused key, a
// ProxyCommand that died) explains a failed rsync session best, and rsync exits 255 for it,
// not 12 for the broken stream.
fn login_failure_first<T>(
    session: &Result<T, SyncError>,
    closed: Result<(), arsync_core::transport::TransportError>,
) -> Result<Result<(), arsync_core::transport::TransportError>, SyncError> {
    match (session, closed) {
        (
            Err(_),
            Err(
                e @ arsync_core::transport::TransportError::PeerExited {
                    code: Some(255), ..
                },
            ),
        ) => Err(SyncError::Transport(e)),
        (_, c) => Ok(c),
    }
}

/// Serve an rsync client that started `arsync --server` (its `-e.` letters in
/// `client_info`): rsync's protocol on `conn`, our own roles behind the adapters.
pub async fn serve_rsync(
    conn: Box<dyn arsync_core::transport::Connection>,
    role: ServerRole,
    mut paths: Vec<PathBuf>,
    mut opts: SyncOptions,
    client_info: String,
    report_infos: bool,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    use arsync_core::engine::rsync::{
        sending::{serve_sender, SenderEnd},
        RsyncSession,
    };
    if opts.xattrs {
        return Err(SyncError::Usage(
            "arsync --server does not support -X with an rsync client yet".into(),
        ));
    }
    let stream = conn.accept_stream().await?;
    let hs_sink = sink.clone();
    let send = role == ServerRole::Sender;
    // The client's filter rules come first for a sending server, and for a deleting
    // receiving one, or one that prunes empty directories (`send_filter_list`).
    let read_filters = send || opts.delete || opts.select.prune_empty_dirs;
    let hs_opts = opts.clone();
    let (session, filters, names) = tokio::task::spawn_blocking(move || {
        let mut session = RsyncSession::serve(stream, &client_info, &hs_opts, send, hs_sink)?;
        let filters = if read_filters {
            Some(session.read_filters()?)
        } else {
            None
        };
        // Issue 15, filters: `--files-from=-`: the names follow the filter list.
        let names = if send && hs_opts.listing.files_from_wire {
            Some(session.read_files_from()?)
        } else {
            None
        };
        Ok::<_, SyncError>((session, filters, names))
    })
    .await
    .map_err(joined)??;
    if let (Some(names), Some(src)) = (names, paths.first()) {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let src = src.as_os_str().as_bytes().to_vec();
        paths = arsync_core::engine::listing::sources_for(&src, &names, opts.select.relative)
            .into_iter()
            .map(|p| PathBuf::from(std::ffi::OsString::from_vec(p)))
            .collect();
    }
    if let Some(f) = filters {
        opts.filters = f;
        // Issue 15, filters: a sending server adds `-C`'s rules after the client's
        // (`recv_filter_list`); a receiving one got them from the client.
        if send && opts.listing.cvs_exclude {
            for rule in [":C", "-C"] {
                opts.filters
                    .add_filter(rule)
                    .map_err(|e| SyncError::Usage(e.to_string()))?;
            }
        }
    }
    let stats = Arc::new(Stats::default());
    let mut role_opts = opts.clone();
    role_opts.stream_data = true;
    // The hop to the adapter is in-process: only the rsync link times out.
    role_opts.io_timeout = None;
    let result = if send {
        let job = SenderJob {
            sources: paths,
            opts: role_opts,
            stats: stats.clone(),
            sink: sink.clone(),
            report_items: false,
        };
        behind_adapter(OurRole::Sender(job), move |pair| {
            serve_sender(session, pair, &opts, sink, SenderEnd::Server)
        })
        .await
    } else {
        let dest = paths
            .pop()
            .ok_or_else(|| SyncError::Usage("no destination".into()))?;
        role_opts.behind_rsync_adapter = true;
        // What the receiver creates, changes and deletes goes back to the client too.
        let (tap, items) =
            arsync_core::engine::rsync::receiving::ItemTap::new(sink.clone(), report_infos);
        let job = ReceiverJob {
            dest: dest.clone(),
            opts: role_opts,
            stats: stats.clone(),
            sink: Arc::new(tap),
        };
        behind_adapter(OurRole::Receiver(job), move |pair| {
            arsync_core::engine::rsync::receiving::serve_receiver(
                session, pair, &dest, &opts, sink, items,
            )
        })
        .await
    };
    let _ = conn.close().await;
    result?;
    Ok(RunReport { stats })
}

/// The role a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// Send `paths` (the remote side of a pull).
    Sender,
    /// Receive into `paths[0]` (the remote side of a push).
    Receiver,
}

/// Serve one session on `conn` (stdin/stdout for `arsync --server` and `arsync --pipe`).
pub async fn serve(
    conn: Box<dyn arsync_core::transport::Connection>,
    role: ServerRole,
    paths: Vec<PathBuf>,
    opts: SyncOptions,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    let result = serve_session(&*conn, role, paths, opts, sink).await;
    let _ = conn.close().await;
    result
}

/// The server side of one session over `conn`, leaving the connection open (the caller
/// closes it; a bootstrap server races the session against its SSH channel, but not the
/// close that follows a finished session).
pub async fn serve_session(
    conn: &dyn arsync_core::transport::Connection,
    role: ServerRole,
    paths: Vec<PathBuf>,
    opts: SyncOptions,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, SyncError> {
    let send = role == ServerRole::Sender;
    let (stats, result) = run_one_role(conn, send, false, paths, opts, sink).await;
    result?;
    Ok(RunReport { stats })
}
