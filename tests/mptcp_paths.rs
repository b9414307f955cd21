//! Issue 17, mptcp: `--transport=mptcp` to a real `arsync serve` over the link emulator's two
//! paths (two 50 Mbit/s 10 ms paths, the far side announcing its second address; see
//! `common/serve_paths.rs`): one MPTCP connection whose session crosses both paths.
//!
//! What is asserted is structural, not a speed: the push arrives whole, the connection is
//! MPTCP, and each path carried at least 30 % of what went near → far (one path alone would
//! carry ~100 %, two equal paths ~50 % each). The rate, as a multiple of one path's goodput,
//! is printed for the record; `benches/mptcp_paths.rs` measures it against `tls` on the same
//! paths. Needs root (namespaces), as the other emulator tests.
//!
//! Issue 17, auto → mptcp: `--transport=auto` over the same paths takes TLS while the near
//! side has no MPTCP endpoint that opens subflows, and MPTCP once it has one.

#![allow(clippy::unwrap_used)]

mod common;

use common::linkem::{Side, NEAR_ADDR2};
use common::serve_paths::{ServeOverTwoPaths, PATH_50M};
use common::*;

#[test]
fn one_mptcp_session_crosses_both_paths() {
    let s = Scratch::new();
    let serve = ServeOverTwoPaths::start(PATH_50M, s.path());
    assert!(serve.log().contains("(TCP, MPTCP)"), "{}", serve.log());
    let size = 24usize << 20;
    write(&s.join("src/big.bin"), &pseudo_random(size, 17));
    let push = serve.push("mptcp", s.path(), "src");
    let err = String::from_utf8_lossy(&push.output.stderr).into_owned();
    assert!(push.output.status.success(), "{err}\n{}", serve.log());
    assert!(err.contains("TLS over MPTCP"), "{err}");
    // The path manager added the second path's subflow after the handshake.
    assert!(
        err.contains("mptcp: the session used up to 2 subflows at once"),
        "{err}"
    );
    assert!(
        std::fs::read(serve.module.join("big.bin")).unwrap() == pseudo_random(size, 17),
        "the pushed file differs"
    );
    let total = (push.carried[0] + push.carried[1]) as f64;
    let one_path = PATH_50M.rate_bps as f64 * 1448.0 / 1500.0;
    let rate = size as f64 * 8.0 / push.took.as_secs_f64();
    eprintln!(
        "{} MiB pushed over mptcp in {:.2?}: {:.1} Mbit/s = {:.2} × one path's goodput; \
         path 1 carried {:.1} MB, path 2 {:.1} MB",
        size >> 20,
        push.took,
        rate / 1e6,
        rate / one_path,
        push.carried[0] as f64 / 1e6,
        push.carried[1] as f64 / 1e6,
    );
    for (i, c) in push.carried.iter().enumerate() {
        assert!(
            *c as f64 >= 0.3 * total,
            "path {} carried {c} of {total} bytes: the session did not use both paths",
            i + 1
        );
    }
}

// Issue 17, auto → mptcp:
/// `--transport=auto` from the near side: with no endpoint of its own that opens subflows
/// (MPTCP could add no path) it takes TLS and says why; with its second address made an
/// MPTCP `subflow` endpoint it takes MPTCP, says why, and the session is MPTCP. Both pushes
/// arrive whole.
#[test]
fn auto_takes_mptcp_where_this_host_has_an_endpoint_for_a_second_path() {
    let s = Scratch::new();
    let serve = ServeOverTwoPaths::start(PATH_50M, s.path());
    write(&s.join("src/a.bin"), &pseudo_random(1 << 20, 5));
    let push = serve.push("auto", s.path(), "src");
    let err = String::from_utf8_lossy(&push.output.stderr).into_owned();
    assert!(push.output.status.success(), "{err}\n{}", serve.log());
    for want in [
        "explain: local MPTCP: no MPTCP endpoint with the subflow or fullmesh flag",
        "explain: decision: tls to arsync serve (TCP first: ",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!err.contains("TLS over MPTCP"), "{err}");
    let out = serve
        .link
        .command(Side::Near, "ip")
        .args(["mptcp", "endpoint", "add", NEAR_ADDR2, "subflow"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    write(&s.join("src/b.bin"), &pseudo_random(1 << 20, 6));
    let push = serve.push("auto", s.path(), "src");
    let err = String::from_utf8_lossy(&push.output.stderr).into_owned();
    assert!(push.output.status.success(), "{err}\n{}", serve.log());
    for want in [
        &format!("explain: local MPTCP: enabled, subflows from {NEAR_ADDR2} id 1 subflow"),
        "explain: decision: mptcp to arsync serve (this host is set up for more than one path \
         (MPTCP enabled, 1 endpoint opening subflows)",
        "TLS over MPTCP",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    for (name, seed) in [("a.bin", 5), ("b.bin", 6)] {
        assert!(
            std::fs::read(serve.module.join(name)).unwrap() == pseudo_random(1 << 20, seed),
            "{name} differs"
        );
    }
}
