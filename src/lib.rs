//! Stowage: a content-addressed, deduplicated, compressed store for the
//! files of package registries, served over gRPC.
//!
//! - [`chunker`], [`manifest`], [`pack::format`]: pure cores (no I/O).
//! - [`ingest`]: the write path and the committer, the one index writer.
//! - [`engine`]: opens everything, recovers, seals packs, serves reads.
//! - [`index`]: RocksDB; [`store`]: object_store; [`api`]: tonic.
//! - [`rebuild`]: the index from the packs alone.

pub mod api;
pub mod chunker;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod hash;
pub mod index;
pub mod ingest;
pub mod manifest;
pub mod pack;
pub mod rebuild;
pub mod store;

pub use config::Config;
pub use engine::Engine;
pub use error::{Error, Result};
pub use hash::Hash;

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
