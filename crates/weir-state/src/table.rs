//! The rows of a table, kept as Arrow record batches.
//!
//! A [`TableData`] holds the current content of one table as an immutable
//! snapshot (`Arc<[RecordBatch]>`): readers take the snapshot and never block
//! writers; a write builds the next snapshot and swaps it in. When the table has
//! a primary key, an index of the encoded keys (Arrow's row format) enforces
//! uniqueness on every write.
//!
//! Writes go through a [`TableWriter`], which holds the table's write lock:
//! one statement at a time writes a table, so that a read-modify-write such as
//! `UPDATE` sees no concurrent change, and a write cannot happen without it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch, not};
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
    /// The write lock, guarding the primary-key index (only writers use it).
    writer: tokio::sync::Mutex<HashSet<OwnedRow>>,
}

#[derive(Clone, Default)]
struct Snapshot {
    batches: Arc<[RecordBatch]>,
    rows: usize,
}

/// Past this many batches, an insert compacts the table's batches.
const MAX_BATCHES: usize = 64;

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
            writer: tokio::sync::Mutex::new(HashSet::new()),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Waits for the other writers of the table to finish, and returns the
    /// right to write it.
    pub async fn writer(&self) -> TableWriter<'_> {
        TableWriter {
            table: self,
            keys: self.writer.lock().await,
        }
    }

    /// The current content.
    pub fn snapshot(&self) -> Arc<[RecordBatch]> {
        self.read().batches.clone()
    }

    pub fn row_count(&self) -> usize {
        self.read().rows
    }

    /// The encoded keys of `batches`, failing on the first one already in
    /// `existing` or repeated among them.
    fn new_keys(
        &self,
        existing: &HashSet<OwnedRow>,
        batches: &[RecordBatch],
    ) -> Result<HashSet<OwnedRow>, WriteError> {
        let fields = self
            .primary_key
            .iter()
            .map(|&i| SortField::new(self.schema.field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let mut keys = HashSet::new();
        for batch in batches {
            let columns: Vec<ArrayRef> = self
                .primary_key
                .iter()
                .map(|&i| batch.column(i).clone())
                .collect();
            let rows = converter.convert_columns(&columns)?;
            for (row_index, row) in rows.iter().enumerate() {
                let key = row.owned();
                if existing.contains(&key) || !keys.insert(key) {
                    return Err(WriteError::DuplicateKey {
                        key: display_row(&columns, row_index),
                    });
                }
            }
        }
        Ok(keys)
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
}

/// The right to write a table: its write lock. Every write checks the
/// table's constraints and is applied whole or not at all.
pub struct TableWriter<'a> {
    table: &'a TableData,
    /// Encoded primary keys of the current rows.
    keys: tokio::sync::MutexGuard<'a, HashSet<OwnedRow>>,
}

impl TableWriter<'_> {
    /// The content as of this writer (no other writer can change it).
    pub fn snapshot(&self) -> Arc<[RecordBatch]> {
        self.table.snapshot()
    }

    /// Appends rows, refusing all of them if one breaks a constraint.
    /// Returns the number of rows added.
    pub fn insert(&mut self, batches: &[RecordBatch]) -> Result<usize, WriteError> {
        let table = self.table;
        let batches = table.conform(batches)?;
        if !table.primary_key.is_empty() {
            let new_keys = table.new_keys(&self.keys, &batches)?;
            self.keys.extend(new_keys);
        }
        let current = table.read();
        let added: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut all = current.batches.to_vec();
        all.extend(batches);
        if all.len() > MAX_BATCHES {
            all = compact(&table.schema, all)?;
        }
        table.publish(Snapshot {
            batches: all.into(),
            rows: current.rows + added,
        });
        Ok(added)
    }

    /// Applies a changelog chunk (what the write-ahead log replays): each
    /// deleted row (`ops` -1) removes one equal row of the content, then the
    /// inserted rows (`ops` 1) are added, the constraints checked over the
    /// result.
    pub fn apply(&mut self, batch: &RecordBatch, ops: &Int8Array) -> Result<(), WriteError> {
        let deleting = BooleanArray::from_unary(ops, |op| op < 0);
        let inserting = not(&deleting)?;
        let deleted = filter_record_batch(batch, &deleting)?;
        let inserted = filter_record_batch(batch, &inserting)?;
        if deleted.num_rows() == 0 {
            return self.insert(&[inserted]).map(|_| ());
        }
        let table = self.table;
        let fields = table
            .schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let mut removing: HashMap<OwnedRow, usize> = HashMap::new();
        for row in converter.convert_columns(deleted.columns())?.iter() {
            *removing.entry(row.owned()).or_default() += 1;
        }
        let current = concat_batches(&table.schema, table.snapshot().iter())?;
        let mut keep = Vec::with_capacity(current.num_rows());
        for row in converter.convert_columns(current.columns())?.iter() {
            match removing.get_mut(&row.owned()) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    keep.push(false);
                }
                _ => keep.push(true),
            }
        }
        if removing.values().any(|count| *count > 0) {
            return Err(WriteError::SchemaMismatch(
                "a deleted row is not in the table".into(),
            ));
        }
        let kept = filter_record_batch(&current, &BooleanArray::from(keep))?;
        self.replace(&[kept, inserted])
    }

    /// Replaces the whole content (what `UPDATE` and `DELETE` compute), checking
    /// the constraints over the new content.
    pub fn replace(&mut self, batches: &[RecordBatch]) -> Result<(), WriteError> {
        let table = self.table;
        let batches = table.conform(batches)?;
        let keys = if table.primary_key.is_empty() {
            HashSet::new()
        } else {
            table.new_keys(&HashSet::new(), &batches)?
        };
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        table.publish(Snapshot {
            batches: compact(&table.schema, batches)?.into(),
            rows,
        });
        *self.keys = keys;
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

    #[tokio::test]
    async fn apply_removes_one_equal_row_per_deletion_then_inserts() {
        let table = TableData::new(schema(), vec![], vec![]);
        let mut writer = table.writer().await;
        let rows = batch(&[Some(1), Some(1), Some(2)], &[Some("a"), Some("a"), None]);
        writer.insert(&[rows]).expect("insert");
        // Delete one of the two (1, 'a') and (2, NULL); insert (3, 'c').
        let change = batch(&[Some(1), Some(2), Some(3)], &[Some("a"), None, Some("c")]);
        writer
            .apply(&change, &Int8Array::from(vec![-1, -1, 1]))
            .expect("apply");
        let content = concat_batches(&schema(), writer.snapshot().iter()).expect("concat");
        assert_eq!(content, batch(&[Some(1), Some(3)], &[Some("a"), Some("c")]));
        // Deleting a row that is not there is refused, and changes nothing.
        let missing = batch(&[Some(9)], &[None]);
        assert!(writer.apply(&missing, &Int8Array::from(vec![-1])).is_err());
        assert_eq!(table.row_count(), 2);
    }

    #[tokio::test]
    async fn insert_appends_and_counts() {
        let table = TableData::new(schema(), vec![0], vec![]);
        let mut writer = table.writer().await;
        assert_eq!(
            writer.insert(&[batch(&[Some(1), Some(2)], &[Some("a"), None])]),
            Ok(2)
        );
        assert_eq!(writer.insert(&[batch(&[Some(3)], &[Some("c")])]), Ok(1));
        assert_eq!(table.row_count(), 3);
        assert_eq!(table.snapshot().len(), 2);
    }

    #[tokio::test]
    async fn many_small_inserts_are_compacted() {
        let table = TableData::new(schema(), vec![0], vec![]);
        let mut writer = table.writer().await;
        for i in 0..1000 {
            writer
                .insert(&[batch(&[Some(i)], &[None])])
                .expect("insert");
        }
        assert_eq!(table.row_count(), 1000);
        assert!(
            table.snapshot().len() <= MAX_BATCHES,
            "{} batches",
            table.snapshot().len()
        );
        assert!(writer.insert(&[batch(&[Some(999)], &[None])]).is_err());
    }

    #[tokio::test]
    async fn duplicate_keys_are_refused_whole() {
        let table = TableData::new(schema(), vec![0], vec![]);
        let mut writer = table.writer().await;
        writer
            .insert(&[batch(&[Some(1)], &[Some("a")])])
            .expect("first");
        let err = writer
            .insert(&[batch(&[Some(2), Some(1)], &[Some("b"), Some("c")])])
            .expect_err("duplicate");
        assert_eq!(err, WriteError::DuplicateKey { key: "1".into() });
        assert_eq!(table.row_count(), 1, "nothing of the failed insert applied");
        // Key 2 of the failed insert was not taken.
        assert_eq!(writer.insert(&[batch(&[Some(2)], &[None])]), Ok(1));
        // Duplicates within one statement are refused too.
        let err = writer
            .insert(&[batch(&[Some(5), Some(5)], &[None, None])])
            .expect_err("duplicate within the batch");
        assert_eq!(err, WriteError::DuplicateKey { key: "5".into() });
    }

    #[tokio::test]
    async fn null_keys_are_refused() {
        let table = TableData::new(schema(), vec![0], vec![]);
        let err = table
            .writer()
            .await
            .insert(&[batch(&[None], &[Some("a")])])
            .expect_err("null key");
        assert_eq!(
            err,
            WriteError::NullValue {
                column: "id".into()
            }
        );
    }

    #[tokio::test]
    async fn replace_rebuilds_the_key_index() {
        let table = TableData::new(schema(), vec![0], vec![]);
        let mut writer = table.writer().await;
        writer
            .insert(&[batch(&[Some(1), Some(2)], &[Some("a"), Some("b")])])
            .expect("insert");
        writer
            .replace(&[batch(&[Some(2)], &[Some("b")])])
            .expect("replace");
        // Key 1 is free again, key 2 is still taken.
        assert_eq!(writer.insert(&[batch(&[Some(1)], &[None])]), Ok(1));
        assert!(writer.insert(&[batch(&[Some(2)], &[None])]).is_err());
        assert!(
            writer
                .replace(&[batch(&[Some(7), Some(7)], &[None, None])])
                .is_err()
        );
        assert_eq!(table.row_count(), 2);
    }

    #[tokio::test]
    async fn tables_without_key_accept_duplicates() {
        let table = TableData::new(schema(), vec![], vec![]);
        let b = batch(&[Some(1), Some(1)], &[None, None]);
        assert_eq!(table.writer().await.insert(&[b.clone(), b]), Ok(4));
    }
}
