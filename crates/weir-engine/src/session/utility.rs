//! Statements executed from their syntax rather than planned by DataFusion:
//! DDL, `SET` / `SHOW` / `RESET`, transaction control, `SHOW TABLES`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{self, Reset, Set};
use weir_sql::{ObjectKind, ShowObjects, Statement};

use super::names::ident_name;
use super::{Session, TransactionState, name_column_schema};
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{CommandTag, Output, Rows};
use crate::relation::Relation;
use crate::settings::Settings;

/// The schema of the rows a utility statement returns, if it returns any.
pub(crate) fn output_schema(statement: &ast::Statement) -> Option<SchemaRef> {
    match statement {
        ast::Statement::ShowVariable { variable } => Some(show_schema(&variable_name(variable))),
        _ => None,
    }
}

fn show_schema(name: &str) -> SchemaRef {
    if name.eq_ignore_ascii_case("all") {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("setting", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
        ]))
    } else {
        let column = Settings::canonical_name(name)
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_else(|| name.to_ascii_lowercase());
        name_column_schema(&column)
    }
}

fn variable_name(variable: &[ast::Ident]) -> String {
    variable
        .iter()
        .map(|i| i.value.clone())
        .collect::<Vec<_>>()
        .join(".")
}

impl Session {
    pub(crate) async fn execute_utility(&mut self, statement: &Statement) -> Result<Output> {
        let statement = match statement {
            Statement::ShowObjects(show) => return self.show_objects(show),
            Statement::CreateStream(create) => return self.create_stream(create).await,
            Statement::CreateMaterializedView(create) => {
                return self.create_materialized_view(create).await;
            }
            Statement::ExplainMaterializedView(create) => {
                return self.explain_materialized_view(create).await;
            }
            Statement::DropStream(drop) => return self.drop_stream(drop).await,
            Statement::CreateSink(create) => return self.create_sink(create).await,
            Statement::DropSink(drop) => return self.drop_sinks(drop).await,
            Statement::Flush => return self.flush().await,
            Statement::Checkpoint => {
                self.engine.checkpoint().await?;
                return Ok(Output::Command(CommandTag::new("CHECKPOINT")));
            }
            Statement::FetchWithTimeout(fetch, timeout) => {
                let ast::Statement::Fetch {
                    name,
                    direction,
                    into,
                    ..
                } = fetch.as_ref()
                else {
                    return Err(WeirError::internal("FETCH ... WITH without a FETCH"));
                };
                return self
                    .fetch(name, direction, into.is_some(), Some(*timeout))
                    .await;
            }
            Statement::Subscribe(subscribe) => return self.subscribe(subscribe).await,
            Statement::DeclareSubscribe(declare) => {
                return self.declare_subscribe_cursor(declare).await;
            }
            Statement::Standard(s) => s.as_ref(),
        };
        use ast::Statement as S;
        match statement {
            S::CreateTable(create) => self.create_table(create).await,
            S::CreateView(create) => self.create_view(create).await,
            S::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => {
                self.drop_objects(*object_type, names, *if_exists, *cascade)
                    .await
            }
            S::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => self.create_database(db_name, *if_not_exists).await,
            S::Truncate(truncate) => self.truncate(truncate).await,
            S::Set(set) => self.set(set),
            S::Reset(reset) => {
                let changed = match &reset.reset {
                    Reset::ALL => self.write_settings().reset_all(),
                    Reset::ConfigurationParameter(name) => {
                        let name = self.simple_name(name)?;
                        self.write_settings().reset(&name)?.into_iter().collect()
                    }
                };
                self.settings_changed(changed);
                Ok(Output::Command(CommandTag::new("RESET")))
            }
            S::ShowVariable { variable } => self.show_variable(&variable_name(variable)),
            S::StartTransaction { .. } => {
                if self.tx != TransactionState::Idle {
                    self.warning(
                        sqlstate::ACTIVE_SQL_TRANSACTION,
                        "there is already a transaction in progress",
                    );
                } else {
                    self.tx = TransactionState::InBlock;
                    self.writes_in_block = 0;
                }
                Ok(Output::Command(CommandTag::new("BEGIN")))
            }
            S::Commit { .. } => {
                let tag = match self.tx {
                    TransactionState::Idle => {
                        self.warning(
                            sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                            "there is no transaction in progress",
                        );
                        "COMMIT"
                    }
                    TransactionState::InBlock => "COMMIT",
                    // Postgres answers COMMIT of a failed block with ROLLBACK.
                    TransactionState::Failed => "ROLLBACK",
                };
                self.end_block();
                Ok(Output::Command(CommandTag::new(tag)))
            }
            S::Rollback { savepoint, .. } => {
                if savepoint.is_some() {
                    return Err(WeirError::not_supported("ROLLBACK TO SAVEPOINT"));
                }
                match self.tx {
                    TransactionState::Idle => self.warning(
                        sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                        "there is no transaction in progress",
                    ),
                    _ if self.writes_in_block > 0 => self.warning(
                        sqlstate::WARNING,
                        format!(
                            "{} statement(s) of this transaction block were not undone: \
                             Weir applies each statement when it runs",
                            self.writes_in_block
                        ),
                    ),
                    _ => {}
                }
                self.end_block();
                Ok(Output::Command(CommandTag::new("ROLLBACK")))
            }
            S::Declare { stmts } => self.declare_cursor(stmts).await,
            S::Copy { .. } => self.copy(statement).await,
            S::Fetch {
                name,
                direction,
                into,
                ..
            } => self.fetch(name, direction, into.is_some(), None).await,
            S::Close { cursor } => self.close_cursor(cursor),
            S::Discard { .. } => {
                let changed = self.write_settings().reset_all();
                self.settings_changed(changed);
                Ok(Output::Command(CommandTag::new("DISCARD ALL")))
            }
            other => Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("{} is not supported", statement_kind(other)),
            )),
        }
    }

    fn end_block(&mut self) {
        self.close_block_cursors();
        self.tx = TransactionState::Idle;
        self.writes_in_block = 0;
        // SET LOCAL lasts until the end of the block.
        let mut changed = Vec::new();
        for (name, value) in std::mem::take(&mut self.local_settings).into_iter().rev() {
            if let Ok(Some(reported)) = self.write_settings().set(&name, &value) {
                changed.push(reported);
            }
        }
        self.settings_changed(changed);
    }

    fn set(&mut self, set: &Set) -> Result<Output> {
        let changed = match set {
            Set::SingleAssignment {
                variable,
                values,
                scope,
                ..
            } => {
                let name = self.simple_name(variable)?;
                let name = if name.eq_ignore_ascii_case("timezone") {
                    "TimeZone".to_string()
                } else {
                    name
                };
                self.assign(&name, values, is_local(scope))?
            }
            Set::SetTimeZone { value, local } => {
                self.assign("TimeZone", std::slice::from_ref(value), *local)?
            }
            Set::MultipleAssignments { assignments } => {
                let mut changed = Vec::new();
                for assignment in assignments {
                    let name = self.simple_name(&assignment.name)?;
                    changed.extend(self.assign(
                        &name,
                        std::slice::from_ref(&assignment.value),
                        is_local(&assignment.scope),
                    )?);
                }
                changed
            }
            Set::SetNames { charset_name, .. } => self.assign(
                "client_encoding",
                &[ast::Expr::Identifier(charset_name.clone())],
                false,
            )?,
            Set::SetNamesDefault {} => self
                .write_settings()
                .reset("client_encoding")?
                .into_iter()
                .collect(),
            // Isolation levels and session characteristics: every statement
            // sees the committed state, which is what read committed means.
            Set::SetTransaction { .. } => Vec::new(),
            other => {
                return Err(WeirError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("{other} is not supported"),
                ));
            }
        };
        self.settings_changed(changed);
        Ok(Output::Command(CommandTag::new("SET")))
    }

    /// `SET [LOCAL] name = value[, value...]`, or `TO DEFAULT`.
    fn assign(
        &mut self,
        name: &str,
        values: &[ast::Expr],
        local: bool,
    ) -> Result<Vec<(&'static str, String)>> {
        let texts: Vec<String> = values.iter().map(setting_text).collect::<Result<_>>()?;
        if local {
            if self.tx == TransactionState::Idle {
                self.warning(
                    sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                    "SET LOCAL can only be used in transaction blocks",
                );
                return Ok(Vec::new());
            }
            let before = self.read_settings().get(name)?;
            if !self
                .local_settings
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                self.local_settings.push((name.to_string(), before));
            }
        }
        if texts.len() == 1 && texts[0].eq_ignore_ascii_case("default") && !is_quoted(&values[0]) {
            return Ok(self.write_settings().reset(name)?.into_iter().collect());
        }
        let value = texts.join(", ");
        Ok(self
            .write_settings()
            .set(name, &value)?
            .into_iter()
            .collect())
    }

    /// Applies changed settings to DataFusion and queues them for the client.
    fn settings_changed(&mut self, changed: Vec<(&'static str, String)>) {
        for (name, value) in changed {
            if name == "TimeZone" {
                let state = self.ctx.state_ref();
                let mut state = state.write();
                state.config_mut().options_mut().execution.time_zone =
                    Some(crate::pg_catalog::functions::arrow_time_zone(&value));
            }
            self.reported.retain(|(n, _)| *n != name);
            self.reported.push((name, value));
        }
    }

    fn show_variable(&mut self, name: &str) -> Result<Output> {
        let schema = show_schema(name);
        let columns: Vec<ArrayRef> = if name.eq_ignore_ascii_case("all") {
            let rows = self.read_settings().all();
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.name.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.setting.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.description.clone()),
                )),
            ]
        } else {
            let value = self.read_settings().get(name)?;
            vec![Arc::new(StringArray::from(vec![value]))]
        };
        rows_output(schema, columns, "SHOW")
    }

    fn show_objects(&self, show: &ShowObjects) -> Result<Output> {
        let mut names: Vec<String> = match show.kind {
            ObjectKind::Database => self
                .engine
                .databases()
                .list()
                .iter()
                .map(|d| d.name.clone())
                .collect(),
            ObjectKind::Table
            | ObjectKind::View
            | ObjectKind::Stream
            | ObjectKind::MaterializedView => self
                .db
                .relations()
                .into_iter()
                .filter(|r| {
                    matches!(
                        (show.kind, r),
                        (ObjectKind::Table, Relation::Table(_))
                            | (ObjectKind::View, Relation::View(_))
                            | (ObjectKind::Stream, Relation::Stream(_))
                            | (ObjectKind::MaterializedView, Relation::MaterializedView(_))
                    )
                })
                .map(|r| r.name().to_string())
                .collect(),
        };
        if let Some(pattern) = &show.like {
            names.retain(|n| like(pattern, n));
        }
        names.sort();
        rows_output(
            name_column_schema("Name"),
            vec![Arc::new(StringArray::from(names))],
            "SHOW",
        )
    }
}

