//! The per-host memory's file: where it lives, reading it before negotiation and storing what
//! the probes learned after — the thin I/O around [`arsync_core::negotiate::memory`].
//!
//! The file is `$ARSYNC_CACHE_DIR/hosts`, else `$XDG_CACHE_HOME/arsync/hosts`, else
//! `~/.cache/arsync/hosts`; written whole to a temporary file (mode 0600) and renamed over
//! the old one, so a reader sees the old or the new, never half. Two runs storing at once:
//! the last rename wins and the other's facts are lost — a cache can afford it. Nothing here
//! stops a sync: a file that cannot be read or written is at most an `--explain` line.
//!
//! Not here: the format, the expiries and what a fact means (`negotiate::memory`), or when
//! the driver loads and stores (`remote`).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arsync_core::negotiate::memory::{self, HostFacts, HostMemory, LinkSample, PathsTag, UnixTime};
use arsync_core::negotiate::Observations;
use arsync_core::transport::{
    BoxFuture, Capabilities, Connection, PathStats, StreamPair, TransportError,
};
use arsync_transports::ssh_config::RshOptions;

use crate::args;
use crate::output::explain;

/// Now, as the memory counts time.
pub fn now() -> UnixTime {
    UnixTime(arsync_core::cachedir::now_secs())
}

/// Where the memory file is, from the environment; `None` when nothing names a place.
pub fn location() -> Option<PathBuf> {
    arsync_core::cachedir::dir().map(|d| d.join("hosts"))
}

