//! What could be freed in a namespace, a project or the whole store:
//! packages nobody downloaded (never, or not for [`IDLE_DAYS`]), and what
//! each retention policy would free if it swept now (its plan, dedup-aware,
//! each policy on its own). Reads one snapshot; changes nothing.

use serde::Serialize;

use super::plan;
use crate::catalog::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use crate::catalog::usage::{self, Level};
use crate::error::Result;
use crate::index::{Cf, Index, Snapshot};

/// A package none of whose files was downloaded for this many days is idle.
pub const IDLE_DAYS: u64 = 90;
/// Packages listed per kind of idleness (the largest first).
pub const LISTED: usize = 10;

/// One package nobody downloads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IdlePackage {
    /// namespace/project/type:name
    pub package: String,
    pub files: u64,
    pub logical_bytes: u64,
    /// Stored bytes only this package's files use: what deleting it frees.
    pub exclusive_bytes: u64,
    /// The last download of any of its files (Unix ms; 0: never).
    pub last_download_ms: i64,
}

/// Packages of one kind of idleness: their totals and the largest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Idle {
    pub packages: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub exclusive_bytes: u64,
    /// The [`LISTED`] largest (by logical bytes).
    pub largest: Vec<IdlePackage>,
}

impl Idle {
    fn add(&mut self, p: IdlePackage) {
        self.packages += 1;
        self.files += p.files;
        self.logical_bytes += p.logical_bytes;
        self.exclusive_bytes += p.exclusive_bytes;
        let at = self
            .largest
            .partition_point(|q| (q.logical_bytes, &p.package) > (p.logical_bytes, &q.package));
        if at < LISTED {
            self.largest.insert(at, p);
            self.largest.truncate(LISTED);
        }
    }
}

/// What one policy's plan would remove and free now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyFreed {
    pub policy: String,
    pub namespace: String,
    /// The policy's project (empty: the whole namespace).
    pub project: String,
    pub versions: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub physical_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Freeable {
    pub idle_days: u64,
    /// Packages with files, none of which was ever downloaded.
    pub never_downloaded: Idle,
    /// Packages downloaded once, but not in the last [`IDLE_DAYS`].
    pub not_downloaded: Idle,
    /// The policies covering the scope, by name.
    pub policies: Vec<PolicyFreed>,
}

/// What could be freed in `namespace` (or `project` of it; neither: the
/// whole store) at `now_ms`. A policy of the namespace that covers more
/// than the project is planned for the project only. A `tenant` view counts
/// what leaves the namespace (exclusive within it, plans freeing from it),
/// never what other namespaces share.
pub fn compute(
    index: &Index,
    namespace: Option<&str>,
    project: Option<&str>,
    tenant: bool,
    now_ms: i64,
) -> Result<Freeable> {
    let snap = index.snapshot();
    let mut out = Freeable {
        idle_days: IDLE_DAYS,
        ..Default::default()
    };
    let prefix = namespace.map(rec::namespace_prefix).unwrap_or_default();
    let exclusive: std::collections::HashMap<Vec<u8>, i64> = usage::stored_groups(&snap, Level::Package, &prefix)?
        .into_iter()
        .map(|(k, c)| {
            (
                k,
                if tenant {
                    c.ns_exclusive_bytes
                } else {
                    c.exclusive_bytes
                },
            )
        })
        .collect();
    let idle_since = now_ms.saturating_sub(IDLE_DAYS as i64 * 24 * 3600 * 1000);
    let end = rec::prefix_end(&prefix);
    for kv in snap.scan(Cf::Packages, &prefix, end.as_deref()) {
        let (k, v) = kv?;
        let pkg = rec::parse_package_key(&k)?;
        let p: PackageRec = decode(&v, "package")?;
        if p.deleted_ms.is_some() || project.is_some_and(|pr| pr != pkg.project) {
            continue;
        }
        let (files, downloads, last) = downloads(&snap, p.id)?;
        if files == 0 || (downloads > 0 && last >= idle_since) {
            continue;
        }
        let idle = IdlePackage {
            package: format!("{}/{}/{}:{}", pkg.namespace, pkg.project, pkg.ty, pkg.name),
            files,
            logical_bytes: p.size,
            exclusive_bytes: exclusive.get(k.as_ref()).copied().unwrap_or(0).max(0) as u64,
            last_download_ms: if downloads > 0 { last } else { 0 },
        };
        match downloads {
            0 => out.never_downloaded.add(idle),
            _ => out.not_downloaded.add(idle),
        }
    }
    for mut c in plan::select(index, None, namespace)? {
        if let Some(pr) = project {
            match c.policy.project.as_deref() {
                Some(p) if p != pr => continue,
                Some(_) => {}
                None => {
                    let mut narrowed = c.policy.clone();
                    narrowed.project = Some(pr.to_string());
                    c = narrowed.compile()?;
                }
            }
        }
        let freed = if tenant {
            plan::Freed::Namespace
        } else {
            plan::Freed::Store
        };
        let s = plan::plan(index, std::slice::from_ref(&c), now_ms, freed, &mut |_| Ok(()))?;
        out.policies.push(PolicyFreed {
            policy: c.policy.name.clone(),
            namespace: c.policy.namespace.clone(),
            project: c.policy.project.clone().unwrap_or_default(),
            versions: s.versions,
            files: s.files,
            logical_bytes: s.logical_bytes,
            unique_bytes: s.unique_bytes,
            physical_bytes: s.physical_bytes,
        });
    }
    Ok(out)
}

/// A package's active files, their downloads, and the last download (ms).
fn downloads(snap: &Snapshot<'_>, pkg: u64) -> Result<(u64, u64, i64)> {
    let (mut files, mut downloads, mut last) = (0, 0, 0);
    for kv in snap.scan(Cf::Versions, &pkg.to_be_bytes(), Some(&(pkg + 1).to_be_bytes())) {
        let (k, v) = kv?;
        let (_, ver) = rec::split_u64s(&k)?;
        if decode::<VersionRec>(&v, "version")?.deleted_ms.is_some() {
            continue;
        }
        for kv in snap.scan(Cf::Files, &ver.to_be_bytes(), Some(&(ver + 1).to_be_bytes())) {
            let (_, v) = kv?;
            let f: FileRec = decode(&v, "file")?;
            if f.deleted_ms.is_none() {
                files += 1;
                downloads += f.downloads;
                last = last.max(f.last_download_ms);
            }
        }
    }
    Ok((files, downloads, last))
}
