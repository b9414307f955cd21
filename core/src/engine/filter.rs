//! Include/exclude rules with rsync's matching semantics, as a pure function of a path.
//!
//! Owns: parsing `--exclude`, `--include` and the common `--filter` rule forms (`- PAT`,
//! `+ PAT`, `exclude PAT`, `include PAT`, `hide`, `show`, `protect`, `risk`, `!`), and matching
//! with `*`, `**`, `?`, `[…]`, anchored `/PAT`, dir-only `PAT/` and `dir/***`. Merge files, rule
//! modifiers and per-directory merge files (`dir-merge`) are [`super::filter_merge`]'s; this
//! module holds the rule list they build and matches it.
//!
//! Semantics (rsync(1) "FILTER RULES"): the first matching rule decides; a pattern without a
//! `/` (other than a trailing one) matches the last path component; one with a `/` or `**`
//! matches the whole path relative to the transfer root, anchored at the root when it starts
//! with `/` and otherwise at any directory boundary.
//!
//! Matching: each rule's pattern is compiled once into a `Glob`, a token program read as an
//! NFA and run as a Thompson simulation (a set of live states, one pass over the path), so a
//! match costs O(tokens × path length) whatever the stars; the unanchored "any directory
//! boundary" case restarts the program after every `/` in that same pass.

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Exclude from transfer and protect from deletion (`-`).
    Exclude,
    /// Include (`+`).
    Include,
    /// Sender side only: hide (`H`).
    Hide,
    /// Sender side only: show (`S`).
    Show,
    /// Receiver side only: protect from deletion (`P`).
    Protect,
    /// Receiver side only: risk deletion (`R`).
    Risk,
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// What it does.
    pub kind: RuleKind,
    /// The pattern, without the leading `/` or trailing `/`.
    pattern: Vec<u8>,
    anchored: bool,
    dir_only: bool,
    /// Whether the pattern is matched against the whole path (it has a `/` or `**`).
    full_path: bool,
    /// `pattern` compiled; for `dir/***`, `dir` alone.
    program: Glob,
    /// For `dir/***` only: `dir/**`, everything below the directory.
    below: Option<Glob>,
    /// `!`: the rule applies when the pattern does *not* match.
    pub(crate) negate: bool,
    /// `p`: perishable (ignored inside a directory `--delete` removes).
    pub(crate) perishable: bool,
    /// `/`: matched against the absolute path (once [`FilterRules::enter_first_dir`] knows
    /// where the transfer is; anchored at the transfer root before that).
    pub(crate) abs: bool,
    /// Where an anchored pattern is anchored: the transfer root, or the directory of the
    /// per-directory merge file the rule came from.
    pub(crate) anchor: Anchor,
}

/// Where an anchored rule's leading `/` is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Anchor {
    /// The transfer root (command-line rules).
    #[default]
    Root,
    /// A directory below the root (this path, relative to it): the rule matches only below.
    Below(Vec<u8>),
    /// A directory above the root: paths are matched with this prefix (the root's path
    /// relative to that directory) in front.
    Above(Vec<u8>),
}

/// One item of a rule list: a rule, or a per-directory merge file's place in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A plain rule.
    Rule(FilterRule),
    /// `dir-merge FILE`: the rules read from FILE in the directories entered so far.
    DirMerge(Box<super::filter_merge::DirMerge>),
}

/// A rule list in command-line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterRules {
    pub(crate) rules: Vec<Entry>,
    /// Set by a `!` rule: a per-directory file that clears drops what it inherited.
    pub(crate) cleared: bool,
}

/// A rule that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter rule {rule:?}: {why}")]
pub struct FilterError {
    rule: String,
    why: String,
}

impl FilterError {
    pub(crate) fn new(rule: &str, why: impl Into<String>) -> Self {
        FilterError {
            rule: rule.to_owned(),
            why: why.into(),
        }
    }

    /// The same error said of `place` instead of the rule's text (a merge file's line: its
    /// contents are not echoed, as upstream's `rule_text` for rules from files).
    pub(crate) fn at(self, place: String) -> Self {
        FilterError {
            rule: place,
            why: self.why,
        }
    }
}

