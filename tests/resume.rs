//! Issue 19, resume: a transfer killed at random moments, again and again, then run to the
//! end. A client pushing one file with `--partial-dir` is SIGKILLed (it can keep nothing
//! itself: the receiving arsync sees the connection drop and keeps what it wrote, a prefix,
//! in the partial directory), over each way of reaching a receiving arsync: a local remote
//! shell (`-e`), the real sshd, and `arsync serve` over QUIC and over TLS. After each kill the
//! destination name holds the old file, byte for byte (or the whole new one, verified, when
//! the sender had sent its last byte before it died), and nothing else is left but the
//! partial file, a prefix of the source, never shorter than the last one; the final run makes
//! the file exact, removes the partial file, and sends no more than the missing part plus the
//! merkle nodes of it (measured from `--stats`). A client pulling over sshd is stopped the same way (SIGINT: the
//! receiving client keeps its own partial file), and so is, over rsync's protocol, an arsync
//! client pulling from a real `rsync --server` (as rsync's own client does).
//!
//! The moments come from a seed, printed (`ARSYNC_RESUME_SEED` replays one); the size and the
//! number of kills are small by default (`ARSYNC_RESUME_MB`, `ARSYNC_RESUME_KILLS`: the
//! 200 MB, 20-kill run of `docs/BENCHMARKS.md`, "Resume").

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::serve_daemon::Daemon;
use common::sshd::Sshd;
use common::*;

/// The rate of a killed run, in KiB/s: slow enough for the kill to land where it is aimed.
const RATE_KIB: u64 = 8192;

