//! The server's command line (clap) and what it derives from it at start-up:
//! the registry to heartbeat to, and the server's identity (MAC, IPv4, id)
//! learnt from the backend interface.

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipcs_common::cli::{duration_in, old_unit};
use ipcs_common::sys::Interface;
use ipcs_common::wire::MacAddr;

use crate::fault::parse_fault_delay;

/// Default registry address, as the deployment names it.
pub const DEFAULT_REGISTRY: &str = "registry.batata:7070";

/// IPCS calculation server: answers backend frames (EtherType 0x88B5) from
/// the load balancer on a raw socket, and optionally plain HSMAP over UDP.
#[derive(Debug, Clone, Parser)]
#[command(name = "ipcs-server", version = ipcs_common::version!())]
pub struct Config {
    /// Backend interface. The raw socket is bound to it (EtherType 0x88B5
    /// only); the server's MAC and IPv4 address are read from it at start-up.
    #[arg(long, default_value = "eth0", value_name = "NAME")]
    pub iface: String,

    /// Registry to announce this server to, as host:port. A hostname is
    /// resolved at start and again on every reconnect. `off` runs
    /// standalone (no heartbeat), e.g. for benchmarks.
    #[arg(long, default_value = DEFAULT_REGISTRY, value_name = "HOST:PORT|off")]
    pub registry: RegistryTarget,

    /// Old spelling of `--registry off`.
    #[arg(long, hide = true, conflicts_with = "registry")]
    pub no_registry: bool,

    /// File holding the deployment key (64 hex digits, as `./bootstrap.sh
    /// key` makes it): the HELLO carries a proof made with it, which a
    /// registry with the key requires (docs/SECURITY.md). Read once at
    /// start. Without it the server registers without proof, which only a
    /// registry run with --insecure-no-auth takes.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Server id (1..=255) put in every reply. Default: the last octet of
    /// the interface's IPv4 address, unique on a /24 without per-replica
    /// configuration.
    #[arg(long, value_name = "1..255", value_parser = clap::value_parser!(u8).range(1..))]
    pub id: Option<u8>,

    /// Also serve plain HSMAP (9-byte request, 9-byte reply, 1-byte error)
    /// on this UDP address, e.g. 0.0.0.0:9000, for load balancers that
    /// speak UDP (nginx) or reach the server across an L3 network. The port
    /// is announced to the registry. Off by default.
    #[arg(long, value_name = "ADDR:PORT")]
    pub udp: Option<SocketAddr>,

    /// Time between heartbeats (BEAT lines) to the registry (10ms..=1m).
    #[arg(long, default_value = "500ms", value_name = "DURATION",
          value_parser = duration_in(Duration::from_millis(10), Duration::from_secs(60)))]
    pub beat: Duration,

    /// Old spelling of --beat, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "beat",
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub beat_ms: Option<u64>,

    /// Time between summary lines in the log (frames answered, dropped by
    /// reason), 1s..=1h. The same flag as the load balancer's.
    #[arg(long, default_value = "10s", value_name = "DURATION",
          value_parser = duration_in(Duration::from_secs(1), Duration::from_secs(3600)))]
    pub summary_every: Duration,

    /// Old spelling of --summary-every, in seconds.
    #[arg(long, value_name = "SECS", hide = true, conflicts_with = "summary_every",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub stats_secs: Option<u64>,

    /// Frames (or datagrams) moved per recvmmsg/sendmmsg call.
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,

    /// FAULT INJECTION, for tests only: answer every backend frame and UDP
    /// datagram this much later than the server otherwise would (e.g.
    /// 30ms), to play a slow but live server. Answers wait in a bounded
    /// queue; the server keeps reading meanwhile. 0 = off.
    #[arg(long, default_value = "0", value_name = "DURATION",
          value_parser = parse_fault_delay, help_heading = "Fault injection (tests only)")]
    pub fault_delay: Duration,

    /// FAULT INJECTION, for tests only: on SIGUSR1, read the delay from this
    /// file (contents like `30ms`, or `0` for none) and apply it to answers
    /// from then on. Without it SIGUSR1 is logged and ignored.
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Fault injection (tests only)"
    )]
    pub fault_delay_file: Option<PathBuf>,

    /// FAULT INJECTION, for tests only: most answers held back at once (per
    /// socket); one more is dropped and counted in
    /// dropped_delay_queue_full.
    #[arg(long, default_value_t = 16_384, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_048_576),
          help_heading = "Fault injection (tests only)")]
    pub fault_queue: u32,

    /// Address of the admin HTTP endpoint (GET /metrics in Prometheus text
    /// format, GET /healthz); "off" disables it. The default listens on
    /// every interface of the server's own container or namespace (loopback
    /// there could not be scraped). A busy port is a start-up error.
    #[arg(long, value_name = "ADDR:PORT|off",
          default_value = ipcs_common::admin_http::DEFAULT_SERVER_ADMIN)]
    pub admin: ipcs_common::admin_http::AdminAddr,

    /// Whom to run as once the packet socket, the UDP socket and the admin
    /// port are open, as numeric UID[:GID] (the images have no /etc/passwd
    /// to look names up in). When started as root the server switches to
    /// this user; in every case it then clears all its capabilities and
    /// sets no-new-privs, so it answers frames without any privilege.
    /// A --fault-delay-file must be readable by this user. "keep" changes
    /// nothing.
    #[arg(long, value_name = "UID[:GID]|keep",
          default_value = ipcs_common::sys::privs::DEFAULT_USER_FLAG)]
    pub user: ipcs_common::sys::privs::UserFlag,
}

