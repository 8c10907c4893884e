//! A blob's kin: the files of the other versions of the package its files
//! are in, nearest version first. The optimizer deltas a new version's
//! chunks against them (a changed member's base is usually the same member
//! one version back), so this only ever names candidates: whatever it
//! returns, a delta is verified like every chunk.
//!
//! Read path: the blob's package-level usage edges (`a`) name its packages'
//! group ids, `J` turns one into the package key, and the package's
//! versions and files are read newest first, at most [`VERSIONS`] of them.

use super::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use super::usage::{self, Level};
use crate::error::Result;
use crate::hash::Hash;
use crate::index::{Cf, Index};

/// Versions of a package looked at, newest first.
pub const VERSIONS: usize = 64;

/// Blobs of files in the other versions of `blob`'s package, nearest
/// version first (an earlier one before a later one at the same distance),
/// and in each version the file whose name, its version taken out, is most
/// like the name of `blob`'s file. At most `max`; none when no catalog file
/// uses `blob`.
pub fn kin(index: &Index, blob: &Hash, max: usize) -> Result<Vec<Hash>> {
    let Some(pkg_id) = package_of(index, blob)? else {
        return Ok(Vec::new());
    };
    // Newest first: (version, active files).
    let mut versions: Vec<(String, Vec<FileRec>)> = Vec::new();
    let (from, to) = (pkg_id.to_be_bytes(), (pkg_id + 1).to_be_bytes());
    for kv in index.scan(Cf::Versions, &from, Some(&to), true).take(VERSIONS) {
        let (k, v) = kv?;
        let (_, ver_id) = rec::split_u64s(&k)?;
        let v: VersionRec = decode(&v, "version")?;
        if v.deleted_ms.is_some() {
            continue;
        }
        let (from, to) = (ver_id.to_be_bytes(), (ver_id + 1).to_be_bytes());
        let mut files = Vec::new();
        for kv in index.scan(Cf::Files, &from, Some(&to), false) {
            let f: FileRec = decode(&kv?.1, "file")?;
            if f.deleted_ms.is_none() {
                files.push(f);
            }
        }
        versions.push((v.version, files));
    }
    let own = versions
        .iter()
        .position(|(_, files)| files.iter().any(|f| f.blob() == *blob));
    let own_name = own.and_then(|i| {
        let (v, files) = &versions[i];
        files
            .iter()
            .find(|f| f.blob() == *blob)
            .map(|f| unversioned(&f.name, v))
    });
    let mut order: Vec<usize> = (0..versions.len()).filter(|&i| Some(i) != own).collect();
    // Index i is newer than i + 1: at equal distance the older (larger i) first.
    let at = own.unwrap_or(0);
    order.sort_by_key(|&i| (i.abs_diff(at), std::cmp::Reverse(i)));
    let mut out = Vec::new();
    for i in order {
        let (v, files) = &versions[i];
        let best = files
            .iter()
            .filter(|f| f.blob() != *blob)
            .max_by_key(|f| own_name.as_deref().map_or(0, |n| likeness(n, &unversioned(&f.name, v))));
        if let Some(f) = best
            && !out.contains(&f.blob())
        {
            out.push(f.blob());
            if out.len() == max {
                break;
            }
        }
    }
    Ok(out)
}

/// The id of the first package whose files use `blob`.
fn package_of(index: &Index, blob: &Hash) -> Result<Option<u64>> {
    let prefix = usage::package_edges_prefix(blob);
    let end = rec::prefix_end(&prefix);
    for kv in index.scan(Cf::CatalogIdx, &prefix, end.as_deref(), false) {
        let (k, _) = kv?;
        let gid = rec::be_u64(&k[prefix.len()..])?;
        // `J` gid -> level:u8 group key.
        let Some(group) = index.get(Cf::CatalogIdx, &usage::gid_key(gid))? else {
            continue;
        };
        let Some(key) = group.strip_prefix(&[Level::Package as u8]) else {
            continue;
        };
        if let Some(p) = index.get(Cf::Packages, key)? {
            let p: PackageRec = decode(&p, "package")?;
            if p.deleted_ms.is_none() {
                return Ok(Some(p.id));
            }
        }
    }
    Ok(None)
}

/// A file name with its version string taken out: the wheels of one
/// platform in two versions then have the same name.
fn unversioned(name: &str, version: &str) -> String {
    if version.is_empty() {
        name.to_string()
    } else {
        name.replace(version, "\0")
    }
}

/// How alike two names are: the bytes they share at the start and the end.
fn likeness(a: &str, b: &str) -> usize {
    if a == b {
        return usize::MAX;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    head + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_platform_in_another_version_is_the_likest_name() {
        let own = unversioned("numpy-2.0.1-cp312-cp312-manylinux_x86_64.whl", "2.0.1");
        let same = unversioned("numpy-2.0.0-cp312-cp312-manylinux_x86_64.whl", "2.0.0");
        let other = unversioned("numpy-2.0.0-cp311-cp311-macosx_arm64.whl", "2.0.0");
        assert_eq!(own, same);
        assert!(likeness(&own, &same) > likeness(&own, &other));
        assert!(likeness("a-\0.tar.gz", "a-\0-py3.whl") < likeness("a-\0.tar.gz", "a-\0.tgz"));
    }
}
