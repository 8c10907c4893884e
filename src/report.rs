//! Capacity reports: where the storage goes, per namespace, project,
//! package or package type, dedup-aware.
//!
//! For each group:
//! - `logical_bytes`: sizes of its active files; `trash_bytes`: of its files
//!   in the trash (deleted, or in a deleted version or package);
//! - `unique_bytes`: sizes of the distinct blobs its files use;
//! - `physical_bytes`: stored bytes of the distinct chunks those blobs use;
//!   `exclusive_bytes`: of those, the chunks no other group's file uses
//!   (what deleting the group, trash included, would free once purged and
//!   collected); `shared_bytes` = physical − exclusive.
//!
//! [`compute`] walks every file of the catalog on one snapshot (a file in
//! another namespace can make a chunk shared) and holds one entry per blob
//! and per chunk the files use: the exact count, and what `--recompute`
//! compares the counters with.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::catalog::model::PkgRef;
use crate::catalog::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Index, Snapshot};
use crate::manifest::Manifest;

/// How files are grouped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    #[default]
    Namespace,
    Project,
    Package,
    Type,
}

impl std::str::FromStr for By {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "namespace" => Ok(By::Namespace),
            "project" => Ok(By::Project),
            "package" => Ok(By::Package),
            "type" => Ok(By::Type),
            _ => Err(Error::invalid(format!(
                "report by {s:?}: expected namespace, project, package or type"
            ))),
        }
    }
}

impl By {
    fn key(self, p: &PkgRef) -> String {
        match self {
            By::Namespace => p.namespace.clone(),
            By::Project => format!("{}/{}", p.namespace, p.project),
            By::Package => format!("{}/{}/{}:{}", p.namespace, p.project, p.ty, p.name),
            By::Type => p.ty.as_str().to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    pub packages: u64,
    pub versions: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub physical_bytes: u64,
    pub exclusive_bytes: u64,
    pub shared_bytes: u64,
    pub trash_files: u64,
    pub trash_bytes: u64,
    /// logical / unique (1 when empty).
    pub dedup_ratio: f64,
    /// unique / physical (1 when empty).
    pub compression_ratio: f64,
}

/// The whole store, in the terms of Artifactory's storage summary plus ours.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Distinct blobs stored and their size ("binaries").
    pub binaries_count: u64,
    pub binaries_bytes: u64,
    /// Catalog files and their sizes ("artifacts"), active only.
    pub artifacts_count: u64,
    pub artifacts_bytes: u64,
    /// 1 − physical / (logical of every namespace's blobs), in percent.
    pub optimization_percent: f64,
    pub logical_bytes: u64,
    pub physical_bytes: u64,
    pub trash_bytes: u64,
    pub condemned_bytes: u64,
    pub dead_bytes: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    /// Dead bytes over pack bytes.
    pub fragmentation: f64,
    /// Free space where the data dir lives (a local pack store shares it).
    pub free_disk_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub by: By,
    pub summary: Summary,
    pub trends: Trends,
    /// Largest physical first.
    pub groups: Vec<Group>,
    pub elapsed_ms: u64,
}

/// What to report on.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub by: By,
    pub namespace: Option<String>,
    pub project: Option<String>,
    /// Largest groups kept (0: all).
    pub top: usize,
}

impl Query {
    fn wants(&self, p: &PkgRef) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == p.namespace)
            && self.project.as_deref().is_none_or(|pr| pr == p.project)
    }
}

/// Group ids using a blob or chunk (almost always one).
type Users = Vec<u32>;
/// The "group" of files outside the report's namespace or project.
const FOREIGN: u32 = u32::MAX;

fn add_user(u: &mut Users, g: u32) {
    if !u.contains(&g) {
        u.push(g);
    }
}

