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
use crate::message::{Chunk, Message};

/// The output of a materialized view's job.
#[derive(Debug)]
pub struct ViewSink {
    data: Arc<ViewData>,
    feed: Arc<Feed>,
    /// The last watermark per column, for jobs that start reading the view.
    watermarks: Mutex<std::collections::BTreeMap<usize, Message>>,
    epoch: watch::Sender<u64>,
}

impl ViewSink {
    pub fn new(data: Arc<ViewData>) -> Arc<ViewSink> {
        let feed = Feed::new(data.schema().clone());
        Arc::new(ViewSink {
            data,
            feed,
            watermarks: Mutex::new(std::collections::BTreeMap::new()),
            epoch: watch::Sender::new(0),
        })
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

    /// A subscription to the view's changes that starts with its rows.
    pub async fn subscribe(
        &self,
        sender: mpsc::Sender<Message>,
    ) -> Result<(), arrow::error::ArrowError> {
        let watermarks = self.watermarks.lock().await;
        let backfill = self
            .data
            .snapshot()?
            .iter()
            .map(|batch| Message::Chunk(Chunk::inserts(batch.clone())))
            .chain(watermarks.values().cloned())
            .collect();
        self.feed.subscribe_with(sender, backfill).await;
        Ok(())
    }
}
