//! Overlay networks the target host may be on — a Tailscale tailnet, a Teleport cluster —
//! as observations ([`OverlaySeen`]) and the decisions they lead to, pure and sans-IO.
//!
//! A tailnet peer is reached over WireGuard: the path is already encrypted and authenticated
//! and UDP gets through it end to end, so the QUIC handshake gets a shorter limit
//! ([`tailnet_handshake`]) and goes to the peer's tailnet address ([`quic_address`]). A node of
//! a Teleport cluster the user is logged in to (`tsh login`) is reached the way `tsh config`
//! sets up: `ssh` with `ProxyCommand tsh proxy ssh --cluster=… --proxy=… %r@%h:%p` and the
//! login's key, certificate and host authorities, unless `-e` or the ssh configuration
//! already names a proxy for it ([`ssh_via`]); the
//! QUIC handshake to a node reached through Teleport gets a short try
//! ([`teleport_handshake`]), its offered address being behind the proxy.
//!
//! Owns: the observation types, their `--explain` lines, and those decisions. The readers of
//! what the overlays keep are `tailscale` (LocalAPI answers, tailnet addresses) and
//! `teleport` (`~/.tsh` profiles), on the small `json` reader. Not here: asking tailscaled or
//! reading `~/.tsh` (`arsync_transports::overlay_probe`), or applying the decisions (the
//! binary's driver).

pub mod json;
pub mod tailscale;
pub mod teleport;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

pub use tailscale::{Tailnet, TailnetNode};
pub use teleport::{TeleportProfile, TshKeyFiles};

use super::{millis, Decision};

/// How long the QUIC handshake to an online tailnet peer may take under `--transport=auto`:
/// UDP is expected to get through WireGuard (relayed by DERP at worst), so a handshake that
/// has not finished by then is not waited for as long as on an unknown path.
pub const TAILNET_HANDSHAKE_LIMIT: Duration = Duration::from_millis(1500);
/// How long the QUIC handshake to a Teleport node may take under `--transport=auto`: the
/// node is reached through its proxy, and the address it offers QUIC on is its own, which
/// rarely takes UDP from outside the cluster: a short try before the SSH login carries it.
pub const TELEPORT_HANDSHAKE_LIMIT: Duration = Duration::from_secs(1);

/// What asking tailscaled found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailscaleSeen {
    /// Nothing answers on its socket (not installed, not running, not allowed).
    NoDaemon {
        /// The socket tried.
        socket: String,
        /// What connecting said.
        reason: String,
    },
    /// It answered, but not with a status understood in time.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// Its status.
    Status(Box<Tailnet>),
}

/// What `~/.tsh` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeleportSeen {
    /// No current profile (no `tsh login`).
    NoProfile {
        /// What was missing.
        reason: String,
    },
    /// The current profile.
    Profile(Box<TshLogin>),
}

/// The current `tsh` profile, and what of its login is on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TshLogin {
    /// The profile.
    pub profile: TeleportProfile,
    /// `tsh` on `PATH`, if there.
    pub tsh: Option<String>,
    /// Its login's credentials that are on disk.
    pub files: TshKeyFiles<String>,
}

/// How the remote shell reaches the host, as `-e` and the ssh configuration say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellSeen {
    /// `-e` runs OpenSSH's `ssh` (so `-o ProxyCommand=…` means what it says).
    pub program_is_ssh: bool,
    /// The `HostName` it connects to for the host.
    pub hostname: String,
    /// The `ProxyCommand` or `ProxyJump` set for the host by `-e` or the configuration.
    pub proxy: Option<String>,
}

/// The overlay probe's findings for one target host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySeen {
    /// The host as written.
    pub host: String,
    /// tailscaled.
    pub tailscale: TailscaleSeen,
    /// `~/.tsh`.
    pub teleport: TeleportSeen,
    /// The remote shell's view of the host; `None` when `-e` could not be read.
    pub shell: Option<ShellSeen>,
}

