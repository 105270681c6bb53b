//! Filter: keeps the rows (insertions and deletions alike) that satisfy a
//! predicate. A row whose update makes it pass or fail the predicate comes
//! out as the matching half of its deletion/insertion pair.

use std::sync::Arc;

use arrow::array::AsArray;
use datafusion::error::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;

use crate::message::{Chunk, Message};
use crate::operator::{Operator, Result};

pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Filter { predicate }
    }
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        "Filter"
    }

    fn describe(&self) -> String {
        self.predicate.to_string()
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        let mask = self
            .predicate
            .evaluate(&chunk.batch)?
            .into_array(chunk.num_rows())?;
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| DataFusionError::Internal("a filter predicate is not boolean".into()))?;
        let kept = chunk.filter(mask)?;
        if !kept.is_empty() {
            out.push(Message::Chunk(kept));
        }
        Ok(())
    }
}
