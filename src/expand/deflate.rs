//! Byte-exact recreation of one raw deflate stream from its plain content.
//!
//! [`analyze`] inflates a stream and finds how to make it again: first a
//! search over stock zlib's parameters (the previous winner first, then the
//! usual levels), then Chromium zlib's (Node.js's, so npm's), each candidate fed the plain text piece by piece and dropped
//! at the first byte that differs from the original; then preflate-rs, which
//! models any deflate encoder and records the decisions its model does not
//! predict as correction data. A stream neither can make within the budget is
//! [`Analysis::Opaque`]: it stays as its compressed bytes. [`recreate`] makes
//! the stream again; the caller verifies it (every recreated segment has a
//! BLAKE3 in the recipe).

use std::time::Instant;

use super::Budget;
use super::zlib::{self, Deflater, Flavor, Params};

/// How a deflate stream is made from its plain text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Stock or Chromium zlib (`Params::flavor`) with these parameters
    /// makes exactly this stream.
    Zlib(Params),
    /// preflate-rs recreates it from the plain text and these corrections.
    Preflate(Vec<u8>),
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Zlib(_) => "zlib",
            Method::Preflate(_) => "preflate",
        }
    }
}

#[derive(Debug)]
pub enum Analysis {
    /// The stream is `consumed` bytes long and is `method` applied to `plain`.
    Exact {
        plain: Vec<u8>,
        consumed: usize,
        method: Method,
    },
    /// A whole deflate stream of `consumed` bytes that neither method makes
    /// (or that is over budget): keep its bytes.
    Opaque { consumed: usize },
}

/// The zlib parameter sets tried, most likely first. Levels 1..9 at the
/// default window and memory level cover zlib, Python, Java, cargo and most
/// zip tools; memLevel 9 is what `zip -9` and some gzip builds use.
fn candidates(hint: Option<Params>) -> impl Iterator<Item = Params> {
    let usual = [6u8, 9, 1, 5, 4, 3, 2, 7, 8].map(|level| Params {
        level,
        ..Params::DEFAULT
    });
    let mem9 = [9u8, 6, 1].map(|level| Params {
        level,
        mem_level: 9,
        ..Params::DEFAULT
    });
    let other = [
        Params {
            strategy: 1,
            ..Params::DEFAULT
        },
        Params {
            strategy: 2,
            ..Params::DEFAULT
        },
        Params {
            strategy: 3,
            ..Params::DEFAULT
        },
        Params {
            level: 9,
            strategy: 1,
            ..Params::DEFAULT
        },
    ];
    // Chromium's zlib (Node.js, so npm tarballs): level 9 is what npm packs
    // with; a wrong flavor or level is dropped within the first piece.
    let chromium = [9u8, 6, 1, 5, 4, 3, 2, 7, 8].map(|level| Params {
        flavor: Flavor::Chromium,
        level,
        ..Params::DEFAULT
    });
    // After the hint, the hint at the other usual memory level: a stream
    // whose compressor differs from the hint only in how long its blocks
    // are (GNU gzip's are zlib's at memLevel 9) shows it there.
    let sibling = hint.map(|h| Params {
        mem_level: if h.mem_level == 9 { 8 } else { 9 },
        ..h
    });
    hint.into_iter().chain(sibling).chain(
        usual
            .into_iter()
            .chain(mem9)
            .chain(other)
            .chain(chromium)
            .filter(move |p| Some(*p) != hint && Some(*p) != sibling),
    )
}

/// Output bytes a candidate must make exactly before it counts as the
/// stream's own compressor with another block length or memory level:
/// then only candidates of its flavor and level are tried.
const NEAR: usize = 2048;

/// What one candidate made of the stream.
enum Tried {
    Makes,
    /// The first `n` output bytes were the stream's, then they differed.
    Differs(usize),
}

/// Feeds `plain` to zlib with `p` and says whether the output is exactly
/// `original`, or how much of it it made. Stops at the first differing
/// byte.
fn zlib_makes(p: Params, plain: &[u8], original: &[u8]) -> Tried {
    let Some(mut d) = Deflater::new(p) else {
        return Tried::Differs(0);
    };
    let mut out = Vec::with_capacity(original.len() + 64);
    let mut checked = 0usize;
    let step = 16 * 1024;
    let mut pieces = plain.chunks(step).peekable();
    if plain.is_empty() {
        d.push(&[], true, &mut out);
    }
    while let Some(piece) = pieces.next() {
        d.push(piece, pieces.peek().is_none(), &mut out);
        let end = out.len().min(original.len());
        if let Some(i) = out[checked..end]
            .iter()
            .zip(&original[checked..end])
            .position(|(a, b)| a != b)
        {
            return Tried::Differs(checked + i);
        }
        if out.len() > original.len() {
            return Tried::Differs(original.len());
        }
        checked = out.len();
    }
    if out == original {
        Tried::Makes
    } else {
        Tried::Differs(checked)
    }
}

