//! What Teleport's `tsh` keeps in `~/.tsh`, read without I/O: the `current-profile` file
//! ([`parse_current_profile`]) and a `<proxy>.yaml` profile ([`parse_profile`]), where its
//! login's SSH key, certificate and host authorities are ([`TeleportProfile::key_files`]),
//! and whether a host is a node of the profile's cluster ([`serves_host`]).
//!
//! The profile is the flat `key: value` YAML `tsh login` writes (`web_proxy_addr`,
//! `ssh_proxy_addr`, `user`, `cluster`, …); lists and nested keys are skipped, so this reads
//! it without a YAML library. Not here: reading the files (the binary's probe) or what a
//! Teleport profile changes in the plan (`overlay`).

use std::path::{Path, PathBuf};

/// The most a profile file may be.
pub const MAX_PROFILE_BYTES: usize = 64 << 10;

/// A `tsh` profile: one Teleport proxy logged in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeleportProfile {
    /// Its name: the proxy's host (the file `~/.tsh/NAME.yaml`).
    pub name: String,
    /// `web_proxy_addr`: the proxy's `host:port` (what `tsh proxy ssh --proxy` takes).
    pub web_proxy_addr: String,
    /// `ssh_proxy_addr`, when the proxy has a separate SSH port.
    pub ssh_proxy_addr: Option<String>,
    /// `user`: the Teleport user.
    pub user: Option<String>,
    /// `cluster`: the cluster logged in to; the proxy's host when the profile names none.
    pub cluster: String,
}

impl TeleportProfile {
    /// The proxy's host, without the port.
    pub fn proxy_host(&self) -> &str {
        host_of(&self.web_proxy_addr)
    }

    /// Where `tsh login` keeps this profile's SSH credentials under `tsh_home`: the private
    /// key (`keys/PROFILE/USER`) and the certificate (`keys/PROFILE/USER-ssh/CLUSTER-cert.pub`)
    /// when the profile names its user, and the cluster's host authorities (`known_hosts`).
    pub fn key_files(&self, tsh_home: &Path) -> TshKeyFiles<PathBuf> {
        let dir = tsh_home.join("keys").join(&self.name);
        TshKeyFiles {
            key: self.user.as_ref().map(|u| dir.join(u)),
            cert: self.user.as_ref().map(|u| {
                dir.join(format!("{u}-ssh"))
                    .join(format!("{}-cert.pub", self.cluster))
            }),
            known_hosts: Some(tsh_home.join("known_hosts")),
        }
    }
}

/// A `tsh` login's SSH credentials, each where it is (or `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TshKeyFiles<P> {
    /// The private key.
    pub key: Option<P>,
    /// The SSH certificate the cluster signed.
    pub cert: Option<P>,
    /// The cluster's host certificate authorities (`@cert-authority` lines).
    pub known_hosts: Option<P>,
}

fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            host.trim_start_matches('[').trim_end_matches(']')
        }
        _ => addr,
    }
}

/// `~/.tsh/current-profile`: the current profile's name (its first line, trimmed); `None`
/// when empty or not a plain name.
pub fn parse_current_profile(text: &str) -> Option<String> {
    let name = text.lines().next().unwrap_or("").trim();
    let plain = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    plain.then(|| name.to_owned())
}

/// One top-level `key: value` of a flat YAML text, the value unquoted.
fn yaml_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        if line.starts_with([' ', '\t', '-', '#']) {
            return None;
        }
        let (k, v) = line.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let v = if let Some(q) = v.strip_prefix('"').and_then(|v| v.split('"').next()) {
            q
        } else if let Some(q) = v.strip_prefix('\'').and_then(|v| v.split('\'').next()) {
            q
        } else {
            v.split(" #").next().unwrap_or("").trim()
        };
        (!v.is_empty()).then_some(v)
    })
}

/// The profile `name` (`~/.tsh/NAME.yaml`) from its text; `None` without `web_proxy_addr`.
pub fn parse_profile(name: &str, text: &str) -> Option<TeleportProfile> {
    let web_proxy_addr = yaml_value(text, "web_proxy_addr")?.to_owned();
    let cluster = yaml_value(text, "cluster")
        .map(str::to_owned)
        .unwrap_or_else(|| host_of(&web_proxy_addr).to_owned());
    Some(TeleportProfile {
        name: name.to_owned(),
        ssh_proxy_addr: yaml_value(text, "ssh_proxy_addr").map(str::to_owned),
        user: yaml_value(text, "user").map(str::to_owned),
        cluster,
        web_proxy_addr,
    })
}

/// Whether `host` is a node of `profile`'s cluster as `tsh config` names them:
/// `NODE.CLUSTER` (or `NODE.PROXYHOST`), the proxy itself excluded.
pub fn serves_host(profile: &TeleportProfile, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let proxy = profile.proxy_host().to_ascii_lowercase();
    if host == proxy {
        return false;
    }
    [profile.cluster.to_ascii_lowercase(), proxy]
        .iter()
        .any(|suffix| {
            host.strip_suffix(suffix.as_str())
                .is_some_and(|node| node.len() > 1 && node.ends_with('.'))
        })
}