impl FilterRule {
    /// A rule of `kind` with `pattern`.
    pub fn new(kind: RuleKind, pattern: &str) -> Self {
        let mut p = pattern.as_bytes();
        let anchored = p.first() == Some(&b'/');
        if anchored {
            p = &p[1..];
        }
        let mut dir_only = false;
        // `dir/***` matches the directory itself and everything below: keep it as is.
        if p.len() > 1 && p.ends_with(b"/") && !p.ends_with(b"***") {
            dir_only = true;
            p = &p[..p.len() - 1];
        }
        // An anchored pattern is matched against the whole path from the transfer root.
        let full_path = anchored || p.contains(&b'/') || windows_contains(p, b"**");
        let (program, below) = match p.strip_suffix(b"/***") {
            // `dir/***`: the directory itself, or anything below it.
            Some(base) => {
                let mut below = base.to_vec();
                below.extend_from_slice(b"/**");
                (Glob::compile(base), Some(Glob::compile(&below)))
            }
            None => (Glob::compile(p), None),
        };
        FilterRule {
            kind,
            pattern: p.to_vec(),
            anchored,
            dir_only,
            full_path,
            program,
            below,
            negate: false,
            perishable: false,
            abs: false,
            anchor: Anchor::Root,
        }
    }

    /// The rule as rsync sends it (`send_rules`, `get_rule_prefix`): prefix, pattern, a
    /// trailing `/` when directory-only.
    pub(crate) fn for_rsync(&self) -> String {
        let prefix = match self.kind {
            RuleKind::Exclude => "-",
            RuleKind::Include => "+",
            RuleKind::Hide => "-s",
            RuleKind::Show => "+s",
            RuleKind::Protect => "-r",
            RuleKind::Risk => "+r",
        };
        self.rsync_text(prefix)
    }

    /// `prefix` (the rule letter and side), the other modifiers, a space, the pattern.
    fn rsync_text(&self, prefix: &str) -> String {
        let (letter, side) = prefix.split_at(1);
        let mut s = String::from(letter);
        if self.abs {
            s.push('/');
        }
        if self.negate {
            s.push('!');
        }
        s.push_str(side);
        if self.perishable {
            s.push('p');
        }
        s.push(' ');
        if self.anchored {
            s.push('/');
        }
        s.push_str(&String::from_utf8_lossy(&self.pattern));
        if self.dir_only {
            s.push('/');
        }
        s
    }

    /// The rule as a remote rsync *sender* gets it; `None` for receiver-only rules.
    pub fn for_rsync_sender(&self) -> Option<String> {
        (!matches!(self.kind, RuleKind::Protect | RuleKind::Risk)).then(|| self.for_rsync())
    }

    /// Whether the rule matches `path` (relative to the transfer root, no leading `/`).
    pub fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            // rsync's `rule_matches`: a file is a non-match of a directory-only pattern, so
            // a negated one applies to it.
            return self.negate;
        }
        self.pattern_matches(path) != self.negate
    }

    fn pattern_matches(&self, path: &[u8]) -> bool {
        if self.abs && (self.anchored || self.full_path) {
            if let Anchor::Above(prefix) = &self.anchor {
                // rsync's `rule_matches` with FILTRULE_ABS_PATH: the whole path.
                if prefix.is_empty() {
                    return self.pattern_matches_at(path);
                }
                return self.pattern_matches_at(&[prefix.as_slice(), b"/", path].concat());
            }
        }
        if self.anchored || self.full_path {
            match &self.anchor {
                Anchor::Root => {}
                Anchor::Below(dir) => {
                    if !self.anchored {
                        return self.pattern_matches_at(path);
                    }
                    return path
                        .strip_prefix(dir.as_slice())
                        .and_then(|rest| rest.strip_prefix(b"/"))
                        .is_some_and(|rest| self.pattern_matches_at(rest));
                }
                Anchor::Above(prefix) if self.anchored && !prefix.is_empty() => {
                    let whole = [prefix.as_slice(), b"/", path].concat();
                    return self.pattern_matches_at(&whole);
                }
                Anchor::Above(_) => {}
            }
        }
        self.pattern_matches_at(path)
    }

    fn pattern_matches_at(&self, path: &[u8]) -> bool {
        self.matches_program(&self.program, path)
            || self
                .below
                .as_ref()
                .is_some_and(|below| self.matches_program(below, path))
    }

    fn matches_program(&self, program: &Glob, path: &[u8]) -> bool {
        if !self.full_path {
            let name = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => &path[i + 1..],
                None => path,
            };
            return program.matches(name);
        }
        if self.anchored {
            program.matches(path)
        } else {
            program.matches_at_any_boundary(path)
        }
    }
}

