//! The real-tree corpus (issue 13): a generator of two versions of a tree shaped like an
//! installed software distribution (a Rust toolchain: `bin/` executables, big hash-named shared
//! objects, many `lib<name>-<16 hex>.rlib` files, deep and wide HTML docs, sources, configs,
//! headers, links), version B being the next release of version A, so that tests and benches
//! can sync A → B and B → A and compare with rsync.
//!
//! Owns the tree model, the deterministic generator (same seed → byte-identical trees, modes
//! and mtimes included) and the summary of what changed from A to B. Not owned here: running
//! the tools and comparing trees (`super`'s `rsync`, `arsync`, `snapshot`, `assert_same_tree`),
//! and the checks that the corpus really has the promised shape (`tests/corpus.rs`). Nothing is
//! downloaded; every entry belongs to the running user.
//!
//! Every choice comes from a small splitmix64 generator. Big files are not held in memory: a
//! file's content is a [`Recipe`], a list of pieces of seekable streams (random bytes from
//! BLAKE3's output stream — the tests' existing dev-dependency, fast even in a debug build —,
//! symbol-table records, zeros, text), so B's edits (insertions, truncations, 4 KiB
//! overwrites) are splices of the list and the bytes are made only while writing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{chmod, hard_link, set_mtime, symlink};

/// How big a corpus is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// About 300 entries and 3 MB per version: many pairs for a soak test.
    Tiny,
    /// About 3,000 entries and 30 MB per version: the integration tests.
    Small,
    /// Over 20,000 entries and 1 GB per version: the benches.
    Large,
}

impl Scale {
    pub const ALL: [Scale; 3] = [Scale::Tiny, Scale::Small, Scale::Large];

    /// Its name on a command line.
    pub fn key(self) -> &'static str {
        match self {
            Scale::Tiny => "tiny",
            Scale::Small => "small",
            Scale::Large => "large",
        }
    }

    /// The scale named `key` (see [`Scale::key`]).
    pub fn parse(key: &str) -> Option<Scale> {
        Scale::ALL.into_iter().find(|s| s.key() == key)
    }

    fn plan(self) -> Plan {
        const KB: u64 = 1 << 10;
        const MB: u64 = 1 << 20;
        match self {
            Scale::Tiny => Plan {
                targets: 1,
                crates: 12,
                rlib_bytes: 600 * KB,
                driver_bytes: 500 * KB,
                llvm_bytes: 400 * KB,
                std_so_bytes: 160 * KB,
                bin_bytes: 400 * KB,
                wide: &[100],
                doc_pages: 30,
                src_files: 16,
                headers: 2,
                man_pages: 3,
                search_index_bytes: 24 * KB,
            },
            Scale::Small => Plan {
                targets: 2,
                crates: 48,
                rlib_bytes: 4 * MB + 512 * KB,
                driver_bytes: 5 * MB,
                llvm_bytes: 3 * MB,
                std_so_bytes: MB,
                bin_bytes: 3 * MB,
                wide: &[1100],
                doc_pages: 900,
                src_files: 350,
                headers: 20,
                man_pages: 16,
                search_index_bytes: 200 * KB,
            },
            Scale::Large => Plan {
                targets: 4,
                crates: 160,
                rlib_bytes: 130 * MB,
                driver_bytes: 150 * MB,
                llvm_bytes: 110 * MB,
                std_so_bytes: 12 * MB,
                bin_bytes: 60 * MB,
                wide: &[3000, 1800, 1100],
                doc_pages: 9000,
                src_files: 4000,
                headers: 60,
                man_pages: 40,
                search_index_bytes: 3 * MB,
            },
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct CorpusSpec {
    pub seed: u64,
    pub scale: Scale,
}

/// A generated pair: version A, version B (its next release) and what is in them.
#[derive(Debug)]
pub struct CorpusPair {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Counts of each version (files, dirs, links, bytes, depth, widest directory) and of
    /// each kind of change from A to B, with an example of each; several lines.
    pub summary: String,
}

/// Generates `root/a` and `root/b` (which must not exist yet; `root` is created if needed).
/// Deterministic: the same spec gives byte-identical trees, modes and mtimes included.
pub fn generate_pair(root: &Path, spec: &CorpusSpec) -> CorpusPair {
    let plan = spec.scale.plan();
    let (a, layout) = build_a(spec.seed, &plan);
    let (b, changes) = build_b(spec.seed, &plan, &a, &layout);
    super::mkdir(root);
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    // The two versions are written side by side: most of the time goes into writing bytes.
    std::thread::scope(|s| {
        let writer = s.spawn(|| materialize(&a, &dir_a));
        materialize(&b, &dir_b);
        writer
            .join()
            .expect("the thread writing version A panicked");
    });
    let mut summary = format!("corpus seed {}, scale {}\n", spec.seed, spec.scale.key());
    summary += &format!("a: {}\n", Counts::of(&a));
    summary += &format!("b: {}\n", Counts::of(&b));
    summary += &changes.render();
    CorpusPair {
        a: dir_a,
        b: dir_b,
        summary,
    }
}

/// The sizes of one scale.
#[derive(Debug)]
struct Plan {
    /// `lib/rustlib/<target>/lib/` directories.
    targets: usize,
    /// rlib + rmeta pairs in each of them.
    crates: usize,
    /// All rlibs of one target together.
    rlib_bytes: u64,
    driver_bytes: u64,
    llvm_bytes: u64,
    std_so_bytes: u64,
    /// All of `bin/` and `libexec/` together.
    bin_bytes: u64,
    /// Entries of each wide doc directory (`html/core/arch/<arch>/`).
    wide: &'static [usize],
    /// Other doc pages, spread over a deep module tree.
    doc_pages: usize,
    /// `.rs` files under `lib/rustlib/src/`.
    src_files: usize,
    headers: usize,
    man_pages: usize,
    search_index_bytes: u64,
}

// ---------------------------------------------------------------------------
// Pseudo-random numbers: splitmix64 (also picking symbol records).
// ---------------------------------------------------------------------------

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Word `index` of the byte stream `seed` (counter-based, so any offset can be read directly).
fn stream_word(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, salt: u64) -> Rng {
        Rng(mix(seed ^ mix(salt)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Roughly log-uniform in `lo..hi` (integers only, so the same on every machine).
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let doublings = 64 - (hi / lo.max(1)).leading_zeros() as u64;
        let base = lo << self.below(doublings.max(1));
        (base + self.below(base)).min(hi)
    }

    fn hex16(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// File contents: recipes of stream pieces.
// ---------------------------------------------------------------------------

/// Bytes `start..start + len` of one source.
#[derive(Debug, Clone)]
enum Piece {
    /// The pseudo-random stream `seed`: incompressible, like code and compressed data.
    Random {
        seed: u64,
        start: u64,
        len: u64,
    },
    /// 64-byte mangled-symbol records picked by `seed`: repetitive, like symbol tables.
    Symbols {
        seed: u64,
        start: u64,
        len: u64,
    },
    Zeros {
        len: u64,
    },
    /// Text (or any literal bytes).
    Literal {
        bytes: Arc<[u8]>,
        start: usize,
        len: usize,
    },
}

const SYMBOL_RECORD: u64 = 64;

impl Piece {
    fn literal(bytes: Vec<u8>) -> Piece {
        let len = bytes.len();
        Piece::Literal {
            bytes: bytes.into(),
            start: 0,
            len,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Piece::Random { len, .. } | Piece::Symbols { len, .. } | Piece::Zeros { len } => *len,
            Piece::Literal { len, .. } => *len as u64,
        }
    }

    /// Its bytes `from..to`.
    fn slice(&self, from: u64, to: u64) -> Piece {
        debug_assert!(from <= to && to <= self.len());
        match self {
            Piece::Random { seed, start, .. } => Piece::Random {
                seed: *seed,
                start: start + from,
                len: to - from,
            },
            Piece::Symbols { seed, start, .. } => Piece::Symbols {
                seed: *seed,
                start: start + from,
                len: to - from,
            },
            Piece::Zeros { .. } => Piece::Zeros { len: to - from },
            Piece::Literal { bytes, start, .. } => Piece::Literal {
                bytes: bytes.clone(),
                start: start + from as usize,
                len: (to - from) as usize,
            },
        }
    }

    /// Writes its bytes `from..from + dst.len()` into `dst`.
    fn fill(&self, from: u64, dst: &mut [u8]) {
        match self {
            Piece::Random { seed, start, .. } => {
                // BLAKE3's output stream: seekable, fixed by its spec, and fast even in a
                // debug build of the tests (the crate itself is built optimised).
                let mut stream = blake3::Hasher::new_derive_key(RANDOM_CONTEXT)
                    .update(&seed.to_le_bytes())
                    .finalize_xof();
                stream.set_position(start + from);
                stream.fill(dst);
            }
            Piece::Symbols { seed, start, .. } => {
                let table = symbol_table();
                let (mut pos, mut done) = (start + from, 0);
                while done < dst.len() {
                    let pick = stream_word(*seed, pos / SYMBOL_RECORD) % SYMBOL_TABLE as u64;
                    let record = &table[pick as usize];
                    let skip = (pos % SYMBOL_RECORD) as usize;
                    let n = (SYMBOL_RECORD as usize - skip).min(dst.len() - done);
                    dst[done..done + n].copy_from_slice(&record[skip..skip + n]);
                    done += n;
                    pos += n as u64;
                }
            }
            Piece::Zeros { .. } => dst.fill(0),
            Piece::Literal { bytes, start, .. } => {
                let from = start + from as usize;
                dst.copy_from_slice(&bytes[from..from + dst.len()]);
            }
        }
    }
}

const RANDOM_CONTEXT: &str = "arsync corpus 2024 random piece";

/// Distinct symbol records; a symbols piece is a pseudo-random sequence of them (so symbol
/// tables repeat names, like real ones).
const SYMBOL_TABLE: usize = 4096;

fn symbol_table() -> &'static [[u8; SYMBOL_RECORD as usize]] {
    static TABLE: std::sync::OnceLock<Vec<[u8; SYMBOL_RECORD as usize]>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..SYMBOL_TABLE as u64)
            .map(|i| symbol_record(0x5EED, i))
            .collect()
    })
}

const SYMBOL_WORDS: [&str; 32] = [
    "core", "fmt", "iter", "alloc", "vec", "Vec", "push", "String", "from", "into", "Option",
    "map", "Result", "unwrap", "slice", "sort", "hash", "HashMap", "insert", "sync", "Arc",
    "clone", "drop", "Drop", "io", "Read", "read", "Write", "write", "ptr", "mem", "num",
];

/// Record `index` of the symbol table `seed`: `_ZN<len><word>...17h<16 hex>E`, NUL-padded.
fn symbol_record(seed: u64, index: u64) -> [u8; SYMBOL_RECORD as usize] {
    let h = stream_word(seed, index);
    let mut record = [0u8; SYMBOL_RECORD as usize];
    let mut n = 0;
    let mut push = |bytes: &[u8]| {
        record[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    push(b"_ZN");
    for k in 0..3 {
        let word = SYMBOL_WORDS[((h >> (k * 5)) & 31) as usize];
        push(&[b'0' + word.len() as u8]);
        push(word.as_bytes());
    }
    push(b"17h");
    let hash = mix(h);
    for k in (0..16).rev() {
        push(&[b"0123456789abcdef"[((hash >> (k * 4)) & 15) as usize]]);
    }
    push(b"E");
    record
}

/// A file's content.
#[derive(Debug, Clone)]
struct Recipe(Vec<Piece>);

impl Recipe {
    fn text(bytes: Vec<u8>) -> Recipe {
        Recipe(vec![Piece::literal(bytes)])
    }

    fn empty() -> Recipe {
        Recipe(Vec::new())
    }

    fn len(&self) -> u64 {
        self.0.iter().map(Piece::len).sum()
    }

    /// Text files are made of literal pieces only (and are edited as text).
    fn is_text(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Piece::Literal { .. }))
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0; self.len() as usize];
        let mut at = 0;
        for piece in &self.0 {
            let len = piece.len() as usize;
            piece.fill(0, &mut out[at..at + len]);
            at += len;
        }
        out
    }

    /// The pieces covering bytes `from..to`.
    fn range(&self, from: u64, to: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut pos = 0;
        for piece in &self.0 {
            let (start, end) = (pos, pos + piece.len());
            pos = end;
            let (lo, hi) = (from.max(start), to.min(end));
            if lo < hi {
                out.push(piece.slice(lo - start, hi - start));
            }
        }
        out
    }

    /// Replaces bytes `at..at + remove` with `insert`.
    fn splice(&mut self, at: u64, remove: u64, insert: Vec<Piece>) {
        let len = self.len();
        assert!(at + remove <= len, "splice past the end");
        let mut pieces = self.range(0, at);
        pieces.extend(insert.into_iter().filter(|p| p.len() > 0));
        pieces.extend(self.range(at + remove, len));
        self.0 = pieces;
    }
}

