//! Command line: `serve` and offline admin run here; client commands talk
//! gRPC to `--addr`.

mod catalog;
mod check;
mod client;
mod errors;
mod html;
mod namespaces;
mod optimize;
mod output;
mod report;
mod report_json;
mod retention;
mod settings;
mod space;

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::api::client::{Client, Status};
use crate::config::Config;

pub use errors::error_line;

#[derive(Parser)]
#[command(name = "stowage", version, about = "Deduplicated storage for package registries")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon (defaults: ./stowage-data, 127.0.0.1:7420).
    Serve(ServeArgs),
    /// Store, read and inspect blobs.
    #[command(subcommand)]
    Blob(BlobCmd),
    /// Publish files into a package version (created on first use); prints one JSON line per file.
    Publish(PublishArgs),
    /// List, show, delete and restore packages.
    #[command(subcommand)]
    Packages(PackagesCmd),
    /// List, show, delete and restore versions of a package.
    #[command(subcommand)]
    Versions(VersionsCmd),
    /// List, delete, restore and download files of a version.
    #[command(subcommand)]
    Files(FilesCmd),
    /// The namespaces that hold something.
    #[command(subcommand)]
    Namespaces(namespaces::NamespacesCmd),
    /// Whether a namespace accepts a second file of the same name in a version.
    #[command(subcommand)]
    DuplicatePolicy(PolicyCmd),
    /// The trail of catalog changes.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Access tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Cleanup policies: set, show, plan (dry run), sweep.
    #[command(subcommand)]
    Retention(retention::RetentionCmd),
    /// Where the storage goes: capacity per namespace, project, package or type.
    Report(report::ReportArgs),
    /// Store zip, gzip and tar packages by their expanded contents now
    /// (what the background optimizer does), with a progress bar.
    Optimize {
        #[command(flatten)]
        conn: Conn,
        /// Say what a pass would do now; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Collect unused chunks past their grace period and compact packs.
    Gc {
        #[command(flatten)]
        conn: Conn,
        /// Say what a run would do now; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Print a new random token and the `[[tokens]]` entry (its hash) to add
    /// to the daemon's config. The token itself is shown only here.
    Create {
        /// Names the token in audit events and errors.
        #[arg(long)]
        id: String,
        /// read, write, delete, admin (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Namespaces it may use: names, `group/*`, or `*` (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        namespaces: Vec<String>,
    },
}

fn token_create(id: String, scopes: Vec<String>, namespaces: Vec<String>) -> anyhow::Result<()> {
    let scopes = scopes
        .iter()
        .map(|s| crate::auth::Scope::parse(s))
        .collect::<crate::Result<_>>()?;
    let (token, hash) = crate::auth::generate();
    #[derive(serde::Serialize)]
    struct Snippet {
        tokens: Vec<crate::auth::TokenEntry>,
    }
    let entry = crate::auth::TokenEntry {
        id,
        hash,
        scopes,
        namespaces,
    };
    let snippet = toml::to_string(&Snippet { tokens: vec![entry] })?;
    output::emit(|w| {
        write!(
            w,
            "# token (shown once; the daemon keeps only its hash):\n# {token}\n{snippet}"
        )
    })
}

/// The daemon's config: defaults, then the `--config` file, then
/// environment variables, then flags (one per config field, see
/// [`settings`]).
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// TOML config file (every field optional; see README).
    #[arg(long, env = "STOWAGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub set: settings::Overrides,
}

