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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalog::chunks::sub;
use crate::catalog::records::{self as rec, be_u64};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkLoc, PackInfo, PackState, Stats, Txn};
use crate::ingest::CommitReq;
use crate::pack::format::{self, Entry, Kind};

/// Condemned chunks one collect batch handles.
pub const COLLECT_BATCH: usize = 20_000;
/// Largest read of adjacent live records while compacting.
const COPY_READ: u64 = 8 << 20;

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

/// Committer step 1: collects up to `budget` condemned chunks condemned at
/// or before `cutoff_ms`. Scans committed state: runs alone in its batch.
pub fn collect(txn: &mut Txn<'_>, stats: &mut Stats, cutoff_ms: i64, budget: usize) -> Result<Collected> {
    let to = rec::condemned_key(cutoff_ms.saturating_add(1), &Hash([0; 32]));
    let due: Vec<_> = txn
        .index()
        .scan(Cf::CatalogIdx, b"k", Some(&to), false)
        .take(budget + 1)
        .collect::<Result<_>>()?;
    let mut out = Collected {
        more: due.len() > budget,
        ..Default::default()
    };
    let mut dead: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, _) in due.into_iter().take(budget) {
        let (at, id) = rec::parse_condemned_key(&k)?;
        txn.delete(Cf::CatalogIdx, k.to_vec());
        match txn.chunk_rec(&id)? {
            Some(c) if c.refs == 0 && c.condemned_ms == at => {
                txn.delete(Cf::Chunks, id.0);
                *dead.entry(c.loc.pack).or_default() += c.loc.record_len();
                let stored = c.loc.stored_len as u64;
                sub(&mut stats.chunks, 1, "store chunks")?;
                sub(&mut stats.physical_bytes, stored, "store physical bytes")?;
                sub(&mut stats.condemned_bytes, stored, "condemned bytes")?;
                out.chunks += 1;
                out.bytes += stored;
            }
            // Revived since (its entry would be gone), or a stale entry.
            _ => tracing::warn!(chunk = %id, "condemned entry matches no condemned chunk; dropped"),
        }
    }
    for (pack, bytes) in dead {
        add_dead(txn, stats, pack, bytes)?;
    }
    Ok(out)
}

fn add_dead(txn: &mut Txn<'_>, stats: &mut Stats, pack: u64, bytes: u64) -> Result<()> {
    let k = rec::dead_key(pack);
    let now = txn.get(Cf::CatalogIdx, &k)?.map_or(Ok(0), |v| be_u64(&v))?;
    txn.put(Cf::CatalogIdx, k, (now + bytes).to_be_bytes().to_vec());
    stats.dead_bytes += bytes;
    Ok(())
}

/// Committer step 2: switches the index to the copies and retires the
/// pack, or abandons the relocation if the pack gained a live record.
/// `pending_in_pack` says whether an uncommitted upload holds a record of
/// the pack. Returns whether the pack was retired; `need` collects the
/// copies to fsync before the batch is written.
pub fn relocate(
    txn: &mut Txn<'_>,
    stats: &mut Stats,
    now: i64,
    r: &Relocation,
    pending_in_pack: bool,
    mut need: impl FnMut(u64, u64),
) -> Result<bool> {
    let here = |loc: &ChunkLoc, off: u64| loc.pack == r.pack && loc.offset == off;
    let mut changed = pending_in_pack;
    for (id, off) in &r.left {
        if txn.chunk_rec(id)?.is_some_and(|c| here(&c.loc, *off)) {
            changed = true;
        }
    }
    let info = match txn.get(Cf::Packs, &r.pack.to_be_bytes())? {
        Some(v) => PackInfo::decode(&v)?,
        None => return Err(Error::corrupt(format!("compacted pack {:016x} is not indexed", r.pack))),
    };
    // Copies the index does not point at (all of them, if the relocation
    // is abandoned) are dead where they were written.
    let abandon = changed || info.state != PackState::Sealed;
    let mut wasted: BTreeMap<u64, u64> = BTreeMap::new();
    for (id, off, to) in &r.chunks {
        match txn.chunk_rec(id)? {
            Some(mut c) if !abandon && here(&c.loc, *off) => {
                c.loc = *to;
                txn.put_chunk_rec(id, &c);
                need(to.pack, to.offset + to.record_len());
            }
            _ => *wasted.entry(to.pack).or_default() += to.record_len(),
        }
    }
    for (pack, bytes) in wasted {
        add_dead(txn, stats, pack, bytes)?;
    }
    if abandon {
        return Ok(false);
    }
    for &(pack, end) in &r.others {
        need(pack, end);
    }
    let dk = rec::dead_key(r.pack);
    if let Some(v) = txn.get(Cf::CatalogIdx, &dk)? {
        sub(&mut stats.dead_bytes, be_u64(&v)?, "dead bytes")?;
        txn.delete(Cf::CatalogIdx, dk);
    }
    txn.put_pack(
        r.pack,
        &PackInfo {
            state: PackState::Retired,
            ..info
        },
    );
    txn.put(Cf::CatalogIdx, rec::retired_key(now, r.pack), Vec::new());
    Ok(true)
}

