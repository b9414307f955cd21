//! rsync's `--out-format` / `--log-file-format` escapes (`log.c` `log_formatted`): what one
//! line of output says about one item. Pure: the caller gathers the item's facts
//! ([`ItemFacts`]) and prints the line.
//!
//! Supported: `%n %f %L %i %l %b %o %B %M %U %G %t %p %c %C %h %a %m %u %P %%`, with rsync's
//! field width (`%-10n`, `%10l`) and `'` for thousands separators (`%'l`). Daemon-only escapes
//! (`%h %a %m %u %P`) are empty outside a daemon, as rsync prints them for a client.

use arsync_core::engine::stats::commas;

/// What a line can say about one item.
#[derive(Debug, Clone, Default)]
pub struct ItemFacts {
    /// `%n`: the name as rsync prints it (a directory with a trailing `/`).
    pub name: String,
    /// `%f`: the long name (the source argument's path on a sender, no trailing `/`).
    pub full_name: String,
    /// `%L`: ` -> TARGET` for a symlink, ` => LEADER` for a hard link, else empty.
    pub link: String,
    /// `%i`: the itemize code (`>f+++++++++`, `*deleting  `).
    pub itemize: String,
    /// `%l`: the file's length.
    pub length: u64,
    /// `%b`: bytes of file data that moved for it.
    pub bytes: u64,
    /// `%o`: `send`, `recv` or `del.`.
    pub op: &'static str,
    /// `%B`: permission bits (`rwxr-xr-x`).
    pub perms: u32,
    /// `%M`: modification time, seconds since the epoch.
    pub mtime: i64,
    /// `%U`, `%G`: owner and group ids (`None`: not preserved, `%G` prints `DEFAULT`).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// `YYYY/MM/DD HH:MM:SS` (with `sep` between date and time) in local time.
pub fn local_time(secs: i64, sep: char) -> String {
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack frame.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return "????/??/??".to_owned();
    }
    format!(
        "{:04}/{:02}/{:02}{sep}{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `rwxr-xr-x` for the low 12 bits of `mode` (setuid/setgid/sticky as `s`/`S`, `t`/`T`).
pub fn perm_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, ch) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => ch,
            (false, true) => ch.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Render `format` for `item`, as rsync does.
/// Whether `format` has an `%i` escape (flags and width allowed: `%-12i`), which makes its
/// lines itemized ones (rsync's `log_format_has(stdout_format, 'i')`).
pub fn shows_itemize(format: &str) -> bool {
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        let after = rest[at + 1..]
            .trim_start_matches(|c: char| c == '\'' || c == '-' || c.is_ascii_digit());
        // As upstream, a `%` after a `%` starts the next escape (`%%i` counts).
        match after.chars().next() {
            Some('i') => return true,
            _ => rest = after,
        }
    }
    false
}

pub fn render(format: &str, item: &ItemFacts) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Flags and width: `'` (thousands), `-` (left-align), digits.
        let (mut grouped, mut left, mut width) = (false, false, 0usize);
        while let Some(&f) = chars.peek() {
            match f {
                '\'' => grouped = true,
                '-' => left = true,
                d if d.is_ascii_digit() => width = width * 10 + (d as usize - '0' as usize),
                _ => break,
            }
            chars.next();
        }
        let number = |n: u64| if grouped { commas(n) } else { n.to_string() };
        let value = match chars.next() {
            Some('n') => item.name.clone(),
            Some('f') => item.full_name.clone(),
            Some('L') => item.link.clone(),
            Some('i') => item.itemize.clone(),
            Some('l') => number(item.length),
            Some('b') => number(item.bytes),
            Some('o') => item.op.to_owned(),
            Some('B') => perm_string(item.perms),
            Some('M') => local_time(item.mtime, '-'),
            Some('t') => local_time(now(), ' '),
            Some('p') => std::process::id().to_string(),
            Some('U') => item.uid.unwrap_or(0).to_string(),
            Some('G') => item
                .gid
                .map_or_else(|| "DEFAULT".to_owned(), |g| g.to_string()),
            Some('c' | 'C' | 'h' | 'a' | 'm' | 'u' | 'P') => String::new(),
            Some('%') => "%".to_owned(),
            Some(other) => format!("%{other}"),
            None => "%".to_owned(),
        };
        if value.chars().count() >= width {
            out.push_str(&value);
        } else if left {
            out.push_str(&format!("{value:<width$}"));
        } else {
            out.push_str(&format!("{value:>width$}"));
        }
    }
    out
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_itemize_escape_is_found_with_flags_and_width() {
        for (format, has) in [
            ("%i %n%L", true),
            ("%-12i %n", true),
            ("%'10i", true),
            ("%n%L", false),
            ("%o %B %n", false),
            ("i %n", false),
            ("100%", false),
        ] {
            assert_eq!(shows_itemize(format), has, "{format}");
        }
    }

    use super::*;

    fn file() -> ItemFacts {
        ItemFacts {
            name: "d/b".into(),
            full_name: "src/d/b".into(),
            itemize: ">f+++++++++".into(),
            length: 4096,
            bytes: 4096,
            op: "send",
            perms: 0o644,
            gid: None,
            ..ItemFacts::default()
        }
    }

    #[test]
    fn escapes_widths_and_separators() {
        let f = file();
        assert_eq!(
            render("%o|%n|%f|%l|%i|%L|%B|%'l|%-6n|%6n|%G|%%", &f),
            "send|d/b|src/d/b|4096|>f+++++++++||rw-r--r--|4,096|d/b   |   d/b|DEFAULT|%"
        );
        let mut l = file();
        l.link = " -> a".into();
        assert_eq!(render("%n%L", &l), "d/b -> a");
        assert_eq!(render("%p", &l), std::process::id().to_string());
        assert_eq!(render("50%", &l), "50%");
    }

    #[test]
    fn permission_strings() {
        assert_eq!(perm_string(0o755), "rwxr-xr-x");
        assert_eq!(perm_string(0o4755), "rwsr-xr-x");
        assert_eq!(perm_string(0o2644), "rw-r-Sr--");
        assert_eq!(perm_string(0o1777), "rwxrwxrwt");
    }

    #[test]
    fn times_look_like_rsyncs() {
        let t = local_time(0, '-');
        assert_eq!(t.len(), "1970/01/01-00:00:00".len());
        assert_eq!(&t[4..5], "/");
        assert_eq!(&t[10..11], "-");
    }
}
