//! The Nexmark benchmark's source: an online auction's people, auctions and bids.
//!
//! The generator follows the rules of the Nexmark generator of the Flink and
//! Beam benchmarks (see [`NexmarkGenerator`] for which rules, and where ours
//! differs). Each of the three tables can be generated on its own, from any
//! event number, and gives the same rows every time for the same seed.
//!
//! - [`NexmarkConfig`]: the generator's knobs, read from `nexmark.*` options;
//! - [`NexmarkTable`] and the event structs [`Person`], [`Auction`], [`Bid`];
//! - [`NexmarkGenerator`]: record batches of one table, event after event.

mod config;
mod generator;
mod model;

pub use config::{DEFAULT_BASE_TIME_MS, MAX_EVENT_RATE, NexmarkConfig, NexmarkError};
pub use generator::NexmarkGenerator;
pub use model::{Auction, Bid, NexmarkEvent, NexmarkTable, Person};
