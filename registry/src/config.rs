//! The registry's settings and their limits, checked once before binding.
//! `main` fills this from the command line; tests fill it directly.

use std::net::SocketAddr;
use std::time::Duration;

use ipcs_common::registry_auth::Key;
use ipcs_common::registry_proto::MAX_LINE;

use crate::cidr::Cidr;
use crate::state::MAX_IDS;

/// The most bytes a full server list takes on the wire (255 entries of the
/// longest form, header and `END`), rounded up. `--max-output-bytes` must
/// leave room for one.
pub const MAX_LIST_BYTES: usize = 12 * 1024;

/// The shortest line limit that still fits every valid line (the longest
/// `HELLO` is 62 bytes).
pub const MIN_LINE: usize = 64;

/// The shortest line limit that fits every line with a proof (the longest,
/// a `HELLO` with its proof, is 173 bytes with the newline).
pub const MIN_SIGNED_LINE: usize = 192;

/// How lines prove they come from a holder of the deployment key.
#[derive(Debug, Clone)]
pub struct Auth {
    pub key: Key,
    /// A proof's time may differ from the registry's clock by this much.
    pub window: Duration,
    /// Proofs remembered within the window, at most (bounds memory).
    pub replay_capacity: usize,
}

impl Auth {
    /// `key` with the default window (30 s) and replay capacity (65536).
    pub fn with_key(key: Key) -> Auth {
        Auth {
            key,
            window: Duration::from_secs(30),
            replay_capacity: 65_536,
        }
    }
}

/// Everything the registry can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// A registration without a `BEAT` for this long is removed.
    pub ttl: Duration,
    /// Source networks allowed to register; empty allows everyone.
    pub allow: Vec<Cidr>,
    /// Open connections at most; further ones are refused.
    pub max_connections: usize,
    /// Longest accepted line, newline included (at most the protocol's 256).
    pub max_line: usize,
    /// A connection that sends no valid line for this long is closed.
    pub first_line_timeout: Duration,
    /// Registered servers at most (at most 255: ids are 1..=255).
    pub max_servers: usize,
    /// A connection whose unsent output exceeds this is closed.
    pub max_output: usize,
    /// A `WATCH` with no change is answered after this long.
    pub watch_timeout: Duration,
    /// The deployment key and replay window; `None` (`--insecure-no-auth`)
    /// takes lines without proof and does not tie a `HELLO`'s ip to its
    /// connection.
    pub auth: Option<Auth>,
    /// Open connections from one address at most.
    pub max_per_ip: usize,
    /// Connections that have not yet sent a valid line, at most, in all
    /// and from one address (see `gate`).
    pub max_pending: usize,
    pub max_pending_per_ip: usize,
    /// A proven connection that sends no valid line for this long is closed.
    pub idle_timeout: Duration,
    /// List changes one address may make at once ...
    pub change_burst: u32,
    /// ... and then one per this long.
    pub change_refill: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 7070)),
            ttl: Duration::from_millis(1500),
            allow: Vec::new(),
            max_connections: 1000,
            max_line: MAX_LINE,
            first_line_timeout: Duration::from_millis(2000),
            max_servers: MAX_IDS,
            max_output: 64 * 1024,
            watch_timeout: Duration::from_millis(5000),
            auth: None,
            max_per_ip: 64,
            max_pending: 256,
            max_pending_per_ip: 8,
            idle_timeout: Duration::from_secs(30),
            change_burst: 20,
            change_refill: Duration::from_millis(500),
        }
    }
}

/// A setting outside what the registry can honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Inconsistent(&'static str),
    #[error("{name} must be between {min} and {max} (got {got})")]
    OutOfRange {
        name: &'static str,
        min: u128,
        max: u128,
        got: u128,
    },
}

fn check(name: &'static str, got: u128, min: u128, max: u128) -> Result<(), ConfigError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            min,
            max,
            got,
        })
    }
}

const HOUR_MS: u128 = 3_600_000;

