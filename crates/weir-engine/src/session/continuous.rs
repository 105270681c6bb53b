//! Continuous queries: a one-off `SELECT` that reads a stream.
//!
//! A stream stores no rows, so such a query does not end on its own: it runs
//! as a streaming job, like a materialized view's, whose output goes to the
//! client as it is produced, batch by batch. `LIMIT n` ends it after `n`
//! rows; it also ends when every stream it reads has ended (a bounded
//! source reached its end); a cancel, a `statement_timeout` or the client going away drops the
//! row stream, which stops the job and frees its state.
//!
//! Results that only insert (filters, projections) are the rows themselves.
//! Results that update (aggregations) carry one more column, `op`: `insert`
//! or `delete` for each row; an update is a deletion of the old row followed
//! by the insertion of the new one.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{FetchType, LogicalPlan, SkipType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::stream;
use tokio::sync::mpsc;
use weir_runtime::exchange::Exchange;
use weir_runtime::feed::CHANNEL_CAPACITY;
use weir_runtime::{Job, Message, Outputs};

use super::Session;
use super::backlog::Backlog;
use crate::error::{Result, WeirError, sqlstate};
use crate::output::{Output, Rows};
use crate::relation::{Relation, Stream};
use crate::streaming::planner;
use crate::streaming::window_function::WindowTable;

/// The name of the change column of updating results.
pub const OP_COLUMN: &str = "op";

/// Whether a query reads a stream, directly or through a window function.
pub(crate) fn reads_stream(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            let provider = provider.as_ref();
            found = provider.downcast_ref::<Stream>().is_some()
                || provider
                    .downcast_ref::<WindowTable>()
                    .is_some_and(|w| matches!(w.source, Relation::Stream(_)));
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// Whether the results of a continuous query update (and so carry `op`).
pub(crate) fn updates(plan: &LogicalPlan) -> bool {
    plan.exists(|node| {
        Ok(matches!(
            node,
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_)
        ))
    })
    .unwrap_or(false)
}

/// The columns a continuous query returns: its own, and `op` when it updates.
pub(crate) fn output_schema(schema: &SchemaRef, plan: &LogicalPlan) -> SchemaRef {
    if !updates(plan) {
        return schema.clone();
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The query without its top `LIMIT`, and the limit.
fn split_limit(plan: &LogicalPlan) -> Result<(&LogicalPlan, Option<usize>)> {
    let LogicalPlan::Limit(limit) = plan else {
        return Ok((plan, None));
    };
    let skip = limit.get_skip_type()?;
    if !matches!(skip, SkipType::Literal(0)) {
        return Err(WeirError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "OFFSET in a continuous query (one that reads a stream) is not supported",
        ));
    }
    match limit.get_fetch_type()? {
        FetchType::Literal(fetch) => Ok((limit.input.as_ref(), fetch)),
        FetchType::UnsupportedExpr => Err(WeirError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "the LIMIT of a continuous query must be a constant",
        )),
    }
}

impl Session {
    /// Starts a continuous query; `schema` is [`output_schema`]'s.
    pub(crate) async fn execute_continuous(
        &self,
        plan: &LogicalPlan,
        schema: &SchemaRef,
    ) -> Result<Output> {
        let (query, limit) = split_limit(plan)?;
        let optimized = self.ctx.state().optimize(query)?;
        let parallelism = self.read_settings().streaming_parallelism();
        let stream_plan = planner::plan(&optimized, &self.db, &self.ctx, false, parallelism)?;
        let with_op = schema.fields().len() == stream_plan.schema.fields().len() + 1;
        if !with_op && !stream_plan.append_only {
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "this continuous query's results update, which only aggregations may do",
            )
            .with_hint("Create a materialized view of the query and read it."));
        }
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let sink = Outputs::Exchanges(vec![Exchange::forward(sender)]);
        let job = {
            // As for a view: the job's sources are subscribed between barriers.
            let barriers = self.engine.barrier_lock().await;
            stream_plan
                .start(sink, *barriers, self.engine.wal(), None)
                .await?
                .0
        };
        Ok(deliver(
            self,
            job,
            receiver,
            Delivered {
                schema: schema.clone(),
                with_op,
                limit,
                skip_until: None,
                command: "SELECT",
                kind: "continuous query",
            },
        ))
    }
}

