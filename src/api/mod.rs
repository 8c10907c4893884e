//! The gRPC surface: the only module that knows tonic and prost. Services,
//! pb <-> domain conversion, `Error` -> `Status`, and the client the CLI,
//! tools and tests use.

mod admin;
mod blob;
mod catalog;
pub mod client;
mod decode;
pub mod metrics;
mod report;
pub mod retention;
mod server;

pub use server::{LISTEN_ADDR_FILE, Listeners, METRICS_ADDR_FILE, bind, serve};

use std::sync::Arc;

use tonic::{Code, Status};

use crate::auth::{Auth, Principal, Scope};

use crate::error::Error;
use crate::hash::{FileDigests, Hash};

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("stowage.v1");
    /// Encoded descriptors of every stowage proto, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/stowage_descriptor.bin"));
}

/// The one place errors become gRPC statuses.
pub fn status(e: Error) -> Status {
    let code = match &e {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::ResourceExhausted(_) | Error::DiskFull(_) => Code::ResourceExhausted,
        Error::Timeout(_) => Code::DeadlineExceeded,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::OutOfRange(_) => Code::OutOfRange,
        Error::Corrupt(_) => Code::DataLoss,
        // The pack store is a remote service: its failures are worth a retry.
        Error::Unavailable(_) | Error::ObjectStore(_) => Code::Unavailable,
        Error::Io(_) | Error::Index(_) | Error::Internal(_) => Code::Internal,
    };
    if matches!(code, Code::Internal | Code::Unavailable) {
        tracing::error!(error = %e, "internal error");
    }
    Status::new(code, e.to_string())
}

/// Authenticates every request of a service: the caller's [`Principal`]
/// goes into the request's extensions for the handler's scope check.
#[derive(Clone)]
pub struct Authenticate(pub Arc<Auth>);

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let p = self.0.authenticate(header).map_err(status)?;
        req.extensions_mut().insert(p);
        Ok(req)
    }
}

/// What a broken upload stream means: a malformed message (INVALID_ARGUMENT)
/// or one over the size limit (RESOURCE_EXHAUSTED, saying so) is the
/// caller's; anything else is the connection's.
fn stream_error(s: Status) -> Error {
    if let Some(d) = decode::request_status(&s)
        && d.code() == Code::InvalidArgument
    {
        return Error::invalid(d.message().to_string());
    }
    match s.code() {
        Code::OutOfRange | Code::ResourceExhausted => Error::ResourceExhausted(format!(
            "a message of the upload is over the {} MiB limit: {}",
            server::MAX_MESSAGE >> 20,
            s.message()
        )),
        _ => Error::Unavailable(format!("upload stream failed: {}", s.message())),
    }
}

/// The next message of an upload stream read by a handler (the header,
/// the end of a by-hash publish). A client that opens the stream and sends
/// nothing is cut off after `idle`, like one that stalls mid-upload.
async fn recv<T>(stream: &mut tonic::Streaming<T>, idle: std::time::Duration) -> Result<Option<T>, Status> {
    match tokio::time::timeout(idle, stream.message()).await {
        Ok(m) => m.map_err(|s| status(stream_error(s))),
        Err(_) => Err(status(Error::Timeout(format!("the upload sent nothing for {idle:?}")))),
    }
}

/// A streaming request's body, and an empty request that keeps its
/// extensions (the caller) for checks made once the header has arrived.
fn split<T>(req: tonic::Request<T>) -> (tonic::Request<()>, T) {
    let (meta, ext, body) = req.into_parts();
    (tonic::Request::from_parts(meta, ext, ()), body)
}

/// The authenticated caller of a request.
fn principal<T>(req: &tonic::Request<T>) -> Result<Arc<Principal>, Status> {
    req.extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))
}

/// Checks the caller may do `scope` in `ns`; returns who it is.
fn allow<T>(req: &tonic::Request<T>, scope: Scope, ns: &str) -> Result<Arc<Principal>, Status> {
    let p = principal(req)?;
    p.require(scope, ns).map_err(status)?;
    Ok(p)
}

/// Checks the caller holds `scope` in some namespace.
fn allow_scope<T>(req: &tonic::Request<T>, scope: Scope) -> Result<Arc<Principal>, Status> {
    let p = principal(req)?;
    p.require_scope(scope).map_err(status)?;
    Ok(p)
}

/// Checks the caller holds `scope` over every namespace (store-wide requests).
fn allow_everywhere<T>(req: &tonic::Request<T>, scope: Scope) -> Result<Arc<Principal>, Status> {
    let p = principal(req)?;
    p.require_everywhere(scope).map_err(status)?;
    Ok(p)
}

