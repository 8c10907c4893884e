//! The engine: opens the index and pack store, recovers staged packs, runs
//! the sealer, and serves puts and reads. Transport-agnostic; `api/` wraps it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, CatalogOp, CatalogOutcome, CheckReport, PurgeCounts, VerRef};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{ChunkLoc, Index, PackInfo, PackState, RefInfo, Stats};
use crate::ingest::{CatalogSettings, CommitReq, Committer, Ingest, PutOutcome, PutSpec};
use crate::manifest::Manifest;
use crate::pack::format::{self, Kind};
use crate::pack::{OpenPack, Packer, staging_file_id};
use crate::store::PackStore;

/// Largest read issued for a run of adjacent records.
const MAX_EXTENT: u64 = 8 << 20;
/// Extents read ahead of the one being sent.
const READ_AHEAD: usize = 4;
/// Largest data frame a Get sends: one chunk at most.
pub const GET_FRAME: usize = crate::chunker::MAX_CHUNK;
/// Trash items (or leases) one purge batch handles, so a large purge does
/// not hold the committer for long.
const PURGE_BATCH: usize = 500;

pub struct Engine {
    pub(crate) cfg: Config,
    pub(crate) index: Arc<Index>,
    pub(crate) store: PackStore,
    pub(crate) packer: Arc<Packer>,
    ingest: Arc<Ingest>,
    pub(crate) committer: Committer,
    pub(crate) stop: CancellationToken,
    /// Held by the garbage collection run in progress.
    pub(crate) gc_running: tokio::sync::Mutex<()>,
    /// Held by the retention sweep in progress.
    pub(crate) sweep_running: tokio::sync::Mutex<()>,
    /// Held while a usage snapshot is read and written, so an older one
    /// never overwrites a newer one.
    usage_running: tokio::sync::Mutex<()>,
    /// Totals of GC runs and retention sweeps since start, for `/metrics`.
    pub(crate) progress: std::sync::Mutex<Progress>,
    /// The pack scrubber's progress and findings (`crate::scrub`).
    pub(crate) scrub: crate::scrub::Scrubber,
    /// One permit per upload being served (`max_concurrent_uploads`).
    uploads: Arc<tokio::sync::Semaphore>,
    /// Per token id, one permit per upload it has in progress
    /// (`max_uploads_per_token`). Ids come from the config, so this is bounded.
    token_uploads: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
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
}

/// Held while an upload is served; dropping it frees the slots.
pub struct UploadSlot {
    _token: tokio::sync::OwnedSemaphorePermit,
    _store: tokio::sync::OwnedSemaphorePermit,
}

/// Store-wide figures for `admin stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub physical_bytes: u64,
    pub chunks: u64,
    pub packs: u64,
    pub blobs: u64,
    pub references: u64,
    pub pack_bytes: u64,
    /// Stored bytes of chunks no blob uses, awaiting their grace period.
    pub condemned_bytes: u64,
    /// Bytes of collected chunks still inside packs, awaiting compaction.
    pub dead_bytes: u64,
}

/// Checks a namespace name: 1-128 bytes of `[A-Za-z0-9._-]` segments joined by `/`.
pub fn validate_namespace(ns: &str) -> Result<()> {
    if ns.is_empty() {
        return Err(Error::invalid("namespace is required"));
    }
    if ns.len() > 128 {
        return Err(Error::invalid(format!(
            "namespace is {} bytes, the limit is 128",
            ns.len()
        )));
    }
    for seg in ns.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(Error::invalid(format!(
                "namespace {ns:?} has an empty, '.' or '..' segment"
            )));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(Error::invalid(format!(
                "namespace {ns:?} contains {c:?}; allowed: A-Z a-z 0-9 . _ - /"
            )));
        }
    }
    Ok(())
}

