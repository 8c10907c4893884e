//! A damaged index is noticed: recovery never starts on a silently older
//! index, and a damaged table block is DATA_LOSS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stowage::api::client::{Client, Code, version_ref};
use stowage::api::pb;

use crate::harness::*;

/// RocksDB's log block size: a record header never straddles one.
const WAL_BLOCK: u64 = 32 << 10;

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// The index's live write-ahead log (the largest `.log` file).
fn wal(d: &Daemon) -> PathBuf {
    files_with_ext(&d.data_dir().join("index"), "log")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a write-ahead log")
}

fn flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
}

/// Runs the daemon on `d`'s config expecting it to refuse to start; returns its stderr.
fn refused(d: &Daemon) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&d.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(!status.success(), "the daemon exited cleanly: {err}");
            return err;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the daemon started on a damaged index");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Acknowledged uploads (blake3, bytes) and publishes (version, file name, blake3).
struct Acked {
    blobs: Vec<(String, bytes::Bytes)>,
    files: Vec<(pb::VersionRef, String, String)>,
}

/// Many small puts and publishes, all in the write-ahead log (the memtables
/// are far from full, so no table is written).
async fn fill(c: &Client, n: u64) -> Acked {
    let mut a = Acked {
        blobs: Vec::new(),
        files: Vec::new(),
    };
    for i in 0..n {
        let data = random_bytes(1000 + i, 2000 + (i as usize * 997) % 30_000);
        let h = put(c, "w", data.clone()).await;
        if i % 2 == 0 {
            let v = version_ref(
                "w",
                "p",
                pb::PackageType::Generic,
                &format!("pkg{}", i % 7),
                &format!("1.0.{i}"),
            );
            let name = format!("f{i}.tgz");
            c.publish_blob(v.clone(), &name, &h).await.unwrap();
            a.files.push((v, name, h.clone()));
        }
        a.blobs.push((h, data));
    }
    a
}

async fn expect_all_blobs(c: &Client, a: &Acked) {
    for (h, data) in &a.blobs {
        let got = c
            .get_bytes("w", h, 0, None)
            .await
            .unwrap_or_else(|e| panic!("acknowledged blob {h}: {e:?}"));
        assert!(got == *data, "acknowledged blob {h} differs");
    }
}

fn rebuild(d: &Daemon) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["admin", "rebuild-index", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_passes(d: &Daemon) {
    let out = d.cli(&["admin", "check", "--json"]);
    assert!(
        out.status.success(),
        "admin check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_flipped_byte_in_the_middle_of_the_wal_refuses_to_start_and_rebuild_restores() {
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    let acked = fill(&c, 160).await;
    drop(c);
    d.kill9();
    let wal = wal(&d);
    let len = std::fs::metadata(&wal).unwrap().len();
    assert!(len > 4 * WAL_BLOCK, "the log is only {len} bytes");
    assert!(
        files_with_ext(&d.data_dir().join("index"), "sst").is_empty(),
        "a table was written: the test wants everything in the log"
    );
    flip(&wal, len / 2);

    let err = refused(&d);
    assert!(err.contains("rebuild-index"), "{err}");
    assert!(err.contains("damaged"), "{err}");

    // rebuild-index reads what the damaged index still has, and every
    // acknowledged blob comes back from the packs.
    let report = rebuild(&d);
    assert!(
        report["salvaged"].as_str().is_some_and(|s| s.contains("damaged")),
        "{report}"
    );
    assert_eq!(report["blobs"], acked.blobs.len() as u64, "{report}");
    d.spawn().await;
    let c = d.client().await;
    expect_all_blobs(&c, &acked).await;
    check_passes(&d);
    // The store works: a new put and publish, kept over a restart.
    let data = random_bytes(7, 50_000);
    let h = put(&c, "w", data.clone()).await;
    let v = version_ref("w", "p", pb::PackageType::Generic, "after", "1.0.0");
    c.publish_blob(v, "after.tgz", &h).await.unwrap();
    drop(c);
    d.restart().await;
    let c = d.client().await;
    assert!(c.get_bytes("w", &h, 0, None).await.unwrap() == data);
    expect_all_blobs(&c, &acked).await;
}

#[tokio::test]
async fn a_wal_cut_short_is_caught_by_the_commit_mark() {
    // RocksDB takes a log that ends mid-record for a torn last write; the
    // commit mark knows that writes after the cut were acknowledged.
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    let acked = fill(&c, 100).await;
    drop(c);
    d.kill9();
    let wal = wal(&d);
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len / 2 + 5)
        .unwrap();
    let err = refused(&d);
    assert!(err.contains("lost acknowledged state"), "{err}");
    assert!(err.contains("rebuild-index"), "{err}");
    rebuild(&d);
    d.spawn().await;
    expect_all_blobs(&d.client().await, &acked).await;
    check_passes(&d);
}

#[tokio::test]
async fn a_torn_last_record_of_an_unacknowledged_write_still_starts() {
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    let mut acked = fill(&c, 40).await;
    // Keep the torn record inside one log block, as a real torn write is.
    let mut i = 0;
    while std::fs::metadata(wal(&d)).unwrap().len() % WAL_BLOCK > WAL_BLOCK - 1200 {
        let data = random_bytes(90_000 + i, 100);
        acked.blobs.push((put(&c, "w", data.clone()).await, data));
        i += 1;
    }
    drop(c);
    d.kill9();
    // A record header announcing 1000 bytes, and only part of them: what a
    // process killed in the middle of writing its next batch leaves.
    let mut torn = vec![0x5a, 0x17, 0xc3, 0x88, 0xe8, 0x03, 1];
    torn.extend(std::iter::repeat_n(0xab, 300));
    std::fs::OpenOptions::new()
        .append(true)
        .open(wal(&d))
        .unwrap()
        .write_all(&torn)
        .unwrap();
    d.spawn().await;
    let c = d.client().await;
    expect_all_blobs(&c, &acked).await;
    for (v, name, h) in &acked.files {
        let ver = c
            .catalog
            .clone()
            .get_version(pb::GetVersionRequest { r#ref: Some(v.clone()) })
            .await
            .unwrap()
            .into_inner();
        assert!(
            ver.file_list
                .iter()
                .any(|f| f.file_name == *name && f.digests.as_ref().unwrap().blake3 == *h),
            "file {name} lost"
        );
    }
    check_passes(&d);
}

#[tokio::test]
async fn a_flipped_byte_in_an_index_table_is_data_loss() {
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    let acked = fill(&c, 60).await;
    drop(c);
    // Reopening replays the log into tables.
    d.restart().await;
    d.stop();
    let index = d.data_dir().join("index");
    let tables: Vec<PathBuf> = files_with_ext(&index, "sst")
        .into_iter()
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            b.windows(5).any(|w| w == b"blobs")
        })
        .collect();
    assert_eq!(tables.len(), 1, "one table of manifests: {tables:?}");
    // The first data block starts the file.
    flip(&tables[0], 40);

    d.spawn().await;
    let c = d.client().await;
    let mut lost = 0;
    for (h, data) in &acked.blobs {
        match c.get_bytes("w", h, 0, None).await {
            Ok(got) => assert!(got == *data, "blob {h} differs"),
            Err(e) => {
                assert_eq!(e.code(), Code::DataLoss, "{e:?}");
                lost += 1;
            }
        }
    }
    assert!(lost > 0, "no read noticed the damaged block");
    let out = d.cli(&["admin", "check"]);
    assert!(!out.status.success(), "admin check passed on a damaged table");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data loss") || err.contains("DataLoss"), "{err}");
}
