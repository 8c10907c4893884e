//! The optimizer's writes: an expanded blob's streams, each cut by the
//! chunker on its own (a stream's end is always a cut point, so a member's
//! content dedups wherever it moves), compressed in memory first so the
//! optimizer can decide whether the recipe is worth storing before any
//! byte reaches a pack.

use std::collections::HashSet;

use super::{Chunked, Ingest};
use crate::chunker::Chunker;
use crate::error::Result;
use crate::hash::Hash;
use crate::manifest::ChunkRef;
use crate::pack::format::{self, Codec};

/// An expanded blob's chunks, the new ones compressed and not yet written.
pub struct Prepared {
    pub chunks: Vec<ChunkRef>,
    /// Chunks the index does not hold: id, raw length, codec, stored bytes.
    new: Vec<(Hash, u32, Codec, Vec<u8>)>,
    /// Stored bytes of the new chunks.
    pub new_stored: u64,
    /// Stored bytes of all its distinct chunks, new or not: what the
    /// recipe costs on its own.
    pub all_stored: u64,
}

impl Prepared {
    /// Counts the chunks of `stored` as stored already (a dry run's
    /// chunks that earlier blobs of its pass would have written).
    pub fn forget_assumed(&mut self, stored: &HashSet<Hash>) {
        self.new.retain(|n| {
            let keep = !stored.contains(&n.0);
            if !keep {
                self.new_stored -= n.3.len() as u64;
            }
            keep
        });
    }
}

impl Ingest {
    /// Cuts and hashes each stream, and compresses the chunks the index
    /// does not hold at `zstd_level`. Writes nothing.
    pub fn prepare_streams<'a>(&self, streams: impl Iterator<Item = &'a [u8]>, zstd_level: i32) -> Result<Prepared> {
        let mut p = Prepared {
            chunks: Vec::new(),
            new: Vec::new(),
            new_stored: 0,
            all_stored: 0,
        };
        let mut seen = HashSet::new();
        for s in streams {
            let mut chunker = Chunker::new(self.params)?;
            let mut emit = |raw: &[u8]| -> Result<()> {
                let id = Hash::of(raw);
                p.chunks.push(ChunkRef {
                    id,
                    len: raw.len() as u32,
                });
                if !seen.insert(id) {
                    return Ok(());
                }
                if let Some(loc) = self
                    .pending
                    .get(&id)
                    .map_or_else(|| self.index.chunk(&id), |l| Ok(Some(l)))?
                {
                    p.all_stored += loc.stored_len as u64;
                    return Ok(());
                }
                let (codec, z) = format::compress(raw, zstd_level)?;
                let stored = z.unwrap_or_else(|| raw.to_vec());
                p.new_stored += stored.len() as u64;
                p.all_stored += stored.len() as u64;
                p.new.push((id, raw.len() as u32, codec, stored));
                Ok(())
            };
            chunker.push(s, &mut emit)?;
            chunker.finish(&mut emit)?;
        }
        Ok(p)
    }

    /// Appends the prepared chunks to the open pack (those another writer
    /// has not written meanwhile). The result goes to the commit; dropping
    /// it releases the chunks to other writers.
    pub fn write_prepared(&self, p: Prepared) -> Result<Chunked> {
        let mut out = Chunked::default();
        out.pending = Some(self.pending.clone());
        let new: HashSet<Hash> = p.new.iter().map(|n| n.0).collect();
        // Chunks found in the index when prepared may be condemned by the
        // commit's time: the commit fails then and the optimizer retries.
        for c in &p.chunks {
            if !new.contains(&c.id)
                && out.seen.insert(c.id)
                && let Some(loc) = self.pending.get(&c.id)
            {
                out.candidates.push((c.id, loc));
            }
        }
        for (id, raw_len, codec, stored) in p.new {
            if !out.seen.insert(id) {
                continue;
            }
            if let Some(loc) = self.pending.get(&id) {
                out.candidates.push((id, loc));
                continue;
            }
            if self.index.chunk(&id)?.is_some() {
                continue;
            }
            self.append_chunk(id, raw_len, codec, &stored, &mut out)?;
        }
        out.chunks = p.chunks;
        Ok(out)
    }
}
