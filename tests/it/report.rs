//! Capacity reports through the daemon, compared with an independent count
//! of a known dataset: chunk boundaries and stored sizes recomputed here,
//! exclusive and shared attribution after overlapping uploads and deletes.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use stowage::api::client::version_ref;
use stowage::api::pb::{self, PackageType as T};
use stowage::chunker::{ChunkParams, Chunker};
use stowage::hash::Hash;

use crate::harness::{Daemon, random_bytes};

/// (chunk id, stored length) of each distinct chunk of `data`.
fn chunks(data: &[u8]) -> HashMap<Hash, u64> {
    let mut out = HashMap::new();
    let mut c = Chunker::new(ChunkParams::default()).unwrap();
    let mut emit = |raw: &[u8]| -> Result<(), ()> {
        let (_, z) = stowage::pack::format::compress(raw, 3).unwrap();
        out.insert(Hash::of(raw), z.map_or(raw.len(), |z| z.len()) as u64);
        Ok(())
    };
    c.push(data, &mut emit).unwrap();
    c.finish(&mut emit).unwrap();
    out
}

/// Expected (physical, exclusive) of a group using `mine` when the other
/// groups use `others`.
fn expected(mine: &[&Bytes], others: &[&Bytes]) -> (u64, u64) {
    let mut m: HashMap<Hash, u64> = HashMap::new();
    for b in mine {
        m.extend(chunks(b));
    }
    let o: HashSet<Hash> = others.iter().flat_map(|b| chunks(b).into_keys()).collect();
    let physical = m.values().sum();
    let exclusive = m.iter().filter(|(id, _)| !o.contains(id)).map(|(_, n)| n).sum();
    (physical, exclusive)
}

