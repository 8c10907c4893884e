//! What a new operator meets (issue 16): readable output by default, JSON
//! when asked, errors that say what to do, strict filters, a data dir one
//! daemon holds, config fields as flags and variables, reflection for the
//! usual tools. Each test runs the commands the issue quotes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Publishes `data` as `file` of `acme/python/pypi:botocore` `version`.
fn publish(d: &Daemon, version: &str, file: &str, data: &[u8]) {
    let path = d.dir.path().join(file);
    std::fs::write(&path, data).unwrap();
    ok(&d.cli(&[
        "publish",
        "-n",
        "acme",
        "-p",
        "python",
        "-t",
        "pypi",
        "--name",
        "botocore",
        "--version",
        version,
        path.to_str().unwrap(),
    ]));
}

const BOTOCORE: [&str; 8] = ["-n", "acme", "-p", "python", "-t", "pypi", "--name", "botocore"];

/// A word that is a raw byte count: digits only, five or more.
fn has_raw_byte_count(text: &str, bytes: u64) -> bool {
    text.split_whitespace().any(|w| w == bytes.to_string())
}

#[tokio::test]
async fn plans_sweeps_policies_and_audit_read_as_tables_by_default() {
    let d = Daemon::start("").await;
    for (i, v) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
        publish(&d, v, &format!("botocore-{v}.whl"), &random_bytes(i as u64, 150_000));
    }
    let policy = d.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "name = \"trim\"\nnamespace = \"acme\"\nversions = { keep_latest = 1 }\n",
    )
    .unwrap();
    ok(&d.cli(&["retention", "set", policy.to_str().unwrap()]));

    // `retention show`: the rules in words, no JSON, no `null`.
    let shown = ok(&d.cli(&["retention", "show"]));
    assert!(shown.contains("keep latest 1"), "{shown}");
    assert!(!shown.contains("null") && !shown.contains('{'), "{shown}");

    // `retention plan`: a table naming the project, sizes readable.
    let plan = ok(&d.cli(&["retention", "plan"]));
    assert!(plan.contains("acme/python/pypi:botocore"), "{plan}");
    assert!(plan.contains("146.5 KiB") || plan.contains("KiB"), "{plan}");
    assert!(!plan.contains('{'), "no JSON in the table: {plan}");
    assert!(!has_raw_byte_count(&plan, 150_000), "raw byte count: {plan}");
    assert!(!has_raw_byte_count(&plan, 300_000), "raw byte count: {plan}");
    assert!(plan.contains("versions to delete"), "{plan}");
    let header = plan.lines().next().unwrap();
    for col in ["POLICY", "ACTION", "PACKAGE", "VERSION", "SIZE", "REASON"] {
        assert!(header.contains(col), "{header}");
    }
    // `--json` keeps the machine form.
    let lines = json_lines(&ok(&d.cli(&["retention", "plan", "--json"])));
    assert_eq!(lines.len(), 3, "two items and the summary");
    assert_eq!(lines[2]["summary"]["logical_bytes"], 300_000);

    // The sweep summary.
    let swept = ok(&d.cli(&["retention", "sweep"]));
    assert!(swept.contains("versions deleted") && swept.contains("2"), "{swept}");
    assert!(swept.contains("KiB") && !swept.contains('{'), "{swept}");
    assert!(!has_raw_byte_count(&swept, 300_000), "{swept}");
    let again = ok(&d.cli(&["retention", "plan"]));
    assert!(again.starts_with("nothing to remove"), "{again}");

    // The audit list: readable sizes; `--json` the raw ones.
    let audit = ok(&d.cli(&["audit", "list"]));
    assert!(audit.lines().next().unwrap().contains("SIZE"), "{audit}");
    assert!(audit.contains("146.5 KiB"), "{audit}");
    assert!(!has_raw_byte_count(&audit, 150_000), "{audit}");
    let events = json_lines(&ok(&d.cli(&["audit", "list", "--json", "--action", "publish"])));
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["bytes"], 150_000);
}