fn windows_contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// rsync's wildcard match: `*` any run without `/`, `**` any run, `**/` also zero
/// directories, `?` one non-`/` byte, `[…]` a class (with `!` or `^` negation and ranges), `\`
/// escapes. Compiles `pat` and runs it once: O(pattern × `s`); a rule compiles its pattern once
/// ([`FilterRule::new`]).
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    Glob::compile(pat).matches(s)
}

/// One step of a compiled [`Glob`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This byte (a plain byte, `\x`, or the `[` of an unclosed class).
    Byte(u8),
    /// `?`: one byte other than `/`.
    One,
    /// `[…]`: one byte in the set (`/` never is).
    Class(ByteSet),
    /// `*`: any run of bytes other than `/`.
    Star,
    /// `**` (or more stars): any run of bytes.
    AnyRun,
    /// Consumes nothing: put in front of the `AnyRun` and `Byte(b'/')` of `**/`, it also
    /// moves past both, so `**/` matches zero directories too. Only on entry: once the `**`
    /// has consumed bytes, the `/` is required.
    SkipDirs,
}

/// A set of bytes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }
}

/// A wildcard pattern compiled into a token program, matched as an NFA whose state `i` means
/// "the first `i` tokens have matched" (state `tokens.len()` accepts). Every token consumes one
/// byte and moves on, except the star runs, which loop on their state and move on without
/// consuming; so a match is one pass over the input keeping the set of live states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    /// Compile `pat`, with exactly the syntax the backtracking matcher had: a run of stars
    /// counts as one `*` or `**`, an unclosed `[` is a literal `[` (what follows it is read as
    /// pattern again), and a trailing lone `\` is a literal `\`.
    pub(crate) fn compile(pat: &[u8]) -> Glob {
        let mut tokens = Vec::with_capacity(pat.len());
        // A class at `p` can only close at a `]` at `p + 2` or later: without one, `[` is a
        // literal and `class` need not scan to the end (which made `[[[[…` quadratic).
        let last_close = pat.iter().rposition(|&b| b == b']');
        let mut p = 0;
        while let Some(&c) = pat.get(p) {
            match c {
                b'*' => {
                    let stars = pat[p..].iter().take_while(|&&b| b == b'*').count();
                    p += stars;
                    if stars == 1 {
                        tokens.push(Token::Star);
                    } else {
                        if pat.get(p) == Some(&b'/') {
                            // The `/` is pushed next, as a plain byte.
                            tokens.push(Token::SkipDirs);
                        }
                        tokens.push(Token::AnyRun);
                    }
                }
                b'?' => {
                    tokens.push(Token::One);
                    p += 1;
                }
                b'[' => match last_close
                    .filter(|&close| close >= p + 2)
                    .and_then(|_| class(pat, p, 0))
                {
                    Some((_, next)) => {
                        // The class's extent does not depend on the byte; its members do.
                        let mut set = ByteSet([0; 4]);
                        for b in (0..=u8::MAX).filter(|&b| b != b'/') {
                            if class(pat, p, b).is_some_and(|(ok, _)| ok) {
                                set.insert(b);
                            }
                        }
                        tokens.push(Token::Class(set));
                        p = next;
                    }
                    None => {
                        tokens.push(Token::Byte(b'['));
                        p += 1;
                    }
                },
                b'\\' if p + 1 < pat.len() => {
                    tokens.push(Token::Byte(pat[p + 1]));
                    p += 2;
                }
                _ => {
                    tokens.push(Token::Byte(c));
                    p += 1;
                }
            }
        }
        Glob { tokens }
    }

    /// Whether the whole of `s` matches.
    pub(crate) fn matches(&self, s: &[u8]) -> bool {
        self.run(s, false)
    }

    /// Whether `s` matches from its start or from just after any `/` in it, to its end.
    pub(crate) fn matches_at_any_boundary(&self, s: &[u8]) -> bool {
        self.run(s, true)
    }

    /// The Thompson simulation: O(tokens × `s`). With `restart`, state 0 is live again after
    /// every `/`, which is matching every suffix that starts at a directory boundary at once.
    fn run(&self, s: &[u8], restart: bool) -> bool {
        /// Up to this many states, the two state sets live on the stack (no allocation per
        /// path and rule).
        const ON_STACK: usize = 64;
        let n = self.tokens.len();
        let mut stack = [false; 2 * ON_STACK];
        let mut heap = Vec::new();
        let (mut live, mut next) = if n < ON_STACK {
            let (a, b) = stack.split_at_mut(ON_STACK);
            (&mut a[..=n], &mut b[..=n])
        } else {
            heap.resize(2 * (n + 1), false);
            heap.split_at_mut(n + 1)
        };
        live[0] = true;
        self.close(live);
        let mut i = 0;
        while let Some(&c) = s.get(i) {
            i += 1;
            next.fill(false);
            let mut any = false;
            for (state, token) in self.tokens.iter().enumerate() {
                if !live[state] {
                    continue;
                }
                let to = match token {
                    Token::Byte(b) => (c == *b).then_some(state + 1),
                    Token::One => (c != b'/').then_some(state + 1),
                    Token::Class(set) => set.contains(c).then_some(state + 1),
                    Token::Star => (c != b'/').then_some(state),
                    Token::AnyRun => Some(state),
                    Token::SkipDirs => None,
                };
                if let Some(to) = to {
                    next[to] = true;
                    any = true;
                }
            }
            if restart && c == b'/' {
                next[0] = true;
                any = true;
            }
            if !any {
                // Nothing can match any more, until the next directory boundary if restarting:
                // go on from that `/` with no live state.
                if !restart {
                    return false;
                }
                match s[i..].iter().position(|&b| b == b'/') {
                    Some(k) => i += k,
                    None => return false,
                }
            }
            self.close(next);
            std::mem::swap(&mut live, &mut next);
        }
        live[n]
    }

    /// Add the states reachable without consuming a byte. Those moves only go forward, so one
    /// pass in state order is enough.
    fn close(&self, live: &mut [bool]) {
        for (state, token) in self.tokens.iter().enumerate() {
            if !live[state] {
                continue;
            }
            match token {
                Token::Star | Token::AnyRun => live[state + 1] = true,
                Token::SkipDirs => {
                    // Tokens `state + 1` and `state + 2` are `**` and `/`: `state + 3` exists.
                    live[state + 1] = true;
                    live[state + 3] = true;
                }
                Token::Byte(_) | Token::One | Token::Class(_) => {}
            }
        }
    }
}

