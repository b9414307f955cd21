//! Issue 15, connection: how the remote side is reached and what it is told beyond the sync
//! options — `-M/--remote-option`, `--port`, `-4`/`-6`, `--address`, `--no-motd`,
//! `--blocking-io`, `--outbuf`, `--trust-sender` — as rsync's client does it. Owns reading
//! them from the command line into [`NetOptions`], and `--stderr`; not the connections
//! themselves (`remote`, the transports).

use std::net::IpAddr;

use super::cli::Cli;
use super::ParseOutcome;

/// Connection settings of one run.
#[derive(Debug, Clone, Default)]
pub struct NetOptions {
    /// `-M`: words added to the remote side's command line only, before its paths.
    pub remote_options: Vec<String>,
    /// `-4` or `-6`: the address family for daemon connections (and `ssh -4`/`-6`).
    pub family: Option<Family>,
    /// `--address`: the local address daemon connections leave from.
    pub bind: Option<IpAddr>,
    /// `--no-motd`: a daemon's message of the day (and, as in rsync, its module list) is not
    /// shown.
    pub no_motd: bool,
    /// `--stderr=all`: every message, info too, on stderr.
    pub all_to_stderr: bool,
}

impl NetOptions {
    /// How daemon connections are made.
    pub fn daemon_socket(&self) -> arsync::DaemonSocket {
        arsync::DaemonSocket {
            ipv6: self.family.map(|f| f == Family::V6),
            bind: self.bind,
        }
    }

    /// `rsh` with `-4`/`-6` when it is ssh, as rsync's `do_cmd` adds them.
    pub(super) fn shell_with_family(&self, rsh: &mut String) {
        let Some(f) = self.family else {
            return;
        };
        let program = rsh.split_whitespace().next().unwrap_or("");
        if program.rsplit('/').next() == Some("ssh") {
            let flag = if f == Family::V4 { " -4" } else { " -6" };
            rsh.insert_str(program.len(), flag);
        }
    }
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Read the connection options.
pub(super) fn apply(cli: &Cli) -> Result<NetOptions, ParseOutcome> {
    if let Some(b) = &cli.outbuf {
        // rsync takes the first letter, in either case.
        if !matches!(
            b.chars().next().map(|c| c.to_ascii_uppercase()),
            Some('N' | 'L' | 'B')
        ) {
            return Err(ParseOutcome::Usage(
                "Invalid --outbuf setting -- specify N, L, or B.".into(),
            ));
        }
    }
    // --blocking-io: arsync reads and writes a remote shell's pipes in whatever mode they
    // are, so blocking or not changes nothing. --trust-sender: arsync checks a sender's file
    // list all the same (the checks cost nothing a trusted sender would notice).
    let _ = (cli.blocking_io, cli.trust_sender);
    let family = match (cli.ipv4, cli.ipv6) {
        (true, _) => Some(Family::V4),
        (_, true) => Some(Family::V6),
        _ => None,
    };
    // --stderr: errors (the default), all, or client; any prefix of the words.
    let all_to_stderr = match cli.stderr.as_deref() {
        None => false,
        Some(m) if !m.is_empty() && "all".starts_with(m) => true,
        Some(m) if !m.is_empty() && ("errors".starts_with(m) || "client".starts_with(m)) => false,
        Some(m) => {
            return Err(ParseOutcome::Usage(format!(
                "Invalid --stderr mode: {m} (use errors, all, or client)"
            )))
        }
    };
    Ok(NetOptions {
        all_to_stderr,
        remote_options: cli.remote_option.clone(),
        family,
        bind: cli.address,
        no_motd: cli.no_motd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> (Result<NetOptions, ParseOutcome>, String) {
        let cli = Cli::try_parse_from(std::iter::once("arsync").chain(args.iter().copied()))
            .expect("parses");
        let mut rsh = cli.rsh.clone().unwrap_or_else(|| "ssh".into());
        let net = apply(&cli);
        if let Ok(n) = &net {
            n.shell_with_family(&mut rsh);
        }
        (net, rsh)
    }

    #[test]
    fn ssh_gets_the_address_family_other_shells_do_not() {
        let (_, rsh) = parse(&["-4", "a", "b"]);
        assert_eq!(rsh, "ssh -4");
        let (_, rsh) = parse(&["-6", "-e", "/usr/bin/ssh -p 2222", "a", "b"]);
        assert_eq!(rsh, "/usr/bin/ssh -6 -p 2222");
        let (_, rsh) = parse(&["-4", "-e", "rsh", "a", "b"]);
        assert_eq!(rsh, "rsh");
    }

    #[test]
    fn outbuf_takes_rsyncs_letters_only() {
        for ok in ["N", "line", "b", "Block"] {
            assert!(parse(&["--outbuf", ok, "a", "b"]).0.is_ok(), "{ok}");
        }
        assert!(parse(&["--outbuf", "x", "a", "b"]).0.is_err());
    }

    #[test]
    fn remote_options_keep_their_dashes() {
        let (net, _) = parse(&["-M--max-size=10", "--remote-option", "--fake", "a", "b"]);
        assert_eq!(net.unwrap().remote_options, ["--max-size=10", "--fake"]);
    }
}
