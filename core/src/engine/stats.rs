//! Counters of a run and rsync's `--stats` report.
//!
//! [`Stats`] is shared by the roles' tasks (atomic counters); [`Stats::report`] renders the
//! lines rsync prints, in rsync's wording and number format, so scripts that read rsync's
//! output read ours.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::flist::FileKind;

/// Counts per kind of file, in rsync's categories.
#[derive(Debug, Default)]
pub struct KindCounts {
    reg: AtomicU64,
    dir: AtomicU64,
    link: AtomicU64,
    dev: AtomicU64,
    special: AtomicU64,
}

impl KindCounts {
    /// Count one of `kind`.
    pub fn add(&self, kind: FileKind) {
        let c = match kind {
            FileKind::File => &self.reg,
            FileKind::Dir => &self.dir,
            FileKind::Symlink => &self.link,
            FileKind::CharDev | FileKind::BlockDev => &self.dev,
            FileKind::Fifo | FileKind::Socket => &self.special,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Total.
    pub fn total(&self) -> u64 {
        self.parts().iter().map(|(_, n)| n).sum()
    }

    /// Regular files.
    pub fn regular(&self) -> u64 {
        self.reg.load(Relaxed)
    }

    fn parts(&self) -> [(&'static str, u64); 5] {
        [
            ("reg", self.reg.load(Relaxed)),
            ("dir", self.dir.load(Relaxed)),
            ("link", self.link.load(Relaxed)),
            ("dev", self.dev.load(Relaxed)),
            ("special", self.special.load(Relaxed)),
        ]
    }

    /// `4 (reg: 2, dir: 2)` as rsync prints it.
    fn describe(&self) -> String {
        let total = self.total();
        let parts: Vec<String> = self
            .parts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}: {}", commas(*n)))
            .collect();
        if parts.is_empty() {
            commas(total)
        } else {
            format!("{} ({})", commas(total), parts.join(", "))
        }
    }
}

/// A run's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Entries in the file list.
    pub files: KindCounts,
    /// Entries created in the destination.
    pub created: KindCounts,
    /// Entries deleted from the destination.
    pub deleted: KindCounts,
    /// Regular files whose data was transferred.
    pub transferred: AtomicU64,
    /// Sum of regular file sizes in the list.
    pub total_size: AtomicU64,
    /// Sum of sizes of the transferred files.
    pub transferred_size: AtomicU64,
    /// File data sent as literal bytes (or copied by path).
    pub literal: AtomicU64,
    /// File data the receiver copied by path from a source on the same filesystem (it did not
    /// cross the stream, but it is what the sender sent).
    pub local_copied: AtomicU64,
    /// File data reused from the destination.
    pub matched: AtomicU64,
    /// Bytes of the encoded file list.
    pub flist_size: AtomicU64,
    /// Microseconds spent building the file list.
    pub flist_build_us: AtomicU64,
    /// Microseconds spent transferring the file list.
    pub flist_xfer_us: AtomicU64,
    /// Bytes this side wrote to the peer.
    pub bytes_sent: AtomicU64,
    /// Bytes this side read from the peer.
    pub bytes_received: AtomicU64,
    /// Files that failed (exit 23).
    pub errors: AtomicU64,
    /// Source files that vanished (exit 24).
    pub vanished: AtomicU64,
    /// Deletions skipped because of `--max-delete` (exit 25).
    pub skipped_deletes: AtomicU64,
    /// Entries the sender could not read while listing (its I/O errors, from its `Totals`):
    /// a receiver then deletes nothing, as rsync's (`IO error encountered -- skipping file
    /// deletion`).
    pub sender_read_errors: AtomicU64,
    // Issue 16, remote CPU:
    /// Between arsyncs: the peer's chunking speed from its hello's `cpu`, bytes per second
    /// (0: it did not say).
    pub peer_cpu: AtomicU64,
    // Issue 18, chunk cache:
    /// Bytes of files read and hashed to index them for the delta exchange (the sender's
    /// sources, the receiver's old versions).
    pub index_read: AtomicU64,
    /// Bytes of files indexed from the chunk-index cache without being read.
    pub index_cached: AtomicU64,
    // Issue 18, scattered deltas:
    /// Delta exchanges' wire bytes (frames with their headers), as this side sent or read
    /// them: the tree's `Nodes`.
    pub delta_tree: AtomicU64,
    /// … the receiver's asks: `Expand`, `Fetch` and `GapSums`.
    pub delta_asks: AtomicU64,
    /// … the chunks' `Data` and `GapData` (counted by the sender).
    pub delta_data: AtomicU64,
}

/// `1234567` → `1,234,567`, as rsync 3.1+ prints numbers.
pub fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `%.2f` with thousands separators, as rsync prints rates.
fn commas_f(x: f64) -> String {
    let whole = x.trunc() as u64;
    let frac = ((x - x.trunc()) * 100.0).round() as u64;
    let (whole, frac) = if frac >= 100 {
        (whole + 1, 0)
    } else {
        (whole, frac)
    };
    format!("{}.{frac:02}", commas(whole))
}

impl KindCounts {
    pub(crate) fn cells(&self) -> [&AtomicU64; 5] {
        [&self.reg, &self.dir, &self.link, &self.dev, &self.special]
    }

