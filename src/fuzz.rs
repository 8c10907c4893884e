//! Entry points for the cargo-fuzz targets in `fuzz/`: each takes arbitrary
//! bytes, runs one parser of hostile input the way the daemon runs it, and
//! panics only on a broken invariant (a decoder that accepts what its own
//! encoder would not write back, a chunk that decodes to the wrong bytes).
//! Errors are the expected answer to garbage.

use bytes::Bytes;

use crate::catalog::records::{self, DupPolicy, EventRec, FileRec, Ids, PackageRec, VersionRec};
use crate::hash::Hash;
use crate::index::{ChunkLoc, PackInfo, RefInfo, Stats, decode_ref_key, ref_key};
use crate::manifest::Manifest;
use crate::pack::format::{self, Entry, TRAILER_LEN};

/// Pack parsing: `data` read as an unsealed pack (recovery's record scans)
/// and as a sealed one (trailer and footer), every record either finds
/// opened and decoded as a read would, and the whole of it verified as
/// `admin check --read-data` and the scrubber do.
pub fn pack(data: &[u8]) {
    if let Ok(scan) = format::scan_past_damage(data) {
        assert!(scan.prefix_end as usize <= data.len(), "scan ends past the pack");
        let mut at = format::HEADER_LEN as u64;
        let mut gaps = scan.gaps.iter().peekable();
        for e in &scan.entries {
            while let Some(g) = gaps.next_if(|g| g.0 <= e.offset) {
                assert_eq!(g.0, at, "a gap does not start where the last record ended");
                at = g.1;
            }
            assert_eq!(e.offset, at, "records and gaps do not tile the pack");
            at += e.record_len();
        }
        let _ = format::whole_but_bad_record_at(data, scan.prefix_end as usize);
    }
    for layout in [crate::pack::verify::Layout::Open, crate::pack::verify::Layout::Sealed] {
        let mut src = data;
        let v = crate::pack::verify::verify_pack(&mut src, 0, data.len() as u64, layout, &mut |_| true)
            .expect("a byte slice never fails a read");
        assert!(
            v.bytes <= 2 * data.len() as u64 + 64,
            "verification read far more than the pack"
        );
    }
    if let Ok((entries, end)) = format::scan_records(data) {
        assert!(end as usize <= data.len(), "scan ends past the pack");
        for e in &entries {
            read_record(data, e);
        }
    }
    if data.len() >= TRAILER_LEN
        && let Ok((_, footer_offset)) = format::decode_trailer(&data[data.len() - TRAILER_LEN..])
        && let Some(footer) = data.get(footer_offset as usize..)
        && let Ok(entries) = format::decode_footer(footer)
    {
        for e in &entries {
            assert!(
                e.offset + e.record_len() <= footer_offset,
                "footer entry past the records"
            );
            read_record(data, e);
        }
    }
}

fn read_record(pack: &[u8], e: &Entry) {
    let Some(rec) = usize::try_from(e.offset)
        .ok()
        .and_then(|start| pack.get(start..start.checked_add(e.record_len() as usize)?))
    else {
        return;
    };
    let Ok((found, stored)) = format::open_record(rec, e.offset, e.kind, &e.id) else {
        return;
    };
    if let Ok(raw) = format::decode_chunk(&found, Bytes::copy_from_slice(stored)) {
        assert_eq!(raw.len(), found.raw_len as usize);
        assert_eq!(Hash::of(&raw), found.id, "a chunk decoded to bytes that are not its id");
    }
}

/// Manifest decoding: whatever decodes encodes back to the same bytes.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data, "manifest decoding is not canonical");
        assert_eq!(m.chunks.iter().map(|c| c.len as u64).sum::<u64>(), m.size);
    }
}

/// Index key and value decoding: the first byte picks a decoder, the rest is
/// its input. Whatever decodes encodes back to the same key or value (the
/// postcard records: re-encoding is stable).
pub fn index_keys(data: &[u8]) {
    let Some((&which, b)) = data.split_first() else { return };
    match which % 12 {
        0 => {
            if let Ok((ns, id)) = decode_ref_key(b) {
                assert_eq!(ref_key(&ns, &id), b);
            }
        }
        1 => {
            if let Ok(p) = records::parse_package_key(b) {
                assert_eq!(records::package_key(&p), b);
            }
        }
        2 => {
            if let Ok((a, c)) = records::split_u64s(b) {
                assert_eq!(records::version_key(a, c), b);
            }
        }
        3 => {
            if let Ok(v) = ChunkLoc::decode(b) {
                assert_eq!(ChunkLoc::decode(&v.encode()).ok(), Some(v));
            }
        }
        4 => {
            if let Ok(v) = PackInfo::decode(b) {
                assert_eq!(PackInfo::decode(&v.encode()).ok(), Some(v));
            }
        }
        5 => {
            if let Ok(v) = RefInfo::decode(b) {
                assert_eq!(RefInfo::decode(&v.encode()).ok(), Some(v));
            }
        }
        6 => {
            if let Ok(v) = Stats::decode(b) {
                assert_eq!(Stats::decode(&v.encode()).ok(), Some(v));
            }
        }
        7 => stable::<PackageRec>(b),
        8 => stable::<VersionRec>(b),
        9 => stable::<FileRec>(b),
        10 => stable::<EventRec>(b),
        _ => {
            stable::<DupPolicy>(b);
            stable::<Ids>(b);
            let _ = records::be_u64(b);
        }
    }
}

fn stable<T: serde::Serialize + serde::de::DeserializeOwned>(b: &[u8]) {
    if let Ok(v) = records::decode::<T>(b, "fuzz") {
        let once = records::encode(&v);
        let again = records::encode(&records::decode::<T>(&once, "fuzz").expect("own encoding decodes"));
        assert_eq!(once, again, "record re-encoding is not stable");
    }
}

pub use crate::api::fuzz_request as request;

/// Container expansion: any bytes, read as a package, expand within the
/// budget and the recipe planned from them recreates them exactly.
pub fn expand(data: &[u8]) {
    use crate::expand::{self, Budget, recipe};
    let budget = Budget {
        time: std::time::Duration::from_secs(5),
        ..Budget::default()
    };
    let (nodes, _) = expand::expand(data, &budget);
    let planned = recipe::plan(nodes, data);
    let space: Vec<u8> = planned.streams().flatten().copied().collect();
    let decoded = recipe::Recipe::decode(&planned.recipe.encode()).expect("a planned recipe decodes");
    let mut back = Vec::with_capacity(data.len());
    recipe::recreate(&decoded, space.as_slice(), &mut |b| {
        back.extend_from_slice(b);
        Ok(())
    })
    .expect("a planned recipe recreates");
    assert!(back == data, "expansion does not recreate its input");
}

/// Recipe decoding: whatever decodes encodes back to the same bytes, and
/// recreating it from arbitrary streams ends in bytes or an error, never a
/// panic or an unbounded allocation.
pub fn recipe(data: &[u8]) {
    use crate::expand::recipe::{self, Recipe};
    let Ok(r) = Recipe::decode(data) else { return };
    assert_eq!(r.encode(), data, "recipe decoding is not canonical");
    let streams = [0x5au8; 4096];
    let _ = recipe::recreate(&r, streams.as_slice(), &mut |_| Ok(()));
    let _ = recipe::recreate_parallel(&r, || streams.as_slice(), 2, &mut |_| Ok(()));
}
