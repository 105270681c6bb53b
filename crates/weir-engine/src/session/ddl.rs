//! DDL: `CREATE` / `DROP` of tables, views and databases.
//!
//! Every change happens under the engine's DDL lock and is saved before the
//! statement returns, so an acknowledged `CREATE` survives a restart.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, CreateTable, CreateView, ObjectType, TableConstraint,
};
use weir_sql::SqlType;
use weir_state::Change;

use super::Session;
use super::column_names::{Aliasing, alias_output_columns};
use super::dml::{conform_to_table, write_error};
use super::names::ident_name;
use crate::catalog::{ColumnDef, TableDef, ViewDef, WatermarkSpec};
use crate::error::{Result, WeirError, sqlstate};
use crate::event_time::EventTime;
use crate::output::{CommandTag, Output};
use crate::relation::{Relation, Table, View};
use crate::write_log;

impl Session {
    pub(crate) async fn create_table(&mut self, create: &CreateTable) -> Result<Output> {
        if create.temporary {
            return Err(WeirError::not_supported("CREATE TEMPORARY TABLE"));
        }
        if create.or_replace {
            return Err(WeirError::not_supported("CREATE OR REPLACE TABLE"));
        }
        self.create_table_from(TableSpec {
            name: &create.name,
            if_not_exists: create.if_not_exists,
            columns: &create.columns,
            constraints: &create.constraints,
            query: create.query.as_deref(),
            watermark: None,
            append_only: false,
        })
        .await
    }

