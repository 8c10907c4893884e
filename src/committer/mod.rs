//! The committer: the one thread that writes the index.
//!
//! Every decision that must not race (is this chunk new, is this blob new,
//! does this namespace already reference it) and every counter change is
//! made here, in order, so the counters are exact. Requests that arrive
//! while a commit runs are committed together: one pack fdatasync and one
//! WAL fsync for the whole group.
//!
//! Ingest is one client (puts); the catalog, the sealer and GC are others.
//!
//! Write ordering, for each group:
//! 1. chunk records were appended to the open pack by ingest (page cache only);
//! 2. the committer decides which chunks, blobs and references are new,
//!    appends `Blob` and `Ref` records for the new ones, then `fdatasync`s
//!    every staged pack the group points into (up to the last record it needs);
//! 3. then one RocksDB `WriteBatch` (chunk locations, manifests, references,
//!    catalog, counters, ids) is written with a synced WAL;
//! 4. only then is each request answered.
//!
//! Exclusive requests (a purge, a GC collect: they scan committed state)
//! run alone in their batch. A storage error fails the whole group; any
//! other error rolls back only its own request (savepoints of the `Txn`,
//! the stats and the ids).

mod batch;
mod optimize;
mod pending;
mod put;

pub use pending::Pending;

/// The shortest upload lease of a streamed publish's blob: long enough that
/// no purge releases it before the publish that follows commits, whatever
/// `upload_lease` says. The publish ends the lease.
pub const PUBLISH_LEASE_MS: i64 = 10 * 60 * 1000;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::catalog::apply::CatalogState;
use crate::catalog::records::{IDS_KEY, Ids, decode};
use crate::catalog::{CatalogOp, CatalogOutcome};
use crate::error::{Error, Result};
use crate::gc;
use crate::hash::Hash;
use crate::index::{Cf, ChunkLoc, Index, PackInfo};
use crate::manifest::Manifest;
use crate::pack::Packer;

pub enum CommitReq {
    /// A put whose chunks are all written (not necessarily synced).
    Put {
        namespace: String,
        manifest: Box<Manifest>,
        /// The extra digests the upload asked for.
        extras: crate::hash::ExtraDigests,
        /// Chunks this put wrote or found only among uncommitted writes.
        candidates: Vec<(Hash, ChunkLoc)>,
        /// A streamed publish's upload (its lease lasts at least
        /// [`PUBLISH_LEASE_MS`]).
        publishing: bool,
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
    /// The optimizer's verdict on a blob whose manifest was `old` (encoded):
    /// switch it to `recipe`, or (None) record that it stays raw. Alone in
    /// its batch.
    Optimize {
        old: Vec<u8>,
        recipe: Option<Box<Manifest>>,
        outcome: crate::catalog::optimized::Outcome,
        chunks: NewChunks,
    },
}

/// The chunks an optimizer switch indexes.
#[derive(Debug, Default)]
pub struct NewChunks {
    /// The recipe's chunks written, or found among uncommitted writes.
    pub candidates: Vec<(Hash, ChunkLoc)>,
    /// The sketches of the recipe's new chunks, indexed with the switch.
    pub sketches: Vec<(Hash, crate::delta::Sketch)>,
}

#[derive(Clone, Debug, Default)]
pub struct CommitOutcome {
    /// The blob was new to the store (an optimize: it switched to its recipe).
    pub new: bool,
    /// Stored bytes of chunks this request made new.
    pub added_bytes: u64,
    /// Stored bytes of chunks an optimize condemned (its raw chunks).
    pub released_bytes: u64,
    /// The namespace did not hold the blob before.
    pub new_to_namespace: bool,
    /// What a catalog request did.
    pub catalog: Option<CatalogOutcome>,
    /// What a collect request did.
    pub collected: Option<gc::Collected>,
    /// A relocation retired its pack.
    pub retired: bool,
}

pub(super) type Job = (CommitReq, oneshot::Sender<Result<CommitOutcome>>);

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
        pending: Arc<Pending>,
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
                batch::Writer {
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
