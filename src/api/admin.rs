//! `AdminService`: operator views of the whole store.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::{self, admin_service_server::AdminService};
use super::status;
use crate::engine::Engine;

pub struct AdminApi {
    pub engine: Arc<Engine>,
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn stats(&self, _req: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
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
        }))
    }
}
