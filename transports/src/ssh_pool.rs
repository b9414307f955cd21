//! `ssh-pool`: N SSH connections to one host joined into one arsync session — each its own TCP
//! connection (its own congestion control and SSH channel window) and its own server process.
//!
//! Client side ([`SshPool`], [`PoolConnection`]): the first connection runs the usual
//! `arsync --server …` with `--lane-session=ID` added (ID: 128 random bits); every further
//! stream the engine opens is a new connection through the backend transport (the system `ssh`
//! or the native one) running `arsync --server --lane=ID`. The engine uses streams beyond the
//! first as data lanes (`arsync_core::engine::lanes`).
//!
//! Server side ([`LaneServer`], [`run_lane_relay`]): the session's server listens on a Unix
//! socket named by the ID in a directory only its user can enter; each `--lane=ID` process
//! connects to it, proves the ID, and relays its stdin/stdout to it. So the lanes reach the one
//! process that holds the session, while the bytes still travel on separate TCP connections.
//!
//! This module does not authenticate (the backend does, once per connection; the native
//! backend reuses what worked) and does not decide the number of streams (`--streams`, later
//! the negotiator).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arsync_core::proto::merkle::MAX_LANES;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, StreamPair, TransportError,
    TransportFactory,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::pipe::PipeConnection;

/// How many connections a pool opens when nothing says otherwise.
pub const DEFAULT_STREAMS: u32 = 4;

/// How long a lane process waits for its session's server to listen.
const RELAY_CONNECT_WAIT: Duration = Duration::from_secs(20);

/// The `ssh-pool` transport over a single-connection backend (`ssh`, system or native).
#[derive(Debug, Clone)]
pub struct SshPool {
    backend: Arc<dyn TransportFactory>,
    streams: u32,
}

impl SshPool {
    /// A pool of `streams` connections (at least 1) made with `backend`.
    pub fn new(backend: Arc<dyn TransportFactory>, streams: u32) -> Self {
        SshPool {
            backend,
            streams: streams.clamp(1, u32::from(MAX_LANES) + 1),
        }
    }
}

/// A fresh session ID: 32 hex digits from the kernel's random source.
fn session_id() -> Result<String, TransportError> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut b))
        .map_err(TransportError::Io)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Whether `id` looks like a session ID (it names a socket file, so nothing else may pass).
pub fn valid_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The remote command split at its `--server` word: (the program words, the rest).
fn split_server(cmd: &[String]) -> Option<(&[String], &[String])> {
    let at = cmd.iter().position(|w| w == "--server")?;
    Some((&cmd[..at], &cmd[at + 1..]))
}

/// The session's server command (`--lane-session=ID` added) and the lane command.
pub fn pool_commands(cmd: &[String], id: &str) -> Option<(Vec<String>, Vec<String>)> {
    let (program, rest) = split_server(cmd)?;
    let mut main = program.to_vec();
    main.push("--server".into());
    main.push(format!("--lane-session={id}"));
    main.extend(rest.iter().cloned());
    let mut lane = program.to_vec();
    lane.push("--server".into());
    lane.push(format!("--lane={id}"));
    Some((main, lane))
}

impl TransportFactory for SshPool {
    fn name(&self) -> &str {
        "ssh-pool"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_encrypted(true)
            .with_max_streams(self.streams)
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let id = session_id()?;
            let (main_cmd, lane_cmd) =
                pool_commands(&endpoint.remote_command, &id).ok_or_else(|| {
                    TransportError::Unsupported {
                        transport: "ssh-pool".into(),
                        what: "a remote command without --server",
                    }
                })?;
            let mut main_ep = endpoint.clone();
            main_ep.remote_command = main_cmd;
            let main = self.backend.connect(&main_ep, auth).await?;
            let mut lane_ep = endpoint.clone();
            lane_ep.remote_command = lane_cmd;
            Ok(Box::new(PoolConnection {
                main,
                first_taken: AtomicBool::new(false),
                lanes: tokio::sync::Mutex::new(Vec::new()),
                backend: self.backend.clone(),
                lane_endpoint: lane_ep,
                auth: auth.clone(),
                streams: self.streams,
            }) as Box<dyn Connection>)
        })
    }
}

/// One pooled session: the main connection and the lane connections opened so far.
#[derive(Debug)]
pub struct PoolConnection {
    main: Box<dyn Connection>,
    first_taken: AtomicBool,
    lanes: tokio::sync::Mutex<Vec<Box<dyn Connection>>>,
    backend: Arc<dyn TransportFactory>,
    lane_endpoint: Endpoint,
    auth: AuthConfig,
    streams: u32,
}

impl PoolConnection {
    /// How many connections are open (the main one and the lanes).
    pub async fn connections(&self) -> usize {
        1 + self.lanes.lock().await.len()
    }
}

impl Connection for PoolConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            if !self.first_taken.swap(true, Relaxed) {
                return self.main.open_stream().await;
            }
            let conn = self
                .backend
                .connect(&self.lane_endpoint, &self.auth)
                .await?;
            let pair = conn.open_stream().await?;
            self.lanes.lock().await.push(conn);
            Ok(pair)
        })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            Err(TransportError::Unsupported {
                transport: "ssh-pool".into(),
                what: "accepting streams on the client side",
            })
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_encrypted(true)
            .with_max_streams(self.streams)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let result = self.main.close().await;
            // A lane that died mid-run already cost only its own files; how its process
            // ended does not change the outcome.
            for lane in self.lanes.lock().await.drain(..) {
                let _ = tokio::time::timeout(Duration::from_secs(5), lane.close()).await;
            }
            result
        })
    }
}

