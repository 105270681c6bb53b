//! A stream: rows that flow through to the materialized views reading it and
//! are not stored. It is fed by `INSERT` or by a connector; what `INSERT`
//! writes is logged (see [`crate::write_log`]), what a connector produces is
//! not.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tokio::task::JoinHandle;
use weir_runtime::{Chunk, Feed, Message};
use weir_state::{Change, Commit, Wal};

use crate::catalog::StreamDef;
use crate::dead_letters::{DeadLetter, DeadLetters, OnError};
use crate::error::Result;
use crate::event_time::EventTime;
use crate::late_rows::LateRows;
use crate::write_log;

/// Where ingested rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A user's `INSERT`: logged.
    Insert,
    /// The stream's connector, which is at `position` just after the rows
    /// and the records it could not read among them (`dead_letters`, kept
    /// with the stream): not logged (checkpoints keep the position, and the
    /// connector resumes from it).
    Connector {
        position: serde_json::Value,
        dead_letters: Vec<DeadLetter>,
    },
}

/// A stream.
#[derive(Debug)]
pub struct Stream {
    pub def: StreamDef,
    schema: SchemaRef,
    pub feed: Arc<Feed>,
    pub event_time: Option<EventTime>,
    /// Serializes ingestion, so that rows and the watermarks they advance are
    /// published in order.
    pub(crate) ingest: tokio::sync::Mutex<()>,
    /// What becomes of records the connector cannot read.
    pub on_error: OnError,
    /// Records the connector could not read, since the server started.
    pub rejected: std::sync::atomic::AtomicU64,
    /// The records set aside with `on_error = 'dead_letter'` (changed under
    /// the ingestion lock, with the position, so that a checkpoint keeps
    /// exactly those before its position).
    dead_letters: Mutex<DeadLetters>,
    /// When rows last arrived (for `idle_timeout`).
    last_rows: Mutex<Instant>,
    /// The connector and idleness tasks, stopped when the stream is dropped.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The log of what users write.
    wal: Arc<Wal>,
    /// Where the connector is, just after the rows ingested so far (changed
    /// under the ingestion lock, with the rows).
    position: Mutex<Option<serde_json::Value>>,
}

