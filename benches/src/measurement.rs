//! One run of one query by one engine, as a child process reports it to the
//! harness (a line of JSON on its standard output).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::process;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Weir, over its `nexmark` source, generation included.
    Streaming,
    /// Weir, over the same events as the batch run, generated into memory
    /// beforehand and written into the streams as fast as they take them.
    Replay,
    /// DataFusion in batch, over the same events generated into memory
    /// beforehand.
    Batch,
    /// Weir over its `nexmark` source, the query's rows going to a
    /// blackhole sink, with checkpoints taken periodically (state in the
    /// local object store).
    Checkpointed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub query: String,
    pub engine: EngineKind,
    pub parallelism: usize,
    /// Nexmark events the generator went through (of every kind).
    pub events: u64,
    pub seconds: f64,
    /// CPU time of the process meanwhile (user and system, every thread).
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// Result rows: for results that update, inserts less deletes (the rows
    /// of the final result); for a checkpointed run, the changes the sink
    /// received.
    pub rows: i64,
    /// A checkpointed run's checkpoints (committed) while the query ran.
    #[serde(default)]
    pub checkpoints: Option<CheckpointFigures>,
}

/// What the checkpoints of a checkpointed run cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointFigures {
    pub count: i64,
    pub mean_duration_ms: f64,
    pub mean_bytes_written: f64,
    pub last_state_bytes: i64,
}

impl Measurement {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Cores kept busy on average.
    pub fn cores(&self) -> f64 {
        self.cpu_seconds / self.seconds
    }

    pub fn events_per_core_second(&self) -> f64 {
        self.events as f64 / self.cpu_seconds
    }
}

/// Times a run: wall-clock and CPU time, and peak memory, from its start.
pub struct Clock {
    started: Instant,
    cpu: f64,
}

impl Clock {
    pub fn start() -> Clock {
        process::reset_peak_rss();
        Clock {
            cpu: process::cpu_seconds(),
            started: Instant::now(),
        }
    }

    /// The run's measurement, now that it produced `rows`.
    pub fn stop(
        &self,
        query: &str,
        engine: EngineKind,
        parallelism: usize,
        events: u64,
        rows: i64,
    ) -> Measurement {
        Measurement {
            query: query.to_string(),
            engine,
            parallelism,
            events,
            seconds: self.started.elapsed().as_secs_f64(),
            cpu_seconds: process::cpu_seconds() - self.cpu,
            peak_rss_bytes: process::peak_rss_bytes(),
            rows,
            checkpoints: None,
        }
    }
}
