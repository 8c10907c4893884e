//! Opening the store: the index, the pack store, staged packs recovered
//! (torn tails cut, sealed leftovers unlinked, the newest reopened as the
//! current pack, the rest queued for sealing), packs the index missed
//! recorded, and the background workers started.
//!
//! Recovery at start: a staging file whose pack the index lists as sealed
//! is unlinked (only the unlink was lost); any other is scanned record by
//! record, its torn tail (a record cut short, never acknowledged) is cut
//! off, the file is fsynced, and it is either reopened as the current pack
//! or queued for sealing. A pack in the store that the index does not list
//! (a crash right after the rename) is recorded. An empty index over a
//! non-empty store refuses to start (`rebuild-index` first).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::background;
use crate::catalog;
use crate::catalog::records::{Job, decode_last_run};
use crate::committer::{CatalogSettings, CommitReq, Committer, Pending};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::index::{Cf, Index, PackInfo, PackState};
use crate::ingest::Ingest;
use crate::pack::format;
use crate::pack::{OpenPack, Packer, list_staged, staging_file_id};
use crate::store::PackStore;

impl Engine {
    /// Opens the store and recovers from whatever a crash left behind.
    pub async fn open(cfg: Config) -> Result<Arc<Self>> {
        cfg.validate()?;
        // Before RocksDB: a second daemon hears who holds the dir.
        let lock = crate::dirlock::DirLock::acquire(&cfg.data_dir)?;
        let index = Arc::new(Index::open_with(
            &cfg.index_dir(),
            cfg.index_cache_size.as_u64() as usize,
        )?);
        let store = PackStore::open(&cfg.pack_store_url()?, &cfg.pack_store_options)?;
        let staging = cfg.staging_dir();
        std::fs::create_dir_all(&staging)?;

        let mut staged = Vec::new();
        let mut cut_guard = crate::recovery::CutGuard::new(Some(&*index));
        for p in list_staged(&staging)? {
            if std::fs::metadata(&p)?.len() < format::HEADER_LEN as u64 {
                // Crashed while creating it: the header is fsynced before any record.
                tracing::warn!(path = %p.display(), "removing a staged pack that never got its header");
                std::fs::remove_file(&p)?;
                continue;
            }
            let id = staging_file_id(&p).expect("list_staged keeps pack names only");
            if index.pack(id)?.is_some_and(|i| i.state != PackState::Open) {
                // Moved into the store and recorded; only the unlink was lost.
                std::fs::remove_file(&p)?;
                continue;
            }
            staged.push(Arc::new(crate::recovery::reopen(&p, &mut cut_guard)?));
        }
        let in_store = store.list().await?;
        if index.packs()?.is_empty() && index.stats()?.blobs == 0 && !in_store.is_empty() {
            return Err(Error::invalid(format!(
                "the index at {} is empty but the pack store holds {} packs: \
                 run `stowage admin rebuild-index` first",
                cfg.index_dir().display(),
                in_store.len()
            )));
        }
        let max_known = [
            index.packs()?.last().map(|(id, _)| *id),
            staged.iter().map(|p| p.id).max(),
            in_store.last().copied(),
        ];
        let mut next_id = max_known.into_iter().flatten().max().map_or(1, |m| m + 1);
        // Keep appending to the newest unsealed pack; seal the others. A
        // quarantined (damaged) pack is neither: it stays readable in staging.
        let reuse = staged
            .iter()
            .rposition(|p| !p.is_sealed() && !p.is_quarantined() && p.len() < cfg.pack_target_size.as_u64());
        let current = match reuse {
            Some(i) => staged.remove(i),
            None => {
                next_id += 1;
                Arc::new(OpenPack::create(&staging, next_id - 1, crate::now_ms())?)
            }
        };
        let (seal_tx, seal_rx) = mpsc::unbounded_channel();
        for p in staged.iter().filter(|p| !p.is_quarantined()) {
            seal_tx
                .send(p.clone())
                .map_err(|_| Error::Internal("sealer channel closed".into()))?;
        }
        let packer = Arc::new(Packer::new(
            staging,
            cfg.pack_target_size.as_u64(),
            current,
            &staged,
            next_id,
            seal_tx,
        ));
        let settings = CatalogSettings {
            trash_window_ms: cfg.trash_window.as_millis() as i64,
            lease_ms: cfg.upload_lease.as_millis() as i64,
            quotas: cfg.quotas.iter().map(|(ns, q)| (ns.clone(), q.as_u64())).collect(),
        };
        catalog::migrate(&index)?;
        let pending = Arc::new(Pending::default());
        let committer = Committer::start(index.clone(), packer.clone(), pending.clone(), settings)?;
        let ingest = Arc::new(Ingest {
            params: cfg.chunk_params()?,
            zstd_level: cfg.zstd_level,
            max_blob_size: cfg.max_blob_size.as_u64(),
            index: index.clone(),
            packer: packer.clone(),
            committer: committer.clone(),
            pending,
            streams: tokio::sync::Semaphore::new(crate::ingest::MAX_STREAMS),
        });
        let uploads = Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent_uploads));
        let disk = crate::disk::DiskGuard::new(cfg.data_dir.clone());
        let last = |job: Job| -> Result<Option<(i64, u64)>> {
            index
                .get(Cf::CatalogIdx, &job.key())?
                .map(|v| decode_last_run(&v))
                .transpose()
        };
        let (gc_last, sweep_last) = (last(Job::Gc)?, last(Job::Sweep)?);
        let recreated = crate::cache::LruBytes::new(cfg.optimize.cache_size.as_u64() as usize);
        let engine = Arc::new(Engine {
            cfg,
            index,
            store,
            packer,
            ingest,
            committer: committer.clone(),
            stop: CancellationToken::new(),
            uploads,
            token_uploads: Default::default(),
            disk,
            gc_running: Default::default(),
            sweep_running: Default::default(),
            optimize_running: Default::default(),
            recreated,
            usage_running: Default::default(),
            progress: std::sync::Mutex::new(super::Progress {
                started_ms: crate::now_ms(),
                gc_last_run_ms: gc_last.map(|l| l.0),
                gc_last_elapsed_ms: gc_last.map_or(0, |l| l.1),
                sweep_last_run_ms: sweep_last.map(|l| l.0),
                sweep_last_elapsed_ms: sweep_last.map_or(0, |l| l.1),
                ..Default::default()
            }),
            scrub: Default::default(),
            _lock: lock,
        });
        engine.reconcile(&committer, &in_store).await?;
        let stop = engine.stop.clone();
        let sealer = super::seal::Sealer {
            engine: engine.clone(),
            rx: seal_rx,
            committer,
            retry: None,
        };
        background::spawn(sealer, stop.clone());
        background::spawn(super::seal::age_worker(engine.clone()), stop.clone());
        background::spawn(super::purge::purge_worker(engine.clone()), stop.clone());
        if !engine.cfg.gc.interval.is_zero() {
            background::spawn(super::gc::gc_worker(engine.clone()), stop.clone());
        }
        let sweeper = super::sweep::Sweeper {
            engine: engine.clone(),
            resumed: false,
        };
        background::spawn(sweeper, stop.clone());
        background::spawn(super::capacity::usage_worker(engine.clone()), stop.clone());
        if engine.cfg.optimize.enabled {
            let optimizer = super::optimize::OptimizeWorker {
                engine: engine.clone(),
                after: None,
                waited: false,
            };
            background::spawn(optimizer, stop.clone());
        }
        if engine.cfg.scrub.enabled {
            let scrubber = super::scrub::ScrubWorker {
                engine: engine.clone(),
                waited: false,
            };
            background::spawn(scrubber, stop);
        }
        tracing::info!(
            data_dir = %engine.cfg.data_dir.display(),
            pack_store = %engine.store.url(),
            recovered_packs = staged.len(),
            quarantined_packs = engine.quarantined_packs(),
            "engine open"
        );
        Ok(engine)
    }

    /// Records packs that reached the store but not the index (a crash
    /// between moving a pack into a local store and committing it).
    async fn reconcile(&self, committer: &Committer, in_store: &[u64]) -> Result<()> {
        for &id in in_store {
            if self.index.pack(id)?.is_some() || self.packer.staged(id).is_some() {
                continue;
            }
            let size = self
                .store
                .size(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("pack {id:016x}")))?;
            let tail = self
                .store
                .get_range(id, size.saturating_sub(format::TRAILER_LEN as u64)..size)
                .await?;
            let (records, _) = format::decode_trailer(&tail)
                .map_err(|e| Error::corrupt(format!("pack {id:016x} in the store: {e}")))?;
            let info = PackInfo {
                state: PackState::Sealed,
                size,
                records,
                created_ms: crate::now_ms(),
            };
            committer.submit(CommitReq::PackSealed { id, info }).await?;
            tracing::info!(pack = %format!("{id:016x}"), size, "recorded a sealed pack the index did not list");
        }
        Ok(())
    }
}