/// Finds how `compressed` (a raw deflate stream at the start of the slice)
/// is made. None if the bytes are not a deflate stream at all or expand past
/// the budget.
pub fn analyze(compressed: &[u8], hint: Option<Params>, budget: &Budget) -> Option<Analysis> {
    let started = Instant::now();
    let limit = budget
        .max_plain
        .min(budget.max_ratio.saturating_mul(compressed.len().max(1)));
    let inflated = zlib::inflate(compressed, limit)?;
    let original = &compressed[..inflated.consumed];
    // A candidate that made the first NEAR bytes and then differed: the
    // stream's compressor is a variant of it, so other levels and flavors
    // are not tried (the stream goes to preflate if no variant makes it).
    let mut near: Option<Params> = None;
    for p in candidates(hint) {
        if near.is_some_and(|q| (q.flavor, q.level) != (p.flavor, p.level)) {
            continue;
        }
        match zlib_makes(p, &inflated.plain, original) {
            Tried::Makes => {
                return Some(Analysis::Exact {
                    plain: inflated.plain,
                    consumed: inflated.consumed,
                    method: Method::Zlib(p),
                });
            }
            Tried::Differs(n) if n >= NEAR && near.is_none() => near = Some(p),
            Tried::Differs(_) => {}
        }
        if started.elapsed() > budget.time {
            return Some(Analysis::Opaque {
                consumed: inflated.consumed,
            });
        }
    }
    match preflate(original, budget) {
        Some((plain, corrections))
            if plain == inflated.plain && corrections.len() <= budget.max_corrections(original.len()) =>
        {
            Some(Analysis::Exact {
                plain,
                consumed: inflated.consumed,
                method: Method::Preflate(corrections),
            })
        }
        _ => Some(Analysis::Opaque {
            consumed: inflated.consumed,
        }),
    }
}

fn preflate(original: &[u8], budget: &Budget) -> Option<(Vec<u8>, Vec<u8>)> {
    let config = preflate_rs::PreflateConfig {
        max_chain_length: 4096,
        plain_text_limit: budget.max_plain,
        verify_compression: true,
    };
    let (result, plain) = preflate_rs::preflate_whole_deflate_stream(original, &config).ok()?;
    if result.compressed_size != original.len() {
        return None;
    }
    Some((plain.text().to_vec(), result.corrections))
}

/// Makes the deflate stream again from its plain text.
pub fn recreate(method: &Method, plain: &[u8]) -> Option<Vec<u8>> {
    match method {
        Method::Zlib(p) => p.is_valid().then(|| zlib::deflate(*p, plain)),
        Method::Preflate(c) => preflate_rs::recreate_whole_deflate_stream(plain, c).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut x = 7u64;
        while v.len() < n {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let w = ["fn ", "let ", "x = ", "1;\n", "return ", "{ ", "} ", "self."][(x >> 61) as usize];
            v.extend_from_slice(w.as_bytes());
        }
        v
    }

    #[test]
    fn every_usual_zlib_parameter_set_is_found_and_recreates_exactly() {
        let plain = text(300_000);
        for p in candidates(None) {
            let z = zlib::deflate(p, &plain);
            let Some(Analysis::Exact {
                plain: back,
                consumed,
                method,
            }) = analyze(&z, None, &Budget::default())
            else {
                panic!("{p:?} not recreated")
            };
            assert_eq!(back, plain);
            assert_eq!(consumed, z.len());
            assert_eq!(recreate(&method, &back).unwrap(), z, "{p:?} via {method:?}");
        }
    }

    #[test]
    fn a_foreign_stream_goes_through_preflate_and_recreates_exactly() {
        // A stream zlib does not make: level 6 with a smaller memLevel
        // (not a candidate), then a stored block tail.
        let plain = text(100_000);
        let p = Params {
            level: 6,
            mem_level: 3,
            ..Params::DEFAULT
        };
        let z = zlib::deflate(p, &plain);
        let Some(Analysis::Exact {
            method, plain: back, ..
        }) = analyze(&z, None, &Budget::default())
        else {
            panic!("not recreated")
        };
        assert!(matches!(method, Method::Preflate(_)), "{method:?}");
        assert_eq!(recreate(&method, &back).unwrap(), z);
    }

    #[test]
    fn trailing_bytes_are_not_part_of_the_stream() {
        let plain = text(5_000);
        let mut z = zlib::deflate(Params::DEFAULT, &plain);
        let n = z.len();
        z.extend_from_slice(b"TRAILER");
        let Some(Analysis::Exact { consumed, .. }) = analyze(&z, None, &Budget::default()) else {
            panic!()
        };
        assert_eq!(consumed, n);
    }

    #[test]
    fn a_bomb_is_refused_by_the_ratio_budget() {
        let z = zlib::deflate(Params::DEFAULT, &vec![0u8; 50 << 20]);
        assert!(analyze(&z, None, &Budget::default()).is_none());
    }

    #[test]
    fn an_npm_tarball_is_made_again_by_chromium_zlib() {
        // express 4.19.2 as the npm registry serves it: npm packed it with
        // Node's zlib, which stock zlib never matches.
        let tgz = include_bytes!("../../tests/data/express-4.19.2.tgz");
        let deflate = &tgz[10..tgz.len() - 8];
        let Some(Analysis::Exact {
            plain,
            consumed,
            method: Method::Zlib(p),
        }) = analyze(deflate, None, &Budget::default())
        else {
            panic!("not recreated by a zlib")
        };
        assert_eq!(consumed, deflate.len());
        assert_eq!(
            p,
            Params {
                flavor: Flavor::Chromium,
                level: 9,
                ..Params::DEFAULT
            }
        );
        assert_eq!(recreate(&Method::Zlib(p), &plain).unwrap(), deflate);
    }
}
