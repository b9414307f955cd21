//! `--info=FLAGS` and `--debug=FLAGS`: rsync's fine-grained output levels, with rsync's names,
//! defaults per `-v` level and error for an unknown item. Owns the levels; what each level
//! prints is `output`'s business.

/// rsync's `--info` categories and their levels (0 = silent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InfoLevels {
    pub backup: u8,
    pub copy: u8,
    pub del: u8,
    pub flist: u8,
    pub misc: u8,
    pub mount: u8,
    pub name: u8,
    pub nonreg: u8,
    pub progress: u8,
    pub remove: u8,
    pub skip: u8,
    pub stats: u8,
    pub symsafe: u8,
}

/// rsync's `--info=help`.
pub const INFO_HELP: &str = "\
Use OPT or OPT1 for level 1 output, OPT2 for level 2, etc.; OPT0 silences.

BACKUP     Mention files backed up
COPY       Mention files copied locally on the receiving side
DEL        Mention deletions on the receiving side
FLIST      Mention file-list receiving/sending (levels 1-2)
MISC       Mention miscellaneous information (levels 1-2)
MOUNT      Mention mounts that were found or skipped
NAME       Mention 1) updated file/dir names, 2) unchanged names
NONREG     Mention skipped non-regular files (default 1, 0 disables)
PROGRESS   Mention 1) per-file progress or 2) total transfer progress
REMOVE     Mention files removed on the sending side
SKIP       Mention files skipped due to transfer overrides (levels 1-2)
STATS      Mention statistics at end of run (levels 1-3)
SYMSAFE    Mention symlinks that are unsafe

ALL        Set all --info options (e.g. all4)
NONE       Silence all --info options (same as all0)
HELP       Output this help message

Options added at each level of verbosity:
0) NONREG
1) COPY,DEL,FLIST,MISC,NAME,STATS,SYMSAFE
2) BACKUP,MISC2,MOUNT,NAME2,REMOVE,SKIP
";

/// rsync's `--debug` categories (arsync accepts them; its own diagnostics are `-vv` and
/// `--explain`).
pub const DEBUG_NAMES: [&str; 24] = [
    "ACL", "BACKUP", "BIND", "CHDIR", "CONNECT", "CMD", "DEL", "DELTASUM", "DUP", "EXIT", "FILTER",
    "FLIST", "FUZZY", "GENR", "HASH", "HLINK", "ICONV", "IO", "NSTR", "OWN", "PROTO", "RECV",
    "SEND", "TIME",
];

impl InfoLevels {
    /// What `-v` × `verbose` turns on, as rsync's table says (`-q`: nothing).
    pub fn for_verbosity(verbose: u8, quiet: bool) -> InfoLevels {
        let mut l = InfoLevels::default();
        if quiet {
            return l;
        }
        l.nonreg = 1;
        if verbose >= 1 {
            (l.copy, l.del, l.flist, l.misc, l.name, l.stats, l.symsafe) = (1, 1, 1, 1, 1, 1, 1);
        }
        if verbose >= 2 {
            (l.backup, l.misc, l.mount, l.name, l.remove, l.skip) = (1, 2, 1, 2, 1, 1);
        }
        l
    }

    fn slot(&mut self, name: &str) -> Option<&mut u8> {
        Some(match name {
            "BACKUP" => &mut self.backup,
            "COPY" => &mut self.copy,
            "DEL" => &mut self.del,
            "FLIST" => &mut self.flist,
            "MISC" => &mut self.misc,
            "MOUNT" => &mut self.mount,
            "NAME" => &mut self.name,
            "NONREG" => &mut self.nonreg,
            "PROGRESS" => &mut self.progress,
            "REMOVE" => &mut self.remove,
            "SKIP" => &mut self.skip,
            "STATS" => &mut self.stats,
            "SYMSAFE" => &mut self.symsafe,
            _ => return None,
        })
    }

