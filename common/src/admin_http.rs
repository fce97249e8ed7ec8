//! The one admin HTTP endpoint of every IPCS process: a tiny HTTP/1.0
//! responder on a thread of its own (so it never touches a hot path), and
//! the Prometheus text helpers every process's `/metrics` is built with.
//!
//! The responder reads one request head (bounded in size and time), hands
//! the `GET` path to the process's route callback and writes its answer;
//! one request at a time, each connection closed after its answer. A
//! process keeps only its views (what `/metrics` and its other paths say).
//!
//! Default ports: the IPCS block 7071-7073 (the LB, the registry, the
//! server), next to the registry's protocol port 7070 and outside the range
//! 9100-9999 that Prometheus allocates to exporters (node_exporter is 9100).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest request head the responder reads.
pub const MAX_REQUEST: usize = 4096;
/// How long one client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The LB's default admin address: loopback, as the LB runs on the host.
pub const DEFAULT_LB_ADMIN: &str = "127.0.0.1:7071";
/// The registry's default admin address: every interface, like its
/// protocol port (in a container, loopback could not be scraped).
pub const DEFAULT_REGISTRY_ADMIN: &str = "0.0.0.0:7072";
/// The server's default admin address: every interface of its own
/// container or namespace (loopback there could not be scraped).
pub const DEFAULT_SERVER_ADMIN: &str = "0.0.0.0:7073";
/// The port of [`DEFAULT_SERVER_ADMIN`] (the registry's service discovery
/// names servers' admin endpoints with it).
pub const DEFAULT_SERVER_ADMIN_PORT: u16 = 7073;

/// The version every process reports in `ipcs_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// An answer: status line (`"200 OK"`) and body.
pub type Answer = (&'static str, String);

/// Parses an `--admin` value: `ADDR:PORT`, or `off` for none.
pub fn parse_admin(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("{s:?} is not ADDR:PORT or \"off\""))
}

/// An `--admin` value (`ADDR:PORT` or `off`), for clap's derive: a bad
/// value is refused while the command line is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminAddr(pub Option<SocketAddr>);

impl std::str::FromStr for AdminAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<AdminAddr, String> {
        parse_admin(s).map(AdminAddr)
    }
}

/// Binds the admin listener; call it before the process starts serving, so
/// a busy port is a start-up error.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves admin requests on `listener` from a thread named `name`, one at a
/// time: each `GET` path is answered with `route(path)`; other methods get
/// 405, a malformed request 400, an oversized head 431.
pub fn spawn<F>(listener: TcpListener, name: &str, route: F) -> io::Result<()>
where
    F: Fn(&str) -> Answer + Send + 'static,
{
    spawn_with_methods(listener, name, move |method, path, _| match method {
        Method::Get => route(path),
        Method::Post => ("405 Method Not Allowed", "only GET\n".into()),
    })
}

/// Who sent a request, as far as the endpoint can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The peer is in this network namespace: a loopback address, or the
    /// endpoint's own address (which only a process of this namespace can
    /// connect from). An endpoint bound to a shared network (an LB node's
    /// address on the backend bridge) tells its own namespace from the rest
    /// by this.
    pub local: bool,
}

impl Caller {
    fn of(stream: &TcpStream) -> Caller {
        let local = match (stream.peer_addr(), stream.local_addr()) {
            (Ok(peer), Ok(me)) => peer.ip().is_loopback() || peer.ip() == me.ip(),
            _ => false,
        };
        Caller { local }
    }
}

