//! The seam between the server and the registry: what the server announces
//! (`HELLO id mac ip [udp]`) and a guard around
//! `common::registry_client::Heartbeat`, which heartbeats on its own thread
//! (so the registry being down or slow never delays a frame), reconnects
//! with backoff forever, and closes the connection when stopped, so the
//! registry forgets the server at once on shutdown.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipcs_common::registry_auth::Key;
use ipcs_common::registry_client::{Heartbeat, HeartbeatConfig};
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

/// A running heartbeat. Dropping it (or [`stop`](Self::stop)) ends the
/// heartbeat and closes the registry connection.
#[derive(Debug)]
pub struct Registration {
    heartbeat: Heartbeat,
}

impl Registration {
    /// Starts heartbeating `announcement` to `target` every `beat`, with
    /// proofs made with `key` if given; `None` when the target is
    /// [`RegistryTarget::Disabled`]. Never waits for the
    /// registry: the first connection is made on the heartbeat's thread.
    pub fn start(
        target: &RegistryTarget,
        announcement: Announcement,
        beat: Duration,
        key: Option<Key>,
    ) -> Option<Registration> {
        match target {
            RegistryTarget::Disabled => None,
            RegistryTarget::Remote { .. } => Some(Registration {
                heartbeat: Heartbeat::spawn(HeartbeatConfig {
                    // host:port (IPv6 bracketed), resolved on every connect.
                    registry: target.to_string(),
                    id: announcement.id,
                    mac: announcement.mac,
                    ip: announcement.ip,
                    udp: announcement.udp,
                    beat_interval: beat,
                    key,
                }),
            }),
        }
    }

    /// Whether the registry has accepted the server (as of the last beat).
    pub fn is_registered(&self) -> bool {
        self.heartbeat.is_registered()
    }

    /// Closes the registry connection now and waits for the heartbeat
    /// thread to end.
    pub fn stop(self) {
        self.heartbeat.stop();
    }
}
