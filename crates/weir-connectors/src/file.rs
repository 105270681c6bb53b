//! The `file` source: CSV or JSON-lines records from a file, or from every
//! file of a directory (in name order), read once or tailed.
//!
//! Records are lines. A tailed source keeps each file's offset, reads what
//! was appended since (complete lines only: a line still being written is
//! read once its newline arrives) and picks up new files of the directory.
//! A record that does not parse into the stream's columns (a short CSV
//! line, bad JSON, a value of the wrong type) is set aside as a [`Reject`]
//! (file, line, the record, the error) for the caller, which decides what
//! becomes of it (the stream's `on_error`); the others go on. With
//! [`FileSource::stop_at_first_reject`], reading stops at the first one
//! instead, its position just before it.
//!
//! Options: `path` (required), `format` (`csv` or `json`, by default from the
//! extension), `csv.header` (default true: the first line of each file is
//! skipped), `csv.delimiter` (default `,`), `mode` (`once`, the default, or
//! `tail`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

/// Lines parsed per batch, at most.
const BATCH_LINES: usize = 4096;
/// Bytes read from a file at once, at most.
const READ_BYTES: u64 = 4 << 20;

/// Why file options were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("unknown option \"{0}\" for connector file")]
    UnknownOption(String),
    #[error("the file connector needs path = '<file or directory>'")]
    MissingPath,
    #[error("invalid value \"{value}\" for option \"{key}\": {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("the file connector cannot read column \"{column}\" of type {data_type}")]
    Unsupported { column: String, data_type: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv { header: bool, delimiter: u8 },
    Json,
}

/// A line of a file and its byte offset.
type Line = (u64, String);

/// A record that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub file: PathBuf,
    /// Its line in the file, from 1.
    pub line: u64,
    /// The record as read (invalid UTF-8 replaced).
    pub record: String,
    pub error: String,
}

/// Where reading a file has got to.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    offset: u64,
    line: u64,
}

/// A file source for one stream.
#[derive(Debug)]
pub struct FileSource {
    schema: SchemaRef,
    path: PathBuf,
    format: Option<Format>,
    csv_header: bool,
    csv_delimiter: u8,
    tail: bool,
    files: BTreeMap<PathBuf, Progress>,
    rejects: Vec<Reject>,
    /// Stop at the first record that does not parse.
    stop_at_reject: bool,
}

