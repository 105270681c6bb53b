//! Connectors that feed streams: the `connector = '...'` of `CREATE STREAM
//! ... WITH (...)`.
//!
//! A stream without a connector is fed by `INSERT`. A connector runs as a
//! task of the stream: it produces record batches, which go through the
//! stream's ingestion like inserted rows (event time, late rows, watermark).
//! It starts reading once a materialized view reads the stream, so that the
//! first view sees the source from its start.
//! The task holds the stream weakly, and ends when the stream is dropped.
//!
//! Each connector is a [`SourceConnector`]: it checks its options when the
//! stream is created and, once started, produces batches at its pace.
//! Records it cannot read go where the stream's `on_error` says
//! ([`crate::dead_letters`]).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use weir_connectors::datagen::Datagen;
use weir_connectors::file::{FileSource, Reject};
use weir_connectors::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};

use crate::catalog::StreamDef;
use crate::database::Database;
use crate::dead_letters::{DeadLetter, ON_ERROR, OnError};
use crate::error::{Result, WeirError, sqlstate};
use crate::stream::{Origin, Stream};

/// Events a generator produces per batch, at most.
const MAX_BATCH_EVENTS: u64 = 4096;

/// A source of batches for a stream.
trait SourceConnector: Send {
    /// The next batch (in the generator's schema), or `None` when the
    /// source has ended.
    fn next_batch(&mut self) -> Option<RecordBatch>;

    /// How long to wait before the next batch, to keep the source's pace.
    fn pause(&mut self) -> Duration;

    /// Records set aside since the last call because they did not parse.
    fn take_rejects(&mut self) -> Vec<Reject> {
        Vec::new()
    }

    /// Stop at the first record that does not parse, the position just
    /// before it (for `on_error = 'fail'`).
    fn stop_at_first_reject(&mut self) {}

    /// Reading starts now (a view reads the stream): the pace counts from here.
    fn begin(&mut self) {}

    /// Where the source is, just after the last batch it returned: a
    /// checkpoint keeps it, and [`resume`](SourceConnector::resume) takes
    /// it back after a restart.
    fn position(&self) -> serde_json::Value;

    /// Continues from a position [`position`](SourceConnector::position)
    /// returned (before reading starts).
    fn resume(&mut self, position: &serde_json::Value) -> Result<()>;
}

fn position_error(connector: &str, position: &serde_json::Value) -> WeirError {
    WeirError::new(
        sqlstate::DATA_CORRUPTED,
        format!(
            "the checkpoint holds a position the {connector} connector cannot read: {position}"
        ),
    )
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
    idle_timeout(def)?;
    match connector_name(def) {
        None => {
            if let Some((key, _)) = def.options.iter().find(|(k, _)| k != IDLE_TIMEOUT) {
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
        "datagen" => Ok(Box::new(Generated::new(def)?)),
        "file" => Ok(Box::new(Files::new(def)?)),
        other => Err(WeirError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "connector \"{other}\" is not supported; the connectors are: datagen, file, nexmark"
            ),
        )),
    }
}

/// The option that lets an idle source's watermark follow processing time.
const IDLE_TIMEOUT: &str = "idle_timeout";

/// `idle_timeout`: an interval such as `'5 seconds'`, `'500ms'` or `'2'`
/// (seconds).
fn idle_timeout(def: &StreamDef) -> Result<Option<Duration>> {
    let Some((_, value)) = def.options.iter().find(|(k, _)| k == IDLE_TIMEOUT) else {
        return Ok(None);
    };
    weir_sql::parse_duration(value).map(Some).ok_or_else(|| {
        option_error(format!(
            "invalid value \"{value}\" for option idle_timeout: expected a duration such as '5 seconds' or '500ms'"
        ))
    })
}

/// Starts the tasks of a stream: its connector, if it has one, and the
/// watch that moves its watermark with processing time when it is idle.
pub(crate) fn start(db: &Arc<Database>, stream: &Arc<Stream>) -> Result<()> {
    start_at(db, stream, None)
}

