//! The admin side, on threads of its own so it never touches the hot path:
//! the LB's views for the shared admin HTTP responder
//! (`ipcs_common::admin_http`): `GET /metrics` in the Prometheus text
//! format, `GET /servers` for the current list with each server's health, as
//! text or with `?format=json`, `GET /healthz`, `GET /ready` and
//! `GET /logging`; the control verbs (`POST`, in [`crate::admin_control`]);
//! and the periodic one-line summary in the log. The views only read the
//! workers' counters, the shared snapshot and the operator's overrides.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcs_common::admin_http::{self, Answer, Caller, Method};

use crate::admin_control;
use crate::exposition::{render, MetricsView};
use crate::metrics::{server_rows, RegistryStatus, Totals, WorkerStats};
use crate::operator::SharedOverrides;
use crate::snapshot::SharedSnapshot;

/// Everything the admin side reads.
#[derive(Clone)]
pub struct AdminView {
    pub workers: Vec<Arc<WorkerStats>>,
    pub registry: Arc<RegistryStatus>,
    pub snapshot: SharedSnapshot,
    /// The operator's overrides (the control verbs write them).
    pub overrides: SharedOverrides,
    /// Who may use the control verbs.
    pub control: AdminControl,
}

/// Who may use the admin endpoint's control verbs (`POST`); reads (`GET`)
/// are open to whoever reaches the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdminControl {
    /// Only callers in the LB's own network namespace: loopback, or the
    /// endpoint's own address. An LB node of the LB tier serves its admin
    /// endpoint on its address on the backend bridge, so Prometheus on the
    /// host can scrape it; every container on that bridge reaches it too,
    /// and must not be able to drain or eject servers.
    Local,
    /// Every caller (put your own access control in front).
    Any,
}

impl AdminView {
    /// The metrics page: the LB's own metrics, then the `process_*` ones
    /// and `ipcs_build_info` every IPCS process exports.
    pub fn metrics(&self) -> String {
        let snapshot = self.snapshot.load();
        let mut page = render(&MetricsView {
            workers: &self.workers,
            registry: &self.registry,
            snapshot: &snapshot,
            overrides: &self.overrides.load(),
            now: Instant::now(),
        });
        page.push_str(&admin_http::process_metrics());
        page
    }

    /// `/ready`: 200 only while the server list is live (the registry
    /// answers) and names at least one server, and the LB is not stopping;
    /// else 503 with the reason.
    pub fn ready(&self) -> Answer {
        let snapshot = self.snapshot.load();
        if self.workers.iter().any(|w| w.stopping.load(Relaxed)) {
            (
                "503 Service Unavailable",
                "not ready: stopping (answering the requests in flight)\n".into(),
            )
        } else if !self.registry.reachable.load(Relaxed) {
            (
                "503 Service Unavailable",
                format!(
                    "not ready: registry unreachable (last list version {}, {} servers)\n",
                    snapshot.version,
                    snapshot.len()
                ),
            )
        } else if snapshot.is_empty() {
            (
                "503 Service Unavailable",
                format!(
                    "not ready: no servers (list version {})\n",
                    snapshot.version
                ),
            )
        } else {
            (
                "200 OK",
                format!(
                    "ready: {} servers (list version {})\n",
                    snapshot.len(),
                    snapshot.version
                ),
            )
        }
    }

    /// The current server list after a `version <v> servers <n>` line,
    /// one server a line: `id mac ip state timeout_ms srtt_ms in_flight
    /// requests replies failures ejections` (state: `live`, `ejected`,
    /// `draining` or `ejected-by-operator`).
    pub fn servers(&self) -> String {
        let snapshot = self.snapshot.load();
        let mut out = format!("version {} servers {}\n", snapshot.version, snapshot.len());
        for r in self.rows(&snapshot) {
            out.push_str(&format!(
                "{} {} {} {} {:.3} {:.3} {} {} {} {} {}\n",
                r.id,
                r.mac,
                r.ip,
                r.state(),
                r.timeout_us as f64 / 1e3,
                r.srtt_us as f64 / 1e3,
                r.in_flight,
                r.requests,
                r.replies,
                r.failures,
                r.ejections,
            ));
        }
        out
    }

