//! Where a sink's job delivers: rows leave Weir through a sink connector,
//! exactly once, by two-phase commit with the checkpoints.
//!
//! Between two checkpoint barriers a connector writes what it receives to
//! staged output, durable but not visible ([`SinkConnector::write`]). At a
//! checkpoint barrier it closes that output ([`SinkConnector::stage`]) and
//! the job's [`SinkOutput`] keeps what was staged until the engine has
//! committed the checkpoint; the engine then makes it visible
//! ([`SinkConnector::commit`]). After a crash, the restored checkpoint's
//! staged output is committed (again: committing is idempotent) and every
//! other staged output is deleted: the rows in it are produced again by the
//! restored job, so none is lost and none is written twice.

use std::sync::Mutex;

use arrow::array::RecordBatch;
use tokio::sync::watch;

use crate::message::Message;

/// A connector that writes a sink's rows out (implemented in
/// `weir-connectors`).
#[async_trait::async_trait]
pub trait SinkConnector: Send + Sync + std::fmt::Debug {
    /// Writes rows to the output being staged.
    fn write(&self, batch: &RecordBatch) -> Result<(), String>;

    /// Closes the output staged since the last call, durably, and names it
    /// (nothing when no row came).
    fn stage(&self, epoch: u64) -> Result<Vec<String>, String>;

    /// Makes staged output visible. Output already visible is no error.
    async fn commit(&self, staged: &[String]) -> Result<(), String>;

    /// At start: commits `committed` (staged by the checkpoint restored, in
    /// case the crash came before its commit) and deletes every other
    /// staged output.
    async fn recover(&self, committed: &[String]) -> Result<(), String>;

    /// The sink is dropped: deletes what is staged (visible output stays).
    fn remove(&self) -> Result<(), String>;
}

/// The output of a sink's job.
#[derive(Debug)]
pub struct SinkOutput {
    connector: Box<dyn SinkConnector>,
    /// Adds an `op` column (`insert` / `delete`) to updating results.
    with_ops: bool,
    epoch: watch::Sender<u64>,
    /// What each checkpoint barrier staged, until the checkpoint commits.
    staged: Mutex<Vec<(u64, Vec<String>)>>,
    rows: std::sync::atomic::AtomicU64,
}

impl SinkOutput {
    pub fn new(connector: Box<dyn SinkConnector>, with_ops: bool) -> Self {
        SinkOutput {
            connector,
            with_ops,
            epoch: watch::Sender::new(0),
            staged: Mutex::new(Vec::new()),
            rows: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn connector(&self) -> &dyn SinkConnector {
        self.connector.as_ref()
    }

    /// Rows written since the start.
    pub fn rows(&self) -> u64 {
        self.rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The epoch of the last barrier the sink has applied.
    pub fn epochs(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// What was staged at checkpoint barriers up to `epoch` and not yet
    /// committed (a failed checkpoint's output goes with the next one).
    pub fn staged_until(&self, epoch: u64) -> Vec<String> {
        let staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        staged
            .iter()
            .filter(|(e, _)| *e <= epoch)
            .flat_map(|(_, files)| files.iter().cloned())
            .collect()
    }

    /// Stages what was written after the last barrier, as checkpoint
    /// `epoch`'s: for a sink whose job finished (its inputs ended), which
    /// no barrier reaches any more.
    pub fn stage_final(&self, epoch: u64) -> Result<(), String> {
        let files = self.connector.stage(epoch)?;
        if !files.is_empty() {
            self.staged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((epoch, files));
        }
        Ok(())
    }

    /// Commits what was staged up to `epoch`, once its checkpoint committed.
    pub async fn commit_until(&self, epoch: u64) -> Result<(), String> {
        let files = self.staged_until(epoch);
        self.connector.commit(&files).await?;
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(e, _)| *e > epoch);
        Ok(())
    }

    /// Applies one message of the job's output.
    pub async fn deliver(&self, message: Message) -> Result<(), String> {
        match message {
            Message::Chunk(chunk) => {
                let batch = if self.with_ops {
                    chunk.with_op_column().map_err(|e| e.to_string())?
                } else {
                    chunk.batch
                };
                self.rows.fetch_add(
                    batch.num_rows() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                self.connector.write(&batch)
            }
            Message::Watermark(_) => Ok(()),
            Message::Fail(reason) => Err(reason),
            Message::Barrier(b) => {
                if b.checkpoint {
                    let files = self.connector.stage(b.epoch)?;
                    self.staged
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((b.epoch, files));
                }
                self.epoch.send_replace(b.epoch);
                Ok(())
            }
        }
    }
}
