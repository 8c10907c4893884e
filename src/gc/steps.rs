//! The GC steps the committer runs on its `Txn`, in order with every put
//! and publish: collect condemned chunks, switch a compacted pack's records
//! to their copies, forget a deleted pack.

use std::collections::BTreeMap;

use super::{Collected, Relocation};
use crate::catalog::chunks::{release_base, sub};
use crate::catalog::records::{self as rec, be_u64};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkLoc, PackInfo, PackState, Stats, Txn};

/// Committer step 1: collects up to `budget` condemned chunks condemned at
/// or before `cutoff_ms`. Scans committed state: runs alone in its batch.
pub fn collect(txn: &mut Txn<'_>, stats: &mut Stats, cutoff_ms: i64, budget: usize) -> Result<Collected> {
    let to = rec::condemned_key(cutoff_ms.saturating_add(1), &Hash([0; 32]));
    let due: Vec<_> = txn
        .index()
        .scan(Cf::CatalogIdx, &[rec::tag::CONDEMNED], Some(&to), false)
        .take(budget + 1)
        .collect::<Result<_>>()?;
    let mut out = Collected {
        more: due.len() > budget,
        ..Default::default()
    };
    let mut dead: BTreeMap<u64, u64> = BTreeMap::new();
    let mut todo: Vec<Vec<u8>> = due.into_iter().take(budget).map(|(k, _)| k.to_vec()).collect();
    todo.reverse();
    while let Some(k) = todo.pop() {
        let (at, id) = rec::parse_condemned_key(&k)?;
        txn.delete(Cf::CatalogIdx, k);
        match txn.chunk_rec(&id)? {
            Some(c) if c.refs == 0 && c.condemned_ms == at => {
                txn.delete(Cf::Chunks, id.0);
                // A delta's base it alone held goes with it, in this pass
                // (condemned as of the delta's time).
                if let Some(d) = &c.loc.delta
                    && release_base(txn, stats, at, d)?
                {
                    todo.push(rec::condemned_key(at.max(1), &d.base));
                }
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
