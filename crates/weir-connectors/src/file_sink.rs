//! A sink's rows as files in a directory or an object store (an S3 bucket):
//! JSON lines, CSV (with a header line) or Parquet, one file per checkpoint
//! that saw rows.
//!
//! Rows go to `<staging>/in-progress.<ext>`, a local directory unique per
//! sink (`<dir>/.staging/<sink>-<oid>` for a directory; under the data
//! directory for an object store). At a checkpoint barrier that file is
//! finished, synced and renamed `<staging>/<epoch>-<n>.<ext>` (staged). Once
//! the checkpoint has committed, staged files become `<sink>-<epoch>-<n>.<ext>`
//! in the destination (visible): renamed into the directory, or uploaded
//! to the store (one PUT, multipart for large files: the object appears
//! whole) and then deleted locally. Whoever reads the destination sees
//! whole files only, and each row in one of them once. After a crash, the
//! staged files of the checkpoint restored are made visible (if the crash
//! came before; uploading again writes the same object) and every other
//! staged or in-progress file is deleted: the restored job writes those
//! rows again.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use object_store::ObjectStore;
use object_store::buffered::BufWriter as StoreWriter;
use parquet::arrow::ArrowWriter;
use tokio::io::AsyncWriteExt;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header line.
    Csv,
    Parquet,
}

impl FileFormat {
    /// `jsonl` (or `json`), `csv`, `parquet`.
    pub fn parse(text: &str) -> Option<FileFormat> {
        match text.to_ascii_lowercase().as_str() {
            "jsonl" | "json" => Some(FileFormat::Jsonl),
            "csv" => Some(FileFormat::Csv),
            "parquet" => Some(FileFormat::Parquet),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Jsonl => "jsonl",
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// The file being written.
enum Writer {
    Jsonl(arrow::json::LineDelimitedWriter<BufWriter<File>>),
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>),
    Parquet(Box<ArrowWriter<BufWriter<File>>>),
}

struct InProgress {
    writer: Writer,
    /// The same file, to sync it once written.
    file: File,
}

/// Where a sink's files become visible.
pub enum Destination {
    /// A local directory: staged files are renamed into it.
    Directory(PathBuf),
    /// An object store (for `s3://bucket/prefix`, the store under the
    /// prefix), named by `url` in messages: staged files are uploaded.
    Store {
        store: Arc<dyn ObjectStore>,
        url: String,
    },
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Directory(dir) => write!(f, "{}", dir.display()),
            Destination::Store { url, .. } => write!(f, "{url}"),
        }
    }
}

/// The files of one sink.
pub struct FileSink {
    destination: Destination,
    staging: PathBuf,
    name: String,
    format: FileFormat,
    in_progress: Mutex<Option<InProgress>>,
    /// Files staged since the start (numbers the next one).
    staged: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("destination", &self.destination)
            .field("name", &self.name)
            .field("format", &self.format)
            .finish()
    }
}

