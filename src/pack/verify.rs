//! Verifies every byte of a pack: the header, each record (header CRC,
//! data CRC; a chunk decodes to bytes whose BLAKE3 is its id; a manifest
//! decodes and names its blob; a reference decodes), and for a sealed pack
//! the footer (its CRC, one entry per record, each equal to its record's
//! header) and the trailer. Damage is reported, never an error: the scan
//! goes on past it to the next valid record header, so one bad byte is one
//! finding. Reads go through [`Source`] in windows of at most [`WINDOW`]
//! bytes (a record larger than a window is read alone, bounded by
//! [`MAX_RECORD`]), so memory stays bounded whatever the pack's size. No
//! other I/O: `admin check --read-data` and the scrubber (`crate::scrub`)
//! feed it files or object-store ranges, the tests feed it byte slices.

use bytes::Bytes;

use super::format::{self, ENTRY_LEN, Entry, HEADER_LEN, Kind, RECORD_HEADER_LEN, TRAILER_LEN};
use crate::error::Result;
use crate::manifest::Manifest;

/// Bytes read at a time.
pub const WINDOW: usize = 4 << 20;
/// Largest record read to verify it; a record that claims more (with a
/// header that passes its checksum) is reported, not read.
pub const MAX_RECORD: u64 = 64 << 20;
/// Findings kept per pack (the rest are counted).
pub const MAX_FINDINGS: usize = 100;

/// Random-access reads of one pack.
pub trait Source {
    /// Exactly `len` bytes at `offset` (the caller stays inside the pack).
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>>;
}

impl Source for &[u8] {
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let s = offset as usize;
        self.get(s..s + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| crate::Error::corrupt("read past the end of the pack"))
    }
}

/// Whether the pack is expected to end with a footer and trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Sealed: records, then footer and trailer.
    Sealed,
    /// Unsealed (staged, open): records up to the given size.
    Open,
}

/// One thing wrong in a pack.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Where in the pack (a record's offset, the footer's, the trailer's).
    pub offset: u64,
    pub problem: String,
}

/// What verifying one pack found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Records that passed every check.
    pub records_ok: u64,
    /// Bytes read.
    pub bytes: u64,
    /// At most [`MAX_FINDINGS`].
    pub findings: Vec<Finding>,
    /// Findings beyond those kept.
    pub more: u64,
}

impl Verified {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
    /// Every finding, kept or not.
    pub fn damage(&self) -> u64 {
        self.findings.len() as u64 + self.more
    }
    fn find(&mut self, offset: u64, problem: impl Into<String>) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                offset,
                problem: problem.into(),
            });
        } else {
            self.more += 1;
        }
    }
}

/// Windows over a [`Source`], refilled as the scan moves: one for the
/// records, one for the footer, so walking both in step reads each once.
/// `pace` hears of every byte read (the scrubber sleeps there), and stops
/// the scan when it answers false.
struct Reader<'a> {
    src: &'a mut dyn Source,
    /// Never read at or past this.
    limit: u64,
    wins: [Window; 2],
    read: u64,
    pace: &'a mut dyn FnMut(u64) -> bool,
    stopped: bool,
}

#[derive(Default)]
struct Window {
    start: u64,
    buf: Vec<u8>,
}

const RECORDS: usize = 0;
const FOOTER: usize = 1;

