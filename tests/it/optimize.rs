//! The package-aware optimizer through the running daemon: zip and tar.gz
//! packages made by Python's zipfile and tarfile (stock zlib), and npm
//! tarballs from the registry (Node's Chromium zlib), become recipes, read back byte-exactly (whole and by range), free their raw
//! chunks through GC, keep retention plans equal to what GC frees, survive
//! `rebuild-index`, kill -9 in the middle, and damage (DATA_LOSS, never
//! wrong bytes).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use stowage::api::client::{Client, version_ref};
use stowage::api::pb::PackageType as T;
use stowage::pack::format::{self, Kind};

use crate::harness::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Eager GC, no background optimizer (the tests run it when they mean to).
const CONFIG: &str = "pack_max_age = \"500ms\"\npack_target_size = \"2MiB\"\ntrash_window = \"1day\"\n\
    [gc]\ninterval = \"0s\"\ngrace = \"0s\"\ncompact_threshold = 0.0\npack_delete_delay = \"0s\"\n\
    [optimize]\nenabled = false\n";

/// Python writes `versions` versions of a wheel (zip) and an sdist
/// (tar.gz) whose members change a little from one version to the next.
fn packages(dir: &Path, versions: u32) -> Vec<(String, PathBuf)> {
    const SCRIPT: &str = r#"
import gzip, io, random, sys, tarfile, zipfile
out, versions = sys.argv[1], int(sys.argv[2])
words = ["def", "return", "self", "import", "package", "version", "class", "None", "\n", "    "]
def member(seed, n):
    r = random.Random(seed)
    return " ".join(r.choice(words) for _ in range(n)).encode()
for v in range(versions):
    files = {f"pkg/mod{i}.py": member(i * 1000 + (v if i % 7 == 0 else 0), 300 + 90 * i) for i in range(40)}
    files["pkg/__init__.py"] = f"__version__ = '1.{v}.0'\n".encode()
    files["pkg/data/models.json.gz"] = gzip.compress(member(99, 20000), mtime=0)
    with zipfile.ZipFile(f"{out}/pkg-1.{v}.0-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            # Fixed timestamps: the same bytes, so the same optimizer order, every run.
            z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pkg-1.{v}.0/{name}")
            info.size, info.mtime = len(data), 1700000000
            t.addfile(info, io.BytesIO(data))
    with open(f"{out}/pkg-1.{v}.0.tar.gz", "wb") as f:
        f.write(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
"#;
    let st = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dir)
        .arg(versions.to_string())
        .status()
        .expect("python3 runs (tools/setup.sh installs it)");
    assert!(st.success());
    let mut out = Vec::new();
    for v in 0..versions {
        for name in [format!("pkg-1.{v}.0-py3-none-any.whl"), format!("pkg-1.{v}.0.tar.gz")] {
            out.push((format!("1.{v}.0"), dir.join(name)));
        }
    }
    out
}

/// Publishes each package file into acme/py/pypi:pkg, and returns
/// (blake3, bytes) of everything stored, two plain blobs included.
async fn publish_all(c: &Client, files: &[(String, PathBuf)]) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for (version, path) in files {
        let data = Bytes::from(std::fs::read(path).unwrap());
        let h = put(c, "acme", data.clone()).await;
        let v = version_ref("acme", "py", T::Pypi, "pkg", version);
        let name = path.file_name().unwrap().to_str().unwrap();
        c.publish_blob(v, name, &h).await.unwrap();
        out.push((h, data));
    }
    for (seed, data) in [(1, random_bytes(1, 300_000)), (2, text_bytes(2, 200_000))] {
        let h = put(c, "acme", data.clone()).await;
        let v = version_ref("acme", "py", T::Generic, "plain", &format!("{seed}"));
        c.publish_blob(v, "blob.bin", &h).await.unwrap();
        out.push((h, data));
    }
    out
}

