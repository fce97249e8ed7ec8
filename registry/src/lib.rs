//! The IPCS registry: the source of truth for which servers are alive.
//! Servers register over TCP with `HELLO` and keep their registration with
//! `BEAT`; the load balancer reads the live list with `LIST` or `WATCH`.
//!
//! * [`state`]: the membership table, a sans-io state machine.
//! * [`reactor`]: the single-threaded mio event loop that moves bytes between
//!   sockets and the state machine, and enforces the resource limits.

pub mod state;
