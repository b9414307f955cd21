//! The SSH bootstrap's I/O, both ends: QUIC started through an SSH login, as mosh does.
//!
//! Client ([`login`], [`OfferedLogin`]): log in with a remote shell and run the server command
//! with `--bootstrap=quic`; read its one offer line (bounded in size and time); connect by QUIC
//! pinned to the offered certificate and present the one-time token. The SSH login then stays
//! open beside the QUIC connection ([`BootstrappedQuic`]): its end ends the remote server. If
//! QUIC does not get through, `stdio` written on the login makes the same server speak the
//! session there ([`OneStream`]).
//!
//! Server ([`BootstrapServer`]): a throw-away certificate and token, an ephemeral UDP port,
//! the offer printed on stdout, then whichever comes first — a QUIC client with the token, or
//! `stdio` on stdin.
//!
//! Not here: the offer's bytes (`arsync_core::proto::bootstrap`), deciding between QUIC and
//! the SSH channel, or what a missing remote arsync leads to (`arsync_core::negotiate`), and
//! running the session's roles (the `arsync` binary).

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arsync_auth::tls::{self, ClientAuth, Fingerprint, Identity};
use arsync_core::negotiate::{QuicOffered, QuicSeen};
use arsync_core::proto::admit::AdmitRequest;
use arsync_core::proto::bootstrap::{
    bootstrap_command, fingerprint_text, is_stdio_request, server_addr_from_ssh_connection,
    BootstrapOffer, LineReader, MAX_CONTROL_LINE, MAX_OFFER_LINE, STDIO_LINE,
};
use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, PathStats, StreamPair,
    TransportError, TransportFactory,
};
use tokio::io::AsyncWriteExt;

use crate::pipe::read_line;
pub use crate::pipe::OneStream;
use crate::quic::{QuicConnection, QuicServer, QuicTransport, QuicTrust, QuicTuning};
use crate::stdio;

/// How long a client waits for the offer line.
pub const OFFER_WAIT: Duration = Duration::from_secs(60);
/// How long a bootstrap server waits for its client.
pub const CLIENT_WAIT: Duration = Duration::from_secs(60);

/// A QUIC session whose server lives as long as an SSH login: closing it closes the QUIC
/// connection, then the SSH channel, and reaps the remote server.
#[derive(Debug)]
pub struct BootstrappedQuic {
    quic: QuicConnection,
    ssh: OneStream,
}

impl Connection for BootstrappedQuic {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.quic.open_stream()
    }
    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.quic.accept_stream()
    }
    fn capabilities(&self) -> Capabilities {
        self.quic.capabilities()
    }
    fn path_stats(&self) -> Option<PathStats> {
        self.quic.path_stats()
    }
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let q = self.quic.close().await;
            let s = self.ssh.close().await;
            s.and(q)
        })
    }
}

/// What the bootstrap login found.
#[derive(Debug)]
pub enum Login {
    /// The remote arsync's offer, on the login that holds it.
    Offered(OfferedLogin),
    /// No offer: the remote command ended with `status` (exit 127: no arsync there), having
    /// printed `said`.
    NoOffer {
        /// How the login's command ended.
        status: Result<(), TransportError>,
        /// What it printed instead of an offer.
        said: String,
    },
}

/// A login whose remote arsync offered QUIC.
#[derive(Debug)]
pub struct OfferedLogin {
    /// The offer.
    pub offer: BootstrapOffer,
    /// How long the login took until the offer arrived.
    pub took: Duration,
    channel: OneStream,
}

/// Log in with `ssh`, run `endpoint.remote_command` with `--bootstrap=quic` after its
/// `--server`, and read the offer line (at most [`MAX_OFFER_LINE`] bytes, within
/// [`OFFER_WAIT`]).
pub async fn login(
    ssh: &dyn TransportFactory,
    endpoint: &Endpoint,
) -> Result<Login, TransportError> {
    let mut endpoint = endpoint.clone();
    endpoint.remote_command = bootstrap_command(&endpoint.remote_command);
    let started = Instant::now();
    let conn = ssh.connect(&endpoint, &AuthConfig::default()).await?;
    let mut pair = conn.open_stream().await?;
    // A byte at a time: the session may follow the line on the same stream.
    let mut reader = LineReader::new(MAX_OFFER_LINE);
    let line = tokio::time::timeout(OFFER_WAIT, read_line(&mut pair.recv, &mut reader))
        .await
        .ok()
        .flatten()
        .and_then(Result::ok);
    if let Some(Ok(offer)) = line.as_deref().map(BootstrapOffer::parse) {
        return Ok(Login::Offered(OfferedLogin {
            offer,
            took: started.elapsed(),
            channel: OneStream::new(pair, conn),
        }));
    }
    let said = match &line {
        Some(l) => String::from_utf8_lossy(l).into_owned(),
        None => reader.partial(),
    };
    drop(pair);
    // No offer: the remote command failed; its exit status says why.
    let status = conn.close().await;
    Ok(Login::NoOffer { status, said })
}

