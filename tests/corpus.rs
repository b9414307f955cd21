//! The real-tree corpus generator (`tests/common/corpus.rs`, issue 13) does what tests and
//! benches rely on: it is deterministic, it has the shape of a software distribution (deep,
//! wide, hash-named, links of every kind), version B differs from A the way a next release
//! does, and the real rsync syncs A → B → A exactly (so a snapshot comparison after a sync is
//! meaningful). Only the Tiny and Small scales are generated here; arsync itself is not run.
//!
//! `ARSYNC_CORPUS_DIR=/some/dir cargo test --test corpus -- --ignored` generates the Large
//! corpus there (for a bench, or to look at) and prints its summary and timing.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::corpus::{generate_pair, CorpusPair, CorpusSpec, Scale};
use common::*;

fn generate(root: &Path, seed: u64, scale: Scale) -> (CorpusPair, Duration) {
    let start = Instant::now();
    let pair = generate_pair(root, &CorpusSpec { seed, scale });
    (pair, start.elapsed())
}

/// (length, digest) of a regular file's content.
fn content_key(entry: &EntryInfo) -> Option<(usize, u64)> {
    entry.content.as_ref().map(|c| (c.0.len(), fnv64(&c.0)))
}

/// Every regular file's content → the paths holding it.
fn by_content(tree: &Tree) -> HashMap<(usize, u64), Vec<PathBuf>> {
    let mut map: HashMap<(usize, u64), Vec<PathBuf>> = HashMap::new();
    for (path, entry) in tree {
        if let Some(key) = content_key(entry) {
            map.entry(key).or_default().push(path.clone());
        }
    }
    map
}

