//! The capacity counters recomputed from the catalog on one snapshot, the
//! drift between them and the stored ones, and the rewrite that replaces
//! the stored ones (migration, `rebuild-index`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::update::stored_len;
use super::{
    Counters, Edges, Groups, LEVELS, Level, Share, Users, blob_edges_key, display, edge_key, gid, gid_key, group_key,
    inside_namespace, namespace_of, share_key,
};
use crate::catalog::records::{self as rec, FileRec, PackageRec, VersionRec, decode, encode};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Index, Snapshot, Txn};
use crate::manifest::Manifest;

/// Every usage record, recomputed from the catalog.
#[derive(Default)]
pub struct Derived {
    /// Per blob, the packages whose files use it (files each).
    pub blobs: HashMap<Hash, Users>,
    /// Per chunk, its stored length and the packages using it (blobs each).
    pub chunks: HashMap<Hash, (u32, Users)>,
    pub groups: BTreeMap<(Level, Vec<u8>), Counters>,
    pkgs: HashMap<u64, Groups>,
}

/// One level's groups among some users: (gid, key, summed count).
type LevelEdges<'a> = Vec<(u64, &'a [u8], u64)>;

/// The groups of `users` at each level with their edge counts: at the
/// package level the user's own count, above it the group's packages.
fn edges<'a>(pkgs: &'a HashMap<u64, Groups>, users: &Users) -> [LevelEdges<'a>; 5] {
    std::array::from_fn(|i| {
        let mut e: LevelEdges<'a> = Vec::with_capacity(users.len());
        for (pkg, n) in users {
            let Some(g) = pkgs.get(pkg) else { continue };
            let key = g.0[i].as_slice();
            let n = if LEVELS[i] == Level::Package { n } else { &1 };
            match e.iter_mut().find(|x| x.1 == key) {
                Some(x) => x.2 += n,
                None => e.push((gid(LEVELS[i], key), key, *n)),
            }
        }
        e
    })
}

impl Derived {
    /// Every record [`rewrite`] writes, in no particular order.
    fn records(&self, mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<()>) -> Result<()> {
        for (blob, users) in &self.blobs {
            let mut above = Edges::new();
            for (i, e) in edges(&self.pkgs, users).iter().enumerate() {
                for (id, _, n) in e {
                    match LEVELS[i] {
                        Level::Package => f(
                            edge_key(rec::tag::BLOB_EDGE, blob, LEVELS[i], *id),
                            n.to_be_bytes().to_vec(),
                        )?,
                        l => above.push((l as u8, *id, *n)),
                    }
                }
            }
            if !above.is_empty() {
                above.sort_unstable();
                f(blob_edges_key(blob), encode(&above))?;
            }
        }
        for (chunk, (len, users)) in &self.chunks {
            let mut s = Share {
                stored_len: *len,
                ..Default::default()
            };
            for (i, e) in edges(&self.pkgs, users).iter().enumerate() {
                for (id, _, n) in e {
                    match LEVELS[i] {
                        Level::Package => f(
                            edge_key(rec::tag::CHUNK_EDGE, chunk, LEVELS[i], *id),
                            n.to_be_bytes().to_vec(),
                        )?,
                        l => s.edges.push((l as u8, *id, *n)),
                    }
                    s.levels[i] = (s.levels[i].0 + 1, s.levels[i].1 ^ id);
                }
                if inside_namespace(LEVELS[i]) {
                    for (id, key, _) in e {
                        let ns = gid(Level::Namespace, namespace_of(key));
                        let l = LEVELS[i] as u8;
                        match s.within.iter_mut().find(|w| (w.0, w.1) == (ns, l)) {
                            Some(w) => (w.2, w.3) = (w.2 + 1, w.3 ^ id),
                            None => s.within.push((ns, l, 1, *id)),
                        }
                    }
                }
            }
            s.edges.sort_unstable();
            s.within.sort_unstable();
            f(share_key(chunk), encode(&s))?;
        }
        for ((level, key), c) in &self.groups {
            if !c.is_zero() {
                f(group_key(*level, key), encode(c))?;
                f(gid_key(gid(*level, key)), [&[*level as u8], key.as_slice()].concat())?;
            }
        }
        Ok(())
    }
}

