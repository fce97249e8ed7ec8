//! One open-loop run against a target: with its two thread bodies in
//! `send` and `receive`, the only part of loadgen that does I/O. It opens the
//! sockets, starts per worker a sending thread (paced by a
//! [`Pacer`](crate::schedule::Pacer)) and a receiving thread (classifying
//! with one [`Tracker`] per socket), reports progress, and assembles the
//! [`Report`].
//!
//! The two threads of a worker share nothing but, per socket, the number of
//! requests issued so far (published *before* they are sent, so a reply can
//! never outrun it) and the worker's [`Stats`] behind a mutex that the
//! receiving thread takes once per wake-up.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, ScopedJoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::codec::OperandCodec;
use crate::mix::Mix;
use crate::receive::receive_loop;
use crate::report::{error_names, Report};
use crate::schedule::{Layout, Plan, Schedule};
use crate::send::{enable_gso, send_loop, SendSide};
use crate::stats::{LatencySummary, SendStats, Stats};
use crate::tracker::Tracker;

/// Kernel buffer asked for each socket (the kernel caps it at
/// `net.core.rmem_max`/`wmem_max`): room for bursts and short stalls.
const SOCKET_BUFFER: usize = 4 << 20;
/// Delay between planning the run and its first request, for the threads
/// to start.
const START_DELAY: Duration = Duration::from_millis(20);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: SocketAddr,
    pub rps: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub sockets: u32,
    pub threads: u32,
    pub mix: Mix,
    /// Most datagrams per `sendmmsg`/`recvmmsg` (and per offloaded send).
    pub batch: usize,
    /// Shortest time between two rounds of sends.
    pub tick: Duration,
    /// Use UDP segmentation offload when the kernel has it.
    pub gso: bool,
    /// Accept coalesced replies (UDP GRO) when the kernel has it.
    pub gro: bool,
    /// Seed of the operands; random when `None`.
    pub key: Option<u64>,
}

