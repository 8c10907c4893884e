//! The sweep driver: a retention plan carried out through the committer,
//! throttled, resumable (see `crate::retention::sweep`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::mpsc;

use super::Engine;
use crate::background::{Next, Worker};
use crate::catalog::CatalogOp;
use crate::catalog::records::{Job, SWEEP_KEY};
use crate::error::{Error, Result};
use crate::index::Cf;
use crate::retention::ACTOR;
use crate::retention::plan::{self, PlanItem};
use crate::retention::sweep::{GROUP, SweepProgress, SweepRecord, target};

impl Engine {
    /// Runs a sweep of one policy or of all (optionally one namespace's),
    /// reporting progress on `progress` if given. One sweep at a time.
    pub async fn sweep(
        self: &Arc<Self>,
        policy: Option<String>,
        namespace: Option<String>,
        progress: Option<mpsc::Sender<SweepProgress>>,
    ) -> Result<SweepProgress> {
        let _one = self.sweep_running.lock().await;
        let began = Instant::now();
        let policies = plan::select(&self.index, policy.as_deref(), namespace.as_deref())?;
        let record = SweepRecord {
            policy,
            namespace,
            started_ms: crate::now_ms(),
        };
        let rec = serde_json::to_vec(&record).map_err(|e| Error::Internal(e.to_string()))?;
        self.catalog(CatalogOp::SweepState(Some(rec))).await?;
        let now = crate::now_ms();
        // First pass: how much there is (for progress); second: do it.
        let this = self.clone();
        let ps = policies.clone();
        let total = tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            plan::plan(&this.index, &ps, now, plan::Freed::Not, &mut |_| {
                n += 1;
                Ok(())
            })
            .map(|_| n)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let mut st = SweepProgress {
            total,
            ..Default::default()
        };
        self.set_sweep_progress(&st);
        let (tx, mut rx) = mpsc::channel::<PlanItem>(4 * GROUP);
        let this = self.clone();
        let walker = tokio::task::spawn_blocking(move || {
            plan::plan(&this.index, &policies, now, plan::Freed::Not, &mut |it| {
                tx.blocking_send(it)
                    .map_err(|_| Error::Unavailable("sweep stopped".into()))
            })
        });
        let rate = self.cfg.retention.sweep_rate.max(1) as f64;
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut group = Vec::with_capacity(GROUP);
        loop {
            group.clear();
            match rx.recv().await {
                Some(it) => group.push(it),
                None => break,
            }
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(it) => group.push(it),
                    Err(_) => break,
                }
            }
            // Throttle: never ahead of `rate` removals per second.
            let due = Duration::from_secs_f64((st.done + group.len() as u64) as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            if self.stop.is_cancelled() {
                return Err(Error::Unavailable(
                    "shutting down; the sweep resumes at the next start".into(),
                ));
            }
            let ops = group.iter().map(|it| async move {
                let op = CatalogOp::Delete {
                    target: target(it)?,
                    actor: ACTOR.into(),
                };
                self.catalog(op).await
            });
            for (it, r) in group.iter().zip(join_all(ops).await) {
                st.done += 1;
                match r {
                    Ok(_) if it.action == "delete-version" => {
                        st.versions_deleted += 1;
                        st.files_deleted += it.files;
                        st.logical_bytes += it.logical_bytes;
                    }
                    Ok(_) => {
                        st.files_deleted += 1;
                        st.logical_bytes += it.logical_bytes;
                    }
                    Err(Error::NotFound(_) | Error::FailedPrecondition(_)) => st.skipped += 1,
                    Err(e) => return Err(e),
                }
            }
            if last_report.elapsed() > Duration::from_millis(200) {
                last_report = Instant::now();
                self.set_sweep_progress(&st);
                if let Some(p) = &progress {
                    let _ = p.try_send(st);
                }
            }
        }
        walker.await.map_err(|e| Error::Internal(e.to_string()))??;
        self.catalog(CatalogOp::SweepState(None)).await?;
        st.finished = true;
        let (ended_ms, elapsed_ms) = (crate::now_ms(), began.elapsed().as_millis() as u64);
        {
            let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            p.sweep_runs += 1;
            p.sweep_versions_deleted += st.versions_deleted;
            p.sweep_files_deleted += st.files_deleted;
            p.sweep_done = 0;
            p.sweep_total = 0;
            p.sweep_last_run_ms = Some(ended_ms);
            p.sweep_last_elapsed_ms = elapsed_ms;
        }
        let job = Job::Sweep;
        self.catalog(CatalogOp::LastRun {
            job,
            ended_ms,
            elapsed_ms,
        })
        .await?;
        if let Some(p) = &progress {
            let _ = p.send(st).await;
        }
        tracing::info!(
            total = st.total,
            done = st.done,
            versions_deleted = st.versions_deleted,
            files_deleted = st.files_deleted,
            skipped = st.skipped,
            logical_bytes = st.logical_bytes,
            finished = st.finished,
            "retention sweep finished"
        );
        Ok(st)
    }

    fn set_sweep_progress(&self, st: &SweepProgress) {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        p.sweep_done = st.done;
        p.sweep_total = st.total;
    }
}

/// Resumes a sweep a restart interrupted, then sweeps every policy each
/// `retention.sweep_interval` (never if zero).
pub(super) struct Sweeper {
    pub engine: Arc<Engine>,
    pub resumed: bool,
}

impl Worker for Sweeper {
    fn name(&self) -> &'static str {
        "retention-sweep"
    }

    async fn work(&mut self) -> Result<Next> {
        let every = self.engine.cfg.retention.sweep_interval;
        if !self.resumed {
            self.resumed = true;
            if let Ok(Some(v)) = self.engine.index.get(Cf::CatalogIdx, SWEEP_KEY) {
                match serde_json::from_slice::<SweepRecord>(&v) {
                    Ok(r) => {
                        tracing::info!(
                            policy = r.policy.as_deref().unwrap_or("*"),
                            "resuming an interrupted retention sweep"
                        );
                        if let Err(e) = self.engine.sweep(r.policy, r.namespace, None).await {
                            tracing::error!(error = %e, "resumed sweep failed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "unreadable sweep record; ignored"),
                }
            }
        } else if let Err(e) = self.engine.sweep(None, None, None).await {
            tracing::error!(error = %e, "scheduled sweep failed");
        }
        self.engine.schedule_sweep(every);
        Ok(if every.is_zero() { Next::Done } else { Next::Idle(every) })
    }
}
