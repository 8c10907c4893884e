//! Spawns and controls a real daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use stowage::api::client::{Client, TlsFiles};
use stowage::api::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_stowage");

pub struct Daemon {
    child: Option<Child>,
    /// The gRPC address of the running daemon (read back from its
    /// `listen.addr` at each start: the port is the kernel's pick).
    pub addr: String,
    /// The metrics address (`127.0.0.1:<port>`), when the config has
    /// `metrics_listen` (give it port 0).
    pub metrics: Option<String>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// What the harness's own clients present, for a TLS daemon.
    pub tls: TlsFiles,
    https: bool,
}

/// A port free a moment ago, for servers that cannot report the port they
/// bound (moto): racy, so such a start must retry when the port was taken.
/// Daemons listen on port 0 and say which port they got.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` every 20 ms until it returns `Ok`, and returns that; after
/// `timeout` fails the test with `what` and the last `Err` (the state seen).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not after {timeout:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Daemon {
    /// Starts a daemon; `extra` is appended to its TOML config.
    pub async fn start(extra: &str) -> Daemon {
        Self::start_tls(extra, None).await
    }

    /// Starts a daemon whose config has a `[tls]` section (in `extra`);
    /// the harness connects to `https://localhost:<port>` with `tls`.
    pub async fn start_tls(extra: &str, tls: Option<TlsFiles>) -> Daemon {
        Self::start_prepared(extra, tls, |_| {}).await
    }

    /// As [`Daemon::start_tls`], after `prepare` has made the data dir
    /// (it may mount a filesystem there).
    pub async fn start_prepared(extra: &str, tls: Option<TlsFiles>, prepare: impl FnOnce(&Path)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        prepare(&dir.path().join("data"));
        let config = dir.path().join("stowage.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n{extra}\n",
                dir.path().join("data")
            ),
        )
        .unwrap();
        let mut d = Daemon {
            child: None,
            addr: String::new(),
            metrics: None,
            dir,
            config,
            https: tls.is_some(),
            tls: tls.unwrap_or_default(),
        };
        d.spawn().await;
        d
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("STOWAGE_LOG", "info")
            .env(stowage::CLOCK_OFFSET_FILE_ENV, self.dir.path().join("clock-offset-ms"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning stowage");
        self.child = Some(child);
        // The daemon removes listen.addr at start and writes it once bound;
        // until then it may still name the port of the previous run, where
        // nothing (or another daemon, refusing our token) answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let data = self.data_dir();
            let read = |name: &str| std::fs::read_to_string(data.join(name)).ok();
            let token = read(stowage::auth::ADMIN_TOKEN_FILE);
            let bound = read(stowage::api::LISTEN_ADDR_FILE).and_then(|a| a.trim().parse::<SocketAddr>().ok());
            if let (Some(t), Some(bound)) = (token, bound) {
                let addr = match self.https {
                    true => format!("https://localhost:{}", bound.port()),
                    false => format!("http://{bound}"),
                };
                // Bounded: a stale port may belong to anything by now.
                let up = tokio::time::timeout(Duration::from_secs(5), async {
                    let c = Client::connect_with(&addr, Some(t.trim()), &self.tls).await.ok()?;
                    // An authenticated call that reads nothing: stats would
                    // fail on a store whose damage a test is about to probe.
                    c.find_missing("harness", Vec::new()).await.ok()
                });
                if let Ok(Some(_)) = up.await {
                    self.addr = addr;
                    // Written before listen.addr, if the config has metrics.
                    self.metrics = read(stowage::api::METRICS_ADDR_FILE).map(|a| a.trim().to_string());
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "daemon did not come up: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /metrics` (the config needs `metrics_listen`): (status line,
    /// content type, body).
    pub async fn scrape(&self) -> (String, String, String) {
        scrape(self.metrics.as_deref().expect("no metrics_listen in the config")).await
    }

    /// Waits until every record written so far is in a pack the index
    /// lists as sealed (the open pack is empty). The report's day snapshot
    /// counts sealed packs only, the summary every pack holding records:
    /// they agree once nothing waits to be sealed. No GC may run meanwhile
    /// (it deletes packs).
    pub async fn wait_sealed(&self) {
        let c = self.client().await;
        eventually(Duration::from_secs(30), "every pack sealed", || {
            let mut report = c.report.clone();
            async move {
                let r = report.capacity(pb::CapacityRequest::default()).await;
                let r = r.map_err(|e| format!("{e:?}"))?.into_inner();
                let all = r.summary.as_ref().map(|s| s.pack_bytes);
                let sealed = r.days.last().map(|d| d.pack_bytes);
                match all == sealed {
                    true => Ok(()),
                    false => Err(format!("pack bytes {all:?}, sealed {sealed:?}")),
                }
            }
        })
        .await
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The daemon's resident set size in bytes (VmRSS in /proc), if running.
    pub fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The local admin token the daemon created in its data dir.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join(stowage::auth::ADMIN_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A client with the admin token.
    pub async fn client(&self) -> Client {
        self.client_with(Some(&self.admin_token())).await
    }

    /// A client with another token (or none).
    pub async fn client_with(&self, token: Option<&str>) -> Client {
        Client::connect_with(&self.addr, token, &self.tls).await.unwrap()
    }

    /// SIGTERM, then wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Moves the daemon's clock forward (the injectable test clock).
    pub fn advance_clock(&self, by: Duration) {
        let path = self.dir.path().join("clock-offset-ms");
        let now: i64 = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        std::fs::write(&path, (now + by.as_millis() as i64).to_string()).unwrap();
    }

    /// Runs a CLI command against this daemon.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("STOWAGE_ADDR", &self.addr)
            .env("STOWAGE_DATA_DIR", self.data_dir());
        let t = &self.tls;
        for (var, path) in [
            ("STOWAGE_TLS_CA", &t.ca),
            ("STOWAGE_TLS_CERT", &t.cert),
            ("STOWAGE_TLS_KEY", &t.key),
        ] {
            if let Some(p) = path {
                cmd.env(var, p);
            }
        }
        cmd.output().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `stowage serve` with `extra` appended to a fresh config, expecting
/// it to refuse to start; returns what it said on stderr.
pub fn refused_start(extra: &str) -> String {
    refused_start_with(extra, |_| {})
}

/// As [`refused_start`], after `prepare` has put files in the data dir.
pub fn refused_start_with(extra: &str, prepare: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    prepare(&dir.path().join("data"));
    let config = dir.path().join("stowage.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n{extra}\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the daemon started with {extra}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `GET /metrics` from `addr` over plain HTTP/1.1: (status line, content
/// type, body).
pub async fn scrape(addr: &str) -> (String, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The value of the sample whose name and labels are exactly `series`.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

/// Stores `data` in `ns`; returns its BLAKE3.
pub async fn put(c: &Client, ns: &str, data: Bytes) -> String {
    c.put_bytes(stowage::api::client::header(ns), data)
        .await
        .unwrap()
        .digests
        .unwrap()
        .blake3
}

/// Incompressible bytes from a seed.
pub fn random_bytes(seed: u64, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v.into()
}

/// Text-like, compressible bytes from a seed.
pub fn text_bytes(seed: u64, len: usize) -> Bytes {
    const WORDS: &[&str] = &[
        "package",
        "version",
        "dependency",
        "lodash",
        "1.2.3",
        "{",
        "}",
        "\n",
        "export",
        "function",
    ];
    let mut r = StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        v.extend_from_slice(WORDS[r.random_range(0..WORDS.len())].as_bytes());
        v.push(b' ');
    }
    v.truncate(len);
    v.into()
}

pub fn b3(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Files in `dir` ending in `.pack`.
pub fn pack_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "pack"));
    v.sort();
    v
}

/// Everything a client can ask about these (namespace, blake3) blobs, as
/// lines to compare before and after a restart or a rebuild.
pub async fn answers(c: &Client, blobs: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (ns, h) in blobs {
        let s = c.stat(ns, h).await.unwrap();
        let data = c.get_bytes(ns, h, 0, None).await.unwrap();
        out.push(format!(
            "{ns} {h} {:?} {} {} {} {}",
            s.digests,
            s.size,
            s.created_unix_ms,
            s.chunks,
            b3(&data)
        ));
    }
    for ns in ["a", "b", "nobody"] {
        let all = blobs.iter().map(|(_, h)| h.clone()).collect();
        out.push(format!("{ns} missing {:?}", c.find_missing(ns, all).await.unwrap()));
    }
    let s = c.stats().await.unwrap();
    out.push(format!(
        "stats logical {} unique {} physical {} chunks {} blobs {} references {} packs {}",
        s.logical_bytes, s.unique_bytes, s.physical_bytes, s.chunks, s.blobs, s.references, s.packs
    ));
    out
}

/// A Get of the whole blob ends in DATA_LOSS, and every byte sent before is right.
pub async fn expect_data_loss(c: &Client, ns: &str, h: &str, data: &[u8], what: &str) {
    let mut got = Vec::new();
    let req = stowage::api::pb::GetRequest {
        namespace: ns.into(),
        blake3: h.into(),
        offset: 0,
        length: None,
    };
    let e = c
        .get_to(req, |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), stowage::api::client::Code::DataLoss, "{what}: {e:?}");
    assert!(
        data.starts_with(&got),
        "{what}: bytes sent before the error must be right"
    );
}

/// A capacity report recomputed from the catalog must find the counters
/// exact (the caller needs the admin scope over every namespace).
pub async fn assert_no_report_drift(c: &Client) {
    let req = pb::CapacityRequest {
        recompute: true,
        ..Default::default()
    };
    let r = c.report.clone().capacity(req).await.unwrap().into_inner();
    assert!(r.drift.is_empty(), "{:#?}", r.drift);
}

/// The summary of a retention plan of `policy` in `ns`.
pub async fn plan_summary(c: &Client, policy: &str, ns: &str) -> pb::PlanSummary {
    let req = pb::PlanRequest {
        policy: policy.into(),
        namespace: ns.into(),
    };
    let mut plan = c.retention.clone().plan(req).await.unwrap().into_inner();
    let mut summary = None;
    while let Some(m) = plan.message().await.unwrap() {
        summary = m.summary.or(summary);
    }
    summary.expect("a plan ends with its summary")
}
