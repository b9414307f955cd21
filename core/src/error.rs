//! The engine's boundary error and rsync's exit codes.
//!
//! [`SyncError`] says who is at fault — the peer (a protocol violation), the caller (bad
//! options), the transport, or local I/O — because each maps to a different rsync exit code and
//! a different remedy. It does not cover per-file problems that let a run continue (those are
//! counted in the run's [`crate::engine::Stats`] and turn into exit code 23 or 24 at the end).

use std::io;
use std::path::PathBuf;

pub use crate::exit::ExitCode;
use crate::proto::DecodeError;
use crate::transport::TransportError;

/// An error that ends a sync run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The peer sent something the protocol does not allow.
    #[error("protocol error from peer: {0}")]
    Peer(#[from] DecodeError),
    /// The peer broke off the protocol with an error of its own (and the rsync exit code it
    /// ends with).
    #[error("peer reported: {message}")]
    Remote {
        /// The peer's exit code.
        code: u8,
        /// The peer's message.
        message: String,
    },
    /// The peer speaks a version we cannot.
    #[error("protocol incompatibility: {0}")]
    Incompatible(String),
    /// The caller asked for something impossible (bad options or paths).
    #[error("{0}")]
    Usage(String),
    /// A source or destination could not be selected (rsync's exit 3).
    #[error("{what} {}: {source}", path.display())]
    Select {
        /// What was being selected ("change_dir", "mkdir", …).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Local file I/O failed in a way that stops the whole run.
    #[error("{what} {}: {source}", path.display())]
    FileIo {
        /// The operation.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The stream to the peer failed or closed early.
    #[error("connection to peer: {0}")]
    StreamIo(#[source] io::Error),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The run was interrupted by a signal.
    #[error("received signal, stopping")]
    Interrupted,
    /// Nothing came from the peer for `--timeout` seconds (rsync's I/O timeout).
    #[error("io timeout after {0} seconds -- exiting")]
    Timeout(u64),
    /// A job of this run panicked or was cancelled (a bug, reported with its cause).
    #[error("internal error in a job of this run: {0}")]
    Job(#[from] tokio::task::JoinError),
    /// The connection was not made within `--contimeout` seconds.
    #[error("timed out connecting after {0} seconds")]
    ConnectTimeout(u64),
}

impl SyncError {
    /// The rsync exit code this error ends the process with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            SyncError::Peer(_) => ExitCode::StreamIo,
            SyncError::Remote { code, .. } => {
                ExitCode::from_code(*code).unwrap_or(ExitCode::StreamIo)
            }
            SyncError::Incompatible(_) => ExitCode::Protocol,
            SyncError::Usage(_) => ExitCode::Syntax,
            SyncError::Select { .. } => ExitCode::FileSelect,
            SyncError::FileIo { .. } => ExitCode::FileIo,
            SyncError::StreamIo(_) => ExitCode::StreamIo,
            SyncError::Transport(t) => t.exit_code(),
            SyncError::Interrupted => ExitCode::Signal,
            SyncError::Timeout(_) => ExitCode::Timeout,
            SyncError::Job(_) => ExitCode::StreamIo,
            SyncError::ConnectTimeout(_) => ExitCode::ConnTimeout,
        }
    }
}
