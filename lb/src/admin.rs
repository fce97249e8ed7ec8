//! The admin side, on threads of its own so it never touches the hot path:
//! a tiny HTTP/1.0 responder (`GET /metrics` in the Prometheus text format,
//! `GET /servers` for the current list with each server's health, as text
//! or with `?format=json`) and the periodic one-line summary in the log. Both only read the workers' counters and the shared snapshot.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::exposition::{render, MetricsView};
use crate::metrics::{server_rows, RegistryStatus, Totals, WorkerStats};
use crate::snapshot::SharedSnapshot;

/// The longest request head the responder reads.
const MAX_REQUEST: usize = 4096;
/// How long one client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the admin side reads.
#[derive(Clone)]
pub struct AdminView {
    pub workers: Vec<Arc<WorkerStats>>,
    pub registry: Arc<RegistryStatus>,
    pub snapshot: SharedSnapshot,
}

impl AdminView {
    /// The metrics page.
    pub fn metrics(&self) -> String {
        let snapshot = self.snapshot.load();
        render(&MetricsView {
            workers: &self.workers,
            registry: &self.registry,
            snapshot: &snapshot,
        })
    }

    /// The current server list after a `version <v> servers <n>` line,
    /// one server a line: `id mac ip state timeout_ms srtt_ms in_flight
    /// requests replies failures ejections` (state: `live` or `ejected`).
    pub fn servers(&self) -> String {
        let snapshot = self.snapshot.load();
        let mut out = format!("version {} servers {}\n", snapshot.version, snapshot.len());
        for r in server_rows(&self.workers, &snapshot) {
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
        let servers: Vec<Row> = server_rows(&self.workers, &snapshot)
            .into_iter()
            .map(|row| Row {
                state: row.state(),
                row,
            })
            .collect();
        let page = serde_json::json!({ "version": snapshot.version, "servers": servers });
        format!("{page}\n")
    }
}

/// Binds the admin listener (before anything else starts, so a busy port is
/// a start-up error).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves admin requests on `listener` from a thread of its own, one at a
/// time: each is read (bounded in size and time), answered and closed.
pub fn spawn_http(listener: TcpListener, view: AdminView) -> io::Result<()> {
    thread::Builder::new()
        .name("ipcs-lb-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = serve(stream, &view) {
                            tracing::debug!("admin request: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::debug!("admin accept: {e}");
                        // E.g. out of descriptors: do not spin.
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .map(|_| ())
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

fn serve(mut stream: TcpStream, view: &AdminView) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let head_complete =
        |b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n") || b.windows(2).any(|w| w == b"\n\n");
    while !head_complete(&buf[..len]) {
        if len == buf.len() {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "request too large\n",
            );
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (status, body) = route(&buf[..len], view);
    respond(&mut stream, status, &body)
}

/// Picks the answer for a request head.
fn route(head: &[u8], view: &AdminView) -> (&'static str, String) {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return ("400 Bad Request", "bad request\n".into());
    };
    if method != "GET" {
        return ("405 Method Not Allowed", "only GET\n".into());
    }
    match path {
        "/metrics" => ("200 OK", view.metrics()),
        "/servers" => ("200 OK", view.servers()),
        "/servers?format=json" => ("200 OK", view.servers_json()),
        "/" => (
            "200 OK",
            "ipcs-lb admin: GET /metrics, GET /servers[?format=json]\n".into(),
        ),
        _ => (
            "404 Not Found",
            "not found (try /metrics or /servers)\n".into(),
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::shared_empty;

    fn view() -> AdminView {
        AdminView {
            workers: vec![Arc::new(WorkerStats::default())],
            registry: Arc::new(RegistryStatus::default()),
            snapshot: shared_empty(),
        }
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
}