impl ServerArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        settings::load(self.config.as_deref(), &self.set)
    }
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the effective configuration (TOML: every field, from defaults,
    /// the config file, environment and flags) and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Args, Clone)]
pub struct Conn {
    /// Daemon address: `http://host:port`, `https://host:port`, or
    /// `host:port` (plain HTTP).
    #[arg(long, env = "STOWAGE_ADDR", default_value = "http://127.0.0.1:7420", global = true)]
    pub addr: String,
    /// Access token. Default: the local admin token in `<data-dir>/admin.token`.
    #[arg(long, env = "STOWAGE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Data folder of a local daemon, where its admin token is read from.
    #[arg(
        long = "token-data-dir",
        env = "STOWAGE_DATA_DIR",
        default_value = "./stowage-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// CA certificate (PEM) that signs the daemon's certificate, for an
    /// https:// address. Default: the system's roots.
    #[arg(long = "tls-ca", env = "STOWAGE_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a daemon that requires one (mTLS).
    #[arg(long = "tls-cert", env = "STOWAGE_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "tls-key", env = "STOWAGE_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Server name to verify, when it differs from the address's host.
    #[arg(long = "tls-domain", env = "STOWAGE_TLS_DOMAIN", global = true)]
    pub tls_domain: Option<String>,
}

impl Conn {
    pub fn tls(&self) -> crate::api::client::TlsFiles {
        crate::api::client::TlsFiles {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            domain: self.tls_domain.clone(),
        }
    }

    /// The address as a URL: `host:port` means `http://host:port`.
    pub fn url(&self) -> String {
        match self.addr.contains("://") {
            true => self.addr.clone(),
            false => format!("http://{}", self.addr),
        }
    }

    /// `--token`, else the local daemon's admin token if the daemon is on
    /// this machine: the store-wide token never goes to a remote address on
    /// its own. Every stowage service needs a token, so finding none is an
    /// error that says where the CLI looked and how to point it elsewhere.
    pub fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        if !is_loopback(&self.addr) {
            anyhow::bail!(
                "no token for {}: pass --token or set STOWAGE_TOKEN (the local admin token is sent only \
                 to a daemon on this machine)",
                self.addr
            );
        }
        let path = std::path::absolute(self.data_dir.join(crate::auth::ADMIN_TOKEN_FILE))?;
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "no token: {} does not exist; point --token-data-dir (or STOWAGE_DATA_DIR) at the \
                 daemon's data dir, or pass --token (or STOWAGE_TOKEN)",
                path.display()
            ),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }
}

/// A client for `--addr`, with the token `conn` finds.
async fn connect(conn: &Conn) -> anyhow::Result<Client> {
    let token = conn.token()?;
    Client::connect_with(&conn.url(), Some(&token), &conn.tls())
        .await
        .with_context(|| format!("cannot connect to {}", conn.addr))
}

/// `Code: message`, on one line even when the message has several, and
/// the code said once.
fn fail(s: Status) -> anyhow::Error {
    anyhow::anyhow!(errors::status_line(&s))
}

/// True for an address on this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(addr: &str) -> bool {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.split([':', '/']).next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Subcommand)]
pub enum BlobCmd {
    /// Upload files; prints one JSON line per file.
    Put {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, short, default_value = "default")]
        namespace: String,
        /// Extra digests to compute: sha1, sha512, md5 (comma-separated).
        #[arg(long, value_delimiter = ',')]
        digests: Vec<String>,
        /// Reject the upload unless its SHA-256 is this (hex).
        #[arg(long)]
        expected_sha256: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Download a blob (or a byte range) to a file or stdout.
    Get {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, short, default_value = "default")]
        namespace: String,
        blake3: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long)]
        length: Option<u64>,
    },
    /// Print a blob's size, digests and creation time as JSON.
    Stat {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, short, default_value = "default")]
        namespace: String,
        blake3: String,
    },
    /// Print which of the given blobs the namespace lacks, one per line.
    FindMissing {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, short, default_value = "default")]
        namespace: String,
        #[arg(required = true)]
        blake3: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Store-wide figures, and every byte of the store in a named bucket
    /// beside the data dir's measured size (walks the catalog).
    Stats {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Recount every reference and catalog aggregate; fails if any stored count drifted
    /// or a pack is damaged.
    Check {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
        /// Also read every pack back and verify every record (CRC, BLAKE3,
        /// manifests, footer): reads every byte stored.
        #[arg(long)]
        read_data: bool,
    },
    /// Purge expired trash and ended upload leases now (with --now, the
    /// whole trash of a scope); says what still holds space, and until when.
    Purge {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: space::PurgeArgs,
    },
    /// Rebuild the index from the packs alone (daemon must be stopped).
    RebuildIndex(ServerArgs),
}

/// A package: namespace, project, type and name.
#[derive(Args, Clone)]
pub struct PackageArgs {
    /// Namespace (a group or user).
    #[arg(long, short)]
    pub namespace: String,
    /// Project in the namespace (segments joined by /).
    #[arg(long, short)]
    pub project: String,
    /// Package type: npm, maven, pypi, nuget, rubygems, cargo, conan, composer, helm, terraform, debian, container or generic.
    #[arg(long = "type", short, value_name = "TYPE")]
    pub ty: String,
    /// Package name.
    #[arg(long)]
    pub name: String,
}

/// A version of a package.
#[derive(Args, Clone)]
pub struct VersionArgs {
    #[command(flatten)]
    pub package: PackageArgs,
    #[arg(long)]
    pub version: String,
}

