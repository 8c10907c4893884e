//! The committer thread: takes requests off the queue in groups, applies
//! each from a savepoint of one `Txn`, fsyncs the packs the group points
//! into, then writes the batch (WAL fsync) and answers every request.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{CommitOutcome, CommitReq, Job, Pending};
use crate::catalog::apply::{CatalogState, Ctx};
use crate::catalog::records::{IDS_KEY, encode};
use crate::error::Result;
use crate::gc;
use crate::index::{Cf, Index, PackState, Stats};
use crate::pack::Packer;

/// Most requests folded into one commit.
const MAX_GROUP: usize = 256;

pub(super) struct Writer {
    pub(super) index: Arc<Index>,
    pub(super) packer: Arc<Packer>,
    pub(super) pending: Arc<Pending>,
    pub(super) stats: Stats,
    pub(super) catalog: CatalogState,
}

fn exclusive(req: &CommitReq) -> bool {
    match req {
        CommitReq::Catalog(op) => op.exclusive(),
        CommitReq::Collect { .. } | CommitReq::Optimize { .. } => true,
        _ => false,
    }
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
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
                    extras,
                    candidates,
                    publishing,
                } => super::put::put(
                    &mut ctx,
                    &self.packer,
                    &mut syncs,
                    super::put::Upload {
                        namespace,
                        manifest,
                        extras: *extras,
                        candidates,
                        publishing: *publishing,
                    },
                ),
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
                CommitReq::Optimize {
                    old,
                    recipe,
                    outcome,
                    chunks,
                } => super::optimize::optimize(
                    &mut ctx,
                    &self.packer,
                    &mut syncs,
                    old,
                    recipe.as_deref(),
                    outcome,
                    chunks,
                ),
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
