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

use crate::checkpoint::StatePiece;
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

/// A view's content at a checkpoint barrier: all of its rows, or the
/// changes since the previous checkpoint.
#[derive(Debug, Clone)]
pub struct ViewCheckpoint {
    pub epoch: u64,
    pub rows: StatePiece,
    pub watermarks: Vec<Watermark>,
}

/// Below this many rows, a view's changes are kept until they pass this.
const MIN_CHANGES: usize = 64;

/// A checkpoint's piece of a changelog's state: the changes `taken` from its
/// feed as change rows when there are some and `full` is not asked for,
/// otherwise the whole `content`.
pub fn changelog_piece(
    taken: Option<Vec<Chunk>>,
    full: bool,
    content: impl FnOnce() -> Result<Arc<[RecordBatch]>, arrow::error::ArrowError>,
) -> Result<StatePiece, arrow::error::ArrowError> {
    match taken {
        Some(chunks) if !full => Ok(StatePiece::Changes(
            chunks
                .iter()
                .map(|c| weir_state::delta::with_ops(&c.batch, c.ops.as_ref()))
                .collect::<Result<_, _>>()?,
        )),
        _ => Ok(StatePiece::Full(content()?.to_vec())),
    }
}

/// How many changes a changelog keeps for the next checkpoint, for a state
/// of `rows` rows: past as many as the state has, a full copy is cheaper.
pub fn changes_limit(rows: usize) -> usize {
    rows.max(MIN_CHANGES)
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

    /// Ends the view's changelog: its job had finished when the checkpoint
    /// it is restored from was taken, so nothing follows its rows (jobs
    /// reading it get them, then see their input end).
    pub async fn end(&self) {
        self.feed.end().await;
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

    /// The changes since the last checkpoint barrier (see
    /// [`Feed::take_changes`]), for a view whose job has finished: no
    /// barrier reaches its sink any more.
    pub fn take_changes(&self) -> Option<Vec<Chunk>> {
        self.feed.take_changes(changes_limit(self.data.row_count()))
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
                let taken = self.feed.take_changes(changes_limit(self.data.row_count()));
                let checkpoint = ViewCheckpoint {
                    epoch: b.epoch,
                    rows: changelog_piece(taken, b.full, || self.data.snapshot())?,
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
            // Passed on: the jobs reading the view fail too.
            Message::Barrier(_) | Message::Fail(_) => {}
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
