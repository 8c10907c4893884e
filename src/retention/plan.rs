//! Plans: what policies would remove, and what that would free.
//!
//! The walk reads one snapshot, one package at a time (its active versions
//! and files in memory, nothing more of the catalog). Memory grows with the
//! plan, not the store: the ids already planned (so overlapping policies do
//! not count twice), and per blob the planned files that use it.
//!
//! Bytes freed, once the sweep's trash is purged and GC has run (in the
//! terms of `crate::figures`):
//! - `logical_bytes`: sizes of the files removed;
//! - `unique_bytes` and `blobs_freed`: blobs every one of whose files (in
//!   any namespace, active or already in the trash) is in the plan;
//! - `physical_bytes` and `chunks_freed`: stored bytes of the chunks whose
//!   every use is by a freed blob. A chunk a surviving blob shares stays.
//!
//! Upload leases are not counted as holders: they end within `upload_lease`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use super::policy::{Compiled, Removal, Version};
use crate::catalog::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Index, RefInfo, Snapshot, ref_key};
use crate::manifest::Manifest;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    pub policy: String,
    /// "delete-version" or "delete-file".
    pub action: &'static str,
    pub namespace: String,
    pub project: String,
    pub package_type: String,
    pub package: String,
    pub version: String,
    /// The file (delete-file only; 0 for a version).
    pub file_id: u64,
    pub file_name: String,
    /// Active files removed and their bytes.
    pub files: u64,
    pub logical_bytes: u64,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub policies: u64,
    pub packages_scanned: u64,
    pub versions_scanned: u64,
    pub files_scanned: u64,
    /// Versions removed, and files removed (those of removed versions included).
    pub versions: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub blobs_freed: u64,
    pub unique_bytes: u64,
    pub chunks_freed: u64,
    pub physical_bytes: u64,
    pub elapsed_ms: u64,
}

/// A whole plan in memory (for small plans and tests; the API streams).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub summary: PlanSummary,
}

/// Walks the catalog for `policies` and calls `emit` for every removal.
/// With `bytes_freed`, also computes the dedup-aware bytes freed.
pub fn plan(
    index: &Index,
    policies: &[Compiled],
    now_ms: i64,
    bytes_freed: bool,
    emit: &mut dyn FnMut(PlanItem) -> Result<()>,
) -> Result<PlanSummary> {
    let started = Instant::now();
    let snap = index.snapshot();
    let mut sum = PlanSummary {
        policies: policies.len() as u64,
        ..Default::default()
    };
    let mut done_versions: HashSet<u64> = HashSet::new();
    let mut done_files: HashSet<u64> = HashSet::new();
    let mut blobs: HashMap<Hash, u64> = HashMap::new();
    for c in policies {
        let ns = &c.policy.namespace;
        let from = rec::namespace_prefix(ns);
        let to = rec::prefix_end(&from);
        for kv in snap.scan(Cf::Packages, &from, to.as_deref()) {
            let (k, v) = kv?;
            let pkg = rec::parse_package_key(&k)?;
            let p: PackageRec = decode(&v, "package")?;
            if p.deleted_ms.is_some() || !c.covers(&pkg.project, pkg.ty, &pkg.name) {
                continue;
            }
            sum.packages_scanned += 1;
            let vs = active_versions(&snap, p.id, &mut sum)?;
            for r in c.evaluate(pkg.ty, &pkg.name, &vs, now_ms) {
                let item = |v: &Version, reason: String| PlanItem {
                    policy: c.policy.name.clone(),
                    namespace: pkg.namespace.clone(),
                    project: pkg.project.clone(),
                    package_type: pkg.ty.as_str().to_string(),
                    package: pkg.name.clone(),
                    version: v.version.clone(),
                    reason,
                    ..Default::default()
                };
                match r {
                    Removal::Version(i, why) => {
                        let v = &vs[i];
                        if !done_versions.insert(v.id) {
                            continue;
                        }
                        let mut it = item(v, why);
                        it.action = "delete-version";
                        for (fid, f) in &v.files {
                            if done_files.insert(*fid) {
                                it.files += 1;
                                it.logical_bytes += f.size;
                                *blobs.entry(f.blob()).or_default() += 1;
                            }
                        }
                        sum.versions += 1;
                        sum.files += it.files;
                        sum.logical_bytes += it.logical_bytes;
                        emit(it)?;
                    }
                    Removal::File(i, j, why) => {
                        let (v, (fid, f)) = (&vs[i], &vs[i].files[j]);
                        if done_versions.contains(&v.id) || !done_files.insert(*fid) {
                            continue;
                        }
                        let mut it = item(v, why);
                        it.action = "delete-file";
                        it.file_id = *fid;
                        it.file_name = f.name.clone();
                        it.files = 1;
                        it.logical_bytes = f.size;
                        *blobs.entry(f.blob()).or_default() += 1;
                        sum.files += 1;
                        sum.logical_bytes += f.size;
                        emit(it)?;
                    }
                }
            }
        }
    }
    if bytes_freed {
        freed(&snap, &blobs, &mut sum)?;
    }
    sum.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(sum)
}

