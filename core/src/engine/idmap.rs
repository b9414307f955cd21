//! Issue 15, own: rsync's `--usermap`/`--groupmap` (and `--chown`, which rsync turns into
//! `*:USER` / `*:GROUP` maps): the map syntax, checked where the command line is parsed, and
//! the rules resolved on the receiver, which applies them (upstream's `parse_name_map` and
//! `recv_add_id` in uidlist.c).
//!
//! A map is a comma list of `FROM:TO`. `FROM` is a sender's name (matched exactly), a
//! wildcard over names (`*`, `?`, `[`; `*` alone also matches an entry sent without a name),
//! an id, or an id range `LOW-HIGH`; `TO` is a receiver's name or id. The first rule that
//! matches wins. Owns no lookups of its own beyond resolving `TO` (through `nix`).

use nix::unistd::{Group, User};

use super::filter::glob;

/// What a rule's `FROM` matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The sender's name, exactly.
    Name(Vec<u8>),
    /// A wildcard over the sender's name (empty when it sent none).
    Wild(Vec<u8>),
    /// The sender's id, in `low..=high`.
    Ids(u32, u32),
}

/// One `FROM:TO` rule, `TO` resolved to a local id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    from: Source,
    to: u32,
}

/// A parsed, resolved map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    rules: Vec<Rule>,
}

/// Which map: users or groups (for messages and for resolving names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// `--usermap`.
    User,
    /// `--groupmap`.
    Group,
}

impl MapKind {
    fn word(self) -> &'static str {
        match self {
            MapKind::User => "user",
            MapKind::Group => "group",
        }
    }

    /// The local id of `name` (all digits: the number itself).
    fn resolve(self, name: &str) -> Option<u32> {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            return name.parse().ok();
        }
        match self {
            MapKind::User => User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()),
            MapKind::Group => Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw()),
        }
    }
}

/// One rule's `FROM` and `TO`, syntax only.
fn split_rule(rule: &str, kind: MapKind) -> Result<(Source, &str), String> {
    let Some((from, to)) = rule.split_once(':') else {
        return Err(format!("No colon found in --{}map: {rule}", kind.word()));
    };
    if to.is_empty() {
        return Err(format!(
            "No name found after colon --{}map: {rule}",
            kind.word()
        ));
    }
    let invalid = || format!("Invalid number in --{}map: {from}", kind.word());
    let from = if from.starts_with(|c: char| c.is_ascii_digit()) {
        if !from.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Err(invalid());
        }
        let id = |s: &str| s.parse::<u32>().map_err(|_| invalid());
        match from.split_once('-') {
            Some((low, high)) => Source::Ids(id(low)?, id(high)?),
            None => Source::Ids(id(from)?, id(from)?),
        }
    } else if from.contains(['*', '?', '[']) {
        Source::Wild(from.as_bytes().to_vec())
    } else {
        Source::Name(from.as_bytes().to_vec())
    };
    Ok((from, to))
}

/// Check a map's syntax (rsync's errors, exit 1), without resolving names.
pub fn check_syntax(map: &str, kind: MapKind) -> Result<(), String> {
    map.split(',')
        .try_for_each(|r| split_rule(r, kind).map(|_| ()))
}

impl IdMap {
    /// Parse `map` and resolve each `TO` here (on the receiver). A `TO` unknown here drops
    /// its rule with a message, as rsync does (`Unknown --usermap name on receiver`).
    pub fn parse(map: &str, kind: MapKind, mut warn: impl FnMut(String)) -> Result<Self, String> {
        let mut rules = Vec::new();
        for rule in map.split(',') {
            let (from, to) = split_rule(rule, kind)?;
            match kind.resolve(to) {
                Some(to) => rules.push(Rule { from, to }),
                None => warn(format!(
                    "Unknown --{}map name on receiver: {to}",
                    kind.word()
                )),
            }
        }
        Ok(IdMap { rules })
    }

    /// The local id the first matching rule gives the sender's (`name`, `id`), if one does.
    pub fn lookup(&self, name: &[u8], id: u32) -> Option<u32> {
        self.rules
            .iter()
            .find(|r| match &r.from {
                Source::Name(n) => n == name,
                Source::Wild(p) => glob(p, name),
                Source::Ids(low, high) => (*low..=*high).contains(&id),
            })
            .map(|r| r.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(s: &str, kind: MapKind) -> IdMap {
        IdMap::parse(s, kind, |m| panic!("{m}")).expect("parses")
    }

    #[test]
    fn first_match_wins_over_names_ids_ranges_and_wildcards() {
        let m = map("daemon:5,100-199:7,r??t:8,*:9", MapKind::User);
        assert_eq!(m.lookup(b"daemon", 1), Some(5));
        assert_eq!(m.lookup(b"someone", 150), Some(7));
        assert_eq!(m.lookup(b"root", 0), Some(8));
        assert_eq!(m.lookup(b"", 4000), Some(9));
        let m = map("0:bin,root:daemon", MapKind::User);
        assert_eq!(m.lookup(b"root", 0), Some(2));
        assert_eq!(m.lookup(b"x", 12), None);
    }

    #[test]
    fn names_resolve_on_the_receiver_and_unknown_ones_are_dropped() {
        let mut said = Vec::new();
        let m = IdMap::parse("a:root,b:no-such-user-arsync", MapKind::User, |w| {
            said.push(w)
        })
        .expect("parses");
        assert_eq!(m.lookup(b"a", 1), Some(0));
        assert_eq!(m.lookup(b"b", 1), None);
        assert_eq!(
            said,
            ["Unknown --usermap name on receiver: no-such-user-arsync"]
        );
    }

    #[test]
    fn syntax_errors_are_rsyncs() {
        assert_eq!(
            check_syntax("a", MapKind::User).unwrap_err(),
            "No colon found in --usermap: a"
        );
        assert_eq!(
            check_syntax("a:", MapKind::Group).unwrap_err(),
            "No name found after colon --groupmap: a:"
        );
        assert!(check_syntax("1-2-3:x", MapKind::User).is_err());
        assert!(check_syntax("1x:x", MapKind::User).is_err());
        assert!(check_syntax("1-:x", MapKind::User).is_err());
        assert!(check_syntax("*:0,5-9:x", MapKind::User).is_ok());
    }
}
