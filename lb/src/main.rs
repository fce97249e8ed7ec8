//! `ipcs-lb`: parses the command line and starts the load balancer. The
//! parts live in the library (`ipcs_lb`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ipcs_common::cli::old_unit;
use ipcs_common::duration::parse_duration;
use ipcs_common::sys::privs::{UserFlag, DEFAULT_USER_FLAG};
use ipcs_lb::balancer::{Config, LoadBalancer};
use ipcs_lb::budget::BudgetPolicy;
use ipcs_lb::outlier::EjectionPolicy;
use ipcs_lb::pick::Policy;
use ipcs_lb::registry_link::RegistryLinkConfig;
use ipcs_lb::rtt::TimeoutPolicy;

/// The unit of the old `-ms` flags.
const MS: Duration = Duration::from_millis(1);

/// The IPCS load balancer: takes HSMAP requests on UDP, sends each to a
/// live server (round-robin, or p2c) as a raw Ethernet frame on the backend
/// bridge, and returns the server's answer to the client. Each server's
/// attempt deadline follows its measured latency; a request not answered
/// by then is also sent to another server, within a retry budget. Servers
/// silent while the others answer are taken out of rotation for a while;
/// slow ones never are. Learns the live servers from the registry. On
/// SIGINT or SIGTERM it stops taking requests, finishes those in flight
/// (bounded by --drain-timeout) and exits. See docs/LB.md.
#[derive(Debug, Parser)]
#[command(name = "ipcs-lb", version = ipcs_common::version!())]
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

    /// File holding the deployment key (64 hex digits, as `./bootstrap.sh
    /// key` makes it): every LIST and WATCH carries a proof made with it,
    /// which a registry with the key requires (docs/SECURITY.md). Read once
    /// at start. Without it the LB asks without proof, which only a
    /// registry run with --insecure-no-auth answers.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,

    /// Least time between two questions to the registry. The LB asks with
    /// WATCH, so a change of the list arrives as soon as the registry has it.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    registry_interval: Duration,
    /// Old spelling of --registry-interval, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "registry_interval"
    )]
    registry_interval_ms: Option<u64>,

    /// A registry that leaves a question unanswered this long is taken as
    /// dead and reconnected. Must exceed the registry's --watch-timeout
    /// (5s by default).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    registry_timeout: Duration,
    /// Old spelling of --registry-timeout, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "registry_timeout"
    )]
    registry_timeout_ms: Option<u64>,

    /// After reconnecting to the registry, how long servers it does not list
    /// (yet) stay in rotation: a restarted registry starts empty and refills
    /// as servers re-register. 0s trusts every list at once.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    registry_resync: Duration,
    /// Old spelling of --registry-resync, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "registry_resync"
    )]
    registry_resync_ms: Option<u64>,

    /// How long to wait at start for the first server list before serving
    /// anyway (answering error 3, no server, until the list arrives).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    registry_wait: Duration,
    /// Old spelling of --registry-wait, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "registry_wait")]
    registry_wait_ms: Option<u64>,

    /// Address of the admin HTTP endpoint (GET /metrics in Prometheus text
    /// format, GET /servers, /healthz, /ready, /logging; POST
    /// /servers/<id|mac>/{drain,undrain,ready,eject} and
    /// /logging?level=<filter> change things, see --admin-control). "off"
    /// disables it.
    #[arg(long, value_name = "ADDR|off", default_value = ipcs_common::admin_http::DEFAULT_LB_ADMIN)]
    admin: String,

    /// Who may use the admin endpoint's control verbs (POST): "local", only
    /// callers in this network namespace (loopback or the endpoint's own
    /// address; others get 403), or "any" caller that reaches the endpoint
    /// (then put your own access control in front). GET stays open.
    #[arg(long, value_enum, default_value = "local")]
    admin_control: ipcs_lb::admin::AdminControl,

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
    /// times its variation (RFC 6298), within --timeout-min and
    /// --timeout-max; a server slower than its deadline but alive
    /// doubles it.
    #[arg(long, value_name = "DURATION", default_value = "20ms", value_parser = parse_duration)]
    timeout: Duration,
    /// Old spelling of --timeout, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "timeout")]
    timeout_ms: Option<u64>,

    /// The shortest attempt deadline: covers the scheduling jitter of a
    /// shared machine, which no sample predicts.
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = parse_duration)]
    timeout_min: Duration,
    /// Old spelling of --timeout-min, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "timeout_min")]
    timeout_min_ms: Option<u64>,

    /// The longest attempt deadline, however slow or backed off a server.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    timeout_max: Duration,
    /// Old spelling of --timeout-max, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "timeout_max")]
    timeout_max_ms: Option<u64>,

    /// How long a request may wait in all. An attempt past its deadline is
    /// also sent to another server (if attempts and the retry budget
    /// allow), but the earlier ones stay valid: the first answer from any
    /// of them answers the client. At this deadline the client gets error 4
    /// (timed out).
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Old spelling of --request-timeout, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "request_timeout"
    )]
    request_timeout_ms: Option<u64>,

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
    /// deadlines, at least --eject-silence-min and at most this; this
    /// itself until the server's round trips have been measured for this
    /// long (a cold LB has not seen the host's stalls yet). A
    /// server that answers, however late, is never ejected for it; when no
    /// server answers (the whole host is slow) none is ejected.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    eject_silence: Duration,
    /// Old spelling of --eject-silence, in milliseconds.
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "eject_silence")]
    eject_silence_ms: Option<u64>,

    /// The shortest silence that makes a server dead (see
    /// --eject-silence).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    eject_silence_min: Duration,
    /// Old spelling of --eject-silence-min, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "eject_silence_min"
    )]
    eject_silence_min_ms: Option<u64>,

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
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    eject_cooldown: Duration,
    /// Old spelling of --eject-cooldown, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "eject_cooldown"
    )]
    eject_cooldown_ms: Option<u64>,

    /// The longest cool-down, however often a server fails.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    eject_cooldown_max: Duration,
    /// Old spelling of --eject-cooldown-max, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "eject_cooldown_max"
    )]
    eject_cooldown_max_ms: Option<u64>,

    /// Error replies per second at most, over all workers; further errors
    /// are dropped and counted, so the LB is never an amplifier. 0 sends
    /// none.
    #[arg(long, value_name = "PER_SEC", default_value_t = 10_000.0)]
    error_rate: f64,

    /// Time between summary lines in the log (requests/s, replies,
    /// retries, errors by code, live servers); 0 for none. The same flag as
    /// the server's.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    summary_every: Duration,
    /// Old spelling of --summary-every, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        hide = true,
        conflicts_with = "summary_every"
    )]
    summary_secs: Option<u64>,

    /// Nice value of the worker threads (-20..=19), or "keep" (the
    /// default) to leave the priority alone, as nginx and HAProxy do. Every
    /// request crosses the LB twice, so on a machine shared with the
    /// servers or clients a worker they preempt stalls all traffic; a
    /// negative value (e.g. -10) keeps latency low under load there.
    /// Lowering it needs root or CAP_SYS_NICE; without, the priority is
    /// kept with a warning.
    #[arg(
        long,
        value_name = "N|keep",
        default_value = "keep",
        allow_hyphen_values = true
    )]
    nice: String,

    /// How long the LB may take to stop after SIGTERM or SIGINT: it stops
    /// reading new requests at once and answers (or retries) those in
    /// flight until each is answered or its --request-timeout passes, then
    /// exits; requests still waiting at this timeout are abandoned (and
    /// counted). A second signal stops at once.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// Send each reply as its own datagram instead of coalescing the replies
    /// one batch holds for the same client into one UDP GSO send (which the
    /// kernel splits into ordinary 9-byte datagrams; clients cannot tell).
    /// Coalescing cut the LB's CPU per request by 8 % at 100k rps (see
    /// docs/BENCHMARKS.md); turn it off only if something in front of the
    /// LB cannot take GSO sends (they then fail and count as send_failed).
    #[arg(long)]
    no_reply_gso: bool,

    /// Take every client datagram as its own message instead of accepting
    /// what the kernel hands over coalesced (UDP GRO: a client's GSO send,
    /// or datagrams merged on the way, arrive as one message that the LB
    /// splits again). Coalesced receive spares the kernel cutting such
    /// sends apart and queueing each piece; clients cannot tell. Turn it
    /// off only to measure without it.
    #[arg(long)]
    no_request_gro: bool,

    /// The most requests for one server that travel in one backend frame
    /// (1..=64). A worker puts the requests of one batch that go to the same
    /// server into one frame, up to this many and up to what the server
    /// announces it reads (servers announce it in their reply frames; until
    /// a server has, it gets one request per frame). 1 sends every request
    /// in its own frame. Fewer frames means less work per request for the
    /// balancer, the bridge and the servers. A frame never exceeds the
    /// backend interface's MTU (read from the kernel, again every second):
    /// 1500 and a VXLAN overlay's 1450 hold 64 records; a smaller MTU holds
    /// MTU/14.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    frame_records: u8,

    /// The most of each worker's requests in flight, and of its error
    /// replies, that one client network (IPv4 /24, IPv6 /48) may take, in
    /// percent (1..=100). The in-flight share applies once a worker's table
    /// is half full (an idle table serves one busy client whole); a flood
    /// from one network then gets error 5 (overloaded) or no error replies,
    /// while other clients keep the rest. 100 shares nothing out.
    #[arg(long, value_name = "PERCENT", default_value_t = 25,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    source_share: u8,

    /// Whom to run as after the sockets are open and the workers' priority
    /// is set, as numeric UID[:GID] (names are not looked up: the images
    /// have no /etc/passwd). When started as root the LB switches to this
    /// user; in every case it then clears all its capabilities and sets
    /// no-new-privs, so the rest of its life runs without privilege.
    /// "keep" changes nothing.
    #[arg(long, value_name = "UID[:GID]|keep", default_value = DEFAULT_USER_FLAG)]
    user: UserFlag,
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
    let args: Args = ipcs_common::cli::parse("IPCS_LB");
    let admin = match args.admin.as_str() {
        // "none" is the old spelling.
        "off" | "none" => None,
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
    // Read first, while the process may still read a root-only file.
    let key = args
        .key_file
        .as_deref()
        .map(ipcs_common::registry_auth::Key::load)
        .transpose()?;
    if key.is_none() {
        tracing::warn!(
            "no --key-file: asking the registry without proof; a registry with a key refuses that"
        );
    }
    let registry = RegistryLinkConfig {
        key,
        interval: old_unit(args.registry_interval, args.registry_interval_ms, MS),
        answer_timeout: old_unit(args.registry_timeout, args.registry_timeout_ms, MS),
        resync_grace: old_unit(args.registry_resync, args.registry_resync_ms, MS),
        ..RegistryLinkConfig::new(&args.registry)
    };
    let config = Config {
        listen: args.listen,
        iface: args.iface,
        registry,
        registry_wait: old_unit(args.registry_wait, args.registry_wait_ms, MS),
        admin,
        admin_control: args.admin_control,
        workers: args.workers,
        capacity: args.capacity,
        timeout: TimeoutPolicy {
            initial: old_unit(args.timeout, args.timeout_ms, MS),
            min: old_unit(args.timeout_min, args.timeout_min_ms, MS),
            max: old_unit(args.timeout_max, args.timeout_max_ms, MS),
        },
        request_timeout: old_unit(args.request_timeout, args.request_timeout_ms, MS),
        attempts: args.attempts,
        budget: BudgetPolicy {
            ratio: f64::from(args.retry_budget_percent) / 100.0,
            min_per_sec: args.retry_budget_min_per_sec,
            ..BudgetPolicy::default()
        },
        ejection: EjectionPolicy {
            after_failures: args.eject_after,
            silence: old_unit(args.eject_silence, args.eject_silence_ms, MS),
            silence_min: old_unit(args.eject_silence_min, args.eject_silence_min_ms, MS),
            error_percent: args.eject_error_percent,
            max_ejected_percent: args.max_ejected_percent,
            cooldown: old_unit(args.eject_cooldown, args.eject_cooldown_ms, MS),
            max_cooldown: old_unit(args.eject_cooldown_max, args.eject_cooldown_max_ms, MS),
            ..EjectionPolicy::default()
        },
        policy: match args.policy {
            PolicyArg::Rr => Policy::RoundRobin,
            PolicyArg::P2c => Policy::P2c,
        },
        error_rate: args.error_rate,
        summary_every: old_unit(
            args.summary_every,
            args.summary_secs,
            Duration::from_secs(1),
        ),
        nice,
        reply_gso: !args.no_reply_gso,
        request_gro: !args.no_request_gro,
        max_records: args.frame_records,
        drain_timeout: args.drain_timeout,
        source_share: f64::from(args.source_share) / 100.0,
        user: args.user.0,
    };
    let lb = LoadBalancer::start(config).context("ipcs-lb could not start")?;
    lb.wait()?;
    tracing::info!("ipcs-lb stopped");
    Ok(())
}
