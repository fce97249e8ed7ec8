//! The registry's admin endpoint, served by the shared responder
//! (`ipcs_common::admin_http`) on a thread of its own: `GET /metrics`
//! (the `STATS` numbers as `ipcs_registry_*`, plus the `process_*` basics)
//! and `GET /healthz`. The event loop publishes its numbers here once per
//! turn; the admin thread only reads them.

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipcs_common::admin_http::{self, Answer};

use crate::metrics;

/// The longest the loop goes without a turn (its poll timeout is capped to
/// this), so a published turn older than [`STALL`] means it is stuck.
pub const TURN_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// `/healthz` fails once the loop has not turned for this long.
pub const STALL: Duration = Duration::from_secs(5);

/// What the loop last published.
#[derive(Debug)]
struct Published {
    stats: Vec<(&'static str, u64)>,
    turn: Instant,
    running: bool,
}

/// Shared between the event loop (writer) and the admin thread (reader).
#[derive(Debug, Clone)]
pub struct AdminState(Arc<Mutex<Published>>);

impl Default for AdminState {
    fn default() -> AdminState {
        AdminState(Arc::new(Mutex::new(Published {
            stats: Vec::new(),
            turn: Instant::now(),
            running: false,
        })))
    }
}

impl AdminState {
    /// The loop's turn: its current numbers, and that it is alive.
    pub fn publish(&self, stats: Vec<(&'static str, u64)>, running: bool) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.stats = stats;
        p.turn = Instant::now();
        p.running = running;
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> String {
        let p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut page = metrics::render(&p.stats);
        drop(p);
        page.push_str(&admin_http::process_metrics());
        page
    }

    /// `/healthz`: 200 `ok` while the loop runs and has turned lately.
    pub fn healthz(&self) -> Answer {
        let p = self.0.lock().unwrap_or_else(|e| e.into_inner());
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

    /// The answer for a `GET` path.
    pub fn route(&self, path: &str) -> Answer {
        match path {
            "/metrics" => ("200 OK", self.metrics()),
            "/healthz" => self.healthz(),
            "/" => (
                "200 OK",
                "ipcs-registry admin: GET /metrics, GET /healthz\n".into(),
            ),
            _ => admin_http::not_found("/metrics or /healthz"),
        }
    }
}

/// Serves `state` on `listener` from a thread of its own.
pub fn spawn(listener: TcpListener, state: AdminState) -> io::Result<()> {
    admin_http::spawn(listener, "ipcs-registry-admin", move |path| {
        state.route(path)
    })
}
