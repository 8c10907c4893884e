//! `ReportService`: capacity reports.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::{self, report_service_server::ReportService};
use super::{allow, allow_everywhere, status};
use crate::auth::Scope;
use crate::engine::Engine;
use crate::error::Error;
use crate::report::{self, By, Query};

pub struct ReportApi {
    pub engine: Arc<Engine>,
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn capacity(&self, req: Request<pb::CapacityRequest>) -> Result<Response<pb::CapacityReport>, Status> {
        let r = req.get_ref();
        super::bounded("by", &r.by, 32)?;
        let p = match r.namespace.as_str() {
            "" if !r.project.is_empty() => {
                return Err(status(Error::invalid("a project report needs its namespace")));
            }
            "" => allow_everywhere(&req, Scope::Read)?,
            ns => {
                crate::catalog::model::validate_namespace(ns).map_err(status)?;
                allow(&req, Scope::Read, ns)?
            }
        };
        if r.recompute {
            p.require_everywhere(Scope::Admin).map_err(|e| {
                status(Error::PermissionDenied(format!(
                    "a recompute walks the whole catalog, so it needs the admin scope over every namespace: {e}"
                )))
            })?;
        }
        // A token without a grant over every namespace gets its tenant's
        // view: nothing in it moves with what other namespaces hold.
        let tenant = !p.sees_everything();
        let r = req.into_inner();
        let q = Query {
            by: r.by.parse::<By>().map_err(status)?,
            namespace: (!r.namespace.is_empty()).then_some(r.namespace),
            project: (!r.project.is_empty()).then_some(r.project),
            top: r.top as usize,
            recompute: r.recompute,
            tenant,
            freeable: r.freeable,
        };
        let store_wide = q.namespace.is_none();
        let rep = self.engine.capacity(q).await.map_err(status)?;
        let mut out = report_to(rep);
        out.namespace_scoped = tenant;
        out.generated_ms = crate::now_ms();
        out.daemon = Some(self.daemon(store_wide && !tenant));
        let (gc, sweep) = self.engine.runs();
        (out.gc, out.sweep) = (Some(run_to(gc)), Some(run_to(sweep)));
        Ok(Response::new(out))
    }
}

impl ReportApi {
    /// The daemon's version and start; its data dir and host only to a
    /// caller granted every namespace.
    fn daemon(&self, store_wide: bool) -> pb::DaemonInfo {
        let mut d = pb::DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: self.engine.progress().started_ms,
            ..Default::default()
        };
        if store_wide {
            d.data_dir = self.engine.config().data_dir.display().to_string();
            d.host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
        }
        d
    }
}

fn run_to(r: crate::engine::Run) -> pb::BackgroundRun {
    pb::BackgroundRun {
        interval_ms: r.interval_ms,
        runs: r.runs,
        last_run_ms: r.last_run_ms,
        last_elapsed_ms: r.last_elapsed_ms,
        next_run_ms: r.next_run_ms,
        running: r.running,
    }
}

fn freeable_to(f: crate::retention::freeable::Freeable) -> pb::Freeable {
    let idle = |i: crate::retention::freeable::Idle| pb::IdlePackages {
        packages: i.packages,
        files: i.files,
        logical_bytes: i.logical_bytes,
        exclusive_bytes: i.exclusive_bytes,
        largest: i
            .largest
            .into_iter()
            .map(|p| pb::IdlePackage {
                package: p.package,
                files: p.files,
                logical_bytes: p.logical_bytes,
                exclusive_bytes: p.exclusive_bytes,
                last_download_ms: p.last_download_ms,
            })
            .collect(),
    };
    pb::Freeable {
        idle_days: f.idle_days,
        never_downloaded: Some(idle(f.never_downloaded)),
        not_downloaded: Some(idle(f.not_downloaded)),
        policies: f
            .policies
            .into_iter()
            .map(|p| pb::PolicyFreed {
                policy: p.policy,
                namespace: p.namespace,
                project: p.project,
                versions: p.versions,
                files: p.files,
                logical_bytes: p.logical_bytes,
                unique_bytes: p.unique_bytes,
                physical_bytes: p.physical_bytes,
            })
            .collect(),
    }
}

pub fn report_to(r: report::Report) -> pb::CapacityReport {
    let s = r.summary;
    pb::CapacityReport {
        by: format!("{:?}", r.by).to_lowercase(),
        summary: Some(pb::CapacitySummary {
            binaries_count: s.binaries_count,
            binaries_bytes: s.binaries_bytes,
            artifacts_count: s.artifacts_count,
            artifacts_bytes: s.artifacts_bytes,
            optimization_percent: s.optimization_percent,
            logical_bytes: s.logical_bytes,
            physical_bytes: s.physical_bytes,
            trash_bytes: s.trash_bytes,
            condemned_bytes: s.condemned_bytes,
            dead_bytes: s.dead_bytes,
            packs: s.packs,
            pack_bytes: s.pack_bytes,
            fragmentation: s.fragmentation,
            free_disk_bytes: s.free_disk_bytes,
            unique_bytes: s.unique_bytes,
            dedup_ratio: s.dedup_ratio,
            compression_ratio: s.compression_ratio,
            space: s.space.as_ref().map(super::admin::space_to),
            optimize: s.optimize.as_ref().map(super::admin::optimize_totals_to),
        }),
        groups: r
            .groups
            .into_iter()
            .map(|g| pb::CapacityGroup {
                key: g.key,
                packages: g.packages,
                versions: g.versions,
                files: g.files,
                logical_bytes: g.logical_bytes,
                unique_bytes: g.unique_bytes,
                physical_bytes: g.physical_bytes,
                exclusive_bytes: g.exclusive_bytes,
                shared_bytes: g.shared_bytes,
                trash_files: g.trash_files,
                trash_bytes: g.trash_bytes,
                dedup_ratio: g.dedup_ratio,
                compression_ratio: g.compression_ratio,
            })
            .collect(),
        elapsed_ms: r.elapsed_ms,
        recomputed: r.recomputed,
        drift: r
            .drift
            .into_iter()
            .map(|d| pb::Drift {
                record: d.record,
                field: d.field,
                stored: d.stored,
                recomputed: d.recomputed,
            })
            .collect(),
        days: r.trends.days.iter().map(day_to).collect(),
        growth_30d: Some(growth_to(&r.trends.growth_30d)),
        growth_90d: Some(growth_to(&r.trends.growth_90d)),
        fastest_growing: r
            .trends
            .fastest_growing
            .into_iter()
            .map(|p| pb::PackageGrowth {
                package: p.package,
                bytes: p.bytes,
                growth_30d: p.growth_30d,
            })
            .collect(),
        freeable: r.freeable.map(freeable_to),
        ..Default::default()
    }
}

fn day_to(d: &report::DayUsage) -> pb::DayUsage {
    pb::DayUsage {
        day: d.day,
        logical_bytes: d.logical_bytes,
        unique_bytes: d.unique_bytes,
        physical_bytes: d.physical_bytes,
        pack_bytes: d.pack_bytes,
        files: d.files,
        file_bytes: d.file_bytes,
        packages: d.packages,
    }
}

fn growth_to(g: &report::Growth) -> pb::Growth {
    pb::Growth {
        days: g.days,
        since_day: g.since_day,
        file_bytes: g.file_bytes,
        physical_bytes: g.physical_bytes,
    }
}