/// Committer step 3: forgets a retired pack deleted from the store.
pub fn forget(txn: &mut Txn<'_>, stats: &mut Stats, retired_key: &[u8], pack: u64) -> Result<()> {
    if let Some(v) = txn.get(Cf::Packs, &pack.to_be_bytes())? {
        let info = PackInfo::decode(&v)?;
        sub(&mut stats.packs, 1, "store packs")?;
        sub(&mut stats.sealed_pack_bytes, info.size, "sealed pack bytes")?;
        txn.delete(Cf::Packs, pack.to_be_bytes());
    }
    txn.delete(Cf::CatalogIdx, retired_key.to_vec());
    Ok(())
}

/// A pack over the compaction threshold.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub pack: u64,
    pub size: u64,
    pub dead: u64,
}

/// Sealed packs whose dead fraction reaches `threshold`, most dead first.
/// `extra` adds dead bytes a dry run expects from collection.
pub fn candidates(index: &crate::index::Index, threshold: f64, extra: &HashMap<u64, u64>) -> Result<Vec<Candidate>> {
    let mut dead: BTreeMap<u64, u64> = extra.iter().map(|(k, v)| (*k, *v)).collect();
    for kv in index.scan(Cf::CatalogIdx, b"d", Some(b"e"), false) {
        let (k, v) = kv?;
        let pack = be_u64(k.get(1..).unwrap_or_default())?;
        *dead.entry(pack).or_default() += be_u64(&v)?;
    }
    let mut out = Vec::new();
    for (pack, dead) in dead {
        let Some(info) = index.pack(pack)? else { continue };
        if info.state != PackState::Sealed || dead == 0 {
            continue;
        }
        if dead as f64 >= threshold * info.size as f64 {
            out.push(Candidate {
                pack,
                size: info.size,
                dead,
            });
        }
    }
    out.sort_by(|a, b| (b.dead as f64 / b.size as f64).total_cmp(&(a.dead as f64 / a.size as f64)));
    Ok(out)
}

/// Which records of a sealed pack are live now: chunks the index points at
/// (condemned ones too: they may be revived), manifests of stored blobs,
/// and references (decided once their record is read).
pub fn live_entries(index: &crate::index::Index, pack: u64, entries: Vec<Entry>) -> Result<(Vec<Entry>, Located)> {
    let mut live = Vec::new();
    let mut left = Vec::new();
    for e in entries {
        let keep = match e.kind {
            Kind::Chunk => index
                .chunk(&e.id)?
                .is_some_and(|l| l.pack == pack && l.offset == e.offset),
            Kind::Blob => index.has_blob(&e.id)?,
            Kind::Ref => true,
        };
        match (keep, e.kind) {
            (true, _) => live.push(e),
            (false, Kind::Chunk) => left.push((e.id, e.offset)),
            (false, _) => {}
        }
    }
    Ok((live, left))
}

/// Groups live records into reads of adjacent records, at most
/// [`COPY_READ`] bytes each (a single larger record is read alone).
pub fn read_runs(live: &[Entry]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=live.len() {
        let split = i == live.len() || {
            let (first, prev, next) = (&live[start], &live[i - 1], &live[i]);
            next.offset != prev.offset + prev.record_len() || next.offset + next.record_len() - first.offset > COPY_READ
        };
        if split {
            if start < i {
                runs.push(start..i);
            }
            start = i;
        }
    }
    runs
}

