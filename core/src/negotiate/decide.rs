//! The decision functions, one per concern, and [`next_step`], which asks them in order.
//!
//! Each takes the request and what was observed and returns a [`Decision`] (or a usage
//! error, or a [`GiveUp`]); none performs I/O. The order of `--transport=auto` lives in
//! [`next_step`] alone.

use std::time::Duration;

use super::{
    daemon_paths, names, ConnectionPath, Decision, GiveUp, GiveUpKind, NegotiateError,
    Observations, Plan, Probe, ProtocolAsk, ProtocolVariant, QuicOffered, QuicSeen, RemoteArsync,
    RemoteProgram, Request, Step, Target, TransportAsk, TransportInfo, AUTO, AUTO_HANDSHAKE_LIMIT,
    DEFAULT_STREAMS,
};

/// How a `host:path` target is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellPath {
    /// Log in over SSH, start the remote arsync with `--bootstrap=quic` and connect to its
    /// offer by QUIC; with `fallback`, the login carries the session when QUIC does not get
    /// through.
    Bootstrap {
        /// Whether the SSH login may carry the session instead.
        fallback: bool,
    },
    /// A connection through this registered transport.
    Registered(String),
}

/// The registered transport `ask` names (`None` for `auto`), or why there is none.
///
/// Issue 17 will run `arsync-transport-NAME` from `PATH` for a name nothing registered: that
/// belongs here, as an observation of what `PATH` holds, before the error.
pub fn registered_transport<'a>(
    ask: &TransportAsk,
    registered: &'a [TransportInfo],
) -> Result<Option<&'a TransportInfo>, NegotiateError> {
    match ask {
        TransportAsk::Auto => Ok(None),
        TransportAsk::Named(name) => registered
            .iter()
            .find(|t| &t.name == name)
            .map(Some)
            .ok_or_else(|| NegotiateError::UnknownTransport {
                name: name.clone(),
                registered: registered.iter().map(|t| t.name.clone()).collect(),
            }),
    }
}

/// [`registered_transport`] for the request's `--transport`.
pub fn asked_transport(request: &Request) -> Result<Option<&TransportInfo>, NegotiateError> {
    registered_transport(&request.transport, &request.registered)
}

/// How to reach a `host:path` target: `auto` and `quic` bootstrap QUIC over an SSH login
/// (only `auto` falls back to the login), any other name is that transport; one that cannot
/// leave this machine is a usage error.
pub fn shell_path(request: &Request) -> Result<Decision<ShellPath>, NegotiateError> {
    let Some(info) = asked_transport(request)? else {
        return Ok(Decision::new(
            ShellPath::Bootstrap { fallback: true },
            "auto: QUIC where UDP gets through, else the same SSH login",
        ));
    };
    if info.local_only {
        let mut remote = vec![AUTO.to_owned()];
        remote.extend(
            request
                .registered
                .iter()
                .filter(|t| !t.local_only)
                .map(|t| t.name.clone()),
        );
        return Err(NegotiateError::LocalOnly {
            name: info.name.clone(),
            remote,
        });
    }
    // Issue 17, mptcp: TLS over (MP)TCP has no SSH bootstrap; it reaches `arsync serve` only.
    // Issue 17, h2 and h3: so do HTTP/2 and HTTP/3.
    if info.name == names::TLS
        || info.name == names::MPTCP
        || info.name == names::H2
        || info.name == names::H3
    {
        return Err(NegotiateError::DaemonOnly {
            name: info.name.clone(),
        });
    }
    Ok(if info.name == names::QUIC {
        Decision::new(ShellPath::Bootstrap { fallback: false }, "asked for")
    } else {
        Decision::new(ShellPath::Registered(info.name.clone()), "asked for")
    })
}

/// How long the QUIC handshake to an offer may take: `auto` gives it
/// [`AUTO_HANDSHAKE_LIMIT`] (a fallback is waiting), `quic` the tuning's limit.
pub fn handshake_limit(request: &Request, fallback: bool) -> Duration {
    if fallback {
        AUTO_HANDSHAKE_LIMIT
    } else {
        request.quic_handshake_limit
    }
}

