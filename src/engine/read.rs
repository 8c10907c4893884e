//! The read path: Stat, FindMissing and Get. A Get resolves the manifest's
//! chunks, groups adjacent records into bounded extents, reads ahead a few,
//! verifies every record (CRC and BLAKE3) before any byte of it is sent, and
//! follows chunks that compaction moved during the read.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use tokio::sync::mpsc;

use super::Engine;
use crate::catalog::model::validate_namespace;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{ChunkLoc, PackState, RefInfo};
use crate::manifest::Manifest;
use crate::pack::format::{self, Codec, Kind};

/// Largest read issued for a run of adjacent records.
const MAX_EXTENT: u64 = 8 << 20;
/// Extents read ahead of the one being sent.
const READ_AHEAD: usize = 4;
/// Largest data frame a Get sends: one chunk at most.
pub const GET_FRAME: usize = crate::chunker::MAX_CHUNK;

impl Engine {
    /// The manifest of a blob the namespace stored, with its reference; of
    /// the extra digests, only those the namespace asked for.
    pub fn stat(&self, ns: &str, id: &Hash) -> Result<(Manifest, RefInfo)> {
        validate_namespace(ns)?;
        let not_found = || Error::NotFound(format!("blob {id} in namespace {ns}"));
        let r = self.index.reference(ns, id)?.ok_or_else(not_found)?;
        let mut m = self
            .index
            .blob(id)?
            .ok_or_else(|| Error::corrupt(format!("blob {id} is referenced but has no manifest")))?;
        m.digests = m.digests.only(r.extras);
        Ok((m, r))
    }

    pub fn find_missing(&self, ns: &str, ids: &[Hash]) -> Result<Vec<Hash>> {
        validate_namespace(ns)?;
        let mut missing = Vec::new();
        for id in ids {
            if self.index.reference(ns, id)?.is_none() {
                missing.push(*id);
            }
        }
        Ok(missing)
    }

