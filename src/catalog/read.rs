//! Catalog reads: lookups and paged listings straight from the index.
//! Every listing walks keys in order and stops after a page, so a page
//! costs the same however large the catalog is (except the size sort,
//! which orders one namespace's packages in memory).

use super::model::{FileRef, PackageType, PkgRef, State, VerRef};
pub use super::ops::FileView;
use super::records::{self as rec, DupPolicy, EventRec, FileRec, PackageRec, VersionRec, decode};
use crate::error::{Error, Result};
use crate::index::{Cf, Index};

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;
/// Audit records a ListEvents call examines at most before it returns a
/// (possibly short) page and a token to go on.
const MAX_EVENT_SCAN: usize = 100_000;

#[derive(Clone, Debug)]
pub struct PackageView {
    pub pkg: PkgRef,
    pub rec: PackageRec,
    pub latest_version: String,
}

#[derive(Clone, Debug)]
pub struct VersionView {
    pub ver: VerRef,
    pub id: u64,
    pub rec: VersionRec,
    /// Filled by [`get_version`] only.
    pub files: Vec<FileView>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PackageSort {
    #[default]
    Name,
    Created,
    Size,
}

#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next: String,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            items: Vec::new(),
            next: String::new(),
        }
    }
}

pub fn page_size(n: u32) -> Result<usize> {
    match n as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n > MAX_PAGE => Err(Error::invalid(format!("page_size {n} is over the limit of {MAX_PAGE}"))),
        n => Ok(n),
    }
}

fn bad_token() -> Error {
    Error::invalid("page_token is not one this listing issued")
}

/// Decodes a key token and checks it lies inside the listing's range.
/// Longer than any page token a listing issues (the hex of a key).
const MAX_TOKEN: usize = 4096;

pub(crate) fn key_token(token: &str, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_TOKEN {
        return Err(bad_token());
    }
    let k = hex::decode(token).map_err(|_| bad_token())?;
    if !k.starts_with(prefix) {
        return Err(bad_token());
    }
    Ok(Some(k))
}

pub(crate) fn id_token(token: &str) -> Result<Option<u64>> {
    match token {
        "" => Ok(None),
        t => t.parse().map(Some).map_err(|_| bad_token()),
    }
}

pub fn package(index: &Index, p: &PkgRef) -> Result<PackageView> {
    view_package(index, p.clone(), package_rec(index, p)?)
}

fn package_rec(index: &Index, p: &PkgRef) -> Result<PackageRec> {
    p.validate()?;
    let v = index.get(Cf::Packages, &rec::package_key(p))?.ok_or_else(|| {
        Error::NotFound(format!(
            "{} package {:?} in {}/{}",
            p.ty, p.name, p.namespace, p.project
        ))
    })?;
    decode(&v, "package")
}

fn view_package(index: &Index, pkg: PkgRef, r: PackageRec) -> Result<PackageView> {
    let mut latest_version = String::new();
    let (from, to) = (r.id.to_be_bytes(), (r.id + 1).to_be_bytes());
    for kv in index.scan(Cf::Versions, &from, Some(&to), true) {
        let (_, v) = kv?;
        let v: VersionRec = decode(&v, "version")?;
        if v.deleted_ms.is_none() {
            latest_version = v.version;
            break;
        }
    }
    Ok(PackageView {
        pkg,
        rec: r,
        latest_version,
    })
}

pub struct PackageFilter {
    pub namespace: String,
    pub project: String,
    pub ty: Option<PackageType>,
    pub name_contains: String,
    pub state: State,
    pub sort: PackageSort,
    pub descending: bool,
}

impl PackageFilter {
    fn admits(&self, p: &PkgRef, r: &PackageRec) -> bool {
        (self.project.is_empty() || p.project == self.project)
            && self.ty.is_none_or(|t| t == p.ty)
            && (self.name_contains.is_empty() || p.name.contains(&self.name_contains))
            && self.state.admits(r.deleted_ms.is_some())
    }
}

