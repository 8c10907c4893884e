//! The GC driver: one run collects due condemned chunks (through the
//! committer), compacts the packs over the dead threshold (read live
//! records, copy them into the open pack, commit the relocation), and
//! deletes retired packs whose delay is over. See `crate::gc` for the
//! steps and their invariants.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::Engine;
use crate::background::{Periodic, Worker};
use crate::catalog::CatalogOp;
use crate::catalog::records::{self as rec, Job, be_u64};
use crate::committer::CommitReq;
use crate::error::{Error, Result};
use crate::gc::{
    COLLECT_BATCH, Copied, Ends, GcOptions, GcReport, Moved, Relocation, candidates, live_entries, read_runs,
};
use crate::hash::Hash;
use crate::index::{Cf, ChunkLoc};
use crate::pack::format::{self, Entry, Kind};

impl Engine {
    /// One collection and compaction run (one at a time; a second caller
    /// waits for the first to finish). A dry run makes the same decisions
    /// on the index as it stands (collection as it would leave it): its
    /// figures are the run's, barring writes meanwhile.
    pub async fn gc(self: &Arc<Self>, opts: GcOptions) -> Result<GcReport> {
        let _one = self.gc_running.lock().await;
        let started = Instant::now();
        let now = crate::now_ms();
        let cutoff = now.saturating_sub(opts.grace.as_millis() as i64);
        let mut rep = GcReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        let mut expected_dead: HashMap<u64, u64> = HashMap::new();
        if opts.dry_run {
            let to = rec::condemned_key(cutoff.saturating_add(1), &Hash([0; 32]));
            // A collected delta releases its base, as `gc::collect` does.
            let mut released: HashMap<Hash, u64> = HashMap::new();
            for kv in self
                .index
                .scan(Cf::CatalogIdx, &[rec::tag::CONDEMNED], Some(&to), false)
            {
                let (k, _) = kv?;
                let (at, id) = rec::parse_condemned_key(&k)?;
                let mut next = self
                    .index
                    .chunk_rec(&id)?
                    .filter(|c| c.refs == 0 && c.condemned_ms == at);
                while let Some(c) = next.take() {
                    rep.chunks_collected += 1;
                    rep.bytes_collected += c.loc.stored_len as u64;
                    *expected_dead.entry(c.loc.pack).or_default() += c.loc.record_len();
                    if let Some(d) = c.loc.delta
                        && let Some(b) = self.index.chunk_rec(&d.base)?
                    {
                        let n = released.entry(d.base).or_default();
                        *n += 1;
                        if b.refs == *n {
                            next = Some(b);
                        }
                    }
                }
            }
        } else {
            loop {
                let req = CommitReq::Collect {
                    cutoff_ms: cutoff,
                    budget: COLLECT_BATCH,
                };
                let c = self.committer.submit(req).await?.collected.unwrap_or_default();
                rep.chunks_collected += c.chunks;
                rep.bytes_collected += c.bytes;
                if !c.more {
                    break;
                }
            }
        }
        // Dead bytes the run leaves: today's, plus what collection adds,
        // less what compaction retires (a dry run's prediction).
        let mut dead_after = self.index.stats()?.dead_bytes + expected_dead.values().sum::<u64>();
        // Packs this run retires, with their sizes: deleted in this run too
        // when the delete delay is zero.
        let mut retired_now: Vec<u64> = Vec::new();
        for c in candidates(&self.index, opts.compact_threshold, &expected_dead)? {
            if rep.bytes_copied >= opts.max_repack_bytes || self.stop.is_cancelled() {
                rep.packs_deferred += 1;
                continue;
            }
            let done = match opts.dry_run {
                true => self.compact_dry(c.pack, cutoff).await.map(Some),
                false => self.compact(c.pack).await,
            };
            match done {
                Ok(Some(copied)) => {
                    rep.packs_compacted += 1;
                    rep.bytes_copied += copied.bytes;
                    rep.records_copied += copied.records;
                    dead_after = dead_after.saturating_sub(c.dead);
                    retired_now.push(c.size);
                }
                Ok(None) => rep.packs_deferred += 1,
                Err(e) => {
                    tracing::error!(pack = %format!("{:016x}", c.pack), error = %e, "compaction failed; pack kept");
                    rep.packs_deferred += 1;
                }
            }
        }
        // Retired packs whose delay is over: those retired before the run
        // started (by the run's start time), and with a zero delay the ones
        // this run retired, so a dry run can say which.
        let delay = opts.pack_delete_delay.as_millis() as i64;
        let due = match delay {
            0 => crate::now_ms(),
            _ => now.saturating_sub(delay),
        };
        let to = rec::retired_key(due.saturating_add(1), 0);
        let retired: Vec<_> = self
            .index
            .scan(Cf::CatalogIdx, &[rec::tag::RETIRED], Some(&to), false)
            .collect::<Result<_>>()?;
        for (k, _) in retired {
            let pack = be_u64(k.get(9..17).ok_or_else(|| Error::corrupt("bad retired-pack key"))?)?;
            let size = self.index.pack(pack)?.map_or(0, |i| i.size);
            if !opts.dry_run {
                self.store.delete(pack).await?;
                let req = CommitReq::ForgetPack {
                    retired_key: k.to_vec(),
                    pack,
                };
                self.committer.submit(req).await?;
                tracing::info!(pack = %format!("{pack:016x}"), size, "retired pack deleted");
            }
            rep.packs_deleted += 1;
            rep.bytes_deleted += size;
        }
        if opts.dry_run && delay == 0 {
            rep.packs_deleted += retired_now.len() as u64;
            rep.bytes_deleted += retired_now.iter().sum::<u64>();
        }
        let stats = self.index.stats()?;
        rep.bytes_condemned = stats
            .condemned_bytes
            .saturating_sub(if opts.dry_run { rep.bytes_collected } else { 0 });
        rep.chunks_condemned = self
            .index
            .scan(
                Cf::CatalogIdx,
                &[rec::tag::CONDEMNED],
                Some(&[rec::tag::CONDEMNED + 1]),
                false,
            )
            .count() as u64
            - if opts.dry_run { rep.chunks_collected } else { 0 };
        rep.dead_bytes = if opts.dry_run { dead_after } else { stats.dead_bytes };
        rep.elapsed_ms = started.elapsed().as_millis() as u64;
        if !opts.dry_run {
            let ended_ms = crate::now_ms();
            {
                let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
                p.gc_runs += 1;
                p.gc_bytes_collected += rep.bytes_collected;
                p.gc_bytes_copied += rep.bytes_copied;
                p.gc_packs_deleted += rep.packs_deleted;
                p.gc_bytes_deleted += rep.bytes_deleted;
                p.gc_last_elapsed_ms = rep.elapsed_ms;
                p.gc_last_run_ms = Some(ended_ms);
            }
            let elapsed_ms = rep.elapsed_ms;
            let job = Job::Gc;
            self.catalog(CatalogOp::LastRun {
                job,
                ended_ms,
                elapsed_ms,
            })
            .await?;
            tracing::info!(
                chunks_collected = rep.chunks_collected,
                bytes_collected = rep.bytes_collected,
                chunks_condemned = rep.chunks_condemned,
                packs_compacted = rep.packs_compacted,
                bytes_copied = rep.bytes_copied,
                packs_deferred = rep.packs_deferred,
                packs_deleted = rep.packs_deleted,
                bytes_deleted = rep.bytes_deleted,
                dead_bytes = rep.dead_bytes,
                elapsed_ms = rep.elapsed_ms,
                "gc run"
            );
        }
        Ok(rep)
    }

