//! The codec's round trips, bounds and behaviour on hostile input.

use super::codec::ty;
use super::*;
use crate::flist::{FileKind, Name, Owner, RelPath, Xattr};
use crate::proto::wire::DecodeError;

fn entry(path: &[u8]) -> FileEntry {
    let mut e = FileEntry::new(path, FileKind::File);
    e.perms = 0o4755;
    e.size = 12;
    e.mtime = 1_700_000_000;
    e.mtime_nsec = 123_456_789;
    e.set_owner(Owner::new(
        1000,
        1000,
        Name::new(b"alice"),
        Name::new(b"staff"),
    ));
    e.set_xattrs(vec![Xattr {
        name: b"user.k".to_vec(),
        value: b"v".to_vec(),
    }]);
    e.set_hardlink_group(3);
    e.set_checksum(Some([7; 32]));
    e
}

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            caps: vec![("shared-fs".into(), b"1".to_vec())],
        }),
        Frame::FileEntries(vec![entry(b"a"), entry(b"dir/b c")]),
        Frame::FileListEnd { count: 2 },
        Frame::Segment {
            parent: 3,
            base: 9,
            count: 4,
        },
        Frame::Segment {
            parent: ROOT_SEGMENT,
            base: 0,
            count: 1,
        },
        Frame::RoundEnd { count: 13 },
        Frame::DirHashes(vec![(b".".to_vec(), [1; 32]), (b"a/b".to_vec(), [2; 32])]),
        Frame::WantDirs(vec![(b".".to_vec(), false), (b"a".to_vec(), true)]),
        Frame::Totals(vec![1, 2, 3]),
        Frame::MissingArgs(vec![b"gone".to_vec(), b"a/gone dir".to_vec()]),
        Frame::Report {
            items: vec![(3, 0x9, b'.'), (4, 1, b'c')],
            deleted: vec![(b"gone/x".to_vec(), false), (b"gone".to_vec(), true)],
        },
        Frame::Request { ndx: 1, iflags: 5 },
        Frame::Lane { lane: 3 },
        Frame::LaneRequest {
            ndx: 7,
            iflags: 2,
            lane: 64,
        },
        Frame::LaneLost { lane: 1 },
        Frame::RangeRequest {
            ndx: 9,
            iflags: 1,
            lane: 0,
            offset: 1 << 33,
            len: 1 << 20,
        },
        Frame::LocalPath {
            ndx: 1,
            path: b"/tmp/x".to_vec(),
        },
        Frame::DataBegin { ndx: 1, size: 3 },
        Frame::Data {
            ndx: 1,
            bytes: b"abc".to_vec(),
        },
        Frame::DataEnd {
            ndx: 1,
            hash: [9; 32],
        },
        Frame::Vanished { ndx: 4 },
        Frame::FileFailed {
            ndx: 4,
            message: "nope".into(),
        },
        Frame::DeltaRequest { ndx: 3, iflags: 4 },
        Frame::Nodes {
            ndx: 3,
            groups: vec![
                vec![NodeRef {
                    level: 2,
                    hash: [1; 32],
                    size: 99,
                }],
                vec![],
            ],
        },
        Frame::Expand {
            ndx: 3,
            hashes: vec![[2; 32], [3; 32]],
        },
        Frame::Fetch {
            ndx: 3,
            hashes: vec![[4; 32]],
            last: true,
        },
        // Issue 18, scattered deltas:
        Frame::GapSums {
            ndx: 3,
            first: 2,
            count: 3,
            block: 320,
            sums: vec![(1, 2), (u32::MAX, 0)],
        },
        Frame::GapData {
            ndx: 3,
            ops: vec![
                crate::merkle::gapsum::GapOp::Copy { block: 0, count: 2 },
                crate::merkle::gapsum::GapOp::Literal(b"new".to_vec()),
            ],
        },
        Frame::Done,
        Frame::KeepAlive,
        Frame::Synced(vec![(0, 0, 0), (7, 2049, 12), (u32::MAX, u64::MAX, 1)]),
        Frame::Summary(vec![1, 2, 3]),
        Frame::Error {
            code: 12,
            message: "bad".into(),
        },
    ]
}

