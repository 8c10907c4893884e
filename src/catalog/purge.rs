//! Purge: trash older than the trash window (or, `admin purge --now`, all
//! the trash in a scope) is removed for good (packages, versions, files,
//! their usage and their references), and references whose upload lease
//! ended with no file using them are dropped. Bounded per batch.

use super::apply::{Ctx, minus_one, pkg_only};
use super::model::{PkgRef, VerRef};
use super::ops::{PurgeCounts, PurgeScope};
use super::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use super::usage::{self, Counters, Deltas, Groups};
use crate::error::{Error, Result};
use crate::index::Cf;
use crate::manifest::Manifest;

/// A purge batch stops taking trash items once it holds this many writes
/// (one item is never split: a huge package is purged in one batch).
const MAX_PURGE_WRITES: usize = 100_000;

impl Ctx<'_, '_> {
    pub(super) fn purge(
        &mut self,
        actor: &str,
        budget: usize,
        now: Option<&PurgeScope>,
        after: Option<&[u8]>,
    ) -> Result<PurgeCounts> {
        let mut c = PurgeCounts::default();
        let condemned_before = self.stats.condemned_bytes;
        let index = self.txn.index();
        let from = match after {
            Some(k) => [k, &[0]].concat(),
            None => vec![rec::tag::TRASH],
        };
        let to = match now {
            // `--now`: the whole trash, whatever the window.
            Some(_) => vec![rec::tag::TRASH + 1],
            None => rec::trash_key(self.now.saturating_sub(self.st.trash_window_ms).saturating_add(1), 0, 0),
        };
        let due: Vec<_> = index
            .scan(Cf::CatalogIdx, &from, Some(&to), false)
            .take(budget + 1)
            .collect::<Result<_>>()?;
        let mut last = None;
        let mut stopped = due.len() > budget;
        for (k, v) in due.iter().take(budget) {
            if self.txn.len() >= MAX_PURGE_WRITES {
                stopped = true;
                break;
            }
            last = Some(k.to_vec());
            // The entry may be gone already: its parent was purged earlier in this batch.
            if self.txn.get(Cf::CatalogIdx, k)?.is_none() {
                continue;
            }
            if let Some(scope) = now
                && !scope.holds(&self.trashed_package(k, v)?)
            {
                continue;
            }
            // One damaged item must not stop every later purge: undo just it.
            let (sp, stats, ids, counts) = (self.txn.savepoint(), *self.stats, self.st.ids, c.clone());
            if let Err(e) = self.purge_item(k, v, actor, &mut c) {
                if e.is_storage() {
                    return Err(e);
                }
                tracing::error!(error = %e, key = %hex::encode(k), "cannot purge a trash item; skipped (run `stowage admin check`)");
                self.txn.rollback(sp);
                (*self.stats, self.st.ids, c) = (stats, ids, counts);
            }
        }
        // The next batch goes on after the last item seen here (one that
        // failed or lies outside the scope is not seen again).
        c.more = stopped;
        c.resume = match stopped {
            true => last.or_else(|| after.map(<[u8]>::to_vec)),
            false => Some(vec![rec::tag::TRASH + 1]),
        };
        // Upload leases that ended with no file using the blob.
        let to = rec::lease_key(self.now.saturating_add(1), &[]);
        let ended: Vec<_> = index
            .scan(Cf::CatalogIdx, &[rec::tag::LEASE], Some(&to), false)
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
        c.bytes_condemned = self.stats.condemned_bytes.saturating_sub(condemned_before);
        Ok(c)
    }

    /// The package a trash item belongs to (its value names it).
    fn trashed_package(&self, k: &[u8], v: &[u8]) -> Result<PkgRef> {
        match k.get(9) {
            Some(&rec::TRASH_PACKAGE) => rec::parse_package_key(v),
            Some(&rec::TRASH_VERSION | &rec::TRASH_FILE) => {
                let (pkg_id, _) = rec::split_u64s(v.get(..16).unwrap_or_default())?;
                Ok(self.package_by_id(pkg_id)?.1)
            }
            _ => Err(Error::corrupt("bad trash key")),
        }
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
                .delete(Cf::CatalogIdx, rec::trash_file_key(at, ver_id, file_id)),
            None => {
                let fname = rec::file_name_key(ver_id, &f.name);
                let n = self.count(&fname)?;
                self.set_count(fname, minus_one(n, "active files of a name")?);
            }
        }
        self.txn.delete(Cf::Files, fkey.to_vec());
        self.purge_usage(&v.pkg, &f)?;
        self.release_file(&v.pkg.namespace, &f.blob(), file_id, c)?;
        c.touched.push((v.pkg.namespace.clone(), f.blob()));
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
