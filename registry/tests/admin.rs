//! The `ipcs-registry` binary's admin endpoint: `/metrics` names every
//! `ipcs_registry_*` metric and the `process_*` basics, its counters move
//! with the protocol's, `/healthz` says `ok`, and a busy admin port stops the
//! start.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipcs_common::admin_http::{get, sample};
use ipcs_registry::metrics::PROMETHEUS;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ipcs-registry");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn metrics(admin: SocketAddr) -> String {
    let (status, page) = get(admin, "/metrics", IO_TIMEOUT).unwrap();
    assert_eq!(status, 200, "{page}");
    page
}

#[test]
fn metrics_and_healthz_follow_the_registry() {
    // Free ports found by binding port 0 and releasing them; retried in the
    // unlikely case someone takes one meanwhile.
    let (child, listen, admin) = (0..5)
        .find_map(|_| {
            let (listen, admin) = (free_port(), free_port());
            let child = Command::new(BIN)
                .args([
                    "--listen",
                    &listen.to_string(),
                    "--admin",
                    &admin.to_string(),
                    "--insecure-no-auth",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn ipcs-registry");
            let mut child = Killed(child);
            let up = wait_until(IO_TIMEOUT, || {
                child.0.try_wait().unwrap().is_none()
                    && get(admin, "/healthz", Duration::from_millis(500)).is_ok()
            });
            up.then_some((child, listen, admin))
        })
        .expect("could not start ipcs-registry");

    let (status, body) = get(admin, "/healthz", IO_TIMEOUT).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let page = metrics(admin);
    for (_, def, _) in PROMETHEUS {
        assert!(
            page.contains(&format!("\n# TYPE {} ", def.name)),
            "{}",
            def.name
        );
    }
    for name in [
        "process_start_time_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(sample(&page, name).is_some(), "{name}: {page}");
    }
    assert!(page.contains("ipcs_build_info{version=\""), "{page}");
    assert_eq!(sample(&page, "ipcs_registry_servers"), Some(0.0));

    // A registration and a beat show up in the same numbers STATS gives.
    let mut server = Peer::connect(listen);
    assert!(server.hello(7, 7).starts_with("OK"));
    server.send("BEAT");
    assert!(
        wait_until(IO_TIMEOUT, || {
            let page = metrics(admin);
            sample(&page, "ipcs_registry_beats_total") == Some(1.0)
                && sample(&page, "ipcs_registry_servers") == Some(1.0)
        }),
        "{}",
        metrics(admin)
    );
    let page = metrics(admin);
    assert_eq!(
        sample(&page, "ipcs_registry_registrations_total"),
        Some(1.0)
    );
    assert_eq!(sample(&page, "ipcs_registry_hellos_total"), Some(1.0));
    let mut stats = std::net::TcpStream::connect(listen).unwrap();
    assert_eq!(stat_of(&mut stats, "beats_total"), 1);
    assert_eq!(get(admin, "/nope", IO_TIMEOUT).unwrap().0, 404);
    drop(child);
}

#[test]
fn a_busy_admin_port_is_a_startup_error() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = busy.local_addr().unwrap();
    let out = Command::new(BIN)
        .args([
            "--listen",
            &free_port().to_string(),
            "--admin",
            &admin.to_string(),
            "--insecure-no-auth",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("admin requests on {admin}")), "{err}");
}
