//! The optimizer's writes: an expanded blob's streams, each cut by the
//! chunker on its own (a stream's end is always a cut point, so a member's
//! content dedups wherever it moves), compressed in memory first so the
//! optimizer can decide whether the recipe is worth storing before any
//! byte reaches a pack.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use super::{Chunked, Ingest};
use crate::catalog::records as rec;
use crate::chunker::Chunker;
use crate::delta::{self, Sketch};
use crate::error::Result;
use crate::hash::Hash;
use crate::index::Cf;
use crate::manifest::ChunkRef;
use crate::pack::format::{self, Codec, DeltaHeader};

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
    /// New chunks stored as deltas, their stored bytes, and how many
    /// fewer than compressed alone.
    pub deltas: u64,
    pub delta_stored: u64,
    pub delta_saved: u64,
    /// The sketches of the new chunks, to index with them.
    pub sketches: Vec<(Hash, Sketch)>,
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

/// Where deltas find their bases: how deep a chain may get, the verified
/// raw bytes of a stored chunk, and the chunks of a reference blob (the
/// same package's nearest optimized version, `catalog::kin`) in their
/// expanded-space order.
pub struct Bases<'a> {
    pub max_depth: u8,
    pub read: &'a dyn Fn(&Hash) -> Result<Bytes>,
    pub reference: &'a [Hash],
}

/// Walks the reference blob's chunks beside the new blob's: after a chunk
/// the reference also has (or a delta on one of its chunks), the
/// reference's next chunk is the likeliest base of the new blob's next
/// chunk, however much it changed (a rebuilt library changes every chunk a
/// little, past what sketches find).
struct Beside {
    next: HashMap<Hash, Hash>,
    /// The reference chunk in line with the next new chunk.
    expect: Option<Hash>,
}

impl Beside {
    fn new(reference: &[Hash]) -> Self {
        let mut next = HashMap::with_capacity(reference.len());
        for w in reference.windows(2) {
            next.entry(w[0]).or_insert(w[1]);
        }
        Beside {
            next,
            expect: reference.first().copied(),
        }
    }

    /// A chunk went by that matched `id` (itself when stored already, or
    /// its delta's base): the next one is in line with the reference chunk
    /// after `id`, or, when the reference does not have `id`, with the one
    /// after the chunk that was in line.
    fn passed(&mut self, id: Option<Hash>) {
        let after = |h: Option<Hash>| h.and_then(|h| self.next.get(&h).copied());
        self.expect = after(id).or_else(|| after(self.expect));
    }
}

/// A delta is kept only when it stores at most this share of the chunk
/// compressed alone (clearly smaller: a delta costs a read of its base).
const DELTA_KEEP: f64 = 0.9;
/// Candidates looked at per super-feature.
const CANDIDATES: usize = 4;
/// New chunks of one blob kept in memory as bases for its later chunks.
const LOCAL_BASES: usize = 64 << 20;

/// The new chunks of one preparation, as bases for its later chunks.
#[derive(Default)]
struct Local {
    chunks: HashMap<Hash, (Vec<u8>, u8)>,
    by_feature: HashMap<u64, Vec<Hash>>,
    bytes: usize,
}