/// Content shaped like a compiled artefact: a header, then sections of code-like random
/// bytes, symbol tables and zero padding.
fn binary(rng: &mut Rng, len: u64, header: &[u8]) -> Recipe {
    let mut pieces = vec![Piece::literal(
        header[..header.len().min(len as usize)].to_vec(),
    )];
    let mut total = pieces[0].len();
    let max_section = (len / 48).clamp(4 << 10, 1 << 20);
    while total < len {
        let left = len - total;
        let piece = match rng.below(10) {
            0..=5 => Piece::Random {
                seed: rng.next_u64(),
                start: 0,
                len: rng.range(2 << 10, max_section).min(left),
            },
            6..=8 => Piece::Symbols {
                seed: rng.next_u64(),
                start: 0,
                len: rng.range(512, (max_section / 4).max(1024)).min(left),
            },
            _ => Piece::Zeros {
                len: rng.range(16, 4096).min(left),
            },
        };
        total += piece.len();
        pieces.push(piece);
    }
    Recipe(pieces)
}

fn random_piece(rng: &mut Rng, len: u64) -> Piece {
    Piece::Random {
        seed: rng.next_u64(),
        start: 0,
        len,
    }
}

/// The header a rewritten binary named `name` starts with.
fn header_for(name: &str) -> &'static [u8] {
    if name.ends_with(".rmeta") {
        RMETA_HEADER
    } else if name.ends_with(".rlib") {
        RLIB_HEADER
    } else if name.ends_with(".woff2") {
        b"wOF2"
    } else {
        ELF_HEADER
    }
}

const ELF_HEADER: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0\x01\0\0\0";
const RLIB_HEADER: &[u8] = b"!<arch>\nlib.rmeta/       0           0     0     644     ";
const RMETA_HEADER: &[u8] = b"rust\0\0\0\x08";

// ---------------------------------------------------------------------------
// Text contents.
// ---------------------------------------------------------------------------

const VERSION_A: &str = "1.76.0";
const VERSION_B: &str = "1.77.0";
const COMMIT_A: &str = "07dca489a 2024-02-04";
const COMMIT_B: &str = "aedd173a2 2024-03-17";

const WORDS: [&str; 64] = [
    "the",
    "a",
    "value",
    "returns",
    "iterator",
    "slice",
    "element",
    "index",
    "panics",
    "if",
    "is",
    "empty",
    "this",
    "function",
    "method",
    "trait",
    "type",
    "reference",
    "borrow",
    "mutable",
    "safe",
    "unsafe",
    "memory",
    "layout",
    "pointer",
    "allocation",
    "buffer",
    "capacity",
    "length",
    "string",
    "bytes",
    "utf8",
    "error",
    "result",
    "option",
    "some",
    "none",
    "closure",
    "thread",
    "lock",
    "atomic",
    "order",
    "compare",
    "hash",
    "map",
    "set",
    "key",
    "entry",
    "read",
    "write",
    "file",
    "path",
    "directory",
    "stream",
    "socket",
    "time",
    "duration",
    "instant",
    "since",
    "stable",
    "feature",
    "example",
    "see",
    "implementation",
];

const MODULES: [&str; 72] = [
    "alloc",
    "any",
    "array",
    "ascii",
    "borrow",
    "boxed",
    "cell",
    "char",
    "clone",
    "cmp",
    "collections",
    "convert",
    "default",
    "env",
    "error",
    "ffi",
    "fmt",
    "fs",
    "future",
    "hash",
    "hint",
    "io",
    "iter",
    "marker",
    "mem",
    "net",
    "num",
    "ops",
    "option",
    "os",
    "panic",
    "path",
    "pin",
    "prelude",
    "primitive",
    "process",
    "ptr",
    "rc",
    "result",
    "slice",
    "str",
    "string",
    "sync",
    "task",
    "thread",
    "time",
    "vec",
    "unix",
    "windows",
    "linux",
    "raw",
    "fd",
    "mpsc",
    "atomic",
    "btree_map",
    "hash_map",
    "vec_deque",
    "binary_heap",
    "linked_list",
    "dec2flt",
    "flt2dec",
    "bignum",
    "strategy",
    "dragon",
    "grisu",
    "simd",
    "backtrace",
    "personality",
    "async_iter",
    "intrinsics",
    "exclusive",
    "lazy_lock",
];

const ITEMS: [&str; 40] = [
    "Vec",
    "String",
    "HashMap",
    "Iter",
    "IntoIter",
    "Drain",
    "Entry",
    "Error",
    "Kind",
    "Builder",
    "Handle",
    "Guard",
    "Ref",
    "RefMut",
    "Cell",
    "Rc",
    "Arc",
    "Weak",
    "Mutex",
    "RwLock",
    "Condvar",
    "Barrier",
    "Once",
    "Path",
    "File",
    "Metadata",
    "Permissions",
    "Duration",
    "Instant",
    "SystemTime",
    "Ordering",
    "Range",
    "Wrapping",
    "Saturating",
    "NonNull",
    "Layout",
    "Global",
    "Pin",
    "Waker",
    "Poll",
];

const PAGE_KINDS: [&str; 7] = ["struct", "enum", "trait", "fn", "macro", "constant", "type"];

const CRATES: [&str; 50] = [
    "core",
    "alloc",
    "std",
    "proc_macro",
    "test",
    "compiler_builtins",
    "hashbrown",
    "libc",
    "memchr",
    "object",
    "addr2line",
    "gimli",
    "miniz_oxide",
    "adler",
    "rustc_demangle",
    "std_detect",
    "unwind",
    "panic_abort",
    "panic_unwind",
    "cfg_if",
    "getopts",
    "unicode_width",
    "rustc_std_workspace_core",
    "rustc_std_workspace_alloc",
    "rustc_std_workspace_std",
    "profiler_builtins",
    "sysroot",
    "dlmalloc",
    "fortanix_sgx_abi",
    "r_efi",
    "wasi",
    "hermit_abi",
    "allocator_api2",
    "ruzstd",
    "twox_hash",
    "static_assertions",
    "lock_api",
    "parking_lot_core",
    "scopeguard",
    "smallvec",
    "indexmap",
    "equivalent",
    "either",
    "itertools",
    "tracing",
    "tracing_core",
    "log",
    "bitflags",
    "thin_vec",
    "arrayvec",
];

const TARGETS: [&str; 6] = [
    "x86_64-unknown-linux-gnu",
    "wasm32-unknown-unknown",
    "aarch64-unknown-linux-gnu",
    "x86_64-pc-windows-gnu",
    "riscv64gc-unknown-linux-gnu",
    "thumbv7em-none-eabihf",
];

