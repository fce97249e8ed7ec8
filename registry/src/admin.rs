//! The registry's admin endpoint, on the shared responder
//! (`ipcs_common::admin_http`): `GET /metrics` (the `STATS` numbers as
//! `ipcs_registry_*`, see [`crate::metrics::PROMETHEUS`], plus the
//! `process_*` basics) and `GET /healthz`. The event loop publishes its
//! numbers to a [`LoopState`] once per turn; the admin thread only reads.

use std::io;
use std::net::TcpListener;

pub use ipcs_common::admin_http::LoopState;

/// Serves `state` on `listener` from a thread of its own.
pub fn spawn(listener: TcpListener, state: LoopState) -> io::Result<()> {
    ipcs_common::admin_http::spawn_loop_endpoint(
        listener,
        "ipcs-registry-admin",
        state,
        crate::metrics::render,
    )
}