    fn copy_from(&self, other: &KindCounts) {
        for (dst, src) in [
            (&self.reg, &other.reg),
            (&self.dir, &other.dir),
            (&self.link, &other.link),
            (&self.dev, &other.dev),
            (&self.special, &other.special),
        ] {
            dst.store(src.load(Relaxed), Relaxed);
        }
    }
}

impl Stats {
    /// Count a listed entry in the list's totals (`--stats`' "Number of files" and "Total
    /// file size": a file's size, a symlink's target length, as rsync counts).
    pub fn count_listed(&self, e: &crate::flist::FileEntry) {
        self.files.add(e.kind);
        let counted = match e.kind {
            crate::flist::FileKind::File => e.size,
            crate::flist::FileKind::Symlink => e.link_target().len() as u64,
            _ => 0,
        };
        self.total_size
            .fetch_add(counted, std::sync::atomic::Ordering::Relaxed);
    }

    /// One run's view when both roles ran here: what was listed from the sender, what was
    /// done from the receiver, and the wire bytes as the sender saw them (rsync reports a
    /// local or push run from the sending side).
    pub fn combine(sender: &Stats, receiver: &Stats) -> Stats {
        let s = Stats::default();
        let l = |a: &AtomicU64| a.load(Relaxed);
        s.files.copy_from(&sender.files);
        s.created.copy_from(&receiver.created);
        s.deleted.copy_from(&receiver.deleted);
        for (dst, src) in [
            (&s.transferred, &receiver.transferred),
            (&s.total_size, &sender.total_size),
            (&s.transferred_size, &receiver.transferred_size),
            (&s.literal, &receiver.literal),
            (&s.matched, &receiver.matched),
            (&s.flist_size, &sender.flist_size),
            (&s.flist_build_us, &sender.flist_build_us),
            (&s.flist_xfer_us, &sender.flist_xfer_us),
            (&s.local_copied, &receiver.local_copied),
            (&s.bytes_received, &sender.bytes_received),
            (&s.delta_tree, &sender.delta_tree),
            (&s.delta_asks, &sender.delta_asks),
            (&s.delta_data, &sender.delta_data),
        ] {
            dst.store(l(src), Relaxed);
        }
        // A local run reports file data copied by path as sent, as rsync's local run does.
        s.bytes_sent
            .store(l(&sender.bytes_sent) + l(&receiver.local_copied), Relaxed);
        s.errors
            .store(l(&sender.errors) + l(&receiver.errors), Relaxed);
        s.vanished
            .store(l(&sender.vanished) + l(&receiver.vanished), Relaxed);
        s.skipped_deletes
            .store(l(&receiver.skipped_deletes), Relaxed);
        s
    }

