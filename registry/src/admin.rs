//! The registry's admin endpoint, on the shared responder
//! (`ipcs_common::admin_http`): `GET /metrics` (the `STATS` numbers as
//! `ipcs_registry_*`, see [`crate::metrics::PROMETHEUS`], plus the
//! `process_*` basics), `GET /healthz` and `GET /sd/servers` (Prometheus
//! HTTP service discovery of the live servers, [`crate::discovery`]). The
//! event loop publishes its numbers to a [`LoopState`] once per turn and
//! the list when it changes; the admin thread only reads.

use std::io;
use std::net::TcpListener;

pub use ipcs_common::admin_http::LoopState;

use crate::discovery::Discovery;

/// Serves `state` and `discovery` on `listener` from a thread of its own;
/// `/sd/servers` names each server's admin endpoint at `server_admin_port`.
pub fn spawn(
    listener: TcpListener,
    state: LoopState,
    discovery: Discovery,
    server_admin_port: u16,
) -> io::Result<()> {
    ipcs_common::admin_http::spawn_loop_endpoint_with(
        listener,
        "ipcs-registry-admin",
        state,
        crate::metrics::render,
        &["/sd/servers"],
        move |path| match path {
            "/sd/servers" => Some(("200 OK", discovery.http_sd(server_admin_port))),
            _ => None,
        },
    )
}
