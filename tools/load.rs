//! stowage-load: drives a running daemon over gRPC with N concurrent clients
//! and reports throughput and latency.
//!
//! Modes:
//!   put-new    unique incompressible blobs of --size (sha256 always computed)
//!   put-dup    the same blob of --size again and again (after one warm-up put);
//!              with --declare the header carries its BLAKE3
//!   put-small  unique 4 KiB blobs (or --size)
//!   get        whole-blob reads of one --size blob
//!   corpus     stores every file under --dir once, then prints store stats
//!
//! Catalog modes (namespace "bench" unless --namespace; packages `pkg-00000`...
//! spread over --projects projects and the types generic, npm, pypi, cargo;
//! versions `1.0.N`, files `file-K.tgz`). Each first stores a pool of --pool
//! distinct 1-4 KiB blobs (the same bytes every run, so a rerun dedupes), and
//! publishes files by BLAKE3 (no data streamed). --clients tasks share
//! connections, --clients-per-conn per HTTP/2 connection.
//!   catalog-fill      --packages x --versions-per-package x --files-per-version
//!                     files (10,000 x 20 x 5 = 1,000,000 by default); progress
//!                     on stderr names the package to continue from with
//!                     --start-package after an interruption
//!   list-versions     ListVersions of random packages for --seconds (first page,
//!                     and the second one for --second-page of the calls that have it)
//!   publish-existing  PublishFile by BLAKE3 for --seconds: new file names in
//!                     existing versions (or new versions with --new-versions)
//!
//! Crash soak (runs its own daemon; see tools/soak.rs and tools/crash-soak.sh):
//!   crash-soak        --cycles N kill -9 cycles under mixed load, verifying
//!                     every acknowledged write after each restart
//!
//! Example: stowage-load --mode put-new --clients 4 --size 64MiB --seconds 20
//!          stowage-load --mode catalog-fill --clients 64
//!          stowage-load --mode list-versions --clients 8 --page-size 20

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use bytesize::ByteSize;
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use stowage::api::client::{Client, Code, header, version_ref};
use stowage::api::pb::{self, PackageType};

mod soak;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    PutNew,
    PutDup,
    PutSmall,
    Get,
    Corpus,
    CatalogFill,
    ListVersions,
    PublishExisting,
    CrashSoak,
}

#[derive(Parser)]
struct Args {
    #[arg(long, env = "STOWAGE_ADDR", default_value = "http://127.0.0.1:7420")]
    addr: String,
    /// Access token; default: the local daemon's admin token in `--token-data-dir`.
    #[arg(long, env = "STOWAGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, env = "STOWAGE_DATA_DIR", default_value = "./stowage-data")]
    token_data_dir: std::path::PathBuf,
    /// CA certificate (PEM) of a TLS daemon (`https://` address).
    #[arg(long, env = "STOWAGE_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Blob size (default 16MiB; 4KiB for put-small).
    #[arg(long)]
    size: Option<ByteSize>,
    /// How long to run each client.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Namespace to write into (default "load"; "bench" for the catalog modes).
    #[arg(long)]
    namespace: Option<String>,
    /// put-dup: declare the blob's BLAKE3 in the header (the server then
    /// only verifies the bytes instead of chunking them).
    #[arg(long)]
    declare: bool,
    /// put-new: publish every Nth blob as a file (generic package "keep",
    /// version = its sequence number), so it outlives its upload lease while
    /// the rest become garbage: the input of the GC benchmark. 0: never.
    #[arg(long, default_value_t = 0)]
    keep_every: u64,
    /// get: read this stored blob (BLAKE3 hex, in --namespace) instead of
    /// putting a random one.
    #[arg(long)]
    blob: Option<String>,
    /// Folder for --mode corpus.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Catalog modes: packages in the catalog.
    #[arg(long, default_value_t = 10_000)]
    packages: u64,
    #[arg(long, default_value_t = 20)]
    versions_per_package: u64,
    #[arg(long, default_value_t = 5)]
    files_per_version: u64,
    /// catalog-fill: first package to fill (the `resume_from` of an interrupted
    /// fill; packages after it that were in flight then get their files again,
    /// as duplicates, or skipped if the duplicate policy forbids them).
    #[arg(long, default_value_t = 0)]
    start_package: u64,
    /// Catalog modes: projects the packages are spread over (`proj-N`).
    #[arg(long, default_value_t = 10)]
    projects: u64,
    /// Catalog modes: distinct small blobs to store and publish.
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// Catalog modes: client tasks per HTTP/2 connection.
    #[arg(long, default_value_t = 8)]
    clients_per_conn: usize,
    /// list-versions: versions per page (1..1000).
    #[arg(long, default_value_t = 20)]
    page_size: u32,
    /// list-versions: share of calls that also fetch the second page, when there is one.
    #[arg(long, default_value_t = 0.25)]
    second_page: f64,
    /// publish-existing: each file goes into a new version instead of an existing one.
    #[arg(long)]
    new_versions: bool,
    /// Catalog modes: seconds between progress lines on stderr.
    #[arg(long, default_value_t = 5)]
    progress: u64,
    #[command(flatten)]
    soak: soak::SoakArgs,
}

