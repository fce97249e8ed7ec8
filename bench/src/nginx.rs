//! nginx as a UDP stream proxy in front of the servers' plain-UDP mode: the
//! load balancer a user would otherwise pick, configured fairly.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where Debian's `libnginx-mod-stream` puts the stream module.
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The nginx binary, if installed.
pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// An nginx configuration: `workers` worker processes, one `reuseport` UDP
/// listener per worker, round-robin over `upstreams`, one response per
/// request (`proxy_responses 1`) so sessions end as soon as they are answered.
pub fn config(dir: &Path, listen: SocketAddr, upstreams: &[SocketAddr], workers: u32) -> String {
    let mut servers = String::new();
    for u in upstreams {
        let _ = writeln!(servers, "        server {u};");
    }
    format!(
        "load_module {STREAM_MODULE};
worker_processes {workers};
worker_rlimit_nofile 200000;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{
    worker_connections 100000;
    multi_accept on;
}}
stream {{
    upstream calc {{
{servers}    }}
    server {{
        listen {listen} udp reuseport;
        proxy_pass calc;
        proxy_responses 1;
        proxy_timeout 1s;
    }}
}}
",
        dir = dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_every_upstream_and_the_fair_settings() {
        let ups: Vec<SocketAddr> = ["172.16.238.11:9000", "172.16.238.12:9000"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let c = config(
            Path::new("/tmp/x"),
            "127.0.0.1:8081".parse().unwrap(),
            &ups,
            2,
        );
        assert!(c.contains("worker_processes 2;"));
        assert!(c.contains("server 172.16.238.11:9000;"));
        assert!(c.contains("server 172.16.238.12:9000;"));
        assert!(c.contains("listen 127.0.0.1:8081 udp reuseport;"));
        assert!(c.contains("proxy_responses 1;"));
    }
}
