//! Shared helpers for the integration tests: running arsync and the real rsync,
//! building fixture trees, and snapshotting/comparing trees entry by entry.
#![allow(dead_code)]

pub mod chart;
pub mod corpus;
pub mod cpu;
pub mod harness;
// Issue 19, hostile peers: scripted hostile peers for tests/hostile.rs.
pub mod hostile;
pub mod hostile_merkle;
pub mod linkem;
pub mod netns;
// Issue 17, mptcp:
pub mod serve_paths;
// Issue 17, h3: `arsync serve` for tests/serve.rs and tests/h3.rs.
pub mod serve_daemon;
pub mod sshd;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The arsync binary built by cargo for these tests.
pub const ARSYNC: &str = env!("CARGO_BIN_EXE_arsync");

/// Longest a single arsync/rsync invocation may take before the test fails
/// (guards against hangs, e.g. an engine that opens a FIFO for reading).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Path of the real rsync. Panics loudly if it is missing: these tests compare
/// arsync with rsync and are meaningless without it.
pub fn rsync_path() -> PathBuf {
    for cand in ["/usr/bin/rsync", "/bin/rsync", "/usr/local/bin/rsync"] {
        if Path::new(cand).is_file() {
            return PathBuf::from(cand);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("rsync");
            if cand.is_file() {
                return cand;
            }
        }
    }
    panic!(
        "the real `rsync` was not found (looked in /usr/bin, /bin, /usr/local/bin and $PATH). \
         These tests compare arsync with rsync and cannot run without it: \
         install it with `apt-get install -y rsync`."
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Arsync,
    Rsync,
}

impl Tool {
    pub fn program(self) -> PathBuf {
        match self {
            Tool::Arsync => PathBuf::from(ARSYNC),
            Tool::Rsync => rsync_path(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tool::Arsync => "arsync",
            Tool::Rsync => "rsync",
        }
    }
}

/// The outcome of one finished invocation.
#[derive(Debug)]
pub struct Run {
    pub tool: Tool,
    pub cwd: PathBuf,
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_str().lines().map(str::to_owned).collect()
    }

    /// stdout lines, sorted (arsync may work in parallel; rsync's order is its file-list order).
    pub fn sorted_lines(&self) -> Vec<String> {
        let mut lines = self.stdout_lines();
        lines.sort();
        lines
    }

    /// The first stdout line starting with `prefix`.
    pub fn line_starting(&self, prefix: &str) -> Option<String> {
        self.stdout_lines()
            .into_iter()
            .find(|l| l.starts_with(prefix))
    }

    /// The number on the `--stats` line starting with `prefix` (digits only: `21,424,849`).
    pub fn stat(&self, prefix: &str) -> u64 {
        self.line_starting(prefix)
            .and_then(|l| {
                let digits: String = l.chars().filter(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .unwrap_or_else(|| panic!("no {prefix:?} line\n{}", self.describe()))
    }

    pub fn describe(&self) -> String {
        format!(
            "`{} {}` (in {}) exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.tool.name(),
            self.args.join(" "),
            self.cwd.display(),
            self.status,
            self.stdout_str(),
            self.stderr_str()
        )
    }

    /// Panics (showing the whole invocation) unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected exit code 0 from {}",
            self.describe()
        );
        self
    }
}

fn command(tool: Tool, cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(tool.program());
    cmd.args(args)
        .current_dir(cwd)
        // Same escaping of non-ASCII names by both programs.
        .env("LC_ALL", "C.UTF-8")
        .env_remove("RSYNC_RSH")
        .env_remove("RSYNC_PROTECT_ARGS")
        // Issue 16, per-host memory: each run its own (empty) memory, so no test learns from
        // another; a test of the memory passes its own ARSYNC_CACHE_DIR.
        .env("ARSYNC_CACHE_DIR", fresh_cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Own process group, so a kill reaches any helper processes too.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

/// `arsync`, for a test that starts it directly: with a per-host memory of its own, as
/// [`command`]'s runs have.
pub fn arsync_command() -> Command {
    let mut cmd = Command::new(ARSYNC);
    cmd.env("ARSYNC_CACHE_DIR", fresh_cache_dir());
    cmd
}

/// A directory no other run has used, for one run's per-host memory (made only if the run
/// stores something).
pub fn fresh_cache_dir() -> PathBuf {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("host-memory")
        .join(format!("{}-{n}", std::process::id()))
}

/// SIGKILLs the whole process group led by `child`.
fn kill_group(child: &mut Child) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on the group we created for this child.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.kill();
}

/// A started (not yet finished) invocation whose output is drained in the background.
#[derive(Debug)]
pub struct Running {
    pub tool: Tool,
    pub cwd: PathBuf,
    pub args: Vec<String>,
    pub child: Child,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
}

fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// `rsh` in `dir`: a remote shell that runs the command here (`-l USER`, `-p PORT` and the
/// host ignored).
pub fn fake_rsh(dir: &Path) -> PathBuf {
    let p = dir.join("rsh");
    let script = "#!/bin/sh\nwhile [ \"$1\" = -l ] || [ \"$1\" = -p ]; do shift 2; done\n\
                  shift\nexec sh -c \"$*\"\n";
    fs::write(&p, script).expect("write rsh");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    p
}

/// Starts `tool args...` in `cwd` without waiting.
pub fn spawn(tool: Tool, cwd: &Path, args: &[&str]) -> Running {
    spawn_env(tool, cwd, args, &[])
}

/// Runs arsync with extra environment variables, to completion.
pub fn arsync_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    spawn_env(Tool::Arsync, cwd, args, env).wait(RUN_TIMEOUT)
}

/// Starts `tool args...` in `cwd` with extra environment variables, without waiting.
pub fn spawn_env(tool: Tool, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = command(tool, cwd, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", tool.program().display()));
    let out = drain(child.stdout.take().expect("child stdout is piped"));
    let err = drain(child.stderr.take().expect("child stderr is piped"));
    Running {
        tool,
        cwd: cwd.to_path_buf(),
        args: args.iter().map(|s| s.to_string()).collect(),
        child,
        out: Some(out),
        err: Some(err),
    }
}

impl Running {
    /// Waits for the process, failing the test if it takes longer than `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Run {
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait().expect("waiting for child") {
                Some(status) => break status,
                None if start.elapsed() > timeout => {
                    kill_group(&mut self.child);
                    let _ = self.child.wait();
                    panic!(
                        "`{} {}` (in {}) did not finish within {:?}: hung?",
                        self.tool.name(),
                        self.args.join(" "),
                        self.cwd.display(),
                        timeout
                    );
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        self.finish(status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGKILLs the process (and its process group) and reaps it.
    pub fn kill(mut self) -> Run {
        kill_group(&mut self.child);
        let status = self.child.wait().expect("reaping killed child");
        self.finish(status)
    }

    fn finish(mut self, status: ExitStatus) -> Run {
        let stdout = self
            .out
            .take()
            .expect("stdout drained once")
            .join()
            .expect("stdout reader thread");
        let stderr = self
            .err
            .take()
            .expect("stderr drained once")
            .join()
            .expect("stderr reader thread");
        Run {
            tool: self.tool,
            cwd: self.cwd.clone(),
            args: self.args.clone(),
            status,
            stdout,
            stderr,
        }
    }
}

/// Runs `tool args...` in `cwd` to completion (with a hang guard).
pub fn run(tool: Tool, cwd: &Path, args: &[&str]) -> Run {
    spawn(tool, cwd, args).wait(RUN_TIMEOUT)
}

/// Run `cmd` to its end and require success: its output (the failure shows its stderr).
pub fn output_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn arsync(cwd: &Path, args: &[&str]) -> Run {
    run(Tool::Arsync, cwd, args)
}

pub fn rsync(cwd: &Path, args: &[&str]) -> Run {
    run(Tool::Rsync, cwd, args)
}

/// Asserts two invocations printed the same set of stdout lines (sorted).
pub fn assert_same_lines(what: &str, a: &Run, r: &Run) {
    let al = a.sorted_lines();
    let rl = r.sorted_lines();
    if al == rl {
        return;
    }
    let aset: BTreeSet<&String> = al.iter().collect();
    let rset: BTreeSet<&String> = rl.iter().collect();
    let mut msg = format!("{what}: arsync's stdout lines differ from rsync's\n");
    for l in rset.difference(&aset) {
        msg += &format!("  only rsync : {l:?}\n");
    }
    for l in aset.difference(&rset) {
        msg += &format!("  only arsync: {l:?}\n");
    }
    if aset == rset {
        msg += "  (same distinct lines, different multiplicity)\n";
    }
    msg += &format!(
        "--- arsync ({:?}) ---\n{}\n--- rsync ({:?}) ---\n{}\n--- arsync stderr ---\n{}",
        a.args,
        al.join("\n"),
        r.args,
        rl.join("\n"),
        a.stderr_str()
    );
    panic!("{msg}");
}

// ---------------------------------------------------------------------------
// Tree snapshots
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
}

/// The content of a regular file; Debug shows only length and a digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Content(pub Vec<u8>);

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes, fnv {:016x}>", self.0.len(), fnv64(&self.0))
    }
}

pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Everything rsync -aH preserves about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub kind: Kind,
    /// Full st_mode (type bits + permission + setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// (seconds, nanoseconds)
    pub mtime: (i64, i64),
    /// Regular files only.
    pub content: Option<Content>,
    /// Symlinks only.
    pub target: Option<PathBuf>,
    /// Devices only: (major, minor).
    pub rdev: Option<(u32, u32)>,
    /// Non-directories whose inode is shared with other entries of the same tree:
    /// the smallest relative path of the group (so two trees compare equal iff
    /// their hard-link groups are the same sets of paths).
    pub link_group: Option<PathBuf>,
}

pub type Tree = BTreeMap<PathBuf, EntryInfo>;

fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    let full = if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let md =
        fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
    let is_dir = md.file_type().is_dir();
    let key = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel.to_path_buf()
    };
    out.push((key, md));
    if is_dir {
        let mut names: Vec<_> = fs::read_dir(&full)
            .unwrap_or_else(|e| panic!("readdir {}: {e}", full.display()))
            .map(|e| e.expect("readdir entry").file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &rel.join(name), out);
        }
    }
}