impl Stream {
    pub fn new(
        def: StreamDef,
        schema: SchemaRef,
        event_time: Option<EventTime>,
        on_error: OnError,
        wal: Arc<Wal>,
    ) -> Self {
        Stream {
            def,
            feed: Feed::new(schema.clone()),
            schema,
            event_time,
            ingest: tokio::sync::Mutex::new(()),
            on_error,
            rejected: std::sync::atomic::AtomicU64::new(0),
            dead_letters: Mutex::new(DeadLetters::default()),
            last_rows: Mutex::new(Instant::now()),
            tasks: Mutex::new(Vec::new()),
            wal,
            position: Mutex::new(None),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Keeps a task of the stream (its connector, its idleness watch),
    /// stopped when the stream is dropped.
    pub fn attach_task(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// How long since rows last arrived.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Advances the watermark to processing time (the source is idle), and
    /// publishes it if it moved. The move is logged unless a connector feeds
    /// the stream (it would differ on restart anyway).
    pub async fn follow_processing_time(&self) -> Result<()> {
        let Some(event_time) = &self.event_time else {
            return Ok(());
        };
        let _ingest = self.ingest.lock().await;
        let now = chrono::Utc::now().timestamp_micros();
        if let Some(watermark) = event_time.advance_to(now)? {
            if !self.def.has_connector() {
                // Nobody waits: it is durable with the next sync.
                write_log::append(
                    &self.wal,
                    self.def.oid,
                    &[Change::Watermark { micros: now }],
                )?;
            }
            self.feed.publish(Message::Watermark(watermark)).await;
        }
        Ok(())
    }

    /// Ends the stream (its bounded connector reached its end, at
    /// `position`): the jobs reading it finish once they have passed on its
    /// rows.
    pub async fn end(&self, position: serde_json::Value) {
        let _ingest = self.ingest.lock().await;
        self.record_position(position);
        self.feed.end().await;
    }

    /// Records where the connector is when it moved without rows, and the
    /// records it could not read on the way.
    pub async fn set_position(&self, position: serde_json::Value, dead_letters: Vec<DeadLetter>) {
        let _ingest = self.ingest.lock().await;
        self.record_position(position);
        self.keep_dead_letters(dead_letters);
    }

    /// Puts back the dead letters a checkpoint kept (at startup).
    pub fn restore_dead_letters(&self, letters: Vec<DeadLetter>) {
        self.keep_dead_letters(letters);
    }

    fn keep_dead_letters(&self, letters: Vec<DeadLetter>) {
        if letters.is_empty() {
            return;
        }
        let dropped = self
            .dead_letters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(letters);
        if dropped > 0 {
            tracing::warn!(
                stream = %self.def.name, dropped,
                "more dead letters than a stream keeps ({}): the oldest were dropped",
                crate::dead_letters::KEPT_DEAD_LETTERS
            );
        }
    }

    /// How many dead letters are kept.
    pub fn dead_letter_count(&self) -> usize {
        self.dead_letters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The dead letters kept, oldest first; the caller holds the ingestion
    /// lock when they must match the position (a checkpoint).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .list()
    }

    /// Stops the stream at a record it must not skip: every job reading it
    /// fails with `reason`. The position stays before the record.
    pub async fn fail(&self, reason: String) {
        let _ingest = self.ingest.lock().await;
        self.feed.fail(reason).await;
    }

    fn record_position(&self, position: serde_json::Value) {
        *self.position.lock().unwrap_or_else(|p| p.into_inner()) = Some(position);
    }

    /// Where the connector is; the caller holds the ingestion lock, so that
    /// the position matches the rows published.
    pub(crate) fn position(&self) -> Option<serde_json::Value> {
        self.position
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Admits rows: late rows are recorded, the others published with the
    /// watermark they advance (and logged, for an `INSERT`). Returns the
    /// number of rows admitted, and what waits for the log to hold them.
    pub async fn ingest(
        &self,
        batch: RecordBatch,
        late_rows: &LateRows,
        origin: Origin,
    ) -> Result<(usize, Option<Commit>)> {
        let _ingest = self.ingest.lock().await;
        *self.last_rows.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let (rows, watermark) = match &self.event_time {
            Some(event_time) => {
                let admitted = event_time.admit(&batch)?;
                event_time.commit(&admitted);
                if let Some((late, marks)) = &admitted.late {
                    late_rows.record(&self.def.name, late, marks);
                }
                let micros = admitted
                    .watermark
                    .as_ref()
                    .and_then(|_| event_time.current_micros());
                (admitted.on_time, admitted.watermark.zip(micros))
            }
            None => (batch, None),
        };
        let count = rows.num_rows();
        let commit = match origin {
            Origin::Connector {
                position,
                dead_letters,
            } => {
                self.record_position(position);
                self.keep_dead_letters(dead_letters);
                None
            }
            Origin::Insert => {
                let mut changes = Vec::new();
                if count > 0 {
                    changes.push(Change::rows(rows.clone(), None));
                }
                if let Some((_, micros)) = &watermark {
                    changes.push(Change::Watermark { micros: *micros });
                }
                write_log::append(&self.wal, self.def.oid, &changes)?
            }
        };
        if count > 0 {
            self.feed
                .publish(Message::Chunk(Chunk::inserts(rows)))
                .await;
        }
        if let Some((watermark, _)) = watermark {
            self.feed.publish(Message::Watermark(watermark)).await;
        }
        Ok((count, commit))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|p| p.into_inner());
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

#[async_trait]
impl TableProvider for Stream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::NotImplemented(format!(
            "reading stream \"{}\" in a one-off query (a stream stores no rows; \
             read it in a materialized view)",
            self.def.name
        )))
    }
}
