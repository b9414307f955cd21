//! Include/exclude rules with rsync's matching semantics, as a pure function of a path.
//!
//! Owns: parsing `--exclude`, `--include` and the common `--filter` rule forms (`- PAT`,
//! `+ PAT`, `exclude PAT`, `include PAT`, `hide`, `show`, `protect`, `risk`, `!`), and matching
//! with `*`, `**`, `?`, `[…]`, anchored `/PAT`, dir-only `PAT/` and `dir/***`. Does not own
//! merge files (`.`/`:` rules are refused with a clear message) or per-directory filter files.
//!
//! Semantics (rsync(1) "FILTER RULES"): the first matching rule decides; a pattern without a
//! `/` (other than a trailing one) matches the last path component; one with a `/` or `**`
//! matches the whole path relative to the transfer root, anchored at the root when it starts
//! with `/` and otherwise at any directory boundary.

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
}

/// A rule list in command-line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterRules {
    rules: Vec<FilterRule>,
}

/// A rule that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter rule {rule:?}: {why}")]
pub struct FilterError {
    rule: String,
    why: &'static str,
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
        FilterRule {
            kind,
            pattern: p.to_vec(),
            anchored,
            dir_only,
            full_path,
        }
    }

    /// The rule as rsync sends it (`send_rules`, `get_rule_prefix`): prefix, pattern, a
    /// trailing `/` when directory-only.
    fn for_rsync(&self) -> String {
        let prefix = match self.kind {
            RuleKind::Exclude => "- ",
            RuleKind::Include => "+ ",
            RuleKind::Hide => "-s ",
            RuleKind::Show => "+s ",
            RuleKind::Protect => "-r ",
            RuleKind::Risk => "+r ",
        };
        let mut s = String::from(prefix);
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
            return false;
        }
        if let Some(base) = self.pattern.strip_suffix(b"/***") {
            // `dir/***`: the directory itself, or anything below it.
            let mut below = base.to_vec();
            below.extend_from_slice(b"/**");
            return self.matches_pattern(base, path) || self.matches_pattern(&below, path);
        }
        self.matches_pattern(&self.pattern, path)
    }

    fn matches_pattern(&self, pattern: &[u8], path: &[u8]) -> bool {
        if !self.full_path {
            let name = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => &path[i + 1..],
                None => path,
            };
            return glob(pattern, name);
        }
        if self.anchored || glob(pattern, path) {
            return glob(pattern, path);
        }
        // Unanchored: may match at any directory boundary.
        path.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .any(|(i, _)| glob(pattern, &path[i + 1..]))
    }
}

