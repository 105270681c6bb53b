//! Queries (`SELECT`, `VALUES`, `EXPLAIN`): planned and run by DataFusion over
//! the current content of tables and views.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use super::Session;
use crate::error::Result;
use crate::output::{Output, Rows};

impl Session {
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
        let frame = self.ctx.execute_logical_plan(plan).await?;
        let batches = frame.execute_stream().await?;
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
