//! Runs one operator as a tokio task: reads its inputs, aligns barriers,
//! combines watermarks, and sends what the operator produces downstream.
//!
//! - A barrier is handed to the operator once it arrived on every input; an
//!   input that delivered it is not read again until then, so the operator
//!   sees exactly the messages sent before the barrier on every input.
//! - A watermark for a column is handed to the operator as the minimum over
//!   the inputs, once every input has sent one, and only when it advances.
//! - A watermark is combined on the column the operator maps it to
//!   ([`Operator::watermark_column`]): the same column, but for a join,
//!   whose two sides' event-time keys are one.
//! - When every input has ended, the operator [finishes](Operator::finish)
//!   and the outputs are closed.
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

use crate::checkpoint::StateReport;
use crate::exchange::Exchange;
use crate::feed::Feed;
use crate::message::{Barrier, Message, Watermark};
use crate::operator::{Operator, Result};
use crate::sink::SinkOutput;
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
    /// A sink: rows leave Weir through a connector.
    Sink(Arc<SinkOutput>),
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
            // A sink that cannot write fails its job.
            Outputs::Sink(sink) => {
                sink.deliver(message).await.map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!("sink: {e}"))
                })?;
                Ok(true)
            }
        }
    }
}

impl Outputs {
    /// Every input has ended: so does this output's changelog, for the jobs
    /// reading it (channels to downstream nodes close when dropped).
    async fn end(&self) {
        match self {
            Outputs::Exchanges(_) | Outputs::Sink(_) => {}
            Outputs::Feed(feed) => feed.end().await,
            Outputs::View(view) => view.end().await,
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
/// to its sources (some inputs may still carry them): they are dropped. At a
/// checkpoint barrier the operator's state goes to `report`.
pub(crate) async fn run(
    mut operator: Box<dyn Operator>,
    mut inputs: Vec<InputChannel>,
    mut outputs: Outputs,
    metrics: Arc<NodeMetrics>,
    start_epoch: u64,
    report: StateReport,
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
            operator.finish(&mut out)?;
            if !deliver(&mut out, &mut outputs, &metrics).await? {
                return Ok(());
            }
            outputs.end().await;
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
                // The inputs still running may now hold the least watermark.
                let columns: Vec<usize> = input_watermarks[input].drain().map(|(c, _)| c).collect();
                for column in columns {
                    advance_watermark(
                        &mut *operator,
                        &input_watermarks,
                        &ended,
                        &mut emitted,
                        column,
                        &mut out,
                    )?;
                }
            }
            Some(Message::Chunk(chunk)) => {
                metrics
                    .rows_in
                    .fetch_add(chunk.num_rows() as u64, Ordering::Relaxed);
                operator.process_chunk(inputs[input].input, chunk, &mut out)?;
            }
            Some(Message::Watermark(watermark)) => {
                if let Some(column) =
                    operator.watermark_column(inputs[input].input, watermark.column)
                {
                    input_watermarks[input].insert(column, watermark.value);
                    advance_watermark(
                        &mut *operator,
                        &input_watermarks,
                        &ended,
                        &mut emitted,
                        column,
                        &mut out,
                    )?;
                }
            }
            Some(Message::Fail(reason)) => {
                // Downstream (a view's readers, a client) learns it too.
                let _ = outputs.send(Message::Fail(reason.clone())).await;
                return Err(datafusion::error::DataFusionError::Execution(reason));
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
            if b.checkpoint {
                match operator.checkpoint(b.full) {
                    Ok(None) => {}
                    Ok(Some(state)) => report.report(b.epoch, Ok(state)),
                    Err(e) => report.report(b.epoch, Err(format!("{}: {e}", operator.name()))),
                }
            }
            out.push(Message::Barrier(b));
            holding.iter_mut().for_each(|h| *h = false);
            barrier = None;
        }
        metrics
            .state_bytes
            .store(operator.state_bytes() as u64, Ordering::Relaxed);
        if !deliver(&mut out, &mut outputs, &metrics).await? {
            // Nobody downstream any more: the job is being stopped.
            return Ok(());
        }
    }
}

/// Sends what the operator produced downstream, counting its rows and
/// noting its watermarks; `false` when nobody is downstream any more.
async fn deliver(
    out: &mut Vec<Message>,
    outputs: &mut Outputs,
    metrics: &NodeMetrics,
) -> Result<bool> {
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
            Message::Barrier(_) | Message::Fail(_) => {}
        }
        if !outputs.send(message).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Hands the operator the combined watermark of `column` if it advanced.
fn advance_watermark(
    operator: &mut dyn Operator,
    inputs: &[HashMap<usize, ScalarValue>],
    ended: &[bool],
    emitted: &mut HashMap<usize, ScalarValue>,
    column: usize,
    out: &mut Vec<Message>,
) -> Result<()> {
    if let Some(combined) = combined_watermark(inputs, ended, column)
        && emitted
            .get(&column)
            .is_none_or(|previous| combined > *previous)
    {
        emitted.insert(column, combined.clone());
        operator.process_watermark(
            Watermark {
                column,
                value: combined,
            },
            out,
        )?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Chunk;

    /// Records the watermarks it is handed.
    struct Recorder(Arc<Mutex<Vec<ScalarValue>>>);

    impl Operator for Recorder {
        fn name(&self) -> &'static str {
            "Recorder"
        }

        fn process_chunk(&mut self, _: usize, _: Chunk, _: &mut Vec<Message>) -> Result<()> {
            Ok(())
        }

        fn process_watermark(&mut self, w: Watermark, _: &mut Vec<Message>) -> Result<()> {
            self.0.lock().expect("lock").push(w.value);
            Ok(())
        }
    }

    fn watermark(v: i64) -> Message {
        Message::Watermark(Watermark {
            column: 0,
            value: ScalarValue::Int64(Some(v)),
        })
    }

    #[tokio::test]
    async fn the_least_watermark_of_the_running_inputs_is_handed_on() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, ra) = mpsc::channel(4);
        let (b, rb) = mpsc::channel(4);
        let inputs = vec![
            InputChannel {
                input: 0,
                receiver: ra,
            },
            InputChannel {
                input: 1,
                receiver: rb,
            },
        ];
        let task = tokio::spawn(run(
            Box::new(Recorder(seen.clone())),
            inputs,
            Outputs::Exchanges(Vec::new()),
            Arc::new(NodeMetrics::default()),
            0,
            StateReport {
                states: Default::default(),
                node: 0,
                subtask: 0,
            },
        ));
        a.send(watermark(10)).await.expect("send");
        b.send(watermark(5)).await.expect("send");
        b.send(watermark(7)).await.expect("send");
        // b ends: a's watermark is the least of the inputs still running.
        drop(b);
        // b's end alone lets the watermark advance to a's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.lock().expect("lock").len() < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        a.send(watermark(12)).await.expect("send");
        drop(a);
        task.await.expect("join").expect("run");
        let values: Vec<i64> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|v| match v {
                ScalarValue::Int64(Some(v)) => *v,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(values, vec![5, 7, 10, 12]);
    }
}
