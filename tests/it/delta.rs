//! Cross-version delta through the running daemon: versions of a wheel
//! whose members change a little each time are optimized with deltas on;
//! the changed chunks are stored as zstd deltas on the previous version's
//! (chains bounded by `optimize.delta_depth`), every version reads back
//! exactly, `admin check` and the report counters agree, purging the
//! versions that are bases frees exactly what the plan said and keeps the
//! later versions whole, `rebuild-index` restores the edges, kill -9 in the
//! middle loses nothing, and a flipped byte in a base is DATA_LOSS for the
//! blobs that need it, never wrong bytes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use stowage::api::client::{Client, version_ref};
use stowage::api::pb::PackageType as T;
use stowage::hash::Hash;
use stowage::pack::format::{self, Codec, DeltaHeader, Kind};

use crate::harness::*;
use crate::optimize::{all_exact, check_clean, json_lines};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Eager GC, no background optimizer, no cache of recreated blobs (every
/// read decodes its deltas), deltas up to `depth` deep.
fn config(depth: u8) -> String {
    format!(
        "pack_max_age = \"500ms\"\npack_target_size = \"2MiB\"\ntrash_window = \"1day\"\n\
         [gc]\ninterval = \"0s\"\ngrace = \"0s\"\ncompact_threshold = 0.0\npack_delete_delay = \"0s\"\n\
         [optimize]\nenabled = false\ncache_size = \"0B\"\ndelta_depth = {depth}\n"
    )
}

/// `versions` wheels of one package: three large text members that get a
/// few small edits in every version, and a version string.
fn versions(dir: &Path, versions: u32, seed: u64) -> Vec<(String, Bytes)> {
    const SCRIPT: &str = r#"
import random, sys, zipfile
out, versions, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
words = ["def", "return", "self", "import", "package", "version", "class", "None", "\n", "    ", "value", "index"]
members = {f"pkg/big{i}.py": " ".join(r.choice(words) for _ in range(40000)) for i in range(3)}
for v in range(versions):
    for name, text in members.items():
        for _ in range(6):
            at = r.randrange(len(text) - 10)
            text = text[:at] + r.choice(words) + text[at + 4:]
        members[name] = text
    files = dict(members)
    files["pkg/__init__.py"] = f"__version__ = '1.{v}.0'\n"
    with zipfile.ZipFile(f"{out}/pkg-1.{v}.0-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
"#;
    let st = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dir)
        .arg(versions.to_string())
        .arg(seed.to_string())
        .status()
        .expect("python3 runs (tools/setup.sh installs it)");
    assert!(st.success());
    (0..versions)
        .map(|v| {
            let path = dir.join(format!("pkg-1.{v}.0-py3-none-any.whl"));
            (format!("1.{v}.0"), Bytes::from(std::fs::read(path).unwrap()))
        })
        .collect()
}

/// Publishes each version into acme/py/pypi:pkg; (blake3, bytes) of each.
async fn publish(c: &Client, files: &[(String, Bytes)]) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for (version, data) in files {
        let h = put(c, "acme", data.clone()).await;
        let v = version_ref("acme", "py", T::Pypi, "pkg", version);
        c.publish_blob(v, &format!("pkg-{version}-py3-none-any.whl"), &h)
            .await
            .unwrap();
        out.push((h, data.clone()));
    }
    out
}

/// Every chunk record in the data dir's packs: id -> (pack file, entry,
/// delta header).
fn chunk_records(d: &Daemon) -> HashMap<Hash, (std::path::PathBuf, format::Entry, Option<DeltaHeader>)> {
    let mut out = HashMap::new();
    for dir in ["packs", "staging"] {
        for path in pack_files(&d.data_dir().join(dir)) {
            let bytes = std::fs::read(&path).unwrap();
            let (entries, _) = format::scan_records(&bytes).unwrap();
            for e in entries.into_iter().filter(|e| e.kind == Kind::Chunk) {
                let at = e.offset as usize + format::RECORD_HEADER_LEN;
                let data = &bytes[at..at + e.stored_len as usize];
                let delta = (e.codec == Codec::Delta).then(|| DeltaHeader::split(data).unwrap().0);
                out.insert(e.id, (path.clone(), e, delta));
            }
        }
    }
    out
}

/// The deltas among the indexed chunks (those `admin check` counts),
/// checked against the depth bound: each depth is its base's plus one.
fn deltas(d: &Daemon, depth: u8) -> Vec<(Hash, DeltaHeader)> {
    let records = chunk_records(d);
    let mut out = Vec::new();
    for (id, (_, _, delta)) in &records {
        let Some(h) = delta else { continue };
        assert!(
            h.depth >= 1 && h.depth <= depth,
            "delta {id} at depth {} (bound {depth})",
            h.depth
        );
        let base = records
            .get(&h.base)
            .unwrap_or_else(|| panic!("the base of {id} is in no pack"));
        assert_eq!(base.2.map_or(0, |b| b.depth) + 1, h.depth, "depth of {id}");
        out.push((*id, *h));
    }
    out
}