/// A file of a version, by the id `publish` printed.
#[derive(Args, Clone)]
pub struct FileArgs {
    #[command(flatten)]
    pub version: VersionArgs,
    /// File id, as `publish` and `files list` print it.
    #[arg(long)]
    pub file_id: u64,
}

/// A command on one catalog item (`T` says which), printing it afterwards.
#[derive(Args, Clone)]
pub struct On<T: Args> {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub target: T,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How much of a listing to fetch and how to print it.
#[derive(Args, Clone)]
pub struct Listing {
    /// Stop after this many items.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Items per request (1-1000; default 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: Option<u32>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Default)]
pub enum StateArg {
    #[default]
    Active,
    Deleted,
    All,
}

#[derive(ValueEnum, Clone, Copy, Default)]
pub enum SortArg {
    #[default]
    Name,
    Created,
    Size,
}

#[derive(Args, Clone)]
pub struct PublishArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub version: VersionArgs,
    /// File name in the version (default: the file's base name; one file only).
    #[arg(long)]
    pub file_name: Option<String>,
    /// Extra digests to compute: sha1, sha512, md5 (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub digests: Vec<String>,
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub enum PackagesCmd {
    /// Packages of a namespace, filtered and sorted.
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, short)]
        namespace: String,
        /// Only packages of this project.
        #[arg(long, short)]
        project: Option<String>,
        /// Only packages of this type.
        #[arg(long = "type", short, value_name = "TYPE")]
        ty: Option<String>,
        /// Only packages whose name contains this.
        #[arg(long)]
        name_contains: Option<String>,
        /// Active items, the trash, or both.
        #[arg(long, value_enum, default_value_t)]
        state: StateArg,
        #[arg(long, value_enum, default_value_t)]
        sort: SortArg,
        /// Sort in descending order.
        #[arg(long)]
        desc: bool,
        #[command(flatten)]
        listing: Listing,
    },
    /// One package with its counts.
    Show(On<PackageArgs>),
    /// Move a package, with all its versions, to the trash.
    Delete(On<PackageArgs>),
    /// Bring a package back from the trash.
    Restore(On<PackageArgs>),
}

#[derive(Subcommand)]
pub enum VersionsCmd {
    /// Versions of a package, newest first.
    List {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        package: PackageArgs,
        /// Active items, the trash, or both.
        #[arg(long, value_enum, default_value_t)]
        state: StateArg,
        #[command(flatten)]
        listing: Listing,
    },
    /// A version and all its files, deleted ones included.
    Show(On<VersionArgs>),
    /// Move a version to the trash.
    Delete(On<VersionArgs>),
    /// Bring a version back from the trash.
    Restore(On<VersionArgs>),
}

#[derive(Subcommand)]
pub enum FilesCmd {
    /// Files of a version.
    List {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        version: VersionArgs,
        /// Active items, the trash, or both.
        #[arg(long, value_enum, default_value_t)]
        state: StateArg,
        #[command(flatten)]
        listing: Listing,
    },
    /// Move a file to the trash.
    Delete(On<FileArgs>),
    /// Bring a file back from the trash.
    Restore(On<FileArgs>),
    /// Download a file to -o FILE or stdout, and count the download.
    Download(DownloadArgs),
}

#[derive(Args, Clone)]
pub struct DownloadArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub target: FileArgs,
    /// Write here (whole, or not at all) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// A namespace and package type.