fn invalid(key: &str, value: &str, reason: &str) -> FileError {
    FileError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn boolean(key: &str, value: &str) -> Result<bool, FileError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

impl FileSource {
    /// A source for `schema`, configured by `options` (`connector` and other
    /// keys the caller handles are ignored: pass only this connector's).
    pub fn new(schema: SchemaRef, options: &[(String, String)]) -> Result<Self, FileError> {
        let mut path = None;
        let mut format = None;
        let mut csv_header = true;
        let mut csv_delimiter = b',';
        let mut tail = false;
        for (key, value) in options {
            match key.as_str() {
                "path" => path = Some(PathBuf::from(value)),
                "format" => {
                    format = Some(match value.trim().to_ascii_lowercase().as_str() {
                        "csv" => "csv",
                        "json" | "jsonl" | "ndjson" => "json",
                        _ => return Err(invalid(key, value, "the formats are csv and json")),
                    })
                }
                "csv.header" => csv_header = boolean(key, value)?,
                "csv.delimiter" => match value.as_bytes() {
                    [byte] if byte.is_ascii() => csv_delimiter = *byte,
                    _ => return Err(invalid(key, value, "expected one ASCII character")),
                },
                "mode" => {
                    tail = match value.trim().to_ascii_lowercase().as_str() {
                        "once" => false,
                        "tail" => true,
                        _ => return Err(invalid(key, value, "the modes are once and tail")),
                    }
                }
                other => return Err(FileError::UnknownOption(other.to_string())),
            }
        }
        let path = path.ok_or(FileError::MissingPath)?;
        for field in schema.fields() {
            let readable = matches!(
                field.data_type(),
                DataType::Boolean
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Decimal128(..)
                    | DataType::Utf8
                    | DataType::Date32
                    | DataType::Timestamp(..)
            );
            if !readable {
                return Err(FileError::Unsupported {
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                });
            }
        }
        let mut source = FileSource {
            schema,
            format: None,
            path,
            csv_header,
            csv_delimiter,
            tail,
            files: BTreeMap::new(),
            rejects: Vec::new(),
            stop_at_reject: false,
        };
        source.format = format.map(|f| source.format_named(f));
        Ok(source)
    }

    fn format_named(&self, name: &str) -> Format {
        match name {
            "csv" => Format::Csv {
                header: self.csv_header,
                delimiter: self.csv_delimiter,
            },
            _ => Format::Json,
        }
    }

    /// Whether the source tails its files (it never ends).
    pub fn tails(&self) -> bool {
        self.tail
    }

    /// Records set aside since the last call, because they did not parse.
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        std::mem::take(&mut self.rejects)
    }

    /// From now on, a poll that meets a record that does not parse returns
    /// the records before it and stops there: the position is just before
    /// it, and the next poll meets it again.
    pub fn stop_at_first_reject(&mut self) {
        self.stop_at_reject = true;
    }

    /// The files to read, in name order.
    fn list(&self) -> std::io::Result<Vec<PathBuf>> {
        if self.path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.path)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            Ok(files)
        } else {
            Ok(vec![self.path.clone()])
        }
    }

    fn format_of(&self, file: &Path) -> Format {
        if let Some(format) = self.format {
            return format;
        }
        let csv = file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        self.format_named(if csv { "csv" } else { "json" })
    }

    /// How far each file has been read, as `(path, byte offset, line)`: what
    /// [`resume`](FileSource::resume) takes back. (A source read once and
    /// done lists an empty path.)
    pub fn position(&self) -> Vec<(PathBuf, u64, u64)> {
        self.files
            .iter()
            .map(|(path, p)| (path.clone(), p.offset, p.line))
            .collect()
    }

    /// Continues from a [`position`](FileSource::position): files are read
    /// from where it says, and a source read once and done stays done.
    pub fn resume(&mut self, position: Vec<(PathBuf, u64, u64)>) {
        self.files = position
            .into_iter()
            .map(|(path, offset, line)| (path, Progress { offset, line }))
            .collect();
    }

    /// The records that arrived since the last call, as batches; `None`
    /// once a source read once has read everything.
    pub fn poll(&mut self) -> Option<Result<Vec<RecordBatch>, std::io::Error>> {
        if self.files.contains_key(&PathBuf::new()) {
            return None; // read once, and done
        }
        let files = match self.list() {
            Ok(files) => files,
            // A tailed path may appear later.
            Err(_) if self.tail => return Some(Ok(Vec::new())),
            Err(e) => return Some(Err(e)),
        };
        let mut batches = Vec::new();
        let mut all_read = true;
        for file in files {
            let progress = self.files.get(&file).copied().unwrap_or_default();
            let (lines, next, at_end) = match read_lines(&file, progress, !self.tail) {
                Ok(read) => read,
                Err(e) => return Some(Err(e)),
            };
            let format = self.format_of(&file);
            for (chunk_index, chunk) in lines.chunks(BATCH_LINES).enumerate() {
                let first = progress.line + (chunk_index * BATCH_LINES) as u64;
                let (parsed, stopped) = self.parse(&file, format, first, chunk);
                batches.extend(parsed);
                if let Some(at) = stopped {
                    // Stopped at a record: the next poll starts there.
                    self.files.insert(file, at);
                    return Some(Ok(batches));
                }
            }
            all_read &= at_end;
            self.files.insert(file, next);
        }
        if !self.tail && all_read {
            self.files.insert(PathBuf::new(), Progress::default());
        }
        Some(Ok(batches))
    }

    /// Parses lines (numbered from `first`, 0-based; each with its byte
    /// offset) into batches, setting aside those that do not parse. When
    /// stopping at the first of those, also returns the progress just
    /// before it.
    fn parse(
        &mut self,
        file: &Path,
        format: Format,
        first: u64,
        lines: &[Line],
    ) -> (Vec<RecordBatch>, Option<Progress>) {
        let records: Vec<(u64, u64, &String)> = lines
            .iter()
            .enumerate()
            .map(|(i, (offset, line))| (first + i as u64, *offset, line))
            .filter(|(n, _, l)| {
                !l.trim().is_empty()
                    && !matches!(format, Format::Csv { header: true, .. } if *n == 0)
            })
            .collect();
        if records.is_empty() {
            return (Vec::new(), None);
        }
        let text = |records: &[(u64, u64, &String)]| {
            let mut text = String::new();
            for (_, _, line) in records {
                text.push_str(line);
                text.push('\n');
            }
            text
        };
        // All at once, when every line is one record; a record split over
        // lines or two on one line are caught one line at a time.
        if let Ok(batches) = parse_text(&self.schema, format, &text(&records))
            && batches.iter().map(RecordBatch::num_rows).sum::<usize>() == records.len()
        {
            return (batches, None);
        }
        // One at a time, to keep the good ones.
        let mut batches = Vec::new();
        for record in &records {
            let parsed = parse_text(&self.schema, format, &text(std::slice::from_ref(record)));
            let error = match parsed {
                Ok(parsed) if parsed.iter().map(RecordBatch::num_rows).sum::<usize>() == 1 => {
                    batches.extend(parsed);
                    continue;
                }
                Ok(parsed) => format!(
                    "the line holds {} records, not one",
                    parsed.iter().map(RecordBatch::num_rows).sum::<usize>()
                ),
                Err(e) => e.to_string(),
            };
            self.rejects.push(Reject {
                file: file.to_path_buf(),
                line: record.0 + 1,
                record: record.2.clone(),
                error,
            });
            if self.stop_at_reject {
                let at = Progress {
                    offset: record.1,
                    line: record.0,
                };
                return (batches, Some(at));
            }
        }
        (batches, None)
    }
}

