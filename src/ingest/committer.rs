//! The committer: the one thread that writes the index.
//!
//! Every decision that must not race (is this chunk new, is this blob new,
//! does this namespace already reference it) and every counter change is
//! made here, in order, so the counters are exact. Requests that arrive
//! while a commit runs are committed together: one pack fdatasync and one
//! WAL fsync for the whole group.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::catalog::apply::{CatalogState, Ctx};
use crate::catalog::records::{IDS_KEY, Ids, decode, encode};
use crate::catalog::{CatalogOp, CatalogOutcome};
use crate::error::{Error, Result};
use crate::gc;
use crate::hash::Hash;
use crate::index::{Cf, ChunkLoc, ChunkRec, Index, PackInfo, PackState, RefInfo, Stats};
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
    /// A catalog change.
    Catalog(Box<CatalogOp>),
    /// Collects condemned chunks condemned at or before `cutoff_ms` (alone in its batch).
    Collect { cutoff_ms: i64, budget: usize },
    /// Switches the index to compacted copies and retires the pack.
    Relocate(Box<gc::Relocation>),
    /// A retired pack was deleted from the store.
    ForgetPack { retired_key: Vec<u8>, pack: u64 },
}

#[derive(Clone, Debug, Default)]
pub struct CommitOutcome {
    /// The blob was new to the store.
    pub new: bool,
    /// Stored bytes of chunks this request made new.
    pub added_bytes: u64,
    /// The namespace did not hold the blob before.
    pub new_to_namespace: bool,
    /// What a catalog request did.
    pub catalog: Option<CatalogOutcome>,
    /// What a collect request did.
    pub collected: Option<gc::Collected>,
    /// A relocation retired its pack.
    pub retired: bool,
}

type Job = (CommitReq, oneshot::Sender<Result<CommitOutcome>>);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Catalog settings the committer applies.
#[derive(Clone, Debug)]
pub struct CatalogSettings {
    pub trash_window_ms: i64,
    pub lease_ms: i64,
    /// Hard quotas in bytes, by namespace.
    pub quotas: std::collections::BTreeMap<String, u64>,
}

