//! Prometheus HTTP service discovery of the live servers (`GET /sd/servers`
//! on the registry's admin endpoint, for `http_sd_configs`): the registry
//! knows which servers are alive, so Prometheus asks it, and a server that
//! comes or goes is scraped or dropped at the next refresh without anyone
//! rewriting a file.
//!
//! The event loop publishes the list whenever its version changes; the
//! admin thread renders it as Prometheus expects: a JSON array of
//! `{"targets": ["<ip>:<admin port>"], "labels": {...}}`, one per server.
//! The registry protocol does not carry a server's admin port, so every
//! server is taken to use the same one (`--sd-server-admin-port`, by
//! default the server's default admin port 7073).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use ipcs_common::registry_proto::ServerEntry;

/// The live list as last published, shared by the loop and the admin thread.
#[derive(Debug, Clone, Default)]
pub struct Discovery(Arc<Mutex<Vec<ServerEntry>>>);

impl Discovery {
    /// Replaces the list (the loop calls this when the version changes).
    pub fn publish(&self, servers: Vec<ServerEntry>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = servers;
    }

    /// The `http_sd_configs` answer: each server's admin endpoint at
    /// `admin_port`, labelled with its id and MAC.
    pub fn http_sd(&self, admin_port: u16) -> String {
        let servers = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::from("[");
        for (i, s) in servers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Addresses, ids and MACs need no JSON escaping.
            let _ = write!(
                out,
                r#"{{"targets":["{}:{admin_port}"],"labels":{{"server_id":"{}","mac":"{}"}}}}"#,
                s.ip, s.id, s.mac
            );
        }
        out.push_str("]\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcs_common::wire::MacAddr;

    #[test]
    fn renders_prometheus_http_sd() {
        let d = Discovery::default();
        assert_eq!(d.http_sd(7073), "[]\n");
        d.publish(vec![
            ServerEntry {
                id: 11,
                mac: MacAddr([2, 0, 0, 0, 0, 11]),
                ip: "172.16.238.11".parse().unwrap(),
                udp: None,
            },
            ServerEntry {
                id: 12,
                mac: MacAddr([2, 0, 0, 0, 0, 12]),
                ip: "172.16.238.12".parse().unwrap(),
                udp: Some(9000),
            },
        ]);
        assert_eq!(
            d.http_sd(7073),
            concat!(
                r#"[{"targets":["172.16.238.11:7073"],"labels":{"server_id":"11","mac":"02:00:00:00:00:0b"}},"#,
                r#"{"targets":["172.16.238.12:7073"],"labels":{"server_id":"12","mac":"02:00:00:00:00:0c"}}]"#,
                "\n"
            )
        );
    }
}
