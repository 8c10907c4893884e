//! The package-aware optimizer's driver: finds stored blobs that are still
//! raw (version-1 manifests the optimizer has not looked at), reads each
//! (verified), expands and plans it (`crate::expand`), proves the recipe
//! recreates the blob's BLAKE3 from the planned streams, prepares the
//! streams' chunks (compressed, deduplicated against the index), and only
//! if the recipe stores clearly less writes the new chunks and hands the
//! switch to the committer (`committer::optimize`). Every blob it looked
//! at gets a record (`catalog::optimized`), so a later pass skips it.
//!
//! A crash at any point leaves either form whole: until the committer's
//! batch, the blob is its old manifest and the written chunks are
//! unindexed records; after it, the recipe manifest and its chunks are
//! durable and the raw chunks are condemned, collected by GC later.
//!
//! `stowage optimize` runs a pass now (one at a time); the background
//! worker runs the same steps one blob per unit, resting
//! `optimize.tranquility` times as long as each took.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Engine;
use crate::background::{Next, Worker};
use crate::catalog::kin;
use crate::catalog::optimized::{self, Outcome, Verdict};
use crate::committer::{CommitReq, NewChunks};
use crate::error::{Error, Result};
use crate::expand::{self, recipe};
use crate::hash::Hash;
use crate::index::Cf;
use crate::ingest::Bases;
use crate::manifest::Manifest;

/// Blobs smaller than this stay raw: a recipe's bookkeeping outweighs
/// anything expansion could save.
const MIN_BLOB: u64 = 512;
/// Versions' files looked at for a reference blob (the first optimized one wins).
const KIN: usize = 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptimizeProgress {
    /// Blobs this pass looks at, and has looked at.
    pub total: u64,
    pub done: u64,
    /// Of those, switched to a recipe (a dry run: would be), and their bytes.
    pub optimized: u64,
    pub optimized_bytes: u64,
    /// Kept raw: not a container, no saving, too large.
    pub opaque: u64,
    pub no_saving: u64,
    pub too_large: u64,
    /// Failed (logged; tried again by the next pass).
    pub failed: u64,
    /// Stored bytes the switches released (condemned raw chunks) and
    /// added (the recipes' new chunks and manifests).
    pub released_bytes: u64,
    pub added_bytes: u64,
    /// Streams by method, over the optimized blobs.
    pub zlib: u64,
    pub preflate: u64,
    pub opaque_streams: u64,
    /// New chunks of the optimized blobs stored as deltas, their stored
    /// bytes, and what storing them alone would have cost more.
    pub deltas: u64,
    pub delta_bytes: u64,
    pub delta_saved_bytes: u64,
    pub dry_run: bool,
    pub finished: bool,
}

/// What looking at one blob came to.
struct Looked {
    outcome: Outcome,
    /// Stored bytes it would release and add (dry run and real alike).
    released: u64,
    added: u64,
    /// Its new chunks stored as deltas: count, stored bytes, bytes saved.
    deltas: (u64, u64, u64),
}

impl Engine {
    /// Runs a pass over every blob not looked at yet. A dry run writes
    /// nothing and says what a pass would do now (counting chunks earlier
    /// blobs of the same pass would have stored as stored).
    pub async fn optimize(
        self: &Arc<Self>,
        dry_run: bool,
        progress: Option<mpsc::Sender<OptimizeProgress>>,
    ) -> Result<OptimizeProgress> {
        let _one = self.optimize_running.lock().await;
        let todo = self.raw_blobs(None, usize::MAX)?;
        let mut p = OptimizeProgress {
            total: todo.len() as u64,
            dry_run,
            ..Default::default()
        };
        let mut assumed = HashSet::new();
        for id in todo {
            if self.stop.is_cancelled() {
                return Err(Error::Unavailable("the daemon is stopping".into()));
            }
            let looked = self.look_at(&id, dry_run.then_some(&mut assumed)).await;
            tally(&mut p, looked, &id);
            if let Some(tx) = &progress {
                let _ = tx.try_send(p);
            }
        }
        p.finished = true;
        if let Some(tx) = &progress {
            let _ = tx.send(p).await;
        }
        Ok(p)
    }

