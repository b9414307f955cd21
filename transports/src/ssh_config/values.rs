//! Lines, words and values: splitting `Keyword value` / `Keyword=value`, splitting arguments
//! the way `ssh` does (quotes, backslashes, `#` comments), and each keyword this backend acts
//! on checked and turned into a [`Setting`] (ports, yes/no flags, `StrictHostKeyChecking`,
//! times like `1m30s`, file lists with `none`).
//!
//! What it owns: the syntax of one directive, wherever it comes from (a configuration line or
//! `-o`), and the error message for a bad one. What it does not own: where a directive applies
//! (`file`, `resolve`) or what its value becomes after `%` / `~` expansion (`resolve`).
//! Keywords not acted on are accepted as [`Setting::Unhandled`], not refused.

use std::time::Duration;

use super::StrictHostKeyChecking;

/// One validated directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Setting {
    HostName(String),
    Port(u16),
    User(String),
    IdentityFile(String),
    IdentitiesOnly(bool),
    ProxyJump(String),
    ProxyCommand(String),
    UserKnownHostsFiles(Vec<String>),
    GlobalKnownHostsFiles(Vec<String>),
    StrictHostKeyChecking(StrictHostKeyChecking),
    BatchMode(bool),
    ConnectTimeout(Option<Duration>),
    ServerAliveInterval(Option<Duration>),
    /// A keyword we accept but do not act on, as written.
    Unhandled(String),
}

/// Split `Keyword value`, `Keyword=value` or `Keyword = value` into the keyword and the rest
/// (trimmed).
pub(super) fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim();
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (keyword, rest)
}

/// Split arguments as `ssh` does: whitespace separates; single and double quotes group; a
/// backslash escapes a quote, a backslash or (outside quotes) a space, and is otherwise kept;
/// an unquoted `#` starting a word begins a comment.
pub(super) fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.peek() {
                    Some(&next @ ('\\' | '"' | '\'')) => {
                        word.push(next);
                        chars.next();
                    }
                    Some(&next) if quote.is_none() && next.is_whitespace() => {
                        word.push(next);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if quote == Some(c) => quote = None,
                c => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        words.push(word);
    }
    Ok(words)
}

/// Validate one directive given its keyword and the raw rest of the line.
pub(super) fn parse_setting(keyword: &str, rest: &str) -> Result<Setting, String> {
    let args = split_args(rest)?;
    if args.iter().any(String::is_empty) {
        return Err(format!("{keyword}: empty argument"));
    }
    setting_from_args(keyword, rest, args)
}

/// Validate one directive given its keyword, the raw rest of the line (for `ProxyCommand`,
/// which takes it verbatim) and the rest split into arguments.
pub(super) fn setting_from_args(
    keyword: &str,
    rest: &str,
    args: Vec<String>,
) -> Result<Setting, String> {
    let key = keyword.to_ascii_lowercase();
    let single = |args: Vec<String>| -> Result<String, String> {
        let mut args = args.into_iter();
        let first = args
            .next()
            .ok_or_else(|| format!("{keyword}: missing argument"))?;
        if args.next().is_some() {
            return Err(format!("{keyword}: extra arguments at end of line"));
        }
        Ok(first)
    };
    let flag = |args: Vec<String>| -> Result<bool, String> {
        let value = single(args)?;
        parse_flag(&value).ok_or_else(|| format!("{keyword}: expected yes or no, got '{value}'"))
    };
    let time = |args: Vec<String>| -> Result<Option<Duration>, String> {
        let value = single(args)?;
        let seconds =
            parse_time(&value).ok_or_else(|| format!("{keyword}: bad time value '{value}'"))?;
        Ok((seconds > 0).then(|| Duration::from_secs(seconds)))
    };
    let files = |args: Vec<String>| -> Result<Vec<String>, String> {
        if args.is_empty() {
            return Err(format!("{keyword}: missing argument"));
        }
        if args.len() > 1 && args.iter().any(|a| a.eq_ignore_ascii_case("none")) {
            return Err(format!("{keyword}: \"none\" must appear alone"));
        }
        Ok(args)
    };
    Ok(match key.as_str() {
        "hostname" => Setting::HostName(single(args)?),
        "port" => {
            let value = single(args)?;
            Setting::Port(parse_port(&value).ok_or_else(|| format!("bad port '{value}'"))?)
        }
        "user" => Setting::User(single(args)?),
        "identityfile" => Setting::IdentityFile(single(args)?),
        "identitiesonly" => Setting::IdentitiesOnly(flag(args)?),
        "proxyjump" => Setting::ProxyJump(single(args)?),
        "proxycommand" => {
            if args.is_empty() {
                return Err(format!("{keyword}: missing argument"));
            }
            Setting::ProxyCommand(rest.trim().to_owned())
        }
        "userknownhostsfile" => Setting::UserKnownHostsFiles(files(args)?),
        "globalknownhostsfile" => Setting::GlobalKnownHostsFiles(files(args)?),
        "stricthostkeychecking" => {
            let value = single(args)?;
            Setting::StrictHostKeyChecking(parse_strict(&value).ok_or_else(|| {
                format!("{keyword}: expected yes, accept-new, no or ask, got '{value}'")
            })?)
        }
        "batchmode" => Setting::BatchMode(flag(args)?),
        "connecttimeout" => Setting::ConnectTimeout(time(args)?),
        "serveraliveinterval" => Setting::ServerAliveInterval(time(args)?),
        _ => Setting::Unhandled(keyword.to_owned()),
    })
}