#[test]
fn every_frame_round_trips_byte_by_byte() {
    let frames = all_frames();
    let mut bytes = Vec::new();
    for f in &frames {
        f.encode(&mut bytes);
    }
    let mut d = FrameDecoder::new();
    let mut out = Vec::new();
    for b in bytes {
        d.push(&[b]);
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f);
        }
    }
    assert_eq!(out, frames);
    assert_eq!(d.pending(), 0);
}

#[test]
fn lane_numbers_outside_the_range_are_refused() {
    for bad in [0u8, MAX_LANES + 1, 255] {
        assert!(Frame::decode(ty::LANE, &[bad]).is_err(), "lane {bad}");
        assert!(Frame::decode(ty::LANE_LOST, &[bad]).is_err(), "lane {bad}");
        let mut p = 5u32.to_le_bytes().to_vec();
        p.extend_from_slice(&[0, 0, bad]);
        assert!(Frame::decode(ty::LANE_REQUEST, &p).is_err(), "lane {bad}");
    }
    let range = |lane: u8, offset: u64, len: u64| {
        let mut p = 5u32.to_le_bytes().to_vec();
        p.extend_from_slice(&[0, 0, lane]);
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&len.to_le_bytes());
        Frame::decode(ty::RANGE_REQUEST, &p)
    };
    assert!(range(0, 0, 1).is_ok());
    assert!(range(MAX_LANES + 1, 0, 1).is_err());
    assert!(range(1, 0, 0).is_err(), "empty range");
    assert!(range(1, u64::MAX, 2).is_err(), "range past 2^64");
    assert_eq!(
        Frame::decode(ty::LANE, &[MAX_LANES]).unwrap(),
        Frame::Lane { lane: MAX_LANES }
    );
}

