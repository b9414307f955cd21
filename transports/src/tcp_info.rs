//! A TCP socket's own view of its path, from the kernel's `TCP_INFO`: smoothed RTT,
//! congestion window, bytes acknowledged and received.
//!
//! What it owns: the one `getsockopt(TCP_INFO)` call and its translation to [`PathStats`].
//! What it does not own: which socket (the transports that have one: `tls`/`mptcp`, the
//! built-in SSH client's direct connections) or what is done with the numbers (the negotiator,
//! the per-host memory).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use arsync_core::transport::PathStats;

/// The kernel's `TCP_INFO` for the TCP socket `fd`, if it is one.
pub fn tcp_info(fd: BorrowedFd<'_>) -> Option<libc::tcp_info> {
    // SAFETY: an all-zero tcp_info is a valid value (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt on a live socket into a live tcp_info of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(info)
}

/// RTT and congestion window of `info`, with the bytes acknowledged and received.
pub fn path_stats(info: &libc::tcp_info) -> PathStats {
    PathStats::default()
        .with_rtt(Duration::from_micros(u64::from(info.tcpi_rtt)))
        .with_cwnd(u64::from(info.tcpi_snd_cwnd) * u64::from(info.tcpi_snd_mss))
        .with_bytes(info.tcpi_bytes_acked, info.tcpi_bytes_received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A real loopback connection has a TCP_INFO with an RTT; a file has none.
    #[test]
    fn a_loopback_connection_has_an_rtt_and_a_file_has_none() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let info = tcp_info(client.as_fd()).expect("TCP_INFO");
        assert!(path_stats(&info).rtt.is_some());
        let file = tempfile::tempfile().expect("file");
        assert!(tcp_info(file.as_fd()).is_none());
    }
}
