//! The `tune` capability between two arsyncs: what the negotiating side chose (chunk sizing
//! from the link's BDP, directory levels per round trip, whole files, compression) and how
//! both roles derive the same session parameters from the two hellos.
//!
//! Every side that knows the capability sends it (all zero when it chose nothing); the
//! choices count only when both hellos carry it (an older peer would not follow them, and
//! the two ends must cut chunks alike). Each value is the receiver's if it chose one, else
//! the sender's: in practice the client's, since only a client negotiates.
//!
//! Not here: the decisions themselves ([`crate::negotiate::params`]) or the capability's
//! bytes ([`crate::proto::merkle::caps::Tune`]).

use super::options::SyncOptions;
use super::treelist::TreeParams;
use crate::proto::merkle::caps::{Caps, Tune};

/// The highest zstd level a chosen compression runs at (`--compress-level`'s limit).
pub const MAX_COMPRESS_LEVEL: i32 = 19;

/// What this side's hello carries: the choices in `opts.tune`, or none.
pub fn ours(opts: &SyncOptions) -> Option<Tune> {
    Some(opts.tune.unwrap_or_default())
}

/// What both sides run with, from the sender's and the receiver's `tune` values; both sides
/// evaluate this same function, so they always agree.
pub fn agreed(sender: Option<Tune>, receiver: Option<Tune>) -> Tune {
    let (Some(s), Some(r)) = (sender, receiver) else {
        return Tune::default();
    };
    Tune {
        bdp: if r.bdp != 0 { r.bdp } else { s.bdp },
        tree_levels: if r.tree_levels != 0 {
            r.tree_levels
        } else {
            s.tree_levels
        },
        whole_file: r.whole_file || s.whole_file,
        compress: if r.compress != 0 {
            r.compress
        } else {
            s.compress
        },
    }
}

/// The session's options after the hellos: the agreed values in `opts.tune` (the BDP chunk
/// sizes come from), whole files and compression switched on where they were chosen.
pub fn apply(opts: &mut SyncOptions, t: Tune) {
    opts.whole_file |= t.whole_file;
    if opts.compress.is_none() && t.compress != 0 {
        // A level from the peer is held to what `--compress-level` accepts.
        opts.compress = Some(i32::from(t.compress).clamp(1, MAX_COMPRESS_LEVEL));
    }
    opts.tune = Some(t);
}

/// The peer's capabilities as the session sees them: an agreed compression counts as the
/// peer having asked for it.
pub fn peer_view(mut peer: Caps, t: Tune) -> Caps {
    peer.compress |= t.compress != 0;
    peer
}

/// The directory-tree exchange's parameters with the agreed levels per round trip.
pub fn tree(params: Option<TreeParams>, t: Tune) -> Option<TreeParams> {
    params.map(|p| TreeParams {
        levels: if t.tree_levels != 0 {
            u32::from(t.tree_levels)
        } else {
            p.levels
        },
        ..p
    })
}

/// The BDP chunk sizes are derived from (0: unknown).
pub fn chunk_bdp(opts: &SyncOptions) -> u64 {
    opts.tune.map_or(0, |t| t.bdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(bdp: u64, levels: u8, whole: bool, z: u8) -> Tune {
        Tune {
            bdp,
            tree_levels: levels,
            whole_file: whole,
            compress: z,
        }
    }

    #[test]
    fn a_peer_without_the_capability_means_nothing_was_agreed() {
        assert_eq!(agreed(Some(t(1 << 20, 4, true, 3)), None), Tune::default());
        assert_eq!(agreed(None, Some(t(1 << 20, 4, true, 3))), Tune::default());
    }

    #[test]
    fn the_choosing_side_wins_and_the_receiver_first() {
        let chose = t(5 << 20, 4, true, 3);
        assert_eq!(agreed(Some(chose), Some(Tune::default())), chose);
        assert_eq!(agreed(Some(Tune::default()), Some(chose)), chose);
        assert_eq!(
            agreed(Some(t(1, 3, false, 1)), Some(t(2, 0, false, 0))),
            t(2, 3, false, 1)
        );
    }

    #[test]
    fn agreed_levels_replace_the_receivers_but_never_start_an_exchange() {
        let p = TreeParams {
            levels: 2,
            mask: crate::merkle::dirtree::MetaMask(0),
        };
        assert_eq!(tree(Some(p), t(0, 4, false, 0)).map(|p| p.levels), Some(4));
        assert_eq!(tree(Some(p), Tune::default()).map(|p| p.levels), Some(2));
        assert_eq!(tree(None, t(0, 4, false, 0)), None);
    }

    #[test]
    fn applied_choices_switch_on_whole_files_and_compression() {
        let mut o = SyncOptions::default();
        apply(&mut o, t(1 << 20, 0, true, 3));
        assert!(o.whole_file);
        assert_eq!(o.compress, Some(3));
        assert_eq!(chunk_bdp(&o), 1 << 20);
        let mut asked = SyncOptions {
            compress: Some(9),
            ..SyncOptions::default()
        };
        apply(&mut asked, t(0, 0, false, 3));
        assert_eq!(asked.compress, Some(9), "-z's level stays");
        assert!(peer_view(Caps::default(), t(0, 0, false, 3)).compress);
        let mut wild = SyncOptions::default();
        apply(&mut wild, t(0, 0, false, 255));
        assert_eq!(wild.compress, Some(MAX_COMPRESS_LEVEL));
        assert!(!peer_view(Caps::default(), Tune::default()).compress);
    }
}
