//! A sink: a query's results written out of Weir through a connector, by a
//! streaming job, exactly once across crashes (see `weir_runtime::sink`).
//!
//! Connectors (`WITH (connector = ...)`):
//! - `file`: files in a directory or an S3 bucket (`path`: a directory, or
//!   `s3://bucket/prefix`), `format` `jsonl` (default), `csv` or `parquet`
//!   (`weir_connectors::file_sink`);
//! - `blackhole`: rows are counted and dropped (for benchmarks).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use weir_connectors::file_sink::{Destination, FileFormat, FileSink};
use weir_runtime::{Job, JobStatus, SinkConnector, SinkOutput};
use weir_state::location::{StateLocation, s3_store};

use crate::catalog::SinkDef;
use crate::error::{Result, WeirError, sqlstate};

/// A sink.
#[derive(Debug)]
pub struct Sink {
    pub def: SinkDef,
    pub output: Arc<SinkOutput>,
    /// Names of the relations the query reads.
    pub depends_on: Vec<String>,
    job: Mutex<Option<Job>>,
    /// Restored from a checkpoint taken after its job finished (its inputs
    /// ended) and its output was committed: no job runs.
    finished: std::sync::atomic::AtomicBool,
}

impl Sink {
    pub fn new(def: SinkDef, output: Arc<SinkOutput>, depends_on: Vec<String>) -> Self {
        Sink {
            def,
            output,
            depends_on,
            job: Mutex::new(None),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn mark_finished(&self) {
        self.finished
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn set_job(&self, job: Job) {
        *self.lock_job() = Some(job);
    }

    /// Stops the job (the sink was dropped). Files already visible stay;
    /// rows staged since the last checkpoint are dropped.
    pub fn stop(&self) {
        self.lock_job().take();
    }

    fn lock_job(&self) -> std::sync::MutexGuard<'_, Option<Job>> {
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> JobStatus {
        match &*self.lock_job() {
            Some(job) => job.status(),
            None if self.finished.load(std::sync::atomic::Ordering::Acquire) => JobStatus::Finished,
            None => JobStatus::Failed("not started".into()),
        }
    }

    /// Runs `f` over the sink's job, if it has one.
    pub fn with_job<T>(&self, f: impl FnOnce(&Job) -> T) -> Option<T> {
        self.lock_job().as_ref().map(f)
    }

    /// The value of option `key`.
    pub fn option(&self, key: &str) -> Option<&str> {
        option(&self.def.options, key)
    }
}

fn option<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn invalid(message: String) -> WeirError {
    WeirError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

/// The connector a sink's options ask for, checked; with `check`, its
/// destination is checked to answer (at `CREATE SINK`). Files for an object
/// store are staged under `data_dir`.
pub(crate) async fn connector(
    def: &SinkDef,
    data_dir: &Path,
    check: bool,
) -> Result<Box<dyn SinkConnector>> {
    let options = &def.options;
    let allowed: &[&str] = match option(options, "connector") {
        Some("file") => &["connector", "path", "format"],
        Some("blackhole") => &["connector"],
        Some(other) => {
            return Err(invalid(format!(
                "unknown sink connector \"{other}\" (known: file, blackhole)"
            )));
        }
        None => {
            return Err(invalid(
                "a sink needs WITH (connector = 'file' | 'blackhole')".into(),
            ));
        }
    };
    if let Some((key, _)) = options.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown option \"{key}\" for this sink connector (known: {})",
            allowed.join(", ")
        )));
    }
    if option(options, "connector") == Some("blackhole") {
        return Ok(Box::new(Blackhole));
    }
    let path = option(options, "path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("a file sink needs WITH (path = '/some/directory')".into()))?;
    let format = match option(options, "format") {
        None => FileFormat::Jsonl,
        Some(text) => FileFormat::parse(text).ok_or_else(|| {
            invalid(format!(
                "unknown file format \"{text}\" (known: jsonl, csv, parquet)"
            ))
        })?,
    };
    // Staged files under the sink's OID: sinks of one name in two
    // databases do not share them.
    let staging = format!("{}-{}", def.name, def.oid);
    let io = |what: &str, e: String| {
        WeirError::new(
            sqlstate::IO_ERROR,
            format!("cannot use the sink's {what}: {e}"),
        )
    };
    let sink = if path.starts_with("s3://") {
        let Ok(StateLocation::S3 { bucket, prefix }) = path.parse::<StateLocation>() else {
            return Err(invalid(format!(
                "\"{path}\" is not an S3 URL: expected s3://bucket/prefix"
            )));
        };
        let store = s3_store(&bucket, &prefix).map_err(|e| io("bucket", e.to_string()))?;
        let destination = Destination::Store {
            store,
            url: path.trim_end_matches('/').to_string(),
        };
        let staging = data_dir.join("sink-staging").join(staging);
        FileSink::new(destination, staging, &def.name, format)
            .map_err(|e| io("staging directory", e))?
    } else {
        FileSink::in_directory(&PathBuf::from(path), &def.name, &staging, format)
            .map_err(|e| io("directory", e))?
    };
    if check {
        sink.check_destination()
            .await
            .map_err(|e| io("destination", e))?;
    }
    Ok(Box::new(Files(sink)))
}

/// `connector = 'file'`.
#[derive(Debug)]
struct Files(FileSink);

#[async_trait::async_trait]
impl SinkConnector for Files {
    fn write(&self, batch: &RecordBatch) -> std::result::Result<(), String> {
        self.0.write(batch)
    }

    fn stage(&self, epoch: u64) -> std::result::Result<Vec<String>, String> {
        self.0.stage(epoch)
    }

    async fn commit(&self, staged: &[String]) -> std::result::Result<(), String> {
        self.0.commit(staged).await
    }

    async fn recover(&self, committed: &[String]) -> std::result::Result<(), String> {
        self.0.recover(committed).await
    }

    fn remove(&self) -> std::result::Result<(), String> {
        self.0.remove_staging()
    }
}

/// `connector = 'blackhole'`: rows are counted (by the sink) and dropped.
#[derive(Debug)]
struct Blackhole;

#[async_trait::async_trait]
impl SinkConnector for Blackhole {
    fn write(&self, _batch: &RecordBatch) -> std::result::Result<(), String> {
        Ok(())
    }

    fn stage(&self, _epoch: u64) -> std::result::Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn commit(&self, _staged: &[String]) -> std::result::Result<(), String> {
        Ok(())
    }

    async fn recover(&self, _committed: &[String]) -> std::result::Result<(), String> {
        Ok(())
    }

    fn remove(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}
