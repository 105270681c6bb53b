//! Weir's state layer: where data lives.
//!
//! - [`table`]: the rows of a table, as Arrow record batches with a key index;
//! - [`view`]: the rows of a materialized view, a multiset kept up to date by
//!   a changelog;
//! - [`durable_file`]: a small document (the catalog) kept atomically in object
//!   storage;
//! - [`wal`]: the write-ahead log of the changes users write, synced before
//!   they are acknowledged;
//! - [`checkpoint`]: checkpoints' files and manifests in object storage;
//! - [`delta`]: incremental checkpoints' change files, and how a state is
//!   put back together from a full copy and them;
//! - [`location`]: where checkpoints live (`--state-url`: a local directory
//!   or an S3 bucket).

pub mod checkpoint;
pub mod delta;
pub mod durable_file;
pub mod location;
pub mod table;
pub mod view;
pub mod wal;

pub use checkpoint::{CheckpointError, CheckpointStore, FileEntry, Manifest};
pub use durable_file::DurableFile;
pub use location::StateLocation;
pub use table::{TableData, TableWriter, WriteError};
pub use view::ViewData;
pub use wal::{Change, Commit, Record, Wal, WalError};
