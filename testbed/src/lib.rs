//! The one network-namespace topology of IPCS, shared by every integration
//! test, the benchmark and chaos scripts, and `bootstrap.sh --netns`:
//!
//! ```text
//!   core (a namespace of its own, or the root namespace for bootstrap)
//!   +-- bridge ipcs0 172.16.238.1/24   <- the load balancer binds here
//!        |-- veth -- [registry ns] eth0 172.16.238.100
//!        |-- veth -- [server ns]   eth0 172.16.238.11   (id 11)
//!        |-- veth -- [server ns]   eth0 172.16.238.12   (id 12)
//!        ...
//! ```
//!
//! With [`TopologyBuilder::far_servers`], a second host joins: a namespace
//! with a bridge of its own and more servers, its bridge joined to the
//! core's by a VXLAN tunnel over a veth "wire" ([`two_host`]): the backend
//! segment then spans two (simulated) machines, as a Docker Swarm overlay
//! network does.
//!
//! The addresses are those of the Docker deployment, so every test exercises
//! the production layout. Tests put the core in a namespace of its own, so
//! any number of topologies run side by side without clashing; everything a
//! [`Topology`] makes is removed when it is dropped, also on panic.

#![forbid(unsafe_code)]

pub mod binaries;
pub mod persisted;
pub mod process;
pub mod topology;
pub mod two_host;
pub mod vrrp;

pub use binaries::binary;
pub use process::{ChildProcess, Signal};
pub use topology::{Core, Host, Topology, TopologyBuilder, TopologyError};
