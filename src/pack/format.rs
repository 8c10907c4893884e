//! Pack format: pure encode/decode, no I/O.
//!
//! ```text
//! pack    := header record* footer trailer
//! header  := "STWPACK1" version:u32 flags:u32 pack_id:u64 created_ms:i64      (32 bytes)
//! record  := record_header data[stored_len]
//! record_header := "STWR" kind:u8 codec:u8 0:u16 raw_len:u32 stored_len:u32
//!                  id:[32] data_crc:u32 header_crc:u32                           (56 bytes)
//! footer  := entry*                                  one per record, in order
//! entry   := kind:u8 codec:u8 0:u16 raw_len:u32 stored_len:u32 offset:u64 id:[32] data_crc:u32
//! trailer := entries:u32 footer_crc:u32 footer_offset:u64 "STWPEND1"            (24 bytes)
//! ```
//!
//! All integers are big-endian; checksums are CRC-32C. A record header has
//! its own checksum so a scan can find the torn tail of an unsealed pack
//! without trusting the data; the data checksum catches corruption before
//! decompression, and the chunk id (BLAKE3 of the raw bytes) catches the rest.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::manifest::Reader;

pub const PACK_MAGIC: [u8; 8] = *b"STWPACK1";
pub const END_MAGIC: [u8; 8] = *b"STWPEND1";
const RECORD_MAGIC: [u8; 4] = *b"STWR";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 32;
pub const RECORD_HEADER_LEN: usize = 56;
pub const ENTRY_LEN: usize = 56;
pub const TRAILER_LEN: usize = 24;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Raw bytes of a chunk; `id` is their BLAKE3.
    Chunk = 1,
    /// A blob manifest; `id` is the blob's BLAKE3.
    Blob = 2,
    /// A namespace's reference to a blob; `id` is the blob's BLAKE3.
    Ref = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => Kind::Chunk,
            2 => Kind::Blob,
            3 => Kind::Ref,
            _ => return Err(Error::corrupt(format!("unknown record kind {v}"))),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
    /// A delta on another chunk (its *base*): the stored data is
    /// [`DeltaHeader`] then a zstd frame with the base's raw bytes as its
    /// prefix (`crate::delta`). Only chunk records have it.
    Delta = 2,
}

impl Codec {
    pub fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            0 => Codec::Raw,
            1 => Codec::Zstd,
            2 => Codec::Delta,
            _ => return Err(Error::corrupt(format!("unknown codec {v}"))),
        })
    }
}

/// A record's header fields, also its footer entry (with its offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub codec: Codec,
    pub raw_len: u32,
    pub stored_len: u32,
    /// Offset of the record header in the pack.
    pub offset: u64,
    pub id: Hash,
    pub data_crc: u32,
}

impl Entry {
    pub fn new(kind: Kind, codec: Codec, id: Hash, raw_len: u32, data: &[u8]) -> Self {
        Entry {
            kind,
            codec,
            raw_len,
            stored_len: data.len() as u32,
            offset: 0,
            id,
            data_crc: crc32c::crc32c(data),
        }
    }

    /// Bytes the whole record takes in the pack.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + self.stored_len as u64
    }
}

pub fn encode_header(pack_id: u64, created_ms: i64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&PACK_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[16..24].copy_from_slice(&pack_id.to_be_bytes());
    h[24..32].copy_from_slice(&created_ms.to_be_bytes());
    h
}

/// Returns (pack_id, created_ms).
pub fn decode_header(h: &[u8]) -> Result<(u64, i64)> {
    let mut r = Reader(h);
    if r.take::<8>()? != PACK_MAGIC {
        return Err(Error::corrupt("not a stowage pack (bad magic)"));
    }
    let version = u32::from_be_bytes(r.take()?);
    if version != FORMAT_VERSION {
        return Err(Error::corrupt(format!("pack format version {version} is unknown")));
    }
    let _flags = r.take::<4>()?;
    Ok((u64::from_be_bytes(r.take()?), i64::from_be_bytes(r.take()?)))
}

