//! The built-in SSH client (`arsync_transports::ssh_native`) against a real OpenSSH `sshd` on a
//! loopback port (`tests/common/sshd.rs`): exec and exit status, `-e` options, a `-F`
//! configuration, known_hosts (hashed, unknown, accept-new, changed), keys (wrong, RSA,
//! encrypted with and without a passphrase source, ssh-agent with and without IdentitiesOnly),
//! ProxyCommand and ProxyJump. Every login uses a throwaway home directory, so the user's own
//! `~/.ssh` never takes part.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arsync_core::transport::{AuthConfig, Connection, Endpoint, TransportError, TransportFactory};
use arsync_transports::ssh_native::{LoginEnv, NativeLogin, NativeSsh, PassphrasePrompt};
use common::sshd::Sshd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest any one case may take (they take well under a second each).
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

struct Fixture {
    tmp: tempfile::TempDir,
    sshd: Sshd,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("arsync-native-")
            .tempdir()
            .unwrap();
        let sshd_dir = tmp.path().join("sshd");
        fs::create_dir(&sshd_dir).unwrap();
        fs::create_dir(tmp.path().join("home")).unwrap();
        let sshd = Sshd::start(&sshd_dir);
        Fixture { tmp, sshd }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A home directory with nothing in it: no `~/.ssh`, no keys, no config.
    fn home(&self) -> PathBuf {
        self.path("home")
    }

    fn env(&self) -> LoginEnv {
        LoginEnv::new(self.home(), LoginEnv::from_process().user)
    }

    fn login(&self, rsh: &str) -> NativeLogin {
        NativeLogin::with_env(rsh, &Endpoint::host("127.0.0.1"), self.env()).unwrap()
    }

    /// `-p PORT -o UserKnownHostsFile=KH -o StrictHostKeyChecking=yes -o BatchMode=yes`, plus
    /// `extra`.
    fn rsh_without_key(&self, extra: &str) -> String {
        format!(
            "ssh -p {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes {extra}",
            self.sshd.port,
            self.sshd.known_hosts().display()
        )
    }

    /// A new ed25519 key (`-N passphrase`), its public half authorized on the sshd if asked.
    fn keygen(&self, name: &str, kind: &str, passphrase: &str, authorize: bool) -> PathBuf {
        let path = self.path(name);
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", passphrase, "-f"])
            .arg(&path);
        if kind == "rsa" {
            cmd.args(["-b", "2048"]);
        }
        assert!(cmd.status().unwrap().success(), "ssh-keygen {kind}");
        if authorize {
            let public = fs::read_to_string(path.with_extension("pub")).unwrap();
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(self.sshd.dir().join("authorized_keys"))
                .unwrap();
            writeln!(f).unwrap();
            f.write_all(public.as_bytes()).unwrap();
        }
        path
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, text).unwrap();
        p
    }
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CASE_TIMEOUT, fut)
        .await
        .expect("case took too long")
}

/// Run `command`, feed it `input`, read all of its output, close: (output, close result).
async fn run(
    login: &NativeLogin,
    command: &str,
    input: &[u8],
) -> (Vec<u8>, Result<(), TransportError>) {
    let conn = login.exec(command).await.expect("exec");
    let stream = conn.open_stream().await.unwrap();
    assert!(
        conn.open_stream().await.is_err(),
        "one SSH exec channel is one stream"
    );
    let mut send = stream.send;
    let mut recv = stream.recv;
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        send.write_all(&input).await.unwrap();
        send.shutdown().await.unwrap();
    });
    let mut out = Vec::new();
    recv.read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    (out, conn.close().await)
}

async fn output(login: &NativeLogin, command: &str) -> String {
    let (out, closed) = run(login, command, b"").await;
    closed.unwrap();
    String::from_utf8(out).unwrap()
}

