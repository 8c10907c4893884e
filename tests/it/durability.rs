//! Restarts and kill -9: no acknowledged blob is ever lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stowage::api::client::header;

use crate::harness::*;

#[tokio::test]
async fn blobs_survive_a_clean_restart() {
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    let mut stored = Vec::new();
    for i in 0..5u64 {
        let data = if i % 2 == 0 {
            random_bytes(i, 400_000)
        } else {
            text_bytes(i, 400_000)
        };
        let h = put(&c, "p", data.clone()).await;
        stored.push((h, data));
    }
    let stats = c.stats().await.unwrap();
    d.restart().await;
    let c = d.client().await;
    for (h, data) in &stored {
        assert!(c.get_bytes("p", h, 0, None).await.unwrap() == *data);
    }
    let after = c.stats().await.unwrap();
    assert_eq!(
        (after.logical_bytes, after.physical_bytes, after.chunks, after.blobs),
        (stats.logical_bytes, stats.physical_bytes, stats.chunks, stats.blobs)
    );
    // Dedup still knows the old chunks after the restart.
    let again = c.put_bytes(header("p"), stored[0].1.clone()).await.unwrap();
    assert_eq!(again.added_bytes, 0);
}

#[tokio::test]
async fn kill_9_during_concurrent_uploads_loses_no_acknowledged_blob() {
    // Small packs so sealing and uploading happen while we kill.
    let mut d = Daemon::start("pack_target_size = \"512KiB\"").await;
    let acked: Arc<Mutex<Vec<(String, u64, usize)>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let c = d.client().await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let seed = w * 1_000_000 + i;
                let len = 1000 + (seed as usize * 7919) % 700_000;
                let data = if i % 3 == 0 {
                    text_bytes(seed, len)
                } else {
                    random_bytes(seed, len)
                };
                match c.put_bytes(header("k"), data.clone()).await {
                    Ok(r) => acked.lock().unwrap().push((r.digests.unwrap().blake3, seed, len)),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill once uploads are acknowledged and packs are being sealed.
    let packs = d.data_dir().join("packs");
    eventually(
        Duration::from_secs(60),
        "uploads and sealed packs before the kill",
        || async {
            let (n, sealed) = (acked.lock().unwrap().len(), pack_files(&packs).len());
            match n >= 30 && sealed >= 3 {
                true => Ok(()),
                false => Err(format!("{n} uploads acknowledged, {sealed} packs sealed")),
            }
        },
    )
    .await;
    d.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "too few uploads before the kill: {}", acked.len());

    d.spawn().await;
    let c = d.client().await;
    for (h, seed, len) in &acked {
        let i = seed % 1_000_000;
        let want = if i % 3 == 0 {
            text_bytes(*seed, *len)
        } else {
            random_bytes(*seed, *len)
        };
        let got = c
            .get_bytes("k", h, 0, None)
            .await
            .unwrap_or_else(|e| panic!("acked blob {h} lost: {e:?}"));
        assert!(got == want, "acked blob {h} differs");
    }
    // And the store keeps working, and survives a second kill.
    let r = c.put_bytes(header("k"), random_bytes(99, 300_000)).await.unwrap();
    d.kill9();
    d.spawn().await;
    let c = d.client().await;
    assert!(c.get_bytes("k", &r.digests.unwrap().blake3, 0, None).await.unwrap() == random_bytes(99, 300_000));
}

#[tokio::test]
async fn sigterm_closes_or_quiesces_the_index_before_exit() {
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    put(&c, "ns", random_bytes(1, 100_000)).await;
    d.stop();
    // Closed when nothing holds the engine any more; quiesced (RocksDB's
    // background threads stopped) while a client keeps its connection.
    let log = d.log();
    assert!(log.contains("index closed") || log.contains("index quiesced"), "{log}");
    drop(c);
}