pub fn list_packages(index: &Index, f: &PackageFilter, size: usize, token: &str) -> Result<Page<PackageView>> {
    super::model::validate_namespace(&f.namespace)?;
    if f.sort == PackageSort::Size {
        return list_packages_by_size(index, f, size, token);
    }
    // Name order walks `packages`; creation order walks the `c` index.
    let (cf, prefix) = match f.sort {
        PackageSort::Name => (Cf::Packages, rec::namespace_prefix(&f.namespace)),
        _ => (Cf::CatalogIdx, rec::pkg_created_prefix(&f.namespace)),
    };
    let end = rec::prefix_end(&prefix);
    let after = key_token(token, &prefix)?;
    let (from, to) = match (&after, f.descending) {
        (Some(k), false) => ([k.as_slice(), &[0]].concat(), end),
        (Some(k), true) => (prefix.clone(), Some(k.clone())),
        (None, _) => (prefix.clone(), end),
    };
    let mut page = Page::default();
    for kv in index.scan(cf, &from, to.as_deref(), f.descending) {
        let (k, v) = kv?;
        let (pkey, r) = match f.sort {
            PackageSort::Name => (k.to_vec(), v.to_vec()),
            _ => {
                // Reads are not on one snapshot: a purge may land in between.
                let Some(r) = index.get(Cf::Packages, &v)? else {
                    continue;
                };
                (v.to_vec(), r)
            }
        };
        let p = rec::parse_package_key(&pkey)?;
        let r: PackageRec = decode(&r, "package")?;
        if !f.admits(&p, &r) {
            continue;
        }
        if page.items.len() == size {
            page.next = hex::encode(page_last_key(&page.items, f.sort));
            break;
        }
        page.items.push(view_package(index, p, r)?);
    }
    Ok(page)
}

fn page_last_key(items: &[PackageView], sort: PackageSort) -> Vec<u8> {
    let last = items.last().expect("a full page is not empty");
    match sort {
        PackageSort::Name => rec::package_key(&last.pkg),
        _ => rec::pkg_created_key(&last.pkg.namespace, last.rec.id),
    }
}

/// Sizes change with every publish, so this order is computed per call
/// over the namespace's packages; the token is an offset.
fn list_packages_by_size(index: &Index, f: &PackageFilter, size: usize, token: &str) -> Result<Page<PackageView>> {
    let skip = match token {
        "" => 0,
        t => t.strip_prefix('o').and_then(|n| n.parse().ok()).ok_or_else(bad_token)?,
    };
    let prefix = rec::namespace_prefix(&f.namespace);
    let mut all = Vec::new();
    for kv in index.scan(Cf::Packages, &prefix, rec::prefix_end(&prefix).as_deref(), false) {
        let (k, v) = kv?;
        let p = rec::parse_package_key(&k)?;
        let r: PackageRec = decode(&v, "package")?;
        if f.admits(&p, &r) {
            all.push((r.size, p, r));
        }
    }
    // Stable: packages of equal size stay in name order either way.
    match f.descending {
        false => all.sort_by_key(|a| a.0),
        true => all.sort_by_key(|a| std::cmp::Reverse(a.0)),
    }
    let mut page = Page::default();
    let total = all.len();
    for (_, p, r) in all.into_iter().skip(skip).take(size) {
        page.items.push(view_package(index, p, r)?);
    }
    if skip + page.items.len() < total {
        page.next = format!("o{}", skip + page.items.len());
    }
    Ok(page)
}

fn package_id(index: &Index, p: &PkgRef) -> Result<u64> {
    Ok(package_rec(index, p)?.id)
}

