//! Checkpoints: a consistent copy of every table's rows, every materialized
//! view's rows and operator state, and every connector's position, written
//! to object storage, so that a restart resumes from it and replays only the
//! part of the write-ahead log that came after.
//!
//! Taking one ([`Engine::checkpoint`], every `--checkpoint-interval` and on
//! `CHECKPOINT`):
//! 1. Under the DDL lock, the barrier lock and the write lock of every table
//!    and stream (in OID order, as `DROP` and starting jobs take them): read
//!    the log position, take each table's rows (a snapshot, not a copy), each
//!    relation's watermark and each connector's position, and inject a
//!    checkpoint barrier into every changelog. Writers wait only for this.
//! 2. Wait until every materialized view has applied the barrier: each of
//!    its operators handed over its state as the barrier passed
//!    (`weir_runtime::checkpoint`), and its sink kept its rows.
//! 3. Write every table's and view's rows and every operator's state as
//!    Arrow IPC files, then the manifest: the commit point.
//! 4. Keep the last [`KEEP`] committed checkpoints; delete the others.
//!
//! Recovery ([`Recovery`]): the newest committed checkpoint whose files
//! check out (a damaged one is reported, and the one before is used). Tables
//! get their rows back, streams their watermark and connector position,
//! views their rows and their operators their state; then the log is
//! replayed from the checkpoint's position.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use weir_runtime::{JobStatus, Message, OperatorState};
use weir_state::{CheckpointStore, Manifest, TableWriter};

use crate::database::Database;
use crate::engine::Engine;
use crate::error::{Result, WeirError, sqlstate};
use crate::materialized_view::MaterializedView;
use crate::relation::Relation;

/// Committed checkpoints kept: recovery falls back to an older one when the
/// newest is damaged, and the log is kept from the oldest one's position.
pub const KEEP: usize = 3;

/// Checkpoints listed by `weir_catalog.checkpoints` (the latest ones).
const HISTORY: usize = 100;

/// What the manifest says about the relations, besides the files.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Content {
    relations: Vec<RelationState>,
}

/// One relation at a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RelationState {
    database: u32,
    oid: u32,
    #[serde(default)]
    watermark_micros: Option<i64>,
    /// A stream's connector position.
    #[serde(default)]
    source_position: Option<serde_json::Value>,
    /// The file with a table's or a view's rows.
    #[serde(default)]
    rows: Option<String>,
    /// A view's operator states.
    #[serde(default)]
    operators: Vec<OperatorFile>,
    /// A view whose job had finished (its sources ended): its rows are
    /// final and no job runs again.
    #[serde(default)]
    finished: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OperatorFile {
    node: usize,
    subtask: usize,
    file: String,
}

/// A row of `weir_catalog.checkpoints`.
#[derive(Debug, Clone)]
pub struct CheckpointRecord {
    pub epoch: u64,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub bytes_written: u64,
    pub state_bytes: u64,
    /// `committed`, `failed`, `damaged` (found at start, not used), or
    /// `restored` (the one the server started from).
    pub status: &'static str,
    pub detail: Option<String>,
}

/// The checkpoints of an engine: where they go and what happened to them.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    store: CheckpointStore,
    /// One checkpoint at a time.
    running: tokio::sync::Mutex<()>,
    history: CheckpointHistory,
}

/// The checkpoints `weir_catalog.checkpoints` lists, shared with every
/// database.
pub type CheckpointHistory = Arc<std::sync::Mutex<Vec<CheckpointRecord>>>;

impl Checkpoints {
    pub(crate) fn new(store: CheckpointStore) -> Self {
        Checkpoints {
            store,
            running: tokio::sync::Mutex::new(()),
            history: CheckpointHistory::default(),
        }
    }

    pub(crate) fn history(&self) -> &CheckpointHistory {
        &self.history
    }