#[derive(Args, Clone)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[arg(long, short)]
    pub namespace: String,
    /// Package type (npm, maven, pypi, ...).
    #[arg(long = "type", short, value_name = "TYPE")]
    pub ty: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Allow duplicate file names, or deny them except for names matching a regex.
    #[command(group(ArgGroup::new("policy").required(true).args(["allow", "deny"])))]
    Set {
        #[command(flatten)]
        at: PolicyArgs,
        /// Accept a second active file of the same name in a version.
        #[arg(long)]
        allow: bool,
        /// Reject it with ALREADY_EXISTS.
        #[arg(long)]
        deny: bool,
        /// With --deny: file names (full match) still allowed to repeat.
        #[arg(long, conflicts_with = "allow", value_name = "REGEX")]
        exception: Option<String>,
    },
    /// The policy in force (duplicates are allowed unless set otherwise).
    Show {
        #[command(flatten)]
        at: PolicyArgs,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Events, newest first, matching every filter given.
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, short)]
        namespace: Option<String>,
        #[arg(long, short)]
        project: Option<String>,
        /// Package name.
        #[arg(long)]
        name: Option<String>,
        /// publish, delete, restore, purge, set-policy (duplicates),
        /// set-retention-policy or delete-retention-policy.
        #[arg(long)]
        action: Option<String>,
        /// A token id, local-admin, trash-purge or retention-policy.
        #[arg(long)]
        actor: Option<String>,
        /// Only events at or after this time: an age (`90s`, `1h`, `7d`), an
        /// RFC 3339 time (`2026-05-01T00:00:00Z`) or Unix ms.
        #[arg(long, visible_alias = "since-ms", value_name = "TIME", value_parser = catalog::time_arg)]
        since: Option<i64>,
        /// Only events at or before this time (as --since).
        #[arg(long, visible_alias = "until-ms", value_name = "TIME", value_parser = catalog::time_arg)]
        until: Option<i64>,
        #[command(flatten)]
        listing: Listing,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve(args) if args.print_config => {
            let text = settings::effective(args.server.config.as_deref(), &args.server.set)?;
            output::emit(|w| write!(w, "{text}"))
        }
        Cmd::Serve(args) => serve(args.server.load()?).await,
        Cmd::Blob(cmd) => client::blob(cmd).await,
        Cmd::Publish(args) => catalog::publish(args).await,
        Cmd::Packages(cmd) => catalog::packages(cmd).await,
        Cmd::Versions(cmd) => catalog::versions(cmd).await,
        Cmd::Files(cmd) => catalog::files(cmd).await,
        Cmd::Namespaces(cmd) => namespaces::run(cmd).await,
        Cmd::DuplicatePolicy(cmd) => catalog::policy(cmd).await,
        Cmd::Audit(cmd) => catalog::audit(cmd).await,
        Cmd::Token(TokenCmd::Create { id, scopes, namespaces }) => token_create(id, scopes, namespaces),
        Cmd::Retention(cmd) => retention::run(cmd).await,
        Cmd::Report(args) => report::run(args).await,
        Cmd::Gc { conn, dry_run, json } => space::gc(&conn, dry_run, json).await,
        Cmd::Optimize { conn, dry_run, json } => optimize::run(&conn, dry_run, json).await,
        Cmd::Admin(AdminCmd::Stats { conn, json }) => space::stats(&conn, json).await,
        Cmd::Admin(AdminCmd::Check { conn, json, read_data }) => catalog::check(&conn, json, read_data).await,
        Cmd::Admin(AdminCmd::Purge { conn, args }) => space::purge(&conn, args).await,
        Cmd::Admin(AdminCmd::RebuildIndex(args)) => {
            let cfg = args.load()?;
            let report = crate::rebuild::rebuild_index(&cfg).await.context("rebuild-index")?;
            let line = serde_json::to_string(&report)?;
            output::emit(|w| writeln!(w, "{line}"))
        }
    }
}

/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
/// Uploads cut off after it were never acknowledged, so nothing is lost.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Nothing is created on disk until the ports are ours and the data dir
    // is free: a refused start leaves no trace.
    crate::dirlock::DirLock::check_free(&cfg.data_dir)?;
    let listeners = crate::api::bind(&cfg).await?;
    let engine = crate::engine::Engine::open(cfg).await?;
    let served = serve_until_stopped(&engine, listeners).await;
    // On every path, even a failed one: a process that exits while RocksDB's
    // background threads still run can abort in its teardown (`pthread
    // lock: Invalid argument`).
    engine.close(std::time::Duration::from_secs(1)).await;
    served
}

async fn serve_until_stopped(
    engine: &std::sync::Arc<crate::engine::Engine>,
    listeners: crate::api::Listeners,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(crate::api::serve(engine.clone(), listeners, async {
        let _ = stop_rx.await;
    }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = &mut server => return Ok(r??),
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    match tokio::time::timeout(DRAIN, &mut server).await {
        Ok(r) => r??,
        Err(_) => tracing::warn!("requests still running after {DRAIN:?}; exiting anyway"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_addresses_get_the_local_admin_token() {
        for a in [
            "http://127.0.0.1:7420",
            "https://localhost:7420",
            "http://[::1]:7420",
            "127.0.0.2:1",
        ] {
            assert!(super::is_loopback(a), "{a}");
        }
        for a in [
            "http://10.0.0.1:7420",
            "https://stowage.internal:7420",
            "http://[2001:db8::1]:7420",
        ] {
            assert!(!super::is_loopback(a), "{a}");
        }
    }
}
