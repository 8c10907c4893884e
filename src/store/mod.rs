//! Pack store wiring: object_store URL -> store, pack ids -> object paths.
//!
//! `object_store::ObjectStore` is the boundary; this adds pack naming and,
//! for the local filesystem, the fsyncs that `LocalFileSystem` leaves out.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;
use url::Url;

use crate::error::{Error, Result};

/// Part size for uploads to a remote pack store (S3's minimum is 5 MiB).
const UPLOAD_PART: usize = 16 << 20;

#[derive(Clone)]
pub struct PackStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Root folder when the store is the local filesystem.
    local_root: Option<PathBuf>,
    url: String,
}

impl std::fmt::Debug for PackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackStore({})", self.url)
    }
}

impl PackStore {
    /// Opens `file:///dir`, `s3://bucket/prefix` (with `AWS_*` env and
    /// `options`), or any other scheme object_store parses.
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let parsed = Url::parse(url).map_err(|e| Error::invalid(format!("pack store URL {url:?}: {e}")))?;
        let (store, prefix, local_root): (Arc<dyn ObjectStore>, Path, Option<PathBuf>) = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|_| Error::invalid(format!("pack store URL {url:?} is not an absolute file path")))?;
                std::fs::create_dir_all(&dir)?;
                (
                    Arc::new(LocalFileSystem::new_with_prefix(&dir)?),
                    Path::default(),
                    Some(dir),
                )
            }
            "s3" | "s3a" => {
                let mut b = AmazonS3Builder::from_env().with_url(url);
                for (k, v) in options {
                    let key = k
                        .parse()
                        .map_err(|e| Error::invalid(format!("pack store option {k:?}: {e}")))?;
                    b = b.with_config(key, v);
                }
                let prefix = Path::from(parsed.path().trim_start_matches('/'));
                (Arc::new(b.build()?), prefix, None)
            }
            _ => {
                let (s, p) = object_store::parse_url_opts(&parsed, options.iter())?;
                (Arc::from(s), p, None)
            }
        };
        Ok(PackStore {
            store,
            prefix,
            local_root,
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store's folder, when it is a local directory.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    fn path(&self, pack: u64) -> Path {
        self.prefix.child("packs").child(format!("{pack:016x}.pack"))
    }

    /// Moves a sealed pack file into the store. Returns once it is durable
    /// there. On the local filesystem this is a rename (no copy; the file
    /// leaves `src`); elsewhere the file is uploaded and `src` stays.
    pub async fn put_file(&self, pack: u64, src: &std::path::Path) -> Result<()> {
        let path = self.path(pack);
        if let Some(root) = &self.local_root {
            let (src, dst) = (src.to_path_buf(), root.join(path.as_ref()));
            let renamed = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
                let dir = dst.parent().expect("pack paths have a folder");
                std::fs::create_dir_all(dir)?;
                match std::fs::rename(&src, &dst) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(18) => return Ok(false), // EXDEV: copy instead
                    Err(e) => return Err(e),
                }
                std::fs::File::open(dir)?.sync_all()?;
                if let Some(from) = src.parent() {
                    std::fs::File::open(from)?.sync_all()?;
                }
                Ok(true)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            if renamed {
                return Ok(());
            }
        }
        // Stream it up in parts: a pack is never held in memory whole.
        let mut w = WriteMultipart::new_with_chunk_size(self.store.put_multipart(&path).await?, UPLOAD_PART);
        let mut f = tokio::fs::File::open(src).await?;
        loop {
            let mut buf = vec![0u8; UPLOAD_PART];
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]).await? {
                    0 => break,
                    got => n += got,
                }
            }
            if n == 0 {
                break;
            }
            w.wait_for_capacity(2).await?;
            w.write(&buf[..n]);
        }
        w.finish().await?;
        self.sync_local(&path).await
    }

    /// Uploads a sealed pack. Returns once it is durable in the store.
    pub async fn put(&self, pack: u64, bytes: Bytes) -> Result<()> {
        let path = self.path(pack);
        self.store.put(&path, PutPayload::from_bytes(bytes)).await?;
        self.sync_local(&path).await
    }

    /// LocalFileSystem renames into place without fsync: make it durable.
    async fn sync_local(&self, path: &Path) -> Result<()> {
        let Some(root) = &self.local_root else { return Ok(()) };
        let file = root.join(path.as_ref());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(())
    }

    pub async fn get_range(&self, pack: u64, range: Range<u64>) -> Result<Bytes> {
        match self.store.get_range(&self.path(pack), range.clone()).await {
            Ok(b) if b.len() as u64 == range.end - range.start => Ok(b),
            Ok(_) => Err(Error::corrupt(format!(
                "pack {pack:016x} is shorter than its index says"
            ))),
            Err(object_store::Error::NotFound { .. }) => Err(Error::corrupt(format!(
                "pack {pack:016x} is missing from the pack store"
            ))),
            Err(object_store::Error::Generic { source, .. }) if starts_past_end(&source.to_string()) => Err(
                Error::corrupt(format!("pack {pack:016x} is shorter than its index says")),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a pack; a pack already gone is not an error.
    pub async fn delete(&self, pack: u64) -> Result<()> {
        match self.store.delete(&self.path(pack)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn size(&self, pack: u64) -> Result<Option<u64>> {
        match self.store.head(&self.path(pack)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// All pack ids in the store, sorted.
    pub async fn list(&self) -> Result<Vec<u64>> {
        let dir = self.prefix.child("packs");
        let metas: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut ids: Vec<u64> = metas
            .iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                u64::from_str_radix(name.strip_suffix(".pack")?, 16).ok()
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Whether a store error says a range read started past the end of the
/// object: LocalFileSystem says "out of range"; S3 (like other HTTP stores)
/// answers 416 InvalidRange, which object_store reports only as text.
fn starts_past_end(msg: &str) -> bool {
    msg.contains("out of range") || msg.contains("416 Range Not Satisfiable")
}
