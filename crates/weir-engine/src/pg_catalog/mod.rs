//! The `pg_catalog` schema: how psql and drivers learn what a database holds.
//!
//! Most of `pg_catalog` comes from `datafusion-pg-catalog` (pg_type, pg_am,
//! pg_proc, ... as exported from a real Postgres). The tables that describe the
//! database's own relations are Weir's ([`tables`]), because only Weir knows
//! what the crate cannot: declared types with their modifiers (`varchar(10)`),
//! primary keys and their indexes, view definitions, and the list of databases.
//! Functions that read the catalog (`pg_get_indexdef`, `pg_get_viewdef`, ...)
//! are in [`functions`].

pub mod functions;
mod tables;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, new_empty_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};

use crate::database::Database;
use crate::engine::Databases;

/// OID of the `pg_catalog` namespace.
pub const PG_CATALOG_NAMESPACE_OID: u32 = 11;
/// OID of the `information_schema` namespace.
pub const INFORMATION_SCHEMA_NAMESPACE_OID: u32 = 13_000;
/// OID of the role every object belongs to (Postgres' bootstrap superuser).
pub const OWNER_OID: u32 = 10;
/// OID of the `pg_database_owner` role, owner of the `public` schema.
pub const DATABASE_OWNER_OID: u32 = 6171;

/// What the catalog tables are built from.
#[derive(Debug, Clone)]
pub(crate) struct CatalogContext {
    pub db: Arc<Database>,
    pub databases: Arc<Databases>,
    pub owner: String,
}

