//! The capabilities a [`Hello`] carries, typed: one place that knows every name, its value's
//! layout and what a malformed value means (absent). The engine builds a [`Caps`] for its own
//! hello and reads the peer's through [`Caps::from_hello`]; nothing else parses capability
//! bytes. The meaning of each capability is in `docs/MERKLE_PROTOCOL.md` ("Capabilities").
//!
//! Does not decide what the two sides then do (that is the roles' business: e.g. the
//! directory-tree parameters both sides derive from the two `dirtree` values).

use super::Hello;

/// Which role a side plays (informational).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends files.
    Sender,
    /// Receives files.
    Receiver,
}

/// The `dirtree` capability: what the sender can hash, or what the receiver asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirTreeCap {
    /// The sender: the metadata mask bits it can hash (`u16` LE).
    Sender {
        /// Mask bits.
        mask: u16,
    },
    /// The receiver: levels of hashes per round trip (`u8`, 1–255; 0 = no exchange) and the
    /// metadata mask its generator acts on (`u16` LE).
    Receiver {
        /// Levels per round trip.
        levels: u8,
        /// Mask bits.
        mask: u16,
    },
}

/// Every capability one hello may carry. Absent, unknown and malformed ones read as `None` or
/// `false`: a peer never fails over a capability it does not understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caps {
    /// `role`: `sender` / `receiver`.
    pub role: Option<Role>,
    /// `delta` = `1`: speaks the delta exchange.
    pub delta: bool,
    /// `shared-fs`: an opaque token naming this process on this boot.
    pub shared_fs: Option<Vec<u8>>,
    /// `dirtree`: the directory-tree exchange.
    pub dirtree: Option<DirTreeCap>,
    /// `chunk-avg` (receiver): the average chunk size of every delta exchange.
    pub chunk_avg: Option<u32>,
    /// `report` = `1` (sender): print what the receiver does.
    pub report: bool,
    /// `lanes`: how many data lanes this side can open or accept (1–64).
    pub lanes: Option<u8>,
    /// `compress` = `zstd`: this side was asked to compress.
    pub compress: bool,
    /// `window` (receiver): files the sender may have open on each stream at once.
    pub window: Option<u16>,
    /// `keepalive`: this side's `--timeout`, in seconds.
    pub keepalive: Option<u32>,
    /// `rsync-sum` (an rsync adapter's receiver): the rsync checksum `-c` sums must use.
    pub rsync_sum: Option<String>,
    // Issue 16, params:
    /// `tune`: the parameters the negotiating side chose; sent (all zero when nothing was
    /// chosen) by every side that applies the agreed ones.
    pub tune: Option<Tune>,
    /// `notices` = `1` (receiver): send what the sender tells its user while it lists
    /// (`skipping non-regular file`, `skipping directory`) as `Info` frames, for the receiver
    /// to print; only a sending server does, whose own output is the protocol.
    pub notices: bool,
    // Issue 16, remote CPU:
    /// `cpu`: how fast this side cuts and hashes chunks, bytes per second (`u64` LE, not 0);
    /// the client remembers the server's for the next run's decisions.
    pub cpu: Option<u64>,
    // Issue 18, scattered deltas:
    /// `gaps` = `1`: speaks the gap exchange inside the delta exchange (`GapSums`, `GapData`).
    pub gaps: bool,
    /// `unwanted` (receiver): list entries of the kinds the options leave out (symlinks
    /// without `-l`, devices without `-D`…); this receiver skips them itself, and its
    /// `--delete` spares what is there under their names, as rsync's generator.
    pub unwanted: Option<Unwanted>,
    // Issue 18, streaming list:
    /// `segments`: this side streams the file list a directory at a time (`u32` LE, ≥ 1: the
    /// most entries it wants in one round, beyond its first segment; both use the smaller).
    pub segments: Option<u32>,
    /// `live-rounds` = `1` (receiver, with `segments`): this receiver (an rsync adapter) keeps
    /// earlier rounds askable — its requests name entries of every round the sender still
    /// keeps, and a `RoundEnd` before its `Done` says which it may forget (see "Live rounds").
    pub live_rounds: bool,
}

