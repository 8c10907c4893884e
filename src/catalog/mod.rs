//! The package catalog: namespace → project → package (type, name) →
//! version → files, with soft delete into a trash, restore, purge, upload
//! leases, duplicate policies and the audit trail.
//!
//! - [`model`]: coordinates, package types, name validation. Pure.
//! - [`records`]: stored values and key layouts. Pure.
//! - [`ops`]: the changes (`CatalogOp`) and their outcomes. Plain data.
//! - [`rules`]: refusals shared by the pre-upload check and the commit.
//! - [`apply`]: every catalog change, run by the committer (the one index
//!   writer) so reference counts change in the same batch as the catalog;
//!   with `trash` (delete, restore), `refs` (references, quotas), `purge`
//!   and `settings` (policies, daily usage, the sweep record).
//! - [`read`]: listings and lookups, straight from the index.
//! - [`check`]: recomputes every count from the catalog on a snapshot.

pub mod apply;
pub mod check;
pub mod chunks;
pub mod kin;
pub mod model;
pub mod ops;
pub mod optimized;
mod purge;
pub mod read;
pub mod records;
mod refs;
pub mod rules;
mod settings;
mod trash;
pub mod usage;

pub use check::CheckReport;
pub use model::{FileRef, PackageType, PkgRef, State, VerRef};
pub use ops::{CatalogOp, CatalogOutcome, PurgeCounts, Target};
pub use read::{FileView, PackageSort, PackageView, Page, VersionView};
pub use records::{DupPolicy, EventRec};

use std::collections::HashMap;

use crate::error::Result;
use crate::hash::Hash;
use crate::index::{Cf, Index, RefInfo, decode_ref_key};

/// Index layout this code writes. 1: blob store only (references without
/// leases or file counts); 2: catalog, leases, holder counts and lists;
/// 3: bytes held per namespace (quotas); 4: chunk reference counts,
/// condemned chunks, no garbage blobs (a blob nobody holds is deleted);
/// 5: capacity counters ([`usage`]); 6: tenant-scoped figures (blobs and
/// exclusive bytes within a namespace in the counters, the extra digests a
/// namespace asked for in its references), retention policies named per
/// namespace, file ids per namespace (a file's trash entry names its
/// version); an upload lease ends when a file uses the
/// blob (leases stored on blobs files use are ended).
pub const SCHEMA: u32 = 6;
pub const SCHEMA_KEY: &[u8] = b"schema";
const MIGRATE_BATCH: usize = 10_000;

/// Brings an index written by an older layout up to [`SCHEMA`], before the
/// committer starts. Idempotent; a crash midway reruns it.
pub fn migrate(index: &Index) -> Result<()> {
    let schema = match index.get(Cf::Meta, SCHEMA_KEY)? {
        Some(v) => u32::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 4])),
        None => 1,
    };
    if schema >= SCHEMA {
        return Ok(());
    }
    if index.stats()?.blobs > 0 {
        tracing::info!(from = schema, to = SCHEMA, "migrating the index");
    }
    if schema < 6 {
        per_namespace_keys(index)?;
    }
    derive_all(index)
}

