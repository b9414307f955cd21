//! Issue 16, native login: whether the built-in client follows a login exactly as `ssh` would,
//! judged from what the configuration and the `-e` line asked that it does not act on.
//!
//! What it owns: the pure judgement ([`unfollowed`]). Anything not known to be harmless when
//! ignored (multiplexing, certificates, host key aliases, `Match exec`, an unexpanded
//! `Include`, binding to an address, …) sends the login to the system `ssh`; harmless ones
//! (cipher and keep-alive choices, X11 and agent forwarding we never use, GSSAPI and password
//! settings, which a refused login falls back on anyway) do not. What it does not own: the
//! fallback after a refused login (`crate::ssh_auto`).

/// Configuration keywords the built-in client leaves alone without changing where it logs in,
/// as whom, or how the host is checked (lowercase).
const HARMLESS_KEYWORDS: &[&str] = &[
    "addkeystoagent",
    "addressfamily",
    "challengeresponseauthentication",
    "checkhostip",
    "ciphers",
    "clearallforwardings",
    "compression",
    "connectionattempts",
    "escapechar",
    "exitonforwardfailure",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gssapiauthentication",
    "gssapidelegatecredentials",
    "hashknownhosts",
    "hostkeyalgorithms",
    "ipqos",
    "kbdinteractiveauthentication",
    "kexalgorithms",
    "loglevel",
    "macs",
    "numberofpasswordprompts",
    "passwordauthentication",
    "preferredauthentications",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "requesttty",
    "sendenv",
    "serveralivecountmax",
    "setenv",
    "tcpkeepalive",
    "updatehostkeys",
    "usekeychain",
    "visualhostkey",
];

/// `ssh` flags the built-in client leaves alone harmlessly (as written in the `-e` line's
/// ignored list: the flag, then its argument if it takes one).
const HARMLESS_FLAGS: &[&str] = &[
    "-4", "-6", "-A", "-a", "-C", "-c", "-k", "-m", "-n", "-q", "-T", "-t", "-v", "-X", "-x", "-Y",
];

/// The first thing asked of this login that the built-in client would not do as `ssh` does:
/// `settings` is what the configuration files said and was not acted on
/// (`HostSettings::ignored`), `flags` the `-e` line's flags not acted on. `None` when the
/// built-in client follows the login.
pub fn unfollowed(settings: &[String], flags: &[String]) -> Option<String> {
    let keyword_ok = |w: &String| {
        let keyword = w.split_whitespace().next().unwrap_or_default();
        HARMLESS_KEYWORDS.contains(&keyword.to_ascii_lowercase().as_str())
    };
    let flag_ok = |w: &String| {
        let flag = w.split_whitespace().next().unwrap_or_default();
        HARMLESS_FLAGS.contains(&flag)
    };
    settings
        .iter()
        .find(|w| !keyword_ok(w))
        .or_else(|| flags.iter().find(|w| !flag_ok(w)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn debians_default_client_configuration_is_followed() {
        // /etc/ssh/ssh_config on Debian: `SendEnv LANG LC_*`, `HashKnownHosts yes`,
        // `GSSAPIAuthentication yes`.
        let s = words(&["SendEnv", "HashKnownHosts", "GSSAPIAuthentication"]);
        assert_eq!(unfollowed(&s, &words(&["-C", "-c aes128-ctr", "-q"])), None);
    }

    #[test]
    fn what_changes_the_login_goes_to_the_system_ssh() {
        for decisive in [
            "ControlMaster",
            "ControlPath",
            "CertificateFile",
            "HostKeyAlias",
            "KnownHostsCommand",
            "PKCS11Provider",
            "CanonicalizeHostname",
            "BindAddress",
            "IdentityAgent",
            "Match exec (<ssh_config>:2): not evaluated, block skipped",
            "Include conf.d/* (not expanded)",
        ] {
            let s = words(&["SendEnv", decisive]);
            assert_eq!(unfollowed(&s, &[]).as_deref(), Some(decisive));
        }
        assert_eq!(
            unfollowed(&[], &words(&["-q", "-S /tmp/mux"])).as_deref(),
            Some("-S /tmp/mux")
        );
        assert_eq!(unfollowed(&[], &words(&["-M"])).as_deref(), Some("-M"));
    }
}
