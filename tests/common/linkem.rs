//! A link emulator written in the project (the kernel here has no netem): two network
//! namespaces, `near` and `far`, each with one TUN device, joined by a userspace forwarder that
//! applies, in each direction, half the round-trip delay, a rate limit with a bounded queue
//! (tail drop), and random loss.
//!
//! ```text
//!   near netns                      this process                      far netns
//!   10.99.0.1 ── tun ──▶ [loss → queue ≤ limit → rate → delay] ──▶ tun ── 10.99.0.2
//!             ◀────────── [the same, the other way] ◀──────────────
//! ```
//!
//! With [`Link::start_two_paths`] a second, independent path joins the namespaces (its own
//! TUN pair, addresses `10.99.1.1`/`10.99.1.2`, its own profile and forwarders), so MPTCP
//! (one connection, a subflow per path) can be measured.
//!
//! Owns the namespaces (created with `ip netns add`, removed on drop), the TUN devices (opened
//! from a thread that entered each namespace, so they live there) and the forwarder threads.
//! Code runs on either side through [`Link::run_in`] (a thread moved into the namespace:
//! sockets it creates belong there) or [`Link::command`] (`ip netns exec`). Needs root.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the emulated link does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfile {
    /// For tables.
    pub name: &'static str,
    /// Bits per second in each direction.
    pub rate_bps: u64,
    /// Round-trip time added (half each way).
    pub rtt: Duration,
    /// Probability of losing each packet, in each direction.
    pub loss: f64,
}

impl LinkProfile {
    /// The queue a direction may hold before dropping: one bandwidth-delay product, at least
    /// 64 KiB.
    pub fn queue_limit(&self) -> u64 {
        ((self.rate_bps as f64 / 8.0 * self.rtt.as_secs_f64()) as u64).max(128 << 10)
    }

    /// Whether the forwarder moves GSO super-packets (lossless links: a loss must hit one
    /// packet, not 45 at once).
    pub fn offload(&self) -> bool {
        self.loss == 0.0
    }
}

/// The profiles of the bench suite.
pub const LAN: LinkProfile = LinkProfile {
    name: "LAN 1 Gbit/s 1 ms",
    rate_bps: 1_000_000_000,
    rtt: Duration::from_millis(1),
    loss: 0.0,
};
/// 100 Mbit/s, 50 ms.
pub const WAN: LinkProfile = LinkProfile {
    name: "WAN 100 Mbit/s 50 ms",
    rate_bps: 100_000_000,
    rtt: Duration::from_millis(50),
    loss: 0.0,
};
/// 1 Gbit/s, 50 ms.
pub const FAT_WAN: LinkProfile = LinkProfile {
    name: "fat WAN 1 Gbit/s 50 ms",
    rate_bps: 1_000_000_000,
    rtt: Duration::from_millis(50),
    loss: 0.0,
};
/// 100 Mbit/s, 50 ms, 1 % loss.
pub const LOSSY: LinkProfile = LinkProfile {
    name: "lossy 100 Mbit/s 50 ms 1% loss",
    rate_bps: 100_000_000,
    rtt: Duration::from_millis(50),
    loss: 0.01,
};

/// The near side's address.
pub const NEAR_ADDR: &str = "10.99.0.1";
/// The far side's address.
pub const FAR_ADDR: &str = "10.99.0.2";
/// The near side's address on the second path.
pub const NEAR_ADDR2: &str = "10.99.1.1";
/// The far side's address on the second path.
pub const FAR_ADDR2: &str = "10.99.1.2";

/// Which namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Where clients run.
    Near,
    /// Where servers run.
    Far,
}

