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
//! These are `crate::figures`' terms over the group's files: its logical
//! is `logical_bytes + trash_bytes`. The summary's figures are the store's
//! (`crate::space::figures`), and a store-wide report carries the buckets
//! of `crate::space` beside the data dir's measured size.
//!
//! [`compute`] walks every file of the catalog on one snapshot (a file in
//! another namespace can make a chunk shared) and holds one entry per blob
//! and per chunk the files use: the exact count, and what `--recompute`
//! compares the counters with.
//!
//! A tenant's view ([`Query::tenant`]: a token without a grant over every
//! namespace) says only what the tenant could know alone: its summary is
//! its namespace's counters (store-only figures are 0), and a group's
//! exclusive bytes are the chunks no other group of the same namespace
//! uses (`ns_exclusive_bytes`), so another tenant storing the same bytes
//! changes nothing in it.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::catalog::model::PkgRef;
use crate::catalog::records::{self as rec, PackageRec, day_key, decode, namespace_day_key, package_day_key};
use crate::catalog::usage::{self, Counters, Drift, Groups, Level};
use crate::error::{Error, Result};
use crate::index::{Cf, Index};

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
    /// The counters' level for this grouping, inside `namespace` or not.
    fn level(self, namespace: bool) -> Level {
        match self {
            By::Namespace => Level::Namespace,
            By::Project => Level::Project,
            By::Package => Level::Package,
            By::Type if namespace => Level::NamespaceType,
            By::Type => Level::Type,
        }
    }

    pub fn key(self, p: &PkgRef) -> String {
        usage::display(self.level(false), Groups::of(p).key(self.level(false)))
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
    /// 1 − physical / logical, in percent (`crate::figures`).
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
    /// The figures of `crate::figures` (logical and physical above too).
    pub unique_bytes: u64,
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
    /// Store-wide reports: every byte in a named bucket (`crate::space`).
    pub space: Option<crate::space::Space>,
    /// Store-wide reports: what the package-aware optimizer did.
    pub optimize: Option<crate::catalog::optimized::Totals>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub by: By,
    pub summary: Summary,
    pub trends: Trends,
    /// Largest physical first.
    pub groups: Vec<Group>,
    /// Computed from the catalog rather than read from the counters.
    pub recomputed: bool,
    /// With `recomputed`: where the counters disagree (empty when exact).
    pub drift: Vec<Drift>,
    pub elapsed_ms: u64,
    /// With `Query::freeable`: what could be freed in the scope.
    pub freeable: Option<crate::retention::freeable::Freeable>,
}

/// What to report on.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub by: By,
    pub namespace: Option<String>,
    pub project: Option<String>,
    /// Largest groups kept (0: all).
    pub top: usize,
    /// Recompute from the catalog and report the counters' drift.
    pub recompute: bool,
    /// A tenant's view of `namespace`: nothing about other namespaces.
    pub tenant: bool,
    /// Also what could be freed (see `retention::freeable`).
    pub freeable: bool,
}

impl Query {
    fn wants(&self, p: &PkgRef) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == p.namespace)
            && self.project.as_deref().is_none_or(|pr| pr == p.project)
    }
}

impl Query {
    fn level(&self) -> Level {
        self.by.level(self.namespace.is_some())
    }

    /// The key prefix of the groups wanted at [`Self::level`].
    fn prefix(&self) -> Vec<u8> {
        match (&self.namespace, &self.project, self.level()) {
            (None, _, _) => Vec::new(),
            (Some(ns), _, Level::Namespace) => ns.as_bytes().to_vec(),
            (Some(ns), Some(pr), Level::Project) => [ns.as_bytes(), &[0], pr.as_bytes()].concat(),
            (Some(ns), _, _) => [ns.as_bytes(), &[0]].concat(),
        }
    }

    /// Whether the group `key` at `level` lies inside the query's scope.
    fn keeps(&self, level: Level, key: &[u8]) -> bool {
        let Some(ns) = &self.namespace else {
            return true;
        };
        let in_ns = match level {
            Level::Type => return false,
            Level::Namespace => key == ns.as_bytes(),
            _ => key.strip_prefix(ns.as_bytes()).is_some_and(|r| r.first() == Some(&0)),
        };
        let Some(pr) = &self.project else { return in_ns };
        match level {
            Level::Project => in_ns && key.len() == ns.len() + 1 + pr.len() && key.ends_with(pr.as_bytes()),
            Level::Package => rec::parse_package_key(key).is_ok_and(|p| self.wants(&p)),
            _ => false,
        }
    }

    /// Groupings the counters do not keep.
    fn check(&self) -> Result<()> {
        match (self.by, &self.project) {
            (By::Namespace | By::Type, Some(_)) => Err(Error::invalid(format!(
                "a report on one project cannot be by {}: use --by project or --by package",
                format!("{:?}", self.by).to_lowercase()
            ))),
            _ => Ok(()),
        }
    }
}

