//! Reads of recipe manifests: the blob is recreated from its expanded
//! space (`expand::recipe::recreate_parallel`: a zip's members on up to
//! [`READ_THREADS`] threads, each reading its chunks through its own
//! [`Expanded`]; every chunk verified as on any read, runs of adjacent
//! records read at once), and every recreated segment is checked against
//! the BLAKE3 the recipe recorded before any byte of it is sent. A
//! mismatch ends the stream with DATA_LOSS. Recreated blobs no larger than
//! an eighth of `optimize.cache_size` are kept in memory (content
//! addressed, so never stale) and served from there at raw speed. A range
//! read recreates from the start and sends only the range.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::Engine;
use crate::error::{Error, Result};
use crate::expand::recipe::{self, Source};
use crate::manifest::Manifest;

/// Data frames a recreated blob is sent in, cached or not: as large as a
/// recreated segment, inside the 4 MiB message limit gRPC clients have by
/// default.
const FRAME: usize = recipe::SEGMENT;
/// Threads one read recreates a zip's members on, at most.
const READ_THREADS: usize = 4;
/// Chunks read at once, at most, when a cursor reaches one not held.
const RUN_CHUNKS: usize = 64;
const RUN_BYTES: u64 = 4 << 20;
/// Decoded chunks kept while recreating (the recipe's three cursors read
/// the expanded space in three places).
const HELD_BYTES: usize = 24 << 20;

impl Engine {
    /// Streams `[offset, end)` of a recipe manifest's blob.
    pub(super) fn recreate(self: &Arc<Self>, m: Manifest, offset: u64, end: u64) -> mpsc::Receiver<Result<Bytes>> {
        let (tx, rx) = mpsc::channel(16);
        let id = m.digests.blake3;
        if let Some(b) = self.recreated.get(&id) {
            tokio::spawn(async move {
                let b = b.slice(offset as usize..end as usize);
                for at in (0..b.len()).step_by(FRAME) {
                    if tx.send(Ok(b.slice(at..(at + FRAME).min(b.len())))).await.is_err() {
                        return;
                    }
                }
            });
            return rx;
        }
        let this = self.clone();
        let rt = Handle::current();
        tokio::task::spawn_blocking(move || {
            let Some(recipe) = m.recipe.as_deref() else { return };
            let keep = this.recreated.admits(m.size);
            let mut all = Vec::with_capacity(if keep { m.size as usize } else { 0 });
            let (mut pos, mut gone, mut stopped) = (0u64, false, false);
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(READ_THREADS));
            let src = || Expanded::new(&this, &rt, &m);
            let r = recipe::recreate_parallel(recipe, src, threads, &mut |seg| {
                let (s, e) = (pos, pos + seg.len() as u64);
                pos = e;
                if keep {
                    all.extend_from_slice(seg);
                }
                if !gone && e > offset && s < end {
                    let piece = &seg[(offset.max(s) - s) as usize..(end.min(e) - s) as usize];
                    for f in piece.chunks(FRAME) {
                        if tx.blocking_send(Ok(Bytes::copy_from_slice(f))).is_err() {
                            gone = true;
                            break;
                        }
                    }
                }
                if !keep && (gone || e >= end) {
                    stopped = true;
                    return Err(Error::Unavailable("read ended".into()));
                }
                Ok(())
            });
            match r {
                Ok(()) if keep => this.recreated.insert(id, all.into()),
                Ok(()) => {}
                Err(_) if stopped => {}
                Err(e) => {
                    tracing::error!(blob = %id, error = %e, "recreating a blob failed");
                    let _ = tx.blocking_send(Err(e));
                }
            }
        });
        rx
    }
}

/// A recipe manifest's expanded space, read through its chunk list.
struct Expanded<'a> {
    engine: &'a Arc<Engine>,
    rt: &'a Handle,
    m: &'a Manifest,
    /// Where each chunk starts in the expanded space.
    starts: Vec<u64>,
    /// Decoded chunks held, by index, oldest first.
    held: VecDeque<(usize, Bytes)>,
    held_bytes: usize,
}

impl<'a> Expanded<'a> {
    fn new(engine: &'a Arc<Engine>, rt: &'a Handle, m: &'a Manifest) -> Self {
        let mut at = 0;
        let starts = m
            .chunks
            .iter()
            .map(|c| {
                let s = at;
                at += c.len as u64;
                s
            })
            .collect();
        Expanded {
            engine,
            rt,
            m,
            starts,
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }

    /// Chunk `i`, decoded and verified; reads it and the adjacent records
    /// after it when it is not held.
    fn chunk(&mut self, i: usize) -> Result<Bytes> {
        if let Some((_, b)) = self.held.iter().find(|(j, _)| *j == i) {
            return Ok(b.clone());
        }
        let mut parts = Vec::new();
        let mut raw = 0u64;
        for c in self.m.chunks[i..].iter().take(RUN_CHUNKS) {
            if raw > 0 && raw + c.len as u64 > RUN_BYTES {
                break;
            }
            raw += c.len as u64;
            parts.push((c.id, 0, c.len as usize));
        }
        let mut extents = self.engine.extents(&self.m.digests.blake3, parts)?;
        if extents.is_empty() {
            return Err(Error::corrupt("a recipe reads past its chunks"));
        }
        let first = extents.swap_remove(0);
        let pieces = self.rt.block_on(self.engine.read_extent(first))?;
        for (k, b) in pieces.into_iter().enumerate() {
            self.held_bytes += b.len();
            self.held.push_back((i + k, b));
        }
        while self.held_bytes > HELD_BYTES && self.held.len() > 1 {
            if let Some((_, b)) = self.held.pop_front() {
                self.held_bytes -= b.len();
            }
        }
        self.held
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| Error::Internal("a chunk read came back empty".into()))
    }
}

impl Source for Expanded<'_> {
    fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        let mut i = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        while out.len() < len {
            if i >= self.m.chunks.len() {
                return Err(Error::corrupt("a recipe reads past its chunks"));
            }
            let c = self.chunk(i)?;
            let from = (offset + out.len() as u64 - self.starts[i]) as usize;
            let take = (len - out.len()).min(c.len().saturating_sub(from));
            out.extend_from_slice(&c[from..from + take]);
            i += 1;
        }
        Ok(out)
    }
}
