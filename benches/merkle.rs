//! arsync ↔ arsync (the merkle protocol) against `rsync -a --no-W` over the same remote shell,
//! side by side in one run, plus the chunk-size trade-off and hashing throughput.
//!
//! ```sh
//! cargo bench --bench merkle             # 1 GiB files, 10,000 small files
//! cargo bench --bench merkle -- --quick  # 64 MiB files, 2,000 small files
//! cargo bench --bench merkle -- --chunker  # hashing and cut points alone (scalar vs fast)
//! ARSYNC_BENCH_MIB=256 cargo bench --bench merkle -- --scattered  # that table alone, 256 MiB
//! ```
//!
//! The remote shell is local (it drops the host name and runs the command here, as rsync's own
//! test suite does), so both tools pay for two processes and a pipe, and nothing for a network:
//! the wire bytes are what a network would carry; the times are CPU and disk. Results go to
//! stdout as markdown; record them in `docs/BENCHMARKS.md`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Setup {
    dir: PathBuf,
    arsync: PathBuf,
    rsync: PathBuf,
    rsh: PathBuf,
}

impl Setup {
    fn arsync(&self, extra: &[&str], src: &Path, dst: &Path) -> Outcome {
        self.arsync_cached(&self.dir.join("cache"), extra, src, dst)
    }

    // Issue 18, chunk cache: both sides keep their chunk-index cache in `cache` (the remote
    // shell passes the environment on), not in the user's.
    fn arsync_cached(&self, cache: &Path, extra: &[&str], src: &Path, dst: &Path) -> Outcome {
        let mut c = Command::new(&self.arsync);
        c.env("ARSYNC_CACHE_DIR", cache);
        c.args(["-a", "--stats", "-e"])
            .arg(&self.rsh)
            .arg(format!("--rsync-path={}", self.arsync.display()))
            .args(extra)
            .arg(format!("{}/", src.display()))
            .arg(format!("host:{}/", dst.display()));
        run(&mut c)
    }

    fn rsync(&self, src: &Path, dst: &Path) -> Outcome {
        let mut c = Command::new(&self.rsync);
        c.args(["-a", "--no-W", "--stats", "-e"])
            .arg(&self.rsh)
            .arg(format!("{}/", src.display()))
            .arg(format!("host:{}/", dst.display()));
        run(&mut c)
    }
}