/// Snapshot of every entry under `root` (root itself is "."), without following symlinks.
pub fn snapshot(root: &Path) -> Tree {
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries);

    // inode -> sorted relpaths, for hard-link groups of non-directories.
    let mut by_inode: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    for (rel, md) in &entries {
        if !md.file_type().is_dir() {
            by_inode
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
    }

    let mut tree = Tree::new();
    for (rel, md) in entries {
        let ft = md.file_type();
        let full = if rel == Path::new(".") {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::CharDev
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            panic!("unknown file type at {}", full.display());
        };
        let content = (kind == Kind::File).then(|| {
            Content(fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display())))
        });
        let target = (kind == Kind::Symlink).then(|| {
            fs::read_link(&full).unwrap_or_else(|e| panic!("readlink {}: {e}", full.display()))
        });
        let rdev = matches!(kind, Kind::CharDev | Kind::BlockDev).then(|| {
            let r = md.rdev() as libc::dev_t;
            (libc::major(r), libc::minor(r))
        });
        let link_group = if kind == Kind::Dir {
            None
        } else {
            let group = &by_inode[&(md.dev(), md.ino())];
            (group.len() > 1).then(|| group.iter().min().expect("non-empty group").clone())
        };
        tree.insert(
            rel,
            EntryInfo {
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                mtime: (md.mtime(), md.mtime_nsec()),
                content,
                target,
                rdev,
                link_group,
            },
        );
    }
    tree
}