impl Reader<'_> {
    /// `[off, off+len)` of the records window.
    fn get(&mut self, off: u64, len: usize) -> Result<&[u8]> {
        self.get_in(RECORDS, off, len)
    }

    /// `[off, off+len)`, which must be inside the limit, through window `w`.
    fn get_in(&mut self, w: usize, off: u64, len: usize) -> Result<&[u8]> {
        if off.checked_add(len as u64).is_none_or(|end| end > self.limit) {
            return Err(crate::Error::Internal(format!(
                "pack verification read {len} bytes at {off}, past the pack's {} bytes",
                self.limit
            )));
        }
        let win = &self.wins[w];
        let inside = off >= win.start && off + len as u64 <= win.start + win.buf.len() as u64;
        if !inside {
            let n = (len.max(WINDOW) as u64).min(self.limit - off) as usize;
            let buf = self.src.read_at(off, n)?;
            if buf.len() != n {
                return Err(crate::Error::corrupt(format!(
                    "read {} bytes at {off}, asked for {n}",
                    buf.len()
                )));
            }
            self.wins[w] = Window { start: off, buf };
            self.read += n as u64;
            if !(self.pace)(n as u64) {
                self.stopped = true;
            }
        }
        let win = &self.wins[w];
        let at = (off - win.start) as usize;
        Ok(&win.buf[at..at + len])
    }

    /// Bytes of the records window from `off` on (0 if outside it).
    fn available(&self, off: u64) -> usize {
        let win = &self.wins[RECORDS];
        let end = win.start + win.buf.len() as u64;
        if off >= win.start && off < end {
            (end - off) as usize
        } else {
            0
        }
    }

    /// Like [`format::next_record`], over windows: the next offset in
    /// `[from, end)` where a record header passes its checksum and its
    /// record fits before `end`.
    fn next_record(&mut self, from: u64, end: u64) -> Result<Option<u64>> {
        let mut p = from;
        while p + RECORD_HEADER_LEN as u64 <= end && !self.stopped {
            // Search what the window holds before reading more.
            let have = self.available(p).min((end - p) as usize);
            let n = match have >= RECORD_HEADER_LEN {
                true => have,
                false => (end - p).min(WINDOW as u64) as usize,
            };
            let buf = self.get(p, n)?;
            // Candidates whose whole header lies inside this window.
            let last = n - RECORD_HEADER_LEN;
            match buf[..last + 4].windows(4).position(|w| w == b"STWR") {
                Some(i) => {
                    let at = p + i as u64;
                    let h = self.get(at, RECORD_HEADER_LEN)?;
                    if let Ok(e) = format::decode_record_header(h, at)
                        && at + e.record_len() <= end
                    {
                        return Ok(Some(at));
                    }
                    p = at + 1;
                }
                // The next window starts where a header could still begin.
                None => p += last as u64 + 1,
            }
        }
        Ok(None)
    }
}

/// Verifies the pack `id` of `size` bytes read through `src`. `pace` is
/// called with the bytes of each read; when it answers false the scan
/// stops early (the result then covers what was read). Only a failed read
/// is an error; damage is in the findings.
pub fn verify_pack(
    src: &mut dyn Source,
    id: u64,
    size: u64,
    layout: Layout,
    pace: &mut dyn FnMut(u64) -> bool,
) -> Result<Verified> {
    let mut v = Verified::default();
    let mut r = Reader {
        src,
        limit: size,
        wins: Default::default(),
        read: 0,
        pace,
        stopped: false,
    };
    let min = HEADER_LEN as u64
        + if layout == Layout::Sealed {
            TRAILER_LEN as u64
        } else {
            0
        };
    if size < min {
        v.find(0, format!("pack is {size} bytes, too short to be a pack"));
        return Ok(v);
    }
    let header = r.get(0, HEADER_LEN)?;
    // The writer leaves the flags zero; nothing else covers them.
    let flags = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    match format::decode_header(header) {
        Ok((pid, _)) if pid != id => v.find(0, format!("pack header names pack {pid:016x}")),
        Ok(_) if flags != 0 => v.find(0, format!("pack header has unknown flags {flags:#x}")),
        Ok(_) => {}
        Err(e) => v.find(0, format!("pack header: {e}")),
    }

    // Where the records end, and the footer to hold them against.
    let mut records_end = size;
    let mut footer: Option<(u64, u32)> = None;
    if layout == Layout::Sealed {
        let at = size - TRAILER_LEN as u64;
        let trailer = format::decode_trailer(r.get_in(FOOTER, at, TRAILER_LEN)?);
        match trailer {
            Err(e) => {
                v.find(at, format!("trailer: {e}"));
                records_end = at;
            }
            Ok((n, off)) => {
                let body = n as u64 * ENTRY_LEN as u64;
                if off < HEADER_LEN as u64 || off.checked_add(body) != Some(at) {
                    v.find(
                        at,
                        format!("trailer says {n} footer entries at offset {off}, which does not end where the trailer starts ({at})"),
                    );
                    records_end = at;
                } else {
                    records_end = off;
                    footer = Some((off, n));
                    check_footer_crc(&mut r, &mut v, off, body, at)?;
                }
            }
        }
    }

    // The records, each held against its footer entry (matched by offset).
    let mut entries = FooterCursor { next: 0, footer };
    let mut pos = HEADER_LEN as u64;
    while pos < records_end && !r.stopped {
        let header = match records_end - pos >= RECORD_HEADER_LEN as u64 {
            true => format::decode_record_header(r.get(pos, RECORD_HEADER_LEN)?, pos)
                .ok()
                .filter(|e| pos + e.record_len() <= records_end),
            false => None,
        };
        let Some(e) = header else {
            let next = r.next_record(pos + 1, records_end)?;
            let to = next.unwrap_or(records_end);
            v.find(
                pos,
                format!(
                    "bytes {pos}..{to} are not a valid record (record header fails its checksum or overruns the records){}",
                    if next.is_some() { "; the scan resumes at the next valid record" } else { "" }
                ),
            );
            entries.skip_to(&mut r, &mut v, to)?;
            pos = to;
            continue;
        };
        entries.check(&mut r, &mut v, &e)?;
        match check_record(&mut r, &e)? {
            None => v.records_ok += 1,
            Some(problem) => v.find(pos, format!("{:?} record {}: {problem}", e.kind, e.id)),
        }
        pos += e.record_len();
    }
    if !r.stopped {
        entries.skip_to(&mut r, &mut v, u64::MAX)?;
    }
    v.bytes = r.read;
    Ok(v)
}

