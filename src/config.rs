//! Daemon configuration: TOML file (`--config`), then flags override it.
//!
//! Every field has a default, so `stowage serve` runs with no config at all.
//! Sizes read like "64MiB", durations like "15m".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::chunker::ChunkParams;
use crate::error::{Error, Result};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the index (RocksDB) and pack staging live. Default: "./stowage-data".
    pub data_dir: PathBuf,
    /// gRPC listen address. Default: "127.0.0.1:7420". With port 0 the
    /// kernel picks one; the bound address is written to
    /// `<data_dir>/listen.addr` (`crate::api::LISTEN_ADDR_FILE`). A host
    /// name (`localhost:7430`) is resolved at start (IPv4 first).
    #[serde(deserialize_with = "resolve::addr")]
    pub listen: SocketAddr,
    /// Where sealed packs go, as an object_store URL: `file:///abs/dir`,
    /// `s3://bucket/prefix`, `gs://…`, `az://…`, `memory://`.
    /// Default: "file://<data_dir>" (packs land in `<data_dir>/packs/`).
    pub pack_store: Option<String>,
    /// Options for the pack store (object_store config keys, e.g.
    /// `aws_endpoint`, `aws_region`, `aws_allow_http`, `aws_access_key_id`).
    /// For `s3://`, `AWS_*` environment variables are read too. Default: empty.
    pub pack_store_options: BTreeMap<String, String>,
    pub chunking: Chunking,
    /// zstd level for chunk data, 1..=19. A chunk that does not shrink is stored raw. Default: 3.
    pub zstd_level: i32,
    /// A pack is sealed and uploaded once it reaches this size. Default: "64MiB".
    pub pack_target_size: ByteSize,
    /// A non-empty open pack is sealed once it is this old, so data does not
    /// wait for a full pack to reach the pack store. Default: "15m".
    #[serde(with = "humantime_serde")]
    pub pack_max_age: Duration,
    /// Largest blob a Put accepts. Default: "16GiB".
    pub max_blob_size: ByteSize,
    /// RocksDB block cache, shared by every column family: data blocks and
    /// filter/index partitions. Default: "256MiB".
    pub index_cache_size: ByteSize,
    /// Tokens the daemon accepts (besides the local admin token it keeps in
    /// `<data_dir>/admin.token`). `stowage token create` prints entries.
    /// Default: none.
    pub tokens: Vec<crate::auth::TokenEntry>,
    /// An upload stream that sends nothing for this long is ended
    /// (DEADLINE_EXCEEDED) and whatever it held is freed. Default: "60s".
    #[serde(with = "humantime_serde")]
    pub upload_idle_timeout: Duration,
    /// Slowest average an upload may keep, in bytes per second of the time
    /// the daemon waits for its next message (time the daemon itself takes
    /// does not count), once it has waited `upload_rate_grace`; slower is
    /// ended with DEADLINE_EXCEEDED. "0B" turns it off. Default: "16KiB".
    pub upload_min_rate: ByteSize,
    /// Waiting on an upload's client before `upload_min_rate` applies.
    /// Default: "30s".
    #[serde(with = "humantime_serde")]
    pub upload_rate_grace: Duration,
    /// Uploads (Put and PublishFile streams) served at once; one more is
    /// refused with RESOURCE_EXHAUSTED rather than queued. Default: 256.
    pub max_concurrent_uploads: usize,
    /// Uploads one token may have in progress; one more is refused with
    /// RESOURCE_EXHAUSTED. Default: 64.
    pub max_uploads_per_token: usize,
    /// Where Prometheus scrapes `GET /metrics` (plain HTTP). Default: none
    /// (no metrics listener). The bound address is written to
    /// `<data_dir>/metrics.addr` (`crate::api::METRICS_ADDR_FILE`). A host
    /// name is resolved as for `listen`.
    #[serde(deserialize_with = "resolve::some_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// TLS for the gRPC listener. Default: none (plain HTTP/2, for loopback).
    pub tls: Option<Tls>,
    /// Hard quotas: namespace -> the most bytes it may hold (the sizes of
    /// the distinct blobs it stored and still references). An upload that
    /// would exceed it fails with RESOURCE_EXHAUSTED and keeps nothing.
    /// Default: none.
    pub quotas: BTreeMap<String, ByteSize>,
    /// How long a deleted package, version or file stays restorable in the
    /// trash before a purge removes it for good. Default: "30days".
    #[serde(with = "humantime_serde")]
    pub trash_window: Duration,
    /// How long an uploaded blob no file references is kept, so a frontend
    /// can upload first and publish after. Renewed by each upload; ended by
    /// the first file that uses the blob. A streamed publish's upload holds
    /// at least 10 minutes, so no purge comes between its put and its
    /// publish. Default: "24h".
    #[serde(with = "humantime_serde")]
    pub upload_lease: Duration,
    /// How often the daemon purges expired trash and ended leases. Default: "10m".
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
    pub gc: Gc,
    pub retention: Retention,
    pub scrub: Scrub,
    pub optimize: Optimize,
}