    pub(crate) fn record(&self, record: CheckpointRecord) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.push(record);
        if history.len() > HISTORY {
            history.remove(0);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn storage_error(e: impl std::fmt::Display) -> WeirError {
    WeirError::new(sqlstate::IO_ERROR, format!("checkpoint storage: {e}"))
}

/// The write lock of a relation, held while the checkpoint barrier goes in.
enum Held<'a> {
    Table(TableWriter<'a>),
    Stream(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>),
    None,
}

/// Rows to write: a table's or a view's.
struct RowsToWrite {
    file: String,
    schema: arrow::datatypes::SchemaRef,
    batches: Arc<[RecordBatch]>,
}

impl Engine {
    /// Takes a checkpoint (see the module documentation); returns its epoch.
    pub async fn checkpoint(&self) -> Result<u64> {
        let checkpoints = self.checkpoints();
        let _running = checkpoints.running.lock().await;
        let started_at_ms = now_ms();
        let clock = Instant::now();
        let result = self.take_checkpoint(started_at_ms, clock).await;
        match &result {
            Ok((epoch, bytes)) => {
                checkpoints.record(CheckpointRecord {
                    epoch: *epoch,
                    started_at_ms,
                    duration_ms: clock.elapsed().as_millis() as u64,
                    bytes_written: *bytes,
                    state_bytes: *bytes,
                    status: "committed",
                    detail: None,
                });
                tracing::debug!(epoch, bytes, "checkpoint committed");
            }
            Err((epoch, e)) => {
                checkpoints.record(CheckpointRecord {
                    epoch: *epoch,
                    started_at_ms,
                    duration_ms: clock.elapsed().as_millis() as u64,
                    bytes_written: 0,
                    state_bytes: 0,
                    status: "failed",
                    detail: Some(e.message.clone()),
                });
                tracing::warn!(epoch, error = %e.message, "checkpoint failed");
            }
        }
        result.map(|(epoch, _)| epoch).map_err(|(_, e)| e)
    }

    /// Takes a checkpoint; its epoch and bytes written, or the error with
    /// the epoch it had.
    async fn take_checkpoint(
        &self,
        started_at_ms: u64,
        clock: Instant,
    ) -> std::result::Result<(u64, u64), (u64, WeirError)> {
        let store = &self.checkpoints().store;
        let mut content = Content::default();
        let mut rows: Vec<RowsToWrite> = Vec::new();
        let mut views: Vec<(u32, Arc<MaterializedView>)> = Vec::new();
        let (epoch, log_position) = {
            let _ddl = self.ddl_lock().await;
            let mut barriers = self.barrier_lock().await;
            *barriers += 1;
            let epoch = *barriers;
            let mut relations: Vec<(Arc<Database>, Relation)> = Vec::new();
            for db in self.databases().list() {
                let mut of_db = db.relations();
                of_db.sort_by_key(Relation::oid);
                relations.extend(of_db.into_iter().map(|r| (db.clone(), r)));
            }
            let mut held = Vec::with_capacity(relations.len());
            for (_, relation) in &relations {
                held.push(match relation {
                    Relation::Table(table) => Held::Table(table.data.writer().await),
                    Relation::Stream(stream) => Held::Stream(stream.ingest.lock().await),
                    _ => Held::None,
                });
            }
            let log_position = self.wal().position();
            let barrier = Message::Barrier(weir_runtime::Barrier::checkpoint(epoch));
            for ((db, relation), held) in relations.iter().zip(&held) {
                let mut state = RelationState {
                    database: db.oid,
                    oid: relation.oid(),
                    watermark_micros: None,
                    source_position: None,
                    rows: None,
                    operators: Vec::new(),
                    finished: false,
                };
                match (relation, held) {
                    (Relation::Table(table), Held::Table(writer)) => {
                        state.watermark_micros =
                            table.event_time.as_ref().and_then(|e| e.current_micros());
                        let file = format!("db{}-table{}.arrow", db.oid, table.def.oid);
                        rows.push(RowsToWrite {
                            file: file.clone(),
                            schema: table.data.schema().clone(),
                            batches: writer.snapshot(),
                        });
                        state.rows = Some(file);
                        table.feed.publish(barrier.clone()).await;
                    }
                    (Relation::Stream(stream), Held::Stream(_)) => {
                        state.watermark_micros =
                            stream.event_time.as_ref().and_then(|e| e.current_micros());
                        state.source_position = stream.position();
                        stream.feed.publish(barrier.clone()).await;
                    }
                    (Relation::MaterializedView(view), _) => {
                        views.push((db.oid, view.clone()));
                        continue;
                    }
                    _ => continue,
                }
                content.relations.push(state);
            }
            (epoch, log_position)
        };
        let failed = |e: WeirError| (epoch, e);

        // Every view applies the barrier; its operators have handed over
        // their state by then.
        for (db, view) in views {
            self.wait_for_epoch(&view, epoch).await.map_err(failed)?;
            let name = format!("db{db}-view{}", view.def.oid);
            let mut state = RelationState {
                database: db,
                oid: view.def.oid,
                watermark_micros: None,
                source_position: None,
                rows: Some(format!("{name}.arrow")),
                operators: Vec::new(),
                finished: false,
            };
            let batches = match view.sink.checkpointed(epoch) {
                Some(checkpoint) => {
                    let states = view
                        .with_job(|job| job.states().take(epoch))
                        .unwrap_or(Ok(Vec::new()))
                        .map_err(|e| {
                            failed(WeirError::new(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                format!("materialized view \"{}\": {e}", view.def.name),
                            ))
                        })?;
                    for OperatorState {
                        node,
                        subtask,
                        state: batch,
                    } in states
                    {
                        let file = format!("{name}-node{node}-{subtask}.arrow");
                        rows.push(RowsToWrite {
                            file: file.clone(),
                            schema: batch.schema(),
                            batches: Arc::from(vec![batch]),
                        });
                        state.operators.push(OperatorFile {
                            node,
                            subtask,
                            file,
                        });
                    }
                    checkpoint.rows
                }
                // Its job finished (its sources ended) before the barrier:
                // its rows are final, it keeps no state.
                None => {
                    state.finished = true;
                    view.sink.data().snapshot().map_err(|e| failed(e.into()))?
                }
            };
            rows.push(RowsToWrite {
                file: format!("{name}.arrow"),
                schema: view.sink.data().schema().clone(),
                batches,
            });
            content.relations.push(state);
        }

        let mut files = Vec::with_capacity(rows.len());
        for to_write in rows {
            files.push(
                store
                    .write_batches(epoch, &to_write.file, &to_write.schema, &to_write.batches)
                    .await
                    .map_err(|e| failed(storage_error(e)))?,
            );
        }
        let manifest = Manifest {
            version: weir_state::checkpoint::MANIFEST_VERSION,
            epoch,
            log_position,
            started_at_ms,
            duration_ms: clock.elapsed().as_millis() as u64,
            files,
            engine: serde_json::to_value(&content)
                .map_err(|e| failed(WeirError::internal(e.to_string())))?,
        };
        store
            .commit(&manifest)
            .await
            .map_err(|e| failed(storage_error(e)))?;
        self.prune(epoch).await;
        Ok((epoch, manifest.bytes()))
    }

    /// Waits until `view` has applied the barrier of `epoch` (or finished).
    pub(crate) async fn wait_for_epoch(&self, view: &MaterializedView, epoch: u64) -> Result<()> {
        let mut epochs = view.sink.epochs();
        loop {
            if *epochs.borrow_and_update() >= epoch {
                return Ok(());
            }
            let Some(status) = view.with_job(|job| job.status()) else {
                return Ok(()); // dropped meanwhile, or restored finished
            };
            match status {
                JobStatus::Running => {}
                // Its inputs ended: it has applied all there is.
                JobStatus::Finished => return Ok(()),
                JobStatus::Failed(error) => {
                    return Err(WeirError::new(
                        sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "materialized view \"{}\" has stopped: {error}",
                            view.def.name
                        ),
                    )
                    .with_hint("Drop the materialized view and create it again."));
                }
            }
            // Wake up now and then to notice a job that failed.
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), epochs.changed()).await;
        }
    }

    /// Deletes all but the last [`KEEP`] committed checkpoints (and
    /// uncommitted ones older than `latest`). Failures are only logged: the
    /// next checkpoint tries again.
    async fn prune(&self, latest: u64) {
        let store = &self.checkpoints().store;
        let epochs = match store.epochs().await {
            Ok(epochs) => epochs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list checkpoints");
                return;
            }
        };
        let mut committed = 0;
        for epoch in epochs.into_iter().rev() {
            if epoch > latest {
                continue; // not ours
            }
            let keep = committed < KEEP && matches!(store.manifest(epoch).await, Ok(Some(_)));
            if keep {
                committed += 1;
                continue;
            }
            if let Err(e) = store.remove(epoch).await {
                tracing::warn!(epoch, error = %e, "cannot delete an old checkpoint");
            }
        }
    }
}

