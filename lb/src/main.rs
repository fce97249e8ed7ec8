//! `ipcs-lb`: parses the command line and starts the load balancer. The
//! parts live in the library (`ipcs_lb`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ipcs_lb::balancer::{Config, LoadBalancer};
use ipcs_lb::pick::EjectionPolicy;
use ipcs_lb::registry_link::RegistryLinkConfig;

/// The IPCS load balancer: takes HSMAP requests on UDP, sends each to the
/// next live server (round-robin) as a raw Ethernet frame on the backend
/// bridge, and returns the server's answer to the client. Retries elsewhere
/// when a server does not answer in time, takes failing servers out of
/// rotation for a while, and learns the live servers from the registry.
/// Stops cleanly on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "ipcs-lb", version)]
struct Args {
    /// UDP address clients send requests to.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Backend interface: the bridge the servers are attached to. Frames
    /// leave from its MAC.
    #[arg(long, value_name = "NAME", default_value = "ipcs0")]
    iface: String,

    /// Registry address (host:port); the host is resolved at each connect.
    #[arg(long, value_name = "HOST:PORT", default_value = "registry.batata:7070")]
    registry: String,

    /// Least time between two questions to the registry. The LB asks with
    /// WATCH, so a change of the list arrives as soon as the registry has it.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    registry_interval_ms: u64,

    /// A registry that leaves a question unanswered this long is taken as
    /// dead and reconnected. Must exceed the registry's --watch-timeout-ms
    /// (5000 by default).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    registry_timeout_ms: u64,

    /// After reconnecting to the registry, how long servers it does not list
    /// (yet) stay in rotation: a restarted registry starts empty and refills
    /// as servers re-register. 0 trusts every list at once.
    #[arg(long, value_name = "MS", default_value_t = 3_000)]
    registry_resync_ms: u64,

    /// How long to wait at start for the first server list before serving
    /// anyway (answering error 3, no server, until the list arrives).
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    registry_wait_ms: u64,

    /// Address of the admin HTTP endpoint (GET /metrics in Prometheus text
    /// format, GET /servers). "off" disables it.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9100")]
    admin: String,

    /// Worker threads, each with its own UDP socket on the listen port
    /// (SO_REUSEPORT) and raw socket (PACKET_FANOUT by the tag's low byte).
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,

    /// Requests in flight at most, over all workers; beyond it clients get
    /// error 5 (overloaded). At most 1048576 per worker.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    capacity: usize,

    /// How long a server may take to answer before the request is sent to
    /// the next server.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    timeout_ms: u64,

    /// Attempts per request, the first included (1..=8); when all time out
    /// the client gets error 4 (timed out).
    #[arg(long, value_name = "N", default_value_t = 3)]
    attempts: u32,

    /// Failures in a row (timeouts or error frames) that take a server out
    /// of rotation before the registry notices it is gone.
    #[arg(long, value_name = "N", default_value_t = 3)]
    eject_after: u32,

    /// How long an ejected server stays out of rotation; doubles each time
    /// it fails again right after coming back.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    eject_cooldown_ms: u64,

    /// The longest cool-down, however often a server fails.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    eject_cooldown_max_ms: u64,

    /// Error replies per second at most, over all workers; further errors
    /// are dropped and counted, so the LB is never an amplifier. 0 sends
    /// none.
    #[arg(long, value_name = "PER_SEC", default_value_t = 10_000.0)]
    error_rate: f64,

    /// Seconds between summary lines in the log (requests/s, replies,
    /// retries, errors by code, live servers); 0 for none.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    summary_secs: u64,

    /// Nice value of the worker threads (-20..=19). Every request crosses
    /// the LB twice, so a worker preempted by the servers or clients on a
    /// shared machine stalls all traffic; a higher priority keeps latency
    /// low under load. Lowering it needs root; without, the default is kept
    /// with a warning. "keep" leaves the priority alone.
    #[arg(
        long,
        value_name = "N|keep",
        default_value = "-10",
        allow_hyphen_values = true
    )]
    nice: String,

    /// Send each reply as its own datagram instead of coalescing the replies
    /// one batch holds for the same client into one UDP GSO send (which the
    /// kernel splits into ordinary 9-byte datagrams; clients cannot tell).
    /// Coalescing cut the LB's CPU per request by 8 % at 100k rps (see
    /// docs/BENCHMARKS.md); turn it off only if something in front of the
    /// LB cannot take GSO sends (they then fail and count as send_failed).
    #[arg(long)]
    no_reply_gso: bool,

    /// The most requests for one server that travel in one backend frame
    /// (1..=64). A worker puts the requests of one batch that go to the same
    /// server into one frame, up to this many and up to what the server
    /// announces it reads (servers announce it in their reply frames; until
    /// a server has, it gets one request per frame). 1 sends every request
    /// in its own frame. Fewer frames means less work per request for the
    /// balancer, the bridge and the servers.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    frame_records: u8,
}

fn main() -> anyhow::Result<()> {
    ipcs_common::logging::init();
    let args = Args::parse();
    let admin = match args.admin.as_str() {
        "off" => None,
        addr => Some(
            addr.parse::<SocketAddr>()
                .with_context(|| format!("--admin {addr:?} is not an address or \"off\""))?,
        ),
    };
    let nice = match args.nice.as_str() {
        "keep" => None,
        n => Some(
            n.parse::<i32>()
                .ok()
                .filter(|n| (-20..=19).contains(n))
                .with_context(|| format!("--nice {n:?} is not -20..=19 or \"keep\""))?,
        ),
    };
    if !args.error_rate.is_finite() || args.error_rate < 0.0 {
        anyhow::bail!("--error-rate must be a number >= 0");
    }
    let ms = Duration::from_millis;
    let registry = RegistryLinkConfig {
        interval: ms(args.registry_interval_ms),
        answer_timeout: ms(args.registry_timeout_ms),
        resync_grace: ms(args.registry_resync_ms),
        ..RegistryLinkConfig::new(&args.registry)
    };
    let config = Config {
        listen: args.listen,
        iface: args.iface,
        registry,
        registry_wait: ms(args.registry_wait_ms),
        admin,
        workers: args.workers,
        capacity: args.capacity,
        timeout: ms(args.timeout_ms),
        attempts: args.attempts,
        ejection: EjectionPolicy {
            after_failures: args.eject_after,
            cooldown: ms(args.eject_cooldown_ms),
            max_cooldown: ms(args.eject_cooldown_max_ms),
        },
        error_rate: args.error_rate,
        summary_every: Duration::from_secs(args.summary_secs),
        nice,
        reply_gso: !args.no_reply_gso,
        max_records: args.frame_records,
    };
    let lb = LoadBalancer::start(config).context("ipcs-lb could not start")?;
    lb.wait()?;
    tracing::info!("ipcs-lb stopped");
    Ok(())
}