/// The package-aware optimizer (`engine::optimize`, `crate::expand`):
/// stored zip, gzip and tar blobs become recipes over their expanded
/// contents, in the background.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Optimize {
    /// Whether the background optimizer runs (`stowage optimize` works
    /// either way). Default: true.
    pub enabled: bool,
    /// After a pass found nothing more to do, the next starts this much
    /// later. Default: "10m".
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The background optimizer rests this many times as long as each blob
    /// took (0: no rest), so it leaves most of the cores to requests.
    /// Default: 2.
    pub tranquility: u32,
    /// Blobs larger than this stay raw. Default: "256MiB".
    pub max_blob: ByteSize,
    /// Expanded bytes of one blob, all nesting levels. Default: "512MiB".
    pub max_expanded: ByteSize,
    /// Expanded bytes per compressed byte of one stream. Default: 200.
    pub max_ratio: u32,
    /// Containers inside containers. Default: 4.
    pub max_depth: u8,
    /// Members of one blob. Default: 100000.
    pub max_members: u32,
    /// Time spent expanding one blob; past it the rest stays as it is.
    /// Default: "60s".
    #[serde(with = "humantime_serde")]
    pub time_per_blob: Duration,
    /// zstd level of the expanded chunks (decompression speed barely
    /// depends on it; the optimizer's does: on the dev corpus level 9
    /// stores 0.361 of raw in 61 s, 14 stores 0.345 in 102 s). Default: 14.
    pub zstd_level: i32,
    /// A recipe is stored only if it saves at least this fraction, either
    /// of the stored bytes the switch releases now, or of the raw blob's
    /// stored bytes when both are counted on their own (the raw chunks a
    /// blob shares with its package's other raw versions are freed once
    /// those switch too). Negative: it may cost that much more, because
    /// the next versions dedup against its expanded contents (the first
    /// version of a package rarely saves on its own). Default: -0.1.
    pub min_saving: f64,
    /// Recreated blobs kept in memory, for hot reads (each at most an
    /// eighth of it). Default: "256MiB".
    pub cache_size: ByteSize,
    /// Longest chain of deltas: a new chunk of an expanded blob whose sketch
    /// finds a similar stored chunk is stored as a zstd delta on it when
    /// that is clearly smaller, unless the chain would get longer than
    /// this; a read decodes at most this many steps. 0: no deltas; at most
    /// 8. Default: 4.
    pub delta_depth: u8,
}

impl Default for Optimize {
    fn default() -> Self {
        Optimize {
            enabled: true,
            interval: Duration::from_secs(600),
            tranquility: 2,
            max_blob: ByteSize::mib(256),
            max_expanded: ByteSize::mib(512),
            max_ratio: 200,
            max_depth: 4,
            max_members: 100_000,
            time_per_blob: Duration::from_secs(60),
            zstd_level: 14,
            min_saving: -0.1,
            cache_size: ByteSize::mib(256),
            delta_depth: 4,
        }
    }
}