fn group(key: String, c: &Counters, tenant: bool) -> Group {
    let u = |v: i64| v.max(0) as u64;
    let ratio = |a: i64, b: i64| if b <= 0 { 1.0 } else { a as f64 / b as f64 };
    let exclusive = match tenant {
        true => c.ns_exclusive_bytes,
        false => c.exclusive_bytes,
    };
    Group {
        key,
        packages: u(c.packages),
        versions: u(c.versions),
        files: u(c.files),
        logical_bytes: u(c.logical_bytes),
        unique_bytes: u(c.unique_bytes),
        physical_bytes: u(c.physical_bytes),
        exclusive_bytes: u(exclusive),
        shared_bytes: u(c.physical_bytes - exclusive),
        trash_files: u(c.trash_files),
        trash_bytes: u(c.trash_bytes),
        dedup_ratio: ratio(c.logical_bytes + c.trash_bytes, c.unique_bytes),
        compression_ratio: ratio(c.unique_bytes, c.physical_bytes),
    }
}

/// Store-wide figures for `admin stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub physical_bytes: u64,
    pub chunks: u64,
    pub packs: u64,
    pub blobs: u64,
    pub references: u64,
    pub pack_bytes: u64,
    /// Stored bytes of chunks no blob uses, awaiting their grace period.
    pub condemned_bytes: u64,
    /// Bytes of collected chunks still inside packs, awaiting compaction.
    pub dead_bytes: u64,
}

