//! The client end of an rsync session, shared by pulls and pushes: the handshake
//! (`setup_protocol`, `negotiate_the_strings`) for either end, daemon logins and listings.
//!
//! Owns: protocol and checksum negotiation. The multiplexed streams it runs over are
//! [`super::mux`]'s. Does not own what the transfer does with them.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use crate::engine::event::EventSink;
use crate::error::SyncError;
use crate::proto::rsync::checksum::SumKind;
use crate::proto::rsync::codec::{
    self, put_i32, put_vstring, read_i32, read_varint, read_vstring, Source,
};
use crate::proto::rsync::ztoken::Compression;
use crate::transport::StreamPair;

pub(crate) use super::mux::{bad, from_read, Demux, Mux, Notices};

/// The compat flag of incremental recursion.
pub(crate) const CF_INC_RECURSE: i32 = 1;
/// The compat flag of a safe file list (`CF_SAFE_FLIST`): the I/O error rides on the list's
/// end marker even at protocol 30.
pub(crate) const CF_SAFE_FLIST: i32 = 1 << 3;

/// Newest rsync protocol spoken.
pub const RSYNC_PROTOCOL_MAX: u8 = 32;
/// Oldest rsync protocol spoken.
pub const RSYNC_PROTOCOL_MIN: u8 = 30;

/// A negotiated session.
pub(crate) struct RsyncLink {
    /// A pull's top-level names the sender may list (`None`: any).
    pub(crate) allowed_tops: Option<Vec<Vec<u8>>>,
    /// The negotiated compression when `-z` was asked for (the token stream is compressed).
    pub(crate) compress: Option<Compression>,
    pub(crate) input: Demux,
    pub(crate) output: Mux,
    pub(crate) proto: u8,
    pub(crate) compat: i32,
    pub(crate) sum: SumKind,
    pub(crate) seed: i32,
    pub(crate) proper_seed_order: bool,
    pub(crate) notices: Arc<Mutex<Notices>>,
    pub(crate) wire_in: Arc<AtomicU64>,
    pub(crate) wire_out: Arc<AtomicU64>,
}

/// How to open a session with an rsync daemon.
#[derive(Debug, Clone)]
pub struct DaemonLogin {
    /// `module/path` arguments (empty: list the modules).
    pub paths: Vec<String>,
    /// The server's arguments before the paths (`--server [--sender] -FLAGS …`).
    pub server_args: Vec<String>,
    /// User for modules that require authentication.
    pub user: String,
    /// Password for modules that require authentication.
    pub password: Option<String>,
    /// Show what the daemon says before the session (its MOTD), as rsync's client does unless
    /// `--no-motd`.
    pub motd: bool,
}

/// Where an rsync session starts: a remote shell running `rsync --server`, or a daemon.
#[derive(Debug)]
pub enum RsyncStart {
    /// The stream to `rsync --server …` started by a remote shell.
    Shell(StreamPair),
    /// A connection to an rsync daemon, and how to log in.
    Daemon(StreamPair, DaemonLogin),
}

impl RsyncStart {
    /// Run the client's handshake for this start, offering at most `protocol`; `inc_recurse`:
    /// the server may set incremental recursion (we offered `i`).
    pub(crate) fn connect(
        self,
        protocol: u8,
        opts: &crate::engine::options::SyncOptions,
        inc_recurse: bool,
        sink: Arc<dyn EventSink>,
    ) -> Result<RsyncLink, SyncError> {
        let offer = Offer {
            inc_recurse,
            ..Offer::from_opts(opts)
        };
        match self {
            RsyncStart::Shell(s) => RsyncLink::client(s, protocol, offer, sink),
            RsyncStart::Daemon(s, login) => {
                match RsyncLink::daemon(s, &login, protocol, offer, sink)? {
                    DaemonReply::Session(l) => Ok(*l),
                    DaemonReply::Listing(_) => Err(SyncError::Usage(
                        "the daemon listed its modules instead of opening one".into(),
                    )),
                }
            }
        }
    }
}

