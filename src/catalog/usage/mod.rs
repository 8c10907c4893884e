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
//!   so it can be credited the chunk when the last other leaves); the same
//!   per namespace for the levels inside one (`within`); and the edges
//!   above the package level, as in `A`;
//! - `J` gid -> level group (while the group has counters).
//!
//! A file publish or purge moves the package's `a` edge; a group joins or
//! leaves a blob (unique bytes) when its edge becomes or stops being zero.
//! Only when the package's edge does are the other levels' edges and the
//! blob's chunks visited (the package's `o` edge, and only if that joins
//! or leaves, the other levels'); a group joins or leaves the chunk
//! (physical bytes) the same way. A chunk's bytes are exclusive to a group while it
//! is the only group at its level using the chunk, other namespaces
//! included; they are `ns_exclusive_bytes` while it is the only group of
//! its own namespace at its level using it, whatever other namespaces hold
//! (what a tenant's report shows: see `crate::report`). Every update is a point read and write: a blob or chunk used
//! by many packages costs no more than one used by a single package (the
//! inline edges grow with the namespaces, projects and types using it).
//! [`derive`] recomputes it all from the catalog, for migration,
//! `rebuild-index`, `admin check` and `stowage report --recompute`.
//!
//! `update` moves the counters at write time; `derive` recomputes them.
//! The invariant between the two: after any sequence of committed changes,
//! the stored records equal what `derive` computes from the catalog
//! (`record_drift` and `group_drift` report any difference).

mod derive;
mod update;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::model::PkgRef;
use super::records as rec;
use crate::error::Result;
use crate::hash::Hash;
use crate::index::ChunkRec;
use crate::manifest::Manifest;
use crate::pack::format::MAX_DELTA_DEPTH;

pub use derive::{Derived, Drift, derive, group_drift, record_drift, rewrite, stored_groups};
pub use update::{Deltas, blob_chunks_change, file_uses};

/// The chunks a blob's bytes need, each once, in manifest order: its
/// manifest's, each followed by the chain of bases of a delta chunk (a
/// delta's base is used by every blob that uses the delta, so freeing a
/// version whose content is another's base frees less). `rec` reads a
/// chunk's index entry.
pub fn needed_chunks(m: &Manifest, mut rec: impl FnMut(&Hash) -> Result<Option<ChunkRec>>) -> Result<Vec<Hash>> {
    let mut seen = HashSet::with_capacity(m.chunks.len());
    let mut out = Vec::with_capacity(m.chunks.len());
    for c in &m.chunks {
        let mut at = c.id;
        for _ in 0..=MAX_DELTA_DEPTH {
            if !seen.insert(at) {
                break;
            }
            out.push(at);
            match rec(&at)?.and_then(|r| r.loc.delta) {
                Some(d) => at = d.base,
                None => break,
            }
        }
    }
    Ok(out)
}

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
    /// Distinct blobs its files (active or trash) use.
    pub blobs: i64,
    /// Of the physical bytes, the chunks no other group of its own
    /// namespace uses (what a tenant may know): at the namespace level all
    /// of them; 0 at the type level, whose groups span namespaces.
    pub ns_exclusive_bytes: i64,
}

impl Counters {
    pub const FIELDS: [&'static str; 11] = [
        "packages",
        "versions",
        "files",
        "logical_bytes",
        "trash_files",
        "trash_bytes",
        "unique_bytes",
        "physical_bytes",
        "exclusive_bytes",
        "blobs",
        "ns_exclusive_bytes",
    ];

    pub fn values(&self) -> [i64; 11] {
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
            self.blobs,
            self.ns_exclusive_bytes,
        ]
    }

    fn from_values(v: [i64; 11]) -> Self {
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
            blobs,
            ns_exclusive_bytes,
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
            blobs,
            ns_exclusive_bytes,
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
    /// Per namespace and level inside it (project, package, namespace
    /// type), as `levels` but counting only that namespace's groups:
    /// (namespace gid, level, groups, XOR of their gids), sorted.
    pub within: Vec<(u64, u8, u64, u64)>,
}

/// The levels whose groups lie inside one namespace (and have other
/// groups of the same namespace beside them).
pub fn inside_namespace(level: Level) -> bool {
    matches!(level, Level::Project | Level::Package | Level::NamespaceType)
}

/// The namespace part of a group key at any level but the type level
/// (names hold no 0 byte).
pub fn namespace_of(key: &[u8]) -> &[u8] {
    key.split(|&b| b == 0).next().unwrap_or(key)
}

/// Edge counts of the levels above the package, in one record:
/// (level, gid, packages of the group), sorted.
pub type Edges = Vec<(u8, u64, u64)>;

/// `A` blob -> [`Edges`] of the blob.
pub fn blob_edges_key(blob: &Hash) -> Vec<u8> {
    rec::tagged(rec::tag::BLOB_EDGES, &[&blob.0])
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

/// The keys of `blob`'s package-level edges (`a` blob level), one per
/// package whose files use it.
pub fn package_edges_prefix(blob: &Hash) -> Vec<u8> {
    [&[rec::tag::BLOB_EDGE][..], &blob.0, &[Level::Package as u8]].concat()
}

pub fn share_key(chunk: &Hash) -> Vec<u8> {
    rec::tagged(rec::tag::CHUNK_SHARE, &[&chunk.0])
}

/// `J` gid -> level key: the group an id stands for.
pub fn gid_key(gid: u64) -> Vec<u8> {
    rec::tagged(rec::tag::GROUP_ID, &[&gid.to_be_bytes()])
}

pub fn group_key(level: Level, group: &[u8]) -> Vec<u8> {
    rec::tagged(rec::tag::GROUP, &[&[level as u8], group])
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
