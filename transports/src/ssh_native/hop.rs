//! One host to log in to — the target or a jump host on the way — and how it is reached:
//! directly, through a `ProxyCommand`, or through a `ProxyJump` chain (each jump host resolved
//! from the same configuration, as `ssh` resolves it), plus the identity that worked for it
//! last.
//!
//! What it owns: building the chain of [`Hop`]s from resolved settings, parsing `ProxyJump`
//! host specs, and refusing a chain deeper than [`MAX_JUMPS`]. What it does not own: opening
//! the connections along the chain (`session`) or finding the identity (`auth`).

use std::fmt;
use std::sync::{Arc, Mutex};

use arsync_core::transport::TransportError;
use russh::keys::{PrivateKey, PublicKey};

use super::connect_error;
use crate::ssh_config::{HostSettings, LocalContext, RshOptions, SshConfig};

/// How many jump hosts deep a `ProxyJump` chain may go (a loop in the configuration otherwise).
const MAX_JUMPS: usize = 8;

/// One host to log in to: the target, or a jump host on the way.
pub(super) struct Hop {
    pub(super) settings: HostSettings,
    pub(super) user: String,
    pub(super) via: Via,
    pub(super) remembered: Mutex<Option<Remembered>>,
    /// Held while searching for a working identity, so that concurrent first connections do not
    /// each prompt for the same passphrase.
    pub(super) search: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
pub(super) enum Via {
    Direct,
    Command(String),
    Jump(Arc<Hop>),
}

impl fmt::Debug for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, hop_target(&self.settings))
    }
}

/// The identity that worked last.
#[derive(Clone)]
pub(super) enum Remembered {
    Agent(PublicKey),
    Key(Arc<PrivateKey>),
}

pub(super) fn hop_target(s: &HostSettings) -> String {
    if s.hostname.contains(':') {
        format!("[{}]:{}", s.hostname, s.port)
    } else {
        format!("{}:{}", s.hostname, s.port)
    }
}

pub(super) fn build_hop(
    settings: HostSettings,
    config: &SshConfig,
    cli: &RshOptions,
    local: &LocalContext,
    depth: usize,
) -> Result<Hop, TransportError> {
    let user = settings.user.clone().unwrap_or_else(|| local.user.clone());
    let via = if let Some(jumps) = settings.proxy_jump.as_deref() {
        let mut list: Vec<&str> = jumps
            .split(',')
            .map(str::trim)
            .filter(|j| !j.is_empty())
            .collect();
        match list.pop() {
            None => Via::Direct,
            Some(last) => {
                if depth >= MAX_JUMPS {
                    return Err(connect_error(
                        hop_target(&settings),
                        format!(
                            "more than {MAX_JUMPS} ProxyJump hops (a loop in the configuration?)"
                        ),
                    ));
                }
                let (juser, jhost, jport) = parse_jump(last).ok_or_else(|| {
                    connect_error(
                        hop_target(&settings),
                        format!("bad ProxyJump host {last:?}"),
                    )
                })?;
                // As ssh does for a jump host: only the configuration file, the jump spec's
                // user and port, and the jump hosts before it.
                let mut jcli = RshOptions {
                    program: cli.program.clone(),
                    port: jport,
                    user: juser,
                    config_file: cli.config_file.clone(),
                    ..RshOptions::default()
                };
                if !list.is_empty() {
                    jcli.options.push(("proxyjump".into(), list.join(",")));
                }
                let jsettings = config.resolve(&jhost, &jcli, local);
                Via::Jump(Arc::new(build_hop(
                    jsettings,
                    config,
                    cli,
                    local,
                    depth + 1,
                )?))
            }
        }
    } else if let Some(cmd) = &settings.proxy_command {
        Via::Command(cmd.clone())
    } else {
        Via::Direct
    };
    Ok(Hop {
        settings,
        user,
        via,
        remembered: Mutex::new(None),
        search: tokio::sync::Mutex::new(()),
    })
}

/// `[user@]host[:port]` or `ssh://[user@]host[:port]`; IPv6 addresses in brackets.
fn parse_jump(spec: &str) -> Option<(Option<String>, String, Option<u16>)> {
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, hostport) = match spec.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
        Some(_) => return None,
        None => (None, spec),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p.parse().ok()?)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p.parse().ok()?)),
            _ => (hostport, None),
        }
    };
    if host.is_empty() || port == Some(0) {
        return None;
    }
    Some((user, host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_specs() {
        assert_eq!(
            parse_jump("bob@jump:2222"),
            Some((Some("bob".into()), "jump".into(), Some(2222)))
        );
        assert_eq!(parse_jump("jump"), Some((None, "jump".into(), None)));
        assert_eq!(
            parse_jump("ssh://[::1]:22"),
            Some((None, "::1".into(), Some(22)))
        );
        assert_eq!(parse_jump("::1"), Some((None, "::1".into(), None)));
        assert_eq!(parse_jump("@h"), None);
        assert_eq!(parse_jump("h:0"), None);
    }
}
