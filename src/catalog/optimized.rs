//! What the optimizer did to each blob (`z` blob -> [`Outcome`]) and the
//! store's totals of it (`Z` -> [`Totals`]), kept in the committer's batch
//! with the change they describe: an optimized blob's record is written
//! with its recipe manifest, a blob kept raw gets one so no later pass
//! tries it again, and releasing the blob forgets its record and takes it
//! out of the totals, so the totals are always the sum of the records.

use serde::{Deserialize, Serialize};

use super::records::{self as rec, decode, encode};
use crate::error::Result;
use crate::hash::Hash;
use crate::index::{Cf, Txn};

/// Why a blob is what it is after the optimizer looked at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Stored as its recipe.
    #[default]
    Recipe,
    /// No container the optimizer knows, or nothing in it could be expanded.
    Opaque,
    /// Its recipe would not have stored less.
    NoSaving,
    /// Larger than `optimize.max_blob`, or over a budget.
    TooLarge,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The blob's size.
    pub bytes: u64,
    /// Containers found (a tar in a gzip counts as nested).
    pub zip: u32,
    pub gzip: u32,
    pub tar: u32,
    pub nested: u32,
    /// Deflate streams recreated by zlib's parameters, by preflate, or
    /// kept compressed.
    pub zlib: u32,
    pub preflate: u32,
    pub opaque: u32,
    /// Stored bytes of the raw chunks it released, and of the chunks its
    /// recipe added (chunks already stored cost nothing), when optimized.
    pub released_bytes: u64,
    pub added_bytes: u64,
}

/// Sums of the records, by verdict, format and method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub optimized_blobs: u64,
    pub optimized_bytes: u64,
    /// Of the optimized bytes, blobs whose outer container is a zip, a
    /// gzip; blobs holding a tar; blobs with containers inside containers.
    pub zip_bytes: u64,
    pub gzip_bytes: u64,
    pub tar_bytes: u64,
    pub nested_bytes: u64,
    pub zlib_streams: u64,
    pub preflate_streams: u64,
    pub opaque_streams: u64,
    /// Blobs (and their bytes) looked at and kept raw.
    pub raw_blobs: u64,
    pub raw_bytes: u64,
    pub released_bytes: u64,
    pub added_bytes: u64,
}

impl Totals {
    fn add(&mut self, o: &Outcome, sign: i64) {
        let f = |v: &mut u64, by: u64| *v = v.saturating_add_signed(sign * by as i64);
        if o.verdict == Verdict::Recipe {
            f(&mut self.optimized_blobs, 1);
            f(&mut self.optimized_bytes, o.bytes);
            if o.zip > 0 {
                f(&mut self.zip_bytes, o.bytes);
            } else if o.gzip > 0 {
                f(&mut self.gzip_bytes, o.bytes);
            }
            if o.tar > 0 {
                f(&mut self.tar_bytes, o.bytes);
            }
            if o.nested > 0 {
                f(&mut self.nested_bytes, o.bytes);
            }
            f(&mut self.zlib_streams, o.zlib as u64);
            f(&mut self.preflate_streams, o.preflate as u64);
            f(&mut self.opaque_streams, o.opaque as u64);
            f(&mut self.released_bytes, o.released_bytes);
            f(&mut self.added_bytes, o.added_bytes);
        } else {
            f(&mut self.raw_blobs, 1);
            f(&mut self.raw_bytes, o.bytes);
        }
    }
}

pub fn outcome_key(blob: &Hash) -> Vec<u8> {
    [&[rec::tag::OPTIMIZED][..], &blob.0].concat()
}

pub const TOTALS_KEY: &[u8] = &[rec::tag::OPTIMIZE_TOTALS];

/// The blob's record, if the optimizer looked at it.
pub fn outcome(txn: &Txn<'_>, blob: &Hash) -> Result<Option<Outcome>> {
    txn.get(Cf::CatalogIdx, &outcome_key(blob))?
        .map(|v| decode(&v, "optimize outcome"))
        .transpose()
}

pub fn totals(get: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>>) -> Result<Totals> {
    Ok(match get(TOTALS_KEY)? {
        Some(v) => decode(&v, "optimize totals")?,
        None => Totals::default(),
    })
}

fn move_totals(txn: &mut Txn<'_>, o: &Outcome, sign: i64) -> Result<()> {
    let mut t = totals(|k| txn.get(Cf::CatalogIdx, k))?;
    t.add(o, sign);
    txn.put(Cf::CatalogIdx, TOTALS_KEY.to_vec(), encode(&t));
    Ok(())
}

/// Records what the optimizer did to a blob (replacing an earlier record).
pub fn record(txn: &mut Txn<'_>, blob: &Hash, o: &Outcome) -> Result<()> {
    forget(txn, blob)?;
    txn.put(Cf::CatalogIdx, outcome_key(blob), encode(o));
    move_totals(txn, o, 1)
}

/// Forgets a blob's record (the blob is being released).
pub fn forget(txn: &mut Txn<'_>, blob: &Hash) -> Result<()> {
    if let Some(o) = outcome(txn, blob)? {
        txn.delete(Cf::CatalogIdx, outcome_key(blob));
        move_totals(txn, &o, -1)?;
    }
    Ok(())
}
