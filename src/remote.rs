//! A sync with a remote side: the driver of [`arsync_core::negotiate`]. It builds the
//! registry the command line asks for, asks negotiation for the next step, runs the probes it
//! asks for (the bootstrap login and the QUIC try, from `arsync_transports::bootstrap`),
//! records what they found, prints the `--explain` lines, and runs the plan: arsync's
//! protocol on a connection, rsync's over a remote shell, an rsync daemon, `arsync serve`.
//!
//! Not here: the decisions (`negotiate`), the transports, the roles (`arsync::sync_*`).

use std::path::PathBuf;
use std::sync::Arc;

use arsync_core::engine::rsync::RSYNC_PROTOCOL_MAX;
use arsync_core::engine::EventSink;
use arsync_core::negotiate::params::ParamsAsk;
use arsync_core::negotiate::{
    self, ConnectionPath, GiveUp, GiveUpKind, NegotiateError, Observations, Plan, Probe,
    ProtocolAsk, ProtocolVariant, RemoteArsync, RemoteProgram, Request, Step, Target, TransportAsk,
};
use arsync_core::proto::bootstrap::bootstrap_command;
use arsync_core::transport::{AuthConfig, Endpoint, Registry, TransportError};
use arsync_core::SyncError;
use arsync_transports::bootstrap::{self, Login, OfferedLogin};
use arsync_transports::quic::QuicConnection;
use arsync_transports::registry::{self, RegistryConfig, SshClient};
use arsync_transports::ssh_auto::SshChoiceLog;

use crate::args;
use crate::output::explain;
use crate::quic_run;

/// The transports as the command line asks: `ssh` and `ssh-pool`'s connections through the
/// `-e` program or the built-in client (`--ssh`), the pool `--streams` wide.
/// Issue 16, native login: `ssh_log` receives the `--ssh=auto` client's choices.
pub fn cli_registry(
    cmd: &args::Command,
    ssh_log: &SshChoiceLog,
) -> Result<Registry, TransportError> {
    let mut r = registry::build(&RegistryConfig {
        rsh: cmd.rsh.clone(),
        ssh: cmd.ssh_client,
        // A pool's connections share one built-in login, or each runs the `-e` program.
        pool: match cmd.ssh_client {
            SshClient::Auto => SshClient::System,
            other => other,
        },
        pool_streams: cmd.opts.streams.unwrap_or(negotiate::DEFAULT_STREAMS),
        quic: cmd.quic,
        ssh_log: ssh_log.clone(),
    })?;
    // Issue 17, plugins: a name nothing built in has may be a helper program on PATH.
    registry::add_helper(&mut r, &cmd.transport);
    Ok(r)
}

/// Refuse a `--transport` name nothing registered (also where no transport is used, as in
/// a local sync).
pub fn check_transport_name(cmd: &args::Command) -> Result<(), NegotiateError> {
    let mut r = arsync_transports::default_registry();
    registry::add_helper(&mut r, &cmd.transport);
    let registered = registry::negotiable(&r);
    negotiate::decide::registered_transport(&TransportAsk::from_arg(&cmd.transport), &registered)
        .map(|_| ())
}

