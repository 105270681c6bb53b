//! `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE` on tables.
//!
//! DataFusion computes the rows: for `INSERT` the rows to add (DataFusion's own
//! `INSERT` planning fills defaults and casts to the column types); for
//! `UPDATE` and `DELETE` a query over the table that returns, for every row,
//! its new values and whether the statement touches it. The table store then
//! applies the result as one atomic step, checking the constraints; the
//! table's write lock is held from the read to the write, so concurrent
//! writers cannot interleave.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{
    CastOptions, cast_with_options, concat_batches, filter_record_batch, interleave,
};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, FromTable, Ident, SelectItem, SetExpr, TableFactor, TableObject,
    TableWithJoins, Value,
};
use weir_sql::SqlType;
use weir_state::{Change, Commit, WriteError};

use super::Session;
use super::column_names::{Aliasing, alias_output_columns};
use super::names::ident_name;
use super::query::bind;
use crate::catalog::{ColumnDef, TableDef};
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{CommandTag, Output};
use crate::relation::{ROW_ID, ROW_IDS_PREFIX, Relation, RowIds, Stream, Table};
use crate::stream::Origin;
use crate::write_log;
use weir_runtime::{Chunk, Message};

/// What an `UPDATE` or `DELETE` does to the rows it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModifyKind {
    /// Sets columns to new values.
    Update,
    Delete,
}

/// What an `INSERT` writes to: a table stores the rows, a stream passes
/// them on to the views reading it.
#[derive(Debug, Clone)]
pub enum InsertTarget {
    Table(Arc<Table>),
    Stream(Arc<Stream>),
}

impl InsertTarget {
    fn columns(&self) -> &[ColumnDef] {
        match self {
            InsertTarget::Table(t) => &t.def.columns,
            InsertTarget::Stream(s) => &s.def.columns,
        }
    }
}

