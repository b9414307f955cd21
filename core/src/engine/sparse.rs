//! Issue 15, data: `-S`/`--sparse` — runs of zeros in a written file become holes. The
//! receiver calls [`punch_zero_blocks`] on a file once its data is all written, before it is
//! moved into place; how the data got there (copy, stream, delta) does not matter.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::FallocateFlags;

/// The unit of holes: a filesystem block on every filesystem we expect.
const BLOCK: u64 = 4096;

/// Blocks read at once.
const READ_BLOCKS: usize = 256;

/// Punch a hole over every run of whole `BLOCK`-aligned blocks of zeros in `file` (its size
/// and content stay the same). A filesystem without hole punching leaves the file as it is.
pub fn punch_zero_blocks(file: &File) -> io::Result<()> {
    let size = file.metadata()?.len();
    let mut buf = vec![0u8; READ_BLOCKS * BLOCK as usize];
    let mut run_start: Option<u64> = None;
    let mut off = 0u64;
    while off + BLOCK <= size {
        let want = ((size - off) / BLOCK).min(READ_BLOCKS as u64) * BLOCK;
        let chunk = &mut buf[..want as usize];
        file.read_exact_at(chunk, off)?;
        for block in chunk.chunks_exact(BLOCK as usize) {
            let zero = block.iter().all(|b| *b == 0);
            match (zero, run_start) {
                (true, None) => run_start = Some(off),
                (false, Some(start)) => {
                    if !punch(file, start, off - start)? {
                        return Ok(());
                    }
                    run_start = None;
                }
                _ => {}
            }
            off += BLOCK;
        }
    }
    if let Some(start) = run_start {
        punch(file, start, off - start)?;
    }
    Ok(())
}

/// Punch one hole; `false` when the filesystem cannot.
fn punch(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    match rustix::fs::fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    ) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_blocks_become_holes_and_content_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let mut body = vec![0u8; 1 << 20];
        body[5000] = 1;
        body.extend_from_slice(b"tail");
        f.write_all(&body).expect("write");
        f.sync_all().expect("sync");
        punch_zero_blocks(&f).expect("punch");
        assert_eq!(std::fs::read(&path).expect("read"), body);
        let blocks = f.metadata().expect("stat").blocks();
        // Two data blocks (the one with the 1, the tail) where the filesystem punches holes.
        assert!(blocks <= 64, "{blocks} blocks of 512 bytes");
    }
}
