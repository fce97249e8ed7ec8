//! What the load balancer's netns tests share: a topology with the real
//! registry, servers and load balancer running, a UDP client in the core
//! namespace, a metrics scraper, a paced load with a fault injected
//! part-way, and ways onto other hosts' namespaces (for raw frames).

#![allow(dead_code)] // each test file uses part of this

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ipcs_common::wire::{Request, Response, Status};
use ipcs_common::Op;
use ipcs_testbed::Topology;

/// Where the load balancer listens, in the core namespace.
pub const LISTEN: &str = "172.16.238.1:8080";
/// Its admin endpoint, in the core namespace.
pub const ADMIN: &str = "127.0.0.1:7071";

/// A running topology and the index of its load balancer process.
pub struct Rig {
    pub topo: Topology,
    pub lb: usize,
    pub registry: usize,
    pub servers: Vec<usize>,
}

/// Skips (loudly; fails under `CI=true`) a test that is not run as root.
pub use ipcs_common::sys::root_or_skip;

impl Rig {
    /// Registry, `servers` servers and the load balancer (with `lb_args`),
    /// the calling thread moved into the core namespace, and every server
    /// listed by the load balancer.
    pub fn start(servers: usize, lb_args: &[&str]) -> Rig {
        Rig::start_servers(servers, false, lb_args)
    }

    /// As [`start`](Self::start), with every server able to be slowed down
    /// at run time ([`Topology::set_server_delay`]).
    pub fn start_slowable(servers: usize, lb_args: &[&str]) -> Rig {
        Rig::start_servers(servers, true, lb_args)
    }

    fn start_servers(servers: usize, slowable: bool, lb_args: &[&str]) -> Rig {
        let mut topo = Topology::builder()
            .servers(servers)
            .build()
            .expect("topology");
        let registry = topo.start_registry(&[]).expect("registry");
        let servers: Vec<usize> = (0..servers)
            .map(|i| {
                let file = topo.fault_delay_file(i).display().to_string();
                let args: Vec<&str> = if slowable {
                    vec!["--fault-delay-file", &file]
                } else {
                    vec![]
                };
                topo.start_server(i, &args).expect("server")
            })
            .collect();
        let mut args = vec![
            "--listen",
            LISTEN,
            "--admin",
            ADMIN,
            "--summary-every",
            "1s",
            // The servers and the paced load share the machine's cores with
            // the LB; these tests were written (and their bounds set) with
            // its workers at nice -10, its default until it left the
            // priority alone.
            "--nice",
            "-10",
        ];
        args.extend(lb_args);
        let lb = topo.start_lb(&args).expect("lb");
        topo.enter_core().expect("enter core namespace");
        let rig = Rig {
            topo,
            lb,
            registry,
            servers,
        };
        let n = rig.servers.len();
        assert!(
            rig.wait_for_servers(n, Duration::from_secs(15)),
            "the load balancer never listed {n} servers:\n{}",
            rig.topo.logs()
        );
        rig
    }

    pub fn lb_addr(&self) -> SocketAddr {
        LISTEN.parse().unwrap()
    }

    /// GETs a path from the admin endpoint; `None` while it is not up.
    pub fn admin(&self, path: &str) -> Option<String> {
        let addr = ADMIN.parse().ok()?;
        let (_, body) = ipcs_common::admin_http::get(addr, path, Duration::from_secs(2)).ok()?;
        Some(body)
    }

    /// The value of the first metric sample whose line starts with
    /// `prefix`, e.g. `ipcs_lb_drops_total{reason="stale"}` or
    /// `ipcs_lb_server_requests_total{id="12",`.
    pub fn metric(&self, prefix: &str) -> u64 {
        let text = self.admin("/metrics").expect("metrics page");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no metric {prefix} in:\n{text}"))
            .parse::<f64>()
            .expect("numeric metric") as u64
    }

    /// Waits until the load balancer lists exactly `n` servers.
    pub fn wait_for_servers(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.listed_servers() == Some(n))
    }

    /// How many servers the load balancer lists now.
    pub fn listed_servers(&self) -> Option<usize> {
        // First line: `version <v> servers <n>`.
        let page = self.admin("/servers")?;
        page.split_whitespace().nth(3)?.parse().ok()
    }

    pub fn lb_log(&self) -> String {
        self.topo.process(self.lb).log()
    }

    /// Every `ipcs_lb_drops_total` sample, by reason.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        let text = self.admin("/metrics").expect("metrics page");
        text.lines()
            .filter_map(|l| l.strip_prefix("ipcs_lb_drops_total{reason=\""))
            .filter_map(|l| {
                let (reason, rest) = l.split_once('"')?;
                let value = rest.rsplit(' ').next()?.parse().ok()?;
                Some((reason.to_owned(), value))
            })
            .collect()
    }

    /// Whether the load balancer process is still running.
    pub fn lb_running(&mut self) -> bool {
        !self.topo.process_mut(self.lb).has_exited()
    }
}

