//! `--list-only`, and `arsync SRC` with no destination: the sources listed as rsync lists them
//! (`list_file_entry`: type and permissions, size with thousands separators, modification time,
//! name, and ` -> TARGET` for a symlink with `-l`). Local sources are walked here (honouring
//! `-r`, else one level, as rsync's implied `--dirs`, and the filter rules); a remote listing
//! is a pull that only lists, its entries printed by [`entry_line`].

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use arsync_core::engine::stats::commas;
use arsync_core::engine::{FileEntry, FileKind, SyncOptions};
use arsync_core::flist::path_order;

use crate::out_format::{local_time, perm_string};

/// One listed entry: its name as listed and its metadata.
struct Listed {
    name: Vec<u8>,
    meta: fs::Metadata,
    path: PathBuf,
}

/// List `sources`; returns the lines and whether any source was missing or unreadable.
pub fn list_local(sources: &[PathBuf], opts: &SyncOptions) -> (Vec<String>, bool) {
    let mut all = Vec::new();
    let mut failed = false;
    for src in sources {
        let raw = src.as_os_str().as_bytes();
        let contents = raw.ends_with(b"/") || raw == b"." || raw.ends_with(b"/.");
        let meta = match if contents {
            fs::metadata(src)
        } else {
            fs::symlink_metadata(src)
        } {
            Ok(m) => m,
            Err(e) => {
                crate::output::err_warn(&format!("link_stat \"{}\" failed: {e}", src.display()));
                failed = true;
                continue;
            }
        };
        let name: Vec<u8> = if contents && meta.is_dir() {
            b".".to_vec()
        } else {
            src.file_name()
                .map_or_else(|| b".".to_vec(), |n| n.as_bytes().to_vec())
        };
        let is_dir = meta.is_dir();
        all.push(Listed {
            name: name.clone(),
            meta,
            path: src.clone(),
        });
        // A directory named by its contents (`dir/`) is listed one level deep without `-r`
        // (rsync's implied `--dirs`); one named by itself only with `-r`.
        if is_dir && (contents || opts.recursive) {
            walk(src, &name, opts, true, &mut all, &mut failed);
        }
    }
    all.sort_by(|a, b| path_order(&a.name, a.meta.is_dir(), &b.name, b.meta.is_dir()));
    all.dedup_by(|b, a| a.name == b.name);
    let lines = all.iter().map(|l| line(l, opts)).collect();
    (lines, failed)
}

/// The entries below `dir` (listed as `prefix/NAME`): all of them with `-r`, else only the
/// first level.
fn walk(
    dir: &Path,
    prefix: &[u8],
    opts: &SyncOptions,
    first: bool,
    out: &mut Vec<Listed>,
    failed: &mut bool,
) {
    if !first && !opts.recursive {
        return;
    }
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            crate::output::err_warn(&format!("opendir \"{}\" failed: {e}", dir.display()));
            *failed = true;
            return;
        }
    };
    for de in rd.flatten() {
        let path = de.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let name = if prefix == b"." {
            de.file_name().as_bytes().to_vec()
        } else {
            let mut n = prefix.to_vec();
            n.push(b'/');
            n.extend_from_slice(de.file_name().as_bytes());
            n
        };
        if opts.filters.excluded_for_sender(&name, meta.is_dir()) {
            continue;
        }
        let is_dir = meta.is_dir();
        out.push(Listed {
            name: name.clone(),
            meta,
            path: path.clone(),
        });
        if is_dir {
            walk(&path, &name, opts, false, out, failed);
        }
    }
}

/// `drwxr-xr-x          4,096 2026/12/06 13:37:08 name`.
fn line(l: &Listed, opts: &SyncOptions) -> String {
    let kind = FileKind::from_mode(l.meta.mode()).unwrap_or(FileKind::File);
    let target = (kind == FileKind::Symlink && opts.links)
        .then(|| fs::read_link(&l.path).ok())
        .flatten();
    list_line(
        kind,
        l.meta.mode(),
        l.meta.size(),
        l.meta.mtime(),
        &l.name,
        target.as_ref().map(|t| t.as_os_str().as_bytes()),
    )
}

/// A remote listing's line for an entry of the received list (`-l`: a symlink's target).
pub fn entry_line(e: &FileEntry, links: bool) -> String {
    let size = match e.kind {
        FileKind::Symlink => e.link_target().len() as u64,
        _ => e.size,
    };
    let target = (e.kind == FileKind::Symlink && links).then_some(e.link_target());
    list_line(e.kind, u32::from(e.perms), size, e.mtime, &e.path, target)
}

/// rsync's `list_file_entry`: type and permissions, size with thousands separators,
/// modification time, name, and ` -> TARGET` for a symlink.
fn list_line(
    kind: FileKind,
    mode: u32,
    size: u64,
    mtime: i64,
    name: &[u8],
    target: Option<&[u8]>,
) -> String {
    let letter = match kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::CharDev => 'c',
        FileKind::BlockDev => 'b',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
        _ => '-',
    };
    let mut s = format!(
        "{letter}{} {:>14} {} {}",
        perm_string(mode),
        commas(size),
        local_time(mtime, ' '),
        crate::output::escape_name(name, false)
    );
    if let Some(t) = target {
        s.push_str(" -> ");
        s.push_str(&crate::output::escape_name(t, false));
    }
    s
}
