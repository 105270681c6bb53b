//! A sink: a query's results written out of Weir through a connector, by a
//! streaming job, exactly once across crashes (see `weir_runtime::sink`).
//!
//! Connectors (`WITH (connector = ...)`):
//! - `file`: files in a directory (`path`), `format` `jsonl` (default),
//!   `csv` or `parquet` (`weir_connectors::file_sink`);
//! - `blackhole`: rows are counted and dropped (for benchmarks).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use weir_connectors::file_sink::{FileFormat, FileSink};
use weir_runtime::{Job, JobStatus, SinkConnector, SinkOutput};

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

/// The connector a sink's options ask for, checked.
pub(crate) fn connector(
    def: &SinkDef,
    options: &[(String, String)],
) -> Result<Box<dyn SinkConnector>> {
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
    let sink = FileSink::new(&PathBuf::from(path), &def.name, &staging, format).map_err(|e| {
        WeirError::new(
            sqlstate::IO_ERROR,
            format!("cannot use the sink's directory: {e}"),
        )
    })?;
    Ok(Box::new(Files(sink)))
}

/// `connector = 'file'`.
#[derive(Debug)]
struct Files(FileSink);

impl SinkConnector for Files {
    fn write(&self, batch: &RecordBatch) -> std::result::Result<(), String> {
        self.0.write(batch)
    }

    fn stage(&self, epoch: u64) -> std::result::Result<Vec<String>, String> {
        self.0.stage(epoch)
    }

    fn commit(&self, staged: &[String]) -> std::result::Result<(), String> {
        self.0.commit(staged)
    }

    fn recover(&self, committed: &[String]) -> std::result::Result<(), String> {
        self.0.recover(committed)
    }

    fn remove(&self) -> std::result::Result<(), String> {
        self.0.remove_staging()
    }
}

/// `connector = 'blackhole'`: rows are counted (by the sink) and dropped.
#[derive(Debug)]
struct Blackhole;

impl SinkConnector for Blackhole {
    fn write(&self, _batch: &RecordBatch) -> std::result::Result<(), String> {
        Ok(())
    }

    fn stage(&self, _epoch: u64) -> std::result::Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    fn commit(&self, _staged: &[String]) -> std::result::Result<(), String> {
        Ok(())
    }

    fn recover(&self, _committed: &[String]) -> std::result::Result<(), String> {
        Ok(())
    }

    fn remove(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}
