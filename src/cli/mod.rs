//! Command line: `serve` and offline admin run here; client commands talk
//! gRPC to `--addr`.

mod client;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "stowage", version, about = "Deduplicated storage for package registries")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon (defaults: ./stowage-data, 127.0.0.1:7420).
    Serve(ServerArgs),
    /// Store, read and inspect blobs.
    #[command(subcommand)]
    Blob(BlobCmd),
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCmd),
}

/// Where the daemon keeps its data; flags override the config file.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// TOML config file (every field optional; see README).
    #[arg(long, env = "STOWAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder (index and pack staging).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Pack store URL (file:///dir, s3://bucket/prefix, ...).
    #[arg(long)]
    pub pack_store: Option<String>,
}

impl ServerArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(p) = &self.pack_store {
            cfg.pack_store = Some(p.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Args, Clone)]
pub struct Conn {
    /// Daemon address.
    #[arg(long, env = "STOWAGE_ADDR", default_value = "http://127.0.0.1:7420", global = true)]
    pub addr: String,
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
    /// Store-wide figures as JSON.
    Stats {
        #[command(flatten)]
        conn: Conn,
    },
    /// Rebuild the index from the packs alone (daemon must be stopped).
    RebuildIndex(ServerArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve(args) => serve(args.load()?).await,
        Cmd::Blob(cmd) => client::blob(cmd).await,
        Cmd::Admin(AdminCmd::Stats { conn }) => client::stats(&conn).await,
        Cmd::Admin(AdminCmd::RebuildIndex(args)) => {
            let cfg = args.load()?;
            let report = crate::rebuild::rebuild_index(&cfg).await.context("rebuild-index")?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
/// Uploads cut off after it were never acknowledged, so nothing is lost.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let engine = crate::engine::Engine::open(cfg).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(crate::api::serve(engine.clone(), listen, async {
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
    engine.shutdown();
    Ok(())
}
