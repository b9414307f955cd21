//! Issue 16, params, over an emulated WAN (`tests/common/linkem.rs`: two network namespaces
//! joined by a 100 Mbit/s, 50 ms link; needs root, as CI runs). The client pulls from a
//! bootstrap server in the far namespace (the "remote shell" is `ip netns exec`), so the QUIC
//! handshake crosses the link and measures its RTT: negotiation chooses 4 directory levels
//! per round trip and tells the remote sender only through the `tune` capability (nothing
//! about levels is on its command line). The sender's first flight then carries deeper
//! directory hashes: the client receives more than with `--tree-levels=2`, and the copy is
//! exact.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::linkem::{Link, Side, FAR_ADDR, WAN};
use common::*;

/// Runs the command in the far namespace: a remote shell whose far end is across the link.
fn far_rsh(dir: &Path, far_netns: &str) -> PathBuf {
    let p = dir.join("rsh");
    let script = format!(
        "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\n\
         shift\nexec ip netns exec {far_netns} sh -c \"$*\"\n"
    );
    fs::write(&p, script).expect("write rsh");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    p
}

/// `arsync -a --stats --explain ARGS` run in the near namespace, at most 60 s.
fn pull(link: &Link, rsh: &Path, src: &Path, dst: &Path, extra: &[&str]) -> (String, String) {
    let mut c = Command::new("timeout");
    c.args([
        "60",
        "ip",
        "netns",
        "exec",
        link.netns(Side::Near),
        common::ARSYNC,
    ])
    .args(["-a", "--stats", "--explain"])
    .arg(format!("--rsh={}", rsh.display()))
    .arg(format!("--rsync-path={}", common::ARSYNC))
    .args(extra)
    .arg(format!("{FAR_ADDR}:{}/", src.display()))
    .arg(format!("{}/", dst.display()));
    let out = c.output().expect("run arsync");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{extra:?}: {stdout}\n{stderr}");
    (stdout, stderr)
}

fn received(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Total bytes received: "))
        .unwrap_or_else(|| panic!("no total received in {stdout}"));
    line.replace(',', "").trim().parse().expect("a number")
}

#[test]
fn on_a_wan_the_measured_rtt_sets_the_levels_and_the_remote_sender_follows() {
    let link = Link::start(WAN).expect("the link emulator (needs root)");
    let s = Scratch::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    deep_tree(&src, 4, 3);
    let rsh = far_rsh(s.path(), link.netns(Side::Far));
    pull(&link, &rsh, &src, &dst, &[]);
    assert_same_tree(
        "wan pull",
        "src",
        &without_root(snapshot(&src)),
        "dst",
        &without_root(snapshot(&dst)),
    );

    // Nothing changed: only the sender's first flight of directory hashes matters.
    let (two, _) = pull(&link, &rsh, &src, &dst, &["--tree-levels=2"]);
    let (four, explained) = pull(&link, &rsh, &src, &dst, &[]);
    let decision = explained
        .lines()
        .find(|l| l.starts_with("explain: decision: ") && l.contains("directory levels"))
        .unwrap_or_else(|| panic!("no levels decision in {explained}"));
    assert!(
        decision.starts_with("explain: decision: 4 directory levels per round trip (RTT "),
        "{decision}"
    );
    assert!(
        received(&four) > received(&two),
        "4 levels: {} bytes received, 2 levels: {}",
        received(&four),
        received(&two)
    );
}
