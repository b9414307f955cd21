//! The whole file list from the sender (`FileEntries` … `FileListEnd`, checked against the list
//! rules) and where it lands: the destination directory (created if missing) or a single
//! file's new name. The pruned list of the directory-tree exchange is `treelist`'s.

#[allow(unused_imports)]
use super::*;
use crate::flist::OwnerTable;
use crate::transport::LocalShelf;

/// The list, and the names of missing source arguments to delete (`--delete-missing-args`).
///
/// Issue 18: with a `shelf` (a sender in this process, [`LocalShelf`]), the list is the
/// sender's own, taken from the shelf when the list's frames begin; its entries' frames are
/// still read, counted and checked, but not kept — a local copy holds one list, not two.
pub(super) async fn receive_list(
    source: &mut FrameSource,
    stats: &Stats,
    delete_missing_args: bool,
    shelf: Option<&LocalShelf>,
) -> Result<(Arc<FileList>, Vec<Vec<u8>>), SyncError> {
    let started = Instant::now();
    let before = stats.bytes_received.load(Relaxed);
    let mut list = FileList::default();
    let mut missing: Vec<Vec<u8>> = Vec::new();
    let mut owners = OwnerTable::default();
    // The sender's list, when it shares it; looked for once, at the list's first frame (the
    // sender puts it on the shelf before it sends any).
    let mut shared: Option<Arc<FileList>> = None;
    let mut looked = false;
    let mut received = 0usize;
    loop {
        let frame = source.expect("file list").await?;
        if !looked {
            looked = true;
            shared = shelf.and_then(LocalShelf::take);
        }
        match frame {
            Frame::FileEntries(batch) => {
                let n = batch.len();
                if received + n > MAX_FILES as usize {
                    return Err(DecodeError::TooLarge {
                        what: "file list",
                        got: (received + n) as u64,
                        max: MAX_FILES as u64,
                    }
                    .into());
                }
                match &shared {
                    // The frames say what the shared list holds (checked in debug builds).
                    Some(l) => debug_assert!(
                        batch
                            .iter()
                            .zip(&l.entries[received.min(l.entries.len())..])
                            .all(|(got, ours)| got == ours),
                        "the shared list differs from its frames"
                    ),
                    None => list.entries.extend(batch.into_iter().map(|mut e| {
                        owners.share(&mut e);
                        e
                    })),
                }
                received += n;
            }
            // Issue 15, select: names the destination is to lose.
            Frame::MissingArgs(names) => {
                accept_missing(delete_missing_args, missing.len(), names.len())?;
                missing.extend(names);
            }
            // The sender could not read some entries: no deletions (see `Stats`).
            Frame::Totals(c) if received == 0 => stats.apply_sender_errors(&c),
            Frame::FileListEnd { count } => {
                let held = shared.as_ref().map_or(received, |l| l.entries.len());
                if count as usize != received || held != received {
                    return Err(DecodeError::invalid(
                        "file list end",
                        format!("count {count} but {received} entries received, {held} held"),
                    )
                    .into());
                }
                break;
            }
            other => {
                return Err(DecodeError::invalid(
                    "file list",
                    format!("unexpected frame {other:?}"),
                )
                .into())
            }
        }
    }
    let list = match shared {
        Some(l) => l,
        None => {
            // Grown by doubling: the unused half goes back (a large buffer shrinks in place).
            list.entries.shrink_to_fit();
            Arc::new(list)
        }
    };
    validate_list(&list).map_err(|e| DecodeError::invalid("file list", e))?;
    for e in &list.entries {
        stats.count_listed(e);
    }
    stats
        .flist_size
        .fetch_add(stats.bytes_received.load(Relaxed) - before, Relaxed);
    stats
        .flist_xfer_us
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    Ok((list, missing))
}

/// Issue 15: `--munge-links` stores symlink targets behind rsync's prefix. Issue 18: a list
/// shared with a local sender is copied first, so that the sender's keeps the real targets
/// (a local receiver is never asked to munge: rsync does not tell its server); a list without
/// symlinks is left as it is.
pub(super) fn munge_links(list: &mut Arc<FileList>) {
    if list.entries.iter().any(|e| e.kind == FileKind::Symlink) {
        crate::engine::links::munge_list(Arc::make_mut(list));
    }
}