const NEW_TARGET: &str = "wasm32-wasip2";
const ARCHES: [&str; 5] = ["x86_64", "aarch64", "arm", "wasm32", "riscv64"];
const DOC_CRATES: [&str; 5] = ["std", "core", "alloc", "proc_macro", "test"];
const SRC_CRATES: [&str; 8] = [
    "core",
    "alloc",
    "std",
    "proc_macro",
    "test",
    "std_detect",
    "panic_unwind",
    "unwind",
];

/// `n` distinct crate names: the real ones first, then made-up `rustc_*` ones.
fn crate_names(n: usize) -> Vec<String> {
    let singles = MODULES.iter().map(|a| format!("rustc_{a}"));
    let pairs = MODULES
        .iter()
        .flat_map(|a| MODULES.iter().map(move |b| format!("rustc_{a}_{b}")));
    CRATES
        .iter()
        .map(|s| s.to_string())
        .chain(singles)
        .chain(pairs)
        .take(n)
        .collect()
}

fn sentence(rng: &mut Rng, out: &mut String, words: u64) {
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        let word = *rng.pick(&WORDS);
        out.push_str(word);
    }
}

fn paragraph(rng: &mut Rng, out: &mut String) {
    out.push_str("<p>");
    let words = rng.range(12, 70);
    sentence(rng, out, words);
    out.push_str(".</p>\n");
}

/// A rustdoc-like page; `up` is the way back to `html/` (e.g. `../../`).
fn html_page(rng: &mut Rng, title: &str, up: &str, paragraphs: u64) -> Vec<u8> {
    let mut s = String::with_capacity(1024 + paragraphs as usize * 400);
    s += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    let _ = writeln!(s, "<title>{title} - Rust</title>");
    let _ = writeln!(
        s,
        "<link rel=\"stylesheet\" href=\"{up}static.files/rustdoc.css\">"
    );
    s += "</head>\n<body class=\"rustdoc\">\n<nav class=\"sidebar\">\n<ul>\n";
    for _ in 0..rng.range(3, 12) {
        let item = rng.pick(&ITEMS);
        let _ = writeln!(s, "<li><a href=\"struct.{item}.html\">{item}</a></li>");
    }
    s += "</ul>\n</nav>\n<main>\n";
    let _ = writeln!(
        s,
        "<h1>{title}</h1>\n<span class=\"since\" title=\"Stable since Rust version {VERSION_A}\">{VERSION_A}</span>"
    );
    for _ in 0..paragraphs {
        paragraph(rng, &mut s);
    }
    let _ = writeln!(
        s,
        "</main>\n<footer>Rust {VERSION_A} ({COMMIT_A})</footer>\n</body>\n</html>"
    );
    s.into_bytes()
}

fn rust_source(rng: &mut Rng, module: &str) -> Vec<u8> {
    let mut s =
        format!("// Part of the Rust standard library, {VERSION_A}.\n//! The `{module}` module: ");
    let words = rng.range(8, 30);
    sentence(rng, &mut s, words);
    s += ".\n\nuse crate::fmt;\n\n";
    for i in 0..rng.range(2, 36) {
        let ty = rng.pick(&ITEMS);
        s += "/// ";
        let words = rng.range(6, 24);
        sentence(rng, &mut s, words);
        let _ = writeln!(
            s,
            ".\npub fn {}_{i}(value: {ty}) -> Option<{ty}> {{\n    if value.is_{}() {{\n        return None;\n    }}\n    Some(value)\n}}\n",
            rng.pick(&WORDS),
            rng.pick(&WORDS)
        );
    }
    s.into_bytes()
}

fn c_header(rng: &mut Rng, name: &str) -> Vec<u8> {
    let guard = name.to_uppercase().replace(['.', '-'], "_");
    let mut s = format!("/* {name}: generated for the arsync corpus */\n#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n\n");
    for i in 0..rng.range(5, 60) {
        let _ = writeln!(
            s,
            "int rust_{}_{}_{i}(const void *ptr, size_t len);",
            rng.pick(&MODULES),
            rng.pick(&WORDS)
        );
    }
    s += "\n#endif\n";
    s.into_bytes()
}

fn man_page(rng: &mut Rng, name: &str) -> Vec<u8> {
    let mut s = format!(
        ".TH \"{}\" \"1\"\n.SH NAME\n{name}\n.SH DESCRIPTION\n",
        name.to_uppercase()
    );
    for _ in 0..rng.range(4, 30) {
        s += ".PP\n";
        let words = rng.range(10, 50);
        sentence(rng, &mut s, words);
        s += "\n";
    }
    s.into_bytes()
}

fn shell_script(rng: &mut Rng, name: &str) -> Vec<u8> {
    let mut s = format!("#!/bin/sh\n# {name}\nset -e\n");
    for _ in 0..rng.range(4, 40) {
        let _ = writeln!(
            s,
            "export RUST_{}=\"{}\"",
            rng.pick(&MODULES).to_uppercase(),
            rng.pick(&WORDS)
        );
    }
    s += "exec \"$@\"\n";
    s.into_bytes()
}

fn config_text(rng: &mut Rng, lines: u64) -> Vec<u8> {
    let mut s = String::from("# generated configuration\n");
    for i in 0..lines {
        if i % 8 == 0 {
            let _ = writeln!(s, "\n[{}]", rng.pick(&MODULES));
        }
        let _ = writeln!(s, "{}_{i} = \"{}\"", rng.pick(&WORDS), rng.pick(&WORDS));
    }
    s.into_bytes()
}

/// Text of about `len` bytes: lines of words (licences, search indexes, scripts).
fn prose(rng: &mut Rng, len: u64) -> Vec<u8> {
    let mut s = String::with_capacity(len as usize + 200);
    while (s.len() as u64) < len {
        let words = rng.range(4, 14);
        sentence(rng, &mut s, words);
        s.push('\n');
    }
    s.into_bytes()
}

// ---------------------------------------------------------------------------
// The tree model.
// ---------------------------------------------------------------------------

/// (seconds, nanoseconds)
type Stamp = (i64, i64);

#[derive(Debug, Clone)]
enum Node {
    File {
        data: Recipe,
        mode: u32,
        mtime: Stamp,
    },
    Dir {
        mode: u32,
        mtime: Stamp,
    },
    Symlink {
        target: String,
        mtime: Stamp,
    },
    /// Another name of the regular file `to` (whose node holds content, mode and mtime).
    HardLink {
        to: PathBuf,
    },
}

/// One version of the tree, before it is written.
#[derive(Debug, Clone)]
struct Model {
    /// Every entry but the root, by relative path (parents sort before their children).
    nodes: BTreeMap<PathBuf, Node>,
    root_mtime: Stamp,
    rng: Rng,
    /// New mtimes fall in `epoch..epoch + STAMP_SPAN` seconds.
    epoch: i64,
    /// Directories whose entries were added, removed or renamed (B only).
    touched: BTreeSet<PathBuf>,
}

/// Release A's build took six hours; B is six weeks later: their mtimes never collide.
const STAMP_SPAN: i64 = 6 * 3600;
const RELEASE_GAP: i64 = 42 * 86_400;