/// What the handshake's outcome leads to: QUIC; or the SSH login (with `fallback`); or
/// giving up, with advice.
pub fn after_handshake(
    seen: &QuicSeen,
    fallback: bool,
) -> Result<Decision<ConnectionPath>, GiveUp> {
    let why_not = match seen {
        QuicSeen::Established { .. } => {
            return Ok(Decision::new(
                ConnectionPath::BootstrapQuic,
                "remote arsync present, UDP gets through",
            ))
        }
        QuicSeen::TimedOut { .. } | QuicSeen::Failed { .. } => {
            "UDP does not get through".to_owned()
        }
        QuicSeen::NoAddress { host, .. } => format!("{host} has no address to reach by QUIC"),
    };
    if fallback {
        Ok(Decision::new(ConnectionPath::BootstrapChannel, why_not))
    } else {
        Err(GiveUp {
            kind: GiveUpKind::QuicUnavailable,
            reason: format!("{why_not}, and --transport=quic has no fallback"),
            advice: Some("--transport=ssh works without UDP"),
        })
    }
}

/// Issue 16, native login: below this login RTT the link is short (a LAN, this machine).
pub const SHORT_LINK_RTT: Duration = Duration::from_millis(5);

/// Issue 16, native login: under `auto`, a login by the built-in SSH client (the kernel's
/// RTT of its connection known) over a short link keeps the session on the login's channel:
/// there the built-in client moves data for less CPU than QUIC, whose streams and congestion
/// control pay off only where one SSH window cannot fill the link (the bench: LAN 1 Gbit/s,
/// the SSH channel 0.43–0.89 × QUIC's time). `--streams=N` asks for QUIC's streams.
pub fn short_link_channel(
    request: &Request,
    offered: &QuicOffered,
    fallback: bool,
) -> Option<Decision<ConnectionPath>> {
    let rtt = offered.login_rtt?;
    // A loopback address is this machine whatever its RTT read: on a loaded machine the
    // kernel's estimate is scheduling delay (5.6 ms seen on a busy 2-core runner).
    let here = offered.addr.is_some_and(|a| a.is_loopback());
    (fallback && request.streams.is_none() && (rtt < SHORT_LINK_RTT || here)).then(|| {
        let link = if rtt < SHORT_LINK_RTT {
            "a short link"
        } else {
            "a loopback address, this machine"
        };
        Decision::new(
            ConnectionPath::BootstrapChannel,
            format!(
                "TCP RTT {:.1} ms: {link}, where the built-in SSH client's channel costs \
                 less CPU than QUIC",
                rtt.as_secs_f64() * 1e3
            ),
        )
    })
}

/// Issue 16, little moved: the round trips moving the session from the login to QUIC costs
/// (the QUIC handshake and the session's start on new streams; the WAN bench at 50 ms: 20–21
/// round trips on QUIC against 16 on the login's channel for an unchanged tree).
pub const QUIC_MOVE_RTTS: u64 = 4;

/// Issue 16, little moved: the most the last run may have moved for this one to stay on the
/// login's channel: what one SSH channel's window carries in the round trips the move to QUIC
/// costs. The channel moves at least a window a round trip, so on it these bytes take at
/// most [`QUIC_MOVE_RTTS`] round trips longer than on any faster path: the move cannot pay
/// for itself.
pub const LITTLE_MOVED: u64 = QUIC_MOVE_RTTS * SSH_CHANNEL_WINDOW;

