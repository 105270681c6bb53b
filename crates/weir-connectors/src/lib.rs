//! Weir's connectors: sources and sinks that move rows in and out of streams.
//!
//! - [`datagen`]: rows made up from a stream's columns (sequences, random
//!   values, the current time), at a given rate;
//! - [`file`]: CSV or JSON-lines records from files, read once or tailed;
//! - [`nexmark`]: the Nexmark benchmark's event generator (people, auctions and
//!   bids), producing Arrow record batches, deterministic and resumable from
//!   any event number.

pub mod datagen;
pub mod file;
pub mod nexmark;
