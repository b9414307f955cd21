//! Syncs over a real OpenSSH: an `sshd` on a loopback port (tests/common/sshd.rs) and the
//! system `ssh` as the remote shell, with host-key checking on. arsync to arsync, arsync to
//! rsync, and rsync to arsync.

#![allow(clippy::unwrap_used)]

mod common;

use common::sshd::Sshd;
use common::*;

fn slash(p: &std::path::Path) -> String {
    format!("{}/", p.display())
}

#[test]
fn every_protocol_over_a_real_sshd() {
    let s = Scratch::new();
    let keys = s.join("keys");
    mkdir(&keys);
    let sshd = Sshd::start(&keys);
    let rsh = format!("--rsh={}", sshd.rsh());
    let src = s.join("src");
    build_rich_fixture(&src);
    let want = snapshot(&src);
    let remote = |p: &std::path::Path| format!("127.0.0.1:{}", slash(p));
    let arsync_path = format!("--rsync-path={ARSYNC}");

    // arsync ↔ arsync (the merkle protocol): push, then pull.
    let pushed = s.join("pushed");
    arsync(
        s.path(),
        &["-aH", &rsh, &arsync_path, &slash(&src), &remote(&pushed)],
    )
    .assert_ok();
    assert_same_tree("merkle push", "dest", &snapshot(&pushed), "src", &want);
    let pulled = s.join("pulled");
    arsync(
        s.path(),
        &["-aH", &rsh, &arsync_path, &remote(&src), &slash(&pulled)],
    )
    .assert_ok();
    assert_same_tree("merkle pull", "dest", &snapshot(&pulled), "src", &want);

    // arsync → rsync on the far side.
    let r_pulled = s.join("r-pulled");
    arsync(
        s.path(),
        &[
            "-aH",
            "--protocol=rsync",
            &rsh,
            &remote(&src),
            &slash(&r_pulled),
        ],
    )
    .assert_ok();
    assert_same_tree(
        "rsync-protocol pull",
        "dest",
        &snapshot(&r_pulled),
        "src",
        &want,
    );

    // rsync → arsync on the far side.
    let served = s.join("served");
    rsync(
        s.path(),
        &["-aH", &rsh, &arsync_path, &slash(&src), &remote(&served)],
    )
    .assert_ok();
    assert_same_tree(
        "rsync client push",
        "dest",
        &snapshot(&served),
        "src",
        &want,
    );
}

#[test]
fn an_unknown_host_key_is_refused() {
    let s = Scratch::new();
    let keys = s.join("keys");
    mkdir(&keys);
    let sshd = Sshd::start(&keys);
    // Nobody vouched for this host key.
    std::fs::write(keys.join("known_hosts"), "").unwrap();
    let src = s.join("src");
    write(&src.join("f"), b"data\n");
    let dest = s.join("dest");
    let run = arsync(
        s.path(),
        &[
            "-a",
            &format!("--rsh={}", sshd.rsh()),
            &format!("--rsync-path={ARSYNC}"),
            &slash(&src),
            &format!("127.0.0.1:{}", slash(&dest)),
        ],
    );
    assert_ne!(run.code(), Some(0));
    assert!(
        run.stderr_str().contains("Host key verification failed"),
        "{}",
        run.stderr_str()
    );
    assert!(!dest.exists());
}