    /// The sender's list counters for a [`crate::proto::merkle::Frame::Totals`]: entries
    /// (reg, dir, link, dev, special), then total size, then the entries it could not read
    /// while listing.
    pub fn totals_counters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.files.cells().iter().map(|c| c.load(Relaxed)).collect();
        v.push(self.total_size.load(Relaxed));
        v.push(self.errors.load(Relaxed));
        v
    }

    /// The sender's read errors from its [`Stats::totals_counters`] (all a receiver of the
    /// whole list takes from them: it counts the list itself).
    pub fn apply_sender_errors(&self, counters: &[u64]) {
        self.sender_read_errors
            .fetch_add(counters.get(6).copied().unwrap_or(0), Relaxed);
    }

    /// Add the sender's [`Stats::totals_counters`] to this side's list counters.
    pub fn apply_totals(&self, counters: &[u64]) {
        let at = |i: usize| counters.get(i).copied().unwrap_or(0);
        for (i, c) in self.files.cells().iter().enumerate() {
            c.fetch_add(at(i), Relaxed);
        }
        self.total_size.fetch_add(at(5), Relaxed);
        self.apply_sender_errors(counters);
    }

    /// The receiver's counters for a [`crate::proto::merkle::Frame::Summary`], in a fixed order:
    /// created (reg, dir, link, dev, special), deleted (same five), transferred, transferred
    /// size, literal, matched, errors, vanished, deletions skipped by `--max-delete`. New
    /// counters are only ever appended.
    pub fn summary_counters(&self) -> Vec<u64> {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let mut v: Vec<u64> = self.created.cells().iter().map(|c| l(c)).collect();
        v.extend(self.deleted.cells().iter().map(|c| l(c)));
        v.extend(
            [
                &self.transferred,
                &self.transferred_size,
                &self.literal,
                &self.matched,
                &self.errors,
                &self.vanished,
                &self.skipped_deletes,
            ]
            .iter()
            .map(|c| l(c)),
        );
        v
    }

    /// Take the receiver's counters from a summary (missing ones read as zero). Its errors and
    /// vanished files are added to this side's own (a sender counts its own read problems).
    pub fn apply_summary(&self, counters: &[u64]) {
        let at = |i: usize| counters.get(i).copied().unwrap_or(0);
        for (i, c) in self.created.cells().iter().enumerate() {
            c.store(at(i), Relaxed);
        }
        for (i, c) in self.deleted.cells().iter().enumerate() {
            c.store(at(5 + i), Relaxed);
        }
        for (i, c) in [
            &self.transferred,
            &self.transferred_size,
            &self.literal,
            &self.matched,
        ]
        .iter()
        .enumerate()
        {
            c.store(at(10 + i), Relaxed);
        }
        self.errors.fetch_add(at(14), Relaxed);
        self.vanished.fetch_add(at(15), Relaxed);
        self.skipped_deletes.fetch_add(at(16), Relaxed);
    }

    /// The exit code the counters call for when the run itself succeeded: 23 when files
    /// failed, 24 when some vanished, 25 when `--max-delete` stopped deletions, else 0.
    pub fn exit_code(&self) -> crate::error::ExitCode {
        use crate::error::ExitCode;
        if self.errors.load(Relaxed) > 0 {
            ExitCode::Partial
        } else if self.vanished.load(Relaxed) > 0 {
            ExitCode::Vanished
        } else if self.skipped_deletes.load(Relaxed) > 0 {
            ExitCode::DelLimit
        } else {
            ExitCode::Ok
        }
    }