impl RunConfig {
    /// Defaults of the command line for `target`.
    pub fn new(target: SocketAddr) -> RunConfig {
        RunConfig {
            target,
            rps: 10_000,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(1),
            sockets: 4,
            threads: 1,
            mix: Mix::default(),
            batch: 64,
            tick: Duration::from_micros(50),
            gso: true,
            gro: true,
            key: None,
        }
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the rate must be at least 1 request per second")]
    ZeroRate,
    #[error("the duration must be longer than 0")]
    ZeroDuration,
    #[error("the timeout must be longer than 0 and at most 1 hour")]
    BadTimeout,
    #[error("the batch size must be between 1 and 1024")]
    BadBatch,
    #[error("the tick must be at most 100 ms")]
    BadTick,
    #[error("--threads ({threads}) must be between 1 and --sockets ({sockets})")]
    Layout { threads: u32, sockets: u32 },
    #[error("cannot open a UDP socket towards {target}: {source}")]
    Socket {
        target: SocketAddr,
        source: io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(io::Error),
    #[error("a loadgen thread panicked")]
    Panicked,
}

/// The live numbers printed once a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub in_warmup: bool,
    /// Requests handed to the sockets so far, warm-up included.
    pub issued: u64,
    pub answered: u64,
    pub lost: u64,
    pub wrong: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// State one worker's two threads share.
pub(crate) struct Shared {
    /// Requests issued per local socket, published before they are sent.
    pub issued: Vec<AtomicU64>,
    pub sender_done: AtomicBool,
    pub stats: Mutex<Stats>,
}

impl Shared {
    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        // A panicking thread ends the run anyway; its counts are still valid.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a sending thread reports when it ends.
#[derive(Default)]
pub(crate) struct SenderSummary {
    pub send: SendStats,
    /// Measured requests that were due before the sender stopped.
    pub due: u64,
    /// Measured requests it handed to its sockets.
    pub handed_out: u64,
    /// Time into the run up to which the schedule was covered when
    /// SIGINT/SIGTERM stopped it.
    pub interrupted_at: Option<Duration>,
}

fn validate(cfg: &RunConfig) -> Result<Layout, RunError> {
    if cfg.rps == 0 {
        return Err(RunError::ZeroRate);
    }
    if cfg.duration.is_zero() {
        return Err(RunError::ZeroDuration);
    }
    if cfg.timeout.is_zero() || cfg.timeout > Duration::from_secs(3600) {
        return Err(RunError::BadTimeout);
    }
    if !(1..=1024).contains(&cfg.batch) {
        return Err(RunError::BadBatch);
    }
    if cfg.tick > Duration::from_millis(100) {
        return Err(RunError::BadTick);
    }
    Layout::new(cfg.threads, cfg.sockets).ok_or(RunError::Layout {
        threads: cfg.threads,
        sockets: cfg.sockets,
    })
}

fn open_socket(target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    // Best effort: the kernel caps the size, and a smaller buffer only
    // means bursts are dropped (and reported as lost) sooner.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    socket.bind(&any.into())?;
    // Connected: the kernel drops datagrams from anyone but the target and
    // reports its ICMP port-unreachable as ECONNREFUSED.
    socket.connect(&target.into())?;
    Ok(socket.into())
}

/// Runs the schedule of `cfg` against its target until it ends or `stop`
/// is set, calling `on_progress` about once a second.
pub fn run(
    cfg: &RunConfig,
    stop: &AtomicBool,
    mut on_progress: Option<&mut dyn FnMut(&Progress)>,
) -> Result<Report, RunError> {
    let layout = validate(cfg)?;
    let sockets: Vec<UdpSocket> = (0..cfg.sockets)
        .map(|_| open_socket(cfg.target))
        .collect::<io::Result<_>>()
        .map_err(|source| RunError::Socket {
            target: cfg.target,
            source,
        })?;
    let schedule = Schedule::new(cfg.rps, cfg.warmup, cfg.duration);
    let key = cfg.key.unwrap_or_else(|| fastrand::u64(..));
    let window = Tracker::window_for(cfg.rps, cfg.sockets, cfg.timeout);
    let plan = Plan {
        start: Instant::now() + START_DELAY,
        schedule,
        layout,
        codec: OperandCodec::new(key, cfg.mix),
        timeout: cfg.timeout,
    };
    tracing::debug!(target = %cfg.target, rps = cfg.rps, sockets = cfg.sockets,
        threads = cfg.threads, window, "run planned");

    let workers: Vec<Shared> = (0..layout.threads())
        .map(|w| Shared {
            issued: (0..layout.sockets_of(w))
                .map(|_| AtomicU64::new(0))
                .collect(),
            sender_done: AtomicBool::new(false),
            stats: Mutex::new(Stats::default()),
        })
        .collect();

    let (stats, senders) = thread::scope(|scope| -> Result<_, RunError> {
        let mut send_handles = Vec::new();
        let mut recv_handles = Vec::new();
        for (w, shared) in workers.iter().enumerate() {
            let w = w as u32;
            let mine: Vec<&UdpSocket> = (0..layout.sockets_of(w))
                .map(|l| &sockets[layout.socket_id(w, l) as usize])
                .collect();
            let receive_side = mine
                .iter()
                .map(|s| s.try_clone().map(mio::net::UdpSocket::from_std))
                .collect::<io::Result<Vec<_>>>()
                .map_err(|source| RunError::Socket {
                    target: cfg.target,
                    source,
                })?;
            let plan = &plan;
            let batch = cfg.batch;
            let gro = cfg.gro;
            recv_handles.push(
                thread::Builder::new()
                    .name(format!("loadgen-recv-{w}"))
                    .spawn_scoped(scope, move || {
                        if let Err(e) =
                            receive_loop(plan, w, receive_side, shared, batch, gro, window)
                        {
                            tracing::error!(worker = w, "receiving thread failed: {e}");
                        }
                    })
                    .map_err(RunError::Thread)?,
            );
            let side = SendSide {
                gso: mine.iter().map(|s| cfg.gso && enable_gso(s)).collect(),
                sockets: mine,
                batch,
                tick: cfg.tick,
            };
            send_handles.push(
                thread::Builder::new()
                    .name(format!("loadgen-send-{w}"))
                    .spawn_scoped(scope, move || send_loop(plan, w, side, shared, stop))
                    .map_err(RunError::Thread)?,
            );
        }
        watch_progress(&plan, &workers, &recv_handles, &mut on_progress);
        let mut senders = Vec::new();
        for h in send_handles {
            senders.push(h.join().map_err(|_| RunError::Panicked)?);
        }
        for h in recv_handles {
            h.join().map_err(|_| RunError::Panicked)?;
        }
        let mut stats = Stats::default();
        for shared in &workers {
            stats.merge(&shared.stats());
        }
        Ok((stats, senders))
    })?;
    Ok(assemble(cfg, &plan, stats, senders))
}

/// Prints progress until every receiving thread has finished.
fn watch_progress(
    plan: &Plan,
    workers: &[Shared],
    receivers: &[ScopedJoinHandle<'_, ()>],
    on_progress: &mut Option<&mut dyn FnMut(&Progress)>,
) {
    let mut next_report = plan.start + Duration::from_secs(1);
    while !receivers.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        if now < next_report {
            continue;
        }
        next_report += Duration::from_secs(1);
        let Some(report) = on_progress.as_mut() else {
            continue;
        };
        let mut stats = Stats::default();
        let mut issued = 0;
        for shared in workers {
            stats.merge(&shared.stats());
            issued += shared
                .issued
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum::<u64>();
        }
        let lat = LatencySummary::of(&stats.latency);
        report(&Progress {
            elapsed: now.saturating_duration_since(plan.start),
            in_warmup: now < plan.measure_start(),
            issued,
            answered: stats.answered,
            lost: stats.lost,
            wrong: stats.wrong + stats.wrong_during_warmup,
            p50_us: lat.p50,
            p99_us: lat.p99,
        });
    }
}

fn assemble(cfg: &RunConfig, plan: &Plan, stats: Stats, senders: Vec<SenderSummary>) -> Report {
    let mut send = SendStats::default();
    let (mut due, mut handed_out) = (0, 0);
    let mut interrupted_at = None;
    for s in &senders {
        send.merge(&s.send);
        due += s.due;
        handed_out += s.handed_out;
        interrupted_at = interrupted_at.max(s.interrupted_at);
    }
    let measured = match interrupted_at {
        Some(t) => t.saturating_sub(cfg.warmup).min(cfg.duration),
        None => cfg.duration,
    };
    let secs = measured.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    Report {
        target: cfg.target.to_string(),
        offered_rps: plan.schedule.rps() as f64,
        achieved_rps: per_sec(stats.answered),
        sent_rps: per_sec(send.sent),
        duration_s: secs,
        warmup_s: cfg.warmup.as_secs_f64(),
        timeout_ms: cfg.timeout.as_secs_f64() * 1000.0,
        sockets: cfg.sockets,
        threads: cfg.threads,
        mix: cfg.mix.to_string(),
        scheduled: due,
        sent: send.sent,
        unsent: due.saturating_sub(handed_out),
        send_failed: send.failed,
        answered: stats.answered,
        lost: stats.lost,
        wrong: stats.wrong,
        wrong_during_warmup: stats.wrong_during_warmup,
        late: stats.late,
        duplicate: stats.duplicate,
        malformed: stats.malformed,
        refused: stats.refused,
        errors: error_names(&stats.errors),
        latency_us: LatencySummary::of(&stats.latency),
        send_lag_us: LatencySummary::of(&send.lag),
        per_server: stats.per_server,
        wrong_per_server: stats.wrong_per_server,
        loss_window: stats.loss_window.map(Into::into),
        interrupted: interrupted_at.is_some(),
        find_max: None,
        latency: stats.latency,
    }
}