impl Session {
    /// The table a DML statement writes to.
    fn target_table(&self, name: &ast::ObjectName, verb: &str) -> Result<Arc<Table>> {
        let relation_name = self.relation_name(name)?;
        match self.db.relation(&relation_name) {
            Some(Relation::Table(t)) if t.def.append_only && verb != "insert into" => {
                Err(WeirError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("cannot {verb} append-only table \"{relation_name}\""),
                )
                .with_hint("An APPEND ONLY table only takes INSERT."))
            }
            // Changing rows behind the watermark would reopen closed windows.
            Some(Relation::Table(t)) if t.event_time.is_some() && verb != "insert into" => {
                Err(WeirError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("cannot {verb} table \"{relation_name}\", which has event time"),
                )
                .with_hint("A table with WATERMARK FOR only takes INSERT."))
            }
            Some(Relation::Table(t)) => Ok(t),
            Some(other) => Err(WeirError::new(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("cannot {verb} {} \"{relation_name}\"", other.kind_name()),
            )
            .with_hint("Only tables can be written to.")),
            None => Err(WeirError::undefined_table(&relation_name)),
        }
    }

    pub(crate) async fn plan_insert(
        &self,
        statement: &ast::Statement,
        insert: &ast::Insert,
    ) -> Result<(InsertTarget, LogicalPlan)> {
        let TableObject::TableName(name) = &insert.table else {
            return Err(WeirError::not_supported("INSERT INTO a table function"));
        };
        let target = match self.db.relation(&self.relation_name(name)?) {
            Some(Relation::Stream(stream)) => InsertTarget::Stream(stream),
            _ => InsertTarget::Table(self.target_table(name, "insert into")?),
        };
        if insert.returning.is_some() {
            return Err(WeirError::not_supported("INSERT ... RETURNING"));
        }
        if insert.on.is_some() {
            return Err(WeirError::not_supported("INSERT ... ON CONFLICT"));
        }
        // DataFusion needs distinct names for the source's columns.
        let mut statement = statement.clone();
        if let ast::Statement::Insert(insert) = &mut statement
            && let Some(source) = &mut insert.source
        {
            alias_output_columns(source, Aliasing::Internal);
        }
        let plan = self.plan_query(&statement).await?;
        let LogicalPlan::Dml(dml) = plan else {
            return Err(WeirError::internal(
                "INSERT was not planned as a DML statement",
            ));
        };
        let source = Arc::unwrap_or_clone(dml.input);
        let from_values = insert
            .source
            .as_ref()
            .is_some_and(|q| matches!(q.body.as_ref(), SetExpr::Values(_)));
        check_insert_types(target.columns(), &source, from_values)?;
        Ok((target, source))
    }

    pub(crate) async fn execute_insert(
        &mut self,
        target: &InsertTarget,
        source: &LogicalPlan,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let plan = bind(source, params)?;
        let (added, late) = match target {
            InsertTarget::Table(table) => {
                let mut writer = table.data.writer().await;
                self.ensure_current(table)?;
                let batches = self.frame(plan).await?.collect().await?;
                let batches = conform_to_table(&table.def.columns, table.schema_ref(), batches)?;
                let batch = concat_batches(table.schema_ref(), batches.iter())?;
                let (batch, admitted, late) = match &table.event_time {
                    Some(event_time) => {
                        let admitted = event_time.admit(&batch)?;
                        let late = admitted
                            .late
                            .as_ref()
                            .map_or(0, |(rows, _)| rows.num_rows());
                        if let Some((rows, marks)) = &admitted.late {
                            self.db.late_rows().record(&table.def.name, rows, marks);
                        }
                        (admitted.on_time.clone(), Some(admitted), late)
                    }
                    None => (batch, None, 0),
                };
                let added = writer
                    .insert(std::slice::from_ref(&batch))
                    .map_err(|e| write_error(&table.def, e))?;
                // The rows are in: the watermark moves (not before, in case
                // the insert is refused).
                let watermark = match (&table.event_time, admitted) {
                    (Some(event_time), Some(admitted)) => {
                        event_time.commit(&admitted);
                        admitted.watermark
                    }
                    _ => None,
                };
                let mut changes = Vec::new();
                if added > 0 {
                    changes.push(Change::rows(batch.clone(), None));
                }
                if watermark.is_some()
                    && let Some(micros) = table.event_time.as_ref().and_then(|e| e.current_micros())
                {
                    changes.push(Change::Watermark { micros });
                }
                let commit = write_log::append(self.engine.wal(), table.def.oid, &changes)?;
                if added > 0 {
                    table
                        .feed
                        .publish(Message::Chunk(Chunk::inserts(batch)))
                        .await;
                }
                if let Some(watermark) = watermark {
                    table.feed.publish(Message::Watermark(watermark)).await;
                }
                drop(writer);
                self.durable(commit).await?;
                (added, late)
            }
            InsertTarget::Stream(stream) => {
                let batches = self.frame(plan).await?.collect().await?;
                let batches = conform_to_table(&stream.def.columns, stream.schema(), batches)?;
                let batch = concat_batches(stream.schema(), batches.iter())?;
                let total = batch.num_rows();
                let (added, commit) = stream
                    .ingest(batch, self.db.late_rows(), Origin::Insert)
                    .await?;
                self.durable(commit).await?;
                (added, total - added)
            }
        };
        if late > 0 {
            self.notice(format!(
                "{late} late row{} not applied (behind the watermark); see weir_catalog.late_rows",
                if late == 1 { "" } else { "s" }
            ));
        }
        self.implicit_flush().await?;
        Ok(Output::Command(CommandTag::with_rows(
            "INSERT",
            added as u64,
        )))
    }

    /// With `synchronous_commit` on (the default), waits until the log holds
    /// the write on disk, so that it survives a crash once acknowledged.
    pub(crate) async fn durable(&self, commit: Option<Commit>) -> Result<()> {
        if self.read_settings().synchronous_commit() {
            write_log::durable(commit).await
        } else {
            Ok(())
        }
    }

    /// With `implicit_flush` on, waits until the views reflect the write.
    /// The write is done whatever happens here: a view that has stopped is
    /// reported as a warning, not as a failure of the write.
    async fn implicit_flush(&mut self) -> Result<()> {
        if self.read_settings().implicit_flush()
            && let Err(e) = self.engine.flush().await
        {
            self.warning(e.code, e.message);
        }
        Ok(())
    }

    pub(crate) async fn plan_update(
        &self,
        update: &ast::Update,
    ) -> Result<(Arc<Table>, LogicalPlan)> {
        if update.from.is_some() {
            return Err(WeirError::not_supported("UPDATE ... FROM"));
        }
        if update.returning.is_some() {
            return Err(WeirError::not_supported("UPDATE ... RETURNING"));
        }
        let table = self.single_table(&update.table, "update")?;
        let mut projection = vec![row_id_column()];
        let mut assigned = Vec::new();
        let mut literal_strings = Vec::new();
        for assignment in &update.assignments {
            let AssignmentTarget::ColumnName(column) = &assignment.target else {
                return Err(WeirError::not_supported("UPDATE of a tuple of columns"));
            };
            let column_name = column
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident_name)
                .unwrap_or_default();
            let index = table
                .def
                .columns
                .iter()
                .position(|c| c.name == column_name)
                .ok_or_else(|| {
                    WeirError::new(
                        sqlstate::UNDEFINED_COLUMN,
                        format!(
                            "column \"{column_name}\" of relation \"{}\" does not exist",
                            table.def.name
                        ),
                    )
                })?;
            if assigned.contains(&index) {
                return Err(WeirError::new(
                    sqlstate::SYNTAX_ERROR,
                    format!("multiple assignments to same column \"{column_name}\""),
                ));
            }
            assigned.push(index);
            literal_strings.push(is_string_literal(&assignment.value));
            // A bare parameter takes the column's type, as in Postgres.
            let value = match &assignment.value {
                ast::Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => {
                    cast_to_column(assignment.value.clone(), &table.def.columns[index])?
                }
                other => other.clone(),
            };
            projection.push(SelectItem::ExprWithAlias {
                expr: value,
                alias: Ident::new(format!("{NEW_VALUE}{index}")),
            });
        }
        let plan = self
            .plan_touched_rows(&update.table, projection, update.selection.clone())
            .await?;
        let schema = plan.schema();
        for (i, &index) in assigned.iter().enumerate() {
            let from = schema.field(1 + i).data_type();
            check_assignment(&table.def.columns[index], from, literal_strings[i])?;
        }
        Ok((table, plan))
    }

    pub(crate) async fn plan_delete(
        &self,
        delete: &ast::Delete,
    ) -> Result<(Arc<Table>, LogicalPlan)> {
        if delete.using.is_some() {
            return Err(WeirError::not_supported("DELETE ... USING"));
        }
        if delete.returning.is_some() {
            return Err(WeirError::not_supported("DELETE ... RETURNING"));
        }
        if !delete.tables.is_empty() {
            return Err(WeirError::not_supported("DELETE of several tables"));
        }
        let from = match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
        };
        let [target] = from.as_slice() else {
            return Err(WeirError::not_supported("DELETE from several tables"));
        };
        let table = self.single_table(target, "delete from")?;
        let plan = self
            .plan_touched_rows(target, vec![row_id_column()], delete.selection.clone())
            .await?;
        Ok((table, plan))
    }

    pub(crate) async fn execute_modify(
        &mut self,
        table: &Arc<Table>,
        plan: &LogicalPlan,
        kind: ModifyKind,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let mut writer = table.data.writer().await;
        self.ensure_current(table)?;
        let plan = bind(plan, params)?;
        let assigned: Vec<usize> = plan
            .schema()
            .fields()
            .iter()
            .filter_map(|f| f.name().strip_prefix(NEW_VALUE)?.parse().ok())
            .collect();
        let result = self.frame(plan).await?.collect().await?;
        let schema = table.schema_ref().clone();
        let snapshot = writer.snapshot();
        let current = concat_batches(&schema, snapshot.iter())?;
        let rows = current.num_rows();

        // Which rows the statement touches, and where their new values are.
        let result_schema = match result.first() {
            Some(batch) => batch.schema(),
            None => {
                let command = command_word(kind);
                return Ok(Output::Command(CommandTag::with_rows(command, 0)));
            }
        };
        let result = concat_batches(&result_schema, result.iter())?;
        let ids = result
            .column(0)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| WeirError::internal("row ids are not UInt64"))?;
        let mut position: Vec<Option<usize>> = vec![None; rows];
        for (i, id) in ids.values().iter().enumerate() {
            let slot = position
                .get_mut(*id as usize)
                .ok_or_else(|| WeirError::internal("row id out of range"))?;
            *slot = Some(i);
        }
        let touched = position.iter().filter(|p| p.is_some()).count();
        if touched == 0 {
            return Ok(Output::Command(CommandTag::with_rows(
                command_word(kind),
                0,
            )));
        }
        let touched_mask: BooleanArray = position.iter().map(|p| Some(p.is_some())).collect();
        let old_rows = filter_record_batch(&current, &touched_mask)?;
        let content = match kind {
            ModifyKind::Delete => {
                let keep: BooleanArray = position.iter().map(|p| Some(p.is_none())).collect();
                filter_record_batch(&current, &keep)?
            }
            ModifyKind::Update => {
                let mut columns = current.columns().to_vec();
                for (i, &index) in assigned.iter().enumerate() {
                    let target = schema.field(index).data_type();
                    let new = cast_strict(result.column(1 + i), target)?;
                    let indices: Vec<(usize, usize)> = position
                        .iter()
                        .enumerate()
                        .map(|(row, p)| match p {
                            Some(at) => (1, *at),
                            None => (0, row),
                        })
                        .collect();
                    columns[index] =
                        interleave(&[columns[index].as_ref(), new.as_ref()], &indices)?;
                }
                let updated = RecordBatch::try_new(schema.clone(), columns)?;
                check_lengths(&table.def.columns, std::slice::from_ref(&updated))?;
                updated
            }
        };
        let new_rows = match kind {
            ModifyKind::Delete => None,
            ModifyKind::Update => Some(filter_record_batch(&content, &touched_mask)?),
        };
        writer
            .replace(&[content])
            .map_err(|e| write_error(&table.def, e))?;
        // Views reading the table see the old rows go and the new ones come.
        let chunk = match new_rows {
            None => Chunk::deletes(old_rows),
            Some(new_rows) => {
                let n = old_rows.num_rows();
                let batch = concat_batches(&schema, [&old_rows, &new_rows])?;
                let ops = (0..batch.num_rows())
                    .map(|i| if i < n { -1i8 } else { 1 })
                    .collect::<Vec<_>>();
                Chunk::new(batch, ops.into())
            }
        };
        let commit =
            write_log::append(self.engine.wal(), table.def.oid, &[write_log::rows(&chunk)])?;
        table.feed.publish(Message::Chunk(chunk)).await;
        drop(writer);
        self.durable(commit).await?;
        self.implicit_flush().await?;
        Ok(Output::Command(CommandTag::with_rows(
            command_word(kind),
            touched as u64,
        )))
    }

    /// `TRUNCATE t, ...`
    pub(crate) async fn truncate(&mut self, truncate: &ast::Truncate) -> Result<Output> {
        let mut tables = Vec::new();
        for target in &truncate.table_names {
            tables.push(self.target_table(&target.name, "truncate")?);
        }
        for table in tables {
            let mut writer = table.data.writer().await;
            self.ensure_current(&table)?;
            let old = writer.snapshot();
            writer
                .replace(&[])
                .map_err(|e| write_error(&table.def, e))?;
            let chunks: Vec<Chunk> = old.iter().map(|b| Chunk::deletes(b.clone())).collect();
            let changes: Vec<Change> = chunks.iter().map(write_log::rows).collect();
            let commit = write_log::append(self.engine.wal(), table.def.oid, &changes)?;
            for chunk in chunks {
                table.feed.publish(Message::Chunk(chunk)).await;
            }
            drop(writer);
            self.durable(commit).await?;
        }
        self.implicit_flush().await?;
        Ok(Output::Command(CommandTag::new("TRUNCATE TABLE")))
    }

    /// Checks, with the table's writer held, that the table the statement was
    /// planned for is still the one of that name (not dropped or replaced
    /// while the statement was planned or waited for the lock).
    fn ensure_current(&self, table: &Arc<Table>) -> Result<()> {
        match self.db.relation(&table.def.name) {
            Some(Relation::Table(current)) if Arc::ptr_eq(&current, table) => Ok(()),
            _ => Err(WeirError::undefined_table(&table.def.name)),
        }
    }

    fn single_table(&self, target: &TableWithJoins, verb: &str) -> Result<Arc<Table>> {
        if !target.joins.is_empty() {
            return Err(WeirError::not_supported(format!("{verb} with a join")));
        }
        let TableFactor::Table { name, .. } = &target.relation else {
            return Err(WeirError::not_supported(format!(
                "{verb} of a derived table"
            )));
        };
        self.target_table(name, verb)
    }

    /// Plans `SELECT <projection> FROM <target with row ids> WHERE <selection>`:
    /// the rows a statement touches. The target keeps its name (or alias),
    /// so that the statement's expressions resolve as written.
    async fn plan_touched_rows(
        &self,
        target: &TableWithJoins,
        projection: Vec<SelectItem>,
        selection: Option<ast::Expr>,
    ) -> Result<LogicalPlan> {
        let TableFactor::Table { name, alias, .. } = &target.relation else {
            return Err(WeirError::not_supported("a derived table as target"));
        };
        let table_name = self.relation_name(name)?;
        let mut with_ids = target.clone();
        if let TableFactor::Table {
            name: scan_name,
            alias: scan_alias,
            ..
        } = &mut with_ids.relation
        {
            *scan_name = ast::ObjectName::from(vec![Ident::with_quote(
                '"',
                format!("{ROW_IDS_PREFIX}{table_name}"),
            )]);
            if alias.is_none() {
                *scan_alias = Some(ast::TableAlias {
                    explicit: true,
                    name: Ident::with_quote('"', table_name.clone()),
                    columns: vec![],
                    at: None,
                });
            }
        }
        let mut query = weir_sql::parse_sql("SELECT 1")?;
        let Some(weir_sql::Statement::Standard(statement)) = query.pop() else {
            return Err(WeirError::internal("cannot build a scan"));
        };
        let mut statement = *statement;
        if let ast::Statement::Query(q) = &mut statement
            && let SetExpr::Select(select) = q.body.as_mut()
        {
            select.projection = projection;
            select.from = vec![with_ids];
            select.selection = selection;
        }
        let plan = self.plan_query(&statement).await?;
        ensure_reads_rows_of(&plan, &table_name, &self.db)?;
        Ok(plan)
    }
}

