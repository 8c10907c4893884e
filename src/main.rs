use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("STOWAGE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = stowage::cli::Cli::parse();
    if !matches!(cli.cmd, stowage::cli::Cmd::Serve(_)) {
        // A client command piped into `head` ends quietly when the pipe
        // closes, as Unix tools do, instead of panicking in `println!`.
        // The daemon keeps Rust's default (SIGPIPE ignored, EPIPE errors).
        // SAFETY: set before any thread writes to a pipe; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match stowage::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
