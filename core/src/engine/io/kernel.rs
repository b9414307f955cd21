//! Moving bytes with plain system calls on a blocking thread: `copy_file_range` (the data stays
//! in the kernel; filesystems that can reflink do), falling back to `read`/`write` where the
//! kernel cannot, in parallel ranges for very large files; and starting the writeback of what
//! was just written ([`start_writeback`]). Does not open or name files.

use std::fs::File;
use std::io::{self, Read, Write};

use rustix::io::Errno;

use super::job::RateLimit;
use crate::engine::options::cores;

/// Files at least this large are copied as several ranges at once.
const PARALLEL_COPY_MIN: u64 = 256 << 20;

fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP
    )
}

/// Copy the `len` bytes `src` had when it was opened to `dst`, in the kernel where possible
/// (`copy_file_range`), with plain read/write where not. A large file without a rate limit or
/// progress display is split into ranges copied on parallel threads.
pub fn copy_blocking(
    src: &File,
    dst: &File,
    len: u64,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<u64> {
    let chunked = limit.is_limited() || progress.is_some();
    let parts = cores().min(4) as u64;
    if !chunked && len >= PARALLEL_COPY_MIN && parts > 1 {
        match copy_ranges(src, dst, len, parts) {
            Ok(n) if n == len => return Ok(n),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "source changed size while being copied ({n} of {len} bytes)"
                )))
            }
            Err(e)
                if e.raw_os_error()
                    .is_some_and(|c| unsupported(Errno::from_raw_os_error(c))) => {}
            Err(e) => return Err(e),
        }
    }
    let step = if chunked {
        limit.step(8 << 20)
    } else {
        1 << 30
    };
    // Stop at the size seen when the file was opened (one call fewer per file than reading to
    // end-of-file); an empty file costs one call that returns 0.
    let goal = len.max(1);
    let mut done = 0u64;
    while done < goal {
        let want = (goal - done).min(step) as usize;
        match rustix::fs::copy_file_range(src, None, dst, None, want) {
            Ok(0) => break,
            Ok(n) => {
                done += n as u64;
                crate::liveness::bump();
                after_step(n as u64, done, limit, progress);
            }
            // Not supported between these files (or at all): plain read/write.
            Err(e) if done == 0 && unsupported(e) => {
                return copy_read_write(src, dst, limit, progress);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Copy `[start, end)` of `src` to the same range of `dst`.
fn copy_range(src: &File, dst: &File, start: u64, end: u64) -> io::Result<u64> {
    copy_range_at(src, start, dst, start, end - start)
}

/// Issue 18, cheap deltas: start writing `len` bytes at `off` of `f` out to disk, now,
/// without waiting for it (`POSIX_FADV_DONTNEED` starts the writeback of dirty pages and drops
/// only pages already clean, which pages just written are not). A file renamed over an
/// existing one is written out whole by ext4 first (`auto_da_alloc`), on the thread that
/// renames, at the end of its transfer; what was started as it was written is not waited
/// for then. Best effort: a failure changes nothing but the timing.
pub fn start_writeback(f: &File, off: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        f,
        off,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

/// Copy `len` bytes at `src_off` of `src` to `dst_off` of `dst`, in the kernel where possible,
/// with positioned reads and writes where not; returns the bytes copied (fewer only at the
/// source's end of file). Neither file's position moves.
pub fn copy_range_at(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out) = (src_off, dst_off);
    let end = src_off + len;
    while off_in < end {
        let want = (end - off_in).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(_) => crate::liveness::bump(),
            Err(Errno::INTR) => continue,
            Err(e) if unsupported(e) => {
                let mut buf = vec![0u8; (end - off_in).min(1 << 20) as usize];
                while off_in < end {
                    let n = ((end - off_in) as usize).min(buf.len());
                    let got = src.read_at(&mut buf[..n], off_in)?;
                    if got == 0 {
                        return Ok(off_in - src_off);
                    }
                    dst.write_all_at(&buf[..got], off_out)?;
                    off_in += got as u64;
                    off_out += got as u64;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(off_in - src_off)
}

/// Copy `len` bytes as `parts` ranges on scoped threads.
fn copy_ranges(src: &File, dst: &File, len: u64, parts: u64) -> io::Result<u64> {
    let chunk = len.div_ceil(parts);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..parts)
            .map(|i| {
                let (start, end) = (i * chunk, ((i + 1) * chunk).min(len));
                s.spawn(move || copy_range(src, dst, start, end))
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h
                .join()
                .map_err(|_| io::Error::other("copy thread panicked"))??;
        }
        Ok(total)
    })
}

fn after_step(
    n: u64,
    done: u64,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) {
    if let Some(p) = progress {
        p(done);
    }
    let wait = limit.account(n);
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

fn copy_read_write(
    mut src: &File,
    mut dst: &File,
    limit: &RateLimit,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; limit.step(1 << 20) as usize];
    let mut done = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        done += n as u64;
        after_step(n as u64, done, limit, progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::io::ProgressFn;
    use std::io::{Seek, SeekFrom};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn parallel_ranges_copy_every_byte() {
        let mut src = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 12345u32).map(|i| (i % 253) as u8).collect();
        src.write_all(&data).unwrap();
        let mut dst = tempfile::tempfile().unwrap();
        let n = copy_ranges(&src, &dst, data.len() as u64, 3).unwrap();
        assert_eq!(n, data.len() as u64);
        let mut back = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut back).unwrap();
        assert!(back == data, "ranges copied wrong bytes");
    }

    #[test]
    fn copies_and_limits() {
        let mut src = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        src.write_all(&data).unwrap();
        src.seek(SeekFrom::Start(0)).unwrap();
        let mut dst = tempfile::tempfile().unwrap();
        let limit = RateLimit::new(Some(1_000_000));
        let started = Instant::now();
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let progress: ProgressFn = Arc::new(move |d| s2.store(d, Relaxed));
        let n = copy_blocking(&src, &dst, data.len() as u64, &limit, Some(&*progress)).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(seen.load(Relaxed), data.len() as u64);
        // 300 kB at 1 MB/s: at least ~0.2 s.
        assert!(started.elapsed() >= Duration::from_millis(200));
        let mut back = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
