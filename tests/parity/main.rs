//! rsync's command line, option by option (issue 15): each case runs arsync and rsync side by
//! side in every role arsync can take (local; merkle push and pull over a remote shell; rsync's
//! protocol against `rsync --server`; the real rsync client against `arsync --server`) and
//! compares the trees, the exit code and the itemized lines (`harness`).

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod acls;
mod backup;
mod basics;
mod connection;
mod data;
mod dest;
mod dests;
mod doc;
mod executability;
mod filters;
mod links;
mod misc;
mod output;
mod own;
mod read_errors;
mod select;
mod source;
mod tempfiles;
mod write;
