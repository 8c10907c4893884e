//! Stored catalog values (postcard, behind a version byte) and key layouts.
//!
//! Ids (package, version, file, event) come from counters in `meta` and
//! grow with creation time, so "newest first" is "highest id first".
//!
//! - `packages`: ns 0 name 0 type:u8 project -> [`PackageRec`]
//! - `versions`: pkg:u64 ver:u64 -> [`VersionRec`]
//! - `files`:    ver:u64 file:u64 -> [`FileRec`]
//! - `audit`:    event:u64 -> [`EventRec`]
//! - `catalog_idx`, by tag:
//!   - `i` pkg -> packages key;  `c` ns 0 pkg -> packages key (creation order)
//!   - `n` pkg version -> ver;   `f` ver file_name -> active files of that name:u64
//!   - `b` ref_key(ns, blob) file -> ver (the files behind a namespace's reference)
//!   - `r` blob -> namespaces referencing it:u64; `h` blob ns -> () (those namespaces)
//!   - `g` blob -> unreferenced since ms (schema 2 only; `migrate` retires those blobs)
//!   - `k` condemned_ms chunk -> () (chunks no manifest uses, oldest first: the collector's input)
//!   - `d` pack:u64 -> record bytes of collected chunks in that pack:u64 (compaction's input)
//!   - `x` retired_ms pack:u64 -> () (compacted packs awaiting deletion from the store)
//!   - `P` policy name -> retention policy (JSON); `S` -> the sweep in progress (JSON)
//!   - `u` ns -> bytes the namespace holds:u64 (quota accounting)
//!   - `t` deleted_ms kind:u8 id -> primary key (the trash, oldest first)
//!   - `l` lease_until_ms ref_key -> () (upload leases, soonest first)
//!   - `p` ns 0 type:u8 -> [`DupPolicy`]
//!   - `G`, `a`, `o`, `O`, `J`: capacity counters (see [`super::usage`])
//!   - `D` day, `E` day pkg: daily usage (see `crate::report`)
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
    pub file: u64,
    pub event: u64,
}

pub const IDS_KEY: &[u8] = b"ids";

/// Trash item kinds, in `t` keys.
pub const TRASH_PACKAGE: u8 = 1;
pub const TRASH_VERSION: u8 = 2;
pub const TRASH_FILE: u8 = 3;

fn tagged(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
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
    tagged(b'i', &[&pkg.to_be_bytes()])
}

pub fn pkg_created_prefix(ns: &str) -> Vec<u8> {
    tagged(b'c', &[ns.as_bytes(), &[0]])
}

pub fn pkg_created_key(ns: &str, pkg: u64) -> Vec<u8> {
    tagged(b'c', &[ns.as_bytes(), &[0], &pkg.to_be_bytes()])
}

pub fn version_name_key(pkg: u64, version: &str) -> Vec<u8> {
    tagged(b'n', &[&pkg.to_be_bytes(), version.as_bytes()])
}

pub fn file_name_key(ver: u64, name: &str) -> Vec<u8> {
    tagged(b'f', &[&ver.to_be_bytes(), name.as_bytes()])
}

pub fn blob_files_prefix(ref_key: &[u8]) -> Vec<u8> {
    tagged(b'b', &[ref_key])
}

pub fn blob_file_key(ref_key: &[u8], file: u64) -> Vec<u8> {
    tagged(b'b', &[ref_key, &file.to_be_bytes()])
}

pub fn holders_key(blob: &Hash) -> Vec<u8> {
    tagged(b'r', &[&blob.0])
}

/// One namespace holding a blob (the `r` count is the number of these).
pub fn holder_key(blob: &Hash, ns: &str) -> Vec<u8> {
    tagged(b'h', &[&blob.0, ns.as_bytes()])
}

pub fn holder_prefix(blob: &Hash) -> Vec<u8> {
    tagged(b'h', &[&blob.0])
}

/// Bytes a namespace holds: the sizes of the blobs it references.
pub fn usage_key(ns: &str) -> Vec<u8> {
    tagged(b'u', &[ns.as_bytes()])
}

pub fn garbage_key(blob: &Hash) -> Vec<u8> {
    tagged(b'g', &[&blob.0])
}

pub fn condemned_key(since_ms: i64, chunk: &Hash) -> Vec<u8> {
    tagged(b'k', &[&ms_key(since_ms), &chunk.0])
}

/// (condemned since, chunk) of a [`condemned_key`].
pub fn parse_condemned_key(k: &[u8]) -> Result<(i64, Hash)> {
    let bad = || Error::corrupt("bad condemned-chunk key");
    let at = be_u64(k.get(1..9).ok_or_else(bad)?)? as i64;
    Ok((at, Hash::from_slice(k.get(9..).ok_or_else(bad)?).ok_or_else(bad)?))
}

pub fn dead_key(pack: u64) -> Vec<u8> {
    tagged(b'd', &[&pack.to_be_bytes()])
}

pub fn retired_key(since_ms: i64, pack: u64) -> Vec<u8> {
    tagged(b'x', &[&ms_key(since_ms), &pack.to_be_bytes()])
}

pub fn retention_policy_key(name: &str) -> Vec<u8> {
    tagged(b'P', &[name.as_bytes()])
}

pub const SWEEP_KEY: &[u8] = b"S";

pub fn trash_key(deleted_ms: i64, kind: u8, id: u64) -> Vec<u8> {
    tagged(b't', &[&ms_key(deleted_ms), &[kind], &id.to_be_bytes()])
}

pub fn lease_key(until_ms: i64, ref_key: &[u8]) -> Vec<u8> {
    tagged(b'l', &[&ms_key(until_ms), ref_key])
}

pub fn policy_key(ns: &str, ty: PackageType) -> Vec<u8> {
    tagged(b'p', &[ns.as_bytes(), &[0, ty as u8]])
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
