//! Late rows: rows that arrived behind their relation's watermark. They are
//! not applied, and not lost: the most recent ones are kept here, with the
//! watermark they found, and every one is counted per relation. The
//! `weir_catalog.late_rows` system table shows them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use datafusion::arrow::array::RecordBatch;

use crate::text_format::{OutputFormat, write_text};

/// How many late rows a database keeps (the oldest go first).
pub const KEPT_LATE_ROWS: usize = 10_000;

/// One late row.
#[derive(Debug, Clone, PartialEq)]
pub struct LateRow {
    pub relation: String,
    /// The row, as a JSON object of its values in Postgres' text format.
    pub row: String,
    /// The watermark when it arrived, in microseconds since the epoch.
    pub watermark: i64,
    /// When it arrived, in microseconds since the epoch.
    pub arrived_at: i64,
}

#[derive(Debug, Default)]
struct Kept {
    rows: VecDeque<LateRow>,
    counts: HashMap<String, u64>,
}

/// The late rows of a database.
#[derive(Debug, Default)]
pub struct LateRows(Mutex<Kept>);

impl LateRows {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records late rows of `relation`, each with the watermark it found.
    pub fn record(&self, relation: &str, rows: &RecordBatch, watermarks: &[i64]) {
        let format = OutputFormat::default();
        let arrived_at = chrono::Utc::now().timestamp_micros();
        let schema = rows.schema();
        let mut kept = self.lock();
        *kept.counts.entry(relation.to_string()).or_default() += rows.num_rows() as u64;
        for (i, watermark) in watermarks.iter().enumerate().take(rows.num_rows()) {
            let mut object = serde_json::Map::new();
            for (column, field) in rows.columns().iter().zip(schema.fields()) {
                let value = if column.is_null(i) {
                    serde_json::Value::Null
                } else {
                    let mut text = String::new();
                    match write_text(column, i, &format, &mut text) {
                        Ok(()) => serde_json::Value::String(text),
                        Err(_) => serde_json::Value::Null,
                    }
                };
                object.insert(field.name().clone(), value);
            }
            if kept.rows.len() == KEPT_LATE_ROWS {
                kept.rows.pop_front();
            }
            kept.rows.push_back(LateRow {
                relation: relation.to_string(),
                row: serde_json::Value::Object(object).to_string(),
                watermark: *watermark,
                arrived_at,
            });
        }
    }

    /// The kept late rows, oldest first.
    pub fn rows(&self) -> Vec<LateRow> {
        self.lock().rows.iter().cloned().collect()
    }

    /// Late rows counted for `relation` since the server started.
    pub fn count(&self, relation: &str) -> u64 {
        self.lock().counts.get(relation).copied().unwrap_or(0)
    }
}

use datafusion::arrow::array::Array as _;
