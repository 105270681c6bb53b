//! Streaming DDL: `CREATE STREAM`, `CREATE MATERIALIZED VIEW` (and its
//! `EXPLAIN`), `DROP STREAM`, `FLUSH`.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast;
use weir_runtime::OperatorState;
use weir_runtime::{Outputs, ViewSink};
use weir_sql::{CreateMaterializedView, CreateStream, DropStream, Emit, SqlType, StreamKind};
use weir_state::ViewData;

use super::column_names::{Aliasing, alias_output_columns};
use super::ddl::TableSpec;
use super::names::ident_name;
use super::{Session, name_column_schema};
use crate::catalog::{ColumnDef, MaterializedViewDef, StreamDef, WatermarkSpec, arrow_schema};
use crate::error::{Result, WeirError, sqlstate};
use crate::event_time::EventTime;
use crate::output::{CommandTag, Output, Rows};
use crate::relation::{MaterializedView, Relation, Stream};
use crate::streaming::planner::{self, StreamPlan};
use crate::streaming::window_function::name_arguments;

/// Why a materialized view's job starts.
pub(crate) enum Start {
    /// `CREATE MATERIALIZED VIEW`: it reads from the current log position.
    Create,
    /// At startup: it reads from the log position saved in its definition.
    Restore,
    /// At startup, from a checkpoint: its rows and its operators' states
    /// (with no job when it had finished).
    Checkpoint {
        rows: Vec<RecordBatch>,
        states: Vec<OperatorState>,
        finished: bool,
    },
}

