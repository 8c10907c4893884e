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
//!   every use is by a freed blob or a freed delta on it. A chunk a
//!   surviving blob shares, or the base of a surviving delta, stays.
//!
//! That is the store's view ([`Freed::Store`], for a token granted every
//! namespace: what GC frees). A tenant's view ([`Freed::Namespace`]) counts
//! what leaves each planned namespace, whoever else holds the same bytes:
//! blobs none of whose files in the namespace survives, and chunks no
//! surviving blob of the namespace uses (from the namespace's chunk edges
//! in the capacity counters: point reads, no walk). Another tenant holding
//! the bytes changes nothing in it.
//!
//! Upload leases are not counted as holders: they end within `upload_lease`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use super::policy::{Compiled, Removal, Version};
use crate::catalog::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use crate::catalog::usage::{self, Level, Share};
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
    /// The bytes freed are the namespaces' own ([`Freed::Namespace`]).
    pub namespace_scoped: bool,
}

/// Which bytes freed a plan counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freed {
    /// None (a sweep's walk).
    Not,
    /// What purge and GC free from the store.
    Store,
    /// What leaves each planned namespace (a tenant's view).
    Namespace,
}

/// Planned files per (namespace, blob), and the packages (ids of their
/// usage groups) they are in.
type Planned = HashMap<(String, Hash), (u64, HashSet<u64>)>;

/// A whole plan in memory (for small plans and tests; the API streams).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub summary: PlanSummary,
}

