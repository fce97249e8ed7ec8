//! Address blocks for `--allow`: which source addresses may register.
//!
//! Without an allow list, anyone who can reach the registry's port can send
//! `HELLO` with any MAC and IP and the load balancer will start sending
//! requests (and whatever the clients put in them) there: a registration is
//! an instruction to route traffic. `--allow` limits registrations to the
//! networks the servers really live on (the backend bridge's subnet, say).

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

/// An IPv4 or IPv6 network, `addr/prefix`; a bare address means the one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address")]
    Address(String),
    #[error("prefix {0:?} is not 0..=32 (IPv4) or 0..=128 (IPv6)")]
    Prefix(String),
    #[error("{0} has bits set after the prefix (did you mean {1}?)")]
    HostBits(String, Cidr),
}

impl Cidr {
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network. IPv4 addresses seen through an
    /// IPv6 socket (`::ffff:a.b.c.d`) count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(ip)), 32, self.prefix) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(ip), 128, self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `value` (an address `bits` wide) with everything after `prefix` cleared.
fn mask(value: u128, bits: u32, prefix: u8) -> u128 {
    let host_bits = bits - u32::from(prefix);
    if host_bits >= 128 {
        0
    } else {
        value >> host_bits << host_bits
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part
            .parse()
            .map_err(|_| CidrError::Address(addr_part.to_string()))?;
        let (width, value) = match addr {
            IpAddr::V4(v4) => (32u8, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (128u8, u128::from(v6)),
        };
        let prefix = match prefix_part {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= width && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(CidrError::Prefix(p.to_string())),
            },
        };
        let masked = mask(value, u32::from(width), prefix);
        if masked != value {
            let net = match addr {
                IpAddr::V4(_) => IpAddr::V4((masked as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(masked.into()),
            };
            return Err(CidrError::HostBits(
                s.to_string(),
                Cidr { addr: net, prefix },
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether a registration from `ip` is allowed: an empty list allows all.
pub fn allowed(allow: &[Cidr], ip: IpAddr) -> bool {
    allow.is_empty() || allow.iter().any(|net| net.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_hosts() {
        let net: Cidr = "10.7.0.0/16".parse().unwrap();
        assert_eq!((net.addr(), net.prefix()), (ip("10.7.0.0"), 16));
        assert_eq!(net.to_string(), "10.7.0.0/16");
        assert_eq!("10.7.0.5".parse::<Cidr>().unwrap().prefix(), 32);
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
        assert_eq!("fd00::/8".parse::<Cidr>().unwrap().prefix(), 8);
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix(), 128);
    }

    #[test]
    fn rejects_malformed_networks() {
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!("".parse::<Cidr>(), Err(CidrError::Address(_))));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/+8".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.0.1/8 has bits set after the prefix (did you mean 10.0.0.0/8?)"
        );
    }

    #[test]
    fn contains_exactly_its_addresses() {
        let net: Cidr = "10.7.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.7.0.0")));
        assert!(net.contains(ip("10.7.255.255")));
        assert!(!net.contains(ip("10.8.0.0")));
        assert!(!net.contains(ip("10.6.255.255")));
        assert!(
            net.contains(ip("::ffff:10.7.1.2")),
            "v4-mapped counts as v4"
        );
        assert!(!net.contains(ip("fd00::1")));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("255.255.255.255")));
        assert!(!any.contains(ip("::2")));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fdff::1")));
        assert!(!v6.contains(ip("fe00::1")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("::1")));
    }

    #[test]
    fn empty_allow_list_allows_all() {
        assert!(allowed(&[], ip("192.0.2.1")));
        let list = [
            "10.0.0.0/8".parse().unwrap(),
            "192.168.1.0/24".parse().unwrap(),
        ];
        assert!(allowed(&list, ip("192.168.1.9")));
        assert!(!allowed(&list, ip("192.168.2.9")));
    }
}
