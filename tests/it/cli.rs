//! The CLI against a running daemon.

use crate::harness::*;

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn put_get_stat_and_stats_from_the_command_line() {
    let d = Daemon::start("").await;
    let dir = d.dir.path();
    let f1 = dir.join("one.tgz");
    let f2 = dir.join("two.whl");
    let d1 = text_bytes(40, 200_000);
    std::fs::write(&f1, &d1).unwrap();
    std::fs::write(&f2, random_bytes(41, 70_000)).unwrap();

    let put = json_lines(&d.cli(&[
        "blob",
        "put",
        "--namespace",
        "cli",
        "--digests",
        "sha1,md5",
        f1.to_str().unwrap(),
        f2.to_str().unwrap(),
    ]));
    assert_eq!(put.len(), 2);
    for k in ["blake3", "sha256", "sha1", "md5", "size", "new", "added_bytes"] {
        assert!(put[0].get(k).is_some(), "missing {k} in {}", put[0]);
    }
    assert_eq!(put[0]["size"], 200_000);
    assert_eq!(put[0]["new"], true);
    let h = put[0]["blake3"].as_str().unwrap().to_string();
    assert_eq!(h, b3(&d1));

    let out = dir.join("back.tgz");
    let get = d.cli(&["blob", "get", "--namespace", "cli", &h, "-o", out.to_str().unwrap()]);
    assert!(get.status.success(), "{}", String::from_utf8_lossy(&get.stderr));
    assert!(std::fs::read(&out).unwrap() == d1);
    let ranged = d.cli(&[
        "blob",
        "get",
        "--namespace",
        "cli",
        &h,
        "--offset",
        "10",
        "--length",
        "100",
    ]);
    assert!(ranged.status.success());
    assert!(ranged.stdout == d1[10..110]);

    let stat = json_lines(&d.cli(&["blob", "stat", "--namespace", "cli", &h]));
    assert_eq!(stat[0]["size"], 200_000);
    assert_eq!(stat[0]["sha256"], sha256_hex(&d1));

    let stats = json_lines(&d.cli(&["admin", "stats", "--json"]));
    for k in ["logical_bytes", "unique_bytes", "physical_bytes", "chunks", "packs"] {
        assert!(stats[0][k].as_u64().is_some(), "missing {k} in {}", stats[0]);
    }
    assert_eq!(stats[0]["logical_bytes"], 270_000);

    let again = json_lines(&d.cli(&["blob", "put", "--namespace", "cli", f1.to_str().unwrap()]));
    assert_eq!(again[0]["new"], false);
    assert_eq!(again[0]["added_bytes"], 0);
}

