//! Issue 15, filters: what the sender lists besides the filter rules' say — `--files-from`
//! names (read and cleaned as upstream's `read_line` and `sanitize_path` do), `-d`'s
//! directories without their contents, and the `-C` flag as it is forwarded. Does not read
//! the files-from file itself (the command line does) nor walk trees (the scan).

/// The options of this module, as [`super::SyncOptions::listing`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingOptions {
    /// `-C`: rsync's CVS rules are in the filter rules already; this forwards `-C`.
    pub cvs_exclude: bool,
    /// `-d` (implied by `--files-from`): a directory named without `-r` is listed without
    /// its contents (`.`, a directory sent by its contents, one level deep).
    pub dirs: bool,
    /// `--files-from=HOST:FILE`: the list on the remote sender, forwarded as `--files-from`.
    pub remote_files_from: Option<String>,
    /// `-0` with a forwarded `--files-from`.
    pub from0: bool,
    /// A server's `--files-from=-`: the rsync client sends the names after its filters.
    pub files_from_wire: bool,
}

impl ListingOptions {
    /// What a remote server gets of these: `-d` when directories are listed without `-r`
    /// (for a receiving rsync only with `--delete`, as `server_options`), the remote list.
    pub fn server_args(&self, recursive: bool, server_sends: bool, delete: bool) -> Vec<String> {
        let mut v = Vec::new();
        if self.dirs && !recursive && (server_sends || delete) {
            v.push("-d".to_owned());
        }
        if let Some(f) = &self.remote_files_from {
            v.push(format!("--files-from={f}"));
            if self.from0 {
                v.push("--from0".to_owned());
            }
        }
        v
    }
}

/// The names of a files-from list: NUL-terminated with `from0`, else one a line (CR or LF);
/// empty lines and, unless `remote`, lines starting with `#` or `;` skipped (upstream's
/// `read_line` with `RL_DUMP_COMMENTS`); each cleaned with [`sanitize`].
pub fn read_names(text: &[u8], from0: bool, remote: bool) -> Vec<Vec<u8>> {
    let split: &dyn Fn(&u8) -> bool = if from0 {
        &|b| *b == 0
    } else {
        &|b| *b == b'\n' || *b == b'\r'
    };
    text.split(split)
        .filter(|l| !l.is_empty())
        .filter(|l| remote || !(l.starts_with(b"#") || l.starts_with(b";")))
        .map(sanitize)
        .collect()
}

/// A name made relative as upstream's `sanitize_path(…, SP_KEEP_DOT_DIRS)`: no leading `/`,
/// no `..` components, no empty ones; `.` components kept.
pub fn sanitize(name: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b"..")
        .collect();
    let mut out = parts.join(&b'/');
    if name.ends_with(b"/") && !out.is_empty() {
        out.push(b'/');
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// The source arguments for `names` under the directory `src`: `src/./name` with `-R` (the
/// name is the path at the receiver), `src/name` without.
pub fn sources_for(src: &[u8], names: &[Vec<u8>], relative: bool) -> Vec<Vec<u8>> {
    let src = src.strip_suffix(b"/").unwrap_or(src);
    let src: &[u8] = if src.is_empty() { b"/" } else { src };
    names
        .iter()
        .map(|n| {
            let sep: &[u8] = match (relative, src == b"/") {
                (true, true) => b"./",
                (true, false) => b"/./",
                (false, true) => b"",
                (false, false) => b"/",
            };
            [src, sep, n].concat()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_rsync_reads_them() {
        let text = b"a\r\n# c\n;d\n\n/abs/x\n../up/y\nsub/\n";
        assert_eq!(
            read_names(text, false, false),
            [&b"a"[..], b"abs/x", b"up/y", b"sub/"]
        );
        assert_eq!(read_names(b"a b\0#c\0", true, false), [&b"a b"[..]]);
        assert_eq!(read_names(b"#c\n", false, true), [&b"#c"[..]]);
        assert_eq!(
            sources_for(b"src/", &[b"a/b".to_vec()], true),
            [b"src/./a/b".to_vec()]
        );
        assert_eq!(
            sources_for(b"src", &[b"a/b".to_vec()], false),
            [b"src/a/b".to_vec()]
        );
    }
}