/// One row of a catalog table: values by column name; unnamed columns get a
/// default (NULL, or zero / empty / false for columns that refuse NULL).
pub(crate) type Row = Vec<(&'static str, ScalarValue)>;

type BuildRows = fn(&CatalogContext) -> Vec<Row>;

/// The tables Weir builds itself, and their builders.
const WEIR_TABLES: &[(&str, BuildRows)] = &[
    ("pg_namespace", tables::pg_namespace),
    ("pg_class", tables::pg_class),
    ("pg_attribute", tables::pg_attribute),
    ("pg_index", tables::pg_index),
    ("pg_constraint", tables::pg_constraint),
    ("pg_database", tables::pg_database),
    ("pg_tables", tables::pg_tables),
    ("pg_views", tables::pg_views),
];

/// The `pg_catalog` schema of one database.
#[derive(Debug)]
pub struct PgCatalogSchema {
    db: Weak<Database>,
    databases: Arc<Databases>,
    owner: String,
    upstream: PgCatalogSchemaProvider<NoCatalogs, Roles>,
    schemas: HashMap<&'static str, SchemaRef>,
}

impl PgCatalogSchema {
    pub(crate) fn new(
        db: &Arc<Database>,
        databases: Arc<Databases>,
        static_tables: Arc<PgCatalogStaticTables>,
        owner: &str,
    ) -> DfResult<Self> {
        let upstream =
            PgCatalogSchemaProvider::try_new(NoCatalogs, static_tables, Roles(owner.to_string()))?;
        let mut schemas = HashMap::new();
        for (name, _) in WEIR_TABLES {
            let table = upstream.build_table_by_name(name)?.ok_or_else(|| {
                DataFusionError::Internal(format!("pg_catalog has no table {name}"))
            })?;
            schemas.insert(*name, table.schema());
        }
        Ok(PgCatalogSchema {
            db: Arc::downgrade(db),
            databases,
            owner: owner.to_string(),
            upstream,
            schemas,
        })
    }

    fn context(&self) -> Option<CatalogContext> {
        Some(CatalogContext {
            db: self.db.upgrade()?,
            databases: self.databases.clone(),
            owner: self.owner.clone(),
        })
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        self.upstream.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        if let Some((table_name, build)) = WEIR_TABLES.iter().find(|(n, _)| *n == lower)
            && let (Some(schema), Some(context)) = (self.schemas.get(table_name), self.context())
        {
            return Ok(Some(Arc::new(CatalogTable {
                schema: schema.clone(),
                context,
                build: *build,
            })));
        }
        self.upstream.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.upstream.table_exist(name)
    }
}

/// A catalog table built from the catalog each time it is scanned.
#[derive(Debug)]
struct CatalogTable {
    schema: SchemaRef,
    context: CatalogContext,
    build: BuildRows,
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = (self.build)(&self.context);
        let batch = build_batch(&self.schema, &rows)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// Builds a batch of `schema` from rows of named values.
fn build_batch(schema: &SchemaRef, rows: &[Row]) -> DfResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            if rows.is_empty() {
                return Ok(new_empty_array(field.data_type()));
            }
            let values = rows
                .iter()
                .map(
                    |row| match row.iter().find(|(name, _)| *name == field.name().as_str()) {
                        Some((_, value)) => conform(value, field),
                        None => Ok(default_value(field)),
                    },
                )
                .collect::<DfResult<Vec<_>>>()?;
            let array = ScalarValue::iter_to_array(values)?;
            if array.data_type() == field.data_type() {
                Ok(array)
            } else {
                Ok(cast(&array, field.data_type())?)
            }
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn conform(value: &ScalarValue, field: &FieldRef) -> DfResult<ScalarValue> {
    if value.data_type() == *field.data_type() {
        return Ok(value.clone());
    }
    if value.is_null() {
        return ScalarValue::try_from(field.data_type());
    }
    value.cast_to(field.data_type()).or_else(|_| {
        // A list column of the crate typed as text (int2vector): "1 2".
        match (value, field.data_type()) {
            (ScalarValue::List(list), DataType::Utf8) => {
                let values = list.value(0);
                let text: Vec<String> = (0..values.len())
                    .filter_map(|i| ScalarValue::try_from_array(&values, i).ok())
                    .map(|v| v.to_string())
                    .collect();
                Ok(ScalarValue::Utf8(Some(text.join(" "))))
            }
            _ => Ok(default_value(field)),
        }
    })
}

fn default_value(field: &FieldRef) -> ScalarValue {
    let ty = field.data_type();
    if field.is_nullable() {
        return ScalarValue::try_from(ty).unwrap_or(ScalarValue::Null);
    }
    match ty {
        DataType::Utf8 => ScalarValue::Utf8(Some(String::new())),
        DataType::Boolean => ScalarValue::Boolean(Some(false)),
        other => ScalarValue::new_zero(other)
            .or_else(|_| ScalarValue::try_from(other))
            .unwrap_or(ScalarValue::Null),
    }
}

/// The upstream provider needs a catalog source; every table that reads it is
/// replaced by Weir's own, so it sees none.
#[derive(Debug, Clone)]
struct NoCatalogs;

#[async_trait]
impl CatalogInfo for NoCatalogs {
    async fn catalog_names(&self) -> DfResult<Vec<String>> {
        Ok(vec![])
    }
    async fn schema_names(&self, _: &str) -> DfResult<Option<Vec<String>>> {
        Ok(None)
    }
    async fn table_names(&self, _: &str, _: &str) -> DfResult<Option<Vec<String>>> {
        Ok(None)
    }
    async fn table_schema(&self, _: &str, _: &str, _: &str) -> DfResult<Option<SchemaRef>> {
        Ok(None)
    }
    async fn table_type(&self, _: &str, _: &str, _: &str) -> DfResult<Option<TableType>> {
        Ok(None)
    }
}

/// The roles `pg_roles` lists: the one owner of everything.
#[derive(Debug, Clone)]
struct Roles(String);

#[async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        vec![self.0.clone()]
    }

    async fn role(&self, name: &str) -> Option<Role> {
        (name == self.0).then(|| Role {
            name: self.0.clone(),
            is_superuser: true,
            can_login: true,
            can_create_db: true,
            can_create_role: true,
            can_create_user: true,
            can_replication: false,
            grants: vec![],
            inherited_roles: vec![],
        })
    }
}
