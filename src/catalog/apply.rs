//! Catalog changes. Run only by the committer, inside its transaction, so
//! a catalog change, the reference counts it moves, its audit event and the
//! store counters land in one RocksDB batch. Each operation checks first
//! and fails without writing; the committer also rolls a failed request
//! back to its savepoint, so a failed request never changes anything.
//!
//! This file holds the dispatcher, the lookups every change shares and
//! publish; deletes and restores are in `trash`, references and quotas in
//! `refs`, the purge in `purge`, stored settings in `settings`.

use std::collections::HashMap;

use regex::Regex;

use super::model::{FileRef, PackageType, PkgRef, VerRef, validate_file_name};
pub use super::ops::{CatalogOp, CatalogOutcome, FileView, PurgeCounts, Target};
use super::records::{self as rec, DupPolicy, EventRec, FileRec, Ids, PackageRec, VersionRec, decode, encode};
use super::rules::{compile, deleted_error, describe, duplicate_error};
use super::usage::{self, Counters, Deltas, Groups};
use crate::error::{Error, Result};
use crate::hash::{FileDigests, Hash};
use crate::index::{Cf, Stats, Txn, ref_key};
use crate::manifest::Manifest;

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

/// One request's view of the committer's transaction.
pub struct Ctx<'t, 'a> {
    pub txn: &'t mut Txn<'a>,
    pub stats: &'t mut Stats,
    pub st: &'t mut CatalogState,
    pub now: i64,
}

impl Ctx<'_, '_> {
    /// Applies one catalog change to the transaction.
    pub fn apply(&mut self, op: &CatalogOp) -> Result<CatalogOutcome> {
        match op {
            CatalogOp::Publish {
                at,
                file_name,
                blob,
                digests,
                actor,
            } => self.publish(at, file_name, blob, digests.as_deref(), actor),
            CatalogOp::Delete { target, actor } => self.trash(target, actor, true).map(|_| CatalogOutcome::Done),
            CatalogOp::Restore { target, actor } => self.trash(target, actor, false).map(|_| CatalogOutcome::Done),
            CatalogOp::Download(f) => self.download(f),
            CatalogOp::SetPolicy {
                namespace,
                ty,
                policy,
                actor,
            } => self.set_policy(namespace, *ty, policy, actor),
            CatalogOp::Purge {
                actor,
                budget,
                now,
                after,
            } => self
                .purge(actor, *budget, now.as_ref(), after.as_deref())
                .map(CatalogOutcome::Purged),
            CatalogOp::SetRetentionPolicy {
                name,
                namespace,
                policy,
                actor,
            } => self.set_retention_policy(name, namespace, policy.as_deref(), actor),
            CatalogOp::DailyUsage {
                day,
                usage,
                namespaces,
                packages,
                keep_days,
            } => self.daily_usage(*day, usage, namespaces, packages, *keep_days),
            CatalogOp::SweepState(state) => self.sweep_state(state.as_deref()),
            CatalogOp::LastRun {
                job,
                ended_ms,
                elapsed_ms,
            } => {
                let v = rec::encode_last_run(*ended_ms, *elapsed_ms);
                self.txn.put(Cf::CatalogIdx, job.key().to_vec(), v);
                Ok(CatalogOutcome::Done)
            }
        }
    }

    pub(super) fn package(&self, p: &PkgRef) -> Result<(Vec<u8>, PackageRec)> {
        let key = rec::package_key(p);
        match self.txn.get(Cf::Packages, &key)? {
            Some(v) => Ok((key, decode(&v, "package")?)),
            None => Err(Error::NotFound(describe(p))),
        }
    }

