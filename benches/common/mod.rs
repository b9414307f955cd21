//! Helpers shared by the remote-shell benches: data, runs, parsing `--stats`, formatting.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// The local "remote shell": drops ssh's `-l`/`-p` and the host, runs the command here.
pub const RSH_SCRIPT: &str =
    "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\nshift\nexec sh -c \"$*\"\n";

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// One tool run's outcome.
pub struct Outcome {
    pub time: Duration,
    pub sent: u64,
    pub received: u64,
    pub literal: u64,
}

impl Outcome {
    pub fn wire(&self) -> u64 {
        self.sent + self.received
    }
}

pub fn stat(out: &str, label: &str) -> u64 {
    out.lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l[label.len()..].split_whitespace().next())
        .map(|v| v.replace(',', "").parse().unwrap_or(0))
        .unwrap_or(0)
}

pub fn run(cmd: &mut Command) -> Outcome {
    let started = Instant::now();
    let out = cmd.output().expect("run tool");
    let time = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome {
        time,
        sent: stat(&stdout, "Total bytes sent:"),
        received: stat(&stdout, "Total bytes received:"),
        literal: stat(&stdout, "Literal data:"),
    }
}

pub fn write_random(path: &Path, size: u64, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// A fresh copy of `base` at `dst/f`, older than the source so the quick check sends it.
pub fn reset_copy(base: &Path, dst: &Path) {
    let _ = fs::remove_dir_all(dst);
    fs::create_dir_all(dst).unwrap();
    fs::copy(base, dst.join("f")).unwrap();
    fs::File::options()
        .write(true)
        .open(dst.join("f"))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    sync();
}

pub fn sync() {
    let _ = Command::new("sync").status();
}

pub fn same(a: &Path, b: &Path) {
    let status = Command::new("cmp").arg(a).arg(b).status().unwrap();
    assert!(
        status.success(),
        "{} differs from {}",
        a.display(),
        b.display()
    );
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "**MISS**"
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
