//! Real TLS 1.3 handshakes between the configurations `arsync_auth::tls` builds: a rustls
//! client and server over a Unix socket pair, the server on a thread. No mocks: pinning, CA
//! verification and mutual TLS are checked by rustls itself.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use arsync_auth::tls::{
    self, client_config, server_config, ClientAuth, Fingerprint, Identity, ServerTrust, ALPN,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConnection};

/// What the server sends once the handshake is done; the client must receive it.
const GREETING: &[u8] = b"hello from the server";
/// Bounds every blocking read, so a broken test fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one handshake; returns (client result, server result), errors as text.
///
/// The client succeeds only when it receives the server's greeting, which needs the server
/// to have accepted the client's certificate (or lack of one) too.
fn handshake(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
    server_name: &str,
) -> (Result<(), String>, Result<(), String>) {
    let (mut client_sock, mut server_sock) = UnixStream::pair().unwrap();
    client_sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    server_sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();

    let server_thread = thread::spawn(move || -> Result<(), String> {
        let mut conn = ServerConnection::new(Arc::new(server)).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut server_sock)
                .map_err(|e| e.to_string())?;
        }
        if conn.alpn_protocol() != Some(ALPN) {
            return Err(format!("server ALPN {:?}", conn.alpn_protocol()));
        }
        conn.writer()
            .write_all(GREETING)
            .map_err(|e| e.to_string())?;
        while conn.wants_write() {
            conn.write_tls(&mut server_sock)
                .map_err(|e| e.to_string())?;
        }
        // Wait for the client to hang up (or fail), so an alert it sends is noticed.
        let _ = conn.complete_io(&mut server_sock);
        match conn.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });

    let client_result = (|| -> Result<(), String> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
        let mut conn = ClientConnection::new(Arc::new(client), name).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut client_sock)
                .map_err(|e| e.to_string())?;
        }
        if conn.alpn_protocol() != Some(ALPN) {
            return Err(format!("client ALPN {:?}", conn.alpn_protocol()));
        }
        let mut received = Vec::new();
        let mut buf = [0u8; 64];
        while received.len() < GREETING.len() {
            match conn.reader().read(&mut buf) {
                Ok(0) => return Err("connection closed before the greeting".into()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if conn.read_tls(&mut client_sock).map_err(|e| e.to_string())? == 0 {
                        return Err("connection closed before the greeting".into());
                    }
                    conn.process_new_packets().map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if received != GREETING {
            return Err(format!("unexpected greeting {received:?}"));
        }
        conn.send_close_notify();
        conn.complete_io(&mut client_sock)
            .map_err(|e| e.to_string())?;
        Ok(())
    })();
    drop(client_sock);
    let server_result = server_thread.join().unwrap();
    (client_result, server_result)
}

/// A CA made with rcgen, able to issue server and client certificates.
struct TestCa {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Identity {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![purpose];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            chain: Vec::new(),
        }
    }
}

fn self_signed(name: &str) -> Identity {
    Identity::generate(&[name.to_string()]).unwrap()
}

/// Trust pinned to `expected` (`None`: trust on first use), recording what it saw.
fn pinned(expected: Option<Fingerprint>) -> ServerTrust {
    ServerTrust::Pin {
        expected,
        seen: Default::default(),
    }
}

/// The fingerprint a pinned trust recorded.
fn seen(trust: &ServerTrust) -> Option<Fingerprint> {
    let ServerTrust::Pin { seen, .. } = trust else {
        panic!("not a pinned trust: {trust:?}")
    };
    *seen.lock().unwrap()
}

#[test]
fn pinned_with_the_right_fingerprint_connects_and_records_it() {
    let server_id = self_signed("localhost");
    let trust = pinned(Some(server_id.fingerprint()));
    // Pinning ignores names: the client may call the server anything.
    let (client, server) = handshake(
        server_config(&server_id, &ClientAuth::None).unwrap(),
        client_config(&trust, None).unwrap(),
        "not-the-name-in-the-certificate.example",
    );
    assert_eq!(client, Ok(()));
    assert_eq!(server, Ok(()));
    assert_eq!(seen(&trust), Some(server_id.fingerprint()));
}

