//! Content hashing for the merkle protocol: chunking and the chunk tree.
//!
//! - [`chunk`] cuts a file into content-defined chunks (FastCDC; fixed-size as a fallback) and
//!   hashes each with BLAKE3, in parallel; `gear` finds FastCDC's cut points faster than
//!   the `fastcdc` crate's loop, at the same places; [`batch_hash`] hashes many chunks at once
//!   in SIMD lanes, the same hashes as one by one.
//! - [`tree`] builds a merkle tree over the chunk list whose *interior* boundaries are also
//!   content-defined, so an insertion changes O(log n) nodes instead of every node after it,
//!   and compares two trees top-down with a sans-IO exchange.
//! - [`gapsum`] matches small blocks inside a changed stretch between two matched chunks.
//! - [`digest_map`] keys maps by BLAKE3 digests with a cheap hasher a peer cannot steer.
//! - [`dirtree`] hashes directory trees so identical subtrees are never listed.
//!
//! Pure computation: no sockets, no clocks; the engine drives the exchange over frames.

// Issue 18, cheap deltas:
pub mod batch_hash;
pub mod chunk;
pub mod dirtree;
// Issue 18, the last time targets:
pub mod digest_map;
// Issue 18, scattered deltas:
pub mod gapsum;
// Issue 18, chunker:
mod gear;
// Issue 18, the last time targets:
mod mapped;
// Issue 16, params:
pub mod speed;
pub mod tree;

pub use chunk::{Chunk, ChunkParams};
pub use tree::{ChunkTree, NodeRef};
