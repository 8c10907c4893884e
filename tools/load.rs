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
//! Example: stowage-load --mode put-new --clients 4 --size 64MiB --seconds 20

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use bytesize::ByteSize;
use clap::{Parser, ValueEnum};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use stowage::api::client::{Client, header};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    PutNew,
    PutDup,
    PutSmall,
    Get,
    Corpus,
}

#[derive(Parser)]
struct Args {
    #[arg(long, env = "STOWAGE_ADDR", default_value = "http://127.0.0.1:7420")]
    addr: String,
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
    /// Namespace to write into.
    #[arg(long, default_value = "load")]
    namespace: String,
    /// put-dup: declare the blob's BLAKE3 in the header (the server then
    /// only verifies the bytes instead of chunking them).
    #[arg(long)]
    declare: bool,
    /// Folder for --mode corpus.
    #[arg(long)]
    dir: Option<PathBuf>,
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
    let a = Args::parse();
    let client = Client::connect(&a.addr)
        .await
        .with_context(|| format!("connecting to {}", a.addr))?;
    if a.mode == Mode::Corpus {
        return corpus(&client, &a).await;
    }
    let size = a
        .size
        .map(|s| s.as_u64() as usize)
        .unwrap_or(if a.mode == Mode::PutSmall { 4096 } else { 16 << 20 });
    let mut base = vec![0u8; size];
    StdRng::from_os_rng().fill_bytes(&mut base);
    let base = Bytes::from(base);
    let ns = a.namespace.clone();
    let blob = match a.mode {
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
        let c = Client::connect(&a.addr).await?;
        let (base, ns, blob, seq, mode) = (base.clone(), ns.clone(), blob.clone(), op_seq.clone(), a.mode);
        let declared = if a.declare {
            blob.clone().unwrap_or_default()
        } else {
            String::new()
        };
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bytes = 0u64;
            while Instant::now() < deadline {
                let data = match mode {
                    Mode::PutNew | Mode::PutSmall => unique(&base, seq.fetch_add(1, Ordering::Relaxed)),
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
                        bytes += c.get_to(req, |_| Ok(())).await?;
                    }
                    _ => {
                        let hd = stowage::api::pb::PutHeader {
                            expected_size: Some(data.len() as u64),
                            expected_blake3: declared.clone(),
                            ..header(&ns)
                        };
                        c.put_bytes(hd, data.clone()).await?;
                        bytes += data.len() as u64;
                    }
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>((lat, bytes))
        }));
    }
    let mut lat = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        let (l, b) = t.await??;
        lat.extend(l);
        bytes += b;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let out = serde_json::json!({
        "mode": format!("{:?}", a.mode),
        "declared": a.declare,
        "clients": a.clients,
        "size": size,
        "ops": lat.len(),
        "seconds": (secs * 100.0).round() / 100.0,
        "mb_per_s": ((bytes as f64 / 1e6 / secs) * 10.0).round() / 10.0,
        "ops_per_s": ((lat.len() as f64 / secs) * 10.0).round() / 10.0,
        "p50_ms": (pct(&lat, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (pct(&lat, 0.99) * 100.0).round() / 100.0,
    });
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
        let (c, ns, permit) = (client.clone(), a.namespace.clone(), sem.clone().acquire_owned().await?);
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