impl Committer {
    pub fn start(
        index: Arc<Index>,
        packer: Arc<Packer>,
        pending: Arc<super::Pending>,
        settings: CatalogSettings,
    ) -> Result<Self> {
        let stats = index.stats()?;
        let ids = match index.get(Cf::Meta, IDS_KEY)? {
            Some(v) => decode(&v, "ids")?,
            None => Ids {
                package: 1,
                version: 1,
                file: 1,
                event: 1,
            },
        };
        let catalog = CatalogState::new(ids, settings.trash_window_ms, settings.lease_ms, settings.quotas);
        let (tx, rx) = mpsc::channel(1024);
        let thread = std::thread::Builder::new()
            .name("stowage-committer".into())
            .spawn(move || {
                Worker {
                    index,
                    packer,
                    pending,
                    stats,
                    catalog,
                }
                .run(rx)
            })?;
        Ok(Committer {
            tx,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// The committer thread, to join once every sender is gone (it ends
    /// then, closing its hold on the index). Taken once.
    pub fn take_thread(&self) -> Option<std::thread::JoinHandle<()>> {
        self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub async fn submit(&self, req: CommitReq) -> Result<CommitOutcome> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((req, tx))
            .await
            .map_err(|_| Error::Unavailable("committer stopped".into()))?;
        rx.await.map_err(|_| Error::Unavailable("committer stopped".into()))?
    }

    /// Submits a catalog change and returns what it did.
    pub async fn catalog(&self, op: CatalogOp) -> Result<CatalogOutcome> {
        self.submit(CommitReq::Catalog(Box::new(op)))
            .await?
            .catalog
            .ok_or_else(|| Error::Internal("catalog request without a catalog outcome".into()))
    }
}

struct Worker {
    index: Arc<Index>,
    packer: Arc<Packer>,
    pending: Arc<super::Pending>,
    stats: Stats,
    catalog: CatalogState,
}

fn exclusive(req: &CommitReq) -> bool {
    match req {
        CommitReq::Catalog(op) => op.exclusive(),
        CommitReq::Collect { .. } => true,
        _ => false,
    }
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut held: Option<Job> = None;
        loop {
            let first = match held.take() {
                Some(j) => j,
                None => match rx.blocking_recv() {
                    Some(j) => j,
                    None => return,
                },
            };
            let mut jobs = vec![first];
            // An exclusive request (a purge scans committed state) goes alone.
            while jobs.len() < MAX_GROUP && !exclusive(&jobs[0].0) {
                match rx.try_recv() {
                    Ok(j) if exclusive(&j.0) => {
                        held = Some(j);
                        break;
                    }
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let (reqs, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            match self.commit(&reqs) {
                Ok(outcomes) => {
                    for (reply, o) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(o);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, requests = reqs.len(), "commit failed");
                    for reply in replies {
                        let _ = reply.send(Err(e.group_failure()));
                    }
                }
            }
        }
    }

    /// Applies a group in one batch. A request that fails on its own (bad
    /// input, a catalog rule) is rolled back and answered with its error;
    /// an I/O failure fails the whole group.
    fn commit(&mut self, reqs: &[CommitReq]) -> Result<Vec<Result<CommitOutcome>>> {
        let now = crate::now_ms();
        let mut stats = self.stats;
        let ids_before = self.catalog.ids;
        let mut txn = self.index.txn();
        // Per staged pack, the end of the last record this group depends on.
        let mut syncs: HashMap<u64, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(reqs.len());
        for req in reqs {
            let sp = txn.savepoint();
            let (stats_sp, ids_sp) = (stats, self.catalog.ids);
            let mut ctx = Ctx {
                txn: &mut txn,
                stats: &mut stats,
                st: &mut self.catalog,
                now,
            };
            let r = match req {
                CommitReq::Put {
                    namespace,
                    manifest,
                    candidates,
                } => put(&mut ctx, &self.packer, &mut syncs, namespace, manifest, candidates),
                CommitReq::PackSealed { id, info } => {
                    debug_assert_eq!(info.state, PackState::Sealed);
                    ctx.txn.get(Cf::Packs, &id.to_be_bytes()).map(|known| {
                        if known.is_none() {
                            ctx.stats.packs += 1;
                            ctx.stats.sealed_pack_bytes += info.size;
                        }
                        ctx.txn.put_pack(*id, info);
                        CommitOutcome::default()
                    })
                }
                CommitReq::Catalog(op) => ctx.apply(op).map(|o| CommitOutcome {
                    catalog: Some(o),
                    ..Default::default()
                }),
                CommitReq::Collect { cutoff_ms, budget } => {
                    gc::collect(ctx.txn, ctx.stats, *cutoff_ms, *budget).map(|c| CommitOutcome {
                        collected: Some(c),
                        ..Default::default()
                    })
                }
                CommitReq::Relocate(r) => {
                    let held = self.pending.points_into(r.pack);
                    let need = |pack: u64, end: u64| {
                        let e = syncs.entry(pack).or_default();
                        *e = (*e).max(end);
                    };
                    gc::relocate(ctx.txn, ctx.stats, now, r, held, need).map(|retired| CommitOutcome {
                        retired,
                        ..Default::default()
                    })
                }
                CommitReq::ForgetPack { retired_key, pack } => {
                    gc::forget(ctx.txn, ctx.stats, retired_key, *pack).map(|()| CommitOutcome::default())
                }
            };
            if r.is_err() {
                txn.rollback(sp);
                stats = stats_sp;
                self.catalog.ids = ids_sp;
            }
            match r {
                // Storage failures fail the group: the batch cannot be trusted.
                Err(e) if e.is_storage() => {
                    self.catalog.ids = ids_before;
                    return Err(e);
                }
                r => outcomes.push(r),
            }
        }
        // Data first: every record the batch points at must be on disk.
        let flush = (|| {
            for (pack, end) in syncs {
                if let Some(p) = self.packer.staged(pack) {
                    p.sync_to(end)?;
                }
            }
            txn.put_stats(&stats);
            txn.put(Cf::Meta, IDS_KEY, encode(&self.catalog.ids));
            self.index.commit(txn)
        })();
        if let Err(e) = flush {
            self.catalog.ids = ids_before;
            return Err(e);
        }
        self.stats = stats;
        Ok(outcomes)
    }
}

fn put(
    ctx: &mut Ctx<'_, '_>,
    packer: &Packer,
    syncs: &mut HashMap<u64, u64>,
    namespace: &str,
    manifest: &Manifest,
    candidates: &[(Hash, ChunkLoc)],
) -> Result<CommitOutcome> {
    let mut need = |loc_pack: u64, end: u64| {
        let e = syncs.entry(loc_pack).or_default();
        *e = (*e).max(end);
    };
    let mut out = CommitOutcome::default();
    let id = manifest.digests.blake3;
    if !ctx.txn.has_blob(&id)? {
        // Only a new blob brings chunks: a known blob (stored under other
        // chunk settings, say) has its own already.
        let mut live_packs: HashMap<u64, bool> = HashMap::new();
        for (cid, loc) in candidates {
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
            need(loc.pack, loc.offset + loc.record_len());
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
            out.added_bytes += loc.stored_len as u64;
        }
        crate::catalog::chunks::hold(ctx.txn, ctx.stats, manifest)?;
        let enc = manifest.encode();
        let (pack, e) = packer.append(Kind::Blob, Codec::Raw, id, enc.len() as u32, &enc)?;
        need(pack.id, e.offset + e.record_len());
        out.new = true;
    }
    if let Some(r) = ctx.upload_ref(namespace, &id, manifest.size)? {
        let rec = encode_ref_record(namespace, &r);
        let (pack, e) = packer.append(Kind::Ref, Codec::Raw, id, rec.len() as u32, &rec)?;
        need(pack.id, e.offset + e.record_len());
        ctx.stats.references += 1;
        ctx.stats.logical_bytes += manifest.size;
        out.new_to_namespace = true;
    }
    Ok(out)
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
    Ok((
        ns.to_string(),
        RefInfo {
            created_ms,
            lease_until_ms: created_ms,
            files: 0,
        },
    ))
}