fn check_footer_crc(r: &mut Reader<'_>, v: &mut Verified, off: u64, body: u64, at: u64) -> Result<()> {
    let mut crc = 0u32;
    let mut p = off;
    while p < off + body {
        let n = (off + body - p).min(WINDOW as u64) as usize;
        crc = crc32c::crc32c_append(crc, r.get_in(FOOTER, p, n)?);
        p += n as u64;
    }
    let t = r.get_in(FOOTER, at, TRAILER_LEN)?;
    let stored = u32::from_be_bytes(t[4..8].try_into().expect("4 bytes"));
    if crc != stored {
        v.find(off, "pack footer fails its checksum");
    }
    Ok(())
}

/// Walks the footer entries in step with the record scan.
struct FooterCursor {
    next: u32,
    /// (footer offset, entries), when the footer is believed.
    footer: Option<(u64, u32)>,
}

impl FooterCursor {
    fn entry(&self, r: &mut Reader<'_>, i: u32) -> Result<std::result::Result<Entry, String>> {
        let (off, _) = self.footer.expect("only with a footer");
        let b = r.get_in(FOOTER, off + i as u64 * ENTRY_LEN as u64, ENTRY_LEN)?;
        Ok(format::decode_entry(b).map_err(|e| e.to_string()))
    }

    /// Reports the footer entries before `pos` (records the scan did not find).
    fn skip_to(&mut self, r: &mut Reader<'_>, v: &mut Verified, pos: u64) -> Result<()> {
        let Some((off, n)) = self.footer else { return Ok(()) };
        while self.next < n {
            let at = off + self.next as u64 * ENTRY_LEN as u64;
            match self.entry(r, self.next)? {
                Ok(e) if e.offset >= pos => return Ok(()),
                Ok(e) => v.find(
                    at,
                    format!(
                        "footer lists a record at offset {} that the scan does not find",
                        e.offset
                    ),
                ),
                Err(err) => v.find(at, format!("footer entry {}: {err}", self.next)),
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Holds a record's header against its footer entry.
    fn check(&mut self, r: &mut Reader<'_>, v: &mut Verified, e: &Entry) -> Result<()> {
        let Some((off, n)) = self.footer else { return Ok(()) };
        self.skip_to(r, v, e.offset)?;
        let at = off + self.next as u64 * ENTRY_LEN as u64;
        match (self.next < n).then(|| self.entry(r, self.next)).transpose()? {
            Some(Ok(f)) if f.offset == e.offset => {
                if f != *e {
                    v.find(
                        at,
                        format!(
                            "footer entry for the record at offset {} disagrees with its header",
                            e.offset
                        ),
                    );
                }
                self.next += 1;
            }
            _ => v.find(e.offset, "record is not in the footer"),
        }
        Ok(())
    }
}

/// Reads and checks one record whose header passed; returns the problem.
fn check_record(r: &mut Reader<'_>, e: &Entry) -> Result<Option<String>> {
    if e.stored_len as u64 > MAX_RECORD {
        return Ok(Some(format!(
            "claims {} stored bytes, more than any record; not read",
            e.stored_len
        )));
    }
    let data = r.get(e.offset + RECORD_HEADER_LEN as u64, e.stored_len as usize)?;
    if crc32c::crc32c(data) != e.data_crc {
        return Ok(Some("fails its data checksum".into()));
    }
    let problem = match e.kind {
        // A delta's bytes are checked against its id when it is read (with
        // its base, from another record); here, that its header holds.
        Kind::Chunk if e.codec == format::Codec::Delta => {
            format::DeltaHeader::split(data).err().map(|err| err.to_string())
        }
        Kind::Chunk => format::decode_chunk(e, Bytes::copy_from_slice(data))
            .err()
            .map(|err| err.to_string()),
        Kind::Blob => match Manifest::decode(data) {
            Err(err) => Some(format!("manifest does not decode: {err}")),
            Ok(m) if m.digests.blake3 != e.id => Some(format!("manifest of another blob ({})", m.digests.blake3)),
            Ok(_) => None,
        },
        Kind::Ref => super::format::decode_ref(data).err().map(|err| err.to_string()),
    };
    Ok(problem)
}

/// Something wrong in one pack.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PackDamage {
    pub pack: u64,
    /// "store" (sealed, in the pack store) or "staging".
    pub location: &'static str,
    pub offset: u64,
    pub problem: String,
}

impl std::fmt::Display for PackDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pack {:016x} ({}) at offset {}: {}",
            self.pack, self.location, self.offset, self.problem
        )
    }
}

