//! Write-time updates of the capacity counters, inside the committer's
//! transaction: a publish or purge moves its package's edges, and the
//! levels above and the blob's chunks only when an edge joins or leaves.

use std::collections::{HashMap, HashSet};

use super::{
    Counters, Edges, Groups, LEVELS, Level, Share, blob_edges_key, display, edge_key, gid, gid_key, group_key,
    inside_namespace, share_key,
};
use crate::catalog::records::{self as rec, decode, encode};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Txn};
use crate::manifest::Manifest;

/// Adds `sign` to a level's edge in `edges`; true if the group joined or left.
fn inline_edge(edges: &mut Edges, level: Level, gid: u64, sign: i64) -> Result<bool> {
    let k = (level as u8, gid);
    match edges.binary_search_by(|e| (e.0, e.1).cmp(&k)) {
        Ok(i) if sign > 0 => {
            edges[i].2 += 1;
            Ok(false)
        }
        Ok(i) if edges[i].2 > 1 => {
            edges[i].2 -= 1;
            Ok(false)
        }
        Ok(i) => {
            edges.remove(i);
            Ok(true)
        }
        Err(i) if sign > 0 => {
            edges.insert(i, (k.0, k.1, 1));
            Ok(true)
        }
        Err(_) => Err(Error::corrupt(format!(
            "usage edge of {level:?} group {gid:016x} would drop below zero"
        ))),
    }
}

/// Group changes gathered by one operation, written once at the end.
#[derive(Default)]
pub struct Deltas(HashMap<(Level, Vec<u8>), Counters>);

impl Deltas {
    pub fn package(&mut self, g: &Groups, d: &Counters) {
        for (level, key) in LEVELS.iter().zip(&g.0) {
            self.group(*level, key, d);
        }
    }

    fn group(&mut self, level: Level, key: &[u8], d: &Counters) {
        self.0.entry((level, key.to_vec())).or_default().add(d);
    }