/// Runs `f` on a thread of its own that first entered the network namespace
/// `netns`, and returns what it returns. A socket opened there stays in that
/// namespace whichever thread uses it afterwards.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            ipcs_common::sys::netns::enter_for_thread(netns)
                .unwrap_or_else(|e| panic!("entering namespace {netns}: {e}"));
            f()
        })
        .join()
        .expect("thread in namespace")
    })
}

/// A counter of the calling thread's network namespace from
/// `/proc/thread-self/net/snmp`, e.g. `("Udp", "RcvbufErrors")`.
pub fn snmp_counter(group: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp counters");
    let prefix = format!("{group}:");
    let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        panic!("no {group} counters in:\n{text}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {group} {name} in:\n{text}"))
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A client socket in the core namespace.
pub struct Client {
    socket: UdpSocket,
    lb: SocketAddr,
}

impl Client {
    pub fn new(lb: SocketAddr) -> Client {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        Client { socket, lb }
    }

    /// Sends `bytes` and returns the answer's bytes (`None`: none in 2 s).
    pub fn exchange(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.socket.send_to(bytes, self.lb).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = self.socket.recv_from(&mut buf).ok()?;
        assert_eq!(from, self.lb, "answer from elsewhere");
        Some(buf[..n].to_vec())
    }

    pub fn ask(&self, request: Request) -> Response {
        let bytes = self
            .exchange(&request.to_bytes())
            .unwrap_or_else(|| panic!("no answer to {request}"));
        Response::parse_bytes(&bytes).expect("well-formed answer")
    }
}

/// The outcome of a paced load.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub sent: u32,
    /// Distinct requests answered with their correct result.
    pub correct: u32,
    /// Replies with a wrong result (never expected).
    pub wrong: u32,
    /// Answers repeated for the same request (never expected).
    pub duplicates: u32,
    /// Error replies by status code (index = code).
    pub errors: [u32; 6],
    /// How many of the first requests sent were all answered correctly
    /// (request `answered_prefix` is the first without its answer).
    pub answered_prefix: u32,
}

impl LoadOutcome {
    pub fn unanswered(&self) -> u32 {
        self.sent - self.correct - self.errors.iter().sum::<u32>()
    }
}

const BASE: u64 = 1_000_000_000;

/// Sends `total` requests at `rate` per second from one socket, calling
/// `during(sent)` between sends (to inject a fault), then waits up to 2 s for
/// the last answers. Request `i` is `i + 1000000000`, so every answer names
/// its request.
pub fn paced_load(
    lb: SocketAddr,
    total: u32,
    rate: u32,
    mut during: impl FnMut(u32),
) -> LoadOutcome {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // Room for bursts, as loadgen makes itself (up to net.core.rmem_max):
    // when a fault ends, the answers it held arrive together, and with the
    // default ~200 KB (a few hundred datagrams) a descheduled receiver
    // thread lost some of them in the kernel: the test then blamed the LB
    // for answers it had sent.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
    let receiver_socket = socket.try_clone().unwrap();
    let seen = Arc::new(Mutex::new((
        vec![false; total as usize],
        LoadOutcome::default(),
    )));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (seen, done) = (seen.clone(), done.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut quiet_since = None;
            loop {
                match receiver_socket.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        quiet_since = None;
                        let mut guard = seen.lock().unwrap();
                        let (flags, out) = &mut *guard;
                        match Response::parse_bytes(&buf[..n]) {
                            Ok(Response::Reply(reply)) => {
                                let i = reply.result.wrapping_sub(BASE);
                                match flags.get_mut(i as usize) {
                                    Some(flag) if !*flag => {
                                        *flag = true;
                                        out.correct += 1;
                                    }
                                    Some(_) => out.duplicates += 1,
                                    None => out.wrong += 1,
                                }
                            }
                            Ok(Response::Error(status)) => {
                                out.errors[usize::from(status.to_u8())] += 1
                            }
                            Err(_) => out.wrong += 1,
                        }
                    }
                    Err(_) if done.load(Relaxed) => {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(2) {
                            return;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let started = Instant::now();
    let mut sent = 0u32;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * f64::from(rate)) as u32).min(total);
        while sent < due {
            let request = Request {
                a: sent,
                b: BASE as u32,
                op: Op::Add,
            };
            socket.send_to(&request.to_bytes(), lb).unwrap();
            sent += 1;
            during(sent);
        }
        thread::sleep(Duration::from_micros(500));
    }
    done.store(true, Relaxed);
    receiver.join().unwrap();
    let (flags, out) = &mut *seen.lock().unwrap();
    let mut out = std::mem::take(out);
    out.sent = sent;
    out.answered_prefix = flags.iter().take_while(|f| **f).count() as u32;
    out
}

/// Asserts every request of a load got its correct answer.
pub fn assert_all_answered(out: &LoadOutcome, rig: &Rig) {
    assert!(
        out.correct == out.sent && out.wrong == 0 && out.duplicates == 0,
        "{out:?}; timed out: {}; lb log:\n{}",
        out.errors[usize::from(Status::TimedOut.to_u8())],
        rig.lb_log()
    );
}