/// Match a `[…]` class at `pat[p]` against `c`: `Some((matched, index after the class))`, or
/// `None` when the class is not closed (then `[` is literal).
fn class(pat: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut q = p + 1;
    let negate = matches!(pat.get(q), Some(b'!') | Some(b'^'));
    if negate {
        q += 1;
    }
    let mut matched = false;
    let mut first = true;
    while q < pat.len() {
        let b = pat[q];
        if b == b']' && !first {
            return Some((matched != negate, q + 1));
        }
        first = false;
        if q + 2 < pat.len() && pat[q + 1] == b'-' && pat[q + 2] != b']' {
            if (b..=pat[q + 2]).contains(&c) {
                matched = true;
            }
            q += 3;
        } else {
            if b == c {
                matched = true;
            }
            q += 1;
        }
    }
    None
}

/// The backtracking matcher `glob` had before the compiled one (exponential in the number of
/// stars), kept as the reference the differential tests compare against.
#[cfg(test)]
fn glob_reference(pat: &[u8], s: &[u8]) -> bool {
    let Some(&c) = pat.first() else {
        return s.is_empty();
    };
    match c {
        b'*' => {
            let stars = pat.iter().take_while(|&&b| b == b'*').count();
            let rest = &pat[stars..];
            if stars >= 2 {
                // `**/` matches zero or more whole directories.
                if rest.first() == Some(&b'/') && glob_reference(&rest[1..], s) {
                    return true;
                }
                (0..=s.len()).any(|k| glob_reference(rest, &s[k..]))
            } else {
                for k in 0..=s.len() {
                    if glob_reference(rest, &s[k..]) {
                        return true;
                    }
                    if k < s.len() && s[k] == b'/' {
                        break;
                    }
                }
                false
            }
        }
        b'?' => !s.is_empty() && s[0] != b'/' && glob_reference(&pat[1..], &s[1..]),
        b'[' => match (s.first(), class(pat, 0, s.first().copied().unwrap_or(0))) {
            (Some(&b), Some((ok, next))) => {
                ok && b != b'/' && glob_reference(&pat[next..], &s[1..])
            }
            (Some(&b'['), None) => glob_reference(&pat[1..], &s[1..]),
            _ => false,
        },
        b'\\' if pat.len() > 1 => s.first() == Some(&pat[1]) && glob_reference(&pat[2..], &s[1..]),
        _ => s.first() == Some(&c) && glob_reference(&pat[1..], &s[1..]),
    }
}

