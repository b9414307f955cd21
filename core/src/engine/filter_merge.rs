//! Filter rule text with rsync's modifiers, merge files and per-directory merge files.
//!
//! Owns: turning one `--filter` rule (or a line of a merge file) into entries of a
//! [`FilterRules`] list as upstream's `parse_rule_tok`/`parse_filter_str` do: the rule words
//! and letters, the modifiers `/ ! s r p` on rules and `- + C e n w / s r p` on merge rules,
//! `merge FILE` (read at once), `dir-merge FILE` (read in every directory entered, inherited
//! below unless `n`, a file's rules in front of the inherited ones, as `push_local_filters`),
//! the parent-directory scan of a merge name with a leading `/` (`setup_merge_file`), and
//! `-C`'s rules (`get_cvs_excludes`). Does not match paths ([`super::filter`]) nor walk trees
//! (the scan and the receiver's deletions call [`FilterRules::enter_dir`]).
//!
//! Refused with a message naming it: the `x` modifier (xattr names), a `merge` or
//! `dir-merge` rule inside a per-directory merge file, and a `dir-merge` name with a relative
//! directory part.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::filter::{Anchor, Entry, FilterError, FilterRule, FilterRules, RuleKind};

/// rsync's `-C` list (rsync(1), `--cvs-exclude`), all perishable.
pub const DEFAULT_CVSIGNORE: &str = "RCS SCCS CVS CVS.adm RCSLOG cvslog.* tags TAGS .make.state \
     .nse_depinfo *~ #* .#* ,* _$* *$ *.old *.bak *.BAK *.orig *.rej .del-* *.a *.olb *.o *.obj \
     *.so *.exe *.Z *.elc *.ln core .svn/ .git/ .hg/ .bzr/";

/// How deep merge files may name merge files (upstream's `MAX_MERGE_DEPTH`).
const MAX_MERGE_DEPTH: usize = 32;

/// The modifiers a merge rule gives the rules read from its file (upstream's template).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Template {
    /// `-` / `+`: lines are bare patterns, excludes (`Some(false)`) or includes.
    no_prefixes: Option<bool>,
    /// `w` (and `C`): split on whitespace, one rule a word.
    word_split: bool,
    /// `n` (and `C`): the rules are not inherited by subdirectories.
    no_inherit: bool,
    /// `C`: a `.cvsignore`-style file (`!` clears).
    cvs: bool,
    /// `/`: the rules match absolute paths.
    abs: bool,
    /// `p`: the rules are perishable.
    perishable: bool,
    /// `s`: the rules are for the sending side only.
    sender: bool,
    /// `r`: the rules are for the receiving side only.
    receiver: bool,
    /// While reading a per-directory merge file: rules are anchored there, and merge rules
    /// are refused.
    in_dir: bool,
}

/// A `dir-merge` rule: its file's name, its template, and the rules read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMerge {
    /// The merge file's name as given (for forwarding).
    given: String,
    /// The name looked for in each directory.
    name: String,
    /// For a name with a leading `/`: the directory the parent scan starts at.
    scan_from: Option<PathBuf>,
    template: Template,
    /// The rules read in the directories entered, the deepest first.
    layers: Vec<Arc<FilterRules>>,
}

impl DirMerge {
    pub(crate) fn layers(&self) -> impl Iterator<Item = &FilterRules> {
        self.layers.iter().map(|l| &**l)
    }

    pub(crate) fn applies_to_sender(&self) -> bool {
        !self.template.receiver || self.template.sender
    }

    /// Whether a sender gives this rule to an rsync receiver (`send_rules`): a receiver-side
    /// one (`r`) always, a sender-side one (`s` alone) never, one for both sides unless
    /// `--delete-excluded` and its lines are bare patterns (`-`/`+`), which then stay here.
    pub(crate) fn sent_to_rsync_receiver(&self, delete_excluded: bool) -> bool {
        let t = &self.template;
        let kept_here = t.sender || (delete_excluded && t.no_prefixes.is_some());
        t.receiver || !kept_here
    }