impl OverlaySeen {
    /// The names the host goes by: as written, and ssh's `HostName` for it.
    pub fn host_names(&self) -> Vec<&str> {
        let mut names = vec![self.host.as_str()];
        if let Some(shell) = &self.shell {
            if shell.hostname != self.host {
                names.push(&shell.hostname);
            }
        }
        names
    }

    /// The tailnet peer the host is, if tailscaled says it is one and this node is on the
    /// tailnet.
    pub fn tailnet_peer(&self) -> Option<&TailnetNode> {
        match &self.tailscale {
            TailscaleSeen::Status(t) if t.state == "Running" => t.peer.as_ref(),
            _ => None,
        }
    }

    /// The observations' `--explain` lines (without the `explain: ` prefix).
    pub fn explain(&self) -> Vec<String> {
        let mut lines = vec![self.tailscale_line()];
        lines.push(match &self.teleport {
            TeleportSeen::NoProfile { reason } => {
                format!("overlay: no Teleport profile ({reason})")
            }
            TeleportSeen::Profile(login) => format!(
                "overlay: Teleport profile {} (cluster {}, proxy {}{}), {}",
                login.profile.name,
                login.profile.cluster,
                login.profile.web_proxy_addr,
                login
                    .profile
                    .user
                    .as_deref()
                    .map(|u| format!(", user {u}"))
                    .unwrap_or_default(),
                login
                    .tsh
                    .as_deref()
                    .map_or("no tsh on PATH".to_owned(), |t| format!("tsh at {t}"))
            ),
        });
        lines
    }

    fn tailscale_line(&self) -> String {
        let looks = self.host_names().into_iter().find(|n| looks_tailnet(n));
        match (&self.tailscale, looks) {
            (TailscaleSeen::NoDaemon { socket, reason }, Some(name)) => format!(
                "overlay: {name} looks like a tailnet name or address, but no tailscaled \
                 answers here ({socket}: {reason})"
            ),
            (TailscaleSeen::NoDaemon { socket, reason }, None) => {
                format!("overlay: no tailscaled ({socket}: {reason})")
            }
            (TailscaleSeen::Unreadable { reason }, _) => format!("overlay: tailscaled: {reason}"),
            (TailscaleSeen::Status(t), _) if t.state != "Running" => {
                format!("overlay: tailscaled is {}: not on a tailnet", t.state)
            }
            (TailscaleSeen::Status(t), _) => match &t.peer {
                Some(peer) => format!("overlay: tailnet peer {}", peer_text(peer)),
                None => format!(
                    "overlay: {} is not a peer of this tailnet (this node {})",
                    self.host, t.self_node.name
                ),
            },
        }
    }
}

/// `peer-a.tail1234.ts.net (100.101.102.103), online, direct 192.0.2.7:41641, owner alice@…`.
fn peer_text(peer: &TailnetNode) -> String {
    let addr = peer
        .addrs
        .first()
        .map(|a| format!(" ({a})"))
        .unwrap_or_default();
    let mut text = format!(
        "{}{addr}, {}",
        peer.name,
        if peer.online { "online" } else { "offline" }
    );
    match (&peer.direct, &peer.relay) {
        (Some(d), _) => text.push_str(&format!(", direct {d}")),
        (None, Some(r)) => text.push_str(&format!(", relayed by DERP {r} until a direct path")),
        (None, None) => {}
    }
    if let Some(login) = &peer.login {
        text.push_str(&format!(", owner {login}"));
    }
    if let Some(os) = &peer.os {
        text.push_str(&format!(", {os}"));
    }
    text
}

/// A name or address that is a tailnet's by its form alone.
fn looks_tailnet(name: &str) -> bool {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => tailscale::is_tailnet_addr(ip),
        Err(_) => tailscale::is_magicdns_name(bare),
    }
}

const WIREGUARD: &str = "the path is WireGuard, already encrypted and authenticated";

/// The QUIC handshake limit for an online tailnet peer, and why; `None` when the host is not
/// one (the usual limit applies).
pub fn tailnet_handshake(seen: &OverlaySeen) -> Option<Decision<Duration>> {
    let peer = seen.tailnet_peer().filter(|p| p.online)?;
    Some(Decision::new(
        TAILNET_HANDSHAKE_LIMIT,
        format!(
            "{} is an online tailnet peer: UDP is expected to get through, and {WIREGUARD}",
            peer.name
        ),
    ))
}