impl Config {
    /// Checks every limit is within what the registry can honour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let size = |n: usize| n as u128;
        check("--ttl (ms)", self.ttl.as_millis(), 10, HOUR_MS)?;
        check("max connections", size(self.max_connections), 1, 1_000_000)?;
        check(
            "max line bytes",
            size(self.max_line),
            size(MIN_LINE),
            size(MAX_LINE),
        )?;
        check(
            "--first-line-timeout (ms)",
            self.first_line_timeout.as_millis(),
            10,
            HOUR_MS,
        )?;
        check("max servers", size(self.max_servers), 1, size(MAX_IDS))?;
        check(
            "max output bytes",
            size(self.max_output),
            size(MAX_LIST_BYTES),
            64 << 20,
        )?;
        check(
            "--watch-timeout (ms)",
            self.watch_timeout.as_millis(),
            10,
            HOUR_MS,
        )?;
        check(
            "max connections per ip",
            size(self.max_per_ip),
            1,
            1_000_000,
        )?;
        check(
            "max pending",
            size(self.max_pending),
            1,
            size(self.max_connections),
        )?;
        check(
            "max pending per ip",
            size(self.max_pending_per_ip),
            1,
            size(self.max_per_ip),
        )?;
        check(
            "--idle-timeout (ms)",
            self.idle_timeout.as_millis(),
            self.watch_timeout.as_millis() + 1,
            HOUR_MS,
        )?;
        check("change burst", u128::from(self.change_burst), 1, 1_000_000)?;
        check(
            "--change-refill (ms)",
            self.change_refill.as_millis(),
            1,
            HOUR_MS,
        )?;
        if let Some(auth) = &self.auth {
            check(
                "--auth-window (ms)",
                auth.window.as_millis(),
                1_000,
                HOUR_MS,
            )?;
            check("replay capacity", size(auth.replay_capacity), 1, 1 << 24)?;
            if self.max_line < MIN_SIGNED_LINE {
                return Err(ConfigError::Inconsistent(
                    "with a key, max line bytes must be at least 192 (lines carry proofs)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcs_common::registry_proto::{RegistryLine, ServerEntry};
    use ipcs_common::wire::MacAddr;
    use std::net::Ipv4Addr;

    #[test]
    fn defaults_are_valid_and_limits_are_enforced() {
        Config::default().validate().unwrap();
        let bad = [
            Config {
                ttl: Duration::from_millis(1),
                ..Config::default()
            },
            Config {
                max_connections: 0,
                ..Config::default()
            },
            Config {
                max_line: 300,
                ..Config::default()
            },
            Config {
                max_line: 10,
                ..Config::default()
            },
            Config {
                max_servers: 256,
                ..Config::default()
            },
            Config {
                max_output: 1024,
                ..Config::default()
            },
            Config {
                watch_timeout: Duration::ZERO,
                ..Config::default()
            },
            Config {
                first_line_timeout: Duration::ZERO,
                ..Config::default()
            },
            Config {
                max_pending: 2000,
                ..Config::default()
            },
            Config {
                max_pending_per_ip: 100,
                ..Config::default()
            },
            Config {
                idle_timeout: Duration::from_secs(5),
                ..Config::default()
            },
            Config {
                auth: Some(Auth::with_key(Key::from_bytes([1; 32]))),
                max_line: 128,
                ..Config::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn a_full_list_fits_max_list_bytes() {
        let mut out = Vec::new();
        RegistryLine::Servers {
            version: u64::MAX,
            count: MAX_IDS,
        }
        .write(&mut out)
        .unwrap();
        for id in 1..=255u8 {
            let entry = ServerEntry {
                id,
                mac: MacAddr([0xfe; 6]),
                ip: Ipv4Addr::new(255, 255, 255, 255),
                udp: Some(65535),
            };
            RegistryLine::Entry(entry).write(&mut out).unwrap();
        }
        RegistryLine::End.write(&mut out).unwrap();
        assert!(out.len() <= MAX_LIST_BYTES, "{}", out.len());
    }
}
