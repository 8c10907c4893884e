//! Startup recovery of staged packs: which bytes of a staged file may be cut.
//!
//! A crash can leave a record cut short (or stray bytes) after the last
//! record of the open pack: a torn tail, never acknowledged, safe to cut.
//! Anything else that fails its checks is damage: a torn tail is only what
//! no index entry points into and no valid record follows. When the index
//! points at or past the first bad byte, or a valid record comes after it,
//! the file is damaged and is never cut (see [`OpenPack::reopen`]); the
//! engine quarantines it instead.

use std::collections::HashMap;
use std::path::Path;

use crate::error::Result;
use crate::index::{Cf, ChunkLoc, Index};
use crate::pack::OpenPack;

/// Answers "may bytes of pack `id` from `end` on be cut?" from the index:
/// only if no chunk entry points into them. The chunk entries are read
/// once, and only when some staged file has bytes after its records.
pub struct CutGuard<'a> {
    index: Option<&'a Index>,
    /// Per pack, the end of the furthest record the index points at.
    ends: Option<HashMap<u64, u64>>,
}

impl<'a> CutGuard<'a> {
    /// With no index (none yet), nothing was acknowledged into a pack.
    pub fn new(index: Option<&'a Index>) -> Self {
        CutGuard { index, ends: None }
    }

    pub fn may_cut(&mut self, pack: u64, end: u64) -> Result<bool> {
        let Some(index) = self.index else { return Ok(true) };
        if self.ends.is_none() {
            self.ends = Some(referenced_ends(index)?);
        }
        let ends = self.ends.as_ref().expect("set above");
        Ok(ends.get(&pack).is_none_or(|&e| e <= end))
    }
}

/// Per pack, the end of the furthest record a chunk entry points at. One
/// pass over the chunk entries; memory is one entry per pack.
pub fn referenced_ends(index: &Index) -> Result<HashMap<u64, u64>> {
    let started = std::time::Instant::now();
    let mut ends: HashMap<u64, u64> = HashMap::new();
    let mut chunks = 0u64;
    for kv in index.scan(Cf::Chunks, &[], None, false) {
        let (_, v) = kv?;
        let loc = ChunkLoc::decode(&v)?;
        let end = loc.offset + loc.record_len();
        let e = ends.entry(loc.pack).or_default();
        *e = (*e).max(end);
        chunks += 1;
    }
    tracing::info!(
        chunks,
        took_ms = started.elapsed().as_millis() as u64,
        "read chunk locations to check a staged pack's tail"
    );
    Ok(ends)
}

/// Reopens a staged pack, cutting a torn tail only if `guard` allows it.
pub fn reopen(path: &Path, guard: &mut CutGuard<'_>) -> Result<OpenPack> {
    OpenPack::reopen(path, &mut |id, end| guard.may_cut(id, end))
}
