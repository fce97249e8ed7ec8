//! Puts a load balancer together from its [`Config`]: binds every socket
//! first (so a busy port or a missing interface fails at once), loads the
//! first server list with a bounded wait, then runs the workers (one reactor
//! thread each) and the admin threads until a signal stops the workers.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipcs_common::sys::privs::{self, Credentials};
use ipcs_common::sys::sched::thread_nice;
use ipcs_common::sys::udp::set_on_every;
use ipcs_common::sys::{set_thread_nice, set_udp_gro, set_udp_segment, Interface};

use crate::admin::{self, AdminView};
use crate::budget::BudgetPolicy;
use crate::core::{ConfigError, Core, CoreConfig};
use crate::metrics::{RegistryStatus, WorkerStats};
use crate::operator::shared_none;
use crate::outlier::EjectionPolicy;
use crate::pick::Policy;
use crate::reactor::{bind_udp, open_raw, stop_signals, Reactor, UdpOffload};
use crate::registry_link::{RegistryLink, RegistryLinkConfig};
use crate::rtt::TimeoutPolicy;
use crate::snapshot::shared_empty;
use crate::tag::LbSecret;

/// The most workers (each one's index must fit the tag's low byte, and more
/// than the machine's cores only adds contention).
pub const MAX_WORKERS: usize = 64;

/// Everything a load balancer is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients send requests.
    pub listen: SocketAddr,
    /// The backend interface (the bridge the servers hang on).
    pub iface: String,
    pub registry: RegistryLinkConfig,
    /// How long to wait for the first list before serving without one.
    pub registry_wait: Duration,
    /// Where `/metrics` is served; `None` for nowhere.
    pub admin: Option<SocketAddr>,
    /// Who may use the admin endpoint's control verbs.
    pub admin_control: crate::admin::AdminControl,
    pub workers: usize,
    /// Requests in flight at most, over all workers.
    pub capacity: usize,
    /// The bounds of the adaptive attempt deadline.
    pub timeout: TimeoutPolicy,
    /// How long a request may wait in all before its client gets status 4.
    pub request_timeout: Duration,
    pub attempts: u32,
    pub budget: BudgetPolicy,
    pub ejection: EjectionPolicy,
    pub policy: Policy,
    /// Error replies per second at most, over all workers.
    pub error_rate: f64,
    /// How often the summary line is logged.
    pub summary_every: Duration,
    /// Nice value for the worker threads; `None` leaves it alone.
    pub nice: Option<i32>,
    /// Send replies to one client in one UDP GSO send where possible.
    pub reply_gso: bool,
    /// Accept coalesced client datagrams (UDP GRO) and split them.
    pub request_gro: bool,
    /// The most request records in one frame to a server that reads them.
    pub max_records: u8,
    /// How long a stop signal's drain may last.
    pub drain_timeout: Duration,
    /// The share (0 < share <= 1) of each worker's requests in flight and
    /// error replies one client prefix may take (crate::fairness).
    pub source_share: f64,
    /// Whom to run as once the sockets are open and the workers' priority
    /// set; `None` keeps the starting user and capabilities.
    pub user: Option<Credentials>,
}

/// Why a load balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("workers must be 1..={MAX_WORKERS}, got {0}")]
    Workers(usize),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("backend interface {name}: {source}")]
    Interface { name: String, source: io::Error },
    #[error("cannot listen on UDP {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot open a raw socket on {iface} (root or CAP_NET_RAW needed): {source}")]
    Raw { iface: String, source: io::Error },
    #[error("cannot serve admin requests on {addr}: {source}")]
    Admin { addr: SocketAddr, source: io::Error },
    #[error("cannot set up worker {worker}: {source}")]
    Worker { worker: usize, source: io::Error },
    #[error("cannot draw the tag key from the OS random source: {0}")]
    Secret(getrandom::Error),
    #[error("cannot drop privileges to {user}: {source}")]
    Privileges {
        user: Credentials,
        source: io::Error,
    },
}

/// Why a running load balancer stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("worker {worker} failed: {source}")]
    Worker { worker: usize, source: io::Error },
    #[error("worker {0} panicked")]
    Panicked(usize),
}

/// A started load balancer.
pub struct LoadBalancer {
    workers: Vec<JoinHandle<io::Result<()>>>,
    /// Each worker sends its index here when it ends, however it ends.
    exits: mpsc::Receiver<usize>,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
}