/// Starts the tasks of a stream, its connector continuing from `position`
/// (kept by a checkpoint) if given.
pub(crate) fn start_at(
    db: &Arc<Database>,
    stream: &Arc<Stream>,
    position: Option<&serde_json::Value>,
) -> Result<()> {
    if let Some(timeout) = idle_timeout(&stream.def)?
        && stream.event_time.is_some()
    {
        let weak = Arc::downgrade(stream);
        let check = (timeout / 4).max(Duration::from_millis(20));
        stream.attach_task(tokio::spawn(async move {
            loop {
                tokio::time::sleep(check).await;
                let Some(stream) = weak.upgrade() else {
                    return;
                };
                if stream.idle_for() >= timeout
                    && let Err(e) = stream.follow_processing_time().await
                {
                    tracing::error!(stream = %stream.def.name, error = %e.message, "idle watch stopped");
                    return;
                }
            }
        }));
    }
    let Some(name) = connector_name(&stream.def) else {
        return Ok(());
    };
    let mut connector = build(&stream.def, name)?;
    if let Some(position) = position {
        connector.resume(position)?;
    }
    let on_error = stream.on_error;
    if on_error == OnError::Fail {
        connector.stop_at_first_reject();
    }
    let columns = column_mapping(&stream.def, stream.schema(), name)?;
    let weak_stream: Weak<Stream> = Arc::downgrade(stream);
    let weak_db: Weak<Database> = Arc::downgrade(db);
    let target = stream.schema().clone();
    let task = tokio::spawn(async move {
        // Nothing is read until a view reads the stream: the first view sees
        // the source from its start.
        loop {
            let Some(stream) = weak_stream.upgrade() else {
                return;
            };
            if stream.feed.has_subscribers().await {
                break;
            }
            drop(stream);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        connector.begin();
        loop {
            let batch = connector.next_batch();
            let rejects = connector.take_rejects();
            let (Some(stream), Some(db)) = (weak_stream.upgrade(), weak_db.upgrade()) else {
                return;
            };
            let (dead_letters, failure) = on_rejects(&stream, on_error, rejects);
            let ended = batch.is_none();
            if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
                let batch = match conform(&batch, &columns, &target) {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::error!(stream = %stream.def.name, error = %e, "connector stopped");
                        return;
                    }
                };
                let origin = Origin::Connector {
                    position: connector.position(),
                    dead_letters,
                };
                if let Err(e) = stream.ingest(batch, db.late_rows(), origin).await {
                    tracing::error!(stream = %stream.def.name, error = %e.message, "connector stopped");
                    return;
                }
            } else {
                // Records set aside, nothing new, or the end: the position
                // may still move.
                stream
                    .set_position(connector.position(), dead_letters)
                    .await;
            }
            if let Some(reason) = failure {
                stream.fail(reason).await;
                return;
            }
            if ended {
                tracing::info!(stream = %stream.def.name, "the source reached its end");
                stream.end(connector.position()).await;
                return;
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
    stream.attach_task(task);
    Ok(())
}

/// Deals with the records a connector could not read, as the stream's
/// `on_error` says: counted and logged always; kept as dead letters
/// (returned, to be kept with the position after them), or the reason the
/// stream must stop.
fn on_rejects(
    stream: &Stream,
    on_error: OnError,
    rejects: Vec<Reject>,
) -> (Vec<DeadLetter>, Option<String>) {
    let Some(first) = rejects.first() else {
        return (Vec::new(), None);
    };
    stream
        .rejected
        .fetch_add(rejects.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let name = &stream.def.name;
    match on_error {
        OnError::Fail => {
            let reason = format!(
                "stream \"{name}\" stopped at a record it cannot read ({}, line {}): {} \
                 (on_error = 'fail'; fix the record, or recreate the stream with on_error = 'skip' or 'dead_letter')",
                first.file.display(),
                first.line,
                first.error
            );
            tracing::error!(stream = %name, "{reason}");
            (Vec::new(), Some(reason))
        }
        OnError::Skip => {
            tracing::warn!(
                stream = %name, count = rejects.len(), file = %first.file.display(),
                line = first.line, error = %first.error, "skipping records that cannot be read"
            );
            (Vec::new(), None)
        }
        OnError::DeadLetter => {
            tracing::warn!(
                stream = %name, count = rejects.len(), file = %first.file.display(),
                line = first.line, error = %first.error,
                "records that cannot be read set aside in weir_catalog.dead_letters"
            );
            let read_at = chrono::Utc::now().timestamp_micros();
            let letters = rejects
                .into_iter()
                .map(|r| {
                    DeadLetter::new(
                        r.file.display().to_string(),
                        r.line,
                        r.record,
                        r.error,
                        read_at,
                    )
                })
                .collect();
            (letters, None)
        }
    }
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

/// Keeps a source at a number of items per second of wall-clock time.
struct Pace {
    per_second: Option<u64>,
    started: Instant,
}

impl Pace {
    fn new(per_second: Option<u64>) -> Self {
        Pace {
            per_second,
            started: Instant::now(),
        }
    }

    /// Items to produce at once: a tenth of a second's worth.
    fn batch(&self) -> u64 {
        match self.per_second {
            Some(rate) => (rate / 10).clamp(1, MAX_BATCH_EVENTS),
            None => MAX_BATCH_EVENTS,
        }
    }

    /// How long to wait after `done` items, to keep the pace.
    fn pause(&self, done: u64) -> Duration {
        let Some(rate) = self.per_second else {
            return Duration::ZERO;
        };
        let due = Duration::from_secs_f64(done as f64 / rate.max(1) as f64);
        due.saturating_sub(self.started.elapsed())
    }
}

/// Checks that every option is the connector's (`connector` or one of the
/// prefixes).
fn check_keys(def: &StreamDef, connector: &str, prefixes: &[&str]) -> Result<()> {
    for (key, _) in &def.options {
        if !key.eq_ignore_ascii_case("connector")
            && key != IDLE_TIMEOUT
            && key != ON_ERROR
            && !prefixes.iter().any(|p| key.starts_with(p))
        {
            return Err(option_error(format!(
                "unknown option \"{key}\" for connector {connector}"
            )));
        }
    }
    Ok(())
}

/// The `datagen` connector.
struct Generated {
    datagen: Datagen,
    pace: Pace,
}

impl Generated {
    fn new(def: &StreamDef) -> Result<Self> {
        check_keys(def, "datagen", &["datagen.", "fields."])?;
        let datagen = Datagen::new(stream_schema(def), &def.options)
            .map_err(|e| option_error(e.to_string()))?;
        Ok(Generated {
            pace: Pace::new(datagen.rows_per_second()),
            datagen,
        })
    }
}

impl SourceConnector for Generated {
    fn next_batch(&mut self) -> Option<RecordBatch> {
        let now = chrono::Utc::now().timestamp_micros();
        match self.datagen.next_batch(self.pace.batch() as usize, now)? {
            Ok(batch) => Some(batch),
            Err(e) => {
                tracing::error!(error = %e, "datagen stopped");
                None
            }
        }
    }

    fn pause(&mut self) -> Duration {
        self.pace.pause(self.datagen.produced())
    }

    fn begin(&mut self) {
        self.pace = Pace::new(self.datagen.rows_per_second());
    }

    fn position(&self) -> serde_json::Value {
        let (produced, states) = self.datagen.position();
        serde_json::json!({ "produced": produced, "states": states })
    }

    fn resume(&mut self, position: &serde_json::Value) -> Result<()> {
        let produced = position["produced"].as_u64();
        let states: Option<Vec<u64>> = position["states"]
            .as_array()
            .and_then(|states| states.iter().map(serde_json::Value::as_u64).collect());
        let (Some(produced), Some(states)) = (produced, states) else {
            return Err(position_error("datagen", position));
        };
        self.datagen.resume(produced, &states);
        Ok(())
    }
}

/// The `file` connector. Each poll's records go out as one batch, so that
/// the source's position is just after the rows handed over.
struct Files {
    source: FileSource,
    /// The last poll found nothing new (a tailed source waits a little).
    idle: bool,
}

impl Files {
    fn new(def: &StreamDef) -> Result<Self> {
        let options: Vec<(String, String)> = def
            .options
            .iter()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("connector") && k != IDLE_TIMEOUT && k != ON_ERROR
            })
            .cloned()
            .collect();
        let source = FileSource::new(stream_schema(def), &options)
            .map_err(|e| option_error(e.to_string()))?;
        Ok(Files {
            source,
            idle: false,
        })
    }
}

impl SourceConnector for Files {
    fn next_batch(&mut self) -> Option<RecordBatch> {
        let batches = match self.source.poll()? {
            Ok(batches) => batches,
            Err(e) => {
                tracing::error!(error = %e, "file source stopped");
                return None;
            }
        };
        self.idle = batches.is_empty();
        let Some(first) = batches.first() else {
            return Some(RecordBatch::new_empty(stream_schema_empty()));
        };
        match datafusion::arrow::compute::concat_batches(&first.schema(), &batches) {
            Ok(batch) => Some(batch),
            Err(e) => {
                tracing::error!(error = %e, "file source stopped");
                None
            }
        }
    }

    fn pause(&mut self) -> Duration {
        if self.idle {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        }
    }

    fn take_rejects(&mut self) -> Vec<Reject> {
        self.source.take_rejects()
    }

    fn stop_at_first_reject(&mut self) {
        self.source.stop_at_first_reject();
    }

    fn position(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = self
            .source
            .position()
            .into_iter()
            .map(|(path, offset, line)| serde_json::json!([path, offset, line]))
            .collect();
        serde_json::Value::Array(files)
    }

    fn resume(&mut self, position: &serde_json::Value) -> Result<()> {
        let files: Option<Vec<(std::path::PathBuf, u64, u64)>> =
            position.as_array().and_then(|files| {
                files
                    .iter()
                    .map(|f| Some((f[0].as_str()?.into(), f[1].as_u64()?, f[2].as_u64()?)))
                    .collect()
            });
        let files = files.ok_or_else(|| position_error("file", position))?;
        self.source.resume(files);
        Ok(())
    }
}

/// A schema without columns, for "nothing new yet".
fn stream_schema_empty() -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::empty())
}

/// The columns of a stream, as Arrow fields.
fn stream_schema(def: &StreamDef) -> SchemaRef {
    crate::catalog::arrow_schema(&def.columns)
}

/// The Nexmark generator, paced in wall-clock time.
struct Nexmark {
    generator: NexmarkGenerator,
    pace: Pace,
    first_event: u64,
}

impl Nexmark {
    fn new(def: &StreamDef) -> Result<Self> {
        check_keys(def, "nexmark", &["nexmark."])?;
        let table = nexmark_table(def)?;
        let config =
            NexmarkConfig::from_options(&def.options).map_err(|e| option_error(e.to_string()))?;
        let first_event = config.first_event;
        Ok(Nexmark {
            pace: Pace::new(config.events_per_second()),
            generator: NexmarkGenerator::new(config, table, first_event),
            first_event,
        })
    }

    /// Events generated so far.
    fn generated(&self) -> u64 {
        self.generator.next_event().saturating_sub(self.first_event)
    }
}

impl SourceConnector for Nexmark {
    fn next_batch(&mut self) -> Option<RecordBatch> {
        self.generator.next_batch(self.pace.batch())
    }

    fn pause(&mut self) -> Duration {
        self.pace.pause(self.generated())
    }

    fn begin(&mut self) {
        self.pace = Pace::new(self.pace.per_second);
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!(self.generator.next_event())
    }

    fn resume(&mut self, position: &serde_json::Value) -> Result<()> {
        let next = position
            .as_u64()
            .ok_or_else(|| position_error("nexmark", position))?;
        let config = self.generator.config().clone();
        self.generator = NexmarkGenerator::new(config, self.generator.table(), next);
        self.first_event = next;
        Ok(())
    }
}
