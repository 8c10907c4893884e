//! Capacity counters, kept by the committer in the same batch as the
//! catalog change they follow, so a capacity report reads a few records per
//! group instead of walking every file.
//!
//! Records in `catalog_idx` (a group id, [`gid`], is 64 bits of BLAKE3
//! over the level and the group key):
//! - `G` level:u8 group -> [`Counters`], for every group at every [`Level`];
//! - `a` blob level gid -> the package's files using the blob (active or
//!   in the trash), at the package level only;
//! - `A` blob -> [`Edges`]: above the package level, each group's packages
//!   using the blob (few groups: one record, one read and write);
//! - `o` chunk level gid -> the package's blobs using the chunk;
//! - `O` chunk -> [`Share`]: its stored length; per level how many groups
//!   use it and the XOR of their ids (the one user's id when there is one,
//!   so it can be credited the chunk when the last other leaves); and the
//!   edges above the package level, as in `A`;
//! - `J` gid -> level group (while the group has counters).
//!
//! A file publish or purge moves the package's `a` edge; a group joins or
//! leaves a blob (unique bytes) when its edge becomes or stops being zero.
//! Only when the package's edge does are the other levels' edges and the
//! blob's chunks visited (the package's `o` edge, and only if that joins
//! or leaves, the other levels'); a group joins or leaves the chunk
//! (physical bytes) the same way. A chunk's bytes are exclusive to a group while it
//! is the only group at its level using the chunk, other namespaces
//! included. Every update is a point read and write: a blob or chunk used
//! by many packages costs no more than one used by a single package (the
//! inline edges grow with the namespaces, projects and types using it).
//! [`derive`] recomputes it all from the catalog, for migration,
//! `rebuild-index`, `admin check` and `stowage report --recompute`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::model::PkgRef;
use super::records::{self as rec, FileRec, PackageRec, VersionRec, decode, encode};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Index, Snapshot, Txn};
use crate::manifest::Manifest;

/// How groups are formed. The discriminant is the level's key byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Key: ns.
    Namespace = 0,
    /// Key: ns 0 project.
    Project = 1,
    /// Key: the package key.
    Package = 2,
    /// Key: type:u8.
    Type = 3,
    /// Key: ns 0 type:u8 (types inside one namespace).
    NamespaceType = 4,
}

pub const LEVELS: [Level; 5] = [
    Level::Namespace,
    Level::Project,
    Level::Package,
    Level::Type,
    Level::NamespaceType,
];

/// One package's group key at every level, in [`LEVELS`] order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Groups([Vec<u8>; 5]);

impl Groups {
    pub fn of(p: &PkgRef) -> Self {
        let ns = p.namespace.as_bytes();
        Groups([
            ns.to_vec(),
            [ns, &[0], p.project.as_bytes()].concat(),
            rec::package_key(p),
            vec![p.ty as u8],
            [ns, &[0, p.ty as u8]].concat(),
        ])
    }

    pub fn key(&self, level: Level) -> &[u8] {
        &self.0[level as usize]
    }
}

/// A group's figures. Signed so one type serves as counters and deltas;
/// stored counters are never negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Active packages, versions and files, and the files' bytes.
    pub packages: i64,
    pub versions: i64,
    pub files: i64,
    pub logical_bytes: i64,
    /// Files in the trash (deleted, or in a deleted version or package).
    pub trash_files: i64,
    pub trash_bytes: i64,
    /// Sizes of the distinct blobs its files (active or trash) use.
    pub unique_bytes: i64,
    /// Stored bytes of the distinct chunks of those blobs.
    pub physical_bytes: i64,
    /// Of those, the chunks no other group uses.
    pub exclusive_bytes: i64,
}

impl Counters {
    pub const FIELDS: [&'static str; 9] = [
        "packages",
        "versions",
        "files",
        "logical_bytes",
        "trash_files",
        "trash_bytes",
        "unique_bytes",
        "physical_bytes",
        "exclusive_bytes",
    ];

    pub fn values(&self) -> [i64; 9] {
        [
            self.packages,
            self.versions,
            self.files,
            self.logical_bytes,
            self.trash_files,
            self.trash_bytes,
            self.unique_bytes,
            self.physical_bytes,
            self.exclusive_bytes,
        ]
    }

    fn from_values(v: [i64; 9]) -> Self {
        let [
            packages,
            versions,
            files,
            logical_bytes,
            trash_files,
            trash_bytes,
            unique_bytes,
            physical_bytes,
            exclusive_bytes,
        ] = v;
        Counters {
            packages,
            versions,
            files,
            logical_bytes,
            trash_files,
            trash_bytes,
            unique_bytes,
            physical_bytes,
            exclusive_bytes,
        }
    }

    pub fn add(&mut self, d: &Counters) {
        let (mut a, b) = (self.values(), d.values());
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
        *self = Counters::from_values(a);
    }

    fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    /// Files moving from active to the trash (negate for a restore).
    pub fn to_trash(packages: i64, versions: i64, files: i64, bytes: i64) -> Self {
        Counters {
            packages: -packages,
            versions: -versions,
            files: -files,
            logical_bytes: -bytes,
            trash_files: files,
            trash_bytes: bytes,
            ..Default::default()
        }
    }

    pub fn neg(&self) -> Self {
        Counters::from_values(self.values().map(|v| -v))
    }
}

/// Packages using a blob (files) or chunk (blobs), with a count each.
pub type Users = Vec<(u64, u64)>;

/// Who uses a chunk, per level: how many distinct groups, and the XOR of
/// their [`gid`]s (the one group's id when there is one); and the edge
/// counts of the levels above the package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub stored_len: u32,
    pub levels: [(u64, u64); 5],
    pub edges: Edges,
}