    /// Applies the changes to the stored counters.
    pub fn write(self, txn: &mut Txn<'_>) -> Result<()> {
        for ((level, key), d) in self.0 {
            let k = group_key(level, &key);
            let old = txn.get(Cf::CatalogIdx, &k)?;
            let mut c: Counters = match &old {
                Some(v) => decode(v, "usage counters")?,
                None => Counters::default(),
            };
            c.add(&d);
            if c.values().iter().any(|&v| v < 0) {
                return Err(Error::corrupt(format!(
                    "usage counters of {level:?} {} would drop below zero ({c:?}); run `stowage report --recompute`",
                    display(level, &key)
                )));
            }
            let id = gid_key(gid(level, &key));
            match (c.is_zero(), old.is_some()) {
                (true, _) => {
                    txn.delete(Cf::CatalogIdx, k);
                    txn.delete(Cf::CatalogIdx, id);
                }
                (false, was) => {
                    txn.put(Cf::CatalogIdx, k, encode(&c));
                    if !was {
                        txn.put(Cf::CatalogIdx, id, [&[level as u8], key.as_slice()].concat());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adds `sign` to an edge count; true if the group joined or left.
fn edge(txn: &mut Txn<'_>, key: Vec<u8>, sign: i64) -> Result<bool> {
    let n = match txn.get(Cf::CatalogIdx, &key)? {
        Some(v) => rec::be_u64(&v)?,
        None => 0,
    };
    let m = n
        .checked_add_signed(sign)
        .ok_or_else(|| Error::corrupt(format!("usage edge {} would drop below zero", hex::encode(&key))))?;
    match m {
        0 => txn.delete(Cf::CatalogIdx, key),
        m => txn.put(Cf::CatalogIdx, key, m.to_be_bytes().to_vec()),
    }
    Ok((n == 0) != (m == 0))
}

/// Package groups `g` gained (`sign` 1) or lost (-1) one file of blob
/// `m`. Records the bytes its groups start or stop using and sharing.
pub fn file_uses(txn: &mut Txn<'_>, d: &mut Deltas, g: &Groups, m: &Manifest, sign: i64) -> Result<()> {
    let blob = m.digests.blake3;
    let pkg = Level::Package;
    if !edge(
        txn,
        edge_key(rec::tag::BLOB_EDGE, &blob, pkg, gid(pkg, g.key(pkg))),
        sign,
    )? {
        return Ok(());
    }
    let ek = blob_edges_key(&blob);
    let mut edges: Edges = match txn.get(Cf::CatalogIdx, &ek)? {
        Some(v) => decode(&v, "blob edges")?,
        None => Vec::new(),
    };
    for (level, key) in LEVELS.iter().zip(&g.0) {
        if *level == pkg || inline_edge(&mut edges, *level, gid(*level, key), sign)? {
            d.group(
                *level,
                key,
                &Counters {
                    unique_bytes: sign * m.size as i64,
                    blobs: sign,
                    ..Default::default()
                },
            );
        }
    }
    match edges.is_empty() {
        true => txn.delete(Cf::CatalogIdx, ek),
        false => txn.put(Cf::CatalogIdx, ek, encode(&edges)),
    }
    for c in super::needed_chunks(m, |h| txn.chunk_rec(h))? {
        chunk_uses(txn, d, g, &c, sign)?;
    }
    Ok(())
}

/// Blob `blob` changed its chunks from `old` to `new` (the optimizer
/// stored its recipe): every package group using it leaves the chunks
/// only `old` has and joins those only `new` has, and the levels above
/// follow, as for a file's publish or purge. Reads the blob's package
/// edges from committed state: the caller runs alone in its batch.
pub fn blob_chunks_change(
    txn: &mut Txn<'_>,
    d: &mut Deltas,
    blob: &Hash,
    old: &Manifest,
    new: &Manifest,
) -> Result<()> {
    let before: HashSet<Hash> = super::needed_chunks(old, |h| txn.chunk_rec(h))?.into_iter().collect();
    let after: HashSet<Hash> = super::needed_chunks(new, |h| txn.chunk_rec(h))?.into_iter().collect();
    let pkg = Level::Package;
    let prefix = super::package_edges_prefix(blob);
    let end = rec::prefix_end(&prefix);
    let mut packages = Vec::new();
    for kv in txn.index().scan(Cf::CatalogIdx, &prefix, end.as_deref(), false) {
        let (k, _) = kv?;
        let id = k
            .get(prefix.len()..)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| Error::corrupt("bad blob edge key"))?;
        packages.push(id);
    }
    for id in packages {
        let key = group_of(txn, id, pkg)?;
        let g = Groups::of(&rec::parse_package_key(&key)?);
        for c in after.difference(&before) {
            chunk_uses(txn, d, &g, c, 1)?;
        }
        for c in before.difference(&after) {
            chunk_uses(txn, d, &g, c, -1)?;
        }
    }
    Ok(())
}

/// One more (or one fewer) blob of package groups `g` uses `chunk`.
fn chunk_uses(txn: &mut Txn<'_>, d: &mut Deltas, g: &Groups, chunk: &Hash, sign: i64) -> Result<()> {
    let pkg = Level::Package;
    if !edge(
        txn,
        edge_key(rec::tag::CHUNK_EDGE, chunk, pkg, gid(pkg, g.key(pkg))),
        sign,
    )? {
        return Ok(());
    }
    let sk = share_key(chunk);
    let mut s: Share = match txn.get(Cf::CatalogIdx, &sk)? {
        Some(v) => decode(&v, "chunk share")?,
        None => Share {
            stored_len: stored_len(txn.chunk_rec(chunk)?, chunk)?,
            ..Default::default()
        },
    };
    let len = s.stored_len as i64;
    let ns = gid(Level::Namespace, g.key(Level::Namespace));
    for (i, (level, key)) in LEVELS.iter().zip(&g.0).enumerate() {
        let id = gid(*level, key);
        if *level != pkg && !inline_edge(&mut s.edges, *level, id, sign)? {
            continue;
        }
        let (n, x) = s.levels[i];
        let n = n
            .checked_add_signed(sign)
            .ok_or_else(|| Error::corrupt(format!("chunk {chunk} has no {level:?} group to lose")))?;
        let x = x ^ id;
        // With one other group left (after a loss) or before (a gain), that
        // one holds the chunk alone afterwards, or no longer.
        let (others, other) = if sign > 0 { s.levels[i] } else { (n, x) };
        s.levels[i] = (n, x);
        d.group(
            *level,
            key,
            &Counters {
                physical_bytes: sign * len,
                exclusive_bytes: if others == 0 { sign * len } else { 0 },
                ns_exclusive_bytes: if *level == Level::Namespace { sign * len } else { 0 },
                ..Default::default()
            },
        );
        if others == 1 {
            let sole = group_of(txn, other, *level)?;
            d.group(
                *level,
                &sole,
                &Counters {
                    exclusive_bytes: -sign * len,
                    ..Default::default()
                },
            );
        }
        if inside_namespace(*level) {
            // The same, among the groups of this namespace only.
            let (others, other) = within(&mut s.within, ns, *level, id, sign, chunk)?;
            let ns_exclusive = |bytes| Counters {
                ns_exclusive_bytes: bytes,
                ..Default::default()
            };
            if others == 0 {
                d.group(*level, key, &ns_exclusive(sign * len));
            }
            if others == 1 {
                d.group(*level, &group_of(txn, other, *level)?, &ns_exclusive(-sign * len));
            }
        }
    }
    match s.levels.iter().all(|l| l.0 == 0) {
        true => txn.delete(Cf::CatalogIdx, sk),
        false => txn.put(Cf::CatalogIdx, sk, encode(&s)),
    }
    Ok(())
}

/// Moves group `id` into (`sign` 1) or out of (-1) the groups at `level`
/// of namespace `ns` using a chunk. Returns the other groups of that
/// namespace using it and the XOR of their ids (the other's id when there
/// is one).
fn within(
    w: &mut Vec<(u64, u8, u64, u64)>,
    ns: u64,
    level: Level,
    id: u64,
    sign: i64,
    chunk: &Hash,
) -> Result<(u64, u64)> {
    let k = (ns, level as u8);
    let i = match w.binary_search_by(|e| (e.0, e.1).cmp(&k)) {
        Ok(i) => i,
        Err(i) if sign > 0 => {
            w.insert(i, (ns, level as u8, 0, 0));
            i
        }
        Err(_) => {
            return Err(Error::corrupt(format!(
                "chunk {chunk} has no {level:?} group of namespace {ns:016x} to lose"
            )));
        }
    };
    let (n, x) = (w[i].2, w[i].3);
    let m = n
        .checked_add_signed(sign)
        .ok_or_else(|| Error::corrupt(format!("chunk {chunk} has no {level:?} group to lose")))?;
    if m == 0 {
        w.remove(i);
    } else {
        (w[i].2, w[i].3) = (m, x ^ id);
    }
    Ok(if sign > 0 { (n, x) } else { (m, x ^ id) })
}

/// The key of the group with id `gid` at `level`.
fn group_of(txn: &Txn<'_>, gid: u64, level: Level) -> Result<Vec<u8>> {
    match txn.get(Cf::CatalogIdx, &gid_key(gid))? {
        Some(v) if v.first() == Some(&(level as u8)) => Ok(v[1..].to_vec()),
        _ => Err(Error::corrupt(format!(
            "usage group id {gid:016x} at level {level:?} is unknown; run `stowage report --recompute`"
        ))),
    }
}

pub(super) fn stored_len(c: Option<ChunkRec>, chunk: &Hash) -> Result<u32> {
    c.map(|c| c.loc.stored_len)
        .ok_or_else(|| Error::corrupt(format!("chunk {chunk} of a stored blob is not indexed")))
}