impl Optimize {
    /// The expansion budget of one blob.
    pub fn budget(&self) -> crate::expand::Budget {
        crate::expand::Budget {
            max_plain: self.max_expanded.as_u64().min(usize::MAX as u64) as usize,
            max_ratio: self.max_ratio as usize,
            depth: self.max_depth,
            max_members: self.max_members as usize,
            time: self.time_per_blob,
        }
    }
}

/// The background scrubber (see `crate::scrub`): reads every pack back and
/// verifies every record, so damage is found before a read hits it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scrub {
    /// Default: true.
    pub enabled: bool,
    /// A full pass starts this long after the previous one started (or
    /// right after it, if it took longer); the first starts 10 minutes
    /// after the daemon (or `interval`, if shorter). Default: "7days".
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bytes read per second at most. Default: "8MiB" (about 4.8 TB a week).
    pub rate: ByteSize,
}

impl Default for Scrub {
    fn default() -> Self {
        Scrub {
            enabled: true,
            interval: Duration::from_secs(7 * 24 * 3600),
            rate: ByteSize::mib(8),
        }
    }
}

/// Garbage collection and pack compaction (see `crate::gc`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gc {
    /// How often the daemon collects and compacts; "0s" turns the schedule
    /// off (`stowage gc` still runs it). Default: "1h".
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a chunk no blob uses stays condemned (readable, revivable)
    /// before it is collected. Default: "1h".
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// A sealed pack whose dead bytes reach this fraction of its size is
    /// compacted. Default: 0.1.
    pub compact_threshold: f64,
    /// Live bytes one run copies at most. Default: "4GiB".
    pub max_repack_bytes: ByteSize,
    /// A compacted pack is deleted from the store this long after the
    /// index stopped pointing into it, so reads already under way finish.
    /// Default: "5m".
    #[serde(with = "humantime_serde")]
    pub pack_delete_delay: Duration,
}

impl Default for Gc {
    fn default() -> Self {
        Gc {
            interval: Duration::from_secs(3600),
            grace: Duration::from_secs(3600),
            compact_threshold: 0.1,
            max_repack_bytes: ByteSize::gib(4),
            pack_delete_delay: Duration::from_secs(300),
        }
    }
}

/// Retention sweeps (see `crate::retention`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// How often the daemon sweeps every policy; "0s" turns the schedule
    /// off (`stowage retention sweep` still runs one). Default: "24h".
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Catalog deletions a sweep makes per second at most, so foreground
    /// requests keep their latency. Default: 2000.
    pub sweep_rate: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            sweep_interval: Duration::from_secs(24 * 3600),
            sweep_rate: 2000,
        }
    }
}

/// TLS settings: PEM files, read at start.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// CA certificates that sign client certificates. When set, clients
    /// must present a certificate it signed (mTLS), unless
    /// `client_auth_optional`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: accept clients without a certificate too (a
    /// certificate that is presented must still verify). Default: false.
    #[serde(default)]
    pub client_auth_optional: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chunking {
    /// Smallest chunk (except the last of a blob). Default: "16KiB".
    pub min_size: ByteSize,
    /// Target average chunk. Default: "64KiB".
    pub avg_size: ByteSize,
    /// Largest chunk. Default: "256KiB".
    pub max_size: ByteSize,
}