pub fn encode_record_header(e: &Entry) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4] = e.kind as u8;
    h[5] = e.codec as u8;
    h[8..12].copy_from_slice(&e.raw_len.to_be_bytes());
    h[12..16].copy_from_slice(&e.stored_len.to_be_bytes());
    h[16..48].copy_from_slice(&e.id.0);
    h[48..52].copy_from_slice(&e.data_crc.to_be_bytes());
    let crc = crc32c::crc32c(&h[..52]);
    h[52..56].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Decodes and checks a record header found at `offset`.
pub fn decode_record_header(h: &[u8], offset: u64) -> Result<Entry> {
    if h.len() < RECORD_HEADER_LEN {
        return Err(Error::corrupt("record header is truncated"));
    }
    let crc = u32::from_be_bytes(h[52..56].try_into().expect("4 bytes"));
    if h[..4] != RECORD_MAGIC || crc32c::crc32c(&h[..52]) != crc {
        return Err(Error::corrupt(format!(
            "record header at offset {offset} fails its checksum"
        )));
    }
    Ok(Entry {
        kind: Kind::from_u8(h[4])?,
        codec: Codec::from_u8(h[5])?,
        raw_len: u32::from_be_bytes(h[8..12].try_into().expect("4 bytes")),
        stored_len: u32::from_be_bytes(h[12..16].try_into().expect("4 bytes")),
        offset,
        id: Hash(h[16..48].try_into().expect("32 bytes")),
        data_crc: u32::from_be_bytes(h[48..52].try_into().expect("4 bytes")),
    })
}

/// Checks a whole record (header + data) read back from `offset` against
/// what the index expects, and returns its stored data.
pub fn open_record<'a>(rec: &'a [u8], offset: u64, kind: Kind, id: &Hash) -> Result<(Entry, &'a [u8])> {
    let e = decode_record_header(rec, offset)?;
    if e.kind != kind || e.id != *id {
        return Err(Error::corrupt(format!(
            "record at offset {offset} is not {kind:?} {id}"
        )));
    }
    let data = &rec[RECORD_HEADER_LEN..];
    if data.len() != e.stored_len as usize {
        return Err(Error::corrupt(format!("record at offset {offset} is truncated")));
    }
    if crc32c::crc32c(data) != e.data_crc {
        return Err(Error::corrupt(format!(
            "record {id} at offset {offset} fails its data checksum"
        )));
    }
    Ok((e, data))
}

/// Footer entries followed by the trailer.
pub fn encode_footer(entries: &[Entry], footer_offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN + TRAILER_LEN);
    for e in entries {
        out.push(e.kind as u8);
        out.push(e.codec as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&e.raw_len.to_be_bytes());
        out.extend_from_slice(&e.stored_len.to_be_bytes());
        out.extend_from_slice(&e.offset.to_be_bytes());
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.data_crc.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&footer_offset.to_be_bytes());
    out.extend_from_slice(&END_MAGIC);
    out
}

/// Returns (entry count, footer offset) from the last 24 bytes of a pack.
pub fn decode_trailer(t: &[u8]) -> Result<(u32, u64)> {
    if t.len() != TRAILER_LEN || t[16..] != END_MAGIC {
        return Err(Error::corrupt("pack has no footer (not sealed)"));
    }
    let n = u32::from_be_bytes(t[..4].try_into().expect("4 bytes"));
    let off = u64::from_be_bytes(t[8..16].try_into().expect("8 bytes"));
    Ok((n, off))
}

/// Decodes one footer entry (`ENTRY_LEN` bytes; its bounds are the caller's).
pub fn decode_entry(b: &[u8]) -> Result<Entry> {
    if b.len() < ENTRY_LEN {
        return Err(Error::corrupt("footer entry is truncated"));
    }
    Ok(Entry {
        kind: Kind::from_u8(b[0])?,
        codec: Codec::from_u8(b[1])?,
        raw_len: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
        stored_len: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        offset: u64::from_be_bytes(b[12..20].try_into().expect("8 bytes")),
        id: Hash(b[20..52].try_into().expect("32 bytes")),
        data_crc: u32::from_be_bytes(b[52..56].try_into().expect("4 bytes")),
    })
}

