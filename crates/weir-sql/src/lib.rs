//! Weir's SQL layer.
//!
//! - [`parser`]: the statement parser, Postgres' dialect plus Weir's statements;
//! - [`duration`]: durations as options spell them;
//! - [`statement`]: what it produces;
//! - [`types`]: the Postgres column types and how they are stored in Arrow;
//! - [`window_syntax`]: Flink's window table functions, read as Weir's.

pub mod duration;
pub mod number_literals;
pub mod parser;
pub mod statement;
pub mod types;
pub mod window_syntax;

pub use duration::parse_duration;
pub use parser::{ParseError, parse_expr, parse_sql};
pub use statement::{
    CreateMaterializedView, CreateSink, CreateStream, DeclareSubscribe, DropStream, Emit,
    ObjectKind, ShowObjects, SinkInput, Statement, StreamKind, Subscribe, WatermarkDef,
};
pub use types::SqlType;