/// Where the lane socket of session `id` lives: `$XDG_RUNTIME_DIR/arsync/` or
/// `/tmp/arsync-UID/`, a directory of this user's, mode 0700.
pub fn lane_socket_path(id: &str) -> Result<PathBuf, TransportError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if !valid_session_id(id) {
        return Err(TransportError::Connect {
            endpoint: "lane session".into(),
            reason: format!("invalid session id {id:?}"),
        });
    }
    let uid = rustix_uid();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("arsync"),
        None => PathBuf::from(format!("/tmp/arsync-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(TransportError::Io(e)),
    }
    // Never trust a directory someone else made (or a symlink) in a shared /tmp.
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(TransportError::Connect {
            endpoint: dir.display().to_string(),
            reason: "lane socket directory is not a private directory of this user".into(),
        });
    }
    Ok(dir.join(format!("lane-{id}.sock")))
}

fn rustix_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The server side of a pooled session: stdin/stdout first, then each lane that connects to the
/// session's socket and proves the ID.
#[derive(Debug)]
pub struct LaneServer {
    first: PipeConnection,
    listener: UnixListener,
    id: String,
    path: PathBuf,
}

impl LaneServer {
    /// Listen for the lanes of session `id`; the main stream is this process's stdin/stdout.
    pub fn bind(id: &str) -> Result<LaneServer, TransportError> {
        let path = lane_socket_path(id)?;
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(LaneServer {
            first: PipeConnection::stdio(),
            listener,
            id: id.to_owned(),
            path,
        })
    }
}

impl Drop for LaneServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn split_unix(s: UnixStream) -> StreamPair {
    let (r, w) = s.into_split();
    StreamPair {
        send: Box::new(w),
        recv: Box::new(r),
    }
}

impl Connection for LaneServer {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            Err(TransportError::Unsupported {
                transport: "ssh-pool".into(),
                what: "opening streams on the server side",
            })
        })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            if let Ok(pair) = self.first.accept_stream().await {
                return Ok(pair);
            }
            loop {
                let (mut s, _) = self.listener.accept().await?;
                // The ID, then a newline: a process that does not know it is dropped.
                let mut proof = vec![0u8; self.id.len() + 1];
                let ok = tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut proof))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if ok
                    && proof[..self.id.len()] == *self.id.as_bytes()
                    && proof[self.id.len()] == b'\n'
                {
                    return Ok(split_unix(s));
                }
            }
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
            .with_encrypted(true)
            .with_max_streams(u32::from(MAX_LANES) + 1)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let _ = std::fs::remove_file(&self.path);
            self.first.close().await
        })
    }
}

/// `arsync --server --lane=ID`: connect to session `id`'s socket (waiting for its server to
/// listen), prove the ID, and copy stdin to it and it to stdout until both directions end.
pub async fn run_lane_relay(id: &str) -> Result<(), TransportError> {
    let path = lane_socket_path(id)?;
    let mut stream = connect_waiting(&path).await?;
    stream.write_all(format!("{id}\n").as_bytes()).await?;
    let (mut from_sock, mut to_sock) = stream.into_split();
    let up = async {
        let mut stdin = tokio::io::stdin();
        let r = tokio::io::copy(&mut stdin, &mut to_sock).await;
        let _ = to_sock.shutdown().await;
        r
    };
    let down = async {
        let mut stdout = tokio::io::stdout();
        let r = tokio::io::copy(&mut from_sock, &mut stdout).await;
        let _ = stdout.flush().await;
        r
    };
    let (up, down) = tokio::join!(up, down);
    down?;
    up?;
    Ok(())
}

async fn connect_waiting(path: &Path) -> Result<UnixStream, TransportError> {
    let deadline = tokio::time::Instant::now() + RELAY_CONNECT_WAIT;
    loop {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(TransportError::Connect {
                    endpoint: path.display().to_string(),
                    reason: format!("no arsync session listening: {e}"),
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn commands_keep_the_program_and_add_the_session() {
        let id = "0123456789abcdef0123456789abcdef";
        let (main, lane) = pool_commands(&words("sudo arsync --server --sender -a . /src"), id)
            .expect("has --server");
        assert_eq!(
            main,
            words(&format!(
                "sudo arsync --server --lane-session={id} --sender -a . /src"
            ))
        );
        assert_eq!(lane, words(&format!("sudo arsync --server --lane={id}")));
        assert!(pool_commands(&words("rsync -a"), id).is_none());
    }

    #[test]
    fn session_ids_are_random_hex() {
        let a = session_id().expect("urandom");
        let b = session_id().expect("urandom");
        assert!(valid_session_id(&a) && valid_session_id(&b) && a != b);
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789abcdef0123456789abcdeg",
            "abc",
        ] {
            assert!(!valid_session_id(bad), "{bad}");
            assert!(lane_socket_path(bad).is_err());
        }
    }

    #[tokio::test]
    async fn a_lane_must_prove_the_session_id() {
        let id = session_id().expect("urandom");
        let path = lane_socket_path(&id).expect("socket dir");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let server = LaneServer {
            first: PipeConnection::new(tokio::io::empty(), tokio::io::sink()),
            listener,
            id: id.clone(),
            path: path.clone(),
        };
        // The first stream is the main one.
        server.accept_stream().await.expect("main stream");
        let wrong = {
            let mut s = UnixStream::connect(&path).await.expect("connect");
            s.write_all(b"ffffffffffffffffffffffffffffffff\n")
                .await
                .expect("write");
            s
        };
        let mut right = UnixStream::connect(&path).await.expect("connect");
        right
            .write_all(format!("{id}\nhello").as_bytes())
            .await
            .expect("write");
        let mut pair = server.accept_stream().await.expect("lane");
        let mut got = [0u8; 5];
        pair.recv.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
        drop(wrong);
        drop(server);
        assert!(!path.exists(), "socket removed when the server ends");
    }
}
