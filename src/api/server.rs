//! The gRPC server: blob and admin services, health and reflection. Once
//! its listeners are bound it writes their addresses to the data dir
//! ([`METRICS_ADDR_FILE`], then [`LISTEN_ADDR_FILE`]), so `listen =
//! "127.0.0.1:0"` (a port the kernel picks) can be found.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tonic::codegen::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::Authenticate;
use super::admin::AdminApi;
use super::blob::BlobApi;
use super::catalog::{AuditApi, CatalogApi};
use super::metrics::{Metrics, RpcMetricsLayer};
use super::pb::{
    self, admin_service_server::AdminServiceServer, audit_service_server::AuditServiceServer,
    blob_service_server::BlobServiceServer, catalog_service_server::CatalogServiceServer,
    report_service_server::ReportServiceServer, retention_service_server::RetentionServiceServer,
};
use super::report::ReportApi;
use super::retention::RetentionApi;
use crate::auth::Auth;
use crate::engine::{Engine, GET_FRAME};
use crate::error::{Error, Result};

/// Largest message a client may send (Put data frames included).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// Largest request of the services that take no data (admin, audit,
/// retention, report): their requests are a few fields.
pub(crate) const MAX_REQUEST: usize = 1 << 20;
/// Streams one HTTP/2 connection may have open at once.
pub(crate) const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Largest header block (gRPC metadata: the token, the path) of a request.
pub(crate) const MAX_HEADER_LIST: u32 = 16 << 10;
/// HTTP/2 flow-control window per stream. The 64 KiB default stalls a
/// stream every 64 KiB for a round trip; uploads are megabytes.
pub(crate) const WINDOW: u32 = 8 << 20;
/// Largest HTTP/2 frame a peer may send us: fewer, bigger frames per MiB
/// than the 16 KiB default.
pub(crate) const FRAME: u32 = 1 << 20;

/// The gRPC address the daemon bound (e.g. `127.0.0.1:40123`), one line in
/// the data dir. Removed at start, written once every listener is bound.
pub const LISTEN_ADDR_FILE: &str = "listen.addr";
/// The metrics address the daemon bound, likewise (only with `metrics_listen`).
pub const METRICS_ADDR_FILE: &str = "metrics.addr";

/// Writes `addr` to `dir/name` atomically (a temp file renamed over it):
/// a reader sees the whole address or no file.
fn publish_addr(dir: &std::path::Path, name: &str, addr: SocketAddr) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// Reads the PEM files a `[tls]` section names.
fn server_tls(t: &crate::config::Tls) -> Result<ServerTlsConfig> {
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).map_err(|e| Error::invalid(format!("tls.{what}: cannot read {}: {e}", p.display())))
    };
    // A handshake that stalls is dropped: it holds a task before any token is seen.
    let mut c = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&t.cert, "cert")?, read(&t.key, "key")?))
        .timeout(std::time::Duration::from_secs(10));
    if let Some(ca) = &t.client_ca {
        c = c
            .client_ca_root(Certificate::from_pem(read(ca, "client_ca")?))
            .client_auth_optional(t.client_auth_optional);
    }
    Ok(c)
}

/// The daemon's bound sockets: bound before the store is opened, so a busy
/// port is refused before anything is created on disk.
pub struct Listeners {
    grpc: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
}

