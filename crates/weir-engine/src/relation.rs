//! Relations as queries see them: tables, views, streams and materialized
//! views, each a DataFusion `TableProvider` built from its catalog definition.
//!
//! Tables, streams and materialized views are also changelogs: each has a
//! [`Feed`] that the jobs reading it subscribe to.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraint, Constraints};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use weir_runtime::Feed;
use weir_state::TableData;

use crate::catalog::{TableDef, ViewDef};
use crate::event_time::EventTime;
pub use crate::materialized_view::MaterializedView;
pub use crate::stream::Stream;

/// A relation of a database.
#[derive(Debug, Clone)]
pub enum Relation {
    Table(Arc<Table>),
    View(Arc<View>),
    Stream(Arc<Stream>),
    MaterializedView(Arc<MaterializedView>),
}

impl Relation {
    pub fn name(&self) -> &str {
        match self {
            Relation::Table(t) => &t.def.name,
            Relation::View(v) => &v.def.name,
            Relation::Stream(s) => &s.def.name,
            Relation::MaterializedView(m) => &m.def.name,
        }
    }

    pub fn oid(&self) -> u32 {
        match self {
            Relation::Table(t) => t.def.oid,
            Relation::View(v) => v.def.oid,
            Relation::Stream(s) => s.def.oid,
            Relation::MaterializedView(m) => m.def.oid,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        match self {
            Relation::Table(t) => t.schema.clone(),
            Relation::View(v) => v.schema.clone(),
            Relation::Stream(s) => s.schema().clone(),
            Relation::MaterializedView(m) => m.schema().clone(),
        }
    }

    /// The word used for the kind in messages (`table`, `view`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Relation::Table(_) => "table",
            Relation::View(_) => "view",
            Relation::Stream(_) => "stream",
            Relation::MaterializedView(_) => "materialized view",
        }
    }

    pub fn provider(&self) -> Arc<dyn TableProvider> {
        match self {
            Relation::Table(t) => t.clone(),
            Relation::View(v) => v.clone(),
            Relation::Stream(s) => s.clone(),
            Relation::MaterializedView(m) => m.clone(),
        }
    }

    /// Names of the relations this one reads.
    pub fn dependencies(&self) -> &[String] {
        match self {
            Relation::Table(_) | Relation::Stream(_) => &[],
            Relation::View(v) => &v.depends_on,
            Relation::MaterializedView(m) => &m.depends_on,
        }
    }
}

/// A table: its definition and its rows.
#[derive(Debug)]
pub struct Table {
    pub def: TableDef,
    pub data: Arc<TableData>,
    /// Every write, for the jobs reading the table.
    pub feed: Arc<Feed>,
    /// Event time, for tables with a watermark.
    pub event_time: Option<EventTime>,
    schema: SchemaRef,
    constraints: Constraints,
    defaults: HashMap<String, Expr>,
}

impl Table {
    /// A table with the given definition and column defaults (already planned
    /// into expressions). Its rows start empty.
    pub fn new(
        def: TableDef,
        defaults: HashMap<String, Expr>,
        event_time: Option<EventTime>,
    ) -> Self {
        let schema = crate::catalog::arrow_schema(&def.columns);
        let not_null = def
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.not_null)
            .map(|(i, _)| i)
            .collect();
        let data = Arc::new(TableData::new(
            schema.clone(),
            def.primary_key.clone(),
            not_null,
        ));
        let constraints = if def.primary_key.is_empty() {
            Constraints::default()
        } else {
            Constraints::new_unverified(vec![Constraint::PrimaryKey(def.primary_key.clone())])
        };
        Table {
            def,
            data,
            feed: Feed::new(schema.clone()),
            event_time,
            schema,
            constraints,
            defaults,
        }
    }

    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }
}

#[async_trait]
impl TableProvider for Table {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let batches = self.data.snapshot();
        let partitions = state
            .config()
            .target_partitions()
            .clamp(1, batches.len().max(1));
        let mut parts = vec![Vec::new(); partitions];
        for (i, batch) in batches.iter().enumerate() {
            parts[i % partitions].push(batch.clone());
        }
        let exec =
            MemorySourceConfig::try_new_exec(&parts, self.schema.clone(), projection.cloned())?;
        Ok(exec)
    }
}

/// Prefix of the name under which a table is read with its row ids.
pub const ROW_IDS_PREFIX: &str = "__weir_row_ids_of_";
/// The row id column: the position of the row in the table's snapshot.
pub const ROW_ID: &str = "__weir_row_id";

/// A table read with the position of each row in its current snapshot, so that
/// `UPDATE` and `DELETE` can find the rows their `WHERE` selects. The caller
/// holds the table's write lock, so the snapshot does not change between the
/// read and the write.
#[derive(Debug)]
pub struct RowIds {
    table: Arc<Table>,
    schema: SchemaRef,
}

impl RowIds {
    /// Whether these are the rows of `table`.
    pub fn reads(&self, table: &Arc<Table>) -> bool {
        Arc::ptr_eq(&self.table, table)
    }

    pub fn new(table: Arc<Table>) -> Self {
        let mut fields: Vec<Field> = table
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            ROW_ID,
            datafusion::arrow::datatypes::DataType::UInt64,
            false,
        ));
        RowIds {
            table,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl TableProvider for RowIds {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let mut offset = 0u64;
        let mut batches = Vec::new();
        for batch in self.table.data.snapshot().iter() {
            let rows = batch.num_rows() as u64;
            let ids =
                datafusion::arrow::array::UInt64Array::from_iter_values(offset..offset + rows);
            offset += rows;
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(ids));
            batches.push(datafusion::arrow::array::RecordBatch::try_new(
                self.schema.clone(),
                columns,
            )?);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// A view: a query planned against the database's relations.
#[derive(Debug)]
pub struct View {
    pub def: ViewDef,
    plan: LogicalPlan,
    schema: SchemaRef,
    /// Names of the relations the query reads.
    pub depends_on: Vec<String>,
}

impl View {
    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn new(def: ViewDef, plan: LogicalPlan, depends_on: Vec<String>) -> Self {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        View {
            def,
            plan,
            schema,
            depends_on,
        }
    }
}

#[async_trait]
impl TableProvider for View {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.def.query)
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        // Views are inlined by the planner (get_logical_plan); a direct scan
        // plans the query like DataFusion's own ViewTable does.
        let view = datafusion::catalog::view::ViewTable::new(self.plan.clone(), None);
        view.scan(state, projection, filters, limit).await
    }
}