/// What negotiation is asked.
fn request(cmd: &args::Command, remote: &args::Remote, registry: &Registry) -> Request {
    let host = remote.host.clone();
    let target = match (remote.daemon_port, remote.arsync_port) {
        (Some(port), _) => Target::RsyncDaemon { host, port },
        (None, Some(port)) => Target::ArsyncDaemon { host, port },
        (None, None) => Target::Shell { host },
    };
    let protocol = match (cmd.rsync_protocol, cmd.protocol_auto) {
        (Some(max_version), _) => ProtocolAsk::Rsync { max_version },
        (None, true) => ProtocolAsk::Auto,
        (None, false) => ProtocolAsk::Merkle,
    };
    Request {
        target,
        transport: TransportAsk::from_arg(&cmd.transport),
        protocol,
        streams: cmd.opts.streams,
        registered: registry::negotiable(registry),
        quic_handshake_limit: cmd.quic.handshake_timeout,
        // Issue 16, params:
        params: ParamsAsk {
            tree_levels: cmd.opts.tree_levels,
            chunk_avg: cmd.opts.chunk_avg,
            whole_file: match (cmd.opts.whole_file, cmd.no_whole_file) {
                (true, _) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            },
            compress: cmd.opts.compress,
        },
        quic_window: cmd.quic.window,
        // Issue 17, h2: an HTTP proxy for this host (only `arsync://` can use one).
        http_proxy: remote.arsync_port.is_some()
            && arsync_transports::http_proxy::Proxy::from_process(
                cmd.proxy.as_deref(),
                &remote.host,
            )
            .ok()
            .flatten()
            .is_some(),
        // Issue 17, web ports: more ports where `auto` speaks HTTP to `arsync serve`.
        web_ports: std::env::var(negotiate::daemon_paths::WEB_PORTS_VAR)
            .map(|v| negotiate::daemon_paths::parse_web_ports(&v))
            .unwrap_or_default(),
    }
}

/// What the probes left to run a plan with.
#[derive(Default)]
struct Probed {
    /// The bootstrap login, while it is open.
    login: Option<OfferedLogin>,
    /// The QUIC connection to its offer.
    quic: Option<QuicConnection>,
    /// Issue 16: the admitted QUIC connection to `arsync serve` (`arsync://` under `auto`).
    daemon: Option<Box<dyn arsync_core::transport::Connection>>,
    /// The last probe's (or session's) error: what giving up reports.
    error: Option<TransportError>,
    // Issue 16, per-host memory:
    /// The session's connection, to read its path statistics when it is done.
    session: Option<crate::host_memory::SessionWatch>,
}

fn lost(what: &str) -> SyncError {
    SyncError::StreamIo(std::io::Error::other(format!(
        "negotiation planned on {what}, which is gone"
    )))
}

/// Everything one remote sync needs to know.
struct Job<'a> {
    cmd: &'a args::Command,
    remote: &'a args::Remote,
    direction: arsync::Direction,
    local: Vec<PathBuf>,
    sink: Arc<dyn EventSink>,
    registry: Registry,
    /// The remote shell's endpoint, its command `arsync --server …`.
    endpoint: Endpoint,
}

