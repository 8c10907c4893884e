//! Damaged packs: recovery never cuts acknowledged data, `admin check
//! --read-data` and the scrubber find damage anywhere in a pack.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stowage::api::pb;
use stowage::pack::format::{self, Kind};

use crate::harness::*;

fn flip(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn metrics_config() -> String {
    "metrics_listen = \"127.0.0.1:0\"".into()
}

async fn metric(d: &Daemon, series: &str) -> f64 {
    let (_, _, body) = d.scrape().await;
    sample(&body, series).unwrap_or_else(|| panic!("{series} missing: {body}"))
}

async fn check(d: &Daemon, read_data: bool) -> pb::CheckResponse {
    let c = d.client().await;
    c.admin
        .clone()
        .check(pb::CheckRequest { read_data })
        .await
        .unwrap()
        .into_inner()
}

/// Stores `n` small (one-chunk) blobs; returns (hash, bytes) of each.
async fn small_blobs(d: &Daemon, n: u64) -> Vec<(String, bytes::Bytes)> {
    let c = d.client().await;
    let mut out = Vec::new();
    for i in 0..n {
        let data = random_bytes(1000 + i, 300 + (i as usize * 37) % 900);
        out.push((put(&c, "ns", data.clone()).await, data));
    }
    out
}

fn only_staged(d: &Daemon) -> PathBuf {
    let staged = pack_files(&d.data_dir().join("staging"));
    assert_eq!(staged.len(), 1, "{staged:?}");
    staged[0].clone()
}

fn records(path: &Path) -> Vec<format::Entry> {
    format::scan_records(&std::fs::read(path).unwrap()).unwrap().0
}

// The probe of the hardening issue: one flipped byte in the header of a
// record in the middle of the open staging pack, then a restart. The file
// used to be cut there, losing every acknowledged blob after it.
#[tokio::test]
async fn a_damaged_record_in_the_staging_pack_is_quarantined_not_cut() {
    let mut d = Daemon::start(&metrics_config()).await;
    let blobs = small_blobs(&d, 300).await;
    d.kill9();
    let path = only_staged(&d);
    let before = size(&path);
    let entries = records(&path);
    assert!(entries.len() >= 900, "{}", entries.len());
    // The chunk record nearest the middle, and the blob it belongs to (a
    // small blob is one chunk whose id is the blob's BLAKE3).
    let victim = *entries[entries.len() / 2..]
        .iter()
        .find(|e| e.kind == Kind::Chunk)
        .unwrap();
    let victim_blob = victim.id.to_hex();
    assert!(blobs.iter().any(|(h, _)| *h == victim_blob));
    flip(&path, victim.offset + 20);

    d.spawn().await;
    assert_eq!(size(&path), before, "a damaged staging pack must not be cut");
    let log = d.log();
    assert!(
        log.contains("staged pack is DAMAGED") && log.contains(&victim.offset.to_string()),
        "{log}"
    );
    assert!(!log.contains("cutting torn tail"), "{log}");
    let c = d.client().await;
    for (h, data) in &blobs {
        if *h == victim_blob {
            expect_data_loss(&c, "ns", h, data, "the damaged record").await;
        } else {
            assert_eq!(c.get_bytes("ns", h, 0, None).await.unwrap(), data[..], "{h}");
        }
    }
    let r = check(&d, false).await;
    assert_eq!(r.quarantined_packs, 1);
    let pack_id = path.file_stem().unwrap().to_str().unwrap();
    assert!(
        r.damage.iter().any(|x| x.pack == pack_id && x.location == "staging"),
        "{r:?}"
    );
    let cli = d.cli(&["admin", "check"]);
    assert!(!cli.status.success());
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(out.contains("quarantined: 1") && out.contains(pack_id), "{out}");
    assert_eq!(metric(&d, "stowage_packs_quarantined").await, 1.0);

    // New uploads go to a fresh pack; the damaged one is never appended to.
    let fresh = random_bytes(7, 5000);
    let h = put(&c, "ns", fresh.clone()).await;
    assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), fresh[..]);
    assert_eq!(size(&path), before);
    assert_eq!(pack_files(&d.data_dir().join("staging")).len(), 2);

    // And it stays so across restarts: found again, still whole, served.
    d.restart().await;
    assert_eq!(size(&path), before);
    assert_eq!(check(&d, false).await.quarantined_packs, 1);
    let c = d.client().await;
    for (h, data) in blobs.iter().filter(|(h, _)| *h != victim_blob).step_by(7) {
        assert_eq!(c.get_bytes("ns", h, 0, None).await.unwrap(), data[..]);
    }
    assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), fresh[..]);
}

