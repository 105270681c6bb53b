//! The rows of a table, kept as Arrow record batches.
//!
//! A [`TableData`] holds the current content of one table as an immutable
//! snapshot (`Arc<[RecordBatch]>`): readers take the snapshot and never block
//! writers; a write builds the next snapshot and swaps it in. When the table has
//! a primary key, an index of the encoded keys (Arrow's row format) enforces
//! uniqueness on every write.
//!
//! Writers must be serialized by the caller (one statement at a time per
//! table): [`TableData::write_lock`] hands out that lock, so that a
//! read-modify-write such as `UPDATE` sees no concurrent change.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::row::{OwnedRow, RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// Why a write was refused. Nothing of the write is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Two rows would share a primary key value; `key` shows it as `(1, 'a')`.
    DuplicateKey { key: String },
    /// A column that must not be NULL got a NULL.
    NullValue { column: String },
    /// The batch does not have the table's columns.
    SchemaMismatch(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::DuplicateKey { key } => write!(f, "duplicate key {key}"),
            WriteError::NullValue { column } => write!(f, "null value in column {column}"),
            WriteError::SchemaMismatch(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<ArrowError> for WriteError {
    fn from(e: ArrowError) -> Self {
        WriteError::SchemaMismatch(e.to_string())
    }
}

/// The content of one table.
pub struct TableData {
    schema: SchemaRef,
    /// Column indices of the primary key, in key order; empty without a key.
    primary_key: Vec<usize>,
    /// Columns that refuse NULL (the key columns among them).
    not_null: Vec<usize>,
    state: RwLock<Snapshot>,
    writer: tokio::sync::Mutex<()>,
}

#[derive(Clone, Default)]
struct Snapshot {
    batches: Arc<[RecordBatch]>,
    rows: usize,
    keys: Arc<HashSet<OwnedRow>>,
}

impl fmt::Debug for TableData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableData")
            .field("schema", &self.schema)
            .field("primary_key", &self.primary_key)
            .field("rows", &self.row_count())
            .finish()
    }
}

