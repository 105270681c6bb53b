//! The `weir` binary: `weir serve` starts a server that Postgres clients
//! (psql, drivers, sqllogictest) connect to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weir_engine::{Engine, EngineConfig, StateLocation};
use weir_server::Server;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A streaming SQL engine you talk to with psql"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on for Postgres clients.
        #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:9347")]
        listen: SocketAddr,
        /// Directory for the catalog and data.
        #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-data")]
        data_dir: PathBuf,
        /// Connections open at once; past it, new ones are refused (53300).
        #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = weir_server::DEFAULT_MAX_CONNECTIONS as u64,
              value_parser = clap::value_parser!(u64).range(1..100_000))]
        max_connections: u64,
        /// How often a checkpoint is taken (`10s`, `1min`, `500ms`); `0`
        /// for only on `CHECKPOINT` and at shutdown.
        #[arg(long, env = "WEIR_CHECKPOINT_INTERVAL", default_value = "10s",
              value_parser = parse_interval)]
        checkpoint_interval: std::time::Duration,
        /// Where checkpoints go: `file:///dir` or `s3://bucket/prefix` (AWS
        /// settings such as AWS_ENDPOINT_URL, AWS_DEFAULT_REGION and the keys
        /// come from the environment). Default: the data directory.
        #[arg(long, env = "WEIR_STATE_URL", value_parser = parse_state_url)]
        state_url: Option<StateLocation>,
    },
}

fn parse_state_url(text: &str) -> Result<StateLocation, String> {
    text.parse()
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    weir_sql::parse_duration(text)
        .ok_or_else(|| format!("expected a duration such as '10s' or '1min', got '{text}'"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            max_connections,
            checkpoint_interval,
            state_url,
        } => {
            let mut config = EngineConfig::new(&data_dir);
            config.checkpoint_interval =
                (!checkpoint_interval.is_zero()).then_some(checkpoint_interval);
            config.state = state_url;
            runtime.block_on(serve(listen, config, max_connections as usize))
        }
    }
}

async fn serve(listen: SocketAddr, config: EngineConfig, max_connections: usize) -> ExitCode {
    let data_dir = config.data_dir.clone();
    let engine = match Engine::open(config).await {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!("cannot start: {}", e.message);
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind_with(engine.clone(), listen, max_connections).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr().unwrap_or(listen);
    let config = engine.config();
    tracing::info!(
        "weir {} listening on {addr}, data in {}, checkpoints in {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display(),
        config.state_location()
    );
    tracing::info!(
        "connect with: psql -h {} -p {} -U {} {}",
        addr.ip(),
        addr.port(),
        config.superuser,
        config.default_database
    );
    let code = tokio::select! {
        () = server.run() => ExitCode::SUCCESS,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            ExitCode::SUCCESS
        }
    };
    // A last checkpoint, so the next start replays nothing; then what was
    // logged reaches the disk, and writes still running fail.
    match engine.checkpoint().await {
        Ok(epoch) => tracing::info!(epoch, "final checkpoint committed"),
        Err(e) => tracing::warn!(error = %e.message, "final checkpoint failed"),
    }
    engine.close();
    code
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
