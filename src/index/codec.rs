//! Value and key encodings of the index. Every value starts with a version byte.

use crate::error::{Error, Result};
use crate::hash::{ExtraDigests, Hash};
use crate::manifest::Reader;
use crate::pack::format::{Codec, DeltaHeader};

const V1: u8 = 1;
const V2: u8 = 2;
const V3: u8 = 3;

fn version(r: &mut Reader<'_>, what: &str) -> Result<()> {
    match r.take::<1>()?[0] {
        V1 => Ok(()),
        v => Err(Error::corrupt(format!("{what} encoding version {v} is unknown"))),
    }
}

/// Where a chunk's record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLoc {
    pub pack: u64,
    /// Offset of the record header in the pack.
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
    /// The base and depth of a delta chunk (`codec` is `Delta`), as its
    /// record says.
    pub delta: Option<DeltaHeader>,
}

impl ChunkLoc {
    /// Bytes of the whole record (header + stored data).
    pub fn record_len(&self) -> u64 {
        crate::pack::format::RECORD_HEADER_LEN as u64 + self.stored_len as u64
    }

    /// Version 1 (no references), or for a delta an entry of version 3
    /// with none: the base follows the reference fields.
    pub fn encode(&self) -> Vec<u8> {
        if self.delta.is_some() {
            return ChunkRec {
                loc: *self,
                refs: 0,
                condemned_ms: 0,
            }
            .encode();
        }
        let mut v = Vec::with_capacity(26);
        v.push(V1);
        v.extend_from_slice(&self.pack.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.stored_len.to_be_bytes());
        v.extend_from_slice(&self.raw_len.to_be_bytes());
        v.push(self.codec as u8);
        v
    }

    /// Reads the location in a chunk entry of any version: at the start,
    /// and for a delta (version 3) its base after the reference fields.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        let version = r.take::<1>()?[0];
        if !matches!(version, V1 | V2 | V3) {
            return Err(Error::corrupt(format!(
                "chunk entry encoding version {version} is unknown"
            )));
        }
        let mut loc = ChunkLoc {
            pack: u64::from_be_bytes(r.take()?),
            offset: u64::from_be_bytes(r.take()?),
            stored_len: u32::from_be_bytes(r.take()?),
            raw_len: u32::from_be_bytes(r.take()?),
            codec: Codec::from_u8(r.take::<1>()?[0])?,
            delta: None,
        };
        match (version, loc.codec) {
            (V3, Codec::Delta) => {
                let mut r = Reader(b.get(42..).ok_or_else(|| Error::corrupt("chunk entry is truncated"))?);
                let base = Hash(r.take()?);
                let depth = r.take::<1>()?[0];
                loc.delta = Some(DeltaHeader { base, depth });
            }
            (V3, _) | (_, Codec::Delta) => {
                return Err(Error::corrupt("chunk entry's version and codec disagree"));
            }
            _ => {}
        }
        Ok(loc)
    }
}

/// A chunk's index entry: where it is, how many blob manifests use it
/// (once per occurrence), and since when nothing does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRec {
    pub loc: ChunkLoc,
    pub refs: u64,
    /// When `refs` fell to zero (the chunk is condemned); 0 while used.
    pub condemned_ms: i64,
}

