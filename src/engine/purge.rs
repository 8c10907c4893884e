//! Purging the trash and ended leases, in bounded batches, on demand and
//! every `purge_interval`; `admin purge --now` empties a scope's trash at
//! once. After a purge, [`Held`] says what still holds the space the purged
//! files used, and until when.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Engine;
use crate::background::{Periodic, Worker};
use crate::catalog::ops::PurgeScope;
use crate::catalog::records as rec;
use crate::catalog::usage::{self, Level};
use crate::catalog::{CatalogOp, CatalogOutcome, PurgeCounts};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::Cf;

/// Trash items (or leases) one purge batch handles, so a large purge does
/// not hold the committer for long.
const PURGE_BATCH: usize = 500;

/// Distinct released references a purge looks at afterwards to say what
/// still holds them (beyond it, `Held::complete` is false).
const HELD_DETAIL: usize = 1_000_000;

/// Blobs and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Blobs {
    pub blobs: u64,
    pub bytes: u64,
}

impl Blobs {
    fn add(&mut self, bytes: u64) {
        self.blobs += 1;
        self.bytes += bytes;
    }
}

/// What still holds the blobs of the files a purge removed, and what is
/// left in the trash, read right after the purge.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// Used by other files of the same namespace (other versions or packages).
    pub by_files: Blobs,
    /// Held by an upload lease (uploaded again, not yet published), and
    /// when the last of those leases ends (Unix ms).
    pub by_lease: Blobs,
    pub lease_until_ms: i64,
    /// Released by this namespace, still held by another one.
    pub by_other_namespaces: Blobs,
    /// Files still in the trash in the purge's scope, and (for a purge of
    /// every namespace) when the next one leaves the trash window (Unix ms;
    /// 0: none left, or not said).
    pub trash_files: u64,
    pub trash_bytes: u64,
    pub trash_next_due_ms: i64,
    /// Chunks this purge condemned are collected by a GC run after this
    /// time (the condemnation plus `gc.grace`, Unix ms).
    pub collectable_after_ms: i64,
    /// False when more references were released than were looked at.
    pub complete: bool,
}

impl Engine {
    /// Purges expired trash and ended leases, in bounded batches; with
    /// `now`, every trash item in that scope, whatever the trash window.
    pub async fn purge(&self, actor: &str, now: Option<PurgeScope>) -> Result<(PurgeCounts, Held)> {
        let mut total = PurgeCounts::default();
        let mut after = None;
        loop {
            let op = CatalogOp::Purge {
                actor: actor.to_string(),
                budget: PURGE_BATCH,
                now: now.clone(),
                after: after.take(),
            };
            let CatalogOutcome::Purged(c) = self.catalog(op).await? else {
                return Err(Error::Internal("purge answered with another outcome".into()));
            };
            total.add(&c);
            if total.touched.len() > HELD_DETAIL {
                // Keep the distinct ones, bounded.
                let set: BTreeSet<_> = std::mem::take(&mut total.touched).into_iter().collect();
                total.touched = set.into_iter().collect();
            }
            if !c.more {
                break;
            }
            after = c.resume;
        }
        let held = self.held(&total.touched, now.as_ref())?;
        total.touched.clear();
        Ok((total, held))
    }

    /// What holds each released (namespace, blob) now, and what is left in
    /// the trash of `scope`.
    fn held(&self, touched: &[(String, Hash)], scope: Option<&PurgeScope>) -> Result<Held> {
        let now = crate::now_ms();
        let mut h = Held {
            collectable_after_ms: now.saturating_add(self.cfg.gc.grace.as_millis() as i64),
            complete: true,
            ..Default::default()
        };
        let distinct: BTreeSet<&(String, Hash)> = touched.iter().collect();
        h.complete = distinct.len() <= HELD_DETAIL;
        let size = |b: &Hash| -> Result<u64> { Ok(self.index.blob(b)?.map_or(0, |m| m.size)) };
        for (ns, blob) in distinct.into_iter().take(HELD_DETAIL) {
            match self.index.reference(ns, blob)? {
                Some(r) if r.files > 0 => h.by_files.add(size(blob)?),
                Some(r) if r.lease_until_ms > now => {
                    h.by_lease.add(size(blob)?);
                    h.lease_until_ms = h.lease_until_ms.max(r.lease_until_ms);
                }
                Some(_) => {}
                None => {
                    let holders = self.index.get(Cf::CatalogIdx, &rec::holders_key(blob))?;
                    if holders.is_some_and(|v| rec::be_u64(&v).is_ok_and(|n| n > 0)) {
                        h.by_other_namespaces.add(size(blob)?);
                    }
                }
            }
        }
        // What is left in the trash: the scope's group counters.
        let snap = self.index.snapshot();
        let scope = scope.cloned().unwrap_or_default();
        let (level, key) = match (&scope.namespace, &scope.project, &scope.package) {
            (Some(ns), Some(pr), Some((ty, name))) => (
                Level::Package,
                Some(rec::package_key(&crate::catalog::PkgRef {
                    namespace: ns.clone(),
                    project: pr.clone(),
                    ty: *ty,
                    name: name.clone(),
                })),
            ),
            (Some(ns), Some(pr), None) => (Level::Project, Some([ns.as_bytes(), &[0], pr.as_bytes()].concat())),
            (Some(ns), _, _) => (Level::Namespace, Some(ns.as_bytes().to_vec())),
            _ => (Level::Namespace, None),
        };
        for (k, c) in usage::stored_groups(&snap, level, key.as_deref().unwrap_or_default())? {
            if key.as_ref().is_none_or(|want| *want == k) {
                h.trash_files += c.trash_files.max(0) as u64;
                h.trash_bytes += c.trash_bytes.max(0) as u64;
            }
        }
        // The trash is kept by deletion time, not scope: said store-wide only.
        if h.trash_files > 0
            && key.is_none()
            && let Some(kv) = snap
                .scan(Cf::CatalogIdx, &[rec::tag::TRASH], Some(&[rec::tag::TRASH + 1]))
                .next()
        {
            let (k, _) = kv?;
            let at = rec::be_u64(k.get(1..9).unwrap_or_default())? as i64;
            h.trash_next_due_ms = at.saturating_add(self.cfg.trash_window.as_millis() as i64);
        }
        Ok(h)
    }
}

/// Purges expired trash and ended leases every `purge_interval`.
pub(super) fn purge_worker(engine: Arc<Engine>) -> impl Worker {
    let every = engine.cfg.purge_interval;
    Periodic {
        name: "trash-purge",
        first: Some(every),
        period: every,
        f: move || {
            let engine = engine.clone();
            async move {
                let (c, _) = engine.purge("trash-purge", None).await?;
                if c != PurgeCounts::default() {
                    tracing::info!(
                        packages = c.packages,
                        versions = c.versions,
                        files = c.files,
                        references_released = c.references_released,
                        blobs_unreferenced = c.blobs_unreferenced,
                        bytes_condemned = c.bytes_condemned,
                        "purged"
                    );
                }
                Ok(())
            }
        },
    }
}
