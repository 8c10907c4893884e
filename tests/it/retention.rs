//! Retention through the running daemon: policies set and shown by the
//! CLI, a plan whose physical bytes equal what sweep + purge + gc really
//! free on the pack files, GC racing uploads, and kill -9 during compaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use stowage::api::client::{Client, version_ref};
use stowage::api::pb::{self, PackageType as T};
use stowage::pack::format::{self, Kind};

use crate::harness::{Daemon, random_bytes};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Collection right away, any dead byte compacts, retired packs go at once,
/// and a non-empty open pack is sealed within half a second.
const EAGER_GC: &str = "pack_max_age = \"500ms\"\npack_target_size = \"2MiB\"\ntrash_window = \"1day\"\n\
    [gc]\ninterval = \"0s\"\ngrace = \"0s\"\ncompact_threshold = 0.0\npack_delete_delay = \"0s\"\n";

/// Stored bytes of every chunk record in every pack file on disk (sealed
/// packs in the store and staged ones): measured on the files, not counters.
fn chunk_bytes_on_disk(data: &Path) -> u64 {
    let mut total = 0;
    for dir in [data.join("packs"), data.join("staging")] {
        for p in crate::harness::pack_files(&dir) {
            let bytes = std::fs::read(&p).unwrap();
            let entries = match format::decode_trailer(&bytes[bytes.len().saturating_sub(format::TRAILER_LEN)..]) {
                Ok((_, at)) => format::decode_footer(&bytes[at as usize..]).unwrap(),
                Err(_) => format::scan_records(&bytes).unwrap().0,
            };
            total += entries
                .iter()
                .filter(|e| e.kind == Kind::Chunk)
                .map(|e| e.stored_len as u64)
                .sum::<u64>();
        }
    }
    total
}

