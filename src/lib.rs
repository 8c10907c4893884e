//! Stowage: a content-addressed, deduplicated, compressed store for the
//! files of package registries, served over gRPC.
//!
//! - [`chunker`], [`manifest`], [`pack::format`]: pure cores (no I/O).
//! - [`ingest`]: the write path and the committer, the one index writer.
//! - [`engine`]: opens everything, recovers, seals packs, serves reads.
//! - [`index`]: RocksDB; [`store`]: object_store; [`api`]: tonic.
//! - [`rebuild`]: the index from the packs alone.

pub mod api;
pub mod auth;
pub mod background;
pub mod cache;
pub mod catalog;
pub mod chunker;
pub mod cli;
pub mod committer;
pub mod config;
pub mod delta;
pub mod dirlock;
pub mod disk;
pub mod engine;
pub mod error;
pub mod expand;
pub mod figures;
#[doc(hidden)]
pub mod fuzz;
pub mod gc;
pub mod hash;
pub mod index;
pub mod ingest;
pub mod manifest;
pub mod pack;
pub mod rebuild;
pub mod recovery;
pub mod report;
pub mod retention;
pub mod space;
pub mod store;

pub use config::Config;
pub use engine::Engine;
pub use error::{Error, Result};
pub use hash::Hash;

/// Environment variable naming a file whose content (an integer, in
/// milliseconds) is added to the wall clock: the injectable clock tests use
/// to move the daemon through trash windows and leases. Unset in production.
pub const CLOCK_OFFSET_FILE_ENV: &str = "STOWAGE_CLOCK_OFFSET_FILE";

/// Wall-clock time in Unix milliseconds (plus the test clock offset, if set).
pub fn now_ms() -> i64 {
    static OFFSET_FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let offset = OFFSET_FILE
        .get_or_init(|| std::env::var_os(CLOCK_OFFSET_FILE_ENV).map(Into::into))
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    wall.saturating_add(offset)
}