    /// The rule as rsync sends it (`get_rule_prefix` for a per-directory merge rule).
    pub(crate) fn for_rsync(&self) -> String {
        let t = &self.template;
        let mut s = String::from(":");
        if t.abs {
            s.push('/');
        }
        if t.cvs {
            s.push('C');
        } else {
            if t.no_inherit {
                s.push('n');
            }
            if t.word_split {
                s.push('w');
            }
            match t.no_prefixes {
                Some(true) => s.push('+'),
                Some(false) => s.push('-'),
                None => {}
            }
        }
        if t.sender {
            s.push('s');
        }
        if t.receiver {
            s.push('r');
        }
        if t.perishable {
            s.push('p');
        }
        s.push(' ');
        s.push_str(&self.given);
        s
    }
}

/// What one rule token is.
#[derive(Debug, Default)]
struct Flags {
    include: bool,
    merge: bool,
    per_dir: bool,
    clear: bool,
    negate: bool,
    exclude_self: bool,
    /// What the rules of a merge file inherit.
    t: Template,
}

/// Parse `text` (one `--filter` value or one line of a merge file) under `template` and
/// append what it says to `list`.
pub fn add_rule_text(
    list: &mut FilterRules,
    text: &str,
    template: &Template,
) -> Result<(), FilterError> {
    add_rule_text_at(list, text, template, 0)
}

fn add_rule_text_at(
    list: &mut FilterRules,
    text: &str,
    template: &Template,
    depth: usize,
) -> Result<(), FilterError> {
    let err = |why: String| FilterError::new(text, why);
    let mut rest = text;
    loop {
        if template.word_split {
            rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        }
        if rest.is_empty() {
            return Ok(());
        }
        let (flags, pat, after) = parse_token(rest, template).map_err(err)?;
        rest = after;
        apply(list, flags, pat, depth, template.in_dir).map_err(err)?;
        if !template.word_split {
            return Ok(());
        }
    }
}