/// List an rsync daemon's modules (`name\tcomment` lines, as the daemon sends them).
pub fn daemon_list(
    stream: StreamPair,
    protocol: u8,
    sink: Arc<dyn EventSink>,
) -> Result<Vec<String>, SyncError> {
    let login = DaemonLogin {
        paths: Vec::new(),
        server_args: Vec::new(),
        user: String::new(),
        password: None,
        motd: false,
    };
    match RsyncLink::daemon(stream, &login, protocol, Offer::default(), sink)? {
        DaemonReply::Listing(l) => Ok(l),
        DaemonReply::Session(_) => Err(bad("daemon", "opened a session when asked for the list")),
    }
}

/// What the client offers in the negotiation: the checksum names, and (with `-z`) the
/// compression names and the zstd level. A `--checksum-choice`/`--compress-choice` narrows the
/// offer to that name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Offer {
    pub(crate) sums: String,
    pub(crate) compress: Option<(String, i32)>,
    /// `--timeout` for our reads (not negotiated: it rides along to the link).
    pub(crate) io_timeout: Option<u64>,
    /// We offered `i` (`-e.i…`): the server may set `CF_INC_RECURSE`.
    pub(crate) inc_recurse: bool,
}

impl Offer {
    pub(crate) fn from_opts(opts: &crate::engine::options::SyncOptions) -> Offer {
        Offer {
            sums: opts
                .checksum_choice
                .as_deref()
                .map(|c| c.split(',').next().unwrap_or("").to_owned())
                .unwrap_or_else(SumKind::offer),
            compress: opts.compress.map(|level| {
                (
                    opts.compress_choice
                        .clone()
                        .unwrap_or_else(|| crate::proto::rsync::ztoken::COMPRESS_NAMES.into()),
                    level,
                )
            }),
            io_timeout: opts.io_timeout,
            inc_recurse: false,
        }
    }
}

/// What a daemon said before the transfer: a session, or the module list.
pub(crate) enum DaemonReply {
    /// Ready for the transfer.
    Session(Box<RsyncLink>),
    /// The module listing (`name\tcomment` lines).
    Listing(Vec<String>),
}

/// The longest greeting, module or message line accepted from a daemon.
const MAX_LINE: usize = 4096;

fn read_line(input: &mut Demux) -> Result<String, SyncError> {
    let mut line = Vec::new();
    loop {
        let b = codec::read_u8(input).map_err(from_read)?;
        if b == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() >= MAX_LINE {
            return Err(bad("daemon line", "longer than 4096 bytes"));
        }
        line.push(b);
    }
}

/// Unpadded base64 (upstream's `base64_encode` with `pad` 0).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

