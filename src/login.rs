//! Issue 19: `arsync login ISSUER`: sign in to an OpenID Connect issuer with the OAuth2 device
//! authorization grant and store the tokens, for `arsync --oidc ISSUER arsync://…`.
//!
//! Owns the command line and what the user sees (the verification URL and code, the outcome).
//! Not here: the protocol, the stored file and refreshing (`arsync_auth::device`), sending the
//! token (`quic_run::client_token`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use arsync_auth::device::{self, LoginStore};
use arsync_auth::http;
use clap::Parser;

use crate::args;

#[derive(Parser, Debug)]
#[command(
    name = "arsync login",
    about = "Sign in to an OpenID Connect issuer (device authorization grant) for arsync://"
)]
struct LoginCli {
    /// the issuer's URL (https; plain http only on loopback)
    issuer: String,
    /// the OAuth2 client id registered for arsync at the issuer
    #[arg(long, value_name = "ID", default_value = device::DEFAULT_CLIENT_ID)]
    client_id: String,
    /// the scopes asked for (space-separated)
    #[arg(long, value_name = "SCOPES", default_value = device::DEFAULT_SCOPE)]
    scope: String,
    /// CA certificates (PEM) to verify the issuer with (default: the system's)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `arsync login …`: the process exit code.
pub fn main(argv: Vec<OsString>) -> u8 {
    let cli = match args::parse_subcommand::<LoginCli>(argv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run(&cli) {
        Ok(()) => 0,
        Err(e) => {
            err_line!("arsync login: {e:#}");
            1
        }
    }
}

fn run(cli: &LoginCli) -> anyhow::Result<()> {
    let store = LoginStore::default_dir()
        .map(|d| LoginStore::new(&d))
        .ok_or_else(|| anyhow!("no home directory (set XDG_CONFIG_HOME)"))?;
    let mut client = http::Client::new(cli.ca_file.as_deref());
    let pending = device::start(&mut client, &cli.issuer, &cli.client_id, &cli.scope)?;
    println!(
        "To sign in, open {} and enter the code {}",
        pending.verification_uri, pending.user_code
    );
    if let Some(complete) = &pending.verification_uri_complete {
        println!("(or open {complete})");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let login = pending
        .poll(&mut client, std::thread::sleep, now_unix)
        .context("waiting for the sign-in")?;
    let path = store.save(&login)?;
    err_line!(
        "arsync login: signed in to {}; tokens stored in {}{}",
        cli.issuer,
        path.display(),
        if login.refresh_token.is_some() {
            " (refreshed when needed)"
        } else {
            " (no refresh token: sign in again when it expires)"
        }
    );
    Ok(())
}
