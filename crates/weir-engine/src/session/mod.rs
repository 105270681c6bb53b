//! A session: one client connection's view of a database.
//!
//! A statement goes through two steps, which the extended protocol separates:
//! [`Session::prepare`] plans it (so that its parameter and result types are
//! known), and [`Session::execute`] binds parameter values and runs it. The
//! simple protocol does both at once ([`Session::run`]).
//!
//! The session also keeps the Postgres transaction-block state. Weir applies
//! every statement when it runs (there is no rollback): `BEGIN` / `COMMIT` /
//! `ROLLBACK` are accepted so that drivers work, a failed statement inside a
//! block makes the block refuse further statements until it ends (as Postgres
//! does), and `ROLLBACK` of a block that wrote says that nothing was undone.

mod backlog;
mod column_names;
mod continuous;
mod copy;
mod cursors;
mod ddl;
mod dml;
mod names;
mod query;
mod sinks;
mod streams;
mod subscribe;
mod utility;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast;
use weir_sql::Statement;

use crate::catalog::ObjectDef;
use crate::checkpoint::Recovery;
use crate::database::{Database, PUBLIC_SCHEMA, SessionCatalogs};
use crate::engine::Engine;
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{Notice, Output};
use crate::pg_catalog::functions::{self, SharedSettings, arrow_time_zone};
use crate::relation::{Stream, Table};
use crate::settings::Settings;

pub(crate) use dml::ModifyKind;
pub(crate) use names::ident_name;

/// Where a session stands with respect to a transaction block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// Not in a block: each statement stands alone.
    Idle,
    /// Inside `BEGIN ... COMMIT`.
    InBlock,
    /// Inside a block in which a statement failed: only `COMMIT` / `ROLLBACK`
    /// are accepted.
    Failed,
}

/// The most parameters a statement can have (the protocol counts them in 16
/// bits).
const MAX_PARAMETERS: usize = 65_535;

/// A planned statement, ready to run with parameter values.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub statement: Statement,
    plan: Plan,
    /// The catalog version the plan was made against.
    db_version: u64,
}

#[derive(Debug, Clone)]
enum Plan {
    /// A query DataFusion runs, and the names of its output columns.
    Query {
        plan: LogicalPlan,
        schema: SchemaRef,
    },
    /// `INSERT`: the rows to add, computed by DataFusion.
    Insert {
        table: dml::InsertTarget,
        source: LogicalPlan,
    },
    /// `UPDATE` / `DELETE`: every row with its new values and whether the
    /// statement touches it.
    Modify {
        table: Arc<Table>,
        plan: LogicalPlan,
        kind: ModifyKind,
    },
    /// Statements executed from their syntax (DDL, SET, ...), with the schema
    /// of the rows they return, if any.
    Utility(Option<SchemaRef>),
}

impl Prepared {
    /// Types of the `$n` parameters, in order; `None` where unknown.
    pub fn param_types(&self) -> Result<Vec<Option<DataType>>> {
        let plan = match &self.plan {
            Plan::Query { plan: p, .. }
            | Plan::Insert { source: p, .. }
            | Plan::Modify { plan: p, .. } => p,
            Plan::Utility(_) => return Ok(vec![]),
        };
        let mut types = plan.get_parameter_types()?;
        // DataFusion leaves `$1::bigint` untyped; Postgres types it by the cast.
        for (name, ty) in cast_parameter_types(plan)? {
            if let Some(slot) = types.get_mut(&name)
                && slot.is_none()
            {
                *slot = Some(ty);
            }
        }
        let mut numbered: Vec<(usize, Option<DataType>)> = types
            .into_iter()
            .filter_map(|(name, ty)| Some((name.trim_start_matches('$').parse().ok()?, ty)))
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        let count = numbered.last().map_or(0, |(n, _)| *n);
        if count > MAX_PARAMETERS {
            return Err(WeirError::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!("a statement can have at most {MAX_PARAMETERS} parameters, not ${count}"),
            ));
        }
        let mut out = vec![None; count];
        for (n, ty) in numbered {
            if n >= 1 {
                out[n - 1] = ty;
            }
        }
        Ok(out)
    }

    /// The schema of the rows the statement returns; `None` when it returns
    /// none.
    pub fn output_schema(&self) -> Option<SchemaRef> {
        match &self.plan {
            Plan::Query { schema, .. } => Some(schema.clone()),
            Plan::Insert { .. } | Plan::Modify { .. } => None,
            Plan::Utility(schema) => schema.clone(),
        }
    }
}

