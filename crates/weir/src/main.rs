//! The `weir` binary: `weir serve` starts a server that Postgres clients
//! (psql, drivers, sqllogictest) connect to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weir_engine::{Engine, EngineConfig, StateLocation};
use weir_server::auth::{Tls, Users};
use weir_server::metrics::serve_metrics;
use weir_server::{Server, ServerOptions};

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
        /// The password of the superuser `weir` (better from the
        /// environment than on the command line, where `ps` shows it).
        /// With a password or a users file, clients must authenticate
        /// (SCRAM-SHA-256).
        #[arg(long, env = "WEIR_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// A file of users who may connect, one `name:password` per line.
        #[arg(long, env = "WEIR_USERS_FILE")]
        users_file: Option<PathBuf>,
        /// TLS certificate chain (PEM); clients may then use `sslmode=require`.
        #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The TLS certificate's private key (PEM).
        #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Memory one query's operators may use (`512MB`, `4GB`, `25%` of
        /// the machine's memory; `0` for no bound). Past it, sorts and
        /// aggregations spill to disk and what cannot spill fails (53200).
        #[arg(long, env = "WEIR_QUERY_MEMORY_LIMIT", default_value = "25%",
              value_parser = parse_memory_limit)]
        query_memory_limit: MemoryLimit,
        /// Address of the Prometheus metrics endpoint
        /// (`http://ADDR/metrics`); `off` for none. Default: 127.0.0.1:9348
        /// (if that port is taken, the server runs without metrics and says
        /// so). The endpoint asks for no password: beyond loopback only
        /// with `--insecure`.
        #[arg(long, env = "WEIR_METRICS_LISTEN", value_parser = parse_metrics_listen)]
        metrics_listen: Option<MetricsListen>,
        /// Listen on an address other clients can reach without any user
        /// configured: anyone who reaches the port gets in.
        #[arg(long, env = "WEIR_INSECURE")]
        insecure: bool,
    },
}

/// Where metrics are served unless `--metrics-listen` says otherwise.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9348";

/// `--metrics-listen`: an address, or none (`off`).
#[derive(Debug, Clone, Copy)]
struct MetricsListen(Option<SocketAddr>);

fn parse_metrics_listen(text: &str) -> Result<MetricsListen, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(MetricsListen(None));
    }
    text.parse::<SocketAddr>()
        .map(|addr| MetricsListen(Some(addr)))
        .map_err(|e| format!("expected an address such as 127.0.0.1:9348, or off: {e}"))
}

/// How clients are admitted, from the command line: users, TLS, and
/// whether the address may be reached from other machines without them.
struct Access {
    users: Option<Users>,
    tls: Option<Tls>,
}

impl Access {
    fn from_flags(
        listen: SocketAddr,
        superuser: &str,
        password: Option<String>,
        users_file: Option<PathBuf>,
        tls: Option<(PathBuf, PathBuf)>,
        insecure: bool,
    ) -> Result<Access, String> {
        let mut pairs = Vec::new();
        if let Some(password) = password {
            if password.is_empty() {
                return Err("--password (WEIR_PASSWORD) is empty".into());
            }
            pairs.push((superuser.to_string(), password));
        }
        if let Some(path) = users_file {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the users file {}: {e}", path.display()))?;
            let mut from_file = Users::parse_file(&text)
                .map_err(|e| format!("the users file {}: {e}", path.display()))?;
            if from_file.is_empty() {
                return Err(format!("the users file {} names no user", path.display()));
            }
            pairs.append(&mut from_file);
        }
        let users = (!pairs.is_empty()).then(|| Users::new(pairs));
        if users.is_none() && !listen.ip().to_canonical().is_loopback() && !insecure {
            return Err(format!(
                "refusing to listen on {listen} without passwords: anyone who can reach it \
                 would get in as any user. Set a password (--password or WEIR_PASSWORD, \
                 --users-file), listen on a loopback address (127.0.0.1), or pass --insecure \
                 if the network is trusted"
            ));
        }
        let tls = match tls {
            Some((cert, key)) => Some(Tls::load(&cert, &key)?),
            None => None,
        };
        Ok(Access { users, tls })
    }
}

/// Whether the metrics may be served on `addr`: the endpoint asks for no
/// password (Prometheus scrapes it as is) and names the databases,
/// relations and jobs, so beyond loopback only with `insecure`.
fn allows_metrics_on(addr: SocketAddr, insecure: bool) -> Result<(), String> {
    if !addr.ip().to_canonical().is_loopback() && !insecure {
        return Err(format!(
            "refusing to serve metrics on {addr}: the endpoint asks for no password and \
             names databases, relations and jobs. Serve them on a loopback address \
             (127.0.0.1) behind a proxy that authenticates, or pass --insecure if the \
             network is trusted"
        ));
    }
    Ok(())
}