fn auth_error(r: Result<impl std::fmt::Debug, TransportError>) -> String {
    match r {
        Err(TransportError::Auth(m)) => m,
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

fn sha256_fingerprint(pubfile: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(pubfile)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn exec_output_input_and_exit_status() {
    let f = Fixture::new();
    let login = f.login(&f.sshd.rsh());
    assert_eq!(login.target(), format!("127.0.0.1:{}", f.sshd.port));
    within(async {
        assert_eq!(output(&login, "echo hello").await, "hello\n");

        // stdin through the channel, and enough data both ways to need window adjustments.
        let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
        let (out, closed) = run(&login, "cat", &big).await;
        closed.unwrap();
        assert!(
            out == big,
            "cat returned {} of {} bytes",
            out.len(),
            big.len()
        );

        let (_, closed) = run(&login, "exit 3", b"").await;
        match closed {
            Err(TransportError::PeerExited { code, status, .. }) => {
                assert_eq!(code, Some(3));
                assert_eq!(status, "exit status: 3");
            }
            other => panic!("exit 3 gave {other:?}"),
        }
        let (_, closed) = run(&login, "arsync-no-such-command-here", b"").await;
        assert!(
            matches!(
                closed,
                Err(TransportError::PeerExited {
                    code: Some(127),
                    ..
                })
            ),
            "{closed:?}"
        );
        // Output and a failing status together.
        let (out, closed) = run(&login, "echo partial; exit 5", b"").await;
        assert_eq!(out, b"partial\n");
        assert!(matches!(
            closed,
            Err(TransportError::PeerExited { code: Some(5), .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn the_transport_factory_runs_the_quoted_remote_command() {
    let f = Fixture::new();
    let ssh = NativeSsh::with_rsh(&f.sshd.rsh()).unwrap();
    assert_eq!(ssh.name(), "ssh-native");
    let mut endpoint = Endpoint::host("127.0.0.1");
    endpoint.remote_command = vec!["printf".into(), "%s|".into(), "a b".into(), "it's".into()];
    // The factory uses this process's environment; the rsh names key and known hosts.
    within(async {
        let conn = ssh
            .connect(&endpoint, &AuthConfig::default())
            .await
            .unwrap();
        let mut s = conn.open_stream().await.unwrap();
        s.send.shutdown().await.unwrap();
        let mut out = String::new();
        s.recv.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "a b|it's|");
        conn.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn rsh_options_and_endpoint_port_are_honoured() {
    let f = Fixture::new();
    let key = f.sshd.client_key();
    within(async {
        // -p, -i, -o UserKnownHostsFile, -o StrictHostKeyChecking, no BatchMode.
        let rsh = format!(
            "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            f.sshd.port,
            key.display(),
            f.sshd.known_hosts().display()
        );
        assert_eq!(output(&f.login(&rsh), "echo $((40+2))").await, "42\n");

        // The endpoint's port counts as -p does (here: with no -p at all).
        let rsh = format!(
            "ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
            key.display(),
            f.sshd.known_hosts().display()
        );
        let mut endpoint = Endpoint::host("127.0.0.1");
        endpoint.port = Some(f.sshd.port);
        let login = NativeLogin::with_env(&rsh, &endpoint, f.env()).unwrap();
        assert_eq!(login.target(), format!("127.0.0.1:{}", f.sshd.port));
        assert_eq!(output(&login, "echo ok").await, "ok\n");

        // Without -i (and nothing in ~/.ssh, no agent): nothing to offer.
        let m = auth_error(f.login(&f.rsh_without_key("")).exec("true").await);
        assert!(m.contains("Permission denied (publickey)"), "{m}");
    })
    .await;
}

#[tokio::test]
async fn a_config_file_names_the_host() {
    let f = Fixture::new();
    let cfg = f.write(
        "config",
        &format!(
            "# a user configuration\n\
             Host other\n  Port 1\n\
             Host myalias\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  \
             UserKnownHostsFile {kh}\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n\
             Host *\n  Port 2\n  User {user}\n",
            port = f.sshd.port,
            key = f.sshd.client_key().display(),
            kh = f.sshd.known_hosts().display(),
            user = LoginEnv::from_process().user,
        ),
    );
    let login = NativeLogin::with_env(
        &format!("ssh -F {}", cfg.display()),
        &Endpoint::host("myalias"),
        f.env(),
    )
    .unwrap();
    assert_eq!(login.target(), format!("127.0.0.1:{}", f.sshd.port));
    within(async {
        assert_eq!(output(&login, "echo via config").await, "via config\n");
    })
    .await;
}

#[tokio::test]
async fn hashed_known_hosts_entries_are_matched() {
    let f = Fixture::new();
    let kh = f.path("hashed_known_hosts");
    fs::copy(f.sshd.known_hosts(), &kh).unwrap();
    let st = Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&kh)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let text = fs::read_to_string(&kh).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let rsh = format!(
        "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        f.sshd.port,
        f.sshd.client_key().display(),
        kh.display()
    );
    within(async {
        assert_eq!(output(&f.login(&rsh), "echo hashed").await, "hashed\n");
    })
    .await;
}

#[tokio::test]
async fn an_unknown_host_is_refused_with_its_fingerprint() {
    let f = Fixture::new();
    let kh = f.write("empty_known_hosts", "");
    let fp = sha256_fingerprint(&f.sshd.dir().join("host_key.pub"));
    assert!(fp.starts_with("SHA256:"));
    within(async {
        for strict in ["yes", "ask"] {
            let rsh = format!(
                "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking={strict} -o BatchMode=yes",
                f.sshd.port,
                f.sshd.client_key().display(),
                kh.display()
            );
            let m = auth_error(f.login(&rsh).exec("echo should-not-run").await);
            assert!(m.contains(&fp), "{m}");
            assert!(
                m.contains(&format!("ssh-keyscan -p {} 127.0.0.1", f.sshd.port)),
                "{m}"
            );
            assert!(m.contains("StrictHostKeyChecking=accept-new"), "{m}");
        }
    })
    .await;
    assert_eq!(fs::read_to_string(&kh).unwrap(), "", "nothing learned");
}

#[tokio::test]
async fn accept_new_records_the_key_then_it_is_known() {
    let f = Fixture::new();
    let kh = f.path("fresh/.ssh/known_hosts");
    let rsh = |strict: &str| {
        format!(
            "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking={strict} -o BatchMode=yes",
            f.sshd.port,
            f.sshd.client_key().display(),
            kh.display()
        )
    };
    within(async {
        assert_eq!(
            output(&f.login(&rsh("accept-new")), "echo new").await,
            "new\n"
        );
        let text = fs::read_to_string(&kh).unwrap();
        let host_pub = f.sshd.host_pub();
        let blob = host_pub.split_whitespace().nth(1).unwrap();
        assert!(
            text.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 {blob}", f.sshd.port)),
            "{text}"
        );
        // Now known: strict checking passes, and nothing more is appended.
        assert_eq!(output(&f.login(&rsh("yes")), "echo known").await, "known\n");
        assert_eq!(fs::read_to_string(&kh).unwrap(), text);
    })
    .await;
}

#[tokio::test]
async fn a_changed_host_key_is_refused_loudly() {
    let f = Fixture::new();
    let impostor = f.keygen("impostor", "ed25519", "", false);
    let impostor_pub = fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let kh = f.write(
        "changed_known_hosts",
        &format!(
            "# old key\n[127.0.0.1]:{} {}",
            f.sshd.port,
            impostor_pub.trim()
        ),
    );
    within(async {
        // Refused even with StrictHostKeyChecking=no, as ssh does for a changed key.
        for strict in ["yes", "no", "accept-new"] {
            let rsh = format!(
                "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking={strict} -o BatchMode=yes",
                f.sshd.port,
                f.sshd.client_key().display(),
                kh.display()
            );
            let m = auth_error(f.login(&rsh).exec("true").await);
            assert!(m.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"), "{m}");
            assert!(m.contains(&format!("{}:2", kh.display())), "{m}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_denied() {
    let f = Fixture::new();
    let stranger = f.keygen("stranger", "ed25519", "", false);
    let rsh = f.rsh_without_key(&format!("-i {}", stranger.display()));
    within(async {
        let m = auth_error(f.login(&rsh).exec("true").await);
        assert!(m.contains("Permission denied"), "{m}");
    })
    .await;
}

#[tokio::test]
async fn an_rsa_key_logs_in() {
    let f = Fixture::new();
    let rsa = f.keygen("rsa_key", "rsa", "", true);
    let rsh = f.rsh_without_key(&format!("-i {} -o IdentitiesOnly=yes", rsa.display()));
    within(async {
        assert_eq!(output(&f.login(&rsh), "echo rsa").await, "rsa\n");
    })
    .await;
}

/// An `ssh-agent` on a socket of its own, killed on drop.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(sock: PathBuf, keys: &[&Path]) -> Agent {
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (apt-get install openssh-client)");
        let agent = Agent { child, sock };
        for _ in 0..100 {
            if agent.sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for key in keys {
            let st = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.sock)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "ssh-add {}", key.display());
        }
        agent
    }
}

#[tokio::test]
async fn agent_keys_are_used_and_identities_only_filters_them() {
    let f = Fixture::new();
    // The agent holds the authorized key; no -i, nothing in ~/.ssh.
    let agent = Agent::start(f.path("agent.sock"), &[&f.sshd.client_key()]);
    let env = f.env().with_auth_sock(Some(agent.sock.clone()));
    let endpoint = Endpoint::host("127.0.0.1");
    within(async {
        let login = NativeLogin::with_env(&f.rsh_without_key(""), &endpoint, env.clone()).unwrap();
        assert_eq!(output(&login, "echo agent").await, "agent\n");
        // Again on the same login: the remembered agent key.
        assert_eq!(output(&login, "echo again").await, "again\n");

        // IdentitiesOnly with -i naming only the public half: the agent signs for it.
        let public_only = f.path("only_public");
        fs::copy(
            f.sshd.dir().join("client_key.pub"),
            public_only.with_extension("pub"),
        )
        .unwrap();
        let rsh = f.rsh_without_key(&format!(
            "-o IdentitiesOnly=yes -i {}",
            public_only.display()
        ));
        let login = NativeLogin::with_env(&rsh, &endpoint, env.clone()).unwrap();
        assert_eq!(output(&login, "echo filtered").await, "filtered\n");

        // IdentitiesOnly with an unrelated key: the agent's key is not offered.
        let other = f.keygen("other", "ed25519", "", false);
        let rsh = f.rsh_without_key(&format!("-o IdentitiesOnly=yes -i {}", other.display()));
        let login = NativeLogin::with_env(&rsh, &endpoint, env.clone()).unwrap();
        let m = auth_error(login.exec("true").await);
        assert!(m.contains("Permission denied"), "{m}");
    })
    .await;
}

#[tokio::test]
async fn an_encrypted_key_without_a_way_to_ask_fails_clearly() {
    let f = Fixture::new();
    let enc = f.keygen("enc_key", "ed25519", "secret", true);
    within(async {
        // BatchMode: never ask.
        let rsh = f.rsh_without_key(&format!("-i {}", enc.display()));
        let m = auth_error(f.login(&rsh).exec("true").await);
        assert!(m.contains("Permission denied"), "{m}");
        assert!(m.contains("passphrase") && m.contains("enc_key"), "{m}");
        assert!(m.contains("ssh-agent"), "{m}");

        // No BatchMode, but no terminal either (skipped when the tests run on one).
        if fs::OpenOptions::new().read(true).open("/dev/tty").is_err() {
            let rsh = format!(
                "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                f.sshd.port,
                enc.display(),
                f.sshd.known_hosts().display()
            );
            let m = auth_error(f.login(&rsh).exec("true").await);
            assert!(m.contains("no terminal to ask for its passphrase"), "{m}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_passphrase_is_asked_once_per_login() {
    let f = Fixture::new();
    let enc = f.keygen("enc_key", "ed25519", "secret", true);
    let rsh = format!(
        "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
        f.sshd.port,
        enc.display(),
        f.sshd.known_hosts().display()
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let expected = enc.clone();
    let prompt: PassphrasePrompt = Arc::new(move |path: &Path| {
        assert_eq!(path, expected);
        counter.fetch_add(1, Ordering::SeqCst);
        Some("secret".to_owned())
    });
    let login = f.login(&rsh).with_passphrase_prompt(prompt);
    within(async {
        assert_eq!(output(&login, "echo one").await, "one\n");
        // A second connection, and a clone's: the decrypted key is remembered.
        assert_eq!(output(&login, "echo two").await, "two\n");
        assert_eq!(output(&login.clone(), "echo three").await, "three\n");
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A wrong passphrase: asked three times, then refused.
    let wrong_calls = Arc::new(AtomicUsize::new(0));
    let counter = wrong_calls.clone();
    let prompt: PassphrasePrompt = Arc::new(move |_: &Path| {
        counter.fetch_add(1, Ordering::SeqCst);
        Some("wrong".to_owned())
    });
    let login = f.login(&rsh).with_passphrase_prompt(prompt);
    within(async {
        let m = auth_error(login.exec("true").await);
        assert!(m.contains("wrong passphrase"), "{m}");
    })
    .await;
    assert_eq!(wrong_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn proxy_command_carries_the_connection() {
    let f = Fixture::new();
    // The host name resolves nowhere: only the proxy command can reach the sshd. Bash's
    // /dev/tcp keeps the test to what a Debian with openssh-client has.
    let kh = f.write(
        "proxy_known_hosts",
        &format!("[viaproxy.invalid]:{} {}\n", f.sshd.port, f.sshd.host_pub()),
    );
    let cfg = f.write(
        "config",
        &format!(
            "Host viaproxy\n  HostName viaproxy.invalid\n  Port {port}\n  IdentityFile {key}\n  \
             UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  \
             ProxyCommand bash -c 'exec 3<>/dev/tcp/127.0.0.1/%p; cat <&3 & exec cat >&3'\n",
            port = f.sshd.port,
            key = f.sshd.client_key().display(),
            kh = kh.display(),
        ),
    );
    let login = NativeLogin::with_env(
        &format!("ssh -F {}", cfg.display()),
        &Endpoint::host("viaproxy"),
        f.env(),
    )
    .unwrap();
    within(async {
        assert_eq!(output(&login, "echo proxied").await, "proxied\n");
        assert_eq!(output(&login, "echo twice").await, "twice\n");
    })
    .await;
}

/// A TCP relay to `port` on 127.0.0.1 that counts the bytes it carries from the far end.
fn counting_relay(port: u16) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let total = count.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            let total = total.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    match s_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total.fetch_add(n as u64, Ordering::SeqCst);
                            if c_out.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (relay_port, count)
}

#[tokio::test]
async fn proxy_jump_tunnels_through_the_jump_host() {
    let f = Fixture::new();
    // The jump host is the same sshd reached through a relay that counts bytes: the target's
    // output must flow through it (inside the jump host's connection).
    let (relay_port, relayed) = counting_relay(f.sshd.port);
    let kh = f.write(
        "jump_known_hosts",
        &format!(
            "[127.0.0.1]:{} {hk}\n[127.0.0.1]:{relay_port} {hk}\n",
            f.sshd.port,
            hk = f.sshd.host_pub()
        ),
    );
    let cfg = f.write(
        "config",
        &format!(
            "Host jump\n  HostName 127.0.0.1\n  Port {relay_port}\n\
             Host target\n  HostName 127.0.0.1\n  Port {port}\n  ProxyJump jump\n\
             Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n",
            port = f.sshd.port,
            key = f.sshd.client_key().display(),
            kh = kh.display(),
        ),
    );
    let login = NativeLogin::with_env(
        &format!("ssh -F {}", cfg.display()),
        &Endpoint::host("target"),
        f.env(),
    )
    .unwrap();
    within(async {
        let out = output(&login, "head -c 1000000 /dev/zero | tr '\\0' x").await;
        assert_eq!(out.len(), 1_000_000);
        assert!(out.bytes().all(|b| b == b'x'));
    })
    .await;
    let n = relayed.load(Ordering::SeqCst);
    assert!(n > 1_000_000, "only {n} bytes went through the jump host");
}

#[tokio::test]
async fn unreachable_and_lost_connections() {
    let f = Fixture::new();
    within(async {
        // Nothing listens there: a connect error naming the target, the refusal typed.
        let closed_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rsh = format!(
            "ssh -p {closed_port} -i {} -o BatchMode=yes",
            f.sshd.client_key().display()
        );
        match f.login(&rsh).exec("true").await {
            Err(TransportError::Unreachable {
                endpoint, source, ..
            }) => {
                assert_eq!(endpoint, format!("127.0.0.1:{closed_port}"));
                let io = source.downcast_ref::<std::io::Error>().map(|e| e.kind());
                assert_eq!(io, Some(std::io::ErrorKind::ConnectionRefused));
            }
            other => panic!("expected a connect error, got {other:?}"),
        }

        // The server side dies mid-command (its sshd session process is killed): the stream
        // ends and close() reports the connection lost, not a clean exit.
        let login = f.login(&f.sshd.rsh());
        let conn = login
            .exec("echo started; read go; kill -9 $PPID; sleep 5")
            .await
            .unwrap();
        let mut stream = conn.open_stream().await.unwrap();
        let mut started = [0u8; 8];
        stream.recv.read_exact(&mut started).await.unwrap();
        assert_eq!(&started, b"started\n");
        stream.send.write_all(b"go\n").await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.recv.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "{rest:?}");
        let closed = conn.close().await;
        assert!(matches!(closed, Err(TransportError::Closed)), "{closed:?}");
    })
    .await;
}
