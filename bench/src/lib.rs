//! The side-by-side benchmark of IPCS (issue: "Benchmarks side by side"): on
//! one netns topology with three servers, the same loadgen measures
//!
//! * A. IPCS: loadgen -> `ipcs-lb` -> raw frames -> the servers;
//! * B. nginx: loadgen -> nginx's UDP stream proxy -> the servers' UDP mode;
//! * C. direct: loadgen -> one server's UDP mode (the ceiling);
//! * D. IPCS with `--workers 2` (and nginx with two workers beside it);
//!
//! and, in the same run, on the Docker deployment `./bootstrap.sh` makes,
//! with loadgen in the host's namespace as a user runs it,
//!
//! * G. IPCS: loadgen -> the compose LB on the host's UDP port -> the server
//!   containers;
//! * H. nginx on the host in front of the same containers' UDP mode;
//!
//! each with `loadgen --find-max` and a fixed-rate run, and writes one table
//! with ratios (G/A: Docker/netns; G/H: IPCS/nginx on Docker) and a latency
//! plot, under `target/bench` (and into `docs/` with `--update-docs`); and
//! the chaos soak ([`chaos`]) that holds the same load balancer to "nothing
//! lost" while servers come and go.

#![forbid(unsafe_code)]

pub mod chaos;
pub mod cpu;
pub mod lb_tier;
pub mod loadgen;
pub mod nginx;
pub mod plot;
pub mod report;
pub mod run;
