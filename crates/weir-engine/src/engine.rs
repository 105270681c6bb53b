//! The engine: every database of one Weir instance, their saved catalog, and
//! the sessions connected to them.
//!
//! DDL is serialized by one lock ([`Engine::ddl_lock`]); after each change the
//! whole catalog is saved (`catalog.json` in the data directory), so that a
//! restart finds every database, table and view again. Writes go to the
//! write-ahead log (`wal/` in the data directory, see [`crate::write_log`]),
//! replayed at start.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;
use weir_state::{CheckpointStore, DurableFile, Record, StateLocation, Wal};

use crate::catalog::{CATALOG_FORMAT_VERSION, CatalogDef, FIRST_USER_OID, ObjectDef};
use crate::checkpoint::{Checkpoints, Recovery};
use crate::database::Database;
use crate::error::{Result, WeirError, sqlstate};
use crate::pg_catalog::PgCatalogSchema;
use crate::relation::{MaterializedView, Relation};
use crate::session::Session;
use crate::write_log::Replay;
use weir_runtime::{Barrier, Message};

/// Where and how an engine keeps its data.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of the catalog (and, later, the data) of this instance.
    pub data_dir: PathBuf,
    /// The database created on first start, and the default for clients.
    pub default_database: String,
    /// The owner of every object.
    pub superuser: String,
    /// How often a checkpoint is taken; `None`: only on `CHECKPOINT` (and
    /// at a graceful shutdown).
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints go; `None`: the data directory.
    pub state: Option<StateLocation>,
    /// Size past which the write-ahead log starts a new segment; segments
    /// wholly before the oldest checkpoint kept are deleted.
    pub wal_segment_bytes: u64,
    /// Memory one query's operators may hold (hash tables, sorts, join
    /// build sides); past it, sorts and aggregations spill to disk and what
    /// cannot spill fails with 53200. `None`: no bound.
    pub query_memory_limit: Option<usize>,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            default_database: "weir".into(),
            superuser: "weir".into(),
            checkpoint_interval: None,
            state: None,
            wal_segment_bytes: weir_state::wal::DEFAULT_SEGMENT_BYTES,
            query_memory_limit: None,
        }
    }

    /// Where checkpoints go: the configured location, or the data directory.
    pub fn state_location(&self) -> StateLocation {
        self.state
            .clone()
            .unwrap_or_else(|| StateLocation::Local(self.data_dir.clone()))
    }
}

/// The databases of an engine, by name.
#[derive(Debug, Default)]
pub struct Databases(RwLock<BTreeMap<String, Arc<Database>>>);

impl Databases {
    pub fn get(&self, name: &str) -> Option<Arc<Database>> {
        self.read().get(name).cloned()
    }

    /// All databases, in creation order.
    pub fn list(&self) -> Vec<Arc<Database>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by_key(|d| d.oid);
        all
    }

    fn insert(&self, db: Arc<Database>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(db.name.clone(), db);
    }

    fn remove(&self, name: &str) -> Option<Arc<Database>> {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Database>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// One Weir instance.
pub struct Engine {
    config: EngineConfig,
    databases: Arc<Databases>,
    next_oid: AtomicU32,
    catalog_file: DurableFile,
    wal: Arc<Wal>,
    ddl: tokio::sync::Mutex<()>,
    static_tables: Arc<PgCatalogStaticTables>,
    /// Open sessions per database OID.
    sessions: RwLock<BTreeMap<u32, Arc<AtomicUsize>>>,
    /// The epoch of the last barrier injected (see [`Engine::flush`]).
    barriers: tokio::sync::Mutex<u64>,
    checkpoints: Checkpoints,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("databases", &self.databases)
            .finish()
    }
}