async fn publish(c: &Client, ns: &str, name: &str, version: &str, file: &str, data: Bytes) -> u64 {
    let v = version_ref(ns, "web", T::Npm, name, version);
    let r = c.publish_bytes(v, file, data).await.unwrap();
    r.file.unwrap().file_id
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_frees_exactly_what_sweep_purge_and_gc_free() {
    let d = Daemon::start(EAGER_GC).await;
    let c = d.client().await;
    // acme/app: 5 versions of two files each. Every version shares one
    // 300 KiB piece with the next, so dedup decides what is really freed.
    let pieces: Vec<Bytes> = (0..6).map(|i| random_bytes(100 + i, 300 << 10)).collect();
    let mut kept = Vec::new();
    for i in 0..5usize {
        let ver = format!("1.{i}.0");
        let body = Bytes::from([pieces[i].as_ref(), pieces[i + 1].as_ref()].concat());
        publish(&c, "acme", "app", &ver, "app.tgz", body.clone()).await;
        let own = random_bytes(200 + i as u64, 200 << 10);
        publish(&c, "acme", "app", &ver, "extra.bin", own.clone()).await;
        if i >= 3 {
            kept.push(("acme", body));
            kept.push(("acme", own));
        }
    }
    // 1.0.0's extra file is also in another tenant's package: it stays stored.
    let shared = random_bytes(200, 200 << 10);
    publish(&c, "other", "lib", "1.0.0", "x.bin", shared.clone()).await;
    kept.push(("other", shared));
    // Three copies of one file name in 1.4.0: the duplicate rule removes two.
    for n in 0..3u64 {
        publish(&c, "acme", "app", "1.4.0", "dup.txt", random_bytes(300 + n, 64 << 10)).await;
    }
    kept.push(("acme", random_bytes(302, 64 << 10)));

    let policy = d.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "name = \"app-cleanup\"\nnamespace = \"acme\"\npackage_types = [\"npm\"]\n\
         keep_n_duplicated_package_files = 1\nversions = { keep_latest = 2 }\n",
    )
    .unwrap();
    let out = d.cli(&["retention", "set", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = d.cli(&["retention", "show", "app-cleanup"]);
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("keep_latest = 2") && shown.contains("namespace = \"acme\""),
        "{shown}"
    );

    let plan = json_lines(&d.cli(&["retention", "plan", "--json"]));
    let (items, summary) = plan.split_at(plan.len() - 1);
    let summary = &summary[0]["summary"];
    let mut actions: Vec<String> = items
        .iter()
        .map(|i| format!("{} {} {}", i["action"], i["version"], i["file_name"]))
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "\"delete-file\" \"1.4.0\" \"dup.txt\"",
            "\"delete-file\" \"1.4.0\" \"dup.txt\"",
            "\"delete-version\" \"1.0.0\" \"\"",
            "\"delete-version\" \"1.1.0\" \"\"",
            "\"delete-version\" \"1.2.0\" \"\"",
        ]
    );
    assert_eq!(summary["versions"], 3);
    assert_eq!(summary["files"], 8);
    // Freed blobs: app.tgz of 1.0-1.2, extra.bin of 1.1-1.2 (1.0's is
    // shared with `other`), two dup.txt. Chunks: pieces 0-2 only (piece 3
    // is in 1.3.0, which stays).
    assert_eq!(summary["blobs_freed"], 7);
    let csv = d.cli(&["retention", "plan", "--csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(csv.starts_with("policy,action,"));

    d.wait_sealed().await;
    let before = chunk_bytes_on_disk(&d.data_dir());
    let sweep = json_lines(&d.cli(&["retention", "sweep", "--json"]));
    let last = sweep.last().unwrap();
    assert_eq!(last["finished"], true);
    assert_eq!(last["versions_deleted"], 3);
    assert_eq!(last["files_deleted"], 8);
    // Soft deletes: audited as the policy, restorable.
    let audit = json_lines(&d.cli(&["audit", "list", "--actor", "retention-policy", "--json"]));
    assert_eq!(audit.len(), 5);
    // Nothing is freed before the trash is purged.
    let gc = json_lines(&d.cli(&["gc", "--json"]));
    assert_eq!(gc[0]["chunks_collected"], 0);
    d.advance_clock(2 * DAY);
    let purged = json_lines(&d.cli(&["admin", "purge", "--json"]));
    assert_eq!(purged[0]["versions"], 3);
    d.wait_sealed().await;
    let dry = json_lines(&d.cli(&["gc", "--dry-run", "--json"]));
    assert_eq!(dry[0]["bytes_collected"], summary["physical_bytes"]);
    let gc = json_lines(&d.cli(&["gc", "--json"]));
    assert_eq!(gc[0]["bytes_collected"], summary["physical_bytes"], "{gc:?}");
    assert!(gc[0]["packs_compacted"].as_u64().unwrap() > 0);
    let after = chunk_bytes_on_disk(&d.data_dir());
    assert_eq!(
        before - after,
        summary["physical_bytes"].as_u64().unwrap(),
        "chunk bytes on disk went from {before} to {after}; the plan said {}",
        summary["physical_bytes"]
    );
    for (ns, data) in &kept {
        let got = c.get_bytes(ns, &crate::harness::b3(data), 0, None).await.unwrap();
        assert!(got == data.as_ref(), "a kept file changed");
    }
    let check = d.cli(&["admin", "check", "--json"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.dead_bytes, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_racing_uploads_never_loses_an_acknowledged_byte() {
    // Uploads without a file end their lease after 1 s and become garbage;
    // published files are kept. GC runs back to back the whole time.
    let d = Daemon::start(&format!(
        "upload_lease = \"1s\"\npurge_interval = \"100ms\"\n{EAGER_GC}"
    ))
    .await;
    let pool: Arc<Vec<Bytes>> = Arc::new((0..12).map(|i| random_bytes(1000 + i, 96 << 10)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let gc = {
        let (c, stop) = (d.client().await, stop.clone());
        tokio::spawn(async move {
            let mut runs = 0u64;
            let mut compacted = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .retention
                    .clone()
                    .collect_garbage(pb::GcRequest { dry_run: false })
                    .await;
                let r = r.unwrap().into_inner();
                compacted += r.packs_compacted;
                runs += 1;
            }
            (runs, compacted)
        })
    };
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (c, pool, stop) = (d.client().await, pool.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w);
            let mut acked: Vec<(String, Bytes)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Overlapping content: three pieces of the pool, sometimes a unique tail.
                let mut body = Vec::new();
                for _ in 0..3 {
                    body.extend_from_slice(&pool[rng.random_range(0..pool.len())]);
                }
                if rng.random_bool(0.3) {
                    body.extend_from_slice(&random_bytes(w << 32 | i, 20 << 10));
                }
                let body = Bytes::from(body);
                if rng.random_bool(0.5) {
                    let h = pb::PutHeader {
                        namespace: "race".into(),
                        ..Default::default()
                    };
                    // Not kept: its lease ends. A failure here (UNAVAILABLE, a
                    // chunk collected under the upload) is allowed and not acknowledged.
                    let _ = c.put_bytes(h, body).await;
                } else {
                    let v = version_ref("race", "p", T::Generic, &format!("w{w}"), &format!("{i}"));
                    match c.publish_bytes(v, "f.bin", body.clone()).await {
                        Ok(_) => acked.push((format!("w{w}/{i}"), body)),
                        Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}"),
                    }
                }
            }
            acked
        }));
    }
    // The race itself: uploads, publishes, lease ends and GC runs overlap
    // for this long (a duration of load, not a wait for some state).
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let (runs, compacted) = gc.await.unwrap();
    assert!(acked.len() > 50, "only {} publishes", acked.len());
    assert!(
        runs > 10 && compacted > 0,
        "gc ran {runs} times, compacted {compacted} packs"
    );
    // Let every lease end (the test clock, past the 1 s lease) and collect
    // everything collectable once the open pack is sealed, then read all back.
    d.advance_clock(Duration::from_secs(2));
    let c = d.client().await;
    c.admin.clone().purge(pb::PurgeRequest::default()).await.unwrap();
    d.wait_sealed().await;
    c.retention
        .clone()
        .collect_garbage(pb::GcRequest { dry_run: false })
        .await
        .unwrap();
    for (what, data) in &acked {
        let got = c.get_bytes("race", &crate::harness::b3(data), 0, None).await;
        let got = got.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert!(got == data.as_ref(), "{what}: bytes differ");
    }
    let check = d.cli(&["admin", "check", "--json"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let stats = c.stats().await.unwrap();
    assert!(stats.dead_bytes == 0 && stats.condemned_bytes == 0, "{stats:?}");
    eprintln!(
        "race: {} publishes kept, {runs} gc runs, {compacted} packs compacted",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_compaction_loses_nothing() {
    let mut d = Daemon::start(EAGER_GC).await;
    let c = d.client().await;
    let mut live: HashMap<u64, Bytes> = HashMap::new();
    for i in 0..64u64 {
        let data = random_bytes(5000 + i, 1 << 20);
        publish(&c, "k9", "pkg", &format!("1.0.{i}"), "f.bin", data.clone()).await;
        live.insert(i, data);
    }
    d.wait_sealed().await;
    let mut rng = StdRng::seed_from_u64(9);
    let mut interrupted = 0;
    for round in 0..6u64 {
        // New garbage in every pack: delete a few versions spread over the store.
        let c = d.client().await;
        for i in (round..64).step_by(8).filter(|i| i % 2 == 0) {
            if live.remove(&i).is_some() {
                let v = version_ref("k9", "web", T::Npm, "pkg", &format!("1.0.{i}"));
                c.catalog.clone().delete_version(v).await.unwrap();
            }
        }
        d.advance_clock(2 * DAY);
        c.admin.clone().purge(pb::PurgeRequest::default()).await.unwrap();
        d.wait_sealed().await;
        // Start a run and cut the daemon down while it works.
        let run = tokio::spawn(async move { c.retention.clone().collect_garbage(pb::GcRequest::default()).await });
        // A random point in the run to cut it at: part of the test, not a wait.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..25))).await;
        d.kill9();
        let finished = run.await.unwrap().is_ok();
        d.restart().await;
        let c = d.client().await;
        let left = c
            .retention
            .clone()
            .collect_garbage(pb::GcRequest { dry_run: true })
            .await
            .unwrap();
        let left = left.into_inner();
        interrupted += (!finished) as u32;
        eprintln!(
            "round {round}: run finished before the kill: {finished}; left {} bytes to collect, {} packs to compact, {} to delete",
            left.bytes_collected, left.packs_compacted, left.packs_deleted
        );
        for (i, data) in &live {
            let got = c.get_bytes("k9", &crate::harness::b3(data), 0, None).await;
            let got = got.unwrap_or_else(|e| panic!("round {round}, version {i}: {e:?}"));
            assert!(got == data.as_ref(), "round {round}, version {i}: bytes differ");
        }
        let check = d.cli(&["admin", "check", "--json"]);
        assert!(
            check.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of 6 runs were cut short by kill -9"
    );
    // A full run afterwards finishes the job.
    let c = d.client().await;
    c.retention
        .clone()
        .collect_garbage(pb::GcRequest::default())
        .await
        .unwrap();
    let stats = c.stats().await.unwrap();
    assert_eq!((stats.condemned_bytes, stats.dead_bytes), (0, 0), "{stats:?}");
    for data in live.values() {
        assert!(c.get_bytes("k9", &crate::harness::b3(data), 0, None).await.unwrap() == data.as_ref());
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rpcs_check_scope_and_namespace() {
    let token = |id: &str, scopes: &str, ns: &str| {
        let out = std::process::Command::new(crate::harness::BIN)
            .args(["token", "create", "--id", id, "--scopes", scopes, "--namespaces", ns])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let t = text.lines().nth(1).unwrap().trim_start_matches("# ").to_string();
        (t, text)
    };
    let (reader, r_entry) = token("reader", "read", "a");
    let (a_admin, a_entry) = token("a-admin", "read,write,delete,admin", "a");
    let d = Daemon::start(&format!("{r_entry}\n{a_entry}\n")).await;
    let policy = |ns: &str| pb::RetentionPolicy {
        name: format!("p-{ns}"),
        namespace: ns.into(),
        versions: Some(pb::RetentionRules {
            keep_latest: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rc = d.client_with(Some(&reader)).await.retention;
    let ac = d.client_with(Some(&a_admin)).await.retention;
    // Setting a policy needs admin on its namespace.
    assert_eq!(
        code(rc.clone().set_policy(policy("a")).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(ac.clone().set_policy(policy("b")).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(code(ac.clone().set_policy(policy("a")).await), tonic::Code::Ok);
    d.client().await.retention.set_policy(policy("b")).await.unwrap();
    // A bad policy says what is wrong.
    let mut bad = policy("a");
    bad.package_name = "(".into();
    let e = ac.clone().set_policy(bad).await.unwrap_err();
    assert!(
        e.code() == tonic::Code::InvalidArgument && e.message().contains("package_name"),
        "{e:?}"
    );
    // Reading: only policies of granted namespaces.
    let list = rc
        .clone()
        .list_policies(pb::ListPoliciesRequest::default())
        .await
        .unwrap();
    let names: Vec<_> = list.into_inner().policies.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["p-a"]);
    let get = |n: &str| pb::GetPolicyRequest {
        name: n.into(),
        ..Default::default()
    };
    // Another namespace's policy does not exist for this token (names are
    // per namespace); naming its namespace is refused for the grant.
    assert_eq!(code(rc.clone().get_policy(get("p-b")).await), tonic::Code::NotFound);
    let in_b = pb::GetPolicyRequest {
        name: "p-b".into(),
        namespace: "b".into(),
    };
    assert_eq!(
        code(rc.clone().get_policy(in_b.clone()).await),
        tonic::Code::PermissionDenied
    );
    // Plans read; sweeps delete; "every policy" needs every namespace.
    let req = |p: &str| pb::PlanRequest {
        policy: p.into(),
        namespace: String::new(),
    };
    assert_eq!(code(rc.clone().plan(req("p-a")).await), tonic::Code::Ok);
    assert_eq!(code(rc.clone().plan(req("p-b")).await), tonic::Code::NotFound);
    let plan_in_b = pb::PlanRequest {
        policy: "p-b".into(),
        namespace: "b".into(),
    };
    assert_eq!(code(rc.clone().plan(plan_in_b).await), tonic::Code::PermissionDenied);
    assert_eq!(code(rc.clone().plan(req("")).await), tonic::Code::PermissionDenied);
    assert_eq!(code(rc.clone().sweep(req("p-a")).await), tonic::Code::PermissionDenied);
    assert_eq!(code(ac.clone().sweep(req("p-a")).await), tonic::Code::Ok);
    assert_eq!(code(ac.clone().sweep(req("")).await), tonic::Code::PermissionDenied);
    // GC is store-wide.
    assert_eq!(
        code(ac.clone().collect_garbage(pb::GcRequest::default()).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(code(ac.clone().delete_policy(get("p-b")).await), tonic::Code::NotFound);
    assert_eq!(
        code(ac.clone().delete_policy(in_b).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(code(ac.clone().delete_policy(get("p-a")).await), tonic::Code::Ok);
    assert_eq!(code(ac.clone().delete_policy(get("p-a")).await), tonic::Code::NotFound);
}