impl LoadBalancer {
    /// Binds, loads the first list (bounded wait) and starts the workers.
    pub fn start(config: Config) -> Result<LoadBalancer, StartError> {
        let n = config.workers;
        if !(1..=MAX_WORKERS).contains(&n) {
            return Err(StartError::Workers(n));
        }
        let iface = Interface::lookup(&config.iface).map_err(|source| StartError::Interface {
            name: config.iface.clone(),
            source,
        })?;
        // One secret for the whole load balancer, never leaving the process.
        let secret = LbSecret::random().map_err(StartError::Secret)?;
        let per_worker = |w: usize| CoreConfig {
            worker: w as u8,
            capacity: config.capacity.div_ceil(n),
            timeout: config.timeout,
            request_timeout: config.request_timeout,
            attempts: config.attempts,
            budget: config.budget,
            ejection: config.ejection,
            policy: config.policy,
            seed: fastrand::u64(..) ^ w as u64,
            error_rate: config.error_rate / n as f64,
            error_burst: burst(config.error_rate / n as f64),
            max_records: config.max_records,
            secret: secret.clone(),
            source_share: config.source_share,
            link_mtu: iface.mtu,
        };
        per_worker(0).validate()?;
        if let Some(user) = config.user {
            // Before any thread exists, so every thread has it.
            privs::set_no_new_privs().map_err(|source| StartError::Privileges { user, source })?;
        }
        // Before anything that takes time: a stop signal from now on is
        // held for the workers (the default action would kill the process).
        let mut signals = Vec::with_capacity(n);
        for w in 0..n {
            signals
                .push(stop_signals().map_err(|source| StartError::Worker { worker: w, source })?);
        }
        tracing::info!(
            "{} has MTU {}: at most {} requests per frame",
            iface.name,
            iface.mtu,
            per_worker(0).frame_records()
        );

        // Sockets first. The UDP sockets queue requests while the list loads.
        let mut udp = Vec::with_capacity(n);
        let mut listen = config.listen;
        for _ in 0..n {
            let socket = bind_udp(listen, n > 1).map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
            // With port 0, the other workers join the port the first got.
            listen = socket.local_addr().map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
            udp.push(socket);
        }
        let reply_gso = config.reply_gso && enable_reply_gso(&udp);
        let request_gro = config.request_gro && enable_request_gro(&udp);
        let raw_err = |source| StartError::Raw {
            iface: config.iface.clone(),
            source,
        };
        let mut raw = Vec::with_capacity(n);
        // The first worker's socket creates the fanout group under an id the
        // kernel makes unique, so another load balancer on the host (say, a
        // pid equal modulo 65536) cannot merge with it; the others join it
        // in index order, as the fanout numbers members as they join.
        let mut group = None;
        for _ in 0..n {
            let socket = open_raw(&iface, group.map(|id| (id, n as u32))).map_err(raw_err)?;
            if n > 1 && group.is_none() {
                let offset = ipcs_common::wire::TAG_LOW_BYTE_OFFSET as u16;
                group = Some(
                    socket
                        .create_fanout_by_byte(offset, n as u32)
                        .map_err(raw_err)?,
                );
            }
            raw.push(socket);
        }

        let snapshot = shared_empty();
        let registry_status = Arc::new(RegistryStatus::default());
        let stats: Vec<Arc<WorkerStats>> =
            (0..n).map(|_| Arc::new(WorkerStats::default())).collect();
        let overrides = shared_none();
        let view = AdminView {
            workers: stats.clone(),
            registry: registry_status.clone(),
            snapshot: snapshot.clone(),
            overrides: overrides.clone(),
            control: config.admin_control,
        };
        let mut admin_addr = None;
        let mut admin_listener = None;
        if let Some(addr) = config.admin {
            let admin_err = |source| StartError::Admin { addr, source };
            let listener = admin::bind(addr).map_err(admin_err)?;
            admin_addr = Some(listener.local_addr().map_err(admin_err)?);
            admin_listener = Some((addr, listener));
        }
        tracing::info!(
            listen = %listen,
            iface = %iface.name,
            mac = %iface.mac,
            workers = n,
            admin = ?admin_addr,
            registry = %config.registry.addr,
            "ipcs-lb starting"
        );

        let mut link =
            RegistryLink::new(config.registry.clone(), snapshot.clone(), registry_status);
        let loaded = link
            .load_initial(config.registry_wait)
            .map_err(|source| StartError::Worker { worker: 0, source })?;
        if loaded {
            tracing::info!(
                servers = snapshot.load().len(),
                "first server list loaded; serving"
            );
        } else {
            tracing::warn!(
                "no server list from the registry at {} within {} ms ({}); serving anyway: \
                 clients get error 3 (no server) until a list arrives",
                config.registry.addr,
                config.registry_wait.as_millis(),
                link.last_error().unwrap_or("no answer yet")
            );
        }

        // The workers inherit the nice value of the thread that creates them,
        // so it is set here, while the process may still lower it; the
        // privileges go right after the workers exist.
        let main_nice = match config.nice {
            Some(nice) => {
                let before = thread_nice().ok();
                prioritise(nice);
                before
            }
            None => None,
        };
        let now = Instant::now();
        let mut link = Some(link);
        let mut workers = Vec::with_capacity(n);
        let (exit_tx, exits) = mpsc::channel();
        for (w, ((udp, raw), signals)) in udp.into_iter().zip(raw).zip(signals).enumerate() {
            let worker_err = |source| StartError::Worker { worker: w, source };
            let mut core = Core::new(
                per_worker(w),
                iface.mac,
                snapshot.clone(),
                stats[w].clone(),
                now,
            )?;
            core.follow_overrides(overrides.clone(), now);
            let mut reactor = Reactor::new(
                udp,
                raw,
                core,
                stats[w].clone(),
                link.take(),
                UdpOffload {
                    reply_gso,
                    request_gro,
                },
                signals,
            )
            .map_err(worker_err)?;
            reactor.set_drain_timeout(config.drain_timeout);
            let exit = ExitNotice {
                worker: w,
                tx: exit_tx.clone(),
            };
            let file_capabilities = config.user.is_some() && !ipcs_common::sys::is_root();
            let handle = std::thread::Builder::new()
                .name(format!("ipcs-lb-w{w}"))
                .spawn(move || {
                    let _exit = exit;
                    if file_capabilities {
                        // Started without root but with capabilities (setcap):
                        // each thread holds its own and must clear them.
                        privs::clear_thread_capabilities()?;
                    }
                    reactor.run()
                })
                .map_err(worker_err)?;
            workers.push(handle);
        }
        if let Some(before) = main_nice {
            // Back to where it was (raising a nice value needs no privilege);
            // the admin threads below inherit this one.
            let _ = set_thread_nice(before);
        }
        if let Some(user) = config.user {
            let dropped = privs::drop_privileges(user)
                .map_err(|source| StartError::Privileges { user, source })?;
            tracing::info!(
                user = %user,
                switched_user = dropped.switched_user,
                bounding_left = dropped.bounding_left,
                "privileges dropped: running without root and with no capabilities"
            );
        }
        if let Some((addr, listener)) = admin_listener {
            admin::spawn_http(listener, view.clone())
                .map_err(|source| StartError::Admin { addr, source })?;
        }
        if !config.summary_every.is_zero() {
            admin::spawn_summary(view, config.summary_every)
                .map_err(|source| StartError::Worker { worker: 0, source })?;
        }
        Ok(LoadBalancer {
            workers,
            exits,
            listen,
            admin: admin_addr,
        })
    }