impl Engine {
    /// Opens the instance in `config.data_dir`, creating it on first use, and
    /// rebuilds every database from the saved catalog.
    pub async fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let unusable_dir = |e: &dyn std::fmt::Display| {
            WeirError::new(
                sqlstate::IO_ERROR,
                format!(
                    "cannot use data directory {}: {e}",
                    config.data_dir.display()
                ),
            )
        };
        let catalog_file =
            DurableFile::local(&config.data_dir, "catalog.json").map_err(|e| unusable_dir(&e))?;
        let saved = catalog_file.read().await.map_err(io_error)?;
        let catalog: Option<CatalogDef> = match saved {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                WeirError::new(
                    sqlstate::DATA_CORRUPTED,
                    format!(
                        "the catalog in {} cannot be read: {e}",
                        config.data_dir.display()
                    ),
                )
            })?),
            None => None,
        };
        if let Some(c) = &catalog
            && c.version != CATALOG_FORMAT_VERSION
        {
            return Err(WeirError::new(
                sqlstate::DATA_CORRUPTED,
                format!(
                    "the catalog in {} has format version {}, this build reads version {}",
                    config.data_dir.display(),
                    c.version,
                    CATALOG_FORMAT_VERSION
                ),
            ));
        }
        let state = config.state_location();
        let unusable_state = |e: &dyn std::fmt::Display| {
            WeirError::new(
                sqlstate::IO_ERROR,
                format!("cannot use the checkpoint storage {state}: {e}"),
            )
        };
        let checkpoint_store = CheckpointStore::open(&state).map_err(|e| unusable_state(&e))?;
        // Epochs go on from the newest checkpoint's, committed or not. Listing
        // them first also tells whether the storage can be reached at all.
        let last_epoch = checkpoint_store
            .epochs()
            .await
            .map_err(|e| unusable_state(&e))?
            .last()
            .copied()
            .unwrap_or(0);
        let mut found = Vec::new();
        let recovery = Recovery::find(&checkpoint_store, &mut found).await?;
        // The log from the checkpoint's position on (all of it without one).
        let from = recovery.as_ref().map_or(0, Recovery::log_position);
        let (wal, records) =
            Wal::open_with(&config.data_dir.join("wal"), from, config.wal_segment_bytes).map_err(
                |e| {
                    WeirError::new(
                        sqlstate::IO_ERROR,
                        format!(
                            "cannot open the write-ahead log in {}: {e}",
                            config.data_dir.display()
                        ),
                    )
                },
            )?;
        let checkpoints = Checkpoints::new(checkpoint_store);
        for record in found {
            checkpoints.record(record);
        }
        let static_tables = Arc::new(
            PgCatalogStaticTables::try_new()
                .map_err(|e| WeirError::internal(format!("loading pg_catalog tables: {e}")))?,
        );
        let engine = Arc::new(Engine {
            next_oid: AtomicU32::new(catalog.as_ref().map_or(FIRST_USER_OID, |c| c.next_oid)),
            config,
            databases: Arc::new(Databases::default()),
            catalog_file,
            wal,
            ddl: tokio::sync::Mutex::new(()),
            static_tables,
            sessions: RwLock::new(BTreeMap::new()),
            barriers: tokio::sync::Mutex::new(last_epoch),
            checkpoints,
        });
        let replay_started = std::time::Instant::now();
        match catalog {
            Some(catalog) => {
                for db_def in catalog.databases {
                    let db = engine.register_database(db_def.oid, db_def.name.clone())?;
                    engine
                        .restore_objects(&db, db_def.objects, &records, recovery.as_ref())
                        .await?;
                }
            }
            None => {
                let oid = engine.allocate_oid();
                engine.register_database(oid, engine.config.default_database.clone())?;
                engine.save().await?;
            }
        }
        match &recovery {
            Some(checkpoint) => tracing::info!(
                checkpoint = checkpoint.epoch(),
                changes = records.len(),
                elapsed_ms = replay_started.elapsed().as_millis() as u64,
                "restored the checkpoint and replayed the write-ahead log after it"
            ),
            None if !records.is_empty() => tracing::info!(
                changes = records.len(),
                elapsed_ms = replay_started.elapsed().as_millis() as u64,
                "replayed the write-ahead log"
            ),
            None => {}
        }
        if let Some(interval) = engine.config.checkpoint_interval {
            engine.schedule_checkpoints(interval);
        }
        Ok(engine)
    }

    /// Takes a checkpoint every `interval` while the engine lives.
    fn schedule_checkpoints(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(engine) = weak.upgrade() else {
                    return;
                };
                // A failure is recorded and logged; the next one tries again.
                let _ = engine.checkpoint().await;
            }
        });
    }

    pub(crate) fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn databases(&self) -> &Arc<Databases> {
        &self.databases
    }

    pub fn database(&self, name: &str) -> Option<Arc<Database>> {
        self.databases.get(name)
    }

    /// Stops taking writes: what is logged is synced and the data directory
    /// is released (another engine may open it). Writes after this fail.
    pub fn close(&self) {
        self.wal.close();
    }

    /// The write-ahead log of every database's writes.
    pub(crate) fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    pub(crate) fn static_tables(&self) -> &PgCatalogStaticTables {
        &self.static_tables
    }

    /// Opens a session on `database` for `user`, with the client's startup
    /// parameters.
    pub fn connect(
        self: &Arc<Self>,
        database: &str,
        user: &str,
        startup: &[(String, String)],
    ) -> Result<Session> {
        let db = self.database(database).ok_or_else(|| {
            WeirError::new(
                sqlstate::INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist"),
            )
        })?;
        let counter = self.session_counter(db.oid);
        let session = Session::new(self.clone(), db.clone(), user, startup, counter)?;
        // A DROP DATABASE may have removed the database meanwhile; now that the
        // session is counted, a later one will wait for it.
        match self.database(database) {
            Some(current) if Arc::ptr_eq(&current, &db) => Ok(session),
            _ => Err(WeirError::new(
                sqlstate::INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist"),
            )),
        }
    }

    /// A new OID, never handed out before.
    pub(crate) fn allocate_oid(&self) -> u32 {
        self.next_oid.fetch_add(1, Ordering::AcqRel)
    }

    /// The lock every DDL statement holds while it changes the catalog.
    pub(crate) async fn ddl_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ddl.lock().await
    }

    /// The lock held while barriers are injected; holding it keeps barriers
    /// from reaching some sources of a starting job and not others.
    pub(crate) async fn barrier_lock(&self) -> tokio::sync::MutexGuard<'_, u64> {
        self.barriers.lock().await
    }

    /// Returns once every materialized view reflects every write accepted
    /// before the call: injects a barrier of a new epoch into the changelog
    /// of every table and stream, and waits for each view to apply it.
    pub async fn flush(&self) -> Result<()> {
        let (epoch, views) = self.publish_barrier().await;
        for view in views {
            self.wait_for_epoch(&view, epoch).await?;
        }
        Ok(())
    }

    /// Publishes a barrier of a new epoch into every table's and stream's
    /// changelog that has readers; returns the epoch and the materialized
    /// views, whose jobs pass it on.
    pub(crate) async fn publish_barrier(&self) -> (u64, Vec<Arc<MaterializedView>>) {
        let mut views = Vec::new();
        let epoch = {
            let mut barriers = self.barrier_lock().await;
            *barriers += 1;
            let epoch = *barriers;
            let barrier = || Message::Barrier(Barrier::new(epoch));
            for db in self.databases.list() {
                for relation in db.relations() {
                    match relation {
                        // Jobs subscribe under the barrier lock: a feed without
                        // subscribers now has none until the barrier is in.
                        Relation::Table(table) if table.feed.has_subscribers().await => {
                            let _writer = table.data.writer().await;
                            table.feed.publish(barrier()).await;
                        }
                        Relation::Stream(stream) if stream.feed.has_subscribers().await => {
                            let _ingest = stream.ingest.lock().await;
                            stream.feed.publish(barrier()).await;
                        }
                        Relation::MaterializedView(view) => views.push(view),
                        _ => {}
                    }
                }
            }
            epoch
        };
        (epoch, views)
    }

    /// Saves the whole catalog. The write runs in a task of its own: a
    /// statement cancelled while its change is being saved does not leave a
    /// half-done write behind (the change completes).
    pub(crate) async fn save(&self) -> Result<()> {
        let catalog = CatalogDef {
            version: CATALOG_FORMAT_VERSION,
            next_oid: self.next_oid.load(Ordering::Acquire),
            databases: self.databases.list().iter().map(|db| db.to_def()).collect(),
        };
        let json = serde_json::to_vec_pretty(&catalog)
            .map_err(|e| WeirError::internal(format!("serializing the catalog: {e}")))?;
        let file = self.catalog_file.clone();
        tokio::spawn(async move { file.write(bytes::Bytes::from(json)).await })
            .await
            .map_err(|e| WeirError::internal(format!("saving the catalog: {e}")))?
            .map_err(io_error)
    }

    /// `CREATE DATABASE`.
    pub(crate) async fn create_database(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await;
        if self.database(name).is_some() {
            if if_not_exists {
                return Ok(false);
            }
            return Err(WeirError::new(
                sqlstate::DUPLICATE_DATABASE,
                format!("database \"{name}\" already exists"),
            ));
        }
        let oid = self.allocate_oid();
        self.register_database(oid, name.to_string())?;
        if let Err(e) = self.save().await {
            self.databases.remove(name);
            return Err(e);
        }
        Ok(true)
    }

    /// Sessions open on the database `db_oid`.
    pub(crate) fn open_sessions(&self, db_oid: u32) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&db_oid)
            .map_or(0, |count| count.load(Ordering::Acquire))
    }

    /// `DROP DATABASE`. Waits a few seconds for the sessions of the database to
    /// end (a client that just disconnected), as Postgres does.
    pub(crate) async fn drop_database(
        &self,
        name: &str,
        if_exists: bool,
        current: &str,
    ) -> Result<bool> {
        let _ddl = self.ddl_lock().await;
        let Some(db) = self.database(name) else {
            if if_exists {
                return Ok(false);
            }
            return Err(WeirError::new(
                sqlstate::INVALID_CATALOG_NAME,
                format!("database \"{name}\" does not exist"),
            ));
        };
        if name == current {
            return Err(WeirError::new(
                sqlstate::OBJECT_IN_USE,
                "cannot drop the currently open database",
            ));
        }
        // New sessions are refused from now on; wait a little for the open
        // ones to end (a client that just disconnected).
        self.databases.remove(name);
        let counter = self.session_counter(db.oid);
        for _ in 0..50 {
            if counter.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let open = counter.load(Ordering::Acquire);
        if open > 0 {
            self.databases.insert(db);
            let detail = if open == 1 {
                "There is 1 other session using the database.".to_string()
            } else {
                format!("There are {open} other sessions using the database.")
            };
            return Err(WeirError::new(
                sqlstate::OBJECT_IN_USE,
                format!("database \"{name}\" is being accessed by other users"),
            )
            .with_detail(detail));
        }
        if let Err(e) = self.save().await {
            self.databases.insert(db);
            return Err(e);
        }
        self.sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&db.oid);
        Ok(true)
    }

    fn register_database(&self, oid: u32, name: String) -> Result<Arc<Database>> {
        let db = Database::new(oid, name);
        let pg_catalog = PgCatalogSchema::new(
            &db,
            self.databases.clone(),
            self.static_tables.clone(),
            &self.config.superuser,
        )?;
        db.set_pg_catalog(Arc::new(pg_catalog));
        db.set_checkpoint_history(self.checkpoints.history().clone());
        self.databases.insert(db.clone());
        Ok(db)
    }

    /// Rebuilds the objects of a database from their definitions, in creation
    /// order, replaying the logged writes to its tables and streams (each
    /// materialized view starting where it was created in the log).
    async fn restore_objects(
        self: &Arc<Self>,
        db: &Arc<Database>,
        objects: Vec<ObjectDef>,
        records: &[Record],
        checkpoint: Option<&Recovery>,
    ) -> Result<()> {
        let oids: HashSet<u32> = objects.iter().map(ObjectDef::oid).collect();
        let from = checkpoint.map_or(0, Recovery::log_position);
        let mut replay = Replay::new(records, &oids, from);
        let mut session = Session::new(
            self.clone(),
            db.clone(),
            &self.config.superuser,
            &[],
            Arc::new(AtomicUsize::new(0)),
        )?;
        let mut streams = Vec::new();
        for object in objects {
            // A job started after the checkpoint starts where it did.
            let started_at = match &object {
                ObjectDef::MaterializedView(view) => Some(view.log_position),
                ObjectDef::Sink(sink) => Some(sink.log_position),
                _ => None,
            };
            if let Some(position) = started_at
                && !checkpoint.is_some_and(|c| c.has(object.oid()))
            {
                replay.until(db, position).await?;
            }
            let name = object.name().to_string();
            let restored = session.restore(object, checkpoint).await.map_err(|e| {
                WeirError::new(
                    sqlstate::DATA_CORRUPTED,
                    format!(
                        "cannot restore \"{name}\" of database \"{}\": {}",
                        db.name, e.message
                    ),
                )
            })?;
            streams.extend(restored);
        }
        replay.until(db, u64::MAX).await?;
        // Connectors start once every view reading them is back.
        for (stream, position) in streams {
            crate::connectors::start_at(db, &stream, position.as_ref())?;
        }
        Ok(())
    }

    fn session_counter(&self, db_oid: u32) -> Arc<AtomicUsize> {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        sessions
            .entry(db_oid)
            .or_insert_with(|| Arc::new(AtomicUsize::new(0)))
            .clone()
    }
}

fn io_error(e: object_store::Error) -> WeirError {
    WeirError::new(sqlstate::IO_ERROR, format!("catalog storage: {e}"))
}