fn p(path: &str) -> PathBuf {
    PathBuf::from(path)
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl Model {
    fn stamp(&mut self) -> Stamp {
        (
            self.epoch + self.rng.below(STAMP_SPAN as u64) as i64,
            self.rng.range(1, 999_999_999) as i64,
        )
    }

    /// Adds an entry (creating missing parent directories, 0755).
    fn add(&mut self, path: PathBuf, node: Node) {
        let mut missing = Vec::new();
        let mut parent = path.parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            match self.nodes.get(dir) {
                Some(Node::Dir { .. }) => break,
                Some(other) => panic!("corpus: {} is {other:?}, not a directory", dir.display()),
                None => missing.push(dir.to_path_buf()),
            }
            parent = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            let mtime = self.stamp();
            self.touched.insert(parent_of(&dir));
            self.nodes.insert(dir, Node::Dir { mode: 0o755, mtime });
        }
        self.touched.insert(parent_of(&path));
        let old = self.nodes.insert(path.clone(), node);
        assert!(old.is_none(), "corpus: {} added twice", path.display());
    }

    fn add_file(&mut self, path: PathBuf, data: Recipe, mode: u32) {
        let mtime = self.stamp();
        self.add(path, Node::File { data, mode, mtime });
    }

    fn add_text(&mut self, path: PathBuf, text: Vec<u8>, mode: u32) {
        self.add_file(path, Recipe::text(text), mode);
    }

    fn add_dir(&mut self, path: PathBuf, mode: u32) {
        let mtime = self.stamp();
        self.add(path, Node::Dir { mode, mtime });
    }

    fn add_symlink(&mut self, path: PathBuf, target: &str) {
        let mtime = self.stamp();
        self.add(
            path,
            Node::Symlink {
                target: target.to_string(),
                mtime,
            },
        );
    }

    fn exists(&self, path: &Path) -> bool {
        self.nodes.contains_key(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        matches!(self.nodes.get(path), Some(Node::File { .. }))
    }

    /// `path` and everything under it.
    fn subtree(&self, path: &Path) -> Vec<PathBuf> {
        self.nodes
            .range(path.to_path_buf()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(path))
            .cloned()
            .collect()
    }

    fn files_under(&self, path: &Path) -> usize {
        self.subtree(path)
            .iter()
            .filter(|k| self.is_file(k))
            .count()
    }

    /// Removes `path` and everything under it; returns how many entries went.
    fn remove(&mut self, path: &Path) -> usize {
        let doomed = self.subtree(path);
        assert!(
            !doomed.is_empty(),
            "corpus: removing missing {}",
            path.display()
        );
        for k in &doomed {
            self.nodes.remove(k);
        }
        self.touched.insert(parent_of(path));
        doomed.len()
    }

    /// Moves `from` and everything under it to `to`, keeping modes and mtimes.
    fn rename(&mut self, from: &Path, to: &Path) {
        assert!(
            !self.exists(to),
            "corpus: rename onto existing {}",
            to.display()
        );
        let moved: Vec<(PathBuf, Node)> = self
            .subtree(from)
            .into_iter()
            .map(|k| {
                let node = self.nodes.remove(&k).expect("listed just now");
                (k, node)
            })
            .collect();
        self.touched.insert(parent_of(from));
        let mut moved = moved.into_iter();
        let (_, top) = moved.next().expect("renaming a missing entry");
        self.add(to.to_path_buf(), top);
        for (k, node) in moved {
            let rel = k.strip_prefix(from).expect("under the moved directory");
            self.nodes.insert(to.join(rel), node);
        }
    }

    /// The content, mode and mtime of the regular file `path`.
    fn file_mut(&mut self, path: &Path) -> (&mut Recipe, &mut u32, &mut Stamp) {
        match self.nodes.get_mut(path) {
            Some(Node::File { data, mode, mtime }) => (data, mode, mtime),
            other => panic!("corpus: {} is {other:?}, not a file", path.display()),
        }
    }

    fn data(&self, path: &Path) -> &Recipe {
        match self.nodes.get(path) {
            Some(Node::File { data, .. }) => data,
            other => panic!("corpus: {} is {other:?}, not a file", path.display()),
        }
    }

    /// A free name `name` in `dir`, or `name` with a number before the extension.
    fn free_name(&self, dir: &Path, name: &str) -> PathBuf {
        if !self.exists(&dir.join(name)) {
            return dir.join(name);
        }
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        (2..)
            .map(|n| {
                if ext.is_empty() {
                    dir.join(format!("{stem}{n}"))
                } else {
                    dir.join(format!("{stem}{n}.{ext}"))
                }
            })
            .find(|cand| !self.exists(cand))
            .expect("some number is free")
    }
}

/// The paths of A that B's changes pick from.
#[derive(Debug, Default)]
struct Layout {
    /// Files whose names carry a `-<16 hex>` build hash.
    hashed: Vec<PathBuf>,
    crates: Vec<String>,
    targets: Vec<String>,
    doc_pages: Vec<PathBuf>,
    /// Module directories of the docs (not the crate roots, not the wide directories).
    doc_modules: Vec<PathBuf>,
    doc_crates: Vec<PathBuf>,
    src_files: Vec<PathBuf>,
    src_modules: Vec<PathBuf>,
    /// `.../library/<crate>/src` directories.
    src_crates: Vec<PathBuf>,
}

const HTML: &str = "share/doc/rust/html";
const SRC: &str = "lib/rustlib/src/rust/library";
const LLVM: &str = "lib/libLLVM.so.17";
const LIBSTD_LINK: &str = "lib/libstd.so";
const PROC_MACRO_SRV: &str = "libexec/rust-analyzer-proc-macro-srv";
const PROC_MACRO_LINK: &str = "bin/rust-proc-macro-srv";
const PLUGINS: &str = "lib/rustlib/etc/plugins";
const DOC_README: &str = "share/doc/rust/README.md";
const EMPTY_CONF: &str = "etc/rust/empty.conf";
const CRATES_JS: &str = "share/doc/rust/html/crates.js";
const SEARCH_INDEX: &str = "share/doc/rust/html/search-index.js";
const CARGO_MAN: &str = "share/man/man1/cargo.1";
const GDB_PROVIDERS: &str = "lib/rustlib/etc/gdb_providers.py";
const RUST_LLDB: &str = "bin/rust-lldb";
const CONFIG: &str = "etc/rust/config.toml";

/// `bin/` executables and their shares of the binary budget.
const BINARIES: [(&str, u64); 8] = [
    ("bin/rustc", 6),
    ("bin/cargo", 30),
    ("bin/rustdoc", 14),
    ("bin/rust-analyzer", 20),
    ("bin/clippy-driver", 8),
    ("bin/cargo-clippy", 1),
    ("bin/rustfmt", 4),
    (PROC_MACRO_SRV, 3),
];

// ---------------------------------------------------------------------------
// Version A: the installed distribution.
// ---------------------------------------------------------------------------

fn build_a(seed: u64, plan: &Plan) -> (Model, Layout) {
    let mut rng = Rng::new(seed, 0xA);
    let epoch = 1_700_000_000 + rng.below(200 * 86_400) as i64;
    let mut m = Model {
        nodes: BTreeMap::new(),
        root_mtime: (0, 0),
        rng,
        epoch,
        touched: BTreeSet::new(),
    };
    let mut layout = Layout::default();

    // Top level.
    for (name, len) in [
        ("COPYRIGHT", 9000),
        ("LICENSE-APACHE", 11_000),
        ("LICENSE-MIT", 1000),
    ] {
        let text = prose(&mut m.rng, len);
        m.add_text(p(name), text, 0o644);
    }
    m.add_text(
        p("README.md"),
        b"# Rust\n\nThe Rust toolchain.\n".to_vec(),
        0o644,
    );
    m.add_text(
        p("version"),
        format!("{VERSION_A} ({COMMIT_A})\n").into_bytes(),
        0o644,
    );
    let script = shell_script(&mut m.rng, "uninstall.sh");
    m.add_text(p("uninstall.sh"), script, 0o755);

    // bin/ and libexec/.
    let weights: u64 = BINARIES.iter().map(|(_, w)| w).sum();
    for (path, weight) in BINARIES {
        let len = (plan.bin_bytes * weight / weights).max(16 << 10);
        let data = binary(&mut m.rng, len, ELF_HEADER);
        m.add_file(p(path), data, 0o755);
    }
    for name in ["bin/rust-gdb", "bin/rust-gdbgui", RUST_LLDB] {
        let script = shell_script(&mut m.rng, name);
        m.add_text(p(name), script, 0o755);
    }
    m.add_symlink(
        p(PROC_MACRO_LINK),
        "../libexec/rust-analyzer-proc-macro-srv",
    );
    // Hard-link pair 1 (unchanged in B).
    m.add(
        p("lib/rustlib/etc/rust-gdb"),
        Node::HardLink {
            to: p("bin/rust-gdb"),
        },
    );

    // lib/: big shared objects, hash-named, and a symlink to one of them.
    let driver = format!("lib/librustc_driver-{}.so", m.rng.hex16());
    let data = binary(&mut m.rng, plan.driver_bytes, ELF_HEADER);
    m.add_file(p(&driver), data, 0o755);
    let data = binary(&mut m.rng, plan.llvm_bytes, ELF_HEADER);
    m.add_file(p(LLVM), data, 0o755);
    let libstd_name = format!("libstd-{}.so", m.rng.hex16());
    let data = binary(&mut m.rng, plan.std_so_bytes, ELF_HEADER);
    m.add_file(p("lib").join(&libstd_name), data, 0o755);
    let libtest = format!("lib/libtest-{}.so", m.rng.hex16());
    let data = binary(&mut m.rng, plan.std_so_bytes / 4, ELF_HEADER);
    m.add_file(p(&libtest), data, 0o755);
    m.add_symlink(p(LIBSTD_LINK), &libstd_name);
    layout
        .hashed
        .extend([p(&driver), p("lib").join(&libstd_name), p(&libtest)]);

    // lib/rustlib/: installer metadata, debugger scripts, one directory per target.
    m.add_text(
        p("lib/rustlib/rust-installer-version"),
        b"3\n".to_vec(),
        0o644,
    );
    m.add_text(
        p("lib/rustlib/components"),
        b"rustc\ncargo\nrust-std\nrust-docs\nrust-src\nclippy\nrustfmt\n".to_vec(),
        0o644,
    );
    m.add_text(p("lib/rustlib/multirust-config.toml"), Vec::new(), 0o644);
    for name in [
        GDB_PROVIDERS,
        "lib/rustlib/etc/gdb_lookup.py",
        "lib/rustlib/etc/lldb_commands",
    ] {
        let text = prose(&mut m.rng, 3000);
        m.add_text(p(name), text, 0o644);
    }
    for name in ["a.toml", "b.toml", "c.toml"] {
        let text = config_text(&mut m.rng, 10);
        m.add_text(p(PLUGINS).join(name), text, 0o644);
    }
    layout.crates = crate_names(plan.crates);
    layout.targets = TARGETS[..plan.targets]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let crates = layout.crates.clone();
    for target in layout.targets.clone() {
        let dir = p("lib/rustlib").join(&target).join("lib");
        add_rlibs(&mut m, &mut layout, &dir, &crates, plan.rlib_bytes);
        for (name, len) in [("crt1.o", 3000), ("crti.o", 1200), ("libunwind.a", 40_000)] {
            let data = binary(&mut m.rng, len, ELF_HEADER);
            m.add_file(dir.join("self-contained").join(name), data, 0o644);
        }
        m.add_text(dir.join("self-contained/.empty"), Vec::new(), 0o644);
        let data = binary(&mut m.rng, 30_000, ELF_HEADER);
        m.add_file(
            p("lib/rustlib").join(&target).join("bin/gcc-ld/ld.lld"),
            data,
            0o755,
        );
    }

    // lib/rustlib/src/: deep source trees.
    add_sources(&mut m, &mut layout, plan.src_files);

    // share/doc/: deep and wide html, hash-named static files, odd names, links.
    add_docs(&mut m, &mut layout, plan);
    let text = prose(&mut m.rng, 2000);
    m.add_text(p(DOC_README), text, 0o644);
    let text = prose(&mut m.rng, 400);
    m.add_text(p("share/doc/rust/-dash.txt"), text, 0o644);

    // share/man (hard-link pair 2, edited in B), shell completions, an empty directory.
    let cargo_man = man_page(&mut m.rng, "cargo");
    m.add_text(p(CARGO_MAN), cargo_man, 0o644);
    m.add(
        p("share/man/man1/cargo-help.1"),
        Node::HardLink { to: p(CARGO_MAN) },
    );
    for i in 0..plan.man_pages {
        let name = match i {
            0 => "rustc".to_string(),
            1 => "rustdoc".to_string(),
            _ => format!("cargo-{}", MODULES[i % MODULES.len()]),
        };
        let text = man_page(&mut m.rng, &name);
        let path = m.free_name(Path::new("share/man/man1"), &format!("{name}.1"));
        m.add_text(path, text, 0o644);
    }
    let text = shell_script(&mut m.rng, "_cargo");
    m.add_text(p("share/zsh/site-functions/_cargo"), text, 0o644);
    m.add_dir(p("share/zsh/vendor-completions"), 0o755);

    // etc/ and include/.
    let text = config_text(&mut m.rng, 40);
    m.add_text(p(CONFIG), text, 0o644);
    let text = config_text(&mut m.rng, 4);
    m.add_text(p("etc/rust/credentials.toml"), text, 0o600);
    m.add_text(p(EMPTY_CONF), Vec::new(), 0o644);
    let text = config_text(&mut m.rng, 6);
    m.add_text(p("etc/rust/with space.conf"), text, 0o644);
    let text = shell_script(&mut m.rng, "cargo");
    m.add_text(p("etc/bash_completion.d/cargo"), text, 0o644);
    for i in 0..plan.headers {
        let name = format!("{}.h", MODULES[i % MODULES.len()]);
        let text = c_header(&mut m.rng, &name);
        let path = m.free_name(Path::new("include/rust"), &name);
        m.add_text(path, text, 0o644);
    }

    refresh_manifests(&mut m, &layout.targets, None);
    m.root_mtime = m.stamp();
    (m, layout)
}

/// rlib + rmeta for each crate in `dir`, sizes log-uniform scaled to `budget` together.
fn add_rlibs(m: &mut Model, layout: &mut Layout, dir: &Path, crates: &[String], budget: u64) {
    let weights: Vec<u64> = crates
        .iter()
        .map(|c| {
            let w = m.rng.log_uniform(1 << 10, 1 << 18);
            if matches!(c.as_str(), "core" | "std") {
                w * 4
            } else {
                w
            }
        })
        .collect();
    let total: u64 = weights.iter().sum();
    for (krate, weight) in crates.iter().zip(weights) {
        let hash = m.rng.hex16();
        let rlib_len = (u128::from(budget) * u128::from(weight) / u128::from(total)) as u64;
        let rlib_len = rlib_len.max(10 << 10);
        let rlib = dir.join(format!("lib{krate}-{hash}.rlib"));
        let data = binary(&mut m.rng, rlib_len, RLIB_HEADER);
        m.add_file(rlib.clone(), data, 0o644);
        let rmeta_len = (rlib_len * m.rng.range(20, 35) / 100).max(4 << 10);
        let rmeta = dir.join(format!("lib{krate}-{hash}.rmeta"));
        let data = binary(&mut m.rng, rmeta_len, RMETA_HEADER);
        m.add_file(rmeta.clone(), data, 0o644);
        layout.hashed.extend([rlib, rmeta]);
    }
}

/// `lib/rustlib/src/rust/library/<crate>/src/<module>/<module>/<file>.rs`.
fn add_sources(m: &mut Model, layout: &mut Layout, files: usize) {
    let text = prose(&mut m.rng, 6000);
    m.add_text(p("lib/rustlib/src/rust/Cargo.lock"), text, 0o644);
    for krate in SRC_CRATES {
        let dir = p(SRC).join(krate).join("src");
        let text = rust_source(&mut m.rng, krate);
        m.add_text(dir.join("lib.rs"), text, 0o644);
        let text = config_text(&mut m.rng, 8);
        m.add_text(p(SRC).join(krate).join("Cargo.toml"), text, 0o644);
        layout.src_crates.push(dir);
    }
    // (directory, its depth below src/)
    let mut dirs: Vec<(PathBuf, usize)> =
        layout.src_crates.iter().map(|d| (d.clone(), 0)).collect();
    let mut made = 0;
    while made < files {
        // The first module is made at once, so every seed has one to move in B.
        if made == 0 || m.rng.percent(15) {
            let (parent, depth) = dirs[m.rng.index(dirs.len())].clone();
            if depth >= 2 {
                continue;
            }
            let module = *m.rng.pick(&MODULES);
            let dir = m.free_name(&parent, module);
            let name = dir
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            for file in ["mod.rs", "tests.rs"] {
                let text = rust_source(&mut m.rng, &name);
                m.add_text(dir.join(file), text, 0o644);
                layout.src_files.push(dir.join(file));
            }
            made += 2;
            layout.src_modules.push(dir.clone());
            dirs.push((dir, depth + 1));
        } else {
            let (dir, _) = dirs[m.rng.index(dirs.len())].clone();
            let module = *m.rng.pick(&MODULES);
            let path = m.free_name(&dir, &format!("{module}.rs"));
            let text = rust_source(&mut m.rng, module);
            m.add_text(path.clone(), text, 0o644);
            layout.src_files.push(path);
            made += 1;
        }
    }
}

fn up_to_html(dir: &Path) -> String {
    let depth = dir
        .strip_prefix(HTML)
        .map(|rel| rel.components().count())
        .unwrap_or(0);
    "../".repeat(depth)
}

/// A new page `<kind>.<Item>.html` in `dir`.
fn add_doc_page(m: &mut Model, dir: &Path) -> PathBuf {
    let kind = *m.rng.pick(&PAGE_KINDS);
    let item = if matches!(kind, "fn" | "macro" | "constant") {
        format!("{}_{}", m.rng.pick(&WORDS), m.rng.pick(&WORDS))
    } else {
        m.rng.pick(&ITEMS).to_string()
    };
    let path = m.free_name(dir, &format!("{kind}.{item}.html"));
    let paragraphs = m.rng.log_uniform(2, 40);
    let text = html_page(&mut m.rng, &item, &up_to_html(dir), paragraphs);
    m.add_text(path.clone(), text, 0o644);
    path
}

fn add_docs(m: &mut Model, layout: &mut Layout, plan: &Plan) {
    let html = p(HTML);
    for krate in DOC_CRATES {
        let dir = html.join(krate);
        for page in ["index.html", "all.html"] {
            let paragraphs = m.rng.range(4, 30);
            let text = html_page(&mut m.rng, krate, "../", paragraphs);
            m.add_text(dir.join(page), text, 0o644);
            layout.doc_pages.push(dir.join(page));
        }
        layout.doc_crates.push(dir);
    }
    // The module tree: module directories up to four deep under a crate
    // (share/doc/rust/html/<crate>/m/m/m/m/page.html: 10 levels).
    let mut dirs: Vec<(PathBuf, usize)> =
        layout.doc_crates.iter().map(|d| (d.clone(), 0)).collect();
    let mut made = 0;
    while made < plan.doc_pages {
        // Two top-level modules at once, so every seed has one to delete and one to rename.
        let new_module = made < 4 || m.rng.percent(12);
        if new_module {
            let (parent, depth) = if made < 4 {
                (layout.doc_crates[made / 2].clone(), 0)
            } else {
                dirs[m.rng.index(dirs.len())].clone()
            };
            if depth >= 4 {
                continue;
            }
            let module = *m.rng.pick(&MODULES);
            let dir = m.free_name(&parent, module);
            let name = dir
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            let text = html_page(&mut m.rng, &name, &up_to_html(&dir), 6);
            m.add_text(dir.join("index.html"), text, 0o644);
            let page = add_doc_page(m, &dir);
            layout.doc_pages.extend([dir.join("index.html"), page]);
            layout.doc_modules.push(dir.clone());
            dirs.push((dir, depth + 1));
            made += 2;
        } else {
            let (dir, _) = dirs[m.rng.index(dirs.len())].clone();
            let page = add_doc_page(m, &dir);
            layout.doc_pages.push(page);
            made += 1;
        }
    }
    // The wide directories: one page per intrinsic, like core::arch::x86_64.
    for (arch, &entries) in ARCHES.iter().zip(plan.wide) {
        let dir = html.join("core/arch").join(arch);
        let text = html_page(&mut m.rng, arch, "../../../", 3);
        m.add_text(dir.join("index.html"), text, 0o644);
        let ops = [
            "add", "sub", "mul", "div", "and", "or", "xor", "cmpeq", "cmpgt", "max", "min",
            "shuffle", "blend", "load", "store", "set1", "cvt", "hadd", "sad", "mask",
        ];
        let tys = [
            "epi8", "epi16", "epi32", "epi64", "epu8", "epu16", "ps", "pd", "ss", "sd", "si128",
        ];
        let widths = [
            "_mm",
            "_mm256",
            "_mm512",
            "_mm512_mask",
            "_mm256_maskz",
            "vld1q",
            "vst1q",
        ];
        for _ in 0..entries {
            let name = format!(
                "fn.{}_{}_{}.html",
                m.rng.pick(&widths),
                m.rng.pick(&ops),
                m.rng.pick(&tys)
            );
            let path = m.free_name(&dir, &name);
            let title = path
                .file_stem()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            let paragraphs = m.rng.range(1, 4);
            let text = html_page(&mut m.rng, &title, "../../../", paragraphs);
            m.add_text(path.clone(), text, 0o644);
            layout.doc_pages.push(path);
        }
    }
    // static.files: hash-named, renamed on every release.
    for (name, ext, len) in [
        ("rustdoc", "css", 60_000),
        ("main", "js", 40_000),
        ("search", "js", 30_000),
        ("settings", "css", 2000),
    ] {
        let path = html
            .join("static.files")
            .join(format!("{name}-{}.{ext}", m.rng.hex16()));
        let text = prose(&mut m.rng, len);
        m.add_text(path.clone(), text, 0o644);
        layout.hashed.push(path);
    }
    for (name, len) in [("FiraSans-Regular", 90_000), ("SourceSerif4-Bold", 80_000)] {
        let path = html
            .join("static.files")
            .join(format!("{name}-{}.woff2", m.rng.hex16()));
        let data = binary(&mut m.rng, len, b"wOF2");
        m.add_file(path.clone(), data, 0o644);
        layout.hashed.push(path);
    }
    let text = prose(&mut m.rng, plan.search_index_bytes);
    m.add_text(p(SEARCH_INDEX), text, 0o644);
    let text = prose(&mut m.rng, 600);
    m.add_text(p(CRATES_JS), text, 0o644);
    m.add_text(html.join(".lock"), Vec::new(), 0o644);
    let text = html_page(&mut m.rng, "Rust Documentation", "", 12);
    m.add_text(html.join("index.html"), text, 0o644);
    // Awkward names.
    for name in ["release notes.html", "ünïcödé-名前.html", "-dash.html"] {
        let text = html_page(&mut m.rng, name, "", 5);
        m.add_text(html.join(name), text, 0o644);
    }
    // Symlinks: to a directory, and dangling.
    m.add_symlink(html.join("latest"), "std");
    m.add_symlink(html.join("nightly"), "../../rust-nightly/html/index.html");
}

/// Manifests listing the installed files (regenerated by B: mostly the same lines). With
/// `changes`, a manifest whose content changed gets a new mtime and is counted.
fn refresh_manifests(m: &mut Model, targets: &[String], mut changes: Option<&mut Changes>) {
    let mut manifests: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut std_targets: Vec<String> = targets.to_vec();
    if m.exists(&p("lib/rustlib").join(NEW_TARGET)) {
        std_targets.push(NEW_TARGET.to_string());
    }
    for target in &std_targets {
        let prefix = p("lib/rustlib").join(target);
        let mut text = String::new();
        for path in m.subtree(&prefix) {
            if !matches!(m.nodes[&path], Node::Dir { .. }) {
                let _ = writeln!(text, "file:{}", path.display());
            }
        }
        manifests.push((
            p(&format!("lib/rustlib/manifest-rust-std-{target}")),
            text.into_bytes(),
        ));
    }
    let mut text = String::new();
    for path in m.subtree(Path::new("share/doc")) {
        if !matches!(m.nodes[&path], Node::Dir { .. }) {
            let _ = writeln!(text, "file:{}", path.display());
        }
    }
    manifests.push((p("lib/rustlib/manifest-rust-docs"), text.into_bytes()));
    for (path, text) in manifests {
        if !m.exists(&path) {
            m.add_text(path, text, 0o644);
            continue;
        }
        if m.data(&path).bytes() == text {
            continue;
        }
        let stamp = m.stamp();
        let (data, _, mtime) = m.file_mut(&path);
        *data = Recipe::text(text);
        *mtime = stamp;
        if let Some(changes) = changes.as_deref_mut() {
            changes.note("manifest regenerated", &path.display().to_string());
        }
    }
}

// ---------------------------------------------------------------------------
// Version B: the next release.
// ---------------------------------------------------------------------------

/// What B changed, by kind, with the first example of each.
#[derive(Debug, Default)]
struct Changes(Vec<(&'static str, usize, String)>);

impl Changes {
    fn note(&mut self, kind: &'static str, example: &str) {
        match self.0.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, count, _)) => *count += 1,
            None => self.0.push((kind, 1, example.to_string())),
        }
    }

    fn render(&self) -> String {
        let mut out = String::from("changes a → b (kind, count, first example):\n");
        for (kind, count, example) in &self.0 {
            let _ = writeln!(out, "  {kind:<48} {count:>6}  {example}");
        }
        out
    }
}