/// The request methods the responder knows: `GET` reads, `POST` changes
/// something (its parameters travel in the query string; a body is not
/// read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// Like [`spawn`], for a process whose admin endpoint also takes commands:
/// `route(method, path, caller)` answers both `GET` and `POST` (and must
/// refuse with 405 what it does not take, with 403 what this caller may not
/// do); other methods get 405.
pub fn spawn_with_methods<F>(listener: TcpListener, name: &str, route: F) -> io::Result<()>
where
    F: Fn(Method, &str, Caller) -> Answer + Send + 'static,
{
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = serve(stream, &route) {
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

fn serve(mut stream: TcpStream, route: &dyn Fn(Method, &str, Caller) -> Answer) -> io::Result<()> {
    let caller = Caller::of(&stream);
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
    let (status, body) = answer(&buf[..len], &|method, path| route(method, path, caller));
    respond(&mut stream, status, &body)
}

/// Picks the answer for a request head.
fn answer(head: &[u8], route: &dyn Fn(Method, &str) -> Answer) -> Answer {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return ("400 Bad Request", "bad request\n".into());
    };
    match method {
        "GET" => route(Method::Get, path),
        "POST" => route(Method::Post, path),
        _ => ("405 Method Not Allowed", "only GET or POST\n".into()),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content_type(body),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The `Content-Type` of an answer: JSON for a body that is a JSON object
/// or array (`/servers?format=json`, the registry's `/sd/servers`, which
/// Prometheus refuses under any other type), else the Prometheus text
/// format (whose pages never start with `{` or `[`), which plain text
/// answers are too.
pub fn content_type(body: &str) -> &'static str {
    if body.starts_with('{') || body.starts_with('[') {
        "application/json"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    }
}

/// A blocking `GET path` to an admin endpoint (for tests and tools):
/// the status code and the body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    request(addr, Method::Get, path, timeout)
}

/// A blocking `POST path` (no body) to an admin endpoint: the status code
/// and the body.
pub fn post(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    request(addr, Method::Post, path, timeout)
}

fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{} {path} HTTP/1.0\r\n\r\n", method.as_str()).as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// The value of the unlabelled sample `name` in a Prometheus text page.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The 404 answer, naming the paths there are.
pub fn not_found(paths: &str) -> Answer {
    ("404 Not Found", format!("not found (try {paths})\n"))
}

/// The longest an event loop that publishes to a [`LoopState`] may go
/// without a turn (cap its poll timeout to this), so that a turn older than
/// [`STALL`] means it is stuck.
pub const TURN_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// `/healthz` fails once the loop has not turned for this long.
pub const STALL: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Published {
    counters: Vec<(&'static str, u64)>,
    turn: Instant,
    running: bool,
}

/// What a single-threaded event loop shows its admin endpoint: its counters
/// (by their own names) as of its last turn, and that it turns. The loop
/// writes, the admin thread reads.
#[derive(Debug, Clone)]
pub struct LoopState(Arc<Mutex<Published>>);

impl Default for LoopState {
    fn default() -> LoopState {
        LoopState(Arc::new(Mutex::new(Published {
            counters: Vec::new(),
            turn: Instant::now(),
            running: false,
        })))
    }
}

impl LoopState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A turn of the loop: its current counters, and whether it goes on.
    pub fn publish(&self, counters: impl IntoIterator<Item = (&'static str, u64)>, running: bool) {
        let mut p = self.lock();
        p.counters.clear();
        p.counters.extend(counters);
        p.turn = Instant::now();
        p.running = running;
    }

    /// The counters as last published.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        self.lock().counters.clone()
    }

    /// `/healthz`: 200 `ok` while the loop runs and has turned within
    /// [`STALL`]; else 503 with the reason.
    pub fn healthz(&self) -> Answer {
        let p = self.lock();
        let since = p.turn.elapsed();
        if !p.running {
            ("503 Service Unavailable", "event loop not running\n".into())
        } else if since > STALL {
            (
                "503 Service Unavailable",
                format!("event loop stalled for {:.1} s\n", since.as_secs_f64()),
            )
        } else {
            ("200 OK", "ok\n".into())
        }
    }
}

/// Serves `/metrics` (`render(counters)` then [`process_metrics`]) and
/// `/healthz` for the loop behind `state`, from a thread named `name`.
pub fn spawn_loop_endpoint(
    listener: TcpListener,
    name: &str,
    state: LoopState,
    render: fn(&[(&'static str, u64)]) -> String,
) -> io::Result<()> {
    spawn_loop_endpoint_with(listener, name, state, render, &[], |_| None)
}

/// As [`spawn_loop_endpoint`], with more `GET` paths: `extra(path)` answers
/// those it knows (`paths` names them in the index and the 404).
pub fn spawn_loop_endpoint_with<F>(
    listener: TcpListener,
    name: &str,
    state: LoopState,
    render: fn(&[(&'static str, u64)]) -> String,
    paths: &[&str],
    extra: F,
) -> io::Result<()>
where
    F: Fn(&str) -> Option<Answer> + Send + 'static,
{
    let mut known = vec!["/metrics", "/healthz"];
    known.extend_from_slice(paths);
    let index = format!("{name}: GET {}\n", known.join(", GET "));
    let tried = known.join(" or ");
    spawn(listener, name, move |path| match path {
        "/metrics" => {
            let mut page = render(&state.counters());
            page.push_str(&process_metrics());
            ("200 OK", page)
        }
        "/healthz" => state.healthz(),
        "/" => ("200 OK", index.clone()),
        _ => extra(path).unwrap_or_else(|| not_found(&tried)),
    })
}

/// A metric's kind, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One row of a process's metric table: name, kind and help together.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// Writes the `# HELP` and `# TYPE` lines of `def`.
pub fn write_head(out: &mut String, def: &MetricDef) {
    let _ = writeln!(out, "# HELP {} {}", def.name, def.help);
    let _ = writeln!(out, "# TYPE {} {}", def.name, def.kind.name());
}

/// Writes `def` with one unlabelled sample.
pub fn write_metric(out: &mut String, def: &MetricDef, value: impl std::fmt::Display) {
    write_head(out, def);
    let _ = writeln!(out, "{} {value}", def.name);
}

/// Writes `def` with one sample per `(label value, value)`, labelled `label`.
pub fn write_labelled<V: std::fmt::Display>(
    out: &mut String,
    def: &MetricDef,
    label: &str,
    samples: impl IntoIterator<Item = (&'static str, V)>,
) {
    write_head(out, def);
    for (l, v) in samples {
        let _ = writeln!(out, "{}{{{label}=\"{l}\"}} {v}", def.name);
    }
}

/// One row of a process's metric table: the counter's own name (in its
/// `STATS` or log line), its metric, and a `reason` label value when several
/// counters share one metric.
pub type Row = (&'static str, MetricDef, Option<&'static str>);

/// The Prometheus text of `values` (counters by their own names) as `table`
/// names them, in table order; rows sharing a metric are written together
/// under one `# HELP`/`# TYPE`, labelled `reason`. A row without a value is
/// left out.
pub fn render_table(table: &[Row], values: &[(&'static str, u64)]) -> String {
    let value = |stat: &str| values.iter().find(|(n, _)| *n == stat).map(|(_, v)| *v);
    let mut out = String::new();
    for (i, (_, def, _)) in table.iter().enumerate() {
        if table[..i].iter().any(|(_, d, _)| d.name == def.name) {
            continue;
        }
        write_head(&mut out, def);
        for (stat, _, label) in table.iter().filter(|(_, d, _)| d.name == def.name) {
            let Some(value) = value(stat) else { continue };
            let _ = match label {
                Some(reason) => writeln!(out, "{}{{reason=\"{reason}\"}} {value}", def.name),
                None => writeln!(out, "{} {value}", def.name),
            };
        }
    }
    out
}

/// The `process_*` metrics (from `/proc/self`) and `ipcs_build_info`, the
/// same in every process. A value `/proc` does not give is left out.
pub fn process_metrics() -> String {
    let mut out = String::new();
    let build = MetricDef {
        name: "ipcs_build_info",
        kind: Kind::Gauge,
        help: "Always 1; the version label names the build.",
    };
    write_head(&mut out, &build);
    let _ = writeln!(out, "ipcs_build_info{{version=\"{VERSION}\"}} 1");
    let stat = proc_stat();
    if let Some(start) = stat
        .as_ref()
        .and_then(|s| start_time_seconds(s.start_ticks))
    {
        write_metric(
            &mut out,
            &MetricDef {
                name: "process_start_time_seconds",
                kind: Kind::Gauge,
                help: "Start time of the process since unix epoch in seconds.",
            },
            start,
        );
    }
    if let Some(stat) = &stat {
        write_metric(
            &mut out,
            &MetricDef {
                name: "process_cpu_seconds_total",
                kind: Kind::Counter,
                help: "Total user and system CPU time spent in seconds.",
            },
            (stat.utime + stat.stime) as f64 / clock_ticks(),
        );
        write_metric(
            &mut out,
            &MetricDef {
                name: "process_resident_memory_bytes",
                kind: Kind::Gauge,
                help: "Resident memory size in bytes.",
            },
            stat.rss_pages * page_size(),
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        write_metric(
            &mut out,
            &MetricDef {
                name: "process_open_fds",
                kind: Kind::Gauge,
                help: "Number of open file descriptors.",
            },
            // The directory handle itself is one of them.
            fds.count().saturating_sub(1),
        );
    }
    out
}

struct ProcStat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    rss_pages: u64,
}

fn proc_stat() -> Option<ProcStat> {
    parse_proc_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Parses `/proc/<pid>/stat`: the fields after the command name (which may
/// hold spaces and parentheses, so the last `)` ends it).
fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state): utime is field 14, stime 15,
    // starttime 22, rss 24.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

fn clock_ticks() -> f64 {
    crate::sys::clock_ticks().unwrap_or(100) as f64
}

fn page_size() -> u64 {
    crate::sys::page_size().unwrap_or(4096)
}

/// Boot time (from `/proc/stat`'s `btime`) plus the start ticks.
fn start_time_seconds(start_ticks: u64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime as f64 + start_ticks as f64 / clock_ticks())
}

/// Seconds since the unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_served_as_json() {
        assert_eq!(content_type("[]\n"), "application/json");
        assert_eq!(content_type("{\"a\":1}\n"), "application/json");
        assert!(content_type("# HELP x y\n").starts_with("text/plain; version=0.0.4"));
        assert!(content_type("ok\n").starts_with("text/plain"));
    }

    #[test]
    fn the_server_admin_port_matches_its_default_address() {
        let addr: SocketAddr = DEFAULT_SERVER_ADMIN.parse().unwrap();
        assert_eq!(addr.port(), DEFAULT_SERVER_ADMIN_PORT);
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
    fn routes_get_paths_and_refuses_the_rest() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(listener, "admin-test", |path| match path {
            "/a" => ("200 OK", "alpha\n".into()),
            "/" => ("200 OK", "root\n".into()),
            _ => not_found("/a"),
        })
        .unwrap();
        let ok = get(addr, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\r\nContent-Length: 6\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nalpha\n"), "{ok}");
        // A bare-newline head is accepted too.
        assert!(get(addr, b"GET /a HTTP/1.0\n\n").ends_with("alpha\n"));
        assert!(get(addr, b"POST /a HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        let missing = get(addr, b"GET /nope HTTP/1.0\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
        assert!(missing.ends_with("not found (try /a)\n"), "{missing}");
        assert!(get(addr, b"\r\n\r\n").starts_with("HTTP/1.0 400"));
        assert!(get(addr, b"GET\r\n\r\n").starts_with("HTTP/1.0 400"));
        let huge = vec![b'a'; MAX_REQUEST + 100];
        assert!(get(addr, &huge).starts_with("HTTP/1.0 431"));
        // A client that sends nothing is cut off after the read timeout and
        // does not block the next one for longer.
        let _idle = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        assert!(get(addr, b"GET / HTTP/1.0\r\n\r\n").ends_with("root\n"));
        assert!(started.elapsed() < READ_TIMEOUT * 3);
        let (status, body) = super::get(addr, "/a", Duration::from_secs(5)).unwrap();
        assert_eq!((status, body.as_str()), (200, "alpha\n"));
    }

    #[test]
    fn tables_group_labelled_rows_under_one_head() {
        const A: MetricDef = MetricDef {
            name: "t_a_total",
            kind: Kind::Counter,
            help: "A.",
        };
        const R: MetricDef = MetricDef {
            name: "t_refused_total",
            kind: Kind::Counter,
            help: "Refused.",
        };
        let table: [Row; 3] = [("x", R, Some("x")), ("a", A, None), ("y", R, Some("y"))];
        let text = render_table(&table, &[("a", 1), ("x", 2), ("y", 3)]);
        assert_eq!(
            text,
            "# HELP t_refused_total Refused.\n# TYPE t_refused_total counter\n\
             t_refused_total{reason=\"x\"} 2\nt_refused_total{reason=\"y\"} 3\n\
             # HELP t_a_total A.\n# TYPE t_a_total counter\nt_a_total 1\n"
        );
    }

    #[test]
    fn samples_are_found_by_exact_name() {
        let page = "# HELP a_total x\na_total_more 5\na_total 3\nb{l=\"x\"} 1\n";
        assert_eq!(sample(page, "a_total"), Some(3.0));
        assert_eq!(sample(page, "b"), None);
    }

    #[test]
    fn loop_endpoint_reports_counters_and_liveness() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = LoopState::default();
        fn render(counters: &[(&'static str, u64)]) -> String {
            counters
                .iter()
                .map(|(n, v)| format!("x_{n} {v}\n"))
                .collect()
        }
        spawn_loop_endpoint(listener, "test-loop", state.clone(), render).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(super::get(addr, "/healthz", t).unwrap().0, 503);
        state.publish([("a", 1), ("b", 2)], true);
        assert_eq!(
            super::get(addr, "/healthz", t).unwrap(),
            (200, "ok\n".into())
        );
        let (status, page) = super::get(addr, "/metrics", t).unwrap();
        assert_eq!(status, 200);
        assert!(
            page.starts_with("x_a 1\nx_b 2\n# HELP ipcs_build_info"),
            "{page}"
        );
        assert_eq!(super::get(addr, "/x", t).unwrap().0, 404);
        state.publish([], false);
        let (status, body) = super::get(addr, "/healthz", t).unwrap();
        assert_eq!((status, body.as_str()), (503, "event loop not running\n"));
    }

    #[test]
    fn admin_values_parse() {
        assert_eq!(parse_admin("off"), Ok(None));
        assert_eq!(
            parse_admin("127.0.0.1:7071"),
            Ok(Some("127.0.0.1:7071".parse().unwrap()))
        );
        assert!(parse_admin("7071").is_err());
        for default in [
            DEFAULT_LB_ADMIN,
            DEFAULT_REGISTRY_ADMIN,
            DEFAULT_SERVER_ADMIN,
        ] {
            let port = parse_admin(default).unwrap().unwrap().port();
            assert!(!(9100..=9999).contains(&port), "{default}");
        }
    }

    #[test]
    fn process_metrics_come_from_proc_self() {
        let text = process_metrics();
        for name in [
            "process_start_time_seconds ",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name}: {text}");
        }
        assert!(text.contains(&format!("ipcs_build_info{{version=\"{VERSION}\"}} 1\n")));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        let start: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(start <= unix_now() + 1.0 && start > unix_now() - 3600.0 * 24.0 * 365.0);
    }

    #[test]
    fn proc_stat_survives_odd_command_names() {
        let line = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23";
        let s = parse_proc_stat(line).unwrap();
        assert_eq!(
            (s.utime, s.stime, s.start_ticks, s.rss_pages),
            (11, 12, 19, 21)
        );
    }
}