/// Sync with `remote`: negotiate how, then run it.
pub async fn remote_sync(
    cmd: &args::Command,
    remote: &args::Remote,
    direction: arsync::Direction,
    local: Vec<PathBuf>,
    sink: Arc<dyn EventSink>,
) -> Result<arsync::RunReport, SyncError> {
    let on = cmd.explain;
    let ssh_log = SshChoiceLog::new(move |line| explain(on, line));
    let registry = cli_registry(cmd, &ssh_log)?;
    let request = request(cmd, remote, &registry);
    // Issue 16, overlay: local probes for a tailnet or a Teleport cluster, before the first step.
    let (overlay_seen, registry) =
        crate::overlay_run::look(cmd, &request, registry, &ssh_log).await?;
    let mut endpoint = Endpoint::host(remote.host.clone());
    endpoint.user = remote.user.clone();
    endpoint.path = remote.paths.join(" ");
    endpoint.remote_command = cmd.server_command(remote, direction == arsync::Direction::Pull);
    let job = Job {
        cmd,
        remote,
        direction,
        local,
        sink,
        registry,
        endpoint,
    };
    let (on, host) = (cmd.explain, remote.host.as_str());
    let mut seen = Observations {
        overlay: overlay_seen,
        ..Observations::default()
    };
    // Issue 16, per-host memory: recall what earlier runs learned of the host (`host:path`,
    // `arsync://`); after the session, store what this one learned.
    let memory = matches!(
        request.target,
        Target::Shell { .. } | Target::ArsyncDaemon { .. }
    )
    .then(|| crate::host_memory::HostRecall::open(cmd, remote));
    // Issue 16, little moved: what the last run moved is remembered for these paths.
    let paths = negotiate::memory::PathsTag::of(
        direction == arsync::Direction::Pull,
        &job.local
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>(),
        &remote.paths,
    );
    if let Some(m) = &memory {
        seen.remembered = m.recall(paths);
    }
    let remember = |seen: &Observations, probed: &mut Probed, served: bool| {
        let link = probed.session.take().and_then(|w| w.sample());
        let serve_port = match request.target {
            Target::ArsyncDaemon { port, .. } if served => Some(port),
            _ => None,
        };
        if let Some(m) = &memory {
            m.remember(seen, link, serve_port);
        }
    };
    let mut probed = Probed::default();
    // Issue 16, params: this machine's speed, for the parameters of an arsync session.
    let merkle_possible = matches!(
        request.target,
        Target::Shell { .. } | Target::ArsyncDaemon { .. }
    ) && !matches!(request.protocol, ProtocolAsk::Rsync { .. });
    if merkle_possible {
        let (speed, line) = crate::cpu_probe::cpu_speed();
        explain(on, line);
        seen.cpu = Some(speed);
        // How the files to send compress, unless -z settled it.
        if direction == arsync::Direction::Push && cmd.opts.compress.is_none() {
            if let Some((sample, line)) = crate::data_sample::sample(&job.local) {
                explain(on, line);
                seen.sample = Some(sample);
            }
        }
    }
    loop {
        match negotiate::next_step(&request, &seen)? {
            Step::Probe(Probe::BootstrapLogin { via }) => {
                let ssh = job.registry.get(&via)?;
                let command = bootstrap_command(&job.endpoint.remote_command).join(" ");
                match bootstrap::login(&*ssh, &job.endpoint).await? {
                    Login::Offered(login) => {
                        let offered = login.offered();
                        explain(
                            on,
                            format!("ssh login to {host} and `{command}`: {offered}"),
                        );
                        seen.remote = Some(RemoteArsync::OffersQuic(offered));
                        probed.login = Some(login);
                    }
                    Login::NoOffer { status, said } => {
                        let ended = match &status {
                            Ok(()) => "it exited".to_owned(),
                            Err(e) => e.to_string(),
                        };
                        explain(
                            on,
                            format!("ssh {host}: `{command}` gave no QUIC offer ({ended})"),
                        );
                        match status {
                            Err(e) if negotiate::is_command_not_found(&e) => {
                                explain(on, format!("remote arsync: not found on {host}"));
                                seen.remote = Some(RemoteArsync::NotFound);
                                probed.error = Some(e);
                            }
                            Err(e) => return Err(e.into()),
                            Ok(()) => {
                                return Err(SyncError::Transport(TransportError::Connect {
                                    endpoint: host.to_owned(),
                                    reason: format!(
                                        "the remote arsync did not offer QUIC (said {said:?})"
                                    ),
                                }))
                            }
                        }
                    }
                }
            }
            Step::Probe(Probe::QuicHandshake { limit }) => {
                // Issue 16, overlay: a tailnet peer is reached at its tailnet address.
                crate::overlay_run::aim_quic(on, seen.overlay.as_ref(), probed.login.as_mut());
                let login = probed.login.as_ref().ok_or_else(|| lost("the SSH login"))?;
                let mut tuning = cmd.quic;
                tuning.handshake_timeout = limit;
                let (quic_seen, result) = login.try_quic(host, tuning).await;
                explain(on, quic_seen.to_string());
                seen.quic = Some(quic_seen);
                match result {
                    Ok(q) => probed.quic = Some(q),
                    Err(e) => probed.error = Some(e),
                }
            }
            // Issue 16: `arsync://` under `auto`.
            Step::Probe(Probe::DaemonQuic { limit }) => {
                let (quic_seen, conn) = job.probe_daemon(limit).await?;
                explain(on, quic_seen.to_string());
                seen.quic = Some(quic_seen);
                probed.daemon = conn;
            }
            // Issue 17, auto → mptcp: this host's MPTCP set-up.
            Step::Probe(Probe::LocalMptcp) => {
                let setup = arsync_transports::mptcp::host_setup().await;
                explain(on, setup.to_string());
                seen.mptcp = Some(setup);
            }
            Step::GiveUp(give_up) => {
                explain(on, format!("decision: give up ({})", give_up.reason));
                remember(&seen, &mut probed, false); // Issue 16, per-host memory.
                if let Some(login) = probed.login.take() {
                    login.close().await;
                }
                return Err(give_up_error(&give_up, probed.error.take(), host));
            }
            Step::Connect(plan) => {
                for line in plan.explain() {
                    explain(on, line);
                }
                // Issue 16, params:
                for line in plan.params.iter().flat_map(|p| p.explain()) {
                    explain(on, line);
                }
                let result = job.run(&plan, &mut probed).await;
                // Issue 16, remote CPU: how fast the server said it chunks, to remember.
                if let Ok(r) = &result {
                    let c = r.stats.peer_cpu.load(std::sync::atomic::Ordering::Relaxed);
                    seen.remote_cpu = (c > 0).then_some(c);
                    // Issue 16, little moved: what it moved (a dry run moves nothing real).
                    seen.moved = (!cmd.opts.dry_run)
                        .then(|| negotiate::memory::RunMoved::from_stats(paths, &r.stats));
                }
                // Issue 16, per-host memory.
                let served = result.is_ok()
                    && matches!(
                        plan.connection.choice,
                        ConnectionPath::ArsyncDaemon | ConnectionPath::ArsyncDaemonVia(_)
                    );
                remember(&seen, &mut probed, served);
                match result {
                    // The session's remote command was not found: no arsync there.
                    Err(SyncError::Transport(e))
                        if negotiate::is_command_not_found(&e)
                            && plan.protocol.choice == ProtocolVariant::Merkle
                            && seen.remote != Some(RemoteArsync::NotFound) =>
                    {
                        explain(on, format!("remote arsync: not found on {host}"));
                        seen.remote = Some(RemoteArsync::NotFound);
                        probed.error = Some(e);
                    }
                    // Issue 16/17, TCP first: `arsync serve`'s TCP port could not be reached
                    // (by tls, mptcp or h2); its UDP port is tried next.
                    Err(SyncError::Transport(e))
                        if negotiate::daemon_paths::tcp_failure_observed(
                            &request,
                            &seen,
                            &plan.connection.choice,
                        ) && matches!(
                            e,
                            TransportError::Unreachable { .. } | TransportError::Connect { .. }
                        ) =>
                    {
                        let via = match &plan.connection.choice {
                            ConnectionPath::ArsyncDaemonVia(name) => name.to_uppercase(),
                            other => other.to_string(),
                        };
                        explain(on, format!("{via} to arsync serve's TCP port: {e}"));
                        seen.daemon_tcp_failed = Some(e.to_string());
                        probed.error = Some(e);
                    }
                    other => return other,
                }
            }
        }
    }
}

