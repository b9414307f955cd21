//! What Tailscale's LocalAPI says, read without I/O: the HTTP answer's body
//! ([`http_body`]), `/localapi/v0/status` ([`parse_status`]) and `/localapi/v0/whois`
//! ([`parse_whois`]), and which addresses and names belong to a tailnet ([`is_tailnet_addr`],
//! [`is_magicdns_name`]).
//!
//! Not here: asking tailscaled (the binary's probe, over its Unix socket) or what a tailnet
//! peer changes in the plan (`overlay`).

use std::net::IpAddr;

use super::json::{self, Json};
use crate::proto::http1;

/// The most a LocalAPI answer may be (the status of a tailnet of a few thousand nodes).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// One tailnet node as the LocalAPI describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailnetNode {
    /// Its MagicDNS name without the final dot (`peer-a.tail1234.ts.net`); its host name
    /// where MagicDNS gives none.
    pub name: String,
    /// The host name the node reports (`peer-a`).
    pub host_name: String,
    /// Its tailnet addresses (100.64.0.0/10, fd7a:115c:a1e0::/48).
    pub addrs: Vec<IpAddr>,
    /// Whether the coordination server sees it connected.
    pub online: bool,
    /// Its operating system, when told.
    pub os: Option<String>,
    /// The login of its owner (`alice@example.com`), when told.
    pub login: Option<String>,
    /// The direct UDP endpoint WireGuard uses now (`CurAddr`); `None` when relayed or idle.
    pub direct: Option<String>,
    /// The DERP region relaying it (`Relay`), when there is one.
    pub relay: Option<String>,
}

/// What tailscaled's status says that negotiation needs: this node, and the peer the target
/// host is (if it is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tailnet {
    /// `BackendState`: `Running` when this node is on the tailnet.
    pub state: String,
    /// This node.
    pub self_node: TailnetNode,
    /// The peer that is the target host.
    pub peer: Option<TailnetNode>,
}

/// Why a LocalAPI answer was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalApiError {
    /// Not an HTTP answer, or a status other than 200.
    #[error("LocalAPI answered {0}")]
    Http(String),
    /// The body is not JSON.
    #[error("LocalAPI status: {0}")]
    Json(#[from] json::JsonError),
    /// JSON without the fields a status has.
    #[error("LocalAPI answer without {0}")]
    Missing(&'static str),
}

/// Whether `ip` is a tailnet address: 100.64.0.0/10 (the CGNAT range Tailscale hands out) or
/// fd7a:115c:a1e0::/48 (Tailscale's ULA prefix).
pub fn is_tailnet_addr(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 100 && (o[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0
        }
    }
}

/// Whether `name` is a MagicDNS name (`*.ts.net`, a final dot allowed).
pub fn is_magicdns_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.ends_with(".ts.net")
}

/// The body of an HTTP/1.x answer of status 200 (`Content-Length`, chunked, or up to the
/// end), at most `max` bytes of it.
pub fn http_body(answer: &[u8], max: usize) -> Result<Vec<u8>, LocalApiError> {
    let a = http1::parse_answer(answer, max).map_err(|e| LocalApiError::Http(e.to_string()))?;
    if a.status != 200 {
        return Err(LocalApiError::Http(a.status_line));
    }
    Ok(a.body)
}

fn text(v: Option<&Json>) -> Option<String> {
    v.and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `100.1.2.3` or `100.1.2.3/32`: the address.
fn addrs(v: Option<&Json>) -> Vec<IpAddr> {
    v.map(Json::items)
        .unwrap_or_default()
        .iter()
        .filter_map(Json::as_str)
        .filter_map(|a| a.split('/').next().and_then(|a| a.parse().ok()))
        .collect()
}

/// A node of the status (`Self` or a `Peer` value); `users` is the status's `User` map.
fn status_node(v: &Json, users: Option<&Json>) -> TailnetNode {
    let host_name = text(v.get("HostName")).unwrap_or_default();
    let login = v
        .get("UserID")
        .and_then(Json::as_f64)
        .and_then(|id| users?.get(&format!("{id:.0}")))
        .and_then(|u| text(u.get("LoginName")));
    TailnetNode {
        name: text(v.get("DNSName"))
            .map(|n| n.trim_end_matches('.').to_owned())
            .unwrap_or_else(|| host_name.clone()),
        host_name,
        addrs: addrs(v.get("TailscaleIPs")),
        online: v.get("Online").and_then(Json::as_bool).unwrap_or(false),
        os: text(v.get("OS")),
        login,
        direct: text(v.get("CurAddr")),
        relay: text(v.get("Relay")),
    }
}

/// Whether `node` is what `name` (a host as written, or ssh's `HostName` for it) names: one
/// of its addresses, its MagicDNS name, the first label of that name, or its host name.
pub fn names_node(node: &TailnetNode, name: &str) -> bool {
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    if let Ok(ip) = name.parse::<IpAddr>() {
        return node.addrs.contains(&ip);
    }
    let short = node.name.split('.').next().unwrap_or("");
    node.name.eq_ignore_ascii_case(name)
        || (!name.contains('.') && short.eq_ignore_ascii_case(name))
        || (!node.host_name.is_empty() && node.host_name.eq_ignore_ascii_case(name))
}

/// `/localapi/v0/status`'s body: this node, and the peer any of `names` names.
pub fn parse_status(body: &[u8], names: &[&str]) -> Result<Tailnet, LocalApiError> {
    let v = json::parse(body)?;
    let users = v.get("User");
    let self_node = status_node(v.get("Self").ok_or(LocalApiError::Missing("Self"))?, users);
    let peer = v
        .get("Peer")
        .map(Json::members)
        .unwrap_or_default()
        .iter()
        .map(|(_, p)| status_node(p, users))
        .find(|p| names.iter().any(|n| names_node(p, n)));
    Ok(Tailnet {
        state: text(v.get("BackendState")).unwrap_or_default(),
        self_node,
        peer,
    })
}

/// `/localapi/v0/whois?addr=…`'s body: the node that has the address, and its owner.
pub fn parse_whois(body: &[u8]) -> Result<TailnetNode, LocalApiError> {
    let v = json::parse(body)?;
    let node = v.get("Node").ok_or(LocalApiError::Missing("Node"))?;
    let hostinfo = node.get("Hostinfo");
    let host_name = text(hostinfo.and_then(|h| h.get("Hostname"))).unwrap_or_default();
    Ok(TailnetNode {
        name: text(node.get("Name"))
            .map(|n| n.trim_end_matches('.').to_owned())
            .unwrap_or_else(|| host_name.clone()),
        host_name,
        addrs: addrs(node.get("Addresses")),
        online: node.get("Online").and_then(Json::as_bool).unwrap_or(false),
        os: text(hostinfo.and_then(|h| h.get("OS"))),
        login: text(v.get("UserProfile").and_then(|u| u.get("LoginName"))),
        direct: None,
        relay: None,
    })
}
