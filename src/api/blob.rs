//! `BlobService` and `AdminService` over the engine.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::pb::{self, blob_service_server::BlobService, put_request::Msg};
use super::{allow, allow_scope, parse_hash, pb_digests, put_answer, recv, split, status};
use crate::auth::Scope;
use crate::engine::Engine;
use crate::error::Error;
use crate::hash::ExtraDigests;
use crate::ingest::PutSpec;

/// Longest media type a Put header may carry (RFC 6838 allows 127 + 1 + 127).
const MAX_MEDIA_TYPE: usize = 255;
/// Hashes one FindMissing call may ask about.
pub(super) const MAX_FIND: usize = 10_000;

pub struct BlobApi {
    pub engine: Arc<Engine>,
}

pub(super) fn spec_from_header(h: pb::PutHeader) -> Result<PutSpec, Status> {
    if h.digests.len() > 3 {
        return Err(Status::invalid_argument(format!(
            "{} extra digests requested; there are 3 (sha1, sha512, md5)",
            h.digests.len()
        )));
    }
    super::bounded("media_type", &h.media_type, MAX_MEDIA_TYPE)?;
    let mut extra = ExtraDigests::default();
    for d in &h.digests {
        match pb::Digest::try_from(*d) {
            Ok(pb::Digest::Sha1) => extra.sha1 = true,
            Ok(pb::Digest::Sha512) => extra.sha512 = true,
            Ok(pb::Digest::Md5) => extra.md5 = true,
            _ => return Err(Status::invalid_argument(format!("unknown digest {d}"))),
        }
    }
    let expected_sha256 = match h.expected_sha256.as_str() {
        "" => None,
        s => {
            let mut b = [0u8; 32];
            hex::decode_to_slice(s, &mut b)
                .map_err(|_| Status::invalid_argument("expected_sha256 must be 64 hex characters"))?;
            Some(b)
        }
    };
    let expected_blake3 = match h.expected_blake3.as_str() {
        "" => None,
        s => Some(parse_hash(s, "expected_blake3")?),
    };
    Ok(PutSpec {
        namespace: h.namespace,
        expected_size: h.expected_size,
        expected_sha256,
        expected_blake3,
        extra,
        media_type: h.media_type,
        publishing: false,
    })
}

type GetStream = Pin<Box<dyn Stream<Item = Result<pb::GetResponse, Status>> + Send>>;

#[tonic::async_trait]
impl BlobService for BlobApi {
    async fn put(&self, req: Request<Streaming<pb::PutRequest>>) -> Result<Response<pb::PutResponse>, Status> {
        // Only a caller that may write somewhere takes an upload slot.
        let uploader = allow_scope(&req, Scope::Write)?;
        let _slot = self.engine.upload_slot(&uploader.id).map_err(status)?;
        let (req_ext, mut stream) = split(req);
        let header = match recv(&mut stream, self.engine.config().upload_idle_timeout).await? {
            Some(pb::PutRequest {
                msg: Some(Msg::Header(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("the first Put message must be a header")),
        };
        let spec = spec_from_header(header)?;
        let caller = allow(&req_ext, Scope::Write, &spec.namespace)?;
        let span = tracing::info_span!("put", ns = %spec.namespace, blob = tracing::field::Empty);
        let frames = stream.map(|m| match m {
            Ok(pb::PutRequest {
                msg: Some(Msg::Data(d)),
            }) => Ok(d),
            Ok(_) => Err(Error::invalid("only the first Put message may be a header")),
            Err(s) => Err(super::stream_error(s)),
        });
        let out = self
            .engine
            .put(spec, frames)
            .instrument(span.clone())
            .await
            .map_err(status)?;
        span.record("blob", tracing::field::display(&out.digests.blake3));
        tracing::debug!(parent: &span, size = out.size, new = out.new, added = out.added_bytes, "stored");
        let (new, added_bytes) = put_answer(&caller, &out);
        Ok(Response::new(pb::PutResponse {
            digests: Some(pb_digests(&out.digests)),
            size: out.size,
            new,
            added_bytes,
        }))
    }

    type GetStream = GetStream;

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<GetStream>, Status> {
        allow(&req, Scope::Read, &req.get_ref().namespace)?;
        let r = req.into_inner();
        let id = parse_hash(&r.blake3, "blake3")?;
        let (size, rx) = self.engine.get(&r.namespace, &id, r.offset, r.length).map_err(status)?;
        let mut first = Some(size);
        let mut frames = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(move |f| match f {
                Ok(data) => Ok(pb::GetResponse {
                    size: first.take(),
                    data,
                }),
                Err(e) => Err(status(e)),
            })
            .peekable();
        // An empty range still answers with one message carrying the size.
        let head = Pin::new(&mut frames).peek().await.is_none();
        let s: GetStream = if head {
            Box::pin(futures::stream::once(async move {
                Ok(pb::GetResponse {
                    size: Some(size),
                    data: Default::default(),
                })
            }))
        } else {
            Box::pin(frames)
        };
        Ok(Response::new(s))
    }

    async fn stat(&self, req: Request<pb::StatRequest>) -> Result<Response<pb::StatResponse>, Status> {
        allow(&req, Scope::Read, &req.get_ref().namespace)?;
        let r = req.into_inner();
        let id = parse_hash(&r.blake3, "blake3")?;
        let (m, rf) = self.engine.stat(&r.namespace, &id).map_err(status)?;
        Ok(Response::new(pb::StatResponse {
            digests: Some(pb_digests(&m.digests)),
            size: m.size,
            created_unix_ms: rf.created_ms,
            chunks: m.chunks.len() as u32,
        }))
    }

    async fn find_missing(
        &self,
        req: Request<pb::FindMissingRequest>,
    ) -> Result<Response<pb::FindMissingResponse>, Status> {
        allow(&req, Scope::Read, &req.get_ref().namespace)?;
        let r = req.into_inner();
        if r.blake3.len() > MAX_FIND {
            return Err(Status::invalid_argument(format!(
                "FindMissing takes at most {MAX_FIND} hashes per call, not {}",
                r.blake3.len()
            )));
        }
        let ids = r
            .blake3
            .iter()
            .map(|s| parse_hash(s, "blake3"))
            .collect::<Result<Vec<_>, _>>()?;
        let missing = self.engine.find_missing(&r.namespace, &ids).map_err(status)?;
        Ok(Response::new(pb::FindMissingResponse {
            missing: missing.iter().map(|h| h.to_hex()).collect(),
        }))
    }
}
