//! Hostile peers, in both roles and both protocols (issue 19): one test per class, each case run
//! in every role it applies to. A real rsync or arsync will not misbehave on purpose, so every
//! peer here is scripted: hand-written rsync bytes replayed by a fake remote shell (a hostile
//! server to our client) or written to `arsync --server` (a hostile client to our server), and
//! hand-written merkle frames over the real in-process transport. arsync, its processes and the
//! files are real. Each case checks the exit code, the message, that nothing was written beside
//! the destination (a canary directory) and that no partial or temporary file was left in it.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::hostile::*;
use common::*;

/// Pull `host:/src/` through a fake remote shell that replays `bytes` (a hostile rsync server).
fn pull(s: &Scratch, a: &Area, bytes: &[u8], extra: &[&str]) -> Run {
    pull_then(s, a, bytes, "sleep 1", extra)
}

/// [`pull`], the server running `then` after its bytes.
fn pull_then(s: &Scratch, a: &Area, bytes: &[u8], then: &str, extra: &[&str]) -> Run {
    let rsh = replay_rsh_then(s, bytes, then);
    let dest = slash(&a.dest);
    let mut args = vec!["-a", "--protocol=rsync", rsh.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["host:/src/", dest.as_str()]);
    arsync(s.path(), &args)
}

/// A hostile *sender* in each role it can play: the server our client pulls from, and the
/// client pushing to `arsync --server`. `payload` is what it says after the handshake (a file
/// list, then replies), `extra` the options of the run (given to our client, or to the
/// server). `check` sees each role's name, exit code and stderr; the destination is put back
/// as it was before each role.
fn as_sender(
    s: &Scratch,
    a: &Area,
    payload: &[u8],
    extra: &[&str],
    check: impl FnMut(&str, Option<i32>, String),
) {
    as_sender_frames(s, a, &mux(payload), extra, check)
}

/// [`as_sender`] with the stream already multiplexed (to cut it inside a frame).
fn as_sender_frames(
    s: &Scratch,
    a: &Area,
    frames: &[u8],
    extra: &[&str],
    mut check: impl FnMut(&str, Option<i32>, String),
) {
    let saved = s.join("dest.saved");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let _ = fs::remove_dir_all(to);
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status();
        assert!(ok.unwrap().success(), "cp -a {}", from.display());
    };
    cp(&a.dest, &saved);
    let run = pull(s, a, &[opening(), frames.to_vec()].concat(), extra);
    check("pull from it", run.code(), run.stderr_str());
    cp(&saved, &a.dest);
    let (code, err) = hostile_push(&a.dest, extra, frames);
    check("push to arsync --server", code, err);
    cp(&saved, &a.dest);
}

/// A `check` for [`as_sender`]: refused with `code` and `msg`, nothing written outside, the
/// destination holding `dest` (no partial or temporary file).
fn refused<'a>(
    a: &'a Area,
    what: &'a str,
    code: i32,
    msg: &'a str,
    dest: &'a [&'a str],
) -> impl FnMut(&str, Option<i32>, String) + 'a {
    move |role, got, err| {
        let what = format!("{what} ({role})");
        assert_refused(&what, got, &err, code, msg);
        a.assert_safe(&what, dest);
    }
}

/// A reply from a hostile sender for list index `ndx_byte - 1`: item flags "transfer", then
/// the sum head it echoes (count, block length, checksum length, remainder).
fn reply(ndx_byte: u8, head: [i32; 4]) -> Vec<u8> {
    let mut r = vec![ndx_byte, 0x00, 0x80];
    for v in head {
        r.extend_from_slice(&v.to_le_bytes());
    }
    r
}

/// A source tree for `arsync --server --sender`. The client offers incremental recursion
/// (`-e.i…`, with `-r`), so the first list starts at 1: 1 ".", 2 "file.txt"; index 0 names
/// "." as the list's directory.
fn server_src(s: &Scratch) -> std::path::PathBuf {
    let src = s.join("src");
    write(&src.join("file.txt"), b"content\n");
    stamp_tree(&src, 1);
    src
}

