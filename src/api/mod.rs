//! The gRPC surface: the only module that knows tonic and prost. Services,
//! pb <-> domain conversion, `Error` -> `Status`, and the client the CLI,
//! tools and tests use.

mod admin;
mod blob;
mod catalog;
pub mod client;
mod server;

pub use server::serve;

use tonic::{Code, Status};

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

/// Who makes a change, for the audit trail. Until tokens exist every
/// caller is `anonymous`.
fn actor<T>(_req: &tonic::Request<T>) -> String {
    "anonymous".to_string()
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