/// Whether `name` is `<stem>-<16 lowercase hex>.<ext>`, like `libcore-69c47ad7561ac02b.rlib`.
fn has_build_hash(name: &str) -> bool {
    let Some((stem, _ext)) = name.split_once('.') else {
        return false;
    };
    stem.rsplit_once('-').is_some_and(|(_, hash)| {
        hash.len() == 16 && hash.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What is under a directory: (relative path, kind, content key) of each entry.
type Signature = Vec<(PathBuf, Kind, Option<(usize, u64)>)>;

/// What is under `dir`: equal for a directory and its renamed copy.
fn signature(tree: &Tree, dir: &Path) -> Signature {
    tree.range(dir.to_path_buf()..)
        .skip(1)
        .take_while(|(path, _)| path.starts_with(dir))
        .map(|(path, entry)| {
            let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
            (rel, entry.kind, content_key(entry))
        })
        .collect()
}

fn dirs_only_in(tree: &Tree, other: &Tree) -> Vec<PathBuf> {
    tree.iter()
        .filter(|(path, entry)| entry.kind == Kind::Dir && !other.contains_key(*path))
        .map(|(path, _)| path.clone())
        .collect()
}

#[test]
fn same_seed_gives_identical_trees_another_seed_different_ones() {
    let scratch = Scratch::new();
    let (first, _) = generate(&scratch.join("first"), 7, Scale::Tiny);
    let (again, _) = generate(&scratch.join("again"), 7, Scale::Tiny);
    let (other, _) = generate(&scratch.join("other"), 8, Scale::Tiny);
    for (label, x, y) in [("a", &first.a, &again.a), ("b", &first.b, &again.b)] {
        assert_same_tree(
            &format!("version {label} generated twice from seed 7"),
            "first",
            &snapshot(x),
            "again",
            &snapshot(y),
        );
    }
    assert_eq!(
        first.summary, again.summary,
        "the summary is deterministic too"
    );
    for (label, x, y) in [("a", &first.a, &other.a), ("b", &first.b, &other.b)] {
        let diffs = tree_diff("seed 7", &snapshot(x), "seed 8", &snapshot(y));
        assert!(
            diffs.len() > 100,
            "version {label}: seeds 7 and 8 should give quite different trees, got {} differences",
            diffs.len()
        );
    }
}

/// Tiny pairs are for soak tests (many seeds): each must be quick to make and a real change.
/// (A few seeds here, to spare the disk; hundreds were tried once by hand.)
#[test]
fn tiny_pairs_generate_quickly_and_differ_from_a_to_b() {
    let scratch = Scratch::new();
    let mut slowest = Duration::ZERO;
    for seed in 100..108 {
        let (pair, took) = generate(&scratch.join(seed.to_string()), seed, Scale::Tiny);
        slowest = slowest.max(took);
        let (a, b) = (snapshot(&pair.a), snapshot(&pair.b));
        let entries = a.len();
        assert!(
            (250..=450).contains(&entries),
            "seed {seed}: a Tiny version should have about 300 entries, has {entries}\n{}",
            pair.summary
        );
        let diffs = tree_diff("a", &a, "b", &b);
        assert!(
            diffs.len() > 40,
            "seed {seed}: b should differ from a in many entries, got {}\n{}",
            diffs.len(),
            pair.summary
        );
    }
    eprintln!("slowest Tiny pair: {slowest:?}");
    // Generous for a loaded machine; it takes a small fraction of this.
    assert!(
        slowest < Duration::from_secs(3),
        "generating a Tiny pair took {slowest:?}"
    );
}

#[test]
fn small_corpus_looks_like_a_distribution_and_its_next_release() {
    let scratch = Scratch::new();
    let (pair, took) = generate(&scratch.join("corpus"), 1, Scale::Small);
    eprintln!("generated in {took:?}\n{}", pair.summary);
    let (a, b) = (snapshot(&pair.a), snapshot(&pair.b));

    // Version A: counts.
    let count = |tree: &Tree, kind: Kind| tree.values().filter(|e| e.kind == kind).count();
    let (files, dirs, links) = (
        count(&a, Kind::File),
        count(&a, Kind::Dir),
        count(&a, Kind::Symlink),
    );
    let bytes: usize = a
        .values()
        .filter_map(|e| e.content.as_ref())
        .map(|c| c.0.len())
        .sum();
    let summary = &pair.summary;
    assert!(
        (2_500..=4_000).contains(&a.len()),
        "{} entries\n{summary}",
        a.len()
    );
    assert!((2_200..=3_600).contains(&files), "{files} files\n{summary}");
    assert!((100..=800).contains(&dirs), "{dirs} dirs\n{summary}");
    assert!((4..=10).contains(&links), "{links} symlinks\n{summary}");
    assert!(
        (20 << 20..=50 << 20).contains(&bytes),
        "{bytes} bytes\n{summary}"
    );
    let link_groups: BTreeSet<&PathBuf> =
        a.values().filter_map(|e| e.link_group.as_ref()).collect();
    assert_eq!(link_groups.len(), 2, "two hard-link pairs\n{summary}");

    // Deep, wide, hash-named, odd names, empties, modes, mtimes.
    let deepest = a.keys().map(|p| p.components().count()).max().unwrap_or(0);
    assert!(deepest >= 7, "deepest entry is {deepest} levels down");
    let mut children: HashMap<PathBuf, usize> = HashMap::new();
    for path in a.keys().filter(|p| *p != Path::new(".")) {
        *children
            .entry(path.parent().expect("relative").to_path_buf())
            .or_default() += 1;
    }
    let widest = children.values().max().copied().unwrap_or(0);
    assert!(widest >= 1_000, "the widest directory has {widest} entries");
    let names = |tree: &Tree| -> Vec<String> {
        tree.keys()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    };
    let hashed = names(&a).iter().filter(|n| has_build_hash(n)).count();
    assert!(hashed >= 150, "only {hashed} hash-suffixed names");
    assert!(names(&a)
        .iter()
        .any(|n| n.starts_with("libcore-") && n.ends_with(".rlib")));
    assert!(
        names(&a).iter().any(|n| n.contains(' ')),
        "a name with a space"
    );
    assert!(names(&a).iter().any(|n| !n.is_ascii()), "a non-ASCII name");
    assert!(
        names(&a).iter().any(|n| n.starts_with('-')),
        "a name with a leading dash"
    );
    assert!(
        a.values()
            .any(|e| e.content.as_ref().is_some_and(|c| c.0.is_empty())),
        "an empty file"
    );
    assert!(
        a.iter()
            .any(|(path, e)| e.kind == Kind::Dir && signature(&a, path).is_empty()),
        "an empty directory"
    );
    let modes: BTreeSet<u32> = a
        .values()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.mode & 0o7777)
        .collect();
    assert_eq!(modes, BTreeSet::from([0o600, 0o644, 0o755]), "file modes");
    let seconds: BTreeSet<i64> = a.values().map(|e| e.mtime.0).collect();
    assert!(
        seconds.len() > 1_000,
        "only {} distinct mtimes",
        seconds.len()
    );
    let symlink_to = |tree: &Tree, root: &Path, want_dir: Option<bool>| {
        tree.iter().any(|(path, e)| {
            let Some(target) = &e.target else {
                return false;
            };
            let resolved = pair_root(root, path)
                .parent()
                .expect("in a dir")
                .join(target);
            match want_dir {
                Some(dir) => resolved.exists() && resolved.is_dir() == dir,
                None => !resolved.exists() && !target.is_absolute(),
            }
        })
    };
    assert!(
        symlink_to(&a, &pair.a, Some(true)),
        "a symlink to a directory"
    );
    assert!(symlink_to(&a, &pair.a, Some(false)), "a symlink to a file");
    assert!(symlink_to(&a, &pair.a, None), "a dangling relative symlink");
    assert!(
        a.values()
            .all(|e| e.target.as_ref().is_none_or(|t| t.is_relative())),
        "symlinks are relative"
    );

    // Version B against A.
    let only_a: Vec<&PathBuf> = a.keys().filter(|p| !b.contains_key(*p)).collect();
    let only_b: Vec<&PathBuf> = b.keys().filter(|p| !a.contains_key(*p)).collect();
    assert!(
        only_a.len() >= 100,
        "{} entries deleted or renamed",
        only_a.len()
    );
    assert!(
        only_b.len() >= 100,
        "{} entries added or renamed",
        only_b.len()
    );
    let a_contents = by_content(&a);
    let moved_content: Vec<&PathBuf> = b
        .iter()
        .filter(|(path, e)| {
            let Some(key) = content_key(e) else {
                return false;
            };
            key.0 > 0
                && a.get(*path).and_then(content_key) != Some(key)
                && a_contents
                    .get(&key)
                    .is_some_and(|paths| paths.iter().any(|p| p != *path))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        moved_content.len() >= 20,
        "only {} files of b have content a has under another name",
        moved_content.len()
    );
    let b_hashed_new = only_b
        .iter()
        .filter_map(|p| p.file_name())
        .filter(|n| has_build_hash(&n.to_string_lossy()))
        .count();
    assert!(
        b_hashed_new >= 150,
        "only {b_hashed_new} new hash-suffixed names in b"
    );

    let gone: BTreeMap<_, PathBuf> = dirs_only_in(&a, &b)
        .into_iter()
        .map(|d| (signature(&a, &d), d))
        .filter(|(sig, _)| !sig.is_empty())
        .collect();
    let renamed: Vec<(PathBuf, PathBuf)> = dirs_only_in(&b, &a)
        .into_iter()
        .filter_map(|d| gone.get(&signature(&b, &d)).map(|from| (from.clone(), d)))
        .collect();
    assert!(
        renamed.len() >= 2,
        "expected a renamed and a moved directory (same content, new path), found {renamed:?}"
    );

    let mut changed_content = 0;
    let mut changed_mode = 0;
    let mut only_mtime = 0;
    let mut changed_kind = BTreeSet::new();
    for (path, old) in &a {
        let Some(new) = b.get(path) else { continue };
        if old.kind != new.kind {
            changed_kind.insert((old.kind, new.kind));
            continue;
        }
        if old.content != new.content || old.target != new.target {
            changed_content += 1;
            // The quick check (size and mtime) of rsync and arsync must see every change.
            assert!(
                old.mtime != new.mtime
                    || content_key(old).map(|k| k.0) != content_key(new).map(|k| k.0),
                "{path:?} changed content but kept its size and mtime"
            );
        } else if old.mtime != new.mtime && old.kind == Kind::File {
            only_mtime += 1;
        }
        if old.mode != new.mode {
            changed_mode += 1;
        }
    }
    assert!(
        changed_content >= 100,
        "only {changed_content} entries changed content"
    );
    assert!(
        only_mtime >= 5,
        "only {only_mtime} files got just a new mtime"
    );
    assert!(changed_mode >= 3, "only {changed_mode} mode changes");
    for change in [
        (Kind::File, Kind::Symlink),
        (Kind::Symlink, Kind::File),
        (Kind::Dir, Kind::File),
    ] {
        assert!(changed_kind.contains(&change), "no {change:?} replacement");
    }
}

/// `root/path`, or `root` itself for the snapshot's ".".
fn pair_root(root: &Path, path: &Path) -> PathBuf {
    if path == Path::new(".") {
        root.to_path_buf()
    } else {
        root.join(path)
    }
}

#[test]
fn rsync_copies_a_then_b_then_a_exactly() {
    let scratch = Scratch::new();
    let (pair, _) = generate(scratch.path(), 2, Scale::Small);
    let (a, b) = (snapshot(&pair.a), snapshot(&pair.b));
    // Local rsync copies whole files unless told otherwise: the first sync fills the copy,
    // the next two go through the delta algorithm (insertions, renames, scattered edits).
    for (from, want, extra) in [
        ("a/", &a, "--whole-file"),
        ("b/", &b, "--no-whole-file"),
        ("a/", &a, "--no-whole-file"),
    ] {
        let run = rsync(
            scratch.path(),
            &["-aH", "--delete", "--stats", extra, from, "copy/"],
        );
        run.assert_ok();
        let stats: Vec<String> = run
            .stdout_lines()
            .into_iter()
            .filter(|l| {
                l.starts_with("Number of regular files transferred")
                    || l.starts_with("Number of deleted files")
                    || l.starts_with("Literal data")
                    || l.starts_with("Matched data")
            })
            .collect();
        eprintln!("rsync {extra} {from} copy/: {}", stats.join("; "));
        assert_same_tree(
            &format!("rsync -aH --delete {extra} {from} copy/"),
            from,
            want,
            "copy",
            &snapshot(&scratch.join("copy")),
        );
    }
}

/// Generates a corpus into `$ARSYNC_CORPUS_DIR` (which must be set): the Large one, or the
/// scale `$ARSYNC_CORPUS_SCALE` names, from seed `$ARSYNC_CORPUS_SEED` (default 1).
#[test]
#[ignore = "writes over 2 GB; run by hand with ARSYNC_CORPUS_DIR set"]
fn generate_corpus_into_dir() {
    let dir = std::env::var_os("ARSYNC_CORPUS_DIR")
        .expect("set ARSYNC_CORPUS_DIR to the directory to generate the corpus in");
    let seed = std::env::var("ARSYNC_CORPUS_SEED")
        .map(|s| s.parse().expect("ARSYNC_CORPUS_SEED is a number"))
        .unwrap_or(1);
    let scale = std::env::var("ARSYNC_CORPUS_SCALE")
        .map(|s| Scale::parse(&s).expect("ARSYNC_CORPUS_SCALE is tiny, small or large"))
        .unwrap_or(Scale::Large);
    let (pair, took) = generate(Path::new(&dir), seed, scale);
    eprintln!("generated in {took:?}\n{}", pair.summary);
}
