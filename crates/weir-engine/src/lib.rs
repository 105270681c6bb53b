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
//! - [`output`]: what statements produce;
//! - [`text_format`]: values in Postgres' text format;
//! - [`error`]: errors with their SQLSTATE.

pub mod casts;
pub mod catalog;
pub mod database;
pub mod engine;
pub mod error;
pub mod output;
pub mod pg_catalog;
pub mod relation;
pub mod session;
pub mod settings;
pub mod text_format;

pub use engine::{Engine, EngineConfig};
pub use error::{Result, SqlState, WeirError, sqlstate};
pub use output::{CommandTag, Notice, Output, Rows};
pub use session::{Prepared, Session, TransactionState};
pub use settings::Settings;
