//! The store's figures, defined once. `admin stats`, `/metrics`, the
//! capacity report and retention plans all use these terms (README,
//! "Figures", says the same for operators):
//!
//! - **logical**: what the registries store, before any dedup: the size of
//!   every catalog file, active or in the trash, each file counted, plus
//!   each blob a namespace uploaded and no file of it uses yet (held by its
//!   upload lease), once per namespace;
//! - **unique**: the size of every distinct blob stored (each blob once,
//!   whoever holds it);
//! - **physical**: the stored (compressed) bytes of the distinct chunks
//!   those blobs use, each chunk once; chunks no blob uses any more
//!   (condemned) are not physical, they are garbage;
//! - **dedup ratio** = logical / unique: how many times a stored blob is
//!   used; **compression ratio** = unique / physical: what zstd and chunks
//!   shared between distinct blobs save; their product is logical /
//!   physical, and **optimization** = 1 − physical / logical.
//!
//! Every ratio of an empty store is 1 (optimization 0). Pure: numbers in,
//! numbers out; `crate::space` reads them from the index.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub physical_bytes: u64,
}

impl Figures {
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.unique_bytes)
    }

    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_bytes, self.physical_bytes)
    }

    /// 1 − physical / logical, in percent (0 when empty).
    pub fn optimization_percent(&self) -> f64 {
        match self.logical_bytes {
            0 => 0.0,
            l => 100.0 * (1.0 - self.physical_bytes as f64 / l as f64),
        }
    }
}

/// `a / b`, 1 when `b` is 0.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_multiply_to_logical_over_physical() {
        let f = Figures {
            logical_bytes: 300,
            unique_bytes: 150,
            physical_bytes: 50,
        };
        assert_eq!(f.dedup_ratio(), 2.0);
        assert_eq!(f.compression_ratio(), 3.0);
        assert!((f.optimization_percent() - 100.0 * (1.0 - 50.0 / 300.0)).abs() < 1e-9);
        let empty = Figures::default();
        assert_eq!((empty.dedup_ratio(), empty.compression_ratio()), (1.0, 1.0));
        assert_eq!(empty.optimization_percent(), 0.0);
    }
}
