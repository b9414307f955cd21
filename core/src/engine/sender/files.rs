//! Streaming one file's bytes (or a part of it), with the BLAKE3 of what was sent; a read
//! failure is reported to the receiver, not fatal to the session.

#[allow(unused_imports)]
use super::*;

/// Stream one file's bytes; a read failure is reported to the receiver, not fatal.
pub(super) fn send_file(
    ndx: u32,
    path: &std::path::Path,
    range: Option<(u64, u64)>,
    out: &mut FrameOut<'_>,
    stats: &Stats,
    limit: &RateLimit,
) -> Result<(), SyncError> {
    let mut f = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out.push(&Frame::Vanished { ndx }),
        Err(e) => {
            return out.push(&Frame::FileFailed {
                ndx,
                message: format!(
                    "send_files failed to open \"{}\": {}",
                    path.display(),
                    os_error(&e)
                ),
            })
        }
    };
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    // A part of the file: from its offset, at most its length.
    let (size, mut left) = match range {
        Some((offset, len)) => {
            if offset + len > size {
                return out.push(&Frame::FileFailed {
                    ndx,
                    message: format!("\"{}\" shrank while it was being sent", path.display()),
                });
            }
            io::Seek::seek(&mut f, io::SeekFrom::Start(offset)).map_err(SyncError::StreamIo)?;
            (len, len)
        }
        None => (size, u64::MAX),
    };
    out.push(&Frame::DataBegin { ndx, size })?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; MAX_DATA_CHUNK.min(limit.step(MAX_DATA_CHUNK as u64) as usize)];
    loop {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            break;
        }
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return out.push(&Frame::FileFailed {
                    ndx,
                    message: format!(
                        "read errors mapping \"{}\": {}",
                        path.display(),
                        os_error(&e)
                    ),
                })
            }
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
        crate::liveness::bump();
        out.push(&Frame::Data {
            ndx,
            bytes: buf[..n].to_vec(),
        })?;
        stats.literal.fetch_add(n as u64, Relaxed);
        let wait = limit.account(n as u64);
        if !wait.is_zero() {
            out.flush()?;
            std::thread::sleep(wait);
        }
    }
    out.push(&Frame::DataEnd {
        ndx,
        hash: *hasher.finalize().as_bytes(),
    })
}