/// Walks the catalog for `policies` and calls `emit` for every removal;
/// also computes the dedup-aware bytes `freed`.
pub fn plan(
    index: &Index,
    policies: &[Compiled],
    now_ms: i64,
    freed: Freed,
    emit: &mut dyn FnMut(PlanItem) -> Result<()>,
) -> Result<PlanSummary> {
    let started = Instant::now();
    let snap = index.snapshot();
    let mut sum = PlanSummary {
        policies: policies.len() as u64,
        ..Default::default()
    };
    let mut done_versions: HashSet<u64> = HashSet::new();
    // File ids are per namespace: a file is (version, file).
    let mut done_files: HashSet<(u64, u64)> = HashSet::new();
    let mut blobs: HashMap<Hash, u64> = HashMap::new();
    let mut planned: Planned = HashMap::new();
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
            let group = usage::gid(Level::Package, &k);
            let mut note = |f: &FileRec| {
                *blobs.entry(f.blob()).or_default() += 1;
                if freed == Freed::Namespace {
                    let e = planned.entry((pkg.namespace.clone(), f.blob())).or_default();
                    e.0 += 1;
                    e.1.insert(group);
                }
            };
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
                            if done_files.insert((v.id, *fid)) {
                                it.files += 1;
                                it.logical_bytes += f.size;
                                note(f);
                            }
                        }
                        sum.versions += 1;
                        sum.files += it.files;
                        sum.logical_bytes += it.logical_bytes;
                        emit(it)?;
                    }
                    Removal::File(i, j, why) => {
                        let (v, (fid, f)) = (&vs[i], &vs[i].files[j]);
                        if done_versions.contains(&v.id) || !done_files.insert((v.id, *fid)) {
                            continue;
                        }
                        let mut it = item(v, why);
                        it.action = "delete-file";
                        it.file_id = *fid;
                        it.file_name = f.name.clone();
                        it.files = 1;
                        it.logical_bytes = f.size;
                        note(f);
                        sum.files += 1;
                        sum.logical_bytes += f.size;
                        emit(it)?;
                    }
                }
            }
        }
    }
    match freed {
        Freed::Not => {}
        Freed::Store => freed_from_store(&snap, &blobs, &mut sum)?,
        Freed::Namespace => {
            freed_from_namespaces(&snap, &planned, &mut sum)?;
            sum.namespace_scoped = true;
        }
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

/// Per namespace: blobs all of whose files in it are planned, then chunks
/// every package of the namespace using them uses only through those
/// blobs (a package's chunk edge counts its blobs using the chunk; the
/// namespace's edge in the chunk's share counts its packages using it).
fn freed_from_namespaces(snap: &Snapshot<'_>, planned: &Planned, sum: &mut PlanSummary) -> Result<()> {
    // (namespace, chunk) -> per package, its freed blobs using the chunk.
    let mut uses: HashMap<(&str, Hash), HashMap<u64, u64>> = HashMap::new();
    for ((ns, blob), (files, pkgs)) in planned {
        let held = match snap.get(Cf::Refs, &ref_key(ns, blob))? {
            Some(r) => RefInfo::decode(&r)?.files,
            None => return Err(Error::corrupt(format!("planned blob {blob} has no reference in {ns}"))),
        };
        if held != *files {
            continue;
        }
        let m = manifest(snap, blob)?;
        sum.blobs_freed += 1;
        sum.unique_bytes += m.size;
        let chunk_rec = |id: &Hash| snap.get(Cf::Chunks, &id.0)?.map(|v| ChunkRec::decode(&v)).transpose();
        for id in usage::needed_chunks(&m, chunk_rec)? {
            let e = uses.entry((ns.as_str(), id)).or_default();
            for g in pkgs {
                *e.entry(*g).or_default() += 1;
            }
        }
    }
    for ((ns, chunk), pkgs) in uses {
        let share: Share = match snap.get(Cf::CatalogIdx, &usage::share_key(&chunk))? {
            Some(v) => decode(&v, "chunk share")?,
            None => {
                return Err(Error::corrupt(format!(
                    "chunk {chunk} of a planned blob has no usage share"
                )));
            }
        };
        let nsg = usage::gid(Level::Namespace, ns.as_bytes());
        let users = share
            .edges
            .iter()
            .find(|e| (e.0, e.1) == (Level::Namespace as u8, nsg))
            .map_or(0, |e| e.2);
        if users != pkgs.len() as u64 {
            continue;
        }
        let mut all = true;
        for (g, n) in &pkgs {
            let k = usage::edge_key(rec::tag::CHUNK_EDGE, &chunk, Level::Package, *g);
            let blobs = snap.get(Cf::CatalogIdx, &k)?.map(|v| rec::be_u64(&v)).transpose()?;
            all &= blobs == Some(*n);
        }
        if all {
            sum.chunks_freed += 1;
            sum.physical_bytes += share.stored_len as u64;
        }
    }
    Ok(())
}

fn manifest(snap: &Snapshot<'_>, blob: &Hash) -> Result<Manifest> {
    match snap.get(Cf::Blobs, &blob.0)? {
        Some(m) => Manifest::decode(&m),
        None => Err(Error::corrupt(format!("planned blob {blob} has no manifest"))),
    }
}

/// Blobs all of whose files are planned, then chunks all of whose uses
/// are by those blobs.
fn freed_from_store(snap: &Snapshot<'_>, blobs: &HashMap<Hash, u64>, sum: &mut PlanSummary) -> Result<()> {
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
        let m = manifest(snap, blob)?;
        sum.blobs_freed += 1;
        sum.unique_bytes += m.size;
        for (id, n) in crate::catalog::chunks::occurrences(&m) {
            *chunk_uses.entry(id).or_default() += n;
        }
    }
    // A freed delta is one freed use of its base: the base goes too when
    // every one of its uses is freed (GC collects it in the same pass).
    let mut todo: Vec<Hash> = chunk_uses.keys().copied().collect();
    let mut freed: HashSet<Hash> = HashSet::new();
    while let Some(id) = todo.pop() {
        if freed.contains(&id) {
            continue;
        }
        let c = match snap.get(Cf::Chunks, &id.0)? {
            Some(v) => ChunkRec::decode(&v)?,
            None => return Err(Error::corrupt(format!("chunk {id} of a planned blob is not indexed"))),
        };
        if c.refs == chunk_uses.get(&id).copied().unwrap_or(0) {
            freed.insert(id);
            sum.chunks_freed += 1;
            sum.physical_bytes += c.loc.stored_len as u64;
            if let Some(d) = c.loc.delta {
                *chunk_uses.entry(d.base).or_default() += 1;
                todo.push(d.base);
            }
        }
    }
    Ok(())
}

/// Policies to apply: one by name (in `namespace`, or in any namespace:
/// a sweep recorded before names were per namespace), or all (optionally
/// of one namespace).
pub fn select(index: &Index, name: Option<&str>, namespace: Option<&str>) -> Result<Vec<Compiled>> {
    let ps = match (name, namespace) {
        (Some(n), Some(ns)) => vec![super::get(index, ns, n)?],
        (Some(n), None) => match super::named(index, n, |_| true)? {
            ps if ps.is_empty() => return Err(super::not_found(n)),
            ps => ps,
        },
        (None, Some(ns)) => super::of_namespace(index, ns)?,
        (None, None) => super::list(index)?,
    };
    ps.into_iter().map(|p| p.compile()).collect()
}
