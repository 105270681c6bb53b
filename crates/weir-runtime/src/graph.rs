//! A streaming job: a graph of operators, each run as a tokio task, connected
//! by bounded channels.
//!
//! A keyed node may run as several subtasks (one task each); the
//! [exchange](crate::exchange) in front of it sends each row to the subtask
//! that owns its key.
//!
//! A job is built node by node ([`JobGraph`]), each node naming its inputs:
//! earlier nodes, or subscriptions to changelogs (the job's sources). The last
//! node's output goes to the job's sink (a materialized view's changelog).
//! Dropping the [`Job`] stops every task and frees their state. A job whose
//! sources all end (bounded sources) finishes once its last node has passed
//! everything on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;
use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::checkpoint::{JobStates, OperatorState, StatePiece, StateReport};
use crate::driver::{self, InputChannel, NodeMetrics, Outputs};
use crate::exchange::{self, Exchange};
use crate::feed::CHANNEL_CAPACITY;
use crate::message::Message;
use crate::operator::{Operator, Result};

/// Where a node reads from.
pub enum Input {
    /// An earlier node of the job.
    Node(usize),
    /// A subscription to a changelog, labelled for `EXPLAIN`.
    Source(String, mpsc::Receiver<Message>),
}

struct NodeSpec {
    /// One operator per subtask.
    subtasks: Vec<Box<dyn Operator>>,
    /// With several subtasks: per input, the key (over that input's rows)
    /// that chooses each row's subtask (a join hashes each side by its own
    /// join key).
    keys: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    inputs: Vec<Input>,
}

/// A job being built.
#[derive(Default)]
pub struct JobGraph {
    nodes: Vec<NodeSpec>,
}

/// A node of a running job, as the jobs system table shows it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: usize,
    pub name: &'static str,
    pub describe: String,
    pub inputs: Vec<String>,
    /// What each subtask reports.
    pub subtasks: Vec<Arc<NodeMetrics>>,
}

impl NodeInfo {
    pub fn parallelism(&self) -> usize {
        self.subtasks.len()
    }

    pub fn rows_in(&self) -> u64 {
        self.sum(|m| m.rows_in.load(Ordering::Relaxed))
    }

    pub fn rows_out(&self) -> u64 {
        self.sum(|m| m.rows_out.load(Ordering::Relaxed))
    }

    pub fn state_bytes(&self) -> u64 {
        self.sum(|m| m.state_bytes.load(Ordering::Relaxed))
    }

    /// The watermark the node has passed on: the least of its subtasks'
    /// (what the next node sees), once each has passed one.
    pub fn watermark(&self) -> Option<ScalarValue> {
        let mut least: Option<ScalarValue> = None;
        for subtask in &self.subtasks {
            let value = subtask.watermark()?;
            if least.as_ref().is_none_or(|l| value < *l) {
                least = Some(value);
            }
        }
        least
    }

    fn sum(&self, f: impl Fn(&NodeMetrics) -> u64) -> u64 {
        self.subtasks.iter().map(|m| f(m)).sum()
    }
}

/// Whether a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    /// Its inputs ended and it passed everything on.
    Finished,
    /// An operator failed; the job stopped.
    Failed(String),
}

/// A running job.
#[derive(Debug)]
pub struct Job {
    pub nodes: Vec<NodeInfo>,
    tasks: Vec<JoinHandle<()>>,
    status: Arc<watch::Sender<JobStatus>>,
    states: Arc<JobStates>,
}

impl JobGraph {
    /// Adds a node of one subtask; returns its id.
    pub fn add(&mut self, operator: Box<dyn Operator>, inputs: Vec<Input>) -> usize {
        self.add_parallel(vec![operator], Vec::new(), inputs)
    }

    /// Adds a node run as one subtask per operator of `subtasks`, each
    /// receiving the rows whose key hashes to it (`keys[i]` for the rows
    /// of input `i`); returns its id.
    pub fn add_parallel(
        &mut self,
        subtasks: Vec<Box<dyn Operator>>,
        keys: Vec<Vec<Arc<dyn PhysicalExpr>>>,
        inputs: Vec<Input>,
    ) -> usize {
        self.nodes.push(NodeSpec {
            subtasks,
            keys,
            inputs,
        });
        self.nodes.len() - 1
    }

