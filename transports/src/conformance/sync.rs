//! The suite's sync cases: a tree through the engine's own roles ([`run_sender`],
//! [`run_receiver`]) over a pair of the transport under test, with the client opening (as every
//! arsync client does) and either role on either end, then the two trees compared. This is
//! where a transport's claims meet the engine: a shared filesystem must be used (and work),
//! its absence must make the bytes cross the connection, and several streams carry data lanes.
//!
//! The fixture ([`build_fixture`]) is the suite's own, small enough for a plugin's tests: nested
//! and empty directories, empty, small, many and multi-MiB files, an awkward name, modes, symlinks
//! (one dangling), a hard-link pair and nanosecond times. A caller with a richer tree of its own
//! (devices, foreign owners) syncs it with [`sync_over_pair`] and compares it its own way.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use arsync_core::engine::{
    run_receiver, run_sender, NullSink, ReceiverJob, SenderJob, Stats, SyncOptions,
};

use super::streams::close_both;
use super::streams::pattern;
use super::{bounded_for, ensure, fresh_pair, ConformanceError, ConnectedPair, PairMaker};

/// How long one sync may take.
pub const SYNC_LIMIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Which role the client (the side that connected and opens streams) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// The client receives, the server sends: a pull (and what a local sync does).
    Receiver,
    /// The client sends, the server receives: a push.
    Sender,
}

/// Both roles' counters after a sync.
#[derive(Debug)]
pub struct SyncOutcome {
    /// The sender's.
    pub sender: Arc<Stats>,
    /// The receiver's.
    pub receiver: Arc<Stats>,
}

/// Sync `source` (a path as the sender's argument: a trailing `/` copies its contents) into
/// `dest` with the engine's roles over `pair`, the client running the role `opener` says;
/// bounded by [`SYNC_LIMIT`]. The connections are not closed.
pub async fn sync_over_pair(
    pair: &ConnectedPair,
    opener: Opener,
    source: PathBuf,
    dest: PathBuf,
    opts: SyncOptions,
) -> Result<SyncOutcome, ConformanceError> {
    let (sender_stats, receiver_stats) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
    let sender_job = SenderJob {
        sources: vec![source],
        opts: opts.clone(),
        stats: sender_stats.clone(),
        sink: Arc::new(NullSink),
        report_items: false,
    };
    let receiver_job = ReceiverJob {
        dest,
        opts,
        stats: receiver_stats.clone(),
        sink: Arc::new(NullSink),
    };
    let (sender_conn, receiver_conn) = match opener {
        Opener::Receiver => (&*pair.server, &*pair.client),
        Opener::Sender => (&*pair.client, &*pair.server),
    };
    let sender_opens = opener == Opener::Sender;
    let both = async {
        // Both run to their end: the receiver's error is the more telling when both fail.
        let (sent, received) = tokio::join!(
            run_sender(sender_conn, sender_opens, sender_job),
            run_receiver(receiver_conn, !sender_opens, receiver_job),
        );
        received
            .map_err(|source| ConformanceError::Sync {
                step: "the receiver".into(),
                source,
            })
            .and(sent.map_err(|source| ConformanceError::Sync {
                step: "the sender".into(),
                source,
            }))
    };
    bounded_for("syncing over the pair", SYNC_LIMIT, both).await?;
    Ok(SyncOutcome {
        sender: sender_stats,
        receiver: receiver_stats,
    })
}

/// The client receives the fixture.
pub async fn sync_client_receives(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    sync_fixture(maker, Opener::Receiver).await
}

/// The client sends the fixture.
pub async fn sync_client_sends(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    sync_fixture(maker, Opener::Sender).await
}

/// `-a -H` with a `--timeout`, so that the roles end by themselves if the transport stalls.
fn options() -> SyncOptions {
    let mut opts = SyncOptions::archive();
    opts.hard_links = true;
    opts.io_timeout = Some(60);
    opts
}

