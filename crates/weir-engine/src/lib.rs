//! Weir's engine: the databases of one instance, their catalog, and the
//! sessions that run statements against them. It knows nothing of the wire
//! protocol; `weir-server` drives it.
//!
//! - [`engine`]: the instance, its databases and their saved catalog;
//! - [`database`]: one database as DataFusion sees it;
//! - [`catalog`]: object definitions, as saved;
//! - [`casts`]: casts between text and other types with Postgres' syntax;
//! - [`relation`]: tables and views, as queries read them;
//! - [`session`]: one connection's statements, transaction block and settings;
//! - [`settings`]: `SET` / `SHOW` parameters;
//! - [`pg_catalog`]: the `pg_catalog` schema and functions clients use;
//! - [`output`]: what statements produce; [`copy_format`]: `COPY`'s text
//!   and CSV formats;
//! - [`text_format`]: values in Postgres' text format;
//! - [`event_time`]: event time, watermarks and late rows of sources;
//! - [`stream`], [`materialized_view`]: streaming relations;
//! - [`sink`]: sinks, which write a query's results out through a connector;
//! - [`running_queries`]: continuous queries and subscriptions running, for
//!   the jobs table;
//! - [`streaming`]: from a query to a streaming job, and the window functions;
//! - [`connectors`]: the connectors that feed streams;
//! - [`dead_letters`]: what a source does with records it cannot read
//!   (`on_error`), and the dead letters it keeps;
//! - [`late_rows`], [`system_catalog`]: the `weir_catalog` system tables;
//! - [`metrics`]: the same state, and the checkpoints', as Prometheus
//!   metrics;
//! - [`write_log`]: the write-ahead log of users' writes, and its replay;
//! - [`checkpoint`]: checkpoints of all state to object storage, and recovery;
//! - [`state_files`]: incremental checkpoints: the full copy and change
//!   files that hold each state;
//! - [`error`]: errors with their SQLSTATE.

pub mod casts;
pub mod catalog;
pub mod checkpoint;
pub mod connectors;
pub mod copy_format;
pub mod database;
pub mod dead_letters;
pub mod engine;
pub mod error;
pub mod event_time;
pub mod late_rows;
pub mod materialized_view;
pub mod metrics;
pub mod output;
pub mod pg_catalog;
pub mod relation;
pub mod running_queries;
pub mod session;
pub mod settings;
pub mod sink;
pub mod state_files;
pub mod stream;
pub mod streaming;
pub mod system_catalog;
pub mod text_format;
pub mod write_log;

pub use engine::{Engine, EngineConfig};
pub use error::{Result, SqlState, WeirError, sqlstate};
pub use output::{CommandTag, CopyOut, Notice, Output, Rows};
pub use session::{Prepared, Session, TransactionState};
pub use settings::Settings;
pub use weir_state::StateLocation;
