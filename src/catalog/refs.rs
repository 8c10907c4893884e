//! References: a namespace's hold on a blob (files using it, its upload
//! lease), the holders of each blob, and the bytes each namespace holds
//! against its quota. Releasing the last holder releases the blob's chunks.

use super::apply::{Ctx, minus_one, sub};
use super::ops::PurgeCounts;
use super::records as rec;
use crate::error::{Error, Result};
use crate::hash::{ExtraDigests, Hash};
use crate::index::{Cf, RefInfo, ref_key};
use crate::manifest::Manifest;

impl Ctx<'_, '_> {
    /// Records that `ns` stored `blob` of `size` bytes (a new reference with
    /// an open lease, within the namespace's quota), or renews the lease of
    /// the reference it has, adding the extra digests this upload asked
    /// for to those the namespace is shown. Returns the new reference.
    pub fn upload_ref(
        &mut self,
        ns: &str,
        blob: &Hash,
        size: u64,
        extras: ExtraDigests,
        lease_ms: i64,
    ) -> Result<Option<RefInfo>> {
        let until = self.now.saturating_add(lease_ms);
        let rk = ref_key(ns, blob);
        match self.txn.reference(ns, blob)? {
            Some(mut r) => {
                let old = r;
                if r.lease_until_ms < until {
                    self.txn.delete(Cf::CatalogIdx, rec::lease_key(r.lease_until_ms, &rk));
                    self.txn.put(Cf::CatalogIdx, rec::lease_key(until, &rk), Vec::new());
                    r.lease_until_ms = until;
                }
                r.extras = r.extras.or(extras);
                if r != old {
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
                    extras,
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
    pub(super) fn release_file(&mut self, ns: &str, blob: &Hash, file_id: u64, c: &mut PurgeCounts) -> Result<()> {
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

    pub(super) fn drop_ref(&mut self, ns: &str, blob: &Hash, r: &RefInfo, c: &mut PurgeCounts) -> Result<()> {
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
}
