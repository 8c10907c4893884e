//! `admin check`: recomputes every count the catalog keeps (version and
//! package aggregates, active file names, trash entries, a namespace's
//! reference count per blob, the namespaces holding each blob, the store's
//! reference counters) from the records themselves, on one snapshot, and
//! reports each disagreement; also each chunk's reference count from the
//! manifests, the store counters, and the capacity counters of
//! [`super::usage`]. Counts are compared as the walk goes,
//! except the chunk uses: one counter per chunk (~40 bytes) is held.

use std::collections::HashMap;

use super::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Index, RefInfo, Snapshot, Stats, decode_ref_key, ref_key};
use crate::manifest::Manifest;

/// Disagreements reported at most (the counts keep going).
const MAX_DRIFT: usize = 1000;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub packages: u64,
    pub versions: u64,
    pub files: u64,
    pub references: u64,
    pub blobs: u64,
    pub chunks: u64,
    pub drift: Vec<String>,
    /// Staged packs quarantined at start as damaged (filled by the engine).
    pub quarantined_packs: u64,
    /// Damage found in packs: the quarantined ones, and with `--read-data`
    /// every record that failed verification (filled by the engine).
    pub damage: Vec<crate::pack::verify::PackDamage>,
    /// With `--read-data`: what the read of every pack covered.
    pub data: Option<crate::pack::verify::DataCheck>,
}

impl CheckReport {
    fn drift(&mut self, msg: String) {
        if self.drift.len() < MAX_DRIFT {
            self.drift.push(msg);
        }
    }
    fn expect<T: PartialEq + std::fmt::Debug>(&mut self, what: impl FnOnce() -> String, stored: T, actual: T) {
        if stored != actual {
            self.drift(format!("{}: stored {stored:?}, recomputed {actual:?}", what()));
        }
    }
}

fn exists(s: &Snapshot<'_>, cf: Cf, k: &[u8]) -> Result<bool> {
    Ok(s.get(cf, k)?.is_some())
}

