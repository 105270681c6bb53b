//! The harness's output: the setting of the run, then one table row per
//! query and parallelism, in Markdown (docs/benchmarks.md holds it as is).

use crate::measurement::Measurement;
use crate::process;
use crate::queries::Query;

// A few outcomes per run: their size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Measured {
        /// Over the `nexmark` source, generation included.
        streaming: Measurement,
        /// Over the batch run's events, written into the streams.
        replay: Result<Measurement, String>,
        batch: Result<Measurement, String>,
        /// Over the `nexmark` source, with checkpoints (when asked for).
        checkpointed: Option<Result<Measurement, String>>,
    },
    /// Weir refused the query; its error says why.
    Unsupported { query: &'static str, error: String },
}

/// The commit being measured (`git rev-parse --short HEAD`).
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn header(events: u64, parallelisms: &[usize]) {
    println!("machine: {}", process::machine());
    println!("commit: {}", commit());
    println!(
        "events: {events} Nexmark events per run (46 in 50 bids), event time 10 000 events/s; \
         parallelism {parallelisms:?}"
    );
    println!();
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else {
        format!("{:.0} K", per_second / 1e3)
    }
}

fn rate_of(run: &Result<Measurement, String>) -> String {
    match run {
        Ok(m) => rate(m.events_per_second()),
        Err(e) => format!("failed: {e}"),
    }
}

/// The result rows of the streaming runs, checked against the batch run's.
fn rows(
    streaming: &Measurement,
    replay: &Result<Measurement, String>,
    batch: &Result<Measurement, String>,
) -> String {
    let Ok(batch) = batch else {
        return streaming.rows.to_string();
    };
    let replayed = replay.as_ref().map_or(batch.rows, |r| r.rows);
    if streaming.rows == batch.rows && replayed == batch.rows {
        format!("{} (= batch)", batch.rows)
    } else {
        format!(
            "DIFFERENT: generated {}, replayed {replayed}, batch {}",
            streaming.rows, batch.rows
        )
    }
}

pub fn table(outcomes: &[Outcome]) {
    println!(
        "| query | par | events/s | cores used | events/s per core | peak RSS | \
         replayed events/s | batch events/s | replayed / batch | result rows |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut unsupported = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Unsupported { query, error } => unsupported.push((query, error)),
            Outcome::Measured {
                streaming: s,
                replay,
                batch,
                ..
            } => {
                let ratio = match (replay, batch) {
                    (Ok(r), Ok(b)) => {
                        format!("{:.2}", r.events_per_second() / b.events_per_second())
                    }
                    _ => "-".into(),
                };
                println!(
                    "| {} | {} | {} | {:.2} | {} | {} MiB | {} | {} | {} | {} |",
                    s.query,
                    s.parallelism,
                    rate(s.events_per_second()),
                    s.cores(),
                    rate(s.events_per_core_second()),
                    s.peak_rss_bytes / (1024 * 1024),
                    rate_of(replay),
                    rate_of(batch),
                    ratio,
                    rows(s, replay, batch),
                );
            }
        }
    }
    if !unsupported.is_empty() {
        println!();
        println!("Not supported yet (Weir's answer to the query):");
        for (query, error) in unsupported {
            println!("- {query}: {error}");
        }
    }
}

/// The checkpointed runs against the same queries without checkpoints.
pub fn checkpoints(outcomes: &[Outcome], interval: std::time::Duration) {
    if interval.is_zero() {
        return;
    }
    println!();
    println!(
        "With a checkpoint every {} ms: the query as a blackhole sink, state in the local \
         object store. The continuous query (no checkpoints) and the sink deliver rows by \
         different paths: their difference is not the checkpoints' cost alone, which is in \
         the last four columns.",
        interval.as_millis()
    );
    println!();
    println!(
        "| query | par | events/s, continuous query | events/s, sink with checkpoints | \
         difference | checkpoints | mean duration | mean bytes written | largest state |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for outcome in outcomes {
        let Outcome::Measured {
            streaming: s,
            checkpointed: Some(run),
            ..
        } = outcome
        else {
            continue;
        };
        match run {
            Err(e) => println!(
                "| {} | {} | {} | failed: {e} | | | | | |",
                s.query,
                s.parallelism,
                rate(s.events_per_second())
            ),
            Ok(c) => {
                let difference = 1.0 - c.events_per_second() / s.events_per_second();
                let (count, duration, bytes, state) = c.checkpoints.as_ref().map_or(
                    (
                        "0".to_string(),
                        "-".to_string(),
                        "-".to_string(),
                        "-".to_string(),
                    ),
                    |f| {
                        (
                            f.count.to_string(),
                            format!("{:.0} ms", f.mean_duration_ms),
                            format!("{:.1} KiB", f.mean_bytes_written / 1024.0),
                            format!("{:.1} KiB", f.last_state_bytes as f64 / 1024.0),
                        )
                    },
                );
                println!(
                    "| {} | {} | {} | {} | {:.0} % | {count} | {duration} | {bytes} | {state} |",
                    s.query,
                    s.parallelism,
                    rate(s.events_per_second()),
                    rate(c.events_per_second()),
                    difference * 100.0,
                );
            }
        }
    }
}

pub fn queries(queries: &[Query]) {
    println!();
    println!("Queries (benches/queries/<name>.sql):");
    for query in queries {
        println!("- {}: {}", query.name, query.description);
    }
}
