//! Issue 18, the last time targets: a read-only mapping of a stretch of an open file, so a
//! large file is cut and hashed straight from the page cache instead of first being copied
//! into a buffer by `read` (that copy was a sixth of a cold delta update's CPU on each side).
//! Owns the mapping and its guard against `SIGBUS`; not what is done with the bytes.
//!
//! A mapped file that shrinks under the mapping raises `SIGBUS` on the next touch of a page
//! past its new end, which would kill the process. The guard: while a stretch is mapped its
//! address range is registered in a fixed table; a handler for `SIGBUS` that finds the
//! faulting address in a registered range maps a page of zeros over the faulting page, marks
//! the range torn, and returns (the read then sees zeros). The owner checks
//! [`Mapped::torn`] once done with the bytes and throws away what it computed from them —
//! the file changed while it was read, as a `read` that came up short would have told it. A
//! fault anywhere else puts back the handler that was there before (the standard library's
//! stack-overflow report, or the default) and returns, so the fault repeats and is handled as
//! if this guard did not exist. When the table is full or the handler cannot be installed,
//! [`Mapped::map`] declines and the caller reads instead.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// One registered mapping: `[start, end)`; `start` is 0 when the slot is free and `usize::MAX`
/// while it is being claimed or released (no address matches then).
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    torn: AtomicBool,
}

const SLOTS: usize = 64;
const FREE: usize = 0;
const BUSY: usize = usize::MAX;

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(FREE),
        end: AtomicUsize::new(0),
        torn: AtomicBool::new(false),
    }
}; SLOTS];

static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// The `SIGBUS` disposition found when the guard was installed; `None` if it could not be.
static PREVIOUS: OnceLock<Option<libc::sigaction>> = OnceLock::new();

extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for slot in &TABLE {
        let start = slot.start.load(Ordering::Acquire);
        if start == FREE
            || start == BUSY
            || addr < start
            || addr >= slot.end.load(Ordering::Acquire)
        {
            continue;
        }
        // SAFETY: the page lies inside a mapping this module made and still owns (the slot is
        // registered until just before its `munmap`); replacing it with zeros touches nothing
        // else. mmap is async-signal-safe.
        let zeros = unsafe {
            libc::mmap(
                (addr & !(page - 1)) as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if zeros != libc::MAP_FAILED {
            slot.torn.store(true, Ordering::Release);
            return;
        }
    }
    // Not ours: the previous disposition takes the repeated fault.
    if let Some(Some(previous)) = PREVIOUS.get() {
        // SAFETY: restoring a disposition read by `sigaction` itself; async-signal-safe.
        unsafe { libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut()) };
    }
}

/// Install the handler once; false if it could not be.
fn guard_installed() -> bool {
    PREVIOUS
        .get_or_init(|| {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if page <= 0 || (page as usize).count_ones() != 1 {
                return None;
            }
            PAGE.store(page as usize, Ordering::Relaxed);
            // SAFETY: a zeroed sigaction is a valid value to fill in; the handler only does
            // async-signal-safe things (atomics, mmap, sigaction).
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_sigbus as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                (libc::sigaction(libc::SIGBUS, &new, &mut old) == 0).then_some(old)
            }
        })
        .is_some()
}

/// A stretch of a file, mapped read-only (see the module docs).
pub(crate) struct Mapped {
    base: *mut libc::c_void,
    map_len: usize,
    /// Bytes before the stretch in the mapping (its offset rounded down to a page).
    lead: usize,
    len: usize,
    slot: &'static Slot,
}

impl Mapped {
    /// Map `len` bytes of `f` from `offset` (at least one byte), the pages read in now. `None`:
    /// no guard slot is free or the guard is not installed — read instead.
    pub(crate) fn map(f: &std::fs::File, offset: u64, len: usize) -> io::Result<Option<Mapped>> {
        if len == 0 || !guard_installed() {
            return Ok(None);
        }
        let Some(slot) = TABLE.iter().find(|s| {
            s.start
                .compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            return Ok(None);
        };
        let page = PAGE.load(Ordering::Relaxed) as u64;
        let lead = (offset % page) as usize;
        let map_len = len + lead;
        let at = libc::off_t::try_from(offset - lead as u64)
            .map_err(|_| io::Error::other("offset out of range"))?;
        // SAFETY: a fresh read-only mapping of an open descriptor; nothing else is at the
        // address the kernel picks.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                f.as_raw_fd(),
                at,
            )
        };
        if base == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            slot.start.store(FREE, Ordering::Release);
            return Err(err);
        }
        slot.torn.store(false, Ordering::Relaxed);
        slot.end.store(base as usize + map_len, Ordering::Release);
        slot.start.store(base as usize, Ordering::Release);
        Ok(Some(Mapped {
            base,
            map_len,
            lead,
            len,
            slot,
        }))
    }

    /// The stretch's bytes as the file held them when touched (zeros past a new end if the
    /// file shrank meanwhile: see [`Mapped::torn`]).
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `map_len` readable bytes until dropped; a page past the
        // file's end is replaced by zeros, never unmapped, while the slot is registered.
        unsafe { std::slice::from_raw_parts((self.base as *const u8).add(self.lead), self.len) }
    }

    /// Whether a touched page lay past the file's end (it shrank while mapped): what was
    /// computed from [`Mapped::bytes`] is not the file's.
    pub(crate) fn torn(&self) -> bool {
        self.slot.torn.load(Ordering::Acquire)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        self.slot.start.store(BUSY, Ordering::Release);
        // SAFETY: unmapping what `map` mapped; no borrow of `bytes` outlives `self`.
        unsafe { libc::munmap(self.base, self.map_len) };
        self.slot.end.store(0, Ordering::Relaxed);
        self.slot.start.store(FREE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_mapped_stretch_holds_the_files_bytes_at_any_offset() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        for (at, len) in [
            (0usize, 100_000usize),
            (1, 5000),
            (4095, 4097),
            (60_001, 39_999),
        ] {
            let m = Mapped::map(&f, at as u64, len)
                .unwrap()
                .expect("a guard slot");
            assert_eq!(m.bytes(), &data[at..at + len], "at {at}");
            assert!(!m.torn());
        }
    }

    /// A file cut short under its mapping: the pages past the new end read as zeros and the
    /// mapping says it is torn, where an unguarded read would have killed the process.
    #[test]
    fn a_file_that_shrinks_under_its_mapping_is_torn_not_fatal() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![0xA5u8; 64 << 10]).unwrap();
        let m = Mapped::map(&f, 0, 64 << 10).unwrap().expect("a guard slot");
        f.set_len(8 << 10).unwrap();
        let bytes = m.bytes();
        assert_eq!(bytes[100], 0xA5);
        let past: u64 = bytes[32 << 10..40 << 10]
            .iter()
            .map(|&b| u64::from(b))
            .sum();
        assert_eq!(past, 0);
        assert!(m.torn());
        drop(m);
        // The slot is free again, and a new mapping of the file is whole.
        let again = Mapped::map(&f, 0, 8 << 10).unwrap().expect("a guard slot");
        assert!(again.bytes().iter().all(|&b| b == 0xA5) && !again.torn());
    }
}