/// Schema 6: a retention policy's key names its namespace (`P` ns 0 name,
/// from `P` name), and a file's trash entry its version (`t` ms 3 ver file,
/// from `t` ms 3 file). Idempotent: keys already moved are left alone.
pub fn per_namespace_keys(index: &Index) -> Result<()> {
    let mut txn = index.txn();
    let (from, to) = records::tag::range(records::tag::RETENTION_POLICY);
    for kv in index.scan(Cf::CatalogIdx, &from, Some(&to), false) {
        let (k, v) = kv?;
        if k[1..].contains(&0) {
            continue;
        }
        let ns = serde_json::from_slice::<serde_json::Value>(&v)
            .ok()
            .and_then(|p| p.get("namespace")?.as_str().map(str::to_string))
            .ok_or_else(|| crate::Error::corrupt("stored retention policy has no namespace"))?;
        let name = std::str::from_utf8(&k[1..]).map_err(|_| crate::Error::corrupt("bad retention policy key"))?;
        txn.put(Cf::CatalogIdx, records::retention_policy_key(&ns, name), v.to_vec());
        txn.delete(Cf::CatalogIdx, k.to_vec());
    }
    let (from, to) = records::tag::range(records::tag::TRASH);
    for kv in index.scan(Cf::CatalogIdx, &from, Some(&to), false) {
        let (k, v) = kv?;
        // tag, deleted_ms, kind, file id: the old layout of a file's entry.
        if k.len() != 18 || k[9] != records::TRASH_FILE {
            continue;
        }
        let bad = || crate::Error::corrupt("bad trash entry of a file");
        let (_, ver) = records::split_u64s(v.get(..16).ok_or_else(bad)?)?;
        let file = records::be_u64(v.get(16..).ok_or_else(bad)?)?;
        let at = records::be_u64(&k[1..9])? as i64;
        txn.put(Cf::CatalogIdx, records::trash_file_key(at, ver, file), v.to_vec());
        txn.delete(Cf::CatalogIdx, k.to_vec());
        if txn.len() >= MIGRATE_BATCH {
            index.commit(std::mem::replace(&mut txn, index.txn()))?;
        }
    }
    index.commit(txn)
}

/// Recomputes everything derived from the references and manifests, then
/// marks the index as [`SCHEMA`].
pub fn derive_all(index: &Index) -> Result<()> {
    derive_reference_entries(index)?;
    chunks::derive(index)?;
    usage::rewrite(index)?;
    let mut txn = index.txn();
    txn.put(Cf::Meta, SCHEMA_KEY, SCHEMA.to_be_bytes().to_vec());
    index.commit(txn)
}

/// Writes everything derived from the references: each reference's current
/// encoding, lease entry (none, and the lease ended, once a file uses the
/// blob) and place in its blob's holder list; each blob's
/// holder count; each namespace's bytes held. A blob with no holder is left
/// for [`chunks::derive`] to retire.
pub fn derive_reference_entries(index: &Index) -> Result<()> {
    let mut txn = index.txn();
    let mut holders: HashMap<Hash, u64> = HashMap::new();
    let mut usage: HashMap<String, u64> = HashMap::new();
    for kv in index.scan(Cf::Refs, &[], None, false) {
        let (k, v) = kv?;
        let (ns, blob) = decode_ref_key(&k)?;
        let mut r = RefInfo::decode(&v)?;
        // A lease ends when a file uses the blob (schema 6): end those
        // stored before, so they hold no space once the files are purged.
        if r.files > 0 {
            txn.delete(Cf::CatalogIdx, records::lease_key(r.lease_until_ms, &k));
            r.lease_until_ms = 0;
        } else {
            txn.put(Cf::CatalogIdx, records::lease_key(r.lease_until_ms, &k), Vec::new());
        }
        txn.put(Cf::Refs, k.to_vec(), r.encode());
        txn.put(Cf::CatalogIdx, records::holder_key(&blob, &ns), Vec::new());
        *holders.entry(blob).or_default() += 1;
        if let Some(m) = index.get(Cf::Blobs, &blob.0)? {
            *usage.entry(ns).or_default() += crate::manifest::Manifest::decode(&m)?.size;
        }
        if txn.len() >= MIGRATE_BATCH {
            index.commit(std::mem::replace(&mut txn, index.txn()))?;
        }
    }
    for kv in index.scan(Cf::Blobs, &[], None, false) {
        let (k, _) = kv?;
        let blob = Hash::from_slice(&k).ok_or_else(|| crate::Error::corrupt("bad blob key"))?;
        match holders.get(&blob) {
            Some(n) => {
                txn.put(Cf::CatalogIdx, records::holders_key(&blob), n.to_be_bytes().to_vec());
                txn.delete(Cf::CatalogIdx, records::garbage_key(&blob));
            }
            None => txn.delete(Cf::CatalogIdx, records::holders_key(&blob)),
        }
        if txn.len() >= MIGRATE_BATCH {
            index.commit(std::mem::replace(&mut txn, index.txn()))?;
        }
    }
    for (ns, bytes) in usage {
        txn.put(Cf::CatalogIdx, records::usage_key(&ns), bytes.to_be_bytes().to_vec());
    }
    index.commit(txn)
}