#[tokio::test]
async fn logs_have_no_colour_codes_and_no_debug_printed_structs() {
    let d = Daemon::start("").await;
    publish(&d, "1.0.0", "a.whl", &random_bytes(7, 10_000));
    let policy = d.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "name = \"p\"\nnamespace = \"acme\"\nversions = { keep_latest = 5 }\n",
    )
    .unwrap();
    ok(&d.cli(&["retention", "set", policy.to_str().unwrap()]));
    ok(&d.cli(&["retention", "sweep"]));
    ok(&d.cli(&["gc"]));
    let log = d.log();
    assert!(log.contains("retention sweep finished"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file: {log}");
    for s in ["SweepProgress {", "GcReport {", "PurgeCounts {", "Some(", " { "] {
        assert!(!log.contains(s), "a Debug-printed struct ({s}) in: {log}");
    }
    // The daemon says where its admin token is, as an absolute path.
    let token = d.data_dir().join(stowage::auth::ADMIN_TOKEN_FILE);
    let line = log
        .lines()
        .find(|l| l.contains("local admin token"))
        .expect("token path logged");
    assert!(line.contains(&token.display().to_string()), "{line}");
}

#[tokio::test]
async fn errors_say_what_to_do_and_say_it_once() {
    let d = Daemon::start("").await;
    // A missing token: where the CLI looked (absolute) and how to point elsewhere.
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["admin", "stats", "--addr", &d.addr, "--token-data-dir", "not-here"])
        .current_dir(cwd.path())
        .env_remove("STOWAGE_TOKEN")
        .output()
        .unwrap();
    let err = failed(&out);
    let looked = cwd.path().join("not-here").join("admin.token");
    assert!(err.contains(&looked.display().to_string()), "{err}");
    assert!(
        err.contains("--token-data-dir") && err.contains("STOWAGE_DATA_DIR"),
        "{err}"
    );
    assert!(err.contains("--token") && err.contains("STOWAGE_TOKEN"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // No doubled words.
    let err = failed(&d.cli(&[&["packages", "show"][..], &BOTOCORE].concat()));
    assert!(err.starts_with("error: NotFound: "), "{err}");
    assert!(!err.to_lowercase().contains("notfound: not found"), "{err}");
    let out = Command::new(BIN)
        .args(["admin", "stats", "--addr", "http://127.0.0.1:1", "--token", "x"])
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains("Connection refused"), "{err}");
    for doubled in [
        "transport error: transport error",
        "tcp connect error: tcp connect error",
    ] {
        assert!(!err.contains(doubled), "{err}");
    }
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");

    // `--addr 127.0.0.1:7420` without a scheme is plain HTTP.
    publish(&d, "1.0.0", "a.whl", b"x");
    let bare = d.addr.trim_start_matches("http://").to_string();
    let out = Command::new(BIN)
        .args(["namespaces", "list", "--addr", &bare])
        .env("STOWAGE_DATA_DIR", d.data_dir())
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("acme"), "{text}");
}

/// Starts `stowage serve` with `config` and `args`; returns the child.
fn serve(config: &Path, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_listen_address_may_be_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("stowage.toml");
    std::fs::write(&config, format!("data_dir = {data:?}\nlisten = \"localhost:0\"\n")).unwrap();
    let mut child = serve(&config, &[]);
    let bound = eventually(Duration::from_secs(60), "the daemon listening", || {
        let f = data.join(stowage::api::LISTEN_ADDR_FILE);
        async move { std::fs::read_to_string(&f).map_err(|e| e.to_string()) }
    })
    .await;
    let bound: std::net::SocketAddr = bound.trim().parse().unwrap();
    assert!(bound.ip().is_loopback(), "{bound}");
    let out = Command::new(BIN)
        .args(["namespaces", "list", "--addr", &format!("localhost:{}", bound.port())])
        .env("STOWAGE_DATA_DIR", &data)
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("the store holds no namespaces"), "{text}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_told_the_pid_of_the_first() {
    let d = Daemon::start("").await;
    let pid = d.pid().unwrap();
    for extra in [&[][..], &["--listen", "127.0.0.1:0"][..]] {
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&d.config)
            .args(extra)
            .output()
            .unwrap();
        let err = failed(&out);
        assert!(
            err.contains(&format!("another daemon (pid {pid}) holds the data dir")),
            "{err}"
        );
        assert!(err.contains(&d.data_dir().display().to_string()), "{err}");
        assert!(!err.contains("LOCK") && !err.contains("rocksdb"), "{err}");
    }
    // The first one is unharmed.
    ok(&d.cli(&["namespaces", "list"]));
}

