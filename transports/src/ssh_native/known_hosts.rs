//! The server's host key against `known_hosts`, as OpenSSH checks it: the user files then the
//! global ones; plain, `[host]:port`, wildcard, negated and hashed (`|1|salt|hash`) host
//! fields; `@revoked` lines; `StrictHostKeyChecking` `yes` / `accept-new` / `no` / `ask` (a
//! yes/no question on the terminal); a changed key always refused, with OpenSSH's warning.
//!
//! What it owns: [`HostKeyCheck`] (reading the files, the verdict and its message, appending a
//! learned key in plain form to the first user file) and the key type names used in messages
//! and in the host key preference. What it does not own: where the file names and the policy
//! come from ([`crate::ssh_config`]), `@cert-authority` (host certificates are not supported:
//! such lines are read and never match), `HashKnownHosts`, `CheckHostIP` and `HostKeyAlias`.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_encoding::base64::{Base64, Encoding as _};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

use super::env::tty_prompt;
use crate::ssh::shell_quote;
use crate::ssh_config::{HostSettings, StrictHostKeyChecking};

/// How one host's key is checked.
pub(super) struct HostKeyCheck {
    /// The name as known_hosts records it: `host`, or `[host]:port` off port 22.
    entry_name: String,
    host: String,
    port: u16,
    user_files: Vec<PathBuf>,
    global_files: Vec<PathBuf>,
    strict: StrictHostKeyChecking,
    batch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One usable known_hosts line.
struct KnownLine {
    file: PathBuf,
    line: usize,
    marker: Marker,
    patterns: String,
    key: PublicKey,
}

enum Lookup {
    Known,
    Revoked { file: PathBuf, line: usize },
    Changed { file: PathBuf, line: usize },
    Unknown { other_types: Vec<String> },
}

/// `ssh-rsa` for every RSA signature variant, else the algorithm's name.
pub(super) fn algorithm_type(a: &Algorithm) -> String {
    match a {
        Algorithm::Rsa { .. } => "ssh-rsa".into(),
        other => other.as_str().to_owned(),
    }
}

fn key_type(k: &PublicKey) -> String {
    algorithm_type(&k.algorithm())
}

/// The key type as OpenSSH names it in messages.
fn key_type_label(k: &PublicKey) -> &'static str {
    match k.algorithm() {
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Ecdsa { .. } => "ECDSA",
        Algorithm::Rsa { .. } => "RSA",
        Algorithm::Dsa => "DSA",
        Algorithm::SkEd25519 => "ED25519-SK",
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK",
        _ => "host",
    }
}

pub(super) fn fingerprint(k: &PublicKey) -> String {
    k.fingerprint(HashAlg::Sha256).to_string()
}

impl HostKeyCheck {
    pub(super) fn new(settings: &HostSettings) -> HostKeyCheck {
        let host = settings.hostname.to_lowercase();
        let entry_name = if settings.port == 22 {
            host.clone()
        } else {
            format!("[{host}]:{}", settings.port)
        };
        HostKeyCheck {
            entry_name,
            host,
            port: settings.port,
            user_files: settings.user_known_hosts_files.clone(),
            global_files: settings.global_known_hosts_files.clone(),
            strict: settings.strict_host_key_checking,
            batch: settings.batch_mode,
        }
    }

    fn lines(&self) -> Vec<KnownLine> {
        let mut out = Vec::new();
        for file in self.user_files.iter().chain(&self.global_files) {
            if let Ok(text) = std::fs::read_to_string(file) {
                out.extend(
                    parse_known_hosts(&text, file)
                        .into_iter()
                        .filter(|l| host_matches(&l.patterns, &self.entry_name)),
                );
            }
        }
        out
    }

