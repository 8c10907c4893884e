//! Where every byte of the store is: the figures of `crate::figures` read
//! from the index, and the named buckets that add up to the data dir.
//!
//! Pack bytes (sealed, retired and staged pack files) split into:
//! - `active`: stored bytes of the chunks an active file uses;
//! - `trash`: of the chunks only files in the trash use;
//! - `lease`: of the chunks only blobs no file uses (held by an upload
//!   lease, or by one that ended and that the next purge drops) use;
//! - `condemned`: of the chunks no blob uses, until GC collects them;
//! - `dead`: records of collected chunks still inside packs, until compaction;
//! - `retired_packs`: compacted packs awaiting deletion;
//! - `pack_overhead`: the rest of the pack files: record headers, blob
//!   manifests, reference records, footers, and the manifests and
//!   references of purged blobs still inside packs.
//!
//! The first three hold each distinct chunk once (active before trash
//! before lease) and add up to `physical`. Beside the packs, the data dir
//! holds the index (RocksDB files and the commit mark), the daemon's own
//! files (admin token, listen and metrics addresses) and nothing else
//! (`other`, 0 unless someone put files there). [`space`] walks the data
//! dir in the same call, so `total_bytes` and `data_dir_bytes` are measured
//! at one moment; they agree while no upload is sealing a pack.
//!
//! [`figures`] reads counters and the lease list only (cheap, for
//! `/metrics`); [`space`] walks every file, reference and manifest on one
//! snapshot, holding one entry per blob and per chunk in use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::records::{self as rec, FileRec, PackageRec, VersionRec, decode};
use crate::catalog::usage::{self, Level};
use crate::error::{Error, Result};
use crate::figures::Figures;
use crate::hash::Hash;
use crate::index::{Cf, ChunkRec, Index, PackState, RefInfo, Snapshot, decode_ref_key};
use crate::manifest::Manifest;

/// The catalog's counts and the figures, from counters (no walk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub figures: Figures,
    /// Active packages, versions and files; files in the trash and their sizes.
    pub packages: u64,
    pub versions: u64,
    pub files: u64,
    pub trash_files: u64,
    pub trash_bytes: u64,
    /// Blobs a namespace holds with no file of it using them (upload
    /// leases), and their sizes, once per namespace.
    pub leased_blobs: u64,
    pub leased_bytes: u64,
}

/// Reads [`Totals`] on one snapshot: the namespaces' counters, the lease
/// list (blobs uploaded and not yet published), the store stats.
pub fn figures(index: &Index) -> Result<Totals> {
    let s = index.snapshot();
    let stats = s.stats()?;
    let mut t = Totals::default();
    let mut file_bytes = 0u64;
    for (_, c) in usage::stored_groups(&s, Level::Namespace, &[])? {
        let n = |v: i64| v.max(0) as u64;
        t.packages += n(c.packages);
        t.versions += n(c.versions);
        t.files += n(c.files);
        t.trash_files += n(c.trash_files);
        t.trash_bytes += n(c.trash_bytes);
        file_bytes += n(c.logical_bytes) + n(c.trash_bytes);
    }
    for kv in s.scan(Cf::CatalogIdx, &[rec::tag::LEASE], Some(&[rec::tag::LEASE + 1])) {
        let (k, _) = kv?;
        let rk = k.get(9..).ok_or_else(|| Error::corrupt("bad lease key"))?;
        let Some(r) = s.get(Cf::Refs, rk)? else { continue };
        if RefInfo::decode(&r)?.files == 0 {
            let (_, blob) = decode_ref_key(rk)?;
            t.leased_blobs += 1;
            t.leased_bytes += blob_size(&s, &blob)?;
        }
    }
    t.figures = Figures {
        logical_bytes: file_bytes + t.leased_bytes,
        unique_bytes: stats.unique_bytes,
        physical_bytes: stats.physical_bytes.saturating_sub(stats.condemned_bytes),
    };
    Ok(t)
}

fn blob_size(s: &Snapshot<'_>, blob: &Hash) -> Result<u64> {
    Ok(match s.get(Cf::Blobs, &blob.0)? {
        Some(m) => Manifest::decode(&m)?.size,
        None => 0,
    })
}

/// Every byte of the store in a named bucket, and the data dir's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Space {
    pub active_bytes: u64,
    pub trash_bytes: u64,
    pub lease_bytes: u64,
    pub condemned_bytes: u64,
    pub dead_bytes: u64,
    pub retired_pack_bytes: u64,
    pub pack_overhead_bytes: u64,
    /// Pack files the index knows (sealed, retired, staged): the buckets above.
    pub pack_bytes: u64,
    /// Of those, sealed packs kept outside the data dir (a remote pack store).
    pub packs_elsewhere_bytes: u64,
    /// RocksDB's files and the commit mark.
    pub index_bytes: u64,
    /// The admin token, listen.addr, metrics.addr.
    pub daemon_files_bytes: u64,
    /// Files in the data dir that belong to none of the above.
    pub other_bytes: u64,
    /// The buckets in the data dir, summed.
    pub total_bytes: u64,
    /// The data dir's files, measured.
    pub data_dir_bytes: u64,
}