impl OfferedLogin {
    /// The offer as negotiation sees it (no token).
    pub fn offered(&self) -> QuicOffered {
        QuicOffered {
            login_took: self.took,
            addr: self.offer.addr,
            port: self.offer.port,
            certificate: fingerprint_text(&self.offer.fingerprint),
            // Issue 16, native login:
            login_rtt: self.channel.path_stats().and_then(|p| p.rtt),
        }
    }

    /// Connect by QUIC to the offer — its address, else `host` resolved — pinned to the
    /// offered certificate, presenting the token; the handshake gets
    /// `tuning.handshake_timeout`. What was seen, and the connection or the error.
    pub async fn try_quic(
        &self,
        host: &str,
        tuning: QuicTuning,
    ) -> (QuicSeen, Result<QuicConnection, TransportError>) {
        let port = self.offer.port;
        let to = match self.offer.addr {
            Some(ip) => (ip, port).into(),
            None => match crate::quic::resolve(host, port).await {
                Ok(a) => a,
                Err(e) => {
                    let seen = QuicSeen::NoAddress {
                        host: host.to_owned(),
                        reason: e.to_string(),
                    };
                    return (seen, Err(e));
                }
            },
        };
        let quic = QuicTransport::new(
            QuicTrust::Pinned(Fingerprint(self.offer.fingerprint)),
            None,
            tuning,
        );
        let request = AdmitRequest {
            token: self.offer.token.clone(),
            ..AdmitRequest::default()
        };
        let t = Instant::now();
        let result = quic.connect_to(to, host, &request).await;
        let after = t.elapsed();
        let seen = match &result {
            Ok(_) => QuicSeen::Established { to, took: after },
            Err(e) if after >= tuning.handshake_timeout => QuicSeen::TimedOut {
                to,
                after,
                reason: e.to_string(),
            },
            Err(e) => QuicSeen::Failed {
                to,
                after,
                reason: e.to_string(),
            },
        };
        (seen, result)
    }

    /// QUIC got through: the session runs on `quic`, the login open beside it.
    pub fn with_quic(self, quic: QuicConnection) -> BootstrappedQuic {
        BootstrappedQuic {
            quic,
            ssh: self.channel,
        }
    }

    /// QUIC did not get through: ask the server for the session on the login's channel.
    pub async fn into_channel(self) -> Result<OneStream, TransportError> {
        let mut pair = self.channel.take().ok_or(TransportError::Closed)?;
        pair.send.write_all(STDIO_LINE).await?;
        pair.send.flush().await?;
        self.channel.put_back(pair);
        Ok(self.channel)
    }

    /// Give up: end the login (and so the remote server).
    pub async fn close(self) {
        let _ = self.channel.close().await;
    }
}

/// Whom a bootstrap server serves.
#[derive(Debug)]
pub enum Chosen {
    /// A QUIC client that presented the token.
    Quic(QuicConnection),
    /// The client wrote `stdio`: the session runs on stdin/stdout.
    Stdio,
    /// Neither came (stdin ended, something else was written, or the wait ran out).
    Gone,
}

/// A bootstrap server's QUIC side: a fresh certificate and token and an ephemeral UDP port.
#[derive(Debug)]
pub struct BootstrapServer {
    server: Arc<QuicServer>,
    offer: BootstrapOffer,
}

impl BootstrapServer {
    /// Make a self-signed certificate and a one-time token, bind UDP `[::]:0` (else
    /// `0.0.0.0:0`), and make the offer, with the address the SSH client reached us at
    /// (`SSH_CONNECTION`) when known.
    pub fn bind(tuning: QuicTuning) -> Result<BootstrapServer, TransportError> {
        let identity = Identity::generate(&["arsync-bootstrap".to_owned()])
            .map_err(|e| TransportError::setup("the bootstrap's certificate", e))?;
        let token = arsync_auth::token::generate_secret()
            .map_err(|e| TransportError::setup("the bootstrap's token", e))?;
        let config = tls::server_config(&identity, &ClientAuth::None)
            .map_err(|e| TransportError::setup("the bootstrap's TLS configuration", e))?;
        let server = match QuicServer::bind(
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            config.clone(),
            tuning,
        ) {
            Ok(s) => s,
            // No IPv6 here: IPv4 only.
            Err(_) => {
                QuicServer::bind((std::net::Ipv4Addr::UNSPECIFIED, 0).into(), config, tuning)?
            }
        };
        let offer = BootstrapOffer {
            addr: std::env::var("SSH_CONNECTION")
                .ok()
                .and_then(|v| server_addr_from_ssh_connection(&v)),
            port: server.local_addr()?.port(),
            fingerprint: identity.fingerprint().0,
            token,
        };
        Ok(BootstrapServer {
            server: Arc::new(server),
            offer,
        })
    }