/// Binds the gRPC port and, with `metrics_listen`, the metrics port.
pub async fn bind(cfg: &crate::config::Config) -> Result<Listeners> {
    let listen = cfg.listen;
    let grpc = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot listen on {listen}: {e}")))?;
    let metrics = match cfg.metrics_listen {
        Some(at) => Some(super::metrics::bind(at).await?),
        None => None,
    };
    Ok(Listeners { grpc, metrics })
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(engine: Arc<Engine>, listeners: Listeners, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let cfg = engine.config();
    // The engine holds the index lock: these are ours, left by an earlier run.
    for name in [LISTEN_ADDR_FILE, METRICS_ADDR_FILE] {
        match std::fs::remove_file(cfg.data_dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let Listeners {
        grpc: listener,
        metrics,
    } = listeners;
    let addr = listener.local_addr()?;
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<BlobServiceServer<BlobApi>>().await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health.set_serving::<CatalogServiceServer<CatalogApi>>().await;
    health.set_serving::<AuditServiceServer<AuditApi>>().await;
    health.set_serving::<RetentionServiceServer<RetentionApi>>().await;
    health.set_serving::<ReportServiceServer<ReportApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    // Older clients (grpcurl before 1.8.8, Python's grpcio-reflection) ask v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let auth = Authenticate(Arc::new(Auth::load(&cfg.tokens, &cfg.data_dir)?));
    let admin_token = cfg.data_dir.join(crate::auth::ADMIN_TOKEN_FILE);
    let admin_token = std::path::absolute(&admin_token).unwrap_or(admin_token);
    tracing::info!(path = %admin_token.display(), "local admin token");
    let blob = BlobServiceServer::new(BlobApi { engine: engine.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(GET_FRAME * 2);
    // Every service's request limit is set here, not left to tonic's default.
    let admin = AdminServiceServer::new(AdminApi { engine: engine.clone() }).max_decoding_message_size(MAX_REQUEST);
    let catalog = CatalogServiceServer::new(CatalogApi { engine: engine.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let audit = AuditServiceServer::new(AuditApi { engine: engine.clone() })
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(MAX_MESSAGE);
    // Health and reflection stay open; every stowage service needs a token.
    let (blob, admin) = (
        InterceptedService::new(blob, auth.clone()),
        InterceptedService::new(admin, auth.clone()),
    );
    let retention = RetentionServiceServer::new(RetentionApi { engine: engine.clone() })
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(MAX_MESSAGE);
    let report = ReportServiceServer::new(ReportApi { engine: engine.clone() })
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(MAX_MESSAGE);
    let (catalog, audit, retention, report) = (
        InterceptedService::new(catalog, auth.clone()),
        InterceptedService::new(audit, auth.clone()),
        InterceptedService::new(retention, auth.clone()),
        InterceptedService::new(report, auth),
    );
    // The builder's tcp_nodelay does not reach an incoming stream we bring:
    // without it Nagle and delayed ACKs add ~40 ms to small answers.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let metrics_listener = metrics;
    let metrics = Arc::new(Metrics::new(&[
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])?);
    let metrics_task = match metrics_listener {
        Some(listener) => {
            publish_addr(&cfg.data_dir, METRICS_ADDR_FILE, listener.local_addr()?)?;
            Some(tokio::spawn(super::metrics::serve(
                metrics.clone(),
                engine.clone(),
                listener,
            )))
        }
        None => None,
    };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        server = server
            .tls_config(server_tls(tls)?)
            .map_err(|e| Error::invalid(format!("tls: {e}")))?;
    }
    tracing::info!(%addr, tls = cfg.tls.is_some(), mtls = cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "listening");
    // Last: once this file is there, every listener is bound.
    publish_addr(&cfg.data_dir, LISTEN_ADDR_FILE, addr)?;
    let served = server
        .layer(RpcMetricsLayer(metrics))
        // Inside the metrics layer, so they count the rewritten code.
        .layer(super::decode::DecodeStatusLayer)
        // Dead peers are found and their connections (and streams) dropped.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .tcp_keepalive(Some(std::time::Duration::from_secs(60)))
        .initial_stream_window_size(Some(WINDOW))
        .initial_connection_window_size(Some(2 * WINDOW))
        .max_frame_size(Some(FRAME))
        // Set here rather than left to the libraries: tonic would otherwise
        // let one connection open any number of streams.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_max_header_list_size(Some(MAX_HEADER_LIST))
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(blob)
        .add_service(admin)
        .add_service(catalog)
        .add_service(audit)
        .add_service(retention)
        .add_service(report)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Unavailable(format!("server: {e}")));
    if let Some(t) = metrics_task {
        t.abort();
    }
    served?;
    engine.shutdown();
    Ok(())
}
