//! Write path: stream -> FastCDC chunks -> BLAKE3 ids -> dedup lookup ->
//! zstd -> open pack; whole-file digests in the same pass on another core;
//! then one commit through the [`Committer`].

mod committer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
pub use committer::{CommitOutcome, CommitReq, Committer, decode_ref_record, encode_ref_record};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::chunker::{ChunkParams, Chunker};
use crate::error::{Error, Result};
use crate::hash::{ExtraDigests, FileDigests, FileHasher, Hash};
use crate::index::{ChunkLoc, Index};
use crate::manifest::{ChunkRef, Manifest};
use crate::pack::Packer;
use crate::pack::format::{self, Kind};

/// Frames buffered between the network and each worker.
const PIPE_DEPTH: usize = 8;

/// What a caller declares about an upload.
#[derive(Clone, Debug, Default)]
pub struct PutSpec {
    pub namespace: String,
    pub expected_size: Option<u64>,
    pub expected_sha256: Option<[u8; 32]>,
    pub expected_blake3: Option<Hash>,
    pub extra: ExtraDigests,
    pub media_type: String,
}

#[derive(Clone, Debug)]
pub struct PutOutcome {
    pub digests: FileDigests,
    pub size: u64,
    pub new: bool,
    pub added_bytes: u64,
}

/// Chunks written to packs but not yet committed: a concurrent put of the
/// same bytes reuses the record instead of writing another copy.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<Hash, ChunkLoc>>);

impl Pending {
    fn get(&self, id: &Hash) -> Option<ChunkLoc> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied()
    }
    /// Offers a location; returns the one that won.
    fn offer(&self, id: Hash, loc: ChunkLoc) -> ChunkLoc {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(loc)
    }
    fn release(&self, owned: &[(Hash, ChunkLoc)]) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (id, loc) in owned {
            if m.get(id) == Some(loc) {
                m.remove(id);
            }
        }
    }
}

pub struct Ingest {
    pub params: ChunkParams,
    pub zstd_level: i32,
    pub max_blob_size: u64,
    pub index: Arc<Index>,
    pub packer: Arc<Packer>,
    pub committer: Committer,
    pub pending: Pending,
}

/// What the chunk worker produced.
#[derive(Default)]
struct Chunked {
    chunks: Vec<ChunkRef>,
    candidates: Vec<(Hash, ChunkLoc)>,
    owned: Vec<(Hash, ChunkLoc)>,
    seen: HashSet<Hash>,
}

impl Ingest {
    /// Stores one blob from a stream of frames. Nothing is committed unless
    /// the whole stream arrived and matched every expectation.
    pub async fn put<S>(self: &Arc<Self>, spec: PutSpec, mut frames: S) -> Result<PutOutcome>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        let (htx, mut hrx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
        let (ctx, crx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
        let extra = spec.extra;
        let hasher = tokio::task::spawn_blocking(move || {
            let mut h = FileHasher::new(extra);
            while let Some(b) = hrx.blocking_recv() {
                h.update(&b);
            }
            h.finish()
        });
        let this = self.clone();
        let chunker = tokio::task::spawn_blocking(move || this.chunk_and_write(crx));

        let limit = spec.expected_size.unwrap_or(self.max_blob_size).min(self.max_blob_size);
        let mut size = 0u64;
        let mut failure = None;
        while let Some(frame) = frames.next().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            size += frame.len() as u64;
            if size > limit {
                failure = Some(Error::invalid(match spec.expected_size {
                    Some(n) if n <= self.max_blob_size => {
                        format!("upload is larger than its expected size of {n} bytes")
                    }
                    _ => format!("upload is larger than the limit of {} bytes", self.max_blob_size),
                }));
                break;
            }
            if htx.send(frame.clone()).await.is_err() || ctx.send(frame).await.is_err() {
                break; // a worker failed; its error is collected below
            }
        }
        drop((htx, ctx));
        let digests = hasher.await.map_err(|e| Error::Internal(format!("hasher: {e}")))?;
        let chunked = chunker.await.map_err(|e| Error::Internal(format!("chunker: {e}")))?;
        let chunked = match (failure, chunked) {
            (None, Ok(c)) => c,
            (Some(e), Ok(c)) => {
                self.pending.release(&c.owned);
                return Err(e);
            }
            (_, Err(e)) => return Err(e),
        };
        let result = self.finish(spec, size, digests, &chunked).await;
        self.pending.release(&chunked.owned);
        result
    }

    async fn finish(&self, spec: PutSpec, size: u64, digests: FileDigests, c: &Chunked) -> Result<PutOutcome> {
        if let Some(n) = spec.expected_size.filter(|&n| n != size) {
            return Err(Error::invalid(format!("upload is {size} bytes, expected {n}")));
        }
        if let Some(h) = spec.expected_sha256.filter(|h| *h != digests.sha256) {
            return Err(Error::invalid(format!(
                "sha256 mismatch: expected {}, got {}",
                hex::encode(h),
                hex::encode(digests.sha256)
            )));
        }
        if let Some(h) = spec.expected_blake3.filter(|h| *h != digests.blake3) {
            return Err(Error::invalid(format!(
                "blake3 mismatch: expected {h}, got {}",
                digests.blake3
            )));
        }
        let manifest = Manifest {
            size,
            digests: digests.clone(),
            created_ms: crate::now_ms(),
            chunks: c.chunks.clone(),
        };
        let req = CommitReq::Put {
            namespace: spec.namespace,
            manifest: Box::new(manifest),
            candidates: c.candidates.clone(),
        };
        let o = self.committer.submit(req).await?;
        Ok(PutOutcome {
            digests,
            size,
            new: o.new,
            added_bytes: o.added_bytes,
        })
    }

    /// Runs on a blocking thread: chunks the stream and writes new chunks.
    fn chunk_and_write(&self, mut rx: mpsc::Receiver<Bytes>) -> Result<Chunked> {
        let mut out = Chunked::default();
        let mut chunker = Chunker::new(self.params)?;
        let result = (|| {
            let mut emit = |c: &[u8]| self.write_chunk(c, &mut out);
            while let Some(b) = rx.blocking_recv() {
                chunker.push(&b, &mut emit)?;
            }
            chunker.finish(&mut emit)
        })();
        // On error `rx` is dropped here, which stops the sender.
        if let Err(e) = result {
            self.pending.release(&out.owned);
            return Err(e);
        }
        Ok(out)
    }

    fn write_chunk(&self, raw: &[u8], out: &mut Chunked) -> Result<()> {
        let id = Hash::of(raw);
        out.chunks.push(ChunkRef {
            id,
            len: raw.len() as u32,
        });
        if !out.seen.insert(id) {
            return Ok(());
        }
        if let Some(loc) = self.pending.get(&id) {
            out.candidates.push((id, loc));
            return Ok(());
        }
        if self.index.chunk(&id)?.is_some() {
            return Ok(());
        }
        let (codec, z) = format::compress(raw, self.zstd_level)?;
        let stored = z.as_deref().unwrap_or(raw);
        let (pack, e) = self.packer.append(Kind::Chunk, codec, id, raw.len() as u32, stored)?;
        let loc = ChunkLoc {
            pack: pack.id,
            offset: e.offset,
            stored_len: e.stored_len,
            raw_len: e.raw_len,
            codec,
        };
        let won = self.pending.offer(id, loc);
        if won == loc {
            out.owned.push((id, loc));
        }
        out.candidates.push((id, won));
        Ok(())
    }
}
