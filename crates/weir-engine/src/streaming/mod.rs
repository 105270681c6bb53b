//! Continuous queries: the window table functions (`tumble`, `hop`) and the
//! planner that turns a materialized view's query into a streaming job.

pub mod planner;
pub mod window_function;
