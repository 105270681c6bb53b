//! The operator interface: what every node of a streaming job implements.
//!
//! Operators are synchronous and single-threaded: the [driver](crate::driver)
//! feeds them one message at a time, already combined across inputs — a
//! watermark once every input has passed it, a barrier once every input has
//! delivered it — and sends what they produce downstream.

use std::fmt;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;

use crate::checkpoint::StatePiece;
use crate::message::{Barrier, Chunk, Message, Watermark};

/// Errors of a running operator. A failing operator stops its job.
pub type Result<T, E = DataFusionError> = std::result::Result<T, E>;

/// A node of a streaming job.
pub trait Operator: Send + 'static {
    /// A short name for metrics and `EXPLAIN` (`HashAggregate`).
    fn name(&self) -> &'static str;

    /// What the node computes, for `EXPLAIN` (`keys=[auction] aggs=[count(*)]`).
    fn describe(&self) -> String {
        String::new()
    }

    /// Handles rows arriving on input `input`.
    fn process_chunk(&mut self, input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()>;

    /// Handles event time advancing (the minimum over the inputs). By default
    /// the watermark passes through.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// Where a watermark of `column` arriving on input `input` goes: the
    /// column it is combined on (the minimum over every input that sends
    /// one there), or `None` to drop it. By default the same column, as for
    /// inputs of one schema (a union); a join maps each side's event-time
    /// key to one column.
    fn watermark_column(&self, _input: usize, column: usize) -> Option<usize> {
        Some(column)
    }

    /// Every input has ended: event time is complete, as if the watermarks
    /// had passed every row. Operators that hold rows back until a
    /// watermark passes them emit them now.
    fn finish(&mut self, _out: &mut Vec<Message>) -> Result<()> {
        Ok(())
    }

    /// Handles a barrier, received on every input. The driver forwards the
    /// barrier after what the operator produced.
    fn process_barrier(&mut self, _barrier: Barrier, _out: &mut Vec<Message>) -> Result<()> {
        Ok(())
    }

    /// Bytes of state the operator holds.
    fn state_bytes(&self) -> usize {
        0
    }

    /// The operator's state at a checkpoint barrier (after
    /// [`process_barrier`](Operator::process_barrier)): whole when `full`,
    /// otherwise whole or only what changed since its previous checkpoint;
    /// `None` when it keeps none. An error fails the checkpoint, not the job.
    fn checkpoint(&mut self, _full: bool) -> Result<Option<StatePiece>> {
        Ok(None)
    }

    /// Takes back a state [`checkpoint`](Operator::checkpoint) handed over,
    /// before the operator sees any message.
    fn restore(&mut self, _state: RecordBatch) -> Result<()> {
        Err(DataFusionError::Internal(format!(
            "{} keeps no state to restore",
            self.name()
        )))
    }
}

impl fmt::Debug for dyn Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name(), self.describe())
    }
}