impl Session {
    pub(crate) async fn create_stream(&mut self, create: &CreateStream) -> Result<Output> {
        if create.kind == StreamKind::Table {
            if !create.options.is_empty() {
                return Err(WeirError::not_supported("WITH options on a table"));
            }
            let output = self
                .create_table_from(TableSpec {
                    name: &create.name,
                    if_not_exists: create.if_not_exists,
                    columns: &create.columns,
                    constraints: &create.constraints,
                    query: None,
                    watermark: create.watermark.as_ref(),
                    append_only: create.append_only,
                })
                .await?;
            return Ok(output);
        }
        if !create.constraints.is_empty() {
            return Err(WeirError::new(
                sqlstate::INVALID_TABLE_DEFINITION,
                "a stream has no keys: it stores no rows",
            )
            .with_hint("Use CREATE TABLE for rows with a primary key."));
        }
        let name = self.relation_name(&create.name)?;
        let engine = self.engine.clone();
        let _ddl = engine.ddl_lock().await;
        if self.name_taken(&name, create.if_not_exists)? {
            return Ok(Output::Command(CommandTag::new(create_tag(create))));
        }
        let mut columns = Vec::with_capacity(create.columns.len());
        for column in &create.columns {
            let column_name = ident_name(&column.name);
            if let Some(option) = column.options.first() {
                return Err(WeirError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "column \"{column_name}\" of a stream cannot have {}: a stream stores no rows",
                        option.option
                    ),
                ));
            }
            if columns.iter().any(|c: &ColumnDef| c.name == column_name) {
                return Err(WeirError::new(
                    sqlstate::DUPLICATE_COLUMN,
                    format!("column \"{column_name}\" specified more than once"),
                ));
            }
            columns.push(ColumnDef {
                name: column_name,
                ty: SqlType::from_ast(&column.data_type)?,
                not_null: false,
                default: None,
            });
        }
        let def = StreamDef {
            oid: self.engine.allocate_oid(),
            name: name.clone(),
            columns,
            watermark: create.watermark.as_ref().map(|w| WatermarkSpec {
                column: ident_name(&w.column),
                expr: w.expr.to_string(),
            }),
            options: create.options.clone(),
        };
        let stream = self.build_stream(def)?;
        self.db.add(Relation::Stream(stream.clone()));
        if let Err(e) = self.engine.save().await {
            self.db.remove(&name);
            return Err(e);
        }
        crate::connectors::start(&self.db, &stream)?;
        Ok(Output::Command(CommandTag::new(create_tag(create))))
    }

    /// Rebuilds a saved stream (at startup). Its tasks are started once
    /// every object is back (so that every view reading it sees its
    /// connector's rows from the same position).
    pub(crate) fn restore_stream(&mut self, def: StreamDef) -> Result<Arc<Stream>> {
        let stream = self.build_stream(def)?;
        self.db.add(Relation::Stream(stream.clone()));
        Ok(stream)
    }

    /// A stream from its definition (also at startup).
    pub(crate) fn build_stream(&self, def: StreamDef) -> Result<Arc<Stream>> {
        crate::connectors::check_options(&def)?;
        let on_error = crate::dead_letters::OnError::of(&def)?;
        let schema = arrow_schema(&def.columns);
        let event_time = match &def.watermark {
            Some(spec) => Some(EventTime::plan(spec, &schema, &self.ctx)?),
            None => None,
        };
        Ok(Arc::new(Stream::new(
            def,
            schema,
            event_time,
            on_error,
            self.engine.wal().clone(),
        )))
    }

    /// Plans a materialized view's query into a streaming job.
    pub(super) async fn plan_materialized_view(
        &self,
        query: &ast::Query,
        emit: Emit,
        parallelism: usize,
    ) -> Result<(StreamPlan, Vec<String>)> {
        let mut query = Box::new(query.clone());
        alias_output_columns(&mut query, Aliasing::Postgres);
        name_arguments(&mut query);
        let statement = ast::Statement::Query(query);
        let (references, _) = resolve_table_references(
            &datafusion::sql::parser::Statement::Statement(Box::new(statement.clone())),
            true,
        )?;
        let logical = self.plan_query(&statement).await?;
        let optimized = self.ctx.state().optimize(&logical)?;
        let plan = planner::plan(
            &optimized,
            &self.db,
            &self.ctx,
            emit == Emit::OnWindowClose,
            parallelism,
        )?;
        let mut depends_on: Vec<String> = references
            .iter()
            .map(|r| r.table().to_string())
            .filter(|t| self.db.relation(t).is_some())
            .chain(plan.sources.iter().cloned())
            .collect();
        depends_on.sort();
        depends_on.dedup();
        Ok((plan, depends_on))
    }

    pub(crate) async fn create_materialized_view(
        &mut self,
        create: &CreateMaterializedView,
    ) -> Result<Output> {
        let name = self.relation_name(&create.name)?;
        let engine = self.engine.clone();
        let ddl = engine.ddl_lock().await;
        if self.name_taken(&name, create.if_not_exists)? {
            return Ok(Output::Command(CommandTag::new("CREATE MATERIALIZED VIEW")));
        }
        let def = MaterializedViewDef {
            oid: self.engine.allocate_oid(),
            name: name.clone(),
            query: create.query.to_string(),
            emit_on_window_close: create.emit == Emit::OnWindowClose,
            parallelism: self.read_settings().streaming_parallelism(),
            log_position: 0, // set when it starts
        };
        self.start_materialized_view(def, Start::Create).await?;
        if let Err(e) = self.engine.save().await {
            self.db.remove(&name);
            return Err(e);
        }
        drop(ddl);
        // Return once the view holds what its inputs held (the backfill). The
        // view exists whatever happens now: a failure is a warning.
        if let Err(e) = self.engine.flush().await {
            self.warning(e.code, e.message);
        }
        Ok(Output::Command(CommandTag::new("CREATE MATERIALIZED VIEW")))
    }

    /// Plans a materialized view, starts its job and adds it to the
    /// database (also at startup).
    pub(crate) async fn start_materialized_view(
        &self,
        mut def: MaterializedViewDef,
        start: Start,
    ) -> Result<()> {
        let create = matches!(start, Start::Create);
        let query = parse_query(&def.query)?;
        let emit = if def.emit_on_window_close {
            Emit::OnWindowClose
        } else {
            Emit::OnUpdate
        };
        let (plan, depends_on) = self
            .plan_materialized_view(&query, emit, def.parallelism)
            .await?;
        if depends_on.contains(&def.name) {
            return Err(WeirError::new(
                sqlstate::INVALID_OBJECT_DEFINITION,
                format!("materialized view \"{}\" cannot read itself", def.name),
            ));
        }
        let data = Arc::new(ViewData::new(plan.schema.clone())?);
        let sink = ViewSink::new(data);
        let watermark_columns = plan.watermark_columns.clone();
        let append_only = plan.append_only;
        let (restore, finished) = match start {
            Start::Checkpoint {
                rows,
                states,
                finished,
            } => {
                sink.restore(&rows, Vec::new()).await?;
                (Some(states), finished)
            }
            Start::Create | Start::Restore => (None, false),
        };
        let job = if finished {
            None
        } else {
            // Sources are subscribed and the view registered between two
            // barriers, so that FLUSH waits for it or not at all.
            let barriers = self.engine.barrier_lock().await;
            let (job, position) = plan
                .start(
                    Outputs::View(sink.clone()),
                    *barriers,
                    self.engine.wal(),
                    restore,
                )
                .await?;
            if create {
                def.log_position = position;
            }
            Some(job)
        };
        let view = Arc::new(MaterializedView::new(
            def,
            sink,
            depends_on,
            watermark_columns,
            append_only,
        ));
        match job {
            Some(job) => view.set_job(job),
            None => {
                view.mark_finished();
                view.sink.end().await;
            }
        }
        self.db.add(Relation::MaterializedView(view));
        Ok(())
    }

    /// `EXPLAIN CREATE MATERIALIZED VIEW`: the operator graph.
    pub(crate) async fn explain_materialized_view(
        &mut self,
        create: &CreateMaterializedView,
    ) -> Result<Output> {
        let parallelism = self.read_settings().streaming_parallelism();
        let (plan, _) = self
            .plan_materialized_view(&create.query, create.emit, parallelism)
            .await?;
        let mut lines = plan.explain();
        lines.push(format!(
            "output: {} ({} rows)",
            plan.schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
                .join(", "),
            if plan.append_only {
                "insert-only"
            } else {
                "updating"
            }
        ));
        let schema = name_column_schema("QUERY PLAN");
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(lines))])?;
        let stream = datafusion::physical_plan::memory::MemoryStream::try_new(
            vec![batch],
            schema.clone(),
            None,
        )?;
        Ok(Output::Rows(Rows {
            schema,
            batches: Box::pin(stream),
            command: "EXPLAIN",
        }))
    }

    pub(crate) async fn drop_stream(&mut self, drop: &DropStream) -> Result<Output> {
        self.drop_objects_of_kind("stream", &drop.names, drop.if_exists, drop.cascade)
            .await?;
        Ok(Output::Command(CommandTag::new("DROP STREAM")))
    }

    /// `FLUSH`: returns once every materialized view reflects every write
    /// accepted before it.
    pub(crate) async fn flush(&mut self) -> Result<Output> {
        self.engine.flush().await?;
        Ok(Output::Command(CommandTag::new("FLUSH")))
    }
}

/// The command tag: `CREATE SOURCE` for the synonym.
fn create_tag(create: &CreateStream) -> &'static str {
    if create.kind == StreamKind::Source {
        "CREATE SOURCE"
    } else {
        "CREATE STREAM"
    }
}

pub(super) fn parse_query(sql: &str) -> Result<ast::Query> {
    match weir_sql::parse_sql(sql)?.pop() {
        Some(weir_sql::Statement::Standard(statement)) => match *statement {
            ast::Statement::Query(query) => Ok(*query),
            _ => Err(WeirError::internal(
                "a materialized view's query is not a query",
            )),
        },
        _ => Err(WeirError::internal(
            "a materialized view's query does not parse",
        )),
    }
}
