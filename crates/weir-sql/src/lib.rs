//! Weir's SQL layer.
//!
//! - [`parser`]: the statement parser, Postgres' dialect plus Weir's statements;
//! - [`statement`]: what it produces;
//! - [`types`]: the Postgres column types and how they are stored in Arrow.

pub mod parser;
pub mod statement;
pub mod types;

pub use parser::{ParseError, parse_expr, parse_sql};
pub use statement::{ObjectKind, ShowObjects, Statement};
pub use types::SqlType;
