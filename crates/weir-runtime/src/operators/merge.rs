//! Merge: the one subtask after a parallel node. It passes everything on; the
//! driver has already aligned the barriers of the upstream subtasks and taken
//! the minimum of their watermarks.

use crate::message::{Chunk, Message};
use crate::operator::{Operator, Result};

pub struct Merge;

impl Operator for Merge {
    fn name(&self) -> &'static str {
        "Merge"
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        out.push(Message::Chunk(chunk));
        Ok(())
    }
}
