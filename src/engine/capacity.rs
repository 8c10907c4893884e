//! Capacity figures: store stats, reports with trends, and the daily usage
//! snapshots they are drawn from.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::background::{Periodic, Worker};
use crate::catalog::CatalogOp;
use crate::error::{Error, Result};
use crate::index::Stats;
use crate::report::StoreStats;

impl Engine {
    pub fn stats(&self) -> Result<StoreStats> {
        let s: Stats = self.index.stats()?;
        let (staged, staged_bytes) = self.packer.staged_totals();
        Ok(StoreStats {
            logical_bytes: s.logical_bytes,
            unique_bytes: s.unique_bytes,
            physical_bytes: s.physical_bytes,
            chunks: s.chunks,
            packs: s.packs + staged,
            blobs: s.blobs,
            references: s.references,
            pack_bytes: s.sealed_pack_bytes + staged_bytes,
            condemned_bytes: s.condemned_bytes,
            dead_bytes: s.dead_bytes,
        })
    }

    /// Free space where the data dir lives (None if unknown).
    pub fn free_disk_bytes(&self) -> Option<u64> {
        rustix::fs::statvfs(&self.cfg.data_dir)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// The catalog's counts and the store's figures, from counters.
    pub fn totals(&self) -> Result<crate::space::Totals> {
        crate::space::figures(&self.index)
    }

    /// Every byte of the store in a named bucket, beside the data dir's
    /// measured size (walks the catalog and the data dir).
    pub async fn space(self: &Arc<Self>) -> Result<crate::space::Space> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.space_now())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    fn space_now(&self) -> Result<crate::space::Space> {
        let layout = crate::space::Layout {
            data_dir: &self.cfg.data_dir,
            index_dir: self.cfg.index_dir(),
            staging_dir: self.cfg.staging_dir(),
            pack_root: self.store.local_root(),
        };
        crate::space::space(&self.index, self.packer.staged_file_bytes(), &layout)
    }

    /// A capacity report (see `crate::report`) with trends, refreshing
    /// today's usage snapshot first.
    pub async fn capacity(self: &Arc<Self>, q: crate::report::Query) -> Result<crate::report::Report> {
        let today = self.daily_usage().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut r = crate::report::compute(&this.index, &q, &this.stats()?)?;
            r.trends = crate::report::trends(&this.index, &q, today)?;
            // Free space and the store's buckets move with every tenant's
            // uploads: store-wide figures, for a grant over every namespace.
            if !q.tenant {
                r.summary.free_disk_bytes = this.free_disk_bytes();
                if q.namespace.is_none() {
                    r.summary.space = Some(this.space_now()?);
                    r.summary.optimize = Some(this.optimize_totals()?);
                }
            }
            if q.freeable {
                let (ns, pr) = (q.namespace.as_deref(), q.project.as_deref());
                r.freeable = Some(crate::retention::freeable::compute(
                    &this.index,
                    ns,
                    pr,
                    q.tenant,
                    crate::now_ms(),
                )?);
            }
            Ok(r)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Takes (or refreshes) today's usage snapshot; returns today. A past
    /// day keeps the last snapshot taken on it.
    pub async fn daily_usage(self: &Arc<Self>) -> Result<u64> {
        let _one = self.usage_running.lock().await;
        let today = crate::report::day_of(crate::now_ms());
        let this = self.clone();
        let snap =
            tokio::task::spawn_blocking(move || crate::report::take_snapshot(&this.index, &this.index.stats()?, today))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        let json = |u: &crate::report::DayUsage| serde_json::to_vec(u).map_err(|e| Error::Internal(e.to_string()));
        self.catalog(CatalogOp::DailyUsage {
            day: today,
            usage: json(&snap.store)?,
            namespaces: snap
                .namespaces
                .iter()
                .map(|(ns, u)| Ok((ns.clone(), json(u)?)))
                .collect::<Result<_>>()?,
            packages: snap.packages,
            keep_days: 400,
        })
        .await?;
        Ok(today)
    }
}

/// Refreshes today's usage snapshot now and every hour.
pub(super) fn usage_worker(engine: Arc<Engine>) -> impl Worker {
    Periodic {
        name: "daily-usage",
        first: None,
        period: Duration::from_secs(3600),
        f: move || {
            let engine = engine.clone();
            async move { engine.daily_usage().await.map(drop) }
        },
    }
}

/// A scheduled background job as the report shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub interval_ms: u64,
    pub runs: u64,
    pub last_run_ms: Option<i64>,
    pub last_elapsed_ms: u64,
    pub next_run_ms: Option<i64>,
    pub running: bool,
}

impl Engine {
    /// Notes that the GC schedule runs next `every` from now.
    pub(super) fn schedule_gc(&self, every: Duration) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).gc_next_run_ms = next_run(every);
    }

    /// Notes that the sweep schedule runs next `every` from now.
    pub(super) fn schedule_sweep(&self, every: Duration) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sweep_next_run_ms = next_run(every);
    }

    /// Garbage collection and retention sweeps: last and next runs.
    pub fn runs(&self) -> (Run, Run) {
        let p = self.progress();
        let gc = Run {
            interval_ms: self.cfg.gc.interval.as_millis() as u64,
            runs: p.gc_runs,
            last_run_ms: p.gc_last_run_ms,
            last_elapsed_ms: p.gc_last_elapsed_ms,
            next_run_ms: p.gc_next_run_ms,
            running: self.gc_running.try_lock().is_err(),
        };
        let sweep = Run {
            interval_ms: self.cfg.retention.sweep_interval.as_millis() as u64,
            runs: p.sweep_runs,
            last_run_ms: p.sweep_last_run_ms,
            last_elapsed_ms: p.sweep_last_elapsed_ms,
            next_run_ms: p.sweep_next_run_ms,
            running: self.sweep_running.try_lock().is_err(),
        };
        (gc, sweep)
    }
}

/// `every` from now (Unix ms); None if `every` is zero (not scheduled).
fn next_run(every: Duration) -> Option<i64> {
    (!every.is_zero()).then(|| crate::now_ms().saturating_add(every.as_millis() as i64))
}