    /// The UDP address clients reach.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The admin address, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Waits for every worker to stop (each drains on SIGINT/SIGTERM).
    /// Returns at the first failure of any worker, in whatever order they
    /// end: the caller should then exit non-zero, which ends the others.
    pub fn wait(self) -> Result<(), RunError> {
        let mut workers: Vec<Option<JoinHandle<io::Result<()>>>> =
            self.workers.into_iter().map(Some).collect();
        for _ in 0..workers.len() {
            let Ok(w) = self.exits.recv() else { break };
            let Some(handle) = workers.get_mut(w).and_then(Option::take) else {
                continue;
            };
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(RunError::Worker { worker: w, source }),
                Err(_) => return Err(RunError::Panicked(w)),
            }
        }
        Ok(())
    }
}

/// Tells [`LoadBalancer::wait`] that a worker ended, when dropped: also when
/// its thread unwinds from a panic.
struct ExitNotice {
    worker: usize,
    tx: mpsc::Sender<usize>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.tx.send(self.worker);
    }
}

/// Sets `UDP_SEGMENT` to one reply's length on every listener; `false`
/// (with a warning) if the kernel refuses, and replies then go one by one.
fn enable_reply_gso(sockets: &[std::net::UdpSocket]) -> bool {
    let segment = ipcs_common::wire::hsmap::REPLY_LEN as u16;
    let set = |s: &std::net::UdpSocket| set_udp_segment(s, segment);
    let undo = |s: &std::net::UdpSocket| drop(set_udp_segment(s, 0));
    set_on_every(sockets, set, undo)
        .map_err(|e| tracing::warn!("UDP GSO unavailable ({e}); sending replies one datagram each"))
        .is_ok()
}

/// Sets `UDP_GRO` on every listener; `false` (with a note) if the kernel
/// refuses, and client datagrams then arrive one by one as before.
fn enable_request_gro(sockets: &[std::net::UdpSocket]) -> bool {
    let set = |s: &std::net::UdpSocket| set_udp_gro(s, true);
    let undo = |s: &std::net::UdpSocket| drop(set_udp_gro(s, false));
    set_on_every(sockets, set, undo)
        .map_err(|e| {
            tracing::info!("UDP GRO unavailable ({e}); client datagrams are read one by one")
        })
        .is_ok()
}

/// Gives the worker threads (created next by the calling thread, which
/// they inherit it from) a higher priority than the servers and clients they
/// share the machine with: every request crosses a worker twice, so each
/// time a woken server preempts it, all traffic waits. Without the
/// privilege the workers run at the normal priority (and say so once).
fn prioritise(nice: i32) {
    if let Err(e) = set_thread_nice(nice) {
        tracing::warn!(
            "cannot set the workers' nice value to {nice} ({e}); running at the default priority"
        );
    }
}

/// Error replies a worker may send at once: a tenth of a second's worth,
/// at least 10 (none at all if the rate is 0).
fn burst(rate: f64) -> f64 {
    if rate <= 0.0 {
        0.0
    } else {
        (rate / 10.0).max(10.0)
    }
}
