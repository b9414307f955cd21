//! Engine events → what rsync prints: `-v` names, `-i` itemized lines, `*deleting`, progress
//! (rsync's `\r` lines, [`crate::progress`]), `--out-format` and `--log-file` lines
//! ([`crate::out_format`]), `--stats` and the summary lines.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use arsync_core::engine::stats::commas;
use arsync_core::engine::{Event, EventSink, FileEntry, FileKind, Stats};

use crate::args::OutputOpts;

/// Print one `--explain` line (a probe, or a decision and its reason) on stderr.
pub fn explain(on: bool, what: impl AsRef<str>) {
    if on {
        err_line!("explain: {}", what.as_ref());
    }
}

/// A warning on stderr as rsync words it (`arsync: …`), an OS error's number as rsync shows it.
pub fn err_warn(msg: &str) {
    let msg = match (msg.rfind(" (os error "), msg.ends_with(')')) {
        (Some(at), true) => format!("{} ({}", &msg[..at], &msg[at + " (os error ".len()..]),
        _ => msg.to_owned(),
    };
    err_line!("arsync: {msg}");
}

/// rsync's words for its exit codes.
pub fn describe_exit(code: i32) -> &'static str {
    match code {
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files, dirs",
        5 => "error starting client-server protocol",
        10 => "error in socket IO",
        11 => "error in file IO",
        12 => "error in rsync protocol data stream",
        20 => "received SIGINT, SIGTERM, or SIGHUP",
        23 => "some files/attrs were not transferred (see previous errors)",
        24 => "some files vanished before they could be transferred",
        25 => "the --max-delete limit stopped deletions",
        30 => "timeout in data send/receive",
        35 => "timeout waiting for daemon connection",
        124 => "remote shell failed",
        125 => "remote shell killed",
        126 => "remote command could not be run",
        127 => "remote command not found",
        _ => "unexplained error",
    }
}

/// The CLI's [`EventSink`].
pub struct Output {
    opts: OutputOpts,
    /// A server's: its stdout carries the protocol.
    server: bool,
    /// Progress lines, and the lock that keeps every line of stdout whole.
    progress: Mutex<crate::progress::ProgressLines>,
    /// `--log-file`: the file and its line format.
    log: Option<(Mutex<std::fs::File>, String)>,
}

/// A name as rsync prints it: control bytes and bytes that are not UTF-8 as `\#ooo`. With
/// `-8` (`eight_bit`) bytes with the high bit set are printed as they are: each such byte
/// that is not UTF-8 is carried in the line as a private-use stand-in ([`RAW_BYTE_BASE`]),
/// turned back into the byte when the line is written ([`line_bytes`]).
pub fn escape_name(bytes: &[u8], eight_bit: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if (ch as u32) < 0x20 || ch == '\u{7f}' {
                out.push_str(&format!("\\#{:03o}", ch as u32));
            } else {
                out.push(ch);
            }
        }
        for &b in chunk.invalid() {
            match char::from_u32(RAW_BYTE_BASE + u32::from(b)).filter(|_| eight_bit && b >= 0x80) {
                Some(stand_in) => out.push(stand_in),
                None => out.push_str(&format!("\\#{b:03o}")),
            }
        }
    }
    out
}

/// Issue 15, links (`-8`): the private-use code points U+10FF80..U+10FFFF stand for the raw
/// bytes 0x80..0xFF of a name that is not UTF-8 until the line is written.
const RAW_BYTE_BASE: u32 = 0x10_FF00;

