//! Catalog changes. Run only by the committer, inside its transaction, so
//! a catalog change, the reference counts it moves, its audit event and the
//! store counters land in one RocksDB batch. Each operation checks first
//! and fails without writing; the committer also rolls a failed request
//! back to its savepoint, so a failed request never changes anything.

use std::collections::HashMap;

use regex::Regex;

use super::model::{FileRef, PackageType, PkgRef, VerRef, validate_file_name};
use super::read::FileView;
use super::records::{self as rec, DupPolicy, EventRec, FileRec, Ids, PackageRec, VersionRec, decode, encode};
use super::usage::{self, Counters, Deltas, Groups};
use crate::error::{Error, Result};
use crate::hash::{FileDigests, Hash};
use crate::index::{Cf, RefInfo, Stats, Txn, ref_key};
use crate::manifest::Manifest;

/// A purge batch stops taking trash items once it holds this many writes
/// (one item is never split: a huge package is purged in one batch).
const MAX_PURGE_WRITES: usize = 100_000;
/// Longest duplicate-exception regex accepted.
const MAX_REGEX: usize = 1024;

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
    /// alone in its batch: it scans committed state.
    Purge {
        actor: String,
        budget: usize,
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeCounts {
    pub packages: u64,
    pub versions: u64,
    pub files: u64,
    pub references_released: u64,
    pub blobs_unreferenced: u64,
    /// The budget ran out before everything due was purged.
    #[serde(skip)]
    pub more: bool,
}

impl PurgeCounts {
    pub fn add(&mut self, o: &PurgeCounts) {
        self.packages += o.packages;
        self.versions += o.versions;
        self.files += o.files;
        self.references_released += o.references_released;
        self.blobs_unreferenced += o.blobs_unreferenced;
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

/// The committer's catalog state: id counters and settings.
pub struct CatalogState {
    pub ids: Ids,
    pub trash_window_ms: i64,
    pub lease_ms: i64,
    /// Hard limits on the bytes a namespace holds (the sizes of the blobs
    /// it references).
    pub quotas: std::collections::BTreeMap<String, u64>,
    regexes: HashMap<String, Regex>,
}

impl CatalogState {
    pub fn new(ids: Ids, trash_window_ms: i64, lease_ms: i64, quotas: std::collections::BTreeMap<String, u64>) -> Self {
        CatalogState {
            ids,
            trash_window_ms,
            lease_ms,
            quotas,
            regexes: HashMap::new(),
        }
    }

    fn allows_duplicate(&mut self, p: &DupPolicy, file_name: &str) -> Result<bool> {
        if p.allow_duplicates {
            return Ok(true);
        }
        if p.exception_regex.is_empty() {
            return Ok(false);
        }
        if !self.regexes.contains_key(&p.exception_regex) {
            self.regexes
                .insert(p.exception_regex.clone(), compile(&p.exception_regex)?);
        }
        Ok(self.regexes[&p.exception_regex].is_match(file_name))
    }
}

/// Compiles an exception regex to match whole file names.
pub fn compile(re: &str) -> Result<Regex> {
    if re.len() > MAX_REGEX {
        return Err(Error::invalid(format!(
            "exception_regex is longer than {MAX_REGEX} bytes"
        )));
    }
    let build = |pattern: &str| regex::RegexBuilder::new(pattern).size_limit(1 << 20).build();
    build(&format!("^(?:{re})$")).map_err(|_| {
        // Report the error against what the caller wrote, on one line.
        let why = build(re).err().map(|e| e.to_string()).unwrap_or_default();
        let why: Vec<&str> = why.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        Error::invalid(format!(
            "exception_regex {re:?} is not a valid regex: {}",
            why.join(" ")
        ))
    })
}

/// One request's view of the committer's transaction.
pub struct Ctx<'t, 'a> {
    pub txn: &'t mut Txn<'a>,
    pub stats: &'t mut Stats,
    pub st: &'t mut CatalogState,
    pub now: i64,
}

pub fn duplicate_error(v: &VerRef, file_name: &str) -> Error {
    Error::AlreadyExists(format!(
        "file {file_name:?} already exists in version {:?} of {}, and the namespace's {} duplicate policy forbids duplicates",
        v.version,
        describe(&v.pkg),
        v.pkg.ty
    ))
}

/// Publishing into a deleted package (or version) is refused.
pub fn deleted_error(v: &VerRef, package: bool) -> Error {
    Error::FailedPrecondition(match package {
        true => format!("{} is deleted; restore it before publishing to it", describe(&v.pkg)),
        false => format!(
            "version {:?} of {} is deleted; restore it before publishing to it",
            v.version,
            describe(&v.pkg)
        ),
    })
}

fn describe(p: &PkgRef) -> String {
    format!("{} package {:?} in {}/{}", p.ty, p.name, p.namespace, p.project)
}

impl Ctx<'_, '_> {
    pub fn apply(&mut self, op: &CatalogOp) -> Result<CatalogOutcome> {
        match op {
            CatalogOp::Publish {
                at,
                file_name,
                blob,
                digests,
                actor,
            } => self.publish(at, file_name, blob, digests.as_deref(), actor),
            CatalogOp::Delete { target, actor } => self.delete(target, actor).map(|_| CatalogOutcome::Done),
            CatalogOp::Restore { target, actor } => self.restore(target, actor).map(|_| CatalogOutcome::Done),
            CatalogOp::Download(f) => self.download(f),
            CatalogOp::SetPolicy {
                namespace,
                ty,
                policy,
                actor,
            } => {
                crate::engine::validate_namespace(namespace)?;
                if !policy.exception_regex.is_empty() {
                    compile(&policy.exception_regex)?;
                }
                self.txn
                    .put(Cf::CatalogIdx, rec::policy_key(namespace, *ty), encode(policy));
                self.event(EventRec {
                    actor: actor.clone(),
                    action: "set-policy".into(),
                    target: "namespace".into(),
                    namespace: namespace.clone(),
                    ty: Some(*ty),
                    ..Default::default()
                });
                Ok(CatalogOutcome::Done)
            }
            CatalogOp::Purge { actor, budget } => self.purge(actor, *budget).map(CatalogOutcome::Purged),
            CatalogOp::SetRetentionPolicy {
                name,
                namespace,
                policy,
                actor,
            } => {
                let key = rec::retention_policy_key(name);
                let action = match policy {
                    Some(p) => {
                        self.txn.put(Cf::CatalogIdx, key, p.clone());
                        "set-retention-policy"
                    }
                    None if self.txn.get(Cf::CatalogIdx, &key)?.is_none() => {
                        return Err(Error::NotFound(format!("retention policy {name:?}")));
                    }
                    None => {
                        self.txn.delete(Cf::CatalogIdx, key);
                        "delete-retention-policy"
                    }
                };
                self.event(EventRec {
                    actor: actor.clone(),
                    action: action.into(),
                    target: "policy".into(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    ..Default::default()
                });
                Ok(CatalogOutcome::Done)
            }
            CatalogOp::DailyUsage {
                day,
                usage,
                namespaces,
                packages,
                keep_days,
            } => {
                self.txn
                    .put(Cf::CatalogIdx, crate::report::day_key(*day), usage.clone());
                let old = day.saturating_sub(*keep_days);
                let index = self.txn.index();
                for (ns, u) in namespaces {
                    use crate::report::namespace_day_key as key;
                    self.txn.put(Cf::CatalogIdx, key(ns, *day), u.clone());
                    for kv in index.scan(Cf::CatalogIdx, &key(ns, 0), Some(&key(ns, old)), false) {
                        self.txn.delete(Cf::CatalogIdx, kv?.0.to_vec());
                    }
                }
                for (pkg, bytes) in packages {
                    self.txn.put(
                        Cf::CatalogIdx,
                        crate::report::package_day_key(*day, *pkg),
                        bytes.to_be_bytes().to_vec(),
                    );
                }
                // Expire the oldest day, if any is due (one a day keeps up).
                let from = crate::report::package_day_key(0, 0);
                let to = crate::report::package_day_key(old, 0);
                for kv in index.scan(Cf::CatalogIdx, &from, Some(&to), false).take(100_000) {
                    self.txn.delete(Cf::CatalogIdx, kv?.0.to_vec());
                }
                for kv in index.scan(
                    Cf::CatalogIdx,
                    &crate::report::day_key(0),
                    Some(&crate::report::day_key(old)),
                    false,
                ) {
                    self.txn.delete(Cf::CatalogIdx, kv?.0.to_vec());
                }
                Ok(CatalogOutcome::Done)
            }
            CatalogOp::SweepState(state) => {
                match state {
                    Some(s) => self.txn.put(Cf::CatalogIdx, rec::SWEEP_KEY, s.clone()),
                    None => self.txn.delete(Cf::CatalogIdx, rec::SWEEP_KEY),
                }
                Ok(CatalogOutcome::Done)
            }
        }
    }

    // ---- lookups through the transaction ----

    fn package(&self, p: &PkgRef) -> Result<(Vec<u8>, PackageRec)> {
        let key = rec::package_key(p);
        match self.txn.get(Cf::Packages, &key)? {
            Some(v) => Ok((key, decode(&v, "package")?)),
            None => Err(Error::NotFound(describe(p))),
        }
    }

    fn version(&self, pkg_id: u64, v: &VerRef) -> Result<(u64, VersionRec)> {
        let not_found = || Error::NotFound(format!("version {:?} of {}", v.version, describe(&v.pkg)));
        let id = match self
            .txn
            .get(Cf::CatalogIdx, &rec::version_name_key(pkg_id, &v.version))?
        {
            Some(b) => rec::be_u64(&b)?,
            None => return Err(not_found()),
        };
        let r = self
            .txn
            .get(Cf::Versions, &rec::version_key(pkg_id, id))?
            .ok_or_else(|| Error::corrupt(format!("version index points at missing version {id}")))?;
        Ok((id, decode(&r, "version")?))
    }

    fn file(&self, ver_id: u64, f: &FileRef) -> Result<FileRec> {
        match self.txn.get(Cf::Files, &rec::file_key(ver_id, f.file_id))? {
            Some(v) => decode(&v, "file"),
            None => Err(Error::NotFound(format!(
                "file {} in version {:?} of {}",
                f.file_id,
                f.ver.version,
                describe(&f.ver.pkg)
            ))),
        }
    }

    fn policy(&self, ns: &str, ty: PackageType) -> Result<DupPolicy> {
        match self.txn.get(Cf::CatalogIdx, &rec::policy_key(ns, ty))? {
            Some(v) => decode(&v, "policy"),
            None => Ok(DupPolicy::default_allow()),
        }
    }

    fn count(&self, key: &[u8]) -> Result<u64> {
        self.txn.get(Cf::CatalogIdx, key)?.map_or(Ok(0), |b| rec::be_u64(&b))
    }

    fn set_count(&mut self, key: Vec<u8>, n: u64) {
        match n {
            0 => self.txn.delete(Cf::CatalogIdx, key),
            n => self.txn.put(Cf::CatalogIdx, key, n.to_be_bytes().to_vec()),
        }
    }

    fn put_package(&mut self, key: Vec<u8>, r: &PackageRec) {
        self.txn.put(Cf::Packages, key, encode(r));
    }

    fn put_version(&mut self, pkg_id: u64, ver_id: u64, r: &VersionRec) {
        self.txn.put(Cf::Versions, rec::version_key(pkg_id, ver_id), encode(r));
    }

    fn put_file(&mut self, ver_id: u64, file_id: u64, r: &FileRec) {
        self.txn.put(Cf::Files, rec::file_key(ver_id, file_id), encode(r));
    }

    fn event(&mut self, mut e: EventRec) {
        e.unix_ms = self.now;
        let id = self.st.ids.event;
        self.st.ids.event += 1;
        self.txn.put(Cf::Audit, id.to_be_bytes(), encode(&e));
    }

    fn event_for(&self, actor: &str, action: &str, target: &str, v: &VerRef, bytes: u64) -> EventRec {
        let p = &v.pkg;
        EventRec {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            namespace: p.namespace.clone(),
            project: p.project.clone(),
            ty: Some(p.ty),
            name: p.name.clone(),
            version: v.version.clone(),
            bytes,
            ..Default::default()
        }
    }

    fn check_duplicate(&mut self, v: &VerRef, ver_id: u64, file_name: &str) -> Result<()> {
        if self.count(&rec::file_name_key(ver_id, file_name))? == 0 {
            return Ok(());
        }
        let policy = self.policy(&v.pkg.namespace, v.pkg.ty)?;
        if self.st.allows_duplicate(&policy, file_name)? {
            return Ok(());
        }
        Err(duplicate_error(v, file_name))
    }

    fn in_window(&self, deleted_ms: i64, what: &str) -> Result<()> {
        if self.now.saturating_sub(deleted_ms) > self.st.trash_window_ms {
            return Err(Error::FailedPrecondition(format!(
                "{what} was deleted at {deleted_ms} ms, outside the {} s trash window",
                self.st.trash_window_ms / 1000
            )));
        }
        Ok(())
    }

    // ---- operations ----

    fn publish(
        &mut self,
        at: &VerRef,
        file_name: &str,
        blob: &Hash,
        digests: Option<&FileDigests>,
        actor: &str,
    ) -> Result<CatalogOutcome> {
        at.validate()?;
        validate_file_name(file_name)?;
        let ns = &at.pkg.namespace;
        let mut r = self.txn.reference(ns, blob)?.ok_or_else(|| {
            Error::NotFound(format!(
                "blob {blob} in namespace {ns} (upload it first, or stream it in this call)"
            ))
        })?;
        let m = self
            .txn
            .get(Cf::Blobs, &blob.0)?
            .ok_or_else(|| Error::corrupt(format!("blob {blob} is referenced but has no manifest")))?;
        let m = Manifest::decode(&m)?;

        let pkey = rec::package_key(&at.pkg);
        let (mut pkg, package_created) = match self.txn.get(Cf::Packages, &pkey)? {
            Some(v) => (decode::<PackageRec>(&v, "package")?, false),
            None => {
                let id = self.st.ids.package;
                self.st.ids.package += 1;
                self.txn.put(Cf::CatalogIdx, rec::pkg_by_id_key(id), pkey.clone());
                self.txn.put(Cf::CatalogIdx, rec::pkg_created_key(ns, id), pkey.clone());
                let p = PackageRec {
                    id,
                    created_ms: self.now,
                    ..Default::default()
                };
                (p, true)
            }
        };
        if pkg.deleted_ms.is_some() {
            return Err(deleted_error(at, true));
        }
        let (ver_id, mut ver, version_created) = match self.version(pkg.id, at) {
            Ok((id, v)) => (id, v, false),
            Err(Error::NotFound(_)) => {
                let id = self.st.ids.version;
                self.st.ids.version += 1;
                self.txn.put(
                    Cf::CatalogIdx,
                    rec::version_name_key(pkg.id, &at.version),
                    id.to_be_bytes().to_vec(),
                );
                pkg.versions += 1;
                let v = VersionRec {
                    version: at.version.clone(),
                    created_ms: self.now,
                    ..Default::default()
                };
                (id, v, true)
            }
            Err(e) => return Err(e),
        };
        if ver.deleted_ms.is_some() {
            return Err(deleted_error(at, false));
        }
        self.check_duplicate(at, ver_id, file_name)?;

        let d = digests.unwrap_or(&m.digests);
        let file_id = self.st.ids.file;
        self.st.ids.file += 1;
        let f = FileRec {
            name: file_name.to_string(),
            blake3: blob.0,
            size: m.size,
            sha256: m.digests.sha256,
            sha1: d.sha1.or(m.digests.sha1).map(|h| h.to_vec()),
            sha512: d.sha512.or(m.digests.sha512).map(|h| h.to_vec()),
            md5: d.md5.or(m.digests.md5).map(|h| h.to_vec()),
            created_ms: self.now,
            ..Default::default()
        };
        self.put_file(ver_id, file_id, &f);
        let fname = rec::file_name_key(ver_id, file_name);
        let n = self.count(&fname)?;
        self.set_count(fname, n + 1);
        let rk = ref_key(ns, blob);
        self.txn.put(
            Cf::CatalogIdx,
            rec::blob_file_key(&rk, file_id),
            ver_id.to_be_bytes().to_vec(),
        );
        r.files += 1;
        self.txn.put_ref(ns, blob, &r);
        ver.files += 1;
        ver.size += f.size;
        pkg.files += 1;
        pkg.size += f.size;
        self.put_version(pkg.id, ver_id, &ver);
        self.put_package(pkey, &pkg);
        let g = Groups::of(&at.pkg);
        let mut d = Deltas::default();
        d.package(
            &g,
            &Counters {
                packages: package_created as i64,
                versions: version_created as i64,
                files: 1,
                logical_bytes: f.size as i64,
                ..Default::default()
            },
        );
        usage::file_uses(self.txn, &mut d, &g, &m, 1)?;
        d.write(self.txn)?;
        let mut e = self.event_for(actor, "publish", "file", at, f.size);
        e.file_name = file_name.to_string();
        e.file_id = file_id;
        self.event(e);
        Ok(CatalogOutcome::Published {
            file: FileView { id: file_id, rec: f },
            package_created,
            version_created,
        })
    }

    fn delete(&mut self, target: &Target, actor: &str) -> Result<()> {
        let now = self.now;
        match target {
            Target::Package(p) => {
                p.validate()?;
                let (key, mut pkg) = self.package(p)?;
                if pkg.deleted_ms.is_some() {
                    return Err(Error::FailedPrecondition(format!("{} is already deleted", describe(p))));
                }
                pkg.deleted_ms = Some(now);
                self.txn.put(
                    Cf::CatalogIdx,
                    rec::trash_key(now, rec::TRASH_PACKAGE, pkg.id),
                    key.clone(),
                );
                let e = self.event_for(actor, "delete", "package", &pkg_only(p), pkg.size);
                self.move_usage(
                    p,
                    Counters::to_trash(1, pkg.versions as i64, pkg.files as i64, pkg.size as i64),
                )?;
                self.put_package(key, &pkg);
                self.event(e);
            }
            Target::Version(v) => {
                v.validate()?;
                let (key, mut pkg) = self.package(&v.pkg)?;
                let (ver_id, mut ver) = self.version(pkg.id, v)?;
                if ver.deleted_ms.is_some() {
                    return Err(Error::FailedPrecondition(format!(
                        "version {:?} of {} is already deleted",
                        v.version,
                        describe(&v.pkg)
                    )));
                }
                ver.deleted_ms = Some(now);
                if pkg.deleted_ms.is_none() {
                    self.move_usage(&v.pkg, Counters::to_trash(0, 1, ver.files as i64, ver.size as i64))?;
                }
                sub(&mut pkg.versions, 1, "package versions")?;
                sub(&mut pkg.files, ver.files, "package files")?;
                sub(&mut pkg.size, ver.size, "package bytes")?;
                self.txn.put(
                    Cf::CatalogIdx,
                    rec::trash_key(now, rec::TRASH_VERSION, ver_id),
                    rec::version_key(pkg.id, ver_id).to_vec(),
                );
                let e = self.event_for(actor, "delete", "version", v, ver.size);
                self.put_version(pkg.id, ver_id, &ver);
                self.put_package(key, &pkg);
                self.event(e);
            }
            Target::File(f) => {
                f.ver.validate()?;
                let (key, mut pkg) = self.package(&f.ver.pkg)?;
                let (ver_id, mut ver) = self.version(pkg.id, &f.ver)?;
                let mut file = self.file(ver_id, f)?;
                if file.deleted_ms.is_some() {
                    return Err(Error::FailedPrecondition(format!(
                        "file {} is already deleted",
                        f.file_id
                    )));
                }
                file.deleted_ms = Some(now);
                let fname = rec::file_name_key(ver_id, &file.name);
                let n = self.count(&fname)?;
                self.set_count(fname, minus_one(n, "active files of a name")?);
                sub(&mut ver.files, 1, "version files")?;
                sub(&mut ver.size, file.size, "version bytes")?;
                if ver.deleted_ms.is_none() {
                    sub(&mut pkg.files, 1, "package files")?;
                    sub(&mut pkg.size, file.size, "package bytes")?;
                    if pkg.deleted_ms.is_none() {
                        self.move_usage(&f.ver.pkg, Counters::to_trash(0, 0, 1, file.size as i64))?;
                    }
                }
                self.txn.put(
                    Cf::CatalogIdx,
                    rec::trash_key(now, rec::TRASH_FILE, f.file_id),
                    [rec::version_key(pkg.id, ver_id).as_slice(), &f.file_id.to_be_bytes()].concat(),
                );
                let mut e = self.event_for(actor, "delete", "file", &f.ver, file.size);
                e.file_name = file.name.clone();
                e.file_id = f.file_id;
                self.put_file(ver_id, f.file_id, &file);
                self.put_version(pkg.id, ver_id, &ver);
                self.put_package(key, &pkg);
                self.event(e);
            }
        }
        Ok(())
    }

    fn restore(&mut self, target: &Target, actor: &str) -> Result<()> {
        let not_deleted = |what: String| Error::FailedPrecondition(format!("{what} is not deleted"));
        match target {
            Target::Package(p) => {
                p.validate()?;
                let (key, mut pkg) = self.package(p)?;
                let at = pkg.deleted_ms.ok_or_else(|| not_deleted(describe(p)))?;
                self.in_window(at, &describe(p))?;
                pkg.deleted_ms = None;
                self.txn
                    .delete(Cf::CatalogIdx, rec::trash_key(at, rec::TRASH_PACKAGE, pkg.id));
                let e = self.event_for(actor, "restore", "package", &pkg_only(p), pkg.size);
                self.move_usage(
                    p,
                    Counters::to_trash(1, pkg.versions as i64, pkg.files as i64, pkg.size as i64).neg(),
                )?;
                self.put_package(key, &pkg);
                self.event(e);
            }
            Target::Version(v) => {
                v.validate()?;
                let (key, mut pkg) = self.package(&v.pkg)?;
                let (ver_id, mut ver) = self.version(pkg.id, v)?;
                let what = format!("version {:?} of {}", v.version, describe(&v.pkg));
                let at = ver.deleted_ms.ok_or_else(|| not_deleted(what.clone()))?;
                self.in_window(at, &what)?;
                ver.deleted_ms = None;
                if pkg.deleted_ms.is_none() {
                    self.move_usage(
                        &v.pkg,
                        Counters::to_trash(0, 1, ver.files as i64, ver.size as i64).neg(),
                    )?;
                }
                pkg.versions += 1;
                pkg.files += ver.files;
                pkg.size += ver.size;
                self.txn
                    .delete(Cf::CatalogIdx, rec::trash_key(at, rec::TRASH_VERSION, ver_id));
                let e = self.event_for(actor, "restore", "version", v, ver.size);
                self.put_version(pkg.id, ver_id, &ver);
                self.put_package(key, &pkg);
                self.event(e);
            }
            Target::File(f) => {
                f.ver.validate()?;
                let (key, mut pkg) = self.package(&f.ver.pkg)?;
                let (ver_id, mut ver) = self.version(pkg.id, &f.ver)?;
                let mut file = self.file(ver_id, f)?;
                let what = format!("file {}", f.file_id);
                let at = file.deleted_ms.ok_or_else(|| not_deleted(what.clone()))?;
                self.in_window(at, &what)?;
                self.check_duplicate(&f.ver, ver_id, &file.name)?;
                file.deleted_ms = None;
                let fname = rec::file_name_key(ver_id, &file.name);
                let n = self.count(&fname)?;
                self.set_count(fname, n + 1);
                ver.files += 1;
                ver.size += file.size;
                if ver.deleted_ms.is_none() {
                    pkg.files += 1;
                    pkg.size += file.size;
                    if pkg.deleted_ms.is_none() {
                        self.move_usage(&f.ver.pkg, Counters::to_trash(0, 0, 1, file.size as i64).neg())?;
                    }
                }
                self.txn
                    .delete(Cf::CatalogIdx, rec::trash_key(at, rec::TRASH_FILE, f.file_id));
                let mut e = self.event_for(actor, "restore", "file", &f.ver, file.size);
                e.file_name = file.name.clone();
                e.file_id = f.file_id;
                self.put_file(ver_id, f.file_id, &file);
                self.put_version(pkg.id, ver_id, &ver);
                self.put_package(key, &pkg);
                self.event(e);
            }
        }
        Ok(())
    }

    fn download(&mut self, f: &FileRef) -> Result<CatalogOutcome> {
        f.ver.validate()?;
        let (_, pkg) = self.package(&f.ver.pkg)?;
        let (ver_id, _) = self.version(pkg.id, &f.ver)?;
        let mut file = self.file(ver_id, f)?;
        if file.deleted_ms.is_some() {
            return Err(Error::FailedPrecondition(format!("file {} is deleted", f.file_id)));
        }
        file.last_download_ms = self.now;
        file.downloads += 1;
        self.put_file(ver_id, f.file_id, &file);
        Ok(CatalogOutcome::File(FileView {
            id: f.file_id,
            rec: file,
        }))
    }

    // ---- references ----

    /// Records that `ns` stored `blob` of `size` bytes (a new reference with
    /// an open lease, within the namespace's quota), or renews the lease of
    /// the reference it has. Returns the new reference.
    pub fn upload_ref(&mut self, ns: &str, blob: &Hash, size: u64) -> Result<Option<RefInfo>> {
        let until = self.now.saturating_add(self.st.lease_ms);
        let rk = ref_key(ns, blob);
        match self.txn.reference(ns, blob)? {
            Some(mut r) => {
                if r.lease_until_ms < until {
                    self.txn.delete(Cf::CatalogIdx, rec::lease_key(r.lease_until_ms, &rk));
                    self.txn.put(Cf::CatalogIdx, rec::lease_key(until, &rk), Vec::new());
                    r.lease_until_ms = until;
                    self.txn.put_ref(ns, blob, &r);
                }
                Ok(None)
            }
            None => {
                let uk = rec::usage_key(ns);
                let used = self.count(&uk)?;
                if let Some(&quota) = self.st.quotas.get(ns)
                    && used.saturating_add(size) > quota
                {
                    return Err(Error::ResourceExhausted(format!(
                        "namespace {ns} holds {used} bytes; {size} more would exceed its quota of {quota} bytes"
                    )));
                }
                self.set_count(uk, used + size);
                let r = RefInfo {
                    created_ms: self.now,
                    lease_until_ms: until,
                    files: 0,
                };
                self.txn.put_ref(ns, blob, &r);
                self.txn.put(Cf::CatalogIdx, rec::lease_key(until, &rk), Vec::new());
                let hk = rec::holders_key(blob);
                let n = self.count(&hk)?;
                self.set_count(hk, n + 1);
                self.txn.put(Cf::CatalogIdx, rec::holder_key(blob, ns), Vec::new());
                Ok(Some(r))
            }
        }
    }

    /// A file of `ns` that used `blob` is gone for good.
    fn release_file(&mut self, ns: &str, blob: &Hash, file_id: u64, c: &mut PurgeCounts) -> Result<()> {
        let rk = ref_key(ns, blob);
        self.txn.delete(Cf::CatalogIdx, rec::blob_file_key(&rk, file_id));
        let mut r = self
            .txn
            .reference(ns, blob)?
            .ok_or_else(|| Error::corrupt(format!("file {file_id} uses blob {blob} that {ns} does not reference")))?;
        r.files = r
            .files
            .checked_sub(1)
            .ok_or_else(|| Error::corrupt(format!("reference count of {blob} in {ns} is already zero")))?;
        if r.held(self.now) {
            self.txn.put_ref(ns, blob, &r);
            Ok(())
        } else {
            self.drop_ref(ns, blob, &r, c)
        }
    }

    fn drop_ref(&mut self, ns: &str, blob: &Hash, r: &RefInfo, c: &mut PurgeCounts) -> Result<()> {
        let rk = ref_key(ns, blob);
        self.txn.delete_ref(ns, blob);
        self.txn.delete(Cf::CatalogIdx, rec::lease_key(r.lease_until_ms, &rk));
        let m = match self.txn.get(Cf::Blobs, &blob.0)? {
            Some(m) => Manifest::decode(&m)?,
            None => return Err(Error::corrupt(format!("referenced blob {blob} has no manifest"))),
        };
        let size = m.size;
        let uk = rec::usage_key(ns);
        let used = self.count(&uk)?;
        self.set_count(
            uk,
            used.checked_sub(size)
                .ok_or_else(|| Error::corrupt(format!("namespace {ns} usage is below a blob it holds")))?,
        );
        sub(&mut self.stats.references, 1, "store references")?;
        sub(&mut self.stats.logical_bytes, size, "store logical bytes")?;
        c.references_released += 1;
        let hk = rec::holders_key(blob);
        let n = minus_one(self.count(&hk)?, "namespaces holding a blob")?;
        self.set_count(hk, n);
        self.txn.delete(Cf::CatalogIdx, rec::holder_key(blob, ns));
        if n == 0 {
            super::chunks::release(self.txn, self.stats, self.now, &m)?;
            c.blobs_unreferenced += 1;
        }
        Ok(())
    }

    // ---- purge ----

    fn purge(&mut self, actor: &str, budget: usize) -> Result<PurgeCounts> {
        let mut c = PurgeCounts::default();
        let cutoff = self.now.saturating_sub(self.st.trash_window_ms);
        let index = self.txn.index();
        let from = [b't'];
        let to = rec::trash_key(cutoff.saturating_add(1), 0, 0);
        let due: Vec<_> = index
            .scan(Cf::CatalogIdx, &from, Some(&to), false)
            .take(budget + 1)
            .collect::<Result<_>>()?;
        c.more = due.len() > budget;
        for (k, v) in due.iter().take(budget) {
            if self.txn.len() >= MAX_PURGE_WRITES {
                c.more = true;
                break;
            }
            // The entry may be gone already: its parent was purged earlier in this batch.
            if self.txn.get(Cf::CatalogIdx, k)?.is_none() {
                continue;
            }
            // One damaged item must not stop every later purge: undo just it.
            let (sp, stats, ids, counts) = (self.txn.savepoint(), *self.stats, self.st.ids, c);
            if let Err(e) = self.purge_item(k, v, actor, &mut c) {
                if e.is_storage() {
                    return Err(e);
                }
                tracing::error!(error = %e, key = %hex::encode(k), "cannot purge a trash item; skipped (run `stowage admin check`)");
                self.txn.rollback(sp);
                (*self.stats, self.st.ids, c) = (stats, ids, counts);
            }
        }
        // Upload leases that ended with no file using the blob.
        let to = rec::lease_key(self.now.saturating_add(1), &[]);
        let ended: Vec<_> = index
            .scan(Cf::CatalogIdx, b"l", Some(&to), false)
            .take(budget + 1)
            .collect::<Result<_>>()?;
        c.more |= ended.len() > budget;
        for (k, _) in ended.into_iter().take(budget) {
            if self.txn.len() >= MAX_PURGE_WRITES {
                c.more = true;
                break;
            }
            self.txn.delete(Cf::CatalogIdx, k.to_vec());
            let (ns, blob) = crate::index::decode_ref_key(&k[9..])?;
            if let Some(r) = self.txn.reference(&ns, &blob)?
                && !r.held(self.now)
            {
                self.drop_ref(&ns, &blob, &r, &mut c)?;
            }
        }
        Ok(c)
    }

    fn purge_item(&mut self, k: &[u8], v: &[u8], actor: &str, c: &mut PurgeCounts) -> Result<()> {
        match k.get(9) {
            Some(&rec::TRASH_PACKAGE) => self.purge_package(v, actor, c),
            Some(&rec::TRASH_VERSION) => {
                let (pkg_id, ver_id) = rec::split_u64s(v)?;
                let (_, pref) = self.package_by_id(pkg_id)?;
                self.purge_version(&pref, pkg_id, ver_id, actor, true, c).map(drop)
            }
            Some(&rec::TRASH_FILE) => {
                let (pkg_id, ver_id) = rec::split_u64s(v.get(..16).unwrap_or_default())?;
                let file_id = rec::be_u64(v.get(16..).unwrap_or_default())?;
                let (_, pref) = self.package_by_id(pkg_id)?;
                let vrec: VersionRec = decode(
                    &self
                        .txn
                        .get(Cf::Versions, &rec::version_key(pkg_id, ver_id))?
                        .ok_or_else(|| Error::corrupt("trashed file of a missing version"))?,
                    "version",
                )?;
                let vref = VerRef {
                    pkg: pref,
                    version: vrec.version,
                };
                self.purge_file(&vref, ver_id, file_id, Some(actor), c).map(drop)
            }
            _ => Err(Error::corrupt("bad trash key")),
        }
    }

    /// Files of `p` moved between active and the trash (`d`).
    fn move_usage(&mut self, p: &PkgRef, d: Counters) -> Result<()> {
        let mut deltas = Deltas::default();
        deltas.package(&Groups::of(p), &d);
        deltas.write(self.txn)
    }

    /// A file of `p`, in the trash, is purged: it no longer uses its blob.
    fn purge_usage(&mut self, p: &PkgRef, f: &FileRec) -> Result<()> {
        let m = match self.txn.get(Cf::Blobs, &f.blake3)? {
            Some(m) => Manifest::decode(&m)?,
            None => return Err(Error::corrupt(format!("file blob {} has no manifest", f.blob()))),
        };
        let g = Groups::of(p);
        let mut d = Deltas::default();
        d.package(
            &g,
            &Counters {
                trash_files: -1,
                trash_bytes: -(f.size as i64),
                ..Default::default()
            },
        );
        usage::file_uses(self.txn, &mut d, &g, &m, -1)?;
        d.write(self.txn)
    }

    fn package_by_id(&self, pkg_id: u64) -> Result<(Vec<u8>, PkgRef)> {
        let key = self
            .txn
            .get(Cf::CatalogIdx, &rec::pkg_by_id_key(pkg_id))?
            .ok_or_else(|| Error::corrupt(format!("package id {pkg_id} has no entry")))?;
        let p = rec::parse_package_key(&key)?;
        Ok((key, p))
    }

    fn purge_package(&mut self, pkey: &[u8], actor: &str, c: &mut PurgeCounts) -> Result<()> {
        let p = rec::parse_package_key(pkey)?;
        let pkg: PackageRec = decode(
            &self
                .txn
                .get(Cf::Packages, pkey)?
                .ok_or_else(|| Error::corrupt("trashed package is missing"))?,
            "package",
        )?;
        let index = self.txn.index();
        let prefix = pkg.id.to_be_bytes();
        let end = (pkg.id + 1).to_be_bytes();
        let vers: Vec<_> = index
            .scan(Cf::Versions, &prefix, Some(&end), false)
            .collect::<Result<_>>()?;
        let mut bytes = 0;
        for (k, _) in vers {
            // The scan sees committed state: skip what this batch purged.
            if self.txn.get(Cf::Versions, &k)?.is_none() {
                continue;
            }
            let (_, ver_id) = rec::split_u64s(&k)?;
            bytes += self.purge_version(&p, pkg.id, ver_id, actor, false, c)?;
        }
        if let Some(at) = pkg.deleted_ms {
            self.txn
                .delete(Cf::CatalogIdx, rec::trash_key(at, rec::TRASH_PACKAGE, pkg.id));
        }
        self.txn.delete(Cf::Packages, pkey.to_vec());
        self.txn.delete(Cf::CatalogIdx, rec::pkg_by_id_key(pkg.id));
        self.txn
            .delete(Cf::CatalogIdx, rec::pkg_created_key(&p.namespace, pkg.id));
        c.packages += 1;
        let e = self.event_for(actor, "purge", "package", &pkg_only(&p), bytes);
        self.event(e);
        Ok(())
    }

    /// Purges a version and its files; returns the bytes of its files.
    /// `own_event`: the version itself was the trashed item.
    fn purge_version(
        &mut self,
        p: &PkgRef,
        pkg_id: u64,
        ver_id: u64,
        actor: &str,
        own_event: bool,
        c: &mut PurgeCounts,
    ) -> Result<u64> {
        let vkey = rec::version_key(pkg_id, ver_id);
        let ver: VersionRec = decode(
            &self
                .txn
                .get(Cf::Versions, &vkey)?
                .ok_or_else(|| Error::corrupt("purged version is missing"))?,
            "version",
        )?;
        let vref = VerRef {
            pkg: p.clone(),
            version: ver.version.clone(),
        };
        let index = self.txn.index();
        let files: Vec<_> = index
            .scan(
                Cf::Files,
                &ver_id.to_be_bytes(),
                Some(&(ver_id + 1).to_be_bytes()),
                false,
            )
            .collect::<Result<_>>()?;
        let mut bytes = 0;
        for (k, _) in files {
            if self.txn.get(Cf::Files, &k)?.is_none() {
                continue;
            }
            let (_, file_id) = rec::split_u64s(&k)?;
            bytes += self.purge_file(&vref, ver_id, file_id, None, c)?;
        }
        if let Some(at) = ver.deleted_ms {
            self.txn
                .delete(Cf::CatalogIdx, rec::trash_key(at, rec::TRASH_VERSION, ver_id));
        }
        self.txn.delete(Cf::Versions, vkey.to_vec());
        self.txn
            .delete(Cf::CatalogIdx, rec::version_name_key(pkg_id, &ver.version));
        c.versions += 1;
        if own_event {
            let e = self.event_for(actor, "purge", "version", &vref, bytes);
            self.event(e);
        }
        Ok(bytes)
    }

    /// Purges one file; `actor` set: the file itself was the trashed item.
    fn purge_file(
        &mut self,
        v: &VerRef,
        ver_id: u64,
        file_id: u64,
        actor: Option<&str>,
        c: &mut PurgeCounts,
    ) -> Result<u64> {
        let fkey = rec::file_key(ver_id, file_id);
        let f: FileRec = decode(
            &self
                .txn
                .get(Cf::Files, &fkey)?
                .ok_or_else(|| Error::corrupt("purged file is missing"))?,
            "file",
        )?;
        match f.deleted_ms {
            Some(at) => self
                .txn
                .delete(Cf::CatalogIdx, rec::trash_key(at, rec::TRASH_FILE, file_id)),
            None => {
                let fname = rec::file_name_key(ver_id, &f.name);
                let n = self.count(&fname)?;
                self.set_count(fname, minus_one(n, "active files of a name")?);
            }
        }
        self.txn.delete(Cf::Files, fkey.to_vec());
        self.purge_usage(&v.pkg, &f)?;
        self.release_file(&v.pkg.namespace, &f.blob(), file_id, c)?;
        c.files += 1;
        if let Some(actor) = actor {
            let mut e = self.event_for(actor, "purge", "file", v, f.size);
            e.file_name = f.name.clone();
            e.file_id = file_id;
            self.event(e);
        }
        Ok(f.size)
    }
}

/// `*n -= by`, or a `Corrupt` error (the request is rolled back) if the
/// stored count is already lower: drift is reported, never wrapped.
fn sub(n: &mut u64, by: u64, what: &str) -> Result<()> {
    *n = n.checked_sub(by).ok_or_else(|| {
        Error::corrupt(format!(
            "{what} would drop below zero ({n} - {by}); run `stowage admin check`"
        ))
    })?;
    Ok(())
}

fn minus_one(n: u64, what: &str) -> Result<u64> {
    let mut n = n;
    sub(&mut n, 1, what)?;
    Ok(n)
}

/// A version ref that names only a package (for package-level events).
fn pkg_only(p: &PkgRef) -> VerRef {
    VerRef {
        pkg: p.clone(),
        version: String::new(),
    }
}
