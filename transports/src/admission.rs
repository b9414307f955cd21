//! Issue 17, mptcp: the admission exchange's I/O, shared by every transport that reaches a
//! listening arsync (QUIC and TLS over TCP): reading one bounded message, the client's
//! request-and-reply, and [`PendingAdmission`] — a handshaken connection whose request waits
//! for the daemon's answer, whatever carried it.
//!
//! Not here: the bytes (`arsync_core::proto::admit`), the decision (the daemon's, with
//! `arsync_core::serve_policy`), TLS and the sockets (each transport's module).

use std::net::SocketAddr;
use std::time::Duration;

use arsync_core::proto::admit::{AdmitReply, AdmitRequest, Decoded};
use arsync_core::transport::{
    AuthConfig, BoxFuture, Connection, Endpoint, PeerMisbehaved, TransportError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A connection handshaken by a listening arsync whose admission request waits for an
/// answer: admit it (the session runs on what [`PendingAdmission::admit`] returns) or refuse
/// it. The same for every transport the daemon listens on, so one code path decides.
pub trait PendingAdmission: Send {
    /// What the client asked for.
    fn request(&self) -> &AdmitRequest;
    /// Whether the client presented a certificate the TLS layer verified (mutual TLS).
    fn client_certified(&self) -> bool;
    /// The client's address.
    fn remote_address(&self) -> SocketAddr;
    /// How the connection came (`QUIC`, `TLS over MPTCP`, …), for the daemon's log.
    fn carrier(&self) -> String;
    /// Admit: the session runs on the returned connection.
    fn admit(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn Connection>, TransportError>>;
    /// Refuse with an rsync exit code and a message for the client's user.
    fn refuse(self: Box<Self>, code: u8, message: String) -> BoxFuture<'static, ()>;
}

/// The [`PendingAdmission`] of a carrier's admission type `$ty`: from its fields `request` and
/// `client_certified`, the client's address and the carrier's name as expressions of `$s` (the
/// admission), and its inherent `admit(self)` and `refuse(self, code, &str)`.
macro_rules! pending_admission {
    ($ty:ty, |$s:ident| address: $addr:expr, carrier: $carrier:expr $(,)?) => {
        impl $crate::admission::PendingAdmission for $ty {
            fn request(&self) -> &::arsync_core::proto::admit::AdmitRequest {
                &self.request
            }

            fn client_certified(&self) -> bool {
                self.client_certified
            }

            fn remote_address(&self) -> ::std::net::SocketAddr {
                let $s = self;
                $addr
            }

            fn carrier(&self) -> String {
                #[allow(unused_variables)]
                let $s = self;
                $carrier
            }

            fn admit(
                self: Box<Self>,
            ) -> ::arsync_core::transport::BoxFuture<
                'static,
                Result<
                    Box<dyn ::arsync_core::transport::Connection>,
                    ::arsync_core::transport::TransportError,
                >,
            > {
                Box::pin(async move {
                    Ok(Box::new(<$ty>::admit(*self).await?)
                        as Box<dyn ::arsync_core::transport::Connection>)
                })
            }

            fn refuse(
                self: Box<Self>,
                code: u8,
                message: String,
            ) -> ::arsync_core::transport::BoxFuture<'static, ()> {
                Box::pin(async move { <$ty>::refuse(*self, code, &message).await })
            }
        }
    };
}
pub(crate) use pending_admission;

/// Where a [`TransportFactory::connect`](arsync_core::transport::TransportFactory::connect)
/// to a listening arsync goes (`endpoint.host`, its `port` or [`crate::quic::DEFAULT_PORT`])
/// and what it asks (`path` the `module/path`, `remote_command` the words after `--server`,
/// `auth.token` the bearer token).
pub(crate) async fn target_of(
    endpoint: &Endpoint,
    auth: &AuthConfig,
) -> Result<(SocketAddr, AdmitRequest), TransportError> {
    let port = endpoint.port.unwrap_or(crate::quic::DEFAULT_PORT);
    let addr = crate::quic::resolve(&endpoint.host, port).await?;
    Ok((addr, request_of(endpoint, auth)))
}

/// What a connection to a listening arsync asks (see [`target_of`]), where the address is
/// not resolved here (`h2` through a proxy names the host to it).
pub(crate) fn request_of(endpoint: &Endpoint, auth: &AuthConfig) -> AdmitRequest {
    AdmitRequest {
        token: auth.token.clone().unwrap_or_default(),
        target: endpoint.path.clone(),
        args: endpoint.remote_command.clone(),
    }
}

/// Read one admission message (bounded by its codec) from `recv`; nothing may follow it
/// before the other side answers.
pub(crate) async fn read_message<T, R: AsyncRead + Unpin>(
    recv: &mut R,
    decode: fn(&[u8]) -> Result<Decoded<T>, arsync_core::proto::DecodeError>,
) -> Result<T, TransportError> {
    let mut buf = Vec::new();
    loop {
        match decode(&buf) {
            Err(source) => {
                return Err(PeerMisbehaved::Undecodable {
                    what: "admission message",
                    source,
                }
                .into())
            }
            Ok(Decoded::Done(v, used)) => {
                if used != buf.len() {
                    return Err(PeerMisbehaved::TrailingBytes {
                        what: "admission message",
                        extra: buf.len() - used,
                    }
                    .into());
                }
                return Ok(v);
            }
            Ok(Decoded::NeedAtLeast(n)) => {
                let old = buf.len();
                buf.resize(n, 0);
                recv.read_exact(&mut buf[old..])
                    .await
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => TransportError::Closed,
                        _ => TransportError::Io(e),
                    })?;
            }
        }
    }
}

/// The client's half: send `request`, wait (at most `limit`) for the reply; a refusal is
/// [`TransportError::Refused`]. `server` names the peer in errors.
pub(crate) async fn present<S, R>(
    send: &mut S,
    recv: &mut R,
    request: &AdmitRequest,
    limit: Duration,
    server: &str,
) -> Result<(), TransportError>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    request.encode(&mut buf);
    send.write_all(&buf).await?;
    send.flush().await?;
    let reply = tokio::time::timeout(limit, read_message(recv, AdmitReply::decode))
        .await
        .map_err(|_| TransportError::Connect {
            endpoint: server.to_owned(),
            reason: "the server did not answer the admission request".into(),
        })??;
    match reply {
        AdmitReply::Admitted => Ok(()),
        AdmitReply::Refused { code, message } => Err(TransportError::Refused { code, message }),
    }
}

/// The server's half: write `reply` (and flush it).
pub(crate) async fn answer<S: AsyncWrite + Unpin>(
    send: &mut S,
    reply: &AdmitReply,
) -> Result<(), TransportError> {
    let mut buf = Vec::new();
    reply.encode(&mut buf);
    send.write_all(&buf).await?;
    send.flush().await?;
    Ok(())
}
