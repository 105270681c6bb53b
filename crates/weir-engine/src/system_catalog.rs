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
//! - `weir_catalog.checkpoints`: the checkpoints taken since the server
//!   started, and those it found at start (the one it restored, damaged ones).
//!
//! Each read builds the rows afresh from the running jobs.

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

const TABLES: [&str; 6] = [
    "checkpoints",
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
    struct JobRow {
        name: String,
        status: JobStatus,
        /// Operators and state bytes, when it has a job.
        sizes: Option<(i64, i64)>,
        kind: &'static str,
        user: Option<String>,
    }
    let sizes = |job: &weir_runtime::Job| (job.nodes.len() as i64, job.state_bytes() as i64);
    let mut jobs: Vec<JobRow> = Vec::new();
    for relation in db.relations() {
        let Relation::MaterializedView(view) = relation else {
            continue;
        };
        jobs.push(JobRow {
            name: view.def.name.clone(),
            status: view.status(),
            sizes: view.with_job(sizes),
            kind: "materialized view",
            user: None,
        });
    }
    for sink in db.sinks() {
        jobs.push(JobRow {
            name: sink.def.name.clone(),
            status: sink.status(),
            sizes: sink.with_job(sizes),
            kind: "sink",
            user: None,
        });
    }
    for query in db.queries.list() {
        // Gone between the listing and now: not running any more.
        let Some(job) = query.job.upgrade() else {
            continue;
        };
        jobs.push(JobRow {
            name: query.name,
            status: job.status(),
            sizes: Some(sizes(&job)),
            kind: query.kind,
            user: Some(query.user),
        });
    }
    let (mut names, mut statuses, mut errors, mut operators, mut bytes, mut kinds, mut users) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for job in jobs {
        names.push(Some(job.name));
        let (status, error) = status_text(job.status);
        statuses.push(Some(status));
        errors.push(error);
        let (count, state) = job.sizes.unwrap_or((0, 0));
        operators.push(count);
        bytes.push(state);
        kinds.push(Some(job.kind.to_string()));
        users.push(job.user);
    }
    Ok(RecordBatch::try_new(
        schema,
        vec![
            text(names),
            text(statuses),
            text(errors),
            bigint(operators),
            bigint(bytes),
            text(kinds),
            text(users),
        ],
    )?)
}

/// A job's status as the system tables show it, and its error.
fn status_text(status: JobStatus) -> (String, Option<String>) {
    match status {
        JobStatus::Running => ("running".into(), None),
        JobStatus::Finished => ("finished".into(), None),
        JobStatus::Failed(error) => ("failed".into(), Some(error)),
    }
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
    let mut columns: [Vec<Option<String>>; 6] = Default::default();
    let mut rows = Vec::new();
    for sink in db.sinks() {
        let (status, error) = status_text(sink.status());
        let file = sink.option("connector") == Some("file");
        let values = [
            Some(sink.def.name.clone()),
            sink.option("connector").map(str::to_string),
            sink.option("path").map(str::to_string),
            file.then(|| sink.option("format").unwrap_or("jsonl").to_string()),
            Some(status),
            error,
        ];
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
        rows.push(sink.output.rows() as i64);
    }
    let mut arrays: Vec<ArrayRef> = columns.into_iter().map(text).collect();
    arrays.push(bigint(rows));
    Ok(RecordBatch::try_new(schema, arrays)?)
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
    struct Row {
        job: String,
        node: NodeInfo,
    }
    let mut rows = Vec::new();
    for relation in db.relations() {
        let Relation::MaterializedView(view) = relation else {
            continue;
        };
        view.with_job(|job| {
            rows.extend(job.nodes.iter().map(|node| Row {
                job: view.def.name.clone(),
                node: node.clone(),
            }))
        });
    }
    let texts = |f: &dyn Fn(&Row) -> Option<String>| text(rows.iter().map(f).collect());
    let numbers = |f: &dyn Fn(&Row) -> i64| bigint(rows.iter().map(f).collect());
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

fn sources(db: &Database) -> DfResult<RecordBatch> {
    let schema = schema(&[
        ("name", SqlType::Text),
        ("kind", SqlType::Text),
        ("event_time_column", SqlType::Text),
        ("watermark", SqlType::TimestampTz),
        ("late_rows", SqlType::BigInt),
        ("rejected_records", SqlType::BigInt),
    ]);
    let (mut names, mut kinds, mut columns, mut marks, mut late, mut rejected) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for relation in db.relations() {
        let (kind, event_time, schema) = match &relation {
            Relation::Table(t) => ("table", t.event_time.as_ref(), t.schema_ref().clone()),
            Relation::Stream(s) => ("stream", s.event_time.as_ref(), s.schema().clone()),
            _ => continue,
        };
        names.push(Some(relation.name().to_string()));
        kinds.push(Some(kind.to_string()));
        columns.push(event_time.map(|e| schema.field(e.column).name().clone()));
        marks.push(event_time.and_then(|e| e.current_micros()));
        late.push(db.late_rows().count(relation.name()) as i64);
        rejected.push(match &relation {
            Relation::Stream(s) => s.rejected.load(Ordering::Relaxed) as i64,
            _ => 0,
        });
    }
    Ok(RecordBatch::try_new(
        schema,
        vec![
            text(names),
            text(kinds),
            text(columns),
            timestamptz(marks),
            bigint(late),
            bigint(rejected),
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
