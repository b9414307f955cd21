//! arsync's client against rsync's client, both talking to the same `rsync --server` through
//! the same local remote shell, side by side in one run (issue 4's benchmark).
//!
//! ```sh
//! cargo bench --bench rsync             # 1 GiB file, 10,000 small files
//! cargo bench --bench rsync -- --quick  # 64 MiB, 2,000 small files
//! ```
//!
//! Workloads: pull and push of a 1 GiB file with 0.1 % changed in scattered 4 KiB pieces (both
//! tools delta against the old copy); pull and push of 10,000 × 10 KiB files into an empty
//! destination; the same with nothing changed. Prints a markdown table with ratios.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

struct Tools {
    arsync: PathBuf,
    rsync: PathBuf,
    rsh: PathBuf,
}

impl Tools {
    fn run(&self, arsync: bool, src: &str, dst: &str) -> Outcome {
        let mut c = if arsync {
            let mut c = Command::new(&self.arsync);
            c.arg("--protocol=rsync");
            c
        } else {
            Command::new(&self.rsync)
        };
        c.args(["-a", "--stats", "-e"])
            .arg(&self.rsh)
            .arg(src)
            .arg(dst);
        run(&mut c)
    }
}

fn remote(p: &Path) -> String {
    format!("host:{}/", p.display())
}

fn local(p: &Path) -> String {
    format!("{}/", p.display())
}

fn row(name: &str, a: &Outcome, r: &Outcome) -> (String, f64) {
    let t = a.time.as_secs_f64() / r.time.as_secs_f64();
    (
        format!(
            "| {name} | {} | {} | {} | {} | {:.2} × | {t:.2} × |",
            secs(a.time),
            secs(r.time),
            num(a.wire()),
            num(r.wire()),
            a.wire() as f64 / r.wire().max(1) as f64
        ),
        t,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("ARSYNC_BENCH_QUICK").is_some();
    let (big, small) = if quick {
        (64u64 << 20, 2_000)
    } else {
        (1u64 << 30, 10_000)
    };
    let dir = std::env::var_os("ARSYNC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-rsync"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rsh = dir.join("rsh");
    fs::write(&rsh, RSH_SCRIPT).unwrap();
    fs::set_permissions(&rsh, fs::Permissions::from_mode(0o755)).unwrap();
    let t = Tools {
        arsync: std::env::var_os("ARSYNC_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_arsync"))),
        rsync: PathBuf::from(
            std::env::var_os("ARSYNC_BENCH_RSYNC").unwrap_or_else(|| "rsync".into()),
        ),
        rsh,
    };
    let mut rows = Vec::new();
    let mut ratios = Vec::new();

    // (a) Pull of a big file with scattered changes: both delta against the old copy.
    let base = dir.join("base");
    write_random(&base, big, 1);
    let src = dir.join("big-src");
    fs::create_dir_all(&src).unwrap();
    fs::copy(&base, src.join("f")).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::options().write(true).open(src.join("f")).unwrap();
        let mut rng = Rng(7);
        let mut piece = vec![0u8; 4096];
        for _ in 0..(big / 1000 / 4096).max(1) {
            rng.fill(&mut piece);
            f.write_all_at(&piece, rng.next() % (big - 4096)).unwrap();
        }
    }
    let (a_dst, r_dst) = (dir.join("big-a"), dir.join("big-r"));
    reset_copy(&base, &r_dst);
    let r = t.run(false, &remote(&src), &local(&r_dst));
    reset_copy(&base, &a_dst);
    let a = t.run(true, &remote(&src), &local(&a_dst));
    same(&src.join("f"), &a_dst.join("f"));
    let (line, ratio) = row(
        &format!("pull, {} MiB, 0.1 % scattered changes", big >> 20),
        &a,
        &r,
    );
    rows.push(line);
    ratios.push(("pull, scattered changes", ratio));
    // The same change pushed: both send rsync's delta against the old copy on the far side.
    reset_copy(&base, &r_dst);
    let r = t.run(false, &local(&src), &remote(&r_dst));
    reset_copy(&base, &a_dst);
    let a = t.run(true, &local(&src), &remote(&a_dst));
    same(&src.join("f"), &a_dst.join("f"));
    let (line, ratio) = row(
        &format!("push, {} MiB, 0.1 % scattered changes", big >> 20),
        &a,
        &r,
    );
    rows.push(line);
    ratios.push(("push, scattered changes", ratio));
    for p in [&base, &a_dst, &r_dst] {
        let _ = fs::remove_dir_all(p);
        let _ = fs::remove_file(p);
    }
    let _ = fs::remove_dir_all(&src);

    // (b, c) Many small files, fresh then unchanged, pulled and pushed.
    let tree = dir.join("tree");
    let mut rng = Rng(3);
    let mut buf = vec![0u8; 10 * 1024];
    for i in 0..small {
        let d = tree.join(format!("d{}", i % 100));
        if i < 100 {
            fs::create_dir_all(&d).unwrap();
        }
        rng.fill(&mut buf);
        fs::write(d.join(format!("f{i}")), &buf).unwrap();
    }
    sync();
    for (dir_name, pull) in [("pull", true), ("push", false)] {
        let (a_dst, r_dst) = (
            dir.join(format!("{dir_name}-a")),
            dir.join(format!("{dir_name}-r")),
        );
        let go = |arsync: bool, dst: &Path| {
            if pull {
                t.run(arsync, &remote(&tree), &local(dst))
            } else {
                t.run(arsync, &local(&tree), &remote(dst))
            }
        };
        let r = go(false, &r_dst);
        let a = go(true, &a_dst);
        let (line, ratio) = row(
            &format!("{dir_name}, {} × 10 KiB, fresh", num(small as u64)),
            &a,
            &r,
        );
        rows.push(line);
        ratios.push((if pull { "pull, fresh" } else { "push, fresh" }, ratio));
        let (mut ta, mut tr) = (Vec::new(), Vec::new());
        let (mut wa, mut wr) = (0, 0);
        for _ in 0..3 {
            let r = go(false, &r_dst);
            let a = go(true, &a_dst);
            (wa, wr) = (a.wire(), r.wire());
            ta.push(a.time);
            tr.push(r.time);
        }
        let (ma, mr) = (median(ta), median(tr));
        let fake = |time: Duration, w: u64| Outcome {
            time,
            sent: w,
            received: 0,
            literal: 0,
        };
        let (line, ratio) = row(
            &format!(
                "{dir_name}, {} files, nothing changed (median of 3)",
                num(small as u64)
            ),
            &fake(ma, wa),
            &fake(mr, wr),
        );
        rows.push(line);
        ratios.push((
            if pull {
                "pull, nothing changed"
            } else {
                "push, nothing changed"
            },
            ratio,
        ));
    }

    println!(
        "## arsync's client vs rsync's client, same rsync server ({})\n",
        if quick { "--quick" } else { "full" }
    );
    println!("| workload | arsync | rsync | arsync wire bytes | rsync wire bytes | bytes × rsync | time × rsync |");
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        println!("{r}");
    }
    println!("\n## target (issue 4): arsync no slower than rsync (≤ 1.0 ×)\n");
    println!("| workload | time × rsync | result |");
    println!("|---|--:|---|");
    for (name, r) in ratios {
        println!("| {name} | {r:.2} × | {} |", verdict(r <= 1.0));
    }
    let _ = fs::remove_dir_all(&dir);
}
