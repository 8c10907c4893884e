//! `admin rebuild-index` rebuilds an index that answers like the original.

use std::process::Command;

use stowage::api::client::{Client, header};
use stowage::api::pb;

use crate::harness::*;

async fn answers(c: &Client, blobs: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (ns, h) in blobs {
        let s = c.stat(ns, h).await.unwrap();
        let data = c.get_bytes(ns, h, 0, None).await.unwrap();
        out.push(format!(
            "{ns} {h} {:?} {} {} {} {}",
            s.digests,
            s.size,
            s.created_unix_ms,
            s.chunks,
            b3(&data)
        ));
    }
    for ns in ["a", "b", "nobody"] {
        let all = blobs.iter().map(|(_, h)| h.clone()).collect();
        out.push(format!("{ns} missing {:?}", c.find_missing(ns, all).await.unwrap()));
    }
    let s = c.stats().await.unwrap();
    out.push(format!(
        "stats {} {} {} {} {} {} {}",
        s.logical_bytes, s.unique_bytes, s.physical_bytes, s.chunks, s.blobs, s.references, s.packs
    ));
    out
}

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
