//! `ipcs-registry`: parses the command line and runs the registry.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ipcs_common::cli::old_unit;
use ipcs_common::duration::parse_duration;
use ipcs_common::registry_auth::Key;
use ipcs_registry::cidr::Cidr;
use ipcs_registry::config::{Auth, Config};
use ipcs_registry::reactor::Registry;

/// The unit of the old `-ms` flags.
const MS: Duration = Duration::from_millis(1);

/// The IPCS registry: the source of truth for which servers are alive.
///
/// Servers connect over TCP, register with `HELLO id=<1..255> mac=<mac>
/// ip=<a.b.c.d> [udp=<port>]` and send `BEAT` every interval; the load
/// balancer reads the live list with `LIST` or `WATCH <version>`; `STATS`
/// prints the counters. The protocol is line-based ASCII, so `nc` works.
/// Nothing is kept on disk: after a restart servers register again.
#[derive(Debug, Parser)]
#[command(name = "ipcs-registry", version = ipcs_common::version!())]
struct Args {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:7070")]
    listen: SocketAddr,

    /// A server that sends no BEAT for this long is removed and its
    /// connection closed (servers beat every 500ms by default, so the
    /// default tolerates two lost beats).
    #[arg(long, value_name = "DURATION", default_value = "1500ms", value_parser = parse_duration)]
    ttl: Duration,

    /// Old spelling of --ttl, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "ttl")]
    ttl_ms: Option<u64>,

    /// Only accept registrations (HELLO) from this network, e.g.
    /// 10.77.0.0/16 or a single address; repeat for several. With a key
    /// a HELLO also needs a valid proof and its own address; without one
    /// (--insecure-no-auth) this is the only check on who registers.
    /// Default: none, any address may register.
    #[arg(long, value_name = "CIDR")]
    allow: Vec<Cidr>,

    /// Open connections at most; further connections get `ERR too many
    /// connections` and are closed. Keep it below the descriptor limit
    /// (`ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max_connections: usize,

    /// Longest accepted line in bytes, newline included (64..=256; the
    /// protocol allows 256). A longer line gets an ERR and the connection is
    /// closed.
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    max_line_bytes: usize,

    /// A connection that has not sent a valid line (HELLO, LIST, WATCH or
    /// STATS) within this long of connecting is closed.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    first_line_timeout: Duration,

    /// Old spelling of --first-line-timeout, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "first_line_timeout"
    )]
    first_line_timeout_ms: Option<u64>,

    /// Registered servers at most (1..=255: server ids are 1..=255). A HELLO
    /// beyond the cap gets `ERR registry full`.
    #[arg(long, value_name = "N", default_value_t = 255)]
    max_servers: usize,

    /// A connection whose answers pile up unsent beyond this many bytes (its
    /// peer is not reading) is closed. At least 12288, the size of a full
    /// list.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    max_output_bytes: usize,

    /// A WATCH whose version is still current is answered (with the same
    /// version) after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    watch_timeout: Duration,

    /// Old spelling of --watch-timeout, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "watch_timeout")]
    watch_timeout_ms: Option<u64>,

    /// File holding the deployment key: 64 hex digits (32 random bytes), as
    /// `./bootstrap.sh key` makes it. Every line but BEAT must then carry a
    /// proof made with it (HMAC-SHA256 with a time and a nonce), a HELLO's
    /// ip must be its connection's address, and lines without proof, with a
    /// wrong one, a stale or a replayed one are refused and counted. Read
    /// once at start. Required unless --insecure-no-auth.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "insecure_no_auth"
    )]
    key_file: Option<PathBuf>,

    /// Run without a key: take lines without proof and any HELLO ip. For
    /// tests and old clients only: then anyone who reaches the port can
    /// register any MAC and IP (narrow it with --allow).
    #[arg(long, conflicts_with = "key_file")]
    insecure_no_auth: bool,

    /// How far a proof's time may be from this machine's clock, either way.
    /// Keep the hosts' clocks within it (NTP).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    auth_window: Duration,

    /// Open connections from one address at most. Connections that have
    /// not yet sent a valid line are displaced by newer ones first; a new
    /// connection is refused only when this many valid ones are open.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_connections_per_ip: usize,

    /// Connections that have not yet sent a valid line, at most (at most
    /// --max-connections). One more displaces the oldest of them, so
    /// connections without the key can never fill the registry.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_pending: usize,

    /// The same from one address (at most --max-connections-per-ip).
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_pending_per_ip: usize,

    /// A connection that has sent a valid line and then none for this long
    /// is closed (servers beat every 500ms; the load balancer asks at
    /// least every --watch-timeout plus its interval). Longer than
    /// --watch-timeout.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    idle_timeout: Duration,

    /// Registrations that change the list one address may make at once;
    /// then one more per --change-refill. Beyond: `ERR too many changes`.
    #[arg(long, value_name = "N", default_value_t = 20)]
    change_burst: u32,

    /// One more list change per address per this long (see --change-burst).
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    change_refill: Duration,

    /// Address of the admin HTTP endpoint (GET /metrics in Prometheus text
    /// format, GET /healthz); "off" disables it. A busy port is a start-up
    /// error.
    #[arg(long, value_name = "ADDR:PORT|off", default_value = ipcs_common::admin_http::DEFAULT_REGISTRY_ADMIN)]
    admin: ipcs_common::admin_http::AdminAddr,

    /// The admin port of every server, as GET /sd/servers (Prometheus HTTP
    /// service discovery on the admin endpoint) names them: the registry
    /// knows each live server's address but not its admin port, so all
    /// servers are taken to use this one (the server's default).
    #[arg(long, value_name = "PORT", default_value_t = ipcs_common::admin_http::DEFAULT_SERVER_ADMIN_PORT)]
    sd_server_admin_port: u16,
}

impl Args {
    fn config(self) -> anyhow::Result<Config> {
        let auth = match &self.key_file {
            Some(path) => {
                let key = Key::load(path)?;
                Some(Auth {
                    window: self.auth_window,
                    ..Auth::with_key(key)
                })
            }
            None => None,
        };
        Ok(Config {
            listen: self.listen,
            ttl: old_unit(self.ttl, self.ttl_ms, MS),
            allow: self.allow,
            max_connections: self.max_connections,
            max_line: self.max_line_bytes,
            first_line_timeout: old_unit(self.first_line_timeout, self.first_line_timeout_ms, MS),
            max_servers: self.max_servers,
            max_output: self.max_output_bytes,
            watch_timeout: old_unit(self.watch_timeout, self.watch_timeout_ms, MS),
            auth,
            max_per_ip: self.max_connections_per_ip,
            max_pending: self.max_pending,
            max_pending_per_ip: self.max_pending_per_ip,
            idle_timeout: self.idle_timeout,
            change_burst: self.change_burst,
            change_refill: self.change_refill,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let args: Args = ipcs_common::cli::parse("IPCS_REGISTRY");
    ipcs_common::logging::init();
    let admin = args.admin.0;
    let sd_server_admin_port = args.sd_server_admin_port;
    let config = args.config().context("reading the key")?;
    let mut registry = Registry::bind(config).context("starting the registry")?;
    if let Some(addr) = admin {
        let listener = ipcs_common::admin_http::bind(addr)
            .with_context(|| format!("cannot serve admin requests on {addr}"))?;
        tracing::info!(
            "admin endpoint on http://{}/metrics",
            listener.local_addr()?
        );
        ipcs_registry::admin::spawn(
            listener,
            registry.admin_state(),
            registry.discovery(),
            sd_server_admin_port,
        )?;
    }
    registry.handle_signals()?;
    registry.run()?;
    Ok(())
}
