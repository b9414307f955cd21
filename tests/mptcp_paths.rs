//! Issue 17, mptcp: `--transport=mptcp` to a real `arsync serve` over the link emulator's two
//! paths (two 50 Mbit/s 10 ms paths, the far side announcing its second address; see
//! `common/serve_paths.rs`): one MPTCP connection whose session crosses both paths.
//!
//! What is asserted is structural, not a speed: the push arrives whole, the connection is
//! MPTCP, and each path carried at least 30 % of what went near → far (one path alone would
//! carry ~100 %, two equal paths ~50 % each). The rate, as a multiple of one path's goodput,
//! is printed for the record; `benches/mptcp_paths.rs` measures it against `tls` on the same
//! paths. Needs root (namespaces), as the other emulator tests.

#![allow(clippy::unwrap_used)]

mod common;

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