/// What an upload's answer may say about the rest of the store: a token
/// limited to some namespaces learns only whether its namespace held the
/// blob, not whether another tenant stored it or its chunks (`new` is per
/// namespace, `added_bytes` is 0). Returns (new, added_bytes).
fn put_answer(p: &Principal, out: &crate::ingest::PutOutcome) -> (bool, u64) {
    match p.sees_everything() {
        true => (out.new, out.added_bytes),
        false => (out.new_to_namespace, 0),
    }
}

/// Longest filter string a listing takes (a name, project, actor, action).
const MAX_FILTER: usize = 255;

/// Refuses a request string over `max` bytes before anything uses it.
fn bounded(what: &str, s: &str, max: usize) -> Result<(), Status> {
    match s.len() > max {
        true => Err(status(Error::invalid(format!(
            "{what} is {} bytes, the limit is {max}",
            s.len()
        )))),
        false => Ok(()),
    }
}

fn parse_hash(s: &str, what: &str) -> Result<Hash, Status> {
    Hash::from_hex(s).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
}

fn pb_digests(d: &FileDigests) -> pb::Digests {
    pb::Digests {
        blake3: d.blake3.to_hex(),
        sha256: hex::encode(d.sha256),
        sha1: d.sha1.map(hex::encode),
        sha512: d.sha512.map(hex::encode),
        md5: d.md5.map(hex::encode),
    }
}

/// Fuzzing entry (`stowage::fuzz::request`): the first byte picks a request
/// type, the rest is its protobuf encoding; the request goes through the
/// decoding and checks its handler makes before touching the store.
#[doc(hidden)]
pub fn fuzz_request(data: &[u8]) {
    use crate::catalog::{model, read, records, rules};
    use prost::Message;
    let Some((&which, b)) = data.split_first() else { return };
    let ns_ok = |ns: &str| crate::catalog::model::validate_namespace(ns).is_ok();
    match which % 7 {
        0 => {
            if let Ok(h) = pb::PutHeader::decode(b)
                && let Ok(spec) = blob::spec_from_header(h)
            {
                let _ = ns_ok(&spec.namespace);
            }
        }
        1 => {
            if let Ok(h) = pb::PublishFileHeader::decode(b) {
                let _ = catalog::ver_ref(h.version).map(|v| v.validate());
                let _ = model::validate_file_name(&h.file_name);
                let _ = parse_hash(&h.blake3, "blake3");
                let _ = h.upload.map(blob::spec_from_header);
            }
        }
        2 => {
            if let Ok(r) = pb::ListPackagesRequest::decode(b)
                && ns_ok(&r.namespace)
            {
                let _ = catalog::optional_type(r.r#type);
                let _ = catalog::state(r.state);
                let _ = read::key_token(&r.page_token, &records::namespace_prefix(&r.namespace));
            }
        }
        3 => {
            if let Ok(r) = pb::ListVersionsRequest::decode(b) {
                let _ = catalog::pkg_ref(r.package).map(|p| p.validate());
                let _ = catalog::state(r.state);
                let _ = read::id_token(&r.page_token);
            }
        }
        4 => {
            if let Ok(f) = pb::FileRef::decode(b) {
                let _ = catalog::file_ref(f).map(|f| f.ver.validate());
            }
        }
        5 => {
            if let Ok(p) = pb::DuplicatePolicy::decode(b) {
                let _ = catalog::package_type(p.r#type);
                if let Ok(re) = rules::compile(&p.exception_regex) {
                    let _ = re.is_match(&p.namespace);
                }
            }
        }
        _ => {
            // An `authorization` value, and a namespace for a known token's
            // namespace check.
            static AUTH: std::sync::OnceLock<(Auth, String)> = std::sync::OnceLock::new();
            let (auth, token) = AUTH.get_or_init(|| {
                let dir = std::env::temp_dir().join(format!("stowage-fuzz-{}", std::process::id()));
                let (token, hash) = crate::auth::generate();
                let entry = crate::auth::TokenEntry {
                    id: "fe".into(),
                    hash,
                    scopes: [Scope::Read, Scope::Write].into(),
                    namespaces: vec!["acme/*".into(), "solo".into()],
                };
                (Auth::load(&[entry], &dir).expect("fuzz auth"), token)
            });
            let text = String::from_utf8_lossy(b);
            let (header, ns) = text.split_once('\n').unwrap_or((&text, ""));
            let _ = auth.authenticate(Some(header));
            let p = auth
                .authenticate(Some(&format!("Bearer {token}")))
                .expect("the fuzz token");
            if p.require(Scope::Write, ns).is_ok() {
                assert!(ns == "solo" || ns == "acme" || ns.starts_with("acme/"), "{ns:?} let in");
            }
        }
    }
}
