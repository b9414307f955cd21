//! Issue 15, own: `-s/--secluded-args` (`--protect-args`) over rsync's protocol, as upstream's
//! main.c/rsync.c/io.c do it: the client starts `rsync --server [--sender] -s…` with only the
//! option cluster on the remote shell's command line, and sends the rest of the arguments
//! (options, `.`, the paths) on the stream before anything else, NUL-terminated each, after an
//! `arg0` of `rsync`, ended by an empty one; the server reads them first and parses them as if
//! they had been on its command line. Between two arsyncs the command line is quoted word by
//! word, so `-s` changes nothing there. Owns the split, the wire form and the server's read.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use arsync_core::transport::{
    BoxFuture, Capabilities, Connection, PathStats, StreamPair, TransportError,
};
use tokio::io::AsyncWriteExt;

/// At most this many bytes of secluded arguments (a path list fits; a runaway peer does not).
const MAX_SECLUDED_BYTES: usize = 4 << 20;
/// At most this many secluded arguments.
const MAX_SECLUDED_ARGS: usize = 100_000;

/// Split an rsync server command line (`PROGRAM… --server [--sender] -CLUSTER REST…`): the
/// command line keeps everything up to the cluster, which gains `s`; the rest goes on the
/// stream in rsync's wire form. Without `secluded`, the command line as it is and no bytes.
pub fn split(mut command: Vec<String>, secluded: bool) -> (Vec<String>, Vec<u8>) {
    if !secluded {
        return (command, Vec::new());
    }
    let Some(server) = command.iter().position(|a| a == "--server") else {
        return (command, Vec::new());
    };
    let mut cluster = server + 1;
    if command.get(cluster).is_some_and(|a| a == "--sender") {
        cluster += 1;
    }
    let Some(flags) = command.get_mut(cluster) else {
        return (command, Vec::new());
    };
    flags.insert(1, 's');
    let rest = command.split_off(cluster + 1);
    let mut wire = b"rsync\0".to_vec();
    for arg in rest {
        // rsync sends an empty argument as "." (an empty one ends the list).
        wire.extend_from_slice(if arg.is_empty() { b"." } else { arg.as_bytes() });
        wire.push(0);
    }
    wire.push(0);
    (command, wire)
}

/// Whether `argv` is a server started with `-s` whose arguments are still on stdin: `--server`
/// with `--secluded-args`/`--protect-args`, or an `s` in a short-option cluster before its
/// `e` (whose value is the rest of the cluster), and no `.` yet.
fn secluded_server(argv: &[OsString]) -> bool {
    let args: Vec<&[u8]> = argv.iter().skip(1).map(|a| a.as_bytes()).collect();
    let short_s = |a: &[u8]| {
        a.len() > 1
            && a[0] == b'-'
            && a[1] != b'-'
            && a[1..]
                .iter()
                .take_while(|&&c| c != b'e')
                .any(|&c| c == b's')
    };
    args.contains(&&b"--server"[..])
        && !args.contains(&&b"."[..])
        && args
            .iter()
            .any(|a| *a == b"--secluded-args" || *a == b"--protect-args" || short_s(a))
}

/// The server's whole command line: `argv` itself, or, when an rsync client started it with
/// `-s`, `argv` followed by the arguments read from stdin (without their `arg0`).
pub fn server_argv(mut argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    if !secluded_server(&argv) {
        return Ok(argv);
    }
    let mut args = read_args(|buf| {
        // SAFETY: reads into a valid one-byte buffer from this process's stdin; byte by byte,
        // so nothing past the arguments (the protocol that follows) is consumed here.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), 1) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error().to_string())
    })?;
    if !args.is_empty() {
        args.remove(0);
    }
    argv.extend(args.into_iter().map(OsString::from_vec));
    Ok(argv)
}

/// Read NUL-terminated arguments until an empty one, `read` filling one byte at a time (0 at
/// the end of the stream), bounded by [`MAX_SECLUDED_BYTES`] and [`MAX_SECLUDED_ARGS`].
fn read_args(
    mut read: impl FnMut(&mut [u8; 1]) -> Result<usize, String>,
) -> Result<Vec<Vec<u8>>, String> {
    let (mut args, mut cur, mut total) = (Vec::new(), Vec::new(), 0usize);
    loop {
        let mut b = [0u8; 1];
        if read(&mut b)? == 0 {
            return Err("connection closed while reading the secluded arguments".into());
        }
        total += 1;
        if total > MAX_SECLUDED_BYTES || args.len() > MAX_SECLUDED_ARGS {
            return Err("the secluded arguments are too long".into());
        }
        if b[0] != 0 {
            cur.push(b[0]);
        } else if cur.is_empty() {
            return Ok(args);
        } else {
            args.push(std::mem::take(&mut cur));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_rest_goes_on_the_stream_and_reads_back() {
        let (line, wire) = split(
            words(&[
                "rsync",
                "--server",
                "--sender",
                "-re.LsfxCIvu",
                "--numeric-ids",
                ".",
                "a b/",
                "",
            ]),
            true,
        );
        assert_eq!(
            line,
            words(&["rsync", "--server", "--sender", "-sre.LsfxCIvu"])
        );
        assert_eq!(wire, b"rsync\0--numeric-ids\0.\0a b/\0.\0\0");
        let mut at = 0;
        let back = read_args(|b| {
            b[0] = wire[at];
            at += 1;
            Ok(1)
        })
        .expect("reads");
        assert_eq!(back.len(), 5);
        assert_eq!(back[3], b"a b/");
        assert_eq!(at, wire.len(), "reads exactly the arguments");
    }

    #[test]
    fn a_server_knows_when_its_arguments_are_on_stdin() {
        let os = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(secluded_server(&os(&[
            "arsync",
            "--server",
            "-se.LsfxCIvu"
        ])));
        assert!(!secluded_server(&os(&[
            "arsync",
            "--server",
            "-re.LsfxCIvu",
            ".",
            "d"
        ])));
        assert!(!secluded_server(&os(&["arsync", "-s", "a", "b"])));
        assert!(read_args(|_| Ok(0)).is_err());
    }
}

/// A remote shell's connection whose first stream carries the secluded arguments before
/// anything the protocol writes.
#[derive(Debug)]
struct Prefixed {
    inner: Box<dyn Connection>,
    first: std::sync::Mutex<Option<Vec<u8>>>,
}

impl Connection for Prefixed {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            let mut pair = self.inner.open_stream().await?;
            let first = self.first.lock().ok().and_then(|mut f| f.take());
            if let Some(bytes) = first {
                pair.send.write_all(&bytes).await?;
            }
            Ok(pair)
        })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        self.inner.accept_stream()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn path_stats(&self) -> Option<PathStats> {
        self.inner.path_stats()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.close()
    }
}

/// `conn`, sending `secluded` (from [`split`]) first on its first stream when there is any.
pub fn prefixed(conn: Box<dyn Connection>, secluded: Vec<u8>) -> Box<dyn Connection> {
    if secluded.is_empty() {
        return conn;
    }
    Box::new(Prefixed {
        inner: conn,
        first: std::sync::Mutex::new(Some(secluded)),
    })
}
