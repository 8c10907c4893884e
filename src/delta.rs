//! Cross-version delta, pure: which stored chunk a new chunk resembles, and
//! the delta that makes the new chunk from it. No I/O.
//!
//! [`Sketch::of`] gives a chunk three *super-features* (Shilane et al.,
//! "WAN-optimized replication of backup datasets using stream-informed delta
//! compression"): a gear hash rolls over the chunk; at the positions it
//! samples, twelve fixed linear transforms of it are taken, and each
//! *feature* is the largest value one transform reached; the features are
//! hashed four by four into the super-features. Two chunks that share a
//! super-feature very likely share most of their bytes, so a new chunk's
//! base is found by looking its super-features up among stored ones.
//! Sketches are stored, so the function (tables, sampling, mixing) is part
//! of the format: a golden test pins it.
//!
//! [`encode`] is zstd with the base as a raw prefix (never parsed as a
//! dictionary, whatever its first bytes); [`decode`] needs the same base and
//! the target's length, and never makes more than that length. The caller
//! verifies what it decodes against the target's BLAKE3: a wrong base, like
//! a damaged delta, only ever fails that check.

use zstd::zstd_safe::{self, CParameter, DCtx};

use crate::error::{Error, Result};

/// Chunks shorter than this are not sketched: too few samples to resemble
/// anything reliably, and too small for a delta to pay for its record.
pub const MIN_SKETCHED: usize = 512;

/// A rolled gear hash is sampled where these low bits are zero (1 in 8).
const SAMPLE_MASK: u64 = 0x7;
const FEATURES: usize = 12;
const PER_SUPER: usize = 4;
pub const SUPER_FEATURES: usize = FEATURES / PER_SUPER;

/// SplitMix64: the fixed tables below come from it.
const fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const fn table<const N: usize>(seed: u64, odd: bool) -> [u64; N] {
    let mut t = [0u64; N];
    let mut i = 0;
    while i < N {
        t[i] = splitmix(seed.wrapping_add(i as u64)) | odd as u64;
        i += 1;
    }
    t
}

const GEAR: [u64; 256] = table(0x5354_4f57_4147_4531, false);
const MUL: [u64; FEATURES] = table(0x5354_4f57_4147_4532, true);
const ADD: [u64; FEATURES] = table(0x5354_4f57_4147_4533, false);

/// A chunk's super-features. Equal super-features mean likely-similar chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sketch(pub [u64; SUPER_FEATURES]);

impl Sketch {
    /// The sketch of `chunk`, or `None` if it is too short to have one.
    pub fn of(chunk: &[u8]) -> Option<Sketch> {
        if chunk.len() < MIN_SKETCHED {
            return None;
        }
        let mut features = [0u64; FEATURES];
        let mut h = 0u64;
        let mut sampled = false;
        for &b in chunk {
            h = (h << 1).wrapping_add(GEAR[b as usize]);
            if h & SAMPLE_MASK == 0 {
                sampled = true;
                for (f, (m, a)) in features.iter_mut().zip(MUL.iter().zip(&ADD)) {
                    *f = (*f).max(h.wrapping_mul(*m).wrapping_add(*a));
                }
            }
        }
        if !sampled {
            return None;
        }
        let mut sf = [0u64; SUPER_FEATURES];
        for (s, group) in sf.iter_mut().zip(features.chunks_exact(PER_SUPER)) {
            *s = group.iter().fold(0x5346, |acc, &f| splitmix(acc ^ f));
        }
        Some(Sketch(sf))
    }

    /// How many super-features two sketches share (0 to [`SUPER_FEATURES`]).
    pub fn resemblance(&self, other: &Sketch) -> usize {
        self.0.iter().zip(&other.0).filter(|(a, b)| a == b).count()
    }
}

/// Of candidate bases (each with the number of super-features it shares with
/// the new chunk, and its length), the one to delta against: the most shared
/// super-features, then the length nearest the new chunk's, then the first
/// offered. `None` if no candidate shares any.
pub fn choose_base<T: Copy>(target_len: usize, candidates: impl IntoIterator<Item = (T, usize, usize)>) -> Option<T> {
    let mut best: Option<(T, usize, usize)> = None;
    for (id, shared, len) in candidates {
        if shared == 0 {
            continue;
        }
        let gap = len.abs_diff(target_len);
        if best.is_none_or(|(_, s, g)| shared > s || (shared == s && gap < g)) {
            best = Some((id, shared, gap));
        }
    }
    best.map(|(id, _, _)| id)
}

/// The smallest window log that covers the base and the target together.
fn window_log(total: usize) -> u32 {
    let need = usize::BITS - total.max(1).leading_zeros();
    // zstd accepts window logs from 10; 27 is what its decoder allows by default.
    need.clamp(10, 27)
}

/// `target` as a zstd frame compressed with `base` as its raw prefix.
pub fn encode(base: &[u8], target: &[u8], level: i32) -> Result<Vec<u8>> {
    let fail =
        |what: &str, code: usize| Error::Internal(format!("zstd delta: {what}: {}", zstd_safe::get_error_name(code)));
    let mut cctx = zstd_safe::CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(|c| fail("level", c))?;
    cctx.set_parameter(CParameter::WindowLog(window_log(base.len() + target.len())))
        .map_err(|c| fail("window", c))?;
    cctx.ref_prefix(base).map_err(|c| fail("prefix", c))?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
    cctx.compress2(&mut out, target).map_err(|c| fail("compress", c))?;
    Ok(out)
}

