//! `ssh-pool`: N SSH connections to one host joined into one arsync session — each its own TCP
//! connection (its own congestion control and SSH channel window) and its own server process.
//!
//! Client side ([`SshPool`], [`PoolConnection`]): the first connection runs the usual
//! `arsync --server …` with `--lane-session=ID` added (ID: 128 random bits); every further
//! stream the engine opens is a new connection through the backend transport (the system `ssh`
//! or the native one) running `arsync --server --lane=ID`. The engine uses streams beyond the
//! first as data lanes (`arsync_core::engine::lanes`).
//!
//! Server side ([`LaneServer`], [`run_lane_handoff`]): the session's server listens on a Unix
//! socket named by the ID in a directory only its user can enter; each `--lane=ID` process
//! connects to it and hands over its stdin and stdout (`SCM_RIGHTS`) with the ID, then waits
//! until the server is done with them. So the lanes reach the one process that holds the
//! session with no copy in between, while the bytes still travel on separate TCP connections.
//!
//! This module does not authenticate (the backend does, once per connection; the native
//! backend reuses what worked) and does not decide the number of streams (`--streams`, later
//! the negotiator).

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arsync_core::proto::merkle::MAX_LANES;
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, StreamPair, TransportError,
    TransportFactory,
};
use tokio::net::{UnixListener, UnixStream};

use crate::pipe::{EndOnShutdown, PipeConnection};

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
pub fn new_session_id() -> Result<String, TransportError> {
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
        pool_capabilities(self.streams)
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let id = new_session_id()?;
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
            // The first login worked: start the others now, so they are up by the time the
            // session (after its hellos) asks for its lanes. Each waits on the far side until
            // the session's server listens.
            let prepared = (1..self.streams)
                .map(|_| {
                    let (backend, ep, auth) = (self.backend.clone(), lane_ep.clone(), auth.clone());
                    tokio::spawn(async move { backend.connect(&ep, &auth).await })
                })
                .collect();
            Ok(Box::new(PoolConnection {
                main,
                first_taken: AtomicBool::new(false),
                prepared: tokio::sync::Mutex::new(prepared),
                lanes: tokio::sync::Mutex::new(Vec::new()),
                streams: self.streams,
            }) as Box<dyn Connection>)
        })
    }
}

/// What a pool of `streams` connections can do: every stream its own SSH connection (encrypted)
/// over its own TCP connection, so with more than one stream each has its own congestion
/// controller.
fn pool_capabilities(streams: u32) -> Capabilities {
    Capabilities::single_stream()
        .with_encrypted(true)
        .with_max_streams(streams)
        .with_independent_congestion(streams > 1)
}

/// The native SSH backend for a pool: one [`crate::ssh_native::NativeLogin`] shared by every
/// connection, so the first authenticates (asking for a passphrase if it must) and the others
/// reuse what worked without asking again. Each connection is still its own TCP connection.
#[cfg(feature = "ssh-native")]
#[derive(Debug)]
pub struct SharedNativeLogin {
    rsh: String,
    login: tokio::sync::OnceCell<crate::ssh_native::NativeLogin>,
}

#[cfg(feature = "ssh-native")]
impl SharedNativeLogin {
    /// The native backend for the `-e`/`--rsh` string `rsh`.
    pub fn with_rsh(rsh: &str) -> Result<Self, TransportError> {
        crate::ssh_native::NativeSsh::with_rsh(rsh)?;
        Ok(SharedNativeLogin {
            rsh: rsh.to_owned(),
            login: tokio::sync::OnceCell::new(),
        })
    }
}

#[cfg(feature = "ssh-native")]
impl TransportFactory for SharedNativeLogin {
    fn name(&self) -> &str {
        "ssh-native"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream().with_encrypted(true)
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let login = self
                .login
                .get_or_try_init(|| async {
                    crate::ssh_native::NativeLogin::new(&self.rsh, endpoint)
                })
                .await?;
            let command: Vec<String> = endpoint
                .remote_command
                .iter()
                .map(|w| crate::ssh::shell_quote(w))
                .collect();
            // A failed login exits 255, as the ssh program's does (and rsync's with it).
            let conn = login
                .exec(&command.join(" "))
                .await
                .map_err(TransportError::ssh_login)?;
            Ok(Box::new(conn) as Box<dyn Connection>)
        })
    }
}

/// One pooled session: the main connection and the lane connections opened so far.
#[derive(Debug)]
pub struct PoolConnection {
    main: Box<dyn Connection>,
    first_taken: AtomicBool,
    /// Lane connections being made since the main one succeeded.
    prepared: tokio::sync::Mutex<Vec<PreparedLane>>,
    lanes: tokio::sync::Mutex<Vec<Box<dyn Connection>>>,
    streams: u32,
}