    pub(super) fn version(&self, pkg_id: u64, v: &VerRef) -> Result<(u64, VersionRec)> {
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

    pub(super) fn file(&self, ver_id: u64, f: &FileRef) -> Result<FileRec> {
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

    pub(super) fn policy(&self, ns: &str, ty: PackageType) -> Result<DupPolicy> {
        match self.txn.get(Cf::CatalogIdx, &rec::policy_key(ns, ty))? {
            Some(v) => decode(&v, "policy"),
            None => Ok(DupPolicy::default_allow()),
        }
    }

    pub(super) fn count(&self, key: &[u8]) -> Result<u64> {
        self.txn.get(Cf::CatalogIdx, key)?.map_or(Ok(0), |b| rec::be_u64(&b))
    }

    pub(super) fn set_count(&mut self, key: Vec<u8>, n: u64) {
        match n {
            0 => self.txn.delete(Cf::CatalogIdx, key),
            n => self.txn.put(Cf::CatalogIdx, key, n.to_be_bytes().to_vec()),
        }
    }

    pub(super) fn put_package(&mut self, key: Vec<u8>, r: &PackageRec) {
        self.txn.put(Cf::Packages, key, encode(r));
    }

    pub(super) fn put_version(&mut self, pkg_id: u64, ver_id: u64, r: &VersionRec) {
        self.txn.put(Cf::Versions, rec::version_key(pkg_id, ver_id), encode(r));
    }

    pub(super) fn put_file(&mut self, ver_id: u64, file_id: u64, r: &FileRec) {
        self.txn.put(Cf::Files, rec::file_key(ver_id, file_id), encode(r));
    }

    pub(super) fn event(&mut self, mut e: EventRec) {
        e.unix_ms = self.now;
        let id = self.st.ids.event;
        self.st.ids.event += 1;
        self.txn.put(Cf::Audit, id.to_be_bytes(), encode(&e));
    }

    pub(super) fn event_for(&self, actor: &str, action: &str, target: &str, v: &VerRef, bytes: u64) -> EventRec {
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

    pub(super) fn check_duplicate(&mut self, v: &VerRef, ver_id: u64, file_name: &str) -> Result<()> {
        if self.count(&rec::file_name_key(ver_id, file_name))? == 0 {
            return Ok(());
        }
        let policy = self.policy(&v.pkg.namespace, v.pkg.ty)?;
        if self.st.allows_duplicate(&policy, file_name)? {
            return Ok(());
        }
        Err(duplicate_error(v, file_name))
    }

    pub(super) fn in_window(&self, deleted_ms: i64, what: &str) -> Result<()> {
        if self.now.saturating_sub(deleted_ms) > self.st.trash_window_ms {
            return Err(Error::FailedPrecondition(format!(
                "{what} was deleted at {deleted_ms} ms, outside the {} s trash window",
                self.st.trash_window_ms / 1000
            )));
        }
        Ok(())
    }

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

        // The extras the namespace asked for, and any this upload computed.
        let seen = m.digests.only(r.extras);
        let d = digests.unwrap_or(&seen);
        let file_id = self.next_file_id(ns)?;
        let f = FileRec {
            name: file_name.to_string(),
            blake3: blob.0,
            size: m.size,
            sha256: m.digests.sha256,
            sha1: d.sha1.or(seen.sha1).map(|h| h.to_vec()),
            sha512: d.sha512.or(seen.sha512).map(|h| h.to_vec()),
            md5: d.md5.or(seen.md5).map(|h| h.to_vec()),
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
        // The upload lease kept the blob until a file used it: it ends here.
        if r.lease_until_ms != 0 {
            self.txn.delete(Cf::CatalogIdx, rec::lease_key(r.lease_until_ms, &rk));
            r.lease_until_ms = 0;
        }
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

    /// The next file id of `ns`, from the namespace's own counter (so a
    /// tenant's ids say nothing about another's publishes).
    fn next_file_id(&mut self, ns: &str) -> Result<u64> {
        let k = rec::file_ids_key(ns);
        let id = match self.txn.get(Cf::CatalogIdx, &k)? {
            Some(v) => rec::be_u64(&v)?,
            None => self.st.ids.file,
        };
        self.txn.put(Cf::CatalogIdx, k, (id + 1).to_be_bytes().to_vec());
        Ok(id)
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
}

/// `*n -= by`, or a `Corrupt` error (the request is rolled back) if the
/// stored count is already lower: drift is reported, never wrapped.
pub(super) fn sub(n: &mut u64, by: u64, what: &str) -> Result<()> {
    *n = n.checked_sub(by).ok_or_else(|| {
        Error::corrupt(format!(
            "{what} would drop below zero ({n} - {by}); run `stowage admin check`"
        ))
    })?;
    Ok(())
}

pub(super) fn minus_one(n: u64, what: &str) -> Result<u64> {
    let mut n = n;
    sub(&mut n, 1, what)?;
    Ok(n)
}

/// A version ref that names only a package (for package-level events).
pub(super) fn pkg_only(p: &PkgRef) -> VerRef {
    VerRef {
        pkg: p.clone(),
        version: String::new(),
    }
}
