//! Resolution: [`SshConfig::resolve`], the [`HostSettings`] for one host with OpenSSH's
//! precedence — the command line first (`-p`, `-l`, `-i`, then `-o` / `-J` in order), then the
//! blocks in order, `Host` patterns and `Match` criteria (`all`, `host`, `originalhost`,
//! `user`, `localuser`) evaluated as values are obtained; the first obtained value of a
//! single-valued keyword wins, `IdentityFile` accumulates, `ProxyJump` and `ProxyCommand`
//! compete; then defaults and `%` / `~` expansion.
//!
//! What it owns: the walk, the precedence, the defaults, the token sets of each keyword, and
//! the notes of what was not acted on ([`HostSettings::ignored`]). What it does not own: parsing
//! (`file`, `values`); other `Match` criteria are not evaluated (the block is skipped and
//! noted).

use std::path::PathBuf;
use std::time::Duration;

use super::file::{Condition, Criterion, Entry, MatchTest};
use super::patterns::{expand_tokens, pattern_list_match};
use super::values::{parse_setting, Setting};
use super::{HostSettings, LocalContext, RshOptions, SshConfig, StrictHostKeyChecking};

impl SshConfig {
    /// The settings for `host` (as typed, without `user@`) as `ssh` resolves them: the command
    /// line (`-p`, `-l`, `-i`, then `-o`/`-J` in order) first, then this configuration's blocks
    /// in order; for single-valued keywords the first obtained value wins, `IdentityFile`
    /// accumulates, and `UserKnownHostsFile` takes the first line obtained (which may list
    /// several files).
    pub fn resolve(&self, host: &str, cli: &RshOptions, local: &LocalContext) -> HostSettings {
        let mut acc = Accumulator::new(host, local);
        if let Some(port) = cli.port {
            acc.apply(&Setting::Port(port));
        }
        if let Some(user) = &cli.user {
            acc.apply(&Setting::User(user.clone()));
        }
        for file in &cli.identity_files {
            acc.apply(&Setting::IdentityFile(file.clone()));
        }
        for (key, value) in &cli.options {
            match parse_setting(key, value) {
                Ok(setting) => acc.apply(&setting),
                Err(message) => acc.note(format!("-o {key}={value} ({message})")),
            }
        }
        self.apply(&mut acc, true);
        acc.finish()
    }

    /// Apply this file's blocks to `acc`; `active_at_start` is whether the file applies at all
    /// (an `Include` under a block that does not match never applies, whatever its own `Host`
    /// lines say).
    fn apply(&self, acc: &mut Accumulator<'_>, active_at_start: bool) {
        for block in &self.blocks {
            let active = active_at_start
                && match &block.condition {
                    Condition::Always => true,
                    Condition::Host(patterns) => {
                        pattern_list_match(patterns.iter().map(String::as_str), &acc.alias, true)
                    }
                    Condition::Match { criteria, origin } => acc.match_holds(criteria, origin),
                };
            for entry in &block.entries {
                match entry {
                    Entry::Set(setting) if active => acc.apply(setting),
                    Entry::Set(_) => {}
                    Entry::Include {
                        files: Some(files), ..
                    } => {
                        for file in files {
                            file.apply(acc, active);
                        }
                    }
                    Entry::Include { spec, files: None } if active => {
                        acc.note(format!("Include {spec} (not expanded)"));
                    }
                    Entry::Include { .. } => {}
                }
            }
        }
    }
}

/// A proxy setting as obtained; `ProxyJump` and `ProxyCommand` compete, the first one winning.
#[derive(Debug)]
enum Proxy {
    Jump(String),
    Command(String),
}

/// Values obtained so far while walking the command line and the configuration.
#[derive(Debug)]
struct Accumulator<'a> {
    local: &'a LocalContext,
    alias: String,
    hostname: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity_files: Vec<String>,
    identities_only: Option<bool>,
    proxy: Option<Proxy>,
    user_known_hosts_files: Option<Vec<String>>,
    global_known_hosts_files: Option<Vec<String>>,
    strict_host_key_checking: Option<StrictHostKeyChecking>,
    batch_mode: Option<bool>,
    connect_timeout: Option<Option<Duration>>,
    server_alive_interval: Option<Option<Duration>>,
    ignored: Vec<String>,
}

impl<'a> Accumulator<'a> {
    fn new(alias: &str, local: &'a LocalContext) -> Self {
        Accumulator {
            local,
            alias: alias.to_owned(),
            hostname: None,
            port: None,
            user: None,
            identity_files: Vec::new(),
            identities_only: None,
            proxy: None,
            user_known_hosts_files: None,
            global_known_hosts_files: None,
            strict_host_key_checking: None,
            batch_mode: None,
            connect_timeout: None,
            server_alive_interval: None,
            ignored: Vec::new(),
        }
    }