/// Issue 16, little moved: under `auto`, where the last run of the same paths to this host
/// (remembered) moved at most [`LITTLE_MOVED`] bytes both ways, an SSH login with the plain
/// server command carries the session, as `--transport=ssh` does: no bootstrap (its
/// certificate, its offer, the `stdio` round trip) and no QUIC handshake — a daily backup of a
/// tree that changes little. Fresh memory (no record, or a record of other paths, or one that
/// moved more) leaves the choice as before; `--streams=N` asks for QUIC's streams. Should the
/// host have lost arsync, that login's exit 127 leads to rsync's protocol as without memory.
/// Not on a link remembered short (RTT under [`SHORT_LINK_RTT`]; an RTT not remembered, as
/// after a day of runs without QUIC, does not stop it): a short one keeps the bootstrap login, whose offer tells a local link and whose channel the short-link rule
/// keeps ([`short_link_channel`]; the bench's loopback: without the login's word that the link
/// is local, the parameters differed and 8 × the bytes moved).
pub fn little_moved_channel(
    request: &Request,
    seen: &Observations,
    fallback: bool,
) -> Option<Decision<ConnectionPath>> {
    let last = seen
        .remembered
        .last_run()
        .filter(|_| fallback && request.streams.is_none())?;
    let rtt = seen.remembered.rtt();
    if rtt.is_some_and(|r| r < SHORT_LINK_RTT) {
        return None;
    }
    let link = match rtt {
        Some(r) => format!("RTT {}, remembered", super::millis(r)),
        None => "RTT not remembered".to_owned(),
    };
    (last.value.wire_bytes <= LITTLE_MOVED).then(|| {
        Decision::new(
            ConnectionPath::Registered(names::SSH.to_owned()),
            format!(
                "not a short link ({link}); the last run of these paths moved {}, \
                 remembered: {}; at most {} (one SSH channel's window over the \
                 {QUIC_MOVE_RTTS} round trips the move to QUIC costs): one SSH login carries \
                 it, no bootstrap, no QUIC handshake",
                last.value,
                last.dates(),
                super::params::bytes(LITTLE_MOVED)
            ),
        )
    })
}

/// Issue 16, pool: the window one SSH channel flows in (OpenSSH's and russh's default
/// channel window, 2 MiB): one channel carries at most this much per round trip.
pub const SSH_CHANNEL_WINDOW: u64 = 2 << 20;

/// Issue 16, pool: where UDP is remembered blocked (no QUIC) and the remembered link's
/// bandwidth-delay product is more than one SSH channel's window, `ssh-pool`: several SSH
/// connections, each with its own window, fill what one cannot (the fat WAN bench: one channel
/// at ≈ 300 Mbit/s of 1 Gbit/s, the pool at 76–83 %). `None` where the pool is not registered
/// or the link is not known to be that fat.
pub fn pool_for_fat_link(
    request: &Request,
    seen: &Observations,
) -> Option<Decision<ConnectionPath>> {
    request
        .registered
        .iter()
        .find(|t| t.name == names::SSH_POOL && t.max_streams > 1)?;
    let link = super::params::link_estimate(seen);
    let bdp = link
        .bdp()
        .filter(|&b| b > SSH_CHANNEL_WINDOW && !link.local)?;
    Some(Decision::new(
        ConnectionPath::Registered(names::SSH_POOL.to_owned()),
        format!(
            "UDP blocked, remembered; the link's bandwidth-delay product ({}) is more than one \
             SSH channel's window ({}): several SSH connections",
            super::params::bytes(bdp),
            super::params::bytes(SSH_CHANNEL_WINDOW)
        ),
    ))
}

/// Issue 16, the window fits: the least remembered RTT the rule acts on. Four times
/// [`SHORT_LINK_RTT`]: a loaded machine's loopback has read 5.6 ms, and a peer on this
/// machine must keep the bootstrap login that says so.
pub const WINDOW_FITS_MIN_RTT: Duration = Duration::from_millis(20);