fn rows_output(schema: SchemaRef, columns: Vec<ArrayRef>, command: &'static str) -> Result<Output> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
    Ok(Output::Rows(Rows {
        schema,
        batches: Box::pin(stream),
        command,
    }))
}

fn is_local(scope: &Option<ast::ContextModifier>) -> bool {
    matches!(scope, Some(ast::ContextModifier::Local))
}

fn is_quoted(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_)))
        || matches!(expr, ast::Expr::Identifier(i) if i.quote_style.is_some())
}

/// The text of a `SET` value: a literal, an identifier or a number.
fn setting_text(expr: &ast::Expr) -> Result<String> {
    match expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s)
            | ast::Value::DoubleQuotedString(s)
            | ast::Value::EscapedStringLiteral(s) => Ok(s.clone()),
            ast::Value::Number(n, _) => Ok(n.clone()),
            ast::Value::Boolean(b) => Ok(if *b { "on" } else { "off" }.to_string()),
            other => Ok(other.to_string()),
        },
        ast::Expr::Identifier(ident) => Ok(if ident.quote_style.is_some() {
            ident.value.clone()
        } else {
            ident_name(ident)
        }),
        ast::Expr::CompoundIdentifier(parts) => {
            Ok(parts.iter().map(ident_name).collect::<Vec<_>>().join("."))
        }
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => Ok(format!("-{}", setting_text(expr)?)),
        ast::Expr::Interval(interval) => Ok(interval.value.to_string()),
        other => Err(WeirError::new(
            sqlstate::SYNTAX_ERROR,
            format!("unexpected value {other} in SET"),
        )),
    }
}

/// SQL `LIKE` matching (`%`, `_`), case-sensitive, in time proportional to
/// the pattern's length times the text's.
fn like(pattern: &str, text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    // matches[j]: the pattern read so far matches the first j characters.
    let mut matches = vec![false; t.len() + 1];
    matches[0] = true;
    for c in pattern.chars() {
        let mut next = vec![false; t.len() + 1];
        if c == '%' {
            let mut any = false;
            for (j, slot) in next.iter_mut().enumerate() {
                any |= matches[j];
                *slot = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = matches[j - 1] && (c == '_' || c == t[j - 1]);
            }
        }
        matches = next;
    }
    matches[t.len()]
}

/// The leading keywords of a statement (`CREATE INDEX`), for messages.
fn statement_kind(statement: &ast::Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .filter(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    if words.is_empty() {
        "this statement".to_string()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("t%", "table"));
        assert!(like("_a%", "batch"));
        assert!(!like("t%", "stream"));
        assert!(like("%", ""));
        assert!(!like("%%%%%%%%%%%%%%%%%%%%%%%%x", &"a".repeat(200)));
        assert!(like("a%b%c", "aXXbYYc"));
    }
}
