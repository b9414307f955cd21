//! Issue 15, filters: `--files-from` (and `-0`) on the command line, as upstream's options.c:
//! it implies `-R` (unless `--no-relative`) and `-d`, turns off the `-r` that `-a` implies
//! (an explicit `-r` stays), takes exactly one source directory, and the names it lists
//! become the source arguments (`SRC/./NAME`). A local list is read here (`-` is standard
//! input); `HOST:FILE` names a list on the remote sender, which reads it itself.

use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use arsync_core::engine::listing::{read_names, sources_for};
use arsync_core::engine::SyncOptions;

use super::cli::Cli;
use super::{Mode, ParseOutcome};

/// How many bytes of names a local list may put on a remote sender's command line.
const PULL_LIST_MAX: usize = 256 << 10;

/// What `--files-from` and `-d` change in `opts`.
pub(super) fn adjust_opts(cli: &Cli, opts: &mut SyncOptions) -> Result<(), ParseOutcome> {
    opts.listing.dirs = cli.dirs || cli.files_from.is_some();
    opts.listing.from0 = cli.from0 && !cli.no_from0;
    opts.listing.files_from_wire = cli.server && cli.files_from.as_deref() == Some("-");
    opts.listing.remote_files_from = cli
        .files_from
        .as_deref()
        .and_then(|f| f.split_once(':'))
        .filter(|(h, _)| !h.is_empty() && !h.contains('/') && !cli.server)
        .map(|(_, p)| p.to_owned());
    if cli.files_from.is_some() {
        if !cli.recursive {
            opts.recursive = false;
        }
        if !cli.no_relative {
            opts.select.relative = true;
        }
    }
    // rsync: without -R there are no implied directories to leave out.
    if cli.no_implied_dirs && !cli.implied_dirs && opts.select.relative {
        // The receiver would have to make the missing directories as rsync's `make_path`
        // does; every list it gets today names each entry's parent.
        return Err(ParseOutcome::Usage(
            "--no-implied-dirs is not supported yet".into(),
        ));
    }
    Ok(())
}

/// What `--files-from` asks for, taken from the command line before it is taken apart.
pub(super) struct Request {
    file: Option<String>,
    from0: bool,
    server: bool,
}

impl Request {
    pub(super) fn new(cli: &Cli) -> Self {
        Request {
            file: cli.files_from.clone(),
            from0: cli.from0 && !cli.no_from0,
            server: cli.server,
        }
    }
}

/// The list `--files-from=FILE` names, read now when it is on this machine; `None` for a
/// list on the remote side (`HOST:FILE`), with that side's file name.
fn read_list(cli: &Request, file: &str, remote_host: Option<&str>) -> Result<ListAt, ParseOutcome> {
    if let Some((host, path)) = file
        .split_once(':')
        .filter(|(h, _)| !h.is_empty() && !h.contains('/') && !cli.server)
    {
        let host = host.rsplit('@').next().unwrap_or(host);
        if remote_host != Some(host) {
            return Err(ParseOutcome::Usage(
                "--files-from hostname is not the same as the transfer hostname".into(),
            ));
        }
        if path == "-" {
            return Err(ParseOutcome::Usage(
                "Invalid --files-from remote filename".into(),
            ));
        }
        return Ok(ListAt::Remote);
    }
    let text = if file == "-" {
        if cli.server {
            // Read from the rsync client's stream once it is up (`serve_rsync`).
            return Ok(ListAt::Remote);
        }
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| ParseOutcome::Usage(format!("reading --files-from=-: {e}")))?;
        v
    } else {
        std::fs::read(file).map_err(|e| {
            ParseOutcome::Usage(format!(
                "failed to open files-from file {file}: {}",
                arsync_core::engine::scan::os_error(&e)
            ))
        })?
    };
    Ok(ListAt::Here(read_names(&text, cli.from0, false)))
}

enum ListAt {
    Here(Vec<Vec<u8>>),
    Remote,
}

