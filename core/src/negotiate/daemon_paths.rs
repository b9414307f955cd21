//! Issue 17, "the negotiator able to choose them": which transport `--transport=auto` takes to
//! a listening `arsync serve` — the observation of this host's Multipath TCP set-up
//! ([`MptcpSetup`], read from the kernel's answers), what a web port is ([`web_port`]), and
//! the decisions they lead to ([`tcp_path`], [`after_tcp_failed`], [`tcp_failure_observed`]).
//! Pure: [`super::decide::daemon_step`] joins them.
//!
//! Not here: reading the kernel (`arsync_transports::mptcp::host_setup`), connecting, or the
//! named transports' plans (`decide::daemon_step`).

use std::fmt;

use super::{names, ConnectionPath, Decision, Observations, Request, Target, TransportAsk};

/// Ports whose TCP side is most likely an HTTP front (a load balancer or reverse proxy that
/// forwards only HTTP): HTTPS's.
pub const WEB_PORTS: &[u16] = &[443];

/// The environment variable naming more web ports (comma- or space-separated), for a site
/// whose HTTP front listens elsewhere than 443.
pub const WEB_PORTS_VAR: &str = "ARSYNC_WEB_PORTS";

/// The ports `ARSYNC_WEB_PORTS` names; words that are not a port are left out.
pub fn parse_web_ports(value: &str) -> Vec<u16> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|w| w.parse::<u16>().ok())
        .filter(|&p| p != 0)
        .collect()
}

/// `arsync://host:PORT` where PORT is a web port ([`WEB_PORTS`] or one the request adds): the
/// port and why it is one.
pub fn web_port(request: &Request) -> Option<(u16, &'static str)> {
    let Target::ArsyncDaemon { port, .. } = request.target else {
        return None;
    };
    if WEB_PORTS.contains(&port) {
        Some((port, "HTTPS's port"))
    } else if request.web_ports.contains(&port) {
        Some((port, "named in ARSYNC_WEB_PORTS"))
    } else {
        None
    }
}

/// How this host is set up for Multipath TCP, as the kernel said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MptcpSetup {
    /// `net.mptcp.enabled` is 1.
    pub enabled: bool,
    /// The path manager's endpoints that open subflows (flag `subflow` or `fullmesh`), each
    /// as `ip mptcp endpoint show` lists it.
    pub subflow_endpoints: Vec<String>,
    /// Why the set-up could not be read in full (the sysctl missing, no `ip`, its error).
    pub unread: Option<String>,
}

impl MptcpSetup {
    /// From `/proc/sys/net/mptcp/enabled`'s text (or why it could not be read) and
    /// `ip mptcp endpoint show`'s output (or why it could not be run; `None`: not asked, the
    /// kernel having MPTCP off).
    pub fn from_kernel(
        enabled: Result<&str, String>,
        endpoints: Option<Result<&str, String>>,
    ) -> MptcpSetup {
        let (enabled, unread) = match enabled {
            Ok(text) => (text.trim() == "1", None),
            Err(why) => (false, Some(why)),
        };
        let (subflow_endpoints, unread) = match endpoints {
            Some(Ok(listing)) if enabled => (subflow_endpoints(listing), unread),
            Some(Err(why)) if enabled => (Vec::new(), Some(why)),
            _ => (Vec::new(), unread),
        };
        MptcpSetup {
            enabled,
            subflow_endpoints,
            unread,
        }
    }

    /// MPTCP can add a path: enabled, and at least one endpoint opens subflows.
    pub fn multipath(&self) -> bool {
        self.enabled && !self.subflow_endpoints.is_empty()
    }

    /// Why it cannot add a path (`None` where it can).
    fn why_one_path(&self) -> Option<String> {
        if self.multipath() {
            return None;
        }
        let why = if self.enabled {
            "no MPTCP endpoint with the subflow or fullmesh flag, so no second path"
        } else {
            "MPTCP is off (net.mptcp.enabled is not 1)"
        };
        Some(match &self.unread {
            Some(e) => format!("{why}: {e}"),
            None => why.to_owned(),
        })
    }
}