fn version_id(index: &Index, pkg_id: u64, v: &VerRef) -> Result<u64> {
    match index.get(Cf::CatalogIdx, &rec::version_name_key(pkg_id, &v.version))? {
        Some(b) => rec::be_u64(&b),
        None => Err(Error::NotFound(format!(
            "version {:?} of {} package {:?} in {}/{}",
            v.version, v.pkg.ty, v.pkg.name, v.pkg.namespace, v.pkg.project
        ))),
    }
}

pub fn list_versions(index: &Index, p: &PkgRef, state: State, size: usize, token: &str) -> Result<Page<VersionView>> {
    let pkg_id = package_id(index, p)?;
    let from = pkg_id.to_be_bytes();
    let to = match id_token(token)? {
        Some(last) => rec::version_key(pkg_id, last).to_vec(),
        None => (pkg_id + 1).to_be_bytes().to_vec(),
    };
    let mut page = Page::default();
    for kv in index.scan(Cf::Versions, &from, Some(&to), true) {
        let (k, v) = kv?;
        let (_, id) = rec::split_u64s(&k)?;
        let r: VersionRec = decode(&v, "version")?;
        if !state.admits(r.deleted_ms.is_some()) {
            continue;
        }
        if page.items.len() == size {
            page.next = page
                .items
                .last()
                .map(|v: &VersionView| v.id.to_string())
                .unwrap_or_default();
            break;
        }
        page.items.push(VersionView {
            ver: VerRef {
                pkg: p.clone(),
                version: r.version.clone(),
            },
            id,
            rec: r,
            files: Vec::new(),
        });
    }
    Ok(page)
}

pub fn get_version(index: &Index, v: &VerRef) -> Result<VersionView> {
    let mut view = version(index, v)?;
    view.files = list_files(index, v, State::All, usize::MAX, "")?.items;
    Ok(view)
}

/// A version without its file list.
pub fn version(index: &Index, v: &VerRef) -> Result<VersionView> {
    v.validate()?;
    let pkg_id = package_id(index, &v.pkg)?;
    let id = version_id(index, pkg_id, v)?;
    // Not on one snapshot with the lookup: a purge may land in between.
    let r = index
        .get(Cf::Versions, &rec::version_key(pkg_id, id))?
        .ok_or_else(|| Error::NotFound(format!("version {:?} (purged just now)", v.version)))?;
    Ok(VersionView {
        ver: v.clone(),
        id,
        rec: decode(&r, "version")?,
        files: Vec::new(),
    })
}

pub fn list_files(index: &Index, v: &VerRef, state: State, size: usize, token: &str) -> Result<Page<FileView>> {
    v.validate()?;
    let pkg_id = package_id(index, &v.pkg)?;
    let ver_id = version_id(index, pkg_id, v)?;
    let from = match id_token(token)? {
        Some(last) => rec::file_key(ver_id, last.saturating_add(1)).to_vec(),
        None => ver_id.to_be_bytes().to_vec(),
    };
    let to = (ver_id + 1).to_be_bytes();
    let mut page = Page::default();
    for kv in index.scan(Cf::Files, &from, Some(&to), false) {
        let (k, v) = kv?;
        let (_, id) = rec::split_u64s(&k)?;
        let r: FileRec = decode(&v, "file")?;
        if !state.admits(r.deleted_ms.is_some()) {
            continue;
        }
        if page.items.len() == size {
            page.next = page
                .items
                .last()
                .map(|f: &FileView| f.id.to_string())
                .unwrap_or_default();
            break;
        }
        page.items.push(FileView { id, rec: r });
    }
    Ok(page)
}

pub fn get_file(index: &Index, f: &FileRef) -> Result<FileView> {
    f.ver.validate()?;
    let pkg_id = package_id(index, &f.ver.pkg)?;
    let ver_id = version_id(index, pkg_id, &f.ver)?;
    let r = index
        .get(Cf::Files, &rec::file_key(ver_id, f.file_id))?
        .ok_or_else(|| Error::NotFound(format!("file {} in version {:?}", f.file_id, f.ver.version)))?;
    Ok(FileView {
        id: f.file_id,
        rec: decode(&r, "file")?,
    })
}

