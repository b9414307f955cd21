//! Issue 15, write: rsync's `--chmod=CHMOD` (upstream's chmod.c semantics): comma-separated
//! clauses, each optionally `D` (directories only) or `F` (files only), then either an octal
//! mode or `[ugoa]*[+-=][rwxXst]*` (or `[ugoa]*[+-=][ugo]`, copying another class's bits).
//! A clause without `ugoa` leaves the bits the umask clears. Parsing and applying only; the
//! receiver applies the result to the modes the sender lists, as upstream does (as it reads
//! each entry: [`perms_of`]).

/// The permission bits a clause may touch.
const CHMOD_BITS: u32 = 0o7777;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Eq,
    Set,
}

/// One parsed clause: `mode = (mode & and) | or`, plus the copied bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clause {
    and: u32,
    or: u32,
    copy_src: u32,
    copy_dst: u32,
    copy_and: u32,
    op: Op,
    dirs_only: bool,
    files_only: bool,
    /// `X`: execute only for directories and files some class may already execute.
    x_keep: bool,
}

/// A parsed `--chmod` (several options append their clauses in order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChmodRules {
    clauses: Vec<Clause>,
}

/// The set-id and sticky bits a `where` of `ugo` bits copies into.
fn special_bits(whr: u32) -> u32 {
    let mut bits = 0;
    if whr & 0o100 != 0 {
        bits |= 0o4000;
    }
    if whr & 0o010 != 0 {
        bits |= 0o2000;
    }
    if whr & 0o001 != 0 {
        bits |= 0o1000;
    }
    bits
}

impl ChmodRules {
    /// Parse `spec` (one `--chmod` value) with the process's `umask`, appending to `self`;
    /// `Err` with rsync's message on bad syntax.
    pub fn add(&mut self, spec: &str, umask: u32) -> Result<(), String> {
        let bad = || format!("Invalid argument passed to --chmod ({spec})");
        for part in spec.split(',') {
            self.clauses
                .push(parse_clause(part.as_bytes(), umask).ok_or_else(bad)?);
        }
        Ok(())
    }

    /// Parse every `--chmod` value in order.
    pub fn parse_all(specs: &[String], umask: u32) -> Result<Option<ChmodRules>, String> {
        if specs.is_empty() {
            return Ok(None);
        }
        let mut rules = ChmodRules::default();
        for s in specs {
            rules.add(s, umask)?;
        }
        Ok(Some(rules))
    }

    /// The mode (with its file-type bits) after the rules; `is_dir` picks `D`/`F` clauses.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let is_x = mode & 0o111 != 0;
        let non_perm = mode & !CHMOD_BITS;
        let mut mode = mode & CHMOD_BITS;
        for c in &self.clauses {
            if (c.dirs_only && !is_dir) || (c.files_only && is_dir) {
                continue;
            }
            let copy = copy_bits(mode, c.copy_src, c.copy_dst, c.copy_and);
            mode &= c.and;
            if c.x_keep && !is_x && !is_dir {
                mode |= c.or & !0o111;
            } else {
                mode |= c.or;
            }
            if c.op == Op::Sub {
                mode &= CHMOD_BITS - copy;
            } else {
                mode |= copy;
            }
        }
        (mode & CHMOD_BITS) | non_perm
    }
}

/// Entry `e` as it is shown under `rules`: with [`perms_of`]'s bits (a copy only when they
/// differ), so that an item line's `%B`/`-l` mode is the one the receiver gives it.
pub fn shown_entry<'e>(
    rules: Option<&ChmodRules>,
    e: &'e crate::flist::FileEntry,
) -> std::borrow::Cow<'e, crate::flist::FileEntry> {
    let perms = perms_of(rules, e);
    if perms == u32::from(e.perms) {
        return std::borrow::Cow::Borrowed(e);
    }
    let mut changed = e.clone();
    changed.perms = perms as u16;
    std::borrow::Cow::Owned(changed)
}

/// The process's umask, which `--chmod` clauses without `ugoa` respect (read from
/// `/proc/self/status`, which does not change it; 022 if it cannot be read).
pub fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// A sending client's sink under `--chmod`: its item lines show the modes the receiver gives
/// (the sender's modes after the rules), as rsync's sending client prints them; every other
/// event passes unchanged.
#[allow(missing_debug_implementations)] // it holds a `dyn EventSink`, which has no `Debug`
pub struct ChmodItems {
    inner: std::sync::Arc<dyn crate::engine::event::EventSink>,
    rules: ChmodRules,
}