    /// The footer entries of a sealed pack.
    async fn pack_entries(&self, pack: u64) -> Result<Vec<Entry>> {
        let info = self
            .index
            .pack(pack)?
            .ok_or_else(|| Error::NotFound(format!("pack {pack:016x}")))?;
        let tail = self
            .store
            .get_range(pack, info.size.saturating_sub(format::TRAILER_LEN as u64)..info.size)
            .await?;
        let (_, footer_at) = format::decode_trailer(&tail)?;
        let footer = self.store.get_range(pack, footer_at..info.size).await?;
        format::decode_footer(&footer)
    }

    /// What [`Self::compact`] would copy from `pack` once chunks condemned
    /// by `cutoff` are collected: the same reads, and the same reference
    /// records skipped (each one read), but nothing written.
    async fn compact_dry(self: &Arc<Self>, pack: u64, cutoff: i64) -> Result<Copied> {
        let entries = self.pack_entries(pack).await?;
        let this = self.clone();
        let (live, _) = tokio::task::spawn_blocking(move || live_entries(&this.index, pack, entries, Some(cutoff)))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let mut out = Copied::default();
        for run in read_runs(&live) {
            let run = &live[run];
            let start = run[0].offset;
            out.bytes += run.last().map_or(start, |e| e.offset + e.record_len()) - start;
            for e in run {
                if e.kind == Kind::Ref {
                    let bytes = self.store.get_range(pack, e.offset..e.offset + e.record_len()).await?;
                    let (_, data) = format::open_record(&bytes, e.offset, e.kind, &e.id)
                        .map_err(|err| Error::corrupt(format!("pack {pack:016x}: {err}")))?;
                    let (ns, _) = format::decode_ref(data)?;
                    if self.index.reference(&ns, &e.id)?.is_none() {
                        continue;
                    }
                }
                out.records += 1;
            }
        }
        Ok(out)
    }

