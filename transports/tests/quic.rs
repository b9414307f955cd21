//! The `quic` transport itself over real UDP sockets on loopback, real TLS 1.3 and real
//! certificates: admission, several streams carrying data both ways, a pinned certificate that
//! does not match, a refusal reaching the client with its exit code, and hostile admission
//! bytes ending only their own connection.

#![cfg(feature = "quic")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use arsync_auth::tls::{self, ClientAuth, Identity};
use arsync_core::proto::admit::AdmitRequest;
use arsync_core::transport::{Connection, PeerMisbehaved, TransportError};
use arsync_transports::quic::{QuicServer, QuicTransport, QuicTrust, QuicTuning};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn server() -> (Arc<QuicServer>, Identity) {
    let id = Identity::generate(&["localhost".into()]).unwrap();
    let config = tls::server_config(&id, &ClientAuth::None).unwrap();
    let s = QuicServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        QuicTuning::default(),
    )
    .unwrap();
    (Arc::new(s), id)
}

fn request(token: &str) -> AdmitRequest {
    AdmitRequest {
        token: token.into(),
        target: "mod/path".into(),
        args: vec!["--sender".into(), "-r".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_connections_carry_several_streams_both_ways() {
    let (server, id) = server();
    let addr = server.local_addr().unwrap();
    let srv = server.clone();
    let served = tokio::spawn(async move {
        let incoming = srv.incoming().await.unwrap();
        let adm = srv.handshake(incoming).await.unwrap();
        assert_eq!(adm.request, request("secret"));
        let conn = adm.admit().await.unwrap();
        // Echo every stream the client opens, reversed.
        let mut echoes = Vec::new();
        for _ in 0..3 {
            let mut pair = conn.accept_stream().await.unwrap();
            echoes.push(tokio::spawn(async move {
                let mut data = Vec::new();
                pair.recv.read_to_end(&mut data).await.unwrap();
                data.reverse();
                pair.send.write_all(&data).await.unwrap();
                pair.send.shutdown().await.unwrap();
            }));
        }
        for e in echoes {
            e.await.unwrap();
        }
        conn.close().await.unwrap();
    });
    let tuning = QuicTuning {
        streams: 3,
        ..QuicTuning::default()
    };
    let client = QuicTransport::new(QuicTrust::Pinned(id.fingerprint()), None, tuning);
    let conn = client
        .connect_to(addr, "localhost", &request("secret"))
        .await
        .unwrap();
    let caps = conn.capabilities();
    assert_eq!(caps.max_streams, 3);
    // One congestion controller for all streams; datagrams negotiated by both ends.
    assert!(caps.encrypted && caps.datagrams && !caps.independent_congestion);
    let mut tasks = Vec::new();
    for i in 0..3u8 {
        let mut pair = conn.open_stream().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..3_000_000u32).map(|x| (x as u8) ^ i).collect();
            let send = async {
                pair.send.write_all(&data).await.unwrap();
                pair.send.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let recv = pair.recv.read_to_end(&mut back);
            let (_, r) = tokio::join!(send, recv);
            r.unwrap();
            back.reverse();
            assert!(back == data, "stream {i} came back changed");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = conn.path_stats().unwrap();
    assert!(stats.bytes_sent.unwrap() > 9_000_000);
    conn.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_other_than_the_pinned_one_is_refused() {
    let (server, _id) = server();
    let addr = server.local_addr().unwrap();
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = srv.incoming().await {
            let _ = srv.handshake(incoming).await;
        }
    });
    let other = Identity::generate(&["localhost".into()]).unwrap();
    let client = QuicTransport::new(
        QuicTrust::Pinned(other.fingerprint()),
        None,
        QuicTuning::default(),
    );
    let err = client
        .connect_to(addr, "localhost", &request("x"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TransportError::Auth(_)), "{text}");
    assert!(text.contains("HAS CHANGED"), "{text}");
    assert!(text.contains(&other.fingerprint().to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reaches_the_client_with_its_code() {
    let (server, id) = server();
    let addr = server.local_addr().unwrap();
    let srv = server.clone();
    tokio::spawn(async move {
        let incoming = srv.incoming().await.unwrap();
        let adm = srv.handshake(incoming).await.unwrap();
        adm.refuse(5, "token not recognised").await;
    });
    let client = QuicTransport::new(
        QuicTrust::Pinned(id.fingerprint()),
        None,
        QuicTuning::default(),
    );
    match client.connect_to(addr, "localhost", &request("bad")).await {
        Err(TransportError::Refused { code, message }) => {
            assert_eq!(code, 5);
            assert_eq!(message, "token not recognised");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_admission_bytes_end_only_that_connection() {
    let (server, id) = server();
    let addr = server.local_addr().unwrap();
    // A raw quinn client sending garbage, then an oversize length, instead of a request.
    let mut crypto = tls::client_config(
        &tls::ServerTrust::Pin {
            expected: Some(id.fingerprint()),
            seen: Default::default(),
        },
        None,
    )
    .unwrap();
    crypto.alpn_protocols = vec![tls::ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
    for bad in [&b"SSH-2.0-hello\r\n"[..], &b"ASQ1\xff\xff\xff\xff"[..]] {
        let srv = server.clone();
        let judged = tokio::spawn(async move {
            let incoming = srv.incoming().await.unwrap();
            srv.handshake(incoming).await.map(|_| ())
        });
        let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(bad).await.unwrap();
        let err = judged.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("admission"), "{err}");
        // The peer's fault, typed as such (with the decoder's error as the source).
        assert!(
            matches!(
                err,
                TransportError::PeerMisbehaved(PeerMisbehaved::Undecodable { .. })
            ),
            "{err:?}"
        );
    }
    // The server still admits a proper client afterwards.
    let srv = server.clone();
    tokio::spawn(async move {
        let incoming = srv.incoming().await.unwrap();
        let adm = srv.handshake(incoming).await.unwrap();
        let c = adm.admit().await.unwrap();
        c.closed().await;
    });
    let client = QuicTransport::new(
        QuicTrust::Pinned(id.fingerprint()),
        None,
        QuicTuning::default(),
    );
    let conn = client
        .connect_to(addr, "localhost", &request("ok"))
        .await
        .unwrap();
    conn.close().await.unwrap();
}