/// The `-<16 hex>` build hash in a file name: (before, hash, after).
fn split_hash(name: &str) -> Option<(&str, &str, &str)> {
    let bytes = name.as_bytes();
    (0..bytes.len().saturating_sub(17)).rev().find_map(|i| {
        let hash = &bytes[i + 1..i + 17];
        let ok = bytes[i] == b'-'
            && bytes.get(i + 17) == Some(&b'.')
            && hash
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        ok.then(|| (&name[..i + 1], &name[i + 1..i + 17], &name[i + 17..]))
    })
}

struct Release<'a> {
    m: Model,
    layout: &'a Layout,
    changes: Changes,
    /// A's build hashes → B's.
    hashes: BTreeMap<String, String>,
    /// Directories B moved whole: what is under them stays exactly as it was.
    frozen: Vec<PathBuf>,
}

fn build_b(seed: u64, plan: &Plan, a: &Model, layout: &Layout) -> (Model, Changes) {
    let mut m = a.clone();
    m.rng = Rng::new(seed, 0xB);
    m.epoch = a.epoch + RELEASE_GAP;
    m.touched.clear();
    let mut r = Release {
        m,
        layout,
        changes: Changes::default(),
        hashes: BTreeMap::new(),
        frozen: Vec::new(),
    };
    r.restructure();
    r.drop_and_add_crates(plan);
    r.rehash();
    r.edit_binaries(plan);
    r.edit_docs(plan);
    r.edit_sources();
    r.replace_kinds();
    r.small_changes();
    let targets = layout.targets.clone();
    refresh_manifests(&mut r.m, &targets, Some(&mut r.changes));
    // Directories whose entries changed get the new release's time.
    for dir in std::mem::take(&mut r.m.touched) {
        let stamp = r.m.stamp();
        if let Some(Node::Dir { mtime, .. }) = r.m.nodes.get_mut(&dir) {
            *mtime = stamp;
        }
    }
    r.m.root_mtime = r.m.stamp();
    (r.m, r.changes)
}

