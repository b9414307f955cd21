//! rsync's progress lines (`progress.c`), on a terminal or not: per file with `--progress`
//! (`\r` updates while the file moves, then its final line with `(xfr#N, to-chk=R/T)`), and
//! the whole transfer with `--info=progress2` (one line rewritten with `\r`, left in place at
//! the end). This module owns the state and the text; the output sink writes it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arsync_core::engine::stats::commas;

/// How often a line in progress is rewritten.
const EVERY: Duration = Duration::from_millis(500);

/// One file on its way.
struct Moving {
    started: Instant,
    last: Option<Instant>,
    done: u64,
}

/// The progress of a run.
pub struct ProgressLines {
    per_file: bool,
    overall: bool,
    started: Instant,
    /// Files whose data moved completely, and their bytes.
    xfr: u64,
    finished_bytes: u64,
    moving: HashMap<Vec<u8>, Moving>,
    last_overall: Option<Instant>,
    /// Entries in the list and their total size, once known.
    list_files: u64,
    list_bytes: u64,
    /// Entries reported so far (what `to-chk` counts down).
    checked: u64,
    /// A `\r` line is on screen without its newline.
    open_line: bool,
    /// Files whose name was printed before their progress (their item line is not repeated).
    named: std::collections::HashSet<Vec<u8>>,
    /// Files whose item line came before their progress (a pushing client hears of a
    /// transfer when it is asked for): their name is not printed again.
    shown: std::collections::HashSet<Vec<u8>>,
    /// Files counted as checked when their data ended, before their item line.
    counted: std::collections::HashSet<Vec<u8>>,
    /// The file whose per-file line is open on screen. Files move in parallel but rsync
    /// shows one at a time: while one file's line is open the others wait in `held`.
    owner: Option<Vec<u8>>,
    /// Files that finished while another file's line was open, in the order they finished.
    held: Vec<Held>,
    /// Per-file final lines printed so far (their `xfr#`).
    xfr_shown: u64,
    /// Files whose name is on screen (printed, or shown by their item line) while they move.
    announced: std::collections::HashSet<Vec<u8>>,
}

/// A finished file whose lines wait for the open line of another file to end.
struct Held {
    name: Option<String>,
    done: u64,
    elapsed: Duration,
}

impl ProgressLines {
    /// Progress per file (`--progress`) and/or overall (`--info=progress2`).
    pub fn new(per_file: bool, overall: bool) -> Self {
        ProgressLines {
            per_file,
            overall,
            started: Instant::now(),
            xfr: 0,
            finished_bytes: 0,
            moving: HashMap::new(),
            last_overall: None,
            list_files: 0,
            list_bytes: 0,
            checked: 0,
            open_line: false,
            named: std::collections::HashSet::new(),
            shown: std::collections::HashSet::new(),
            counted: std::collections::HashSet::new(),
            owner: None,
            held: Vec::new(),
            xfr_shown: 0,
            announced: std::collections::HashSet::new(),
        }
    }

    /// The list's size is known.
    pub fn totals(&mut self, files: u64, bytes: u64) {
        self.list_files = files;
        self.list_bytes = bytes;
    }

    /// `path` was reported (created, changed or sent); a file already counted when its data
    /// ended is not counted again.
    pub fn checked(&mut self, path: &[u8]) {
        if !self.counted.remove(path) {
            self.checked += 1;
        }
    }

    /// What to write before an ordinary line: the end of an open progress line, then the
    /// files that finished while it was open.
    pub fn before_line(&mut self) -> String {
        let mut out = String::new();
        if std::mem::take(&mut self.open_line) {
            out.push('\n');
        }
        self.owner = None;
        self.flush_held(&mut out);
        out
    }

    /// The lines of the files that finished while another file's line was open.
    fn flush_held(&mut self, out: &mut String) {
        let held = std::mem::take(&mut self.held);
        let mut pending = held.len() as u64;
        for h in held {
            if let Some(n) = h.name {
                out.push_str(&n);
                out.push('\n');
            }
            pending -= 1;
            self.final_line(out, h.done, h.elapsed, pending);
        }
    }

    /// A file's last line: `\r` the whole size at 100 %, its `xfr#` and what is left to check
    /// (as if the `pending` files that finished already but are shown after it had not).
    fn final_line(&mut self, out: &mut String, done: u64, el: Duration, pending: u64) {
        out.push('\r');
        out.push_str(&line(done, 100, rate(done, el), clock(el)));
        self.xfr_shown += 1;
        let checked = self.checked.saturating_sub(pending).max(self.xfr_shown);
        let left = self.list_files.saturating_sub(checked);
        out.push_str(&format!(
            " (xfr#{}, to-chk={left}/{})\n",
            self.xfr_shown, self.list_files
        ));
    }

    /// `path`'s item line was printed before any progress of it.
    pub fn name_shown(&mut self, path: &[u8]) {
        self.shown.insert(path.to_vec());
    }

