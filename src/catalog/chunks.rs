//! Chunk reference counts: how many blob manifests use each chunk, plus
//! how many delta chunks have it as their base.
//!
//! A blob's chunks are held from the commit that stores its manifest until
//! the commit that releases its last namespace reference (a purge or an
//! ended lease). Then the manifest is deleted and each chunk's count drops
//! in the same batch; a chunk at zero is *condemned* (`k` entry, with the
//! time) and stays readable and reusable: a later put that uses it revives
//! it. Only the collector (`crate::gc`) turns a condemned chunk into dead
//! bytes, after a grace period, and only through the committer.

use std::collections::HashMap;

use super::records as rec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Stats, Txn};
use crate::manifest::Manifest;
use crate::pack::format::DeltaHeader;

/// Occurrences of each distinct chunk in a manifest.
pub fn occurrences(m: &Manifest) -> HashMap<Hash, u64> {
    let mut n: HashMap<Hash, u64> = HashMap::with_capacity(m.chunks.len());
    for c in &m.chunks {
        *n.entry(c.id).or_default() += 1;
    }
    n
}

/// Holds every chunk of a blob whose manifest is being stored. A chunk
/// that is no longer indexed (collected while the upload ran) fails the
/// request: the client retries and the chunk is written again.
pub fn hold(txn: &mut Txn<'_>, stats: &mut Stats, m: &Manifest) -> Result<()> {
    for (id, n) in occurrences(m) {
        let mut c = txn.chunk_rec(&id)?.ok_or_else(|| {
            Error::Unavailable(format!(
                "chunk {id} of blob {} was collected while it was being uploaded; retry the upload",
                m.digests.blake3
            ))
        })?;
        if c.refs == 0 {
            revive(txn, stats, &id, &mut c)?;
        }
        c.refs += n;
        txn.put_chunk_rec(&id, &c);
    }
    stats.blobs += 1;
    stats.unique_bytes += m.size;
    txn.put_blob(m);
    Ok(())
}

fn revive(txn: &mut Txn<'_>, stats: &mut Stats, id: &Hash, c: &mut ChunkRec) -> Result<()> {
    if c.condemned_ms != 0 {
        txn.delete(Cf::CatalogIdx, rec::condemned_key(c.condemned_ms, id));
        sub(&mut stats.condemned_bytes, c.loc.stored_len as u64, "condemned bytes")?;
        c.condemned_ms = 0;
    }
    Ok(())
}

/// Deletes a blob no namespace references any more and lets go of its
/// chunks; chunks nothing else uses are condemned as of `now`.
pub fn release(txn: &mut Txn<'_>, stats: &mut Stats, now: i64, m: &Manifest) -> Result<()> {
    for (id, n) in occurrences(m) {
        let mut c = txn
            .chunk_rec(&id)?
            .ok_or_else(|| Error::corrupt(format!("chunk {id} of blob {} is not indexed", m.digests.blake3)))?;
        c.refs = c.refs.checked_sub(n).ok_or_else(|| {
            Error::corrupt(format!(
                "chunk {id} is used by fewer manifests than blob {} claims",
                m.digests.blake3
            ))
        })?;
        if c.refs == 0 {
            condemn(txn, stats, now, &id, &mut c);
        }
        txn.put_chunk_rec(&id, &c);
    }
    sub(&mut stats.blobs, 1, "store blobs")?;
    sub(&mut stats.unique_bytes, m.size, "store unique bytes")?;
    txn.delete_blob(m);
    super::optimized::forget(txn, &m.digests.blake3)
}

/// Switches a stored blob from manifest `old` to `new` (the same blob:
/// its recipe): holds `new`'s chunks first, so a chunk both use is never
/// condemned, then lets go of `old`'s; stores `new`. Returns the stored
/// bytes of the chunks this condemned.
pub fn swap(txn: &mut Txn<'_>, stats: &mut Stats, now: i64, old: &Manifest, new: &Manifest) -> Result<u64> {
    for (id, n) in occurrences(new) {
        let mut c = txn.chunk_rec(&id)?.ok_or_else(|| {
            Error::Unavailable(format!(
                "chunk {id} of blob {}'s recipe was collected while it was being optimized; it is tried again",
                new.digests.blake3
            ))
        })?;
        if c.refs == 0 {
            revive(txn, stats, &id, &mut c)?;
        }
        c.refs += n;
        txn.put_chunk_rec(&id, &c);
    }
    let mut condemned = 0;
    for (id, n) in occurrences(old) {
        let mut c = txn
            .chunk_rec(&id)?
            .ok_or_else(|| Error::corrupt(format!("chunk {id} of blob {} is not indexed", old.digests.blake3)))?;
        c.refs = c.refs.checked_sub(n).ok_or_else(|| {
            Error::corrupt(format!(
                "chunk {id} is used by fewer manifests than blob {} claims",
                old.digests.blake3
            ))
        })?;
        if c.refs == 0 {
            condemn(txn, stats, now, &id, &mut c);
            condemned += c.loc.stored_len as u64;
        }
        txn.put_chunk_rec(&id, &c);
    }
    txn.put_blob(new);
    Ok(condemned)
}

