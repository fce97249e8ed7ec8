//! Parsing of the command line's values that clap cannot parse alone: the
//! target address and durations. Each rejects malformed input with a message
//! that says what was expected.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

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

/// Parses `1.5s`, `250ms`, `100us`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use us, ms, s or m)"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|d| *d <= Duration::from_secs(86_400))
        .ok_or_else(|| format!("`{text}` is out of range (at most a day)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "ten", "5h", "-1s", "1e99", "3 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