/// One token: its flags, its pattern, and the text after it (upstream's `parse_rule_tok`).
fn parse_token<'a>(s: &'a str, t: &Template) -> Result<(Flags, &'a str, &'a str), String> {
    let mut f = Flags {
        t: Template {
            abs: t.abs,
            perishable: t.perishable,
            ..Template::default()
        },
        include: t.no_prefixes == Some(true),
        ..Flags::default()
    };
    let mut side_given = false;
    let mut body = s;
    if t.no_prefixes.is_some() {
        if s.starts_with('!') && t.cvs {
            f.clear = true;
        }
    } else {
        const WORDS: [(&str, char); 9] = [
            ("clear", '!'),
            ("dir-merge", ':'),
            ("exclude", '-'),
            ("hide", 'H'),
            ("include", '+'),
            ("merge", '.'),
            ("protect", 'P'),
            ("risk", 'R'),
            ("show", 'S'),
        ];
        let word = WORDS.iter().find_map(|(w, ch)| {
            let after = s.strip_prefix(w)?;
            matches!(after.chars().next(), None | Some(' ' | '_' | ','))
                .then_some((*ch, after.strip_prefix(',').unwrap_or(after)))
        });
        let (ch, mut mods) = match word {
            Some(w) => w,
            None => {
                let ch = s.chars().next().unwrap_or(' ');
                let after = &s[ch.len_utf8()..];
                (ch, after.strip_prefix(',').unwrap_or(after))
            }
        };
        match ch {
            ':' => {
                f.per_dir = true;
                f.merge = true;
            }
            '.' => f.merge = true,
            '+' => f.include = true,
            '-' => {}
            'S' | 'H' => {
                f.include = ch == 'S';
                f.t.sender = true;
                side_given = true;
            }
            'R' | 'P' => {
                f.include = ch == 'R';
                f.t.receiver = true;
                side_given = true;
            }
            '!' => f.clear = true,
            _ => return Err("unknown rule".into()),
        }
        if !f.clear {
            let end = mods
                .find(|c: char| c == ' ' || c == '_' || (t.word_split && c.is_ascii_whitespace()))
                .unwrap_or(mods.len());
            for m in mods[..end].chars() {
                let bad = || Err(format!("invalid modifier '{m}'"));
                match m {
                    '-' | '+' if f.merge && f.t.no_prefixes.is_none() => {
                        f.t.no_prefixes = Some(m == '+');
                    }
                    '/' => f.t.abs = true,
                    '!' if !f.merge => f.negate = true,
                    'C' if f.t.no_prefixes.is_none() && !side_given => {
                        f.t.no_prefixes = Some(false);
                        f.t.word_split = true;
                        f.t.no_inherit = true;
                        f.t.cvs = true;
                    }
                    'e' if f.merge => f.exclude_self = true,
                    'n' if f.merge => f.t.no_inherit = true,
                    'w' if f.merge => f.t.word_split = true,
                    'p' => f.t.perishable = true,
                    'r' if !side_given => f.t.receiver = true,
                    's' if !side_given => f.t.sender = true,
                    'x' => {
                        return Err("the 'x' modifier (xattr filter rules) is not supported".into())
                    }
                    _ => return bad(),
                }
            }
            mods = &mods[end..];
        }
        body = match mods.chars().next() {
            Some(' ' | '_') => &mods[1..],
            Some(c) if t.word_split && c.is_ascii_whitespace() => &mods[1..],
            _ => mods,
        };
    }
    if t.sender || t.receiver {
        if f.t.sender || f.t.receiver {
            return Err("specified-side merge file contains specified-side filter".into());
        }
        f.t.sender = t.sender;
        f.t.receiver = t.receiver;
    }
    let len = if t.word_split {
        body.find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(body.len())
    } else {
        body.len()
    };
    let (pat, after) = body.split_at(len);
    if f.clear {
        if t.no_prefixes.is_none() && !pat.is_empty() {
            return Err("'!' rule has trailing characters".into());
        }
        if pat.len() > 1 {
            f.clear = false;
        }
    } else if pat.is_empty() && !f.t.cvs {
        return Err("unexpected end of filter rule".into());
    }
    Ok((f, pat, after))
}