/// Issue 16, the window fits: under `auto`, where the remembered link is not short and its
/// bandwidth-delay product (the remembered delivery rate × the remembered RTT) is at most half
/// of one SSH channel's window, one SSH login with the plain server command carries the
/// session: the channel moves a window a round trip, at least twice what the link delivered,
/// so QUIC's streams cannot move it faster, and its bootstrap and handshake cost round trips
/// (the WAN bench, 100 Mbit/s × 50 ms, 625 KB in flight: the built-in client 0.96 × rsync's
/// time on fresh small files, QUIC 1.01 ×; 0.87 s against 1.08 s on an unchanged tree). The
/// rate is a lower bound (a session's bytes over its whole time), hence the memory keeps the
/// best of the last day ([`super::memory::HostFacts::learn_link`]); an SSH session records no
/// sample of its own, so a run sent to the channel leaves that best in place until it expires.
/// `--streams=N` asks for QUIC's streams; a link remembered under [`WINDOW_FITS_MIN_RTT`]
/// keeps the bootstrap login, whose offer tells a local peer ([`short_link_channel`]).
pub fn window_fits_link(
    request: &Request,
    seen: &Observations,
    fallback: bool,
) -> Option<Decision<ConnectionPath>> {
    if !fallback || request.streams.is_some() {
        return None;
    }
    // Before any probe the estimate is what the memory holds (as `pool_for_fat_link` reads it).
    let link = super::params::link_estimate(seen);
    let (rtt, rate) = (link.rtt.filter(|&r| r >= WINDOW_FITS_MIN_RTT)?, link.rate?);
    let bdp = link.bdp()?;
    (bdp <= SSH_CHANNEL_WINDOW / 2).then(|| {
        Decision::new(
            ConnectionPath::Registered(names::SSH.to_owned()),
            format!(
                "the remembered link (RTT {}, {} delivered) holds {} in flight, at most half \
                 of one SSH channel's window ({}): one SSH login fills it, no bootstrap, no \
                 QUIC handshake",
                super::millis(rtt),
                super::params::per_sec(rate),
                super::params::bytes(bdp),
                super::params::bytes(SSH_CHANNEL_WINDOW)
            ),
        )
    })
}

/// The registered transport that carries rsync's protocol: the one asked for when it is a
/// single remote shell, else `ssh` (QUIC and the pool speak only arsync's protocol).
pub fn rsync_shell(request: &Request) -> Decision<String> {
    match asked_transport(request) {
        Ok(Some(info))
            if !info.local_only && info.name != names::QUIC && info.name != names::SSH_POOL =>
        {
            Decision::new(info.name.clone(), "asked for")
        }
        _ => Decision::new(
            names::SSH.to_owned(),
            "rsync's protocol runs over a remote shell",
        ),
    }
}

/// The remote host has no arsync: with `--protocol=auto`, rsync's protocol with its rsync
/// (over [`rsync_shell`]); otherwise give up.
pub fn without_remote_arsync(request: &Request) -> Result<Plan, GiveUp> {
    match request.protocol {
        ProtocolAsk::Auto => {
            let shell = rsync_shell(request);
            Ok(Plan {
                connection: Decision::new(ConnectionPath::Registered(shell.choice), shell.reason),
                protocol: Decision::new(
                    ProtocolVariant::Rsync {
                        max_version: None,
                        remote_program: RemoteProgram::Rsync,
                    },
                    "the remote host has only rsync",
                ),
                streams: one_stream("rsync's protocol runs on one stream"),
                // Issue 16, params:
                params: None,
            })
        }
        ProtocolAsk::Merkle | ProtocolAsk::Rsync { .. } => Err(GiveUp {
            kind: GiveUpKind::RemoteArsyncMissing,
            reason: "no arsync on the remote host, and rsync's protocol was not allowed in its \
                     place (--protocol=merkle or --rsync-path)"
                .into(),
            advice: None,
        }),
    }
}

/// arsync's merkle protocol, and why: `remote_known` when the remote arsync has answered.
pub fn merkle_protocol(request: &Request, remote_known: bool) -> Decision<ProtocolVariant> {
    let reason = match (request.protocol, remote_known) {
        (ProtocolAsk::Auto, true) => "arsync at both ends",
        (ProtocolAsk::Auto, false) => "arsync at both ends; rsync's if the remote host has none",
        _ => "--protocol=merkle or --rsync-path: no rsync in its place",
    };
    Decision::new(ProtocolVariant::Merkle, reason)
}

