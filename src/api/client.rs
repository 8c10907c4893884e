//! A small client over the generated stubs, for the CLI, tools and tests.

use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::transport::{Channel, Endpoint};

use super::pb::{self, admin_service_client::AdminServiceClient, blob_service_client::BlobServiceClient};

pub use tonic::{Code, Status};

/// Data frame size the client sends.
pub const PUT_FRAME: usize = 1 << 20;
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Clone)]
pub struct Client {
    pub blobs: BlobServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
}

impl Client {
    pub async fn connect(addr: &str) -> Result<Self, tonic::transport::Error> {
        let ch = Endpoint::from_shared(addr.to_string())?
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(super::server::WINDOW))
            .initial_connection_window_size(Some(2 * super::server::WINDOW))
            .max_frame_size(Some(super::server::FRAME))
            .connect()
            .await?;
        Ok(Self::from_channel(ch))
    }

    pub fn from_channel(ch: Channel) -> Self {
        Client {
            blobs: BlobServiceClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            admin: AdminServiceClient::new(ch),
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
        mut reader: R,
    ) -> Result<pb::PutResponse, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(header)),
        })
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
                let msg = pb::PutRequest {
                    msg: Some(pb::put_request::Msg::Data(buf.into())),
                };
                if tx.send(msg).await.is_err() {
                    return Ok(());
                }
            }
        });
        let res = self
            .blobs
            .clone()
            .put(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        match feeder.await {
            Ok(Err(e)) => return Err(Status::aborted(format!("reading input: {e}"))),
            Err(e) => return Err(Status::internal(e.to_string())),
            Ok(Ok(())) => {}
        }
        res.map(|r| r.into_inner())
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
        Ok(self.admin.clone().stats(pb::StatsRequest {}).await?.into_inner())
    }
}

/// A header for the given namespace, with nothing else set.
pub fn header(ns: &str) -> pb::PutHeader {
    pb::PutHeader {
        namespace: ns.into(),
        ..Default::default()
    }
}
