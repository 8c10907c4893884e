//! The package catalog: namespace → project → package (type, name) →
//! version → files, with soft delete into a trash, restore, purge, upload
//! leases, duplicate policies and the audit trail.
//!
//! - [`model`]: coordinates, package types, name validation. Pure.
//! - [`records`]: stored values and key layouts. Pure.
//! - [`apply`]: every catalog change, run by the committer (the one index
//!   writer) so reference counts change in the same batch as the catalog.
//! - [`read`]: listings and lookups, straight from the index.
//! - [`check`]: recomputes every count from the catalog on a snapshot.

pub mod apply;
pub mod check;
pub mod model;
pub mod read;
pub mod records;

pub use apply::{CatalogOp, CatalogOutcome, PurgeCounts, Target};
pub use check::CheckReport;
pub use model::{FileRef, PackageType, PkgRef, State, VerRef};
pub use read::{FileView, PackageSort, PackageView, Page, VersionView};
pub use records::{DupPolicy, EventRec};
