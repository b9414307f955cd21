//! Tests of [`super`]: glob forms, rule forms, linear matching, and agreement with the
//! backtracking matcher.

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
    // More states than the matcher keeps on the stack.
    let long = "?a".repeat(50);
    assert!(glob(long.as_bytes(), &b"ba".repeat(50)));
    assert!(!glob(long.as_bytes(), &b"ba".repeat(49)));
    let r = FilterRule::new(RuleKind::Exclude, &format!("{long}/x"));
    assert!(r.matches(
        &[b"z/".as_slice(), &b"ba".repeat(50), b"/x"].concat(),
        false
    ));
    assert!(!r.matches(&[b"z".as_slice(), &b"ba".repeat(50), b"/x"].concat(), false));
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
    assert!(f.add_filter("merge /nonexistent/.rules").is_err());
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

/// A 4,000-byte path: 250 seven-`a` directories, then a 2,000-`a` file name.
fn long_path() -> Vec<u8> {
    let mut p = b"aaaaaaa/".repeat(250);
    p.extend_from_slice(&[b'a'; 2000]);
    p
}

#[test]
fn star_heavy_patterns_are_linear() {
    // (pattern, `glob` on the whole path, the rule on the path). The backtracking matcher
    // had not finished these after a minute (issue 13: `*?*?**.*[./*`, from the fuzzer,
    // took over 10 s alone).
    let cases: &[(&str, bool, bool)] = &[
        ("*?*?**.*[./*", false, false),
        ("*a*a*a*a*a*a*a*b", false, false),
        ("*a*a*a*a*a*a*a*a", false, true),
        ("**a**a**a**a**b", false, false),
        ("**a**a**a**a**a", true, true),
        ("**/a*a*a*a*a*a*/**b", false, false),
        ("*/*/*/*/*/*/*/*/*/*b", false, false),
        ("*/*/*/*/*/*/*/*/*/*a", false, true),
        ("/**/**/**/**/**/a?", false, false),
    ];
    let path = long_path();
    assert_eq!(path.len(), 4000);
    let start = std::time::Instant::now();
    for &(pat, whole, rule) in cases {
        let glob_pat = pat.strip_prefix('/').unwrap_or(pat);
        assert_eq!(glob(glob_pat.as_bytes(), &path), whole, "glob {pat}");
        let r = FilterRule::new(RuleKind::Exclude, pat);
        assert_eq!(r.matches(&path, false), rule, "rule {pat}");
    }
    // Compiling is linear too: 4,000 unclosed `[`, each a literal.
    assert!(!glob(&[b'['; 4000], b"["));
    let took = start.elapsed();
    assert!(
        took < std::time::Duration::from_millis(200),
        "took {took:?}"
    );
}

/// The old `FilterRule::matches`, on [`glob_reference`]: `dir/***` as two patterns, and
/// the unanchored case as a loop over every directory boundary.
fn matches_reference(r: &FilterRule, path: &[u8], is_dir: bool) -> bool {
    if r.dir_only && !is_dir {
        return false;
    }
    let matches_pattern = |pattern: &[u8]| {
        if !r.full_path {
            let name = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => &path[i + 1..],
                None => path,
            };
            return glob_reference(pattern, name);
        }
        if r.anchored || glob_reference(pattern, path) {
            return glob_reference(pattern, path);
        }
        path.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .any(|(i, _)| glob_reference(pattern, &path[i + 1..]))
    };
    if let Some(base) = r.pattern.strip_suffix(b"/***") {
        let mut below = base.to_vec();
        below.extend_from_slice(b"/**");
        return matches_pattern(base) || matches_pattern(&below);
    }
    matches_pattern(&r.pattern)
}

/// splitmix64: a deterministic PRNG, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick(&mut self, from: &[u8]) -> u8 {
        from[self.below(from.len())]
    }
}

/// Pattern bytes, `*` twice as likely (star runs); `^` too, the other negation.
const PATTERN_BYTES: &[u8] = b"ab/**?[]!-\\^";
const STRING_BYTES: &[u8] = b"ab/*?[]!-\\^";

fn random_pattern(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(11);
    (0..len).map(|_| rng.pick(PATTERN_BYTES)).collect()
}

/// A string of at most 12 bytes: half random, half spelled from `pat` (star → a short
/// run, `?` → one byte, anything else kept, sometimes changed) so that many match.
fn random_string(rng: &mut Rng, pat: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    if rng.below(2) == 0 {
        let len = rng.below(13);
        s.extend((0..len).map(|_| rng.pick(STRING_BYTES)));
    } else {
        for &b in pat {
            match b {
                b'*' => s.extend((0..rng.below(4)).map(|_| rng.pick(STRING_BYTES))),
                b'?' => s.push(rng.pick(STRING_BYTES)),
                _ if rng.below(8) == 0 => s.push(rng.pick(STRING_BYTES)),
                _ => s.push(b),
            }
        }
        s.truncate(12);
    }
    s
}

#[test]
fn glob_agrees_with_the_backtracking_matcher() {
    let mut rng = Rng(13);
    let mut matched = 0;
    for _ in 0..200_000 {
        let pat = random_pattern(&mut rng);
        let s = random_string(&mut rng, &pat);
        let want = glob_reference(&pat, &s);
        assert_eq!(
            glob(&pat, &s),
            want,
            "pattern {:?} on {:?}",
            String::from_utf8_lossy(&pat),
            String::from_utf8_lossy(&s)
        );
        matched += usize::from(want);
    }
    // Not vacuous: a good share of the cases match.
    assert!(matched > 20_000, "only {matched} matches");
}

#[test]
fn rules_agree_with_the_backtracking_matcher() {
    let mut rng = Rng(6);
    let mut matched = 0;
    for _ in 0..200_000 {
        let mut pat = random_pattern(&mut rng);
        let s = random_string(&mut rng, &pat);
        // Anchored, dir-only and `dir/***` forms too.
        match rng.below(6) {
            0 => pat.insert(0, b'/'),
            1 => pat.push(b'/'),
            2 => pat.extend_from_slice(b"/***"),
            _ => {}
        }
        let text = String::from_utf8_lossy(&pat);
        let rule = FilterRule::new(RuleKind::Exclude, &text);
        for is_dir in [false, true] {
            let want = matches_reference(&rule, &s, is_dir);
            assert_eq!(
                rule.matches(&s, is_dir),
                want,
                "rule {text:?} on {:?}, dir {is_dir}",
                String::from_utf8_lossy(&s)
            );
            matched += usize::from(want);
        }
    }
    assert!(matched > 20_000, "only {matched} matches");
}
