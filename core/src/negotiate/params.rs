//! The session's parameters between two arsyncs, decided from the link and the CPU — pure.
//!
//! Owns: [`LinkEstimate`] (what is known of the link: RTT, delivery rate, whether both ends
//! are on this machine) and where it comes from in the probes' [`Observations`];
//! [`CpuSpeed`] (what this machine hashes, chunks and compresses per second);
//! [`Compressibility`] (how a sample of the data to send compresses); and one
//! decision per parameter, each a [`Decision`] with its reason for `--explain`: how chunks
//! are sized ([`chunk_sizing`]), directory levels per round trip ([`tree_levels`]), streams
//! ([`streams`]), compression ([`compression`]) and the protocol variant, merkle CDC or whole
//! files ([`variant`]). An explicit option always wins ("asked for"); a missing observation
//! gives today's default ("not measured").
//!
//! Not here: running the CPU probe or caching it, or reading the sample (the binary's
//! `cpu_probe` and `data_sample`), remembering a host's link (`negotiate::memory`), or how
//! both ends agree on what was chosen (the `tune` capability,
//! [`crate::proto::merkle::caps::Tune`], applied by [`crate::engine::tune`]).

use std::time::Duration;

use super::{
    millis, ConnectionPath, Decision, Observations, QuicSeen, RemoteArsync, Request,
    DEFAULT_STREAMS,
};
use crate::engine::options::DEFAULT_TREE_LEVELS;
use crate::merkle::chunk::{delta_params, ChunkParams};
use crate::proto::merkle::caps::Tune;

/// What is known of the link to the remote side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkEstimate {
    /// Round-trip time, if measured.
    pub rtt: Option<Duration>,
    /// Delivery rate in bytes per second, if measured.
    pub rate: Option<u64>,
    /// Both ends are on this machine (a loopback address): no round trip to fill and no
    /// wire to spare by compressing (its rate is still what the transport's CPU allows).
    pub local: bool,
}

impl LinkEstimate {
    /// The bandwidth-delay product in bytes, when both RTT and rate are known.
    pub fn bdp(&self) -> Option<u64> {
        let (rtt, rate) = (self.rtt?, self.rate?);
        Some((rate as u128 * rtt.as_micros() / 1_000_000).min(u128::from(u64::MAX)) as u64)
    }
}

/// How fast this machine runs the project's own data paths, as a session runs them (BLAKE3
/// and zstd on one core, the chunker hashing its chunks on all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSpeed {
    /// BLAKE3 over an in-memory buffer, bytes per second.
    pub hash_bytes_per_sec: u64,
    /// FastCDC boundaries and a BLAKE3 of each chunk ([`crate::merkle::chunk`]), bytes per
    /// second.
    pub chunk_bytes_per_sec: u64,
    /// zstd at level [`AUTO_COMPRESS_LEVEL`], bytes per second of input.
    pub compress_bytes_per_sec: u64,
}

/// How well a sample of the data to send compresses (zstd at [`AUTO_COMPRESS_LEVEL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compressibility {
    /// Bytes sampled.
    pub sampled: u64,
    /// What they compressed to.
    pub packed: u64,
}

impl Compressibility {
    /// Whether compressing saves at least a tenth.
    pub fn pays(&self) -> bool {
        self.packed.saturating_mul(10) < self.sampled.saturating_mul(9)
    }

    /// `compresses to 48 %` (of what was sampled).
    pub fn percent(&self) -> u64 {
        (u128::from(self.packed) * 100 / u128::from(self.sampled.max(1))) as u64
    }
}

/// The parameters the command line fixed (`None`: negotiation chooses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParamsAsk {
    /// `--tree-levels`.
    pub tree_levels: Option<u32>,
    /// `--chunk-size`: the average chunk size.
    pub chunk_avg: Option<u32>,
    /// `-W` (`Some(true)`) or `--no-whole-file` (`Some(false)`).
    pub whole_file: Option<bool>,
    /// `-z` / `--compress-level`: the zstd level.
    pub compress: Option<i32>,
}

