//! Runs one operator as a tokio task: reads its inputs, aligns barriers,
//! combines watermarks, and sends what the operator produces downstream.
//!
//! - A barrier is handed to the operator once it arrived on every input; an
//!   input that delivered it is not read again until then, so the operator
//!   sees exactly the messages sent before the barrier on every input.
//! - A watermark for a column is handed to the operator as the minimum over
//!   the inputs, once every input has sent one, and only when it advances.
//! - When every input has ended, the outputs are closed.
//!
//! The channels of all inputs are treated alike: a node after a parallel one
//! reads one channel per upstream subtask, and aligns barriers and combines
//! watermarks over all of them.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use datafusion::common::ScalarValue;
use tokio::sync::mpsc;

use crate::exchange::Exchange;
use crate::feed::Feed;
use crate::message::{Barrier, Message, Watermark};
use crate::operator::{Operator, Result};
use crate::view_sink::ViewSink;

/// Where a node sends what it produces.
#[derive(Debug)]
pub enum Outputs {
    /// Downstream nodes of the same job (each gets every message, spread
    /// over its subtasks by its exchange).
    Exchanges(Vec<Exchange>),
    /// A changelog other jobs subscribe to.
    Feed(Arc<Feed>),
    /// A materialized view: its rows, and its changelog.
    View(Arc<ViewSink>),
}

impl Outputs {
    /// Sends a message on; false when nobody is downstream any more.
    async fn send(&mut self, message: Message) -> Result<bool> {
        match self {
            Outputs::Exchanges(exchanges) => {
                let mut alive = exchanges.is_empty();
                for exchange in exchanges {
                    alive |= exchange.send(message.clone()).await?;
                }
                Ok(alive)
            }
            Outputs::Feed(feed) => {
                feed.publish(message).await;
                Ok(true)
            }
            // A view that cannot apply a change fails its job.
            Outputs::View(view) => {
                view.deliver(message).await?;
                Ok(true)
            }
        }
    }
}

/// What a running node reports (the jobs system table shows it).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub state_bytes: AtomicU64,
    /// The last watermark the node passed on, per column.
    pub watermarks: Mutex<HashMap<usize, ScalarValue>>,
}

impl NodeMetrics {
    pub fn watermark(&self) -> Option<ScalarValue> {
        let watermarks = self.watermarks.lock().unwrap_or_else(|p| p.into_inner());
        watermarks
            .iter()
            .min_by_key(|(column, _)| **column)
            .map(|(_, v)| v.clone())
    }
}

/// One channel a node reads, and which of the operator's inputs it carries
/// (a parallel upstream node sends one input over several channels).
pub struct InputChannel {
    pub input: usize,
    pub receiver: mpsc::Receiver<Message>,
}

/// Runs `operator` until its inputs end, its outputs go away, or it fails.
/// Barriers of epochs up to `start_epoch` are from before the job subscribed
/// to its sources (some inputs may still carry them): they are dropped.
pub async fn run(
    mut operator: Box<dyn Operator>,
    mut inputs: Vec<InputChannel>,
    mut outputs: Outputs,
    metrics: Arc<NodeMetrics>,
    start_epoch: u64,
) -> Result<()> {
    let n = inputs.len();
    let mut ended = vec![false; n];
    let mut holding = vec![false; n];
    let mut barrier: Option<Barrier> = None;
    let mut input_watermarks: Vec<HashMap<usize, ScalarValue>> = vec![HashMap::new(); n];
    let mut emitted: HashMap<usize, ScalarValue> = HashMap::new();
    let mut next_input = 0;
    let mut out = Vec::new();
    loop {
        if ended.iter().all(|e| *e) {
            return Ok(());
        }
        // The next message from an input that is neither ended nor holding
        // at a barrier, taking inputs in turn.
        let (input, message) = poll_fn(|cx| {
            for k in 0..n {
                let i = (next_input + k) % n;
                if ended[i] || holding[i] {
                    continue;
                }
                if let Poll::Ready(message) = inputs[i].receiver.poll_recv(cx) {
                    return Poll::Ready((i, message));
                }
            }
            Poll::Pending
        })
        .await;
        next_input = (input + 1) % n.max(1);
        match message {
            None => {
                ended[input] = true;
                input_watermarks[input].clear();
            }
            Some(Message::Chunk(chunk)) => {
                metrics
                    .rows_in
                    .fetch_add(chunk.num_rows() as u64, Ordering::Relaxed);
                operator.process_chunk(inputs[input].input, chunk, &mut out)?;
            }
            Some(Message::Watermark(watermark)) => {
                input_watermarks[input].insert(watermark.column, watermark.value.clone());
                if let Some(combined) =
                    combined_watermark(&input_watermarks, &ended, watermark.column)
                    && emitted
                        .get(&watermark.column)
                        .is_none_or(|previous| combined > *previous)
                {
                    emitted.insert(watermark.column, combined.clone());
                    operator.process_watermark(
                        Watermark {
                            column: watermark.column,
                            value: combined,
                        },
                        &mut out,
                    )?;
                }
            }
            Some(Message::Barrier(b)) if b.epoch <= start_epoch => {}
            Some(Message::Barrier(b)) => {
                holding[input] = true;
                barrier = Some(b);
            }
        }
        // Every live input delivered the barrier: the operator has seen all
        // that came before it.
        if let Some(b) = barrier
            && (0..n).all(|i| ended[i] || holding[i])
        {
            operator.process_barrier(b, &mut out)?;
            out.push(Message::Barrier(b));
            holding.iter_mut().for_each(|h| *h = false);
            barrier = None;
        }
        metrics
            .state_bytes
            .store(operator.state_bytes() as u64, Ordering::Relaxed);
        for message in out.drain(..) {
            match &message {
                Message::Chunk(chunk) => {
                    metrics
                        .rows_out
                        .fetch_add(chunk.num_rows() as u64, Ordering::Relaxed);
                }
                Message::Watermark(w) => {
                    metrics
                        .watermarks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(w.column, w.value.clone());
                }
                Message::Barrier(_) => {}
            }
            if !outputs.send(message).await? {
                // Nobody downstream any more: the job is being stopped.
                return Ok(());
            }
        }
    }
}

/// The watermark of a column over all inputs still running: their minimum,
/// once each of them has one.
fn combined_watermark(
    inputs: &[HashMap<usize, ScalarValue>],
    ended: &[bool],
    column: usize,
) -> Option<ScalarValue> {
    let mut min: Option<&ScalarValue> = None;
    for (i, watermarks) in inputs.iter().enumerate() {
        if ended[i] {
            continue;
        }
        let value = watermarks.get(&column)?;
        if min.is_none_or(|m| value < m) {
            min = Some(value);
        }
    }
    min.cloned()
}