/// The bytes to write for `line`: stand-ins of raw bytes ([`escape_name`] with `-8`) become
/// the bytes again.
fn line_bytes(line: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    for ch in line.chars() {
        match (ch as u32).checked_sub(RAW_BYTE_BASE) {
            Some(b @ 0x80..=0xff) => out.push(b as u8),
            _ => out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// `%n`: the name as rsync prints it (`./` for the root, a trailing `/` on a directory).
fn short_name(e: &FileEntry, eight_bit: bool) -> String {
    let mut s = if e.is_root() {
        "./".to_owned()
    } else {
        escape_name(&e.path, eight_bit)
    };
    if e.kind == FileKind::Dir && !e.is_root() {
        s.push('/');
    }
    s
}

/// `%L`: ` -> TARGET` for a symlink, ` => LEADER` for a hard link.
fn link_suffix(e: &FileEntry, link_to: Option<&[u8]>, eight_bit: bool) -> String {
    let mut s = String::new();
    if e.kind == FileKind::Symlink {
        s.push_str(" -> ");
        s.push_str(&escape_name(e.link_target(), eight_bit));
    }
    if let Some(l) = link_to {
        s.push_str(" => ");
        s.push_str(&escape_name(l, eight_bit));
    }
    s
}

fn entry_name(e: &FileEntry, link_to: Option<&[u8]>, eight_bit: bool) -> String {
    short_name(e, eight_bit) + &link_suffix(e, link_to, eight_bit)
}

impl Output {
    /// An output for these options. A server's
    /// stdout carries the protocol: it prints nothing there (warnings still go to stderr).
    pub fn new(opts: &OutputOpts, server: bool) -> Self {
        let opts = &if server {
            OutputOpts {
                quiet: true,
                ..OutputOpts::default()
            }
        } else {
            opts.clone()
        };
        let log = opts.log_file.as_ref().and_then(|(path, fmt)| {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(f) => Some((Mutex::new(f), fmt.clone())),
                Err(e) => {
                    err_line!("arsync: failed to open log-file {}: {e}", path.display());
                    None
                }
            }
        });
        let out = Output {
            opts: opts.clone(),
            server,
            log,
            progress: Mutex::new(crate::progress::ProgressLines::new(
                opts.progress,
                opts.progress2,
            )),
        };
        out.log_line("building file list");
        out
    }

    /// Append one line to the `--log-file`, as rsync does: `DATE TIME [PID] LINE`.
    fn log_line(&self, line: &str) {
        if let Some((file, _)) = &self.log {
            if let Ok(mut f) = file.lock() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let _ = writeln!(
                    f,
                    "{} [{}] {line}",
                    crate::out_format::local_time(now, ' '),
                    std::process::id()
                );
            }
        }
    }

    /// What `--out-format` and `--log-file-format` can say about an item.
    fn facts(
        &self,
        e: &FileEntry,
        itemize: String,
        link_to: Option<&[u8]>,
        op: &'static str,
    ) -> crate::out_format::ItemFacts {
        let o = &self.opts;
        let name = short_name(e, o.eight_bit);
        let full = format!("{}{}", o.source_prefix, escape_name(&e.path, o.eight_bit));
        let transferred = itemize.starts_with('>') || itemize.starts_with('<');
        crate::out_format::ItemFacts {
            name,
            full_name: full,
            link: link_suffix(e, link_to, o.eight_bit),
            itemize,
            // A symlink's length is its target's (rsync's `%l`); a directory's is not known here.
            length: if e.kind == FileKind::Symlink {
                e.link_target().len() as u64
            } else {
                e.size
            },
            bytes: if transferred { e.size } else { 0 },
            op,
            perms: u32::from(e.perms),
            mtime: e.mtime,
            uid: Some(e.uid()),
            gid: Some(e.gid()),
        }
    }

    fn op(&self) -> &'static str {
        if self.opts.sending {
            "send"
        } else {
            "recv"
        }
    }

    /// Print a line (ending an open progress line first).
    pub fn line(&self, s: &str) {
        let mut p = self.progress.lock();
        let before = p.as_mut().map_or(String::new(), |p| p.before_line());
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(before.as_bytes());
        let _ = out.write_all(&line_bytes(s));
        let _ = out.write_all(b"\n");
    }

    /// Leave the last progress line in place before the final lines.
    pub fn finish_progress(&self) {
        if let Ok(mut p) = self.progress.lock() {
            let end = p.end();
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(end.as_bytes());
            let _ = out.flush();
        }
    }

    /// `--stats` and the `sent … received …` summary, as rsync prints them.
    pub fn summary(&self, stats: &Stats, elapsed: Duration) {
        {
            use std::sync::atomic::Ordering::Relaxed;
            self.log_line(&format!(
                "sent {} bytes  received {} bytes  total size {}",
                commas(stats.bytes_sent.load(Relaxed)),
                commas(stats.bytes_received.load(Relaxed)),
                commas(stats.total_size.load(Relaxed))
            ));
        }
        if self.opts.quiet {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.opts.stats {
            let _ = write!(out, "\n{}", stats.report());
        }
        // Issue 18, chunk cache: `--info=stats3` adds how this side indexed files for deltas.
        if self.opts.info.stats >= 3 {
            use std::sync::atomic::Ordering::Relaxed;
            let _ = writeln!(
                out,
                "Delta index: {} bytes read, {} bytes from the chunk-index cache",
                commas(stats.index_read.load(Relaxed)),
                commas(stats.index_cached.load(Relaxed))
            );
            // Issue 18, scattered deltas: where a delta exchange's bytes went.
            let _ = writeln!(
                out,
                "Delta exchange: {} bytes of tree nodes, {} bytes asked (expand, fetch, gap sums), {} bytes of chunk data",
                commas(stats.delta_tree.load(Relaxed)),
                commas(stats.delta_asks.load(Relaxed)),
                commas(stats.delta_data.load(Relaxed))
            );
        }
        if self.opts.info.stats >= 1 {
            let mut s = stats.summary(elapsed);
            if self.opts.dry_run && !self.opts.list_entries {
                if s.ends_with('\n') {
                    s.pop();
                }
                s.push_str(" (DRY RUN)\n");
            }
            let _ = write!(out, "\n{s}");
        }
        let _ = out.flush();
    }

    fn progress(&self, e: &FileEntry, done: u64, finished: bool) {
        let o = &self.opts;
        if o.quiet || !(o.progress || o.progress2) {
            return;
        }
        let Ok(mut p) = self.progress.lock() else {
            return;
        };
        // The name comes first, as rsync prints it (not with -i or an output format: their
        // line comes when the file is done).
        let name = (o.progress && o.info.name >= 1 && o.itemize == 0 && o.out_format.is_none())
            .then(|| escape_name(&e.path, o.eight_bit));
        let text = p.file(&e.path, name, e.size, done, finished);
        if !text.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

impl EventSink for Output {
    fn event(&self, event: Event<'_>) {
        let o = &self.opts;
        match event {
            Event::Item { entry, .. } if o.list_entries && !o.quiet => {
                self.line(&crate::listing::entry_line(entry, o.list_targets));
            }
            Event::Item { .. } | Event::Deleted { .. } | Event::Info { .. } if o.list_entries => {}
            Event::Item {
                entry,
                itemize,
                link_to,
            } => {
                let significant =
                    itemize.any_change() || matches!(itemize.update, '>' | '<' | 'c' | 'h');
                // rsync's `maybe_log_item`: a line that shows no item code names a file only
                // for a transfer or a local change (`c`, `h`), a directory for any change;
                // a file whose attributes alone changed is shown only by `%i` lines.
                let itemizing = match &o.out_format {
                    Some(fmt) => crate::out_format::shows_itemize(fmt),
                    None => o.itemize > 0,
                };
                let shown = match itemizing {
                    true => significant,
                    false => {
                        matches!(itemize.update, '>' | '<' | 'c' | 'h')
                            || (entry.kind == FileKind::Dir && itemize.any_change())
                    }
                };
                let named = self.progress.lock().is_ok_and(|mut p| {
                    p.checked(&entry.path);
                    let named = p.take_named(&entry.path);
                    // A transfer heard of before its data (a push): its name comes now.
                    if !named && o.progress && matches!(itemize.update, '<' | '>') {
                        p.name_shown(&entry.path);
                    }
                    named
                });
                if let (true, Some((_, fmt))) = (significant, &self.log) {
                    let f = self.facts(entry, itemize.code(), link_to, self.op());
                    self.log_line(&crate::out_format::render(fmt, &f));
                }
                if o.quiet {
                    return;
                }
                if let Some(fmt) = &o.out_format {
                    if shown || o.info.name >= 2 || o.itemize > 1 {
                        let f = self.facts(entry, itemize.code(), link_to, self.op());
                        self.line(&crate::out_format::render(fmt, &f));
                    }
                    return;
                }
                let name = entry_name(entry, link_to, o.eight_bit);
                if o.itemize > 0 {
                    if itemize.any_change()
                        || matches!(itemize.update, '>' | '<' | 'c' | 'h')
                        || o.itemize > 1
                    {
                        self.line(&format!("{} {name}", itemize.code()));
                    }
                } else if named {
                    // Printed before its progress lines.
                } else if o.info.name >= 2 || (o.info.name >= 1 && shown) {
                    // rsync's log_item at NAME1: what `shown` says; at NAME2: everything.
                    self.line(&name);
                }
            }
            Event::Deleted { path, is_dir } => {
                let mut name = escape_name(&path, o.eight_bit);
                if is_dir {
                    name.push('/');
                }
                let deleted = || crate::out_format::ItemFacts {
                    name: name.clone(),
                    full_name: name.trim_end_matches('/').to_owned(),
                    itemize: "*deleting  ".to_owned(),
                    op: "del.",
                    ..Default::default()
                };
                if let Some((_, fmt)) = &self.log {
                    self.log_line(&crate::out_format::render(fmt, &deleted()));
                }
                if o.quiet {
                    return;
                }
                if let Some(fmt) = &o.out_format {
                    self.line(&crate::out_format::render(fmt, &deleted()));
                    return;
                }
                if o.itemize > 0 {
                    self.line(&format!("{:<11} {name}", "*deleting"));
                } else if o.info.del >= 1 {
                    self.line(&format!("deleting {name}"));
                }
            }
            Event::Info { message } if !o.quiet && (o.info.name >= 1 || o.itemize > 0) => {
                self.line(&message);
            }
            Event::PeerInfo { message } if !o.quiet => {
                self.line(&message);
            }
            Event::Debug { message } if !o.quiet && o.verbose > 1 => {
                self.line(&message);
            }
            // Issue 16, adapt during the run: on stderr, as every `--explain` line.
            Event::Explain { message } => crate::output::explain(o.explain, message),
            // rsync's client shows these on stdout; a server's stdout is the protocol, so
            // they go where its warnings go.
            Event::Notice { message } if self.server => {
                err_line!("arsync: {message}");
            }
            Event::Notice { message } if !o.quiet && o.info.nonreg >= 1 => {
                self.line(&message);
            }
            Event::Warning { message } => {
                err_line!("arsync: {message}");
            }
            Event::ListTotals { files, bytes } => {
                if let Ok(mut p) = self.progress.lock() {
                    p.totals(files, bytes);
                }
            }
            Event::Progress {
                entry,
                done,
                finished,
            } => self.progress(entry, done, finished),
            _ => {}
        }
    }

    fn notices_to_peer(&self) -> bool {
        self.server
    }
}

#[cfg(test)]
mod eight_bit_tests {
    use super::*;

    #[test]
    fn high_bit_bytes_raw_only_with_dash_8() {
        let name = b"caf\xc3\xa9 bad\xff ctl\x01";
        assert_eq!(escape_name(name, false), "café bad\\#377 ctl\\#001");
        let raw = escape_name(name, true);
        assert_eq!(line_bytes(&raw), b"caf\xc3\xa9 bad\xff ctl\\#001".to_vec());
    }
}