/// One client's session.
pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) db: Arc<Database>,
    pub(crate) user: String,
    pub(crate) settings: SharedSettings,
    pub(crate) ctx: SessionContext,
    tx: TransactionState,
    /// Statements that changed data or the catalog in the current block.
    writes_in_block: usize,
    notices: Vec<Notice>,
    reported: Vec<(&'static str, String)>,
    /// Settings changed with `SET LOCAL`, with their values before the block.
    local_settings: Vec<(String, String)>,
    sessions_of_db: Arc<AtomicUsize>,
    /// Open cursors, by name.
    cursors: HashMap<String, cursors::Cursor>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("database", &self.db.name)
            .field("user", &self.user)
            .field("tx", &self.tx)
            .finish()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.sessions_of_db.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Session {
    pub(crate) fn new(
        engine: Arc<Engine>,
        db: Arc<Database>,
        user: &str,
        startup: &[(String, String)],
        sessions_of_db: Arc<AtomicUsize>,
    ) -> Result<Session> {
        let settings = Settings::for_session(user, startup);
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(&db.name, PUBLIC_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        {
            let options = config.options_mut();
            options.sql_parser.map_string_types_to_utf8view = false;
            options.sql_parser.enable_ident_normalization = true;
            // `0.1` is an exact numeric in Postgres, not a float.
            options.sql_parser.parse_float_as_decimal = true;
            options.execution.time_zone = Some(arrow_time_zone(&settings.time_zone()));
            // DataFusion checks that an aggregate's physical input schema
            // equals the logical one, nullability and field metadata
            // included; its own rewrites (DISTINCT, set operations over
            // outer joins) break that check on valid queries, which then
            // fail as internal errors (found by tests/sql_fuzz.rs).
            options.execution.skip_physical_aggregate_schema_check = true;
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_catalog_list(Arc::new(SessionCatalogs(db.clone())))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let settings = Arc::new(RwLock::new(settings));
        functions::install(&ctx, &db, engine.static_tables(), &settings, user);
        crate::streaming::window_function::install(&ctx, &db);
        crate::casts::install(&ctx, &settings);
        sessions_of_db.fetch_add(1, Ordering::AcqRel);
        Ok(Session {
            engine,
            db,
            user: user.to_string(),
            settings,
            ctx,
            tx: TransactionState::Idle,
            writes_in_block: 0,
            notices: Vec::new(),
            reported: Vec::new(),
            local_settings: Vec::new(),
            sessions_of_db,
            cursors: HashMap::new(),
        })
    }

    pub fn database(&self) -> &str {
        &self.db.name
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn transaction_state(&self) -> TransactionState {
        self.tx
    }

    /// A copy of the current settings.
    pub fn settings(&self) -> Settings {
        self.read_settings().clone()
    }

    /// Notices produced by the last statements, to send to the client.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Reported settings that changed, to send as `ParameterStatus`.
    pub fn take_reported(&mut self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.reported)
    }

    /// Parses a query string into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        Ok(weir_sql::parse_sql(sql)?)
    }

    /// Plans and runs one statement without parameters.
    pub async fn run(&mut self, statement: Statement) -> Result<Output> {
        let result = self.run_checked(statement).await;
        if result.is_err() {
            self.statement_failed();
        }
        result
    }

    async fn run_checked(&mut self, statement: Statement) -> Result<Output> {
        self.check_transaction(&statement)?;
        let prepared = self.plan(statement).await?;
        self.execute_unchecked(&prepared, Vec::new()).await
    }

    /// Plans a statement, to run later with [`Session::execute`].
    pub async fn prepare(&mut self, statement: Statement) -> Result<Prepared> {
        self.plan(statement).await
    }

    /// Runs a prepared statement with parameter values (`$1`, `$2`, ...).
    pub async fn execute(
        &mut self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        let result = self.execute_checked(prepared, params).await;
        if result.is_err() {
            self.statement_failed();
        }
        result
    }

    async fn execute_checked(
        &mut self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        self.check_transaction(&prepared.statement)?;
        if prepared.db_version == self.db.version() {
            return self.execute_unchecked(prepared, params).await;
        }
        // The catalog changed since the statement was planned: plan it again.
        // Its rows must keep the shape the client was told at Describe.
        let fresh = self.plan(prepared.statement.clone()).await?;
        let shape = |p: &Prepared| {
            p.output_schema().map(|s| {
                s.fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect::<Vec<_>>()
            })
        };
        if shape(&fresh) != shape(prepared) {
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "cached plan must not change result type",
            )
            .with_hint("Prepare the statement again."));
        }
        self.execute_unchecked(&fresh, params).await
    }

    /// Marks the current transaction block failed after a statement failed
    /// (the session does so itself for errors of `run` and `execute`; the
    /// wire layer for errors it finds, in a row stream or a protocol message).
    pub fn statement_failed(&mut self) {
        if self.tx == TransactionState::InBlock {
            self.tx = TransactionState::Failed;
        }
    }

    /// Rebuilds a saved object (at startup), with what `checkpoint` holds of
    /// it, if anything. A stream is returned with its connector's position:
    /// the caller starts its tasks once every object is back.
    pub(crate) async fn restore(
        &mut self,
        object: ObjectDef,
        checkpoint: Option<&Recovery>,
    ) -> Result<Option<(Arc<Stream>, Option<serde_json::Value>)>> {
        let oid = object.oid();
        let checkpoint = checkpoint.filter(|c| c.has(oid));
        let watermark = checkpoint.and_then(|c| c.watermark_micros(oid));
        match object {
            ObjectDef::Table(def) => {
                let table = self.restore_table(def)?;
                if let Some(checkpoint) = checkpoint {
                    let rows = checkpoint.rows(oid).await?;
                    table.data.writer().await.insert(&rows).map_err(|e| {
                        WeirError::new(sqlstate::DATA_CORRUPTED, format!("checkpoint rows: {e}"))
                    })?;
                }
                if let (Some(event_time), Some(micros)) = (&table.event_time, watermark) {
                    event_time.advance_to(micros)?;
                }
                Ok(None)
            }
            ObjectDef::View(def) => self.restore_view(def).await.map(|()| None),
            ObjectDef::Stream(def) => {
                let position = checkpoint.and_then(|c| c.source_position(oid)).cloned();
                let stream = self.restore_stream(def)?;
                if let Some(checkpoint) = checkpoint {
                    stream.restore_dead_letters(checkpoint.dead_letters(oid));
                }
                if let (Some(event_time), Some(micros)) = (&stream.event_time, watermark) {
                    event_time.advance_to(micros)?;
                }
                Ok(Some((stream, position)))
            }
            ObjectDef::MaterializedView(def) => {
                let start = match checkpoint {
                    Some(checkpoint) => streams::Start::Checkpoint {
                        rows: checkpoint.rows(oid).await?,
                        states: checkpoint.operator_states(oid).await?,
                        finished: checkpoint.finished(oid),
                    },
                    None => streams::Start::Restore,
                };
                self.start_materialized_view(def, start)
                    .await
                    .map(|()| None)
            }
            ObjectDef::Sink(def) => {
                let (start, committed) = match checkpoint {
                    Some(checkpoint) => (
                        streams::Start::Checkpoint {
                            rows: Vec::new(),
                            states: checkpoint.operator_states(oid).await?,
                            finished: checkpoint.finished(oid),
                        },
                        checkpoint.sink_staged(oid),
                    ),
                    None => (streams::Start::Restore, Vec::new()),
                };
                self.start_sink(def, start, &committed).await.map(|()| None)
            }
        }
    }

    async fn plan(&mut self, statement: Statement) -> Result<Prepared> {
        let db_version = self.db.version();
        let plan = match &statement {
            Statement::Standard(stmt) => match stmt.as_ref() {
                ast::Statement::Query(query) => {
                    let mut query = query.clone();
                    crate::streaming::window_function::name_arguments(&mut query);
                    let names = column_names::alias_output_columns(
                        &mut query,
                        column_names::Aliasing::Internal,
                    );
                    let plan = self.plan_query(&ast::Statement::Query(query)).await?;
                    let mut schema = renamed_schema(&plan, &names);
                    if continuous::reads_stream(&plan) {
                        schema = continuous::output_schema(&schema, &plan);
                    }
                    Plan::Query { plan, schema }
                }
                ast::Statement::Explain { .. } => {
                    let plan = self.plan_query(stmt).await?;
                    let schema = renamed_schema(&plan, &[]);
                    Plan::Query { plan, schema }
                }
                ast::Statement::Insert(insert) => {
                    let (table, source) = self.plan_insert(stmt, insert).await?;
                    Plan::Insert { table, source }
                }
                ast::Statement::Update(update) => {
                    let (table, plan) = self.plan_update(update).await?;
                    Plan::Modify {
                        table,
                        plan,
                        kind: ModifyKind::Update,
                    }
                }
                ast::Statement::Delete(delete) => {
                    let (table, plan) = self.plan_delete(delete).await?;
                    Plan::Modify {
                        table,
                        plan,
                        kind: ModifyKind::Delete,
                    }
                }
                ast::Statement::Fetch { name, .. } => Plan::Utility(
                    self.cursors
                        .get(&ident_name(name))
                        .map(|c| c.schema().clone()),
                ),
                other => Plan::Utility(utility::output_schema(other)),
            },
            Statement::ShowObjects(_) => Plan::Utility(Some(name_column_schema("Name"))),
            Statement::ExplainMaterializedView(_) => {
                Plan::Utility(Some(name_column_schema("QUERY PLAN")))
            }
            Statement::CreateStream(_)
            | Statement::CreateMaterializedView(_)
            | Statement::DropStream(_)
            | Statement::CreateSink(_)
            | Statement::DropSink(_)
            | Statement::Flush
            | Statement::Checkpoint
            | Statement::DeclareSubscribe(_) => Plan::Utility(None),
            Statement::Subscribe(subscribe) => {
                Plan::Utility(Some(self.plan_subscribe(subscribe).await?.schema))
            }
            Statement::FetchWithTimeout(fetch, _) => Plan::Utility(match fetch.as_ref() {
                ast::Statement::Fetch { name, .. } => self
                    .cursors
                    .get(&ident_name(name))
                    .map(|c| c.schema().clone()),
                _ => None,
            }),
        };
        let prepared = Prepared {
            statement,
            plan,
            db_version,
        };
        prepared.param_types()?;
        Ok(prepared)
    }

    async fn execute_unchecked(
        &mut self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        let output = match &prepared.plan {
            Plan::Query { plan, schema } => self.execute_query(plan, schema, &params).await?,
            Plan::Insert { table, source } => self.execute_insert(table, source, &params).await?,
            Plan::Modify { table, plan, kind } => {
                self.execute_modify(table, plan, *kind, &params).await?
            }
            Plan::Utility(_) => {
                if !params.is_empty() {
                    return Err(WeirError::new(
                        sqlstate::SYNTAX_ERROR,
                        "this statement does not take parameters",
                    ));
                }
                self.execute_utility(&prepared.statement).await?
            }
        };
        if self.tx == TransactionState::InBlock && writes(&prepared.statement) {
            self.writes_in_block += 1;
        }
        Ok(output)
    }

    /// Refuses statements in a failed block, other than the ones that end it.
    fn check_transaction(&self, statement: &Statement) -> Result<()> {
        if self.tx != TransactionState::Failed {
            return Ok(());
        }
        let ends_block = matches!(
            statement,
            Statement::Standard(s) if matches!(
                s.as_ref(),
                ast::Statement::Commit { .. } | ast::Statement::Rollback { .. }
            )
        );
        if ends_block {
            Ok(())
        } else {
            Err(WeirError::new(
                sqlstate::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ))
        }
    }

    pub(crate) fn notice(&mut self, message: impl Into<String>) {
        self.notices.push(Notice {
            severity: "NOTICE",
            code: sqlstate::SUCCESSFUL_COMPLETION,
            message: message.into(),
        });
    }

    pub(crate) fn warning(&mut self, code: &'static str, message: impl Into<String>) {
        self.notices.push(Notice {
            severity: "WARNING",
            code,
            message: message.into(),
        });
    }

    pub(crate) fn read_settings(&self) -> std::sync::RwLockReadGuard<'_, Settings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_settings(&self) -> std::sync::RwLockWriteGuard<'_, Settings> {
        self.settings.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Types of parameters that are cast: `$1::bigint` is a bigint.
fn cast_parameter_types(plan: &LogicalPlan) -> Result<Vec<(String, DataType)>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut found = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(cast) = e
                    && let Expr::Placeholder(p) = cast.expr.as_ref()
                {
                    found.push((p.id.clone(), cast.field.data_type().clone()));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

/// Whether a statement changes data or the catalog (for the ROLLBACK notice).
fn writes(statement: &Statement) -> bool {
    match statement {
        Statement::Standard(s) => matches!(
            s.as_ref(),
            ast::Statement::Insert(_)
                | ast::Statement::Update(_)
                | ast::Statement::Delete(_)
                | ast::Statement::Truncate(_)
                | ast::Statement::CreateTable(_)
                | ast::Statement::CreateView(_)
                | ast::Statement::Drop { .. }
                | ast::Statement::CreateDatabase { .. }
        ),
        Statement::CreateStream(_)
        | Statement::CreateMaterializedView(_)
        | Statement::DropStream(_)
        | Statement::CreateSink(_)
        | Statement::DropSink(_) => true,
        Statement::ShowObjects(_)
        | Statement::ExplainMaterializedView(_)
        | Statement::Flush
        | Statement::Checkpoint
        | Statement::FetchWithTimeout(..)
        | Statement::Subscribe(_)
        | Statement::DeclareSubscribe(_) => false,
    }
}

/// The output schema of a query plan, with the columns named as Postgres
/// names them.
fn renamed_schema(plan: &LogicalPlan, names: &[String]) -> SchemaRef {
    let fields: Vec<Field> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_name(column_names::output_name(f.name(), names))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Postgres name of a column's type, for messages.
pub(crate) fn type_name_of(field: &Field) -> String {
    match weir_sql::SqlType::of_field(field) {
        Some(ty) => ty.to_string(),
        None => field.data_type().to_string(),
    }
}

/// A one-column text schema (`SHOW` results).
pub(crate) fn name_column_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}