/// The checkpoint a server starts from.
pub(crate) struct Recovery {
    store: CheckpointStore,
    manifest: Manifest,
    relations: HashMap<u32, RelationState>,
}

impl Recovery {
    /// The newest committed checkpoint that checks out. Damaged ones are
    /// logged and listed (in `records`), and skipped.
    pub(crate) async fn find(
        store: &CheckpointStore,
        records: &mut Vec<CheckpointRecord>,
    ) -> Result<Option<Recovery>> {
        let epochs = store.epochs().await.map_err(storage_error)?;
        for epoch in epochs.into_iter().rev() {
            let damaged = |detail: String, records: &mut Vec<CheckpointRecord>| {
                tracing::warn!(epoch, error = %detail, "checkpoint damaged: falling back to an older one");
                records.push(CheckpointRecord {
                    epoch,
                    started_at_ms: 0,
                    duration_ms: 0,
                    bytes_written: 0,
                    state_bytes: 0,
                    status: "damaged",
                    detail: Some(detail),
                });
            };
            let manifest = match store.manifest(epoch).await {
                Ok(Some(manifest)) => manifest,
                Ok(None) => continue, // never committed
                Err(e) => {
                    damaged(e.to_string(), records);
                    continue;
                }
            };
            let content: Content = match serde_json::from_value(manifest.engine.clone()) {
                Ok(content) => content,
                Err(e) => {
                    damaged(
                        format!("the manifest's content cannot be read: {e}"),
                        records,
                    );
                    continue;
                }
            };
            records.push(CheckpointRecord {
                epoch,
                started_at_ms: manifest.started_at_ms,
                duration_ms: manifest.duration_ms,
                bytes_written: manifest.bytes(),
                state_bytes: manifest.bytes(),
                status: "restored",
                detail: None,
            });
            return Ok(Some(Recovery {
                store: store.clone(),
                relations: content.relations.into_iter().map(|r| (r.oid, r)).collect(),
                manifest,
            }));
        }
        Ok(None)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.manifest.epoch
    }