    /// Print the offer on stdout (straight to fd 1: nothing else is written on a server's
    /// stdout), waiting for room if it is non-blocking and full.
    pub fn announce(&self) -> Result<(), TransportError> {
        let line = self.offer.encode();
        stdio::write_all_waiting(std::io::stdout().as_fd(), line.as_bytes())?;
        Ok(())
    }

    /// Wait at most `wait` for a QUIC client presenting the token (others are refused and the
    /// wait goes on) or for `stdio` on stdin. Handshakes run side by side: a stranger probing
    /// the port cannot hold up the client.
    pub async fn wait_for_client(&self, wait: Duration) -> Chosen {
        let (admitted_tx, mut admitted_rx) = tokio::sync::mpsc::channel(1);
        let accepter = tokio::spawn({
            let (server, token) = (self.server.clone(), self.offer.token.clone());
            async move {
                while let Some(incoming) = server.incoming().await {
                    let (server, token, tx) = (server.clone(), token.clone(), admitted_tx.clone());
                    tokio::spawn(async move {
                        let Ok(admission) = server.handshake(incoming).await else {
                            return;
                        };
                        if arsync_auth::token::same_secret(&admission.request.token, &token) {
                            if let Ok(conn) = admission.admit().await {
                                let _ = tx.send(conn).await;
                            }
                        } else {
                            admission.refuse(5, "bootstrap token not recognised").await;
                        }
                    });
                }
            }
        });
        let chosen = tokio::select! {
            c = admitted_rx.recv() => c.map_or(Chosen::Gone, Chosen::Quic),
            line = read_control_line() => match line {
                Some(l) if is_stdio_request(&l) => Chosen::Stdio,
                _ => Chosen::Gone,
            },
            _ = tokio::time::sleep(wait) => Chosen::Gone,
        };
        accepter.abort();
        chosen
    }

    /// Stop listening and close what is still open there.
    pub fn close(&self) {
        self.server.close();
    }
}

