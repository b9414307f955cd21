//! Issue 17, mptcp: TCP sockets that are Multipath TCP where the kernel allows it (Linux,
//! `IPPROTO_MPTCP`, `net.mptcp.enabled`), and what a connected socket says of itself.
//!
//! [`tcp_socket`] opens an MPTCP socket and falls back to plain TCP when the kernel refuses
//! one (not Linux, MPTCP compiled out, `net.mptcp.enabled=0`), saying why; whether a
//! connection then really is MPTCP depends on the peer too, which [`MptcpState::of`] reads back
//! (`TCP_IS_MPTCP`, then `MPTCP_INFO` for the subflows). Decoding `MPTCP_INFO` is pure
//! ([`MptcpInfo::decode`]). Issue 17, h2: [`path_stats`] reads `TCP_INFO` (and
//! `MPTCP_INFO`) for the TCP transports' statistics.
//!
//! Issue 17, auto → mptcp: [`host_setup`] reads whether this host is set up for more than one
//! path (`net.mptcp.enabled`, `ip mptcp endpoint show`), for the negotiator.
//!
//! Not here: TLS, admission and the transport (`crate::tls_tcp`); adding subflows (the
//! kernel's path manager: `ip mptcp endpoint`, `ip mptcp limits`); what the set-up leads to
//! (`arsync_core::negotiate::daemon_paths`).

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use arsync_core::negotiate::daemon_paths::MptcpSetup;
use arsync_core::transport::PathStats;
use socket2::{Domain, Protocol, Socket, Type};

/// `SOL_TCP` option: 1 when the socket is MPTCP and has not fallen back to TCP (Linux 5.16).
const TCP_IS_MPTCP: libc::c_int = 43;
/// `SOL_MPTCP` (linux/socket.h).
const SOL_MPTCP: libc::c_int = 284;
/// `MPTCP_INFO` (linux/mptcp.h): `struct mptcp_info`.
const MPTCP_INFO: libc::c_int = 1;
/// `MPTCP_INFO_FLAG_FALLBACK`.
const FLAG_FALLBACK: u32 = 1;

/// A TCP socket for `addr`'s family: MPTCP if `want_mptcp` and the kernel gives one, else
/// plain TCP with the reason the MPTCP one was refused.
pub fn tcp_socket(addr: SocketAddr, want_mptcp: bool) -> std::io::Result<(Socket, Option<String>)> {
    let domain = Domain::for_address(addr);
    if want_mptcp {
        match Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP)) {
            Ok(s) => return Ok((s, None)),
            Err(e) => {
                let why =
                    format!("the kernel refused an MPTCP socket ({e}; is net.mptcp.enabled 0?)");
                return Ok((
                    Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
                    Some(why),
                ));
            }
        }
    }
    Ok((
        Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        None,
    ))
}

/// What `struct mptcp_info` says (the fields arsync reports; older kernels give fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MptcpInfo {
    /// Subflows besides the first (`mptcpi_subflows`).
    pub extra_subflows: u8,
    /// All subflows ever created, the first included (`mptcpi_subflows_total`, Linux 6.10+).
    pub subflows_total: Option<u8>,
    /// The connection fell back to TCP (`MPTCP_INFO_FLAG_FALLBACK`).
    pub fallback: bool,
    /// Bytes sent over all subflows (`mptcpi_bytes_sent`, Linux 6.4+).
    pub bytes_sent: Option<u64>,
    /// Bytes received (`mptcpi_bytes_received`).
    pub bytes_received: Option<u64>,
}

impl MptcpInfo {
    /// Decode the bytes `getsockopt(SOL_MPTCP, MPTCP_INFO)` filled (as many as the kernel
    /// knows of); `None` when too short to hold even the first fields.
    pub fn decode(b: &[u8]) -> Option<MptcpInfo> {
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        };
        let u64_at = |o: usize| {
            b.get(o..o + 8)
                .map(|s| u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
        };
        Some(MptcpInfo {
            extra_subflows: *b.first()?,
            fallback: u32_at(8)? & FLAG_FALLBACK != 0,
            bytes_sent: u64_at(56),
            bytes_received: u64_at(64),
            subflows_total: b.get(80).copied(),
        })
    }

