//! Prometheus metrics: per-RPC request counts and latencies (a tower layer
//! on the gRPC server) and store gauges read at scrape time, served as
//! OpenMetrics text on `GET /metrics` at `metrics_listen`.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message;
use tonic::codegen::http;

use crate::engine::Engine;
use crate::error::{Error, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCode {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    method: &'static str,
}

type Ratio = Gauge<f64, AtomicU64>;

/// gRPC status names by code, as `tonic::Code`'s `Debug` spells them.
const CODES: [&str; 17] = [
    "Ok",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    /// The methods served (`package.Service/Method`): only these become
    /// labels. Made once at start, so labels cost no allocation per request.
    known: HashSet<&'static str>,
    requests: Family<RpcCode, Counter>,
    latency: Family<Rpc, Histogram>,
    bytes: Family<Kind, Gauge>,
    objects: Family<Kind, Gauge>,
    dedup_ratio: Ratio,
    compression_ratio: Ratio,
    uploads_in_progress: Gauge,
    gc_runs: Counter,
    gc_bytes: Family<Kind, Counter>,
    gc_packs_deleted: Counter,
    gc_last_run: Ratio,
    gc_last_end: Ratio,
    sweep_last_end: Ratio,
    catalog: Family<Kind, Gauge>,
    disk_free: Gauge,
    sweep_runs: Counter,
    sweep_deleted: Family<Kind, Counter>,
    sweep_progress: Family<Kind, Gauge>,
    /// The optimizer's totals: bytes by format and verdict, streams by
    /// method (`catalog::optimized`).
    optimized_bytes: Family<Kind, Gauge>,
    optimized_streams: Family<Kind, Gauge>,
    scrub: ScrubMetrics,
}

/// The pack scrubber's and recovery's figures (see `crate::scrub`).
struct ScrubMetrics {
    quarantined: Gauge,
    bytes: Counter,
    packs: Counter,
    records: Counter,
    passes: Counter,
    findings: Counter,
    last_pass: Ratio,
    damaged: Family<Kind, Gauge>,
    progress: Family<Kind, Gauge>,
}

impl ScrubMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = ScrubMetrics {
            quarantined: Gauge::default(),
            bytes: Counter::default(),
            packs: Counter::default(),
            records: Counter::default(),
            passes: Counter::default(),
            findings: Counter::default(),
            last_pass: Ratio::default(),
            damaged: Family::default(),
            progress: Family::default(),
        };
        registry.register(
            "packs_quarantined",
            "Staged packs found damaged (not torn) at start: kept out of appends, not cut, intact records served",
            m.quarantined.clone(),
        );
        registry.register(
            "scrub_bytes",
            "Pack bytes the scrubber read and verified since start",
            m.bytes.clone(),
        );
        registry.register(
            "scrub_packs",
            "Packs the scrubber verified in finished passes since start",
            m.packs.clone(),
        );
        registry.register(
            "scrub_records",
            "Records the scrubber found intact in finished passes since start",
            m.records.clone(),
        );
        registry.register(
            "scrub_passes",
            "Full scrub passes finished since start",
            m.passes.clone(),
        );
        registry.register(
            "scrub_findings",
            "Damaged records (and footers, trailers, headers) found by finished scrub passes since start",
            m.findings.clone(),
        );
        registry.register(
            "scrub_last_pass_end_seconds",
            "When the last scrub pass finished, Unix time (0: none yet)",
            m.last_pass.clone(),
        );
        registry.register(
            "scrub_damaged",
            "What the last finished scrub pass found damaged: packs, and records (every finding)",
            m.damaged.clone(),
        );
        registry.register(
            "scrub_progress",
            "Bytes of the scrub pass in progress: done and total (0 and 0 when none runs)",
            m.progress.clone(),
        );
        m
    }

    fn set(&self, engine: &Engine) {
        let s = engine.scrub_status();
        let follow = |c: &Counter, total: u64| {
            c.inc_by(total.saturating_sub(c.get()));
        };
        self.quarantined.set(engine.quarantined_packs() as i64);
        follow(&self.bytes, s.bytes);
        follow(&self.packs, s.packs);
        follow(&self.records, s.records);
        follow(&self.passes, s.passes);
        follow(&self.findings, s.findings);
        self.last_pass.set(s.last_pass_end_ms as f64 / 1000.0);
        for (kind, v) in [("packs", s.last_damaged_packs), ("records", s.last_damaged_records)] {
            self.damaged.get_or_create(&Kind { kind }).set(v as i64);
        }
        for (kind, v) in [("done", s.pass_done), ("total", s.pass_total)] {
            self.progress.get_or_create(&Kind { kind }).set(v as i64);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

impl Metrics {
    /// Metrics for a server whose methods are described by `descriptor_sets`
    /// (encoded `FileDescriptorSet`s).
    pub fn new(descriptor_sets: &[&[u8]]) -> Result<Self> {
        let mut known = HashSet::new();
        for set in descriptor_sets {
            let set = prost_types::FileDescriptorSet::decode(*set)
                .map_err(|e| Error::Internal(format!("descriptor set: {e}")))?;
            for f in &set.file {
                for svc in &f.service {
                    for m in &svc.method {
                        let name = format!("{}.{}/{}", f.package(), svc.name(), m.name());
                        // A few dozen names, once per daemon.
                        known.insert(&*Box::leak(name.into_boxed_str()));
                    }
                }
            }
        }
        Ok(Self::with_methods(known))
    }

    fn with_methods(known: HashSet<&'static str>) -> Self {
        let mut registry = Registry::with_prefix("stowage");
        let requests = Family::<RpcCode, Counter>::default();
        registry.register(
            "rpc_requests",
            "gRPC requests answered, by method and status code",
            requests.clone(),
        );
        // 0.25 ms .. ~8 s: a cached Stat to a large upload.
        let latency =
            Family::<Rpc, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.00025, 2.0, 16)));
        registry.register(
            "rpc_duration_seconds",
            "Time from a request's arrival to its response headers (for an upload: to its end)",
            latency.clone(),
        );
        let bytes = Family::<Kind, Gauge>::default();
        registry.register(
            "store_bytes",
            "Bytes (README, Figures): logical (every file, active or in the trash, and blobs held by upload leases), unique (distinct blobs), physical (distinct chunks in use, as stored), trash (files in the trash), leased (blobs held by an upload lease only), packs (pack files), condemned (unused chunks in their grace period), dead (collected chunks still in packs)",
            bytes.clone(),
        );
        let objects = Family::<Kind, Gauge>::default();
        registry.register(
            "store_objects",
            "Counts: blobs, chunks, references, packs",
            objects.clone(),
        );
        let dedup_ratio = Ratio::default();
        registry.register("dedup_ratio", "Logical bytes over unique bytes", dedup_ratio.clone());
        let compression_ratio = Ratio::default();
        registry.register(
            "compression_ratio",
            "Unique bytes over physical bytes",
            compression_ratio.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Upload streams being served",
            uploads_in_progress.clone(),
        );
        let gc_runs = Counter::default();
        registry.register("gc_runs", "Garbage collection runs since start", gc_runs.clone());
        let gc_bytes = Family::<Kind, Counter>::default();
        registry.register(
            "gc_bytes",
            "Bytes GC handled since start: collected (chunks), copied (by compaction), deleted (pack files)",
            gc_bytes.clone(),
        );
        let gc_packs_deleted = Counter::default();
        registry.register(
            "gc_packs_deleted",
            "Compacted packs deleted from the store since start",
            gc_packs_deleted.clone(),
        );
        let gc_last_run = Ratio::default();
        registry.register(
            "gc_last_run_duration_seconds",
            "Duration of the last GC run",
            gc_last_run.clone(),
        );
        let gc_last_end = Ratio::default();
        registry.register(
            "gc_last_run_timestamp_seconds",
            "When the last GC run ended, Unix time (0: none since the daemon started)",
            gc_last_end.clone(),
        );
        let sweep_last_end = Ratio::default();
        registry.register(
            "sweep_last_run_timestamp_seconds",
            "When the last retention sweep finished, Unix time (0: none since the daemon started)",
            sweep_last_end.clone(),
        );
        let catalog = Family::<Kind, Gauge>::default();
        registry.register(
            "catalog_objects",
            "Catalog counts: active packages, versions and files; files in the trash; blobs held by an upload lease only",
            catalog.clone(),
        );
        let disk_free = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Free space on the data dir's filesystem (absent: unknown)",
            disk_free.clone(),
        );
        let sweep_runs = Counter::default();
        registry.register(
            "sweep_runs",
            "Retention sweeps finished since start",
            sweep_runs.clone(),
        );
        let sweep_deleted = Family::<Kind, Counter>::default();
        registry.register(
            "sweep_deleted",
            "Versions and files retention sweeps deleted since start",
            sweep_deleted.clone(),
        );
        let sweep_progress = Family::<Kind, Gauge>::default();
        registry.register(
            "sweep_progress",
            "Removals of the sweep in progress: done and total (0 and 0 when none runs)",
            sweep_progress.clone(),
        );
        let optimized_bytes = Family::<Kind, Gauge>::default();
        registry.register(
            "optimized_bytes",
            "Blob bytes the optimizer stores as recipes, by outer format (zip, gzip), holding a tar, nested; kept raw; stored bytes released and added",
            optimized_bytes.clone(),
        );
        let optimized_streams = Family::<Kind, Gauge>::default();
        registry.register(
            "optimized_streams",
            "Deflate streams of the blobs stored as recipes, by method: zlib (exact parameters), preflate, opaque (kept compressed)",
            optimized_streams.clone(),
        );
        let scrub = ScrubMetrics::register(&mut registry);
        Metrics {
            optimized_bytes,
            optimized_streams,
            scrub,
            gc_runs,
            gc_bytes,
            gc_packs_deleted,
            gc_last_run,
            gc_last_end,
            sweep_last_end,
            catalog,
            disk_free,
            sweep_runs,
            sweep_deleted,
            sweep_progress,
            registry,
            known,
            requests,
            latency,
            bytes,
            objects,
            dedup_ratio,
            compression_ratio,
            uploads_in_progress,
        }
    }
}

