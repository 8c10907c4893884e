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

    let stats = json_lines(&d.cli(&["admin", "stats"]));
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
        .args(["admin", "stats", "--addr", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot connect"), "{err}");

    let out = d.cli(&["blob", "put", "/nonexistent/file"]);
    assert!(!out.status.success());
}