#[test]
fn pinned_with_a_wrong_fingerprint_is_refused_showing_both() {
    let server_id = self_signed("localhost");
    let wrong = Fingerprint([7; 32]);
    let trust = pinned(Some(wrong));
    let (client, server) = handshake(
        server_config(&server_id, &ClientAuth::None).unwrap(),
        client_config(&trust, None).unwrap(),
        "localhost",
    );
    let message = client.unwrap_err();
    assert!(message.contains("changed"), "{message}");
    assert!(message.contains(&wrong.to_string()), "{message}");
    assert!(
        message.contains(&server_id.fingerprint().to_string()),
        "{message}"
    );
    assert!(server.is_err(), "the server must not complete: {server:?}");
    assert_eq!(seen(&trust), Some(server_id.fingerprint()));
}

#[test]
fn trust_on_first_use_accepts_and_records() {
    let server_id = self_signed("127.0.0.1");
    let trust = pinned(None);
    let (client, server) = handshake(
        server_config(&server_id, &ClientAuth::None).unwrap(),
        client_config(&trust, None).unwrap(),
        "127.0.0.1",
    );
    assert_eq!(client, Ok(()));
    assert_eq!(server, Ok(()));
    assert_eq!(seen(&trust), Some(server_id.fingerprint()));
}

#[test]
fn ca_mode_accepts_a_ca_issued_server_and_refuses_a_self_signed_one() {
    let ca = TestCa::new("arsync test CA");
    let issued = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let trust = ServerTrust::Ca(vec![ca.cert.clone()]);

    let (client, server) = handshake(
        server_config(&issued, &ClientAuth::None).unwrap(),
        client_config(&trust, None).unwrap(),
        "localhost",
    );
    assert_eq!(client, Ok(()));
    assert_eq!(server, Ok(()));

    // The server name is checked in CA mode.
    let (client, _) = handshake(
        server_config(&issued, &ClientAuth::None).unwrap(),
        client_config(&trust, None).unwrap(),
        "elsewhere.example",
    );
    let message = client.unwrap_err();
    assert!(message.contains("elsewhere.example"), "{message}");

    let (client, server) = handshake(
        server_config(&self_signed("localhost"), &ClientAuth::None).unwrap(),
        client_config(&trust, None).unwrap(),
        "localhost",
    );
    let message = client.unwrap_err();
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(server.is_err());
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let client_ca = TestCa::new("arsync client CA");
    let other_ca = TestCa::new("some other CA");
    let server_id = self_signed("localhost");
    let server_cfg = || {
        server_config(
            &server_id,
            &ClientAuth::RequireCa(vec![client_ca.cert.clone()]),
        )
        .unwrap()
    };
    let trust = pinned(Some(server_id.fingerprint()));

    let good = client_ca.issue(&["client.example"], ExtendedKeyUsagePurpose::ClientAuth);
    let (client, server) = handshake(
        server_cfg(),
        client_config(&trust, Some(&good)).unwrap(),
        "localhost",
    );
    assert_eq!(client, Ok(()));
    assert_eq!(server, Ok(()));

    let (client, server) = handshake(
        server_cfg(),
        client_config(&trust, None).unwrap(),
        "localhost",
    );
    let message = server.unwrap_err();
    assert!(message.contains("no certificates"), "{message}");
    assert!(
        client.is_err(),
        "a client without a certificate must be refused"
    );

    let stranger = other_ca.issue(&["client.example"], ExtendedKeyUsagePurpose::ClientAuth);
    let (client, server) = handshake(
        server_cfg(),
        client_config(&trust, Some(&stranger)).unwrap(),
        "localhost",
    );
    let message = server.unwrap_err();
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(client.is_err(), "a client from another CA must be refused");
}

#[test]
fn an_identity_loaded_from_disk_serves_the_fingerprint_clients_pin() {
    let dir = tempfile::tempdir().unwrap();
    let (generated, new) =
        Identity::load_or_generate(dir.path(), &["localhost".to_string()]).unwrap();
    assert!(new);
    let loaded = Identity::from_pem_files(
        &dir.path().join("identity.crt"),
        &dir.path().join("identity.key"),
    )
    .unwrap();
    assert_eq!(loaded.fingerprint(), generated.fingerprint());
    let trust = pinned(Some(generated.fingerprint()));
    let (client, server) = handshake(
        tls::server_config(&loaded, &ClientAuth::None).unwrap(),
        tls::client_config(&trust, None).unwrap(),
        "localhost",
    );
    assert_eq!(client, Ok(()));
    assert_eq!(server, Ok(()));
}