fn assert_refused(what: &str, code: Option<i32>, err: &str, want: i32, msg: &str) {
    assert_eq!(code, Some(want), "{what}: {err}");
    assert!(err.contains(msg), "{what}: wanted {msg:?} in: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

/// The sum heads of CVE-2024-12084: a count, block length, checksum length or remainder past
/// its bound (rsync 3.4 checks each against MAX_BLOCK_SIZE, the digest length and so on).
const BAD_SUM_HEADS: [(&str, [i32; 4]); 6] = [
    ("negative block length", [1, -5, 2, 0]),
    ("oversize block length", [1, 1 << 30, 2, 0]),
    ("negative count", [-1, 700, 2, 0]),
    ("oversize count", [i32::MAX, 700, 2, 0]),
    ("remainder past the block", [1, 700, 2, 701]),
    ("negative checksum length", [1, 700, -1, 0]),
];

/// A one-file list ("new.txt"), then `after`.
fn new_file_then(after: &[u8]) -> Vec<u8> {
    list_payload(&[(b"new.txt", 0o100644, b"")], after)
}

#[test]
fn names_outside_the_destination_are_refused() {
    let s = Scratch::new();
    let a = Area::new(&s);
    let abs = a.canary.join("evil").display().to_string();
    for name in [
        &b"../canary/evil"[..],
        abs.as_bytes(),
        b"a/../../canary/evil",
    ] {
        let what = String::from_utf8_lossy(name).into_owned();
        let check = refused(&a, &what, 12, "invalid file-list name", &[]);
        as_sender(
            &s,
            &a,
            &list_payload(&[(name, 0o100644, b"")], &[]),
            &[],
            check,
        );
    }
}

#[test]
fn cve_2024_12084_sum_head_bounds() {
    // A hostile sender echoing a sum head past the bounds, in both its roles.
    let s = Scratch::new();
    let a = Area::new(&s);
    for (what, head) in BAD_SUM_HEADS {
        let check = refused(&a, what, 12, "invalid sum head", &[]);
        as_sender(&s, &a, &new_file_then(&reply(1, head)), &[], check);
    }
    // A hostile client asking `arsync --server --sender` with such a head.
    let src = server_src(&s);
    for (what, head) in BAD_SUM_HEADS {
        let (code, err) = hostile_client(&src, &reply(3, head));
        assert_refused(what, code, &err, 12, "invalid sum head");
    }
}

#[test]
fn cve_2024_12085_checksum_length_past_the_digest() {
    // md5 gives 16 bytes: a checksum length of 17 would read (or send) bytes never computed.
    let head = [1, 700, 17, 0];
    let s = Scratch::new();
    let a = Area::new(&s);
    let msg = "invalid sum head: [1, 700, 17, 0]";
    let check = refused(&a, "s2len 17", 12, msg, &[]);
    as_sender(&s, &a, &new_file_then(&reply(1, head)), &[], check);
    let (code, err) = hostile_client(&server_src(&s), &reply(3, head));
    assert_refused("server", code, &err, 12, msg);
}

/// A sender's end with nothing more to send: its phases end, its statistics, goodbye.
const END: [u8; 19] = [0; 19];

/// MD5 of "hello".
const MD5_HELLO: [u8; 16] = [
    0x5d, 0x41, 0x40, 0x2a, 0xbc, 0x4b, 0x2a, 0x76, 0xb9, 0x71, 0x9d, 0x91, 0x10, 0x17, 0xc5, 0x92,
];

#[test]
fn cve_2024_12086_unrequested_or_fuzzy_basis_names() {
    let s = Scratch::new();
    let a = Area::new(&s);
    // A reply naming a fuzzy basis "../canary/keep.txt" (item flags transfer | basis type
    // follows | xname follows, type 0x83): the receiver must not read it. The file arrives from
    // the literal data alone; nothing outside is read into it or touched.
    let mut r = vec![0x01];
    r.extend_from_slice(&(0x8000u16 | 0x0800 | 0x1000).to_le_bytes());
    r.push(0x83);
    let xname = b"../canary/keep.txt";
    r.push(xname.len() as u8);
    r.extend_from_slice(xname);
    r.extend_from_slice(&[0; 16]);
    r.extend_from_slice(&5i32.to_le_bytes());
    r.extend_from_slice(b"hello");
    r.extend_from_slice(&0i32.to_le_bytes());
    r.extend_from_slice(&MD5_HELLO);
    r.extend_from_slice(&END);
    as_sender(&s, &a, &new_file_then(&r), &[], |role, code, err| {
        assert_eq!(code, Some(0), "{role}: {err}");
        let got = fs::read(a.dest.join("new.txt")).unwrap();
        assert_eq!(got, b"hello", "{role}");
        a.assert_safe(role, &["new.txt"]);
    });
    // A reply that "copies" block 4 of a basis the request never described.
    let mut r = reply(1, [0; 4]);
    r.extend_from_slice(&(-5i32).to_le_bytes());
    let check = refused(&a, "block", 12, "block match without a basis", &[]);
    as_sender(&s, &a, &new_file_then(&r), &[], check);
    // A name the client never asked for: it asked for "wanted.txt" alone (a pull only).
    let rsh = replay_rsh(&s, &hostile_sender_bytes(b"evil.txt"));
    let dest = slash(&a.dest);
    let run = arsync(
        s.path(),
        &[
            "-a",
            "--protocol=rsync",
            &rsh,
            "host:/src/wanted.txt",
            &dest,
        ],
    );
    let msg = "rejecting unrequested file-list name \"evil.txt\"";
    assert_refused("unrequested", run.code(), &run.stderr_str(), 12, msg);
    a.assert_safe("unrequested", &[]);
    // A client asking `arsync --server --sender` with a basis type and an xname of 32767
    // bytes (rsync bounds it by MAXPATHLEN): refused before it is read.
    let mut r = vec![0x02];
    r.extend_from_slice(&(0x8000u16 | 0x0800 | 0x1000).to_le_bytes());
    r.extend_from_slice(&[0x83, 0xff, 0xff]);
    r.extend_from_slice(b"xxxxxxxxxx");
    let (code, err) = hostile_client(&server_src(&s), &r);
    assert_refused(
        "long xname",
        code,
        &err,
        12,
        "vstring too large: 32767 > 4096",
    );
}

#[test]
fn cve_2024_12087_file_index_out_of_range_negative_or_of_a_directory() {
    let s = Scratch::new();
    let a = Area::new(&s);
    let file: Entry = (b"f.txt", 0o100644, b"");
    let dup = [file, file];
    let dir_and_file = [(&b"sub"[..], 0o040755, &b""[..]), file];
    let negative = [&[0xff, 0x05][..], &reply(1, [0; 4])[1..]].concat();
    let cases: [(&str, &[Entry], Vec<u8>); 4] = [
        // The second of two entries with the same name: never requested.
        ("never requested", &dup, reply(2, [0; 4])),
        ("past the list", &[file], reply(9, [0; 4])),
        ("negative", &[file], negative.clone()),
        ("a directory", &dir_and_file, reply(2, [0; 4])),
    ];
    for (what, list, r) in cases {
        as_sender(&s, &a, &list_payload(list, &r), &[], |role, code, err| {
            let what = format!("{what} ({role})");
            assert_refused(&what, code, &err, 12, "invalid reply");
            a.assert_outside_untouched(&what);
            let left = a.dest_entries();
            assert!(left.iter().all(|n| n == "sub"), "{what}: {left:?}");
        });
    }
    // A hostile client asking `arsync --server --sender` for such indices.
    let src = server_src(&s);
    for (what, req, msg) in [
        ("past the list", reply(9, [0; 4]), "invalid file index: 8"),
        ("negative", negative, "invalid file index: -6"),
        ("a directory", reply(1, [0; 4]), "a transfer of index 0"),
    ] {
        let (code, err) = hostile_client(&src, &req);
        assert_refused(what, code, &err, 12, msg);
    }
}

/// Incremental recursion (`arsync --server --sender` for a client that offered `i`): the top
/// list is 1 ".", 2 "file.txt", 3 "sub"; sub's list starts at 5 with "sub/g.txt" (4 names
/// "sub"). An index is answered only inside a list sent and not finished.
#[test]
fn incremental_lists_bound_the_indices_a_client_sends() {
    let s = Scratch::new();
    let src = server_src(&s);
    write(&src.join("sub/g.txt"), b"g\n");
    stamp_tree(&src, 1);
    let bad_head = BAD_SUM_HEADS[0].1;
    // The sub-list's entry is a file: a bad sum head for it is the next thing refused.
    let (code, err) = hostile_client(&src, &reply(6, bad_head));
    assert_refused("sub-list entry", code, &err, 12, "invalid sum head");
    // Past the lists sent.
    let (code, err) = hostile_client(&src, &reply(7, bad_head));
    assert_refused("past the lists", code, &err, 12, "invalid file index: 6");
    // The top list finished (NDX_DONE), then an index in it.
    let mut r = vec![0x00];
    r.extend_from_slice(&reply(3, [0; 4]));
    let (code, err) = hostile_client(&src, &r);
    assert_refused(
        "finished list",
        code,
        &err,
        12,
        "2 is in a list the receiver finished",
    );
}

/// Issue 18: one of a hostile sender's incremental file lists (`CF_INC_RECURSE`): entries as
/// [`list_payload`] writes them, the end marker, and no id lists (names come inline).
fn inc_list(entries: &[Entry]) -> Vec<u8> {
    let mut v = list_payload(entries, &[]);
    v.truncate(v.len() - 12);
    v
}

/// A hostile sender with incremental recursion, in both roles: the server our client pulls
/// from (compat flags with `CF_INC_RECURSE`, which our client asked for with `i`), and the
/// client pushing to `arsync --server` having offered `i`.
fn as_inc_sender(
    s: &Scratch,
    a: &Area,
    payload: &[u8],
    mut check: impl FnMut(&str, Option<i32>, String),
) {
    let mut open = opening();
    open[5] = 0xff;
    let run = pull(s, a, &[open, mux(payload)].concat(), &[]);
    check("pull from it", run.code(), run.stderr_str());
    let (code, err) = hostile_push_with(&a.dest, &[], "-logDtpre.iLsfxCIvu", &mux(payload));
    check("push to arsync --server", code, err);
}

/// Issue 18: rsync's extra file lists are checked before anything of them is used: a list
/// for a directory not (yet) listed, one out of turn, a second one, names outside the list's
/// directory or escaping it, the lists ending with a directory still owed its list, a list
/// after the end — each a protocol error (12), nothing written.
#[test]
fn incremental_lists_out_of_place_are_refused() {
    let s = Scratch::new();
    let a = Area::new(&s);
    let dir = 0o040755;
    let top = inc_list(&[(b".", dir, b""), (b"sub", dir, b""), (b"zz", dir, b"")]);
    // dir_flist: . 0, sub 1, zz 2. rsync's ndx codec: 0xff then the difference from the
    // last negative index (first 1): -102 (sub's list) is 0xff 101.
    let sub_list = |names: &[Entry]| [&[0xff, 101][..], &inc_list(names)].concat();
    let file = 0o100644;
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            "a directory not listed",
            [&[0xff, 105][..], &inc_list(&[])].concat(),
            "invalid dir index 5",
        ),
        (
            "the top directory",
            [&[0xff, 100][..], &inc_list(&[])].concat(),
            "out of turn",
        ),
        (
            "out of turn",
            [&[0xff, 102][..], &inc_list(&[])].concat(),
            "out of turn",
        ),
        (
            "a name outside its directory",
            sub_list(&[(b"zz/x", file, b"")]),
            "not a child",
        ),
        (
            "a name escaping",
            sub_list(&[(b"sub/../../canary/evil", file, b"")]),
            "invalid file-list name",
        ),
        (
            "a second list",
            [sub_list(&[]), vec![0xff, 0xfe, 0, 0], inc_list(&[])].concat(),
            "a second list for directory 1",
        ),
        (
            "the end with lists owed",
            vec![0xff, 1],
            "directories were owed",
        ),
    ];
    for (what, after, msg) in cases {
        let payload = [top.clone(), after].concat();
        as_inc_sender(&s, &a, &payload, |role, code, err| {
            let what = format!("{what} ({role})");
            assert_refused(&what, code, &err, 12, msg);
            a.assert_outside_untouched(&what);
            // `sub`'s first (good) list may have been taken in a round before the bad one.
            let left = a.dest_entries();
            assert!(left.iter().all(|n| n == "sub"), "{what}: {left:?}");
        });
    }
}