    /// The `--stats` block (without the trailing `sent … received …` summary).
    pub fn report(&self) -> String {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let secs = |us: u64| format!("{:.3}", us as f64 / 1e6);
        let mut s = String::new();
        s.push_str(&format!("Number of files: {}\n", self.files.describe()));
        s.push_str(&format!(
            "Number of created files: {}\n",
            self.created.describe()
        ));
        s.push_str(&format!(
            "Number of deleted files: {}\n",
            self.deleted.describe()
        ));
        s.push_str(&format!(
            "Number of regular files transferred: {}\n",
            commas(l(&self.transferred))
        ));
        s.push_str(&format!(
            "Total file size: {} bytes\n",
            commas(l(&self.total_size))
        ));
        s.push_str(&format!(
            "Total transferred file size: {} bytes\n",
            commas(l(&self.transferred_size))
        ));
        s.push_str(&format!(
            "Literal data: {} bytes\n",
            commas(l(&self.literal))
        ));
        s.push_str(&format!(
            "Matched data: {} bytes\n",
            commas(l(&self.matched))
        ));
        s.push_str(&format!(
            "File list size: {}\n",
            commas(l(&self.flist_size))
        ));
        s.push_str(&format!(
            "File list generation time: {} seconds\n",
            secs(l(&self.flist_build_us))
        ));
        s.push_str(&format!(
            "File list transfer time: {} seconds\n",
            secs(l(&self.flist_xfer_us))
        ));
        s.push_str(&format!(
            "Total bytes sent: {}\n",
            commas(l(&self.bytes_sent))
        ));
        s.push_str(&format!(
            "Total bytes received: {}\n",
            commas(l(&self.bytes_received))
        ));
        s
    }

    /// The two summary lines `-v` and `--stats` end with.
    pub fn summary(&self, elapsed: Duration) -> String {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let sent = l(&self.bytes_sent);
        let recv = l(&self.bytes_received);
        let rate = (sent + recv) as f64 / elapsed.as_secs_f64().max(1e-3);
        let total = l(&self.total_size);
        let speedup = total as f64 / ((sent + recv).max(1)) as f64;
        format!(
            "sent {} bytes  received {} bytes  {} bytes/sec\ntotal size is {}  speedup is {}\n",
            commas(sent),
            commas(recv),
            commas_f(rate),
            commas(total),
            commas_f(speedup)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_format() {
        assert_eq!(commas(0), "0");
        assert_eq!(commas(999), "999");
        assert_eq!(commas(1000), "1,000");
        assert_eq!(commas(1_048_576), "1,048,576");
        assert_eq!(commas_f(572.0), "572.00");
        assert_eq!(commas_f(1234.567), "1,234.57");
    }

    #[test]
    fn summary_round_trips() {
        let a = Stats::default();
        a.created.add(FileKind::Dir);
        a.deleted.add(FileKind::Symlink);
        a.literal.store(77, Relaxed);
        a.vanished.store(2, Relaxed);
        let b = Stats::default();
        b.apply_summary(&a.summary_counters());
        assert_eq!(b.summary_counters(), a.summary_counters());
        // A sender's own problems are kept.
        let c = Stats::default();
        c.errors.store(1, Relaxed);
        c.apply_summary(&a.summary_counters());
        assert_eq!(c.errors.load(Relaxed), 1);
        assert_eq!(c.vanished.load(Relaxed), 2);
        assert_eq!(b.created.total(), 1);
        // A shorter (older) summary leaves the rest at zero.
        b.apply_summary(&[3]);
        assert_eq!(b.created.regular(), 3);
        assert_eq!(b.literal.load(Relaxed), 0);
    }

    #[test]
    fn kind_breakdown() {
        let k = KindCounts::default();
        assert_eq!(k.describe(), "0");
        k.add(FileKind::File);
        k.add(FileKind::File);
        k.add(FileKind::Dir);
        k.add(FileKind::Fifo);
        assert_eq!(k.describe(), "4 (reg: 2, dir: 1, special: 1)");
    }
}