/// A running emulated link.
#[derive(Debug)]
pub struct Link {
    pub profile: LinkProfile,
    near: String,
    far: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The path's own round trip, measured before any delay was added.
    pub base_rtt: Duration,
    /// Bytes put on the emulated wire per path: near → far, far → near.
    carried: Vec<[Arc<AtomicU64>; 2]>,
    /// The far-side device of each path.
    far_devs: Vec<String>,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Move the calling thread into namespace `name`.
fn enter(name: &str) -> io::Result<()> {
    let f = File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns(2) with a namespace fd we own, for this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The virtio-net header before every packet on a TUN opened with `IFF_VNET_HDR`.
const VNET_HDR: usize = 10;

/// A TUN device named `dev` in namespace `ns`, configured point-to-point; its fd. With
/// `offload`, packets carry a virtio-net header and the kernel hands over TCP segments of up to
/// 64 KiB at once (GSO): one system call per 64 KiB instead of per 1,500 bytes.
fn tun_in(ns: &str, dev: &str, local: &str, peer: &str, offload: bool) -> io::Result<OwnedFd> {
    let (ns, dev, local, peer) = (
        ns.to_owned(),
        dev.to_owned(),
        local.to_owned(),
        peer.to_owned(),
    );
    std::thread::spawn(move || -> io::Result<OwnedFd> {
        enter(&ns)?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // struct ifreq: 16 bytes of name, then the flags.
        let mut ifr = [0u8; 40];
        ifr[..dev.len()].copy_from_slice(dev.as_bytes());
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if offload {
            flags |= libc::IFF_VNET_HDR;
        }
        ifr[16..18].copy_from_slice(&(flags as u16).to_ne_bytes());
        // SAFETY: TUNSETIFF with a zeroed ifreq-sized buffer holding the name and flags.
        if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if offload {
            // TCP and UDP segmentation offload (USO: Linux 6.2+, what QUIC's GSO produces).
            const TUN_F_USO4: libc::c_uint = 0x20;
            const TUN_F_USO6: libc::c_uint = 0x40;
            let features =
                (libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6)
                    as libc::c_ulong;
            // SAFETY: TUNSETOFFLOAD takes its flags by value.
            if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETOFFLOAD, features) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Threads of this process share no netns state with `ip netns exec`, which enters
        // the namespace by name.
        for args in [
            vec!["netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
            vec![
                "netns", "exec", &ns, "ip", "addr", "add", &local, "peer", &peer, "dev", &dev,
            ],
            vec![
                "netns", "exec", &ns, "ip", "link", "set", &dev, "mtu", "1500", "up",
            ],
        ] {
            ip(&args)?;
        }
        // A new namespace starts with the kernel's default TCP buffer limits (4–6 MiB), which
        // cap a 1 Gbit/s × 50 ms link near half its rate: give it what a tuned host has.
        // (This thread is in the namespace, and /proc/sys/net follows the opener's.)
        for (knob, value) in [
            ("ipv4/tcp_rmem", "4096 131072 67108864"),
            ("ipv4/tcp_wmem", "4096 16384 67108864"),
        ] {
            std::fs::write(format!("/proc/sys/net/{knob}"), value)?;
        }
        // SAFETY: into_raw_fd gives up ownership to the OwnedFd.
        Ok(unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(f)) })
    })
    .join()
    .map_err(|_| io::Error::other("tun thread panicked"))?
}

/// Namespaces a killed run left behind (`lkn<pid>x<n>`/`lkf<pid>x<n>` whose process is gone):
/// the processes still inside (servers) are killed and the namespaces deleted. A run stopped
/// by a signal gets no `Drop`; the next run cleans up after it.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name
            .strip_prefix("lkn")
            .or_else(|| name.strip_prefix("lkf"))
        else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<i32>() {
                    // SAFETY: kill(2) of a process inside a namespace no live run owns.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        let _ = ip(&["netns", "del", name]);
    }
}

/// A small, fast, seedable random source for loss.
struct XorShift(u64);