/// Decodes footer entries (`footer` runs from the footer offset to the end of the pack).
pub fn decode_footer(footer: &[u8]) -> Result<Vec<Entry>> {
    let (n, footer_offset) = decode_trailer(&footer[footer.len().saturating_sub(TRAILER_LEN)..])?;
    let body = &footer[..footer.len() - TRAILER_LEN];
    if body.len() != n as usize * ENTRY_LEN {
        return Err(Error::corrupt("pack footer has the wrong length"));
    }
    let crc = u32::from_be_bytes(footer[body.len() + 4..body.len() + 8].try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err(Error::corrupt("pack footer fails its checksum"));
    }
    let mut entries = Vec::with_capacity(n as usize);
    for b in body.chunks_exact(ENTRY_LEN) {
        let e = decode_entry(b)?;
        if e.offset
            .checked_add(e.record_len())
            .is_none_or(|end| end > footer_offset)
        {
            return Err(Error::corrupt("pack footer entry points past the records"));
        }
        entries.push(e);
    }
    Ok(entries)
}

/// Scans records from the start of an unsealed pack; returns the entries of
/// every complete record and the offset where the valid prefix ends (a torn
/// tail after it is to be cut off). Data checksums are not checked here: a
/// corrupt record in the middle stays, and reads report it.
pub fn scan_records(pack: &[u8]) -> Result<(Vec<Entry>, u64)> {
    decode_header(pack)?;
    let mut pos = HEADER_LEN;
    let mut entries = Vec::new();
    while pack.len() - pos >= RECORD_HEADER_LEN {
        let Ok(e) = decode_record_header(&pack[pos..], pos as u64) else {
            break;
        };
        if pack.len() - pos < e.record_len() as usize {
            break;
        }
        pos += e.record_len() as usize;
        entries.push(e);
    }
    Ok((entries, pos as u64))
}

/// The first offset at or after `from` (and before `end`) where a record
/// header passes its checksum and its record fits before `end`: where a scan
/// picks up again after damage. A torn tail has none.
pub fn next_record(pack: &[u8], from: usize, end: usize) -> Option<usize> {
    let end = end.min(pack.len());
    let mut p = from;
    while p + RECORD_HEADER_LEN <= end {
        let i = pack[p..end - RECORD_HEADER_LEN + 4]
            .windows(4)
            .position(|w| w == RECORD_MAGIC)?;
        let at = p + i;
        if let Ok(e) = decode_record_header(&pack[at..], at as u64)
            && (at as u64).checked_add(e.record_len()).is_some_and(|x| x <= end as u64)
        {
            return Some(at);
        }
        p = at + 1;
    }
    None
}

/// Whether the bytes at `at` look like a whole record that fails its
/// checks rather than one a crash cut short: they start with the record
/// magic and the length their header claims ends exactly at the end of
/// `pack`. A torn append is shorter than it claims; a bit flip is not.
pub fn whole_but_bad_record_at(pack: &[u8], at: usize) -> bool {
    let Some(h) = pack.get(at..at + RECORD_HEADER_LEN) else {
        return false;
    };
    let stored = u32::from_be_bytes(h[12..16].try_into().expect("4 bytes")) as u64;
    h[..4] == RECORD_MAGIC && (at + RECORD_HEADER_LEN) as u64 + stored == pack.len() as u64
}

/// Every record of an unsealed pack, scanning past damage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Each record whose header passes its checksum, in order.
    pub entries: Vec<Entry>,
    /// Where the valid prefix ends (the first gap's start, or the end).
    pub prefix_end: u64,
    /// `[start, end)` ranges that are not records: damage, or (the last one,
    /// running to the end, with no record after it) a torn tail.
    pub gaps: Vec<(u64, u64)>,
}