impl Default for Chunking {
    fn default() -> Self {
        let p = ChunkParams::default();
        Chunking {
            min_size: ByteSize::b(p.min_size as u64),
            avg_size: ByteSize::b(p.avg_size as u64),
            max_size: ByteSize::b(p.max_size as u64),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./stowage-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            pack_store: None,
            pack_store_options: BTreeMap::new(),
            chunking: Chunking::default(),
            zstd_level: 3,
            pack_target_size: ByteSize::mib(64),
            pack_max_age: Duration::from_secs(15 * 60),
            max_blob_size: ByteSize::gib(16),
            index_cache_size: ByteSize::mib(256),
            tokens: Vec::new(),
            quotas: BTreeMap::new(),
            max_concurrent_uploads: 256,
            max_uploads_per_token: 64,
            tls: None,
            metrics_listen: None,
            upload_idle_timeout: Duration::from_secs(60),
            upload_min_rate: ByteSize::kib(16),
            upload_rate_grace: Duration::from_secs(30),
            trash_window: Duration::from_secs(30 * 24 * 3600),
            upload_lease: Duration::from_secs(24 * 3600),
            purge_interval: Duration::from_secs(600),
            gc: Gc::default(),
            retention: Retention::default(),
            scrub: Scrub::default(),
            optimize: Optimize::default(),
        }
    }
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read config {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::invalid(format!("config {}: {e}", path.display())))
    }

    /// The config file as a TOML table, before defaults (empty without a
    /// file): flags and environment variables are applied to it.
    pub fn load_table(path: Option<&Path>) -> Result<toml::Table> {
        let Some(path) = path else {
            return Ok(toml::Table::new());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read config {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::invalid(format!("config {}: {e}", path.display())))
    }

    /// A config from a TOML table; missing fields take their defaults.
    pub fn from_table(t: toml::Table) -> Result<Self> {
        t.try_into()
            .map_err(|e: toml::de::Error| Error::invalid(format!("config: {}", e.message())))
    }

    pub fn chunk_params(&self) -> Result<ChunkParams> {
        let to_u32 = |b: ByteSize, what: &str| {
            u32::try_from(b.as_u64()).map_err(|_| Error::invalid(format!("chunking.{what} is too large")))
        };
        let p = ChunkParams {
            min_size: to_u32(self.chunking.min_size, "min_size")?,
            avg_size: to_u32(self.chunking.avg_size, "avg_size")?,
            max_size: to_u32(self.chunking.max_size, "max_size")?,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks every field, so the daemon refuses a bad config at start.
    pub fn validate(&self) -> Result<()> {
        self.chunk_params()?;
        if !(1..=19).contains(&self.zstd_level) {
            return Err(Error::invalid("zstd_level must be between 1 and 19"));
        }
        if self.max_concurrent_uploads == 0 {
            return Err(Error::invalid("max_concurrent_uploads must be at least 1"));
        }
        if self.max_uploads_per_token == 0 {
            return Err(Error::invalid("max_uploads_per_token must be at least 1"));
        }
        if self.upload_idle_timeout < Duration::from_millis(10) {
            return Err(Error::invalid("upload_idle_timeout must be at least 10ms"));
        }
        if let Some(t) = &self.tls
            && t.client_auth_optional
            && t.client_ca.is_none()
        {
            return Err(Error::invalid("tls.client_auth_optional needs tls.client_ca"));
        }
        if !(0.0..=1.0).contains(&self.gc.compact_threshold) {
            return Err(Error::invalid("gc.compact_threshold must be between 0 and 1"));
        }
        if self.retention.sweep_rate == 0 {
            return Err(Error::invalid("retention.sweep_rate must be at least 1"));
        }
        if self.scrub.interval < Duration::from_millis(100) {
            return Err(Error::invalid("scrub.interval must be at least 100ms"));
        }
        if self.scrub.rate.as_u64() < 4096 {
            return Err(Error::invalid("scrub.rate must be at least 4KiB (bytes per second)"));
        }
        let o = &self.optimize;
        if !(1..=22).contains(&o.zstd_level) {
            return Err(Error::invalid("optimize.zstd_level must be between 1 and 22"));
        }
        if o.delta_depth > crate::pack::format::MAX_DELTA_DEPTH {
            return Err(Error::invalid(format!(
                "optimize.delta_depth must be at most {}",
                crate::pack::format::MAX_DELTA_DEPTH
            )));
        }
        if !(-1.0..1.0).contains(&o.min_saving) {
            return Err(Error::invalid("optimize.min_saving must be at least -1 and below 1"));
        }
        if o.interval < Duration::from_millis(100) {
            return Err(Error::invalid("optimize.interval must be at least 100ms"));
        }
        if o.max_depth == 0 || o.max_depth > 8 {
            return Err(Error::invalid("optimize.max_depth must be between 1 and 8"));
        }
        if self.purge_interval < Duration::from_millis(100) {
            return Err(Error::invalid("purge_interval must be at least 100ms"));
        }
        if self.pack_target_size.as_u64() < 64 * 1024 || self.pack_target_size.as_u64() > 4 << 30 {
            return Err(Error::invalid("pack_target_size must be between 64KiB and 4GiB"));
        }
        Ok(())
    }

    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.data_dir.join("staging")
    }

    /// The pack store URL, defaulting to a folder in the data dir.
    pub fn pack_store_url(&self) -> Result<String> {
        if let Some(u) = &self.pack_store {
            return Ok(u.clone());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let abs = std::fs::canonicalize(&self.data_dir)?;
        Ok(format!("file://{}", abs.display()))
    }
}

/// Listen addresses: `ip:port`, or `host:port` resolved now.
mod resolve {
    use std::net::{SocketAddr, ToSocketAddrs};

    use serde::{Deserialize, Deserializer, de::Error as _};

    pub fn resolve(s: &str) -> Result<SocketAddr, String> {
        if let Ok(a) = s.parse() {
            return Ok(a);
        }
        let all: Vec<SocketAddr> = s
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve listen address {s:?} (want host:port): {e}"))?
            .collect();
        all.iter()
            .find(|a| a.is_ipv4())
            .or(all.first())
            .copied()
            .ok_or_else(|| format!("{s:?} resolves to no address"))
    }

    pub fn addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        resolve(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub fn some_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| resolve(&s).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_may_name_a_host() {
        let c: Config = toml::from_str("listen = \"localhost:7430\"\nmetrics_listen = \"localhost:0\"\n").unwrap();
        assert!(c.listen.ip().is_loopback(), "{}", c.listen);
        assert_eq!(c.listen.port(), 7430);
        assert!(c.metrics_listen.unwrap().ip().is_loopback());
        let c: Config = toml::from_str("listen = \"[::1]:9\"\n").unwrap();
        assert_eq!(c.listen, "[::1]:9".parse().unwrap());
        let e = toml::from_str::<Config>("listen = \"nohost.invalid:x\"\n").unwrap_err();
        assert!(e.to_string().contains("nohost.invalid"), "{e}");
    }

    #[test]
    fn parses_readable_sizes_and_durations() {
        let c: Config = toml::from_str(
            "zstd_level = 5\npack_target_size = \"8MiB\"\npack_max_age = \"30s\"\n[chunking]\navg_size = \"32KiB\"\n",
        )
        .unwrap();
        assert_eq!(c.pack_target_size.as_u64(), 8 << 20);
        assert_eq!(c.pack_max_age, Duration::from_secs(30));
        assert_eq!(c.chunk_params().unwrap().avg_size, 32 << 10);
        c.validate().unwrap();
    }

    #[test]
    fn tokens_parse_from_toml() {
        let c: Config = toml::from_str(
            "[[tokens]]\nid = \"fe\"\nhash = \"sha256:00\"\nscopes = [\"read\", \"write\"]\nnamespaces = [\"acme/*\"]\n",
        )
        .unwrap();
        assert_eq!(c.tokens.len(), 1);
        assert!(
            toml::from_str::<Config>("[[tokens]]\nid = \"x\"\nhash = \"h\"\nscopes = [\"root\"]\nnamespaces = []\n")
                .is_err()
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        assert!(toml::from_str::<Config>("zstd_levle = 5").is_err());
        let c: Config = toml::from_str("zstd_level = 40").unwrap();
        assert!(c.validate().is_err());
    }
}
