//! The data: generated trees and files, and the check that a copy matches its source.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------

/// splitmix64: fast, deterministic, incompressible enough that no tool can cheat.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Varied modes and old, distinct, nanosecond mtimes, so that `-a` preservation is checked.
pub(crate) fn file_mode(i: usize) -> u32 {
    match i % 13 {
        0 => 0o600,
        5 => 0o755,
        9 => 0o640,
        _ => 0o644,
    }
}

pub(crate) fn file_mtime(i: usize) -> SystemTime {
    let i = i as u64;
    UNIX_EPOCH + Duration::new(1_600_000_000 + i * 37, ((i * 7_919) % 1_000_000_000) as u32)
}

pub(crate) fn write_file(path: &Path, i: usize, size: u64, rng: &mut Rng, buf: &mut [u8]) {
    let mode = file_mode(i);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).expect("chunk fits in usize");
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    f.set_permissions(fs::Permissions::from_mode(mode))
        .expect("chmod source file");
    f.set_modified(file_mtime(i)).expect("set source mtime");
}

/// `dirs` directories `dNNNN` holding `files` files `fNNNNNNN.bin` in all (`per_dir` each)
/// of `size` random bytes.
pub(crate) fn gen_tree(
    root: &Path,
    dirs: usize,
    per_dir: usize,
    files: usize,
    size: usize,
    seed: u64,
) {
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let mut rng = Rng(seed);
    let mut buf = vec![0u8; size.clamp(1, 1 << 20)];
    let mut i = 0;
    'dirs: for d in 0..dirs {
        let dir = root.join(format!("d{d:04}"));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        for _ in 0..per_dir {
            if i == files {
                break 'dirs;
            }
            write_file(
                &dir.join(format!("f{i:07}.bin")),
                i,
                size as u64,
                &mut rng,
                &mut buf,
            );
            i += 1;
        }
    }
    assert_eq!(
        i, files,
        "gen_tree: {dirs} dirs × {per_dir} < {files} files"
    );
}

pub(crate) fn gen_big(root: &Path, size: u64, seed: u64) {
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let mut buf = vec![0u8; 8 << 20];
    write_file(&root.join("big.bin"), 1, size, &mut Rng(seed), &mut buf);
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) kind: Kind,
    pub(crate) size: u64,
    pub(crate) mode: u32,
    pub(crate) mtime: i64,
    pub(crate) mtime_nsec: i64,
}

pub(crate) type Manifest = BTreeMap<PathBuf, Entry>;

/// Everything below `root` (not `root` itself), by relative path.
pub(crate) fn scan_tree(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for ent in rd {
            let ent = ent.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
            let md = ent
                .metadata()
                .unwrap_or_else(|e| panic!("stat {}: {e}", ent.path().display()));
            let ft = md.file_type();
            let kind = if ft.is_file() {
                Kind::File
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else {
                Kind::Other
            };
            let rel_child = rel.join(ent.file_name());
            if kind == Kind::Dir {
                stack.push(rel_child.clone());
            }
            out.insert(
                rel_child,
                Entry {
                    kind,
                    size: if kind == Kind::File { md.len() } else { 0 },
                    mode: md.mode() & 0o7777,
                    mtime: md.mtime(),
                    mtime_nsec: md.mtime_nsec(),
                },
            );
        }
    }
    out
}

#[derive(Debug, Default)]
pub(crate) struct TreeStats {
    pub(crate) files: usize,
    pub(crate) dirs: usize,
    pub(crate) bytes: u64,
}

pub(crate) fn stats(m: &Manifest) -> TreeStats {
    let mut s = TreeStats::default();
    for e in m.values() {
        match e.kind {
            Kind::File => {
                s.files += 1;
                s.bytes += e.size;
            }
            Kind::Dir => s.dirs += 1,
            _ => {}
        }
    }
    s
}

