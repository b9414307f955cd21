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
//! | `ssh` | `ssh`   | the system remote shell (`-e`, default `ssh`) running `arsync --server`; the built-in client with `--ssh=native` |
//! | `ssh-native` | `ssh-native` | the same on a built-in SSH client (russh): `~/.ssh/config`, agent, keys, known_hosts, ProxyJump/ProxyCommand, one new TCP connection per exec |
//! | `ssh-pool` | `ssh-pool` | N SSH connections, each its own TCP connection and server process, joined into one session as data lanes |
//! | (any) | `external` | `--transport=NAME` with no built-in `NAME`: the helper program `arsync-transport-NAME` from `PATH`, one stream over its stdio ([`external`]) |
//! | `quic` | `quic` | one QUIC connection (quinn, TLS 1.3): a stream per lane; `arsync serve`, `arsync://`, and the SSH bootstrap ([`bootstrap`]) |
//! | `h2` | `h2` | HTTP/2 over TLS to `arsync serve`'s TCP port, a `POST` stream per lane, through HTTP `CONNECT` proxies and reverse proxies ([`http2`], [`http_proxy`]) |
//! | `h3` | `h3` | HTTP/3 (h3 + h3-quinn) on the same QUIC: a streaming `POST` request per lane, to `arsync serve` ([`h3`]) |
//!
//! [`registry::build`] makes every transport this build has, each under its own name, from the
//! command line's settings ([`registry::RegistryConfig`]); [`default_registry`] with the
//! defaults. [`stdio`] (with `pipe`) is this process's own stdin/stdout/stderr, whichever mode
//! (blocking or not) they came in.
//!
//! With the feature `conformance`, `conformance` is the suite every transport must pass (and
//! `conformance_tests!` runs it from a test file): the workspace's own transports run it in
//! `tests/conformance.rs`; a plugin's tests run it the same way.

// Issue 17, mptcp: the admission exchange's I/O, for QUIC and TLS over TCP.
#[cfg(feature = "quic")]
pub mod admission;
#[cfg(all(feature = "quic", feature = "pipe"))]
pub mod bootstrap;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "external")]
pub mod external;
// Issue 17, h3: HTTP/3 to `arsync serve`, a request stream per lane.
#[cfg(feature = "h3")]
pub mod h3;
#[cfg(feature = "mem")]
pub mod mem;
// Issue 16, overlay: the local Tailscale/Teleport probe.
#[cfg(feature = "ssh")]
pub mod overlay_probe;
// Issue 17, mptcp: MPTCP sockets, and TLS over (MP)TCP to `arsync serve`.
#[cfg(feature = "tls-tcp")]
pub mod mptcp;
#[cfg(feature = "pipe")]
pub mod pipe;
// Issue 17, mptcp: certificate pinning for QUIC and TLS over TCP.
#[cfg(feature = "quic")]
mod pinning;
#[cfg(feature = "quic")]
pub mod quic;
pub mod registry;
#[cfg(feature = "ssh")]
pub mod ssh;
#[cfg(feature = "ssh")]
pub mod ssh_config;
#[cfg(feature = "ssh-native")]
pub mod ssh_native;
// A TCP socket's TCP_INFO as path statistics.
pub mod tcp_info;
// A remote command's stderr with "command not found" held back.
pub mod held_stderr;
// Issue 16, native login: `ssh` under `--ssh=auto`.
#[cfg(feature = "ssh")]
pub mod ssh_auto;
#[cfg(feature = "ssh-pool")]
pub mod ssh_pool;
#[cfg(feature = "pipe")]
pub mod stdio;
#[cfg(feature = "tls-tcp")]
pub mod tls_tcp;
// Issue 17, h2: HTTP/2 to `arsync serve`, and HTTP CONNECT proxies.
#[cfg(feature = "h2")]
pub mod http2;
#[cfg(feature = "h2")]
pub mod http_proxy;

pub use registry::default_registry;