fn active_versions(snap: &Snapshot<'_>, pkg: u64, sum: &mut PlanSummary) -> Result<Vec<Version>> {
    let prefix = pkg.to_be_bytes();
    let end = (pkg + 1).to_be_bytes();
    let mut out = Vec::new();
    for kv in snap.scan(Cf::Versions, &prefix, Some(&end)) {
        let (k, v) = kv?;
        let (_, id) = rec::split_u64s(&k)?;
        let vr: VersionRec = decode(&v, "version")?;
        if vr.deleted_ms.is_some() {
            continue;
        }
        sum.versions_scanned += 1;
        let mut files = Vec::new();
        for kv in snap.scan(Cf::Files, &id.to_be_bytes(), Some(&(id + 1).to_be_bytes())) {
            let (k, v) = kv?;
            let (_, fid) = rec::split_u64s(&k)?;
            let f: FileRec = decode(&v, "file")?;
            if f.deleted_ms.is_none() {
                sum.files_scanned += 1;
                files.push((fid, f));
            }
        }
        out.push(Version {
            id,
            version: vr.version,
            created_ms: vr.created_ms,
            files,
        });
    }
    Ok(out)
}

/// Blobs all of whose files are planned, then chunks all of whose uses
/// are by those blobs.
fn freed(snap: &Snapshot<'_>, blobs: &HashMap<Hash, u64>, sum: &mut PlanSummary) -> Result<()> {
    let mut chunk_uses: HashMap<Hash, u64> = HashMap::new();
    for (blob, &planned) in blobs {
        let prefix = rec::holder_prefix(blob);
        let mut files = 0u64;
        for kv in snap.scan(Cf::CatalogIdx, &prefix, rec::prefix_end(&prefix).as_deref()) {
            let (k, _) = kv?;
            let ns = std::str::from_utf8(&k[prefix.len()..]).map_err(|_| Error::corrupt("bad holder key"))?;
            if let Some(r) = snap.get(Cf::Refs, &ref_key(ns, blob))? {
                files += RefInfo::decode(&r)?.files;
            }
        }
        if files != planned {
            continue;
        }
        let m = match snap.get(Cf::Blobs, &blob.0)? {
            Some(m) => Manifest::decode(&m)?,
            None => return Err(Error::corrupt(format!("planned blob {blob} has no manifest"))),
        };
        sum.blobs_freed += 1;
        sum.unique_bytes += m.size;
        for (id, n) in crate::catalog::chunks::occurrences(&m) {
            *chunk_uses.entry(id).or_default() += n;
        }
    }
    for (id, uses) in chunk_uses {
        let c = match snap.get(Cf::Chunks, &id.0)? {
            Some(v) => ChunkRec::decode(&v)?,
            None => return Err(Error::corrupt(format!("chunk {id} of a planned blob is not indexed"))),
        };
        if c.refs == uses {
            sum.chunks_freed += 1;
            sum.physical_bytes += c.loc.stored_len as u64;
        }
    }
    Ok(())
}

/// Policies to apply: one by name, or all (optionally of one namespace).
pub fn select(index: &Index, name: Option<&str>, namespace: Option<&str>) -> Result<Vec<Compiled>> {
    let ps = match name {
        Some(n) => vec![super::get(index, n)?],
        None => super::list(index)?,
    };
    ps.into_iter()
        .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
        .map(|p| p.compile())
        .collect()
}
