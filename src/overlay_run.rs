//! The overlay probe's driver: before the first step of a `host:path` sync under
//! `--transport=auto`, ask `arsync_transports::overlay_probe` what this machine knows of a
//! tailnet or a Teleport cluster the host is on, print it and the decisions with
//! `--explain`, and apply them — the remote shell through `tsh proxy ssh` for a Teleport node,
//! the QUIC handshake to the tailnet address of a tailnet peer.
//!
//! Not here: the probe itself (`arsync_transports::overlay_probe`) or the decisions
//! (`arsync_core::negotiate::overlay`).

use std::net::IpAddr;

use arsync_core::negotiate::overlay::{self, OverlaySeen, SshVia};
use arsync_core::negotiate::{Request, Target, TransportAsk};
use arsync_core::transport::{Registry, TransportError};
use arsync_transports::bootstrap::OfferedLogin;
use arsync_transports::overlay_probe::{self, OverlayEnv};

use arsync_transports::registry::SshClient;
use arsync_transports::ssh_auto::SshChoiceLog;

use crate::args;
use crate::output::explain;
use crate::remote::cli_registry;

/// Probe the overlays for `request`'s host when it is a `host:path` under `auto` (else
/// `None`, `registry` as it is); with a Teleport node, the registry rebuilt with its remote
/// shell going through `tsh proxy ssh`.
pub async fn look(
    cmd: &args::Command,
    request: &Request,
    registry: Registry,
    ssh_log: &SshChoiceLog,
) -> Result<(Option<OverlaySeen>, Registry), TransportError> {
    let (Target::Shell { host }, TransportAsk::Auto) = (&request.target, &request.transport) else {
        return Ok((None, registry));
    };
    let seen = overlay_probe::probe(host, &cmd.rsh, &OverlayEnv::from_process()).await;
    for line in seen
        .explain()
        .into_iter()
        .chain(overlay::explain_decisions(&seen))
    {
        explain(cmd.explain, line);
    }
    let registry = match overlay::ssh_via(&seen).map(|d| d.choice) {
        Some(via @ SshVia::Teleport { .. }) => {
            let mut through_tsh = cmd.clone();
            through_tsh.rsh = overlay::rsh_with(&cmd.rsh, &via);
            // Teleport's logins are certificates, which the built-in client does not do.
            if through_tsh.ssh_client == SshClient::Auto {
                through_tsh.ssh_client = SshClient::System;
            }
            cli_registry(&through_tsh, ssh_log)?
        }
        _ => registry,
    };
    Ok((Some(seen), registry))
}

/// Before the QUIC handshake: aim it at an online tailnet peer's tailnet address.
pub fn aim_quic(on: bool, seen: Option<&OverlaySeen>, login: Option<&mut OfferedLogin>) {
    let (Some(seen), Some(login)) = (seen, login) else {
        return;
    };
    let Some(to) = overlay::quic_address(seen, login.offer.addr) else {
        return;
    };
    explain(
        on,
        format!("decision: QUIC to {} ({})", to.choice, to.reason),
    );
    login.offer.addr = Some::<IpAddr>(to.choice);
}
