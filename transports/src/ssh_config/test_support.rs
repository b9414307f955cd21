//! What the tests of this folder share: words, a parsed `-e` line, a local context and the
//! resolution of configuration text for a host. Test code only.

use std::path::PathBuf;

use super::{HostSettings, LocalContext, RshOptions, SshConfig};

pub(super) fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

pub(super) fn rsh(s: &[&str]) -> RshOptions {
    RshOptions::parse(&words(s)).unwrap()
}

pub(super) fn local() -> LocalContext {
    LocalContext {
        home: PathBuf::from("/home/me"),
        user: "me".into(),
        hostname: "laptop.lan".into(),
    }
}

pub(super) fn resolve(config: &str, host: &str) -> HostSettings {
    resolve_with(config, host, &rsh(&["ssh"]))
}

pub(super) fn resolve_with(config: &str, host: &str, cli: &RshOptions) -> HostSettings {
    SshConfig::parse(config)
        .unwrap()
        .resolve(host, cli, &local())
}

pub(super) fn paths(p: &[&str]) -> Vec<PathBuf> {
    p.iter().map(PathBuf::from).collect()
}
