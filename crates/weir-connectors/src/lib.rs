//! Weir's connectors: sources and sinks that move rows in and out of streams.
//!
//! - [`datagen`]: rows made up from a stream's columns (sequences, random
//!   values, the current time), at a given rate;
//! - [`file`]: CSV or JSON-lines records from files, read once or tailed;
//! - [`file_sink`]: a sink's rows as JSON-lines, CSV or Parquet files, made
//!   visible when the checkpoint that produced them commits;
//! - [`nexmark`]: the Nexmark benchmark's event generator (people, auctions and
//!   bids), producing Arrow record batches, deterministic and resumable from
//!   any event number.

pub mod datagen;
pub mod file;
pub mod file_sink;
pub mod nexmark;