impl Release<'_> {
    fn frozen(&self, path: &Path) -> bool {
        self.frozen.iter().any(|f| path.starts_with(f))
    }

    /// `paths` that are still regular files and not under a moved directory, shuffled.
    fn live_files(&mut self, paths: &[PathBuf]) -> Vec<PathBuf> {
        let mut live: Vec<PathBuf> = paths
            .iter()
            .filter(|p| self.m.is_file(p) && !self.frozen(p))
            .cloned()
            .collect();
        self.m.rng.shuffle(&mut live);
        live
    }

    fn new_hash(&mut self, old: &str) -> String {
        if let Some(new) = self.hashes.get(old) {
            return new.clone();
        }
        let new = self.m.rng.hex16();
        self.hashes.insert(old.to_string(), new.clone());
        new
    }

    /// Gives `path` new content (keeping mode) and the release's mtime.
    fn set_data(&mut self, path: &Path, data: Recipe) {
        let stamp = self.m.stamp();
        let (old, _, mtime) = self.m.file_mut(path);
        *old = data;
        *mtime = stamp;
    }

    fn update(&mut self, path: &Path, edit: impl FnOnce(&mut Rng, &mut Recipe)) {
        let mut data = self.m.data(path).clone();
        edit(&mut self.m.rng, &mut data);
        self.set_data(path, data);
    }

    /// Deletes one doc module subtree, renames another, moves a source module to another crate.
    fn restructure(&mut self) {
        let candidates: Vec<PathBuf> = self
            .layout
            .doc_modules
            .iter()
            .filter(|d| self.m.files_under(d) >= 2)
            .cloned()
            .collect();
        let doomed = self.m.rng.pick(&candidates).clone();
        let removed = self.m.remove(&doomed);
        self.changes.note(
            "directory deleted (whole subtree)",
            &format!("{} ({removed} entries)", doomed.display()),
        );
        let candidates: Vec<PathBuf> = candidates
            .into_iter()
            .filter(|d| !d.starts_with(&doomed) && !doomed.starts_with(d))
            .collect();
        let renamed = self.m.rng.pick(&candidates).clone();
        let parent = parent_of(&renamed);
        let new_name = format!("{}_v2", self.m.rng.pick(&MODULES));
        let to = self.m.free_name(&parent, &new_name);
        self.m.rename(&renamed, &to);
        self.changes.note(
            "directory renamed (same content)",
            &format!("{} → {}", renamed.display(), to.display()),
        );
        self.frozen.push(to);

        let module = self.m.rng.pick(&self.layout.src_modules).clone();
        let others: Vec<PathBuf> = self
            .layout
            .src_crates
            .iter()
            .filter(|c| !module.starts_with(c))
            .cloned()
            .collect();
        let dest = self.m.rng.pick(&others).clone();
        let name = module
            .file_name()
            .expect("named")
            .to_string_lossy()
            .into_owned();
        let to = self.m.free_name(&dest, &name);
        self.m.rename(&module, &to);
        self.changes.note(
            "directory moved to another parent",
            &format!("{} → {}", module.display(), to.display()),
        );
        self.frozen.push(to);
    }

    /// One crate is gone from every target; one is new; a new target appears.
    fn drop_and_add_crates(&mut self, plan: &Plan) {
        let gone = self.layout.crates[5 + self.m.rng.index(self.layout.crates.len() - 5)].clone();
        let prefix = format!("lib{gone}-");
        let doomed: Vec<PathBuf> = self
            .layout
            .hashed
            .iter()
            .filter(|p| {
                let name = p.file_name().expect("named").to_string_lossy();
                name.starts_with(&prefix) && split_hash(&name).is_some_and(|(b, _, _)| b == prefix)
            })
            .cloned()
            .collect();
        for path in doomed {
            self.m.remove(&path);
            self.changes
                .note("file deleted (crate dropped)", &path.display().to_string());
        }
        let fresh = format!("rustc_arsync_{}", self.m.rng.pick(&MODULES));
        let budget = plan.rlib_bytes / self.layout.crates.len() as u64 * 2;
        for target in &self.layout.targets {
            let dir = p("lib/rustlib").join(target).join("lib");
            let mut scratch = Layout::default();
            add_rlibs(
                &mut self.m,
                &mut scratch,
                &dir,
                std::slice::from_ref(&fresh),
                budget,
            );
            for path in scratch.hashed {
                self.changes
                    .note("file added (new crate)", &path.display().to_string());
            }
        }
        // A new target: a new deep directory of binaries.
        let dir = p("lib/rustlib").join(NEW_TARGET).join("lib");
        let mut scratch = Layout::default();
        let crates: Vec<String> = ["core", "alloc", "std"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        add_rlibs(
            &mut self.m,
            &mut scratch,
            &dir,
            &crates,
            plan.rlib_bytes / 16,
        );
        let data = binary(&mut self.m.rng, 3000, ELF_HEADER);
        self.m
            .add_file(dir.join("self-contained/crt1-command.o"), data, 0o644);
        self.changes.note(
            "directory added (new target)",
            &format!("{} ({} files)", dir.display(), scratch.hashed.len() + 1),
        );
    }

    /// Every hash-named file gets a new hash: mostly the same content with local edits.
    fn rehash(&mut self) {
        let layout = self.layout;
        let paths = self.live_files(&layout.hashed);
        let mut small = 0;
        for path in &paths {
            let name = path
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            let (before, old, after) = split_hash(&name).expect("hashed names carry a hash");
            let new = self.new_hash(old);
            let to = parent_of(path).join(format!("{before}{new}{after}"));
            self.m.rename(path, &to);
            let shown = format!(
                "{} → {}",
                path.display(),
                to.file_name().expect("named").to_string_lossy()
            );
            let len = self.m.data(&to).len();
            // The big shared objects are always edited locally; the first four others (in
            // shuffled order) get one kind each, so every seed has every kind.
            let kind = if len >= 1 << 20 {
                1
            } else {
                small += 1;
                match small - 1 {
                    forced @ 0..=3 => forced,
                    _ => match self.m.rng.below(100) {
                        0..=24 => 0,
                        25..=79 => 1,
                        80..=89 => 2,
                        _ => 3,
                    },
                }
            };
            match kind {
                0 => {
                    // A rename alone keeps the mtime (the file was not rebuilt).
                    self.changes
                        .note("renamed (new hash), same content", &shown);
                }
                1 => {
                    self.update(&to, local_edits);
                    self.changes
                        .note("renamed (new hash) + local edits", &shown);
                }
                2 => {
                    self.update(&to, |rng, data| {
                        local_edits(rng, data);
                        grow(rng, data, len / 10 + 100);
                    });
                    self.changes
                        .note("renamed (new hash) + edits + appended", &shown);
                }
                _ => {
                    let new_len = len * self.m.rng.range(90, 110) / 100;
                    let data = if self.m.data(&to).is_text() {
                        Recipe::text(prose(&mut self.m.rng, new_len))
                    } else {
                        binary(&mut self.m.rng, new_len, header_for(&name))
                    };
                    self.set_data(&to, data);
                    self.changes.note("renamed (new hash), rewritten", &shown);
                }
            }
        }
        // Symlinks follow the renames (and are made anew).
        let retargeted: Vec<(PathBuf, String)> = self
            .m
            .nodes
            .iter()
            .filter_map(|(path, node)| match node {
                Node::Symlink { target, .. } => {
                    let (before, old, after) = split_hash(target)?;
                    let new = self.hashes.get(old)?;
                    Some((path.clone(), format!("{before}{new}{after}")))
                }
                _ => None,
            })
            .collect();
        for (path, new_target) in retargeted {
            let stamp = self.m.stamp();
            if let Some(Node::Symlink { target, mtime }) = self.m.nodes.get_mut(&path) {
                (*target, *mtime) = (new_target, stamp);
            }
            self.changes
                .note("symlink retargeted (new hash)", &path.display().to_string());
        }
        // libstd's shared object is now shipped twice: same content under a second name.
        let libstd = self
            .m
            .nodes
            .keys()
            .find(|k| {
                k.parent() == Some(Path::new("lib"))
                    && k.to_string_lossy().starts_with("lib/libstd-")
            })
            .expect("libstd is in lib/")
            .clone();
        let target = &self.layout.targets[0];
        let copy = p("lib/rustlib")
            .join(target)
            .join("lib")
            .join(libstd.file_name().expect("named"));
        let data = self.m.data(&libstd).clone();
        self.m.add_file(copy.clone(), data, 0o755);
        self.changes.note(
            "file copied (same content, second name)",
            &copy.display().to_string(),
        );
    }

    /// The executables and the big same-named shared object.
    fn edit_binaries(&mut self, plan: &Plan) {
        let scattered = (plan.llvm_bytes >> 22).clamp(3, 40);
        self.update(Path::new(LLVM), |rng, data| {
            overwrite_scattered(rng, data, scattered);
            for _ in 0..2 {
                let size = rng.range(1000, 3000);
                insert_middle(rng, data, size);
            }
        });
        self.changes
            .note("big binary: scattered 4 KiB edits + insertions", LLVM);
        self.update(Path::new("bin/rustdoc"), |rng, data| {
            overwrite_scattered(rng, data, 8)
        });
        self.changes
            .note("scattered 4 KiB edits (same size)", "bin/rustdoc");
        self.update(Path::new("bin/cargo"), |rng, data| {
            let size = rng.range(100, 5000);
            insert_middle(rng, data, size);
        });
        self.changes
            .note("bytes inserted in the middle", "bin/cargo");
        self.update(Path::new("bin/rust-analyzer"), |rng, data| {
            let len = data.len();
            grow(rng, data, len / 20);
        });
        self.changes.note("appended (grows)", "bin/rust-analyzer");
        self.update(Path::new("bin/rustfmt"), |_, data| {
            let len = data.len();
            data.splice(len * 4 / 5, len - len * 4 / 5, Vec::new());
        });
        self.changes.note("truncated (shrinks)", "bin/rustfmt");
        self.update(Path::new(PROC_MACRO_SRV), |rng, data| {
            local_edits(rng, data)
        });
        self.changes.note("local edits", PROC_MACRO_SRV);
        self.touch(Path::new("bin/rustc"));
    }

    fn touch(&mut self, path: &Path) {
        let stamp = self.m.stamp();
        *self.m.file_mut(path).2 = stamp;
        self.changes
            .note("new mtime only (same content)", &path.display().to_string());
    }

    fn chmod(&mut self, path: &Path, mode: u32) {
        let old = std::mem::replace(self.m.file_mut(path).1, mode);
        self.changes.note(
            if old < mode {
                "mode 0644 → 0755"
            } else {
                "mode 0755 → 0644"
            },
            &path.display().to_string(),
        );
    }

    fn edit_docs(&mut self, plan: &Plan) {
        let layout = self.layout;
        let pages = self.live_files(&layout.doc_pages);
        let n = pages.len();
        let share = |percent: usize| (n * percent / 100).max(1);
        let mut queue = pages.into_iter();
        let mut take = |count: usize| queue.by_ref().take(count).collect::<Vec<PathBuf>>();
        let (copied, bumped, grown, shrunk) = (
            take(share(1)),
            take(share(25)),
            take(share(4)),
            take(share(3)),
        );
        let (touched, deleted, modes) = (take(share(3)), take(share(3)), take(share(1)));

        // Copies first, while their content is still A's: a re-export documented twice.
        let modules = self.live_dirs(&[&layout.doc_modules[..], &layout.doc_crates[..]].concat());
        for page in copied {
            let dir = self.m.rng.pick(&modules).clone();
            let name = page
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            let to = self.m.free_name(&dir, &name);
            let data = self.m.data(&page).clone();
            self.m.add_file(to.clone(), data, 0o644);
            self.changes.note(
                "file copied (same content, second name)",
                &format!("{} → {}", page.display(), to.display()),
            );
        }
        for page in bumped {
            self.update(&page, |_, data| {
                let text = String::from_utf8(data.bytes()).expect("pages are text");
                *data = Recipe::text(text.replace(VERSION_A, VERSION_B).into_bytes());
            });
            self.changes.note(
                "version string edited (same size)",
                &page.display().to_string(),
            );
        }
        for page in grown {
            self.update(&page, insert_paragraph);
            self.changes
                .note("text: paragraph inserted", &page.display().to_string());
        }
        for page in shrunk {
            self.update(&page, remove_lines);
            self.changes
                .note("text: lines removed", &page.display().to_string());
        }
        for page in touched {
            self.touch(&page);
        }
        for page in deleted {
            self.m.remove(&page);
            self.changes
                .note("file deleted", &page.display().to_string());
        }
        for page in modes {
            self.chmod(&page, 0o755);
        }
        for _ in 0..share(2) {
            let dir = self.m.rng.pick(&modules).clone();
            let page = add_doc_page(&mut self.m, &dir);
            self.changes.note("file added", &page.display().to_string());
        }
        // A new deep module tree.
        let per_level = match plan.doc_pages {
            0..=200 => 1,
            201..=2000 => 4,
            _ => 12,
        };
        let mut dir = p(HTML).join("std/os");
        for _ in 0..4 {
            let name = format!("{}_new", self.m.rng.pick(&MODULES));
            dir = self.m.free_name(&dir, &name);
            for _ in 0..per_level {
                add_doc_page(&mut self.m, &dir);
            }
        }
        self.changes.note(
            "directory added (deep, new pages)",
            &format!("{} ({} pages)", dir.display(), 4 * per_level),
        );
    }

    fn live_dirs(&self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        dirs.iter()
            .filter(|d| matches!(self.m.nodes.get(*d), Some(Node::Dir { .. })) && !self.frozen(d))
            .cloned()
            .collect()
    }

    fn edit_sources(&mut self) {
        let layout = self.layout;
        let files = self.live_files(&layout.src_files);
        let n = files.len();
        let share = |percent: usize| (n * percent / 100).max(1);
        let mut queue = files.into_iter();
        let mut take = |count: usize| queue.by_ref().take(count).collect::<Vec<PathBuf>>();
        let (edited, deleted, touched) = (take(share(10)), take(share(2)), take(share(2)));
        for file in edited {
            self.update(&file, |rng, data| {
                let text = String::from_utf8(data.bytes()).expect("sources are text");
                *data = Recipe::text(text.replacen(VERSION_A, VERSION_B, 1).into_bytes());
                insert_paragraph(rng, data);
            });
            self.changes
                .note("source edited", &file.display().to_string());
        }
        for file in deleted {
            self.m.remove(&file);
            self.changes
                .note("file deleted", &file.display().to_string());
        }
        for file in touched {
            self.touch(&file);
        }
        let dirs = self.live_dirs(&[&layout.src_modules[..], &layout.src_crates[..]].concat());
        for _ in 0..share(2) {
            let dir = self.m.rng.pick(&dirs).clone();
            let module = *self.m.rng.pick(&MODULES);
            let path = self.m.free_name(&dir, &format!("{module}.rs"));
            let text = rust_source(&mut self.m.rng, module);
            self.m.add_text(path.clone(), text, 0o644);
            self.changes.note("file added", &path.display().to_string());
        }
    }

    /// Entries that change kind.
    fn replace_kinds(&mut self) {
        // Symlink → file: the link becomes a copy of what it pointed at (shared content).
        self.m.remove(Path::new(PROC_MACRO_LINK));
        let data = self.m.data(Path::new(PROC_MACRO_SRV)).clone();
        self.m.add_file(p(PROC_MACRO_LINK), data, 0o755);
        self.changes
            .note("symlink replaced by a file", PROC_MACRO_LINK);
        // File → symlink.
        self.m.remove(Path::new(DOC_README));
        self.m.add_symlink(p(DOC_README), "html/index.html");
        self.changes.note("file replaced by a symlink", DOC_README);
        // Directory → file.
        self.m.remove(Path::new(PLUGINS));
        let text = config_text(&mut self.m.rng, 12);
        self.m.add_text(p(PLUGINS), text, 0o644);
        self.changes.note("directory replaced by a file", PLUGINS);
    }

    fn small_changes(&mut self) {
        let text = config_text(&mut self.m.rng, 3);
        self.set_data(Path::new(EMPTY_CONF), Recipe::text(text));
        self.changes.note("empty file filled", EMPTY_CONF);
        self.set_data(Path::new(CRATES_JS), Recipe::empty());
        self.changes.note("file emptied", CRATES_JS);
        self.update(Path::new(CARGO_MAN), |rng, data| {
            insert_paragraph(rng, data)
        });
        self.changes
            .note("hard-linked file edited (both names)", CARGO_MAN);
        self.update(Path::new(CONFIG), insert_paragraph);
        self.changes.note("text: paragraph inserted", CONFIG);
        self.update(Path::new(SEARCH_INDEX), |rng, data| {
            for _ in 0..3 {
                insert_paragraph(rng, data);
            }
            remove_lines(rng, data);
        });
        self.changes.note("text: paragraph inserted", SEARCH_INDEX);
        self.set_data(
            Path::new("version"),
            Recipe::text(format!("{VERSION_B} ({COMMIT_B})\n").into_bytes()),
        );
        self.changes.note("text rewritten", "version");
        self.update(Path::new("lib/rustlib/components"), |_, data| {
            let mut text = data.bytes();
            text.extend_from_slice(b"rust-analyzer\n");
            *data = Recipe::text(text);
        });
        self.changes
            .note("appended (grows)", "lib/rustlib/components");
        self.chmod(Path::new(GDB_PROVIDERS), 0o755);
        self.chmod(Path::new(RUST_LLDB), 0o644);
        self.m.add_dir(p("share/fish/vendor_completions.d"), 0o755);
        self.changes
            .note("directory added (empty)", "share/fish/vendor_completions.d");
    }
}

