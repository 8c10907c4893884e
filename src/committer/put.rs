//! A put's commit: the chunks it made new, the hold its manifest takes on
//! them, and the manifest and reference records appended to the open pack.

use std::collections::HashMap;

use super::CommitOutcome;
use crate::catalog::apply::Ctx;
use crate::catalog::chunks;
use crate::error::{Error, Result};
use crate::hash::{ExtraDigests, Hash};
use crate::index::{Cf, ChunkLoc, ChunkRec, PackInfo, PackState};
use crate::manifest::Manifest;
use crate::pack::Packer;
use crate::pack::format::{self, Codec, Kind};

/// What a put request carries (`CommitReq::Put`).
pub(super) struct Upload<'a> {
    pub namespace: &'a str,
    pub manifest: &'a Manifest,
    pub extras: ExtraDigests,
    pub candidates: &'a [(Hash, ChunkLoc)],
    pub publishing: bool,
}

pub(super) fn put(
    ctx: &mut Ctx<'_, '_>,
    packer: &Packer,
    syncs: &mut HashMap<u64, u64>,
    u: Upload<'_>,
) -> Result<CommitOutcome> {
    let Upload {
        namespace,
        manifest,
        extras,
        candidates,
        publishing,
    } = u;
    let mut out = CommitOutcome::default();
    let id = manifest.digests.blake3;
    if !ctx.txn.has_blob(&id)? {
        // Only a new blob brings chunks: a known blob (stored under other
        // chunk settings, say) has its own already.
        out.added_bytes = index_candidates(ctx, syncs, candidates)?;
        crate::catalog::chunks::hold(ctx.txn, ctx.stats, manifest)?;
        append_manifest(packer, syncs, manifest)?;
        out.new = true;
    }
    let lease_ms = match publishing {
        true => ctx.st.lease_ms.max(super::PUBLISH_LEASE_MS),
        false => ctx.st.lease_ms,
    };
    if let Some(r) = ctx.upload_ref(namespace, &id, manifest.size, extras, lease_ms)? {
        let rec = format::encode_ref(namespace, r.created_ms);
        let (pack, e) = packer.append(Kind::Ref, Codec::Raw, id, rec.len() as u32, &rec)?;
        need(syncs, pack.id, e.offset + e.record_len());
        ctx.stats.references += 1;
        ctx.stats.logical_bytes += manifest.size;
        out.new_to_namespace = true;
    }
    Ok(out)
}

/// The batch must sync staged pack `pack` up to `end`.
pub(super) fn need(syncs: &mut HashMap<u64, u64>, pack: u64, end: u64) {
    let e = syncs.entry(pack).or_default();
    *e = (*e).max(end);
}

/// Appends a blob's manifest record to the open pack.
pub(super) fn append_manifest(packer: &Packer, syncs: &mut HashMap<u64, u64>, m: &Manifest) -> Result<()> {
    let enc = m.encode();
    let (pack, e) = packer.append(Kind::Blob, Codec::Raw, m.digests.blake3, enc.len() as u32, &enc)?;
    need(syncs, pack.id, e.offset + e.record_len());
    Ok(())
}

/// Indexes the written chunks the index does not hold yet (unreferenced
/// until the caller holds them); returns their stored bytes.
pub(super) fn index_candidates(
    ctx: &mut Ctx<'_, '_>,
    syncs: &mut HashMap<u64, u64>,
    candidates: &[(Hash, ChunkLoc)],
) -> Result<u64> {
    let mut added = 0;
    let mut live_packs: HashMap<u64, bool> = HashMap::new();
    // Bases before the deltas on them (a base may be new in this batch).
    let mut ordered: Vec<&(Hash, ChunkLoc)> = candidates.iter().collect();
    ordered.sort_by_key(|(_, loc)| loc.delta.map_or(0, |d| d.depth));
    for (cid, loc) in ordered {
        if ctx.txn.chunk_rec(cid)?.is_some() {
            continue;
        }
        // A record in a pack compaction retired was not copied.
        let live = match live_packs.get(&loc.pack) {
            Some(&l) => l,
            None => {
                let info = ctx.txn.get(Cf::Packs, &loc.pack.to_be_bytes())?;
                let info = info.map(|v| PackInfo::decode(&v)).transpose()?;
                let l = info.is_none_or(|i| i.state != PackState::Retired);
                *live_packs.entry(loc.pack).or_insert(l)
            }
        };
        if !live {
            return Err(Error::Unavailable(format!(
                "chunk {cid} was written to a pack that was compacted before the upload finished; retry the upload"
            )));
        }
        need(syncs, loc.pack, loc.offset + loc.record_len());
        if let Some(d) = &loc.delta {
            chunks::hold_base(ctx.txn, ctx.stats, cid, d)?;
        }
        ctx.txn.put_chunk_rec(
            cid,
            &ChunkRec {
                loc: *loc,
                refs: 0,
                condemned_ms: 0,
            },
        );
        ctx.stats.chunks += 1;
        ctx.stats.physical_bytes += loc.stored_len as u64;
        added += loc.stored_len as u64;
    }
    Ok(added)
}