/// Edge counts of the levels above the package, in one record:
/// (level, gid, packages of the group), sorted.
pub type Edges = Vec<(u8, u64, u64)>;

/// `A` blob -> [`Edges`] of the blob.
pub fn blob_edges_key(blob: &Hash) -> Vec<u8> {
    [b"A".as_slice(), &blob.0].concat()
}

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

/// A group's id in edge keys: 64 bits of BLAKE3 over level and key.
pub fn gid(level: Level, key: &[u8]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&[level as u8]);
    h.update(key);
    u64::from_be_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// `a` blob level gid (`o` chunk level gid): a package-level edge count.
pub fn edge_key(tag: u8, id: &Hash, level: Level, gid: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(42);
    k.push(tag);
    k.extend_from_slice(&id.0);
    k.push(level as u8);
    k.extend_from_slice(&gid.to_be_bytes());
    k
}

pub fn share_key(chunk: &Hash) -> Vec<u8> {
    [b"O".as_slice(), &chunk.0].concat()
}

/// `J` gid -> level key: the group an id stands for.
pub fn gid_key(gid: u64) -> Vec<u8> {
    [b"J".as_slice(), &gid.to_be_bytes()].concat()
}

pub fn group_key(level: Level, group: &[u8]) -> Vec<u8> {
    [&[b'G', level as u8], group].concat()
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
    if !edge(txn, edge_key(b'a', &blob, pkg, gid(pkg, g.key(pkg))), sign)? {
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
                    ..Default::default()
                },
            );
        }
    }
    match edges.is_empty() {
        true => txn.delete(Cf::CatalogIdx, ek),
        false => txn.put(Cf::CatalogIdx, ek, encode(&edges)),
    }
    let mut seen = HashSet::with_capacity(m.chunks.len());
    for c in m.chunks.iter().filter(|c| seen.insert(c.id)) {
        chunk_uses(txn, d, g, &c.id, sign)?;
    }
    Ok(())
}

/// One more (or one fewer) blob of package groups `g` uses `chunk`.
fn chunk_uses(txn: &mut Txn<'_>, d: &mut Deltas, g: &Groups, chunk: &Hash, sign: i64) -> Result<()> {
    let pkg = Level::Package;
    if !edge(txn, edge_key(b'o', chunk, pkg, gid(pkg, g.key(pkg))), sign)? {
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
    }
    match s.levels.iter().all(|l| l.0 == 0) {
        true => txn.delete(Cf::CatalogIdx, sk),
        false => txn.put(Cf::CatalogIdx, sk, encode(&s)),
    }
    Ok(())
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

fn stored_len(c: Option<ChunkRec>, chunk: &Hash) -> Result<u32> {
    c.map(|c| c.loc.stored_len)
        .ok_or_else(|| Error::corrupt(format!("chunk {chunk} of a stored blob is not indexed")))
}

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
                        Level::Package => f(edge_key(b'a', blob, LEVELS[i], *id), n.to_be_bytes().to_vec())?,
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
                        Level::Package => f(edge_key(b'o', chunk, LEVELS[i], *id), n.to_be_bytes().to_vec())?,
                        l => s.edges.push((l as u8, *id, *n)),
                    }
                    s.levels[i] = (s.levels[i].0 + 1, s.levels[i].1 ^ id);
                }
            }
            s.edges.sort_unstable();
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
                d.groups.entry((LEVELS[i], key.to_vec())).or_default().unique_bytes += m.size as i64;
            }
        }
        let mut seen = HashSet::with_capacity(m.chunks.len());
        for c in m.chunks.iter().filter(|c| seen.insert(c.id)) {
            let o = match chunks.entry(c.id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let rec = s.get(Cf::Chunks, &c.id.0)?.map(|v| ChunkRec::decode(&v)).transpose()?;
                    e.insert((stored_len(rec, &c.id)?, Vec::new()))
                }
            };
            for &(pkg, _) in users {
                bump(&mut o.1, pkg, 1);
            }
        }
    }
    for (len, users) in chunks.values() {
        for (i, e) in edges(&d.pkgs, users).iter().enumerate() {
            for (_, key, _) in e {
                let c = d.groups.entry((LEVELS[i], key.to_vec())).or_default();
                c.physical_bytes += *len as i64;
                c.exclusive_bytes += if e.len() == 1 { *len as i64 } else { 0 };
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

const TAGS: [&[u8]; 6] = [b"a", b"A", b"o", b"O", b"J", b"G"];

/// Replaces every usage record with ones derived from the catalog (for
/// migration and `rebuild-index`, before the committer runs).
pub fn rewrite(index: &Index) -> Result<()> {
    let mut txn = index.txn();
    for tag in TAGS {
        for kv in index.scan(Cf::CatalogIdx, tag, rec::prefix_end(tag).as_deref(), false) {
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
        if k[0] != b'G' {
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
    for tag in [b'a', b'A', b'o', b'O', b'J'] {
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

/// A group key as people read it.
pub fn display(level: Level, key: &[u8]) -> String {
    let ty = |b: Option<&u8>| {
        b.and_then(|&b| super::model::PackageType::from_u8(b).ok())
            .map_or("?", |t| t.as_str())
    };
    match level {
        Level::Namespace => String::from_utf8_lossy(key).into_owned(),
        Level::Project => String::from_utf8_lossy(key).replacen('\0', "/", 1),
        Level::Package => match rec::parse_package_key(key) {
            Ok(p) => format!("{}/{}/{}:{}", p.namespace, p.project, p.ty, p.name),
            Err(_) => String::from_utf8_lossy(key).into_owned(),
        },
        Level::Type => ty(key.first()).to_string(),
        Level::NamespaceType => ty(key.last()).to_string(),
    }
}
