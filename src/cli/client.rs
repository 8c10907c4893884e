//! Client commands: thin wrappers over `api::client::Client` printing JSON.

use std::io::Write;

use anyhow::Context;
use serde_json::{Map, Value};

use super::catalog::parse_digests;
use super::output::emit;
use super::{BlobCmd, connect, fail};
use crate::api::client::Client;
use crate::api::pb;

fn digests_json(d: &pb::Digests, out: &mut Map<String, Value>) {
    out.insert("blake3".into(), d.blake3.clone().into());
    out.insert("sha256".into(), d.sha256.clone().into());
    for (k, v) in [("sha1", &d.sha1), ("sha512", &d.sha512), ("md5", &d.md5)] {
        if let Some(v) = v {
            out.insert(k.into(), v.clone().into());
        }
    }
}

pub async fn blob(cmd: BlobCmd) -> anyhow::Result<()> {
    match cmd {
        BlobCmd::Put {
            conn,
            namespace,
            digests,
            expected_sha256,
            files,
        } => {
            let want = parse_digests(&digests)?;
            let client = connect(&conn).await?;
            for f in files {
                let size = std::fs::metadata(&f).with_context(|| format!("{}", f.display()))?.len();
                let header = pb::PutHeader {
                    namespace: namespace.clone(),
                    expected_size: Some(size),
                    expected_sha256: expected_sha256.clone().unwrap_or_default(),
                    digests: want.clone(),
                    ..Default::default()
                };
                let r = client
                    .put_file(header, &f)
                    .await
                    .map_err(|s| fail(s).context(f.display().to_string()))?;
                let mut out = Map::new();
                out.insert("file".into(), f.display().to_string().into());
                if let Some(d) = &r.digests {
                    digests_json(d, &mut out);
                }
                out.insert("size".into(), r.size.into());
                out.insert("new".into(), r.new.into());
                out.insert("added_bytes".into(), r.added_bytes.into());
                emit(|w| writeln!(w, "{}", Value::Object(out)))?;
            }
        }
        BlobCmd::Get {
            conn,
            namespace,
            blake3,
            output,
            offset,
            length,
        } => {
            let client = connect(&conn).await?;
            let req = pb::GetRequest {
                namespace,
                blake3,
                offset,
                length,
            };
            get_to(&client, req, output.as_deref()).await?;
        }
        BlobCmd::Stat {
            conn,
            namespace,
            blake3,
        } => {
            let r = connect(&conn).await?.stat(&namespace, &blake3).await.map_err(fail)?;
            let mut out = Map::new();
            if let Some(d) = &r.digests {
                digests_json(d, &mut out);
            }
            out.insert("size".into(), r.size.into());
            out.insert("created_unix_ms".into(), r.created_unix_ms.into());
            out.insert("chunks".into(), r.chunks.into());
            emit(|w| writeln!(w, "{}", Value::Object(out)))?;
        }
        BlobCmd::FindMissing {
            conn,
            namespace,
            blake3,
        } => {
            let missing = connect(&conn)
                .await?
                .find_missing(&namespace, blake3)
                .await
                .map_err(fail)?;
            emit(|w| missing.iter().try_for_each(|h| writeln!(w, "{h}")))?;
        }
    }
    Ok(())
}

/// Streams a read to `output` (written whole under a temporary name, then
/// renamed: a failed read leaves nothing) or to stdout.
pub(super) async fn get_to(
    client: &Client,
    req: pb::GetRequest,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            let tmp = path.with_extension("stowage-partial");
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("{}", tmp.display()))?);
            let r = client.get_to(req, |b| f.write_all(b)).await;
            let flushed = f.flush();
            drop(f);
            if let Err(s) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(fail(s));
            }
            flushed.with_context(|| format!("{}", tmp.display()))?;
            std::fs::rename(&tmp, path)?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            client.get_to(req, |b| lock.write_all(b)).await.map_err(fail)?;
            lock.flush()?;
        }
    }
    Ok(())
}