/// The QUIC handshake limit for a host reached through Teleport (`tsh proxy ssh` as the
/// `ProxyCommand`, added here or already configured), and why; `None` otherwise.
pub fn teleport_handshake(seen: &OverlaySeen) -> Option<Decision<Duration>> {
    let added = matches!(
        ssh_via(seen).map(|d| d.choice),
        Some(SshVia::Teleport { .. })
    );
    let configured = seen
        .shell
        .as_ref()
        .and_then(|s| s.proxy.as_deref())
        .is_some_and(is_tsh_proxy);
    (added || configured).then(|| {
        Decision::new(
            TELEPORT_HANDSHAKE_LIMIT,
            format!(
                "{} is reached through a Teleport proxy: the address it offers QUIC on is \
                 its own, which UDP from here rarely reaches",
                seen.host
            ),
        )
    })
}

/// The QUIC handshake limit the overlays call for: a tailnet peer's, else a Teleport
/// node's; `None`: the usual one.
pub fn handshake_limit(seen: &OverlaySeen) -> Option<Decision<Duration>> {
    tailnet_handshake(seen).or_else(|| teleport_handshake(seen))
}

/// Whether a `ProxyCommand` goes through `tsh proxy ssh`.
fn is_tsh_proxy(proxy: &str) -> bool {
    proxy.contains("tsh") && proxy.contains("proxy ssh")
}

/// Where the QUIC handshake goes for an online tailnet peer: the offer's address when it is
/// one of the peer's tailnet addresses, else the peer's tailnet address (of the offer's
/// family when it has one); `None` when the host is not a peer (the offer's address stands).
pub fn quic_address(seen: &OverlaySeen, offered: Option<IpAddr>) -> Option<Decision<IpAddr>> {
    let peer = seen.tailnet_peer().filter(|p| p.online)?;
    if let Some(addr) = offered.filter(|a| peer.addrs.contains(a)) {
        return Some(Decision::new(
            addr,
            format!("the offer's address is {}'s tailnet address", peer.name),
        ));
    }
    let same_family = |a: &&IpAddr| offered.is_none_or(|o| o.is_ipv4() == a.is_ipv4());
    let addr = *peer.addrs.iter().find(same_family).or(peer.addrs.first())?;
    let instead = offered.map_or("the offer named no address".to_owned(), |o| {
        format!("not the offered {o}")
    });
    Some(Decision::new(
        addr,
        format!(
            "{}'s tailnet address carries UDP end to end ({instead}); {WIREGUARD}",
            peer.name
        ),
    ))
}

/// How the remote shell reaches a Teleport node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshVia {
    /// Add `-o ProxyCommand=…` to the system `ssh`: `tsh proxy ssh` carries the login; and
    /// `tsh`'s key, certificate and host authorities, as `tsh config` sets them up.
    Teleport {
        /// The `ProxyCommand` value.
        proxy_command: String,
        /// More `-o` options (`IdentityFile=…`, `CertificateFile=…`,
        /// `GlobalKnownHostsFile=…`), for the credentials on disk.
        options: Vec<String>,
    },
    /// Leave `-e` and the ssh configuration as they are.
    AsConfigured,
}

/// Characters allowed unquoted in a `ProxyCommand` word built here.
fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/[]@+=,".contains(&b))
}