/// Compares `dst` with the source: same entries and kinds, same file sizes, modes and mtime
/// seconds (mtime nanoseconds too, as `cp -a` and `rsync -a` keep them), and the same bytes
/// in a sample of files (whole small files; 33 spread 64 KiB windows of big ones).
pub(crate) fn verify_copy(
    src: &Path,
    src_manifest: &Manifest,
    dst: &Path,
) -> Result<TreeStats, String> {
    let dst_manifest = scan_tree(dst);
    let (s, d) = (stats(src_manifest), stats(&dst_manifest));
    if s.files != d.files || s.dirs != d.dirs || s.bytes != d.bytes {
        let missing: Vec<_> = src_manifest
            .keys()
            .filter(|k| !dst_manifest.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = dst_manifest
            .keys()
            .filter(|k| !src_manifest.contains_key(*k))
            .take(3)
            .collect();
        return Err(format!(
            "destination has {} files / {} dirs / {} bytes, source has {} / {} / {} \
             (missing e.g. {missing:?}, extra e.g. {extra:?})",
            d.files, d.dirs, d.bytes, s.files, s.dirs, s.bytes
        ));
    }
    for (rel, se) in src_manifest {
        let Some(de) = dst_manifest.get(rel) else {
            return Err(format!("{} is missing in the destination", rel.display()));
        };
        if se.kind != de.kind {
            return Err(format!(
                "{}: source is {:?}, destination is {:?}",
                rel.display(),
                se.kind,
                de.kind
            ));
        }
        if se.mode != de.mode {
            return Err(format!(
                "{}: mode {:o} in the source, {:o} in the destination",
                rel.display(),
                se.mode,
                de.mode
            ));
        }
        if se.kind == Kind::File {
            if se.size != de.size {
                return Err(format!(
                    "{}: {} bytes in the source, {} in the destination",
                    rel.display(),
                    se.size,
                    de.size
                ));
            }
            if (se.mtime, se.mtime_nsec) != (de.mtime, de.mtime_nsec) {
                return Err(format!(
                    "{}: mtime {}.{:09} in the source, {}.{:09} in the destination",
                    rel.display(),
                    se.mtime,
                    se.mtime_nsec,
                    de.mtime,
                    de.mtime_nsec
                ));
            }
        }
    }
    let files: Vec<(&PathBuf, &Entry)> = src_manifest
        .iter()
        .filter(|(_, e)| e.kind == Kind::File)
        .collect();
    let stride = (files.len() / 256).max(1);
    let sample = files.iter().step_by(stride).chain(files.last());
    for (rel, e) in sample {
        compare_contents(&src.join(rel), &dst.join(rel), e.size)?;
    }
    Ok(d)
}

pub(crate) fn compare_contents(a: &Path, b: &Path, size: u64) -> Result<(), String> {
    const WINDOW: u64 = 64 << 10;
    let open = |p: &Path| fs::File::open(p).map_err(|e| format!("open {}: {e}", p.display()));
    let (fa, fb) = (open(a)?, open(b)?);
    let offsets: Vec<u64> = if size <= 16 * WINDOW {
        (0..size.div_ceil(WINDOW)).map(|k| k * WINDOW).collect()
    } else {
        (0..=32).map(|k| k * (size - WINDOW) / 32).collect()
    };
    let mut ba = vec![0u8; WINDOW as usize];
    let mut bb = vec![0u8; WINDOW as usize];
    for off in offsets {
        let n = usize::try_from(WINDOW.min(size - off)).expect("window fits in usize");
        fa.read_exact_at(&mut ba[..n], off)
            .map_err(|e| format!("read {} at {off}: {e}", a.display()))?;
        fb.read_exact_at(&mut bb[..n], off)
            .map_err(|e| format!("read {} at {off}: {e}", b.display()))?;
        if ba[..n] != bb[..n] {
            return Err(format!(
                "{}: contents differ from the source in bytes {off}..{}",
                b.display(),
                off + n as u64
            ));
        }
    }
    Ok(())
}