impl Engine {
    /// Opens the store and recovers from whatever a crash left behind.
    pub async fn open(cfg: Config) -> Result<Arc<Self>> {
        cfg.validate()?;
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
        let pending = Arc::new(crate::ingest::Pending::default());
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
            gc_running: Default::default(),
            sweep_running: Default::default(),
            usage_running: Default::default(),
            progress: Default::default(),
            scrub: Default::default(),
        });
        engine.reconcile(&committer, &in_store).await?;
        tokio::spawn(engine.clone().seal_loop(seal_rx, committer));
        tokio::spawn(engine.clone().age_loop());
        tokio::spawn(engine.clone().purge_loop());
        tokio::spawn(engine.clone().gc_loop());
        tokio::spawn(engine.clone().sweep_loop());
        tokio::spawn(engine.clone().usage_loop());
        tokio::spawn(engine.clone().scrub_loop());
        tracing::info!(
            data_dir = %engine.cfg.data_dir.display(),
            pack_store = engine.store.url(),
            recovered_packs = staged.len(),
            quarantined_packs = engine.quarantined_packs(),
            "engine open"
        );
        Ok(engine)
    }

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

    pub async fn put<S>(&self, spec: PutSpec, frames: S) -> Result<PutOutcome>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        validate_namespace(&spec.namespace)?;
        // A stalled client must not hold a worker, a semaphore permit and
        // pending chunks forever.
        let idle = self.cfg.upload_idle_timeout;
        let frames = Box::pin(tokio_stream::StreamExt::timeout(frames, idle).map(move |f| match f {
            Ok(frame) => frame,
            Err(_) => Err(Error::Timeout(format!("the upload sent nothing for {idle:?}"))),
        }));
        self.ingest.put(spec, frames).await
    }

    /// A slot for one more upload, or RESOURCE_EXHAUSTED when
    /// `max_concurrent_uploads` are already being served: a flood of
    /// uploads is turned away, not queued behind the ones in progress.
    /// A token may hold at most `max_uploads_per_token` of them, so one
    /// tenant cannot take every slot.
    pub fn upload_slot(&self, token_id: &str) -> Result<UploadSlot> {
        let per_token = {
            let mut m = self.token_uploads.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(token_id.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.cfg.max_uploads_per_token)))
                .clone()
        };
        let token = per_token.try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "token {token_id:?} has {} uploads in progress (max_uploads_per_token); retry later",
                self.cfg.max_uploads_per_token
            ))
        })?;
        let store = self.uploads.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "too many uploads in progress (max_concurrent_uploads = {}); retry later",
                self.cfg.max_concurrent_uploads
            ))
        })?;
        Ok(UploadSlot {
            _token: token,
            _store: store,
        })
    }

    /// Upload streams being served now.
    /// A capacity report (see `crate::report`) with trends, refreshing
    /// today's usage snapshot first.
    pub async fn capacity(self: &Arc<Self>, q: crate::report::Query) -> Result<crate::report::Report> {
        let today = self.daily_usage().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut r = crate::report::compute(&this.index, &q, &this.stats()?)?;
            r.trends = crate::report::trends(&this.index, &q, today)?;
            r.summary.free_disk_bytes = rustix::fs::statvfs(&this.cfg.data_dir)
                .ok()
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
            Ok(r)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Takes (or refreshes) today's usage snapshot; returns today. A past
    /// day keeps the last snapshot taken on it.
    pub async fn daily_usage(self: &Arc<Self>) -> Result<u64> {
        let _one = self.usage_running.lock().await;
        let today = crate::report::day_of(crate::now_ms());
        let this = self.clone();
        let snap =
            tokio::task::spawn_blocking(move || crate::report::take_snapshot(&this.index, &this.index.stats()?, today))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        let json = |u: &crate::report::DayUsage| serde_json::to_vec(u).map_err(|e| Error::Internal(e.to_string()));
        self.catalog(CatalogOp::DailyUsage {
            day: today,
            usage: json(&snap.store)?,
            namespaces: snap
                .namespaces
                .iter()
                .map(|(ns, u)| Ok((ns.clone(), json(u)?)))
                .collect::<Result<_>>()?,
            packages: snap.packages,
            keep_days: 400,
        })
        .await?;
        Ok(today)
    }

    /// Refreshes today's usage snapshot every hour.
    async fn usage_loop(self: Arc<Self>) {
        loop {
            if let Err(e) = self.daily_usage().await {
                tracing::error!(error = %e, "daily usage snapshot failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    /// Totals of GC runs and sweeps since start.
    pub fn progress(&self) -> Progress {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn uploads_in_progress(&self) -> usize {
        self.cfg.max_concurrent_uploads - self.uploads.available_permits()
    }

    /// The manifest of a blob the namespace stored, with its reference.
    pub fn stat(&self, ns: &str, id: &Hash) -> Result<(Manifest, RefInfo)> {
        validate_namespace(ns)?;
        let not_found = || Error::NotFound(format!("blob {id} in namespace {ns}"));
        let r = self.index.reference(ns, id)?.ok_or_else(not_found)?;
        let m = self
            .index
            .blob(id)?
            .ok_or_else(|| Error::corrupt(format!("blob {id} is referenced but has no manifest")))?;
        Ok((m, r))
    }

    pub fn find_missing(&self, ns: &str, ids: &[Hash]) -> Result<Vec<Hash>> {
        validate_namespace(ns)?;
        let mut missing = Vec::new();
        for id in ids {
            if self.index.reference(ns, id)?.is_none() {
                missing.push(*id);
            }
        }
        Ok(missing)
    }

    pub fn stats(&self) -> Result<StoreStats> {
        let s: Stats = self.index.stats()?;
        let (staged, staged_bytes) = self.packer.staged_totals();
        Ok(StoreStats {
            logical_bytes: s.logical_bytes,
            unique_bytes: s.unique_bytes,
            physical_bytes: s.physical_bytes,
            chunks: s.chunks,
            packs: s.packs + staged,
            blobs: s.blobs,
            references: s.references,
            pack_bytes: s.sealed_pack_bytes + staged_bytes,
            condemned_bytes: s.condemned_bytes,
            dead_bytes: s.dead_bytes,
        })
    }

    /// Streams `[offset, offset+length)` of a blob, verifying every chunk.
    /// Returns the blob size and the stream; a failed check ends the stream
    /// with `Error::Corrupt` before any byte of that chunk is sent.
    pub fn get(
        self: &Arc<Self>,
        ns: &str,
        id: &Hash,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(u64, mpsc::Receiver<Result<Bytes>>)> {
        let (m, _) = self.stat(ns, id)?;
        if offset > m.size {
            return Err(Error::OutOfRange(format!(
                "offset {offset} is past the end of a {}-byte blob",
                m.size
            )));
        }
        let end = match length {
            Some(l) => offset.checked_add(l).filter(|&e| e <= m.size).ok_or_else(|| {
                Error::OutOfRange(format!("range {offset}+{l} is past the end of a {}-byte blob", m.size))
            })?,
            None => m.size,
        };
        // Chunks overlapping the range, with the slice of each to send.
        let mut parts = Vec::new();
        let mut pos = 0u64;
        for c in &m.chunks {
            let (s, e) = (pos, pos + c.len as u64);
            pos = e;
            if e <= offset || s >= end {
                continue;
            }
            parts.push((c.id, (offset.max(s) - s) as usize, (end.min(e) - s) as usize));
        }
        let ids: Vec<Hash> = parts.iter().map(|p| p.0).collect();
        let locs = self.index.chunks(&ids)?;
        let mut extents: Vec<Extent> = Vec::new();
        for ((id, from, to), loc) in parts.into_iter().zip(locs) {
            let loc = loc
                .ok_or_else(|| Error::corrupt(format!("chunk {id} of blob {} has no index entry", m.digests.blake3)))?;
            let part = Part { id, loc, from, to };
            match extents.last_mut() {
                // Bounded in stored and in decoded bytes: compressible
                // chunks must not make one extent inflate to gigabytes.
                Some(x)
                    if x.pack == loc.pack
                        && x.end == loc.offset
                        && x.end - x.start < MAX_EXTENT
                        && x.raw < MAX_EXTENT =>
                {
                    x.end += loc.record_len();
                    x.raw += loc.raw_len as u64;
                    x.parts.push(part);
                }
                _ => extents.push(Extent {
                    pack: loc.pack,
                    start: loc.offset,
                    end: loc.offset + loc.record_len(),
                    raw: loc.raw_len as u64,
                    parts: vec![part],
                }),
            }
        }
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            let mut reads = futures::stream::iter(extents)
                .map(|x| this.read_extent(x))
                .buffered(READ_AHEAD);
            while let Some(r) = reads.next().await {
                match r {
                    Ok(pieces) => {
                        for p in pieces {
                            if tx.send(Ok(p)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "read failed verification");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok((m.size, rx))
    }

    /// Reads a run of adjacent records and returns the verified slices. If
    /// compaction moved them meanwhile (their pack is retired or gone), each
    /// chunk is looked up again and read where it is now.
    async fn read_extent(self: &Arc<Self>, x: Extent) -> Result<Vec<Bytes>> {
        let pack = x.pack;
        let parts: Vec<(Hash, usize, usize)> = x.parts.iter().map(|p| (p.id, p.from, p.to)).collect();
        match self.read_extent_at(x).await {
            Err(e) if !self.index.pack(pack)?.is_some_and(|i| i.state != PackState::Retired) => {
                tracing::debug!(pack = %format!("{pack:016x}"), error = %e, "pack was compacted during a read; following the move");
                let mut out = Vec::with_capacity(parts.len());
                for (id, from, to) in parts {
                    let loc = self
                        .index
                        .chunk(&id)?
                        .ok_or_else(|| Error::NotFound(format!("chunk {id} was collected during the read")))?;
                    let one = Extent {
                        pack: loc.pack,
                        start: loc.offset,
                        end: loc.offset + loc.record_len(),
                        raw: loc.raw_len as u64,
                        parts: vec![Part { id, loc, from, to }],
                    };
                    out.extend(self.read_extent_at(one).await?);
                }
                Ok(out)
            }
            r => r,
        }
    }

    async fn read_extent_at(self: &Arc<Self>, x: Extent) -> Result<Vec<Bytes>> {
        let len = x.end - x.start;
        let bytes = match self.packer.staged(x.pack) {
            Some(p) => tokio::task::spawn_blocking(move || p.read_at(x.start, len).map(Bytes::from))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??,
            None => self.store.get_range(x.pack, x.start..x.end).await?,
        };
        tokio::task::spawn_blocking(move || {
            x.parts
                .iter()
                .map(|p| {
                    let at = (p.loc.offset - x.start) as usize;
                    let rec = bytes.slice(at..at + p.loc.record_len() as usize);
                    let (e, _) = format::open_record(&rec, p.loc.offset, Kind::Chunk, &p.id)
                        .map_err(|e| Error::corrupt(format!("pack {:016x}: {e}", x.pack)))?;
                    let raw = format::decode_chunk(&e, rec.slice(format::RECORD_HEADER_LEN..))?;
                    Ok(raw.slice(p.from..p.to))
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
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
        self.committer.catalog(op).await
    }

    /// Streams a blob in and publishes it as a file of `at` in one call.
    /// What the commit would refuse now (a deleted target, a duplicate the
    /// policy forbids) is refused before any byte is stored; if a racing
    /// change wins after the upload, the blob stays only under its upload
    /// lease and the error is returned.
    pub async fn publish_stream<S>(
        &self,
        at: VerRef,
        file_name: String,
        mut spec: PutSpec,
        frames: S,
        actor: String,
    ) -> Result<(CatalogOutcome, PutOutcome)>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        at.validate()?;
        catalog::model::validate_file_name(&file_name)?;
        catalog::read::precheck_publish(&self.index, &at, &file_name)?;
        spec.namespace = at.pkg.namespace.clone();
        let put = self.put(spec, frames).await?;
        let op = CatalogOp::Publish {
            at,
            file_name,
            blob: put.digests.blake3,
            digests: Some(Box::new(put.digests.clone())),
            actor,
        };
        Ok((self.catalog(op).await?, put))
    }

    /// Recomputes every reference count and catalog aggregate (on a
    /// snapshot); reports quarantined packs, and with `read_data` verifies
    /// every record of every pack (`crate::scrub`).
    pub async fn check(self: &Arc<Self>, read_data: bool) -> Result<CheckReport> {
        let this = self.clone();
        let mut r = tokio::task::spawn_blocking(move || catalog::check::check(&this.index))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        self.check_packs(&mut r, read_data).await?;
        Ok(r)
    }

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

    async fn purge_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.purge_interval) => {}
                _ = self.stop.cancelled() => return,
            }
            match self.purge("trash-purge").await {
                Ok(c) if c != PurgeCounts::default() => tracing::info!(?c, "purged"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "purge failed"),
            }
        }
    }

    /// Seals, uploads and records full packs, retrying until it works.
    async fn seal_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Arc<OpenPack>>, committer: Committer) {
        loop {
            // A pack waiting to be sealed is sealed at the next start.
            let pack = tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
                _ = self.stop.cancelled() => return,
            };
            let mut delay = Duration::from_millis(200);
            loop {
                match self.seal_one(&pack, &committer).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(pack = %format!("{:016x}", pack.id), error = %e, "sealing failed; will retry");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = self.stop.cancelled() => return,
                        }
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
    }

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

    /// Seals a non-empty open pack once it reaches `pack_max_age`.
    async fn age_loop(self: Arc<Self>) {
        let age = self.cfg.pack_max_age;
        let tick = (age / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = self.stop.cancelled() => return,
            }
            let packer = self.packer.clone();
            let rolled = tokio::task::spawn_blocking(move || packer.roll_if_older(age)).await;
            if let Err(e) = rolled.map_err(|e| Error::Internal(e.to_string())).and_then(|r| r) {
                tracing::error!(error = %e, "could not roll the open pack");
            }
        }
    }
}

struct Part {
    id: Hash,
    loc: ChunkLoc,
    from: usize,
    to: usize,
}

struct Extent {
    pack: u64,
    start: u64,
    end: u64,
    /// Decoded bytes of its chunks.
    raw: u64,
    parts: Vec<Part>,
}

/// Staged pack files, oldest first.
pub(crate) fn list_staged(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| staging_file_id(p).is_some())
        .collect();
    files.sort_by_key(|p| staging_file_id(p));
    Ok(files)
}
