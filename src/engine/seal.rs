//! Sealing: a full (or old enough) staged pack gets its footer, is fsynced,
//! moved into the pack store (`file://` on the same filesystem: a rename
//! plus fsync of both folders; otherwise an upload, fsynced for local
//! copies) and recorded as sealed in the index; only then is the staged
//! copy forgotten. A failed seal is retried with a backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Engine;
use crate::background::{Next, Periodic, Worker};
use crate::committer::{CommitReq, Committer};
use crate::error::{Error, Result};
use crate::index::{PackInfo, PackState};
use crate::pack::OpenPack;

impl Engine {
    /// Footer + fsync, move into the store, record as sealed, then forget
    /// the staged copy.
    async fn seal_one(&self, pack: &Arc<OpenPack>, committer: &Committer) -> Result<()> {
        let p = pack.clone();
        let (size, records) = tokio::task::spawn_blocking(move || p.seal())
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if self.store.size(pack.id).await? != Some(size) {
            self.store.put_file(pack.id, pack.path()).await?;
        }
        let info = PackInfo {
            state: PackState::Sealed,
            size,
            records,
            created_ms: crate::now_ms(),
        };
        committer.submit(CommitReq::PackSealed { id: pack.id, info }).await?;
        let (packer, id) = (self.packer.clone(), pack.id);
        tokio::task::spawn_blocking(move || packer.drop_staged(id))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        tracing::info!(pack = %format!("{:016x}", pack.id), size, records, "pack sealed");
        Ok(())
    }
}

/// Seals, uploads and records each full pack, retrying one that failed.
pub(super) struct Sealer {
    pub engine: Arc<Engine>,
    pub rx: mpsc::UnboundedReceiver<Arc<OpenPack>>,
    pub committer: Committer,
    /// A pack whose sealing failed, to retry first.
    pub retry: Option<Arc<OpenPack>>,
}

impl Worker for Sealer {
    fn name(&self) -> &'static str {
        "sealer"
    }

    async fn work(&mut self) -> Result<Next> {
        // A pack still waiting when the daemon stops is sealed at the next start.
        let pack = match self.retry.take() {
            Some(p) => p,
            None => tokio::select! {
                p = self.rx.recv() => match p {
                    Some(p) => p,
                    None => return Ok(Next::Done),
                },
                _ = self.engine.stop.cancelled() => return Ok(Next::Done),
            },
        };
        if let Err(e) = self.engine.seal_one(&pack, &self.committer).await {
            tracing::warn!(pack = %format!("{:016x}", pack.id), "sealing failed; will retry");
            self.retry = Some(pack);
            return Err(e);
        }
        Ok(Next::Busy)
    }
}

/// Seals the non-empty open pack once it reaches `pack_max_age`.
pub(super) fn age_worker(engine: Arc<Engine>) -> impl Worker {
    let age = engine.cfg.pack_max_age;
    let tick = (age / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    Periodic {
        name: "pack-age",
        first: Some(tick),
        period: tick,
        f: move || {
            let packer = engine.packer.clone();
            async move {
                tokio::task::spawn_blocking(move || packer.roll_if_older(age))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .map_err(|e| Error::Internal(format!("could not roll the open pack: {e}")))
                    .map(drop)
            }
        },
    }
}
