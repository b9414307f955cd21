//! TLS identities and the rustls configurations arsync's QUIC transport runs on.
//!
//! Owns: certificate generation (rcgen, ECDSA P-256) and storage (the key created 0600 and
//! refused when others can read it), fingerprints (SHA-256 of the DER, shown as OpenSSH shows
//! key fingerprints), server configs (optionally requiring client certificates from a CA),
//! and client configs that trust either one pinned fingerprint (checked *and* the handshake
//! signature verified with the certificate's key) or a CA. Everything is TLS 1.3 only (QUIC
//! needs it) on the *ring* provider, with ALPN [`ALPN`].
//!
//! Does not own where pins are kept ([`crate::pins`]) or the transport.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::{io_err, AuthError};

/// The ALPN protocol both sides require.
pub const ALPN: &[u8] = b"arsync/1";

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert_der`.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(cert_der).into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0)
        )
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Fingerprint, AuthError> {
        let bad = || AuthError::BadFingerprint { text: s.to_owned() };
        let bytes = if let Some(b64) = s.strip_prefix("SHA256:") {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64.trim_end_matches('='))
                .map_err(|_| bad())?
        } else {
            let hex: String = s.chars().filter(|&c| c != ':').collect();
            if hex.len() != 64 {
                return Err(bad());
            }
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad())?
        };
        Ok(Fingerprint(bytes.try_into().map_err(|_| bad())?))
    }
}

/// A certificate and its private key.
#[derive(Debug)]
pub struct Identity {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Its key (DER).
    pub key: PrivateKeyDer<'static>,
    /// Intermediate certificates sent after it (a CA-issued `fullchain.pem`); empty for a
    /// self-signed one.
    pub chain: Vec<CertificateDer<'static>>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            chain: self.chain.clone(),
        }
    }
}

impl Identity {
    /// The certificate followed by its intermediates, as sent in a handshake.
    fn full_chain(&self) -> Vec<CertificateDer<'static>> {
        let mut v = vec![self.cert.clone()];
        v.extend(self.chain.iter().cloned());
        v
    }
}

/// `source` stopped `context`.
fn tls_err<E: Into<crate::BoxError>>(context: &'static str) -> impl FnOnce(E) -> AuthError {
    move |source| AuthError::Tls {
        context,
        source: source.into(),
    }
}

/// Read a key file, refusing it when group or others have any access (as OpenSSH does).
/// The mode is checked on the opened file, so the file checked is the file read.
fn read_private_key_file(path: &Path) -> Result<Vec<u8>, AuthError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mode = file.metadata().map_err(io_err(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(AuthError::KeyPermissions {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let mut pem = Vec::new();
    file.read_to_end(&mut pem).map_err(io_err(path))?;
    Ok(pem)
}

/// How long a generated certificate is valid: ten years, leap days included.
const GENERATED_VALIDITY: std::time::Duration = std::time::Duration::from_secs(3653 * 86_400);
/// How far back a generated certificate's validity starts, for peers whose clocks lag.
const GENERATED_BACKDATE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// A self-signed ECDSA P-256 certificate for `names` (IP addresses become IP SANs, other names
/// DNS SANs), named `common_name`, valid from a day ago for ten years.
fn self_signed(
    names: &[String],
    common_name: &str,
) -> Result<(rcgen::Certificate, rcgen::KeyPair), AuthError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(tls_err("generating a key pair"))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(tls_err("the certificate's names"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(tls_err("reading the clock (set before 1970?)"))?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(GENERATED_BACKDATE);
    params.not_after = epoch + now + GENERATED_VALIDITY;
    let cert = params
        .self_signed(&key)
        .map_err(tls_err("signing the certificate"))?;
    Ok((cert, key))
}

impl Identity {
    /// Its certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// A fresh self-signed ECDSA P-256 certificate for `names` (names parsing as IP
    /// addresses become IP SANs, the others DNS SANs), valid from a day ago for ten years.
    pub fn generate(names: &[String]) -> Result<Identity, AuthError> {
        let (cert, key) = self_signed(names, "arsync")?;
        Ok(Identity {
            cert: cert.der().clone(),
            key: PrivateKeyDer::try_from(key.serialize_der())
                .map_err(tls_err("encoding the key"))?,
            chain: Vec::new(),
        })
    }

    /// `dir/identity.crt` and `dir/identity.key`, generated (and stored: the key 0600) when
    /// missing; `true` when it was generated now.
    ///
    /// When both files exist they are loaded (the key refused if group or others may access
    /// it). When neither does, `dir` is created (0700) if needed and a new identity is made
    /// with [`Identity::generate`]`(names)`: the key is written 0600 from its creation, the
    /// certificate 0644, each through a rename. When only one exists this is an error: a lone
    /// key is never replaced.
    pub fn load_or_generate(dir: &Path, names: &[String]) -> Result<(Identity, bool), AuthError> {
        let (crt, key) = (dir.join("identity.crt"), dir.join("identity.key"));
        let exists = |p: &Path| match std::fs::symlink_metadata(p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(p)(e)),
        };
        match (exists(&crt)?, exists(&key)?) {
            (true, true) => return Ok((Identity::from_pem_files(&crt, &key)?, false)),
            (false, false) => {}
            (crt_exists, _) => {
                let (present, missing) = if crt_exists {
                    (&crt, &key)
                } else {
                    (&key, &crt)
                };
                return Err(AuthError::BadFile {
                    path: missing.clone(),
                    message: format!(
                        "missing, but {} exists: restore it, or remove {} to generate a new \
                         identity",
                        present.display(),
                        present.display()
                    ),
                });
            }
        }
        crate::create_private_dir(dir)?;
        let (cert, key_pair) = self_signed(names, "arsync serve")?;
        crate::write_atomically(&key, key_pair.serialize_pem().as_bytes(), 0o600)?;
        crate::write_atomically(&crt, cert.pem().as_bytes(), 0o644)?;
        Ok((
            Identity {
                cert: cert.der().clone(),
                key: PrivateKeyDer::try_from(key_pair.serialize_der())
                    .map_err(tls_err("encoding the key"))?,
                chain: Vec::new(),
            },
            true,
        ))
    }

    /// A certificate (the first in the PEM file; any further ones are its intermediates) and
    /// its key (PEM, not readable by others).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, AuthError> {
        let key_pem = read_private_key_file(key)?;
        let mut certs = load_ca_certs(cert)?;
        let c = certs.remove(0);
        let k = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| AuthError::Unparsable {
            path: key.to_path_buf(),
            format: "a PEM private key",
            source: e.into(),
        })?;
        Ok(Identity {
            cert: c,
            key: k,
            chain: certs,
        })
    }
}

/// Every certificate in a PEM file (a CA bundle, or a certificate and its intermediates); at
/// least one.
pub fn load_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AuthError> {
    let unparsable = |e: rustls::pki_types::pem::Error| AuthError::Unparsable {
        path: path.to_path_buf(),
        format: "PEM certificates",
        source: e.into(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(unparsable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unparsable)?;
    if certs.is_empty() {
        return Err(AuthError::BadFile {
            path: path.to_path_buf(),
            message: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: &[CertificateDer<'static>]) -> Result<Arc<rustls::RootCertStore>, AuthError> {
    let mut r = rustls::RootCertStore::empty();
    for c in certs {
        r.add(c.clone())
            .map_err(tls_err("adding a CA certificate"))?;
    }
    Ok(Arc::new(r))
}

/// Whether a server asks clients for certificates.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client certificates (tokens authenticate).
    None,
    /// Mandatory client certificates issued by one of these CAs.
    RequireCa(Vec<CertificateDer<'static>>),
}

/// A server's TLS 1.3 configuration.
pub fn server_config(
    identity: &Identity,
    client_auth: &ClientAuth,
) -> Result<rustls::ServerConfig, AuthError> {
    let p = provider();
    let builder = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("choosing TLS 1.3"))?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::RequireCa(cas) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(cas)?, p)
                .build()
                .map_err(tls_err("the client certificate verifier"))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut c = builder
        .with_single_cert(identity.full_chain(), identity.key.clone_key())
        .map_err(tls_err("the server's certificate and key"))?;
    c.alpn_protocols = vec![ALPN.to_vec()];
    Ok(c)
}

/// How a client trusts servers.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// One certificate by fingerprint (`expected`), or — when `expected` is `None` — whatever
    /// is shown (trust on first use; the caller pins it). The fingerprint shown is recorded in
    /// `seen` either way, so a caller can explain a refusal.
    Pin {
        /// The pinned fingerprint, if any.
        expected: Option<Fingerprint>,
        /// What the server showed.
        seen: Arc<Mutex<Option<Fingerprint>>>,
    },
    /// Certificates issued by these CAs for the server's name.
    Ca(Vec<CertificateDer<'static>>),
}

/// Checks the end-entity certificate's fingerprint instead of a chain, and the handshake
/// signature with that certificate's key.
#[derive(Debug)]
struct PinVerifier {
    expected: Option<Fingerprint>,
    seen: Arc<Mutex<Option<Fingerprint>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of(end_entity);
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(got);
        }
        match self.expected {
            Some(want) if want != got => Err(rustls::Error::General(format!(
                "the server's certificate changed: expected {want}, got {got}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client's TLS 1.3 configuration, presenting `client_identity` if given.
pub fn client_config(
    trust: &ServerTrust,
    client_identity: Option<&Identity>,
) -> Result<rustls::ClientConfig, AuthError> {
    let p = provider();
    let builder = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("choosing TLS 1.3"))?;
    let builder = match trust {
        ServerTrust::Pin { expected, seen } => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                expected: *expected,
                seen: seen.clone(),
                provider: p,
            })),
        ServerTrust::Ca(cas) => builder.with_root_certificates(roots(cas)?),
    };
    let mut c = match client_identity {
        Some(id) => builder
            .with_client_auth_cert(id.full_chain(), id.key.clone_key())
            .map_err(tls_err("the client's certificate and key"))?,
        None => builder.with_no_client_auth(),
    };
    c.alpn_protocols = vec![ALPN.to_vec()];
    Ok(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fingerprints_print_and_parse_both_ways() {
        let fp = Fingerprint::of(b"some certificate");
        let text = fp.to_string();
        assert!(
            text.starts_with("SHA256:") && !text.ends_with('='),
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        let hex: String = fp.0.iter().map(|b| format!("{b:02X}:")).collect();
        assert_eq!(
            hex.trim_end_matches(':').parse::<Fingerprint>().unwrap(),
            fp
        );
        for bad in ["SHA256:abc", "MD5:xx", "00", "SHA256:!!!"] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_identity_is_stored_with_a_private_key_and_loaded_again() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("state");
        let (a, new) = Identity::load_or_generate(&dir, &["host.example".into()]).unwrap();
        assert!(new);
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("identity.key"), 0o600);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (b, new) = Identity::load_or_generate(&dir, &["host.example".into()]).unwrap();
        assert!(!new);
        assert_eq!(a.fingerprint(), b.fingerprint());
        // A key others can read is refused, loudly.
        std::fs::set_permissions(
            dir.join("identity.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = Identity::load_or_generate(&dir, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("UNPROTECTED PRIVATE KEY FILE"), "{e}");
        // Fresh identities differ, and both configs build.
        let c = Identity::generate(&["127.0.0.1".into()]).unwrap();
        assert_ne!(c.fingerprint(), a.fingerprint());
        server_config(&c, &ClientAuth::None).unwrap();
        client_config(
            &ServerTrust::Pin {
                expected: None,
                seen: Default::default(),
            },
            Some(&c),
        )
        .unwrap();
    }

    #[test]
    fn from_pem_files_refuses_an_open_key_and_half_an_identity_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let (crt, key) = (t.path().join("identity.crt"), t.path().join("identity.key"));
        let (a, _) = Identity::load_or_generate(t.path(), &[]).unwrap();
        assert_eq!(
            Identity::from_pem_files(&crt, &key).unwrap().fingerprint(),
            a.fingerprint()
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Identity::from_pem_files(&crt, &key).unwrap_err();
        assert!(
            matches!(&e, AuthError::KeyPermissions { path, mode: 0o640 } if path == &key),
            "{e}"
        );
        assert!(e.to_string().contains(&key.display().to_string()), "{e}");
        // A lone key is never replaced by a new identity.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_file(&crt).unwrap();
        let before = std::fs::read(&key).unwrap();
        let e = Identity::load_or_generate(t.path(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("identity.crt") && e.contains("missing"), "{e}");
        assert_eq!(std::fs::read(&key).unwrap(), before);
        // Garbage is an error, not a panic: no certificate in it, or one PEM cannot parse.
        std::fs::write(&crt, "not a certificate\n").unwrap();
        assert!(matches!(
            Identity::from_pem_files(&crt, &key),
            Err(AuthError::BadFile { .. })
        ));
        assert!(matches!(
            load_ca_certs(&crt),
            Err(AuthError::BadFile { .. })
        ));
        std::fs::write(
            &crt,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_ca_certs(&crt).unwrap_err();
        assert!(
            matches!(
                &e,
                AuthError::Unparsable {
                    format: "PEM certificates",
                    ..
                }
            ),
            "{e:?}"
        );
        // The parser's own error is the source, typed.
        let source = std::error::Error::source(&e).unwrap();
        assert!(source
            .downcast_ref::<rustls::pki_types::pem::Error>()
            .is_some());
    }
}