type PreparedLane = tokio::task::JoinHandle<Result<Box<dyn Connection>, TransportError>>;

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
            let next = self.prepared.lock().await.pop();
            let conn = match next {
                Some(task) => task.await.map_err(|e| {
                    TransportError::unreachable("ssh-pool lane", "starting the connection", e)
                })??,
                None => {
                    return Err(TransportError::Unsupported {
                        transport: "ssh-pool".into(),
                        what: "more streams than the pool has",
                    })
                }
            };
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
        pool_capabilities(self.streams)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let result = self.main.close().await;
            // Lanes the session never used.
            for task in self.prepared.lock().await.drain(..) {
                task.abort();
            }
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
    /// Where the first stream comes from, until it has been taken.
    first: Option<Box<dyn Connection>>,
    first_taken: AtomicBool,
    listener: UnixListener,
    id: String,
    path: PathBuf,
}

impl LaneServer {
    /// Listen for the lanes of session `id`; the main stream is this process's stdin/stdout.
    pub fn bind(id: &str) -> Result<LaneServer, TransportError> {
        LaneServer::bind_with_first(id, Some(Box::new(PipeConnection::stdio())))
    }

    /// Listen for the lanes of session `id`, the first stream accepted from `first`; with
    /// `None` every stream, the first too, arrives by hand-off (a session server that is not
    /// itself on the remote shell's stdio — the conformance tests run one in the test process,
    /// reached over a real sshd by `arsync --server --lane=ID`).
    pub fn bind_with_first(
        id: &str,
        first: Option<Box<dyn Connection>>,
    ) -> Result<LaneServer, TransportError> {
        let path = lane_socket_path(id)?;
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(LaneServer {
            first,
            first_taken: AtomicBool::new(false),
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
            if let Some(first) = &self.first {
                if !self.first_taken.swap(true, Relaxed) {
                    return first.accept_stream().await;
                }
            }
            loop {
                let (s, _) = self.listener.accept().await?;
                // The ID, a newline and two descriptors: anything else is dropped.
                let got =
                    tokio::time::timeout(Duration::from_secs(10), receive_lane(&s, &self.id)).await;
                if let Ok(Ok(Some((inp, out)))) = got {
                    return Ok(lane_pair(inp, out, s)?);
                }
            }
        })
    }

    fn capabilities(&self) -> Capabilities {
        pool_capabilities(u32::from(MAX_LANES) + 1)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let _ = std::fs::remove_file(&self.path);
            // Lanes that connected but were never accepted: drop them, so their hand-off
            // processes (and the remote shells behind them) end now, not at our exit.
            while let Some(Ok(_)) = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(match self.listener.poll_accept(cx) {
                    std::task::Poll::Ready(r) => Some(r),
                    std::task::Poll::Pending => None,
                })
            })
            .await
            {}
            match &self.first {
                Some(first) => first.close().await,
                None => Ok(()),
            }
        })
    }
}

