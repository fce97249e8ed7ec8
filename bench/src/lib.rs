//! The side-by-side benchmark of IPCS (issue: "Benchmarks side by side"): on
//! one netns topology with three servers, the same loadgen measures
//!
//! * A. IPCS: loadgen -> `ipcs-lb` -> raw frames -> the servers;
//! * B. nginx: loadgen -> nginx's UDP stream proxy -> the servers' UDP mode;
//! * C. direct: loadgen -> one server's UDP mode (the ceiling);
//! * D. IPCS with `--workers 2` (and nginx with two workers beside it);
//!
//! each with `loadgen --find-max` and a fixed-rate run, and writes one table
//! with ratios and a latency plot; and the chaos soak ([`chaos`]) that holds
//! the same load balancer to "nothing lost" while servers come and go.

#![forbid(unsafe_code)]

pub mod chaos;
pub mod cpu;
pub mod loadgen;
pub mod nginx;
pub mod plot;
pub mod report;
pub mod run;
