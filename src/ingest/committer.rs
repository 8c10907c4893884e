//! The committer: the one thread that writes the index.
//!
//! Every decision that must not race (is this chunk new, is this blob new,
//! does this namespace already reference it) and every counter change is
//! made here, in order, so the counters are exact. Requests that arrive
//! while a commit runs are committed together: one pack fdatasync and one
//! WAL fsync for the whole group.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{ChunkLoc, Index, PackInfo, PackState, RefInfo, Stats};
use crate::manifest::Manifest;
use crate::pack::Packer;
use crate::pack::format::{Codec, Kind};

/// Most requests folded into one commit.
const MAX_GROUP: usize = 256;

pub enum CommitReq {
    /// A put whose chunks are all written (not necessarily synced).
    Put {
        namespace: String,
        manifest: Box<Manifest>,
        /// Chunks this put wrote or found only among uncommitted writes.
        candidates: Vec<(Hash, ChunkLoc)>,
    },
    /// A pack was sealed and uploaded to the pack store.
    PackSealed { id: u64, info: PackInfo },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The blob was new to the store.
    pub new: bool,
    /// Stored bytes of chunks this request made new.
    pub added_bytes: u64,
}

type Job = (CommitReq, oneshot::Sender<Result<CommitOutcome>>);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl Committer {
    pub fn start(index: Arc<Index>, packer: Arc<Packer>) -> Result<Self> {
        let stats = index.stats()?;
        let (tx, rx) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name("stowage-committer".into())
            .spawn(move || Worker { index, packer, stats }.run(rx))?;
        Ok(Committer { tx })
    }

    pub async fn submit(&self, req: CommitReq) -> Result<CommitOutcome> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((req, tx))
            .await
            .map_err(|_| Error::Unavailable("committer stopped".into()))?;
        rx.await.map_err(|_| Error::Unavailable("committer stopped".into()))?
    }
}

struct Worker {
    index: Arc<Index>,
    packer: Arc<Packer>,
    stats: Stats,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let (reqs, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            match self.commit(&reqs) {
                Ok(outcomes) => {
                    for (reply, o) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(o));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, requests = reqs.len(), "commit failed");
                    for reply in replies {
                        let _ = reply.send(Err(Error::Unavailable(format!("commit failed: {e}"))));
                    }
                }
            }
        }
    }

    fn commit(&mut self, reqs: &[CommitReq]) -> Result<Vec<CommitOutcome>> {
        let mut stats = self.stats;
        let mut batch = self.index.batch();
        let mut chunks: HashSet<Hash> = HashSet::new();
        let mut blobs: HashSet<Hash> = HashSet::new();
        let mut refs: HashSet<(&str, Hash)> = HashSet::new();
        // Per staged pack, the end of the last record this group depends on.
        let mut syncs: HashMap<u64, u64> = HashMap::new();
        let mut need = |loc_pack: u64, end: u64| {
            let e = syncs.entry(loc_pack).or_default();
            *e = (*e).max(end);
        };
        let mut outcomes = Vec::with_capacity(reqs.len());
        for req in reqs {
            let mut out = CommitOutcome::default();
            match req {
                CommitReq::Put {
                    namespace,
                    manifest,
                    candidates,
                } => {
                    let id = manifest.digests.blake3;
                    if !blobs.contains(&id) && !self.index.has_blob(&id)? {
                        // Only a new blob brings chunks: a known blob (stored
                        // under other chunk settings, say) has its own already.
                        for (cid, loc) in candidates {
                            if chunks.contains(cid) || self.index.chunk(cid)?.is_some() {
                                continue;
                            }
                            need(loc.pack, loc.offset + loc.record_len());
                            batch.put_chunk(cid, loc);
                            chunks.insert(*cid);
                            stats.chunks += 1;
                            stats.physical_bytes += loc.stored_len as u64;
                            out.added_bytes += loc.stored_len as u64;
                        }
                        let enc = manifest.encode();
                        let (pack, e) = self.packer.append(Kind::Blob, Codec::Raw, id, enc.len() as u32, &enc)?;
                        need(pack.id, e.offset + e.record_len());
                        batch.put_blob(manifest);
                        blobs.insert(id);
                        stats.blobs += 1;
                        stats.unique_bytes += manifest.size;
                        out.new = true;
                    }
                    if !refs.contains(&(namespace.as_str(), id)) && self.index.reference(namespace, &id)?.is_none() {
                        let r = RefInfo {
                            created_ms: crate::now_ms(),
                        };
                        let rec = encode_ref_record(namespace, &r);
                        let (pack, e) = self.packer.append(Kind::Ref, Codec::Raw, id, rec.len() as u32, &rec)?;
                        need(pack.id, e.offset + e.record_len());
                        batch.put_ref(namespace, &id, &r);
                        refs.insert((namespace, id));
                        stats.references += 1;
                        stats.logical_bytes += manifest.size;
                    }
                }
                CommitReq::PackSealed { id, info } => {
                    debug_assert_eq!(info.state, PackState::Sealed);
                    if self.index.pack(*id)?.is_none() {
                        stats.packs += 1;
                        stats.sealed_pack_bytes += info.size;
                    }
                    batch.put_pack(*id, info);
                }
            }
            outcomes.push(out);
        }
        // Data first: every record the batch points at must be on disk.
        for (pack, end) in syncs {
            if let Some(p) = self.packer.staged(pack) {
                p.sync_to(end)?;
            }
        }
        batch.put_stats(&stats);
        self.index.commit(batch)?;
        self.stats = stats;
        Ok(outcomes)
    }
}

/// A `Ref` record: created_ms:i64 then the namespace bytes.
pub fn encode_ref_record(ns: &str, r: &RefInfo) -> Vec<u8> {
    let mut v = r.created_ms.to_be_bytes().to_vec();
    v.extend_from_slice(ns.as_bytes());
    v
}

pub fn decode_ref_record(b: &[u8]) -> Result<(String, RefInfo)> {
    if b.len() < 8 {
        return Err(Error::corrupt("reference record is truncated"));
    }
    let created_ms = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let ns = std::str::from_utf8(&b[8..]).map_err(|_| Error::corrupt("reference record namespace is not UTF-8"))?;
    Ok((ns.to_string(), RefInfo { created_ms }))
}