impl ChmodItems {
    /// `sink` itself without `--chmod` (`specs` empty), else `sink` behind the rules.
    pub fn wrap(
        sink: std::sync::Arc<dyn crate::engine::event::EventSink>,
        specs: &[String],
    ) -> Result<std::sync::Arc<dyn crate::engine::event::EventSink>, String> {
        Ok(match ChmodRules::parse_all(specs, process_umask())? {
            Some(rules) => std::sync::Arc::new(ChmodItems { inner: sink, rules }),
            None => sink,
        })
    }
}

impl crate::engine::event::EventSink for ChmodItems {
    fn event(&self, event: crate::engine::event::Event<'_>) {
        use crate::engine::event::Event;
        match event {
            Event::Item {
                entry,
                itemize,
                link_to,
            } => self.inner.event(Event::Item {
                entry: &shown_entry(Some(&self.rules), entry),
                itemize,
                link_to,
            }),
            other => self.inner.event(other),
        }
    }

    fn transfers_shown_by_sender(&self) -> bool {
        self.inner.transfers_shown_by_sender()
    }

    fn notices_to_peer(&self) -> bool {
        self.inner.notices_to_peer()
    }
}

/// The permission bits entry `e` is to have under `rules` (`--chmod`): a symlink's as listed,
/// any other entry's changed by the rules. Issue 18: the receiver applies them as it reads an
/// entry, not to its list, so that a list shared with a local sender is not copied.
pub fn perms_of(rules: Option<&ChmodRules>, e: &crate::flist::FileEntry) -> u32 {
    match rules {
        Some(r) if e.kind != crate::flist::FileKind::Symlink => {
            r.apply(u32::from(e.perms), e.kind == crate::flist::FileKind::Dir) & 0o7777
        }
        _ => u32::from(e.perms),
    }
}

fn copy_bits(mode: u32, src: u32, dst: u32, and: u32) -> u32 {
    let mut bits = 0;
    if src & 0o100 != 0 {
        bits |= (mode >> 6) & 7;
    }
    if src & 0o010 != 0 {
        bits |= (mode >> 3) & 7;
    }
    if src & 0o001 != 0 {
        bits |= mode & 7;
    }
    (dst * bits) & and
}

