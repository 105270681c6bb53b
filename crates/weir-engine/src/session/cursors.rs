//! Cursors: `DECLARE c [NO SCROLL] CURSOR [WITH HOLD] FOR query`,
//! `FETCH [FORWARD] n | NEXT | ALL FROM c [WITH (timeout = '1s')]`,
//! `CLOSE c | ALL`; `DECLARE c CURSOR FOR SUBSCRIBE ...`.
//!
//! A cursor holds its query's row stream and hands out rows as they are
//! fetched; over a continuous query (one that reads a stream), `FETCH n`
//! waits until `n` rows have come, or, with a timeout, until it passes (then
//! it returns the rows that came, maybe none). This is how psql prints a query's rows
//! batch by batch with `\set FETCH_COUNT n`. Cursors only move forward. As in
//! Postgres, a cursor declared in a transaction block closes at its end
//! unless `WITH HOLD`; one declared outside a block (which Postgres refuses)
//! lasts until `CLOSE` or the end of the session.

use std::sync::Mutex;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{self, CloseCursor, DeclareType, FetchDirection, Value};
use futures::StreamExt;
use tokio::time::Instant;
use weir_sql::{DeclareSubscribe, Statement};

use super::{Plan, Session, TransactionState};
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{CommandTag, Output, Rows};

/// An open cursor.
pub(crate) struct Cursor {
    schema: SchemaRef,
    /// In a mutex only so that a session (and so a cursor) can be shared
    /// between threads; it is only used through `&mut`.
    batches: Mutex<SendableRecordBatchStream>,
    /// Rows taken from the stream and not fetched yet.
    pending: Option<RecordBatch>,
    /// Closes when the transaction block it was declared in ends.
    closes_with_block: bool,
}

impl Cursor {
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Up to `count` more rows (all that remain for `None`), in batches;
    /// past `deadline`, the rows that came until then.
    async fn fetch(
        &mut self,
        count: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut wanted = count.unwrap_or(usize::MAX);
        while wanted > 0 {
            let batch = match self.pending.take() {
                Some(batch) => batch,
                None => {
                    let batches = self.batches.get_mut().unwrap_or_else(|p| p.into_inner());
                    // Waiting is cancel-safe: a batch not yet produced stays
                    // in the stream for the next FETCH.
                    let next = match deadline {
                        Some(deadline) => {
                            match tokio::time::timeout_at(deadline, batches.next()).await {
                                Ok(next) => next,
                                Err(_) => break,
                            }
                        }
                        None => batches.next().await,
                    };
                    match next {
                        Some(batch) => batch?,
                        None => break,
                    }
                }
            };
            if batch.num_rows() > wanted {
                out.push(batch.slice(0, wanted));
                self.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                break;
            }
            wanted -= batch.num_rows();
            out.push(batch);
        }
        Ok(out)
    }
}

fn no_such_cursor(name: &str) -> WeirError {
    WeirError::new(
        sqlstate::INVALID_CURSOR_NAME,
        format!("cursor \"{name}\" does not exist"),
    )
}

impl Session {
    /// `DECLARE name CURSOR FOR query`: runs the query and keeps its rows.
    pub(crate) async fn declare_cursor(&mut self, stmts: &[ast::Declare]) -> Result<Output> {
        let [declare] = stmts else {
            return Err(WeirError::not_supported("DECLARE of several names"));
        };
        let (Some(DeclareType::Cursor), [name], Some(query)) = (
            &declare.declare_type,
            declare.names.as_slice(),
            &declare.for_query,
        ) else {
            return Err(WeirError::not_supported("DECLARE other than of a cursor"));
        };
        if declare.scroll == Some(true) {
            return Err(WeirError::not_supported("SCROLL cursors"));
        }
        if declare.binary == Some(true) {
            return Err(WeirError::not_supported("BINARY cursors"));
        }
        let name = super::ident_name(name);
        self.check_cursor_name(&name)?;
        let statement = Statement::Standard(Box::new(ast::Statement::Query(query.clone())));
        let prepared = Box::pin(self.plan(statement)).await?;
        let Plan::Query { plan, schema } = &prepared.plan else {
            return Err(WeirError::internal("a cursor's query is not a query"));
        };
        let Output::Rows(rows) = self.execute_query(plan, schema, &[]).await? else {
            return Err(WeirError::internal("a cursor's query returned no rows"));
        };
        Ok(self.add_cursor(name, rows, declare.hold == Some(true)))
    }

