//! `AdminService`: operator views of the whole store.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::{self, admin_service_server::AdminService};
use super::{allow_everywhere, status};
use crate::auth::Scope;
use crate::engine::Engine;

pub struct AdminApi {
    pub engine: Arc<Engine>,
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn stats(&self, req: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        allow_everywhere(&req, Scope::Admin)?;
        let s = self.engine.stats().map_err(status)?;
        Ok(Response::new(pb::StatsResponse {
            logical_bytes: s.logical_bytes,
            unique_bytes: s.unique_bytes,
            physical_bytes: s.physical_bytes,
            chunks: s.chunks,
            packs: s.packs,
            blobs: s.blobs,
            references: s.references,
            pack_bytes: s.pack_bytes,
            condemned_bytes: s.condemned_bytes,
            dead_bytes: s.dead_bytes,
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

    async fn purge(&self, req: Request<pb::PurgeRequest>) -> Result<Response<pb::PurgeResponse>, Status> {
        let actor = allow_everywhere(&req, Scope::Admin)?.id.clone();
        let c = self.engine.purge(&actor).await.map_err(status)?;
        Ok(Response::new(pb::PurgeResponse {
            packages: c.packages,
            versions: c.versions,
            files: c.files,
            references_released: c.references_released,
            blobs_unreferenced: c.blobs_unreferenced,
        }))
    }
}
