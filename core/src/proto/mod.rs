//! Wire codecs, sans-IO: functions and small state machines over bytes.
//!
//! - [`wire`] — bounded primitive readers and writers shared by every codec.
//! - [`admit`] — the request and reply that open a connection to a listening arsync.
//! - [`bootstrap`] — the SSH bootstrap's offer line and the client's `stdio` answer.
//! - [`merkle`] — the frames two arsyncs exchange.
//! - [`rsync`] — rsync's own protocol, for hosts that have only rsync.
//! - [`http1`] — a whole HTTP/1.x response: status and bounded body (the Tailscale LocalAPI
//!   reader's and arsync-auth's OIDC client's).
//!
//! Nothing here performs I/O; the async drivers in [`crate::engine`] feed bytes in and take
//! frames out. Every length and count read from the wire is checked against a bound before it
//! is used, and a violation is a [`DecodeError`], never a panic.

pub mod admit;
pub mod bootstrap;
pub mod http1;
pub mod merkle;
pub mod rsync;
pub mod wire;

pub use wire::DecodeError;