impl Ingest {
    /// Cuts and hashes each stream, and compresses the chunks the index
    /// does not hold at `zstd_level`; with `bases`, a new chunk whose sketch
    /// finds a similar stored chunk (or an earlier new one) is stored as a
    /// delta on it when that is clearly smaller. Writes nothing.
    pub fn prepare_streams<'a>(
        &self,
        streams: impl Iterator<Item = &'a [u8]>,
        zstd_level: i32,
        bases: Option<&Bases<'_>>,
    ) -> Result<Prepared> {
        let mut p = Prepared {
            chunks: Vec::new(),
            new: Vec::new(),
            new_stored: 0,
            all_stored: 0,
            deltas: 0,
            delta_stored: 0,
            delta_saved: 0,
            sketches: Vec::new(),
        };
        let mut seen = HashSet::new();
        let mut local = Local::default();
        let mut beside = Beside::new(bases.map_or(&[], |b| b.reference));
        for s in streams {
            let mut chunker = Chunker::new(self.params)?;
            let mut emit = |raw: &[u8]| -> Result<()> {
                let id = Hash::of(raw);
                p.chunks.push(ChunkRef {
                    id,
                    len: raw.len() as u32,
                });
                if !seen.insert(id) {
                    beside.passed(Some(id));
                    return Ok(());
                }
                if let Some(loc) = self
                    .pending
                    .get(&id)
                    .map_or_else(|| self.index.chunk(&id), |l| Ok(Some(l)))?
                {
                    beside.passed(Some(id));
                    p.all_stored += loc.stored_len as u64;
                    return Ok(());
                }
                let (mut codec, z) = format::compress(raw, zstd_level)?;
                let mut stored = z.unwrap_or_else(|| raw.to_vec());
                let in_line = beside.expect;
                let mut on = None;
                if let (Some(b), Some(sketch)) = (bases, Sketch::of(raw)) {
                    let mut depth = 0;
                    if let Some((base, base_depth, d)) =
                        self.delta_on_base(raw, &sketch, b, &local, in_line, zstd_level)?
                        && (d.len() + DeltaHeader::LEN) as f64 <= stored.len() as f64 * DELTA_KEEP
                    {
                        on = Some(base);
                        depth = base_depth + 1;
                        let alone = stored.len();
                        stored = DeltaHeader { base, depth }.stored(&d);
                        codec = Codec::Delta;
                        p.deltas += 1;
                        p.delta_stored += stored.len() as u64;
                        p.delta_saved += (alone - stored.len()) as u64;
                    }
                    p.sketches.push((id, sketch));
                    if local.bytes + raw.len() <= LOCAL_BASES {
                        local.bytes += raw.len();
                        local.chunks.insert(id, (raw.to_vec(), depth));
                        for f in sketch.0 {
                            local.by_feature.entry(f).or_default().push(id);
                        }
                    }
                }
                beside.passed(on);
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

    /// The best base for `raw` within the depth bound, its depth, and
    /// `raw`'s delta on it: of the chunk it resembles most (among stored
    /// chunks with a shared super-feature and the new chunks of this
    /// preparation) and the reference chunk `in_line` with it, the one
    /// whose delta is smaller.
    fn delta_on_base(
        &self,
        raw: &[u8],
        sketch: &Sketch,
        bases: &Bases<'_>,
        local: &Local,
        in_line: Option<Hash>,
        level: i32,
    ) -> Result<Option<(Hash, u8, Vec<u8>)>> {
        let by_sketch = self.resembling(raw, sketch, bases, local)?;
        let beside = match in_line.filter(|id| by_sketch.is_none_or(|(b, _)| b != *id)) {
            Some(id) => match local.chunks.get(&id) {
                Some((_, depth)) => Some((id, *depth)),
                None => self
                    .index
                    .chunk_rec(&id)?
                    .map(|c| (id, c.loc.delta.map_or(0, |d| d.depth))),
            },
            None => None,
        };
        let mut best: Option<(Hash, u8, Vec<u8>)> = None;
        for (base, depth) in by_sketch.into_iter().chain(beside) {
            if depth >= bases.max_depth {
                continue;
            }
            let bytes = match local.chunks.get(&base) {
                Some((b, _)) => Bytes::copy_from_slice(b),
                None => (bases.read)(&base)?,
            };
            let d = delta::encode(&bytes, raw, level)?;
            if best.as_ref().is_none_or(|(_, _, b)| d.len() < b.len()) {
                best = Some((base, depth, d));
            }
        }
        Ok(best)
    }

    /// The chunk `raw` resembles most among stored chunks with a shared
    /// super-feature and the new chunks of this preparation, within the
    /// depth bound, and its depth.
    fn resembling(&self, raw: &[u8], sketch: &Sketch, bases: &Bases<'_>, local: &Local) -> Result<Option<(Hash, u8)>> {
        // Candidate -> (shared super-features, depth, length).
        let mut found: BTreeMap<Hash, (usize, u8, usize)> = BTreeMap::new();
        for f in sketch.0 {
            for id in local.by_feature.get(&f).into_iter().flatten() {
                let (bytes, depth) = &local.chunks[id];
                found.entry(*id).or_insert((0, *depth, bytes.len())).0 += 1;
            }
            let prefix = rec::sketch_prefix(f);
            let end = rec::prefix_end(&prefix);
            for kv in self
                .index
                .scan(Cf::CatalogIdx, &prefix, end.as_deref(), false)
                .take(CANDIDATES)
            {
                let (k, _) = kv?;
                let Some(id) = k.get(prefix.len()..).and_then(Hash::from_slice) else {
                    continue;
                };
                if let Some(e) = found.get_mut(&id) {
                    e.0 += 1;
                } else if let Some(c) = self.index.chunk_rec(&id)? {
                    found.insert(id, (1, c.loc.delta.map_or(0, |d| d.depth), c.loc.raw_len as usize));
                }
            }
        }
        let usable = found
            .iter()
            .filter(|(_, (_, depth, _))| *depth < bases.max_depth)
            .map(|(id, &(shared, _, len))| (*id, shared, len));
        Ok(delta::choose_base(raw.len(), usable).map(|base| (base, found[&base].1)))
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
