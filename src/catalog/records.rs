//! Stored catalog values (postcard, behind a version byte) and key layouts.
//!
//! Ids (package, version, event) come from counters in `meta` and grow
//! with creation time, so "newest first" is "highest id first". File ids
//! come from one counter per namespace (`F`), so a tenant's ids say nothing
//! about another's publishes; a file is always named with its version.
//!
//! - `packages`: ns 0 name 0 type:u8 project -> [`PackageRec`]
//! - `versions`: pkg:u64 ver:u64 -> [`VersionRec`]
//! - `files`:    ver:u64 file:u64 -> [`FileRec`]
//! - `audit`:    event:u64 -> [`EventRec`]
//! - `catalog_idx`: one layout per tag, listed once in [`tag`].
//!
//! Integers are big-endian; times are Unix ms (non-negative in keys).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::model::{PackageType, PkgRef};
use crate::error::{Error, Result};
use crate::hash::Hash;

const V1: u8 = 1;

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_extend(v, vec![V1]).expect("writing to a Vec cannot fail")
}

pub fn decode<T: DeserializeOwned>(b: &[u8], what: &str) -> Result<T> {
    match b.split_first() {
        Some((&V1, rest)) => postcard::from_bytes(rest).map_err(|e| Error::corrupt(format!("{what} record: {e}"))),
        Some((v, _)) => Err(Error::corrupt(format!("{what} record version {v} is unknown"))),
        None => Err(Error::corrupt(format!("{what} record is empty"))),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRec {
    pub id: u64,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
    /// Active versions, and the active files in them and their bytes.
    pub versions: u64,
    pub files: u64,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRec {
    pub version: String,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
    /// Active files and their bytes.
    pub files: u64,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRec {
    pub name: String,
    pub blake3: [u8; 32],
    pub size: u64,
    pub sha256: [u8; 32],
    pub sha1: Option<Vec<u8>>,
    pub sha512: Option<Vec<u8>>,
    pub md5: Option<Vec<u8>>,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
    pub last_download_ms: i64,
    pub downloads: u64,
}

impl FileRec {
    pub fn blob(&self) -> Hash {
        Hash(self.blake3)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DupPolicy {
    pub allow_duplicates: bool,
    pub exception_regex: String,
}

impl DupPolicy {
    /// GitLab's default: duplicates allowed.
    pub fn default_allow() -> Self {
        DupPolicy {
            allow_duplicates: true,
            exception_regex: String::new(),
        }
    }
}

/// Every `EventRec::action` the catalog writes: what `audit list --action`
/// accepts.
pub const ACTIONS: &[&str] = &[
    "publish",
    "delete",
    "restore",
    "purge",
    "set-policy",
    "set-retention-policy",
    "delete-retention-policy",
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRec {
    pub unix_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub namespace: String,
    pub project: String,
    pub ty: Option<PackageType>,
    pub name: String,
    pub version: String,
    pub file_name: String,
    pub file_id: u64,
    pub bytes: u64,
}

/// Next ids, kept in `meta`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    pub package: u64,
    pub version: u64,
    /// The first file id of a namespace with no [`file_ids_key`] record:
    /// the store-wide counter as it stood at schema 6, so no id issued
    /// before is issued again in any namespace. No longer moves.
    pub file: u64,
    pub event: u64,
}

/// A namespace's next file id.
pub fn file_ids_key(ns: &str) -> Vec<u8> {
    tagged(tag::FILE_IDS, &[ns.as_bytes()])
}

/// The tag registry: every key layout in `catalog_idx`, by its first byte.
/// A new layout takes a tag here and nowhere else; `tags_are_distinct`
/// keeps them apart.
pub mod tag {
    /// `i` pkg:u64 -> packages key
    pub const PKG_BY_ID: u8 = b'i';
    /// `c` ns 0 pkg:u64 -> packages key (creation order)
    pub const PKG_CREATED: u8 = b'c';
    /// `n` pkg:u64 version -> ver:u64
    pub const VERSION_NAME: u8 = b'n';
    /// `f` ver:u64 file_name -> active files of that name:u64
    pub const FILE_NAME: u8 = b'f';
    /// `b` ref_key(ns, blob) file:u64 -> ver:u64 (the files behind a reference)
    pub const BLOB_FILES: u8 = b'b';
    /// `r` blob -> namespaces referencing it:u64
    pub const HOLDERS: u8 = b'r';
    /// `h` blob ns -> () (those namespaces)
    pub const HOLDER: u8 = b'h';
    /// `g` blob -> unreferenced since ms (schema 2 only; `migrate` retires them)
    pub const GARBAGE: u8 = b'g';
    /// `k` condemned_ms chunk -> () (chunks no manifest uses, oldest first)
    pub const CONDEMNED: u8 = b'k';
    /// `d` pack:u64 -> record bytes of collected chunks in the pack:u64
    pub const DEAD: u8 = b'd';
    /// `x` retired_ms pack:u64 -> () (compacted packs awaiting deletion)
    pub const RETIRED: u8 = b'x';
    /// `P` ns 0 policy name -> retention policy (JSON); before schema 6
    /// `P` policy name (names were store-wide; `migrate` moves them)
    pub const RETENTION_POLICY: u8 = b'P';
    /// `S` -> the retention sweep in progress (JSON)
    pub const SWEEP: u8 = b'S';
    /// `u` ns -> bytes the namespace holds:u64 (quotas)
    pub const NS_BYTES: u8 = b'u';
    /// `t` deleted_ms kind:u8 id:u64 -> primary key (the trash, oldest
    /// first); a file's id is ver:u64 file:u64 (before schema 6 file:u64)
    pub const TRASH: u8 = b't';
    /// `l` lease_until_ms ref_key -> () (upload leases, soonest first)
    pub const LEASE: u8 = b'l';
    /// `p` ns 0 type:u8 -> DupPolicy
    pub const DUP_POLICY: u8 = b'p';
    /// `G` level:u8 group -> usage Counters
    pub const GROUP: u8 = b'G';
    /// `a` blob level:u8 gid:u64 -> a package's files using the blob
    pub const BLOB_EDGE: u8 = b'a';
    /// `A` blob -> usage Edges above the package level
    pub const BLOB_EDGES: u8 = b'A';
    /// `o` chunk level:u8 gid:u64 -> a package's blobs using the chunk
    pub const CHUNK_EDGE: u8 = b'o';
    /// `O` chunk -> usage Share
    pub const CHUNK_SHARE: u8 = b'O';
    /// `J` gid:u64 -> level:u8 group
    pub const GROUP_ID: u8 = b'J';
    /// `D` day:u64 -> the store's usage that day (JSON)
    pub const DAY: u8 = b'D';
    /// `N` ns 0 day:u64 -> a namespace's usage that day (JSON)
    pub const NS_DAY: u8 = b'N';
    /// `E` day:u64 pkg:u64 -> a package's bytes that day:u64
    pub const PKG_DAY: u8 = b'E';
    /// `F` ns -> the namespace's next file id:u64
    pub const FILE_IDS: u8 = b'F';
    /// `R` job:u8 -> when the job's last run ended:i64 ms, and took:u64 ms
    pub const LAST_RUN: u8 = b'R';
    /// `z` blob -> what the optimizer did to it (`catalog::optimized`)
    pub const OPTIMIZED: u8 = b'z';
    /// `Z` -> the sums of those records
    pub const OPTIMIZE_TOTALS: u8 = b'Z';
    /// `s` super-feature:u64 chunk -> (): a chunk the optimizer stored, by
    /// each super-feature of its sketch (`crate::delta`), to find delta
    /// bases. A hint: an entry whose chunk was collected is skipped.
    pub const SKETCH: u8 = b's';

    /// Every tag, with its name.
    pub const ALL: [(u8, &str); 31] = [
        (PKG_BY_ID, "pkg_by_id"),
        (PKG_CREATED, "pkg_created"),
        (VERSION_NAME, "version_name"),
        (FILE_NAME, "file_name"),
        (BLOB_FILES, "blob_files"),
        (HOLDERS, "holders"),
        (HOLDER, "holder"),
        (GARBAGE, "garbage"),
        (CONDEMNED, "condemned"),
        (DEAD, "dead"),
        (RETIRED, "retired"),
        (RETENTION_POLICY, "retention_policy"),
        (SWEEP, "sweep"),
        (NS_BYTES, "ns_bytes"),
        (TRASH, "trash"),
        (LEASE, "lease"),
        (DUP_POLICY, "dup_policy"),
        (GROUP, "group"),
        (BLOB_EDGE, "blob_edge"),
        (BLOB_EDGES, "blob_edges"),
        (CHUNK_EDGE, "chunk_edge"),
        (CHUNK_SHARE, "chunk_share"),
        (GROUP_ID, "group_id"),
        (DAY, "day"),
        (NS_DAY, "ns_day"),
        (PKG_DAY, "pkg_day"),
        (FILE_IDS, "file_ids"),
        (LAST_RUN, "last_run"),
        (OPTIMIZED, "optimized"),
        (OPTIMIZE_TOTALS, "optimize_totals"),
        (SKETCH, "sketch"),
    ];

    /// The key range holding every key of `tag`.
    pub fn range(tag: u8) -> ([u8; 1], [u8; 1]) {
        ([tag], [tag + 1])
    }
}

pub const IDS_KEY: &[u8] = b"ids";

/// `s` super-feature chunk: a stored chunk with that super-feature.
pub fn sketch_key(feature: u64, chunk: &Hash) -> Vec<u8> {
    tagged(tag::SKETCH, &[&feature.to_be_bytes(), &chunk.0])
}

/// The keys of every chunk with super-feature `feature`.
pub fn sketch_prefix(feature: u64) -> Vec<u8> {
    tagged(tag::SKETCH, &[&feature.to_be_bytes()])
}

/// Trash item kinds, in `t` keys.
pub const TRASH_PACKAGE: u8 = 1;
pub const TRASH_VERSION: u8 = 2;
pub const TRASH_FILE: u8 = 3;

pub fn tagged(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(tag);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn ms_key(ms: i64) -> [u8; 8] {
    (ms.max(0) as u64).to_be_bytes()
}

pub fn package_key(p: &PkgRef) -> Vec<u8> {
    let mut k = Vec::with_capacity(p.namespace.len() + p.name.len() + p.project.len() + 3);
    k.extend_from_slice(p.namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(p.name.as_bytes());
    k.push(0);
    k.push(p.ty as u8);
    k.extend_from_slice(p.project.as_bytes());
    k
}

/// Prefix of every package key of a namespace.
pub fn namespace_prefix(ns: &str) -> Vec<u8> {
    let mut k = ns.as_bytes().to_vec();
    k.push(0);
    k
}

pub fn parse_package_key(k: &[u8]) -> Result<PkgRef> {
    let bad = || Error::corrupt("bad package key");
    let s0 = k.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let rest = &k[s0 + 1..];
    let s1 = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let ty = PackageType::from_u8(*rest.get(s1 + 1).ok_or_else(bad)?).map_err(|_| bad())?;
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    Ok(PkgRef {
        namespace: utf8(&k[..s0])?,
        name: utf8(&rest[..s1])?,
        ty,
        project: utf8(&rest[s1 + 2..])?,
    })
}

pub fn version_key(pkg: u64, ver: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&pkg.to_be_bytes());
    k[8..].copy_from_slice(&ver.to_be_bytes());
    k
}

pub fn file_key(ver: u64, file: u64) -> [u8; 16] {
    version_key(ver, file)
}

pub fn split_u64s(k: &[u8]) -> Result<(u64, u64)> {
    match (k.get(..8), k.get(8..16)) {
        (Some(a), Some(b)) if k.len() == 16 => Ok((
            u64::from_be_bytes(a.try_into().expect("8 bytes")),
            u64::from_be_bytes(b.try_into().expect("8 bytes")),
        )),
        _ => Err(Error::corrupt("bad id-pair key")),
    }
}

pub fn be_u64(b: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(
        b.try_into().map_err(|_| Error::corrupt("bad 8-byte value"))?,
    ))
}

pub fn pkg_by_id_key(pkg: u64) -> Vec<u8> {
    tagged(tag::PKG_BY_ID, &[&pkg.to_be_bytes()])
}

pub fn pkg_created_prefix(ns: &str) -> Vec<u8> {
    tagged(tag::PKG_CREATED, &[ns.as_bytes(), &[0]])
}

pub fn pkg_created_key(ns: &str, pkg: u64) -> Vec<u8> {
    tagged(tag::PKG_CREATED, &[ns.as_bytes(), &[0], &pkg.to_be_bytes()])
}

pub fn version_name_key(pkg: u64, version: &str) -> Vec<u8> {
    tagged(tag::VERSION_NAME, &[&pkg.to_be_bytes(), version.as_bytes()])
}

pub fn file_name_key(ver: u64, name: &str) -> Vec<u8> {
    tagged(tag::FILE_NAME, &[&ver.to_be_bytes(), name.as_bytes()])
}

pub fn blob_files_prefix(ref_key: &[u8]) -> Vec<u8> {
    tagged(tag::BLOB_FILES, &[ref_key])
}

pub fn blob_file_key(ref_key: &[u8], file: u64) -> Vec<u8> {
    tagged(tag::BLOB_FILES, &[ref_key, &file.to_be_bytes()])
}

pub fn holders_key(blob: &Hash) -> Vec<u8> {
    tagged(tag::HOLDERS, &[&blob.0])
}

/// One namespace holding a blob (the `r` count is the number of these).
pub fn holder_key(blob: &Hash, ns: &str) -> Vec<u8> {
    tagged(tag::HOLDER, &[&blob.0, ns.as_bytes()])
}

pub fn holder_prefix(blob: &Hash) -> Vec<u8> {
    tagged(tag::HOLDER, &[&blob.0])
}

/// Bytes a namespace holds: the sizes of the blobs it references.
pub fn usage_key(ns: &str) -> Vec<u8> {
    tagged(tag::NS_BYTES, &[ns.as_bytes()])
}

pub fn garbage_key(blob: &Hash) -> Vec<u8> {
    tagged(tag::GARBAGE, &[&blob.0])
}

pub fn condemned_key(since_ms: i64, chunk: &Hash) -> Vec<u8> {
    tagged(tag::CONDEMNED, &[&ms_key(since_ms), &chunk.0])
}

/// (condemned since, chunk) of a [`condemned_key`].
pub fn parse_condemned_key(k: &[u8]) -> Result<(i64, Hash)> {
    let bad = || Error::corrupt("bad condemned-chunk key");
    let at = be_u64(k.get(1..9).ok_or_else(bad)?)? as i64;
    Ok((at, Hash::from_slice(k.get(9..).ok_or_else(bad)?).ok_or_else(bad)?))
}

pub fn dead_key(pack: u64) -> Vec<u8> {
    tagged(tag::DEAD, &[&pack.to_be_bytes()])
}

pub fn retired_key(since_ms: i64, pack: u64) -> Vec<u8> {
    tagged(tag::RETIRED, &[&ms_key(since_ms), &pack.to_be_bytes()])
}

pub fn retention_policy_key(ns: &str, name: &str) -> Vec<u8> {
    tagged(tag::RETENTION_POLICY, &[ns.as_bytes(), &[0], name.as_bytes()])
}

/// Prefix of every retention policy key of a namespace.
pub fn retention_policy_prefix(ns: &str) -> Vec<u8> {
    tagged(tag::RETENTION_POLICY, &[ns.as_bytes(), &[0]])
}

pub const SWEEP_KEY: &[u8] = &[tag::SWEEP];

/// A background job whose last run the catalog keeps across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Gc,
    Sweep,
}

impl Job {
    pub fn key(self) -> [u8; 2] {
        [
            tag::LAST_RUN,
            match self {
                Job::Gc => b'g',
                Job::Sweep => b's',
            },
        ]
    }
}

/// When a job's last run ended (Unix ms) and how long it took (ms).
pub fn encode_last_run(ended_ms: i64, elapsed_ms: u64) -> Vec<u8> {
    [ended_ms.to_be_bytes(), elapsed_ms.to_be_bytes()].concat()
}

pub fn decode_last_run(v: &[u8]) -> Result<(i64, u64)> {
    let (a, b) = v
        .split_at_checked(8)
        .filter(|(_, b)| b.len() == 8)
        .ok_or_else(|| Error::corrupt("bad last-run record"))?;
    Ok((
        i64::from_be_bytes(a.try_into().unwrap_or_default()),
        u64::from_be_bytes(b.try_into().unwrap_or_default()),
    ))
}

/// A package's or version's place in the trash.
pub fn trash_key(deleted_ms: i64, kind: u8, id: u64) -> Vec<u8> {
    tagged(tag::TRASH, &[&ms_key(deleted_ms), &[kind], &id.to_be_bytes()])
}

/// A file's place in the trash: file ids are per namespace, so its version
/// names it.
pub fn trash_file_key(deleted_ms: i64, ver: u64, file: u64) -> Vec<u8> {
    tagged(
        tag::TRASH,
        &[
            &ms_key(deleted_ms),
            &[TRASH_FILE],
            &ver.to_be_bytes(),
            &file.to_be_bytes(),
        ],
    )
}

pub fn lease_key(until_ms: i64, ref_key: &[u8]) -> Vec<u8> {
    tagged(tag::LEASE, &[&ms_key(until_ms), ref_key])
}

pub fn policy_key(ns: &str, ty: PackageType) -> Vec<u8> {
    tagged(tag::DUP_POLICY, &[ns.as_bytes(), &[0, ty as u8]])
}

/// The store's usage on a day: `D` day.
pub fn day_key(day: u64) -> Vec<u8> {
    tagged(tag::DAY, &[&day.to_be_bytes()])
}

/// A namespace's usage on a day: `N` ns 0 day.
pub fn namespace_day_key(ns: &str, day: u64) -> Vec<u8> {
    tagged(tag::NS_DAY, &[ns.as_bytes(), &[0], &day.to_be_bytes()])
}

/// A package's bytes on a day: `E` day pkg.
pub fn package_day_key(day: u64, pkg: u64) -> Vec<u8> {
    tagged(tag::PKG_DAY, &[&day.to_be_bytes(), &pkg.to_be_bytes()])
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for (t, name) in super::tag::ALL {
            assert!(seen.insert(t), "tag {:?} ({name}) is used twice", t as char);
        }
    }

    use super::*;

    #[test]
    fn package_keys_round_trip_and_sort_by_name() {
        let p = PkgRef {
            namespace: "acme".into(),
            project: "web/api".into(),
            ty: PackageType::Npm,
            name: "@acme/a".into(),
        };
        assert_eq!(parse_package_key(&package_key(&p)).unwrap(), p);
        let q = PkgRef {
            name: "@acme/a-b".into(),
            ..p.clone()
        };
        assert!(package_key(&p) < package_key(&q));
        assert!(package_key(&p).starts_with(&namespace_prefix("acme")));
        assert!(!package_key(&p).starts_with(&namespace_prefix("acm")));
        let r = FileRec {
            name: "x".into(),
            sha1: Some(vec![1; 20]),
            deleted_ms: Some(5),
            ..Default::default()
        };
        assert_eq!(decode::<FileRec>(&encode(&r), "file").unwrap(), r);
        assert!(decode::<FileRec>(&[9, 1], "file").is_err());
        assert_eq!(prefix_end(b"a\xff").unwrap(), b"b");
    }
}