async fn optimize_versions_with_deltas(depth: u8) {
    let mut d = Daemon::start(&config(depth)).await;
    let c = d.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let blobs = publish(&c, &versions(tmp.path(), 6, 20261201 + depth as u64)).await;
    d.wait_sealed().await;

    let p = json_lines(&d.cli(&["optimize", "--json"]));
    let p = p.last().unwrap();
    assert_eq!(p["failed"], 0, "{p}");
    assert_eq!(p["optimized"], 6, "{p}");
    d.wait_sealed().await;
    json_lines(&d.cli(&["gc", "--json"]));
    d.wait_sealed().await;
    let found = deltas(&d, depth);
    assert!(found.len() >= 6, "depth {depth}: only {} deltas", found.len());
    assert_eq!(
        p["deltas"],
        found.len() as u64,
        "the pass says how many deltas it stored: {p}"
    );
    assert!(
        p["delta_saved_bytes"].as_u64().unwrap() > p["delta_bytes"].as_u64().unwrap(),
        "deltas of small edits save more than they store: {p}"
    );
    if depth > 1 {
        assert!(
            found.iter().any(|(_, h)| h.depth == depth),
            "no chain reached depth {depth}"
        );
    }
    all_exact(&c, &blobs, "after optimize with deltas").await;
    for (h, data) in &blobs {
        let (at, n) = (data.len() as u64 / 3, data.len() as u64 / 4);
        let got = c.get_bytes("acme", h, at, Some(n)).await.unwrap();
        assert!(got == data[at as usize..(at + n) as usize], "range of {h}");
    }
    check_clean(&d);
    assert_no_report_drift(&c).await;

    // rebuild-index restores the edges from the records.
    let named: Vec<(String, String)> = blobs.iter().map(|(h, _)| ("acme".to_string(), h.clone())).collect();
    let without_packs = |mut a: Vec<String>| {
        let last = a.pop().unwrap();
        a.push(last[..last.find(" packs ").unwrap()].to_string());
        a
    };
    let answered = without_packs(answers(&c, &named).await);
    d.stop();
    let out = Command::new(BIN)
        .args(["admin", "rebuild-index", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["missing_chunks"], 0, "{report}");
    assert_eq!(report["bad_records"], 0, "{report}");
    d.spawn().await;
    let c = d.client().await;
    assert_eq!(without_packs(answers(&c, &named).await), answered);
    all_exact(&c, &blobs, "after rebuild-index").await;
    check_clean(&d);
    assert_no_report_drift(&c).await;

    // Keeping only the latest version purges the bases of its deltas: the
    // plan says what GC frees, bases the kept version needs included.
    let policy = tmp.path().join("keep.toml");
    std::fs::write(
        &policy,
        "name = \"keep-one\"\nnamespace = \"acme\"\nversions = { keep_latest = 1 }\n",
    )
    .unwrap();
    assert!(d.cli(&["retention", "set", policy.to_str().unwrap()]).status.success());
    let plan = json_lines(&d.cli(&["retention", "plan", "--json"]));
    let summary = plan.last().unwrap()["summary"].clone();
    assert!(summary["physical_bytes"].as_u64().unwrap() > 0, "{summary}");
    json_lines(&d.cli(&["retention", "sweep", "--json"]));
    d.advance_clock(2 * DAY);
    json_lines(&d.cli(&["admin", "purge", "--json"]));
    d.wait_sealed().await;
    let gc = json_lines(&d.cli(&["gc", "--json"]));
    assert_eq!(gc[0]["bytes_collected"], summary["physical_bytes"], "{gc:?}");
    assert_eq!(gc[0]["chunks_collected"], summary["chunks_freed"], "{gc:?} {summary}");
    let kept = &blobs[blobs.len() - 1..];
    all_exact(&c, kept, "the kept version, its bases' versions purged").await;
    let still = deltas(&d, depth);
    assert!(
        !still.is_empty(),
        "the kept version's deltas went with their bases' versions"
    );
    check_clean(&d);
    assert_no_report_drift(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_chains_store_deltas_one_deep() {
    optimize_versions_with_deltas(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_chains_store_deltas_three_deep() {
    optimize_versions_with_deltas(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_delta_pass_leaves_every_blob_whole() {
    let mut d = Daemon::start(&config(4)).await;
    let c = d.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let blobs = publish(&c, &versions(tmp.path(), 6, 7)).await;
    for delay_ms in [200, 600, 1200] {
        let mut run = Command::new(BIN)
            .args(["optimize", "--json"])
            .env("STOWAGE_ADDR", &d.addr)
            .env("STOWAGE_DATA_DIR", d.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        d.kill9();
        let _ = run.wait();
        d.spawn().await;
        let c = d.client().await;
        all_exact(&c, &blobs, &format!("after kill -9 at {delay_ms} ms")).await;
        check_clean(&d);
    }
    let p = json_lines(&d.cli(&["optimize", "--json"]));
    assert_eq!(p.last().unwrap()["failed"], 0);
    assert!(!deltas(&d, 4).is_empty(), "the pass stored no delta");
    let c = d.client().await;
    all_exact(&c, &blobs, "after the last pass").await;
    check_clean(&d);
    assert_no_report_drift(&c).await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_base_is_data_loss_for_the_deltas_on_it() {
    let mut d = Daemon::start(&config(2)).await;
    let c = d.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let blobs = publish(&c, &versions(tmp.path(), 2, 11)).await;
    json_lines(&d.cli(&["optimize", "--json"]));
    d.wait_sealed().await;
    json_lines(&d.cli(&["gc", "--json"]));
    d.wait_sealed().await;
    let records = chunk_records(&d);
    let bases: HashSet<Hash> = deltas(&d, 2).into_iter().map(|(_, h)| h.base).collect();
    assert!(!bases.is_empty(), "no delta to test");
    d.stop();
    // One byte flipped in the middle of every base's record, nothing else.
    for base in &bases {
        let (path, e, _) = &records[base];
        let mut bytes = std::fs::read(path).unwrap();
        let at = (e.offset + format::RECORD_HEADER_LEN as u64 + e.stored_len as u64 / 2) as usize;
        bytes[at] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    }
    d.spawn().await;
    let c = d.client().await;
    // The second version's deltas need the damaged bases.
    let (h, data) = &blobs[1];
    expect_data_loss(&c, "acme", h, data, "a blob whose deltas' bases are damaged").await;
}

/// Two versions of a wheel whose library was rebuilt: a byte in every 32
/// changed, so every 64-byte window did and no sketch finds the old
/// chunks. The catalog names the previous version, and the optimizer walks
/// its recipe beside the new one: the changed chunks are deltas on the
/// chunks in line with them. The same files as bare blobs (no catalog, no
/// previous version) get no deltas at all. Each version also has another
/// platform's wheel, published first, whose library is unrelated: the
/// reference is the file of the same name in the other version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_library_finds_its_base_in_the_previous_version() {
    const SCRIPT: &str = r#"
import random, sys, zipfile
out = sys.argv[1]
r = random.Random(20261202)
lib = bytes(r.choice(b"abcdefghijklmnop") for _ in range(600_000))
other = bytes(r.choice(b"abcdefghijklmnop") for _ in range(600_000))
for v in range(2):
    if v:
        lib = bytes(x ^ 1 if i % 32 == 0 else x for i, x in enumerate(lib))
    for platform, so in [("cp311-cp311-macosx_11_0_arm64", other), ("py3-none-any", lib)]:
        with zipfile.ZipFile(f"{out}/pkg-1.{v}.0-{platform}.whl", "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in [("pkg/__init__.py", f"__version__ = '1.{v}.0'\n".encode()), ("pkg/_lib.so", so)]:
                z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
"#;
    let tmp = tempfile::tempdir().unwrap();
    let st = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    // (version, file name, bytes), the other platform's wheel first.
    let mut files = Vec::new();
    for v in 0..2 {
        for platform in ["cp311-cp311-macosx_11_0_arm64", "py3-none-any"] {
            let name = format!("pkg-1.{v}.0-{platform}.whl");
            let data = Bytes::from(std::fs::read(tmp.path().join(&name)).unwrap());
            files.push((format!("1.{v}.0"), name, data));
        }
    }
    let mut deltas = Vec::new();
    for published in [false, true] {
        let d = Daemon::start(&config(4)).await;
        let c = d.client().await;
        let mut blobs = Vec::new();
        for (version, name, data) in &files {
            let h = put(&c, "acme", data.clone()).await;
            if published {
                let v = version_ref("acme", "py", T::Pypi, "pkg", version);
                c.publish_blob(v, name, &h).await.unwrap();
            }
            blobs.push((h, data.clone()));
        }
        d.wait_sealed().await;
        let p = json_lines(&d.cli(&["optimize", "--json"]));
        let p = p.last().unwrap().clone();
        assert_eq!(p["failed"], 0, "{p}");
        assert_eq!(p["optimized"], 4, "{p}");
        d.wait_sealed().await;
        json_lines(&d.cli(&["gc", "--json"]));
        all_exact(&c, &blobs, "after optimize").await;
        check_clean(&d);
        assert_no_report_drift(&c).await;
        deltas.push((p["deltas"].as_u64().unwrap(), p["delta_saved_bytes"].as_u64().unwrap()));
    }
    assert_eq!(deltas[0].0, 0, "a sketch found a base: the test's edits are too sparse");
    assert!(
        deltas[1].0 >= 2,
        "the previous version's chunks were not used: {deltas:?}"
    );
    assert!(deltas[1].1 > 100_000, "the deltas saved little: {deltas:?}");
}