    /// `DECLARE c CURSOR FOR SUBSCRIBE ...`.
    pub(crate) async fn declare_subscribe_cursor(
        &mut self,
        declare: &DeclareSubscribe,
    ) -> Result<Output> {
        let name = super::ident_name(&declare.cursor);
        self.check_cursor_name(&name)?;
        let Output::Rows(rows) = self.subscribe(&declare.subscribe).await? else {
            return Err(WeirError::internal("SUBSCRIBE returned no rows"));
        };
        Ok(self.add_cursor(name, rows, declare.hold))
    }

    fn check_cursor_name(&self, name: &str) -> Result<()> {
        if self.cursors.contains_key(name) {
            return Err(WeirError::new(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        Ok(())
    }

    /// Keeps `rows` as cursor `name`; with `hold`, it outlives the
    /// transaction block it is declared in.
    fn add_cursor(&mut self, name: String, rows: Rows, hold: bool) -> Output {
        self.cursors.insert(
            name,
            Cursor {
                schema: rows.schema,
                batches: Mutex::new(rows.batches),
                pending: None,
                closes_with_block: self.tx != TransactionState::Idle && !hold,
            },
        );
        Output::Command(CommandTag::new("DECLARE CURSOR"))
    }

    /// `FETCH`: the next rows of a cursor.
    pub(crate) async fn fetch(
        &mut self,
        name: &ast::Ident,
        direction: &FetchDirection,
        into: bool,
        timeout: Option<Duration>,
    ) -> Result<Output> {
        if into {
            return Err(WeirError::not_supported("FETCH ... INTO"));
        }
        let count = match direction {
            FetchDirection::Next => Some(1),
            FetchDirection::All | FetchDirection::ForwardAll => None,
            FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
                Some(fetch_count(&limit.value)?)
            }
            FetchDirection::Forward { limit: None } => Some(1),
            _ => {
                return Err(WeirError::new(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "cursor can only scan forward",
                )
                .with_hint("Declare it with SCROLL option to enable backward scan."));
            }
        };
        let name = super::ident_name(name);
        let cursor = self
            .cursors
            .get_mut(&name)
            .ok_or_else(|| no_such_cursor(&name))?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let batches = cursor.fetch(count, deadline).await?;
        let schema = cursor.schema.clone();
        let stream = MemoryStream::try_new(batches, schema.clone(), None)?;
        Ok(Output::Rows(Rows {
            schema,
            batches: Box::pin(stream),
            command: "FETCH",
        }))
    }

    /// `CLOSE name | ALL`.
    pub(crate) fn close_cursor(&mut self, cursor: &CloseCursor) -> Result<Output> {
        match cursor {
            CloseCursor::All => self.cursors.clear(),
            CloseCursor::Specific { name } => {
                let name = super::ident_name(name);
                self.cursors
                    .remove(&name)
                    .ok_or_else(|| no_such_cursor(&name))?;
            }
        }
        Ok(Output::Command(CommandTag::new("CLOSE CURSOR")))
    }

    /// At the end of a transaction block: its cursors close.
    pub(crate) fn close_block_cursors(&mut self) {
        self.cursors.retain(|_, c| !c.closes_with_block);
    }
}

/// The row count of `FETCH n`.
fn fetch_count(value: &Value) -> Result<usize> {
    match value {
        Value::Number(n, _) => n.parse::<usize>().map_err(|_| {
            WeirError::not_supported(
                "FETCH of a negative or fractional count (cursors only move forward)",
            )
        }),
        other => Err(WeirError::new(
            sqlstate::SYNTAX_ERROR,
            format!("FETCH takes a row count, not {other}"),
        )),
    }
}