#[tokio::test]
async fn a_busy_port_is_refused_before_anything_is_created_and_never_aborts() {
    // A populated store whose index has work left (killed, not stopped):
    // the case where an early exit used to race RocksDB's threads.
    let mut d = Daemon::start("").await;
    let c = d.client().await;
    for i in 0..20u64 {
        put(&c, "busy", random_bytes(i, 100_000)).await;
    }
    d.kill9();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let fresh = d.dir.path().join("fresh");
    let fresh_arg = fresh.to_str().unwrap().to_string();
    for round in 0..16 {
        let mut args = vec!["serve", "--config", d.config.to_str().unwrap(), "--listen", &listen];
        if round % 2 == 1 {
            args.extend(["--data-dir", &fresh_arg]);
        }
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "round {round}: {:?} {err}", out.status);
        assert!(err.contains(&format!("cannot listen on {listen}")), "{err}");
        assert!(!err.contains("pthread") && !err.contains("engine open"), "{err}");
        assert!(!fresh.exists(), "a refused start created {}", fresh.display());
    }
    drop(busy);
    d.spawn().await;
    assert_eq!(d.client().await.stats().await.unwrap().blobs, 20);
}

#[tokio::test]
async fn audit_filters_are_strict_and_take_readable_times() {
    let d = Daemon::start("").await;
    publish(&d, "1.0.0", "a.whl", b"one");
    ok(&d.cli(&[&["versions", "delete"][..], &BOTOCORE, &["--version", "1.0.0"]].concat()));
    ok(&d.cli(&[&["versions", "restore"][..], &BOTOCORE, &["--version", "1.0.0"]].concat()));
    ok(&d.cli(&["duplicate-policy", "set", "-n", "acme", "-t", "pypi", "--deny"]));
    let policy = d.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "name = \"p\"\nnamespace = \"acme\"\nversions = { keep_latest = 5 }\n",
    )
    .unwrap();
    ok(&d.cli(&["retention", "set", policy.to_str().unwrap()]));
    ok(&d.cli(&["retention", "delete", "p"]));

    // `--action bogus` is an error that lists the actions.
    let err = failed(&d.cli(&["audit", "list", "--action", "bogus"]));
    for a in [
        "publish",
        "delete",
        "restore",
        "purge",
        "set-policy",
        "set-retention-policy",
    ] {
        assert!(err.contains(a), "{a} not in {err}");
    }
    // Every action stored is one the filter takes, and finds.
    let all = json_lines(&ok(&d.cli(&["audit", "list", "--json"])));
    let mut actions: Vec<String> = all.iter().map(|e| e["action"].as_str().unwrap().to_string()).collect();
    actions.sort();
    actions.dedup();
    assert_eq!(actions.len(), 6, "{actions:?}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for a in &actions {
        let found = json_lines(&ok(&d.cli(&["audit", "list", "--json", "--action", a])));
        assert!(
            !found.is_empty() && found.iter().all(|e| e["action"] == a.as_str()),
            "{a}"
        );
        assert!(
            readme.contains(&format!("`{a}`")),
            "README does not name the action {a}"
        );
    }

    // Times: ages, RFC 3339 and milliseconds, under either flag name.
    let n = all.len();
    for since in [
        &["--since-ms", "1h"][..],
        &["--since", "7d"],
        &["--since", "2000-01-01T00:00:00Z"],
        &["--since-ms", "1"],
    ] {
        let got = json_lines(&ok(&d.cli(&[&["audit", "list", "--json"][..], since].concat())));
        assert_eq!(got.len(), n, "{since:?}");
    }
    for until in [&["--until", "1h"][..], &["--until-ms", "2000-01-01T00:00:00Z"]] {
        let got = ok(&d.cli(&[&["audit", "list"][..], until].concat()));
        assert_eq!(got.trim(), "no audit events match", "{until:?}");
    }
    let err = failed(&d.cli(&["audit", "list", "--since-ms", "yesterday"]));
    assert!(err.contains("7d") && err.contains("RFC 3339"), "{err}");
}

