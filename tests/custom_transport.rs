//! The custom-transport example, run as a test: a user-written transport (a real Unix socket)
//! registered next to the built-in ones carries a whole sync, data frames and all.

#[path = "../examples/unix_socket_transport.rs"]
mod example;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering::Relaxed;

use arsync::core::engine::SyncOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_transport_carries_a_full_sync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).expect("mkdir");
    fs::write(src.join("a"), b"alpha").expect("write");
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("d/big"), &big).expect("write");
    let dest = tmp.path().join("dest");
    let mut arg = src.clone().into_os_string();
    arg.push("/");
    let stats = example::sync_over_unix_socket(
        arg.into(),
        dest.clone(),
        &tmp.path().join("t.sock"),
        SyncOptions::archive(),
    )
    .await
    .expect("sync over the unix socket");
    assert_eq!(fs::read(dest.join("a")).expect("a"), b"alpha");
    assert!(fs::read(dest.join("d/big")).expect("big") == big);
    let (s, d) = (
        fs::metadata(src.join("d/big")).expect("src meta"),
        fs::metadata(dest.join("d/big")).expect("dest meta"),
    );
    assert_eq!((s.mtime(), s.mtime_nsec()), (d.mtime(), d.mtime_nsec()));
    assert_eq!(stats.transferred.load(Relaxed), 2);
    // The data crossed the socket (no shared-filesystem shortcut for a plugin transport).
    assert!(stats.bytes_received.load(Relaxed) > 2_500_005);
    assert_eq!(stats.local_copied.load(Relaxed), 0);
}

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

/// The example helper program's directory (`arsync-transport-unix` there).
fn helper_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/transport_helper")
}

/// `arsync-transport-unix --listen SOCKET`, killed when dropped.
struct HelperListener(Child);

impl HelperListener {
    fn start(socket: &Path) -> HelperListener {
        let child = Command::new(helper_dir().join("arsync-transport-unix"))
            .arg("--listen")
            .arg(socket)
            .spawn()
            .expect("the example helper runs (it needs python3)");
        let t = Instant::now();
        while !socket.exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        HelperListener(child)
    }
}

impl Drop for HelperListener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--transport=NAME` with nothing built in of that name runs `arsync-transport-NAME` from
/// PATH (issue 17): the example helper, over a real Unix socket to a listener that runs the
/// remote command, carries a push and a pull with arsync's protocol and a push with rsync's,
/// each a faithful copy; a host the helper cannot reach fails with its exit status and message,
/// and a name with no helper is refused as before.
#[test]
fn a_helper_program_on_path_carries_syncs() {
    let s = Scratch::new();
    build_rich_fixture(&s.join("src"));
    let _listener = HelperListener::start(&s.join("box.sock"));
    let path = format!(
        "{}:{}",
        helper_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = s.path().display().to_string();
    let env = [("PATH", path.as_str()), ("ARSYNC_UNIX_DIR", dir.as_str())];
    let remote = |p: &str| format!("box:{}/{p}/", s.path().display());
    let run = |args: &[&str]| {
        let r = arsync_env(s.path(), args, &env);
        assert!(r.status.success(), "{}", r.describe());
        r
    };
    let pushed = run(&[
        "-aH",
        "--explain",
        "--transport=unix",
        &format!("--rsync-path={ARSYNC}"),
        "src/",
        &remote("pushed"),
    ]);
    assert!(
        pushed
            .stderr_str()
            .contains("explain: decision: unix (asked for)"),
        "{}",
        pushed.describe()
    );
    run(&[
        "-aH",
        "--transport=unix",
        &format!("--rsync-path={ARSYNC}"),
        &remote("pushed"),
        "pulled/",
    ]);
    // rsync's protocol through the same helper: it is a remote shell like any other.
    run(&[
        "-aH",
        "--transport=unix",
        "--protocol=rsync",
        &format!("--rsync-path={}", rsync_path().display()),
        "src/",
        &remote("by-rsync"),
    ]);
    let want = snapshot(&s.join("src"));
    for copy in ["pushed", "pulled", "by-rsync"] {
        assert_same_tree(copy, copy, &snapshot(&s.join(copy)), "src", &want);
    }
    let missing = arsync_env(
        s.path(),
        &["-a", "--transport=unix", "src/", "nowhere:/x/"],
        &env,
    );
    assert_eq!(missing.code(), Some(255), "{}", missing.describe());
    assert!(
        missing.stderr_str().contains("cannot connect to /")
            && missing.stderr_str().contains("nowhere.sock"),
        "{}",
        missing.describe()
    );
    let unknown = arsync_env(
        s.path(),
        &["-a", "--transport=nosuch", "src/", "box:/x/"],
        &env,
    );
    assert_eq!(unknown.code(), Some(1), "{}", unknown.describe());
}
