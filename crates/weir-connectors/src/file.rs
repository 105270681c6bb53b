//! The `file` source: CSV or JSON-lines records from a file, or from every
//! file of a directory (in name order), read once or tailed.
//!
//! Records are lines. A tailed source keeps each file's offset, reads what
//! was appended since (complete lines only: a line still being written is
//! read once its newline arrives) and picks up new files of the directory.
//! A record that does not parse into the stream's columns is skipped and
//! counted, with a warning naming the file and line; the others go on.
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
    rejected: u64,
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
            rejected: 0,
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

    /// Records skipped since the last call, because they did not parse.
    pub fn take_rejected(&mut self) -> u64 {
        std::mem::take(&mut self.rejected)
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
            let (lines, progress, at_end) = match read_lines(&file, progress, !self.tail) {
                Ok(read) => read,
                Err(e) => return Some(Err(e)),
            };
            all_read &= at_end;
            self.files.insert(file.clone(), progress);
            let format = self.format_of(&file);
            let first_line = progress.line - lines.len() as u64;
            for (chunk_index, chunk) in lines.chunks(BATCH_LINES).enumerate() {
                let first = first_line + (chunk_index * BATCH_LINES) as u64;
                batches.extend(self.parse(&file, format, first, chunk));
            }
        }
        if !self.tail && all_read {
            self.files.insert(PathBuf::new(), Progress::default());
        }
        Some(Ok(batches))
    }

    /// Parses lines (numbered from `first`, 0-based) into batches, skipping
    /// and counting those that do not parse.
    fn parse(
        &mut self,
        file: &Path,
        format: Format,
        first: u64,
        lines: &[String],
    ) -> Vec<RecordBatch> {
        let records: Vec<(u64, &String)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (first + i as u64, l))
            .filter(|(n, l)| {
                !l.trim().is_empty()
                    && !matches!(format, Format::Csv { header: true, .. } if *n == 0)
            })
            .collect();
        if records.is_empty() {
            return Vec::new();
        }
        let text = |records: &[(u64, &String)]| {
            let mut text = String::new();
            for (_, line) in records {
                text.push_str(line);
                text.push('\n');
            }
            text
        };
        if let Ok(batch) = parse_text(&self.schema, format, &text(&records)) {
            return batch;
        }
        // One at a time, to keep the good ones.
        let mut batches = Vec::new();
        for record in &records {
            match parse_text(&self.schema, format, &text(std::slice::from_ref(record))) {
                Ok(parsed) => batches.extend(parsed),
                Err(e) => {
                    self.rejected += 1;
                    tracing::warn!(file = %file.display(), line = record.0 + 1, error = %e, "skipping a record that does not parse");
                }
            }
        }
        batches
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
/// one too when `to_end`), with the progress after them.
/// Whether the file was read to its end is the third value (a large file
/// takes several calls).
fn read_lines(
    file: &Path,
    progress: Progress,
    to_end: bool,
) -> std::io::Result<(Vec<String>, Progress, bool)> {
    let mut handle = File::open(file)?;
    let length = handle.metadata()?.len();
    if length < progress.offset {
        // Truncated or replaced: read it again from the start.
        return read_lines(file, Progress::default(), to_end);
    }
    handle.seek(SeekFrom::Start(progress.offset))?;
    let mut bytes = Vec::new();
    handle.take(READ_BYTES).read_to_end(&mut bytes)?;
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(last) => last + 1,
        None => 0,
    };
    let whole_file_read = progress.offset + bytes.len() as u64 >= length;
    let used = if to_end && whole_file_read {
        bytes.len()
    } else {
        complete
    };
    let text = String::from_utf8_lossy(&bytes[..used]);
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect();
    // `split` gives an empty piece after a final newline.
    let lines = match lines.split_last() {
        Some((last, rest)) if last.is_empty() => rest.to_vec(),
        _ => lines,
    };
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
        assert_eq!(source.take_rejected(), 1);
        assert!(source.poll().is_none(), "read once");
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
