//! Parsing of the command line's target address, which clap cannot parse
//! alone; it rejects malformed input with a message that says what was
//! expected. (Durations: `ipcs_common::duration`, shared with the server.)

use std::net::{SocketAddr, ToSocketAddrs};

/// Why a target could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target `{0}` is not HOST:PORT (e.g. calc.batata:8080 or 127.0.0.1:9000)")]
    Syntax(String),
    #[error("cannot resolve `{target}`: {reason}")]
    Resolve { target: String, reason: String },
    #[error("`{0}` resolves to no address")]
    NoAddress(String),
}

/// Resolves `host:port` to its first address (IPv4 preferred).
pub fn resolve_target(target: &str) -> Result<SocketAddr, TargetError> {
    let has_port = target
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(TargetError::Syntax(target.to_string()));
    }
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| TargetError::Resolve {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| TargetError::NoAddress(target.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let a = resolve_target("127.0.0.1:9000").unwrap();
        assert_eq!(a, "127.0.0.1:9000".parse().unwrap());
        assert!(resolve_target("localhost:80").unwrap().ip().is_loopback());
        assert_eq!(
            resolve_target("[::1]:53").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(matches!(
            resolve_target("localhost"),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(resolve_target(":80"), Err(TargetError::Syntax(_))));
        assert!(matches!(
            resolve_target("host:99999"),
            Err(TargetError::Syntax(_))
        ));
        let err = resolve_target("no-such-host.invalid:80").unwrap_err();
        assert!(matches!(
            err,
            TargetError::Resolve { .. } | TargetError::NoAddress(_)
        ));
        assert!(err.to_string().contains("no-such-host.invalid"));
    }
}
