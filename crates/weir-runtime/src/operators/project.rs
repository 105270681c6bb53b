//! Projection: computes the output columns of each row, and carries event
//! time through the columns that are non-decreasing functions of an event-time
//! column (`ts`, `ts + INTERVAL '1' HOUR`, `date_bin(..., ts)`).

use std::sync::Arc;

use arrow::array::{RecordBatch, new_null_array};
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;

use crate::message::{Chunk, Message, Watermark};
use crate::operator::{Operator, Result};

/// Computes expressions over each row.
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
}

impl Project {
    pub fn new(
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        input_schema: SchemaRef,
        output_schema: SchemaRef,
    ) -> Self {
        Project {
            exprs,
            input_schema,
            output_schema,
        }
    }
}

impl Operator for Project {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn describe(&self) -> String {
        let exprs: Vec<String> = self
            .exprs
            .iter()
            .zip(self.output_schema.fields())
            .map(|(e, f)| format!("{e} AS {}", f.name()))
            .collect();
        format!("[{}]", exprs.join(", "))
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&chunk.batch)?.into_array(chunk.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        out.push(Message::Chunk(
            chunk.with_columns(self.output_schema.clone(), columns)?,
        ));
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        for (output, expr) in self.exprs.iter().enumerate() {
            if let Some(value) =
                derive_watermark(expr, &self.input_schema, watermark.column, &watermark.value)?
            {
                out.push(Message::Watermark(Watermark {
                    column: output,
                    value,
                }));
            }
        }
        Ok(())
    }
}

/// The watermark of `expr` when column `column` has watermark `value`: the
/// expression at that value, if it depends only on that column and never
/// decreases when it grows.
pub fn derive_watermark(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
    column: usize,
    value: &ScalarValue,
) -> Result<Option<ScalarValue>> {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return Ok((c.index() == column).then(|| value.clone()));
    }
    let columns = collect_columns(expr);
    if columns.len() != 1 || columns.iter().all(|c| c.index() != column) {
        return Ok(None);
    }
    if !non_decreasing_in(expr, column)? {
        return Ok(None);
    }
    // Evaluate the expression on a row holding the watermark.
    let arrays = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            if i == column {
                value.to_array_of_size(1)
            } else {
                Ok(new_null_array(field.data_type(), 1))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let row = RecordBatch::try_new(schema.clone(), arrays)?;
    let result = expr.evaluate(&row)?.into_array(1)?;
    let derived = ScalarValue::try_from_array(&result, 0)?;
    Ok((!derived.is_null()).then_some(derived))
}

/// The input column whose watermark `expr` carries: the column itself, or
/// the one column a non-decreasing expression depends on.
pub fn watermark_input(expr: &Arc<dyn PhysicalExpr>) -> Result<Option<usize>> {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return Ok(Some(c.index()));
    }
    let columns = collect_columns(expr);
    let [column] = columns.iter().collect::<Vec<_>>()[..] else {
        return Ok(None);
    };
    Ok(non_decreasing_in(expr, column.index())?.then_some(column.index()))
}

/// Whether `expr` never decreases as column `column` grows (DataFusion's
/// order analysis: `date_bin`, `+ interval`, casts between timestamps...).
fn non_decreasing_in(expr: &Arc<dyn PhysicalExpr>, column: usize) -> Result<bool> {
    fn properties(expr: &Arc<dyn PhysicalExpr>, column: usize) -> Result<ExprProperties> {
        if let Some(c) = expr.downcast_ref::<Column>() {
            let order = if c.index() == column {
                SortProperties::Ordered(SortOptions {
                    descending: false,
                    nulls_first: false,
                })
            } else {
                SortProperties::Unordered
            };
            return Ok(ExprProperties::new_unknown().with_order(order));
        }
        let children = expr
            .children()
            .into_iter()
            .map(|child| properties(child, column))
            .collect::<Result<Vec<_>>>()?;
        expr.get_properties(&children)
    }
    Ok(matches!(
        properties(expr, column)?.sort_properties,
        SortProperties::Ordered(SortOptions {
            descending: false,
            ..
        })
    ))
}
