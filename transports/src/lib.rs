//! # arsync-transports
//!
//! One module per transport, each behind a cargo feature, each implementing
//! [`arsync_core::transport::TransportFactory`]. The core owns the traits and the boundary
//! error; this crate only adapts concrete byte pipes to them.
//!
//! | name  | feature | what                                                        |
//! |-------|---------|-------------------------------------------------------------|
//! | `mem` | `mem`   | in-process streams; what a local sync runs its two roles on |
//! | (pipe) | `pipe` | one stream over stdin/stdout or a child's stdio (`--pipe`, `--server`) |
//! | `ssh` | `ssh`   | the system remote shell (`-e`, default `ssh`) running `arsync --server` |
//! | `ssh-pool` | `ssh-pool` | N SSH connections, each its own TCP connection and server process, joined into one session as data lanes |
//! | `ssh` (native) | `ssh-native` | the same `ssh` transport on a built-in SSH client (russh): `~/.ssh/config`, agent, keys, known_hosts, ProxyJump/ProxyCommand, one new TCP connection per exec |
//! | `quic` | `quic` | one QUIC connection (quinn, TLS 1.3): a stream per lane; `arsync serve`, `arsync://`, and the SSH bootstrap |
//!
//! [`default_registry`] returns every transport this build has. [`stdio`] (with `pipe`) is
//! this process's own stdin/stdout/stderr, whichever mode (blocking or not) they came in.
//!
//! With the feature `conformance`, `conformance` is the suite every transport must pass (and
//! `conformance_tests!` runs it from a test file): the workspace's own transports run it in
//! `tests/conformance.rs`; a plugin's tests run it the same way.

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "mem")]
pub mod mem;
#[cfg(feature = "pipe")]
pub mod pipe;
#[cfg(feature = "quic")]
pub mod quic;
#[cfg(feature = "ssh")]
pub mod ssh;
#[cfg(feature = "ssh")]
pub mod ssh_config;
#[cfg(feature = "ssh-native")]
pub mod ssh_native;
#[cfg(feature = "ssh-pool")]
pub mod ssh_pool;
#[cfg(feature = "pipe")]
pub mod stdio;

use arsync_core::transport::Registry;

/// Every transport compiled into this build, registered under its name.
pub fn default_registry() -> Registry {
    let r = Registry::new();
    #[cfg(feature = "mem")]
    let r = r.with(mem::Mem::default());
    #[cfg(feature = "ssh")]
    let r = r.with(ssh::SystemSsh::default());
    #[cfg(feature = "quic")]
    let r = match arsync_auth::pins::KnownServers::default_path() {
        Some(path) => r.with(quic::QuicTransport::new(
            quic::QuicTrust::KnownServers(path),
            None,
            quic::QuicTuning::default(),
        )),
        None => r,
    };
    r
}