    /// Subflows: the total where the kernel counts it, else the first and the extra ones.
    pub fn subflows(&self) -> u32 {
        self.subflows_total
            .map_or(u32::from(self.extra_subflows) + 1, u32::from)
    }
}

/// Whether a connected socket is MPTCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MptcpState {
    /// MPTCP end to end, with what `MPTCP_INFO` said.
    Mptcp(MptcpInfo),
    /// An MPTCP socket the peer (or a middlebox) answered in plain TCP.
    FellBack,
    /// A plain TCP socket.
    PlainTcp,
}

impl MptcpState {
    /// Ask the kernel about `fd` (a connected TCP or MPTCP socket).
    pub fn of(fd: RawFd) -> MptcpState {
        let mut is: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt on a caller's socket into a live c_int with its size.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_TCP,
                TCP_IS_MPTCP,
                (&mut is as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        let info = mptcp_info(fd);
        match (r == 0 && is == 1, info) {
            (true, Some(i)) if !i.fallback => MptcpState::Mptcp(i),
            (true, _) => MptcpState::Mptcp(MptcpInfo::default()),
            // An MPTCP socket that fell back still answers MPTCP_INFO on some kernels.
            (false, Some(_)) => MptcpState::FellBack,
            (false, None) if is_mptcp_socket(fd) => MptcpState::FellBack,
            (false, None) => MptcpState::PlainTcp,
        }
    }

    /// Whether the connection is MPTCP end to end.
    pub fn is_mptcp(&self) -> bool {
        matches!(self, MptcpState::Mptcp(_))
    }
}

impl fmt::Display for MptcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MptcpState::Mptcp(i) => {
                let n = i.subflows();
                write!(f, "MPTCP, {n} subflow{}", if n == 1 { "" } else { "s" })
            }
            MptcpState::FellBack => f.write_str("plain TCP (the peer did not answer MPTCP)"),
            MptcpState::PlainTcp => f.write_str("plain TCP"),
        }
    }
}

/// `MPTCP_INFO` of `fd`, if it is an MPTCP socket that has it.
pub fn mptcp_info(fd: RawFd) -> Option<MptcpInfo> {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt into a live buffer of `len` bytes; the kernel writes at most `len`.
    let r =
        unsafe { libc::getsockopt(fd, SOL_MPTCP, MPTCP_INFO, buf.as_mut_ptr().cast(), &mut len) };
    if r != 0 {
        return None;
    }
    MptcpInfo::decode(buf.get(..len as usize)?)
}

/// Whether `fd` was opened with `IPPROTO_MPTCP`.
fn is_mptcp_socket(fd: RawFd) -> bool {
    let mut proto: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a live c_int with its size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut proto as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && proto == libc::IPPROTO_MPTCP
}

/// [`MptcpState::of`] a socket.
pub fn state_of(sock: &impl AsRawFd) -> MptcpState {
    MptcpState::of(sock.as_raw_fd())
}

/// RTT and congestion window from `TCP_INFO` of the socket `fd` (with MPTCP, the kernel's
/// answer for the connection); bytes from `MPTCP_INFO` if `mptcp` (all subflows), else
/// `TCP_INFO`. Issue 17, h2: for `tls`, `mptcp` and `h2` connections.
pub(crate) fn path_stats(fd: std::os::fd::BorrowedFd<'_>, mptcp: bool) -> Option<PathStats> {
    use std::os::fd::AsRawFd;
    let tcp = crate::tcp_info::tcp_info(fd);
    let mptcp_bytes = mptcp
        .then(|| mptcp_info(fd.as_raw_fd()))
        .flatten()
        .and_then(|i| Some((i.bytes_sent?, i.bytes_received?)));
    let stats = tcp.as_ref().map(crate::tcp_info::path_stats);
    match mptcp_bytes {
        Some((sent, received)) => Some(stats.unwrap_or_default().with_bytes(sent, received)),
        None => stats,
    }
}