    /// Copies the live records of a sealed pack into the open pack and
    /// commits the switch. `None`: the pack changed meanwhile (kept).
    async fn compact(self: &Arc<Self>, pack: u64) -> Result<Option<Copied>> {
        let entries = self.pack_entries(pack).await?;
        let this = self.clone();
        let (live, left) = tokio::task::spawn_blocking(move || live_entries(&this.index, pack, entries, None))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let mut reloc = Relocation {
            pack,
            left,
            ..Default::default()
        };
        let mut out = Copied::default();
        for run in read_runs(&live) {
            let run = live[run].to_vec();
            let start = run[0].offset;
            let end = run.last().map_or(start, |e| e.offset + e.record_len());
            let bytes = self.store.get_range(pack, start..end).await?;
            let this = self.clone();
            let (chunks, others) = tokio::task::spawn_blocking(move || this.copy_records(pack, &run, &bytes, start))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            out.records += (chunks.len() + others.len()) as u64;
            out.bytes += end - start;
            reloc.chunks.extend(chunks);
            reloc.others.extend(others);
        }
        let r = self.committer.submit(CommitReq::Relocate(Box::new(reloc))).await?;
        Ok(r.retired.then_some(out))
    }

    /// Verifies and appends one run of records; returns the chunk copies
    /// and the other copies (pack, end).
    fn copy_records(&self, pack: u64, run: &[Entry], bytes: &[u8], start: u64) -> Result<(Moved, Ends)> {
        let (mut chunks, mut others) = (Vec::new(), Vec::new());
        for e in run {
            let at = (e.offset - start) as usize;
            let rec = &bytes[at..at + e.record_len() as usize];
            let (h, data) = format::open_record(rec, e.offset, e.kind, &e.id)
                .map_err(|err| Error::corrupt(format!("pack {pack:016x}: {err}")))?;
            if e.kind == Kind::Ref {
                let (ns, _) = format::decode_ref(data)?;
                if self.index.reference(&ns, &e.id)?.is_none() {
                    continue;
                }
            }
            let (p, ne) = self.packer.append(e.kind, h.codec, e.id, h.raw_len, data)?;
            match e.kind {
                Kind::Chunk => chunks.push((
                    e.id,
                    e.offset,
                    ChunkLoc {
                        pack: p.id,
                        offset: ne.offset,
                        stored_len: ne.stored_len,
                        raw_len: ne.raw_len,
                        codec: ne.codec,
                        delta: format::delta_of(ne.codec, data)?,
                    },
                )),
                _ => others.push((p.id, ne.offset + ne.record_len())),
            }
        }
        Ok((chunks, others))
    }
}

/// Runs [`Engine::gc`] every `gc.interval` (the caller spawns it only if
/// the interval is not zero).
pub(super) fn gc_worker(engine: Arc<Engine>) -> impl Worker {
    let every = engine.cfg.gc.interval;
    engine.schedule_gc(every);
    Periodic {
        name: "gc",
        first: Some(every),
        period: every,
        f: move || {
            let engine = engine.clone();
            async move {
                let r = engine.gc(GcOptions::from(&engine.cfg.gc)).await.map(drop);
                engine.schedule_gc(every);
                r
            }
        },
    }
}