/// What [`encode`] made from `base`, at most `len` bytes and exactly `len`,
/// or `Corrupt`.
pub fn decode(base: &[u8], delta: &[u8], len: usize) -> Result<Vec<u8>> {
    let corrupt = |code: usize| {
        Error::Corrupt(format!(
            "zstd delta does not decode: {}",
            zstd_safe::get_error_name(code)
        ))
    };
    let mut dctx = DCtx::create();
    dctx.ref_prefix(base).map_err(corrupt)?;
    let mut out = Vec::with_capacity(len);
    dctx.decompress(&mut out, delta).map_err(corrupt)?;
    if out.len() != len {
        return Err(Error::Corrupt(format!(
            "zstd delta makes {} bytes where {len} were expected",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(seed: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        StdRng::seed_from_u64(seed).fill(&mut v[..]);
        v
    }

    /// `base` with `edits` small random changes (replace, insert, delete).
    fn edited(base: &[u8], edits: usize, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut v = base.to_vec();
        for _ in 0..edits {
            let at = rng.random_range(0..v.len());
            match rng.random_range(0..3) {
                0 => v[at] = rng.random(),
                1 => v.insert(at, rng.random()),
                _ => {
                    v.remove(at);
                }
            }
        }
        v
    }

    #[test]
    fn the_sketch_function_is_pinned() {
        // Sketches are stored: a change here is a format change. The input
        // comes from BLAKE3's output, which no crate upgrade changes.
        let mut input = vec![0u8; 65_536];
        blake3::Hasher::new().update(b"sketch").finalize_xof().fill(&mut input);
        let s = Sketch::of(&input).unwrap();
        assert_eq!(
            s.0,
            [
                9_709_500_843_777_115_072,
                1_329_809_537_748_120_292,
                13_771_235_658_061_557_985
            ],
            "update only with a migration of stored sketches"
        );
    }

    #[test]
    fn a_lightly_edited_chunk_shares_a_super_feature_and_an_unrelated_one_does_not() {
        let mut similar = 0;
        let mut unrelated = 0;
        for seed in 0..50 {
            let base = random(seed, 65_536);
            let a = Sketch::of(&base).unwrap();
            similar += (a.resemblance(&Sketch::of(&edited(&base, 8, seed + 1000)).unwrap()) > 0) as u32;
            unrelated += (a.resemblance(&Sketch::of(&random(seed + 5000, 65_536)).unwrap()) > 0) as u32;
        }
        assert!(similar >= 45, "{similar} of 50 edited chunks found their base");
        assert_eq!(unrelated, 0, "unrelated chunks looked alike");
    }

    #[test]
    fn short_chunks_have_no_sketch() {
        assert_eq!(Sketch::of(&random(1, MIN_SKETCHED - 1)), None);
        assert!(Sketch::of(&random(1, MIN_SKETCHED)).is_some());
    }

    #[test]
    fn the_base_shares_the_most_then_is_nearest_in_length() {
        assert_eq!(choose_base(100, [("a", 1, 100), ("b", 2, 10), ("c", 2, 90)]), Some("c"));
        assert_eq!(choose_base(100, [("a", 0, 100)]), None);
        assert_eq!(choose_base(100, [("a", 1, 90), ("b", 1, 110)]), Some("a"));
    }

    #[test]
    fn a_delta_of_a_small_change_is_small() {
        let base = random(3, 65_536);
        let target = edited(&base, 10, 4);
        let d = encode(&base, &target, 19).unwrap();
        assert!(d.len() < 1_000, "delta of 10 edits is {} bytes", d.len());
        assert_eq!(decode(&base, &d, target.len()).unwrap(), target);
    }

    #[test]
    fn a_base_that_looks_like_a_dictionary_is_still_raw() {
        let mut base = 0xEC30_A437u32.to_le_bytes().to_vec();
        base.extend(random(5, 4096));
        let target = edited(&base, 3, 6);
        let d = encode(&base, &target, 3).unwrap();
        assert_eq!(decode(&base, &d, target.len()).unwrap(), target);
    }

    #[test]
    fn the_wrong_base_or_length_or_a_damaged_delta_never_passes_as_the_target() {
        let base = random(8, 20_000);
        let target = edited(&base, 5, 9);
        let d = encode(&base, &target, 3).unwrap();
        assert!(matches!(decode(&base, &d, target.len() - 1), Err(Error::Corrupt(_))));
        assert!(matches!(decode(&base, &d, target.len() + 1), Err(Error::Corrupt(_))));
        assert!(matches!(
            decode(&base, &d[..d.len() / 2], target.len()),
            Err(Error::Corrupt(_))
        ));
        // Another base decodes to other bytes (or fails): never the target.
        let other = random(10, 20_000);
        assert_ne!(decode(&other, &d, target.len()).ok(), Some(target.clone()));
        let mut bad = d.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x40;
        assert_ne!(decode(&base, &bad, target.len()).ok(), Some(target));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn any_target_decodes_from_its_delta_on_any_base(
            base in prop::collection::vec(any::<u8>(), 0..5000),
            target in prop::collection::vec(any::<u8>(), 0..5000),
            level in 1i32..8,
        ) {
            let d = encode(&base, &target, level).unwrap();
            prop_assert_eq!(decode(&base, &d, target.len()).unwrap(), target);
        }

        #[test]
        fn decoding_any_bytes_never_panics(
            base in prop::collection::vec(any::<u8>(), 0..2000),
            delta in prop::collection::vec(any::<u8>(), 0..2000),
            len in 0usize..4000,
        ) {
            if let Ok(out) = decode(&base, &delta, len) {
                prop_assert_eq!(out.len(), len);
            }
        }
    }
}
