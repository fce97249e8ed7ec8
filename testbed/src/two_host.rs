//! The two-host extension of the topology: a second machine, simulated.
//!
//! ```text
//!  host A: the core namespace                  host B: <prefix>-far
//!  +-- bridge ipcs0 172.16.238.1/24             +-- bridge ipcs0 (no address)
//!  |    |-- registry .100, servers              |    |-- servers ("far")
//!  |    +-- vx0 (VXLAN 238) ....tunnel....      |    +-- vx0 (VXLAN 238)
//!  +-- wire0 10.238.0.1/30 ======= wire ======= wire0 10.238.0.2/30
//! ```
//!
//! Each host has a bridge of its own; a kernel VXLAN tunnel carried over a
//! veth "wire" between them (UDP 4789, what Docker Swarm's overlay networks
//! use) joins the two bridges into one layer-2 segment, so the backend
//! frames (EtherType 0x88B5) and the registry's TCP cross unchanged, and
//! the address plan stays the single-host one: far servers take the next
//! server slots and addresses like any other server.
//!
//! VXLAN costs 50 bytes of the wire's MTU, so every backend link (both
//! bridges, the tunnel, every host's veth) gets the tunnel's MTU, as Docker
//! gives containers on an overlay network 1450. A smaller one can be asked
//! for, to make frames that fill it ([`TopologyBuilder::link_mtu`]).
//!
//! Cutting the wire ([`Topology::set_tunnel`]) separates the machines: the
//! far servers stay up but nothing reaches them, nor the registry from them.
//!
//! [`TopologyBuilder::link_mtu`]: crate::TopologyBuilder::link_mtu
//! [`Topology::set_tunnel`]: crate::Topology::set_tunnel

use std::net::Ipv4Addr;

use crate::topology::{ip_in, run, TopologyError, BRIDGE};

/// The core's (host A's) end of the wire.
pub const UNDERLAY_NEAR_IP: Ipv4Addr = Ipv4Addr::new(10, 238, 0, 1);
/// The far host's (host B's) end of the wire.
pub const UNDERLAY_FAR_IP: Ipv4Addr = Ipv4Addr::new(10, 238, 0, 2);
/// The wire's subnet: the two ends only.
pub const UNDERLAY_PREFIX_LEN: u8 = 30;
/// The VXLAN network identifier of the tunnel.
pub const VXLAN_ID: u32 = 238;
/// VXLAN's IANA port, the one Docker Swarm's overlay uses too.
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN over IPv4 adds to every frame: outer Ethernet (14), IPv4
/// (20), UDP (8) and VXLAN (8) headers.
pub const VXLAN_OVERHEAD: usize = 50;
/// The wire's MTU by default, a plain Ethernet link's.
pub const WIRE_MTU: usize = 1500;
/// The backend links' MTU by default: what the tunnel carries over a
/// 1500-byte wire (Docker's overlay MTU).
pub const TUNNEL_MTU: usize = WIRE_MTU - VXLAN_OVERHEAD;
/// The smallest backend MTU asked for (IPv4's minimum).
pub const MIN_LINK_MTU: usize = 68;
/// The name of the wire's ends and of the tunnel devices, in each host.
pub const WIRE: &str = "wire0";
pub const TUNNEL: &str = "vx0";

/// The far host as made: its namespace and the backend MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarHost {
    /// Host B's namespace, holding its bridge, tunnel end and wire end.
    pub netns: String,
    /// The MTU of every backend link on both hosts.
    pub link_mtu: usize,
}

impl FarHost {
    /// Makes host B and the wire and tunnel between it and the core's
    /// bridge (already made, with MTU `link_mtu`, in namespace `core`).
    /// On error, what was made is removed.
    pub(crate) fn make(
        prefix: &str,
        core: &str,
        link_mtu: usize,
    ) -> Result<FarHost, TopologyError> {
        let far = FarHost {
            netns: format!("{prefix}-far"),
            link_mtu,
        };
        run("ip", &["netns", "add", &far.netns])?;
        if let Err(e) = far.connect(core) {
            far.remove(core);
            return Err(e);
        }
        Ok(far)
    }

    fn connect(&self, core: &str) -> Result<(), TopologyError> {
        let far = self.netns.as_str();
        let mtu = self.link_mtu.to_string();
        let wire_mtu = (self.link_mtu + VXLAN_OVERHEAD).to_string();
        ip_in(Some(far), &["link", "set", "lo", "up"])?;
        ip_in(
            Some(far),
            &["link", "add", BRIDGE, "mtu", &mtu, "type", "bridge"],
        )?;
        ip_in(Some(far), &["link", "set", BRIDGE, "up"])?;
        // The wire: one veth pair, an end in each host.
        run(
            "ip",
            &[
                "link", "add", "name", WIRE, "netns", core, "mtu", &wire_mtu, "type", "veth",
                "peer", "name", WIRE, "netns", far, "mtu", &wire_mtu,
            ],
        )?;
        for (ns, local, remote) in [
            (core, UNDERLAY_NEAR_IP, UNDERLAY_FAR_IP),
            (far, UNDERLAY_FAR_IP, UNDERLAY_NEAR_IP),
        ] {
            let cidr = format!("{local}/{UNDERLAY_PREFIX_LEN}");
            ip_in(Some(ns), &["addr", "add", &cidr, "dev", WIRE])?;
            ip_in(Some(ns), &["link", "set", WIRE, "up"])?;
            // The tunnel end, a port of the host's bridge.
            ip_in(
                Some(ns),
                &[
                    "link",
                    "add",
                    TUNNEL,
                    "mtu",
                    &mtu,
                    "type",
                    "vxlan",
                    "id",
                    &VXLAN_ID.to_string(),
                    "local",
                    &local.to_string(),
                    "remote",
                    &remote.to_string(),
                    "dstport",
                    &VXLAN_PORT.to_string(),
                    "dev",
                    WIRE,
                ],
            )?;
            ip_in(Some(ns), &["link", "set", TUNNEL, "master", BRIDGE])?;
            ip_in(Some(ns), &["link", "set", TUNNEL, "up"])?;
        }
        Ok(())
    }

    /// Connects (`up`) or cuts the wire, from the core's end: with it down,
    /// no frame crosses the tunnel either way.
    pub(crate) fn set_wire(&self, core: &str, up: bool) -> Result<(), TopologyError> {
        let state = if up { "up" } else { "down" };
        ip_in(Some(core), &["link", "set", WIRE, state])
    }

    /// Removes host B (its namespace takes its bridge, tunnel end and wire
    /// end with it) and the core's tunnel end and wire end.
    pub(crate) fn remove(&self, core: &str) {
        let _ = ip_in(Some(core), &["link", "del", TUNNEL]);
        let _ = ip_in(Some(core), &["link", "del", WIRE]);
        let _ = run("ip", &["netns", "del", &self.netns]);
    }
}