impl Scan {
    /// Whether the only bytes that are not records are a tail after the
    /// last record (what a crash leaves); false if a record follows a gap.
    pub fn only_a_tail(&self) -> bool {
        self.gaps.len() <= 1 && self.entries.last().is_none_or(|e| e.offset < self.prefix_end)
    }
}

/// Like [`scan_records`], but goes on past a record that fails its checks
/// to the next valid record header ([`next_record`]), so records after
/// damage stay known.
pub fn scan_past_damage(pack: &[u8]) -> Result<Scan> {
    decode_header(pack)?;
    let mut pos = HEADER_LEN;
    let mut s = Scan::default();
    while pos < pack.len() {
        let fits = |e: &Entry| (pack.len() - pos) as u64 >= e.record_len();
        match decode_record_header(&pack[pos..], pos as u64) {
            Ok(e) if fits(&e) => {
                pos += e.record_len() as usize;
                s.entries.push(e);
            }
            _ => {
                let next = next_record(pack, pos + 1, pack.len()).unwrap_or(pack.len());
                s.gaps.push((pos as u64, next as u64));
                pos = next;
            }
        }
    }
    s.prefix_end = s.gaps.first().map_or(pack.len() as u64, |g| g.0);
    Ok(s)
}

thread_local! {
    // zstd contexts are costly to set up; each thread keeps one of each.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// A `Ref` record's data: created_ms:i64 then the namespace bytes.
pub fn encode_ref(ns: &str, created_ms: i64) -> Vec<u8> {
    let mut v = created_ms.to_be_bytes().to_vec();
    v.extend_from_slice(ns.as_bytes());
    v
}

/// Decodes a `Ref` record's data into (namespace, created_ms).
pub fn decode_ref(b: &[u8]) -> Result<(String, i64)> {
    if b.len() < 8 {
        return Err(Error::corrupt("reference record is truncated"));
    }
    let created_ms = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let ns = std::str::from_utf8(&b[8..]).map_err(|_| Error::corrupt("reference record namespace is not UTF-8"))?;
    Ok((ns.to_string(), created_ms))
}

/// Compresses a chunk with zstd; keeps it raw when that does not shrink it.
pub fn compress(raw: &[u8], level: i32) -> Result<(Codec, Option<Vec<u8>>)> {
    let z = COMPRESSOR.with(|c| -> Result<Vec<u8>> {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, comp) = c.as_mut().expect("set above");
        Ok(comp.compress(raw)?)
    })?;
    Ok(if z.len() < raw.len() {
        (Codec::Zstd, Some(z))
    } else {
        (Codec::Raw, None)
    })
}

/// Longest chain of deltas any read follows, whatever a record claims
/// (`optimize.delta_depth` is at most this).
pub const MAX_DELTA_DEPTH: u8 = 8;

/// What a delta chunk's stored data starts with: its base and its depth
/// (1 on a chunk that is not a delta, the base's plus one otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeltaHeader {
    pub base: Hash,
    pub depth: u8,
}

impl DeltaHeader {
    pub const LEN: usize = 33;

    /// The stored data of a delta chunk.
    pub fn stored(&self, frame: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN + frame.len());
        v.extend_from_slice(&self.base.0);
        v.push(self.depth);
        v.extend_from_slice(frame);
        v
    }

    /// Splits a delta chunk's stored data into its header and zstd frame.
    pub fn split(stored: &[u8]) -> Result<(DeltaHeader, &[u8])> {
        let (h, frame) = stored
            .split_at_checked(Self::LEN)
            .ok_or_else(|| Error::corrupt("delta chunk is shorter than its header"))?;
        let depth = h[32];
        if depth == 0 || depth > MAX_DELTA_DEPTH {
            return Err(Error::corrupt(format!("delta chunk claims depth {depth}")));
        }
        let base = Hash(h[..32].try_into().expect("32 bytes"));
        Ok((DeltaHeader { base, depth }, frame))
    }
}

/// The delta header of a chunk record's stored data, if its codec is `Delta`.
pub fn delta_of(codec: Codec, stored: &[u8]) -> Result<Option<DeltaHeader>> {
    match codec {
        Codec::Delta => Ok(Some(DeltaHeader::split(stored)?.0)),
        _ => Ok(None),
    }
}