/// How `ssh` reaches the host when it is a node of the current Teleport profile's cluster;
/// `None` when there is no profile or the host is not one of its nodes.
pub fn ssh_via(seen: &OverlaySeen) -> Option<Decision<SshVia>> {
    let TeleportSeen::Profile(login) = &seen.teleport else {
        return None;
    };
    let TshLogin {
        profile,
        tsh,
        files,
    } = &**login;
    let node = seen
        .host_names()
        .into_iter()
        .find(|n| teleport::serves_host(profile, n))?;
    let as_configured = |why: String| Some(Decision::new(SshVia::AsConfigured, why));
    let Some(shell) = &seen.shell else {
        return as_configured("-e could not be read".into());
    };
    if let Some(proxy) = &shell.proxy {
        if is_tsh_proxy(proxy) {
            return as_configured(format!(
                "the ssh configuration already reaches {node} through tsh proxy ssh"
            ));
        }
        return as_configured(format!(
            "-e or the ssh configuration already sets a proxy for {node} ({proxy})"
        ));
    }
    if !shell.program_is_ssh {
        return as_configured("-e is not ssh: ProxyCommand is an ssh option".into());
    }
    let Some(tsh) = tsh else {
        return as_configured(format!(
            "{node} is a node of Teleport cluster {}, but tsh is not on PATH",
            profile.cluster
        ));
    };
    let paths = [&files.key, &files.cert, &files.known_hosts];
    if ![tsh.as_str(), &profile.cluster, &profile.web_proxy_addr]
        .into_iter()
        .chain(paths.into_iter().flatten().map(String::as_str))
        .all(plain_word)
    {
        return as_configured(
            "the tsh path, its files or the profile have characters left unquoted".into(),
        );
    }
    let mut options = Vec::new();
    if let Some(key) = &files.key {
        options.push(format!("IdentityFile={key}"));
    }
    if let Some(cert) = &files.cert {
        options.push(format!("CertificateFile={cert}"));
    }
    if let Some(known) = &files.known_hosts {
        // ssh's own global files kept after it.
        options.push(format!(
            "GlobalKnownHostsFile={known} /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"
        ));
    }
    Some(Decision::new(
        SshVia::Teleport {
            proxy_command: format!(
                "{tsh} proxy ssh --cluster={} --proxy={} %r@%h:%p",
                profile.cluster, profile.web_proxy_addr
            ),
            options,
        },
        format!(
            "{node} is a node of Teleport cluster {} (profile {}{})",
            profile.cluster,
            profile.name,
            profile
                .user
                .as_deref()
                .map(|u| format!(", user {u}"))
                .unwrap_or_default()
        ),
    ))
}

/// `rsh` (the `-e` command line) with `via` applied: `-o 'ProxyCommand=…'` and the other
/// options appended (after the user's own options, which `ssh` lets win).
pub fn rsh_with(rsh: &str, via: &SshVia) -> String {
    match via {
        SshVia::Teleport {
            proxy_command,
            options,
        } => {
            let mut line = format!("{rsh} -o 'ProxyCommand={proxy_command}'");
            for option in options {
                line.push_str(&format!(" -o '{option}'"));
            }
            line
        }
        SshVia::AsConfigured => rsh.to_owned(),
    }
}

/// `, with tsh's key, certificate and host authorities` for the options added.
fn with_files(options: &[String]) -> String {
    let names: Vec<&str> = options
        .iter()
        .filter_map(|o| match o.split('=').next() {
            Some("IdentityFile") => Some("key"),
            Some("CertificateFile") => Some("certificate"),
            Some("GlobalKnownHostsFile") => Some("host authorities"),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => format!(", with tsh's {one}"),
        [init @ .., last] => format!(", with tsh's {} and {last}", init.join(", ")),
    }
}

/// The overlay decisions' `--explain` lines (without the `explain: ` prefix).
pub fn explain_decisions(seen: &OverlaySeen) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(d) = ssh_via(seen) {
        lines.push(match &d.choice {
            SshVia::Teleport {
                proxy_command,
                options,
            } => format!(
                "decision: ssh through Teleport, ProxyCommand {proxy_command}{} ({})",
                with_files(options),
                d.reason
            ),
            SshVia::AsConfigured => {
                format!(
                    "decision: ssh as configured, not through Teleport ({})",
                    d.reason
                )
            }
        });
    }
    if let Some(d) = handshake_limit(seen) {
        lines.push(format!(
            "decision: QUIC handshake limit {} ({})",
            millis(d.choice),
            d.reason
        ));
    }
    lines
}