/// Issue 18, chunk cache: re-runs where the chunk-index cache is warm. A fill run first
/// updates the destination from a copy of the old file (so the receiver records the copy it
/// writes); the measured run then updates it to `src`: the receiver indexes its copy from the
/// cache, the sender reads its changed file ("receiver cached"). Repeated with the same cache,
/// the sender's file is cached too, as an unchanged source's is ("both cached").
fn rerun_rows(s: &Setup, base: &Path, src: &Path, r: &Outcome) -> Vec<String> {
    let (a_dst, old_copy, cache) = (
        s.dir.join("a-dst"),
        s.dir.join("same"),
        s.dir.join("rerun-cache"),
    );
    let _ = fs::remove_dir_all(&cache);
    reset_copy(base, &old_copy);
    // Newer than the destination's copy (reset_copy stamps it 2001): the fill run updates it.
    fs::File::options()
        .write(true)
        .open(old_copy.join("f"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let mut rows = Vec::new();
    for what in ["receiver cached", "both cached"] {
        reset_copy(base, &a_dst);
        s.arsync_cached(&cache, &[], &old_copy, &a_dst);
        sync();
        let a = s.arsync_cached(&cache, &[], src, &a_dst);
        same(&src.join("f"), &a_dst.join("f"));
        rows.push(vs_rsync_row(&format!("arsync, re-run ({what})"), &a, r));
    }
    rows
}

/// A table row for one more arsync run of a workload, against rsync's run `r`.
fn vs_rsync_row(what: &str, a: &Outcome, r: &Outcome) -> String {
    format!(
        "| | {what} | {} | {} | {} | {:.2} × | {:.2} × |",
        num(a.wire()),
        num(a.literal),
        secs(a.time),
        a.wire() as f64 / r.wire() as f64,
        a.time.as_secs_f64() / r.time.as_secs_f64()
    )
}

fn delta_workload(s: &Setup, name: &str, base: &Path, src: &Path, sweep: &[&str]) -> Vec<String> {
    let (a_dst, r_dst) = (s.dir.join("a-dst"), s.dir.join("r-dst"));
    let mut rows = Vec::new();
    reset_copy(base, &r_dst);
    let r = s.rsync(src, &r_dst);
    same(&src.join("f"), &r_dst.join("f"));
    reset_copy(base, &a_dst);
    let a = s.arsync(&[], src, &a_dst);
    same(&src.join("f"), &a_dst.join("f"));
    let bytes = a.wire() as f64 / r.wire() as f64;
    let time = a.time.as_secs_f64() / r.time.as_secs_f64();
    rows.push(format!(
        "| {name} | arsync | {} | {} | {} | {bytes:.2} × | {time:.2} × |",
        num(a.wire()),
        num(a.literal),
        secs(a.time)
    ));
    rows.push(format!(
        "| | rsync --no-W | {} | {} | {} | 1 | 1 |",
        num(r.wire()),
        num(r.literal),
        secs(r.time)
    ));
    // Issue 18, chunk cache: the re-run rows, for the workload that has a chunk-size sweep.
    if !sweep.is_empty() {
        rows.extend(rerun_rows(s, base, src, &r));
    }
    for cs in sweep {
        reset_copy(base, &a_dst);
        let a = s.arsync(&[&format!("--chunk-size={cs}")], src, &a_dst);
        same(&src.join("f"), &a_dst.join("f"));
        rows.push(vs_rsync_row(&format!("arsync --chunk-size={cs}"), &a, &r));
    }
    rows.push(format!("<!-- {name}: bytes {bytes:.3} time {time:.3} -->"));
    rows
}

fn hashing(size: usize) -> Vec<String> {
    use arsync::core::merkle::chunk::{chunk_bytes, ChunkParams};
    let mut data = vec![0u8; size];
    Rng(99).fill(&mut data);
    let gbs = |d: Duration| size as f64 / d.as_secs_f64() / 1e9;
    let best = |f: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let b3 = best(&|| {
        std::hint::black_box(blake3::hash(&data));
    });
    let b3_all = best(&|| {
        std::hint::black_box(blake3::Hasher::new().update_rayon(&data).finalize());
    });
    let mut rows = vec![
        format!(
            "| BLAKE3, one thread (`blake3::hash`) | {:.2} GB/s | {:.2} GB/s |",
            gbs(b3),
            gbs(b3)
        ),
        format!(
            "| BLAKE3, {cores} threads (`update_rayon`) | {:.2} GB/s | {:.2} GB/s |",
            gbs(b3_all),
            gbs(b3_all) / cores as f64
        ),
    ];
    // Issue 18, cheap deltas: the hashing of the chunks alone, the chunks one by one against
    // side by side in SIMD lanes (`merkle::batch_hash`, the same hashes), one thread.
    for avg in [4096u32, 16384] {
        use arsync::core::merkle::batch_hash::hash_pieces;
        use arsync::core::merkle::chunk::cut_points;
        let cuts = cut_points(&data, ChunkParams::cdc(avg));
        let one_by_one = best(&|| {
            for &(o, l) in &cuts {
                std::hint::black_box(blake3::hash(&data[o as usize..o as usize + l as usize]));
            }
        });
        let side_by_side = best(&|| {
            std::hint::black_box(hash_pieces(&data, &cuts));
        });
        rows.push(format!(
            "| BLAKE3 of avg {} KiB chunks one by one (`blake3::hash`), one thread | {:.2} GB/s | {:.2} GB/s |",
            avg / 1024,
            gbs(one_by_one),
            gbs(one_by_one)
        ));
        rows.push(format!(
            "| BLAKE3 of avg {} KiB chunks side by side (`batch_hash`), one thread | {:.2} GB/s | {:.2} GB/s |",
            avg / 1024,
            gbs(side_by_side),
            gbs(side_by_side)
        ));
    }
    for avg in [4096u32, 16384, 65536] {
        let p = ChunkParams::cdc(avg);
        let single = best(&|| {
            one.install(|| std::hint::black_box(chunk_bytes(&data, p)));
        });
        let all = best(&|| {
            std::hint::black_box(chunk_bytes(&data, p));
        });
        rows.push(format!(
            "| FastCDC + BLAKE3 per chunk, avg {} KiB, one thread | {:.2} GB/s | {:.2} GB/s |",
            avg / 1024,
            gbs(single),
            gbs(single)
        ));
        rows.push(format!(
            "| FastCDC + BLAKE3 per chunk, avg {} KiB, {cores} threads | {:.2} GB/s | {:.2} GB/s |",
            avg / 1024,
            gbs(all),
            gbs(all) / cores as f64
        ));
    }
    rows
}

// Issue 18, chunker: the cut points alone, one thread, the `fastcdc` crate's loop against
// arsync's faster pass (the same cut points), side by side.
fn cutting(size: usize) -> Vec<String> {
    use arsync::core::merkle::chunk::{cut_points, cut_points_reference, ChunkParams};
    let mut data = vec![0u8; size];
    Rng(99).fill(&mut data);
    let best = |f: &dyn Fn() -> usize| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let gbs = |d: Duration| size as f64 / d.as_secs_f64() / 1e9;
    let mut rows = Vec::new();
    for avg in [4096u32, 16384, 65536] {
        let p = ChunkParams::cdc(avg);
        assert_eq!(cut_points(&data, p), cut_points_reference(&data, p));
        let scalar = best(&|| cut_points_reference(&data, p).len());
        let fast = best(&|| cut_points(&data, p).len());
        rows.push(format!(
            "| {} KiB | {:.2} GB/s | {:.2} GB/s | {:.2} × |",
            avg / 1024,
            gbs(scalar),
            gbs(fast),
            scalar.as_secs_f64() / fast.as_secs_f64()
        ));
    }
    rows
}

fn print_cutting() {
    println!("\n## chunker: cut points only, one thread (in memory, 256 MiB of random data)\n");
    println!("| average chunk | `fastcdc` crate (scalar) | arsync (`merkle::gear`) | speed-up |");
    println!("|--:|--:|--:|--:|");
    for r in cutting(256 << 20) {
        println!("{r}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Issue 18, chunker: `-- --chunker` prints the hashing and chunker tables alone.
    if args.iter().any(|a| a == "--chunker") {
        println!("## hashing throughput (in memory, 256 MiB of random data)\n");
        println!("| what | throughput | per core |");
        println!("|---|--:|--:|");
        for r in hashing(256 << 20) {
            println!("{r}");
        }
        print_cutting();
        return;
    }
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("ARSYNC_BENCH_QUICK").is_some();
    let (mut big, small_files) = if quick {
        (64u64 << 20, 2_000)
    } else {
        (1u64 << 30, 10_000)
    };
    // Issue 18, chunk cache: `ARSYNC_BENCH_MIB=256` sizes the big file; `-- --scattered` runs
    // the scattered workload's table alone.
    if let Some(mib) = std::env::var("ARSYNC_BENCH_MIB")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
    {
        big = mib << 20;
    }
    let scattered_only = args.iter().any(|a| a == "--scattered");
    let dir = std::env::var_os("ARSYNC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-merkle"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rsh = dir.join("rsh");
    fs::write(&rsh, RSH_SCRIPT).unwrap();
    fs::set_permissions(&rsh, fs::Permissions::from_mode(0o755)).unwrap();
    let s = Setup {
        arsync: std::env::var_os("ARSYNC_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_arsync"))),
        rsync: PathBuf::from(
            std::env::var_os("ARSYNC_BENCH_RSYNC").unwrap_or_else(|| "rsync".into()),
        ),
        rsh,
        dir: dir.clone(),
    };

    println!(
        "## merkle protocol vs rsync --no-W, same remote shell ({} MiB file)\n",
        big >> 20
    );
    let base = dir.join("base");
    write_random(&base, big, 1);
    // 0.1 % changed in scattered 4 KiB pieces.
    let scattered = dir.join("scattered");
    fs::create_dir_all(&scattered).unwrap();
    fs::copy(&base, scattered.join("f")).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::options()
            .write(true)
            .open(scattered.join("f"))
            .unwrap();
        let mut rng = Rng(7);
        let pieces = (big / 1000 / 4096).max(1);
        let mut piece = vec![0u8; 4096];
        for _ in 0..pieces {
            rng.fill(&mut piece);
            f.write_all_at(&piece, rng.next() % (big - 4096)).unwrap();
        }
    }
    // One byte inserted at the front.
    let inserted = dir.join("inserted");
    fs::create_dir_all(&inserted).unwrap();
    {
        let mut out = std::io::BufWriter::new(fs::File::create(inserted.join("f")).unwrap());
        out.write_all(b"!").unwrap();
        std::io::copy(&mut fs::File::open(&base).unwrap(), &mut out).unwrap();
    }
    sync();
    println!("| workload | tool | wire bytes (sent + received) | literal | time | bytes × rsync | time × rsync |");
    println!("|---|---|--:|--:|--:|--:|--:|");
    let sc = delta_workload(
        &s,
        "0.1 % scattered 4 KiB changes",
        &base,
        &scattered,
        &["1K", "2K", "8K", "32K"],
    );
    if scattered_only {
        for r in sc.iter().filter(|r| !r.starts_with("<!--")) {
            println!("{r}");
        }
        let _ = fs::remove_dir_all(&dir);
        return;
    }
    let ins = delta_workload(&s, "1 byte inserted at the front", &base, &inserted, &[]);
    let ratio = |rows: &[String], what: &str| -> f64 {
        let last = rows.last().unwrap();
        let i = last.find(what).unwrap() + what.len();
        last[i..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    for r in sc.iter().chain(&ins) {
        if !r.starts_with("<!--") {
            println!("{r}");
        }
    }
    let _ = fs::remove_dir_all(dir.join("a-dst"));
    let _ = fs::remove_dir_all(dir.join("r-dst"));

    // Nothing changed: many small files.
    let tree = dir.join("tree");
    let mut rng = Rng(3);
    let mut buf = vec![0u8; 4096];
    for i in 0..small_files {
        let d = tree.join(format!("d{}", i % 100));
        if i < 100 {
            fs::create_dir_all(&d).unwrap();
        }
        rng.fill(&mut buf);
        fs::write(d.join(format!("f{i}")), &buf).unwrap();
    }
    let (a_dst, f_dst, r_dst) = (dir.join("t-a"), dir.join("t-flat"), dir.join("t-r"));
    s.arsync(&[], &tree, &a_dst);
    s.arsync(&[], &tree, &f_dst);
    s.rsync(&tree, &r_dst);
    sync();
    let (mut ta, mut tf, mut tr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ba, mut bf, mut br) = (0, 0, 0);
    for _ in 0..5 {
        let a = s.arsync(&[], &tree, &a_dst);
        let f = s.arsync(&["--tree-levels=0"], &tree, &f_dst);
        let r = s.rsync(&tree, &r_dst);
        (ba, bf, br) = (a.wire(), f.wire(), r.wire());
        ta.push(a.time);
        tf.push(f.time);
        tr.push(r.time);
    }
    let (ma, mf, mr) = (median(ta), median(tf), median(tr));
    println!(
        "\n## nothing changed, {} files × 4 KiB in 100 directories (median of 5)\n",
        num(small_files as u64)
    );
    println!("| tool | wire bytes | time | bytes × rsync | time × rsync |");
    println!("|---|--:|--:|--:|--:|");
    for (name, b, t) in [
        ("arsync (directory-tree exchange)", ba, ma),
        ("arsync --tree-levels=0 (whole list)", bf, mf),
        ("rsync --no-W", br, mr),
    ] {
        println!(
            "| {name} | {} | {} | {:.2} × | {:.2} × |",
            num(b),
            secs(t),
            b as f64 / br as f64,
            t.as_secs_f64() / mr.as_secs_f64()
        );
    }

    println!("\n## hashing throughput (in memory, 256 MiB of random data)\n");
    println!("| what | throughput | per core |");
    println!("|---|--:|--:|");
    for r in hashing(256 << 20) {
        println!("{r}");
    }
    print_cutting();

    let sb = ratio(&sc, "bytes ");
    let st = ratio(&sc, "time ");
    let ib = ratio(&ins, "bytes ");
    let nt = ma.as_secs_f64() / mr.as_secs_f64();
    println!("\n## targets (issue 3)\n");
    println!("| target | measured | result |");
    println!("|---|--:|---|");
    println!(
        "| scattered: bytes ≤ 0.25 × rsync | {sb:.2} × | {} |",
        verdict(sb <= 0.25)
    );
    println!(
        "| scattered: time ≤ 0.25 × rsync | {st:.2} × | {} |",
        verdict(st <= 0.25)
    );
    println!(
        "| inserted byte: bytes ≤ 1.0 × rsync | {ib:.2} × | {} |",
        verdict(ib <= 1.0)
    );
    println!(
        "| nothing changed: time ≤ 0.5 × rsync | {nt:.2} × | {} |",
        verdict(nt <= 0.5)
    );
    let _ = fs::remove_dir_all(&dir);
}