/// How chunks are sized for the delta exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSizing {
    /// `--chunk-size`: this average for every file.
    Fixed(u32),
    /// From each file's size and the link's bandwidth-delay product (0: unknown), as
    /// [`ChunkParams::for_file`] does.
    ByFile {
        /// Bytes.
        bdp: u64,
    },
}

/// What is spoken for the files' data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataVariant {
    /// Merkle trees over content-defined chunks: only changed chunks travel.
    MerkleCdc,
    /// Whole files: no chunking or hashing of the basis (`-W`).
    WholeFile,
}

/// The zstd level negotiation turns compression on with.
pub const AUTO_COMPRESS_LEVEL: i32 = 3;
/// The most streams negotiation asks for (`--streams` may ask for more).
pub const MAX_AUTO_STREAMS: u32 = 16;
/// The most directory levels per round trip negotiation asks for.
pub const MAX_AUTO_TREE_LEVELS: u32 = 4;

/// The parameters of a merkle session, each with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The link they were decided from.
    pub link: LinkEstimate,
    /// How chunks are sized.
    pub chunks: Decision<ChunkSizing>,
    /// Directory levels of hashes per round trip.
    pub tree_levels: Decision<u32>,
    /// How many streams to ask for (`None`: as the transport offers, today's default); the
    /// plan's `streams` shows it.
    pub streams: Decision<Option<u32>>,
    /// zstd level, or `None` for no compression.
    pub compress: Decision<Option<i32>>,
    /// Merkle CDC or whole files.
    pub variant: Decision<DataVariant>,
}

/// What the probes say of the link: the kernel's RTT of the SSH login's connection where it
/// was read (`TCP_INFO`), else the QUIC handshake's time (one round trip and the crypto, two
/// when the certificate is more than the server may send to an unvalidated address: an upper
/// bound), else the SSH login's over four (key exchange, authentication, channel, command: at
/// least four round trips); local when the address reached is a loopback one. The per-host memory (`seen.remembered`) gives the rate, and the
/// RTT where this run made no handshake of its own.
pub fn link_estimate(seen: &Observations) -> LinkEstimate {
    let mut link = LinkEstimate::default();
    let offer = match &seen.remote {
        Some(RemoteArsync::OffersQuic(o)) => Some(o),
        _ => None,
    };
    if let Some(o) = offer {
        // Issue 16, native login: the kernel's RTT of the login's connection where known.
        link.rtt = Some(o.login_rtt.unwrap_or(o.login_took / 4));
        link.local = o.addr.is_some_and(|a| a.is_loopback());
    }
    match &seen.quic {
        Some(QuicSeen::Established { to, took }) => {
            link.rtt = Some(offer.and_then(|o| o.login_rtt).unwrap_or(*took));
            link.local = to.ip().is_loopback();
        }
        // Where the handshake went tells whether the peer is on this machine, even when it
        // failed (UDP blocked: the session then goes by TCP to the same address).
        Some(QuicSeen::TimedOut { to, .. } | QuicSeen::Failed { to, .. }) => {
            link.local |= to.ip().is_loopback();
        }
        _ => {}
    }
    // What earlier runs measured of this host (the per-host memory): a session's RTT where
    // this run has no handshake of its own, and its delivery rate.
    let facts = &seen.remembered;
    if seen.quic.is_none() {
        link.rtt = facts.rtt().or(link.rtt);
    }
    link.rate = facts.rate().or(link.rate);
    link
}

/// Chunk sizing: `--chunk-size`, else by file size and the BDP (0 when not measured).
pub fn chunk_sizing(ask: &ParamsAsk, link: &LinkEstimate) -> Decision<ChunkSizing> {
    if let Some(avg) = ask.chunk_avg {
        return Decision::new(ChunkSizing::Fixed(avg), "--chunk-size");
    }
    match link.bdp() {
        Some(bdp) if !link.local => Decision::new(
            ChunkSizing::ByFile { bdp },
            format!(
                "file size and a BDP of {} ({} × {}): a 1 GiB file gets {} chunks",
                bytes(bdp),
                rtt_text(link),
                rate_text(link),
                avg_text(delta_params(1 << 30, None, bdp, false))
            ),
        ),
        _ if link.local => Decision::new(
            ChunkSizing::ByFile { bdp: 0 },
            "file size alone: a local link has no round trip to fill",
        ),
        _ => Decision::new(
            ChunkSizing::ByFile { bdp: 0 },
            "file size alone: link rate not measured",
        ),
    }
}