/// Holds the base of a delta chunk being indexed: the base must be
/// indexed (else the optimizer tries again), at the depth the delta says.
pub fn hold_base(txn: &mut Txn<'_>, stats: &mut Stats, id: &Hash, d: &DeltaHeader) -> Result<()> {
    let mut b = txn.chunk_rec(&d.base)?.ok_or_else(|| {
        Error::Unavailable(format!(
            "the base {} of delta chunk {id} was collected meanwhile; it is tried again",
            d.base
        ))
    })?;
    let base_depth = b.loc.delta.map_or(0, |x| x.depth);
    if base_depth + 1 != d.depth {
        return Err(Error::Unavailable(format!(
            "the base {} of delta chunk {id} is at depth {base_depth}, not {}; it is tried again",
            d.base,
            d.depth - 1
        )));
    }
    if b.refs == 0 {
        revive(txn, stats, &d.base, &mut b)?;
    }
    b.refs += 1;
    txn.put_chunk_rec(&d.base, &b);
    Ok(())
}

/// Lets go of the base of a delta chunk being collected. A base nothing
/// else uses is condemned as of `at` (the delta's own condemnation, so the
/// same pass collects it); returns whether it was.
pub fn release_base(txn: &mut Txn<'_>, stats: &mut Stats, at: i64, d: &DeltaHeader) -> Result<bool> {
    let mut b = txn
        .chunk_rec(&d.base)?
        .ok_or_else(|| Error::corrupt(format!("base {} of a delta chunk is not indexed", d.base)))?;
    b.refs = b
        .refs
        .checked_sub(1)
        .ok_or_else(|| Error::corrupt(format!("base {} is held by fewer deltas than use it", d.base)))?;
    let condemned = b.refs == 0;
    if condemned {
        condemn(txn, stats, at, &d.base, &mut b);
    }
    txn.put_chunk_rec(&d.base, &b);
    Ok(condemned)
}

pub fn condemn(txn: &mut Txn<'_>, stats: &mut Stats, now: i64, id: &Hash, c: &mut ChunkRec) {
    // Times in keys are non-negative: 1 keeps "0 = not condemned" unambiguous.
    c.condemned_ms = now.max(1);
    txn.put(Cf::CatalogIdx, rec::condemned_key(c.condemned_ms, id), Vec::new());
    stats.condemned_bytes += c.loc.stored_len as u64;
}

pub(crate) fn sub(v: &mut u64, by: u64, what: &str) -> Result<()> {
    *v = v
        .checked_sub(by)
        .ok_or_else(|| Error::corrupt(format!("{what} would go below zero (run `stowage admin check`)")))?;
    Ok(())
}

/// Recounts every chunk's references from the manifests, retires blobs no
/// namespace holds (schema-2 garbage marks, or a rebuilt index) and
/// condemns unused chunks. Used by `migrate` and `rebuild-index`; runs
/// before the committer starts. Memory: one counter per chunk.
pub fn derive(index: &crate::index::Index) -> Result<()> {
    const BATCH: usize = 50_000;
    let mut stats = index.stats()?;
    let mut counts: HashMap<Hash, u64> = HashMap::new();
    let mut txn = index.txn();
    for kv in index.scan(Cf::Blobs, &[], None, false) {
        let (k, v) = kv?;
        let blob = Hash::from_slice(&k).ok_or_else(|| Error::corrupt("bad blob key"))?;
        let m = Manifest::decode(&v)?;
        if index.get(Cf::CatalogIdx, &rec::holders_key(&blob))?.is_none() {
            txn.delete(Cf::CatalogIdx, rec::garbage_key(&blob));
            txn.delete_blob(&m);
            sub(&mut stats.blobs, 1, "store blobs")?;
            sub(&mut stats.unique_bytes, m.size, "store unique bytes")?;
        } else {
            for c in &m.chunks {
                *counts.entry(c.id).or_default() += 1;
            }
        }
        if txn.len() >= BATCH {
            index.commit(std::mem::replace(&mut txn, index.txn()))?;
        }
    }
    // A delta holds its base as a manifest holds its chunks.
    for kv in index.scan(Cf::Chunks, &[], None, false) {
        let (_, v) = kv?;
        if let Some(d) = ChunkRec::decode(&v)?.loc.delta {
            *counts.entry(d.base).or_default() += 1;
        }
    }
    let now = crate::now_ms();
    stats.condemned_bytes = 0;
    for kv in index.scan(Cf::Chunks, &[], None, false) {
        let (k, v) = kv?;
        let id = Hash::from_slice(&k).ok_or_else(|| Error::corrupt("bad chunk key"))?;
        let old = ChunkRec::decode(&v)?;
        let mut c = ChunkRec {
            refs: counts.get(&id).copied().unwrap_or(0),
            ..old
        };
        if c.refs == 0 {
            // Keep the time it was condemned, if it already was.
            if old.condemned_ms == 0 {
                condemn(&mut txn, &mut stats, now, &id, &mut c);
            } else {
                stats.condemned_bytes += c.loc.stored_len as u64;
            }
        } else {
            if old.condemned_ms != 0 {
                txn.delete(Cf::CatalogIdx, rec::condemned_key(old.condemned_ms, &id));
            }
            c.condemned_ms = 0;
        }
        if c != old {
            txn.put_chunk_rec(&id, &c);
        }
        if txn.len() >= BATCH {
            index.commit(std::mem::replace(&mut txn, index.txn()))?;
        }
    }
    txn.put_stats(&stats);
    index.commit(txn)
}