/// Recomputes every usage record from the packages, versions, files,
/// manifests and chunk entries on one snapshot. Holds one entry per
/// package, per blob and per chunk that files use.
pub fn derive(s: &Snapshot<'_>) -> Result<Derived> {
    let mut d = Derived::default();
    for kv in s.scan(Cf::Packages, &[], None) {
        let (k, v) = kv?;
        let p: PackageRec = decode(&v, "package")?;
        let g = Groups::of(&rec::parse_package_key(&k)?);
        let mut c = Counters {
            packages: p.deleted_ms.is_none() as i64,
            ..Default::default()
        };
        for kv in s.scan(Cf::Versions, &p.id.to_be_bytes(), Some(&(p.id + 1).to_be_bytes())) {
            let (k, v) = kv?;
            let ver_id = rec::split_u64s(&k)?.1;
            let ver: VersionRec = decode(&v, "version")?;
            let ver_active = p.deleted_ms.is_none() && ver.deleted_ms.is_none();
            c.versions += ver_active as i64;
            for kv in s.scan(Cf::Files, &ver_id.to_be_bytes(), Some(&(ver_id + 1).to_be_bytes())) {
                let f: FileRec = decode(&kv?.1, "file")?;
                let size = f.size as i64;
                match ver_active && f.deleted_ms.is_none() {
                    true => (c.files, c.logical_bytes) = (c.files + 1, c.logical_bytes + size),
                    false => (c.trash_files, c.trash_bytes) = (c.trash_files + 1, c.trash_bytes + size),
                }
                bump(d.blobs.entry(f.blob()).or_default(), p.id, 1);
            }
        }
        for (level, key) in LEVELS.iter().zip(&g.0) {
            d.groups.entry((*level, key.clone())).or_default().add(&c);
        }
        d.pkgs.insert(p.id, g);
    }
    let mut chunks: HashMap<Hash, (u32, Users)> = HashMap::new();
    for (blob, users) in &d.blobs {
        let m = match s.get(Cf::Blobs, &blob.0)? {
            Some(m) => Manifest::decode(&m)?,
            None => return Err(Error::corrupt(format!("file blob {blob} has no manifest"))),
        };
        for (i, e) in edges(&d.pkgs, users).iter().enumerate() {
            for (_, key, _) in e {
                let c = d.groups.entry((LEVELS[i], key.to_vec())).or_default();
                c.unique_bytes += m.size as i64;
                c.blobs += 1;
            }
        }
        let chunk_rec = |id: &Hash| s.get(Cf::Chunks, &id.0)?.map(|v| ChunkRec::decode(&v)).transpose();
        for id in super::needed_chunks(&m, chunk_rec)? {
            let o = match chunks.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((stored_len(chunk_rec(&id)?, &id)?, Vec::new()))
                }
            };
            for &(pkg, _) in users {
                bump(&mut o.1, pkg, 1);
            }
        }
    }
    for (len, users) in chunks.values() {
        for (i, e) in edges(&d.pkgs, users).iter().enumerate() {
            // Groups of each namespace using the chunk, at levels inside one.
            let mut per_ns: HashMap<&[u8], i64> = HashMap::new();
            if inside_namespace(LEVELS[i]) {
                for (_, key, _) in e {
                    *per_ns.entry(namespace_of(key)).or_default() += 1;
                }
            }
            for (_, key, _) in e {
                let c = d.groups.entry((LEVELS[i], key.to_vec())).or_default();
                let len = *len as i64;
                c.physical_bytes += len;
                c.exclusive_bytes += if e.len() == 1 { len } else { 0 };
                c.ns_exclusive_bytes += match LEVELS[i] {
                    Level::Namespace => len,
                    Level::Type => 0,
                    _ if per_ns.get(namespace_of(key)) == Some(&1) => len,
                    _ => 0,
                };
            }
        }
    }
    d.chunks = chunks;
    Ok(d)
}

fn bump(users: &mut Users, pkg: u64, n: u64) {
    match users.iter_mut().find(|u| u.0 == pkg) {
        Some(u) => u.1 += n,
        None => users.push((pkg, n)),
    }
}

