//! `admin rebuild-index`: rebuilds the whole index from the packs alone.
//!
//! Staged packs are sealed and uploaded first, then every pack's footer is
//! read; blob manifests and namespace references come from their records.
//! The new index is built beside the old one and swapped in at the end, so
//! a failed rebuild leaves the old index as it was.

use std::collections::{HashMap, HashSet};

use crate::catalog::records as rec;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkLoc, Index, PackInfo, PackState, RefInfo, Stats, Txn, ref_key};
use crate::manifest::Manifest;
use crate::pack::format::{self, Kind};
use crate::pack::list_staged;
use crate::store::PackStore;

const BATCH_OPS: usize = 10_000;

#[derive(Debug, Default, serde::Serialize)]
pub struct RebuildReport {
    pub packs: u64,
    pub chunks: u64,
    pub blobs: u64,
    pub references: u64,
    /// Chunk records no blob uses (left by failed uploads); not indexed.
    pub unreferenced_chunks: u64,
    /// Chunks a manifest names that no pack holds: data already lost.
    pub missing_chunks: u64,
    /// Manifest, reference or delta chunk records that failed
    /// verification; skipped.
    pub bad_records: u64,
    /// Catalog records (packages, versions, files, audit, indexes) carried
    /// over from the old index.
    pub catalog_records: u64,
    pub old_index: Option<String>,
    /// Set when the old index was damaged and read only up to its damage:
    /// what was lost (catalog changes after that point; blobs and references
    /// come back from the packs).
    pub salvaged: Option<String>,
}

fn salvage_note(s: &crate::index::Salvage) -> String {
    let lost = match s.mark_seq {
        Some(m) if m > s.recovered_seq => format!(
            "it had acknowledged writes up to commit {m} but could be read only up to commit {}",
            s.recovered_seq
        ),
        Some(m) => format!("it could be read up to commit {} (its mark: {m})", s.recovered_seq),
        None => format!(
            "it could be read up to commit {} (it had no commit mark)",
            s.recovered_seq
        ),
    };
    format!(
        "the old index was damaged ({}); {lost}. Chunks, blobs and namespace references were rebuilt \
         from the packs; catalog changes (publishes, deletes, restores) after that point are lost, and \
         references a purge had released before it may be back until their upload lease ends",
        s.reason
    )
}

