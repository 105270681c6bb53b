//! Incremental checkpoints: a state written as a full copy followed by the
//! changes made since, and put back together at restore.
//!
//! A change file holds the state's columns plus a last `__weir_op` column:
//! `1` adds a row, `-1` removes one. Two kinds of state read them:
//!
//! - a multiset (a table's or a view's rows): `-1` removes one row equal to
//!   the given one;
//! - a keyed state (an operator's groups, one row per key): `1` puts the row
//!   in place of the key's previous one, `-1` removes the key.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array, RecordBatch};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};

/// The name of the operations column of a change file.
pub const OPS_COLUMN: &str = "__weir_op";

/// `batch` with its operations as a last column (`None`: every row added).
pub fn with_ops(batch: &RecordBatch, ops: Option<&Int8Array>) -> Result<RecordBatch, ArrowError> {
    let ops = match ops {
        Some(ops) => ops.clone(),
        None => Int8Array::from(vec![1i8; batch.num_rows()]),
    };
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new(OPS_COLUMN, DataType::Int8, false)));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(ops));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// How rows of a state are matched by a removal or a replacement.
#[derive(Debug, Clone, Copy)]
pub enum Matching<'a> {
    /// A multiset of rows: a removal takes away one equal row.
    Rows,
    /// One row per value of these columns.
    Key(&'a [usize]),
}

/// The state `full` (rows without operations) after the change files
/// `changes` (rows with a last operations column), in order. The rows come
/// out in one batch, or none when the state is empty.
pub fn apply_changes(
    full: &[RecordBatch],
    changes: &[RecordBatch],
    matching: Matching<'_>,
) -> Result<Vec<RecordBatch>, String> {
    if changes.is_empty() {
        return Ok(full.to_vec());
    }
    // The state's columns, and each change batch split into rows and ops.
    let mut sources: Vec<RecordBatch> = full.to_vec();
    let mut ops: Vec<Option<Int8Array>> = vec![None; full.len()];
    for batch in changes {
        let last = batch
            .num_columns()
            .checked_sub(1)
            .filter(|&i| batch.schema().field(i).name() == OPS_COLUMN)
            .ok_or_else(|| "a change file has no operations column".to_string())?;
        let op = batch
            .column(last)
            .as_primitive_opt::<Int8Type>()
            .ok_or_else(|| "the operations of a change file are not int8".to_string())?
            .clone();
        let mut rows = batch.clone();
        rows.remove_column(last);
        sources.push(rows);
        ops.push(Some(op));
    }
    let schema: SchemaRef = sources[0].schema();
    let width = schema.fields().len();
    if let Some(bad) = sources.iter().find(|b| {
        b.num_columns() != width
            || b.columns()
                .iter()
                .zip(schema.fields())
                .any(|(c, f)| c.data_type() != f.data_type())
    }) {
        return Err(format!(
            "a change file's columns ({:?}) differ from the state's ({:?})",
            bad.schema(),
            schema
        ));
    }
    let key_columns: Vec<usize> = match matching {
        Matching::Rows => (0..width).collect(),
        Matching::Key(columns) => columns.to_vec(),
    };
    let converter = if key_columns.is_empty() {
        None
    } else {
        let fields = key_columns
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        Some(RowConverter::new(fields).map_err(|e| e.to_string())?)
    };
    // Per key: where its rows are (source batch, row).
    let mut live: HashMap<Vec<u8>, Vec<(usize, usize)>> = HashMap::new();
    for (source, batch) in sources.iter().enumerate() {
        let keys = match &converter {
            None => None,
            Some(converter) => {
                let columns: Vec<ArrayRef> = key_columns
                    .iter()
                    .map(|&i| batch.column(i).clone())
                    .collect();
                Some(
                    converter
                        .convert_columns(&columns)
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        for row in 0..batch.num_rows() {
            let key = keys
                .as_ref()
                .map_or_else(Vec::new, |k| k.row(row).as_ref().to_vec());
            let adding = ops[source].as_ref().is_none_or(|o| o.value(row) > 0);
            let entry = live.entry(key).or_default();
            match (adding, matching) {
                (true, Matching::Rows) => entry.push((source, row)),
                (true, Matching::Key(_)) => *entry = vec![(source, row)],
                (false, Matching::Rows) => {
                    if entry.pop().is_none() {
                        return Err("a change removes a row the state does not have".into());
                    }
                }
                (false, Matching::Key(_)) => entry.clear(),
            }
        }
    }
    let mut indices: Vec<(usize, usize)> = live.into_values().flatten().collect();
    if indices.is_empty() {
        return Ok(Vec::new());
    }
    indices.sort_unstable();
    let columns = (0..width)
        .map(|c| {
            let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.column(c).as_ref()).collect();
            interleave(&arrays, &indices)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    RecordBatch::try_new(schema, columns)
        .map(|b| vec![b])
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn rows(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .expect("batch")
    }

    fn content(batches: &[RecordBatch]) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        for b in batches {
            let ids = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let names = b.column(1).as_string::<i32>();
            for i in 0..b.num_rows() {
                out.push((ids.value(i), names.value(i).to_string()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_multiset_takes_additions_and_removals_of_equal_rows() {
        let full = rows(&[1, 1, 2], &["a", "a", "b"]);
        let change1 = with_ops(
            &rows(&[1, 3], &["a", "c"]),
            Some(&Int8Array::from(vec![-1, 1])),
        )
        .expect("ops");
        let change2 = with_ops(&rows(&[4], &["d"]), None).expect("ops");
        let out = apply_changes(&[full], &[change1, change2], Matching::Rows).expect("apply");
        assert_eq!(
            content(&out),
            vec![
                (1, "a".into()),
                (2, "b".into()),
                (3, "c".into()),
                (4, "d".into())
            ]
        );
        // Removing a row that is not there is an error, not a silent skip.
        let bad = with_ops(&rows(&[9], &["z"]), Some(&Int8Array::from(vec![-1]))).expect("ops");
        let error = apply_changes(&out, &[bad], Matching::Rows).expect_err("missing row");
        assert!(error.contains("does not have"), "{error}");
    }

    #[test]
    fn a_keyed_state_takes_replacements_and_removals_of_keys() {
        let full = rows(&[1, 2, 3], &["a", "b", "c"]);
        let change = with_ops(
            &rows(&[2, 3, 4], &["B", "", "d"]),
            Some(&Int8Array::from(vec![1, -1, 1])),
        )
        .expect("ops");
        let out = apply_changes(&[full], &[change], Matching::Key(&[0])).expect("apply");
        assert_eq!(
            content(&out),
            vec![(1, "a".into()), (2, "B".into()), (4, "d".into())]
        );
        // Without key columns the state is one row.
        let change = with_ops(&rows(&[7], &["x"]), None).expect("ops");
        let out = apply_changes(&out, &[change], Matching::Key(&[])).expect("apply");
        assert_eq!(content(&out).len(), 1);
    }

    #[test]
    fn changes_without_an_operations_column_are_refused() {
        let error = apply_changes(&[], &[rows(&[1], &["a"])], Matching::Rows).expect_err("no ops");
        assert!(error.contains("no operations column"), "{error}");
    }
}