pub(crate) fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) async fn all_exact(c: &Client, blobs: &[(String, Bytes)], what: &str) {
    for (h, data) in blobs {
        let got = c.get_bytes("acme", h, 0, None).await.unwrap();
        assert!(got == data.as_ref(), "{what}: blob {h} came back different");
    }
}

pub(crate) fn check_clean(d: &Daemon) {
    let check = d.cli(&["admin", "check", "--json"]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimized_packages_read_back_exactly_and_free_their_raw_chunks() {
    let mut d = Daemon::start(CONFIG).await;
    let c = d.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let blobs = publish_all(&c, &packages(tmp.path(), 3)).await;
    d.wait_sealed().await;
    let before = c.stats().await.unwrap();

    // A dry run changes nothing and predicts the pass.
    let dry = json_lines(&d.cli(&["optimize", "--dry-run", "--json"]));
    let dry = dry.last().unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(c.stats().await.unwrap().physical_bytes, before.physical_bytes);
    let run = json_lines(&d.cli(&["optimize", "--json"]));
    let p = run.last().unwrap();
    assert_eq!(p["finished"], true, "{p}");
    assert_eq!(p["total"], 8);
    assert_eq!(p["failed"], 0, "{p}");
    assert!(p["optimized"].as_u64().unwrap() >= 5, "{p}");
    assert_eq!(p["opaque"], 2, "the two plain blobs stay raw: {p}");
    assert!(p["zlib_streams"].as_u64().unwrap() >= 2 * 40, "{p}");
    assert_eq!(p["optimized"], dry["optimized"], "the dry run predicted the pass");
    // The pass released more than it added.
    assert!(
        p["released_bytes"].as_u64().unwrap() > p["added_bytes"].as_u64().unwrap(),
        "{p}"
    );

    // admin stats says where the bytes went, from the same records.
    let o = &json_lines(&d.cli(&["admin", "stats", "--json"]))[0]["optimize"];
    assert_eq!(o["optimized_blobs"], p["optimized"], "{o}");
    assert_eq!(o["optimized_bytes"], p["optimized_bytes"], "{o}");
    assert_eq!(o["zlib_streams"], p["zlib_streams"], "{o}");
    assert_eq!(o["released_bytes"], p["released_bytes"], "{o}");
    assert_eq!(
        o["raw_blobs"].as_u64().unwrap(),
        p["opaque"].as_u64().unwrap() + p["no_saving"].as_u64().unwrap()
    );
    assert!(
        o["zip_bytes"].as_u64().unwrap() > 0 && o["gzip_bytes"].as_u64().unwrap() > 0,
        "{o}"
    );
    assert!(
        o["tar_bytes"].as_u64().unwrap() > 0 && o["nested_bytes"].as_u64().unwrap() > 0,
        "{o}"
    );
    // So does the store-wide capacity report, as text, JSON and HTML; a
    // namespace's report does not (the figures are store-wide).
    let r = &json_lines(&d.cli(&["report", "--format", "json"]))[0]["summary"]["optimize"];
    assert_eq!(r, o, "the report's optimizer figures are admin stats'");
    let scoped = &json_lines(&d.cli(&["report", "-n", "acme", "--format", "json"]))[0]["summary"];
    assert!(scoped["optimize"].is_null(), "{scoped}");
    let text = String::from_utf8(d.cli(&["report"]).stdout).unwrap();
    let line = |what: &str| text.lines().find(|l| l.starts_with(what)).map(str::to_string);
    let recipes = line("stored as recipes").unwrap_or_else(|| panic!("no optimizer table in {text}"));
    assert!(recipes.contains(&format!(" {} ", o["optimized_blobs"])), "{recipes}");
    let html = String::from_utf8(d.cli(&["report", "--format", "html"]).stdout).unwrap();
    assert!(
        html.contains("what the optimizer did") && html.contains(&format!("<p>{} blobs (", o["optimized_blobs"])),
        "the HTML report shows the optimizer's figures"
    );

    // Every blob reads back exactly, whole and by range, also from the cache.
    all_exact(&c, &blobs, "after optimize").await;
    all_exact(&c, &blobs, "cached").await;
    for (h, data) in &blobs[..4] {
        let (at, n) = (data.len() as u64 / 3, 70_000.min(data.len() as u64 / 2));
        let got = c.get_bytes("acme", h, at, Some(n)).await.unwrap();
        assert!(got == data[at as usize..(at + n) as usize], "range of {h}");
    }
    let again = json_lines(&d.cli(&["optimize", "--json"]));
    assert_eq!(again.last().unwrap()["total"], 0, "every blob was looked at once");
    check_clean(&d);
    assert_no_report_drift(&c).await;

    // GC frees the raw chunks the recipes released.
    d.wait_sealed().await;
    let gc = json_lines(&d.cli(&["gc", "--json"]));
    assert!(gc[0]["bytes_collected"].as_u64().unwrap() > 0, "{gc:?}");
    let after = c.stats().await.unwrap();
    assert!(
        after.physical_bytes < before.physical_bytes,
        "stored {} before, {} after",
        before.physical_bytes,
        after.physical_bytes
    );
    assert_eq!(after.condemned_bytes, 0);
    all_exact(&c, &blobs, "after gc").await;
    check_clean(&d);

    // rebuild-index gives the same answers.
    let named: Vec<(String, String)> = blobs.iter().map(|(h, _)| ("acme".to_string(), h.clone())).collect();
    // The pack count may differ: the rebuild seals what was staged.
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
    d.spawn().await;
    let c = d.client().await;
    assert_eq!(without_packs(answers(&c, &named).await), answered);
    check_clean(&d);
    assert_no_report_drift(&c).await;

    // A retention plan over recipes still says exactly what GC frees.
    let policy = tmp.path().join("keep.toml");
    std::fs::write(
        &policy,
        "name = \"keep-one\"\nnamespace = \"acme\"\nversions = { keep_latest = 1 }\n",
    )
    .unwrap();
    assert!(d.cli(&["retention", "set", policy.to_str().unwrap()]).status.success());
    let plan = json_lines(&d.cli(&["retention", "plan", "--json"]));
    let summary = &plan.last().unwrap()["summary"];
    assert!(summary["physical_bytes"].as_u64().unwrap() > 0, "{summary}");
    json_lines(&d.cli(&["retention", "sweep", "--json"]));
    d.advance_clock(2 * DAY);
    json_lines(&d.cli(&["admin", "purge", "--json"]));
    d.wait_sealed().await;
    let gc = json_lines(&d.cli(&["gc", "--json"]));
    assert_eq!(gc[0]["bytes_collected"], summary["physical_bytes"], "{gc:?}");
    // Kept: pkg 1.2.0 (its wheel and sdist) and plain 2.
    let kept = vec![blobs[4].clone(), blobs[5].clone(), blobs[7].clone()];
    all_exact(&c, &kept, "kept after the sweep").await;
    let o = &json_lines(&d.cli(&["admin", "stats", "--json"]))[0]["optimize"];
    let left = o["optimized_blobs"].as_u64().unwrap() + o["raw_blobs"].as_u64().unwrap();
    assert_eq!(left, 3, "purged blobs leave the optimizer's totals: {o}");
    check_clean(&d);
    assert_no_report_drift(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_optimize_leaves_every_blob_whole() {
    let mut d = Daemon::start(CONFIG).await;
    let c = d.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let blobs = publish_all(&c, &packages(tmp.path(), 4)).await;
    for delay_ms in [150, 400, 900] {
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
    let c = d.client().await;
    all_exact(&c, &blobs, "after the last pass").await;
    check_clean(&d);
    assert_no_report_drift(&c).await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_of_a_recipe_is_data_loss_never_wrong_bytes() {
    let mut d = Daemon::start(CONFIG).await;
    let c = d.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let blobs = publish_all(&c, &packages(tmp.path(), 1)).await;
    let p = json_lines(&d.cli(&["optimize", "--json"]));
    assert!(p.last().unwrap()["optimized"].as_u64().unwrap() >= 1);
    d.wait_sealed().await;
    json_lines(&d.cli(&["gc", "--json"]));
    d.wait_sealed().await;
    d.stop();
    // One byte flipped in the middle of every chunk record's data.
    for dir in ["packs", "staging"] {
        for path in pack_files(&d.data_dir().join(dir)) {
            let mut bytes = std::fs::read(&path).unwrap();
            let entries = match format::decode_trailer(&bytes[bytes.len().saturating_sub(format::TRAILER_LEN)..]) {
                Ok((_, at)) => format::decode_footer(&bytes[at as usize..]).unwrap(),
                Err(_) => format::scan_records(&bytes).unwrap().0,
            };
            for e in entries.iter().filter(|e| e.kind == Kind::Chunk) {
                let at = (e.offset + format::RECORD_HEADER_LEN as u64 + e.stored_len as u64 / 2) as usize;
                bytes[at] ^= 0x40;
            }
            std::fs::write(&path, bytes).unwrap();
        }
    }
    d.spawn().await;
    let c = d.client().await;
    for (h, data) in &blobs[..2] {
        expect_data_loss(&c, "acme", h, data, "a recipe over damaged chunks").await;
    }
}

/// Random zips (each member deflated by stock zlib at its own random level,
/// window, memLevel and strategy) and tar.gz files (one random set of
/// parameters), of random, text-like, repetitive and periodic members, plus
/// one 18 MiB wheel. Writes them to `dir` and returns their paths.
fn random_packages(dir: &Path, seed: u64, n: u32) -> Vec<PathBuf> {
    const SCRIPT: &str = r#"
import io, random, sys, tarfile, zipfile, zlib
out, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
words = ["def", "return", "self", "import", "version", "class", "None", "\n", "    ", "{", "}"]
strategies = [zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED]
def content():
    size = r.choice([0, 1, 100, 5000, 40000, 300000])
    kind = r.randrange(4)
    if kind == 0:
        return r.randbytes(size)
    if kind == 1:
        return " ".join(r.choice(words) for _ in range(size // 5)).encode()[:size]
    if kind == 2:
        return bytes([r.randrange(3)]) * size
    return (r.randbytes(r.randrange(1, 300)) * (size + 1))[:size]
def compressor(gzip=False):
    level, wbits, mem, strategy = r.randrange(0, 10), r.randrange(9, 16), r.randrange(1, 10), r.choice(strategies)
    return zlib.compressobj(level, zlib.DEFLATED, 16 + wbits if gzip else -wbits, mem, strategy)
zipfile._get_compressor = lambda *_: compressor()
for i in range(n):
    members = {f"pkg{i}/m{j}.dat": content() for j in range(r.randrange(1, 12))}
    if i % 2 == 0:
        with zipfile.ZipFile(f"{out}/rnd{i}.whl", "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=r.choice([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])) as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1700000000
                t.addfile(info, io.BytesIO(data))
        c = compressor(gzip=True)
        with open(f"{out}/rnd{i}.tar.gz", "wb") as f:
            f.write(c.compress(buf.getvalue()) + c.flush())
zipfile._get_compressor = lambda *_: zlib.compressobj(6, zlib.DEFLATED, -15)
with zipfile.ZipFile(f"{out}/big.whl", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("big/lib.so", r.randbytes(18 << 20))
    z.writestr("big/__init__.py", b"x = 1\n" * 1000)
"#;
    let st = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dir)
        .arg(seed.to_string())
        .arg(n.to_string())
        .status()
        .expect("python3 runs (tools/setup.sh installs it)");
    assert!(st.success());
    let mut out: Vec<PathBuf> = (0..n)
        .map(|i| {
            dir.join(if i % 2 == 0 {
                format!("rnd{i}.whl")
            } else {
                format!("rnd{i}.tar.gz")
            })
        })
        .collect();
    out.push(dir.join("big.whl"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_zips_and_tar_gz_at_random_zlib_parameters_read_back_exactly() {
    // STOWAGE_TEST_SEED picks other packages; the default keeps CI stable.
    let seed = std::env::var("STOWAGE_TEST_SEED").map_or(20261201, |s| s.parse().unwrap());
    let n = 24;
    let d = Daemon::start(CONFIG).await;
    let c = d.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut blobs = Vec::new();
    for path in random_packages(tmp.path(), seed, n) {
        let data = Bytes::from(std::fs::read(&path).unwrap());
        blobs.push((put(&c, "acme", data.clone()).await, data));
    }
    let p = json_lines(&d.cli(&["optimize", "--json"]));
    let p = p.last().unwrap();
    assert_eq!(p["failed"], 0, "seed {seed}: {p}");
    assert_eq!(p["total"], n as u64 + 1, "seed {seed}: {p}");
    // Stock zlib's parameter search recreates the streams made at the usual
    // windows and memory levels, preflate most of the rest (random windows
    // and memLevels); what neither does stays compressed. All read back.
    let optimized = p["optimized"].as_u64().unwrap();
    assert!(
        optimized > n as u64 / 2,
        "seed {seed}: only {optimized} of {n} optimized: {p}"
    );
    let streams = |k: &str| p[k].as_u64().unwrap();
    assert!(streams("zlib_streams") > n as u64, "seed {seed}: {p}");
    assert!(
        streams("zlib_streams") + streams("preflate_streams") > 2 * n as u64,
        "seed {seed}: {p}"
    );
    all_exact(&c, &blobs, &format!("seed {seed}, after optimize")).await;
    // Read again: the recreated blobs come from the cache now (the 18 MiB
    // wheel too, in frames a client takes).
    all_exact(&c, &blobs, &format!("seed {seed}, cached")).await;
    for (h, data) in &blobs {
        let len = data.len() as u64;
        let (at, take) = (len / 2, (len / 3).min(1 << 20));
        let got = c.get_bytes("acme", h, at, Some(take)).await.unwrap();
        assert!(
            got == data[at as usize..(at + take) as usize],
            "seed {seed}: range of {h}"
        );
    }
    check_clean(&d);
    assert_no_report_drift(&c).await;
}

/// Two express tarballs as the npm registry serves them (`tests/data`):
/// npm packed them with Node's zlib, which is Chromium's; the vendored
/// Chromium zlib makes their streams again, so they are stored by content
/// and the second version dedups against the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_tarballs_from_the_registry_are_made_again_by_chromium_zlib() {
    let d = Daemon::start(CONFIG).await;
    let c = d.client().await;
    let mut blobs = Vec::new();
    for v in ["4.19.1", "4.19.2"] {
        let path = format!("{}/tests/data/express-{v}.tgz", env!("CARGO_MANIFEST_DIR"));
        let data = Bytes::from(std::fs::read(path).unwrap());
        blobs.push((put(&c, "acme", data.clone()).await, data));
    }
    d.wait_sealed().await;
    let p = json_lines(&d.cli(&["optimize", "--json"]));
    let p = p.last().unwrap();
    assert_eq!(p["failed"], 0, "{p}");
    assert_eq!(p["optimized"], 2, "{p}");
    assert_eq!(p["zlib_streams"], 2, "both streams by a zlib's parameters: {p}");
    assert_eq!(p["preflate_streams"], 0, "{p}");
    assert_eq!(p["opaque_streams"], 0, "{p}");
    all_exact(&c, &blobs, "after optimize").await;
    all_exact(&c, &blobs, "cached").await;
    check_clean(&d);
    assert_no_report_drift(&c).await;
}
