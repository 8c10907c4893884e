//! A small client over the generated stubs, for the CLI, tools and tests.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::pb::{
    self, admin_service_client::AdminServiceClient, audit_service_client::AuditServiceClient,
    blob_service_client::BlobServiceClient, catalog_service_client::CatalogServiceClient,
    report_service_client::ReportServiceClient, retention_service_client::RetentionServiceClient,
};

pub use tonic::{Code, Status};

/// Data frame size the client sends.
pub const PUT_FRAME: usize = 1 << 20;
const MAX_MESSAGE: usize = 16 << 20;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Client {
    pub blobs: BlobServiceClient<Authed>,
    pub admin: AdminServiceClient<Authed>,
    pub catalog: CatalogServiceClient<Authed>,
    pub audit: AuditServiceClient<Authed>,
    pub retention: RetentionServiceClient<Authed>,
    pub report: ReportServiceClient<Authed>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error("the token is not valid in a header")]
    BadToken,
    #[error("{0}")]
    Tls(String),
}

/// Client-side TLS: used when the address is `https://`.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// CA certificates (PEM) that sign the server's certificate. Default:
    /// the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for a daemon that asks for
    /// one (mTLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name to check the server's certificate against. Default: the
    /// address's host.
    pub domain: Option<String>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none() && self.domain.is_none()
    }

    fn config(&self) -> Result<ClientTlsConfig, ConnectError> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| ConnectError::Tls(format!("cannot read {}: {e}", p.display())));
        let mut c = ClientTlsConfig::new();
        c = match &self.ca {
            Some(ca) => c.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => c.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => c = c.identity(Identity::from_pem(read(cert)?, read(key)?)),
            (None, None) => {}
            _ => {
                return Err(ConnectError::Tls(
                    "a client certificate needs both its cert and its key".into(),
                ));
            }
        }
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        Ok(c)
    }
}

impl Client {
    /// Connects; every request carries `token` if given.
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Self, ConnectError> {
        Self::connect_with(addr, token, &TlsFiles::default()).await
    }