    /// The key types recorded for this host.
    pub(super) fn known_types(&self) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for l in self.lines() {
            let t = key_type(&l.key);
            if l.marker == Marker::None && !types.contains(&t) {
                types.push(t);
            }
        }
        types
    }

    fn lookup(&self, key: &PublicKey) -> Lookup {
        let lines = self.lines();
        let ktype = key_type(key);
        if let Some(l) = lines
            .iter()
            .find(|l| l.marker == Marker::Revoked && l.key.key_data() == key.key_data())
        {
            return Lookup::Revoked {
                file: l.file.clone(),
                line: l.line,
            };
        }
        let plain = || lines.iter().filter(|l| l.marker == Marker::None);
        if plain().any(|l| l.key.key_data() == key.key_data()) {
            return Lookup::Known;
        }
        if let Some(l) = plain().find(|l| key_type(&l.key) == ktype) {
            return Lookup::Changed {
                file: l.file.clone(),
                line: l.line,
            };
        }
        let mut other_types: Vec<String> = Vec::new();
        for l in plain() {
            let label = key_type_label(&l.key).to_owned();
            if !other_types.contains(&label) {
                other_types.push(label);
            }
        }
        Lookup::Unknown { other_types }
    }

    /// `Ok` to go on, `Err(message)` to refuse. May append to the first user known_hosts file,
    /// and may ask on the terminal.
    pub(super) fn verify(&self, key: &PublicKey) -> Result<(), String> {
        let label = key_type_label(key);
        let fp = fingerprint(key);
        match self.lookup(key) {
            Lookup::Known => Ok(()),
            Lookup::Revoked { file, line } => Err(format!(
                "Host key verification failed: the {label} host key for {} ({fp}) is marked as \
                 revoked in {}:{line}.",
                self.entry_name,
                file.display()
            )),
            Lookup::Changed { file, line } => Err(format!(
                "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
                 @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
                 @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
                 IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
                 Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
                 It is also possible that a host key has just been changed.\n\
                 The fingerprint for the {label} key sent by the remote host is\n{fp}.\n\
                 Offending {label} key in {file}:{line}\n  \
                 remove with: ssh-keygen -f '{file}' -R '{name}'\n\
                 Host key for {name} has changed{strict}.\n\
                 Host key verification failed.",
                file = file.display(),
                name = self.entry_name,
                strict = if self.strict == StrictHostKeyChecking::Yes {
                    " and you have requested strict checking"
                } else {
                    " (a changed key is refused whatever StrictHostKeyChecking says)"
                },
            )),
            Lookup::Unknown { other_types } => {
                let also = if other_types.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (keys of other types are known for it: {})",
                        other_types.join(", ")
                    )
                };
                let accept = match self.strict {
                    StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No => true,
                    StrictHostKeyChecking::Ask if !self.batch => {
                        self.ask_accept(label, &fp, &also).unwrap_or_default()
                    }
                    _ => false,
                };
                if !accept {
                    return Err(self.unknown_message(label, &fp, &also));
                }
                self.learn(key, label)
            }
        }
    }

    fn unknown_message(&self, label: &str, fp: &str, also: &str) -> String {
        let files: Vec<String> = self
            .user_files
            .iter()
            .chain(&self.global_files)
            .map(|f| f.display().to_string())
            .collect();
        let files = if files.is_empty() {
            "(no known_hosts files)".to_owned()
        } else {
            files.join(", ")
        };
        let target_file = self
            .user_files
            .first()
            .map(|f| shell_quote(&f.display().to_string()))
            .unwrap_or_else(|| "~/.ssh/known_hosts".into());
        let port = if self.port == 22 {
            String::new()
        } else {
            format!("-p {} ", self.port)
        };
        format!(
            "Host key verification failed: the authenticity of host '{name}' can't be \
             established{also}.\n{label} key fingerprint is {fp}.\nIt is in none of {files}. \
             After checking the fingerprint with the host's administrator, add it with\n  \
             ssh-keyscan {port}{host} >> {target_file}\nor connect once with \
             -o StrictHostKeyChecking=accept-new.",
            name = self.entry_name,
            host = shell_quote(&self.host),
        )
    }

    /// The yes/no question on the terminal; `None` without one.
    fn ask_accept(&self, label: &str, fp: &str, also: &str) -> Option<bool> {
        let question = format!(
            "The authenticity of host '{}' can't be established{also}.\n{label} key fingerprint \
             is {fp}.\nAre you sure you want to continue connecting (yes/no/[fingerprint])? ",
            self.entry_name
        );
        let mut answer = tty_prompt(&question, true)?;
        loop {
            let a = answer.trim();
            if a.eq_ignore_ascii_case("yes") || a == fp {
                return Some(true);
            }
            if a.eq_ignore_ascii_case("no") {
                return Some(false);
            }
            answer = tty_prompt("Please type 'yes', 'no' or the fingerprint: ", true)?;
        }
    }

    fn learn(&self, key: &PublicKey, label: &str) -> Result<(), String> {
        let Some(file) = self.user_files.first() else {
            eprintln!(
                "Warning: no UserKnownHostsFile to record the {label} key of '{}' in.",
                self.entry_name
            );
            return Ok(());
        };
        match append_known_host(file, &self.entry_name, key) {
            Ok(()) => {
                eprintln!(
                    "Warning: Permanently added '{}' ({label}) to the list of known hosts.",
                    self.entry_name
                );
            }
            Err(e) => {
                // As ssh: the connection goes on; the key is simply not remembered.
                eprintln!(
                    "Failed to add the host to the list of known hosts ({}): {e}",
                    file.display()
                );
            }
        }
        Ok(())
    }
}

