//! The catalog changes the committer applies (`CatalogOp`) and what they
//! answer (`CatalogOutcome`). Plain data.

use super::model::{FileRef, PackageType, PkgRef, VerRef};
use super::records::{DupPolicy, FileRec};
use crate::hash::{FileDigests, Hash};

#[derive(Clone, Debug)]
pub enum Target {
    Package(PkgRef),
    Version(VerRef),
    File(FileRef),
}

#[derive(Clone, Debug)]
pub enum CatalogOp {
    Publish {
        at: VerRef,
        file_name: String,
        blob: Hash,
        /// Digests the upload computed (may hold extras the manifest lacks).
        digests: Option<Box<FileDigests>>,
        actor: String,
    },
    Delete {
        target: Target,
        actor: String,
    },
    Restore {
        target: Target,
        actor: String,
    },
    Download(FileRef),
    SetPolicy {
        namespace: String,
        ty: PackageType,
        policy: DupPolicy,
        actor: String,
    },
    /// Purges expired trash and ended leases, up to `budget` items. Runs
    /// alone in its batch: it scans committed state. With `now`, every
    /// trash item in its scope is purged, whatever the trash window, from
    /// the trash key `after` on (where the last batch stopped).
    Purge {
        actor: String,
        budget: usize,
        now: Option<PurgeScope>,
        after: Option<Vec<u8>>,
    },
    /// Stores (Some) or removes (None) a retention policy, already
    /// validated and encoded by `crate::retention`.
    SetRetentionPolicy {
        name: String,
        namespace: String,
        policy: Option<Vec<u8>>,
        actor: String,
    },
    /// Records (Some) or clears (None) the retention sweep in progress.
    SweepState(Option<Vec<u8>>),
    /// Records when a background job's run ended and how long it took.
    LastRun {
        job: super::records::Job,
        ended_ms: i64,
        elapsed_ms: u64,
    },
    /// Keeps a day's usage (`D` day) and each package's bytes that day
    /// (`E` day pkg), for trends; drops days older than `keep_days`.
    DailyUsage {
        day: u64,
        usage: Vec<u8>,
        /// Each namespace's usage that day (`N` ns 0 day).
        namespaces: Vec<(String, Vec<u8>)>,
        packages: Vec<(u64, u64)>,
        keep_days: u64,
    },
}

impl CatalogOp {
    /// Must run in a batch of its own.
    pub fn exclusive(&self) -> bool {
        matches!(self, CatalogOp::Purge { .. })
    }
}

/// What `admin purge --now` empties: a namespace's trash, or one
/// project's, or one package's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeScope {
    /// None: every namespace.
    pub namespace: Option<String>,
    pub project: Option<String>,
    pub package: Option<(PackageType, String)>,
}

impl PurgeScope {
    pub fn holds(&self, p: &PkgRef) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == p.namespace)
            && self.project.as_deref().is_none_or(|pr| pr == p.project)
            && self.package.as_ref().is_none_or(|(t, n)| *t == p.ty && *n == p.name)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeCounts {
    pub packages: u64,
    pub versions: u64,
    pub files: u64,
    pub references_released: u64,
    pub blobs_unreferenced: u64,
    /// Stored bytes of the chunks this purge condemned (no blob uses them
    /// any more): collected by GC once their grace period ends.
    pub bytes_condemned: u64,
    /// The budget ran out before everything due was purged.
    #[serde(skip)]
    pub more: bool,
    /// With `more`: the trash key the next batch starts after.
    #[serde(skip)]
    pub resume: Option<Vec<u8>>,
    /// The (namespace, blob) references a purged file released, to say
    /// afterwards what still holds them.
    #[serde(skip)]
    pub touched: Vec<(String, Hash)>,
}

impl PurgeCounts {
    pub fn add(&mut self, o: &PurgeCounts) {
        self.packages += o.packages;
        self.versions += o.versions;
        self.files += o.files;
        self.references_released += o.references_released;
        self.blobs_unreferenced += o.blobs_unreferenced;
        self.bytes_condemned += o.bytes_condemned;
        self.touched.extend(o.touched.iter().cloned());
    }
}

#[derive(Clone, Debug)]
pub enum CatalogOutcome {
    Published {
        file: FileView,
        package_created: bool,
        version_created: bool,
    },
    File(FileView),
    Done,
    Purged(PurgeCounts),
}

#[derive(Clone, Debug)]
pub struct FileView {
    pub id: u64,
    pub rec: FileRec,
}