fn windows_contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// rsync's wildcard match: `*` any run without `/`, `**` any run, `**/` also zero
/// directories, `?` one non-`/` byte, `[…]` a class (with `!` or `^` negation and ranges), `\`
/// escapes. Patterns come from the local command line and are short; the recursion is bounded
/// by pattern length times path length.
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    let Some(&c) = pat.first() else {
        return s.is_empty();
    };
    match c {
        b'*' => {
            let stars = pat.iter().take_while(|&&b| b == b'*').count();
            let rest = &pat[stars..];
            if stars >= 2 {
                // `**/` matches zero or more whole directories.
                if rest.first() == Some(&b'/') && glob(&rest[1..], s) {
                    return true;
                }
                (0..=s.len()).any(|k| glob(rest, &s[k..]))
            } else {
                for k in 0..=s.len() {
                    if glob(rest, &s[k..]) {
                        return true;
                    }
                    if k < s.len() && s[k] == b'/' {
                        break;
                    }
                }
                false
            }
        }
        b'?' => !s.is_empty() && s[0] != b'/' && glob(&pat[1..], &s[1..]),
        b'[' => match (s.first(), class(pat, 0, s.first().copied().unwrap_or(0))) {
            (Some(&b), Some((ok, next))) => ok && b != b'/' && glob(&pat[next..], &s[1..]),
            (Some(&b'['), None) => glob(&pat[1..], &s[1..]),
            _ => false,
        },
        b'\\' if pat.len() > 1 => s.first() == Some(&pat[1]) && glob(&pat[2..], &s[1..]),
        _ => s.first() == Some(&c) && glob(&pat[1..], &s[1..]),
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

impl FilterRules {
    /// No rules: everything is included.
    pub fn new() -> Self {
        FilterRules::default()
    }

    /// Append `--exclude=PAT`.
    pub fn exclude(&mut self, pattern: &str) {
        self.rules.push(FilterRule::new(RuleKind::Exclude, pattern));
    }

    /// Append `--include=PAT`.
    pub fn include(&mut self, pattern: &str) {
        self.rules.push(FilterRule::new(RuleKind::Include, pattern));
    }

    /// Append one `--filter=RULE` (`- PAT`, `+ PAT`, `exclude PAT`, `-/ PAT`… or `!`).
    pub fn add_filter(&mut self, rule: &str) -> Result<(), FilterError> {
        let err = |why| FilterError {
            rule: rule.to_owned(),
            why,
        };
        let rule_t = rule.trim_start();
        if rule_t == "!" || rule_t == "clear" {
            self.rules.clear();
            return Ok(());
        }
        let (head, pat) = match rule_t.find([' ', '_']) {
            Some(i) => (&rule_t[..i], &rule_t[i + 1..]),
            None => return Err(err("expected a rule and a pattern")),
        };
        let (word, mods) = match head.find(',') {
            Some(i) => (&head[..i], &head[i + 1..]),
            None if head.len() > 1 && !head.chars().all(|c| c.is_ascii_alphabetic()) => {
                // A one-character rule with modifiers ("-/", "+s"); split after the first
                // character, not byte (found by fuzzing: "é…" must not panic).
                let at = head.char_indices().nth(1).map_or(head.len(), |(i, _)| i);
                (&head[..at], &head[at..])
            }
            None => (head, ""),
        };
        let kind = match word {
            "-" | "exclude" => RuleKind::Exclude,
            "+" | "include" => RuleKind::Include,
            "H" | "hide" => RuleKind::Hide,
            "S" | "show" => RuleKind::Show,
            "P" | "protect" => RuleKind::Protect,
            "R" | "risk" => RuleKind::Risk,
            "." | ":" | "merge" | "dir-merge" => {
                return Err(err("merge files are not supported yet"))
            }
            _ => return Err(err("unknown rule")),
        };
        let (kind, pat) = match mods {
            "" => (kind, pat),
            // `-/` and `+/` match against the absolute path; we treat them as anchored.
            "/" => (kind, pat),
            "s" => (
                match kind {
                    RuleKind::Exclude => RuleKind::Hide,
                    RuleKind::Include => RuleKind::Show,
                    k => k,
                },
                pat,
            ),
            "r" => (
                match kind {
                    RuleKind::Exclude => RuleKind::Protect,
                    RuleKind::Include => RuleKind::Risk,
                    k => k,
                },
                pat,
            ),
            _ => return Err(err("unsupported rule modifier")),
        };
        if pat.is_empty() {
            return Err(err("empty pattern"));
        }
        self.rules.push(FilterRule::new(kind, pat));
        Ok(())
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules a remote rsync receiver applies to `--delete`, in order, as it expects them on
    /// the wire (`send_rules` from a sender: receiver-side rules carry `r`).
    pub fn receiver_rules_for_rsync(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|r| {
                let prefix = match r.kind {
                    RuleKind::Exclude => "- ",
                    RuleKind::Include => "+ ",
                    RuleKind::Protect => "-r ",
                    RuleKind::Risk => "+r ",
                    RuleKind::Hide | RuleKind::Show => return None,
                };
                let s = r.for_rsync();
                Some(format!("{prefix}{}", s.split_once(' ').map_or("", |x| x.1)))
            })
            .collect()
    }

    /// The rules a remote rsync sender must apply, in order, as it expects them on the wire.
    pub fn sender_rules_for_rsync(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(FilterRule::for_rsync_sender)
            .collect()
    }

    /// Whether every rule applies to both sides (only `-` and `+`): then what the sender
    /// leaves out is exactly what the receiver protects.
    pub fn sides_agree(&self) -> bool {
        self.rules
            .iter()
            .all(|r| matches!(r.kind, RuleKind::Exclude | RuleKind::Include))
    }

    /// Sender side: whether `path` is left out of the transfer.
    pub fn excluded_for_sender(&self, path: &[u8], is_dir: bool) -> bool {
        self.first_match(path, is_dir, |k| {
            matches!(
                k,
                RuleKind::Exclude | RuleKind::Include | RuleKind::Hide | RuleKind::Show
            )
        })
        .is_some_and(|k| matches!(k, RuleKind::Exclude | RuleKind::Hide))
    }

    /// Receiver side: whether `path` in the destination is protected from `--delete`.
    pub fn protected_for_receiver(&self, path: &[u8], is_dir: bool) -> bool {
        self.first_match(path, is_dir, |k| {
            matches!(
                k,
                RuleKind::Exclude | RuleKind::Include | RuleKind::Protect | RuleKind::Risk
            )
        })
        .is_some_and(|k| matches!(k, RuleKind::Exclude | RuleKind::Protect))
    }

    fn first_match(
        &self,
        path: &[u8],
        is_dir: bool,
        applies: impl Fn(RuleKind) -> bool,
    ) -> Option<RuleKind> {
        self.rules
            .iter()
            .filter(|r| applies(r.kind))
            .find(|r| r.matches(path, is_dir))
            .map(|r| r.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob(b"*.log", b"a.log"));
        assert!(!glob(b"*.log", b"d/a.log"));
        assert!(glob(b"**.log", b"d/a.log"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"a/c"));
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[!a-c]x", b"bx"));
        assert!(glob(b"**/deep/*.tmp", b"x/y/deep/f.tmp"));
        assert!(!glob(b"**/deep/*.tmp", b"x/y/deep/z/f.tmp"));
        assert!(glob(b"*", b""));
        // `**/` may match zero directories.
        assert!(glob(b"**/deep/*.tmp", b"deep/c.tmp"));
        assert!(glob(b"a\\*b", b"a*b"));
        assert!(!glob(b"a\\*b", b"axb"));
    }

    #[test]
    fn rule_forms() {
        let mut f = FilterRules::new();
        f.exclude("*.log");
        f.exclude("/top-only");
        f.exclude("build/");
        f.add_filter("- **/deep/*.tmp").unwrap();
        assert!(f.excluded_for_sender(b"x/y.log", false));
        assert!(f.excluded_for_sender(b"top-only", false));
        assert!(!f.excluded_for_sender(b"sub/top-only", false));
        assert!(!f.excluded_for_sender(b"d/top-only", true));
        assert!(f.excluded_for_sender(b"a/build", true));
        assert!(!f.excluded_for_sender(b"a/build", false));
        assert!(f.excluded_for_sender(b"a/deep/z.tmp", false));
        assert!(!f.excluded_for_sender(b"a/keep.txt", false));
        assert!(f.add_filter("merge .rules").is_err());
        // Non-ASCII rule words are refused, not a panic.
        assert!(f.add_filter("é* x").is_err());
        assert!(f.add_filter("\u{10348}\u{10348} x").is_err());
    }

    #[test]
    fn include_then_exclude_everything() {
        let mut f = FilterRules::new();
        f.include("*/");
        f.include("*.c");
        f.exclude("*");
        assert!(!f.excluded_for_sender(b"src", true));
        assert!(!f.excluded_for_sender(b"src/a.c", false));
        assert!(f.excluded_for_sender(b"src/a.h", false));
    }

    #[test]
    fn unanchored_slash_pattern_matches_at_boundaries() {
        let r = FilterRule::new(RuleKind::Exclude, "a/b");
        assert!(r.matches(b"a/b", false));
        assert!(r.matches(b"x/a/b", false));
        assert!(!r.matches(b"xa/b", false));
    }

    #[test]
    fn triple_star() {
        let r = FilterRule::new(RuleKind::Include, "/dir/***");
        assert!(r.matches(b"dir", true));
        assert!(r.matches(b"dir/a/b", false));
        assert!(!r.matches(b"other", true));
    }

    #[test]
    fn protect_and_sender_only_rules() {
        let mut f = FilterRules::new();
        f.add_filter("P keep.me").unwrap();
        f.add_filter("H secret").unwrap();
        assert!(f.protected_for_receiver(b"keep.me", false));
        assert!(!f.excluded_for_sender(b"keep.me", false));
        assert!(f.excluded_for_sender(b"secret", false));
        assert!(!f.protected_for_receiver(b"secret", false));
    }
}