async fn sync_fixture(maker: &dyn PairMaker, opener: Opener) -> Result<(), ConformanceError> {
    let io = |step: &'static str| {
        move |source| ConformanceError::Io {
            step: step.into(),
            source,
        }
    };
    let tmp = tempfile::tempdir().map_err(io("making a scratch directory"))?;
    let (src, dest) = (tmp.path().join("src"), tmp.path().join("dest"));
    let file_bytes = build_fixture(&src).map_err(io("building the fixture"))?;
    let pair = fresh_pair(maker).await?;
    let mut arg = src.clone().into_os_string();
    arg.push("/");
    let out = sync_over_pair(&pair, opener, arg.into(), dest.clone(), options()).await?;
    close_both(&pair).await?;
    let want = describe_tree(&src).map_err(io("reading the source tree"))?;
    let got = describe_tree(&dest).map_err(io("reading the copy"))?;
    compare_trees(&want, &got)?;

    let errors = out.receiver.errors.load(Relaxed) + out.sender.errors.load(Relaxed);
    ensure(errors == 0, || {
        format!("the sync counted {errors} per-file errors")
    })?;
    let caps = pair.client.capabilities();
    let (copied, received) = (
        out.receiver.local_copied.load(Relaxed),
        out.receiver.bytes_received.load(Relaxed),
    );
    if caps.shared_filesystem {
        ensure(copied > 0, || {
            "a shared filesystem is claimed, but the receiver copied no file by path".into()
        })?;
        // Issue 18: a connection that offers a shelf for the list has the receiver take the
        // sender's list from it (one list in the process), not decode a copy.
        let shelves = (pair.client.local_shelf(), pair.server.local_shelf());
        ensure(
            match shelves {
                (Some(a), Some(b)) => a.handed_over() && b.handed_over(),
                (None, None) => true,
                _ => false,
            },
            || "the receiver did not take the sender's list from the connection's shelf".into(),
        )
    } else {
        ensure(copied == 0 && received >= file_bytes, || {
            format!(
                "no shared filesystem is claimed, yet the receiver copied {copied} files by path \
                 and received only {received} bytes for {file_bytes} bytes of files"
            )
        })
    }
}

/// Build the suite's fixture under `root` (which must not exist); returns the bytes of its
/// regular files.
pub fn build_fixture(root: &Path) -> std::io::Result<u64> {
    use std::fs;
    let r = |p: &str| root.join(p);
    for d in ["nested/a/b/c", "empty-dir", "many", "links"] {
        fs::create_dir_all(r(d))?;
    }
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("zero.bin".into(), Vec::new()),
        ("small.txt".into(), b"small\n".to_vec()),
        ("nested/a/b/c/deep.bin".into(), pattern(100_003, 11)),
        ("big.bin".into(), pattern((3 << 20) + 12_345, 12)),
        ("with space and ünïcödé.txt".into(), "awkward ✓\n".into()),
        ("run.sh".into(), b"#!/bin/sh\necho hi\n".to_vec()),
        ("private.txt".into(), b"private\n".to_vec()),
        ("hard-a".into(), pattern(5_000, 13)),
    ];
    for i in 0..200u64 {
        files.push((
            format!("many/f{i:03}"),
            pattern(1 + (i as usize * 37) % 4096, 100 + i),
        ));
    }
    let mut bytes = 0;
    for (name, content) in &files {
        fs::write(r(name), content)?;
        bytes += content.len() as u64;
    }
    // Sent once: the receiver links the second name.
    fs::hard_link(r("hard-a"), r("nested/hard-b"))?;
    std::os::unix::fs::symlink("../small.txt", r("links/to-small"))?;
    std::os::unix::fs::symlink("does/not/exist", r("links/dangling"))?;
    fs::set_permissions(r("run.sh"), fs::Permissions::from_mode(0o755))?;
    fs::set_permissions(r("private.txt"), fs::Permissions::from_mode(0o600))?;
    fs::set_permissions(r("empty-dir"), fs::Permissions::from_mode(0o700))?;
    // Times last, deepest first (setting a child's time does not change its directory's).
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries)?;
    for (n, (rel, _)) in entries.iter().rev().enumerate() {
        let nsec = 1 + (n as i64 * 7_919) % 999_999_998;
        set_mtime(&root.join(rel), 1_500_000_000 + n as i64 * 1_001, nsec)?;
    }
    Ok(bytes)
}

