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
    // Catalog entries, one of them in the trash.
    for (i, (ns, h)) in blobs.iter().enumerate() {
        let v = stowage::api::client::version_ref(ns, "p", pb::PackageType::Generic, "tool", &format!("1.{}", i % 2));
        let f = c
            .publish_blob(v.clone(), &format!("f{i}"), h)
            .await
            .unwrap()
            .file
            .unwrap();
        if i == 3 {
            let r = pb::FileRef {
                version: Some(v),
                file_id: f.file_id,
            };
            c.catalog.clone().delete_file(r).await.unwrap();
        }
    }
    let before = (answers(&c, &blobs).await, catalog_answers(&c).await);
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
    assert_eq!((answers(&c, &blobs).await, catalog_answers(&c).await), before);
    let check = c
        .admin
        .clone()
        .check(pb::CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(check.drift.is_empty(), "{:#?}", check.drift);
    assert_eq!(check.files, 6);
}

/// The catalog as listings show it, with the audit trail.
async fn catalog_answers(c: &stowage::api::client::Client) -> Vec<String> {
    let mut out = Vec::new();
    for ns in ["a", "b"] {
        let pkgs = c
            .catalog
            .clone()
            .list_packages(pb::ListPackagesRequest {
                namespace: ns.into(),
                state: pb::State::All as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for p in pkgs.packages {
            let vs = c
                .catalog
                .clone()
                .list_versions(pb::ListVersionsRequest {
                    package: p.r#ref.clone(),
                    state: pb::State::All as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            for v in vs.versions {
                let full = c
                    .catalog
                    .clone()
                    .get_version(pb::GetVersionRequest { r#ref: v.r#ref })
                    .await
                    .unwrap()
                    .into_inner();
                out.push(format!("{full:?}"));
            }
            out.push(format!("{p:?}"));
        }
    }
    let ev = c
        .audit
        .clone()
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    out.push(format!("{:?}", ev.events));
    out
}
