//! The IPCS registry: the source of truth for which servers are alive.
//! Servers register over TCP with `HELLO` and keep their registration with
//! `BEAT`; the load balancer reads the live list with `LIST` or `WATCH`.
//!
//! * [`state`]: the membership table, a sans-io state machine.
//! * [`session`]: the per-connection rules (what a connection may send,
//!   its deadlines, the answers, the counters) around the membership table,
//!   a sans-io state machine too.
//! * [`reactor`]: the single-threaded mio event loop that moves bytes between
//!   sockets and the session state machine.
//! * [`conn`]: one connection's socket and bounded output.
//! * [`config`]: the settings and their limits.
//! * [`cidr`]: the `--allow` networks.
//! * [`gate`]: who may hold a connection (total, per-address and
//!   unauthenticated limits), a sans-io state machine.
//! * [`replay`]: the proofs' replay window, a sans-io state machine.
//! * [`change_rate`]: the per-address bound on list changes.
//! * [`metrics`]: the counters `STATS` reports, their names, and their
//!   Prometheus names, kinds and help.
//! * [`admin`]: the admin HTTP endpoint's views (`/metrics`, `/healthz`,
//!   `/sd/servers`).
//! * [`discovery`]: the live list as Prometheus HTTP service discovery.

#![forbid(unsafe_code)]

pub mod admin;
pub mod change_rate;
pub mod cidr;
pub mod config;
pub mod conn;
pub mod discovery;
pub mod gate;
pub mod metrics;
pub mod reactor;
pub mod replay;
pub mod session;
pub mod state;

pub use config::Config;
pub use reactor::{Registry, RegistryError, StopHandle};