    /// Connects over TLS when `addr` is `https://`.
    pub async fn connect_with(addr: &str, token: Option<&str>, tls: &TlsFiles) -> Result<Self, ConnectError> {
        let mut ep = Endpoint::from_shared(addr.to_string())?;
        if addr.starts_with("https://") {
            ep = ep.tls_config(tls.config()?)?;
        } else if !tls.is_empty() {
            return Err(ConnectError::Tls(format!(
                "TLS options need an https:// address, not {addr}"
            )));
        }
        let ch = ep
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(super::server::WINDOW))
            .initial_connection_window_size(Some(2 * super::server::WINDOW))
            .max_frame_size(Some(super::server::FRAME))
            .connect()
            .await?;
        let bearer = match token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| ConnectError::BadToken)?),
            None => None,
        };
        Ok(Self::from_channel(ch, Bearer(bearer)))
    }

    pub fn from_channel(ch: Channel, bearer: Bearer) -> Self {
        let ch = InterceptedService::new(ch, bearer);
        Client {
            blobs: BlobServiceClient::new(ch.clone())
                // A Get frame is one chunk, at most 16 MiB (FastCDC's limit), with its framing.
                .max_decoding_message_size(crate::engine::GET_FRAME * 2)
                .max_encoding_message_size(MAX_MESSAGE),
            admin: AdminServiceClient::new(ch.clone()),
            catalog: CatalogServiceClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            audit: AuditServiceClient::new(ch.clone()).max_decoding_message_size(MAX_MESSAGE),
            retention: RetentionServiceClient::new(ch.clone()).max_decoding_message_size(MAX_MESSAGE),
            report: ReportServiceClient::new(ch).max_decoding_message_size(MAX_MESSAGE),
        }
    }

    /// Uploads bytes already in memory.
    pub async fn put_bytes(&self, header: pb::PutHeader, data: Bytes) -> Result<pb::PutResponse, Status> {
        let mut msgs = vec![pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(header)),
        }];
        let mut off = 0;
        while off < data.len() {
            let end = (off + PUT_FRAME).min(data.len());
            msgs.push(pb::PutRequest {
                msg: Some(pb::put_request::Msg::Data(data.slice(off..end))),
            });
            off = end;
        }
        self.blobs
            .clone()
            .put(futures::stream::iter(msgs))
            .await
            .map(|r| r.into_inner())
    }

    /// Uploads from a reader, streaming.
    pub async fn put_reader<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        header: pb::PutHeader,
        reader: R,
    ) -> Result<pb::PutResponse, Status> {
        let first = pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(header)),
        };
        let data = |d| pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(d)),
        };
        let mut blobs = self.blobs.clone();
        feed(first, data, reader, |s| async move { blobs.put(s).await }).await
    }

    /// Publishes a file whose bytes come from a reader, in one call.
    pub async fn publish_reader<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        header: pb::PublishFileHeader,
        reader: R,
    ) -> Result<pb::PublishFileResponse, Status> {
        let first = pb::PublishFileRequest {
            msg: Some(pb::publish_file_request::Msg::Header(header)),
        };
        let data = |d| pb::PublishFileRequest {
            msg: Some(pb::publish_file_request::Msg::Data(d)),
        };
        let mut catalog = self.catalog.clone();
        feed(first, data, reader, |s| async move { catalog.publish_file(s).await }).await
    }

    /// Publishes bytes already in memory as a file of `version`.
    pub async fn publish_bytes(
        &self,
        version: pb::VersionRef,
        file_name: &str,
        data: Bytes,
    ) -> Result<pb::PublishFileResponse, Status> {
        let header = pb::PublishFileHeader {
            version: Some(version),
            file_name: file_name.into(),
            upload: Some(pb::PutHeader {
                expected_size: Some(data.len() as u64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut msgs = vec![pb::PublishFileRequest {
            msg: Some(pb::publish_file_request::Msg::Header(header)),
        }];
        for frame in data.chunks(PUT_FRAME) {
            msgs.push(pb::PublishFileRequest {
                msg: Some(pb::publish_file_request::Msg::Data(data.slice_ref(frame))),
            });
        }
        let r = self.catalog.clone().publish_file(futures::stream::iter(msgs)).await?;
        Ok(r.into_inner())
    }

    /// Publishes a blob the namespace already stored, by BLAKE3.
    pub async fn publish_blob(
        &self,
        version: pb::VersionRef,
        file_name: &str,
        blake3: &str,
    ) -> Result<pb::PublishFileResponse, Status> {
        let header = pb::PublishFileHeader {
            version: Some(version),
            file_name: file_name.into(),
            blake3: blake3.into(),
            upload: None,
        };
        let msg = pb::PublishFileRequest {
            msg: Some(pb::publish_file_request::Msg::Header(header)),
        };
        let r = self.catalog.clone().publish_file(futures::stream::iter([msg])).await?;
        Ok(r.into_inner())
    }

    pub async fn put_file(&self, header: pb::PutHeader, path: &Path) -> Result<pb::PutResponse, Status> {
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|e| Status::invalid_argument(format!("{}: {e}", path.display())))?;
        self.put_reader(header, f).await
    }

    /// Streams a blob (or range) into `out` chunk by chunk; returns the bytes written.
    pub async fn get_to<F: FnMut(&[u8]) -> std::io::Result<()>>(
        &self,
        req: pb::GetRequest,
        mut out: F,
    ) -> Result<u64, Status> {
        let mut stream = self.blobs.clone().get(req).await?.into_inner();
        let mut n = 0u64;
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            out(&msg.data).map_err(|e| Status::aborted(format!("writing output: {e}")))?;
            n += msg.data.len() as u64;
        }
        Ok(n)
    }

    /// Reads a whole blob (or range) into memory.
    pub async fn get_bytes(&self, ns: &str, blake3: &str, offset: u64, length: Option<u64>) -> Result<Vec<u8>, Status> {
        let mut v = Vec::new();
        let req = pb::GetRequest {
            namespace: ns.into(),
            blake3: blake3.into(),
            offset,
            length,
        };
        self.get_to(req, |b| {
            v.extend_from_slice(b);
            Ok(())
        })
        .await?;
        Ok(v)
    }

    pub async fn stat(&self, ns: &str, blake3: &str) -> Result<pb::StatResponse, Status> {
        let req = pb::StatRequest {
            namespace: ns.into(),
            blake3: blake3.into(),
        };
        self.blobs.clone().stat(req).await.map(|r| r.into_inner())
    }

    pub async fn find_missing(&self, ns: &str, hashes: Vec<String>) -> Result<Vec<String>, Status> {
        let req = pb::FindMissingRequest {
            namespace: ns.into(),
            blake3: hashes,
        };
        Ok(self.blobs.clone().find_missing(req).await?.into_inner().missing)
    }

    pub async fn stats(&self) -> Result<pb::StatsResponse, Status> {
        Ok(self
            .admin
            .clone()
            .stats(pb::StatsRequest::default())
            .await?
            .into_inner())
    }
}

/// A header for the given namespace, with nothing else set.
pub fn header(ns: &str) -> pb::PutHeader {
    pb::PutHeader {
        namespace: ns.into(),
        ..Default::default()
    }
}

/// Streams `first`, then the reader's bytes in `PUT_FRAME` messages, into
/// a client-streaming call; a read error wins over the call's own result.
async fn feed<M, R, F, Fut, T>(first: M, data: fn(Bytes) -> M, mut reader: R, call: F) -> Result<T, Status>
where
    M: Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
    F: FnOnce(tokio_stream::wrappers::ReceiverStream<M>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(first)
        .await
        .map_err(|_| Status::internal("upload channel closed"))?;
    let feeder = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; PUT_FRAME];
            let mut n = 0;
            while n < buf.len() {
                let got = reader.read(&mut buf[n..]).await?;
                if got == 0 {
                    break;
                }
                n += got;
            }
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            buf.truncate(n);
            if tx.send(data(buf.into())).await.is_err() {
                return Ok(());
            }
        }
    });
    let res = call(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    match feeder.await {
        Ok(Err(e)) => return Err(Status::aborted(format!("reading input: {e}"))),
        Err(e) => return Err(Status::internal(e.to_string())),
        Ok(Ok(())) => {}
    }
    res.map(|r| r.into_inner())
}

/// A version reference.
pub fn version_ref(ns: &str, project: &str, ty: pb::PackageType, name: &str, version: &str) -> pb::VersionRef {
    pb::VersionRef {
        package: Some(pb::PackageRef {
            namespace: ns.into(),
            project: project.into(),
            r#type: ty as i32,
            name: name.into(),
        }),
        version: version.into(),
    }
}
