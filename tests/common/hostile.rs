//! Scripted hostile peers for tests/hostile.rs and tests/rsync_interop.rs. A real rsync or
//! arsync will not misbehave on purpose, so these peers are hand-written bytes: the point is
//! what no honest peer sends. The process on the other end (arsync) and the files are real.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::Scratch;

/// `path` with a trailing slash (rsync's "the contents of").
pub fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

/// A hostile sender's opening: protocol 32, compat flags `0x1fe`, md5, seed 0.
pub fn opening() -> Vec<u8> {
    vec![32, 0, 0, 0, 0x81, 0xfe, 3, b'm', b'd', b'5', 0, 0, 0, 0]
}

/// `payload` as one multiplexed MSG_DATA frame.
pub fn mux(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32 | (7 << 24)).to_le_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// The bytes a hostile "rsync --server --sender" sends whatever it is asked: protocol 32,
/// compat flags `0x1fe`, md5, seed 0, then a one-entry file list naming `name`.
pub fn hostile_sender_bytes(name: &[u8]) -> Vec<u8> {
    hostile_list_bytes(&[(name, 0o100644, b"")], &[])
}

/// A file-list entry of [`hostile_list_bytes`]: name, mode, symlink target.
pub type Entry<'a> = (&'a [u8], u32, &'a [u8]);

/// A hostile sender's opening (protocol 32, md5, seed 0) and a file list of `entries`:
/// `(name, mode, symlink target)`, each 5 bytes long, then `after` (more multiplexed data).
pub fn hostile_list_bytes(entries: &[Entry], after: &[u8]) -> Vec<u8> {
    let mut v = opening();
    v.extend_from_slice(&mux(&list_payload(entries, after)));
    v
}

/// What a sender says after the handshake, in either role: a file list of `entries`, its end,
/// the id names, then `after`.
pub fn list_payload(entries: &[Entry], after: &[u8]) -> Vec<u8> {
    let mut list = Vec::new();
    for (name, mode, target) in entries {
        list.extend_from_slice(&[0x04, name.len() as u8]);
        list.extend_from_slice(name);
        list.extend_from_slice(&[0x00, 0x05, 0x00]); // size 5
        list.extend_from_slice(&[0x3b, 0x00, 0xca, 0x9a]); // mtime 1e9
        list.extend_from_slice(&mode.to_le_bytes());
        list.extend_from_slice(&[0x00, 0x00]); // uid, gid
        if mode & 0o170000 == 0o120000 {
            list.push(target.len() as u8);
            list.extend_from_slice(target);
        }
    }
    list.extend_from_slice(&[0x00, 0x00]); // end of list, no I/O error
    list.extend_from_slice(&[0x00, 4, b'r', b'o', b'o', b't']); // uid names
    list.extend_from_slice(&[0x00, 4, b'r', b'o', b'o', b't']); // gid names
    list.extend_from_slice(after);
    list
}

/// A client pushing to `arsync --server EXTRA -logDtpre.LsfxCIvu . DEST/` (no `i`: one file
/// list): protocol 32, the md5 checksum list, then `frames` (already multiplexed) as the
/// sender's stream. The client stays connected a second after its last byte. Returns the exit
/// code and stderr.
pub fn hostile_push(dest: &Path, extra: &[&str], frames: &[u8]) -> (Option<i32>, String) {
    hostile_push_with(dest, extra, "-logDtpre.LsfxCIvu", frames)
}

/// [`hostile_push`] with the option cluster `flags` (`-…e.iLsfxCIvu` offers incremental
/// recursion, which `arsync --server` then sets: the lists come a directory at a time).
pub fn hostile_push_with(
    dest: &Path,
    extra: &[&str],
    flags: &str,
    frames: &[u8],
) -> (Option<i32>, String) {
    let mut bytes = vec![32, 0, 0, 0, 3, b'm', b'd', b'5'];
    bytes.extend_from_slice(frames);
    let mut args = vec!["--server"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[flags, "."]);
    raw_client(&args, &slash(dest), &bytes, Duration::from_secs(1))
}

