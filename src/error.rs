//! The crate error: the variants callers act on. `api::status` maps it to gRPC.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or does not match what it claims.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No valid credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Valid credentials without the scope or namespace the request needs.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The caller went quiet for too long (a stalled upload).
    #[error("deadline exceeded: {0}")]
    Timeout(String),
    /// A quota or limit would be exceeded.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request is valid but the target's state forbids it (publishing
    /// into a deleted version, restoring outside the trash window).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A range or offset lies outside the object.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Stored data failed verification. Never answered with wrong bytes.
    #[error("data loss: {0}")]
    Corrupt(String),
    /// The store is shutting down or a dependency is unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The index (RocksDB) failed; the message comes from `index/`.
    #[error("index: {0}")]
    Index(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }
}
