//! The part of Weir's benchmarks that tests use too: the load test
//! ([`load`]), whose short run is in the test suite.

pub mod load;