    /// The checkpoint holds every change logged before this position.
    pub(crate) fn log_position(&self) -> u64 {
        self.manifest.log_position
    }

    /// Whether the checkpoint holds relation `oid`.
    pub(crate) fn has(&self, oid: u32) -> bool {
        self.relations.contains_key(&oid)
    }

    pub(crate) fn watermark_micros(&self, oid: u32) -> Option<i64> {
        self.relations.get(&oid)?.watermark_micros
    }

    pub(crate) fn source_position(&self, oid: u32) -> Option<&serde_json::Value> {
        self.relations.get(&oid)?.source_position.as_ref()
    }

    /// The rows of a table or a view.
    pub(crate) async fn rows(&self, oid: u32) -> Result<Vec<RecordBatch>> {
        match self.relations.get(&oid).and_then(|r| r.rows.as_ref()) {
            Some(file) => self.read(file).await,
            None => Ok(Vec::new()),
        }
    }

    /// Whether a view's job had finished.
    pub(crate) fn finished(&self, oid: u32) -> bool {
        self.relations.get(&oid).is_some_and(|r| r.finished)
    }

    /// The operator states of a view.
    pub(crate) async fn operator_states(&self, oid: u32) -> Result<Vec<OperatorState>> {
        let Some(relation) = self.relations.get(&oid) else {
            return Ok(Vec::new());
        };
        let mut states = Vec::with_capacity(relation.operators.len());
        for operator in &relation.operators {
            for state in self.read(&operator.file).await? {
                states.push(OperatorState {
                    node: operator.node,
                    subtask: operator.subtask,
                    state,
                });
            }
        }
        Ok(states)
    }

    async fn read(&self, file: &str) -> Result<Vec<RecordBatch>> {
        self.store
            .read_batches(&self.manifest, file)
            .await
            .map_err(|e| WeirError::new(sqlstate::DATA_CORRUPTED, e.to_string()))
    }
}