/// What a client gets of a job's output.
pub(crate) struct Delivered {
    /// The columns, with `op` last when `with_op`.
    pub schema: SchemaRef,
    pub with_op: bool,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Rows before the barrier of this epoch are dropped (a `SUBSCRIBE`
    /// without its snapshot: the job computes it, the client gets what
    /// changes after).
    pub skip_until: Option<u64>,
    /// The command tag's word.
    pub command: &'static str,
    /// What `weir_catalog.jobs` calls it: `continuous query`, `subscribe`.
    pub kind: &'static str,
}

/// The rows of a running job's output, as a client's result. Dropping the
/// row stream stops the job.
pub(crate) fn deliver(
    session: &Session,
    job: Job,
    receiver: mpsc::Receiver<Message>,
    delivered: Delivered,
) -> Output {
    let schema = delivered.schema.clone();
    let job = Arc::new(job);
    let registration = session
        .db
        .queries
        .register(delivered.kind, &session.user, &job);
    // The backlog's relay owns the job, and its row in the jobs table.
    let running = async move {
        let _registration = registration;
        job.stopped().await
    };
    let max_lag = session.read_settings().max_client_lag_rows();
    let state = Delivery {
        output: Backlog::spawn(receiver, max_lag, Box::pin(running)),
        schema: schema.clone(),
        with_op: delivered.with_op,
        remaining: delivered.limit,
        skip_until: delivered.skip_until,
    };
    let batches = stream::unfold(state, |mut state| async move {
        let batch = state.next().await?;
        Some((batch, state))
    });
    Output::Rows(Rows {
        schema: schema.clone(),
        batches: Box::pin(RecordBatchStreamAdapter::new(schema, batches)),
        command: delivered.command,
    })
}

/// What the client's row stream holds: the running job's output (the job
/// goes with it).
struct Delivery {
    output: Backlog,
    schema: SchemaRef,
    with_op: bool,
    /// Rows still to send, under a `LIMIT`.
    remaining: Option<usize>,
    /// Drop rows until the barrier of this epoch has come.
    skip_until: Option<u64>,
}

impl Delivery {
    /// The next rows; `None` at the end (the `LIMIT` reached, or the job gone).
    async fn next(&mut self) -> Option<Result<RecordBatch, DataFusionError>> {
        loop {
            if self.remaining == Some(0) {
                return None;
            }
            let message = match self.output.recv().await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    self.remaining = Some(0);
                    return None;
                }
                Err(e) => {
                    self.remaining = Some(0);
                    return Some(Err(crate::error::into_datafusion(e)));
                }
            };
            let chunk = match message {
                Message::Chunk(chunk) => chunk,
                Message::Barrier(barrier) => {
                    if self.skip_until.is_some_and(|epoch| barrier.epoch >= epoch) {
                        self.skip_until = None;
                    }
                    continue;
                }
                Message::Watermark(_) => continue,
                Message::Fail(reason) => {
                    self.remaining = Some(0);
                    let error = crate::error::WeirError::new(
                        crate::error::sqlstate::DATA_EXCEPTION,
                        reason,
                    );
                    return Some(Err(crate::error::into_datafusion(error)));
                }
            };
            if chunk.is_empty() || self.skip_until.is_some() {
                continue;
            }
            let mut columns: Vec<ArrayRef> = chunk.batch.columns().to_vec();
            if self.with_op {
                columns.push(Arc::new(chunk.op_names()));
            }
            let mut batch = match RecordBatch::try_new(self.schema.clone(), columns) {
                Ok(batch) => batch,
                Err(e) => return Some(Err(e.into())),
            };
            if let Some(remaining) = &mut self.remaining {
                let take = batch.num_rows().min(*remaining);
                batch = batch.slice(0, take);
                *remaining -= take;
            }
            return Some(Ok(batch));
        }
    }
}
