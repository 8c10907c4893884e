//! Blob manifests: what a blob is made of. Pure encode/decode.
//!
//! The encoding starts with a version byte, and versions decode side by
//! side, so old data never needs a migration:
//! - version 1: the blob's bytes are its chunks, in order (their lengths
//!   add up to its size);
//! - version 2, a *recipe manifest* (the optimizer's, `crate::expand`):
//!   the chunks are the blob's expanded space (the recipe's streams, one
//!   after the other; their lengths add up to the streams' total), and the
//!   encoded recipe follows, which recreates the blob's exact bytes from
//!   them (its size is the blob's).

use crate::error::{Error, Result};
use crate::expand::recipe::Recipe;
use crate::hash::{FileDigests, Hash};

const V1: u8 = 1;
const V2: u8 = 2;
const HAS_SHA1: u8 = 1;
const HAS_SHA512: u8 = 2;
const HAS_MD5: u8 = 4;

/// One chunk of a blob, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: Hash,
    pub len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub size: u64,
    pub digests: FileDigests,
    pub created_ms: i64,
    pub chunks: Vec<ChunkRef>,
    /// Recipe manifests: how to make the blob's bytes from its chunks.
    pub recipe: Option<Box<Recipe>>,
}

impl Manifest {
    /// Bytes the chunk list covers: the blob's size, or for a recipe
    /// manifest its expanded space.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.len as u64).sum()
    }

    pub fn encode(&self) -> Vec<u8> {
        let d = &self.digests;
        let mut out = Vec::with_capacity(128 + self.chunks.len() * 36);
        out.push(if self.recipe.is_some() { V2 } else { V1 });
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&d.blake3.0);
        out.extend_from_slice(&d.sha256);
        let flags = (d.sha1.is_some() as u8 * HAS_SHA1)
            | (d.sha512.is_some() as u8 * HAS_SHA512)
            | (d.md5.is_some() as u8 * HAS_MD5);
        out.push(flags);
        if let Some(h) = &d.sha1 {
            out.extend_from_slice(h);
        }
        if let Some(h) = &d.sha512 {
            out.extend_from_slice(h);
        }
        if let Some(h) = &d.md5 {
            out.extend_from_slice(h);
        }
        out.extend_from_slice(&(self.chunks.len() as u32).to_be_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&c.id.0);
            out.extend_from_slice(&c.len.to_be_bytes());
        }
        if let Some(r) = &self.recipe {
            out.extend_from_slice(&r.encode());
        }
        out
    }

    /// Whether an encoded manifest is a recipe manifest (without decoding it).
    pub fn is_recipe(b: &[u8]) -> bool {
        b.first() == Some(&V2)
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        let version = r.take::<1>()?[0];
        if version != V1 && version != V2 {
            return Err(Error::corrupt(format!("manifest version {version} is unknown")));
        }
        let size = u64::from_be_bytes(r.take()?);
        let created_ms = i64::from_be_bytes(r.take()?);
        let blake3 = Hash(r.take()?);
        let sha256 = r.take()?;
        let flags = r.take::<1>()?[0];
        if flags & !(HAS_SHA1 | HAS_SHA512 | HAS_MD5) != 0 {
            // A flag this version does not know would shift every field after it.
            return Err(Error::corrupt(format!(
                "manifest has unknown digest flags {flags:#04x}"
            )));
        }
        let sha1 = if flags & HAS_SHA1 != 0 { Some(r.take()?) } else { None };
        let sha512 = if flags & HAS_SHA512 != 0 { Some(r.take()?) } else { None };
        let md5 = if flags & HAS_MD5 != 0 { Some(r.take()?) } else { None };
        let n = u32::from_be_bytes(r.take()?) as usize;
        let list = n
            .checked_mul(36)
            .filter(|&l| l <= r.0.len())
            .ok_or_else(|| Error::corrupt("manifest chunk list has the wrong length"))?;
        if version == V1 && r.0.len() != list {
            return Err(Error::corrupt("manifest chunk list has the wrong length"));
        }
        let chunks = (0..n)
            .map(|_| {
                Ok(ChunkRef {
                    id: Hash(r.take()?),
                    len: u32::from_be_bytes(r.take()?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let covered = chunks.iter().map(|c| c.len as u64).sum::<u64>();
        let recipe = match version {
            V1 if covered != size => {
                return Err(Error::corrupt("manifest chunk lengths do not add up to its size"));
            }
            V1 => None,
            _ => {
                let recipe = Recipe::decode(r.0)?;
                if recipe.size != size {
                    return Err(Error::corrupt("manifest's recipe makes another size than the blob's"));
                }
                if recipe.streams().total() != covered {
                    return Err(Error::corrupt(
                        "manifest chunk lengths do not add up to its recipe's streams",
                    ));
                }
                Some(Box::new(recipe))
            }
        };
        Ok(Manifest {
            size,
            digests: FileDigests {
                blake3,
                sha256,
                sha1,
                sha512,
                md5,
            },
            created_ms,
            chunks,
            recipe,
        })
    }
}

/// A cursor over bytes that fails cleanly on truncation.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    pub fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.0.len() < N {
            return Err(Error::corrupt("record is truncated"));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("split_at gave N bytes"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trips(lens in proptest::collection::vec(1u32..300_000, 0..50), extra in any::<(bool, bool, bool)>(), created in any::<i64>()) {
            let chunks: Vec<ChunkRef> = lens.iter().enumerate()
                .map(|(i, &len)| ChunkRef { id: Hash::of(&i.to_be_bytes()), len })
                .collect();
            let m = Manifest {
                size: lens.iter().map(|&l| l as u64).sum(),
                digests: FileDigests {
                    blake3: Hash::of(b"b"),
                    sha256: [7; 32],
                    sha1: extra.0.then_some([1; 20]),
                    sha512: extra.1.then_some([2; 64]),
                    md5: extra.2.then_some([3; 16]),
                },
                created_ms: created,
                chunks,
                recipe: None,
            };
            let enc = m.encode();
            prop_assert_eq!(Manifest::decode(&enc).unwrap(), m);
            // Every truncation is an error, never a panic.
            for cut in 0..enc.len() {
                prop_assert!(Manifest::decode(&enc[..cut]).is_err());
            }
        }
    }

    /// Found by the `manifest` fuzz target: an unknown flag bit was
    /// ignored, so a manifest from a later version would be misread.
    #[test]
    fn unknown_digest_flags_are_corrupt() {
        let found = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/regressions/manifest/unknown-flags"
        ))
        .unwrap();
        assert!(matches!(Manifest::decode(&found), Err(Error::Corrupt(_))));
        let mut enc = Manifest {
            size: 0,
            digests: FileDigests {
                blake3: Hash::of(b""),
                sha256: [0; 32],
                sha1: None,
                sha512: None,
                md5: None,
            },
            created_ms: 0,
            chunks: vec![],
            recipe: None,
        }
        .encode();
        assert!(Manifest::decode(&enc).is_ok());
        enc[81] |= 8;
        assert!(matches!(Manifest::decode(&enc), Err(Error::Corrupt(_))));
    }

    #[test]
    fn unknown_version_is_corrupt() {
        assert!(matches!(Manifest::decode(&[9, 0, 0]), Err(Error::Corrupt(_))));
    }
}