/// Directory levels per round trip: more when a round trip is dear, so a deep tree needs
/// fewer of them (each level more costs only the hashes of one more level of directories).
/// Under 5 ms: the default 2; under 30 ms: 3; from 30 ms: [`MAX_AUTO_TREE_LEVELS`].
pub fn tree_levels(ask: &ParamsAsk, link: &LinkEstimate) -> Decision<u32> {
    if let Some(n) = ask.tree_levels {
        return Decision::new(n, "--tree-levels");
    }
    let Some(rtt) = link.rtt.filter(|_| !link.local) else {
        let why = if link.local {
            "the default: a local link"
        } else {
            "the default: RTT not measured"
        };
        return Decision::new(DEFAULT_TREE_LEVELS, why);
    };
    let n = if rtt < Duration::from_millis(5) {
        DEFAULT_TREE_LEVELS
    } else if rtt < Duration::from_millis(30) {
        DEFAULT_TREE_LEVELS + 1
    } else {
        MAX_AUTO_TREE_LEVELS
    };
    Decision::new(n, format!("RTT {}", millis(rtt)))
}

/// What a connection gives streams: each stream's receive window, and how many streams it
/// carries (a QUIC connection's are fixed when it is made, with the window for the whole
/// connection a multiple of the stream's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRoom {
    /// Bytes in flight one stream allows.
    pub window: u64,
    /// The most streams the connection carries.
    pub max: u32,
}

/// Streams: `--streams`; else, where the connection carries several and the BDP is known,
/// enough that the per-stream windows cover the BDP, never fewer than [`DEFAULT_STREAMS`]
/// (streams also carry files side by side) nor more than the connection carries or
/// [`MAX_AUTO_STREAMS`]; else as the transport offers (today's default).
pub fn streams(
    asked: Option<u32>,
    link: &LinkEstimate,
    room: Option<StreamRoom>,
) -> Decision<Option<u32>> {
    if let Some(n) = asked {
        return Decision::new(Some(n), "--streams");
    }
    let (Some(bdp), Some(room)) = (link.bdp(), room.filter(|r| r.window > 0 && r.max > 0)) else {
        return Decision::new(None, "as the transport offers: BDP not measured");
    };
    let need = bdp.div_ceil(room.window).min(u64::from(MAX_AUTO_STREAMS)) as u32;
    let most = room.max.min(MAX_AUTO_STREAMS);
    let n = need.max(DEFAULT_STREAMS).min(most);
    let mut reason = format!(
        "a BDP of {} over a {} window per stream needs {need}",
        bytes(bdp),
        bytes(room.window)
    );
    if need > most {
        reason.push_str(&format!("; the connection carries {most}"));
    }
    Decision::new(Some(n), reason)
}

/// What a decision that needs the link's rate and this machine's speed lacks.
fn not_measured(link: &LinkEstimate, cpu: Option<&CpuSpeed>) -> &'static str {
    match (link.rate, cpu) {
        (None, Some(_)) => "the link's rate not measured yet",
        (Some(_), None) => "this machine's speed not measured",
        _ => "neither the link's rate nor this machine's speed measured",
    }
}

