//! Where a materialized view's job delivers its output: the view's rows, and
//! the changelog that jobs reading the view subscribe to.
//!
//! Applying a change to the rows and publishing it happen under one lock, and
//! so do reading the rows and subscribing: a job that starts reading the view
//! gets its rows (and its current watermarks) once, then every later change,
//! never one twice.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, watch};
use weir_state::ViewData;

use crate::feed::Feed;
use crate::message::{Chunk, Message, Watermark};
use arrow::array::RecordBatch;

/// The output of a materialized view's job.
#[derive(Debug)]
pub struct ViewSink {
    data: Arc<ViewData>,
    feed: Arc<Feed>,
    /// The last watermark per column, for jobs that start reading the view.
    watermarks: Mutex<std::collections::BTreeMap<usize, Message>>,
    epoch: watch::Sender<u64>,
    /// The rows and watermarks at the last checkpoint barrier.
    checkpoint: std::sync::Mutex<Option<ViewCheckpoint>>,
}

/// A view's content at a checkpoint barrier.
#[derive(Debug, Clone)]
pub struct ViewCheckpoint {
    pub epoch: u64,
    pub rows: Arc<[RecordBatch]>,
    pub watermarks: Vec<Watermark>,
}

impl ViewSink {
    pub fn new(data: Arc<ViewData>) -> Arc<ViewSink> {
        let feed = Feed::new(data.schema().clone());
        Arc::new(ViewSink {
            data,
            feed,
            watermarks: Mutex::new(std::collections::BTreeMap::new()),
            epoch: watch::Sender::new(0),
            checkpoint: std::sync::Mutex::new(None),
        })
    }

    /// Takes back the rows and watermarks of a checkpoint, before the job
    /// starts.
    pub async fn restore(
        &self,
        rows: &[RecordBatch],
        watermarks: Vec<Watermark>,
    ) -> Result<(), arrow::error::ArrowError> {
        for batch in rows {
            self.data.apply(batch, None)?;
        }
        let mut saved = self.watermarks.lock().await;
        for watermark in watermarks {
            saved.insert(watermark.column, Message::Watermark(watermark));
        }
        Ok(())
    }

    /// The content at the checkpoint barrier of `epoch`, once the view has
    /// applied it.
    pub fn checkpointed(&self, epoch: u64) -> Option<ViewCheckpoint> {
        self.checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|c| c.epoch == epoch)
    }

    pub fn data(&self) -> &Arc<ViewData> {
        &self.data
    }

    /// The epoch of the last barrier the view has applied: every change
    /// made before that barrier was injected is in its rows.
    pub fn epochs(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// Applies and publishes one message of the job's output.
    pub async fn deliver(&self, message: Message) -> Result<(), arrow::error::ArrowError> {
        let mut watermarks = self.watermarks.lock().await;
        match &message {
            Message::Chunk(chunk) => self.data.apply(&chunk.batch, chunk.ops.as_ref())?,
            Message::Watermark(w) => {
                watermarks.insert(w.column, message.clone());
            }
            Message::Barrier(b) if b.checkpoint => {
                let checkpoint = ViewCheckpoint {
                    epoch: b.epoch,
                    rows: self.data.snapshot()?,
                    watermarks: watermarks
                        .values()
                        .filter_map(|m| match m {
                            Message::Watermark(w) => Some(w.clone()),
                            _ => None,
                        })
                        .collect(),
                };
                *self.checkpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(checkpoint);
            }
            Message::Barrier(_) => {}
        }
        let barrier = match &message {
            Message::Barrier(b) => Some(b.epoch),
            _ => None,
        };
        self.feed.publish(message).await;
        if let Some(epoch) = barrier {
            self.epoch.send_replace(epoch);
        }
        Ok(())
    }

    /// A subscription to the view's changes that starts with its rows (with
    /// `rows`; a job restored from a checkpoint has them in its state) and
    /// its watermarks.
    pub async fn subscribe(
        &self,
        sender: mpsc::Sender<Message>,
        rows: bool,
    ) -> Result<(), arrow::error::ArrowError> {
        let watermarks = self.watermarks.lock().await;
        let content = if rows {
            self.data.snapshot()?
        } else {
            Arc::from(Vec::new())
        };
        let backfill = content
            .iter()
            .map(|batch| Message::Chunk(Chunk::inserts(batch.clone())))
            .chain(watermarks.values().cloned())
            .collect();
        self.feed.subscribe_with(sender, backfill).await;
        Ok(())
    }
}