/// Checks that the row ids a plan reads are those of the current table of
/// that name (a concurrent DROP and CREATE could swap it during planning).
fn ensure_reads_rows_of(
    plan: &LogicalPlan,
    table: &str,
    db: &crate::database::Database,
) -> Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::source_as_provider;
    let Some(Relation::Table(current)) = db.relation(table) else {
        return Err(WeirError::undefined_table(table));
    };
    let mut same = false;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(rows) = provider.as_ref().downcast_ref::<RowIds>()
        {
            same = rows.reads(&current);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if same {
        Ok(())
    } else {
        Err(WeirError::undefined_table(table))
    }
}

const NEW_VALUE: &str = "__weir_new_";

fn row_id_column() -> SelectItem {
    SelectItem::UnnamedExpr(ast::Expr::Identifier(Ident::with_quote('"', ROW_ID)))
}

fn command_word(kind: ModifyKind) -> &'static str {
    match kind {
        ModifyKind::Update => "UPDATE",
        ModifyKind::Delete => "DELETE",
    }
}

/// `expr::<column type>`.
fn cast_to_column(expr: ast::Expr, column: &ColumnDef) -> Result<ast::Expr> {
    let data_type = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(&column.ty.to_string())
    .and_then(|mut p| p.parse_data_type())
    .map_err(|e| WeirError::internal(format!("the type {} does not parse: {e}", column.ty)))?;
    Ok(ast::Expr::Cast {
        kind: ast::CastKind::DoubleColon,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    })
}

