//! Network namespaces for tests: one whose loopback carries TCP but drops UDP, so QUIC
//! cannot get through while SSH can (used by `tests/ssh.rs` and `tests/host_memory.rs`), and
//! one set up by the caller's `ip` commands (`tests/overlay.rs`).
#![allow(clippy::unwrap_used)]

/// Move this test's thread into a new network namespace whose loopback carries TCP but
/// blackholes every UDP packet (policy routing; the kernel here has no netfilter tools):
/// processes it starts from now on live there too.
pub fn enter_without_udp() {
    enter_netns(&[
        "ip link set lo up",
        "ip rule add pref 10 ipproto udp blackhole",
        "ip rule del pref 0",
        "ip rule add pref 100 lookup local",
    ]);
    // Proof that UDP is blocked and TCP is not.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(udp.send_to(b"x", udp.local_addr().unwrap()).is_err());
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
}

/// Move the calling thread into a new network namespace (processes it starts from now on
/// live there too) and run `commands` (`ip …`, split at spaces) there.
pub fn enter_netns(commands: &[&str]) {
    // SAFETY: unshare(2) for the calling thread only; it owns no sockets that would care.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        r,
        0,
        "unshare(CLONE_NEWNET) needs root: {}",
        std::io::Error::last_os_error()
    );
    for cmd in commands {
        let words: Vec<&str> = cmd.split(' ').collect();
        let st = std::process::Command::new(words[0])
            .args(&words[1..])
            .status()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (iproute2 is needed)"));
        assert!(st.success(), "{cmd}");
    }
}