/// Where the data dir keeps what.
pub struct Layout<'a> {
    pub data_dir: &'a Path,
    pub index_dir: PathBuf,
    pub staging_dir: PathBuf,
    /// The local pack store's root, if the store is a directory.
    pub pack_root: Option<&'a Path>,
}

/// Files the daemon itself writes into the data dir.
const DAEMON_FILES: [&str; 4] = [
    crate::auth::ADMIN_TOKEN_FILE,
    "listen.addr",
    "metrics.addr",
    crate::dirlock::PID_FILE,
];

/// Walks the store (see the module doc). `staged_bytes`: the sizes of the
/// staging packs, as the packer holds them.
pub fn space(index: &Index, staged_bytes: u64, at: &Layout<'_>) -> Result<Space> {
    let s = index.snapshot();
    let stats = s.stats()?;
    let mut sp = Space {
        condemned_bytes: stats.condemned_bytes,
        dead_bytes: stats.dead_bytes,
        pack_bytes: stats.sealed_pack_bytes + staged_bytes,
        ..Default::default()
    };
    for (_, p) in index.packs()? {
        if p.state == PackState::Retired {
            sp.retired_pack_bytes += p.size;
        }
    }
    // Each blob's best holder: 2 an active file, 1 a file in the trash, 0 none.
    let mut blobs: HashMap<Hash, u8> = HashMap::new();
    for kv in s.scan(Cf::Packages, &[], None) {
        let p: PackageRec = decode(&kv?.1, "package")?;
        for kv in s.scan(Cf::Versions, &p.id.to_be_bytes(), Some(&(p.id + 1).to_be_bytes())) {
            let (k, v) = kv?;
            let ver_id = rec::split_u64s(&k)?.1;
            let ver: VersionRec = decode(&v, "version")?;
            let ver_active = p.deleted_ms.is_none() && ver.deleted_ms.is_none();
            for kv in s.scan(Cf::Files, &ver_id.to_be_bytes(), Some(&(ver_id + 1).to_be_bytes())) {
                let f: FileRec = decode(&kv?.1, "file")?;
                let state = 1 + (ver_active && f.deleted_ms.is_none()) as u8;
                let e = blobs.entry(f.blob()).or_default();
                *e = (*e).max(state);
            }
        }
    }
    for kv in s.scan(Cf::Refs, &[], None) {
        let (k, v) = kv?;
        if RefInfo::decode(&v)?.files == 0 {
            blobs.entry(decode_ref_key(&k)?.1).or_default();
        }
    }
    let mut chunks: HashMap<Hash, u8> = HashMap::new();
    for (blob, state) in &blobs {
        let Some(m) = s.get(Cf::Blobs, &blob.0)? else {
            return Err(Error::corrupt(format!("held blob {blob} has no manifest")));
        };
        for c in Manifest::decode(&m)?.chunks {
            let e = chunks.entry(c.id).or_default();
            *e = (*e).max(*state);
        }
    }
    for (id, state) in chunks {
        let Some(c) = s.get(Cf::Chunks, &id.0)? else {
            return Err(Error::corrupt(format!("chunk {id} of a held blob is not indexed")));
        };
        let len = ChunkRec::decode(&c)?.loc.stored_len as u64;
        match state {
            2 => sp.active_bytes += len,
            1 => sp.trash_bytes += len,
            _ => sp.lease_bytes += len,
        }
    }
    let counted =
        sp.active_bytes + sp.trash_bytes + sp.lease_bytes + sp.condemned_bytes + sp.dead_bytes + sp.retired_pack_bytes;
    sp.pack_overhead_bytes = sp.pack_bytes.saturating_sub(counted);
    walk(&mut sp, at, &stats)?;
    Ok(sp)
}

/// Measures the data dir and sorts its files into the buckets that are
/// not packs.
fn walk(sp: &mut Space, at: &Layout<'_>, stats: &crate::index::Stats) -> Result<()> {
    // Compared as the kernel names them (the data dir may be relative).
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (data_dir, index_dir, staging_dir) = (real(at.data_dir), real(&at.index_dir), real(&at.staging_dir));
    let packs_dir = at.pack_root.map(|r| real(r).join("packs"));
    let local = packs_dir.as_ref().is_some_and(|p| p.starts_with(&data_dir));
    if !local {
        sp.packs_elsewhere_bytes = stats.sealed_pack_bytes;
    }
    let mut stack = vec![data_dir.clone()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Removed meanwhile (a RocksDB compaction, a pack deleted).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for e in entries {
            let e = e?;
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let len = meta.len();
            sp.data_dir_bytes += len;
            let in_packs = packs_dir.as_ref().is_some_and(|p| path.starts_with(p));
            if path.starts_with(&index_dir) {
                sp.index_bytes += len;
            } else if in_packs || path.starts_with(&staging_dir) {
                // Counted by the index, in `pack_bytes`.
            } else if path.parent() == Some(data_dir.as_path())
                && DAEMON_FILES.iter().any(|f| path.file_name().is_some_and(|n| n == *f))
            {
                sp.daemon_files_bytes += len;
            } else {
                sp.other_bytes += len;
            }
        }
    }
    sp.total_bytes = (sp.pack_bytes - sp.packs_elsewhere_bytes.min(sp.pack_bytes))
        + sp.index_bytes
        + sp.daemon_files_bytes
        + sp.other_bytes;
    Ok(())
}