    /// The same as JSON: `{"version": v, "servers": [{"id", "mac", "ip",
    /// "state", ...}]}`.
    pub fn servers_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Row {
            #[serde(flatten)]
            row: crate::metrics::ServerRow,
            state: &'static str,
        }
        let snapshot = self.snapshot.load();
        let servers: Vec<Row> = self
            .rows(&snapshot)
            .into_iter()
            .map(|row| Row {
                state: row.state(),
                row,
            })
            .collect();
        let page = serde_json::json!({ "version": snapshot.version, "servers": servers });
        format!("{page}\n")
    }

    fn rows(&self, snapshot: &crate::snapshot::ServerSnapshot) -> Vec<crate::metrics::ServerRow> {
        server_rows(
            &self.workers,
            snapshot,
            &self.overrides.load(),
            Instant::now(),
        )
    }
}

/// Binds the admin listener (before anything else starts, so a busy port is
/// a start-up error).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    admin_http::bind(addr)
}

/// Serves admin requests on `listener` from a thread of its own, with the
/// one responder every IPCS process uses (`ipcs_common::admin_http`).
pub fn spawn_http(listener: TcpListener, view: AdminView) -> io::Result<()> {
    admin_http::spawn_with_methods(listener, "ipcs-lb-admin", move |method, path, caller| {
        answer(method, path, caller, &view)
    })
}

fn answer(method: Method, path: &str, caller: Caller, view: &AdminView) -> Answer {
    match method {
        Method::Get => route(path, view),
        Method::Post if view.control == AdminControl::Local && !caller.local => {
            tracing::debug!(
                path,
                "admin control verb refused: caller outside the LB's namespace"
            );
            (
                "403 Forbidden",
                "control verbs are taken only from the LB's own network namespace \
                 (loopback or this endpoint's address; ipcs-lb --admin-control any lifts that)\n"
                    .into(),
            )
        }
        Method::Post => control(path, view),
    }
}

/// Logs a one-line summary every `every`, from a thread of its own.
pub fn spawn_summary(view: AdminView, every: Duration) -> io::Result<()> {
    thread::Builder::new()
        .name("ipcs-lb-summary".into())
        .spawn(move || {
            let mut before = Totals::sum(&view.workers);
            let mut since = Instant::now();
            loop {
                thread::sleep(every);
                let now = Totals::sum(&view.workers);
                let secs = since.elapsed().as_secs_f64();
                since = Instant::now();
                let snapshot = view.snapshot.load();
                tracing::info!("{}", now.summary_line(&before, secs, &snapshot));
                before = now;
            }
        })
        .map(|_| ())
}

/// Picks the answer for a `GET` path (reads only).
fn route(path: &str, view: &AdminView) -> Answer {
    match path {
        "/metrics" => ("200 OK", view.metrics()),
        "/servers" => ("200 OK", view.servers()),
        "/servers?format=json" => ("200 OK", view.servers_json()),
        "/healthz" => ("200 OK", "ok\n".into()),
        "/ready" => view.ready(),
        "/logging" => admin_control::logging_filter(),
        "/" => ("200 OK", INDEX.into()),
        p if p.starts_with("/servers/") || p.starts_with("/logging?") => (
            "405 Method Not Allowed",
            "control verbs take POST (curl -X POST ...)\n".into(),
        ),
        _ => admin_http::not_found("/metrics or /servers"),
    }
}

/// Picks the answer for a `POST` path (changes).
fn control(path: &str, view: &AdminView) -> Answer {
    match path {
        "/metrics" | "/servers" | "/servers?format=json" | "/healthz" | "/ready" | "/" => {
            ("405 Method Not Allowed", "read-only: use GET\n".into())
        }
        _ => admin_control::post(path, &view.overrides, &view.snapshot.load(), Instant::now()),
    }
}

