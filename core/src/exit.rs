//! rsync's exit codes: what every error of the engine and the transports ends a process with.
//!
//! The lowest module of the crate: the boundary errors ([`crate::error::SyncError`],
//! [`crate::transport::TransportError`]) both map to it.

/// rsync's exit codes, as the rsync(1) manual lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCode {
    /// 0: success.
    Ok = 0,
    /// 1: syntax or usage error.
    Syntax = 1,
    /// 2: protocol incompatibility.
    Protocol = 2,
    /// 3: errors selecting input/output files, dirs.
    FileSelect = 3,
    /// 5: error starting client-server protocol.
    StartClient = 5,
    /// 10: error in socket I/O.
    SocketIo = 10,
    /// 11: error in file I/O.
    FileIo = 11,
    /// 12: error in rsync protocol data stream.
    StreamIo = 12,
    /// 20: received SIGUSR1 or SIGINT.
    Signal = 20,
    /// 23: partial transfer due to error.
    Partial = 23,
    /// 24: partial transfer due to vanished source files.
    Vanished = 24,
    /// 25: the --max-delete limit stopped deletions.
    DelLimit = 25,
    /// 30: timeout in data send/receive.
    Timeout = 30,
    /// 35: timeout waiting for daemon connection.
    ConnTimeout = 35,
    /// 124: the remote shell failed.
    ShellFailed = 124,
    /// 125: the remote shell was killed.
    ShellKilled = 125,
    /// 126: the remote command could not be run.
    CommandNotRun = 126,
    /// 127: the remote command was not found.
    CommandNotFound = 127,
    /// 255: unexplained error — what rsync exits with when the remote shell itself failed
    /// (`ssh` exits 255: no connection, a refused host key, an unknown host).
    Unexplained = 255,
}

impl ExitCode {
    /// The exit code with this number, if it is one of rsync's (0 is not an error and maps to
    /// `None` here).
    pub fn from_code(code: u8) -> Option<ExitCode> {
        Some(match code {
            1 => ExitCode::Syntax,
            2 => ExitCode::Protocol,
            3 => ExitCode::FileSelect,
            5 => ExitCode::StartClient,
            10 => ExitCode::SocketIo,
            11 => ExitCode::FileIo,
            12 => ExitCode::StreamIo,
            20 => ExitCode::Signal,
            23 => ExitCode::Partial,
            24 => ExitCode::Vanished,
            25 => ExitCode::DelLimit,
            30 => ExitCode::Timeout,
            35 => ExitCode::ConnTimeout,
            124 => ExitCode::ShellFailed,
            125 => ExitCode::ShellKilled,
            126 => ExitCode::CommandNotRun,
            127 => ExitCode::CommandNotFound,
            255 => ExitCode::Unexplained,
            _ => return None,
        })
    }

    /// The process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_back_to_itself() {
        for n in 0..=255u8 {
            if let Some(c) = ExitCode::from_code(n) {
                assert_eq!(c.code(), i32::from(n));
            }
        }
        // What a failed ssh exits with becomes the run's exit code, as with rsync.
        assert_eq!(ExitCode::from_code(255), Some(ExitCode::Unexplained));
        assert_eq!(ExitCode::from_code(127), Some(ExitCode::CommandNotFound));
        assert_eq!(ExitCode::from_code(4), None);
    }
}