/// What compacting one pack copied.
#[derive(Clone, Copy, Debug, Default)]
pub struct Copied {
    pub bytes: u64,
    pub records: u64,
}

impl crate::Engine {
    /// One collection and compaction run (one at a time; a second caller
    /// waits for the first to finish).
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
            for kv in self.index.scan(Cf::CatalogIdx, b"k", Some(&to), false) {
                let (k, _) = kv?;
                let (at, id) = rec::parse_condemned_key(&k)?;
                if let Some(c) = self
                    .index
                    .chunk_rec(&id)?
                    .filter(|c| c.refs == 0 && c.condemned_ms == at)
                {
                    rep.chunks_collected += 1;
                    rep.bytes_collected += c.loc.stored_len as u64;
                    *expected_dead.entry(c.loc.pack).or_default() += c.loc.record_len();
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
        for c in candidates(&self.index, opts.compact_threshold, &expected_dead)? {
            if rep.bytes_copied >= opts.max_repack_bytes || self.stop.is_cancelled() {
                rep.packs_deferred += 1;
                continue;
            }
            if opts.dry_run {
                rep.packs_compacted += 1;
                rep.bytes_copied += c.size.saturating_sub(c.dead);
                continue;
            }
            match self.compact(c.pack).await {
                Ok(Some(copied)) => {
                    rep.packs_compacted += 1;
                    rep.bytes_copied += copied.bytes;
                    rep.records_copied += copied.records;
                }
                Ok(None) => rep.packs_deferred += 1,
                Err(e) => {
                    tracing::error!(pack = %format!("{:016x}", c.pack), error = %e, "compaction failed; pack kept");
                    rep.packs_deferred += 1;
                }
            }
        }
        // Retired packs whose delay is over (after this run's retirements,
        // so a zero delay deletes them in the same run).
        let due = crate::now_ms().saturating_sub(opts.pack_delete_delay.as_millis() as i64);
        let to = rec::retired_key(due.saturating_add(1), 0);
        let retired: Vec<_> = self
            .index
            .scan(Cf::CatalogIdx, b"x", Some(&to), false)
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
        let stats = self.index.stats()?;
        rep.bytes_condemned = stats
            .condemned_bytes
            .saturating_sub(if opts.dry_run { rep.bytes_collected } else { 0 });
        rep.chunks_condemned = self.index.scan(Cf::CatalogIdx, b"k", Some(b"l"), false).count() as u64
            - if opts.dry_run { rep.chunks_collected } else { 0 };
        rep.dead_bytes = stats.dead_bytes;
        rep.elapsed_ms = started.elapsed().as_millis() as u64;
        if !opts.dry_run {
            let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            p.gc_runs += 1;
            p.gc_bytes_collected += rep.bytes_collected;
            p.gc_bytes_copied += rep.bytes_copied;
            p.gc_packs_deleted += rep.packs_deleted;
            p.gc_bytes_deleted += rep.bytes_deleted;
            p.gc_last_elapsed_ms = rep.elapsed_ms;
            drop(p);
            tracing::info!(?rep, "gc run");
        }
        Ok(rep)
    }

    /// Copies the live records of a sealed pack into the open pack and
    /// commits the switch. `None`: the pack changed meanwhile (kept).
    async fn compact(self: &Arc<Self>, pack: u64) -> Result<Option<Copied>> {
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
        let entries = format::decode_footer(&footer)?;
        let this = self.clone();
        let (live, left) = tokio::task::spawn_blocking(move || live_entries(&this.index, pack, entries))
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
                let (ns, _) = crate::ingest::decode_ref_record(data)?;
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
                    },
                )),
                _ => others.push((p.id, ne.offset + ne.record_len())),
            }
        }
        Ok((chunks, others))
    }

    /// Runs [`Engine::gc`] every `gc.interval` (never if zero).
    pub(crate) async fn gc_loop(self: Arc<Self>) {
        let every = self.cfg.gc.interval;
        if every.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.stop.cancelled() => return,
            }
            if let Err(e) = self.gc(GcOptions::from(&self.cfg.gc)).await {
                tracing::error!(error = %e, "scheduled gc failed");
            }
        }
    }
}
