//! Chunks written to packs but not yet committed.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::hash::Hash;
use crate::index::ChunkLoc;

/// Chunks written to packs but not yet committed: a concurrent put of the
/// same bytes reuses the record instead of writing another copy.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<Hash, ChunkLoc>>);

impl Pending {
    pub fn get(&self, id: &Hash) -> Option<ChunkLoc> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied()
    }
    /// Offers a location; returns the one that won.
    pub fn offer(&self, id: Hash, loc: ChunkLoc) -> ChunkLoc {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(loc)
    }
    /// Whether an uncommitted upload holds a record of this pack.
    pub fn points_into(&self, pack: u64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|l| l.pack == pack)
    }
    pub fn release(&self, owned: &[(Hash, ChunkLoc)]) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (id, loc) in owned {
            if m.get(id) == Some(loc) {
                m.remove(id);
            }
        }
    }
}