/// Set `path`'s modification (and access) time, not following a symlink.
fn set_mtime(path: &Path, sec: i64, nsec: i64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts, ts];
    // SAFETY: a NUL-terminated path and a two-element timespec array, both alive for the call.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every entry under `root` (the root itself as ""), sorted, with its metadata (symlinks not
/// followed).
fn walk(
    root: &Path,
    rel: &Path,
    out: &mut Vec<(PathBuf, std::fs::Metadata)>,
) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(root.join(rel))?;
    let is_dir = md.is_dir();
    out.push((rel.to_path_buf(), md));
    if is_dir {
        let mut names = std::fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<Vec<_>>>()?;
        names.sort();
        for name in names {
            walk(root, &rel.join(name), out)?;
        }
    }
    Ok(())
}

/// What the suite compares of one entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// File type and permission bits.
    mode: u32,
    mtime: (i64, i64),
    /// A file's bytes (hashed would do; the fixture is small).
    content: Option<Vec<u8>>,
    link_target: Option<PathBuf>,
    /// The smallest path of the entry's hard-link group, if it has one.
    link_group: Option<PathBuf>,
}

fn describe_tree(root: &Path) -> std::io::Result<BTreeMap<PathBuf, Entry>> {
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries)?;
    let mut groups: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    for (rel, md) in &entries {
        if md.is_file() && md.nlink() > 1 {
            groups
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
    }
    let mut tree = BTreeMap::new();
    for (rel, md) in entries {
        let full = root.join(&rel);
        let ft = md.file_type();
        let entry = Entry {
            mode: md.mode(),
            mtime: (md.mtime(), md.mtime_nsec()),
            content: if ft.is_file() {
                Some(std::fs::read(&full)?)
            } else {
                None
            },
            link_target: if ft.is_symlink() {
                Some(std::fs::read_link(&full)?)
            } else {
                None
            },
            link_group: groups
                .get(&(md.dev(), md.ino()))
                .filter(|g| g.len() > 1)
                .and_then(|g| g.iter().min().cloned()),
        };
        tree.insert(rel, entry);
    }
    Ok(tree)
}

/// Fail with the differing entries (at most 20 named) unless the trees are the same.
fn compare_trees(
    want: &BTreeMap<PathBuf, Entry>,
    got: &BTreeMap<PathBuf, Entry>,
) -> Result<(), ConformanceError> {
    let mut diffs = Vec::new();
    for (path, w) in want {
        match got.get(path) {
            None => diffs.push(format!("{path:?} missing from the copy")),
            Some(g) if g != w => diffs.push(format!(
                "{path:?}: mode {:o}/{:o}, mtime {:?}/{:?}, content {}, link {:?}/{:?}, hard-link group {:?}/{:?} (source/copy)",
                w.mode, g.mode, w.mtime, g.mtime,
                if w.content == g.content { "same" } else { "differs" },
                w.link_target, g.link_target, w.link_group, g.link_group
            )),
            Some(_) => {}
        }
    }
    diffs.extend(
        got.keys()
            .filter(|p| !want.contains_key(*p))
            .map(|p| format!("{p:?} only in the copy")),
    );
    ensure(diffs.is_empty(), || {
        let shown: Vec<&str> = diffs.iter().take(20).map(String::as_str).collect();
        format!(
            "the copy differs in {} entries:\n  {}",
            diffs.len(),
            shown.join("\n  ")
        )
    })
}