/// Replace the one source argument of `mode` by the names of the `--files-from` list.
pub(super) fn expand(cli: &Request, relative: bool, mode: &mut Mode) -> Result<(), ParseOutcome> {
    let Some(file) = cli.file.as_deref() else {
        return Ok(());
    };
    let one = |n: usize| {
        if n == 1 {
            Ok(())
        } else {
            Err(ParseOutcome::Usage(
                "--files-from takes exactly one source directory (arsync [OPTIONS] --files-from=FILE SRC DEST)".into(),
            ))
        }
    };
    match mode {
        Mode::Local { sources, .. } | Mode::Push { sources, .. } => {
            one(sources.len())?;
            let ListAt::Here(names) = read_list(cli, file, None)? else {
                unreachable!("a remote list is refused without a remote sender")
            };
            let src = sources[0].as_os_str().as_bytes().to_vec();
            *sources = sources_for(&src, &names, relative)
                .into_iter()
                .map(|p| PathBuf::from(std::ffi::OsString::from_vec(p)))
                .collect();
        }
        Mode::Pull { remote, .. } => {
            one(remote.paths.len())?;
            // A list on the remote side is read there (forwarded as --files-from=FILE).
            if let ListAt::Here(names) = read_list(cli, file, Some(&remote.host))? {
                // (A list on the remote side: `remote_files_from`, set by `adjust_opts`.)
                let src = remote.paths[0].as_bytes().to_vec();
                let paths = sources_for(&src, &names, relative);
                // The names go on the remote command line: keep it well inside ARG_MAX.
                let len: usize = paths.iter().map(|p| p.len() + 3).sum();
                if len > PULL_LIST_MAX {
                    return Err(ParseOutcome::Usage(format!(
                        "--files-from with a remote sender: the list ({len} bytes) is over \
                         {PULL_LIST_MAX} bytes, which is not supported yet (HOST:FILE is)"
                    )));
                }
                remote.paths = paths
                    .into_iter()
                    .map(|p| String::from_utf8_lossy(&p).into_owned())
                    .collect();
            }
        }
        Mode::Server {
            sender: true,
            paths,
        } => {
            one(paths.len())?;
            if let ListAt::Here(names) = read_list(cli, file, None)? {
                let src = paths[0].as_os_str().as_bytes().to_vec();
                *paths = sources_for(&src, &names, relative)
                    .into_iter()
                    .map(|p| PathBuf::from(std::ffi::OsString::from_vec(p)))
                    .collect();
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::p;
    use super::super::Mode;

    #[test]
    fn shorthands_only_when_given() {
        // `-F` is a counted flag: its default must not add the rule.
        assert!(!p(&["-a", "s/", "d/"]).opts.filters.has_dir_merge());
        let f = p(&["-a", "-F", "s/", "d/"]);
        assert_eq!(f.filter_rules, [": /.rsync-filter"]);
        let ff = p(&["-FF", "--exclude=x", "s/", "d/"]);
        assert_eq!(
            ff.filter_rules,
            [": /.rsync-filter", "- .rsync-filter", "- x"]
        );
        let c = p(&["-a", "-C", "s/", "d/"]);
        assert!(c.opts.listing.cvs_exclude && c.opts.filters.has_dir_merge());
        assert!(c.filter_rules.is_empty());
    }

    #[test]
    fn files_from_implies_relative_and_no_recursion() {
        let dir = std::env::temp_dir().join(format!("arsync-ff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list");
        std::fs::write(&list, "a\n# c\nb/c\n").unwrap();
        let arg = format!("--files-from={}", list.display());
        let c = p(&["-a", &arg, "src", "dst/"]);
        assert!(!c.opts.recursive && c.opts.select.relative && c.opts.listing.dirs);
        match &c.mode {
            Mode::Local { sources, .. } => assert_eq!(
                sources,
                &[
                    std::path::PathBuf::from("src/./a"),
                    std::path::PathBuf::from("src/./b/c")
                ]
            ),
            m => panic!("{m:?}"),
        }
        assert!(p(&["-ar", &arg, "src", "dst/"]).opts.recursive);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