    /// Whether `path`'s name was printed with its progress (then once: its item line is not
    /// printed again).
    pub fn take_named(&mut self, path: &[u8]) -> bool {
        self.named.remove(path)
    }

    /// `done` of `size` bytes of `path` have moved (`finished`: all of it). Returns the text
    /// to write; `name` is printed before the first line of a file that shows progress.
    pub fn file(
        &mut self,
        path: &[u8],
        name: Option<String>,
        size: u64,
        done: u64,
        finished: bool,
    ) -> String {
        let now = Instant::now();
        let mut out = String::new();
        let m = self.moving.entry(path.to_vec()).or_insert(Moving {
            started: now,
            last: None,
            done: 0,
        });
        m.done = done;
        let (started, last) = (m.started, m.last);
        if self.per_file {
            self.per_file_lines(
                &mut out, path, name, size, done, finished, now, started, last,
            );
        }
        if finished {
            self.xfr += 1;
            self.finished_bytes += done;
            self.moving.remove(path);
        }
        if self.overall {
            out.push_str(&self.overall_line(now, finished));
        }
        out
    }

    /// `--progress`: one file's lines. Files move in parallel, but rsync shows one at a time,
    /// so while one file's line is open the others print nothing and those that finish wait.
    #[allow(clippy::too_many_arguments)]
    fn per_file_lines(
        &mut self,
        out: &mut String,
        path: &[u8],
        name: Option<String>,
        size: u64,
        done: u64,
        finished: bool,
        now: Instant,
        started: Instant,
        last: Option<Instant>,
    ) {
        let el = now.duration_since(started);
        let other_open = self.open_line && self.owner.as_deref().is_some_and(|o| o != path);
        // The name is printed once, before the file's first line on screen, unless its item
        // line was shown first.
        let needs_name = !self.announced.contains(path) && !self.shown.contains(path);
        let name = name.filter(|_| needs_name);
        if finished {
            self.shown.remove(path);
            self.announced.remove(path);
            // This file counts as checked now (its item line may come later, in list order).
            self.checked += 1;
            self.counted.insert(path.to_vec());
            if name.is_some() {
                self.named.insert(path.to_vec());
            }
            if other_open {
                self.held.push(Held {
                    name,
                    done,
                    elapsed: el,
                });
                return;
            }
            if let Some(n) = name {
                out.push_str(&n);
                out.push('\n');
            }
            let pending = self.held.len() as u64;
            self.final_line(out, done, el, pending);
            self.open_line = false;
            self.owner = None;
            self.flush_held(out);
            return;
        }
        if other_open || last.is_some_and(|t| now.duration_since(t) < EVERY) {
            return;
        }
        if let Some(m) = self.moving.get_mut(path) {
            m.last = Some(now);
        }
        if let Some(n) = name {
            if std::mem::take(&mut self.open_line) {
                out.push('\n');
            }
            out.push_str(&n);
            out.push('\n');
            self.named.insert(path.to_vec());
            self.announced.insert(path.to_vec());
        }
        let pct = percent(done, size);
        let bps = done as f64 / el.as_secs_f64().max(1e-3);
        let eta = Duration::from_secs_f64(size.saturating_sub(done) as f64 / bps.max(1.0));
        out.push('\r');
        out.push_str(&line(done, pct, rate(done, el), clock(eta)));
        out.push_str("  ");
        self.open_line = true;
        self.owner = Some(path.to_vec());
    }

    /// The overall line, if it is time to rewrite it (always when a file finished).
    fn overall_line(&mut self, now: Instant, force: bool) -> String {
        if !force
            && self
                .last_overall
                .is_some_and(|t| now.duration_since(t) < EVERY)
        {
            return String::new();
        }
        self.last_overall = Some(now);
        let done = self.finished_bytes + self.moving.values().map(|m| m.done).sum::<u64>();
        let el = now.duration_since(self.started);
        let pct = percent(done, self.list_bytes.max(done));
        self.open_line = true;
        format!(
            "\r{} (xfr#{}, to-chk={}/{})",
            line(done, pct, rate(done, el), clock(el)),
            self.xfr,
            self.to_check(),
            self.list_files
        )
    }

    /// The end of the run: the overall line's last state, left in place.
    pub fn end(&mut self) -> String {
        let mut out = String::new();
        // The run is over: every entry was checked.
        self.checked = self.checked.max(self.list_files);
        if self.overall {
            out = self.overall_line(Instant::now(), true);
            out.push('\n');
            self.open_line = false;
        } else if std::mem::take(&mut self.open_line) {
            out.push('\n');
        }
        self.owner = None;
        self.flush_held(&mut out);
        out
    }

    fn to_check(&self) -> u64 {
        self.list_files.saturating_sub(self.checked.max(self.xfr))
    }
}

