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
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{CastOptions, cast_with_options, filter_record_batch, not};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, FromTable, Ident, SelectItem, SetExpr, TableFactor, TableObject,
    TableWithJoins, Value, ValueWithSpan,
};
use weir_sql::SqlType;
use weir_state::WriteError;

use super::Session;
use super::names::ident_name;
use super::query::bind;
use crate::catalog::{ColumnDef, TableDef};
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{CommandTag, Output};
use crate::relation::{Relation, Table};

/// What an `UPDATE` or `DELETE` does to the rows it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModifyKind {
    /// Sets columns to new values.
    Update,
    Delete,
}

/// Name of the column that says whether a row is touched.
const HIT: &str = "__weir_hit";

impl Session {
    /// The table a DML statement writes to.
    fn target_table(&self, name: &ast::ObjectName, verb: &str) -> Result<Arc<Table>> {
        let relation_name = self.relation_name(name)?;
        match self.db.relation(&relation_name) {
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
    ) -> Result<(Arc<Table>, LogicalPlan)> {
        let TableObject::TableName(name) = &insert.table else {
            return Err(WeirError::not_supported("INSERT INTO a table function"));
        };
        let table = self.target_table(name, "insert into")?;
        if insert.returning.is_some() {
            return Err(WeirError::not_supported("INSERT ... RETURNING"));
        }
        if insert.on.is_some() {
            return Err(WeirError::not_supported("INSERT ... ON CONFLICT"));
        }
        let plan = self.plan_query(statement).await?;
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
        check_insert_types(&table.def, &source, from_values)?;
        Ok((table, source))
    }

    pub(crate) async fn execute_insert(
        &self,
        table: &Arc<Table>,
        source: &LogicalPlan,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let _writer = table.data.write_lock().await;
        let plan = bind(source, params)?;
        let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
        let batches = conform_to_table(&table.def, table.schema_ref(), batches)?;
        let added = table
            .data
            .insert(&batches)
            .map_err(|e| write_error(&table.def, e))?;
        Ok(Output::Command(CommandTag::with_rows(
            "INSERT",
            added as u64,
        )))
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
        let mut projection = vec![SelectItem::Wildcard(Default::default())];
        let mut seen = Vec::new();
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
            if seen.contains(&index) {
                return Err(WeirError::new(
                    sqlstate::SYNTAX_ERROR,
                    format!("multiple assignments to same column \"{column_name}\""),
                ));
            }
            seen.push(index);
            literal_strings.push(is_string_literal(&assignment.value));
            // Only evaluated for the rows the statement touches.
            let value = match &update.selection {
                Some(condition) => ast::Expr::Case {
                    case_token: AttachedToken::empty(),
                    end_token: AttachedToken::empty(),
                    operand: None,
                    conditions: vec![ast::CaseWhen {
                        condition: condition.clone(),
                        result: assignment.value.clone(),
                    }],
                    else_result: None,
                },
                None => assignment.value.clone(),
            };
            projection.push(SelectItem::ExprWithAlias {
                expr: value,
                alias: Ident::new(format!("__weir_new_{index}")),
            });
        }
        projection.push(hit_column(update.selection.as_ref()));
        let plan = self.plan_scan(&update.table, projection).await?;
        // The new values follow the table's columns, in assignment order.
        let schema = plan.schema();
        let columns = table.def.columns.len();
        for (i, &index) in seen.iter().enumerate() {
            let from = schema.field(columns + i).data_type();
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
        let projection = vec![
            SelectItem::Wildcard(Default::default()),
            hit_column(delete.selection.as_ref()),
        ];
        let plan = self.plan_scan(target, projection).await?;
        Ok((table, plan))
    }

    pub(crate) async fn execute_modify(
        &self,
        table: &Arc<Table>,
        plan: &LogicalPlan,
        kind: ModifyKind,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let _writer = table.data.write_lock().await;
        let plan = bind(plan, params)?;
        let assigned: Vec<usize> = plan
            .schema()
            .fields()
            .iter()
            .filter_map(|f| f.name().strip_prefix("__weir_new_")?.parse().ok())
            .collect();
        let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
        let schema = table.schema_ref().clone();
        let columns = schema.fields().len();
        let mut touched = 0;
        let mut content = Vec::with_capacity(batches.len());
        for batch in batches {
            let hit = batch
                .column(batch.num_columns() - 1)
                .as_boolean_opt()
                .cloned()
                .ok_or_else(|| WeirError::internal("the row selection is not boolean"))?;
            let hit = without_nulls(&hit);
            touched += hit.true_count();
            let old: Vec<ArrayRef> = batch.columns()[..columns].to_vec();
            match kind {
                ModifyKind::Delete => {
                    let kept = RecordBatch::try_new(schema.clone(), old)?;
                    content.push(filter_record_batch(&kept, &not(&hit)?)?);
                }
                ModifyKind::Update => {
                    let mut new = old;
                    for (i, &index) in assigned.iter().enumerate() {
                        let target = schema.field(index).data_type();
                        let value = cast_strict(batch.column(columns + i), target)?;
                        new[index] = zip(&hit, &value, &new[index])?;
                    }
                    content.push(RecordBatch::try_new(schema.clone(), new)?);
                }
            }
        }
        if kind == ModifyKind::Update {
            check_lengths(&table.def, &content)?;
        }
        if touched > 0 {
            table
                .data
                .replace(&content)
                .map_err(|e| write_error(&table.def, e))?;
        }
        let command = match kind {
            ModifyKind::Update => "UPDATE",
            ModifyKind::Delete => "DELETE",
        };
        Ok(Output::Command(CommandTag::with_rows(
            command,
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
            let _writer = table.data.write_lock().await;
            table
                .data
                .replace(&[])
                .map_err(|e| write_error(&table.def, e))?;
        }
        Ok(Output::Command(CommandTag::new("TRUNCATE TABLE")))
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

    /// Plans `SELECT <projection> FROM <target>`.
    async fn plan_scan(
        &self,
        target: &TableWithJoins,
        projection: Vec<SelectItem>,
    ) -> Result<LogicalPlan> {
        let mut query = weir_sql::parse_sql("SELECT 1")?;
        let Some(weir_sql::Statement::Standard(statement)) = query.pop() else {
            return Err(WeirError::internal("cannot build a scan"));
        };
        let mut statement = *statement;
        if let ast::Statement::Query(q) = &mut statement
            && let SetExpr::Select(select) = q.body.as_mut()
        {
            select.projection = projection;
            select.from = vec![target.clone()];
        }
        self.plan_query(&statement).await
    }
}

/// `(<condition>) IS TRUE AS __weir_hit`, or `TRUE` without a condition.
fn hit_column(selection: Option<&ast::Expr>) -> SelectItem {
    let expr = match selection {
        Some(condition) => {
            ast::Expr::IsTrue(Box::new(ast::Expr::Nested(Box::new(condition.clone()))))
        }
        None => ast::Expr::Value(ValueWithSpan::from(Value::Boolean(true))),
    };
    SelectItem::ExprWithAlias {
        expr,
        alias: Ident::new(HIT),
    }
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

fn without_nulls(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() == 0 {
        mask.clone()
    } else {
        mask.iter().map(|v| Some(v.unwrap_or(false))).collect()
    }
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
fn conform_to_table(
    def: &TableDef,
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
    check_lengths(def, &out)?;
    Ok(out)
}

/// `varchar(n)` refuses longer values, as in Postgres.
fn check_lengths(def: &TableDef, batches: &[RecordBatch]) -> Result<()> {
    for (i, column) in def.columns.iter().enumerate() {
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
fn check_insert_types(def: &TableDef, source: &LogicalPlan, from_values: bool) -> Result<()> {
    let LogicalPlan::Projection(projection) = source else {
        return Ok(());
    };
    let input_schema = projection.input.schema();
    for (expr, column) in projection.expr.iter().zip(&def.columns) {
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
fn write_error(def: &TableDef, e: WriteError) -> WeirError {
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