impl FilterRules {
    /// No rules: everything is included.
    pub fn new() -> Self {
        FilterRules::default()
    }

    /// Append `--exclude=PAT`.
    pub fn exclude(&mut self, pattern: &str) {
        self.push(FilterRule::new(RuleKind::Exclude, pattern));
    }

    /// Append `--include=PAT`.
    pub fn include(&mut self, pattern: &str) {
        self.push(FilterRule::new(RuleKind::Include, pattern));
    }

    pub(crate) fn push(&mut self, rule: FilterRule) {
        self.rules.push(Entry::Rule(rule));
    }

    /// Append one `--filter=RULE` (`- PAT`, `+ PAT`, `exclude PAT`, `-/ PAT`, `merge FILE`,
    /// `dir-merge FILE`, … or `!`). A `merge` file is read now (`-`: standard input).
    pub fn add_filter(&mut self, rule: &str) -> Result<(), FilterError> {
        super::filter_merge::add_rule_text(self, rule, &super::filter_merge::Template::default())
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules as another arsync parses them back (`--filter=…`), in order: merge files
    /// already read, per-directory merge rules as they were given.
    pub fn forward_rules(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|e| match e {
                Entry::Rule(r) => r.for_rsync(),
                Entry::DirMerge(m) => m.for_rsync(),
            })
            .collect()
    }