/// `--query-memory-limit`: bytes, or a share of the machine's memory.
#[derive(Debug, Clone, Copy)]
enum MemoryLimit {
    Unbounded,
    Bytes(usize),
    Percent(f64),
}

impl MemoryLimit {
    fn bytes(self) -> Result<Option<usize>, String> {
        match self {
            MemoryLimit::Unbounded => Ok(None),
            MemoryLimit::Bytes(n) => Ok(Some(n)),
            MemoryLimit::Percent(p) => {
                let total = machine_memory().ok_or(
                    "--query-memory-limit is a percentage, but the machine's memory is \
                     unknown (no /proc/meminfo): give it in bytes, such as 4GB",
                )?;
                Ok(Some((total as f64 * p / 100.0) as usize))
            }
        }
    }
}

fn parse_memory_limit(text: &str) -> Result<MemoryLimit, String> {
    let text = text.trim();
    let wrong = || format!("expected a size such as '512MB', '4GB' or '25%', or 0; got '{text}'");
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(MemoryLimit::Percent(p)),
            _ => Err(wrong()),
        };
    }
    let upper = text.to_ascii_uppercase();
    let digits = upper.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &upper[digits.len()..];
    let scale: usize = match unit {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        "TB" | "TIB" | "T" => 1 << 40,
        _ => return Err(wrong()),
    };
    let value: usize = digits.trim().parse().map_err(|_| wrong())?;
    match value.checked_mul(scale) {
        Some(0) => Ok(MemoryLimit::Unbounded),
        Some(bytes) => Ok(MemoryLimit::Bytes(bytes)),
        None => Err(wrong()),
    }
}

/// The machine's memory (the least of `MemTotal` and a cgroup's limit).
fn machine_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: usize = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let total = total_kib * 1024;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|limit| limit.trim().parse::<usize>().ok());
    Some(cgroup.map_or(total, |limit| limit.min(total)))
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
            password,
            users_file,
            tls_cert,
            tls_key,
            query_memory_limit,
            metrics_listen,
            insecure,
        } => {
            let mut config = EngineConfig::new(&data_dir);
            config.query_memory_limit = match query_memory_limit.bytes() {
                Ok(limit) => limit,
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            config.checkpoint_interval =
                (!checkpoint_interval.is_zero()).then_some(checkpoint_interval);
            config.state = state_url;
            let tls = tls_cert.zip(tls_key);
            let access = match Access::from_flags(
                listen,
                &config.superuser,
                password,
                users_file,
                tls,
                insecure,
            ) {
                Ok(access) => access,
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // An address given must be served; the default one is served if
            // it is free.
            let explicit = metrics_listen.is_some();
            let metrics_listen = metrics_listen
                .unwrap_or_else(|| MetricsListen(DEFAULT_METRICS_LISTEN.parse().ok()));
            if let Some(addr) = metrics_listen.0
                && let Err(e) = allows_metrics_on(addr, insecure)
            {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
            let options = ServerOptions {
                max_connections: max_connections as usize,
                users: access.users,
                tls: access.tls,
            };
            let metrics = metrics_listen.0.map(|addr| (addr, explicit));
            runtime.block_on(serve(listen, metrics, config, options))
        }
    }
}

async fn serve(
    listen: SocketAddr,
    metrics: Option<(SocketAddr, bool)>,
    config: EngineConfig,
    options: ServerOptions,
) -> ExitCode {
    let authentication = match &options.users {
        Some(users) => format!("SCRAM-SHA-256 passwords for {} user(s)", users.len()),
        None => "no passwords (loopback only unless --insecure)".to_string(),
    };
    let tls = if options.tls.is_some() { "on" } else { "off" };
    let data_dir = config.data_dir.clone();
    let engine = match Engine::open(config).await {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!("cannot start: {}", e.message);
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind_with_options(engine.clone(), listen, options).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr().unwrap_or(listen);
    if let Some((metrics, explicit)) = metrics
        && let Err(e) = start_metrics(metrics, &engine, &server).await
    {
        if explicit {
            tracing::error!("cannot serve metrics on {metrics}: {e}");
            return ExitCode::FAILURE;
        }
        tracing::warn!(
            "no metrics: cannot serve them on {metrics} ({e}); choose another address with --metrics-listen"
        );
    }
    let config = engine.config();
    tracing::info!(
        "weir {} listening on {addr}, data in {}, checkpoints in {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display(),
        config.state_location()
    );
    tracing::info!("authentication: {authentication}; TLS: {tls}");
    match config.query_memory_limit {
        Some(bytes) => tracing::info!("a query may use {} MiB of memory", bytes >> 20),
        None => tracing::info!("queries may use any amount of memory"),
    }
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

/// Binds the metrics endpoint on `addr` and serves it in a task of its own.
async fn start_metrics(
    addr: SocketAddr,
    engine: &Arc<Engine>,
    server: &Server,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!("metrics on http://{bound}/metrics");
    tokio::spawn(serve_metrics(listener, engine.clone(), server.gate()));
    Ok(())
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