pub async fn rebuild_index(cfg: &Config) -> Result<RebuildReport> {
    cfg.validate()?;
    // The data dir's lock keeps a running daemon out, naming it; holding
    // the live index's lock too keeps us out of its staging folder.
    let _dir = crate::dirlock::DirLock::acquire(&cfg.data_dir)?;
    let live = cfg.index_dir();
    let mut report = RebuildReport::default();
    let (lock, salvaged) = match live.exists() {
        true => match Index::open(&live) {
            Ok(old) => (Some(old), false),
            // A damaged index (its log lost acknowledged writes) cannot be
            // opened for writing; read what it still has.
            Err(Error::Corrupt(reason)) => {
                tracing::warn!(%reason, "the old index is damaged; salvaging it read-only");
                let (old, s) = Index::open_salvage(&live, reason)?;
                report.salvaged = Some(salvage_note(&s));
                (Some(old), true)
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "{e} (is the daemon still running? stop it first)"
                )));
            }
        },
        false => (None, false),
    };
    let store = PackStore::open(&cfg.pack_store_url()?, &cfg.pack_store_options)?;
    let staging = cfg.staging_dir();
    if staging.exists() {
        let mut cut_guard = crate::recovery::CutGuard::new(lock.as_ref());
        for path in list_staged(&staging)? {
            // A damaged staged pack is sealed as it is: its footer lists the
            // records found on both sides of the damage.
            let pack = crate::recovery::reopen(&path, &mut cut_guard)?;
            pack.seal()?;
            store.put_file(pack.id, &path).await?;
            if path.exists() {
                std::fs::remove_file(&path)?;
            }
        }
    }

    let mut chunks: HashMap<Hash, ChunkLoc> = HashMap::new();
    // Every manifest record of each blob: a blob the optimizer switched to
    // its recipe has its raw manifest in an older record (`pick` chooses).
    let mut manifests: HashMap<Hash, Vec<Manifest>> = HashMap::new();
    let mut refs: HashMap<(String, Hash), RefInfo> = HashMap::new();
    let mut packs = Vec::new();
    for id in store.list().await? {
        let size = store
            .size(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pack {id:016x} vanished")))?;
        if size < (format::HEADER_LEN + format::TRAILER_LEN) as u64 {
            return Err(Error::corrupt(format!("pack {id:016x} is too short to be a pack")));
        }
        let trailer = store.get_range(id, size - format::TRAILER_LEN as u64..size).await?;
        let (_, footer_at) =
            format::decode_trailer(&trailer).map_err(|e| Error::corrupt(format!("pack {id:016x}: {e}")))?;
        let footer = store.get_range(id, footer_at..size).await?;
        let entries = format::decode_footer(&footer).map_err(|e| Error::corrupt(format!("pack {id:016x}: {e}")))?;
        for e in &entries {
            let mut loc = ChunkLoc {
                pack: id,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
                codec: e.codec,
                delta: None,
            };
            match e.kind {
                Kind::Chunk if e.codec == format::Codec::Delta => {
                    // A delta's base is in its record: read it, checked.
                    let rec = store.get_range(id, e.offset..e.offset + e.record_len()).await?;
                    match format::open_record(&rec, e.offset, e.kind, &e.id)
                        .and_then(|(_, data)| format::delta_of(e.codec, data))
                    {
                        Ok(d) => {
                            loc.delta = d;
                            chunks.entry(e.id).or_insert(loc);
                        }
                        Err(err) => {
                            tracing::error!(pack = %format!("{id:016x}"), offset = e.offset, error = %err, "skipping a bad delta record");
                            report.bad_records += 1;
                        }
                    }
                }
                Kind::Chunk => {
                    chunks.entry(e.id).or_insert(loc);
                }
                Kind::Blob | Kind::Ref => {
                    // A damaged or forged record is reported, not trusted.
                    let rec = store.get_range(id, e.offset..e.offset + e.record_len()).await?;
                    let parsed = format::open_record(&rec, e.offset, e.kind, &e.id).and_then(|(_, data)| {
                        if e.kind == Kind::Blob {
                            let m = Manifest::decode(data)?;
                            if m.digests.blake3 != e.id {
                                return Err(Error::corrupt("manifest of another blob"));
                            }
                            let known = manifests.entry(e.id).or_default();
                            if !known.contains(&m) {
                                known.push(m);
                            }
                        } else {
                            // Earliest creation; the latest upload starts the lease.
                            let (ns, created_ms) = format::decode_ref(data)?;
                            // Which extras a namespace asked for is kept only in
                            // the index: a reference rebuilt from the packs
                            // alone shows them all, as before they were kept.
                            let r = RefInfo {
                                created_ms,
                                lease_until_ms: created_ms,
                                files: 0,
                                extras: crate::hash::ExtraDigests::ALL,
                            };
                            refs.entry((ns, e.id))
                                .and_modify(|old| {
                                    old.created_ms = old.created_ms.min(r.created_ms);
                                    old.lease_until_ms = old.lease_until_ms.max(r.created_ms);
                                })
                                .or_insert(r);
                        }
                        Ok(())
                    });
                    if let Err(err) = parsed {
                        tracing::error!(pack = %format!("{id:016x}"), offset = e.offset, error = %err, "skipping a bad record");
                        report.bad_records += 1;
                    }
                }
            }
        }
        let created_ms = format::decode_header(&store.get_range(id, 0..format::HEADER_LEN as u64).await?)?.1;
        packs.push((
            id,
            PackInfo {
                state: PackState::Sealed,
                size,
                records: entries.len() as u32,
                created_ms,
            },
        ));
    }

    let blobs: HashMap<Hash, Manifest> = manifests.into_iter().map(|(id, ms)| (id, pick(ms, &chunks))).collect();

    let tmp = cfg.data_dir.join("index.rebuild");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    {
        let index = Index::open(&tmp)?;
        let mut stats = Stats::default();
        let mut w = Writer {
            index: &index,
            batch: index.txn(),
        };
        for (id, info) in &packs {
            w.batch.put_pack(*id, info);
            stats.packs += 1;
            stats.sealed_pack_bytes += info.size;
            w.tick()?;
        }
        let mut used: HashSet<Hash> = HashSet::new();
        for m in blobs.values() {
            w.batch.put_blob(m);
            stats.blobs += 1;
            stats.unique_bytes += m.size;
            // The manifest's chunks, and the bases of its deltas.
            let mut todo: Vec<Hash> = m.chunks.iter().map(|c| c.id).collect();
            while let Some(cid) = todo.pop() {
                if !used.insert(cid) {
                    continue;
                }
                match chunks.get(&cid) {
                    Some(loc) => {
                        let c0 = crate::index::ChunkRec {
                            loc: *loc,
                            refs: 0,
                            condemned_ms: 0,
                        };
                        w.batch.put_chunk_rec(&cid, &c0);
                        stats.chunks += 1;
                        stats.physical_bytes += loc.stored_len as u64;
                        todo.extend(loc.delta.map(|d| d.base));
                    }
                    None => {
                        tracing::error!(chunk = %cid, blob = %m.digests.blake3, "chunk is in no pack");
                        report.missing_chunks += 1;
                    }
                }
            }
            w.tick()?;
        }
        // The catalog lives only in the index: carry it over from the old
        // one, then recompute everything derived from the references.
        if let Some(old) = &lock {
            report.catalog_records = copy_catalog(old, &mut w)?;
        }
        w.flush()?;
        let lease_ms = cfg.upload_lease.as_millis() as i64;
        for ((ns, id), r) in &refs {
            let Some(m) = blobs.get(id) else {
                tracing::warn!(%ns, blob = %id, "reference to a blob with no manifest; skipped");
                continue;
            };
            let prefix = rec::blob_files_prefix(&ref_key(ns, id));
            let files = index
                .scan(Cf::CatalogIdx, &prefix, rec::prefix_end(&prefix).as_deref(), false)
                .count() as u64;
            // The old index knows renewed leases and references a purge
            // released (their pack records remain): trust it when it is there.
            let r = match &lock {
                Some(old) => match old.txn().reference(ns, id)? {
                    Some(o) => RefInfo { files, ..o },
                    // A salvaged index may have lost the reference itself:
                    // its absence proves no purge.
                    None if files == 0 && !salvaged => continue,
                    None => RefInfo {
                        lease_until_ms: r.lease_until_ms.saturating_add(lease_ms),
                        files,
                        ..*r
                    },
                },
                None => RefInfo {
                    lease_until_ms: r.lease_until_ms.saturating_add(lease_ms),
                    files,
                    ..*r
                },
            };
            w.batch.put_ref(ns, id, &r);
            stats.references += 1;
            stats.logical_bytes += m.size;
            w.tick()?;
        }
        w.batch.put_stats(&stats);
        index.commit(w.batch)?;
        // Leases, holder lists and counts, bytes per namespace, chunk
        // reference counts; blobs nobody holds are retired.
        crate::catalog::derive_all(&index)?;
        let stats = index.stats()?;
        report.packs = stats.packs;
        report.chunks = stats.chunks;
        report.blobs = stats.blobs;
        report.references = stats.references;
        report.unreferenced_chunks = chunks.keys().filter(|id| !used.contains(id)).count() as u64;
    }
    drop(lock);
    if live.exists() {
        let old = cfg.data_dir.join(format!("index.old-{}", crate::now_ms()));
        std::fs::rename(&live, &old)?;
        report.old_index = Some(old.display().to_string());
    }
    std::fs::rename(&tmp, &live)?;
    std::fs::File::open(&cfg.data_dir)?.sync_all()?;
    Ok(report)
}