/// A unique variant of `base`: the op number stamped every 8 KiB changes every chunk.
fn unique(base: &[u8], op: u64) -> Bytes {
    let mut v = base.to_vec();
    for at in (0..v.len()).step_by(8192) {
        let end = (at + 8).min(v.len());
        v[at..end].copy_from_slice(&op.to_le_bytes()[..end - at]);
    }
    v.into()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.mode == Mode::CrashSoak {
        return soak::run(&a.soak).await;
    }
    if a.token.is_none() {
        a.token = std::fs::read_to_string(a.token_data_dir.join(stowage::auth::ADMIN_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string());
    }
    let a = a;
    let client = Client::connect_with(&a.addr, a.token.as_deref(), &a.tls())
        .await
        .with_context(|| format!("connecting to {}", a.addr))?;
    match a.mode {
        Mode::Corpus => return corpus(&client, &a).await,
        Mode::CatalogFill => return catalog_fill(&a).await,
        Mode::ListVersions => return list_versions(&a).await,
        Mode::PublishExisting => return publish_existing(&a).await,
        _ => {}
    }
    let size = a
        .size
        .map(|s| s.as_u64() as usize)
        .unwrap_or(if a.mode == Mode::PutSmall { 4096 } else { 16 << 20 });
    let mut base = vec![0u8; size];
    StdRng::from_os_rng().fill_bytes(&mut base);
    let base = Bytes::from(base);
    let ns = a.namespace.clone().unwrap_or_else(|| "load".into());
    let blob = match a.mode {
        Mode::Get if a.blob.is_some() => a.blob.clone(),
        Mode::PutDup | Mode::Get => Some(
            client
                .put_bytes(header(&ns), base.clone())
                .await?
                .digests
                .unwrap()
                .blake3,
        ),
        _ => None,
    };
    let op_seq = Arc::new(AtomicU64::new(StdRng::from_os_rng().next_u64() >> 16));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for _ in 0..a.clients {
        // One connection per client, as separate frontends would have.
        let c = Client::connect_with(&a.addr, a.token.as_deref(), &a.tls()).await?;
        let (base, ns, blob, seq, mode) = (base.clone(), ns.clone(), blob.clone(), op_seq.clone(), a.mode);
        let declared = if a.declare {
            blob.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let keep_every = a.keep_every;
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut first) = (Vec::new(), Vec::new());
            let mut bytes = 0u64;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let data = match mode {
                    Mode::PutNew | Mode::PutSmall => unique(&base, n),
                    _ => base.clone(),
                };
                let t = Instant::now();
                match mode {
                    Mode::Get => {
                        let req = stowage::api::pb::GetRequest {
                            namespace: ns.clone(),
                            blake3: blob.clone().unwrap(),
                            offset: 0,
                            length: None,
                        };
                        let mut at = None;
                        bytes += c
                            .get_to(req, |_| {
                                at.get_or_insert_with(|| t.elapsed());
                                Ok(())
                            })
                            .await?;
                        first.extend(at);
                    }
                    _ => {
                        let hd = stowage::api::pb::PutHeader {
                            expected_size: Some(data.len() as u64),
                            expected_blake3: declared.clone(),
                            ..header(&ns)
                        };
                        let r = c.put_bytes(hd, data.clone()).await?;
                        bytes += data.len() as u64;
                        if keep_every > 0 && n % keep_every == 0 {
                            let blake3 = r.digests.map(|d| d.blake3).unwrap_or_default();
                            let v = version_ref(&ns, "gc", PackageType::Generic, "keep", &n.to_string());
                            c.publish_blob(v, "blob.bin", &blake3).await?;
                        }
                    }
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>((lat, first, bytes))
        }));
    }
    let (mut lat, mut first) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for t in tasks {
        let (l, f, b) = t.await??;
        lat.extend(l);
        first.extend(f);
        bytes += b;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    first.sort();
    let out = serde_json::json!({
        "mode": format!("{:?}", a.mode),
        "declared": a.declare,
        "clients": a.clients,
        "size": match (&a.blob, lat.len() as u64) {
            (Some(_), n) if n > 0 => bytes / n,
            _ => size as u64,
        },
        "ops": lat.len(),
        "seconds": (secs * 100.0).round() / 100.0,
        "mb_per_s": ((bytes as f64 / 1e6 / secs) * 10.0).round() / 10.0,
        "ops_per_s": ((lat.len() as f64 / secs) * 10.0).round() / 10.0,
        "p50_ms": (pct(&lat, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (pct(&lat, 0.99) * 100.0).round() / 100.0,
    });
    let mut out = out;
    if a.mode == Mode::Get {
        out["first_byte_p50_ms"] = ((pct(&first, 0.50) * 100.0).round() / 100.0).into();
        out["first_byte_p99_ms"] = ((pct(&first, 0.99) * 100.0).round() / 100.0).into();
    }
    println!("{out}");
    Ok(())
}

/// Stores every file under `--dir` (one client per file at a time, `--clients` in flight).
async fn corpus(client: &Client, a: &Args) -> anyhow::Result<()> {
    let Some(dir) = &a.dir else {
        bail!("--mode corpus needs --dir")
    };
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() { stack.push(p) } else { files.push(p) }
        }
    }
    files.sort();
    let raw: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let before = client.stats().await?;
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.clients));
    let mut tasks = Vec::new();
    for f in files.clone() {
        let ns = a.namespace.clone().unwrap_or_else(|| "load".into());
        let (c, permit) = (client.clone(), sem.clone().acquire_owned().await?);
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            c.put_file(header(&ns), &f)
                .await
                .with_context(|| f.display().to_string())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = client.stats().await?;
    let stored = s.pack_bytes - before.pack_bytes;
    println!(
        "{}",
        serde_json::json!({
            "files": files.len(),
            "raw_bytes": raw,
            "physical_bytes": s.physical_bytes - before.physical_bytes,
            "pack_bytes": stored,
            "ratio": (stored as f64 / raw as f64 * 1000.0).round() / 1000.0,
            "seconds": (secs * 100.0).round() / 100.0,
            "mb_per_s": ((raw as f64 / 1e6 / secs) * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

// ---- catalog modes ----

/// Package types the catalog cycles through; `pkg-00000` is a valid name in each.
const TYPES: [PackageType; 4] = [
    PackageType::Generic,
    PackageType::Npm,
    PackageType::Pypi,
    PackageType::Cargo,
];

/// Where package `i` of the generated catalog lives.
fn package_ref(ns: &str, projects: u64, i: u64) -> pb::PackageRef {
    pb::PackageRef {
        namespace: ns.into(),
        project: format!("proj-{}", i % projects.max(1)),
        r#type: TYPES[(i % TYPES.len() as u64) as usize] as i32,
        name: format!("pkg-{i:05}"),
    }
}

fn version_of(ns: &str, projects: u64, i: u64, version: &str) -> pb::VersionRef {
    let p = package_ref(ns, projects, i);
    let ty = PackageType::try_from(p.r#type).unwrap_or(PackageType::Generic);
    version_ref(ns, &p.project, ty, &p.name, version)
}

fn catalog_ns(a: &Args) -> String {
    a.namespace.clone().unwrap_or_else(|| "bench".into())
}

/// One connection per `--clients-per-conn` tasks.
async fn connections(a: &Args) -> anyhow::Result<Vec<Client>> {
    let n = a.clients.div_ceil(a.clients_per_conn.max(1)).max(1);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(
            Client::connect_with(&a.addr, a.token.as_deref(), &a.tls())
                .await
                .with_context(|| format!("connecting to {}", a.addr))?,
        );
    }
    Ok(conns)
}

/// Stores `--pool` distinct blobs of 1-4 KiB (seeded, so the same bytes every
/// run) and returns their BLAKE3s.
async fn blob_pool(conns: &[Client], a: &Args, ns: &str) -> anyhow::Result<Vec<String>> {
    let t = Instant::now();
    let puts = futures::stream::iter(0..a.pool.max(1))
        .map(|k| {
            let c = conns[k % conns.len()].clone();
            let mut rng = StdRng::seed_from_u64(0x5704_a6e0_0000 + k as u64);
            let mut data = vec![0u8; rng.random_range(1024..=4096)];
            rng.fill_bytes(&mut data);
            let ns = ns.to_string();
            async move {
                let r = c.put_bytes(header(&ns), data.into()).await?;
                Ok::<_, anyhow::Error>(r.digests.ok_or_else(|| anyhow!("put answered without digests"))?.blake3)
            }
        })
        .buffered(a.clients.max(1));
    let pool: Vec<String> = puts.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
    eprintln!(
        "stored a pool of {} blobs in {:.2}s",
        pool.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(pool)
}

fn ms(d: Duration) -> f64 {
    round2(d.as_secs_f64() * 1000.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Latency figures of `lat` (sorted here) in ms.
fn latency_json(lat: &mut [Duration]) -> serde_json::Value {
    lat.sort();
    serde_json::json!({
        "p50_ms": round2(pct(lat, 0.50)),
        "p90_ms": round2(pct(lat, 0.90)),
        "p99_ms": round2(pct(lat, 0.99)),
        "max_ms": lat.last().copied().map_or(0.0, ms),
    })
}

/// Prints `done` and its rate every `--progress` seconds, with `extra()`.
fn progress(
    a: &Args,
    what: &'static str,
    done: Arc<AtomicU64>,
    extra: impl Fn() -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(a.progress.max(1));
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = 0;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let n = done.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "{secs:7.1}s {what} {n:>9} ({:.0}/s now, {:.0}/s overall){}",
                (n - last) as f64 / every.as_secs_f64(),
                n as f64 / secs,
                extra()
            );
            last = n;
        }
    })
}

/// Fills the catalog: each task takes the next package and publishes its
/// versions' files in order.
async fn catalog_fill(a: &Args) -> anyhow::Result<()> {
    let ns = catalog_ns(a);
    let conns = connections(a).await?;
    let pool = Arc::new(blob_pool(&conns, a, &ns).await?);
    let (vpp, fpv, projects, end) = (a.versions_per_package, a.files_per_version, a.projects, a.packages);
    let next = Arc::new(AtomicU64::new(a.start_package));
    let done = Arc::new(AtomicU64::new(0));
    // Every package below `low` is complete; `finished` holds those above it.
    let low = Arc::new(AtomicU64::new(a.start_package));
    let finished = Arc::new(Mutex::new(BTreeSet::new()));
    let shown = low.clone();
    let ticker = progress(a, "files", done.clone(), move || {
        format!(", resume_from {}", shown.load(Ordering::Relaxed))
    });
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..a.clients.max(1) {
        let c = conns[t % conns.len()].clone();
        let (pool, next, done, low, finished, ns) = (
            pool.clone(),
            next.clone(),
            done.clone(),
            low.clone(),
            finished.clone(),
            ns.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut skipped) = (Vec::new(), 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                for v in 0..vpp {
                    let at = version_of(&ns, projects, i, &format!("1.0.{v}"));
                    for f in 0..fpv {
                        let blob = &pool[((i * 7919 + v * 31 + f) % pool.len() as u64) as usize];
                        let name = format!("file-{f}.tgz");
                        let t = Instant::now();
                        match c.publish_blob(at.clone(), &name, blob).await {
                            Ok(_) => {
                                lat.push(t.elapsed());
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(s) if s.code() == Code::AlreadyExists => skipped += 1,
                            Err(s) => bail!("publishing pkg-{i:05} 1.0.{v} {name}: {s}"),
                        }
                    }
                }
                let mut set = finished.lock().unwrap();
                set.insert(i);
                let mut l = low.load(Ordering::Relaxed);
                while set.remove(&l) {
                    l += 1;
                }
                low.store(l, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>((lat, skipped))
        }));
    }
    let (mut lat, mut skipped) = (Vec::new(), 0);
    for t in tasks {
        let (l, s) = t.await??;
        lat.extend(l);
        skipped += s;
    }
    let secs = start.elapsed().as_secs_f64();
    ticker.abort();
    let mut out = serde_json::json!({
        "mode": "CatalogFill",
        "namespace": ns,
        "clients": a.clients,
        "connections": conns.len(),
        "packages": end.saturating_sub(a.start_package),
        "start_package": a.start_package,
        "files": lat.len(),
        "skipped": skipped,
        "seconds": round2(secs),
        "publishes_per_sec": (lat.len() as f64 / secs).round(),
    });
    merge(&mut out, latency_json(&mut lat));
    println!("{out}");
    Ok(())
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(i), serde_json::Value::Object(f)) = (into.as_object_mut(), from) {
        i.extend(f);
    }
}

/// ListVersions of random packages; every call's latency counts.
async fn list_versions(a: &Args) -> anyhow::Result<()> {
    let ns = catalog_ns(a);
    let conns = connections(a).await?;
    let calls = Arc::new(AtomicU64::new(0));
    let ticker = progress(a, "calls", calls.clone(), String::new);
    let (packages, projects, size, second) = (
        a.packages.max(1),
        a.projects,
        a.page_size,
        a.second_page.clamp(0.0, 1.0),
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for t in 0..a.clients.max(1) {
        let mut cat = conns[t % conns.len()].catalog.clone();
        let (ns, calls) = (ns.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::from_os_rng();
            let (mut lat, mut seconds, mut versions, mut empty) = (Vec::new(), 0u64, 0u64, 0u64);
            while Instant::now() < deadline {
                let i = rng.random_range(0..packages);
                let mut req = pb::ListVersionsRequest {
                    package: Some(package_ref(&ns, projects, i)),
                    state: pb::State::Active as i32,
                    page_size: size,
                    page_token: String::new(),
                };
                let t = Instant::now();
                let r = cat
                    .list_versions(req.clone())
                    .await
                    .map_err(|s| anyhow!("pkg-{i:05}: {s}"))?
                    .into_inner();
                lat.push(t.elapsed());
                calls.fetch_add(1, Ordering::Relaxed);
                versions += r.versions.len() as u64;
                empty += r.versions.is_empty() as u64;
                if !r.next_page_token.is_empty() && rng.random_bool(second) {
                    req.page_token = r.next_page_token;
                    let t = Instant::now();
                    let r = cat
                        .list_versions(req)
                        .await
                        .map_err(|s| anyhow!("pkg-{i:05} page 2: {s}"))?
                        .into_inner();
                    lat.push(t.elapsed());
                    calls.fetch_add(1, Ordering::Relaxed);
                    seconds += 1;
                    versions += r.versions.len() as u64;
                }
            }
            Ok::<_, anyhow::Error>((lat, seconds, versions, empty))
        }));
    }
    let (mut lat, mut second_pages, mut versions, mut empty) = (Vec::new(), 0, 0, 0);
    for t in tasks {
        let (l, s, v, e) = t.await??;
        lat.extend(l);
        second_pages += s;
        versions += v;
        empty += e;
    }
    let secs = start.elapsed().as_secs_f64();
    ticker.abort();
    let mut out = serde_json::json!({
        "mode": "ListVersions",
        "namespace": ns,
        "clients": a.clients,
        "connections": conns.len(),
        "packages": packages,
        "page_size": size,
        "calls": lat.len(),
        "second_pages": second_pages,
        "empty_pages": empty,
        "versions_per_call": round2(versions as f64 / lat.len().max(1) as f64),
        "seconds": round2(secs),
        "calls_per_sec": (lat.len() as f64 / secs).round(),
    });
    merge(&mut out, latency_json(&mut lat));
    println!("{out}");
    Ok(())
}

/// PublishFile by BLAKE3 into random packages of a filled catalog: a new
/// file name in an existing version, or (--new-versions) a new version.
async fn publish_existing(a: &Args) -> anyhow::Result<()> {
    let ns = catalog_ns(a);
    let conns = connections(a).await?;
    let pool = Arc::new(blob_pool(&conns, a, &ns).await?);
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let seq = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let ticker = progress(a, "publishes", done.clone(), String::new);
    let (packages, projects, vpp, new_versions) = (
        a.packages.max(1),
        a.projects,
        a.versions_per_package.max(1),
        a.new_versions,
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for t in 0..a.clients.max(1) {
        let c = conns[t % conns.len()].clone();
        let (pool, seq, done, ns) = (pool.clone(), seq.clone(), done.clone(), ns.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::from_os_rng();
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let (i, n) = (rng.random_range(0..packages), seq.fetch_add(1, Ordering::Relaxed));
                let version = if new_versions {
                    format!("2.{run}.{n}")
                } else {
                    format!("1.0.{}", rng.random_range(0..vpp))
                };
                let name = format!("extra-{run}-{n}.tgz");
                let blob = &pool[rng.random_range(0..pool.len())];
                let t = Instant::now();
                c.publish_blob(version_of(&ns, projects, i, &version), &name, blob)
                    .await
                    .map_err(|s| anyhow!("publishing pkg-{i:05} {version} {name}: {s}"))?;
                lat.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    ticker.abort();
    let mut out = serde_json::json!({
        "mode": "PublishExisting",
        "namespace": ns,
        "new_versions": new_versions,
        "clients": a.clients,
        "connections": conns.len(),
        "packages": packages,
        "publishes": lat.len(),
        "seconds": round2(secs),
        "publishes_per_sec": (lat.len() as f64 / secs).round(),
    });
    merge(&mut out, latency_json(&mut lat));
    println!("{out}");
    Ok(())
}

impl Args {
    fn tls(&self) -> stowage::api::client::TlsFiles {
        stowage::api::client::TlsFiles {
            ca: self.tls_ca.clone(),
            ..Default::default()
        }
    }
}