impl Config {
    /// Where to heartbeat to, with the old `--no-registry` applied.
    pub fn registry_target(&self) -> RegistryTarget {
        if self.no_registry {
            RegistryTarget::Disabled
        } else {
            self.registry.clone()
        }
    }

    pub fn beat_interval(&self) -> Duration {
        old_unit(self.beat, self.beat_ms, Duration::from_millis(1))
    }

    pub fn stats_interval(&self) -> Duration {
        old_unit(self.summary_every, self.stats_secs, Duration::from_secs(1))
    }
}

/// The `--registry` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryTarget {
    /// Run standalone.
    Disabled,
    /// Heartbeat to `host:port`; `host` is a name or an address, resolved on
    /// every (re)connect.
    Remote { host: String, port: u16 },
}

/// Why a `--registry` argument is not `host:port` or `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryTargetError {
    #[error("expected host:port or off")]
    MissingPort,
    #[error("empty host")]
    EmptyHost,
    #[error("bad port {0:?} (expected 1..=65535)")]
    BadPort(String),
}

impl FromStr for RegistryTarget {
    type Err = RegistryTargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `none` is the old spelling of `off`.
        if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
            return Ok(RegistryTarget::Disabled);
        }
        let (host, port) = s.rsplit_once(':').ok_or(RegistryTargetError::MissingPort)?;
        // An IPv6 literal comes bracketed: [::1]:7070.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(RegistryTargetError::EmptyHost);
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(RegistryTargetError::BadPort(
                    port.chars().take(16).collect(),
                ))
            }
        };
        Ok(RegistryTarget::Remote {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for RegistryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryTarget::Disabled => f.write_str("off"),
            RegistryTarget::Remote { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            RegistryTarget::Remote { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Who this server is on the backend network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub mac: MacAddr,
    pub ipv4: Option<Ipv4Addr>,
    pub id: u8,
}

/// Why the server cannot tell its id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "interface {iface} has no IPv4 address to derive the server id from; pass --id <1..255>"
    )]
    NoIpv4 { iface: String },
    #[error("the last octet of {ip} (on {iface}) is 0, which is not a valid server id; pass --id <1..255>")]
    ZeroOctet { iface: String, ip: Ipv4Addr },
}

