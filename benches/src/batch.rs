//! Runs a query's batch form in DataFusion over the same Nexmark events,
//! generated into memory before the clock starts. The query runs
//! [`RUNS`] times over the same tables and the fastest run counts: the
//! fastest batch queries take tens of milliseconds, where one run's
//! figure moves by several times between runs.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use weir_connectors::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};

use crate::measurement::{Clock, EngineKind, Measurement};
use crate::queries::Query;

/// Runs of the batch query; the fastest is reported.
pub const RUNS: usize = 3;

/// Events per generated batch: the `nexmark` source's batch size.
const BATCH_EVENTS: u64 = 4096;

/// The rows of one Nexmark table among `events` events, as the `nexmark`
/// source with these options generates them.
pub fn generate(table: &str, events: u64) -> Result<Vec<RecordBatch>, String> {
    let options = vec![
        ("nexmark.max_events".to_string(), events.to_string()),
        ("nexmark.throughput".to_string(), "0".to_string()),
    ];
    let config = NexmarkConfig::from_options(&options).map_err(|e| e.to_string())?;
    let table = NexmarkTable::from_name(table).map_err(|e| e.to_string())?;
    let mut generator = NexmarkGenerator::new(config, table, 0);
    let mut batches = Vec::new();
    while let Some(batch) = generator.next_batch(BATCH_EVENTS) {
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    Ok(batches)
}

pub async fn run(query: &Query, events: u64, parallelism: usize) -> Result<Measurement, String> {
    let Some(sql) = &query.batch else {
        return Err(format!("{} has no batch form", query.name));
    };
    let mut config = SessionConfig::new().with_target_partitions(parallelism);
    {
        // As Weir's sessions parse SQL.
        let options = config.options_mut();
        options.sql_parser.map_string_types_to_utf8view = false;
        options.sql_parser.enable_ident_normalization = true;
        options.sql_parser.parse_float_as_decimal = true;
    }
    let ctx = SessionContext::new_with_config(config);
    for table in &query.tables {
        let batches = generate(table, events)?;
        let schema =
            NexmarkGenerator::schema(NexmarkTable::from_name(table).map_err(|e| e.to_string())?);
        // Spread over the partitions, as DataFusion reads them in parallel.
        let count = parallelism.max(1);
        let mut partitions = vec![Vec::new(); count];
        for (i, batch) in batches.into_iter().enumerate() {
            partitions[i % count].push(batch);
        }
        let table_data = MemTable::try_new(schema, partitions).map_err(|e| e.to_string())?;
        ctx.register_table(table.as_str(), Arc::new(table_data))
            .map_err(|e| e.to_string())?;
    }
    let mut fastest: Option<Measurement> = None;
    for _ in 0..RUNS {
        let clock = Clock::start();
        let frame = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        let mut stream = frame.execute_stream().await.map_err(|e| e.to_string())?;
        let mut rows = 0i64;
        while let Some(batch) = stream.next().await {
            rows += batch.map_err(|e| e.to_string())?.num_rows() as i64;
        }
        let run = clock.stop(query.name, EngineKind::Batch, parallelism, events, rows);
        if fastest.as_ref().is_none_or(|f| run.seconds < f.seconds) {
            fastest = Some(run);
        }
    }
    fastest.ok_or_else(|| "no batch run".to_string())
}
