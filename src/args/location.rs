//! Where an argument points: a local path, `[user@]host:path`, `host::module/path`,
//! `rsync://…` or `arsync://…` ([`Remote`]).

use std::ffi::OsString;

use super::{ParseOutcome, Remote};

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` for an empty host or a bad port.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host.to_owned(), port))
}

/// A remote argument: a URL, or a colon before any slash (rsync's rule).
pub(super) fn is_remote(p: &OsString) -> bool {
    let s = p.to_string_lossy();
    if s.starts_with("rsync://") || s.starts_with("arsync://") {
        return true;
    }
    // host:path — a colon before any slash (rsync's rule).
    match (s.find(':'), s.find('/')) {
        (Some(c), Some(sl)) => c < sl,
        (Some(_), None) => true,
        _ => false,
    }
}

/// `[user@]host:path`, `rsync://[user@]host[:port]/module/path`, `host::module/path` or
/// `arsync://host[:port]/module/path` → [`Remote`]; `daemon_port` is an rsync daemon's port
/// where the name gives none (873, or `--port`).
pub(super) fn parse_remote(p: &OsString, daemon_port: u16) -> Result<Remote, ParseOutcome> {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("arsync://") {
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| ParseOutcome::Usage(format!("{s}: bad host or port")))?;
        if path.is_empty() {
            return Err(ParseOutcome::Usage(format!(
                "{s}: name a module: arsync://host[:port]/MODULE/path"
            )));
        }
        return Ok(Remote {
            user: None,
            host,
            paths: vec![path.to_owned()],
            daemon_port: None,
            arsync_port: Some(port.unwrap_or(arsync_transports::quic::DEFAULT_PORT)),
        });
    }
    if let Some(rest) = s.strip_prefix("rsync://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse::<u16>()
                    .map_err(|_| ParseOutcome::Usage(format!("{s}: bad port {p:?}")))?,
            ),
            None => (hostport.to_owned(), daemon_port),
        };
        if host.is_empty() {
            return Err(ParseOutcome::Usage(format!("{s}: empty host name")));
        }
        return Ok(Remote {
            user,
            host,
            paths: vec![path.to_owned()],
            daemon_port: Some(port),
            arsync_port: None,
        });
    }
    let (hostpart, path) = s
        .split_once(':')
        .ok_or_else(|| ParseOutcome::Usage(format!("{s}: not a remote path")))?;
    let (user, host) = match hostpart.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h.to_owned()),
        None => (None, hostpart.to_owned()),
    };
    if host.is_empty() {
        return Err(ParseOutcome::Usage(format!("{s}: empty host name")));
    }
    // `host::module/path`: an rsync daemon on its standard port.
    if let Some(module_path) = path.strip_prefix(':') {
        return Ok(Remote {
            user,
            host,
            paths: vec![module_path.to_owned()],
            daemon_port: Some(daemon_port),
            arsync_port: None,
        });
    }
    // An empty remote path means the remote home directory, as in rsync.
    let path = if path.is_empty() { "." } else { path };
    Ok(Remote {
        user,
        host,
        paths: vec![path.to_owned()],
        daemon_port: None,
        arsync_port: None,
    })
}
