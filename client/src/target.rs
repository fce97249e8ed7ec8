//! Where `calc` sends its requests: a `HOST:PORT` a person typed, checked
//! and resolved like any hostname (`/etc/hosts`, DNS) with the system
//! resolver, IPv4 preferred.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::expr::parse_expr;

/// The target when none is given.
pub const DEFAULT_TARGET: &str = "calc.batata:8080";

/// A resolved target: the name as typed (for messages) and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    name: String,
    addr: SocketAddr,
}

/// Why a target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("'{text}' is not HOST:PORT (for example {DEFAULT_TARGET} or 127.0.0.1:8080){hint}")]
    Syntax { text: String, hint: &'static str },
    #[error("'{port}' in '{text}' is not a port number (1..=65535)")]
    Port { text: String, port: String },
    #[error("cannot resolve '{host}': {source} (check the name, /etc/hosts or DNS)")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("'{host}' resolves to no address")]
    NoAddress { host: String },
}

/// What people who typed `calc 50*1337` meant.
const EXPRESSION_HINT: &str =
    "; to compute expressions give the target first: calc calc.batata:8080 50*1337";

impl Target {
    /// Checks `HOST:PORT` (an IPv6 host in brackets: `[::1]:8080`) and
    /// resolves the host.
    pub fn resolve(text: &str) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(text)?;
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|source| TargetError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect();
        let addr = addrs
            .iter()
            .find(|addr| addr.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| TargetError::NoAddress {
                host: host.to_owned(),
            })?;
        Ok(Target {
            name: text.to_owned(),
            addr,
        })
    }

    /// A target at a known address, named by it.
    pub fn from_addr(addr: SocketAddr) -> Target {
        Target {
            name: addr.to_string(),
            addr,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn split_host_port(text: &str) -> Result<(&str, u16), TargetError> {
    let syntax = || TargetError::Syntax {
        text: text.to_owned(),
        hint: if parse_expr(text).is_ok() {
            EXPRESSION_HINT
        } else {
            ""
        },
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(syntax)?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.strip_suffix(']').ok_or_else(syntax)?,
        // An unbracketed host with a colon is an IPv6 address missing its
        // brackets: `::1:8080` is ambiguous.
        None if host.contains(':') => return Err(syntax()),
        None => host,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(syntax());
    }
    let port_error = || TargetError::Port {
        text: text.to_owned(),
        port: port.to_owned(),
    };
    // `u16::from_str` accepts a leading `+`; a port is digits only.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(port_error());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(port_error()),
        Ok(port) => Ok((host, port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_and_localhost() {
        let target = Target::resolve("127.0.0.1:8080").unwrap();
        assert_eq!(target.addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.name(), "127.0.0.1:8080");
        let target = Target::resolve("[::1]:53").unwrap();
        assert_eq!(target.addr(), "[::1]:53".parse().unwrap());
        // /etc/hosts: localhost is IPv4 first whatever order the resolver gives.
        let target = Target::resolve("localhost:9").unwrap();
        assert!(target.addr().is_ipv4(), "{:?}", target.addr());
        assert_eq!(target.addr().port(), 9);
        assert_eq!(target.to_string(), "localhost:9");
    }

    #[test]
    fn malformed_targets_say_what_is_expected() {
        for text in ["calc.batata", "", ":8080", "::1:8080", "[::1:8080", "a b:1"] {
            let error = Target::resolve(text).unwrap_err();
            assert!(
                matches!(error, TargetError::Syntax { .. }),
                "{text}: {error}"
            );
            assert!(error.to_string().contains("is not HOST:PORT"), "{error}");
        }
        for text in [
            "calc.batata:",
            "calc.batata:0",
            "calc.batata:65536",
            "h:+80",
            "h:http",
        ] {
            let error = Target::resolve(text).unwrap_err();
            assert!(matches!(error, TargetError::Port { .. }), "{text}: {error}");
            assert!(
                error.to_string().contains("is not a port number"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_expression_in_the_target_place_gets_a_hint() {
        let error = Target::resolve("50*1337").unwrap_err().to_string();
        assert!(error.ends_with(EXPRESSION_HINT), "{error}");
        let error = Target::resolve("calc.batata").unwrap_err().to_string();
        assert!(!error.contains("give the target first"), "{error}");
    }

    #[test]
    fn an_unknown_host_is_a_resolve_error() {
        // `.invalid` never resolves (RFC 2606).
        let error = Target::resolve("no-such-host.invalid:8080").unwrap_err();
        assert!(matches!(error, TargetError::Resolve { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with("cannot resolve 'no-such-host.invalid': "),
            "{message}"
        );
        assert!(message.ends_with("(check the name, /etc/hosts or DNS)"));
    }
}