fn one_stream(reason: &str) -> Decision<u32> {
    Decision::new(1, reason)
}

/// `--streams`, or the default, at most `max`.
fn several(request: &Request, max: u32) -> Decision<u32> {
    match request.streams {
        Some(n) if n <= max => Decision::new(n, "--streams"),
        Some(_) => Decision::new(max, "the most the transport carries"),
        None => Decision::new(
            DEFAULT_STREAMS.min(max),
            "the default; --streams=N to choose",
        ),
    }
}

/// How many streams the session may use on `path` speaking `protocol`.
pub fn streams(
    request: &Request,
    path: &ConnectionPath,
    protocol: ProtocolVariant,
) -> Decision<u32> {
    if let ProtocolVariant::Rsync { .. } = protocol {
        return one_stream("rsync's protocol runs on one stream");
    }
    match path {
        ConnectionPath::BootstrapQuic | ConnectionPath::ArsyncDaemon => several(request, u32::MAX),
        ConnectionPath::BootstrapChannel => one_stream("one SSH channel"),
        ConnectionPath::RsyncDaemon => one_stream("rsync's protocol runs on one stream"),
        ConnectionPath::Registered(name) | ConnectionPath::ArsyncDaemonVia(name) => {
            let max = request
                .registered
                .iter()
                .find(|t| &t.name == name)
                .map_or(1, |t| t.max_streams.max(1));
            if max == 1 {
                one_stream(&format!("{name} carries one stream"))
            } else {
                several(request, max)
            }
        }
    }
}

/// A merkle plan over `connection`.
fn merkle_plan(
    request: &Request,
    connection: Decision<ConnectionPath>,
    remote_known: bool,
    // Issue 16, params:
    seen: &Observations,
) -> Plan {
    let protocol = merkle_protocol(request, remote_known);
    let mut streams = streams(request, &connection.choice, protocol.choice);
    // Issue 16, params: the parameters from the link and the CPU; a QUIC path's streams
    // from its BDP and window.
    let params = super::params::for_plan(request, seen, &connection.choice);
    if let (Some(n), None) = (params.streams.choice, request.streams) {
        streams = Decision::new(n, params.streams.reason.clone());
    }
    Plan {
        connection,
        protocol,
        streams,
        params: Some(Box::new(params)),
    }
}

/// rsync's protocol, asked for by `--protocol=rsync` or `=NUM` or implied by an rsync
/// daemon: over the daemon's TCP port, or over [`rsync_shell`].
pub fn rsync_asked(request: &Request) -> Plan {
    let max_version = match request.protocol {
        ProtocolAsk::Rsync { max_version } => Some(max_version),
        ProtocolAsk::Auto | ProtocolAsk::Merkle => None,
    };
    let protocol = ProtocolVariant::Rsync {
        max_version,
        remote_program: RemoteProgram::AsConfigured,
    };
    let (connection, protocol) = match request.target {
        Target::RsyncDaemon { .. } => (
            Decision::new(
                ConnectionPath::RsyncDaemon,
                "rsync:// and HOST:: name an rsync daemon",
            ),
            Decision::new(protocol, "an rsync daemon speaks only rsync's"),
        ),
        Target::Shell { .. } | Target::ArsyncDaemon { .. } => {
            let shell = rsync_shell(request);
            (
                Decision::new(ConnectionPath::Registered(shell.choice), shell.reason),
                Decision::new(protocol, "--protocol"),
            )
        }
    };
    Plan {
        connection,
        protocol,
        streams: one_stream("rsync's protocol runs on one stream"),
        // Issue 16, params:
        params: None,
    }
}

