//! `weir-bench`: Nexmark queries run inside Weir over its `nexmark` source,
//! each against the same query run by DataFusion in batch over the same
//! events in memory. See docs/benchmarks.md.
//!
//! Every run is a child process (this binary, `measure`), so that each
//! measurement starts from a fresh process and reports its own peak memory.
//!
//! - [`queries`]: the SQL texts of `benches/queries/`;
//! - [`streaming`], [`batch`]: one run by Weir, by DataFusion;
//! - [`measurement`]: what a run reports; [`process`]: CPU time and memory;
//! - [`report`]: the table;
//! - [`recovery`]: the recovery benchmark (restart time with a large state);
//! - [`load_command`]: the load test against a `weir` server (the test
//!   itself is [`weir_bench::load`]).

mod batch;
mod load_command;
mod measurement;
mod process;
mod queries;
mod recovery;
mod report;
mod streaming;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Args, Parser, Subcommand};

use measurement::{EngineKind, Measurement};
use report::Outcome;

#[derive(Parser)]
#[command(name = "weir-bench", about = "Weir's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Runs Nexmark queries in Weir and in DataFusion batch; prints a table.
    Nexmark(NexmarkArgs),
    /// Runs one query once and prints its measurement as JSON (the harness
    /// runs this in a child process).
    #[command(hide = true)]
    Measure(MeasureArgs),
    /// Fills a table and a view to a large state, checkpoints, restarts
    /// the engine on it and times the restart; prints a table.
    Recovery(RecoveryArgs),
    /// Many sessions at once against a `weir` server it starts, for a
    /// fixed time: writes, batch queries, FLUSH, continuous queries.
    Load(LoadArgs),
    /// One step of the recovery benchmark, in a child process.
    #[command(hide = true)]
    RecoveryStep(RecoveryStepArgs),
}

#[derive(Args)]
struct RecoveryArgs {
    /// Rows of the table (about 200 bytes each in a checkpoint).
    #[arg(long, default_value_t = 6_000_000)]
    rows: u64,
    /// Groups of the view over the table.
    #[arg(long, default_value_t = 1_000_000)]
    groups: u64,
    /// The data directory (kept afterwards); a temporary one by default.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    /// Sessions at once.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// How long the load runs (`30s`, `2min`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: std::time::Duration,
    /// The `weir` binary (default: the one beside this program).
    #[arg(long)]
    weir: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| (&text[..i], text[i..].trim()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as '30s' or '2min', got '{text}'"))?;
    match unit {
        "s" | "sec" | "secs" | "seconds" => Ok(std::time::Duration::from_secs(n)),
        "min" | "m" | "minutes" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(format!(
            "expected a duration such as '30s' or '2min', got '{text}'"
        )),
    }
}

#[derive(Args)]
struct RecoveryStepArgs {
    #[arg(value_parser = ["build", "recover"])]
    step: String,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    rows: u64,
    #[arg(long)]
    groups: u64,
}

#[derive(Args)]
struct NexmarkArgs {
    /// A query name (q0, q1, ...), several separated by commas, or `all`.
    #[arg(long, default_value = "all")]
    query: String,
    /// Nexmark events to generate (of every kind: 46 in 50 are bids).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Values of `streaming_parallelism` to run each query with (and the
    /// batch run's partitions), separated by commas.
    #[arg(long, default_value = "1,2")]
    parallelism: String,
    /// Also run each query with checkpoints this often (`1s`, `500ms`), its
    /// rows to a blackhole sink, and report the checkpoints' cost; `0` for
    /// no such run.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    checkpoint_interval: std::time::Duration,
}

/// `--checkpoint-interval`: `500ms`, `1s`, `0`.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .trim()
            .parse()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("expected a duration such as '1s' or '500ms', got '{text}'"));
    }
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(text)
}

#[derive(Args)]
struct MeasureArgs {
    #[arg(long)]
    query: String,
    #[arg(long)]
    events: u64,
    #[arg(long)]
    parallelism: usize,
    #[arg(long, value_enum)]
    engine: EngineKind,
    /// For a checkpointed run: milliseconds between checkpoints.
    #[arg(long, default_value_t = 1000)]
    checkpoint_ms: u64,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Commands::Nexmark(args) => nexmark(args),
        Commands::Measure(args) => measure(args),
        Commands::Recovery(args) => match recovery::run(args.rows, args.groups, args.data_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Commands::RecoveryStep(args) => recovery_step(args),
        Commands::Load(args) => match load_command::run(args.sessions, args.duration, args.weir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("a tokio runtime: {e}"))
}

/// Prints a step's result, or its error, as a line of JSON.
fn print_json<T: serde::Serialize>(result: Result<T, String>) -> ExitCode {
    match result.and_then(|m| serde_json::to_string(&m).map_err(|e| e.to_string())) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", serde_json::json!({ "error": e }));
            ExitCode::FAILURE
        }
    }
}

