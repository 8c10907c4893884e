//! Space that comes back when an operator asks, and one set of figures
//! (issue 16): upload leases end at publish (and stored ones are ended at
//! open), `admin purge --now` empties a scope's trash, `gc --dry-run`
//! predicts the run, and every byte sits in a named bucket that adds up to
//! the data dir's size. Through the daemon and the CLI.

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use stowage::api::client::{Client, version_ref};
use stowage::api::pb::{self, PackageType as T};

use crate::harness::{Daemon, b3, eventually, put, random_bytes, sample, text_bytes};

/// Collection right away, any dead byte compacts, retired packs go at once,
/// a non-empty open pack is sealed within half a second, no GC worker.
const EAGER: &str = "pack_max_age = \"500ms\"\npack_target_size = \"2MiB\"\n";
const EAGER_GC: &str = "[gc]\ninterval = \"0s\"\ngrace = \"0s\"\ncompact_threshold = 0.0\npack_delete_delay = \"0s\"\n";

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn text(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pkg(ns: &str, project: &str, name: &str) -> pb::PackageRef {
    pb::PackageRef {
        namespace: ns.into(),
        project: project.into(),
        r#type: T::Npm as i32,
        name: name.into(),
    }
}

async fn publish(c: &Client, ns: &str, name: &str, version: &str, file: &str, data: bytes::Bytes) {
    let v = version_ref(ns, "web", T::Npm, name, version);
    c.publish_bytes(v, file, data).await.unwrap();
}

async fn delete(c: &Client, ns: &str, name: &str) {
    c.catalog.clone().delete_package(pkg(ns, "web", name)).await.unwrap();
}

/// Bytes of the pack files on disk (sealed and staged).
fn pack_bytes_on_disk(data: &Path) -> u64 {
    [data.join("packs"), data.join("staging")]
        .iter()
        .flat_map(|d| crate::harness::pack_files(d))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// The first scenario: with `trash_window = "0s"`, `admin purge`
/// released no reference, because every published blob kept its upload
/// lease. A lease now ends when a file uses the blob, published by stream
/// or by hash; a blob uploaded and never published keeps its lease.
#[tokio::test]
async fn an_upload_lease_ends_when_a_file_uses_the_blob() {
    let d = Daemon::start(&format!("trash_window = \"0s\"\n{EAGER}{EAGER_GC}")).await;
    let c = d.client().await;
    publish(&c, "acme", "streamed", "1.0.0", "a.tgz", random_bytes(1, 200_000)).await;
    let by_hash = random_bytes(2, 150_000);
    let h = put(&c, "acme", by_hash.clone()).await;
    let v = version_ref("acme", "web", T::Npm, "hashed", "1.0.0");
    c.publish_blob(v, "b.tgz", &h).await.unwrap();
    let pending = put(&c, "acme", random_bytes(3, 50_000)).await;
    delete(&c, "acme", "streamed").await;
    delete(&c, "acme", "hashed").await;
    let p = json(&d.cli(&["admin", "purge", "--json"]));
    assert_eq!(p["files"], 2, "{p}");
    assert_eq!(
        (p["references_released"].as_u64(), p["blobs_unreferenced"].as_u64()),
        (Some(2), Some(2)),
        "{p}"
    );
    assert_eq!(p["held_by_lease"]["blobs"], 0, "{p}");
    let gc = json(&d.cli(&["gc", "--json"]));
    assert!(gc["chunks_collected"].as_u64().unwrap() > 0, "{gc}");
    assert!(
        gc["bytes_collected"].as_u64().unwrap() >= 300_000,
        "random bytes do not compress: {gc}"
    );
    // The upload no file used yet keeps its lease.
    c.stat("acme", &pending).await.unwrap();
    let s = json(&d.cli(&["admin", "stats", "--json"]));
    assert_eq!(
        (s["leased_blobs"].as_u64(), s["leased_bytes"].as_u64()),
        (Some(1), Some(50_000)),
        "{s}"
    );
}

/// A store written before leases ended at publish (schema 5: a published
/// blob kept its 24 h lease) is migrated at open: the purge then releases
/// the references, and GC collects the chunks, with no clock moved.
#[tokio::test]
async fn leases_stored_on_published_blobs_are_ended_at_open() {
    use stowage::catalog::records as rec;
    use stowage::index::{Cf, Index, RefInfo, decode_ref_key};
    let mut d = Daemon::start(&format!("trash_window = \"0s\"\n{EAGER}{EAGER_GC}")).await;
    let c = d.client().await;
    publish(&c, "acme", "old", "1.0.0", "a.tgz", random_bytes(4, 120_000)).await;
    d.stop();
    {
        let index = Index::open(&d.data_dir().join("index")).unwrap();
        let mut txn = index.txn();
        let refs: Vec<_> = index.scan(Cf::Refs, &[], None, false).map(|kv| kv.unwrap()).collect();
        assert_eq!(refs.len(), 1);
        for (k, v) in refs {
            let mut r = RefInfo::decode(&v).unwrap();
            assert_eq!((r.files, r.lease_until_ms), (1, 0), "the lease ended at publish");
            // As schema 5 left it: the upload's lease, a day long, kept.
            r.lease_until_ms = stowage::now_ms() + 24 * 3600 * 1000;
            txn.put(Cf::Refs, k.to_vec(), r.encode());
            txn.put(Cf::CatalogIdx, rec::lease_key(r.lease_until_ms, &k), Vec::new());
            decode_ref_key(&k).unwrap();
        }
        txn.put(Cf::Meta, stowage::catalog::SCHEMA_KEY, 5u32.to_be_bytes().to_vec());
        index.commit(txn).unwrap();
    }
    d.spawn().await;
    let c = d.client().await;
    let check = d.cli(&["admin", "check", "--json"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    delete(&c, "acme", "old").await;
    let p = json(&d.cli(&["admin", "purge", "--json"]));
    assert_eq!(
        (p["files"].as_u64(), p["references_released"].as_u64()),
        (Some(1), Some(1)),
        "{p}"
    );
    let gc = json(&d.cli(&["gc", "--json"]));
    assert!(gc["bytes_collected"].as_u64().unwrap() >= 120_000, "{gc}");
}

/// `admin purge --now`: empties the trash of a scope at once (the trash
/// window is a month), audited, admin only; says what still holds the
/// purged files' blobs; then `gc --dry-run` says what `gc` does, the run
/// does exactly that (a pack fully dead is deleted) and the pack bytes on
/// disk shrink by what it said.
#[tokio::test]
async fn purge_now_empties_the_trash_and_gc_gives_the_bytes_back() {
    let d = Daemon::start(&format!("trash_window = \"30d\"\n{EAGER}{EAGER_GC}")).await;
    let c = d.client().await;
    let shared = random_bytes(10, 100_000);
    // A pack of its own for `left`: published, then sealed before the rest.
    publish(&c, "acme", "left", "1.0.0", "a.tgz", random_bytes(11, 400_000)).await;
    publish(&c, "acme", "left", "1.1.0", "a.tgz", random_bytes(12, 400_000)).await;
    d.wait_sealed().await;
    publish(&c, "acme", "left", "1.2.0", "shared.tgz", shared.clone()).await;
    publish(&c, "acme", "stays", "1.0.0", "shared.tgz", shared.clone()).await;
    publish(&c, "beta", "other", "1.0.0", "shared.tgz", shared.clone()).await;
    publish(&c, "acme", "kept", "1.0.0", "k.tgz", random_bytes(13, 50_000)).await;
    d.wait_sealed().await;
    delete(&c, "acme", "left").await;
    delete(&c, "acme", "kept").await;

    // Without --now the month-long window keeps everything, and says so.
    let p = json(&d.cli(&["admin", "purge", "--json"]));
    assert_eq!(p["files"], 0, "{p}");
    assert_eq!(p["trash_files"], 4, "{p}");
    assert!(p["trash_next_due_unix_ms"].as_i64().unwrap() > stowage::now_ms() + 29 * 24 * 3600 * 1000);
    // A scope needs --now; a package needs its project.
    let bad = d.cli(&["admin", "purge", "--namespace", "acme"]);
    assert!(!bad.status.success());
    let bad = d.cli(&[
        "admin",
        "purge",
        "--now",
        "--namespace",
        "acme",
        "--package",
        "npm:left",
    ]);
    assert!(!bad.status.success());

    let before_disk = pack_bytes_on_disk(&d.data_dir());
    let out = text(&d.cli(&[
        "admin",
        "purge",
        "--now",
        "--namespace",
        "acme",
        "--project",
        "web",
        "--package",
        "npm:left",
    ]));
    let line = |what: &str| {
        out.lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("{what}: {out}"))
    };
    assert!(line("files purged").split_whitespace().any(|w| w == "3"), "{out}");
    // The shared blob: still used by `stays` in acme (and by beta).
    assert!(line("still held by other files").contains("1"), "{out}");
    assert!(line("still held by upload lease").contains(" 0 "), "{out}");
    // The package's trash is empty; `kept`, another package, stays.
    assert!(line("files left in the trash").contains(" 0 "), "{out}");
    let rest = json(&d.cli(&["admin", "purge", "--json"]));
    assert_eq!(
        (rest["files"].as_u64(), rest["trash_files"].as_u64()),
        (Some(0), Some(1)),
        "{rest}"
    );
    assert!(out.lines().next().unwrap().starts_with("WHAT"), "a table: {out}");

    // Audited: one purge event per item, naming the caller.
    let audit = d.cli(&["audit", "list", "--namespace", "acme", "--json"]);
    let purges: Vec<serde_json::Value> = text(&audit)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "purge")
        .collect();
    assert_eq!(purges.len(), 1, "the package, once: {purges:?}");
    assert_eq!(purges[0]["actor"], "local-admin");
    assert_eq!(purges[0]["name"], "left");

    // The dry run predicts the run: the first pack is fully dead.
    let dry = json(&d.cli(&["gc", "--dry-run", "--json"]));
    let run = json(&d.cli(&["gc", "--json"]));
    for k in [
        "chunks_collected",
        "bytes_collected",
        "packs_compacted",
        "records_copied",
        "bytes_copied",
        "packs_deleted",
        "bytes_deleted",
        "chunks_condemned",
        "bytes_condemned",
        "dead_bytes",
    ] {
        assert_eq!(dry[k], run[k], "{k}: dry run {dry}, run {run}");
    }
    assert!(run["packs_deleted"].as_u64().unwrap() >= 1, "{run}");
    assert!(run["bytes_collected"].as_u64().unwrap() >= 800_000, "{run}");
    d.wait_sealed().await;
    let after_disk = pack_bytes_on_disk(&d.data_dir());
    let freed = run["bytes_deleted"].as_u64().unwrap() - run["bytes_copied"].as_u64().unwrap();
    assert!(
        before_disk - after_disk >= freed.saturating_sub(4096) && before_disk > after_disk + 800_000,
        "pack bytes on disk went from {before_disk} to {after_disk}; gc said {run}"
    );
    // The shared file still reads; `kept` is still restorable.
    let got = c.get_bytes("beta", &b3(&shared), 0, None).await.unwrap();
    assert!(got == shared.as_ref());
    c.catalog
        .clone()
        .restore_package(pkg("acme", "web", "kept"))
        .await
        .unwrap();
    let check = d.cli(&["admin", "check", "--json"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    // The gc table, readable by default.
    let table = text(&d.cli(&["gc", "--dry-run"]));
    assert!(
        table.starts_with("WHAT") && table.contains("packs to delete"),
        "{table}"
    );
}

/// Everything else in the purge table: a blob uploaded again (its lease
/// renewed) holds its bytes until the lease ends; chunks condemned wait
/// for the grace period, and the table says until when.
#[tokio::test]
async fn purge_says_what_a_lease_and_the_grace_period_hold_and_until_when() {
    let d =
        Daemon::start("trash_window = \"30d\"\nupload_lease = \"2h\"\n[gc]\ninterval = \"0s\"\ngrace = \"1h\"\n").await;
    let c = d.client().await;
    let data = random_bytes(20, 60_000);
    publish(&c, "acme", "x", "1.0.0", "x.tgz", data.clone()).await;
    put(&c, "acme", data.clone()).await; // uploaded again, not yet published
    publish(&c, "acme", "y", "1.0.0", "y.tgz", random_bytes(21, 70_000)).await;
    delete(&c, "acme", "x").await;
    delete(&c, "acme", "y").await;
    let t0 = stowage::now_ms();
    let p = json(&d.cli(&["admin", "purge", "--now", "--namespace", "acme", "--json"]));
    assert_eq!(p["held_by_lease"]["blobs"], 1, "{p}");
    assert_eq!(p["held_by_lease"]["bytes"], 60_000, "{p}");
    let until = p["lease_until_unix_ms"].as_i64().unwrap();
    assert!(
        (t0 + 7_000_000..t0 + 7_300_000).contains(&until),
        "two hours on: {until} vs {t0}"
    );
    assert!(p["bytes_condemned"].as_u64().unwrap() >= 70_000, "{p}");
    let after = p["collectable_after_unix_ms"].as_i64().unwrap();
    assert!((t0 + 3_500_000..t0 + 3_700_000).contains(&after), "{after}");
    let gc = json(&d.cli(&["gc", "--json"]));
    assert_eq!(gc["chunks_collected"], 0, "in their grace period: {gc}");
}

/// One set of figures (`crate::figures`): `admin stats`, `/metrics` and
/// the report agree; logical is never below unique; the optimization is
/// not negative with trash and leases; `/metrics` has the catalog counts,
/// trash and lease bytes, free disk and the last GC and sweep times.
#[tokio::test]
async fn one_set_of_figures_everywhere() {
    let d = Daemon::start(&format!("metrics_listen = \"127.0.0.1:0\"\n{EAGER}")).await;
    let c = d.client().await;
    let shared = text_bytes(30, 300_000);
    publish(&c, "acme", "a", "1.0.0", "a.tgz", shared.clone()).await;
    publish(&c, "acme", "a", "1.1.0", "a.tgz", shared.clone()).await;
    publish(&c, "beta", "b", "1.0.0", "b.tgz", shared.clone()).await;
    publish(&c, "beta", "c", "1.0.0", "c.tgz", text_bytes(31, 100_000)).await;
    delete(&c, "beta", "c").await;
    put(&c, "beta", random_bytes(32, 40_000)).await;
    let s = json(&d.cli(&["admin", "stats", "--json"]));
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k}: {s}"));
    // logical: 3 files of 300 000 + 100 000 in the trash + 40 000 leased.
    assert_eq!(n("logical_bytes"), 1_040_000, "{s}");
    assert_eq!(n("unique_bytes"), 440_000, "{s}");
    let dedup = s["dedup_ratio"].as_f64().unwrap();
    assert!((dedup - 1_040_000.0 / 440_000.0).abs() < 1e-9, "{s}");
    let compression = s["compression_ratio"].as_f64().unwrap();
    assert!(
        (compression - 440_000.0 / n("physical_bytes") as f64).abs() < 1e-9,
        "{s}"
    );
    assert_eq!((n("packages"), n("versions"), n("files")), (2, 3, 3), "{s}");
    assert_eq!((n("trash_files"), n("trash_bytes")), (1, 100_000), "{s}");

    let t0 = stowage::now_ms() as f64 / 1000.0;
    json(&d.cli(&["gc", "--json"]));
    text(&d.cli(&["retention", "sweep"]));
    let (_, _, body) = d.scrape().await;
    let m = |series: &str| sample(&body, series).unwrap_or_else(|| panic!("{series}: {body}"));
    assert!((m("stowage_dedup_ratio") - dedup).abs() < 1e-9, "{body}");
    assert!((m("stowage_compression_ratio") - compression).abs() < 1e-9, "{body}");
    assert_eq!(m("stowage_store_bytes{kind=\"logical\"}"), 1_040_000.0);
    assert_eq!(m("stowage_store_bytes{kind=\"trash\"}"), 100_000.0);
    assert_eq!(m("stowage_store_bytes{kind=\"leased\"}"), 40_000.0);
    assert_eq!(m("stowage_catalog_objects{kind=\"packages\"}"), 2.0);
    assert_eq!(m("stowage_catalog_objects{kind=\"versions\"}"), 3.0);
    assert_eq!(m("stowage_catalog_objects{kind=\"files\"}"), 3.0);
    assert!(m("stowage_disk_free_bytes") > 0.0);
    assert!(m("stowage_gc_last_run_timestamp_seconds") >= t0.floor(), "{body}");
    assert!(m("stowage_sweep_last_run_timestamp_seconds") >= t0.floor(), "{body}");
    assert!(m("stowage_gc_last_run_duration_seconds") >= 0.0);

    let r = json(&d.cli(&["report", "--format", "json"]));
    let sum = &r["summary"];
    assert_eq!(sum["logical_bytes"], 1_040_000, "{sum}");
    assert_eq!(sum["physical_bytes"], s["physical_bytes"], "{sum}");
    assert!((sum["dedup_ratio"].as_f64().unwrap() - dedup).abs() < 1e-9, "{sum}");
    assert!(sum["optimization_percent"].as_f64().unwrap() > 0.0, "{sum}");
    let table = text(&d.cli(&["admin", "stats"]));
    assert!(
        table.starts_with("FIGURE") && table.contains("dedup ratio") && table.contains("KiB"),
        "{table}"
    );
    assert!(table.contains("data dir, measured"), "{table}");
}

/// Every byte in a named bucket: after a random sequence of publishes,
/// deletes, purges and GC (daemon and CLI), the buckets add up to the data
/// dir, measured by the daemon in the same call; the chunk buckets add up
/// to physical; the pack files on disk are what the index says; nothing
/// in the data dir is unnamed.
#[tokio::test]
async fn the_buckets_add_up_to_the_data_dir() {
    let d = Daemon::start(&format!("trash_window = \"30d\"\n{EAGER}{EAGER_GC}")).await;
    let c = d.client().await;
    let mut rng = StdRng::seed_from_u64(16);
    let mut live: Vec<String> = Vec::new();
    for step in 0..40u64 {
        match rng.random_range(0..10) {
            0..5 => {
                let name = format!("p{}", rng.random_range(0..8));
                let data = if rng.random_bool(0.3) {
                    text_bytes(step, 80_000)
                } else {
                    random_bytes(step % 7, 60_000)
                };
                let v = version_ref("acme", "web", T::Npm, &name, &format!("1.{step}.0"));
                if c.publish_bytes(v, "f.tgz", data).await.is_ok() && !live.contains(&name) {
                    live.push(name);
                }
            }
            5 | 6 if !live.is_empty() => {
                let name = live.swap_remove(rng.random_range(0..live.len()));
                delete(&c, "acme", &name).await;
            }
            7 => {
                put(&c, "beta", random_bytes(100 + step, 30_000)).await;
            }
            8 => {
                json(&d.cli(&["admin", "purge", "--now", "--namespace", "acme", "--json"]));
            }
            _ => {
                json(&d.cli(&["gc", "--json"]));
            }
        }
        if step % 10 == 9 {
            buckets_add_up(&d).await;
        }
    }
}

async fn buckets_add_up(d: &Daemon) {
    d.wait_sealed().await;
    let s = eventually(Duration::from_secs(30), "buckets add up to the data dir", || async {
        let s = json(&d.cli(&["admin", "stats", "--json"]));
        let sp = &s["space"];
        match sp["total_bytes"] == sp["data_dir_bytes"] {
            true => Ok(s),
            false => Err(format!("{sp}")),
        }
    })
    .await;
    let sp = &s["space"];
    let n = |k: &str| sp[k].as_u64().unwrap_or_else(|| panic!("{k}: {sp}"));
    assert_eq!(n("other_bytes"), 0, "{sp}");
    assert!(n("index_bytes") > 0, "{sp}");
    assert_eq!(
        n("active_bytes") + n("trash_bytes") + n("lease_bytes"),
        s["physical_bytes"].as_u64().unwrap(),
        "{s}"
    );
    let packs: u64 = [
        "active_bytes",
        "trash_bytes",
        "lease_bytes",
        "condemned_bytes",
        "dead_bytes",
        "retired_pack_bytes",
        "pack_overhead_bytes",
    ]
    .iter()
    .map(|k| n(k))
    .sum();
    assert_eq!(packs, n("pack_bytes"), "{sp}");
    assert_eq!(pack_bytes_on_disk(&d.data_dir()), n("pack_bytes"), "{sp}");
    assert_eq!(
        n("pack_bytes") + n("index_bytes") + n("daemon_files_bytes") + n("other_bytes"),
        n("total_bytes"),
        "{sp}"
    );
    // The report shows the same sum beside the same measurement.
    let r = json(&d.cli(&["report", "--format", "json"]));
    let rs = &r["summary"]["space"];
    assert_eq!(rs["pack_bytes"], sp["pack_bytes"], "{rs}");
    assert_eq!(rs["active_bytes"], sp["active_bytes"], "{rs}");
    let table = text(&d.cli(&["report"]));
    assert!(
        table.contains("data dir, measured") && table.contains("held by upload lease"),
        "{table}"
    );
}