fn group<'a>(r: &'a pb::CapacityReport, key: &str) -> &'a pb::CapacityGroup {
    r.groups
        .iter()
        .find(|g| g.key == key)
        .unwrap_or_else(|| panic!("no group {key} in {r:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_matches_an_independent_count() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let p: Vec<Bytes> = (0..5).map(|i| random_bytes(700 + i, 256 << 10)).collect();
    let cat = |a: &Bytes, b: &Bytes| Bytes::from([a.as_ref(), b.as_ref()].concat());
    let (b01, b12) = (cat(&p[0], &p[1]), cat(&p[1], &p[2]));
    let publish = |ns: &str, project: &str, name: &str, ver: &str, data: Bytes| {
        let (c, v, file) = (
            c.clone(),
            version_ref(ns, project, T::Npm, name, ver),
            format!("{name}.tgz"),
        );
        async move { c.publish_bytes(v, &file, data).await.unwrap() }
    };
    publish("a", "web", "x", "1", b01.clone()).await;
    publish("a", "web", "x", "2", b12.clone()).await;
    publish("a", "api", "y", "1", p[3].clone()).await;
    publish("a", "api", "y", "2", p[4].clone()).await;
    publish("b", "web", "x", "1", b01.clone()).await;
    // In the trash: still stored, still a's.
    c.catalog
        .clone()
        .delete_version(version_ref("a", "api", T::Npm, "y", "2"))
        .await
        .unwrap();

    let report = |by: &str, ns: &str| {
        let req = pb::CapacityRequest {
            namespace: ns.into(),
            by: by.into(),
            ..Default::default()
        };
        let mut r = c.report.clone();
        async move { r.capacity(req).await.unwrap().into_inner() }
    };
    let r = report("namespace", "").await;
    let a = group(&r, "a");
    assert_eq!((a.packages, a.versions, a.files), (2, 3, 3));
    assert_eq!(a.logical_bytes, 1280 << 10);
    assert_eq!((a.trash_files, a.trash_bytes), (1, 256 << 10));
    assert_eq!(a.unique_bytes, (512 + 512 + 256 + 256) << 10);
    let (phys, excl) = expected(&[&b01, &b12, &p[3], &p[4]], &[&b01]);
    assert_eq!((a.physical_bytes, a.exclusive_bytes), (phys, excl));
    assert_eq!(a.shared_bytes, phys - excl);
    let b = group(&r, "b");
    let (phys, _) = expected(&[&b01], &[]);
    assert_eq!((b.physical_bytes, b.exclusive_bytes, b.shared_bytes), (phys, 0, phys));
    assert_eq!(b.dedup_ratio, 1.0);
    let s = r.summary.unwrap();
    assert_eq!(s.artifacts_count, 4);
    assert_eq!(s.artifacts_bytes, (1280 + 512) << 10);
    assert_eq!(s.trash_bytes, 256 << 10);
    assert_eq!(s.binaries_count, 4);
    assert!(s.free_disk_bytes.unwrap() > 0);
    let all: HashMap<Hash, u64> = [&b01, &b12, &p[3], &p[4]].iter().flat_map(|x| chunks(x)).collect();
    assert_eq!(s.physical_bytes, all.values().sum::<u64>());

    // By package, within namespace a: b's copy of x still makes chunks shared.
    let r = report("package", "a").await;
    assert_eq!(r.groups.len(), 2, "{r:?}");
    let x = group(&r, "a/web/npm:x");
    assert_eq!(
        (x.physical_bytes, x.exclusive_bytes),
        expected(&[&b01, &b12], &[&b01, &p[3], &p[4]])
    );
    let y = group(&r, "a/api/npm:y");
    assert_eq!(
        (y.physical_bytes, y.exclusive_bytes),
        expected(&[&p[3], &p[4]], &[&b01, &b12])
    );
    assert_eq!(y.exclusive_bytes, y.physical_bytes);

    // By type and project; --top; formats through the CLI.
    let r = report("type", "").await;
    assert_eq!(r.groups.len(), 1);
    assert_eq!(group(&r, "npm").logical_bytes, (1280 + 512) << 10);
    let out = d.cli(&["report", "--by", "project", "--top", "1", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("a/web,"), "{csv}");
    let out = d.cli(&["report", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["groups"][0]["key"], "a");
    assert_eq!(v["summary"]["artifacts_count"], 4);
    let out = d.cli(&["report", "--by", "package"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("b/web/npm:x") && table.contains("optimization"),
        "{table}"
    );
    // A bad grouping is refused with the reason.
    let out = d.cli(&["report", "--by", "colour"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected namespace, project, package or type"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_snapshots_give_trends_and_a_self_contained_html_report() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let day = std::time::Duration::from_secs(24 * 3600);
    let report = |ns: &str| {
        let req = pb::CapacityRequest {
            namespace: ns.into(),
            ..Default::default()
        };
        let mut r = c.report.clone();
        async move { r.capacity(req).await.unwrap().into_inner() }
    };
    // Day 0: one package; then 10 days later "fast" grows by 1 MiB, "slow" by 64 KiB.
    let publish = |name: &str, ver: &str, seed: u64, len: usize| {
        let (c, v, f) = (
            c.clone(),
            version_ref("t", "p", T::Generic, name, ver),
            format!("{name}.bin"),
        );
        async move { c.publish_bytes(v, &f, random_bytes(seed, len)).await.unwrap() }
    };
    publish("slow", "1", 1, 64 << 10).await;
    let r0 = report("").await;
    assert_eq!(r0.days.len(), 1);
    assert_eq!(r0.growth_30d.unwrap().since_day, None);
    d.advance_clock(10 * day);
    publish("slow", "2", 2, 64 << 10).await;
    publish("fast", "1", 3, 1 << 20).await;
    // Another namespace's growth is not t's: a namespace's report has its own series.
    c.publish_bytes(
        version_ref("u", "p", T::Generic, "big", "1"),
        "big.bin",
        random_bytes(4, 2 << 20),
    )
    .await
    .unwrap();
    let r1 = report("t").await;
    assert_eq!(r1.days.len(), 2, "{:?}", r1.days);
    assert_eq!(r1.days[1].day - r1.days[0].day, 10);
    let g = r1.growth_30d.unwrap();
    assert_eq!(g.since_day, Some(r1.days[0].day));
    assert_eq!(g.file_bytes, (1 << 20) + (64 << 10), "{:?} then {:?}", r0.days, r1.days);
    let fastest: Vec<_> = r1
        .fastest_growing
        .iter()
        .map(|p| (p.package.as_str(), p.growth_30d))
        .collect();
    assert_eq!(fastest, [("t/p/generic:fast", 1 << 20), ("t/p/generic:slow", 64 << 10)]);
    // Another namespace's report names none of t's packages.
    assert!(report("other").await.fastest_growing.is_empty());

    let path = d.dir.path().join("report.html");
    let out = d.cli(&["report", "--format", "html", "--output", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(
        html.matches("<svg").count() >= 4,
        "charts: usage, savings, namespaces, types"
    );
    for external in ["src=", "href=", "url(", "<script", "@import"] {
        assert!(
            !html.contains(external),
            "the page refers to something outside it: {external}"
        );
    }
    assert!(html.contains("t/p/generic:fast") && html.contains("Fastest-growing"));
}

/// Runs `stowage report --recompute` for every grouping (store-wide and in
/// namespace `a`): it must find no drift, and the counters' report must
/// equal the recomputed one group for group.
fn assert_counters_exact(d: &Daemon, when: &str) {
    let json = |args: &[&str]| -> serde_json::Value {
        let out = d.cli(args);
        assert!(
            out.status.success(),
            "{when}: report {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for by in ["namespace", "project", "package", "type"] {
        for ns in [None, Some("a")] {
            let mut args = vec!["report", "--format", "json", "--by", by];
            args.extend(ns.map(|n| ["--namespace", n]).into_iter().flatten());
            let mut counted = json(&args);
            args.push("--recompute");
            let mut recomputed = json(&args);
            // Free disk space and the data dir (RocksDB files) move between the two calls.
            for r in [&mut counted, &mut recomputed] {
                r["summary"]["free_disk_bytes"].take();
                r["summary"]["space"].take();
            }
            assert_eq!(recomputed["recomputed"], true);
            assert_eq!(recomputed["drift"], serde_json::json!([]), "{when}");
            assert_eq!(counted["groups"], recomputed["groups"], "{when}: by {by} in {ns:?}");
            assert_eq!(counted["summary"], recomputed["summary"], "{when}: by {by} in {ns:?}");
        }
    }
}

/// The counters follow publishes, overlapping uploads across tenants,
/// deletes and restores of files, versions and packages, purges and GC,
/// with no drift from a recomputation at any step, and `admin check`
/// agrees. A random (seeded) sequence of operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_every_catalog_change_without_drift() {
    let d = Daemon::start("trash_window = \"1day\"\n[gc]\ngrace = \"0s\"\ncompact_threshold = 0.0\n").await;
    let c = d.client().await;
    // Blobs share 64 KiB pieces, so chunks are shared across packages and tenants.
    let pieces: Vec<Bytes> = (0..6).map(|i| random_bytes(900 + i, 64 << 10)).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut files: Vec<pb::FileRef> = Vec::new();
    for round in 0..4 {
        for _ in 0..30 {
            let ns = ["a", "b"][next(2)];
            let project = ["web", "api"][next(2)];
            let ty = [T::Npm, T::Generic][next(2)];
            let name = ["x", "y", "z"][next(3)];
            let ver = format!("{}", next(4));
            let data = Bytes::from([&pieces[next(6)][..], &pieces[next(6)][..]].concat());
            let v = version_ref(ns, project, ty, name, &ver);
            match c.publish_bytes(v.clone(), "f.bin", data).await {
                Ok(r) => files.push(pb::FileRef {
                    version: Some(v),
                    file_id: r.file.unwrap().file_id,
                }),
                // Publishing into a deleted version or package is refused.
                Err(s) => assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}"),
            }
        }
        let mut cat = c.catalog.clone();
        for _ in 0..12 {
            let f = files[next(files.len())].clone();
            let v = f.version.clone().unwrap();
            let p = v.package.clone().unwrap();
            // Errors (already deleted, not deleted) are expected and change nothing.
            let _ = match next(6) {
                0 => cat.delete_file(f).await.map(drop),
                1 => cat.delete_version(v).await.map(drop),
                2 => cat.delete_package(p).await.map(drop),
                3 => cat.restore_file(f).await.map(drop),
                4 => cat.restore_version(v).await.map(drop),
                _ => cat.restore_package(p).await.map(drop),
            };
        }
        assert_counters_exact(&d, &format!("round {round}"));
        if round == 1 || round == 2 {
            // Past the trash window: purge, then collect what nothing uses.
            d.advance_clock(std::time::Duration::from_secs(2 * 24 * 3600));
            c.admin.clone().purge(pb::PurgeRequest::default()).await.unwrap();
            c.retention
                .clone()
                .collect_garbage(pb::GcRequest { dry_run: false })
                .await
                .unwrap();
            assert_counters_exact(&d, &format!("round {round}, after purge and GC"));
        }
        let check = c
            .admin
            .clone()
            .check(pb::CheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(check.drift.is_empty(), "round {round}: {:#?}", check.drift);
    }
    // Something of everything happened.
    let r = d.cli(&["report", "--format", "json", "--by", "package"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert!(groups.len() >= 6, "{v}");
    assert!(groups.iter().any(|g| g["trash_files"].as_u64() > Some(0)), "{v}");
    assert!(groups.iter().any(|g| g["shared_bytes"].as_u64() > Some(0)), "{v}");
    assert!(groups.iter().any(|g| g["exclusive_bytes"].as_u64() > Some(0)), "{v}");
    // A report on one project cannot be by namespace: refused with the reason.
    let out = d.cli(&["report", "-n", "a", "-p", "web", "--by", "type"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use --by project or --by package"));
}