// Edits of a recipe (B's changes to one file).

fn local_edits(rng: &mut Rng, data: &mut Recipe) {
    if data.is_text() {
        insert_paragraph(rng, data);
        if rng.percent(50) {
            remove_lines(rng, data);
        }
        return;
    }
    let len = data.len();
    if len >= 1 << 20 {
        overwrite_scattered(rng, data, (len >> 20).clamp(2, 40));
        let size = rng.range(16, 4096);
        insert_middle(rng, data, size);
        return;
    }
    for _ in 0..rng.range(1, 4) {
        let len = data.len();
        let size = rng.range(16, 4096).min(len / 4);
        let at = rng.below(len - size + 1);
        match rng.below(3) {
            0 => data.splice(at, size, vec![random_piece(rng, size)]),
            1 => data.splice(at, 0, vec![random_piece(rng, size)]),
            _ => data.splice(at, size, Vec::new()),
        }
    }
}

/// Overwrites `count` 4 KiB pieces at random offsets (same size).
fn overwrite_scattered(rng: &mut Rng, data: &mut Recipe, count: u64) {
    let len = data.len();
    let size = 4096.min(len);
    for _ in 0..count {
        let at = rng.below(len - size + 1);
        data.splice(at, size, vec![random_piece(rng, size)]);
    }
}