impl XorShift {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ask the kernel to wake this thread on time (the default slack is 50 µs).
fn precise_timers() {
    // SAFETY: prctl(2) on this thread's own timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Wait until `fd` is readable or 50 ms pass.
fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one live pollfd.
    unsafe { libc::poll(&mut p, 1, 50) > 0 }
}

/// The bytes `pkt` occupies on the emulated wire: with a GSO header, every segment carries
/// its own copy of the headers.
fn wire_len(pkt: &[u8], offload: bool) -> usize {
    if !offload {
        return pkt.len();
    }
    let body = pkt.len().saturating_sub(VNET_HDR);
    let gso_type = pkt.get(1).copied().unwrap_or(0);
    let hdr_len = u16::from_le_bytes([pkt[2], pkt[3]]) as usize;
    let gso_size = u16::from_le_bytes([pkt[4], pkt[5]]) as usize;
    if gso_type == 0 || gso_size == 0 || hdr_len >= body {
        return body;
    }
    let segments = (body - hdr_len).div_ceil(gso_size);
    body + (segments - 1) * hdr_len
}

/// One direction: read from `from`, lose, queue, pace, delay, write to `to`.
fn direction(
    from: Arc<OwnedFd>,
    to: Arc<OwnedFd>,
    profile: LinkProfile,
    seed: u64,
    stop: Arc<AtomicBool>,
    delay_ns: Arc<AtomicU64>,
    carried: Arc<AtomicU64>,
) -> [JoinHandle<()>; 2] {
    let offload = profile.offload();
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let stop2 = stop.clone();
    let writer_delay = delay_ns.clone();
    let reader = std::thread::spawn(move || {
        precise_timers();
        let mut rng = XorShift(seed | 1);
        let mut last_depart = Instant::now();
        let ns_per_byte = 8e9 / profile.rate_bps as f64;
        let limit = Duration::from_nanos((profile.queue_limit() as f64 * ns_per_byte) as u64);
        let mut buf = vec![0u8; 65536 + 64];
        while !stop.load(Relaxed) {
            if !readable(from.as_raw_fd()) {
                continue;
            }
            // SAFETY: read(2) into a live buffer of its length.
            let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                continue;
            }
            let n = n as usize;
            if profile.loss > 0.0 && rng.unit() < profile.loss {
                continue;
            }
            let on_wire = wire_len(&buf[..n], offload);
            let now = Instant::now();
            let start = last_depart.max(now);
            // The queue is what waits to be serialised: drop at its tail when full.
            if start.duration_since(now) > limit {
                continue;
            }
            last_depart = start + Duration::from_nanos((on_wire as f64 * ns_per_byte) as u64);
            carried.fetch_add(on_wire as u64, Relaxed);
            let one_way = Duration::from_nanos(delay_ns.load(Relaxed));
            if tx.send((last_depart + one_way, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    let writer = std::thread::spawn(move || {
        precise_timers();
        let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(p) => pending.push_back(p),
                    Err(mpsc::RecvTimeoutError::Timeout) if !stop2.load(Relaxed) => continue,
                    Err(_) => return,
                }
            }
            while let Ok(p) = rx.try_recv() {
                pending.push_back(p);
            }
            let Some((at, _)) = pending.front() else {
                continue;
            };
            let now = Instant::now();
            if *at > now {
                // Sleep most of the wait, spin the rest: a LAN's delay is a few hundred µs,
                // where a late wake-up (tens of µs) would show. Over a long delay the same
                // lateness is noise, and spinning would take a core from what is measured.
                let spin = if writer_delay.load(Relaxed) >= 5_000_000 {
                    Duration::ZERO
                } else {
                    Duration::from_micros(200)
                };
                let left = *at - now;
                if left > spin + Duration::from_micros(100) || spin.is_zero() {
                    std::thread::sleep((left - spin).min(Duration::from_millis(5)));
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            while let Some((at, pkt)) = pending.front() {
                if *at > Instant::now() {
                    break;
                }
                // SAFETY: write(2) of a live buffer; a full device queue just drops it.
                unsafe { libc::write(to.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
                pending.pop_front();
            }
        }
    });
    [reader, writer]
}

impl Link {
    /// Create both namespaces and start forwarding with `profile`.
    pub fn start(profile: LinkProfile) -> io::Result<Link> {
        Link::start_paths(&[profile])
    }

    /// Two independent paths between the namespaces: `first` between [`NEAR_ADDR`] and
    /// [`FAR_ADDR`], `second` between [`NEAR_ADDR2`] and [`FAR_ADDR2`].
    pub fn start_two_paths(first: LinkProfile, second: LinkProfile) -> io::Result<Link> {
        Link::start_paths(&[first, second])
    }

    fn start_paths(paths: &[LinkProfile]) -> io::Result<Link> {
        remove_stale_namespaces();
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = format!(
            "{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (near, far) = (format!("lkn{id}"), format!("lkf{id}"));
        ip(&["netns", "add", &near])?;
        let mut link = Link {
            profile: paths[0],
            near: near.clone(),
            far: far.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            base_rtt: Duration::ZERO,
            carried: Vec::new(),
            far_devs: Vec::new(),
        };
        ip(&["netns", "add", &far])?;
        for (i, profile) in paths.iter().enumerate() {
            let (near_addr, far_addr) = [(NEAR_ADDR, FAR_ADDR), (NEAR_ADDR2, FAR_ADDR2)][i];
            // Interface names are at most 15 bytes.
            let short = |p: &str| format!("{p}{}", &id[id.len().saturating_sub(10)..]);
            let (near_dev, far_dev) = [("tn", "tf"), ("tm", "tg")][i];
            let off = profile.offload();
            let a = Arc::new(tun_in(&near, &short(near_dev), near_addr, far_addr, off)?);
            let b = Arc::new(tun_in(&far, &short(far_dev), far_addr, near_addr, off)?);
            link.far_devs.push(short(far_dev));
            let seed = Instant::now().elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
            // First no added delay, to measure what the path costs by itself.
            let delay = Arc::new(AtomicU64::new(0));
            let carried: [Arc<AtomicU64>; 2] = [Arc::default(), Arc::default()];
            link.threads.extend(direction(
                a.clone(),
                b.clone(),
                *profile,
                seed ^ i as u64,
                link.stop.clone(),
                delay.clone(),
                carried[0].clone(),
            ));
            link.threads.extend(direction(
                b,
                a,
                *profile,
                seed.rotate_left(17) ^ i as u64,
                link.stop.clone(),
                delay.clone(),
                carried[1].clone(),
            ));
            link.carried.push(carried);
            // The forwarder's and the kernels' own round trip (thread wake-ups, two TUN hops)
            // is taken off the configured delay, so the link's round trip is what was asked.
            let base = link.base_rtt(far_addr)?;
            let one_way = profile.rtt.saturating_sub(base) / 2;
            delay.store(one_way.as_nanos() as u64, Relaxed);
            if i == 0 {
                link.base_rtt = base;
            }
        }
        Ok(link)
    }

    /// The first quartile of 21 TCP handshakes near → far.
    fn base_rtt(&self, far_addr: &'static str) -> io::Result<Duration> {
        let server = self.run_in(Side::Far, move || -> io::Result<()> {
            let l = std::net::TcpListener::bind((far_addr, 6999))?;
            for _ in 0..21 {
                l.accept()?;
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(50));
        let times = self
            .run_in(Side::Near, move || -> io::Result<Vec<Duration>> {
                let mut t = Vec::new();
                for _ in 0..21 {
                    let t0 = Instant::now();
                    let s = std::net::TcpStream::connect((far_addr, 6999))?;
                    t.push(t0.elapsed());
                    drop(s);
                }
                Ok(t)
            })
            .join()
            .map_err(|_| io::Error::other("probe thread panicked"))??;
        server
            .join()
            .map_err(|_| io::Error::other("probe thread panicked"))??;
        // A low quantile: what the path costs when little else is in the way.
        let mut times = times;
        times.sort();
        Ok(times[times.len() / 4])
    }

    /// Bytes carried so far on all paths (IP packets as on the wire): near → far and
    /// far → near.
    pub fn wire_bytes(&self) -> (u64, u64) {
        (0..self.carried.len())
            .map(|i| self.path_wire_bytes(i))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Bytes carried so far on path `i` (0 or 1): near → far and far → near.
    pub fn path_wire_bytes(&self, i: usize) -> (u64, u64) {
        let c = &self.carried[i];
        (c[0].load(Relaxed), c[1].load(Relaxed))
    }

    /// The far side's device on path `i` (for `ip mptcp endpoint add … dev`).
    pub fn far_dev(&self, i: usize) -> &str {
        &self.far_devs[i]
    }

    /// Issue 17, mptcp: let MPTCP use both paths: two subflows allowed on each side, and the
    /// far side announcing its second address ([`FAR_ADDR2`]) to MPTCP clients of its first.
    pub fn announce_second_path(&self) -> io::Result<()> {
        let ip = |side: Side, args: &[&str]| -> io::Result<()> {
            let o = self.command(side, "ip").args(args).output()?;
            if o.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!("ip {args:?}: {o:?}")))
            }
        };
        for side in [Side::Near, Side::Far] {
            ip(
                side,
                &[
                    "mptcp",
                    "limits",
                    "set",
                    "subflows",
                    "2",
                    "add_addr_accepted",
                    "2",
                ],
            )?;
        }
        let dev = self.far_dev(1).to_owned();
        ip(
            Side::Far,
            &["mptcp", "endpoint", "add", FAR_ADDR2, "dev", &dev, "signal"],
        )
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn netns(&self, side: Side) -> &str {
        match side {
            Side::Near => &self.near,
            Side::Far => &self.far,
        }
    }

    /// `program` to run inside `side`'s namespace.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.netns(side), program]);
        c
    }

    /// Run `f` on a thread inside `side`'s namespace (sockets it makes live there).
    pub fn run_in<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = self.netns(side).to_owned();
        std::thread::spawn(move || {
            enter(&ns).expect("enter the link's namespace");
            f()
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = ip(&["netns", "del", &self.near]);
        let _ = ip(&["netns", "del", &self.far]);
    }
}
