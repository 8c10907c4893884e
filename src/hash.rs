//! Content addresses (BLAKE3) and the whole-file digests computed on ingest.

use std::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// A BLAKE3 hash: the address of a chunk or of a whole blob.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(data: &[u8]) -> Self {
        Hash(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(Error::invalid(format!(
                "blake3 must be 64 hex characters, got {} characters",
                s.len()
            )));
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::invalid(format!("blake3 {s:?} is not hex")))?;
        Ok(Hash(out))
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Hash(b.try_into().ok()?))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

/// Which extra digests to compute besides BLAKE3 and SHA-256.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtraDigests {
    pub sha1: bool,
    pub sha512: bool,
    pub md5: bool,
}

impl ExtraDigests {
    pub const ALL: ExtraDigests = ExtraDigests {
        sha1: true,
        sha512: true,
        md5: true,
    };

    /// One bit each: sha1 1, sha512 2, md5 4.
    pub fn bits(self) -> u8 {
        (self.sha1 as u8) | ((self.sha512 as u8) << 1) | ((self.md5 as u8) << 2)
    }

    pub fn from_bits(b: u8) -> Self {
        ExtraDigests {
            sha1: b & 1 != 0,
            sha512: b & 2 != 0,
            md5: b & 4 != 0,
        }
    }

    pub fn or(self, o: ExtraDigests) -> Self {
        Self::from_bits(self.bits() | o.bits())
    }
}

/// Whole-file digests of a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigests {
    pub blake3: Hash,
    pub sha256: [u8; 32],
    pub sha1: Option<[u8; 20]>,
    pub sha512: Option<[u8; 64]>,
    pub md5: Option<[u8; 16]>,
}

impl FileDigests {
    /// These digests with only the extras in `keep` (a namespace sees the
    /// extras it asked for, not those another asked for the same bytes).
    pub fn only(&self, keep: ExtraDigests) -> FileDigests {
        FileDigests {
            sha1: self.sha1.filter(|_| keep.sha1),
            sha512: self.sha512.filter(|_| keep.sha512),
            md5: self.md5.filter(|_| keep.md5),
            ..self.clone()
        }
    }
}

/// Digests as computed: those a [`FileHasher`] was not asked for are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Computed {
    pub blake3: Option<Hash>,
    pub sha256: Option<[u8; 32]>,
    pub sha1: Option<[u8; 20]>,
    pub sha512: Option<[u8; 64]>,
    pub md5: Option<[u8; 16]>,
}

impl Computed {
    /// The full set, if BLAKE3 and SHA-256 were computed.
    pub fn complete(self) -> Option<FileDigests> {
        Some(FileDigests {
            blake3: self.blake3?,
            sha256: self.sha256?,
            sha1: self.sha1,
            sha512: self.sha512,
            md5: self.md5,
        })
    }
}

/// Computes whole-file digests in one pass over the bytes.
pub struct FileHasher {
    blake3: Option<blake3::Hasher>,
    sha256: Option<Sha256>,
    sha1: Option<Sha1>,
    sha512: Option<Sha512>,
    md5: Option<Md5>,
}

impl FileHasher {
    /// BLAKE3, SHA-256 and the requested extras.
    pub fn new(extra: ExtraDigests) -> Self {
        Self::only(true, true, extra)
    }

    /// Just the named digests (to verify a declared digest, say).
    pub fn only(blake3: bool, sha256: bool, extra: ExtraDigests) -> Self {
        FileHasher {
            blake3: blake3.then(blake3::Hasher::new),
            sha256: sha256.then(Sha256::new),
            sha1: extra.sha1.then(Sha1::new),
            sha512: extra.sha512.then(Sha512::new),
            md5: extra.md5.then(Md5::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.blake3 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
    }

    pub fn finish(self) -> Computed {
        Computed {
            blake3: self.blake3.map(|h| Hash(*h.finalize().as_bytes())),
            sha256: self.sha256.map(|h| h.finalize().into()),
            sha1: self.sha1.map(|h| h.finalize().into()),
            sha512: self.sha512.map(|h| h.finalize().into()),
            md5: self.md5.map(|h| h.finalize().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let mut h = FileHasher::new(ExtraDigests {
            sha1: true,
            sha512: true,
            md5: true,
        });
        h.update(b"a");
        h.update(b"bc");
        let d = h.finish().complete().unwrap();
        assert_eq!(d.blake3, Hash::of(b"abc"));
        assert_eq!(
            hex::encode(d.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex::encode(d.sha1.unwrap()), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex::encode(d.md5.unwrap()), "900150983cd24fb0d6963f7d28e17f72");
        assert!(hex::encode(d.sha512.unwrap()).starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn only_computes_what_is_asked() {
        let mut h = FileHasher::only(false, true, ExtraDigests::default());
        h.update(b"abc");
        let c = h.finish();
        assert!(c.blake3.is_none() && c.sha1.is_none());
        assert_eq!(
            hex::encode(c.sha256.unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(c.complete().is_none());
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::of(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash::from_hex("abc").is_err());
        assert!(Hash::from_hex(&"zz".repeat(32)).is_err());
    }
}
