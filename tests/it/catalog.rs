//! The package catalog through the running daemon: every CatalogService and
//! AuditService RPC, paging and sorting, trash and purge on an injected
//! clock, duplicate policies, the audit trail, and reference counts that a
//! recomputation (`admin check`) agrees with, also after kill -9.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use stowage::api::client::{Client, Code, version_ref};
use stowage::api::pb::{self, PackageType as T};

use crate::harness::{Daemon, b3, eventually, put, random_bytes, sha256_hex, text_bytes};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn pkg(ns: &str, project: &str, ty: T, name: &str) -> pb::PackageRef {
    pb::PackageRef {
        namespace: ns.into(),
        project: project.into(),
        r#type: ty as i32,
        name: name.into(),
    }
}

/// The store's stats, less the free disk space (it moves with any write).
async fn store_stats(c: &Client) -> pb::StatsResponse {
    pb::StatsResponse {
        free_disk_bytes: None,
        ..c.stats().await.unwrap()
    }
}

fn file_ref(v: &pb::VersionRef, id: u64) -> pb::FileRef {
    pb::FileRef {
        version: Some(v.clone()),
        file_id: id,
    }
}

async fn versions(c: &Client, p: &pb::PackageRef, state: pb::State) -> Vec<String> {
    let r = c
        .catalog
        .clone()
        .list_versions(pb::ListVersionsRequest {
            package: Some(p.clone()),
            state: state as i32,
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    r.versions.into_iter().map(|v| v.r#ref.unwrap().version).collect()
}

async fn get_package(c: &Client, p: &pb::PackageRef) -> Result<pb::Package, tonic::Status> {
    c.catalog
        .clone()
        .get_package(pb::GetPackageRequest { r#ref: Some(p.clone()) })
        .await
        .map(|r| r.into_inner())
}

async fn get_version(c: &Client, v: &pb::VersionRef) -> Result<pb::Version, tonic::Status> {
    c.catalog
        .clone()
        .get_version(pb::GetVersionRequest { r#ref: Some(v.clone()) })
        .await
        .map(|r| r.into_inner())
}

async fn check_clean(c: &Client) -> pb::CheckResponse {
    let r = c
        .admin
        .clone()
        .check(pb::CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(r.drift.is_empty(), "check found drift: {:#?}", r.drift);
    r
}

async fn purge(c: &Client) -> pb::PurgeResponse {
    c.admin
        .clone()
        .purge(pb::PurgeRequest::default())
        .await
        .unwrap()
        .into_inner()
}

async fn events(c: &Client, f: pb::ListEventsRequest) -> Vec<pb::AuditEvent> {
    let mut out = Vec::new();
    let mut req = f;
    loop {
        let r = c.audit.clone().list_events(req.clone()).await.unwrap().into_inner();
        out.extend(r.events);
        if r.next_page_token.is_empty() {
            return out;
        }
        req.page_token = r.next_page_token;
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    r.expect_err("expected an error").code()
}

#[tokio::test]
async fn publish_get_list_and_download() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let v1 = version_ref("acme", "web", T::Npm, "@acme/left-pad", "1.0.0");
    let data = text_bytes(1, 300_000);
    let r = c
        .publish_bytes(v1.clone(), "left-pad-1.0.0.tgz", data.clone())
        .await
        .unwrap();
    assert!(r.package_created && r.version_created && r.blob_new);
    let f1 = r.file.unwrap();
    assert_eq!(f1.size, data.len() as u64);
    let dg = f1.digests.clone().unwrap();
    assert_eq!(dg.blake3, b3(&data));
    assert_eq!(dg.sha256, sha256_hex(&data));

    // By BLAKE3: the namespace uploaded it first.
    let other = random_bytes(2, 5000);
    let h = put(&c, "acme", other.clone()).await;
    let v2 = version_ref("acme", "web", T::Npm, "@acme/left-pad", "1.1.0");
    let r2 = c.publish_blob(v2.clone(), "left-pad-1.1.0.tgz", &h).await.unwrap();
    assert!(!r2.package_created && r2.version_created && !r2.blob_new);
    // Another namespace's blob cannot be claimed by hash.
    let theirs = put(&c, "rival", random_bytes(3, 100)).await;
    let e = c.publish_blob(v2.clone(), "x.tgz", &theirs).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A malformed hash is refused.
    let e = c.publish_blob(v2.clone(), "x.tgz", "zz").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let p = pkg("acme", "web", T::Npm, "@acme/left-pad");
    let gp = get_package(&c, &p).await.unwrap();
    assert_eq!(
        (gp.versions, gp.files, gp.size_bytes),
        (2, 2, (data.len() + other.len()) as u64)
    );
    assert_eq!(gp.latest_version, "1.1.0");
    assert_eq!(gp.deleted_unix_ms, None);
    assert_eq!(
        versions(&c, &p, pb::State::Active).await,
        ["1.1.0", "1.0.0"],
        "newest first"
    );
    let gv = get_version(&c, &v1).await.unwrap();
    assert_eq!(gv.files, 1);
    assert_eq!(gv.file_list.len(), 1);
    assert_eq!(gv.file_list[0].file_name, "left-pad-1.0.0.tgz");
    assert_eq!(gv.file_list[0].digests, f1.digests);
    let lf = c
        .catalog
        .clone()
        .list_files(pb::ListFilesRequest {
            version: Some(v2.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lf.files.len(), 1);
    assert_eq!(lf.files[0].digests.as_ref().unwrap().blake3, h);
    // The published file's bytes are the blob's.
    assert_eq!(c.get_bytes("acme", &dg.blake3, 0, None).await.unwrap(), data);

    // Downloads.
    assert_eq!(f1.download_count, 0);
    for _ in 0..3 {
        c.catalog
            .clone()
            .record_download(file_ref(&v1, f1.file_id))
            .await
            .unwrap();
    }
    let f = get_version(&c, &v1).await.unwrap().file_list.remove(0);
    assert_eq!(f.download_count, 3);
    assert!(f.last_download_unix_ms >= f.created_unix_ms);
    assert_eq!(
        code(c.catalog.clone().record_download(file_ref(&v1, 999_999)).await),
        Code::NotFound
    );

    // Missing things are NOT_FOUND.
    assert_eq!(
        code(get_package(&c, &pkg("acme", "web", T::Npm, "nope")).await),
        Code::NotFound
    );
    assert_eq!(
        code(get_version(&c, &version_ref("acme", "web", T::Npm, "@acme/left-pad", "9")).await),
        Code::NotFound
    );
    assert_eq!(
        code(get_package(&c, &pkg("acme", "web", T::Pypi, "@acme/left-pad")).await),
        Code::InvalidArgument
    );
    check_clean(&c).await;
}

#[tokio::test]
async fn listings_page_filter_and_sort() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let h = put(&c, "ns", random_bytes(1, 10)).await;
    let mut expect = Vec::new();
    for i in 0..23u64 {
        // Names not in creation order; sizes by publishing i+1 files.
        let name = format!("pkg-{:02}", (i * 7) % 23);
        let project = if i % 2 == 0 { "even" } else { "odd" };
        let v = version_ref("ns", project, T::Generic, &name, "1.0");
        for k in 0..=i % 5 {
            c.publish_blob(v.clone(), &format!("f{k}"), &h).await.unwrap();
        }
        expect.push((name, project, i, (i % 5 + 1) * 10));
    }
    let list = |sort: pb::PackageSort, desc: bool, project: &str, contains: &str, size: u32| {
        let c = c.clone();
        let (project, contains) = (project.to_string(), contains.to_string());
        async move {
            let mut names = Vec::new();
            let mut token = String::new();
            let mut pages = 0;
            loop {
                let r = c
                    .catalog
                    .clone()
                    .list_packages(pb::ListPackagesRequest {
                        namespace: "ns".into(),
                        project: project.clone(),
                        name_contains: contains.clone(),
                        sort: sort as i32,
                        descending: desc,
                        page_size: size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(r.packages.len() <= size as usize);
                pages += 1;
                names.extend(r.packages.into_iter().map(|p| p.r#ref.unwrap().name));
                if r.next_page_token.is_empty() {
                    return (names, pages);
                }
                token = r.next_page_token;
            }
        }
    };
    let mut by_name: Vec<String> = expect.iter().map(|e| e.0.clone()).collect();
    by_name.sort();
    let (got, pages) = list(pb::PackageSort::Name, false, "", "", 5).await;
    assert_eq!(got, by_name);
    assert_eq!(pages, 5);
    by_name.reverse();
    assert_eq!(list(pb::PackageSort::Name, true, "", "", 4).await.0, by_name);
    let by_created: Vec<String> = expect.iter().map(|e| e.0.clone()).collect();
    assert_eq!(list(pb::PackageSort::Created, false, "", "", 6).await.0, by_created);
    let mut rev = by_created.clone();
    rev.reverse();
    assert_eq!(list(pb::PackageSort::Created, true, "", "", 7).await.0, rev);
    let mut by_size = expect.clone();
    by_size.sort_by_key(|e| e.3);
    let sizes: Vec<u64> = {
        let mut v = Vec::new();
        for name in list(pb::PackageSort::Size, false, "", "", 4).await.0 {
            v.push(expect.iter().find(|e| e.0 == name).unwrap().3);
        }
        v
    };
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "size order: {sizes:?}");
    assert_eq!(sizes.len(), 23);
    // Filters.
    let odd = list(pb::PackageSort::Name, false, "odd", "", 3).await.0;
    assert_eq!(odd.len(), 11);
    assert!(odd.iter().all(|n| expect.iter().any(|e| &e.0 == n && e.1 == "odd")));
    assert_eq!(list(pb::PackageSort::Name, false, "", "-1", 100).await.0.len(), 10);
    // Paged versions, newest first.
    let v = |n: u32| version_ref("ns", "even", T::Generic, "many", &format!("1.{n}"));
    for n in 0..12 {
        c.publish_blob(v(n), "f", &h).await.unwrap();
    }
    let p = pkg("ns", "even", T::Generic, "many");
    let mut got = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .catalog
            .clone()
            .list_versions(pb::ListVersionsRequest {
                package: Some(p.clone()),
                page_size: 5,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        got.extend(r.versions.into_iter().map(|v| v.r#ref.unwrap().version));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let want: Vec<String> = (0..12).rev().map(|n| format!("1.{n}")).collect();
    assert_eq!(got, want);
    // Tokens are checked.
    let bad = c
        .catalog
        .clone()
        .list_packages(pb::ListPackagesRequest {
            namespace: "ns".into(),
            page_token: hex::encode(b"other\0x"),
            ..Default::default()
        })
        .await;
    assert_eq!(code(bad), Code::InvalidArgument);
    let too_big = c
        .catalog
        .clone()
        .list_packages(pb::ListPackagesRequest {
            namespace: "ns".into(),
            page_size: 5000,
            ..Default::default()
        })
        .await;
    assert_eq!(code(too_big), Code::InvalidArgument);
}

#[tokio::test]
async fn soft_delete_restore_purge_and_window() {
    let d = Daemon::start("trash_window = \"7days\"\nupload_lease = \"1h\"").await;
    let c = d.client().await;
    let v1 = version_ref("ns", "p", T::Maven, "org.acme:core", "1.0");
    let v2 = version_ref("ns", "p", T::Maven, "org.acme:core", "2.0");
    let a = random_bytes(10, 200_000);
    let b = random_bytes(11, 70_000);
    let fa = c
        .publish_bytes(v1.clone(), "core-1.0.jar", a.clone())
        .await
        .unwrap()
        .file
        .unwrap();
    c.publish_bytes(v2.clone(), "core-2.0.jar", b.clone()).await.unwrap();
    let fa2 = c
        .publish_bytes(v2.clone(), "core-2.0.pom", a.clone())
        .await
        .unwrap()
        .file
        .unwrap();
    let p = pkg("ns", "p", T::Maven, "org.acme:core");

    // File delete: version and package totals drop; restore brings them back.
    let del = c
        .catalog
        .clone()
        .delete_file(file_ref(&v2, fa2.file_id))
        .await
        .unwrap()
        .into_inner();
    assert!(del.deleted_unix_ms.is_some());
    assert_eq!(get_version(&c, &v2).await.unwrap().files, 1);
    assert_eq!(get_package(&c, &p).await.unwrap().files, 2);
    assert_eq!(
        code(c.catalog.clone().delete_file(file_ref(&v2, fa2.file_id)).await),
        Code::FailedPrecondition
    );
    c.catalog
        .clone()
        .restore_file(file_ref(&v2, fa2.file_id))
        .await
        .unwrap();
    assert_eq!(get_package(&c, &p).await.unwrap().files, 3);
    assert_eq!(
        code(c.catalog.clone().restore_file(file_ref(&v2, fa2.file_id)).await),
        Code::FailedPrecondition
    );

    // Version delete: listed as deleted, not active; publishing to it is refused.
    let dv = c.catalog.clone().delete_version(v2.clone()).await.unwrap().into_inner();
    assert!(dv.deleted_unix_ms.is_some());
    assert_eq!(versions(&c, &p, pb::State::Active).await, ["1.0"]);
    assert_eq!(versions(&c, &p, pb::State::Deleted).await, ["2.0"]);
    assert_eq!(versions(&c, &p, pb::State::All).await, ["2.0", "1.0"]);
    let gp = get_package(&c, &p).await.unwrap();
    assert_eq!((gp.versions, gp.files, gp.latest_version.as_str()), (1, 1, "1.0"));
    let e = c.publish_bytes(v2.clone(), "late.jar", b.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Restore inside the window.
    d.advance_clock(6 * DAY);
    c.catalog.clone().restore_version(v2.clone()).await.unwrap();
    assert_eq!(get_package(&c, &p).await.unwrap().files, 3);

    // Package delete, restore, delete again; purge before the window does nothing.
    c.catalog.clone().delete_package(p.clone()).await.unwrap();
    let lp = c
        .catalog
        .clone()
        .list_packages(pb::ListPackagesRequest {
            namespace: "ns".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(lp.packages.is_empty(), "a deleted package is not listed as active");
    c.catalog.clone().restore_package(p.clone()).await.unwrap();
    assert!(get_package(&c, &p).await.unwrap().deleted_unix_ms.is_none());
    c.catalog.clone().delete_file(file_ref(&v1, fa.file_id)).await.unwrap();
    let none = purge(&c).await;
    assert_eq!((none.packages, none.versions, none.files), (0, 0, 0));
    check_clean(&c).await;

    // Past the window: restore is refused, purge removes it for good.
    d.advance_clock(8 * DAY);
    assert_eq!(
        code(c.catalog.clone().restore_file(file_ref(&v1, fa.file_id)).await),
        Code::FailedPrecondition
    );
    let stats_before = c.stats().await.unwrap();
    let r = purge(&c).await;
    assert_eq!(r.files, 1, "{r:?}");
    assert_eq!(
        code(c.catalog.clone().restore_file(file_ref(&v1, fa.file_id)).await),
        Code::NotFound
    );
    // Blob a is still used by core-2.0.pom, so nothing is released.
    assert_eq!(r.references_released, 0);
    assert_eq!(c.stats().await.unwrap().references, stats_before.references);
    assert_eq!(c.get_bytes("ns", &b3(&a), 0, None).await.unwrap(), a);

    // Deleting the package and purging it releases both blobs.
    c.catalog.clone().delete_package(p.clone()).await.unwrap();
    d.advance_clock(8 * DAY);
    let r = purge(&c).await;
    assert_eq!((r.packages, r.versions, r.files), (1, 2, 2), "{r:?}");
    assert_eq!((r.references_released, r.blobs_unreferenced), (2, 2));
    assert_eq!(code(get_package(&c, &p).await), Code::NotFound);
    assert_eq!(code(c.stat("ns", &b3(&a)).await), Code::NotFound);
    assert_eq!(c.stats().await.unwrap().references, 0);
    let audit = events(
        &c,
        pb::ListEventsRequest {
            action: "purge".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(audit.len(), 2, "one event per purged trash item: {audit:#?}");
    assert!(audit.iter().all(|e| e.actor == "local-admin"));
    assert_eq!(audit[0].target, "package");
    assert_eq!(audit[0].bytes, (a.len() + b.len()) as u64);
    check_clean(&c).await;
    // Survives a restart.
    let mut d = d;
    d.restart().await;
    check_clean(&d.client().await).await;
}

#[tokio::test]
async fn upload_lease_keeps_unpublished_blobs_for_a_while() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let kept = random_bytes(20, 1000);
    let hk = put(&c, "ns", kept.clone()).await;
    let orphan = random_bytes(21, 1000);
    let ho = put(&c, "ns", orphan.clone()).await;
    let v = version_ref("ns", "p", T::Generic, "tool", "1");
    d.advance_clock(DAY - Duration::from_secs(60));
    purge(&c).await;
    assert!(c.stat("ns", &ho).await.is_ok(), "lease still open");
    // Published inside the lease: kept by the file from now on.
    c.publish_blob(v.clone(), "tool.bin", &hk).await.unwrap();
    d.advance_clock(Duration::from_secs(120));
    let r = purge(&c).await;
    assert_eq!((r.references_released, r.blobs_unreferenced), (1, 1), "{r:?}");
    assert_eq!(code(c.stat("ns", &ho).await), Code::NotFound);
    assert_eq!(code(c.publish_blob(v.clone(), "late.bin", &ho).await), Code::NotFound);
    assert_eq!(c.get_bytes("ns", &hk, 0, None).await.unwrap(), kept);
    // Uploading again renews the lease (and re-creates the reference).
    put(&c, "ns", orphan.clone()).await;
    assert!(c.stat("ns", &ho).await.is_ok());
    check_clean(&c).await;
}

#[tokio::test]
async fn duplicate_policy_with_exceptions() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let v = version_ref("ns", "p", T::Maven, "org.acme:app", "1.0-SNAPSHOT");
    let data = random_bytes(30, 100_000);
    // Default: duplicates allowed.
    c.publish_bytes(v.clone(), "app.jar", data.clone()).await.unwrap();
    c.publish_bytes(v.clone(), "app.jar", data.clone()).await.unwrap();
    let policy = pb::DuplicatePolicy {
        namespace: "ns".into(),
        r#type: T::Maven as i32,
        allow_duplicates: false,
        exception_regex: r"maven-metadata\.xml.*|.*\.sha1".into(),
    };
    c.catalog.clone().set_duplicate_policy(policy.clone()).await.unwrap();
    let got = c
        .catalog
        .clone()
        .get_duplicate_policy(pb::GetDuplicatePolicyRequest {
            namespace: "ns".into(),
            r#type: T::Maven as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, policy);
    let before = store_stats(&c).await;
    let fresh = random_bytes(31, 300_000);
    let e = c.publish_bytes(v.clone(), "app.jar", fresh.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("app.jar"), "{e:?}");
    assert_eq!(store_stats(&c).await, before, "a refused duplicate stores nothing");
    let h = put(&c, "ns", fresh.clone()).await;
    assert_eq!(
        code(c.publish_blob(v.clone(), "app.jar", &h).await),
        Code::AlreadyExists
    );
    // Exceptions, other names and other types are not affected.
    for name in [
        "maven-metadata.xml",
        "maven-metadata.xml",
        "app.jar.sha1",
        "app.jar.sha1",
        "app.pom",
    ] {
        c.publish_blob(v.clone(), name, &h).await.unwrap();
    }
    let npm = version_ref("ns", "p", T::Npm, "app", "1.0.0");
    c.publish_blob(npm.clone(), "app.tgz", &h).await.unwrap();
    c.publish_blob(npm.clone(), "app.tgz", &h).await.unwrap();
    // A deleted file no longer blocks its name; restoring it then would.
    let gv = get_version(&c, &v).await.unwrap();
    let jars: Vec<u64> = gv
        .file_list
        .iter()
        .filter(|f| f.file_name == "app.jar")
        .map(|f| f.file_id)
        .collect();
    for id in &jars {
        c.catalog.clone().delete_file(file_ref(&v, *id)).await.unwrap();
    }
    c.publish_blob(v.clone(), "app.jar", &h).await.unwrap();
    assert_eq!(
        code(c.catalog.clone().restore_file(file_ref(&v, jars[0])).await),
        Code::AlreadyExists
    );
    // A bad regex is refused and changes nothing.
    let bad = pb::DuplicatePolicy {
        exception_regex: "(".into(),
        ..policy.clone()
    };
    assert_eq!(
        code(c.catalog.clone().set_duplicate_policy(bad).await),
        Code::InvalidArgument
    );
    check_clean(&c).await;
}

#[tokio::test]
async fn parallel_publishes_into_one_version() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let h = put(&c, "ns", random_bytes(40, 5000)).await;
    c.catalog
        .clone()
        .set_duplicate_policy(pb::DuplicatePolicy {
            namespace: "ns".into(),
            r#type: T::Pypi as i32,
            allow_duplicates: false,
            exception_regex: String::new(),
        })
        .await
        .unwrap();
    let v = version_ref("ns", "p", T::Pypi, "requests", "2.0");
    let mut tasks = Vec::new();
    for i in 0..48 {
        let (c, v, h) = (c.clone(), v.clone(), h.clone());
        // Half race for one name; the others each publish their own.
        let name = if i % 2 == 0 {
            "requests-2.0.tar.gz".to_string()
        } else {
            format!("requests-2.0-{i}.whl")
        };
        tasks.push(tokio::spawn(async move {
            (name.clone(), c.publish_blob(v, &name, &h).await)
        }));
    }
    let mut won = 0;
    let mut created = 0;
    for t in tasks {
        let (name, r) = t.await.unwrap();
        match r {
            Ok(r) => {
                won += (name == "requests-2.0.tar.gz") as u32;
                created += r.version_created as u32;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
                assert_eq!(name, "requests-2.0.tar.gz");
            }
        }
    }
    assert_eq!(won, 1, "exactly one publish of the contested name wins");
    assert_eq!(created, 1, "the version is created once");
    let gv = get_version(&c, &v).await.unwrap();
    assert_eq!(gv.files, 25);
    let r = check_clean(&c).await;
    assert_eq!(r.files, 25);
}

#[tokio::test]
async fn audit_trail_has_exactly_one_event_per_change() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let v = version_ref("team", "app", T::Cargo, "serde_x", "1.0.0");
    let f = c
        .publish_bytes(v.clone(), "serde_x-1.0.0.crate", random_bytes(50, 3000))
        .await
        .unwrap()
        .file
        .unwrap();
    let v2 = version_ref("team", "app", T::Cargo, "serde_x", "1.0.1");
    c.publish_bytes(v2.clone(), "serde_x-1.0.1.crate", random_bytes(51, 4000))
        .await
        .unwrap();
    c.catalog.clone().delete_file(file_ref(&v, f.file_id)).await.unwrap();
    c.catalog.clone().restore_file(file_ref(&v, f.file_id)).await.unwrap();
    c.catalog.clone().delete_version(v2.clone()).await.unwrap();
    let p = pkg("team", "app", T::Cargo, "serde_x");
    c.catalog.clone().delete_package(p.clone()).await.unwrap();
    c.catalog.clone().restore_package(p.clone()).await.unwrap();
    // Failed requests and reads leave no event.
    assert!(c.catalog.clone().restore_package(p.clone()).await.is_err());
    assert!(
        c.publish_bytes(v2.clone(), "x.crate", random_bytes(52, 10))
            .await
            .is_err()
    );
    get_package(&c, &p).await.unwrap();
    c.catalog
        .clone()
        .record_download(file_ref(&v, f.file_id))
        .await
        .unwrap();
    // Other namespaces' events stay out of a filtered listing.
    c.publish_bytes(
        version_ref("other", "x", T::Generic, "g", "1"),
        "g.bin",
        random_bytes(53, 10),
    )
    .await
    .unwrap();

    let all = events(
        &c,
        pb::ListEventsRequest {
            namespace: "team".into(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    let got: Vec<(String, String, String, String, u64)> = all
        .iter()
        .rev()
        .map(|e| {
            (
                e.action.clone(),
                e.target.clone(),
                e.version.clone(),
                e.file_name.clone(),
                e.bytes,
            )
        })
        .collect();
    let s =
        |a: &str, t: &str, v: &str, f: &str, b: u64| (a.to_string(), t.to_string(), v.to_string(), f.to_string(), b);
    assert_eq!(
        got,
        vec![
            s("publish", "file", "1.0.0", "serde_x-1.0.0.crate", 3000),
            s("publish", "file", "1.0.1", "serde_x-1.0.1.crate", 4000),
            s("delete", "file", "1.0.0", "serde_x-1.0.0.crate", 3000),
            s("restore", "file", "1.0.0", "serde_x-1.0.0.crate", 3000),
            s("delete", "version", "1.0.1", "", 4000),
            s("delete", "package", "", "", 3000),
            s("restore", "package", "", "", 3000),
        ]
    );
    assert!(
        all.windows(2)
            .all(|w| w[0].id > w[1].id && w[0].unix_ms >= w[1].unix_ms),
        "newest first"
    );
    assert!(
        all.iter()
            .all(|e| e.namespace == "team" && e.project == "app" && e.name == "serde_x")
    );
    assert!(
        all.iter()
            .all(|e| e.r#type == T::Cargo as i32 && e.actor == "local-admin")
    );
    let deletes = events(
        &c,
        pb::ListEventsRequest {
            action: "delete".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(deletes.len(), 3);
    let since = all[2].unix_ms;
    let recent = events(
        &c,
        pb::ListEventsRequest {
            namespace: "team".into(),
            since_unix_ms: since,
            ..Default::default()
        },
    )
    .await;
    assert!(recent.len() >= 3 && recent.iter().all(|e| e.unix_ms >= since));
}

#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let h = put(&c, "ns", random_bytes(60, 100)).await;
    let before = store_stats(&c).await;
    let cases = [
        (
            version_ref("ns", "p", T::Npm, "Bad-Caps", "1.0.0"),
            "f.tgz",
            "npm package name",
        ),
        (
            version_ref("ns", "p", T::Maven, "no-colon", "1"),
            "f.jar",
            "group:artifact",
        ),
        (version_ref("ns", "p", T::Generic, "../etc", "1"), "f", "'..'"),
        (version_ref("ns", "p", T::Generic, "ok", "1/2"), "f", "version"),
        (version_ref("ns", "p", T::Generic, "ok", ""), "f", "version is required"),
        (version_ref("ns", "p", T::Generic, "ok", "1"), "../f", "file name"),
        (
            version_ref("ns", "p", T::Generic, "ok", "1"),
            "a\u{7}b",
            "control character",
        ),
        (version_ref("ns", "../p", T::Generic, "ok", "1"), "f", "project"),
        (version_ref("bad ns", "p", T::Generic, "ok", "1"), "f", "namespace"),
        (
            version_ref("ns", "p", T::Unspecified, "ok", "1"),
            "f",
            "package type is required",
        ),
        (
            version_ref("ns", "p", T::Generic, &"x".repeat(300), "1"),
            "f",
            "limit is 255",
        ),
    ];
    for (v, file, msg) in cases {
        let e = c.publish_blob(v.clone(), file, &h).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{v:?} {file}: {e:?}");
        assert!(e.message().contains(msg), "{msg:?} not in {:?}", e.message());
        let e = c.publish_bytes(v, file, random_bytes(61, 200_000)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
    let mut raw = pkg("ns", "p", T::Generic, "ok");
    raw.r#type = 99;
    assert_eq!(code(get_package(&c, &raw).await), Code::InvalidArgument);
    let lp = c
        .catalog
        .clone()
        .list_packages(pb::ListPackagesRequest {
            namespace: "ns".into(),
            state: pb::State::All as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(lp.packages.is_empty());
    assert!(events(&c, pb::ListEventsRequest::default()).await.is_empty());
    assert_eq!(store_stats(&c).await, before);
}

/// Random publishes, deletes, restores, downloads and purges, with the
/// clock jumping; then concurrent publishes cut by kill -9. A recomputation
/// agrees with every stored count each time.
#[tokio::test]
async fn counts_match_a_recomputation_after_random_ops_and_kill_9() {
    let mut d = Daemon::start("trash_window = \"2days\"\nupload_lease = \"1day\"").await;
    let c = d.client().await;
    let mut rng = StdRng::seed_from_u64(7);
    let pool: Vec<bytes::Bytes> = (0..12)
        .map(|i| random_bytes(100 + i, 2000 + i as usize * 1000))
        .collect();
    let namespaces = ["a", "b"];
    for ns in namespaces {
        for (i, data) in pool.iter().enumerate().take(8) {
            if i % 2 == 0 || ns == "a" {
                put(&c, ns, data.clone()).await;
            }
        }
    }
    let mut files: Vec<(pb::VersionRef, u64)> = Vec::new();
    for step in 0..400 {
        let ns = namespaces[rng.random_range(0..2)];
        let v = version_ref(
            ns,
            "p",
            T::Generic,
            &format!("pkg{}", rng.random_range(0..4)),
            &format!("1.{}", rng.random_range(0..3)),
        );
        let p = v.package.clone().unwrap();
        let _ = match rng.random_range(0..100) {
            0..40 => {
                let data = &pool[rng.random_range(0..pool.len())];
                let r = if rng.random_bool(0.5) {
                    c.publish_blob(v.clone(), &format!("f{}", rng.random_range(0..3)), &b3(data))
                        .await
                } else {
                    c.publish_bytes(v.clone(), &format!("f{}", rng.random_range(0..3)), data.clone())
                        .await
                };
                if let Ok(r) = &r {
                    files.push((v.clone(), r.file.as_ref().unwrap().file_id));
                }
                r.map(drop)
            }
            40..55 if !files.is_empty() => {
                let (v, id) = files[rng.random_range(0..files.len())].clone();
                c.catalog.clone().delete_file(file_ref(&v, id)).await.map(drop)
            }
            55..65 if !files.is_empty() => {
                let (v, id) = files[rng.random_range(0..files.len())].clone();
                c.catalog.clone().restore_file(file_ref(&v, id)).await.map(drop)
            }
            65..72 => c.catalog.clone().delete_version(v.clone()).await.map(drop),
            72..78 => c.catalog.clone().restore_version(v.clone()).await.map(drop),
            78..82 => c.catalog.clone().delete_package(p.clone()).await.map(drop),
            82..87 => c.catalog.clone().restore_package(p.clone()).await.map(drop),
            87..92 if !files.is_empty() => {
                let (v, id) = files[rng.random_range(0..files.len())].clone();
                c.catalog.clone().record_download(file_ref(&v, id)).await.map(drop)
            }
            92..96 => {
                d.advance_clock(Duration::from_secs(rng.random_range(3600..3 * 24 * 3600)));
                Ok(())
            }
            _ => {
                purge(&c).await;
                Ok(())
            }
        };
        if step % 50 == 49 {
            check_clean(&c).await;
        }
    }
    let r = check_clean(&c).await;
    assert!(r.files > 0 && r.references > 0, "{r:?}");

    // Concurrent publishes and deletes, then kill -9 mid-flight.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let (c, stop, pool, done) = (c.clone(), stop.clone(), pool.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = version_ref("a", "k9", T::Generic, &format!("t{t}"), &format!("{}", i / 5));
                let data = pool[(i as usize + t as usize) % pool.len()].clone();
                match c.publish_bytes(v.clone(), &format!("f{i}"), data).await {
                    Ok(r) => {
                        let id = r.file.unwrap().file_id;
                        if i.is_multiple_of(3) && c.catalog.clone().delete_file(file_ref(&v, id)).await.is_err() {
                            break;
                        }
                        acked.push((v, id, i.is_multiple_of(3)));
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
                i += 1;
            }
            acked
        }));
    }
    // Cut them down once they have done some work (and keep going).
    eventually(Duration::from_secs(60), "60 publishes before the kill", || async {
        match done.load(std::sync::atomic::Ordering::Relaxed) {
            n if n >= 60 => Ok(()),
            n => Err(format!("{n} publishes")),
        }
    })
    .await;
    d.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 20, "only {} publishes before the kill", acked.len());
    d.spawn().await;
    let c = d.client().await;
    check_clean(&c).await;
    for (v, id, deleted) in &acked {
        let gv = get_version(&c, v).await.unwrap();
        let f = gv
            .file_list
            .iter()
            .find(|f| f.file_id == *id)
            .expect("an acknowledged publish survives kill -9");
        if *deleted {
            assert!(f.deleted_unix_ms.is_some(), "an acknowledged delete survives kill -9");
        }
    }
}

/// The check is not a rubber stamp: a count changed behind the daemon's
/// back is reported.
#[tokio::test]
async fn check_reports_a_count_that_disagrees() {
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    let v = version_ref("ns", "p", T::Helm, "chart", "0.1.0");
    let data = random_bytes(70, 1000);
    c.publish_bytes(v.clone(), "chart-0.1.0.tgz", data.clone())
        .await
        .unwrap();
    check_clean(&c).await;
    d.stop();
    {
        let index = stowage::index::Index::open(&d.data_dir().join("index")).unwrap();
        let id = stowage::Hash::from_hex(&b3(&data)).unwrap();
        let mut r = index.txn().reference("ns", &id).unwrap().unwrap();
        r.files += 1;
        let mut txn = index.txn();
        txn.put_ref("ns", &id, &r);
        index.commit(txn).unwrap();
    }
    d.spawn().await;
    let r = d
        .client()
        .await
        .admin
        .clone()
        .check(pb::CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.drift.len(), 1, "{:#?}", r.drift);
    assert!(
        r.drift[0].contains("files referencing it: stored 2, recomputed 1"),
        "{:?}",
        r.drift
    );
}

/// A store written before the catalog (references without leases, holder
/// counts or lists) is migrated at start: the check is clean, and the
/// references end like any upload lease.
#[tokio::test]
async fn an_index_from_before_the_catalog_is_migrated() {
    use stowage::catalog::records as rec;
    use stowage::index::{Cf, Index, decode_ref_key};
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    let shared = random_bytes(80, 3000);
    put(&c, "a", shared.clone()).await;
    put(&c, "b", shared.clone()).await;
    put(&c, "b", random_bytes(81, 3000)).await;
    d.stop();
    {
        let index = Index::open(&d.data_dir().join("index")).unwrap();
        let mut txn = index.txn();
        let refs: Vec<_> = index.scan(Cf::Refs, &[], None, false).map(|kv| kv.unwrap()).collect();
        for (k, v) in refs {
            let (ns, blob) = decode_ref_key(&k).unwrap();
            let r = stowage::index::RefInfo::decode(&v).unwrap();
            // The layout of issue 2: version 1, created_ms only.
            let mut v1 = vec![1u8];
            v1.extend_from_slice(&r.created_ms.to_be_bytes());
            txn.put(Cf::Refs, k.to_vec(), v1);
            txn.delete(Cf::CatalogIdx, rec::lease_key(r.lease_until_ms, &k));
            txn.delete(Cf::CatalogIdx, rec::holder_key(&blob, &ns));
            txn.delete(Cf::CatalogIdx, rec::holders_key(&blob));
        }
        txn.delete(Cf::Meta, stowage::catalog::SCHEMA_KEY);
        index.commit(txn).unwrap();
    }
    d.spawn().await;
    let c = d.client().await;
    let r = check_clean(&c).await;
    assert_eq!((r.references, r.blobs), (3, 2));
    d.advance_clock(2 * DAY);
    let p = purge(&c).await;
    assert_eq!((p.references_released, p.blobs_unreferenced), (3, 2), "{p:?}");
    check_clean(&c).await;
}

/// A store of schema 5 (retention policies named store-wide, one file id
/// counter for the store, a file's trash entry by file id alone, references
/// without the digests their namespace asked for) is migrated at start:
/// policies are found in their namespace, the trashed file is restored and
/// purged through its moved entry, new file ids continue above every id
/// issued before in each namespace, and every counter is exact.
#[tokio::test]
async fn an_index_of_schema_5_gets_per_namespace_policies_and_file_ids() {
    use stowage::catalog::records as rec;
    use stowage::index::{Cf, Index};
    let mut d = Daemon::start("trash_window = \"1day\"").await;
    let c = d.client().await;
    let (va, vb) = (
        version_ref("a", "p", T::Generic, "tool", "1"),
        version_ref("b", "p", T::Generic, "tool", "1"),
    );
    let publish = |c: &Client, v: &pb::VersionRef, name: &str, seed: u64| {
        let (c, v, name) = (c.clone(), v.clone(), name.to_string());
        async move {
            let r = c.publish_bytes(v, &name, random_bytes(seed, 2000)).await.unwrap();
            r.file.unwrap().file_id
        }
    };
    let ids = [
        publish(&c, &va, "f1", 95).await,
        publish(&c, &va, "f2", 96).await,
        publish(&c, &va, "f3", 97).await,
    ];
    c.catalog.clone().delete_file(file_ref(&va, ids[0])).await.unwrap();
    let policy = pb::RetentionPolicy {
        name: "cleanup".into(),
        namespace: "a".into(),
        versions: Some(pb::RetentionRules {
            keep_latest: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.retention.clone().set_policy(policy).await.unwrap();
    d.stop();
    {
        let index = Index::open(&d.data_dir().join("index")).unwrap();
        let mut txn = index.txn();
        let scan = |tag: u8| -> Vec<(Vec<u8>, Vec<u8>)> {
            let (from, to) = rec::tag::range(tag);
            index
                .scan(Cf::CatalogIdx, &from, Some(&to), false)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect()
        };
        for (k, v) in scan(rec::tag::RETENTION_POLICY) {
            let name = &k[k.iter().position(|&b| b == 0).unwrap() + 1..];
            txn.delete(Cf::CatalogIdx, k.clone());
            txn.put(Cf::CatalogIdx, [&[rec::tag::RETENTION_POLICY], name].concat(), v);
        }
        let mut moved = 0;
        for (k, v) in scan(rec::tag::TRASH) {
            if k.len() == 26 && k[9] == rec::TRASH_FILE {
                txn.delete(Cf::CatalogIdx, k.clone());
                txn.put(Cf::CatalogIdx, [&k[..10], &k[18..]].concat(), v);
                moved += 1;
            }
        }
        assert_eq!(moved, 1, "the deleted file's trash entry");
        for (k, _) in scan(rec::tag::FILE_IDS) {
            txn.delete(Cf::CatalogIdx, k);
        }
        // The store-wide counter as schema 5 left it: past every id issued.
        let mut ids_rec: rec::Ids = rec::decode(&index.get(Cf::Meta, rec::IDS_KEY).unwrap().unwrap(), "ids").unwrap();
        ids_rec.file = 4;
        txn.put(Cf::Meta, rec::IDS_KEY, rec::encode(&ids_rec));
        // References of schema 5 (version 2: no digests recorded).
        let refs: Vec<_> = index.scan(Cf::Refs, &[], None, false).map(|kv| kv.unwrap()).collect();
        for (k, v) in refs {
            let mut v2 = v[..v.len() - 1].to_vec();
            v2[0] = 2;
            txn.put(Cf::Refs, k.to_vec(), v2);
        }
        txn.put(Cf::Meta, stowage::catalog::SCHEMA_KEY, 5u32.to_be_bytes().to_vec());
        index.commit(txn).unwrap();
    }
    d.spawn().await;
    let c = d.client().await;
    check_clean(&c).await;
    let get = pb::GetPolicyRequest {
        name: "cleanup".into(),
        namespace: "a".into(),
    };
    assert_eq!(
        c.retention
            .clone()
            .get_policy(get)
            .await
            .unwrap()
            .into_inner()
            .namespace,
        "a"
    );
    // The trashed file comes back and goes again through its moved entry.
    c.catalog.clone().restore_file(file_ref(&va, ids[0])).await.unwrap();
    c.catalog.clone().delete_file(file_ref(&va, ids[0])).await.unwrap();
    d.advance_clock(2 * DAY);
    assert_eq!(purge(&c).await.files, 1);
    // Ids continue above every id issued before, each namespace on its own.
    assert_eq!(publish(&c, &va, "f4", 98).await, 4);
    for (i, seed) in (99..102).enumerate() {
        assert_eq!(publish(&c, &vb, &format!("g{i}"), seed).await, 4 + i as u64);
    }
    assert_eq!(publish(&c, &va, "f5", 102).await, 5);
    check_clean(&c).await;
    crate::harness::assert_no_report_drift(&c).await;
}

/// One damaged trash item is skipped (and logged); the rest of the purge,
/// upload leases included, goes on.
#[tokio::test]
async fn a_damaged_trash_item_does_not_stop_the_purge() {
    let mut d = Daemon::start("trash_window = \"1day\"\nupload_lease = \"1h\"").await;
    let c = d.client().await;
    let bad = random_bytes(90, 2000);
    let good = random_bytes(91, 2000);
    let v = version_ref("ns", "p", T::Generic, "tool", "1");
    let fb = c
        .publish_bytes(v.clone(), "bad.bin", bad.clone())
        .await
        .unwrap()
        .file
        .unwrap();
    let fg = c
        .publish_bytes(v.clone(), "good.bin", good.clone())
        .await
        .unwrap()
        .file
        .unwrap();
    let orphan = put(&c, "ns", random_bytes(92, 100)).await;
    for id in [fb.file_id, fg.file_id] {
        c.catalog.clone().delete_file(file_ref(&v, id)).await.unwrap();
    }
    d.stop();
    {
        // The file's blob loses its reference behind the daemon's back.
        let index = stowage::index::Index::open(&d.data_dir().join("index")).unwrap();
        let mut txn = index.txn();
        txn.delete_ref("ns", &stowage::Hash::from_hex(&b3(&bad)).unwrap());
        index.commit(txn).unwrap();
    }
    d.spawn().await;
    let c = d.client().await;
    d.advance_clock(2 * DAY);
    let r = purge(&c).await;
    assert_eq!(r.files, 1, "the good file is purged: {r:?}");
    assert_eq!(r.references_released, 2, "good's blob and the orphan upload: {r:?}");
    assert_eq!(code(c.stat("ns", &orphan).await), Code::NotFound);
    assert!(d.log().contains("cannot purge a trash item"), "the skip is logged");
    let check = c
        .admin
        .clone()
        .check(pb::CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!check.drift.is_empty(), "the damage stays visible to the check");
}
