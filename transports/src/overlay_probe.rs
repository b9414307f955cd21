//! The overlay probe: what this machine knows, locally, of the overlay networks a target host
//! may be on — tailscaled's status over its Unix socket, the current `tsh` profile in
//! `~/.tsh`, and how `-e` and the ssh configuration reach the host. Cheap and bounded:
//! one HTTP request to a local socket within [`LOCALAPI_WAIT`], a few small files.
//!
//! Every failure is an observation ([`TailscaleSeen::NoDaemon`], [`TeleportSeen::NoProfile`]),
//! never an error. Not here: reading the answers (`arsync_core::negotiate::overlay`'s readers)
//! or what they lead to (its decisions).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arsync_core::negotiate::overlay::tailscale::{self, MAX_ANSWER_BYTES};
use arsync_core::negotiate::overlay::teleport::{self, MAX_PROFILE_BYTES};
use arsync_core::negotiate::overlay::{
    OverlaySeen, ShellSeen, TailscaleSeen, TeleportSeen, TshKeyFiles, TshLogin,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ssh::split_words;
use crate::ssh_config::{config_path, system_config_path, LocalContext, RshOptions, SshConfig};

/// Where tailscaled listens on Linux.
pub const TAILSCALED_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";
/// How long tailscaled may take to answer (it is on this machine).
pub const LOCALAPI_WAIT: Duration = Duration::from_millis(300);

/// Where the probe looks: the process's environment, or a test's.
#[derive(Debug, Clone)]
pub struct OverlayEnv {
    /// tailscaled's socket: `$ARSYNC_TAILSCALE_SOCKET`, else `$TS_SOCKET`, else
    /// [`TAILSCALED_SOCKET`].
    pub tailscale_socket: PathBuf,
    /// `tsh`'s directory: `$TSH_HOME`, else `~/.tsh`.
    pub tsh_home: PathBuf,
    /// `$PATH`, where `tsh` is looked for.
    pub path: Option<OsString>,
    /// The home directory (`~` in the ssh configuration).
    pub home: PathBuf,
    /// The local user.
    pub user: String,
}

impl OverlayEnv {
    /// This process's.
    pub fn from_process() -> OverlayEnv {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let home = var("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        OverlayEnv {
            tailscale_socket: var("ARSYNC_TAILSCALE_SOCKET")
                .or_else(|| var("TS_SOCKET"))
                .map_or_else(|| PathBuf::from(TAILSCALED_SOCKET), PathBuf::from),
            tsh_home: var("TSH_HOME").map_or_else(|| home.join(".tsh"), PathBuf::from),
            path: var("PATH"),
            user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
            home,
        }
    }
}

/// What the overlays say of `host`, reached with the remote shell `rsh` (`-e`).
pub async fn probe(host: &str, rsh: &str, env: &OverlayEnv) -> OverlaySeen {
    let shell = shell_seen(host, rsh, env);
    let mut names = vec![host.to_owned()];
    if let Some(s) = shell.as_ref().filter(|s| s.hostname != host) {
        names.push(s.hostname.clone());
    }
    let tailscale =
        match tokio::time::timeout(LOCALAPI_WAIT, ask_tailscaled(&env.tailscale_socket, &names))
            .await
        {
            Ok(seen) => seen,
            Err(_) => TailscaleSeen::Unreadable {
                reason: format!("no answer within {} ms", LOCALAPI_WAIT.as_millis()),
            },
        };
    OverlaySeen {
        host: host.to_owned(),
        tailscale,
        teleport: teleport_seen(env),
        shell,
    }
}

/// `-e` and the ssh configuration for `host`: its `HostName`, and any proxy set for it.
fn shell_seen(host: &str, rsh: &str, env: &OverlayEnv) -> Option<ShellSeen> {
    let cli = RshOptions::parse(&split_words(rsh)?).ok()?;
    let mut config = config_path(&cli, &env.home)
        .and_then(|p| SshConfig::load(&p, &env.home).ok())
        .unwrap_or_default();
    if let Some(system) = system_config_path(&cli).and_then(|p| SshConfig::load_system(&p).ok()) {
        config.append(system);
    }
    let local = LocalContext {
        home: env.home.clone(),
        user: env.user.clone(),
        hostname: "localhost".into(),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let settings = config.resolve(bare, &cli, &local);
    Some(ShellSeen {
        program_is_ssh: cli.program_is_ssh(),
        hostname: settings.hostname,
        proxy: settings.proxy_command.or(settings.proxy_jump),
    })
}

/// GET `path` from the LocalAPI on `socket`; the answer's body (bounded).
async fn localapi_get(socket: &Path, path: &str) -> Result<Vec<u8>, String> {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    // HTTP/1.0: the answer ends with the connection, without chunks.
    let request = format!("GET {path} HTTP/1.0\r\nHost: local-tailscaled.sock\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let cap = (MAX_ANSWER_BYTES + 16 * 1024) as u64;
    (&mut stream)
        .take(cap + 1)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if answer.len() as u64 > cap {
        return Err(format!("an answer over {MAX_ANSWER_BYTES} bytes"));
    }
    tailscale::http_body(&answer, MAX_ANSWER_BYTES).map_err(|e| e.to_string())
}

async fn ask_tailscaled(socket: &Path, names: &[String]) -> TailscaleSeen {
    let socket_text = socket.display().to_string();
    let body = match localapi_get(socket, "/localapi/v0/status").await {
        Ok(body) => body,
        Err(reason) if !socket.exists() || reason.contains("refused") => {
            return TailscaleSeen::NoDaemon {
                socket: socket_text,
                reason,
            }
        }
        Err(reason) => return TailscaleSeen::Unreadable { reason },
    };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut tailnet = match tailscale::parse_status(&body, &refs) {
        Ok(t) => t,
        Err(e) => {
            return TailscaleSeen::Unreadable {
                reason: e.to_string(),
            }
        }
    };
    // A tailnet address that is no peer in the status (a node shared from another tailnet
    // shows up only to whois): ask whois.
    let tailnet_ip = names
        .iter()
        .filter_map(|n| n.trim_start_matches('[').trim_end_matches(']').parse().ok())
        .find(|ip| tailscale::is_tailnet_addr(*ip));
    if let (None, Some(ip)) = (&tailnet.peer, tailnet_ip) {
        let addr = std::net::SocketAddr::new(ip, 0);
        if let Ok(body) = localapi_get(socket, &format!("/localapi/v0/whois?addr={addr}")).await {
            tailnet.peer = tailscale::parse_whois(&body).ok();
        }
    }
    TailscaleSeen::Status(Box::new(tailnet))
}

/// At most `max` bytes of `path`, as text.
fn read_small(path: &Path, max: usize) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(max as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > max {
        return Err(format!("{}: over {max} bytes", path.display()));
    }
    Ok(text)
}

fn teleport_seen(env: &OverlayEnv) -> TeleportSeen {
    let no = |reason: String| TeleportSeen::NoProfile { reason };
    let current = env.tsh_home.join("current-profile");
    let name = match read_small(&current, 4096) {
        Ok(text) => match teleport::parse_current_profile(&text) {
            Some(name) => name,
            None => return no(format!("{}: no profile name", current.display())),
        },
        Err(e) => return no(e),
    };
    let file = env.tsh_home.join(format!("{name}.yaml"));
    let profile = match read_small(&file, MAX_PROFILE_BYTES) {
        Ok(text) => match teleport::parse_profile(&name, &text) {
            Some(p) => p,
            None => return no(format!("{}: no web_proxy_addr", file.display())),
        },
        Err(e) => return no(e),
    };
    let on_disk = |p: Option<PathBuf>| p.filter(|p| p.is_file()).map(|p| p.display().to_string());
    let files = profile.key_files(&env.tsh_home);
    TeleportSeen::Profile(Box::new(TshLogin {
        tsh: find_program("tsh", env.path.as_deref()),
        files: TshKeyFiles {
            key: on_disk(files.key),
            cert: on_disk(files.cert),
            known_hosts: on_disk(files.known_hosts),
        },
        profile,
    }))
}

/// `name` in the directories of `path`, if there and executable.
fn find_program(name: &str, path: Option<&std::ffi::OsStr>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    //! The probe against real sockets and files; tailscaled itself cannot run here, so a
    //! listener stands in for it.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env_in(dir: &Path) -> OverlayEnv {
        OverlayEnv {
            tailscale_socket: dir.join("tailscaled.sock"),
            tsh_home: dir.join("tsh"),
            path: Some(dir.join("bin").into_os_string()),
            home: dir.to_path_buf(),
            user: "alice".into(),
        }
    }

    #[tokio::test]
    async fn no_socket_and_no_tsh_are_observations() {
        let dir = tempfile::tempdir().unwrap();
        let seen = probe("backup", "ssh -F none", &env_in(dir.path())).await;
        assert!(
            matches!(&seen.tailscale, TailscaleSeen::NoDaemon { reason, .. } if reason.contains("No such file")),
            "{seen:?}"
        );
        assert!(
            matches!(seen.teleport, TeleportSeen::NoProfile { .. }),
            "{seen:?}"
        );
        let shell = seen.shell.unwrap();
        assert!(shell.program_is_ssh);
        assert_eq!(shell.hostname, "backup");
        assert_eq!(shell.proxy, None);
    }

    #[tokio::test]
    async fn a_tailscaled_that_never_answers_is_given_up_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        // Accepts (the kernel's backlog) and never answers.
        let _silent = std::os::unix::net::UnixListener::bind(&env.tailscale_socket).unwrap();
        let seen = probe("backup", "ssh", &env).await;
        assert!(
            matches!(&seen.tailscale, TailscaleSeen::Unreadable { reason } if reason.contains("no answer within 300 ms")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn the_tsh_profile_tsh_on_path_and_the_ssh_proxy_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        std::fs::create_dir_all(&env.tsh_home).unwrap();
        std::fs::write(env.tsh_home.join("current-profile"), "tp.example.com\n").unwrap();
        std::fs::write(
            env.tsh_home.join("tp.example.com.yaml"),
            "web_proxy_addr: tp.example.com:443\nuser: alice\ncluster: lab\n",
        )
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("tsh"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("tsh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("ssh_config");
        std::fs::write(
            &config,
            "Host db\n  HostName db1.lab\n  ProxyJump gw.example.com\n",
        )
        .unwrap();
        let rsh = format!("ssh -F {}", config.display());
        // Of tsh's credentials, only the key is on disk.
        let keys = env.tsh_home.join("keys/tp.example.com");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join("alice"), "key").unwrap();
        let seen = probe("db", &rsh, &env).await;
        let TeleportSeen::Profile(login) = &seen.teleport else {
            panic!("{seen:?}");
        };
        assert_eq!(login.profile.cluster, "lab");
        let key = login.files.key.as_deref();
        assert_eq!(key, Some(keys.join("alice").to_str().unwrap()));
        assert_eq!(
            (&login.files.cert, &login.files.known_hosts),
            (&None, &None)
        );
        assert_eq!(
            login.tsh.as_deref(),
            Some(bin.join("tsh").to_str().unwrap())
        );
        let shell = seen.shell.as_ref().unwrap();
        assert_eq!(shell.hostname, "db1.lab");
        assert_eq!(shell.proxy.as_deref(), Some("gw.example.com"));
        // A profile file over the bound is no profile.
        std::fs::write(
            env.tsh_home.join("tp.example.com.yaml"),
            "#".repeat(MAX_PROFILE_BYTES + 1),
        )
        .unwrap();
        let seen = probe("db", &rsh, &env).await;
        assert!(
            matches!(&seen.teleport, TeleportSeen::NoProfile { reason } if reason.contains("over")),
            "{seen:?}"
        );
    }
}
