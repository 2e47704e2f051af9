//! Code shared by the benchmark examples (`overhead_report`, `failover`) and the criterion
//! bench (`benches/overhead.rs`, which includes this module by path): the clients compared,
//! the load loops, latency histograms, argument parsing and report output.
//!
//! Not every user of this module uses every item.
#![allow(dead_code)]

pub mod args;
pub mod clients;
pub mod faults;
pub mod fixture;
pub mod hist;
pub mod load;
pub mod paired;
pub mod report;
pub mod stats;