/// Decodes a delta chunk's stored data with its base's raw bytes (already
/// verified) and verifies the result against the chunk id.
pub fn decode_delta(e: &Entry, stored: &[u8], base: &[u8]) -> Result<Bytes> {
    if e.raw_len as usize > crate::chunker::MAX_CHUNK {
        return Err(Error::corrupt(format!(
            "chunk {} claims {} raw bytes, more than any chunk",
            e.id, e.raw_len
        )));
    }
    let (_, frame) = DeltaHeader::split(stored)?;
    let raw = crate::delta::decode(base, frame, e.raw_len as usize)
        .map_err(|err| Error::corrupt(format!("chunk {}: {err}", e.id)))?;
    if Hash::of(&raw) != e.id {
        return Err(Error::corrupt(format!("chunk {} fails hash verification", e.id)));
    }
    Ok(raw.into())
}

/// Decodes stored data to raw bytes and verifies them against the chunk id.
/// Raw chunks come back as a slice of `stored`, without a copy. A delta
/// chunk needs its base: [`decode_delta`].
pub fn decode_chunk(e: &Entry, stored: Bytes) -> Result<Bytes> {
    // A damaged or hostile header must not make us allocate or inflate
    // beyond the largest chunk the chunker can cut.
    if e.raw_len as usize > crate::chunker::MAX_CHUNK {
        return Err(Error::corrupt(format!(
            "chunk {} claims {} raw bytes, more than any chunk",
            e.id, e.raw_len
        )));
    }
    let raw = match e.codec {
        Codec::Raw => stored,
        Codec::Zstd => DECOMPRESSOR
            .with(|d| -> std::io::Result<Vec<u8>> {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                d.as_mut().expect("set above").decompress(&stored, e.raw_len as usize)
            })
            .map_err(|err| Error::corrupt(format!("chunk {} does not decompress: {err}", e.id)))?
            .into(),
        Codec::Delta => {
            return Err(Error::Internal(format!(
                "delta chunk {} decoded without its base",
                e.id
            )));
        }
    };
    if raw.len() != e.raw_len as usize || Hash::of(&raw) != e.id {
        return Err(Error::corrupt(format!("chunk {} fails hash verification", e.id)));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn build(chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<Entry>) {
        let mut pack = encode_header(42, 1000).to_vec();
        let mut entries = Vec::new();
        for c in chunks {
            let (codec, z) = compress(c, 3).unwrap();
            let stored = z.as_deref().unwrap_or(c);
            let mut e = Entry::new(Kind::Chunk, codec, Hash::of(c), c.len() as u32, stored);
            e.offset = pack.len() as u64;
            pack.extend_from_slice(&encode_record_header(&e));
            pack.extend_from_slice(stored);
            entries.push(e);
        }
        (pack, entries)
    }

    #[test]
    fn a_delta_record_decodes_on_its_base_only_and_refuses_bad_headers() {
        let mut base = vec![0u8; 20_000];
        blake3::Hasher::new().update(b"base").finalize_xof().fill(&mut base);
        let mut target = base.clone();
        target[5_000..5_010].copy_from_slice(b"0123456789");
        let frame = crate::delta::encode(&base, &target, 3).unwrap();
        let h = DeltaHeader {
            base: Hash::of(&base),
            depth: 1,
        };
        let stored = h.stored(&frame);
        assert_eq!(DeltaHeader::split(&stored).unwrap(), (h, &frame[..]));
        assert_eq!(delta_of(Codec::Delta, &stored).unwrap(), Some(h));
        assert_eq!(delta_of(Codec::Zstd, &stored).unwrap(), None);
        let e = Entry::new(
            Kind::Chunk,
            Codec::Delta,
            Hash::of(&target),
            target.len() as u32,
            &stored,
        );
        assert_eq!(&decode_delta(&e, &stored, &base).unwrap()[..], &target[..]);
        // The wrong base never passes as the chunk.
        let mut other = base.clone();
        other[100] ^= 1; // random bytes: the delta copies every one of them
        assert!(matches!(decode_delta(&e, &stored, &other), Err(Error::Corrupt(_))));
        // Without its base it is not decoded at all.
        assert!(decode_chunk(&e, Bytes::from(stored.clone())).is_err());
        // Depth 0, a depth past the bound, a short header: corrupt.
        for depth in [0, MAX_DELTA_DEPTH + 1] {
            let bad = DeltaHeader { depth, ..h }.stored(&frame);
            assert!(matches!(DeltaHeader::split(&bad), Err(Error::Corrupt(_))));
        }
        assert!(matches!(DeltaHeader::split(&stored[..20]), Err(Error::Corrupt(_))));
        assert_eq!(Codec::from_u8(2).unwrap(), Codec::Delta);
    }

    proptest! {
        #[test]
        fn records_round_trip_through_footer_and_scan(
            chunks in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3000), 0..20)
        ) {
            let (mut pack, entries) = build(&chunks);
            let (scanned, end) = scan_records(&pack).unwrap();
            prop_assert_eq!(&scanned, &entries);
            prop_assert_eq!(end as usize, pack.len());
            let footer_offset = pack.len() as u64;
            pack.extend_from_slice(&encode_footer(&entries, footer_offset));
            let (n, off) = decode_trailer(&pack[pack.len() - TRAILER_LEN..]).unwrap();
            prop_assert_eq!(n as usize, entries.len());
            let decoded = decode_footer(&pack[off as usize..]).unwrap();
            prop_assert_eq!(&decoded, &entries);
            for (e, c) in entries.iter().zip(&chunks) {
                let rec = &pack[e.offset as usize..(e.offset + e.record_len()) as usize];
                let (e2, stored) = open_record(rec, e.offset, Kind::Chunk, &e.id).unwrap();
                prop_assert_eq!(&decode_chunk(&e2, Bytes::copy_from_slice(stored)).unwrap()[..], &c[..]);
            }
        }

        #[test]
        fn torn_tail_is_cut_at_a_record_boundary(cut in 0usize..5000) {
            let chunks: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 700]).collect();
            let (pack, entries) = build(&chunks);
            let cut = HEADER_LEN + cut % (pack.len() - HEADER_LEN);
            let (scanned, end) = scan_records(&pack[..cut]).unwrap();
            prop_assert!(end as usize <= cut);
            prop_assert_eq!(&scanned[..], &entries[..scanned.len()]);
            let expect_end = scanned.last().map_or(HEADER_LEN as u64, |e| e.offset + e.record_len());
            prop_assert_eq!(end, expect_end);
        }
    }

    #[test]
    fn flipped_byte_is_detected() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut pack, entries) = build(&[data]);
        let e = entries[0];
        for i in [e.offset as usize + 3, e.offset as usize + RECORD_HEADER_LEN + 10] {
            pack[i] ^= 1;
            let rec = &pack[e.offset as usize..(e.offset + e.record_len()) as usize];
            assert!(matches!(
                open_record(rec, e.offset, Kind::Chunk, &e.id),
                Err(Error::Corrupt(_))
            ));
            pack[i] ^= 1;
        }
    }

    #[test]
    fn a_chunk_claiming_a_huge_raw_size_is_refused_before_inflating() {
        let data = vec![7u8; 100_000];
        let (codec, z) = compress(&data, 3).unwrap();
        let stored = Bytes::from(z.unwrap());
        let mut e = Entry::new(Kind::Chunk, codec, Hash::of(&data), data.len() as u32, &stored);
        assert_eq!(&decode_chunk(&e, stored.clone()).unwrap()[..], &data[..]);
        e.raw_len = u32::MAX;
        assert!(matches!(decode_chunk(&e, stored.clone()), Err(Error::Corrupt(_))));
        // Within the bound but smaller than the real content: zstd stops, no overrun.
        e.raw_len = 1000;
        assert!(matches!(decode_chunk(&e, stored), Err(Error::Corrupt(_))));
    }
}
