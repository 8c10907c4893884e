//! What to compact: packs over the dead threshold, the live records of a
//! pack, and reads of adjacent live records. Reads of the index only.

use std::collections::{BTreeMap, HashMap};

use super::Located;
use crate::catalog::records::be_u64;
use crate::error::Result;
use crate::index::{Cf, Index, PackState};
use crate::pack::format::{Entry, Kind};

/// Largest read of adjacent live records while compacting.
const COPY_READ: u64 = 8 << 20;

/// A pack over the compaction threshold.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub pack: u64,
    pub size: u64,
    pub dead: u64,
}

/// Sealed packs whose dead fraction reaches `threshold`, most dead first.
/// `extra` adds dead bytes a dry run expects from collection.
pub fn candidates(index: &Index, threshold: f64, extra: &HashMap<u64, u64>) -> Result<Vec<Candidate>> {
    let mut dead: BTreeMap<u64, u64> = extra.iter().map(|(k, v)| (*k, *v)).collect();
    for kv in index.scan(
        Cf::CatalogIdx,
        &[crate::catalog::records::tag::DEAD],
        Some(&[crate::catalog::records::tag::DEAD + 1]),
        false,
    ) {
        let (k, v) = kv?;
        let pack = be_u64(k.get(1..).unwrap_or_default())?;
        *dead.entry(pack).or_default() += be_u64(&v)?;
    }
    let mut out = Vec::new();
    for (pack, dead) in dead {
        let Some(info) = index.pack(pack)? else { continue };
        if info.state != PackState::Sealed || dead == 0 {
            continue;
        }
        if dead as f64 >= threshold * info.size as f64 {
            out.push(Candidate {
                pack,
                size: info.size,
                dead,
            });
        }
    }
    out.sort_by(|a, b| (b.dead as f64 / b.size as f64).total_cmp(&(a.dead as f64 / a.size as f64)));
    Ok(out)
}

/// Which records of a sealed pack are live now: chunks the index points at
/// (condemned ones too: they may be revived), manifests of stored blobs,
/// and references (decided once their record is read). `collected_by`: a
/// dry run's view after collection, where chunks condemned at or before
/// that time are gone.
pub fn live_entries(
    index: &Index,
    pack: u64,
    entries: Vec<Entry>,
    collected_by: Option<i64>,
) -> Result<(Vec<Entry>, Located)> {
    let mut live = Vec::new();
    let mut left = Vec::new();
    for e in entries {
        let keep = match e.kind {
            Kind::Chunk => index.chunk_rec(&e.id)?.is_some_and(|c| {
                let collected = collected_by.is_some_and(|t| c.refs == 0 && c.condemned_ms <= t);
                c.loc.pack == pack && c.loc.offset == e.offset && !collected
            }),
            Kind::Blob => index.has_blob(&e.id)?,
            Kind::Ref => true,
        };
        match (keep, e.kind) {
            (true, _) => live.push(e),
            (false, Kind::Chunk) => left.push((e.id, e.offset)),
            (false, _) => {}
        }
    }
    Ok((live, left))
}

/// Groups live records into reads of adjacent records, at most
/// [`COPY_READ`] bytes each (a single larger record is read alone).
pub fn read_runs(live: &[Entry]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=live.len() {
        let split = i == live.len() || {
            let (first, prev, next) = (&live[start], &live[i - 1], &live[i]);
            next.offset != prev.offset + prev.record_len() || next.offset + next.record_len() - first.offset > COPY_READ
        };
        if split {
            if start < i {
                runs.push(start..i);
            }
            start = i;
        }
    }
    runs
}
