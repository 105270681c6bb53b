//! What flows between operators: changes (chunks of rows with an operation
//! each), watermarks and barriers.
//!
//! A stream is a changelog: every row of a [`Chunk`] is an insertion or a
//! deletion (an update is a deletion of the old row followed by an insertion
//! of the new one). Streams that only ever insert (append-only) carry no
//! operation column.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute::{filter_record_batch, take, take_record_batch};
use arrow::datatypes::{Int8Type, SchemaRef};
use arrow::error::ArrowError;
use datafusion::common::ScalarValue;

/// What a row of a chunk does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Delete,
}

impl Op {
    /// The value stored in an operation column.
    pub fn code(self) -> i8 {
        match self {
            Op::Insert => 1,
            Op::Delete => -1,
        }
    }
}

/// Rows, each inserted or deleted.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub batch: RecordBatch,
    /// One entry per row (1 insert, -1 delete); `None` when every row is an
    /// insertion.
    pub ops: Option<Int8Array>,
}

impl Chunk {
    /// Rows that are all insertions.
    pub fn inserts(batch: RecordBatch) -> Self {
        Chunk { batch, ops: None }
    }

    /// Rows that are all deletions.
    pub fn deletes(batch: RecordBatch) -> Self {
        let ops = Int8Array::from(vec![Op::Delete.code(); batch.num_rows()]);
        Chunk {
            batch,
            ops: Some(ops),
        }
    }

    /// Rows with an operation each.
    pub fn new(batch: RecordBatch, ops: Int8Array) -> Self {
        Chunk {
            batch,
            ops: Some(ops),
        }
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    pub fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }

    /// The operation of a row.
    pub fn op(&self, row: usize) -> Op {
        match &self.ops {
            Some(ops) if ops.value(row) < 0 => Op::Delete,
            _ => Op::Insert,
        }
    }

    /// Each row's operation as text (`insert` / `delete`): the `op` column
    /// of updating results delivered outside Weir.
    pub fn op_names(&self) -> arrow::array::StringArray {
        (0..self.num_rows())
            .map(|row| {
                Some(match self.op(row) {
                    Op::Insert => "insert",
                    Op::Delete => "delete",
                })
            })
            .collect()
    }

    /// The rows with their [`op_names`](Chunk::op_names) as a last column,
    /// `op`.
    pub fn with_op_column(&self) -> Result<RecordBatch, ArrowError> {
        let mut fields = self.batch.schema().fields().to_vec();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            "op",
            arrow::datatypes::DataType::Utf8,
            false,
        )));
        let mut columns = self.batch.columns().to_vec();
        columns.push(Arc::new(self.op_names()));
        RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
    }

    /// Whether every row is an insertion.
    pub fn is_insert_only(&self) -> bool {
        match &self.ops {
            None => true,
            Some(ops) => ops.values().iter().all(|op| *op > 0),
        }
    }

    /// The same rows with other columns (same number of rows).
    pub fn with_columns(
        &self,
        schema: SchemaRef,
        columns: Vec<ArrayRef>,
    ) -> Result<Self, ArrowError> {
        Ok(Chunk {
            // No columns at all is fine (`SELECT count(*)` reads none).
            batch: RecordBatch::try_new_with_options(
                schema,
                columns,
                &RecordBatchOptions::new().with_row_count(Some(self.num_rows())),
            )?,
            ops: self.ops.clone(),
        })
    }

    /// The rows selected by a mask.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self, ArrowError> {
        let batch = filter_record_batch(&self.batch, mask)?;
        let ops = match &self.ops {
            Some(ops) => Some(
                arrow::compute::filter(ops, mask)?
                    .as_primitive::<Int8Type>()
                    .clone(),
            ),
            None => None,
        };
        Ok(Chunk { batch, ops })
    }

    /// The rows at `indices`, in that order.
    pub fn take(&self, indices: &UInt32Array) -> Result<Self, ArrowError> {
        let batch = take_record_batch(&self.batch, indices)?;
        let ops = match &self.ops {
            Some(ops) => Some(take(ops, indices, None)?.as_primitive::<Int8Type>().clone()),
            None => None,
        };
        Ok(Chunk { batch, ops })
    }

    /// Rows and operations as `(row index, op)`, in order.
    pub fn rows(&self) -> impl Iterator<Item = (usize, Op)> + '_ {
        (0..self.num_rows()).map(|i| (i, self.op(i)))
    }
}

/// Event time has reached `value` on column `column`: no later row will have
/// a smaller value there (late rows are diverted before they enter).
#[derive(Debug, Clone, PartialEq)]
pub struct Watermark {
    pub column: usize,
    pub value: ScalarValue,
}

/// A marker that flows with the data: when an operator has received it on all
/// of its inputs, it has seen every change made before it was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Barrier {
    pub epoch: u64,
    /// Stateful operators hand over their state when it reaches them (a
    /// checkpoint); otherwise the barrier only marks progress (`FLUSH`).
    pub checkpoint: bool,
    /// At a checkpoint: every state must be handed over whole (the previous
    /// checkpoint did not commit, or change files have piled up); otherwise
    /// the changes since the previous checkpoint will do.
    pub full: bool,
}

impl Barrier {
    /// A barrier that marks progress.
    pub fn new(epoch: u64) -> Self {
        Barrier {
            epoch,
            checkpoint: false,
            full: false,
        }
    }

    /// A barrier at which operators hand over their state (whole with
    /// `full`).
    pub fn checkpoint(epoch: u64, full: bool) -> Self {
        Barrier {
            epoch,
            checkpoint: true,
            full,
        }
    }
}

/// A message between operators.
#[derive(Debug, Clone)]
pub enum Message {
    Chunk(Chunk),
    Watermark(Watermark),
    Barrier(Barrier),
    /// The input failed (a source met a record it must not skip): the job
    /// that reads it stops with this error.
    Fail(String),
}