#[test]
fn cve_2024_12088_safe_links_escapes_are_not_made() {
    let s = Scratch::new();
    let a = Area::new(&s);
    let abs = a.canary.display().to_string();
    for target in [&b"../canary"[..], b"a/../../canary", abs.as_bytes()] {
        let what = String::from_utf8_lossy(target).into_owned();
        let list = [(&b"l"[..], 0o120777, target), (b"ok", 0o120777, b"f.txt")];
        let payload = list_payload(&list, &END);
        as_sender(&s, &a, &payload, &["--safe-links"], |role, code, err| {
            // rsync skips the link and goes on (it says so only at -v, which arsync's
            // receiver cannot tell from -i: see ignored_unsafe_symlink).
            assert_eq!(code, Some(0), "{what} ({role}): {err}");
            a.assert_safe(&format!("{what} ({role})"), &["ok"]);
        });
    }
}

#[test]
fn a_file_through_a_directory_link_in_the_same_list_is_refused() {
    // The older symlink race (and CVE-2024-12088's shape): `d -> <outside>`, then `d/x`.
    let s = Scratch::new();
    let a = Area::new(&s);
    let abs = a.canary.display().to_string();
    for target in [&b"../canary"[..], abs.as_bytes()] {
        let what = String::from_utf8_lossy(target).into_owned();
        let list = [(&b"d"[..], 0o120777, target), (b"d/x", 0o100644, b"")];
        let msg = "entry \"d/x\" has no directory entry for its parent";
        let check = refused(&a, &what, 12, msg, &[]);
        as_sender(&s, &a, &list_payload(&list, &[]), &[], check);
    }
}