pub fn check(index: &Index) -> Result<CheckReport> {
    let s = index.snapshot();
    let mut r = CheckReport::default();
    let mut trashed = 0u64;

    // 1. The catalog tree, top down.
    for kv in s.scan(Cf::Packages, &[], None) {
        let (pkey, v) = kv?;
        let p = rec::parse_package_key(&pkey)?;
        let pkg: PackageRec = decode(&v, "package")?;
        r.packages += 1;
        let pname = format!("{} {:?} in {}/{}", p.ty, p.name, p.namespace, p.project);
        if s.get(Cf::CatalogIdx, &rec::pkg_by_id_key(pkg.id))?.as_deref() != Some(&pkey[..]) {
            r.drift(format!("package {pname}: id index entry missing or wrong"));
        }
        if !exists(&s, Cf::CatalogIdx, &rec::pkg_created_key(&p.namespace, pkg.id))? {
            r.drift(format!("package {pname}: creation index entry missing"));
        }
        if let Some(at) = pkg.deleted_ms {
            trashed += 1;
            if !exists(&s, Cf::CatalogIdx, &rec::trash_key(at, rec::TRASH_PACKAGE, pkg.id))? {
                r.drift(format!("package {pname}: deleted but not in the trash index"));
            }
        }
        let (mut versions, mut files, mut size) = (0u64, 0u64, 0u64);
        let (from, to) = (pkg.id.to_be_bytes(), (pkg.id + 1).to_be_bytes());
        for kv in s.scan(Cf::Versions, &from, Some(&to)) {
            let (vkey, v) = kv?;
            let (_, ver_id) = rec::split_u64s(&vkey)?;
            let ver: VersionRec = decode(&v, "version")?;
            r.versions += 1;
            let vname = format!("version {:?} of {pname}", ver.version);
            if s.get(Cf::CatalogIdx, &rec::version_name_key(pkg.id, &ver.version))?
                .as_deref()
                != Some(&ver_id.to_be_bytes()[..])
            {
                r.drift(format!("{vname}: name index entry missing or wrong"));
            }
            if let Some(at) = ver.deleted_ms {
                trashed += 1;
                if !exists(&s, Cf::CatalogIdx, &rec::trash_key(at, rec::TRASH_VERSION, ver_id))? {
                    r.drift(format!("{vname}: deleted but not in the trash index"));
                }
            }
            let (mut vfiles, mut vsize) = (0u64, 0u64);
            let mut names: HashMap<String, u64> = HashMap::new();
            let (from, to) = (ver_id.to_be_bytes(), (ver_id + 1).to_be_bytes());
            for kv in s.scan(Cf::Files, &from, Some(&to)) {
                let (fkey, v) = kv?;
                let (_, file_id) = rec::split_u64s(&fkey)?;
                let f: FileRec = decode(&v, "file")?;
                r.files += 1;
                match f.deleted_ms {
                    None => {
                        vfiles += 1;
                        vsize += f.size;
                        *names.entry(f.name.clone()).or_default() += 1;
                    }
                    Some(at) => {
                        trashed += 1;
                        if !exists(&s, Cf::CatalogIdx, &rec::trash_file_key(at, ver_id, file_id))? {
                            r.drift(format!("file {file_id} of {vname}: deleted but not in the trash index"));
                        }
                    }
                }
                let rk = ref_key(&p.namespace, &f.blob());
                if !exists(&s, Cf::Refs, &rk)? {
                    r.drift(format!(
                        "file {file_id} of {vname}: blob {} has no reference in {}",
                        f.blob(),
                        p.namespace
                    ));
                }
                if !exists(&s, Cf::CatalogIdx, &rec::blob_file_key(&rk, file_id))? {
                    r.drift(format!("file {file_id} of {vname}: missing from its blob's file index"));
                }
            }
            for (name, n) in &names {
                let stored = s
                    .get(Cf::CatalogIdx, &rec::file_name_key(ver_id, name))?
                    .map_or(Ok(0), |b| rec::be_u64(&b))?;
                r.expect(|| format!("{vname}: active files named {name:?}"), stored, *n);
            }
            let fprefix = rec::file_name_key(ver_id, "");
            for kv in s.scan(Cf::CatalogIdx, &fprefix, rec::prefix_end(&fprefix).as_deref()) {
                let (k, _) = kv?;
                let name = String::from_utf8_lossy(&k[fprefix.len()..]).into_owned();
                if !names.contains_key(&name) {
                    r.drift(format!(
                        "{vname}: file name index lists {name:?}, which has no active file"
                    ));
                }
            }
            r.expect(|| format!("{vname}: active files"), ver.files, vfiles);
            r.expect(|| format!("{vname}: active bytes"), ver.size, vsize);
            if ver.deleted_ms.is_none() {
                versions += 1;
                files += vfiles;
                size += vsize;
            }
        }
        r.expect(|| format!("package {pname}: active versions"), pkg.versions, versions);
        r.expect(|| format!("package {pname}: active files"), pkg.files, files);
        r.expect(|| format!("package {pname}: active bytes"), pkg.size, size);
    }
    let trash_entries = s
        .scan(Cf::CatalogIdx, &[rec::tag::TRASH], Some(&[rec::tag::TRASH + 1]))
        .count() as u64;
    r.expect(|| "trash index entries".into(), trash_entries, trashed);

    // 2. References: each one's file count against the files behind it.
    let mut stats = Stats::default();
    // Bytes held per namespace, summed as the scan (in namespace order) goes.
    let mut held: Option<(String, u64)> = None;
    let mut namespaces = 0u64;
    // Returns 1 for a namespace that holds bytes (only those have an entry).
    let close_ns = |r: &mut CheckReport, h: Option<(String, u64)>| -> Result<u64> {
        let Some((ns, n)) = h else { return Ok(0) };
        let stored = s
            .get(Cf::CatalogIdx, &rec::usage_key(&ns))?
            .map_or(Ok(0), |v| rec::be_u64(&v))?;
        r.expect(|| format!("namespace {ns}: bytes held"), stored, n);
        Ok((n > 0) as u64)
    };
    for kv in s.scan(Cf::Refs, &[], None) {
        let (k, v) = kv?;
        let (ns, blob) = decode_ref_key(&k)?;
        let info = RefInfo::decode(&v)?;
        r.references += 1;
        let prefix = rec::blob_files_prefix(&k);
        let mut n = 0u64;
        for kv in s.scan(Cf::CatalogIdx, &prefix, rec::prefix_end(&prefix).as_deref()) {
            let (bk, ver) = kv?;
            n += 1;
            let file_id = rec::be_u64(&bk[prefix.len()..])?;
            let uses = match s.get(Cf::Files, &rec::file_key(rec::be_u64(&ver)?, file_id))? {
                Some(f) => decode::<FileRec>(&f, "file")?.blob() == blob,
                None => false,
            };
            if !uses {
                r.drift(format!(
                    "blob {blob} in {ns}: file index lists file {file_id}, which does not use it"
                ));
            }
        }
        r.expect(|| format!("blob {blob} in {ns}: files referencing it"), info.files, n);
        match s.get(Cf::Blobs, &blob.0)? {
            Some(m) => {
                let size = Manifest::decode(&m)?.size;
                stats.references += 1;
                stats.logical_bytes += size;
                match &mut held {
                    Some((n, b)) if *n == ns => *b += size,
                    _ => {
                        namespaces += close_ns(&mut r, held.take())?;
                        held = Some((ns.clone(), size));
                    }
                }
            }
            None => r.drift(format!("blob {blob} in {ns}: referenced but has no manifest")),
        }
        if !exists(&s, Cf::CatalogIdx, &rec::holders_key(&blob))? {
            r.drift(format!("blob {blob}: referenced by {ns} but has no holder count"));
        }
        if info.files == 0 && !exists(&s, Cf::CatalogIdx, &rec::lease_key(info.lease_until_ms, &k))? {
            r.drift(format!(
                "blob {blob} in {ns}: no file uses it and it has no lease entry, so nothing would ever release it"
            ));
        }
        if !exists(&s, Cf::CatalogIdx, &rec::holder_key(&blob, &ns))? {
            r.drift(format!(
                "blob {blob}: referenced by {ns} but missing from its holder list"
            ));
        }
    }
    namespaces += close_ns(&mut r, held.take())?;
    let usage_entries = s
        .scan(Cf::CatalogIdx, &[rec::tag::NS_BYTES], Some(&[rec::tag::NS_BYTES + 1]))
        .count() as u64;
    r.expect(|| "namespaces with bytes held".into(), usage_entries, namespaces);
    // Leases: every entry matches its reference.
    for kv in s.scan(Cf::CatalogIdx, &[rec::tag::LEASE], Some(&[rec::tag::LEASE + 1])) {
        let (k, _) = kv?;
        let until = rec::be_u64(&k[1..9])? as i64;
        let (ns, blob) = decode_ref_key(&k[9..])?;
        match s.get(Cf::Refs, &k[9..])? {
            Some(v) if RefInfo::decode(&v)?.lease_until_ms == until => {}
            _ => r.drift(format!(
                "lease of blob {blob} in {ns} until {until} matches no reference"
            )),
        }
    }

    // 3. Holders: every holder-list entry names a reference, and each
    //    blob's list length is its holder count.
    let mut group: Option<(Hash, u64)> = None;
    let close = |r: &mut CheckReport, g: Option<(Hash, u64)>| -> Result<()> {
        if let Some((blob, n)) = g {
            let stored = s
                .get(Cf::CatalogIdx, &rec::holders_key(&blob))?
                .map_or(Ok(0), |v| rec::be_u64(&v))?;
            r.expect(|| format!("blob {blob}: namespaces referencing it"), stored, n);
        }
        Ok(())
    };
    for kv in s.scan(Cf::CatalogIdx, &[rec::tag::HOLDER], Some(&[rec::tag::HOLDER + 1])) {
        let (hk, _) = kv?;
        let blob =
            Hash::from_slice(hk.get(1..33).unwrap_or_default()).ok_or_else(|| Error::corrupt("bad holder key"))?;
        let ns = String::from_utf8_lossy(&hk[33..]).into_owned();
        if !exists(&s, Cf::Refs, &ref_key(&ns, &blob))? {
            r.drift(format!("blob {blob}: holder list names {ns}, which has no reference"));
        }
        match &mut group {
            Some((b, n)) if *b == blob => *n += 1,
            _ => {
                close(&mut r, group.take())?;
                group = Some((blob, 1));
            }
        }
    }
    close(&mut r, group.take())?;
    for kv in s.scan(Cf::CatalogIdx, &[rec::tag::HOLDERS], Some(&[rec::tag::HOLDERS + 1])) {
        let (k, _) = kv?;
        let blob = Hash::from_slice(&k[1..]).ok_or_else(|| Error::corrupt("bad holder count key"))?;
        r.blobs += 1;
        let prefix = rec::holder_prefix(&blob);
        if s.scan(Cf::CatalogIdx, &prefix, rec::prefix_end(&prefix).as_deref())
            .next()
            .is_none()
        {
            r.drift(format!("blob {blob}: has a holder count but an empty holder list"));
        }
    }
    // 4. Blobs and chunks: a stored manifest has holders; each chunk's
    //    reference count is its occurrences in stored manifests plus the
    //    deltas on it, and it is condemned exactly when that is zero. One
    //    counter per chunk in memory.
    let mut uses: HashMap<Hash, u64> = HashMap::new();
    let mut manifests = (0u64, 0u64);
    for kv in s.scan(Cf::Blobs, &[], None) {
        let (k, v) = kv?;
        let blob = Hash::from_slice(&k).ok_or_else(|| Error::corrupt("bad blob key"))?;
        let m = Manifest::decode(&v)?;
        manifests.0 += 1;
        manifests.1 += m.size;
        if !exists(&s, Cf::CatalogIdx, &rec::holders_key(&blob))? {
            r.drift(format!("blob {blob}: stored but no namespace holds it"));
        }
        for c in &m.chunks {
            *uses.entry(c.id).or_default() += 1;
        }
    }
    // A delta holds its base as a manifest holds its chunks; its base is
    // indexed, one level shallower.
    for kv in s.scan(Cf::Chunks, &[], None) {
        let (k, v) = kv?;
        let Some(d) = ChunkRec::decode(&v)?.loc.delta else {
            continue;
        };
        let id = Hash::from_slice(&k).ok_or_else(|| Error::corrupt("bad chunk key"))?;
        *uses.entry(d.base).or_default() += 1;
        match s.get(Cf::Chunks, &d.base.0)? {
            None => r.drift(format!("delta chunk {id}: its base {} is not indexed", d.base)),
            Some(b) => {
                let depth = ChunkRec::decode(&b)?.loc.delta.map_or(0, |x| x.depth);
                if depth + 1 != d.depth {
                    r.drift(format!(
                        "delta chunk {id}: depth {} on a base at depth {depth}",
                        d.depth
                    ));
                }
            }
        }
    }
    let (mut chunks, mut physical, mut condemned) = (0u64, 0u64, 0u64);
    for kv in s.scan(Cf::Chunks, &[], None) {
        let (k, v) = kv?;
        let id = Hash::from_slice(&k).ok_or_else(|| Error::corrupt("bad chunk key"))?;
        let c = ChunkRec::decode(&v)?;
        chunks += 1;
        physical += c.loc.stored_len as u64;
        r.expect(
            || format!("chunk {id}: manifests and deltas using it"),
            c.refs,
            uses.remove(&id).unwrap_or(0),
        );
        match (c.refs, c.condemned_ms) {
            (0, 0) => r.drift(format!("chunk {id}: unused but not condemned")),
            (0, at) => {
                condemned += c.loc.stored_len as u64;
                if !exists(&s, Cf::CatalogIdx, &rec::condemned_key(at, &id))? {
                    r.drift(format!("chunk {id}: condemned but not in the collector's list"));
                }
            }
            (_, 0) => {}
            (_, _) => r.drift(format!("chunk {id}: used but marked condemned")),
        }
    }
    if let Some(id) = uses.keys().next() {
        r.drift(format!(
            "{} chunks used by manifests are not indexed (e.g. {id})",
            uses.len()
        ));
    }
    for kv in s.scan(Cf::CatalogIdx, &[rec::tag::CONDEMNED], Some(&[rec::tag::CONDEMNED + 1])) {
        let (k, _) = kv?;
        let (at, id) = rec::parse_condemned_key(&k)?;
        match s.get(Cf::Chunks, &id.0)? {
            Some(v) if ChunkRec::decode(&v)?.condemned_ms == at => {}
            _ => r.drift(format!("condemned entry of chunk {id} matches no condemned chunk")),
        }
    }
    r.chunks = chunks;

    // 5. The store counters.
    let stored = s.stats()?;
    r.expect(|| "store blobs".into(), stored.blobs, manifests.0);
    r.expect(|| "store unique bytes".into(), stored.unique_bytes, manifests.1);
    r.expect(|| "store chunks".into(), stored.chunks, chunks);
    r.expect(|| "store physical bytes".into(), stored.physical_bytes, physical);
    r.expect(|| "store condemned bytes".into(), stored.condemned_bytes, condemned);
    r.expect(|| "store references".into(), stored.references, stats.references);
    r.expect(
        || "store logical bytes".into(),
        stored.logical_bytes,
        stats.logical_bytes,
    );
    // 5. The capacity counters, blob and chunk user lists (`usage`).
    let d = super::usage::derive(&s)?;
    super::usage::record_drift(&s, &d, |m| r.drift(m))?;
    for x in super::usage::group_drift(&s, &d, |_, _| true)? {
        r.drift(format!(
            "usage of {}: {} stored {}, recomputed {}",
            x.record, x.field, x.stored, x.recomputed
        ));
    }
    Ok(r)
}
