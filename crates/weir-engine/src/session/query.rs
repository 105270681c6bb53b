//! Queries (`SELECT`, `VALUES`, `EXPLAIN`): planned and run by DataFusion over
//! the current content of tables and views.
//!
//! Each query's operators draw on a memory pool of its own, of the server's
//! per-query limit (`--query-memory-limit`): a query too large for it spills
//! (sorts, aggregations) or fails with 53200, instead of growing until the
//! process is killed. The bound is per query: many large queries at once
//! can together use more than it. The pool shares the limit fairly between
//! the operators that can spill (one per partition of an aggregation, say):
//! first come, first served would let one partition take it all and the
//! next fail with 53200 instead of spilling.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use super::Session;
use crate::error::Result;
use crate::output::{Output, Rows};

/// The operators named in an out-of-memory error: the largest ones.
const CONSUMERS_NAMED: NonZeroUsize = NonZeroUsize::new(3).expect("3 is not zero");

impl Session {
    /// A DataFrame of `plan`, ready to run under the per-query memory
    /// limit.
    pub(crate) async fn frame(&self, plan: LogicalPlan) -> Result<DataFrame> {
        let frame = self.ctx.execute_logical_plan(plan).await?;
        let Some(limit) = self.engine.config().query_memory_limit else {
            return Ok(frame);
        };
        let (state, plan) = frame.into_parts();
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(limit),
            CONSUMERS_NAMED,
        ));
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_pool(pool)
            .build_arc()?;
        let state = SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build();
        Ok(DataFrame::new(state, plan))
    }

    /// Plans a standard statement with DataFusion.
    pub(crate) async fn plan_query(&self, statement: &ast::Statement) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        Ok(state
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await?)
    }

    pub(crate) async fn execute_query(
        &self,
        plan: &LogicalPlan,
        schema: &SchemaRef,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let plan = bind(plan, params)?;
        if super::continuous::reads_stream(&plan) {
            return self.execute_continuous(&plan, schema).await;
        }
        let batches = self.frame(plan).await?.execute_stream().await?;
        Ok(Output::Rows(Rows {
            schema: schema.clone(),
            batches,
            command: "SELECT",
        }))
    }
}

/// Replaces the `$n` placeholders of a plan with values.
pub(crate) fn bind(plan: &LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan.clone());
    }
    let values = ParamValues::List(params.iter().cloned().map(Into::into).collect());
    Ok(plan.clone().replace_params_with_values(&values)?)
}
