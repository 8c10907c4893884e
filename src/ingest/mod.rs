//! Write path: stream -> FastCDC chunks -> BLAKE3 ids -> dedup lookup ->
//! zstd -> open pack; whole-file digests in the same pass on another core;
//! then one commit through the [`Committer`]. Chunks written but not yet
//! committed are shared through [`Pending`], so concurrent uploads of the same
//! bytes write one record.

mod expanded;
pub use expanded::Bases;
pub mod pace;

pub use expanded::Prepared;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::chunker::{ChunkParams, Chunker};
use crate::committer::{CommitReq, Committer, Pending};
use crate::error::{Error, Result};
use crate::hash::{Computed, ExtraDigests, FileDigests, FileHasher, Hash};
use crate::index::{ChunkLoc, Index};
use crate::manifest::{ChunkRef, Manifest};
use crate::pack::Packer;
use crate::pack::format::{self, Kind};

/// Streaming uploads that may hold worker threads at once: each holds two,
/// and tokio's blocking pool (512) also serves reads and sealing.
pub const MAX_STREAMS: usize = 128;
/// Frames buffered between the network and each worker.
const PIPE_DEPTH: usize = 8;
/// Uploads no larger than this are hashed and chunked on the request's own
/// task: handing them to worker threads costs more than the work.
pub const INLINE_MAX: u64 = 64 << 10;
/// Head frames smaller than this are copied together into one buffer.
const COALESCE_BELOW: usize = 16 << 10;

/// What a caller declares about an upload.
#[derive(Clone, Debug, Default)]
pub struct PutSpec {
    pub namespace: String,
    pub expected_size: Option<u64>,
    pub expected_sha256: Option<[u8; 32]>,
    pub expected_blake3: Option<Hash>,
    pub extra: ExtraDigests,
    pub media_type: String,
    /// The upload is a streamed publish's: its lease lasts at least
    /// [`crate::committer::PUBLISH_LEASE_MS`], so a purge between the put
    /// and the publish cannot release it (the lease ends at the publish).
    pub publishing: bool,
}

#[derive(Clone, Debug)]
pub struct PutOutcome {
    pub digests: FileDigests,
    pub size: u64,
    /// The blob was new to the store.
    pub new: bool,
    /// Stored bytes this upload added to the store.
    pub added_bytes: u64,
    /// The namespace did not hold the blob before.
    pub new_to_namespace: bool,
}

pub struct Ingest {
    pub params: ChunkParams,
    pub zstd_level: i32,
    pub max_blob_size: u64,
    pub index: Arc<Index>,
    pub packer: Arc<Packer>,
    pub committer: Committer,
    pub pending: Arc<Pending>,
    /// Uploads allowed to hold worker threads at once (the rest wait).
    pub streams: tokio::sync::Semaphore,
}

/// What the chunk worker produced. Dropping it (after the commit, or when
/// the upload fails or is cancelled) releases its `Pending` entries.
#[derive(Default)]
pub struct Chunked {
    pub chunks: Vec<ChunkRef>,
    /// Chunks written, or found only among uncommitted writes: the commit
    /// indexes those it still needs.
    pub candidates: Vec<(Hash, ChunkLoc)>,
    owned: Vec<(Hash, ChunkLoc)>,
    seen: HashSet<Hash>,
    pending: Option<Arc<Pending>>,
}

impl Drop for Chunked {
    fn drop(&mut self) {
        if let Some(p) = &self.pending {
            p.release(&self.owned);
        }
    }
}

impl Ingest {
    /// Stores one blob from a stream of frames. Nothing is committed unless
    /// the whole stream arrived and matched every expectation.
    ///
    /// Two shortcuts: an upload that ends within [`INLINE_MAX`] is processed
    /// on this task; and when the header declares a BLAKE3 or SHA-256 that
    /// names a stored blob, the bytes are only hashed with that digest to
    /// prove they are that blob (no chunking, nothing written).
    pub async fn put<S>(self: &Arc<Self>, spec: PutSpec, mut frames: S) -> Result<PutOutcome>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        let over_limit = || {
            Error::ResourceExhausted(format!(
                "upload is larger than the limit of {} bytes (max_blob_size)",
                self.max_blob_size
            ))
        };
        if spec.expected_size.is_some_and(|n| n > self.max_blob_size) {
            return Err(over_limit());
        }
        let known = match (&spec.expected_blake3, &spec.expected_sha256) {
            (Some(b), _) => self.index.blob(b)?,
            (None, Some(s)) => self.index.blob_by_sha256(s)?,
            (None, None) => None,
        };
        let mut hasher = match &known {
            Some(m) => FileHasher::only(
                spec.expected_blake3.is_some(),
                spec.expected_sha256.is_some(),
                missing_extras(spec.extra, &m.digests),
            ),
            None => FileHasher::new(spec.extra),
        };
        let write = known.is_none();
        let limit = spec.expected_size.unwrap_or(self.max_blob_size).min(self.max_blob_size);
        let too_big = || match spec.expected_size {
            Some(n) => Error::invalid(format!("upload is larger than its expected size of {n} bytes")),
            None => over_limit(),
        };

