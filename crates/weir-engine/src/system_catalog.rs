//! The `weir_catalog` schema: the state of streaming, as tables.
//!
//! - `weir_catalog.jobs`: one row per materialized view's, sink's,
//!   continuous query's or subscription's job (status, state);
//! - `weir_catalog.sinks`: one row per sink (connector, path, format, status,
//!   rows written since the start);
//! - `weir_catalog.operators`: one row per operator of each job (rows in and
//!   out, current watermark, state size);
//! - `weir_catalog.sources`: tables and streams with event time (watermark,
//!   late rows counted);
//! - `weir_catalog.late_rows`: the late rows kept, with the watermark each
//!   found when it arrived;
//! - `weir_catalog.dead_letters`: the records streams' sources could not
//!   read, with where they were and why;
//! - `weir_catalog.checkpoints`: the checkpoints taken since the server
//!   started, and those it found at start (the one it restored, damaged ones).
//!
//! Each read builds the rows afresh from the running jobs. The rows of
//! jobs, operators, sources and sinks are gathered by `job_rows`,
//! `operator_rows`, `source_rows` and `sink_rows`, which the Prometheus
//! metrics ([`crate::metrics`]) read too.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::MemTable;
use weir_runtime::{JobStatus, NodeInfo};
use weir_sql::SqlType;

use crate::database::Database;
use crate::relation::Relation;
use crate::text_format::{OutputFormat, write_text};

/// The name of the schema.
pub const SYSTEM_SCHEMA: &str = "weir_catalog";

const TABLES: [&str; 7] = [
    "checkpoints",
    "dead_letters",
    "jobs",
    "late_rows",
    "operators",
    "sinks",
    "sources",
];

/// The `weir_catalog` schema of one database.
#[derive(Debug)]
pub struct SystemSchema {
    db: std::sync::Weak<Database>,
}

impl SystemSchema {
    pub fn new(db: &Arc<Database>) -> Self {
        SystemSchema {
            db: Arc::downgrade(db),
        }
    }
}

fn schema(columns: &[(&str, SqlType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, ty)| ty.field(name, true))
            .collect::<Vec<_>>(),
    ))
}

fn text(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn bigint(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn timestamptz(values: Vec<Option<i64>>) -> ArrayRef {
    let zone = match SqlType::TimestampTz.arrow_type() {
        datafusion::arrow::datatypes::DataType::Timestamp(_, zone) => zone,
        _ => None,
    };
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(zone))
}

/// A watermark in Postgres' text format.
fn watermark_text(value: &datafusion::common::ScalarValue) -> Option<String> {
    let array = value.to_array().ok()?;
    let mut out = String::new();
    write_text(&array, 0, &OutputFormat::default(), &mut out).ok()?;
    Some(out)
}

/// A job, as `weir_catalog.jobs` lists it.
#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub(crate) name: String,
    pub(crate) status: JobStatus,
    /// Its operators; 0 when it has no job (finished and restored so).
    pub(crate) operators: usize,
    /// The state of its operators, in bytes; 0 when it has no job.
    pub(crate) state_bytes: u64,
    /// `materialized view`, `sink`, `continuous query` or `subscribe`.
    pub(crate) kind: &'static str,
    /// The session's user, for a continuous query or subscription.
    pub(crate) user: Option<String>,
}

/// The jobs of a database: materialized views', sinks', then the running
/// queries'.
pub(crate) fn job_rows(db: &Database) -> Vec<JobRow> {
    let sizes = |job: &weir_runtime::Job| (job.nodes.len(), job.state_bytes());
    let mut rows: Vec<JobRow> = Vec::new();
    for relation in db.relations() {
        let Relation::MaterializedView(view) = relation else {
            continue;
        };
        let status = view.status();
        let (operators, state_bytes) = view.with_job(sizes).unwrap_or((0, 0));
        rows.push(JobRow {
            name: view.def.name.clone(),
            status,
            operators,
            state_bytes,
            kind: "materialized view",
            user: None,
        });
    }
    for sink in db.sinks() {
        let status = sink.status();
        let (operators, state_bytes) = sink.with_job(sizes).unwrap_or((0, 0));
        rows.push(JobRow {
            name: sink.def.name.clone(),
            status,
            operators,
            state_bytes,
            kind: "sink",
            user: None,
        });
    }
    for query in db.queries.list() {
        // Gone between the listing and now: not running any more.
        let Some(job) = query.job.upgrade() else {
            continue;
        };
        let (operators, state_bytes) = sizes(&job);
        rows.push(JobRow {
            name: query.name,
            status: job.status(),
            operators,
            state_bytes,
            kind: query.kind,
            user: Some(query.user),
        });
    }
    rows
}

