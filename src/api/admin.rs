//! `AdminService`: operator views of the whole store.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb::{self, admin_service_server::AdminService};
use super::{allow_everywhere, status};
use crate::auth::Scope;
use crate::catalog::ops::PurgeScope;
use crate::engine::Engine;

pub struct AdminApi {
    pub engine: Arc<Engine>,
}

type OptimizeStream = Pin<Box<dyn Stream<Item = Result<pb::OptimizeProgress, Status>> + Send>>;

fn optimize_to(p: crate::engine::OptimizeProgress) -> pb::OptimizeProgress {
    pb::OptimizeProgress {
        total: p.total,
        done: p.done,
        optimized: p.optimized,
        optimized_bytes: p.optimized_bytes,
        opaque: p.opaque,
        no_saving: p.no_saving,
        too_large: p.too_large,
        failed: p.failed,
        released_bytes: p.released_bytes,
        added_bytes: p.added_bytes,
        zlib_streams: p.zlib,
        preflate_streams: p.preflate,
        opaque_streams: p.opaque_streams,
        dry_run: p.dry_run,
        finished: p.finished,
        deltas: p.deltas,
        delta_bytes: p.delta_bytes,
        delta_saved_bytes: p.delta_saved_bytes,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn stats(&self, req: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        allow_everywhere(&req, Scope::Admin)?;
        let s = self.engine.stats().map_err(status)?;
        let t = self.engine.totals().map_err(status)?;
        let space = match req.get_ref().space {
            true => Some(space_to(&self.engine.space().await.map_err(status)?)),
            false => None,
        };
        let f = t.figures;
        let o = self.engine.optimize_totals().map_err(status)?;
        Ok(Response::new(pb::StatsResponse {
            optimize: Some(optimize_totals_to(&o)),
            logical_bytes: f.logical_bytes,
            unique_bytes: f.unique_bytes,
            physical_bytes: f.physical_bytes,
            chunks: s.chunks,
            packs: s.packs,
            blobs: s.blobs,
            references: s.references,
            pack_bytes: s.pack_bytes,
            condemned_bytes: s.condemned_bytes,
            dead_bytes: s.dead_bytes,
            dedup_ratio: f.dedup_ratio(),
            compression_ratio: f.compression_ratio(),
            package_count: t.packages,
            version_count: t.versions,
            file_count: t.files,
            trash_files: t.trash_files,
            trash_bytes: t.trash_bytes,
            leased_blobs: t.leased_blobs,
            leased_bytes: t.leased_bytes,
            free_disk_bytes: self.engine.free_disk_bytes(),
            space,
        }))
    }

    async fn check(&self, req: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        allow_everywhere(&req, Scope::Admin)?;
        let r = self.engine.check(req.get_ref().read_data).await.map_err(status)?;
        let data = r.data.unwrap_or_default();
        Ok(Response::new(pb::CheckResponse {
            packages: r.packages,
            versions: r.versions,
            files: r.files,
            references: r.references,
            blobs: r.blobs,
            drift: r.drift,
            quarantined_packs: r.quarantined_packs,
            damage: r
                .damage
                .into_iter()
                .map(|d| pb::PackDamage {
                    pack: format!("{:016x}", d.pack),
                    location: d.location.to_string(),
                    offset: d.offset,
                    problem: d.problem,
                })
                .collect(),
            packs_verified: data.packs,
            records_verified: data.records,
            bytes_verified: data.bytes,
        }))
    }

    type OptimizeStream = OptimizeStream;

    async fn optimize(&self, req: Request<pb::OptimizeRequest>) -> Result<Response<OptimizeStream>, Status> {
        allow_everywhere(&req, Scope::Admin)?;
        let dry_run = req.get_ref().dry_run;
        let (ptx, mut prx) = mpsc::channel(16);
        let (tx, rx) = mpsc::channel::<Result<pb::OptimizeProgress, Status>>(16);
        let engine = self.engine.clone();
        // The pass runs to the end even if the client goes away.
        let run = tokio::spawn(async move { engine.optimize(dry_run, Some(ptx)).await });
        tokio::spawn(async move {
            while let Some(p) = prx.recv().await {
                let _ = tx.send(Ok(optimize_to(p))).await;
            }
            if let Ok(Err(e)) = run.await {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn purge(&self, req: Request<pb::PurgeRequest>) -> Result<Response<pb::PurgeResponse>, Status> {
        let actor = allow_everywhere(&req, Scope::Admin)?.id.clone();
        let now = purge_scope(req.get_ref())?;
        let (c, h) = self.engine.purge(&actor, now).await.map_err(status)?;
        let held = |b: crate::engine::Blobs| {
            Some(pb::HeldBlobs {
                blobs: b.blobs,
                bytes: b.bytes,
            })
        };
        Ok(Response::new(pb::PurgeResponse {
            packages: c.packages,
            versions: c.versions,
            files: c.files,
            references_released: c.references_released,
            blobs_unreferenced: c.blobs_unreferenced,
            bytes_condemned: c.bytes_condemned,
            collectable_after_unix_ms: h.collectable_after_ms,
            held_by_files: held(h.by_files),
            held_by_lease: held(h.by_lease),
            lease_until_unix_ms: h.lease_until_ms,
            held_by_other_namespaces: held(h.by_other_namespaces),
            trash_files: h.trash_files,
            trash_bytes: h.trash_bytes,
            trash_next_due_unix_ms: h.trash_next_due_ms,
            held_complete: h.complete,
        }))
    }
}

/// The scope of `purge --now` (None without `now`); each level needs the one above.
fn purge_scope(r: &pb::PurgeRequest) -> Result<Option<PurgeScope>, Status> {
    let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
    if !r.now {
        return match (given(&r.namespace), given(&r.project), r.r#type, given(&r.name)) {
            (None, None, 0, None) => Ok(None),
            _ => Err(Status::invalid_argument(
                "a purge scope (namespace, project, package) needs now: only `purge --now` is scoped",
            )),
        };
    }
    let package = match (r.r#type, given(&r.name)) {
        (0, None) => None,
        (0, Some(_)) | (_, None) => {
            return Err(Status::invalid_argument(
                "a package to purge needs both its type and its name",
            ));
        }
        (t, Some(name)) => Some((super::catalog::package_type(t)?, name)),
    };
    let scope = PurgeScope {
        namespace: given(&r.namespace),
        project: given(&r.project),
        package,
    };
    if scope.package.is_some() && scope.project.is_none() {
        return Err(Status::invalid_argument("a package to purge needs its project"));
    }
    if scope.project.is_some() && scope.namespace.is_none() {
        return Err(Status::invalid_argument("a project to purge needs its namespace"));
    }
    Ok(Some(scope))
}

pub(super) fn optimize_totals_to(o: &crate::catalog::optimized::Totals) -> pb::OptimizeTotals {
    pb::OptimizeTotals {
        optimized_blobs: o.optimized_blobs,
        optimized_bytes: o.optimized_bytes,
        zip_bytes: o.zip_bytes,
        gzip_bytes: o.gzip_bytes,
        tar_bytes: o.tar_bytes,
        nested_bytes: o.nested_bytes,
        zlib_streams: o.zlib_streams,
        preflate_streams: o.preflate_streams,
        opaque_streams: o.opaque_streams,
        raw_blobs: o.raw_blobs,
        raw_bytes: o.raw_bytes,
        released_bytes: o.released_bytes,
        added_bytes: o.added_bytes,
    }
}

pub(super) fn space_to(s: &crate::space::Space) -> pb::StoreSpace {
    pb::StoreSpace {
        active_bytes: s.active_bytes,
        trash_bytes: s.trash_bytes,
        lease_bytes: s.lease_bytes,
        condemned_bytes: s.condemned_bytes,
        dead_bytes: s.dead_bytes,
        retired_pack_bytes: s.retired_pack_bytes,
        pack_overhead_bytes: s.pack_overhead_bytes,
        pack_bytes: s.pack_bytes,
        packs_elsewhere_bytes: s.packs_elsewhere_bytes,
        index_bytes: s.index_bytes,
        daemon_files_bytes: s.daemon_files_bytes,
        other_bytes: s.other_bytes,
        total_bytes: s.total_bytes,
        data_dir_bytes: s.data_dir_bytes,
    }
}