fn is_string_literal(expr: &ast::Expr) -> bool {
    matches!(
        expr,
        ast::Expr::Value(v) if matches!(
            v.value,
            Value::SingleQuotedString(_) | Value::EscapedStringLiteral(_) | Value::Null | Value::Placeholder(_)
        )
    )
}

/// A cast that fails on values that do not fit, rather than making them NULL.
fn cast_strict(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    Ok(cast_with_options(array, to, &options)?)
}

/// Casts the computed rows to the table's column types and checks lengths.
pub(crate) fn conform_to_table(
    columns: &[ColumnDef],
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast_strict(c, f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        out.push(RecordBatch::try_new_with_options(
            Arc::new(datafusion::arrow::datatypes::Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            )),
            columns,
            &Default::default(),
        )?);
    }
    check_lengths(columns, &out)?;
    Ok(out)
}

/// `varchar(n)` refuses longer values, as in Postgres.
fn check_lengths(columns: &[ColumnDef], batches: &[RecordBatch]) -> Result<()> {
    for (i, column) in columns.iter().enumerate() {
        let Some(max) = column.ty.max_length() else {
            continue;
        };
        for batch in batches {
            let Some(values) = batch.column(i).as_string_opt::<i32>() else {
                continue;
            };
            if values
                .iter()
                .flatten()
                .any(|v| v.chars().count() > max as usize)
            {
                return Err(WeirError::new(
                    sqlstate::STRING_DATA_RIGHT_TRUNCATION,
                    format!("value too long for type character varying({max})"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks that an `INSERT`'s computed columns may be assigned to the table's.
fn check_insert_types(
    columns: &[ColumnDef],
    source: &LogicalPlan,
    from_values: bool,
) -> Result<()> {
    let LogicalPlan::Projection(projection) = source else {
        return Ok(());
    };
    let input_schema = projection.input.schema();
    for (expr, column) in projection.expr.iter().zip(columns) {
        let inner = uncast(expr);
        let Ok(from) = inner.get_type(input_schema) else {
            continue;
        };
        let untyped = from_values || matches!(inner, Expr::Literal(..) | Expr::Placeholder(_));
        check_assignment(column, &from, untyped)?;
    }
    Ok(())
}

fn uncast(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => uncast(&alias.expr),
        Expr::Cast(cast) => uncast(&cast.expr),
        Expr::TryCast(cast) => uncast(&cast.expr),
        other => other,
    }
}

/// Postgres' assignment rules: numbers convert among themselves, anything
/// converts to text, a quoted literal converts to anything; other conversions
/// need an explicit cast.
fn check_assignment(column: &ColumnDef, from: &DataType, untyped_literal: bool) -> Result<()> {
    use DataType as D;
    let to = column.ty.arrow_type();
    let numeric = |t: &DataType| t.is_numeric();
    let textual = |t: &DataType| matches!(t, D::Utf8 | D::LargeUtf8 | D::Utf8View);
    let temporal = |t: &DataType| matches!(t, D::Date32 | D::Date64 | D::Timestamp(..));
    let ok = matches!(from, D::Null)
        || *from == to
        || textual(&to)
        || (textual(from) && untyped_literal)
        || (numeric(from) && numeric(&to))
        || (temporal(from) && temporal(&to))
        || (matches!(from, D::Time32(_) | D::Time64(_)) && matches!(to, D::Time64(_)))
        || (matches!(from, D::Interval(_) | D::Duration(_)) && matches!(to, D::Interval(_)))
        || (matches!(from, D::Binary | D::LargeBinary | D::BinaryView) && matches!(to, D::Binary))
        || (matches!(from, D::Boolean) && matches!(to, D::Boolean));
    if ok {
        return Ok(());
    }
    let from_name = SqlType::from_arrow(from).map_or_else(|| from.to_string(), |t| t.to_string());
    Err(WeirError::new(
        sqlstate::DATATYPE_MISMATCH,
        format!(
            "column \"{}\" is of type {} but expression is of type {from_name}",
            column.name, column.ty
        ),
    )
    .with_hint("You will need to rewrite or cast the expression."))
}

/// A refused write, as Postgres words it.
pub(crate) fn write_error(def: &TableDef, e: WriteError) -> WeirError {
    match e {
        WriteError::DuplicateKey { key } => WeirError::new(
            sqlstate::UNIQUE_VIOLATION,
            format!(
                "duplicate key value violates unique constraint \"{}\"",
                def.primary_key_name()
            ),
        )
        .with_detail(format!(
            "Key ({})=({key}) already exists.",
            def.primary_key_columns().join(", ")
        )),
        WriteError::NullValue { column } => WeirError::new(
            sqlstate::NOT_NULL_VIOLATION,
            format!(
                "null value in column \"{column}\" of relation \"{}\" violates not-null constraint",
                def.name
            ),
        ),
        WriteError::SchemaMismatch(m) => WeirError::internal(m),
    }
}