/// Inserts `size` bytes somewhere in the middle half, shifting the rest.
fn insert_middle(rng: &mut Rng, data: &mut Recipe, size: u64) {
    let len = data.len();
    let at = len / 4 + rng.below(len / 2 + 1);
    data.splice(at, 0, vec![random_piece(rng, size)]);
}

fn grow(rng: &mut Rng, data: &mut Recipe, size: u64) {
    let len = data.len();
    if data.is_text() {
        let mut text = data.bytes();
        text.extend_from_slice(&prose(rng, size));
        *data = Recipe::text(text);
    } else {
        data.splice(len, 0, vec![random_piece(rng, size)]);
    }
}

/// Offsets just after each newline (where a line may be inserted or removed).
fn line_starts(text: &[u8]) -> Vec<usize> {
    text.iter()
        .enumerate()
        .filter(|(_, &c)| c == b'\n')
        .map(|(i, _)| i + 1)
        .collect()
}

fn insert_paragraph(rng: &mut Rng, data: &mut Recipe) {
    let mut text = data.bytes();
    let starts = line_starts(&text);
    let at = if starts.is_empty() {
        text.len()
    } else {
        *rng.pick(&starts)
    };
    let mut para = String::new();
    paragraph(rng, &mut para);
    let tail = text.split_off(at);
    text.extend_from_slice(para.as_bytes());
    text.extend_from_slice(&tail);
    *data = Recipe::text(text);
}

fn remove_lines(rng: &mut Rng, data: &mut Recipe) {
    let mut text = data.bytes();
    let starts = line_starts(&text);
    if starts.len() < 4 {
        text.truncate(text.len() / 2);
    } else {
        let first = 1 + rng.index(starts.len() - 3);
        let last = (first + rng.index(3) + 1).min(starts.len() - 1);
        text.drain(starts[first - 1]..starts[last]);
    }
    *data = Recipe::text(text);
}

// ---------------------------------------------------------------------------
// Writing a model to disk, and its counts.
// ---------------------------------------------------------------------------

const WRITE_CHUNK: usize = 1 << 20;

fn write_recipe(path: &Path, data: &Recipe, buf: &mut [u8]) {
    let mut file =
        fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut filled = 0;
    for piece in &data.0 {
        let mut from = 0;
        while from < piece.len() {
            let take = (piece.len() - from).min((buf.len() - filled) as u64) as usize;
            piece.fill(from, &mut buf[filled..filled + take]);
            from += take as u64;
            filled += take;
            if filled == buf.len() {
                file.write_all(buf)
                    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
                filled = 0;
            }
        }
    }
    file.write_all(&buf[..filled])
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Writes `m` as the new directory `dir`: entries, then hard links, then modes and mtimes
/// (last, so nothing written afterwards disturbs a directory's mtime).
fn materialize(m: &Model, dir: &Path) {
    fs::create_dir(dir)
        .unwrap_or_else(|e| panic!("create {} (it must not exist yet): {e}", dir.display()));
    let mut buf = vec![0; WRITE_CHUNK];
    let mut links = Vec::new();
    for (rel, node) in &m.nodes {
        let path = dir.join(rel);
        match node {
            Node::Dir { .. } => {
                fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()))
            }
            Node::File { data, .. } => write_recipe(&path, data, &mut buf),
            Node::Symlink { target, .. } => symlink(target, &path),
            Node::HardLink { to } => links.push((dir.join(to), path)),
        }
    }
    for (existing, new) in links {
        hard_link(&existing, &new);
    }
    for (rel, node) in &m.nodes {
        let path = dir.join(rel);
        match node {
            Node::File { mode, mtime, .. } | Node::Dir { mode, mtime } => {
                chmod(&path, *mode);
                set_mtime(&path, mtime.0, mtime.1);
            }
            Node::Symlink { mtime, .. } => set_mtime(&path, mtime.0, mtime.1),
            Node::HardLink { .. } => {}
        }
    }
    chmod(dir, 0o755);
    set_mtime(dir, m.root_mtime.0, m.root_mtime.1);
}

/// What a version holds, for the summary.
#[derive(Debug, Default)]
struct Counts {
    files: usize,
    dirs: usize,
    symlinks: usize,
    hard_links: usize,
    bytes: u64,
    deepest: usize,
    widest: (usize, PathBuf),
}

impl Counts {
    fn of(m: &Model) -> Counts {
        let mut c = Counts::default();
        let mut children: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for (path, node) in &m.nodes {
            *children.entry(parent_of(path)).or_default() += 1;
            c.deepest = c.deepest.max(path.components().count());
            match node {
                Node::File { data, .. } => {
                    c.files += 1;
                    c.bytes += data.len();
                }
                Node::Dir { .. } => c.dirs += 1,
                Node::Symlink { .. } => c.symlinks += 1,
                Node::HardLink { .. } => c.hard_links += 1,
            }
        }
        if let Some((dir, n)) = children.into_iter().max_by_key(|(_, n)| *n) {
            c.widest = (n, dir);
        }
        c
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries: {} files ({:.1} MiB), {} dirs, {} symlinks, {} extra hard-link names; \
             deepest {} levels, widest dir {} entries ({})",
            self.files + self.dirs + self.symlinks + self.hard_links,
            self.files,
            self.bytes as f64 / f64::from(1 << 20),
            self.dirs,
            self.symlinks,
            self.hard_links,
            self.deepest,
            self.widest.0,
            self.widest.1.display()
        )
    }
}