fn append_known_host(file: &Path, name: &str, key: &PublicKey) -> io::Result<()> {
    if let Some(dir) = file.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode_0700()
                .create(dir)?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    let needs_newline = match std::fs::read(file) {
        Ok(existing) => existing.last().is_some_and(|&b| b != b'\n'),
        Err(_) => false,
    };
    let key_text = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut line = String::new();
    if needs_newline {
        line.push('\n');
    }
    line.push_str(name);
    line.push(' ');
    line.push_str(key_text.trim_end());
    line.push('\n');
    f.write_all(line.as_bytes())
}

trait DirBuilderExt0700 {
    fn mode_0700(&mut self) -> &mut Self;
}

impl DirBuilderExt0700 for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

/// The usable lines of a known_hosts file (bad lines are skipped, as ssh does).
fn parse_known_hosts(text: &str, file: &Path) -> Vec<KnownLine> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let mut first = words.next();
        let marker = match first {
            Some("@revoked") => Marker::Revoked,
            Some("@cert-authority") => Marker::CertAuthority,
            Some(m) if m.starts_with('@') => continue,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = words.next();
        }
        let (Some(patterns), Some(ktype), Some(blob)) = (first, words.next(), words.next()) else {
            continue;
        };
        let Ok(key) = PublicKey::from_openssh(&format!("{ktype} {blob}")) else {
            continue;
        };
        out.push(KnownLine {
            file: file.to_owned(),
            line: index + 1,
            marker,
            patterns: patterns.to_owned(),
            key,
        });
    }
    out
}

/// Whether a known_hosts host field (`a,b,!c,*.d,|1|salt|hash`) names `name`.
fn host_matches(patterns: &str, name: &str) -> bool {
    let mut found = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            if hashed_matches(hashed, name) {
                found = true;
            }
        } else if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(&negated.to_lowercase(), name) {
                return false;
            }
        } else if wildcard_match(&pattern.to_lowercase(), name) {
            found = true;
        }
    }
    found
}

/// `salt|hash` (both base64): HMAC-SHA1 keyed by the salt over the name, as `ssh-keygen -H`.
fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (Base64::decode_vec(salt), Base64::decode_vec(hash)) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` and `?` glob over the whole of `text`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("10.0.0.?", "10.0.0.7"));
        assert!(!wildcard_match("10.0.0.?", "10.0.0.17"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("a,b,c", "b"));
        assert!(host_matches("*.lan,!bad.lan", "good.lan"));
        assert!(!host_matches("*.lan,!bad.lan", "bad.lan"));
        assert!(!host_matches("[h]:22", "h"));
        assert!(host_matches("Host.Example", "host.example"));
    }

    #[test]
    fn hashed_entry() {
        // From OpenSSH's regression data: `ssh-keygen -H` of "example.com".
        let line = "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=";
        assert!(host_matches(line, "example.com"));
        assert!(!host_matches(line, "example.org"));
        assert!(!host_matches("|1|bad|base64!", "example.com"));
    }

    #[test]
    fn known_hosts_parsing() {
        let text = "# comment\n\n\
            [localhost]:13265 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n\
            garbage line\n\
            @revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X\n";
        let lines = parse_known_hosts(text, Path::new("/kh"));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 3);
        assert_eq!(lines[0].marker, Marker::None);
        assert_eq!(lines[1].line, 5);
        assert_eq!(lines[1].marker, Marker::Revoked);
        assert!(host_matches(&lines[0].patterns, "[localhost]:13265"));
    }
}
