//! The link emulator checked against what it is configured to do (`tests/common/linkem.rs`):
//! the round-trip time a TCP handshake sees, the rate a bulk TCP transfer reaches, and the
//! share of datagrams lost — each within 5 % (loss: within its statistical spread). Real
//! namespaces, TUN devices and kernel TCP; needs root (CI runs as root).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::linkem::{Link, LinkProfile, Side, FAR_ADDR, FAT_WAN, LAN, WAN};

/// Median TCP connect time over `n` tries (one round trip each).
fn connect_rtt(link: &Link, n: usize) -> Duration {
    let server = link.run_in(Side::Far, move || {
        let l = TcpListener::bind((FAR_ADDR, 7001)).unwrap();
        for _ in 0..n {
            let _ = l.accept().unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let times = link
        .run_in(Side::Near, move || {
            let mut t: Vec<Duration> = (0..n)
                .map(|_| {
                    let t0 = Instant::now();
                    let s = TcpStream::connect((FAR_ADDR, 7001)).unwrap();
                    let d = t0.elapsed();
                    drop(s);
                    d
                })
                .collect();
            t.sort();
            t[n / 2]
        })
        .join()
        .unwrap();
    server.join().unwrap();
    times
}

/// Goodput of a bulk TCP transfer near → far, measured after `warmup`, in bits per second.
fn bulk_rate(link: &Link, secs: f64, warmup: f64) -> f64 {
    let server = link.run_in(Side::Far, move || {
        let l = TcpListener::bind((FAR_ADDR, 7002)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let start = Instant::now();
        let (mut counted, mut t_first) = (0u64, None);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let e = start.elapsed().as_secs_f64();
            if e >= warmup {
                let t = *t_first.get_or_insert(e);
                counted += n as u64;
                let _ = t;
            }
        }
        let span = start.elapsed().as_secs_f64() - t_first.unwrap();
        counted as f64 * 8.0 / span
    });
    std::thread::sleep(Duration::from_millis(100));
    link.run_in(Side::Near, move || {
        let mut s = TcpStream::connect((FAR_ADDR, 7002)).unwrap();
        let buf = vec![7u8; 1 << 16];
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < secs {
            s.write_all(&buf).unwrap();
        }
    })
    .join()
    .unwrap();
    server.join().unwrap()
}

/// One check at a time: two forwarders at once would share two cores, and a 1 ms round trip
/// has no room for the other's scheduling noise.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The profile's round trip and rate, each within 5 %.
fn check(profile: LinkProfile) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let link = Link::start(profile).unwrap();
    let rtt = connect_rtt(&link, 15);
    let want = profile.rtt.as_secs_f64();
    assert!(
        (rtt.as_secs_f64() - want).abs() <= want * 0.05,
        "{}: RTT {rtt:?}, configured {:?}",
        profile.name,
        profile.rtt
    );
    // TCP payload per 1500-byte packet: 1448 bytes (IPv4 20, TCP 20, timestamps 12).
    let rate = bulk_rate(&link, 5.0, 1.5);
    let want = profile.rate_bps as f64 * 1448.0 / 1500.0;
    assert!(
        (rate - want).abs() <= want * 0.05,
        "{}: goodput {:.1} Mbit/s, expected {:.1}",
        profile.name,
        rate / 1e6,
        want / 1e6
    );
    eprintln!(
        "emulator check, {}: RTT {:.2} ms (the path itself: {:.2} ms), TCP goodput {:.1} Mbit/s",
        profile.name,
        rtt.as_secs_f64() * 1e3,
        link.base_rtt.as_secs_f64() * 1e3,
        rate / 1e6
    );
}

#[test]
fn the_emulated_lan_has_its_delay_and_rate() {
    check(LAN);
}

#[test]
fn the_emulated_wan_has_its_delay_and_rate() {
    check(WAN);
}

#[test]
fn the_emulated_fat_wan_has_its_delay_and_rate() {
    check(FAT_WAN);
}

#[test]
fn the_emulated_link_loses_what_it_is_told_to() {
    let profile = LinkProfile {
        name: "loss 5 %",
        rate_bps: 100_000_000,
        rtt: Duration::from_millis(2),
        loss: 0.05,
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let link = Link::start(profile).unwrap();
    const N: usize = 4000;
    let server = link.run_in(Side::Far, || {
        let s = UdpSocket::bind((FAR_ADDR, 7003)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut got = 0usize;
        let mut buf = [0u8; 2048];
        while s.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    std::thread::sleep(Duration::from_millis(100));
    link.run_in(Side::Near, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..N {
            s.send_to(&[1u8; 1000], (FAR_ADDR, 7003)).unwrap();
            // 1000 datagrams a second-ish: far below the rate, so only loss drops any.
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .join()
    .unwrap();
    let got = server.join().unwrap();
    let lost = 1.0 - got as f64 / N as f64;
    // 5 % of 4000: σ ≈ 0.34 %; allow about four σ.
    assert!((lost - 0.05).abs() < 0.015, "lost {:.2} %", lost * 100.0);
}