#[test]
fn oversized_counts_and_lengths_are_refused_before_use() {
    let s = Scratch::new();
    let a = Area::new(&s);
    // A file-list name of 1 MiB (long-name flag, varint length 0x100000), then nothing.
    let msg = "invalid file name: prefix 0 + suffix 1048576 bytes";
    let check = refused(&a, "long name", 12, msg, &[]);
    as_sender(&s, &a, &[0x44, 0xd0, 0x00, 0x00, b'x'], &[], check);
    // A symlink target of 4 GiB - 1 is refused the same way.
    let mut list = vec![0x04, 1, b'l', 0x00, 0x05, 0x00, 0x3b, 0x00, 0xca, 0x9a];
    list.extend_from_slice(&0o120777u32.to_le_bytes());
    list.extend_from_slice(&[0x00, 0x00, 0xf0, 0xff, 0xff, 0xff, 0xff]);
    let msg = "invalid symlink target length: -1";
    as_sender(&s, &a, &list, &[], refused(&a, "long link", 12, msg, &[]));
    // A literal token of 2 GiB - 1 bytes, and a sender that then stops: read in bounded pieces
    // (as rsync's simple_recv_token), so the run ends at the cut, with nothing allocated for
    // the whole and nothing left behind.
    let mut r = reply(1, [0; 4]);
    r.extend_from_slice(&i32::MAX.to_le_bytes());
    r.extend_from_slice(b"abc");
    let check = refused(&a, "2 GiB literal", 12, "closed the connection", &[]);
    as_sender(&s, &a, &new_file_then(&r), &[], check);
}

#[test]
fn a_peer_that_goes_quiet_is_cut_off_by_timeout() {
    let s = Scratch::new();
    let a = Area::new(&s);
    fs::write(a.dest.join("f.txt"), b"old content").unwrap();
    // A server that sends half its file list, then nothing, and never hangs up.
    let bytes = hostile_list_bytes(&[(b"f.txt", 0o100644, b"")], &[]);
    let t = Instant::now();
    let cut = &bytes[..bytes.len() - 10];
    let run = pull_then(&s, &a, cut, "exec sleep 60", &["--timeout=2"]);
    assert_refused("quiet server", run.code(), &run.stderr_str(), 30, "timeout");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    a.assert_safe("quiet server", &["f.txt"]);
    assert_eq!(fs::read(a.dest.join("f.txt")).unwrap(), b"old content");
    // Clients to `arsync --server [--sender] --timeout=2` that send their opening (and a
    // part of the list), then nothing, holding the connection open.
    let src = server_src(&s);
    let list = mux(&list_payload(&[(b"f.txt", 0o100644, b"")], &[]));
    let quiet_pusher = [
        &[32, 0, 0, 0, 3, b'm', b'd', b'5'][..],
        &list[..list.len() - 10],
    ]
    .concat();
    for (what, sender, last, bytes) in [
        (
            "quiet puller",
            true,
            slash(&src),
            vec![32, 0, 0, 0, 3, b'm', b'd', b'5'],
        ),
        ("quiet pusher", false, slash(&a.dest), quiet_pusher),
    ] {
        // The pusher's list is the whole list (no `i`): it goes quiet inside its id lists.
        let flags = if sender {
            "-logDtpre.iLsfxCIvu"
        } else {
            "-logDtpre.LsfxCIvu"
        };
        let mut args = vec!["--server", "--timeout=2", flags, "."];
        if sender {
            args.insert(1, "--sender");
        }
        let t = Instant::now();
        let (code, err) = raw_client(&args, &last, &bytes, Duration::from_secs(20));
        assert_refused(what, code, &err, 30, "timeout");
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{what}: took {:?}",
            t.elapsed()
        );
        a.assert_safe(what, &["f.txt"]);
        assert_eq!(fs::read(a.dest.join("f.txt")).unwrap(), b"old content");
    }
}

#[test]
fn a_stream_cut_mid_frame_fails_with_12_and_truncates_nothing() {
    let s = Scratch::new();
    let a = Area::new(&s);
    fs::write(a.dest.join("f.txt"), b"old content").unwrap();
    let list = [(&b"f.txt"[..], 0o100644, &b""[..])];
    // Cut inside the file list.
    let frames = mux(&list_payload(&list, &[]));
    let cut = &frames[..frames.len() - 10];
    let check = refused(&a, "list", 12, "closed the connection", &["f.txt"]);
    as_sender_frames(&s, &a, cut, &[], check);
    // Cut inside the file's data (-W: the request carries no sums to echo): a full frame with
    // the null sum head, 5 literal bytes announced and 3 of them; then half a frame.
    let mut r = reply(1, [0; 4]);
    r.extend_from_slice(&5i32.to_le_bytes());
    r.extend_from_slice(b"hel");
    let mut frames = mux(&list_payload(&list, &r));
    frames.extend_from_slice(&mux(b"lo\0\0\0\0")[..6]);
    let mut check = refused(&a, "data", 12, "closed the connection", &["f.txt"]);
    as_sender_frames(&s, &a, &frames, &["-W"], |role, code, err| {
        check(role, code, err);
        let kept = fs::read(a.dest.join("f.txt")).unwrap();
        assert_eq!(kept, b"old content", "{role}: the old file was truncated");
    });
    // A client to `arsync --server --sender` cut inside a multiplexed frame.
    let mut bytes = vec![32, 0, 0, 0, 3, b'm', b'd', b'5'];
    bytes.extend_from_slice(&mux(&[0, 0, 0, 0, 0x02, 0x00, 0x80, 1, 0])[..7]);
    let src = server_src(&s);
    let (code, err) = raw_client(
        &["--server", "--sender", "-logDtpre.iLsfxCIvu", "."],
        &slash(&src),
        &bytes,
        Duration::ZERO,
    );
    assert_refused("server", code, &err, 12, "closed the connection");
}

// The merkle protocol (arsync to arsync): a scripted peer speaking raw frames to a real
// receiver or sender over the in-process transport (tests/common/hostile_merkle.rs).

