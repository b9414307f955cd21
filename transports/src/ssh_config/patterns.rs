//! Patterns and expansion: the `*` / `?` glob `ssh` uses for host patterns and `Include`,
//! pattern lists with `!` negation (`Host`, `Match host a,b,!c`), `%x` tokens and a leading
//! `~`.
//!
//! What it owns: these pure string functions. What it does not own: which tokens a keyword
//! takes and their values (`resolve`); `~user` and `${ENV}` are not expanded, unknown `%`
//! tokens are left as written.

use std::path::{Path, PathBuf};

/// `*` (any run) and `?` (any one character) glob match of the whole of `text`.
pub(super) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A pattern list as `ssh` matches it: some non-negated pattern matches and no negated one
/// (`!pattern`) does.
pub(super) fn pattern_list_match<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
    text: &str,
    fold_case: bool,
) -> bool {
    let text = if fold_case {
        text.to_lowercase()
    } else {
        text.to_owned()
    };
    let mut matched = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let hit = if fold_case {
            wildcard_match(&pattern.to_lowercase(), &text)
        } else {
            wildcard_match(pattern, &text)
        };
        if hit {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Replace `%x` tokens from `tokens`, `%%` with `%`; unknown tokens stay as written.
pub(super) fn expand_tokens(s: &str, tokens: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match tokens.iter().find(|(name, _)| *name == t) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// `~` and `~/…` → under `home`; `~user/…` and everything else unchanged.
pub(super) fn expand_tilde(s: &str, home: &Path) -> PathBuf {
    if s == "~" {
        home.to_owned()
    } else if let Some(rest) = s.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "abc"));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("??", "ab"));
        assert!(!wildcard_match("??", "abc"));
        assert!(wildcard_match("*.conf", "x.conf"));
        assert!(!wildcard_match("*.conf", "x.conf.bak"));
        assert!(wildcard_match("10.0.*.?", "10.0.12.3"));
    }
}