/// Read one line from fd 0 a byte at a time (nothing beyond it is consumed, so the session
/// can follow on the same stdin); `None` at end of input or past [`MAX_CONTROL_LINE`]. A
/// non-blocking stdin is waited on (`stdio::read_waiting`), not taken for the end.
async fn read_control_line() -> Option<Vec<u8>> {
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        let mut reader = LineReader::new(MAX_CONTROL_LINE);
        loop {
            let mut b = [0u8; 1];
            match stdio::read_waiting(stdin.as_fd(), &mut b) {
                Ok(1) => {}
                _ => return None,
            }
            match reader.push(b[0]) {
                Ok(None) => {}
                Ok(Some(line)) => return Some(line),
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Wait until stdin reaches its end (the SSH login is gone); blocking or not.
pub async fn stdin_closed() {
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        let mut b = [0u8; 256];
        while let Ok(1..) = stdio::read_waiting(stdin.as_fd(), &mut b) {}
    })
    .await
    .ok();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, DuplexStream};

    /// A remote shell whose one connection is an in-memory pipe: the test plays the remote
    /// command on the other end, and `status` is how that command "exits".
    #[derive(Debug)]
    struct FakeShell {
        local: Mutex<Option<DuplexStream>>,
        command: Mutex<Vec<String>>,
        exit_127: bool,
    }

    #[derive(Debug)]
    struct FakeConn {
        pair: Mutex<Option<StreamPair>>,
        exit_127: bool,
    }

    impl Connection for FakeConn {
        fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
            Box::pin(async move {
                self.pair
                    .lock()
                    .unwrap()
                    .take()
                    .ok_or(TransportError::Closed)
            })
        }
        fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
            self.open_stream()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::single_stream()
        }
        fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
            Box::pin(async move {
                if self.exit_127 {
                    Err(TransportError::PeerExited {
                        command: "arsync".into(),
                        status: "exit status: 127".into(),
                        code: Some(127),
                        said: Vec::new(),
                    })
                } else {
                    Ok(())
                }
            })
        }
    }

    impl TransportFactory for FakeShell {
        fn name(&self) -> &str {
            "fake"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::single_stream()
        }
        fn connect<'a>(
            &'a self,
            endpoint: &'a Endpoint,
            _auth: &'a AuthConfig,
        ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
            Box::pin(async move {
                *self.command.lock().unwrap() = endpoint.remote_command.clone();
                let stream = self
                    .local
                    .lock()
                    .unwrap()
                    .take()
                    .ok_or(TransportError::Closed)?;
                let (recv, send) = tokio::io::split(stream);
                Ok(Box::new(FakeConn {
                    pair: Mutex::new(Some(StreamPair {
                        send: Box::new(send),
                        recv: Box::new(recv),
                    })),
                    exit_127: self.exit_127,
                }) as Box<dyn Connection>)
            })
        }
    }

    /// A fake shell and the remote command's end of its pipe.
    fn shell(exit_127: bool) -> (FakeShell, DuplexStream) {
        let (local, remote) = tokio::io::duplex(4096);
        let shell = FakeShell {
            local: Mutex::new(Some(local)),
            command: Mutex::new(Vec::new()),
            exit_127,
        };
        (shell, remote)
    }

    fn endpoint() -> Endpoint {
        let mut e = Endpoint::host("backup");
        e.remote_command = ["arsync", "--server", "-r", ".", "/d"]
            .map(String::from)
            .to_vec();
        e
    }

    fn offer() -> BootstrapOffer {
        BootstrapOffer {
            addr: None,
            port: 40321,
            fingerprint: [9; 32],
            token: "arsync_00".into(),
        }
    }

    #[tokio::test]
    async fn the_offer_is_read_and_the_session_follows_on_the_channel() {
        let (shell, mut remote) = shell(false);
        let mut sent = offer().encode().into_bytes();
        sent.extend_from_slice(b"SESSION");
        remote.write_all(&sent).await.unwrap();
        let Login::Offered(login) = login(&shell, &endpoint()).await.unwrap() else {
            panic!("no offer")
        };
        assert_eq!(
            *shell.command.lock().unwrap(),
            ["arsync", "--server", "--bootstrap=quic", "-r", ".", "/d"]
        );
        assert_eq!(login.offer, offer());
        assert_eq!(login.offered().port, 40321);
        assert!(login.offered().certificate.starts_with("SHA256:CQkJ"));
        // Falling back: `stdio` goes to the server, the bytes after the line come back.
        let channel = login.into_channel().await.unwrap();
        let mut pair = channel.open_stream().await.unwrap();
        let mut got = [0u8; 7];
        pair.recv.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"SESSION");
        let mut asked = [0u8; 6];
        remote.read_exact(&mut asked).await.unwrap();
        assert_eq!(&asked, STDIO_LINE);
        assert!(channel.open_stream().await.is_err(), "one stream only");
    }

    #[tokio::test]
    async fn no_arsync_there_is_reported_with_its_exit_status() {
        let (shell, remote) = shell(true);
        drop(remote);
        let Login::NoOffer { status, said } = login(&shell, &endpoint()).await.unwrap() else {
            panic!("an offer from nowhere")
        };
        assert!(arsync_core::negotiate::is_command_not_found(
            &status.unwrap_err()
        ));
        assert_eq!(said, "");
    }

    #[tokio::test]
    async fn anything_but_an_offer_is_no_offer() {
        for sent in [
            &b"hello\n"[..],
            b"ARSYNC-BOOTSTRAP 2 quic - 1 x y\n",
            b"partial",
        ] {
            let (shell, mut remote) = shell(false);
            remote.write_all(sent).await.unwrap();
            drop(remote);
            let Login::NoOffer { status, said } = login(&shell, &endpoint()).await.unwrap() else {
                panic!("{sent:?} taken for an offer")
            };
            assert!(status.is_ok());
            assert_eq!(said.as_bytes(), sent.strip_suffix(b"\n").unwrap_or(sent));
        }
    }

    #[tokio::test]
    async fn an_endless_line_is_cut_at_its_bound() {
        let (shell, mut remote) = shell(false);
        tokio::spawn(async move {
            let _ = remote.write_all(&vec![b'x'; 4 * MAX_OFFER_LINE]).await;
        });
        let Login::NoOffer { said, .. } = login(&shell, &endpoint()).await.unwrap() else {
            panic!("an offer from nowhere")
        };
        assert_eq!(said.len(), MAX_OFFER_LINE);
    }
}