impl TableData {
    /// An empty table. `primary_key` and `not_null` are column indices.
    pub fn new(schema: SchemaRef, primary_key: Vec<usize>, not_null: Vec<usize>) -> Self {
        let mut not_null = not_null;
        not_null.extend(primary_key.iter().copied());
        not_null.sort_unstable();
        not_null.dedup();
        TableData {
            schema,
            primary_key,
            not_null,
            state: RwLock::new(Snapshot::default()),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Column indices of the primary key; empty when the table has none.
    pub fn primary_key(&self) -> &[usize] {
        &self.primary_key
    }

    /// The lock that serializes writers to this table.
    pub async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    /// The current content.
    pub fn snapshot(&self) -> Arc<[RecordBatch]> {
        self.read().batches.clone()
    }

    pub fn row_count(&self) -> usize {
        self.read().rows
    }

    /// Appends rows, refusing all of them if one breaks a constraint.
    /// Returns the number of rows added.
    pub fn insert(&self, batches: &[RecordBatch]) -> Result<usize, WriteError> {
        let batches = self.conform(batches)?;
        let current = self.read().clone();
        let keys = if self.primary_key.is_empty() {
            current.keys.clone()
        } else {
            let mut keys = (*current.keys).clone();
            self.add_keys(&mut keys, &batches)?;
            Arc::new(keys)
        };
        let added: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut all = current.batches.to_vec();
        all.extend(batches);
        self.publish(Snapshot {
            batches: all.into(),
            rows: current.rows + added,
            keys,
        });
        Ok(added)
    }

    /// Replaces the whole content (what `UPDATE` and `DELETE` compute), checking
    /// the constraints over the new content.
    pub fn replace(&self, batches: &[RecordBatch]) -> Result<(), WriteError> {
        let batches = self.conform(batches)?;
        let mut keys = HashSet::new();
        if !self.primary_key.is_empty() {
            self.add_keys(&mut keys, &batches)?;
        }
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        self.publish(Snapshot {
            batches: compact(&self.schema, batches)?.into(),
            rows,
            keys: Arc::new(keys),
        });
        Ok(())
    }

    fn read(&self) -> Snapshot {
        match self.state.read() {
            Ok(state) => state.clone(),
            // A panic while publishing cannot leave a half-written snapshot: the
            // swap is a single assignment, so the value is still consistent.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        match self.state.write() {
            Ok(mut state) => *state = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    /// Checks the columns and NOT NULL constraints; drops empty batches.
    fn conform(&self, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, WriteError> {
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            if batch.num_columns() != self.schema.fields().len() {
                return Err(WriteError::SchemaMismatch(format!(
                    "expected {} columns, got {}",
                    self.schema.fields().len(),
                    batch.num_columns()
                )));
            }
            for &i in &self.not_null {
                if batch.column(i).null_count() > 0 {
                    return Err(WriteError::NullValue {
                        column: self.schema.field(i).name().clone(),
                    });
                }
            }
            // Re-label the columns with the table's schema (names, nullability).
            out.push(RecordBatch::try_new(
                self.schema.clone(),
                batch.columns().to_vec(),
            )?);
        }
        Ok(out)
    }

    /// Adds the keys of `batches` to `keys`, failing on the first duplicate.
    fn add_keys(
        &self,
        keys: &mut HashSet<OwnedRow>,
        batches: &[RecordBatch],
    ) -> Result<(), WriteError> {
        let fields = self
            .primary_key
            .iter()
            .map(|&i| SortField::new(self.schema.field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        for batch in batches {
            let columns: Vec<ArrayRef> = self
                .primary_key
                .iter()
                .map(|&i| batch.column(i).clone())
                .collect();
            let rows = converter.convert_columns(&columns)?;
            for (row_index, row) in rows.iter().enumerate() {
                if !keys.insert(row.owned()) {
                    return Err(WriteError::DuplicateKey {
                        key: display_row(&columns, row_index),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Concatenates small batches so that a table rewritten many times does not end
/// up as thousands of tiny batches.
fn compact(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, ArrowError> {
    const TARGET_ROWS: usize = 8192;
    if batches.len() <= 1 {
        return Ok(batches);
    }
    let mut out = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for batch in batches {
        pending_rows += batch.num_rows();
        pending.push(batch);
        if pending_rows >= TARGET_ROWS {
            out.push(concat_batches(schema, &pending)?);
            pending.clear();
            pending_rows = 0;
        }
    }
    if !pending.is_empty() {
        out.push(concat_batches(schema, &pending)?);
    }
    Ok(out)
}

/// `(v1, v2)` for the values of one row, as Postgres shows a key.
fn display_row(columns: &[ArrayRef], row: usize) -> String {
    let options = FormatOptions::default().with_null("null");
    let values: Vec<String> = columns
        .iter()
        .map(|c| match ArrayFormatter::try_new(c.as_ref(), &options) {
            Ok(f) => f.value(row).to_string(),
            Err(_) => "?".to_string(),
        })
        .collect();
    values.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn batch(ids: &[Option<i32>], names: &[Option<&str>]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn insert_appends_and_counts() {
        let table = TableData::new(schema(), vec![0], vec![]);
        assert_eq!(
            table.insert(&[batch(&[Some(1), Some(2)], &[Some("a"), None])]),
            Ok(2)
        );
        assert_eq!(table.insert(&[batch(&[Some(3)], &[Some("c")])]), Ok(1));
        assert_eq!(table.row_count(), 3);
        assert_eq!(table.snapshot().len(), 2);
    }

    #[test]
    fn duplicate_keys_are_refused_whole() {
        let table = TableData::new(schema(), vec![0], vec![]);
        table
            .insert(&[batch(&[Some(1)], &[Some("a")])])
            .expect("first");
        let err = table
            .insert(&[batch(&[Some(2), Some(1)], &[Some("b"), Some("c")])])
            .expect_err("duplicate");
        assert_eq!(err, WriteError::DuplicateKey { key: "1".into() });
        assert_eq!(table.row_count(), 1, "nothing of the failed insert applied");
        // Duplicates within one statement are refused too.
        let err = table
            .insert(&[batch(&[Some(5), Some(5)], &[None, None])])
            .expect_err("duplicate within the batch");
        assert_eq!(err, WriteError::DuplicateKey { key: "5".into() });
    }

    #[test]
    fn null_keys_are_refused() {
        let table = TableData::new(schema(), vec![0], vec![]);
        let err = table
            .insert(&[batch(&[None], &[Some("a")])])
            .expect_err("null key");
        assert_eq!(
            err,
            WriteError::NullValue {
                column: "id".into()
            }
        );
    }

    #[test]
    fn replace_rebuilds_the_key_index() {
        let table = TableData::new(schema(), vec![0], vec![]);
        table
            .insert(&[batch(&[Some(1), Some(2)], &[Some("a"), Some("b")])])
            .expect("insert");
        table
            .replace(&[batch(&[Some(2)], &[Some("b")])])
            .expect("replace");
        // Key 1 is free again, key 2 is still taken.
        assert_eq!(table.insert(&[batch(&[Some(1)], &[None])]), Ok(1));
        assert!(table.insert(&[batch(&[Some(2)], &[None])]).is_err());
        assert!(
            table
                .replace(&[batch(&[Some(7), Some(7)], &[None, None])])
                .is_err()
        );
        assert_eq!(table.row_count(), 2);
    }

    #[test]
    fn tables_without_key_accept_duplicates() {
        let table = TableData::new(schema(), vec![], vec![]);
        let b = batch(&[Some(1), Some(1)], &[None, None]);
        assert_eq!(table.insert(&[b.clone(), b]), Ok(4));
    }
}