/// `arsync://`. A named transport (`quic`, `tls`, `mptcp`, `h2`, `h3`) is used as asked. Under
/// `auto`: HTTP/2 where an HTTP proxy applies (nothing else goes through one). Else the TCP
/// port first ([`daemon_paths::tcp_path`]): HTTP/2 on a web port (an HTTP front there forwards
/// only HTTP), MPTCP where this host is set up for more than one path, otherwise TLS on one
/// TCP connection — in the bench (median of 3: loopback, LAN, lossy; small files, 256 MiB,
/// nothing changed) it took 0.22–0.81 × QUIC's time, within 2 % on the lossy link, for a
/// fraction of its CPU. Only where the TCP port could not be reached, the UDP port: HTTP/3 on a
/// web port ([`daemon_paths::after_tcp_failed`]), else QUIC (the handshake given
/// [`AUTO_HANDSHAKE_LIMIT`]).
pub fn daemon_step(request: &Request, seen: &Observations) -> Step {
    let connect = |connection: Decision<ConnectionPath>| {
        Step::Connect(merkle_plan(request, connection, true, seen))
    };
    let named = "arsync:// names a listening arsync serve";
    match &request.transport {
        // Issue 17: the TCP and HTTP transports say so in the decision.
        TransportAsk::Named(name)
            if [names::TLS, names::MPTCP, names::H2, names::H3].contains(&name.as_str()) =>
        {
            return connect(Decision::new(
                ConnectionPath::ArsyncDaemonVia(name.clone()),
                named,
            ));
        }
        TransportAsk::Named(_) => {
            return connect(Decision::new(ConnectionPath::ArsyncDaemon, named))
        }
        TransportAsk::Auto => {}
    }
    // Issue 17, h2: behind an HTTP proxy only HTTP/2 gets out.
    if request.http_proxy {
        return connect(Decision::new(
            ConnectionPath::ArsyncDaemonVia(names::H2.to_owned()),
            "an HTTP proxy is set (--proxy or HTTPS_PROXY): only HTTP/2 goes through it",
        ));
    }
    let Some(tcp_failed) = &seen.daemon_tcp_failed else {
        // Issue 17: a web port, this host's MPTCP set-up.
        return match daemon_paths::tcp_path(request, seen) {
            Some(connection) => connect(connection),
            None => Step::Probe(Probe::LocalMptcp),
        };
    };
    if let Some(connection) = daemon_paths::after_tcp_failed(request, tcp_failed) {
        return connect(connection);
    }
    match &seen.quic {
        None => Step::Probe(Probe::DaemonQuic {
            limit: AUTO_HANDSHAKE_LIMIT,
        }),
        Some(QuicSeen::Established { .. }) => connect(Decision::new(
            ConnectionPath::ArsyncDaemon,
            format!("its TCP port could not be reached ({tcp_failed}); UDP gets through"),
        )),
        Some(quic) => Step::GiveUp(GiveUp {
            kind: GiveUpKind::DaemonUnreachable,
            reason: format!("arsync serve answered on neither port: TCP {tcp_failed}; {quic}"),
            advice: None,
        }),
    }
}