/// A port as `ssh` takes it: decimal 1–65535.
pub(super) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&port| port != 0)
}

fn parse_flag(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

fn parse_strict(s: &str) -> Option<StrictHostKeyChecking> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(StrictHostKeyChecking::Yes),
        "accept-new" => Some(StrictHostKeyChecking::AcceptNew),
        "no" | "false" | "off" => Some(StrictHostKeyChecking::No),
        "ask" => Some(StrictHostKeyChecking::Ask),
        _ => None,
    }
}

/// `ssh`'s time format, in seconds: numbers each optionally followed by a unit (`s`, `m`, `h`,
/// `d`, `w`, either case), summed: `90`, `1m30s`, `1h`.
fn parse_time(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in s.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(digit))?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 60 * 60,
            'd' => 24 * 60 * 60,
            'w' => 7 * 24 * 60 * 60,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    if let Some(n) = number {
        total = total.checked_add(n)?;
    }
    (total <= i32::MAX as u64).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh_config::test_support::*;
    use crate::ssh_config::SshConfig;

    #[test]
    fn keyword_syntax_variants() {
        for line in [
            "Port 2000",
            "Port=2000",
            "Port = 2000",
            "  PORT\t2000  ",
            "port 2000 # a comment",
            "Port \"2000\"",
            "Port\t=\t2000",
        ] {
            assert_eq!(resolve(line, "h").port, 2000, "{line}");
        }
        let s = resolve(
            "# comment\n\n   # indented comment\nUser bob\r\nIdentityFile \"~/my keys/id\"\n",
            "h",
        );
        assert_eq!(s.user.as_deref(), Some("bob"));
        assert_eq!(s.identity_files, paths(&["/home/me/my keys/id"]));
        let e = SshConfig::parse("User a\nIdentityFile ~/my\\ key 'x'").unwrap_err();
        assert_eq!(
            e.to_string(),
            "<ssh_config>:2: IdentityFile: extra arguments at end of line"
        );
    }

    #[test]
    fn strict_host_key_checking_values() {
        for (value, want) in [
            ("yes", StrictHostKeyChecking::Yes),
            ("true", StrictHostKeyChecking::Yes),
            ("YES", StrictHostKeyChecking::Yes),
            ("accept-new", StrictHostKeyChecking::AcceptNew),
            ("no", StrictHostKeyChecking::No),
            ("off", StrictHostKeyChecking::No),
            ("false", StrictHostKeyChecking::No),
            ("ask", StrictHostKeyChecking::Ask),
        ] {
            let s = resolve(&format!("StrictHostKeyChecking {value}"), "h");
            assert_eq!(s.strict_host_key_checking, want, "{value}");
        }
        assert_eq!(
            resolve("", "h").strict_host_key_checking,
            StrictHostKeyChecking::Ask
        );
        assert!(SshConfig::parse("StrictHostKeyChecking maybe").is_err());
    }

    #[test]
    fn timeouts_and_flags() {
        let s = resolve(
            "ConnectTimeout 1m30s\nServerAliveInterval 15\nBatchMode yes\nIdentitiesOnly no\n",
            "h",
        );
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.server_alive_interval, Some(Duration::from_secs(15)));
        assert!(s.batch_mode);
        assert!(!s.identities_only);
        // 0 is "none", and obtained first it still wins.
        let s = resolve(
            "Host h\n ServerAliveInterval 0\nHost *\n ServerAliveInterval 5\n",
            "h",
        );
        assert_eq!(s.server_alive_interval, None);
        assert_eq!(parse_time("1h"), Some(3600));
        assert_eq!(parse_time("2W"), Some(2 * 7 * 24 * 3600));
        assert_eq!(parse_time("m"), None);
        assert_eq!(parse_time("1x"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn split_args_quoting() {
        assert_eq!(
            split_args(r#"a "b c" 'd "e"' f\ g h\"i j\k # rest"#).unwrap(),
            words(&["a", "b c", "d \"e\"", "f g", "h\"i", "j\\k"])
        );
        assert_eq!(split_args("x#y").unwrap(), words(&["x#y"]));
        assert_eq!(
            split_args(r#"pre"quoted part"post"#).unwrap(),
            words(&["prequoted partpost"])
        );
        assert!(split_args("'open").is_err());
    }
}
