//! Upload admission: a slot per upload (store-wide and per token), the idle
//! timeout, and publishing a streamed upload as a catalog file.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::Engine;
use crate::catalog::{self, CatalogOp, CatalogOutcome, VerRef, model::validate_namespace};
use crate::error::{Error, Result};
use crate::ingest::{PutOutcome, PutSpec};

/// Held while an upload is served; dropping it frees the slots.
pub struct UploadSlot {
    _token: tokio::sync::OwnedSemaphorePermit,
    _store: tokio::sync::OwnedSemaphorePermit,
}

impl Engine {
    pub async fn put<S>(&self, spec: PutSpec, frames: S) -> Result<PutOutcome>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        validate_namespace(&spec.namespace)?;
        // A stalled client must not hold a worker, a semaphore permit and
        // pending chunks forever.
        let idle = self.cfg.upload_idle_timeout;
        let frames = Box::pin(tokio_stream::StreamExt::timeout(frames, idle).map(move |f| match f {
            Ok(frame) => frame,
            Err(_) => Err(Error::Timeout(format!("the upload sent nothing for {idle:?}"))),
        }));
        // Nor may one send frames without bytes, or bytes too slowly.
        let limits = crate::ingest::pace::PaceLimits {
            min_rate: self.cfg.upload_min_rate.as_u64(),
            grace: self.cfg.upload_rate_grace,
        };
        let frames = crate::ingest::pace::Paced::new(frames, limits);
        let r = self.ingest.put(spec, frames).await;
        r.inspect_err(|e| self.disk.note(e))
    }

    /// A slot for one more upload, or RESOURCE_EXHAUSTED when
    /// `max_concurrent_uploads` are already being served: a flood of
    /// uploads is turned away, not queued behind the ones in progress.
    /// A token may hold at most `max_uploads_per_token` of them, so one
    /// tenant cannot take every slot.
    pub fn upload_slot(&self, token_id: &str) -> Result<UploadSlot> {
        // After a write found the disk full, refuse before any byte is sent.
        self.disk.admit()?;
        let per_token = {
            let mut m = self.token_uploads.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(token_id.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.cfg.max_uploads_per_token)))
                .clone()
        };
        let token = per_token.try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "token {token_id:?} has {} uploads in progress (max_uploads_per_token); retry later",
                self.cfg.max_uploads_per_token
            ))
        })?;
        let store = self.uploads.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "too many uploads in progress (max_concurrent_uploads = {}); retry later",
                self.cfg.max_concurrent_uploads
            ))
        })?;
        Ok(UploadSlot {
            _token: token,
            _store: store,
        })
    }

    /// Streams a blob in and publishes it as a file of `at` in one call.
    /// What the commit would refuse now (a deleted target, a duplicate the
    /// policy forbids) is refused before any byte is stored; if a racing
    /// change wins after the upload, the blob stays only under its upload
    /// lease and the error is returned.
    pub async fn publish_stream<S>(
        &self,
        at: VerRef,
        file_name: String,
        mut spec: PutSpec,
        frames: S,
        actor: String,
    ) -> Result<(CatalogOutcome, PutOutcome)>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        at.validate()?;
        catalog::model::validate_file_name(&file_name)?;
        catalog::read::precheck_publish(&self.index, &at, &file_name)?;
        spec.namespace = at.pkg.namespace.clone();
        spec.publishing = true;
        let put = self.put(spec, frames).await?;
        let op = CatalogOp::Publish {
            at,
            file_name,
            blob: put.digests.blake3,
            digests: Some(Box::new(put.digests.clone())),
            actor,
        };
        Ok((self.catalog(op).await?, put))
    }
}