/// Compression: `-z`; else on (at [`AUTO_COMPRESS_LEVEL`]) when the link carries less than an
/// eighth of what one core compresses per second, so compressing never holds the link back
/// (with room for data that compresses worse than the probe's, and for a remembered rate
/// that is a lower bound: a session's bytes over its whole time), unless a `sample` of the
/// data to send saves less than a tenth; else off (today's default, also when not measured).
/// A gigabit LAN (≈ 110 MB/s) stays uncompressed on a core that compresses ≈ 400 MB/s; a
/// 100 Mbit/s WAN is compressed.
pub fn compression(
    ask: &ParamsAsk,
    link: &LinkEstimate,
    cpu: Option<&CpuSpeed>,
    sample: Option<&Compressibility>,
) -> Decision<Option<i32>> {
    if let Some(level) = ask.compress {
        return Decision::new(Some(level), "-z");
    }
    if link.local {
        return Decision::new(None, "a local link is faster than zstd");
    }
    let (Some(rate), Some(cpu)) = (link.rate, cpu) else {
        return Decision::new(None, not_measured(link, cpu));
    };
    if let Some(s) = sample.filter(|s| !s.pays()) {
        return Decision::new(
            None,
            format!(
                "the link carries {}, but a sample of the data compresses only to {} %",
                per_sec(rate),
                s.percent()
            ),
        );
    }
    if rate.saturating_mul(8) < cpu.compress_bytes_per_sec {
        Decision::new(
            Some(AUTO_COMPRESS_LEVEL),
            format!(
                "the link carries {}, zstd compresses {}",
                per_sec(rate),
                per_sec(cpu.compress_bytes_per_sec)
            ),
        )
    } else {
        Decision::new(
            None,
            format!(
                "the link carries {}, zstd compresses only {}",
                per_sec(rate),
                per_sec(cpu.compress_bytes_per_sec)
            ),
        )
    }
}

/// The variant: `-W`/`--no-whole-file`; whole files on a link that carries more than the
/// CPU chunks and hashes (the CDC's cost would then be the bottleneck); merkle CDC
/// otherwise. A local link is not taken to be that fast: between two arsyncs its rate is
/// what the transport's encryption and copies cost (the loopback bench: 1 GiB fresh by QUIC
/// 4.2 s, 0.1 % of it changed by the delta 2.6 s), so it needs a measured rate like any.
pub fn variant(
    ask: &ParamsAsk,
    link: &LinkEstimate,
    cpu: Option<&CpuSpeed>,
) -> Decision<DataVariant> {
    match ask.whole_file {
        Some(true) => return Decision::new(DataVariant::WholeFile, "-W"),
        Some(false) => return Decision::new(DataVariant::MerkleCdc, "--no-whole-file"),
        None => {}
    }
    let (Some(rate), Some(cpu)) = (link.rate, cpu) else {
        return Decision::new(DataVariant::MerkleCdc, not_measured(link, cpu));
    };
    if rate > cpu.chunk_bytes_per_sec {
        Decision::new(
            DataVariant::WholeFile,
            format!(
                "the link carries {}, more than chunking and hashing ({})",
                per_sec(rate),
                per_sec(cpu.chunk_bytes_per_sec)
            ),
        )
    } else {
        Decision::new(
            DataVariant::MerkleCdc,
            format!(
                "chunking and hashing ({}) outpace the link ({})",
                per_sec(cpu.chunk_bytes_per_sec),
                per_sec(rate)
            ),
        )
    }
}

/// Every parameter of a merkle session over `path`, from the request and what was observed.
pub fn for_plan(request: &Request, seen: &Observations, path: &ConnectionPath) -> Params {
    // Only QUIC's streams have a window of their own; a pool's width is fixed by then.
    let room = match path {
        ConnectionPath::BootstrapQuic | ConnectionPath::ArsyncDaemon => Some(StreamRoom {
            window: request.quic_window,
            max: request
                .registered
                .iter()
                .find(|t| t.name == super::names::QUIC)
                .map_or(DEFAULT_STREAMS, |t| t.max_streams),
        }),
        _ => None,
    };
    // Issue 16, remote CPU: both ends chunk a file sent by delta; the slower one bounds.
    let remote = seen.remembered.remote_chunking();
    let cpu = seen.cpu.map(|c| CpuSpeed {
        chunk_bytes_per_sec: remote.map_or(c.chunk_bytes_per_sec, |r| r.min(c.chunk_bytes_per_sec)),
        ..c
    });
    let mut params = decide(
        &request.params,
        request.streams,
        link_estimate(seen),
        (cpu.as_ref(), seen.sample.as_ref()),
        room,
    );
    if let (Some(r), Some(c)) = (remote, seen.cpu) {
        if r < c.chunk_bytes_per_sec && params.variant.reason.contains("chunking") {
            params.variant.reason.push_str(&format!(
                "; the remote end's chunking, remembered, is the slower ({} here)",
                per_sec(c.chunk_bytes_per_sec)
            ));
        }
    }
    params
}