mod merkle {
    use super::*;
    use arsync::core::engine::{FileEntry, FileKind, SyncOptions};
    use arsync::core::merkle::NodeRef;
    use arsync::core::proto::merkle::caps::{DirTreeCap, Role};
    use arsync::core::proto::merkle::{Caps, Frame, PROTOCOL_VERSION};
    use arsync::core::{ExitCode, SyncError};
    use common::hostile_merkle::{MerklePeer, Victim};

    fn opts(timeout: Option<u64>) -> SyncOptions {
        let mut o = SyncOptions::archive();
        o.stream_data = true;
        o.io_timeout = timeout;
        o
    }

    fn entry(path: &str, kind: FileKind, size: u64, target: &str) -> FileEntry {
        let mut e = FileEntry::new(path.as_bytes(), kind);
        e.perms = if kind == FileKind::Dir { 0o755 } else { 0o644 };
        e.size = size;
        e.mtime = 1_600_000_000;
        e.set_link_target(target.as_bytes().to_vec());
        e
    }

    fn file(path: &str, size: u64) -> FileEntry {
        entry(path, FileKind::File, size, "")
    }

    /// A real receiver into `a.dest`, sent `list` (entries, then its end).
    async fn receiver_with_list(a: &Area, list: Vec<FileEntry>) -> MerklePeer {
        let mut h = MerklePeer::to_receiver(&a.dest, opts(None), vec![]).await;
        let count = list.len() as u32;
        h.frame(&Frame::FileEntries(list)).await;
        h.frame(&Frame::FileListEnd { count }).await;
        h
    }

    /// A real sender of `src/` (one file, `f`, of 100 bytes), its list read to the end.
    async fn sender(s: &Scratch, timeout: Option<u64>, caps: Vec<(String, Vec<u8>)>) -> MerklePeer {
        let src = s.join("msrc");
        write(&src.join("f"), &[7; 100]);
        let mut h =
            MerklePeer::start(Victim::Sender(vec![src.join("")]), opts(timeout), caps).await;
        h.expect_frame(|f| matches!(f, Frame::FileListEnd { .. }))
            .await;
        h
    }

