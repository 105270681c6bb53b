//! Weir's connectors: sources and sinks that move rows in and out of streams.
//!
//! - [`nexmark`]: the Nexmark benchmark's event generator (people, auctions and
//!   bids), producing Arrow record batches, deterministic and resumable from
//!   any event number.

pub mod nexmark;