/// A `--rsh=` whose "remote shell" ignores what it is asked to run and replays `bytes`.
pub fn replay_rsh(s: &Scratch, bytes: &[u8]) -> String {
    replay_rsh_then(s, bytes, "sleep 1")
}

/// [`replay_rsh`], then runs `then` (e.g. `exec sleep 60` for a peer that never ends).
pub fn replay_rsh_then(s: &Scratch, bytes: &[u8], then: &str) -> String {
    let file = s.join("reply.bin");
    fs::write(&file, bytes).unwrap();
    let rsh = s.join("evil-rsh");
    fs::write(&rsh, format!("#!/bin/sh\ncat {}\n{then}\n", file.display())).unwrap();
    fs::set_permissions(&rsh, fs::Permissions::from_mode(0o755)).unwrap();
    format!("--rsh={}", rsh.display())
}

/// Run `arsync --server --sender` directly and speak raw rsync client bytes to it: protocol
/// 32, the md5 checksum list, an empty filter list, then `request` (multiplexed). Returns the
/// exit code and stderr.
pub fn hostile_client(src: &Path, request: &[u8]) -> (Option<i32>, String) {
    let mut muxed = vec![0, 0, 0, 0];
    muxed.extend_from_slice(request);
    let mut bytes = vec![32, 0, 0, 0, 3, b'm', b'd', b'5'];
    bytes.extend_from_slice(&mux(&muxed));
    let server = ["--server", "--sender", "-logDtpre.iLsfxCIvu", "."];
    raw_client(&server, &slash(src), &bytes, Duration::ZERO)
}

/// Start `arsync ARGS LAST`, write `bytes` to its stdin, keep stdin open `hold` longer (a peer
/// that goes quiet), then close it. Returns the exit code and stderr.
pub fn raw_client(
    args: &[&str],
    last: &str,
    bytes: &[u8],
    hold: Duration,
) -> (Option<i32>, String) {
    let mut child = super::arsync_command()
        .args(args)
        .arg(last)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(bytes);
    let mut out = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let mut errp = child.stderr.take().unwrap();
    let errt = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = errp.read_to_string(&mut err);
        err
    });
    // Not joined: a quiet peer keeps its end open past the server's exit.
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        drop(stdin);
    });
    let status = child.wait().unwrap();
    let err = errt.join().unwrap();
    drain.join().unwrap();
    (status.code(), err)
}

/// The area a hostile case runs in: `area/dest` (the destination) and `area/canary` (a
/// directory beside it with one file), so a case can check nothing was written outside.
pub struct Area {
    pub root: PathBuf,
    pub dest: PathBuf,
    pub canary: PathBuf,
}

impl Area {
    pub fn new(s: &Scratch) -> Area {
        let root = s.join("area");
        let dest = root.join("dest");
        let canary = root.join("canary");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(&canary).unwrap();
        fs::write(canary.join("keep.txt"), b"keep\n").unwrap();
        Area { root, dest, canary }
    }

    /// Nothing was written outside the destination: the area holds only `dest` and `canary`,
    /// and the canary holds only its untouched file.
    pub fn assert_outside_untouched(&self, what: &str) {
        let mut names: Vec<_> = fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["canary", "dest"],
            "{what}: wrote beside the destination"
        );
        let canary: Vec<_> = fs::read_dir(&self.canary)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(canary, ["keep.txt"], "{what}: wrote into the canary");
        assert_eq!(
            fs::read(self.canary.join("keep.txt")).unwrap(),
            b"keep\n",
            "{what}"
        );
    }

    /// Nothing written outside, and the destination holds exactly `dest` (names).
    pub fn assert_safe(&self, what: &str, dest: &[&str]) {
        self.assert_outside_untouched(what);
        assert_eq!(
            self.dest_entries(),
            dest,
            "{what}: partial or unexpected files"
        );
    }

    /// The destination's entries (names, sorted): a partial or temporary file shows here.
    pub fn dest_entries(&self) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(&self.dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}