/// Where a single file sent to `dest` lands when `dest` is not a directory (nor ends in `/`):
/// `dest`'s parent directory (`.` if none) and its last name.
fn landing(dest: &Path) -> Option<(PathBuf, Vec<u8>)> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((parent, dest.file_name()?.as_bytes().to_vec()))
}

/// Issue 19, resume: the directory and name a list of one file (`name`, no `/` in it) lands
/// at in `dest` — `dest` and `name` itself, or, for a `dest` that is not a directory, its
/// parent and last name ([`open_destination`]'s rule) — so that the old version or the partial
/// file found there is the basis, whatever the name the sender gave.
pub(crate) fn single_file_place(dest: &Path, name: &[u8]) -> Option<(PathBuf, Vec<u8>)> {
    let slash = dest.as_os_str().as_bytes().ends_with(b"/");
    if name.contains(&b'/') || slash || dest.is_dir() {
        return Some((dest.to_path_buf(), name.to_vec()));
    }
    landing(dest)
}

/// Decide where the list lands: a directory (created if missing), or — for a single file to
/// a path that is not a directory — that file name. The names of missing arguments
/// (`--delete-missing-args`) count as files, as rsync's mode-0 entries do.
pub(super) fn open_destination(
    job: &ReceiverJob,
    sink: &dyn EventSink,
    list: &mut Arc<FileList>,
    missing: &mut [Vec<u8>],
) -> Result<(Option<Arc<DestRoot>>, bool), SyncError> {
    let dest = &job.dest;
    let slash = dest.as_os_str().as_bytes().ends_with(b"/");
    let single = match (list.entries.as_slice(), &*missing) {
        ([e], []) if e.kind != FileKind::Dir => Some(e.path.as_slice()),
        ([], [name]) => Some(name.as_slice()),
        _ => None,
    }
    .is_some_and(|path| !path.contains(&b'/'));
    if single && !slash && !dest.is_dir() {
        let (parent, name) = landing(dest)
            .ok_or_else(|| SyncError::Usage(format!("bad destination {}", dest.display())))?;
        // Issue 18: a list of one entry shared with a local sender is copied to be renamed
        // (the sender still reads its file under the old name).
        match (list.entries.len(), &mut *missing) {
            (1, []) => Arc::make_mut(list).entries[0].path = name.into(),
            (0, [missing]) => *missing = name,
            _ => {}
        }
        // Issue 15, write: `--mkpath` creates the missing directories above the file.
        if job.opts.write.mkpath && !job.opts.dry_run {
            make_path(&parent, sink)?;
        }
        let root = DestRoot::open(&parent).map_err(|e| SyncError::Select {
            what: "change_dir#3",
            path: parent.clone(),
            source: e,
        })?;
        return Ok((Some(Arc::new(root)), false));
    }
    if list.entries.is_empty() && missing.is_empty() {
        return Ok((None, false));
    }
    let mut created = false;
    match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(SyncError::Select {
                what: "destination is not a directory:",
                path: dest.clone(),
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if job.opts.dry_run {
                sink.event(Event::Info {
                    message: format!(
                        "created directory {}",
                        dest.display().to_string().trim_end_matches('/')
                    ),
                });
                return Ok((None, true));
            }
            if job.opts.write.mkpath {
                // Issue 15, write: the whole path, said as rsync says it; the destination
                // then counts as one that was there.
                make_path(dest, sink)?;
            } else {
                std::fs::create_dir(dest).map_err(|e| SyncError::FileIo {
                    what: "mkdir",
                    path: dest.clone(),
                    source: e,
                })?;
                created = true;
                sink.event(Event::Info {
                    message: format!(
                        "created directory {}",
                        dest.display().to_string().trim_end_matches('/')
                    ),
                });
            }
        }
        Err(e) => {
            return Err(SyncError::Select {
                what: "change_dir#3",
                path: dest.clone(),
                source: e,
            })
        }
    }
    let root = DestRoot::open(dest).map_err(|e| SyncError::Select {
        what: "change_dir#3",
        path: dest.clone(),
        source: e,
    })?;
    let root = root.following_dirlinks(job.opts.symlinks.keep_dirlinks);
    Ok((Some(Arc::new(root)), created))
}

