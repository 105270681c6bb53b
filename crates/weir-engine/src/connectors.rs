//! Connectors that feed streams: the `connector = '...'` of `CREATE STREAM
//! ... WITH (...)`.
//!
//! A stream without a connector is fed by `INSERT`. A connector runs as a
//! task of the stream: it produces record batches, which go through the
//! stream's ingestion like inserted rows (event time, late rows, watermark).
//! The task holds the stream weakly, and ends when the stream is dropped.
//!
//! Each connector is a [`SourceConnector`]: it checks its options when the
//! stream is created and, once started, produces batches at its pace.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use weir_connectors::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};

use crate::catalog::StreamDef;
use crate::database::Database;
use crate::error::{Result, WeirError, sqlstate};
use crate::stream::Stream;

/// Events a generator produces per batch, at most.
const MAX_BATCH_EVENTS: u64 = 4096;

/// A source of batches for a stream.
trait SourceConnector: Send {
    /// The next batch (in the generator's schema), or `None` when the
    /// source has ended.
    fn next_batch(&mut self) -> Option<RecordBatch>;

    /// How long to wait before the next batch, to keep the source's pace.
    fn pause(&mut self) -> Duration;
}

/// The connector named in the options, if any.
fn connector_name(def: &StreamDef) -> Option<&str> {
    def.options
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("connector"))
        .map(|(_, v)| v.as_str())
}

fn option_error(message: impl Into<String>) -> WeirError {
    WeirError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

/// Checks the `WITH` options of a stream (at `CREATE STREAM`).
pub(crate) fn check_options(def: &StreamDef) -> Result<()> {
    match connector_name(def) {
        None => {
            if let Some((key, _)) = def.options.first() {
                return Err(option_error(format!(
                    "option \"{key}\" needs a connector (WITH (connector = 'nexmark', ...))"
                )));
            }
            Ok(())
        }
        Some(name) => {
            build(def, name)?;
            Ok(())
        }
    }
}

fn build(def: &StreamDef, name: &str) -> Result<Box<dyn SourceConnector>> {
    match name.to_ascii_lowercase().as_str() {
        "nexmark" => Ok(Box::new(Nexmark::new(def)?)),
        other => Err(WeirError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("connector \"{other}\" is not supported; the connectors are: nexmark"),
        )),
    }
}

/// Starts the connector of a stream, if it has one.
pub(crate) fn start(db: &Arc<Database>, stream: &Arc<Stream>) -> Result<()> {
    let Some(name) = connector_name(&stream.def) else {
        return Ok(());
    };
    let mut connector = build(&stream.def, name)?;
    let columns = column_mapping(&stream.def, stream.schema(), name)?;
    let weak_stream: Weak<Stream> = Arc::downgrade(stream);
    let weak_db: Weak<Database> = Arc::downgrade(db);
    let target = stream.schema().clone();
    let task = tokio::spawn(async move {
        loop {
            let Some(batch) = connector.next_batch() else {
                tracing::info!("a connector reached its end");
                return;
            };
            let (Some(stream), Some(db)) = (weak_stream.upgrade(), weak_db.upgrade()) else {
                return;
            };
            if batch.num_rows() > 0 {
                let batch = match conform(&batch, &columns, &target) {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::error!(stream = %stream.def.name, error = %e, "connector stopped");
                        return;
                    }
                };
                if let Err(e) = stream.ingest(batch, db.late_rows()).await {
                    tracing::error!(stream = %stream.def.name, error = %e.message, "connector stopped");
                    return;
                }
            }
            drop((stream, db));
            let pause = connector.pause();
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }
    });
    stream.attach_connector(task);
    Ok(())
}

/// For each column of the stream, the column of the connector's rows that
/// feeds it (by name).
fn column_mapping(def: &StreamDef, schema: &SchemaRef, connector: &str) -> Result<Vec<usize>> {
    let produced = match connector.to_ascii_lowercase().as_str() {
        "nexmark" => NexmarkGenerator::schema(nexmark_table(def)?),
        _ => return Ok((0..schema.fields().len()).collect()),
    };
    schema
        .fields()
        .iter()
        .map(|f| {
            produced.index_of(f.name()).map_err(|_| {
                let names: Vec<&str> = produced.fields().iter().map(|f| f.name().as_str()).collect();
                WeirError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!(
                        "column \"{}\" is not produced by connector {connector}; its columns are {}",
                        f.name(),
                        names.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// The connector's rows in the stream's columns and types.
fn conform(batch: &RecordBatch, columns: &[usize], target: &SchemaRef) -> Result<RecordBatch> {
    let arrays = columns
        .iter()
        .zip(target.fields())
        .map(|(&i, field)| Ok(cast(batch.column(i), field.data_type())?))
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(target.clone(), arrays)?)
}

fn nexmark_table(def: &StreamDef) -> Result<NexmarkTable> {
    let name = def
        .options
        .iter()
        .find(|(k, _)| k == "nexmark.table")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            option_error("the nexmark connector needs nexmark.table = 'person', 'auction' or 'bid'")
        })?;
    NexmarkTable::from_name(name).map_err(|e| option_error(e.to_string()))
}

/// The Nexmark generator, paced in wall-clock time.
struct Nexmark {
    generator: NexmarkGenerator,
    events_per_second: Option<u64>,
    started: Instant,
    first_event: u64,
}

impl Nexmark {
    fn new(def: &StreamDef) -> Result<Self> {
        for (key, _) in &def.options {
            if !key.eq_ignore_ascii_case("connector") && !key.starts_with("nexmark.") {
                return Err(option_error(format!(
                    "unknown option \"{key}\" for connector nexmark"
                )));
            }
        }
        let table = nexmark_table(def)?;
        let config =
            NexmarkConfig::from_options(&def.options).map_err(|e| option_error(e.to_string()))?;
        Ok(Nexmark {
            events_per_second: config.events_per_second(),
            generator: NexmarkGenerator::new(config, table, 0),
            started: Instant::now(),
            first_event: 0,
        })
    }

    /// Events generated so far.
    fn generated(&self) -> u64 {
        self.generator.next_event() - self.first_event
    }
}

impl SourceConnector for Nexmark {
    fn next_batch(&mut self) -> Option<RecordBatch> {
        let events = match self.events_per_second {
            // A tenth of a second's worth per batch.
            Some(rate) => (rate / 10).clamp(1, MAX_BATCH_EVENTS),
            None => MAX_BATCH_EVENTS,
        };
        self.generator.next_batch(events)
    }

    fn pause(&mut self) -> Duration {
        let Some(rate) = self.events_per_second else {
            return Duration::ZERO;
        };
        let due = Duration::from_secs_f64(self.generated() as f64 / rate.max(1) as f64);
        due.saturating_sub(self.started.elapsed())
    }
}
