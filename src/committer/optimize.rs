//! The optimizer's commit: a stored blob switches to its recipe manifest
//! in one batch, alone in it (it reads the blob's usage edges from
//! committed state), or is marked as looked at and kept raw.
//!
//! The switch happens only if the blob still has the manifest the
//! optimizer read (a blob released meanwhile, or already switched, is
//! left alone): the recipe's new chunks are indexed, its chunks held and
//! the old ones released (a chunk both use is never condemned), every
//! package group using the blob moves from the old chunks to the new,
//! and the recipe manifest is appended to the open pack, which is synced
//! before the batch is written. The sketches of its new chunks are
//! indexed with it (a delta's base was held when its chunk was indexed). The raw chunks nothing else uses are
//! condemned as of now and collected by GC after its grace period.

use std::collections::HashMap;

use super::put::{append_manifest, index_candidates};
use super::{CommitOutcome, NewChunks};
use crate::catalog::apply::Ctx;
use crate::catalog::optimized::{self, Outcome};
use crate::catalog::records as rec;
use crate::catalog::{chunks, usage};
use crate::error::Result;
use crate::index::Cf;
use crate::manifest::Manifest;
use crate::pack::Packer;

pub(super) fn optimize(
    ctx: &mut Ctx<'_, '_>,
    packer: &Packer,
    syncs: &mut HashMap<u64, u64>,
    old: &[u8],
    recipe: Option<&Manifest>,
    outcome: &Outcome,
    chunks: &NewChunks,
) -> Result<CommitOutcome> {
    let mut out = CommitOutcome::default();
    let old_m = Manifest::decode(old)?;
    let id = old_m.digests.blake3;
    if ctx.txn.get(Cf::Blobs, &id.0)?.as_deref() != Some(old) {
        // Released, or changed by another pass: nothing to do.
        return Ok(out);
    }
    let Some(new) = recipe else {
        optimized::record(ctx.txn, &id, outcome)?;
        return Ok(out);
    };
    debug_assert_eq!(new.digests, old_m.digests);
    out.added_bytes = index_candidates(ctx, syncs, &chunks.candidates)?;
    out.released_bytes = chunks::swap(ctx.txn, ctx.stats, ctx.now, &old_m, new)?;
    let mut d = usage::Deltas::default();
    usage::blob_chunks_change(ctx.txn, &mut d, &id, &old_m, new)?;
    d.write(ctx.txn)?;
    let o = Outcome {
        added_bytes: out.added_bytes,
        released_bytes: out.released_bytes,
        ..*outcome
    };
    optimized::record(ctx.txn, &id, &o)?;
    for (chunk, sketch) in &chunks.sketches {
        for f in sketch.0 {
            ctx.txn.put(Cf::CatalogIdx, rec::sketch_key(f, chunk), Vec::new());
        }
    }
    append_manifest(packer, syncs, new)?;
    out.new = true;
    Ok(out)
}
