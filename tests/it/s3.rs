//! The daemon with an S3-compatible pack store: moto's standalone server
//! (`pip install 'moto[server]'`, installed by tools/setup.sh), started by
//! each test on a free port and killed when the test ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage::api::client::header;
use stowage::api::pb;
use stowage::pack::format::HEADER_LEN;

use crate::harness::*;

const BUCKET: &str = "stowage-it";
/// Two levels, so the prefix handling of `s3://bucket/a/b` is exercised.
const PREFIX: &str = "registry/stowage";

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=00";

/// A bare HTTP/1.1 request. moto does not check signatures, but answers an
/// anonymous GET of an object with 403, so every request names the test's
/// access key in a SigV4-shaped `Authorization` header with a dummy signature.
/// Returns the status and the body.
fn http(port: u16, method: &str, target: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {AUTH}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[at + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let (mut out, mut rest) = (Vec::new(), &body[..]);
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).ok_or_else(|| bad("short chunk"))?);
            rest = rest.get(size + 2..).ok_or_else(|| bad("short chunk"))?;
        }
        body = out;
    }
    Ok((status, body))
}

/// moto's S3 server, killed on drop.
struct Moto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` (or `python3 -m moto.server`) on a free port and
    /// waits until it answers. Fails the test if neither can be started.
    fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let commands: [(&str, &[&str]); 2] = [("moto_server", &[]), ("python3", &["-m", "moto.server"])];
        let mut failures = Vec::new();
        for round in 0..2 {
            // A second round only if another process took the free port first.
            if round > 0 && !failures.iter().any(|f: &String| f.contains("in use")) {
                break;
            }
            for (i, (prog, args)) in commands.iter().enumerate() {
                let port = free_port();
                let log = dir.path().join(format!("moto-{round}-{i}.log"));
                let out = std::fs::File::create(&log).unwrap();
                let spawned = Command::new(prog)
                    .args(*args)
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().unwrap())
                    .stderr(out)
                    .spawn();
                let mut child = match spawned {
                    Ok(c) => c,
                    Err(e) => {
                        failures.push(format!("`{prog}`: {e}"));
                        continue;
                    }
                };
                match wait_ready(&mut child, port, &log) {
                    Ok(()) => return Moto { child, port, _dir: dir },
                    Err(why) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        failures.push(format!("`{prog} {}`: {why}", args.join(" ")));
                    }
                }
            }
        }
        panic!(
            "cannot start moto's S3 server (`moto_server` or `python3 -m moto.server`): run tools/setup.sh \
             to install it (pip install 'moto[server]').\n{}",
            failures.join("\n")
        );
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `method /target` with `body`; panics unless the answer is `want`.
    fn call(&self, method: &str, target: &str, body: &[u8], want: u16) -> Vec<u8> {
        let (status, got) = http(self.port, method, target, body).unwrap();
        let text = String::from_utf8_lossy(&got);
        assert_eq!(status, want, "{method} {target}: {text}");
        got
    }

    fn create_bucket(&self, bucket: &str) {
        self.call("PUT", &format!("/{bucket}"), b"", 200);
    }

    /// Keys and sizes of the objects under `prefix`, sorted by key.
    fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let body = self.call("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"), b"", 200);
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("<IsTruncated>false</IsTruncated>"), "{body}");
        let tag = |s: &str, t: &str| -> String {
            let open = format!("<{t}>");
            let from = s.find(&open).unwrap_or_else(|| panic!("no <{t}> in {s}")) + open.len();
            s[from..from + s[from..].find('<').unwrap()].to_string()
        };
        let mut v: Vec<(String, u64)> = body
            .split("<Contents>")
            .skip(1)
            .map(|c| (tag(c, "Key"), tag(c, "Size").parse().unwrap()))
            .collect();
        v.sort();
        v
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server on `port` answers S3's ListBuckets.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("exited with {status}: {}", log.trim()));
        }
        if let Ok((200, body)) = http(port, "GET", "/", b"")
            && String::from_utf8_lossy(&body).contains("ListAllMyBucketsResult")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("did not answer HTTP within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon whose pack store is a bucket on its own moto server, holding
/// the blobs `put_blobs` stored, with every full pack sealed into S3.
struct S3Daemon {
    d: Daemon,
    moto: Moto,
    blobs: Vec<(String, String, Bytes)>,
}

impl S3Daemon {
    async fn start() -> S3Daemon {
        Self::start_with("").await
    }

    /// `tables`: more TOML tables for the daemon's config.
    async fn start_with(tables: &str) -> S3Daemon {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        // [pack_store_options] last: the harness puts data_dir and listen first.
        let d = Daemon::start(&format!(
            "pack_store = \"s3://{BUCKET}/{PREFIX}\"\n\
             pack_target_size = \"256KiB\"\n\
             [pack_store_options]\n\
             aws_endpoint = \"{}\"\n\
             aws_allow_http = \"true\"\n\
             aws_access_key_id = \"test\"\n\
             aws_secret_access_key = \"test\"\n\
             aws_region = \"us-east-1\"\n{tables}",
            moto.endpoint()
        ))
        .await;
        let mut s = S3Daemon {
            d,
            moto,
            blobs: Vec::new(),
        };
        s.put_blobs().await;
        s.wait_sealed().await;
        s
    }

    /// ~5 MB in two namespaces: random and text, shared and deduplicated,
    /// tiny and multi-pack, plus a rejected upload.
    async fn put_blobs(&mut self) {
        let c = self.d.client().await;
        let shared = random_bytes(40, 600_000);
        let blobs: Vec<(&str, Bytes)> = vec![
            ("a", shared.clone()),
            ("b", shared.clone()),
            ("a", random_bytes(41, 2_000_000)),
            ("b", text_bytes(42, 1_500_000)),
            ("a", [shared.clone(), text_bytes(43, 300_000)].concat().into()),
            ("b", random_bytes(44, 700_000)),
            ("a", text_bytes(45, 100)),
            ("b", random_bytes(46, 1)),
            ("a", Bytes::new()),
        ];
        for (ns, data) in blobs {
            let hd = pb::PutHeader {
                digests: vec![pb::Digest::Md5 as i32],
                ..header(ns)
            };
            let r = c.put_bytes(hd, data.clone()).await.unwrap();
            assert_eq!(r.size, data.len() as u64);
            let h = r.digests.unwrap().blake3;
            assert_eq!(h, b3(&data));
            self.blobs.push((ns.to_string(), h, data));
        }
        // A rejected upload leaves unreferenced chunk records in a pack.
        let bad = pb::PutHeader {
            expected_sha256: "00".repeat(32),
            ..header("a")
        };
        c.put_bytes(bad, random_bytes(47, 400_000)).await.unwrap_err();
    }

    fn staged(&self) -> Vec<PathBuf> {
        pack_files(&self.d.data_dir().join("staging"))
    }

    /// Pack objects in the bucket.
    fn objects(&self) -> Vec<(String, u64)> {
        self.moto.list(BUCKET, &format!("{PREFIX}/"))
    }

    /// Waits until every pack but the open one is sealed into the bucket:
    /// one staging file left, every other pack an object of the size the
    /// index recorded.
    async fn wait_sealed(&self) {
        let c = self.d.client().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = c.stats().await.unwrap();
            let staged = self.staged();
            let objects = self.objects();
            // The open pack counts in the stats once it holds a record.
            let open: Vec<u64> = staged
                .iter()
                // A pack being sealed may vanish under us: just poll again.
                .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
                .filter(|&n| n > HEADER_LEN as u64)
                .collect();
            let object_bytes: u64 = objects.iter().map(|o| o.1).sum();
            if staged.len() == 1
                && objects.len() > 1
                && objects.len() as u64 + open.len() as u64 == s.packs
                && object_bytes + open.iter().sum::<u64>() == s.pack_bytes
            {
                for (key, _) in &objects {
                    let name = key
                        .strip_prefix(&format!("{PREFIX}/packs/"))
                        .unwrap_or_else(|| panic!("object {key} outside {PREFIX}/packs/"));
                    let id = name.strip_suffix(".pack").unwrap();
                    assert!(id.len() == 16 && u64::from_str_radix(id, 16).is_ok(), "{key}");
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "packs did not reach S3: {s:?}, staged {staged:?}, objects {objects:?}\n{}",
                self.d.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every blob in full, byte-exact, and ranges across chunk and pack edges.
    async fn read_all(&self) {
        let c = self.d.client().await;
        for (ns, h, data) in &self.blobs {
            let back = c.get_bytes(ns, h, 0, None).await.unwrap();
            assert!(
                back == data[..],
                "{ns}/{h}: {} bytes back for {}",
                back.len(),
                data.len()
            );
        }
        let (ns, h, big) = &self.blobs[2];
        assert_eq!(big.len(), 2_000_000);
        for (off, len) in [
            (0u64, 1u64),
            (1, 70_000),
            (300_000, 1_000_000),
            (1_999_999, 1),
            (2_000_000, 0),
            (123_457, 1_876_543),
        ] {
            let got = c.get_bytes(ns, h, off, Some(len)).await.unwrap();
            assert!(
                got == big[off as usize..(off + len) as usize],
                "range {off}+{len}: {} bytes",
                got.len()
            );
        }
    }
}

/// The (namespace, blake3) pairs of the stored blobs.
fn pairs(blobs: &[(String, String, Bytes)]) -> Vec<(String, String)> {
    blobs.iter().map(|(ns, h, _)| (ns.clone(), h.clone())).collect()
}

#[tokio::test]
async fn s3_sealed_packs_read_back_byte_exact() {
    let s = S3Daemon::start().await;
    let st = s.d.client().await.stats().await.unwrap();
    assert!(st.packs >= 8, "~5 MB with a 256KiB pack target: {st:?}");
    assert_eq!(st.blobs, 8, "{st:?}");
    assert_eq!(st.references, 9, "{st:?}");
    // Nothing went to the default local pack store.
    assert!(!s.d.data_dir().join("packs").exists());
    s.read_all().await;
}

#[tokio::test]
async fn s3_store_serves_everything_after_restart() {
    let mut s = S3Daemon::start().await;
    let before = answers(&s.d.client().await, &pairs(&s.blobs)).await;
    s.d.restart().await;
    s.read_all().await;
    assert_eq!(answers(&s.d.client().await, &pairs(&s.blobs)).await, before);
    // The restarted daemon keeps writing to the bucket.
    let c = s.d.client().await;
    let more = random_bytes(48, 600_000);
    let r = c.put_bytes(header("b"), more.clone()).await.unwrap();
    let h = r.digests.unwrap().blake3;
    s.blobs.push(("b".into(), h, more));
    s.wait_sealed().await;
    s.read_all().await;
}

#[tokio::test]
async fn s3_rebuilt_index_gives_the_same_answers() {
    let mut s = S3Daemon::start().await;
    let before = answers(&s.d.client().await, &pairs(&s.blobs)).await;
    let packs_before = s.objects().len();
    s.d.stop();

    let out = Command::new(BIN)
        .args(["admin", "rebuild-index", "--config"])
        .arg(&s.d.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["missing_chunks"], 0, "{report}");
    assert!(report["unreferenced_chunks"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["blobs"], 8, "{report}");
    assert_eq!(report["references"], 9, "{report}");
    // The open pack was sealed into the bucket too; staging is empty.
    assert_eq!(s.objects().len(), packs_before + 1);
    assert_eq!(report["packs"], (packs_before + 1) as u64, "{report}");
    assert!(s.staged().is_empty(), "{:?}", s.staged());

    s.d.spawn().await;
    let c = s.d.client().await;
    assert_eq!(answers(&c, &pairs(&s.blobs)).await, before);
    s.read_all().await;
}

/// A damaged, cut or lost pack object is DATA_LOSS, never wrong bytes; once
/// the objects are put back everything reads again.
#[tokio::test]
async fn s3_damaged_pack_objects_are_data_loss() {
    let s = S3Daemon::start().await;
    let c = s.d.client().await;
    let url = |key: &str| format!("/{BUCKET}/{key}");
    let keys: Vec<String> = s.objects().into_iter().map(|o| o.0).collect();
    let originals: Vec<Vec<u8>> = keys.iter().map(|k| s.moto.call("GET", &url(k), b"", 200)).collect();
    type Damage = fn(&[u8]) -> Option<Vec<u8>>;
    let damages: [(&str, Damage); 4] = [
        ("a flipped byte", |o| {
            let mut v = o.to_vec();
            v[o.len() / 2] ^= 0x40;
            Some(v)
        }),
        ("cut in half", |o| Some(o[..o.len() / 2].to_vec())),
        ("cut after the header", |o| Some(o[..HEADER_LEN].to_vec())),
        ("deleted", |_| None),
    ];
    for (what, damage) in damages {
        for (k, o) in keys.iter().zip(&originals) {
            match damage(o) {
                Some(v) => s.moto.call("PUT", &url(k), &v, 200),
                None => s.moto.call("DELETE", &url(k), b"", 204),
            };
        }
        // The shared blob and the 2 MB one lie in sealed packs.
        for (ns, h, data) in [&s.blobs[0], &s.blobs[2]] {
            expect_data_loss(&c, ns, h, data, what).await;
        }
        for (k, o) in keys.iter().zip(&originals) {
            s.moto.call("PUT", &url(k), o, 200);
        }
        s.read_all().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_gc_compacts_and_deletes_pack_objects() {
    let s = S3Daemon::start_with(
        "[gc]\ninterval = \"0s\"\ngrace = \"0s\"\ncompact_threshold = 0.0\npack_delete_delay = \"0s\"\n",
    )
    .await;
    let c = s.d.client().await;
    // Keep two blobs as files; every other upload goes when its lease ends.
    let kept = [&s.blobs[2], &s.blobs[3]];
    for (i, (ns, h, _)) in kept.iter().enumerate() {
        let v = stowage::api::client::version_ref(ns, "p", pb::PackageType::Generic, "keep", &i.to_string());
        c.publish_blob(v, "f.bin", h).await.unwrap();
    }
    s.d.advance_clock(Duration::from_secs(25 * 3600));
    c.admin.clone().purge(pb::PurgeRequest::default()).await.unwrap();
    let before = s.objects();
    let r = c
        .retention
        .clone()
        .collect_garbage(pb::GcRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(r.chunks_collected > 0 && r.packs_compacted > 0, "{r:?}");
    assert_eq!(r.packs_deleted, r.packs_compacted, "{r:?}");
    let after = s.objects();
    let gone = before.iter().filter(|o| !after.contains(o)).count() as u64;
    assert_eq!(gone, r.packs_deleted, "before {before:?}, after {after:?}");
    let bytes = |v: &[(String, u64)]| v.iter().map(|o| o.1).sum::<u64>();
    assert!(bytes(&after) < bytes(&before), "before {before:?}, after {after:?}");
    for (ns, h, data) in kept {
        assert!(c.get_bytes(ns, h, 0, None).await.unwrap() == data[..], "{ns}/{h}");
    }
    let check = s.d.cli(&["admin", "check", "--json"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let st = c.stats().await.unwrap();
    // The open pack is never compacted: its collected chunks stay dead until it is sealed.
    assert_eq!(st.condemned_bytes, 0, "{st:?}");
}