/// Who says `skipping non-regular file` for an entry listed under the `unwanted` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwanted {
    /// `1`: the sender, as it lists it (an arsync receiver skips it silently).
    SenderSays,
    /// `2`: the receiver (an rsync receiver behind an adapter says it as rsync's generator).
    ReceiverSays,
}

// Issue 16, params: the `tune` capability.
/// The `tune` capability: what negotiation chose for the session. 11 bytes: the link's
/// bandwidth-delay product for chunk sizing (`u64` LE, 0 = unknown), directory levels per
/// round trip (`u8`, 0 = not chosen), flags (`u8`, bit 0: whole files), the zstd level
/// (`u8`, 0 = not chosen). Which side's values count is the engine's business
/// ([`crate::engine::tune`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tune {
    /// Bytes; 0: unknown.
    pub bdp: u64,
    /// Directory levels of hashes per round trip; 0: not chosen.
    pub tree_levels: u8,
    /// Send whole files: no delta exchange.
    pub whole_file: bool,
    /// zstd level for both directions; 0: not chosen.
    pub compress: u8,
}

impl Tune {
    /// The value's bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = self.bdp.to_le_bytes().to_vec();
        v.extend([self.tree_levels, u8::from(self.whole_file), self.compress]);
        v
    }

    /// A value's bytes read back; `None` unless exactly 11 bytes.
    pub fn from_bytes(v: &[u8]) -> Option<Tune> {
        let v = <&[u8; 11]>::try_from(v).ok()?;
        let mut bdp = [0u8; 8];
        bdp.copy_from_slice(&v[..8]);
        Some(Tune {
            bdp: u64::from_le_bytes(bdp),
            tree_levels: v[8],
            whole_file: v[9] & 1 != 0,
            compress: v[10],
        })
    }
}

/// The capability names, as on the wire.
pub mod name {
    /// [`super::Caps::role`].
    pub const ROLE: &str = "role";
    /// [`super::Caps::delta`].
    pub const DELTA: &str = "delta";
    /// [`super::Caps::shared_fs`].
    pub const SHARED_FS: &str = "shared-fs";
    /// [`super::Caps::dirtree`].
    pub const DIRTREE: &str = "dirtree";
    /// [`super::Caps::chunk_avg`].
    pub const CHUNK_AVG: &str = "chunk-avg";
    /// [`super::Caps::report`].
    pub const REPORT: &str = "report";
    /// [`super::Caps::lanes`].
    pub const LANES: &str = "lanes";
    /// [`super::Caps::compress`].
    pub const COMPRESS: &str = "compress";
    /// [`super::Caps::window`].
    pub const WINDOW: &str = "window";
    /// [`super::Caps::keepalive`].
    pub const KEEPALIVE: &str = "keepalive";
    /// [`super::Caps::rsync_sum`].
    pub const RSYNC_SUM: &str = "rsync-sum";
    // Issue 16, params:
    /// [`super::Caps::tune`].
    pub const TUNE: &str = "tune";
    /// [`super::Caps::notices`].
    pub const NOTICES: &str = "notices";
    /// [`super::Caps::cpu`].
    pub const CPU: &str = "cpu";
    // Issue 18, scattered deltas:
    /// [`super::Caps::gaps`].
    pub const GAPS: &str = "gaps";
    /// [`super::Caps::unwanted`].
    pub const UNWANTED: &str = "unwanted";
    // Issue 18, streaming list:
    /// [`super::Caps::segments`].
    pub const SEGMENTS: &str = "segments";
    /// [`super::Caps::live_rounds`].
    pub const LIVE_ROUNDS: &str = "live-rounds";
}