// What a crash really leaves (a record cut short after the last
// acknowledged one, or stray bytes) is still cut.
#[tokio::test]
async fn a_torn_tail_after_the_acknowledged_records_is_still_cut() {
    for torn in ["short record", "garbage"] {
        let mut d = Daemon::start(&metrics_config()).await;
        let blobs = small_blobs(&d, 20).await;
        d.kill9();
        let path = only_staged(&d);
        let before = size(&path);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        match torn {
            "short record" => {
                // A whole record header, then a fraction of its data.
                let data = random_bytes(99, 4000);
                let mut e = format::Entry::new(Kind::Chunk, format::Codec::Raw, stowage::Hash::of(&data), 4000, &data);
                e.offset = before;
                f.write_all_at(&format::encode_record_header(&e), before).unwrap();
                f.write_all_at(&data[..1500], before + format::RECORD_HEADER_LEN as u64)
                    .unwrap();
            }
            _ => f.write_all_at(&random_bytes(98, 777), before).unwrap(),
        }
        drop(f);
        d.spawn().await;
        assert_eq!(size(&path), before, "{torn}: the torn tail is cut");
        assert!(d.log().contains("cutting torn tail"), "{torn}: {}", d.log());
        let c = d.client().await;
        for (h, data) in &blobs {
            assert_eq!(c.get_bytes("ns", h, 0, None).await.unwrap(), data[..]);
        }
        let r = check(&d, true).await;
        assert_eq!((r.quarantined_packs, r.damage.len()), (0, 0), "{torn}: {r:?}");
        assert_eq!(metric(&d, "stowage_packs_quarantined").await, 0.0);
        // Appends go on in the same pack, right after the last record.
        let more = random_bytes(97, 2000);
        let h = put(&c, "ns", more.clone()).await;
        assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), more[..]);
        assert_eq!(pack_files(&d.data_dir().join("staging")), vec![path.clone()]);
    }
}