/// Issue 18, scattered deltas: a gap of no chunks, a block length out of range, more old
/// bytes than a gap may have, an unknown op: refused before anything is allocated.
#[test]
fn hostile_gap_frames_are_refused() {
    let sums = |count: u32, block: u32, n: u32| {
        let mut p = Vec::new();
        for v in [5u32, 0, count, block, n] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        Frame::decode(ty::GAP_SUMS, &p)
    };
    assert!(matches!(sums(0, 256, 0), Err(DecodeError::Invalid { .. })));
    assert!(sums(1, 63, 0).is_err(), "block below the least");
    assert!(sums(1, 65_537, 0).is_err(), "block above the most");
    assert!(matches!(
        sums(1, 1024, 1025),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(sums(1, 1024, 2), Err(DecodeError::Truncated(_))));
    let data = |n: u32, op: &[u8]| {
        let mut p = 5u32.to_le_bytes().to_vec();
        p.extend_from_slice(&n.to_le_bytes());
        p.extend_from_slice(op);
        Frame::decode(ty::GAP_DATA, &p)
    };
    assert!(data(MAX_GAP_OPS as u32 + 1, &[]).is_err());
    assert!(data(1, &[2]).is_err(), "unknown op");
    let mut lit = vec![0u8];
    lit.extend_from_slice(&(MAX_GAP_NEW as u32 + 1).to_le_bytes());
    assert!(data(1, &lit).is_err(), "a literal longer than a gap");
}

#[test]
fn oversize_header_is_refused_before_buffering() {
    let mut d = FrameDecoder::new();
    d.push(&[ty::DATA, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(
        d.next_frame(),
        Err(DecodeError::TooLarge {
            what: "frame length",
            ..
        })
    ));
}

#[test]
fn compressed_frames_round_trip_and_are_bounded() {
    let data = Frame::Data {
        ndx: 3,
        bytes: b"abcabcabc".repeat(1000),
    };
    let entries = Frame::FileEntries(
        (0..50)
            .map(|i| entry(format!("dir/f{i}").as_bytes()))
            .collect(),
    );
    let incompressible = Frame::Data {
        ndx: 1,
        bytes: (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect(),
    };
    // Issue 18, scattered deltas: a gap's literal bytes compress like `Data`.
    let gap = Frame::GapData {
        ndx: 3,
        ops: vec![
            crate::merkle::gapsum::GapOp::Copy { block: 1, count: 2 },
            crate::merkle::gapsum::GapOp::Literal(b"xyz".repeat(500)),
        ],
    };
    let mut one = Vec::new();
    encode_compressed(&gap, &mut one, 3);
    assert_eq!(one[0], ty::COMPRESSED, "a gap's description is compressed");
    let mut buf = Vec::new();
    for f in [&data, &entries, &incompressible, &gap, &Frame::Done] {
        encode_compressed(f, &mut buf, 3);
    }
    let mut plain = Vec::new();
    for f in [&data, &entries, &incompressible, &gap, &Frame::Done] {
        f.encode(&mut plain);
    }
    assert!(
        buf.len() < plain.len() / 2,
        "{} vs {}",
        buf.len(),
        plain.len()
    );
    let mut d = FrameDecoder::new();
    d.accept_compressed(true);
    d.push(&buf);
    for want in [&data, &entries, &incompressible, &gap, &Frame::Done] {
        assert_eq!(d.next_frame().unwrap().as_ref(), Some(want));
    }
    // Not negotiated: refused.
    let mut d = FrameDecoder::new();
    d.push(&buf);
    assert!(d.next_frame().is_err());
    // A bomb: more inflated bytes than announced, or an announced length over the bound.
    let big = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
    for (announced, packed) in [(1000u32, &big), ((MAX_FRAME_PAYLOAD + 1) as u32, &big)] {
        let mut payload = vec![ty::DATA];
        payload.extend_from_slice(&announced.to_le_bytes());
        payload.extend_from_slice(packed);
        assert!(decode_compressed(&payload).is_err());
    }
    // Nested compression.
    let mut payload = vec![ty::COMPRESSED];
    payload.extend_from_slice(&4u32.to_le_bytes());
    payload.extend_from_slice(&zstd::bulk::compress(&[0, 0, 0, 0], 3).unwrap());
    assert!(decode_compressed(&payload).is_err());
}

/// A directory whose contents are not listed (a mount point under `-x`) keeps its mark; the
/// mark on anything but a directory, or an unknown flag, is refused.
#[test]
fn the_no_content_mark_round_trips_on_directories_only() {
    let mut dir = entry(b"mnt");
    dir.kind = FileKind::Dir;
    dir.size = 0;
    dir.set_checksum(None);
    dir.set_hardlink_group(0);
    dir.no_content = true;
    dir.set_xattrs(Vec::new());
    let mut buf = Vec::new();
    Frame::FileEntries(vec![dir.clone()]).encode(&mut buf);
    let decode = |bytes: &[u8]| {
        let mut d = FrameDecoder::new();
        d.push(bytes);
        d.next_frame()
    };
    match decode(&buf) {
        Ok(Some(Frame::FileEntries(got))) => assert_eq!(got, vec![dir.clone()]),
        other => panic!("{other:?}"),
    }
    // The entry ends with its flags byte and a zero xattr count (u16).
    let flags_at = buf.len() - 3;
    assert_eq!(buf[flags_at], 0x02, "layout changed: {buf:?}");
    // The kind follows the path `mnt`.
    let kind_at = buf
        .windows(4)
        .position(|w| w == b"mnt\x02")
        .map(|p| p + 3)
        .expect("the kind after the path");
    let mut as_file = buf.clone();
    as_file[kind_at] = FileKind::File.code();
    assert!(
        decode(&as_file).is_err(),
        "a file marked no-content was accepted"
    );
    let mut unknown = buf.clone();
    unknown[flags_at] = 0x04;
    assert!(
        decode(&unknown).is_err(),
        "an unknown entry flag was accepted"
    );
}

#[test]
fn hostile_entries_are_refused() {
    for bad in [&b"../etc/passwd"[..], b"/etc/passwd", b"a/../../b", b""] {
        let mut buf = Vec::new();
        Frame::FileEntries(vec![entry(bad)]).encode(&mut buf);
        let mut d = FrameDecoder::new();
        d.push(&buf);
        assert!(d.next_frame().is_err(), "{:?} accepted", bad);
        for frame in [
            Frame::DirHashes(vec![(bad.to_vec(), [0; 32])]),
            Frame::WantDirs(vec![(bad.to_vec(), false)]),
            Frame::MissingArgs(vec![bad.to_vec()]),
        ] {
            let mut buf = Vec::new();
            frame.encode(&mut buf);
            let mut d = FrameDecoder::new();
            d.push(&buf);
            assert!(d.next_frame().is_err(), "{:?} accepted in {frame:?}", bad);
        }
    }
    // A count larger than the batch bound.
    let mut d = FrameDecoder::new();
    d.push(&[ty::FILE_ENTRIES, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert!(d.next_frame().is_err());
    // A missing argument may not name the destination's root.
    let mut buf = Vec::new();
    Frame::MissingArgs(vec![b".".to_vec()]).encode(&mut buf);
    let mut d = FrameDecoder::new();
    d.push(&buf);
    assert!(d.next_frame().is_err(), "the root as a missing argument");
}

#[test]
fn random_and_mutated_input_never_panics() {
    // xorshift: deterministic, no dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut valid = Vec::new();
    for f in all_frames() {
        f.encode(&mut valid);
    }
    for round in 0..2000 {
        let mut bytes = if round % 2 == 0 {
            valid.clone()
        } else {
            (0..(next() % 512)).map(|_| next() as u8).collect()
        };
        for _ in 0..(next() % 8) {
            if !bytes.is_empty() {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
        }
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        // Decode until an error or the input runs out; either is fine, a panic is not.
        while let Ok(Some(_)) = d.next_frame() {}
    }
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for f in all_frames() {
        let mut buf = Vec::new();
        f.encode(&mut buf);
        let payload = &buf[HEADER_LEN..];
        // A data frame's payload after its index is all data: any cut past it is valid.
        let must_fail = match f {
            Frame::Data { .. } => 4,
            _ => payload.len(),
        };
        for cut in 0..must_fail {
            assert!(
                Frame::decode(buf[0], &payload[..cut]).is_err(),
                "{f:?} cut at {cut} decoded"
            );
        }
    }
}

/// Every frame a batch constructor makes fits in one frame and decodes back to its items,
/// for items as long as the protocol allows (issue 13: a tree level of long paths once
/// made a 1.5 MB `WantDirs` that the peer refused).
#[test]
fn batch_frames_of_long_items_are_split_never_oversized() {
    fn check(frames: &[Frame]) -> usize {
        let mut items = 0;
        for f in frames {
            let mut buf = Vec::new();
            f.encode(&mut buf);
            let len = buf.len() - HEADER_LEN;
            assert!(len <= MAX_FRAME_PAYLOAD, "{len} bytes in one frame");
            let mut d = FrameDecoder::new();
            d.push(&buf);
            let back = d.next_frame().expect("decodes").expect("whole frame");
            assert_eq!(&back, f);
            items += match f {
                Frame::FileEntries(v) => v.len(),
                Frame::DirHashes(v) => v.len(),
                Frame::WantDirs(v) => v.len(),
                Frame::Report { items, deleted } => items.len() + deleted.len(),
                _ => 0,
            };
        }
        items
    }
    let long = |i: usize| {
        let mut p = format!("d{i}/").into_bytes();
        p.resize(MAX_PATH - 1, b'x');
        p
    };
    let n = 20_000;
    let wants: Vec<_> = (0..n).map(|i| (long(i), i % 2 == 0)).collect();
    let frames = want_dir_frames(wants);
    assert!(frames.len() > 70, "{} frames", frames.len());
    assert_eq!(check(&frames), n);
    let hashes: Vec<_> = (0..n).map(|i| (long(i), [i as u8; 32])).collect();
    assert_eq!(check(&dir_hash_frames(hashes)), n);
    let deleted: Vec<_> = (0..n).map(|i| (long(i), false)).collect();
    let items: Vec<_> = (0..n as u32).map(|i| (i, 1, b'>')).collect();
    assert_eq!(check(&report_frames(items, deleted)), 2 * n);
    // Entries at the largest size the scanner lets through: long path, long link, names
    // and attributes up to MAX_ENTRY_XATTR_BYTES.
    let big = |i: usize| {
        let mut e = entry(&long(i));
        e.kind = FileKind::Symlink;
        e.set_hardlink_group(0);
        e.set_link_target(vec![b'l'; MAX_PATH]);
        e.set_owner(Owner::new(
            1000,
            1000,
            Name::new(&[b'u'; 255]),
            Name::new(&[b'g'; 255]),
        ));
        e.set_xattrs(
            (0..4)
                .map(|k| Xattr {
                    name: format!("user.{k}").into_bytes(),
                    value: vec![b'v'; MAX_XATTR_VALUE - 16],
                })
                .collect(),
        );
        assert!(xattrs_len(e.xattrs()) <= MAX_ENTRY_XATTR_BYTES);
        e
    };
    let entries: Vec<_> = (0..40).map(big).collect();
    assert_eq!(check(&file_entry_frames(entries)), 40);
    let small: Vec<_> = (0..10_000)
        .map(|i| entry(format!("f{i}").as_bytes()))
        .collect();
    let frames = file_entry_frames(small);
    assert_eq!(frames.len(), 3, "4096 entries a frame at most");
    assert_eq!(check(&frames), 10_000);
}

/// Issue 18: the entry's fields moved behind accessors (owner, hard-link group, checksum,
/// perms as u16, the 16-byte path) encode to the bytes docs/MERKLE_PROTOCOL.md gives, field
/// by field, and each decodes back to an equal entry.
#[test]
fn an_entry_encodes_to_the_documented_bytes_and_back() {
    let long_path = b"dir/a path longer than sixteen bytes".to_vec();
    let e = entry(&long_path);
    let mut want = Vec::new();
    want.extend_from_slice(&(long_path.len() as u16).to_le_bytes());
    want.extend_from_slice(&long_path);
    want.push(FileKind::File.code());
    want.extend_from_slice(&0o4755u32.to_le_bytes());
    want.extend_from_slice(&12u64.to_le_bytes());
    want.extend_from_slice(&1_700_000_000i64.to_le_bytes());
    want.extend_from_slice(&123_456_789u32.to_le_bytes());
    want.extend_from_slice(&1000u32.to_le_bytes()); // uid
    want.extend_from_slice(&1000u32.to_le_bytes()); // gid
    want.extend_from_slice(b"\x05alice\x05staff");
    want.extend_from_slice(&0u64.to_le_bytes()); // rdev
    want.extend_from_slice(&0u16.to_le_bytes()); // link target
    want.extend_from_slice(&3u32.to_le_bytes()); // hard-link group
    want.push(1); // flags: has checksum
    want.extend_from_slice(&[7; 32]);
    want.extend_from_slice(&1u16.to_le_bytes());
    want.extend_from_slice(b"\x06user.k");
    want.extend_from_slice(&1u32.to_le_bytes());
    want.push(b'v');
    let mut buf = Vec::new();
    Frame::FileEntries(vec![e.clone()]).encode(&mut buf);
    assert!(buf.ends_with(&want), "layout changed: {buf:?}");

    // Each moved field alone, set and round-tripped.
    let mut variants = Vec::new();
    let mut plain = FileEntry::new(&b"f"[..], FileKind::File);
    variants.push(plain.clone());
    plain.perms = 0o7777;
    variants.push(plain.clone());
    let mut owned = plain.clone();
    owned.set_owner(Owner::new(7, 8, Name::default(), Name::default()));
    variants.push(owned.clone());
    owned.set_owner(Owner::new(0, 0, Name::new(b"root"), Name::new(b"wheel")));
    variants.push(owned);
    let mut linked = plain.clone();
    linked.set_hardlink_group(u32::MAX);
    variants.push(linked);
    let mut summed = plain.clone();
    summed.set_checksum(Some([0xab; 32]));
    variants.push(summed);
    let mut dev = FileEntry::new(&b"dev"[..], FileKind::CharDev);
    dev.set_rdev(0x0102_0304);
    variants.push(dev);
    variants.push(FileEntry::new(vec![b'p'; RelPath::INLINE], FileKind::Dir));
    variants.push(FileEntry::new(
        vec![b'p'; RelPath::INLINE + 1],
        FileKind::Dir,
    ));
    for v in variants {
        let mut buf = Vec::new();
        Frame::FileEntries(vec![v.clone()]).encode(&mut buf);
        let mut d = FrameDecoder::new();
        d.push(&buf);
        match d.next_frame() {
            Ok(Some(Frame::FileEntries(got))) => {
                assert_eq!(got, vec![v.clone()]);
                assert_eq!(
                    (got[0].uid(), got[0].gid(), got[0].hardlink_group()),
                    (v.uid(), v.gid(), v.hardlink_group())
                );
                assert_eq!(got[0].checksum(), v.checksum());
            }
            other => panic!("{v:?}: {other:?}"),
        }
    }
}