/// Computes the report from the records on one snapshot.
pub fn compute(index: &Index, q: &Query, stats: &crate::engine::StoreStats) -> Result<Report> {
    let started = Instant::now();
    let snap = index.snapshot();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    // Per blob: its size and the groups whose files (active or trash) use it.
    let mut blobs: HashMap<Hash, (u64, Users)> = HashMap::new();
    let mut summary = Summary::default();
    for kv in snap.scan(Cf::Packages, &[], None) {
        let (k, v) = kv?;
        let pkg = rec::parse_package_key(&k)?;
        let p: PackageRec = decode(&v, "package")?;
        let mut scratch = Group::default();
        let (g, grp) = if q.wants(&pkg) {
            let key = q.by.key(&pkg);
            let g = *ids.entry(key.clone()).or_insert_with(|| {
                groups.push(Group {
                    key,
                    ..Default::default()
                });
                (groups.len() - 1) as u32
            });
            (g, &mut groups[g as usize])
        } else {
            // Outside the report: its files only make what they use shared.
            (FOREIGN, &mut scratch)
        };
        grp.packages += p.deleted_ms.is_none() as u64;
        walk_package(&snap, p.id, p.deleted_ms.is_some(), grp, &mut summary, |blob, size| {
            let e = blobs.entry(blob).or_insert_with(|| (size, Users::new()));
            add_user(&mut e.1, g);
        })?;
    }
    // Chunks: the groups using each, through its blobs.
    let mut chunks: HashMap<Hash, Users> = HashMap::new();
    for (blob, (size, users)) in &blobs {
        for &g in users.iter().filter(|&&g| g != FOREIGN) {
            groups[g as usize].unique_bytes += size;
        }
        let m = match snap.get(Cf::Blobs, &blob.0)? {
            Some(m) => Manifest::decode(&m)?,
            None => return Err(Error::corrupt(format!("file blob {blob} has no manifest"))),
        };
        for c in &m.chunks {
            let u = chunks.entry(c.id).or_default();
            for &g in users {
                add_user(u, g);
            }
        }
    }
    for (id, users) in &chunks {
        let c = match snap.get(Cf::Chunks, &id.0)? {
            Some(v) => ChunkRec::decode(&v)?,
            None => return Err(Error::corrupt(format!("chunk {id} of a file blob is not indexed"))),
        };
        let len = c.loc.stored_len as u64;
        for &g in users.iter().filter(|&&g| g != FOREIGN) {
            let grp = &mut groups[g as usize];
            grp.physical_bytes += len;
            if users.len() == 1 {
                grp.exclusive_bytes += len;
            }
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let mut out: Vec<Group> = groups
        .into_iter()
        .map(|mut g| {
            g.shared_bytes = g.physical_bytes - g.exclusive_bytes;
            g.dedup_ratio = ratio(g.logical_bytes, g.unique_bytes);
            g.compression_ratio = ratio(g.unique_bytes, g.physical_bytes);
            g
        })
        .collect();
    out.sort_by(|a, b| b.physical_bytes.cmp(&a.physical_bytes).then(a.key.cmp(&b.key)));
    if q.top > 0 {
        out.truncate(q.top);
    }
    summary.binaries_count = stats.blobs;
    summary.binaries_bytes = stats.unique_bytes;
    summary.logical_bytes = stats.logical_bytes;
    summary.physical_bytes = stats.physical_bytes;
    summary.condemned_bytes = stats.condemned_bytes;
    summary.dead_bytes = stats.dead_bytes;
    summary.packs = stats.packs;
    summary.pack_bytes = stats.pack_bytes;
    summary.optimization_percent = if summary.artifacts_bytes == 0 {
        0.0
    } else {
        100.0 * (1.0 - stats.physical_bytes as f64 / summary.artifacts_bytes as f64)
    };
    summary.fragmentation = ratio(stats.dead_bytes, stats.pack_bytes.max(1)).min(1.0);
    Ok(Report {
        by: q.by,
        summary,
        trends: Trends::default(),
        groups: out,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Adds one package's versions and files to its group; calls `uses` for
/// every file (active or in the trash) with its blob and size.
fn walk_package(
    snap: &Snapshot<'_>,
    pkg: u64,
    pkg_deleted: bool,
    g: &mut Group,
    summary: &mut Summary,
    mut uses: impl FnMut(Hash, u64),
) -> Result<()> {
    for kv in snap.scan(Cf::Versions, &pkg.to_be_bytes(), Some(&(pkg + 1).to_be_bytes())) {
        let (k, v) = kv?;
        let id = rec::split_u64s(&k)?.1;
        let v: VersionRec = decode(&v, "version")?;
        let ver_active = !pkg_deleted && v.deleted_ms.is_none();
        g.versions += ver_active as u64;
        for kv in snap.scan(Cf::Files, &id.to_be_bytes(), Some(&(id + 1).to_be_bytes())) {
            let (_, fv) = kv?;
            let f: FileRec = decode(&fv, "file")?;
            if ver_active && f.deleted_ms.is_none() {
                g.files += 1;
                g.logical_bytes += f.size;
                summary.artifacts_count += 1;
                summary.artifacts_bytes += f.size;
            } else {
                g.trash_files += 1;
                g.trash_bytes += f.size;
                summary.trash_bytes += f.size;
            }
            uses(f.blob(), f.size);
        }
    }
    Ok(())
}

// ---- trends ----

pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// The store on one day (UTC), kept in the index (`D` day).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DayUsage {
    /// Days since 1970-01-01.
    pub day: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub physical_bytes: u64,
    pub pack_bytes: u64,
    /// Active files and their bytes, and active packages.
    pub files: u64,
    pub file_bytes: u64,
    pub packages: u64,
}

/// Growth between a day and the oldest snapshot at most `days` before it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Growth {
    pub days: u64,
    /// The snapshot compared with (None: no older snapshot).
    pub since_day: Option<u64>,
    pub file_bytes: i64,
    pub physical_bytes: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PackageGrowth {
    pub package: String,
    pub bytes: u64,
    pub growth_30d: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Trends {
    /// The last 90 days' snapshots, oldest first.
    pub days: Vec<DayUsage>,
    pub growth_30d: Growth,
    pub growth_90d: Growth,
    /// Largest 30-day growth in active bytes first (at most 10).
    pub fastest_growing: Vec<PackageGrowth>,
}

pub fn day_of(ms: i64) -> u64 {
    (ms.max(0) / DAY_MS) as u64
}

pub fn day_key(day: u64) -> Vec<u8> {
    let mut k = b"D".to_vec();
    k.extend_from_slice(&day.to_be_bytes());
    k
}

pub fn package_day_key(day: u64, pkg: u64) -> Vec<u8> {
    let mut k = b"E".to_vec();
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(&pkg.to_be_bytes());
    k
}

/// Today's usage and each active package's bytes, from the package
/// records' counters (no file is read).
pub fn take_snapshot(index: &Index, stats: &crate::index::Stats, day: u64) -> Result<(DayUsage, Vec<(u64, u64)>)> {
    let mut u = DayUsage {
        day,
        logical_bytes: stats.logical_bytes,
        unique_bytes: stats.unique_bytes,
        physical_bytes: stats.physical_bytes,
        pack_bytes: stats.sealed_pack_bytes,
        ..Default::default()
    };
    let mut pkgs = Vec::new();
    for kv in index.scan(Cf::Packages, &[], None, false) {
        let (_, v) = kv?;
        let p: PackageRec = decode(&v, "package")?;
        if p.deleted_ms.is_none() {
            u.packages += 1;
            u.files += p.files;
            u.file_bytes += p.size;
            pkgs.push((p.id, p.size));
        }
    }
    Ok((u, pkgs))
}

fn growth(days: &[DayUsage], now: &DayUsage, span: u64) -> Growth {
    let base = days.iter().find(|d| d.day + span >= now.day && d.day < now.day);
    Growth {
        days: span,
        since_day: base.map(|b| b.day),
        file_bytes: base.map_or(0, |b| now.file_bytes as i64 - b.file_bytes as i64),
        physical_bytes: base.map_or(0, |b| now.physical_bytes as i64 - b.physical_bytes as i64),
    }
}

/// Trends up to `today` (whose snapshot must exist), packages filtered by `q`.
pub fn trends(index: &Index, q: &Query, today: u64) -> Result<Trends> {
    let from = day_key(today.saturating_sub(90));
    let to = day_key(today + 1);
    let days: Vec<DayUsage> = index
        .scan(Cf::CatalogIdx, &from, Some(&to), false)
        .map(|kv| {
            let (_, v) = kv?;
            serde_json::from_slice(&v).map_err(|e| Error::corrupt(format!("daily usage record: {e}")))
        })
        .collect::<Result<_>>()?;
    let Some(now) = days.last().cloned() else {
        return Ok(Trends::default());
    };
    let g30 = growth(&days, &now, 30);
    let g90 = growth(&days, &now, 90);
    let mut fastest = Vec::new();
    if let Some(base) = g30.since_day {
        let sizes = |day: u64| -> Result<HashMap<u64, u64>> {
            let p = package_day_key(day, 0);
            index
                .scan(Cf::CatalogIdx, &p[..9], Some(&package_day_key(day + 1, 0)[..9]), false)
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((rec::be_u64(&k[9..])?, rec::be_u64(&v)?))
                })
                .collect()
        };
        let (then, now_sizes) = (sizes(base)?, sizes(now.day)?);
        let mut deltas: Vec<(i64, u64, u64)> = now_sizes
            .iter()
            .map(|(id, n)| (*n as i64 - then.get(id).copied().unwrap_or(0) as i64, *id, *n))
            .filter(|d| d.0 > 0)
            .collect();
        deltas.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (delta, id, bytes) in deltas {
            if fastest.len() == 10 {
                break;
            }
            let Some(k) = index.get(Cf::CatalogIdx, &rec::pkg_by_id_key(id))? else {
                continue;
            };
            let pkg = rec::parse_package_key(&k)?;
            if q.wants(&pkg) {
                fastest.push(PackageGrowth {
                    package: By::Package.key(&pkg),
                    bytes,
                    growth_30d: delta,
                });
            }
        }
    }
    Ok(Trends {
        days,
        growth_30d: g30,
        growth_90d: g90,
        fastest_growing: fastest,
    })
}
