//! A running `ProxyCommand`: started through `/bin/sh -c "exec COMMAND"` with its stdio as the
//! SSH connection's carrier, and stopped — with everything it started — when the session is
//! dropped (a failed login, the end of the run).
//!
//! What it owns: [`ProxyChild::spawn`] and stopping the command. A relay such as
//! `bash -c 'exec 3<>/dev/tcp/HOST/PORT; cat <&3 & exec cat >&3'` leaves a background process
//! holding the server's connection and our inherited stderr; SIGHUP to the command alone (what
//! `ssh` sends) orphans it, and then whoever reads our stderr — a script's pipe, a test harness
//! — waits until the server drops the connection (`LoginGraceTime`, or never once logged in).
//! So the command runs in its own process group when we have no controlling terminal (nobody can
//! be asked anything there), and on drop SIGHUP goes to that group, to the command and to every
//! process descended from it. With a terminal the command stays in our process group, so that a
//! password prompt of its own (`ProxyCommand ssh -W %h:%p jump`) can still read the terminal.
//!
//! What it does not own: the SSH connection over it (`session`), how long the handshake over it
//! may take (`session`'s login bound).

use std::collections::HashMap;

use arsync_core::transport::TransportError;

use super::connect_error;

/// A running `ProxyCommand` and the stdio halves it was started with.
pub(super) struct ProxyChild {
    child: tokio::process::Child,
    /// The id of the process group it leads, when it leads one of its own (started without a
    /// controlling terminal). Kept apart from the child: once the command itself has exited
    /// and been reaped, what it left running is still found through this group.
    own_group: Option<libc::pid_t>,
}

impl ProxyChild {
    /// Start `command` (already `%`-expanded) for `target` (used in messages); its stdout and
    /// stdin become the connection.
    pub(super) fn spawn(
        command: &str,
        target: &str,
    ) -> Result<
        (
            ProxyChild,
            tokio::process::ChildStdout,
            tokio::process::ChildStdin,
        ),
        TransportError,
    > {
        let own_group = !has_controlling_terminal();
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        if own_group {
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(|e| {
            TransportError::unreachable(target, format!("ProxyCommand {command:?}"), e)
        })?;
        let own_group = if own_group {
            child.id().and_then(|p| libc::pid_t::try_from(p).ok())
        } else {
            None
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(connect_error(target, "ProxyCommand has no stdio"));
        };
        Ok((ProxyChild { child, own_group }, stdout, stdin))
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        // Its group first, whether or not the command itself is still there: a relay's
        // foreground half exits when its input ends (a refused login closes it) and is reaped,
        // while its background half still holds the server's connection and our stderr.
        if let Some(group) = self.own_group {
            // SAFETY: plain kill(2) on the process group we created; while any process of it
            // lives, the id cannot be taken by another group.
            unsafe {
                libc::kill(-group, libc::SIGHUP);
            }
        }
        let Some(pid) = self.child.id().and_then(|p| libc::pid_t::try_from(p).ok()) else {
            // Already reaped: it has exited (with a terminal, no group of its own to reach
            // what it left).
            return;
        };
        // Found before any is signalled: a killed parent's children move to init.
        let family = descendants(pid);
        // SAFETY: plain kill(2) on the process we started and have not reaped, so its id is
        // not reused, and on processes just seen descending from it.
        unsafe {
            libc::kill(pid, libc::SIGHUP);
            for p in family {
                libc::kill(p, libc::SIGHUP);
            }
        }
    }
}

/// Whether this process has a controlling terminal (`/dev/tty` opens).
fn has_controlling_terminal() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

/// The processes descended from `root` (children, their children, …), from `/proc`; empty
/// where `/proc` cannot be read.
fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| parent_in_stat(&s))
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(p) = next.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if c != root && !found.contains(&c) {
                found.push(c);
                next.push(c);
            }
        }
    }
    found
}

/// The parent's id in a `/proc/PID/stat` line: `PID (COMM) STATE PPID …`, where COMM may hold
/// spaces and parentheses (so the fields are counted after the last `)`).
fn parent_in_stat(stat: &str) -> Option<libc::pid_t> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_after_the_command_name() {
        assert_eq!(parent_in_stat("42 (cat) S 7 42 42 0"), Some(7));
        assert_eq!(parent_in_stat("42 (a) b) (c) R 9 1"), Some(9));
        assert_eq!(parent_in_stat("42 (cat"), None);
    }

    #[test]
    fn a_shell_and_its_background_child_are_found() {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .spawn()
            .expect("sh");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let mut found = Vec::new();
        for _ in 0..100 {
            found = descendants(pid);
            if found.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Stop them whatever the assertion says.
        for p in found.iter().copied().chain([pid]) {
            // SAFETY: plain kill(2) on processes this test started.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
        let mut child = child;
        let _ = child.wait();
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
