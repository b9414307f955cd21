//! The sync engine: the two roles and everything they need.
//!
//! - [`sender`] scans the sources ([`scan`]) and answers data requests.
//! - [`receiver`] runs the generator (compare, create, delete, request) and writes files
//!   through the destination layer ([`fsys`]) with a data mover ([`io`]; [`uring`] where the
//!   kernel allows).
//! - [`session`] frames the bytes of one stream; [`flist`], [`filter`], [`options`],
//!   [`stats`] and [`event`] are the shared vocabulary.
//!
//! Both roles take a [`crate::transport::Connection`]; neither knows which transport it is.

pub mod acl;
pub mod backup;
pub mod basis;
pub mod chmod;
// Issue 18, chunk cache:
pub mod chunkcache;
pub mod event;
pub mod filter;
pub mod filter_merge;

pub mod fsys;
pub mod hashcache;
pub mod idmap;
pub mod ids;
pub mod io;
pub mod lanes;
pub mod links;
pub mod listing;
pub mod options;
pub mod order;
pub mod own;
pub mod receiver;
pub mod rsync;
pub mod scan;
// Issue 18, streaming list:
pub mod segments;
pub mod select;
// Issue 15, dests:
pub mod dests;
pub mod sender;
// Issue 15, source:
pub mod session;
pub mod source_removal;
// Issue 15, data:
pub mod sparse;
pub mod stats;
// Issue 15, tempfiles:
pub mod tempfiles;
pub mod treelist;
// Issue 16, params:
pub mod tune;
pub mod xattr;

pub use crate::flist::{FileEntry, FileKind, FileList};
pub use backup::BackupOptions;
pub use dests::{AltDestKind, DestsOptions};
pub use event::{Event, EventSink, Itemize, NullSink};
pub use filter::FilterRules;
pub use options::{DestOptions, IoMode, SourceOptions, SyncOptions, WriteOptions};
pub use receiver::{run_receiver, ReceiverJob};
pub use select::SelectOptions;
pub use sender::{run_sender, SenderJob};
pub use stats::Stats;
pub use tempfiles::TempOptions;