/// Every parameter of a merkle session: `streams_asked` is `--streams`; `seen` this
/// machine's speed and how a sample of the data compresses, where measured; `room` what the
/// connection gives streams when it carries several (`None` otherwise).
pub fn decide(
    ask: &ParamsAsk,
    streams_asked: Option<u32>,
    link: LinkEstimate,
    (cpu, sample): (Option<&CpuSpeed>, Option<&Compressibility>),
    room: Option<StreamRoom>,
) -> Params {
    Params {
        chunks: chunk_sizing(ask, &link),
        tree_levels: tree_levels(ask, &link),
        streams: streams(streams_asked, &link, room),
        compress: compression(ask, &link, cpu, sample),
        variant: variant(ask, &link, cpu),
        link,
    }
}

impl Params {
    /// The `--explain` lines (without the `explain: ` prefix).
    pub fn explain(&self) -> Vec<String> {
        let link = &self.link;
        let mut lines = vec![format!(
            "link: RTT {}, rate {}{}",
            rtt_text(link),
            rate_text(link),
            if link.local { ", local" } else { "" }
        )];
        let chunks = match self.chunks.choice {
            ChunkSizing::Fixed(avg) => format!("{} chunks", bytes(u64::from(avg))),
            ChunkSizing::ByFile { .. } => "chunks sized per file".to_owned(),
        };
        lines.push(format!("decision: {chunks} ({})", self.chunks.reason));
        lines.push(format!(
            "decision: {} directory levels per round trip ({})",
            self.tree_levels.choice, self.tree_levels.reason
        ));
        let z = match self.compress.choice {
            Some(l) => format!("zstd level {l}"),
            None => "no compression".to_owned(),
        };
        lines.push(format!("decision: {z} ({})", self.compress.reason));
        let v = match self.variant.choice {
            DataVariant::MerkleCdc => "merkle CDC deltas",
            DataVariant::WholeFile => "whole files",
        };
        lines.push(format!("decision: {v} ({})", self.variant.reason));
        lines
    }

    /// The `tune` capability that tells the peer what was chosen, so both ends use the same.
    pub fn tune(&self) -> Tune {
        Tune {
            bdp: match self.chunks.choice {
                ChunkSizing::ByFile { bdp } => bdp,
                ChunkSizing::Fixed(_) => 0,
            },
            // The default goes unsaid: the receiver's own then stands, as it always did.
            tree_levels: match self.tree_levels.choice {
                DEFAULT_TREE_LEVELS => 0,
                n => n.min(255) as u8,
            },
            whole_file: self.variant.choice == DataVariant::WholeFile,
            compress: self
                .compress
                .choice
                .map_or(0, |l| l.clamp(1, i32::from(u8::MAX)) as u8),
        }
    }
}

fn rtt_text(link: &LinkEstimate) -> String {
    link.rtt.map_or("not measured".to_owned(), millis)
}

fn rate_text(link: &LinkEstimate) -> String {
    link.rate.map_or("not measured".to_owned(), per_sec)
}

fn avg_text(p: ChunkParams) -> String {
    match p {
        ChunkParams::Cdc { avg, .. } => bytes(u64::from(avg)),
        ChunkParams::Fixed { size } => bytes(u64::from(size)),
    }
}

/// `12.5 MB/s`.
pub fn per_sec(rate: u64) -> String {
    format!("{}/s", bytes(rate))
}

/// `1.2 MB`, `512 KB`, `300 B` (decimal units).
pub fn bytes(n: u64) -> String {
    let f = n as f64;
    if n >= 1_000_000_000 {
        format!("{:.1} GB", f / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.1} MB", f / 1e6)
    } else if n >= 1_000 {
        format!("{:.0} KB", f / 1e3)
    } else {
        format!("{n} B")
    }
}