fn io_error(what: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", what.display())
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

impl FileSink {
    /// The files of sink `name` in `dir` (created if missing), staged in
    /// `dir/.staging/<staging>`.
    pub fn in_directory(
        dir: &Path,
        name: &str,
        staging: &str,
        format: FileFormat,
    ) -> Result<FileSink, String> {
        let staging = dir.join(".staging").join(staging);
        FileSink::new(
            Destination::Directory(dir.to_path_buf()),
            staging,
            name,
            format,
        )
    }

    /// The files of sink `name` going to `destination`, staged in the local
    /// directory `staging` (created if missing; the sink's own).
    pub fn new(
        destination: Destination,
        staging: PathBuf,
        name: &str,
        format: FileFormat,
    ) -> Result<FileSink, String> {
        std::fs::create_dir_all(&staging).map_err(|e| io_error(&staging, e))?;
        Ok(FileSink {
            destination,
            staging,
            name: name.to_string(),
            format,
            in_progress: Mutex::new(None),
            staged: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Checks that the destination can be reached (an object store's
    /// bucket exists and answers).
    pub async fn check_destination(&self) -> Result<(), String> {
        match &self.destination {
            Destination::Directory(_) => Ok(()),
            Destination::Store { store, url } => store
                .list_with_delimiter(None)
                .await
                .map(|_| ())
                .map_err(|e| format!("{url}: {e}")),
        }
    }

    fn in_progress_path(&self) -> PathBuf {
        self.staging
            .join(format!("in-progress.{}", self.format.extension()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<InProgress>> {
        self.in_progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends rows to the file in progress (started with the first rows).
    pub fn write(&self, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut in_progress = self.lock();
        if in_progress.is_none() {
            let path = self.in_progress_path();
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            let sync = file.try_clone().map_err(|e| io_error(&path, e))?;
            let out = BufWriter::new(file);
            let writer = match self.format {
                FileFormat::Jsonl => Writer::Jsonl(arrow::json::LineDelimitedWriter::new(out)),
                FileFormat::Csv => Writer::Csv(Box::new(
                    arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(out),
                )),
                FileFormat::Parquet => Writer::Parquet(Box::new(
                    ArrowWriter::try_new(out, batch.schema(), None)
                        .map_err(|e| io_error(&path, e))?,
                )),
            };
            *in_progress = Some(InProgress { writer, file: sync });
        }
        let Some(open) = in_progress.as_mut() else {
            return Err("no file in progress".into());
        };
        let path = self.in_progress_path();
        match &mut open.writer {
            Writer::Jsonl(w) => w.write(batch).map_err(|e| io_error(&path, e)),
            Writer::Csv(w) => w.write(batch).map_err(|e| io_error(&path, e)),
            Writer::Parquet(w) => w.write(batch).map_err(|e| io_error(&path, e)),
        }
    }

    /// Finishes the file in progress and stages it as checkpoint `epoch`'s;
    /// returns its name (none without rows).
    pub fn stage(&self, epoch: u64) -> Result<Vec<String>, String> {
        let Some(open) = self.lock().take() else {
            return Ok(Vec::new());
        };
        let path = self.in_progress_path();
        match open.writer {
            Writer::Jsonl(mut w) => {
                w.finish().map_err(|e| io_error(&path, e))?;
                w.into_inner()
                    .into_inner()
                    .map_err(|e| io_error(&path, e.error()))?;
            }
            Writer::Csv(w) => {
                (*w).into_inner()
                    .into_inner()
                    .map_err(|e| io_error(&path, e.error()))?;
            }
            Writer::Parquet(w) => {
                (*w).close().map_err(|e| io_error(&path, e))?;
            }
        }
        open.file.sync_all().map_err(|e| io_error(&path, e))?;
        // Unique even when a sink whose input ended stages its last rows
        // under the epoch whose barrier it already staged at.
        let part = self
            .staged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{epoch:020}-{part:06}.{}", self.format.extension());
        let staged = self.staging.join(&name);
        std::fs::rename(&path, &staged).map_err(|e| io_error(&staged, e))?;
        sync_dir(&self.staging)?;
        Ok(vec![name])
    }

    /// The visible name of staged file `name`.
    fn visible_name(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    /// Makes staged files visible. A staged file that is gone was made
    /// visible before (and may have been consumed since): skipped.
    pub async fn commit(&self, staged: &[String]) -> Result<(), String> {
        for name in staged {
            let from = self.staging.join(name);
            if !from.exists() {
                continue;
            }
            match &self.destination {
                Destination::Directory(dir) => {
                    let to = dir.join(self.visible_name(name));
                    std::fs::rename(&from, &to).map_err(|e| io_error(&to, e))?;
                }
                Destination::Store { store, url } => {
                    let key = self.visible_name(name);
                    let failed = |e: std::io::Error| format!("{url}/{key}: {e}");
                    let mut file = tokio::fs::File::open(&from)
                        .await
                        .map_err(|e| io_error(&from, e))?;
                    let mut upload = StoreWriter::new(store.clone(), key.as_str().into());
                    tokio::io::copy(&mut file, &mut upload)
                        .await
                        .map_err(failed)?;
                    upload.shutdown().await.map_err(failed)?;
                    // Uploaded: a crash before this line uploads it again.
                    std::fs::remove_file(&from).map_err(|e| io_error(&from, e))?;
                }
            }
        }
        if !staged.is_empty() {
            match &self.destination {
                Destination::Directory(dir) => sync_dir(dir)?,
                Destination::Store { .. } => sync_dir(&self.staging)?,
            }
        }
        Ok(())
    }

    /// At start: commits `committed`, deletes every other staged file and
    /// the file that was in progress.
    pub async fn recover(&self, committed: &[String]) -> Result<(), String> {
        self.commit(committed).await?;
        let entries = std::fs::read_dir(&self.staging).map_err(|e| io_error(&self.staging, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.staging, e))?;
            let path = entry.path();
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        sync_dir(&self.staging)
    }

    /// Deletes the staging directory (the sink is dropped); visible files
    /// stay.
    pub fn remove_staging(&self) -> Result<(), String> {
        *self.lock() = None;
        match std::fs::remove_dir_all(&self.staging) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&self.staging, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn rows(ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .expect("batch")
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .filter_map(|e| {
                let e = e.expect("entry");
                e.path()
                    .is_file()
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn rows_become_visible_only_when_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink =
            FileSink::in_directory(dir.path(), "out", "out", FileFormat::Jsonl).expect("sink");
        sink.write(&rows(&[1, 2])).expect("write");
        assert!(visible(dir.path()).is_empty(), "nothing before the barrier");
        let staged = sink.stage(7).expect("stage");
        assert_eq!(staged, vec![format!("{:020}-000000.jsonl", 7)]);
        assert!(visible(dir.path()).is_empty(), "nothing before the commit");
        assert!(sink.stage(8).expect("stage").is_empty(), "no rows, no file");
        sink.commit(&staged).await.expect("commit");
        sink.commit(&staged)
            .await
            .expect("commit again is no error");
        // A consumer that took the file away does not make it fail either.
        let taken = dir.path().join(format!("out-{:020}-000000.jsonl", 7));
        let text = std::fs::read_to_string(&taken).expect("read");
        std::fs::remove_file(&taken).expect("consume");
        sink.recover(&staged)
            .await
            .expect("recover after the file was consumed");
        std::fs::write(&taken, &text).expect("put back");
        let files = visible(dir.path());
        assert_eq!(files, vec![format!("out-{:020}-000000.jsonl", 7)]);
        let text = std::fs::read_to_string(dir.path().join(&files[0])).expect("read");
        assert_eq!(
            text,
            "{\"id\":1,\"name\":\"n1\"}\n{\"id\":2,\"name\":\"n2\"}\n"
        );
    }

    #[tokio::test]
    async fn recovery_commits_the_restored_checkpoints_files_and_drops_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::in_directory(dir.path(), "out", "out", FileFormat::Csv).expect("sink");
        sink.write(&rows(&[1])).expect("write");
        let committed = sink.stage(3).expect("stage");
        sink.write(&rows(&[2])).expect("write");
        let uncommitted = sink.stage(4).expect("stage");
        sink.write(&rows(&[3])).expect("write"); // in progress at the crash
        drop(sink);

        let sink =
            FileSink::in_directory(dir.path(), "out", "out", FileFormat::Csv).expect("reopen");
        sink.recover(&committed).await.expect("recover");
        let files = visible(dir.path());
        assert_eq!(files, vec![format!("out-{:020}-000000.csv", 3)]);
        let text = std::fs::read_to_string(dir.path().join(&files[0])).expect("read");
        assert_eq!(text, "id,name\n1,n1\n");
        let staging = dir.path().join(".staging/out");
        assert!(
            std::fs::read_dir(&staging).expect("list").next().is_none(),
            "{uncommitted:?} and the file in progress are gone"
        );
    }

    #[tokio::test]
    async fn a_second_file_staged_under_one_epoch_keeps_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink =
            FileSink::in_directory(dir.path(), "out", "out", FileFormat::Jsonl).expect("sink");
        sink.write(&rows(&[1])).expect("write");
        let mut staged = sink.stage(5).expect("stage");
        sink.write(&rows(&[2])).expect("write");
        staged.extend(sink.stage(5).expect("stage again"));
        sink.commit(&staged).await.expect("commit");
        assert_eq!(visible(dir.path()).len(), 2);
    }

    #[tokio::test]
    async fn parquet_files_are_whole_when_staged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink =
            FileSink::in_directory(dir.path(), "out", "out", FileFormat::Parquet).expect("sink");
        sink.write(&rows(&[1, 2])).expect("write");
        sink.write(&rows(&[3])).expect("write");
        let staged = sink.stage(1).expect("stage");
        sink.commit(&staged).await.expect("commit");
        let file =
            File::open(dir.path().join(format!("out-{:020}-000000.parquet", 1))).expect("open");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("a parquet file")
            .build()
            .expect("reader");
        let read: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
        assert_eq!(read, 3);
    }

    #[tokio::test]
    async fn files_for_a_store_are_uploaded_when_committed() {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let staging = tempfile::tempdir().expect("tempdir");
        let destination = Destination::Store {
            store: store.clone(),
            url: "memory://".into(),
        };
        let sink = FileSink::new(
            destination,
            staging.path().to_path_buf(),
            "out",
            FileFormat::Csv,
        )
        .expect("sink");
        sink.check_destination().await.expect("reachable");
        let keys = || async {
            let mut keys: Vec<String> = store
                .list(None)
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
                .expect("list");
            keys.sort();
            keys
        };
        sink.write(&rows(&[1, 2])).expect("write");
        let first = sink.stage(1).expect("stage");
        sink.write(&rows(&[3])).expect("write");
        let second = sink.stage(2).expect("stage");
        assert!(keys().await.is_empty(), "nothing before the commit");
        sink.commit(&first).await.expect("commit");
        let name = format!("out-{:020}-000000.csv", 1);
        assert_eq!(keys().await, vec![name.clone()]);
        let bytes = store
            .get(&name.as_str().into())
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&bytes[..], b"id,name\n1,n1\n2,n2\n");
        // Uploaded files leave the staging directory; committing again is no
        // error; recovery from checkpoint 1 drops what 2 staged.
        sink.commit(&first).await.expect("commit again");
        sink.write(&rows(&[4])).expect("in progress at a crash");
        sink.recover(&first).await.expect("recover");
        assert_eq!(keys().await, vec![name]);
        assert!(
            std::fs::read_dir(staging.path())
                .expect("list")
                .next()
                .is_none(),
            "{second:?} and the file in progress are gone"
        );
    }
}