/// The stored counters of every group at `level` whose key starts with
/// `prefix`, from one snapshot.
pub fn stored_groups(s: &Snapshot<'_>, level: Level, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Counters)>> {
    let from = group_key(level, prefix);
    let to = rec::prefix_end(&from);
    s.scan(Cf::CatalogIdx, &from, to.as_deref())
        .map(|kv| {
            let (k, v) = kv?;
            Ok((k[2..].to_vec(), decode(&v, "usage counters")?))
        })
        .collect()
}

const TAGS: [u8; 6] = {
    use rec::tag::*;
    [BLOB_EDGE, BLOB_EDGES, CHUNK_EDGE, CHUNK_SHARE, GROUP_ID, GROUP]
};

/// Replaces every usage record with ones derived from the catalog (for
/// migration and `rebuild-index`, before the committer runs).
pub fn rewrite(index: &Index) -> Result<()> {
    let mut txn = index.txn();
    for tag in TAGS {
        let (from, to) = rec::tag::range(tag);
        for kv in index.scan(Cf::CatalogIdx, &from, Some(&to), false) {
            txn.delete(Cf::CatalogIdx, kv?.0.to_vec());
            flush(index, &mut txn, false)?;
        }
    }
    flush(index, &mut txn, true)?;
    let d = derive(&index.snapshot())?;
    d.records(|k, v| {
        txn.put(Cf::CatalogIdx, k, v);
        flush(index, &mut txn, false)
    })?;
    flush(index, &mut txn, true)
}

/// Commits `txn` when it is large enough, or `force`d.
fn flush<'a>(index: &'a Index, txn: &mut Txn<'a>, force: bool) -> Result<()> {
    if force || txn.len() >= 10_000 {
        index.commit(std::mem::replace(txn, index.txn()))?;
    }
    Ok(())
}

/// A stored counter that differs from the recomputed one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub record: String,
    pub field: String,
    pub stored: i64,
    pub recomputed: i64,
}

/// Compares the stored group counters with `d`'s, for groups whose key
/// passes `keep`.
pub fn group_drift(s: &Snapshot<'_>, d: &Derived, keep: impl Fn(Level, &[u8]) -> bool) -> Result<Vec<Drift>> {
    let mut stored: BTreeMap<(Level, Vec<u8>), Counters> = BTreeMap::new();
    for level in LEVELS {
        for (k, c) in stored_groups(s, level, &[])? {
            stored.insert((level, k), c);
        }
    }
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<_> = stored.keys().chain(d.groups.keys()).collect();
    for key in keys {
        if !keep(key.0, &key.1) {
            continue;
        }
        let (a, b) = (
            stored.get(key).copied().unwrap_or_default(),
            d.groups.get(key).copied().unwrap_or_default(),
        );
        for ((field, x), y) in Counters::FIELDS.iter().zip(a.values()).zip(b.values()) {
            if x != y {
                out.push(Drift {
                    record: format!("{:?} {}", key.0, display(key.0, &key.1)),
                    field: field.to_string(),
                    stored: x,
                    recomputed: y,
                });
            }
        }
    }
    Ok(out)
}

/// Compares every stored usage record but the group counters (blob and
/// chunk edges, chunk shares, group ids) with `d`'s; one message per
/// difference.
pub fn record_drift(s: &Snapshot<'_>, d: &Derived, mut report: impl FnMut(String)) -> Result<()> {
    let mut expected = HashMap::<u8, u64>::new();
    d.records(|k, v| {
        if k[0] != rec::tag::GROUP {
            *expected.entry(k[0]).or_default() += 1;
            let stored = s.get(Cf::CatalogIdx, &k)?;
            if stored.as_deref() != Some(&v[..]) {
                report(format!(
                    "usage record {}: stored {}, recomputed {}",
                    hex::encode(&k),
                    stored.map_or("nothing".into(), hex::encode),
                    hex::encode(&v)
                ));
            }
        }
        Ok(())
    })?;
    for tag in TAGS.into_iter().filter(|&t| t != rec::tag::GROUP) {
        let n = s.scan(Cf::CatalogIdx, &[tag], Some(&[tag + 1])).count() as u64;
        let want = expected.get(&tag).copied().unwrap_or(0);
        if n != want {
            report(format!(
                "usage records `{}`: {n} stored, {want} recomputed",
                tag as char
            ));
        }
    }
    Ok(())
}