// Issue 15, write:
/// `--mkpath`: create `dir` and every missing directory above it, saying how many as rsync
/// does (`created 2 directories for a/b`); nothing when `dir` exists.
fn make_path(dir: &Path, sink: &dyn EventSink) -> Result<(), SyncError> {
    let missing = dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| p.symlink_metadata().is_err())
        .count();
    if missing == 0 {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| SyncError::FileIo {
        what: "mkdir",
        path: dir.to_path_buf(),
        source: e,
    })?;
    sink.event(Event::Info {
        message: format!(
            "created {missing} director{} for {}",
            if missing == 1 { "y" } else { "ies" },
            dir.display().to_string().trim_end_matches('/')
        ),
    });
    Ok(())
}

/// Issue 19, hostile peers: missing arguments are names the destination is to lose, so they
/// are taken only by a receiver run with `--delete-missing-args` (else any sender could delete
/// any entry of the destination), and at most `MAX_FILES` of them.
fn accept_missing(delete_missing_args: bool, have: usize, more: usize) -> Result<(), DecodeError> {
    if !delete_missing_args {
        return Err(DecodeError::invalid(
            "missing arguments",
            "sent to a receiver without --delete-missing-args",
        ));
    }
    if have + more > MAX_FILES as usize {
        return Err(DecodeError::TooLarge {
            what: "missing arguments",
            got: (have + more) as u64,
            max: MAX_FILES as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::ctx::testing::*;
    use super::*;

    /// Issue 19, hostile peers: missing arguments only with `--delete-missing-args`, bounded.
    #[test]
    fn missing_arguments_only_when_asked_for_and_bounded() {
        assert!(accept_missing(false, 0, 1).is_err());
        assert!(accept_missing(true, 0, 1).is_ok());
        let max = MAX_FILES as usize;
        assert!(accept_missing(true, max - 1, 1).is_ok());
        assert!(accept_missing(true, max, 1).is_err());
    }

    /// Issue 19, resume: a single file's basis is looked up where it lands.
    #[test]
    fn a_single_file_is_looked_up_where_it_lands() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("dst");
        std::fs::create_dir(&dir).unwrap();
        let place = |dest: &Path, name: &[u8]| single_file_place(dest, name).unwrap();
        assert_eq!(place(&dir, b"big"), (dir.clone(), b"big".to_vec()));
        let new = t.path().join("new");
        assert_eq!(
            place(&new, b"big"),
            (t.path().to_path_buf(), b"new".to_vec())
        );
        let slash = PathBuf::from(format!("{}/", new.display()));
        assert_eq!(place(&slash, b"big"), (slash.clone(), b"big".to_vec()));
        assert_eq!(place(&new, b"d/big"), (new.clone(), b"d/big".to_vec()));
        assert_eq!(
            place(Path::new("file"), b"big"),
            (PathBuf::from("."), b"file".to_vec())
        );
    }

    /// The frames of `entries` as a sender sends them, read back.
    fn frames_of(entries: &[FileEntry]) -> FrameSource {
        let mut wire = Vec::new();
        Frame::FileEntries(entries.to_vec()).encode(&mut wire);
        Frame::FileListEnd {
            count: entries.len() as u32,
        }
        .encode(&mut wire);
        FrameSource::new(
            Box::new(std::io::Cursor::new(wire)),
            Arc::new(Stats::default()),
        )
    }

    /// Issue 18: with a local sender's list on the shelf, the receiver's list is that list —
    /// the same allocation, its frames read but not kept; without one, a decoded copy; a
    /// shelved list the frames do not match is refused.
    #[tokio::test]
    async fn a_local_senders_list_is_taken_not_decoded_again() {
        let sent = Arc::new(FileList {
            entries: vec![
                entry(".", FileKind::Dir, 0, 0o755),
                entry("f", FileKind::File, 3, 0o644),
            ],
        });
        let stats = Stats::default();
        let shelf = LocalShelf::default();
        shelf.put(sent.clone());
        let mut frames = frames_of(&sent.entries);
        let (got, _) = receive_list(&mut frames, &stats, false, Some(&shelf))
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(&got, &sent),
            "the receiver decoded its own list"
        );
        assert!(shelf.handed_over() && shelf.take().is_none());
        assert_eq!(stats.files.total(), 2);

        let empty = LocalShelf::default();
        let mut frames = frames_of(&sent.entries);
        let (got, _) = receive_list(&mut frames, &stats, false, Some(&empty))
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&got, &sent) && *got == *sent);
        assert!(!empty.handed_over());

        let short = LocalShelf::default();
        short.put(Arc::new(FileList {
            entries: sent.entries[..1].to_vec(),
        }));
        let mut frames = frames_of(&sent.entries);
        assert!(receive_list(&mut frames, &stats, false, Some(&short))
            .await
            .is_err());
    }

    /// Issue 18: munging a shared list changes the receiver's copy, not the sender's; a list
    /// with no symlink is not copied.
    #[test]
    fn munging_a_shared_list_leaves_the_senders_alone() {
        let senders = Arc::new(FileList {
            entries: vec![
                entry(".", FileKind::Dir, 0, 0o755),
                entry("l", FileKind::Symlink, 0, 0o777),
            ],
        });
        let mut ours = senders.clone();
        munge_links(&mut ours);
        assert_eq!(senders.entries[1].link_target(), b"target");
        assert_eq!(ours.entries[1].link_target(), b"/rsyncd-munged/target");
        let plain = Arc::new(FileList {
            entries: vec![entry("f", FileKind::File, 1, 0o644)],
        });
        let mut ours = plain.clone();
        munge_links(&mut ours);
        assert!(Arc::ptr_eq(&ours, &plain));
    }

    fn job(dest: PathBuf) -> ReceiverJob {
        ReceiverJob {
            dest,
            opts: SyncOptions::archive(),
            stats: Arc::new(Stats::default()),
            sink: Arc::new(crate::engine::NullSink),
        }
    }

    /// One file to a path that is not a directory lands under that name; anything else lands
    /// in a directory, created if missing (and said so), refused if the path is a file.
    #[test]
    fn the_list_lands_where_rsync_puts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = Arc::new(FileList {
            entries: vec![entry("f", FileKind::File, 1, 0o644)],
        });
        // Issue 18: the list shared with a local sender keeps the sender's name.
        let senders = one.clone();
        let (root, created) = open_destination(
            &job(dir.path().join("renamed")),
            &crate::engine::NullSink,
            &mut one,
            &mut [],
        )
        .unwrap();
        assert_eq!(one.entries[0].path, b"renamed");
        assert_eq!(senders.entries[0].path, b"f");
        assert!(!created && root.unwrap().path() == dir.path());
        let mut tree = Arc::new(FileList {
            entries: vec![
                entry(".", FileKind::Dir, 0, 0o755),
                entry("f", FileKind::File, 1, 0o644),
            ],
        });
        let senders = tree.clone();
        let (root, created) = open_destination(
            &job(dir.path().join("new-dir")),
            &crate::engine::NullSink,
            &mut tree,
            &mut [],
        )
        .unwrap();
        assert!(created && dir.path().join("new-dir").is_dir());
        // A tree lands as it is: the shared list is not copied.
        assert!(Arc::ptr_eq(&tree, &senders));
        assert_eq!(root.unwrap().path(), dir.path().join("new-dir"));
        std::fs::write(dir.path().join("a-file"), b"x").unwrap();
        let err = open_destination(
            &job(dir.path().join("a-file")),
            &crate::engine::NullSink,
            &mut tree,
            &mut [],
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::FileSelect, "{err}");
        // A missing argument alone is a file name too (rsync's mode-0 entry): to a path that
        // is not a directory it is that name; to a new `DIR/` the directory is made.
        let mut empty = Arc::new(FileList::default());
        let mut missing = vec![b"gone".to_vec()];
        let (root, _) = open_destination(
            &job(dir.path().join("a-file")),
            &crate::engine::NullSink,
            &mut empty,
            &mut missing,
        )
        .unwrap();
        assert_eq!(missing[0], b"a-file");
        assert_eq!(root.unwrap().path(), dir.path());
        let new_dir = format!("{}/made/", dir.path().display());
        let (root, created) = open_destination(
            &job(PathBuf::from(&new_dir)),
            &crate::engine::NullSink,
            &mut empty,
            &mut missing,
        )
        .unwrap();
        assert!(created && root.is_some() && dir.path().join("made").is_dir());
        // Nothing at all: nowhere to land.
        let (root, _) = open_destination(
            &job(dir.path().join("x")),
            &crate::engine::NullSink,
            &mut empty,
            &mut [],
        )
        .unwrap();
        assert!(root.is_none());
    }
}