    /// Apply one `--info` value (items separated by commas or spaces). `Ok(true)`: `help` was
    /// asked for.
    pub fn apply(&mut self, flags: &str) -> Result<bool, String> {
        let mut help = false;
        for item in items(flags) {
            let (name, level) = split_level(item);
            match name.as_str() {
                "HELP" => help = true,
                "ALL" => {
                    for n in [
                        "BACKUP", "COPY", "DEL", "FLIST", "MISC", "MOUNT", "NAME", "NONREG",
                        "PROGRESS", "REMOVE", "SKIP", "STATS", "SYMSAFE",
                    ] {
                        if let Some(s) = self.slot(n) {
                            *s = level.unwrap_or(1);
                        }
                    }
                }
                "NONE" => *self = InfoLevels::default(),
                n => match self.slot(n) {
                    Some(s) => *s = level.unwrap_or(1),
                    None => return Err(format!("Unknown --info item: \"{item}\"")),
                },
            }
        }
        Ok(help)
    }
}

/// Check one `--debug` value. `Ok(true)`: `help` was asked for.
pub fn check_debug(flags: &str) -> Result<bool, String> {
    let mut help = false;
    for item in items(flags) {
        let (name, _) = split_level(item);
        match name.as_str() {
            "HELP" => help = true,
            "ALL" | "NONE" => {}
            n if DEBUG_NAMES.contains(&n) => {}
            _ => return Err(format!("Unknown --debug item: \"{item}\"")),
        }
    }
    Ok(help)
}

/// `--debug=help`.
pub fn debug_help() -> String {
    let mut s = String::from(
        "Use OPT or OPT1 for level 1 output, OPT2 for level 2, etc.; OPT0 silences.\n\n",
    );
    for n in DEBUG_NAMES {
        s.push_str(n);
        s.push('\n');
    }
    s.push_str("\nALL        Set all --debug options (e.g. all4)\n");
    s.push_str("NONE       Silence all --debug options (same as all0)\n");
    s.push_str("HELP       Output this help message\n");
    s.push_str("\narsync accepts these names; its own diagnostics are -vv and --explain.\n");
    s
}

fn items(flags: &str) -> impl Iterator<Item = &str> {
    flags
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// `name2` → (`NAME`, Some(2)); `name` → (`NAME`, None).
fn split_level(item: &str) -> (String, Option<u8>) {
    let digits = item.len() - item.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (name, level) = item.split_at(item.len() - digits);
    (
        name.to_ascii_uppercase(),
        level.parse::<u8>().ok().map(|l| l.min(9)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_defaults_follow_rsyncs_table() {
        let l = InfoLevels::for_verbosity(0, false);
        assert_eq!((l.nonreg, l.name, l.stats), (1, 0, 0));
        let l = InfoLevels::for_verbosity(1, false);
        assert_eq!((l.name, l.stats, l.del, l.flist, l.skip), (1, 1, 1, 1, 0));
        let l = InfoLevels::for_verbosity(2, false);
        assert_eq!((l.name, l.misc, l.skip, l.remove), (2, 2, 1, 1));
        assert_eq!(InfoLevels::for_verbosity(3, true), InfoLevels::default());
    }

    #[test]
    fn items_levels_and_unknowns() {
        let mut l = InfoLevels::default();
        assert_eq!(l.apply("name2,stats3 progress2"), Ok(false));
        assert_eq!((l.name, l.stats, l.progress), (2, 3, 2));
        assert_eq!(l.apply("NAME0"), Ok(false));
        assert_eq!(l.name, 0);
        assert_eq!(l.apply("help"), Ok(true));
        assert_eq!(l.apply("all2"), Ok(false));
        assert_eq!((l.backup, l.symsafe), (2, 2));
        assert_eq!(l.apply("none"), Ok(false));
        assert_eq!(l, InfoLevels::default());
        assert_eq!(
            l.apply("name,foo"),
            Err("Unknown --info item: \"foo\"".to_owned())
        );
        assert_eq!(check_debug("filter2,del"), Ok(false));
        assert_eq!(
            check_debug("bogus"),
            Err("Unknown --debug item: \"bogus\"".to_owned())
        );
    }
}
