//! A database: a set of relations under the `public` schema, plus the
//! `pg_catalog` schema that describes them to clients and the `weir_catalog`
//! schema of streaming state (jobs, operators, late rows).
//!
//! Each database is one DataFusion catalog. A session sees only the database it
//! connected to (as in Postgres, there are no cross-database queries).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::TableType;

use crate::catalog::{DatabaseDef, ObjectDef};
use crate::checkpoint::{CheckpointHistory, CheckpointRecord};
use crate::late_rows::LateRows;
use crate::pg_catalog::PgCatalogSchema;
use crate::relation::{ROW_IDS_PREFIX, Relation, RowIds};
use crate::running_queries::RunningQueries;
use crate::sink::Sink;
use crate::system_catalog::{SYSTEM_SCHEMA, SystemSchema};

/// The schema user relations live in.
pub const PUBLIC_SCHEMA: &str = "public";
/// OID of the `public` namespace, as in Postgres.
pub const PUBLIC_NAMESPACE_OID: u32 = 2200;

/// One database.
#[derive(Debug)]
pub struct Database {
    pub oid: u32,
    pub name: String,
    relations: RwLock<BTreeMap<String, Relation>>,
    /// Bumped by every change of the relations, so that prepared statements
    /// can tell that they must be planned again.
    version: AtomicU64,
    pg_catalog: OnceLock<Arc<PgCatalogSchema>>,
    late_rows: LateRows,
    checkpoints: OnceLock<CheckpointHistory>,
    /// Sinks by name (they share the relations' names, but no query reads
    /// them).
    sinks: RwLock<BTreeMap<String, Arc<Sink>>>,
    /// Continuous queries and subscriptions running.
    pub queries: Arc<RunningQueries>,
}

impl Database {
    pub fn new(oid: u32, name: String) -> Arc<Self> {
        Arc::new(Database {
            oid,
            name,
            relations: RwLock::new(BTreeMap::new()),
            version: AtomicU64::new(0),
            pg_catalog: OnceLock::new(),
            late_rows: LateRows::default(),
            checkpoints: OnceLock::new(),
            sinks: RwLock::new(BTreeMap::new()),
            queries: Arc::default(),
        })
    }

    /// Attaches the `pg_catalog` schema (built by the engine, which owns the
    /// static catalog tables shared by all databases).
    pub fn set_pg_catalog(&self, schema: Arc<PgCatalogSchema>) {
        let _ = self.pg_catalog.set(schema);
    }

    /// Attaches the engine's list of checkpoints (for `weir_catalog`).
    pub fn set_checkpoint_history(&self, history: CheckpointHistory) {
        let _ = self.checkpoints.set(history);
    }

