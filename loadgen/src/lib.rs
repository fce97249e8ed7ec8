//! `loadgen`, the IPCS load generator: an open-loop, coordinated-omission
//! corrected UDP load generator for the HSMAP protocol, the instrument every
//! performance claim of IPCS is measured with.
//!
//! Requests leave on a fixed schedule whether or not earlier ones were
//! answered; each request's latency is counted from the moment it was
//! *scheduled*, so any stall (of loadgen or of the target) shows in the
//! percentiles. Every reply is checked against the exact expected answer.
//!
//! * [`mix`]: the `--mix` of operations.
//! * [`codec`]: operands that let a reply identify and verify its request.
//! * [`schedule`]: when each request is due and which socket sends it.
//! * [`tracker`]: classifying replies and expiring requests, per socket.
//! * [`stats`]: counters and latency histograms.
//! * [`report`]: the text, JSON and `.hgrm` outputs.
//! * [`findmax`]: the `--find-max` search controller.
//! * [`run`]: one run: sockets, threads, progress, report; its threads
//!   live in `send` (paced, batched sending) and `receive` (draining and
//!   classifying replies): the only I/O of loadgen.
//! * [`search`]: `--find-max` driven over real runs.
//! * [`args`]: parsing of target addresses and durations.
//! * [`responder`]: a tiny HSMAP responder for tests and benchmarks.

#![forbid(unsafe_code)]

pub mod args;
pub mod codec;
pub mod findmax;
pub mod mix;
mod receive;
pub mod report;
pub mod responder;
pub mod run;
pub mod schedule;
pub mod search;
mod send;
pub mod stats;
pub mod tracker;

pub use report::Report;
pub use run::{run, Progress, RunConfig, RunError};