fn jobs(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("name", SqlType::Text),
        ("status", SqlType::Text),
        ("error", SqlType::Text),
        ("operators", SqlType::BigInt),
        ("state_bytes", SqlType::BigInt),
        ("kind", SqlType::Text),
        ("user_name", SqlType::Text),
    ]);
    let rows = job_rows(db);
    let (statuses, errors): (Vec<_>, Vec<_>) = rows
        .iter()
        .map(|r| {
            let (status, error) = status_text(&r.status);
            (Some(status), error)
        })
        .unzip();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            text(rows.iter().map(|r| Some(r.name.clone())).collect()),
            text(statuses),
            text(errors),
            bigint(rows.iter().map(|r| r.operators as i64).collect()),
            bigint(rows.iter().map(|r| r.state_bytes as i64).collect()),
            text(rows.iter().map(|r| Some(r.kind.to_string())).collect()),
            text(rows.iter().map(|r| r.user.clone()).collect()),
        ],
    )?)
}

/// A job's status as the system tables show it: `running`, `finished` or
/// `failed`.
pub(crate) fn status_name(status: &JobStatus) -> &'static str {
    match status {
        JobStatus::Running => "running",
        JobStatus::Finished => "finished",
        JobStatus::Failed(_) => "failed",
    }
}

/// A job's status as the system tables show it, and its error.
fn status_text(status: &JobStatus) -> (String, Option<String>) {
    let error = match status {
        JobStatus::Failed(error) => Some(error.clone()),
        _ => None,
    };
    (status_name(status).to_string(), error)
}

/// A sink, as `weir_catalog.sinks` lists it.
#[derive(Debug, Clone)]
pub(crate) struct SinkRow {
    pub(crate) name: String,
    pub(crate) connector: Option<String>,
    pub(crate) path: Option<String>,
    /// The file connector's format (`jsonl` unless set); `None` for others.
    pub(crate) format: Option<String>,
    pub(crate) status: JobStatus,
    /// Rows written since the server started.
    pub(crate) rows_written: u64,
}

/// The sinks of a database, in creation order.
pub(crate) fn sink_rows(db: &Database) -> Vec<SinkRow> {
    db.sinks()
        .iter()
        .map(|sink| {
            let file = sink.option("connector") == Some("file");
            SinkRow {
                name: sink.def.name.clone(),
                connector: sink.option("connector").map(str::to_string),
                path: sink.option("path").map(str::to_string),
                format: file.then(|| sink.option("format").unwrap_or("jsonl").to_string()),
                status: sink.status(),
                rows_written: sink.output.rows(),
            }
        })
        .collect()
}

fn sinks(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("name", SqlType::Text),
        ("connector", SqlType::Text),
        ("path", SqlType::Text),
        ("format", SqlType::Text),
        ("status", SqlType::Text),
        ("error", SqlType::Text),
        ("rows_written", SqlType::BigInt),
    ]);
    let rows = sink_rows(db);
    let (statuses, errors): (Vec<_>, Vec<_>) = rows
        .iter()
        .map(|r| {
            let (status, error) = status_text(&r.status);
            (Some(status), error)
        })
        .unzip();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            text(rows.iter().map(|r| Some(r.name.clone())).collect()),
            text(rows.iter().map(|r| r.connector.clone()).collect()),
            text(rows.iter().map(|r| r.path.clone()).collect()),
            text(rows.iter().map(|r| r.format.clone()).collect()),
            text(statuses),
            text(errors),
            bigint(rows.iter().map(|r| r.rows_written as i64).collect()),
        ],
    )?)
}

