//! The trash: a soft delete moves a package, version or file into it (with
//! a trash entry, oldest first, for the purge) and a restore within the
//! trash window moves it back. The two are one function so every count one
//! moves, the other moves back.

use super::apply::{Ctx, minus_one, pkg_only, sub};
use super::model::PkgRef;
use super::ops::Target;
use super::records as rec;
use super::rules::describe;
use super::usage::Counters;
use crate::error::{Error, Result};
use crate::index::Cf;

/// `*n -= by` into the trash (reporting drift), `*n += by` out of it.
fn shift(n: &mut u64, by: u64, to_trash: bool, what: &str) -> Result<()> {
    match to_trash {
        true => sub(n, by, what),
        false => {
            *n += by;
            Ok(())
        }
    }
}

impl Ctx<'_, '_> {
    /// Deletes (`to_trash`) or restores a package, version or file.
    pub(super) fn trash(&mut self, target: &Target, actor: &str, to_trash: bool) -> Result<()> {
        let action = if to_trash { "delete" } else { "restore" };
        let signed = |c: Counters| if to_trash { c } else { c.neg() };
        match target {
            Target::Package(p) => {
                p.validate()?;
                let (key, mut pkg) = self.package(p)?;
                let at = self.flip(&mut pkg.deleted_ms, to_trash, &describe(p))?;
                self.trash_entry(rec::trash_key(at, rec::TRASH_PACKAGE, pkg.id), key.clone(), to_trash);
                let e = self.event_for(actor, action, "package", &pkg_only(p), pkg.size);
                self.move_usage(
                    p,
                    signed(Counters::to_trash(
                        1,
                        pkg.versions as i64,
                        pkg.files as i64,
                        pkg.size as i64,
                    )),
                )?;
                self.put_package(key, &pkg);
                self.event(e);
            }
            Target::Version(v) => {
                v.validate()?;
                let (key, mut pkg) = self.package(&v.pkg)?;
                let (ver_id, mut ver) = self.version(pkg.id, v)?;
                let what = format!("version {:?} of {}", v.version, describe(&v.pkg));
                let at = self.flip(&mut ver.deleted_ms, to_trash, &what)?;
                if pkg.deleted_ms.is_none() {
                    self.move_usage(
                        &v.pkg,
                        signed(Counters::to_trash(0, 1, ver.files as i64, ver.size as i64)),
                    )?;
                }
                shift(&mut pkg.versions, 1, to_trash, "package versions")?;
                shift(&mut pkg.files, ver.files, to_trash, "package files")?;
                shift(&mut pkg.size, ver.size, to_trash, "package bytes")?;
                self.trash_entry(
                    rec::trash_key(at, rec::TRASH_VERSION, ver_id),
                    rec::version_key(pkg.id, ver_id).to_vec(),
                    to_trash,
                );
                let e = self.event_for(actor, action, "version", v, ver.size);
                self.put_version(pkg.id, ver_id, &ver);
                self.put_package(key, &pkg);
                self.event(e);
            }
            Target::File(f) => {
                f.ver.validate()?;
                let (key, mut pkg) = self.package(&f.ver.pkg)?;
                let (ver_id, mut ver) = self.version(pkg.id, &f.ver)?;
                let mut file = self.file(ver_id, f)?;
                let at = self.flip(&mut file.deleted_ms, to_trash, &format!("file {}", f.file_id))?;
                if !to_trash {
                    self.check_duplicate(&f.ver, ver_id, &file.name)?;
                }
                let fname = rec::file_name_key(ver_id, &file.name);
                let n = self.count(&fname)?;
                self.set_count(
                    fname,
                    if to_trash {
                        minus_one(n, "active files of a name")?
                    } else {
                        n + 1
                    },
                );
                shift(&mut ver.files, 1, to_trash, "version files")?;
                shift(&mut ver.size, file.size, to_trash, "version bytes")?;
                if ver.deleted_ms.is_none() {
                    shift(&mut pkg.files, 1, to_trash, "package files")?;
                    shift(&mut pkg.size, file.size, to_trash, "package bytes")?;
                    if pkg.deleted_ms.is_none() {
                        self.move_usage(&f.ver.pkg, signed(Counters::to_trash(0, 0, 1, file.size as i64)))?;
                    }
                }
                self.trash_entry(
                    rec::trash_file_key(at, ver_id, f.file_id),
                    [rec::version_key(pkg.id, ver_id).as_slice(), &f.file_id.to_be_bytes()].concat(),
                    to_trash,
                );
                let mut e = self.event_for(actor, action, "file", &f.ver, file.size);
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

    /// Sets (`to_trash`) or clears a deletion time; returns it. Deleting
    /// twice, or restoring what is not deleted or outside the trash window,
    /// is refused.
    fn flip(&self, deleted_ms: &mut Option<i64>, to_trash: bool, what: &str) -> Result<i64> {
        if to_trash {
            if deleted_ms.is_some() {
                return Err(Error::FailedPrecondition(format!("{what} is already deleted")));
            }
            *deleted_ms = Some(self.now);
            return Ok(self.now);
        }
        let at = deleted_ms.ok_or_else(|| Error::FailedPrecondition(format!("{what} is not deleted")))?;
        self.in_window(at, what)?;
        *deleted_ms = None;
        Ok(at)
    }

    fn trash_entry(&mut self, key: Vec<u8>, value: Vec<u8>, to_trash: bool) {
        match to_trash {
            true => self.txn.put(Cf::CatalogIdx, key, value),
            false => self.txn.delete(Cf::CatalogIdx, key),
        }
    }

    /// Files of `p` moved between active and the trash (`d`).
    pub(super) fn move_usage(&mut self, p: &PkgRef, d: Counters) -> Result<()> {
        let mut deltas = super::usage::Deltas::default();
        deltas.package(&super::usage::Groups::of(p), &d);
        deltas.write(self.txn)
    }
}