/// What a read of every pack covered and found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DataCheck {
    pub packs: u64,
    pub records: u64,
    pub bytes: u64,
    pub damaged_packs: u64,
    /// Findings, every one counted (kept up to a bound in `damage`).
    pub damaged_records: u64,
    pub damage: Vec<PackDamage>,
}

/// Findings kept per run (the counts go on).
pub const MAX_DAMAGE: usize = 1000;

impl DataCheck {
    pub fn add(&mut self, pack: u64, location: &'static str, v: &Verified) {
        self.packs += 1;
        self.records += v.records_ok;
        self.bytes += v.bytes;
        if !v.is_clean() {
            self.damaged_packs += 1;
            self.damaged_records += v.damage();
        }
        for f in &v.findings {
            if self.damage.len() < MAX_DAMAGE {
                self.damage.push(PackDamage {
                    pack,
                    location,
                    offset: f.offset,
                    problem: f.problem.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::hash::Hash;
    use crate::pack::format::{Codec, compress, encode_footer, encode_header, encode_record_header};

    /// A sealed pack of chunks, a manifest and a reference; (bytes, footer offset).
    fn sealed_pack(seed: u8) -> (Vec<u8>, u64) {
        let mut pack = encode_header(9, 1000).to_vec();
        let mut entries = Vec::new();
        let mut push = |pack: &mut Vec<u8>, kind, codec, id, raw_len: u32, data: &[u8]| {
            let mut e = Entry::new(kind, codec, id, raw_len, data);
            e.offset = pack.len() as u64;
            pack.extend_from_slice(&encode_record_header(&e));
            pack.extend_from_slice(data);
            entries.push(e);
        };
        let mut chunks = Vec::new();
        for i in 0..4u8 {
            let c: Vec<u8> = (0..3000u32)
                .map(|j| (j as u8).wrapping_mul(i ^ seed) ^ (j >> 7) as u8)
                .collect();
            let (codec, z) = compress(&c, 3).unwrap();
            push(
                &mut pack,
                Kind::Chunk,
                codec,
                Hash::of(&c),
                c.len() as u32,
                z.as_deref().unwrap_or(&c),
            );
            chunks.push(c);
        }
        let all: Vec<u8> = chunks.concat();
        let m = Manifest {
            size: all.len() as u64,
            digests: crate::hash::FileDigests {
                blake3: Hash::of(&all),
                sha256: [seed; 32],
                sha1: None,
                sha512: None,
                md5: None,
            },
            created_ms: 5,
            chunks: chunks
                .iter()
                .map(|c| crate::manifest::ChunkRef {
                    id: Hash::of(c),
                    len: c.len() as u32,
                })
                .collect(),
            recipe: None,
        };
        let enc = m.encode();
        push(
            &mut pack,
            Kind::Blob,
            Codec::Raw,
            m.digests.blake3,
            enc.len() as u32,
            &enc,
        );
        let rec = crate::pack::format::encode_ref("ns", 1);
        push(
            &mut pack,
            Kind::Ref,
            Codec::Raw,
            m.digests.blake3,
            rec.len() as u32,
            &rec,
        );
        let off = pack.len() as u64;
        pack.extend_from_slice(&encode_footer(&entries, off));
        (pack, off)
    }

    fn verify(pack: &[u8], layout: Layout) -> Verified {
        let mut src = pack;
        verify_pack(&mut src, 9, pack.len() as u64, layout, &mut |_| true).unwrap()
    }

    #[test]
    fn an_intact_pack_is_clean() {
        let (pack, off) = sealed_pack(1);
        let v = verify(&pack, Layout::Sealed);
        assert!(v.is_clean(), "{v:?}");
        assert_eq!(v.records_ok, 6);
        assert!(v.bytes >= pack.len() as u64 && v.bytes < 2 * pack.len() as u64, "{v:?}");
        let v = verify(&pack[..off as usize], Layout::Open);
        assert!(v.is_clean(), "{v:?}");
        assert_eq!(v.records_ok, 6);
    }

    proptest! {
        // Any flipped byte anywhere in a sealed pack is found, and the
        // records the flip did not touch are still verified.
        #[test]
        fn any_flipped_byte_is_found(at in 0usize..100_000, bit in 0u8..8, seed in 0u8..4) {
            let (mut pack, _) = sealed_pack(seed);
            let at = at % pack.len();
            // The pack's creation time in its header is covered by nothing.
            pack[at] ^= 1 << bit;
            let v = verify(&pack, Layout::Sealed);
            if (24..32).contains(&at) {
                prop_assert!(v.is_clean());
            } else {
                prop_assert!(!v.is_clean(), "flip at {} not found", at);
                prop_assert!(v.records_ok >= 4, "{:?}", v);
            }
        }

        // Whatever a hostile pack holds, verification ends with findings
        // or a clean bill, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000), sealed in any::<bool>()) {
            let layout = if sealed { Layout::Sealed } else { Layout::Open };
            let _ = verify(&bytes, layout);
        }
    }

    #[test]
    fn the_scan_resumes_after_a_damaged_record_header() {
        let (mut pack, off) = sealed_pack(2);
        // The second record's header.
        let (n, _) = format::decode_trailer(&pack[pack.len() - TRAILER_LEN..]).unwrap();
        assert_eq!(n, 6);
        let second = format::decode_footer(&pack[off as usize..]).unwrap()[1];
        pack[second.offset as usize + 20] ^= 0x40;
        let v = verify(&pack, Layout::Sealed);
        assert_eq!(v.records_ok, 5, "{v:?}");
        assert!(v.findings[0].offset == second.offset, "{v:?}");
        assert!(
            v.findings.iter().any(|f| f.problem.contains("footer lists a record")),
            "{v:?}"
        );
        // The same pack, unsealed (a staged file): the same record is lost.
        let v = verify(&pack[..off as usize], Layout::Open);
        assert_eq!(v.records_ok, 5, "{v:?}");
        assert_eq!(v.findings.len(), 1, "{v:?}");
    }

    #[test]
    fn a_stop_from_pace_ends_the_scan_early() {
        let (pack, _) = sealed_pack(3);
        let mut src = &pack[..];
        let v = verify_pack(&mut src, 9, pack.len() as u64, Layout::Sealed, &mut |_| false).unwrap();
        assert!(v.records_ok < 6);
    }

    #[test]
    fn windows_smaller_than_the_pack_see_the_same() {
        // Many records across several windows, one damaged far in.
        let mut pack = encode_header(9, 0).to_vec();
        let mut entries = Vec::new();
        for i in 0..50u32 {
            let c: Vec<u8> = (0..200_000u32)
                .map(|j| ((j * 2654435761u32.wrapping_add(i)) >> 13) as u8)
                .collect();
            let mut e = Entry::new(Kind::Chunk, Codec::Raw, Hash::of(&c), c.len() as u32, &c);
            e.offset = pack.len() as u64;
            pack.extend_from_slice(&encode_record_header(&e));
            pack.extend_from_slice(&c);
            entries.push(e);
        }
        let off = pack.len() as u64;
        pack.extend_from_slice(&encode_footer(&entries, off));
        assert!(pack.len() > 2 * WINDOW);
        assert!(verify(&pack, Layout::Sealed).is_clean());
        let victim = entries[31];
        pack[victim.offset as usize + 5] ^= 1;
        let v = verify(&pack, Layout::Sealed);
        assert_eq!(v.records_ok, 49, "{v:?}");
        assert_eq!(v.findings[0].offset, victim.offset);
        pack[victim.offset as usize + 5] ^= 1;
        pack[victim.offset as usize + 1000] ^= 1;
        let v = verify(&pack, Layout::Sealed);
        assert_eq!(v.records_ok, 49, "{v:?}");
        assert!(v.findings[0].problem.contains("data checksum"), "{v:?}");
    }
}
