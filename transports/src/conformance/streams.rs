//! The suite's stream cases: what a [`Connection`] and its [`StreamPair`]s must do for the
//! engine — open and accept, carry bytes unchanged both ways (large and in small pieces),
//! end a direction on `shutdown`, deliver everything written before `close`, open as many
//! streams as claimed, and not claim what they do not have. Each case makes its own pairs and
//! bounds every wait. The engine itself is exercised in [`super::sync`].

use std::collections::BTreeSet;

use arsync_core::transport::{Connection, StreamPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{bounded, ensure, fresh_pair, ConformanceError, ConnectedPair, PairMaker, STEP_LIMIT};

/// The bytes of one large transfer each way.
pub const LARGE: usize = 8 << 20;
/// How many small writes each way.
const SMALL_WRITES: usize = 5_000;
/// The bytes `close` must drain.
const DRAINED: usize = 4 << 20;
/// The most streams one case opens at once (a transport may claim more).
pub const MOST_STREAMS_CHECKED: u32 = 256;
/// The bytes each of those streams carries.
const PER_STREAM: usize = 16 << 10;
/// What an opener writes first, so that the peer learns of the stream (QUIC announces a
/// stream only with its first data).
const HELLO: &[u8] = b"conformance: hello\n";

/// Deterministic bytes (xorshift64*), different per seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// Write all of `data` and flush, bounded.
async fn send_all(
    send: &mut (impl AsyncWrite + Unpin + ?Sized),
    data: &[u8],
    step: &str,
) -> Result<(), ConformanceError> {
    bounded(step, async {
        send.write_all(data).await?;
        send.flush().await
    })
    .await
}

/// Read exactly `len` bytes, bounded.
async fn receive_exactly(
    recv: &mut (impl AsyncRead + Unpin + ?Sized),
    len: usize,
    step: &str,
) -> Result<Vec<u8>, ConformanceError> {
    let mut buf = vec![0u8; len];
    bounded(step, recv.read_exact(&mut buf)).await?;
    Ok(buf)
}

/// Read until the end of the stream, bounded (a transport whose `shutdown` or `close` does not
/// end the peer's reads times out here).
async fn receive_to_end(
    recv: &mut (impl AsyncRead + Unpin + ?Sized),
    step: &str,
) -> Result<Vec<u8>, ConformanceError> {
    let mut buf = Vec::new();
    bounded(step, recv.read_to_end(&mut buf)).await?;
    Ok(buf)
}

/// Fail unless `got` is `want`, naming the first differing byte.
fn same_bytes(what: &str, got: &[u8], want: &[u8]) -> Result<(), ConformanceError> {
    ensure(got == want, || {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        format!(
            "{what}: {} bytes arrived where {} were sent, first difference at byte {at}",
            got.len(),
            want.len()
        )
    })
}

/// One stream: opened by `opener` (which writes [`HELLO`] on it) and accepted by `acceptor`
/// (which reads it); returns (the opener's end, the acceptor's end).
pub async fn open_and_greet(
    opener: &dyn Connection,
    acceptor: &dyn Connection,
    who: &str,
) -> Result<(StreamPair, StreamPair), ConformanceError> {
    let open = async {
        let mut s = bounded(&format!("{who}: open_stream"), opener.open_stream()).await?;
        send_all(
            &mut s.send,
            HELLO,
            &format!("{who}: writing the first bytes"),
        )
        .await?;
        Ok::<_, ConformanceError>(s)
    };
    let accept = async {
        let mut s = bounded(&format!("{who}: accept_stream"), acceptor.accept_stream()).await?;
        let got = receive_exactly(
            &mut s.recv,
            HELLO.len(),
            &format!("{who}: reading the first bytes"),
        )
        .await?;
        same_bytes(&format!("{who}: the first bytes"), &got, HELLO)?;
        Ok(s)
    };
    tokio::try_join!(open, accept)
}

/// Close both ends at once (each waits for the other where its transport must), bounded.
pub async fn close_both(pair: &ConnectedPair) -> Result<(), ConformanceError> {
    tokio::try_join!(
        bounded("closing the client", pair.client.close()),
        bounded("closing the server", pair.server.close()),
    )?;
    Ok(())
}

/// Open on `opener`, accept on `acceptor`, and a message each way.
async fn ping_pong(
    opener: &dyn Connection,
    acceptor: &dyn Connection,
    who: &str,
) -> Result<(), ConformanceError> {
    let (mut o, mut a) = open_and_greet(opener, acceptor, who).await?;
    let reply = b"and back";
    send_all(&mut a.send, reply, &format!("{who}: answering")).await?;
    let got = receive_exactly(
        &mut o.recv,
        reply.len(),
        &format!("{who}: reading the answer"),
    )
    .await?;
    same_bytes(&format!("{who}: the answer"), &got, reply)
}

/// A stream opened by the client is accepted by the server, bytes both ways; and the other way
/// round on a fresh pair — or, where the pair says the server only accepts, the server's
/// `open_stream` fails at once instead of waiting.
pub async fn open_and_accept(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    let pair = fresh_pair(maker).await?;
    ping_pong(&*pair.client, &*pair.server, "client opens").await?;
    close_both(&pair).await?;

    let pair = fresh_pair(maker).await?;
    if pair.server_opens() {
        ping_pong(&*pair.server, &*pair.client, "server opens").await?;
    } else {
        match tokio::time::timeout(STEP_LIMIT, pair.server.open_stream()).await {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => {
                return Err(ConformanceError::Violation(
                    "the server opened a stream, though the pair says it only accepts".into(),
                ))
            }
            Err(_) => {
                return Err(ConformanceError::Violation(format!(
                    "the server's open_stream waited {STEP_LIMIT:?} instead of failing"
                )))
            }
        }
        // The refusal leaves the connection usable.
        ping_pong(
            &*pair.client,
            &*pair.server,
            "client opens after the refusal",
        )
        .await?;
    }
    close_both(&pair).await
}

/// [`LARGE`] bytes each way on one stream, both directions at once (a transport that cannot
/// read while it writes deadlocks here).
pub async fn large_transfer(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    let pair = fresh_pair(maker).await?;
    let (mut c, mut s) = open_and_greet(&*pair.client, &*pair.server, "client opens").await?;
    let (up, down) = (pattern(LARGE, 1), pattern(LARGE, 2));
    let (_, _, got_up, got_down) = tokio::try_join!(
        send_all(&mut c.send, &up, "client writing 8 MiB"),
        send_all(&mut s.send, &down, "server writing 8 MiB"),
        receive_exactly(&mut s.recv, LARGE, "server reading 8 MiB"),
        receive_exactly(&mut c.recv, LARGE, "client reading 8 MiB"),
    )?;
    same_bytes("client to server", &got_up, &up)?;
    same_bytes("server to client", &got_down, &down)?;
    drop((c, s));
    close_both(&pair).await
}

/// The small writes of one direction: sizes 1 to 64, each flushed.
fn small_pieces(seed: u64) -> Vec<Vec<u8>> {
    let sizes = pattern(SMALL_WRITES, seed);
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(usize::from(n % 64) + 1, seed ^ i as u64))
        .collect()
}