    /// What the optimizer did, over the blobs stored now.
    pub fn optimize_totals(&self) -> Result<optimized::Totals> {
        optimized::totals(|k| self.index.get(Cf::CatalogIdx, k))
    }

    /// Up to `n` stored blobs after `after` with a version-1 manifest and
    /// no optimizer record, in key order.
    fn raw_blobs(&self, after: Option<&Hash>, n: usize) -> Result<Vec<Hash>> {
        let from = match after {
            Some(h) => [h.0.as_slice(), &[0]].concat(),
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for kv in self.index.scan(Cf::Blobs, &from, None, false) {
            let (k, v) = kv?;
            if Manifest::is_recipe(&v) {
                continue;
            }
            let id = Hash::from_slice(&k).ok_or_else(|| Error::corrupt("bad blob key"))?;
            if self.index.get(Cf::CatalogIdx, &optimized::outcome_key(&id))?.is_some() {
                continue;
            }
            out.push(id);
            if out.len() >= n {
                break;
            }
        }
        Ok(out)
    }

    /// Looks at one blob: records a verdict, or switches it to its recipe
    /// (a dry run only says which). `assumed`: a dry run's chunks that
    /// earlier blobs of the pass would have stored.
    async fn look_at(self: &Arc<Self>, id: &Hash, assumed: Option<&mut HashSet<Hash>>) -> Result<Option<Looked>> {
        let dry_run = assumed.is_some();
        let Some(old) = self.index.get(Cf::Blobs, &id.0)? else {
            return Ok(None);
        };
        if Manifest::is_recipe(&old) {
            return Ok(None);
        }
        let m = Manifest::decode(&old)?;
        let cfg = self.cfg.optimize;
        let mut outcome = Outcome {
            bytes: m.size,
            ..Default::default()
        };
        let raw = |verdict, outcome: Outcome| Looked {
            outcome: Outcome { verdict, ..outcome },
            released: 0,
            added: 0,
            deltas: (0, 0, 0),
        };
        let verdict = if m.size > cfg.max_blob.as_u64() {
            Some(Verdict::TooLarge)
        } else if m.size < MIN_BLOB || !expand::sniff(&self.read_head(&m, 4096).await?) {
            Some(Verdict::Opaque)
        } else {
            None
        };
        if let Some(v) = verdict {
            return self
                .settle(old, None, raw(v, outcome), Default::default(), dry_run)
                .await;
        }
        let data = self.read_whole(&m).await?;
        let reference = match cfg.delta_depth {
            0 => Vec::new(),
            _ => self.delta_reference(id)?,
        };
        let this = self.clone();
        let (m2, level, budget, delta_depth) = (m.clone(), cfg.zstd_level, cfg.budget(), cfg.delta_depth);
        let planned = tokio::task::spawn_blocking(move || -> Result<Option<_>> {
            let (nodes, stats, proven) = expand::expand_proving(&data, &budget);
            if stats.zlib + stats.preflate == 0 {
                return Ok(Some((None, stats)));
            }
            let planned = recipe::plan(nodes, &data);
            drop(data);
            // Proof: the planned streams recreate the blob's BLAKE3. Each
            // deflate stream was proven when the search found its method
            // (the compressor remade every byte); this assembles the blob
            // from the plan, taking those streams as proven.
            let mut h = blake3::Hasher::new();
            recipe::recreate_proven(&planned.recipe, planned.source(), &proven, &mut |seg| {
                h.update(seg);
                Ok(())
            })?;
            drop(proven);
            if Hash(*h.finalize().as_bytes()) != m2.digests.blake3 {
                return Err(Error::Internal(format!(
                    "the recipe of blob {} does not recreate it",
                    m2.digests.blake3
                )));
            }
            // Deltas read their bases through the verified read path.
            let rt = tokio::runtime::Handle::current();
            let read = |id: &Hash| rt.block_on(this.chunk_bytes(*id, crate::pack::format::MAX_DELTA_DEPTH));
            let bases = Bases {
                max_depth: delta_depth,
                read: &read,
                reference: &reference,
            };
            let bases = (delta_depth > 0).then_some(&bases);
            let prepared = this.ingest.prepare_streams(planned.streams(), level, bases)?;
            Ok(Some((Some((planned.recipe, prepared)), stats)))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let Some((made, stats)) = planned else { return Ok(None) };
        (outcome.zip, outcome.gzip, outcome.tar, outcome.nested) = (stats.zip, stats.gzip, stats.tar, stats.nested);
        (outcome.zlib, outcome.preflate, outcome.opaque) = (stats.zlib, stats.preflate, stats.opaque);
        let Some((recipe, mut prepared)) = made else {
            return self
                .settle(old, None, raw(Verdict::Opaque, outcome), Default::default(), dry_run)
                .await;
        };
        if let Some(a) = &assumed {
            prepared.forget_assumed(a);
        }
        let new = Manifest {
            chunks: prepared.chunks.clone(),
            recipe: Some(Box::new(recipe)),
            ..m.clone()
        };
        // What the switch would release: the raw chunks no other blob uses.
        let (released, alone) = self.raw_stored(&m)?;
        let grown = (new.encode().len() as u64).saturating_sub(old.len() as u64);
        let added = prepared.new_stored + grown;
        // Worth it if the store shrinks now, or if the recipe on its own
        // is smaller than the raw blob on its own: then the raw chunks it
        // shares with other raw blobs (a package's earlier or later
        // versions, whose unchanged members deflate alike) are freed once
        // those switch too, while they dedup against this recipe's chunks.
        let allowed = 1.0 - cfg.min_saving;
        if (added as f64) > released as f64 * allowed && (prepared.all_stored + grown) as f64 > alone as f64 * allowed {
            return self
                .settle(old, None, raw(Verdict::NoSaving, outcome), Default::default(), dry_run)
                .await;
        }
        let looked = Looked {
            outcome,
            released,
            added,
            deltas: (prepared.deltas, prepared.delta_stored, prepared.delta_saved),
        };
        if let Some(a) = assumed {
            a.extend(prepared.chunks.iter().map(|c| c.id));
            return Ok(Some(looked));
        }
        let this = self.clone();
        let sketches = std::mem::take(&mut prepared.sketches);
        let written = tokio::task::spawn_blocking(move || this.ingest.write_prepared(prepared))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let candidates = written.candidates.clone();
        let new = Manifest {
            chunks: written.chunks.clone(),
            ..new
        };
        let chunks = NewChunks { candidates, sketches };
        let r = self.settle(old, Some(new), looked, chunks, false).await;
        drop(written);
        r
    }

    /// The chunks of the nearest optimized version of the blob's package
    /// (`catalog::kin`) in expanded-space order, for the deltas to walk
    /// beside; none when no catalog file uses the blob.
    fn delta_reference(&self, id: &Hash) -> Result<Vec<Hash>> {
        for k in kin::kin(&self.index, id, KIN)? {
            if let Some(v) = self.index.get(Cf::Blobs, &k.0)?
                && Manifest::is_recipe(&v)
            {
                return Ok(Manifest::decode(&v)?.chunks.into_iter().map(|c| c.id).collect());
            }
        }
        Ok(Vec::new())
    }

    /// Commits a verdict (not in a dry run).
    async fn settle(
        &self,
        old: Vec<u8>,
        recipe: Option<Manifest>,
        looked: Looked,
        chunks: NewChunks,
        dry_run: bool,
    ) -> Result<Option<Looked>> {
        if dry_run {
            return Ok(Some(looked));
        }
        let switch = recipe.is_some();
        let o = self
            .committer
            .submit(CommitReq::Optimize {
                old,
                recipe: recipe.map(Box::new),
                outcome: looked.outcome,
                chunks,
            })
            .await
            .inspect_err(|e| self.disk.note(e))?;
        if switch && !o.new {
            return Ok(None); // released or changed meanwhile
        }
        Ok(Some(Looked {
            released: if switch { o.released_bytes } else { 0 },
            added: if switch { o.added_bytes } else { 0 },
            ..looked
        }))
    }

    /// Stored bytes of the blob's chunks that no other manifest uses, and
    /// of all its distinct chunks.
    fn raw_stored(&self, m: &Manifest) -> Result<(u64, u64)> {
        let (mut exclusive, mut all) = (0, 0);
        for (id, n) in crate::catalog::chunks::occurrences(m) {
            if let Some(c) = self.index.chunk_rec(&id)? {
                all += c.loc.stored_len as u64;
                if c.refs <= n {
                    exclusive += c.loc.stored_len as u64;
                }
            }
        }
        Ok((exclusive, all))
    }

    /// The first `n` bytes (or fewer) of a blob, verified.
    async fn read_head(self: &Arc<Self>, m: &Manifest, n: u64) -> Result<Vec<u8>> {
        let end = n.min(m.size);
        collect(self.read_chunks(m, 0, end)?, end).await
    }

    /// A raw blob's bytes, verified.
    async fn read_whole(self: &Arc<Self>, m: &Manifest) -> Result<Vec<u8>> {
        collect(self.read_chunks(m, 0, m.size)?, m.size).await
    }
}

async fn collect(mut rx: mpsc::Receiver<Result<Bytes>>, len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len as usize);
    while let Some(b) = rx.recv().await {
        out.extend_from_slice(&b?);
    }
    if out.len() as u64 != len {
        return Err(Error::corrupt("a blob read ended early"));
    }
    Ok(out)
}

fn tally(p: &mut OptimizeProgress, looked: Result<Option<Looked>>, id: &Hash) {
    p.done += 1;
    match looked {
        Ok(Some(l)) => {
            let o = l.outcome;
            match o.verdict {
                Verdict::Recipe => {
                    p.optimized += 1;
                    p.optimized_bytes += o.bytes;
                    p.released_bytes += l.released;
                    p.added_bytes += l.added;
                    p.zlib += o.zlib as u64;
                    p.preflate += o.preflate as u64;
                    p.opaque_streams += o.opaque as u64;
                    p.deltas += l.deltas.0;
                    p.delta_bytes += l.deltas.1;
                    p.delta_saved_bytes += l.deltas.2;
                }
                Verdict::Opaque => p.opaque += 1,
                Verdict::NoSaving => p.no_saving += 1,
                Verdict::TooLarge => p.too_large += 1,
            }
        }
        Ok(None) => {}
        Err(e) => {
            p.failed += 1;
            tracing::warn!(blob = %id, error = %e, "optimizing a blob failed; the next pass tries again");
        }
    }
}

/// The background optimizer: one blob per unit, resting
/// `optimize.tranquility` times as long as it took; the first pass starts
/// `optimize.interval` after the daemon, and each next one that long after
/// a pass found nothing more to do.
pub(super) struct OptimizeWorker {
    pub engine: Arc<Engine>,
    pub after: Option<Hash>,
    pub waited: bool,
}

impl Worker for OptimizeWorker {
    fn name(&self) -> &'static str {
        "optimize"
    }

    fn tranquility(&self) -> u32 {
        self.engine.cfg.optimize.tranquility
    }

    async fn work(&mut self) -> Result<Next> {
        let e = &self.engine;
        if !self.waited {
            self.waited = true;
            return Ok(Next::Idle(e.cfg.optimize.interval));
        }
        // `stowage optimize` is running: it does the work.
        let Ok(_one) = e.optimize_running.try_lock() else {
            return Ok(Next::Idle(Duration::from_secs(5)));
        };
        let Some(id) = e.raw_blobs(self.after.as_ref(), 1)?.pop() else {
            self.after = None;
            return Ok(Next::Idle(e.cfg.optimize.interval));
        };
        self.after = Some(id);
        let mut p = OptimizeProgress::default();
        tally(&mut p, e.look_at(&id, None).await, &id);
        if p.optimized > 0 {
            tracing::info!(blob = %id, released = p.released_bytes, added = p.added_bytes, "optimized a blob");
        }
        Ok(Next::Busy)
    }
}