/// Where the kernel says whether MPTCP sockets may be made (per network namespace).
pub const ENABLED_SYSCTL: &str = "/proc/sys/net/mptcp/enabled";
/// How long `ip mptcp endpoint show` may take (a netlink dump on this machine).
pub const ENDPOINTS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Issue 17, auto → mptcp: this host's (this network namespace's) MPTCP set-up:
/// [`ENABLED_SYSCTL`], and, where it is 1, the endpoints `ip mptcp endpoint show` lists
/// (within [`ENDPOINTS_WAIT`]). Whatever cannot be read counts as "no", with the reason.
pub async fn host_setup() -> MptcpSetup {
    let enabled =
        std::fs::read_to_string(ENABLED_SYSCTL).map_err(|e| format!("{ENABLED_SYSCTL}: {e}"));
    let listing = match &enabled {
        Ok(v) if v.trim() == "1" => Some(endpoint_listing().await),
        _ => None,
    };
    MptcpSetup::from_kernel(
        enabled.as_deref().map_err(Clone::clone),
        listing.as_ref().map(|l| l.as_deref().map_err(Clone::clone)),
    )
}

/// `ip mptcp endpoint show`'s output, or why there is none.
async fn endpoint_listing() -> Result<String, String> {
    let run = tokio::task::spawn_blocking(|| {
        std::process::Command::new("ip")
            .args(["mptcp", "endpoint", "show"])
            .stdin(std::process::Stdio::null())
            .output()
    });
    let out = match tokio::time::timeout(ENDPOINTS_WAIT, run).await {
        Err(_) => {
            return Err(format!(
                "`ip mptcp endpoint show` took over {ENDPOINTS_WAIT:?}"
            ))
        }
        Ok(Err(e)) => return Err(format!("`ip mptcp endpoint show`: {e}")),
        Ok(Ok(Err(e))) => return Err(format!("`ip mptcp endpoint show`: {e}")),
        Ok(Ok(Ok(out))) => out,
    };
    if !out.status.success() {
        return Err(format!(
            "`ip mptcp endpoint show`: {} ({})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn info_decodes_what_the_kernel_gave() {
        let mut b = vec![0u8; 96];
        b[0] = 1;
        b[8] = 0;
        b[56..64].copy_from_slice(&1000u64.to_ne_bytes());
        b[80] = 2;
        let i = MptcpInfo::decode(&b).unwrap();
        assert_eq!(i.subflows(), 2);
        assert_eq!(i.bytes_sent, Some(1000));
        assert!(!i.fallback);
        // An older kernel's shorter struct: no totals, subflows counted from the extra ones.
        let old = MptcpInfo::decode(&b[..44]).unwrap();
        assert_eq!((old.subflows(), old.bytes_sent), (2, None));
        b[8] = 1;
        assert!(MptcpInfo::decode(&b).unwrap().fallback);
        assert_eq!(MptcpInfo::decode(&b[..4]), None);
    }

    /// A connected pair on loopback: the client's socket MPTCP or not, the listener's too.
    fn pair(client_mptcp: bool, server_mptcp: bool) -> (MptcpState, MptcpState) {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (l, _) = tcp_socket(any, server_mptcp).unwrap();
        l.bind(&any.into()).unwrap();
        l.listen(1).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let (c, refused) = tcp_socket(addr, client_mptcp).unwrap();
        assert_eq!(refused, None, "this kernel has MPTCP on");
        c.connect(&addr.into()).unwrap();
        let (s, _) = l.accept().unwrap();
        (state_of(&c), state_of(&s))
    }

    #[test]
    fn a_connection_says_whether_it_is_mptcp() {
        let (c, s) = pair(true, true);
        assert!(c.is_mptcp() && s.is_mptcp(), "{c} / {s}");
        assert_eq!(c.to_string(), "MPTCP, 1 subflow");
        // A plain TCP peer: the MPTCP client falls back, and says so.
        let (c, s) = pair(true, false);
        assert_eq!((c, s), (MptcpState::FellBack, MptcpState::PlainTcp));
        // A plain client of an MPTCP listener is plain TCP at both ends.
        let (c, s) = pair(false, true);
        assert!(!c.is_mptcp() && !s.is_mptcp(), "{c} / {s}");
    }
}
