//! The content of a materialized view: a multiset of rows, kept up to date by
//! applying a changelog (insertions and deletions).
//!
//! Rows are held in Arrow's row format with their multiplicity; queries read a
//! snapshot of record batches, rebuilt after a change only when read.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, Int8Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::row::{OwnedRow, RowConverter, SortField};

/// Rows per batch of a snapshot.
const BATCH_ROWS: usize = 8192;

#[derive(Default)]
struct Content {
    rows: HashMap<OwnedRow, i64>,
    count: usize,
    snapshot: Option<Arc<[RecordBatch]>>,
}

/// The rows of a materialized view.
pub struct ViewData {
    schema: SchemaRef,
    converter: RowConverter,
    content: Mutex<Content>,
}

impl std::fmt::Debug for ViewData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewData")
            .field("schema", &self.schema)
            .field("rows", &self.row_count())
            .finish()
    }
}

impl ViewData {
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(ViewData {
            converter: RowConverter::new(fields)?,
            schema,
            content: Mutex::new(Content::default()),
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Content> {
        self.content.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies changes: each row inserted (`ops` absent, or 1) or deleted (-1).
    pub fn apply(&self, batch: &RecordBatch, ops: Option<&Int8Array>) -> Result<(), ArrowError> {
        let rows = self.converter.convert_columns(batch.columns())?;
        let mut content = self.lock();
        for (i, row) in rows.iter().enumerate() {
            let delta = match ops {
                Some(ops) if ops.is_valid(i) && ops.value(i) < 0 => -1,
                _ => 1,
            };
            match content.rows.entry(row.owned()) {
                Entry::Occupied(mut entry) => {
                    *entry.get_mut() += delta;
                    if *entry.get() == 0 {
                        entry.remove();
                    }
                }
                Entry::Vacant(entry) => {
                    entry.insert(delta);
                }
            }
            if delta > 0 {
                content.count += 1;
            } else {
                content.count = content.count.saturating_sub(1);
            }
        }
        if rows.num_rows() > 0 {
            content.snapshot = None;
        }
        Ok(())
    }

    pub fn row_count(&self) -> usize {
        self.lock().count
    }

    /// The current rows.
    pub fn snapshot(&self) -> Result<Arc<[RecordBatch]>, ArrowError> {
        let mut content = self.lock();
        if let Some(snapshot) = &content.snapshot {
            return Ok(snapshot.clone());
        }
        let mut batches = Vec::new();
        let mut pending = Vec::with_capacity(BATCH_ROWS);
        let mut flush = |pending: &mut Vec<&OwnedRow>| -> Result<(), ArrowError> {
            if pending.is_empty() {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = self
                .converter
                .convert_rows(pending.iter().map(|r| r.row()))?;
            batches.push(RecordBatch::try_new(self.schema.clone(), columns)?);
            pending.clear();
            Ok(())
        };
        for (row, count) in &content.rows {
            for _ in 0..(*count).max(0) {
                pending.push(row);
                if pending.len() == BATCH_ROWS {
                    flush(&mut pending)?;
                }
            }
        }
        flush(&mut pending)?;
        let snapshot: Arc<[RecordBatch]> = batches.into();
        content.snapshot = Some(snapshot.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .expect("batch")
    }

    fn values(view: &ViewData) -> Vec<i64> {
        let mut all: Vec<i64> = view
            .snapshot()
            .expect("snapshot")
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn changes_apply_as_a_multiset() {
        let view = ViewData::new(batch(&[]).schema()).expect("view");
        view.apply(&batch(&[1, 2, 2, 3]), None).expect("insert");
        assert_eq!(values(&view), [1, 2, 2, 3]);
        view.apply(&batch(&[2, 3, 4]), Some(&Int8Array::from(vec![-1, -1, 1])))
            .expect("changes");
        assert_eq!(values(&view), [1, 2, 4]);
        assert_eq!(view.row_count(), 3);
    }
}
