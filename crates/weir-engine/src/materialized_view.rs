//! A materialized view: a query kept up to date by a streaming job; queries
//! read its current rows.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use weir_runtime::{Job, JobStatus, ViewSink};

use crate::catalog::MaterializedViewDef;

/// A materialized view.
#[derive(Debug)]
pub struct MaterializedView {
    pub def: MaterializedViewDef,
    pub sink: Arc<ViewSink>,
    schema: SchemaRef,
    /// Names of the relations the query reads.
    pub depends_on: Vec<String>,
    /// Output columns that carry watermarks, for views reading this one.
    pub watermark_columns: Vec<usize>,
    /// The view's changelog only inserts (`EMIT ON WINDOW CLOSE`).
    pub append_only: bool,
    job: Mutex<Option<Job>>,
    /// Restored from a checkpoint taken after its job finished: no job runs.
    finished: std::sync::atomic::AtomicBool,
}

impl MaterializedView {
    pub fn new(
        def: MaterializedViewDef,
        sink: Arc<ViewSink>,
        depends_on: Vec<String>,
        watermark_columns: Vec<usize>,
        append_only: bool,
    ) -> Self {
        MaterializedView {
            schema: sink.data().schema().clone(),
            def,
            sink,
            depends_on,
            watermark_columns,
            append_only,
            job: Mutex::new(None),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn set_job(&self, job: Job) {
        *self.lock_job() = Some(job);
    }

    /// The view's job had finished when the checkpoint it was restored from
    /// was taken: its rows are final and no job runs.
    pub fn mark_finished(&self) {
        self.finished
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Stops the job (the view was dropped).
    pub fn stop(&self) {
        self.lock_job().take();
    }

    fn lock_job(&self) -> std::sync::MutexGuard<'_, Option<Job>> {
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the view's job runs, and if not, why.
    pub fn status(&self) -> JobStatus {
        match &*self.lock_job() {
            Some(job) => job.status(),
            None if self.finished.load(std::sync::atomic::Ordering::Acquire) => JobStatus::Finished,
            None => JobStatus::Failed("not started".into()),
        }
    }

    /// Runs `f` over the view's job, if it has one.
    pub fn with_job<T>(&self, f: impl FnOnce(&Job) -> T) -> Option<T> {
        self.lock_job().as_ref().map(f)
    }
}

#[async_trait]
impl TableProvider for MaterializedView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let batches = self.sink.data().snapshot()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches.to_vec()],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