/// The same tree without its root entry "." (for when the root directory itself
/// was not transferred, e.g. a destination directory the tool merely created).
pub fn without_root(mut tree: Tree) -> Tree {
    tree.remove(Path::new("."));
    tree
}

/// Keeps only the entries under `prefix` (re-rooted so `prefix` becomes ".").
pub fn subtree(tree: &Tree, prefix: &str) -> Tree {
    let p = Path::new(prefix);
    tree.iter()
        .filter_map(|(k, v)| {
            let rel = k.strip_prefix(p).ok()?;
            let key = if rel.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                rel.to_path_buf()
            };
            Some((key, v.clone()))
        })
        .collect()
}

fn fmt_mode(m: u32) -> String {
    format!("{m:o}")
}

fn entry_diffs(a: &EntryInfo, b: &EntryInfo) -> Vec<String> {
    let mut d = Vec::new();
    if a.kind != b.kind {
        d.push(format!("kind {:?} vs {:?}", a.kind, b.kind));
    }
    if a.mode != b.mode {
        d.push(format!("mode {} vs {}", fmt_mode(a.mode), fmt_mode(b.mode)));
    }
    if a.uid != b.uid || a.gid != b.gid {
        d.push(format!("owner {}:{} vs {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    if a.mtime != b.mtime {
        d.push(format!(
            "mtime {}.{:09} vs {}.{:09}",
            a.mtime.0, a.mtime.1, b.mtime.0, b.mtime.1
        ));
    }
    if a.content != b.content {
        d.push(format!("content {:?} vs {:?}", a.content, b.content));
    }
    if a.target != b.target {
        d.push(format!("symlink target {:?} vs {:?}", a.target, b.target));
    }
    if a.rdev != b.rdev {
        d.push(format!("rdev {:?} vs {:?}", a.rdev, b.rdev));
    }
    if a.link_group != b.link_group {
        d.push(format!(
            "hard-link group {:?} vs {:?}",
            a.link_group, b.link_group
        ));
    }
    d
}

/// Lists differences between two snapshots (empty = equal).
pub fn tree_diff(a_label: &str, a: &Tree, b_label: &str, b: &Tree) -> Vec<String> {
    let keys: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(x), None) => out.push(format!("{k:?}: only in {a_label} ({:?})", x.kind)),
            (None, Some(y)) => out.push(format!("{k:?}: only in {b_label} ({:?})", y.kind)),
            (Some(x), Some(y)) => {
                let d = entry_diffs(x, y);
                if !d.is_empty() {
                    out.push(format!("{k:?}: {} ({a_label} vs {b_label})", d.join("; ")));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

/// Panics with a readable, per-entry diff unless the two snapshots are equal.
pub fn assert_same_tree(what: &str, a_label: &str, a: &Tree, b_label: &str, b: &Tree) {
    let diffs = tree_diff(a_label, a, b_label, b);
    if diffs.is_empty() {
        return;
    }
    let shown: Vec<&String> = diffs.iter().take(60).collect();
    let more = diffs.len().saturating_sub(shown.len());
    let mut msg = format!(
        "{what}: {} differing entr{} between {a_label} and {b_label}:\n",
        diffs.len(),
        if diffs.len() == 1 { "y" } else { "ies" }
    );
    for d in shown {
        msg += "  ";
        msg += d;
        msg += "\n";
    }
    if more > 0 {
        msg += &format!("  ... and {more} more\n");
    }
    panic!("{msg}");
}

/// (inode, ctime) of every entry: changes if an entry is replaced, written,
/// chmod'ed, chown'ed or has its times set. Used to prove "untouched".
pub fn identity(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries);
    entries
        .into_iter()
        .map(|(rel, md)| (rel, (md.ino(), md.ctime(), md.ctime_nsec())))
        .collect()
}

pub fn assert_same_identity(
    what: &str,
    before: &BTreeMap<PathBuf, (u64, i64, i64)>,
    after: &BTreeMap<PathBuf, (u64, i64, i64)>,
) {
    if before == after {
        return;
    }
    let keys: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    let mut msg = format!("{what}: entries were replaced or modified (inode/ctime changed):\n");
    for k in keys {
        let (b, a) = (before.get(k), after.get(k));
        if b != a {
            msg += &format!("  {k:?}: before {b:?} after {a:?}\n");
        }
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------
// Fixture building
// ---------------------------------------------------------------------------

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn check(rc: libc::c_int, what: &str, p: &Path) {
    if rc != 0 {
        panic!(
            "{what} {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), different per seed.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn mkdir(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
}

/// Writes a file, creating parent directories.
pub fn write(p: &Path, content: &[u8]) {
    if let Some(parent) = p.parent() {
        mkdir(parent);
    }
    fs::write(p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

pub fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {} -> {target}: {e}", link.display()));
}

pub fn hard_link(existing: &Path, new: &Path) {
    fs::hard_link(existing, new)
        .unwrap_or_else(|e| panic!("link {} => {}: {e}", new.display(), existing.display()));
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

pub fn lchown(p: &Path, uid: u32, gid: u32) {
    let c = cpath(p);
    // SAFETY: valid NUL-terminated path.
    check(unsafe { libc::lchown(c.as_ptr(), uid, gid) }, "lchown", p);
}

pub fn mkfifo(p: &Path, mode: u32) {
    let c = cpath(p);
    // SAFETY: valid NUL-terminated path.
    check(
        unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) },
        "mkfifo",
        p,
    );
}

pub fn mknod_dev(p: &Path, char_dev: bool, major: u32, minor: u32, perm: u32) {
    let c = cpath(p);
    let kind = if char_dev {
        libc::S_IFCHR
    } else {
        libc::S_IFBLK
    };
    let dev = libc::makedev(major, minor);
    // SAFETY: valid NUL-terminated path.
    check(
        unsafe { libc::mknod(c.as_ptr(), kind | perm as libc::mode_t, dev) },
        "mknod",
        p,
    );
}

/// Creates a unix socket file (the file stays after the listener is dropped).
pub fn make_socket(p: &Path) {
    let l = std::os::unix::net::UnixListener::bind(p)
        .unwrap_or_else(|e| panic!("bind unix socket {}: {e}", p.display()));
    drop(l);
}

/// Sets atime and mtime (not following symlinks).
pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let c = cpath(p);
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts, ts];
    // SAFETY: valid path and a two-element timespec array.
    check(
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        },
        "utimensat",
        p,
    );
}

/// Gives every entry under `root` (root included) a deterministic mtime with a
/// non-zero nanosecond part, derived from its relative path and `salt`: two trees
/// with the same relative paths and salt get the same times. Call after all
/// other changes.
pub fn stamp_tree(root: &Path, salt: u64) {
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries);
    for (rel, _) in entries {
        let mut key = salt.to_le_bytes().to_vec();
        key.extend_from_slice(rel.as_os_str().as_bytes());
        let h = fnv64(&key);
        let sec = 1_400_000_000 + (h % 200_000_000) as i64;
        let nsec = 1 + ((h >> 32) % 999_999_998) as i64;
        let full = if rel == Path::new(".") {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        set_mtime(&full, sec, nsec);
    }
}

/// Unusual names the rich fixture contains (relative to its root).
pub const NAME_SPACE: &str = "with space.txt";
pub const NAME_UNICODE: &str = "ünïcödé 名前.txt";
pub const NAME_DASH: &str = "-x";
pub const NAME_NEWLINE: &str = "new\nline";

/// Builds the rich fixture under `root` (which must not exist yet):
/// every file type, awkward names, special modes, foreign owners, hard links
/// across directories and nanosecond mtimes.
pub fn build_rich_fixture(root: &Path) {
    mkdir(root);
    let r = |p: &str| root.join(p);

    // Directories, empty ones included.
    mkdir(&r("empty-dir"));
    mkdir(&r("nested/a/b/c"));
    mkdir(&r("nested/empty-leaf"));
    mkdir(&r("sticky"));
    mkdir(&r("setgid-dir"));

    // Regular files: empty, small, above 1 MiB.
    write(&r("zero.bin"), b"");
    write(&r("nested/empty-file"), b"");
    write(&r("big.bin"), &pseudo_random(1024 * 1024 + 300_123, 1));
    write(&r("medium.bin"), &pseudo_random(70_001, 2));
    write(&r("nested/a/b/c/deep.txt"), b"deep down\n");
    write(&r("nested/a/sibling.txt"), b"sibling\n");
    write(&r("sticky/inside.txt"), b"in sticky dir\n");
    write(&r("setgid-dir/f"), b"in setgid dir\n");

    // Awkward names.
    write(&r(NAME_SPACE), b"space\n");
    write(&r(NAME_UNICODE), "unicode ✓\n".as_bytes());
    write(&r(NAME_DASH), b"leading dash\n");
    write(&r(NAME_NEWLINE), b"newline in name\n");

    // Symlinks: relative, absolute, dangling, to a directory (not followed).
    mkdir(&r("links"));
    symlink("../nested/a/sibling.txt", &r("links/rel"));
    symlink("/etc/hostname", &r("links/abs"));
    symlink("does/not/exist", &r("links/dangling"));
    symlink("../nested", &r("links/dir-link"));
    symlink(NAME_SPACE, &r("link to space"));

    // Hard links: a three-link group across directories and a pair in one dir.
    write(&r("hard/one.txt"), b"hard linked content\n");
    hard_link(&r("hard/one.txt"), &r("nested/a/hard-two.txt"));
    hard_link(&r("hard/one.txt"), &r("hard-three.txt"));
    write(&r("hard/pair-a"), &pseudo_random(5000, 3));
    hard_link(&r("hard/pair-a"), &r("hard/pair-b"));

    // Specials and devices.
    mkfifo(&r("fifo"), 0o640);
    mknod_dev(&r("chardev"), true, 1, 3, 0o600);
    mknod_dev(&r("blockdev"), false, 7, 200, 0o660);
    make_socket(&r("socket"));

    // Modes.
    write(&r("mode-0600.txt"), b"private\n");
    chmod(&r("mode-0600.txt"), 0o600);
    write(&r("mode-0755.sh"), b"#!/bin/sh\necho hi\n");
    chmod(&r("mode-0755.sh"), 0o755);
    write(&r("readonly.txt"), b"read only\n");
    chmod(&r("readonly.txt"), 0o444);

    // Foreign owners (as root). chown clears setuid, so chmod after it.
    write(&r("owned.txt"), b"owned by 1234:5678\n");
    lchown(&r("owned.txt"), 1234, 5678);
    write(&r("setuid"), b"#!/bin/sh\n");
    lchown(&r("setuid"), 1234, 5678);
    chmod(&r("setuid"), 0o4755);
    mkdir(&r("owned-dir"));
    write(&r("owned-dir/group-only"), b"gid only\n");
    lchown(&r("owned-dir/group-only"), 0, 5678);
    lchown(&r("owned-dir"), 1234, 5678);
    symlink("../owned.txt", &r("owned-dir/owned-link"));
    lchown(&r("owned-dir/owned-link"), 4321, 8765);

    chmod(&r("sticky"), 0o1777);
    chmod(&r("setgid-dir"), 0o2755);
    chmod(&r("empty-dir"), 0o700);
    chmod(root, 0o755);

    stamp_tree(root, 0);
}

/// Asserts that a snapshot of the rich fixture really contains what the tests
/// rely on (so comparisons of copies of it are meaningful).
pub fn assert_rich_fixture(t: &Tree) {
    let kinds: BTreeSet<Kind> = t.values().map(|e| e.kind).collect();
    for k in [
        Kind::File,
        Kind::Dir,
        Kind::Symlink,
        Kind::Fifo,
        Kind::CharDev,
        Kind::BlockDev,
        Kind::Socket,
    ] {
        assert!(kinds.contains(&k), "fixture lacks a {k:?}");
    }
    let groups: BTreeSet<&PathBuf> = t.values().filter_map(|e| e.link_group.as_ref()).collect();
    assert_eq!(groups.len(), 2, "fixture should have two hard-link groups");
    assert!(
        t.values().all(|e| e.mtime.1 != 0),
        "every mtime has nanoseconds"
    );
    let get = |p: &str| {
        t.get(Path::new(p))
            .unwrap_or_else(|| panic!("fixture lacks {p:?}"))
    };
    assert_eq!(get("setuid").mode & 0o7777, 0o4755);
    assert_eq!(get("sticky").mode & 0o7777, 0o1777);
    assert_eq!((get("owned.txt").uid, get("owned.txt").gid), (1234, 5678));
    assert!(get("big.bin").content.as_ref().expect("file").0.len() > 1024 * 1024);
    for n in [NAME_SPACE, NAME_UNICODE, NAME_DASH, NAME_NEWLINE] {
        get(n);
    }
}

/// A test's scratch area. Tools run with their cwd here, using relative paths, so
/// that arsync's and rsync's messages (which echo the paths) are comparable.
#[derive(Debug)]
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("arsync-it-")
            .tempdir()
            .expect("create temp dir");
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The working directory of `tool` ("a" for arsync, "r" for rsync), created
    /// on first use. The source lives beside them, so both see it as "../src".
    pub fn side(&self, tool: Tool) -> PathBuf {
        let d = self.join(match tool {
            Tool::Arsync => "a",
            Tool::Rsync => "r",
        });
        mkdir(&d);
        d
    }

    /// Runs the same arguments with arsync (in side "a") and rsync (in side "r").
    pub fn both(&self, args: &[&str]) -> (Run, Run) {
        let a = run(Tool::Arsync, &self.side(Tool::Arsync), args);
        let r = run(Tool::Rsync, &self.side(Tool::Rsync), args);
        (a, r)
    }

    /// Like `both`, but both runs must exit 0.
    pub fn both_ok(&self, args: &[&str]) -> (Run, Run) {
        let (a, r) = self.both(args);
        r.assert_ok();
        a.assert_ok();
        (a, r)
    }

    /// Snapshots `rel` inside each side: (arsync's, rsync's).
    pub fn snap_both(&self, rel: &str) -> (Tree, Tree) {
        (
            snapshot(&self.side(Tool::Arsync).join(rel)),
            snapshot(&self.side(Tool::Rsync).join(rel)),
        )
    }

    /// Asserts that `rel` is the same tree on both sides.
    pub fn assert_sides_equal(&self, what: &str, rel: &str, include_root: bool) {
        let (mut a, mut r) = self.snap_both(rel);
        if !include_root {
            a = without_root(a);
            r = without_root(r);
        }
        assert_same_tree(what, "arsync", &a, "rsync", &r);
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

pub fn os(p: &Path) -> &OsStr {
    p.as_os_str()
}

// Issue 16, overlay: an sshd in a scratch directory, and a network namespace of a test's own
// (tests/ssh.rs, tests/overlay.rs).

/// A scratch directory, and an sshd on 127.0.0.1 keeping its files in its `keys/`.
pub fn scratch_with_sshd() -> (Scratch, sshd::Sshd) {
    let s = Scratch::new();
    let keys = s.join("keys");
    mkdir(&keys);
    let sshd = sshd::Sshd::start(&keys);
    (s, sshd)
}

// Issue 16, params:
/// `levels` levels of `fanout` directories below `root`, a small file in each of the deepest.
pub fn deep_tree(root: &Path, levels: u32, fanout: u32) {
    let mut dirs = vec![root.to_path_buf()];
    for _ in 0..levels {
        dirs = dirs
            .iter()
            .flat_map(|d| (0..fanout).map(move |i| d.join(format!("d{i}"))))
            .collect();
    }
    for (i, d) in dirs.iter().enumerate() {
        write(&d.join("f"), format!("file {i}").as_bytes());
    }
}

/// The stderr of an `arsync serve` just started: its lines collected in the background, and
/// whether it became ready (its TCP listener, bound after the UDP ones, said "listening on")
/// within 20 s. For `tests/serve.rs`, the two-path emulator and the bench harness.
pub fn follow_serve_log(
    stderr: std::process::ChildStderr,
) -> (std::sync::Arc<std::sync::Mutex<Vec<String>>>, bool) {
    follow_serve_log_until(stderr, |line| line.contains("(TCP"))
}

/// [`follow_serve_log`], ready at the first "listening on" line `ready` accepts (a daemon
/// with no TCP listener says only its UDP one).
pub fn follow_serve_log_until(
    stderr: std::process::ChildStderr,
    ready: fn(&str) -> bool,
) -> (std::sync::Arc<std::sync::Mutex<Vec<String>>>, bool) {
    use std::io::BufRead;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let ready = line.contains("listening on") && ready(&line);
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
            if ready {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(20)).is_ok();
    (log, ready)
}
