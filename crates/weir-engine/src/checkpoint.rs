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
//! 4. Keep the last [`KEEP`] committed checkpoints; delete the others, and
//!    the write-ahead log's segments wholly before the oldest one kept.
//!
//! Recovery ([`Recovery`]): the newest committed checkpoint whose files
//! check out (a damaged one is reported, and the one before is used). Tables
//! get their rows back, streams their watermark and connector position,
//! views their rows and their operators their state; then the log is
//! replayed from the checkpoint's position.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use weir_runtime::{JobStatus, Message, OperatorState, StatePiece, changelog_piece, changes_limit};
use weir_state::{CheckpointStore, Manifest, TableWriter};

use crate::database::Database;
use crate::engine::Engine;
use crate::error::{Result, WeirError, sqlstate};
use crate::materialized_view::MaterializedView;
use crate::relation::Relation;
use crate::sink::Sink;
use crate::state_files::{Chains, Located, Piece, StateKind, chain_of, manifest_entry, read_chain};

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
    /// A stream's dead letters: the records before its position that its
    /// connector could not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dead_letters: Vec<crate::dead_letters::DeadLetter>,
    /// The file with a table's or a view's rows (a full copy), and the
    /// change files after it.
    #[serde(default)]
    rows: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rows_changes: Vec<String>,
    /// A view's operator states.
    #[serde(default)]
    operators: Vec<OperatorFile>,
    /// A view whose job had finished (its sources ended): its rows are
    /// final and no job runs again.
    #[serde(default)]
    finished: bool,
    /// A sink's output staged by this checkpoint's barrier (and earlier
    /// ones not committed), made visible once it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sink_staged: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OperatorFile {
    node: usize,
    subtask: usize,
    /// A full copy of the state, then the change files after it.
    file: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<String>,
}

/// Each operator state a job handed over, as a piece of relation
/// `relation` (index in the content) named after `prefix`.
fn operator_pieces(
    prefix: &str,
    relation: usize,
    states: Vec<OperatorState>,
    pieces: &mut Vec<Piece>,
    owners: &mut Vec<(usize, Option<(usize, usize)>)>,
) {
    for OperatorState {
        node,
        subtask,
        state: piece,
    } in states
    {
        let schema = match &piece {
            StatePiece::Full(batches) => batches.first().map(RecordBatch::schema),
            StatePiece::Changes(batches) => batches.first().map(|b| {
                let mut fields = b.schema().fields().to_vec();
                fields.pop();
                Arc::new(arrow::datatypes::Schema::new(fields))
            }),
        };
        let Some(schema) = schema else { continue };
        pieces.push(Piece {
            name: format!("{prefix}-node{node}-{subtask}"),
            kind: StateKind::Groups,
            schema,
            piece,
        });
        owners.push((relation, Some((node, subtask))));
    }
}

/// A chain's file names, as the content lists them: (full copy, changes).
fn chain_names(chain: &[Located]) -> (String, Vec<String>) {
    let mut names = chain.iter().map(|(_, entry)| entry.name.clone());
    let full = names.next().unwrap_or_default();
    (full, names.collect())
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
    /// One checkpoint at a time; it holds the files of each state at the
    /// last checkpoint committed since the start (`None`: the next
    /// checkpoint takes every state whole).
    running: tokio::sync::Mutex<Option<Chains>>,
    history: CheckpointHistory,
    /// What the checkpoints taken since the start add up to (the history
    /// keeps only the latest ones).
    totals: CheckpointTotals,
}

/// Counters of the checkpoints taken since the server started, for the
/// Prometheus metrics.
#[derive(Debug, Default)]
struct CheckpointTotals {
    committed: AtomicU64,
    failed: AtomicU64,
    /// Of every checkpoint taken, committed or failed.
    duration_micros: AtomicU64,
    last_duration_micros: AtomicU64,
    /// Of the last committed checkpoint.
    last_bytes_written: AtomicU64,
    last_state_bytes: AtomicU64,
}