/// The error negotiation gives up with: what the probe met, with the advice.
fn give_up_error(give_up: &GiveUp, met: Option<TransportError>, host: &str) -> SyncError {
    let met = met.unwrap_or_else(|| TransportError::Connect {
        endpoint: host.to_owned(),
        reason: give_up.reason.clone(),
    });
    SyncError::Transport(match (give_up.kind, met, give_up.advice) {
        (GiveUpKind::QuicUnavailable, TransportError::Connect { endpoint, reason }, Some(a)) => {
            TransportError::Connect {
                endpoint,
                reason: format!("{reason}; {a}"),
            }
        }
        (_, met, _) => met,
    })
}

impl Job<'_> {
    /// Run `plan`, on what the probes left where it says so.
    async fn run(&self, plan: &Plan, probed: &mut Probed) -> Result<arsync::RunReport, SyncError> {
        let conn: Box<dyn arsync_core::transport::Connection> = match &plan.connection.choice {
            ConnectionPath::RsyncDaemon => {
                let port = self.remote.daemon_port.unwrap_or(873);
                return self.daemon_sync(port, rsync_version(plan)).await;
            }
            ConnectionPath::Registered(name) => {
                let factory = self.registry.get(name)?;
                if let ProtocolVariant::Rsync { remote_program, .. } = plan.protocol.choice {
                    return self
                        .rsync_sync(&*factory, remote_program, rsync_version(plan))
                        .await;
                }
                factory
                    .connect(&self.endpoint, &AuthConfig::default())
                    .await?
            }
            ConnectionPath::ArsyncDaemon => match probed.daemon.take() {
                Some(conn) => conn,
                None => self.connect_daemon(None).await?,
            },
            // Issue 16/17: a named TCP or HTTP transport; under `auto` TLS first, or h2
            // through an HTTP proxy.
            ConnectionPath::ArsyncDaemonVia(name) => self.connect_daemon(Some(name)).await?,
            ConnectionPath::BootstrapQuic => {
                let login = probed.login.take().ok_or_else(|| lost("the SSH login"))?;
                let quic = probed
                    .quic
                    .take()
                    .ok_or_else(|| lost("the QUIC connection"))?;
                let q = &self.cmd.quic;
                explain(
                    self.cmd.explain,
                    format!(
                        "QUIC: window {} KiB per stream, {:?} congestion control",
                        q.window >> 10,
                        q.congestion
                    ),
                );
                Box::new(login.with_quic(quic))
            }
            ConnectionPath::BootstrapChannel => {
                let login = probed.login.take().ok_or_else(|| lost("the SSH login"))?;
                Box::new(login.into_channel().await?)
            }
        };
        // Issue 16, per-host memory: the session's path statistics, read when it is done.
        let (conn, watch) = crate::host_memory::watch(conn);
        probed.session = Some(watch);
        // Issue 16, params: the plan's parameters; the `tune` capability tells the peer.
        let mut opts = self.cmd.opts.clone();
        if let Some(p) = &plan.params {
            opts.tune = Some(p.tune());
            opts.streams = p.streams.choice.or(opts.streams);
        }
        arsync::sync_remote(
            conn,
            self.direction,
            self.local.clone(),
            opts,
            self.sink.clone(),
        )
        .await
    }

    /// `arsync://host:port/target`: the port, the target, and the words after `--server`
    /// (without "." and the paths) that the admission request carries.
    fn daemon_request(&self) -> (u16, String, Vec<String>) {
        let port = self
            .remote
            .arsync_port
            .unwrap_or(arsync_transports::quic::DEFAULT_PORT);
        let words = &self.endpoint.remote_command;
        let after = words
            .iter()
            .position(|w| w == "--server")
            .map_or(0, |i| i + 1);
        let end = words
            .len()
            .saturating_sub(self.remote.paths.len() + 1)
            .max(after);
        (
            port,
            self.remote.paths.join(" "),
            words[after..end].to_vec(),
        )
    }

    /// `arsync://host:port/target` as `--transport` names it, or through the transport `via`
    /// names (a plan's choice under `auto`).
    async fn connect_daemon(
        &self,
        via: Option<&str>,
    ) -> Result<Box<dyn arsync_core::transport::Connection>, SyncError> {
        let (port, target, args) = self.daemon_request();
        let mut cmd = self.cmd.clone();
        if let Some(name) = via {
            name.clone_into(&mut cmd.transport);
        }
        quic_run::connect_daemon(&cmd, &self.remote.host, port, &target, args).await
    }

    /// Issue 16: QUIC to `arsync://host:port/target` under `auto`, given `limit`.
    async fn probe_daemon(
        &self,
        limit: std::time::Duration,
    ) -> Result<
        (
            negotiate::QuicSeen,
            Option<Box<dyn arsync_core::transport::Connection>>,
        ),
        SyncError,
    > {
        let (port, target, args) = self.daemon_request();
        quic_run::probe_daemon_quic(self.cmd, &self.remote.host, port, &target, args, limit).await
    }

    /// Sync with the remote host's rsync in rsync's own protocol, logging in with `shell`.
    async fn rsync_sync(
        &self,
        shell: &dyn arsync_core::transport::TransportFactory,
        program: RemoteProgram,
        protocol: u8,
    ) -> Result<arsync::RunReport, SyncError> {
        let (remote, sink) = (self.remote, self.sink.clone());
        let mut cmd = self.cmd.clone();
        if program == RemoteProgram::Rsync {
            sink.event(arsync_core::engine::Event::Info {
                message: format!(
                    "{} not found on {}: speaking rsync's protocol with rsync there",
                    cmd.rsync_path, remote.host
                ),
            });
            cmd.rsync_path = "rsync".into();
        }
        let mut endpoint = self.endpoint.clone();
        let opts = cmd.opts.clone();
        if self.direction == arsync::Direction::Pull {
            // Issue 15, own: with -s the arguments go on the stream.
            let (line, secluded) =
                args::secluded::split(cmd.rsync_sender_command(remote), cmd.opts.own.secluded_args);
            endpoint.remote_command = line;
            let conn = shell.connect(&endpoint, &AuthConfig::default()).await?;
            let conn = args::secluded::prefixed(conn, secluded);
            let dest = self.local.first().cloned().unwrap_or_default();
            arsync::sync_rsync_pull(
                arsync::RsyncPeer::Shell(conn),
                remote.paths.clone(),
                dest,
                opts,
                protocol,
                sink,
            )
            .await
        } else {
            // Issue 15, own: with -s the arguments go on the stream.
            let (line, secluded) = args::secluded::split(
                cmd.rsync_receiver_command(remote),
                cmd.opts.own.secluded_args,
            );
            endpoint.remote_command = line;
            let conn = shell.connect(&endpoint, &AuthConfig::default()).await?;
            let conn = args::secluded::prefixed(conn, secluded);
            let peer = arsync::RsyncPeer::Shell(conn);
            arsync::sync_rsync_push(peer, self.local.clone(), opts, protocol, sink).await
        }
    }

    /// Sync with an rsync daemon (`rsync://host[:port]/module/path`, `host::module/path`).
    async fn daemon_sync(&self, port: u16, protocol: u8) -> Result<arsync::RunReport, SyncError> {
        let (cmd, remote) = (self.cmd, self.remote);
        let password = match &cmd.password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| SyncError::FileIo {
                        what: "read password file",
                        path: p.clone(),
                        source: e,
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            ),
            None => std::env::var("RSYNC_PASSWORD").ok(),
        };
        let user = remote
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "nobody".into());
        let pull = self.direction == arsync::Direction::Pull;
        let mut server_args = vec!["--server".to_owned()];
        if pull {
            server_args.push("--sender".into());
            server_args.extend(arsync_core::engine::rsync::sender_args(
                &cmd.opts,
                cmd.client_output(),
            ));
        } else {
            server_args.extend(arsync_core::engine::rsync::server_args(
                &cmd.opts,
                cmd.client_output(),
            ));
        }
        // Issue 15, connection: `-M` words go to the server only.
        server_args.extend(cmd.net.remote_options.iter().cloned());
        let login = arsync_core::engine::rsync::link::DaemonLogin {
            paths: remote.paths.clone(),
            server_args,
            user,
            password,
            motd: !cmd.net.no_motd && !cmd.output.quiet,
        };
        let peer = arsync::RsyncPeer::Daemon {
            host: remote.host.clone(),
            port,
            login,
            socket: cmd.net.daemon_socket(),
        };
        let (opts, sink) = (cmd.opts.clone(), self.sink.clone());
        if pull {
            let dest = self.local.first().cloned().unwrap_or_default();
            // Within the module: what follows the module name.
            let requested = remote
                .paths
                .iter()
                .map(|p| p.split_once('/').map_or("", |x| x.1).to_owned())
                .collect();
            arsync::sync_rsync_pull(peer, requested, dest, opts, protocol, sink).await
        } else {
            arsync::sync_rsync_push(peer, self.local.clone(), opts, protocol, sink).await
        }
    }
}

/// The newest rsync protocol version the plan offers.
fn rsync_version(plan: &Plan) -> u8 {
    match plan.protocol.choice {
        ProtocolVariant::Rsync {
            max_version: Some(v),
            ..
        } => v,
        _ => RSYNC_PROTOCOL_MAX,
    }
}