    /// Hands the operators the states they had at a checkpoint (before the
    /// job is spawned). The job must be planned as it was then.
    pub fn restore(&mut self, states: Vec<OperatorState>) -> Result<()> {
        for OperatorState {
            node,
            subtask,
            state,
        } in states
        {
            let operator = self
                .nodes
                .get_mut(node)
                .and_then(|n| n.subtasks.get_mut(subtask))
                .ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "the checkpoint holds state of node {node}, subtask {subtask}, \
                         which the job does not have"
                    ))
                })?;
            match state {
                StatePiece::Full(batches) => {
                    for batch in batches {
                        operator.restore(batch)?;
                    }
                }
                StatePiece::Changes(_) => {
                    return Err(DataFusionError::Internal(
                        "an operator is restored from its whole state, not changes".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Starts the job. The last node, which must have one subtask, sends its
    /// output to `sink`. The job subscribed to its sources after the barrier
    /// of `start_epoch`.
    pub fn spawn(self, sink: Outputs, start_epoch: u64) -> Job {
        let count = self.nodes.len();
        let parallelism: Vec<usize> = self.nodes.iter().map(|n| n.subtasks.len()).collect();
        debug_assert!(parallelism.last().is_none_or(|p| *p == 1));
        // What each subtask of each node reads, and where it sends.
        let mut receivers: Vec<Vec<Vec<InputChannel>>> = parallelism
            .iter()
            .map(|p| (0..*p).map(|_| Vec::new()).collect())
            .collect();
        let mut exchanges: Vec<Vec<Vec<Exchange>>> = parallelism
            .iter()
            .map(|p| (0..*p).map(|_| Vec::new()).collect())
            .collect();
        let status = Arc::new(watch::Sender::new(JobStatus::Running));
        let states = Arc::new(JobStates::default());
        let mut tasks = Vec::new();
        let mut specs = Vec::with_capacity(count);
        let mut labels = Vec::with_capacity(count);
        for (id, node) in self.nodes.into_iter().enumerate() {
            labels.push(input_labels(&node.inputs));
            let subtasks = parallelism[id];
            // One exchange per upstream subtask, with a channel to each of
            // this node's subtasks.
            let keys = node.keys;
            let connect = |channels: &mut Vec<Vec<InputChannel>>, input: usize| {
                let mut senders = Vec::with_capacity(subtasks);
                for channel in channels.iter_mut() {
                    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
                    senders.push(sender);
                    channel.push(InputChannel { input, receiver });
                }
                if subtasks == 1 {
                    Exchange::forward(senders.remove(0))
                } else {
                    Exchange::hash(senders, keys.get(input).cloned().unwrap_or_default())
                }
            };
            for (input, source) in node.inputs.into_iter().enumerate() {
                match source {
                    Input::Node(from) => {
                        for upstream in exchanges[from].iter_mut() {
                            upstream.push(connect(&mut receivers[id], input));
                        }
                    }
                    Input::Source(_, receiver) if subtasks == 1 => {
                        receivers[id][0].push(InputChannel { input, receiver });
                    }
                    Input::Source(_, receiver) => {
                        let e = connect(&mut receivers[id], input);
                        let status = status.clone();
                        tasks.push(tokio::spawn(async move {
                            if let Err(e) = exchange::dispatch(receiver, e).await {
                                fail(&status, "Exchange", e.to_string());
                            }
                        }));
                    }
                }
            }
            specs.push(node.subtasks);
        }
        let mut nodes = Vec::with_capacity(count);
        let mut sink = Some(sink);
        for (id, ((subtasks, inputs), outputs)) in
            specs.into_iter().zip(receivers).zip(exchanges).enumerate()
        {
            let mut info = NodeInfo {
                id,
                name: subtasks.first().map_or("", |o| o.name()),
                describe: subtasks.first().map(|o| o.describe()).unwrap_or_default(),
                inputs: labels[id].clone(),
                subtasks: Vec::with_capacity(subtasks.len()),
            };
            for (subtask, ((operator, inputs), exchanges)) in
                subtasks.into_iter().zip(inputs).zip(outputs).enumerate()
            {
                let metrics = Arc::new(NodeMetrics::default());
                info.subtasks.push(metrics.clone());
                let outputs = if id + 1 == count
                    && let Some(sink) = sink.take()
                {
                    sink
                } else {
                    Outputs::Exchanges(exchanges)
                };
                let status = status.clone();
                let name = operator.name();
                let last = id + 1 == count;
                let report = StateReport {
                    states: states.clone(),
                    node: id,
                    subtask,
                };
                tasks.push(tokio::spawn(async move {
                    let run = driver::run(operator, inputs, outputs, metrics, start_epoch, report);
                    // A panic in an operator fails the job, like an error.
                    let error = match AssertUnwindSafe(run).catch_unwind().await {
                        Ok(Ok(())) => {
                            if last {
                                finish(&status);
                            }
                            return;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(panic) => format!("the operator panicked: {}", panic_message(&*panic)),
                    };
                    fail(&status, name, error);
                }));
            }
            nodes.push(info);
        }
        Job {
            nodes,
            tasks,
            status,
            states,
        }
    }
}

/// The message a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Marks the job failed (the first failure is the one reported).
fn fail(status: &watch::Sender<JobStatus>, name: &str, error: String) {
    tracing::error!(operator = name, error = %error, "a streaming operator failed");
    status.send_if_modified(|status| {
        let running = *status == JobStatus::Running;
        if running {
            *status = JobStatus::Failed(format!("{name}: {error}"));
        }
        running
    });
}

/// Marks the job finished, unless it failed.
fn finish(status: &watch::Sender<JobStatus>) {
    status.send_if_modified(|status| {
        let running = *status == JobStatus::Running;
        if running {
            *status = JobStatus::Finished;
        }
        running
    });
}

fn input_labels(inputs: &[Input]) -> Vec<String> {
    inputs
        .iter()
        .map(|input| match input {
            Input::Node(id) => format!("#{id}"),
            Input::Source(label, _) => label.clone(),
        })
        .collect()
}

impl Job {
    pub fn status(&self) -> JobStatus {
        self.status.borrow().clone()
    }

    /// Waits until the job no longer runs, and says why.
    pub async fn stopped(&self) -> JobStatus {
        let mut status = self.status.subscribe();
        match status.wait_for(|s| *s != JobStatus::Running).await {
            Ok(s) => s.clone(),
            // The sender lives as long as the job.
            Err(_) => self.status(),
        }
    }

    /// What the job's operators handed over at checkpoint barriers.
    pub fn states(&self) -> &Arc<JobStates> {
        &self.states
    }

    /// Total bytes of state of the job's operators.
    pub fn state_bytes(&self) -> u64 {
        self.nodes.iter().map(NodeInfo::state_bytes).sum()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use tokio::sync::mpsc;

    use super::*;
    use crate::exchange::Exchange;
    use crate::message::Chunk;

    /// Passes rows on, and panics at a row of value 13.
    struct Fragile;

    impl Operator for Fragile {
        fn name(&self) -> &'static str {
            "Fragile"
        }

        fn process_chunk(
            &mut self,
            _input: usize,
            chunk: Chunk,
            out: &mut Vec<Message>,
        ) -> crate::operator::Result<()> {
            let values = chunk
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64 rows");
            if values.values().contains(&13) {
                panic!("unlucky row {}", 13);
            }
            out.push(Message::Chunk(chunk));
            Ok(())
        }
    }

    fn chunk(values: Vec<i64>) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).expect("batch");
        Message::Chunk(Chunk::inserts(batch))
    }

    #[tokio::test]
    async fn a_panic_in_an_operator_fails_its_job_with_the_message() {
        let (input, source) = mpsc::channel(4);
        let (sink, mut output) = mpsc::channel(4);
        let mut graph = JobGraph::default();
        graph.add(Box::new(Fragile), vec![Input::Source("s".into(), source)]);
        let job = graph.spawn(Outputs::Exchanges(vec![Exchange::forward(sink)]), 0);
        input.send(chunk(vec![1, 2])).await.expect("send");
        assert!(matches!(output.recv().await, Some(Message::Chunk(c)) if c.num_rows() == 2));
        assert_eq!(job.status(), JobStatus::Running);
        input.send(chunk(vec![13])).await.expect("send");
        let status = tokio::time::timeout(std::time::Duration::from_secs(5), job.stopped())
            .await
            .expect("the job stops");
        assert_eq!(
            status,
            JobStatus::Failed("Fragile: the operator panicked: unlucky row 13".into())
        );
        // The output ends: readers of the job see it stop.
        assert!(output.recv().await.is_none());
    }
}
