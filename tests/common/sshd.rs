//! A real OpenSSH `sshd` on a loopback port for tests: host and client keys generated in a
//! temporary directory, public-key login as the current user, killed on drop.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running sshd.
pub struct Sshd {
    child: Child,
    /// Its port on [`Sshd::addr`].
    pub port: u16,
    /// The address it listens on.
    pub addr: String,
    dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(st.success(), "ssh-keygen failed");
}

impl Sshd {
    /// Start one on 127.0.0.1, keeping its files in `dir` (which must exist).
    pub fn start(dir: &Path) -> Sshd {
        Sshd::start_on(dir, "127.0.0.1")
    }

    /// Start one listening on `addr` (of the calling thread's network namespace).
    pub fn start_on(dir: &Path, addr: &str) -> Sshd {
        Sshd::start_with(dir, addr, "")
    }

    /// Start one on `addr` with `extra` lines in its configuration (paths in them may use
    /// `{dir}`, replaced by its directory).
    pub fn start_with(dir: &Path, addr: &str, extra: &str) -> Sshd {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd not found: apt-get install openssh-server");
        keygen(&dir.join("host_key"));
        keygen(&dir.join("client_key"));
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind((addr, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {addr}\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
                 StrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\nLogLevel VERBOSE\n{extra}",
                d = dir.display(),
                extra = extra.replace("{dir}", &dir.display().to_string()),
            ),
        )
        .unwrap();
        // Privilege separation needs its directory.
        let _ = fs::create_dir_all("/run/sshd");
        let mut child = Command::new(sshd)
            .args(["-D", "-E"])
            .arg(dir.join("sshd.log"))
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        let host_pub = fs::read_to_string(dir.join("host_key.pub")).unwrap();
        fs::write(
            dir.join("known_hosts"),
            format!("[{addr}]:{port} {}", host_pub.trim()),
        )
        .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect((addr, port)).is_ok() {
                return Sshd {
                    child,
                    port,
                    addr: addr.to_owned(),
                    dir: dir.to_path_buf(),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("sshd did not start on port {port}");
    }

    /// The directory holding its keys, configuration, log and `authorized_keys`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The client's private key (its public half is authorized).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// A known_hosts file holding its host key as `[ADDR]:PORT`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Its host public key, one line (`ssh-ed25519 AAAA… comment`).
    pub fn host_pub(&self) -> String {
        fs::read_to_string(self.dir.join("host_key.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The `-e` command line that logs in to it with the generated key, checking its host key.
    pub fn rsh(&self) -> String {
        format!(
            "ssh -p {} -i {}/client_key -o UserKnownHostsFile={}/known_hosts \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes \
             -o LogLevel=ERROR",
            self.port,
            self.dir.display(),
            self.dir.display()
        )
    }
}