impl ChunkRec {
    /// Version 2; a delta's is version 3, with its base and depth last.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = ChunkLoc {
            delta: None,
            ..self.loc
        }
        .encode();
        v[0] = V2;
        v.extend_from_slice(&self.refs.to_be_bytes());
        v.extend_from_slice(&self.condemned_ms.to_be_bytes());
        if let Some(d) = self.loc.delta {
            v[0] = V3;
            v.extend_from_slice(&d.base.0);
            v.push(d.depth);
        }
        v
    }

    /// A version-1 entry (before reference counts) decodes with no references;
    /// `catalog::migrate` counts them.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let loc = ChunkLoc::decode(b)?;
        if b[0] == V1 {
            return Ok(ChunkRec {
                loc,
                refs: 0,
                condemned_ms: 0,
            });
        }
        let mut r = Reader(b.get(26..).ok_or_else(|| Error::corrupt("chunk entry is truncated"))?);
        Ok(ChunkRec {
            loc,
            refs: u64::from_be_bytes(r.take()?),
            condemned_ms: i64::from_be_bytes(r.take()?),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackState {
    /// Being written in the staging folder; not in the pack store yet.
    Open = 1,
    /// Footer written and uploaded to the pack store.
    Sealed = 2,
    /// Compacted: its live records were copied elsewhere and the index no
    /// longer points into it; deleted from the store after a delay.
    Retired = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackInfo {
    pub state: PackState,
    pub size: u64,
    pub records: u32,
    pub created_ms: i64,
}

impl PackInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![V1, self.state as u8];
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.records.to_be_bytes());
        v.extend_from_slice(&self.created_ms.to_be_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        version(&mut r, "pack info")?;
        let state = match r.take::<1>()?[0] {
            1 => PackState::Open,
            2 => PackState::Sealed,
            3 => PackState::Retired,
            s => return Err(Error::corrupt(format!("unknown pack state {s}"))),
        };
        Ok(PackInfo {
            state,
            size: u64::from_be_bytes(r.take()?),
            records: u32::from_be_bytes(r.take()?),
            created_ms: i64::from_be_bytes(r.take()?),
        })
    }
}

/// A namespace's claim on a blob: it stored the blob (so may read it) and
/// holds it alive while files reference it or its upload lease is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefInfo {
    pub created_ms: i64,
    /// The upload lease: until then the blob is kept even with no file.
    pub lease_until_ms: i64,
    /// Catalog files (active or in the trash) of this namespace that use the blob.
    pub files: u64,
    /// Extra digests this namespace asked for (or supplied): the ones of the
    /// blob's manifest it is shown. A reference written before they were
    /// kept shows them all, as it always did.
    pub extras: ExtraDigests,
}

/// Lease given to references recorded before leases existed.
const V1_LEASE_MS: i64 = 24 * 3600 * 1000;

impl RefInfo {
    /// True while something keeps the blob alive for this namespace.
    pub fn held(&self, now_ms: i64) -> bool {
        self.files > 0 || self.lease_until_ms > now_ms
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![V3];
        v.extend_from_slice(&self.created_ms.to_be_bytes());
        v.extend_from_slice(&self.lease_until_ms.to_be_bytes());
        v.extend_from_slice(&self.files.to_be_bytes());
        v.push(self.extras.bits());
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        let v = r.take::<1>()?[0];
        let created_ms = i64::from_be_bytes(r.take()?);
        match v {
            V1 => Ok(RefInfo {
                created_ms,
                lease_until_ms: created_ms.saturating_add(V1_LEASE_MS),
                files: 0,
                extras: ExtraDigests::ALL,
            }),
            V2 | V3 => Ok(RefInfo {
                created_ms,
                lease_until_ms: i64::from_be_bytes(r.take()?),
                files: u64::from_be_bytes(r.take()?),
                extras: match v {
                    V2 => ExtraDigests::ALL,
                    _ => ExtraDigests::from_bits(r.take::<1>()?[0]),
                },
            }),
            v => Err(Error::corrupt(format!("reference encoding version {v} is unknown"))),
        }
    }
}

pub fn ref_key(ns: &str, id: &Hash) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + ns.len() + 32);
    k.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(&id.0);
    k
}

pub fn decode_ref_key(k: &[u8]) -> Result<(String, Hash)> {
    let bad = || Error::corrupt("bad reference key");
    let n = u16::from_be_bytes(k.get(..2).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
    let ns = std::str::from_utf8(k.get(2..2 + n).ok_or_else(bad)?).map_err(|_| bad())?;
    let id = Hash::from_slice(k.get(2 + n..).ok_or_else(bad)?).ok_or_else(bad)?;
    Ok((ns.to_string(), id))
}

/// Store-wide counters, kept exact by the single committer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sum of blob sizes over every (namespace, blob) reference.
    pub logical_bytes: u64,
    /// Sum of sizes of distinct blobs.
    pub unique_bytes: u64,
    /// Stored bytes of distinct chunks.
    pub physical_bytes: u64,
    pub chunks: u64,
    pub blobs: u64,
    pub references: u64,
    pub packs: u64,
    /// Sizes of sealed packs.
    pub sealed_pack_bytes: u64,
    /// Stored bytes of chunks no blob uses any more, still indexed (a put may revive them).
    pub condemned_bytes: u64,
    /// Record bytes of collected chunks still inside packs (until compaction).
    pub dead_bytes: u64,
}

