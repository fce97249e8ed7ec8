//! `ipcs-lb`: parses the command line and starts the load balancer. The
//! parts live in the library (`ipcs_lb`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ipcs_lb::balancer::{Config, LoadBalancer};
use ipcs_lb::budget::BudgetPolicy;
use ipcs_lb::outlier::EjectionPolicy;
use ipcs_lb::pick::Policy;
use ipcs_lb::registry_link::RegistryLinkConfig;
use ipcs_lb::rtt::TimeoutPolicy;

/// The IPCS load balancer: takes HSMAP requests on UDP, sends each to a
/// live server (round-robin, or p2c) as a raw Ethernet frame on the backend
/// bridge, and returns the server's answer to the client. Each server's
/// attempt deadline follows its measured latency; a request not answered
/// by then is also sent to another server, within a retry budget. Servers
/// silent while the others answer are taken out of rotation for a while;
/// slow ones never are. Learns the live servers from the registry. Stops
/// cleanly on SIGINT or SIGTERM. See docs/LB.md, "Failure handling".
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
    /// format, GET /servers, /healthz, /ready). "off" disables it.
    #[arg(long, value_name = "ADDR|off", default_value = ipcs_common::admin_http::DEFAULT_LB_ADMIN)]
    admin: String,

    /// Worker threads, each with its own UDP socket on the listen port
    /// (SO_REUSEPORT) and raw socket (PACKET_FANOUT by the tag's low byte).
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,

    /// Requests in flight at most, over all workers; beyond it clients get
    /// error 5 (overloaded). At most 1048576 per worker.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    capacity: usize,

    /// How a new request's server is chosen: "rr" (round-robin, an exact
    /// even spread) or "p2c" (the power of two choices over a peak-EWMA
    /// latency: slower servers get less load).
    #[arg(long, value_enum, default_value = "rr")]
    policy: PolicyArg,

    /// Attempt deadline for a server before its first answer. After that,
    /// each server's deadline is its smoothed round-trip time plus four
    /// times its variation (RFC 6298), within --timeout-min-ms and
    /// --timeout-max-ms; a server slower than its deadline but alive
    /// doubles it.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    timeout_ms: u64,

    /// The shortest attempt deadline: covers the scheduling jitter of a
    /// shared machine, which no sample predicts.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    timeout_min_ms: u64,

    /// The longest attempt deadline, however slow or backed off a server.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    timeout_max_ms: u64,

    /// How long a request may wait in all. An attempt past its deadline is
    /// also sent to another server (if attempts and the retry budget
    /// allow), but the earlier ones stay valid: the first answer from any
    /// of them answers the client. At this deadline the client gets error 4
    /// (timed out).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    request_timeout_ms: u64,

    /// Attempts per request, the first included (1..=8).
    #[arg(long, value_name = "N", default_value_t = 3)]
    attempts: u32,

    /// Retries allowed, in percent of the requests over the last 10 s
    /// (a retry budget, as Finagle and Envoy have): past it a request waits
    /// for the answers already asked for instead of adding load to a slow
    /// pool.
    #[arg(long, value_name = "PERCENT", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    retry_budget_percent: u32,

    /// Retries per second allowed on top of --retry-budget-percent, so a
    /// quiet load balancer can still retry.
    #[arg(long, value_name = "PER_SEC", default_value_t = 10)]
    retry_budget_min_per_sec: u32,

    /// Silent timeouts (no answer at all from the server since the attempt
    /// was sent; attempts sent together count once) before a server can be
    /// taken for dead.
    #[arg(long, value_name = "N", default_value_t = 3)]
    eject_after: u32,

    /// How long a server must have answered nothing, while another server
    /// answered, before it is taken out of rotation: eight of its attempt
    /// deadlines, at least --eject-silence-min-ms and at most this. A
    /// server that answers, however late, is never ejected for it; when no
    /// server answers (the whole host is slow) none is ejected.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    eject_silence_ms: u64,

    /// The shortest silence that makes a server dead (see
    /// --eject-silence-ms).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    eject_silence_min_ms: u64,

    /// A server whose answers in one second are at least this percent
    /// errors (of at least 20), while every other server's share is under
    /// half of it, is taken out of rotation.
    #[arg(long, value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    eject_error_percent: u32,

    /// The most servers out of rotation at once for bad answers, in percent
    /// of those listed (at least one). The last server in rotation is never
    /// ejected; a silent server is ejected past this cap (it is dead, and
    /// keeping it only turns its share into retries).
    #[arg(long, value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    max_ejected_percent: u32,

    /// How long an ejected server stays out of rotation; doubles each time
    /// it is silent again right after coming back.
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PolicyArg {
    /// Round-robin.
    Rr,
    /// Power of two choices over peak-EWMA latency.
    P2c,
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
        timeout: TimeoutPolicy {
            initial: ms(args.timeout_ms),
            min: ms(args.timeout_min_ms),
            max: ms(args.timeout_max_ms),
        },
        request_timeout: ms(args.request_timeout_ms),
        attempts: args.attempts,
        budget: BudgetPolicy {
            ratio: f64::from(args.retry_budget_percent) / 100.0,
            min_per_sec: args.retry_budget_min_per_sec,
            ..BudgetPolicy::default()
        },
        ejection: EjectionPolicy {
            after_failures: args.eject_after,
            silence: ms(args.eject_silence_ms),
            silence_min: ms(args.eject_silence_min_ms),
            error_percent: args.eject_error_percent,
            max_ejected_percent: args.max_ejected_percent,
            cooldown: ms(args.eject_cooldown_ms),
            max_cooldown: ms(args.eject_cooldown_max_ms),
            ..EjectionPolicy::default()
        },
        policy: match args.policy {
            PolicyArg::Rr => Policy::RoundRobin,
            PolicyArg::P2c => Policy::P2c,
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