#[tokio::test]
async fn cli_errors_are_one_clear_line() {
    let d = Daemon::start("").await;
    let missing = "ab".repeat(32);
    let out = d.cli(&["blob", "stat", &missing]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("NotFound"), "{err}");

    let out = d.cli(&["blob", "get", "nothex"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("InvalidArgument"));

    let out = std::process::Command::new(BIN)
        .args(["admin", "stats", "--addr", "http://127.0.0.1:1", "--token", "unused"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot connect"), "{err}");

    let out = d.cli(&["blob", "put", "/nonexistent/file"]);
    assert!(!out.status.success());
}

/// `args` followed by the coordinates of package `acme/web` `npm` `left-pad`.
fn pkg<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend([
        "--namespace",
        "acme",
        "--project",
        "web",
        "--type",
        "npm",
        "--name",
        "left-pad",
    ]);
    v
}

/// The same, plus `--version`.
fn ver<'a>(args: &[&'a str], version: &'a str) -> Vec<&'a str> {
    let mut v = pkg(args);
    v.extend(["--version", version]);
    v
}

fn text(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn publish_list_delete_restore_and_audit_from_the_command_line() {
    let d = Daemon::start("").await;
    let dir = d.dir.path();
    let (a, b) = (dir.join("left-pad-1.0.0.tgz"), dir.join("README.md"));
    let (da, db) = (text_bytes(50, 120_000), random_bytes(51, 3_000));
    std::fs::write(&a, &da).unwrap();
    std::fs::write(&b, &db).unwrap();

    let published = json_lines(
        &d.cli(
            &[
                ver(&["publish", "--digests", "sha1"], "1.0.0").as_slice(),
                &[a.to_str().unwrap(), b.to_str().unwrap()],
            ]
            .concat(),
        ),
    );
    assert_eq!(published.len(), 2);
    let (pa, pb) = (&published[0], &published[1]);
    assert_eq!(pa["file_name"], "left-pad-1.0.0.tgz");
    assert_eq!(pb["file_name"], "README.md");
    assert_eq!(pa["size"], 120_000);
    assert_eq!(pa["blake3"], b3(&da));
    assert_eq!(pa["sha256"], sha256_hex(&da));
    assert!(pa["sha1"].as_str().is_some_and(|s| s.len() == 40), "{pa}");
    assert_eq!(
        (&pa["package_created"], &pa["version_created"]),
        (&true.into(), &true.into())
    );
    assert_eq!(
        (&pb["package_created"], &pb["version_created"]),
        (&false.into(), &false.into())
    );
    assert_eq!(pa["blob_new"], true);
    assert!(pa["added_bytes"].as_u64().unwrap() > 0);
    let id_b = pb["file_id"].as_u64().unwrap();
    assert_ne!(pa["file_id"], pb["file_id"]);

    // A second version, from one file under another name.
    let again = json_lines(
        &d.cli(
            &[
                ver(&["publish", "--file-name", "left-pad-2.0.0.tgz"], "2.0.0").as_slice(),
                &[a.to_str().unwrap()],
            ]
            .concat(),
        ),
    );
    assert_eq!(again[0]["file_name"], "left-pad-2.0.0.tgz");
    assert_eq!(again[0]["version_created"], true);
    assert_eq!(again[0]["blob_new"], false);
    assert_eq!(again[0]["added_bytes"], 0);

    // Packages.
    let pkgs = json_lines(&d.cli(&["packages", "list", "--namespace", "acme", "--json"]));
    assert_eq!(pkgs.len(), 1);
    let p = &pkgs[0];
    assert_eq!(
        (&p["namespace"], &p["project"], &p["type"], &p["name"]),
        (&"acme".into(), &"web".into(), &"npm".into(), &"left-pad".into())
    );
    assert_eq!(p["versions"], 2);
    assert_eq!(p["files"], 3);
    assert_eq!(p["size_bytes"], 243_000);
    assert_eq!(p["latest_version"], "2.0.0");
    assert!(p["created_unix_ms"].as_i64().unwrap() > 0);
    assert!(p["deleted_unix_ms"].is_null());
    let table = text(&d.cli(&["packages", "list", "--namespace", "acme"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("PROJECT") && lines[0].contains("LATEST"),
        "{table}"
    );
    assert!(lines[1].contains("left-pad") && lines[1].contains("2.0.0"), "{table}");
    let none = json_lines(&d.cli(&["packages", "list", "--namespace", "acme", "--type", "pypi", "--json"]));
    assert!(none.is_empty());
    let shown = json_lines(&d.cli(&pkg(&["packages", "show", "--json"])));
    assert_eq!(shown[0]["versions"], 2);

    // Versions, newest first; paging with a page size of one.
    let vers = json_lines(&d.cli(&pkg(&["versions", "list", "--page-size", "1", "--json"])));
    let names: Vec<_> = vers.iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(names, ["2.0.0", "1.0.0"]);
    assert_eq!(vers[1]["files"], 2);
    assert_eq!(vers[1]["size_bytes"], 123_000);
    let limited = json_lines(&d.cli(&pkg(&["versions", "list", "--limit", "1", "--json"])));
    assert_eq!(limited.len(), 1);
    let table = text(&d.cli(&pkg(&["versions", "list"])));
    assert!(table.starts_with("VERSION"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");

    // Files, and a counted download.
    let files = json_lines(&d.cli(&ver(&["files", "list", "--json"], "1.0.0")));
    assert_eq!(files.len(), 2);
    assert_eq!(files[1]["file_name"], "README.md");
    assert_eq!(files[1]["blake3"], b3(&db));
    assert_eq!(files[1]["download_count"], 0);
    let table = text(&d.cli(&ver(&["files", "list"], "1.0.0")));
    assert!(table.starts_with("ID") && table.contains(&b3(&db)), "{table}");
    let id = id_b.to_string();
    let got = d.dir.path().join("got.md");
    let out = got.to_str().unwrap();
    text(&d.cli(&[ver(&["files", "download"], "1.0.0"), vec!["--file-id", &id, "-o", out]].concat()));
    assert!(std::fs::read(&got).unwrap() == db);
    let dl = json_lines(&d.cli(&ver(&["files", "list", "--json"], "1.0.0")));
    assert_eq!(dl[1]["download_count"], 1);
    assert!(dl[1]["last_download_unix_ms"].as_i64().unwrap() > 0);

    // Delete and restore a version.
    let del = json_lines(&d.cli(&ver(&["versions", "delete", "--json"], "2.0.0")));
    assert!(del[0]["deleted_unix_ms"].as_i64().is_some(), "{}", del[0]);
    let active = json_lines(&d.cli(&pkg(&["versions", "list", "--json"])));
    assert_eq!(active.len(), 1);
    let trash = json_lines(&d.cli(&pkg(&["versions", "list", "--state", "deleted", "--json"])));
    assert_eq!(trash.len(), 1);
    assert_eq!(trash[0]["version"], "2.0.0");
    let p = json_lines(&d.cli(&pkg(&["packages", "show", "--json"])));
    assert_eq!(
        (&p[0]["versions"], &p[0]["latest_version"]),
        (&1.into(), &"1.0.0".into())
    );
    let res = json_lines(&d.cli(&ver(&["versions", "restore", "--json"], "2.0.0")));
    assert!(res[0]["deleted_unix_ms"].is_null(), "{}", res[0]);
    let all = json_lines(&d.cli(&pkg(&["versions", "list", "--json"])));
    assert_eq!(all.len(), 2);

    // `versions show` prints the version and its files.
    let show = json_lines(&d.cli(&ver(&["versions", "show", "--json"], "1.0.0")));
    assert_eq!(show[0]["file_list"].as_array().unwrap().len(), 2);
    let table = text(&d.cli(&ver(&["versions", "show"], "1.0.0")));
    assert!(table.starts_with("VERSION") && table.contains("README.md"), "{table}");

    // Duplicate policy.
    let set = json_lines(&d.cli(&[
        "duplicate-policy",
        "set",
        "--namespace",
        "acme",
        "--type",
        "npm",
        "--deny",
        "--exception",
        r".*\.md",
        "--json",
    ]));
    assert_eq!(set[0]["allow_duplicates"], false);
    let show = text(&d.cli(&["duplicate-policy", "show", "--namespace", "acme", "--type", "npm"]));
    assert!(show.contains("denied") && show.contains(r".*\.md"), "{show}");
    let dup = d.cli(&[ver(&["publish"], "1.0.0"), vec![a.to_str().unwrap()]].concat());
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("AlreadyExists"));

    // The audit trail, newest first.
    let events = json_lines(&d.cli(&["audit", "list", "--namespace", "acme", "--json"]));
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("action"), s("target"), s("version"))
        })
        .collect();
    let has = |action: &str, target: &str, version: &str| {
        seen.iter()
            .any(|(a, t, v)| (a.as_str(), t.as_str(), v.as_str()) == (action, target, version))
    };
    assert!(has("publish", "file", "1.0.0"), "{seen:?}");
    assert!(has("publish", "file", "2.0.0"), "{seen:?}");
    assert!(has("delete", "version", "2.0.0"), "{seen:?}");
    assert!(has("restore", "version", "2.0.0"), "{seen:?}");
    let restore_at = seen.iter().position(|(a, _, _)| a == "restore").unwrap();
    let delete_at = seen.iter().position(|(a, _, _)| a == "delete").unwrap();
    assert!(restore_at < delete_at, "newest first: {seen:?}");
    assert!(
        events
            .iter()
            .all(|e| e["actor"] == "local-admin" && e["id"].as_u64().is_some())
    );
    let deletes = json_lines(&d.cli(&["audit", "list", "--action", "delete", "--json"]));
    assert_eq!(deletes.len(), 1);
    let one = json_lines(&d.cli(&["audit", "list", "--limit", "1", "--page-size", "1", "--json"]));
    assert_eq!(one.len(), 1);
    let table = text(&d.cli(&["audit", "list"]));
    assert!(table.starts_with("ID") && table.contains("restore"), "{table}");

    // Consistency check and purge.
    let check = json_lines(&d.cli(&["admin", "check", "--json"]));
    assert_eq!(check[0]["drift"], serde_json::json!([]));
    assert_eq!(check[0]["files"], 3);
    let table = text(&d.cli(&["admin", "check"]));
    assert!(table.starts_with("PACKAGES"), "{table}");
    let purge = json_lines(&d.cli(&["admin", "purge", "--json"]));
    assert_eq!(purge[0]["versions"], 0);
}

#[tokio::test]
async fn catalog_cli_errors_are_one_clear_line() {
    let d = Daemon::start("").await;
    let f = d.dir.path().join("x.tgz");
    std::fs::write(&f, b"x").unwrap();
    let one_line_err = |out: std::process::Output, want: &str| {
        assert!(
            !out.status.success(),
            "succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(out.stdout.is_empty());
    };

    let unknown_type = [
        "publish",
        "--namespace",
        "acme",
        "--project",
        "web",
        "--type",
        "rpm",
        "--name",
        "x",
        "--version",
        "1",
        f.to_str().unwrap(),
    ];
    one_line_err(d.cli(&unknown_type), "unknown package type \"rpm\"");
    one_line_err(
        d.cli(&["packages", "list", "--namespace", "acme", "--type", "rpm"]),
        "unknown package type",
    );

    let bad_version = ver(&["publish"], "../1");
    one_line_err(
        d.cli(&[bad_version, vec![f.to_str().unwrap()]].concat()),
        "InvalidArgument",
    );
    let bad_version = d.cli(&[ver(&["publish"], "1 0"), vec![f.to_str().unwrap()]].concat());
    let err = String::from_utf8_lossy(&bad_version.stderr).to_string();
    one_line_err(bad_version, "InvalidArgument");
    assert!(err.contains("version"), "{err}");

    one_line_err(d.cli(&pkg(&["packages", "show"])), "NotFound");
    one_line_err(d.cli(&ver(&["versions", "delete"], "9.9.9")), "NotFound");
    one_line_err(
        d.cli(
            &[
                ver(&["publish", "--file-name", "y"], "1"),
                vec![f.to_str().unwrap(), f.to_str().unwrap()],
            ]
            .concat(),
        ),
        "--file-name",
    );
    one_line_err(
        d.cli(&[ver(&["publish"], "1"), vec!["/nonexistent/file"]].concat()),
        "/nonexistent/file",
    );
    let policy = ["duplicate-policy", "set", "--namespace", "acme", "--type", "npm"];
    one_line_err(
        d.cli(&[&policy[..], &["--deny", "--exception", "("]].concat()),
        "InvalidArgument",
    );
    assert!(
        !d.cli(&[&policy[..], &["--allow", "--exception", "x"]].concat())
            .status
            .success()
    );
    assert!(!d.cli(&policy).status.success(), "--allow or --deny is required");
    // Nothing was published by any of that.
    assert!(json_lines(&d.cli(&["audit", "list", "--json"])).is_empty());
}

#[tokio::test]
async fn a_closed_output_pipe_ends_the_cli_quietly() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    for i in 0..3u64 {
        put(&c, "pipe", random_bytes(i, 100)).await;
    }
    // The reader is gone before the CLI writes: like `stowage ... | head -0`.
    let mut child = std::process::Command::new(BIN)
        .args(["blob", "stat", "--namespace", "pipe", &b3(&random_bytes(0, 100))])
        .env("STOWAGE_ADDR", &d.addr)
        .env("STOWAGE_DATA_DIR", d.data_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// `serve` on port 0 (as every harness daemon): the daemon logs the
/// addresses it bound and writes them to the data dir, where the CLI finds
/// the daemon; a later start removes the files of the earlier one and
/// writes its own.
#[tokio::test]
async fn serve_writes_the_addresses_it_bound_to_the_data_dir() {
    use std::net::SocketAddr;
    use stowage::api::{LISTEN_ADDR_FILE, METRICS_ADDR_FILE};
    let mut d = Daemon::start("metrics_listen = \"127.0.0.1:0\"").await;
    let read = |d: &Daemon, name: &str| std::fs::read_to_string(d.data_dir().join(name));
    let bound = |d: &Daemon, name: &str| -> SocketAddr { read(d, name).unwrap().trim().parse().unwrap() };
    let (grpc, metrics) = (bound(&d, LISTEN_ADDR_FILE), bound(&d, METRICS_ADDR_FILE));
    assert!(
        grpc.port() != 0 && metrics.port() != 0 && grpc != metrics,
        "{grpc} {metrics}"
    );
    assert_eq!(d.addr, format!("http://{grpc}"));
    let log = d.log();
    assert!(
        log.contains(&grpc.to_string()) && log.contains(&metrics.to_string()),
        "{log}"
    );
    let (status, _, _) = scrape(&metrics.to_string()).await;
    assert!(status.contains("200"), "{status}");
    let out = std::process::Command::new(BIN)
        .args(["admin", "stats", "--addr", &format!("http://{grpc}")])
        .env("STOWAGE_DATA_DIR", d.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Restarted without metrics, over a stale listen.addr.
    d.stop();
    let config = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, config.replace("metrics_listen = \"127.0.0.1:0\"", "")).unwrap();
    std::fs::write(d.data_dir().join(LISTEN_ADDR_FILE), "stale").unwrap();
    d.spawn().await;
    assert!(read(&d, METRICS_ADDR_FILE).is_err(), "the old metrics.addr stays");
    assert_eq!(d.metrics, None);
    let again = bound(&d, LISTEN_ADDR_FILE);
    assert_eq!(d.addr, format!("http://{again}"));
    assert!(json_lines(&d.cli(&["admin", "stats", "--json"]))[0]["packs"].is_u64());
}
