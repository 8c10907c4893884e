//! Purging the trash and ended leases, in bounded batches, on demand and
//! every `purge_interval`.

use std::sync::Arc;

use super::Engine;
use crate::background::{Periodic, Worker};
use crate::catalog::{CatalogOp, CatalogOutcome, PurgeCounts};
use crate::error::{Error, Result};

/// Trash items (or leases) one purge batch handles, so a large purge does
/// not hold the committer for long.
const PURGE_BATCH: usize = 500;

impl Engine {
    /// Purges expired trash and ended leases, in bounded batches.
    pub async fn purge(&self, actor: &str) -> Result<PurgeCounts> {
        let mut total = PurgeCounts::default();
        loop {
            let op = CatalogOp::Purge {
                actor: actor.to_string(),
                budget: PURGE_BATCH,
            };
            let CatalogOutcome::Purged(c) = self.catalog(op).await? else {
                return Err(Error::Internal("purge answered with another outcome".into()));
            };
            total.add(&c);
            if !c.more {
                return Ok(total);
            }
        }
    }
}

/// Purges expired trash and ended leases every `purge_interval`.
pub(super) fn purge_worker(engine: Arc<Engine>) -> impl Worker {
    let every = engine.cfg.purge_interval;
    Periodic {
        name: "trash-purge",
        first: Some(every),
        period: every,
        f: move || {
            let engine = engine.clone();
            async move {
                let c = engine.purge("trash-purge").await?;
                if c != PurgeCounts::default() {
                    tracing::info!(
                        packages = c.packages,
                        versions = c.versions,
                        files = c.files,
                        references_released = c.references_released,
                        blobs_unreferenced = c.blobs_unreferenced,
                        "purged"
                    );
                }
                Ok(())
            }
        },
    }
}
