//! When two modification times count as the same (`--modify-window`), and when `-u` leaves
//! a file alone because the receiver's copy is newer. Pure rules, no filesystem access.

/// rsync's `same_time`: with a window of 0 the seconds must match; a negative window compares
/// nanoseconds too; a positive one lets the seconds differ by up to that many.
pub(super) fn same_time(window: i32, a: (i64, u32), b: (i64, u32)) -> bool {
    match window {
        0 => a.0 == b.0,
        w if w < 0 => a == b,
        w => a.0.abs_diff(b.0) <= w as u64,
    }
}

/// `-u`: the receiver's regular file is kept when the sender's is not newer by at least the
/// window (rsync: `file->modtime - st_mtime < modify_window`; equal times are not "newer").
pub(super) fn newer_on_receiver(window: i32, sender_mtime: i64, receiver_mtime: i64) -> bool {
    sender_mtime.saturating_sub(receiver_mtime) < i64::from(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_rsync() {
        assert!(same_time(0, (10, 1), (10, 2)));
        assert!(!same_time(0, (10, 0), (11, 0)));
        assert!(!same_time(-1, (10, 1), (10, 2)));
        assert!(same_time(-1, (10, 2), (10, 2)));
        assert!(same_time(2, (10, 0), (12, 0)) && same_time(2, (12, 0), (10, 0)));
        assert!(!same_time(2, (10, 0), (13, 0)));
    }

    #[test]
    fn update_keeps_only_strictly_newer_copies() {
        assert!(newer_on_receiver(0, 10, 11));
        assert!(
            !newer_on_receiver(0, 10, 10),
            "equal times go to the quick check"
        );
        assert!(!newer_on_receiver(0, 11, 10));
        assert!(
            newer_on_receiver(2, 11, 10),
            "within the window counts as not newer"
        );
    }
}
