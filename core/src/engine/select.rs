//! Which files take part beyond the filter rules (issue 15, rsync's selection options):
//! `-m/--prune-empty-dirs`, `--max-size`/`--min-size`, `-x/--one-file-system` and
//! `--ignore-missing-args`, as plain data plus the pure logic they need (rsync's size syntax,
//! the pruning of a sorted list).
//!
//! Owns the options and those functions; does not walk directories (`scan`) or decide
//! transfers (`receiver::generate`), which call in here.

use std::collections::HashSet;

use crate::flist::{split_parent, FileEntry, FileKind};

/// rsync's selection options, as the engine sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectOptions {
    /// `-m`: leave directories that hold no file (at any depth) out of the transfer.
    pub prune_empty_dirs: bool,
    /// `--max-size`: the receiver skips regular files larger than this.
    pub max_size: Option<u64>,
    /// `--min-size`: the receiver skips regular files smaller than this.
    pub min_size: Option<u64>,
    /// `-x` count: 1 sends mount-point directories empty, 2 leaves them out.
    pub one_file_system: u8,
    /// `--ignore-missing-args`: a source argument that does not exist is no error.
    pub ignore_missing_args: bool,
    /// `--delete-missing-args`: a source argument that does not exist is sent as a name the
    /// receiver deletes (rsync's mode-0 list entry); wins over `--ignore-missing-args`.
    pub delete_missing_args: bool,
    /// `-R`: send each source under its full path (from a `/./` in it, if any), with the
    /// directories on that path ("implied directories") as entries of their own.
    pub relative: bool,
}

impl SelectOptions {
    /// Whether the receiver skips a regular file of `size` bytes (`--max-size`, `--min-size`).
    pub fn size_skipped(&self, size: u64) -> bool {
        self.max_size.is_some_and(|m| size > m) || self.min_size.is_some_and(|m| size < m)
    }
}

