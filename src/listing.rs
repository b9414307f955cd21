//! `--list-only`, and `arsync SRC` with no destination: the sources listed as rsync lists them
//! (`list_file_entry`: type and permissions, size with thousands separators, modification time,
//! name, and ` -> TARGET` for a symlink with `-l`). Local sources only; the walk honours
//! `-r` (else one level, as rsync's implied `--dirs`) and the filter rules.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use arsync_core::engine::stats::commas;
use arsync_core::engine::SyncOptions;
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
    let ft = l.meta.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '-'
    };
    let mut s = format!(
        "{kind}{} {:>14} {} {}",
        perm_string(l.meta.mode()),
        commas(l.meta.size()),
        local_time(l.meta.mtime(), ' '),
        crate::output::escape_name(&l.name, false)
    );
    if ft.is_symlink() && opts.links {
        if let Ok(t) = fs::read_link(&l.path) {
            s.push_str(" -> ");
            s.push_str(&crate::output::escape_name(t.as_os_str().as_bytes(), false));
        }
    }
    s
}