/// The endpoints of `ip mptcp endpoint show`'s listing that open subflows: lines with the word
/// `subflow` or `fullmesh` (`ADDR [port P] id N FLAGS… [dev DEV]`).
pub fn subflow_endpoints(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .any(|w| w == "subflow" || w == "fullmesh")
        })
        .map(|l| l.trim().to_owned())
        .collect()
}

impl fmt::Display for MptcpSetup {
    /// `local MPTCP: …`, for `--explain`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.why_one_path(), self.subflow_endpoints.as_slice()) {
            (Some(why), _) => write!(f, "local MPTCP: {why}"),
            (None, endpoints) => write!(
                f,
                "local MPTCP: enabled, subflows from {}",
                endpoints.join("; ")
            ),
        }
    }
}

fn via(name: &str) -> ConnectionPath {
    ConnectionPath::ArsyncDaemonVia(name.to_owned())
}

fn registered(request: &Request, name: &str) -> bool {
    request.registered.iter().any(|t| t.name == name)
}

/// Under `auto`, with no HTTP proxy and before the TCP port failed: the transport to the
/// daemon's TCP port. A web port: `h2` (an HTTP front forwards only HTTP). Else `mptcp` where
/// this host is set up for more than one path (`seen.mptcp`; `None` while that is not known
/// and `mptcp` is registered: the probe comes first), `tls` otherwise.
pub fn tcp_path(request: &Request, seen: &Observations) -> Option<Decision<ConnectionPath>> {
    if let Some((port, why)) = web_port(request) {
        return Some(Decision::new(
            via(names::H2),
            format!(
                "port {port} is a web port ({why}): what listens there is most likely an HTTP \
                 front (a load balancer or reverse proxy) that forwards only HTTP; HTTP/2 over \
                 TCP first"
            ),
        ));
    }
    let tls = "TCP first: in the bench one TLS connection was about as fast as QUIC or faster, \
               for less CPU";
    if !registered(request, names::MPTCP) {
        return Some(Decision::new(via(names::TLS), tls));
    }
    let setup = seen.mptcp.as_ref()?;
    Some(match setup.why_one_path() {
        None => Decision::new(
            via(names::MPTCP),
            format!(
                "this host is set up for more than one path (MPTCP enabled, {} endpoint{} \
                 opening subflows): one TLS connection over Multipath TCP, plain TCP where the \
                 kernel or the daemon refuses it",
                setup.subflow_endpoints.len(),
                if setup.subflow_endpoints.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        ),
        Some(why) => Decision::new(via(names::TLS), format!("{tls}; not MPTCP: {why}")),
    })
}

/// Under `auto`, the TCP port having failed (`tcp_failed`): on a web port, HTTP/3 on the UDP
/// port (an HTTP front's UDP side speaks HTTP/3, not arsync's QUIC ALPN); `None` elsewhere
/// (raw QUIC, after its probe).
pub fn after_tcp_failed(request: &Request, tcp_failed: &str) -> Option<Decision<ConnectionPath>> {
    let (port, why) = web_port(request)?;
    Some(Decision::new(
        via(names::H3),
        format!(
            "port {port} is a web port ({why}) and its TCP side could not be reached \
             ({tcp_failed}): HTTP/3 on its UDP port"
        ),
    ))
}

/// Whether failing to connect on `path` is the observation `daemon_tcp_failed` (under `auto`
/// the daemon's TCP port was tried first, its UDP port comes next) rather than the run's
/// error. Not behind an HTTP proxy: only h2 goes through one.
pub fn tcp_failure_observed(request: &Request, seen: &Observations, path: &ConnectionPath) -> bool {
    request.transport == TransportAsk::Auto
        && !request.http_proxy
        && matches!(request.target, Target::ArsyncDaemon { .. })
        && seen.daemon_tcp_failed.is_none()
        && matches!(path, ConnectionPath::ArsyncDaemonVia(n)
            if [names::TLS, names::MPTCP, names::H2].contains(&n.as_str()))
}