struct Writer<'a> {
    index: &'a Index,
    batch: Txn<'a>,
}

impl Writer<'_> {
    fn tick(&mut self) -> Result<()> {
        if self.batch.len() >= BATCH_OPS {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        let full = std::mem::replace(&mut self.batch, self.index.txn());
        self.index.commit(full)
    }
}

/// Copies the catalog from the old index, except the entries derived from
/// the references (holders, garbage, leases, bytes per namespace).
fn copy_catalog(old: &Index, w: &mut Writer<'_>) -> Result<u64> {
    let mut n = 0;
    for cf in [Cf::Packages, Cf::Versions, Cf::Files, Cf::Audit, Cf::CatalogIdx] {
        for kv in old.scan(cf, &[], None, false) {
            let (k, v) = kv?;
            if cf == Cf::CatalogIdx
                && matches!(
                    k.first().copied(),
                    Some(
                        rec::tag::HOLDERS | rec::tag::HOLDER | rec::tag::GARBAGE | rec::tag::LEASE | rec::tag::NS_BYTES
                    )
                )
            {
                continue;
            }
            w.batch.put(cf, k.to_vec(), v.to_vec());
            n += 1;
            w.tick()?;
        }
    }
    if let Some(v) = old.get(Cf::Meta, rec::IDS_KEY)? {
        w.batch.put(Cf::Meta, rec::IDS_KEY, v);
    }
    Ok(n)
}

/// Of a blob's manifest records, the one to index: a recipe manifest whose
/// chunks are all in the packs (the optimizer's switch, which also released
/// the raw chunks), else a raw one whose chunks are, else the first (its
/// missing chunks are reported).
fn pick(mut ms: Vec<Manifest>, chunks: &HashMap<Hash, ChunkLoc>) -> Manifest {
    let whole = |m: &Manifest| m.chunks.iter().all(|c| with_bases(&c.id, chunks));
    let best = ms
        .iter()
        .position(|m| m.recipe.is_some() && whole(m))
        .or_else(|| ms.iter().position(whole))
        .unwrap_or(0);
    ms.swap_remove(best)
}

/// Whether a chunk and the chain of bases its delta needs are in the packs.
fn with_bases(id: &Hash, chunks: &HashMap<Hash, ChunkLoc>) -> bool {
    let mut at = *id;
    for _ in 0..=format::MAX_DELTA_DEPTH {
        match chunks.get(&at) {
            None => return false,
            Some(loc) => match loc.delta {
                None => return true,
                Some(d) => at = d.base,
            },
        }
    }
    false
}