const INDEX: &str = "ipcs-lb admin: GET /metrics, GET /servers[?format=json], GET /healthz, \
GET /ready, GET /logging; POST /servers/<id|mac>/{drain,undrain,ready,eject[?for=30s]}, \
POST /logging?level=<filter>\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{shared_empty, Backend, ServerSnapshot};
    use ipcs_common::admin_http::{MAX_REQUEST, READ_TIMEOUT};
    use ipcs_common::wire::MacAddr;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn view() -> AdminView {
        AdminView {
            workers: vec![Arc::new(WorkerStats::default())],
            registry: Arc::new(RegistryStatus::default()),
            snapshot: shared_empty(),
            overrides: crate::operator::shared_none(),
            control: AdminControl::Local,
        }
    }

    #[test]
    fn control_verbs_only_from_the_lbs_namespace_unless_any() {
        let mut view = view();
        let remote = Caller { local: false };
        let local = Caller { local: true };
        // A verb for a server the (empty) list lacks: 404 once let through.
        let verb = "/servers/7/drain";
        assert_eq!(answer(Method::Post, verb, remote, &view).0, "403 Forbidden");
        assert_eq!(answer(Method::Post, verb, local, &view).0, "404 Not Found");
        // Reads stay open to every caller.
        assert_eq!(answer(Method::Get, "/healthz", remote, &view).0, "200 OK");
        view.control = AdminControl::Any;
        assert_eq!(answer(Method::Post, verb, remote, &view).0, "404 Not Found");
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        spawn_http(listener, view()).unwrap();
        let ok = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\nipcs_lb_requests_total 0\n"), "{ok}");
        let servers = get(addr, b"GET /servers HTTP/1.0\r\n\r\n");
        assert!(servers.ends_with("version 0 servers 0\n"), "{servers}");
        let json = get(addr, b"GET /servers?format=json HTTP/1.0\r\n\r\n");
        assert!(json.ends_with("{\"servers\":[],\"version\":0}\n"), "{json}");
        assert!(get(addr, b"POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        assert!(get(addr, b"PUT /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        // Control verbs need POST; GET stays read-only.
        let verb = get(addr, b"GET /servers/1/drain HTTP/1.0\r\n\r\n");
        assert!(verb.starts_with("HTTP/1.0 405"), "{verb}");
        let unknown = get(addr, b"POST /servers/1/drain HTTP/1.0\r\n\r\n");
        assert!(unknown.starts_with("HTTP/1.0 404"), "{unknown}");
        assert!(get(addr, b"GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
        assert!(get(addr, b"\r\n\r\n").starts_with("HTTP/1.0 400"));
        let huge = vec![b'a'; MAX_REQUEST + 100];
        assert!(get(addr, &huge).starts_with("HTTP/1.0 431"));
        // A client that sends nothing is cut off after the read timeout and
        // does not block the next one for longer.
        let _idle = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        assert!(get(addr, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200"));
        assert!(started.elapsed() < READ_TIMEOUT * 3);
    }

    #[test]
    fn healthz_ready_and_process_metrics() {
        let view = view();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        spawn_http(listener, view.clone()).unwrap();
        assert!(get(addr, b"GET /healthz HTTP/1.0\r\n\r\n").ends_with("\r\n\r\nok\n"));
        let metrics = get(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(metrics.contains("\nprocess_open_fds "), "{metrics}");
        assert!(
            metrics.contains("\nipcs_build_info{version=\""),
            "{metrics}"
        );
        // Not ready until the registry answers, nor while the list is empty.
        let unreachable = get(addr, b"GET /ready HTTP/1.0\r\n\r\n");
        assert!(unreachable.starts_with("HTTP/1.0 503"), "{unreachable}");
        assert!(
            unreachable.contains("registry unreachable"),
            "{unreachable}"
        );
        view.registry.reachable.store(true, Relaxed);
        let empty = get(addr, b"GET /ready HTTP/1.0\r\n\r\n");
        assert!(empty.starts_with("HTTP/1.0 503"), "{empty}");
        assert!(empty.contains("no servers"), "{empty}");
        let server = Backend {
            id: 2,
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            ip: "172.16.238.2".parse().unwrap(),
            udp: None,
        };
        view.snapshot
            .store(Arc::new(ServerSnapshot::new(7, vec![server])));
        let ready = get(addr, b"GET /ready HTTP/1.0\r\n\r\n");
        assert!(ready.starts_with("HTTP/1.0 200"), "{ready}");
        assert!(
            ready.ends_with("ready: 1 servers (list version 7)\n"),
            "{ready}"
        );
    }
}