/// `arsync --server --lane=ID`: connect to session `id`'s socket (waiting for its server to
/// listen), hand it this process's stdin and stdout with the ID, close them (and stderr) here,
/// so the remote shell sees the stream's end when the server closes it, and wait
/// until the server closes the socket (the remote shell keeps the connection while this
/// process lives).
pub fn run_lane_handoff(id: &str) -> Result<(), TransportError> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

    let path = lane_socket_path(id)?;
    let deadline = std::time::Instant::now() + RELAY_CONNECT_WAIT;
    let sock = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(TransportError::unreachable(
                    path.display().to_string(),
                    "no arsync session listening",
                    e,
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let proof = format!("{id}\n");
    let fds = [0, 1];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(proof.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| TransportError::Io(e.into()))?;
    // The server holds them now; the remote shell sees their end when the server closes its
    // copies, not ours.
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(|e| TransportError::Io(e.into()))?;
    nix::unistd::dup2(null.as_raw_fd(), 1).map_err(|e| TransportError::Io(e.into()))?;
    // sshd ends the channel only when stderr is closed too: nothing more is said here.
    nix::unistd::dup2(null.as_raw_fd(), 2).map_err(|e| TransportError::Io(e.into()))?;
    let mut rest = Vec::new();
    let _ = io::Read::read_to_end(&mut &sock, &mut rest);
    Ok(())
}

/// Receive a lane's proof and its two descriptors (stdin, stdout) from `s`.
async fn receive_lane(s: &UnixStream, id: &str) -> io::Result<Option<(OwnedFd, OwnedFd)>> {
    use std::io::IoSliceMut;
    use std::os::fd::{AsRawFd, FromRawFd};

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

    let mut buf = vec![0u8; id.len() + 1];
    loop {
        s.readable().await?;
        let got = s.try_io(tokio::io::Interest::READABLE, || {
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                s.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(io::Error::from)?;
            let mut fds = Vec::new();
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(v) = c {
                    fds.extend(v);
                }
            }
            // SAFETY: the kernel just gave us these descriptors; nothing else owns them.
            let owned: Vec<OwnedFd> = fds
                .into_iter()
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            Ok((msg.bytes, owned))
        });
        match got {
            Ok((n, mut fds)) => {
                if n != buf.len()
                    || buf[..id.len()] != *id.as_bytes()
                    || buf[id.len()] != b'\n'
                    || fds.len() != 2
                {
                    return Ok(None);
                }
                let out = fds.pop();
                let inp = fds.pop();
                return Ok(inp.zip(out));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A lane's two descriptors as a stream pair; `guard` (the lane process's socket) lives as
/// long as either half, so the lane process waits until both are dropped.
fn lane_pair(inp: OwnedFd, out: OwnedFd, guard: UnixStream) -> io::Result<StreamPair> {
    let guard = Arc::new(guard);
    let recv: Box<dyn tokio::io::AsyncRead + Send + Unpin> = if is_socket(&inp)? {
        let std = std::os::unix::net::UnixStream::from(inp);
        std.set_nonblocking(true)?;
        Box::new(Guarded(UnixStream::from_std(std)?, guard.clone()))
    } else {
        Box::new(Guarded(
            tokio::net::unix::pipe::Receiver::from_owned_fd(inp)?,
            guard.clone(),
        ))
    };
    let send: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = if is_socket(&out)? {
        let std = std::os::unix::net::UnixStream::from(out);
        std.set_nonblocking(true)?;
        Box::new(Guarded(UnixStream::from_std(std)?, guard))
    } else {
        // A pipe ends for the reader only when closed: shutdown closes it.
        Box::new(EndOnShutdown::new(Guarded(
            tokio::net::unix::pipe::Sender::from_owned_fd(out)?,
            guard,
        )))
    };
    Ok(StreamPair { send, recv })
}

fn is_socket(fd: &OwnedFd) -> io::Result<bool> {
    let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(fd)).map_err(io::Error::from)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// A stream half that keeps its lane's socket (`.1`) alive while it lives.
struct Guarded<T>(T, #[allow(dead_code)] Arc<UnixStream>);

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
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
    fn a_pool_of_several_claims_independent_congestion() {
        let backend: Arc<dyn TransportFactory> = Arc::new(crate::ssh::SystemSsh::default());
        let three = SshPool::new(backend.clone(), 3).capabilities();
        assert!(three.independent_congestion && three.encrypted);
        assert_eq!(three.max_streams, 3);
        // One connection has nothing to be independent of.
        assert!(
            !SshPool::new(backend, 1)
                .capabilities()
                .independent_congestion
        );
    }

    #[test]
    fn session_ids_are_random_hex() {
        let a = new_session_id().expect("urandom");
        let b = new_session_id().expect("urandom");
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

    /// Send `proof` with the two ends of a fresh pipe, as a lane process sends its stdin and
    /// stdout; returns the pipe's other ends.
    fn hand_over(
        path: &std::path::Path,
        proof: &[u8],
    ) -> (std::os::unix::net::UnixStream, OwnedFd, OwnedFd) {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;
        let sock = std::os::unix::net::UnixStream::connect(path).expect("connect");
        let (r1, w1) = nix::unistd::pipe().expect("pipe");
        let (r2, w2) = nix::unistd::pipe().expect("pipe");
        // The lane's stdin is read by the server (r1), its stdout written (w2).
        let fds = [r1.as_raw_fd(), w2.as_raw_fd()];
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(proof)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        (sock, w1, r2)
    }

    #[tokio::test]
    async fn a_lane_must_prove_the_session_id() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let id = new_session_id().expect("urandom");
        let path = lane_socket_path(&id).expect("socket dir");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let server = LaneServer {
            first: Some(Box::new(PipeConnection::new(
                tokio::io::empty(),
                tokio::io::sink(),
            ))),
            first_taken: AtomicBool::new(false),
            listener,
            id: id.clone(),
            path: path.clone(),
        };
        // The first stream is the main one.
        server.accept_stream().await.expect("main stream");
        // A wrong ID is dropped; the right one hands over working descriptors.
        let _wrong = hand_over(&path, b"ffffffffffffffffffffffffffffffff\n");
        let (sock, to_lane, from_lane) = hand_over(&path, format!("{id}\n").as_bytes());
        let mut pair = server.accept_stream().await.expect("lane");
        std::fs::File::from(to_lane).write_all_blocking(b"hello");
        let mut got = [0u8; 5];
        pair.recv.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
        pair.send.write_all(b"back").await.expect("write");
        pair.send.flush().await.expect("flush");
        let mut back = [0u8; 4];
        std::io::Read::read_exact(&mut std::fs::File::from(from_lane), &mut back)
            .expect("read back");
        assert_eq!(&back, b"back");
        // The lane process waits until the server lets go of both halves.
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        assert!(
            std::io::Read::read(&mut &sock, &mut [0u8; 1]).is_err(),
            "still held"
        );
        drop(pair);
        sock.set_read_timeout(None).expect("timeout");
        assert_eq!(
            std::io::Read::read(&mut &sock, &mut [0u8; 1]).expect("eof"),
            0
        );
        drop(server);
        assert!(!path.exists(), "socket removed when the server ends");
    }

    trait WriteBlocking {
        fn write_all_blocking(self, b: &[u8]);
    }

    impl WriteBlocking for std::fs::File {
        fn write_all_blocking(mut self, b: &[u8]) {
            std::io::Write::write_all(&mut self, b).expect("write");
        }
    }
}