/// What to do next, given the request and what was observed so far.
///
/// The order: an rsync daemon is spoken to in rsync's protocol; `--protocol=rsync` goes over
/// a remote shell; `arsync://` follows [`daemon_step`]; for `host:path`, a remote host
/// found without arsync leads to [`without_remote_arsync`], a named transport is used as
/// asked, and `auto`/`quic` probe the bootstrap login, then the QUIC handshake, and follow
/// [`after_handshake`].
pub fn next_step(request: &Request, seen: &Observations) -> Result<Step, NegotiateError> {
    // A name nothing registered is refused whatever the target.
    asked_transport(request)?;
    match (&request.target, request.protocol) {
        (Target::RsyncDaemon { .. }, _) | (_, ProtocolAsk::Rsync { .. }) => {
            return Ok(Step::Connect(rsync_asked(request)))
        }
        (Target::ArsyncDaemon { .. }, _) => return Ok(daemon_step(request, seen)),
        (Target::Shell { .. }, ProtocolAsk::Auto | ProtocolAsk::Merkle) => {}
    }
    if seen.remote == Some(RemoteArsync::NotFound) {
        return Ok(match without_remote_arsync(request) {
            Ok(plan) => Step::Connect(plan),
            Err(give_up) => Step::GiveUp(give_up),
        });
    }
    let path = shell_path(request)?;
    // Issue 16, per-host memory: a fresh "only rsync" goes to rsync's protocol at once.
    if seen.remote.is_none() && request.protocol == ProtocolAsk::Auto {
        if let Some(why) = super::memory::only_rsync(&seen.remembered) {
            if let Ok(mut plan) = without_remote_arsync(request) {
                plan.protocol.reason = why.reason;
                return Ok(Step::Connect(plan));
            }
        }
    }
    let fallback = match path.choice {
        ShellPath::Registered(name) => {
            let connection = Decision::new(ConnectionPath::Registered(name), path.reason);
            return Ok(Step::Connect(merkle_plan(request, connection, false, seen)));
        }
        ShellPath::Bootstrap { fallback } => fallback,
    };
    // Issue 16, hangs: a fresh "UDP blocked" logs in with the plain server command, not the
    // bootstrap (which binds a UDP socket and makes a certificate there for nothing); an exit
    // 127 still leads to rsync's protocol (`without_remote_arsync`). `auto` only.
    if let (None, true) = (&seen.remote, fallback) {
        if let Some(why) = super::memory::udp_blocked(&seen.remembered) {
            // Issue 16, pool: a fat link one SSH channel cannot fill gets the pool.
            let connection = pool_for_fat_link(request, seen).unwrap_or_else(|| {
                Decision::new(
                    ConnectionPath::Registered(names::SSH.to_owned()),
                    format!("{}; no bootstrap either", why.reason),
                )
            });
            return Ok(Step::Connect(merkle_plan(request, connection, false, seen)));
        }
        // Issue 16, little moved: the last run of these paths moved little: one SSH login.
        if let Some(connection) = little_moved_channel(request, seen, fallback) {
            return Ok(Step::Connect(merkle_plan(request, connection, false, seen)));
        }
        // Issue 16, the window fits: a link one SSH channel fills takes one SSH login.
        if let Some(connection) = window_fits_link(request, seen, fallback) {
            return Ok(Step::Connect(merkle_plan(request, connection, false, seen)));
        }
    }
    let Some(RemoteArsync::OffersQuic(offered)) = &seen.remote else {
        return Ok(Step::Probe(Probe::BootstrapLogin {
            via: names::SSH.to_owned(),
        }));
    };
    // Issue 16, native login: on a short link the built-in client's channel carries it.
    if let (None, Some(connection)) = (&seen.quic, short_link_channel(request, offered, fallback)) {
        return Ok(Step::Connect(merkle_plan(request, connection, true, seen)));
    }
    let Some(quic) = &seen.quic else {
        // Issue 16, per-host memory: a fresh "UDP blocked" lets the login carry the session
        // at once (`auto` only: `--transport=quic` still tries).
        if let Some(why) = super::memory::udp_blocked(&seen.remembered).filter(|_| fallback) {
            let connection = Decision::new(ConnectionPath::BootstrapChannel, why.reason);
            return Ok(Step::Connect(merkle_plan(request, connection, true, seen)));
        }
        let limit = handshake_limit(request, fallback);
        // Issue 16, overlay: a tailnet peer or a Teleport node gets a shorter limit.
        let limit = match seen
            .overlay
            .as_ref()
            .and_then(super::overlay::handshake_limit)
        {
            Some(overlay) if fallback => overlay.choice.min(limit),
            _ => limit,
        };
        return Ok(Step::Probe(Probe::QuicHandshake { limit }));
    };
    Ok(match after_handshake(quic, fallback) {
        Ok(connection) => Step::Connect(merkle_plan(request, connection, true, seen)),
        Err(give_up) => Step::GiveUp(give_up),
    })
}