fn parse_text(
    schema: &SchemaRef,
    format: Format,
    text: &str,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let reader = std::io::Cursor::new(text.as_bytes());
    match format {
        Format::Csv { delimiter, .. } => arrow::csv::ReaderBuilder::new(Arc::clone(schema))
            .with_header(false)
            .with_delimiter(delimiter)
            .with_batch_size(BATCH_LINES)
            .build(reader)?
            .collect(),
        Format::Json => arrow::json::ReaderBuilder::new(Arc::clone(schema))
            .with_batch_size(BATCH_LINES)
            .build(reader)?
            .collect(),
    }
}

/// The complete lines of `file` after `progress` (and the last, unfinished
/// one too when `to_end`), each with its byte offset, and the progress
/// after them. Whether the file was read to its end is the third value (a
/// large file takes several calls). A line longer than the most read at
/// once is taken whole, however long.
fn read_lines(
    file: &Path,
    progress: Progress,
    to_end: bool,
) -> std::io::Result<(Vec<Line>, Progress, bool)> {
    let mut handle = File::open(file)?;
    let length = handle.metadata()?.len();
    if length < progress.offset {
        // Truncated or replaced: read it again from the start.
        return read_lines(file, Progress::default(), to_end);
    }
    handle.seek(SeekFrom::Start(progress.offset))?;
    let mut bytes = Vec::new();
    (&mut handle).take(READ_BYTES).read_to_end(&mut bytes)?;
    let mut complete = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |last| last + 1);
    if complete == 0 && bytes.len() as u64 == READ_BYTES {
        // One line longer than a read: read on to its end.
        let mut rest = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let n = handle.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
            if let Some(newline) = chunk[..n].iter().position(|b| *b == b'\n') {
                rest.truncate(rest.len() - n + newline + 1);
                break;
            }
        }
        bytes.extend(rest);
        complete = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |last| last + 1);
    }
    let whole_file_read = progress.offset + bytes.len() as u64 >= length;
    let used = if to_end && whole_file_read {
        bytes.len()
    } else {
        complete
    };
    let mut lines = Vec::new();
    let mut start = 0;
    while start < used {
        let end = bytes[start..used]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(used, |i| start + i);
        let line = String::from_utf8_lossy(&bytes[start..end]);
        let line = line.strip_suffix('\r').unwrap_or(&line).to_string();
        lines.push((progress.offset + start as u64, line));
        start = end + 1;
    }
    let next = Progress {
        offset: progress.offset + used as u64,
        line: progress.line + lines.len() as u64,
    };
    Ok((lines, next, next.offset >= length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Int64Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    fn source(path: &Path, mode: &str) -> FileSource {
        FileSource::new(
            schema(),
            &[
                ("path".to_string(), path.display().to_string()),
                ("mode".to_string(), mode.to_string()),
            ],
        )
        .expect("options")
    }

    #[test]
    fn csv_read_once_skips_headers_and_bad_records() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("a.csv"), "id,name\n1,ann\nx,bad\n2,bob").expect("write");
        std::fs::write(dir.path().join("b.csv"), "id,name\n3,cid\n").expect("write");
        let mut source = source(dir.path(), "once");
        let batches = source.poll().expect("rows").expect("read");
        assert_eq!(ids(&batches), vec![1, 2, 3]);
        let rejects = source.take_rejects();
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].file, dir.path().join("a.csv"));
        assert_eq!(rejects[0].line, 3);
        assert_eq!(rejects[0].record, "x,bad");
        assert!(rejects[0].error.contains("x"), "{}", rejects[0].error);
        assert!(source.poll().is_none(), "read once");
    }

    /// A short CSV line, bad JSON, a wrong type, two records on one line, a
    /// record over two lines: each set aside with its line, the others read.
    #[test]
    fn records_that_do_not_parse_are_set_aside_with_their_line() {
        let dir = tempfile::tempdir().expect("dir");
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "id,name\r\n1,ann\r\n2\r\n3,cid\r\n").expect("write");
        let mut from_csv = source(&csv, "once");
        assert_eq!(
            ids(&from_csv.poll().expect("rows").expect("read")),
            vec![1, 3]
        );
        let rejects = from_csv.take_rejects();
        let lines: Vec<(u64, &str)> = rejects
            .iter()
            .map(|r| (r.line, r.record.as_str()))
            .collect();
        assert_eq!(lines, vec![(3, "2")]);

        let json = dir.path().join("b.jsonl");
        std::fs::write(
            &json,
            "{\"id\": 1}\n{\"id\": \n{\"id\": \"x\"}\n{\"id\": 4}{\"id\": 5}\n{\"id\": 6}\n",
        )
        .expect("write");
        let mut from_json = source(&json, "once");
        assert_eq!(
            ids(&from_json.poll().expect("rows").expect("read")),
            vec![1, 6]
        );
        let lines: Vec<u64> = from_json.take_rejects().iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
    }

    #[test]
    fn stopping_at_a_reject_keeps_the_position_before_it() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("a.jsonl");
        std::fs::write(&file, "{\"id\": 1}\n{\"id\": 2}\nnot json\n{\"id\": 4}\n").expect("write");
        let mut source = source(&file, "once");
        source.stop_at_first_reject();
        assert_eq!(
            ids(&source.poll().expect("rows").expect("read")),
            vec![1, 2]
        );
        assert_eq!(source.take_rejects().len(), 1);
        let position = source.position();
        assert_eq!(position, vec![(file.clone(), 20, 2)]);
        // Polled again, it meets the same record.
        assert!(ids(&source.poll().expect("rows").expect("read")).is_empty());
        assert_eq!(source.take_rejects()[0].line, 3);
    }

    #[test]
    fn json_lines_are_tailed() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("events.jsonl");
        std::fs::write(&file, "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2").expect("write");
        let mut source = source(&file, "tail");
        assert_eq!(ids(&source.poll().expect("rows").expect("read")), vec![1]);
        use std::io::Write;
        let mut append = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .expect("open");
        append
            .write_all(b", \"name\": \"b\"}\n{\"id\": 3}\n")
            .expect("append");
        assert_eq!(
            ids(&source.poll().expect("rows").expect("read")),
            vec![2, 3]
        );
        assert_eq!(
            ids(&source.poll().expect("rows").expect("read")),
            Vec::<i64>::new()
        );
    }
}
