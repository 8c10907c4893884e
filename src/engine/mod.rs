//! The engine: the store's drivers, each in its own file. It opens the
//! index and the pack store and recovers what a crash left (`open`), admits
//! uploads (`upload`), serves reads (`read`), seals packs (`seal`), keeps the
//! capacity figures (`capacity`), and runs purges, GC and retention sweeps
//! (`purge`, `gc`, `sweep`) as background workers. Every change goes through
//! the committer. Transport-agnostic; `api/` wraps it.

mod capacity;
mod gc;
mod open;
mod optimize;
mod purge;
mod read;
mod recreate;
pub mod scrub;
mod seal;
mod sweep;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::{self, CatalogOp, CatalogOutcome, CheckReport};
use crate::committer::Committer;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ingest::Ingest;
use crate::pack::Packer;
use crate::store::PackStore;

pub use crate::report::StoreStats;
pub use capacity::Run;
pub use optimize::OptimizeProgress;
pub use purge::{Blobs, Held};
pub use read::GET_FRAME;
pub use upload::UploadSlot;

pub struct Engine {
    cfg: Config,
    index: Arc<Index>,
    store: PackStore,
    packer: Arc<Packer>,
    ingest: Arc<Ingest>,
    committer: Committer,
    stop: CancellationToken,
    /// Held by the garbage collection run in progress.
    gc_running: tokio::sync::Mutex<()>,
    /// Held by the retention sweep in progress.
    sweep_running: tokio::sync::Mutex<()>,
    /// Held by the optimizer pass (or background unit) in progress.
    optimize_running: tokio::sync::Mutex<()>,
    /// Recreated blobs of recipe manifests, for hot reads (`recreate`).
    recreated: crate::cache::LruBytes<crate::hash::Hash>,
    /// Held while a usage snapshot is read and written, so an older one
    /// never overwrites a newer one.
    usage_running: tokio::sync::Mutex<()>,
    /// Totals of GC runs and retention sweeps since start, for `/metrics`.
    progress: std::sync::Mutex<Progress>,
    /// The pack scrubber's progress and findings (`scrub`).
    scrub: scrub::Scrubber,
    /// One permit per upload being served (`max_concurrent_uploads`).
    uploads: Arc<tokio::sync::Semaphore>,
    /// Per token id, one permit per upload it has in progress
    /// (`max_uploads_per_token`). Ids come from the config, so this is bounded.
    token_uploads: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Set by a write that found the disk full; refuses uploads until space returns.
    disk: crate::disk::DiskGuard,
    /// The data dir's lock file, held while the engine lives.
    _lock: crate::dirlock::DirLock,
}

/// Totals of background work since the daemon started.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub gc_runs: u64,
    pub gc_bytes_collected: u64,
    pub gc_bytes_copied: u64,
    pub gc_packs_deleted: u64,
    pub gc_bytes_deleted: u64,
    pub gc_last_elapsed_ms: u64,
    pub sweep_runs: u64,
    pub sweep_versions_deleted: u64,
    pub sweep_files_deleted: u64,
    /// Items the sweep in progress has done and has in total (0/0: none running).
    pub sweep_done: u64,
    pub sweep_total: u64,
    /// When the daemon started (Unix ms).
    pub started_ms: i64,
    /// When the last GC run and sweep finished (Unix ms), and when the
    /// schedule runs them next (None: not scheduled).
    pub gc_last_run_ms: Option<i64>,
    pub gc_next_run_ms: Option<i64>,
    pub sweep_last_run_ms: Option<i64>,
    pub sweep_last_elapsed_ms: u64,
    pub sweep_next_run_ms: Option<i64>,
}

impl Engine {
    /// Stops background work. Staged data stays durable for the next start.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Stops background work, waits (up to `wait`) for it to let go of the
    /// engine, then closes the index: the committer thread ends once every
    /// sender is dropped, and its hold on RocksDB is the last. If something
    /// still holds the engine (a client connection kept open, a long GC
    /// run), RocksDB's background threads are stopped instead. A process
    /// that exits while they run can abort in its teardown; every
    /// acknowledged write is in the fsynced WAL either way.
    pub async fn close(self: Arc<Self>, wait: Duration) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + wait;
        while Arc::strong_count(&self) > 1 {
            if tokio::time::Instant::now() >= deadline {
                let index = self.index.clone();
                let _ = tokio::task::spawn_blocking(move || index.quiesce()).await;
                tracing::info!("index quiesced (still in use; closed by the exit)");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let thread = self.committer.take_thread();
        drop(self);
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
            tracing::info!("index closed");
        }
    }

    /// Totals of GC runs and sweeps since start.
    pub fn progress(&self) -> Progress {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Upload streams being served now.
    pub fn uploads_in_progress(&self) -> usize {
        self.cfg.max_concurrent_uploads - self.uploads.available_permits()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The index, for catalog reads (`catalog::read`).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Applies a catalog change durably (see `catalog::apply`).
    pub async fn catalog(&self, op: CatalogOp) -> Result<CatalogOutcome> {
        let r = self.committer.catalog(op).await;
        r.inspect_err(|e| self.disk.note(e))
    }

    /// Recomputes every reference count and catalog aggregate (on a
    /// snapshot), after reading every block of the index's tables (a damaged
    /// one is DATA_LOSS); reports quarantined packs, and with `read_data`
    /// verifies every record of every pack (`scrub`).
    pub async fn check(self: &Arc<Self>, read_data: bool) -> Result<CheckReport> {
        let this = self.clone();
        let mut r = tokio::task::spawn_blocking(move || {
            this.index.verify_tables()?;
            catalog::check::check(&this.index)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        self.check_packs(&mut r, read_data).await?;
        Ok(r)
    }
}
