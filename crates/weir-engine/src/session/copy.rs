//! `COPY (query) TO STDOUT` and `COPY relation [(columns)] TO STDOUT`: a
//! query's rows in COPY's text or CSV format (`crate::copy_format`). Over a
//! stream the query is continuous, and its rows go out as they come, as
//! with `SELECT`. `COPY ... FROM` and `COPY` to a file or a program are
//! refused.

use datafusion::sql::sqlparser::ast::{self, CopySource, CopyTarget};
use weir_sql::Statement;

use super::{Plan, Session};
use crate::copy_format::CopyFormat;
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{CopyOut, Output};

impl Session {
    /// `COPY ... TO STDOUT`.
    pub(crate) async fn copy(&mut self, statement: &ast::Statement) -> Result<Output> {
        let ast::Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = statement
        else {
            return Err(WeirError::internal("not a COPY statement"));
        };
        if !to {
            return Err(WeirError::not_supported("COPY ... FROM"));
        }
        if *target != CopyTarget::Stdout {
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY to a file or a program is not supported",
            )
            .with_hint("Use COPY ... TO STDOUT (psql's \\copy writes it to a file)."));
        }
        let format = CopyFormat::from_options(options, legacy_options)?;
        let query = match source {
            CopySource::Query(query) => query.clone(),
            CopySource::Table {
                table_name,
                columns,
            } => {
                let columns = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let sql = format!("SELECT {columns} FROM {table_name}");
                let mut statements = self.parse(&sql)?;
                match statements.pop() {
                    Some(Statement::Standard(s)) => match *s {
                        ast::Statement::Query(query) => query,
                        _ => return Err(WeirError::internal("COPY's query is not a query")),
                    },
                    _ => return Err(WeirError::internal("COPY's query is not a query")),
                }
            }
        };
        let statement = Statement::Standard(Box::new(ast::Statement::Query(query)));
        let prepared = Box::pin(self.plan(statement)).await?;
        let Plan::Query { plan, schema } = &prepared.plan else {
            return Err(WeirError::internal("COPY's query is not a query"));
        };
        let Output::Rows(rows) = self.execute_query(plan, schema, &[]).await? else {
            return Err(WeirError::internal("COPY's query returned no rows"));
        };
        Ok(Output::CopyOut(CopyOut { rows, format }))
    }
}
