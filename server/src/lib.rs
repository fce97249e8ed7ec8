//! `ipcs-server`, the IPCS calculation server, as a library the binary wires
//! together and tests drive:
//!
//! * [`config`]: the command line and the identity (MAC, IPv4, id) learnt
//!   from the backend interface.
//! * [`handler`]: sans-io answer to one backend frame.
//! * [`fault`]: fault injection for tests: answers held back in a delay queue.
//! * [`udp`]: sans-io answer to one plain-UDP HSMAP datagram.
//! * [`stats`]: counters and the periodic stats line.
//! * [`reactor`]: the mio event loop moving frames and datagrams in batches.
//! * [`registration`]: the heartbeat to the registry.

#![forbid(unsafe_code)]

pub mod config;
pub mod fault;
pub mod handler;
pub mod reactor;
pub mod registration;
pub mod stats;
pub mod udp;

pub use config::{Config, Identity, RegistryTarget};
pub use fault::DelayQueue;
pub use handler::{DropReason, FrameHandler, FrameOutcome};
pub use reactor::{FaultOptions, Reactor, ReactorOptions, StartError};
pub use registration::{Announcement, Registration};
pub use stats::Stats;
pub use udp::UdpHandler;
