//! Union: the rows of all inputs (`UNION ALL`). The driver combines the
//! inputs' watermarks (their minimum).

use arrow::datatypes::SchemaRef;

use crate::message::{Chunk, Message};
use crate::operator::{Operator, Result};

pub struct Union {
    schema: SchemaRef,
}

impl Union {
    pub fn new(schema: SchemaRef) -> Self {
        Union { schema }
    }
}

impl Operator for Union {
    fn name(&self) -> &'static str {
        "Union"
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        // The inputs have the union's types; take its column names.
        let columns = chunk.batch.columns().to_vec();
        out.push(Message::Chunk(
            chunk.with_columns(self.schema.clone(), columns)?,
        ));
        Ok(())
    }
}
