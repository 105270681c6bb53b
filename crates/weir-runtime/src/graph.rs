//! A streaming job: a graph of operators, each run as a tokio task, connected
//! by bounded channels.
//!
//! A job is built node by node ([`JobGraph`]), each node naming its inputs:
//! earlier nodes, or subscriptions to changelogs (the job's sources). The last
//! node's output goes to the job's sink (a materialized view's changelog).
//! Dropping the [`Job`] stops every task and frees their state.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::driver::{self, NodeMetrics, Outputs};
use crate::feed::CHANNEL_CAPACITY;
use crate::message::Message;
use crate::operator::Operator;

/// Where a node reads from.
pub enum Input {
    /// An earlier node of the job.
    Node(usize),
    /// A subscription to a changelog, labelled for `EXPLAIN`.
    Source(String, mpsc::Receiver<Message>),
}

struct NodeSpec {
    operator: Box<dyn Operator>,
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
    pub metrics: Arc<NodeMetrics>,
}

/// Whether a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    /// An operator failed; the job stopped.
    Failed(String),
}

/// A running job.
#[derive(Debug)]
pub struct Job {
    pub nodes: Vec<NodeInfo>,
    tasks: Vec<JoinHandle<()>>,
    status: Arc<Mutex<JobStatus>>,
}

impl JobGraph {
    /// Adds a node; returns its id.
    pub fn add(&mut self, operator: Box<dyn Operator>, inputs: Vec<Input>) -> usize {
        self.nodes.push(NodeSpec { operator, inputs });
        self.nodes.len() - 1
    }

    /// Starts the job. The last node sends its output to `sink`. The job
    /// subscribed to its sources after the barrier of `start_epoch`.
    pub fn spawn(self, sink: Outputs, start_epoch: u64) -> Job {
        let count = self.nodes.len();
        // The consumers of each node.
        let mut senders: Vec<Vec<mpsc::Sender<Message>>> = (0..count).map(|_| Vec::new()).collect();
        let mut receivers: Vec<Vec<mpsc::Receiver<Message>>> =
            (0..count).map(|_| Vec::new()).collect();
        let mut specs = Vec::with_capacity(count);
        let mut labels = Vec::with_capacity(count);
        for (id, node) in self.nodes.into_iter().enumerate() {
            labels.push(input_labels(&node.inputs));
            for input in node.inputs {
                match input {
                    Input::Node(from) => {
                        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
                        senders[from].push(sender);
                        receivers[id].push(receiver);
                    }
                    Input::Source(_, receiver) => receivers[id].push(receiver),
                }
            }
            specs.push(node.operator);
        }
        let status = Arc::new(Mutex::new(JobStatus::Running));
        let mut nodes = Vec::with_capacity(count);
        let mut tasks = Vec::with_capacity(count);
        let mut receivers = receivers.into_iter();
        let mut senders = senders.into_iter();
        for (id, operator) in specs.into_iter().enumerate() {
            let metrics = Arc::new(NodeMetrics::default());
            nodes.push(NodeInfo {
                id,
                name: operator.name(),
                describe: operator.describe(),
                inputs: labels[id].clone(),
                metrics: metrics.clone(),
            });
            let inputs = receivers.next().unwrap_or_default();
            let node_senders = senders.next().unwrap_or_default();
            let outputs = if id + 1 == count {
                sink.clone()
            } else {
                Outputs::Channels(node_senders)
            };
            let status = status.clone();
            let name = operator.name();
            tasks.push(tokio::spawn(async move {
                let run = driver::run(operator, inputs, outputs, metrics, start_epoch);
                // A panic in an operator fails the job, like an error.
                let error = match AssertUnwindSafe(run).catch_unwind().await {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "the operator panicked".to_string(),
                };
                tracing::error!(operator = name, error = %error, "a streaming operator failed");
                let mut status = status.lock().unwrap_or_else(|p| p.into_inner());
                if *status == JobStatus::Running {
                    *status = JobStatus::Failed(format!("{name}: {error}"));
                }
            }));
        }
        Job {
            nodes,
            tasks,
            status,
        }
    }
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
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Total bytes of state of the job's operators.
    pub fn state_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                n.metrics
                    .state_bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