    /// The engine's checkpoints, latest last.
    pub fn checkpoint_history(&self) -> Vec<CheckpointRecord> {
        self.checkpoints
            .get()
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Rows that arrived behind their relation's watermark.
    pub fn late_rows(&self) -> &LateRows {
        &self.late_rows
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn relation(&self, name: &str) -> Option<Relation> {
        self.read().get(name).cloned()
    }

    /// All relations, in creation order.
    pub fn relations(&self) -> Vec<Relation> {
        let mut all: Vec<Relation> = self.read().values().cloned().collect();
        all.sort_by_key(Relation::oid);
        all
    }

    pub fn add(&self, relation: Relation) {
        self.write().insert(relation.name().to_string(), relation);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn remove(&self, name: &str) -> Option<Relation> {
        let removed = self.write().remove(name);
        self.version.fetch_add(1, Ordering::AcqRel);
        removed
    }

    /// All relations, each after the relations it reads (and otherwise in
    /// creation order): the order in which they can be rebuilt.
    pub fn in_dependency_order(&self) -> Vec<Relation> {
        let relations = self.relations();
        let mut ordered: Vec<Relation> = Vec::with_capacity(relations.len());
        let mut placed = std::collections::HashSet::new();
        fn place(
            relation: &Relation,
            all: &[Relation],
            placed: &mut std::collections::HashSet<String>,
            ordered: &mut Vec<Relation>,
            depth: usize,
        ) {
            if depth > all.len() || !placed.insert(relation.name().to_string()) {
                return;
            }
            for dependency in relation.dependencies() {
                if let Some(d) = all.iter().find(|r| r.name() == dependency) {
                    place(d, all, placed, ordered, depth + 1);
                }
            }
            ordered.push(relation.clone());
        }
        for relation in &relations {
            place(relation, &relations, &mut placed, &mut ordered, 0);
        }
        ordered
    }

    /// Whether any of `relations` reads `target`, directly or through others.
    pub fn reads_transitively(&self, relations: &[String], target: &str) -> bool {
        let mut seen = std::collections::HashSet::new();
        let mut pending: Vec<String> = relations.to_vec();
        while let Some(name) = pending.pop() {
            if name == target {
                return true;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(relation) = self.relation(&name) {
                pending.extend(relation.dependencies().iter().cloned());
            }
        }
        false
    }

    /// The relations that read `name`, directly or not, each after those it
    /// reads.
    pub fn dependents_in_order(&self, name: &str) -> Vec<String> {
        self.in_dependency_order()
            .into_iter()
            .filter(|r| r.name() != name && self.reads_transitively(r.dependencies(), name))
            .map(|r| r.name().to_string())
            .collect()
    }

    /// Names of the relations and sinks that read `name`, directly.
    pub fn dependents_of(&self, name: &str) -> Vec<String> {
        self.relations()
            .iter()
            .filter(|r| r.dependencies().iter().any(|d| d == name))
            .map(|r| r.name().to_string())
            .chain(
                self.sinks()
                    .iter()
                    .filter(|s| s.depends_on.iter().any(|d| d == name))
                    .map(|s| s.def.name.clone()),
            )
            .collect()
    }

    pub fn sink(&self, name: &str) -> Option<Arc<Sink>> {
        self.read_sinks().get(name).cloned()
    }

    /// All sinks, in creation order.
    pub fn sinks(&self) -> Vec<Arc<Sink>> {
        let mut all: Vec<Arc<Sink>> = self.read_sinks().values().cloned().collect();
        all.sort_by_key(|s| s.def.oid);
        all
    }

    pub fn add_sink(&self, sink: Arc<Sink>) {
        self.sinks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sink.def.name.clone(), sink);
    }

    pub fn remove_sink(&self, name: &str) -> Option<Arc<Sink>> {
        self.sinks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    fn read_sinks(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Sink>>> {
        self.sinks.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The definition to save, objects in an order they can be rebuilt in:
    /// each after what it reads, a sink among the relations in creation
    /// order (it reads older ones; none reads it).
    pub fn to_def(&self) -> DatabaseDef {
        let mut sinks = self.sinks().into_iter().peekable();
        let mut objects = Vec::new();
        for relation in self.in_dependency_order() {
            while let Some(sink) = sinks.next_if(|s| s.def.oid < relation.oid()) {
                objects.push(ObjectDef::Sink(sink.def.clone()));
            }
            objects.push(match relation {
                Relation::Table(t) => ObjectDef::Table(t.def.clone()),
                Relation::View(v) => ObjectDef::View(v.def.clone()),
                Relation::Stream(s) => ObjectDef::Stream(s.def.clone()),
                Relation::MaterializedView(v) => ObjectDef::MaterializedView(v.def.clone()),
            });
        }
        objects.extend(sinks.map(|s| ObjectDef::Sink(s.def.clone())));
        DatabaseDef {
            oid: self.oid,
            name: self.name.clone(),
            objects,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Relation>> {
        self.relations.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Relation>> {
        self.relations.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `public` schema of a database, for DataFusion.
#[derive(Debug)]
struct PublicSchema(Arc<Database>);

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn owner_name(&self) -> Option<&str> {
        Some(&self.0.name)
    }

    fn table_names(&self) -> Vec<String> {
        self.0.read().keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = name.strip_prefix(ROW_IDS_PREFIX) {
            return Ok(match self.0.relation(table) {
                Some(Relation::Table(t)) => Some(Arc::new(RowIds::new(t))),
                _ => None,
            });
        }
        Ok(self.0.relation(name).map(|r| r.provider()))
    }

    async fn table_type(&self, name: &str) -> DfResult<Option<TableType>> {
        Ok(self.0.relation(name).map(|r| match r {
            Relation::View(_) => TableType::View,
            _ => TableType::Base,
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.read().contains_key(name)
    }
}

/// A database as a DataFusion catalog: `public` and `pg_catalog`.
#[derive(Debug)]
pub struct DatabaseCatalog(pub Arc<Database>);

impl CatalogProvider for DatabaseCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![
            PUBLIC_SCHEMA.to_string(),
            "pg_catalog".to_string(),
            SYSTEM_SCHEMA.to_string(),
        ]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PUBLIC_SCHEMA => Some(Arc::new(PublicSchema(self.0.clone()))),
            "pg_catalog" => self
                .0
                .pg_catalog
                .get()
                .map(|s| s.clone() as Arc<dyn SchemaProvider>),
            SYSTEM_SCHEMA => Some(Arc::new(SystemSchema::new(&self.0))),
            _ => None,
        }
    }

    fn register_schema(
        &self,
        name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "CREATE SCHEMA ({name})"
        )))
    }
}

/// The catalogs a session sees: only its own database.
#[derive(Debug)]
pub struct SessionCatalogs(pub Arc<Database>);

impl CatalogProviderList for SessionCatalogs {
    fn register_catalog(
        &self,
        name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        tracing::warn!(catalog = %name, "ignoring a request to register a catalog");
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![self.0.name.clone()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == self.0.name).then(|| Arc::new(DatabaseCatalog(self.0.clone())) as _)
    }
}