/// An operator of a materialized view's job, as `weir_catalog.operators`
/// lists it.
#[derive(Debug, Clone)]
pub(crate) struct OperatorRow {
    /// The materialized view.
    pub(crate) job: String,
    pub(crate) node: NodeInfo,
}

/// The operators of every materialized view's running job.
pub(crate) fn operator_rows(db: &Database) -> Vec<OperatorRow> {
    let mut rows = Vec::new();
    for relation in db.relations() {
        let Relation::MaterializedView(view) = relation else {
            continue;
        };
        view.with_job(|job| {
            rows.extend(job.nodes.iter().map(|node| OperatorRow {
                job: view.def.name.clone(),
                node: node.clone(),
            }))
        });
    }
    rows
}

fn operators(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("job", SqlType::Text),
        ("id", SqlType::BigInt),
        ("operator", SqlType::Text),
        ("detail", SqlType::Text),
        ("inputs", SqlType::Text),
        ("parallelism", SqlType::BigInt),
        ("rows_in", SqlType::BigInt),
        ("rows_out", SqlType::BigInt),
        ("watermark", SqlType::Text),
        ("state_bytes", SqlType::BigInt),
    ]);
    let rows = operator_rows(db);
    let texts = |f: &dyn Fn(&OperatorRow) -> Option<String>| text(rows.iter().map(f).collect());
    let numbers = |f: &dyn Fn(&OperatorRow) -> i64| bigint(rows.iter().map(f).collect());
    Ok(RecordBatch::try_new(
        schema,
        vec![
            texts(&|r| Some(r.job.clone())),
            numbers(&|r| r.node.id as i64),
            texts(&|r| Some(r.node.name.to_string())),
            texts(&|r| Some(r.node.describe.clone())),
            texts(&|r| Some(r.node.inputs.join(", "))),
            numbers(&|r| r.node.parallelism() as i64),
            numbers(&|r| r.node.rows_in() as i64),
            numbers(&|r| r.node.rows_out() as i64),
            texts(&|r| r.node.watermark().as_ref().and_then(watermark_text)),
            numbers(&|r| r.node.state_bytes() as i64),
        ],
    )?)
}

/// A table or stream, as `weir_catalog.sources` lists it.
#[derive(Debug, Clone)]
pub(crate) struct SourceRow {
    pub(crate) name: String,
    /// `table` or `stream`.
    pub(crate) kind: &'static str,
    /// Its event time column, when it has one.
    pub(crate) event_time_column: Option<String>,
    /// Its watermark, in microseconds since the epoch, once it has one.
    pub(crate) watermark_micros: Option<i64>,
    /// Late rows counted since the server started.
    pub(crate) late_rows: u64,
    /// Records its connector could not read (streams only; 0 for tables).
    pub(crate) rejected_records: u64,
    /// Dead letters kept (streams only).
    pub(crate) dead_letters: u64,
}

/// The tables and streams of a database, in creation order.
pub(crate) fn source_rows(db: &Database) -> Vec<SourceRow> {
    let mut rows = Vec::new();
    for relation in db.relations() {
        let (kind, event_time, fields) = match &relation {
            Relation::Table(t) => ("table", t.event_time.as_ref(), t.schema_ref().clone()),
            Relation::Stream(s) => ("stream", s.event_time.as_ref(), s.schema().clone()),
            _ => continue,
        };
        rows.push(SourceRow {
            name: relation.name().to_string(),
            kind,
            event_time_column: event_time.map(|e| fields.field(e.column).name().clone()),
            watermark_micros: event_time.and_then(|e| e.current_micros()),
            late_rows: db.late_rows().count(relation.name()),
            rejected_records: match &relation {
                Relation::Stream(s) => s.rejected.load(Ordering::Relaxed),
                _ => 0,
            },
            dead_letters: match &relation {
                Relation::Stream(s) => s.dead_letter_count() as u64,
                _ => 0,
            },
        });
    }
    rows
}