/// Hash overhead allowed on top of the missing part: 2.5 % — twice what was measured: 41 bytes
/// per merkle node, about 1.3 nodes per 4 KiB chunk missing, interior ones included (rsync's
/// protocol adds less: token headers) — plus a fixed share for the root's path, the file list
/// and the frames.
fn overhead(missing: u64) -> u64 {
    missing / 40 + (64 << 10)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The file's size and the number of kills.
fn shape() -> (usize, usize) {
    (
        (env_or("ARSYNC_RESUME_MB", 32) << 20) as usize,
        env_or("ARSYNC_RESUME_KILLS", 4) as usize,
    )
}

/// A small seeded generator (xorshift), for the moments of the kills.
struct Moments(u64);

impl Moments {
    /// From `ARSYNC_RESUME_SEED`, or the clock; printed either way.
    fn new(what: &str) -> Moments {
        let seed = std::env::var("ARSYNC_RESUME_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: ARSYNC_RESUME_SEED={seed}");
        Moments(seed | 1)
    }

    /// A fraction in [0.02, `most`).
    fn fraction(&mut self, most: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        0.02 + (most - 0.02) * (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One way of reaching the receiving side: the client's extra arguments and environment, the
/// destination argument, and the directory it names here.
struct Way {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The source argument (`src/big` for a push).
    source: String,
    dest: String,
    dir: PathBuf,
    /// The signal that stops the client: SIGKILL for a sending one, SIGINT for a receiving
    /// one (the receiver must live to keep its partial file).
    signal: libc::c_int,
    /// The `--stats` line that counts what the sending side sent.
    sent: &'static str,
}

impl Way {
    /// A client pushing `src/big` to `dest` (the directory `dir` here), killed outright.
    fn push(
        name: &'static str,
        args: Vec<String>,
        env: Vec<(String, String)>,
        dest: String,
        dir: PathBuf,
    ) -> Way {
        Way {
            name,
            args,
            env,
            source: "src/big".into(),
            dest,
            dir,
            signal: libc::SIGKILL,
            sent: "Total bytes sent:",
        }
    }

    fn run(&self, cwd: &Path, opts: &[&str]) -> Running {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(opts);
        args.extend([self.source.as_str(), &self.dest]);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        spawn_env(Tool::Arsync, cwd, &args, &env)
    }
}

/// Names in `dir` (none if it is missing).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The size of a receiver's temporary for `big` in `dir` (`.big.XXXXXX`), if there is one.
fn staged(dir: &Path) -> Option<u64> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(b".big."))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .max()
}

/// Wait (bounded) until a temporary for `big` in `dir` holds `target` bytes or the run ends.
fn until_written(dir: &Path, target: u64, running: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && running.is_running()
        && staged(dir).is_none_or(|n| n < target)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait (bounded) until the receiver has let go: no temporary left in `dir`, and the partial
/// file's size the same on three looks in a row.
fn settle(dir: &Path, partial: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let size = || fs::metadata(partial).map(|m| m.len()).ok();
    let mut same = 0;
    let mut last = size();
    while Instant::now() < deadline && same < 3 {
        std::thread::sleep(Duration::from_millis(100));
        let now = size();
        same = if staged(dir).is_some() || now != last {
            0
        } else {
            same + 1
        };
        last = now;
    }
    assert!(same >= 3, "the receiver did not let go of {dir:?}");
}

/// The kill loop over `way`, with `src/big` below `s` the source.
fn killed_then_resumed(s: &Scratch, way: &Way) {
    let (size, kills) = shape();
    let started = Instant::now();
    let mut moments = Moments::new(way.name);
    let big = pseudo_random(size, 19);
    write(&s.join("src/big"), &big);
    let old = pseudo_random(size / 3, 20);
    write(&way.dir.join("big"), &old);
    set_mtime(&way.dir.join("big"), 1_500_000_000, 0);
    let partial = way.dir.join(".part/big");
    let rate = format!("--bwlimit={RATE_KIB}");
    let slow = ["-a", "--partial-dir=.part", rate.as_str()];
    let mut kept = 0u64;
    for k in 0..kills {
        let mut running = way.run(s.path(), &slow);
        // A random moment: when the receiver has written a random share of what is missing
        // (smaller shares with more kills, so that the last ones still land mid-transfer).
        let share = moments.fraction((3.0 / kills as f64).min(0.8));
        let target = kept + ((size as u64 - kept) as f64 * share) as u64;
        until_written(&way.dir, target, &mut running);
        // The run may end first: on a busy machine the receiver, held up, can write the rest in
        // one burst between two looks. Then, as for a stop that came too late, the whole file
        // must be in place.
        let early = !running.is_running();
        if !early {
            // SAFETY: kill(2) on the client this test started (its process only: a receiving
            // server must see the connection drop, not be killed with it).
            let rc = unsafe { libc::kill(running.child.id() as libc::pid_t, way.signal) };
            assert_eq!(rc, 0, "kill({})", way.signal);
        }
        let stopped = running.wait(RUN_TIMEOUT);
        let ended = stopped.code() == Some(0);
        assert!(
            ended || !early,
            "{} kill {k}: the run failed before the kill\n{}",
            way.name,
            stopped.describe()
        );
        settle(&way.dir, &partial);
        let now = fs::read(way.dir.join("big")).unwrap();
        if now == big {
            // The sender had sent its last byte before the kill (it was still in the
            // receiver's buffers): the receiver verified the file and put it in place.
            eprintln!("{} kill {k}: too late, the file was complete", way.name);
            assert_eq!(names(&way.dir), ["big"], "{}: left in dst", way.name);
            kept = size as u64;
            break;
        }
        assert!(
            !ended,
            "{} kill {k}: the run ended well but the file is not the source\n{}",
            way.name,
            stopped.describe()
        );
        assert!(
            now == old,
            "{} kill {k}: the destination name holds neither the old file nor the new one",
            way.name
        );
        let left = names(&way.dir);
        assert!(
            left == ["big"] || left == [".part", "big"],
            "{} kill {k}: left in the destination: {left:?}",
            way.name
        );
        if let Ok(part) = fs::read(&partial) {
            assert!(
                !part.is_empty() && part.len() < size && big.starts_with(&part),
                "{} kill {k}: the partial file ({} bytes) is not a prefix of the source",
                way.name,
                part.len()
            );
            // What a stop kept is never lost to a later one.
            assert!(
                part.len() as u64 >= kept,
                "{} kill {k}: the partial file shrank from {kept} to {} bytes",
                way.name,
                part.len()
            );
            kept = part.len() as u64;
        }
        eprintln!(
            "{} kill {k}: at {target} bytes written, {kept} bytes kept",
            way.name
        );
    }
    assert!(kept > 0, "{}: no kill kept anything", way.name);
    let last = way
        .run(s.path(), &["-a", "--partial-dir=.part", "--stats"])
        .wait(RUN_TIMEOUT);
    assert_eq!(last.code(), Some(0), "{}: {}", way.name, last.describe());
    assert!(
        fs::read(way.dir.join("big")).unwrap() == big,
        "{}: the resumed file differs from the source",
        way.name
    );
    assert_eq!(names(&way.dir), ["big"], "{}: left in dst", way.name);
    let missing = size as u64 - kept;
    let sent = last.stat(way.sent);
    eprintln!(
        "{}: the re-run sent {sent} bytes for the missing {missing} (literal {}, overhead {}); \
         {:.1} s in all",
        way.name,
        last.stat("Literal data:"),
        sent as i64 - missing as i64,
        started.elapsed().as_secs_f64()
    );
    assert!(
        sent <= missing + overhead(missing),
        "{}: the re-run sent {sent} bytes, the missing part is {missing}\n{}",
        way.name,
        last.describe()
    );
}

/// `--rsh=LINE --rsync-path=arsync`.
fn shell(line: &str) -> Vec<String> {
    vec![format!("--rsh={line}"), format!("--rsync-path={ARSYNC}")]
}

#[test]
fn killed_pushes_over_a_local_remote_shell_resume() {
    let s = Scratch::new();
    mkdir(&s.join("dst"));
    let rsh = fake_rsh(s.path()).display().to_string();
    let way = Way::push(
        "local remote shell",
        shell(&rsh),
        Vec::new(),
        "host:dst/".into(),
        s.join("dst"),
    );
    killed_then_resumed(&s, &way);
}

#[test]
fn stopped_pushes_and_pulls_over_sshd_resume() {
    let s = Scratch::new();
    let keys = s.join("sshd");
    mkdir(&keys);
    let sshd = Sshd::start(&keys);
    mkdir(&s.join("dst"));
    let dest = format!("127.0.0.1:{}/", s.join("dst").display());
    let way = Way::push("sshd", shell(&sshd.rsh()), Vec::new(), dest, s.join("dst"));
    killed_then_resumed(&s, &way);
    // The other direction: the pulling client is the receiver and keeps its partial file
    // when stopped (SIGINT); the server's side of the bytes is what it sent.
    fs::remove_dir_all(s.join("dst")).unwrap();
    mkdir(&s.join("dst"));
    killed_then_resumed(
        &s,
        &Way {
            name: "sshd, pull",
            args: shell(&sshd.rsh()),
            env: Vec::new(),
            source: format!("127.0.0.1:{}", s.join("src/big").display()),
            dest: "dst/".into(),
            dir: s.join("dst"),
            signal: libc::SIGINT,
            sent: "Total bytes received:",
        },
    );
}

/// Over `arsync serve` with `transport`; `--timeout` lets the daemon notice a client that
/// vanished without a word (over QUIC nothing tells it before the idle timeout).
fn killed_pushes_to_serve(transport: &str) {
    let s = Scratch::new();
    let d = Daemon::start(&s, "");
    let token = d.token("t", &[]);
    let name = if transport == "quic" {
        "serve over QUIC"
    } else {
        "serve over TLS"
    };
    let args = vec![format!("--transport={transport}"), "--timeout=2".into()];
    let config = s.join("client-config").display().to_string();
    let env = vec![
        ("XDG_CONFIG_HOME".into(), config),
        ("ARSYNC_TOKEN".into(), token),
    ];
    let way = Way::push(name, args, env, d.url("up/"), s.join("up"));
    killed_then_resumed(&s, &way);
}

#[test]
fn killed_pushes_to_serve_over_quic_resume() {
    killed_pushes_to_serve("quic");
}

#[test]
fn killed_pushes_to_serve_over_tls_resume() {
    killed_pushes_to_serve("tls");
}

// Over rsync's protocol the partial file is the basis of rsync's own delta (block checksums
// of it go to the sender, which sends the rest as literal data): the same loop, an arsync
// client pulling from `rsync --server`. (`tests/parity/tempfiles.rs` stops each role once
// and compares with rsync; this stops one many times.)
#[test]
fn stopped_pulls_from_rsync_resume_from_the_partial_file() {
    let s = Scratch::new();
    let rsh = fake_rsh(s.path());
    mkdir(&s.join("dst"));
    killed_then_resumed(
        &s,
        &Way {
            name: "rsync --server",
            args: vec![
                format!("--rsh={}", rsh.display()),
                format!("--rsync-path={}", rsync_path().display()),
                "--protocol=rsync".into(),
            ],
            env: Vec::new(),
            source: "host:src/big".into(),
            dest: "dst/".into(),
            dir: s.join("dst"),
            signal: libc::SIGINT,
            sent: "Total bytes received:",
        },
    );
}
