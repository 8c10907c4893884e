//! The crate error: the variants callers act on. `api::status` maps it to gRPC.

use std::io;
use std::path::Path;

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
    /// A disk (or quota) is full: ENOSPC or EDQUOT from a pack or index
    /// write. The message names the path. Answered RESOURCE_EXHAUSTED.
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("i/o: {0}")]
    Io(io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The index (RocksDB) failed; the message comes from `index/`.
    #[error("index: {0}")]
    Index(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// An I/O error becomes [`Error::DiskFull`] when the disk or a quota is
/// full, [`Error::Io`] otherwise. Where the path is known, [`Error::io_at`]
/// names it.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match is_disk_full(&e) {
            true => Error::DiskFull(e.to_string()),
            false => Error::Io(e),
        }
    }
}

/// ENOSPC or EDQUOT, however the platform spells it.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28 | 122))
}

impl Error {
    /// An I/O failure on `path`: a full disk says so and where.
    pub fn io_at(path: &Path, e: io::Error) -> Self {
        match is_disk_full(&e) {
            true => Error::DiskFull(format!("no space left writing {}: {e}", path.display())),
            false => Error::Io(e),
        }
    }

    /// A failure of the storage underneath (disk, index, pack store): it
    /// fails a whole commit group rather than one request.
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::Index(_) | Error::ObjectStore(_) | Error::DiskFull(_)
        )
    }

    /// What each request of a commit group that failed as a whole hears: a
    /// full disk or a damaged index says so; anything else is worth a retry.
    pub fn group_failure(&self) -> Self {
        match self {
            Error::DiskFull(m) => Error::DiskFull(m.clone()),
            Error::Corrupt(m) => Error::Corrupt(m.clone()),
            e => Error::Unavailable(format!("commit failed: {e}")),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }
}