fn sources(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("name", SqlType::Text),
        ("kind", SqlType::Text),
        ("event_time_column", SqlType::Text),
        ("watermark", SqlType::TimestampTz),
        ("late_rows", SqlType::BigInt),
        ("rejected_records", SqlType::BigInt),
        ("dead_letters", SqlType::BigInt),
    ]);
    let rows = source_rows(db);
    Ok(RecordBatch::try_new(
        schema,
        vec![
            text(rows.iter().map(|r| Some(r.name.clone())).collect()),
            text(rows.iter().map(|r| Some(r.kind.to_string())).collect()),
            text(rows.iter().map(|r| r.event_time_column.clone()).collect()),
            timestamptz(rows.iter().map(|r| r.watermark_micros).collect()),
            bigint(rows.iter().map(|r| r.late_rows as i64).collect()),
            bigint(rows.iter().map(|r| r.rejected_records as i64).collect()),
            bigint(rows.iter().map(|r| r.dead_letters as i64).collect()),
        ],
    )?)
}

fn checkpoints(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("epoch", SqlType::BigInt),
        ("started_at", SqlType::TimestampTz),
        ("duration_ms", SqlType::BigInt),
        ("bytes_written", SqlType::BigInt),
        ("state_bytes", SqlType::BigInt),
        ("status", SqlType::Text),
        ("detail", SqlType::Text),
    ]);
    let history = db.checkpoint_history();
    let column = |f: &dyn Fn(&crate::checkpoint::CheckpointRecord) -> i64| -> ArrayRef {
        bigint(history.iter().map(f).collect())
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            column(&|c| c.epoch as i64),
            timestamptz(
                history
                    .iter()
                    .map(|c| (c.started_at_ms > 0).then_some(c.started_at_ms as i64 * 1000))
                    .collect(),
            ),
            column(&|c| c.duration_ms as i64),
            column(&|c| c.bytes_written as i64),
            column(&|c| c.state_bytes as i64),
            text(history.iter().map(|c| Some(c.status.to_string())).collect()),
            text(history.iter().map(|c| c.detail.clone()).collect()),
        ],
    )?)
}

fn late_rows(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("relation", SqlType::Text),
        ("row", SqlType::Text),
        ("watermark", SqlType::TimestampTz),
        ("arrived_at", SqlType::TimestampTz),
    ]);
    let rows = db.late_rows().rows();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            text(rows.iter().map(|r| Some(r.relation.clone())).collect()),
            text(rows.iter().map(|r| Some(r.row.clone())).collect()),
            timestamptz(rows.iter().map(|r| Some(r.watermark)).collect()),
            timestamptz(rows.iter().map(|r| Some(r.arrived_at)).collect()),
        ],
    )?)
}

fn dead_letters(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("stream", SqlType::Text),
        ("source", SqlType::Text),
        ("line", SqlType::BigInt),
        ("record", SqlType::Text),
        ("error", SqlType::Text),
        ("read_at", SqlType::TimestampTz),
    ]);
    let mut rows = Vec::new();
    for relation in db.relations() {
        if let Relation::Stream(stream) = relation {
            let name = stream.def.name.clone();
            rows.extend(stream.dead_letters().into_iter().map(|l| (name.clone(), l)));
        }
    }
    Ok(RecordBatch::try_new(
        schema,
        vec![
            text(rows.iter().map(|(s, _)| Some(s.clone())).collect()),
            text(rows.iter().map(|(_, l)| Some(l.source.clone())).collect()),
            bigint(rows.iter().map(|(_, l)| l.line as i64).collect()),
            text(rows.iter().map(|(_, l)| Some(l.record.clone())).collect()),
            text(rows.iter().map(|(_, l)| Some(l.error.clone())).collect()),
            timestamptz(rows.iter().map(|(_, l)| Some(l.read_at)).collect()),
        ],
    )?)
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(db) = self.db.upgrade() else {
            return Ok(None);
        };
        let batch = match name {
            "jobs" => jobs(&db)?,
            "sinks" => sinks(&db)?,
            "operators" => operators(&db)?,
            "sources" => sources(&db)?,
            "late_rows" => late_rows(&db)?,
            "dead_letters" => dead_letters(&db)?,
            "checkpoints" => checkpoints(&db)?,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
