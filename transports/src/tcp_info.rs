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

/// RTT and congestion window of `info`, with the bytes sent (retransmissions included) and
/// received, and of those sent, the retransmitted ones (the kernel's count of what it found
/// lost). A kernel older than 4.19 fills neither of the two: there the bytes acknowledged
/// stand for those sent, and no loss is told.
pub fn path_stats(info: &libc::tcp_info) -> PathStats {
    let stats = PathStats::default()
        .with_rtt(Duration::from_micros(u64::from(info.tcpi_rtt)))
        .with_cwnd(u64::from(info.tcpi_snd_cwnd) * u64::from(info.tcpi_snd_mss));
    if info.tcpi_bytes_sent == 0 {
        return stats.with_bytes(info.tcpi_bytes_acked, info.tcpi_bytes_received);
    }
    stats
        .with_bytes(info.tcpi_bytes_sent, info.tcpi_bytes_received)
        .with_lost(info.tcpi_bytes_retrans)
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

    /// Bytes sent are counted with what of them was found lost (none on loopback), so what
    /// the path delivered is known.
    #[test]
    fn bytes_sent_come_with_the_lost_ones() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(&[7u8; 10_000]).expect("write");
        let mut got = [0u8; 10_000];
        server.read_exact(&mut got).expect("read");
        let stats = path_stats(&tcp_info(client.as_fd()).expect("TCP_INFO"));
        assert!(stats.bytes_sent.is_some_and(|s| s >= 10_000), "{stats:?}");
        assert_eq!(stats.bytes_lost, Some(0), "{stats:?}");
        assert_eq!(stats.bytes_delivered(), stats.bytes_sent);
    }
}