#[tokio::test]
async fn files_download_writes_the_file_and_counts_it() {
    let d = Daemon::start("").await;
    let data = text_bytes(9, 300_000);
    publish(&d, "1.0.0", "botocore-1.0.0.whl", &data);
    let file_id = json_lines(&ok(
        &d.cli(&[&["files", "list", "--json"][..], &BOTOCORE, &["--version", "1.0.0"]].concat())
    ))[0]["file_id"]
        .as_u64()
        .unwrap()
        .to_string();
    let at = [&BOTOCORE[..], &["--version", "1.0.0", "--file-id", &file_id]].concat();
    let out = d.dir.path().join("back.whl");
    ok(&d.cli(&[&["files", "download"][..], &at, &["-o", out.to_str().unwrap()]].concat()));
    assert!(std::fs::read(&out).unwrap() == data);
    let stdout = d.cli(&[&["files", "download"][..], &at].concat());
    assert!(ok(&stdout).as_bytes() == data);
    let listed = json_lines(&ok(
        &d.cli(&[&["files", "list", "--json"][..], &BOTOCORE, &["--version", "1.0.0"]].concat())
    ));
    assert_eq!(listed[0]["download_count"], 2);

    // A file in the trash is not downloaded, and not counted.
    ok(&d.cli(&[&["files", "delete"][..], &at].concat()));
    let gone = d.dir.path().join("gone.whl");
    let err = failed(&d.cli(&[&["files", "download"][..], &at, &["-o", gone.to_str().unwrap()]].concat()));
    assert!(err.contains("trash"), "{err}");
    assert!(!gone.exists());
}

#[tokio::test]
async fn namespaces_are_listed_and_an_empty_one_says_so() {
    let d = Daemon::start("").await;
    let empty = ok(&d.cli(&["namespaces", "list"]));
    assert_eq!(empty.trim(), "the store holds no namespaces");
    publish(&d, "1.0.0", "a.whl", &random_bytes(3, 5_000));
    let listed = ok(&d.cli(&["namespaces", "list"]));
    let header = listed.lines().next().unwrap();
    assert!(header.starts_with("NAMESPACE") && header.contains("SIZE"), "{listed}");
    assert!(listed.lines().nth(1).unwrap().starts_with("acme "), "{listed}");
    assert!(listed.contains("4.9 KiB"), "{listed}");
    let json = json_lines(&ok(&d.cli(&["namespaces", "list", "--json"])));
    assert_eq!(json[0]["namespace"], "acme");
    assert_eq!(json[0]["logical_bytes"], 5_000);

    let ghost = ok(&d.cli(&["packages", "list", "-n", "ghost"]));
    assert!(ghost.contains("namespace \"ghost\" holds nothing"), "{ghost}");
    assert!(!ghost.contains("PROJECT"), "no lone header: {ghost}");
    assert_eq!(ok(&d.cli(&["packages", "list", "-n", "ghost", "--json"])), "");
    let report = ok(&d.cli(&["report", "-n", "ghost"]));
    assert!(report.contains("namespace \"ghost\" holds no files"), "{report}");
    assert!(!report.contains("PACKAGES"), "no lone header: {report}");
    let none = ok(&d.cli(&["packages", "list", "-n", "acme", "--name-contains", "zzz"]));
    assert!(none.contains("no packages of namespace \"acme\" match"), "{none}");
}