impl RsyncLink {
    /// Open a session with an rsync daemon on `stream` (`start_inband_exchange`): greetings
    /// with the protocol and digest names, the module, authentication when asked
    /// (`auth_client`: base64 of MD5(password ‖ challenge)), the server's arguments, then
    /// the rest of the handshake without a second version exchange.
    pub(crate) fn daemon(
        stream: StreamPair,
        login: &DaemonLogin,
        protocol: u8,
        offer: Offer,
        sink: Arc<dyn EventSink>,
    ) -> Result<DaemonReply, SyncError> {
        let (mut input, mut output, notices, wire_in, wire_out) =
            Self::streams(stream, sink.clone(), offer.io_timeout);
        output.write(format!("@RSYNCD: {protocol}.0 md5 md4\n").as_bytes())?;
        let greeting = read_line(&mut input)?;
        let rest = greeting.strip_prefix("@RSYNCD: ").ok_or_else(|| {
            SyncError::Incompatible(format!(
                "the server sent {greeting:?} rather than a greeting"
            ))
        })?;
        let version = rest.split([' ', '.']).next().unwrap_or("");
        let sub = rest
            .split(' ')
            .next()
            .and_then(|v| v.split_once('.'))
            .map_or("0", |x| x.1);
        let remote: i32 = version
            .parse()
            .map_err(|_| bad("daemon greeting", greeting.clone()))?;
        let digests: Vec<&str> = rest.split(' ').skip(1).collect();
        let mut proto = remote.min(i32::from(protocol));
        if remote == i32::from(protocol) && sub != "0" {
            proto -= 1;
        }
        if proto < i32::from(RSYNC_PROTOCOL_MIN) {
            return Err(SyncError::Incompatible(format!(
                "the rsync daemon speaks protocol {remote}; arsync speaks {RSYNC_PROTOCOL_MIN} to {RSYNC_PROTOCOL_MAX}"
            )));
        }
        let module = login
            .paths
            .first()
            .map(|p| p.split('/').next().unwrap_or("").to_owned())
            .unwrap_or_default();
        output.write(format!("{module}\n").as_bytes())?;
        let mut listing = Vec::new();
        loop {
            let line = read_line(&mut input)?;
            if let Some(challenge) = line.strip_prefix("@RSYNCD: AUTHREQD ") {
                if !digests.is_empty() && !digests.contains(&"md5") {
                    return Err(SyncError::Incompatible(format!(
                        "the daemon offers no authentication digest arsync has ({})",
                        digests.join(" ")
                    )));
                }
                let password = login.password.clone().ok_or_else(|| {
                    SyncError::Usage(format!(
                        "module {module} needs a password: --password-file or RSYNC_PASSWORD"
                    ))
                })?;
                use md5::Digest as _;
                let mut h = md5::Md5::new();
                h.update(password.as_bytes());
                h.update(challenge.as_bytes());
                let answer = base64(&h.finalize());
                output.write(format!("{} {answer}\n", login.user).as_bytes())?;
                continue;
            }
            if line == "@RSYNCD: OK" {
                // What came before the go-ahead is the daemon's message of the day.
                if login.motd {
                    for message in listing.drain(..) {
                        sink.event(crate::engine::event::Event::PeerInfo { message });
                    }
                }
                break;
            }
            if line == "@RSYNCD: EXIT" {
                return Ok(DaemonReply::Listing(listing));
            }
            if let Some(msg) = line.strip_prefix("@ERROR") {
                return Err(SyncError::Remote {
                    code: 5,
                    message: msg.trim_start_matches(':').trim().to_owned(),
                });
            }
            listing.push(line);
        }
        // The arguments, NUL-terminated from protocol 30 on, then an empty one.
        let mut args = Vec::new();
        for a in login
            .server_args
            .iter()
            .chain(std::iter::once(&".".to_owned()))
            .chain(&login.paths)
        {
            args.extend_from_slice(a.as_bytes());
            args.push(0);
        }
        args.push(0);
        output.write(&args)?;
        Self::negotiate(input, output, proto, offer, notices, wire_in, wire_out)
            .map(|l| DaemonReply::Session(Box::new(l)))
    }