/// Parse rsync's size argument (`parse_size_arg` with default suffix `b`): a number with an
/// optional fraction, an optional unit `b k m g t p` (any case; 1024-based, or 1000-based when
/// followed by `b`, 1024-based with `ib`), and an optional `+1` or `-1` after a unit or number.
/// `opt` names the option in the error (`max-size`).
pub fn parse_size_arg(arg: &str, opt: &str) -> Result<u64, String> {
    let invalid = || format!("--{opt}={arg} is invalid");
    let too_large = || format!("--{opt}={arg} is too large");
    let b = arg.as_bytes();
    let mut i = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if b.get(i) == Some(&b'.') {
        i += 1;
        i += b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    let number = &arg[..i];
    let reps = match b.get(i) {
        Some(b'+' | b'-') | None => 0,
        Some(c) => {
            i += 1;
            match c.to_ascii_lowercase() {
                b'b' => 0,
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return Err(invalid()),
            }
        }
    };
    let mult: u64 = match b.get(i) {
        Some(b'b' | b'B') => {
            i += 1;
            1000
        }
        None | Some(b'+' | b'-') => 1024,
        Some(_) if arg[i..].len() >= 2 && arg[i..i + 2].eq_ignore_ascii_case("ib") => {
            i += 2;
            1024
        }
        Some(_) => return Err(invalid()),
    };
    let unit = (0..reps).try_fold(1u64, |u, _| u.checked_mul(mult));
    let unit = unit.ok_or_else(too_large)?;
    // strtod reads the leading number; an empty one is 0, as in rsync.
    let value: f64 = if number.is_empty() || number == "." {
        0.0
    } else {
        number.parse().map_err(|_| invalid())?
    };
    let size = value * unit as f64;
    if !(0.0..(i64::MAX as f64 / 2.0)).contains(&size) {
        return Err(too_large());
    }
    let mut size = size as u64;
    if let Some(adj) = arg.get(i..i + 2).filter(|_| i > 0) {
        match adj {
            "+1" => {
                size += 1;
                i += 2;
            }
            "-1" => {
                size = size.saturating_sub(1);
                i += 2;
            }
            _ => {}
        }
    }
    if i != b.len() {
        return Err(invalid());
    }
    Ok(size)
}

/// `-R`: where a source argument's relative path starts. Returns the directory it hangs from
/// (the part before a `/./`, else `/` or `.`) and the path below it, cleaned as rsync does
/// (`clean_fname`: no leading `/` or `./`, no `//`, `/./` or trailing `/`; `.` when empty).
pub fn relative_path(arg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (base, rest) = match arg.windows(3).position(|w| w == b"/./") {
        Some(0) => (b"/".to_vec(), &arg[3..]),
        Some(i) => (arg[..i].to_vec(), &arg[i + 3..]),
        None if arg.starts_with(b"/") => (b"/".to_vec(), arg),
        None => (b".".to_vec(), arg),
    };
    let parts: Vec<&[u8]> = rest
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let rel = if parts.is_empty() {
        b".".to_vec()
    } else {
        parts.join(&b'/')
    };
    (base, rel)
}

/// `-R`: the implied directories of a relative path, outermost first (`a`, `a/b` for `a/b/c`).
pub fn implied_dirs(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(move |(i, _)| &rel[..i])
}

/// `-m`: which entries of a list stay when directories that contain no non-directory (at any
/// depth) are pruned, as rsync's receiver does (`clean_flist`). The root `.` always stays, and
/// so does a directory for which `kept` says so (rsync: one the receiver's filter rules
/// exclude or protect, e.g. `--filter='protect emptydir/'`) together with its ancestors.
pub fn prune_empty_dirs<'a>(
    entries: impl Iterator<Item = &'a FileEntry> + Clone,
    kept: impl Fn(&FileEntry) -> bool,
) -> Vec<bool> {
    let mut needed: HashSet<&[u8]> = HashSet::new();
    let mut mark = |mut path: &'a [u8]| {
        while !path.is_empty() && needed.insert(path) {
            path = split_parent(path).0;
        }
    };
    for e in entries.clone() {
        if e.kind != FileKind::Dir {
            mark(split_parent(&e.path).0);
        } else if kept(e) {
            mark(&e.path);
        }
    }
    entries
        .map(|e| e.kind != FileKind::Dir || e.path == b"." || needed.contains(e.path.as_slice()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_rsync_reads_them() {
        let p = |s| parse_size_arg(s, "max-size");
        assert_eq!(p("100"), Ok(100));
        assert_eq!(p("1k"), Ok(1024));
        assert_eq!(p("1K"), Ok(1024));
        assert_eq!(p("1KB"), Ok(1000));
        assert_eq!(p("1kib"), Ok(1024));
        assert_eq!(p("1.5M"), Ok(1536 << 10));
        assert_eq!(p("2g"), Ok(2 << 30));
        assert_eq!(p("1k+1"), Ok(1025));
        assert_eq!(p("1k-1"), Ok(1023));
        assert_eq!(p("10b-1"), Ok(9));
        assert_eq!(p("100-1"), Ok(99));
        assert!(p("1x").is_err());
        assert!(p("1kx").is_err());
        assert!(p("1k+2").is_err());
        assert!(p("-1").is_err());
    }

    #[test]
    fn relative_paths_as_rsync_cuts_them() {
        let r = |a: &str| {
            let (b, r) = relative_path(a.as_bytes());
            (
                String::from_utf8(b).unwrap_or_default(),
                String::from_utf8(r).unwrap_or_default(),
            )
        };
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(r("src/"), s(".", "src"));
        assert_eq!(r("./src/a/"), s(".", "src/a"));
        assert_eq!(r("/abs/x"), s("/", "abs/x"));
        assert_eq!(r("/abs/./x/y"), s("/abs", "x/y"));
        assert_eq!(r("src/./a//b/."), s("src", "a/b"));
        assert_eq!(r("/./x"), s("/", "x"));
        assert_eq!(r("."), s(".", "."));
        assert_eq!(r("src/./"), s("src", "."));
        let implied: Vec<&[u8]> = implied_dirs(b"a/b/c").collect();
        assert_eq!(implied, [&b"a"[..], b"a/b"]);
        assert_eq!(implied_dirs(b"a").count(), 0);
    }

    fn entry(path: &str, kind: FileKind) -> FileEntry {
        crate::merkle::dirtree::tests::entry(path, kind, 0, 0)
    }

    #[test]
    fn pruning_keeps_dirs_with_files_below() {
        let list = [
            entry(".", FileKind::Dir),
            entry("a", FileKind::Dir),
            entry("a/b", FileKind::Dir),
            entry("a/b/f", FileKind::File),
            entry("e", FileKind::Dir),
            entry("e/x", FileKind::Dir),
            entry("k", FileKind::Dir),
        ];
        let keep = prune_empty_dirs(list.iter(), |e| e.path == b"k");
        assert_eq!(keep, [true, true, true, true, false, false, true]);
    }
}
