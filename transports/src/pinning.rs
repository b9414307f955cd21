//! Issue 17, mptcp: how a client of a listening arsync checks and pins the server's certificate
//! — the same for QUIC (`crate::quic`) and TLS over TCP (`crate::tls_tcp`): [`QuicTrust`] made
//! into rustls' [`ServerTrust`], the known-servers file read before and written after the
//! handshake (trust on first use), and a changed certificate said loudly.
//!
//! Not here: the verifiers themselves and the pins file's format (`arsync_auth`).

use std::sync::{Arc, Mutex};

use arsync_auth::pins::{KnownServers, PinCheck};
use arsync_auth::tls::{self, Fingerprint, Identity, ServerTrust};
use arsync_core::transport::TransportError;

use crate::quic::QuicTrust;

/// How a client checks and pins a server's certificate: the rustls trust, what the handshake
/// showed, the known-servers file.
pub(crate) struct Pinning<'a> {
    trust: &'a QuicTrust,
    server_trust: ServerTrust,
    seen: Arc<Mutex<Option<Fingerprint>>>,
    known: Option<KnownServers>,
    pin_key: &'a str,
}

impl<'a> Pinning<'a> {
    /// Ready to check the server known as `pin_key` (`host:port`) as `trust` says.
    pub(crate) fn start(trust: &'a QuicTrust, pin_key: &'a str) -> Result<Self, TransportError> {
        let seen = Arc::new(Mutex::new(None));
        let mut known = None;
        let server_trust = match trust {
            QuicTrust::Pinned(fp) => ServerTrust::Pin {
                expected: Some(*fp),
                seen: seen.clone(),
            },
            QuicTrust::KnownServers(path) => {
                let k = KnownServers::load(path)
                    .map_err(|e| TransportError::setup("the known-servers file", e))?;
                let expected = k.lookup(pin_key);
                known = Some(k);
                ServerTrust::Pin {
                    expected,
                    seen: seen.clone(),
                }
            }
            QuicTrust::Ca(roots) => ServerTrust::Ca(roots.clone()),
        };
        Ok(Pinning {
            trust,
            server_trust,
            seen,
            known,
            pin_key,
        })
    }

    /// The client's rustls configuration (presenting `identity` for mutual TLS).
    pub(crate) fn client_config(
        &self,
        identity: Option<&Identity>,
    ) -> Result<rustls::ClientConfig, TransportError> {
        tls::client_config(&self.server_trust, identity)
            .map_err(|e| TransportError::setup("the client's TLS configuration", e))
    }

    fn seen(&self) -> Option<Fingerprint> {
        self.seen.lock().ok().and_then(|s| *s)
    }

    /// Trust on first use: pin what the handshake showed.
    pub(crate) fn pin_on_first_use(self) -> Result<(), TransportError> {
        let seen = self.seen();
        if let (Some(mut k), Some(fp)) = (self.known, seen) {
            if let PinCheck::New = k.check(self.pin_key, &fp) {
                k.add(self.pin_key, fp)
                    .map_err(|e| TransportError::setup("pinning the certificate", e))?;
                eprintln!(
                    "arsync: pinned the certificate of {} ({fp}) in {}",
                    self.pin_key,
                    k.path().display()
                );
            }
        }
        Ok(())
    }

    /// The message for a failed handshake (`step`): a changed certificate says so loudly.
    pub(crate) fn handshake_error(
        &self,
        step: &str,
        e: impl Into<arsync_core::transport::BoxError>,
    ) -> TransportError {
        let server = self.pin_key;
        let expected = match self.trust {
            QuicTrust::Pinned(fp) => Some(*fp),
            QuicTrust::KnownServers(_) => self.known.as_ref().and_then(|k| k.lookup(server)),
            QuicTrust::Ca(_) => None,
        };
        match (expected, self.seen()) {
            (Some(want), Some(got)) if want != got => {
                let file = match (self.trust, &self.known) {
                    (QuicTrust::KnownServers(_), Some(k)) => format!(
                        "\nIf the server's identity was replaced on purpose, remove the line for {server} from {}.",
                        k.path().display()
                    ),
                    _ => String::new(),
                };
                TransportError::Auth(format!(
                    "THE CERTIFICATE OF {server} HAS CHANGED: expected {want}, the server offered {got}. \
                     Someone may be intercepting the connection; refusing to continue.{file}"
                ))
            }
            _ => TransportError::unreachable(server, step, e),
        }
    }
}

/// Issue 17, h2: the TLS server name for `host` (TCP transports): certificates name hosts,
/// not addresses, and a pinned certificate ignores names anyway, so an address is `arsync`.
#[cfg(feature = "tls-tcp")]
pub(crate) fn server_name(
    host: &str,
) -> Result<rustls::pki_types::ServerName<'static>, TransportError> {
    let sni = if host.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        "arsync"
    } else {
        host
    };
    rustls::pki_types::ServerName::try_from(sni.to_owned())
        .map_err(|e| TransportError::setup("the server name", e))
}