impl Stats {
    fn fields(&self) -> [u64; 10] {
        [
            self.logical_bytes,
            self.unique_bytes,
            self.physical_bytes,
            self.chunks,
            self.blobs,
            self.references,
            self.packs,
            self.sealed_pack_bytes,
            self.condemned_bytes,
            self.dead_bytes,
        ]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![V2];
        for f in self.fields() {
            v.extend_from_slice(&f.to_be_bytes());
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        // Version 1 had the first eight counters only.
        let n = match r.take::<1>()?[0] {
            V1 => 8,
            V2 => 10,
            v => return Err(Error::corrupt(format!("stats encoding version {v} is unknown"))),
        };
        let mut f = [0u64; 10];
        for x in &mut f[..n] {
            *x = u64::from_be_bytes(r.take()?);
        }
        let [
            logical_bytes,
            unique_bytes,
            physical_bytes,
            chunks,
            blobs,
            references,
            packs,
            sealed_pack_bytes,
            condemned_bytes,
            dead_bytes,
        ] = f;
        Ok(Stats {
            logical_bytes,
            unique_bytes,
            physical_bytes,
            chunks,
            blobs,
            references,
            packs,
            sealed_pack_bytes,
            condemned_bytes,
            dead_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        let loc = ChunkLoc {
            pack: 7,
            offset: 1 << 40,
            stored_len: 9,
            raw_len: 65536,
            codec: Codec::Zstd,
            delta: None,
        };
        assert_eq!(ChunkLoc::decode(&loc.encode()).unwrap(), loc);
        // A delta's entry keeps its base and depth, at any reference count.
        let delta = ChunkLoc {
            codec: Codec::Delta,
            delta: Some(DeltaHeader {
                base: Hash([3; 32]),
                depth: 2,
            }),
            ..loc
        };
        assert_eq!(ChunkLoc::decode(&delta.encode()).unwrap(), delta);
        let c = ChunkRec {
            loc: delta,
            refs: 5,
            condemned_ms: 0,
        };
        assert_eq!(ChunkRec::decode(&c.encode()).unwrap(), c);
        assert_eq!(ChunkLoc::decode(&c.encode()).unwrap(), delta);
        // A delta codec without its base, or a base without the codec, is corrupt.
        let mut bad = c.encode();
        bad[0] = V2;
        assert!(ChunkLoc::decode(&bad).is_err());
        let mut bad = ChunkRec { loc, ..c }.encode();
        bad[0] = V3;
        assert!(ChunkLoc::decode(&bad).is_err());
        let p = PackInfo {
            state: PackState::Sealed,
            size: 64 << 20,
            records: 1000,
            created_ms: -5,
        };
        assert_eq!(PackInfo::decode(&p.encode()).unwrap(), p);
        let s = Stats {
            logical_bytes: 1,
            unique_bytes: 2,
            physical_bytes: 3,
            chunks: 4,
            blobs: 5,
            references: 6,
            packs: 7,
            sealed_pack_bytes: 8,
            condemned_bytes: 9,
            dead_bytes: 10,
        };
        assert_eq!(Stats::decode(&s.encode()).unwrap(), s);
        let c = ChunkRec {
            loc,
            refs: 3,
            condemned_ms: 11,
        };
        assert_eq!(ChunkRec::decode(&c.encode()).unwrap(), c);
        assert_eq!(ChunkLoc::decode(&c.encode()).unwrap(), loc);
        assert_eq!(ChunkRec::decode(&loc.encode()).unwrap().refs, 0);
        let id = Hash::of(b"x");
        assert_eq!(
            decode_ref_key(&ref_key("acme/team", &id)).unwrap(),
            ("acme/team".to_string(), id)
        );
        assert!(ChunkLoc::decode(&[1, 2]).is_err());
    }

    #[test]
    fn ref_keys_of_one_namespace_are_contiguous() {
        let a = ref_key("ab", &Hash([0xff; 32]));
        let b = ref_key("abc", &Hash([0; 32]));
        assert!(a < b, "length prefix keeps namespace ranges apart");
    }
}