    /// Streams `[offset, offset+length)` of a blob, verifying every chunk.
    /// Returns the blob size and the stream; a failed check ends the stream
    /// with `Error::Corrupt` before any byte of that chunk is sent.
    pub fn get(
        self: &Arc<Self>,
        ns: &str,
        id: &Hash,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(u64, mpsc::Receiver<Result<Bytes>>)> {
        let (m, _) = self.stat(ns, id)?;
        if offset > m.size {
            return Err(Error::OutOfRange(format!(
                "offset {offset} is past the end of a {}-byte blob",
                m.size
            )));
        }
        let end = match length {
            Some(l) => offset.checked_add(l).filter(|&e| e <= m.size).ok_or_else(|| {
                Error::OutOfRange(format!("range {offset}+{l} is past the end of a {}-byte blob", m.size))
            })?,
            None => m.size,
        };
        let size = m.size;
        let rx = match m.recipe.is_some() {
            true => self.recreate(m, offset, end),
            false => self.read_chunks(&m, offset, end)?,
        };
        Ok((size, rx))
    }

    /// Streams `[offset, end)` of the bytes `m`'s chunks hold, verified:
    /// a version-1 blob's bytes, or a recipe manifest's expanded space.
    pub(super) fn read_chunks(
        self: &Arc<Self>,
        m: &Manifest,
        offset: u64,
        end: u64,
    ) -> Result<mpsc::Receiver<Result<Bytes>>> {
        // Chunks overlapping the range, with the slice of each to send.
        let mut parts = Vec::new();
        let mut pos = 0u64;
        for c in &m.chunks {
            let (s, e) = (pos, pos + c.len as u64);
            pos = e;
            if e <= offset || s >= end {
                continue;
            }
            parts.push((c.id, (offset.max(s) - s) as usize, (end.min(e) - s) as usize));
        }
        let extents = self.extents(&m.digests.blake3, parts)?;
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            let mut reads = futures::stream::iter(extents)
                .map(|x| this.read_extent(x))
                .buffered(READ_AHEAD);
            while let Some(r) = reads.next().await {
                match r {
                    Ok(pieces) => {
                        for p in pieces {
                            if tx.send(Ok(p)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "read failed verification");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Groups chunk slices `(id, from, to)` of `blob` into reads of
    /// adjacent records, bounded in stored and in decoded bytes.
    pub(super) fn extents(&self, blob: &Hash, parts: Vec<(Hash, usize, usize)>) -> Result<Vec<Extent>> {
        let ids: Vec<Hash> = parts.iter().map(|p| p.0).collect();
        let locs = self.index.chunks(&ids)?;
        let mut extents: Vec<Extent> = Vec::new();
        for ((id, from, to), loc) in parts.into_iter().zip(locs) {
            let loc = loc.ok_or_else(|| Error::corrupt(format!("chunk {id} of blob {blob} has no index entry")))?;
            let part = Part { id, loc, from, to };
            match extents.last_mut() {
                // Bounded in stored and in decoded bytes: compressible
                // chunks must not make one extent inflate to gigabytes.
                Some(x)
                    if x.pack == loc.pack
                        && x.end == loc.offset
                        && x.end - x.start < MAX_EXTENT
                        && x.raw < MAX_EXTENT =>
                {
                    x.end += loc.record_len();
                    x.raw += loc.raw_len as u64;
                    x.parts.push(part);
                }
                _ => extents.push(Extent {
                    pack: loc.pack,
                    start: loc.offset,
                    end: loc.offset + loc.record_len(),
                    raw: loc.raw_len as u64,
                    parts: vec![part],
                }),
            }
        }
        Ok(extents)
    }

    /// Reads a run of adjacent records and returns the verified slices. If
    /// compaction moved them meanwhile (their pack is retired or gone), each
    /// chunk is looked up again and read where it is now.
    pub(super) async fn read_extent(self: &Arc<Self>, x: Extent) -> Result<Vec<Bytes>> {
        self.read_extent_hops(x, format::MAX_DELTA_DEPTH).await
    }

    /// [`Self::read_extent`], following delta chains at most `hops` deep.
    fn read_extent_hops(self: &Arc<Self>, x: Extent, hops: u8) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            let pack = x.pack;
            let parts: Vec<(Hash, usize, usize)> = x.parts.iter().map(|p| (p.id, p.from, p.to)).collect();
            match self.read_extent_at(x, hops).await {
                Err(e) if !self.index.pack(pack)?.is_some_and(|i| i.state != PackState::Retired) => {
                    tracing::debug!(pack = %format!("{pack:016x}"), error = %e, "pack was compacted during a read; following the move");
                    let mut out = Vec::with_capacity(parts.len());
                    for (id, from, to) in parts {
                        let loc = self
                            .index
                            .chunk(&id)?
                            .ok_or_else(|| Error::NotFound(format!("chunk {id} was collected during the read")))?;
                        out.extend(self.read_extent_at(Extent::one(id, loc, from, to), hops).await?);
                    }
                    Ok(out)
                }
                r => r,
            }
        }
        .boxed()
    }

    /// The verified raw bytes of one chunk, its delta chain followed at
    /// most `hops` deep.
    pub(super) async fn chunk_bytes(self: &Arc<Self>, id: Hash, hops: u8) -> Result<Bytes> {
        let loc = self
            .index
            .chunk(&id)?
            .ok_or_else(|| Error::corrupt(format!("chunk {id}, the base of a delta, has no index entry")))?;
        let mut v = self
            .read_extent_hops(Extent::one(id, loc, 0, loc.raw_len as usize), hops)
            .await?;
        v.pop()
            .ok_or_else(|| Error::Internal("a one-chunk read returned nothing".into()))
    }

    async fn read_extent_at(self: &Arc<Self>, x: Extent, hops: u8) -> Result<Vec<Bytes>> {
        let len = x.end - x.start;
        let bytes = match self.packer.staged(x.pack) {
            Some(p) => tokio::task::spawn_blocking(move || p.read_at(x.start, len).map(Bytes::from))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??,
            None => self.store.get_range(x.pack, x.start..x.end).await?,
        };
        let decoded = tokio::task::spawn_blocking(move || {
            x.parts
                .iter()
                .map(|p| {
                    let at = (p.loc.offset - x.start) as usize;
                    let rec = bytes.slice(at..at + p.loc.record_len() as usize);
                    let (e, _) = format::open_record(&rec, p.loc.offset, Kind::Chunk, &p.id)
                        .map_err(|e| Error::corrupt(format!("pack {:016x}: {e}", x.pack)))?;
                    let stored = rec.slice(format::RECORD_HEADER_LEN..);
                    Ok(match e.codec {
                        Codec::Delta => Decoded::Delta(e, stored, p.from, p.to),
                        _ => Decoded::Ready(format::decode_chunk(&e, stored)?.slice(p.from..p.to)),
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let mut out = Vec::with_capacity(decoded.len());
        for d in decoded {
            out.push(match d {
                Decoded::Ready(b) => b,
                Decoded::Delta(e, stored, from, to) => {
                    let (h, _) = format::DeltaHeader::split(&stored)?;
                    let hops = hops
                        .checked_sub(1)
                        .ok_or_else(|| Error::corrupt(format!("chunk {}: its chain of deltas is too long", e.id)))?;
                    let base = self.chunk_bytes(h.base, hops).await?;
                    format::decode_delta(&e, &stored, &base)?.slice(from..to)
                }
            });
        }
        Ok(out)
    }
}

/// A record of an extent, decoded, or a delta still to decode on its base.
enum Decoded {
    Ready(Bytes),
    Delta(format::Entry, Bytes, usize, usize),
}

struct Part {
    id: Hash,
    loc: ChunkLoc,
    from: usize,
    to: usize,
}

impl Extent {
    fn one(id: Hash, loc: ChunkLoc, from: usize, to: usize) -> Extent {
        Extent {
            pack: loc.pack,
            start: loc.offset,
            end: loc.offset + loc.record_len(),
            raw: loc.raw_len as u64,
            parts: vec![Part { id, loc, from, to }],
        }
    }
}

pub(super) struct Extent {
    pack: u64,
    start: u64,
    end: u64,
    /// Decoded bytes of its chunks.
    raw: u64,
    parts: Vec<Part>,
}
