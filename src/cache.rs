//! A byte-bounded LRU map of immutable values: the recreated blobs that
//! `engine::recreate` keeps so hot optimized blobs read at raw speed.
//! Values are content-addressed (a key never changes its value), so an
//! entry is never stale; the only decision is what to forget.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use bytes::Bytes;

pub struct LruBytes<K> {
    max_bytes: usize,
    inner: Mutex<Inner<K>>,
}

struct Inner<K> {
    /// Key -> value and the tick it was last used at.
    map: HashMap<K, (Bytes, u64)>,
    tick: u64,
    bytes: usize,
}

impl<K: Hash + Eq + Clone> LruBytes<K> {
    pub fn new(max_bytes: usize) -> Self {
        LruBytes {
            max_bytes,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
                bytes: 0,
            }),
        }
    }

    /// Whether a value of `len` bytes may be kept (at most an eighth of the
    /// cache, so one blob never flushes the rest).
    pub fn admits(&self, len: u64) -> bool {
        len <= (self.max_bytes / 8) as u64
    }

    pub fn get(&self, k: &K) -> Option<Bytes> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.tick += 1;
        let t = g.tick;
        g.map.get_mut(k).map(|e| {
            e.1 = t;
            e.0.clone()
        })
    }

    pub fn insert(&self, k: K, v: Bytes) {
        if !self.admits(v.len() as u64) {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.tick += 1;
        let t = g.tick;
        g.bytes += v.len();
        if let Some((old, _)) = g.map.insert(k, (v, t)) {
            g.bytes -= old.len();
        }
        // Few entries (each at least an eighth of a small cache would be
        // rare): a scan for the oldest is cheap enough.
        while g.bytes > self.max_bytes {
            let Some(oldest) = g.map.iter().min_by_key(|(_, e)| e.1).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some((v, _)) = g.map.remove(&oldest) {
                g.bytes -= v.len();
            }
        }
    }

    /// Bytes and entries held now.
    pub fn usage(&self) -> (usize, usize) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.bytes, g.map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_least_recently_used_within_its_bound() {
        let c = LruBytes::new(800);
        let v = |n: usize| Bytes::from(vec![0u8; n]);
        c.insert(1, v(100));
        c.insert(2, v(100));
        assert!(c.get(&1).is_some());
        for k in 3..10 {
            c.insert(k, v(100));
        }
        assert!(c.usage().0 <= 800);
        assert!(c.get(&1).is_some(), "1 was used recently");
        assert!(c.get(&2).is_none(), "2 was the oldest");
        c.insert(99, v(101));
        assert!(c.get(&99).is_none(), "over an eighth is not kept");
    }
}
