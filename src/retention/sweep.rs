//! Sweeps: a plan carried out. Every removal is a soft delete through the
//! committer (restorable for the trash window, one audit event each, actor
//! [`super::ACTOR`]), at most `retention.sweep_rate` per second so uploads
//! and reads keep their latency.
//!
//! Resumable: the sweep records itself in the index (`S`) before it starts
//! and clears the record when it ends. A daemon that finds the record at
//! start runs the sweep again. Replanning is idempotent: what was deleted
//! is no longer active, so it is neither planned nor counted again, and the
//! versions kept by `keep_latest` are the same.
//!
//! This module holds the sweep's records and its plan-item targets; the
//! driver is `Engine::sweep` in `engine/sweep.rs`.

use serde::{Deserialize, Serialize};

use super::plan::PlanItem;
use crate::catalog::{FileRef, PkgRef, Target, VerRef};
use crate::error::Result;

/// Deletions submitted together (the committer folds them into one batch).
pub(crate) const GROUP: usize = 32;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepProgress {
    /// Removals planned, and done so far (deleted or skipped).
    pub total: u64,
    pub done: u64,
    pub versions_deleted: u64,
    pub files_deleted: u64,
    /// Removals that no longer applied (deleted meanwhile by someone else).
    pub skipped: u64,
    pub logical_bytes: u64,
    pub finished: bool,
}

/// The sweep in progress, as recorded for a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SweepRecord {
    pub policy: Option<String>,
    pub namespace: Option<String>,
    pub started_ms: i64,
}

pub(crate) fn target(it: &PlanItem) -> Result<Target> {
    let ver = VerRef {
        pkg: PkgRef {
            namespace: it.namespace.clone(),
            project: it.project.clone(),
            ty: it.package_type.parse()?,
            name: it.package.clone(),
        },
        version: it.version.clone(),
    };
    Ok(match it.action {
        "delete-version" => Target::Version(ver),
        _ => Target::File(FileRef {
            ver,
            file_id: it.file_id,
        }),
    })
}
