//! Weir's streaming runtime: continuous queries as graphs of operators over
//! Arrow record batches.
//!
//! - [`message`]: what flows between operators (changes, watermarks, barriers);
//! - [`operator`]: the operator interface;
//! - [`operators`]: projection, filter, window assignment, aggregation,
//!   session aggregation, union, merge;
//! - [`driver`]: runs one operator as a task (barrier alignment, watermarks);
//! - [`exchange`]: the hash shuffle in front of a node's parallel subtasks;
//! - [`graph`]: a job, built node by node and run;
//! - [`feed`]: changelogs that jobs subscribe to;
//! - [`view_sink`]: a materialized view's rows and changelog, fed by its job;
//! - [`sink`]: a sink's output, committed in two phases with checkpoints;
//! - [`checkpoint`]: operator state handed over at checkpoint barriers.

pub mod checkpoint;
pub mod driver;
pub mod exchange;
pub mod feed;
pub mod graph;
pub mod message;
pub mod operator;
pub mod operators;
pub mod sink;
pub mod view_sink;

pub use checkpoint::{JobStates, OperatorState, StatePiece};
pub use driver::{NodeMetrics, Outputs};
pub use feed::Feed;
pub use graph::{Input, Job, JobGraph, JobStatus, NodeInfo};
pub use message::{Barrier, Chunk, Message, Op, Watermark};
pub use operator::Operator;
pub use sink::{SinkConnector, SinkOutput};
pub use view_sink::{ViewCheckpoint, ViewSink, changelog_piece, changes_limit};