/// A snapshot of the checkpoints taken since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckpointCounts {
    pub committed: u64,
    pub failed: u64,
    /// The time all of them took, committed or failed.
    pub duration_seconds_sum: f64,
    /// The time the last one took (0 before the first).
    pub last_duration_seconds: f64,
    /// What the last committed one wrote, and the size of every file it
    /// uses (0 before the first).
    pub last_bytes_written: u64,
    pub last_state_bytes: u64,
}

impl CheckpointTotals {
    fn add(&self, record: &CheckpointRecord, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros.fetch_add(micros, Ordering::Relaxed);
        self.last_duration_micros.store(micros, Ordering::Relaxed);
        if record.status == "committed" {
            self.last_bytes_written
                .store(record.bytes_written, Ordering::Relaxed);
            self.last_state_bytes
                .store(record.state_bytes, Ordering::Relaxed);
            self.committed.fetch_add(1, Ordering::Release);
        } else {
            self.failed.fetch_add(1, Ordering::Release);
        }
    }

    fn counts(&self) -> CheckpointCounts {
        let seconds = |micros: &AtomicU64| micros.load(Ordering::Relaxed) as f64 / 1e6;
        CheckpointCounts {
            committed: self.committed.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Acquire),
            duration_seconds_sum: seconds(&self.duration_micros),
            last_duration_seconds: seconds(&self.last_duration_micros),
            last_bytes_written: self.last_bytes_written.load(Ordering::Relaxed),
            last_state_bytes: self.last_state_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The checkpoints `weir_catalog.checkpoints` lists, shared with every
/// database.
pub type CheckpointHistory = Arc<std::sync::Mutex<Vec<CheckpointRecord>>>;

impl Checkpoints {
    pub(crate) fn new(store: CheckpointStore) -> Self {
        Checkpoints {
            store,
            running: tokio::sync::Mutex::new(None),
            history: CheckpointHistory::default(),
            totals: CheckpointTotals::default(),
        }
    }

    pub(crate) fn history(&self) -> &CheckpointHistory {
        &self.history
    }

    /// Records a checkpoint just taken (committed or failed), which took
    /// `took`: listed, and counted.
    fn record_taken(&self, record: CheckpointRecord, took: Duration) {
        self.totals.add(&record, took);
        self.record(record);
    }

    /// The checkpoints taken since the server started.
    pub(crate) fn counts(&self) -> CheckpointCounts {
        self.totals.counts()
    }

    /// Lists a checkpoint (one taken, or one found at start).
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

pub(crate) fn storage_error(e: impl std::fmt::Display) -> WeirError {
    WeirError::new(sqlstate::IO_ERROR, format!("checkpoint storage: {e}"))
}

/// The write lock of a relation, held while the checkpoint barrier goes in.
enum Held<'a> {
    Table(TableWriter<'a>),
    Stream(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>),
    None,
}

impl Engine {
    /// Takes a checkpoint (see the module documentation); returns its epoch.
    pub async fn checkpoint(&self) -> Result<u64> {
        let checkpoints = self.checkpoints();
        let mut previous = checkpoints.running.lock().await;
        let started_at_ms = now_ms();
        let clock = Instant::now();
        let result = self
            .take_checkpoint(started_at_ms, clock, previous.take())
            .await;
        let took = clock.elapsed();
        match &result {
            Ok((epoch, manifest, chains)) => {
                let record = CheckpointRecord {
                    epoch: *epoch,
                    started_at_ms,
                    duration_ms: took.as_millis() as u64,
                    bytes_written: manifest.bytes_written(),
                    state_bytes: manifest.bytes(),
                    status: "committed",
                    detail: None,
                };
                checkpoints.record_taken(record, took);
                *previous = Some(chains.clone());
                tracing::debug!(
                    epoch,
                    bytes_written = manifest.bytes_written(),
                    "checkpoint committed"
                );
            }
            Err((epoch, e)) => {
                let record = CheckpointRecord {
                    epoch: *epoch,
                    started_at_ms,
                    duration_ms: took.as_millis() as u64,
                    bytes_written: 0,
                    state_bytes: 0,
                    status: "failed",
                    detail: Some(e.message.clone()),
                };
                checkpoints.record_taken(record, took);
                tracing::warn!(epoch, error = %e.message, "checkpoint failed");
            }
        }
        result.map(|(epoch, _, _)| epoch).map_err(|(_, e)| e)
    }

    /// Takes a checkpoint on top of the `previous` one's chains (whole
    /// states without them); its epoch, manifest and chains, or the error
    /// with the epoch it had.
    async fn take_checkpoint(
        &self,
        started_at_ms: u64,
        clock: Instant,
        previous: Option<Chains>,
    ) -> std::result::Result<(u64, Manifest, Chains), (u64, WeirError)> {
        let store = &self.checkpoints().store;
        let full = previous.is_none();
        let previous = previous.unwrap_or_default();
        let mut content = Content::default();
        let mut pieces: Vec<Piece> = Vec::new();
        // Per piece: the relation (index in `content`) and, for an
        // operator's state, its node and subtask.
        let mut owners: Vec<(usize, Option<(usize, usize)>)> = Vec::new();
        let mut views: Vec<(u32, Arc<MaterializedView>)> = Vec::new();
        let mut sinks: Vec<(u32, Arc<Sink>)> = Vec::new();
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
                sinks.extend(db.sinks().into_iter().map(|s| (db.oid, s)));
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
            let barrier = Message::Barrier(weir_runtime::Barrier::checkpoint(epoch, full));
            for ((db, relation), held) in relations.iter().zip(&held) {
                let mut state = RelationState {
                    database: db.oid,
                    oid: relation.oid(),
                    watermark_micros: None,
                    source_position: None,
                    dead_letters: Vec::new(),
                    rows: None,
                    rows_changes: Vec::new(),
                    operators: Vec::new(),
                    finished: false,
                    sink_staged: Vec::new(),
                };
                match (relation, held) {
                    (Relation::Table(table), Held::Table(writer)) => {
                        state.watermark_micros =
                            table.event_time.as_ref().and_then(|e| e.current_micros());
                        let taken = table
                            .feed
                            .take_changes(changes_limit(table.data.row_count()));
                        pieces.push(Piece {
                            name: format!("db{}-table{}", db.oid, table.def.oid),
                            kind: StateKind::Rows,
                            schema: table.data.schema().clone(),
                            piece: changelog_piece(taken, full, || Ok(writer.snapshot()))
                                .map_err(|e| (epoch, e.into()))?,
                        });
                        owners.push((content.relations.len(), None));
                        table.feed.publish(barrier.clone()).await;
                    }
                    (Relation::Stream(stream), Held::Stream(_)) => {
                        state.watermark_micros =
                            stream.event_time.as_ref().and_then(|e| e.current_micros());
                        state.source_position = stream.position();
                        state.dead_letters = stream.dead_letters();
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
            let relation = content.relations.len();
            content.relations.push(RelationState {
                database: db,
                oid: view.def.oid,
                watermark_micros: None,
                source_position: None,
                dead_letters: Vec::new(),
                rows: None,
                rows_changes: Vec::new(),
                operators: Vec::new(),
                finished: false,
                sink_staged: Vec::new(),
            });
            let rows = match view.sink.checkpointed(epoch) {
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
                    operator_pieces(&name, relation, states, &mut pieces, &mut owners);
                    checkpoint.rows
                }
                // Its job finished (its sources ended) before the barrier:
                // its rows are final, it keeps no state.
                None => {
                    content.relations[relation].finished = true;
                    changelog_piece(view.sink.take_changes(), full, || {
                        view.sink.data().snapshot()
                    })
                    .map_err(|e| failed(e.into()))?
                }
            };
            pieces.push(Piece {
                name,
                kind: StateKind::Rows,
                schema: view.sink.data().schema().clone(),
                piece: rows,
            });
            owners.push((relation, None));
        }

        // Every sink applies the barrier: what it wrote before is staged.
        for (db, sink) in &sinks {
            let name = &sink.def.name;
            let status = || sink.with_job(|job| job.status());
            wait_for_job("sink", name, sink.output.epochs(), status, epoch)
                .await
                .map_err(failed)?;
            // Status first: once finished, the epoch applied stays put.
            let finished = matches!(status(), Some(JobStatus::Finished));
            let applied = *sink.output.epochs().borrow();
            if finished && applied < epoch {
                // Its inputs ended before this barrier: what it wrote after
                // the last barrier it saw belongs to this checkpoint. (One
                // that applied this barrier and then finished has its last
                // rows staged by the next checkpoint: the position restored
                // from this one produces them again.)
                sink.output.stage_final(epoch).map_err(|e| {
                    failed(WeirError::new(
                        sqlstate::IO_ERROR,
                        format!("sink \"{name}\": {e}"),
                    ))
                })?;
            }
            let relation = content.relations.len();
            content.relations.push(RelationState {
                database: *db,
                oid: sink.def.oid,
                watermark_micros: None,
                source_position: None,
                dead_letters: Vec::new(),
                rows: None,
                rows_changes: Vec::new(),
                operators: Vec::new(),
                // Nothing more to write: after a restart it stays finished.
                finished: finished && applied < epoch,
                sink_staged: sink.output.staged_until(epoch),
            });
            let states = sink
                .with_job(|job| job.states().take(epoch))
                .unwrap_or(Ok(Vec::new()))
                .map_err(|e| {
                    failed(WeirError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("sink \"{name}\": {e}"),
                    ))
                })?;
            let prefix = format!("db{db}-sink{}", sink.def.oid);
            operator_pieces(&prefix, relation, states, &mut pieces, &mut owners);
        }

        // Each state's files: written now, or kept from earlier checkpoints.
        let mut chains = Chains::default();
        let mut files = Vec::new();
        for ((relation, operator), piece) in owners.into_iter().zip(pieces) {
            let name = piece.name.clone();
            let chain = previous.write(store, epoch, piece).await.map_err(failed)?;
            let (full_name, changes) = chain_names(&chain);
            let state = &mut content.relations[relation];
            match operator {
                Some((node, subtask)) => state.operators.push(OperatorFile {
                    node,
                    subtask,
                    file: full_name,
                    changes,
                }),
                None => {
                    state.rows = Some(full_name);
                    state.rows_changes = changes;
                }
            }
            files.extend(chain.iter().map(|located| manifest_entry(epoch, located)));
            chains.0.insert(name, chain);
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
        // The checkpoint is in: what the sinks staged for it becomes
        // visible. A failure here is retried by the next checkpoint, and at
        // a restart from this one.
        for (_, sink) in &sinks {
            if let Err(e) = sink.output.commit_until(epoch).await {
                tracing::warn!(sink = %sink.def.name, error = %e, "cannot commit a sink's output");
            }
        }
        self.prune(epoch).await;
        Ok((epoch, manifest, chains))
    }

    /// Waits until `view` has applied the barrier of `epoch` (or finished).
    pub(crate) async fn wait_for_epoch(&self, view: &MaterializedView, epoch: u64) -> Result<()> {
        wait_for_job(
            "materialized view",
            &view.def.name,
            view.sink.epochs(),
            || view.with_job(|job| job.status()),
            epoch,
        )
        .await
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
        // The newest committed ones are kept, with every file they use
        // (some in older checkpoints' directories); and the log from the
        // position of the oldest one kept, which every checkpoint a restart
        // may use has before it.
        let mut kept = Vec::new();
        let mut shared = std::collections::HashSet::new();
        let mut needed_from = None;
        let mut others = Vec::new();
        for epoch in epochs.into_iter().rev() {
            if epoch > latest {
                continue; // not ours
            }
            match store.manifest(epoch).await {
                Ok(Some(manifest)) if kept.len() < KEEP => {
                    shared.extend(manifest.files.iter().map(|f| manifest.location(f)));
                    needed_from = Some(manifest.log_position);
                    kept.push(epoch);
                }
                // Committed but older than the ones kept, or never
                // committed (cut short, or failed).
                Ok(_) => others.push(epoch),
                // Unreadable now (storage unavailable, or damaged): nothing
                // is deleted on a guess; the next checkpoint looks again.
                Err(e) => {
                    tracing::warn!(epoch, error = %e, "cannot read a checkpoint's manifest");
                    if epoch == latest {
                        return;
                    }
                }
            }
        }
        for epoch in others {
            if let Err(e) = store.remove(epoch, &shared).await {
                tracing::warn!(epoch, error = %e, "cannot delete an old checkpoint");
            }
        }
        if let Some(lsn) = needed_from {
            match self.wal().truncate_before(lsn) {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, lsn, "write-ahead log segments deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete old log segments"),
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
                bytes_written: manifest.bytes_written(),
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

    /// A stream's dead letters at the checkpoint.
    pub(crate) fn dead_letters(&self, oid: u32) -> Vec<crate::dead_letters::DeadLetter> {
        self.relations
            .get(&oid)
            .map(|r| r.dead_letters.clone())
            .unwrap_or_default()
    }

    /// The rows of a table or a view.
    pub(crate) async fn rows(&self, oid: u32) -> Result<Vec<RecordBatch>> {
        let Some(relation) = self.relations.get(&oid) else {
            return Ok(Vec::new());
        };
        let Some(full) = &relation.rows else {
            return Ok(Vec::new());
        };
        let mut names = vec![full.clone()];
        names.extend(relation.rows_changes.iter().cloned());
        let chain = chain_of(&self.manifest, &names)?;
        read_chain(&self.store, StateKind::Rows, &chain).await
    }

    /// What a sink's output staged, committed by the checkpoint.
    pub(crate) fn sink_staged(&self, oid: u32) -> Vec<String> {
        self.relations
            .get(&oid)
            .map(|r| r.sink_staged.clone())
            .unwrap_or_default()
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
            let mut names = vec![operator.file.clone()];
            names.extend(operator.changes.iter().cloned());
            let chain = chain_of(&self.manifest, &names)?;
            states.push(OperatorState {
                node: operator.node,
                subtask: operator.subtask,
                state: StatePiece::Full(read_chain(&self.store, StateKind::Groups, &chain).await?),
            });
        }
        Ok(states)
    }
}

/// Waits until a job's output has applied the barrier of `epoch` (`epochs`
/// tells the last one applied), or its job finished (`status`: `None` when
/// it has no job: dropped meanwhile, or restored finished).
pub(crate) async fn wait_for_job(
    kind: &str,
    name: &str,
    mut epochs: tokio::sync::watch::Receiver<u64>,
    status: impl Fn() -> Option<JobStatus>,
    epoch: u64,
) -> Result<()> {
    loop {
        if *epochs.borrow_and_update() >= epoch {
            return Ok(());
        }
        let Some(status) = status() else {
            return Ok(());
        };
        match status {
            JobStatus::Running => {}
            // Its inputs ended: it has applied all there is.
            JobStatus::Finished => return Ok(()),
            JobStatus::Failed(error) => {
                return Err(WeirError::new(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("{kind} \"{name}\" has stopped: {error}"),
                )
                .with_hint(format!("Drop the {kind} and create it again.")));
            }
        }
        // Wake up now and then to notice a job that failed.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), epochs.changed()).await;
    }
}