fn recovery_step(args: RecoveryStepArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => return print_json::<()>(Err(e)),
    };
    if args.step == "build" {
        let built = runtime.block_on(recovery::build(&args.data_dir, args.rows, args.groups));
        // Exit at once, without closing the engine: as a killed server.
        let ok = built.is_ok();
        print_json(built);
        std::process::exit(if ok { 0 } else { 1 });
    }
    print_json(runtime.block_on(recovery::recover(&args.data_dir)))
}

fn measure(args: MeasureArgs) -> ExitCode {
    let Some(query) = queries::find(&args.query) else {
        eprintln!("no query named {}", args.query);
        return ExitCode::FAILURE;
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => return print_json::<()>(Err(e)),
    };
    print_json(runtime.block_on(async {
        match args.engine {
            EngineKind::Streaming => {
                streaming::run(&query, args.events, args.parallelism, false).await
            }
            EngineKind::Replay => streaming::run(&query, args.events, args.parallelism, true).await,
            EngineKind::Batch => batch::run(&query, args.events, args.parallelism).await,
            EngineKind::Checkpointed => {
                let interval = std::time::Duration::from_millis(args.checkpoint_ms);
                streaming::run_checkpointed(&query, args.events, args.parallelism, interval).await
            }
        }
    }))
}

/// Runs `measure` in a child process.
fn measure_in_child(
    query: &str,
    events: u64,
    parallelism: usize,
    engine: EngineKind,
    checkpoint_interval: std::time::Duration,
) -> Result<Measurement, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let engine_name = match engine {
        EngineKind::Streaming => "streaming",
        EngineKind::Replay => "replay",
        EngineKind::Batch => "batch",
        EngineKind::Checkpointed => "checkpointed",
    };
    let output = Command::new(exe)
        .args(["measure", "--query", query, "--events", &events.to_string()])
        .args(["--parallelism", &parallelism.to_string()])
        .args(["--engine", engine_name])
        .args([
            "--checkpoint-ms",
            &checkpoint_interval.as_millis().to_string(),
        ])
        .output()
        .map_err(|e| format!("running a measurement: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().last() else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "the measurement printed nothing ({}): {stderr}",
            output.status
        ));
    };
    if let Ok(measurement) = serde_json::from_str::<Measurement>(line) {
        return Ok(measurement);
    }
    let error = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from));
    Err(error.unwrap_or_else(|| line.to_string()))
}

fn nexmark(args: NexmarkArgs) -> ExitCode {
    let selected = if args.query == "all" {
        queries::all()
    } else {
        let mut selected = Vec::new();
        for name in args.query.split(',') {
            match queries::find(name.trim()) {
                Some(query) => selected.push(query),
                None => {
                    let names: Vec<_> = queries::all().iter().map(|q| q.name).collect();
                    eprintln!("no query named {name}; the queries: {}", names.join(", "));
                    return ExitCode::FAILURE;
                }
            }
        }
        selected
    };
    let mut parallelisms = Vec::new();
    for p in args.parallelism.split(',') {
        match p.trim().parse::<usize>() {
            Ok(p) if p > 0 => parallelisms.push(p),
            _ => {
                eprintln!("--parallelism takes positive numbers separated by commas, not {p}");
                return ExitCode::FAILURE;
            }
        }
    }
    report::header(args.events, &parallelisms);
    let mut outcomes = Vec::new();
    for query in &selected {
        for &parallelism in &parallelisms {
            eprintln!("running {} at parallelism {parallelism}...", query.name);
            let run = |engine| {
                measure_in_child(
                    query.name,
                    args.events,
                    parallelism,
                    engine,
                    args.checkpoint_interval,
                )
            };
            let streaming = run(EngineKind::Streaming);
            let outcome = match streaming {
                Err(error) => Outcome::Unsupported {
                    query: query.name,
                    error,
                },
                Ok(streaming) => Outcome::Measured {
                    streaming,
                    replay: run(EngineKind::Replay),
                    batch: run(EngineKind::Batch),
                    checkpointed: (!args.checkpoint_interval.is_zero())
                        .then(|| run(EngineKind::Checkpointed)),
                },
            };
            let unsupported = matches!(outcome, Outcome::Unsupported { .. });
            outcomes.push(outcome);
            if unsupported {
                break; // the same answer at every parallelism
            }
        }
    }
    report::table(&outcomes);
    report::checkpoints(&outcomes, args.checkpoint_interval);
    report::queries(&selected);
    ExitCode::SUCCESS
}