/// Read the memory at `path`: a missing file is an empty memory; one that cannot be read or
/// is not ours is an empty memory and a note for `--explain`.
pub fn load(path: &Path) -> (HostMemory, Option<String>) {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (HostMemory::default(), None),
        Err(e) => {
            let note = format!("host memory: cannot read {}: {e}", path.display());
            return (HostMemory::default(), Some(note));
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = file
        .take(memory::MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
    {
        let note = format!("host memory: cannot read {}: {e}", path.display());
        return (HostMemory::default(), Some(note));
    }
    let parsed = HostMemory::parse(&String::from_utf8_lossy(&bytes));
    let note = if parsed.foreign {
        Some(format!(
            "host memory: {} is not arsync's (or is damaged): ignored, rebuilt on the next store",
            path.display()
        ))
    } else if parsed.skipped > 0 {
        Some(format!(
            "host memory: {}: {} damaged line(s) skipped",
            path.display(),
            parsed.skipped
        ))
    } else {
        None
    };
    (parsed.memory, note)
}

/// Write `memory` to `path`: a temporary file beside it (mode 0600), then a rename over it.
pub fn save(path: &Path, memory: &HostMemory) -> io::Result<()> {
    arsync_core::cachedir::write_private(path, memory.to_text().as_bytes())
}

/// The memory of one run's host: what the driver recalls before negotiating and remembers
/// after.
pub struct HostRecall {
    /// The file, unless `--no-host-memory` or no place.
    path: Option<PathBuf>,
    /// What the host is remembered under.
    key: Option<String>,
    /// The host alone (no user, no SSH port): where an `arsync serve` port is remembered.
    serve_key: Option<String>,
    /// `--explain`.
    explain: bool,
}

impl HostRecall {
    /// The memory of `remote`'s host as the command line reaches it: for `host:path`
    /// `[user@]host[:port]` (the user and port from the target or the `-e` command's `-l`
    /// and `-p`), for `arsync://` the host alone. With `--forget-host`, what was remembered
    /// of it is forgotten first.
    pub fn open(cmd: &args::Command, remote: &args::Remote) -> HostRecall {
        let serve_key = memory::host_key(None, &remote.host, None);
        let key = if remote.arsync_port.is_some() {
            serve_key.clone()
        } else {
            let rsh = arsync_transports::ssh::split_words(&cmd.rsh)
                .and_then(|words| RshOptions::parse(&words).ok())
                .unwrap_or_default();
            let user = remote.user.as_deref().or(rsh.user.as_deref());
            memory::host_key(user, &remote.host, rsh.port)
        };
        let recall = HostRecall {
            path: location().filter(|_| !cmd.no_host_memory),
            key,
            serve_key,
            explain: cmd.explain,
        };
        if cmd.forget_host {
            recall.forget();
        }
        recall
    }

    fn forget(&self) {
        let (Some(path), Some(key)) = (&self.path, &self.key) else {
            return;
        };
        let (mut mem, _) = load(path);
        if mem.forget(key) {
            match save(path, &mem) {
                Ok(()) => explain(self.explain, format!("host memory: forgot {key}")),
                Err(e) => self.cannot_store(path, &e),
            }
        }
    }

    /// What still holds of the host for a run of `paths` (issue 16, little moved: the last
    /// run's record only where it synced the same paths); each fact is an `--explain` line.
    pub fn recall(&self, paths: PathsTag) -> HostFacts {
        let (Some(path), Some(key)) = (&self.path, &self.key) else {
            return HostFacts::default();
        };
        let (mem, note) = load(path);
        if let Some(note) = note {
            explain(self.explain, note);
        }
        let mut facts = mem.fresh(key, now()).for_paths(paths);
        if let Some(serve) = self.serve_key.as_deref().filter(|k| k != key) {
            facts.serve_port = facts.serve_port.or(mem.fresh(serve, now()).serve_port);
        }
        for line in facts.explain(key) {
            explain(self.explain, line);
        }
        facts
    }

    /// Store what this run's probes, its session's link and an `arsync serve` that served it
    /// (`serve_port`) showed: the file is read again (another run may have stored since), the
    /// facts replaced, the expired dropped.
    pub fn remember(&self, seen: &Observations, link: Option<LinkSample>, serve_port: Option<u16>) {
        let (Some(path), Some(key)) = (&self.path, &self.key) else {
            return;
        };
        if seen.remote.is_none()
            && seen.quic.is_none()
            && seen.moved.is_none()
            && link.is_none()
            && serve_port.is_none()
        {
            return;
        }
        if let Some(sample) = link {
            explain(self.explain, format!("session to {key}: {sample}"));
        }
        let at = now();
        let (mut mem, _) = load(path);
        if let Some(facts) = mem.entry(key) {
            facts.learn(seen, at);
            if let Some(sample) = link {
                facts.learn_link(sample, at);
            }
        }
        if let (Some(port), Some(serve)) = (serve_port, self.serve_key.as_deref()) {
            if let Some(facts) = mem.entry(serve) {
                facts.learn_serve_port(port, at);
            }
        }
        mem.prune(at);
        match save(path, &mem) {
            Ok(()) => explain(
                self.explain,
                format!(
                    "host memory: what was learned of {key} stored in {}",
                    path.display()
                ),
            ),
            Err(e) => self.cannot_store(path, &e),
        }
    }

    fn cannot_store(&self, path: &Path, e: &io::Error) {
        explain(
            self.explain,
            format!("host memory: cannot store in {}: {e}", path.display()),
        );
    }
}

/// A session's connection, shared so that its path statistics can be read when the session
/// is done ([`SessionWatch::sample`]); otherwise the connection itself.
#[derive(Debug)]
struct Watched(Arc<dyn Connection>);

impl Connection for Watched {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.0.open_stream()
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.0.accept_stream()
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    fn path_stats(&self) -> Option<PathStats> {
        self.0.path_stats()
    }

    fn local_shelf(&self) -> Option<Arc<arsync_core::transport::LocalShelf>> {
        self.0.local_shelf()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.0.close()
    }
}

/// What reads a session's path statistics once it is done. Dropping it lets the connection
/// go (a failed session's remote process is killed on that drop).
pub struct SessionWatch {
    conn: Arc<dyn Connection>,
    started: Instant,
}

/// `conn` for the session, and the watch on it.
pub fn watch(conn: Box<dyn Connection>) -> (Box<dyn Connection>, SessionWatch) {
    let conn: Arc<dyn Connection> = Arc::from(conn);
    let watch = SessionWatch {
        conn: conn.clone(),
        started: Instant::now(),
    };
    (Box::new(Watched(conn)), watch)
}

impl SessionWatch {
    /// The session's RTT and delivery rate, where its transport measures an RTT (QUIC).
    pub fn sample(self) -> Option<LinkSample> {
        let stats = self.conn.path_stats()?;
        // Delivered, not sent: a congestion controller that overshoots a shallow queue sends
        // far more than arrives (the WAN bench: QUIC's bytes sent over the session's time
        // read 27 MB/s on a 100 Mbit/s link).
        let bytes = stats
            .bytes_delivered()
            .unwrap_or(0)
            .max(stats.bytes_received.unwrap_or(0));
        Some(LinkSample::from_session(
            stats.rtt?,
            bytes,
            self.started.elapsed(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn a_memory() -> HostMemory {
        let mut m = HostMemory::default();
        m.entry("backup")
            .unwrap()
            .learn_serve_port(8730, UnixTime(1_796_580_600));
        m
    }

    #[test]
    fn saved_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/arsync/hosts");
        assert_eq!(load(&path), (HostMemory::default(), None), "none yet");
        save(&path, &a_memory()).unwrap();
        assert_eq!(load(&path), (a_memory(), None));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_link_planted_at_the_temporary_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let temp = dir
            .path()
            .join(format!(".hosts.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temp).unwrap();
        save(&path, &a_memory()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(load(&path).0, a_memory());
    }

    #[test]
    fn what_cannot_be_read_is_a_note_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: unreadable, and cannot be replaced.
        let path = dir.path().join("hosts");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "x").unwrap();
        let (mem, note) = load(&path);
        assert!(mem.is_empty());
        assert!(note.unwrap().contains("cannot read"));
        assert!(save(&path, &a_memory()).is_err());
        // Too long: not ours.
        let long = dir.path().join("long");
        fs::write(&long, vec![b'#'; memory::MAX_FILE_BYTES as usize + 10]).unwrap();
        let (mem, note) = load(&long);
        assert!(mem.is_empty());
        assert!(note.unwrap().contains("is not arsync's"));
    }
}
