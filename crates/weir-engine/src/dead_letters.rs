//! What a stream's source does with a record it cannot read (bad JSON, a
//! short CSV line, a value of the wrong type): the stream's `on_error`
//! option, and the dead letters it keeps.
//!
//! - `dead_letter` (the default): the record, where it was and why it was
//!   refused are kept with the stream and listed by the
//!   `weir_catalog.dead_letters` system table; checkpoints keep them, so
//!   they survive a restart. Nothing is dropped silently.
//! - `skip`: the record is counted (`weir_catalog.sources.rejected_records`)
//!   and logged, not kept.
//! - `fail`: the source stops just before the record, and every job that
//!   reads the stream fails with the error (`weir_catalog.jobs`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::catalog::StreamDef;
use crate::error::{Result, WeirError, sqlstate};

/// The stream option that chooses what happens to unreadable records.
pub const ON_ERROR: &str = "on_error";

/// Dead letters a stream keeps; past it the oldest go (and the log says so).
pub const KEPT_DEAD_LETTERS: usize = 10_000;

/// Bytes of a record a dead letter keeps; a longer one is cut there (and
/// says so), so that the letters stay small in memory and in checkpoints.
pub const KEPT_RECORD_BYTES: usize = 8 * 1024;

/// What a source does with a record it cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    Fail,
    Skip,
    #[default]
    DeadLetter,
}

impl OnError {
    /// The stream's `on_error` option (the default when absent).
    pub fn of(def: &StreamDef) -> Result<OnError> {
        let Some((_, value)) = def.options.iter().find(|(k, _)| k == ON_ERROR) else {
            return Ok(OnError::default());
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(OnError::Fail),
            "skip" => Ok(OnError::Skip),
            "dead_letter" => Ok(OnError::DeadLetter),
            _ => Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!(
                    "invalid value \"{value}\" for option on_error: expected 'fail', 'skip' or 'dead_letter'"
                ),
            )),
        }
    }
}

/// A record a source could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Where it was: the file.
    pub source: String,
    /// Its line in the file, from 1.
    pub line: u64,
    /// The record as read.
    pub record: String,
    /// Why it was refused.
    pub error: String,
    /// When it was read, in microseconds since the epoch.
    pub read_at: i64,
}

/// The dead letters of one stream, oldest first.
#[derive(Debug, Default)]
pub struct DeadLetters {
    letters: VecDeque<DeadLetter>,
}

impl DeadLetter {
    /// A letter for `record`, cut to [`KEPT_RECORD_BYTES`].
    pub fn new(source: String, line: u64, record: String, error: String, read_at: i64) -> Self {
        let record = if record.len() > KEPT_RECORD_BYTES {
            let mut cut = KEPT_RECORD_BYTES;
            while !record.is_char_boundary(cut) {
                cut -= 1;
            }
            format!(
                "{}... (cut: the record has {} bytes)",
                &record[..cut],
                record.len()
            )
        } else {
            record
        };
        DeadLetter {
            source,
            line,
            record,
            error,
            read_at,
        }
    }
}

impl DeadLetters {
    /// Keeps `letters`, dropping the oldest past the bound. Returns how many
    /// were dropped now.
    pub fn add(&mut self, letters: impl IntoIterator<Item = DeadLetter>) -> u64 {
        let mut dropped = 0;
        for letter in letters {
            if self.letters.len() == KEPT_DEAD_LETTERS {
                self.letters.pop_front();
                dropped += 1;
            }
            self.letters.push_back(letter);
        }
        dropped
    }

    pub fn list(&self) -> Vec<DeadLetter> {
        self.letters.iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.letters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(line: u64) -> DeadLetter {
        DeadLetter {
            source: "f.csv".into(),
            line,
            record: "x".into(),
            error: "bad".into(),
            read_at: 0,
        }
    }

    #[test]
    fn the_oldest_letters_go_past_the_bound() {
        let mut letters = DeadLetters::default();
        let dropped = letters.add((1..=KEPT_DEAD_LETTERS as u64 + 3).map(letter));
        assert_eq!(dropped, 3);
        assert_eq!(letters.len(), KEPT_DEAD_LETTERS);
        assert_eq!(letters.list()[0].line, 4);
    }

    #[test]
    fn long_records_are_cut() {
        let long = "é".repeat(KEPT_RECORD_BYTES);
        let letter = DeadLetter::new("f".into(), 1, long.clone(), "bad".into(), 0);
        assert!(letter.record.len() < KEPT_RECORD_BYTES + 64);
        assert!(
            letter
                .record
                .ends_with(&format!("(cut: the record has {} bytes)", long.len()))
        );
        let short = DeadLetter::new("f".into(), 1, "x,y".into(), "bad".into(), 0);
        assert_eq!(short.record, "x,y");
    }

    #[test]
    fn on_error_is_read_from_the_options() {
        let mut def = StreamDef {
            oid: 1,
            name: "s".into(),
            columns: Vec::new(),
            watermark: None,
            options: vec![("connector".into(), "file".into())],
        };
        assert_eq!(OnError::of(&def).ok(), Some(OnError::DeadLetter));
        def.options.push((ON_ERROR.into(), "FAIL".into()));
        assert_eq!(OnError::of(&def).ok(), Some(OnError::Fail));
        def.options[1].1 = "ignore".into();
        let error = OnError::of(&def).err().map(|e| e.message);
        assert!(error.is_some_and(|m| m.contains("'fail', 'skip' or 'dead_letter'")));
    }
}
