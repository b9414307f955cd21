//! Issue 17, mptcp: one `arsync serve` push over the link emulator's two paths (two 50
//! Mbit/s, 10 ms paths; `tests/common/serve_paths.rs`), `--transport=tls` (plain TCP: one
//! path) against `--transport=mptcp` (one MPTCP connection, a subflow per path). Needs root.
//!
//! ```sh
//! cargo bench --bench mptcp_paths                 # 64 MiB, each transport once
//! cargo bench --bench mptcp_paths -- --mib=256 --runs=3
//! ```
//!
//! Prints a table (MB/s, Mbit/s, the share each path carried, the ratio to one path's
//! goodput and to `tls`) and writes it to `target/bench/mptcp_paths.md`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::serve_paths::{ServeOverTwoPaths, PATH_50M};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mib, runs) = (arg(&args, "mib", 64), arg(&args, "runs", 1).max(1));
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("not root: the two-path emulator needs network namespaces; nothing measured");
        return;
    }
    let s = common::Scratch::new();
    let serve = ServeOverTwoPaths::start(PATH_50M, s.path());
    let size = mib << 20;
    common::write(&s.join("src/big.bin"), &common::pseudo_random(size, 5));
    let one_path = PATH_50M.rate_bps as f64 * 1448.0 / 1500.0;
    let mut md = format!(
        "Two paths of {} each; {mib} MiB fresh file pushed to arsync serve; best of {runs}.\n\n\
         | transport | time | Mbit/s | × one path | path 1 / path 2 (MB) |\n|---|---|---|---|---|\n",
        PATH_50M.name
    );
    let mut best = Vec::new();
    for transport in ["tls", "mptcp"] {
        let mut fastest: Option<common::serve_paths::Push> = None;
        for _ in 0..runs {
            let _ = std::fs::remove_file(serve.module.join("big.bin"));
            let push = serve.push(transport, s.path(), "src");
            assert!(
                push.output.status.success(),
                "{}",
                String::from_utf8_lossy(&push.output.stderr)
            );
            if fastest.as_ref().is_none_or(|f| push.took < f.took) {
                fastest = Some(push);
            }
        }
        let p = fastest.unwrap();
        let rate = size as f64 * 8.0 / p.took.as_secs_f64();
        md += &format!(
            "| {transport} | {:.2} s | {:.1} | {:.2} | {:.1} / {:.1} |\n",
            p.took.as_secs_f64(),
            rate / 1e6,
            rate / one_path,
            p.carried[0] as f64 / 1e6,
            p.carried[1] as f64 / 1e6
        );
        best.push(rate);
    }
    md += &format!("\nmptcp ÷ tls: {:.2} ×\n", best[1] / best[0]);
    print!("{md}");
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("bench"))
        .unwrap_or_else(|| "target/bench".into());
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("mptcp_paths.md"), md).unwrap();
}