impl Identity {
    /// The identity on `iface`: its MAC and IPv4, and `id` or else the last
    /// octet of that IPv4 address.
    pub fn resolve(iface: &Interface, id: Option<u8>) -> Result<Identity, IdentityError> {
        let id = match (id, iface.ipv4) {
            (Some(id), _) => id,
            (None, None) => {
                return Err(IdentityError::NoIpv4 {
                    iface: iface.name.clone(),
                })
            }
            (None, Some(ip)) => match ip.octets()[3] {
                0 => {
                    return Err(IdentityError::ZeroOctet {
                        iface: iface.name.clone(),
                        ip,
                    })
                }
                octet => octet,
            },
        };
        Ok(Identity {
            mac: iface.mac,
            ipv4: iface.ipv4,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn iface(ipv4: Option<Ipv4Addr>) -> Interface {
        Interface {
            name: "eth0".into(),
            index: 2,
            mac: MacAddr([2, 0x42, 0xac, 0x10, 0xee, 0x0b]),
            ipv4,
        }
    }

    #[test]
    fn cli_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let config = Config::try_parse_from(["ipcs-server"]).unwrap();
        assert_eq!(config.iface, "eth0");
        assert_eq!(
            config.registry_target(),
            RegistryTarget::Remote {
                host: "registry.batata".into(),
                port: 7070
            }
        );
        assert_eq!(config.id, None);
        assert_eq!(config.udp, None);
        assert_eq!(config.beat_interval(), Duration::from_millis(500));
        assert_eq!(config.stats_interval(), Duration::from_secs(10));
        assert_eq!(config.batch, 64);
        assert_eq!(config.fault_delay, Duration::ZERO);
        assert_eq!(config.fault_delay_file, None);
        assert_eq!(config.fault_queue, 16_384);
    }

    #[test]
    fn durations_and_old_spellings() {
        let new = Config::try_parse_from(["s", "--beat", "50ms", "--summary-every", "1h"]).unwrap();
        assert_eq!(new.beat_interval(), Duration::from_millis(50));
        assert_eq!(new.stats_interval(), Duration::from_secs(3600));
        let old = Config::try_parse_from(["s", "--beat-ms", "50", "--stats-secs", "2"]).unwrap();
        assert_eq!(old.beat_interval(), Duration::from_millis(50));
        assert_eq!(old.stats_interval(), Duration::from_secs(2));
    }

    #[test]
    fn fault_injection_flags() {
        let config = Config::try_parse_from([
            "s",
            "--fault-delay",
            "30ms",
            "--fault-delay-file",
            "/run/delay",
            "--fault-queue",
            "100",
        ])
        .unwrap();
        assert_eq!(config.fault_delay, Duration::from_millis(30));
        assert_eq!(config.fault_delay_file, Some(PathBuf::from("/run/delay")));
        assert_eq!(config.fault_queue, 100);
    }

    #[test]
    fn standalone_three_ways_but_not_both() {
        let off = Config::try_parse_from(["s", "--registry", "off"]).unwrap();
        assert_eq!(off.registry_target(), RegistryTarget::Disabled);
        assert_eq!(off.registry_target().to_string(), "off");
        let a = Config::try_parse_from(["s", "--registry", "none"]).unwrap();
        let b = Config::try_parse_from(["s", "--no-registry"]).unwrap();
        assert_eq!(a.registry_target(), RegistryTarget::Disabled);
        assert_eq!(b.registry_target(), RegistryTarget::Disabled);
        assert!(Config::try_parse_from(["s", "--no-registry", "--registry", "r:1"]).is_err());
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [
            &["s", "--id", "0"][..],
            &["s", "--id", "256"],
            &["s", "--id", "x"],
            &["s", "--udp", "9000"],
            &["s", "--registry", "host"],
            &["s", "--registry", ":7070"],
            &["s", "--registry", "host:0"],
            &["s", "--registry", "host:70000"],
            &["s", "--beat-ms", "0"],
            &["s", "--beat", "5ms"],
            &["s", "--beat", "2m"],
            &["s", "--beat", "500"],
            &["s", "--summary-every", "0s"],
            &["s", "--beat", "1s", "--beat-ms", "100"],
            &["s", "--summary-every", "5s", "--stats-secs", "5"],
            &["s", "--batch", "0"],
            &["s", "--batch", "2000"],
            &["s", "--fault-delay", "fast"],
            &["s", "--fault-delay", "5m"],
            &["s", "--fault-queue", "0"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn registry_targets_parse_and_print() {
        for (text, host, port) in [
            ("registry.batata:7070", "registry.batata", 7070),
            ("10.0.0.1:1", "10.0.0.1", 1),
            ("[::1]:7070", "::1", 7070),
        ] {
            let target: RegistryTarget = text.parse().unwrap();
            assert_eq!(
                target,
                RegistryTarget::Remote {
                    host: host.into(),
                    port
                }
            );
            assert_eq!(target.to_string(), text);
        }
        assert_eq!("NONE".parse(), Ok(RegistryTarget::Disabled));
    }

    #[test]
    fn id_defaults_to_last_octet() {
        let ip = Ipv4Addr::new(172, 16, 238, 11);
        let identity = Identity::resolve(&iface(Some(ip)), None).unwrap();
        assert_eq!(identity.id, 11);
        assert_eq!(identity.ipv4, Some(ip));
        assert_eq!(identity.mac, iface(None).mac);
        assert_eq!(
            Identity::resolve(&iface(Some(ip)), Some(200)).unwrap().id,
            200
        );
    }

    #[test]
    fn no_id_without_ipv4_or_with_zero_octet() {
        let err = Identity::resolve(&iface(None), None).unwrap_err();
        assert!(err.to_string().contains("--id"), "{err}");
        assert_eq!(Identity::resolve(&iface(None), Some(5)).unwrap().id, 5);
        let zero = Ipv4Addr::new(10, 0, 1, 0);
        let err = Identity::resolve(&iface(Some(zero)), None).unwrap_err();
        assert_eq!(
            err,
            IdentityError::ZeroOctet {
                iface: "eth0".into(),
                ip: zero
            }
        );
        assert_eq!(
            Identity::resolve(&iface(Some(zero)), Some(7)).unwrap().id,
            7
        );
    }
}