    fn apply(&mut self, setting: &Setting) {
        fn first<T: Clone>(slot: &mut Option<T>, value: &T) {
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        match setting {
            Setting::HostName(v) => first(&mut self.hostname, v),
            Setting::Port(v) => first(&mut self.port, v),
            Setting::User(v) => first(&mut self.user, v),
            Setting::IdentityFile(v) => {
                if !self.identity_files.contains(v) {
                    self.identity_files.push(v.clone());
                }
            }
            Setting::IdentitiesOnly(v) => first(&mut self.identities_only, v),
            Setting::ProxyJump(v) => {
                if self.proxy.is_none() {
                    self.proxy = Some(Proxy::Jump(v.clone()));
                }
            }
            Setting::ProxyCommand(v) => {
                if self.proxy.is_none() {
                    self.proxy = Some(Proxy::Command(v.clone()));
                }
            }
            Setting::UserKnownHostsFiles(v) => first(&mut self.user_known_hosts_files, v),
            Setting::GlobalKnownHostsFiles(v) => first(&mut self.global_known_hosts_files, v),
            Setting::StrictHostKeyChecking(v) => first(&mut self.strict_host_key_checking, v),
            Setting::BatchMode(v) => first(&mut self.batch_mode, v),
            Setting::ConnectTimeout(v) => first(&mut self.connect_timeout, v),
            Setting::ServerAliveInterval(v) => first(&mut self.server_alive_interval, v),
            Setting::Unhandled(keyword) => self.note(keyword.clone()),
        }
    }

    /// Record something not acted on, once (case-insensitively).
    fn note(&mut self, what: String) {
        if !self.ignored.iter().any(|w| w.eq_ignore_ascii_case(&what)) {
            self.ignored.push(what);
        }
    }

    /// The host name as known so far: `HostName` (with `%h`) if obtained, else the alias.
    fn current_hostname(&self) -> String {
        match &self.hostname {
            Some(hostname) => expand_tokens(hostname, &[('h', &self.alias)]),
            None => self.alias.clone(),
        }
    }

    /// Whether a `Match` line holds now. Criteria we do not evaluate make it not hold, noted
    /// unless a criterion we do evaluate already rules the block out.
    fn match_holds(&mut self, criteria: &[Criterion], origin: &str) -> bool {
        let mut unsupported = Vec::new();
        for criterion in criteria {
            let hit = match &criterion.test {
                MatchTest::All => true,
                MatchTest::Host(patterns) => {
                    pattern_list_match(patterns.split(','), &self.current_hostname(), true)
                }
                MatchTest::OriginalHost(patterns) => {
                    pattern_list_match(patterns.split(','), &self.alias, true)
                }
                MatchTest::User(patterns) => {
                    let user = self.user.as_deref().unwrap_or(&self.local.user);
                    pattern_list_match(patterns.split(','), user, false)
                }
                MatchTest::LocalUser(patterns) => {
                    pattern_list_match(patterns.split(','), &self.local.user, false)
                }
                MatchTest::Unsupported(name) => {
                    unsupported.push(name.as_str());
                    continue;
                }
            };
            if hit == criterion.negated {
                return false;
            }
        }
        if unsupported.is_empty() {
            return true;
        }
        let note = format!(
            "Match {} ({origin}): not evaluated, block skipped",
            unsupported.join(" ")
        );
        self.note(note);
        false
    }

    fn finish(self) -> HostSettings {
        let local = self.local;
        let hostname = self.current_hostname();
        let port = self.port.unwrap_or(22);
        let port_text = port.to_string();
        let remote_user = self.user.as_deref().unwrap_or(&local.user);
        let home_text = local.home.to_string_lossy();
        let short_local = local.hostname.split('.').next().unwrap_or(&local.hostname);
        let file_tokens = [
            ('d', &*home_text),
            ('u', local.user.as_str()),
            ('h', hostname.as_str()),
            ('r', remote_user),
            ('l', local.hostname.as_str()),
            ('L', short_local),
            ('p', port_text.as_str()),
            ('n', self.alias.as_str()),
        ];
        let expand_file = |s: &str| -> PathBuf {
            if s == "~" {
                local.home.clone()
            } else if let Some(rest) = s.strip_prefix("~/") {
                local.home.join(expand_tokens(rest, &file_tokens))
            } else {
                PathBuf::from(expand_tokens(s, &file_tokens))
            }
        };
        let file_list = |files: Option<Vec<String>>, defaults: &[&str]| -> Vec<PathBuf> {
            match files {
                Some(files) if files.len() == 1 && files[0].eq_ignore_ascii_case("none") => {
                    Vec::new()
                }
                Some(files) => files.iter().map(|f| expand_file(f)).collect(),
                None => defaults.iter().map(|f| expand_file(f)).collect(),
            }
        };
        let proxy_tokens = [
            ('h', hostname.as_str()),
            ('p', port_text.as_str()),
            ('r', remote_user),
            ('n', self.alias.as_str()),
        ];
        let proxy_value = |v: &str| -> Option<String> {
            (!v.eq_ignore_ascii_case("none")).then(|| expand_tokens(v, &proxy_tokens))
        };
        let (proxy_jump, proxy_command) = match &self.proxy {
            Some(Proxy::Jump(jump)) => (proxy_value(jump), None),
            Some(Proxy::Command(command)) => (None, proxy_value(command)),
            None => (None, None),
        };
        let identity_files = self.identity_files.iter().map(|f| expand_file(f)).collect();
        HostSettings {
            identity_files,
            identities_only: self.identities_only.unwrap_or(false),
            proxy_jump,
            proxy_command,
            user_known_hosts_files: file_list(
                self.user_known_hosts_files,
                &["~/.ssh/known_hosts", "~/.ssh/known_hosts2"],
            ),
            global_known_hosts_files: file_list(
                self.global_known_hosts_files,
                &["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"],
            ),
            strict_host_key_checking: self.strict_host_key_checking.unwrap_or_default(),
            batch_mode: self.batch_mode.unwrap_or(false),
            connect_timeout: self.connect_timeout.flatten(),
            server_alive_interval: self.server_alive_interval.flatten(),
            port,
            user: self.user,
            hostname,
            alias: self.alias,
            ignored: self.ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh_config::test_support::*;

    #[test]
    fn defaults_without_config() {
        let s = resolve("", "example.com");
        assert_eq!(
            s,
            HostSettings {
                alias: "example.com".into(),
                hostname: "example.com".into(),
                port: 22,
                user: None,
                identity_files: vec![],
                identities_only: false,
                proxy_jump: None,
                proxy_command: None,
                user_known_hosts_files: paths(&[
                    "/home/me/.ssh/known_hosts",
                    "/home/me/.ssh/known_hosts2"
                ]),
                global_known_hosts_files: paths(&[
                    "/etc/ssh/ssh_known_hosts",
                    "/etc/ssh/ssh_known_hosts2"
                ]),
                strict_host_key_checking: StrictHostKeyChecking::Ask,
                batch_mode: false,
                connect_timeout: None,
                server_alive_interval: None,
                ignored: vec![],
            }
        );
    }

    #[test]
    fn host_patterns() {
        let config = "
Host *.example.com !bad.example.com
  User wild
Host a?c
  User question
Host FOO other
  User upper
Host !never
  User negated-only
Host *
  Port 2022
";
        assert_eq!(
            resolve(config, "www.example.com").user.as_deref(),
            Some("wild")
        );
        assert_eq!(
            resolve(config, "WWW.Example.COM").user.as_deref(),
            Some("wild")
        );
        assert_eq!(resolve(config, "bad.example.com").user, None);
        assert_eq!(resolve(config, "example.com").user, None);
        assert_eq!(resolve(config, "abc").user.as_deref(), Some("question"));
        assert_eq!(resolve(config, "abbc").user, None);
        assert_eq!(resolve(config, "foo").user.as_deref(), Some("upper"));
        assert_eq!(resolve(config, "other").user.as_deref(), Some("upper"));
        assert_eq!(resolve(config, "anything").user, None);
        assert_eq!(resolve(config, "bad.example.com").port, 2022);
        // Negation wins regardless of order.
        let config = "Host !bad.* *\n  User x\n";
        assert_eq!(resolve(config, "bad.host").user, None);
        assert_eq!(resolve(config, "good.host").user.as_deref(), Some("x"));
    }

    #[test]
    fn first_obtained_value_wins() {
        let config = "
User global
Host web
  User web-user
  Port 2200
  HostName web.internal
  StrictHostKeyChecking yes
Host *
  User star
  Port 22
  HostName nope
  StrictHostKeyChecking no
  BatchMode yes
";
        let s = resolve(config, "web");
        assert_eq!(s.user.as_deref(), Some("global"));
        assert_eq!(s.port, 2200);
        assert_eq!(s.hostname, "web.internal");
        assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::Yes);
        assert!(s.batch_mode);
        let s = resolve(config, "db");
        assert_eq!(s.port, 22);
        assert_eq!(s.hostname, "nope");
        assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::No);
    }

    #[test]
    fn command_line_comes_first() {
        let config = "
Host h
  Port 2200
  User config-user
  IdentityFile ~/.ssh/config_key
  StrictHostKeyChecking yes
  ProxyCommand nc %h %p
";
        let cli = rsh(&[
            "ssh",
            "-p",
            "3300",
            "-l",
            "cli-user",
            "-i",
            "~/.ssh/cli_key",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-J",
            "bastion",
            "-o",
            "HostName=real.example",
        ]);
        let s = resolve_with(config, "h", &cli);
        assert_eq!(s.port, 3300);
        assert_eq!(s.user.as_deref(), Some("cli-user"));
        assert_eq!(
            s.identity_files,
            paths(&["/home/me/.ssh/cli_key", "/home/me/.ssh/config_key"])
        );
        assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert_eq!(s.proxy_jump.as_deref(), Some("bastion"));
        assert_eq!(s.proxy_command, None);
        assert_eq!(s.hostname, "real.example");
        // -o Port / -o User count as command line too.
        let cli = rsh(&["ssh", "-o", "Port 4400", "-oUser=o-user"]);
        let s = resolve_with(config, "h", &cli);
        assert_eq!((s.port, s.user.as_deref()), (4400, Some("o-user")));
    }

    #[test]
    fn identity_files_accumulate_and_expand() {
        let config = "
Host h
  IdentityFile ~/.ssh/id_%h_%r
  IdentityFile %d/keys/%u@%l-%L
  IdentityFile /k/%p-%n-100%%-%C
  IdentityFile ~
  IdentityFile ~other/key
Host *
  IdentityFile ~/.ssh/id_%h_%r
  IdentityFile ~/.ssh/shared
  HostName h.example.org
  User remote
  Port 2022
  IdentitiesOnly yes
";
        let s = resolve(config, "h");
        assert_eq!(
            s.identity_files,
            paths(&[
                "/home/me/.ssh/id_h.example.org_remote",
                "/home/me/keys/me@laptop.lan-laptop",
                "/k/2022-h-100%-%C",
                "/home/me",
                "~other/key",
                "/home/me/.ssh/shared",
            ])
        );
        assert!(s.identities_only);
        // Without a remote user, %r is the local user.
        let s = resolve("IdentityFile ~/.ssh/%r", "x");
        assert_eq!(s.identity_files, paths(&["/home/me/.ssh/me"]));
        // -i duplicates of config entries are dropped.
        let s = resolve_with(
            "IdentityFile ~/k\nIdentityFile ~/j",
            "x",
            &rsh(&["ssh", "-i", "~/j"]),
        );
        assert_eq!(s.identity_files, paths(&["/home/me/j", "/home/me/k"]));
    }

    #[test]
    fn hostname_token() {
        let s = resolve("Host *\n  HostName %h.internal.example\n", "db1");
        assert_eq!(s.hostname, "db1.internal.example");
        assert_eq!(s.alias, "db1");
        let s = resolve("HostName 100%%.%h", "x");
        assert_eq!(s.hostname, "100%.x");
    }

    #[test]
    fn proxy_command_tokens() {
        let config = "
Host inner
  HostName inner.lan
  User alice
  Port 2222
  ProxyCommand ssh -W %h:%p %r@jump -o \"Tag %n\" 100%% # comment goes to the shell
";
        let s = resolve(config, "inner");
        assert_eq!(
            s.proxy_command.as_deref(),
            Some("ssh -W inner.lan:2222 alice@jump -o \"Tag inner\" 100% # comment goes to the shell")
        );
        assert_eq!(s.proxy_jump, None);
        let s = resolve("ProxyCommand=nc %h %p %x", "h");
        assert_eq!(s.proxy_command.as_deref(), Some("nc h 22 %x"));
        let s = resolve("ProxyJump %r@gw-%h", "h");
        assert_eq!(s.proxy_jump.as_deref(), Some("me@gw-h"));
    }

    #[test]
    fn none_values() {
        // `none` is obtained like any value: later blocks cannot set it again.
        let s = resolve(
            "Host h\n  ProxyCommand none\n  UserKnownHostsFile none\nHost *\n  ProxyCommand nc %h %p\n  ProxyJump gw\n  UserKnownHostsFile ~/kh\n",
            "h",
        );
        assert_eq!(s.proxy_command, None);
        assert_eq!(s.proxy_jump, None);
        assert!(s.user_known_hosts_files.is_empty());
        let s = resolve(
            "Host h\n  ProxyJump NONE\nHost *\n  ProxyJump gw\n  ProxyCommand nc\n",
            "h",
        );
        assert_eq!((s.proxy_jump, s.proxy_command), (None, None));
        let s = resolve(
            "Host h\n  ProxyJump none\nHost *\n  ProxyJump gw\n",
            "other",
        );
        assert_eq!(s.proxy_jump.as_deref(), Some("gw"));
        // -J none on the command line turns off a configured jump host.
        let s = resolve_with("ProxyJump gw", "h", &rsh(&["ssh", "-J", "none"]));
        assert_eq!(s.proxy_jump, None);
    }

    #[test]
    fn proxy_jump_and_command_compete() {
        let s = resolve("ProxyJump gw\nProxyCommand nc %h %p\n", "h");
        assert_eq!(
            (s.proxy_jump.as_deref(), s.proxy_command),
            (Some("gw"), None)
        );
        let s = resolve("ProxyCommand nc %h %p\nProxyJump gw\n", "h");
        assert_eq!(
            (s.proxy_jump, s.proxy_command.as_deref()),
            (None, Some("nc h 22"))
        );
    }

    #[test]
    fn known_hosts_files() {
        let config = "
Host h
  UserKnownHostsFile ~/.ssh/kh_%h /shared/%u_hosts
  GlobalKnownHostsFile /etc/ssh/extra
Host *
  UserKnownHostsFile ~/.ssh/other
";
        let s = resolve(config, "h");
        assert_eq!(
            s.user_known_hosts_files,
            paths(&["/home/me/.ssh/kh_h", "/shared/me_hosts"])
        );
        assert_eq!(s.global_known_hosts_files, paths(&["/etc/ssh/extra"]));
        let s = resolve(config, "x");
        assert_eq!(s.user_known_hosts_files, paths(&["/home/me/.ssh/other"]));
        let cli = rsh(&["ssh", "-o", "UserKnownHostsFile=/dev/null"]);
        let s = resolve_with(config, "h", &cli);
        assert_eq!(s.user_known_hosts_files, paths(&["/dev/null"]));
    }

    #[test]
    fn ignored_keywords_for_this_host_only() {
        let config = "
Compression yes
Host h
  ForwardAgent yes
  forwardagent no
Host other
  Ciphers aes128-ctr
";
        let s = resolve(config, "h");
        assert_eq!(s.ignored, words(&["Compression", "ForwardAgent"]));
        let cli = rsh(&["ssh", "-o", "ControlMaster=auto"]);
        let s = resolve_with(config, "other", &cli);
        assert_eq!(
            s.ignored,
            words(&["controlmaster", "Compression", "Ciphers"])
        );
    }

    #[test]
    fn match_blocks() {
        let config = "
Host db
  HostName db.internal
Match host *.internal
  User admin
Match originalhost web !host *.internal
  Port 8022
Match all
  IdentitiesOnly yes
";
        let s = resolve(config, "db");
        assert_eq!(s.user.as_deref(), Some("admin"));
        assert_eq!(s.port, 22);
        assert!(s.identities_only);
        let s = resolve(config, "web");
        assert_eq!(s.user, None);
        assert_eq!(s.port, 8022);
        let s = resolve(config, "cache.INTERNAL");
        assert_eq!(s.user.as_deref(), Some("admin"));

        let config = "
Match user deploy localuser me
  Port 1
Match host a,b,!bad*
  Port 2
Match !localuser me
  Port 3
";
        let cli = rsh(&["ssh", "-l", "deploy"]);
        assert_eq!(resolve_with(config, "x", &cli).port, 1);
        assert_eq!(resolve(config, "b").port, 2);
        assert_eq!(resolve(config, "bad").port, 22);
        assert_eq!(resolve(config, "z").port, 22);
    }

    #[test]
    fn unsupported_match_criteria_skip_the_block() {
        let config = "
Match exec \"test -e /x\" host h
  Port 1
Match host other exec true
  Port 2
Match canonical all
  Port 3
";
        let s = resolve(config, "h");
        assert_eq!(s.port, 22);
        assert_eq!(
            s.ignored,
            words(&[
                "Match exec (<ssh_config>:2): not evaluated, block skipped",
                "Match canonical (<ssh_config>:6): not evaluated, block skipped",
            ])
        );
    }

    #[test]
    fn parsed_include_is_noted() {
        let s = resolve("Include conf.d/*\nHost nope\n  Include x\n", "h");
        assert_eq!(s.ignored, words(&["Include conf.d/* (not expanded)"]));
    }
}