impl Caps {
    /// The hello's capability list for this set, in a fixed order.
    pub fn to_pairs(&self) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(&str, Vec<u8>)> = Vec::new();
        if let Some(r) = self.role {
            let s: &[u8] = match r {
                Role::Sender => b"sender",
                Role::Receiver => b"receiver",
            };
            v.push((name::ROLE, s.to_vec()));
        }
        if self.delta {
            v.push((name::DELTA, b"1".to_vec()));
        }
        if let Some(t) = &self.shared_fs {
            v.push((name::SHARED_FS, t.clone()));
        }
        match self.dirtree {
            Some(DirTreeCap::Sender { mask }) => {
                v.push((name::DIRTREE, mask.to_le_bytes().to_vec()))
            }
            Some(DirTreeCap::Receiver { levels, mask }) => {
                let m = mask.to_le_bytes();
                v.push((name::DIRTREE, vec![levels, m[0], m[1]]));
            }
            None => {}
        }
        if let Some(a) = self.chunk_avg {
            v.push((name::CHUNK_AVG, a.to_le_bytes().to_vec()));
        }
        if self.report {
            v.push((name::REPORT, b"1".to_vec()));
        }
        if let Some(n) = self.lanes {
            v.push((name::LANES, vec![n]));
        }
        if self.compress {
            v.push((name::COMPRESS, b"zstd".to_vec()));
        }
        if let Some(w) = self.window {
            v.push((name::WINDOW, w.to_le_bytes().to_vec()));
        }
        if let Some(k) = self.keepalive {
            v.push((name::KEEPALIVE, k.to_le_bytes().to_vec()));
        }
        if let Some(s) = &self.rsync_sum {
            v.push((name::RSYNC_SUM, s.as_bytes().to_vec()));
        }
        // Issue 16, params:
        if let Some(t) = self.tune {
            v.push((name::TUNE, t.to_bytes()));
        }
        if self.notices {
            v.push((name::NOTICES, b"1".to_vec()));
        }
        if let Some(c) = self.cpu {
            v.push((name::CPU, c.to_le_bytes().to_vec()));
        }
        // Issue 18, scattered deltas:
        if self.gaps {
            v.push((name::GAPS, b"1".to_vec()));
        }
        match self.unwanted {
            Some(Unwanted::SenderSays) => v.push((name::UNWANTED, b"1".to_vec())),
            Some(Unwanted::ReceiverSays) => v.push((name::UNWANTED, b"2".to_vec())),
            None => {}
        }
        // Issue 18, streaming list:
        if let Some(n) = self.segments {
            v.push((name::SEGMENTS, n.to_le_bytes().to_vec()));
        }
        if self.live_rounds {
            v.push((name::LIVE_ROUNDS, b"1".to_vec()));
        }
        v.into_iter().map(|(n, b)| (n.to_owned(), b)).collect()
    }

    /// The capabilities of a peer's hello; malformed values read as absent.
    pub fn from_hello(h: &Hello) -> Caps {
        let flag = |n: &str, want: &[u8]| h.cap(n) == Some(want);
        Caps {
            role: match h.cap(name::ROLE) {
                Some(b"sender") => Some(Role::Sender),
                Some(b"receiver") => Some(Role::Receiver),
                _ => None,
            },
            delta: flag(name::DELTA, b"1"),
            shared_fs: h.cap(name::SHARED_FS).map(<[u8]>::to_vec),
            dirtree: match h.cap(name::DIRTREE) {
                Some(&[a, b]) => Some(DirTreeCap::Sender {
                    mask: u16::from_le_bytes([a, b]),
                }),
                Some(&[levels, a, b]) => Some(DirTreeCap::Receiver {
                    levels,
                    mask: u16::from_le_bytes([a, b]),
                }),
                _ => None,
            },
            chunk_avg: h
                .cap(name::CHUNK_AVG)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(u32::from_le_bytes),
            report: flag(name::REPORT, b"1"),
            lanes: match h.cap(name::LANES) {
                Some(&[n]) => Some(n),
                _ => None,
            },
            compress: flag(name::COMPRESS, b"zstd"),
            window: h
                .cap(name::WINDOW)
                .and_then(|v| <[u8; 2]>::try_from(v).ok())
                .map(u16::from_le_bytes),
            keepalive: h
                .cap(name::KEEPALIVE)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(u32::from_le_bytes),
            rsync_sum: h
                .cap(name::RSYNC_SUM)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
            // Issue 16, params:
            tune: h.cap(name::TUNE).and_then(Tune::from_bytes),
            notices: flag(name::NOTICES, b"1"),
            cpu: h
                .cap(name::CPU)
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(u64::from_le_bytes)
                .filter(|&c| c > 0),
            // Issue 18, scattered deltas:
            gaps: flag(name::GAPS, b"1"),
            unwanted: match h.cap(name::UNWANTED) {
                Some(b"1") => Some(Unwanted::SenderSays),
                Some(b"2") => Some(Unwanted::ReceiverSays),
                _ => None,
            },
            // Issue 18, streaming list:
            segments: h
                .cap(name::SEGMENTS)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(u32::from_le_bytes)
                .filter(|&n| n > 0),
            live_rounds: flag(name::LIVE_ROUNDS, b"1"),
        }
    }

    /// A hello of version `version` carrying these capabilities.
    pub fn hello(&self, version: u16) -> Hello {
        Hello {
            version,
            caps: self.to_pairs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_round_trips_through_a_hello() {
        let full = Caps {
            role: Some(Role::Receiver),
            delta: true,
            shared_fs: Some(b"boot:42".to_vec()),
            dirtree: Some(DirTreeCap::Receiver {
                levels: 3,
                mask: 0x00ff,
            }),
            chunk_avg: Some(4096),
            report: true,
            lanes: Some(4),
            compress: true,
            window: Some(8),
            keepalive: Some(30),
            rsync_sum: Some("xxh128".into()),
            tune: Some(Tune {
                bdp: 1 << 40,
                tree_levels: 4,
                whole_file: true,
                compress: 3,
            }),
            notices: true,
            cpu: Some(1_100_000_000),
            gaps: true,
            unwanted: Some(Unwanted::ReceiverSays),
            segments: Some(16_384),
            live_rounds: true,
        };
        assert_eq!(Caps::from_hello(&full.hello(1)), full);
        let says = Caps {
            unwanted: Some(Unwanted::SenderSays),
            ..Caps::default()
        };
        assert_eq!(Caps::from_hello(&says.hello(1)), says);
        let sender = Caps {
            role: Some(Role::Sender),
            dirtree: Some(DirTreeCap::Sender { mask: 0x00ff }),
            ..Caps::default()
        };
        assert_eq!(Caps::from_hello(&sender.hello(1)), sender);
        assert_eq!(Caps::from_hello(&Caps::default().hello(1)), Caps::default());
    }

    #[test]
    fn malformed_or_unknown_values_read_as_absent() {
        let h = Hello {
            version: 1,
            caps: vec![
                ("delta".into(), b"yes".to_vec()),
                ("lanes".into(), vec![1, 2]),
                ("window".into(), vec![8]),
                ("keepalive".into(), vec![1, 2, 3]),
                ("chunk-avg".into(), vec![]),
                ("dirtree".into(), vec![1]),
                ("compress".into(), b"lz4".to_vec()),
                ("role".into(), b"other".to_vec()),
                ("rsync-sum".into(), vec![0xff, 0xfe]),
                ("tune".into(), vec![0; 10]),
                ("cpu".into(), vec![0; 8]),
                ("unwanted".into(), b"3".to_vec()),
                ("some-future-cap".into(), b"x".to_vec()),
            ],
        };
        assert_eq!(Caps::from_hello(&h), Caps::default());
    }

    /// The bytes of each value are what `docs/MERKLE_PROTOCOL.md` says.
    #[test]
    fn values_have_the_documented_layout() {
        let c = Caps {
            dirtree: Some(DirTreeCap::Receiver {
                levels: 2,
                mask: 0x1234,
            }),
            window: Some(0x0102),
            keepalive: Some(0x0a0b0c0d),
            tune: Some(Tune {
                bdp: 0x0102_0304_0506_0708,
                tree_levels: 3,
                whole_file: true,
                compress: 5,
            }),
            cpu: Some(0x0102_0304_0506_0708),
            ..Caps::default()
        };
        let pairs = c.to_pairs();
        let get = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("dirtree"), Some(vec![2, 0x34, 0x12]));
        assert_eq!(get("window"), Some(vec![0x02, 0x01]));
        assert_eq!(get("keepalive"), Some(vec![0x0d, 0x0c, 0x0b, 0x0a]));
        assert_eq!(get("tune"), Some(vec![8, 7, 6, 5, 4, 3, 2, 1, 3, 1, 5]));
        assert_eq!(get("cpu"), Some(vec![8, 7, 6, 5, 4, 3, 2, 1]));
    }
}