fn percent(done: u64, size: u64) -> u64 {
    done.saturating_mul(100)
        .checked_div(size)
        .map_or(100, |p| p.min(100))
}

/// `      3,000,000 100%    1.38GB/s    0:00:00`: bytes, percent, rate, time.
fn line(bytes: u64, pct: u64, rate: String, time: String) -> String {
    format!("{:>15} {pct:>3}% {rate} {time}", commas(bytes))
}

/// `%7.2f` of the rate in kB/s, MB/s or GB/s (rsync's units: 1024).
fn rate(bytes: u64, elapsed: Duration) -> String {
    let mut r = bytes as f64 / elapsed.as_secs_f64().max(1e-3) / 1024.0;
    let mut unit = "kB/s";
    if r > 1024.0 {
        r /= 1024.0;
        unit = "MB/s";
        if r > 1024.0 {
            r /= 1024.0;
            unit = "GB/s";
        }
    }
    format!("{r:>7.2}{unit}")
}

/// `   0:00:05` (`%4d:%02d:%02d`).
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:>4}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_rsyncs_columns() {
        let l = line(
            3_000_000,
            100,
            rate(3_000_000, Duration::from_secs(2)),
            clock(Duration::ZERO),
        );
        assert_eq!(l, "      3,000,000 100%    1.43MB/s    0:00:00");
        assert_eq!(rate(500, Duration::from_secs(1)), "   0.49kB/s");
        assert_eq!(clock(Duration::from_secs(3725)), "   1:02:05");
    }

    #[test]
    fn a_file_prints_its_name_updates_and_a_final_line() {
        let mut p = ProgressLines::new(true, false);
        p.totals(3, 3_000_003);
        let first = p.file(b"big", Some("big".into()), 3_000_000, 32_768, false);
        assert!(first.starts_with("big\n\r"), "{first:?}");
        assert!(first.contains("   1% "), "{first:?}");
        // Within the update period: nothing.
        assert_eq!(p.file(b"big", None, 3_000_000, 65_536, false), "");
        let last = p.file(b"big", None, 3_000_000, 3_000_000, true);
        assert!(last.starts_with("\r      3,000,000 100% "), "{last:?}");
        assert!(last.ends_with(" (xfr#1, to-chk=2/3)\n"), "{last:?}");
        assert_eq!(p.before_line(), "");
    }

    /// Files move in parallel: a small file that starts and ends while a big file's line is
    /// open waits for that line to end, so no half-drawn line is left on screen.
    #[test]
    fn a_file_finishing_while_another_moves_waits_for_its_line() {
        let mut p = ProgressLines::new(true, false);
        p.totals(3, 3_000_003);
        p.checked(b".");
        let first = p.file(b"big", Some("big".into()), 3_000_000, 3_000_000, false);
        assert!(first.starts_with("big\n\r"), "{first:?}");
        assert_eq!(p.file(b"small", Some("small".into()), 3, 1, false), "");
        assert_eq!(p.file(b"small", Some("small".into()), 3, 3, true), "");
        // small's item line comes now, in list order: its name is still to be printed with
        // its progress, so the item line is not repeated.
        assert!(p.take_named(b"small"));
        let end = p.file(b"big", None, 3_000_000, 3_000_000, true);
        assert!(
            end.starts_with("\r      3,000,000 100% ")
                && end.contains(" (xfr#1, to-chk=1/3)\nsmall\n\r"),
            "{end:?}"
        );
        assert!(end.ends_with(" (xfr#2, to-chk=0/3)\n"), "{end:?}");
        // An ordinary line ends an open line and lets the held files out.
        let mut p = ProgressLines::new(true, false);
        p.totals(2, 2_000);
        p.checked(b"a");
        p.file(b"a", Some("a".into()), 1_000, 10, false);
        p.file(b"b", Some("b".into()), 1_000, 1_000, true);
        let before = p.before_line();
        assert!(before.starts_with("\nb\n\r"), "{before:?}");
        assert!(before.ends_with("(xfr#1, to-chk=0/2)\n"), "{before:?}");
    }

    #[test]
    fn the_overall_line_moves_during_a_file_and_stays_at_the_end() {
        let mut p = ProgressLines::new(false, true);
        p.totals(2, 1000);
        let during = p.file(b"f", None, 1000, 500, false);
        assert!(during.starts_with("\r            500  50% "), "{during:?}");
        assert!(during.ends_with("(xfr#0, to-chk=2/2)"), "{during:?}");
        let done = p.file(b"f", None, 1000, 1000, true);
        assert!(done.contains(" 100% "), "{done:?}");
        assert!(done.ends_with("(xfr#1, to-chk=1/2)"), "{done:?}");
        let end = p.end();
        // At the end everything was checked.
        assert!(end.ends_with("(xfr#1, to-chk=0/2)\n"), "{end:?}");
    }
}