        // Read a small head; if the stream ends inside it, work inline.
        // Small frames are copied into one buffer, so the head holds at
        // most INLINE_MAX bytes in a few buffers, however the client cut
        // them (an empty frame adds nothing).
        let mut size = 0u64;
        let mut head = Vec::new();
        let mut small = BytesMut::new();
        let mut ended = false;
        while size <= INLINE_MAX {
            let Some(frame) = frames.next().await else {
                ended = true;
                break;
            };
            let frame = frame?;
            size += frame.len() as u64;
            if size > limit {
                return Err(too_big());
            }
            if frame.len() < COALESCE_BELOW {
                small.extend_from_slice(&frame);
            } else {
                if !small.is_empty() {
                    head.push(small.split().freeze());
                }
                head.push(frame);
            }
        }
        if !small.is_empty() {
            head.push(small.freeze());
        }
        let (computed, chunked) = if ended {
            head.iter().for_each(|f| hasher.update(f));
            let chunked = if write {
                self.chunk_and_write(head.into_iter())?
            } else {
                Chunked::default()
            };
            (hasher.finish(), chunked)
        } else {
            let _permit = self
                .streams
                .acquire()
                .await
                .map_err(|_| Error::Unavailable("shutting down".into()))?;
            let (htx, mut hrx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
            let hashing = tokio::task::spawn_blocking(move || {
                while let Some(b) = hrx.blocking_recv() {
                    hasher.update(&b);
                }
                hasher.finish()
            });
            let (ctx, chunking) = if write {
                let (ctx, mut crx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
                let this = self.clone();
                let task = tokio::task::spawn_blocking(move || {
                    this.chunk_and_write(std::iter::from_fn(|| crx.blocking_recv()))
                });
                (Some(ctx), Some(task))
            } else {
                (None, None)
            };
            let mut failure = None;
            let mut next = head.into_iter().map(Ok).collect::<std::collections::VecDeque<_>>();
            loop {
                let frame = match next.pop_front() {
                    Some(f) => f,
                    None => match frames.next().await {
                        Some(f) => f.inspect(|f| size += f.len() as u64),
                        None => break,
                    },
                };
                let frame = match frame {
                    Ok(f) if size > limit => {
                        drop(f);
                        failure = Some(too_big());
                        break;
                    }
                    Ok(f) => f,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                let sent = match &ctx {
                    Some(ctx) => htx.send(frame.clone()).await.is_ok() && ctx.send(frame).await.is_ok(),
                    None => htx.send(frame).await.is_ok(),
                };
                if !sent {
                    break; // a worker failed; its error is collected below
                }
            }
            drop((htx, ctx));
            let computed = hashing.await.map_err(|e| Error::Internal(format!("hasher: {e}")))?;
            let chunked = match chunking {
                Some(t) => t.await.map_err(|e| Error::Internal(format!("chunker: {e}")))?,
                None => Ok(Chunked::default()),
            };
            // The stream's own failure explains a worker's, not the reverse.
            match (failure, chunked) {
                (Some(e), _) | (None, Err(e)) => return Err(e),
                (None, Ok(c)) => (computed, c),
            }
        };
        match known {
            Some(m) => self.finish_known(spec, size, computed, m).await,
            None => self.finish(spec, size, computed, &chunked).await,
        }
    }

    async fn finish(&self, spec: PutSpec, size: u64, computed: Computed, c: &Chunked) -> Result<PutOutcome> {
        check_declared(&spec, size, &computed)?;
        let digests = computed
            .complete()
            .ok_or_else(|| Error::Internal("a full put computes every digest".into()))?;
        let manifest = Manifest {
            size,
            digests: digests.clone(),
            created_ms: crate::now_ms(),
            chunks: c.chunks.clone(),
            recipe: None,
        };
        self.commit(spec, manifest, c.candidates.clone(), digests).await
    }

    /// The bytes hashed to the declared digest of a stored blob: they are it.
    async fn finish_known(&self, spec: PutSpec, size: u64, computed: Computed, m: Manifest) -> Result<PutOutcome> {
        check_declared(&spec, size, &computed)?;
        if size != m.size {
            return Err(Error::invalid(format!(
                "upload is {size} bytes but the blob with the declared digest is {} bytes",
                m.size
            )));
        }
        // Only the extras this upload asked for: the manifest may hold
        // some another namespace asked for.
        let mut digests = m.digests.only(spec.extra);
        digests.sha1 = digests.sha1.or(computed.sha1);
        digests.sha512 = digests.sha512.or(computed.sha512);
        digests.md5 = digests.md5.or(computed.md5);
        self.commit(spec, m, Vec::new(), digests).await
    }

    /// Hands a verified put to the committer; `digests` is what to answer.
    async fn commit(
        &self,
        spec: PutSpec,
        manifest: Manifest,
        candidates: Vec<(Hash, ChunkLoc)>,
        digests: FileDigests,
    ) -> Result<PutOutcome> {
        let size = manifest.size;
        let req = CommitReq::Put {
            namespace: spec.namespace,
            manifest: Box::new(manifest),
            extras: spec.extra,
            candidates,
            publishing: spec.publishing,
        };
        let o = self.committer.submit(req).await?;
        Ok(PutOutcome {
            digests,
            size,
            new: o.new,
            added_bytes: o.added_bytes,
            new_to_namespace: o.new_to_namespace,
        })
    }

    /// Chunks the frames and writes new chunks (on a blocking thread, or
    /// inline for a small upload).
    fn chunk_and_write(&self, frames: impl Iterator<Item = Bytes>) -> Result<Chunked> {
        let mut out = Chunked::default();
        out.pending = Some(self.pending.clone());
        let mut chunker = Chunker::new(self.params)?;
        let result = (|| {
            let mut emit = |c: &[u8]| self.write_chunk(c, &mut out);
            for b in frames {
                chunker.push(&b, &mut emit)?;
            }
            chunker.finish(&mut emit)
        })();
        // On error the frame source is dropped here, which stops the sender.
        result.map(|()| out)
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
        self.append_chunk(id, raw.len() as u32, codec, z.as_deref().unwrap_or(raw), out)
    }

    /// Appends one new chunk's stored bytes to the open pack and offers it
    /// to concurrent writers.
    fn append_chunk(
        &self,
        id: Hash,
        raw_len: u32,
        codec: format::Codec,
        stored: &[u8],
        out: &mut Chunked,
    ) -> Result<()> {
        let (pack, e) = self.packer.append(Kind::Chunk, codec, id, raw_len, stored)?;
        let loc = ChunkLoc {
            pack: pack.id,
            offset: e.offset,
            stored_len: e.stored_len,
            raw_len: e.raw_len,
            codec,
            delta: format::delta_of(codec, stored)?,
        };
        let won = self.pending.offer(id, loc);
        if won == loc {
            out.owned.push((id, loc));
        }
        out.candidates.push((id, won));
        Ok(())
    }
}

/// Extra digests requested that a stored blob's manifest does not hold.
fn missing_extras(want: ExtraDigests, have: &FileDigests) -> ExtraDigests {
    ExtraDigests {
        sha1: want.sha1 && have.sha1.is_none(),
        sha512: want.sha512 && have.sha512.is_none(),
        md5: want.md5 && have.md5.is_none(),
    }
}

/// Checks what the header declared against what the bytes turned out to be.
fn check_declared(spec: &PutSpec, size: u64, got: &Computed) -> Result<()> {
    if let Some(n) = spec.expected_size.filter(|&n| n != size) {
        return Err(Error::invalid(format!("upload is {size} bytes, expected {n}")));
    }
    if let (Some(want), Some(got)) = (spec.expected_sha256, got.sha256)
        && want != got
    {
        return Err(Error::invalid(format!(
            "sha256 mismatch: expected {}, got {}",
            hex::encode(want),
            hex::encode(got)
        )));
    }
    if let (Some(want), Some(got)) = (spec.expected_blake3, got.blake3)
        && want != got
    {
        return Err(Error::invalid(format!("blake3 mismatch: expected {want}, got {got}")));
    }
    Ok(())
}