pub fn duplicate_policy(index: &Index, ns: &str, ty: PackageType) -> Result<DupPolicy> {
    super::model::validate_namespace(ns)?;
    match index.get(Cf::CatalogIdx, &rec::policy_key(ns, ty))? {
        Some(v) => decode(&v, "policy"),
        None => Ok(DupPolicy::default_allow()),
    }
}

/// Refuses, before any byte is uploaded, a publish the commit would refuse
/// now: into a deleted package or version, or a duplicate the policy
/// forbids. The commit checks again, authoritatively.
pub fn precheck_publish(index: &Index, v: &VerRef, file_name: &str) -> Result<()> {
    let pkg = match package_rec(index, &v.pkg) {
        Ok(p) => p,
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if pkg.deleted_ms.is_some() {
        return Err(super::rules::deleted_error(v, true));
    }
    let ver_id = match version_id(index, pkg.id, v) {
        Ok(id) => id,
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some(ver) = index.get(Cf::Versions, &rec::version_key(pkg.id, ver_id))? else {
        return Ok(()); // purged just now; the commit decides
    };
    if decode::<VersionRec>(&ver, "version")?.deleted_ms.is_some() {
        return Err(super::rules::deleted_error(v, false));
    }
    if index
        .get(Cf::CatalogIdx, &rec::file_name_key(ver_id, file_name))?
        .is_none()
    {
        return Ok(());
    }
    let p = duplicate_policy(index, &v.pkg.namespace, v.pkg.ty)?;
    let allowed = p.allow_duplicates
        || (!p.exception_regex.is_empty() && super::rules::compile(&p.exception_regex)?.is_match(file_name));
    match allowed {
        true => Ok(()),
        false => Err(super::rules::duplicate_error(v, file_name)),
    }
}

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub namespace: String,
    pub project: String,
    pub name: String,
    pub action: String,
    pub actor: String,
    pub since_ms: i64,
    pub until_ms: i64,
}

impl EventFilter {
    fn admits(&self, e: &EventRec) -> bool {
        let eq = |want: &str, got: &str| want.is_empty() || want == got;
        eq(&self.namespace, &e.namespace)
            && eq(&self.project, &e.project)
            && eq(&self.name, &e.name)
            && eq(&self.action, &e.action)
            && eq(&self.actor, &e.actor)
            && (self.since_ms == 0 || e.unix_ms >= self.since_ms)
            && (self.until_ms == 0 || e.unix_ms <= self.until_ms)
    }
}

/// Audit events, newest first.
pub fn list_events(index: &Index, f: &EventFilter, size: usize, token: &str) -> Result<Page<(u64, EventRec)>> {
    // A filter that can match nothing is a mistake worth saying.
    if !f.action.is_empty() && !rec::ACTIONS.contains(&f.action.as_str()) {
        return Err(Error::invalid(format!(
            "unknown action {:?}; the actions are {}",
            f.action,
            rec::ACTIONS.join(", ")
        )));
    }
    let to = id_token(token)?.map(|last| last.to_be_bytes());
    let mut page = Page::default();
    let mut last_seen = None;
    for (scanned, kv) in index
        .scan(Cf::Audit, &[], to.as_ref().map(|t| t.as_slice()), true)
        .enumerate()
    {
        let (k, v) = kv?;
        let id = rec::be_u64(&k)?;
        if scanned == MAX_EVENT_SCAN {
            page.next = last_seen.map(|id: u64| id.to_string()).unwrap_or_default();
            break;
        }
        let e: EventRec = decode(&v, "audit event")?;
        if f.admits(&e) {
            if page.items.len() == size {
                page.next = last_seen.map(|id: u64| id.to_string()).unwrap_or_default();
                break;
            }
            page.items.push((id, e));
        }
        last_seen = Some(id);
    }
    Ok(page)
}