#[tokio::test]
async fn every_config_field_is_a_flag_and_an_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stowage.toml");
    std::fs::write(&config, "zstd_level = 5\n[gc]\ninterval = \"2h\"\ngrace = \"3h\"\n").unwrap();
    let print = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--print-config", "--config"])
            .arg(&config)
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let text = ok(&cmd.output().unwrap());
        toml::from_str::<toml::Table>(&text).unwrap()
    };
    let t = print(
        &[
            "--gc-interval",
            "10m",
            "--quotas",
            "acme=1GiB",
            "--listen",
            "localhost:7430",
        ],
        &[
            ("STOWAGE_GC_INTERVAL", "4h"),
            ("STOWAGE_RETENTION_SWEEP_RATE", "7"),
            ("STOWAGE_SCRUB_ENABLED", "false"),
        ],
    );
    assert_eq!(t["gc"]["interval"].as_str(), Some("10m"), "the flag beats the variable");
    assert_eq!(t["gc"]["grace"].as_str(), Some("3h"), "the file beats the default");
    assert_eq!(t["zstd_level"].as_integer(), Some(5));
    assert_eq!(
        t["retention"]["sweep_rate"].as_integer(),
        Some(7),
        "the variable beats the default"
    );
    assert_eq!(t["scrub"]["enabled"].as_bool(), Some(false));
    assert_eq!(t["quotas"]["acme"].as_str(), Some("1GiB"));
    assert_eq!(t["listen"].as_str(), Some("localhost:7430"));
    // Every field is there, defaulted or not.
    for k in [
        "data_dir",
        "pack_target_size",
        "trash_window",
        "upload_lease",
        "purge_interval",
    ] {
        assert!(t.contains_key(k), "{k} missing");
    }
    let t = print(&[], &[("STOWAGE_GC_INTERVAL", "4h")]);
    assert_eq!(t["gc"]["interval"].as_str(), Some("4h"), "the variable beats the file");

    // A bad value names its flag and variable; nothing starts.
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--gc-interval", "soon", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(
        err.contains("--gc-interval") && err.contains("STOWAGE_GC_INTERVAL"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());

    // A daemon takes them: an upload over `--max-blob-size` is refused.
    let data = dir.path().join("d2");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("STOWAGE_MAX_BLOB_SIZE", "1KiB")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let bound = eventually(Duration::from_secs(60), "the daemon listening", || {
        let f = data.join(stowage::api::LISTEN_ADDR_FILE);
        async move { std::fs::read_to_string(&f).map_err(|e| e.to_string()) }
    })
    .await;
    let big = dir.path().join("big.bin");
    std::fs::write(&big, random_bytes(1, 4096)).unwrap();
    let out = Command::new(BIN)
        .args(["blob", "put", "--addr", bound.trim(), big.to_str().unwrap()])
        .env("STOWAGE_DATA_DIR", &data)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains("max_blob_size"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Python's grpcio-reflection speaks v1alpha only: it lists the services
/// and fetches a service's file by symbol.
const PY_REFLECTION: &str = r#"
import sys, grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(sys.argv[1]))
services = sorted(db.get_services())
print(" ".join(services))
f = db.FindFileContainingSymbol("stowage.v1.BlobService")
print(f.name)
"#;

fn python_has_reflection() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn reflection_answers_v1alpha_clients_as_well_as_v1() {
    if !python_has_reflection() {
        // tools/setup.sh --test installs it; a bare checkout installs it here.
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(extra)
                .args(["grpcio", "grpcio-reflection"])
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(
            pip(&[]) || pip(&["--break-system-packages"]),
            "cannot install grpcio-reflection"
        );
    }
    let d = Daemon::start("").await;
    let target = d.addr.trim_start_matches("http://").to_string();
    let out = Command::new("python3")
        .args(["-c", PY_REFLECTION, &target])
        .output()
        .unwrap();
    let text = ok(&out);
    let mut lines = text.lines();
    let services = lines.next().unwrap_or_default();
    for s in [
        "stowage.v1.BlobService",
        "stowage.v1.CatalogService",
        "stowage.v1.RetentionService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.split(' ').any(|x| x == s), "{s} not in {services}");
    }
    assert!(lines.next().unwrap_or_default().ends_with(".proto"), "{text}");
}