fn apply(
    list: &mut FilterRules,
    f: Flags,
    pat: &str,
    depth: usize,
    in_dir: bool,
) -> Result<(), String> {
    if f.clear {
        list.rules.clear();
        list.cleared = true;
        return Ok(());
    }
    if f.merge {
        let pat = if pat.is_empty() { ".cvsignore" } else { pat };
        if in_dir {
            return Err("a merge rule inside a per-directory merge file is not supported".into());
        }
        if f.exclude_self {
            let base = pat.rsplit('/').next().unwrap_or(pat);
            list.push(FilterRule::new(RuleKind::Exclude, base));
        }
        if f.per_dir {
            return add_dir_merge(list, pat, f.t);
        }
        if depth >= MAX_MERGE_DEPTH {
            return Err(format!(
                "merge-file include depth limit ({MAX_MERGE_DEPTH}) exceeded at {pat}"
            ));
        }
        let text = read_merge_file(pat).map_err(|e| {
            format!(
                "failed to open {}clude file {pat}: {}",
                if f.t.no_prefixes == Some(true) {
                    "in"
                } else {
                    "ex"
                },
                super::scan::os_error(&e)
            )
        })?;
        return merge_text(list, &text, &f.t, depth + 1).map_err(|e| e.to_string());
    }
    if f.t.cvs {
        // `-C`: the default list (perishable), ~/.cvsignore, then $CVSIGNORE.
        let words = Template {
            no_prefixes: Some(false),
            word_split: true,
            sender: f.t.sender,
            receiver: f.t.receiver,
            ..Template::default()
        };
        let perishable = Template {
            perishable: true,
            ..words
        };
        merge_text(list, DEFAULT_CVSIGNORE.as_bytes(), &perishable, depth + 1)
            .map_err(|e| e.to_string())?;
        if let Some(home) = std::env::var_os("HOME") {
            if let Ok(text) = std::fs::read(Path::new(&home).join(".cvsignore")) {
                merge_text(list, &text, &words, depth + 1).map_err(|e| e.to_string())?;
            }
        }
        if let Some(env) = std::env::var_os("CVSIGNORE") {
            use std::os::unix::ffi::OsStrExt;
            merge_text(list, env.as_bytes(), &words, depth + 1).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let kind = match (f.include, f.t.sender, f.t.receiver) {
        (false, true, false) => RuleKind::Hide,
        (true, true, false) => RuleKind::Show,
        (false, false, true) => RuleKind::Protect,
        (true, false, true) => RuleKind::Risk,
        (false, _, _) => RuleKind::Exclude,
        (true, _, _) => RuleKind::Include,
    };
    let mut rule = FilterRule::new(kind, pat);
    rule.negate = f.negate;
    rule.perishable = f.t.perishable;
    rule.abs = f.t.abs;
    list.push(rule);
    Ok(())
}

fn add_dir_merge(list: &mut FilterRules, pat: &str, t: Template) -> Result<(), String> {
    let (name, scan_from) = match pat.rsplit_once('/') {
        None => (pat.to_owned(), None),
        Some((dir, name)) if pat.starts_with('/') => (
            name.to_owned(),
            Some(PathBuf::from(if dir.is_empty() { "/" } else { dir })),
        ),
        Some(_) => {
            return Err(
                "a dir-merge file name with a relative directory part is not supported".into(),
            )
        }
    };
    // Upstream's `add_rule`: a per-directory file already named is not added again.
    let named = list
        .rules
        .iter()
        .any(|e| matches!(e, Entry::DirMerge(m) if m.name == name));
    if !named {
        list.rules.push(Entry::DirMerge(Box::new(DirMerge {
            given: pat.to_owned(),
            name,
            scan_from,
            template: t,
            layers: Vec::new(),
        })));
    }
    Ok(())
}

/// A merge file's contents (`-`: standard input).
fn read_merge_file(name: &str) -> io::Result<Vec<u8>> {
    if name == "-" {
        let mut v = Vec::new();
        io::stdin().read_to_end(&mut v)?;
        return Ok(v);
    }
    std::fs::read(name)
}

/// Add the rules of a merge file's `text` (upstream's `parse_filter_file`): one rule a line
/// (CR, LF or CRLF), or a word with `w`/`C`; `;` and `#` lines are comments unless split.
fn merge_text(
    list: &mut FilterRules,
    text: &[u8],
    t: &Template,
    depth: usize,
) -> Result<(), FilterError> {
    let text = String::from_utf8_lossy(text);
    for (n, lf_line) in text.split('\n').enumerate() {
        for line in lf_line.split('\r') {
            if line.is_empty()
                || (!t.word_split && (line.starts_with(';') || line.starts_with('#')))
            {
                continue;
            }
            add_rule_text_at(list, line, t, depth)
                .map_err(|e| e.at(format!("line {} of a merge file", n + 1)))?;
        }
    }
    Ok(())
}

/// Reads a per-directory merge file: `Ok(None)` when the directory has none.
pub type ReadMergeFile<'a> = dyn FnMut(&Path) -> io::Result<Option<Vec<u8>>> + 'a;

impl FilterRules {
    /// The rules for the contents of directory `dir` (relative to the list's root; `.` is
    /// the root), this list being its parent's: every per-directory merge file `dir` has,
    /// read with `read` (given the file's path relative to `dir`), goes in front of what is
    /// inherited (upstream's `push_local_filters`). `None` when nothing changes.
    pub fn enter_dir(
        &self,
        dir: &[u8],
        read: &mut ReadMergeFile<'_>,
    ) -> Result<Option<FilterRules>, FilterError> {
        if !self.has_dir_merge() {
            return Ok(None);
        }
        let anchor = if dir == b"." || dir.is_empty() {
            Anchor::Root
        } else {
            Anchor::Below(dir.to_vec())
        };
        let mut out = self.clone();
        for e in &mut out.rules {
            let Entry::DirMerge(m) = e else { continue };
            if m.template.no_inherit {
                m.layers.clear();
            }
            let text = read(Path::new(&m.name)).map_err(|e| {
                FilterError::new(
                    &m.name,
                    format!("reading it: {}", super::scan::os_error(&e)),
                )
            })?;
            if let Some(text) = text {
                push_layer(m, &text, &anchor)?;
            }
        }
        Ok(Some(out))
    }

    /// [`Self::enter_dir`] for the first directory of a transfer, `first` on this machine,
    /// whose list paths hang from `base`: a merge name with a leading `/` first has its file
    /// read in every directory from that one down to `first`'s parent (upstream's
    /// `setup_merge_file`), with `read_at` given the whole path.
    pub fn enter_first_dir(
        &self,
        dir: &[u8],
        first: &Path,
        base: &Path,
        read_at: &mut ReadMergeFile<'_>,
    ) -> Result<Option<FilterRules>, FilterError> {
        if !self.varies_by_dir() {
            return Ok(None);
        }
        let mut scanned = self.clone();
        // `/` rules: the absolute path is `base`'s path, then the list's.
        use std::os::unix::ffi::OsStrExt;
        let base_path: PathBuf = base.components().collect();
        let base_path = base_path.as_os_str().as_bytes();
        let base_path = base_path.strip_prefix(b"/").unwrap_or(base_path);
        for e in &mut scanned.rules {
            if let Entry::Rule(r) = e {
                if r.abs {
                    r.anchor = Anchor::Above(base_path.to_vec());
                }
            }
        }
        for e in &mut scanned.rules {
            let Entry::DirMerge(m) = e else { continue };
            let Some(from) = m.scan_from.clone() else {
                continue;
            };
            let Ok(below) = first.strip_prefix(&from) else {
                continue;
            };
            let mut at = from.clone();
            let mut steps: Vec<PathBuf> = vec![at.clone()];
            let comps: Vec<_> = below.components().collect();
            for c in comps.iter().take(comps.len().saturating_sub(1)) {
                at.push(c);
                steps.push(at.clone());
            }
            if comps.is_empty() {
                steps.clear();
            }
            for d in steps {
                let text = read_at(&d.join(&m.name)).map_err(|e| {
                    FilterError::new(
                        &m.name,
                        format!("reading it: {}", super::scan::os_error(&e)),
                    )
                })?;
                if let Some(text) = text {
                    push_layer(m, &text, &anchor_of(&d, base))?;
                }
            }
            if m.template.no_inherit {
                m.layers.clear();
            }
        }
        let rel_read = &mut |name: &Path| read_at(&first.join(name));
        Ok(Some(scanned.enter_dir(dir, rel_read)?.unwrap_or(scanned)))
    }
}

/// Where a merge file in directory `d` anchors, for paths hanging from `base`.
fn anchor_of(d: &Path, base: &Path) -> Anchor {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(rel) = d.strip_prefix(base) {
        let rel = rel.as_os_str().as_bytes();
        return if rel.is_empty() {
            Anchor::Root
        } else {
            Anchor::Below(rel.to_vec())
        };
    }
    match base.strip_prefix(d) {
        Ok(rel) => Anchor::Above(rel.as_os_str().as_bytes().to_vec()),
        Err(_) => Anchor::Root,
    }
}

/// Parse one directory's merge file into a layer in front of `m`'s others; a `!` in it
/// clears what it inherited (upstream's `pop_filter_list` on a clear).
fn push_layer(m: &mut DirMerge, text: &[u8], anchor: &Anchor) -> Result<(), FilterError> {
    let mut layer = FilterRules::new();
    let t = Template {
        in_dir: true,
        ..m.template
    };
    merge_text(&mut layer, text, &t, 1)?;
    for e in &mut layer.rules {
        if let Entry::Rule(r) = e {
            r.anchor = anchor.clone();
        }
    }
    if layer.cleared {
        m.layers.clear();
    }
    m.layers.insert(0, Arc::new(layer));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(
        map: &'static [(&'static str, &'static str)],
    ) -> impl FnMut(&Path) -> io::Result<Option<Vec<u8>>> {
        move |p: &Path| {
            Ok(map
                .iter()
                .find(|(k, _)| Path::new(k) == p)
                .map(|(_, v)| v.as_bytes().to_vec()))
        }
    }

    #[test]
    fn modifiers_and_refusals() {
        let mut f = FilterRules::new();
        f.add_filter("-! *.c").unwrap();
        assert!(f.excluded_for_sender(b"a.h", false));
        assert!(!f.excluded_for_sender(b"a.c", false));
        let err = f.add_filter("-x user.*").unwrap_err().to_string();
        assert!(err.contains("'x' modifier"), "{err}");
        assert!(f.add_filter("merge,! x").is_err());
        assert!(f.add_filter("dir-merge sub/.rules").is_err());
        assert!(f.add_filter("-q x").is_err());
        let mut d = FilterRules::new();
        d.add_filter("dir-merge,n- .ex").unwrap();
        d.add_filter(":C").unwrap();
        assert_eq!(d.forward_rules(), [":n- .ex", ":C .cvsignore"]);
    }

    #[test]
    fn per_directory_layers_and_parent_scan() {
        let mut f = FilterRules::new();
        f.add_filter(": /.rules").unwrap();
        static FILES: &[(&str, &str)] = &[
            ("/t/.rules", "- /src/above\n"),
            ("/t/src/.rules", "- *.o\n- /anchored\n"),
            ("/t/src/sub/.rules", "+ keep.o\n"),
        ];
        let root = f
            .enter_first_dir(
                b"src",
                Path::new("/t/src"),
                Path::new("/t"),
                &mut files(FILES),
            )
            .unwrap()
            .unwrap();
        assert!(root.excluded_for_sender(b"src/above", false));
        assert!(root.excluded_for_sender(b"src/x.o", false));
        assert!(root.excluded_for_sender(b"src/anchored", false));
        let mut sub_files = |p: &Path| files(FILES)(&Path::new("/t/src/sub").join(p));
        let sub = root.enter_dir(b"src/sub", &mut sub_files).unwrap().unwrap();
        assert!(!sub.excluded_for_sender(b"src/sub/keep.o", false));
        assert!(sub.excluded_for_sender(b"src/sub/y.o", false));
        assert!(!sub.excluded_for_sender(b"src/sub/anchored", false));
    }
}

#[cfg(test)]
mod abs_tests {
    use super::*;

    #[test]
    fn abs_rules_match_the_whole_path_once_entered() {
        let mut f = FilterRules::new();
        f.add_filter("-/ src/ok").unwrap();
        f.add_filter("-/ /t/src/y").unwrap();
        assert!(f.varies_by_dir());
        let e = f
            .enter_first_dir(
                b".",
                Path::new("/t/src/"),
                Path::new("/t/src/."),
                &mut |_| Ok(None),
            )
            .unwrap()
            .unwrap();
        assert!(e.excluded_for_sender(b"ok", false));
        assert!(e.excluded_for_sender(b"y", false));
        assert!(!e.excluded_for_sender(b"z", false));
        assert_eq!(f.forward_rules(), ["-/ src/ok", "-/ /t/src/y"]);
    }
}
