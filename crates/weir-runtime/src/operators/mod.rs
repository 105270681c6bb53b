//! The operators of streaming jobs.

pub mod aggregate;
pub mod filter;
mod group_columns;
pub mod merge;
pub mod project;
pub mod session;
pub mod union;
pub mod updating_window_aggregate;
pub mod window;
pub mod window_aggregate;
pub mod window_join;

pub use aggregate::{Aggregate, AggregateCall, WindowClose, aggregation};
pub use filter::Filter;
pub use merge::Merge;
pub use project::Project;
pub use session::{SessionAggregate, SessionBound, sessions};
pub use union::Union;
pub use updating_window_aggregate::UpdatingWindowAggregate;
pub use window::{AssignWindows, WindowKind, WindowSpec};
pub use window_aggregate::WindowAggregate;
pub use window_join::{JoinKind, JoinSide, WindowJoin};
