//! Issue 15, data: `--append` and `--append-verify` on the receiver. The generator leaves
//! files that are as long or longer here (see `generate`); a shorter one is received whole
//! into its staged file as any other, and [`keep_prefix`] then puts back what the receiver
//! had: with `--append` its bytes stand (rsync trusts them), with `--append-verify` they are
//! checked against the sender's and, when they differ, the file stays as the sender has it
//! (rsync's redo of a file that failed verification).

use super::*;

/// Bytes compared at once.
const CHUNK: usize = 1 << 20;

/// Put the receiver's old bytes of `name` back at the start of `staged` (`--append`), or
/// check them (`--append-verify`: the staged copy is the sender's whole file already).
pub(super) fn keep_prefix(
    ctx: &Ctx,
    dir: &OwnedFd,
    name: &[u8],
    staged: &File,
    path: &[u8],
) -> Result<(), CopyError> {
    use std::os::unix::fs::FileExt;
    if ctx.opts.write.append > 1 {
        return Ok(());
    }
    let opened = rustix::fs::openat(
        dir,
        std::ffi::OsStr::from_bytes(name),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    );
    let Ok(old) = opened.map(File::from) else {
        return Ok(());
    };
    let fail = |err: io::Error| failed("append to", &ctx.display(path), &err);
    let keep = old
        .metadata()
        .map_err(fail)?
        .len()
        .min(staged.metadata().map_err(fail)?.len());
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < keep {
        let n = (keep - off).min(CHUNK as u64) as usize;
        old.read_exact_at(&mut buf[..n], off).map_err(fail)?;
        staged.write_all_at(&buf[..n], off).map_err(fail)?;
        off += n as u64;
    }
    Ok(())
}
