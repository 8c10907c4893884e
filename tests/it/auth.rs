//! Tokens through the running daemon: every RPC against every scope,
//! namespace isolation, and the audit trail naming the token.

use bytes::Bytes;
use futures::future::BoxFuture;
use stowage::api::client::{Client, Code, version_ref};
use stowage::api::pb::{self, PackageType as T};

use crate::harness::{BIN, Daemon, assert_no_report_drift, b3, eventually, plan_summary, put, random_bytes, sample};

/// `stowage token create`: the token and its config entry.
fn create_token(id: &str, scopes: &str, namespaces: &str) -> (String, String) {
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "create",
            "--id",
            id,
            "--scopes",
            scopes,
            "--namespaces",
            namespaces,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().nth(1).unwrap().trim_start_matches("# ").to_string();
    assert!(token.starts_with("stw_"), "{text}");
    (token, text)
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(e) => e.code(),
    }
}

type Call = Box<dyn FnOnce(Client) -> BoxFuture<'static, Code>>;

/// Every stowage RPC in namespace "a", with the scope it needs (None: store-wide admin).
fn calls(blob: String, file_id: u64) -> Vec<(&'static str, &'static str, Call)> {
    let v = version_ref("a", "p", T::Generic, "tool", "1");
    let p = v.package.clone().unwrap();
    let f = pb::FileRef {
        version: Some(v.clone()),
        file_id,
    };
    let mut out: Vec<(&'static str, &'static str, Call)> = Vec::new();
    macro_rules! call {
        ($name:expr, $scope:expr, |$c:ident, $b:ident, $v:ident, $p:ident, $f:ident| $body:expr) => {{
            let (b0, v0, p0, f0) = (blob.clone(), v.clone(), p.clone(), f.clone());
            out.push((
                $name,
                $scope,
                Box::new(move |$c: Client| {
                    let ($b, $v, $p, $f) = (b0, v0, p0, f0);
                    let _ = (&$b, &$v, &$p, &$f);
                    Box::pin(async move { $body })
                }),
            ));
        }};
    }
    call!("Put", "write", |c, blob, v, p, f| code(
        c.put_bytes(stowage::api::client::header("a"), random_bytes(1, 10))
            .await
    ));
    call!("Get", "read", |c, blob, v, p, f| code(
        c.get_bytes("a", &blob, 0, None).await
    ));
    call!("Stat", "read", |c, blob, v, p, f| code(c.stat("a", &blob).await));
    call!("FindMissing", "read", |c, blob, v, p, f| code(
        c.find_missing("a", vec![blob.clone()]).await
    ));
    call!("PublishFile", "write", |c, blob, v, p, f| code(
        c.publish_blob(v.clone(), "x.bin", &blob).await
    ));
    call!("PublishFile(stream)", "write", |c, blob, v, p, f| code(
        c.publish_bytes(v.clone(), "y.bin", random_bytes(2, 10)).await
    ));
    call!("ListPackages", "read", |c, blob, v, p, f| code(
        c.catalog
            .clone()
            .list_packages(pb::ListPackagesRequest {
                namespace: "a".into(),
                ..Default::default()
            })
            .await
    ));
    call!("GetPackage", "read", |c, blob, v, p, f| code(
        c.catalog
            .clone()
            .get_package(pb::GetPackageRequest { r#ref: Some(p.clone()) })
            .await
    ));
    call!("ListVersions", "read", |c, blob, v, p, f| code(
        c.catalog
            .clone()
            .list_versions(pb::ListVersionsRequest {
                package: Some(p.clone()),
                ..Default::default()
            })
            .await
    ));
    call!("GetVersion", "read", |c, blob, v, p, f| code(
        c.catalog
            .clone()
            .get_version(pb::GetVersionRequest { r#ref: Some(v.clone()) })
            .await
    ));
    call!("ListFiles", "read", |c, blob, v, p, f| code(
        c.catalog
            .clone()
            .list_files(pb::ListFilesRequest {
                version: Some(v.clone()),
                ..Default::default()
            })
            .await
    ));
    call!("RecordDownload", "read", |c, blob, v, p, f| code(
        c.catalog.clone().record_download(f.clone()).await
    ));
    call!("DeleteFile", "delete", |c, blob, v, p, f| code(
        c.catalog.clone().delete_file(f.clone()).await
    ));
    call!("RestoreFile", "write", |c, blob, v, p, f| code(
        c.catalog.clone().restore_file(f.clone()).await
    ));
    call!("DeleteVersion", "delete", |c, blob, v, p, f| code(
        c.catalog.clone().delete_version(v.clone()).await
    ));
    call!("RestoreVersion", "write", |c, blob, v, p, f| code(
        c.catalog.clone().restore_version(v.clone()).await
    ));
    call!("DeletePackage", "delete", |c, blob, v, p, f| code(
        c.catalog.clone().delete_package(p.clone()).await
    ));
    call!("RestorePackage", "write", |c, blob, v, p, f| code(
        c.catalog.clone().restore_package(p.clone()).await
    ));
    call!("GetDuplicatePolicy", "read", |c, blob, v, p, f| code(
        c.catalog
            .clone()
            .get_duplicate_policy(pb::GetDuplicatePolicyRequest {
                namespace: "a".into(),
                r#type: T::Generic as i32,
            })
            .await
    ));
    call!("SetDuplicatePolicy", "admin", |c, blob, v, p, f| code(
        c.catalog
            .clone()
            .set_duplicate_policy(pb::DuplicatePolicy {
                namespace: "a".into(),
                r#type: T::Generic as i32,
                allow_duplicates: true,
                exception_regex: String::new(),
            })
            .await
    ));
    call!("ListEvents", "admin", |c, blob, v, p, f| code(
        c.audit.clone().list_events(pb::ListEventsRequest::default()).await
    ));
    call!("Stats", "admin", |c, blob, v, p, f| code(c.stats().await));
    call!("Check", "admin", |c, blob, v, p, f| code(
        c.admin.clone().check(pb::CheckRequest::default()).await
    ));
    call!("Purge", "admin", |c, blob, v, p, f| code(
        c.admin.clone().purge(pb::PurgeRequest::default()).await
    ));
    out
}

#[tokio::test]
async fn every_rpc_checks_token_scope_and_namespace() {
    let tokens: Vec<(&str, &str, &str)> = vec![
        ("reader", "read", "a"),
        ("writer", "write", "a"),
        ("deleter", "delete", "a"),
        ("admin", "admin", "*"),
        ("elsewhere", "read,write,delete", "b,a/*x"),
    ];
    let mut config = String::new();
    let mut secrets = Vec::new();
    for (id, scopes, ns) in &tokens {
        let (token, entry) = create_token(id, scopes, ns);
        config.push_str(&entry);
        secrets.push((*id, *scopes, token));
    }
    let d = Daemon::start(&config).await;
    let root = d.client().await;
    let data = random_bytes(3, 5000);
    let blob = put(&root, "a", data.clone()).await;
    let v = version_ref("a", "p", T::Generic, "tool", "1");
    let file_id = root
        .publish_blob(v, "f.bin", &blob)
        .await
        .unwrap()
        .file
        .unwrap()
        .file_id;

    for (id, scopes, token) in &secrets {
        let c = d.client_with(Some(token)).await;
        for (name, need, call) in calls(blob.clone(), file_id) {
            let granted = *id == "admin" || (scopes.split(',').any(|s| s == need) && *id != "elsewhere");
            let got = call(c.clone()).await;
            if granted {
                assert!(
                    !matches!(got, Code::PermissionDenied | Code::Unauthenticated),
                    "{id} should be allowed {name}, got {got:?}"
                );
            } else {
                assert_eq!(got, Code::PermissionDenied, "{id} calling {name}");
            }
        }
    }
    // No token, a malformed one, an unknown one.
    let bare = d.client_with(None).await;
    let forged = d.client_with(Some("stw_0000")).await;
    for c in [bare, forged] {
        for (name, _, call) in calls(blob.clone(), file_id) {
            assert_eq!(call(c.clone()).await, Code::Unauthenticated, "{name}");
        }
    }
    // The refusal says what is missing.
    let e = d.client_with(None).await.stats().await.unwrap_err();
    assert!(e.message().contains("authorization"), "{e:?}");
}

#[tokio::test]
async fn a_token_cannot_probe_another_namespace() {
    let (ta, ea) = create_token("tenant-a", "read,write,delete", "a");
    let d = Daemon::start(&ea).await;
    let root = d.client().await;
    let secret = random_bytes(4, 3000);
    let hb = put(&root, "b", secret.clone()).await;
    root.publish_blob(version_ref("b", "p", T::Npm, "hidden", "1.0.0"), "h.tgz", &hb)
        .await
        .unwrap();
    let a = d.client_with(Some(&ta)).await;
    // Asking in b is refused outright, naming what is missing.
    let e = a.stat("b", &hb).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("namespace \"b\""), "{e:?}");
    assert_eq!(code(a.get_bytes("b", &hb, 0, None).await), Code::PermissionDenied);
    let lp = a
        .catalog
        .clone()
        .list_packages(pb::ListPackagesRequest {
            namespace: "b".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(lp), Code::PermissionDenied);
    // In its own namespace, b's blob looks exactly like one nobody stored.
    let nobody = b3(b"never stored");
    let (s1, s2) = (
        a.stat("a", &hb).await.unwrap_err(),
        a.stat("a", &nobody).await.unwrap_err(),
    );
    assert_eq!((s1.code(), s2.code()), (Code::NotFound, Code::NotFound));
    assert_eq!(s1.message().replace(&hb, "X"), s2.message().replace(&nobody, "X"));
    assert_eq!(a.find_missing("a", vec![hb.clone()]).await.unwrap(), vec![hb.clone()]);
    let v = version_ref("a", "p", T::Generic, "steal", "1");
    let (p1, p2) = (
        a.publish_blob(v.clone(), "x", &hb).await.unwrap_err(),
        a.publish_blob(v.clone(), "x", &nobody).await.unwrap_err(),
    );
    assert_eq!((p1.code(), p2.code()), (Code::NotFound, Code::NotFound));
    assert_eq!(p1.message().replace(&hb, "X"), p2.message().replace(&nobody, "X"));
    // Declaring b's digest does not skip sending the bytes: wrong bytes fail.
    let claim = pb::PutHeader {
        expected_blake3: hb.clone(),
        ..stowage::api::client::header("a")
    };
    assert_eq!(
        code(a.put_bytes(claim.clone(), random_bytes(5, 3000)).await),
        Code::InvalidArgument
    );
    // Sending the real bytes is an upload like any other, and its answer
    // does not say b had them: new to a, nothing said about the store.
    let r = a.put_bytes(claim, secret.clone()).await.unwrap();
    assert!(r.new && r.added_bytes == 0, "{r:?}");
    let r = a
        .put_bytes(stowage::api::client::header("a"), secret.clone())
        .await
        .unwrap();
    assert!(!r.new, "{r:?}");
    let fresh = a
        .put_bytes(stowage::api::client::header("a"), random_bytes(6, 3000))
        .await
        .unwrap();
    assert!(fresh.new && fresh.added_bytes == 0, "{fresh:?}");
    // A store-wide token sees the dedup.
    let r = root.put_bytes(stowage::api::client::header("c"), secret).await.unwrap();
    assert!(!r.new && r.added_bytes == 0, "{r:?}");
    // The audit trail names the token.
    a.publish_blob(v, "mine", &hb).await.unwrap();
    let ev = root
        .audit
        .clone()
        .list_events(pb::ListEventsRequest {
            namespace: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].actor, "tenant-a");
}

/// What tenant a sees of its own namespace: its report by package (a reader
/// may not recompute it) and the plan of its own policy.
async fn tenant_view(a: &Client, reader: &Client) -> (pb::CapacityReport, pb::PlanSummary) {
    let mut r = by_package(a).await;
    let recompute = pb::CapacityRequest {
        namespace: "a".into(),
        recompute: true,
        ..Default::default()
    };
    let e = reader.report.clone().capacity(recompute).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("recompute"), "{e:?}");
    // Figures that change with time, not with other tenants.
    r.elapsed_ms = 0;
    r.days.clear();
    r.growth_30d = None;
    r.growth_90d = None;
    let mut summary = plan_summary(a, "keep-1", "a").await;
    summary.elapsed_ms = 0;
    (r, summary)
}

/// Namespace a's capacity report by package.
async fn by_package(c: &Client) -> pb::CapacityReport {
    let req = pb::CapacityRequest {
        namespace: "a".into(),
        by: "package".into(),
        ..Default::default()
    };
    c.report.clone().capacity(req).await.unwrap().into_inner()
}

/// Publishes `n` small files in `ns`; their file ids.
async fn publish_ids(c: &Client, ns: &str, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..n {
        let seed = rand::random::<u64>();
        let v = version_ref(ns, "ids", T::Generic, "counter", &format!("v{seed}"));
        let r = c.publish_bytes(v, "f", random_bytes(seed, 100)).await.unwrap();
        out.push(r.file.unwrap().file_id);
    }
    out
}

#[tokio::test]
async fn a_tenant_view_says_only_what_the_tenant_could_know_alone() {
    let (ta, ea) = create_token("tenant-a", "read,write,delete,admin", "a");
    let (tb, eb) = create_token("tenant-b", "read,write,delete,admin", "b");
    let (tr, er) = create_token("reader-a", "read", "a");
    let d = Daemon::start(&format!("{ea}\n{eb}\n{er}")).await;
    let (root, a, b, reader) = (
        d.client().await,
        d.client_with(Some(&ta)).await,
        d.client_with(Some(&tb)).await,
        d.client_with(Some(&tr)).await,
    );
    let lib = random_bytes(30, 500_000);
    let (old, control) = (random_bytes(31, 400_000), random_bytes(32, 400_000));
    let publish = |c: &Client, ns: &str, name: &str, ver: &str, file: &str, data: &Bytes| {
        let (c, v, file, data) = (
            c.clone(),
            version_ref(ns, "p", T::Generic, name, ver),
            file.to_string(),
            data.clone(),
        );
        async move { c.publish_bytes(v, &file, data).await.unwrap() }
    };
    publish(&a, "a", "public-lib", "1", "lib.bin", &lib).await;
    publish(&a, "a", "tool", "1", "old.bin", &old).await;
    publish(&a, "a", "tool", "2", "control.bin", &control).await;
    publish(&a, "a", "tool", "3", "new.bin", &random_bytes(33, 1000)).await;
    let keep1 = |ns: &str, name: &str| pb::RetentionPolicy {
        name: name.into(),
        namespace: ns.into(),
        package_name: "^tool$".into(),
        versions: Some(pb::RetentionRules {
            keep_latest: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    a.retention.clone().set_policy(keep1("a", "keep-1")).await.unwrap();
    let ids0 = publish_ids(&a, "a", 2).await;
    let (report0, plan0) = tenant_view(&a, &reader).await;
    let lib_group = |r: &pb::CapacityReport| {
        r.groups
            .iter()
            .find(|g| g.key == "a/p/generic:public-lib")
            .cloned()
            .unwrap()
    };
    let g = lib_group(&report0);
    assert!(
        g.exclusive_bytes >= 500_000 && g.exclusive_bytes == g.physical_bytes,
        "{g:?}"
    );
    assert_eq!((plan0.blobs_freed, plan0.unique_bytes), (2, 800_000), "{plan0:?}");

    // b stores the same bytes, and more, and asks for extra digests.
    publish(&b, "b", "copy", "1", "lib.bin", &lib).await;
    publish(&b, "b", "copy", "2", "old.bin", &old).await;
    publish(&b, "b", "big", "1", "big.bin", &random_bytes(34, 3_000_000)).await;
    let digested = random_bytes(35, 5000);
    let all = |ns: &str| pb::PutHeader {
        digests: vec![
            pb::Digest::Sha1 as i32,
            pb::Digest::Md5 as i32,
            pb::Digest::Sha512 as i32,
        ],
        ..stowage::api::client::header(ns)
    };
    let r = b.put_bytes(all("b"), digested.clone()).await.unwrap();
    let bd = r.digests.unwrap();
    assert!(bd.sha1.is_some() && bd.md5.is_some() && bd.sha512.is_some(), "{bd:?}");
    b.retention.clone().set_policy(keep1("b", "cleanup")).await.unwrap();
    publish_ids(&b, "b", 5).await;

    // a's report, plan and ids are as if b did not exist.
    let (report1, plan1) = tenant_view(&a, &reader).await;
    let ids1 = publish_ids(&a, "a", 2).await;
    assert_eq!(report1.summary, report0.summary, "a's summary moved with b's uploads");
    assert_eq!(
        (lib_group(&report1).exclusive_bytes, lib_group(&report1).shared_bytes),
        (g.exclusive_bytes, 0),
        "b's copy of a's bytes shows in a's report"
    );
    assert_eq!(report1.groups, report0.groups);
    assert_eq!(plan1, plan0, "b's copy of a's bytes shows in a's plan");
    assert_eq!(ids1, vec![ids0[1] + 1, ids0[1] + 2], "a's file ids jumped with b's");
    // A store-wide token sees the sharing, and the plan frees what GC would.
    let mut all_ns = by_package(&root).await;
    assert!(report1.namespace_scoped && !all_ns.namespace_scoped);
    let shared = lib_group(&all_ns);
    assert_eq!((shared.exclusive_bytes, shared.shared_bytes), (0, g.exclusive_bytes));
    assert!(all_ns.summary.take().unwrap().artifacts_count > report1.summary.unwrap().artifacts_count);
    let s = plan_summary(&root, "keep-1", "a").await;
    assert!(!s.namespace_scoped && plan1.namespace_scoped);
    assert_eq!((s.blobs_freed, s.unique_bytes), (1, 400_000), "{s:?}");

    // Digests: a sees only those it asked for.
    let r = a
        .put_bytes(stowage::api::client::header("a"), digested.clone())
        .await
        .unwrap();
    let ad = r.digests.unwrap();
    assert!(ad.sha1.is_none() && ad.md5.is_none() && ad.sha512.is_none(), "{ad:?}");
    let st = a.stat("a", &b3(&digested)).await.unwrap().digests.unwrap();
    assert!(st.sha1.is_none() && st.md5.is_none() && st.sha512.is_none(), "{st:?}");
    let verify = pb::PutHeader {
        expected_blake3: b3(&digested),
        digests: vec![pb::Digest::Sha1 as i32],
        ..stowage::api::client::header("a")
    };
    let vd = a.put_bytes(verify, digested.clone()).await.unwrap().digests.unwrap();
    assert_eq!(
        (vd.sha1, vd.md5, vd.sha512),
        (bd.sha1.clone(), None, None),
        "a verify-only put"
    );
    let st = a.stat("a", &b3(&digested)).await.unwrap().digests.unwrap();
    assert_eq!(
        (st.sha1, st.md5, st.sha512),
        (bd.sha1.clone(), None, None),
        "a asked for sha1"
    );
    let v = version_ref("a", "p", T::Generic, "digested", "1");
    let f = a.publish_blob(v, "d.bin", &b3(&digested)).await.unwrap().file.unwrap();
    let fd = f.digests.unwrap();
    assert_eq!((&fd.sha1, &fd.md5, &fd.sha512), (&bd.sha1, &None, &None), "{fd:?}");
    let st = b.stat("b", &b3(&digested)).await.unwrap().digests.unwrap();
    assert!(st.sha1.is_some() && st.md5.is_some() && st.sha512.is_some(), "{st:?}");

    // Policies: b's "cleanup" does not exist for a, and a may have its own.
    let get = |name: &str| pb::GetPolicyRequest {
        name: name.into(),
        ..Default::default()
    };
    let cleanup = |c: &Client| {
        let mut r = c.retention.clone();
        async move { r.get_policy(get("cleanup")).await.map(|p| p.into_inner()) }
    };
    let (e1, e2) = (
        cleanup(&a).await.unwrap_err(),
        a.retention.clone().get_policy(get("nothing")).await.unwrap_err(),
    );
    assert_eq!((e1.code(), e2.code()), (Code::NotFound, Code::NotFound), "{e1:?}");
    assert_eq!(
        e1.message().replace("cleanup", "X"),
        e2.message().replace("nothing", "X")
    );
    a.retention.clone().set_policy(keep1("a", "cleanup")).await.unwrap();
    assert_eq!(cleanup(&a).await.unwrap().namespace, "a");
    let theirs = cleanup(&b).await.unwrap();
    assert_eq!(theirs.namespace, "b");
    a.retention.clone().delete_policy(get("cleanup")).await.unwrap();
    assert_eq!(cleanup(&b).await.unwrap(), theirs);
    // The store-wide counters still agree with the catalog.
    assert_no_report_drift(&root).await;
}

#[tokio::test]
async fn the_local_admin_token_is_private_and_found_by_the_cli() {
    let d = Daemon::start("").await;
    use std::os::unix::fs::PermissionsExt;
    let path = d.data_dir().join(stowage::auth::ADMIN_TOKEN_FILE);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // The CLI reads it from the data dir (the harness points STOWAGE_DATA_DIR there).
    assert!(d.cli(&["admin", "stats"]).status.success());
    let out = std::process::Command::new(BIN)
        .args(["admin", "stats", "--addr", &d.addr, "--token-data-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no token: /nonexistent/admin.token does not exist"),
        "{err}"
    );
    let bad = d.cli(&["admin", "stats", "--token", "stw_nope"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown token"));
}

#[tokio::test]
async fn quotas_hold_at_the_limit_and_refuse_over_it() {
    let d = Daemon::start("trash_window = \"1day\"\nupload_lease = \"1h\"\n[quotas]\nsmall = \"10000B\"").await;
    let c = d.client().await;
    let six = random_bytes(6, 6000);
    let four = random_bytes(7, 4000);
    put(&c, "small", six.clone()).await;
    put(&c, "small", four.clone()).await; // exactly at the limit
    let before = c.stats().await.unwrap();
    let e = c
        .put_bytes(stowage::api::client::header("small"), random_bytes(8, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("quota of 10000 bytes"), "{e:?}");
    let v = version_ref("small", "p", T::Generic, "g", "1");
    let e = c
        .publish_bytes(v.clone(), "big.bin", random_bytes(9, 300_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Nothing is indexed or counted (chunk records already appended to the
    // open pack stay unreferenced garbage, like any rejected upload's).
    let after = c.stats().await.unwrap();
    assert_eq!(
        // Free disk moves with every write on the machine.
        pb::StatsResponse {
            pack_bytes: 0,
            free_disk_bytes: None,
            ..after
        },
        pb::StatsResponse {
            pack_bytes: 0,
            free_disk_bytes: None,
            ..before
        },
        "a refused upload keeps nothing"
    );
    // Bytes it already holds cost nothing more; other namespaces are not limited.
    put(&c, "small", six.clone()).await;
    c.publish_blob(v.clone(), "six.bin", &b3(&six)).await.unwrap();
    put(&c, "other", random_bytes(10, 50_000)).await;
    // Releasing bytes frees quota.
    d.advance_clock(std::time::Duration::from_secs(7200));
    let r = c
        .admin
        .clone()
        .purge(pb::PurgeRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.references_released, 2, "four's lease ended; six is published: {r:?}");
    put(&c, "small", random_bytes(11, 4000)).await;
    let check = c
        .admin
        .clone()
        .check(pb::CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(check.drift.is_empty(), "{:#?}", check.drift);
}

#[tokio::test]
async fn a_stalled_upload_is_ended_and_frees_what_it_held() {
    let d = Daemon::start("upload_idle_timeout = \"1s\"").await;
    let c = d.client().await;
    let before = c.stats().await.unwrap();
    for size in [1000usize, 300_000] {
        // Header and some data, then silence (the sender stays open).
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(stowage::api::client::header("ns"))),
        })
        .await
        .unwrap();
        tx.send(pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(random_bytes(size as u64, size))),
        })
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let e = c
            .blobs
            .clone()
            .put(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
        assert!(e.message().contains("sent nothing"), "{e:?}");
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(900) && waited < std::time::Duration::from_secs(10),
            "{waited:?}"
        );
        drop(tx);
    }
    let after = c.stats().await.unwrap();
    assert_eq!(
        (after.blobs, after.references, after.chunks),
        (before.blobs, before.references, before.chunks)
    );
    put(&c, "ns", random_bytes(12, 300_000)).await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_keeps_nothing() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let before = c.stats().await.unwrap();
    let msgs = vec![
        pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(stowage::api::client::header("ns"))),
        },
        pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(random_bytes(13, 17 << 20))),
        },
    ];
    let e = c
        .blobs
        .clone()
        .max_encoding_message_size(64 << 20)
        .put(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("over the 16 MiB limit"), "{e:?}");
    let after = c.stats().await.unwrap();
    assert_eq!(
        (after.blobs, after.references, after.chunks),
        (before.blobs, before.references, before.chunks)
    );
    put(&c, "ns", random_bytes(14, 1 << 20)).await;
}

fn header_msg(ns: &str) -> pb::PutRequest {
    pb::PutRequest {
        msg: Some(pb::put_request::Msg::Header(stowage::api::client::header(ns))),
    }
}

#[tokio::test]
async fn an_upload_that_never_sends_its_header_is_ended() {
    let d = Daemon::start("upload_idle_timeout = \"1s\"").await;
    let c = d.client().await;
    let started = std::time::Instant::now();
    // Streams opened and left silent (the senders stay alive until the end).
    let (put_tx, rx) = tokio::sync::mpsc::channel::<pb::PutRequest>(1);
    let (mut blobs, mut catalog, mut catalog2) = (c.blobs.clone(), c.catalog.clone(), c.catalog.clone());
    let silent_put = blobs.put(tokio_stream::wrappers::ReceiverStream::new(rx));
    let (pub_tx, rx) = tokio::sync::mpsc::channel::<pb::PublishFileRequest>(1);
    let publish = catalog.publish_file(tokio_stream::wrappers::ReceiverStream::new(rx));
    // A by-hash publish must end its stream after the header; this one does not.
    let blob = put(&c, "a", random_bytes(21, 1000)).await;
    let (hash_tx, rx) = tokio::sync::mpsc::channel(1);
    hash_tx
        .send(pb::PublishFileRequest {
            msg: Some(pb::publish_file_request::Msg::Header(pb::PublishFileHeader {
                version: Some(version_ref("a", "p", T::Generic, "tool", "1")),
                file_name: "f".into(),
                blake3: blob,
                upload: None,
            })),
        })
        .await
        .unwrap();
    let by_hash = catalog2.publish_file(tokio_stream::wrappers::ReceiverStream::new(rx));
    let (silent_put, publish, by_hash) = tokio::join!(silent_put, publish, by_hash);
    for e in [silent_put.unwrap_err(), publish.unwrap_err(), by_hash.unwrap_err()] {
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
        assert!(e.message().contains("sent nothing for 1s"), "{e:?}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop((put_tx, pub_tx, hash_tx));
    // Nothing was published.
    let v = c
        .catalog
        .clone()
        .list_packages(pb::ListPackagesRequest {
            namespace: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.packages.is_empty(), "{v:?}");
}

type Held = (
    tokio::sync::mpsc::Sender<pb::PutRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::PutResponse>, tonic::Status>>,
);

/// `n` uploads in progress (a header and a 100 kB frame each, then held
/// open), each holding its slot (the daemon's uploads-in-progress gauge
/// says so; its config needs `metrics_listen`) so a later probe cannot take
/// one's slot. Dropping a sender ends its upload.
async fn hold_uploads(d: &Daemon, c: &Client, ns: &str, n: u64) -> Vec<Held> {
    let mut held = Vec::new();
    for i in 0..n {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(header_msg(ns)).await.unwrap();
        tx.send(pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(random_bytes(31 + i, 100_000))),
        })
        .await
        .unwrap();
        let mut blobs = c.blobs.clone();
        let task = tokio::spawn(async move { blobs.put(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
        held.push((tx, task));
    }
    let timeout = std::time::Duration::from_secs(10);
    eventually(timeout, "the held uploads take their slots", || async {
        let (_, _, body) = d.scrape().await;
        match sample(&body, "stowage_uploads_in_progress") {
            Some(v) if v >= n as f64 => Ok(()),
            v => Err(format!("stowage_uploads_in_progress {v:?}")),
        }
    })
    .await;
    held
}

#[tokio::test]
async fn one_token_cannot_take_every_upload_slot() {
    let (token, entry) = create_token("tenant", "read,write", "a");
    let d = Daemon::start(&format!(
        "max_concurrent_uploads = 4\nmax_uploads_per_token = 2\nmetrics_listen = \"127.0.0.1:0\"\n{entry}"
    ))
    .await;
    let tenant = d.client_with(Some(&token)).await;
    let held = hold_uploads(&d, &tenant, "a", 2).await;
    let e = tenant
        .put_bytes(stowage::api::client::header("a"), random_bytes(70, 1000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_uploads_per_token"), "{e:?}");
    // Other tokens still upload.
    put(&d.client().await, "b", random_bytes(71, 1000)).await;
    for (tx, task) in held {
        drop(tx);
        task.await.unwrap().unwrap();
    }
    put(&tenant, "a", random_bytes(72, 1000)).await;
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_not_queued() {
    let d = Daemon::start("max_concurrent_uploads = 2\nmetrics_listen = \"127.0.0.1:0\"").await;
    let c = d.client().await;
    let stored = put(&c, "ns", random_bytes(30, 5000)).await;
    let held = hold_uploads(&d, &c, "ns", 2).await;
    // Once both hold their slots, a third upload is turned away at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        match c
            .put_bytes(stowage::api::client::header("ns"), random_bytes(40, 1000))
            .await
        {
            Err(e) => break e,
            Ok(_) => assert!(std::time::Instant::now() < deadline, "a third upload was never refused"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("max_concurrent_uploads = 2"), "{refused:?}");
    assert!(held.iter().all(|(_, t)| !t.is_finished()), "a held upload ended early");
    let e = c
        .publish_bytes(
            version_ref("ns", "p", T::Generic, "tool", "1"),
            "f",
            random_bytes(41, 10),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Reads are not uploads.
    assert_eq!(
        c.get_bytes("ns", &stored, 0, None).await.unwrap(),
        random_bytes(30, 5000)
    );
    // The held uploads finish normally; their slots come back.
    for (tx, task) in held {
        drop(tx);
        let r = task.await.unwrap().unwrap().into_inner();
        assert_eq!(r.size, 100_000);
    }
    put(&c, "ns", random_bytes(42, 1000)).await;
    c.publish_bytes(
        version_ref("ns", "p", T::Generic, "tool", "1"),
        "f",
        random_bytes(41, 10),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_upload_over_max_blob_size_is_refused_and_keeps_nothing() {
    let d = Daemon::start("max_blob_size = \"1MiB\"").await;
    let c = d.client().await;
    let before = c.stats().await.unwrap();
    // Declared too big: refused before any byte is read.
    let mut h = stowage::api::client::header("ns");
    h.expected_size = Some((1 << 20) + 1);
    let e = c.put_bytes(h, random_bytes(50, 10)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_blob_size"), "{e:?}");
    // Undeclared, streamed past the limit: refused when it gets there.
    for size in [(1 << 20) + 1, 3 << 20] {
        let e = c
            .put_bytes(stowage::api::client::header("ns"), random_bytes(51, size))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    }
    let e = c
        .publish_bytes(
            version_ref("ns", "p", T::Generic, "tool", "1"),
            "big",
            random_bytes(52, 2 << 20),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let after = c.stats().await.unwrap();
    assert_eq!(
        (after.blobs, after.references, after.chunks),
        (before.blobs, before.references, before.chunks)
    );
    // At the limit is fine.
    put(&c, "ns", random_bytes(53, 1 << 20)).await;
}

#[tokio::test]
async fn store_wide_requests_need_a_grant_over_every_namespace() {
    let (token, entry) = create_token("a-admin", "admin", "a");
    let d = Daemon::start(&entry).await;
    let root = d.client().await;
    root.publish_bytes(
        version_ref("a", "p", T::Generic, "tool", "1"),
        "f",
        random_bytes(60, 100),
    )
    .await
    .unwrap();
    root.publish_bytes(
        version_ref("b", "p", T::Generic, "tool", "1"),
        "f",
        random_bytes(61, 100),
    )
    .await
    .unwrap();
    let c = d.client_with(Some(&token)).await;
    // Its own namespace: everything an admin may do there.
    let events = |ns: &str| {
        let mut audit = c.audit.clone();
        let req = pb::ListEventsRequest {
            namespace: ns.into(),
            ..Default::default()
        };
        async move { audit.list_events(req).await }
    };
    let mine = events("a").await.unwrap().into_inner();
    assert_eq!(mine.events.len(), 1, "{mine:?}");
    assert!(mine.events.iter().all(|e| e.namespace == "a"));
    // Another namespace, or the whole store: refused, saying why.
    assert_eq!(code(events("b").await), Code::PermissionDenied);
    let e = events("").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("every namespace"), "{e:?}");
    assert_eq!(code(c.stats().await), Code::PermissionDenied);
    assert_eq!(
        code(c.admin.clone().check(pb::CheckRequest::default()).await),
        Code::PermissionDenied
    );
    // An empty bearer token is no token.
    let e = d.client_with(Some("")).await.stats().await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
}

#[test]
fn a_damaged_admin_token_file_stops_the_daemon() {
    let err = crate::harness::refused_start_with("", |data| {
        std::fs::write(data.join(stowage::auth::ADMIN_TOKEN_FILE), "\n").unwrap();
    });
    assert!(err.contains("does not hold a token"), "{err}");
}