/// The report from the counters kept at write time, or (`q.recompute`)
/// from the catalog itself, with the counters' drift from it. Either way
/// from one snapshot.
pub fn compute(index: &Index, q: &Query, stats: &StoreStats) -> Result<Report> {
    let started = Instant::now();
    q.check()?;
    let snap = index.snapshot();
    let level = q.level();
    let (mut groups, totals, drift, own) = if q.recompute {
        let d = usage::derive(&snap)?;
        let drift = usage::group_drift(&snap, &d, |l, k| q.keeps(l, k))?;
        let pick = |l: Level| d.groups.iter().filter(move |((gl, _), _)| *gl == l);
        let groups: Vec<_> = pick(level)
            .filter(|((_, k), _)| q.keeps(level, k))
            .map(|((_, k), c)| (k.clone(), *c))
            .collect();
        let totals = sum(pick(Level::Namespace).map(|(_, c)| c));
        let own = q
            .namespace
            .as_ref()
            .and_then(|ns| d.groups.get(&(Level::Namespace, ns.as_bytes().to_vec())));
        (groups, totals, Some(drift), own.copied().unwrap_or_default())
    } else {
        let groups: Vec<_> = usage::stored_groups(&snap, level, &q.prefix())?
            .into_iter()
            .filter(|(k, _)| q.keeps(level, k))
            .collect();
        let namespaces = usage::stored_groups(&snap, Level::Namespace, &[])?;
        let totals = sum(namespaces.iter().map(|(_, c)| c));
        let own = namespaces
            .iter()
            .find(|(k, _)| q.namespace.as_ref().is_some_and(|ns| k == ns.as_bytes()))
            .map(|(_, c)| *c);
        (groups, totals, None, own.unwrap_or_default())
    };
    // Only groups with something in them (counters of an emptied group are deleted).
    groups.retain(|(_, c)| c.packages > 0 || c.files + c.trash_files > 0);
    let mut out: Vec<Group> = groups
        .iter()
        .map(|(k, c)| group(usage::display(level, k), c, q.tenant))
        .collect();
    out.sort_by(|a, b| b.physical_bytes.cmp(&a.physical_bytes).then(a.key.cmp(&b.key)));
    if q.top > 0 {
        out.truncate(q.top);
    }
    let f = crate::space::figures(index)?.figures;
    let summary = Summary {
        binaries_count: stats.blobs,
        binaries_bytes: stats.unique_bytes,
        artifacts_count: totals.files.max(0) as u64,
        artifacts_bytes: totals.logical_bytes.max(0) as u64,
        optimization_percent: f.optimization_percent(),
        logical_bytes: f.logical_bytes,
        physical_bytes: f.physical_bytes,
        unique_bytes: f.unique_bytes,
        dedup_ratio: f.dedup_ratio(),
        compression_ratio: f.compression_ratio(),
        space: None,
        optimize: None,
        trash_bytes: totals.trash_bytes.max(0) as u64,
        condemned_bytes: stats.condemned_bytes,
        dead_bytes: stats.dead_bytes,
        packs: stats.packs,
        pack_bytes: stats.pack_bytes,
        fragmentation: (stats.dead_bytes as f64 / stats.pack_bytes.max(1) as f64).min(1.0),
        free_disk_bytes: None,
    };
    let summary = match (&q.namespace, q.tenant) {
        (Some(ns), true) => namespace_summary(&own, held_bytes(&snap, ns)?),
        _ => summary,
    };
    Ok(Report {
        by: q.by,
        summary,
        trends: Trends::default(),
        groups: out,
        recomputed: q.recompute,
        drift: drift.unwrap_or_default(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        freeable: None,
    })
}

/// A tenant's summary: its namespace's counters, and `held` (the sizes of
/// the blobs it references, uploads under lease included). Figures only
/// the store has (packs, dead and condemned bytes, free disk) are 0.
fn namespace_summary(c: &Counters, held: u64) -> Summary {
    let u = |v: i64| v.max(0) as u64;
    Summary {
        binaries_count: u(c.blobs),
        binaries_bytes: u(c.unique_bytes),
        artifacts_count: u(c.files),
        artifacts_bytes: u(c.logical_bytes),
        optimization_percent: match c.logical_bytes {
            l if l <= 0 => 0.0,
            l => 100.0 * (1.0 - c.physical_bytes as f64 / l as f64),
        },
        logical_bytes: held,
        physical_bytes: u(c.physical_bytes),
        trash_bytes: u(c.trash_bytes),
        ..Default::default()
    }
}

/// The bytes a namespace holds (its quota figure).
fn held_bytes(snap: &crate::index::Snapshot<'_>, ns: &str) -> Result<u64> {
    snap.get(Cf::CatalogIdx, &rec::usage_key(ns))?
        .map_or(Ok(0), |v| rec::be_u64(&v))
}

fn sum<'a>(cs: impl Iterator<Item = &'a Counters>) -> Counters {
    let mut t = Counters::default();
    cs.for_each(|c| t.add(c));
    t
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

/// One day's usage: the store's, each namespace's and each active
/// package's bytes.
pub struct Snapshot {
    pub store: DayUsage,
    pub namespaces: Vec<(String, DayUsage)>,
    pub packages: Vec<(u64, u64)>,
}

/// Today's usage, from the package records and the namespaces' counters
/// (no file is read).
pub fn take_snapshot(index: &Index, stats: &crate::index::Stats, day: u64) -> Result<Snapshot> {
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
    let namespaces = usage::stored_groups(&index.snapshot(), Level::Namespace, &[])?
        .into_iter()
        .map(|(ns, c)| {
            let n = |v: i64| v.max(0) as u64;
            let d = DayUsage {
                day,
                logical_bytes: n(c.logical_bytes),
                unique_bytes: n(c.unique_bytes),
                physical_bytes: n(c.physical_bytes),
                pack_bytes: 0,
                files: n(c.files),
                file_bytes: n(c.logical_bytes),
                packages: n(c.packages),
            };
            (String::from_utf8_lossy(&ns).into_owned(), d)
        })
        .collect();
    Ok(Snapshot {
        store: u,
        namespaces,
        packages: pkgs,
    })
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

/// Trends up to `today` (whose snapshot must exist): the namespace's when
/// `q` names one, else the store's; packages filtered by `q`.
pub fn trends(index: &Index, q: &Query, today: u64) -> Result<Trends> {
    let (from, to) = match &q.namespace {
        Some(ns) => (
            namespace_day_key(ns, today.saturating_sub(90)),
            namespace_day_key(ns, today + 1),
        ),
        None => (day_key(today.saturating_sub(90)), day_key(today + 1)),
    };
    let days: Vec<DayUsage> = index
        .scan(Cf::CatalogIdx, &from, Some(&to), false)
        .map(|kv| {
            let (_, v) = kv?;
            serde_json::from_slice(&v).map_err(|e| Error::corrupt(format!("daily usage record: {e}")))
        })
        .collect::<Result<_>>()?;
    let days = match (&q.namespace, &q.project) {
        (Some(ns), Some(pr)) => project_days(index, ns, pr, days)?,
        _ => days,
    };
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

/// A project's days, from its packages' daily sizes on the days its
/// namespace has a snapshot: only `file_bytes` and `packages` are known.
fn project_days(index: &Index, ns: &str, project: &str, ns_days: Vec<DayUsage>) -> Result<Vec<DayUsage>> {
    let from = rec::namespace_prefix(ns);
    let mut ids = Vec::new();
    for kv in index.scan(Cf::Packages, &from, rec::prefix_end(&from).as_deref(), false) {
        let (k, v) = kv?;
        if rec::parse_package_key(&k)?.project == project {
            ids.push(decode::<PackageRec>(&v, "package")?.id);
        }
    }
    ns_days
        .into_iter()
        .map(|d| {
            let mut u = DayUsage {
                day: d.day,
                ..Default::default()
            };
            for &id in &ids {
                if let Some(v) = index.get(Cf::CatalogIdx, &package_day_key(d.day, id))? {
                    u.file_bytes += rec::be_u64(&v)?;
                    u.packages += 1;
                }
            }
            Ok(u)
        })
        .collect()
}