/// One clause, as upstream's state machine reads it.
fn parse_clause(s: &[u8], umask: u32) -> Option<Clause> {
    let (mut dirs_only, mut files_only, mut x_keep) = (false, false, false);
    let (mut whr, mut what, mut topbits, mut topoct, mut copy_src) = (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut op = None;
    let mut i = 0;
    // The first half: D/F, then who, then the operator (or an octal mode).
    while op.is_none() {
        match *s.get(i)? {
            b'D' if !files_only => dirs_only = true,
            b'F' if !dirs_only => files_only = true,
            b'u' => {
                whr |= 0o100;
                topbits |= 0o4000;
            }
            b'g' => {
                whr |= 0o010;
                topbits |= 0o2000;
            }
            b'o' => whr |= 0o001,
            b'a' => {
                whr |= 0o111;
                topbits |= 0o6000;
            }
            b'+' => op = Some(Op::Add),
            b'-' => op = Some(Op::Sub),
            b'=' => op = Some(Op::Eq),
            c @ b'0'..=b'7' if whr == 0 => {
                let mut v = u32::from(c - b'0');
                for &d in &s[i + 1..] {
                    if !(b'0'..=b'7').contains(&d) {
                        return None;
                    }
                    v = v * 8 + u32::from(d - b'0');
                    if v > CHMOD_BITS {
                        return None;
                    }
                }
                return Some(Clause {
                    and: 0,
                    or: v,
                    copy_src: 0,
                    copy_dst: 0,
                    copy_and: CHMOD_BITS,
                    op: Op::Set,
                    dirs_only,
                    files_only,
                    x_keep: false,
                });
            }
            _ => return None,
        }
        i += 1;
    }
    // The second half: the bits, or one class to copy from.
    for &c in &s[i..] {
        if copy_src != 0 {
            return None;
        }
        match c {
            b'r' => what |= 4,
            b'w' => what |= 2,
            b'X' => {
                x_keep = true;
                what |= 1;
            }
            b'x' => what |= 1,
            b's' => topoct |= if topbits != 0 { topbits } else { 0o4000 },
            b't' => topoct |= 0o1000,
            b'u' | b'g' | b'o' if what == 0 && topoct == 0 => {
                copy_src = match c {
                    b'u' => 0o100,
                    b'g' => 0o010,
                    _ => 0o001,
                }
            }
            _ => return None,
        }
    }
    let op = op?;
    let specified = whr != 0;
    let bits = if specified {
        whr * what
    } else {
        whr = 0o111;
        (whr * what) & !umask
    };
    let copy_and = if specified {
        CHMOD_BITS
    } else {
        !umask & CHMOD_BITS
    };
    let (and, or) = match op {
        Op::Add => (CHMOD_BITS, bits + topoct),
        Op::Sub => (CHMOD_BITS - bits - topoct, 0),
        _ => (
            CHMOD_BITS
                - whr * 7
                - if topoct != 0 { topbits } else { 0 }
                - if copy_src != 0 { special_bits(whr) } else { 0 },
            bits + topoct,
        ),
    };
    Some(Clause {
        and,
        or,
        copy_src,
        copy_dst: whr,
        copy_and,
        op,
        dirs_only,
        files_only,
        x_keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(spec: &str) -> ChmodRules {
        let mut r = ChmodRules::default();
        r.add(spec, 0o022).unwrap();
        r
    }

    /// Issue 18: the receiver's `--chmod` as it reads an entry — a directory by the `D`
    /// clauses, a file by the `F` ones, a symlink as listed; no rules, as listed.
    #[test]
    fn an_entrys_perms_under_the_rules() {
        use crate::flist::{FileEntry, FileKind};
        let with = |kind, perms| {
            let mut e = FileEntry::new(b"x".to_vec(), kind);
            e.perms = perms;
            e
        };
        let r = rules("D755,F644");
        assert_eq!(perms_of(Some(&r), &with(FileKind::Dir, 0o700)), 0o755);
        assert_eq!(perms_of(Some(&r), &with(FileKind::File, 0o600)), 0o644);
        assert_eq!(perms_of(Some(&r), &with(FileKind::Symlink, 0o777)), 0o777);
        assert_eq!(perms_of(None, &with(FileKind::File, 0o600)), 0o600);
    }

    #[test]
    fn octal_and_file_kinds() {
        let r = rules("D755,F644");
        assert_eq!(r.apply(0o040700, true), 0o040755);
        assert_eq!(r.apply(0o100600, false), 0o100644);
        assert_eq!(rules("600").apply(0o100777, false), 0o100600);
    }

    #[test]
    fn symbolic_clauses() {
        assert_eq!(rules("u+x").apply(0o644, false), 0o744);
        assert_eq!(rules("go-rwx").apply(0o755, false), 0o700);
        assert_eq!(rules("a=r").apply(0o777, false), 0o444);
        assert_eq!(rules("Fu=rw,Fgo=r").apply(0o100777, false), 0o100644);
        // No who: the umask's bits are left alone.
        assert_eq!(rules("+w").apply(0o444, false), 0o644);
        assert_eq!(rules("-w").apply(0o666, false), 0o466);
        assert_eq!(rules("u+s,+t").apply(0o755, false), 0o5755);
        assert_eq!(rules("g=u").apply(0o640, false), 0o660);
    }

    #[test]
    fn big_x_only_for_directories_and_executables() {
        let r = rules("a+X");
        assert_eq!(r.apply(0o100644, false), 0o100644);
        assert_eq!(r.apply(0o100744, false), 0o100755);
        assert_eq!(r.apply(0o040700, true), 0o040711);
    }

    #[test]
    fn bad_syntax_is_refused() {
        for bad in [
            "", "u", "q+r", "DF644", "u+q", "8", "u644", "77777", "g=ur", "a,",
        ] {
            let mut r = ChmodRules::default();
            assert!(r.add(bad, 0o022).is_err(), "{bad}");
        }
    }
}
