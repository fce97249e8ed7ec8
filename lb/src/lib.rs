//! `ipcs-lb`, the IPCS load balancer: takes HSMAP requests on UDP, forwards
//! each to a live server as a backend frame on a raw socket, matches the
//! reply by its tag and answers the client.
//!
//! The decisions live in sans-io modules, unit-tested with fabricated
//! instants: [`pending`] (requests in flight and their deadlines), [`pick`]
//! (round-robin, p2c, per-server state), [`outlier`] (when a server is
//! ejected), [`rtt`] (adaptive attempt deadlines), [`budget`] (the retry
//! budget), [`snapshot`] (the shared server list), [`ratelimit`], [`core`]
//! (the state machine tying them together) and [`link_core`] (the registry
//! link's decisions).
//! [`metrics`] holds the counters, and [`exposition`] the one table of
//! metric families (name, type, help) that `/metrics` is rendered from.
//!
//! The I/O around them: [`reactor`] (one mio event loop per worker, moving
//! datagrams and frames between the sockets and the core), [`registry_link`]
//! (the registry connection that carries out the link core's decisions), [`admin`]
//! (`/metrics`, `/servers`, the summary log), [`admin_control`] (the control
//! verbs: drain, eject, log level; their decisions are [`operator`]'s) and
//! [`balancer`] (wiring it all from a [`balancer::Config`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_control;
pub mod balancer;
pub mod budget;
pub mod core;
pub mod core_config;
pub mod exposition;
pub mod fairness;
pub mod link_core;
pub mod metrics;
pub mod operator;
pub mod outlier;
pub mod pending;
pub mod pick;
pub mod ratelimit;
pub mod reactor;
pub mod registry_link;
pub mod rtt;
pub mod snapshot;
pub mod tag;