/// A daemon that seals its packs quickly, with a few blobs stored and
/// every pack sealed into the pack store; returns the blobs.
async fn sealed_store(extra: &str) -> (Daemon, Vec<(String, bytes::Bytes)>) {
    let d = Daemon::start(&format!("pack_max_age = \"200ms\"\n{extra}")).await;
    let c = d.client().await;
    let mut blobs = Vec::new();
    for i in 0..3 {
        let data = random_bytes(50 + i, 200_000);
        blobs.push((put(&c, "ns", data.clone()).await, data));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let staged = pack_files(&d.data_dir().join("staging"));
        let empty = staged.iter().all(|p| size(p) == format::HEADER_LEN as u64);
        if empty && !pack_files(&d.data_dir().join("packs")).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "packs were not sealed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (d, blobs)
}

/// Footer entries and footer offset of a sealed pack file.
fn footer(path: &Path) -> (Vec<format::Entry>, u64) {
    let bytes = std::fs::read(path).unwrap();
    let (_, off) = format::decode_trailer(&bytes[bytes.len() - format::TRAILER_LEN..]).unwrap();
    (format::decode_footer(&bytes[off as usize..]).unwrap(), off)
}

#[tokio::test]
async fn check_read_data_finds_a_flipped_byte_anywhere_in_a_sealed_pack() {
    let (d, blobs) = sealed_store("").await;
    let clean = check(&d, true).await;
    assert!(clean.damage.is_empty() && clean.drift.is_empty(), "{clean:?}");
    assert!(clean.packs_verified >= 1 && clean.records_verified >= 9, "{clean:?}");
    assert!(clean.bytes_verified >= 600_000, "{clean:?}");
    let ok = d.cli(&["admin", "check", "--read-data"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // Without --read-data nothing is read.
    assert_eq!(check(&d, false).await.packs_verified, 0);

    let packs = pack_files(&d.data_dir().join("packs"));
    let path = packs
        .iter()
        .find(|p| footer(p).0.iter().any(|e| e.kind == Kind::Blob))
        .unwrap()
        .clone();
    let pack_id = path.file_stem().unwrap().to_str().unwrap().to_string();
    let (entries, footer_at) = footer(&path);
    let chunk = entries.iter().find(|e| e.kind == Kind::Chunk).unwrap();
    let manifest = entries.iter().find(|e| e.kind == Kind::Blob).unwrap();
    let end = size(&path);
    let data = format::RECORD_HEADER_LEN as u64;
    let targets = [
        ("chunk record", chunk.offset + data + 100, "data checksum"),
        ("chunk record header", chunk.offset + 10, "not a valid record"),
        ("manifest record", manifest.offset + data + 5, "data checksum"),
        ("footer", footer_at + 30, "footer"),
        ("trailer", end - 12, "trailer"),
        ("pack header", 2, "pack header"),
    ];
    for (what, at, problem) in targets {
        flip(&path, at);
        let r = check(&d, true).await;
        assert!(
            r.damage
                .iter()
                .any(|x| x.pack == pack_id && x.location == "store" && x.problem.contains(problem)),
            "{what}: {r:?}"
        );
        let cli = d.cli(&["admin", "check", "--read-data", "--json"]);
        assert!(!cli.status.success(), "{what}");
        let out = String::from_utf8_lossy(&cli.stdout);
        assert!(out.contains(&pack_id), "{what}: {out}");
        // Plain `admin check` never reads pack data.
        assert!(check(&d, false).await.damage.is_empty(), "{what}");
        flip(&path, at);
    }
    assert!(check(&d, true).await.damage.is_empty());
    let c = d.client().await;
    for (h, data) in &blobs {
        assert_eq!(c.get_bytes("ns", h, 0, None).await.unwrap(), data[..]);
    }
}

#[tokio::test]
async fn the_scrubber_finds_damage_on_its_own() {
    let (d, _) = sealed_store(&format!(
        "{}\n[scrub]\ninterval = \"300ms\"\nrate = \"64MiB\"\n",
        metrics_config()
    ))
    .await;
    let passes = "stowage_scrub_passes_total";
    let damaged = "stowage_scrub_damaged{kind=\"records\"}";
    // Until two more passes finished: the second started after `now`.
    let dd = &d;
    let two_more_passes = move || async move {
        let now = metric(dd, passes).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(dd, passes).await < now + 2.0 {
            assert!(Instant::now() < deadline, "no scrub pass");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    two_more_passes().await;
    assert_eq!(metric(&d, damaged).await, 0.0);
    assert!(metric(&d, "stowage_scrub_bytes_total").await >= 600_000.0);
    assert!(metric(&d, "stowage_scrub_packs_total").await >= 2.0);
    assert!(metric(&d, "stowage_scrub_last_pass_end_seconds").await > 1.0e9);

    let path = pack_files(&d.data_dir().join("packs"))[0].clone();
    let (entries, _) = footer(&path);
    flip(&path, entries[0].offset + format::RECORD_HEADER_LEN as u64 + 7);
    two_more_passes().await;
    assert_eq!(metric(&d, damaged).await, 1.0);
    assert_eq!(metric(&d, "stowage_scrub_damaged{kind=\"packs\"}").await, 1.0);
    assert!(metric(&d, "stowage_scrub_findings_total").await >= 1.0);
    assert!(d.log().contains("pack is DAMAGED"), "{}", d.log());
}