    /// `CREATE TABLE`, in sqlparser's form or Weir's (with event time).
    pub(crate) async fn create_table_from(&mut self, create: TableSpec<'_>) -> Result<Output> {
        let name = self.relation_name(create.name)?;
        let engine = self.engine.clone();
        let _ddl = engine.ddl_lock().await;
        if self.name_taken(&name, create.if_not_exists)? {
            return Ok(Output::Command(CommandTag::new("CREATE TABLE")));
        }

        // CREATE TABLE ... AS SELECT: the columns are the query's.
        let query_plan = match create.query {
            Some(query) => {
                let mut query = Box::new(query.clone());
                alias_output_columns(&mut query, Aliasing::Postgres);
                Some(self.plan_query(&ast::Statement::Query(query)).await?)
            }
            None => None,
        };
        let mut columns = Vec::new();
        let mut primary_key: Vec<usize> = Vec::new();
        if let Some(plan) = &query_plan {
            for field in plan.schema().fields() {
                let ty = SqlType::from_arrow(field.data_type()).ok_or_else(|| {
                    WeirError::not_supported(format!(
                        "a column of type {} in CREATE TABLE AS",
                        field.data_type()
                    ))
                })?;
                columns.push(ColumnDef {
                    name: field.name().clone(),
                    ty,
                    not_null: false,
                    default: None,
                });
            }
            for (i, column) in create.columns.iter().enumerate() {
                if let Some(c) = columns.get_mut(i) {
                    c.name = ident_name(&column.name);
                }
            }
        } else {
            for column in create.columns {
                let column_name = ident_name(&column.name);
                let mut def = ColumnDef {
                    name: column_name.clone(),
                    ty: SqlType::from_ast(&column.data_type)?,
                    not_null: false,
                    default: None,
                };
                for option in &column.options {
                    match &option.option {
                        ColumnOption::NotNull => def.not_null = true,
                        ColumnOption::Null => def.not_null = false,
                        ColumnOption::Default(expr) => def.default = Some(expr.to_string()),
                        ColumnOption::PrimaryKey(_) => {
                            if !primary_key.is_empty() {
                                return Err(multiple_primary_keys(&name));
                            }
                            primary_key.push(columns.len());
                        }
                        other => return Err(unsupported_constraint(other.to_string())),
                    }
                }
                columns.push(def);
            }
        }
        for (i, column) in columns.iter().enumerate() {
            if columns[..i].iter().any(|c| c.name == column.name) {
                return Err(WeirError::new(
                    sqlstate::DUPLICATE_COLUMN,
                    format!("column \"{}\" specified more than once", column.name),
                ));
            }
        }
        if columns.is_empty() {
            return Err(WeirError::not_supported("a table without columns"));
        }
        for constraint in create.constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    if !primary_key.is_empty() {
                        return Err(multiple_primary_keys(&name));
                    }
                    for key in &pk.columns {
                        let ast::Expr::Identifier(ident) = &key.column.expr else {
                            return Err(WeirError::not_supported("a primary key on an expression"));
                        };
                        let key_name = ident_name(ident);
                        let index =
                            columns
                                .iter()
                                .position(|c| c.name == key_name)
                                .ok_or_else(|| {
                                    WeirError::new(
                                        sqlstate::UNDEFINED_COLUMN,
                                        format!(
                                            "column \"{key_name}\" named in key does not exist"
                                        ),
                                    )
                                })?;
                        primary_key.push(index);
                    }
                }
                other => return Err(unsupported_constraint(other.to_string())),
            }
        }

        let oid = self.engine.allocate_oid();
        let primary_key_oid = (!primary_key.is_empty()).then(|| {
            // The index and its constraint each have an OID.
            let index = self.engine.allocate_oid();
            self.engine.allocate_oid();
            index
        });
        let def = TableDef {
            oid,
            name: name.clone(),
            columns,
            primary_key,
            primary_key_oid,
            watermark: create.watermark.map(|w| WatermarkSpec {
                column: ident_name(&w.column),
                expr: w.expr.to_string(),
            }),
            append_only: create.append_only,
        };
        let table = self.build_table(def)?;
        // CREATE TABLE AS fills the table before it becomes visible, so that a
        // failing query leaves no table behind.
        let tag = match query_plan {
            Some(plan) => {
                let rows = self.fill(&table, plan).await?;
                CommandTag::with_rows("SELECT", rows)
            }
            None => CommandTag::new("CREATE TABLE"),
        };
        self.db.add(Relation::Table(table));
        if let Err(e) = self.engine.save().await {
            self.db.remove(&name);
            return Err(e);
        }
        Ok(Output::Command(tag))
    }

    /// Fills a new table with a query's rows (CREATE TABLE AS).
    async fn fill(&self, table: &Arc<Table>, plan: LogicalPlan) -> Result<u64> {
        let batches = self.frame(plan).await?.collect().await?;
        let batches = conform_to_table(&table.def.columns, table.schema_ref(), batches)?;
        let mut writer = table.data.writer().await;
        let rows = writer
            .insert(&batches)
            .map_err(|e| write_error(&table.def, e))?;
        let changes: Vec<Change> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| Change::rows(b.clone(), None))
            .collect();
        let commit = write_log::append(self.engine.wal(), table.def.oid, &changes)?;
        drop(writer);
        self.durable(commit).await?;
        Ok(rows as u64)
    }

    /// Builds a table from its definition, planning its column defaults.
    fn build_table(&self, def: TableDef) -> Result<Arc<Table>> {
        let schema = crate::catalog::arrow_schema(&def.columns);
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let mut defaults: HashMap<String, Expr> = HashMap::new();
        for column in &def.columns {
            if let Some(sql) = &column.default {
                let expr = self
                    .ctx
                    .parse_sql_expr(sql, &df_schema)
                    .map_err(|e| {
                        let mut err = WeirError::from(e);
                        err.message = format!(
                            "invalid DEFAULT for column \"{}\": {}",
                            column.name, err.message
                        );
                        err
                    })?
                    .cast_to(&column.ty.arrow_type(), &df_schema)?;
                defaults.insert(column.name.clone(), expr);
            }
        }
        let event_time = match &def.watermark {
            Some(spec) => Some(EventTime::plan(spec, &schema, &self.ctx)?),
            None => None,
        };
        Ok(Arc::new(Table::new(def, defaults, event_time)))
    }

    pub(crate) fn restore_table(&mut self, def: TableDef) -> Result<Arc<Table>> {
        let table = self.build_table(def)?;
        self.db.add(Relation::Table(table.clone()));
        Ok(table)
    }

    pub(crate) async fn create_view(&mut self, create: &CreateView) -> Result<Output> {
        if create.materialized {
            return Err(WeirError::not_supported("CREATE MATERIALIZED VIEW"));
        }
        let name = self.relation_name(&create.name)?;
        let engine = self.engine.clone();
        let _ddl = engine.ddl_lock().await;
        let existing = self.db.relation(&name);
        match &existing {
            Some(Relation::View(_)) if create.or_replace => {}
            Some(_) if create.if_not_exists => {
                self.notice(format!("relation \"{name}\" already exists, skipping"));
                return Ok(Output::Command(CommandTag::new("CREATE VIEW")));
            }
            Some(other) => return Err(already_exists(other)),
            None => {}
        }
        let def = ViewDef {
            oid: match &existing {
                Some(r) => r.oid(),
                None => self.engine.allocate_oid(),
            },
            name: name.clone(),
            query: create.query.to_string(),
            column_names: create.columns.iter().map(|c| ident_name(&c.name)).collect(),
        };
        let view = self.build_view(def).await?;
        if view.depends_on.contains(&name) || self.db.reads_transitively(&view.depends_on, &name) {
            return Err(WeirError::new(
                sqlstate::INVALID_OBJECT_DEFINITION,
                format!("infinite recursion detected in rules for relation \"{name}\""),
            ));
        }
        // What to put back if the change cannot be completed.
        let mut previous: Vec<Relation> = existing.iter().cloned().collect();
        self.db.add(Relation::View(view));
        let mut result = self.rebuild_dependents(&name, &mut previous).await;
        if result.is_ok() {
            result = self.engine.save().await;
        }
        if let Err(e) = result {
            if existing.is_none() {
                self.db.remove(&name);
            }
            for relation in previous {
                self.db.add(relation);
            }
            return Err(e);
        }
        Ok(Output::Command(CommandTag::new("CREATE VIEW")))
    }

    /// Plans again the views that read `name` (directly or not), which were
    /// planned with its previous definition. The replaced views are pushed to
    /// `previous`.
    async fn rebuild_dependents(&self, name: &str, previous: &mut Vec<Relation>) -> Result<()> {
        for dependent in self.db.dependents_in_order(name) {
            let Some(Relation::View(old)) = self.db.relation(&dependent) else {
                continue;
            };
            let rebuilt = self.build_view(old.def.clone()).await.map_err(|e| {
                WeirError::new(
                    e.code,
                    format!(
                        "cannot change view \"{name}\": view \"{dependent}\" reads it ({})",
                        e.message
                    ),
                )
            })?;
            previous.push(Relation::View(old));
            self.db.add(Relation::View(rebuilt));
        }
        Ok(())
    }

    /// Plans a view's query and names its columns.
    async fn build_view(&self, def: ViewDef) -> Result<Arc<View>> {
        let statement = match weir_sql::parse_sql(&def.query)?.pop() {
            Some(weir_sql::Statement::Standard(s)) if matches!(*s, ast::Statement::Query(_)) => {
                let mut statement = *s;
                if let ast::Statement::Query(query) = &mut statement {
                    alias_output_columns(query, Aliasing::Postgres);
                }
                statement
            }
            _ => {
                return Err(WeirError::new(
                    sqlstate::SYNTAX_ERROR,
                    "a view must be defined by a query",
                ));
            }
        };
        let (references, _) = resolve_table_references(
            &datafusion::sql::parser::Statement::Statement(Box::new(statement.clone())),
            true,
        )?;
        let depends_on: Vec<String> = references
            .iter()
            .map(|r| r.table().to_string())
            .filter(|t| self.db.relation(t).is_some())
            .collect();
        let mut plan = self.plan_query(&statement).await?;
        if !def.column_names.is_empty() {
            let fields = plan.schema().fields().len();
            if def.column_names.len() > fields {
                return Err(WeirError::new(
                    sqlstate::SYNTAX_ERROR,
                    "CREATE VIEW specifies more column names than columns",
                ));
            }
            let exprs: Vec<Expr> = plan
                .schema()
                .columns()
                .into_iter()
                .enumerate()
                .map(|(i, column)| {
                    let expr = Expr::Column(column.clone());
                    match def.column_names.get(i) {
                        Some(alias) => expr.alias(alias),
                        None => expr,
                    }
                })
                .collect();
            plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
        }
        Ok(Arc::new(View::new(def, plan, depends_on)))
    }

    pub(crate) async fn restore_view(&mut self, def: ViewDef) -> Result<()> {
        let view = self.build_view(def).await?;
        self.db.add(Relation::View(view));
        Ok(())
    }

    /// `DROP TABLE | VIEW | DATABASE`
    pub(crate) async fn drop_objects(
        &mut self,
        object_type: ObjectType,
        names: &[ast::ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Output> {
        let (kind, tag) = match object_type {
            ObjectType::Table => ("table", "DROP TABLE"),
            ObjectType::View => ("view", "DROP VIEW"),
            ObjectType::MaterializedView => ("materialized view", "DROP MATERIALIZED VIEW"),
            ObjectType::Database => {
                self.refuse_in_block("DROP DATABASE")?;
                for name in names {
                    let name = self.simple_name(name)?;
                    let dropped = self
                        .engine
                        .drop_database(&name, if_exists, &self.db.name)
                        .await?;
                    if !dropped {
                        self.notice(format!("database \"{name}\" does not exist, skipping"));
                    }
                }
                return Ok(Output::Command(CommandTag::new("DROP DATABASE")));
            }
            other => return Err(WeirError::not_supported(format!("DROP {other}"))),
        };
        self.drop_objects_of_kind(kind, names, if_exists, cascade)
            .await?;
        Ok(Output::Command(CommandTag::new(tag)))
    }

    /// Drops relations of one kind (`"table"`, `"stream"`, ...), and with
    /// `cascade` the relations that read them.
    pub(crate) async fn drop_objects_of_kind(
        &mut self,
        kind: &str,
        names: &[ast::ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<()> {
        let engine = self.engine.clone();
        let _ddl = engine.ddl_lock().await;
        // Check everything before dropping anything.
        let mut targets = Vec::new();
        for name in names {
            let name = self.relation_name(name)?;
            match self.db.relation(&name) {
                None if if_exists => {
                    self.notice(format!("{kind} \"{name}\" does not exist, skipping"));
                }
                None if kind == "table" || kind == "view" => {
                    return Err(WeirError::undefined_table(&name));
                }
                None => {
                    return Err(WeirError::new(
                        sqlstate::UNDEFINED_TABLE,
                        format!("{kind} \"{name}\" does not exist"),
                    ));
                }
                Some(relation) if relation.kind_name() != kind => {
                    return Err(WeirError::new(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!("\"{name}\" is not a {kind}"),
                    )
                    .with_hint(format!(
                        "Use DROP {} to remove a {}.",
                        relation.kind_name().to_uppercase(),
                        relation.kind_name()
                    )));
                }
                // Named twice (`DROP TABLE t, t`): dropped once, as in Postgres.
                Some(relation) if targets.iter().any(|t: &Relation| t.oid() == relation.oid()) => {}
                Some(relation) => targets.push(relation),
            }
        }
        let mut dropping: Vec<String> = targets.iter().map(|r| r.name().to_string()).collect();
        let mut i = 0;
        while i < dropping.len() {
            let name = dropping[i].clone();
            for dependent in self.db.dependents_of(&name) {
                if dropping.contains(&dependent) {
                    continue;
                }
                if !cascade {
                    let relation = self.db.relation(&name);
                    let relation_kind = relation.as_ref().map_or(kind, |r| r.kind_name());
                    return Err(WeirError::new(
                        sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                        format!(
                            "cannot drop {relation_kind} {name} because other objects depend on it"
                        ),
                    )
                    .with_detail(format!(
                        "{} {dependent} depends on {relation_kind} {name}",
                        self.kind_of(&dependent)
                    ))
                    .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
                }
                self.notice(format!(
                    "drop cascades to {} {dependent}",
                    self.kind_of(&dependent)
                ));
                dropping.push(dependent);
            }
            i += 1;
        }
        // Wait for statements writing the tables to finish.
        let mut tables: Vec<Arc<Table>> = dropping
            .iter()
            .filter_map(|name| match self.db.relation(name) {
                Some(Relation::Table(t)) => Some(t),
                _ => None,
            })
            .collect();
        // In OID order, as jobs starting take them (no deadlock).
        tables.sort_by_key(|t| t.def.oid);
        let mut writers = Vec::with_capacity(tables.len());
        for table in &tables {
            writers.push(table.data.writer().await);
        }
        let mut removed = Vec::new();
        let mut removed_sinks = Vec::new();
        for name in dropping.iter().rev() {
            if let Some(relation) = self.db.remove(name) {
                removed.push(relation);
            } else if let Some(sink) = self.db.remove_sink(name) {
                removed_sinks.push(sink);
            }
        }
        if let Err(e) = self.engine.save().await {
            for relation in removed {
                self.db.add(relation);
            }
            for sink in removed_sinks {
                self.db.add_sink(sink);
            }
            return Err(e);
        }
        // Stop the jobs of dropped views and sinks, and free their state.
        for relation in &removed {
            if let Relation::MaterializedView(view) = relation {
                view.stop();
            }
        }
        for sink in removed_sinks {
            sink.stop();
            if let Err(e) = sink.output.connector().remove() {
                self.warning(
                    sqlstate::IO_ERROR,
                    format!("sink \"{}\": {e}", sink.def.name),
                );
            }
        }
        Ok(())
    }

    fn kind_of(&self, name: &str) -> &'static str {
        if self.db.sink(name).is_some() {
            return "sink";
        }
        self.db.relation(name).map_or("view", |r| r.kind_name())
    }

    pub(crate) async fn create_database(
        &mut self,
        name: &ast::ObjectName,
        if_not_exists: bool,
    ) -> Result<Output> {
        self.refuse_in_block("CREATE DATABASE")?;
        let name = self.simple_name(name)?;
        if !self.engine.create_database(&name, if_not_exists).await? {
            self.notice(format!("database \"{name}\" already exists, skipping"));
        }
        Ok(Output::Command(CommandTag::new("CREATE DATABASE")))
    }
}

/// What `CREATE TABLE` declares, from either form of the statement.
pub(crate) struct TableSpec<'a> {
    pub name: &'a ast::ObjectName,
    pub if_not_exists: bool,
    pub columns: &'a [ast::ColumnDef],
    pub constraints: &'a [TableConstraint],
    pub query: Option<&'a ast::Query>,
    pub watermark: Option<&'a weir_sql::WatermarkDef>,
    pub append_only: bool,
}

impl Session {
    /// Whether a relation `name` exists already: with `IF NOT EXISTS` a
    /// notice says it is skipped (true), otherwise it is an error (42P07).
    pub(super) fn name_taken(&mut self, name: &str, if_not_exists: bool) -> Result<bool> {
        if self.db.sink(name).is_some() {
            if if_not_exists {
                self.notice(format!("sink \"{name}\" already exists, skipping"));
                return Ok(true);
            }
            return Err(WeirError::new(
                sqlstate::DUPLICATE_TABLE,
                format!("sink \"{name}\" already exists"),
            ));
        }
        match self.db.relation(name) {
            None => Ok(false),
            Some(_) if if_not_exists => {
                self.notice(format!("relation \"{name}\" already exists, skipping"));
                Ok(true)
            }
            Some(existing) => Err(already_exists(&existing)),
        }
    }

    /// Statements that Postgres refuses inside a transaction block.
    fn refuse_in_block(&self, statement: &str) -> Result<()> {
        if self.transaction_state() == super::TransactionState::Idle {
            Ok(())
        } else {
            Err(WeirError::new(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                format!("{statement} cannot run inside a transaction block"),
            ))
        }
    }
}

fn already_exists(existing: &Relation) -> WeirError {
    WeirError::new(
        sqlstate::DUPLICATE_TABLE,
        format!("relation \"{}\" already exists", existing.name()),
    )
}

fn multiple_primary_keys(table: &str) -> WeirError {
    WeirError::new(
        sqlstate::INVALID_TABLE_DEFINITION,
        format!("multiple primary keys for table \"{table}\" are not allowed"),
    )
}

fn unsupported_constraint(constraint: String) -> WeirError {
    WeirError::new(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("constraint {constraint} is not supported"),
    )
    .with_hint("Weir enforces PRIMARY KEY, NOT NULL and DEFAULT; remove other constraints.")
}
