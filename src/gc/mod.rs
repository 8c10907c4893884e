//! Garbage collection and pack compaction, online.
//!
//! Three steps, each a committer request, so each decision is made by the
//! one index writer in order with every put and publish:
//!
//! 1. **Collect**: a condemned chunk (no manifest has used it since
//!    `condemned_ms`, see `catalog::chunks`) whose grace period is over
//!    leaves the index; its record bytes count as dead in its pack (`d`).
//!    Runs alone in its batch over committed state. A put that still found
//!    the chunk in the index before this fails its commit (the chunk is
//!    missing) and is retried by the client: an acknowledged put never
//!    points at a collected chunk.
//! 2. **Compact**: a sealed pack whose dead fraction reaches the threshold
//!    has its live records (chunks the index points at, manifests of stored
//!    blobs, references that exist) copied into the open pack; then
//!    [`relocate`] switches the index to the copies, in a batch that first
//!    fsyncs them, and retires the pack. If anything made another record of
//!    the pack live in the meantime (a put committing a chunk it wrote there,
//!    or an upload still holding one), the relocation is abandoned and the
//!    copies count as dead.
//! 3. **Delete**: a retired pack is deleted from the store after
//!    `pack_delete_delay` (reads that resolved locations before the switch
//!    finish meanwhile; a read that still misses re-resolves), then forgotten.
//!
//! Work is proportional to the dead data: collection walks only the
//! condemned list, compaction only packs with dead bytes (`d`).
//!
//! This module holds the steps (`steps`, run on the committer's `Txn`) and
//! the selection of what to compact (`select`, reads of the index); the
//! driver that runs them is `Engine::gc` in `engine/gc.rs`.

mod select;
mod steps;

use std::time::Duration;

use crate::hash::Hash;
use crate::index::ChunkLoc;

pub use select::{Candidate, candidates, live_entries, read_runs};
pub use steps::{collect, forget, relocate};

/// Condemned chunks one collect batch handles.
pub const COLLECT_BATCH: usize = 20_000;

#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    pub dry_run: bool,
    pub grace: Duration,
    pub compact_threshold: f64,
    pub max_repack_bytes: u64,
    pub pack_delete_delay: Duration,
}

impl From<&crate::config::Gc> for GcOptions {
    fn from(c: &crate::config::Gc) -> Self {
        GcOptions {
            dry_run: false,
            grace: c.grace,
            compact_threshold: c.compact_threshold,
            max_repack_bytes: c.max_repack_bytes.as_u64(),
            pack_delete_delay: c.pack_delete_delay,
        }
    }
}

/// What a run did (or, dry, would do now).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Condemned chunks past their grace period, collected.
    pub chunks_collected: u64,
    /// Their stored bytes.
    pub bytes_collected: u64,
    /// Condemned chunks still inside their grace period (kept).
    pub chunks_condemned: u64,
    pub bytes_condemned: u64,
    /// Packs compacted (live records copied, pack retired).
    pub packs_compacted: u64,
    /// Live records and their bytes copied by compaction.
    pub records_copied: u64,
    pub bytes_copied: u64,
    /// Packs over the threshold left for a later run (repack budget spent,
    /// or a relocation abandoned because the pack changed).
    pub packs_deferred: u64,
    /// Retired packs deleted from the store, and their bytes.
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Dead bytes still in packs after the run.
    pub dead_bytes: u64,
    pub elapsed_ms: u64,
}

/// One step of a run, as the committer answers it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Collected {
    pub chunks: u64,
    pub bytes: u64,
    pub more: bool,
}

/// Chunk records of a pack by (id, offset).
pub type Located = Vec<(Hash, u64)>;
/// Chunk records copied: (id, old offset, new location).
pub type Moved = Vec<(Hash, u64, ChunkLoc)>;
/// Other records copied: (pack, end of record).
pub type Ends = Vec<(u64, u64)>;

/// Live records of one pack, copied; what [`relocate`] commits.
#[derive(Debug, Default)]
pub struct Relocation {
    pub pack: u64,
    pub chunks: Moved,
    /// Chunk records of the pack not copied (dead when read).
    pub left: Located,
    /// Manifest and reference copies, to fsync.
    pub others: Ends,
}

/// What compacting one pack copied.
#[derive(Clone, Copy, Debug, Default)]
pub struct Copied {
    pub bytes: u64,
    pub records: u64,
}