impl Metrics {
    /// The label of a request path: a path we do not serve must not mint
    /// one, since clients make them up, with or without a token.
    fn method(&self, path: &str) -> &'static str {
        path.strip_prefix('/')
            .and_then(|m| self.known.get(m).copied())
            .unwrap_or("unknown")
    }

    fn observe(&self, method: &'static str, code: i32, took: std::time::Duration) {
        self.latency.get_or_create(&Rpc { method }).observe(took.as_secs_f64());
        let code = CODES.get(code as usize).copied().unwrap_or("Unknown");
        self.requests.get_or_create(&RpcCode { method, code }).inc();
    }

    /// The OpenMetrics text of every metric, with the store gauges read now.
    pub fn render(&self, engine: &Engine) -> Result<String> {
        let s = engine.stats()?;
        let t = engine.totals()?;
        let f = t.figures;
        for (kind, v) in [
            ("logical", f.logical_bytes),
            ("unique", f.unique_bytes),
            ("physical", f.physical_bytes),
            ("trash", t.trash_bytes),
            ("leased", t.leased_bytes),
            ("packs", s.pack_bytes),
            ("condemned", s.condemned_bytes),
            ("dead", s.dead_bytes),
        ] {
            self.bytes.get_or_create(&Kind { kind }).set(v as i64);
        }
        let p = engine.progress();
        // Counters follow the engine's totals (they only grow).
        let follow = |c: &Counter, total: u64| {
            c.inc_by(total.saturating_sub(c.get()));
        };
        follow(&self.gc_runs, p.gc_runs);
        follow(&self.gc_packs_deleted, p.gc_packs_deleted);
        for (kind, v) in [
            ("collected", p.gc_bytes_collected),
            ("copied", p.gc_bytes_copied),
            ("deleted", p.gc_bytes_deleted),
        ] {
            follow(&self.gc_bytes.get_or_create(&Kind { kind }), v);
        }
        self.gc_last_run.set(p.gc_last_elapsed_ms as f64 / 1000.0);
        self.gc_last_end.set(p.gc_last_run_ms.unwrap_or(0) as f64 / 1000.0);
        self.sweep_last_end
            .set(p.sweep_last_run_ms.unwrap_or(0) as f64 / 1000.0);
        for (kind, v) in [
            ("packages", t.packages),
            ("versions", t.versions),
            ("files", t.files),
            ("trash_files", t.trash_files),
            ("leased_blobs", t.leased_blobs),
        ] {
            self.catalog.get_or_create(&Kind { kind }).set(v as i64);
        }
        if let Some(free) = engine.free_disk_bytes() {
            self.disk_free.set(free as i64);
        }
        follow(&self.sweep_runs, p.sweep_runs);
        follow(
            &self.sweep_deleted.get_or_create(&Kind { kind: "versions" }),
            p.sweep_versions_deleted,
        );
        follow(
            &self.sweep_deleted.get_or_create(&Kind { kind: "files" }),
            p.sweep_files_deleted,
        );
        self.sweep_progress
            .get_or_create(&Kind { kind: "done" })
            .set(p.sweep_done as i64);
        self.sweep_progress
            .get_or_create(&Kind { kind: "total" })
            .set(p.sweep_total as i64);
        for (kind, v) in [
            ("blobs", s.blobs),
            ("chunks", s.chunks),
            ("references", s.references),
            ("packs", s.packs),
        ] {
            self.objects.get_or_create(&Kind { kind }).set(v as i64);
        }
        let o = engine.optimize_totals()?;
        for (kind, v) in [
            ("recipes", o.optimized_bytes),
            ("zip", o.zip_bytes),
            ("gzip", o.gzip_bytes),
            ("tar", o.tar_bytes),
            ("nested", o.nested_bytes),
            ("raw", o.raw_bytes),
            ("released", o.released_bytes),
            ("added", o.added_bytes),
        ] {
            self.optimized_bytes.get_or_create(&Kind { kind }).set(v as i64);
        }
        for (kind, v) in [
            ("zlib", o.zlib_streams),
            ("preflate", o.preflate_streams),
            ("opaque", o.opaque_streams),
        ] {
            self.optimized_streams.get_or_create(&Kind { kind }).set(v as i64);
        }
        self.dedup_ratio.set(f.dedup_ratio());
        self.compression_ratio.set(f.compression_ratio());
        self.uploads_in_progress.set(engine.uploads_in_progress() as i64);
        self.scrub.set(engine);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| Error::Internal(format!("encoding metrics: {e}")))?;
        Ok(out)
    }
}

/// Binds the metrics listener (at start, so a bad address stops the daemon).
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot listen on {listen} for metrics: {e}")))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
    Ok(listener)
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(metrics: Arc<Metrics>, engine: Arc<Engine>, listener: tokio::net::TcpListener) -> Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, engine) = (metrics.clone(), engine.clone());
            async move {
                use axum::http::{StatusCode, header};
                let rendered = tokio::task::spawn_blocking(move || metrics.render(&engine))
                    .await
                    .map_err(|e| Error::Internal(format!("rendering metrics: {e}")))
                    .and_then(|r| r);
                match rendered {
                    Ok(text) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    ),
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/plain")],
                        e.to_string(),
                    ),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .await
        .map_err(|e| Error::Unavailable(format!("metrics server: {e}")))
}

/// The tower layer that counts and times every gRPC request.
#[derive(Clone)]
pub struct RpcMetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = self.metrics.method(req.uri().path());
        let started = Instant::now();
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let res = fut.await;
            // An error answered at once travels in the headers
            // ("trailers-only"); otherwise the call succeeded so far.
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                Err(_) => tonic::Code::Unknown as i32,
            };
            metrics.observe(method, code, started.elapsed());
            res
        })
    }
}
