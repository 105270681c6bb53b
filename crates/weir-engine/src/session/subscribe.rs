//! `SUBSCRIBE [TO] relation | (query) [WITH (snapshot = true | false)]`:
//! the current rows of a materialized view, table or query over them first
//! (unless `snapshot = false`), then every change, as they happen, until
//! the client cancels or goes away.
//!
//! The query runs as a streaming job, like a continuous query, but reads
//! tables and materialized views as changelogs (their rows, then their
//! changes) instead of as snapshots; over a stream it is a continuous
//! query. Without the snapshot the job still reads the rows (its state
//! needs them) and the client gets what the job emits after a barrier
//! published once it has subscribed. Results that update carry the `op` column (`insert` / `delete`),
//! as every other delivery path does; append-only ones (a stream, a view
//! that emits on window close) do not.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast;
use tokio::sync::mpsc;
use weir_runtime::Outputs;
use weir_runtime::exchange::Exchange;
use weir_runtime::feed::CHANNEL_CAPACITY;
use weir_sql::{SinkInput, Statement, Subscribe};

use super::continuous::{Delivered, OP_COLUMN, deliver};
use super::{Session, column_names, renamed_schema};
use crate::error::{Result, WeirError};
use crate::output::Output;
use crate::streaming::planner::{self, StreamPlan};

/// A planned `SUBSCRIBE`: the columns it returns and its job.
pub(crate) struct SubscribePlan {
    pub schema: SchemaRef,
    job: StreamPlan,
}

impl Session {
    /// Plans a `SUBSCRIBE` (also to describe its columns).
    pub(crate) async fn plan_subscribe(&mut self, subscribe: &Subscribe) -> Result<SubscribePlan> {
        let mut query = match &subscribe.input {
            SinkInput::From(name) => {
                let relation = self.relation_name(name)?;
                if self.db.relation(&relation).is_none() {
                    return Err(WeirError::undefined_table(&relation));
                }
                let mut statements = self.parse(&format!("SELECT * FROM {name}"))?;
                match statements.pop() {
                    Some(Statement::Standard(s)) => match *s {
                        ast::Statement::Query(query) => query,
                        _ => return Err(WeirError::internal("SUBSCRIBE's query")),
                    },
                    _ => return Err(WeirError::internal("SUBSCRIBE's query")),
                }
            }
            SinkInput::Query(query) => query.clone(),
        };
        crate::streaming::window_function::name_arguments(&mut query);
        let names =
            column_names::alias_output_columns(&mut query, column_names::Aliasing::Internal);
        let plan = self.plan_query(&ast::Statement::Query(query)).await?;
        let columns = renamed_schema(&plan, &names);
        let optimized = self.ctx.state().optimize(&plan)?;
        let parallelism = self.read_settings().streaming_parallelism();
        let job = planner::plan(&optimized, &self.db, &self.ctx, false, parallelism)?;
        let schema = if job.append_only {
            columns
        } else {
            let mut fields: Vec<Field> = columns
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
            Arc::new(Schema::new(fields))
        };
        Ok(SubscribePlan { schema, job })
    }

    /// Starts a `SUBSCRIBE`; its rows come as the job produces them.
    pub(crate) async fn subscribe(&mut self, subscribe: &Subscribe) -> Result<Output> {
        let SubscribePlan { schema, job } = self.plan_subscribe(subscribe).await?;
        let with_op = !job.append_only;
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let sink = Outputs::Exchanges(vec![Exchange::forward(sender)]);
        let job = {
            // As for a view: the job's sources are subscribed between
            // barriers, with their content.
            let barriers = self.engine.barrier_lock().await;
            job.start(sink, *barriers, self.engine.wal(), None).await?.0
        };
        // Without the snapshot, the job still starts from the content (its
        // state needs it), but the client gets only what changes after the
        // barrier published now, which follows the content everywhere.
        let skip_until = if subscribe.snapshot {
            None
        } else {
            Some(self.engine.publish_barrier().await.0)
        };
        Ok(deliver(
            self,
            job,
            receiver,
            Delivered {
                schema,
                with_op,
                limit: None,
                skip_until,
                command: "SUBSCRIBE",
                kind: "subscribe",
            },
        ))
    }
}
