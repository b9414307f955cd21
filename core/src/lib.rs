//! # arsync-core
//!
//! The core of arsync: the wire codecs, the sync engine and the transport boundary.
//!
//! ## What lives here
//! - [`transport`] — the plugin boundary: [`transport::TransportFactory`],
//!   [`transport::Connection`], [`transport::Registry`]. Core defines the traits and the
//!   boundary error; it implements no transport (those are in `arsync-transports`).
//! - [`proto`] — sans-IO codecs: plain functions over bytes, no sockets, no clocks, so they can be
//!   unit-tested and fuzzed.
//! - [`negotiate`] — pure decisions: what the user asked and what the probes found → how to
//!   connect and what to speak, each decision with its reason (`--explain`).
//! - [`serve_policy`] — what a listening arsync admits: the argument allow-list, modules,
//!   read-only checks.
//! - [`engine`] — the two roles of a sync (sender; receiver with its generator), their thin async
//!   drivers over any [`transport::Connection`], and the local filesystem layer.
//!
//! ## Design
//! A local sync is not a special copy routine: the CLI starts both roles in one process and joins
//! them over the in-process `mem` transport, so the code path is the one a remote sync takes.
//! When the transport says both roles see the same filesystem, the sender answers a data request
//! with the path instead of the bytes and the receiver copies in the kernel (`copy_file_range`).
//!
//! ## Non-goals
//! Core never opens a socket or spawns a process; it does not parse command lines or print.
//! Output goes through [`engine::EventSink`].

pub mod cachedir;
pub mod engine;
pub mod error;
pub mod exit;
pub mod flist;
pub mod liveness;
pub mod merkle;
pub mod negotiate;
pub mod proto;
pub mod serve_policy;
pub mod transport;

pub use error::SyncError;
pub use exit::ExitCode;