    /// Run the server's half of the handshake for a client whose `-e.` letters are
    /// `client_info` (`setup_protocol` as a server): incremental recursion when `inc_recurse`
    /// (our side may use it) and the client offered `i`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        stream: StreamPair,
        client_info: &str,
        inc_recurse: bool,
        compress: Option<i32>,
        choices: (Option<String>, Option<String>),
        io_timeout: Option<u64>,
        sink: Arc<dyn EventSink>,
    ) -> Result<RsyncLink, SyncError> {
        let (compress_choice, checksum_choice) = choices;
        let (mut input, mut output, notices, wire_in, wire_out) =
            Self::streams(stream, sink, io_timeout);
        let mut hs = Vec::new();
        put_i32(&mut hs, i32::from(RSYNC_PROTOCOL_MAX));
        output.write(&hs)?;
        let remote = read_i32(&mut input).map_err(from_read)?;
        let proto = remote.min(i32::from(RSYNC_PROTOCOL_MAX));
        if proto < i32::from(RSYNC_PROTOCOL_MIN) {
            return Err(SyncError::Incompatible(format!(
                "the rsync client speaks protocol {remote}; arsync speaks {RSYNC_PROTOCOL_MIN} to {RSYNC_PROTOCOL_MAX}"
            )));
        }
        let has = |c: char| client_info.contains(c);
        let mut compat = 1 << 1; // symlink times
        if inc_recurse && has('i') {
            compat |= CF_INC_RECURSE;
        }
        for (c, bit) in [('f', 3), ('x', 4), ('C', 5), ('I', 6), ('v', 7), ('u', 8)] {
            if has(c) {
                compat |= 1 << bit;
            }
        }
        let mut c = Vec::new();
        codec::put_varint(&mut c, compat);
        output.write(&c)?;
        let mut chosen: Option<Compression> = None;
        // A choice the client made on its command line is not negotiated (on either side).
        let fixed_sum = checksum_choice
            .as_deref()
            .and_then(|c| SumKind::from_name(c.split(',').next().unwrap_or("").as_bytes()));
        let fixed_compress = compress_choice
            .as_deref()
            .and_then(|c| Compression::from_name(c.as_bytes(), compress.unwrap_or(3)));
        let compress = if fixed_compress.is_some() {
            None
        } else {
            compress
        };
        if compress.is_some() && !has('v') {
            return Err(SyncError::Incompatible(
                "the rsync client cannot negotiate compression (older than 3.2): run without -z"
                    .into(),
            ));
        }
        let sum = if let Some(k) = fixed_sum.filter(|_| compress.is_none()) {
            k
        } else if has('v') {
            // Both sides send their lists before reading the other's.
            let mut v = Vec::new();
            if fixed_sum.is_none() {
                put_vstring(&mut v, SumKind::offer().as_bytes());
            }
            if compress.is_some() {
                put_vstring(
                    &mut v,
                    crate::proto::rsync::ztoken::COMPRESS_NAMES.as_bytes(),
                );
            }
            output.write(&v)?;
            let theirs = if fixed_sum.is_none() {
                read_vstring(&mut input, 255).map_err(from_read)?
            } else {
                Vec::new()
            };
            if let Some(level) = compress {
                let names = read_vstring(&mut input, 255).map_err(from_read)?;
                // The first of the client's names we have.
                chosen = names
                    .split(|&b| b == b' ')
                    .find_map(|n| Compression::from_name(n, level));
                if chosen.is_none() {
                    return Err(SyncError::Incompatible(format!(
                        "no compression in common with the rsync client (it offers {:?}; arsync has {})",
                        String::from_utf8_lossy(&names),
                        crate::proto::rsync::ztoken::COMPRESS_NAMES
                    )));
                }
            }
            if let Some(k) = fixed_sum {
                k
            } else {
                // The first of the client's names we know: what a 3.2–3.4 server picks, and
                // what a 3.5 client picks when it lists in the canonical order.
                theirs
                    .split(|&b| b == b' ')
                    .find_map(SumKind::from_name)
                    .ok_or_else(|| {
                        SyncError::Incompatible(format!(
                            "no checksum in common with the rsync client (it offers {:?})",
                            String::from_utf8_lossy(&theirs)
                        ))
                    })?
            }
        } else {
            fixed_sum.unwrap_or(SumKind::Md5)
        };
        if fixed_compress.is_some() {
            chosen = fixed_compress;
        }
        let seed = (std::process::id() as i32) << 6
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i32));
        let mut sd = Vec::new();
        put_i32(&mut sd, seed);
        output.write(&sd)?;
        input.muxed = true;
        output.muxed = true;
        Ok(RsyncLink {
            allowed_tops: None,
            compress: chosen,
            input,
            output,
            proto: proto as u8,
            compat,
            sum,
            seed,
            proper_seed_order: compat & (1 << 5) != 0,
            notices,
            wire_in,
            wire_out,
        })
    }

    #[allow(clippy::type_complexity)]
    fn streams(
        stream: StreamPair,
        sink: Arc<dyn EventSink>,
        io_timeout: Option<u64>,
    ) -> (
        Demux,
        Mux,
        Arc<Mutex<Notices>>,
        Arc<AtomicU64>,
        Arc<AtomicU64>,
    ) {
        let rt = Handle::current();
        let wire_in = Arc::new(AtomicU64::new(0));
        let wire_out = Arc::new(AtomicU64::new(0));
        let notices = Arc::new(Mutex::new(Notices::default()));
        let input = Demux {
            rt: rt.clone(),
            recv: stream.recv,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            left: 0,
            muxed: false,
            notices: notices.clone(),
            sink,
            wire_in: wire_in.clone(),
            timeout: io_timeout
                .filter(|s| *s > 0)
                .map(std::time::Duration::from_secs),
        };
        let output = Mux {
            rt,
            send: stream.send,
            muxed: false,
            wire_out: wire_out.clone(),
            pending: Vec::new(),
        };
        (input, output, notices, wire_in, wire_out)
    }

    /// `recv_filter_list`: the client's rules (an int length and the rule text each, 0 at the
    /// end), parsed as filter rules.
    pub(crate) fn read_filter_list(
        &mut self,
    ) -> Result<crate::engine::filter::FilterRules, SyncError> {
        let mut rules = crate::engine::filter::FilterRules::new();
        for _ in 0..=100_000 {
            let len = read_i32(&mut self.input).map_err(from_read)?;
            if len == 0 {
                return Ok(rules);
            }
            if !(1..=8192).contains(&len) {
                return Err(bad("filter rule length", len));
            }
            let mut text = vec![0u8; len as usize];
            self.input.read_exact(&mut text).map_err(from_read)?;
            let text = String::from_utf8_lossy(&text).into_owned();
            rules
                .add_filter(&text)
                .map_err(|e| SyncError::Usage(format!("filter rule from the rsync client: {e}")))?;
        }
        Err(bad("filter list", "more than 100,000 rules"))
    }

    /// Issue 15, filters: the names an rsync client forwards for `--files-from=-` after its
    /// filter list (`forward_filesfrom_data`): each ended by a NUL, an empty one at the end;
    /// cleaned as upstream's `sanitize_path`. Bounded: 4,096 bytes a name, 16M names.
    pub(crate) fn read_files_from(&mut self) -> Result<Vec<Vec<u8>>, SyncError> {
        if self.proto < 31 {
            // Older clients send the names outside the multiplexed stream.
            return Err(SyncError::Usage(
                "--files-from=- from an rsync client below protocol 31 is not supported".into(),
            ));
        }
        let mut names = Vec::new();
        let mut name = Vec::new();
        loop {
            let mut b = [0u8; 1];
            self.input.read_exact(&mut b).map_err(from_read)?;
            if b[0] != 0 {
                if name.len() >= 4096 {
                    return Err(bad("files-from name length", name.len()));
                }
                name.push(b[0]);
                continue;
            }
            if name.is_empty() {
                return Ok(names);
            }
            if names.len() >= 16 << 20 {
                return Err(bad("files-from list", "more than 16M names"));
            }
            names.push(crate::engine::listing::sanitize(&std::mem::take(&mut name)));
        }
    }

    /// Run the client's half of the handshake on `rsync`, offering at most `protocol`; both
    /// directions are multiplexed afterwards.
    pub(crate) fn client(
        rsync: StreamPair,
        protocol: u8,
        offer: Offer,
        sink: Arc<dyn EventSink>,
    ) -> Result<RsyncLink, SyncError> {
        let (mut input, mut output, notices, wire_in, wire_out) =
            Self::streams(rsync, sink, offer.io_timeout);
        let mut hs = Vec::new();
        put_i32(&mut hs, i32::from(protocol));
        output.write(&hs)?;
        let remote = read_i32(&mut input).map_err(from_read)?;
        let proto = remote.min(i32::from(protocol));
        if proto < i32::from(RSYNC_PROTOCOL_MIN) {
            return Err(SyncError::Incompatible(format!(
                "the remote rsync speaks protocol {remote}; arsync speaks {RSYNC_PROTOCOL_MIN} to {RSYNC_PROTOCOL_MAX}"
            )));
        }
        Self::negotiate(input, output, proto, offer, notices, wire_in, wire_out)
    }

    /// After the versions: compat flags, checksum names, seed; then both directions are
    /// multiplexed.
    #[allow(clippy::too_many_arguments)]
    fn negotiate(
        mut input: Demux,
        mut output: Mux,
        proto: i32,
        offer: Offer,
        notices: Arc<Mutex<Notices>>,
        wire_in: Arc<AtomicU64>,
        wire_out: Arc<AtomicU64>,
    ) -> Result<RsyncLink, SyncError> {
        let compat = read_varint(&mut input).map_err(from_read)?;
        if compat & CF_INC_RECURSE != 0 && !offer.inc_recurse {
            return Err(bad(
                "compat flags",
                "incremental recursion was not asked for",
            ));
        }
        let negotiated = compat & (1 << 7) != 0;
        let mut chosen: Option<Compression> = None;
        let compress = offer.compress.as_ref().map(|c| c.1);
        if compress.is_some() && !negotiated {
            return Err(SyncError::Incompatible(
                "the remote rsync cannot negotiate compression (older than 3.2): run without -z"
                    .into(),
            ));
        }
        let sum = if negotiated {
            // Both lists go out before either is read.
            let mut v = Vec::new();
            put_vstring(&mut v, offer.sums.as_bytes());
            if let Some((names, _)) = &offer.compress {
                put_vstring(&mut v, names.as_bytes());
            }
            output.write(&v)?;
            let theirs = read_vstring(&mut input, 255).map_err(from_read)?;
            if let Some((ours, level)) = &offer.compress {
                let names = read_vstring(&mut input, 255).map_err(from_read)?;
                // Our most preferred name the server also has.
                chosen = ours
                    .split(' ')
                    .find(|o| names.split(|&b| b == b' ').any(|n| n == o.as_bytes()))
                    .and_then(|n| Compression::from_name(n.as_bytes(), *level));
                if chosen.is_none() {
                    return Err(SyncError::Incompatible(format!(
                        "no compression in common with the remote rsync (it offers {:?}; arsync has {ours})",
                        String::from_utf8_lossy(&names)
                    )));
                }
            }
            let ours: Vec<SumKind> = offer
                .sums
                .split(' ')
                .filter_map(|n| SumKind::from_name(n.as_bytes()))
                .collect();
            ours.into_iter()
                .find(|k| {
                    theirs
                        .split(|&b| b == b' ')
                        .any(|n| SumKind::from_name(n) == Some(*k))
                })
                .ok_or_else(|| {
                    SyncError::Incompatible(format!(
                        "no checksum in common with the remote rsync (it offers {:?})",
                        String::from_utf8_lossy(&theirs)
                    ))
                })?
        } else {
            SumKind::Md5
        };
        let seed = read_i32(&mut input).map_err(from_read)?;
        input.muxed = true;
        output.muxed = true;
        Ok(RsyncLink {
            allowed_tops: None,
            compress: chosen,
            input,
            output,
            proto: proto as u8,
            compat,
            sum,
            seed,
            proper_seed_order: compat & (1 << 5) != 0,
            notices,
            wire_in,
            wire_out,
        })
    }
}