    /// The rules a remote rsync receiver applies to `--delete`, in order, as it expects them on
    /// the wire (`send_rules` from a sender: receiver-side rules carry `r`). Under
    /// `--delete-excluded` a rule for both sides stays on this side only (upstream elides it),
    /// so the receiver deletes what it excludes; receiver-side rules (`P`, `R`) still go.
    pub fn receiver_rules_for_rsync(&self, delete_excluded: bool) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|e| match e {
                Entry::Rule(r) => {
                    let prefix = match r.kind {
                        RuleKind::Exclude | RuleKind::Include if delete_excluded => return None,
                        RuleKind::Exclude => "-",
                        RuleKind::Include => "+",
                        RuleKind::Protect => "-r",
                        RuleKind::Risk => "+r",
                        RuleKind::Hide | RuleKind::Show => return None,
                    };
                    Some(r.rsync_text(prefix))
                }
                Entry::DirMerge(m) => m
                    .sent_to_rsync_receiver(delete_excluded)
                    .then(|| m.for_rsync()),
            })
            .collect()
    }

    /// The rules a remote rsync sender must apply, in order, as it expects them on the wire.
    pub fn sender_rules_for_rsync(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|e| match e {
                Entry::Rule(r) => r.for_rsync_sender(),
                Entry::DirMerge(m) => m.applies_to_sender().then(|| m.for_rsync()),
            })
            .collect()
    }

    /// Whether every rule applies to both sides (only `-` and `+`, no per-directory merge
    /// files): then what the sender leaves out is exactly what the receiver protects.
    pub fn sides_agree(&self) -> bool {
        self.rules.iter().all(|e| {
            matches!(e, Entry::Rule(r) if matches!(r.kind, RuleKind::Exclude | RuleKind::Include))
        })
    }

    /// Whether the list has per-directory merge files (then each directory has its own list:
    /// [`super::filter_merge::DirFilters`]).
    pub fn has_dir_merge(&self) -> bool {
        self.rules.iter().any(|e| matches!(e, Entry::DirMerge(_)))
    }

    /// Whether a directory's list can differ from this one: per-directory merge files, or
    /// `/` rules to be tied to where the transfer is.
    pub fn varies_by_dir(&self) -> bool {
        self.rules.iter().any(|e| match e {
            Entry::DirMerge(_) => true,
            Entry::Rule(r) => r.abs,
        })
    }

    /// Sender side: whether `path` is left out of the transfer.
    pub fn excluded_for_sender(&self, path: &[u8], is_dir: bool) -> bool {
        self.first_match(path, is_dir, &|k| {
            matches!(
                k,
                RuleKind::Exclude | RuleKind::Include | RuleKind::Hide | RuleKind::Show
            )
        })
        .is_some_and(|k| matches!(k, RuleKind::Exclude | RuleKind::Hide))
    }

    /// Receiver side: whether `path` in the destination is protected from `--delete`.
    pub fn protected_for_receiver(&self, path: &[u8], is_dir: bool) -> bool {
        self.first_match(path, is_dir, &|k| {
            matches!(
                k,
                RuleKind::Exclude | RuleKind::Include | RuleKind::Protect | RuleKind::Risk
            )
        })
        .is_some_and(|k| matches!(k, RuleKind::Exclude | RuleKind::Protect))
    }

    /// Receiver side, under `--delete`: whether `path` is protected from deletion. With
    /// `--delete-excluded` only receiver-side rules (`P`, `R`) count: a sender keeps the rules
    /// for both sides to itself then (upstream's `send_rules`), so they protect nothing.
    pub fn protected_from_delete(&self, path: &[u8], is_dir: bool, delete_excluded: bool) -> bool {
        if !delete_excluded {
            return self.protected_for_receiver(path, is_dir);
        }
        self.first_match(path, is_dir, &|k| {
            matches!(k, RuleKind::Protect | RuleKind::Risk)
        }) == Some(RuleKind::Protect)
    }

    /// Receiver side, inside a directory `--delete` removes: whether `path` is protected and
    /// so keeps the directory, perishable rules ignored (upstream's `ignore_perishable`);
    /// with `--delete-excluded` only receiver-side rules, as [`Self::protected_from_delete`].
    pub fn protected_in_deleted_dir(
        &self,
        path: &[u8],
        is_dir: bool,
        delete_excluded: bool,
    ) -> bool {
        let counted = |k: RuleKind| match k {
            RuleKind::Protect | RuleKind::Risk => true,
            RuleKind::Exclude | RuleKind::Include => !delete_excluded,
            _ => false,
        };
        self.first_match_where(path, is_dir, &|r| !r.perishable && counted(r.kind))
            .is_some_and(|k| matches!(k, RuleKind::Exclude | RuleKind::Protect))
    }

    fn first_match(
        &self,
        path: &[u8],
        is_dir: bool,
        applies: &dyn Fn(RuleKind) -> bool,
    ) -> Option<RuleKind> {
        self.first_match_where(path, is_dir, &|r| applies(r.kind))
    }

    fn first_match_where(
        &self,
        path: &[u8],
        is_dir: bool,
        applies: &dyn Fn(&FilterRule) -> bool,
    ) -> Option<RuleKind> {
        for e in &self.rules {
            match e {
                Entry::Rule(r) => {
                    if applies(r) && r.matches(path, is_dir) {
                        return Some(r.kind);
                    }
                }
                Entry::DirMerge(m) => {
                    for layer in m.layers() {
                        if let Some(k) = layer.first_match_where(path, is_dir, applies) {
                            return Some(k);
                        }
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