    /// The role failed with `code` and a message containing `msg`.
    fn assert_failed(what: &str, r: Result<(), SyncError>, code: ExitCode, msg: &str) {
        let err = r.expect_err(what);
        assert_eq!(err.exit_code(), code, "{what}: {err}");
        assert!(
            err.to_string().contains(msg),
            "{what}: wanted {msg:?} in: {err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn out_of_range_file_indices_in_requests_and_replies() {
        let s = Scratch::new();
        let a = Area::new(&s);
        // Replies to a receiver for an index past the list, and one never requested.
        for (what, f) in [
            ("data for index 7", Frame::DataBegin { ndx: 7, size: 1 }),
            (
                "nodes for index 7",
                Frame::Nodes {
                    ndx: 7,
                    groups: vec![],
                },
            ),
            (
                "end of index 7",
                Frame::DataEnd {
                    ndx: 7,
                    hash: [0; 32],
                },
            ),
        ] {
            let mut h = receiver_with_list(&a, vec![file("f", 1)]).await;
            h.frame(&f).await;
            let msg = "invalid reply: index 7 was not requested";
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
            a.assert_safe(what, &[]);
        }
        // Requests to a sender for an index past its list.
        for (what, f, msg) in [
            (
                "request 99",
                Frame::Request { ndx: 99, iflags: 1 },
                "index 99 is out of range",
            ),
            (
                "delta request 99",
                Frame::DeltaRequest { ndx: 99, iflags: 1 },
                "index 99 is out of range",
            ),
            (
                "fetch 99",
                Frame::Fetch {
                    ndx: 99,
                    hashes: vec![[0; 32]],
                    last: true,
                },
                "no exchange open for index 99",
            ),
        ] {
            let mut h = sender(&s, None, delta_caps(Role::Receiver)).await;
            h.frame(&f).await;
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
        }
    }

    /// Our hello's capabilities as a sender (or receiver) that speaks the delta exchange.
    fn delta_caps(role: Role) -> Vec<(String, Vec<u8>)> {
        let mut caps = Caps::default();
        caps.role = Some(role);
        caps.delta = true;
        caps.hello(PROTOCOL_VERSION).caps
    }

    /// A real receiver with an old `f` (100 bytes of 1) sent a list with a new `f` of 100
    /// bytes, waiting for its delta request.
    async fn delta_receiver(a: &Area) -> MerklePeer {
        fs::write(a.dest.join("f"), [1; 100]).unwrap();
        let mut h = MerklePeer::to_receiver(&a.dest, opts(None), delta_caps(Role::Sender)).await;
        h.frame(&Frame::FileEntries(vec![file("f", 100)])).await;
        h.frame(&Frame::FileListEnd { count: 1 }).await;
        h.expect_frame(|f| matches!(f, Frame::DeltaRequest { ndx: 0, .. }))
            .await;
        h
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunk_hashes_past_the_tree_and_ranges_past_the_end() {
        let s = Scratch::new();
        let a = Area::new(&s);
        let root = NodeRef {
            level: 0,
            hash: [9; 32],
            size: 100,
        };
        // Replies to a receiver's delta exchange: two root groups; nodes nobody asked for;
        // more chunk data than the file has.
        let cases: [(&str, Vec<Frame>, &str); 3] = [
            (
                "two roots",
                vec![Frame::Nodes {
                    ndx: 0,
                    groups: vec![vec![root], vec![root]],
                }],
                "expected the root alone",
            ),
            (
                "nodes nobody asked for",
                vec![
                    Frame::Nodes {
                        ndx: 0,
                        groups: vec![vec![root]],
                    },
                    Frame::Nodes {
                        ndx: 0,
                        groups: vec![vec![root]],
                    },
                ],
                "index 0 was not requested or was answered twice",
            ),
            (
                "data past the end",
                vec![
                    Frame::Nodes {
                        ndx: 0,
                        groups: vec![vec![root]],
                    },
                    Frame::Data {
                        ndx: 0,
                        bytes: vec![5; 200],
                    },
                ],
                "more chunk data than file 0 has",
            ),
        ];
        for (what, frames, msg) in cases {
            let mut h = delta_receiver(&a).await;
            for f in &frames {
                h.frame(f).await;
            }
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
            a.assert_safe(what, &["f"]);
            assert_eq!(fs::read(a.dest.join("f")).unwrap(), [1; 100], "{what}");
        }
        // A sender asked to expand or fetch chunks its tree does not have (then `Done`: a
        // small file's chunks go out with the batch it closes).
        let unknown = vec![[9; 32]];
        for (what, f, msg) in [
            (
                "expand",
                Frame::Expand {
                    ndx: 1,
                    hashes: unknown.clone(),
                },
                "not an interior node of this file",
            ),
            (
                "fetch",
                Frame::Fetch {
                    ndx: 1,
                    hashes: unknown.clone(),
                    last: true,
                },
                "not a chunk of this file",
            ),
        ] {
            let mut h = sender(&s, None, delta_caps(Role::Receiver)).await;
            // The sender's list: 0 ".", 1 "f".
            h.frame(&Frame::DeltaRequest { ndx: 1, iflags: 2 }).await;
            h.expect_frame(|f| matches!(f, Frame::Nodes { .. })).await;
            h.frame(&f).await;
            h.frame(&Frame::Done).await;
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
        }
        // Ranges of the 100-byte file past its end, and past 2^64 (on the control stream).
        for (what, offset, len, msg) in [
            ("range past the end", 50, 100, "past the end of the file"),
            ("range past 2^64", u64::MAX, 2, "empty or past 2^64"),
        ] {
            let mut h = sender(&s, None, vec![]).await;
            let f = Frame::RangeRequest {
                ndx: 1,
                iflags: 1,
                lane: 0,
                offset,
                len,
            };
            h.frame(&f).await;
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
        }
    }

    /// The next frame from a real role, with a decoder kept across reads.
    async fn next_frame(
        h: &mut MerklePeer,
        dec: &mut arsync::core::proto::merkle::FrameDecoder,
    ) -> Frame {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = dec.next_frame().expect("the role sent a bad frame") {
                return f;
            }
            let n = h.recv.read(&mut buf).await.expect("read");
            assert!(n > 0, "the role closed early");
            dec.push(&buf[..n]);
        }
    }

    /// Issue 18, scattered deltas: a sender whose gap description copies the wrong old block
    /// (what a false match of the gap's short sums would do) — the receiver refuses the rebuilt
    /// chunks, asks for the file whole, and the file comes out right; nothing else is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gap_that_does_not_check_is_asked_for_whole() {
        use arsync::core::merkle::chunk::{chunk_bytes, delta_params};
        use arsync::core::merkle::gapsum::{match_gap, GapOp};
        use arsync::core::merkle::tree::{ChunkTree, DEFAULT_FANOUT_BITS};
        use arsync::core::proto::merkle::FrameDecoder;
        let s = Scratch::new();
        let a = Area::new(&s);
        let old = pseudo_random(300_000, 31);
        let mut new = old.clone();
        new[150_000..151_000].copy_from_slice(&pseudo_random(1000, 32));
        fs::write(a.dest.join("f"), &old).unwrap();
        let mut caps = Caps::default();
        caps.role = Some(Role::Sender);
        caps.delta = true;
        caps.gaps = true;
        let hello = caps.hello(PROTOCOL_VERSION).caps;
        let mut h = MerklePeer::to_receiver(&a.dest, opts(None), hello).await;
        let size = new.len() as u64;
        h.frame(&Frame::FileEntries(vec![file("f", size)])).await;
        h.frame(&Frame::FileListEnd { count: 1 }).await;
        let chunks = chunk_bytes(&new, delta_params(size, None, 0, false));
        let tree = ChunkTree::build(&chunks, DEFAULT_FANOUT_BITS);
        let mut dec = FrameDecoder::new();
        while !matches!(
            next_frame(&mut h, &mut dec).await,
            Frame::DeltaRequest { ndx: 0, .. }
        ) {}
        h.frame(&Frame::Nodes {
            ndx: 0,
            groups: vec![vec![tree.root()]],
        })
        .await;
        let (mut fetch, mut gaps) = (Vec::new(), Vec::new());
        loop {
            match next_frame(&mut h, &mut dec).await {
                Frame::Expand { hashes, .. } => {
                    let groups = hashes
                        .iter()
                        .map(|x| tree.children(x).unwrap().to_vec())
                        .collect();
                    h.frame(&Frame::Nodes { ndx: 0, groups }).await;
                }
                Frame::GapSums {
                    first,
                    count,
                    block,
                    sums,
                    ..
                } => gaps.push((first as usize, count as usize, block, sums)),
                Frame::Fetch { hashes, last, .. } => {
                    fetch.extend(hashes);
                    if last {
                        break;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(gaps.len(), 1, "one changed stretch, one gap offered");
        let bytes_of = |x: &[u8; 32]| {
            let c = chunks.iter().find(|c| c.hash == *x).unwrap();
            new[c.offset as usize..][..c.len as usize].to_vec()
        };
        let (first, count, block, sums) = gaps.remove(0);
        for x in &fetch[..first] {
            h.frame(&Frame::Data {
                ndx: 0,
                bytes: bytes_of(x),
            })
            .await;
        }
        let gap: Vec<u8> = fetch[first..first + count]
            .iter()
            .flat_map(bytes_of)
            .collect();
        let mut ops = match_gap(&gap, block, &sums);
        let copy = ops.iter_mut().find_map(|op| match op {
            GapOp::Copy { block, .. } => Some(block),
            _ => None,
        });
        let b = copy.expect("a copy to point at the wrong block");
        *b = if *b == 0 { 1 } else { *b - 1 };
        h.frame(&Frame::GapData { ndx: 0, ops }).await;
        for x in &fetch[first + count..] {
            h.frame(&Frame::Data {
                ndx: 0,
                bytes: bytes_of(x),
            })
            .await;
        }
        h.frame(&Frame::DataEnd {
            ndx: 0,
            hash: tree.root().hash,
        })
        .await;
        // The receiver asks for the file whole before it is done.
        loop {
            match next_frame(&mut h, &mut dec).await {
                Frame::Request { ndx: 0, .. } => break,
                Frame::Done => panic!("done without asking for the file again"),
                _ => {}
            }
        }
        h.frame(&Frame::DataBegin { ndx: 0, size }).await;
        h.frame(&Frame::Data {
            ndx: 0,
            bytes: new.clone(),
        })
        .await;
        h.frame(&Frame::DataEnd {
            ndx: 0,
            hash: *blake3::hash(&new).as_bytes(),
        })
        .await;
        while !matches!(next_frame(&mut h, &mut dec).await, Frame::Done) {}
        h.frame(&Frame::Done).await;
        let (r, _) = h.finish().await;
        r.expect("the file was sent again whole");
        assert!(
            fs::read(a.dest.join("f")).unwrap() == new,
            "the file differs"
        );
        a.assert_safe("a gap that does not check", &["f"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn path_escapes_in_lists_and_directory_requests() {
        let s = Scratch::new();
        let a = Area::new(&s);
        let abs = a.canary.join("x").display().to_string();
        const DOTS: &str = "invalid path: '.' or '..' path component";
        let escapes: [(&str, Vec<FileEntry>, &str); 4] = [
            ("dot-dot", vec![file("../canary/x", 1)], DOTS),
            (
                "absolute",
                vec![file(&abs, 1)],
                "invalid path: absolute path",
            ),
            ("dot-dot inside", vec![file("a/../../canary/x", 1)], DOTS),
            (
                "through a symlink",
                vec![
                    entry("d", FileKind::Symlink, 0, "../canary"),
                    file("d/x", 1),
                ],
                "entry \"d/x\" has no directory entry for its parent",
            ),
        ];
        for (what, list, msg) in escapes {
            let h = receiver_with_list(&a, list).await;
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
            a.assert_safe(what, &[]);
        }
        // A receiver asking a sender to list directories outside its source (directory-tree
        // exchange).
        for bad in ["..", "../..", "/etc", "a/../.."] {
            let mut caps = Caps::default();
            caps.role = Some(Role::Receiver);
            caps.dirtree = Some(DirTreeCap::Receiver { levels: 1, mask: 0 });
            let mut h = sender(&s, None, caps.hello(PROTOCOL_VERSION).caps).await;
            h.frame(&Frame::WantDirs(vec![(bad.as_bytes().to_vec(), true)]))
                .await;
            assert_failed(
                bad,
                h.finish().await.0,
                ExitCode::StreamIo,
                "invalid directory path",
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletions_never_asked_for_are_refused() {
        let s = Scratch::new();
        let a = Area::new(&s);
        // A sender naming destination entries to delete (missing arguments, only with
        // --delete-missing-args), one of them outside.
        fs::write(a.dest.join("keep"), b"keep").unwrap();
        for (name, msg) in [
            ("keep", "sent to a receiver without --delete-missing-args"),
            (
                "../canary/keep.txt",
                "invalid missing argument: '.' or '..'",
            ),
        ] {
            let mut h = MerklePeer::to_receiver(&a.dest, opts(None), vec![]).await;
            h.frame(&Frame::MissingArgs(vec![name.as_bytes().to_vec()]))
                .await;
            h.frame(&Frame::FileListEnd { count: 0 }).await;
            assert_failed(name, h.finish().await.0, ExitCode::StreamIo, msg);
            a.assert_safe(name, &["keep"]);
        }
        // A receiver telling a sender (not run with --remove-source-files) that its file is
        // synchronized, so that it removes it.
        let mut h = sender(&s, None, vec![]).await;
        h.frame(&Frame::Synced(vec![(1, 0, 0)])).await;
        let msg = "invalid synced: not asked for";
        assert_failed("synced", h.finish().await.0, ExitCode::StreamIo, msg);
        assert!(s.join("msrc/f").exists(), "the sender removed its source");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_frames_lists_and_names_are_refused_before_use() {
        let s = Scratch::new();
        let a = Area::new(&s);
        let mut entries = vec![0x02];
        entries.extend_from_slice(&5000u32.to_le_bytes());
        let mut long_name = vec![0x02];
        long_name.extend_from_slice(&1u32.to_le_bytes());
        long_name.extend_from_slice(&60000u16.to_le_bytes());
        let framed = |t: u8, payload: &[u8]| {
            let mut f = vec![t];
            f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            f.extend_from_slice(payload);
            f
        };
        let cases = [
            (
                "a 4 GiB frame",
                vec![0x02, 0xff, 0xff, 0xff, 0xff],
                "frame length",
            ),
            (
                "5000 entries",
                framed(0x02, &entries[1..]),
                "entry count too large: 5000 > 4096",
            ),
            (
                "a 60000-byte name",
                framed(0x02, &long_name[1..]),
                "path too large: 60000 > 4096",
            ),
        ];
        for (what, bytes, msg) in &cases {
            let mut h = MerklePeer::to_receiver(&a.dest, opts(None), vec![]).await;
            h.raw(bytes).await;
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
            a.assert_safe(what, &[]);
        }
        // To a sender: a 4 GiB frame, and an expand of 200 nodes (at most 128).
        let mut expand = vec![0x19];
        let mut p = 1u32.to_le_bytes().to_vec();
        p.extend_from_slice(&200u32.to_le_bytes());
        p.extend_from_slice(&[9; 32 * 200]);
        expand.extend_from_slice(&(p.len() as u32).to_le_bytes());
        expand.extend_from_slice(&p);
        for (what, bytes, msg) in [
            (
                "a 4 GiB frame",
                vec![0x10, 0xff, 0xff, 0xff, 0xff],
                "frame length",
            ),
            ("expand 200", expand, "expand count too large: 200 > 128"),
        ] {
            let mut h = sender(&s, None, vec![]).await;
            h.raw(&bytes).await;
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_goes_quiet_is_cut_off_by_timeout() {
        let s = Scratch::new();
        let a = Area::new(&s);
        fs::write(a.dest.join("f"), b"old content").unwrap();
        // A sender that lists a file, is asked for it, and says nothing more.
        let t = Instant::now();
        let mut h = MerklePeer::to_receiver(&a.dest, opts(Some(2)), vec![]).await;
        h.frame(&Frame::FileEntries(vec![file("f", 100)])).await;
        h.frame(&Frame::FileListEnd { count: 1 }).await;
        times_out("quiet sender", h, t).await;
        a.assert_safe("quiet sender", &["f"]);
        assert_eq!(fs::read(a.dest.join("f")).unwrap(), b"old content");
        // A receiver that takes the list and asks for nothing.
        let t = Instant::now();
        let h = sender(&s, Some(2), vec![]).await;
        times_out("quiet receiver", h, t).await;
    }

    /// The role, left waiting on a silent peer, fails with exit 30 well before 15 seconds.
    async fn times_out(what: &str, h: MerklePeer, t: Instant) {
        let r = tokio::time::timeout(Duration::from_secs(20), h.wait_quiet()).await;
        let msg = "io timeout after 2 seconds";
        assert_failed(what, r.expect("no timeout"), ExitCode::Timeout, msg);
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{what}: took {:?}",
            t.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_cut_mid_frame_fails_with_12_and_truncates_nothing() {
        let s = Scratch::new();
        let a = Area::new(&s);
        fs::write(a.dest.join("f"), b"old content").unwrap();
        let mut h = receiver_with_list(&a, vec![file("f", 100)]).await;
        assert_eq!(h.expect_request().await, 0);
        h.frame(&Frame::DataBegin { ndx: 0, size: 100 }).await;
        h.frame(&Frame::Data {
            ndx: 0,
            bytes: vec![7; 50],
        })
        .await;
        h.raw(&[0x13, 0x10]).await; // half a frame header
        assert_failed(
            "receiver",
            h.finish().await.0,
            ExitCode::StreamIo,
            "closed in the middle of a frame",
        );
        a.assert_safe("receiver", &["f"]);
        assert_eq!(fs::read(a.dest.join("f")).unwrap(), b"old content");
        // A sender's peer cut inside a request.
        let mut h = sender(&s, None, vec![]).await;
        h.raw(&[0x10, 6, 0, 0, 0, 1]).await;
        assert_failed(
            "sender",
            h.finish().await.0,
            ExitCode::StreamIo,
            "closed in the middle of a frame",
        );
    }

    // Issue 18, streaming list:
    /// Our hello as a sender that streams its list in segments.
    fn segment_caps() -> Vec<(String, Vec<u8>)> {
        let mut caps = Caps::default();
        caps.role = Some(Role::Sender);
        caps.delta = true;
        caps.segments = Some(1024);
        caps.hello(PROTOCOL_VERSION).caps
    }

    /// A hostile sender's segments to a real receiver (a fresh destination, so it streams):
    /// a parent out of turn, a duplicate, a wrong base, an entry outside its directory or out
    /// of order, more entries than announced, entries outside a segment, an end while
    /// directories are owed, a wrong count — each a protocol error (12), nothing written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segments_out_of_turn_or_out_of_place_are_refused() {
        use arsync::core::proto::merkle::ROOT_SEGMENT;
        let s = Scratch::new();
        let a = Area::new(&s);
        let dir = |p: &str| entry(p, FileKind::Dir, 0, "");
        let top = || {
            vec![
                Frame::Segment {
                    parent: ROOT_SEGMENT,
                    base: 0,
                    count: 3,
                },
                Frame::FileEntries(vec![dir("."), dir("d1"), dir("d2")]),
            ]
        };
        let seg = |parent, base, count| Frame::Segment {
            parent,
            base,
            count,
        };
        let cases: Vec<(&str, Vec<Frame>, &str)> = vec![
            (
                "d2 before d1",
                vec![seg(2, 3, 0)],
                "not the next directory owed",
            ),
            (
                "a parent that is a file",
                vec![seg(0, 3, 0)],
                "not the next directory owed",
            ),
            ("a wrong base", vec![seg(1, 5, 0)], "base 5, but 3 entries"),
            (
                "a duplicate segment",
                vec![seg(1, 3, 0), seg(1, 3, 0)],
                "not the next directory owed",
            ),
            (
                "an entry outside its directory",
                vec![seg(1, 3, 1), Frame::FileEntries(vec![file("d2/x", 1)])],
                "is not a child of the segment's directory",
            ),
            (
                "entries out of order",
                vec![
                    seg(1, 3, 2),
                    Frame::FileEntries(vec![file("d1/b", 1), file("d1/a", 1)]),
                ],
                "not in transfer order",
            ),
            (
                "more entries than announced",
                vec![
                    seg(1, 3, 1),
                    Frame::FileEntries(vec![file("d1/a", 1), file("d1/b", 1)]),
                ],
                "more entries than the segment announced",
            ),
            (
                "entries outside a segment",
                vec![Frame::FileEntries(vec![file("x", 1)])],
                "outside a segment",
            ),
            (
                "the end with d2 owed",
                vec![seg(1, 3, 0), Frame::FileListEnd { count: 3 }],
                "directories were never listed",
            ),
            (
                "a round end with a wrong count",
                vec![Frame::RoundEnd { count: 2 }],
                "count 2 but 3 entries received",
            ),
        ];
        for (what, frames, msg) in cases {
            let mut h = MerklePeer::to_receiver(&a.dest, opts(None), segment_caps()).await;
            for f in top().iter().chain(&frames) {
                h.frame(f).await;
            }
            assert_failed(what, h.finish().await.0, ExitCode::StreamIo, msg);
            a.assert_safe(what, &[]);
        }
    }

    /// A hostile receiver asking a streaming sender for an index outside the round's list.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_outside_the_round_is_refused() {
        let s = Scratch::new();
        let src = s.join("ssrc");
        write(&src.join("d/f"), &[7; 100]);
        let mut caps = Caps::default();
        caps.role = Some(Role::Receiver);
        caps.segments = Some(1024);
        let caps = caps.hello(PROTOCOL_VERSION).caps;
        let mut h = MerklePeer::start(Victim::Sender(vec![src.join("")]), opts(None), caps).await;
        h.expect_frame(|f| matches!(f, Frame::FileListEnd { count: 3 }))
            .await;
        h.frame(&Frame::Request { ndx: 3, iflags: 1 }).await;
        let r = h.finish().await.0;
        assert_failed(
            "request 3",
            r,
            ExitCode::StreamIo,
            "index 3 is out of range",
        );
    }
}