/// Write each piece and flush it.
async fn send_pieces(
    send: &mut (impl AsyncWrite + Unpin + ?Sized),
    pieces: &[Vec<u8>],
    step: &str,
) -> Result<(), ConformanceError> {
    bounded(step, async {
        for p in pieces {
            send.write_all(p).await?;
            send.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    })
    .await
}

/// Read `len` bytes in small reads of varying size.
async fn receive_in_pieces(
    recv: &mut (impl AsyncRead + Unpin + ?Sized),
    len: usize,
    step: &str,
) -> Result<Vec<u8>, ConformanceError> {
    bounded(step, async {
        let mut out = Vec::with_capacity(len);
        let mut buf = [0u8; 100];
        let mut i = 0usize;
        while out.len() < len {
            let want = (i % buf.len() + 1).min(len - out.len());
            let n = recv.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            out.extend_from_slice(&buf[..n]);
            i += 7;
        }
        Ok(out)
    })
    .await
}

/// Thousands of small flushed writes each way, at once, arrive whole and in order; the reader
/// reads in small pieces too.
pub async fn many_small_writes(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    let pair = fresh_pair(maker).await?;
    let (mut c, mut s) = open_and_greet(&*pair.client, &*pair.server, "client opens").await?;
    let (up, down) = (small_pieces(3), small_pieces(4));
    let (up_all, down_all) = (up.concat(), down.concat());
    let (_, _, got_up, got_down) = tokio::try_join!(
        send_pieces(&mut c.send, &up, "client writing small pieces"),
        send_pieces(&mut s.send, &down, "server writing small pieces"),
        receive_in_pieces(&mut s.recv, up_all.len(), "server reading small pieces"),
        receive_in_pieces(&mut c.recv, down_all.len(), "client reading small pieces"),
    )?;
    same_bytes("client to server", &got_up, &up_all)?;
    same_bytes("server to client", &got_down, &down_all)?;
    drop((c, s));
    close_both(&pair).await
}

/// `shutdown` of the client's send half ends the server's reads (after the bytes before it);
/// the server can still answer on the half-closed stream, and its own `shutdown` ends the
/// client's reads. An ended stream stays ended.
pub async fn end_of_stream(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    let pair = fresh_pair(maker).await?;
    let (mut c, mut s) = open_and_greet(&*pair.client, &*pair.server, "client opens").await?;
    let last = b"the client's last words";
    send_all(&mut c.send, last, "client writing").await?;
    bounded("client shutting its send half down", c.send.shutdown()).await?;
    let got = receive_to_end(
        &mut s.recv,
        "server reading to the end the client's shutdown made",
    )
    .await?;
    same_bytes("before the client's end", &got, last)?;

    let answer = b"the server answers on a half-closed stream";
    send_all(&mut s.send, answer, "server writing after the client's end").await?;
    bounded("server shutting its send half down", s.send.shutdown()).await?;
    let got = receive_to_end(
        &mut c.recv,
        "client reading to the end the server's shutdown made",
    )
    .await?;
    same_bytes("before the server's end", &got, answer)?;

    for (who, recv) in [("server", &mut s.recv), ("client", &mut c.recv)] {
        let mut byte = [0u8; 1];
        let n = bounded(
            &format!("{who} reading again after the end"),
            recv.read(&mut byte),
        )
        .await?;
        ensure(n == 0, || {
            format!("the {who}'s stream gave bytes after its end")
        })?;
    }
    drop((c, s));
    close_both(&pair).await
}

/// Everything written before `close` arrives: the client writes [`DRAINED`] bytes, drops its
/// stream and closes its connection at once while the server reads; then the server does the
/// same on a fresh pair.
pub async fn close_drains(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    for server_writes in [false, true] {
        let pair = fresh_pair(maker).await?;
        let (c, s) = open_and_greet(&*pair.client, &*pair.server, "client opens").await?;
        let (writer_conn, reader_conn, mut writer, mut reader, who) = if server_writes {
            (&*pair.server, &*pair.client, s, c, "server")
        } else {
            (&*pair.client, &*pair.server, c, s, "client")
        };
        let data = pattern(DRAINED, 5);
        let write_and_close = async {
            send_all(&mut writer.send, &data, &format!("{who} writing")).await?;
            drop(writer);
            bounded(
                &format!("{who} closing right after writing"),
                writer_conn.close(),
            )
            .await
        };
        let read_then_close = async {
            let got = receive_to_end(
                &mut reader.recv,
                &format!("reading what the {who} wrote before closing"),
            )
            .await?;
            drop(reader);
            bounded("closing the reading side", reader_conn.close()).await?;
            Ok(got)
        };
        let (_, got) = tokio::try_join!(write_and_close, read_then_close)?;
        same_bytes(&format!("written by the {who} before close"), &got, &data)?;
    }
    Ok(())
}

/// As many streams as both ends claim (at most [`MOST_STREAMS_CHECKED`]), all open at once,
/// each carrying its own bytes both ways; on a one-stream transport a second `open_stream`
/// fails instead of waiting.
pub async fn claimed_streams(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    let pair = fresh_pair(maker).await?;
    let (cc, sc) = (pair.client.capabilities(), pair.server.capabilities());
    let n = cc.max_streams.min(sc.max_streams).min(MOST_STREAMS_CHECKED);
    ensure(n >= 1, || "a side claims max_streams 0".into())?;
    let opener = async {
        let mut opened = Vec::new();
        for i in 0..n {
            let step = format!("opening stream {} of {n} claimed", i + 1);
            let mut s = bounded(&step, pair.client.open_stream()).await?;
            let mut first = i.to_le_bytes().to_vec();
            first.extend(pattern(PER_STREAM, u64::from(i)));
            send_all(&mut s.send, &first, &step).await?;
            opened.push((i, s));
        }
        Ok::<_, ConformanceError>(opened)
    };
    let acceptor = async {
        let mut accepted = Vec::new();
        for k in 0..n {
            let step = format!("accepting stream {} of {n}", k + 1);
            let mut s = bounded(&step, pair.server.accept_stream()).await?;
            let first = receive_exactly(&mut s.recv, 4 + PER_STREAM, &step).await?;
            let i = u32::from_le_bytes([first[0], first[1], first[2], first[3]]);
            same_bytes(
                &format!("stream {i}"),
                &first[4..],
                &pattern(PER_STREAM, u64::from(i)),
            )?;
            accepted.push((i, s));
        }
        Ok(accepted)
    };
    let (mut opened, mut accepted) = tokio::try_join!(opener, acceptor)?;
    let seen: BTreeSet<u32> = accepted.iter().map(|(i, _)| *i).collect();
    ensure(
        seen.len() == n as usize && seen.iter().all(|&i| i < n),
        || format!("the server accepted streams {seen:?} where 0..{n} were opened"),
    )?;
    for (i, s) in &mut accepted {
        let back: Vec<u8> = pattern(PER_STREAM, u64::from(*i))
            .into_iter()
            .rev()
            .collect();
        send_all(
            &mut s.send,
            &back,
            &format!("server answering on stream {i}"),
        )
        .await?;
    }
    for (i, s) in &mut opened {
        let want: Vec<u8> = pattern(PER_STREAM, u64::from(*i))
            .into_iter()
            .rev()
            .collect();
        let got = receive_exactly(
            &mut s.recv,
            PER_STREAM,
            &format!("client reading stream {i}"),
        )
        .await?;
        same_bytes(&format!("the answer on stream {i}"), &got, &want)?;
    }
    if cc.max_streams == 1 {
        match tokio::time::timeout(STEP_LIMIT, pair.client.open_stream()).await {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => {
                return Err(ConformanceError::Violation(
                    "a second open_stream succeeded on a connection claiming max_streams 1".into(),
                ))
            }
            Err(_) => {
                return Err(ConformanceError::Violation(format!(
                    "a second open_stream on a one-stream connection waited {STEP_LIMIT:?} \
                     instead of failing"
                )))
            }
        }
    }
    drop((opened, accepted));
    close_both(&pair).await
}

/// The claims a test can observe: at least one stream each; both ends agree about a shared
/// filesystem, and where they claim one a file one side writes is there for the other;
/// independent congestion only with several streams; path statistics, where given, count at
/// least the bytes that went through. (`encrypted` and `datagrams` cannot be seen from the
/// boundary and are not checked.)
pub async fn honest_capabilities(maker: &dyn PairMaker) -> Result<(), ConformanceError> {
    let pair = fresh_pair(maker).await?;
    let (cc, sc) = (pair.client.capabilities(), pair.server.capabilities());
    for (who, caps) in [("client", &cc), ("server", &sc)] {
        ensure(caps.max_streams >= 1, || {
            format!("the {who} claims max_streams 0")
        })?;
        ensure(!caps.independent_congestion || caps.max_streams > 1, || {
            format!("the {who} claims independent congestion control for a single stream")
        })?;
    }
    ensure(cc.shared_filesystem == sc.shared_filesystem, || {
        format!(
            "the ends disagree about sharing a filesystem (client {}, server {})",
            cc.shared_filesystem, sc.shared_filesystem
        )
    })?;
    let (mut c, mut s) = open_and_greet(&*pair.client, &*pair.server, "client opens").await?;
    if cc.shared_filesystem {
        shared_file_is_seen(&mut c, &mut s).await?;
    }
    let data = pattern(1 << 20, 6);
    let (_, got) = tokio::try_join!(
        send_all(&mut c.send, &data, "client writing 1 MiB"),
        receive_exactly(&mut s.recv, data.len(), "server reading 1 MiB"),
    )?;
    same_bytes("1 MiB", &got, &data)?;
    let min = data.len() as u64;
    if let Some(stats) = pair.client.path_stats() {
        ensure(stats.bytes_sent.is_none_or(|n| n >= min), || {
            format!(
                "the client's path statistics count {:?} bytes sent after 1 MiB",
                stats.bytes_sent
            )
        })?;
        ensure(stats.cwnd != Some(0), || {
            "the client's congestion window is 0".into()
        })?;
    }
    if let Some(stats) = pair.server.path_stats() {
        ensure(stats.bytes_received.is_none_or(|n| n >= min), || {
            format!(
                "the server's path statistics count {:?} bytes received after 1 MiB",
                stats.bytes_received
            )
        })?;
    }
    drop((c, s));
    close_both(&pair).await
}

/// The server writes a file and sends its path; the client must find the same bytes there.
async fn shared_file_is_seen(
    c: &mut StreamPair,
    s: &mut StreamPair,
) -> Result<(), ConformanceError> {
    let dir = tempfile::tempdir().map_err(|source| ConformanceError::Io {
        step: "making a directory for the shared-filesystem probe".into(),
        source,
    })?;
    let path = dir.path().join("probe");
    let content = pattern(4096, 7);
    std::fs::write(&path, &content).map_err(|source| ConformanceError::Io {
        step: "writing the shared-filesystem probe".into(),
        source,
    })?;
    let name = path.to_string_lossy().into_owned().into_bytes();
    let mut msg = (name.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(&name);
    send_all(&mut s.send, &msg, "server sending the probe's path").await?;
    let len = receive_exactly(&mut c.recv, 4, "client reading the probe's path").await?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let name = receive_exactly(&mut c.recv, len, "client reading the probe's path").await?;
    let seen = std::fs::read(String::from_utf8_lossy(&name).as_ref()).map_err(|e| {
        ConformanceError::Violation(format!(
            "a shared filesystem is claimed, but the client cannot read the file the server \
             wrote: {e}"
        ))
    })?;
    same_bytes("the shared-filesystem probe", &seen, &content)
}
