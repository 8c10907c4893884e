//! `admin rebuild-index` rebuilds an index that answers like the original.

use std::process::Command;

use stowage::api::client::header;
use stowage::api::pb;

use crate::harness::*;

#[tokio::test]
async fn rebuilt_index_gives_the_same_answers() {
    let mut d = Daemon::start("pack_target_size = \"256KiB\"").await;
    let c = d.client().await;
    let mut blobs = Vec::new();
    let shared = random_bytes(30, 600_000);
    for i in 0..6u64 {
        let ns = if i % 2 == 0 { "a" } else { "b" };
        let data = match i {
            0 | 1 => shared.clone(),
            2 => [shared.clone(), text_bytes(i, 200_000)].concat().into(),
            _ => text_bytes(i, 50_000 * i as usize),
        };
        let hd = pb::PutHeader {
            digests: vec![pb::Digest::Md5 as i32],
            ..header(ns)
        };
        let r = c.put_bytes(hd, data).await.unwrap();
        blobs.push((ns.to_string(), r.digests.unwrap().blake3));
    }
    // A rejected upload leaves unreferenced chunk records in a pack.
    let bad = pb::PutHeader {
        expected_sha256: "00".repeat(32),
        ..header("a")
    };
    c.put_bytes(bad, random_bytes(31, 500_000)).await.unwrap_err();
    let before = answers(&c, &blobs).await;
    d.stop();

    let out = Command::new(BIN)
        .args(["admin", "rebuild-index", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["missing_chunks"], 0);
    assert!(report["unreferenced_chunks"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["blobs"], 5);

    d.spawn().await;
    let c = d.client().await;
    assert_eq!(answers(&c, &blobs).await, before);
}
