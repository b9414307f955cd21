//! The local side of a login: [`LoginEnv`] (home directory, user name, host name, ssh-agent
//! socket) and [`tty_prompt`], the controlling terminal that questions are asked on.
//!
//! What it owns: reading these from this process — environment variables, the password
//! database, `gethostname(2)`, `/dev/tty` (with echo off for secrets). What it does not own:
//! what they are used for (`~` and `%` tokens are [`crate::ssh_config`]'s, the questions and
//! their answers belong to `known_hosts` and `auth`).

use std::io::Write as _;
use std::path::PathBuf;

/// What a login takes from the local environment; [`LoginEnv::from_process`] reads it from this
/// process, tests build their own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginEnv {
    /// The home directory: `~` in paths, `~/.ssh/config`, the default keys and known hosts.
    pub home: PathBuf,
    /// The local user name: the login name when none is configured.
    pub user: String,
    /// The local host name (`%l` in the configuration).
    pub hostname: String,
    /// The ssh-agent socket (`SSH_AUTH_SOCK`), if any.
    pub auth_sock: Option<PathBuf>,
}

impl LoginEnv {
    /// This process's: `$HOME` (else the password database), `$USER`/`$LOGNAME` (else the
    /// password database), the host name, `$SSH_AUTH_SOCK`.
    pub fn from_process() -> LoginEnv {
        let pw = passwd_entry();
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| pw.as_ref().map(|(_, home)| home.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let user = pw
            .map(|(name, _)| name)
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "root".into());
        LoginEnv {
            home,
            user,
            hostname: local_hostname(),
            auth_sock: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }

    /// An environment with the given home directory and user, this machine's host name and no
    /// agent.
    pub fn new(home: impl Into<PathBuf>, user: impl Into<String>) -> LoginEnv {
        LoginEnv {
            home: home.into(),
            user: user.into(),
            hostname: local_hostname(),
            auth_sock: None,
        }
    }

    /// Builder: the ssh-agent socket.
    pub fn with_auth_sock(mut self, sock: Option<PathBuf>) -> LoginEnv {
        self.auth_sock = sock;
        self
    }
}

/// (user name, home directory) of the effective user, from the password database.
fn passwd_entry() -> Option<(String, PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data that getpwuid_r fills in; buf outlives the pointers into it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: both are NUL-terminated strings inside buf.
    let (name, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
    Some((
        name.to_string_lossy().into_owned(),
        PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())),
    ))
}

fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Read a line on the controlling terminal, echoing it or not; `None` without a terminal.
pub(super) fn tty_prompt(prompt: &str, echo: bool) -> Option<String> {
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsRawFd;
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it in for a valid descriptor.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for as long as `tty` lives; `saved` is a valid termios.
    let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if !echo && have_termios {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) };
    }
    let _ = tty.write_all(prompt.as_bytes());
    let _ = tty.flush();
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    if !echo && have_termios {
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &saved) };
    }
    match read {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
    }
}
